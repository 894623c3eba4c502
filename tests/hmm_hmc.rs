//! HMC on HMMs: the tutorial HMM mixes and is recovered on both backends, SBC of a 2-state HMM
//! is calibrated, and chains start around the given centres.

#![allow(clippy::needless_range_loop)]

mod common;

use std::sync::Arc;

use common::gpu;
use common::hmm::*;
use gpsamp::hmm::io::tutorial_params;
use gpsamp::hmm::{self, HmmSpec};
use gpsamp::{Hmm, HmmPriors, Model};

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
    let mut backends = vec![gpsamp::Backend::cpu()];
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
        design: gpsamp::study::Design::Prior,
        given: None,
    };
    let t0 = std::time::Instant::now();
    let recs = study
        .run(0..datasets, &gpsamp::Backend::cpu(), &mut |_, _| {})
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
