//! The CPU backend: the f64 reference (or the f32 kernels), parallel over chains with rayon.

use std::sync::Arc;

use rayon::prelude::*;

use crate::backend::{Evaluator, Precision};
use crate::data::DataBatch;
use crate::error::Result;
use crate::math::LOGP_NEG_INF;
use crate::model::Model;

/// Batch log density + gradient on the CPU (f64 unless [`CpuEvaluator::with_precision`]
/// says f32), one task per chain.
pub struct CpuEvaluator {
    model: Arc<dyn Model>,
    data: Arc<DataBatch>,
    chains_per_dataset: usize,
    constants: Vec<f64>,
    precision: Precision,
}

/// Chains evaluated together by [`Model::log_density_block`]: the largest divisor of the
/// chains per dataset up to what the family asks for (so a block never spans two
/// datasets) that still leaves a block for every thread, in f64; 1 for families without a
/// block kernel and in f32. Each chain's arithmetic is the same in any block, so the draws
/// do not depend on it.
pub fn block_size(
    model: &dyn Model,
    precision: Precision,
    chains_per_dataset: usize,
    chains: usize,
) -> usize {
    let want = model.block_lanes();
    if want <= 1 || precision != Precision::F64 {
        return 1;
    }
    let per_thread = chains.div_ceil(rayon::current_num_threads()).max(1);
    (1..=want.min(chains_per_dataset).min(per_thread))
        .rev()
        .find(|l| chains_per_dataset.is_multiple_of(*l))
        .unwrap_or(1)
}

/// Log densities (up to the constants) and gradients of every chain, `chains_per_dataset`
/// per dataset, in parallel: chain by chain, or in blocks of [`block_size`] chains for a
/// family with a block kernel.
pub fn eval_blocks(
    (model, data): (&dyn Model, &DataBatch),
    chains_per_dataset: usize,
    precision: Precision,
    theta: &[f64],
    grad: &mut [f64],
    logp: &mut [f64],
) {
    let d = model.dim();
    let lanes = block_size(model, precision, chains_per_dataset, logp.len());
    theta
        .par_chunks(d * lanes)
        .zip(grad.par_chunks_mut(d * lanes))
        .zip(logp.par_chunks_mut(lanes))
        .enumerate()
        .for_each_init(Vec::new, |scratch, (k, ((th, g), lp))| {
            let b = k * lanes / chains_per_dataset;
            block_density(precision, model, data, b, lanes, th, g, lp, scratch);
        });
}

/// [`log_density`] of `lanes` chains of dataset `b` (one chain: exactly [`log_density`]).
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn block_density(
    precision: Precision,
    model: &dyn Model,
    data: &DataBatch,
    b: usize,
    lanes: usize,
    theta: &[f64],
    grad: &mut [f64],
    logp: &mut [f64],
    scratch: &mut Vec<f64>,
) {
    if lanes == 1 {
        logp[0] = log_density(precision, model, data, b, theta, grad, scratch);
    } else {
        model.log_density_block(data, b, lanes, theta, grad, logp, scratch);
    }
}

/// One chain's log density in `precision` (how the CPU engines call a model).
#[inline]
pub fn log_density(
    precision: Precision,
    model: &dyn Model,
    data: &DataBatch,
    b: usize,
    theta: &[f64],
    grad: &mut [f64],
    scratch: &mut Vec<f64>,
) -> f64 {
    match precision {
        Precision::F64 => model.log_density(data, b, theta, grad, scratch),
        Precision::F32 => model.log_density_f32(data, b, theta, grad, scratch),
    }
}

impl CpuEvaluator {
    /// An evaluator for `chains_per_dataset` chains on every dataset of `data`.
    pub fn new(
        model: Arc<dyn Model>,
        data: Arc<DataBatch>,
        chains_per_dataset: usize,
    ) -> Result<Self> {
        model.check_data(&data)?;
        if chains_per_dataset == 0 {
            return Err(crate::Error::Invalid(
                "at least one chain per dataset is needed".into(),
            ));
        }
        let constants = (0..data.n_datasets())
            .map(|b| model.constant(&data, b))
            .collect();
        Ok(Self {
            model,
            data,
            chains_per_dataset,
            constants,
            precision: Precision::F64,
        })
    }

    /// The same evaluator computing in `precision`.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }
}

impl Evaluator for CpuEvaluator {
    fn dim(&self) -> usize {
        self.model.dim()
    }

    fn n_chains(&self) -> usize {
        self.data.n_datasets() * self.chains_per_dataset
    }

    fn backend(&self) -> String {
        format!(
            "cpu ({} threads, {})",
            rayon::current_num_threads(),
            self.precision.name()
        )
    }

    fn eval(&mut self, theta: &[f64], logp: &mut [f64], grad: &mut [f64]) -> Result<()> {
        crate::backend::check_lengths(self, theta, logp, grad)?;
        eval_blocks(
            (self.model.as_ref(), &self.data),
            self.chains_per_dataset,
            self.precision,
            theta,
            grad,
            logp,
        );
        let cpd = self.chains_per_dataset;
        for (c, v) in logp.iter_mut().enumerate() {
            *v = if *v <= LOGP_NEG_INF {
                LOGP_NEG_INF
            } else {
                *v + self.constants[c / cpd]
            };
        }
        Ok(())
    }
}
