//! Bad CSV input: every error kind names the file, the line and the column, and the CLI
//! exits non-zero with that message (and never writes a partial result).

mod common;

use common::gpsamp;

use std::path::Path;

use gpsamp::io::csv::{read_csv_from, CsvSpec};

fn spec() -> CsvSpec {
    CsvSpec {
        x: vec!["x".into()],
        y: "y".into(),
        group: None,
    }
}

fn err(text: &str) -> String {
    read_csv_from(Path::new("data.csv"), text.as_bytes(), &spec())
        .unwrap_err()
        .to_string()
}

#[test]
fn good_file_with_groups_reads() {
    let s = CsvSpec {
        group: Some("g".into()),
        ..spec()
    };
    let b = read_csv_from(
        Path::new("d.csv"),
        "g,x,y\na,1,2\nb,3,4\na, 5 ,6\n".as_bytes(),
        &s,
    )
    .unwrap();
    assert_eq!(b.n_datasets(), 2);
    assert_eq!(b.dataset(0).x[0], vec![1.0, 5.0]);
    assert_eq!(b.dataset(1).y, vec![4.0]);
}

#[test]
fn missing_column_names_the_column() {
    let e = err("a,y\n1,2\n");
    assert!(
        e.starts_with("data.csv:1:x:") && e.contains("not found") && e.contains("a, y"),
        "{e}"
    );
}

#[test]
fn non_numeric_cell_names_line_and_column() {
    let e = err("x,y\n1,2\n3,abc\n");
    assert!(
        e.starts_with("data.csv:3:y:") && e.contains("\"abc\" is not a number"),
        "{e}"
    );
}

#[test]
fn nan_and_inf_are_rejected_with_their_place() {
    let e = err("x,y\n1,2\nNaN,3\n");
    assert!(
        e.starts_with("data.csv:3:x:") && e.contains("not a finite number"),
        "{e}"
    );
    let e = err("x,y\n1,2\n4,5\n2,inf\n");
    assert!(
        e.starts_with("data.csv:4:y:") && e.contains("not a finite number"),
        "{e}"
    );
}

#[test]
fn empty_file_is_an_error() {
    let e = err("");
    assert!(e.starts_with("data.csv:1:") && e.contains("empty"), "{e}");
    let e = err("x,y\n");
    assert!(
        e.starts_with("data.csv:2:") && e.contains("no data rows"),
        "{e}"
    );
}

#[test]
fn ragged_row_names_its_line() {
    let e = err("x,y\n1,2\n3\n");
    assert!(
        e.starts_with("data.csv:3:") && e.contains("1 fields but the header has 2"),
        "{e}"
    );
    let e = err("x,y\n1,2\n3,4,5\n");
    assert!(
        e.starts_with("data.csv:3:") && e.contains("3 fields"),
        "{e}"
    );
}

#[test]
fn cli_reports_bad_data_and_exits_nonzero() {
    let dir = std::env::temp_dir().join(format!("gpsamp-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("missing.csv", "a,y\n1,2\n", ":1:x:"),
        ("text.csv", "x,y\n1,2\n3,zz\n", ":3:y:"),
        ("nan.csv", "x,y\nnan,2\n", ":2:x:"),
        ("empty.csv", "", ":1:-:"),
        ("ragged.csv", "x,y\n1,2\n3\n", ":3:-:"),
    ];
    for (name, text, place) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let p = path.to_str().unwrap();
        let (ok, _, stderr) = gpsamp(&[
            "logp",
            "--model",
            "glm",
            "--data",
            p,
            "--x",
            "x",
            "--y",
            "y",
            "--backend",
            "cpu",
        ]);
        assert!(!ok, "{name}: exited 0");
        assert!(stderr.contains(&format!("{p}{place}")), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
    let (ok, _, stderr) = gpsamp(&[
        "logp",
        "--model",
        "glm",
        "--data",
        "/nonexistent/d.csv",
        "--x",
        "x",
        "--backend",
        "cpu",
    ]);
    assert!(!ok && stderr.contains("/nonexistent/d.csv"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn cli_reports_bad_flags() {
    let (ok, _, e) = gpsamp(&[
        "simulate",
        "--model",
        "glm",
        "--prior-sigma",
        "halfnormal(-1)",
        "--out",
        "/tmp/x.csv",
    ]);
    assert!(!ok && e.contains("--prior-sigma"), "{e}");
    let (ok, _, e) = gpsamp(&[
        "simulate",
        "--model",
        "gmm",
        "--prior-coef",
        "cauchy(0,1)",
        "--out",
        "/tmp/x.csv",
    ]);
    assert!(!ok && e.contains("--prior-coef"), "{e}");
    let (ok, _, e) = gpsamp(&[
        "simulate",
        "--model",
        "gmm",
        "--components",
        "0",
        "--out",
        "/tmp/x.csv",
    ]);
    assert!(!ok && e.contains("--components"), "{e}");
}

#[test]
fn cli_simulate_then_logp_round_trip() {
    let dir = std::env::temp_dir().join(format!("gpsamp-rt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sim.csv");
    let p = path.to_str().unwrap();
    let (ok, _, e) = gpsamp(&[
        "simulate",
        "--model",
        "mixglm",
        "--n",
        "300",
        "--datasets",
        "3",
        "--seed",
        "5",
        "--out",
        p,
    ]);
    assert!(ok, "{e}");
    let (ok, out, e) = gpsamp(&[
        "logp",
        "--model",
        "mixglm",
        "--data",
        p,
        "--x",
        "x0",
        "--group",
        "dataset",
        "--backend",
        "cpu",
        "--json",
    ]);
    assert!(ok, "{e}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ds = v["datasets"].as_array().unwrap();
    assert_eq!(ds.len(), 3);
    assert!(ds
        .iter()
        .all(|d| d["points"] == 300 && d["logp"].as_f64().unwrap().is_finite()));
    std::fs::remove_dir_all(&dir).ok();
}
