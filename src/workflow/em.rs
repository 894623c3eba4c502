//! `em` as a library function: batched EM for HMMs and GLM-HMMs on a backend, states aligned
//! to a truth (or sorted by their first mean/bias), Viterbi paths and smoothed state
//! probabilities of the training sequences, held-out log likelihood, written to a folder as
//! `gpsamp em` writes it (`params.json`, `states.csv`, `posteriors.npy`; format in the
//! README).

use std::path::Path;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::hmm::em::{EmConfig, EmFit};
use crate::hmm::io::{params_to_json, SeqData};
use crate::hmm::{self, EmissionKind, HmmParams, HmmSpec};

/// What to fit and record.
#[derive(Clone, Debug)]
pub struct EmJob {
    /// The HMM's shape.
    pub spec: HmmSpec,
    /// EM settings (restarts, iterations, priors, initialisation, seed).
    pub config: EmConfig,
    /// Parameters to align each dataset's states to (one for all, or one per dataset).
    pub truth: Option<Vec<HmmParams>>,
    /// Where the data came from, for `params.json`.
    pub source: String,
    /// Draw `em_trace.svg`, `emissions.svg` and `states.svg` of the first dataset
    /// ([`super::em_plot`]).
    pub plots: bool,
}

/// A finished EM run.
#[derive(Clone, Debug)]
pub struct EmRun {
    /// The best restart of every dataset, states aligned.
    pub fits: Vec<EmFit>,
    /// Per dataset with held-out sequences: bits per observation, and for Bernoulli
    /// emissions the gain over a constant choice probability.
    pub heldout: Vec<Option<(f64, Option<f64>)>>,
    /// Viterbi state of every training row.
    pub paths: Vec<usize>,
    /// Smoothed state probabilities (training rows x K).
    pub posteriors: Vec<f32>,
    /// Seconds of fitting.
    pub seconds: f64,
    /// The contents of `params.json`.
    pub params_json: serde_json::Value,
}

/// Sequences decoded under given parameters: the Viterbi path of every row (and as
/// `states.csv`: `[group,]seq,t,state`), smoothed and filtered state probabilities (rows ×
/// K), and the log likelihood of every sequence.
#[derive(Clone, Debug)]
pub struct Decoded {
    /// Viterbi state of every row.
    pub paths: Vec<usize>,
    /// `states.csv`.
    pub states_csv: String,
    /// Smoothed state probabilities P(z_t | y_1..T), rows × K.
    pub posteriors: Vec<f32>,
    /// Filtered state probabilities P(z_t | y_1..t), rows × K.
    pub filtered: Vec<f32>,
    /// Per dataset, the log likelihood of each of its sequences.
    pub log_likelihoods: Vec<Vec<f64>>,
    /// Figures written (by [`decode_to_dir`] when asked).
    pub figures: Vec<String>,
}

/// Decodes every sequence of `data` under `params` (one set for all datasets, or one per
/// dataset).
pub fn decode(spec: &HmmSpec, data: &SeqData, params: &[HmmParams]) -> Decoded {
    let batch = &data.batch;
    let k = spec.k;
    let grouped = !batch.groups.is_empty();
    let mut states_csv = String::new();
    if grouped {
        states_csv.push_str("group,");
    }
    states_csv.push_str("seq,t,state\n");
    let mut posteriors: Vec<f32> = Vec::with_capacity(batch.n_total() * k);
    let mut filtered: Vec<f32> = Vec::with_capacity(batch.n_total() * k);
    let mut paths = vec![0usize; batch.n_total()];
    let mut log_likelihoods = Vec::new();
    for b in 0..batch.n_datasets() {
        let prm = &params[b.min(params.len() - 1)];
        for (si, seq) in hmm::sequences(batch, b).into_iter().enumerate() {
            let r = seq.clone();
            hmm::viterbi(spec, prm, batch, seq, &mut paths[r.clone()]);
            for n in r {
                if grouped {
                    states_csv.push_str(&format!("{},", data.groups[b]));
                }
                states_csv.push_str(&format!(
                    "{},{},{}\n",
                    data.seq_ids[b][si], data.t[n], paths[n]
                ));
            }
        }
        let (g, _) = hmm::posteriors(spec, prm, batch, b);
        posteriors.extend(g.iter().map(|&v| v as f32));
        let (f, lls) = hmm::filtered(spec, prm, batch, b);
        filtered.extend(f.iter().map(|&v| v as f32));
        log_likelihoods.push(lls);
    }
    Decoded {
        paths,
        states_csv,
        posteriors,
        filtered,
        log_likelihoods,
        figures: Vec::new(),
    }
}

/// What [`decode_to_dir`] writes besides the decoding.
#[derive(Clone, Debug, Default)]
pub struct DecodeOptions {
    /// Draw `em_plot`'s states and emissions figures of the first dataset.
    pub plots: bool,
    /// State paths to draw from the posterior given the parameters (forward filtering,
    /// backward sampling), written as `sampled_paths.npy` (draws × rows, f32 states).
    pub sample_paths: usize,
    /// Seed of the sampled paths.
    pub seed: u64,
}

/// Decodes `data` under given parameters (no fitting) and writes `states.csv` (Viterbi),
/// `posteriors.npy` (smoothed), `filtered.npy` and `sequences.csv` (`[group,]seq,n_obs,
/// log_likelihood`) into `dir`; `params` holds one set for all datasets or one per dataset.
pub fn decode_to_dir(
    spec: &HmmSpec,
    data: &SeqData,
    params: &[HmmParams],
    dir: &Path,
    opts: &DecodeOptions,
) -> Result<Decoded> {
    let n = data.batch.n_datasets();
    if params.is_empty() || (params.len() != 1 && params.len() != n) {
        return Err(Error::Config {
            flag: "--params".into(),
            message: format!("{} parameter sets for {n} datasets", params.len()),
        });
    }
    let mut d = decode(spec, data, params);
    let grouped = !data.batch.groups.is_empty();
    let mut seq_csv = String::from(if grouped { "group," } else { "" });
    seq_csv.push_str("seq,n_obs,log_likelihood\n");
    for b in 0..n {
        for (si, r) in hmm::sequences(&data.batch, b).into_iter().enumerate() {
            if grouped {
                seq_csv.push_str(&format!("{},", data.groups[b]));
            }
            seq_csv.push_str(&format!(
                "{},{},{}\n",
                data.seq_ids[b][si],
                r.len(),
                d.log_likelihoods[b][si]
            ));
        }
    }
    let rows = data.batch.n_total();
    super::write_text(&dir.join("states.csv"), d.states_csv.as_bytes())?;
    super::write_text(&dir.join("sequences.csv"), seq_csv.as_bytes())?;
    crate::io::npy::write_f32(&dir.join("posteriors.npy"), &[rows, spec.k], &d.posteriors)?;
    crate::io::npy::write_f32(&dir.join("filtered.npy"), &[rows, spec.k], &d.filtered)?;
    if opts.sample_paths > 0 {
        // Draw r of dataset b from stream (seed, r * B + b): any subset redraws alike.
        let mut paths = vec![0f32; opts.sample_paths * rows];
        for (r, row) in paths.chunks_mut(rows).enumerate() {
            let mut at = 0;
            for b in 0..n {
                let prm = &params[b.min(params.len() - 1)];
                let mut rng = crate::rng::host_rng(
                    opts.seed,
                    (r * n + b) as u64,
                    crate::rng::Purpose::Simulate,
                );
                for z in hmm::sample_paths(spec, prm, &data.batch, b, &mut rng) {
                    row[at] = if z == usize::MAX { f32::NAN } else { z as f32 };
                    at += 1;
                }
            }
        }
        crate::io::npy::write_f32(
            &dir.join("sampled_paths.npy"),
            &[opts.sample_paths, rows],
            &paths,
        )?;
    }
    if opts.plots {
        d.figures = hmm_figures(spec, data, &params[0], &d.paths, &d.posteriors, None, dir)?;
    }
    Ok(d)
}

/// Draws the figures of the first dataset of `data` decoded under `params` (and of its EM
/// run when `fit` is given) into `dir`.
fn hmm_figures(
    spec: &HmmSpec,
    data: &SeqData,
    params: &HmmParams,
    paths: &[usize],
    posteriors: &[f32],
    fit: Option<&EmFit>,
    dir: &Path,
) -> Result<Vec<String>> {
    let dec = super::em_plot::Decoding {
        spec,
        params,
        data: &data.batch,
        b: 0,
        paths,
        posteriors,
        seq_id: data.seq_ids[0].first().map_or("", String::as_str),
        label: if data.batch.n_datasets() > 1 {
            format!("dataset {}", data.groups[0])
        } else {
            String::new()
        },
    };
    super::em_plot::write_hmm_plots(dir, &dec, fit)
}

/// The relabelling that sorts states by their first location (mean or bias).
pub fn canonical(spec: &HmmSpec, prm: &HmmParams) -> Vec<usize> {
    let mut order: Vec<usize> = (0..spec.k).collect();
    order.sort_by(|&a, &b| prm.loc[a * spec.d].total_cmp(&prm.loc[b * spec.d]));
    order
}

/// Fits `train` (and scores `test`, sequences held out per dataset) on `backend`, and writes
/// the run into `dir`. `progress(n)` is called as E-steps finish.
pub fn em_to_dir(
    train: &SeqData,
    test: Option<&SeqData>,
    backend: &Backend,
    job: &EmJob,
    dir: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<EmRun> {
    let (spec, cfg) = (&job.spec, &job.config);
    let data = &train.batch;
    if let Some(t) = &job.truth {
        if t.is_empty() || (t.len() != 1 && t.len() != data.n_datasets()) {
            return Err(Error::Config {
                flag: "--truth".into(),
                message: format!(
                    "{} parameter sets for {} datasets",
                    t.len(),
                    data.n_datasets()
                ),
            });
        }
    }
    let started = std::time::Instant::now();
    let fits = hmm::fit_em(backend, spec, cfg, data, progress)?;
    let seconds = started.elapsed().as_secs_f64();
    // Align states: to the truth when given, else by their first location.
    let fits: Vec<EmFit> = fits
        .into_iter()
        .enumerate()
        .map(|(b, mut f)| {
            let perm = match &job.truth {
                Some(t) => hmm::align_params(spec, &t[b.min(t.len() - 1)], &f.params),
                None => canonical(spec, &f.params),
            };
            f.params = f.params.permuted(spec, &perm);
            f
        })
        .collect();

    // Decoding on the training data.
    let params: Vec<HmmParams> = fits.iter().map(|f| f.params.clone()).collect();
    let decoded = decode(spec, train, &params);
    let (k, states_csv, paths, posteriors) = (
        spec.k,
        decoded.states_csv,
        decoded.paths,
        decoded.posteriors,
    );

    // Held-out log likelihood in bits per observation (and, for Bernoulli emissions, the
    // gain over a constant-probability model fitted to the training responses).
    let heldout: Vec<Option<(f64, Option<f64>)>> = fits
        .iter()
        .enumerate()
        .map(|(b, f)| {
            let tb = &test?.batch;
            let mut s = hmm::FbScratch::default();
            let ll: f64 = hmm::sequences(tb, b)
                .into_iter()
                .map(|seq| hmm::log_likelihood(spec, &f.params, tb, seq, &mut s))
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

    let datasets: Vec<serde_json::Value> = fits
        .iter()
        .enumerate()
        .map(|(b, f)| {
            let mut v = params_to_json(spec, &f.params);
            if let Some(o) = v.as_object_mut() {
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
            }
            v
        })
        .collect();
    let figures = if job.plots {
        hmm_figures(
            spec,
            train,
            &fits[0].params,
            &paths,
            &posteriors,
            Some(&fits[0]),
            dir,
        )?
    } else {
        Vec::new()
    };
    let params_json = serde_json::json!({
        "figures": figures,
        "model": crate::model::Model::name(&crate::Hmm::new(*spec, crate::HmmPriors::default())?),
        "states": k,
        "data": job.source,
        "backend": backend.describe(),
        "restarts": cfg.restarts,
        "max_iters": cfg.max_iters,
        "tol": cfg.tol,
        "seed": cfg.seed,
        "seconds": seconds,
        "datasets": datasets,
    });
    super::write_text(
        &dir.join("params.json"),
        super::json_pretty(&params_json)?.as_bytes(),
    )?;
    super::write_text(&dir.join("states.csv"), states_csv.as_bytes())?;
    crate::io::npy::write_f32(
        &dir.join("posteriors.npy"),
        &[data.n_total(), k],
        &posteriors,
    )?;
    Ok(EmRun {
        fits,
        heldout,
        paths,
        posteriors,
        seconds,
        params_json,
    })
}
