//! Every example in the README runs as written, in order, in one fresh folder: each `sh`
//! block with `cargo run --release --` standing for the gpsamp binary and sizes cut down
//! (`--datasets`, `--sims`, `--epochs`, `--chains`, `--warmup`, `--draws`, `--restarts`,
//! `--coverage-sims`, `--replicates`, `--sample-paths` capped), every file a block reads
//! made by an earlier line. `python` blocks run with the interpreter in `GPSAMP_PYTHON` (numpy, pandas and arviz installed;
//! `.ci/run` makes one) and skip loudly without it unless `GPSAMP_REQUIRE_PYTHON=1`. The
//! `py` blocks use the Python package and run in `python/tests/test_readme.py`. The
//! `rust` block must match `examples/readme_logp.rs`, which this test compiles and runs. Skipped, and said so:
//! the two commands (`bench` and the tests themselves, which other tests cover) and the Slurm
//! script (it needs a cluster).

mod common;

#[path = "../examples/readme_logp.rs"]
mod readme_logp;

use std::path::Path;
use std::process::Command;

/// (language, code) of every fenced block, in order.
fn blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("```") {
            match cur.take() {
                Some(b) => out.push(b),
                None => cur = Some((rest.trim().to_string(), String::new())),
            }
        } else if let Some((_, code)) = cur.as_mut() {
            code.push_str(line);
            code.push('\n');
        }
    }
    out
}

/// The size flags and their caps in the test.
const CAPS: &[(&str, u64)] = &[
    ("--datasets", 40),
    ("--sims", 4000),
    ("--epochs", 1),
    ("--chains", 16),
    ("--warmup", 150),
    ("--draws", 150),
    ("--restarts", 3),
    ("--coverage-sims", 200),
    ("--replicates", 10),
    ("--sample-paths", 10),
];

/// `script` with every capped size flag cut down.
fn shrink(script: &str) -> String {
    script
        .lines()
        .map(|line| {
            let toks: Vec<&str> = line.split(' ').collect();
            let mut out: Vec<String> = Vec::with_capacity(toks.len());
            for (i, t) in toks.iter().enumerate() {
                let prev = if i > 0 { toks[i - 1] } else { "" };
                match (CAPS.iter().find(|(f, _)| *f == prev), t.parse::<u64>()) {
                    (Some((_, cap)), Ok(v)) => out.push(v.min(*cap).to_string()),
                    _ => out.push(t.to_string()),
                }
            }
            out.join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn run_sh(dir: &Path, code: &str) {
    let bin = env!("CARGO_BIN_EXE_gpsamp");
    let mut script = String::from("set -euo pipefail\n");
    for line in code.lines() {
        let t = line.trim_start();
        if t.starts_with("cargo test") || t.starts_with("cargo run --release -- bench") {
            eprintln!("readme: not run here (tested elsewhere): {t}");
            continue;
        }
        let mut line = line.to_string();
        if let Some(rest) = t.strip_prefix("python3 benches/") {
            // The NumPyro comparison: its data step needs numpy alone, its fit JAX too.
            if !rest.contains("--write-data") {
                eprintln!("readme: not run here (needs JAX and NumPyro): {t}");
                continue;
            }
            let Some(py) = common::python("the README's Python blocks") else {
                eprintln!("readme: block skipped (its data step needs GPSAMP_PYTHON)");
                return;
            };
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            line = format!("{} {}/benches/{rest}", py.display(), root.display());
        }
        script.push_str(&line.replace("cargo run --release --", bin));
        script.push('\n');
    }
    let script = shrink(&script);
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "README block failed:\n{script}\n--- stderr:\n{}\n--- stdout:\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

fn run_python(dir: &Path, py: &Path, code: &str) {
    let out = Command::new(py)
        .arg("-c")
        .arg(code)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "README Python block failed:\n{code}\n--- stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_rust(dir: &Path, code: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(root.join("examples/readme_logp.rs")).unwrap();
    for line in code.lines().map(str::trim).filter(|l| !l.is_empty()) {
        assert!(
            example.lines().any(|e| e.trim() == line),
            "README's Rust line is not in examples/readme_logp.rs: {line}"
        );
    }
    // The example itself, compiled into this test, run where the README's files are.
    let back = std::env::current_dir().unwrap();
    std::env::set_current_dir(dir).unwrap();
    let r = readme_logp::main();
    std::env::set_current_dir(back).unwrap();
    if let Err(e) = r {
        panic!("examples/readme_logp failed: {e}");
    }
}

#[test]
fn shrink_caps_only_size_flags() {
    assert_eq!(
        shrink("x --datasets 10000 --n 100 --chains 4 --warmup 500 \\"),
        "x --datasets 40 --n 100 --chains 4 --warmup 150 \\"
    );
}

#[test]
fn readme_examples_run_in_order() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let dir = common::TempDir::new("readme");
    let py = common::python("the README's Python blocks");
    let mut ran = 0;
    for (lang, code) in blocks(&readme) {
        match lang.as_str() {
            "sh" if code.contains("sbatch") || code.contains("#SBATCH") => {
                eprintln!("readme: the Slurm script is not run here (it needs a cluster)");
            }
            "sh" => {
                run_sh(&dir.0, &code);
                ran += 1;
            }
            "python" => {
                if let Some(p) = &py {
                    run_python(&dir.0, p, &code);
                    ran += 1;
                }
            }
            "rust" => {
                run_rust(&dir.0, &code);
                ran += 1;
            }
            "py" => {
                eprintln!("readme: the Python package's example runs in python/tests/test_readme.py (after the wheel is built)");
            }
            _ => {}
        }
    }
    assert!(ran >= 8, "only {ran} README blocks ran");
}
