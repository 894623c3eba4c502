//! Fuzz-style robustness of every reader of user files: thousands of random byte strings and
//! random mutations of valid data CSV, sequence CSV, HMM params.json, MDN model.json and
//! `--model-file` TOML. No input may panic, and every error must be located: it names the
//! file and a line (and column) or the key at fault.

mod common;

use std::io::Cursor;
use std::path::Path;

use gpsamp::hmm::io::{params_from_json, read_sequences_from, SeqSpec};
use gpsamp::hmm::HmmSpec;
use gpsamp::io::{read_csv_from, CsvSpec};
use gpsamp::rng::{host_rng, Purpose};
use rand::rngs::StdRng;
use rand::RngExt;

const TOKENS: &[&str] = &[
    "NaN",
    "nan",
    "inf",
    "-inf",
    "1e999",
    "-",
    ",",
    "\n",
    "\r\n",
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    ":",
    "=",
    "0",
    "-1",
    "1e-320",
    "\u{feff}",
    "\u{0}",
    " ",
    "true",
    "null",
    "99999999999999999999",
    "x0",
    "y",
    "seq",
    "t",
    "dataset",
];

/// One random change: overwrite, delete, insert bytes or a token, or duplicate a line.
fn mutate(rng: &mut StdRng, src: &[u8]) -> Vec<u8> {
    let mut v = src.to_vec();
    for _ in 0..rng.random_range(1..4) {
        let at = if v.is_empty() {
            0
        } else {
            rng.random_range(0..=v.len())
        };
        match rng.random_range(0..5) {
            0 if at < v.len() => v[at] = rng.random(),
            1 if at < v.len() => {
                let end = (at + rng.random_range(1..8)).min(v.len());
                v.drain(at..end);
            }
            2 => {
                let tok = TOKENS[rng.random_range(0..TOKENS.len())].as_bytes();
                v.splice(at..at, tok.iter().copied());
            }
            3 => {
                let lines: Vec<&[u8]> = src.split(|&b| b == b'\n').collect();
                let line = lines[rng.random_range(0..lines.len())].to_vec();
                v.splice(at..at, line.into_iter().chain([b'\n']));
            }
            _ => {
                let n = rng.random_range(1..6);
                let junk: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                v.splice(at..at, junk);
            }
        }
    }
    v
}

/// `count` inputs: random byte strings and mutations of `valid`.
fn inputs(valid: &[u8], count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = host_rng(seed, 0, Purpose::Other);
    (0..count)
        .map(|i| {
            if i % 4 == 0 {
                let n = rng.random_range(0..160);
                (0..n).map(|_| rng.random()).collect()
            } else {
                mutate(&mut rng, valid)
            }
        })
        .collect()
}

/// Whether `msg` places its error: `file:LINE:` (our CSV errors), a line and column
/// (serde/toml), or one of `keys`.
fn located(msg: &str, file: &str, keys: &[&str]) -> bool {
    let csv_style = msg
        .strip_prefix(file)
        .and_then(|r| r.strip_prefix(':'))
        .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()));
    let line_col = msg.contains(file) && (msg.contains("line ") || msg.contains("column "));
    let key = msg.contains(file) && keys.iter().any(|k| msg.contains(k));
    csv_style || line_col || key
}

#[test]
fn data_csv_reader_never_panics_and_locates_errors() {
    let valid = b"dataset,x0,y\n0,0.5,1.2\n0,-1,3\n1,2,0.1\n1,0.25,-4e-3\n";
    let spec = CsvSpec {
        x: vec!["x0".into()],
        y: "y".into(),
        group: Some("dataset".into()),
    };
    let path = Path::new("fuzz.csv");
    let mut errors = 0;
    for bytes in inputs(valid, 3000, 1) {
        if let Err(e) = read_csv_from(path, Cursor::new(&bytes), &spec) {
            errors += 1;
            let msg = e.to_string();
            assert!(
                located(&msg, "fuzz.csv", &[]),
                "unlocated error {msg:?} for {:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }
    assert!(
        errors > 1000,
        "the mutations should break most files: {errors}"
    );
}

#[test]
fn sequence_csv_reader_never_panics_and_locates_errors() {
    let valid = b"seq,t,x0,y\n0,0,0.1,1\n0,1,0.2,0\n0,2,-1,1\n1,0,3,0\n1,1,0.5,1\n";
    let spec = SeqSpec {
        seq: "seq".into(),
        t: "t".into(),
        x: vec!["x0".into()],
        y: vec!["y".into()],
        group: None,
        binary: true,
    };
    let path = Path::new("seqs.csv");
    for bytes in inputs(valid, 3000, 2) {
        if let Err(e) = read_sequences_from(path, Cursor::new(&bytes), &spec) {
            let msg = e.to_string();
            assert!(
                located(&msg, "seqs.csv", &[]),
                "unlocated error {msg:?} for {:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }
}

#[test]
fn hmm_params_json_never_panics_and_locates_errors() {
    let spec = HmmSpec::gaussian(2, 1).unwrap();
    let valid = br#"{"initial": [0.4, 0.6], "transition": [[0.9, 0.1], [0.2, 0.8]],
  "means": [-1.0, 2.5], "sds": [0.5, 1.5]}"#;
    let keys = ["\"initial\"", "\"transition\"", "\"means\"", "\"sds\""];
    let mut ok = 0;
    for bytes in inputs(valid, 3000, 3) {
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Err(e) => assert!(e.line() > 0, "{e}"),
            Ok(v) => match params_from_json(&spec, &v) {
                Ok(_) => ok += 1,
                Err(e) => {
                    let msg = format!("params.json: {e}");
                    assert!(
                        located(&msg, "params.json", &keys),
                        "unlocated error {msg:?} for {:?}",
                        String::from_utf8_lossy(&bytes)
                    );
                }
            },
        }
    }
    assert!(ok > 0, "some mutations keep a valid file");
}

#[test]
fn mdn_model_json_never_panics_and_locates_errors() {
    use gpsamp::mdn::sim::Simulator;
    use gpsamp::mdn::train::{train, MdnModel, TrainConfig};
    use gpsamp::mdn::Shape;
    let dir = common::TempDir::new("fuzz-mdn");
    let sim = Simulator::BetaBinomial {
        a: 2.0,
        b: 5.0,
        trials: 20,
    };
    let (theta, y) = sim.simulate(2000, 1);
    let shape = Shape {
        input: 1,
        hidden: vec![3],
        k: 2,
        theta: 1,
    };
    let cfg = TrainConfig {
        epochs: 1,
        ..TrainConfig::default()
    };
    let trained = train(
        &shape,
        &theta,
        &y,
        Some(sim),
        &cfg,
        &gpsamp::Backend::cpu(),
        &mut |_| {},
    )
    .unwrap();
    let path = dir.join("model.json");
    trained.model.save(&path).unwrap();
    let valid = std::fs::read(&path).unwrap();
    let keys = [
        "standardise",
        "params",
        "shape",
        "simulator",
        "format",
        "version",
        "x_sd",
        "theta_sd",
    ];
    let file = path.display().to_string();
    let mut loaded = 0;
    for bytes in inputs(&valid, 1500, 4) {
        std::fs::write(&path, &bytes).unwrap();
        match MdnModel::load(&path) {
            Ok(m) => {
                loaded += 1;
                // A model that loads predicts finite mixtures (no NaN from a zero sd).
                for mix in m.predict(&[3.0]) {
                    assert!(mix.weights.iter().all(|w| w.is_finite()));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    located(&msg, &file, &keys),
                    "unlocated error {msg:?} for {:?}",
                    String::from_utf8_lossy(&bytes)
                );
            }
        }
    }
    assert!(loaded > 0);
}

#[test]
fn model_file_toml_never_panics_and_locates_errors() {
    let dir = common::TempDir::new("fuzz-toml");
    let valid = b"model = \"mixglm\"\ncomponents = 2\nprior_sigma = \"halfnormal(2)\"\nprior_coef = \"normal(0,1)\"\nprior_weights = 2.0\n";
    let toml = dir.join("m.toml");
    let file = toml.display().to_string();
    for (i, bytes) in inputs(valid, 300, 5).into_iter().enumerate() {
        std::fs::write(&toml, &bytes).unwrap();
        let out = dir.s(&format!("s{}.csv", i % 2));
        let (code, _, err) = common::gpsamp_in(
            &dir.0,
            &[
                "simulate",
                "--model-file",
                &file,
                "--n",
                "3",
                "--force",
                "--out",
                &out,
            ],
        );
        assert!(code == 0 || code == 1 || code == 2, "exit {code}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        if code != 0 {
            assert!(
                err.contains(&file)
                    || err.contains("--model")
                    || err.contains("--components")
                    || err.contains("--prior"),
                "unlocated error {err:?} for {:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }
}
