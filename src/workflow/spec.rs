//! A model named by its settings: [`ModelSpec`] holds what `gpsamp`'s model flags hold, with
//! the same names (the flags without dashes, as in a `--model-file`), and builds the family.
//! The CLI, `--model-file` and the Python package all describe models this way, so a model
//! means the same thing wherever it is named. Errors are [`Error::Config`] naming the flag.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::hmm::HmmSpec;
use crate::model::{Normal, ScalePrior};
use crate::{Eiv, EivVariant, Hmm, HmmPriors, Likelihood, MixGlm, Model, Priors};

/// Which model family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Generalised linear model: `beta[j]`, `alpha` (and `sigma` for gaussian).
    #[default]
    Glm,
    /// 1-D Gaussian mixture: `weights[k]`, `mu[k]`, `sigma[k]`.
    Gmm,
    /// Mixture of regressions: `weights[k]`, `beta[k,j]`, `alpha[k]` (and `sigma[k]` for gaussian).
    Mixglm,
    /// Errors-in-variables dot product.
    Eiv,
    /// Hidden Markov model with Gaussian emissions.
    Hmm,
    /// GLM-HMM (switching regression, or Bernoulli choices).
    Glmhmm,
}

/// The emission of a GLM-HMM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Emission {
    /// Linear regression with Gaussian noise per state.
    #[default]
    Gaussian,
    /// Bernoulli with a logit link (responses 0/1).
    Bernoulli,
}

/// The settings of a model (see the module docs); `Default` is the CLI's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSpec {
    /// The family.
    pub model: ModelKind,
    /// Likelihood of glm and mixglm: `gaussian`, `bernoulli` or `poisson`.
    pub family: String,
    /// Mixture components (gmm and mixglm).
    pub components: usize,
    /// Fix every noise scale at this value (Gaussian likelihood).
    pub sigma_fixed: Option<f64>,
    /// Prior on regression coefficients: `normal(MEAN,SD)`.
    pub prior_coef: String,
    /// Prior on intercepts and Gaussian-mixture means: `normal(MEAN,SD)`.
    pub prior_intercept: String,
    /// Prior on scales: `halfnormal(SD)`, `exponential(RATE)`, `lognormal(MU,SD)` or
    /// `gamma(SHAPE,RATE)`.
    pub prior_sigma: String,
    /// Symmetric Dirichlet concentration on mixture weights (HMMs: on the initial
    /// distribution and the transition rows).
    pub prior_weights: f64,
    /// eiv: `shared` or `per-observation`.
    pub variant: String,
    /// eiv: the known weights w, one per input column.
    pub w: Vec<f64>,
    /// eiv: observation noise on y.
    pub obs_noise: bool,
    /// eiv: prior on sigma_x.
    pub prior_sigma_x: String,
    /// eiv: prior on sigma_w.
    pub prior_sigma_w: String,
    /// eiv: prior on sigma_obs.
    pub prior_sigma_obs: String,
    /// eiv shared: systems pooled per dataset.
    pub systems: Option<usize>,
    /// hmm/glmhmm: hidden states.
    pub states: usize,
    /// glmhmm: the emission of each state.
    pub emission: Emission,
    /// hmm/glmhmm: added to each transition row's diagonal concentration.
    pub stickiness: f64,
}

/// The default of `prior_coef`, `prior_intercept` and `prior_sigma`: an HMM replaces an
/// untouched default by its own.
const DEFAULT_COEF: &str = "normal(0,1)";
const DEFAULT_SIGMA: &str = "halfnormal(1)";

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            model: ModelKind::Glm,
            family: "gaussian".into(),
            components: 2,
            sigma_fixed: None,
            prior_coef: DEFAULT_COEF.into(),
            prior_intercept: DEFAULT_COEF.into(),
            prior_sigma: DEFAULT_SIGMA.into(),
            prior_weights: 1.0,
            variant: "shared".into(),
            w: Vec::new(),
            obs_noise: false,
            prior_sigma_x: "lognormal(-1,1)".into(),
            prior_sigma_w: "lognormal(-2,1)".into(),
            prior_sigma_obs: "lognormal(-2,1)".into(),
            systems: None,
            states: 3,
            emission: Emission::Gaussian,
            stickiness: 0.0,
        }
    }
}

fn config(flag: &str, message: impl Into<String>) -> Error {
    Error::Config {
        flag: flag.into(),
        message: message.into(),
    }
}

/// `NAME(ARGS)` with numeric arguments.
fn call(flag: &str, text: &str) -> Result<(String, Vec<f64>)> {
    let t = text.trim().to_lowercase();
    let (name, rest) = t.split_once('(').ok_or_else(|| {
        config(
            flag,
            format!("expected NAME(ARGS), e.g. normal(0,1), got {text:?}"),
        )
    })?;
    let args = rest
        .strip_suffix(')')
        .ok_or_else(|| config(flag, format!("missing ')' in {text:?}")))?;
    let vals = args
        .split(',')
        .map(|a| {
            a.trim()
                .parse::<f64>()
                .map_err(|_| config(flag, format!("{a:?} is not a number in {text:?}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((name.trim().to_string(), vals))
}

/// A normal prior written `normal(MEAN,SD)`; errors name `flag`.
pub fn parse_normal(flag: &str, text: &str) -> Result<Normal> {
    match call(flag, text)? {
        (n, v) if n == "normal" && v.len() == 2 => {
            Normal::new(v[0], v[1]).map_err(|e| config(flag, e.to_string()))
        }
        _ => Err(config(
            flag,
            format!("expected normal(MEAN,SD), got {text:?}"),
        )),
    }
}

/// A scale prior written `halfnormal(SD)`, `exponential(RATE)`, `lognormal(MU,SD)` or
/// `gamma(SHAPE,RATE)`; errors name `flag`.
pub fn parse_scale(flag: &str, text: &str) -> Result<ScalePrior> {
    let (n, v) = call(flag, text)?;
    let p = match (n.as_str(), v.as_slice()) {
        ("halfnormal", [sd]) => ScalePrior::HalfNormal { sd: *sd },
        ("exponential", [rate]) => ScalePrior::Exponential { rate: *rate },
        ("lognormal", [mu, sd]) => ScalePrior::LogNormal { mu: *mu, sd: *sd },
        ("gamma", [shape, rate]) => ScalePrior::Gamma { shape: *shape, rate: *rate },
        _ => return Err(config(flag, format!("expected halfnormal(SD), exponential(RATE), lognormal(MU,SD) or gamma(SHAPE,RATE), got {text:?}"))),
    };
    p.validate().map_err(|e| config(flag, e.to_string()))?;
    Ok(p)
}

impl ModelSpec {
    /// Settings from JSON (the keys of a model file; unknown keys are refused, naming them).
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| config("--model-file", e.to_string()))
    }

    /// Whether the model is an HMM (hmm or glmhmm).
    pub fn is_hmm(&self) -> bool {
        matches!(self.model, ModelKind::Hmm | ModelKind::Glmhmm)
    }

    /// The likelihood `family` names.
    pub fn likelihood(&self) -> Result<Likelihood> {
        match self.family.to_lowercase().as_str() {
            "gaussian" => Ok(Likelihood::Gaussian),
            "bernoulli" => Ok(Likelihood::Bernoulli),
            "poisson" => Ok(Likelihood::Poisson),
            other => Err(config(
                "--family",
                format!("{other:?} is not gaussian, bernoulli or poisson"),
            )),
        }
    }

    /// The priors of the GLM-type families.
    pub fn priors(&self) -> Result<Priors> {
        let p = Priors {
            coef: parse_normal("--prior-coef", &self.prior_coef)?,
            intercept: parse_normal("--prior-intercept", &self.prior_intercept)?,
            scale: parse_scale("--prior-sigma", &self.prior_sigma)?,
            weights: self.prior_weights,
        };
        p.validate()
            .map_err(|e| config("--prior-weights", e.to_string()))?;
        Ok(p)
    }

    /// The HMM shape for `p` inputs and `d` emission columns.
    pub fn hmm_spec(&self, p: usize, d: usize) -> Result<HmmSpec> {
        if self.states < 1 {
            return Err(config(
                "--states",
                format!("must be at least 1, got {}", self.states),
            ));
        }
        match self.model {
            ModelKind::Hmm => {
                if p != 0 {
                    return Err(config(
                        "--x",
                        "a Gaussian HMM takes no inputs (use --model glmhmm)",
                    ));
                }
                HmmSpec::gaussian(self.states, d)
            }
            ModelKind::Glmhmm => {
                if d != 1 {
                    return Err(config(
                        "--y",
                        format!("a GLM-HMM has one emission column, got {d}"),
                    ));
                }
                match self.emission {
                    Emission::Gaussian => HmmSpec::regression(self.states, p),
                    Emission::Bernoulli => HmmSpec::bernoulli(self.states, p),
                }
            }
            _ => Err(config("--model", "not an HMM")),
        }
    }

    /// The HMM family for HMC. Priors: `prior_weights` (Dirichlet concentration of the
    /// initial distribution and transition rows), `stickiness`, `prior_intercept` (means and
    /// biases; normal(0,5) when left at its default), `prior_coef` (weights; normal(0,2)
    /// when left at its default), `prior_sigma` (halfnormal(2) when left at its default).
    pub fn build_hmm(&self, p: usize, d: usize) -> Result<Hmm> {
        let spec = self.hmm_spec(p, d)?;
        let dflt = HmmPriors::default();
        let priors = HmmPriors {
            initial: self.prior_weights,
            transition: self.prior_weights,
            stickiness: self.stickiness,
            loc: if self.prior_intercept == DEFAULT_COEF {
                dflt.loc
            } else {
                parse_normal("--prior-intercept", &self.prior_intercept)?
            },
            coef: if self.prior_coef == DEFAULT_COEF {
                dflt.coef
            } else {
                parse_normal("--prior-coef", &self.prior_coef)?
            },
            scale: if self.prior_sigma == DEFAULT_SIGMA {
                dflt.scale
            } else {
                parse_scale("--prior-sigma", &self.prior_sigma)?
            },
        };
        Hmm::new(spec, priors).map_err(|e| config("--prior-weights / --stickiness", e.to_string()))
    }

    /// A model whose datasets a study simulates itself: any family, HMMs included (`p`
    /// inputs for glmhmm, one emission dimension; each dataset is one sequence).
    pub fn build_simulated(&self, p: usize) -> Result<Arc<dyn Model>> {
        match self.model {
            ModelKind::Hmm => Ok(Arc::new(self.build_hmm(0, 1)?)),
            ModelKind::Glmhmm => Ok(Arc::new(self.build_hmm(p, 1)?)),
            _ => self.build_any(p),
        }
    }

    /// Any model for `p` input columns of a table, the errors-in-variables family included.
    pub fn build_any(&self, p: usize) -> Result<Arc<dyn Model>> {
        if self.is_hmm() {
            return Err(config(
                "--model",
                "hmm/glmhmm reads sequences (--seq, --t); this command does not support it",
            ));
        }
        if self.model != ModelKind::Eiv {
            return Ok(Arc::new(self.build(p)?));
        }
        if self.w.is_empty() {
            return Err(config(
                "--w",
                "the eiv model needs the known weights, e.g. --w 1.0,2.0,0.5",
            ));
        }
        if p != self.w.len() {
            return Err(config(
                "--w",
                format!(
                    "{} weights given but --x names {p} input column(s)",
                    self.w.len()
                ),
            ));
        }
        let variant = match self.variant.to_lowercase().as_str() {
            "shared" => EivVariant::Shared,
            "per-observation" | "per_observation" => EivVariant::PerObservation,
            other => {
                return Err(config(
                    "--variant",
                    format!("{other:?} is not shared or per-observation"),
                ))
            }
        };
        let mut m = Eiv::new(self.w.clone(), variant, self.obs_noise)?.with_priors(
            parse_scale("--prior-sigma-x", &self.prior_sigma_x)?,
            parse_scale("--prior-sigma-w", &self.prior_sigma_w)?,
            parse_scale("--prior-sigma-obs", &self.prior_sigma_obs)?,
        )?;
        if let Some(s) = self.systems {
            m = m.with_systems(s)?;
        }
        Ok(Arc::new(m))
    }

    /// The GLM-type model (glm, gmm, mixglm) for `p` input columns.
    pub fn build(&self, p: usize) -> Result<MixGlm> {
        if self.model == ModelKind::Eiv || self.is_hmm() {
            return Err(config(
                "--model",
                format!("{:?} is not a GLM-type model here", self.model),
            ));
        }
        let lik = self.likelihood()?;
        let priors = self.priors()?;
        if self.components < 1 {
            return Err(config(
                "--components",
                format!("must be at least 1, got {}", self.components),
            ));
        }
        let m = match self.model {
            // Without inputs: an intercept-only GLM (alpha, and sigma for gaussian).
            ModelKind::Glm => MixGlm::glm(lik, p, priors)?,
            ModelKind::Gmm => {
                if p != 0 {
                    return Err(config("--x", "a Gaussian mixture takes no input columns"));
                }
                if lik != Likelihood::Gaussian {
                    return Err(config("--family", "a Gaussian mixture is gaussian"));
                }
                MixGlm::gmm(self.components, priors)?
            }
            _ => {
                if p == 0 {
                    return Err(config(
                        "--x",
                        "a mixture of regressions needs at least one input column",
                    ));
                }
                MixGlm::new(self.components, p, lik, priors)?
            }
        };
        match self.sigma_fixed {
            Some(s) => m.with_fixed_sigma(s),
            None => Ok(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_json_build_the_family_and_refuse_unknown_keys() {
        let s = ModelSpec::from_json(r#"{"model": "mixglm", "components": 3}"#).unwrap();
        let m = s.build(1).unwrap();
        assert_eq!((m.components(), m.features()), (3, 1));
        let e = ModelSpec::from_json(r#"{"model": "mixglm", "compnents": 3}"#).unwrap_err();
        assert!(e.to_string().contains("compnents"), "{e}");
        let bad = ModelSpec {
            prior_sigma: "halfnormal(-1)".into(),
            ..ModelSpec::default()
        };
        match bad.build(1).unwrap_err() {
            Error::Config { flag, .. } => assert_eq!(flag, "--prior-sigma"),
            e => panic!("{e}"),
        }
    }
}
