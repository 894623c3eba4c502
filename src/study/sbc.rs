//! The report of a study: uniformity of the ranks (simulation-based calibration, Talts et
//! al. 2018) by a chi-square test on equal bins and by the ECDF with simultaneous bands
//! (Säilynoja, Bürkner and Vehtari 2022), and parameter recovery (coverage of central
//! intervals, z-scores, posterior contraction, error of the posterior mean).
//!
//! Everything here is a function of the records and the settings only, so a merged set of
//! shards gives the same report, bit for bit, as one run.

use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::{DatasetRecord, Settings};
use crate::rng::{host_rng, Purpose};

/// Most bins of the chi-square test (fewer when the expected count would fall below 5).
pub const MAX_BINS: usize = 20;
/// Most evaluation points of the ECDF band.
pub const ECDF_POINTS: usize = 100;

/// Tests and recovery figures of one quantity.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct QuantityReport {
    /// Parameter name, or `log_lik`.
    pub quantity: String,
    /// Chi-square statistic of the PIT over equal bins.
    pub chi2: f64,
    /// Its degrees of freedom (bins - 1).
    pub df: usize,
    /// Its p-value.
    pub p_chi2: f64,
    /// Largest |ECDF(z) - z| over the evaluation points.
    pub ecdf_max_dev: f64,
    /// Evaluation points where the ECDF leaves the simultaneous band.
    pub ecdf_outside: usize,
    /// Both tests pass at the study's alpha.
    pub pass: bool,
    /// Share of datasets whose central 50% interval covers the truth.
    pub coverage_50: f64,
    /// ... 80% interval.
    pub coverage_80: f64,
    /// ... 95% interval.
    pub coverage_95: f64,
    /// Mean of (posterior mean - truth) / posterior sd.
    pub z_mean: f64,
    /// Standard deviation of those z-scores (about 1 when calibrated).
    pub z_sd: f64,
    /// Mean posterior contraction, 1 - posterior variance / prior variance (the prior
    /// variance estimated from the truths).
    pub contraction: f64,
    /// Root mean square error of the posterior mean.
    pub rmse: f64,
    /// Correlation of truth and posterior mean.
    pub corr: f64,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Report {
    /// The study.
    pub settings: Settings,
    /// Datasets in the report.
    pub datasets: usize,
    /// Datasets whose fit is suspect (non-finite draws, stuck chains); kept in the tests.
    pub failed: usize,
    /// Divergent transitions over all datasets.
    pub divergences: usize,
    /// Datasets with at least one divergence.
    pub datasets_with_divergences: usize,
    /// Largest R-hat over datasets and quantities.
    pub max_r_hat: f64,
    /// Datasets whose warmup ended before the setting (the adaptive end of ensemble
    /// warmup), and the mean warmup length over all datasets.
    pub warmup_ended_early: usize,
    /// Mean warmup iterations over datasets.
    pub mean_warmup_iterations: f64,
    /// Bins of the chi-square test.
    pub bins: usize,
    /// Adjusted pointwise level of the simultaneous ECDF band.
    pub ecdf_gamma: f64,
    /// Per quantity.
    pub quantities: Vec<QuantityReport>,
    /// Every quantity passes.
    pub pass: bool,
}

/// Bins for `n` values: at most [`MAX_BINS`], at least 5 expected per bin (and 2 bins).
pub fn bins_for(n: usize) -> usize {
    (n / 5).clamp(2, MAX_BINS)
}

/// Chi-square statistic and p-value of `pit` values over `bins` equal bins of (0, 1).
pub fn chi_square(pit: &[f64], bins: usize) -> (f64, f64) {
    let mut counts = vec![0usize; bins];
    for &u in pit {
        counts[((u * bins as f64) as usize).min(bins - 1)] += 1;
    }
    let e = pit.len() as f64 / bins as f64;
    let chi2: f64 = counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum();
    let p = ChiSquared::new((bins - 1) as f64)
        .map(|d| d.sf(chi2))
        .unwrap_or(f64::NAN);
    (chi2, p)
}

/// Evaluation points of the ECDF for `n` values: `k / K`, `k = 1..K-1`.
pub fn ecdf_points(n: usize) -> Vec<f64> {
    let k = n.clamp(2, ECDF_POINTS);
    (1..k).map(|i| i as f64 / k as f64).collect()
}

/// Lower and upper binomial tail probabilities, `P(X <= c)` and `P(X >= c)`, for
/// `X ~ Binomial(n, p)` and every `c` in `0..=n`, in log space so nothing underflows early.
pub(crate) fn binomial_tails(n: usize, p: f64) -> (Vec<f64>, Vec<f64>) {
    use statrs::function::gamma::ln_gamma;
    let ln_n = ln_gamma(n as f64 + 1.0);
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let pmf: Vec<f64> = (0..=n)
        .map(|c| {
            let c = c as f64;
            (ln_n - ln_gamma(c + 1.0) - ln_gamma(n as f64 - c + 1.0) + c * lp + (n as f64 - c) * lq)
                .exp()
        })
        .collect();
    let mut lo = pmf.clone();
    for c in 1..=n {
        lo[c] += lo[c - 1];
    }
    let mut hi = pmf;
    for c in (0..n).rev() {
        hi[c] += hi[c + 1];
    }
    (lo, hi)
}

/// Two-sided tail probabilities `min(1, 2 min(P(X <= c), P(X >= c)))` at each evaluation
/// point (rows) for every count `c` (columns).
fn tail_table(n: usize, z: &[f64]) -> Vec<Vec<f64>> {
    z.iter()
        .map(|&p| {
            let (lo, hi) = binomial_tails(n, p);
            lo.iter()
                .zip(&hi)
                .map(|(a, b)| (2.0 * a.min(*b)).min(1.0))
                .collect()
        })
        .collect()
}

/// Counts of `pit` values at most each of `z`.
pub(crate) fn ecdf_counts(pit: &[f64], z: &[f64]) -> Vec<usize> {
    let mut s = pit.to_vec();
    s.sort_unstable_by(|a, b| a.total_cmp(b));
    z.iter().map(|&p| s.partition_point(|&v| v <= p)).collect()
}

/// The pointwise level `gamma` that makes the ECDF band simultaneous at `1 - alpha` for `n`
/// uniform values (Säilynoja et al. 2022, the simulation method), from seeded streams so
/// that it is the same in every run of the same size, whatever the threads.
pub fn ecdf_gamma(n: usize, alpha: f64) -> f64 {
    use rayon::prelude::*;
    let z = ecdf_points(n);
    let k = z.len() + 1;
    let table = tail_table(n, &z);
    let sims = ((20.0 / alpha).ceil() as usize).clamp(1000, 20000);
    let mut mins: Vec<f64> = (0..sims)
        .into_par_iter()
        .map(|sim| {
            let mut rng = host_rng(0x5bc ^ n as u64, sim as u64, Purpose::Other);
            // Uniforms binned by evaluation interval; cumulative counts are the ECDF.
            let mut bins = vec![0usize; k];
            for _ in 0..n {
                let u: f64 = rand::RngExt::random(&mut rng);
                bins[((u * k as f64) as usize).min(k - 1)] += 1;
            }
            let mut c = 0;
            let mut m = 1.0f64;
            for (j, row) in table.iter().enumerate() {
                c += bins[j];
                m = m.min(row[c]);
            }
            m
        })
        .collect();
    mins.sort_unstable_by(|a, b| a.total_cmp(b));
    mins[((alpha * sims as f64) as usize).min(sims - 1)]
}

/// Lower and upper band of the ECDF (as fractions) at each evaluation point for `n` values
/// at pointwise level `gamma`: the counts whose two-sided tail probability is at least
/// `gamma`.
pub fn ecdf_band(n: usize, gamma: f64) -> Vec<(f64, f64)> {
    tail_table(n, &ecdf_points(n))
        .iter()
        .map(|row| {
            let lo = row.iter().position(|&t| t >= gamma).unwrap_or(0);
            let hi = row.iter().rposition(|&t| t >= gamma).unwrap_or(n);
            (lo as f64 / n as f64, hi as f64 / n as f64)
        })
        .collect()
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

fn sd(x: &[f64]) -> f64 {
    let m = mean(x);
    (x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() as f64 - 1.0).max(1.0)).sqrt()
}

/// The report of `records` (in index order) of a study with `settings`.
pub fn report(settings: &Settings, records: &[DatasetRecord]) -> Report {
    let n = records.len();
    let bins = bins_for(n);
    let gamma = ecdf_gamma(n, settings.alpha);
    let band = ecdf_band(n, gamma);
    let z = ecdf_points(n);
    let quantities: Vec<QuantityReport> = settings
        .quantities
        .iter()
        .enumerate()
        .map(|(q, name)| {
            let recs: Vec<&super::QuantityRecord> =
                records.iter().map(|r| &r.quantities[q]).collect();
            let pit: Vec<f64> = recs.iter().map(|r| r.pit).collect();
            let (chi2, p_chi2) = chi_square(&pit, bins);
            let counts = ecdf_counts(&pit, &z);
            let mut max_dev = 0.0f64;
            let mut outside = 0;
            for ((&c, &p), &(lo, hi)) in counts.iter().zip(&z).zip(&band) {
                let f = c as f64 / n as f64;
                max_dev = max_dev.max((f - p).abs());
                outside += usize::from(f < lo || f > hi);
            }
            let cover =
                |level: usize| recs.iter().filter(|r| r.covers(level)).count() as f64 / n as f64;
            let zs: Vec<f64> = recs.iter().map(|r| (r.mean - r.truth) / r.sd).collect();
            let truths: Vec<f64> = recs.iter().map(|r| r.truth).collect();
            let means: Vec<f64> = recs.iter().map(|r| r.mean).collect();
            let prior_var = sd(&truths).powi(2);
            let contraction = mean(
                &recs
                    .iter()
                    .map(|r| 1.0 - r.sd * r.sd / prior_var)
                    .collect::<Vec<_>>(),
            );
            let rmse = mean(
                &recs
                    .iter()
                    .map(|r| (r.mean - r.truth).powi(2))
                    .collect::<Vec<_>>(),
            )
            .sqrt();
            let (mt, mm) = (mean(&truths), mean(&means));
            let cov: f64 = truths
                .iter()
                .zip(&means)
                .map(|(t, m)| (t - mt) * (m - mm))
                .sum::<f64>()
                / (n as f64 - 1.0).max(1.0);
            QuantityReport {
                quantity: name.clone(),
                chi2,
                df: bins - 1,
                p_chi2,
                ecdf_max_dev: max_dev,
                ecdf_outside: outside,
                pass: p_chi2 >= settings.alpha && outside == 0,
                coverage_50: cover(0),
                coverage_80: cover(1),
                coverage_95: cover(2),
                z_mean: mean(&zs),
                z_sd: sd(&zs),
                contraction,
                rmse,
                corr: cov / (sd(&truths) * sd(&means)),
            }
        })
        .collect();
    Report {
        settings: settings.clone(),
        datasets: n,
        failed: records.iter().filter(|r| !r.failed.is_empty()).count(),
        divergences: records.iter().map(|r| r.divergences).sum(),
        datasets_with_divergences: records.iter().filter(|r| r.divergences > 0).count(),
        warmup_ended_early: records
            .iter()
            .filter(|r| r.warmup_iterations < settings.warmup)
            .count(),
        mean_warmup_iterations: records
            .iter()
            .map(|r| r.warmup_iterations as f64)
            .sum::<f64>()
            / n.max(1) as f64,
        max_r_hat: records
            .iter()
            .flat_map(|r| r.quantities.iter().map(|q| q.r_hat))
            .fold(
                f64::NEG_INFINITY,
                |a, b| if b > a || b.is_nan() { b } else { a },
            ),
        bins,
        ecdf_gamma: gamma,
        pass: quantities.iter().all(|q| q.pass),
        quantities,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_values_pass_and_squeezed_ones_fail() {
        let mut rng = host_rng(3, 0, Purpose::Other);
        let n = 1000;
        let u: Vec<f64> = (0..n).map(|_| rand::RngExt::random(&mut rng)).collect();
        let bins = bins_for(n);
        assert_eq!(bins, 20);
        let (_, p) = chi_square(&u, bins);
        assert!(p > 0.001, "p {p}");
        let gamma = ecdf_gamma(n, 0.01);
        // The simultaneous level is far below the pointwise one, and above Bonferroni's.
        let k = ecdf_points(n).len() as f64;
        assert!(gamma < 0.01 && gamma > 0.01 / k, "gamma {gamma}");
        let band = ecdf_band(n, gamma);
        let z = ecdf_points(n);
        let c = ecdf_counts(&u, &z);
        assert!(c
            .iter()
            .zip(&band)
            .all(|(&c, &(lo, hi))| (lo..=hi).contains(&(c as f64 / n as f64))));
        // An overconfident posterior piles the PIT at the ends.
        let bad: Vec<f64> = u
            .iter()
            .map(|v| {
                if *v < 0.5 {
                    v * 0.6
                } else {
                    1.0 - (1.0 - v) * 0.6
                }
            })
            .collect();
        let (_, p) = chi_square(&bad, bins);
        assert!(p < 1e-6, "p {p}");
        let c = ecdf_counts(&bad, &z);
        assert!(c
            .iter()
            .zip(&band)
            .any(|(&c, &(lo, hi))| !(lo..=hi).contains(&(c as f64 / n as f64))));
    }

    #[test]
    fn the_simultaneous_band_has_its_false_alarm_rate() {
        // Uniform samples of 100 leave the 95% band in about 5% of trials (binomial sd
        // 0.5 points over 2 000 trials); a pointwise band would leave it far more often.
        let (n, alpha, trials) = (100, 0.05, 2000);
        let band = ecdf_band(n, ecdf_gamma(n, alpha));
        let z = ecdf_points(n);
        let mut rng = host_rng(77, 0, Purpose::Other);
        let fails = (0..trials)
            .filter(|_| {
                let u: Vec<f64> = (0..n).map(|_| rand::RngExt::random(&mut rng)).collect();
                ecdf_counts(&u, &z)
                    .iter()
                    .zip(&band)
                    .any(|(&c, &(lo, hi))| !(lo..=hi).contains(&(c as f64 / n as f64)))
            })
            .count();
        let rate = fails as f64 / trials as f64;
        assert!((0.03..=0.07).contains(&rate), "false alarm rate {rate}");
    }
}
