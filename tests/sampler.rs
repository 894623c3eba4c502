//! Statistical checks of ensemble HMC against exact answers: the conjugate linear
//! regression on both backends, simulation-based calibration of the Gaussian GLM (200
//! datasets in one batch), the tutorial's cases recovered with R-hat < 1.01, and counted
//! divergences.

#![allow(clippy::needless_range_loop)]

mod common;

use std::sync::Arc;

use gpsamp::diag::{self, align};
use gpsamp::hmc::{sample, Config, CpuIntegrator, GpuIntegrator, Integrator, MemorySink};
use gpsamp::labels;
use gpsamp::rng::{host_rng, Purpose};
use gpsamp::{DataBatch, Dataset, Likelihood, MixGlm, Model, Priors};
use nalgebra::{DMatrix, DVector};

fn run(
    m: &MixGlm,
    data: Arc<DataBatch>,
    cfg: &Config,
    gpu: bool,
) -> (MemorySink, gpsamp::hmc::RunReport) {
    let mut integ: Box<dyn Integrator> = if gpu {
        Box::new(
            GpuIntegrator::new(common::gpu().unwrap(), m, &data, cfg.chains, cfg.seed, None)
                .unwrap(),
        )
    } else {
        Box::new(
            CpuIntegrator::new(Arc::new(m.clone()), data.clone(), cfg.chains, cfg.seed).unwrap(),
        )
    };
    let mut sink = MemorySink::default();
    let rep = sample(
        integ.as_mut(),
        m,
        data.n_datasets(),
        cfg,
        &mut sink,
        &mut |_, _, _, _| {},
    )
    .unwrap();
    (sink, rep)
}

/// Constrained draws of dataset `b`: `[param][chain][draw]`, labels aligned across chains.
fn constrained(m: &MixGlm, sink: &MemorySink, b: usize, chains: usize) -> Vec<Vec<Vec<f64>>> {
    let np = m.param_names().len();
    let mut out = vec![vec![Vec::new(); chains]; np];
    for c in 0..chains {
        for t in 0..sink.n_draws() {
            let q: Vec<f64> = (0..m.dim())
                .map(|i| sink.trace(b * chains + c, i)[t])
                .collect();
            for (i, v) in m.constrain(&q).into_iter().enumerate() {
                out[i][c].push(v);
            }
        }
    }
    if let Some(groups) = m.label_groups() {
        let means: Vec<Vec<f64>> = (0..chains)
            .map(|c| {
                (0..np)
                    .map(|i| out[i][c].iter().sum::<f64>() / out[i][c].len() as f64)
                    .collect()
            })
            .collect();
        let perms = labels::permutations(m, &means, chains).unwrap();
        for (c, p) in perms.iter().enumerate() {
            for t in 0..sink.n_draws() {
                let x: Vec<f64> = (0..np).map(|i| out[i][c][t]).collect();
                let y = align::apply(&x, p, &groups);
                for i in 0..np {
                    out[i][c][t] = y[i];
                }
            }
        }
    }
    out
}

#[test]
fn conjugate_linear_regression_is_exact_on_both_backends() {
    let sigma = 1.5;
    let m = MixGlm::glm(Likelihood::Gaussian, 2, Priors::default())
        .unwrap()
        .with_fixed_sigma(sigma)
        .unwrap();
    let mut rng = host_rng(11, 0, Purpose::Simulate);
    let (_, d) = m.simulate(40, &mut rng);
    // Closed form: precision X'X / s^2 + I, mean = cov X'y / s^2 (prior N(0, 1) on all).
    let n = d.len();
    let x = DMatrix::from_fn(n, 3, |r, c| if c < 2 { d.x[c][r] } else { 1.0 });
    let y = DVector::from_vec(d.y.clone());
    let prec = x.transpose() * &x / (sigma * sigma) + DMatrix::identity(3, 3);
    let cov = prec.try_inverse().unwrap();
    let mu = &cov * x.transpose() * y / (sigma * sigma);
    let data = Arc::new(DataBatch::new(2, &[d]).unwrap());
    for gpu in [false, true] {
        if gpu && common::gpu().is_none() {
            continue;
        }
        let cfg = Config {
            chains: 16,
            warmup: 300,
            draws: 500,
            seed: 3,
            ..Config::default()
        };
        let (sink, rep) = run(&m, data.clone(), &cfg, gpu);
        assert_eq!(rep.datasets[0].divergences, 0);
        let draws = constrained(&m, &sink, 0, cfg.chains);
        for i in 0..3 {
            let s = diag::summarize("p", &draws[i], 1);
            // Bonferroni over 2 backends x 3 parameters x (mean, variance) at alpha = 0.001.
            let z = (s.mean - mu[i]) / s.mcse_mean;
            assert!(
                z.abs() < 4.0,
                "backend gpu={gpu} param {i}: mean {} vs exact {} (z = {z:.2})",
                s.mean,
                mu[i]
            );
            // The variance is the mean of the squared deviations: its MCSE uses their ESS
            // (not the bulk ESS, which antithetic HMC draws can push above the draw count).
            let v = s.sd * s.sd;
            let sq: Vec<Vec<f64>> = draws[i]
                .iter()
                .map(|c| c.iter().map(|x| (x - s.mean).powi(2)).collect())
                .collect();
            let flat = sq.concat();
            let sq_mean = flat.iter().sum::<f64>() / flat.len() as f64;
            let sq_sd = (flat.iter().map(|x| (x - sq_mean).powi(2)).sum::<f64>()
                / flat.len() as f64)
                .sqrt();
            let zv = (v - cov[(i, i)]) / (sq_sd / diag::ess_mean(&sq).sqrt());
            assert!(
                zv.abs() < 4.0,
                "backend gpu={gpu} param {i}: var {v} vs exact {} (z = {zv:.2})",
                cov[(i, i)]
            );
            assert!(s.r_hat < 1.01, "r_hat {}", s.r_hat);
        }
    }
}

#[test]
fn sbc_gaussian_glm_is_uniform() {
    let m = MixGlm::glm(Likelihood::Gaussian, 1, Priors::default()).unwrap();
    let n_sets = 200;
    let (data, truths) = common::data_for(&m, &vec![20; n_sets], 77);
    let data = Arc::new(data);
    let cfg = Config {
        chains: 4,
        warmup: 200,
        draws: 100,
        seed: 9,
        ..Config::default()
    };
    let (sink, _) = run(&m, data, &cfg, false);
    let np = m.param_names().len();
    let bins = 10;
    for i in 0..np {
        let mut counts = vec![0usize; bins];
        for b in 0..n_sets {
            let truth = m.constrain(&truths[b])[i];
            let draws = constrained(&m, &sink, b, cfg.chains);
            // 400 draws thinned to 99 (about the ESS) so ranks are nearly independent.
            let pooled: Vec<f64> = draws[i].concat();
            let thinned: Vec<f64> = pooled.iter().step_by(4).take(99).copied().collect();
            let rank = thinned.iter().filter(|&&v| v < truth).count(); // 0..=99
            counts[rank * bins / 100] += 1;
        }
        let e = n_sets as f64 / bins as f64;
        let chi2: f64 = counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum();
        // Chi-square, 9 degrees of freedom, alpha = 0.001: 27.88.
        assert!(
            chi2 < 27.88,
            "param {i}: rank counts {counts:?}, chi2 {chi2:.1}"
        );
    }
}

fn check_recovery(m: &MixGlm, d: Dataset, truth: &[f64]) {
    let p = d.x.len();
    let data = Arc::new(DataBatch::new(p, &[d]).unwrap());
    let cfg = Config {
        chains: 4,
        warmup: 1000,
        draws: 1000,
        seed: 5,
        ..Config::default()
    };
    let (sink, rep) = run(m, data, &cfg, false);
    let draws = constrained(m, &sink, 0, cfg.chains);
    let names = m.param_names();
    let groups = m.label_groups();
    // Up to label order: try every permutation of the truth's components, keep the best.
    let candidates: Vec<Vec<f64>> = match &groups {
        None => vec![truth.to_vec()],
        Some(g) => {
            let k = g.len();
            let perms: Vec<Vec<usize>> = if k == 2 {
                vec![vec![0, 1], vec![1, 0]]
            } else {
                vec![(0..k).collect()]
            };
            perms.iter().map(|p| align::apply(truth, p, g)).collect()
        }
    };
    let rows: Vec<_> = (0..names.len())
        .map(|i| diag::summarize(&names[i], &draws[i], 1))
        .collect();
    let worst = |t: &Vec<f64>| {
        rows.iter()
            .zip(t)
            .map(|(r, v)| ((r.mean - v) / r.sd).abs())
            .fold(0.0, f64::max)
    };
    let best = candidates.iter().map(worst).fold(f64::INFINITY, f64::min);
    assert!(
        best < 3.0,
        "{}: truth not within 3 sd ({best:.2}): {rows:#?}",
        m.name()
    );
    for r in &rows {
        assert!(
            r.r_hat < 1.01,
            "{}: {} r_hat {}",
            m.name(),
            r.param,
            r.r_hat
        );
    }
    assert_eq!(rep.datasets[0].divergences, 0, "{}", m.name());
}

#[test]
fn tutorial_linear_regression_recovers_truth() {
    let gpsamp::tutorial::Simulated {
        data: d, truth: t, ..
    } = gpsamp::tutorial::linear(1);
    check_recovery(
        &MixGlm::glm(Likelihood::Gaussian, 1, Priors::default()).unwrap(),
        d,
        &t,
    );
}

#[test]
fn tutorial_mixture_recovers_truth() {
    let gpsamp::tutorial::Simulated {
        data: d, truth: t, ..
    } = gpsamp::tutorial::mixture(2);
    check_recovery(&MixGlm::gmm(2, Priors::default()).unwrap(), d, &t);
}

#[test]
fn tutorial_mixture_of_regressions_recovers_truth() {
    let gpsamp::tutorial::Simulated {
        data: d, truth: t, ..
    } = gpsamp::tutorial::mixreg(3);
    check_recovery(&MixGlm::mixreg(2, 1, Priors::default()).unwrap(), d, &t);
}

#[test]
fn divergences_are_counted_not_nan() {
    let m = MixGlm::glm(Likelihood::Gaussian, 1, Priors::default()).unwrap();
    let (data, _) = common::data_for(&m, &[100], 1);
    let data = Arc::new(data);
    for gpu in [false, true] {
        if gpu && common::gpu().is_none() {
            continue;
        }
        // No warmup and an absurd step size: the integrator blows up every time.
        let cfg = Config {
            chains: 8,
            warmup: 0,
            draws: 50,
            step_size: 50.0,
            seed: 2,
            ..Config::default()
        };
        let (sink, rep) = run(&m, data.clone(), &cfg, gpu);
        assert!(
            rep.datasets[0].divergences > 0,
            "gpu={gpu}: no divergence counted"
        );
        assert!(
            sink.draws.iter().all(|v| v.is_finite()),
            "gpu={gpu}: non-finite draws"
        );
        assert!(sink.logp.iter().all(|v| v.is_finite()));
    }
}
