//! Arguments shared by subcommands: the model (family, components, priors) and the data.

use std::path::PathBuf;

use anyhow::bail;
use gpsamp::io::{read_csv, CsvSpec};
use gpsamp::workflow::spec::ModelSpec;
use gpsamp::{DataBatch, MixGlm};

/// `--backend`: what to run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    /// A hardware GPU when one exists, else the CPU backend (a software adapter such as
    /// lavapipe is slower than the native CPU backend, so `auto` does not pick it).
    Auto,
    /// Any wgpu adapter, software ones included; an error when none exists.
    Gpu,
    /// The native CPU backend.
    Cpu,
}

/// `--metric`: the inverse mass matrix warmup adapts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricArg {
    /// Each coordinate's posterior variance (CmdStan's diag_e).
    Diag,
    /// The posterior covariance (CmdStan's dense_e): for strongly correlated posteriors,
    /// such as a regression on collinear predictors.
    Dense,
}

impl From<MetricArg> for gpsamp::hmc::Metric {
    fn from(m: MetricArg) -> Self {
        match m {
            MetricArg::Diag => Self::Diag,
            MetricArg::Dense => Self::Dense,
        }
    }
}

/// Refuses a dense `--metric` whose matrices would not fit in memory: per dataset fitted
/// at once, the window's scatter matrix, the metric and its factor (D² each), and each
/// chain's window mean.
pub fn check_metric_memory(
    metric: MetricArg,
    dim: usize,
    datasets: usize,
    chains: usize,
) -> anyhow::Result<()> {
    if metric != MetricArg::Dense {
        return Ok(());
    }
    let d = dim as u64;
    super::check_memory(
        "--metric",
        (datasets as u64).saturating_mul(d.saturating_mul(d) * 8 * 4)
            + (chains as u64).saturating_mul(d * 8),
        &format!("a dense metric of dimension {d} for {datasets} datasets"),
    )
}

/// The backend `--backend` asks for; unless `quiet`, says on stderr what `auto` picked.
pub fn select_backend(arg: BackendArg, quiet: bool) -> anyhow::Result<gpsamp::Backend> {
    let (backend, note) = gpsamp::Backend::select_noted(arg.into())?;
    say_note(note, quiet);
    Ok(backend)
}

/// [`select_backend`] for a sampler run of `model` with `chains` chains in all: `auto`
/// keeps small ensembles ([`gpsamp::backend::AUTO_GPU_MIN_CHAINS`]) and families without a
/// GPU kernel on the CPU.
pub fn select_backend_for_run(
    arg: BackendArg,
    quiet: bool,
    chains: usize,
    model: &dyn gpsamp::Model,
) -> anyhow::Result<gpsamp::Backend> {
    let (backend, note) = gpsamp::Backend::select_for_model(arg.into(), chains, model)?;
    say_note(note, quiet);
    Ok(backend)
}

fn say_note(note: Option<String>, quiet: bool) {
    if let (Some(n), false) = (note, quiet) {
        eprintln!("gpsamp: {n}");
    }
}

impl From<BackendArg> for gpsamp::BackendKind {
    fn from(arg: BackendArg) -> Self {
        match arg {
            BackendArg::Auto => Self::Auto,
            BackendArg::Gpu => Self::Gpu,
            BackendArg::Cpu => Self::Cpu,
        }
    }
}

/// `--precision`: the arithmetic of the CPU backend's log densities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionArg {
    /// Single precision on twice the SIMD lanes, sums over points folded into f64 (glm, gmm
    /// and mixglm; the other families compute in f64).
    F32,
    /// Double precision, the reference.
    F64,
}

impl From<PrecisionArg> for gpsamp::backend::Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::F32 => Self::F32,
            PrecisionArg::F64 => Self::F64,
        }
    }
}

/// Which model family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelKind {
    /// Generalised linear model: beta[j], alpha (and sigma for gaussian).
    Glm,
    /// 1-D Gaussian mixture: weights[k], mu[k], sigma[k].
    Gmm,
    /// Mixture of regressions: weights[k], beta[k,j], alpha[k] (and sigma[k] for gaussian).
    Mixglm,
    /// Errors-in-variables dot product y = (x + a).(w (1 + b)): sigma_x, sigma_w,
    /// (sigma_obs), b[m].
    Eiv,
    /// Hidden Markov model with Gaussian emissions (one or more --y columns): initial[k],
    /// transition[i,j], mean[k], sd[k].
    Hmm,
    /// GLM-HMM (switching regression; --emission bernoulli for choice data): initial[k],
    /// transition[i,j], bias[k], weight[k,j], (sd[k]).
    Glmhmm,
}

/// The emission of a GLM-HMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Emission {
    /// Linear regression with Gaussian noise per state.
    Gaussian,
    /// Bernoulli with a logit link (responses 0/1).
    Bernoulli,
}

/// The noise structure of the errors-in-variables model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Variant {
    /// One draw of b for the whole dataset (one physical system): exact likelihood.
    Shared,
    /// A fresh b per observation: Gaussian with the exact first two moments (approximation).
    PerObservation,
}

/// The likelihood of a GLM or of each mixture component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Family {
    /// Normal, identity link.
    Gaussian,
    /// Bernoulli, logit link.
    Bernoulli,
    /// Poisson, log link.
    Poisson,
}

/// Model options.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model family (or give --model-file).
    #[arg(long, value_enum, required_unless_present_any = ["model_file", "stan"])]
    pub model: Option<ModelKind>,
    /// A Stan program to fit instead of a built-in family (`gpsamp sample` and `gpsamp
    /// sbc`; its data with --data: CmdStan's JSON format, or a CSV whose columns are
    /// vectors of the data block).
    #[arg(long, conflicts_with = "model")]
    pub stan: Option<PathBuf>,
    /// TOML file with the model settings: any model flag of this command without dashes
    /// (`model = "mixglm"`, `components = 2`, `prior_sigma = "halfnormal(2)"`,
    /// `w = [1, 2, 0.5]`, `obs_noise = true`, `states = 3`, `stickiness = 5`,
    /// `variant = "shared"`); flags given on the command line win.
    #[arg(long)]
    pub model_file: Option<PathBuf>,
    /// Fix every noise scale at this value (Gaussian likelihood): sigma leaves the parameters.
    #[arg(long)]
    pub sigma_fixed: Option<f64>,
    /// Likelihood (glm and mixglm).
    #[arg(long, value_enum, default_value = "gaussian")]
    pub family: Family,
    /// Mixture components (gmm and mixglm).
    #[arg(long, default_value_t = 2)]
    pub components: usize,
    /// Prior on regression coefficients: normal(MEAN,SD).
    #[arg(long, default_value = "normal(0,1)")]
    pub prior_coef: String,
    /// Prior on intercepts (and Gaussian-mixture means): normal(MEAN,SD).
    #[arg(long, default_value = "normal(0,1)")]
    pub prior_intercept: String,
    /// Prior on scales: halfnormal(SD), exponential(RATE), lognormal(MU,SD) or gamma(SHAPE,RATE).
    #[arg(long, default_value = "halfnormal(1)")]
    pub prior_sigma: String,
    /// Symmetric Dirichlet concentration on mixture weights.
    #[arg(long, default_value_t = 1.0)]
    pub prior_weights: f64,
    /// eiv: which noise structure.
    #[arg(long, value_enum, default_value = "shared")]
    pub variant: Variant,
    /// eiv: the known weights w, comma-separated (one per --x column).
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub w: Vec<f64>,
    /// eiv: add observation noise sigma_obs on y.
    #[arg(long)]
    pub obs_noise: bool,
    /// eiv: prior on sigma_x (a scale prior as for --prior-sigma).
    #[arg(long, default_value = "lognormal(-1,1)")]
    pub prior_sigma_x: String,
    /// eiv: prior on sigma_w.
    #[arg(long, default_value = "lognormal(-2,1)")]
    pub prior_sigma_w: String,
    /// eiv: prior on sigma_obs.
    #[arg(long, default_value = "lognormal(-2,1)")]
    pub prior_sigma_obs: String,
    /// eiv shared: systems pooled per dataset (set from `sample --system` or
    /// `simulate --systems`).
    #[arg(skip)]
    pub systems: Option<usize>,
    /// hmm/glmhmm: number of hidden states K.
    #[arg(long, default_value_t = 3)]
    pub states: usize,
    /// glmhmm: the emission of each state.
    #[arg(long, value_enum, default_value = "gaussian")]
    pub emission: Emission,
    /// hmm/glmhmm: added to the Dirichlet concentration of each transition row's diagonal
    /// (favours staying in a state). --prior-weights sets the concentrations (default 1).
    #[arg(long, default_value_t = 0.0)]
    pub stickiness: f64,
}

impl ModelArgs {
    /// The library's settings for these flags.
    pub fn spec(&self) -> ModelSpec {
        use gpsamp::workflow::spec::{Emission as E, ModelKind as K};
        ModelSpec {
            model: match self.kind() {
                ModelKind::Glm => K::Glm,
                ModelKind::Gmm => K::Gmm,
                ModelKind::Mixglm => K::Mixglm,
                ModelKind::Eiv => K::Eiv,
                ModelKind::Hmm => K::Hmm,
                ModelKind::Glmhmm => K::Glmhmm,
            },
            family: match self.family {
                Family::Gaussian => "gaussian",
                Family::Bernoulli => "bernoulli",
                Family::Poisson => "poisson",
            }
            .into(),
            components: self.components,
            sigma_fixed: self.sigma_fixed,
            prior_coef: self.prior_coef.clone(),
            prior_intercept: self.prior_intercept.clone(),
            prior_sigma: self.prior_sigma.clone(),
            prior_weights: self.prior_weights,
            variant: match self.variant {
                Variant::Shared => "shared",
                Variant::PerObservation => "per-observation",
            }
            .into(),
            w: self.w.clone(),
            obs_noise: self.obs_noise,
            prior_sigma_x: self.prior_sigma_x.clone(),
            prior_sigma_w: self.prior_sigma_w.clone(),
            prior_sigma_obs: self.prior_sigma_obs.clone(),
            systems: self.systems,
            states: self.states,
            emission: match self.emission {
                Emission::Gaussian => E::Gaussian,
                Emission::Bernoulli => E::Bernoulli,
            },
            stickiness: self.stickiness,
        }
    }

    /// Checks the settings after the command line and `--model-file` were merged (see
    /// `model_file`): a model must be named by one of them.
    pub fn resolve(&mut self) -> anyhow::Result<()> {
        if self.model.is_none() && self.stan.is_none() {
            match &self.model_file {
                Some(p) => bail!(
                    "{}: no `model` key (glm, gmm, mixglm, eiv, hmm or glmhmm), and no --model",
                    p.display()
                ),
                None => bail!("--model: name a model (glm, gmm, mixglm, eiv, hmm or glmhmm)"),
            }
        }
        Ok(())
    }

    /// Refuses a Stan program in a command that does not run them yet.
    pub fn builtin_only(&self, command: &str) -> anyhow::Result<()> {
        if self.stan.is_some() {
            bail!("--stan: `gpsamp {command}` does not take Stan programs yet (`gpsamp sample --stan` does)");
        }
        Ok(())
    }

    /// The model kind (after [`ModelArgs::resolve`]).
    pub fn kind(&self) -> ModelKind {
        self.model.unwrap_or(ModelKind::Glm)
    }

    /// Whether the model is an HMM (hmm or glmhmm).
    pub fn is_hmm(&self) -> bool {
        matches!(self.kind(), ModelKind::Hmm | ModelKind::Glmhmm)
    }

    /// The HMM shape for `p` inputs and `d` emission columns.
    pub fn hmm_spec(&self, p: usize, d: usize) -> anyhow::Result<gpsamp::hmm::HmmSpec> {
        Ok(self.spec().hmm_spec(p, d)?)
    }

    /// The HMM family for HMC (priors: [`ModelSpec::build_hmm`]).
    pub fn build_hmm(&self, p: usize, d: usize) -> anyhow::Result<gpsamp::Hmm> {
        Ok(self.spec().build_hmm(p, d)?)
    }

    /// A model whose datasets a study simulates itself ([`ModelSpec::build_simulated`]).
    pub fn build_simulated(&self, p: usize) -> anyhow::Result<std::sync::Arc<dyn gpsamp::Model>> {
        Ok(self.spec().build_simulated(p)?)
    }

    /// Any model for `p` input columns, the errors-in-variables family included.
    pub fn build_any(&self, p: usize) -> anyhow::Result<std::sync::Arc<dyn gpsamp::Model>> {
        Ok(self.spec().build_any(p)?)
    }

    /// The GLM-type model (glm, gmm, mixglm) for `p` input columns.
    pub fn build(&self, p: usize) -> anyhow::Result<MixGlm> {
        Ok(self.spec().build(p)?)
    }
}

/// Data options.
#[derive(clap::Args, Debug, Clone)]
pub struct DataArgs {
    /// CSV file with a header line.
    #[arg(long)]
    pub data: PathBuf,
    /// Input columns, comma-separated (none for gmm).
    #[arg(long, value_delimiter = ',')]
    pub x: Vec<String>,
    /// Response column.
    #[arg(long, default_value = "y")]
    pub y: String,
    /// Column whose values split the rows into datasets (fitted as one batch).
    #[arg(long)]
    pub group: Option<String>,
}

impl DataArgs {
    /// Reads and validates the CSV.
    pub fn load(&self) -> anyhow::Result<DataBatch> {
        let spec = CsvSpec {
            x: self.x.clone(),
            y: self.y.clone(),
            group: self.group.clone(),
        };
        Ok(read_csv(&self.data, &spec)?)
    }
}
