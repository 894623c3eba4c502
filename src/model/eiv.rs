//! The errors-in-variables dot product of a noisy physical system (shared/seeds 000):
//! `y_n = (x_n + a_n) . (w * (1 + b)) (+ e_n)`, `a_n ~ N(0, sigma_x^2 I)`,
//! `b ~ N(0, sigma_w^2 I)`, `e_n ~ N(0, sigma_obs^2)`, with `x_n` and `w` known.
//!
//! - [`EivVariant::Shared`]: one `b` for the whole dataset (one physical system). The x-noise
//!   is marginalised exactly, `y_n | b ~ N(x_n . v, sigma_x^2 |v|^2 + sigma_obs^2)` with
//!   `v = w * (1 + b)`, and the M latent `b ~ N(0, sigma_w^2 I)` are sampled with the scales,
//!   partially non-centred: `b = sigma_w^c u`, `u ~ N(0, sigma_w^(2 - 2c))`, c = 1/2. Neither
//!   extreme suits this posterior: `sigma_w` ranges over two decades (0.004 to 0.12 on the
//!   forum's system) while the data pin each `b_m` to about `0.05 / w_m`. Where `sigma_w` is
//!   small, the centred `b` (c = 0) must squeeze into a funnel neck of width `sigma_w`; where
//!   it is large, the non-centred `z = b / sigma_w` (c = 1) lies on a curved ridge. Measured on
//!   10 simulated forum systems x 4 chains x 1 000 draws: c = 0 gave 0-50 divergences per
//!   system, c = 1 gave 1-51, c = 1/2 gave 0-14 at the default target acceptance and none at
//!   0.9, which is this variant's [`Model::target_accept`] (tests/eiv.rs checks it). The
//!   summary reports `b` itself. The y_n are correlated through `b`: a per-observation
//!   likelihood would be wrong here.
//! - [`EivVariant::PerObservation`]: a fresh `b` for every observation, approximated by the
//!   Gaussian with the exact first two moments, `E y_n = x_n . w`,
//!   `Var y_n = sigma_w^2 sum_m x_nm^2 w_m^2 + sigma_x^2 (1 + sigma_w^2) |w|^2 + sigma_obs^2`.
//!   The exact density is a generalised chi-square; the model's name says it is an
//!   approximation.
//!
//! Unconstrained layout: `[log sigma_x, log sigma_w, (log sigma_obs), u (M, shared only)]`.

use super::{Model, ScalePrior};
use crate::data::{DataBatch, Dataset};
use crate::error::{Error, Result};
use crate::math;

/// The power `c` of the partially non-centred latents, `b = sigma_w^c u` (see the module docs).
pub const NONCENTRING: f64 = 0.5;

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
    /// Shared variant: the number of systems pooled in one dataset (each its own b, all
    /// sharing the scales); `None`: one system and no system column.
    systems: Option<usize>,
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
            return Err(Error::Config {
                flag: "--w".into(),
                message: format!("1 to 64 weights are needed, got {}", w.len()),
            });
        }
        if let Some(v) = w.iter().find(|v| !v.is_finite()) {
            return Err(Error::Config {
                flag: "--w".into(),
                message: format!("weight {v} is not finite"),
            });
        }
        Ok(Self {
            w,
            variant,
            obs_noise,
            systems: None,
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

    /// Pools `s` systems built the same way (shared variant): each has its own draw of b
    /// (`b[s,m]` in the output) while `sigma_x` and `sigma_w` are common, which is how
    /// several datasets of one kind of system identify `sigma_w`. The data then carry one
    /// more input column after the M inputs: the system index, an integer in `0..s`.
    pub fn with_systems(mut self, s: usize) -> Result<Self> {
        if self.variant != EivVariant::Shared {
            return Err(Error::Config {
                flag: "--system".into(),
                message: "pooling systems needs --variant shared".into(),
            });
        }
        if s == 0 || s * self.m() > 512 {
            return Err(Error::Config {
                flag: "--system".into(),
                message: format!(
                    "1 to {} systems of {} weights are supported, got {s}",
                    512 / self.m(),
                    self.m()
                ),
            });
        }
        self.systems = Some(s);
        Ok(self)
    }

    /// Systems pooled in one dataset (1 unless [`Eiv::with_systems`]).
    pub fn systems(&self) -> usize {
        self.systems.unwrap_or(1)
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

impl Eiv {
    /// Simulates `n` points with inputs x ~ N(0, I) at constrained scales `(sigma_x,
    /// sigma_w, sigma_obs)`. With [`Eiv::with_systems`] system k takes the rows
    /// `k n / S .. (k + 1) n / S`, each with its own b, and the system column is appended to
    /// the inputs. Returns the standard-normal draws z of every system's b (b = sigma_w z,
    /// S x M) and the dataset.
    pub fn simulate_systems(
        &self,
        n: usize,
        scales: (f64, f64, f64),
        rng: &mut rand::rngs::StdRng,
    ) -> (Vec<f64>, Dataset) {
        use rand::RngExt;
        use rand_distr::StandardNormal;
        let mut x: Vec<Vec<f64>> = (0..self.m())
            .map(|_| {
                (0..n)
                    .map(|_| rng.sample::<f64, _>(StandardNormal))
                    .collect()
            })
            .collect();
        let n_sys = self.systems();
        let mut z = Vec::with_capacity(n_sys * self.m());
        let mut y = Vec::with_capacity(n);
        let mut sys = Vec::with_capacity(n);
        for k in 0..n_sys {
            let rows = k * n / n_sys..(k + 1) * n / n_sys;
            let xk: Vec<Vec<f64>> = x.iter().map(|c| c[rows.clone()].to_vec()).collect();
            let (zk, yk) = self.simulate_at(&xk, scales, rng);
            z.extend(zk);
            y.extend(yk);
            sys.extend(rows.map(|_| k as f64));
        }
        if self.systems.is_some() {
            x.push(sys);
        }
        (z, Dataset { x, y })
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

    fn target_accept(&self) -> f64 {
        match self.variant {
            EivVariant::Shared => 0.9,
            EivVariant::PerObservation => 0.651,
        }
    }

    fn dim(&self) -> usize {
        self.n_scales()
            + if self.variant == EivVariant::Shared {
                self.m() * self.systems()
            } else {
                0
            }
    }

    fn param_names(&self) -> Vec<String> {
        let mut v = vec!["sigma_x".to_string(), "sigma_w".to_string()];
        if self.obs_noise {
            v.push("sigma_obs".into());
        }
        match (self.variant, self.systems) {
            (EivVariant::Shared, None) => v.extend((0..self.m()).map(|j| format!("b[{j}]"))),
            (EivVariant::Shared, Some(n)) => {
                for k in 0..n {
                    v.extend((0..self.m()).map(|j| format!("b[{k},{j}]")));
                }
            }
            (EivVariant::PerObservation, _) => {}
        }
        v
    }

    fn constrain(&self, theta: &[f64]) -> Vec<f64> {
        let ns = self.n_scales();
        let mut out: Vec<f64> = theta[..ns].iter().map(|u| u.exp()).collect();
        let scale_b = (NONCENTRING * theta[1]).exp();
        out.extend(theta[ns..].iter().map(|u| u * scale_b));
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
        let scale_b = params[1].powf(-NONCENTRING);
        theta.extend(params[ns..].iter().map(|b| b * scale_b));
        Ok(theta)
    }

    fn check_data(&self, data: &DataBatch) -> Result<()> {
        let want = self.m() + usize::from(self.systems.is_some());
        if data.p() != want {
            return Err(Error::Invalid(format!(
                "eiv has {} weights (--w){} but the data has {} input column(s) (--x)",
                self.m(),
                if self.systems.is_some() {
                    " and a system column"
                } else {
                    ""
                },
                data.p()
            )));
        }
        if let Some(n) = self.systems {
            let col = &data.x()[self.m() * data.n_total()..][..data.n_total()];
            if let Some((i, v)) = col
                .iter()
                .enumerate()
                .find(|(_, &v)| !(v >= 0.0 && v < n as f64 && v.fract() == 0.0))
            {
                return Err(Error::Invalid(format!(
                    "system column, data row {}: {v} is not a system index in 0..{n}",
                    i + 1
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
        let m = self.m();
        let n_tot = data.n_total();
        let range = data.range(b);
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
                // Partially non-centred latents: b = sigma_w^c u, u ~ N(0, sigma_w^(2 - 2c)).
                // Each system k has its own b (row k of u) and accumulators
                // [sum r^2, count, sum r x_m (M)].
                let c = NONCENTRING;
                let n_sys = self.systems();
                let us = &theta[self.off_z()..];
                let scale_b = (c * uw).exp();
                // Scratch: v = w (1 + b) per system (S M), then the accumulators.
                let stride = m + 2;
                scratch.clear();
                scratch.extend((0..m * n_sys).map(|j| self.w[j % m] * (1.0 + us[j] * scale_b)));
                scratch.resize(m * n_sys + n_sys * stride, 0.0);
                let (v, acc) = scratch.split_at_mut(m * n_sys);
                let sys_col = self.systems.map(|_| &xs[m * n_tot..]);
                for i in range.clone() {
                    let k = sys_col.map_or(0, |col| col[i] as usize);
                    let vk = &v[k * m..][..m];
                    let mut r = ys[i];
                    for j in 0..m {
                        r -= xs[j * n_tot + i] * vk[j];
                    }
                    let a = &mut acc[k * stride..][..stride];
                    a[0] += r * r;
                    a[1] += 1.0;
                    for j in 0..m {
                        a[2 + j] += r * xs[j * n_tot + i];
                    }
                }
                lp = 0.0;
                let mut ds2_obs = 0.0;
                for k in 0..n_sys {
                    let a = &acc[k * stride..][..stride];
                    let vk = &v[k * m..][..m];
                    let vv: f64 = vk.iter().map(|a| a * a).sum();
                    let s2 = sx * sx * vv + so2;
                    lp += -0.5 * a[0] / s2 - 0.5 * a[1] * s2.ln();
                    let ds2 = 0.5 * a[0] / (s2 * s2) - 0.5 * a[1] / s2;
                    grad[0] += ds2 * 2.0 * sx * sx * vv;
                    ds2_obs += ds2;
                    for j in 0..m {
                        let db = (a[2 + j] / s2 + ds2 * 2.0 * sx * sx * vk[j]) * self.w[j];
                        grad[self.off_z() + k * m + j] = db * scale_b;
                        grad[1] += c * db * us[k * m + j] * scale_b;
                    }
                }
                let iu2 = (-2.0 * (1.0 - c) * uw).exp();
                for (j, u) in us.iter().enumerate() {
                    grad[self.off_z() + j] -= u * iu2;
                    grad[1] += (1.0 - c) * (u * u * iu2 - 1.0);
                    lp -= 0.5 * u * u * iu2 + (1.0 - c) * uw;
                }
                if self.obs_noise {
                    grad[2] = ds2_obs * 2.0 * so2;
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
            c -= half_log_2pi * (self.m() * self.systems()) as f64;
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
        let shared = self.variant == EivVariant::Shared;
        crate::shader::Wgsl::new()
            .u32("M", m)
            .u32("D", self.dim())
            .u32("NACC", if shared { self.systems() * (m + 2) } else { 3 })
            .bool("OBS", self.obs_noise)
            .bool("SHARED", shared)
            .u32("OFF_Z", self.off_z())
            .f32("NONCENTRING", NONCENTRING)
            .u32("SYS", self.systems())
            .bool("SYS_COL", self.systems.is_some())
            .f32_array("W", &self.w)
            .code(&self.prior_x.wgsl_fn("prior_x"))
            .code(&self.prior_w.wgsl_fn("prior_w"))
            .code(&self.prior_obs.wgsl_fn("prior_obs"))
            .part(crate::shader::EIV)
            .build()
    }

    /// y = sum_j (x_j + a_j) w_j (1 + b_j) + e at the draw's scales: a_j ~ N(0, sigma_x^2),
    /// e ~ N(0, sigma_obs^2) (with obs noise); b the draw's (shared variant, the row's
    /// system's b with pooled systems, whose index is the last input) or a fresh
    /// sigma_w z per point (per-observation variant, where b is marginalised).
    #[allow(clippy::needless_range_loop)] // x is column-major: x[j][i]
    fn predict_y(
        &self,
        theta: &[f64],
        x: &[Vec<f64>],
        n: usize,
        rng: &mut rand::rngs::StdRng,
    ) -> Option<Vec<f64>> {
        use rand::RngExt;
        use rand_distr::StandardNormal;
        let m = self.m();
        let sys_col = self.systems.is_some();
        if theta.len() != self.dim()
            || x.len() != m + usize::from(sys_col)
            || x.iter().any(|c| c.len() != n)
        {
            return None;
        }
        let p = self.constrain(theta);
        let (sx, sw) = (p[0], p[1]);
        let so = if self.obs_noise { p[2] } else { 0.0 };
        let ns = self.n_scales();
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let s = if sys_col { x[m][i] as usize } else { 0 };
            if s >= self.systems() {
                return None;
            }
            let mut acc = 0.0;
            for j in 0..m {
                let b = match self.variant {
                    EivVariant::Shared => p[ns + s * m + j],
                    EivVariant::PerObservation => sw * rng.sample::<f64, _>(StandardNormal),
                };
                let a = sx * rng.sample::<f64, _>(StandardNormal);
                acc += (x[j][i] + a) * self.w[j] * (1.0 + b);
            }
            y.push(acc + so * rng.sample::<f64, _>(StandardNormal));
        }
        Some(y)
    }

    fn simulate(&self, n: usize, rng: &mut rand::rngs::StdRng) -> (Vec<f64>, Dataset) {
        let sx = self.prior_x.sample(rng).max(1e-300);
        let sw = self.prior_w.sample(rng).max(1e-300);
        let so = if self.obs_noise {
            self.prior_obs.sample(rng).max(1e-300)
        } else {
            0.0
        };
        let mut theta = vec![sx.ln(), sw.ln()];
        if self.obs_noise {
            theta.push(so.ln());
        }
        let (z, data) = self.simulate_systems(n, (sx, sw, so), rng);
        if self.variant == EivVariant::Shared {
            // b = sw z = sw^c u.
            theta.extend(z.iter().map(|v| sw.powf(1.0 - NONCENTRING) * v));
        }
        (theta, data)
    }

    fn cost_per_point(&self) -> (f64, f64) {
        let m = self.m() as f64;
        match self.variant {
            EivVariant::Shared => (4.0 * m + 2.0, 0.0),
            EivVariant::PerObservation => (4.0 * m + 12.0, 1.0),
        }
    }
}
