//! Simulation studies: a correct sampler passes simulation-based calibration (Gaussian GLM,
//! mixture of regressions) over 1 000 datasets at alpha = 0.001; a mis-specified prior is
//! caught by the same machinery; shards merged equal one run byte for byte, on the CPU and
//! on the GPU.

mod common;

use std::sync::Arc;

use common::gpsamp;
use gpsamp::hmc::Config;
use gpsamp::model::Normal;
use gpsamp::study::sbc::report;
use gpsamp::study::Study;
use gpsamp::{Backend, Likelihood, MixGlm, Priors};

fn study(generator: MixGlm, fit: MixGlm, points: usize, datasets: usize, draws: usize) -> Study {
    Study {
        generator: Arc::new(generator),
        fit: Arc::new(fit),
        points,
        datasets,
        config: Config {
            chains: 4,
            warmup: draws,
            draws,
            seed: 11,
            ..Config::default()
        },
        batch: 512,
        alpha: 0.001,
        design: gpsamp::study::Design::Prior,
        given: None,
    }
}

#[test]
fn gaussian_glm_is_calibrated() {
    let m = MixGlm::glm(Likelihood::Gaussian, 2, Priors::default()).unwrap();
    let s = study(m.clone(), m, 50, 1000, 300);
    let recs = s.run(0..1000, &Backend::cpu(), &mut |_, _| {}).unwrap();
    let rep = report(&s.settings(), &recs);
    assert_eq!(
        rep.settings.quantities,
        ["beta[0]", "beta[1]", "alpha", "sigma", "log_lik"]
    );
    assert!(rep.pass, "{}", gpsamp::study::io::summary_table(&rep));
    for q in &rep.quantities {
        // 1 000 datasets: the 95% coverage has a binomial sd of 0.7 points.
        assert!((q.coverage_95 - 0.95).abs() < 0.03, "{q:?}");
        assert!((q.coverage_50 - 0.5).abs() < 0.06, "{q:?}");
    }
    assert_eq!(rep.failed, 0);
}

#[test]
fn mixture_of_regressions_is_calibrated() {
    // Components sorted by intercept in truth and draws alike (a label-free summary).
    let m = MixGlm::new(2, 1, Likelihood::Gaussian, Priors::default()).unwrap();
    let s = study(m.clone(), m, 100, 1000, 300);
    let recs = s.run(0..1000, &Backend::cpu(), &mut |_, _| {}).unwrap();
    let rep = report(&s.settings(), &recs);
    assert!(rep.pass, "{}", gpsamp::study::io::summary_table(&rep));
}

#[test]
fn a_misspecified_prior_is_detected() {
    // Data from beta ~ N(0, 1), fitted with N(0, 0.5): the posteriors are pulled to zero.
    let truth = MixGlm::glm(Likelihood::Gaussian, 1, Priors::default()).unwrap();
    let narrow = Priors {
        coef: Normal { mean: 0.0, sd: 0.5 },
        ..Priors::default()
    };
    let fit = MixGlm::glm(Likelihood::Gaussian, 1, narrow).unwrap();
    let s = study(truth, fit, 10, 1000, 200);
    let recs = s.run(0..1000, &Backend::cpu(), &mut |_, _| {}).unwrap();
    let rep = report(&s.settings(), &recs);
    let beta = &rep.quantities[0];
    assert_eq!(beta.quantity, "beta[0]");
    assert!(
        !beta.pass && !rep.pass,
        "{}",
        gpsamp::study::io::summary_table(&rep)
    );
    assert!(beta.coverage_95 < 0.93, "{beta:?}");
}

#[test]
fn a_dataset_gets_the_same_record_in_any_batch_and_thread_count() {
    let m = MixGlm::glm(Likelihood::Bernoulli, 1, Priors::default()).unwrap();
    let mut s = study(m.clone(), m, 30, 12, 100);
    let all = s.run(0..12, &Backend::cpu(), &mut |_, _| {}).unwrap();
    s.batch = 5;
    let part = s.run(7..12, &Backend::cpu(), &mut |_, _| {}).unwrap();
    assert_eq!(&all[7..], &part[..]);
    // ... and with any number of threads.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let single = pool.install(|| s.run(0..12, &Backend::cpu(), &mut |_, _| {}).unwrap());
    assert_eq!(all, single);
    if let Some(ctx) = common::gpu() {
        let gpu = Backend::Gpu(ctx);
        s.batch = 12;
        let all = s.run(0..12, &gpu, &mut |_, _| {}).unwrap();
        s.batch = 3;
        let part = s.run(5..12, &gpu, &mut |_, _| {}).unwrap();
        assert_eq!(&all[5..], &part[..]);
    }
}

#[test]
fn shards_merge_into_the_unsharded_report_byte_for_byte() {
    let dir = std::env::temp_dir().join(format!("gpsamp-shards-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "sbc",
            "--model",
            "mixglm",
            "--datasets",
            "30",
            "--n",
            "40",
            "--warmup",
            "150",
            "--draws",
            "100",
            "--backend",
            "cpu",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let (ok, _, e) = gpsamp(&args);
        assert!(ok, "{e}");
    };
    let whole = dir.join("whole");
    run(&whole, &[]);
    let mut shards = Vec::new();
    for (i, batch) in [(1, "2"), (2, "3"), (3, "8"), (4, "5")] {
        let d = dir.join(format!("shard{i}"));
        run(&d, &["--shard", &format!("{i}/4"), "--batch", batch]);
        shards.push(d);
    }
    // Merged in a shuffled order.
    let merged = dir.join("merged");
    let mut args = vec!["merge".to_string()];
    for i in [2, 0, 3, 1] {
        args.push(shards[i].display().to_string());
    }
    args.extend([
        "--out".into(),
        merged.display().to_string(),
        "--quiet".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, _, e) = gpsamp(&args);
    assert!(ok, "{e}");
    for f in ["study.json", "datasets.csv", "summary.csv", "summary.json"] {
        let a = std::fs::read(whole.join(f)).unwrap();
        let b = std::fs::read(merged.join(f)).unwrap();
        assert!(
            a == b,
            "{f} differs between the whole run and the merged shards"
        );
    }
    for f in [
        "rank_hist.svg",
        "ecdf_diff.svg",
        "coverage.svg",
        "recovery.svg",
    ] {
        assert!(
            std::fs::metadata(merged.join(f)).unwrap().len() > 1000,
            "{f}"
        );
    }
    // A missing shard and a foreign study are errors that say so.
    let bad = dir.join("bad");
    let refused = |folders: &[&std::path::PathBuf]| -> String {
        let mut args = vec!["merge"];
        args.extend(folders.iter().map(|f| f.to_str().unwrap()));
        args.extend(["--out", bad.to_str().unwrap()]);
        let (ok, _, e) = gpsamp(&args);
        assert!(!ok, "merging {folders:?} succeeded");
        e
    };
    let e = refused(&[&shards[0], &shards[2], &shards[3]]);
    assert!(e.contains("in none of the folders"), "{e}");
    let other = dir.join("other");
    run(&other, &["--shard", "2/4", "--seed", "5"]);
    let e = refused(&[&shards[0], &other]);
    assert!(e.contains("settings differ"), "{e}");
    // A dense metric reaches every fit (other records than the diagonal one's shard) and
    // is part of the settings, so its shard is not merged with diagonal ones.
    let dense = dir.join("dense");
    run(&dense, &["--shard", "2/4", "--metric", "dense"]);
    let study = std::fs::read_to_string(dense.join("study.json")).unwrap();
    assert!(study.contains("\"metric\": \"dense\""), "{study}");
    let csv = |d: &std::path::Path| std::fs::read_to_string(d.join("datasets.csv")).unwrap();
    assert_ne!(csv(&dense), csv(&shards[1]));
    assert!(!std::fs::read_to_string(shards[1].join("study.json"))
        .unwrap()
        .contains("metric"));
    let e = refused(&[&shards[0], &dense]);
    assert!(e.contains("settings differ"), "{e}");
    let (ok, _, e) = gpsamp(&[
        "sbc",
        "--model",
        "glm",
        "--shard",
        "0/4",
        "--out",
        bad.to_str().unwrap(),
    ]);
    assert!(!ok && e.contains("--shard"), "{e}");
    assert!(!bad.exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn strict_fails_a_miscalibrated_study_and_passes_a_calibrated_one() {
    let dir = std::env::temp_dir().join(format!("gpsamp-strict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let narrow = dir.join("narrow.toml");
    std::fs::write(&narrow, "model = \"glm\"\nprior_coef = \"normal(0,0.5)\"\n").unwrap();
    let out = dir.join("study");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "sbc",
            "--model",
            "glm",
            "--datasets",
            "500",
            "--n",
            "10",
            "--warmup",
            "200",
            "--draws",
            "200",
            "--backend",
            "cpu",
            "--strict",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        gpsamp(&args)
    };
    let summary = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
    };
    let (ok, _, e) = run(&[]);
    assert!(ok, "{e}");
    assert_eq!(summary()["pass"], true);
    assert_eq!(summary()["datasets"], 500);
    let (ok, _, e) = run(&["--fit-model-file", narrow.to_str().unwrap()]);
    assert!(
        !ok && e.contains("--strict") && e.contains("beta[0]"),
        "{e}"
    );
    // The report is written before the exit status says it failed.
    assert_eq!(summary()["pass"], false);
    std::fs::remove_dir_all(&dir).ok();
}
