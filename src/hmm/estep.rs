//! The CPU E-step of batched EM, and the HMM family's statistics: expected sufficient
//! statistics ([`Stats`]) of sequences by forward-backward, serially per block of sequences
//! ([`estep_cpu`] runs blocks in parallel), up to 4 equal-length sequences in SIMD lanes. The
//! GPU twin is [`super::gpu::GpuEstep`]; the HMM family's log density and gradient are
//! functions of the same statistics (`model::hmm` calls `estep_sequences_body`).

// Indexed loops over several equal-length rows read better than zipped iterators here.
#![allow(clippy::needless_range_loop)]

use rayon::prelude::*;

use super::{sequences, EmissionKind, FbScratch, HmmParams, HmmSpec};
use crate::data::DataBatch;

/// Expected sufficient statistics of one (restart, dataset) pair, summed over sequences.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    /// Σ over sequences of γ_0(k).
    pub init: Vec<f64>,
    /// Σ_t ξ_t(i, j), K × K.
    pub trans: Vec<f64>,
    /// Per state and emission dim: Σ γ x̃ x̃ᵀ, (P + 1)² each (x̃ = (1, x)).
    pub xx: Vec<f64>,
    /// Gaussian: Σ γ x̃ y; Bernoulli: Σ γ (y − σ(η)) x̃ at the current parameters.
    pub xy: Vec<f64>,
    /// Gaussian: Σ γ y² per state and dim (unused for Bernoulli).
    pub yy: Vec<f64>,
    /// Log likelihood of the data at the parameters the statistics were taken at.
    pub loglik: f64,
}

impl Stats {
    /// Zeroed statistics for `spec`.
    pub fn zeros(spec: &HmmSpec) -> Self {
        let l = spec.layout().stats();
        Self {
            init: vec![0.0; l.init.len()],
            trans: vec![0.0; l.trans.len()],
            xx: vec![0.0; l.xx.len()],
            xy: vec![0.0; l.xy.len()],
            yy: vec![0.0; l.yy.len()],
            loglik: 0.0,
        }
    }

    /// The statistics as one flat vector (the GPU's output layout): init, trans, xx, xy, yy,
    /// loglik.
    pub fn flat_len(spec: &HmmSpec) -> usize {
        spec.layout().stats().len
    }

    /// Adds values in [`Stats::flat_len`] layout (the GPU's output rows).
    pub fn add_flat(&mut self, v: impl IntoIterator<Item = f64>) {
        let mut v = v.into_iter();
        let mut next = || v.next().expect("Stats::flat_len values");
        for part in [
            &mut self.init,
            &mut self.trans,
            &mut self.xx,
            &mut self.xy,
            &mut self.yy,
        ] {
            part.iter_mut().for_each(|a| *a += next());
        }
        self.loglik += next();
    }

    /// Adds another set of statistics (of other sequences).
    pub fn add(&mut self, other: &Stats) {
        self.add_flat(other.values());
    }

    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.init
            .iter()
            .chain(&self.trans)
            .chain(&self.xx)
            .chain(&self.xy)
            .chain(&self.yy)
            .copied()
            .chain(std::iter::once(self.loglik))
    }

    /// The statistics flattened ([`Stats::flat_len`] layout).
    pub fn to_flat(&self) -> Vec<f64> {
        self.values().collect()
    }
}

/// E-step on the CPU: statistics of dataset `b` at `prm` by forward-backward, parallel
/// over blocks of sequences and summed in sequence order (the same result on any number of
/// threads).
pub fn estep_cpu(spec: &HmmSpec, prm: &HmmParams, data: &DataBatch, b: usize) -> Stats {
    let seqs = sequences(data, b);
    // Blocks of about 16 384 points keep the per-task overhead small.
    let mut blocks: Vec<std::ops::Range<usize>> = Vec::new();
    let mut lo = 0;
    let mut pts = 0;
    for (i, s) in seqs.iter().enumerate() {
        pts += s.len();
        if pts >= 16_384 || i + 1 == seqs.len() {
            blocks.push(lo..i + 1);
            lo = i + 1;
            pts = 0;
        }
    }
    let parts: Vec<Stats> = blocks
        .into_par_iter()
        .map(|r| estep_sequences(spec, prm, data, &seqs[r]))
        .collect();
    let mut st = Stats::zeros(spec);
    for p in &parts {
        st.add(p);
    }
    st
}

/// Statistics of some sequences, serially (AVX2 + FMA code when the processor has them).
fn estep_sequences(
    spec: &HmmSpec,
    prm: &HmmParams,
    data: &DataBatch,
    seqs: &[std::ops::Range<usize>],
) -> Stats {
    crate::math::simd_dispatch!(crate::math::simd(), (spec: &HmmSpec = spec,
                                                              prm: &HmmParams = prm,
                                                              data: &DataBatch = data,
                                                              seqs: &[std::ops::Range<usize>] = seqs)
     -> Stats {
        estep_sequences_body(spec, prm, data, seqs, &mut FbScratch::default())
    })
}

/// Sequences processed together in SIMD lanes by [`estep_lanes`].
const LANES: usize = 4;

/// The statistics of `seqs` by forward-backward, serially, with caller-owned scratch (also
/// the HMM family's log density and gradient: both are functions of these statistics).
/// Runs of 2 to 4 consecutive sequences of equal length go through [`estep_lanes`] (one
/// sequence per SIMD lane: the forward recursion is a chain of dependent operations, and
/// independent sequences fill the gaps), the others one at a time.
#[inline(always)]
pub(crate) fn estep_sequences_body(
    spec: &HmmSpec,
    prm: &HmmParams,
    data: &DataBatch,
    seqs: &[std::ops::Range<usize>],
    s: &mut FbScratch,
) -> Stats {
    let k = spec.k;
    let mut st = Stats::zeros(spec);
    // Σ_t α_{t-1}(i) e_t(j) β_t(j) / c_t; ξ = Γ ∘ this, taken once at the end.
    let mut outer = vec![0.0; k * k];
    let mut i = 0;
    while i < seqs.len() {
        let len = seqs[i].len();
        let mut j = i + 1;
        while j < seqs.len() && j - i < LANES && seqs[j].len() == len {
            j += 1;
        }
        if j - i >= 2 && len >= 2 {
            estep_lanes(
                spec,
                prm,
                data,
                &seqs[i..j],
                &mut s.lanes,
                &mut st,
                &mut outer,
            );
        } else {
            estep_scalar(spec, prm, data, &seqs[i..j], s, &mut st, &mut outer);
        }
        i = j;
    }
    for (x, (&o, &g)) in st.trans.iter_mut().zip(outer.iter().zip(&prm.transition)) {
        *x += o * g;
    }
    st
}

/// Working memory of [`estep_lanes`] (part of [`FbScratch`], so that the HMM family's log
/// density allocates nothing per call): per step, state (or dimension/input) and lane.
#[derive(Default, Debug, Clone)]
pub(crate) struct LaneScratch {
    e: Vec<[f64; LANES]>,
    alpha: Vec<[f64; LANES]>,
    c: Vec<[f64; LANES]>,
    y: Vec<[f64; LANES]>,
    x: Vec<[f64; LANES]>,
    outer: Vec<[f64; LANES]>,
    xt: Vec<[f64; LANES]>,
    axx: Vec<[f64; LANES]>,
    axy: Vec<[f64; LANES]>,
}

/// Forward-backward over 2 to [`LANES`] sequences of one length T in lockstep, lane `l`
/// holding sequence `l` (missing lanes repeat the last sequence with weight 0). Adds to `st`
/// and `outer` exactly what [`estep_scalar`] would, up to rounding.
#[inline(always)]
fn estep_lanes(
    spec: &HmmSpec,
    prm: &HmmParams,
    data: &DataBatch,
    seqs: &[std::ops::Range<usize>],
    w: &mut LaneScratch,
    st: &mut Stats,
    outer: &mut [f64],
) {
    const HALF_LOG_2PI: f64 = 0.918_938_533_204_672_8;
    let (k, d_dim, p) = (spec.k, spec.d, spec.p);
    let q = p + 1;
    let t_len = seqs[0].len();
    let start: [usize; LANES] = std::array::from_fn(|l| seqs[l.min(seqs.len() - 1)].start);
    let weight: [f64; LANES] = std::array::from_fn(|l| if l < seqs.len() { 1.0 } else { 0.0 });
    // Gather emissions (T × D) and inputs (T × P) lane-interleaved.
    w.y.resize(t_len * d_dim, [0.0; LANES]);
    w.x.resize(t_len * p, [0.0; LANES]);
    for t in 0..t_len {
        for d in 0..d_dim {
            for l in 0..LANES {
                w.y[t * d_dim + d][l] = spec.emission(data, d, start[l] + t);
            }
        }
        for j in 0..p {
            let col = data.x_col(1 + j);
            for l in 0..LANES {
                w.x[t * p + j][l] = col[start[l] + t];
            }
        }
    }
    // Log emissions, then e = exp(le − max over states) in place; the shifts go to c.
    w.e.resize(t_len * k, [0.0; LANES]);
    w.c.resize(t_len, [0.0; LANES]);
    w.alpha.resize(t_len * k, [0.0; LANES]);
    for t in 0..t_len {
        for s_k in 0..k {
            let mut le = [0.0; LANES];
            for d in 0..d_dim {
                let kd = s_k * d_dim + d;
                let mut eta = [prm.loc[kd]; LANES];
                for j in 0..p {
                    let wj = prm.weights[kd * p + j];
                    for l in 0..LANES {
                        eta[l] += wj * w.x[t * p + j][l];
                    }
                }
                let y = &w.y[t * d_dim + d];
                match spec.kind {
                    EmissionKind::Gaussian => {
                        let inv = 1.0 / prm.sds[kd];
                        let c = -prm.sds[kd].ln() - HALF_LOG_2PI;
                        for l in 0..LANES {
                            let z = (y[l] - eta[l]) * inv;
                            le[l] += c - 0.5 * z * z;
                        }
                    }
                    EmissionKind::Bernoulli => {
                        for l in 0..LANES {
                            le[l] += y[l] * eta[l] - crate::math::softplus(eta[l]);
                        }
                    }
                }
            }
            w.e[t * k + s_k] = le;
        }
        let mut mx = [f64::NEG_INFINITY; LANES];
        for s_k in 0..k {
            for l in 0..LANES {
                mx[l] = mx[l].max(w.e[t * k + s_k][l]);
            }
        }
        for l in 0..LANES {
            if !mx[l].is_finite() {
                mx[l] = 0.0;
            }
        }
        for s_k in 0..k {
            let v = &mut w.e[t * k + s_k];
            for l in 0..LANES {
                v[l] = crate::math::exp(v[l] - mx[l]);
            }
        }
        w.c[t] = mx;
    }
    // Forward pass: alpha normalised per lane; c[t] becomes the normaliser.
    let mut ll = [0.0; LANES];
    let mut prod = [1.0; LANES];
    let mut dead = [false; LANES];
    let mut a = [[0.0; LANES]; 64];
    let a = &mut a[..k];
    for t in 0..t_len {
        a.iter_mut().for_each(|v| *v = [0.0; LANES]);
        if t == 0 {
            for j in 0..k {
                for l in 0..LANES {
                    a[j][l] = prm.initial[j] * w.e[j][l];
                }
            }
        } else {
            for i in 0..k {
                let ap = w.alpha[(t - 1) * k + i];
                for j in 0..k {
                    let g = prm.transition[i * k + j];
                    for l in 0..LANES {
                        a[j][l] += ap[l] * g;
                    }
                }
            }
            for j in 0..k {
                let e = &w.e[t * k + j];
                for l in 0..LANES {
                    a[j][l] *= e[l];
                }
            }
        }
        let mut c = [0.0; LANES];
        for j in 0..k {
            for l in 0..LANES {
                c[l] += a[j][l];
            }
        }
        for l in 0..LANES {
            ll[l] += w.c[t][l];
            if !(c[l] > 0.0 && c[l].is_finite()) {
                // An impossible lane: keep its numbers finite, drop it at the end.
                dead[l] = true;
                c[l] = 1.0;
                for j in 0..k {
                    a[j][l] = 1.0 / k as f64;
                }
            }
            if c[l] < 1e-100 {
                ll[l] += c[l].ln();
            } else {
                prod[l] *= c[l];
                if prod[l] < 1e-200 {
                    ll[l] += prod[l].ln();
                    prod[l] = 1.0;
                }
            }
        }
        let inv: [f64; LANES] = std::array::from_fn(|l| 1.0 / c[l]);
        for j in 0..k {
            for l in 0..LANES {
                w.alpha[t * k + j][l] = a[j][l] * inv[l];
            }
        }
        w.c[t] = c;
    }
    // Backward pass; gamma overwrites alpha at step t once alpha_t is used.
    let mut beta = [[1.0; LANES]; 64];
    let mut tmp = [[0.0; LANES]; 64];
    // Working rows taken out of the scratch for the pass (locals the compiler can keep in
    // registers) and put back at the end.
    let mut outer_l = std::mem::take(&mut w.outer);
    outer_l.clear();
    outer_l.resize(k * k, [0.0; LANES]);
    for t in (0..t_len).rev() {
        for j in 0..k {
            for l in 0..LANES {
                w.alpha[t * k + j][l] *= beta[j][l];
            }
        }
        if t == 0 {
            break;
        }
        for j in 0..k {
            for l in 0..LANES {
                tmp[j][l] = w.e[t * k + j][l] * beta[j][l] / w.c[t][l];
            }
        }
        for i in 0..k {
            let ap = w.alpha[(t - 1) * k + i];
            let mut acc = [0.0; LANES];
            for j in 0..k {
                let g = prm.transition[i * k + j];
                let o = &mut outer_l[i * k + j];
                for l in 0..LANES {
                    o[l] += ap[l] * tmp[j][l];
                    acc[l] += g * tmp[j][l];
                }
            }
            beta[i] = acc;
        }
    }
    let live: [f64; LANES] = std::array::from_fn(|l| if dead[l] { 0.0 } else { weight[l] });
    for l in 0..LANES {
        if weight[l] > 0.0 {
            st.loglik += if dead[l] {
                f64::NEG_INFINITY
            } else {
                ll[l] + prod[l].ln()
            };
        }
    }
    for (o, v) in outer.iter_mut().zip(outer_l.iter()) {
        *o += (0..LANES).map(|l| live[l] * v[l]).sum::<f64>();
    }
    for j in 0..k {
        st.init[j] += (0..LANES).map(|l| live[l] * w.alpha[j][l]).sum::<f64>();
    }
    // Emission statistics from gamma (in w.alpha).
    w.outer = outer_l;
    let (mut xt, mut axx, mut axy) = (
        std::mem::take(&mut w.xt),
        std::mem::take(&mut w.axx),
        std::mem::take(&mut w.axy),
    );
    let (alpha, ys, xs) = (&w.alpha, &w.y, &w.x);
    xt.resize(q, [0.0; LANES]);
    for d in 0..d_dim {
        for s_k in 0..k {
            let kd = s_k * d_dim + d;
            let xx = &mut st.xx[kd * q * q..(kd + 1) * q * q];
            let xy = &mut st.xy[kd * q..(kd + 1) * q];
            axx.clear();
            axx.resize(q * q, [0.0; LANES]);
            axy.clear();
            axy.resize(q, [0.0; LANES]);
            let mut ayy = [0.0; LANES];
            for t in 0..t_len {
                let g: [f64; LANES] = std::array::from_fn(|l| live[l] * alpha[t * k + s_k][l]);
                let y = ys[t * d_dim + d];
                xt[0] = [1.0; LANES];
                for j in 0..p {
                    xt[1 + j] = xs[t * p + j];
                }
                let r: [f64; LANES] = match spec.kind {
                    EmissionKind::Gaussian => y,
                    EmissionKind::Bernoulli => std::array::from_fn(|l| {
                        let mut eta = prm.loc[kd];
                        for j in 0..p {
                            eta += prm.weights[kd * p + j] * xt[1 + j][l];
                        }
                        y[l] - crate::math::sigmoid(eta)
                    }),
                };
                for a in 0..q {
                    for bb in 0..q {
                        for l in 0..LANES {
                            axx[a * q + bb][l] += g[l] * xt[a][l] * xt[bb][l];
                        }
                    }
                    for l in 0..LANES {
                        axy[a][l] += g[l] * xt[a][l] * r[l];
                    }
                }
                for l in 0..LANES {
                    ayy[l] += g[l] * y[l] * y[l];
                }
            }
            for (o, v) in xx.iter_mut().zip(axx.iter()) {
                *o += v.iter().sum::<f64>();
            }
            for (o, v) in xy.iter_mut().zip(axy.iter()) {
                *o += v.iter().sum::<f64>();
            }
            st.yy[kd] += ayy.iter().sum::<f64>();
        }
    }
    (w.xt, w.axx, w.axy) = (xt, axx, axy);
}

/// Forward-backward over `seqs` one at a time, adding to `st` and `outer`.
#[inline(always)]
fn estep_scalar(
    spec: &HmmSpec,
    prm: &HmmParams,
    data: &DataBatch,
    seqs: &[std::ops::Range<usize>],
    s: &mut FbScratch,
    st: &mut Stats,
    outer: &mut [f64],
) {
    let (k, d_dim, p) = (spec.k, spec.d, spec.p);
    let q = p + 1;
    let mut xt = vec![0.0; q];
    for seq in seqs {
        let (seq, t_len) = (seq.clone(), seq.len());
        let ll = super::log_likelihood(spec, prm, data, seq.clone(), s);
        st.loglik += ll;
        if !ll.is_finite() {
            continue;
        }
        super::backward_pass(k, prm, t_len, s, outer);
        for j in 0..k {
            st.init[j] += s.le[j];
        }
        // Emission statistics: γ-weighted moments, one state and dimension at a time.
        let xs: Vec<&[f64]> = (0..p).map(|j| &data.x_col(1 + j)[seq.clone()]).collect();
        for d in 0..d_dim {
            let ys = if d == 0 {
                &data.y()[seq.clone()]
            } else {
                &data.x_col(p + d)[seq.clone()]
            };
            for sk in 0..k {
                let kd = sk * d_dim + d;
                let gam = s.le.iter().skip(sk).step_by(k);
                if p == 0 && spec.kind == EmissionKind::Gaussian {
                    let (mut n, mut sy, mut syy) = (0.0, 0.0, 0.0);
                    for (&g, &y) in gam.zip(ys) {
                        n += g;
                        sy += g * y;
                        syy += g * y * y;
                    }
                    st.xx[kd] += n;
                    st.xy[kd] += sy;
                    st.yy[kd] += syy;
                    continue;
                }
                let xx = &mut st.xx[kd * q * q..(kd + 1) * q * q];
                let xy = &mut st.xy[kd * q..(kd + 1) * q];
                let w = &prm.weights[kd * p..(kd + 1) * p];
                for (t, (&g, &y)) in gam.zip(ys).enumerate() {
                    xt[0] = 1.0;
                    for j in 0..p {
                        xt[j + 1] = xs[j][t];
                    }
                    let r = match spec.kind {
                        EmissionKind::Gaussian => y,
                        EmissionKind::Bernoulli => {
                            let mut eta = prm.loc[kd];
                            for j in 0..p {
                                eta += w[j] * xt[j + 1];
                            }
                            y - crate::math::sigmoid(eta)
                        }
                    };
                    for a in 0..q {
                        let ga = g * xt[a];
                        for bb in 0..q {
                            xx[a * q + bb] += ga * xt[bb];
                        }
                        xy[a] += ga * r;
                    }
                    st.yy[kd] += g * y * y;
                }
            }
        }
    }
}
