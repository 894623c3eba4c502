//! `gpsamp sample`: ensemble HMC on a CSV file (or the tutorial's simulated data), with a
//! progress bar, a summary table, and draws, statistics and summaries in an output folder
//! (format in the README).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use gpsamp::diag::SummaryRow;
use gpsamp::hmc::{self, Config};
use gpsamp::workflow::{em_init_centers, sample_to_dir, sig, SampleJob};
use gpsamp::{DataBatch, Model};

use gpsamp::io::output::OutputDir;

use super::args::{DataArgs, ModelArgs, ModelKind};

/// Where chains start.
/// Where chains start (`--init`).
#[derive(Clone, Debug)]
enum InitKind {
    /// em for hmm/glmhmm, else random.
    Auto,
    /// Uniform in (-2, 2) on the unconstrained scale.
    Random,
    /// Around an EM fit of each dataset (hmm/glmhmm).
    Em,
    /// Around the values in a JSON file.
    File(PathBuf),
}

fn parse_init(text: &str) -> Result<InitKind, String> {
    Ok(match text {
        "auto" => InitKind::Auto,
        "random" => InitKind::Random,
        "em" => InitKind::Em,
        path => {
            let p = PathBuf::from(path);
            if !p.is_file() {
                return Err(format!(
                    "expected auto, random, em, or a JSON file of parameter values; {path:?} is none of these"
                ));
            }
            InitKind::File(p)
        }
    })
}

/// Options of `gpsamp sample`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// CSV file with a header line (without it: the tutorial's dataset for the model,
    /// simulated with --seed).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Input columns, comma-separated.
    #[arg(long, value_delimiter = ',')]
    x: Vec<String>,
    /// Response column.
    #[arg(long, default_value = "y")]
    y: String,
    /// Column that splits the rows into datasets, each fitted by its own chains.
    #[arg(long)]
    group: Option<String>,
    /// hmm/glmhmm: sequence id column (rows of a sequence together, in time order).
    #[arg(long, default_value = "seq")]
    seq: String,
    /// hmm/glmhmm: time column (increasing within a sequence).
    #[arg(long, default_value = "t")]
    t: String,
    /// eiv shared: column of system indices 0..S within each dataset; the S systems each
    /// get their own b (`b[s,m]`) and share sigma_x and sigma_w, which identifies sigma_w.
    #[arg(long)]
    system: Option<String>,
    /// eiv without --data: simulate this many forum systems (N = 200 each, their own b,
    /// common sigma_x = 0.3 and sigma_w = 0.1) and fit them pooled.
    #[arg(long)]
    systems: Option<usize>,
    /// Chains per dataset.
    #[arg(long, default_value_t = 4)]
    chains: usize,
    /// Warmup iterations. Without it: at most 1000, and with 64 chains or more per dataset
    /// warmup ends as soon as the ensemble is adapted (step size, trajectory length and mass
    /// matrix settled, nested R-hat over the last window below 1.01; see the README).
    #[arg(long)]
    warmup: Option<usize>,
    /// Draws kept per chain (with --target-ess: the most).
    #[arg(long, default_value_t = 1000)]
    draws: usize,
    /// Stop sampling once every parameter has this bulk ESS over the pooled chains, with
    /// R-hat and nested R-hat below 1.01 (checked at batch boundaries; the draws so far are
    /// kept and meta.json records every check). --draws stays the upper bound.
    #[arg(long)]
    target_ess: Option<f64>,
    /// Seed: the same seed gives the same draws on the same backend.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Keep every n-th iteration.
    #[arg(long, default_value_t = 1)]
    thin: usize,
    /// Parameters to store, comma-separated names (default: all).
    #[arg(long, value_delimiter = ',')]
    keep: Vec<String>,
    /// Target of the harmonic-mean acceptance probability (default: the family's, 0.651;
    /// 0.9 for eiv shared).
    #[arg(long)]
    target_accept: Option<f64>,
    /// Chains per superchain for nested R-hat (default: 4 when --chains is a multiple of 4
    /// and at least 16, else 1).
    #[arg(long)]
    superchain_size: Option<usize>,
    /// Adam steps towards the bulk before warmup.
    #[arg(long, default_value_t = 200)]
    init_steps: usize,
    /// Where chains start: random (uniform in (-2, 2) on the unconstrained scale), em (around
    /// an EM fit of each dataset, radius 0.5; HMMs only: their posteriors have minor modes
    /// that random starts can settle in), auto (em for hmm/glmhmm, else random), or a JSON
    /// file of parameter values by name ({"alpha": 0.3, "beta[0]": 1}, a fit's summary.json,
    /// or a truth file of `gpsamp simulate`): chains start within 0.1 of them on the
    /// unconstrained scale, then take --init-steps Adam steps (0: start exactly there).
    #[arg(long, default_value = "auto", value_parser = parse_init)]
    init: InitKind,
    /// Continue from an earlier fit of the same model and data (its folder): reuse its step
    /// size, trajectory length and mass matrix, and start each chain at the last draw of
    /// the earlier one, so no warmup is needed (--warmup defaults to 0; give one to adapt
    /// further from there).
    #[arg(long)]
    adapt_from: Option<PathBuf>,
    /// Cap on leapfrog steps per transition.
    #[arg(long, default_value_t = 1024)]
    max_steps: u32,
    /// Inverse mass matrix adapted in warmup: diag (each coordinate's variance) or dense
    /// (the covariance, for strongly correlated posteriors: D² more work per leapfrog step).
    #[arg(long, value_enum, default_value = "diag")]
    metric: super::args::MetricArg,
    /// Backend: auto, gpu or cpu (auto: a hardware GPU for 256 chains or more in all, else
    /// the CPU backend).
    #[arg(long, value_enum, default_value = "auto")]
    backend: super::args::BackendArg,
    /// Arithmetic of the CPU backend's log densities: f32 (single precision on twice the
    /// SIMD lanes, sums over points in f64; glm, gmm and mixglm, the other families compute
    /// in f64) or f64 (the reference). The GPU computes in f32 either way.
    #[arg(long, value_enum, default_value = "f32")]
    precision: super::args::PrecisionArg,
    /// Output folder: created if missing; replaced, once the run has succeeded, only when
    /// it holds an earlier `gpsamp sample` output (or is empty, or with --force).
    #[arg(long)]
    out: PathBuf,
    /// Replace --out even when it is a folder gpsamp did not write (never the working
    /// directory, a folder above it, or a folder holding the input).
    #[arg(long)]
    force: bool,
    /// When interrupted (Ctrl-C, SIGTERM) during sampling, keep the draws made so far:
    /// draws.npy cut to them, meta.json saying how many (`draws_completed`).
    #[arg(long)]
    keep_partial: bool,
    /// Skip the figures (trace.svg, rank.svg, posterior.svg and the posterior predictive
    /// overlay ppc.svg of the first dataset).
    #[arg(long)]
    no_plots: bool,
    /// Also write y_rep.npy: a posterior predictive replicate of the data for every stored
    /// draw (chains x draws x observations, f32; ArviZ's posterior_predictive group).
    #[arg(long)]
    y_rep: bool,
    /// Write log_lik.npy, every stored draw's log likelihood of each observation (chains x
    /// draws x observations, f32; ArviZ's log_likelihood group, for PSIS-LOO), whatever its
    /// size. Without it (or --no-log-lik) it is written when it holds at most 50 million
    /// values (200 MB).
    #[arg(long, conflicts_with = "no_log_lik")]
    log_lik: bool,
    /// Never write log_lik.npy.
    #[arg(long)]
    no_log_lik: bool,
    /// No progress bar or table (warnings still go to stderr).
    #[arg(long)]
    quiet: bool,
}

pub fn run(mut a: Args) -> anyhow::Result<()> {
    a.model.resolve()?;
    let inputs: Vec<&Path> = a
        .data
        .iter()
        .map(PathBuf::as_path)
        .chain(a.model.model_file.as_deref())
        .chain(a.adapt_from.as_deref())
        .chain(match &a.init {
            InitKind::File(p) => Some(p.as_path()),
            _ => None,
        })
        .collect();
    // Checked before any work: a refused --out costs nothing.
    let out = OutputDir::create("--out", &a.out, "sample", a.force, &inputs)?;
    if a.warmup == Some(0) && a.adapt_from.is_none() {
        eprintln!("gpsamp: warning: --warmup 0: the step size, trajectory length and mass matrix stay at their initial values, so the draws may mix badly");
    }
    let mut hmm_shape = (0usize, 1usize);
    let stan = match &a.model.stan {
        Some(program) => {
            let m = gpsamp::stan::StanModel::from_files(program, a.data.as_deref())?;
            // What did not run (generated quantities) is a warning, shown even with --quiet.
            for note in m.notes() {
                eprintln!("gpsamp: {}: {note}", program.display());
            }
            Some(m)
        }
        None => None,
    };
    let (data, source, truth) = match &a.data {
        _ if stan.is_some() => (
            gpsamp::stan::placeholder_data(),
            format!(
                "Stan program {}{}",
                a.model.stan.as_deref().unwrap_or(Path::new("")).display(),
                a.data
                    .as_deref()
                    .map(|d| format!(" with data {}", d.display()))
                    .unwrap_or_default()
            ),
            None,
        ),
        Some(path) if a.model.is_hmm() => {
            let ys: Vec<String> = a.y.split(',').map(|s| s.trim().to_string()).collect();
            hmm_shape = (a.x.len(), ys.len());
            let spec = gpsamp::hmm::io::SeqSpec {
                seq: a.seq.clone(),
                t: a.t.clone(),
                x: a.x.clone(),
                y: ys,
                group: a.group.clone(),
                binary: a.model.kind() == ModelKind::Glmhmm
                    && a.model.emission == super::args::Emission::Bernoulli,
            };
            let sd = gpsamp::hmm::io::read_sequences(path, &spec)?;
            (sd.batch, path.display().to_string(), None)
        }
        None if a.model.is_hmm() => {
            let p = usize::from(a.model.kind() == ModelKind::Glmhmm);
            hmm_shape = (p, 1);
            let spec = a.model.hmm_spec(p, 1)?;
            let Some((d, truth, desc)) = gpsamp::hmm::io::tutorial_sequences(&spec, a.seed) else {
                bail!("--data: the tutorial's HMMs have 3 states and Gaussian emissions; give a CSV file");
            };
            if !a.quiet {
                eprintln!(
                    "gpsamp: no --data given; fitting the {desc} (seed {})",
                    a.seed
                );
            }
            let batch = DataBatch::new(spec.data_columns(), &[d])?;
            let m = a.model.build_hmm(p, 1)?;
            let truth = m.constrain(&m.theta(&truth)?);
            (batch, format!("simulated: {desc}"), Some(truth))
        }
        Some(path) => {
            let mut x = a.x.clone();
            if let Some(col) = &a.system {
                if a.model.kind() != ModelKind::Eiv {
                    bail!("--system: only --model eiv pools systems");
                }
                x.push(col.clone());
            }
            let d = DataArgs {
                data: path.clone(),
                x,
                y: a.y.clone(),
                group: a.group.clone(),
            };
            let batch = d.load()?;
            if a.systems.is_some() {
                bail!(
                    "--systems simulates without --data; with data name the column: --system COL"
                );
            }
            if a.system.is_some() {
                let p = batch.p();
                let col = &batch.x()[(p - 1) * batch.n_total()..];
                let top = col.iter().fold(0.0f64, |t, &v| t.max(v));
                if top >= 4096.0 {
                    bail!("--system: index {top} is too large (systems are numbered 0..S)");
                }
                a.model.systems = Some(top as usize + 1);
            }
            (batch, path.display().to_string(), None)
        }
        None if a.model.kind() == ModelKind::Eiv => {
            // The forum's physical system: N = 200, x ~ N(0, I), sigma_x 0.3, sigma_w 0.1.
            if a.model.w.is_empty() {
                a.model.w = vec![1.0, 2.0, 0.5];
            }
            if a.system.is_some() {
                bail!("--system names a column of --data; without data use --systems S");
            }
            let n_sys = a.systems.unwrap_or(1);
            a.model.systems = a.systems;
            let probe = a.model.build_any(a.model.w.len())?;
            let mut m = gpsamp::Eiv::new(a.model.w.clone(), gpsamp::EivVariant::Shared, false)?;
            if let Some(n) = a.systems {
                m = m.with_systems(n)?;
            }
            let mut rng = gpsamp::rng::host_rng(a.seed, 0, gpsamp::rng::Purpose::Simulate);
            let names = probe.param_names();
            let mut truth = vec![0.3, 0.1];
            if names.iter().any(|n| n == "sigma_obs") {
                truth.push(0.0);
            }
            let (z, data) = m.simulate_systems(200 * n_sys, (0.3, 0.1, 0.0), &mut rng);
            if names.iter().any(|n| n.starts_with("b[")) {
                truth.extend(z.iter().map(|v| 0.1 * v));
            }
            let desc = format!(
                "the forum's system: {n_sys} x N 200, w {:?}, sigma_x 0.3, sigma_w 0.1 ({}), x ~ N(0, I)",
                m.weights(),
                if n_sys > 1 { "a b per system" } else { "shared b" }
            );
            if !a.quiet {
                eprintln!("gpsamp: no --data given; fitting {desc} (seed {})", a.seed);
            }
            let mut batch = DataBatch::new(data.x.len(), &[data])?;
            batch.x_names = (0..batch.p()).map(|j| format!("x{j}")).collect();
            if a.systems.is_some() {
                *batch.x_names.last_mut().unwrap() = "system".into();
            }
            (batch, format!("simulated: {desc}"), Some(truth))
        }
        None => {
            let p = if a.model.kind() == ModelKind::Gmm {
                0
            } else {
                1
            };
            let probe = a.model.build(p)?;
            let Some(sim) = gpsamp::tutorial::for_model(&probe, a.seed) else {
                bail!(
                    "--data: no built-in tutorial dataset for {}; give a CSV file",
                    probe.name()
                );
            };
            if !a.quiet {
                eprintln!(
                    "gpsamp: no --data given; fitting the {} (seed {})",
                    sim.description, a.seed
                );
            }
            let mut batch = DataBatch::new(p, std::slice::from_ref(&sim.data))?;
            batch.x_names = (0..p).map(|j| format!("x{j}")).collect();
            (
                batch,
                format!("simulated: {}", sim.description),
                Some(sim.truth),
            )
        }
    };
    let em_init = match a.init {
        InitKind::Auto => a.model.is_hmm() && a.adapt_from.is_none(),
        InitKind::Random | InitKind::File(_) => false,
        InitKind::Em if a.model.is_hmm() => true,
        InitKind::Em => bail!("--init em: only hmm/glmhmm have an EM fit to start from"),
    };
    let mut init_centers = Vec::new();
    let model: Arc<dyn Model> = if let Some(m) = stan {
        Arc::new(m)
    } else if a.model.is_hmm() {
        let hmm = a.model.build_hmm(hmm_shape.0, hmm_shape.1)?;
        if em_init {
            init_centers = em_init_centers(&hmm, &data, a.model.stickiness, a.seed)?;
            if !a.quiet {
                eprintln!("gpsamp: chains start around an EM fit of each dataset (--init em; --init random for random starts)");
            }
        }
        Arc::new(hmm)
    } else {
        a.model
            .build_any(data.p() - usize::from(a.model.systems.is_some()))?
    };
    model.check_data(&data).with_context(|| source.clone())?;
    let groups: Vec<String> = (0..data.n_datasets())
        .map(|b| data.dataset_name(b))
        .collect();
    let mut init_radius = if init_centers.is_empty() { 2.0 } else { 0.5 };
    if let InitKind::File(path) = &a.init {
        init_centers = gpsamp::workflow::resume::read_init(path, model.as_ref(), &groups)?;
        init_radius = 0.1;
    }
    let (adapted, start_positions) = match &a.adapt_from {
        Some(dir) => {
            gpsamp::workflow::resume::adapt_from(dir, model.as_ref(), data.n_datasets(), a.chains)?
        }
        None => (Vec::new(), Vec::new()),
    };
    let superchain = a
        .superchain_size
        .unwrap_or(gpsamp::workflow::default_superchain(a.chains));
    let cfg = Config {
        cancel: Some(super::interrupt_flag()),
        chains: a.chains,
        warmup: a
            .warmup
            .unwrap_or(if a.adapt_from.is_some() { 0 } else { 1000 }),
        adaptive_warmup: a.warmup.is_none(),
        target_ess: a.target_ess,
        draws: a.draws,
        thin: a.thin,
        seed: a.seed,
        target_accept: a.target_accept,
        superchain_size: superchain,
        init_steps: a.init_steps,
        max_steps: a.max_steps,
        metric: a.metric.into(),
        init_radius,
        init_centers,
        start_positions,
        adapted,
        ..Config::default()
    };
    cfg.validate()?;
    let data = Arc::new(data);
    let n_chains = data.n_datasets() * a.chains;
    // Per chain: positions, momenta, gradients and adaptation state (a few dozen f64s per
    // dimension between the integrator and the sampler).
    super::check_memory(
        "--chains",
        (n_chains as u64).saturating_mul(model.dim() as u64 * 8 * 48 + 256),
        &format!("{n_chains} chains of dimension {}", model.dim()),
    )?;
    super::args::check_metric_memory(a.metric, model.dim(), data.n_datasets(), n_chains)?;
    let backend =
        super::args::select_backend_for_run(a.backend, a.quiet, n_chains, model.as_ref())?
            .with_precision(a.precision.into())
            .for_model(model.as_ref());
    let job = SampleJob {
        config: cfg,
        keep: a.keep.clone(),
        keep_partial: a.keep_partial,
        source,
        truth,
        group_column: a.group.clone(),
        log_lik: if a.no_log_lik {
            None
        } else if a.log_lik {
            Some(u64::MAX)
        } else {
            Some(gpsamp::workflow::LOG_LIK_AUTO_LIMIT)
        },
        plots: !a.no_plots,
        y_rep: a.y_rep,
        model_spec: a.model.stan.is_none().then(|| a.model.spec()),
    };
    let total = a.draws * a.thin;
    let bar = progress_bar(a.quiet, (job.config.warmup + total) as u64);
    let mut last_phase = String::new();
    // Warmup's length is known only when it ends (the adaptive end moves it).
    let mut warmup_len = job.config.warmup;
    let mut progress = |phase: &str, i: usize, n: usize, div: usize| {
        if phase != last_phase {
            last_phase = phase.to_string();
            bar.set_prefix(phase.to_string());
        }
        if phase == "warmup" && n != warmup_len {
            warmup_len = n;
            bar.set_length((n + total) as u64);
        }
        if i.is_multiple_of(10) || phase == "sampling" {
            bar.set_position((if phase == "sampling" { warmup_len } else { 0 } + i) as u64);
            bar.set_message(format!("{div} divergences"));
        }
    };
    // Everything is written into a fresh folder that replaces --out only at the end.
    let result = sample_to_dir(
        model.clone(),
        data.clone(),
        &backend,
        &job,
        out.path(),
        &mut progress,
    );
    bar.finish_and_clear();
    let run = match result {
        Err(gpsamp::Error::Interrupted) if a.keep_partial => {
            eprintln!("gpsamp: interrupted before the first draw; nothing to keep");
            return Err(gpsamp::Error::Interrupted.into());
        }
        r => r?,
    };
    out.commit()?;
    for n in &run.notes {
        eprintln!("gpsamp: {n}");
    }
    let report = &run.report;
    let n_kept = report.draws_completed;
    if !a.quiet {
        print_table(
            &run.summaries,
            report,
            &data,
            &backend.describe(),
            run.labels_aligned,
            job.config
                .target_accept
                .unwrap_or_else(|| model.target_accept()),
        )?;
        let mut files: Vec<String> = [
            "draws.npy",
            "sample_stats.npy",
            "summary.csv",
            "summary.json",
            "meta.json",
        ]
        .map(String::from)
        .into();
        for (key, file) in [
            ("log_lik_shape", "log_lik.npy"),
            ("y_rep_shape", "y_rep.npy"),
        ] {
            if !run.meta[key].is_null() {
                files.push(file.into());
            }
        }
        if let Some(f) = run.meta["figures"].as_array() {
            files.extend(f.iter().filter_map(|v| v.as_str()).map(String::from));
        }
        outln!("wrote {}/{{{}}}", a.out.display(), files.join(", "));
    }
    // Warnings reach stderr whatever --quiet says.
    for w in &run.warnings {
        eprintln!("gpsamp: warning: {w}");
    }
    if let Some(t) = &report.target {
        let last = t.checks.last();
        let which = if t.nested_rhat_judges {
            "nested R-hat"
        } else {
            "R-hat"
        };
        let (ess, rhat) = last.map_or((0.0, f64::NAN), |c| {
            let r = if t.nested_rhat_judges {
                c.max_nested_rhat
            } else {
                c.max_rhat
            };
            (c.min_ess_bulk, r)
        });
        if t.reached {
            if !a.quiet {
                eprintln!(
                    "gpsamp: --target-ess {}: reached after {n_kept} draws per chain (smallest bulk ESS {ess:.0}, largest {which} {rhat:.3})",
                    t.target_ess
                );
            }
        } else {
            eprintln!(
                "gpsamp: warning: --target-ess {} not reached in {n_kept} draws per chain (smallest bulk ESS {ess:.0}, largest {which} {rhat:.3}); raise --draws",
                t.target_ess
            );
        }
    }
    if report.interrupted {
        eprintln!(
            "gpsamp: interrupted; kept {n_kept} of {} draws per chain in {} (--keep-partial)",
            a.draws,
            a.out.display()
        );
        return Err(gpsamp::Error::Interrupted.into());
    }
    Ok(())
}

fn progress_bar(quiet: bool, len: u64) -> indicatif::ProgressBar {
    super::progress_bar(
        quiet,
        len,
        "{prefix:>8} {bar:30} {pos}/{len} iterations {rate} {msg}",
    )
}

fn print_table(
    summaries: &[Vec<SummaryRow>],
    report: &hmc::RunReport,
    data: &DataBatch,
    backend: &str,
    aligned: bool,
    target_accept: f64,
) -> anyhow::Result<()> {
    let show = summaries.len().min(3);
    for (b, rows) in summaries.iter().take(show).enumerate() {
        let ds = &report.datasets[b];
        if summaries.len() > 1 {
            outln!("dataset {}", data.dataset_name(b));
        }
        let widths = [10, 10, 10, 10, 10, 10, 8, 8, 6];
        let head: Vec<String> = gpsamp::diag::SUMMARY_COLUMNS
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect();
        outln!("{:<14} {}", "", head.join(" "));
        for r in rows {
            outln!(
                "{:<14} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8.0} {:>8.0} {:>6.3}",
                r.param,
                sig(r.mean, 4),
                sig(r.sd, 4),
                sig(r.hdi_lo, 4),
                sig(r.hdi_hi, 4),
                sig(r.mcse_mean, 2),
                sig(r.mcse_sd, 2),
                r.ess_bulk,
                r.ess_tail,
                r.r_hat
            );
        }
        outln!(
            "step size {}, trajectory length {}, mean steps {:.1}, divergences {}",
            sig(ds.step_size, 3),
            sig(ds.trajectory_length, 3),
            ds.mean_steps,
            ds.divergences
        );
        outln!(
            "mean acceptance probability {:.2} over all draws (warmup tuned the step size so that the harmonic mean over chains reaches {target_accept}; the arithmetic mean is higher)",
            ds.mean_accept
        );
    }
    if summaries.len() > show {
        outln!(
            "... {} more datasets in summary.csv",
            summaries.len() - show
        );
    }
    if aligned {
        outln!("mixture labels aligned across chains (Hungarian matching; see meta.json)");
    }
    outln!(
        "backend {backend}: {} gradient evaluations in {:.2} s warmup ({} iterations{}) + {:.2} s sampling; {} transitions + {} batch density evaluations (one dispatch each on the GPU)",
        report.gradient_evals,
        report.seconds.0,
        report.warmup_iterations,
        report
            .warmup_adapted_at
            .map_or(String::new(), |w| format!(", ensemble adapted at {w}")),
        report.seconds.1,
        report.transitions,
        report.density_calls
    );
    Ok(())
}
