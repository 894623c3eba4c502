//! The errors-in-variables family: gradients, GPU twin, the marginalised likelihood against
//! a Monte Carlo integral, the per-observation moments against simulation, recovery of the
//! forum's system, and simulation-based calibration of the shared variant.

#![allow(clippy::needless_range_loop)]

mod common;

use std::sync::Arc;

use common::{gpu, rel_norm};
use gpsamp::backend::{CpuEvaluator, Evaluator, GpuEvaluator};
use gpsamp::hmc::{sample, Config, CpuIntegrator, MemorySink};
use gpsamp::model::eiv::NONCENTRING;
use gpsamp::rng::{host_rng, Purpose};
use gpsamp::{DataBatch, Dataset, Eiv, EivVariant, Model};
use rand::RngExt;
use rand_distr::StandardNormal;
use statrs::distribution::{Continuous, Normal};

fn variants() -> Vec<Eiv> {
    let mut v = Vec::new();
    for variant in [EivVariant::Shared, EivVariant::PerObservation] {
        for obs in [false, true] {
            v.push(Eiv::new(vec![1.0, 2.0, 0.5], variant, obs).unwrap());
        }
    }
    v.push(Eiv::new(vec![1.5], EivVariant::Shared, false).unwrap());
    // Three systems pooled in one dataset (a system column after the inputs).
    for obs in [false, true] {
        let m = Eiv::new(vec![1.0, 2.0, 0.5], EivVariant::Shared, obs).unwrap();
        v.push(m.with_systems(3).unwrap());
    }
    v
}

fn data_for(m: &Eiv, sizes: &[usize], seed: u64) -> (DataBatch, Vec<Vec<f64>>) {
    let mut sets = Vec::new();
    let mut truths = Vec::new();
    for (b, &n) in sizes.iter().enumerate() {
        let mut rng = host_rng(seed, b as u64, Purpose::Simulate);
        let (t, d) = m.simulate(n, &mut rng);
        truths.push(t);
        sets.push(d);
    }
    (DataBatch::new(sets[0].x.len(), &sets).unwrap(), truths)
}

#[test]
fn shaders_validate() {
    for m in variants() {
        for lanes in [1, 8, 64] {
            gpsamp::shader::validate("logp", &gpsamp::shader::logp_batch(&m.wgsl(), lanes))
                .unwrap();
            gpsamp::shader::validate("hmc", &gpsamp::shader::hmc_transition(&m.wgsl(), lanes))
                .unwrap();
        }
    }
}

#[test]
fn gradient_matches_central_differences() {
    for m in variants() {
        let (data, truths) = data_for(&m, &[60], 3);
        let d = m.dim();
        let mut s = Vec::new();
        let (mut g, mut g2) = (vec![0.0; d], vec![0.0; d]);
        let th: Vec<f64> = truths[0].iter().map(|v| v + 0.1).collect();
        m.log_density(&data, 0, &th, &mut g, &mut s);
        let fd: Vec<f64> = (0..d)
            .map(|i| {
                let h = 1e-5;
                let mut t = th.clone();
                t[i] += h;
                let a = m.log_density(&data, 0, &t, &mut g2, &mut s);
                t[i] -= 2.0 * h;
                let b = m.log_density(&data, 0, &t, &mut g2, &mut s);
                (a - b) / (2.0 * h)
            })
            .collect();
        assert!(rel_norm(&g, &fd) <= 1e-6, "{}: {g:?} vs {fd:?}", m.name());
    }
}

#[test]
fn gpu_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    for m in variants() {
        let (data, truths) = data_for(&m, &[200, 17, 1], 5);
        let data = Arc::new(data);
        let chains = 3;
        let theta = common::positions(&m, &truths, chains, 0.2, 2);
        let n = 3 * chains;
        let d = m.dim();
        let (mut l1, mut g1) = (vec![0.0; n], vec![0.0; n * d]);
        let (mut l2, mut g2) = (vec![0.0; n], vec![0.0; n * d]);
        CpuEvaluator::new(Arc::new(m.clone()), data.clone(), chains)
            .unwrap()
            .eval(&theta, &mut l1, &mut g1)
            .unwrap();
        GpuEvaluator::new(ctx.clone(), &m, &data, chains, None)
            .unwrap()
            .eval(&theta, &mut l2, &mut g2)
            .unwrap();
        assert!(
            rel_norm(&l2, &l1) <= 1e-4 && rel_norm(&g2, &g1) <= 1e-4,
            "{}",
            m.name()
        );
    }
}

#[test]
fn shared_likelihood_equals_monte_carlo_over_x_noise() {
    // One point, fixed b: E_a[N(y; (x + a).v, so^2)] against the closed form the model uses.
    let m = Eiv::new(vec![1.0, 2.0, 0.5], EivVariant::Shared, true).unwrap();
    let (sx, sw, so): (f64, f64, f64) = (0.3, 0.1, 0.2);
    let z = [0.5, -1.0, 0.3];
    let x = [0.7, -0.2, 1.1];
    let y = 0.9;
    let v: Vec<f64> = (0..3).map(|j| m.weights()[j] * (1.0 + sw * z[j])).collect();
    let mut rng = host_rng(1, 0, Purpose::Other);
    let draws = 400_000;
    let mut acc = 0.0;
    for _ in 0..draws {
        let mu: f64 = (0..3)
            .map(|j| (x[j] + sx * rng.sample::<f64, _>(StandardNormal)) * v[j])
            .sum();
        acc += Normal::new(mu, so).unwrap().pdf(y);
    }
    let mc = acc / draws as f64;
    let xv: f64 = (0..3).map(|j| x[j] * v[j]).sum();
    let vv: f64 = v.iter().map(|a| a * a).sum();
    let exact = Normal::new(xv, (sx * sx * vv + so * so).sqrt())
        .unwrap()
        .pdf(y);
    assert!(
        (mc / exact - 1.0).abs() < 0.01,
        "MC {mc} vs closed form {exact}"
    );
    // The model's log density is that closed form plus the priors.
    let data = DataBatch::new(
        3,
        &[Dataset {
            x: x.iter().map(|&v| vec![v]).collect(),
            y: vec![y],
        }],
    )
    .unwrap();
    let b: Vec<f64> = z.iter().map(|v| sw * v).collect();
    let theta = m.unconstrain(&[sx, sw, so, b[0], b[1], b[2]]).unwrap();
    assert!((m.constrain(&theta)[3] - b[0]).abs() < 1e-12);
    let mut g = vec![0.0; 6];
    let lp = m.log_density(&data, 0, &theta, &mut g, &mut Vec::new()) + m.constant(&data, 0);
    let prior = |u: f64, mu: f64| Normal::new(mu, 1.0).unwrap().ln_pdf(u);
    let bprior = Normal::new(0.0, sw).unwrap();
    // The sampled latents are u = b / sigma_w^c: the Jacobian |db/du| = sigma_w^(c M).
    let want = exact.ln()
        + prior(sx.ln(), -1.0)
        + prior(sw.ln(), -2.0)
        + prior(so.ln(), -2.0)
        + b.iter().map(|&v| bprior.ln_pdf(v)).sum::<f64>()
        + 3.0 * NONCENTRING * sw.ln();
    assert!((lp - want).abs() < 1e-9, "{lp} vs {want}");
}

#[test]
fn per_observation_moments_match_simulation() {
    let m = Eiv::new(vec![1.0, 2.0, 0.5], EivVariant::PerObservation, true).unwrap();
    let (sx, sw, so) = (0.4, 0.2, 0.1);
    let xrow = [0.7, -1.3, 2.0];
    let n = 200_000;
    let x: Vec<Vec<f64>> = xrow.iter().map(|&v| vec![v; n]).collect();
    let mut rng = host_rng(2, 0, Purpose::Other);
    let (_, y) = m.simulate_at(&x, (sx, sw, so), &mut rng);
    let mean = y.iter().sum::<f64>() / n as f64;
    let var = y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0);
    let w = m.weights();
    let mu: f64 = (0..3).map(|j| xrow[j] * w[j]).sum();
    let ww: f64 = w.iter().map(|a| a * a).sum();
    let q: f64 = (0..3).map(|j| (xrow[j] * w[j]).powi(2)).sum();
    let v = sw * sw * q + sx * sx * (1.0 + sw * sw) * ww + so * so;
    // 4 standard errors (the variance's SE from the kurtosis-free bound sqrt(2/n) * 1.5).
    assert!(
        (mean - mu).abs() < 4.0 * (v / n as f64).sqrt(),
        "mean {mean} vs {mu}"
    );
    assert!(
        (var / v - 1.0).abs() < 4.0 * 1.5 * (2.0 / n as f64).sqrt(),
        "var {var} vs {v}"
    );
}

fn forum_data(seed: u64, b: u64) -> (Dataset, Eiv) {
    let m = Eiv::new(vec![1.0, 2.0, 0.5], EivVariant::Shared, false).unwrap();
    let mut rng = host_rng(seed, b, Purpose::Simulate);
    let x: Vec<Vec<f64>> = (0..3)
        .map(|_| {
            (0..200)
                .map(|_| rng.sample::<f64, _>(StandardNormal))
                .collect()
        })
        .collect();
    let (_, y) = m.simulate_at(&x, (0.3, 0.1, 0.0), &mut rng);
    (Dataset { x, y }, m)
}

#[test]
fn forum_system_sigma_x_is_recovered() {
    // Ten simulated systems (N = 200, M = 3, w = (1, 2, 0.5), sigma_x = 0.3, sigma_w = 0.1),
    // fitted as one batch: each 94% interval covers the truth with probability 0.94, so at
    // least 7 of 10 must (a false alarm below 0.3%).
    let sets: Vec<(Dataset, Eiv)> = (0..10).map(|b| forum_data(4, b)).collect();
    let m = sets[0].1.clone();
    let data: Vec<Dataset> = sets.into_iter().map(|(d, _)| d).collect();
    let data = Arc::new(DataBatch::new(3, &data).unwrap());
    let cfg = Config {
        chains: 4,
        warmup: 1000,
        draws: 1000,
        seed: 1,
        ..Config::default()
    };
    let mut integ = CpuIntegrator::new(Arc::new(m.clone()), data, 4, 1).unwrap();
    let mut sink = MemorySink::default();
    let rep = sample(&mut integ, &m, 10, &cfg, &mut sink, &mut |_, _, _, _| {}).unwrap();
    let mut covered = 0;
    for b in 0..10 {
        // sigma_w is weakly identified from one system (3 draws of b) and its posterior
        // spans two decades; the partially non-centred b and the family's target acceptance
        // (0.9) leave no divergence at default settings (centred b gave up to 50 here).
        let div = rep.datasets[b].divergences;
        assert_eq!(div, 0, "system {b}: {div} divergences in 4000 transitions");
        let chains: Vec<Vec<f64>> = (0..4)
            .map(|c| sink.trace(b * 4 + c, 0).iter().map(|u| u.exp()).collect())
            .collect();
        let s = gpsamp::diag::summarize("sigma_x", &chains, 1);
        covered += usize::from(s.hdi_lo <= 0.3 && 0.3 <= s.hdi_hi);
        for i in 0..m.dim() {
            let ch: Vec<Vec<f64>> = (0..4).map(|c| sink.trace(b * 4 + c, i)).collect();
            let r = gpsamp::diag::rhat(&ch);
            assert!(r < 1.01, "system {b} param {i}: r_hat {r}");
        }
    }
    assert!(covered >= 7, "sigma_x covered in {covered} of 10 systems");
}

#[test]
fn sbc_shared_variant_is_uniform() {
    let m = Eiv::new(vec![1.0, 2.0, 0.5], EivVariant::Shared, false).unwrap();
    let n_sets = 200;
    let (data, truths) = data_for(&m, &vec![50; n_sets], 31);
    let data = Arc::new(data);
    let cfg = Config {
        chains: 4,
        warmup: 300,
        draws: 100,
        seed: 8,
        ..Config::default()
    };
    let mut integ = CpuIntegrator::new(Arc::new(m.clone()), data, 4, 8).unwrap();
    let mut sink = MemorySink::default();
    sample(
        &mut integ,
        &m,
        n_sets,
        &cfg,
        &mut sink,
        &mut |_, _, _, _| {},
    )
    .unwrap();
    // sigma_x and sigma_w (the ask), and the latents u, which also checks that
    // `simulate` hands back the truth in the sampled parameterisation.
    for i in 0..m.dim() {
        let mut counts = [0usize; 10];
        for b in 0..n_sets {
            let pooled: Vec<f64> = (0..4).flat_map(|c| sink.trace(b * 4 + c, i)).collect();
            let thinned: Vec<f64> = pooled.iter().step_by(4).take(99).copied().collect();
            let rank = thinned.iter().filter(|&&v| v < truths[b][i]).count();
            counts[rank * 10 / 100] += 1;
        }
        let e = n_sets as f64 / 10.0;
        let chi2: f64 = counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum();
        assert!(chi2 < 27.88, "param {i}: ranks {counts:?}, chi2 {chi2:.1}");
    }
}

#[test]
fn pooled_systems_identify_sigma_w() {
    // One forum system carries a single draw of b (M = 3 numbers), so sigma_w is weakly
    // identified; ten systems of the same kind pooled in one dataset (own b each, common
    // scales) pin it down. The same ten systems fitted one by one stay wide.
    let systems: Vec<(Dataset, Eiv)> = (0..10).map(|b| forum_data(9, b)).collect();
    let base = systems[0].1.clone();
    let mut pooled = Dataset {
        x: vec![Vec::new(); 4],
        y: Vec::new(),
    };
    for (k, (d, _)) in systems.iter().enumerate() {
        for j in 0..3 {
            pooled.x[j].extend_from_slice(&d.x[j]);
        }
        pooled.x[3].extend(std::iter::repeat_n(k as f64, d.y.len()));
        pooled.y.extend_from_slice(&d.y);
    }
    let cfg = Config {
        chains: 4,
        warmup: 1000,
        draws: 1000,
        seed: 2,
        ..Config::default()
    };
    let sd_sigma_w = |m: &Eiv, sets: &[Dataset]| -> Vec<(f64, f64, f64, usize)> {
        let data = Arc::new(DataBatch::new(sets[0].x.len(), sets).unwrap());
        let mut integ = CpuIntegrator::new(Arc::new(m.clone()), data, 4, 2).unwrap();
        let mut sink = MemorySink::default();
        let rep = sample(
            &mut integ,
            m,
            sets.len(),
            &cfg,
            &mut sink,
            &mut |_, _, _, _| {},
        )
        .unwrap();
        (0..sets.len())
            .map(|b| {
                let chains: Vec<Vec<f64>> = (0..4)
                    .map(|c| sink.trace(b * 4 + c, 1).iter().map(|u| u.exp()).collect())
                    .collect();
                let s = gpsamp::diag::summarize("sigma_w", &chains, 1);
                (s.sd, s.hdi_lo, s.hdi_hi, rep.datasets[b].divergences)
            })
            .collect()
    };
    let pooled_model = base.clone().with_systems(10).unwrap();
    assert_eq!(pooled_model.param_names()[2], "b[0,0]");
    let (sd, lo, hi, div) = sd_sigma_w(&pooled_model, &[pooled])[0];
    assert!(lo <= 0.1 && 0.1 <= hi, "pooled 94% interval ({lo}, {hi})");
    assert_eq!(div, 0);
    let alone: Vec<Dataset> = systems.into_iter().map(|(d, _)| d).collect();
    let singles = sd_sigma_w(&base, &alone);
    let mean_sd = singles.iter().map(|s| s.0).sum::<f64>() / 10.0;
    assert!(
        sd < 0.5 * mean_sd,
        "pooled sd {sd} against {mean_sd} for one system"
    );
}
