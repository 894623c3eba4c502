//! A simulation study's folder, as `gpsamp sbc` and `gpsamp merge` write it: `study.json`,
//! `datasets.csv`, `summary.csv`, `summary.json`, `meta.json` and the SVG figures.

use std::path::Path;

use crate::error::Result;
use crate::study::io::{datasets_csv, summary_csv, StudyFile};
use crate::study::sbc::Report;
use crate::study::{plot, DatasetRecord};

/// The marker command of a study folder: `sbc` and `merge` write the same kind of folder,
/// so either may replace the other's.
pub const STUDY: &str = "study";

/// Writes a study's files into `dir` (an existing folder: an
/// [`crate::io::output::OutputDir`]'s temporary, say). `meta` goes to `meta.json`, the only
/// file that differs between runs of the same study.
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
    put("summary.csv", summary_csv(rep))?;
    put("summary.json", super::json_pretty(rep)? + "\n")?;
    put("meta.json", super::json_pretty(meta)? + "\n")?;
    plot::write_all(dir, rep, records)
}
