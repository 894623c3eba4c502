//! The errors-in-variables dot product of a noisy physical system (shared/seeds 000):
//! `y_n = (x_n + a_n) . (w * (1 + b)) (+ e_n)`, `a_n ~ N(0, sigma_x^2 I)`,
//! `b ~ N(0, sigma_w^2 I)`, `e_n ~ N(0, sigma_obs^2)`, with `x_n` and `w` known.
//!
//! - [`EivVariant::Shared`]: one `b` for the whole dataset (one physical system). The x-noise
//!   is marginalised exactly, `y_n | b ~ N(x_n . v, sigma_x^2 |v|^2 + sigma_obs^2)` with
//!   `v = w * (1 + b)`, and the M latent `b ~ N(0, sigma_w^2 I)` are sampled with the scales,
//!   centred: with N >> M points the data pin `b` down while `sigma_w` stays weakly
//!   identified, the regime where the non-centred `b = sigma_w z` makes a curved ridge (it
//!   gave 19 divergences in 4 000 draws on the forum's system; centred gives none). The y_n
//!   are correlated through `b`: a per-observation likelihood would be wrong here.
//! - [`EivVariant::PerObservation`]: a fresh `b` for every observation, approximated by the
//!   Gaussian with the exact first two moments, `E y_n = x_n . w`,
//!   `Var y_n = sigma_w^2 sum_m x_nm^2 w_m^2 + sigma_x^2 (1 + sigma_w^2) |w|^2 + sigma_obs^2`.
//!   The exact density is a generalised chi-square; the model's name says it is an
//!   approximation.
//!
//! Unconstrained layout: `[log sigma_x, log sigma_w, (log sigma_obs), b (M, shared only)]`.

use super::{f, Model, ScalePrior};
use crate::data::{DataBatch, Dataset};
use crate::error::{Error, Result};
use crate::math;

/// Which noise structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EivVariant {
    /// One draw of the multiplicative noise for the whole dataset (exact likelihood).
    Shared,
    /// A fresh draw per observation (Gaussian moment approximation).
    PerObservation,
}

/// The errors-in-variables family (see the module docs).
#[derive(Clone, Debug)]
pub struct Eiv {
    w: Vec<f64>,
    variant: EivVariant,
    obs_noise: bool,
    /// Prior on sigma_x (default LogNormal(-1, 1)).
    pub prior_x: ScalePrior,
    /// Prior on sigma_w (default LogNormal(-2, 1)).
    pub prior_w: ScalePrior,
    /// Prior on sigma_obs when enabled (default LogNormal(-2, 1)).
    pub prior_obs: ScalePrior,
}

impl Eiv {
    /// The family for known weights `w` (M >= 1, at most 64).
    pub fn new(w: Vec<f64>, variant: EivVariant, obs_noise: bool) -> Result<Self> {
        if w.is_empty() || w.len() > 64 {
            return Err(Error::Invalid(format!(
                "--w: 1 to 64 weights are needed, got {}",
                w.len()
            )));
        }
        if let Some(v) = w.iter().find(|v| !v.is_finite()) {
            return Err(Error::Invalid(format!("--w: weight {v} is not finite")));
        }
        Ok(Self {
            w,
            variant,
            obs_noise,
            prior_x: ScalePrior::LogNormal { mu: -1.0, sd: 1.0 },
            prior_w: ScalePrior::LogNormal { mu: -2.0, sd: 1.0 },
            prior_obs: ScalePrior::LogNormal { mu: -2.0, sd: 1.0 },
        })
    }

    /// Replaces the priors (each validated).
    pub fn with_priors(mut self, x: ScalePrior, w: ScalePrior, obs: ScalePrior) -> Result<Self> {
        x.validate()?;
        w.validate()?;
        obs.validate()?;
        self.prior_x = x;
        self.prior_w = w;
        self.prior_obs = obs;
        Ok(self)
    }

    /// The known weights.
    pub fn weights(&self) -> &[f64] {
        &self.w
    }

    /// The variant.
    pub fn variant(&self) -> EivVariant {
        self.variant
    }

    fn m(&self) -> usize {
        self.w.len()
    }

    fn n_scales(&self) -> usize {
        2 + usize::from(self.obs_noise)
    }

    fn off_z(&self) -> usize {
        self.n_scales()
    }

    /// Simulates a dataset of `n` points with inputs `x` (columns) at constrained scales
    /// `(sigma_x, sigma_w, sigma_obs)`, drawing b (shared or per point) and the x-noise.
    pub fn simulate_at(
        &self,
        x: &[Vec<f64>],
        scales: (f64, f64, f64),
        rng: &mut rand::rngs::StdRng,
    ) -> (Vec<f64>, Vec<f64>) {
        use rand::RngExt;
        use rand_distr::StandardNormal;
        let m = self.m();
        let n = x.first().map_or(0, |c| c.len());
        let (sx, sw, so) = scales;
        let shared_z: Vec<f64> = (0..m)
            .map(|_| rng.sample::<f64, _>(StandardNormal))
            .collect();
        let mut y = Vec::with_capacity(n);
        #[allow(clippy::needless_range_loop)]
        for i in 0..n {
            let mut acc = 0.0;
            for j in 0..m {
                let z = match self.variant {
                    EivVariant::Shared => shared_z[j],
                    EivVariant::PerObservation => rng.sample::<f64, _>(StandardNormal),
                };
                let a: f64 = sx * rng.sample::<f64, _>(StandardNormal);
                acc += (x[j][i] + a) * self.w[j] * (1.0 + sw * z);
            }
            let e: f64 = if self.obs_noise {
                so * rng.sample::<f64, _>(StandardNormal)
            } else {
                0.0
            };
            y.push(acc + e);
        }
        (shared_z, y)
    }
}

impl Model for Eiv {
    fn name(&self) -> String {
        match self.variant {
            EivVariant::Shared => "eiv-shared".into(),
            EivVariant::PerObservation => {
                "eiv-per-observation (Gaussian moment approximation)".into()
            }
        }
    }

    fn dim(&self) -> usize {
        self.n_scales()
            + if self.variant == EivVariant::Shared {
                self.m()
            } else {
                0
            }
    }

    fn param_names(&self) -> Vec<String> {
        let mut v = vec!["sigma_x".to_string(), "sigma_w".to_string()];
        if self.obs_noise {
            v.push("sigma_obs".into());
        }
        if self.variant == EivVariant::Shared {
            v.extend((0..self.m()).map(|j| format!("b[{j}]")));
        }
        v
    }

    fn constrain(&self, theta: &[f64]) -> Vec<f64> {
        let ns = self.n_scales();
        let mut out: Vec<f64> = theta[..ns].iter().map(|u| u.exp()).collect();
        out.extend_from_slice(&theta[ns..]);
        out
    }

    fn unconstrain(&self, params: &[f64]) -> Result<Vec<f64>> {
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
        let ns = self.n_scales();
        if let Some(i) = (0..ns).find(|&i| !(params[i] > 0.0 && params[i].is_finite())) {
            return Err(Error::Invalid(format!(
                "{} = {} must be positive",
                names[i], params[i]
            )));
        }
        let mut theta: Vec<f64> = params[..ns].iter().map(|s| s.ln()).collect();
        theta.extend_from_slice(&params[ns..]);
        Ok(theta)
    }

    fn check_data(&self, data: &DataBatch) -> Result<()> {
        if data.p() != self.m() {
            return Err(Error::Invalid(format!(
                "eiv has {} weights (--w) but the data has {} input column(s) (--x)",
                self.m(),
                data.p()
            )));
        }
        Ok(())
    }

    fn log_density(
        &self,
        data: &DataBatch,
        b: usize,
        theta: &[f64],
        grad: &mut [f64],
        _scratch: &mut Vec<f64>,
    ) -> f64 {
        let m = self.m();
        let n_tot = data.n_total();
        let range = data.range(b);
        let n = range.len() as f64;
        let (xs, ys) = (data.x(), data.y());
        let (ux, uw) = (theta[0], theta[1]);
        let (sx, sw) = (ux.exp(), uw.exp());
        let so2 = if self.obs_noise {
            (2.0 * theta[2]).exp()
        } else {
            0.0
        };
        grad.iter_mut().for_each(|g| *g = 0.0);
        let mut lp;
        match self.variant {
            EivVariant::Shared => {
                let bs = &theta[self.off_z()..];
                let v: Vec<f64> = (0..m).map(|j| self.w[j] * (1.0 + bs[j])).collect();
                let vv: f64 = v.iter().map(|a| a * a).sum();
                let s2 = sx * sx * vv + so2;
                let mut s = 0.0;
                let mut a = vec![0.0; m];
                for i in range.clone() {
                    let mut r = ys[i];
                    for j in 0..m {
                        r -= xs[j * n_tot + i] * v[j];
                    }
                    s += r * r;
                    for j in 0..m {
                        a[j] += r * xs[j * n_tot + i];
                    }
                }
                lp = -0.5 * s / s2 - 0.5 * n * s2.ln();
                let ds2 = 0.5 * s / (s2 * s2) - 0.5 * n / s2;
                grad[0] = ds2 * 2.0 * sx * sx * vv;
                // Centred prior b_m ~ N(0, sigma_w^2): -b^2 / (2 sigma_w^2) - log sigma_w.
                let isw2 = 1.0 / (sw * sw);
                for j in 0..m {
                    let dv = a[j] / s2 + ds2 * 2.0 * sx * sx * v[j];
                    grad[self.off_z() + j] = dv * self.w[j] - bs[j] * isw2;
                    grad[1] += bs[j] * bs[j] * isw2 - 1.0;
                    lp -= 0.5 * bs[j] * bs[j] * isw2 + uw;
                }
                if self.obs_noise {
                    grad[2] = ds2 * 2.0 * so2;
                }
            }
            EivVariant::PerObservation => {
                let ww: f64 = self.w.iter().map(|a| a * a).sum();
                let c = sx * sx * (1.0 + sw * sw) * ww + so2;
                let (mut l, mut gsum, mut hsum) = (0.0, 0.0, 0.0);
                for i in range.clone() {
                    let (mut mu, mut q) = (0.0, 0.0);
                    for j in 0..m {
                        let xw = xs[j * n_tot + i] * self.w[j];
                        mu += xw;
                        q += xw * xw;
                    }
                    let var = sw * sw * q + c;
                    let r = ys[i] - mu;
                    l += -0.5 * r * r / var - 0.5 * var.ln();
                    let g = 0.5 * r * r / (var * var) - 0.5 / var;
                    gsum += g;
                    hsum += g * q;
                }
                lp = l;
                grad[1] = hsum * 2.0 * sw * sw + gsum * sx * sx * ww * 2.0 * sw * sw;
                grad[0] = gsum * 2.0 * sx * sx * (1.0 + sw * sw) * ww;
                if self.obs_noise {
                    grad[2] = gsum * 2.0 * so2;
                }
            }
        }
        let priors = [self.prior_x, self.prior_w, self.prior_obs];
        for (i, p) in priors.iter().take(self.n_scales()).enumerate() {
            let (v, d) = p.logp_u(theta[i]);
            lp += v;
            grad[i] += d;
        }
        math::sanitize(lp, grad)
    }

    fn constant(&self, data: &DataBatch, b: usize) -> f64 {
        let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
        let n = data.range(b).len() as f64;
        let mut c = -half_log_2pi * n;
        if self.variant == EivVariant::Shared {
            c -= half_log_2pi * self.m() as f64;
        }
        let priors = [self.prior_x, self.prior_w, self.prior_obs];
        c + priors
            .iter()
            .take(self.n_scales())
            .map(|p| p.constant())
            .sum::<f64>()
    }

    fn wgsl(&self) -> String {
        let m = self.m();
        let w_list = self.w.iter().map(|&v| f(v)).collect::<Vec<_>>().join(", ");
        let header = format!(
            "const M: u32 = {m}u;\nconst D: u32 = {d}u;\nconst NACC: u32 = {nacc}u;\nconst OBS: bool = {obs};\nconst SHARED: bool = {shared};\nconst OFF_Z: u32 = {offz}u;\nconst W: array<f32, {m}> = array<f32, {m}>({w_list});\n",
            d = self.dim(),
            nacc = if self.variant == EivVariant::Shared { 1 + m } else { 3 },
            obs = self.obs_noise,
            shared = self.variant == EivVariant::Shared,
            offz = self.off_z(),
        );
        let priors = format!(
            "{}{}{}",
            self.prior_x.wgsl_fn("prior_x"),
            self.prior_w.wgsl_fn("prior_w"),
            self.prior_obs.wgsl_fn("prior_obs")
        );
        format!("{header}{priors}{}", include_str!("../../shaders/eiv.wgsl"))
    }

    fn simulate(&self, n: usize, rng: &mut rand::rngs::StdRng) -> (Vec<f64>, Dataset) {
        use rand::RngExt;
        use rand_distr::StandardNormal;
        let m = self.m();
        let sx = self.prior_x.sample(rng).max(1e-300);
        let sw = self.prior_w.sample(rng).max(1e-300);
        let so = if self.obs_noise {
            self.prior_obs.sample(rng).max(1e-300)
        } else {
            0.0
        };
        let x: Vec<Vec<f64>> = (0..m)
            .map(|_| {
                (0..n)
                    .map(|_| rng.sample::<f64, _>(StandardNormal))
                    .collect()
            })
            .collect();
        let (z, y) = self.simulate_at(&x, (sx, sw, so), rng);
        let mut theta = vec![sx.ln(), sw.ln()];
        if self.obs_noise {
            theta.push(so.ln());
        }
        if self.variant == EivVariant::Shared {
            theta.extend(z.iter().map(|v| sw * v));
        }
        (theta, Dataset { x, y })
    }

    fn cost_per_point(&self) -> (f64, f64) {
        let m = self.m() as f64;
        match self.variant {
            EivVariant::Shared => (4.0 * m + 2.0, 0.0),
            EivVariant::PerObservation => (4.0 * m + 12.0, 1.0),
        }
    }
}
