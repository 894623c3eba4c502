//! Starting and continuing a fit: chains started around given parameter values
//! (`--init FILE`: a JSON of values by name, a sample folder's `summary.json` (its means), or
//! a truth file of `gpsamp simulate`), and a run continued from an earlier one's adaptation
//! and last draws (`--adapt-from DIR`: step size, trajectory length and mass matrix reused,
//! chains starting where the earlier chains stopped, so no warmup is needed).

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::hmc::Adaptation;
use crate::model::Model;

fn init_err(path: &Path, message: String) -> Error {
    Error::Config {
        flag: "--init".into(),
        message: format!("{}: {message}", path.display()),
    }
}

/// Values by name from one JSON object of numbers, or from summary rows (`param`, `mean`).
fn values_of(v: &Value) -> Option<Vec<(String, f64)>> {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, x)| Some((k.clone(), x.as_f64()?)))
            .collect(),
        Value::Array(rows) => rows
            .iter()
            .map(|r| {
                Some((
                    r.get("param")?.as_str()?.to_string(),
                    r.get("mean")?.as_f64()?,
                ))
            })
            .collect(),
        _ => None,
    }
}

/// Reads `--init FILE` for `model` and the datasets `groups` (their keys; one entry for an
/// ungrouped fit): the unconstrained centre of each dataset's starting points. The file
/// holds one set of values for all datasets, or one per dataset (a grouped `summary.json`
/// by its `dataset` keys, a truth file's `truth` list in dataset order).
pub fn read_init(path: &Path, model: &dyn Model, groups: &[String]) -> Result<Vec<Vec<f64>>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| init_err(path, format!("not JSON: {e}")))?;
    let shape = "expected {\"name\": value, ...}, a summary.json, or a truth file";
    let sets: Vec<Vec<(String, f64)>> = if let Some(truth) = v.get("truth") {
        let list = truth
            .as_array()
            .ok_or_else(|| init_err(path, "\"truth\" is not a list".into()))?;
        list.iter()
            .map(|t| values_of(t).ok_or_else(|| init_err(path, shape.into())))
            .collect::<Result<_>>()?
    } else if let Some(rows) = v
        .as_array()
        .filter(|r| r.iter().all(|x| x.get("dataset").is_some()))
    {
        // A grouped summary.json: [{dataset, summary: [rows]}], matched by key.
        let by_key: Vec<(String, &Value)> = rows
            .iter()
            .filter_map(|r| Some((r["dataset"].as_str()?.to_string(), r.get("summary")?)))
            .collect();
        groups
            .iter()
            .map(|g| {
                let (_, s) = by_key
                    .iter()
                    .find(|(k, _)| k == g)
                    .ok_or_else(|| init_err(path, format!("no values for dataset {g:?}")))?;
                values_of(s).ok_or_else(|| init_err(path, shape.into()))
            })
            .collect::<Result<_>>()?
    } else {
        vec![values_of(&v).ok_or_else(|| init_err(path, shape.into()))?]
    };
    if sets.len() != 1 && sets.len() != groups.len() {
        return Err(init_err(
            path,
            format!(
                "{} sets of values for {} datasets",
                sets.len(),
                groups.len()
            ),
        ));
    }
    let names = model.param_names();
    let centres = sets
        .iter()
        .map(|set| {
            if let Some((k, _)) = set.iter().find(|(k, _)| !names.contains(k)) {
                return Err(init_err(
                    path,
                    format!(
                        "{k} is not a parameter of {} ({})",
                        model.name(),
                        names.join(", ")
                    ),
                ));
            }
            let params = names
                .iter()
                .map(|n| {
                    set.iter()
                        .find(|(k, _)| k == n)
                        .map(|&(_, v)| v)
                        .ok_or_else(|| init_err(path, format!("no value for {n}")))
                })
                .collect::<Result<Vec<f64>>>()?;
            model
                .unconstrain(&params)
                .map_err(|e| init_err(path, e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(if centres.len() == 1 {
        vec![centres[0].clone(); groups.len().max(1)]
    } else {
        centres
    })
}

/// Reads the adaptation and last draws of the sample folder `dir` for a run of `model` on
/// `n_datasets` datasets with `chains` chains each: per dataset the earlier run's step size,
/// trajectory length and inverse mass matrix, and the unconstrained starting point of every
/// chain (chain `c` starts at the last draw of the earlier chain `c` modulo its chain
/// count). The folder must be a fit of the same model to as many datasets, storing every
/// parameter.
pub fn adapt_from(
    dir: &Path,
    model: &dyn Model,
    n_datasets: usize,
    chains: usize,
) -> Result<(Vec<Adaptation>, Vec<f64>)> {
    let bad = |m: String| Error::Config {
        flag: "--adapt-from".into(),
        message: format!("{}: {m}", dir.display()),
    };
    let meta = super::read_sample_meta(dir)?;
    if meta["model"] != model.name() {
        return Err(bad(format!(
            "a fit of {}, not {}",
            meta["model"],
            model.name()
        )));
    }
    let adapted: Vec<Adaptation> = serde_json::from_value(meta["report"]["datasets"].clone())
        .map_err(|e| bad(format!("meta.json report: {e}")))?;
    if adapted.len() != n_datasets {
        return Err(bad(format!(
            "a fit of {} dataset(s), this data has {n_datasets}",
            adapted.len()
        )));
    }
    let d = model.dim();
    if adapted.iter().any(|a| a.inv_mass.len() != d) {
        return Err(bad(format!("its mass matrix is not of dimension {d}")));
    }
    let shape = crate::io::npy::read_shape(&dir.join("draws.npy"))?;
    let [n_chains, n_draws, k] = shape[..] else {
        return Err(bad("draws.npy is not chains x draws x params".into()));
    };
    let names = model.param_names();
    if k != names.len() || n_draws == 0 || n_chains % n_datasets != 0 {
        return Err(bad(
            "draws.npy does not hold every parameter of every chain (a --keep subset, or no draws)"
                .into(),
        ));
    }
    let cpd = n_chains / n_datasets;
    let w = crate::io::npy::NpyWriter::open_read(&dir.join("draws.npy"), &shape)?;
    let mut last = vec![0f32; k];
    let mut starts = Vec::with_capacity(n_datasets * chains * d);
    for b in 0..n_datasets {
        for c in 0..chains {
            let chain = b * cpd + c % cpd;
            w.read_at((chain * n_draws + n_draws - 1) * k, &mut last)?;
            let params: Vec<f64> = last.iter().map(|&v| f64::from(v)).collect();
            let u = model
                .unconstrain(&params)
                .map_err(|e| bad(format!("chain {chain}'s last draw: {e}")))?;
            starts.extend(u);
        }
    }
    Ok((adapted, starts))
}
