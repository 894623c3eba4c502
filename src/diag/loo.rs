//! PSIS-LOO (Vehtari, Gelman & Gabry 2017) and model comparison, ArviZ's (0.23) definitions:
//! Pareto-smoothed importance weights per observation ([`psis`], with ArviZ's generalised
//! Pareto fit, [`gpd_fit`]), the expected log pointwise predictive density [`loo`], and the
//! comparison table of several fits [`compare`] (elpd differences, their standard errors,
//! stacking weights). `tests/loo.rs` holds them to ArviZ's numbers on committed fixtures.

use serde::Serialize;

/// `log(sum(exp(v)))`.
fn log_sum_exp(v: &[f64]) -> f64 {
    crate::math::log_sum_exp(v)
}

/// ArviZ's empirical-Bayes fit of a generalised Pareto distribution (Zhang & Stephens 2009,
/// with a weak prior on the shape) to `ary`, sorted ascending and positive: (shape k, scale
/// sigma).
pub fn gpd_fit(ary: &[f64]) -> (f64, f64) {
    let (prior_bs, prior_k) = (3.0, 10.0);
    let n = ary.len();
    let m_est = 30 + (n as f64).sqrt() as usize;
    let quart = ary[((n as f64 / 4.0 + 0.5) as usize).saturating_sub(1)];
    let b: Vec<f64> = (1..=m_est)
        .map(|j| {
            (1.0 - (m_est as f64 / (j as f64 - 0.5)).sqrt()) / (prior_bs * quart) + 1.0 / ary[n - 1]
        })
        .collect();
    let mean_log1p = |bj: f64| ary.iter().map(|&x| (-bj * x).ln_1p()).sum::<f64>() / n as f64;
    let k: Vec<f64> = b.iter().map(|&bj| mean_log1p(bj)).collect();
    let len_scale: Vec<f64> = b
        .iter()
        .zip(&k)
        .map(|(&bj, &kj)| n as f64 * ((-(bj / kj)).ln() - kj - 1.0))
        .collect();
    let mut w: Vec<f64> = len_scale
        .iter()
        .map(|&lj| 1.0 / len_scale.iter().map(|&l| (l - lj).exp()).sum::<f64>())
        .collect();
    // Negligible weights out, the rest normalised.
    let keep: Vec<bool> = w.iter().map(|&v| v >= 10.0 * f64::EPSILON).collect();
    let total: f64 = w
        .iter()
        .zip(&keep)
        .filter(|(_, &k)| k)
        .map(|(v, _)| v)
        .sum();
    for (v, &k) in w.iter_mut().zip(&keep) {
        *v = if k { *v / total } else { 0.0 };
    }
    let b_post: f64 = b.iter().zip(&w).map(|(b, w)| b * w).sum();
    let k_post = mean_log1p(b_post);
    let sigma = -k_post / b_post;
    let k_post = (n as f64 * k_post + prior_k * 0.5) / (n as f64 + prior_k);
    (k_post, sigma)
}

/// The inverse CDF of a generalised Pareto distribution (shape `k`, scale `sigma`) at `p` in
/// (0, 1); NaN for a scale that is not positive.
pub fn gpd_inv(p: f64, k: f64, sigma: f64) -> f64 {
    if sigma <= 0.0 {
        return f64::NAN;
    }
    let x = if k.abs() < f64::EPSILON {
        -(-p).ln_1p()
    } else {
        (-k * (-p).ln_1p()).exp_m1() / k
    };
    x * sigma
}

/// Pareto-smoothed importance sampling of one observation: `log_weights` (one per draw,
/// chain-major) are replaced by their smoothed, normalised values; returns the Pareto shape
/// k of their tail (infinite when the tail has 4 draws or fewer, and then nothing is
/// smoothed). `r_eff` is the relative efficiency of the draws (ESS / draws).
pub fn psis(log_weights: &mut [f64], r_eff: f64) -> f64 {
    let s = log_weights.len();
    let x = log_weights;
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    x.iter_mut().for_each(|v| *v -= max);
    let tail_len_wanted = (s as f64 / 5.0).min(3.0 * (s as f64 / r_eff).sqrt()).ceil() as usize;
    let mut order: Vec<usize> = (0..s).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let at = s.saturating_sub(tail_len_wanted + 1);
    let cutoff = x[order[at]].max(f64::MIN_POSITIVE.ln());
    let exp_cutoff = cutoff.exp();
    // The tail, in ascending order.
    let tail: Vec<usize> = order.iter().copied().filter(|&i| x[i] > cutoff).collect();
    let mut k = f64::INFINITY;
    if tail.len() > 4 {
        let vals: Vec<f64> = tail.iter().map(|&i| x[i].exp() - exp_cutoff).collect();
        let (kk, sigma) = gpd_fit(&vals);
        k = kk;
        if k.is_finite() {
            let m = tail.len() as f64;
            for (j, &i) in tail.iter().enumerate() {
                let p = (j as f64 + 0.5) / m;
                x[i] = (gpd_inv(p, k, sigma) + exp_cutoff).ln();
            }
            x.iter_mut().filter(|v| **v > 0.0).for_each(|v| *v = 0.0);
        }
    }
    let lse = log_sum_exp(x);
    x.iter_mut().for_each(|v| *v -= lse);
    k
}

/// PSIS-LOO of one fit.
#[derive(Clone, Debug, Serialize)]
pub struct Loo {
    /// Expected log pointwise predictive density, leave-one-out.
    pub elpd_loo: f64,
    /// Its standard error.
    pub se: f64,
    /// Effective number of parameters: lppd − elpd_loo.
    pub p_loo: f64,
    /// Draws (chains × draws).
    pub n_samples: usize,
    /// Observations.
    pub n_data_points: usize,
    /// The Pareto k above which an observation's estimate is unreliable:
    /// min(1 − 1 / log10(draws), 0.7).
    pub good_k: f64,
    /// Whether some observation's k is above `good_k`.
    pub warning: bool,
    /// Pareto k per observation.
    pub pareto_k: Vec<f64>,
    /// elpd_loo per observation.
    pub loo_i: Vec<f64>,
}

/// PSIS-LOO from the pointwise log likelihood `log_lik` (draw-major: draw s, observation i
/// at `s * n_obs + i`, draws chain-major), with the draws' relative efficiency `r_eff`.
pub fn loo(log_lik: &[f64], n_obs: usize, r_eff: f64) -> Loo {
    use rayon::prelude::*;
    let s = log_lik.len() / n_obs.max(1);
    let per_obs: Vec<(f64, f64, f64)> = (0..n_obs)
        .into_par_iter()
        .map(|i| {
            let ll: Vec<f64> = (0..s).map(|d| log_lik[d * n_obs + i]).collect();
            let mut lw: Vec<f64> = ll.iter().map(|v| -v).collect();
            let k = psis(&mut lw, r_eff);
            let weighted: Vec<f64> = lw.iter().zip(&ll).map(|(w, l)| w + l).collect();
            let lppd_i = log_sum_exp(&ll) - (s as f64).ln();
            (log_sum_exp(&weighted), k, lppd_i)
        })
        .collect();
    let loo_i: Vec<f64> = per_obs.iter().map(|p| p.0).collect();
    let pareto_k: Vec<f64> = per_obs.iter().map(|p| p.1).collect();
    let elpd: f64 = loo_i.iter().sum();
    let mean = elpd / n_obs as f64;
    let var = loo_i.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n_obs as f64;
    let lppd: f64 = per_obs.iter().map(|p| p.2).sum();
    let good_k = (1.0 - 1.0 / (s as f64).log10()).min(0.7);
    Loo {
        elpd_loo: elpd,
        se: (n_obs as f64 * var).sqrt(),
        p_loo: lppd - elpd,
        n_samples: s,
        n_data_points: n_obs,
        good_k,
        warning: pareto_k.iter().any(|&k| k > good_k),
        pareto_k,
        loo_i,
    }
}

/// The relative efficiency ArviZ's `loo` uses: the mean over parameters of the ESS of the
/// mean over the number of draws (1 for a single chain). `chains[p][c]` holds parameter p's
/// draws of chain c.
pub fn relative_efficiency(chains: &[Vec<Vec<f64>>]) -> f64 {
    let Some(first) = chains.first() else {
        return 1.0;
    };
    if first.len() <= 1 {
        return 1.0;
    }
    let s: usize = first.iter().map(Vec::len).sum();
    chains.iter().map(|c| super::ess_mean(c)).sum::<f64>() / chains.len() as f64 / s as f64
}

/// One row of the comparison table (ArviZ's `compare`, log scale, stacking weights).
#[derive(Clone, Debug, Serialize)]
pub struct CompareRow {
    /// The fit's name.
    pub model: String,
    /// 0 for the best elpd_loo.
    pub rank: usize,
    /// Its elpd_loo.
    pub elpd_loo: f64,
    /// Its p_loo.
    pub p_loo: f64,
    /// elpd_loo of the best fit minus this one's.
    pub elpd_diff: f64,
    /// Stacking weight (Yao et al. 2018): the weights of the mixture of the fits' LOO
    /// predictive densities that maximises the summed log score.
    pub weight: f64,
    /// Standard error of elpd_loo.
    pub se: f64,
    /// Standard error of the difference to the best fit.
    pub dse: f64,
    /// Whether some Pareto k is above good_k.
    pub warning: bool,
}

/// The comparison table of fits of the same observations, best first.
pub fn compare(fits: &[(String, Loo)]) -> crate::Result<Vec<CompareRow>> {
    let n = fits.first().map_or(0, |f| f.1.loo_i.len());
    if let Some((name, _)) = fits.iter().find(|f| f.1.loo_i.len() != n) {
        return Err(crate::Error::Invalid(format!(
            "{name}: compared fits need the same observations ({} against {n})",
            fits.iter()
                .find(|f| &f.0 == name)
                .map_or(0, |f| f.1.loo_i.len())
        )));
    }
    let mut order: Vec<usize> = (0..fits.len()).collect();
    order.sort_by(|&a, &b| fits[b].1.elpd_loo.total_cmp(&fits[a].1.elpd_loo));
    let weights = stacking(fits, &order);
    let best = &fits[order[0]].1.loo_i;
    Ok(order
        .iter()
        .enumerate()
        .map(|(rank, &m)| {
            let (name, l) = &fits[m];
            let diff: Vec<f64> = best.iter().zip(&l.loo_i).map(|(b, v)| b - v).collect();
            let d: f64 = diff.iter().sum();
            let mean = d / n as f64;
            let var = diff.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
            CompareRow {
                model: name.clone(),
                rank,
                elpd_loo: l.elpd_loo,
                p_loo: l.p_loo,
                elpd_diff: d,
                weight: weights[rank],
                se: l.se,
                dse: (n as f64 * var).sqrt(),
                warning: l.warning,
            }
        })
        .collect())
}

/// Stacking weights, in `order`: the maximiser over the simplex of
/// sum_i log sum_k w_k exp(loo_ik), a concave problem solved by the multiplicative
/// fixed-point update w_k ← w_k mean_i(e_ik / sum_j w_j e_ij) (each observation's densities
/// scaled by their largest, which the weights do not see).
fn stacking(fits: &[(String, Loo)], order: &[usize]) -> Vec<f64> {
    let k = order.len();
    let n = fits.first().map_or(0, |f| f.1.loo_i.len());
    let e: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let row: Vec<f64> = order.iter().map(|&m| fits[m].1.loo_i[i]).collect();
            let mx = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            row.iter().map(|v| (v - mx).exp()).collect()
        })
        .collect();
    let mut w = vec![1.0 / k as f64; k];
    for _ in 0..100_000 {
        let mut next = vec![0.0; k];
        for row in &e {
            let mix: f64 = row.iter().zip(&w).map(|(a, b)| a * b).sum();
            for j in 0..k {
                next[j] += w[j] * row[j] / mix / n as f64;
            }
        }
        let change = next
            .iter()
            .zip(&w)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        w = next;
        if change < 1e-13 {
            break;
        }
    }
    w
}
