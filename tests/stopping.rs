//! When a run stops on its own: the `--target-ess` rule (stops as soon as, and only when,
//! the draws meet it; records every check; keeps the bound when it cannot) and the adaptive
//! end of ensemble warmup (ends early for an ensemble that has adapted, never for fewer than
//! 64 chains, never when switched off), on the CPU.

mod common;

use std::sync::Arc;

use gpsamp::backend::Backend;
use gpsamp::diag;
use gpsamp::hmc::{self, Config, MemorySink, RunReport};
use gpsamp::{DataBatch, Likelihood, MixGlm, Model, Priors};

fn run(model: &MixGlm, cfg: &Config) -> (MemorySink, RunReport) {
    let sim = gpsamp::tutorial::for_model(model, 0).unwrap();
    let data = Arc::new(DataBatch::new(model.features(), &[sim.data]).unwrap());
    let m: Arc<dyn Model> = Arc::new(model.clone());
    let mut integ = hmc::integrator(&Backend::cpu(), m, data, cfg.chains, cfg.seed).unwrap();
    let mut sink = MemorySink::default();
    let rep = hmc::sample(
        integ.as_mut(),
        model,
        1,
        cfg,
        &mut sink,
        &mut |_, _, _, _| {},
    )
    .unwrap();
    (sink, rep)
}

fn glm() -> MixGlm {
    MixGlm::glm(Likelihood::Gaussian, 1, Priors::default()).unwrap()
}

#[test]
fn target_ess_stops_at_the_first_check_that_meets_it() {
    let model = glm();
    let target = 3000.0;
    let cfg = Config {
        chains: 64,
        superchain_size: 4,
        warmup: 300,
        adaptive_warmup: false,
        draws: 1000,
        seed: 5,
        target_ess: Some(target),
        ..Config::default()
    };
    let (sink, rep) = run(&model, &cfg);
    let t = rep.target.as_ref().unwrap();
    assert!(t.reached);
    assert!(t.nested_rhat_judges, "64 chains in superchains of 4");
    let n = rep.draws_completed;
    assert!(n < cfg.draws, "stopped early: {n} draws per chain");
    assert_eq!(sink.n_draws(), n);
    let last = t.checks.last().unwrap();
    assert_eq!(last.draws, n);
    assert!(last.reliable(target, true));
    // Earlier checks did not meet the rule (else it would have stopped there).
    for c in &t.checks[..t.checks.len() - 1] {
        assert!(!c.reliable(target, true), "{c:?}");
    }
    // The rule's figures are the summary's: recompute them from the kept draws.
    let mut min_ess = f64::INFINITY;
    let mut max_nested = 0.0f64;
    for i in 0..model.dim() {
        let chains: Vec<Vec<f64>> = (0..cfg.chains)
            .map(|c| {
                sink.trace(c, i)
                    .iter()
                    .map(|&v| {
                        let mut q = vec![0.0; model.dim()];
                        q[i] = v;
                        f64::from(model.constrain(&q)[i] as f32)
                    })
                    .collect()
            })
            .collect();
        min_ess = min_ess.min(diag::ess_bulk(&chains));
        max_nested = max_nested.max(diag::nested_rhat(&chains, 4));
    }
    assert!(
        (min_ess - last.min_ess_bulk).abs() < 1e-6 * min_ess,
        "{min_ess} vs {last:?}"
    );
    assert!(
        (max_nested - last.max_nested_rhat).abs() < 1e-9,
        "{max_nested} vs {last:?}"
    );
}

#[test]
fn an_unreachable_target_keeps_every_draw_and_says_so() {
    let cfg = Config {
        chains: 4,
        warmup: 200,
        draws: 60,
        seed: 2,
        target_ess: Some(1e9),
        ..Config::default()
    };
    let (sink, rep) = run(&glm(), &cfg);
    let t = rep.target.unwrap();
    assert!(!t.reached);
    assert!(!t.nested_rhat_judges, "4 chains: the classic R-hat judges");
    assert_eq!(rep.draws_completed, 60);
    assert_eq!(sink.n_draws(), 60);
    assert!(!t.checks.is_empty());
}

#[test]
fn nested_rhat_from_moments_equals_nested_rhat() {
    let mut rng = gpsamp::rng::host_rng(9, 0, gpsamp::rng::Purpose::Other);
    let chains: Vec<Vec<f64>> = (0..12)
        .map(|c| {
            (0..50)
                .map(|_| rand::RngExt::random::<f64>(&mut rng) + 0.1 * (c / 4) as f64)
                .collect()
        })
        .collect();
    let means: Vec<f64> = chains
        .iter()
        .map(|c| c.iter().sum::<f64>() / 50.0)
        .collect();
    let vars: Vec<f64> = chains
        .iter()
        .zip(&means)
        .map(|(c, m)| c.iter().map(|v| (v - m).powi(2)).sum::<f64>() / 49.0)
        .collect();
    for size in [1, 2, 4] {
        let a = diag::nested_rhat(&chains, size);
        let b = diag::nested_rhat_moments(&means, &vars, size);
        assert!((a - b).abs() < 1e-12, "size {size}: {a} vs {b}");
        assert!(a > 1.0);
    }
}

#[test]
fn ensemble_warmup_ends_when_adapted_and_only_then() {
    let model = MixGlm::mixreg(2, 1, Priors::default()).unwrap();
    let cfg = Config {
        chains: 256,
        superchain_size: 4,
        warmup: 1000,
        draws: 30,
        seed: 3,
        ..Config::default()
    };
    let (sink, rep) = run(&model, &cfg);
    let at = rep
        .warmup_adapted_at
        .expect("the ensemble adapts before 1000");
    // At an ensemble window's end (they stop doubling at 100), then one terminal buffer.
    assert!(
        hmc::adapt::ensemble_windows(1000, 256).contains(&at),
        "{at}"
    );
    assert_eq!(rep.warmup_iterations, at + 50);
    assert!(rep.warmup_iterations < 1000);
    assert_eq!(rep.draws_completed, 30);
    // And the short warmup still finds the tutorial's slopes (0.8 and -0.5, in either order).
    let names = model.param_names();
    let idx: Vec<usize> = ["beta[0,0]", "beta[1,0]"]
        .iter()
        .map(|n| names.iter().position(|m| m == n).unwrap())
        .collect();
    let d = model.dim();
    let mut slopes = [0.0; 2];
    for row in sink.draws.chunks(d) {
        let x = model.constrain(row);
        slopes[0] += x[idx[0]];
        slopes[1] += x[idx[1]];
    }
    slopes
        .iter_mut()
        .for_each(|s| *s /= (sink.draws.len() / d) as f64);
    let (lo, hi) = (slopes[0].min(slopes[1]), slopes[0].max(slopes[1]));
    assert!(
        (lo + 0.5).abs() < 0.1 && (hi - 0.8).abs() < 0.1,
        "{slopes:?}"
    );

    // Fewer than 64 chains, or the switch off: the whole schedule.
    let small = Config {
        chains: 4,
        warmup: 300,
        draws: 5,
        ..cfg.clone()
    };
    let (_, rep) = run(&model, &small);
    assert_eq!((rep.warmup_iterations, rep.warmup_adapted_at), (300, None));
    let fixed = Config {
        chains: 64,
        warmup: 300,
        draws: 5,
        adaptive_warmup: false,
        ..cfg
    };
    let (_, rep) = run(&model, &fixed);
    assert_eq!((rep.warmup_iterations, rep.warmup_adapted_at), (300, None));
}

#[test]
fn sample_target_ess_keeps_the_draws_made_and_records_the_checks() {
    let t = common::TempDir::new("target-ess");
    let (code, _, err) = common::gpsamp_in(
        &t.0,
        &[
            "sample",
            "--model",
            "glm",
            "--chains",
            "4",
            "--warmup",
            "200",
            "--draws",
            "3000",
            "--target-ess",
            "800",
            "--backend",
            "cpu",
            "--out",
            "fit",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("--target-ess 800: reached after"), "{err}");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.0.join("fit/meta.json")).unwrap()).unwrap();
    let n = meta["draws_completed"].as_u64().unwrap() as usize;
    assert!(n > 0 && n < 3000, "{n}");
    assert_eq!(meta["interrupted"], false);
    let target = &meta["report"]["target"];
    assert_eq!(target["reached"], true);
    assert_eq!(
        target["checks"].as_array().unwrap().last().unwrap()["draws"],
        n
    );
    let (shape, _) = gpsamp::io::npy::read_f32(&t.0.join("fit/draws.npy")).unwrap();
    assert_eq!(shape, vec![4, n, 3]);
    // The summary written says what the rule saw.
    let csv = std::fs::read_to_string(t.0.join("fit/summary.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "ess_bulk").unwrap();
    for line in csv.lines().skip(1) {
        let ess: f64 = line.split(',').nth(col).unwrap().parse().unwrap();
        assert!(ess >= 800.0, "{line}");
    }
}

#[test]
fn studies_record_each_datasets_warmup_and_an_ensemble_ends_it_early() {
    // Three datasets fitted one at a time by 256 chains: each batch's warmup may end on its
    // own; the records say how long it ran, and datasets.csv keeps it.
    let model = MixGlm::mixreg(2, 1, Priors::default()).unwrap();
    let study = gpsamp::study::Study {
        generator: Arc::new(model.clone()),
        fit: Arc::new(model),
        points: 100,
        datasets: 3,
        config: Config {
            chains: 256,
            superchain_size: 4,
            warmup: 1000,
            draws: 10,
            seed: 4,
            ..Config::default()
        },
        batch: 1,
        alpha: 0.001,
        design: gpsamp::study::Design::Prior,
        given: None,
    };
    let recs = study.run(0..3, &Backend::cpu(), &mut |_, _| {}).unwrap();
    assert!(recs.iter().all(|r| r.warmup_iterations <= 1000));
    assert!(
        recs.iter().any(|r| r.warmup_iterations < 1000),
        "{:?}",
        recs.iter().map(|r| r.warmup_iterations).collect::<Vec<_>>()
    );
    let settings = study.settings();
    let rep = gpsamp::study::sbc::report(&settings, &recs);
    assert_eq!(
        rep.warmup_ended_early,
        recs.iter().filter(|r| r.warmup_iterations < 1000).count()
    );
    let t = common::TempDir::new("study-warmup");
    let path = t.0.join("datasets.csv");
    std::fs::write(&path, gpsamp::study::io::datasets_csv(&settings, &recs)).unwrap();
    assert_eq!(
        gpsamp::study::io::read_datasets_csv(&path, &settings).unwrap(),
        recs
    );
}

#[test]
fn sbc_with_the_adaptive_warmup_end_is_calibrated_and_ends_early_often() {
    // The Bernoulli GLM from its prior, 150 datasets fitted one at a time by 64 chains,
    // warmup at most 500 and ending when adapted (as `gpsamp sbc` runs it without
    // --warmup): a third of the datasets end early here (46 of 150), so calibration checks
    // the early end, not only the full schedule. Deterministic: the CPU draws are the same
    // bits on every SIMD tier.
    let model = MixGlm::glm(Likelihood::Bernoulli, 1, Priors::default()).unwrap();
    let study = gpsamp::study::Study {
        generator: Arc::new(model.clone()),
        fit: Arc::new(model),
        points: 100,
        datasets: 150,
        config: Config {
            chains: 64,
            superchain_size: 4,
            warmup: 500,
            adaptive_warmup: true,
            draws: 20,
            seed: 0,
            ..Config::default()
        },
        batch: 1,
        alpha: 0.001,
        design: gpsamp::study::Design::Prior,
        given: None,
    };
    let recs = study.run(0..150, &Backend::cpu(), &mut |_, _| {}).unwrap();
    let rep = gpsamp::study::sbc::report(&study.settings(), &recs);
    assert!(
        rep.warmup_ended_early >= 30,
        "only {} of 150 datasets ended warmup early",
        rep.warmup_ended_early
    );
    assert!(rep.pass, "{:#?}", rep.quantities);
}
