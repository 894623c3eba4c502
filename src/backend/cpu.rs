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
        let d = self.dim();
        let (model, data, cpd, consts, prec) = (
            &self.model,
            &self.data,
            self.chains_per_dataset,
            &self.constants,
            self.precision,
        );
        theta
            .par_chunks(d)
            .zip(grad.par_chunks_mut(d))
            .zip(logp.par_iter_mut())
            .enumerate()
            .for_each_init(Vec::new, |scratch, (c, ((th, g), lp))| {
                let b = c / cpd;
                let v = log_density(prec, model.as_ref(), data, b, th, g, scratch);
                *lp = if v <= LOGP_NEG_INF {
                    LOGP_NEG_INF
                } else {
                    v + consts[b]
                };
            });
        Ok(())
    }
}
