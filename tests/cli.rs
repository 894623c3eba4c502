//! The README's main command: `gpsamp bench` runs and reports both backends (the GPU one
//! when an adapter exists), as a table and as JSON; `gpsamp devices` lists adapters.

mod common;

use std::process::Command;

#[test]
fn bench_reports_cpu_and_gpu() {
    let out = Command::new(env!("CARGO_BIN_EXE_gpsamp"))
        .args([
            "bench",
            "--json",
            "--n",
            "64",
            "--chains",
            "1,8",
            "--seconds",
            "0.01",
            "--quiet",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["rows"].as_array().unwrap();
    let has = |prefix: &str, fam: &str| {
        rows.iter().any(|r| {
            r["backend"].as_str().unwrap().starts_with(prefix)
                && r["family"] == fam
                && r["evals_per_sec"].as_f64().unwrap() > 0.0
        })
    };
    for fam in [
        "glm-gaussian",
        "glm-bernoulli",
        "glm-poisson",
        "gmm",
        "mixglm",
    ] {
        assert!(has("cpu", fam), "no CPU row for {fam}");
        if common::gpu().is_some() {
            assert!(has("gpu", fam), "no GPU row for {fam}");
        }
    }
    assert!(v["floor"]["floor_evals_per_sec"].as_f64().unwrap() > 0.0);
    // The table goes to stderr with --json.
    assert!(
        stderr.contains("family") && stderr.contains("CPU floor"),
        "{stderr}"
    );
}

#[test]
fn bench_without_gpu_says_so() {
    let out = Command::new(env!("CARGO_BIN_EXE_gpsamp"))
        .args([
            "bench",
            "--no-gpu",
            "--n",
            "16",
            "--chains",
            "2",
            "--seconds",
            "0.01",
            "--families",
            "gmm",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("gpu: none"), "{stdout}");
}

#[test]
fn devices_lists_adapters_as_json() {
    let out = Command::new(env!("CARGO_BIN_EXE_gpsamp"))
        .args(["devices", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = v.as_array().unwrap();
    if common::gpu().is_some() {
        assert!(!list.is_empty());
        assert!(list[0]["max_storage_buffer_binding_size"].as_u64().unwrap() > 0);
    }
}
