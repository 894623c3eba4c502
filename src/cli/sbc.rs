//! `gpsamp sbc`: a simulation study (simulation-based calibration and parameter recovery)
//! over many datasets simulated from a family's prior, optionally one shard of it; and the
//! writer of a study folder shared with `gpsamp merge`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use gpsamp::hmc::Config;
use gpsamp::study::io::{summary_table, StudyFile};
use gpsamp::study::sbc::Report;
use gpsamp::study::{default_batch, DatasetRecord, Study};

use gpsamp::io::output::OutputDir;

use super::args::{ModelArgs, ModelKind};

/// Options of `gpsamp sbc`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Input columns of each simulated dataset (glm and mixglm), each standard normal.
    #[arg(long, default_value_t = 1)]
    features: usize,
    /// Points per dataset (hmm/glmhmm: steps of its one sequence; with --stan the data
    /// file sizes the data).
    #[arg(long, default_value_t = 100)]
    n: usize,
    /// Datasets in the study (all shards together).
    #[arg(long, default_value_t = 1000)]
    datasets: usize,
    /// Fit a differently specified model (a TOML file with the keys of --model-file, e.g.
    /// `prior_coef = "normal(0,0.5)"`) to the data simulated from the flags' model: the
    /// study should then fail, which shows it can.
    #[arg(long)]
    fit_model_file: Option<PathBuf>,
    /// The data of a Stan program (--stan): CmdStan's JSON or a CSV of vectors. Variables
    /// the program's generated quantities simulate (`y_sim` for `y`) are replaced in each
    /// dataset; the others are the file's.
    #[arg(long, requires = "stan")]
    data: Option<PathBuf>,
    /// Level of the uniformity tests (chi-square and ECDF band), per quantity.
    #[arg(long, default_value_t = 0.001)]
    alpha: f64,
    /// Exit non-zero when a uniformity test fails.
    #[arg(long)]
    strict: bool,
    #[command(flatten)]
    run: RunArgs,
}

/// The sampler, batching, sharding and output flags shared by `gpsamp sbc` and
/// `gpsamp study`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Chains per dataset.
    #[arg(long, default_value_t = 4)]
    pub chains_per_dataset: usize,
    /// Warmup iterations. Without it: at most 500, and with 64 chains or more per dataset a
    /// batch's warmup ends as soon as all its datasets' ensembles are adapted (as in
    /// `sample`; datasets.csv records each length).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Draws kept per chain.
    #[arg(long, default_value_t = 500)]
    pub draws: usize,
    /// Seed: dataset i is simulated from (seed, i), as `gpsamp simulate` does, and its
    /// chains draw the same numbers in any batch or shard.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Datasets fitted together (default: 4 096 chains' worth on the CPU, 65 536 on a GPU).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Run only the i-th of n equal slices of the datasets (1-based, e.g. 3/8), for one
    /// node of a cluster; `gpsamp merge` combines the shards' folders.
    #[arg(long)]
    pub shard: Option<String>,
    /// Inverse mass matrix adapted in each dataset's warmup: diag (each coordinate's
    /// variance) or dense (the covariance, for strongly correlated posteriors: D² more work
    /// per leapfrog step).
    #[arg(long, value_enum, default_value = "diag")]
    pub metric: super::args::MetricArg,
    /// Backend: auto, gpu or cpu.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: super::args::BackendArg,
    /// Arithmetic of the CPU backend's log densities: f32 (single precision on twice the
    /// SIMD lanes, sums over points in f64; glm, gmm and mixglm, the other families compute
    /// in f64) or f64 (the reference). The GPU computes in f32 either way.
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: super::args::PrecisionArg,
    /// Output folder: created if missing; replaced, once the study has finished, only when
    /// it holds an earlier study (`gpsamp sbc`, `gpsamp study` or `gpsamp merge`), is empty,
    /// or with --force.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace --out even when it is a folder gpsamp did not write (never the working
    /// directory, a folder above it, or a folder holding an input).
    #[arg(long)]
    pub force: bool,
    /// No progress bar or table.
    #[arg(long)]
    pub quiet: bool,
}

impl RunArgs {
    /// The sampler settings of every dataset's fit.
    pub fn config(&self) -> anyhow::Result<Config> {
        if self.chains_per_dataset == 0 {
            bail!("--chains-per-dataset must be at least 1");
        }
        Ok(Config {
            chains: self.chains_per_dataset,
            warmup: self.warmup.unwrap_or(500),
            adaptive_warmup: self.warmup.is_none(),
            draws: self.draws,
            seed: self.seed,
            superchain_size: gpsamp::workflow::default_superchain(self.chains_per_dataset),
            metric: self.metric.into(),
            ..Config::default()
        })
    }
}

/// Parses `--shard i/n` into the half-open range of datasets it covers.
pub fn shard_range(text: &str, datasets: usize) -> anyhow::Result<std::ops::Range<usize>> {
    let parsed = text.split_once('/').and_then(|(i, n)| {
        Some((
            i.trim().parse::<usize>().ok()?,
            n.trim().parse::<usize>().ok()?,
        ))
    });
    let Some((i, n)) = parsed else {
        bail!("--shard: expected I/N such as 2/8, got {text:?}");
    };
    if n == 0 || i == 0 || i > n {
        bail!("--shard {text}: I must be in 1..=N (shards are numbered from 1)");
    }
    if n > datasets {
        bail!("--shard {text}: more shards than the {datasets} datasets");
    }
    Ok((i - 1) * datasets / n..i * datasets / n)
}

pub use gpsamp::workflow::STUDY;

/// Writes a study folder into the temporary of `out`, then commits it.
pub fn write_study(
    out: OutputDir,
    file: &StudyFile,
    records: &[DatasetRecord],
    rep: &Report,
    meta: serde_json::Value,
) -> anyhow::Result<()> {
    gpsamp::workflow::write_study(out.path(), file, records, rep, &meta)?;
    Ok(out.commit()?)
}

pub fn run(mut a: Args) -> anyhow::Result<()> {
    a.model.resolve()?;
    let inputs: Vec<&Path> = a
        .model
        .model_file
        .as_deref()
        .into_iter()
        .chain(a.fit_model_file.as_deref())
        .chain(a.model.stan.as_deref())
        .chain(a.data.as_deref())
        .collect();
    let out = OutputDir::create("--out", &a.run.out, STUDY, a.run.force, &inputs)?;
    let p = match a.model.kind() {
        ModelKind::Gmm => 0,
        ModelKind::Eiv => a.model.w.len(),
        _ => a.features,
    };
    let (model, fit) = if let Some(program) = &a.model.stan {
        if a.fit_model_file.is_some() {
            bail!("--fit-model-file: a Stan study fits the program it simulates from");
        }
        let m = gpsamp::stan::StanModel::from_files(program, a.data.as_deref())?.for_study()?;
        let m: std::sync::Arc<dyn gpsamp::Model> = std::sync::Arc::new(m);
        (m.clone(), m)
    } else {
        let model = a.model.build_simulated(p)?;
        let fit = match &a.fit_model_file {
            None => model.clone(),
            Some(path) => {
                let f = super::model_file::model_args_from_file(path)?;
                f.build_simulated(p)
                    .with_context(|| format!("--fit-model-file {}", path.display()))?
            }
        };
        (model, fit)
    };
    let study = Study {
        generator: model,
        fit,
        points: a.n,
        datasets: a.datasets,
        config: a.run.config()?,
        batch: 1,
        alpha: a.alpha,
        design: gpsamp::study::Design::Prior,
        given: None,
    };
    let rep = run_study(study, &a.run, out, "sbc")?;
    if a.strict && !rep.pass {
        let failed: Vec<&str> = rep
            .quantities
            .iter()
            .filter(|q| !q.pass)
            .map(|q| q.quantity.as_str())
            .collect();
        bail!(
            "--strict: ranks are not uniform at alpha {} for {}",
            a.alpha,
            failed.join(", ")
        );
    }
    Ok(())
}

/// Fits the datasets of `study` (its shard when `--shard` is given) on the flags' backend,
/// writes the folder into `out` and prints the report: the uniformity table of a prior
/// study, the per-cell table of a study at chosen values. `batch` is replaced by the flag
/// or the backend's default.
pub fn run_study(
    mut study: Study,
    a: &RunArgs,
    out: OutputDir,
    command: &str,
) -> anyhow::Result<Report> {
    let backend = super::args::select_backend(a.backend, a.quiet)?
        .with_precision(a.precision.into())
        .for_model(study.fit.as_ref());
    study.batch = a
        .batch
        .unwrap_or_else(|| default_batch(&backend, a.chains_per_dataset));
    study.validate()?;
    super::args::check_metric_memory(
        a.metric,
        study.fit.dim(),
        study.batch,
        study.batch * a.chains_per_dataset,
    )?;
    let range = match &a.shard {
        Some(s) => shard_range(s, study.datasets)?,
        None => 0..study.datasets,
    };
    // Records kept for the report: one per dataset, a few hundred bytes per quantity.
    let n_q = study.fit.param_names().len() as u64 + 1;
    super::check_memory(
        "--datasets",
        (range.len() as u64).saturating_mul(96 + 160 * n_q),
        &format!(
            "{} dataset records (fit them in slices with --shard I/N)",
            range.len()
        ),
    )?;
    if range.is_empty() {
        bail!(
            "--shard {}: this shard holds no datasets",
            a.shard.clone().unwrap_or_default()
        );
    }
    let bar = super::progress_bar(
        a.quiet,
        range.len() as u64,
        "{bar:30} {pos}/{len} datasets {rate} eta {eta}",
    );
    if !a.quiet {
        let n = match study.design.cells() {
            [] if study.fit.name().starts_with("stan:") => {
                "data simulated by its generated quantities".to_string()
            }
            [] => format!("N {}", study.points),
            cells => format!("{} cells", cells.len()),
        };
        eprintln!(
            "gpsamp {command}: {} on {} dataset(s) {}..{} of {}, {n}, {} chains, {} + {} draws, backend {}",
            study.fit.name(),
            range.len(),
            range.start,
            range.end,
            study.datasets,
            a.chains_per_dataset,
            study.config.warmup,
            a.draws,
            backend.describe()
        );
    }
    let run = gpsamp::workflow::study_to_dir(
        &study,
        range.clone(),
        a.shard.as_deref(),
        &backend,
        out.path(),
        &mut |done, _| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    out.commit()?;
    if !a.quiet {
        if study.design.is_prior() {
            out!("{}", summary_table(&run.report));
        } else {
            out!("{}", gpsamp::study::design::cells_table(&run.cells));
        }
        eprintln!(
            "{} datasets in {:.1} s ({:.1} datasets/s); wrote {}",
            run.datasets,
            run.seconds,
            run.datasets as f64 / run.seconds,
            a.out.display()
        );
    }
    Ok(run.report)
}
