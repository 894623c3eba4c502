//! Simulation studies: many datasets simulated from a family's prior, each fitted by ensemble
//! HMC in batches that fit the device, reduced to per-dataset records (truth, posterior
//! summaries, ranks of the truth, diagnostics) and then to a report (simulation-based
//! calibration and parameter recovery, [`sbc`]).
//!
//! Dataset `i` is simulated from `(seed, i)` and its chains draw from the random streams of
//! global chains `i * chains ..`, whatever batch or shard it is fitted in: any subset of a
//! study can be rerun alone and gives the same records, which is what makes `--shard` and
//! `merge` exact.

pub mod design;
pub mod io;
pub mod plot;
pub mod sbc;

use std::ops::Range;
use std::sync::Arc;

use rayon::prelude::*;

use crate::backend::Backend;
use crate::data::{DataBatch, Dataset};
use crate::diag;
use crate::error::{Error, Result};
use crate::hmc::{self, Config, MemorySink};
use crate::model::Model;
use crate::rng::{host_rng, Purpose};
pub use design::{Cell, Design, Given};

/// The quantity added to the parameters in every study: the log likelihood of the dataset
/// (the fitted model's log density less its prior and Jacobian terms, without constants).
pub const LOGLIK: &str = "log_lik";

/// Central interval probabilities whose coverage the report checks.
pub const COVERAGE: [f64; 3] = [0.5, 0.8, 0.95];

/// A simulation study (see the module docs).
#[derive(Clone)]
pub struct Study {
    /// Family that simulates the truth and the data (from its prior).
    pub generator: Arc<dyn Model>,
    /// Family fitted to each dataset; the generator itself for a calibration study, or one
    /// with other priors to see that the study detects the mismatch. It must have the
    /// generator's parameters.
    pub fit: Arc<dyn Model>,
    /// Points per dataset.
    pub points: usize,
    /// Datasets in the whole study.
    pub datasets: usize,
    /// Sampler settings: `chains` per dataset, warmup, draws and the seed (of the data and
    /// of the sampler). `chain_offset` is set per batch.
    pub config: Config,
    /// Datasets fitted together in one batch (memory and device size, not results).
    pub batch: usize,
    /// Level of the uniformity tests.
    pub alpha: f64,
    /// Where the truths come from: the prior (SBC), a grid of chosen values, or the
    /// user's datasets (whose data is in [`Study::given`]).
    pub design: Design,
    /// The user's datasets and truths of a [`Design::Datasets`] study.
    pub given: Option<Arc<Given>>,
}

/// What identifies a study: everything that determines its records and report.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    /// Name of the generating family.
    pub model: String,
    /// Name of the fitted family.
    pub fit_model: String,
    /// Constrained parameters (components in canonical order for mixtures), then
    /// [`LOGLIK`].
    pub quantities: Vec<String>,
    /// Points per dataset.
    pub points: usize,
    /// Datasets in the whole study.
    pub datasets: usize,
    /// Chains per dataset.
    pub chains: usize,
    /// Warmup iterations.
    pub warmup: usize,
    /// Draws kept per chain.
    pub draws: usize,
    /// Seed of data and sampler.
    pub seed: u64,
    /// Level of the uniformity tests.
    pub alpha: f64,
    /// Where the truths come from (absent from the files of prior studies).
    #[serde(default, skip_serializing_if = "Design::is_prior")]
    pub design: Design,
    /// The metric each fit adapts (absent from the files of studies with the diagonal one,
    /// so that shards fitted with different metrics are not merged).
    #[serde(default, skip_serializing_if = "is_diag")]
    pub metric: crate::hmc::Metric,
}

fn is_diag(m: &crate::hmc::Metric) -> bool {
    *m == crate::hmc::Metric::Diag
}

/// One quantity of one dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantityRecord {
    /// True value.
    pub truth: f64,
    /// Posterior mean.
    pub mean: f64,
    /// Posterior standard deviation.
    pub sd: f64,
    /// Posterior quantiles at 2.5, 10, 25, 75, 90 and 97.5%.
    pub quantiles: [f64; 6],
    /// Thinned draws below the truth.
    pub rank: usize,
    /// Thinned draws the rank is taken among (about the bulk ESS).
    pub thinned: usize,
    /// Randomised probability integral transform `(rank + U) / (thinned + 1)`, uniform on
    /// (0, 1) exactly when the posterior is right, whatever `thinned` is.
    pub pit: f64,
    /// Rank-normalised split R-hat.
    pub r_hat: f64,
    /// Bulk effective sample size.
    pub ess_bulk: f64,
}

/// The quantiles stored in a [`QuantityRecord`]: the ends of the central intervals of
/// [`COVERAGE`], nested (interval `i` runs from quantile `2 - i` to quantile `3 + i`).
pub const QUANTILES: [f64; 6] = [0.025, 0.1, 0.25, 0.75, 0.9, 0.975];

impl QuantityRecord {
    /// Whether the central interval of probability `COVERAGE[level]` covers the truth.
    pub fn covers(&self, level: usize) -> bool {
        self.quantiles[2 - level] <= self.truth && self.truth <= self.quantiles[3 + level]
    }
}

/// Everything a study keeps of one dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetRecord {
    /// Index of the dataset in the study.
    pub index: usize,
    /// One record per quantity, in [`Settings::quantities`] order.
    pub quantities: Vec<QuantityRecord>,
    /// Divergent transitions after warmup (all chains).
    pub divergences: usize,
    /// Chains reported stuck.
    pub stuck_chains: usize,
    /// Warmup iterations its batch ran (fewer than the setting when the ensemble's warmup
    /// ended early, [`crate::hmc::adapt::WarmupEnd`]).
    pub warmup_iterations: usize,
    /// Why the dataset's fit is suspect (empty when it is not); such datasets stay in the
    /// report, counted.
    pub failed: String,
}

/// Truth (constrained) and data of dataset `index`, drawn from `(seed, index)`; the same
/// stream `gpsamp simulate` uses.
pub fn simulate_dataset(
    generator: &dyn Model,
    points: usize,
    seed: u64,
    index: usize,
) -> Result<(Vec<f64>, Dataset)> {
    let mut rng = host_rng(seed, index as u64, Purpose::Simulate);
    let (theta, data) = generator
        .try_simulate(points, &mut rng)
        .map_err(|e| Error::Invalid(format!("simulating dataset {index}: {e}")))?;
    Ok((generator.constrain(&theta), data))
}

pub use crate::labels::canonical_order;

/// `name=value` pairs joined by spaces, for messages and tables.
pub fn show_values(values: &[(String, f64)]) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Datasets per batch that keep a batch near 4 096 chains on the CPU and 65 536 on a GPU
/// (memory for the draws, and enough chains to fill a device); it does not change results.
pub fn default_batch(backend: &Backend, chains: usize) -> usize {
    let chains_per_batch = match backend {
        Backend::Cpu(_) => 4096,
        Backend::Gpu(_) => 65536,
    };
    (chains_per_batch / chains.max(1)).max(1)
}

impl Study {
    /// Checks the settings and that the fitted family matches the generator.
    pub fn validate(&self) -> Result<()> {
        self.config.validate()?;
        if self.datasets == 0 || self.points == 0 || self.batch == 0 {
            return Err(Error::config(
                "--datasets, --n, --batch",
                "must be at least 1",
            ));
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(Error::config("--alpha", "must be in (0, 1)"));
        }
        if self.generator.param_names() != self.fit.param_names() {
            return Err(Error::Invalid(format!(
                "the fitted model's parameters ({}) differ from the generator's ({})",
                self.fit.param_names().join(", "),
                self.generator.param_names().join(", ")
            )));
        }
        if self.datasets * self.config.chains > u32::MAX as usize {
            return Err(Error::Invalid("too many datasets x chains".into()));
        }
        if let Some(n) = self.design.datasets() {
            if n != self.datasets {
                return Err(Error::Invalid(format!(
                    "the design has {n} datasets but the study {}",
                    self.datasets
                )));
            }
        }
        match (&self.design, &self.given) {
            (Design::Datasets { cell_of, .. }, Some(g)) if g.data.len() == cell_of.len() => {}
            (Design::Datasets { .. }, _) => {
                return Err(Error::Invalid(
                    "a study of given datasets needs their data and truths".into(),
                ))
            }
            (Design::Grid { cells, .. }, _) => {
                let names = self.generator.param_names();
                for c in cells {
                    if let Some((bad, _)) = c.values.iter().find(|(k, _)| !names.contains(k)) {
                        return Err(Error::Config {
                            flag: "--grid".into(),
                            message: format!(
                                "{bad} is not a parameter of {} (its parameters: {})",
                                self.generator.name(),
                                names.join(", ")
                            ),
                        });
                    }
                }
                // Every cell must be simulable: a value outside its support, or a family
                // that cannot simulate at chosen values, is refused before any fit.
                for i in (0..self.datasets).step_by(self.datasets / cells.len().max(1)) {
                    self.dataset(i)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The study's identifying settings.
    pub fn settings(&self) -> Settings {
        let mut quantities = self.fit.param_names();
        quantities.push(LOGLIK.into());
        Settings {
            model: self.generator.name(),
            fit_model: self.fit.name(),
            quantities,
            points: self.points,
            datasets: self.datasets,
            chains: self.config.chains,
            warmup: self.config.warmup,
            draws: self.config.draws,
            seed: self.config.seed,
            alpha: self.alpha,
            design: self.design.clone(),
            metric: self.config.metric,
        }
    }

    /// Constrained truth and data of dataset `i`: drawn from the prior
    /// ([`simulate_dataset`]), simulated at its cell's chosen values (parameters the grid
    /// does not name drawn from the prior, from the same stream `(seed, i)`), or given.
    pub fn dataset(&self, i: usize) -> Result<(Vec<f64>, Dataset)> {
        let seed = self.config.seed;
        match &self.design {
            Design::Prior => simulate_dataset(self.generator.as_ref(), self.points, seed, i),
            Design::Grid { cells, .. } => {
                let g = self.generator.as_ref();
                let cell = &cells[self.design.cell_of(i)];
                let mut rng = host_rng(seed, i as u64, Purpose::Simulate);
                let (theta, _) = g.simulate(0, &mut rng);
                let mut truth = g.constrain(&theta);
                let names = g.param_names();
                for (name, v) in &cell.values {
                    if let Some(j) = names.iter().position(|n| n == name) {
                        truth[j] = *v;
                    }
                }
                let bad = |message: String| Error::Config {
                    flag: "--grid".into(),
                    message,
                };
                let theta = g.unconstrain(&truth).map_err(|e| {
                    bad(format!(
                        "cell {} ({}): {e}",
                        self.design.cell_of(i),
                        show_values(&cell.values)
                    ))
                })?;
                let data = g.simulate_given(&theta, cell.n, &mut rng).ok_or_else(|| {
                    bad(format!(
                        "{} cannot simulate data at chosen values",
                        g.name()
                    ))
                })?;
                Ok((truth, data))
            }
            Design::Datasets { .. } => {
                let g = self.given.as_ref().ok_or_else(|| {
                    Error::Invalid("a study of given datasets needs their data".into())
                })?;
                Ok((g.truths[i].clone(), g.data[i].clone()))
            }
        }
    }

    /// Fits datasets `range` (in batches of [`Study::batch`]) on `backend` and returns
    /// their records in index order. `progress(done, total)` is called after each batch.
    pub fn run(
        &self,
        range: Range<usize>,
        backend: &Backend,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<DatasetRecord>> {
        self.validate()?;
        if range.end > self.datasets || range.start > range.end {
            return Err(Error::Invalid(format!(
                "datasets {range:?} outside the study's 0..{}",
                self.datasets
            )));
        }
        let mut records = Vec::with_capacity(range.len());
        let total = range.len();
        let mut start = range.start;
        while start < range.end {
            let end = (start + self.batch).min(range.end);
            records.extend(self.run_batch(start..end, backend)?);
            progress(end - range.start, total);
            start = end;
        }
        Ok(records)
    }

    fn run_batch(&self, range: Range<usize>, backend: &Backend) -> Result<Vec<DatasetRecord>> {
        let seed = self.config.seed;
        let (truths, sets): (Vec<Vec<f64>>, Vec<Dataset>) = range
            .clone()
            .into_par_iter()
            .map(|i| self.dataset(i))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .unzip();
        let p = sets[0].x.len();
        let data = Arc::new(DataBatch::new(p, &sets)?);
        drop(sets);
        let chains = self.config.chains;
        let cfg = Config {
            chain_offset: (range.start * chains) as u32,
            ..self.config.clone()
        };
        let fit = self.fit.bind(&data)?.unwrap_or_else(|| self.fit.clone());
        let mut integ = crate::hmc::integrator(backend, fit.clone(), data.clone(), chains, seed)?;
        // A dataset whose chains' starts f32 gets wrong is marked failed, with the reason.
        let f32_check =
            crate::hmc::precision::check_f32(integ.as_mut(), fit.as_ref(), &data, backend, &cfg)?;
        let mut sink = MemorySink::default();
        let rep = hmc::sample(
            integ.as_mut(),
            fit.as_ref(),
            range.len(),
            &cfg,
            &mut sink,
            &mut |_, _, _, _| {},
        )
        .map_err(|e| crate::hmc::precision::explain_init(e, f32_check.as_ref(), backend))?;
        drop(integ);
        // An empty dataset: the fitted model's log density there is its prior + Jacobian.
        let empty = DataBatch::new(
            p,
            &[Dataset {
                x: vec![Vec::new(); p],
                y: Vec::new(),
            }],
        )?;
        Ok(range
            .clone()
            .into_par_iter()
            .map(|i| {
                let b = i - range.start;
                let mut r = self.record(
                    fit.as_ref(),
                    i,
                    b,
                    &truths[b],
                    &data,
                    &empty,
                    &sink,
                    &rep.datasets[b],
                );
                r.warmup_iterations = rep.warmup_iterations;
                let misses = f32_check.as_ref().map_or(0, |c| c.per_dataset[b]);
                if misses > 0 {
                    if !r.failed.is_empty() {
                        r.failed.push_str("; ");
                    }
                    r.failed.push_str(&format!(
                        "f32 rejects or misses f64 at {misses} of {chains} chain starts (the model needs f64: --backend cpu)"
                    ));
                }
                r
            })
            .collect())
    }

    /// Reduces dataset `b` of a batch (study index `i`, fitted by `fit`: the study's, bound
    /// to the batch) to its record.
    #[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
    fn record(
        &self,
        fit: &dyn Model,
        i: usize,
        b: usize,
        truth: &[f64],
        data: &DataBatch,
        empty: &DataBatch,
        sink: &MemorySink,
        rep: &hmc::DatasetReport,
    ) -> DatasetRecord {
        let groups = fit.label_groups();
        let chains = self.config.chains;
        let d = fit.dim();
        let n_draws = sink.n_draws();
        let n_q = fit.param_names().len() + 1;
        let mut scratch = Vec::new();
        let mut grad = vec![0.0; d];
        let mut loglik = |theta: &[f64], lp: Option<f64>| -> f64 {
            if let Some(l) = fit.log_lik(data, b, theta) {
                return l;
            }
            let full =
                lp.unwrap_or_else(|| fit.log_density(data, b, theta, &mut grad, &mut scratch));
            full - fit.log_density(empty, 0, theta, &mut grad, &mut scratch)
        };
        // values[q][c][t]
        let mut values = vec![vec![Vec::with_capacity(n_draws); chains]; n_q];
        let mut failed = String::new();
        for c in 0..chains {
            let gc = b * chains + c;
            for t in 0..n_draws {
                let row = (t * sink.chains + gc) * sink.d;
                let theta = &sink.draws[row..row + d];
                let mut x = fit.constrain(theta);
                if let Some(g) = &groups {
                    canonical_order(fit, g, &mut x);
                }
                x.push(loglik(theta, Some(sink.logp[t * sink.chains + gc])));
                if failed.is_empty() && x.iter().any(|v| !v.is_finite()) {
                    failed = "non-finite draws".into();
                }
                for (q, v) in x.into_iter().enumerate() {
                    values[q][c].push(v);
                }
            }
        }
        let mut truth = truth.to_vec();
        let truth_u = fit.unconstrain(&truth);
        if let Some(g) = &groups {
            canonical_order(fit, g, &mut truth);
        }
        truth.push(match truth_u {
            Ok(u) => loglik(&u, None),
            Err(_) => f64::NAN,
        });
        if !rep.stuck_chains.is_empty() {
            if !failed.is_empty() {
                failed.push_str("; ");
            }
            failed.push_str(&format!("{} stuck chain(s)", rep.stuck_chains.len()));
        }
        // One uniform per quantity for the randomised PIT, from the dataset's own stream.
        let mut rng = host_rng(self.config.seed, i as u64, Purpose::Other);
        let quantities = values
            .iter()
            .zip(&truth)
            .map(|(ch, &t)| {
                let u: f64 = rand::RngExt::random(&mut rng);
                quantity_record(ch, t, u)
            })
            .collect();
        DatasetRecord {
            index: i,
            quantities,
            divergences: rep.divergences,
            stuck_chains: rep.stuck_chains.len(),
            warmup_iterations: self.config.warmup,
            failed,
        }
    }
}

/// Summaries, rank and PIT of one quantity from its chains, given the truth and a uniform.
pub fn quantity_record(chains: &[Vec<f64>], truth: f64, u: f64) -> QuantityRecord {
    let pooled: Vec<f64> = chains.iter().flatten().copied().collect();
    let s = pooled.len();
    let mean = pooled.iter().sum::<f64>() / s as f64;
    let sd =
        (pooled.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (s as f64 - 1.0).max(1.0)).sqrt();
    let mut sorted = pooled.clone();
    sorted.sort_unstable_by(|a, b| a.total_cmp(b));
    let quantiles = QUANTILES.map(|q| diag::quantile_sorted(&sorted, q));
    let (r_hat, ess_bulk) = if chains[0].len() >= 4 {
        (diag::rhat(chains), diag::ess_bulk(chains))
    } else {
        (f64::NAN, f64::NAN)
    };
    // Thin to about the bulk ESS so the thinned draws are nearly independent.
    let stride = if ess_bulk.is_finite() && ess_bulk > 0.0 {
        ((s as f64 / ess_bulk).ceil() as usize).clamp(1, s)
    } else {
        s
    };
    let thinned: Vec<f64> = pooled.iter().step_by(stride).copied().collect();
    let rank = thinned.iter().filter(|&&v| v < truth).count();
    let pit = (rank as f64 + u) / (thinned.len() as f64 + 1.0);
    QuantityRecord {
        truth,
        mean,
        sd,
        quantiles,
        rank,
        thinned: thinned.len(),
        pit,
        r_hat,
        ess_bulk,
    }
}
