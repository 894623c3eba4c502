//! Label alignment for mixtures: each chain's components are matched to a reference by the
//! Hungarian algorithm on the distance between their posterior means.

/// Minimum-cost perfect assignment of an n x n cost matrix: `perm[i]` is the column given to
/// row `i` (the O(n^3) potentials method).
pub fn hungarian(cost: &[Vec<f64>]) -> Vec<usize> {
    let n = cost.len();
    let inf = f64::INFINITY;
    let (mut u, mut v) = (vec![0.0; n + 1], vec![0.0; n + 1]);
    let (mut p, mut way) = (vec![0usize; n + 1], vec![0usize; n + 1]);
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![inf; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = inf;
            let mut j1 = 0;
            for j in 1..=n {
                if !used[j] {
                    let cur = cost[i0 - 1][j - 1] - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut perm = vec![0; n];
    for j in 1..=n {
        if p[j] > 0 {
            perm[p[j] - 1] = j - 1;
        }
    }
    perm
}

/// Per-chain permutations aligning mixture components to a common labelling.
///
/// `means[c][i]` is chain `c`'s posterior mean of constrained parameter `i`, `scale[i]` a
/// spread to standardise by, and `groups[k]` the parameter indices of component `k` (same
/// order for every component). The result `perm[c][k]` is the component of chain `c` that
/// becomes component `k`. Chain 0 is the first reference; a second round aligns to the
/// pooled aligned means.
pub fn align_chains(means: &[Vec<f64>], scale: &[f64], groups: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let k = groups.len();
    let mut reference = means[0].clone();
    let mut perms = vec![(0..k).collect::<Vec<_>>(); means.len()];
    for _round in 0..2 {
        for (c, m) in means.iter().enumerate() {
            let cost: Vec<Vec<f64>> = (0..k)
                .map(|target| {
                    (0..k)
                        .map(|src| {
                            groups[target]
                                .iter()
                                .zip(&groups[src])
                                .map(|(&t, &s)| {
                                    ((m[s] - reference[t]) / scale[t].max(1e-12)).powi(2)
                                })
                                .sum()
                        })
                        .collect()
                })
                .collect();
            perms[c] = hungarian(&cost);
        }
        // New reference: the mean of the aligned chain means.
        let mut acc = vec![0.0; reference.len()];
        for (m, p) in means.iter().zip(&perms) {
            let a = apply(m, p, groups);
            acc.iter_mut()
                .zip(&a)
                .for_each(|(x, v)| *x += v / means.len() as f64);
        }
        reference = acc;
    }
    perms
}

/// Applies a component permutation to one constrained parameter vector.
pub fn apply(x: &[f64], perm: &[usize], groups: &[Vec<usize>]) -> Vec<f64> {
    let mut out = x.to_vec();
    for (k, g) in groups.iter().enumerate() {
        for (i, &dst) in g.iter().enumerate() {
            out[dst] = x[groups[perm[k]][i]];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hungarian_finds_the_optimum() {
        let cost = vec![
            vec![4.0, 1.0, 3.0],
            vec![2.0, 0.0, 5.0],
            vec![3.0, 2.0, 2.0],
        ];
        let p = hungarian(&cost);
        let total: f64 = p.iter().enumerate().map(|(i, &j)| cost[i][j]).sum();
        assert_eq!(total, 5.0); // 1 + 2 + 2
        let mut s = p.clone();
        s.sort();
        assert_eq!(s, vec![0, 1, 2]);
    }

    #[test]
    fn swapped_chain_is_realigned() {
        // Params: [w0, w1, mu0, mu1]; groups: component 0 = [0, 2], component 1 = [1, 3].
        let groups = vec![vec![0, 2], vec![1, 3]];
        let a = vec![0.7, 0.3, 0.0, 4.0];
        let b = vec![0.3, 0.7, 4.0, 0.0];
        let perms = align_chains(
            &[a.clone(), b.clone(), a.clone()],
            &[0.1, 0.1, 1.0, 1.0],
            &groups,
        );
        assert_eq!(perms[0], vec![0, 1]);
        assert_eq!(perms[1], vec![1, 0]);
        assert_eq!(apply(&b, &perms[1], &groups), a);
    }
}
