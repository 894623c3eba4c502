//! PSIS-LOO and the comparison table against ArviZ 0.23 on committed fixtures
//! (`tests/fixtures/loo/make_fixtures.py`: three models of 20 points with two outliers,
//! 4 chains × 75 AR(1) draws, one model with Pareto k above the threshold), and `gpsamp loo`
//! on sample folders against `az.loo` on the same files.

mod common;

use gpsamp::diag::loo::{compare, loo, relative_efficiency};

fn close(a: f64, b: f64, rel: f64, what: &str) {
    assert!(
        (a - b).abs() <= rel * (1.0 + b.abs()),
        "{what}: gpsamp {a}, ArviZ {b}"
    );
}

#[test]
fn loo_and_compare_equal_arviz() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/loo/loo.json"
    ))
    .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut fits = Vec::new();
    let mut warned = 0;
    for (name, m) in doc["models"].as_object().unwrap() {
        let mu: Vec<Vec<f64>> = serde_json::from_value(m["mu"].clone()).unwrap();
        let ll: Vec<Vec<Vec<f64>>> = serde_json::from_value(m["log_lik"].clone()).unwrap();
        let n_obs = ll[0][0].len();
        let flat: Vec<f64> = ll.iter().flatten().flatten().copied().collect();
        let r_eff = relative_efficiency(&[mu]);
        let got = loo(&flat, n_obs, r_eff);
        let want = &m["expected"];
        let f = |k: &str| want[k].as_f64().unwrap();
        close(got.elpd_loo, f("elpd_loo"), 1e-9, "elpd_loo");
        close(got.se, f("se"), 1e-9, "se");
        close(got.p_loo, f("p_loo"), 1e-8, "p_loo");
        close(got.good_k, f("good_k"), 1e-12, "good_k");
        assert_eq!(got.warning, want["warning"].as_bool().unwrap(), "{name}");
        warned += usize::from(got.warning);
        for (i, (k, wk)) in got
            .pareto_k
            .iter()
            .zip(want["pareto_k"].as_array().unwrap())
            .enumerate()
        {
            close(
                *k,
                wk.as_f64().unwrap(),
                1e-9,
                &format!("{name} pareto_k[{i}]"),
            );
        }
        for (a, b) in got.loo_i.iter().zip(want["loo_i"].as_array().unwrap()) {
            close(*a, b.as_f64().unwrap(), 1e-9, "loo_i");
        }
        fits.push((name.clone(), got));
    }
    assert_eq!(warned, 1, "the normal model's outliers have k above good_k");
    let table = compare(&fits).unwrap();
    for (row, want) in table.iter().zip(doc["compare"].as_array().unwrap()) {
        assert_eq!(row.model, want["model"].as_str().unwrap());
        assert_eq!(row.rank as u64, want["rank"].as_u64().unwrap());
        close(
            row.elpd_diff,
            want["elpd_diff"].as_f64().unwrap(),
            1e-9,
            "elpd_diff",
        );
        close(row.dse, want["dse"].as_f64().unwrap(), 1e-9, "dse");
        close(row.se, want["se"].as_f64().unwrap(), 1e-9, "se");
        // ArviZ maximises with SLSQP (tolerance about 1e-6); ours is a fixed point.
        assert!(
            (row.weight - want["weight"].as_f64().unwrap()).abs() < 1e-4,
            "{}: weight {} against ArviZ {}",
            row.model,
            row.weight,
            want["weight"]
        );
    }
}

#[test]
fn loo_command_ranks_fits_and_equals_arviz_on_their_folders() {
    let dir = common::TempDir::new("loo");
    // A mixture of two regressions, fitted with K = 1 and K = 2.
    let data = dir.s("sim.csv");
    let sim = [
        "simulate",
        "--model",
        "mixglm",
        "--components",
        "2",
        "--n",
        "600",
        "--seed",
        "3",
        "--out",
        &data,
    ];
    let (ok, _, err) = common::gpsamp(&sim);
    assert!(ok, "{err}");
    for (k, name) in [("1", "k1"), ("2", "k2")] {
        let out = dir.s(name);
        let args = [
            "sample",
            "--model",
            "mixglm",
            "--components",
            k,
            "--data",
            &data,
            "--x",
            "x0",
            "--chains",
            "4",
            "--draws",
            "400",
            "--backend",
            "cpu",
            "--log-lik",
            "--quiet",
            "--out",
            &out,
        ];
        let (ok, _, err) = common::gpsamp(&args);
        assert!(ok, "{err}");
    }
    let (ok, out, err) = common::gpsamp(&["loo", &dir.s("k1"), &dir.s("k2"), "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let table = &v["compare"][0];
    assert_eq!(
        table[0]["model"],
        dir.s("k2"),
        "the mixture predicts better: {table}"
    );
    assert!(table[1]["elpd_diff"].as_f64().unwrap() > 4.0 * table[1]["dse"].as_f64().unwrap());
    let fit = &v["fits"][1]["datasets"][0];
    assert_eq!(fit["pareto_k"].as_array().unwrap().len(), 600);
    // Without log_lik.npy (--no-log-lik): a clear error naming the flag to use. By default
    // a fit this small writes it.
    let (ok, _, err) = common::gpsamp(&[
        "sample",
        "--model",
        "glm",
        "--chains",
        "4",
        "--draws",
        "50",
        "--backend",
        "cpu",
        "--quiet",
        "--no-log-lik",
        "--out",
        &dir.s("plain"),
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = common::gpsamp(&[
        "sample",
        "--model",
        "glm",
        "--chains",
        "4",
        "--draws",
        "50",
        "--backend",
        "cpu",
        "--quiet",
        "--out",
        &dir.s("default"),
    ]);
    assert!(ok, "{err}");
    assert!(dir.join("default/log_lik.npy").exists());
    let (ok, _, err) = common::gpsamp(&["loo", &dir.s("plain")]);
    assert!(!ok && err.contains("--log-lik"), "{err}");

    let Some(py) = common::python("az.loo on the sample folders") else {
        return;
    };
    let script = format!(
        r#"
import json, numpy as np, arviz as az
d = np.load("{0}/draws.npy").astype(np.float64)
ll = np.load("{0}/log_lik.npy").astype(np.float64)
names = json.load(open("{0}/meta.json"))["param_names"]
idata = az.from_dict(posterior={{n: d[..., i] for i, n in enumerate(names)}},
                     log_likelihood={{"y": ll}})
l = az.loo(idata, pointwise=True)
print(json.dumps([float(l.elpd_loo), float(l.se), float(l.p_loo), l.pareto_k.values.tolist()]))
"#,
        dir.s("k2")
    );
    let r = std::process::Command::new(py)
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let az: (f64, f64, f64, Vec<f64>) = serde_json::from_slice(&r.stdout).unwrap();
    close(fit["elpd_loo"].as_f64().unwrap(), az.0, 1e-9, "elpd_loo");
    close(fit["se"].as_f64().unwrap(), az.1, 1e-8, "se");
    close(fit["p_loo"].as_f64().unwrap(), az.2, 1e-7, "p_loo");
    for (a, b) in fit["pareto_k"].as_array().unwrap().iter().zip(&az.3) {
        close(a.as_f64().unwrap(), *b, 1e-7, "pareto_k");
    }
}

/// Exact leave-one-out predictive densities of a conjugate normal regression with known
/// sigma: prior alpha, beta ~ N(0, 1), y_i ~ N(alpha + beta x_i, sigma^2). Dropping point
/// i subtracts its term from the posterior precision and shift; its predictive is
/// N(x_i' m_-i, sigma^2 + x_i' V_-i x_i) with x_i = (1, x_i).
fn exact_elpd_loo(x: &[f64], y: &[f64], sigma: f64) -> f64 {
    let s2 = sigma * sigma;
    // Precision (2x2, symmetric) and shift of the full posterior.
    let (mut l00, mut l01, mut l11) = (1.0, 0.0, 1.0);
    let (mut b0, mut b1) = (0.0, 0.0);
    for (&xi, &yi) in x.iter().zip(y) {
        l00 += 1.0 / s2;
        l01 += xi / s2;
        l11 += xi * xi / s2;
        b0 += yi / s2;
        b1 += xi * yi / s2;
    }
    x.iter()
        .zip(y)
        .map(|(&xi, &yi)| {
            let (a00, a01, a11) = (l00 - 1.0 / s2, l01 - xi / s2, l11 - xi * xi / s2);
            let (c0, c1) = (b0 - yi / s2, b1 - xi * yi / s2);
            let det = a00 * a11 - a01 * a01;
            let (v00, v01, v11) = (a11 / det, -a01 / det, a00 / det);
            let (m0, m1) = (v00 * c0 + v01 * c1, v01 * c0 + v11 * c1);
            let mean = m0 + m1 * xi;
            let var = s2 + v00 + 2.0 * v01 * xi + v11 * xi * xi;
            -0.5 * (2.0 * std::f64::consts::PI * var).ln() - 0.5 * (yi - mean).powi(2) / var
        })
        .sum()
}

#[test]
fn psis_loo_of_a_conjugate_regression_matches_the_exact_leave_one_out() {
    let dir = common::TempDir::new("loo_exact");
    let data = dir.s("sim.csv");
    let (ok, _, err) = common::gpsamp(&[
        "simulate",
        "--model",
        "glm",
        "--sigma-fixed",
        "0.8",
        "--n",
        "80",
        "--seed",
        "11",
        "--out",
        &data,
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = common::gpsamp(&[
        "sample",
        "--model",
        "glm",
        "--sigma-fixed",
        "0.8",
        "--data",
        &data,
        "--x",
        "x0",
        "--chains",
        "8",
        "--draws",
        "1000",
        "--log-lik",
        "--no-plots",
        "--quiet",
        "--backend",
        "cpu",
        "--out",
        &dir.s("fit"),
    ]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&data).unwrap();
    let (x, y): (Vec<f64>, Vec<f64>) = text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<f64> = l.split(',').map(|v| v.parse().unwrap()).collect();
            (f[1], f[2])
        })
        .unzip();
    let exact = exact_elpd_loo(&x, &y, 0.8);
    let (ok, out, err) = common::gpsamp(&["loo", &dir.s("fit"), "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let got = v["fits"][0]["datasets"][0]["elpd_loo"].as_f64().unwrap();
    assert!(
        (got - exact).abs() < 0.01 * exact.abs(),
        "PSIS-LOO {got} vs exact {exact}"
    );
}
