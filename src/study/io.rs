//! Files of a study folder: `study.json` (settings and the slice of datasets held),
//! `datasets.csv` (one row per dataset and quantity), `summary.csv` / `summary.json` (the
//! report). Numbers are written in Rust's shortest round-trip form, so reading
//! `datasets.csv` back gives the records bit for bit and a merged report equals an
//! unsharded one byte for byte.

use std::path::Path;

use super::sbc::Report;
use super::{DatasetRecord, QuantityRecord, Settings};
use crate::error::{Error, Result};

/// Column names of `datasets.csv`.
pub const DATASET_COLUMNS: [&str; 21] = [
    "dataset",
    "quantity",
    "truth",
    "mean",
    "sd",
    "q2.5",
    "q10",
    "q25",
    "q75",
    "q90",
    "q97.5",
    "rank",
    "thinned",
    "pit",
    "r_hat",
    "ess_bulk",
    "divergences",
    "stuck_chains",
    "failed",
    "covered_95",
    "warmup_iterations",
];

/// `study.json`: the settings and which datasets the folder holds.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StudyFile {
    /// The study.
    pub settings: Settings,
    /// First dataset held.
    pub first: usize,
    /// One past the last dataset held.
    pub end: usize,
}

/// `datasets.csv` for `records`.
pub fn datasets_csv(settings: &Settings, records: &[DatasetRecord]) -> String {
    let mut out = DATASET_COLUMNS.join(",");
    out.push('\n');
    for r in records {
        for (name, q) in settings.quantities.iter().zip(&r.quantities) {
            out.push_str(&format!(
                "{},\"{}\",{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},\"{}\",{},{}\n",
                r.index,
                name,
                q.truth,
                q.mean,
                q.sd,
                q.quantiles[0],
                q.quantiles[1],
                q.quantiles[2],
                q.quantiles[3],
                q.quantiles[4],
                q.quantiles[5],
                q.rank,
                q.thinned,
                q.pit,
                q.r_hat,
                q.ess_bulk,
                r.divergences,
                r.stuck_chains,
                r.failed.replace('"', "'"),
                u8::from(q.covers(2)),
                r.warmup_iterations,
            ));
        }
    }
    out
}

/// Reads `datasets.csv` written by [`datasets_csv`] for a study with `settings`.
pub fn read_datasets_csv(path: &Path, settings: &Settings) -> Result<Vec<DatasetRecord>> {
    let bad = |line: u64, col: &str, message: String| Error::Data {
        path: path.to_path_buf(),
        line: line as usize,
        column: col.to_string(),
        message,
    };
    let mut rd = csv::Reader::from_path(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let header: Vec<String> = rd
        .headers()
        .map_err(|e| bad(1, "", e.to_string()))?
        .iter()
        .map(str::to_string)
        .collect();
    if header != DATASET_COLUMNS {
        return Err(bad(
            1,
            "",
            format!("expected the columns {}", DATASET_COLUMNS.join(",")),
        ));
    }
    let n_q = settings.quantities.len();
    let mut records: Vec<DatasetRecord> = Vec::new();
    for (k, row) in rd.records().enumerate() {
        let line = k as u64 + 2;
        let row = row.map_err(|e| bad(line, "", e.to_string()))?;
        let f = |i: usize| -> Result<f64> {
            row[i].parse::<f64>().map_err(|_| {
                bad(
                    line,
                    DATASET_COLUMNS[i],
                    format!("{:?} is not a number", &row[i]),
                )
            })
        };
        let u = |i: usize| -> Result<usize> {
            row[i].parse::<usize>().map_err(|_| {
                bad(
                    line,
                    DATASET_COLUMNS[i],
                    format!("{:?} is not a count", &row[i]),
                )
            })
        };
        let index = u(0)?;
        let q_pos = k % n_q;
        if row[1] != settings.quantities[q_pos] {
            return Err(bad(
                line,
                "quantity",
                format!("expected {}, found {}", settings.quantities[q_pos], &row[1]),
            ));
        }
        let q = QuantityRecord {
            truth: f(2)?,
            mean: f(3)?,
            sd: f(4)?,
            quantiles: [f(5)?, f(6)?, f(7)?, f(8)?, f(9)?, f(10)?],
            rank: u(11)?,
            thinned: u(12)?,
            pit: f(13)?,
            r_hat: f(14)?,
            ess_bulk: f(15)?,
        };
        if q_pos == 0 {
            records.push(DatasetRecord {
                index,
                quantities: Vec::with_capacity(n_q),
                divergences: u(16)?,
                stuck_chains: u(17)?,
                failed: row[18].to_string(),
                warmup_iterations: u(20)?,
            });
        }
        let r = records.last_mut().expect("pushed at q_pos 0");
        if r.index != index {
            return Err(bad(
                line,
                "dataset",
                format!("dataset {index} interrupts dataset {}", r.index),
            ));
        }
        r.quantities.push(q);
    }
    if records.last().is_some_and(|r| r.quantities.len() != n_q) {
        return Err(bad(0, "", "the last dataset is incomplete".into()));
    }
    Ok(records)
}

/// `summary.csv`: one row per quantity.
pub fn summary_csv(report: &Report) -> String {
    let mut out = String::from(
        "quantity,chi2,df,p_chi2,ecdf_max_dev,ecdf_outside,pass,coverage_50,coverage_80,coverage_95,z_mean,z_sd,contraction,rmse,corr\n",
    );
    for q in &report.quantities {
        out.push_str(&format!(
            "\"{}\",{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            q.quantity,
            q.chi2,
            q.df,
            q.p_chi2,
            q.ecdf_max_dev,
            q.ecdf_outside,
            q.pass,
            q.coverage_50,
            q.coverage_80,
            q.coverage_95,
            q.z_mean,
            q.z_sd,
            q.contraction,
            q.rmse,
            q.corr
        ));
    }
    out
}

/// The terminal table of a report.
pub fn summary_table(report: &Report) -> String {
    let mut out = format!(
        "{:<16} {:>8} {:>9} {:>6} {:>5} {:>11} {:>11} {:>11} {:>7} {:>6} {:>11}\n",
        "quantity",
        "chi2",
        "p",
        "ecdf",
        "pass",
        "coverage_50",
        "coverage_80",
        "coverage_95",
        "z_mean",
        "z_sd",
        "contraction"
    );
    for q in &report.quantities {
        out.push_str(&format!(
            "{:<16} {:>8.1} {:>9.2e} {:>6} {:>5} {:>11.3} {:>11.3} {:>11.3} {:>7.3} {:>6.3} {:>11.3}\n",
            q.quantity,
            q.chi2,
            q.p_chi2,
            if q.ecdf_outside == 0 { "in" } else { "OUT" },
            if q.pass { "yes" } else { "NO" },
            q.coverage_50,
            q.coverage_80,
            q.coverage_95,
            q.z_mean,
            q.z_sd,
            q.contraction
        ));
    }
    out.push_str(&format!(
        "{} datasets, {} bins (chi-square, df {}), alpha {}; {} failed, {} divergences in {} datasets, max R-hat {:.3}: {}\n",
        report.datasets,
        report.bins,
        report.bins - 1,
        report.settings.alpha,
        report.failed,
        report.divergences,
        report.datasets_with_divergences,
        report.max_r_hat,
        if report.pass { "calibrated" } else { "NOT calibrated" }
    ));
    if report.warmup_ended_early > 0 {
        out.push_str(&format!(
            "warmup ended early (ensemble adapted) in {} datasets; mean warmup {:.0} of at most {} iterations\n",
            report.warmup_ended_early, report.mean_warmup_iterations, report.settings.warmup
        ));
    }
    out
}
