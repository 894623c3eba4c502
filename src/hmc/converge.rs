//! When a run's draws are enough: the stopping rule of [`super::Config::target_ess`]. The
//! sampler keeps a copy of the constrained draws, and at batch boundaries on a schedule that
//! aims at the draw count where the target should be met, it checks every dataset with the
//! same statistics the summary reports (labels aligned as in the written draws, values
//! rounded to the f32 of `draws.npy`): bulk ESS of every parameter at least the target, and
//! the R-hat that [`nested_judges`] picks below [`RHAT_MAX`].

use crate::diag;
use crate::labels;
use crate::model::Model;

/// R-hat and nested R-hat must be below this for a posterior to count as reliable.
pub const RHAT_MAX: f64 = 1.01;

/// Whether nested R-hat, rather than the rank-normalised split R-hat, judges whether `chains`
/// chains per dataset in superchains of `superchain` have mixed: for ensembles of at least
/// [`super::adapt::WarmupEnd::MIN_CHAINS`] chains forming two or more superchains of two or
/// more chains. Many short chains are the point of an ensemble, and for them the classic
/// R-hat measures how long each chain is rather than whether the ensemble has forgotten its
/// starts; nested R-hat (Margossian et al. 2024) asks the latter of superchains that share a
/// start. Otherwise the classic R-hat judges, as in Stan and ArviZ.
pub fn nested_judges(chains: usize, superchain: usize) -> bool {
    chains >= super::adapt::WarmupEnd::MIN_CHAINS && superchain >= 2 && chains / superchain >= 2
}

/// Draws per chain before the first check (split R-hat needs a few per half).
const FIRST_CHECK: usize = 10;

/// One check of the stopping rule: the worst dataset's statistics after `draws` draws per
/// chain.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Check {
    /// Draws per chain so far.
    pub draws: usize,
    /// Smallest bulk ESS over parameters and datasets.
    pub min_ess_bulk: f64,
    /// Largest rank-normalised split R-hat (NaN with one chain).
    pub max_rhat: f64,
    /// Largest nested R-hat (NaN with fewer than two superchains).
    pub max_nested_rhat: f64,
    /// Seconds since sampling (after warmup) began.
    pub seconds: f64,
}

impl Check {
    /// Whether this check meets `target`, with nested R-hat (`nested`, see
    /// [`nested_judges`]) or the classic R-hat judging mixing (an R-hat undefined for want of
    /// chains does not count against it).
    pub fn reliable(&self, target: f64, nested: bool) -> bool {
        let rhat = if nested {
            self.max_nested_rhat
        } else {
            self.max_rhat
        };
        self.min_ess_bulk >= target && (rhat.is_nan() || rhat < RHAT_MAX)
    }
}

/// What the stopping rule did (in [`super::RunReport::target`] and `meta.json`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct TargetReport {
    /// The bulk ESS asked for, per parameter and dataset.
    pub target_ess: f64,
    /// The R-hat bound that came with it.
    pub rhat_max: f64,
    /// Whether nested R-hat judged mixing ([`nested_judges`]); else the classic R-hat.
    pub nested_rhat_judges: bool,
    /// Whether the last check met the target (sampling stopped there); false when the
    /// `draws` upper bound came first.
    pub reached: bool,
    /// Every check, in order.
    pub checks: Vec<Check>,
}

/// The copy of the draws the rule looks at, and its schedule.
pub(super) struct Tracker<'a> {
    model: &'a dyn Model,
    chains: usize,
    superchain: usize,
    np: usize,
    /// `[chain][param]` traces, f32-rounded constrained values.
    traces: Vec<Vec<f64>>,
    draws: usize,
    next_check: usize,
    /// Seed and first global chain of the random streams of generated quantities (those
    /// the stored draws use).
    stream: (u64, u32),
    pub(super) report: TargetReport,
}

impl<'a> Tracker<'a> {
    pub(super) fn new(
        model: &'a dyn Model,
        n_chains: usize,
        cfg: &super::Config,
        target: f64,
    ) -> Self {
        let np = model.param_names().len();
        Self {
            model,
            chains: cfg.chains,
            superchain: cfg.superchain_size,
            np,
            traces: vec![Vec::new(); n_chains * np],
            draws: 0,
            next_check: FIRST_CHECK,
            stream: (cfg.seed, cfg.chain_offset),
            report: TargetReport {
                target_ess: target,
                rhat_max: RHAT_MAX,
                nested_rhat_judges: nested_judges(cfg.chains, cfg.superchain_size),
                reached: false,
                checks: Vec::new(),
            },
        }
    }

    /// Adds one draw of every chain (unconstrained positions, chains x D).
    pub(super) fn record(&mut self, position: &[f64]) {
        let d = self.model.dim();
        let (seed, offset) = self.stream;
        for (c, q) in position.chunks(d).enumerate() {
            let values = self
                .model
                .constrain_draw(q, seed, offset + c as u32, self.draws as u32);
            for (p, v) in values.into_iter().enumerate() {
                self.traces[c * self.np + p].push(f64::from(v as f32));
            }
        }
        self.draws += 1;
    }

    /// Checks when the schedule says so; returns whether the target is met.
    pub(super) fn check_if_due(&mut self, seconds: f64) -> bool {
        if self.draws < self.next_check {
            return false;
        }
        let check = self.check(seconds);
        let target = self.report.target_ess;
        let met = check.reliable(target, self.report.nested_rhat_judges);
        // Aim at the draw count where the ESS should reach the target (it grows about
        // linearly), never less than a tenth more nor more than double.
        let n = self.draws;
        let aim = if check.min_ess_bulk > 0.0 && check.min_ess_bulk < target {
            (n as f64 * target / check.min_ess_bulk * 1.05).ceil() as usize
        } else {
            n + n / 4
        };
        self.next_check = aim.clamp(n + (n / 10).max(1), 2 * n);
        self.report.checks.push(check);
        self.report.reached = met;
        met
    }

    fn check(&self, seconds: f64) -> Check {
        let np = self.np;
        let mut worst = Check {
            draws: self.draws,
            min_ess_bulk: f64::INFINITY,
            max_rhat: f64::NAN,
            max_nested_rhat: f64::NAN,
            seconds,
        };
        let n_datasets = self.traces.len() / np / self.chains;
        for b in 0..n_datasets {
            let first = b * self.chains;
            let traces = &self.traces[first * np..(first + self.chains) * np];
            let means: Vec<Vec<f64>> = traces
                .chunks(np)
                .map(|ch| {
                    ch.iter()
                        .map(|t| t.iter().sum::<f64>() / t.len() as f64)
                        .collect()
                })
                .collect();
            // Copies of the relabelled chains alone, their components permuted draw by draw.
            let perms = labels::permutations(self.model, &means, self.chains).unwrap_or_default();
            let relabelled: Vec<Option<Vec<Vec<f64>>>> = traces
                .chunks(np)
                .enumerate()
                .map(|(c, ch)| {
                    let p = perms.get(c)?;
                    if p.iter().enumerate().all(|(i, &j)| i == j) {
                        return None;
                    }
                    let mut out = vec![Vec::with_capacity(self.draws); np];
                    for k in 0..self.draws {
                        let row: Vec<f64> = ch.iter().map(|t| t[k]).collect();
                        for (o, v) in out.iter_mut().zip(self.model.permute_labels(&row, p)) {
                            o.push(v);
                        }
                    }
                    Some(out)
                })
                .collect();
            for p in 0..np {
                let param: Vec<&[f64]> = traces
                    .chunks(np)
                    .zip(&relabelled)
                    .map(|(ch, r)| r.as_ref().map_or(ch[p].as_slice(), |r| r[p].as_slice()))
                    .collect();
                // A NaN from non-finite draws must not pass for a good value (f64::min and
                // max skip NaN); an R-hat undefined for want of chains stays NaN.
                let ess = diag::ess_bulk(&param);
                worst.min_ess_bulk = worst.min_ess_bulk.min(if ess.is_nan() { 0.0 } else { ess });
                let bad = |v: f64, defined: bool| {
                    if v.is_nan() && defined {
                        f64::INFINITY
                    } else {
                        v
                    }
                };
                worst.max_rhat = worst.max_rhat.max(bad(diag::rhat(&param), self.chains > 1));
                let supers = self.chains / self.superchain.max(1);
                worst.max_nested_rhat = worst
                    .max_nested_rhat
                    .max(bad(diag::nested_rhat(&param, self.superchain), supers > 1));
            }
        }
        worst
    }
}
