//! `gpsamp em`: batched EM for HMMs and GLM-HMMs on a sequence CSV: R restarts of every
//! dataset in one batch (CPU or GPU E-step), the best kept; aligned parameters and log
//! likelihoods printed; `params.json`, `states.csv` (Viterbi) and `posteriors.npy` written
//! (format in the README).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use gpsamp::hmm::em::{EmConfig, EmPriors, Init};
use gpsamp::hmm::io::{params_from_json, read_sequences, SeqData, SeqSpec};
use gpsamp::hmm::{EmissionKind, HmmParams, HmmSpec};
use gpsamp::workflow::{em_to_dir, EmJob};

use gpsamp::io::output::OutputDir;

use super::args::Emission;

/// Which HMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EmModel {
    /// Gaussian HMM: one or more --y columns, diagonal covariance.
    Hmm,
    /// GLM-HMM: --x inputs, one --y column, --emission gaussian or bernoulli.
    Glmhmm,
}

/// How restarts start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InitArg {
    /// k-means++ on the emissions (Gaussian emissions; GLM weights start at 0).
    Kmeans,
    /// Random data points as means, random GLM weights.
    Random,
}

/// Options of `gpsamp em`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model (or give --model-file).
    #[arg(long, value_enum, required_unless_present = "model_file")]
    model: Option<EmModel>,
    /// TOML file with the model settings, keys as the flags without dashes: model, states,
    /// emission, concentration, stickiness, coef_sd, var_floor, init, restarts, max_iters,
    /// tol (`model = "hmm"`, `states = 3`, `stickiness = 10`); flags given on the command
    /// line win.
    #[arg(long)]
    model_file: Option<PathBuf>,
    /// Hidden states K.
    #[arg(long, default_value_t = 3)]
    states: usize,
    /// glmhmm: emission of each state.
    #[arg(long, value_enum, default_value = "gaussian")]
    emission: Emission,
    /// CSV file with a header line; rows of a sequence together, in time order.
    #[arg(long)]
    data: PathBuf,
    /// Sequence id column.
    #[arg(long, default_value = "seq")]
    seq: String,
    /// Time column.
    #[arg(long, default_value = "t")]
    t: String,
    /// glmhmm: input columns, comma-separated.
    #[arg(long, value_delimiter = ',')]
    x: Vec<String>,
    /// Emission column(s), comma-separated (several for a multivariate Gaussian HMM).
    #[arg(long, value_delimiter = ',', default_value = "y")]
    y: Vec<String>,
    /// Column that splits the sequences into datasets, each fitted separately (in one batch).
    #[arg(long)]
    group: Option<String>,
    /// Restarts per dataset; the best penalised log likelihood is kept.
    #[arg(long, default_value_t = 10)]
    restarts: usize,
    /// Iteration cap.
    #[arg(long, default_value_t = 200)]
    max_iters: usize,
    /// Stop when the penalised log likelihood changes by less than this per observation.
    #[arg(long, default_value_t = 1e-6)]
    tol: f64,
    /// Initialisation (default: kmeans for Gaussian emissions, random for Bernoulli).
    #[arg(long, value_enum)]
    init: Option<InitArg>,
    /// Dirichlet concentration of the initial distribution and each transition row (>= 1).
    #[arg(long, default_value_t = 1.1)]
    concentration: f64,
    /// Added to the diagonal concentration of each transition row (sticky states).
    #[arg(long, default_value_t = 0.0)]
    stickiness: f64,
    /// Sd of the zero-mean normal prior on means, biases and weights.
    #[arg(long, default_value_t = 10.0)]
    coef_sd: f64,
    /// Lower bound on every emission variance.
    #[arg(long, default_value_t = 1e-4)]
    var_floor: f64,
    /// Hold out the last N sequences of every dataset and report their log likelihood in
    /// bits per observation.
    #[arg(long, default_value_t = 0)]
    holdout: usize,
    /// True parameters (a `simulate` .truth.json or a params.json) to align states to;
    /// without it states are sorted by their first mean or bias.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Decode --data under these parameters instead of fitting (a params.json of `gpsamp em`,
    /// or a `simulate` .truth.json; one set for all datasets or one per dataset): writes
    /// states.csv (Viterbi path), posteriors.npy (smoothed state probabilities),
    /// filtered.npy (filtered) and sequences.csv (each sequence's log likelihood).
    #[arg(long)]
    params: Option<PathBuf>,
    /// Decode only (with --params; --params implies it).
    #[arg(long, requires = "params")]
    decode: bool,
    /// Seed of the initialisations.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Backend of the E-step: auto, gpu or cpu.
    #[arg(long, value_enum, default_value = "auto")]
    backend: super::args::BackendArg,
    /// Output folder: created if missing; replaced, once the run has succeeded, only when
    /// it holds an earlier `gpsamp em` output (or is empty, or with --force).
    #[arg(long)]
    out: PathBuf,
    /// Replace --out even when it is a folder gpsamp did not write (never the working
    /// directory, a folder above it, or a folder holding an input).
    #[arg(long)]
    force: bool,
    /// With --decode: also draw this many state paths of every sequence from their
    /// posterior given --params (forward filtering, backward sampling) into
    /// sampled_paths.npy (draws x rows, states as f32; seeded by --seed).
    #[arg(long, default_value_t = 0, requires = "params")]
    sample_paths: usize,
    /// Skip the figures (em_trace.svg, emissions.svg, states.svg of the first dataset).
    #[arg(long)]
    no_plots: bool,
    /// No table (warnings still go to stderr).
    #[arg(long)]
    quiet: bool,
}

fn spec_of(a: &Args) -> anyhow::Result<HmmSpec> {
    if a.states < 1 {
        bail!("--states must be at least 1, got {}", a.states);
    }
    let Some(model) = a.model else {
        bail!(
            "{}: no `model` key (hmm or glmhmm), and no --model",
            a.model_file
                .as_deref()
                .unwrap_or(Path::new("--model-file"))
                .display()
        );
    };
    let spec = match model {
        EmModel::Hmm => {
            if !a.x.is_empty() {
                bail!("--x: a Gaussian HMM takes no inputs (use --model glmhmm)");
            }
            HmmSpec::gaussian(a.states, a.y.len())
        }
        EmModel::Glmhmm => {
            if a.y.len() != 1 {
                bail!("--y: a GLM-HMM has one emission column, got {}", a.y.len());
            }
            match a.emission {
                Emission::Gaussian => HmmSpec::regression(a.states, a.x.len()),
                Emission::Bernoulli => HmmSpec::bernoulli(a.states, a.x.len()),
            }
        }
    };
    spec.context("--states")
}

/// Reads `--truth`: one parameter set per dataset (or one for all).
/// HMM parameters from a JSON file: `gpsamp em`'s params.json (one set per dataset), a truth
/// file of `gpsamp simulate`, or one set's keys; errors name `flag` and the file.
pub fn read_hmm_params(
    flag: &str,
    path: &std::path::Path,
    spec: &HmmSpec,
) -> anyhow::Result<Vec<HmmParams>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{flag}: reading {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{flag}: {} is not JSON", path.display()))?;
    let list: Vec<&serde_json::Value> = match v.get("truth").or_else(|| v.get("datasets")) {
        Some(serde_json::Value::Array(a)) => a.iter().collect(),
        _ => vec![&v],
    };
    list.into_iter()
        .map(|x| params_from_json(spec, x).with_context(|| format!("{flag} {}", path.display())))
        .collect()
}

fn read_truth(path: &std::path::Path, spec: &HmmSpec) -> anyhow::Result<Vec<HmmParams>> {
    read_hmm_params("--truth", path, spec)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let inputs: Vec<&Path> = std::iter::once(a.data.as_path())
        .chain(a.truth.as_deref())
        .chain(a.params.as_deref())
        .chain(a.model_file.as_deref())
        .collect();
    let out = OutputDir::create("--out", &a.out, "em", a.force, &inputs)?;
    let spec = spec_of(&a)?;
    let cfg = EmConfig {
        restarts: a.restarts,
        max_iters: a.max_iters,
        tol: a.tol,
        var_floor: a.var_floor,
        priors: EmPriors {
            initial: a.concentration,
            transition: a.concentration,
            stickiness: a.stickiness,
            coef_sd: a.coef_sd,
            ..EmPriors::default()
        },
        init: match a.init {
            Some(InitArg::Kmeans) => {
                if spec.kind == EmissionKind::Bernoulli {
                    bail!("--init kmeans needs Gaussian emissions; use --init random");
                }
                Init::Kmeans
            }
            Some(InitArg::Random) => Init::Random,
            None if spec.kind == EmissionKind::Bernoulli => Init::Random,
            None => Init::Kmeans,
        },
        seed: a.seed,
    };
    cfg.validate()
        .context("--restarts / --max-iters / --tol / --var-floor / --concentration / --stickiness / --coef-sd")?;
    let all = read_sequences(
        &a.data,
        &SeqSpec {
            seq: a.seq.clone(),
            t: a.t.clone(),
            x: a.x.clone(),
            y: a.y.clone(),
            group: a.group.clone(),
            binary: spec.kind == EmissionKind::Bernoulli,
        },
    )?;
    if let Some(path) = &a.params {
        let params = read_truth(path, &spec).context("--params")?;
        let opts = gpsamp::workflow::em::DecodeOptions {
            plots: !a.no_plots,
            sample_paths: a.sample_paths,
            seed: a.seed,
        };
        let d = gpsamp::workflow::em::decode_to_dir(&spec, &all, &params, out.path(), &opts)?;
        out.commit()?;
        if !a.quiet {
            for (b, lls) in d.log_likelihoods.iter().enumerate() {
                outln!(
                    "dataset {:?}: {} sequence(s), log likelihood {:.3} under {}",
                    all.groups[b],
                    lls.len(),
                    lls.iter().sum::<f64>(),
                    path.display()
                );
            }
            let mut files: Vec<String> = [
                "states.csv",
                "posteriors.npy",
                "filtered.npy",
                "sequences.csv",
            ]
            .map(String::from)
            .into();
            if a.sample_paths > 0 {
                files.push("sampled_paths.npy".into());
            }
            files.extend(d.figures.iter().cloned());
            eprintln!("wrote {}/{{{}}}", a.out.display(), files.join(", "));
        }
        return Ok(());
    }
    let (train, test): (SeqData, Option<SeqData>) = if a.holdout > 0 {
        let (tr, te) = all.split_holdout(a.holdout)?;
        (tr, Some(te))
    } else {
        (all, None)
    };
    let data = &train.batch;
    for b in 0..data.n_datasets() {
        let n = data.range(b).len();
        if n < spec.k {
            bail!(
                "--states {}: dataset {:?} has {n} observations, too few for {} states",
                spec.k,
                train.groups[b],
                spec.k
            );
        }
    }
    let truth = a.truth.as_ref().map(|p| read_truth(p, &spec)).transpose()?;
    if let Some(t) = &truth {
        if t.len() != 1 && t.len() != data.n_datasets() {
            bail!(
                "--truth holds {} parameter sets but the data has {} datasets",
                t.len(),
                data.n_datasets()
            );
        }
    }
    let backend = super::args::select_backend(a.backend, a.quiet)?;
    let jobs = (data.n_datasets() * cfg.restarts) as u64;
    let bar = super::progress_bar(
        a.quiet,
        jobs * cfg.max_iters as u64,
        "EM {bar:30} {pos}/{len} job-iterations {rate} (converged jobs stop early)",
    );
    let job = EmJob {
        spec,
        config: cfg.clone(),
        truth: truth.clone(),
        source: a.data.display().to_string(),
        plots: !a.no_plots,
    };
    let run = em_to_dir(&train, test.as_ref(), &backend, &job, out.path(), &|n| {
        bar.inc(n)
    })?;
    bar.finish_and_clear();
    let (fits, heldout, secs) = (&run.fits, &run.heldout, run.seconds);
    let k = spec.k;
    if !a.quiet {
        for (b, f) in fits.iter().enumerate() {
            let iters = f.trace.len().saturating_sub(1);
            outln!(
                "dataset {:?}: log likelihood {:.3} (best of {} restarts: #{}, {iters} iterations, {})",
                train.groups[b],
                f.log_likelihood,
                cfg.restarts,
                f.restart,
                if f.converged {
                    "converged"
                } else {
                    "hit --max-iters"
                }
            );
            if let Some((bits, gain)) = heldout[b] {
                out!("  held-out: {bits:.4} bits/observation");
                if let Some(g) = gain {
                    out!(" ({g:+.4} bits/observation over a constant-probability model)");
                }
                outln!();
            }
            out!("  state  initial   stay");
            let glm = spec.p > 0 || spec.kind == EmissionKind::Bernoulli;
            for e in 0..spec.d {
                out!(
                    "  {:>9}",
                    if glm {
                        "bias".to_string()
                    } else {
                        format!("mean[{e}]")
                    }
                );
            }
            for j in 0..spec.p {
                out!("  {:>9}", format!("w[{}]", a.x[j]));
            }
            if spec.has_sds() {
                for e in 0..spec.d {
                    out!("  {:>9}", format!("sd[{e}]"));
                }
            }
            outln!();
            let p = &f.params;
            for s in 0..k {
                out!(
                    "  {s:>5}  {:>7.3} {:>6.3}",
                    p.initial[s],
                    p.transition[s * k + s]
                );
                for e in 0..spec.d {
                    out!("  {:>9.4}", p.loc[s * spec.d + e]);
                }
                for j in 0..spec.p {
                    out!("  {:>9.4}", p.weights[s * spec.p + j]);
                }
                if spec.has_sds() {
                    for e in 0..spec.d {
                        out!("  {:>9.4}", p.sds[s * spec.d + e]);
                    }
                }
                outln!();
            }
        }
        outln!(
            "backend {}: {} dataset(s) x {} restart(s) in {secs:.2} s{}",
            backend.describe(),
            data.n_datasets(),
            cfg.restarts,
            match &truth {
                Some(_) =>
                    "; states aligned to --truth (Hungarian matching on emission parameters)",
                None => "; states sorted by their first mean/bias",
            }
        );
    }

    out.commit()?;
    if !a.quiet {
        let mut files: Vec<String> = ["params.json", "states.csv", "posteriors.npy"]
            .map(String::from)
            .into();
        if let Some(f) = run.params_json["figures"].as_array() {
            files.extend(f.iter().filter_map(|v| v.as_str()).map(String::from));
        }
        eprintln!("wrote {}/{{{}}}", a.out.display(), files.join(", "));
    }
    Ok(())
}
