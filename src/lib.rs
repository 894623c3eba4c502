//! gpsamp: Bayesian inference for thousands of MCMC chains, or thousands of datasets, at
//! once: WGSL compute shaders through `wgpu` on the GPU, and a native CPU twin of every kernel
//! that is both the test reference and a fast fallback.
//!
//! The primitive every engine uses is the batch log density: positions for B datasets ×
//! C chains evaluated in one call on either backend.
//!
//! ```
//! use std::sync::Arc;
//! use gpsamp::{Backend, DataBatch, Likelihood, MixGlm, Model, Priors};
//!
//! // A linear regression simulated from its prior, 100 points.
//! let model = MixGlm::glm(Likelihood::Gaussian, 1, Priors::default()).unwrap();
//! let mut rng = gpsamp::rng::host_rng(7, 0, gpsamp::rng::Purpose::Simulate);
//! let (truth, dataset) = model.simulate(100, &mut rng);
//! let data = Arc::new(DataBatch::new(1, &[dataset]).unwrap());
//!
//! // Four chains on the CPU backend, all at the true parameters.
//! let mut eval = Backend::cpu().evaluator(Arc::new(model), data, 4).unwrap();
//! let theta: Vec<f64> = (0..4).flat_map(|_| truth.clone()).collect();
//! let (mut logp, mut grad) = (vec![0.0; 4], vec![0.0; 4 * truth.len()]);
//! eval.eval(&theta, &mut logp, &mut grad).unwrap();
//! assert!(logp.iter().all(|&l| l == logp[0] && l.is_finite()));
//! ```

pub mod backend;
mod data;
mod device;
pub mod diag;
pub mod error;
pub mod hmc;
pub mod hmm;
pub mod io;
pub mod labels;
pub mod math;
pub mod mdn;
pub mod model;
pub mod rng;
pub mod shader;
pub mod stan;
pub mod study;
pub mod tutorial;
pub mod workflow;

// What a library user needs most, at the crate root: backends, data, models, the sampler's
// settings, and the workflow functions that write the folders the CLI writes.
pub use backend::{Backend, BackendKind, Evaluator, Precision};
pub use data::{DataBatch, Dataset};
pub use error::{Error, Result};
pub use hmc::{Config, RunReport};
pub use model::{Eiv, EivVariant, Hmm, HmmPriors, Likelihood, MixGlm, Model, Priors, ScalePrior};
pub use study::Study;
pub use workflow::{
    em_to_dir, sample_to_dir, study_to_dir, train_to_dir, EmJob, EmRun, MdnJob, MdnRun, SampleJob,
    SampleRun, StudyRun,
};
