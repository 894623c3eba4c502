//! Studies at chosen values (`gpsamp study`): a grid study of the Gaussian GLM whose 95%
//! intervals cover at the nominal rate in every cell and whose power rises with the slope
//! and N; shards merge into the unsharded folder; the user's own datasets with their truths
//! form cells; bad grid and truth files are refused with the file, line and column.

mod common;

use std::collections::HashMap;

/// cells.csv as rows of column name -> text.
fn cells(path: &std::path::Path) -> Vec<HashMap<String, String>> {
    let mut rdr = csv::Reader::from_path(path).unwrap();
    let head = rdr.headers().unwrap().clone();
    rdr.records()
        .map(|r| {
            let r = r.unwrap();
            head.iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn num(row: &HashMap<String, String>, col: &str) -> f64 {
    row[col].parse().unwrap()
}

#[test]
fn grid_study_of_the_gaussian_glm_covers_and_gains_power_with_n_and_slope() {
    let dir = common::TempDir::new("grid");
    let mut grid = String::from("beta[0],n\n");
    let slopes = [0.0, 0.2, 0.5];
    let sizes = [20usize, 100, 500];
    for s in slopes {
        for n in sizes {
            grid.push_str(&format!("{s},{n}\n"));
        }
    }
    std::fs::write(dir.join("grid.csv"), grid).unwrap();
    let (ok, out, err) = common::gpsamp(&[
        "study",
        "--model",
        "glm",
        "--grid",
        &dir.s("grid.csv"),
        "--replicates",
        "200",
        "--backend",
        "cpu",
        "--out",
        &dir.s("study"),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("cov_95") && out.contains("power"), "{out}");
    let rows = cells(&dir.join("study/cells.csv"));
    assert_eq!(rows.len(), 9 * 3, "9 cells x (beta[0], alpha, sigma)");
    let mut power = HashMap::new();
    for r in &rows {
        assert_eq!(r["replicates"], "200");
        // Every cell's 95% intervals cover within binomial error (exact test, level 0.001
        // per cell and quantity: 27 tests).
        assert!(
            num(r, "coverage_p") > 0.001,
            "cell {} {}: coverage {} (p {})",
            r["cell"],
            r["quantity"],
            r["coverage_95"],
            r["coverage_p"]
        );
        if r["quantity"] == "beta[0]" {
            assert!((num(r, "truth") - slopes[num(r, "cell") as usize / 3]).abs() < 1e-12);
            power.insert(
                (
                    r["cell"].parse::<usize>().unwrap() / 3,
                    num(r, "n") as usize,
                ),
                num(r, "power"),
            );
        }
    }
    // At slope 0 the power is the type I error: about 5%.
    for n in sizes {
        assert!(
            power[&(0, n)] < 0.12,
            "type I error at n {n}: {}",
            power[&(0, n)]
        );
    }
    // It rises with N at each slope above 0, and with the slope at each N.
    for s in 1..3 {
        assert!(power[&(s, 20)] < power[&(s, 100)] && power[&(s, 100)] <= power[&(s, 500)]);
        assert!(power[&(s, 500)] > 0.9);
    }
    for n in sizes {
        assert!(power[&(0, n)] < power[&(1, n)] && power[&(1, n)] <= power[&(2, n)]);
    }
    // The datasets of a cell have its N and slope.
    let study: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("study/study.json")).unwrap())
            .unwrap();
    assert_eq!(study["settings"]["design"]["kind"], "grid");
    assert_eq!(study["settings"]["design"]["replicates"], 200);
    common::assert_svg(
        &dir.join("study/power.svg"),
        &[
            "beta[0]",
            "points per dataset (n)",
            "power (95% interval excludes 0)",
            "beta[0]=0.2",
        ],
    );
    common::assert_svg(
        &dir.join("study/cell_coverage.svg"),
        &["sigma", "95% interval coverage", "points per dataset (n)"],
    );
    assert!(
        !dir.join("study/summary.csv").exists(),
        "no SBC report at fixed values"
    );
}

#[test]
fn grid_shards_merge_into_the_unsharded_study() {
    let dir = common::TempDir::new("grid_shards");
    std::fs::write(dir.join("grid.csv"), "sigma,beta[0]\n0.5,1\n2,-1\n").unwrap();
    let base = |out: &str, shard: Option<&str>| {
        let mut args = vec![
            "study",
            "--model",
            "glm",
            "--grid",
            "GRID",
            "--replicates",
            "7",
            "--n",
            "30",
            "--draws",
            "100",
            "--backend",
            "cpu",
            "--quiet",
            "--out",
            out,
        ];
        if let Some(s) = shard {
            args.extend(["--shard", s]);
        }
        let grid = dir.s("grid.csv");
        let args: Vec<&str> = args
            .into_iter()
            .map(|a| if a == "GRID" { grid.as_str() } else { a })
            .collect();
        let (ok, _, err) = common::gpsamp(&args);
        assert!(ok, "{err}");
    };
    base(&dir.s("all"), None);
    base(&dir.s("s1"), Some("1/2"));
    base(&dir.s("s2"), Some("2/2"));
    let (ok, out, err) = common::gpsamp(&[
        "merge",
        &dir.s("s2"),
        &dir.s("s1"),
        "--out",
        &dir.s("merged"),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("sigma=0.5 beta[0]=1"), "{out}");
    for f in ["cells.csv", "datasets.csv", "study.json"] {
        assert_eq!(
            std::fs::read_to_string(dir.join("all").join(f)).unwrap(),
            std::fs::read_to_string(dir.join("merged").join(f)).unwrap(),
            "{f}"
        );
    }
    let rows = cells(&dir.join("all/cells.csv"));
    // Both parameters chosen: every replicate's truth is the cell's value.
    for r in &rows {
        let want = match (r["cell"].as_str(), r["quantity"].as_str()) {
            ("0", "sigma") => 0.5,
            ("0", "beta[0]") => 1.0,
            ("1", "sigma") => 2.0,
            ("1", "beta[0]") => -1.0,
            _ => continue,
        };
        assert_eq!(num(r, "truth"), want, "{r:?}");
        assert_eq!(r["n"], "30");
    }
}

#[test]
fn given_datasets_with_their_truths_form_cells() {
    let dir = common::TempDir::new("given");
    // Six datasets, two truths (three replicates each), written as a user would.
    let mut data = String::from("ds,x0,y\n");
    let mut truth = String::from("ds,beta[0],alpha,sigma\n");
    let mut state = 12345u64;
    let mut normal = || {
        // Box-Muller on a small LCG: the test's own data, not the library's streams.
        let mut u = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let (a, b) = (u(), u());
        (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
    };
    for d in 0..6 {
        let (beta, alpha, sigma) = if d % 2 == 0 {
            (1.0, 0.0, 0.5)
        } else {
            (-0.5, 2.0, 1.0)
        };
        truth.push_str(&format!("d{d},{beta},{alpha},{sigma}\n"));
        for _ in 0..40 {
            let x = normal();
            let y = alpha + beta * x + sigma * normal();
            data.push_str(&format!("d{d},{x},{y}\n"));
        }
    }
    std::fs::write(dir.join("data.csv"), data).unwrap();
    std::fs::write(dir.join("truth.csv"), truth).unwrap();
    let (ok, out, err) = common::gpsamp(&[
        "study",
        "--model",
        "glm",
        "--datasets",
        &dir.s("data.csv"),
        "--x",
        "x0",
        "--group",
        "ds",
        "--truth",
        &dir.s("truth.csv"),
        "--backend",
        "cpu",
        "--out",
        &dir.s("study"),
    ]);
    assert!(ok, "{err}");
    assert!(
        err.contains("6 dataset(s)") && err.contains("2 cells"),
        "{err}"
    );
    let rows = cells(&dir.join("study/cells.csv"));
    assert_eq!(rows.len(), 6);
    for r in &rows {
        assert_eq!(r["replicates"], "3");
        assert_eq!(r["n"], "40");
        // 40 points pin the slope down to about 0.1-0.2: the posterior means are near.
        if r["quantity"] == "beta[0]" {
            assert!(num(r, "bias").abs() < 0.3, "{r:?}\n{out}");
        }
    }
    let study: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("study/study.json")).unwrap())
            .unwrap();
    assert_eq!(study["settings"]["design"]["kind"], "datasets");
    assert_eq!(
        study["settings"]["design"]["cell_of"],
        serde_json::json!([0, 1, 0, 1, 0, 1])
    );

    // A dataset without truths, and a truth file without a parameter, are refused.
    let cases = [
        (
            "ds,beta[0],alpha,sigma\nd0,1,0,0.5\n",
            "no truths for dataset \"d1\"",
        ),
        ("ds,beta[0],sigma\nd0,1,0.5\n", "\"alpha\" not found"),
        (
            "ds,beta[0],alpha,sigma\nd0,1,0,0.5\nd0,1,0,1\n",
            ":3:ds: dataset \"d0\" has a second row",
        ),
    ];
    for (text, what) in cases {
        std::fs::write(dir.join("bad_truth.csv"), text).unwrap();
        let (ok, _, err) = common::gpsamp(&[
            "study",
            "--model",
            "glm",
            "--datasets",
            &dir.s("data.csv"),
            "--x",
            "x0",
            "--group",
            "ds",
            "--truth",
            &dir.s("bad_truth.csv"),
            "--out",
            &dir.s("bad"),
        ]);
        assert!(
            !ok && err.contains("bad_truth.csv") && err.contains(what),
            "{err}"
        );
    }
    assert!(!dir.join("bad").exists());
}

#[test]
fn bad_grids_are_refused_with_file_line_and_column() {
    let dir = common::TempDir::new("grid_bad");
    let cases = [
        ("beta[1],n\n0,10\n", ".csv:1:beta[1]", "not a parameter"),
        ("beta[0],n\n0,10\n0.5,0\n", ".csv:3:n", "whole number"),
        ("beta[0],n\n0,ten\n", ".csv:2:n", "ten"),
        ("sigma\n-1\n", "--grid", "cell 0 (sigma=-1)"),
        ("beta[0],n\n", ".csv:1", "no rows"),
    ];
    for (i, (text, at, what)) in cases.into_iter().enumerate() {
        let path = dir.join(&format!("g{i}.csv"));
        std::fs::write(&path, text).unwrap();
        let (ok, _, err) = common::gpsamp(&[
            "study",
            "--model",
            "glm",
            "--grid",
            path.to_str().unwrap(),
            "--out",
            &dir.s("out"),
        ]);
        assert!(!ok, "{text}");
        for want in [at, what] {
            assert!(err.contains(want), "{text}: {err} lacks {want}");
        }
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(!dir.join("out").exists());
}
