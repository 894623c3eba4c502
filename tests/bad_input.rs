//! Regression tests for what a new user tripped on (issue 12): panics on bad files, sizes
//! that cannot fit, warnings hidden by `--quiet`, `--model-file` beating the command line or
//! refusing model flags, and errors that name the wrong flag.

mod common;

use common::{gpsamp_in, TempDir};

fn param_names(dir: &std::path::Path) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    serde_json::from_value(v["param_names"].clone()).unwrap()
}

#[test]
fn broken_mdn_model_files_are_refused_without_a_panic() {
    let t = TempDir::new("bad-mdn");
    let good = common::tiny_mdn(&t);
    for (edit, needle) in [
        (("simulator", "a", serde_json::json!(-1.0)), "simulator"),
        (("standardise", "x_sd", serde_json::json!([0.0])), "x_sd"),
        (
            ("standardise", "theta_sd", serde_json::json!([-2.0])),
            "theta_sd",
        ),
        (
            ("standardise", "x_mean", serde_json::json!([1.0, 2.0])),
            "x_mean",
        ),
    ] {
        let mut m = good.clone();
        m[edit.0][edit.1] = edit.2.clone();
        std::fs::write(t.join("net/model.json"), m.to_string()).unwrap();
        for cmd in [
            vec!["mdn", "eval", "--model", "net", "--coverage-sims", "10"],
            vec!["mdn", "predict", "--model", "net", "--y", "3"],
        ] {
            let (code, _, err) = gpsamp_in(&t.0, &cmd);
            assert_eq!(code, 1, "{cmd:?} with {edit:?}: {err}");
            assert!(!err.contains("panicked"), "{err}");
            assert!(err.contains("model.json") && err.contains(needle), "{err}");
        }
    }
}

#[test]
fn sizes_that_cannot_fit_are_refused_up_front() {
    let t = TempDir::new("bad-size");
    let start = std::time::Instant::now();
    for (args, flag) in [
        (
            vec![
                "sbc",
                "--model",
                "glm",
                "--datasets",
                "1000000000",
                "--out",
                "s",
            ],
            "--datasets",
        ),
        (
            vec!["mdn", "train", "--sims", "100000000000", "--out", "n"],
            "--sims",
        ),
        (
            vec![
                "simulate",
                "--model",
                "glm",
                "--n",
                "100000000000",
                "--out",
                "s.csv",
            ],
            "--n",
        ),
        (
            vec![
                "sample",
                "--model",
                "glm",
                "--chains",
                "10000000000",
                "--out",
                "f",
            ],
            "--chains",
        ),
    ] {
        let (code, _, err) = gpsamp_in(&t.0, &args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains(flag) && err.contains("GB") && err.contains("allows"),
            "{args:?}: {err}"
        );
    }
    assert!(
        common::snapshot(&t.0).is_empty(),
        "a refused run left files"
    );
    // Refused, not attempted: well under the time any of them would take.
    assert!(start.elapsed().as_secs() < 60);
}

#[test]
fn warnings_reach_stderr_with_quiet() {
    let t = TempDir::new("bad-quiet");
    let (code, out, err) = gpsamp_in(
        &t.0,
        &[
            "sample",
            "--model",
            "glm",
            "--warmup",
            "0",
            "--draws",
            "100",
            "--backend",
            "cpu",
            "--quiet",
            "--out",
            "fit",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty(), "--quiet printed {out}");
    for needle in [
        "--warmup 0",
        "divergent transitions",
        "R-hat",
        "bulk ESS",
        "stuck",
    ] {
        assert!(err.contains(needle), "no {needle:?} warning in {err}");
    }
}

#[test]
fn data_with_no_finite_log_density_names_its_columns() {
    let t = TempDir::new("bad-scale");
    std::fs::write(t.join("big.csv"), "x0,y\n0.1,1e300\n0.5,-2e300\n1,3e300\n").unwrap();
    let (code, _, err) = gpsamp_in(
        &t.0,
        &[
            "sample",
            "--model",
            "glm",
            "--data",
            "big.csv",
            "--x",
            "x0",
            "--backend",
            "cpu",
            "--quiet",
            "--out",
            "fit",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("no finite log density") && err.contains("y in [-2.000e300, 3.000e300]"),
        "{err}"
    );
    assert!(!t.join("fit").exists());
}

#[test]
fn command_line_beats_the_model_file_and_the_file_takes_every_model_flag() {
    let t = TempDir::new("bad-model-file");
    std::fs::write(
        t.join("m.toml"),
        "model = \"mixglm\"\ncomponents = 3\nprior_sigma = \"halfnormal(2)\"\n",
    )
    .unwrap();
    let (code, _, err) = gpsamp_in(
        &t.0,
        &[
            "simulate",
            "--model-file",
            "m.toml",
            "--n",
            "200",
            "--out",
            "d.csv",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let run = |extra: &[&str], out: &str| {
        let mut args = vec![
            "sample",
            "--model-file",
            "m.toml",
            "--data",
            "d.csv",
            "--x",
            "x0",
            "--chains",
            "2",
            "--warmup",
            "30",
            "--draws",
            "10",
            "--backend",
            "cpu",
            "--quiet",
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        gpsamp_in(&t.0, &args)
    };
    // A flag given with its default value still wins over the file.
    let (code, _, err) = run(&["--components", "2"], "two");
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        param_names(&t.join("two"))
            .iter()
            .filter(|n| n.starts_with("weights"))
            .count(),
        2
    );
    let (code, _, err) = run(&[], "three");
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        param_names(&t.join("three"))
            .iter()
            .filter(|n| n.starts_with("weights"))
            .count(),
        3
    );
    // eiv and HMM settings, arrays and booleans.
    std::fs::write(
        t.join("eiv.toml"),
        "model = \"eiv\"\nw = [1, 2, 0.5]\nvariant = \"shared\"\nobs_noise = true\n",
    )
    .unwrap();
    let (code, _, err) = gpsamp_in(
        &t.0,
        &[
            "sample",
            "--model-file",
            "eiv.toml",
            "--chains",
            "2",
            "--warmup",
            "30",
            "--draws",
            "10",
            "--backend",
            "cpu",
            "--quiet",
            "--out",
            "eiv",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let names = param_names(&t.join("eiv"));
    assert!(
        names.contains(&"sigma_obs".to_string()) && names.contains(&"b[2]".to_string()),
        "{names:?}"
    );
    std::fs::write(
        t.join("hmm.toml"),
        "model = \"hmm\"\nstates = 2\nstickiness = 5\n",
    )
    .unwrap();
    let (code, _, err) = gpsamp_in(
        &t.0,
        &[
            "simulate", "--model", "hmm", "--states", "2", "--out", "h.csv",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = gpsamp_in(
        &t.0,
        &[
            "em",
            "--model-file",
            "hmm.toml",
            "--data",
            "h.csv",
            "--restarts",
            "2",
            "--quiet",
            "--backend",
            "cpu",
            "--out",
            "em",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.join("em/params.json")).unwrap()).unwrap();
    assert_eq!(v["states"], 2);
    // Unknown keys and bad values are errors that name the file and the key.
    std::fs::write(t.join("bad.toml"), "model = \"glm\"\ncomponent = 2\n").unwrap();
    let (code, _, err) = gpsamp_in(&t.0, &["sample", "--model-file", "bad.toml", "--out", "y"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("bad.toml") && err.contains("`component`"),
        "{err}"
    );
    std::fs::write(
        t.join("bad2.toml"),
        "model = \"glm\"\ncomponents = \"two\"\n",
    )
    .unwrap();
    let (code, _, err) = gpsamp_in(&t.0, &["sample", "--model-file", "bad2.toml", "--out", "y"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("bad2.toml") && err.contains("`components`"),
        "{err}"
    );
}

#[test]
fn errors_name_the_flag_the_user_gave() {
    let t = TempDir::new("bad-flag");
    let (code, _, err) = gpsamp_in(
        &t.0,
        &[
            "sbc",
            "--model",
            "glm",
            "--chains-per-dataset",
            "0",
            "--out",
            "s",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("--chains-per-dataset"), "{err}");
    // The SBC table uses the CSV's names.
    let (code, out, err) = gpsamp_in(
        &t.0,
        &[
            "sbc",
            "--model",
            "glm",
            "--datasets",
            "3",
            "--n",
            "20",
            "--warmup",
            "30",
            "--draws",
            "30",
            "--backend",
            "cpu",
            "--out",
            "s",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("contraction") && !out.contains("shrink"),
        "{out}"
    );
    let csv = std::fs::read_to_string(t.join("s/summary.csv")).unwrap();
    assert!(csv.lines().next().unwrap().contains("contraction"));
}

#[test]
fn group_keys_reach_the_outputs() {
    let t = TempDir::new("bad-groups");
    let mut csv = String::from("site,x,y\n");
    for (g, shift) in [("north", 0.0), ("south", 3.0)] {
        for i in 0..40 {
            let x = i as f64 / 10.0 - 2.0;
            csv.push_str(&format!(
                "{g},{x},{}\n",
                shift + 0.5 * x + ((i * 7) % 5) as f64 * 0.1
            ));
        }
    }
    std::fs::write(t.join("sites.csv"), csv).unwrap();
    let (code, out, err) = gpsamp_in(
        &t.0,
        &[
            "sample",
            "--model",
            "glm",
            "--data",
            "sites.csv",
            "--x",
            "x",
            "--group",
            "site",
            "--chains",
            "2",
            "--warmup",
            "100",
            "--draws",
            "50",
            "--backend",
            "cpu",
            "--out",
            "fit",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("dataset north") && out.contains("dataset south"),
        "{out}"
    );
    let summary = std::fs::read_to_string(t.join("fit/summary.csv")).unwrap();
    assert!(
        summary.lines().nth(1).unwrap().starts_with("north,"),
        "{summary}"
    );
    assert!(
        summary.lines().last().unwrap().starts_with("south,"),
        "{summary}"
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.join("fit/meta.json")).unwrap()).unwrap();
    assert_eq!(meta["groups"], serde_json::json!(["north", "south"]));
    assert_eq!(meta["group_column"], "site");
}

#[test]
fn model_and_sampler_settings_errors_are_typed_with_their_flag() {
    use gpsamp::{Config, Eiv, EivVariant, Error, Likelihood, MixGlm, Priors};
    let flag = |e: Error| match e {
        Error::Config { flag, .. } => flag,
        other => panic!("expected a config error, got {other:?}"),
    };
    let p = Priors::default();
    let g = Likelihood::Gaussian;
    assert_eq!(flag(MixGlm::new(0, 1, g, p).unwrap_err()), "--components");
    assert_eq!(flag(MixGlm::new(65, 1, g, p).unwrap_err()), "--components");
    // No inputs is an intercept-only GLM, not an error.
    assert!(MixGlm::glm(g, 0, p).is_ok());
    let bern = MixGlm::glm(Likelihood::Bernoulli, 1, p).unwrap();
    assert_eq!(
        flag(bern.with_fixed_sigma(1.0).unwrap_err()),
        "--sigma-fixed"
    );
    let glm = MixGlm::glm(g, 1, p).unwrap();
    assert_eq!(
        flag(glm.with_fixed_sigma(-1.0).unwrap_err()),
        "--sigma-fixed"
    );
    let eiv = |w: Vec<f64>| Eiv::new(w, EivVariant::Shared, false);
    assert_eq!(flag(eiv(vec![]).unwrap_err()), "--w");
    assert_eq!(flag(eiv(vec![1.0, f64::NAN]).unwrap_err()), "--w");
    assert_eq!(
        flag(eiv(vec![1.0]).unwrap().with_systems(0).unwrap_err()),
        "--system"
    );
    assert_eq!(
        flag(gpsamp::hmm::HmmSpec::gaussian(0, 1).unwrap_err()),
        "--states"
    );
    let cfg = Config {
        draws: 0,
        ..Config::default()
    };
    assert_eq!(flag(cfg.validate().unwrap_err()), "--draws");
    let shape = |k: usize, hidden: Vec<usize>| gpsamp::mdn::Shape {
        input: 1,
        hidden,
        k,
        theta: 1,
    };
    assert_eq!(
        flag(shape(0, vec![4]).validate().unwrap_err()),
        "--components"
    );
    assert_eq!(flag(shape(2, vec![]).validate().unwrap_err()), "--hidden");
    assert_eq!(
        flag(shape(2, vec![2000]).validate().unwrap_err()),
        "--hidden"
    );
    let glm = std::sync::Arc::new(MixGlm::glm(g, 1, p).unwrap());
    let study = gpsamp::Study {
        generator: glm.clone(),
        fit: glm,
        points: 10,
        datasets: 4,
        config: Config::default(),
        batch: 1,
        alpha: 1.5,
        design: gpsamp::study::Design::Prior,
        given: None,
    };
    assert_eq!(flag(study.validate().unwrap_err()), "--alpha");
}
