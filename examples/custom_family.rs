//! A model family written only against gpsamp's public API: Student-t regression with fixed
//! degrees of freedom, y_n ~ t_nu(alpha + beta x_n, sigma), priors N(0, 1) on alpha and beta
//! and HalfNormal(1) on sigma (sampled as log sigma, Jacobian included).
//!
//! A family needs: its dimension and parameter names, constrain/unconstrain, a check of the
//! data, the CPU log density and gradient (f64), the same math in WGSL (the contract in
//! `gpsamp::Model`'s docs: `D`, `NACC`, `struct Chain`, `chain_setup`, `point_accumulate`,
//! `chain_finish`), its normalising constant, and simulation from the prior.
//!
//! Run: `cargo run --release --example custom_family` (GPU when one exists, else CPU).

use std::sync::Arc;

use gpsamp::hmc::{self, Config, MemorySink};
use gpsamp::{Backend, BackendKind, Error, Model};
use gpsamp::{DataBatch, Dataset};
use rand::RngExt;

/// Student-t regression with `nu` degrees of freedom.
#[derive(Clone, Debug)]
pub struct StudentT {
    /// Degrees of freedom (fixed).
    pub nu: f64,
}

impl Model for StudentT {
    fn name(&self) -> String {
        format!("student-t(nu={})", self.nu)
    }

    fn dim(&self) -> usize {
        3 // alpha, beta, log sigma
    }

    fn param_names(&self) -> Vec<String> {
        vec!["alpha".into(), "beta".into(), "sigma".into()]
    }

    fn constrain(&self, theta: &[f64]) -> Vec<f64> {
        vec![theta[0], theta[1], theta[2].exp()]
    }

    fn unconstrain(&self, p: &[f64]) -> gpsamp::Result<Vec<f64>> {
        if p.len() != 3 || p[2] <= 0.0 {
            return Err(Error::Invalid(
                "student-t takes alpha, beta, sigma > 0".into(),
            ));
        }
        Ok(vec![p[0], p[1], p[2].ln()])
    }

    fn check_data(&self, data: &DataBatch) -> gpsamp::Result<()> {
        if data.p() != 1 {
            return Err(Error::Invalid(
                "student-t regression takes one input column".into(),
            ));
        }
        Ok(())
    }

    fn log_density(
        &self,
        data: &DataBatch,
        b: usize,
        th: &[f64],
        grad: &mut [f64],
        _s: &mut Vec<f64>,
    ) -> f64 {
        let (alpha, beta, u) = (th[0], th[1], th[2]);
        let sigma = u.exp();
        let nu = self.nu;
        let (x, y) = (data.x_col(0), data.y());
        let (mut lp, mut ga, mut gb, mut gu) = (0.0, 0.0, 0.0, 0.0);
        for n in data.range(b) {
            let z = (y[n] - alpha - beta * x[n]) / sigma;
            let q = 1.0 + z * z / nu;
            lp += -0.5 * (nu + 1.0) * q.ln() - u;
            // d/dz of -0.5 (nu + 1) log q = -(nu + 1) z / (nu q)
            let dz = -(nu + 1.0) * z / (nu * q);
            ga += -dz / sigma;
            gb += -dz * x[n] / sigma;
            gu += -dz * z - 1.0;
        }
        // Priors: alpha, beta ~ N(0, 1); sigma ~ HalfNormal(1) with the log Jacobian.
        lp += -0.5 * alpha * alpha - 0.5 * beta * beta - 0.5 * sigma * sigma + u;
        grad[0] = ga - alpha;
        grad[1] = gb - beta;
        grad[2] = gu - sigma * sigma + 1.0;
        gpsamp::math::sanitize(lp, grad)
    }

    fn constant(&self, data: &DataBatch, b: usize) -> f64 {
        let nu = self.nu;
        let lg = gpsamp::math::lgamma;
        let per_point =
            lg((nu + 1.0) / 2.0) - lg(nu / 2.0) - 0.5 * (nu * std::f64::consts::PI).ln();
        let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
        per_point * data.range(b).len() as f64 - 2.0 * half_log_2pi + (2.0f64).ln() - half_log_2pi
    }

    fn wgsl(&self) -> String {
        gpsamp::shader::Wgsl::new()
            .u32("D", 3)
            .u32("NACC", 4)
            .f32("NU", self.nu)
            .code(
                r#"
struct Chain { alpha: f32, beta: f32, u: f32, sigma: f32 }

fn chain_setup(th: ptr<function, array<f32, D>>) -> Chain {
    return Chain((*th)[0], (*th)[1], (*th)[2], exp((*th)[2]));
}

fn point_accumulate(c: ptr<function, Chain>, n: u32, acc: ptr<function, array<f32, NACC>>) {
    let x = x_at(0u, n);
    let z = (y_at(n) - (*c).alpha - (*c).beta * x) / (*c).sigma;
    let q = 1.0 + z * z / NU;
    let dz = -(NU + 1.0) * z / (NU * q);
    (*acc)[0] += -0.5 * (NU + 1.0) * log(q) - (*c).u;
    (*acc)[1] += -dz / (*c).sigma;
    (*acc)[2] += -dz * x / (*c).sigma;
    (*acc)[3] += -dz * z - 1.0;
}

fn chain_finish(
    c: ptr<function, Chain>,
    th: ptr<function, array<f32, D>>,
    n_points: u32,
    acc: ptr<function, array<f32, NACC>>,
    grad: ptr<function, array<f32, D>>,
) -> f32 {
    let a = (*c).alpha;
    let b = (*c).beta;
    let s = (*c).sigma;
    (*grad)[0] = (*acc)[1] - a;
    (*grad)[1] = (*acc)[2] - b;
    (*grad)[2] = (*acc)[3] - s * s + 1.0;
    return (*acc)[0] - 0.5 * a * a - 0.5 * b * b - 0.5 * s * s + (*c).u;
}
"#,
            )
            .build()
    }

    fn simulate(&self, n: usize, rng: &mut rand::rngs::StdRng) -> (Vec<f64>, Dataset) {
        use rand_distr::{Distribution, StandardNormal, StudentT as T};
        let alpha: f64 = rng.sample(StandardNormal);
        let beta: f64 = rng.sample(StandardNormal);
        let sigma = rng.sample::<f64, _>(StandardNormal).abs().max(1e-3);
        let t = T::new(self.nu).expect("nu > 0");
        let x: Vec<f64> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
        let y = x
            .iter()
            .map(|&v| alpha + beta * v + sigma * t.sample(rng))
            .collect();
        (vec![alpha, beta, sigma.ln()], Dataset { x: vec![x], y })
    }
}

/// Fits simulated data with 8 chains on the given backend; returns posterior means
/// (constrained) and the truth.
pub fn fit(backend: &Backend, seed: u64) -> gpsamp::Result<(Vec<f64>, Vec<f64>, usize)> {
    let model = StudentT { nu: 4.0 };
    let mut rng = gpsamp::rng::host_rng(seed, 0, gpsamp::rng::Purpose::Simulate);
    let (truth, data) = model.simulate(500, &mut rng);
    let data = Arc::new(DataBatch::new(1, &[data])?);
    let cfg = Config {
        chains: 8,
        warmup: 500,
        draws: 500,
        seed,
        ..Config::default()
    };
    let mut integ =
        gpsamp::hmc::integrator(backend, Arc::new(model.clone()), data.clone(), 8, seed)?;
    let mut sink = MemorySink::default();
    let rep = hmc::sample(
        integ.as_mut(),
        &model,
        1,
        &cfg,
        &mut sink,
        &mut |_, _, _, _| {},
    )?;
    let mean: Vec<f64> = (0..3)
        .map(|i| {
            let all: Vec<f64> = (0..8).flat_map(|c| sink.trace(c, i)).collect();
            let m = all.iter().sum::<f64>() / all.len() as f64;
            if i == 2 {
                m.exp()
            } else {
                m
            }
        })
        .collect();
    Ok((mean, model.constrain(&truth), rep.datasets[0].divergences))
}

#[allow(dead_code)]
fn main() -> gpsamp::Result<()> {
    let backend = Backend::select(BackendKind::Auto)?;
    let (mean, truth, div) = fit(&backend, 3)?;
    println!(
        "backend {}: posterior means {mean:.3?}, truth {truth:.3?}, divergences {div}",
        backend.describe()
    );
    Ok(())
}
