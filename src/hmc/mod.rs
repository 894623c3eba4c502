//! Ensemble HMC: many chains per dataset adapted together from cross-chain statistics, all
//! chains running the same number of leapfrog steps in an iteration (lockstep on the GPU).
//!
//! The [`Integrator`] trait runs one transition for every chain of every dataset; the CPU
//! ([`cpu::CpuIntegrator`]) and GPU ([`gpu::GpuIntegrator`]) implementations draw the same
//! Philox momenta and accept uniforms. [`sample`] drives warmup (dual averaging of the step
//! size on the harmonic-mean acceptance, ChEES trajectory length with Halton jitter, the
//! diagonal inverse mass matrix from the windowed within-chain variance averaged over all
//! chains of a dataset, or with [`Metric::Dense`] the pooled within-chain covariance) and
//! then frozen sampling, handing draws to a [`DrawSink`].
//!
//! Files by job: `adapt.rs` (step size, trajectory length, mass matrix, the acceptance and
//! stuck-chain statistics), `metric.rs` (the dense metric), `init.rs` (starting points),
//! `run.rs` (the warmup and sampling loop), `converge.rs` (the stopping rule of
//! `--target-ess`), `sink.rs` (where draws go: `.npy` files or memory), `precision.rs` (the
//! f32 check), `cpu.rs` and `gpu.rs` (the integrators).

pub mod adapt;
pub mod converge;
pub mod cpu;
pub mod gpu;
mod init;
pub mod metric;
pub mod precision;
mod run;
pub mod sink;

use crate::error::{Error, Result};
use crate::model::Model;

pub use adapt::{harmonic_accept, stuck_chains};
pub use init::{initial_position, initialise, Start};
pub use run::sample;
pub use sink::MemorySink;

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
    /// Diagonal inverse mass matrix (the posterior variance estimate); with a dense metric,
    /// the diagonal of the dense one.
    pub inv_mass: Vec<f64>,
    /// Dense metric: the lower Cholesky factor `L` (row-major D x D) of the inverse mass
    /// matrix `L Lᵀ` (the posterior covariance estimate). Empty: the metric is `inv_mass`.
    pub chol: Vec<f64>,
}

/// The shape of the inverse mass matrix warmup adapts (CmdStan's `metric`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Diagonal: each coordinate's posterior variance (`diag_e`).
    #[default]
    Diag,
    /// Dense: the posterior covariance (`dense_e`), for posteriors whose coordinates are
    /// strongly correlated (a regression on collinear predictors). Costs D² per leapfrog
    /// step and D² of adaptation state per dataset.
    Dense,
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

    /// The most leapfrog steps one transition with `metric` can run correctly, when the
    /// device limits it;
    /// the sampler never asks for more (see [`crate::hmc::gpu::GpuIntegrator`] on software
    /// adapters).
    fn step_cap(&self, metric: Metric) -> Option<u32> {
        let _ = metric;
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
    /// Unconstrained starting point of every chain of the batch (chains × D, dataset-major):
    /// when given, the chains start exactly there, without random starts or Adam steps
    /// (a run continued from an earlier one's last draws, `--adapt-from`).
    #[serde(skip)]
    pub start_positions: Vec<f64>,
    /// Per dataset of the batch, adaptation to start from instead of the defaults (step
    /// size, trajectory length, inverse mass matrix; `--adapt-from`): with no warmup they
    /// are used as they are.
    #[serde(skip)]
    pub adapted: Vec<Adaptation>,
    /// Set from elsewhere (a signal handler, another thread) to stop the run: during warmup
    /// [`sample`] returns [`Error::Interrupted`]; during sampling it stops after the current
    /// batch and returns the draws so far ([`RunReport::draws_completed`]).
    #[serde(skip)]
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Stop sampling once every parameter of every dataset has at least this bulk ESS over
    /// the pooled chains, with R-hat and nested R-hat below [`converge::RHAT_MAX`] (checked
    /// at batch boundaries; `draws` is then the upper bound). `None`: run all `draws`.
    pub target_ess: Option<f64>,
    /// With 64 chains or more per dataset, end warmup as soon as the ensemble is adapted
    /// (see [`adapt::WarmupEnd`]); `warmup` is then the upper bound. False: run all `warmup`
    /// iterations.
    pub adaptive_warmup: bool,
    /// The inverse mass matrix warmup adapts: diagonal, or dense.
    pub metric: Metric,
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
            start_positions: Vec::new(),
            adapted: Vec::new(),
            cancel: None,
            target_ess: None,
            adaptive_warmup: true,
            metric: Metric::Diag,
        }
    }
}

impl Config {
    /// Checks the settings; an [`Error::Config`] names the flag of the first bad one.
    pub fn validate(&self) -> Result<()> {
        // Each setting maps to the flag that sets it, so a caller can point at it.
        let bad = |flag: &str, m: &str| {
            Err(Error::Config {
                flag: flag.into(),
                message: m.into(),
            })
        };
        if self.chains == 0 {
            return bad("--chains", "must be at least 1");
        }
        if self.draws == 0 {
            return bad("--draws", "must be at least 1");
        }
        if self.thin == 0 {
            return bad("--thin", "must be at least 1");
        }
        if self.target_accept.is_some_and(|t| !(t > 0.0 && t < 1.0)) {
            return bad("--target-accept", "must be in (0, 1)");
        }
        if !(self.chain_offset as usize).is_multiple_of(self.chains) {
            return bad("chain_offset", "must be a multiple of --chains");
        }
        if self.superchain_size == 0 || !self.chains.is_multiple_of(self.superchain_size) {
            return bad("--superchain-size", "must divide --chains");
        }
        if self.target_ess.is_some_and(|t| !(t > 0.0 && t.is_finite())) {
            return bad("--target-ess", "must be a positive number");
        }
        // NaN fails both.
        if self.init_radius.is_nan() || self.init_radius <= 0.0 {
            return bad("init_radius", "must be positive");
        }
        if self.step_size.is_nan() || self.step_size <= 0.0 {
            return bad("step_size", "must be positive");
        }
        if self.max_steps == 0 {
            return bad("--max-steps", "must be at least 1");
        }
        Ok(())
    }
}

/// A dataset's adaptation: what warmup tunes and [`DatasetReport`] records.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Adaptation {
    /// Leapfrog step size.
    pub step_size: f64,
    /// Trajectory length (ChEES).
    pub trajectory_length: f64,
    /// Diagonal inverse mass matrix (with a dense metric, its diagonal).
    pub inv_mass: Vec<f64>,
    /// Dense inverse mass matrix (rows), when the metric is dense.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inv_mass_dense: Option<Vec<Vec<f64>>>,
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
    /// Inverse mass matrix after warmup (with a dense metric, its diagonal).
    pub inv_mass: Vec<f64>,
    /// Dense inverse mass matrix after warmup (rows), when the metric is dense.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inv_mass_dense: Option<Vec<Vec<f64>>>,
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
    /// Warmup iterations run: `warmup`, or fewer when the adaptive end came first.
    pub warmup_iterations: usize,
    /// The window end at which every dataset was found adapted ([`adapt::WarmupEnd`]), when
    /// warmup ended early.
    pub warmup_adapted_at: Option<usize>,
    /// Whether [`Config::cancel`] stopped sampling early.
    pub interrupted: bool,
    /// The stopping rule's checks, when [`Config::target_ess`] was set.
    pub target: Option<converge::TargetReport>,
}

/// Progress callback: (phase, iteration done, iterations in phase, divergences so far).
pub type Progress<'a> = &'a mut dyn FnMut(&str, usize, usize, usize);

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
        Backend::Cpu(p) => {
            Box::new(CpuIntegrator::new(model, data, chains_per_dataset, seed)?.with_precision(*p))
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_name_their_flag() {
        let flag_of = |cfg: Config| match cfg.validate() {
            Err(Error::Config { flag, .. }) => flag,
            other => panic!("expected a config error, got {other:?}"),
        };
        let ok = Config::default();
        assert!(ok.validate().is_ok());
        assert_eq!(
            flag_of(Config {
                chains: 0,
                ..ok.clone()
            }),
            "--chains"
        );
        assert_eq!(
            flag_of(Config {
                thin: 0,
                ..ok.clone()
            }),
            "--thin"
        );
        assert_eq!(
            flag_of(Config {
                chains: 6,
                superchain_size: 4,
                ..ok.clone()
            }),
            "--superchain-size"
        );
        assert_eq!(
            flag_of(Config {
                target_ess: Some(f64::NAN),
                ..ok.clone()
            }),
            "--target-ess"
        );
        assert_eq!(flag_of(Config { max_steps: 0, ..ok }), "--max-steps");
    }
}
