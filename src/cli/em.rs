//! `gpsamp em`: batched EM for HMMs and GLM-HMMs on a sequence CSV: R restarts of every
//! dataset in one batch (CPU or GPU E-step), the best kept; aligned parameters and log
//! likelihoods printed; `params.json`, `states.csv` (Viterbi) and `posteriors.npy` written
//! (format in the README).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};

use gpsamp::hmm::em::{EmConfig, EmFit, EmPriors, Init};
use gpsamp::hmm::io::{params_from_json, params_to_json, read_sequences, SeqData, SeqSpec};
use gpsamp::hmm::{self, EmissionKind, HmmParams, HmmSpec};

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
fn read_truth(path: &std::path::Path, spec: &HmmSpec) -> anyhow::Result<Vec<HmmParams>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--truth: reading {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("--truth: {} is not JSON", path.display()))?;
    let list: Vec<&serde_json::Value> = match v.get("truth").or_else(|| v.get("datasets")) {
        Some(serde_json::Value::Array(a)) => a.iter().collect(),
        _ => vec![&v],
    };
    list.into_iter()
        .map(|x| params_from_json(spec, x).with_context(|| format!("--truth {}", path.display())))
        .collect()
}

/// The relabelling that sorts states by their first location (mean or bias).
fn canonical(spec: &HmmSpec, prm: &HmmParams) -> Vec<usize> {
    let mut order: Vec<usize> = (0..spec.k).collect();
    order.sort_by(|&a, &b| prm.loc[a * spec.d].total_cmp(&prm.loc[b * spec.d]));
    order
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let inputs: Vec<&Path> = std::iter::once(a.data.as_path())
        .chain(a.truth.as_deref())
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
    let started = Instant::now();
    let jobs = (data.n_datasets() * cfg.restarts) as u64;
    let bar = super::progress_bar(
        a.quiet,
        jobs * cfg.max_iters as u64,
        "EM {bar:30} {pos}/{len} job-iterations {rate} (converged jobs stop early)",
    );
    let fits: Vec<EmFit> = hmm::fit_em(&backend, &spec, &cfg, data, &|n| bar.inc(n))?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    // Align states: to the truth when given, else by their first location.
    let fits: Vec<EmFit> = fits
        .into_iter()
        .enumerate()
        .map(|(b, mut f)| {
            let perm = match &truth {
                Some(t) => hmm::align_params(&spec, &t[b.min(t.len() - 1)], &f.params),
                None => canonical(&spec, &f.params),
            };
            f.params = f.params.permuted(&spec, &perm);
            f
        })
        .collect();

    // Decoding on the training data.
    let k = spec.k;
    let mut states_csv = String::new();
    if a.group.is_some() {
        states_csv.push_str("group,");
    }
    states_csv.push_str("seq,t,state\n");
    let mut post: Vec<f32> = Vec::with_capacity(data.n_total() * k);
    let mut path = vec![0usize; data.n_total()];
    for (b, f) in fits.iter().enumerate() {
        for (si, seq) in hmm::sequences(data, b).into_iter().enumerate() {
            let r = seq.clone();
            hmm::viterbi(&spec, &f.params, data, seq, &mut path[r.clone()]);
            for n in r {
                if a.group.is_some() {
                    states_csv.push_str(&format!("{},", train.groups[b]));
                }
                states_csv.push_str(&format!(
                    "{},{},{}\n",
                    train.seq_ids[b][si], train.t[n], path[n]
                ));
            }
        }
        let (g, _) = hmm::posteriors(&spec, &f.params, data, b);
        post.extend(g.iter().map(|&v| v as f32));
    }

    // Held-out log likelihood in bits per observation (and, for Bernoulli emissions, the
    // gain over a constant-probability model fitted to the training responses).
    let heldout: Vec<Option<(f64, Option<f64>)>> = fits
        .iter()
        .enumerate()
        .map(|(b, f)| {
            let te = test.as_ref()?;
            let tb = &te.batch;
            let mut s = hmm::FbScratch::default();
            let ll: f64 = hmm::sequences(tb, b)
                .into_iter()
                .map(|seq| hmm::log_likelihood(&spec, &f.params, tb, seq, &mut s))
                .sum();
            let n = tb.range(b).len() as f64;
            let bits = ll / (n * std::f64::consts::LN_2);
            let gain = (spec.kind == EmissionKind::Bernoulli).then(|| {
                let ytr = &data.y()[data.range(b)];
                let p0 = (ytr.iter().sum::<f64>() / ytr.len() as f64).clamp(1e-6, 1.0 - 1e-6);
                let ll0: f64 = tb.y()[tb.range(b)]
                    .iter()
                    .map(|&y| if y == 1.0 { p0.ln() } else { (1.0 - p0).ln() })
                    .sum();
                (ll - ll0) / (n * std::f64::consts::LN_2)
            });
            Some((bits, gain))
        })
        .collect();

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

    let datasets: Vec<serde_json::Value> = fits
        .iter()
        .enumerate()
        .map(|(b, f)| {
            let mut v = params_to_json(&spec, &f.params);
            let o = v.as_object_mut().expect("an object");
            o.insert("group".into(), serde_json::json!(train.groups[b]));
            o.insert("log_likelihood".into(), serde_json::json!(f.log_likelihood));
            o.insert("trace".into(), serde_json::json!(f.trace));
            o.insert("restart".into(), serde_json::json!(f.restart));
            o.insert(
                "restart_objectives".into(),
                serde_json::json!(f.restart_objectives),
            );
            o.insert("converged".into(), serde_json::json!(f.converged));
            o.insert("n_obs".into(), serde_json::json!(data.range(b).len()));
            if let Some((bits, gain)) = heldout[b] {
                o.insert("heldout_bits_per_obs".into(), serde_json::json!(bits));
                if let Some(g) = gain {
                    o.insert(
                        "heldout_bits_gain_over_constant".into(),
                        serde_json::json!(g),
                    );
                }
            }
            v
        })
        .collect();
    let meta = serde_json::json!({
        "model": gpsamp::Model::name(&gpsamp::Hmm::new(spec, gpsamp::HmmPriors::default())?),
        "states": k,
        "data": a.data.display().to_string(),
        "backend": backend.describe(),
        "restarts": cfg.restarts,
        "max_iters": cfg.max_iters,
        "tol": cfg.tol,
        "seed": cfg.seed,
        "seconds": secs,
        "datasets": datasets,
    });
    let dir = out.path();
    let put = |name: &str, text: &[u8]| {
        std::fs::write(dir.join(name), text)
            .with_context(|| format!("writing {}", dir.join(name).display()))
    };
    put(
        "params.json",
        serde_json::to_string_pretty(&meta)?.as_bytes(),
    )?;
    put("states.csv", states_csv.as_bytes())?;
    gpsamp::io::npy::write_f32(&dir.join("posteriors.npy"), &[data.n_total(), k], &post)?;
    out.commit()?;
    if !a.quiet {
        eprintln!(
            "wrote {}/{{params.json, states.csv, posteriors.npy}}",
            a.out.display()
        );
    }
    Ok(())
}
