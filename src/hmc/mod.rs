//! Ensemble HMC: many chains per dataset adapted together from cross-chain statistics, all
//! chains running the same number of leapfrog steps in an iteration (lockstep on the GPU).
//!
//! The [`Integrator`] trait runs one transition for every chain of every dataset; the CPU
//! ([`cpu::CpuIntegrator`]) and GPU ([`gpu::GpuIntegrator`]) implementations draw the same
//! Philox momenta and accept uniforms. [`sample`] drives warmup (dual averaging of the step
//! size on the harmonic-mean acceptance, ChEES trajectory length with Halton jitter, the
//! diagonal inverse mass matrix from the windowed within-chain variance averaged over all
//! chains of a dataset) and then frozen sampling, handing draws to a [`DrawSink`].

pub mod adapt;
pub mod cpu;
pub mod gpu;
pub mod sink;

use crate::error::{Error, Result};
use crate::math::LOGP_NEG_INF;
use crate::model::Model;
use crate::rng::{Purpose, Stream};
use adapt::{halton, mass_windows, ChEES, DualAveraging, Welford};

/// Leapfrog steps allowed before the first mass-matrix estimate: with the identity metric
/// the step size must suit the narrowest direction, and long trajectories at that size cost
/// more than they teach.
const PRE_METRIC_MAX_STEPS: u32 = 16;

pub use cpu::CpuIntegrator;
pub use gpu::GpuIntegrator;

/// An energy error above this is a divergence (Stan's default).
pub const MAX_ENERGY_ERROR: f64 = 1000.0;

/// Integrator settings of one dataset for one transition.
#[derive(Clone, Debug, PartialEq)]
pub struct Tuning {
    /// Leapfrog step size.
    pub step_size: f64,
    /// Leapfrog steps.
    pub n_steps: u32,
    /// Diagonal inverse mass matrix (the posterior variance estimate).
    pub inv_mass: Vec<f64>,
}

/// What one transition returns for all chains (chain-major, D per chain).
#[derive(Clone, Debug, Default)]
pub struct StepOut {
    /// Positions after the accept step.
    pub position: Vec<f64>,
    /// Log densities at `position` (without the model's constant).
    pub logp: Vec<f64>,
    /// End points of the trajectories (accepted or not).
    pub proposal: Vec<f64>,
    /// Velocities (inverse mass times momentum) at the end points.
    pub velocity: Vec<f64>,
    /// Metropolis acceptance probabilities (0 when divergent).
    pub accept_prob: Vec<f64>,
    /// Divergent transitions.
    pub divergent: Vec<bool>,
    /// Hamiltonian at the returned state.
    pub energy: Vec<f64>,
}

impl StepOut {
    /// Sizes the buffers for `n` chains of dimension `d`.
    pub fn resize(&mut self, n: usize, d: usize) {
        self.position.resize(n * d, 0.0);
        self.logp.resize(n, 0.0);
        self.proposal.resize(n * d, 0.0);
        self.velocity.resize(n * d, 0.0);
        self.accept_prob.resize(n, 0.0);
        self.divergent.resize(n, false);
        self.energy.resize(n, 0.0);
    }
}

/// One HMC transition for every chain of every dataset.
pub trait Integrator {
    /// Unconstrained dimension.
    fn dim(&self) -> usize;
    /// Chains over all datasets.
    fn n_chains(&self) -> usize;
    /// Sets positions (chains x D) and returns their log densities and gradients.
    fn set_positions(&mut self, q: &[f64], logp: &mut [f64], grad: &mut [f64]) -> Result<()>;
    /// Runs transition `iter` with per-dataset `tuning` and fills `out`.
    fn step(&mut self, iter: u32, tuning: &[Tuning], out: &mut StepOut) -> Result<()>;

    /// Offsets the chain index of every random stream, so chain `c` draws what chain
    /// `offset + c` of a larger batch would (see [`Config::chain_offset`]).
    fn set_chain_offset(&mut self, offset: u32);

    /// The most leapfrog steps one transition can run correctly, when the device limits it;
    /// the sampler never asks for more (see [`crate::hmc::gpu::GpuIntegrator`] on software
    /// adapters).
    fn step_cap(&self) -> Option<u32> {
        None
    }

    /// How many transitions [`Integrator::run_batch`] handles per round trip (the GPU
    /// submits them together and reads their outputs back at once).
    fn batch_len(&self) -> usize {
        1
    }

    /// Transitions `first_iter..first_iter + steps.len()` with the step sizes and metrics of
    /// `tuning` and `steps[r][b]` leapfrog steps for dataset `b` in transition `r`; fills
    /// `outs[r]`.
    fn run_batch(
        &mut self,
        first_iter: u32,
        tuning: &[Tuning],
        steps: &[Vec<u32>],
        outs: &mut [StepOut],
    ) -> Result<()> {
        let mut t = tuning.to_vec();
        for (r, row) in steps.iter().enumerate() {
            for (tu, &s) in t.iter_mut().zip(row) {
                tu.n_steps = s;
            }
            self.step(first_iter + r as u32, &t, &mut outs[r])?;
        }
        Ok(())
    }
}

/// Sampler settings.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Config {
    /// Chains per dataset.
    pub chains: usize,
    /// Warmup iterations.
    pub warmup: usize,
    /// Draws kept per chain (after thinning).
    pub draws: usize,
    /// Keep every `thin`-th iteration.
    pub thin: usize,
    /// Seed of every random number.
    pub seed: u64,
    /// Target of the harmonic-mean acceptance probability; `None` takes the model's
    /// [`Model::target_accept`] (0.651, the optimum for a fixed trajectory length, unless
    /// the family asks for more).
    pub target_accept: Option<f64>,
    /// Initial positions are uniform in (-r, r) on the unconstrained scale.
    pub init_radius: f64,
    /// Chains per superchain (chains of a superchain share their start; nested R-hat).
    pub superchain_size: usize,
    /// Cap on leapfrog steps per transition.
    pub max_steps: u32,
    /// Initial step size.
    pub step_size: f64,
    /// Keep T at least (pi/2) sqrt(lambda_max) of the whitened ensemble covariance.
    pub whitened_floor: bool,
    /// Adam ascent steps on the log density from each superchain's random start before
    /// warmup (0: start HMC at the random points).
    pub init_steps: usize,
    /// Global index of this run's first chain in the random streams: a batch holding
    /// datasets `k..` of a larger set passes `k * chains`, and each dataset then gets the
    /// draws it would get in any other batch (how studies shard exactly).
    pub chain_offset: u32,
    /// Per dataset of the batch, the unconstrained point the random starts are centred on
    /// (e.g. an EM fit of an HMM, so that chains do not start in a minor mode); empty, or
    /// missing for a dataset: the origin.
    #[serde(skip)]
    pub init_centers: Vec<Vec<f64>>,
    /// Set from elsewhere (a signal handler, another thread) to stop the run: during warmup
    /// [`sample`] returns [`Error::Interrupted`]; during sampling it stops after the current
    /// batch and returns the draws so far ([`RunReport::draws_completed`]).
    #[serde(skip)]
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            chains: 4,
            warmup: 1000,
            draws: 1000,
            thin: 1,
            seed: 0,
            target_accept: None,
            init_radius: 2.0,
            superchain_size: 1,
            max_steps: 1024,
            step_size: 0.1,
            whitened_floor: true,
            init_steps: 200,
            chain_offset: 0,
            init_centers: Vec::new(),
            cancel: None,
        }
    }
}

impl Config {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Invalid(m.into()));
        if self.chains == 0 {
            return bad("--chains must be at least 1");
        }
        if self.draws == 0 {
            return bad("--draws must be at least 1");
        }
        if self.thin == 0 {
            return bad("--thin must be at least 1");
        }
        if self.target_accept.is_some_and(|t| !(t > 0.0 && t < 1.0)) {
            return bad("--target-accept must be in (0, 1)");
        }
        if !(self.chain_offset as usize).is_multiple_of(self.chains) {
            return bad("chain_offset must be a multiple of --chains");
        }
        if self.superchain_size == 0 || !self.chains.is_multiple_of(self.superchain_size) {
            return bad("--superchain-size must divide --chains");
        }
        if !(self.init_radius > 0.0 && self.step_size > 0.0) || self.max_steps == 0 {
            return bad("init radius, step size and max steps must be positive");
        }
        Ok(())
    }
}

/// Receives draws as sampling produces them.
pub trait DrawSink {
    /// Draw `index` (0-based, after thinning) of every chain: unconstrained positions
    /// (chains x D), log densities, and per-chain sampler statistics.
    fn record(&mut self, index: usize, out: &StepOut, steps: &[u32]) -> Result<()>;
}

/// Per-dataset outcome of adaptation and sampling.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DatasetReport {
    /// Step size after warmup.
    pub step_size: f64,
    /// Trajectory length after warmup.
    pub trajectory_length: f64,
    /// Inverse mass matrix after warmup.
    pub inv_mass: Vec<f64>,
    /// Divergent transitions during sampling (all chains).
    pub divergences: usize,
    /// Mean acceptance probability during sampling.
    pub mean_accept: f64,
    /// Mean leapfrog steps per transition during sampling.
    pub mean_steps: f64,
    /// Chains (index within the dataset) that look stuck: a mean log density far below the
    /// ensemble's (more than max(10, 5 robust sd) under the median), or divergent in more
    /// than half of their transitions. Reported rather than hidden in R-hat.
    pub stuck_chains: Vec<usize>,
}

/// Chains whose mean log density sits far below the median of their dataset's chains, or
/// that diverged in more than half of their transitions.
pub fn stuck_chains(mean_lp: &[f64], divergence_rate: &[f64]) -> Vec<usize> {
    let mut s: Vec<f64> = mean_lp.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let med = s[s.len() / 2];
    let mut dev: Vec<f64> = s.iter().map(|v| (v - med).abs()).collect();
    dev.sort_by(|a, b| a.total_cmp(b));
    let mad = 1.4826 * dev[dev.len() / 2];
    let cut = med - (5.0 * mad).max(10.0);
    (0..mean_lp.len())
        .filter(|&c| mean_lp[c] < cut || divergence_rate[c] > 0.5)
        .collect()
}

/// What a run did, beyond the draws.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunReport {
    /// One report per dataset.
    pub datasets: Vec<DatasetReport>,
    /// Gradient evaluations over all chains (warmup and sampling).
    pub gradient_evals: u64,
    /// Transitions run: one integrator call each, one fused dispatch each on the GPU.
    pub transitions: u64,
    /// Batch density evaluations outside transitions (initialisation, relabelling): one
    /// dispatch each on the GPU.
    pub density_calls: u64,
    /// Seconds of warmup and of sampling.
    pub seconds: (f64, f64),
    /// Draws per chain handed to the sink: `draws`, or fewer when the run was cancelled.
    pub draws_completed: usize,
    /// Whether [`Config::cancel`] stopped sampling early.
    pub interrupted: bool,
}

/// Progress callback: (phase, iteration done, iterations in phase, divergences so far).
pub type Progress<'a> = &'a mut dyn FnMut(&str, usize, usize, usize);

struct DatasetState {
    da: DualAveraging,
    chees: ChEES,
    /// One accumulator per chain: the mass matrix uses the mean within-chain variance, so
    /// chains sitting in different modes (label switching) do not inflate it.
    mass: Vec<Welford>,
    inv_mass: Vec<f64>,
    metric_adapted: bool,
    divergences: usize,
    accept_sum: f64,
    steps_sum: f64,
}

/// Harmonic mean of the non-divergent chains' acceptance probabilities (0 when none, or when
/// one of them is 0). With 100 or more chains the lowest 1% are left out: one chain's
/// occasional near-zero acceptance would otherwise set the step size for thousands.
pub fn harmonic_accept(a: &[f64], div: &[bool]) -> f64 {
    let mut v: Vec<f64> = a
        .iter()
        .zip(div)
        .filter(|(_, &d)| !d)
        .map(|(&p, _)| p)
        .collect();
    if v.is_empty() {
        return 0.0;
    }
    let trim = if v.len() >= 100 { v.len() / 100 } else { 0 };
    if trim > 0 {
        v.sort_by(|x, y| x.total_cmp(y));
        v.drain(..trim);
    }
    let s: f64 = v.iter().map(|p| 1.0 / p).sum();
    // Divergent chains count as accepting nothing, in proportion: leaving them out would let
    // a small ensemble keep a step size that diverges, and a harmonic mean over a zero would
    // let one chain collapse the step size of thousands.
    let h = v.len() as f64 / s * (v.len() + trim) as f64 / a.len() as f64;
    if h.is_finite() {
        h
    } else {
        0.0
    }
}

/// Largest eigenvalue of the covariance of rows `x` (n x d), by power iteration.
fn lambda_max(x: &[f64], n: usize, d: usize) -> f64 {
    if n < 2 {
        return 0.0;
    }
    let mut mean = vec![0.0; d];
    for r in x.chunks(d) {
        mean.iter_mut().zip(r).for_each(|(m, v)| *m += v / n as f64);
    }
    let mut v = vec![1.0 / (d as f64).sqrt(); d];
    let mut lam = 0.0;
    for _ in 0..30 {
        let mut w = vec![0.0; d];
        for r in x.chunks(d) {
            let dot: f64 = r
                .iter()
                .zip(&mean)
                .zip(&v)
                .map(|((a, m), b)| (a - m) * b)
                .sum();
            w.iter_mut()
                .zip(r)
                .zip(&mean)
                .for_each(|((wi, a), m)| *wi += dot * (a - m));
        }
        let norm = w.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm == 0.0 || !norm.is_finite() {
            return 0.0;
        }
        lam = norm / (n - 1) as f64;
        v = w.into_iter().map(|a| a / norm).collect();
    }
    lam
}

/// The ChEES gradient in log T for one dataset's chains (whitened by `inv_mass`).
#[allow(clippy::too_many_arguments)]
fn chees_gradient(
    before: &[f64],
    after: &[f64],
    vel: &[f64],
    accept: &[f64],
    div: &[bool],
    inv_mass: &[f64],
    jitter: f64,
    t: f64,
) -> f64 {
    let d = inv_mass.len();
    let n = accept.len();
    let sd: Vec<f64> = inv_mass.iter().map(|m| m.sqrt()).collect();
    let mut m0 = vec![0.0; d];
    let mut m1 = vec![0.0; d];
    for c in 0..n {
        for i in 0..d {
            m0[i] += before[c * d + i] / sd[i] / n as f64;
            m1[i] += after[c * d + i] / sd[i] / n as f64;
        }
    }
    let (mut num, mut den) = (0.0, 0.0);
    for c in 0..n {
        if div[c] {
            continue;
        }
        let (mut s0, mut s1, mut xp) = (0.0, 0.0, 0.0);
        for i in 0..d {
            let x0 = before[c * d + i] / sd[i] - m0[i];
            let x1 = after[c * d + i] / sd[i] - m1[i];
            s0 += x0 * x0;
            s1 += x1 * x1;
            xp += x1 * vel[c * d + i] / sd[i];
        }
        let g = jitter * t * (s1 - s0) * xp;
        if g.is_finite() {
            num += accept[c] * g;
            den += accept[c];
        }
    }
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

/// Initial positions: uniform in (-r, r) around the dataset's [`Config::init_centers`] entry
/// (else the origin), shared by the chains of a superchain. Chain `c` of dataset `b` is
/// chain `b * chains + c` of the batch; `attempt` redraws a failed start.
pub fn initial_position(cfg: &Config, global_chain: usize, attempt: u32, d: usize) -> Vec<f64> {
    let center = cfg
        .init_centers
        .get(global_chain / cfg.chains)
        .filter(|c| c.len() == d);
    let global_chain = global_chain + cfg.chain_offset as usize;
    let c = global_chain % cfg.chains;
    let lead = global_chain - c + (c / cfg.superchain_size) * cfg.superchain_size;
    let s = Stream::new(cfg.seed, lead as u32, attempt, Purpose::Init);
    (0..d)
        .map(|i| center.map_or(0.0, |c| c[i]) + cfg.init_radius * (2.0 * s.uniform(i as u32) - 1.0))
        .collect()
}

/// Matches each chain's labels to its dataset's ensemble from the chains' window means
/// (unconstrained) and permutes the positions of relabelled chains; true when any changed.
fn align_labels(
    model: &dyn Model,
    cfg: &Config,
    window_means: &[f64],
    position: &mut [f64],
) -> Result<bool> {
    if model.label_groups().is_none() {
        return Ok(false);
    }
    let d = model.dim();
    let means: Vec<Vec<f64>> = window_means.chunks(d).map(|m| model.constrain(m)).collect();
    let Some(perms) = sink::label_permutations(model, &means, cfg.chains) else {
        return Ok(false);
    };
    let mut changed = false;
    for (c, p) in perms.iter().enumerate() {
        if p.iter().enumerate().all(|(i, &j)| i == j) {
            continue;
        }
        let q = &mut position[c * d..(c + 1) * d];
        let x = model.permute_labels(&model.constrain(q), p);
        // Weights that underflowed to 0 cannot be mapped back; leave such a chain alone.
        if let Ok(u) = model.unconstrain(&x) {
            q.copy_from_slice(&u);
            changed = true;
        }
    }
    Ok(changed)
}

/// Starting points: uniform in (-r, r) per superchain (redrawn where the log density is
/// -inf), then `init_steps` of Adam ascent on the log density (a step that lands on -inf is
/// undone and that chain's rate halved), so that chains begin near the bulk of the posterior
/// instead of in a far tail where the adapted step size would leave them stuck.
///
/// Returns the positions, their log densities and gradients (the integrator holds exactly
/// these), and the number of batch density evaluations it used.
pub fn initialise(integrator: &mut dyn Integrator, cfg: &Config) -> Result<Start> {
    integrator.set_chain_offset(cfg.chain_offset);
    let mut calls = 0u64;
    let d = integrator.dim();
    let n = integrator.n_chains();
    let mut q: Vec<f64> = (0..n)
        .flat_map(|c| initial_position(cfg, c, 0, d))
        .collect();
    let mut logp = vec![0.0; n];
    let mut grad = vec![0.0; n * d];
    integrator.set_positions(&q, &mut logp, &mut grad)?;
    calls += 1;
    let bad = |lp: f64| lp <= LOGP_NEG_INF || !lp.is_finite();
    for attempt in 1..=100u32 {
        let failed: Vec<usize> = (0..n).filter(|&c| bad(logp[c])).collect();
        if failed.is_empty() {
            break;
        }
        if attempt == 100 {
            return Err(Error::Init {
                chain: failed[0],
                message: format!(
                    "no finite log density found after 100 random starts in (-{r}, {r}) on the unconstrained scale",
                    r = cfg.init_radius
                ),
            });
        }
        for c in failed {
            q[c * d..(c + 1) * d].copy_from_slice(&initial_position(cfg, c, attempt, d));
        }
        integrator.set_positions(&q, &mut logp, &mut grad)?;
        calls += 1;
    }
    // Adam ascent; all chains of a superchain move together since they start together.
    let (mut m1, mut m2) = (vec![0.0; n * d], vec![0.0; n * d]);
    let mut rate = vec![0.1f64; n];
    let mut prev_q = q.clone();
    let mut prev_lp = logp.clone();
    let mut prev_g = grad.clone();
    // Whether the integrator holds a rejected step for some chain (then it must be reset).
    let mut stale = false;
    for t in 1..=cfg.init_steps {
        let lr_decay = if t > cfg.init_steps / 2 { 0.2 } else { 1.0 };
        for (c, &rc) in rate.iter().enumerate() {
            for i in 0..d {
                let k = c * d + i;
                let g = grad[k];
                m1[k] = 0.9 * m1[k] + 0.1 * g;
                m2[k] = 0.999 * m2[k] + 0.001 * g * g;
                let mh = m1[k] / (1.0 - 0.9f64.powi(t as i32));
                let vh = m2[k] / (1.0 - 0.999f64.powi(t as i32));
                q[k] += rc * lr_decay * mh / (vh.sqrt() + 1e-8);
            }
        }
        integrator.set_positions(&q, &mut logp, &mut grad)?;
        calls += 1;
        stale = false;
        for c in 0..n {
            if bad(logp[c]) {
                stale = true;
                q[c * d..(c + 1) * d].copy_from_slice(&prev_q[c * d..(c + 1) * d]);
                grad[c * d..(c + 1) * d].copy_from_slice(&prev_g[c * d..(c + 1) * d]);
                logp[c] = prev_lp[c];
                rate[c] *= 0.5;
            }
        }
        prev_q.copy_from_slice(&q);
        prev_lp.copy_from_slice(&logp);
        prev_g.copy_from_slice(&grad);
    }
    if stale {
        integrator.set_positions(&q, &mut logp, &mut grad)?;
        calls += 1;
    }
    Ok(Start {
        q,
        logp,
        grad,
        density_calls: calls,
    })
}

/// Where [`initialise`] left the chains.
pub struct Start {
    /// Positions (chains x D).
    pub q: Vec<f64>,
    /// Their log densities.
    pub logp: Vec<f64>,
    /// Their gradients.
    pub grad: Vec<f64>,
    /// Batch density evaluations used.
    pub density_calls: u64,
}

/// Runs warmup and sampling for every dataset at once; draws go to `sink`.
///
/// For models with exchangeable components ([`Model::label_groups`]), each chain's labels
/// are matched to the ensemble's at the end of every mass-matrix window and its position
/// permuted accordingly (a permutation of an exchangeable posterior is a valid move), so
/// that chains in different label modes do not spoil the cross-chain adaptation.
pub fn sample(
    integrator: &mut dyn Integrator,
    model: &dyn Model,
    n_datasets: usize,
    cfg: &Config,
    sink: &mut dyn DrawSink,
    progress: Progress<'_>,
) -> Result<RunReport> {
    cfg.validate()?;
    let d = integrator.dim();
    let n = integrator.n_chains();
    if n != n_datasets * cfg.chains {
        return Err(Error::Invalid(format!(
            "integrator has {n} chains, expected {n_datasets} datasets x {} chains",
            cfg.chains
        )));
    }
    let Start {
        q,
        mut logp,
        mut grad,
        mut density_calls,
    } = initialise(integrator, cfg)?;

    let target_accept = cfg.target_accept.unwrap_or_else(|| model.target_accept());
    let mut states: Vec<DatasetState> = (0..n_datasets)
        .map(|_| DatasetState {
            da: DualAveraging::new(cfg.step_size, target_accept),
            chees: ChEES::new(cfg.step_size * 10.0),
            mass: (0..cfg.chains).map(|_| Welford::new(d)).collect(),
            inv_mass: vec![1.0; d],
            metric_adapted: false,
            divergences: 0,
            accept_sum: 0.0,
            steps_sum: 0.0,
        })
        .collect();
    let windows = mass_windows(cfg.warmup, cfg.chains);
    let slow_start = adapt::init_buffer(cfg.warmup, cfg.chains);
    let mut out = StepOut::default();
    out.resize(n, d);
    let mut tuning: Vec<Tuning> = states
        .iter()
        .map(|s| Tuning {
            step_size: s.da.log_eps.exp(),
            n_steps: 1,
            inv_mass: s.inv_mass.clone(),
        })
        .collect();
    let max_steps = integrator
        .step_cap()
        .map_or(cfg.max_steps, |c| c.min(cfg.max_steps));
    let steps_for = |t: usize, traj: f64, eps: f64| -> u32 {
        let l = (halton(t as u64 + 1) * traj / eps).ceil();
        if l.is_finite() {
            (l as u32).clamp(1, max_steps)
        } else {
            max_steps
        }
    };
    let mut grads = 0u64;
    let mut transitions = 0u64;
    let t0 = std::time::Instant::now();
    let mut before = q.clone();
    let relabel = model.label_groups().is_some() && cfg.chains > 1;
    let mut window_means = vec![0.0; n * d];
    let cancelled = || {
        cfg.cancel
            .as_ref()
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    };
    for t in 0..cfg.warmup {
        if cancelled() {
            return Err(Error::Interrupted);
        }
        for (tu, s) in tuning.iter_mut().zip(&states) {
            tu.step_size = s.da.log_eps.exp();
            tu.n_steps = steps_for(t, s.chees.log_t.exp(), tu.step_size);
            if !s.metric_adapted && !windows.is_empty() {
                tu.n_steps = tu.n_steps.min(PRE_METRIC_MAX_STEPS);
            }
            tu.inv_mass.copy_from_slice(&s.inv_mass);
        }
        integrator.step(t as u32, &tuning, &mut out)?;
        transitions += 1;
        let jitter = halton(t as u64 + 1);
        for (b, s) in states.iter_mut().enumerate() {
            let r = b * cfg.chains..(b + 1) * cfg.chains;
            let rd = r.start * d..r.end * d;
            grads += u64::from(tuning[b].n_steps) * cfg.chains as u64;
            let acc = harmonic_accept(&out.accept_prob[r.clone()], &out.divergent[r.clone()]);
            s.da.update(acc);
            let eps = s.da.log_eps.exp();
            let g = chees_gradient(
                &before[rd.clone()],
                &out.proposal[rd.clone()],
                &out.velocity[rd.clone()],
                &out.accept_prob[r.clone()],
                &out.divergent[r.clone()],
                &s.inv_mass,
                jitter,
                s.chees.log_t.exp(),
            );
            let mut lo = eps;
            // The floor needs an adapted metric: before the first mass-matrix update the
            // ensemble's spread reflects the starting points, not the posterior.
            if cfg.whitened_floor && cfg.chains > 1 && s.metric_adapted {
                let sd: Vec<f64> = s.inv_mass.iter().map(|m| m.sqrt()).collect();
                let z: Vec<f64> = out.position[rd.clone()]
                    .iter()
                    .enumerate()
                    .map(|(i, v)| v / sd[i % d])
                    .collect();
                lo = lo.max(std::f64::consts::FRAC_PI_2 * lambda_max(&z, cfg.chains, d).sqrt());
            }
            s.chees.update(g, lo, 1000.0 * eps.max(lo / 1000.0));
            if t >= slow_start && windows.last().is_some_and(|&e| t < e) {
                for (w, c) in s.mass.iter_mut().zip(r.clone()) {
                    w.add(&out.position[c * d..(c + 1) * d]);
                }
            }
            if relabel && windows.contains(&(t + 1)) {
                for (c, w) in s.mass.iter().enumerate() {
                    window_means[(b * cfg.chains + c) * d..(b * cfg.chains + c + 1) * d]
                        .copy_from_slice(w.mean());
                }
            }
            if windows.contains(&(t + 1)) && s.mass[0].count() >= 3.0 {
                let per_chain = s.mass[0].count();
                let nn = per_chain * cfg.chains as f64;
                let mut var = vec![0.0; d];
                for w in &s.mass {
                    var.iter_mut()
                        .zip(w.variance())
                        .for_each(|(a, v)| *a += v / cfg.chains as f64);
                }
                s.inv_mass = var
                    .iter()
                    .map(|v| (nn / (nn + 5.0)) * v + 1e-3 * (5.0 / (nn + 5.0)))
                    .collect();
                s.mass.iter_mut().for_each(Welford::reset);
                s.metric_adapted = true;
                s.da.restart(eps);
            }
        }
        if relabel
            && windows.contains(&(t + 1))
            && align_labels(model, cfg, &window_means, &mut out.position)?
        {
            integrator.set_positions(&out.position, &mut logp, &mut grad)?;
            density_calls += 1;
        }
        before.copy_from_slice(&out.position);
        progress("warmup", t + 1, cfg.warmup, 0);
    }
    let t_warm = t0.elapsed().as_secs_f64();
    let trajectory: Vec<f64> = states
        .iter()
        .map(|s| {
            if cfg.warmup > 0 {
                s.chees.log_t_avg.exp()
            } else {
                s.chees.log_t.exp()
            }
        })
        .collect();
    for (tu, s) in tuning.iter_mut().zip(&states) {
        tu.step_size = if cfg.warmup > 0 {
            s.da.log_eps_bar.exp()
        } else {
            s.da.log_eps.exp()
        };
        tu.inv_mass.copy_from_slice(&s.inv_mass);
    }
    let t1 = std::time::Instant::now();
    let total = cfg.draws * cfg.thin;
    let mut steps = vec![0u32; n];
    let mut divs = 0usize;
    let mut lp_sum = vec![0.0f64; n];
    let mut div_count = vec![0usize; n];
    // Frozen kernel: transitions go to the integrator in batches (one submission and one
    // read-back per batch on the GPU).
    let batch = integrator.batch_len().max(1);
    let mut outs: Vec<StepOut> = vec![StepOut::default(); batch.min(total.max(1))];
    let mut i = 0;
    let mut interrupted = false;
    while i < total {
        if cancelled() {
            interrupted = true;
            break;
        }
        let len = batch.min(total - i);
        let rows: Vec<Vec<u32>> = (0..len)
            .map(|r| {
                let t = cfg.warmup + i + r;
                (0..n_datasets)
                    .map(|b| steps_for(t, trajectory[b], tuning[b].step_size))
                    .collect()
            })
            .collect();
        integrator.run_batch((cfg.warmup + i) as u32, &tuning, &rows, &mut outs[..len])?;
        transitions += len as u64;
        for (r, out) in outs[..len].iter().enumerate() {
            for c in 0..n {
                lp_sum[c] += out.logp[c];
                div_count[c] += usize::from(out.divergent[c]);
            }
            for (b, s) in states.iter_mut().enumerate() {
                let ch = b * cfg.chains..(b + 1) * cfg.chains;
                let ns = rows[r][b];
                grads += u64::from(ns) * cfg.chains as u64;
                let dv = out.divergent[ch.clone()].iter().filter(|&&x| x).count();
                s.divergences += dv;
                divs += dv;
                s.accept_sum += out.accept_prob[ch.clone()].iter().sum::<f64>();
                s.steps_sum += f64::from(ns) * cfg.chains as f64;
                steps[ch].iter_mut().for_each(|v| *v = ns);
            }
            let k = i + r;
            if (k + 1) % cfg.thin == 0 {
                sink.record(k / cfg.thin, out, &steps)?;
            }
            progress("sampling", k + 1, total, divs);
        }
        i += len;
    }
    let done = i;
    let per = (done * cfg.chains).max(1) as f64;
    Ok(RunReport {
        datasets: states
            .iter()
            .zip(&tuning)
            .zip(&trajectory)
            .enumerate()
            .map(|(b, ((s, tu), &tr))| DatasetReport {
                stuck_chains: {
                    let r = b * cfg.chains..(b + 1) * cfg.chains;
                    let t = done.max(1) as f64;
                    let mlp: Vec<f64> = lp_sum[r.clone()].iter().map(|v| v / t).collect();
                    let dr: Vec<f64> = div_count[r].iter().map(|&v| v as f64 / t).collect();
                    stuck_chains(&mlp, &dr)
                },
                step_size: tu.step_size,
                trajectory_length: tr,
                inv_mass: s.inv_mass.clone(),
                divergences: s.divergences,
                mean_accept: s.accept_sum / per,
                mean_steps: s.steps_sum / per,
            })
            .collect(),
        gradient_evals: grads,
        transitions,
        density_calls,
        seconds: (t_warm, t1.elapsed().as_secs_f64()),
        draws_completed: done / cfg.thin,
        interrupted,
    })
}

/// The HMC integrator for `backend`: `model` on `data` with `chains_per_dataset` chains
/// each, its random streams keyed by `seed` (how the engine puts itself on a backend).
pub fn integrator(
    backend: &crate::backend::Backend,
    model: std::sync::Arc<dyn Model>,
    data: std::sync::Arc<crate::data::DataBatch>,
    chains_per_dataset: usize,
    seed: u64,
) -> Result<Box<dyn Integrator>> {
    use crate::backend::Backend;
    Ok(match backend {
        Backend::Cpu => Box::new(CpuIntegrator::new(model, data, chains_per_dataset, seed)?),
        Backend::Gpu(ctx) => Box::new(GpuIntegrator::new(
            ctx.clone(),
            model.as_ref(),
            &data,
            chains_per_dataset,
            seed,
            None,
        )?),
    })
}

/// A sink that keeps every draw in memory: unconstrained positions (draws x chains x D)
/// and sampler statistics; for tests and small runs.
#[derive(Default)]
pub struct MemorySink {
    /// Unconstrained dimension.
    pub d: usize,
    /// Chains over all datasets.
    pub chains: usize,
    /// Positions, draw-major: draw t of chain c, parameter i is `draws[(t * chains + c) * d + i]`.
    pub draws: Vec<f64>,
    /// Log densities (draws x chains).
    pub logp: Vec<f64>,
    /// Acceptance probabilities (draws x chains).
    pub accept_prob: Vec<f64>,
    /// Divergences (draws x chains).
    pub divergent: Vec<bool>,
    /// Leapfrog steps (draws x chains).
    pub steps: Vec<u32>,
    /// Energies (draws x chains).
    pub energy: Vec<f64>,
}

impl DrawSink for MemorySink {
    fn record(&mut self, _index: usize, out: &StepOut, steps: &[u32]) -> Result<()> {
        self.chains = out.logp.len();
        self.d = out.position.len() / self.chains.max(1);
        self.draws.extend_from_slice(&out.position);
        self.logp.extend_from_slice(&out.logp);
        self.accept_prob.extend_from_slice(&out.accept_prob);
        self.divergent.extend_from_slice(&out.divergent);
        self.steps.extend_from_slice(steps);
        self.energy.extend_from_slice(&out.energy);
        Ok(())
    }
}

impl MemorySink {
    /// Number of draws per chain.
    pub fn n_draws(&self) -> usize {
        self.logp.len() / self.chains.max(1)
    }

    /// Draws of chain `c`, unconstrained parameter `i`, in order.
    pub fn trace(&self, c: usize, i: usize) -> Vec<f64> {
        (0..self.n_draws())
            .map(|t| self.draws[(t * self.chains + c) * self.d + i])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_chains_are_found() {
        let lp = [-100.0, -101.0, -99.5, -100.5, -180.0, -100.2];
        let div = [0.0, 0.0, 0.0, 0.0, 0.0, 0.9];
        assert_eq!(stuck_chains(&lp, &div), vec![4, 5]);
        assert!(stuck_chains(&lp[..4], &div[..4]).is_empty());
    }

    #[test]
    fn trimmed_harmonic_mean() {
        let a = vec![0.8; 200];
        let div = vec![false; 200];
        assert!((harmonic_accept(&a, &div) - 0.8).abs() < 1e-12);
        let mut b = a.clone();
        b[0] = 1e-9; // one outlier among 200 is trimmed
        assert!((harmonic_accept(&b, &div) - 0.8).abs() < 1e-12);
        // Below 100 chains nothing is trimmed: the outlier dominates.
        assert!(harmonic_accept(&b[..50], &div[..50]) < 1e-6);
        assert_eq!(harmonic_accept(&[0.5, 0.9], &[true, true]), 0.0);
    }
}
