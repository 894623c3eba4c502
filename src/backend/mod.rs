//! Backends: `cpu` (native Rust, f64 or f32, parallel over chains) and `gpu` (wgpu, f32, on the
//! `device` runtime) behind one [`Evaluator`] trait, so engines and tests are written
//! once for both. [`Backend::select`] implements `--backend auto|gpu|cpu`. Engines put
//! themselves on a [`Backend`] (`hmc::integrator`, `hmm::em::fit`, `mdn::train::train`,
//! `study::Study::run`); this layer knows none of them.

pub mod cpu;
pub mod gpu;

use std::sync::Arc;

use crate::data::DataBatch;
use crate::error::{Error, Result};
use crate::model::Model;

pub use crate::device::{list_adapters, AdapterSummary, GpuContext};
pub use cpu::CpuEvaluator;
pub use gpu::{EvalParams, GpuEvaluator};

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

/// Fewest chains (all datasets together) for which `auto` puts a sampler run on a hardware
/// GPU ([`Backend::select_for_chains`]). Measured on an H100 beside 16 CPU threads
/// (`docs/bench/h100-2026-11-27`): to bulk ESS 10 000, 4 chains took 0.25 s (glm) and 0.60 s
/// (mixture of regressions) on the CPU against 1.01 s and 5.10 s on the GPU, 1 024 chains
/// 0.74 s and 2.18 s against 0.36 s and 1.33 s; mixture evaluations at 64 chains ran at
/// 1.6e6/s on the CPU against 8.9e5/s on the GPU, at 1 024 chains 4.3e6/s against 1.3e7/s.
pub const AUTO_GPU_MIN_CHAINS: usize = 256;

/// What `--backend` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
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

/// The arithmetic of the CPU backend's log densities (`--precision`; the default, f32, is
/// what the README's measurements justify). The GPU computes in f32 whatever this says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Single precision: data and per-point arithmetic in f32 on twice the SIMD lanes, sums
    /// over points folded into f64 ([`crate::Model::log_density_f32`]); families without an
    /// f32 kernel compute in f64.
    #[default]
    F32,
    /// Double precision: the reference every other kernel is tested against.
    F64,
}

impl Precision {
    /// `f32` or `f64`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        }
    }
}

/// A chosen backend.
#[derive(Clone)]
pub enum Backend {
    /// Native CPU, computing log densities in the given precision.
    Cpu(Precision),
    /// A GPU device.
    Gpu(Arc<GpuContext>),
}

impl Backend {
    /// The CPU backend in the default [`Precision`].
    pub fn cpu() -> Self {
        Backend::Cpu(Precision::default())
    }

    /// This backend with its CPU log densities in `precision` (the GPU is unchanged).
    pub fn with_precision(self, precision: Precision) -> Self {
        match self {
            Backend::Cpu(_) => Backend::Cpu(precision),
            gpu => gpu,
        }
    }

    /// This backend as it computes `model`: f32 on the CPU falls back to f64 for a family
    /// without an f32 kernel ([`Model::has_f32_kernel`]), so [`Backend::describe`] and the
    /// outputs that record it say the arithmetic that ran.
    pub fn for_model(self, model: &dyn Model) -> Self {
        match self {
            Backend::Cpu(Precision::F32) if !model.has_f32_kernel() => Backend::Cpu(Precision::F64),
            other => other,
        }
    }

    /// Resolves `kind` (see [`Backend::select_noted`] for why `auto` picked what it did).
    pub fn select(kind: BackendKind) -> Result<Self> {
        Ok(Self::select_noted(kind)?.0)
    }

    /// [`Backend::select_noted`] for a sampler run of `chains` chains in all: `auto` takes
    /// the CPU backend, without probing for a GPU, below [`AUTO_GPU_MIN_CHAINS`].
    pub fn select_for_chains(kind: BackendKind, chains: usize) -> Result<(Self, Option<String>)> {
        if kind == BackendKind::Auto && chains < AUTO_GPU_MIN_CHAINS {
            return Ok((
                Backend::cpu(),
                Some(format!(
                    "{chains} chains run on the CPU backend: below {AUTO_GPU_MIN_CHAINS} chains it is faster than a GPU (each GPU transition costs a dispatch and a read-back whatever the chain count; --backend gpu forces the GPU)"
                )),
            ));
        }
        Self::select_noted(kind)
    }

    /// [`Backend::select_for_chains`] for a run of `model`: `auto` takes the CPU backend for
    /// a family without a GPU kernel ([`Model::has_gpu_kernel`]); an explicit `gpu` is left
    /// for the GPU engines to refuse with the family's name.
    pub fn select_for_model(
        kind: BackendKind,
        chains: usize,
        model: &dyn Model,
    ) -> Result<(Self, Option<String>)> {
        if kind == BackendKind::Auto && !model.has_gpu_kernel() {
            return Ok((
                Backend::cpu(),
                Some(format!(
                    "{} runs on the CPU backend: it has no GPU kernel yet",
                    model.name()
                )),
            ));
        }
        Self::select_for_chains(kind, chains)
    }

    /// Resolves `kind`, with a note for the user when `auto` chose: which GPU adapter, or
    /// why it fell back to the CPU backend.
    pub fn select_noted(kind: BackendKind) -> Result<(Self, Option<String>)> {
        Ok(match kind {
            BackendKind::Cpu => (Backend::cpu(), None),
            BackendKind::Gpu => (Backend::Gpu(GpuContext::new()?), None),
            BackendKind::Auto => match GpuContext::new() {
                Ok(ctx) if ctx.summary.device_type != "Cpu" => {
                    let note = format!(
                        "using GPU adapter {} ({})",
                        ctx.summary.name, ctx.summary.backend
                    );
                    (Backend::Gpu(ctx), Some(note))
                }
                Ok(ctx) => (
                    Backend::cpu(),
                    Some(format!(
                        "only a software GPU adapter ({}) exists; falling back to the CPU backend (use --backend gpu to force it)",
                        ctx.summary.name
                    )),
                ),
                Err(e) => (
                    Backend::cpu(),
                    Some(format!("{e}; falling back to the CPU backend")),
                ),
            },
        })
    }

    /// `cpu` or `gpu (adapter name)`.
    pub fn describe(&self) -> String {
        match self {
            Backend::Cpu(p) => format!(
                "cpu ({} threads, {})",
                rayon::current_num_threads(),
                p.name()
            ),
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
            Backend::Cpu(p) => {
                Box::new(CpuEvaluator::new(model, data, chains_per_dataset)?.with_precision(*p))
            }
            Backend::Gpu(ctx) => Box::new(GpuEvaluator::new(
                ctx.clone(),
                model.as_ref(),
                &data,
                chains_per_dataset,
                None,
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_keeps_small_ensembles_on_the_cpu() {
        // Below the threshold `auto` never probes for a GPU, and says why.
        for chains in [1, 4, AUTO_GPU_MIN_CHAINS - 1] {
            let (b, note) = Backend::select_for_chains(BackendKind::Auto, chains).unwrap();
            assert!(matches!(b, Backend::Cpu(_)));
            let note = note.expect("a note");
            assert!(note.contains(&format!("{chains} chains")) && note.contains("--backend gpu"));
        }
        // An explicit choice is kept whatever the count.
        let (b, note) = Backend::select_for_chains(BackendKind::Cpu, 1 << 20).unwrap();
        assert!(matches!(b, Backend::Cpu(_)) && note.is_none());
        // At the threshold `auto` decides as select_noted does (here: a GPU only if a
        // hardware adapter exists, so never a software one).
        let (b, _) = Backend::select_for_chains(BackendKind::Auto, AUTO_GPU_MIN_CHAINS).unwrap();
        if let Backend::Gpu(ctx) = b {
            assert_ne!(ctx.summary.device_type, "Cpu");
        }
    }

    #[test]
    fn auto_keeps_families_without_a_gpu_kernel_on_the_cpu() {
        // A Stan program without parameters (one that only generates quantities) has none.
        let src = "generated quantities {\n  real x = 1;\n}\n";
        let m = crate::stan::StanModel::compile(std::path::Path::new("m.stan"), src, None).unwrap();
        assert!(!m.has_gpu_kernel());
        let (b, note) = Backend::select_for_model(BackendKind::Auto, 1 << 20, &m).unwrap();
        assert!(matches!(b, Backend::Cpu(_)));
        assert!(note.unwrap().contains("no GPU kernel"));
        // Families with one decide by the chain count as before.
        let glm =
            crate::MixGlm::glm(crate::Likelihood::Gaussian, 1, crate::Priors::default()).unwrap();
        let (b, note) = Backend::select_for_model(BackendKind::Auto, 4, &glm).unwrap();
        assert!(matches!(b, Backend::Cpu(_)) && note.unwrap().contains("4 chains"));
    }
}
