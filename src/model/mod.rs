//! Model families: the [`Model`] trait every family implements, the priors, and the
//! built-in families (GLMs, Gaussian mixtures and mixtures of regressions, all served by one
//! mixture-of-GLMs kernel in [`mixglm`]).
//!
//! A model works on an unconstrained parameter vector of dimension [`Model::dim`]; scales are
//! log-transformed and simplexes use the additive log-ratio map, with their log Jacobians
//! included in the log density. It evaluates its log density and gradient in f64 on the CPU
//! and provides the same math as WGSL for the GPU (see [`Model::wgsl`] for the contract).

pub mod eiv;
pub mod hmm;
pub mod mixglm;

use std::sync::Arc;

use crate::data::{DataBatch, Dataset};
use crate::error::{Error, Result};

pub use eiv::{Eiv, EivVariant};
pub use hmm::{Hmm, HmmPriors};
pub use mixglm::{Likelihood, MixGlm};

/// The binding of a model's scratch storage in the density kernels (see
/// [`Model::device_scratch`]).
pub const SCRATCH_BINDING: u32 = 8;

/// A model family: log density and gradient on the CPU (f64) and the GPU (WGSL, f32).
///
/// # The WGSL contract
/// [`Model::wgsl`] returns WGSL that defines, for the batch log-density template
/// (`shaders/logp_batch.wgsl`):
/// - `const D: u32` (the unconstrained dimension) and `const NACC: u32` (the number of
///   per-point accumulators, at least 1);
/// - `struct Chain` holding whatever a chain precomputes from its position;
/// - `fn chain_setup(theta: ptr<function, array<f32, D>>) -> Chain`;
/// - `fn point_accumulate(c: ptr<function, Chain>, n: u32, acc: ptr<function, array<f32, NACC>>)`,
///   which adds point `n`'s terms to the accumulators (inputs in `data_x[j * N_TOTAL + n]`,
///   response in `data_y[n]`);
/// - `fn chain_finish(c: ptr<function, Chain>, theta: ptr<function, array<f32, D>>,
///   n_points: u32, acc: ptr<function, array<f32, NACC>>, grad: ptr<function, array<f32, D>>) -> f32`,
///   which receives the accumulators summed over the dataset's points, adds the priors and
///   returns the log density (without [`Model::constant`]) and writes its gradient.
pub trait Model: Send + Sync {
    /// A short name, e.g. `glm-gaussian`.
    fn name(&self) -> String;

    /// Dimension of the unconstrained parameter vector.
    fn dim(&self) -> usize;

    /// Names of the constrained parameters, in the order [`Model::constrain`] returns them.
    fn param_names(&self) -> Vec<String>;

    /// Maps an unconstrained position to the constrained parameters.
    fn constrain(&self, theta: &[f64]) -> Vec<f64>;

    /// Maps constrained parameters (in [`Model::param_names`] order) to the unconstrained
    /// position; an error when a value is outside its support.
    fn unconstrain(&self, params: &[f64]) -> Result<Vec<f64>>;

    /// [`Model::constrain`] for stored draw `draw` of global chain `chain` under `seed`:
    /// quantities that draw random numbers (a Stan program's generated quantities) take
    /// them from that draw's own stream.
    fn constrain_draw(&self, theta: &[f64], _seed: u64, _chain: u32, _draw: u32) -> Vec<f64> {
        self.constrain(theta)
    }

    /// The log likelihood of dataset `b` at `theta` when the family computes it itself
    /// (a simulation study's `log_lik` quantity); `None`: the log density less its value
    /// on an empty dataset.
    fn log_lik(&self, _data: &DataBatch, _b: usize, _theta: &[f64]) -> Option<f64> {
        None
    }

    /// The family fitted to `data` when it depends on the batch beyond its columns (a Stan
    /// program compiled against each simulated dataset of a study); `None`: itself.
    fn bind(&self, _data: &DataBatch) -> Result<Option<Arc<dyn Model>>> {
        Ok(None)
    }

    /// Checks that a data batch fits the model (column count, response domain).
    fn check_data(&self, data: &DataBatch) -> Result<()>;

    /// Whether the data batch's columns are the model's data, so that their ranges explain a
    /// failure to start; `false` for a Stan program, whose data are its JSON file's.
    fn data_in_columns(&self) -> bool {
        true
    }

    /// Log density of dataset `b` at `theta` up to [`Model::constant`], and its gradient
    /// (written to `grad`, length [`Model::dim`]). `scratch` is reusable working memory.
    /// Never NaN: see [`crate::math::sanitize`].
    fn log_density(
        &self,
        data: &DataBatch,
        b: usize,
        theta: &[f64],
        grad: &mut [f64],
        scratch: &mut Vec<f64>,
    ) -> f64;

    /// [`Model::log_density`] computed in single precision: the data and the per-point
    /// arithmetic in f32 (twice the SIMD lanes), the sums over points folded into f64 every
    /// few hundred points. Families without an f32 kernel ([`Model::has_f32_kernel`] false)
    /// compute in f64.
    fn log_density_f32(
        &self,
        data: &DataBatch,
        b: usize,
        theta: &[f64],
        grad: &mut [f64],
        scratch: &mut Vec<f64>,
    ) -> f64 {
        self.log_density(data, b, theta, grad, scratch)
    }

    /// [`Model::log_density`] of `lanes` chains of dataset `b` at once: `theta` and `grad`
    /// hold the chains one after another, `logp` one value each. Each chain gets the bits
    /// that [`Model::log_density`] gives it alone; the default calls it chain by chain.
    #[allow(clippy::too_many_arguments)]
    fn log_density_block(
        &self,
        data: &DataBatch,
        b: usize,
        lanes: usize,
        theta: &[f64],
        grad: &mut [f64],
        logp: &mut [f64],
        scratch: &mut Vec<f64>,
    ) {
        let d = self.dim();
        for l in 0..lanes {
            logp[l] = self.log_density(
                data,
                b,
                &theta[l * d..(l + 1) * d],
                &mut grad[l * d..(l + 1) * d],
                scratch,
            );
        }
    }

    /// How many chains [`Model::log_density_block`] evaluates best together (f64, on the
    /// CPU); 1 for a family without a block kernel.
    fn block_lanes(&self) -> usize {
        1
    }

    /// Whether [`Model::log_density_f32`] has its own f32 kernel.
    fn has_f32_kernel(&self) -> bool {
        false
    }

    /// The part of the log density of dataset `b` that does not depend on the parameters
    /// (normalising constants of likelihood and priors).
    fn constant(&self, data: &DataBatch, b: usize) -> f64;

    /// WGSL source for the GPU twin of [`Model::log_density`] (see the trait docs).
    fn wgsl(&self) -> String;

    /// Whether [`Model::wgsl`] is a kernel (false: the family runs on the CPU backend only,
    /// and the GPU engines refuse it).
    fn has_gpu_kernel(&self) -> bool {
        true
    }

    /// The batch the GPU kernel reads in place of `data`, for a family whose kernel reads
    /// something other than the data as given (a Stan program's kernel reads its recorded
    /// program); `None` (the default) when it reads `data`.
    fn device_data(&self, _data: &DataBatch) -> Result<Option<DataBatch>> {
        Ok(None)
    }

    /// f32 values per chain that the GPU kernel keeps in scratch storage (binding
    /// [`SCRATCH_BINDING`], slot `i` of chain `g_chain` at `i * g_chains + g_chain`); 0 (the
    /// default) when it keeps none.
    fn device_scratch(&self) -> usize {
        0
    }

    /// Loop iterations one evaluation of dataset `b` of the GPU kernel's batch (see
    /// [`Model::device_data`]) spends with `lanes` threads per chain, which a software adapter
    /// caps per invocation; by default the points one lane walks.
    fn device_loop_iterations(&self, data: &DataBatch, b: usize, lanes: u32) -> usize {
        data.range(b).len().div_ceil(lanes.max(1) as usize)
    }

    /// The log likelihood of every observation of dataset `b` at the unconstrained `theta`,
    /// constants included, in data order: what PSIS-LOO and WAIC need (ArviZ's
    /// `log_likelihood` group). `None` when the family does not define observations
    /// (the default).
    fn log_lik_pointwise(&self, _data: &DataBatch, _b: usize, _theta: &[f64]) -> Option<Vec<f64>> {
        None
    }

    /// Draws parameters from the prior and a dataset of `n` points given them; returns the
    /// unconstrained true parameters and the dataset.
    fn simulate(&self, n: usize, rng: &mut rand::rngs::StdRng) -> (Vec<f64>, Dataset);

    /// [`Model::simulate`] for families whose simulation can fail (a Stan program's
    /// generated quantities).
    fn try_simulate(&self, n: usize, rng: &mut rand::rngs::StdRng) -> Result<(Vec<f64>, Dataset)> {
        Ok(self.simulate(n, rng))
    }

    /// The number of hidden states of a family with them (HMMs), whose
    /// [`Model::state_probabilities`] are defined; 0 otherwise (the default).
    fn hidden_states(&self) -> usize {
        0
    }

    /// Smoothed state probabilities P(z_t | all data) of every row of dataset `b` (rows × K)
    /// at the unconstrained `theta`, for a family with hidden states; `None` otherwise.
    fn state_probabilities(
        &self,
        _data: &DataBatch,
        _b: usize,
        _theta: &[f64],
    ) -> Option<Vec<f64>> {
        None
    }

    /// Draws a dataset of `n` points given the unconstrained `theta` (inputs drawn as
    /// [`Model::simulate`] draws them): the data of a study at chosen parameter values.
    /// `None` when the family cannot (the default).
    fn simulate_given(
        &self,
        _theta: &[f64],
        _n: usize,
        _rng: &mut rand::rngs::StdRng,
    ) -> Option<Dataset> {
        None
    }

    /// Draws the responses of `n` points with inputs `x` (one column per input) given the
    /// unconstrained `theta`: one posterior predictive replicate when `theta` is a posterior
    /// draw. `None` when the family has no responses given inputs (the default) or the
    /// shapes do not fit.
    fn predict_y(
        &self,
        _theta: &[f64],
        _x: &[Vec<f64>],
        _n: usize,
        _rng: &mut rand::rngs::StdRng,
    ) -> Option<Vec<f64>> {
        None
    }

    /// The default target of the ensemble's harmonic-mean acceptance probability. 0.651 is
    /// optimal for a fixed trajectory length on well-conditioned targets; a family whose
    /// posterior has regions of high curvature (a hierarchical scale near zero) asks for
    /// more, as Stan users raise `adapt_delta`. `Config::target_accept` overrides it.
    fn target_accept(&self) -> f64 {
        0.651
    }

    /// For mixtures: the constrained-parameter indices of each exchangeable component (the
    /// same order within every component), used to align labels across chains. `None` for
    /// models without label switching.
    fn label_groups(&self) -> Option<Vec<Vec<usize>>> {
        None
    }

    /// Relabels one constrained parameter vector: new component `k` is old component
    /// `perm[k]`. The default moves each [`Model::label_groups`] group; a model whose labels
    /// also index other parameters (an HMM's transition matrix) overrides it.
    fn permute_labels(&self, params: &[f64], perm: &[usize]) -> Vec<f64> {
        match self.label_groups() {
            Some(groups) => crate::diag::align::apply(params, perm, &groups),
            None => params.to_vec(),
        }
    }

    /// The most GPU threads that may share one chain's points (a power of two). A model
    /// whose log density is a recursion over its points in order (an HMM's forward pass)
    /// returns 1, so one thread walks them.
    fn max_lanes(&self) -> u32 {
        64
    }

    /// Flops and transcendental calls (exp/log) per data point of one log density + gradient,
    /// counted by hand from the kernel, for benchmark reports.
    fn cost_per_point(&self) -> (f64, f64) {
        (0.0, 0.0)
    }
}

/// A normal prior `N(mean, sd)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normal {
    /// Mean.
    pub mean: f64,
    /// Standard deviation (> 0).
    pub sd: f64,
}

impl Normal {
    /// `N(mean, sd)`; `sd` must be positive and finite.
    pub fn new(mean: f64, sd: f64) -> Result<Self> {
        if !(mean.is_finite() && sd.is_finite() && sd > 0.0) {
            return Err(Error::Invalid(format!(
                "normal prior needs a finite mean and sd > 0, got N({mean}, {sd})"
            )));
        }
        Ok(Self { mean, sd })
    }
}

/// A prior on a positive scale `sigma`, applied on `u = log sigma` with the Jacobian.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScalePrior {
    /// `sigma ~ HalfNormal(sd)`.
    HalfNormal {
        /// Scale of the half-normal.
        sd: f64,
    },
    /// `sigma ~ Exponential(rate)`.
    Exponential {
        /// Rate.
        rate: f64,
    },
    /// `log sigma ~ N(mu, sd)`.
    LogNormal {
        /// Mean of log sigma.
        mu: f64,
        /// Sd of log sigma.
        sd: f64,
    },
    /// `sigma ~ Gamma(shape, rate)`.
    Gamma {
        /// Shape.
        shape: f64,
        /// Rate.
        rate: f64,
    },
}

impl ScalePrior {
    /// Checks the prior's parameters.
    pub fn validate(&self) -> Result<()> {
        let ok = match *self {
            ScalePrior::HalfNormal { sd } => sd > 0.0 && sd.is_finite(),
            ScalePrior::Exponential { rate } => rate > 0.0 && rate.is_finite(),
            ScalePrior::LogNormal { mu, sd } => mu.is_finite() && sd > 0.0 && sd.is_finite(),
            ScalePrior::Gamma { shape, rate } => {
                shape > 0.0 && rate > 0.0 && shape.is_finite() && rate.is_finite()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "scale prior out of domain: {self:?}"
            )))
        }
    }

    /// Log density in `u = log sigma` (Jacobian included) without its constant, and the
    /// derivative in `u`.
    #[inline]
    pub fn logp_u(&self, u: f64) -> (f64, f64) {
        match *self {
            ScalePrior::HalfNormal { sd } => {
                let s = (u.exp() / sd).powi(2);
                (-0.5 * s + u, 1.0 - s)
            }
            ScalePrior::Exponential { rate } => {
                let s = rate * u.exp();
                (u - s, 1.0 - s)
            }
            ScalePrior::LogNormal { mu, sd } => {
                let z = (u - mu) / sd;
                (-0.5 * z * z, -z / sd)
            }
            ScalePrior::Gamma { shape, rate } => {
                let s = rate * u.exp();
                (shape * u - s, shape - s)
            }
        }
    }

    /// The constant dropped by [`ScalePrior::logp_u`].
    pub fn constant(&self) -> f64 {
        let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
        match *self {
            ScalePrior::HalfNormal { sd } => std::f64::consts::LN_2 - half_log_2pi - sd.ln(),
            ScalePrior::Exponential { rate } => rate.ln(),
            ScalePrior::LogNormal { sd, .. } => -half_log_2pi - sd.ln(),
            ScalePrior::Gamma { shape, rate } => shape * rate.ln() - crate::math::lgamma(shape),
        }
    }

    /// WGSL expression body: a function `fn NAME(u: f32) -> vec2<f32>` returning
    /// (log density, derivative), the twin of [`ScalePrior::logp_u`].
    pub fn wgsl_fn(&self, name: &str) -> String {
        let body = match *self {
            ScalePrior::HalfNormal { sd } => format!(
                "let s = exp(u) / {};\n    let s2 = s * s;\n    return vec2<f32>(-0.5 * s2 + u, 1.0 - s2);",
                f(sd)
            ),
            ScalePrior::Exponential { rate } => format!(
                "let s = {} * exp(u);\n    return vec2<f32>(u - s, 1.0 - s);",
                f(rate)
            ),
            ScalePrior::LogNormal { mu, sd } => format!(
                "let z = (u - {}) / {};\n    return vec2<f32>(-0.5 * z * z, -z / {});",
                f(mu),
                f(sd),
                f(sd)
            ),
            ScalePrior::Gamma { shape, rate } => format!(
                "let s = {} * exp(u);\n    return vec2<f32>({} * u - s, {} - s);",
                f(rate),
                f(shape),
                f(shape)
            ),
        };
        format!("fn {name}(u: f32) -> vec2<f32> {{\n    {body}\n}}\n")
    }

    /// Draws a scale from the prior.
    pub fn sample(&self, rng: &mut rand::rngs::StdRng) -> f64 {
        use rand::RngExt;
        use rand_distr::{Distribution, Exp, Gamma, LogNormal, Normal as N};
        match *self {
            ScalePrior::HalfNormal { sd } => N::new(0.0, sd).expect("validated").sample(rng).abs(),
            ScalePrior::Exponential { rate } => Exp::new(rate).expect("validated").sample(rng),
            ScalePrior::LogNormal { mu, sd } => {
                LogNormal::new(mu, sd).expect("validated").sample(rng)
            }
            ScalePrior::Gamma { shape, rate } => {
                rng.sample(Gamma::new(shape, 1.0 / rate).expect("validated"))
            }
        }
    }
}

/// Refuses a family without a GPU kernel ([`Model::has_gpu_kernel`]) on a GPU engine.
pub fn require_gpu_kernel(model: &dyn Model) -> Result<()> {
    if model.has_gpu_kernel() {
        Ok(())
    } else {
        Err(Error::config(
            "--backend",
            format!(
                "{} has no GPU kernel yet: use the CPU backend",
                model.name()
            ),
        ))
    }
}

pub(crate) use crate::shader::f32_literal as f;

/// The priors of the mixture-of-GLMs family; defaults match the tutorial.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Priors {
    /// Prior on every regression coefficient (default N(0, 1)).
    pub coef: Normal,
    /// Prior on intercepts and, for Gaussian mixtures, component means (default N(0, 1)).
    pub intercept: Normal,
    /// Prior on noise scales (default HalfNormal(1)).
    pub scale: ScalePrior,
    /// Symmetric Dirichlet concentration on mixture weights (default 1).
    pub weights: f64,
}

impl Default for Priors {
    fn default() -> Self {
        Self {
            coef: Normal { mean: 0.0, sd: 1.0 },
            intercept: Normal { mean: 0.0, sd: 1.0 },
            scale: ScalePrior::HalfNormal { sd: 1.0 },
            weights: 1.0,
        }
    }
}

impl Priors {
    /// Checks every prior's parameters.
    pub fn validate(&self) -> Result<()> {
        Normal::new(self.coef.mean, self.coef.sd)?;
        Normal::new(self.intercept.mean, self.intercept.sd)?;
        self.scale.validate()?;
        if !(self.weights > 0.0 && self.weights.is_finite()) {
            return Err(Error::Invalid(format!(
                "Dirichlet concentration must be > 0, got {}",
                self.weights
            )));
        }
        Ok(())
    }
}
