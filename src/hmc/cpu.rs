//! The CPU twin of `shaders/hmc_transition.wgsl`: one HMC transition per chain (momentum
//! from Philox, leapfrog with a diagonal inverse mass, Metropolis accept from Philox),
//! parallel over chains with rayon; positions and momenta in f64, log densities in the
//! backend's precision.

// The leapfrog loops index several arrays of length D in step, as the WGSL twin does.
#![allow(clippy::needless_range_loop)]

use std::sync::Arc;

use rayon::prelude::*;

use super::{Integrator, StepOut, Tuning, MAX_ENERGY_ERROR};
use crate::backend::cpu::log_density;
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

/// Scratch of one chain's transition.
#[derive(Default)]
struct Work {
    p: Vec<f64>,
    q1: Vec<f64>,
    g1: Vec<f64>,
    scratch: Vec<f64>,
}

/// One transition of one chain; the shape of the WGSL kernel's `main`.
#[allow(clippy::too_many_arguments)]
fn transition(
    (precision, model): (Precision, &dyn Model),
    data: &DataBatch,
    b: usize,
    stream_chain: u32,
    iter: u32,
    seed: u64,
    tuning: &Tuning,
    q: &mut [f64],
    logp: &mut f64,
    grad: &mut [f64],
    w: &mut Work,
    out: (&mut [f64], &mut [f64], &mut f64, &mut bool, &mut f64),
) {
    let d = q.len();
    let (prop, vel, accept_prob, divergent, energy) = out;
    let eps = tuning.step_size;
    let m = &tuning.inv_mass;
    w.p.resize(d, 0.0);
    w.q1.clear();
    w.q1.extend_from_slice(q);
    w.g1.clear();
    w.g1.extend_from_slice(grad);
    let mom = Stream::new(seed, stream_chain, iter, Purpose::Momentum);
    let mut k0 = 0.0;
    for i in 0..d {
        w.p[i] = mom.normal(i as u32) / m[i].sqrt();
        k0 += m[i] * w.p[i] * w.p[i];
    }
    let h0 = -*logp + 0.5 * k0;
    let mut lp1 = *logp;
    for _ in 0..tuning.n_steps {
        for i in 0..d {
            w.p[i] += 0.5 * eps * w.g1[i];
            w.q1[i] += eps * m[i] * w.p[i];
        }
        lp1 = log_density(precision, model, data, b, &w.q1, &mut w.g1, &mut w.scratch);
        for i in 0..d {
            w.p[i] += 0.5 * eps * w.g1[i];
        }
    }
    let mut k1 = 0.0;
    for i in 0..d {
        k1 += m[i] * w.p[i] * w.p[i];
        prop[i] = w.q1[i];
        vel[i] = m[i] * w.p[i];
    }
    let h1 = -lp1 + 0.5 * k1;
    let delta = h1 - h0;
    let div = !delta.is_finite() || delta > MAX_ENERGY_ERROR || lp1 <= LOGP_NEG_INF;
    let a = if div { 0.0 } else { (-delta).exp().min(1.0) };
    let u = Stream::new(seed, stream_chain, iter, Purpose::Accept).uniform(0);
    *accept_prob = a;
    *divergent = div;
    if !div && u < a {
        q.copy_from_slice(&w.q1);
        grad.copy_from_slice(&w.g1);
        *logp = lp1;
        *energy = h1;
    } else {
        *energy = h0;
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
        let d = self.dim();
        self.q.copy_from_slice(q);
        let (model, data, cpd, prec) = (
            &self.model,
            &self.data,
            self.chains_per_dataset,
            self.precision,
        );
        self.q
            .par_chunks(d)
            .zip(self.grad.par_chunks_mut(d))
            .zip(self.logp.par_iter_mut())
            .enumerate()
            .for_each_init(Vec::new, |s, (c, ((q, g), lp))| {
                *lp = log_density(prec, model.as_ref(), data, c / cpd, q, g, s);
            });
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
        self.q
            .par_chunks_mut(d)
            .zip(self.grad.par_chunks_mut(d))
            .zip(self.logp.par_iter_mut())
            .zip(out.proposal.par_chunks_mut(d))
            .zip(out.velocity.par_chunks_mut(d))
            .zip(out.accept_prob.par_iter_mut())
            .zip(out.divergent.par_iter_mut())
            .zip(out.energy.par_iter_mut())
            .enumerate()
            .for_each_init(
                Work::default,
                |w, (c, (((((((q, g), lp), pr), ve), a), dv), en))| {
                    let b = c / cpd;
                    transition(
                        model,
                        data,
                        b,
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
