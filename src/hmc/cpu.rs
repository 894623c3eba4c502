//! The CPU twin of `shaders/hmc_transition.wgsl`: one HMC transition per chain (momentum
//! from Philox, leapfrog with a diagonal or dense inverse mass ([`super::metric`]),
//! Metropolis accept from Philox),
//! parallel over chains with rayon; positions and momenta in f64, log densities in the
//! backend's precision.

// The leapfrog loops index several arrays of length D in step, as the WGSL twin does.
#![allow(clippy::needless_range_loop)]

use std::sync::Arc;

use rayon::prelude::*;

use super::{metric, Integrator, StepOut, Tuning, MAX_ENERGY_ERROR};
use crate::backend::cpu::{block_density, block_size, eval_blocks};
use crate::backend::Precision;
use crate::data::DataBatch;
use crate::error::Result;
use crate::math::LOGP_NEG_INF;
use crate::model::Model;
use crate::rng::{Purpose, Stream};

/// HMC transitions on the CPU.
pub struct CpuIntegrator {
    model: Arc<dyn Model>,
    data: Arc<DataBatch>,
    chains_per_dataset: usize,
    seed: u64,
    chain_offset: u32,
    precision: Precision,
    q: Vec<f64>,
    logp: Vec<f64>,
    grad: Vec<f64>,
}

impl CpuIntegrator {
    /// An integrator for `chains_per_dataset` chains on each dataset of `data`.
    pub fn new(
        model: Arc<dyn Model>,
        data: Arc<DataBatch>,
        chains_per_dataset: usize,
        seed: u64,
    ) -> Result<Self> {
        model.check_data(&data)?;
        let n = data.n_datasets() * chains_per_dataset;
        let d = model.dim();
        Ok(Self {
            model,
            data,
            chains_per_dataset,
            seed,
            chain_offset: 0,
            precision: Precision::F64,
            q: vec![0.0; n * d],
            logp: vec![0.0; n],
            grad: vec![0.0; n * d],
        })
    }

    /// The same integrator computing log densities in `precision` (f64 unless set).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }
}

/// Where a block's transition writes, per chain: proposal and velocity (`lanes` × D),
/// acceptance probability, divergence and energy.
type BlockOut<'a> = (
    &'a mut [f64],
    &'a mut [f64],
    &'a mut [f64],
    &'a mut [bool],
    &'a mut [f64],
);

/// Scratch of one block's transition.
#[derive(Default)]
struct Work {
    p: Vec<f64>,
    q1: Vec<f64>,
    g1: Vec<f64>,
    lp1: Vec<f64>,
    h0: Vec<f64>,
    scratch: Vec<f64>,
    /// One chain's `Lᵀ g` or `L r` (dense metric).
    tmp: Vec<f64>,
}

/// One transition of a block of `lanes` chains of dataset `b` (positions one after another,
/// the first chain's Philox stream `stream_chain`), evaluated together by the family's
/// block kernel; chain by chain it is the shape of the WGSL kernel's `main`, and each
/// chain's arithmetic is the same whatever the block size.
#[allow(clippy::too_many_arguments)]
fn transition(
    (precision, model): (Precision, &dyn Model),
    data: &DataBatch,
    b: usize,
    lanes: usize,
    stream_chain: u32,
    iter: u32,
    seed: u64,
    tuning: &Tuning,
    q: &mut [f64],
    logp: &mut [f64],
    grad: &mut [f64],
    w: &mut Work,
    out: BlockOut,
) {
    let d = q.len() / lanes;
    let (prop, vel, accept_prob, divergent, energy) = out;
    let eps = tuning.step_size;
    let m = &tuning.inv_mass;
    // Dense metric: `w.p` holds the whitened momentum r = Lᵀ p (see `super::metric`).
    let l = &tuning.chol;
    let dense = !l.is_empty();
    w.tmp.resize(d, 0.0);
    w.p.resize(lanes * d, 0.0);
    w.q1.clear();
    w.q1.extend_from_slice(q);
    w.g1.clear();
    w.g1.extend_from_slice(grad);
    w.lp1.clear();
    w.lp1.extend_from_slice(logp);
    w.h0.resize(lanes, 0.0);
    for c in 0..lanes {
        let mom = Stream::new(seed, stream_chain + c as u32, iter, Purpose::Momentum);
        let p = &mut w.p[c * d..(c + 1) * d];
        let mut k0 = 0.0;
        for i in 0..d {
            if dense {
                p[i] = mom.normal(i as u32);
                k0 += p[i] * p[i];
            } else {
                p[i] = mom.normal(i as u32) / m[i].sqrt();
                k0 += m[i] * p[i] * p[i];
            }
        }
        w.h0[c] = -logp[c] + 0.5 * k0;
    }
    for _ in 0..tuning.n_steps {
        if dense {
            for k in (0..lanes * d).step_by(d) {
                let r = k..k + d;
                metric::lt_mul(l, &w.g1[r.clone()], &mut w.tmp);
                w.p[r.clone()]
                    .iter_mut()
                    .zip(&w.tmp)
                    .for_each(|(p, t)| *p += 0.5 * eps * t);
                metric::l_mul(l, &w.p[r.clone()], &mut w.tmp);
                w.q1[r]
                    .iter_mut()
                    .zip(&w.tmp)
                    .for_each(|(q, t)| *q += eps * t);
            }
        } else {
            for k in 0..lanes * d {
                let i = k % d;
                w.p[k] += 0.5 * eps * w.g1[k];
                w.q1[k] += eps * m[i] * w.p[k];
            }
        }
        block_density(
            precision,
            model,
            data,
            b,
            lanes,
            &w.q1,
            &mut w.g1,
            &mut w.lp1,
            &mut w.scratch,
        );
        if dense {
            for k in (0..lanes * d).step_by(d) {
                metric::lt_mul(l, &w.g1[k..k + d], &mut w.tmp);
                w.p[k..k + d]
                    .iter_mut()
                    .zip(&w.tmp)
                    .for_each(|(p, t)| *p += 0.5 * eps * t);
            }
        } else {
            for k in 0..lanes * d {
                w.p[k] += 0.5 * eps * w.g1[k];
            }
        }
    }
    for c in 0..lanes {
        let r = c * d..(c + 1) * d;
        let mut k1 = 0.0;
        if dense {
            metric::l_mul(l, &w.p[r.clone()], &mut vel[r.clone()]);
        }
        for i in 0..d {
            let k = c * d + i;
            prop[k] = w.q1[k];
            if dense {
                k1 += w.p[k] * w.p[k];
            } else {
                k1 += m[i] * w.p[k] * w.p[k];
                vel[k] = m[i] * w.p[k];
            }
        }
        let (h0, lp1) = (w.h0[c], w.lp1[c]);
        let h1 = -lp1 + 0.5 * k1;
        let delta = h1 - h0;
        let div = !delta.is_finite() || delta > MAX_ENERGY_ERROR || lp1 <= LOGP_NEG_INF;
        let a = if div { 0.0 } else { (-delta).exp().min(1.0) };
        let u = Stream::new(seed, stream_chain + c as u32, iter, Purpose::Accept).uniform(0);
        accept_prob[c] = a;
        divergent[c] = div;
        if !div && u < a {
            q[r.clone()].copy_from_slice(&w.q1[r.clone()]);
            grad[r.clone()].copy_from_slice(&w.g1[r]);
            logp[c] = lp1;
            energy[c] = h1;
        } else {
            energy[c] = h0;
        }
    }
}

impl Integrator for CpuIntegrator {
    fn set_chain_offset(&mut self, offset: u32) {
        self.chain_offset = offset;
    }

    fn dim(&self) -> usize {
        self.model.dim()
    }

    fn n_chains(&self) -> usize {
        self.q.len() / self.model.dim().max(1)
    }

    fn set_positions(&mut self, q: &[f64], logp: &mut [f64], grad: &mut [f64]) -> Result<()> {
        self.q.copy_from_slice(q);
        eval_blocks(
            (self.model.as_ref(), &self.data),
            self.chains_per_dataset,
            self.precision,
            &self.q,
            &mut self.grad,
            &mut self.logp,
        );
        logp.copy_from_slice(&self.logp);
        grad.copy_from_slice(&self.grad);
        Ok(())
    }

    fn step(&mut self, iter: u32, tuning: &[Tuning], out: &mut StepOut) -> Result<()> {
        let d = self.dim();
        out.resize(self.n_chains(), d);
        let (model, data, cpd, seed, off) = (
            (self.precision, self.model.as_ref()),
            &self.data,
            self.chains_per_dataset,
            self.seed,
            self.chain_offset,
        );
        let lanes = block_size(model.1, model.0, cpd, self.logp.len());
        self.q
            .par_chunks_mut(d * lanes)
            .zip(self.grad.par_chunks_mut(d * lanes))
            .zip(self.logp.par_chunks_mut(lanes))
            .zip(out.proposal.par_chunks_mut(d * lanes))
            .zip(out.velocity.par_chunks_mut(d * lanes))
            .zip(out.accept_prob.par_chunks_mut(lanes))
            .zip(out.divergent.par_chunks_mut(lanes))
            .zip(out.energy.par_chunks_mut(lanes))
            .enumerate()
            .for_each_init(
                Work::default,
                |w, (k, (((((((q, g), lp), pr), ve), a), dv), en))| {
                    let c = k * lanes;
                    let b = c / cpd;
                    transition(
                        model,
                        data,
                        b,
                        lanes,
                        off + c as u32,
                        iter,
                        seed,
                        &tuning[b],
                        q,
                        lp,
                        g,
                        w,
                        (pr, ve, a, dv, en),
                    );
                },
            );
        out.position.copy_from_slice(&self.q);
        out.logp.copy_from_slice(&self.logp);
        Ok(())
    }
}
