//! Arguments shared by subcommands: the model (family, components, priors) and the data.

use std::path::PathBuf;

use anyhow::{bail, Context};
use gpsamp::io::{read_csv, CsvSpec};
use gpsamp::model::{Normal, ScalePrior};
use gpsamp::{DataBatch, Likelihood, MixGlm, Priors};

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

/// The backend `--backend` asks for; unless `quiet`, says on stderr what `auto` picked.
pub fn select_backend(arg: BackendArg, quiet: bool) -> anyhow::Result<gpsamp::Backend> {
    let kind = match arg {
        BackendArg::Auto => gpsamp::BackendKind::Auto,
        BackendArg::Gpu => gpsamp::BackendKind::Gpu,
        BackendArg::Cpu => gpsamp::BackendKind::Cpu,
    };
    let (backend, note) = gpsamp::Backend::select_noted(kind)?;
    if let (Some(n), false) = (note, quiet) {
        eprintln!("gpsamp: {n}");
    }
    Ok(backend)
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
    #[arg(long, value_enum, required_unless_present = "model_file")]
    pub model: Option<ModelKind>,
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

fn call(flag: &str, text: &str) -> anyhow::Result<(String, Vec<f64>)> {
    let t = text.trim().to_lowercase();
    let (name, rest) = t
        .split_once('(')
        .with_context(|| format!("{flag}: expected NAME(ARGS), e.g. normal(0,1), got {text:?}"))?;
    let args = rest
        .strip_suffix(')')
        .with_context(|| format!("{flag}: missing ')' in {text:?}"))?;
    let vals = args
        .split(',')
        .map(|a| {
            a.trim()
                .parse::<f64>()
                .with_context(|| format!("{flag}: {a:?} is not a number in {text:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((name.trim().to_string(), vals))
}

fn normal(flag: &str, text: &str) -> anyhow::Result<Normal> {
    match call(flag, text)? {
        (n, v) if n == "normal" && v.len() == 2 => {
            Normal::new(v[0], v[1]).with_context(|| flag.to_string())
        }
        _ => bail!("{flag}: expected normal(MEAN,SD), got {text:?}"),
    }
}

fn scale(flag: &str, text: &str) -> anyhow::Result<ScalePrior> {
    let (n, v) = call(flag, text)?;
    let p = match (n.as_str(), v.as_slice()) {
        ("halfnormal", [sd]) => ScalePrior::HalfNormal { sd: *sd },
        ("exponential", [rate]) => ScalePrior::Exponential { rate: *rate },
        ("lognormal", [mu, sd]) => ScalePrior::LogNormal { mu: *mu, sd: *sd },
        ("gamma", [shape, rate]) => ScalePrior::Gamma { shape: *shape, rate: *rate },
        _ => bail!("{flag}: expected halfnormal(SD), exponential(RATE), lognormal(MU,SD) or gamma(SHAPE,RATE), got {text:?}"),
    };
    p.validate().with_context(|| flag.to_string())?;
    Ok(p)
}

impl ModelArgs {
    /// The priors the flags describe.
    pub fn priors(&self) -> anyhow::Result<Priors> {
        let p = Priors {
            coef: normal("--prior-coef", &self.prior_coef)?,
            intercept: normal("--prior-intercept", &self.prior_intercept)?,
            scale: scale("--prior-sigma", &self.prior_sigma)?,
            weights: self.prior_weights,
        };
        p.validate().context("--prior-weights")?;
        Ok(p)
    }

    /// Checks the settings after the command line and `--model-file` were merged (see
    /// `model_file`): a model must be named by one of them.
    pub fn resolve(&mut self) -> anyhow::Result<()> {
        if self.model.is_none() {
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
        use gpsamp::hmm::HmmSpec;
        if self.states < 1 {
            bail!("--states must be at least 1, got {}", self.states);
        }
        Ok(match self.kind() {
            ModelKind::Hmm => {
                if p != 0 {
                    bail!("--x: a Gaussian HMM takes no inputs (use --model glmhmm)");
                }
                HmmSpec::gaussian(self.states, d).context("--states")?
            }
            ModelKind::Glmhmm => {
                if d != 1 {
                    bail!("--y: a GLM-HMM has one emission column, got {d}");
                }
                match self.emission {
                    Emission::Gaussian => HmmSpec::regression(self.states, p),
                    Emission::Bernoulli => HmmSpec::bernoulli(self.states, p),
                }
                .context("--states")?
            }
            _ => bail!("--model: not an HMM"),
        })
    }

    /// The HMM family for HMC. Priors: --prior-weights (Dirichlet concentration of the
    /// initial distribution and transition rows), --stickiness, --prior-intercept (means and
    /// biases; normal(0,5) when left at its default), --prior-coef (weights; normal(0,2) when
    /// left at its default), --prior-sigma (halfnormal(2) when left at its default).
    pub fn build_hmm(&self, p: usize, d: usize) -> anyhow::Result<gpsamp::Hmm> {
        let spec = self.hmm_spec(p, d)?;
        let dflt = gpsamp::HmmPriors::default();
        let priors = gpsamp::HmmPriors {
            initial: self.prior_weights,
            transition: self.prior_weights,
            stickiness: self.stickiness,
            loc: if self.prior_intercept == "normal(0,1)" {
                dflt.loc
            } else {
                normal("--prior-intercept", &self.prior_intercept)?
            },
            coef: if self.prior_coef == "normal(0,1)" {
                dflt.coef
            } else {
                normal("--prior-coef", &self.prior_coef)?
            },
            scale: if self.prior_sigma == "halfnormal(1)" {
                dflt.scale
            } else {
                scale("--prior-sigma", &self.prior_sigma)?
            },
        };
        gpsamp::Hmm::new(spec, priors).context("--prior-weights / --stickiness")
    }

    /// A model whose datasets a study simulates itself (so no data columns to read): any
    /// family, HMMs included (`p` inputs for glmhmm, one emission dimension; each dataset is
    /// one sequence).
    pub fn build_simulated(&self, p: usize) -> anyhow::Result<std::sync::Arc<dyn gpsamp::Model>> {
        match self.kind() {
            ModelKind::Hmm => Ok(std::sync::Arc::new(self.build_hmm(0, 1)?)),
            ModelKind::Glmhmm => Ok(std::sync::Arc::new(self.build_hmm(p, 1)?)),
            _ => self.build_any(p),
        }
    }

    /// Any model for `p` input columns, the errors-in-variables family included.
    pub fn build_any(&self, p: usize) -> anyhow::Result<std::sync::Arc<dyn gpsamp::Model>> {
        if self.is_hmm() {
            bail!(
                "--model hmm/glmhmm reads sequences (--seq, --t); this command does not support it"
            );
        }
        if self.kind() != ModelKind::Eiv {
            return Ok(std::sync::Arc::new(self.build(p)?));
        }
        if self.w.is_empty() {
            bail!("--w: the eiv model needs the known weights, e.g. --w 1.0,2.0,0.5");
        }
        if p != self.w.len() {
            bail!(
                "--w gives {} weights but --x names {p} input column(s)",
                self.w.len()
            );
        }
        let variant = match self.variant {
            Variant::Shared => gpsamp::EivVariant::Shared,
            Variant::PerObservation => gpsamp::EivVariant::PerObservation,
        };
        let mut m = gpsamp::Eiv::new(self.w.clone(), variant, self.obs_noise)?.with_priors(
            scale("--prior-sigma-x", &self.prior_sigma_x)?,
            scale("--prior-sigma-w", &self.prior_sigma_w)?,
            scale("--prior-sigma-obs", &self.prior_sigma_obs)?,
        )?;
        if let Some(s) = self.systems {
            m = m.with_systems(s)?;
        }
        Ok(std::sync::Arc::new(m))
    }

    /// The GLM-type model (glm, gmm, mixglm) for `p` input columns.
    pub fn build(&self, p: usize) -> anyhow::Result<MixGlm> {
        if self.kind() == ModelKind::Eiv || self.is_hmm() {
            bail!("--model {:?} is not a GLM-type model here", self.kind());
        }
        let m = self.build_free(p)?;
        match self.sigma_fixed {
            Some(s) => Ok(m.with_fixed_sigma(s)?),
            None => Ok(m),
        }
    }

    fn build_free(&self, p: usize) -> anyhow::Result<MixGlm> {
        let lik = match self.family {
            Family::Gaussian => Likelihood::Gaussian,
            Family::Bernoulli => Likelihood::Bernoulli,
            Family::Poisson => Likelihood::Poisson,
        };
        let priors = self.priors()?;
        if self.components < 1 {
            bail!("--components must be at least 1, got {}", self.components);
        }
        Ok(match self.kind() {
            ModelKind::Glm => {
                MixGlm::glm(lik, p, priors).context("--x: a GLM needs at least one input column")?
            }
            ModelKind::Gmm => {
                if p != 0 {
                    bail!("--x: a Gaussian mixture takes no input columns");
                }
                if self.family != Family::Gaussian {
                    bail!("--family: a Gaussian mixture is gaussian");
                }
                MixGlm::gmm(self.components, priors)?
            }
            ModelKind::Mixglm => {
                if p == 0 {
                    bail!("--x: a mixture of regressions needs at least one input column");
                }
                MixGlm::new(self.components, p, lik, priors)?
            }
            ModelKind::Eiv | ModelKind::Hmm | ModelKind::Glmhmm => {
                unreachable!("handled by build_any")
            }
        })
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
