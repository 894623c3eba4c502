//! The mixture-of-GLMs kernel: one family that covers the GLMs (K = 1), Gaussian mixtures
//! (P = 0, Gaussian) and mixtures of linear regressions (K components, P features), with the
//! component label marginalised by log-sum-exp.
//!
//! Point `n` of component `k` has linear predictor `eta = alpha[k] + beta[k] . x_n` and a
//! Gaussian (identity link, scale `sigma[k]`), Bernoulli (logit) or Poisson (log) likelihood.
//! Unconstrained layout: `[z (K-1) | beta (K x P, component-major) | alpha (K) | log sigma (K,
//! Gaussian only)]`, with weights `softmax([z, 0])` (additive log-ratio; its log Jacobian
//! `sum_k log w_k` is added, so a Dirichlet(c) prior contributes `c sum_k log w_k`).
//!
//! The CPU twin ([`MixGlm::log_density`]) and the WGSL (`shaders/mixglm.wgsl`) share the
//! accumulator layout and the finishing step; the CPU loop works on blocks of points so that
//! it vectorises (with AVX2 + FMA when the processor has them, chosen at run time).

// Indexed loops over several equal-length rows are what the vectoriser wants here.
#![allow(clippy::needless_range_loop)]

use super::{Model, Priors};
use crate::data::{DataBatch, Dataset};
use crate::error::{Error, Result};
use crate::math::{self, Real, POISSON_ETA_MAX};

/// The likelihood of a GLM component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Likelihood {
    /// Normal with identity link and a scale parameter.
    Gaussian,
    /// Bernoulli with logit link; y in {0, 1}.
    Bernoulli,
    /// Poisson with log link; y a non-negative integer.
    Poisson,
}

impl Likelihood {
    /// Lower-case name as used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Likelihood::Gaussian => "gaussian",
            Likelihood::Bernoulli => "bernoulli",
            Likelihood::Poisson => "poisson",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Naming {
    Glm,
    Gmm,
    MixReg,
}

/// A mixture of K GLMs with P features (see the module docs).
#[derive(Clone, Debug)]
pub struct MixGlm {
    k: usize,
    p: usize,
    lik: Likelihood,
    priors: Priors,
    naming: Naming,
    sigma_fixed: Option<f64>,
}

/// Offsets into the parameter vector and the accumulator array.
#[derive(Clone, Copy, Debug)]
struct Layout {
    k: usize,
    p: usize,
    /// Whether the scales are free parameters (Gaussian likelihood, scale not fixed).
    sig: bool,
    off_beta: usize,
    off_alpha: usize,
    off_sig: usize,
    dim: usize,
    a_r: usize,
    a_beta: usize,
    a_alpha: usize,
    a_sig: usize,
    nacc: usize,
}

impl Layout {
    fn new(k: usize, p: usize, lik: Likelihood, sigma_fixed: bool) -> Self {
        let sig = lik == Likelihood::Gaussian && !sigma_fixed;
        let ns = if sig { k } else { 0 };
        let off_beta = k - 1;
        let off_alpha = off_beta + k * p;
        let off_sig = off_alpha + k;
        let a_r = 1;
        let a_beta = a_r + if k > 1 { k } else { 0 };
        let a_alpha = a_beta + k * p;
        let a_sig = a_alpha + k;
        Self {
            k,
            p,
            sig,
            off_beta,
            off_alpha,
            off_sig,
            dim: off_sig + ns,
            a_r,
            a_beta,
            a_alpha,
            a_sig,
            nacc: a_sig + ns,
        }
    }
}

const LIK_GAUSSIAN: u8 = 0;
const LIK_BERNOULLI: u8 = 1;
const LIK_POISSON: u8 = 2;

/// Per-point terms of one component at linear predictor `eta`: the log weight plus the
/// log likelihood, its derivative in `eta`, and (Gaussian) its derivative in `log sigma`.
#[inline(always)]
fn point_terms<R: Real, const LIK: u8>(eta: R, y: R, lw: R, u: R, invs: R) -> (R, R, R) {
    if LIK == LIK_GAUSSIAN {
        let z = (y - eta) * invs;
        let z2 = z * z;
        (R::of(-0.5).mul_add(z2, lw - u), z * invs, z2 - R::ONE)
    } else if LIK == LIK_BERNOULLI {
        let e = R::exp(-eta.abs());
        let r = R::ONE / (R::ONE + e);
        let sp = eta.max(R::ZERO) + R::ln(R::ONE + e);
        (
            y.mul_add(eta, lw - sp),
            y - if eta >= R::ZERO { r } else { e * r },
            R::ZERO,
        )
    } else {
        let cap = R::of(POISSON_ETA_MAX);
        let ec = R::exp(eta.min(cap));
        let mu = ec * (R::ONE + (eta - cap).max(R::ZERO));
        (y.mul_add(eta, lw - mu), y - ec, R::ZERO)
    }
}

/// [`point_terms`] over a row of points: `a` holds eta on entry and the terms on exit.
#[inline(always)]
fn row_terms<R: Real, const LIK: u8>(
    a: &mut [R],
    g: &mut [R],
    h: &mut [R],
    y: &[R],
    lw: R,
    u: R,
    invs: R,
) {
    for i in 0..a.len().min(g.len()).min(h.len()).min(y.len()) {
        (a[i], g[i], h[i]) = point_terms::<R, LIK>(a[i], y[i], lw, u, invs);
    }
}

/// `p` input columns of `n` standard-normal values each: the inputs of simulated datasets.
pub fn standard_normal_inputs(p: usize, n: usize, rng: &mut rand::rngs::StdRng) -> Vec<Vec<f64>> {
    use rand::RngExt;
    (0..p)
        .map(|_| {
            (0..n)
                .map(|_| rng.sample::<f64, _>(rand_distr::StandardNormal))
                .collect()
        })
        .collect()
}

/// Adds the lane partial sums `acc` into their f64 twins `wide` and clears them (the f32
/// kernels' fold, every [`FOLD`] blocks).
#[inline(always)]
fn widen<R: Real>(acc: &mut [R], wide: &mut [f64]) {
    for (a, w) in acc.iter_mut().zip(wide.iter_mut()) {
        *w += a.wide();
        *a = R::ZERO;
    }
}

/// The total of one accumulator's lanes: its f64 fold plus what is left in the lanes.
#[inline(always)]
fn lane_total<R: Real>(acc: &[R], wide: &[f64]) -> f64 {
    if R::WIDEN_SUMS {
        acc.iter().zip(wide).map(|(a, w)| w + a.wide()).sum()
    } else {
        acc.iter().map(|a| a.wide()).sum()
    }
}

/// Points per block of the vectorised CPU loop.
const BLOCK: usize = 32;
/// Blocks between folds: of the running product of log-sum-exp sums into one log (each factor
/// is in [1, K], so a lane's product of 16 factors stays below K^16, finite in f32 for
/// K <= 64), and, in f32, of the lane partial sums into f64.
const FOLD: usize = 16;

/// Accumulator rows of the fixed kernel: [lp | R (K) | beta (K*P) | alpha (K) | sig (K)],
/// BLOCK lanes each; sized for the largest shape it takes (K <= 3, P <= 2, K*P <= 3).
const ROWS: usize = 1 + 3 * 3 + 3;

/// One chain's parameters in `R`, for the fixed-shape kernel.
struct FixedCoefs<R, const K: usize, const P: usize> {
    beta: [[R; 4]; K],
    alpha: [R; K],
    lw: [R; K],
    u: [R; K],
    invs: [R; K],
}

impl<R: Real, const K: usize, const P: usize> FixedCoefs<R, K, P> {
    /// First rows of R, beta, alpha and sigma in the accumulator array.
    const ROWS_AT: (usize, usize, usize, usize) = (1, 1 + K, 1 + K + K * P, 1 + 2 * K + K * P);

    /// Adds the full blocks of points from `*n0` on (columns `xs`, `stride` apart, and `ys`,
    /// up to `end`) to the lanes of `acc`, and their log-sum-exp sums to `prod`, stopping
    /// after the block that makes `*blocks` a multiple of [`FOLD`]: lane `i` of a block
    /// takes its point `i`, with the same operations in the same order whatever the vector
    /// width. The accumulators are locals here, so they stay in registers from block to
    /// block: kept in the array the caller also indexes at run time (the partial block, the
    /// fold), every block's sums went to the stack and back, and that store and reload, not
    /// the arithmetic, bounded the GLM kernel. `SIG`: whether the scales are parameters,
    /// fixed at compile time (a run-time flag inside the loop became a masked store, which
    /// AMD's Zen 4 executes slowly).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn run<const LIK: u8, const SIG: bool>(
        &self,
        xs: &[R],
        ys: &[R],
        stride: usize,
        end: usize,
        n0: &mut usize,
        blocks: &mut usize,
        acc: &mut [[R; BLOCK]; ROWS],
        prod: &mut [R; BLOCK],
    ) {
        let (ar, ab, aa, asg) = Self::ROWS_AT;
        let mut lp = acc[0];
        let mut pr = *prod;
        let mut rr: [[R; BLOCK]; K] = std::array::from_fn(|k| acc[ar + k]);
        let mut ga: [[R; BLOCK]; K] = std::array::from_fn(|k| acc[aa + k]);
        let mut gs: [[R; BLOCK]; K] = std::array::from_fn(|k| acc[asg + k]);
        let mut gb: [[[R; BLOCK]; P]; K] =
            std::array::from_fn(|k| std::array::from_fn(|j| acc[ab + k * P + j]));
        while end - *n0 >= BLOCK {
            let s = *n0;
            let y: &[R; BLOCK] = ys[s..s + BLOCK].try_into().expect("a full block");
            let x: [&[R; BLOCK]; P] = std::array::from_fn(|j| {
                xs[j * stride + s..j * stride + s + BLOCK]
                    .try_into()
                    .expect("a full block")
            });
            for i in 0..BLOCK {
                let mut a = [R::ZERO; K];
                let mut g = [R::ZERO; K];
                let mut h = [R::ZERO; K];
                for k in 0..K {
                    let mut eta = self.alpha[k];
                    for j in 0..P {
                        eta = self.beta[k][j].mul_add(x[j][i], eta);
                    }
                    (a[k], g[k], h[k]) =
                        point_terms::<R, LIK>(eta, y[i], self.lw[k], self.u[k], self.invs[k]);
                }
                if K == 1 {
                    lp[i] += a[0];
                } else {
                    // Log-sum-exp over components; `a` becomes the responsibilities.
                    let mut m = a[0];
                    for k in 1..K {
                        m = m.max(a[k]);
                    }
                    let mut sum = R::ZERO;
                    for k in 0..K {
                        a[k] = R::exp(a[k] - m);
                        sum += a[k];
                    }
                    lp[i] += m;
                    pr[i] *= sum;
                    let inv = R::ONE / sum;
                    for k in 0..K {
                        let r = a[k] * inv;
                        a[k] = if r > R::ZERO { r } else { R::ZERO };
                        rr[k][i] += a[k];
                    }
                }
                for k in 0..K {
                    let r = if K == 1 { R::ONE } else { a[k] };
                    let rg = if r > R::ZERO { r * g[k] } else { R::ZERO };
                    ga[k][i] += rg;
                    for j in 0..P {
                        gb[k][j][i] = rg.mul_add(x[j][i], gb[k][j][i]);
                    }
                    if SIG {
                        gs[k][i] += if r > R::ZERO { r * h[k] } else { R::ZERO };
                    }
                }
            }
            *n0 += BLOCK;
            *blocks += 1;
            if blocks.is_multiple_of(FOLD) {
                break;
            }
        }
        acc[0] = lp;
        *prod = pr;
        for k in 0..K {
            if K > 1 {
                acc[ar + k] = rr[k];
            }
            acc[aa + k] = ga[k];
            if SIG {
                acc[asg + k] = gs[k];
            }
            acc[ab + k * P..ab + (k + 1) * P].copy_from_slice(&gb[k]);
        }
    }
}

impl MixGlm {
    /// The general family: K components, P features, one likelihood.
    pub fn new(k: usize, p: usize, lik: Likelihood, priors: Priors) -> Result<Self> {
        if k < 1 {
            return Err(Error::Config {
                flag: "--components".into(),
                message: "must be at least 1".into(),
            });
        }
        if k > 64 {
            return Err(Error::Config {
                flag: "--components".into(),
                message: format!("at most 64 components are supported, got {k}"),
            });
        }
        if p > 256 {
            return Err(Error::Config {
                flag: "--features".into(),
                message: format!("at most 256 features are supported, got {p}"),
            });
        }
        priors.validate()?;
        let naming = if k == 1 {
            Naming::Glm
        } else if p == 0 && lik == Likelihood::Gaussian {
            Naming::Gmm
        } else {
            Naming::MixReg
        };
        Ok(Self {
            k,
            p,
            lik,
            priors,
            naming,
            sigma_fixed: None,
        })
    }

    /// A GLM with `p` features (0: intercept only) plus intercept: parameters `beta[j]`, `alpha` and, for
    /// the Gaussian likelihood, `sigma`.
    pub fn glm(lik: Likelihood, p: usize, priors: Priors) -> Result<Self> {
        Self::new(1, p, lik, priors)
    }

    /// A 1-D Gaussian mixture with `k` components: `weights[k]`, `mu[k]`, `sigma[k]`.
    pub fn gmm(k: usize, priors: Priors) -> Result<Self> {
        let mut m = Self::new(k, 0, Likelihood::Gaussian, priors)?;
        m.naming = Naming::Gmm;
        Ok(m)
    }

    /// A mixture of `k` linear regressions with `p >= 1` features: `weights[k]`,
    /// `beta[k,j]`, `alpha[k]`, `sigma[k]`.
    pub fn mixreg(k: usize, p: usize, priors: Priors) -> Result<Self> {
        if p < 1 {
            return Err(Error::Config {
                flag: "--features".into(),
                message: "a mixture of regressions needs at least one feature".into(),
            });
        }
        let mut m = Self::new(k, p, Likelihood::Gaussian, priors)?;
        m.naming = Naming::MixReg;
        Ok(m)
    }

    /// Fixes every component's noise scale at `sigma` (Gaussian likelihood only): the scales
    /// leave the parameter vector, as in the tutorial's Gaussian mixture with known sd.
    pub fn with_fixed_sigma(mut self, sigma: f64) -> Result<Self> {
        if self.lik != Likelihood::Gaussian {
            return Err(Error::Config {
                flag: "--sigma-fixed".into(),
                message: "only a Gaussian likelihood has a scale to fix".into(),
            });
        }
        if !(sigma > 0.0 && sigma.is_finite()) {
            return Err(Error::Config {
                flag: "--sigma-fixed".into(),
                message: format!("must be positive and finite, got {sigma}"),
            });
        }
        self.sigma_fixed = Some(sigma);
        Ok(self)
    }

    /// The fixed noise scale, if any.
    pub fn sigma_fixed(&self) -> Option<f64> {
        self.sigma_fixed
    }

    /// Log of the scale of component `k` at `theta`.
    #[inline(always)]
    fn log_sigma(&self, l: &Layout, theta: &[f64], k: usize) -> f64 {
        match self.sigma_fixed {
            Some(s) => s.ln(),
            None => theta[l.off_sig + k],
        }
    }

    /// Number of components.
    pub fn components(&self) -> usize {
        self.k
    }

    /// Number of features.
    pub fn features(&self) -> usize {
        self.p
    }

    /// The likelihood.
    pub fn likelihood(&self) -> Likelihood {
        self.lik
    }

    /// The priors.
    pub fn priors(&self) -> &Priors {
        &self.priors
    }

    fn layout(&self) -> Layout {
        Layout::new(self.k, self.p, self.lik, self.sigma_fixed.is_some())
    }

    /// Working memory of [`MixGlm::accumulate`]: block accumulators, per-component rows and
    /// three per-point rows.
    fn work_len(l: &Layout) -> usize {
        l.nacc * BLOCK + 3 * l.k * BLOCK + 3 * BLOCK
    }

    /// Log weights from the additive log-ratio coordinates.
    fn log_weights(&self, theta: &[f64], lw: &mut [f64]) {
        let k = self.k;
        if k == 1 {
            lw[0] = 0.0;
            return;
        }
        let z = &theta[..k - 1];
        let mx = z.iter().copied().fold(0.0f64, f64::max);
        let s = (-mx).exp() + z.iter().map(|&v| (v - mx).exp()).sum::<f64>();
        let lse = mx + s.ln();
        for j in 0..k - 1 {
            lw[j] = z[j] - lse;
        }
        lw[k - 1] = -lse;
    }

    /// Responses at inputs `x` (columns) given the unconstrained `theta`, its mixture weights
    /// `w` and log scales: the label of each point, then its response.
    fn draw_y(
        &self,
        theta: &[f64],
        w: &[f64],
        log_sigma: &[f64],
        x: &[Vec<f64>],
        n: usize,
        rng: &mut rand::rngs::StdRng,
    ) -> Vec<f64> {
        use rand::RngExt;
        use rand_distr::{Bernoulli, Distribution, Poisson, StandardNormal};
        let l = self.layout();
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let u: f64 = rng.random();
            let mut kk = 0;
            let mut cum = w[0];
            while u > cum && kk + 1 < l.k {
                kk += 1;
                cum += w[kk];
            }
            let eta = theta[l.off_alpha + kk]
                + (0..l.p)
                    .map(|j| theta[l.off_beta + kk * l.p + j] * x[j][i])
                    .sum::<f64>();
            y.push(match self.lik {
                Likelihood::Gaussian => {
                    eta + log_sigma[kk].exp() * rng.sample::<f64, _>(StandardNormal)
                }
                Likelihood::Bernoulli => {
                    let pr = 1.0 / (1.0 + (-eta).exp());
                    f64::from(u8::from(
                        Bernoulli::new(pr).expect("p in [0,1]").sample(rng),
                    ))
                }
                Likelihood::Poisson => {
                    let lam = eta.min(20.0).exp();
                    Poisson::new(lam).map(|d| d.sample(rng)).unwrap_or(0.0)
                }
            });
        }
        y
    }

    /// Adds the priors to the summed accumulators and maps them to the gradient.
    fn finish(
        &self,
        tot: &[f64],
        n_points: usize,
        theta: &[f64],
        lw: &[f64],
        grad: &mut [f64],
    ) -> f64 {
        let l = self.layout();
        let pr = &self.priors;
        let mut lp = tot[0];
        if l.k > 1 {
            let c = pr.weights;
            let kc = l.k as f64 * c;
            let n = n_points as f64;
            for (kk, &w) in lw.iter().enumerate() {
                lp += c * w;
                if kk + 1 < l.k {
                    grad[kk] = tot[l.a_r + kk] - (n + kc) * w.exp() + c;
                }
            }
        }
        let normal = |v: f64, m: f64, s: f64| {
            let z = (v - m) / s;
            (-0.5 * z * z, -z / s)
        };
        for i in 0..l.k * l.p {
            let (v, d) = normal(theta[l.off_beta + i], pr.coef.mean, pr.coef.sd);
            lp += v;
            grad[l.off_beta + i] = tot[l.a_beta + i] + d;
        }
        for kk in 0..l.k {
            let (v, d) = normal(theta[l.off_alpha + kk], pr.intercept.mean, pr.intercept.sd);
            lp += v;
            grad[l.off_alpha + kk] = tot[l.a_alpha + kk] + d;
        }
        if l.sig {
            for kk in 0..l.k {
                let (v, d) = pr.scale.logp_u(theta[l.off_sig + kk]);
                lp += v;
                grad[l.off_sig + kk] = tot[l.a_sig + kk] + d;
            }
        }
        lp
    }

    /// Accumulates one dataset's points into `tot`: the fixed-size kernel for the common
    /// small shapes (everything in registers), the general blocked loop otherwise.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn accumulate<R: Real>(
        &self,
        data: &DataBatch,
        b: usize,
        theta: &[f64],
        lw: &[f64],
        tot: &mut [f64],
        wide: &mut [f64],
        work: &mut [R],
    ) {
        macro_rules! fixed {
            ($k:literal, $p:literal) => {
                match self.lik {
                    Likelihood::Gaussian => {
                        self.accumulate_fixed::<R, $k, $p, LIK_GAUSSIAN>(data, b, theta, lw, tot)
                    }
                    Likelihood::Bernoulli => {
                        self.accumulate_fixed::<R, $k, $p, LIK_BERNOULLI>(data, b, theta, lw, tot)
                    }
                    Likelihood::Poisson => {
                        self.accumulate_fixed::<R, $k, $p, LIK_POISSON>(data, b, theta, lw, tot)
                    }
                }
            };
        }
        match (self.k, self.p) {
            (1, 1) => fixed!(1, 1),
            (1, 2) => fixed!(1, 2),
            (2, 0) => fixed!(2, 0),
            (2, 1) => fixed!(2, 1),
            (3, 0) => fixed!(3, 0),
            (3, 1) => fixed!(3, 1),
            _ => self.accumulate_blocked(data, b, theta, lw, tot, wide, work),
        }
    }

    /// The kernel with K, P and the likelihood fixed at compile time: the component and
    /// feature loops unroll, and the loop over a block's points vectorises, one lane per
    /// point ([`FixedCoefs::run`]).
    #[inline(always)]
    fn accumulate_fixed<R: Real, const K: usize, const P: usize, const LIK: u8>(
        &self,
        data: &DataBatch,
        b: usize,
        theta: &[f64],
        lw: &[f64],
        tot: &mut [f64],
    ) {
        let l = self.layout();
        let gaussian = LIK == LIK_GAUSSIAN;
        let range = data.range(b);
        let n_total = data.n_total();
        let (xs, ys) = R::columns(data);
        let mut beta = [[R::ZERO; 4]; K];
        let mut alpha = [R::ZERO; K];
        let mut u = [R::ZERO; K];
        let mut invs = [R::ZERO; K];
        let mut lwk = [R::ZERO; K];
        for kk in 0..K {
            for j in 0..P {
                beta[kk][j] = R::of(theta[l.off_beta + kk * P + j]);
            }
            alpha[kk] = R::of(theta[l.off_alpha + kk]);
            lwk[kk] = R::of(lw[kk]);
            if gaussian {
                let us = self.log_sigma(&l, theta, kk);
                u[kk] = R::of(us);
                invs[kk] = R::of((-us).exp());
            }
        }
        debug_assert!(K <= 3 && P <= 2 && 1 + K + K * P + 2 * K <= ROWS);
        let mut acc = [[R::ZERO; BLOCK]; ROWS];
        let mut wide = [[0.0f64; BLOCK]; ROWS];
        let mut prod = [R::ONE; BLOCK];
        let (ar, ab, aa, asg) = FixedCoefs::<R, K, P>::ROWS_AT;
        // Accumulator rows in use.
        let used = asg + if l.sig { K } else { 0 };
        let coefs = FixedCoefs::<R, K, P> {
            beta,
            alpha,
            lw: lwk,
            u,
            invs,
        };
        let run = |xs: &[R],
                   ys: &[R],
                   stride: usize,
                   end: usize,
                   n0: &mut usize,
                   blocks: &mut usize,
                   acc: &mut [[R; BLOCK]; ROWS],
                   prod: &mut [R; BLOCK]| {
            if l.sig {
                coefs.run::<LIK, true>(xs, ys, stride, end, n0, blocks, acc, prod);
            } else {
                coefs.run::<LIK, false>(xs, ys, stride, end, n0, blocks, acc, prod);
            }
        };
        let mut blocks = 0usize;
        let mut n0 = range.start;
        while n0 < range.end {
            if range.end - n0 >= BLOCK {
                // Full blocks, up to the next fold.
                run(
                    xs,
                    ys,
                    n_total,
                    range.end,
                    &mut n0,
                    &mut blocks,
                    &mut acc,
                    &mut prod,
                );
            } else {
                // The last, partial block runs as a full one on zero-padded copies of its
                // points (finite terms for every likelihood); the lanes past its points are
                // then restored.
                let len = range.end - n0;
                let mut pad_y = [R::ZERO; BLOCK];
                let mut pad_x = [[R::ZERO; BLOCK]; P];
                pad_y[..len].copy_from_slice(&ys[n0..range.end]);
                for (j, px) in pad_x.iter_mut().enumerate() {
                    px[..len].copy_from_slice(&xs[j * n_total + n0..j * n_total + range.end]);
                }
                let (keep, keep_prod) = (acc, prod);
                let pad_xs = pad_x.as_flattened();
                run(
                    pad_xs,
                    &pad_y,
                    BLOCK,
                    BLOCK,
                    &mut 0,
                    &mut blocks,
                    &mut acc,
                    &mut prod,
                );
                for c in 0..used {
                    acc[c][len..].copy_from_slice(&keep[c][len..]);
                }
                prod[len..].copy_from_slice(&keep_prod[len..]);
                n0 = range.end;
            }
            if blocks.is_multiple_of(FOLD) {
                // The running product of log-sum-exp sums into one log, and (f32) the
                // lanes' partial sums into f64.
                if K > 1 {
                    for i in 0..BLOCK {
                        acc[0][i] += R::ln(prod[i]);
                        prod[i] = R::ONE;
                    }
                }
                if R::WIDEN_SUMS {
                    // The rows in use at once: one contiguous loop.
                    widen(
                        &mut acc.as_flattened_mut()[..used * BLOCK],
                        &mut wide.as_flattened_mut()[..used * BLOCK],
                    );
                }
            }
        }
        if K > 1 {
            for i in 0..BLOCK {
                acc[0][i] += R::ln(prod[i]);
            }
        }
        // Map the fixed row layout onto the accumulator layout.
        let total = |c: usize| lane_total(&acc[c], &wide[c]);
        tot[0] = total(0);
        for kk in 0..K {
            if K > 1 {
                tot[l.a_r + kk] = total(ar + kk);
            }
            for j in 0..P {
                tot[l.a_beta + kk * P + j] = total(ab + kk * P + j);
            }
            tot[l.a_alpha + kk] = total(aa + kk);
            if l.sig {
                tot[l.a_sig + kk] = total(asg + kk);
            }
        }
    }

    /// The general blocked loop over one dataset's points (any K and P); accumulates into
    /// `tot`, folding the lanes into `wide` (`nacc * BLOCK`) when `R` widens its sums.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn accumulate_blocked<R: Real>(
        &self,
        data: &DataBatch,
        b: usize,
        theta: &[f64],
        lw: &[f64],
        tot: &mut [f64],
        wide: &mut [f64],
        work: &mut [R],
    ) {
        let l = self.layout();
        let (k, p) = (l.k, l.p);
        let range = data.range(b);
        let n_total = data.n_total();
        let (xs, ys) = R::columns(data);
        let kb = k * BLOCK;
        work.fill(R::ZERO);
        wide.fill(0.0);
        let (acc, rest) = work.split_at_mut(l.nacc * BLOCK);
        let (a_all, rest) = rest.split_at_mut(kb);
        let (g_all, rest) = rest.split_at_mut(kb);
        let (h_all, rest) = rest.split_at_mut(kb);
        let (m, rest) = rest.split_at_mut(BLOCK);
        let (inv, prod) = rest.split_at_mut(BLOCK);
        prod.fill(R::ONE);
        let beta = &theta[l.off_beta..l.off_alpha];
        let alpha = &theta[l.off_alpha..l.off_alpha + k];
        let mut blocks = 0usize;
        let mut n0 = range.start;
        while n0 < range.end {
            let len = BLOCK.min(range.end - n0);
            let y = &ys[n0..n0 + len];
            for kk in 0..k {
                let a = &mut a_all[kk * BLOCK..kk * BLOCK + len];
                let g = &mut g_all[kk * BLOCK..kk * BLOCK + len];
                a.fill(R::of(alpha[kk]));
                for j in 0..p {
                    let xj = &xs[j * n_total + n0..j * n_total + n0 + len];
                    let bj = R::of(beta[kk * p + j]);
                    for i in 0..len {
                        a[i] = bj.mul_add(xj[i], a[i]);
                    }
                }
                let (u, invs) = if self.lik == Likelihood::Gaussian {
                    let u = self.log_sigma(&l, theta, kk);
                    (R::of(u), R::of((-u).exp()))
                } else {
                    (R::ZERO, R::ZERO)
                };
                let h = &mut h_all[kk * BLOCK..kk * BLOCK + len];
                let lwk = R::of(lw[kk]);
                match self.lik {
                    Likelihood::Gaussian => row_terms::<R, LIK_GAUSSIAN>(a, g, h, y, lwk, u, invs),
                    Likelihood::Bernoulli => {
                        row_terms::<R, LIK_BERNOULLI>(a, g, h, y, lwk, u, invs)
                    }
                    Likelihood::Poisson => row_terms::<R, LIK_POISSON>(a, g, h, y, lwk, u, invs),
                }
            }
            let (acc_lp, acc_rest) = acc.split_at_mut(BLOCK);
            if k == 1 {
                for i in 0..len {
                    acc_lp[i] += a_all[i];
                }
            } else {
                m[..len].copy_from_slice(&a_all[..len]);
                for kk in 1..k {
                    let a = &a_all[kk * BLOCK..kk * BLOCK + len];
                    for i in 0..len {
                        m[i] = m[i].max(a[i]);
                    }
                }
                inv[..len].fill(R::ZERO);
                for kk in 0..k {
                    let a = &mut a_all[kk * BLOCK..kk * BLOCK + len];
                    for i in 0..len {
                        a[i] = R::exp(a[i] - m[i]);
                        inv[i] += a[i];
                    }
                }
                for i in 0..len {
                    acc_lp[i] += m[i];
                    prod[i] *= inv[i];
                    inv[i] = R::ONE / inv[i];
                }
                // This is block `blocks + 1` (`blocks` counts the finished ones).
                if (blocks + 1).is_multiple_of(FOLD) {
                    for i in 0..BLOCK {
                        acc_lp[i] += R::ln(prod[i]);
                        prod[i] = R::ONE;
                    }
                }
            }
            // Gradient accumulators; `a_all` now holds the unnormalised responsibilities.
            // One fused pass per component turns them into r and r*g (kept in place for the
            // feature passes) and updates R, alpha and sigma; then one pass per feature.
            let row = |c: usize| c * BLOCK - BLOCK;
            for kk in 0..k {
                let e = &mut a_all[kk * BLOCK..kk * BLOCK + len];
                let g = &mut g_all[kk * BLOCK..kk * BLOCK + len];
                let h = &h_all[kk * BLOCK..kk * BLOCK + len];
                let (r_row, al_row, s_row) =
                    (row(l.a_r + kk), row(l.a_alpha + kk), row(l.a_sig + kk));
                let acc_al = &mut acc_rest[al_row..al_row + len];
                for i in 0..len {
                    let r = if k > 1 { e[i] * inv[i] } else { R::ONE };
                    let rg = if r > R::ZERO { r * g[i] } else { R::ZERO };
                    e[i] = r;
                    g[i] = rg;
                    acc_al[i] += rg;
                }
                if k > 1 {
                    let acc_r = &mut acc_rest[r_row..r_row + len];
                    for i in 0..len {
                        acc_r[i] += if e[i] > R::ZERO { e[i] } else { R::ZERO };
                    }
                }
                if l.sig {
                    let acc_s = &mut acc_rest[s_row..s_row + len];
                    for i in 0..len {
                        acc_s[i] += if e[i] > R::ZERO { e[i] * h[i] } else { R::ZERO };
                    }
                }
                for j in 0..p {
                    let xj = &xs[j * n_total + n0..j * n_total + n0 + len];
                    let b_row = row(l.a_beta + kk * p + j);
                    let acc_b = &mut acc_rest[b_row..b_row + len];
                    for i in 0..len {
                        acc_b[i] = g[i].mul_add(xj[i], acc_b[i]);
                    }
                }
            }
            blocks += 1;
            if R::WIDEN_SUMS && blocks.is_multiple_of(FOLD) {
                widen(acc, wide);
            }
            n0 += len;
        }
        if k > 1 {
            for i in 0..BLOCK {
                acc[i] += R::ln(prod[i]);
            }
        }
        for (c, t) in tot.iter_mut().enumerate() {
            let lanes = c * BLOCK..(c + 1) * BLOCK;
            // `wide` is empty when `R` does not widen.
            *t = lane_total(&acc[lanes.clone()], wide.get(lanes).unwrap_or(&[]));
        }
    }

    /// The log density in `R` on the `simd` tier (see [`Model::log_density`]).
    #[allow(clippy::too_many_arguments)]
    fn log_density_impl<R: Real>(
        &self,
        data: &DataBatch,
        b: usize,
        theta: &[f64],
        grad: &mut [f64],
        scratch: &mut Vec<f64>,
        simd: math::Simd,
    ) -> f64 {
        let l = self.layout();
        let mut lw = [0.0f64; 64];
        self.log_weights(theta, &mut lw[..l.k]);
        // Every accumulator total is assigned, and the blocked loop zeroes its own working
        // rows: only grow the buffer, never re-zero it. The working rows are `R`s carved
        // from the same f64 buffer.
        let wide_len = if R::WIDEN_SUMS { l.nacc * BLOCK } else { 0 };
        let work_len = Self::work_len(&l);
        let work_f64 = (work_len * std::mem::size_of::<R>()).div_ceil(8);
        let need = l.nacc + wide_len + work_f64;
        if scratch.len() < need {
            scratch.resize(need, 0.0);
        }
        let (tot, rest) = scratch[..need].split_at_mut(l.nacc);
        let (wide, work) = rest.split_at_mut(wide_len);
        let work: &mut [R] = &mut bytemuck::cast_slice_mut(work)[..work_len];
        math::simd_dispatch!(simd, <R: Real> (m: &MixGlm = self,
                                    data: &DataBatch = data,
                                    b: usize = b,
                                    theta: &[f64] = theta,
                                    lw: &[f64] = &lw[..l.k],
                                    tot: &mut [f64] = tot,
                                    wide: &mut [f64] = wide,
                                    work: &mut [R] = work)
         -> () {
            m.accumulate::<R>(data, b, theta, lw, tot, wide, work)
        });
        let lp = self.finish(tot, data.range(b).len(), theta, &lw[..l.k], grad);
        math::sanitize(lp, grad)
    }

    /// The log density in `R` (`f64`: [`Model::log_density`], `f32`:
    /// [`Model::log_density_f32`]) on the portable (non-SIMD) path; for tests of the dispatch.
    pub fn log_density_portable<R: Real>(
        &self,
        data: &DataBatch,
        b: usize,
        theta: &[f64],
        grad: &mut [f64],
        scratch: &mut Vec<f64>,
    ) -> f64 {
        self.log_density_impl::<R>(data, b, theta, grad, scratch, math::Simd::Portable)
    }
}

impl Model for MixGlm {
    fn name(&self) -> String {
        match self.naming {
            Naming::Glm => format!("glm-{}", self.lik.name()),
            Naming::Gmm => format!("gmm-k{}", self.k),
            Naming::MixReg if self.lik == Likelihood::Gaussian => format!("mixglm-k{}", self.k),
            Naming::MixReg => format!("mixglm-{}-k{}", self.lik.name(), self.k),
        }
    }

    fn dim(&self) -> usize {
        self.layout().dim
    }

    fn param_names(&self) -> Vec<String> {
        let (k, p) = (self.k, self.p);
        let mut names = Vec::new();
        if k > 1 {
            names.extend((0..k).map(|i| format!("weights[{i}]")));
        }
        match self.naming {
            Naming::Glm => {
                names.extend((0..p).map(|j| format!("beta[{j}]")));
                names.push("alpha".into());
                if self.layout().sig {
                    names.push("sigma".into());
                }
            }
            Naming::Gmm => {
                names.extend((0..k).map(|i| format!("mu[{i}]")));
                if self.layout().sig {
                    names.extend((0..k).map(|i| format!("sigma[{i}]")));
                }
            }
            Naming::MixReg => {
                for i in 0..k {
                    names.extend((0..p).map(|j| format!("beta[{i},{j}]")));
                }
                names.extend((0..k).map(|i| format!("alpha[{i}]")));
                if self.layout().sig {
                    names.extend((0..k).map(|i| format!("sigma[{i}]")));
                }
            }
        }
        names
    }

    fn constrain(&self, theta: &[f64]) -> Vec<f64> {
        let l = self.layout();
        let mut out = Vec::with_capacity(self.param_names().len());
        if l.k > 1 {
            let mut lw = vec![0.0; l.k];
            self.log_weights(theta, &mut lw);
            out.extend(lw.iter().map(|w| w.exp()));
        }
        out.extend_from_slice(&theta[l.off_beta..l.off_sig]);
        if l.sig {
            out.extend(theta[l.off_sig..l.dim].iter().map(|u| u.exp()));
        }
        out
    }

    fn unconstrain(&self, params: &[f64]) -> Result<Vec<f64>> {
        let l = self.layout();
        let names = self.param_names();
        if params.len() != names.len() {
            return Err(Error::Invalid(format!(
                "{} takes {} parameters ({}), got {}",
                self.name(),
                names.len(),
                names.join(", "),
                params.len()
            )));
        }
        if let Some(i) = params.iter().position(|v| !v.is_finite()) {
            return Err(Error::Invalid(format!(
                "{} = {} is not finite",
                names[i], params[i]
            )));
        }
        let mut theta = vec![0.0; l.dim];
        let mut i = 0;
        if l.k > 1 {
            let w = &params[..l.k];
            if let Some(j) = w.iter().position(|&v| v <= 0.0) {
                return Err(Error::Invalid(format!(
                    "{} = {} must be positive",
                    names[j], w[j]
                )));
            }
            let s: f64 = w.iter().sum();
            if (s - 1.0).abs() > 1e-6 {
                return Err(Error::Invalid(format!("the weights sum to {s}, not 1")));
            }
            for j in 0..l.k - 1 {
                theta[j] = (w[j] / w[l.k - 1]).ln();
            }
            i = l.k;
        }
        let nlin = l.off_sig - l.off_beta;
        theta[l.off_beta..l.off_sig].copy_from_slice(&params[i..i + nlin]);
        i += nlin;
        if l.sig {
            for kk in 0..l.k {
                let s = params[i + kk];
                if s <= 0.0 {
                    return Err(Error::Invalid(format!(
                        "{} = {s} must be positive",
                        names[i + kk]
                    )));
                }
                theta[l.off_sig + kk] = s.ln();
            }
        }
        Ok(theta)
    }

    fn check_data(&self, data: &DataBatch) -> Result<()> {
        if data.p() != self.p {
            return Err(Error::Invalid(format!(
                "{} expects {} input column(s), the data has {}",
                self.name(),
                self.p,
                data.p()
            )));
        }
        for (n, &y) in data.y().iter().enumerate() {
            let ok = match self.lik {
                Likelihood::Gaussian => y.is_finite(),
                Likelihood::Bernoulli => y == 0.0 || y == 1.0,
                Likelihood::Poisson => y >= 0.0 && y.fract() == 0.0 && y < 1e9,
            };
            if !ok {
                let b = data.offsets().partition_point(|&o| o <= n) - 1;
                return Err(Error::Invalid(format!(
                    "column {:?}: value {y} (dataset {}, point {}) is outside the {} likelihood's support",
                    data.y_name,
                    data.dataset_name(b),
                    n - data.offsets()[b],
                    self.lik.name()
                )));
            }
        }
        Ok(())
    }

    fn log_density(
        &self,
        data: &DataBatch,
        b: usize,
        theta: &[f64],
        grad: &mut [f64],
        scratch: &mut Vec<f64>,
    ) -> f64 {
        self.log_density_impl::<f64>(data, b, theta, grad, scratch, math::simd())
    }

    fn log_density_f32(
        &self,
        data: &DataBatch,
        b: usize,
        theta: &[f64],
        grad: &mut [f64],
        scratch: &mut Vec<f64>,
    ) -> f64 {
        self.log_density_impl::<f32>(data, b, theta, grad, scratch, math::simd())
    }

    fn has_f32_kernel(&self) -> bool {
        true
    }

    fn constant(&self, data: &DataBatch, b: usize) -> f64 {
        let l = self.layout();
        let pr = &self.priors;
        let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
        let n = data.range(b).len() as f64;
        let mut c = match self.lik {
            Likelihood::Gaussian => -half_log_2pi * n,
            Likelihood::Bernoulli => 0.0,
            Likelihood::Poisson => -data.y()[data.range(b)]
                .iter()
                .map(|&y| math::lgamma(y + 1.0))
                .sum::<f64>(),
        };
        c += (l.k * l.p) as f64 * (-pr.coef.sd.ln() - half_log_2pi);
        c += l.k as f64 * (-pr.intercept.sd.ln() - half_log_2pi);
        if l.sig {
            c += l.k as f64 * pr.scale.constant();
        }
        if l.k > 1 {
            let kf = l.k as f64;
            c += math::lgamma(kf * pr.weights) - kf * math::lgamma(pr.weights);
        }
        c
    }

    fn log_lik_pointwise(&self, data: &DataBatch, b: usize, theta: &[f64]) -> Option<Vec<f64>> {
        let l = self.layout();
        let mut lw = vec![0.0; l.k];
        self.log_weights(theta, &mut lw);
        let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
        let log_sigma: Vec<f64> = match self.lik {
            Likelihood::Gaussian => (0..l.k).map(|k| self.log_sigma(&l, theta, k)).collect(),
            _ => vec![0.0; l.k],
        };
        let range = data.range(b);
        let y = &data.y()[range.clone()];
        let mut terms = vec![0.0; l.k];
        let out = range
            .enumerate()
            .map(|(i, n)| {
                for (k, t) in terms.iter_mut().enumerate() {
                    let eta = theta[l.off_alpha + k]
                        + (0..l.p)
                            .map(|j| theta[l.off_beta + k * l.p + j] * data.x_col(j)[n])
                            .sum::<f64>();
                    // The kernels' likelihoods ([`point_terms`]) with their constants.
                    let ll = match self.lik {
                        Likelihood::Gaussian => {
                            let z = (y[i] - eta) * (-log_sigma[k]).exp();
                            -0.5 * z * z - log_sigma[k] - half_log_2pi
                        }
                        Likelihood::Bernoulli => {
                            y[i] * eta - (eta.max(0.0) + (-eta.abs()).exp().ln_1p())
                        }
                        Likelihood::Poisson => {
                            let cap = POISSON_ETA_MAX;
                            let mu = eta.min(cap).exp() * (1.0 + (eta - cap).max(0.0));
                            y[i] * eta - mu - math::lgamma(y[i] + 1.0)
                        }
                    };
                    *t = lw[k] + ll;
                }
                math::log_sum_exp(&terms)
            })
            .collect();
        Some(out)
    }

    fn wgsl(&self) -> String {
        let l = self.layout();
        let pr = &self.priors;
        let lik = match self.lik {
            Likelihood::Gaussian => {
                "let u = (*c).u[k];\n        let z = (y - eta) * (*c).invs[k];\n        let z2 = z * z;\n        g[k] = z * (*c).invs[k];\n        h[k] = z2 - 1.0;\n        a[k] = (*c).lw[k] - u - 0.5 * z2;"
            }
            Likelihood::Bernoulli => {
                "let e = exp(-abs(eta));\n        let r = 1.0 / (1.0 + e);\n        let sp = max(eta, 0.0) + log1p_small(e);\n        g[k] = y - select(e * r, r, eta >= 0.0);\n        a[k] = (*c).lw[k] + y * eta - sp;"
            }
            Likelihood::Poisson => {
                "let ec = exp(min(eta, POISSON_ETA_MAX));\n        let mu = ec * (1.0 + max(eta - POISSON_ETA_MAX, 0.0));\n        g[k] = y - ec;\n        a[k] = (*c).lw[k] + y * eta - mu;"
            }
        };
        let gauss = self.lik == Likelihood::Gaussian;
        crate::shader::Wgsl::new()
            .u32("K", l.k)
            .u32("P", l.p)
            .u32("KP_ARR", (l.k * l.p).max(1))
            .u32("D", l.dim)
            .u32("NACC", l.nacc)
            .bool("GAUSSIAN", gauss)
            .bool("SIGMA_FREE", l.sig)
            .f32("LOG_SIGMA_FIXED", self.sigma_fixed.unwrap_or(1.0).ln())
            .u32("OFF_BETA", l.off_beta)
            .u32("OFF_ALPHA", l.off_alpha)
            // Unused without a scale; 0 keeps constant indices in bounds for naga.
            .u32("OFF_SIG", if l.sig { l.off_sig } else { 0 })
            .u32("A_R", l.a_r)
            .u32("A_BETA", l.a_beta)
            .u32("A_ALPHA", l.a_alpha)
            .u32("A_SIG", if l.sig { l.a_sig } else { 0 })
            .f32("POISSON_ETA_MAX", POISSON_ETA_MAX)
            .f32("DIRICHLET_C", pr.weights)
            .f32("COEF_MEAN", pr.coef.mean)
            .f32("COEF_SD", pr.coef.sd)
            .f32("ICPT_MEAN", pr.intercept.mean)
            .f32("ICPT_SD", pr.intercept.sd)
            .code(&pr.scale.wgsl_fn("scale_prior"))
            .template(crate::shader::MIXGLM, &[("LIKELIHOOD", lik)])
            .build()
    }

    fn simulate(&self, n: usize, rng: &mut rand::rngs::StdRng) -> (Vec<f64>, Dataset) {
        use rand_distr::{Distribution, Gamma, Normal};
        let l = self.layout();
        let pr = &self.priors;
        let mut theta = vec![0.0; l.dim];
        // Weights ~ Dirichlet(c) through normalised gammas; z = log(w_k / w_K).
        let mut w = vec![1.0; l.k];
        if l.k > 1 {
            let gamma = Gamma::new(pr.weights, 1.0).expect("validated");
            for wk in w.iter_mut() {
                *wk = gamma.sample(rng).max(1e-300);
            }
            let s: f64 = w.iter().sum();
            w.iter_mut().for_each(|v| *v /= s);
            for j in 0..l.k - 1 {
                theta[j] = (w[j] / w[l.k - 1]).ln();
            }
        }
        let coef = Normal::new(pr.coef.mean, pr.coef.sd).expect("validated");
        let icpt = Normal::new(pr.intercept.mean, pr.intercept.sd).expect("validated");
        for i in 0..l.k * l.p {
            theta[l.off_beta + i] = coef.sample(rng);
        }
        for kk in 0..l.k {
            theta[l.off_alpha + kk] = icpt.sample(rng);
        }
        let mut log_sigma = vec![0.0; l.k];
        if self.lik == Likelihood::Gaussian {
            for (kk, ls) in log_sigma.iter_mut().enumerate() {
                *ls = match self.sigma_fixed {
                    Some(s) => s.ln(),
                    None => pr.scale.sample(rng).max(1e-300).ln(),
                };
                if l.sig {
                    theta[l.off_sig + kk] = *ls;
                }
            }
        }
        let x = standard_normal_inputs(l.p, n, rng);
        let y = self.draw_y(&theta, &w, &log_sigma, &x, n, rng);
        (theta, Dataset { x, y })
    }

    fn simulate_given(
        &self,
        theta: &[f64],
        n: usize,
        rng: &mut rand::rngs::StdRng,
    ) -> Option<Dataset> {
        let x = standard_normal_inputs(self.p, n, rng);
        let y = self.predict_y(theta, &x, n, rng)?;
        Some(Dataset { x, y })
    }

    fn predict_y(
        &self,
        theta: &[f64],
        x: &[Vec<f64>],
        n: usize,
        rng: &mut rand::rngs::StdRng,
    ) -> Option<Vec<f64>> {
        let l = self.layout();
        if theta.len() != l.dim || x.len() != l.p || x.iter().any(|c| c.len() != n) {
            return None;
        }
        let mut lw = vec![0.0; l.k];
        self.log_weights(theta, &mut lw);
        let w: Vec<f64> = lw.iter().map(|v| v.exp()).collect();
        let log_sigma: Vec<f64> = (0..l.k)
            .map(|k| match self.lik {
                Likelihood::Gaussian => self.log_sigma(&l, theta, k),
                _ => 0.0,
            })
            .collect();
        Some(self.draw_y(theta, &w, &log_sigma, x, n, rng))
    }

    fn label_groups(&self) -> Option<Vec<Vec<usize>>> {
        let (k, p) = (self.k, self.p);
        if k < 2 {
            return None;
        }
        let sig = self.layout().sig;
        Some(
            (0..k)
                .map(|c| {
                    let mut g = vec![c];
                    g.extend((0..p).map(|j| k + c * p + j));
                    g.push(k + k * p + c);
                    if sig {
                        g.push(k + k * p + k + c);
                    }
                    g
                })
                .collect(),
        )
    }

    fn cost_per_point(&self) -> (f64, f64) {
        let (k, p) = (self.k as f64, self.p as f64);
        // Per component: eta (2P FMA flops), likelihood terms (~8 flops), gradient
        // accumulation (R, alpha, beta, sigma: ~6 + 2P flops). Per point: max/sum/product over
        // K (~4K flops). Transcendentals: one exp per component for responsibilities
        // (K > 1), plus the Bernoulli/Poisson link's exp (and log for Bernoulli).
        let flops = k * (4.0 * p + 14.0) + if self.k > 1 { 4.0 * k } else { 0.0 };
        let tr = match self.lik {
            Likelihood::Gaussian => 0.0,
            Likelihood::Bernoulli => 2.0 * k,
            Likelihood::Poisson => k,
        } + if self.k > 1 { k } else { 0.0 };
        (flops, tr)
    }
}
