//! Batched EM for HMMs: the penalised likelihood never decreases, the tutorial's three models
//! are recovered, the GPU E-step and GPU EM follow the CPU, and results do not depend on the
//! thread count.

#![allow(clippy::needless_range_loop)]

mod common;

use common::hmm::*;
use common::{gpu, rel_norm};
use gpsamp::hmm::em::{estep_cpu, fit_cpu, EmConfig, EmPriors, Init, Job};
use gpsamp::hmm::io::tutorial_params;
use gpsamp::hmm::{self, HmmParams, HmmSpec};
use gpsamp::DataBatch;

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
