//! Warmup adaptation shared by every backend: dual averaging of the step size on the
//! harmonic-mean acceptance, ChEES trajectory length (Adam on log T), and the diagonal
//! inverse mass matrix from windowed cross-chain variance.

/// Nesterov dual averaging (Hoffman & Gelman 2014, Stan's constants).
#[derive(Clone, Debug)]
pub struct DualAveraging {
    mu: f64,
    hbar: f64,
    t: f64,
    /// Current log step size.
    pub log_eps: f64,
    /// Averaged log step size (used after warmup).
    pub log_eps_bar: f64,
    target: f64,
}

impl DualAveraging {
    /// Starts at `eps` aiming at acceptance statistic `target`.
    pub fn new(eps: f64, target: f64) -> Self {
        let mut d = Self {
            mu: 0.0,
            hbar: 0.0,
            t: 0.0,
            log_eps: eps.ln(),
            log_eps_bar: eps.ln(),
            target,
        };
        d.restart(eps);
        d
    }

    /// Restarts around `eps` (after a mass-matrix update).
    pub fn restart(&mut self, eps: f64) {
        self.mu = (10.0 * eps).ln();
        self.hbar = 0.0;
        self.t = 0.0;
        self.log_eps = eps.ln();
        self.log_eps_bar = eps.ln();
    }

    /// One update with the observed acceptance statistic.
    pub fn update(&mut self, accept: f64) {
        const GAMMA: f64 = 0.05;
        const T0: f64 = 10.0;
        const KAPPA: f64 = 0.75;
        let a = if accept.is_finite() {
            accept.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.t += 1.0;
        let w = 1.0 / (self.t + T0);
        self.hbar = (1.0 - w) * self.hbar + w * (self.target - a);
        self.log_eps = (self.mu - self.t.sqrt() / GAMMA * self.hbar).clamp(-30.0, 10.0);
        let eta = self.t.powf(-KAPPA);
        self.log_eps_bar = eta * self.log_eps + (1.0 - eta) * self.log_eps_bar;
    }
}

/// Adam on log T, maximising the ChEES criterion, with iterate averaging in log space.
#[derive(Clone, Debug)]
pub struct ChEES {
    /// Current log trajectory length.
    pub log_t: f64,
    /// Averaged log trajectory length (used after warmup).
    pub log_t_avg: f64,
    adam: crate::math::Adam<f64>,
}

impl ChEES {
    const LR: f64 = 0.025;
    const B1: f64 = 0.0;
    const B2: f64 = 0.95;
    const EPS: f64 = 1e-12;
    const CLIP: f64 = 0.35;

    /// Starts at trajectory length `t0`.
    pub fn new(t0: f64) -> Self {
        Self {
            log_t: t0.ln(),
            log_t_avg: t0.ln(),
            adam: crate::math::Adam::with(1, Self::B1, Self::B2, Self::EPS),
        }
    }

    /// One Adam ascent step with gradient `g` of the criterion in log T; then keeps T in
    /// `[lo, hi]`.
    pub fn update(&mut self, g: f64, lo: f64, hi: f64) {
        if g.is_finite() {
            let mut step = 0.0;
            self.adam.directions(&[g], |_, s| step = s);
            self.log_t += (Self::LR * step).clamp(-Self::CLIP, Self::CLIP);
        }
        self.log_t = self.log_t.clamp(lo.ln(), hi.ln().max(lo.ln()));
        let eta = f64::from(self.adam.steps().max(1)).powf(-0.75);
        self.log_t_avg = eta * self.log_t + (1.0 - eta) * self.log_t_avg;
    }
}

/// Running mean and variance (Welford) of a vector.
#[derive(Clone, Debug)]
pub struct Welford {
    n: f64,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl Welford {
    /// For vectors of dimension `d`.
    pub fn new(d: usize) -> Self {
        Self {
            n: 0.0,
            mean: vec![0.0; d],
            m2: vec![0.0; d],
        }
    }

    /// Adds one vector.
    pub fn add(&mut self, x: &[f64]) {
        self.n += 1.0;
        for ((m, s), &v) in self.mean.iter_mut().zip(&mut self.m2).zip(x) {
            let d = v - *m;
            *m += d / self.n;
            *s += d * (v - *m);
        }
    }

    /// Number of vectors added.
    pub fn count(&self) -> f64 {
        self.n
    }

    /// Mean.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// Sample variances (n - 1 denominator).
    pub fn variance(&self) -> Vec<f64> {
        self.m2
            .iter()
            .map(|s| s / (self.n - 1.0).max(1.0))
            .collect()
    }

    /// Forgets everything.
    pub fn reset(&mut self) {
        self.n = 0.0;
        self.mean.iter_mut().for_each(|v| *v = 0.0);
        self.m2.iter_mut().for_each(|v| *v = 0.0);
    }
}

/// The i-th element (i >= 1) of the base-2 Halton (van der Corput) sequence, in (0, 1).
pub fn halton(mut i: u64) -> f64 {
    let mut f = 1.0;
    let mut r = 0.0;
    while i > 0 {
        f /= 2.0;
        r += f * (i % 2) as f64;
        i /= 2;
    }
    r
}

/// Length of the initial fast buffer (before the first mass-matrix window): Stan's 75, or 25
/// for ensembles of 64 chains or more, whose pooled window estimates are good much sooner.
pub fn init_buffer(warmup: usize, chains: usize) -> usize {
    if warmup < 20 {
        usize::MAX
    } else if warmup >= 150 {
        if chains >= 64 {
            25
        } else {
            75
        }
    } else {
        warmup * 15 / 100
    }
}

/// Ends of the slow mass-matrix windows: after [`init_buffer`], windows of 25 doubling, and a
/// terminal buffer of 50 (Stan's schedule, scaled down for short warmups).
pub fn mass_windows(warmup: usize, chains: usize) -> Vec<usize> {
    windows(warmup, chains, usize::MAX)
}

/// The windows of an ensemble whose warmup may end early ([`WarmupEnd`]): Stan's doubling
/// windows, but none longer than [`WarmupEnd::WINDOW`], so that the adaptation is checked
/// every `WINDOW` iterations once it has settled instead of at 400 and then only at the
/// schedule's end. With 64 chains or more a window of 100 iterations pools at least 6 400
/// draws per mass-matrix entry, more than a single chain's longest Stan window.
pub fn ensemble_windows(warmup: usize, chains: usize) -> Vec<usize> {
    windows(warmup, chains, WarmupEnd::WINDOW)
}

fn windows(warmup: usize, chains: usize, cap: usize) -> Vec<usize> {
    if warmup < 20 {
        return Vec::new();
    }
    let init = init_buffer(warmup, chains);
    let (term, base) = if warmup >= 150 {
        (50, 25)
    } else {
        let term = warmup / 10;
        (term, (warmup - init - term).max(1))
    };
    let end_slow = warmup - term;
    let mut ends = Vec::new();
    let mut start = init;
    let mut w = base.min(cap);
    while start < end_slow {
        let mut end = start + w;
        let next = (2 * w).min(cap);
        // Stretch the last window to the terminal buffer when the next would not fit.
        if end + next > end_slow {
            end = end_slow;
        }
        ends.push(end);
        start = end;
        w = next;
    }
    ends
}

/// The adaptive end of warmup ([`super::Config::adaptive_warmup`]), for ensembles of at least
/// [`WarmupEnd::MIN_CHAINS`] chains per dataset, whose windows ([`ensemble_windows`]) last at
/// most [`WarmupEnd::WINDOW`] iterations. At the end of every mass-matrix window from the
/// second on, a dataset counts as adapted when:
/// - against the previous window's end, the averaged trajectory length moved by less than
///   [`WarmupEnd::CHANGE`] on the log scale, and the averaged step size by less than
///   [`WarmupEnd::STEP_CHANGE`] (looser: the terminal buffer tunes the step size to the
///   final metric again, as in the fixed schedule, and the window's step size was tuned to
///   the metric before),
/// - the window is stationary for the mass matrix: the variance of no coordinate over the
///   window's second half (every chain's draws pooled) differs from that over its first half
///   by more than [`WarmupEnd::METRIC_CHANGE`] on the log scale (a comparison within the
///   window, not against the previous window's matrix, which a few chains still arriving
///   from another mode can inflate: on the tutorial's mixture of regressions that held the
///   ensemble for 600 iterations more),
/// - and the window's nested R-hat (from each chain's window mean and variance, superchains
///   as configured) is below [`WarmupEnd::RHAT`] for the log density and, for models without
///   exchangeable labels, every unconstrained coordinate (label-switched chains would count
///   as unmixed, while the log density does not see labels).
///
/// When every dataset is adapted, no further window opens: warmup runs one terminal buffer
/// more (step size only, as at the end of the fixed schedule) and sampling begins. The fixed
/// schedule stays the upper bound.
pub struct WarmupEnd;

impl WarmupEnd {
    /// Smallest ensemble whose window statistics are trusted to end warmup early.
    pub const MIN_CHAINS: usize = 64;
    /// Longest mass-matrix window of an ensemble that may end warmup early
    /// ([`ensemble_windows`]).
    pub const WINDOW: usize = 100;
    /// Bound on the window's nested R-hat.
    pub const RHAT: f64 = 1.01;
    /// Bound on the log change of the trajectory length between window ends (a trajectory
    /// a quarter off its eventual length costs about that share of ESS per gradient, never
    /// correctness; the terminal buffer keeps adapting it).
    pub const CHANGE: f64 = 0.25;
    /// Bound on the log change of the step size between window ends.
    pub const STEP_CHANGE: f64 = 0.3;
    /// Bound on the log ratio of a coordinate's variances over a window's two halves.
    pub const METRIC_CHANGE: f64 = 0.25;

    /// Whether one dataset is adapted at a window end: `prev` and `now` are the
    /// (log step size, log trajectory length) averages at the previous and this window end,
    /// `first`/`second` the variances of each coordinate over the window's first and second
    /// half (every chain's draws pooled), and `rhat` the window's largest nested R-hat.
    pub fn adapted(
        prev: Option<(f64, f64)>,
        now: (f64, f64),
        first: &[f64],
        second: &[f64],
        rhat: f64,
    ) -> bool {
        let Some(prev) = prev else {
            return false;
        };
        let metric = first
            .iter()
            .zip(second)
            .map(|(a, b)| (b / a).ln().abs())
            .fold(
                0.0,
                |m: f64, v| if v.is_nan() { f64::INFINITY } else { m.max(v) },
            );
        (now.0 - prev.0).abs() < Self::STEP_CHANGE
            && (now.1 - prev.1).abs() < Self::CHANGE
            && metric < Self::METRIC_CHANGE
            && rhat < Self::RHAT
    }

    /// The window's largest nested R-hat over the log density (`lp`: one accumulator per
    /// chain) and, unless `labels`, every coordinate of `mass` (one accumulator per chain).
    pub fn window_rhat(mass: &[Welford], lp: &[Welford], superchain: usize, labels: bool) -> f64 {
        let size = if mass.len() / superchain.max(1) >= 2 {
            superchain
        } else {
            1
        };
        // Each accumulator's variances once (they are computed, not stored).
        fn moments(acc: &[Welford]) -> (Vec<&[f64]>, Vec<Vec<f64>>) {
            (
                acc.iter().map(Welford::mean).collect(),
                acc.iter().map(Welford::variance).collect(),
            )
        }
        let of = |(means, vars): &(Vec<&[f64]>, Vec<Vec<f64>>), i: usize| {
            let m: Vec<f64> = means.iter().map(|w| w[i]).collect();
            let v: Vec<f64> = vars.iter().map(|w| w[i]).collect();
            let r = crate::diag::nested_rhat_moments(&m, &v, size);
            if r.is_nan() {
                f64::INFINITY
            } else {
                r
            }
        };
        let mut worst = of(&moments(lp), 0);
        if !labels {
            let d = mass.first().map_or(0, |w| w.mean().len());
            let mass = moments(mass);
            for i in 0..d {
                worst = worst.max(of(&mass, i));
            }
        }
        worst
    }
}

/// Chains whose mean log density sits far below the median of their dataset's chains, or
/// that diverged in more than half of their transitions.
pub fn stuck_chains(mean_lp: &[f64], divergence_rate: &[f64]) -> Vec<usize> {
    let mut s: Vec<f64> = mean_lp.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let med = s[s.len() / 2];
    let mut dev: Vec<f64> = s.iter().map(|v| (v - med).abs()).collect();
    dev.sort_by(|a, b| a.total_cmp(b));
    let mad = 1.4826 * dev[dev.len() / 2];
    let cut = med - (5.0 * mad).max(10.0);
    (0..mean_lp.len())
        .filter(|&c| mean_lp[c] < cut || divergence_rate[c] > 0.5)
        .collect()
}

/// Harmonic mean of the non-divergent chains' acceptance probabilities (0 when none, or when
/// one of them is 0). With 100 or more chains the lowest 1% are left out: one chain's
/// occasional near-zero acceptance would otherwise set the step size for thousands.
pub fn harmonic_accept(a: &[f64], div: &[bool]) -> f64 {
    let mut v: Vec<f64> = a
        .iter()
        .zip(div)
        .filter(|(_, &d)| !d)
        .map(|(&p, _)| p)
        .collect();
    if v.is_empty() {
        return 0.0;
    }
    let trim = if v.len() >= 100 { v.len() / 100 } else { 0 };
    if trim > 0 {
        v.sort_by(|x, y| x.total_cmp(y));
        v.drain(..trim);
    }
    let s: f64 = v.iter().map(|p| 1.0 / p).sum();
    // Divergent chains count as accepting nothing, in proportion: leaving them out would let
    // a small ensemble keep a step size that diverges, and a harmonic mean over a zero would
    // let one chain collapse the step size of thousands.
    let h = v.len() as f64 / s * (v.len() + trim) as f64 / a.len() as f64;
    if h.is_finite() {
        h
    } else {
        0.0
    }
}

/// Largest eigenvalue of the covariance of rows `x` (n x d), by power iteration.
pub(crate) fn lambda_max(x: &[f64], n: usize, d: usize) -> f64 {
    if n < 2 {
        return 0.0;
    }
    let mut mean = vec![0.0; d];
    for r in x.chunks(d) {
        mean.iter_mut().zip(r).for_each(|(m, v)| *m += v / n as f64);
    }
    let mut v = vec![1.0 / (d as f64).sqrt(); d];
    let mut lam = 0.0;
    for _ in 0..30 {
        let mut w = vec![0.0; d];
        for r in x.chunks(d) {
            let dot: f64 = r
                .iter()
                .zip(&mean)
                .zip(&v)
                .map(|((a, m), b)| (a - m) * b)
                .sum();
            w.iter_mut()
                .zip(r)
                .zip(&mean)
                .for_each(|((wi, a), m)| *wi += dot * (a - m));
        }
        let norm = w.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm == 0.0 || !norm.is_finite() {
            return 0.0;
        }
        lam = norm / (n - 1) as f64;
        v = w.into_iter().map(|a| a / norm).collect();
    }
    lam
}

/// The ChEES gradient in log T for one dataset's chains, measured in the metric's whitened
/// coordinates (`inv_mass`, or the dense factor `chol` when not empty; [`super::metric`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn chees_gradient(
    before: &[f64],
    after: &[f64],
    vel: &[f64],
    accept: &[f64],
    div: &[bool],
    (inv_mass, chol): (&[f64], &[f64]),
    jitter: f64,
    t: f64,
) -> f64 {
    let d = inv_mass.len();
    let n = accept.len();
    let white = |x: &[f64]| {
        let mut z = vec![0.0; x.len()];
        for (r, o) in x.chunks(d.max(1)).zip(z.chunks_mut(d.max(1))) {
            super::metric::whiten(inv_mass, chol, r, o);
        }
        z
    };
    let (before, after, vel) = (white(before), white(after), white(vel));
    let mut m0 = vec![0.0; d];
    let mut m1 = vec![0.0; d];
    for c in 0..n {
        for i in 0..d {
            m0[i] += before[c * d + i] / n as f64;
            m1[i] += after[c * d + i] / n as f64;
        }
    }
    let (mut num, mut den) = (0.0, 0.0);
    for c in 0..n {
        if div[c] {
            continue;
        }
        let (mut s0, mut s1, mut xp) = (0.0, 0.0, 0.0);
        for i in 0..d {
            let x0 = before[c * d + i] - m0[i];
            let x1 = after[c * d + i] - m1[i];
            s0 += x0 * x0;
            s1 += x1 * x1;
            xp += x1 * vel[c * d + i];
        }
        let g = jitter * t * (s1 - s0) * xp;
        if g.is_finite() {
            num += accept[c] * g;
            den += accept[c];
        }
    }
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halton_base_two() {
        let h: Vec<f64> = (1..=6).map(halton).collect();
        assert_eq!(h, vec![0.5, 0.25, 0.75, 0.125, 0.625, 0.375]);
    }

    #[test]
    fn windows_match_stan() {
        assert_eq!(mass_windows(1000, 4), vec![100, 150, 250, 450, 950]);
        assert_eq!(mass_windows(1000, 1024), vec![50, 100, 200, 400, 950]);
        let w = mass_windows(100, 4);
        assert!(!w.is_empty() && *w.last().unwrap() == 90);
        assert!(mass_windows(10, 4).is_empty());
        // The ensemble's windows stop doubling at 100: a check every 100 iterations.
        assert_eq!(
            ensemble_windows(1000, 1024),
            vec![50, 100, 200, 300, 400, 500, 600, 700, 800, 950]
        );
        assert_eq!(ensemble_windows(300, 64), vec![50, 100, 250]);
        assert_eq!(
            ensemble_windows(1000, 4),
            vec![100, 150, 250, 350, 450, 550, 650, 750, 850, 950]
        );
    }

    #[test]
    fn adapted_needs_a_stationary_window_and_settled_tuning() {
        let (prev, now) = (Some((0.0, 1.0)), (0.1, 1.1));
        let v = [1.0, 2.0];
        assert!(WarmupEnd::adapted(prev, now, &v, &v, 1.005));
        // The first window end has nothing to compare against.
        assert!(!WarmupEnd::adapted(None, now, &v, &v, 1.005));
        // A coordinate whose spread grew by a third within the window (log 0.29 > 0.25).
        assert!(!WarmupEnd::adapted(prev, now, &v, &[1.0, 2.67], 1.005));
        assert!(!WarmupEnd::adapted(prev, now, &v, &[1.0, f64::NAN], 1.005));
        // Trajectory length still growing, step size still moving, or chains unmixed.
        assert!(!WarmupEnd::adapted(prev, (0.1, 1.3), &v, &v, 1.005));
        assert!(!WarmupEnd::adapted(prev, (0.35, 1.1), &v, &v, 1.005));
        assert!(!WarmupEnd::adapted(prev, now, &v, &v, 1.02));
    }

    #[test]
    fn dual_averaging_finds_the_target() {
        // Acceptance falls with the step size as exp(-eps): the target 0.65 is at -ln 0.65.
        let mut da = DualAveraging::new(1.0, 0.65);
        for _ in 0..2000 {
            let eps = da.log_eps.exp();
            da.update((-eps).exp());
        }
        let want = -(0.65f64).ln();
        assert!(
            (da.log_eps_bar.exp() - want).abs() < 0.02 * want,
            "{}",
            da.log_eps_bar.exp()
        );
    }

    #[test]
    fn welford_matches_two_pass() {
        let xs = [[1.0, 2.0], [3.0, -1.0], [0.5, 0.5], [7.0, 2.0]];
        let mut w = Welford::new(2);
        xs.iter().for_each(|x| w.add(x));
        let m0 = xs.iter().map(|x| x[0]).sum::<f64>() / 4.0;
        let v0 = xs.iter().map(|x| (x[0] - m0).powi(2)).sum::<f64>() / 3.0;
        assert!((w.mean()[0] - m0).abs() < 1e-12 && (w.variance()[0] - v0).abs() < 1e-12);
    }
}

#[cfg(test)]
mod chain_tests {
    use super::*;

    #[test]
    fn stuck_chains_are_found() {
        let lp = [-100.0, -101.0, -99.5, -100.5, -180.0, -100.2];
        let div = [0.0, 0.0, 0.0, 0.0, 0.0, 0.9];
        assert_eq!(stuck_chains(&lp, &div), vec![4, 5]);
        assert!(stuck_chains(&lp[..4], &div[..4]).is_empty());
    }

    #[test]
    fn trimmed_harmonic_mean() {
        let a = vec![0.8; 200];
        let div = vec![false; 200];
        assert!((harmonic_accept(&a, &div) - 0.8).abs() < 1e-12);
        let mut b = a.clone();
        b[0] = 1e-9; // one outlier among 200 is trimmed
        assert!((harmonic_accept(&b, &div) - 0.8).abs() < 1e-12);
        // Below 100 chains nothing is trimmed: the outlier dominates.
        assert!(harmonic_accept(&b[..50], &div[..50]) < 1e-6);
        assert_eq!(harmonic_accept(&[0.5, 0.9], &[true, true]), 0.0);
    }
}
