//! Starting and continuing (issue 15): `--adapt-from` reuses an earlier fit's adaptation and
//! last draws and gives the same posterior without warmup; `--init FILE` is honoured in each
//! of its formats and bad files are refused by name; an intercept-only GLM (`--model glm`
//! without `--x`) matches its conjugate posterior.

mod common;

use std::collections::HashMap;

/// summary.csv rows: param -> (mean, sd, mcse_mean).
fn summary(path: &std::path::Path) -> HashMap<String, (f64, f64, f64)> {
    let mut rdr = csv::Reader::from_path(path).unwrap();
    let head = rdr.headers().unwrap().clone();
    let col = |n: &str| head.iter().position(|h| h == n).unwrap();
    let (p, m, s, e) = (col("param"), col("mean"), col("sd"), col("mcse_mean"));
    rdr.records()
        .map(|r| {
            let r = r.unwrap();
            let f = |i: usize| r[i].parse::<f64>().unwrap();
            (r[p].to_string(), (f(m), f(s), f(e)))
        })
        .collect()
}

fn meta(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path.join("meta.json")).unwrap()).unwrap()
}

fn simulate(dir: &common::TempDir) -> String {
    let data = dir.s("data.csv");
    let (ok, _, err) = common::gpsamp(&[
        "simulate", "--model", "glm", "--n", "60", "--seed", "2", "--out", &data,
    ]);
    assert!(ok, "{err}");
    data
}

#[test]
fn adapt_from_gives_the_same_posterior_without_warmup() {
    let dir = common::TempDir::new("adapt_from");
    let data = simulate(&dir);
    let fit = |out: &str, seed: &str, extra: &[&str]| {
        let mut args = vec![
            "sample",
            "--model",
            "glm",
            "--data",
            &data,
            "--x",
            "x0",
            "--chains",
            "16",
            "--draws",
            "1000",
            "--seed",
            seed,
            "--backend",
            "cpu",
            "--quiet",
            "--no-plots",
            "--out",
            out,
        ];
        args.extend(extra);
        let (ok, _, err) = common::gpsamp(&args);
        assert!(ok, "{err}");
    };
    fit(&dir.s("first"), "1", &[]);
    fit(&dir.s("again"), "2", &["--adapt-from", &dir.s("first")]);
    let (m1, m2) = (meta(&dir.join("first")), meta(&dir.join("again")));
    assert!(m1["report"]["warmup_iterations"].as_u64().unwrap() > 0);
    assert_eq!(m2["report"]["warmup_iterations"], 0);
    for key in ["step_size", "trajectory_length", "inv_mass"] {
        assert_eq!(
            m1["report"]["datasets"][0][key], m2["report"]["datasets"][0][key],
            "{key}"
        );
    }
    let (s1, s2) = (
        summary(&dir.join("first/summary.csv")),
        summary(&dir.join("again/summary.csv")),
    );
    for (name, &(mean1, sd1, e1)) in &s1 {
        let (mean2, sd2, e2) = s2[name];
        let z = (mean1 - mean2) / (e1 * e1 + e2 * e2).sqrt();
        assert!(z.abs() < 4.0, "{name}: means {mean1} vs {mean2} (z {z})");
        assert!((sd2 / sd1 - 1.0).abs() < 0.08, "{name}: sds {sd1} vs {sd2}");
    }
    // Another model's folder is refused, naming the flag and the model.
    std::fs::write(dir.join("counts.csv"), "x0,y\n0,1\n1,2\n2,4\n").unwrap();
    let (ok, _, err) = common::gpsamp(&[
        "sample",
        "--model",
        "glm",
        "--family",
        "poisson",
        "--data",
        &dir.s("counts.csv"),
        "--x",
        "x0",
        "--adapt-from",
        &dir.s("first"),
        "--out",
        &dir.s("bad"),
    ]);
    assert!(
        !ok && err.contains("--adapt-from") && err.contains("glm-gaussian"),
        "{err}"
    );
    assert!(!dir.join("bad").exists());
}

#[test]
fn init_files_are_honoured_in_every_format() {
    let dir = common::TempDir::new("init");
    let data = simulate(&dir);
    // Start far from the posterior, with no Adam steps and no warmup: the first draw is
    // still within reach of the start (alpha = 50), which no random start would give.
    let start = |init: &str, out: &str| -> (bool, String) {
        let (ok, _, err) = common::gpsamp(&[
            "sample",
            "--model",
            "glm",
            "--data",
            &data,
            "--x",
            "x0",
            "--chains",
            "4",
            "--warmup",
            "0",
            "--draws",
            "1",
            "--init-steps",
            "0",
            "--init",
            init,
            "--backend",
            "cpu",
            "--quiet",
            "--no-plots",
            "--out",
            out,
        ]);
        (ok, err)
    };
    let first_alpha = |out: &str| -> Vec<f64> {
        let (shape, d) = gpsamp::io::npy::read_f32(&dir.join(out).join("draws.npy")).unwrap();
        assert_eq!(shape, vec![4, 1, 3]);
        d.chunks(3).map(|r| f64::from(r[1])).collect()
    };
    std::fs::write(
        dir.join("values.json"),
        r#"{"alpha": 50, "beta[0]": 1, "sigma": 1.5}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("truth.json"),
        r#"{"truth": [{"alpha": 50, "beta[0]": 1, "sigma": 1.5}]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("summary.json"),
        r#"[{"param": "beta[0]", "mean": 1.0, "sd": 0.1}, {"param": "alpha", "mean": 50.0},
           {"param": "sigma", "mean": 1.5}]"#,
    )
    .unwrap();
    for (file, out) in [
        ("values.json", "v"),
        ("truth.json", "t"),
        ("summary.json", "s"),
    ] {
        let (ok, err) = start(&dir.s(file), &dir.s(out));
        assert!(ok, "{file}: {err}");
        for a in first_alpha(out) {
            assert!((a - 50.0).abs() < 1.0, "{file}: first alpha {a}");
        }
    }
    // A random start is nowhere near.
    let (ok, err) = start("random", &dir.s("r"));
    assert!(ok, "{err}");
    assert!(first_alpha("r").iter().all(|a| a.abs() < 10.0));
    // Bad files name the flag, the file and what is wrong.
    for (text, what) in [
        (r#"{"alpha": 1, "beta[0]": 1}"#, "no value for sigma"),
        (
            r#"{"alpha": 1, "beta[0]": 1, "sigma": 1, "gamma": 2}"#,
            "gamma is not a parameter",
        ),
        (r#"{"alpha": 1, "beta[0]": 1, "sigma": -1}"#, "sigma"),
        ("[1, 2", "not JSON"),
    ] {
        std::fs::write(dir.join("bad.json"), text).unwrap();
        let (ok, err) = start(&dir.s("bad.json"), &dir.s("bad"));
        assert!(
            !ok && err.contains("--init") && err.contains("bad.json") && err.contains(what),
            "{text}: {err}"
        );
    }
    let (ok, err) = start("nowhere.json", &dir.s("bad"));
    assert!(
        !ok && err.contains("auto, random, em, or a JSON file"),
        "{err}"
    );
    assert!(!dir.join("bad").exists());
}

#[test]
fn an_intercept_only_glm_matches_its_conjugate_posterior() {
    let dir = common::TempDir::new("intercept");
    let y = [1.2, 0.4, 2.2, 1.9, 0.7, 1.1, 1.6, 2.5, 0.9, 1.3];
    let mut text = String::from("y\n");
    for v in y {
        text.push_str(&format!("{v}\n"));
    }
    std::fs::write(dir.join("y.csv"), text).unwrap();
    let (ok, _, err) = common::gpsamp(&[
        "sample",
        "--model",
        "glm",
        "--sigma-fixed",
        "1",
        "--data",
        &dir.s("y.csv"),
        "--chains",
        "16",
        "--draws",
        "2000",
        "--backend",
        "cpu",
        "--quiet",
        "--no-plots",
        "--out",
        &dir.s("fit"),
    ]);
    assert!(ok, "{err}");
    // alpha ~ N(0, 1), y_i ~ N(alpha, 1): posterior N(sum y / (n + 1), 1 / (n + 1)).
    let n = y.len() as f64;
    let (mean, sd) = (y.iter().sum::<f64>() / (n + 1.0), (1.0 / (n + 1.0)).sqrt());
    let s = summary(&dir.join("fit/summary.csv"));
    assert_eq!(s.len(), 1, "{s:?}");
    let (m, sdev, e) = s["alpha"];
    assert!(((m - mean) / e).abs() < 4.0, "mean {m} vs {mean}");
    assert!((sdev / sd - 1.0).abs() < 0.05, "sd {sdev} vs {sd}");
}

#[test]
fn simulate_tutorial_writes_the_data_sample_fits_without_data() {
    let dir = common::TempDir::new("tutorial_csv");
    let (ok, _, err) = common::gpsamp(&[
        "simulate",
        "--model",
        "mixglm",
        "--components",
        "2",
        "--tutorial",
        "--out",
        &dir.s("tut.csv"),
    ]);
    assert!(ok, "{err}");
    let args = |extra: &[&str], out: &str| {
        let mut v = vec![
            "sample",
            "--model",
            "mixglm",
            "--components",
            "2",
            "--chains",
            "4",
            "--warmup",
            "100",
            "--draws",
            "50",
            "--backend",
            "cpu",
            "--quiet",
            "--no-plots",
            "--out",
        ];
        v.push(out);
        v.extend(extra);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let (ok, _, err) = common::gpsamp(&a);
        assert!(ok, "{err}");
    };
    run(args(&[], &dir.s("builtin")));
    run(args(
        &["--data", &dir.s("tut.csv"), "--x", "x0"],
        &dir.s("file"),
    ));
    assert_eq!(
        std::fs::read(dir.join("builtin/draws.npy")).unwrap(),
        std::fs::read(dir.join("file/draws.npy")).unwrap()
    );
}
