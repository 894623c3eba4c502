//! Backends: `cpu` (native Rust, f64, parallel over chains) and `gpu` (wgpu, f32) behind one
//! [`Evaluator`] trait, so engines and tests are written once for both. [`Backend::select`]
//! implements `--backend auto|gpu|cpu`.

pub mod cpu;
pub mod gpu;

use std::sync::Arc;

use crate::data::DataBatch;
use crate::error::{Error, Result};
use crate::model::Model;

pub use cpu::CpuEvaluator;
pub use gpu::{GpuContext, GpuEvaluator};

/// Batch log density + gradient: positions for every chain of every dataset in, log
/// densities and gradients out. Chain `c` belongs to dataset `c / chains_per_dataset`.
pub trait Evaluator {
    /// Unconstrained dimension D.
    fn dim(&self) -> usize;
    /// Chains over all datasets.
    fn n_chains(&self) -> usize;
    /// A description such as `cpu (2 threads)` or `gpu (NVIDIA H100)`.
    fn backend(&self) -> String;
    /// Evaluates `theta` (chains x D) into `logp` (chains) and `grad` (chains x D).
    fn eval(&mut self, theta: &[f64], logp: &mut [f64], grad: &mut [f64]) -> Result<()>;
}

pub(crate) fn check_lengths(
    e: &(impl Evaluator + ?Sized),
    theta: &[f64],
    logp: &[f64],
    grad: &[f64],
) -> Result<()> {
    let (c, d) = (e.n_chains(), e.dim());
    if theta.len() != c * d || logp.len() != c || grad.len() != c * d {
        return Err(Error::Invalid(format!(
            "evaluator for {c} chains x {d} parameters got theta {}, logp {}, grad {}",
            theta.len(),
            logp.len(),
            grad.len()
        )));
    }
    Ok(())
}

/// What `--backend` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A hardware GPU when one exists, else the CPU backend (a software adapter such as
    /// lavapipe is slower than the native CPU backend, so `auto` does not pick it).
    Auto,
    /// Any wgpu adapter, software ones included; an error when none exists.
    Gpu,
    /// The native CPU backend.
    Cpu,
}

/// A chosen backend.
#[derive(Clone)]
pub enum Backend {
    /// Native CPU.
    Cpu,
    /// A GPU device.
    Gpu(Arc<GpuContext>),
}

impl Backend {
    /// Resolves `kind`; `auto` says on stderr which backend it picked and why.
    pub fn select(kind: BackendKind, quiet: bool) -> Result<Self> {
        match kind {
            BackendKind::Cpu => Ok(Backend::Cpu),
            BackendKind::Gpu => Ok(Backend::Gpu(GpuContext::new()?)),
            BackendKind::Auto => match GpuContext::new() {
                Ok(ctx) if ctx.summary.device_type != "Cpu" => {
                    if !quiet {
                        eprintln!(
                            "gpsamp: using GPU adapter {} ({})",
                            ctx.summary.name, ctx.summary.backend
                        );
                    }
                    Ok(Backend::Gpu(ctx))
                }
                Ok(ctx) => {
                    if !quiet {
                        eprintln!(
                            "gpsamp: only a software GPU adapter ({}) exists; falling back to the CPU backend (use --backend gpu to force it)",
                            ctx.summary.name
                        );
                    }
                    Ok(Backend::Cpu)
                }
                Err(e) => {
                    if !quiet {
                        eprintln!("gpsamp: {e}; falling back to the CPU backend");
                    }
                    Ok(Backend::Cpu)
                }
            },
        }
    }

    /// `cpu` or `gpu (adapter name)`.
    pub fn describe(&self) -> String {
        match self {
            Backend::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
            Backend::Gpu(ctx) => format!("gpu ({})", ctx.summary.name),
        }
    }

    /// A batch evaluator for `model` on `data` with `chains_per_dataset` chains each.
    pub fn evaluator(
        &self,
        model: Arc<dyn Model>,
        data: Arc<DataBatch>,
        chains_per_dataset: usize,
    ) -> Result<Box<dyn Evaluator>> {
        Ok(match self {
            Backend::Cpu => Box::new(CpuEvaluator::new(model, data, chains_per_dataset)?),
            Backend::Gpu(ctx) => Box::new(GpuEvaluator::new(
                ctx.clone(),
                model.as_ref(),
                &data,
                chains_per_dataset,
                None,
            )?),
        })
    }

    /// An HMC integrator for `model` on `data` with `chains_per_dataset` chains each, its
    /// random streams keyed by `seed`.
    pub fn integrator(
        &self,
        model: Arc<dyn Model>,
        data: Arc<DataBatch>,
        chains_per_dataset: usize,
        seed: u64,
    ) -> Result<Box<dyn crate::hmc::Integrator>> {
        Ok(match self {
            Backend::Cpu => Box::new(crate::hmc::CpuIntegrator::new(
                model,
                data,
                chains_per_dataset,
                seed,
            )?),
            Backend::Gpu(ctx) => Box::new(crate::hmc::GpuIntegrator::new(
                ctx.clone(),
                model.as_ref(),
                &data,
                chains_per_dataset,
                seed,
                None,
            )?),
        })
    }
}
