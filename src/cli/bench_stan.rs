//! `gpsamp bench`'s Stan rows: compile time of every posteriordb program in
//! tests/fixtures/posteriordb, gradient throughput of the tutorial's mixture-of-regressions
//! Stan program against the hand-written mixglm family, and eight schools end to end at many
//! chains: on the CPU, and on a hardware GPU when one exists (a software adapter's figures
//! say nothing about GPUs, so lavapipe gets no GPU rows).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use gpsamp::backend::{Backend, GpuContext, Precision};
use gpsamp::stan::StanModel;
use gpsamp::{DataBatch, MixGlm, Model, Priors};
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
    /// Terms of `target` and the shapes they fall into (the CPU kernel runs each shape's
    /// terms together), when the program's target is a sum of terms.
    pub terms: Option<(usize, usize)>,
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
    /// The same rows on a hardware GPU, when one exists.
    pub gpu: Option<StanGpuBench>,
}

/// The Stan rows on a hardware GPU.
#[derive(Serialize)]
pub struct StanGpuBench {
    /// The adapter.
    pub adapter: String,
    /// Evaluations per second of the tutorial's mixture Stan program (the kernel generated
    /// from its plan, f32).
    pub stan_mixture_evals_per_sec: f64,
    /// The same with the recording's interpreter kernel.
    pub stan_mixture_interpreted_evals_per_sec: f64,
    /// The same for the built-in mixglm kernel on the same data.
    pub mixglm_evals_per_sec: f64,
    /// Eight schools end to end: chains, seconds.
    pub eight_schools: Option<(usize, f64)>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The tutorial's mixture of regressions (N = 1 000) as the Stan program's JSON data.
fn mixture_data() -> (serde_json::Value, DataBatch) {
    let sim = gpsamp::tutorial::mixreg(0);
    let json = sim.stan_json(2);
    let batch = DataBatch::new(1, &[sim.data]).expect("tutorial data");
    (json, batch)
}

fn evals_per_sec(
    backend: &Backend,
    model: Arc<dyn Model>,
    data: Arc<DataBatch>,
    chains: usize,
    secs: f64,
) -> anyhow::Result<f64> {
    let mut eval = backend.evaluator(model.clone(), data, chains)?;
    let d = model.dim();
    let theta = gpsamp::tutorial::positions(5, chains * d);
    let (mut lp, mut g) = (vec![0.0; chains], vec![0.0; chains * d]);
    eval.eval(&theta, &mut lp, &mut g)?;
    // The best of five rounds: on a shared machine the others' work only slows a round.
    let mut best = 0.0f64;
    for _ in 0..5 {
        let t = Instant::now();
        let mut calls = 0usize;
        while t.elapsed().as_secs_f64() < secs / 5.0 || calls < 2 {
            eval.eval(&theta, &mut lp, &mut g)?;
            calls += 1;
        }
        best = best.max((calls * chains) as f64 / t.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Eight schools, `chains` chains, 1 000 warmup + 1 000 draws on `backend`: seconds.
fn eight_schools(backend: &Backend, dir: &Path, chains: usize) -> anyhow::Result<f64> {
    let p = dir.join("eight_schools-eight_schools_noncentered");
    let model = StanModel::from_files(&p.join("model.stan"), Some(&p.join("data.json")))?;
    let cfg = gpsamp::Config {
        chains,
        warmup: 1000,
        adaptive_warmup: false,
        draws: 1000,
        seed: 1,
        superchain_size: 4,
        ..gpsamp::Config::default()
    };
    let t = Instant::now();
    let data = Arc::new(gpsamp::stan::placeholder_data());
    let mut integ = gpsamp::hmc::integrator(backend, Arc::new(model.clone()), data, chains, 1)?;
    let mut sink = gpsamp::hmc::MemorySink::default();
    gpsamp::hmc::sample(
        integ.as_mut(),
        &model,
        1,
        &cfg,
        &mut sink,
        &mut |_, _, _, _| {},
    )?;
    Ok(t.elapsed().as_secs_f64())
}

/// Runs the Stan rows; `eight_schools_chains` 0 skips the end-to-end rows; `gpu` adds the
/// GPU rows when it is a hardware adapter.
pub fn run(
    secs: f64,
    chains: usize,
    eight_schools_chains: usize,
    gpu: Option<Arc<GpuContext>>,
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
        let mut terms = None;
        for _ in 0..3 {
            let t = Instant::now();
            let m = StanModel::from_files(&program, Some(&data))?;
            best = best.min(t.elapsed().as_secs_f64() * 1e3);
            ops = m.tape_len();
            terms = m.terms_and_shapes();
        }
        compile.push(CompileRow {
            posterior: p
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            milliseconds: best,
            tape_ops: ops,
            terms,
        });
    }
    if !quiet {
        eprintln!("gpsamp bench: Stan mixture program vs mixglm, {chains} chains, CPU f64");
    }
    let (json, batch) = mixture_data();
    let program = root().join("examples/stan/mixture.stan");
    let source = std::fs::read_to_string(&program)?;
    let stan = StanModel::compile(&program, &source, Some((Path::new("tutorial"), &json)))?;
    let stan = Arc::new(stan);
    let batch = Arc::new(batch);
    let cpu = Backend::Cpu(Precision::F64);
    let placeholder = Arc::new(gpsamp::stan::placeholder_data());
    let stan_rate = evals_per_sec(&cpu, stan.clone(), placeholder.clone(), chains, secs)?;
    let mixglm: Arc<dyn Model> = Arc::new(MixGlm::mixreg(2, 1, Priors::default())?);
    let mix_rate = evals_per_sec(&cpu, mixglm.clone(), batch.clone(), chains, secs)?;
    let eight = if eight_schools_chains > 0 {
        if !quiet {
            eprintln!(
                "gpsamp bench: eight schools, {eight_schools_chains} chains, 1000 + 1000, CPU"
            );
        }
        Some((
            eight_schools_chains,
            eight_schools(&cpu, &dir, eight_schools_chains)?,
        ))
    } else {
        None
    };
    let gpu = match gpu.filter(|c| c.summary.device_type != "Cpu") {
        Some(ctx) => {
            let adapter = ctx.summary.name.clone();
            let backend = Backend::Gpu(ctx);
            if !quiet {
                eprintln!("gpsamp bench: Stan rows on the GPU ({adapter})");
            }
            let interpreted = Arc::new(stan.as_ref().clone().interpreted());
            let stan_gpu = evals_per_sec(&backend, stan, placeholder.clone(), chains, secs)?;
            let stan_interpreted = evals_per_sec(&backend, interpreted, placeholder, chains, secs)?;
            let mix_gpu = evals_per_sec(&backend, mixglm, batch, chains, secs)?;
            let eight = if eight_schools_chains > 0 {
                Some((
                    eight_schools_chains,
                    eight_schools(&backend, &dir, eight_schools_chains)?,
                ))
            } else {
                None
            };
            Some(StanGpuBench {
                adapter,
                stan_mixture_evals_per_sec: stan_gpu,
                stan_mixture_interpreted_evals_per_sec: stan_interpreted,
                mixglm_evals_per_sec: mix_gpu,
                eight_schools: eight,
            })
        }
        None => None,
    };
    Ok(StanBench {
        compile,
        chains,
        stan_mixture_evals_per_sec: stan_rate,
        mixglm_evals_per_sec: mix_rate,
        eight_schools: eight,
        gpu,
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
        "{:<44} {:>9} {:>10} {:>16}",
        "posteriordb posterior", "ms", "tape ops", "terms (shapes)"
    );
    for r in &b.compile {
        let terms = r
            .terms
            .map(|(t, g)| format!("{t} ({g})"))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "{:<44} {:>9.2} {:>10} {:>16}",
            r.posterior, r.milliseconds, r.tape_ops, terms
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
    if let Some(g) = &b.gpu {
        let _ = writeln!(
            s,
            "tutorial mixture Stan program vs mixglm, {} chains, GPU {}: {:.3e} vs {:.3e} evals/s ({:.1}%)",
            b.chains,
            g.adapter,
            g.stan_mixture_evals_per_sec,
            g.mixglm_evals_per_sec,
            100.0 * g.stan_mixture_evals_per_sec / g.mixglm_evals_per_sec
        );
        let _ = writeln!(
            s,
            "tutorial mixture Stan program, generated vs interpreted GPU kernel: {:.3e} vs {:.3e} evals/s ({:.1}x)",
            g.stan_mixture_evals_per_sec,
            g.stan_mixture_interpreted_evals_per_sec,
            g.stan_mixture_evals_per_sec / g.stan_mixture_interpreted_evals_per_sec
        );
        if let Some((c, t)) = g.eight_schools {
            let _ = writeln!(
                s,
                "eight schools, {c} chains, 1000 + 1000 iterations, GPU {}: {t:.2} s",
                g.adapter
            );
        }
    }
}
