//! `gpsamp bench`'s Stan rows: compile time of every posteriordb program in
//! tests/fixtures/posteriordb, gradient throughput of the tutorial's mixture-of-regressions
//! Stan program against the hand-written mixglm family on the CPU, and eight schools end to
//! end at many chains.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use gpsamp::backend::{Backend, Precision};
use gpsamp::stan::StanModel;
use gpsamp::{DataBatch, MixGlm, Model, Priors};
use rand::RngExt;
use serde::Serialize;

/// One program's compile time.
#[derive(Serialize)]
pub struct CompileRow {
    /// posteriordb's posterior name.
    pub posterior: String,
    /// Parse, data, transformed data and recording, milliseconds (best of 3).
    pub milliseconds: f64,
    /// Operations recorded.
    pub tape_ops: usize,
}

/// The Stan rows.
#[derive(Serialize)]
pub struct StanBench {
    /// Compile time of each posteriordb program.
    pub compile: Vec<CompileRow>,
    /// Chains of the throughput rows.
    pub chains: usize,
    /// Log density + gradient evaluations per second of the tutorial's mixture Stan
    /// program (CPU, f64).
    pub stan_mixture_evals_per_sec: f64,
    /// The same for the built-in mixglm family on the same data.
    pub mixglm_evals_per_sec: f64,
    /// Eight schools end to end: chains, seconds (1 000 warmup + 1 000 draws, CPU).
    pub eight_schools: Option<(usize, f64)>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The tutorial's mixture of regressions (N = 1 000) as the Stan program's JSON data.
fn mixture_data() -> (serde_json::Value, DataBatch) {
    let sim = gpsamp::tutorial::mixreg(0);
    let json = serde_json::json!({
        "N": sim.data.len(),
        "K": 2,
        "x": sim.data.x[0],
        "y": sim.data.y,
    });
    let batch = DataBatch::new(1, &[sim.data]).expect("tutorial data");
    (json, batch)
}

fn evals_per_sec(
    model: Arc<dyn Model>,
    data: Arc<DataBatch>,
    chains: usize,
    secs: f64,
) -> anyhow::Result<f64> {
    let mut eval = Backend::Cpu(Precision::F64).evaluator(model.clone(), data, chains)?;
    let d = model.dim();
    let mut rng = gpsamp::rng::host_rng(5, 0, gpsamp::rng::Purpose::Simulate);
    let theta: Vec<f64> = (0..chains * d)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let (mut lp, mut g) = (vec![0.0; chains], vec![0.0; chains * d]);
    eval.eval(&theta, &mut lp, &mut g)?;
    let t = Instant::now();
    let mut calls = 0usize;
    while t.elapsed().as_secs_f64() < secs || calls < 2 {
        eval.eval(&theta, &mut lp, &mut g)?;
        calls += 1;
    }
    Ok((calls * chains) as f64 / t.elapsed().as_secs_f64())
}

/// Runs the Stan rows; `eight_schools_chains` 0 skips the end-to-end row.
pub fn run(
    secs: f64,
    chains: usize,
    eight_schools_chains: usize,
    quiet: bool,
) -> anyhow::Result<StanBench> {
    let dir = root().join("tests/fixtures/posteriordb");
    let mut compile = Vec::new();
    let mut names: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    for p in &names {
        let (program, data) = (p.join("model.stan"), p.join("data.json"));
        let mut best = f64::INFINITY;
        let mut ops = 0;
        for _ in 0..3 {
            let t = Instant::now();
            let m = StanModel::from_files(&program, Some(&data))?;
            best = best.min(t.elapsed().as_secs_f64() * 1e3);
            ops = m.tape_len();
        }
        compile.push(CompileRow {
            posterior: p
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            milliseconds: best,
            tape_ops: ops,
        });
    }
    if !quiet {
        eprintln!("gpsamp bench: Stan mixture program vs mixglm, {chains} chains, CPU f64");
    }
    let (json, batch) = mixture_data();
    let program = root().join("examples/stan/mixture.stan");
    let source = std::fs::read_to_string(&program)?;
    let stan = StanModel::compile(&program, &source, Some((Path::new("tutorial"), &json)))?;
    let stan_rate = evals_per_sec(
        Arc::new(stan),
        Arc::new(gpsamp::stan::placeholder_data()),
        chains,
        secs,
    )?;
    let mixglm = MixGlm::mixreg(2, 1, Priors::default())?;
    let mix_rate = evals_per_sec(Arc::new(mixglm), Arc::new(batch), chains, secs)?;
    let eight_schools = if eight_schools_chains > 0 {
        if !quiet {
            eprintln!(
                "gpsamp bench: eight schools, {eight_schools_chains} chains, 1000 + 1000, CPU"
            );
        }
        let p = dir.join("eight_schools-eight_schools_noncentered");
        let model = StanModel::from_files(&p.join("model.stan"), Some(&p.join("data.json")))?;
        let cfg = gpsamp::Config {
            chains: eight_schools_chains,
            warmup: 1000,
            adaptive_warmup: false,
            draws: 1000,
            seed: 1,
            superchain_size: 4,
            ..gpsamp::Config::default()
        };
        let t = Instant::now();
        let data = Arc::new(gpsamp::stan::placeholder_data());
        let mut integ = gpsamp::hmc::integrator(
            &Backend::cpu(),
            Arc::new(model.clone()),
            data,
            eight_schools_chains,
            1,
        )?;
        let mut sink = gpsamp::hmc::MemorySink::default();
        gpsamp::hmc::sample(
            integ.as_mut(),
            &model,
            1,
            &cfg,
            &mut sink,
            &mut |_, _, _, _| {},
        )?;
        Some((eight_schools_chains, t.elapsed().as_secs_f64()))
    } else {
        None
    };
    Ok(StanBench {
        compile,
        chains,
        stan_mixture_evals_per_sec: stan_rate,
        mixglm_evals_per_sec: mix_rate,
        eight_schools,
    })
}

/// The table.
pub fn render(s: &mut String, b: &StanBench) {
    use std::fmt::Write;
    let _ = writeln!(
        s,
        "\nStan programs: compile (parse, data, record), best of 3"
    );
    let _ = writeln!(
        s,
        "{:<44} {:>9} {:>10}",
        "posteriordb posterior", "ms", "tape ops"
    );
    for r in &b.compile {
        let _ = writeln!(
            s,
            "{:<44} {:>9.2} {:>10}",
            r.posterior, r.milliseconds, r.tape_ops
        );
    }
    let _ = writeln!(
        s,
        "tutorial mixture Stan program vs mixglm, {} chains, CPU f64: {:.3e} vs {:.3e} evals/s ({:.1}%)",
        b.chains,
        b.stan_mixture_evals_per_sec,
        b.mixglm_evals_per_sec,
        100.0 * b.stan_mixture_evals_per_sec / b.mixglm_evals_per_sec
    );
    if let Some((c, t)) = b.eight_schools {
        let _ = writeln!(
            s,
            "eight schools, {c} chains, 1000 + 1000 iterations, CPU: {t:.2} s"
        );
    }
}
