//! Helpers of the HMM tests (tests/hmm_*.rs): the shapes they cover, parameters and data
//! drawn for them, state agreement, and a CLI runner that asserts success.

use gpsamp::hmm::io::{random_params, simulate};
use gpsamp::hmm::{self, HmmParams, HmmSpec};
use gpsamp::rng::{host_rng, Purpose};
use gpsamp::{DataBatch, Dataset, HmmPriors};
use rand::RngExt;

/// The shapes every test covers.
pub fn specs() -> Vec<HmmSpec> {
    vec![
        HmmSpec::gaussian(1, 1).unwrap(),
        HmmSpec::gaussian(2, 1).unwrap(),
        HmmSpec::gaussian(3, 1).unwrap(),
        HmmSpec::gaussian(3, 2).unwrap(),
        HmmSpec::regression(3, 1).unwrap(),
        HmmSpec::regression(2, 2).unwrap(),
        HmmSpec::bernoulli(3, 2).unwrap(),
    ]
}

/// Random parameters near a simulation truth: perturbed locations, weights and sds, and
/// random (non-sticky) transitions.
pub fn jitter(spec: &HmmSpec, prm: &HmmParams, seed: u64) -> HmmParams {
    let mut rng = host_rng(seed, 0, Purpose::Other);
    let k = spec.k;
    let mut out = prm.clone();
    let mut simplex = |v: &mut [f64]| {
        v.iter_mut().for_each(|x| *x = 0.2 + rng.random::<f64>());
        let s: f64 = v.iter().sum();
        v.iter_mut().for_each(|x| *x /= s);
    };
    simplex(&mut out.initial);
    for i in 0..k {
        simplex(&mut out.transition[i * k..(i + 1) * k]);
    }
    for v in out.loc.iter_mut().chain(out.weights.iter_mut()) {
        *v += 0.5 * (rng.random::<f64>() - 0.5);
    }
    for s in out.sds.iter_mut() {
        *s *= 0.7 + 0.6 * rng.random::<f64>();
    }
    out
}

/// Datasets of sequences with the given lengths (one dataset per inner list).
pub fn data_for(spec: &HmmSpec, lengths: &[Vec<usize>], seed: u64) -> (DataBatch, HmmParams) {
    let mut rng = host_rng(seed, 0, Purpose::Simulate);
    let truth = random_params(spec, &mut rng);
    let datasets: Vec<Dataset> = lengths
        .iter()
        .map(|ls| {
            let mut ds = Dataset {
                x: vec![Vec::new(); spec.data_columns()],
                y: Vec::new(),
            };
            for &t in ls {
                let (d, _) = simulate(spec, &truth, 1, t, &mut rng);
                for (a, b) in ds.x.iter_mut().zip(d.x) {
                    a.extend(b);
                }
                ds.y.extend(d.y);
            }
            ds
        })
        .collect();
    (
        DataBatch::new(spec.data_columns(), &datasets).unwrap(),
        truth,
    )
}

pub fn priors() -> HmmPriors {
    HmmPriors {
        initial: 1.5,
        transition: 1.2,
        stickiness: 2.0,
        ..HmmPriors::default()
    }
}

/// The fraction of steps where `path` equals `truth` after the best relabelling.
pub fn agreement(truth: &[usize], path: &[usize], k: usize) -> f64 {
    let perm = hmm::align_paths(truth, path, k);
    let mut inv = vec![0; k];
    for (r, &s) in perm.iter().enumerate() {
        inv[s] = r;
    }
    truth
        .iter()
        .zip(path)
        .filter(|(&t, &p)| inv[p] == t)
        .count() as f64
        / truth.len() as f64
}

/// Sequences drawn from `truth` as one dataset, with the true states.
pub fn draw(
    spec: &HmmSpec,
    truth: &HmmParams,
    n_seq: usize,
    t_len: usize,
    seed: u64,
) -> (DataBatch, Vec<usize>) {
    let mut rng = host_rng(seed, 0, Purpose::Simulate);
    let (d, states) = simulate(spec, truth, n_seq, t_len, &mut rng);
    (DataBatch::new(spec.data_columns(), &[d]).unwrap(), states)
}

/// Runs the gpsamp binary, asserts that it succeeded, and returns its stdout.
pub fn gpsamp_ok(args: &[&str]) -> String {
    let (ok, stdout, err) = super::gpsamp(args);
    assert!(ok, "gpsamp {args:?} failed: {err}");
    stdout
}

/// A scratch folder for CLI tests, removed when dropped (also when the test fails).
pub fn tmp(name: &str) -> super::TempDir {
    super::TempDir::new(&format!("hmm-{name}"))
}
