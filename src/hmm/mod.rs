//! Hidden Markov models with Gaussian or Bernoulli-logit emissions (the Gaussian HMM, the
//! switching linear regression and the Bernoulli GLM-HMM are one family here): parameters,
//! the normalised forward pass, forward-backward with a visitor for smoothed marginals,
//! Viterbi, and state alignment. [`em`] fits them by batched EM ([`estep`]: the CPU E-step;
//! [`gpu`]: its GPU twin; [`layout`]: every flat offset),
//! [`io`] reads and simulates sequence data, and `model::hmm` samples them with HMC.
//!
//! # Data layout
//! Sequences live in a [`DataBatch`] (one dataset = the sequences that share parameters):
//! input column 0 is the start flag (1 at the first step of each sequence, else 0), columns
//! `1..=P` are the inputs of a GLM emission, columns `P+1..P+D` hold emission dimensions
//! `1..D` of a multivariate Gaussian HMM, and `y` holds emission dimension 0. Every kernel
//! walks a dataset's points in order and restarts the recursion at each start flag.

// Indexed loops over several equal-length rows read better than zipped iterators here.
#![allow(clippy::needless_range_loop)]

pub mod em;
pub mod estep;
pub mod gpu;
pub mod io;
pub mod layout;

pub use layout::HmmLayout;

use crate::data::DataBatch;
use crate::error::{Error, Result};

/// The emission distribution of every state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmissionKind {
    /// Normal with a diagonal covariance; its mean is `loc + weights · x`.
    Gaussian,
    /// Bernoulli with logit `loc + weights · x`; the response is 0 or 1.
    Bernoulli,
}

/// The shape of an HMM: states, emission kind, emission dimension and inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HmmSpec {
    /// Number of hidden states K.
    pub k: usize,
    /// Emission distribution.
    pub kind: EmissionKind,
    /// Emission dimension D (1 for Bernoulli).
    pub d: usize,
    /// Inputs P of the GLM emission (0 for a plain Gaussian HMM).
    pub p: usize,
}

impl HmmSpec {
    /// A Gaussian HMM with `k` states and `d`-dimensional diagonal-covariance emissions.
    pub fn gaussian(k: usize, d: usize) -> Result<Self> {
        Self::new(k, EmissionKind::Gaussian, d, 0)
    }

    /// A switching linear regression (GLM-HMM with Gaussian emissions) on `p` inputs.
    pub fn regression(k: usize, p: usize) -> Result<Self> {
        Self::new(k, EmissionKind::Gaussian, 1, p)
    }

    /// A Bernoulli-logit GLM-HMM on `p` inputs.
    pub fn bernoulli(k: usize, p: usize) -> Result<Self> {
        Self::new(k, EmissionKind::Bernoulli, 1, p)
    }

    /// Checks the shape: K ≥ 1, D ≥ 1, and D = 1 for Bernoulli emissions.
    pub fn new(k: usize, kind: EmissionKind, d: usize, p: usize) -> Result<Self> {
        if k < 1 {
            return Err(Error::Config {
                flag: "--states".into(),
                message: format!("an HMM needs at least one state, got K = {k}"),
            });
        }
        if k > 64 {
            return Err(Error::Config {
                flag: "--states".into(),
                message: format!("K = {k} states is more than gpsamp supports (64)"),
            });
        }
        if d < 1 || (kind == EmissionKind::Bernoulli && d != 1) {
            return Err(Error::Invalid(format!(
                "emission dimension {d} is not supported for {kind:?} emissions"
            )));
        }
        Ok(Self { k, kind, d, p })
    }

    /// Constrained parameters in [`HmmParams::to_flat`] order: initial (K), transition
    /// (K²), loc (K·D), weights (K·D·P), sds (K·D, Gaussian only).
    pub fn n_params(&self) -> usize {
        self.layout().params().len
    }

    /// Where each block of this spec's flat vectors sits.
    pub fn layout(&self) -> HmmLayout {
        HmmLayout::of(self)
    }

    /// Whether the emission has a noise scale per state and dimension.
    pub fn has_sds(&self) -> bool {
        self.kind == EmissionKind::Gaussian
    }

    /// Input columns a [`DataBatch`] for this spec has: start flag, P inputs, D − 1 extra
    /// emission dimensions.
    pub fn data_columns(&self) -> usize {
        1 + self.p + self.d - 1
    }

    /// Checks that `data` has this spec's layout: the column count, a start flag of 0 or 1
    /// that is 1 at each dataset's first point, and 0/1 responses for Bernoulli emissions.
    pub fn check_data(&self, data: &DataBatch) -> Result<()> {
        if data.p() != self.data_columns() {
            return Err(Error::Invalid(format!(
                "HMM data needs {} input columns (start flag, {} inputs, {} extra emission dims), got {}",
                self.data_columns(),
                self.p,
                self.d - 1,
                data.p()
            )));
        }
        let start = data.x_col(0);
        for b in 0..data.n_datasets() {
            let r = data.range(b);
            if r.is_empty() {
                return Err(Error::Invalid(format!("dataset {b} has no observations")));
            }
            if start[r.start] != 1.0 {
                return Err(Error::Invalid(format!(
                    "dataset {b}: its first observation does not start a sequence"
                )));
            }
        }
        if let Some(i) = start.iter().position(|&s| s != 0.0 && s != 1.0) {
            return Err(Error::Invalid(format!(
                "point {i}: start flag {} is not 0 or 1",
                start[i]
            )));
        }
        if self.kind == EmissionKind::Bernoulli {
            if let Some(i) = data.y().iter().position(|&v| v != 0.0 && v != 1.0) {
                return Err(Error::Invalid(format!(
                    "point {i}: Bernoulli emission {} is not 0 or 1",
                    data.y()[i]
                )));
            }
        }
        Ok(())
    }

    /// Emission dimension `d` of point `n`.
    #[inline]
    pub fn emission(&self, data: &DataBatch, d: usize, n: usize) -> f64 {
        if d == 0 {
            data.y()[n]
        } else {
            data.x_col(self.p + d)[n]
        }
    }
}

/// The sequences of dataset `b`: ranges of points, split at the start flags.
pub fn sequences(data: &DataBatch, b: usize) -> Vec<std::ops::Range<usize>> {
    let start = data.x_col(0);
    let r = data.range(b);
    let mut out = Vec::new();
    let mut s = r.start;
    for n in r.start + 1..r.end {
        if start[n] == 1.0 {
            out.push(s..n);
            s = n;
        }
    }
    if s < r.end {
        out.push(s..r.end);
    }
    out
}

/// The parameters of one HMM (f64, constrained).
#[derive(Clone, Debug, PartialEq)]
pub struct HmmParams {
    /// Initial state distribution, K.
    pub initial: Vec<f64>,
    /// Transition matrix, K × K row-major (row = from).
    pub transition: Vec<f64>,
    /// Emission means (Gaussian HMM) or biases (GLM), K × D.
    pub loc: Vec<f64>,
    /// GLM weights, K × D × P.
    pub weights: Vec<f64>,
    /// Emission standard deviations, K × D (empty for Bernoulli).
    pub sds: Vec<f64>,
}

impl HmmParams {
    /// Splits a flat vector in [`HmmSpec::n_params`] order (what the HMM family's
    /// `constrain` returns and the GPU E-step reads); an error on a wrong length.
    pub fn from_flat(spec: &HmmSpec, v: &[f64]) -> Result<Self> {
        if v.len() != spec.n_params() {
            return Err(Error::Invalid(format!(
                "expected {} HMM parameters, got {}",
                spec.n_params(),
                v.len()
            )));
        }
        let l = spec.layout().params();
        Ok(Self {
            initial: v[l.initial].to_vec(),
            transition: v[l.transition].to_vec(),
            loc: v[l.loc].to_vec(),
            weights: v[l.weights].to_vec(),
            sds: v[l.sds].to_vec(),
        })
    }

    /// The parameters as one vector: initial, transition, loc, weights, sds.
    pub fn to_flat(&self) -> impl Iterator<Item = f64> + '_ {
        self.initial
            .iter()
            .chain(&self.transition)
            .chain(&self.loc)
            .chain(&self.weights)
            .chain(&self.sds)
            .copied()
    }

    /// Checks lengths and supports against `spec`.
    pub fn validate(&self, spec: &HmmSpec) -> Result<()> {
        let k = spec.k;
        let l = spec.layout().params();
        if self.initial.len() != l.initial.len()
            || self.transition.len() != l.transition.len()
            || self.loc.len() != l.loc.len()
            || self.weights.len() != l.weights.len()
            || self.sds.len() != l.sds.len()
        {
            return Err(Error::Invalid(
                "HMM parameters do not match the spec".into(),
            ));
        }
        let simplex = |v: &[f64]| {
            v.iter().all(|&x| (0.0..=1.0).contains(&x))
                && (v.iter().sum::<f64>() - 1.0).abs() < 1e-6
        };
        if !simplex(&self.initial) || !self.transition.chunks(k).all(simplex) {
            return Err(Error::Invalid(
                "initial distribution and transition rows must be probability vectors".into(),
            ));
        }
        if !self.sds.iter().all(|&s| s > 0.0 && s.is_finite())
            || !self.loc.iter().chain(&self.weights).all(|v| v.is_finite())
        {
            return Err(Error::Invalid(
                "emission parameters must be finite with sds > 0".into(),
            ));
        }
        Ok(())
    }

    /// The parameters with states relabelled: new state `k` is old state `perm[k]`.
    pub fn permuted(&self, spec: &HmmSpec, perm: &[usize]) -> Self {
        let (k, d, p) = (spec.k, spec.d, spec.p);
        let rows = |v: &[f64], w: usize| -> Vec<f64> {
            (0..k)
                .flat_map(|s| v[perm[s] * w..(perm[s] + 1) * w].iter().copied())
                .collect()
        };
        let mut transition = vec![0.0; k * k];
        for i in 0..k {
            for j in 0..k {
                transition[i * k + j] = self.transition[perm[i] * k + perm[j]];
            }
        }
        Self {
            initial: perm.iter().map(|&s| self.initial[s]).collect(),
            transition,
            loc: rows(&self.loc, d),
            weights: rows(&self.weights, d * p),
            sds: if self.sds.is_empty() {
                Vec::new()
            } else {
                rows(&self.sds, d)
            },
        }
    }
}

/// Log emission densities of every step of one sequence (T × K, written to `le`), with the
/// per-state constants computed once: the loop the forward pass and the E-step spend their
/// time in.
#[inline(always)]
pub fn sequence_log_emissions(
    spec: &HmmSpec,
    prm: &HmmParams,
    data: &DataBatch,
    seq: std::ops::Range<usize>,
    le: &mut [f64],
) {
    const HALF_LOG_2PI: f64 = 0.918_938_533_204_672_8;
    let (k, d_dim, p) = (spec.k, spec.d, spec.p);
    let t_len = seq.len();
    le[..t_len * k].iter_mut().for_each(|v| *v = 0.0);
    let xs: Vec<&[f64]> = (0..p).map(|j| &data.x_col(1 + j)[seq.clone()]).collect();
    for d in 0..d_dim {
        let ys = if d == 0 {
            &data.y()[seq.clone()]
        } else {
            &data.x_col(p + d)[seq.clone()]
        };
        for s in 0..k {
            let kd = s * d_dim + d;
            let loc = prm.loc[kd];
            let w = &prm.weights[kd * p..(kd + 1) * p];
            match spec.kind {
                EmissionKind::Gaussian => {
                    let inv = 1.0 / prm.sds[kd];
                    let c = -prm.sds[kd].ln() - HALF_LOG_2PI;
                    for t in 0..t_len {
                        let mut eta = loc;
                        for j in 0..p {
                            eta += w[j] * xs[j][t];
                        }
                        let z = (ys[t] - eta) * inv;
                        le[t * k + s] += c - 0.5 * z * z;
                    }
                }
                EmissionKind::Bernoulli => {
                    for t in 0..t_len {
                        let mut eta = loc;
                        for j in 0..p {
                            eta += w[j] * xs[j][t];
                        }
                        le[t * k + s] += ys[t] * eta - crate::math::softplus(eta);
                    }
                }
            }
        }
    }
}

/// Working memory of [`forward_backward`] (reused across calls).
#[derive(Default, Debug, Clone)]
pub struct FbScratch {
    le: Vec<f64>,
    e: Vec<f64>,
    alpha: Vec<f64>,
    c: Vec<f64>,
    beta: Vec<f64>,
    tmp: Vec<f64>,
    shift: Vec<f64>,
    outer: Vec<f64>,
    lanes: estep::LaneScratch,
}

/// Shifted emission likelihoods `e[t,k] = exp(le[t,k] − max_k le[t,k])`; the shifts go to
/// `shift`. The branch-free [`crate::math::exp`] vectorises over the states.
#[inline(always)]
fn shifted(le: &[f64], e: &mut [f64], shift: &mut [f64], k: usize) {
    for ((l, o), m) in le
        .chunks_exact(k)
        .zip(e.chunks_exact_mut(k))
        .zip(shift.iter_mut())
    {
        let mx = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mx = if mx.is_finite() { mx } else { 0.0 };
        o.iter_mut().zip(l).for_each(|(o, &v)| {
            *o = if v == f64::NEG_INFINITY {
                0.0
            } else {
                crate::math::exp(v - mx)
            }
        });
        *m = mx;
    }
}

/// Normalised forward pass over one sequence: fills `alpha` (T × K, each row sums to 1) and
/// `c` (the per-step normalisers, shifted emissions); returns the log likelihood. The
/// normalisers are multiplied up and their log taken only when the product leaves
/// [1e-200, 1e200], one log per many steps instead of one per step.
#[inline(always)]
fn forward_pass(
    k: usize,
    prm: &HmmParams,
    e: &[f64],
    shift: &[f64],
    alpha: &mut [f64],
    c: &mut [f64],
) -> f64 {
    let t_len = c.len();
    let mut ll = 0.0;
    let mut prod = 1.0f64;
    for t in 0..t_len {
        let (prev, cur) = alpha.split_at_mut(t * k);
        let cur = &mut cur[..k];
        let et = &e[t * k..(t + 1) * k];
        if t == 0 {
            for j in 0..k {
                cur[j] = prm.initial[j] * et[j];
            }
        } else {
            let a = &prev[(t - 1) * k..];
            cur.iter_mut().for_each(|v| *v = 0.0);
            for (i, &ai) in a.iter().enumerate().take(k) {
                let row = &prm.transition[i * k..(i + 1) * k];
                for j in 0..k {
                    cur[j] += ai * row[j];
                }
            }
            for j in 0..k {
                cur[j] *= et[j];
            }
        }
        let s: f64 = cur.iter().sum();
        c[t] = s;
        if s <= 0.0 || !s.is_finite() {
            return f64::NEG_INFINITY;
        }
        let inv = 1.0 / s;
        cur.iter_mut().for_each(|v| *v *= inv);
        ll += shift[t];
        if s < 1e-100 {
            ll += s.ln();
        } else {
            prod *= s;
            if !(1e-200..=1e200).contains(&prod) {
                ll += prod.ln();
                prod = 1.0;
            }
        }
    }
    ll + prod.ln()
}

/// Marginal log likelihood of one sequence by the normalised forward pass.
#[inline(always)]
pub fn log_likelihood(
    spec: &HmmSpec,
    prm: &HmmParams,
    data: &DataBatch,
    seq: std::ops::Range<usize>,
    s: &mut FbScratch,
) -> f64 {
    let (k, t_len) = (spec.k, seq.len());
    s.le.resize(t_len * k, 0.0);
    s.e.resize(t_len * k, 0.0);
    s.alpha.resize(t_len * k, 0.0);
    s.c.resize(t_len, 0.0);
    s.shift.resize(t_len, 0.0);
    sequence_log_emissions(spec, prm, data, seq, &mut s.le);
    shifted(&s.le, &mut s.e, &mut s.shift, k);
    forward_pass(k, prm, &s.e, &s.shift, &mut s.alpha, &mut s.c)
}

/// The backward pass over the sequence [`log_likelihood`] just ran forward (its messages
/// in `s`, T steps): writes the smoothed state probabilities γ (T × K) over the log
/// emissions in `s.le` and adds Σ_t α_{t−1}(i) e_t(j) β_t(j) / c_t to `outer` (K × K), so
/// that the expected transition counts are ξ_ij = Γ_ij · outer_ij, one product per entry
/// at the end instead of one per step.
#[inline(always)]
pub(crate) fn backward_pass(
    k: usize,
    prm: &HmmParams,
    t_len: usize,
    s: &mut FbScratch,
    outer: &mut [f64],
) {
    s.beta.clear();
    s.beta.resize(k, 1.0);
    s.tmp.resize(k, 0.0);
    for t in (0..t_len).rev() {
        let a = &s.alpha[t * k..(t + 1) * k];
        let g = &mut s.le[t * k..(t + 1) * k];
        for j in 0..k {
            g[j] = a[j] * s.beta[j];
        }
        if t == 0 {
            break;
        }
        let inv_c = 1.0 / s.c[t];
        let et = &s.e[t * k..(t + 1) * k];
        for j in 0..k {
            s.tmp[j] = et[j] * s.beta[j] * inv_c;
        }
        let ap = &s.alpha[(t - 1) * k..t * k];
        for i in 0..k {
            let row = &prm.transition[i * k..(i + 1) * k];
            let o = &mut outer[i * k..(i + 1) * k];
            let mut acc = 0.0;
            for j in 0..k {
                o[j] += ap[i] * s.tmp[j];
                acc += row[j] * s.tmp[j];
            }
            s.beta[i] = acc;
        }
    }
}

/// Forward-backward over one sequence. Calls `visit(t, gamma_t)` with the smoothed state
/// probabilities of every step, adds the expected transition counts Σ_t ξ_t(i, j) to
/// `xi_sum` (K × K) and returns the log likelihood (−∞, with no visits, when the sequence is
/// impossible under the parameters).
pub fn forward_backward(
    spec: &HmmSpec,
    prm: &HmmParams,
    data: &DataBatch,
    seq: std::ops::Range<usize>,
    s: &mut FbScratch,
    xi_sum: &mut [f64],
    mut visit: impl FnMut(usize, &[f64]),
) -> f64 {
    let (k, t_len) = (spec.k, seq.len());
    let ll = log_likelihood(spec, prm, data, seq, s);
    if !ll.is_finite() {
        return ll;
    }
    let mut outer = std::mem::take(&mut s.outer);
    outer.clear();
    outer.resize(k * k, 0.0);
    backward_pass(k, prm, t_len, s, &mut outer);
    for t in 0..t_len {
        visit(t, &s.le[t * k..(t + 1) * k]);
    }
    for (x, (&o, &g)) in xi_sum.iter_mut().zip(outer.iter().zip(&prm.transition)) {
        *x += o * g;
    }
    s.outer = outer;
    ll
}

/// The most likely state path of one sequence (Viterbi, in log space), written to `path`
/// (length T); returns its joint log probability.
pub fn viterbi(
    spec: &HmmSpec,
    prm: &HmmParams,
    data: &DataBatch,
    seq: std::ops::Range<usize>,
    path: &mut [usize],
) -> f64 {
    let (k, t_len) = (spec.k, seq.len());
    let log_t: Vec<f64> = prm.transition.iter().map(|&v| v.ln()).collect();
    let mut les = vec![0.0; t_len * k];
    sequence_log_emissions(spec, prm, data, seq, &mut les);
    let mut delta = vec![0.0; k];
    let mut next = vec![0.0; k];
    let mut back = vec![0u8; t_len * k];
    for t in 0..t_len {
        let le = &les[t * k..(t + 1) * k];
        if t == 0 {
            for j in 0..k {
                delta[j] = prm.initial[j].ln() + le[j];
            }
            continue;
        }
        for j in 0..k {
            let (mut best, mut arg) = (f64::NEG_INFINITY, 0usize);
            for i in 0..k {
                let v = delta[i] + log_t[i * k + j];
                if v > best {
                    best = v;
                    arg = i;
                }
            }
            next[j] = best + le[j];
            back[t * k + j] = arg as u8;
        }
        std::mem::swap(&mut delta, &mut next);
    }
    let (mut best, mut arg) = (f64::NEG_INFINITY, 0usize);
    for (j, &v) in delta.iter().enumerate() {
        if v > best {
            best = v;
            arg = j;
        }
    }
    for t in (0..t_len).rev() {
        path[t] = arg;
        if t > 0 {
            arg = back[t * k + arg] as usize;
        }
    }
    best
}

/// Smoothed state probabilities of dataset `b` (points × K, in point order) and its log
/// likelihood.
pub fn posteriors(spec: &HmmSpec, prm: &HmmParams, data: &DataBatch, b: usize) -> (Vec<f64>, f64) {
    let k = spec.k;
    let r = data.range(b);
    let mut out = vec![0.0; r.len() * k];
    let mut s = FbScratch::default();
    let mut xi = vec![0.0; k * k];
    let mut ll = 0.0;
    for seq in sequences(data, b) {
        let base = seq.start - r.start;
        ll += forward_backward(spec, prm, data, seq, &mut s, &mut xi, |t, g| {
            out[(base + t) * k..(base + t + 1) * k].copy_from_slice(g);
        });
    }
    (out, ll)
}

/// Filtered state probabilities P(z_t | y_1..t) of every row of dataset `b` (rows × K, the
/// normalised forward messages), and the log likelihood of each of its sequences.
pub fn filtered(
    spec: &HmmSpec,
    prm: &HmmParams,
    data: &DataBatch,
    b: usize,
) -> (Vec<f64>, Vec<f64>) {
    let k = spec.k;
    let mut out = Vec::with_capacity(data.range(b).len() * k);
    let mut lls = Vec::new();
    let mut s = FbScratch::default();
    for seq in sequences(data, b) {
        let t_len = seq.len();
        let ll = log_likelihood(spec, prm, data, seq, &mut s);
        if ll.is_finite() {
            out.extend_from_slice(&s.alpha[..t_len * k]);
        } else {
            out.extend(std::iter::repeat_n(f64::NAN, t_len * k));
        }
        lls.push(ll);
    }
    (out, lls)
}

/// A state path of every sequence of dataset `b` drawn from its posterior given `prm`
/// (forward filtering, backward sampling): `z_T` from the last filtered probabilities, then
/// `z_t` with probability proportional to `P(z_t | y_1..t) A[z_t, z_t+1]`. Returns one state
/// per row of the dataset (`usize::MAX` for a sequence with no finite likelihood).
pub fn sample_paths(
    spec: &HmmSpec,
    prm: &HmmParams,
    data: &DataBatch,
    b: usize,
    rng: &mut rand::rngs::StdRng,
) -> Vec<usize> {
    use rand::RngExt;
    let k = spec.k;
    let (filt, lls) = filtered(spec, prm, data, b);
    let mut out = vec![usize::MAX; data.range(b).len()];
    let mut base = 0;
    let mut w = vec![0.0; k];
    for (seq, ll) in sequences(data, b).into_iter().zip(lls) {
        let t_len = seq.len();
        if ll.is_finite() {
            let pick = |w: &[f64], rng: &mut rand::rngs::StdRng| -> usize {
                let total: f64 = w.iter().sum();
                let mut u = rng.random::<f64>() * total;
                for (s, &v) in w.iter().enumerate() {
                    if u < v {
                        return s;
                    }
                    u -= v;
                }
                k - 1
            };
            let last = &filt[(base + t_len - 1) * k..(base + t_len) * k];
            let mut z = pick(last, rng);
            out[base + t_len - 1] = z;
            for t in (0..t_len - 1).rev() {
                let f = &filt[(base + t) * k..(base + t + 1) * k];
                for (s, ws) in w.iter_mut().enumerate() {
                    *ws = f[s] * prm.transition[s * k + z];
                }
                z = pick(&w, rng);
                out[base + t] = z;
            }
        }
        base += t_len;
    }
    out
}

/// The state permutation that best matches path `a` to reference path `reference` (both
/// with labels below `k`): `perm[r]` is the label of `a` that becomes label `r` (Hungarian
/// matching on the overlap counts).
pub fn align_paths(reference: &[usize], a: &[usize], k: usize) -> Vec<usize> {
    let mut overlap = vec![vec![0.0; k]; k];
    for (&r, &s) in reference.iter().zip(a) {
        overlap[r][s] -= 1.0;
    }
    crate::diag::align::hungarian(&overlap)
}

/// The state permutation that best matches `fit`'s emission parameters to `reference`'s
/// (Hungarian matching on the squared distance of locations and weights).
pub fn align_params(spec: &HmmSpec, reference: &HmmParams, fit: &HmmParams) -> Vec<usize> {
    let (k, w) = (spec.k, spec.d * (1 + spec.p));
    let vec_of = |prm: &HmmParams, s: usize| -> Vec<f64> {
        let mut v = prm.loc[s * spec.d..(s + 1) * spec.d].to_vec();
        v.extend_from_slice(&prm.weights[s * spec.d * spec.p..(s + 1) * spec.d * spec.p]);
        v
    };
    let cost: Vec<Vec<f64>> = (0..k)
        .map(|r| {
            let a = vec_of(reference, r);
            (0..k)
                .map(|s| {
                    let b = vec_of(fit, s);
                    (0..w).map(|i| (a[i] - b[i]).powi(2)).sum()
                })
                .collect()
        })
        .collect();
    crate::diag::align::hungarian(&cost)
}

/// Batched EM (see [`em`]) on `backend`: the CPU E-step or the GPU one, with the same M-step
/// and restart selection, so the result is the engine's whatever the backend (how EM puts
/// itself on a backend). `progress(n)` is called as E-steps finish.
pub fn fit_em(
    backend: &crate::backend::Backend,
    spec: &HmmSpec,
    cfg: &em::EmConfig,
    data: &DataBatch,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<em::EmFit>> {
    match backend {
        crate::backend::Backend::Cpu(_) => em::fit_cpu_with_progress(spec, cfg, data, progress),
        crate::backend::Backend::Gpu(ctx) => {
            gpu::fit_gpu_with_progress(ctx.clone(), spec, cfg, data, progress)
        }
    }
}
