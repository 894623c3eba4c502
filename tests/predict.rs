//! Posterior predictive draws: `sample --y-rep` writes a replicate of the data per draw whose
//! mean follows the fitted line, the overlay figure `ppc.svg` parses and names its axes,
//! `gpsamp predict` at the fit's own inputs and seed reproduces y_rep exactly, its
//! intervals at new inputs have the width the posterior implies, and bad input is refused.

mod common;

use std::collections::HashMap;

fn summary_means(path: &std::path::Path) -> HashMap<String, f64> {
    let mut rdr = csv::Reader::from_path(path).unwrap();
    let head = rdr.headers().unwrap().clone();
    let p = head.iter().position(|h| h == "param").unwrap();
    let m = head.iter().position(|h| h == "mean").unwrap();
    rdr.records()
        .map(|r| {
            let r = r.unwrap();
            (r[p].to_string(), r[m].parse().unwrap())
        })
        .collect()
}

#[test]
fn y_rep_and_predict_agree_and_follow_the_fit() {
    let dir = common::TempDir::new("predict");
    let (ok, _, err) = common::gpsamp(&[
        "simulate",
        "--model",
        "glm",
        "--n",
        "60",
        "--seed",
        "3",
        "--out",
        &dir.s("data.csv"),
    ]);
    assert!(ok, "{err}");
    let fit = dir.s("fit");
    let (ok, out, err) = common::gpsamp(&[
        "sample",
        "--model",
        "glm",
        "--data",
        &dir.s("data.csv"),
        "--x",
        "x0",
        "--chains",
        "8",
        "--draws",
        "500",
        "--seed",
        "5",
        "--y-rep",
        "--backend",
        "cpu",
        "--out",
        &fit,
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("y_rep.npy") && out.contains("ppc.svg"),
        "{out}"
    );
    let (shape, y_rep) = gpsamp::io::npy::read_f32(&dir.join("fit/y_rep.npy")).unwrap();
    assert_eq!(shape, vec![8, 500, 60]);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("fit/meta.json")).unwrap()).unwrap();
    assert_eq!(meta["y_rep_shape"], serde_json::json!([8, 500, 60]));
    assert_eq!(meta["x_columns"], serde_json::json!(["x0"]));
    assert!(meta["figures"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("ppc.svg")));
    common::assert_svg(
        &dir.join("fit/ppc.svg"),
        &[
            "density of y",
            "y against x0",
            "observed y",
            "50 replicates (y_rep)",
            "posterior mean line",
            "5-95% of y_rep",
        ],
    );

    // Each observation's replicates centre on the fitted line: |mean - (a + b x)| within 5
    // standard errors (sigma / sqrt(4 000) and the line's own uncertainty are both small).
    let means = summary_means(&dir.join("fit/summary.csv"));
    let (a, b, sigma) = (means["alpha"], means["beta[0]"], means["sigma"]);
    let data = std::fs::read_to_string(dir.join("data.csv")).unwrap();
    let x: Vec<f64> = data
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    let s = 8 * 500;
    for (i, &xi) in x.iter().enumerate() {
        let v: Vec<f64> = (0..s).map(|d| f64::from(y_rep[d * 60 + i])).collect();
        let m = v.iter().sum::<f64>() / s as f64;
        let sd = (v.iter().map(|y| (y - m).powi(2)).sum::<f64>() / s as f64).sqrt();
        assert!(
            (m - (a + b * xi)).abs() < 5.0 * sd / (s as f64).sqrt() + 0.05 * sigma,
            "obs {i}"
        );
        // The predictive sd is sigma widened a little by the posterior's spread.
        assert!(
            sd > sigma * 0.97 && sd < sigma * 1.25,
            "obs {i}: sd {sd}, sigma {sigma}"
        );
    }

    // predict at the fit's own inputs, with the fit's seed, is y_rep exactly.
    let (ok, out, err) = common::gpsamp(&[
        "predict",
        "--fit",
        &fit,
        "--data",
        &dir.s("data.csv"),
        "--seed",
        "5",
        "--out",
        &dir.s("pred"),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("60 rows x 4000 draws"), "{out}");
    let (shape, y_pred) = gpsamp::io::npy::read_f32(&dir.join("pred/y_pred.npy")).unwrap();
    assert_eq!(shape, vec![8, 500, 60]);
    assert_eq!(y_pred, y_rep);

    // New inputs: the 95% predictive interval is about 2 x 1.96 sigma wide around a + b x.
    std::fs::write(dir.join("new.csv"), "other,x0\nq,-2\nr,0\ns,3\n").unwrap();
    let (ok, _, err) = common::gpsamp(&[
        "predict",
        "--fit",
        &fit,
        "--data",
        &dir.s("new.csv"),
        "--out",
        &dir.s("pred_new"),
    ]);
    assert!(ok, "{err}");
    let mut rdr = csv::Reader::from_path(dir.join("pred_new/predictions.csv")).unwrap();
    let head: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        head,
        ["x0", "mean", "sd", "q2.5", "q5", "q50", "q95", "q97.5"]
    );
    for r in rdr.records() {
        let r: Vec<f64> = r.unwrap().iter().map(|v| v.parse().unwrap()).collect();
        let (xi, mean, lo, hi) = (r[0], r[1], r[3], r[7]);
        assert!((mean - (a + b * xi)).abs() < 0.1 * sigma, "{r:?}");
        let width = (hi - lo) / (2.0 * 1.96 * sigma);
        assert!(width > 0.95 && width < 1.3, "{r:?}: width ratio {width}");
        assert!(lo < r[4] && r[4] < r[5] && r[5] < r[6] && r[6] < hi);
    }

    // Bad input: a missing input column, and a folder that is not a fit.
    std::fs::write(dir.join("bad.csv"), "x1\n1\n").unwrap();
    let (ok, _, err) = common::gpsamp(&[
        "predict",
        "--fit",
        &fit,
        "--data",
        &dir.s("bad.csv"),
        "--out",
        &dir.s("p2"),
    ]);
    assert!(
        !ok && err.contains("bad.csv:1:x0") && err.contains("not found"),
        "{err}"
    );
    let (ok, _, err) = common::gpsamp(&[
        "predict",
        "--fit",
        &dir.s("pred"),
        "--data",
        &dir.s("new.csv"),
        "--out",
        &dir.s("p2"),
    ]);
    assert!(
        !ok && err.contains("not a folder written by `gpsamp sample`"),
        "{err}"
    );
    assert!(!dir.join("p2").exists());
}

#[test]
fn y_rep_is_reproducible_and_skipped_where_undefined() {
    let dir = common::TempDir::new("predict_repro");
    let run = |out: &str| {
        let (ok, _, err) = common::gpsamp(&[
            "sample",
            "--model",
            "mixglm",
            "--chains",
            "4",
            "--draws",
            "100",
            "--warmup",
            "100",
            "--y-rep",
            "--no-plots",
            "--quiet",
            "--backend",
            "cpu",
            "--out",
            out,
        ]);
        assert!(ok, "{err}");
    };
    run(&dir.s("a"));
    run(&dir.s("b"));
    let a = std::fs::read(dir.join("a/y_rep.npy")).unwrap();
    assert_eq!(a, std::fs::read(dir.join("b/y_rep.npy")).unwrap());
    // An HMM has no responses given inputs: no file, and a note says why.
    let (ok, out, err) = common::gpsamp(&[
        "sample",
        "--model",
        "hmm",
        "--chains",
        "4",
        "--draws",
        "50",
        "--warmup",
        "50",
        "--y-rep",
        "--no-plots",
        "--backend",
        "cpu",
        "--out",
        &dir.s("h"),
    ]);
    assert!(ok, "{err}");
    assert!(!dir.join("h/y_rep.npy").exists());
    assert!(format!("{out}{err}").contains("no y_rep.npy"), "{out}{err}");
}

#[test]
fn plot_redraws_the_predictive_check_while_the_data_file_is_there() {
    let dir = common::TempDir::new("ppc_redraw");
    let (ok, _, err) = common::gpsamp(&[
        "simulate",
        "--model",
        "glm",
        "--n",
        "80",
        "--out",
        &dir.s("data.csv"),
    ]);
    assert!(ok, "{err}");
    let fit = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "sample",
            "--model",
            "glm",
            "--data",
            "data.csv",
            "--x",
            "x0",
            "--chains",
            "4",
            "--draws",
            "100",
            "--backend",
            "cpu",
            "--quiet",
            "--out",
            out,
        ];
        args.extend(extra);
        let (code, _, err) = common::gpsamp_in(&dir.join(""), &args);
        assert_eq!(code, 0, "{err}");
    };
    fit("with", &[]);
    fit("bare", &["--no-plots"]);
    assert!(!dir.join("bare/ppc.svg").exists());
    let (code, out, err) = common::gpsamp_in(&dir.join(""), &["plot", "bare"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ppc.svg"), "{out}");
    assert_eq!(
        std::fs::read(dir.join("bare/ppc.svg")).unwrap(),
        std::fs::read(dir.join("with/ppc.svg")).unwrap()
    );
}

#[test]
fn the_errors_in_variables_model_predicts_from_its_draws() {
    let dir = common::TempDir::new("predict_eiv");
    let (ok, _, err) = common::gpsamp(&[
        "simulate",
        "--model",
        "eiv",
        "--w",
        "1,2,0.5",
        "--n",
        "300",
        "--out",
        &dir.s("eiv.csv"),
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = common::gpsamp(&[
        "sample",
        "--model",
        "eiv",
        "--w",
        "1,2,0.5",
        "--data",
        &dir.s("eiv.csv"),
        "--x",
        "x0,x1,x2",
        "--chains",
        "8",
        "--y-rep",
        "--backend",
        "cpu",
        "--quiet",
        "--out",
        &dir.s("fit"),
    ]);
    assert!(ok, "{err}");
    assert!(dir.join("fit/y_rep.npy").exists() && dir.join("fit/ppc.svg").exists());
    std::fs::write(dir.join("new.csv"), "x0,x1,x2\n1,0,0\n0,1,0\n").unwrap();
    let (ok, _, err) = common::gpsamp(&[
        "predict",
        "--fit",
        &dir.s("fit"),
        "--data",
        &dir.s("new.csv"),
        "--out",
        &dir.s("pred"),
    ]);
    assert!(ok, "{err}");
    let means = summary_means(&dir.join("fit/summary.csv"));
    let sx = means["sigma_x"];
    // y = sum_j (x_j + a_j) w_j (1 + b_j): at x = e_j the mean is w_j (1 + b_j), the sd
    // about sigma_x |w| (1 + b) over all j.
    let spread = sx * (1.0f64 + 4.0 + 0.25).sqrt();
    let mut rdr = csv::Reader::from_path(dir.join("pred/predictions.csv")).unwrap();
    for (j, r) in rdr.records().enumerate() {
        let r: Vec<f64> = r.unwrap().iter().map(|v| v.parse().unwrap()).collect();
        let w = [1.0, 2.0][j];
        let want = w * (1.0 + means[&format!("b[{j}]")]);
        assert!(
            (r[3] - want).abs() < 0.1,
            "row {j}: mean {} vs {want}",
            r[3]
        );
        assert!(
            (r[4] / spread - 1.0).abs() < 0.15,
            "row {j}: sd {} vs {spread}",
            r[4]
        );
    }
}
