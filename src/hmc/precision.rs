//! The f32 check before sampling: a model's f32 kernel (the GPU's, or the CPU's at
//! `--precision f32`) against its f64 CPU kernel at random starting positions. A program
//! whose arithmetic needs f64 (a Gaussian process's Cholesky factor with a 1e-10 jitter, say)
//! gets densities that f32 rejects or gets wrong; its chains then avoid those regions and the
//! posterior is biased with no error. The check names such a model before its draws are
//! trusted: `sample` warns, a study marks the datasets where it fails.

use super::{Config, Integrator};
use crate::backend::cpu::eval_blocks;
use crate::backend::{Backend, Precision};
use crate::data::DataBatch;
use crate::error::{Error, Result};
use crate::math::LOGP_NEG_INF;
use crate::model::Model;
use crate::rng::{Purpose, Stream};

/// Relative difference (to the larger of 1 and the f64 value, in the norm for the gradient)
/// above which f32 and f64 disagree at a position. f32 kernels of well-conditioned models stay
/// under 1e-3 (the GPU twin tests' tolerance); a failing factorisation is off by order 1.
pub const F32_TOLERANCE: f64 = 1e-2;

/// What the check found: positions compared, and those where f32 disagrees with f64.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct F32Check {
    /// Positions compared (every chain of the batch, one each).
    pub positions: usize,
    /// Positions where f32 rejects (a log density of -inf) what f64 evaluates.
    pub rejected: usize,
    /// Positions where both are finite but differ by more than [`F32_TOLERANCE`].
    pub inaccurate: usize,
    /// The worst position: (chain, f32 log density, f64 log density).
    pub worst: Option<(usize, f64, f64)>,
    /// Positions where f32 disagrees, per dataset (its chains' starts).
    pub per_dataset: Vec<usize>,
}

impl F32Check {
    /// The warning for the user, when f32 disagreed anywhere.
    pub fn warning(&self, backend: &Backend) -> Option<String> {
        let (chain, lp32, lp64) = self.worst?;
        let (what, fix) = match backend {
            Backend::Gpu(_) => ("the GPU computes in f32", "--backend cpu (f64)"),
            Backend::Cpu(_) => ("--precision f32", "--precision f64"),
        };
        let at = if lp32 <= LOGP_NEG_INF || !lp32.is_finite() {
            format!("chain {chain}: f32 rejects the point, f64 gives {lp64:.6}")
        } else {
            format!("chain {chain}: f32 gives {lp32:.6}, f64 {lp64:.6}")
        };
        Some(format!(
            "{what}, and this model needs f64: at {} of {} random starting positions its f32 log density is rejected or off by more than 1% (value or gradient) where f64 evaluates it ({at}); the draws may be biased where f32 fails. Sample it with {fix}",
            self.rejected + self.inaccurate,
            self.positions,
        ))
    }
}

/// `err` with the check's warning added to its message when it is a failure to start
/// (every random start rejected) and f32 was found wanting: then f32 is the likely cause,
/// not the model. Other errors pass unchanged.
pub fn explain_init(err: Error, check: Option<&F32Check>, backend: &Backend) -> Error {
    match (err, check.and_then(|c| c.warning(backend))) {
        (Error::Init { chain, message }, Some(w)) => Error::Init {
            chain,
            message: format!("{message}; {w}"),
        },
        (err, _) => err,
    }
}

/// Compares `integrator` (the backend's f32 kernel) with the f64 CPU kernel at one random
/// position per chain, uniform in (-init_radius, init_radius) as starts are (its own stream,
/// so the draws do not change). Leaves the integrator at those positions: the sampler's
/// initialisation sets its own. Nothing to check (`None`) for an f64 backend.
pub fn check_f32(
    integrator: &mut dyn Integrator,
    model: &dyn Model,
    data: &DataBatch,
    backend: &Backend,
    cfg: &Config,
) -> Result<Option<F32Check>> {
    if matches!(backend, Backend::Cpu(Precision::F64)) {
        return Ok(None);
    }
    let (n, d) = (integrator.n_chains(), integrator.dim());
    let q: Vec<f64> = (0..n)
        .flat_map(|c| {
            let s = Stream::new(cfg.seed, c as u32, 0, Purpose::Other);
            (0..d).map(move |i| cfg.init_radius * (2.0 * s.uniform(i as u32) - 1.0))
        })
        .collect();
    let (mut lp32, mut g32) = (vec![0.0; n], vec![0.0; n * d]);
    integrator.set_positions(&q, &mut lp32, &mut g32)?;
    // The f64 kernel without the datasets' constants, as the integrator leaves them out.
    let (mut lp64, mut g64) = (vec![0.0; n], vec![0.0; n * d]);
    eval_blocks(
        (model, data),
        cfg.chains,
        Precision::F64,
        &q,
        &mut g64,
        &mut lp64,
    );
    let rejected = |lp: f64| lp <= LOGP_NEG_INF || !lp.is_finite();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut check = F32Check {
        positions: n,
        per_dataset: vec![0; data.n_datasets()],
        ..F32Check::default()
    };
    let mut worst = F32_TOLERANCE;
    for c in (0..n).filter(|&c| !rejected(lp64[c])) {
        let (a, b) = (&g32[c * d..(c + 1) * d], &g64[c * d..(c + 1) * d]);
        let err = if rejected(lp32[c]) {
            check.rejected += 1;
            f64::INFINITY
        } else {
            let dg = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f64>()
                .sqrt();
            let e = ((lp32[c] - lp64[c]).abs() / lp64[c].abs().max(1.0)).max(dg / norm(b).max(1.0));
            check.inaccurate += usize::from(e > F32_TOLERANCE);
            e
        };
        if err > F32_TOLERANCE {
            check.per_dataset[c / cfg.chains] += 1;
        }
        if err > worst {
            worst = err;
            check.worst = Some((c, lp32[c], lp64[c]));
        }
    }
    Ok(Some(check))
}
