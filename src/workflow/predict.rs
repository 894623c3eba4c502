//! Posterior predictive draws: replicated responses at the observed inputs (`y_rep.npy` of
//! a sample folder, and its `ppc.svg` overlay) and at new inputs (`gpsamp predict`:
//! `y_pred.npy` and `predictions.csv` with the predictive mean, sd and intervals per row).
//!
//! Chain `c` of a folder replicates from its own stream `(seed, c, Purpose::Predict)`, draw
//! after draw, so the same folder and seed give the same replicates whatever the threads.

use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;

use crate::data::DataBatch;
use crate::diag::quantile_sorted;
use crate::error::{Error, Result};
use crate::io::npy::{read_shape, NpyWriter};
use crate::model::Model;
use crate::rng::{host_rng, Purpose};

/// Replicated responses of `n` points with inputs `x` (one column per input) for every draw
/// of `chains` chains: `draws` holds constrained parameter rows of `k` values, chain-major
/// (chains × draws per chain × k). Chain `c` draws from stream `first_chain + c`. Returns
/// chains × draws per chain × n values; a draw the model cannot map back (a weight rounded to
/// 0 in f32) gets NaN. `None` when the family has no responses given inputs.
pub fn replicate(
    model: &dyn Model,
    draws: &[f32],
    chains: usize,
    x: &[Vec<f64>],
    n: usize,
    seed: u64,
    first_chain: usize,
) -> Option<Vec<f32>> {
    let k = model.param_names().len();
    let per_chain = draws.len() / (chains * k).max(1);
    let mut probe = host_rng(seed, 0, Purpose::Predict);
    model.predict_y(&vec![0.0; model.dim()], x, n, &mut probe)?;
    let blocks: Vec<Vec<f32>> = (0..chains)
        .into_par_iter()
        .map(|c| {
            let mut rng = host_rng(seed, (first_chain + c) as u64, Purpose::Predict);
            let mut out = vec![f32::NAN; per_chain * n];
            for t in 0..per_chain {
                let at = (c * per_chain + t) * k;
                let params: Vec<f64> = draws[at..at + k].iter().map(|&v| f64::from(v)).collect();
                if let Some(y) = model
                    .unconstrain(&params)
                    .ok()
                    .and_then(|th| model.predict_y(&th, x, n, &mut rng))
                {
                    for (o, v) in out[t * n..(t + 1) * n].iter_mut().zip(y) {
                        *o = v as f32;
                    }
                }
            }
            out
        })
        .collect();
    Some(blocks.concat())
}

/// The draws of dataset `b` of a sample folder: chains `b * cpd ..` of `draws.npy`, as
/// (draws per chain, values chain-major). Errors when the folder stores a subset of the
/// parameters (`--keep`) or has no dataset `b`.
pub fn dataset_draws(
    dir: &Path,
    model: &dyn Model,
    b: usize,
    cpd: usize,
) -> Result<(usize, Vec<f32>)> {
    let path = dir.join("draws.npy");
    let shape = read_shape(&path)?;
    let [n_chains, n_draws, k] = shape[..] else {
        return Err(Error::Invalid(format!(
            "{}: shape {shape:?}, not chains x draws x params",
            path.display()
        )));
    };
    if k != model.param_names().len() {
        return Err(Error::Invalid(format!(
            "{}: holds {k} of the model's {} parameters (a --keep subset): predictions need all",
            path.display(),
            model.param_names().len()
        )));
    }
    if (b + 1) * cpd > n_chains {
        return Err(Error::Invalid(format!(
            "{}: no dataset {b} ({n_chains} chains of {cpd} per dataset)",
            path.display()
        )));
    }
    let w = NpyWriter::open_read(&path, &shape)?;
    let mut out = vec![0f32; cpd * n_draws * k];
    w.read_at(b * cpd * n_draws * k, &mut out)?;
    Ok((n_draws, out))
}

/// Writes `y_rep.npy` into a sample folder: a replicate of every dataset's responses at its
/// own inputs for each stored draw, chains × draws × observations, f32 (ArviZ's
/// `posterior_predictive` group). `Ok(None)` (and no file) when the family has no responses
/// given inputs, the folder stores a subset of the parameters, or the datasets differ in
/// size; otherwise the shape.
pub fn write_y_rep(
    dir: &Path,
    model: &dyn Model,
    data: &DataBatch,
    chains_per_dataset: usize,
    seed: u64,
) -> Result<Option<[usize; 3]>> {
    let n = data.range(0).len();
    let xs: Vec<Vec<Vec<f64>>> = (0..data.n_datasets()).map(|b| data.dataset(b).x).collect();
    let mut probe = host_rng(seed, 0, Purpose::Predict);
    if model
        .predict_y(&vec![0.0; model.dim()], &xs[0], n, &mut probe)
        .is_none()
    {
        return Ok(None);
    }
    super::sample::write_per_observation(
        dir,
        "y_rep.npy",
        model,
        data,
        chains_per_dataset,
        |c, b, draws| replicate(model, draws, 1, &xs[b], n, seed, c).unwrap_or_default(),
    )
}

/// What `gpsamp predict` computed.
#[derive(Clone, Debug)]
pub struct PredictRun {
    /// Shape of `y_pred.npy`: chains × draws × rows of the new data.
    pub shape: [usize; 3],
    /// Per row: predictive mean, sd, and the 2.5, 5, 50, 95 and 97.5% quantiles.
    pub rows: Vec<[f64; 7]>,
}

/// Predictive draws for new inputs from the fit in the sample folder `fit_dir` (dataset
/// `dataset` of a grouped fit), written into `out` (an existing, empty folder): `y_pred.npy`
/// (chains × draws × rows) and `predictions.csv` (the inputs, then mean, sd and quantiles of
/// each row's predictive). `new` holds the new inputs, one column per input the fit used,
/// in its order (none for a family without inputs).
pub fn predict_to_dir(
    fit_dir: &Path,
    model: Arc<dyn Model>,
    dataset: usize,
    new: &Inputs,
    seed: u64,
    out: &Path,
) -> Result<PredictRun> {
    let (new_x, n, x_names) = (&new.columns, new.n, &new.names);
    let meta = super::read_sample_meta(fit_dir)?;
    let cpd = meta["chains_per_dataset"].as_u64().unwrap_or(1) as usize;
    let (n_draws, draws) = dataset_draws(fit_dir, model.as_ref(), dataset, cpd)?;
    let reps =
        replicate(model.as_ref(), &draws, cpd, new_x, n, seed, dataset * cpd).ok_or_else(|| {
            Error::Invalid(format!(
                "{} has no responses given inputs to predict",
                model.name()
            ))
        })?;
    let shape = [cpd, n_draws, n];
    crate::io::npy::write_f32(&out.join("y_pred.npy"), &shape, &reps)?;
    let s = cpd * n_draws;
    let rows: Vec<[f64; 7]> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut v: Vec<f64> = (0..s)
                .map(|d| f64::from(reps[d * n + i]))
                .filter(|v| v.is_finite())
                .collect();
            v.sort_unstable_by(|a, b| a.total_cmp(b));
            let m = v.len().max(1) as f64;
            let mean = v.iter().sum::<f64>() / m;
            let sd =
                (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (m - 1.0).max(1.0)).sqrt();
            let q = |p| {
                if v.is_empty() {
                    f64::NAN
                } else {
                    quantile_sorted(&v, p)
                }
            };
            [mean, sd, q(0.025), q(0.05), q(0.5), q(0.95), q(0.975)]
        })
        .collect();
    let mut csv = String::new();
    if new_x.is_empty() {
        csv.push_str("row,");
    }
    for name in x_names {
        csv.push_str(&format!("\"{}\",", name.replace('"', "\"\"")));
    }
    csv.push_str("mean,sd,q2.5,q5,q50,q95,q97.5\n");
    for (i, r) in rows.iter().enumerate() {
        for col in new_x.iter() {
            csv.push_str(&format!("{},", col[i]));
        }
        if new_x.is_empty() {
            csv.push_str(&format!("{i},"));
        }
        let cells: Vec<String> = r.iter().map(|v| v.to_string()).collect();
        csv.push_str(&cells.join(","));
        csv.push('\n');
    }
    super::write_text(&out.join("predictions.csv"), csv.as_bytes())?;
    Ok(PredictRun { shape, rows })
}

/// Replicates drawn for the overlay figure.
const PPC_REPLICATES: usize = 50;

/// Draws `ppc.svg` of the first dataset of the sample folder `dir` into `to`: its
/// responses against 50 replicates from draws spread over its chains, and for a
/// one-input regression the fitted lines at the posterior means. `Ok(None)` when the family
/// has no responses given inputs or the folder stores a subset of the parameters.
pub fn draw_ppc(
    dir: &Path,
    to: &Path,
    model: &dyn Model,
    data: &DataBatch,
    cpd: usize,
    seed: u64,
) -> Result<Option<String>> {
    let names = model.param_names();
    let k = names.len();
    let Ok((n_draws, draws)) = dataset_draws(dir, model, 0, cpd) else {
        return Ok(None);
    };
    let total = cpd * n_draws;
    if total == 0 {
        return Ok(None);
    }
    let picked: Vec<f32> = (0..PPC_REPLICATES.min(total))
        .flat_map(|i| {
            let row = i * total / PPC_REPLICATES.min(total);
            draws[row * k..(row + 1) * k].iter().copied()
        })
        .collect();
    let d = data.dataset(0);
    let n = d.y.len();
    let Some(reps) = replicate(model, &picked, 1, &d.x, n, seed, 0) else {
        return Ok(None);
    };
    let reps: Vec<Vec<f64>> = reps
        .chunks(n.max(1))
        .map(|r| r.iter().map(|&v| f64::from(v)).collect())
        .collect();
    // Fitted lines of one-input regressions from the posterior means, by the built-in
    // families' names: alpha and beta[0], or alpha[k] and beta[k,0] per component.
    let mean_of = |name: &str| -> Option<f64> {
        let j = names.iter().position(|p| p == name)?;
        Some(
            draws
                .iter()
                .skip(j)
                .step_by(k)
                .map(|&v| f64::from(v))
                .sum::<f64>()
                / total as f64,
        )
    };
    let mut lines = Vec::new();
    if d.x.len() == 1 {
        if let (Some(a), Some(b)) = (mean_of("alpha"), mean_of("beta[0]")) {
            lines.push(("posterior mean line".to_string(), a, b));
        }
        for c in 0.. {
            match (
                mean_of(&format!("alpha[{c}]")),
                mean_of(&format!("beta[{c},0]")),
            ) {
                (Some(a), Some(b)) => lines.push((format!("component {c}"), a, b)),
                _ => break,
            }
        }
    }
    let x_name = data.x_names.first().cloned().unwrap_or_else(|| "x0".into());
    let ppc = crate::workflow::plot::Ppc {
        y: &d.y,
        x: d.x.first().map(|c| (x_name.as_str(), c.as_slice())),
        y_name: data.y_label(),
        reps,
        lines,
        label: if data.n_datasets() > 1 {
            format!("dataset {}", data.dataset_name(0))
        } else {
            String::new()
        },
    };
    crate::workflow::plot::write_ppc(to, &ppc).map(Some)
}

/// New inputs to predict at.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// One column per input of the fit, in its order (none for a family without inputs).
    pub columns: Vec<Vec<f64>>,
    /// The inputs' names.
    pub names: Vec<String>,
    /// Rows.
    pub n: usize,
}

/// Reads the input columns `names` of the CSV file `path` (other columns are ignored); every
/// error names the file, line and column.
pub fn read_inputs(path: &Path, names: &[String]) -> Result<Inputs> {
    use crate::io::table::Rows;
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut rows = crate::io::csv::CsvReader::new(path, file)?;
    let cols = names
        .iter()
        .map(|n| rows.column(n))
        .collect::<Result<Vec<_>>>()?;
    let mut out = vec![Vec::new(); names.len()];
    let mut n = 0;
    while rows.next_row()? {
        n += 1;
        for ((&c, name), col) in cols.iter().zip(names).zip(out.iter_mut()) {
            let v = rows.number(c, name)?;
            col.push(v);
        }
    }
    if n == 0 {
        return Err(rows.err(1, "-", "no rows to predict".into()));
    }
    Ok(Inputs {
        columns: out,
        names: names.to_vec(),
        n,
    })
}
