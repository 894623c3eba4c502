//! The workflow layer: whole jobs as library functions that write the folders the CLI
//! writes, so a Rust program gets "a fit in a folder, with summaries" without the CLI.
//! The layers run one way: device → model families → engines (HMC, EM, MDN, studies) →
//! workflow → CLI (and, later, Python); nothing here prints.

pub mod em;
pub mod em_plot;
pub mod loo;
pub mod mdn;
pub mod plot;
pub mod predict;
pub mod resume;
pub mod sample;
pub mod spec;
pub mod study;

pub use em::{em_to_dir, EmJob, EmRun};
pub use loo::loo_dir;
pub use mdn::{train_to_dir, MdnJob, MdnRun, Pairs};
pub use predict::{predict_to_dir, write_y_rep, PredictRun};
pub use sample::{
    default_superchain, em_init_centers, sample_to_dir, write_log_lik, SampleJob, SampleRun,
    LOG_LIK_AUTO_LIMIT,
};
pub use spec::ModelSpec;
pub use study::{study_to_dir, write_study, StudyRun, STUDY};

/// Writes `text` to `path`, the error naming the file.
pub(crate) fn write_text(path: &std::path::Path, text: &[u8]) -> crate::Result<()> {
    std::fs::write(path, text).map_err(|source| crate::Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The `meta.json` of the sample folder `dir`; an error naming the folder when it is missing,
/// not JSON, or not of a folder `gpsamp sample` wrote.
pub fn read_sample_meta(dir: &std::path::Path) -> crate::Result<serde_json::Value> {
    let bad = |m: String| crate::Error::Invalid(format!("{}: {m}", dir.display()));
    let path = dir.join("meta.json");
    let text = std::fs::read_to_string(&path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            bad("no meta.json: not a folder written by `gpsamp sample`".into())
        } else {
            crate::Error::Io {
                path: path.clone(),
                source,
            }
        }
    })?;
    let meta: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("meta.json: {e}")))?;
    if meta["format"] != "gpsamp-draws/1" {
        return Err(bad("not a folder written by `gpsamp sample`".into()));
    }
    Ok(meta)
}

/// Pretty JSON of `v`.
pub(crate) fn json_pretty<T: serde::Serialize + ?Sized>(v: &T) -> crate::Result<String> {
    serde_json::to_string_pretty(v).map_err(|e| crate::Error::Invalid(format!("JSON: {e}")))
}

/// `v` with `digits` significant digits: fixed notation for magnitudes 1e-4..1e6, else
/// scientific (so an sd of 0.00042 reads 0.00042, not 0.000).
pub fn sig(v: f64, digits: usize) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v == 0.0 {
        return "0".into();
    }
    let mag = v.abs().log10().floor() as i32;
    if (-4..6).contains(&mag) {
        let decimals = (digits as i32 - 1 - mag).max(0) as usize;
        format!("{v:.decimals$}")
    } else {
        format!("{v:.*e}", digits.saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::sig;

    #[test]
    fn significant_digits() {
        assert_eq!(sig(0.000_421_7, 2), "0.00042");
        assert_eq!(sig(1234.6, 4), "1235");
        assert_eq!(sig(0.5, 4), "0.5000");
        assert_eq!(sig(3e300, 4), "3.000e300");
        assert_eq!(sig(0.0, 4), "0");
    }
}
