//! The sampling loop: warmup (dual averaging, ChEES, windowed mass matrix, label
//! alignment of mixtures at each window) and then frozen sampling in batches, handing the
//! draws to a [`DrawSink`].

use super::adapt;
use super::adapt::{
    chees_gradient, ensemble_windows, halton, harmonic_accept, lambda_max, mass_windows,
    stuck_chains, ChEES, DualAveraging, WarmupEnd, Welford,
};
use super::converge;
use super::init::{initialise, Start};
use super::metric::{regularised, whiten, PooledCov};
use super::{
    Config, DatasetReport, DrawSink, Integrator, Metric, Progress, RunReport, StepOut, Tuning,
};
use crate::error::{Error, Result};
use crate::labels;
use crate::model::Model;

/// Leapfrog steps allowed before the first mass-matrix estimate: with the identity metric
/// the step size must suit the narrowest direction, and long trajectories at that size cost
/// more than they teach.
const PRE_METRIC_MAX_STEPS: u32 = 16;

struct DatasetState {
    da: DualAveraging,
    chees: ChEES,
    /// One accumulator per chain: the mass matrix uses the mean within-chain variance, so
    /// chains sitting in different modes (label switching) do not inflate it.
    mass: Vec<Welford>,
    inv_mass: Vec<f64>,
    /// Dense metric ([`Metric::Dense`]): the window's pooled within-chain covariance, and
    /// the Cholesky factor of the current inverse mass matrix (empty while diagonal).
    cov: Option<PooledCov>,
    chol: Vec<f64>,
    metric_adapted: bool,
    divergences: usize,
    accept_sum: f64,
    steps_sum: f64,
    /// Per chain, the log density over the current mass-matrix window (the adaptive end's
    /// mixing statistic).
    lp_window: Vec<Welford>,
    /// The window's draws pooled over chains, first and second half ([`adapt::WarmupEnd`]).
    halves: [Welford; 2],
    /// (log step size, log trajectory length) averages at the previous window end.
    window_end: Option<(f64, f64)>,
    /// Whether the last window end found this dataset adapted ([`adapt::WarmupEnd`]).
    adapted: bool,
}

fn align_labels(
    model: &dyn Model,
    cfg: &Config,
    window_means: &[f64],
    position: &mut [f64],
) -> Result<bool> {
    if model.label_groups().is_none() {
        return Ok(false);
    }
    let d = model.dim();
    let means: Vec<Vec<f64>> = window_means.chunks(d).map(|m| model.constrain(m)).collect();
    let Some(perms) = labels::permutations(model, &means, cfg.chains) else {
        return Ok(false);
    };
    Ok(labels::apply_unconstrained(model, &perms, position))
}

/// Runs warmup and sampling for every dataset at once; draws go to `sink`.
///
/// For models with exchangeable components ([`Model::label_groups`]), each chain's labels
/// are matched to the ensemble's at the end of every mass-matrix window and its position
/// permuted accordingly (a permutation of an exchangeable posterior is a valid move), so
/// that chains in different label modes do not spoil the cross-chain adaptation.
pub fn sample(
    integrator: &mut dyn Integrator,
    model: &dyn Model,
    n_datasets: usize,
    cfg: &Config,
    sink: &mut dyn DrawSink,
    progress: Progress<'_>,
) -> Result<RunReport> {
    cfg.validate()?;
    let d = integrator.dim();
    let n = integrator.n_chains();
    if n != n_datasets * cfg.chains {
        return Err(Error::Invalid(format!(
            "integrator has {n} chains, expected {n_datasets} datasets x {} chains",
            cfg.chains
        )));
    }
    let Start {
        q,
        mut logp,
        mut grad,
        mut density_calls,
    } = initialise(integrator, cfg)?;

    let target_accept = cfg.target_accept.unwrap_or_else(|| model.target_accept());
    if !cfg.adapted.is_empty()
        && (cfg.adapted.len() != n_datasets || cfg.adapted.iter().any(|a| a.inv_mass.len() != d))
    {
        return Err(Error::Config {
            flag: "--adapt-from".into(),
            message: format!(
                "adaptation for {} dataset(s) of dimension {}, but this run has {n_datasets} of dimension {d}",
                cfg.adapted.len(),
                cfg.adapted.first().map_or(0, |a| a.inv_mass.len())
            ),
        });
    }
    let mut states: Vec<DatasetState> = (0..n_datasets)
        .map(|b| {
            let pre = cfg.adapted.get(b);
            let eps = pre.map_or(cfg.step_size, |a| a.step_size);
            (pre, eps)
        })
        .map(|(pre, eps)| DatasetState {
            cov: (cfg.metric == Metric::Dense).then(|| PooledCov::new(cfg.chains, d)),
            // A dense matrix handed over (`--adapt-from` a dense run) is used as it is.
            chol: pre
                .and_then(|a| a.inv_mass_dense.as_ref())
                .map(|rows| rows.concat())
                .filter(|m| d > 0 && m.len() == d * d)
                .and_then(|m| crate::math::cholesky(&m, d))
                .unwrap_or_default(),
            da: DualAveraging::new(eps, target_accept),
            chees: ChEES::new(pre.map_or(cfg.step_size * 10.0, |a| a.trajectory_length)),
            mass: (0..cfg.chains).map(|_| Welford::new(d)).collect(),
            inv_mass: pre.map_or_else(|| vec![1.0; d], |a| a.inv_mass.clone()),
            metric_adapted: pre.is_some(),
            divergences: 0,
            accept_sum: 0.0,
            steps_sum: 0.0,
            lp_window: (0..cfg.chains).map(|_| Welford::new(1)).collect(),
            halves: [Welford::new(d), Welford::new(d)],
            window_end: None,
            adapted: false,
        })
        .collect();
    let adaptive_end = cfg.adaptive_warmup && cfg.chains >= WarmupEnd::MIN_CHAINS;
    let mut windows = if adaptive_end {
        ensemble_windows(cfg.warmup, cfg.chains)
    } else {
        mass_windows(cfg.warmup, cfg.chains)
    };
    // The fixed schedule's terminal buffer (what follows the last window).
    let terminal = windows.last().map_or(0, |&e| cfg.warmup - e);
    let mut warmup_end = cfg.warmup;
    let mut adapted_at = None;
    let slow_start = adapt::init_buffer(cfg.warmup, cfg.chains);
    let mut out = StepOut::default();
    out.resize(n, d);
    let mut tuning: Vec<Tuning> = states
        .iter()
        .map(|s| Tuning {
            step_size: s.da.log_eps.exp(),
            n_steps: 1,
            inv_mass: s.inv_mass.clone(),
            chol: s.chol.clone(),
        })
        .collect();
    let max_steps = integrator
        .step_cap(cfg.metric)
        .map_or(cfg.max_steps, |c| c.min(cfg.max_steps));
    let steps_for = |t: usize, traj: f64, eps: f64| -> u32 {
        let l = (halton(t as u64 + 1) * traj / eps).ceil();
        if l.is_finite() {
            (l as u32).clamp(1, max_steps)
        } else {
            max_steps
        }
    };
    let mut grads = 0u64;
    let mut transitions = 0u64;
    let t0 = std::time::Instant::now();
    let mut before = q.clone();
    let relabel = model.label_groups().is_some() && cfg.chains > 1;
    let mut window_means = vec![0.0; n * d];
    let cancelled = || {
        cfg.cancel
            .as_ref()
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    };
    let mut t = 0;
    while t < warmup_end {
        if cancelled() {
            return Err(Error::Interrupted);
        }
        for (tu, s) in tuning.iter_mut().zip(&states) {
            tu.step_size = s.da.log_eps.exp();
            tu.n_steps = steps_for(t, s.chees.log_t.exp(), tu.step_size);
            if !s.metric_adapted && !windows.is_empty() {
                tu.n_steps = tu.n_steps.min(PRE_METRIC_MAX_STEPS);
            }
            tu.inv_mass.copy_from_slice(&s.inv_mass);
            tu.chol.clone_from(&s.chol);
        }
        integrator.step(t as u32, &tuning, &mut out)?;
        transitions += 1;
        let jitter = halton(t as u64 + 1);
        // Whether iteration t lies in the second half of its mass-matrix window.
        let second_half = adaptive_end && {
            let start = windows
                .iter()
                .rev()
                .find(|&&e| e <= t)
                .map_or(slow_start, |&e| e);
            let end = windows.iter().find(|&&e| e > t).map_or(start, |&e| e);
            2 * t >= start + end
        };
        for (b, s) in states.iter_mut().enumerate() {
            let r = b * cfg.chains..(b + 1) * cfg.chains;
            let rd = r.start * d..r.end * d;
            grads += u64::from(tuning[b].n_steps) * cfg.chains as u64;
            let acc = harmonic_accept(&out.accept_prob[r.clone()], &out.divergent[r.clone()]);
            s.da.update(acc);
            let eps = s.da.log_eps.exp();
            let g = chees_gradient(
                &before[rd.clone()],
                &out.proposal[rd.clone()],
                &out.velocity[rd.clone()],
                &out.accept_prob[r.clone()],
                &out.divergent[r.clone()],
                (&s.inv_mass, &s.chol),
                jitter,
                s.chees.log_t.exp(),
            );
            let mut lo = eps;
            // The floor needs an adapted metric: before the first mass-matrix update the
            // ensemble's spread reflects the starting points, not the posterior.
            if cfg.whitened_floor && cfg.chains > 1 && s.metric_adapted {
                let mut z = vec![0.0; rd.len()];
                for (x, o) in out.position[rd.clone()].chunks(d).zip(z.chunks_mut(d)) {
                    whiten(&s.inv_mass, &s.chol, x, o);
                }
                lo = lo.max(std::f64::consts::FRAC_PI_2 * lambda_max(&z, cfg.chains, d).sqrt());
            }
            s.chees.update(g, lo, 1000.0 * eps.max(lo / 1000.0));
            if t >= slow_start && windows.last().is_some_and(|&e| t < e) {
                for (w, c) in s.mass.iter_mut().zip(r.clone()) {
                    w.add(&out.position[c * d..(c + 1) * d]);
                }
                if let Some(cov) = s.cov.as_mut() {
                    for (k, c) in r.clone().enumerate() {
                        cov.add(k, &out.position[c * d..(c + 1) * d]);
                    }
                }
                if adaptive_end {
                    for (w, c) in s.lp_window.iter_mut().zip(r.clone()) {
                        w.add(&[out.logp[c]]);
                    }
                    let half = &mut s.halves[usize::from(second_half)];
                    for c in r.clone() {
                        half.add(&out.position[c * d..(c + 1) * d]);
                    }
                }
            }
            if relabel && windows.contains(&(t + 1)) {
                for (c, w) in s.mass.iter().enumerate() {
                    window_means[(b * cfg.chains + c) * d..(b * cfg.chains + c + 1) * d]
                        .copy_from_slice(w.mean());
                }
            }
            if windows.contains(&(t + 1)) && s.mass[0].count() >= 3.0 {
                let per_chain = s.mass[0].count();
                let nn = per_chain * cfg.chains as f64;
                let mut var = vec![0.0; d];
                for w in &s.mass {
                    var.iter_mut()
                        .zip(w.variance())
                        .for_each(|(a, v)| *a += v / cfg.chains as f64);
                }
                let new: Vec<f64> = var
                    .iter()
                    .map(|v| (nn / (nn + 5.0)) * v + 1e-3 * (5.0 / (nn + 5.0)))
                    .collect();
                if adaptive_end {
                    let now = (s.da.log_eps_bar, s.chees.log_t_avg);
                    let rhat = WarmupEnd::window_rhat(
                        &s.mass,
                        &s.lp_window,
                        cfg.superchain_size,
                        model.label_groups().is_some(),
                    );
                    s.adapted = s.metric_adapted
                        && WarmupEnd::adapted(
                            s.window_end,
                            now,
                            &s.halves[0].variance(),
                            &s.halves[1].variance(),
                            rhat,
                        );
                    s.window_end = Some(now);
                    s.lp_window.iter_mut().for_each(Welford::reset);
                    s.halves.iter_mut().for_each(Welford::reset);
                }
                s.inv_mass = new;
                // Dense: Stan's regularised estimate from the same window; the diagonal one
                // serves while it is not positive definite (fewer draws than dimensions).
                if let Some(cov) = s.cov.as_mut() {
                    match regularised(&cov.covariance(), d, nn) {
                        Some((dense, chol)) => {
                            s.inv_mass = (0..d).map(|i| dense[i * d + i]).collect();
                            s.chol = chol;
                        }
                        None => s.chol.clear(),
                    }
                    cov.reset();
                }
                s.mass.iter_mut().for_each(Welford::reset);
                s.metric_adapted = true;
                s.da.restart(eps);
            }
        }
        if relabel
            && windows.contains(&(t + 1))
            && align_labels(model, cfg, &window_means, &mut out.position)?
        {
            integrator.set_positions(&out.position, &mut logp, &mut grad)?;
            density_calls += 1;
        }
        // Every dataset adapted at this window end: no further window, one terminal buffer.
        if adaptive_end
            && adapted_at.is_none()
            && windows.contains(&(t + 1))
            && windows.last() != Some(&(t + 1))
            && states.iter().all(|s| s.adapted)
        {
            adapted_at = Some(t + 1);
            windows.retain(|&e| e <= t + 1);
            warmup_end = (t + 1 + terminal).min(cfg.warmup);
        }
        before.copy_from_slice(&out.position);
        t += 1;
        progress("warmup", t, warmup_end, 0);
    }
    let warmup_done = warmup_end;
    let t_warm = t0.elapsed().as_secs_f64();
    let trajectory: Vec<f64> = states
        .iter()
        .map(|s| {
            if warmup_done > 0 {
                s.chees.log_t_avg.exp()
            } else {
                s.chees.log_t.exp()
            }
        })
        .collect();
    for (tu, s) in tuning.iter_mut().zip(&states) {
        tu.step_size = if warmup_done > 0 {
            s.da.log_eps_bar.exp()
        } else {
            s.da.log_eps.exp()
        };
        tu.inv_mass.copy_from_slice(&s.inv_mass);
        tu.chol.clone_from(&s.chol);
    }
    let t1 = std::time::Instant::now();
    let total = cfg.draws * cfg.thin;
    let mut steps = vec![0u32; n];
    let mut divs = 0usize;
    let mut lp_sum = vec![0.0f64; n];
    let mut div_count = vec![0usize; n];
    // Frozen kernel: transitions go to the integrator in batches (one submission and one
    // read-back per batch on the GPU).
    let batch = integrator.batch_len().max(1);
    let mut outs: Vec<StepOut> = vec![StepOut::default(); batch.min(total.max(1))];
    let mut i = 0;
    let mut interrupted = false;
    let mut tracker = cfg
        .target_ess
        .map(|target| converge::Tracker::new(model, n, cfg, target));
    while i < total {
        if cancelled() {
            interrupted = true;
            break;
        }
        let len = batch.min(total - i);
        let rows: Vec<Vec<u32>> = (0..len)
            .map(|r| {
                let t = warmup_done + i + r;
                (0..n_datasets)
                    .map(|b| steps_for(t, trajectory[b], tuning[b].step_size))
                    .collect()
            })
            .collect();
        integrator.run_batch((warmup_done + i) as u32, &tuning, &rows, &mut outs[..len])?;
        transitions += len as u64;
        for (r, out) in outs[..len].iter().enumerate() {
            for c in 0..n {
                lp_sum[c] += out.logp[c];
                div_count[c] += usize::from(out.divergent[c]);
            }
            for (b, s) in states.iter_mut().enumerate() {
                let ch = b * cfg.chains..(b + 1) * cfg.chains;
                let ns = rows[r][b];
                grads += u64::from(ns) * cfg.chains as u64;
                let dv = out.divergent[ch.clone()].iter().filter(|&&x| x).count();
                s.divergences += dv;
                divs += dv;
                s.accept_sum += out.accept_prob[ch.clone()].iter().sum::<f64>();
                s.steps_sum += f64::from(ns) * cfg.chains as f64;
                steps[ch].iter_mut().for_each(|v| *v = ns);
            }
            let k = i + r;
            if (k + 1) % cfg.thin == 0 {
                sink.record(k / cfg.thin, out, &steps)?;
                if let Some(t) = tracker.as_mut() {
                    t.record(&out.position);
                }
            }
            progress("sampling", k + 1, total, divs);
        }
        i += len;
        if let Some(t) = tracker.as_mut() {
            if t.check_if_due(t1.elapsed().as_secs_f64()) {
                break;
            }
        }
    }
    let done = i;
    let per = (done * cfg.chains).max(1) as f64;
    Ok(RunReport {
        datasets: states
            .iter()
            .zip(&tuning)
            .zip(&trajectory)
            .enumerate()
            .map(|(b, ((s, tu), &tr))| DatasetReport {
                stuck_chains: {
                    let r = b * cfg.chains..(b + 1) * cfg.chains;
                    let t = done.max(1) as f64;
                    let mlp: Vec<f64> = lp_sum[r.clone()].iter().map(|v| v / t).collect();
                    let dr: Vec<f64> = div_count[r].iter().map(|&v| v as f64 / t).collect();
                    stuck_chains(&mlp, &dr)
                },
                step_size: tu.step_size,
                trajectory_length: tr,
                inv_mass: s.inv_mass.clone(),
                inv_mass_dense: (!s.chol.is_empty()).then(|| super::metric::product(&s.chol, d)),
                divergences: s.divergences,
                mean_accept: s.accept_sum / per,
                mean_steps: s.steps_sum / per,
            })
            .collect(),
        gradient_evals: grads,
        transitions,
        density_calls,
        seconds: (t_warm, t1.elapsed().as_secs_f64()),
        draws_completed: done / cfg.thin,
        warmup_iterations: warmup_done,
        warmup_adapted_at: adapted_at,
        interrupted,
        target: tracker.map(|t| t.report),
    })
}
