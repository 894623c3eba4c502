//! `sample` as a library function: ensemble HMC of a model on a data batch, written to a
//! folder as `gpsamp sample` writes it (`draws.npy`, `sample_stats.npy`, `summary.csv`,
//! `summary.json`, `meta.json`; format in the README), with the summaries, the run report
//! and the warnings returned to the caller, who decides what to print.

use std::path::Path;
use std::sync::Arc;

use crate::backend::Backend;
use crate::data::DataBatch;
use crate::diag::SummaryRow;
use crate::error::{Error, Result};
use crate::hmc::sink::{summarize_npy, NpySink, STAT_NAMES};
use crate::hmc::{self, Config, Progress, RunReport};
use crate::labels;
use crate::model::Model;

use super::sig;

/// Chains per superchain when none is asked for: 4 when `chains` is a multiple of 4 and at
/// least 16 (nested R-hat, and the adaptive end of warmup from 64 chains, judge mixing by
/// superchains), else 1. `sample` and `sbc` use it, from the CLI and from Python.
pub fn default_superchain(chains: usize) -> usize {
    if chains >= 16 && chains.is_multiple_of(4) {
        4
    } else {
        1
    }
}

/// The most values `log_lik.npy` holds when it is written by default (50 million f32
/// values, 200 MB): larger ones are written only when asked for (`--log-lik`).
pub const LOG_LIK_AUTO_LIMIT: u64 = 50_000_000;

/// What to run and record, beyond the sampler's [`Config`].
#[derive(Clone, Debug, Default)]
pub struct SampleJob {
    /// The sampler's settings (chains per dataset, warmup, draws, seed, ...).
    pub config: Config,
    /// Parameters to store, by name (empty: all).
    pub keep: Vec<String>,
    /// When [`Config::cancel`] stops sampling, keep the draws so far (else the run returns
    /// [`Error::Interrupted`]).
    pub keep_partial: bool,
    /// Where the data came from, for `meta.json`.
    pub source: String,
    /// The true constrained parameters when the data were simulated, for `meta.json`.
    pub truth: Option<Vec<f64>>,
    /// The column that split the data into datasets, for `meta.json`.
    pub group_column: Option<String>,
    /// Draw `trace.svg`, `rank.svg` and `posterior.svg` of the first dataset
    /// ([`super::plot::write_fit_plots`]).
    pub plots: bool,
    /// Also write `log_lik.npy` ([`write_log_lik`]) when it holds at most this many values
    /// (chains × draws kept × observations; `None`: never).
    pub log_lik: Option<u64>,
    /// Also write `y_rep.npy`, a posterior predictive replicate of the data for every draw
    /// ([`super::predict::write_y_rep`]).
    pub y_rep: bool,
    /// The model's settings, recorded in `meta.json` so that `gpsamp predict` can rebuild
    /// the model from the folder.
    pub model_spec: Option<super::ModelSpec>,
}

/// What a finished (or interrupted and kept) run returns besides its folder.
#[derive(Clone, Debug)]
pub struct SampleRun {
    /// Names of the stored parameters (the last axis of `draws.npy`).
    pub param_names: Vec<String>,
    /// Per dataset, a summary row per stored parameter.
    pub summaries: Vec<Vec<SummaryRow>>,
    /// The sampler's report (step sizes, divergences, timings, draws completed).
    pub report: RunReport,
    /// Whether mixture labels were aligned across chains.
    pub labels_aligned: bool,
    /// What the run did that a user may want to know (a step cap on a software adapter).
    pub notes: Vec<String>,
    /// Warnings: divergences, stuck chains, R-hat above 1.01, bulk ESS under 100.
    pub warnings: Vec<String>,
    /// The contents of `meta.json`.
    pub meta: serde_json::Value,
}

/// Samples `model` on `data` with `backend` and writes the run into `dir` (an existing,
/// empty folder: an [`crate::io::output::OutputDir`]'s temporary, say). The data are checked
/// against the model by the integrator. `progress` gets
/// (phase, iteration, iterations in phase, divergences).
pub fn sample_to_dir(
    model: Arc<dyn Model>,
    data: Arc<DataBatch>,
    backend: &Backend,
    job: &SampleJob,
    dir: &Path,
    progress: Progress<'_>,
) -> Result<SampleRun> {
    let cfg = &job.config;
    cfg.validate()?;
    let backend = &backend.clone().for_model(model.as_ref());
    let names = model.param_names();
    let keep: Vec<usize> = if job.keep.is_empty() {
        (0..names.len()).collect()
    } else {
        job.keep
            .iter()
            .map(|k| {
                names
                    .iter()
                    .position(|n| n == k)
                    .ok_or_else(|| Error::Config {
                        flag: "--keep".into(),
                        message: format!("no parameter {k:?}; the model has {}", names.join(", ")),
                    })
            })
            .collect::<Result<_>>()?
    };
    let kept_names: Vec<String> = keep.iter().map(|&i| names[i].clone()).collect();
    let n_datasets = data.n_datasets();
    let n_chains = n_datasets * cfg.chains;
    let mut integ = hmc::integrator(backend, model.clone(), data.clone(), cfg.chains, cfg.seed)?;
    let f32_check = hmc::precision::check_f32(integ.as_mut(), model.as_ref(), &data, backend, cfg)?;
    let mut notes = Vec::new();
    if let Some(cap) = integ.step_cap(cfg.metric).filter(|&c| c < cfg.max_steps) {
        notes.push(format!(
            "a software adapter stops a shader invocation after 65 535 loop iterations; with these datasets a transition may take at most {cap} leapfrog steps, and the sampler keeps to that"
        ));
    }
    let adapter = match backend {
        Backend::Gpu(ctx) => Some(ctx.summary.clone()),
        Backend::Cpu(_) => None,
    };
    let constants: Vec<f64> = (0..n_datasets).map(|b| model.constant(&data, b)).collect();
    let mut sink = NpySink::create(
        dir,
        model.as_ref(),
        constants,
        cfg.chains,
        n_chains,
        cfg.draws,
        keep.clone(),
    )?
    .with_stream(cfg.seed, cfg.chain_offset);
    let report = match hmc::sample(
        integ.as_mut(),
        model.as_ref(),
        n_datasets,
        cfg,
        &mut sink,
        progress,
    )
    .map_err(|e| hmc::precision::explain_init(e, f32_check.as_ref(), backend))
    {
        Ok(r) => r,
        Err(Error::Init { chain, message }) => {
            let b = chain / cfg.chains;
            // A Stan program's data are its JSON file's, not the batch's columns.
            let ranges = if model.data_in_columns() {
                format!(". {}", data_ranges(&data, b))
            } else {
                String::new()
            };
            return Err(Error::Init {
                chain,
                message: format!("dataset {}: {message}{ranges}", data.dataset_name(b)),
            });
        }
        Err(e) => return Err(e),
    };
    let n_kept = report.draws_completed;
    if report.interrupted && (!job.keep_partial || n_kept == 0) {
        return Err(Error::Interrupted);
    }
    let chain_means = sink.finish()?;
    if n_kept < cfg.draws {
        let k = kept_names.len();
        crate::io::npy::keep_leading(&dir.join("draws.npy"), [n_chains, cfg.draws, k], n_kept)?;
        crate::io::npy::keep_leading(
            &dir.join("sample_stats.npy"),
            [n_chains, cfg.draws, STAT_NAMES.len()],
            n_kept,
        )?;
    }
    // Label alignment for mixtures (all parameters must be stored to permute them).
    let mut alignment = serde_json::json!({"applied": false});
    if model.label_groups().is_some() {
        if keep.len() == names.len() {
            let perms =
                labels::permutations(model.as_ref(), &chain_means, cfg.chains).unwrap_or_default();
            let switched = perms
                .iter()
                .filter(|p| p.iter().enumerate().any(|(i, &j)| i != j))
                .count();
            labels::apply_to_npy(dir, model.as_ref(), &perms, n_kept)?;
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
        dir,
        &kept_names,
        n_chains,
        n_kept,
        cfg.chains,
        cfg.superchain_size,
        256 << 20,
    )?;
    write_summary(dir, &summaries, &data)?;
    let n_obs = data.range(0).len() as u64;
    let size = (n_chains as u64)
        .saturating_mul(n_kept as u64)
        .saturating_mul(n_obs);
    let log_lik = if let Some(limit) = job.log_lik.filter(|&l| size > l) {
        notes.push(format!(
            "no log_lik.npy: it would hold {size} values, more than the {limit} written by default (--log-lik writes it anyway)"
        ));
        None
    } else if job.log_lik.is_some() {
        let shape = write_log_lik(dir, model.as_ref(), &data, cfg.chains)?;
        // Said when asked for (--log-lik), not for every run of a family without one.
        if shape.is_none() && job.log_lik == Some(u64::MAX) {
            notes.push(format!(
                "no log_lik.npy: {} defines no pointwise log likelihood here (a family without one, a --keep subset, or datasets of different sizes)",
                model.name()
            ));
        }
        shape
    } else {
        None
    };
    let state_probs = write_state_probs(dir, model.as_ref(), &data, cfg.chains)?;
    let y_rep = if job.y_rep {
        let shape = super::predict::write_y_rep(dir, model.as_ref(), &data, cfg.chains, cfg.seed)?;
        if shape.is_none() {
            notes.push(format!(
                "no y_rep.npy: {} has no responses given inputs here (a family without them, a --keep subset, or datasets of different sizes)",
                model.name()
            ));
        }
        shape
    } else {
        None
    };
    let mut figures = if job.plots && n_kept > 0 {
        let truth: Option<Vec<f64>> = job
            .truth
            .as_ref()
            .filter(|t| t.len() == names.len())
            .map(|t| keep.iter().map(|&i| t[i]).collect());
        let label = (n_datasets > 1).then(|| data.dataset_name(0));
        super::plot::draw_first_dataset(
            dir,
            dir,
            &kept_names,
            truth.as_deref(),
            [n_chains, n_kept, cfg.chains],
            label,
        )?
    } else {
        Vec::new()
    };
    if job.plots && n_kept > 0 {
        figures.extend(super::predict::draw_ppc(
            dir,
            dir,
            model.as_ref(),
            &data,
            cfg.chains,
            cfg.seed,
        )?);
    }
    let meta = serde_json::json!({
        "format": "gpsamp-draws/1",
        "figures": figures,
        "model": model.name(),
        "param_names": kept_names,
        "all_param_names": names,
        "draws_shape": [n_chains, n_kept, kept_names.len()],
        "draws_completed": n_kept,
        "draws_requested": cfg.draws,
        "interrupted": report.interrupted,
        "datasets": n_datasets,
        "groups": (0..n_datasets).map(|b| data.dataset_name(b)).collect::<Vec<_>>(),
        "group_column": job.group_column,
        "chains_per_dataset": cfg.chains,
        "sample_stats_columns": STAT_NAMES,
        "log_lik_shape": log_lik,
        "y_rep_shape": y_rep,
        "state_probs_shape": state_probs,
        "model_spec": job.model_spec,
        "x_columns": data.x_names,
        "y_column": data.y_name,
        "settings": cfg,
        "seed": cfg.seed,
        "backend": backend.describe(),
        "adapter": adapter,
        "data": job.source,
        "truth": job.truth,
        "label_alignment": alignment,
        "f32_check": f32_check,
        "report": report,
        "gpsamp_version": env!("CARGO_PKG_VERSION"),
    });
    super::write_text(
        &dir.join("meta.json"),
        super::json_pretty(&meta)?.as_bytes(),
    )?;
    let mut warnings = warnings(&summaries, &report, &data, cfg);
    warnings.extend(f32_check.and_then(|c| c.warning(backend)));
    Ok(SampleRun {
        param_names: kept_names,
        warnings,
        summaries,
        report,
        labels_aligned: alignment["applied"] == true,
        notes,
        meta,
    })
}

/// Writes `name` (chains × draws × observations, f32) into a sample folder, chain by chain
/// in parallel: `block(c, b, draws)` maps the stored draws of chain `c` (of dataset `b`;
/// draws × params, constrained) to its rows (draws × observations). `Ok(None)` (and no
/// file) when the folder stores a subset of the parameters, the datasets differ in size, or
/// the chains do not fit the data; otherwise the shape. Shared by `log_lik.npy` and
/// `y_rep.npy`.
pub(crate) fn write_per_observation(
    dir: &Path,
    name: &str,
    model: &dyn Model,
    data: &DataBatch,
    chains_per_dataset: usize,
    block: impl Fn(usize, usize, &[f32]) -> Vec<f32> + Sync,
) -> Result<Option<[usize; 3]>> {
    use rayon::prelude::*;
    let shape = crate::io::npy::read_shape(&dir.join("draws.npy"))?;
    let [n_chains, n_draws, k] = shape[..] else {
        return Ok(None);
    };
    let n = data.range(0).len();
    let cpd = chains_per_dataset.max(1);
    if k != model.param_names().len()
        || (0..data.n_datasets()).any(|b| data.range(b).len() != n)
        || n_chains.div_ceil(cpd) > data.n_datasets()
    {
        return Ok(None);
    }
    let draws = crate::io::npy::NpyWriter::open_read(&dir.join("draws.npy"), &shape)?;
    let out = crate::io::npy::NpyWriter::create(&dir.join(name), &[n_chains, n_draws, n])?;
    (0..n_chains)
        .into_par_iter()
        .try_for_each(|c| -> Result<()> {
            let mut mine = vec![0f32; n_draws * k];
            draws.read_at(c * n_draws * k, &mut mine)?;
            out.write_at(c * n_draws * n, &block(c, c / cpd, &mine))
        })?;
    out.finish()?;
    Ok(Some([n_chains, n_draws, n]))
}

/// Writes `log_lik.npy` into a sample folder: the pointwise log likelihood
/// ([`Model::log_lik_pointwise`]) of every stored draw, chains × draws × observations, f32,
/// ArviZ's `log_likelihood` group. `Ok(None)` (and no file) when the model defines none, the
/// folder stores a subset of the parameters, or the datasets differ in size; otherwise the
/// shape. A draw whose parameters cannot be mapped back (a weight rounded to 0 in f32) gets
/// NaN.
pub fn write_log_lik(
    dir: &Path,
    model: &dyn Model,
    data: &DataBatch,
    chains_per_dataset: usize,
) -> Result<Option<[usize; 3]>> {
    if model
        .log_lik_pointwise(data, 0, &vec![0.0; model.dim()])
        .is_none()
    {
        return Ok(None);
    }
    let (n, k) = (data.range(0).len(), model.param_names().len());
    write_per_observation(
        dir,
        "log_lik.npy",
        model,
        data,
        chains_per_dataset,
        |_, b, draws| {
            let mut block = vec![f32::NAN; draws.len() / k * n];
            for (t, row) in draws.chunks(k).enumerate() {
                let params: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
                if let Some(ll) = model
                    .unconstrain(&params)
                    .ok()
                    .and_then(|th| model.log_lik_pointwise(data, b, &th))
                {
                    for (o, v) in block[t * n..(t + 1) * n].iter_mut().zip(ll) {
                        *o = v as f32;
                    }
                }
            }
            block
        },
    )
}

/// Draws whose smoothed state probabilities [`write_state_probs`] averages, per dataset.
const STATE_PROB_DRAWS: usize = 1000;

/// Writes `state_probs.npy` into a sample folder of a family with hidden states (HMMs): the
/// posterior mean over draws of the smoothed state probabilities P(z_t | y, theta) of every
/// row (rows of all datasets × K, f32), averaged over at most 1 000 draws per dataset
/// spread evenly over its chains. `Ok(None)` (and no file) for other families or a folder
/// storing a subset of the parameters; otherwise the shape.
pub fn write_state_probs(
    dir: &Path,
    model: &dyn Model,
    data: &DataBatch,
    chains_per_dataset: usize,
) -> Result<Option<[usize; 2]>> {
    use rayon::prelude::*;
    let k = model.hidden_states();
    if k == 0 {
        return Ok(None);
    }
    let cpd = chains_per_dataset.max(1);
    let names = model.param_names().len();
    let mut out = Vec::with_capacity(data.n_total() * k);
    for b in 0..data.n_datasets() {
        let Ok((n_draws, draws)) = super::predict::dataset_draws(dir, model, b, cpd) else {
            return Ok(None);
        };
        let total = cpd * n_draws;
        let used = STATE_PROB_DRAWS.min(total).max(1);
        let rows = data.range(b).len();
        let sums: Vec<(Vec<f64>, usize)> = (0..used)
            .into_par_iter()
            .map(|i| {
                let row = i * total / used;
                let params: Vec<f64> = draws[row * names..(row + 1) * names]
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect();
                model
                    .unconstrain(&params)
                    .ok()
                    .and_then(|th| model.state_probabilities(data, b, &th))
                    .filter(|g| g.iter().all(|v| v.is_finite()))
                    .map_or((vec![0.0; rows * k], 0), |g| (g, 1))
            })
            .collect();
        let count: usize = sums.iter().map(|s| s.1).sum();
        let mut mean = vec![0.0; rows * k];
        for (g, _) in &sums {
            mean.iter_mut().zip(g).for_each(|(m, v)| *m += v);
        }
        out.extend(mean.iter().map(|m| (m / count.max(1) as f64) as f32));
    }
    let shape = [data.n_total(), k];
    crate::io::npy::write_f32(&dir.join("state_probs.npy"), &shape, &out)?;
    Ok(Some(shape))
}

/// Writes `summary.csv` and `summary.json` (ArviZ's columns plus `nested_r_hat`; a leading
/// `dataset` column holding each dataset's group key when there are several).
pub fn write_summary(dir: &Path, summaries: &[Vec<SummaryRow>], data: &DataBatch) -> Result<()> {
    let multi = summaries.len() > 1;
    let mut header = vec!["param"];
    header.extend(crate::diag::SUMMARY_COLUMNS);
    header.push("nested_r_hat");
    if multi {
        header.insert(0, "dataset");
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| Error::Invalid(format!("summary.csv: {e}"));
    w.write_record(&header).map_err(csv_err)?;
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
            w.write_record(&rec).map_err(csv_err)?;
        }
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::Invalid(format!("summary.csv: {e}")))?;
    super::write_text(&dir.join("summary.csv"), &bytes)?;
    let json = if multi {
        let v: Vec<serde_json::Value> = summaries
            .iter()
            .enumerate()
            .map(|(b, rows)| serde_json::json!({"dataset": data.dataset_name(b), "summary": rows}))
            .collect();
        super::json_pretty(&v)?
    } else {
        super::json_pretty(&summaries[0])?
    };
    super::write_text(&dir.join("summary.json"), json.as_bytes())
}

/// Starting points for HMM chains: the unconstrained EM fit (10 restarts, MAP with the model's stickiness) of every dataset.
pub fn em_init_centers(
    hmm: &crate::Hmm,
    data: &DataBatch,
    stickiness: f64,
    seed: u64,
) -> Result<Vec<Vec<f64>>> {
    use crate::hmm::em::{fit_cpu, EmConfig, EmPriors, Init};
    let spec = *hmm.spec();
    let cfg = EmConfig {
        priors: EmPriors {
            stickiness,
            ..EmPriors::default()
        },
        init: if spec.kind == crate::hmm::EmissionKind::Bernoulli {
            Init::Random
        } else {
            Init::Kmeans
        },
        seed,
        ..EmConfig::default()
    };
    let fits = fit_cpu(&spec, &cfg, data).map_err(|e| Error::Config {
        flag: "--init em".into(),
        message: e.to_string(),
    })?;
    fits.iter()
        .map(|f| {
            hmm.theta(&f.params).map_err(|e| Error::Config {
                flag: "--init em".into(),
                message: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>>>()
}

/// The range of every column of dataset `b`, for an error about data on an odd scale.
pub fn data_ranges(data: &DataBatch, b: usize) -> String {
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

/// Warnings about the fit: divergences, stuck chains, R-hat above 1.01 (nested R-hat for
/// ensembles, see [`hmc::converge::nested_judges`]), bulk ESS under 100.
pub fn warnings(
    summaries: &[Vec<SummaryRow>],
    report: &RunReport,
    data: &DataBatch,
    cfg: &Config,
) -> Vec<String> {
    let nested = hmc::converge::nested_judges(cfg.chains, cfg.superchain_size);
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
        if nested {
            if let Some(r) = worst(|r| r.nested_r_hat, true).filter(|r| r.nested_r_hat > 1.01) {
                w.push(format!(
                    "{}nested R-hat {} for {} (above 1.01): the superchains disagree; run longer or look at the trace",
                    name(b),
                    sig(r.nested_r_hat, 4),
                    r.param
                ));
            }
        } else if let Some(r) = worst(|r| r.r_hat, true).filter(|r| r.r_hat > 1.01) {
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
