//! `gpsamp sample`: ensemble HMC on a CSV file (or the tutorial's simulated data), with a
//! progress bar, a summary table, and draws, statistics and summaries in an output folder
//! (format in the README).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use gpsamp::diag::SummaryRow;
use gpsamp::hmc::sink::{
    apply_permutations, label_permutations, summarize_npy, NpySink, STAT_NAMES,
};
use gpsamp::hmc::{self, Config};
use gpsamp::{Backend, DataBatch, Model};

use gpsamp::io::output::OutputDir;

use super::args::{DataArgs, ModelArgs, ModelKind};
use super::sig;

/// Where chains start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum InitKind {
    /// em for hmm/glmhmm, else random.
    Auto,
    /// Uniform in (-2, 2) on the unconstrained scale.
    Random,
    /// Around an EM fit of each dataset (hmm/glmhmm).
    Em,
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
    /// Warmup iterations.
    #[arg(long, default_value_t = 1000)]
    warmup: usize,
    /// Draws kept per chain.
    #[arg(long, default_value_t = 1000)]
    draws: usize,
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
    /// that random starts can settle in), or auto (em for hmm/glmhmm, else random).
    #[arg(long, value_enum, default_value = "auto")]
    init: InitKind,
    /// Cap on leapfrog steps per transition.
    #[arg(long, default_value_t = 1024)]
    max_steps: u32,
    /// Backend: auto, gpu or cpu.
    #[arg(long, value_enum, default_value = "auto")]
    backend: super::args::BackendArg,
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
        .collect();
    // Checked before any work: a refused --out costs nothing.
    let out = OutputDir::create("--out", &a.out, "sample", a.force, &inputs)?;
    if a.warmup == 0 {
        eprintln!("gpsamp: warning: --warmup 0: the step size, trajectory length and mass matrix stay at their initial values, so the draws may mix badly");
    }
    let mut hmm_shape = (0usize, 1usize);
    let (data, source, truth) = match &a.data {
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
            let Some(truth) = gpsamp::hmm::io::tutorial_params(&spec) else {
                bail!("--data: the tutorial's HMMs have 3 states and Gaussian emissions; give a CSV file");
            };
            let (n_seq, t_len) = if p == 0 { (3, 200) } else { (10, 100) };
            let mut rng = gpsamp::rng::host_rng(a.seed, 0, gpsamp::rng::Purpose::Simulate);
            let (d, _) = gpsamp::hmm::io::simulate(&spec, &truth, n_seq, t_len, &mut rng);
            let desc = format!(
                "tutorial's {}: {n_seq} sequences x {t_len} steps",
                if p == 0 {
                    "Gaussian HMM"
                } else {
                    "switching regression"
                }
            );
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
        InitKind::Auto => a.model.is_hmm(),
        InitKind::Random => false,
        InitKind::Em if a.model.is_hmm() => true,
        InitKind::Em => bail!("--init em: only hmm/glmhmm have an EM fit to start from"),
    };
    let mut init_centers = Vec::new();
    let model: Arc<dyn Model> = if a.model.is_hmm() {
        let hmm = a.model.build_hmm(hmm_shape.0, hmm_shape.1)?;
        if em_init {
            init_centers = em_centers(&hmm, &data, a.model.stickiness, a.seed)?;
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
    let names = model.param_names();
    let keep: Vec<usize> = if a.keep.is_empty() {
        (0..names.len()).collect()
    } else {
        a.keep
            .iter()
            .map(|k| {
                names.iter().position(|n| n == k).with_context(|| {
                    format!(
                        "--keep: no parameter {k:?}; the model has {}",
                        names.join(", ")
                    )
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let kept_names: Vec<String> = keep.iter().map(|&i| names[i].clone()).collect();
    let superchain = a
        .superchain_size
        .unwrap_or(if a.chains >= 16 && a.chains.is_multiple_of(4) {
            4
        } else {
            1
        });
    let cfg = Config {
        cancel: Some(super::interrupt_flag()),
        chains: a.chains,
        warmup: a.warmup,
        draws: a.draws,
        thin: a.thin,
        seed: a.seed,
        target_accept: a.target_accept,
        superchain_size: superchain,
        init_steps: a.init_steps,
        max_steps: a.max_steps,
        init_radius: if init_centers.is_empty() { 2.0 } else { 0.5 },
        init_centers,
        ..Config::default()
    };
    cfg.validate()?;
    let data = Arc::new(data);
    let n_datasets = data.n_datasets();
    let n_chains = n_datasets * a.chains;
    // Per chain: positions, momenta, gradients and adaptation state (a few dozen f64s per
    // dimension between the integrator and the sampler).
    super::check_memory(
        "--chains",
        (n_chains as u64).saturating_mul(model.dim() as u64 * 8 * 48 + 256),
        &format!("{n_chains} chains of dimension {}", model.dim()),
    )?;
    let backend = super::args::select_backend(a.backend, a.quiet)?;
    let mut integ = hmc::integrator(&backend, model.clone(), data.clone(), a.chains, a.seed)?;
    if let Some(cap) = integ.step_cap().filter(|&c| c < cfg.max_steps) {
        eprintln!(
            "gpsamp: a software adapter stops a shader invocation after 65 535 loop iterations; with these datasets a transition may take at most {cap} leapfrog steps, and the sampler keeps to that"
        );
    }
    let adapter = match &backend {
        Backend::Gpu(ctx) => Some(ctx.summary.clone()),
        Backend::Cpu => None,
    };

    // Everything is written into a fresh folder that replaces --out only at the end.
    let partial = out.path().to_path_buf();
    let constants: Vec<f64> = (0..n_datasets).map(|b| model.constant(&data, b)).collect();
    let mut sink = NpySink::create(
        &partial,
        model.as_ref(),
        constants,
        a.chains,
        n_chains,
        a.draws,
        keep.clone(),
    )?;
    let bar = progress_bar(a.quiet, (a.warmup + a.draws * a.thin) as u64);
    let mut last_phase = String::new();
    let mut progress = |phase: &str, i: usize, _n: usize, div: usize| {
        if phase != last_phase {
            last_phase = phase.to_string();
            bar.set_prefix(phase.to_string());
        }
        if i.is_multiple_of(10) || phase == "sampling" {
            bar.set_position((if phase == "sampling" { a.warmup } else { 0 } + i) as u64);
            bar.set_message(format!("{div} divergences"));
        }
    };
    let result = hmc::sample(
        integ.as_mut(),
        model.as_ref(),
        n_datasets,
        &cfg,
        &mut sink,
        &mut progress,
    );
    bar.finish_and_clear();
    let report = match result {
        Ok(r) => r,
        Err(gpsamp::Error::Init { chain, message }) => {
            let b = chain / a.chains;
            bail!(
                "dataset {} (chain {chain}): {message}. {}",
                data.dataset_name(b),
                data_ranges(&data, b)
            );
        }
        Err(e) => return Err(e.into()),
    };
    let n_kept = report.draws_completed;
    if report.interrupted && (!a.keep_partial || n_kept == 0) {
        if a.keep_partial {
            eprintln!("gpsamp: interrupted before the first draw; nothing to keep");
        }
        return Err(gpsamp::Error::Interrupted.into());
    }
    let chain_means = sink.finish()?;
    if n_kept < a.draws {
        let k = kept_names.len();
        gpsamp::io::npy::keep_leading(&partial.join("draws.npy"), [n_chains, a.draws, k], n_kept)?;
        gpsamp::io::npy::keep_leading(
            &partial.join("sample_stats.npy"),
            [n_chains, a.draws, STAT_NAMES.len()],
            n_kept,
        )?;
    }
    // Label alignment for mixtures (all parameters must be stored to permute them).
    let mut alignment = serde_json::json!({"applied": false});
    if model.label_groups().is_some() {
        if keep.len() == names.len() {
            let perms =
                label_permutations(model.as_ref(), &chain_means, a.chains).expect("mixture");
            let switched = perms
                .iter()
                .filter(|p| p.iter().enumerate().any(|(i, &j)| i != j))
                .count();
            apply_permutations(&partial, model.as_ref(), &perms, n_kept)?;
            alignment = serde_json::json!({
                "applied": true,
                "method": "Hungarian matching of each chain's component means to the pooled aligned means",
                "chains_relabelled": switched,
                "permutations": perms,
            });
        } else {
            alignment = serde_json::json!({"applied": false, "reason": "--keep stores a subset of parameters"});
        }
    }
    let summaries = summarize_npy(
        &partial,
        &kept_names,
        n_chains,
        n_kept,
        a.chains,
        superchain,
        256 << 20,
    )?;
    write_summary(&partial, &summaries, &data)?;
    let meta = serde_json::json!({
        "format": "gpsamp-draws/1",
        "model": model.name(),
        "param_names": kept_names,
        "all_param_names": names,
        "draws_shape": [n_chains, n_kept, kept_names.len()],
        "draws_completed": n_kept,
        "draws_requested": a.draws,
        "interrupted": report.interrupted,
        "datasets": n_datasets,
        "groups": (0..n_datasets).map(|b| data.dataset_name(b)).collect::<Vec<_>>(),
        "group_column": a.group,
        "chains_per_dataset": a.chains,
        "sample_stats_columns": STAT_NAMES,
        "settings": cfg,
        "seed": a.seed,
        "backend": backend.describe(),
        "adapter": adapter,
        "data": source,
        "truth": truth,
        "label_alignment": alignment,
        "report": report,
        "gpsamp_version": env!("CARGO_PKG_VERSION"),
    });
    std::fs::write(
        partial.join("meta.json"),
        serde_json::to_string_pretty(&meta)?,
    )
    .with_context(|| format!("writing {}", partial.join("meta.json").display()))?;
    out.commit()?;

    if !a.quiet {
        print_table(
            &summaries,
            &report,
            &data,
            &backend.describe(),
            alignment["applied"] == true,
            cfg.target_accept.unwrap_or_else(|| model.target_accept()),
        )?;
        outln!(
            "wrote {}/{{draws.npy, sample_stats.npy, summary.csv, summary.json, meta.json}}",
            a.out.display()
        );
    }
    // Warnings reach stderr whatever --quiet says.
    for w in warnings(&summaries, &report, &data) {
        eprintln!("gpsamp: warning: {w}");
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

/// The range of every column of dataset `b`, for an error about data on an odd scale.
fn data_ranges(data: &DataBatch, b: usize) -> String {
    let r = data.range(b);
    let range = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("[{}, {}]", sig(lo, 4), sig(hi, 4))
    };
    let mut cols: Vec<String> = (0..data.p())
        .map(|j| {
            let name = data.x_names.get(j).cloned().unwrap_or(format!("x{j}"));
            format!("{name} in {}", range(&data.x_col(j)[r.clone()]))
        })
        .collect();
    cols.push(format!("{} in {}", data.y_name, range(&data.y()[r])));
    format!(
        "The data: {}. Columns far from unit scale can put every start's log density at -inf (in f32 on the GPU especially): rescale them, or widen the priors",
        cols.join(", ")
    )
}

/// Warnings about the fit: divergences, stuck chains, R-hat above 1.01, bulk ESS under 100.
fn warnings(
    summaries: &[Vec<SummaryRow>],
    report: &hmc::RunReport,
    data: &DataBatch,
) -> Vec<String> {
    let mut w = Vec::new();
    let name = |b: usize| {
        if summaries.len() > 1 {
            format!("dataset {}: ", data.dataset_name(b))
        } else {
            String::new()
        }
    };
    for (b, (rows, ds)) in summaries.iter().zip(&report.datasets).enumerate() {
        if ds.divergences > 0 {
            w.push(format!(
                "{}{} divergent transitions after warmup; the posterior may be biased where they happen (try --target-accept 0.9, or reparameterise)",
                name(b),
                ds.divergences
            ));
        }
        if !ds.stuck_chains.is_empty() {
            w.push(format!(
                "{}chain(s) {:?} look stuck (log density far below the others, or mostly divergent); see meta.json's report",
                name(b),
                ds.stuck_chains
            ));
        }
        let worst = |key: fn(&SummaryRow) -> f64, max: bool| {
            rows.iter().filter(|r| key(r).is_finite()).max_by(|x, y| {
                let o = key(x).total_cmp(&key(y));
                if max {
                    o
                } else {
                    o.reverse()
                }
            })
        };
        if let Some(r) = worst(|r| r.r_hat, true).filter(|r| r.r_hat > 1.01) {
            w.push(format!(
                "{}R-hat {} for {} (above 1.01): the chains disagree; run longer or look at the trace",
                name(b),
                sig(r.r_hat, 4),
                r.param
            ));
        }
        if let Some(r) = worst(|r| r.ess_bulk, false).filter(|r| r.ess_bulk < 100.0) {
            w.push(format!(
                "{}bulk ESS {} for {} (under 100): too few effective draws for reliable summaries; draw more",
                name(b),
                sig(r.ess_bulk, 3),
                r.param
            ));
        }
    }
    // Thousands of datasets: a line per kind, not per dataset.
    if summaries.len() > 5 && w.len() > 5 {
        let n = w.len();
        w.truncate(5);
        w.push(format!(
            "... {} more warnings; see summary.csv and meta.json",
            n - 5
        ));
    }
    w
}

/// The unconstrained EM fit (10 restarts, MAP with the model's stickiness) of every dataset.
fn em_centers(
    hmm: &gpsamp::Hmm,
    data: &DataBatch,
    stickiness: f64,
    seed: u64,
) -> anyhow::Result<Vec<Vec<f64>>> {
    use gpsamp::hmm::em::{fit_cpu, EmConfig, EmPriors, Init};
    let spec = *hmm.spec();
    let cfg = EmConfig {
        priors: EmPriors {
            stickiness,
            ..EmPriors::default()
        },
        init: if spec.kind == gpsamp::hmm::EmissionKind::Bernoulli {
            Init::Random
        } else {
            Init::Kmeans
        },
        seed,
        ..EmConfig::default()
    };
    let fits = fit_cpu(&spec, &cfg, data).context("--init em")?;
    fits.iter()
        .map(|f| hmm.theta(&f.params).context("--init em"))
        .collect::<anyhow::Result<Vec<_>>>()
}

fn progress_bar(quiet: bool, len: u64) -> indicatif::ProgressBar {
    super::progress_bar(
        quiet,
        len,
        "{prefix:>8} {bar:30} {pos}/{len} iterations {rate} {msg}",
    )
}

fn write_summary(
    dir: &Path,
    summaries: &[Vec<SummaryRow>],
    data: &DataBatch,
) -> anyhow::Result<()> {
    let multi = summaries.len() > 1;
    let mut w = csv::Writer::from_path(dir.join("summary.csv"))?;
    let mut header = vec![
        "param",
        "mean",
        "sd",
        "hdi_3%",
        "hdi_97%",
        "mcse_mean",
        "mcse_sd",
        "ess_bulk",
        "ess_tail",
        "r_hat",
        "nested_r_hat",
    ];
    if multi {
        header.insert(0, "dataset");
    }
    w.write_record(&header)?;
    for (b, rows) in summaries.iter().enumerate() {
        for r in rows {
            let mut rec = vec![
                r.param.clone(),
                r.mean.to_string(),
                r.sd.to_string(),
                r.hdi_lo.to_string(),
                r.hdi_hi.to_string(),
                r.mcse_mean.to_string(),
                r.mcse_sd.to_string(),
                r.ess_bulk.to_string(),
                r.ess_tail.to_string(),
                r.r_hat.to_string(),
                r.nested_r_hat.to_string(),
            ];
            if multi {
                rec.insert(0, data.dataset_name(b));
            }
            w.write_record(&rec)?;
        }
    }
    w.flush()?;
    let json = if multi {
        let v: Vec<serde_json::Value> = summaries
            .iter()
            .enumerate()
            .map(|(b, rows)| serde_json::json!({"dataset": data.dataset_name(b), "summary": rows}))
            .collect();
        serde_json::to_string_pretty(&v)?
    } else {
        serde_json::to_string_pretty(&summaries[0])?
    };
    std::fs::write(dir.join("summary.json"), json)?;
    Ok(())
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
        outln!(
            "{:<14} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8} {:>6}",
            "",
            "mean",
            "sd",
            "hdi_3%",
            "hdi_97%",
            "mcse_mean",
            "mcse_sd",
            "ess_bulk",
            "ess_tail",
            "r_hat"
        );
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
        "backend {backend}: {} gradient evaluations in {:.2} s warmup + {:.2} s sampling; {} transitions + {} batch density evaluations (one dispatch each on the GPU)",
        report.gradient_evals, report.seconds.0, report.seconds.1, report.transitions, report.density_calls
    );
    Ok(())
}
