//! Convergence diagnostics and summaries (Vehtari et al. 2021; Margossian et al. 2024):
//! rank-normalised split R-hat, bulk and tail ESS, nested R-hat, MCSE, mean, sd, 94% HDI,
//! and label alignment of mixture components across chains (Hungarian matching).
//!
//! Draws of one parameter come as `chains x draws` (`&[Vec<f64>]`).

pub mod align;
pub mod loo;

use realfft::{num_complex::Complex, RealFftPlanner};

/// Splits each chain in half (dropping the middle draw of an odd length); views, no copies.
pub fn split<C: AsRef<[f64]>>(chains: &[C]) -> Vec<&[f64]> {
    let mut out = Vec::with_capacity(chains.len() * 2);
    for c in chains {
        let c = c.as_ref();
        let h = c.len() / 2;
        out.push(&c[..h]);
        out.push(&c[c.len() - h..]);
    }
    out
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

fn var(x: &[f64]) -> f64 {
    let m = mean(x);
    x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (x.len() as f64 - 1.0)
}

/// Classic R-hat of equal-length chains (no splitting, no ranks).
pub fn rhat_basic<C: AsRef<[f64]>>(chains: &[C]) -> f64 {
    let m = chains.len() as f64;
    let n = chains[0].as_ref().len() as f64;
    if m < 2.0 || n < 2.0 {
        return f64::NAN;
    }
    let means: Vec<f64> = chains.iter().map(|c| mean(c.as_ref())).collect();
    let b = n * var(&means);
    let w = chains.iter().map(|c| var(c.as_ref())).sum::<f64>() / m;
    if w == 0.0 {
        return if b == 0.0 { 1.0 } else { f64::INFINITY };
    }
    let var_plus = (n - 1.0) / n * w + b / n;
    (var_plus / w).sqrt()
}

/// Normal scores by rank among `total` pooled draws (Blom's offset): the score of an untied
/// draw depends on its rank alone, so one table serves every parameter of a run and both of
/// a parameter's rankings (bulk and folded).
pub struct NormalScores {
    total: usize,
    z: Vec<f64>,
}

impl NormalScores {
    /// The scores of ranks 1..=`total` (computed in parallel; each is one inverse normal
    /// CDF, the same whatever the number of threads).
    pub fn new(total: usize) -> Self {
        use rayon::prelude::*;
        let s = total as f64;
        let z = (0..total)
            .into_par_iter()
            .map(|k| blom(k as f64 + 1.0, s))
            .collect();
        NormalScores { total, z }
    }

    /// The score of the tied draws at (0-based) sorted positions `i..=j`: their average rank.
    fn tied(&self, i: usize, j: usize) -> f64 {
        if (i + j).is_multiple_of(2) {
            self.z[(i + j) / 2]
        } else {
            blom((i + j) as f64 / 2.0 + 1.0, self.total as f64)
        }
    }
}

fn blom(rank: f64, total: f64) -> f64 {
    inv_normal_cdf((rank - 0.375) / (total + 0.25))
}

/// The draws `pooled` in ascending (total) order, each with its position in `pooled`.
fn order(pooled: impl Iterator<Item = f64>) -> Vec<(f64, usize)> {
    use rayon::prelude::*;
    let mut v: Vec<(f64, usize)> = pooled.enumerate().map(|(i, x)| (x, i)).collect();
    v.par_sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    v
}

/// Normal scores of draws given in ascending order with their positions (`sorted`, from
/// [`order`]), indexed by position; tied draws share their average rank's score.
fn scores_in_order(sorted: &[(f64, usize)], table: &NormalScores) -> Vec<f64> {
    let mut out = vec![0.0; sorted.len()];
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1].0 == sorted[i].0 {
            j += 1;
        }
        let z = table.tied(i, j);
        for &(_, k) in &sorted[i..=j] {
            out[k] = z;
        }
        i = j + 1;
    }
    out
}

/// numpy's median of values in ascending order: the mean of the two middle values (not an
/// interpolation, which can round differently and break the tie the folding makes).
fn median_of_sorted(sorted: &[(f64, usize)]) -> f64 {
    let h = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[h].0
    } else {
        (sorted[h - 1].0 + sorted[h].0) / 2.0
    }
}

/// The draws folded about `med` (`|x - med|`) in ascending order with their positions, from
/// the draws in order. For finite draws the values below the median, read backwards, and
/// the rest, read forwards, are two ascending runs (rounding is monotone), merged in one
/// pass; otherwise they are sorted.
fn folded_order(sorted: &[(f64, usize)], med: f64) -> Vec<(f64, usize)> {
    let fold = |&(v, k): &(f64, usize)| ((v - med).abs(), k);
    if !med.is_finite() || !sorted.iter().all(|x| x.0.is_finite()) {
        let mut folded = vec![0.0; sorted.len()];
        for &(v, k) in sorted {
            folded[k] = (v - med).abs();
        }
        return order(folded.into_iter());
    }
    let p = sorted.partition_point(|x| x.0 < med);
    let mut below = sorted[..p].iter().rev().map(fold).peekable();
    let mut above = sorted[p..].iter().map(fold).peekable();
    let mut out = Vec::with_capacity(sorted.len());
    loop {
        let next = match (below.peek(), above.peek()) {
            (Some(a), Some(b)) if a.0 <= b.0 => below.next(),
            (Some(_), Some(_)) => above.next(),
            (Some(_), None) => below.next(),
            (None, _) => above.next(),
        };
        match next {
            Some(x) => out.push(x),
            None => return out,
        }
    }
}

/// The draws of `chains`, one chain after another.
fn pool<C: AsRef<[f64]>>(chains: &[C]) -> Vec<f64> {
    chains
        .iter()
        .flat_map(|c| c.as_ref().iter().copied())
        .collect()
}

/// Cuts pooled values back into chains of lengths `lens`.
fn unpool(pooled: &[f64], lens: impl Iterator<Item = usize>) -> Vec<&[f64]> {
    let mut start = 0;
    lens.map(|l| {
        start += l;
        &pooled[start - l..start]
    })
    .collect()
}

/// Normal scores of the pooled ranks (Blom's offset, average ranks for ties).
pub fn rank_normalize<C: AsRef<[f64]>>(chains: &[C]) -> Vec<Vec<f64>> {
    let pooled = pool(chains);
    let scores = scores_in_order(
        &order(pooled.iter().copied()),
        &NormalScores::new(pooled.len()),
    );
    unpool(&scores, chains.iter().map(|c| c.as_ref().len()))
        .into_iter()
        .map(<[f64]>::to_vec)
        .collect()
}

fn inv_normal_cdf(p: f64) -> f64 {
    use statrs::distribution::{ContinuousCDF, Normal};
    Normal::standard().inverse_cdf(p)
}

/// Rank-normalised split R-hat: the larger of the bulk and the folded (tail) version.
pub fn rhat<C: AsRef<[f64]>>(chains: &[C]) -> f64 {
    // ArviZ needs two chains (a lone chain's split halves say little) and four draws.
    if chains.len() < 2 || chains[0].as_ref().len() < 4 {
        return f64::NAN;
    }
    let sp = split(chains);
    let pooled = pool(&sp);
    let sorted = order(pooled.iter().copied());
    let ranks = RankedSplit::new(&sp, &sorted, &NormalScores::new(pooled.len()));
    ranks.bulk_rhat().max(ranks.folded_rhat())
}

/// A parameter's split chains ranked for the bulk and the folded (about the median, ArviZ's
/// `_rhat_rank`) diagnostics: their normal scores, pooled in the split chains' order.
struct RankedSplit {
    lens: Vec<usize>,
    bulk: Vec<f64>,
    folded: Vec<f64>,
}

impl RankedSplit {
    fn new(sp: &[&[f64]], sorted: &[(f64, usize)], table: &NormalScores) -> Self {
        let folded = folded_order(sorted, median_of_sorted(sorted));
        RankedSplit {
            lens: sp.iter().map(|c| c.len()).collect(),
            bulk: scores_in_order(sorted, table),
            folded: scores_in_order(&folded, table),
        }
    }

    fn chains<'a>(&self, pooled: &'a [f64]) -> Vec<&'a [f64]> {
        unpool(pooled, self.lens.iter().copied())
    }

    fn bulk_rhat(&self) -> f64 {
        rhat_basic(&self.chains(&self.bulk))
    }

    fn folded_rhat(&self) -> f64 {
        rhat_basic(&self.chains(&self.folded))
    }

    fn bulk_ess(&self) -> f64 {
        ess_basic(&self.chains(&self.bulk))
    }
}

/// Quantile with linear interpolation (numpy's default).
pub fn quantile(x: &[f64], q: f64) -> f64 {
    let mut s = x.to_vec();
    s.sort_unstable_by(|a, b| a.total_cmp(b));
    quantile_sorted(&s, q)
}

/// [`quantile`] of already sorted values.
pub fn quantile_sorted(s: &[f64], q: f64) -> f64 {
    let h = (s.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    s[lo] + (h - lo as f64) * (s[hi] - s[lo])
}

/// Effective sample size of equal-length chains (Stan's algorithm: Geyer's initial
/// monotone sequence on the multi-chain autocorrelation). The mean autocovariance over the
/// chains is the inverse transform of their summed power spectra, so each chain costs one
/// real forward FFT and the whole set one inverse; the chains are transformed in parallel
/// in fixed groups summed in order, so the result does not depend on the number of threads.
pub fn ess_basic<C: AsRef<[f64]> + Sync>(chains: &[C]) -> f64 {
    use rayon::prelude::*;
    let m = chains.len();
    let n = chains[0].as_ref().len();
    if n < 4 {
        return f64::NAN;
    }
    // ArviZ's `_ess`: non-finite draws give NaN, (numerically) constant draws give their count.
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for c in chains {
        for &v in c.as_ref() {
            if !v.is_finite() {
                return f64::NAN;
            }
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    if hi - lo < 1e-15 {
        return (m * n) as f64;
    }
    let size = (2 * n).next_power_of_two();
    let mut planner = RealFftPlanner::<f64>::new();
    let forward = planner.plan_fft_forward(size);
    let add = |mut a: Vec<f64>, b: &[f64]| {
        a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        a
    };
    let bins = size / 2 + 1;
    let groups: Vec<Vec<f64>> = chains
        .par_chunks(16)
        .map_init(
            || {
                let f = &forward;
                (
                    f.make_input_vec(),
                    f.make_output_vec(),
                    f.make_scratch_vec(),
                )
            },
            |(input, spectrum, scratch), g| {
                let mut power = vec![0.0; bins];
                for c in g {
                    let c = c.as_ref();
                    let mu = mean(c);
                    input.iter_mut().zip(c).for_each(|(d, v)| *d = v - mu);
                    input[n..].fill(0.0);
                    // Lengths come from the plan itself: it cannot fail.
                    let _ = forward.process_with_scratch(input, spectrum, scratch);
                    power
                        .iter_mut()
                        .zip(spectrum.iter())
                        .for_each(|(p, z)| *p += z.norm_sqr());
                }
                power
            },
        )
        .collect();
    let power = groups.iter().fold(vec![0.0; bins], |a, g| add(a, g));
    let inverse = planner.plan_fft_inverse(size);
    let mut spectrum: Vec<Complex<f64>> = power.iter().map(|&p| Complex::new(p, 0.0)).collect();
    let mut acov_sum = inverse.make_output_vec();
    let _ = inverse.process(&mut spectrum, &mut acov_sum);
    let scale = (size * n) as f64;
    acov_sum.truncate(n);
    acov_sum.iter_mut().for_each(|v| *v /= scale);
    let chain_means: Vec<f64> = chains.iter().map(|c| mean(c.as_ref())).collect();
    let nf = n as f64;
    let acov_mean = |t: usize| acov_sum[t] / m as f64;
    let w = acov_mean(0) * nf / (nf - 1.0);
    let b_over_n = if m > 1 { var(&chain_means) } else { 0.0 };
    let var_plus = w * (nf - 1.0) / nf + b_over_n;
    if var_plus <= 0.0 || !var_plus.is_finite() {
        return f64::NAN;
    }
    let rho = |t: usize| 1.0 - (w - acov_mean(t)) / var_plus;
    // Geyer's initial positive sequence: pairs (even, odd) of autocorrelations are summed
    // while their sum stays positive; the first pair whose sum is negative is not kept
    // (Stan's `ess`, ArviZ's `_ess`: max_t = t - 2).
    let mut r = vec![0.0; n];
    r[0] = 1.0;
    let mut even = 1.0;
    let mut odd = rho(1);
    r[1] = odd;
    let mut t = 1;
    while t + 3 < n && even + odd > 0.0 {
        even = rho(t + 1);
        odd = rho(t + 2);
        if even + odd >= 0.0 {
            r[t + 1] = even;
            r[t + 2] = odd;
        }
        t += 2;
    }
    // The last kept lag; -1 when no pair was kept (as in ArviZ, where the sums below are
    // then empty and r[0] alone counts).
    let max_t = t as isize - 2;
    let next = (max_t + 1) as usize;
    // The even autocorrelation of the last pair, when positive, improves the estimate.
    if even > 0.0 {
        r[next] = even;
    }
    // Geyer's initial monotone sequence.
    let mut t = 1;
    while t as isize + 2 <= max_t {
        if r[t + 1] + r[t + 2] > r[t - 1] + r[t] {
            r[t + 1] = (r[t - 1] + r[t]) / 2.0;
            r[t + 2] = r[t + 1];
        }
        t += 2;
    }
    let total = (m * n) as f64;
    let tau = -1.0 + 2.0 * r[..next].iter().sum::<f64>() + r[next];
    if r.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    total / tau.max(1.0 / total.log10())
}

/// Bulk ESS: ESS of the rank-normalised split chains.
pub fn ess_bulk<C: AsRef<[f64]>>(chains: &[C]) -> f64 {
    ess_basic(&rank_normalize(&split(chains)))
}

/// Tail ESS: the smaller ESS of the 5% and 95% quantile indicators.
pub fn ess_tail<C: AsRef<[f64]>>(chains: &[C]) -> f64 {
    let mut all = pool(chains);
    all.sort_unstable_by(|a, b| a.total_cmp(b));
    ess_tail_sorted(&split(chains), &all)
}

/// Tail ESS of the split chains `sp`, with the 5% and 95% quantiles taken from `sorted`, all
/// the (unsplit) draws in order.
fn ess_tail_sorted(sp: &[&[f64]], sorted: &[f64]) -> f64 {
    let (q05, q95) = (quantile_sorted(sorted, 0.05), quantile_sorted(sorted, 0.95));
    let ind = |q: f64| -> Vec<Vec<f64>> {
        sp.iter()
            .map(|c| c.iter().map(|&v| f64::from(u8::from(v <= q))).collect())
            .collect()
    };
    let lo = ess_basic(&ind(q05));
    lo.min(ess_basic(&ind(q95)))
}

/// ESS of the mean (split chains, no ranks), for the MCSE of the mean.
pub fn ess_mean<C: AsRef<[f64]>>(chains: &[C]) -> f64 {
    ess_basic(&split(chains))
}

/// Monte Carlo standard error of the mean: sd / sqrt(ESS of the mean) (ArviZ's `mcse_mean`).
pub fn mcse_mean<C: AsRef<[f64]>>(chains: &[C]) -> f64 {
    let all: Vec<f64> = chains
        .iter()
        .flat_map(|c| c.as_ref().iter().copied())
        .collect();
    var(&all).sqrt() / ess_mean(chains).sqrt()
}

/// Monte Carlo standard error of the sd (ArviZ's `mcse_sd`, Vehtari et al. 2021): from the
/// ESS of the squared deviations from the pooled mean and their variance, by the delta method.
pub fn mcse_sd<C: AsRef<[f64]>>(chains: &[C]) -> f64 {
    let total: usize = chains.iter().map(|c| c.as_ref().len()).sum();
    if chains.is_empty() || chains[0].as_ref().len() < 4 {
        return f64::NAN;
    }
    let m = chains.iter().flat_map(|c| c.as_ref().iter()).sum::<f64>() / total as f64;
    let sq: Vec<Vec<f64>> = chains
        .iter()
        .map(|c| c.as_ref().iter().map(|v| (v - m) * (v - m)).collect())
        .collect();
    let ess = ess_mean(&sq);
    let evar = sq.iter().flatten().sum::<f64>() / total as f64;
    let e2 = sq.iter().flatten().map(|v| v * v).sum::<f64>() / total as f64;
    let varvar = (e2 - evar * evar) / ess;
    (varvar / evar / 4.0).sqrt()
}

/// Nested R-hat (Margossian et al. 2024) for chains grouped in consecutive superchains of
/// `size` chains.
pub fn nested_rhat<C: AsRef<[f64]>>(chains: &[C], size: usize) -> f64 {
    let n = chains.first().map_or(0, |c| c.as_ref().len());
    let means: Vec<f64> = chains.iter().map(|c| mean(c.as_ref())).collect();
    let vars: Vec<f64> = if n > 1 {
        chains.iter().map(|c| var(c.as_ref())).collect()
    } else {
        vec![0.0; chains.len()]
    };
    nested_rhat_moments(&means, &vars, size)
}

/// [`nested_rhat`] from each chain's mean and sample variance (n - 1 denominator) alone, as
/// running accumulators give them (the sampler's warmup uses it on its window statistics).
pub fn nested_rhat_moments(chain_means: &[f64], chain_vars: &[f64], size: usize) -> f64 {
    if size == 0 {
        return f64::NAN;
    }
    let k = chain_means.len() / size;
    if k < 2 {
        return f64::NAN;
    }
    let mut super_means = Vec::with_capacity(k);
    let mut w_sum = 0.0;
    for s in 0..k {
        let cm = &chain_means[s * size..(s + 1) * size];
        super_means.push(mean(cm));
        let b_tilde = if size > 1 { var(cm) } else { 0.0 };
        let w_tilde = chain_vars[s * size..(s + 1) * size].iter().sum::<f64>() / size as f64;
        w_sum += b_tilde + w_tilde;
    }
    let b = var(&super_means);
    let w = w_sum / k as f64;
    if w == 0.0 {
        return if b == 0.0 { 1.0 } else { f64::INFINITY };
    }
    (1.0 + b / w).sqrt()
}

/// Shortest interval holding `prob` of the draws.
pub fn hdi(x: &[f64], prob: f64) -> (f64, f64) {
    use rayon::prelude::*;
    let mut s = x.to_vec();
    s.par_sort_unstable_by(|a, b| a.total_cmp(b));
    hdi_sorted(&s, prob)
}

fn hdi_sorted(s: &[f64], prob: f64) -> (f64, f64) {
    // ArviZ's `_hdi`: intervals spanning floor(prob n) + 1 sorted draws, the first narrowest.
    let n = s.len();
    let k = ((prob * n as f64).floor() as usize).min(n - 1);
    let mut best = (s[0], s[n - 1]);
    let mut width = f64::INFINITY;
    for i in 0..n - k {
        let w = s[i + k] - s[i];
        if w < width {
            width = w;
            best = (s[i], s[i + k]);
        }
    }
    best
}

/// The columns of a summary after the parameter's name, in ArviZ's order (`summary.csv`
/// adds `nested_r_hat`).
pub const SUMMARY_COLUMNS: [&str; 9] = [
    "mean",
    "sd",
    "hdi_3%",
    "hdi_97%",
    "mcse_mean",
    "mcse_sd",
    "ess_bulk",
    "ess_tail",
    "r_hat",
];

/// One row of the summary table (ArviZ's columns, plus nested R-hat).
#[derive(Clone, Debug, serde::Serialize)]
pub struct SummaryRow {
    /// Parameter name.
    pub param: String,
    /// Posterior mean.
    pub mean: f64,
    /// Posterior sd.
    pub sd: f64,
    /// Lower end of the 94% HDI.
    #[serde(rename = "hdi_3%")]
    pub hdi_lo: f64,
    /// Upper end of the 94% HDI.
    #[serde(rename = "hdi_97%")]
    pub hdi_hi: f64,
    /// Monte Carlo standard error of the mean.
    pub mcse_mean: f64,
    /// Monte Carlo standard error of the sd.
    pub mcse_sd: f64,
    /// Bulk ESS.
    pub ess_bulk: f64,
    /// Tail ESS.
    pub ess_tail: f64,
    /// Rank-normalised split R-hat.
    pub r_hat: f64,
    /// Nested R-hat (NaN with fewer than two superchains).
    pub nested_r_hat: f64,
}

/// Summarises one parameter's draws (chains x draws). Sorts the pooled draws once: their
/// order gives the HDI, the tail quantiles and both rankings (the folded one by a merge).
pub fn summarize<C: AsRef<[f64]> + Sync>(
    name: &str,
    chains: &[C],
    superchain_size: usize,
) -> SummaryRow {
    summarize_with(name, chains, superchain_size, None)
}

/// The number of pooled split draws of `chains` chains of `draws` draws each: the size of
/// the [`NormalScores`] that [`summarize_with`] uses.
pub fn split_total(chains: usize, draws: usize) -> usize {
    chains * 2 * (draws / 2)
}

/// [`summarize`] with normal scores made once for every parameter of a run (they depend
/// only on the number of draws, [`split_total`]); others are ignored.
pub fn summarize_with<C: AsRef<[f64]> + Sync>(
    name: &str,
    chains: &[C],
    superchain_size: usize,
    scores: Option<&NormalScores>,
) -> SummaryRow {
    use rayon::prelude::*;
    let n = chains[0].as_ref().len();
    let pooled = pool(chains);
    let m = mean(&pooled);
    let sd = if pooled.len() > 1 {
        var(&pooled).sqrt()
    } else {
        0.0
    };
    let sp = split(chains);
    // With an even length the split chains pool to the same draws in the same order.
    let sorted_split = (n >= 4).then(|| {
        if n.is_multiple_of(2) {
            order(pooled.iter().copied())
        } else {
            order(pool(&sp).into_iter())
        }
    });
    let sorted_all: Vec<f64> = match &sorted_split {
        Some(s) if n.is_multiple_of(2) => s.iter().map(|x| x.0).collect(),
        _ => {
            let mut s = pooled.clone();
            s.par_sort_unstable_by(|a, b| a.total_cmp(b));
            s
        }
    };
    drop(pooled);
    let (lo, hi) = hdi_sorted(&sorted_all, 0.94);
    let (eb, et, em, rh) = if let Some(sorted) = sorted_split {
        let et = ess_tail_sorted(&sp, &sorted_all);
        drop(sorted_all);
        let own;
        let table = match scores {
            Some(t) if t.total == sorted.len() => t,
            _ => {
                own = NormalScores::new(sorted.len());
                &own
            }
        };
        let ranks = RankedSplit::new(&sp, &sorted, table);
        drop(sorted);
        let rh = if chains.len() >= 2 {
            ranks.bulk_rhat().max(ranks.folded_rhat())
        } else {
            f64::NAN
        };
        (ranks.bulk_ess(), et, ess_basic(&sp), rh)
    } else {
        (f64::NAN, f64::NAN, f64::NAN, f64::NAN)
    };
    SummaryRow {
        param: name.to_string(),
        mean: m,
        sd,
        hdi_lo: lo,
        hdi_hi: hi,
        mcse_mean: sd / em.sqrt(),
        mcse_sd: mcse_sd(chains),
        ess_bulk: eb,
        ess_tail: et,
        r_hat: rh,
        nested_r_hat: nested_rhat(chains, superchain_size.max(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Purpose, Stream};

    fn iid(chains: usize, n: usize, seed: u64) -> Vec<Vec<f64>> {
        (0..chains)
            .map(|c| {
                let s = Stream::new(seed, c as u32, 0, Purpose::Other);
                (0..n as u32).map(|i| s.normal(i)).collect()
            })
            .collect()
    }

    fn ar1(chains: usize, n: usize, phi: f64) -> Vec<Vec<f64>> {
        iid(chains, n, 9)
            .into_iter()
            .map(|e| {
                let mut x = 0.0;
                e.iter()
                    .map(|v| {
                        x = phi * x + (1.0 - phi * phi).sqrt() * v;
                        x
                    })
                    .collect()
            })
            .collect()
    }

    /// Normal scores by the definition: sort, then give ties their average rank.
    fn scores_by_sorting(x: &[f64]) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..x.len()).collect();
        idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
        let mut out = vec![0.0; x.len()];
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
                j += 1;
            }
            for &k in &idx[i..=j] {
                out[k] = blom((i + j) as f64 / 2.0 + 1.0, x.len() as f64);
            }
            i = j + 1;
        }
        out
    }

    #[test]
    fn one_sort_ranks_the_draws_and_their_folding_as_sorting_each_does() {
        // Ties, zeros of both signs and values on both sides at equal distance from the
        // median, with odd and even lengths (odd ones drop each chain's middle draw).
        let grid = [-2.0, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 2.0, 1e-300, 3.25];
        for (chains, n) in [(3usize, 5usize), (4, 8), (2, 7), (5, 4)] {
            let x: Vec<Vec<f64>> = iid(chains, n, 4)
                .iter()
                .map(|c| {
                    c.iter()
                        .map(|&v| {
                            let k = (v.abs() * 7.0) as usize;
                            if k < grid.len() {
                                grid[k]
                            } else {
                                v
                            }
                        })
                        .collect()
                })
                .collect();
            let sp = split(&x);
            let pooled = pool(&sp);
            let sorted = order(pooled.iter().copied());
            let med = median_of_sorted(&sorted);
            let ranks = RankedSplit::new(&sp, &sorted, &NormalScores::new(pooled.len()));
            assert_eq!(ranks.bulk, scores_by_sorting(&pooled), "{chains}x{n}");
            let folded: Vec<f64> = pooled.iter().map(|v| (v - med).abs()).collect();
            assert_eq!(ranks.folded, scores_by_sorting(&folded), "{chains}x{n}");
        }
        // Non-finite draws take the sorting path and still rank as sorting does.
        let x = [
            vec![1.0, f64::NAN, 2.0, -1.0],
            vec![f64::INFINITY, 0.0, 3.0, 1.0],
        ];
        let sp = split(&x);
        let pooled = pool(&sp);
        let sorted = order(pooled.iter().copied());
        let med = median_of_sorted(&sorted);
        let ranks = RankedSplit::new(&sp, &sorted, &NormalScores::new(pooled.len()));
        let folded: Vec<f64> = pooled.iter().map(|v| (v - med).abs()).collect();
        let want = scores_by_sorting(&folded);
        assert!(ranks
            .folded
            .iter()
            .zip(&want)
            .all(|(a, b)| a == b || (a.is_nan() && b.is_nan())));
    }

    #[test]
    fn iid_draws_have_full_ess_and_unit_rhat() {
        let c = iid(4, 1000, 1);
        let e = ess_bulk(&c);
        assert!((3000.0..5000.0).contains(&e), "bulk ess {e}");
        let r = rhat(&c);
        assert!(r < 1.01, "rhat {r}");
    }

    #[test]
    fn ar1_ess_matches_theory() {
        // ESS of an AR(1) with coefficient phi is N (1 - phi) / (1 + phi).
        let c = ar1(8, 4000, 0.8);
        let want = 8.0 * 4000.0 * 0.2 / 1.8;
        let e = ess_mean(&c);
        assert!((e / want - 1.0).abs() < 0.2, "ess {e} vs {want}");
    }

    #[test]
    fn shifted_chain_is_flagged() {
        let mut c = iid(4, 500, 2);
        c[3].iter_mut().for_each(|v| *v += 3.0);
        assert!(rhat(&c) > 1.1);
        assert!(nested_rhat(&c, 2) > 1.1);
    }

    #[test]
    fn hdi_of_uniform_grid() {
        let x: Vec<f64> = (0..1000).map(|i| i as f64 / 999.0).collect();
        let (lo, hi) = hdi(&x, 0.94);
        assert!((hi - lo - 0.94).abs() < 0.002, "{lo} {hi}");
    }
}
