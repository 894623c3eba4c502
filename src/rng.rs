//! Counter-based random numbers: Philox4x32-10 (Salmon et al. 2011), the twin of
//! `shaders/common/philox.wgsl`.
//!
//! A stream is keyed by the 64-bit seed and counted by `(chain, iteration, purpose, index)`,
//! so no generator state lives anywhere: any draw can be recomputed from its coordinates,
//! and results do not depend on thread count or schedule. The CPU and GPU produce
//! bit-identical `u32` words (tests prove it with the Random123 known-answer vectors);
//! uniforms and normals come from those words by one fixed method on both sides.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

#[inline(always)]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = u64::from(a) * u64::from(b);
    ((p >> 32) as u32, p as u32)
}

/// The Philox4x32 bijection with 10 rounds: four counter words under a two-word key.
#[inline]
pub fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (ctr, key);
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        let (hi0, lo0) = mulhilo(M0, c[0]);
        let (hi1, lo1) = mulhilo(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// What a block of random numbers is for; part of the counter so that streams never overlap.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Momentum refresh at the start of an HMC transition.
    Momentum = 0,
    /// The Metropolis accept/reject uniform.
    Accept = 1,
    /// Initial positions.
    Init = 2,
    /// Simulation of data and parameters.
    Simulate = 3,
    /// Anything else (tests, jitter).
    Other = 4,
    /// Posterior predictive replicates (`y_rep.npy`, `gpsamp predict`).
    Predict = 5,
}

/// A stream address: four Philox words for each `index` at fixed `(seed, chain, iteration,
/// purpose)`.
#[derive(Clone, Copy, Debug)]
pub struct Stream {
    key: [u32; 2],
    chain: u32,
    iteration: u32,
    purpose: u32,
}

impl Stream {
    /// The stream of `chain` at `iteration` for `purpose`, under `seed`.
    pub fn new(seed: u64, chain: u32, iteration: u32, purpose: Purpose) -> Self {
        Self {
            key: [seed as u32, (seed >> 32) as u32],
            chain,
            iteration,
            purpose: purpose as u32,
        }
    }

    /// The four words of block `index`.
    #[inline]
    pub fn block(&self, index: u32) -> [u32; 4] {
        philox4x32_10([self.chain, self.iteration, self.purpose, index], self.key)
    }

    /// Uniform `f64` number `i` of this stream, in (0, 1).
    #[inline]
    pub fn uniform(&self, i: u32) -> f64 {
        u32_to_uniform(self.block(i / 4)[(i % 4) as usize])
    }

    /// Standard normal number `i` of this stream (Box-Muller on the block's words).
    ///
    /// Normal `i` uses block `i / 2`: words 0,1 give normal `2b`, words 2,3 give `2b + 1`.
    #[inline]
    pub fn normal(&self, i: u32) -> f64 {
        let w = self.block(i / 2);
        let (a, b) = if i.is_multiple_of(2) {
            (w[0], w[1])
        } else {
            (w[2], w[3])
        };
        box_muller(u32_to_uniform(a), u32_to_uniform(b))
    }
}

/// Maps a word to the open interval (0, 1): the top 23 bits plus half a step, a value that
/// f32 (24-bit significand) and f64 both represent exactly, so both sides agree bit for bit.
#[inline]
pub fn u32_to_uniform(x: u32) -> f64 {
    (f64::from(x >> 9) + 0.5) * (1.0 / 8_388_608.0)
}

/// One standard normal from two uniforms in (0, 1): `sqrt(-2 ln u1) cos(2 pi u2)`.
#[inline]
pub fn box_muller(u1: f64, u2: f64) -> f64 {
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A conventional `rand` generator seeded from a Philox stream, for host-side simulation
/// where a sequential generator is convenient (datasets from the prior, test inputs).
pub fn host_rng(seed: u64, index: u64, purpose: Purpose) -> rand::rngs::StdRng {
    stream_rng(seed, index as u32, (index >> 32) as u32, purpose)
}

/// A conventional `rand` generator seeded from the Philox stream of `(seed, chain,
/// iteration, purpose)`: the draws of chain `chain` at `iteration` depend on nothing else.
pub fn stream_rng(seed: u64, chain: u32, iteration: u32, purpose: Purpose) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    let s = Stream::new(seed, chain, iteration, purpose);
    let mut bytes = [0u8; 32];
    for b in 0..2 {
        for (w, word) in s.block(b).iter().enumerate() {
            let o = (b as usize * 4 + w) * 4;
            bytes[o..o + 4].copy_from_slice(&word.to_le_bytes());
        }
    }
    rand::rngs::StdRng::from_seed(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random123's kat_vectors for philox4x32_10.
    pub(crate) const KAT: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
        (
            [0, 0, 0, 0],
            [0, 0],
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8],
        ),
        (
            [0xffff_ffff; 4],
            [0xffff_ffff; 2],
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd],
        ),
        (
            [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
            [0xa409_3822, 0x299f_31d0],
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1],
        ),
    ];

    #[test]
    fn philox_known_answers() {
        for (ctr, key, want) in KAT {
            assert_eq!(philox4x32_10(ctr, key), want, "ctr {ctr:x?} key {key:x?}");
        }
    }

    #[test]
    fn uniforms_are_open_and_normals_are_standard() {
        let s = Stream::new(42, 3, 7, Purpose::Other);
        let n = 200_000u32;
        let (mut m, mut v) = (0.0, 0.0);
        for i in 0..n {
            let u = s.uniform(i);
            assert!(u > 0.0 && u < 1.0);
            let z = s.normal(i);
            m += z;
            v += z * z;
        }
        let m = m / f64::from(n);
        let v = v / f64::from(n) - m * m;
        // 5 standard errors: sd of the mean is 1/sqrt(n), of the variance sqrt(2/n).
        assert!(m.abs() < 5.0 / f64::from(n).sqrt(), "mean {m}");
        assert!(
            (v - 1.0).abs() < 5.0 * (2.0 / f64::from(n)).sqrt(),
            "var {v}"
        );
    }

    #[test]
    fn streams_differ_by_every_coordinate() {
        let base = Stream::new(1, 0, 0, Purpose::Momentum).block(0);
        assert_ne!(base, Stream::new(2, 0, 0, Purpose::Momentum).block(0));
        assert_ne!(base, Stream::new(1, 1, 0, Purpose::Momentum).block(0));
        assert_ne!(base, Stream::new(1, 0, 1, Purpose::Momentum).block(0));
        assert_ne!(base, Stream::new(1, 0, 0, Purpose::Accept).block(0));
        assert_ne!(base, Stream::new(1, 0, 0, Purpose::Momentum).block(1));
    }
}
