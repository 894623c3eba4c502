//! The dense metric (CmdStan's `dense_e`): the triangular products the transition uses
//! with the Cholesky factor `L` of the inverse mass matrix `L Lᵀ`, the whitening that the
//! trajectory-length adaptation measures in, and the pooled within-chain covariance that
//! warmup estimates it from.
//!
//! With a dense metric the transition carries the whitened momentum `r = Lᵀ p`: it starts
//! as the standard normal draw, its kinetic energy is `|r|² / 2`, a half step adds
//! `(eps / 2) Lᵀ grad`, a position step adds `eps L r`, and the velocity `L Lᵀ p` is `L r`.
//! That is the diagonal metric's leapfrog with `L = diag(sqrt(m))`.

/// `out = Lᵀ x` for lower-triangular `l` (row-major `d` x `d`).
pub fn lt_mul(l: &[f64], x: &[f64], out: &mut [f64]) {
    let d = x.len();
    for (i, o) in out.iter_mut().enumerate() {
        *o = (i..d).map(|j| l[j * d + i] * x[j]).sum();
    }
}

/// `out = L x` for lower-triangular `l` (row-major `d` x `d`).
pub fn l_mul(l: &[f64], x: &[f64], out: &mut [f64]) {
    let d = x.len();
    for (i, o) in out.iter_mut().enumerate() {
        *o = l[i * d..i * d + i + 1]
            .iter()
            .zip(x)
            .map(|(a, b)| a * b)
            .sum();
    }
}

/// The inverse mass matrix `L Lᵀ` of the factor `l` (row-major `d` x `d`), as rows.
pub fn product(l: &[f64], d: usize) -> Vec<Vec<f64>> {
    (0..d)
        .map(|i| {
            (0..d)
                .map(|j| (0..=i.min(j)).map(|k| l[i * d + k] * l[j * d + k]).sum())
                .collect()
        })
        .collect()
}

/// `out = L⁻¹ x` (forward substitution) when `chol` holds `L`, else `x / sqrt(inv_mass)`:
/// coordinates in which the metric's posterior estimate is the identity.
pub fn whiten(inv_mass: &[f64], chol: &[f64], x: &[f64], out: &mut [f64]) {
    let d = x.len();
    if chol.is_empty() {
        for ((o, v), m) in out.iter_mut().zip(x).zip(inv_mass) {
            *o = v / m.sqrt();
        }
        return;
    }
    for i in 0..d {
        let row = &chol[i * d..i * d + i];
        let s: f64 = row.iter().zip(&out[..i]).map(|(a, b)| a * b).sum();
        out[i] = (x[i] - s) / chol[i * d + i];
    }
}

/// The pooled within-chain covariance of a dataset's chains over a window: each chain's
/// own running mean (Welford), one shared scatter matrix, so chains sitting in different
/// places do not inflate it (as the diagonal metric's mean within-chain variance).
#[derive(Clone, Debug)]
pub struct PooledCov {
    d: usize,
    count: Vec<f64>,
    mean: Vec<f64>,
    scatter: Vec<f64>,
    delta: Vec<f64>,
}

impl PooledCov {
    /// For `chains` chains of dimension `d`.
    pub fn new(chains: usize, d: usize) -> Self {
        Self {
            d,
            count: vec![0.0; chains],
            mean: vec![0.0; chains * d],
            scatter: vec![0.0; d * d],
            delta: vec![0.0; d],
        }
    }

    /// Adds chain `c`'s draw `x`.
    pub fn add(&mut self, c: usize, x: &[f64]) {
        let d = self.d;
        self.count[c] += 1.0;
        let n = self.count[c];
        let mean = &mut self.mean[c * d..(c + 1) * d];
        for ((dl, m), &v) in self.delta.iter_mut().zip(mean.iter_mut()).zip(x) {
            *dl = v - *m;
            *m += *dl / n;
        }
        // delta_i (x_j - new mean_j), lower triangle only (symmetric).
        for i in 0..d {
            let di = self.delta[i];
            for j in 0..=i {
                self.scatter[i * d + j] += di * (x[j] - mean[j]);
            }
        }
    }

    /// The pooled covariance (denominator: draws less one per chain that has any), full
    /// and symmetric, row-major.
    pub fn covariance(&self) -> Vec<f64> {
        let d = self.d;
        let dof: f64 = self.count.iter().map(|n| (n - 1.0).max(0.0)).sum();
        let mut s = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..=i {
                let v = self.scatter[i * d + j] / dof.max(1.0);
                s[i * d + j] = v;
                s[j * d + i] = v;
            }
        }
        s
    }

    /// Forgets everything.
    pub fn reset(&mut self) {
        self.count.iter_mut().for_each(|v| *v = 0.0);
        self.mean.iter_mut().for_each(|v| *v = 0.0);
        self.scatter.iter_mut().for_each(|v| *v = 0.0);
    }
}

/// Stan's regularised dense estimate from `n` pooled draws, `(n / (n + 5)) S + 1e-3 (5 /
/// (n + 5)) I`, and its Cholesky factor; `None` when it is not positive definite (fewer
/// draws than dimensions, a coordinate that never moved), and the diagonal metric serves.
pub fn regularised(cov: &[f64], d: usize, n: f64) -> Option<(Vec<f64>, Vec<f64>)> {
    let mut s: Vec<f64> = cov.iter().map(|v| (n / (n + 5.0)) * v).collect();
    for i in 0..d {
        s[i * d + i] += 1e-3 * (5.0 / (n + 5.0));
    }
    let l = crate::math::cholesky(&s, d)?;
    l.iter().all(|v| v.is_finite()).then_some((s, l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_and_whitening_invert_each_other() {
        // L = [[2, 0, 0], [1, 3, 0], [-1, 0.5, 1.5]]
        let l = [2.0, 0.0, 0.0, 1.0, 3.0, 0.0, -1.0, 0.5, 1.5];
        let x = [0.3, -1.2, 2.0];
        let near = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(u, v)| (u - v).abs() < 1e-14);
        let mut lx = [0.0; 3];
        l_mul(&l, &x, &mut lx);
        assert!(near(&lx, &[0.6, 0.3 - 3.6, -0.3 - 0.6 + 3.0]), "{lx:?}");
        let mut ltx = [0.0; 3];
        lt_mul(&l, &x, &mut ltx);
        assert!(near(&ltx, &[0.6 - 1.2 - 2.0, -3.6 + 1.0, 3.0]), "{ltx:?}");
        let mut back = [0.0; 3];
        whiten(&[], &l, &lx, &mut back);
        assert!(near(&back, &x), "{back:?}");
        whiten(&[4.0, 9.0, 1.0], &[], &x, &mut back);
        assert!(near(&back, &[0.15, -0.4, 2.0]), "{back:?}");
    }

    #[test]
    fn pooled_covariance_is_the_mean_within_chain_covariance() {
        // Two chains, far apart: the pooled estimate ignores the distance between them.
        let a = [[1.0, 2.0], [2.0, 1.0], [3.0, 3.5], [0.0, 0.5]];
        let b = [
            [101.0, -50.0],
            [99.0, -52.0],
            [100.0, -49.0],
            [104.0, -47.0],
        ];
        let mut p = PooledCov::new(2, 2);
        for (x, y) in a.iter().zip(&b) {
            p.add(0, x);
            p.add(1, y);
        }
        let cov = |xs: &[[f64; 2]], i: usize, j: usize| {
            let m = |k: usize| xs.iter().map(|x| x[k]).sum::<f64>() / 4.0;
            xs.iter()
                .map(|x| (x[i] - m(i)) * (x[j] - m(j)))
                .sum::<f64>()
                / 3.0
        };
        let s = p.covariance();
        for (i, j) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            let want = (cov(&a, i, j) + cov(&b, i, j)) / 2.0;
            assert!((s[i * 2 + j] - want).abs() < 1e-12, "{i},{j}");
        }
        // Rank-deficient (one draw per chain): only the regularisation is left, and it is
        // positive definite.
        let mut q = PooledCov::new(2, 2);
        q.add(0, &[1.0, 2.0]);
        let (s, l) = regularised(&q.covariance(), 2, 1.0).unwrap();
        assert!(s[1] == 0.0 && l[0] > 0.0);
        assert!(regularised(&[1.0, 2.0, 2.0, 1.0], 2, 100.0).is_none());
        let (s, l) = regularised(&[4.0, 1.2, 1.2, 9.0], 2, 100.0).unwrap();
        let back = product(&l, 2).concat();
        assert!(
            back.iter().zip(&s).all(|(a, b)| (a - b).abs() < 1e-12),
            "{back:?}"
        );
    }
}
