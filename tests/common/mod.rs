//! Shared test helpers: the GPU context (skipped loudly without an adapter unless
//! GPSAMP_REQUIRE_GPU=1), random models and data, and the relative-norm error.
#![allow(dead_code, unused_imports)]

use std::sync::{Arc, OnceLock};

use gpsamp::backend::GpuContext;
use gpsamp::rng::{host_rng, Purpose};
use gpsamp::{DataBatch, Dataset, Likelihood, MixGlm, Model, Priors, ScalePrior};
use rand::RngExt;

/// The shared GPU context, or `None` (with a loud message) when no adapter exists. With
/// `GPSAMP_REQUIRE_GPU=1` a missing adapter fails the test instead.
pub fn gpu() -> Option<Arc<GpuContext>> {
    static CTX: OnceLock<Result<Arc<GpuContext>, String>> = OnceLock::new();
    let ctx = CTX.get_or_init(|| GpuContext::new().map_err(|e| e.to_string()));
    match ctx {
        Ok(c) => Some(c.clone()),
        Err(e) => {
            if std::env::var("GPSAMP_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("GPSAMP_REQUIRE_GPU=1 but no GPU adapter: {e}");
            }
            eprintln!("\n!!! SKIPPING GPU TEST: no GPU adapter ({e}). Install mesa-vulkan-drivers for lavapipe. !!!\n");
            None
        }
    }
}

/// ||a - b|| / ||b||.
pub fn rel_norm(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    num / den.max(1e-300)
}

/// Every family configuration the tests cover, with non-default priors on some.
pub fn families() -> Vec<MixGlm> {
    let custom = Priors {
        coef: gpsamp::model::Normal { mean: 0.3, sd: 2.0 },
        intercept: gpsamp::model::Normal {
            mean: -0.5,
            sd: 1.5,
        },
        scale: ScalePrior::Gamma {
            shape: 2.0,
            rate: 1.5,
        },
        weights: 2.5,
    };
    let ln = Priors {
        scale: ScalePrior::LogNormal { mu: 0.1, sd: 0.7 },
        ..Priors::default()
    };
    let ex = Priors {
        scale: ScalePrior::Exponential { rate: 0.8 },
        ..Priors::default()
    };
    vec![
        MixGlm::glm(Likelihood::Gaussian, 1, Priors::default()).unwrap(),
        MixGlm::glm(Likelihood::Gaussian, 3, custom).unwrap(),
        MixGlm::glm(Likelihood::Bernoulli, 2, Priors::default()).unwrap(),
        MixGlm::glm(Likelihood::Poisson, 2, custom).unwrap(),
        // Intercept only (no inputs).
        MixGlm::glm(Likelihood::Bernoulli, 0, Priors::default()).unwrap(),
        MixGlm::gmm(1, ln).unwrap(),
        MixGlm::gmm(3, ex).unwrap(),
        MixGlm::mixreg(2, 1, Priors::default()).unwrap(),
        MixGlm::mixreg(3, 2, custom).unwrap(),
        MixGlm::new(2, 2, Likelihood::Bernoulli, Priors::default()).unwrap(),
        MixGlm::new(2, 1, Likelihood::Poisson, ln).unwrap(),
        MixGlm::glm(Likelihood::Gaussian, 1, Priors::default())
            .unwrap()
            .with_fixed_sigma(2.0)
            .unwrap(),
        MixGlm::gmm(2, custom)
            .unwrap()
            .with_fixed_sigma(1.0)
            .unwrap(),
        MixGlm::mixreg(2, 2, custom)
            .unwrap()
            .with_fixed_sigma(0.7)
            .unwrap(),
    ]
}

/// Simulated datasets of the given sizes (from the model's prior), packed.
pub fn data_for(model: &MixGlm, sizes: &[usize], seed: u64) -> (DataBatch, Vec<Vec<f64>>) {
    let mut truths = Vec::new();
    let mut sets: Vec<Dataset> = Vec::new();
    for (b, &n) in sizes.iter().enumerate() {
        let mut rng = host_rng(seed, b as u64, Purpose::Simulate);
        let (t, d) = model.simulate(n, &mut rng);
        truths.push(t);
        sets.push(d);
    }
    (DataBatch::new(model.features(), &sets).unwrap(), truths)
}

/// Random positions near the truths: `chains` per dataset, jittered by `scale`.
pub fn positions(
    model: &dyn Model,
    truths: &[Vec<f64>],
    chains: usize,
    scale: f64,
    seed: u64,
) -> Vec<f64> {
    let mut rng = host_rng(seed, 99, Purpose::Other);
    let d = model.dim();
    let mut theta = Vec::with_capacity(truths.len() * chains * d);
    for t in truths {
        for _ in 0..chains {
            for v in t {
                theta.push(v + scale * (rng.random::<f64>() * 2.0 - 1.0));
            }
        }
    }
    theta
}

/// Model as a shared trait object.
pub fn arc(m: &MixGlm) -> Arc<dyn Model> {
    Arc::new(m.clone())
}

/// Runs the gpsamp binary: (success, stdout, stderr).
pub fn gpsamp(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gpsamp"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh folder under the system's temporary folder, removed when dropped (also when the
/// test fails).
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// `gpsamp-test-NAME-PID-N`.
    pub fn new(name: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "gpsamp-test-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    /// A path inside the folder.
    pub fn join(&self, p: &str) -> std::path::PathBuf {
        self.0.join(p)
    }

    /// The folder as a string, for command lines.
    pub fn s(&self, p: &str) -> String {
        self.0.join(p).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the gpsamp binary in folder `cwd`: (exit code, stdout, stderr).
pub fn gpsamp_in(cwd: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    gpsamp_in_env(cwd, args, &[])
}

/// [`gpsamp_in`] with extra environment variables.
pub fn gpsamp_in_env(
    cwd: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gpsamp"))
        .current_dir(cwd)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every path under `dir` with its size (a snapshot to compare before and after a command).
pub fn snapshot(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p.clone());
            }
            out.push((
                p.strip_prefix(dir).unwrap().display().to_string(),
                if m.is_dir() { 0 } else { m.len() },
            ));
        }
    }
    out.sort();
    out
}
pub mod hmm;

/// Trains a tiny MDN (Beta-Binomial, one epoch, CPU) into `t/net` and returns its
/// model.json as JSON.
pub fn tiny_mdn(t: &TempDir) -> serde_json::Value {
    let (code, _, err) = gpsamp_in(
        &t.0,
        &[
            "mdn",
            "train",
            "--sims",
            "2000",
            "--epochs",
            "1",
            "--hidden",
            "3",
            "--components",
            "2",
            "--backend",
            "cpu",
            "--quiet",
            "--out",
            "net",
        ],
    );
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&std::fs::read_to_string(t.join("net/model.json")).unwrap()).unwrap()
}

/// The Python interpreter in `GPSAMP_PYTHON` (numpy, pandas and arviz installed; `.ci/run`
/// makes one), or `None` with a loud message naming `what` is skipped; a failure instead when
/// `GPSAMP_REQUIRE_PYTHON=1`.
pub fn python(what: &str) -> Option<std::path::PathBuf> {
    match std::env::var_os("GPSAMP_PYTHON") {
        Some(p) => Some(std::path::PathBuf::from(p)),
        None => {
            if std::env::var("GPSAMP_REQUIRE_PYTHON").as_deref() == Ok("1") {
                panic!("GPSAMP_REQUIRE_PYTHON=1 but GPSAMP_PYTHON is not set");
            }
            eprintln!("\n!!! SKIPPING {what}: set GPSAMP_PYTHON to a python with numpy, pandas and arviz !!!\n");
            None
        }
    }
}

/// Parses the SVG file at `path` as XML and checks that its text elements include every
/// string of `texts` (titles, axis labels, legends); returns all of its text.
#[allow(dead_code)]
pub fn assert_svg(path: &std::path::Path, texts: &[&str]) -> String {
    let svg = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc = roxmltree::Document::parse(&svg)
        .unwrap_or_else(|e| panic!("{} is not well-formed XML: {e}", path.display()));
    assert_eq!(
        doc.root_element().tag_name().name(),
        "svg",
        "{}",
        path.display()
    );
    let all: String = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join("\n");
    for t in texts {
        assert!(
            all.contains(t),
            "{} has no text {t:?}; its texts: {all}",
            path.display()
        );
    }
    all
}
