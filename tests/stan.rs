//! Stan programs: posteriordb's programs and data (tests/fixtures/posteriordb, made by its
//! make.py) compile, their gradients match finite differences, their posteriors match
//! posteriordb's reference posteriors computed by Stan, and constructs outside the subset
//! are refused with their position.

mod common;

use std::path::{Path, PathBuf};

use common::{gpsamp, TempDir};
use gpsamp::stan::StanModel;
use gpsamp::Model;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/posteriordb")
}

fn posteriors() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            e.path()
                .is_dir()
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect();
    v.sort();
    v
}

fn compile(name: &str) -> StanModel {
    let dir = fixtures().join(name);
    StanModel::from_files(&dir.join("model.stan"), Some(&dir.join("data.json")))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// (name, mean, sd) of each reference quantity.
fn reference(name: &str) -> Vec<(String, f64, f64)> {
    let text = std::fs::read_to_string(fixtures().join(name).join("reference.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let n = f.len();
            // Names hold commas (b[1,2]): the last three fields are numbers.
            (
                f[..n - 3].join(","),
                f[n - 3].parse().unwrap(),
                f[n - 2].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn every_posteriordb_program_compiles_with_its_reference_quantities() {
    let names = posteriors();
    assert!(names.len() >= 11, "{names:?}");
    for name in &names {
        let m = compile(name);
        let params = m.param_names();
        for (q, _, _) in reference(name) {
            assert!(params.contains(&q), "{name}: no {q} in {params:?}");
        }
        assert!(m.dim() > 0, "{name}");
    }
}

#[test]
fn gradients_match_finite_differences() {
    use rand::{RngExt, SeedableRng};
    let data = gpsamp::stan::placeholder_data();
    for name in posteriors() {
        let m = compile(&name);
        let d = m.dim();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..3 {
            let theta: Vec<f64> = (0..d).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut grad = vec![0.0; d];
            let mut scratch = Vec::new();
            let lp = m.log_density(&data, 0, &theta, &mut grad, &mut scratch);
            assert!(lp.is_finite(), "{name}: {lp}");
            let mut g2 = vec![0.0; d];
            for i in 0..d {
                let h = 1e-6 * (1.0 + theta[i].abs());
                let mut tp = theta.clone();
                tp[i] += h;
                let up = m.log_density(&data, 0, &tp, &mut g2, &mut scratch);
                tp[i] -= 2.0 * h;
                let down = m.log_density(&data, 0, &tp, &mut g2, &mut scratch);
                let fd = (up - down) / (2.0 * h);
                let tol = 1e-5 * (1.0 + fd.abs().max(grad[i].abs())) + 1e-7 * lp.abs();
                assert!(
                    (fd - grad[i]).abs() < tol.max(1e-4 * (1.0 + fd.abs())),
                    "{name}: d/dtheta[{i}] = {} by reverse mode, {fd} by differences",
                    grad[i]
                );
            }
        }
    }
}

/// Column `col` of summary.csv's row for `param`.
fn summary_value(summary: &str, param: &str, col: &str) -> f64 {
    let mut rdr = csv::Reader::from_reader(summary.as_bytes());
    let header = rdr.headers().unwrap().clone();
    let k = header.iter().position(|h| h == col).unwrap();
    for row in rdr.records() {
        let row = row.unwrap();
        if &row[0] == param {
            return row[k].parse().unwrap();
        }
    }
    panic!("no {param} in the summary")
}

/// Every posterior, 16 chains, 1 000 warmup + 1 000 draws on the CPU backend: each
/// reference quantity's mean within 0.1 reference sd + 3 MCSE, its sd within 15%, R-hat
/// below 1.01.
#[test]
fn posteriors_match_posteriordb_references() {
    let t = TempDir::new("stan-pdb");
    let mut failures = Vec::new();
    for name in posteriors() {
        let dir = fixtures().join(&name);
        let out = t.join(&name);
        let (ok, _, err) = gpsamp(&[
            "sample",
            "--stan",
            dir.join("model.stan").to_str().unwrap(),
            "--data",
            dir.join("data.json").to_str().unwrap(),
            "--chains",
            "16",
            "--warmup",
            "1000",
            "--draws",
            "1000",
            "--backend",
            "cpu",
            "--no-plots",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{name}: {err}");
        let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
        for (q, mean, sd) in reference(&name) {
            let m = summary_value(&summary, &q, "mean");
            let s = summary_value(&summary, &q, "sd");
            let mcse = summary_value(&summary, &q, "mcse_mean");
            let rhat = summary_value(&summary, &q, "r_hat");
            if (m - mean).abs() > 0.1 * sd + 3.0 * mcse
                || (s / sd - 1.0).abs() > 0.15
                || rhat >= 1.01
            {
                failures.push(format!(
                    "{name} {q}: mean {m} (reference {mean}, sd {sd}, mcse {mcse}), sd {s}, r_hat {rhat}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// What is outside the subset is refused with the file, line, column and the construct.
#[test]
fn constructs_outside_the_subset_are_refused_with_their_position() {
    let t = TempDir::new("stan-refuse");
    let cases: &[(&str, &str)] = &[
        (
            "parameters {\n  cholesky_factor_corr[3] L;\n}\n",
            ":2:3: type 'cholesky_factor_corr' is not supported yet",
        ),
        (
            "functions {\n  real f(real x) { return x; }\n}\n",
            ":2:3: user-defined functions are not supported yet",
        ),
        ("data {\n  real y[3];\n}\n", ":2:9: old array syntax"),
        (
            "parameters {\n  real mu;\n}\nmodel {\n  mu ~ frechet(1, 2);\n}\n",
            ":5:3: distribution 'frechet' is not supported",
        ),
        (
            "parameters {\n  real mu;\n}\nmodel {\n  if (mu > 0) mu ~ normal(0, 1);\n}\n",
            ":5:10: a comparison that depends on the parameters is not supported yet",
        ),
        (
            "parameters {\n  real mu;\n}\nmodel {\n  mu ~ normal(0, 1)\n}\n",
            ":6:1: expected ';'",
        ),
        (
            "data {\n  int N;\n}\nparameters {\n  real mu;\n}\nmodel {\n  mu ~ normal(0, N);\n}\n",
            "data.json: N: missing",
        ),
    ];
    std::fs::write(t.join("data.json"), "{}").unwrap();
    for (k, (src, want)) in cases.iter().enumerate() {
        let file = t.join(&format!("p{k}.stan"));
        std::fs::write(&file, src).unwrap();
        let (ok, _, err) = gpsamp(&[
            "sample",
            "--stan",
            file.to_str().unwrap(),
            "--data",
            t.join("data.json").to_str().unwrap(),
            "--out",
            t.join(&format!("o{k}")).to_str().unwrap(),
        ]);
        assert!(!ok, "{src}");
        assert!(err.contains(want), "{src}: expected {want:?} in {err}");
        assert!(
            !t.join(&format!("o{k}")).exists(),
            "no output folder for a refused program"
        );
    }
}

/// Constraining transforms: an interval-bounded scalar with a bound that is another
/// parameter (garch's `upper=(1 - alpha1)`), a simplex and a positive ordered vector give
/// values inside their supports at any unconstrained position.
#[test]
fn transforms_land_in_their_supports() {
    use rand::{RngExt, SeedableRng};
    let t = TempDir::new("stan-transforms");
    let src = "parameters {\n  real<lower=0, upper=1> a;\n  real<lower=0, upper=(1 - a)> b;\n  simplex[4] s;\n  positive_ordered[3] p;\n  real<offset=2, multiplier=3> z;\n}\nmodel {\n  z ~ normal(2, 3);\n}\n";
    let file = t.join("t.stan");
    std::fs::write(&file, src).unwrap();
    let m = StanModel::from_files(&file, None).unwrap();
    assert_eq!(m.dim(), 1 + 1 + 3 + 3 + 1);
    let names = m.param_names();
    assert_eq!(names[2..6], ["s[1]", "s[2]", "s[3]", "s[4]"]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for _ in 0..100 {
        let theta: Vec<f64> = (0..m.dim()).map(|_| rng.random_range(-4.0..4.0)).collect();
        let v = m.constrain(&theta);
        let (a, b) = (v[0], v[1]);
        assert!(a > 0.0 && a < 1.0 && b > 0.0 && b < 1.0 - a, "{v:?}");
        let s = &v[2..6];
        assert!(s.iter().all(|&x| x > 0.0) && (s.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let p = &v[6..9];
        assert!(p[0] > 0.0 && p[0] < p[1] && p[1] < p[2], "{p:?}");
        assert!((v[9] - (2.0 + 3.0 * theta[8])).abs() < 1e-12);
    }
}
