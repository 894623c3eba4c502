//! The README's "same from Rust" example, verbatim inside `main` (tests/readme.rs checks that
//! the two agree and runs this after the README's `simulate` line has written `sim.csv`):
//! the batch log density of 1 024 chains per dataset in one call.
#![allow(unused_imports)]

use gpsamp::{Backend, BackendKind, DataBatch, Likelihood, MixGlm, Model, Priors};
use std::sync::Arc;

#[rustfmt::skip]
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
let model = MixGlm::mixreg(2, 1, Priors::default())?;
let data = Arc::new(gpsamp::io::read_csv("sim.csv".as_ref(), &gpsamp::io::CsvSpec {
    x: vec!["x0".into()], y: "y".into(), group: Some("dataset".into()),
})?);
let backend = Backend::select(BackendKind::Auto)?;      // GPU if present, else CPU
let chains = 1024;                                              // per dataset
let mut eval = backend.evaluator(Arc::new(model.clone()), data.clone(), chains)?;
let n = data.n_datasets() * chains;
let theta = vec![0.0; n * model.dim()];                         // unconstrained positions
let (mut logp, mut grad) = (vec![0.0; n], vec![0.0; n * model.dim()]);
eval.eval(&theta, &mut logp, &mut grad)?;                       // one dispatch on the GPU
    assert!(logp.iter().all(|l| l.is_finite()));
    println!("{} log densities, first {}", logp.len(), logp[0]);
    Ok(())
}
