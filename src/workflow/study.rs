//! A simulation study as a library function ([`study_to_dir`]: fit every dataset of a range,
//! test the ranks, write the folder) and the folder's writer shared with `gpsamp merge`:
//! `study.json`, `datasets.csv`, `summary.csv`, `summary.json`, `meta.json` and the SVG
//! figures.

use std::ops::Range;
use std::path::Path;
use std::time::Instant;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::study::design::{cell_report, cells_csv, CellReport};
use crate::study::io::{datasets_csv, summary_csv, StudyFile};
use crate::study::sbc::{report, Report};
use crate::study::{plot, DatasetRecord, Study};

/// The marker command of a study folder: `sbc` and `merge` write the same kind of folder,
/// so either may replace the other's.
pub const STUDY: &str = "study";

/// What a finished study returns besides its folder.
#[derive(Clone, Debug)]
pub struct StudyRun {
    /// The uniformity tests and recovery statistics per quantity.
    pub report: Report,
    /// Datasets fitted (the range's length).
    pub datasets: usize,
    /// Wall seconds of the fits.
    pub seconds: f64,
    /// The contents of `meta.json`.
    pub meta: serde_json::Value,
    /// The per-cell report of a study at chosen values (empty for a prior design).
    pub cells: Vec<CellReport>,
}

/// Fits datasets `range` of `study` on `backend` and writes the study's folder into `dir` (an
/// existing, empty folder: an [`crate::io::output::OutputDir`]'s temporary, say), as
/// `gpsamp sbc` writes it. `shard` is the `I/N` label recorded in `meta.json` when the range
/// is one slice of the study. `progress` gets (datasets done, datasets in the range).
pub fn study_to_dir(
    study: &Study,
    range: Range<usize>,
    shard: Option<&str>,
    backend: &Backend,
    dir: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<StudyRun> {
    study.validate()?;
    let backend = &backend.clone().for_model(study.fit.as_ref());
    if range.is_empty() || range.end > study.datasets {
        return Err(Error::Config {
            flag: "--shard".into(),
            message: format!(
                "datasets {}..{} of a study of {}: no datasets to fit",
                range.start, range.end, study.datasets
            ),
        });
    }
    let t0 = Instant::now();
    let records = study.run(range.clone(), backend, progress)?;
    let seconds = t0.elapsed().as_secs_f64();
    let settings = study.settings();
    let rep = report(&settings, &records);
    let cells = cell_report(&settings, &records);
    let file = StudyFile {
        settings,
        first: range.start,
        end: range.end,
    };
    let meta = serde_json::json!({
        "gpsamp": env!("CARGO_PKG_VERSION"),
        "backend": backend.describe(),
        "seconds": seconds,
        "datasets_per_second": range.len() as f64 / seconds,
        "shard": shard,
        "batch": study.batch,
    });
    write_study(dir, &file, &records, &rep, &meta)?;
    Ok(StudyRun {
        report: rep,
        datasets: range.len(),
        seconds,
        meta,
        cells,
    })
}

/// Writes a study's files into `dir` (an existing folder: an
/// [`crate::io::output::OutputDir`]'s temporary, say). `meta` goes to `meta.json`, the only
/// file that differs between runs of the same study. A prior (SBC) study writes the
/// uniformity report (`summary.csv`, `summary.json`, rank and ECDF figures); a study at
/// chosen values writes the per-cell report instead (`cells.csv`, `cells.json`,
/// `power.svg`, `cell_coverage.svg`): ranks of the truth need not be uniform at fixed
/// values.
pub fn write_study(
    dir: &Path,
    file: &StudyFile,
    records: &[DatasetRecord],
    rep: &Report,
    meta: &serde_json::Value,
) -> Result<()> {
    let put = |name: &str, text: String| super::write_text(&dir.join(name), text.as_bytes());
    put("study.json", super::json_pretty(file)? + "\n")?;
    put("datasets.csv", datasets_csv(&file.settings, records))?;
    put("meta.json", super::json_pretty(meta)? + "\n")?;
    if !file.settings.design.is_prior() {
        let cells = cell_report(&file.settings, records);
        put("cells.csv", cells_csv(&cells))?;
        put("cells.json", super::json_pretty(&cells)? + "\n")?;
        return plot::write_cells(dir, &cells);
    }
    put("summary.csv", summary_csv(rep))?;
    put("summary.json", super::json_pretty(rep)? + "\n")?;
    plot::write_all(dir, rep, records)
}
