//! `gpsamp bench`: time to a reliable posterior (glm, mixglm and the HMM at 4 and 1 024
//! chains), batch log density + gradient evaluations per second for every family, and the
//! sampler, study, MDN and EM engines, on the CPU and GPU backends side by side, with a
//! floor estimate for the CPU. `--quick` keeps a few representative rows (under a minute on
//! two cores).

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use gpsamp::backend::GpuEvaluator;
use gpsamp::backend::{AdapterSummary, GpuContext};
use gpsamp::backend::{Backend, CpuEvaluator, Evaluator, Precision};
use gpsamp::rng::{host_rng, Purpose};
use gpsamp::{DataBatch, Likelihood, MixGlm, Model, Priors};
use rand::RngExt;
use serde::Serialize;

/// Options of `gpsamp bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print the report as JSON on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
    /// A few representative rows in under a minute on two cores: time to a reliable
    /// posterior for glm, mixglm and the HMM at 4 chains and glm and mixglm at 1 024 (on a
    /// hardware GPU the HMM too), the CPU in f32, and mixglm evaluations at 1 024 chains in
    /// both precisions; no sampler, study, MDN or EM rows. Options given explicitly still
    /// apply.
    #[arg(long)]
    quick: bool,
    /// Bulk ESS of the time-to-reliable-posterior rows (every parameter, with R-hat, or
    /// nested R-hat for 64 chains or more, below 1.01), as `sample --target-ess`.
    #[arg(long, default_value_t = 10_000.0)]
    target_ess: f64,
    /// Precisions of the CPU backend in the time-to-reliable-posterior rows (`f32`, `f64` or
    /// both); the sampler, study, MDN and EM rows use the first, the evaluation rows always
    /// show both. Default: both, or `f32` alone with --quick.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "f32,f64")]
    precision: Vec<super::args::PrecisionArg>,
    /// Chain counts of the time-to-reliable-posterior rows; 0 skips them.
    #[arg(long, value_delimiter = ',', default_value = "4,1024")]
    reliable_chains: Vec<usize>,
    /// Data points per dataset.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Chain counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,64,1024,16384")]
    chains: Vec<usize>,
    /// Minimum seconds per measurement.
    #[arg(long, default_value_t = 0.5)]
    seconds: f64,
    /// The Stan rows: compile time of posteriordb's programs, the tutorial's mixture program
    /// against mixglm at 1 024 chains, and eight schools end to end at --stan-chains.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    stan: bool,
    /// Chains of the eight-schools row (1 000 + 1 000 iterations on the CPU); 0 skips it
    /// (the default with --quick).
    #[arg(long, default_value_t = 4096)]
    stan_chains: usize,
    /// Skip the GPU backend even when an adapter exists.
    #[arg(long)]
    no_gpu: bool,
    /// Only these families (glm-gaussian, glm-bernoulli, glm-poisson, gmm, mixglm).
    #[arg(long, value_delimiter = ',')]
    families: Vec<String>,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
    /// Chain counts for the sampler benchmark (mixture of regressions, N = --n); 0 or
    /// --no-sampler skips it. Iterations: 1000 + 1000 up to 64 chains, 200 + 100 up to 4096,
    /// 100 + 50 beyond.
    #[arg(long, value_delimiter = ',', default_value = "4,1024,16384")]
    sampler_chains: Vec<usize>,
    /// Skip the sampler benchmark.
    #[arg(long)]
    no_sampler: bool,
    /// Datasets of the study benchmark (simulation-based calibration of the Gaussian GLM,
    /// N = 100, 4 chains, 500 + 500 draws, as `gpsamp sbc`); 0 skips it. A software adapter
    /// runs at most 64.
    #[arg(long, default_value_t = 1000)]
    study_datasets: usize,
    /// Sequences of the EM benchmark (Gaussian HMM, T = 1000, K = 3 and 8, one restart);
    /// 0 skips it. A software adapter runs at most 64.
    #[arg(long, default_value_t = 1024)]
    em_sequences: usize,
    /// Pairs of the MDN training benchmark (Beta-Binomial, the notebook's network
    /// 24-25-16 with K = 8, batch 512, 2 epochs); 0 skips it. A software adapter trains on
    /// at most 50 000.
    #[arg(long, default_value_t = 200_000)]
    mdn_pairs: usize,
}

#[derive(Serialize)]
struct SamplerRow {
    chains: usize,
    backend: String,
    warmup: usize,
    draws: usize,
    seconds: f64,
    gradient_evals: u64,
    gradient_evals_per_sec: f64,
    /// Smallest bulk ESS over the parameters (unconstrained), per second of the whole run.
    min_ess_bulk: f64,
    min_ess_bulk_per_sec: f64,
    /// Dispatches (GPU) or integrator calls (CPU): one per transition plus initialisation.
    transitions: u64,
    divergences: usize,
}

/// Time to a reliable posterior: one `sample --target-ess` run from a cold start (model,
/// data, integrator and shader compilation, EM start for the HMM, adaptive warmup, sampling
/// until the rule holds), as a user would run it.
#[derive(Serialize)]
struct ReliableRow {
    model: String,
    chains: usize,
    backend: String,
    /// Wall seconds from nothing to the stop.
    seconds: f64,
    warmup_iterations: usize,
    /// Draws per chain when the rule held (or the upper bound).
    draws: usize,
    min_ess_bulk: f64,
    max_rhat: f64,
    max_nested_rhat: f64,
    /// Which R-hat the rule used: `nested` (64 chains or more) or `classic`.
    rhat_judge: String,
    reached: bool,
    gradient_evals: u64,
}

#[derive(Serialize)]
struct MdnRow {
    backend: String,
    pairs: usize,
    epochs: usize,
    seconds: f64,
    samples_per_sec: f64,
}

#[derive(Serialize)]
struct EmRow {
    backend: String,
    states: usize,
    sequences: usize,
    steps: usize,
    iterations: usize,
    seconds: f64,
    iterations_per_sec: f64,
    /// Observations through forward-backward per second.
    obs_per_sec: f64,
}

#[derive(Serialize)]
struct StudyRow {
    backend: String,
    datasets: usize,
    seconds: f64,
    datasets_per_sec: f64,
    /// Every uniformity test passed at alpha = 0.001.
    calibrated: bool,
}

#[derive(Serialize)]
struct Row {
    family: String,
    n: usize,
    chains: usize,
    backend: String,
    /// `end-to-end` (positions up, densities and gradients down) or `resident` (GPU only:
    /// repeated dispatches on device-resident positions, no transfers).
    mode: String,
    evals_per_sec: f64,
    calls: usize,
    seconds: f64,
}

#[derive(Serialize)]
struct Floor {
    family: String,
    n: usize,
    flops_per_eval: f64,
    transcendentals_per_eval: f64,
    flops_per_transcendental: f64,
    cores: usize,
    ghz: f64,
    /// The SIMD tier the kernels ran on (`portable`, `avx2`, `avx512`).
    simd: String,
    /// f64 lanes per FMA pipe and cycle (f32: twice as many).
    f64_lanes: usize,
    /// f64 peak of the machine; f32 peak is twice this.
    peak_gflops: f64,
    floor_evals_per_sec: f64,
    best_cpu_evals_per_sec: f64,
    fraction_of_floor: f64,
    best_cpu_f32_evals_per_sec: f64,
    /// Best f32 evaluations per second against twice the f64 floor.
    fraction_of_f32_floor: f64,
}

#[derive(Serialize)]
struct Report {
    cpu_threads: usize,
    adapter: Option<AdapterSummary>,
    gpu_note: Option<String>,
    quick: bool,
    target_ess: f64,
    reliable: Vec<ReliableRow>,
    rows: Vec<Row>,
    floor: Option<Floor>,
    sampler: Vec<SamplerRow>,
    study: Vec<StudyRow>,
    mdn: Vec<MdnRow>,
    em: Vec<EmRow>,
    stan: Option<super::bench_stan::StanBench>,
}

fn families(p: &Priors) -> Vec<(&'static str, MixGlm)> {
    vec![
        (
            "glm-gaussian",
            MixGlm::glm(Likelihood::Gaussian, 1, *p).expect("valid"),
        ),
        (
            "glm-bernoulli",
            MixGlm::glm(Likelihood::Bernoulli, 1, *p).expect("valid"),
        ),
        (
            "glm-poisson",
            MixGlm::glm(Likelihood::Poisson, 1, *p).expect("valid"),
        ),
        ("gmm", MixGlm::gmm(2, *p).expect("valid")),
        ("mixglm", MixGlm::mixreg(2, 1, *p).expect("valid")),
    ]
}

fn timed(
    min_secs: f64,
    mut f: impl FnMut() -> anyhow::Result<usize>,
) -> anyhow::Result<(usize, f64)> {
    f()?; // warm-up: caches, pipeline first use
    let start = Instant::now();
    let mut calls = 0;
    loop {
        calls += f()?;
        let t = start.elapsed().as_secs_f64();
        if t >= min_secs && calls >= 2 {
            return Ok((calls, t));
        }
    }
}

/// What `--quick` changes: every option it narrows that the user did not give.
fn quicken(a: &mut Args, given: &dyn Fn(&str) -> bool) {
    if !a.quick {
        return;
    }
    if !given("chains") {
        a.chains = vec![1024];
    }
    if !given("precision") {
        a.precision = vec![super::args::PrecisionArg::F32];
    }
    if !given("families") {
        a.families = vec!["mixglm".into()];
    }
    if !given("seconds") {
        a.seconds = 0.3;
    }
    if !given("sampler_chains") {
        a.no_sampler = true;
    }
    if !given("stan_chains") {
        a.stan_chains = 0;
    }
    if !given("study_datasets") {
        a.study_datasets = 0;
    }
    if !given("em_sequences") {
        a.em_sequences = 0;
    }
    if !given("mdn_pairs") {
        a.mdn_pairs = 0;
    }
}

pub fn run(mut a: Args, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let given = |id: &str| {
        matches
            .value_source(id)
            .is_some_and(|s| s == clap::parser::ValueSource::CommandLine)
    };
    quicken(&mut a, &given);
    if !(a.target_ess > 0.0 && a.target_ess.is_finite()) {
        anyhow::bail!("--target-ess must be a positive number");
    }
    if a.n == 0 || a.chains.contains(&0) {
        anyhow::bail!("--n and every --chains value must be at least 1");
    }
    let priors = Priors::default();
    let mut fams = families(&priors);
    if !a.families.is_empty() {
        for f in &a.families {
            if !fams.iter().any(|(n, _)| n == f) {
                anyhow::bail!("--families: unknown family {f:?} (glm-gaussian, glm-bernoulli, glm-poisson, gmm, mixglm)");
            }
        }
        fams.retain(|(n, _)| a.families.iter().any(|f| f == n));
    }
    let (ctx, gpu_note) = if a.no_gpu {
        (None, Some("skipped (--no-gpu)".to_string()))
    } else {
        match GpuContext::new() {
            Ok(c) => (Some(c), None),
            Err(e) => {
                eprintln!("gpsamp bench: {e}; measuring the CPU backend only");
                (None, Some(e.to_string()))
            }
        }
    };
    let progress = !a.quiet && std::io::stderr().is_terminal();
    let per_family = a.chains.len() * (2 + if ctx.is_some() { 2 } else { 0 });
    let bar = if progress {
        indicatif::ProgressBar::new((fams.len() * per_family) as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .expect("valid template"),
    );

    // Time to a reliable posterior first: the headline.
    let software = ctx.as_ref().is_some_and(|c| c.summary.device_type == "Cpu");
    // The reliable rows run the CPU in every --precision; the other engines in the first.
    let mut reliable_backends: Vec<Backend> = Vec::new();
    for p in &a.precision {
        let b = Backend::Cpu((*p).into());
        if !reliable_backends
            .iter()
            .any(|x| x.describe() == b.describe())
        {
            reliable_backends.push(b);
        }
    }
    let gpus = ctx.iter().map(|c| Backend::Gpu(c.clone()));
    let backends: Vec<Backend> = reliable_backends
        .first()
        .cloned()
        .into_iter()
        .chain(gpus.clone())
        .collect();
    reliable_backends.extend(gpus);
    let on_software = |b: &Backend| software && matches!(b, Backend::Gpu(_));
    let mut reliable = Vec::new();
    for model in ["glm", "mixglm", "hmm"] {
        for &chains in a.reliable_chains.iter().filter(|&&c| c > 0) {
            for backend in &reliable_backends {
                // The HMM at 1 024 chains takes about 140 s on two cores: not in --quick.
                let skip = chains > 64
                    && (on_software(backend)
                        || (a.quick && model == "hmm" && matches!(backend, Backend::Cpu(_))))
                    // A family without an f32 kernel runs f64 under either precision: once.
                    || reliable.iter().any(|r: &ReliableRow| {
                        r.model == model && r.chains == chains && r.backend == backend.describe()
                    });
                if skip {
                    continue;
                }
                if !a.quiet {
                    eprintln!(
                        "gpsamp bench: time to a reliable posterior, {model}, {chains} chains, {}",
                        backend.describe()
                    );
                }
                reliable.push(bench_reliable(backend, model, chains, a.target_ess)?);
            }
        }
    }

    let mut rows = Vec::new();
    for (name, model) in &fams {
        let mut rng = host_rng(1, 0, Purpose::Simulate);
        let (truth, dataset) = model.simulate(a.n, &mut rng);
        let data = Arc::new(DataBatch::new(model.features(), &[dataset])?);
        let model: Arc<dyn Model> = Arc::new(model.clone());
        for &chains in &a.chains {
            let d = model.dim();
            let theta: Vec<f64> = (0..chains * d)
                .map(|i| truth[i % d] + 0.1 * (rng.random::<f64>() - 0.5))
                .collect();
            let mut logp = vec![0.0; chains];
            let mut grad = vec![0.0; chains * d];
            let mut push = |backend: String, mode: &str, (calls, secs): (usize, f64)| {
                rows.push(Row {
                    family: name.to_string(),
                    n: a.n,
                    chains,
                    backend,
                    mode: mode.into(),
                    evals_per_sec: (calls * chains) as f64 / secs,
                    calls,
                    seconds: secs,
                });
            };
            for precision in [Precision::F64, Precision::F32] {
                bar.set_message(format!(
                    "{name} x {chains} chains: cpu {}",
                    precision.name()
                ));
                let mut cpu = CpuEvaluator::new(model.clone(), data.clone(), chains)?
                    .with_precision(precision);
                let t = timed(a.seconds, || {
                    cpu.eval(&theta, &mut logp, &mut grad)?;
                    Ok(1)
                })?;
                push(cpu.backend(), "end-to-end", t);
                bar.inc(1);
            }
            if let Some(ctx) = &ctx {
                bar.set_message(format!("{name} x {chains} chains: gpu"));
                let mut gpu = GpuEvaluator::new(ctx.clone(), model.as_ref(), &data, chains, None)
                    .with_context(|| format!("building the GPU evaluator for {name}"))?;
                let t = timed(a.seconds, || {
                    gpu.eval(&theta, &mut logp, &mut grad)?;
                    Ok(1)
                })?;
                push(gpu.backend(), "end-to-end", t);
                bar.inc(1);
                gpu.upload(&theta);
                let t = timed(a.seconds, || {
                    gpu.dispatch(10)?;
                    Ok(10)
                })?;
                push(gpu.backend(), "resident", t);
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();

    let floor = fams
        .iter()
        .find(|(n, _)| *n == "mixglm")
        .map(|(_, m)| floor(m, a.n, &rows));
    // A software adapter gets the smaller runs.
    let mut sampler = Vec::new();
    if !a.no_sampler {
        for &chains in a.sampler_chains.iter().filter(|&&c| c > 0) {
            let (warmup, draws) = match chains {
                0..=64 => (1000, 1000),
                65..=4096 => (200, 100),
                _ => (100, 50),
            };
            for backend in &backends {
                if on_software(backend) && chains > 1024 {
                    if !a.quiet {
                        eprintln!("gpsamp bench: sampler, {chains} chains: skipped on the software adapter");
                    }
                    continue;
                }
                if !a.quiet {
                    eprintln!(
                        "gpsamp bench: sampler, {chains} chains, {}",
                        backend.describe()
                    );
                }
                sampler.push(bench_sampler(backend, a.n, chains, warmup, draws)?);
            }
        }
    }
    let mut study = Vec::new();
    let mut mdn = Vec::new();
    for backend in &backends {
        let datasets = if on_software(backend) {
            a.study_datasets.min(64)
        } else {
            a.study_datasets
        };
        if datasets > 0 {
            if !a.quiet {
                eprintln!(
                    "gpsamp bench: study, {datasets} Gaussian-GLM datasets, {}",
                    backend.describe()
                );
            }
            study.push(bench_study(backend, datasets)?);
        }
        let pairs = if on_software(backend) {
            a.mdn_pairs.min(50_000)
        } else {
            a.mdn_pairs
        };
        if pairs > 0 {
            if !a.quiet {
                eprintln!(
                    "gpsamp bench: MDN training, {pairs} pairs, {}",
                    backend.describe()
                );
            }
            mdn.push(bench_mdn(backend, pairs)?);
        }
    }
    let mut em = Vec::new();
    for k in [3, 8] {
        for backend in &backends {
            let seqs = if on_software(backend) {
                a.em_sequences.min(64)
            } else {
                a.em_sequences
            };
            if seqs > 0 {
                if !a.quiet {
                    eprintln!(
                        "gpsamp bench: EM, K = {k}, {seqs} sequences x 1000 steps, {}",
                        backend.describe()
                    );
                }
                em.push(bench_em(backend, k, seqs, 1000)?);
            }
        }
    }
    let stan = if a.stan {
        Some(super::bench_stan::run(
            a.seconds,
            1024,
            a.stan_chains,
            ctx.clone(),
            a.quiet,
        )?)
    } else {
        None
    };
    let report = Report {
        cpu_threads: rayon::current_num_threads(),
        adapter: ctx.as_ref().map(|c| c.summary.clone()),
        gpu_note,
        quick: a.quick,
        target_ess: a.target_ess,
        reliable,
        rows,
        floor,
        sampler,
        study,
        mdn,
        em,
        stan,
    };
    let table = render(&report);
    if a.json {
        eprint!("{table}");
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        out!("{table}");
    }
    Ok(())
}

/// Simulation-based calibration of the Gaussian GLM over `datasets` datasets (N = 100,
/// 4 chains, 500 + 500 draws), timed whole: simulation, sampling and the report.
fn bench_study(backend: &Backend, datasets: usize) -> anyhow::Result<StudyRow> {
    let model: Arc<dyn Model> = Arc::new(MixGlm::glm(Likelihood::Gaussian, 1, Priors::default())?);
    let study = gpsamp::study::Study {
        generator: model.clone(),
        fit: model,
        points: 100,
        datasets,
        config: gpsamp::hmc::Config {
            chains: 4,
            warmup: 500,
            draws: 500,
            ..Default::default()
        },
        batch: gpsamp::study::default_batch(backend, 4),
        alpha: 0.001,
        design: gpsamp::study::Design::Prior,
        given: None,
    };
    let t0 = std::time::Instant::now();
    let records = study.run(0..datasets, backend, &mut |_, _| {})?;
    let rep = gpsamp::study::sbc::report(&study.settings(), &records);
    let seconds = t0.elapsed().as_secs_f64();
    Ok(StudyRow {
        backend: backend.describe(),
        datasets,
        seconds,
        datasets_per_sec: datasets as f64 / seconds,
        calibrated: rep.pass,
    })
}

/// EM iterations (E-step + M-step, one restart, tolerance 0 so every iteration runs) on a
/// Gaussian HMM with `k` states, `seqs` sequences of `steps` steps.
fn bench_em(backend: &Backend, k: usize, seqs: usize, steps: usize) -> anyhow::Result<EmRow> {
    use gpsamp::hmm::{em, io, HmmSpec};
    let spec = HmmSpec::gaussian(k, 1)?;
    let mut rng = host_rng(3, 0, Purpose::Simulate);
    let truth = io::random_params(&spec, &mut rng);
    let (d, _) = io::simulate(&spec, &truth, seqs, steps, &mut rng);
    let data = DataBatch::new(spec.data_columns(), &[d])?;
    let iterations = 20;
    let cfg = em::EmConfig {
        restarts: 1,
        max_iters: iterations,
        tol: 0.0,
        ..Default::default()
    };
    let t0 = std::time::Instant::now();
    let fit = gpsamp::hmm::fit_em(backend, &spec, &cfg, &data, &|_| {})?;
    let seconds = t0.elapsed().as_secs_f64();
    // max_iters E-steps with an M-step each, plus the scoring E-step at the end.
    let done = fit[0].trace.len();
    Ok(EmRow {
        backend: backend.describe(),
        states: k,
        sequences: seqs,
        steps,
        iterations: done,
        seconds,
        iterations_per_sec: done as f64 / seconds,
        obs_per_sec: (done * seqs * steps) as f64 / seconds,
    })
}

/// MDN training on Beta-Binomial pairs with the notebook's network (2 epochs, batch 512).
fn bench_mdn(backend: &Backend, pairs: usize) -> anyhow::Result<MdnRow> {
    use gpsamp::mdn::{sim::Simulator, train, Shape};
    let sim = Simulator::BetaBinomial {
        a: 2.0,
        b: 5.0,
        trials: 100,
    };
    let (theta, y) = sim.simulate(pairs, 0);
    let shape = Shape {
        input: 1,
        hidden: vec![24, 25, 16],
        k: 8,
        theta: 1,
    };
    let cfg = train::TrainConfig {
        epochs: 2,
        val_frac: 0.0,
        ..Default::default()
    };
    let t = train::train(&shape, &theta, &y, Some(sim), &cfg, backend, &mut |_| {})?;
    Ok(MdnRow {
        backend: backend.describe(),
        pairs,
        epochs: t.history.len(),
        seconds: t.history.last().map_or(0.0, |h| h.seconds),
        samples_per_sec: t.pairs_per_sec,
    })
}

/// One `sample --target-ess` run of `model` (glm, mixglm: the tutorial's data for it; hmm:
/// the tutorial's Gaussian HMM, 3 sequences x 200 steps, chains started around an EM fit)
/// with the CLI's defaults, timed from nothing.
fn bench_reliable(
    backend: &Backend,
    model: &str,
    chains: usize,
    target: f64,
) -> anyhow::Result<ReliableRow> {
    use gpsamp::hmc::{self, Config, MemorySink};
    let t = Instant::now();
    let (m, data, centers): (Arc<dyn Model>, DataBatch, Vec<Vec<f64>>) = match model {
        "hmm" => {
            let spec = gpsamp::hmm::HmmSpec::gaussian(3, 1)?;
            let (d, _, _) =
                gpsamp::hmm::io::tutorial_sequences(&spec, 0).context("tutorial HMM")?;
            let data = DataBatch::new(spec.data_columns(), &[d])?;
            let priors = gpsamp::HmmPriors::default();
            let hmm = gpsamp::Hmm::new(spec, priors)?;
            let centers = gpsamp::workflow::em_init_centers(&hmm, &data, priors.stickiness, 0)?;
            (Arc::new(hmm), data, centers)
        }
        _ => {
            let mg = if model == "glm" {
                MixGlm::glm(Likelihood::Gaussian, 1, Priors::default())?
            } else {
                MixGlm::mixreg(2, 1, Priors::default())?
            };
            let sim = gpsamp::tutorial::for_model(&mg, 0).context("tutorial dataset")?;
            let data = DataBatch::new(1, &[sim.data])?;
            (Arc::new(mg), data, Vec::new())
        }
    };
    let cfg = Config {
        chains,
        warmup: 1000,
        adaptive_warmup: true,
        draws: if chains < 64 { 20_000 } else { 1000 },
        seed: 1,
        superchain_size: if chains >= 16 && chains.is_multiple_of(4) {
            4
        } else {
            1
        },
        target_ess: Some(target),
        init_radius: if centers.is_empty() { 2.0 } else { 0.5 },
        init_centers: centers,
        ..Config::default()
    };
    let backend = &backend.clone().for_model(m.as_ref());
    let mut integ = hmc::integrator(backend, m.clone(), Arc::new(data), chains, cfg.seed)?;
    let mut sink = MemorySink::default();
    let rep = hmc::sample(
        integ.as_mut(),
        m.as_ref(),
        1,
        &cfg,
        &mut sink,
        &mut |_, _, _, _| {},
    )?;
    let seconds = t.elapsed().as_secs_f64();
    let target = rep.target.context("the stopping rule ran")?;
    let last = target.checks.last().context("at least one check")?;
    Ok(ReliableRow {
        model: model.into(),
        chains,
        backend: backend.describe(),
        seconds,
        warmup_iterations: rep.warmup_iterations,
        draws: rep.draws_completed,
        min_ess_bulk: last.min_ess_bulk,
        max_rhat: last.max_rhat,
        max_nested_rhat: last.max_nested_rhat,
        rhat_judge: if target.nested_rhat_judges {
            "nested"
        } else {
            "classic"
        }
        .into(),
        reached: target.reached,
        gradient_evals: rep.gradient_evals,
    })
}

/// One sampler run on the tutorial's mixture of two regressions (N points).
fn bench_sampler(
    backend: &Backend,
    n: usize,
    chains: usize,
    warmup: usize,
    draws: usize,
) -> anyhow::Result<SamplerRow> {
    use gpsamp::hmc::{self, Config, MemorySink};
    let model = MixGlm::mixreg(2, 1, Priors::default())?;
    let mut sim = gpsamp::tutorial::mixreg(0);
    let keep = n.min(sim.data.len());
    sim.data.x[0].truncate(keep);
    sim.data.y.truncate(keep);
    let data = Arc::new(DataBatch::new(1, &[sim.data])?);
    let cfg = Config {
        chains,
        warmup,
        // Fixed iteration counts are the point of these rows.
        adaptive_warmup: false,
        draws,
        seed: 1,
        superchain_size: if chains.is_multiple_of(4) && chains >= 16 {
            4
        } else {
            1
        },
        ..Config::default()
    };
    let mut integ = gpsamp::hmc::integrator(backend, Arc::new(model.clone()), data, chains, 1)?;
    let mut sink = MemorySink::default();
    let t = Instant::now();
    let rep = hmc::sample(
        integ.as_mut(),
        &model,
        1,
        &cfg,
        &mut sink,
        &mut |_, _, _, _| {},
    )?;
    let secs = t.elapsed().as_secs_f64();
    let min_ess = (0..model.dim())
        .map(|i| {
            let ch: Vec<Vec<f64>> = (0..chains).map(|c| sink.trace(c, i)).collect();
            gpsamp::diag::ess_bulk(&ch)
        })
        .fold(f64::INFINITY, f64::min);
    Ok(SamplerRow {
        chains,
        backend: backend.describe(),
        warmup,
        draws,
        seconds: secs,
        gradient_evals: rep.gradient_evals,
        gradient_evals_per_sec: rep.gradient_evals as f64 / secs,
        min_ess_bulk: min_ess,
        min_ess_bulk_per_sec: min_ess / secs,
        transitions: rep.transitions,
        divergences: rep.datasets[0].divergences,
    })
}

/// A field of the first processor in `/proc/cpuinfo` (`cpu MHz`, `vendor_id`), if any.
fn cpuinfo_field(name: &str) -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    cpuinfo
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split(':').nth(1))
        .map(|v| v.trim().to_string())
}

fn cpu_ghz() -> f64 {
    cpuinfo_field("cpu MHz")
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(3.0, |mhz| mhz / 1000.0)
}

/// Lanes of f64 one FMA pipe retires per cycle at the tier the kernels run on. AMD's Zen 4
/// (family 25) executes a 512-bit instruction as two 256-bit halves, so AVX-512 counts as
/// AVX2 there: the floor is the hardware's, not the instruction width's.
fn f64_lanes() -> (usize, &'static str) {
    let simd = gpsamp::math::simd();
    let mut lanes = simd.f64_lanes();
    if simd == gpsamp::math::Simd::Avx512
        && cpuinfo_field("vendor_id").as_deref() == Some("AuthenticAMD")
        && cpuinfo_field("cpu family").as_deref() == Some("25")
    {
        lanes = 4;
    }
    (lanes, simd.name())
}

/// The arithmetic floor: every flop at the SIMD width the kernel is compiled for, two FMA
/// pipes per core, all cores busy; an exp/log counted as 20 flops (a degree-13 polynomial
/// plus range reduction, as in `math::exp`). The f32 kernels have twice the lanes (and
/// cheaper exp/log, still counted as 20 flops), so their floor is twice as high.
fn floor(model: &MixGlm, n: usize, rows: &[Row]) -> Floor {
    let (fl, tr) = model.cost_per_point();
    let per_tr = 20.0;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let ghz = cpu_ghz();
    let (lanes, simd) = f64_lanes();
    let peak = cores as f64 * ghz * lanes as f64 * 2.0 * 2.0;
    let work = n as f64 * (fl + per_tr * tr);
    let floor = peak * 1e9 / work;
    let best = |p: &str| {
        rows.iter()
            .filter(|r| {
                r.family == "mixglm" && r.backend.starts_with("cpu") && r.backend.contains(p)
            })
            .map(|r| r.evals_per_sec)
            .fold(0.0, f64::max)
    };
    let (b64, b32) = (best("f64"), best("f32"));
    Floor {
        family: "mixglm (K=2, P=1)".into(),
        n,
        flops_per_eval: fl * n as f64,
        transcendentals_per_eval: tr * n as f64,
        flops_per_transcendental: per_tr,
        cores,
        ghz,
        simd: simd.into(),
        f64_lanes: lanes,
        peak_gflops: peak,
        floor_evals_per_sec: floor,
        best_cpu_evals_per_sec: b64,
        fraction_of_floor: b64 / floor,
        best_cpu_f32_evals_per_sec: b32,
        fraction_of_f32_floor: b32 / (2.0 * floor),
    }
}

fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "gpsamp bench{}", if r.quick { " --quick" } else { "" });
    let _ = writeln!(s, "cpu: {} threads", r.cpu_threads);
    match (&r.adapter, &r.gpu_note) {
        (Some(ad), _) => {
            let _ = writeln!(s, "gpu: {} ({}, {})", ad.name, ad.backend, ad.device_type);
            if ad.device_type == "Cpu" {
                let _ = writeln!(s, "     (a software adapter: its figures check the GPU path, they are not GPU speed)");
            }
        }
        (None, Some(note)) => {
            let _ = writeln!(s, "gpu: none ({note})");
        }
        _ => {}
    }
    if !r.reliable.is_empty() {
        let _ = writeln!(
            s,
            "time to a reliable posterior: bulk ESS >= {} for every parameter with R-hat < 1.01 (nested R-hat from 64 chains), from a cold start",
            r.target_ess
        );
        let _ = writeln!(
            s,
            "{:<7} {:>7} {:<28} {:>9} {:>7} {:>7} {:>9} {:>8} {:>9}",
            "model",
            "chains",
            "backend",
            "seconds",
            "warmup",
            "draws",
            "min ESS",
            "R-hat",
            "reached"
        );
        for x in &r.reliable {
            let rh = if x.rhat_judge == "nested" {
                x.max_nested_rhat
            } else {
                x.max_rhat
            };
            let _ = writeln!(
                s,
                "{:<7} {:>7} {:<28} {:>9.2} {:>7} {:>7} {:>9.0} {:>8.4} {:>9}",
                x.model,
                x.chains,
                x.backend.chars().take(28).collect::<String>(),
                x.seconds,
                x.warmup_iterations,
                x.draws,
                x.min_ess_bulk,
                rh,
                x.reached
            );
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "log density + gradient evaluations per second (one evaluation = one chain's full pass over its data)");
    let _ = writeln!(
        s,
        "{:<14} {:>6} {:>7}  {:>14} {:>14} {:>14} {:>14}",
        "family", "N", "chains", "cpu f64", "cpu f32", "gpu", "gpu resident"
    );
    let mut keys: Vec<(String, usize, usize)> = Vec::new();
    for row in &r.rows {
        let k = (row.family.clone(), row.n, row.chains);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    // `cpu` picks the CPU rows of that precision, `None` the GPU rows.
    let cell = |k: &(String, usize, usize), cpu: Option<&str>, mode: &str| {
        r.rows
            .iter()
            .find(|x| {
                x.family == k.0
                    && x.chains == k.2
                    && match cpu {
                        Some(p) => x.backend.starts_with("cpu") && x.backend.contains(p),
                        None => !x.backend.starts_with("cpu"),
                    }
                    && x.mode == mode
            })
            .map_or("-".to_string(), |x| format!("{:.3e}", x.evals_per_sec))
    };
    for k in &keys {
        let _ = writeln!(
            s,
            "{:<14} {:>6} {:>7}  {:>14} {:>14} {:>14} {:>14}",
            k.0,
            k.1,
            k.2,
            cell(k, Some("f64"), "end-to-end"),
            cell(k, Some("f32"), "end-to-end"),
            cell(k, None, "end-to-end"),
            cell(k, None, "resident"),
        );
    }
    if !r.sampler.is_empty() {
        let _ = writeln!(s, "\nsampler: mixture of two regressions (tutorial data), whole run (warmup + draws) timed");
        let _ = writeln!(
            s,
            "{:>7} {:<28} {:>11} {:>9} {:>14} {:>11} {:>13} {:>5}",
            "chains",
            "backend",
            "iterations",
            "seconds",
            "grad evals/s",
            "min ESS",
            "min ESS/s",
            "div"
        );
        for x in &r.sampler {
            let _ = writeln!(
                s,
                "{:>7} {:<28} {:>11} {:>9.2} {:>14.3e} {:>11.0} {:>13.1} {:>5}",
                x.chains,
                x.backend.chars().take(28).collect::<String>(),
                format!("{}+{}", x.warmup, x.draws),
                x.seconds,
                x.gradient_evals_per_sec,
                x.min_ess_bulk,
                x.min_ess_bulk_per_sec,
                x.divergences
            );
        }
    }
    if !r.study.is_empty() {
        let _ = writeln!(s, "\nstudy: SBC of the Gaussian GLM (N = 100, 4 chains, 500 + 500 draws), simulation + sampling + report timed");
        let _ = writeln!(
            s,
            "{:<28} {:>9} {:>9} {:>12} {:>11}",
            "backend", "datasets", "seconds", "datasets/s", "calibrated"
        );
        for x in &r.study {
            let _ = writeln!(
                s,
                "{:<28} {:>9} {:>9.2} {:>12.1} {:>11}",
                x.backend.chars().take(28).collect::<String>(),
                x.datasets,
                x.seconds,
                x.datasets_per_sec,
                x.calibrated
            );
        }
    }
    if !r.mdn.is_empty() {
        let _ = writeln!(
            s,
            "\nMDN training: Beta-Binomial pairs, network 1-24-25-16-(K = 8 x 3), batch 512, Adam"
        );
        let _ = writeln!(
            s,
            "{:<28} {:>9} {:>7} {:>9} {:>12}",
            "backend", "pairs", "epochs", "seconds", "samples/s"
        );
        for x in &r.mdn {
            let _ = writeln!(
                s,
                "{:<28} {:>9} {:>7} {:>9.2} {:>12.3e}",
                x.backend.chars().take(28).collect::<String>(),
                x.pairs,
                x.epochs,
                x.seconds,
                x.samples_per_sec
            );
        }
    }
    if !r.em.is_empty() {
        let _ = writeln!(
            s,
            "\nEM (Baum-Welch): Gaussian HMM, T = 1000 per sequence, one restart, E-step + M-step"
        );
        let _ = writeln!(
            s,
            "{:<28} {:>3} {:>9} {:>6} {:>9} {:>9} {:>12}",
            "backend", "K", "sequences", "iters", "seconds", "iters/s", "obs/s"
        );
        for x in &r.em {
            let _ = writeln!(
                s,
                "{:<28} {:>3} {:>9} {:>6} {:>9.2} {:>9.2} {:>12.3e}",
                x.backend.chars().take(28).collect::<String>(),
                x.states,
                x.sequences,
                x.iterations,
                x.seconds,
                x.iterations_per_sec,
                x.obs_per_sec
            );
        }
    }
    if let Some(st) = &r.stan {
        super::bench_stan::render(&mut s, st);
    }
    if let Some(f) = &r.floor {
        let _ = writeln!(
            s,
            "\nCPU floor for {} at N = {}: {:.0} flops + {:.0} exp/log per evaluation ({} flops each); \
             {} cores x {:.2} GHz x {} f64 lanes ({}) x 2 FMA pipes x 2 = {:.1} GFLOP/s -> {:.3e} evals/s in f64, \
             twice that in f32. Best CPU: f64 {:.3e} evals/s = {:.1}% of its floor; f32 {:.3e} evals/s = {:.1}% of its floor ({:.2}x f64).",
            f.family,
            f.n,
            f.flops_per_eval,
            f.transcendentals_per_eval,
            f.flops_per_transcendental,
            f.cores,
            f.ghz,
            f.f64_lanes,
            f.simd,
            f.peak_gflops,
            f.floor_evals_per_sec,
            f.best_cpu_evals_per_sec,
            100.0 * f.fraction_of_floor,
            f.best_cpu_f32_evals_per_sec,
            100.0 * f.fraction_of_f32_floor,
            f.best_cpu_f32_evals_per_sec / f.best_cpu_evals_per_sec
        );
    }
    s
}
