//! HMM kernels: the forward pass against brute-force enumeration (ragged sequences, the SIMD-
//! lane path) on both backends, the gradient against finite differences, and the GPU density
//! and gradient against the CPU on random problems (T up to 10 000).

#![allow(clippy::needless_range_loop)]

mod common;

use std::sync::Arc;

use common::hmm::*;
use common::{gpu, rel_norm};
use gpsamp::backend::cpu::CpuEvaluator;
use gpsamp::backend::GpuEvaluator;
use gpsamp::hmm::{self, EmissionKind, HmmParams, HmmSpec};
use gpsamp::{DataBatch, Dataset, Evaluator, Hmm, Model};
use statrs::distribution::{Continuous, Normal};

/// log p(y) of one sequence by summing over all K^T state paths, emissions from statrs.
fn brute_force(
    spec: &HmmSpec,
    prm: &HmmParams,
    data: &DataBatch,
    seq: std::ops::Range<usize>,
) -> f64 {
    let (k, t_len) = (spec.k, seq.len());
    let log_e = |s: usize, n: usize| -> f64 {
        (0..spec.d)
            .map(|d| {
                let kd = s * spec.d + d;
                let eta = prm.loc[kd]
                    + (0..spec.p)
                        .map(|j| prm.weights[kd * spec.p + j] * data.x_col(1 + j)[n])
                        .sum::<f64>();
                let y = spec.emission(data, d, n);
                match spec.kind {
                    EmissionKind::Gaussian => Normal::new(eta, prm.sds[kd]).unwrap().ln_pdf(y),
                    EmissionKind::Bernoulli => {
                        let p = 1.0 / (1.0 + (-eta).exp());
                        if y == 1.0 {
                            p.ln()
                        } else {
                            (1.0 - p).ln()
                        }
                    }
                }
            })
            .sum()
    };
    let mut total = 0.0;
    for code in 0..k.pow(t_len as u32) {
        let mut c = code;
        let path: Vec<usize> = (0..t_len)
            .map(|_| {
                let s = c % k;
                c /= k;
                s
            })
            .collect();
        let mut lp = prm.initial[path[0]].ln() + log_e(path[0], seq.start);
        for t in 1..t_len {
            lp += prm.transition[path[t - 1] * k + path[t]].ln() + log_e(path[t], seq.start + t);
        }
        total += lp.exp();
    }
    total.ln()
}

#[test]
fn forward_equals_brute_force_on_both_backends() {
    for (si, spec) in specs().into_iter().filter(|s| s.k <= 3).enumerate() {
        let lengths = vec![vec![1, 4, 6], vec![5, 2], vec![3, 3, 3, 3, 3]];
        let (data, truth) = data_for(&spec, &lengths, 10 + si as u64);
        let prm = jitter(&spec, &truth, si as u64);
        let model = Hmm::new(spec, priors()).unwrap();
        let theta = model.theta(&prm).unwrap();
        let mut grad = vec![0.0; model.dim()];
        let empty = DataBatch::new(
            spec.data_columns(),
            &[Dataset {
                x: vec![vec![1.0]; spec.data_columns()],
                y: vec![0.0],
            }],
        )
        .unwrap();
        for b in 0..data.n_datasets() {
            let exact: f64 = hmm::sequences(&data, b)
                .into_iter()
                .map(|s| brute_force(&spec, &prm, &data, s))
                .sum();
            let mut s = hmm::FbScratch::default();
            let fwd: f64 = hmm::sequences(&data, b)
                .into_iter()
                .map(|seq| hmm::log_likelihood(&spec, &prm, &data, seq, &mut s))
                .sum();
            assert!(
                (fwd - exact).abs() <= 1e-10 * exact.abs().max(1.0),
                "{}: forward {fwd} vs enumeration {exact}",
                model.name()
            );
            // The model's log density minus its prior part is the same likelihood.
            let lp = model.log_density(&data, b, &theta, &mut grad, &mut Vec::new());
            assert!(lp.is_finite());
            let _ = &empty;
            let prior_only = prior_part(&model, &theta);
            assert!(
                (lp - prior_only - exact).abs() <= 1e-8 * exact.abs().max(1.0),
                "{}: log density {lp} - prior {prior_only} vs enumeration {exact}",
                model.name()
            );
            let gpu_lp = gpu_density(&model, &data, &theta);
            if let Some(g) = gpu_lp {
                let g = g[b] - model.constant(&data, b);
                assert!(
                    (g - lp).abs() <= 1e-4 * lp.abs().max(1.0),
                    "{}: GPU {g} vs CPU {lp}",
                    model.name()
                );
            }
        }
    }
}

/// The prior part of the log density, from a dataset whose likelihood we subtract: the
/// log density of a one-point sequence minus that point's forward likelihood.
fn prior_part(model: &Hmm, theta: &[f64]) -> f64 {
    let spec = *model.spec();
    let one = DataBatch::new(
        spec.data_columns(),
        &[Dataset {
            x: vec![vec![1.0]; spec.data_columns()],
            y: vec![1.0],
        }],
    )
    .unwrap();
    let mut grad = vec![0.0; model.dim()];
    let lp = model.log_density(&one, 0, theta, &mut grad, &mut Vec::new());
    let prm = model.params(theta);
    let mut s = hmm::FbScratch::default();
    lp - hmm::log_likelihood(&spec, &prm, &one, 0..1, &mut s)
}

/// Every dataset's log density on the GPU at one position (None without an adapter).
fn gpu_density(model: &Hmm, data: &DataBatch, theta: &[f64]) -> Option<Vec<f64>> {
    let ctx = gpu()?;
    let nb = data.n_datasets();
    let th: Vec<f64> = (0..nb).flat_map(|_| theta.iter().copied()).collect();
    let mut ev = GpuEvaluator::new(ctx, model, data, 1, None).unwrap();
    let (mut lp, mut g) = (vec![0.0; nb], vec![0.0; nb * model.dim()]);
    ev.eval(&th, &mut lp, &mut g).unwrap();
    Some(lp)
}

#[test]
fn gradient_equals_finite_differences() {
    for (si, spec) in specs().into_iter().enumerate() {
        let (data, truth) = data_for(&spec, &[vec![30, 30, 30, 7, 7, 1, 12]], 40 + si as u64);
        let model = Hmm::new(spec, priors()).unwrap();
        let theta = model.theta(&jitter(&spec, &truth, 3 + si as u64)).unwrap();
        let d = model.dim();
        let mut grad = vec![0.0; d];
        let mut g2 = vec![0.0; d];
        model.log_density(&data, 0, &theta, &mut grad, &mut Vec::new());
        let mut fd = vec![0.0; d];
        for i in 0..d {
            let h = 1e-5;
            let mut tp = theta.clone();
            tp[i] += h;
            let up = model.log_density(&data, 0, &tp, &mut g2, &mut Vec::new());
            tp[i] -= 2.0 * h;
            let dn = model.log_density(&data, 0, &tp, &mut g2, &mut Vec::new());
            fd[i] = (up - dn) / (2.0 * h);
        }
        let e = rel_norm(&grad, &fd);
        assert!(
            e < 1e-6,
            "{}: gradient vs finite differences {e:e}\n{grad:?}\n{fd:?}",
            model.name()
        );
    }
}

/// GPU log densities and gradients against the CPU for many chains at random positions.
fn gpu_vs_cpu(spec: HmmSpec, lengths: &[Vec<usize>], chains: usize, seed: u64) -> (f64, f64) {
    let ctx = gpu().expect("checked by caller");
    let (data, truth) = data_for(&spec, lengths, seed);
    let data = Arc::new(data);
    let model = Hmm::new(spec, priors()).unwrap();
    let d = model.dim();
    let n = data.n_datasets() * chains;
    let theta: Vec<f64> = (0..n)
        .flat_map(|c| {
            model
                .theta(&jitter(&spec, &truth, seed * 1000 + c as u64))
                .unwrap()
        })
        .collect();
    let (mut lc, mut gc) = (vec![0.0; n], vec![0.0; n * d]);
    let (mut lg, mut gg) = (vec![0.0; n], vec![0.0; n * d]);
    CpuEvaluator::new(Arc::new(model.clone()), data.clone(), chains)
        .unwrap()
        .eval(&theta, &mut lc, &mut gc)
        .unwrap();
    GpuEvaluator::new(ctx, &model, &data, chains, None)
        .unwrap()
        .eval(&theta, &mut lg, &mut gg)
        .unwrap();
    assert!(
        lg.iter().chain(&gg).all(|v| v.is_finite()),
        "non-finite GPU output"
    );
    (rel_norm(&lg, &lc), rel_norm(&gg, &gc))
}

#[test]
fn gpu_density_matches_cpu_on_random_problems() {
    if gpu().is_none() {
        return;
    }
    for (si, spec) in specs().into_iter().enumerate() {
        let (el, eg) = gpu_vs_cpu(spec, &[vec![200, 13, 1], vec![50; 6]], 16, 70 + si as u64);
        assert!(
            el <= 1e-4 && eg <= 1e-4,
            "{spec:?}: logp {el:e}, gradient {eg:e}"
        );
    }
    // One long sequence: no overflow in f32, still within 1e-4.
    let (el, eg) = gpu_vs_cpu(HmmSpec::gaussian(3, 1).unwrap(), &[vec![10_000]], 4, 99);
    eprintln!("T = 10000: logp relative error {el:e}, gradient {eg:e}");
    assert!(
        el <= 1e-4 && eg <= 1e-4,
        "T = 10000: logp {el:e}, gradient {eg:e}"
    );
}
