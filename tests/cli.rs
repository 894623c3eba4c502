//! The README's main command: `gpsamp bench` runs and reports both backends (the GPU one
//! when an adapter exists), as a table and as JSON; `gpsamp devices` lists adapters.

mod common;

use common::gpsamp;

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
            "--sampler-chains",
            "4",
            "--study-datasets",
            "6",
            "--mdn-pairs",
            "3000",
            "--em-sequences",
            "8",
            "--reliable-chains",
            "4",
            "--target-ess",
            "300",
            "--stan-chains",
            "16",
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
    // The Stan rows: every posteriordb fixture compiled, both throughputs, eight schools.
    let stan = &v["stan"];
    let compiled = stan["compile"].as_array().unwrap();
    assert!(compiled.len() >= 11, "{stan}");
    assert!(compiled
        .iter()
        .all(|r| r["milliseconds"].as_f64().unwrap() > 0.0 && r["tape_ops"].as_u64().unwrap() > 0));
    // low_dim_gauss_mix's 1 000 log_mix terms (a loop over the data) fall into one shape.
    let gauss_mix = compiled
        .iter()
        .find(|r| r["posterior"] == "low_dim_gauss_mix-low_dim_gauss_mix")
        .unwrap();
    let (terms, shapes) = (&gauss_mix["terms"][0], &gauss_mix["terms"][1]);
    assert!(terms.as_u64().unwrap() >= 1000, "{gauss_mix}");
    assert!(shapes.as_u64().unwrap() <= 10, "{gauss_mix}");
    assert!(stan["stan_mixture_evals_per_sec"].as_f64().unwrap() > 0.0);
    assert!(stan["mixglm_evals_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(stan["eight_schools"][0], 16);
    let sampler = v["sampler"].as_array().unwrap();
    assert!(sampler
        .iter()
        .any(|r| r["backend"].as_str().unwrap().starts_with("cpu")
            && r["min_ess_bulk"].as_f64().unwrap() > 10.0));
    let study = v["study"].as_array().unwrap();
    assert!(study
        .iter()
        .any(|r| r["backend"].as_str().unwrap().starts_with("cpu")
            && r["datasets"] == 6
            && r["datasets_per_sec"].as_f64().unwrap() > 0.0));
    if common::gpu().is_some() {
        assert!(study
            .iter()
            .any(|r| r["backend"].as_str().unwrap().starts_with("gpu")));
    }
    // Time to a reliable posterior: each model, each backend, the rule met.
    let reliable = v["reliable"].as_array().unwrap();
    for model in ["glm", "mixglm", "hmm"] {
        for prefix in ["cpu", "gpu"] {
            if prefix == "gpu" && common::gpu().is_none() {
                continue;
            }
            let r = reliable
                .iter()
                .find(|r| r["model"] == model && r["backend"].as_str().unwrap().starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} row for {model}"));
            assert_eq!(r["reached"], true, "{r}");
            assert!(r["min_ess_bulk"].as_f64().unwrap() >= 300.0, "{r}");
            assert!(r["max_rhat"].as_f64().unwrap() < 1.01, "{r}");
            assert_eq!(r["rhat_judge"], "classic");
        }
    }
    let mdn = v["mdn"].as_array().unwrap();
    assert!(mdn
        .iter()
        .any(|r| r["samples_per_sec"].as_f64().unwrap() > 0.0));
    // The table goes to stderr with --json.
    assert!(
        stderr.contains("family") && stderr.contains("CPU floor"),
        "{stderr}"
    );
}

#[test]
fn bench_without_gpu_says_so() {
    // --quick, with the options given explicitly winning over what it narrows.
    let out = Command::new(env!("CARGO_BIN_EXE_gpsamp"))
        .args([
            "bench",
            "--quick",
            "--reliable-chains",
            "0",
            "--no-gpu",
            "--n",
            "16",
            "--chains",
            "2",
            "--seconds",
            "0.01",
            "--families",
            "gmm",
            "--no-sampler",
            "--study-datasets",
            "0",
            "--mdn-pairs",
            "0",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("gpu: none"), "{stdout}");
    assert!(stdout.contains("gpsamp bench --quick"), "{stdout}");
    assert!(
        stdout.contains("\ngmm                16       2 "),
        "{stdout}"
    );
    assert!(
        !stdout.contains("sampler:") && !stdout.contains("EM (Baum-Welch)"),
        "{stdout}"
    );
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

fn npy_shape(path: &std::path::Path) -> Vec<usize> {
    gpsamp::io::npy::read_f32(path).unwrap().0
}

#[test]
fn sample_writes_the_documented_outputs() {
    let dir = std::env::temp_dir().join(format!("gpsamp-sample-{}", std::process::id()));
    let out = dir.join("fit");
    let o = out.to_str().unwrap();
    let (ok, stdout, stderr) = gpsamp(&[
        "sample",
        "--model",
        "gmm",
        "--components",
        "2",
        "--chains",
        "4",
        "--warmup",
        "200",
        "--draws",
        "100",
        "--seed",
        "3",
        "--backend",
        "cpu",
        "--out",
        o,
    ]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("no --data given"), "{stderr}");
    assert!(
        stdout.contains("r_hat") && stdout.contains("mu[1]"),
        "{stdout}"
    );
    assert_eq!(npy_shape(&out.join("draws.npy")), vec![4, 100, 6]);
    assert_eq!(npy_shape(&out.join("sample_stats.npy")), vec![4, 100, 5]);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["param_names"][0], "weights[0]");
    assert_eq!(meta["seed"], 3);
    assert_eq!(meta["label_alignment"]["applied"], true);
    assert!(meta["backend"].as_str().unwrap().starts_with("cpu"));
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert!(
        csv.starts_with("param,mean,sd,hdi_3%,hdi_97%,mcse_mean,mcse_sd,ess_bulk,ess_tail,r_hat"),
        "{csv}"
    );
    let js: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(js.as_array().unwrap().len(), 6);

    // Same seed, same draws.
    let out2 = dir.join("fit2");
    let (ok, _, e) = gpsamp(&[
        "sample",
        "--model",
        "gmm",
        "--chains",
        "4",
        "--warmup",
        "200",
        "--draws",
        "100",
        "--seed",
        "3",
        "--backend",
        "cpu",
        "--out",
        out2.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(ok, "{e}");
    assert_eq!(
        std::fs::read(out.join("draws.npy")).unwrap(),
        std::fs::read(out2.join("draws.npy")).unwrap()
    );

    // A failing run leaves the previous good output untouched.
    let before = std::fs::read(out.join("draws.npy")).unwrap();
    let (ok, _, e) = gpsamp(&[
        "sample",
        "--model",
        "gmm",
        "--keep",
        "nope",
        "--out",
        o,
        "--backend",
        "cpu",
    ]);
    assert!(!ok && e.contains("--keep") && e.contains("mu[0]"), "{e}");
    let (ok, _, e) = gpsamp(&[
        "sample",
        "--model",
        "glm",
        "--data",
        "/nonexistent.csv",
        "--x",
        "x",
        "--out",
        o,
    ]);
    assert!(!ok && e.contains("/nonexistent.csv"), "{e}");
    assert_eq!(std::fs::read(out.join("draws.npy")).unwrap(), before);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sample_fits_a_batch_of_datasets_and_a_model_file() {
    let dir = std::env::temp_dir().join(format!("gpsamp-batch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("sim.csv");
    let (ok, _, e) = gpsamp(&[
        "simulate",
        "--model",
        "glm",
        "--n",
        "50",
        "--datasets",
        "3",
        "--seed",
        "2",
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert!(ok, "{e}");
    let toml = dir.join("model.toml");
    std::fs::write(
        &toml,
        "model = \"glm\"\nfamily = \"gaussian\"\nprior_sigma = \"exponential(1)\"\n",
    )
    .unwrap();
    let out = dir.join("fit");
    let (ok, stdout, e) = gpsamp(&[
        "sample",
        "--model-file",
        toml.to_str().unwrap(),
        "--data",
        csv.to_str().unwrap(),
        "--x",
        "x0",
        "--group",
        "dataset",
        "--chains",
        "4",
        "--warmup",
        "150",
        "--draws",
        "100",
        "--backend",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{e}");
    assert!(stdout.contains("dataset 2"), "{stdout}");
    assert_eq!(npy_shape(&out.join("draws.npy")), vec![12, 100, 3]);
    let s = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert!(s.starts_with("dataset,param"), "{s}");
    assert_eq!(s.lines().count(), 1 + 3 * 3);
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "model = \"glm\"\ncolour = 3\n").unwrap();
    let (ok, _, e) = gpsamp(&[
        "sample",
        "--model-file",
        bad.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok && e.contains("bad.toml") && e.contains("colour"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sample_eiv_from_the_command_line() {
    let dir = std::env::temp_dir().join(format!("gpsamp-eiv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("eiv.csv");
    let (ok, _, e) = gpsamp(&[
        "simulate",
        "--model",
        "eiv",
        "--w",
        "1,2,0.5",
        "--n",
        "80",
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert!(ok, "{e}");
    let out = dir.join("fit");
    // Fits `csv` with weights `w` on inputs `x`, plus `extra` flags.
    let fit = |csv: &std::path::Path, w: &str, x: &str, extra: &[&str]| {
        let mut args = vec![
            "sample",
            "--model",
            "eiv",
            "--w",
            w,
            "--data",
            csv.to_str().unwrap(),
            "--x",
            x,
            "--warmup",
            "200",
            "--draws",
            "100",
            "--backend",
            "cpu",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        gpsamp(&args)
    };
    let (ok, stdout, e) = fit(&csv, "1,2,0.5", "x0,x1,x2", &[]);
    assert!(ok, "{e}");
    assert!(
        stdout.contains("sigma_x") && stdout.contains("b[2]"),
        "{stdout}"
    );
    let (ok, _, e) = gpsamp(&[
        "sample",
        "--model",
        "eiv",
        "--w",
        "1,2",
        "--data",
        csv.to_str().unwrap(),
        "--x",
        "x0,x1,x2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok && e.contains("--w"), "{e}");

    // Pooled systems: simulate writes a system column, sample --system reads it.
    let pooled = dir.join("pooled.csv");
    let (ok, _, e) = gpsamp(&[
        "simulate",
        "--model",
        "eiv",
        "--w",
        "1,2",
        "--systems",
        "3",
        "--n",
        "90",
        "--out",
        pooled.to_str().unwrap(),
    ]);
    assert!(ok, "{e}");
    let text = std::fs::read_to_string(&pooled).unwrap();
    assert!(text.starts_with("dataset,x0,x1,system,y"), "{text}");
    let (ok, stdout, e) = fit(&pooled, "1,2", "x0,x1", &["--system", "system"]);
    assert!(ok, "{e}");
    assert!(stdout.contains("b[2,1]"), "{stdout}");
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, text.replacen(",1,", ",1.5,", 1)).unwrap();
    let (ok, _, e) = fit(&bad, "1,2", "x0,x1", &["--system", "system"]);
    assert!(!ok && e.contains("bad.csv") && e.contains("1.5"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
