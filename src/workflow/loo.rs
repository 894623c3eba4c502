//! `loo` as a library function: PSIS-LOO of every dataset of a sample folder written with
//! `log_lik.npy` ([`crate::diag::loo`]), and the comparison table of several folders.

use std::path::Path;

use crate::diag::loo::{loo, relative_efficiency, Loo};
use crate::error::{Error, Result};
use crate::hmc::sink::read_chains;
use crate::io::npy::{read_f32, NpyWriter};

/// PSIS-LOO of each dataset of the sample folder `dir`: (dataset name, result).
pub fn loo_dir(dir: &Path) -> Result<Vec<(String, Loo)>> {
    let bad = |message: String| Error::Invalid(format!("{}: {message}", dir.display()));
    let meta = super::read_sample_meta(dir)?;
    let ll_path = dir.join("log_lik.npy");
    if !ll_path.exists() {
        return Err(bad(
            "no log_lik.npy: sample with --log-lik (gpsamp sample) to store the pointwise log likelihood".into(),
        ));
    }
    let (shape, ll) = read_f32(&ll_path)?;
    let dshape: Vec<usize> = serde_json::from_value(meta["draws_shape"].clone())
        .map_err(|e| bad(format!("meta.json draws_shape: {e}")))?;
    let cpd = meta["chains_per_dataset"].as_u64().unwrap_or(0) as usize;
    let groups: Vec<String> = serde_json::from_value(meta["groups"].clone()).unwrap_or_default();
    let ([n_chains, n_draws, n_obs], [dc, dd, k]) = (&shape[..], &dshape[..]) else {
        return Err(bad(
            "log_lik.npy or draws.npy is not chains x draws x ...".into()
        ));
    };
    let (n_chains, n_draws, n_obs, k) = (*n_chains, *n_draws, *n_obs, *k);
    if cpd == 0 || n_chains != *dc || n_draws != *dd || n_chains % cpd != 0 {
        return Err(bad(format!(
            "log_lik.npy {shape:?} does not match draws.npy {dshape:?} with {cpd} chains per dataset"
        )));
    }
    let w = NpyWriter::open_read(&dir.join("draws.npy"), &[n_chains, n_draws, k])?;
    let mut block = Vec::new();
    (0..n_chains / cpd)
        .map(|b| {
            let chains = b * cpd..(b + 1) * cpd;
            let flat: Vec<f64> = ll[chains.start * n_draws * n_obs..chains.end * n_draws * n_obs]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let params = read_chains(&w, chains, n_draws, k, 0..k, &mut block)?;
            let name = groups.get(b).cloned().unwrap_or_else(|| b.to_string());
            Ok((name, loo(&flat, n_obs, relative_efficiency(&params))))
        })
        .collect()
}
