//! A simulation study's folder, as `gpsamp sbc` and `gpsamp merge` write it: `study.json`,
//! `datasets.csv`, `summary.csv`, `summary.json`, `meta.json` and the SVG figures.

use std::path::Path;

use crate::error::{Error, Result};
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
    let json = |v: &dyn erased::Json| v.text().map(|t| t + "\n");
    let put = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).map_err(|source| Error::Io {
            path: dir.join(name),
            source,
        })
    };
    put("study.json", json(file)?)?;
    put("datasets.csv", datasets_csv(&file.settings, records))?;
    put("summary.csv", summary_csv(rep))?;
    put("summary.json", json(rep)?)?;
    put("meta.json", json(meta)?)?;
    plot::write_all(dir, rep, records)
}

/// Pretty JSON of anything serialisable, behind a trait object.
mod erased {
    use crate::error::{Error, Result};

    pub trait Json {
        fn text(&self) -> Result<String>;
    }

    impl<T: serde::Serialize> Json for T {
        fn text(&self) -> Result<String> {
            serde_json::to_string_pretty(self).map_err(|e| Error::Invalid(format!("JSON: {e}")))
        }
    }
}
