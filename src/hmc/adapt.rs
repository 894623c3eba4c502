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
    m: f64,
    v: f64,
    t: f64,
}

impl ChEES {
    const LR: f64 = 0.025;
    const B1: f64 = 0.0;
    const B2: f64 = 0.95;
    const CLIP: f64 = 0.35;

    /// Starts at trajectory length `t0`.
    pub fn new(t0: f64) -> Self {
        Self {
            log_t: t0.ln(),
            log_t_avg: t0.ln(),
            m: 0.0,
            v: 0.0,
            t: 0.0,
        }
    }

    /// One Adam ascent step with gradient `g` of the criterion in log T; then keeps T in
    /// `[lo, hi]`.
    pub fn update(&mut self, g: f64, lo: f64, hi: f64) {
        if g.is_finite() {
            self.t += 1.0;
            self.m = Self::B1 * self.m + (1.0 - Self::B1) * g;
            self.v = Self::B2 * self.v + (1.0 - Self::B2) * g * g;
            let mh = self.m / (1.0 - Self::B1.powf(self.t));
            let vh = self.v / (1.0 - Self::B2.powf(self.t));
            let step = (Self::LR * mh / (vh.sqrt() + 1e-12)).clamp(-Self::CLIP, Self::CLIP);
            self.log_t += step;
        }
        self.log_t = self.log_t.clamp(lo.ln(), hi.ln().max(lo.ln()));
        let eta = (self.t.max(1.0)).powf(-0.75);
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
    let mut w = base;
    while start < end_slow {
        let mut end = start + w;
        // Stretch the last window to the terminal buffer when the next would not fit.
        if end + 2 * w > end_slow {
            end = end_slow;
        }
        ends.push(end);
        start = end;
        w *= 2;
    }
    ends
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
