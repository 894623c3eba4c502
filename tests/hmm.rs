//! HMMs: the forward pass against brute-force enumeration, gradients against finite
//! differences, GPU against CPU (the HMC density and the EM E-step), EM monotonicity,
//! recovery of the tutorial's models, and HMC on the Gaussian HMM.

#![allow(clippy::needless_range_loop)]

mod common;

use std::sync::Arc;

use common::{gpu, rel_norm};
use gpsamp::backend::cpu::CpuEvaluator;
use gpsamp::backend::GpuEvaluator;
#[allow(unused_imports)]
use gpsamp::hmm::em::{estep_cpu, fit_cpu, EmConfig, EmPriors, Init, Job};
#[allow(unused_imports)]
use gpsamp::hmm::io::{random_params, simulate, tutorial_params};
use gpsamp::hmm::{self, EmissionKind, HmmParams, HmmSpec};
use gpsamp::rng::{host_rng, Purpose};
use gpsamp::{DataBatch, Dataset, Evaluator, Hmm, HmmPriors, Model};
use rand::RngExt;
use statrs::distribution::{Continuous, Normal};

/// The shapes every test covers.
fn specs() -> Vec<HmmSpec> {
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
fn jitter(spec: &HmmSpec, prm: &HmmParams, seed: u64) -> HmmParams {
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
fn data_for(spec: &HmmSpec, lengths: &[Vec<usize>], seed: u64) -> (DataBatch, HmmParams) {
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

fn priors() -> HmmPriors {
    HmmPriors {
        initial: 1.5,
        transition: 1.2,
        stickiness: 2.0,
        ..HmmPriors::default()
    }
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

/// The penalised log likelihood EM maximises, computed independently of the E-step code.
fn objective(spec: &HmmSpec, cfg: &EmConfig, prm: &HmmParams, data: &DataBatch, b: usize) -> f64 {
    let mut s = hmm::FbScratch::default();
    hmm::sequences(data, b)
        .into_iter()
        .map(|seq| hmm::log_likelihood(spec, prm, data, seq, &mut s))
        .sum::<f64>()
        + cfg.priors.log_prior(spec, prm)
}

#[test]
fn em_never_decreases_the_penalised_likelihood() {
    for (si, spec) in specs().into_iter().enumerate() {
        let (data, _) = data_for(&spec, &[vec![80, 40, 3]], 200 + si as u64);
        for init in [Init::Kmeans, Init::Random] {
            let cfg = EmConfig {
                restarts: 3,
                priors: EmPriors {
                    stickiness: 3.0,
                    ..EmPriors::default()
                },
                init,
                seed: si as u64,
                ..EmConfig::default()
            };
            for r in 0..cfg.restarts {
                let mut job = Job {
                    params: gpsamp::hmm::em::initial_params(&spec, &cfg, &data, 0, r),
                    trace: Vec::new(),
                    loglik: 0.0,
                    done: false,
                };
                let mut last = objective(&spec, &cfg, &job.params, &data, 0);
                for it in 0..40 {
                    let st = estep_cpu(&spec, &job.params, &data, 0);
                    let obj = objective(&spec, &cfg, &job.params, &data, 0);
                    assert!(
                        (st.loglik + cfg.priors.log_prior(&spec, &job.params) - obj).abs()
                            < 1e-8 * obj.abs()
                    );
                    job.params =
                        gpsamp::hmm::em::mstep(&spec, &cfg.priors, cfg.var_floor, &st, &job.params);
                    let now = objective(&spec, &cfg, &job.params, &data, 0);
                    assert!(
                        now >= last - 1e-9 * last.abs(),
                        "{spec:?} {init:?} restart {r} iteration {it}: {last} -> {now}"
                    );
                    last = now;
                }
            }
        }
    }
}

/// The fraction of steps where `path` equals `truth` after the best relabelling.
fn agreement(truth: &[usize], path: &[usize], k: usize) -> f64 {
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
fn draw(
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

#[test]
fn em_recovers_the_tutorial_gaussian_hmm() {
    let spec = HmmSpec::gaussian(3, 1).unwrap();
    let truth = tutorial_params(&spec).unwrap();
    let (data, states) = draw(&spec, &truth, 3, 200, 1);
    let cfg = EmConfig {
        restarts: 5,
        priors: EmPriors {
            stickiness: 10.0,
            ..EmPriors::default()
        },
        ..EmConfig::default()
    };
    let fit = &fit_cpu(&spec, &cfg, &data).unwrap()[0];
    let perm = hmm::align_params(&spec, &truth, &fit.params);
    let aligned = fit.params.permuted(&spec, &perm);
    for s in 0..3 {
        assert!(
            (aligned.loc[s] - truth.loc[s]).abs() < 0.3,
            "mean {s}: {} vs {}",
            aligned.loc[s],
            truth.loc[s]
        );
    }
    let mut path = vec![0; data.n_total()];
    for seq in hmm::sequences(&data, 0) {
        let r = seq.clone();
        hmm::viterbi(&spec, &fit.params, &data, seq, &mut path[r]);
    }
    let acc = agreement(&states, &path, 3);
    eprintln!(
        "tutorial HMM: means {:?}, sds {:?}, Viterbi agreement {acc}, {} iterations",
        aligned.loc,
        aligned.sds,
        fit.trace.len()
    );
    assert!(acc >= 0.9, "Viterbi agrees on {acc} of steps");
    // The trace rises to the end.
    assert!(fit
        .trace
        .windows(2)
        .all(|w| w[1] >= w[0] - 1e-9 * w[0].abs()));
}

#[test]
fn em_recovers_the_tutorial_switching_regression() {
    let spec = HmmSpec::regression(3, 1).unwrap();
    let truth = tutorial_params(&spec).unwrap();
    let (data, _) = draw(&spec, &truth, 10, 100, 2);
    let cfg = EmConfig {
        restarts: 10,
        init: Init::Random,
        max_iters: 300,
        ..EmConfig::default()
    };
    let fit = &fit_cpu(&spec, &cfg, &data).unwrap()[0];
    let perm = hmm::align_params(&spec, &truth, &fit.params);
    let aligned = fit.params.permuted(&spec, &perm);
    eprintln!(
        "switching regression: weights {:?} biases {:?} sds {:?}, {} iterations",
        aligned.weights,
        aligned.loc,
        aligned.sds,
        fit.trace.len()
    );
    for s in 0..3 {
        assert!(
            (aligned.weights[s] - truth.weights[s]).abs() < 0.25,
            "weight {s}: {:?} vs {:?}",
            aligned.weights,
            truth.weights
        );
    }
}

#[test]
fn em_recovers_a_bernoulli_glm_hmm() {
    let spec = HmmSpec::bernoulli(3, 2).unwrap();
    // Three strategies: engaged (steep on the stimulus), and two biased lapses.
    let truth = HmmParams {
        initial: vec![0.6, 0.2, 0.2],
        transition: vec![0.95, 0.03, 0.02, 0.05, 0.92, 0.03, 0.05, 0.03, 0.92],
        loc: vec![0.0, 2.0, -2.0],
        weights: vec![4.0, 0.5, 0.5, 0.0, 0.5, 0.0],
        sds: Vec::new(),
    };
    let (data, _) = draw(&spec, &truth, 20, 500, 3);
    let cfg = EmConfig {
        restarts: 8,
        init: Init::Random,
        max_iters: 500,
        ..EmConfig::default()
    };
    let fit = &fit_cpu(&spec, &cfg, &data).unwrap()[0];
    let perm = hmm::align_params(&spec, &truth, &fit.params);
    let aligned = fit.params.permuted(&spec, &perm);
    let err: f64 = aligned
        .weights
        .iter()
        .chain(&aligned.loc)
        .zip(truth.weights.iter().chain(&truth.loc))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    eprintln!(
        "Bernoulli GLM-HMM: weights {:?} biases {:?}, max error {err}, {} iterations",
        aligned.weights,
        aligned.loc,
        fit.trace.len()
    );
    assert!(
        err < 0.5,
        "weights {:?} biases {:?}, max error {err}",
        aligned.weights,
        aligned.loc
    );
}

#[test]
fn gpu_estep_matches_cpu() {
    let Some(ctx) = gpu() else {
        return;
    };
    for (si, spec) in specs().into_iter().enumerate() {
        let (data, truth) = data_for(&spec, &[vec![120, 1, 30], vec![64; 3]], 300 + si as u64);
        let restarts = 3;
        let params: Vec<HmmParams> = (0..data.n_datasets() * restarts)
            .map(|i| jitter(&spec, &truth, 500 + i as u64))
            .collect();
        let est = gpsamp::hmm::gpu::GpuEstep::new(ctx.clone(), &spec, &data, restarts).unwrap();
        let got = est.run(&params).unwrap();
        for (i, g) in got.iter().enumerate() {
            let want = estep_cpu(&spec, &params[i], &data, i / restarts);
            let e = rel_norm(&g.to_flat(), &want.to_flat());
            assert!(
                e < 1e-4,
                "{spec:?} job {i}: statistics relative error {e:e}"
            );
        }
    }
    // A long sequence stays finite and accurate.
    let spec = HmmSpec::gaussian(3, 1).unwrap();
    let (data, truth) = data_for(&spec, &[vec![10_000]], 9);
    let est = gpsamp::hmm::gpu::GpuEstep::new(ctx.clone(), &spec, &data, 1).unwrap();
    let got = est.run(std::slice::from_ref(&truth)).unwrap();
    let want = estep_cpu(&spec, &truth, &data, 0);
    let e = rel_norm(&got[0].to_flat(), &want.to_flat());
    assert!(e < 1e-4, "T = 10000: statistics relative error {e:e}");
}

#[test]
fn gpu_em_follows_cpu_em() {
    let Some(ctx) = gpu() else {
        return;
    };
    let spec = HmmSpec::gaussian(3, 1).unwrap();
    let truth = tutorial_params(&spec).unwrap();
    let (data, _) = draw(&spec, &truth, 3, 200, 1);
    let cfg = EmConfig {
        restarts: 4,
        max_iters: 30,
        priors: EmPriors {
            stickiness: 10.0,
            ..EmPriors::default()
        },
        ..EmConfig::default()
    };
    let cpu = &fit_cpu(&spec, &cfg, &data).unwrap()[0];
    let gpu_fit = &gpsamp::hmm::gpu::fit_gpu(ctx, &spec, &cfg, &data).unwrap()[0];
    let rel = (gpu_fit.log_likelihood - cpu.log_likelihood).abs() / cpu.log_likelihood.abs();
    assert!(
        rel < 1e-4,
        "GPU EM {} vs CPU EM {}",
        gpu_fit.log_likelihood,
        cpu.log_likelihood
    );
    let e = rel_norm(&gpu_fit.params.loc, &cpu.params.loc);
    assert!(
        e < 1e-3,
        "means {:?} vs {:?}",
        gpu_fit.params.loc,
        cpu.params.loc
    );
}

/// HMC on the tutorial's Gaussian HMM with priors: each chain's draws (constrained, states
/// aligned to the truth by their means) mixes with R-hat < 1.01 and centres near the truth.
fn hmc_on_tutorial(backend: &gpsamp::Backend) -> (Vec<f64>, Vec<f64>, usize) {
    use gpsamp::hmc::{sample, Config, MemorySink};
    let spec = HmmSpec::gaussian(3, 1).unwrap();
    let truth = tutorial_params(&spec).unwrap();
    let (data, _) = draw(&spec, &truth, 3, 200, 1);
    let model = Hmm::new(
        spec,
        HmmPriors {
            stickiness: 5.0,
            ..HmmPriors::default()
        },
    )
    .unwrap();
    let chains = 16;
    let cfg = Config {
        chains,
        warmup: 500,
        draws: 500,
        seed: 4,
        ..Config::default()
    };
    let mut integ = gpsamp::hmc::integrator(
        backend,
        Arc::new(model.clone()),
        Arc::new(data),
        chains,
        cfg.seed,
    )
    .unwrap();
    let mut sink = MemorySink::default();
    let rep = sample(
        integ.as_mut(),
        &model,
        1,
        &cfg,
        &mut sink,
        &mut |_, _, _, _| {},
    )
    .unwrap();
    let names = model.param_names();
    let np = names.len();
    // values[param][chain][draw], each chain relabelled to the truth by its mean emission.
    let mut values = vec![vec![Vec::new(); chains]; np];
    for c in 0..chains {
        let draws: Vec<Vec<f64>> = (0..cfg.draws)
            .map(|t| {
                let row = (t * sink.chains + c) * sink.d;
                model.constrain(&sink.draws[row..row + sink.d])
            })
            .collect();
        let mean: Vec<f64> = (0..np)
            .map(|i| draws.iter().map(|d| d[i]).sum::<f64>() / draws.len() as f64)
            .collect();
        let mean_prm = model.params(
            &model
                .unconstrain(&mean)
                .unwrap_or_else(|_| model.theta(&truth).unwrap()),
        );
        let perm = hmm::align_params(&spec, &truth, &mean_prm);
        for d in &draws {
            let x = model.permute_labels(d, &perm);
            for i in 0..np {
                values[i][c].push(x[i]);
            }
        }
    }
    let rhats: Vec<f64> = values.iter().map(|v| gpsamp::diag::rhat(v)).collect();
    let means: Vec<f64> = values
        .iter()
        .map(|v| v.iter().flatten().sum::<f64>() / (chains * cfg.draws) as f64)
        .collect();
    eprintln!(
        "{}: R-hat max {:.4}, means {:?}, divergences {}",
        backend.describe(),
        rhats.iter().copied().fold(0.0, f64::max),
        &means[12..18],
        rep.datasets[0].divergences
    );
    (rhats, means, rep.datasets[0].divergences)
}

#[test]
fn hmc_on_the_tutorial_hmm_mixes_and_recovers() {
    let mut backends = vec![gpsamp::Backend::Cpu];
    if let Some(ctx) = gpu() {
        backends.push(gpsamp::Backend::Gpu(ctx));
    }
    let spec = HmmSpec::gaussian(3, 1).unwrap();
    let truth = tutorial_params(&spec).unwrap();
    for backend in &backends {
        let (rhats, means, _) = hmc_on_tutorial(backend);
        let worst = rhats.iter().copied().fold(0.0, f64::max);
        assert!(worst < 1.01, "{}: R-hat {rhats:?}", backend.describe());
        // means[12..15]: state means; means[15..18]: sds.
        for s in 0..3 {
            assert!(
                (means[12 + s] - truth.loc[s]).abs() < 0.3,
                "{}: means {:?}",
                backend.describe(),
                &means[12..15]
            );
            assert!(
                (means[15 + s] - truth.sds[s]).abs() < 0.25,
                "{}: sds {:?}",
                backend.describe(),
                &means[15..18]
            );
        }
    }
}

/// Runs the gpsamp binary, asserts that it succeeded, and returns its stdout.
fn gpsamp_ok(args: &[&str]) -> String {
    let (ok, stdout, err) = common::gpsamp(args);
    assert!(ok, "gpsamp {args:?} failed: {err}");
    stdout
}

/// A scratch folder for CLI tests.
fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("gpsamp-hmm-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn cli_simulate_em_round_trip() {
    let d = tmp("roundtrip");
    let csv = d.join("h.csv");
    let out = d.join("fit");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    gpsamp_ok(&[
        "simulate",
        "--model",
        "hmm",
        "--sequences",
        "4",
        "--out",
        &s(&csv),
    ]);
    let truth = csv.with_extension("truth.json");
    let stdout = gpsamp_ok(&[
        "em",
        "--model",
        "hmm",
        "--data",
        &s(&csv),
        "--stickiness",
        "10",
        "--holdout",
        "1",
        "--truth",
        &s(&truth),
        "--backend",
        "cpu",
        "--out",
        &s(&out),
    ]);
    assert!(stdout.contains("held-out"), "{stdout}");
    let params: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("params.json")).unwrap()).unwrap();
    let ds = &params["datasets"][0];
    let means: Vec<f64> = ds["means"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (m, t) in means.iter().zip([-3.0, 0.0, 4.0]) {
        assert!((m - t).abs() < 0.3, "means {means:?}");
    }
    assert_eq!(ds["transition"].as_array().unwrap().len(), 3);
    assert!(ds["trace"].as_array().unwrap().len() >= 2);
    assert!(ds["heldout_bits_per_obs"].as_f64().unwrap() < 0.0);
    // states.csv: the 3 training sequences of 200 steps; posteriors rows sum to 1.
    let states = std::fs::read_to_string(out.join("states.csv")).unwrap();
    assert_eq!(states.lines().next(), Some("seq,t,state"));
    assert_eq!(states.lines().count(), 1 + 600);
    let (shape, post) = gpsamp::io::npy::read_f32(&out.join("posteriors.npy")).unwrap();
    assert_eq!(shape, vec![600, 3]);
    assert!(post
        .chunks(3)
        .all(|r| (r.iter().sum::<f32>() - 1.0).abs() < 1e-4));
}

#[test]
fn cli_rejects_bad_sequence_data() {
    let d = tmp("bad");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let write = |name: &str, text: &str| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        s(&p)
    };
    let out = s(&d.join("out"));
    let cases = [
        (
            write("order.csv", "seq,t,y\na,0,1.0\na,2,0.5\na,1,0.2\n"),
            vec![],
            ":4:",
            "out of order",
        ),
        (
            write("resume.csv", "seq,t,y\na,0,1.0\nb,0,0.5\na,1,0.2\n"),
            vec![],
            ":4:",
            "contiguous",
        ),
        (
            write("missing.csv", "seq,t,y\na,0,1.0\n,1,0.5\n"),
            vec![],
            ":3:",
            "missing sequence id",
        ),
        (
            write("few.csv", "seq,t,y\na,0,1.0\na,1,0.5\n"),
            vec![],
            "--states 3",
            "too few",
        ),
        (
            write("ok.csv", "seq,t,y\na,0,1.0\na,1,0.5\na,2,0.1\na,3,0.3\n"),
            vec!["--states", "0"],
            "--states",
            "at least 1",
        ),
        (
            write("binary.csv", "seq,t,x,y\na,0,1,1\na,1,0.3,2\n"),
            vec!["--model", "glmhmm", "--emission", "bernoulli", "--x", "x"],
            ":3:",
            "not 0 or 1",
        ),
    ];
    for (path, extra, place, what) in cases {
        let mut args = vec!["em", "--data", &path, "--out", &out, "--backend", "cpu"];
        if !extra.contains(&"--model") {
            args.extend(["--model", "hmm"]);
        }
        args.extend(extra.iter().copied());
        let (ok, _, err) = common::gpsamp(&args);
        assert!(!ok, "{path}: accepted");
        assert!(err.contains(place) && err.contains(what), "{path}: {err}");
        assert!(!err.contains("panicked"), "{path}: {err}");
    }
    assert!(!d.join("out").exists(), "a failed run wrote output");
}

#[test]
fn em_is_reproducible_across_thread_counts() {
    let spec = HmmSpec::regression(3, 1).unwrap();
    let (data, _) = data_for(&spec, &[vec![300, 200, 100], vec![150; 4]], 77);
    let cfg = EmConfig {
        restarts: 4,
        init: Init::Random,
        max_iters: 30,
        ..EmConfig::default()
    };
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| fit_cpu(&spec, &cfg, &data).unwrap())
    };
    let (a, b) = (run(1), run(3));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.params, y.params);
        assert_eq!(x.trace, y.trace);
    }
    if let Some(ctx) = gpu() {
        let g1 = gpsamp::hmm::gpu::fit_gpu(ctx.clone(), &spec, &cfg, &data).unwrap();
        let g2 = gpsamp::hmm::gpu::fit_gpu(ctx, &spec, &cfg, &data).unwrap();
        for (x, y) in g1.iter().zip(&g2) {
            assert_eq!(x.params, y.params, "GPU EM is not reproducible");
        }
    }
}

#[test]
fn cli_samples_a_glm_hmm_from_csv() {
    let d = tmp("sample");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let csv = d.join("sr.csv");
    gpsamp_ok(&[
        "simulate",
        "--model",
        "glmhmm",
        "--sequences",
        "4",
        "--steps",
        "50",
        "--out",
        &s(&csv),
    ]);
    let out = d.join("post");
    gpsamp_ok(&[
        "sample",
        "--model",
        "glmhmm",
        "--x",
        "x0",
        "--data",
        &s(&csv),
        "--chains",
        "4",
        "--warmup",
        "100",
        "--draws",
        "50",
        "--backend",
        "cpu",
        "--quiet",
        "--out",
        &s(&out),
    ]);
    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    for name in ["transition[2,1]", "bias[0]", "weight[2,0]", "sd[1]"] {
        assert!(summary.contains(name), "{name} missing from {summary}");
    }
    let (shape, _) = gpsamp::io::npy::read_f32(&out.join("draws.npy")).unwrap();
    assert_eq!(shape, vec![4, 50, 3 + 9 + 3 + 3 + 3]);
}

#[test]
fn cli_em_fits_groups_with_their_own_sequence_ids() {
    let d = tmp("groups");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let csv = d.join("g.csv");
    gpsamp_ok(&[
        "simulate",
        "--model",
        "hmm",
        "--datasets",
        "2",
        "--sequences",
        "2",
        "--out",
        &s(&csv),
    ]);
    let out = d.join("fit");
    let stdout = gpsamp_ok(&[
        "em",
        "--model",
        "hmm",
        "--data",
        &s(&csv),
        "--group",
        "dataset",
        "--restarts",
        "2",
        "--backend",
        "cpu",
        "--out",
        &s(&out),
    ]);
    assert_eq!(stdout.matches("log likelihood").count(), 2, "{stdout}");
    let params: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("params.json")).unwrap()).unwrap();
    assert_eq!(params["datasets"].as_array().unwrap().len(), 2);
    let states = std::fs::read_to_string(out.join("states.csv")).unwrap();
    assert_eq!(states.lines().next(), Some("group,seq,t,state"));
    assert_eq!(states.lines().count(), 1 + 2 * 2 * 200);
}

/// Simulation-based calibration of HMC on a 2-state Gaussian HMM: parameters drawn from the
/// priors, one sequence of 100 steps each, states sorted by their mean in truth and draws.
#[test]
fn hmc_on_the_hmm_is_calibrated() {
    use gpsamp::study::{sbc::report, Study};
    let model = Arc::new(
        Hmm::new(
            HmmSpec::gaussian(2, 1).unwrap(),
            HmmPriors {
                initial: 2.0,
                transition: 2.0,
                stickiness: 4.0,
                loc: gpsamp::model::Normal { mean: 0.0, sd: 3.0 },
                ..HmmPriors::default()
            },
        )
        .unwrap(),
    );
    let datasets = 200;
    let study = Study {
        generator: model.clone(),
        fit: model,
        points: 100,
        datasets,
        config: gpsamp::hmc::Config {
            chains: 4,
            warmup: 300,
            draws: 300,
            seed: 5,
            ..gpsamp::hmc::Config::default()
        },
        batch: 200,
        alpha: 0.001,
    };
    let t0 = std::time::Instant::now();
    let recs = study
        .run(0..datasets, &gpsamp::Backend::Cpu, &mut |_, _| {})
        .unwrap();
    let rep = report(&study.settings(), &recs);
    eprintln!(
        "HMM SBC: {datasets} datasets in {:.1} s\n{}",
        t0.elapsed().as_secs_f64(),
        gpsamp::study::io::summary_table(&rep)
    );
    assert!(rep.pass, "{}", gpsamp::study::io::summary_table(&rep));
    for q in &rep.quantities {
        assert!((q.coverage_95 - 0.95).abs() < 0.05, "{q:?}");
    }
}

#[test]
fn cli_sbc_runs_on_a_glm_hmm() {
    let d = tmp("sbc");
    let out = d.join("study");
    gpsamp_ok(&[
        "sbc",
        "--model",
        "glmhmm",
        "--states",
        "2",
        "--features",
        "1",
        "--n",
        "60",
        "--datasets",
        "8",
        "--warmup",
        "100",
        "--draws",
        "100",
        "--backend",
        "cpu",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    for name in [
        "transition[1,1]",
        "bias[1]",
        "weight[1,0]",
        "sd[0]",
        "log_lik",
    ] {
        assert!(summary.contains(name), "{name} missing from {summary}");
    }
}

#[test]
fn chains_start_around_the_given_centers() {
    let cfg = gpsamp::hmc::Config {
        chains: 3,
        init_radius: 0.5,
        init_centers: vec![vec![10.0, -10.0], vec![0.0, 5.0]],
        ..gpsamp::hmc::Config::default()
    };
    for c in 0..6 {
        let q = gpsamp::hmc::initial_position(&cfg, c, 0, 2);
        let center = &cfg.init_centers[c / 3];
        assert!(
            q.iter().zip(center).all(|(x, m)| (x - m).abs() <= 0.5),
            "chain {c}: {q:?}"
        );
    }
}
