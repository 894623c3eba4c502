//! `gpsamp loo DIR [DIR ...]`: PSIS-LOO of sample folders written with `--log-lik` (elpd_loo,
//! its SE, p_loo, Pareto k with ArviZ's thresholds), and for several folders ArviZ's compare
//! table per dataset; `--json` for the numbers.

use std::path::PathBuf;

use anyhow::bail;
use gpsamp::diag::loo::{compare, Loo};
use gpsamp::workflow::{loo_dir, sig};

/// Options of `gpsamp loo`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Folders written by `gpsamp sample --log-lik`.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Print JSON: per folder and dataset `elpd_loo`, `se`, `p_loo`, `pareto_k`, and the
    /// compare table.
    #[arg(long)]
    json: bool,
}

fn k_counts(l: &Loo) -> (usize, usize, usize) {
    let good = l.pareto_k.iter().filter(|&&k| k <= l.good_k).count();
    let very_bad = l.pareto_k.iter().filter(|&&k| k > 1.0).count();
    (good, l.pareto_k.len() - good - very_bad, very_bad)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let fits: Vec<(String, Vec<(String, Loo)>)> = a
        .dirs
        .iter()
        .map(|d| Ok((d.display().to_string(), loo_dir(d)?)))
        .collect::<anyhow::Result<_>>()?;
    let n_sets = fits[0].1.len();
    if fits.iter().any(|f| f.1.len() != n_sets) {
        bail!("the folders hold different numbers of datasets; compare fits of the same data");
    }
    // Warnings reach stderr whatever the output format.
    for (dir, sets) in &fits {
        for (name, l) in sets {
            let (_, bad, very_bad) = k_counts(l);
            if bad + very_bad > 0 {
                eprintln!(
                    "gpsamp: warning: {dir}{}: {} observation(s) with Pareto k above {} ({} above 1): their leave-one-out estimates are unreliable (a more robust model, or exact refits for them)",
                    if n_sets > 1 { format!(" dataset {name}") } else { String::new() },
                    bad + very_bad,
                    sig(l.good_k, 2),
                    very_bad
                );
            }
        }
    }
    let tables: Vec<Vec<gpsamp::diag::loo::CompareRow>> = if fits.len() > 1 {
        (0..n_sets)
            .map(|b| {
                let set: Vec<(String, Loo)> = fits
                    .iter()
                    .map(|(d, s)| (d.clone(), s[b].1.clone()))
                    .collect();
                compare(&set)
            })
            .collect::<gpsamp::Result<_>>()?
    } else {
        Vec::new()
    };
    if a.json {
        let v = serde_json::json!({
            "fits": fits.iter().map(|(d, sets)| serde_json::json!({
                "dir": d,
                "datasets": sets.iter().map(|(name, l)| serde_json::json!({
                    "dataset": name, "elpd_loo": l.elpd_loo, "se": l.se, "p_loo": l.p_loo,
                    "n_samples": l.n_samples, "n_data_points": l.n_data_points,
                    "good_k": l.good_k, "warning": l.warning, "pareto_k": l.pareto_k,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "compare": tables,
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for (dir, sets) in &fits {
        for (name, l) in sets {
            let (good, bad, very_bad) = k_counts(l);
            outln!(
                "{dir}{}: elpd_loo {} (SE {}), p_loo {}; {} draws, {} observations; Pareto k: {good} good (<= {}), {bad} bad, {very_bad} very bad (> 1)",
                if n_sets > 1 { format!(" dataset {name}") } else { String::new() },
                sig(l.elpd_loo, 6),
                sig(l.se, 3),
                sig(l.p_loo, 3),
                l.n_samples,
                l.n_data_points,
                sig(l.good_k, 2),
            );
        }
    }
    for (b, table) in tables.iter().enumerate() {
        outln!();
        if n_sets > 1 {
            outln!("dataset {}:", fits[0].1[b].0);
        }
        let w = table
            .iter()
            .map(|r| r.model.len())
            .max()
            .unwrap_or(5)
            .max(5);
        outln!(
            "{:<w$} {:>4} {:>12} {:>8} {:>10} {:>7} {:>8} {:>8} {:>7}",
            "model",
            "rank",
            "elpd_loo",
            "p_loo",
            "elpd_diff",
            "weight",
            "se",
            "dse",
            "warning"
        );
        for r in table {
            outln!(
                "{:<w$} {:>4} {:>12.2} {:>8.2} {:>10.2} {:>7.3} {:>8.2} {:>8.2} {:>7}",
                r.model,
                r.rank,
                r.elpd_loo,
                r.p_loo,
                r.elpd_diff,
                r.weight,
                r.se,
                r.dse,
                r.warning
            );
        }
    }
    Ok(())
}
