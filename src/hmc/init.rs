//! Where chains start: random points (shared within a superchain, around an optional
//! centre per dataset), retried until the log density is finite, then moved towards the bulk
//! by Adam steps on the log density.

use super::{Config, Integrator};
use crate::error::{Error, Result};
use crate::math::LOGP_NEG_INF;
use crate::rng::{Purpose, Stream};

/// Initial positions: uniform in (-r, r) around the dataset's [`Config::init_centers`] entry
/// (else the origin), shared by the chains of a superchain. Chain `c` of dataset `b` is
/// chain `b * chains + c` of the batch; `attempt` redraws a failed start.
pub fn initial_position(cfg: &Config, global_chain: usize, attempt: u32, d: usize) -> Vec<f64> {
    let center = cfg
        .init_centers
        .get(global_chain / cfg.chains)
        .filter(|c| c.len() == d);
    let global_chain = global_chain + cfg.chain_offset as usize;
    let c = global_chain % cfg.chains;
    let lead = global_chain - c + (c / cfg.superchain_size) * cfg.superchain_size;
    let s = Stream::new(cfg.seed, lead as u32, attempt, Purpose::Init);
    (0..d)
        .map(|i| center.map_or(0.0, |c| c[i]) + cfg.init_radius * (2.0 * s.uniform(i as u32) - 1.0))
        .collect()
}

/// Starting points: uniform in (-r, r) per superchain (redrawn where the log density is
/// -inf), then `init_steps` of Adam ascent on the log density (a step that lands on -inf is
/// undone and that chain's rate halved), so that chains begin near the bulk of the posterior
/// instead of in a far tail where the adapted step size would leave them stuck.
///
/// Returns the positions, their log densities and gradients (the integrator holds exactly
/// these), and the number of batch density evaluations it used.
pub fn initialise(integrator: &mut dyn Integrator, cfg: &Config) -> Result<Start> {
    integrator.set_chain_offset(cfg.chain_offset);
    let mut calls = 0u64;
    let d = integrator.dim();
    let n = integrator.n_chains();
    if !cfg.start_positions.is_empty() {
        if cfg.start_positions.len() != n * d {
            return Err(Error::Config {
                flag: "--adapt-from".into(),
                message: format!(
                    "{} starting values for {n} chains of dimension {d}",
                    cfg.start_positions.len()
                ),
            });
        }
        let q = cfg.start_positions.clone();
        let mut logp = vec![0.0; n];
        let mut grad = vec![0.0; n * d];
        integrator.set_positions(&q, &mut logp, &mut grad)?;
        if let Some(c) = logp
            .iter()
            .position(|&lp| lp <= LOGP_NEG_INF || !lp.is_finite())
        {
            return Err(Error::Init {
                chain: c,
                message: "the given starting point has no finite log density".into(),
            });
        }
        return Ok(Start {
            q,
            logp,
            grad,
            density_calls: 1,
        });
    }
    let mut q: Vec<f64> = (0..n)
        .flat_map(|c| initial_position(cfg, c, 0, d))
        .collect();
    let mut logp = vec![0.0; n];
    let mut grad = vec![0.0; n * d];
    integrator.set_positions(&q, &mut logp, &mut grad)?;
    calls += 1;
    let bad = |lp: f64| lp <= LOGP_NEG_INF || !lp.is_finite();
    for attempt in 1..=100u32 {
        let failed: Vec<usize> = (0..n).filter(|&c| bad(logp[c])).collect();
        if failed.is_empty() {
            break;
        }
        if attempt == 100 {
            return Err(Error::Init {
                chain: failed[0],
                message: format!(
                    "no finite log density found after 100 random starts in (-{r}, {r}) on the unconstrained scale",
                    r = cfg.init_radius
                ),
            });
        }
        for c in failed {
            q[c * d..(c + 1) * d].copy_from_slice(&initial_position(cfg, c, attempt, d));
        }
        integrator.set_positions(&q, &mut logp, &mut grad)?;
        calls += 1;
    }
    // Adam ascent; all chains of a superchain move together since they start together.
    let mut adam = crate::math::Adam::<f64>::new(n * d);
    let mut rate = vec![0.1f64; n];
    let mut prev_q = q.clone();
    let mut prev_lp = logp.clone();
    let mut prev_g = grad.clone();
    // Whether the integrator holds a rejected step for some chain (then it must be reset).
    let mut stale = false;
    for t in 1..=cfg.init_steps {
        let lr_decay = if t > cfg.init_steps / 2 { 0.2 } else { 1.0 };
        adam.directions(&grad, |k, step| q[k] += rate[k / d] * lr_decay * step);
        integrator.set_positions(&q, &mut logp, &mut grad)?;
        calls += 1;
        stale = false;
        for c in 0..n {
            if bad(logp[c]) {
                stale = true;
                q[c * d..(c + 1) * d].copy_from_slice(&prev_q[c * d..(c + 1) * d]);
                grad[c * d..(c + 1) * d].copy_from_slice(&prev_g[c * d..(c + 1) * d]);
                logp[c] = prev_lp[c];
                rate[c] *= 0.5;
            }
        }
        prev_q.copy_from_slice(&q);
        prev_lp.copy_from_slice(&logp);
        prev_g.copy_from_slice(&grad);
    }
    if stale {
        integrator.set_positions(&q, &mut logp, &mut grad)?;
        calls += 1;
    }
    Ok(Start {
        q,
        logp,
        grad,
        density_calls: calls,
    })
}

/// Where [`initialise`] left the chains.
pub struct Start {
    /// Positions (chains x D).
    pub q: Vec<f64>,
    /// Their log densities.
    pub logp: Vec<f64>,
    /// Their gradients.
    pub grad: Vec<f64>,
    /// Batch density evaluations used.
    pub density_calls: u64,
}
