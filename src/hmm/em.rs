//! Batched EM (Baum-Welch) for HMMs: R restarts × B datasets fitted together, the best
//! restart kept per dataset.
//!
//! The E-step reduces each sequence to expected sufficient statistics ([`Stats`]): initial
//! state counts, expected transition counts, and per state and emission dimension the
//! γ-weighted moments of the augmented input x̃ = (1, x) and of y. The CPU computes them by
//! forward-backward ([`estep_cpu`], in [`super::estep`]); the GPU twin is
//! [`super::gpu::GpuEstep`]. One M-step
//! ([`mstep`], f64 on the host) serves both:
//! - Dirichlet MAP for the initial distribution and transition rows (concentration,
//!   stickiness added to the diagonal);
//! - Gaussian emissions: ridge-penalised weighted least squares for (loc, weights) given σ,
//!   then the inverse-gamma MAP of σ² given them, floored;
//! - Bernoulli emissions: one Newton step on the penalised expected log likelihood with the
//!   Böhning curvature bound (¼ x̃x̃ᵀ), which never decreases it, so EM stays monotone.
//!
//! Every M-step update maximises (or, for Bernoulli, increases) the penalised expected
//! complete-data log likelihood, so the penalised log likelihood never decreases.

#![allow(clippy::needless_range_loop)]

use rayon::prelude::*;

use super::{EmissionKind, HmmParams, HmmSpec};
use crate::data::DataBatch;
use crate::error::{Error, Result};
use crate::rng::{host_rng, Purpose};

pub use super::estep::{estep_cpu, Stats};

/// Priors of MAP-EM (and defaults that match dynamax's weak defaults in spirit).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EmPriors {
    /// Symmetric Dirichlet concentration on the initial distribution (default 1.1).
    pub initial: f64,
    /// Dirichlet concentration on each transition row (default 1.1).
    pub transition: f64,
    /// Added to the diagonal concentration of each row (default 0).
    pub stickiness: f64,
    /// Sd of the zero-mean normal prior on locations, biases and weights (default 10).
    pub coef_sd: f64,
    /// Inverse-gamma (shape, scale) prior on each variance (default (0.1, 0.01)).
    pub var_shape: f64,
    /// Scale of the inverse-gamma prior on variances.
    pub var_scale: f64,
}

impl Default for EmPriors {
    fn default() -> Self {
        Self {
            initial: 1.1,
            transition: 1.1,
            stickiness: 0.0,
            coef_sd: 10.0,
            var_shape: 0.1,
            var_scale: 0.01,
        }
    }
}

impl EmPriors {
    /// Checks every value's domain (concentrations ≥ 1 keep the MAP inside the simplex).
    pub fn validate(&self) -> Result<()> {
        let ok = self.initial >= 1.0
            && self.transition >= 1.0
            && self.stickiness >= 0.0
            && self.coef_sd > 0.0
            && self.var_shape >= 0.0
            && self.var_scale >= 0.0
            && [
                self.initial,
                self.transition,
                self.stickiness,
                self.coef_sd,
                self.var_shape,
                self.var_scale,
            ]
            .iter()
            .all(|v| v.is_finite());
        if ok {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "EM priors out of domain (concentrations >= 1, stickiness >= 0, sd > 0): {self:?}"
            )))
        }
    }

    /// Log prior density of `prm` (without constants), the objective's penalty.
    pub fn log_prior(&self, spec: &HmmSpec, prm: &HmmParams) -> f64 {
        let k = spec.k;
        let mut lp = 0.0;
        for &p in &prm.initial {
            lp += (self.initial - 1.0) * ln0(p);
        }
        for i in 0..k {
            for j in 0..k {
                let a = self.transition - 1.0 + if i == j { self.stickiness } else { 0.0 };
                lp += a * ln0(prm.transition[i * k + j]);
            }
        }
        let s2 = self.coef_sd * self.coef_sd;
        for &v in prm.loc.iter().chain(&prm.weights) {
            lp -= 0.5 * v * v / s2;
        }
        for &s in &prm.sds {
            let v = s * s;
            lp -= (self.var_shape + 1.0) * v.ln() + self.var_scale / v;
        }
        lp
    }
}

/// `a · ln p` with the convention 0 · ln 0 = 0 used by the Dirichlet terms.
fn ln0(p: f64) -> f64 {
    if p > 0.0 {
        p.ln()
    } else {
        -745.0
    }
}

/// Solves the symmetric positive-definite system `a x = b` (n × n, row-major) by Cholesky
/// (nalgebra); `None` when `a` is not positive definite.
fn solve_spd(a: &[f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    let chol = nalgebra::DMatrix::from_row_slice(n, n, a).cholesky()?;
    Some(
        chol.solve(&nalgebra::DVector::from_column_slice(b))
            .as_slice()
            .to_vec(),
    )
}

/// Dirichlet MAP of a probability vector from counts and concentrations (each ≥ 1).
fn dirichlet_map(counts: &[f64], conc: impl Fn(usize) -> f64, out: &mut [f64]) {
    let mut s = 0.0;
    for (i, (o, &c)) in out.iter_mut().zip(counts).enumerate() {
        *o = (c + conc(i) - 1.0).max(0.0);
        s += *o;
    }
    if s > 0.0 {
        out.iter_mut().for_each(|o| *o /= s);
    } else {
        let u = 1.0 / out.len() as f64;
        out.iter_mut().for_each(|o| *o = u);
    }
}

/// The M-step: new parameters from statistics taken at `prm` (see the module docs).
/// `var_floor` bounds every variance from below.
pub fn mstep(
    spec: &HmmSpec,
    priors: &EmPriors,
    var_floor: f64,
    st: &Stats,
    prm: &HmmParams,
) -> HmmParams {
    let (k, d_dim, p) = (spec.k, spec.d, spec.p);
    let q = p + 1;
    let mut out = prm.clone();
    dirichlet_map(&st.init, |_| priors.initial, &mut out.initial);
    for i in 0..k {
        dirichlet_map(
            &st.trans[i * k..(i + 1) * k],
            |j| priors.transition + if i == j { priors.stickiness } else { 0.0 },
            &mut out.transition[i * k..(i + 1) * k],
        );
    }
    let prec = 1.0 / (priors.coef_sd * priors.coef_sd);
    let mut a = vec![0.0; q * q];
    let mut rhs = vec![0.0; q];
    for kd in 0..k * d_dim {
        let xx = &st.xx[kd * q * q..(kd + 1) * q * q];
        let xy = &st.xy[kd * q..(kd + 1) * q];
        let w_old: Vec<f64> = std::iter::once(prm.loc[kd])
            .chain(prm.weights[kd * p..(kd + 1) * p].iter().copied())
            .collect();
        let w_new = match spec.kind {
            EmissionKind::Gaussian => {
                // (X'WX + σ² Λ) w = X'Wy.
                let v = prm.sds[kd] * prm.sds[kd];
                a.copy_from_slice(xx);
                for i in 0..q {
                    a[i * q + i] += v * prec;
                }
                rhs.copy_from_slice(xy);
                solve_spd(&a, &rhs, q)
            }
            EmissionKind::Bernoulli => {
                // w + (¼ X'WX + Λ)⁻¹ (g − Λ w): an MM step that never lowers the objective.
                for i in 0..q * q {
                    a[i] = 0.25 * xx[i];
                }
                for i in 0..q {
                    a[i * q + i] += prec;
                    rhs[i] = xy[i] - prec * w_old[i];
                }
                solve_spd(&a, &rhs, q).map(|s| s.iter().zip(&w_old).map(|(s, w)| w + s).collect())
            }
        };
        let w = match w_new {
            Some(w) if w.iter().all(|v| v.is_finite()) => w,
            _ => w_old,
        };
        out.loc[kd] = w[0];
        out.weights[kd * p..(kd + 1) * p].copy_from_slice(&w[1..]);
        if spec.kind == EmissionKind::Gaussian {
            // Expected residual sum of squares at the new w.
            let mut rss = st.yy[kd];
            for i in 0..q {
                rss -= 2.0 * w[i] * xy[i];
                for j in 0..q {
                    rss += w[i] * xx[i * q + j] * w[j];
                }
            }
            let n_k = xx[0];
            let v = (rss.max(0.0) + 2.0 * priors.var_scale) / (n_k + 2.0 * priors.var_shape + 2.0);
            out.sds[kd] = if v.is_finite() {
                v.max(var_floor).sqrt()
            } else {
                prm.sds[kd]
            };
        }
    }
    out
}

/// How EM starts each restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// k-means++ on the emissions (Gaussian emissions; GLM weights start at 0).
    Kmeans,
    /// Random data points as locations, random GLM weights.
    Random,
}

/// EM settings.
#[derive(Clone, Debug, PartialEq)]
pub struct EmConfig {
    /// Restarts per dataset (R).
    pub restarts: usize,
    /// Iteration cap.
    pub max_iters: usize,
    /// Stop when the penalised log likelihood rises by less than `tol` per observation.
    pub tol: f64,
    /// Lower bound on every variance.
    pub var_floor: f64,
    /// Priors of MAP-EM.
    pub priors: EmPriors,
    /// Initialisation.
    pub init: Init,
    /// Seed: restart r of dataset b starts from stream (seed, b · R + r).
    pub seed: u64,
}

impl Default for EmConfig {
    fn default() -> Self {
        Self {
            restarts: 10,
            max_iters: 200,
            tol: 1e-6,
            var_floor: 1e-4,
            priors: EmPriors::default(),
            init: Init::Kmeans,
            seed: 0,
        }
    }
}

impl EmConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        self.priors.validate()?;
        if self.restarts < 1 || self.max_iters < 1 {
            return Err(Error::Invalid(
                "EM needs at least one restart and one iteration".into(),
            ));
        }
        if !(self.tol >= 0.0 && self.var_floor > 0.0 && self.var_floor.is_finite()) {
            return Err(Error::Invalid(
                "EM tolerance must be >= 0 and the variance floor > 0".into(),
            ));
        }
        Ok(())
    }
}

/// The result of EM on one dataset (its best restart).
#[derive(Clone, Debug)]
pub struct EmFit {
    /// Fitted parameters.
    pub params: HmmParams,
    /// Log likelihood at the fitted parameters.
    pub log_likelihood: f64,
    /// Penalised log likelihood (log likelihood + log prior without constants) per iteration.
    pub trace: Vec<f64>,
    /// Which restart won.
    pub restart: usize,
    /// Final penalised log likelihood of every restart.
    pub restart_objectives: Vec<f64>,
    /// Penalised log likelihood per iteration of every restart (the winner's is `trace`).
    pub restart_traces: Vec<Vec<f64>>,
    /// Whether the winner met the tolerance before the cap.
    pub converged: bool,
}

/// Checks that a dataset can support `spec`: at least K observations.
pub fn check_supports(spec: &HmmSpec, data: &DataBatch) -> Result<()> {
    spec.check_data(data)?;
    for b in 0..data.n_datasets() {
        let n = data.range(b).len();
        if n < spec.k {
            return Err(Error::Invalid(format!(
                "dataset {b} has {n} observations, too few for K = {} states",
                spec.k
            )));
        }
    }
    Ok(())
}

/// Initial parameters of restart `r` of dataset `b`.
pub fn initial_params(
    spec: &HmmSpec,
    cfg: &EmConfig,
    data: &DataBatch,
    b: usize,
    r: usize,
) -> HmmParams {
    use rand::RngExt;
    use rand_distr::{Distribution, StandardNormal};
    let (k, d_dim, p) = (spec.k, spec.d, spec.p);
    let mut rng = host_rng(cfg.seed, (b * cfg.restarts + r) as u64, Purpose::Init);
    let range = data.range(b);
    let n = range.len();
    let ys: Vec<Vec<f64>> = range
        .clone()
        .map(|i| (0..d_dim).map(|d| spec.emission(data, d, i)).collect())
        .collect();
    // Spread of each emission dimension.
    let mean: Vec<f64> = (0..d_dim)
        .map(|d| ys.iter().map(|y| y[d]).sum::<f64>() / n as f64)
        .collect();
    let sd: Vec<f64> = (0..d_dim)
        .map(|d| {
            (ys.iter().map(|y| (y[d] - mean[d]).powi(2)).sum::<f64>() / n as f64)
                .sqrt()
                .max(cfg.var_floor.sqrt())
        })
        .collect();
    let mut loc = vec![0.0; k * d_dim];
    let mut weights = vec![0.0; k * d_dim * p];
    let mut sds = vec![0.0; if spec.has_sds() { k * d_dim } else { 0 }];
    match (spec.kind, cfg.init) {
        (EmissionKind::Gaussian, Init::Kmeans) => {
            let (centres, within) = kmeans(&ys, k, &mut rng);
            for s in 0..k {
                for d in 0..d_dim {
                    loc[s * d_dim + d] = centres[s][d];
                    sds[s * d_dim + d] = within[s][d].max(0.1 * sd[d]).max(cfg.var_floor.sqrt());
                }
            }
        }
        (EmissionKind::Gaussian, Init::Random) => {
            for s in 0..k {
                let i = rng.random_range(0..n);
                for d in 0..d_dim {
                    loc[s * d_dim + d] = ys[i][d];
                    sds[s * d_dim + d] = sd[d];
                }
                for w in &mut weights[s * d_dim * p..(s + 1) * d_dim * p] {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    *w = 0.5 * z;
                }
            }
        }
        (EmissionKind::Bernoulli, _) => {
            for v in loc.iter_mut().chain(weights.iter_mut()) {
                let z: f64 = StandardNormal.sample(&mut rng);
                *v = z;
            }
        }
    }
    // Sticky transitions with a little noise, uniform initial distribution.
    let mut transition = vec![0.0; k * k];
    for i in 0..k {
        let row = &mut transition[i * k..(i + 1) * k];
        for (j, v) in row.iter_mut().enumerate() {
            *v = if i == j { 0.8 * k as f64 } else { 0.2 } + 0.1 * rng.random::<f64>();
        }
        let s: f64 = row.iter().sum();
        row.iter_mut().for_each(|v| *v /= s);
    }
    HmmParams {
        initial: vec![1.0 / k as f64; k],
        transition,
        loc,
        weights,
        sds,
    }
}

/// k-means++ then Lloyd iterations; returns the centres and the within-cluster sds.
fn kmeans(
    ys: &[Vec<f64>],
    k: usize,
    rng: &mut rand::rngs::StdRng,
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    use rand::RngExt;
    let d = ys[0].len();
    let dist = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>();
    let mut centres = vec![ys[rng.random_range(0..ys.len())].clone()];
    let mut best = vec![f64::INFINITY; ys.len()];
    while centres.len() < k {
        let c = centres.last().expect("one centre");
        for (b, y) in best.iter_mut().zip(ys) {
            *b = b.min(dist(y, c));
        }
        let total: f64 = best.iter().sum();
        let pick = if total > 0.0 {
            let mut u = rng.random::<f64>() * total;
            let mut i = 0;
            while i + 1 < ys.len() && u >= best[i] {
                u -= best[i];
                i += 1;
            }
            i
        } else {
            rng.random_range(0..ys.len())
        };
        centres.push(ys[pick].clone());
    }
    let mut assign = vec![0usize; ys.len()];
    for _ in 0..50 {
        let mut moved = false;
        for (a, y) in assign.iter_mut().zip(ys) {
            let (mut bi, mut bd) = (0, f64::INFINITY);
            for (ci, c) in centres.iter().enumerate() {
                let dd = dist(y, c);
                if dd < bd {
                    bd = dd;
                    bi = ci;
                }
            }
            moved |= *a != bi;
            *a = bi;
        }
        let mut sum = vec![vec![0.0; d]; k];
        let mut cnt = vec![0usize; k];
        for (&a, y) in assign.iter().zip(ys) {
            cnt[a] += 1;
            sum[a].iter_mut().zip(y).for_each(|(s, v)| *s += v);
        }
        for c in 0..k {
            if cnt[c] > 0 {
                centres[c] = sum[c].iter().map(|s| s / cnt[c] as f64).collect();
            }
        }
        if !moved {
            break;
        }
    }
    // Sort the centres by their first coordinate so restarts agree on a labelling.
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| centres[a][0].total_cmp(&centres[b][0]));
    let mut within = vec![vec![0.0; d]; k];
    let mut cnt = vec![0usize; k];
    for (&a, y) in assign.iter().zip(ys) {
        cnt[a] += 1;
        for dd in 0..d {
            within[a][dd] += (y[dd] - centres[a][dd]).powi(2);
        }
    }
    let within: Vec<Vec<f64>> = (0..k)
        .map(|c| {
            within[c]
                .iter()
                .map(|s| (s / cnt[c].max(1) as f64).sqrt())
                .collect()
        })
        .collect();
    (
        order.iter().map(|&c| centres[c].clone()).collect(),
        order.iter().map(|&c| within[c].clone()).collect(),
    )
}

/// One (restart, dataset) job's state during EM.
#[derive(Clone, Debug)]
pub struct Job {
    /// Current parameters.
    pub params: HmmParams,
    /// Penalised log likelihood per iteration (at the parameters the E-step saw).
    pub trace: Vec<f64>,
    /// Log likelihood at the last E-step.
    pub loglik: f64,
    /// Whether the tolerance was met.
    pub done: bool,
}

impl Job {
    /// Records the log likelihood and objective of the current parameters from statistics
    /// taken at them, without an M-step (the final parameters after the iteration cap).
    pub fn score(&mut self, spec: &HmmSpec, cfg: &EmConfig, st: &Stats) {
        self.loglik = st.loglik;
        self.trace
            .push(st.loglik + cfg.priors.log_prior(spec, &self.params));
    }

    /// Records an E-step's statistics (taken at `self.params`) and, unless converged,
    /// moves to the M-step's parameters. `n_obs` scales the tolerance.
    pub fn advance(&mut self, spec: &HmmSpec, cfg: &EmConfig, st: &Stats, n_obs: usize) {
        let obj = st.loglik + cfg.priors.log_prior(spec, &self.params);
        self.loglik = st.loglik;
        if let Some(&last) = self.trace.last() {
            if (obj - last).abs() <= cfg.tol * n_obs as f64 || !obj.is_finite() {
                self.trace.push(obj);
                self.done = true;
                return;
            }
        }
        self.trace.push(obj);
        self.params = mstep(spec, &cfg.priors, cfg.var_floor, st, &self.params);
    }
}

/// Picks the best restart of each dataset from finished jobs (index b · R + r).
pub fn best_fits(cfg: &EmConfig, jobs: Vec<Job>, n_datasets: usize) -> Vec<EmFit> {
    let r = cfg.restarts;
    let mut jobs = jobs.into_iter();
    (0..n_datasets)
        .map(|_| {
            let mine: Vec<Job> = jobs.by_ref().take(r).collect();
            let objectives: Vec<f64> = mine
                .iter()
                .map(|j| j.trace.last().copied().unwrap_or(f64::NEG_INFINITY))
                .collect();
            let best = (0..r)
                .max_by(|&a, &b| objectives[a].total_cmp(&objectives[b]))
                .expect("at least one restart");
            let restart_traces = mine.iter().map(|j| j.trace.clone()).collect();
            let j = mine[best].clone();
            EmFit {
                log_likelihood: j.loglik,
                converged: j.done,
                params: j.params,
                trace: j.trace,
                restart: best,
                restart_objectives: objectives,
                restart_traces,
            }
        })
        .collect()
}

/// Starting jobs for every (dataset, restart) pair.
pub fn start_jobs(spec: &HmmSpec, cfg: &EmConfig, data: &DataBatch) -> Result<Vec<Job>> {
    cfg.validate()?;
    check_supports(spec, data)?;
    Ok((0..data.n_datasets())
        .flat_map(|b| (0..cfg.restarts).map(move |r| (b, r)))
        .map(|(b, r)| Job {
            params: initial_params(spec, cfg, data, b, r),
            trace: Vec::new(),
            loglik: f64::NEG_INFINITY,
            done: false,
        })
        .collect())
}

/// EM on the CPU: every (dataset, restart) job in parallel, each run to its tolerance or the
/// cap; the best restart per dataset. The result does not depend on the thread count.
pub fn fit_cpu(spec: &HmmSpec, cfg: &EmConfig, data: &DataBatch) -> Result<Vec<EmFit>> {
    fit_cpu_with_progress(spec, cfg, data, &|_| {})
}

/// [`fit_cpu`], calling `progress(n)` after every `n` E-steps (for a progress bar; at most
/// jobs × (max_iters + 1) in all).
pub fn fit_cpu_with_progress(
    spec: &HmmSpec,
    cfg: &EmConfig,
    data: &DataBatch,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<EmFit>> {
    let jobs = start_jobs(spec, cfg, data)?;
    let jobs: Vec<Job> = jobs
        .into_par_iter()
        .enumerate()
        .map(|(i, mut job)| {
            let b = i / cfg.restarts;
            let n_obs = data.range(b).len();
            for _ in 0..cfg.max_iters {
                if job.done {
                    break;
                }
                let st = estep_cpu(spec, &job.params, data, b);
                job.advance(spec, cfg, &st, n_obs);
                progress(1);
            }
            // The parameters after the last M-step were not scored: score them.
            if !job.done {
                job.score(spec, cfg, &estep_cpu(spec, &job.params, data, b));
            }
            job
        })
        .collect();
    Ok(best_fits(cfg, jobs, data.n_datasets()))
}

/// EM with any batched E-step: `estep(params)` returns the statistics of every job (index
/// b · R + r) at its parameters. Jobs advance in lockstep until each meets the tolerance or
/// the cap; finished jobs keep their parameters, so the result equals [`fit_cpu`]'s.
pub fn fit_with(
    spec: &HmmSpec,
    cfg: &EmConfig,
    data: &DataBatch,
    mut estep: impl FnMut(&[HmmParams]) -> Result<Vec<Stats>>,
    progress: &dyn Fn(u64),
) -> Result<Vec<EmFit>> {
    let mut jobs = start_jobs(spec, cfg, data)?;
    let n_obs: Vec<usize> = (0..data.n_datasets())
        .map(|b| data.range(b).len())
        .collect();
    for _ in 0..cfg.max_iters {
        if jobs.iter().all(|j| j.done) {
            break;
        }
        let params: Vec<HmmParams> = jobs.iter().map(|j| j.params.clone()).collect();
        let stats = estep(&params)?;
        let mut active = 0;
        for (i, (job, st)) in jobs.iter_mut().zip(&stats).enumerate() {
            if !job.done {
                job.advance(spec, cfg, st, n_obs[i / cfg.restarts]);
                active += 1;
            }
        }
        progress(active);
    }
    if jobs.iter().any(|j| !j.done) {
        let params: Vec<HmmParams> = jobs.iter().map(|j| j.params.clone()).collect();
        let stats = estep(&params)?;
        for (job, st) in jobs.iter_mut().zip(&stats) {
            if !job.done {
                job.score(spec, cfg, st);
            }
        }
    }
    Ok(best_fits(cfg, jobs, data.n_datasets()))
}
