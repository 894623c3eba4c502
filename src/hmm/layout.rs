//! The HMM's flat layouts, written once. Three vectors carry an HMM's numbers in blocks:
//! - the natural parameters ([`super::HmmParams::to_flat`]; what the GPU E-step reads):
//!   initial (K), transition (K², row-major), loc (K·D), weights (K·D·P), sds (K·D,
//!   Gaussian only);
//! - the unconstrained vector the HMM family samples (`model::hmm`): the same blocks with
//!   K − 1 free coordinates per probability vector (the last state's logit fixed at 0) and
//!   log sds;
//! - the E-step statistics ([`super::estep::Stats::to_flat`]; what the GPU E-step writes):
//!   init (K), trans (K²), xx (K·D·(P+1)²), xy (K·D·(P+1)), yy (K·D), then the log
//!   likelihood.
//!
//! Every flat vector, statistic block and generated kernel takes its offsets from
//! [`HmmLayout`].

use std::ops::Range;

use super::HmmSpec;

/// The blocks of an HMM's flat vectors for one [`HmmSpec`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HmmLayout {
    k: usize,
    d: usize,
    p: usize,
    sds: bool,
}

/// The five parameter blocks of the natural or the unconstrained vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamBlocks {
    /// Initial state distribution.
    pub initial: Range<usize>,
    /// Transition matrix, row by row.
    pub transition: Range<usize>,
    /// Emission locations, state-major (state k, dimension e at `k·D + e`).
    pub loc: Range<usize>,
    /// Emission input weights, (state, dimension)-major, P each.
    pub weights: Range<usize>,
    /// Emission sds (natural) or log sds (unconstrained); empty for Bernoulli emissions.
    pub sds: Range<usize>,
    /// Length of the vector.
    pub len: usize,
}

/// The blocks of the E-step statistics vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatBlocks {
    /// Σ γ₀(k).
    pub init: Range<usize>,
    /// Σ ξ(i, j), row-major.
    pub trans: Range<usize>,
    /// Σ γ x̃ x̃ᵀ per state and dimension, (P + 1)² each.
    pub xx: Range<usize>,
    /// Σ γ x̃ y (Gaussian) or Σ γ (y − σ(η)) x̃ (Bernoulli), P + 1 each.
    pub xy: Range<usize>,
    /// Σ γ y² per state and dimension.
    pub yy: Range<usize>,
    /// Index of the log likelihood (the last entry).
    pub loglik: usize,
    /// Length of the vector.
    pub len: usize,
}

/// Consecutive ranges of the given lengths from 0, and the end of the last.
fn consecutive<const N: usize>(lens: [usize; N]) -> ([Range<usize>; N], usize) {
    let mut at = 0;
    let ranges = lens.map(|n| {
        at += n;
        at - n..at
    });
    (ranges, at)
}

impl HmmLayout {
    /// The layout of `spec`'s vectors.
    pub fn of(spec: &HmmSpec) -> Self {
        Self {
            k: spec.k,
            d: spec.d,
            p: spec.p,
            sds: spec.has_sds(),
        }
    }

    fn blocks(&self, initial: usize, row: usize) -> ParamBlocks {
        let (k, d, p) = (self.k, self.d, self.p);
        let sds = if self.sds { k * d } else { 0 };
        let ([initial, transition, loc, weights, sds], len) =
            consecutive([initial, k * row, k * d, k * d * p, sds]);
        ParamBlocks {
            initial,
            transition,
            loc,
            weights,
            sds,
            len,
        }
    }

    /// The natural parameters' blocks.
    pub fn params(&self) -> ParamBlocks {
        self.blocks(self.k, self.k)
    }

    /// The unconstrained vector's blocks (K − 1 logits per probability vector).
    pub fn free(&self) -> ParamBlocks {
        self.blocks(self.k - 1, self.k - 1)
    }

    /// The E-step statistics' blocks.
    pub fn stats(&self) -> StatBlocks {
        let (k, d, q) = (self.k, self.d, self.p + 1);
        let ([init, trans, xx, xy, yy, ll], len) =
            consecutive([k, k * k, k * d * q * q, k * d * q, k * d, 1]);
        StatBlocks {
            init,
            trans,
            xx,
            xy,
            yy,
            loglik: ll.start,
            len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_tile_each_vector_in_order() {
        for spec in [
            HmmSpec::gaussian(3, 2).unwrap(),
            HmmSpec::new(2, super::super::EmissionKind::Bernoulli, 1, 3).unwrap(),
        ] {
            let l = HmmLayout::of(&spec);
            for b in [l.params(), l.free()] {
                let parts = [&b.initial, &b.transition, &b.loc, &b.weights, &b.sds];
                assert_eq!(parts[0].start, 0);
                for w in parts.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                assert_eq!(b.sds.end, b.len);
            }
            let (k, d, p) = (spec.k, spec.d, spec.p);
            let sds = if spec.has_sds() { k * d } else { 0 };
            assert_eq!(l.params().len, k + k * k + k * d + k * d * p + sds);
            assert_eq!(l.free().len, l.params().len - k - 1);
            let s = l.stats();
            assert_eq!(
                (s.init.start, s.yy.end, s.loglik, s.len),
                (0, s.loglik, s.len - 1, s.len)
            );
            assert_eq!(s.xx.len(), k * d * (p + 1) * (p + 1));
        }
    }
}
