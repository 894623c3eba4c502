//! Scalar math shared by the CPU kernels: branch-free `exp` and `ln` for `f64` that the
//! compiler can vectorise (libm calls inside a loop stop vectorisation), stable `log1p`-type
//! helpers, `lgamma`, and the sentinel for "log density = -inf".

/// The finite value both backends report for a log density of -inf (or NaN): close to
/// `-f32::MAX`, so it survives the trip through f32 on the GPU. Samplers treat it as a
/// divergence.
pub const LOGP_NEG_INF: f64 = -3.0e38;

/// The largest gradient magnitude reported; larger (and infinite) entries are clamped to it.
pub const GRAD_MAX: f64 = 3.0e38;

/// For the Poisson log link, `exp(eta)` is continued linearly beyond this point, so that the
/// rate and its derivative stay finite in f32 (exp(80) = 5.5e34).
pub const POISSON_ETA_MAX: f64 = 80.0;

const LOG2E: f64 = std::f64::consts::LOG2_E;
const LN2_HI: f64 = 6.931_471_803_691_238e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
const ROUND_MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52

/// The instruction sets the hot CPU loops are compiled for; [`simd`] says which this
/// processor runs. Every tier computes the same bits: the kernels fix their lane layout and
/// summation order in code and fuse a multiply-add only where they write `mul_add`, so the
/// vector width changes the speed, not the result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Simd {
    /// Whatever the target's baseline allows (SSE2 on x86-64).
    Portable,
    /// AVX2 and FMA: 4 f64 or 8 f32 lanes.
    Avx2,
    /// AVX-512 (F, VL, DQ, BW) with FMA: 8 f64 or 16 f32 lanes.
    Avx512,
}

impl Simd {
    /// Lanes of one vector register of `f64` at this tier.
    pub fn f64_lanes(self) -> usize {
        match self {
            Simd::Portable => 2,
            Simd::Avx2 => 4,
            Simd::Avx512 => 8,
        }
    }

    /// The tier's name: `portable`, `avx2` or `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            Simd::Portable => "portable",
            Simd::Avx2 => "avx2",
            Simd::Avx512 => "avx512",
        }
    }
}

/// Runs a block compiled three times, with AVX-512, with AVX2 and FMA, and portably, choosing
/// at run time by `$simd` (a [`Simd`], usually [`simd`]): the one way the hot CPU kernels get
/// their SIMD twins. The block sees only its named arguments (`name: Type = value`), which
/// become the parameters of inner `#[target_feature]` functions:
/// `simd_dispatch!(simd(), (a: &[f64] = xs, n: usize = 4) -> f64 { body(a, n) })`, optionally
/// generic over one type parameter named before the arguments (`<R: Real>`, which must be in
/// scope at the call site); whatever it calls must be `#[inline(always)]` for the features to
/// reach it (a closure handed to another function, such as `LocalKey::with`, would be compiled
/// without them).
macro_rules! simd_dispatch {
    ($simd:expr, $(<$g:ident : $bound:path>)? ( $($arg:ident : $ty:ty = $val:expr),* $(,)? ) -> $ret:ty $body:block) => {{
        #[inline(always)]
        #[allow(clippy::too_many_arguments)]
        fn portable$(<$g: $bound>)?($($arg: $ty),*) -> $ret $body
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn avx2$(<$g: $bound>)?($($arg: $ty),*) -> $ret {
            portable$(::<$g>)?($($arg),*)
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn avx512$(<$g: $bound>)?($($arg: $ty),*) -> $ret {
            portable$(::<$g>)?($($arg),*)
        }
        #[cfg(target_arch = "x86_64")]
        let out = match $simd {
            // SAFETY: `simd()` reports a tier only when the processor has its features.
            $crate::math::Simd::Avx512 => unsafe { avx512$(::<$g>)?($($val),*) },
            // SAFETY: as above.
            $crate::math::Simd::Avx2 => unsafe { avx2$(::<$g>)?($($val),*) },
            $crate::math::Simd::Portable => portable$(::<$g>)?($($val),*),
        };
        #[cfg(not(target_arch = "x86_64"))]
        let out = {
            let _: $crate::math::Simd = $simd;
            portable$(::<$g>)?($($val),*)
        };
        out
    }};
}
pub(crate) use simd_dispatch;

/// `len` values of `buf` (grown as needed) that start on a cache line (64 bytes), so that
/// rows of a multiple of 8 lanes laid out from there do not straddle two lines with each
/// vector access: the Stan kernel's rows at 256 lanes ran 20% faster aligned.
pub fn aligned(buf: &mut Vec<f64>, len: usize) -> &mut [f64] {
    const LINE: usize = 64 / std::mem::size_of::<f64>();
    if buf.len() < len + LINE - 1 {
        buf.resize(len + LINE - 1, 0.0);
    }
    let skip = buf.as_ptr().align_offset(64).min(LINE - 1);
    &mut buf[skip..skip + len]
}

/// The best [`Simd`] tier this processor runs (checked once). The environment variable
/// `GPSAMP_SIMD=avx2` or `=portable` caps it, to compare tiers on one machine.
pub fn simd() -> Simd {
    static LEVEL: std::sync::OnceLock<Simd> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        let best = detect();
        match std::env::var("GPSAMP_SIMD").ok().as_deref() {
            Some("portable") => Simd::Portable,
            Some("avx2") if best == Simd::Avx512 => Simd::Avx2,
            _ => best,
        }
    })
}

fn detect() -> Simd {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        let avx512 = avx2
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512dq")
            && is_x86_feature_detected!("avx512bw");
        if avx512 {
            Simd::Avx512
        } else if avx2 {
            Simd::Avx2
        } else {
            Simd::Portable
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Simd::Portable
    }
}

/// `e^x`, branch-free, within a few ulp over [-708, 709]; arguments outside are clamped
/// (so `exp(-inf)` is about 1e-308, not 0). NaN stays NaN.
#[inline(always)]
pub fn exp(x: f64) -> f64 {
    // clamp passes NaN through.
    let xc = x.clamp(-708.0, 709.0);
    let t = xc.mul_add(LOG2E, ROUND_MAGIC);
    let n = t - ROUND_MAGIC;
    let r = n.mul_add(-LN2_HI, xc);
    let r = n.mul_add(-LN2_LO, r);
    // Taylor series of degree 13 on |r| <= ln2/2: truncation error below 1e-17.
    let mut p: f64 = 1.0 / 6_227_020_800.0;
    p = p.mul_add(r, 1.0 / 479_001_600.0);
    p = p.mul_add(r, 1.0 / 39_916_800.0);
    p = p.mul_add(r, 1.0 / 3_628_800.0);
    p = p.mul_add(r, 1.0 / 362_880.0);
    p = p.mul_add(r, 1.0 / 40_320.0);
    p = p.mul_add(r, 1.0 / 5_040.0);
    p = p.mul_add(r, 1.0 / 720.0);
    p = p.mul_add(r, 1.0 / 120.0);
    p = p.mul_add(r, 1.0 / 24.0);
    p = p.mul_add(r, 1.0 / 6.0);
    p = p.mul_add(r, 0.5);
    p = p.mul_add(r, 1.0);
    p = p.mul_add(r, 1.0);
    let scale = f64::from_bits((t.to_bits().wrapping_add(1023)) << 52);
    p * scale
}

/// A positive, normal `x` as its significand in [1, 2) and its binary exponent, read from
/// its bits: `x` is exactly `m × 2^e`.
#[inline(always)]
pub fn significand_exponent(x: f64) -> (f64, i64) {
    let bits = x.to_bits();
    let e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    (m, e)
}

/// Natural log of a positive, normal `x`, branch-free (atanh series on a mantissa in
/// [sqrt(1/2), sqrt(2))). Zero, negative, subnormal and non-finite inputs are outside its
/// domain; the callers only pass values >= 1.
#[inline(always)]
pub fn ln(x: f64) -> f64 {
    let (m, e) = significand_exponent(x);
    let big = m > std::f64::consts::SQRT_2;
    let m = if big { m * 0.5 } else { m };
    let e = (e + i64::from(big)) as f64;
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut p: f64 = 1.0 / 21.0;
    p = p.mul_add(s2, 1.0 / 19.0);
    p = p.mul_add(s2, 1.0 / 17.0);
    p = p.mul_add(s2, 1.0 / 15.0);
    p = p.mul_add(s2, 1.0 / 13.0);
    p = p.mul_add(s2, 1.0 / 11.0);
    p = p.mul_add(s2, 1.0 / 9.0);
    p = p.mul_add(s2, 1.0 / 7.0);
    p = p.mul_add(s2, 1.0 / 5.0);
    p = p.mul_add(s2, 1.0 / 3.0);
    p = p.mul_add(s2, 1.0);
    e.mul_add(LN2_HI, (2.0 * s).mul_add(p, e * LN2_LO))
}

const LOG2E_F32: f32 = std::f32::consts::LOG2_E;
const LN2_HI_F32: f32 = 0.693_145_75; // 16 significant bits: n * LN2_HI_F32 is exact
const LN2_LO_F32: f32 = 1.428_606_8e-6;
const ROUND_MAGIC_F32: f32 = 12_582_912.0; // 1.5 * 2^23

/// `e^x` in f32, branch-free, within 2 ulp over [-87, 88]; arguments outside are clamped (so
/// `exp_f32(-inf)` is about 1.6e-38, not 0). NaN stays NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    let xc = x.clamp(-87.0, 88.0);
    let t = xc.mul_add(LOG2E_F32, ROUND_MAGIC_F32);
    let n = t - ROUND_MAGIC_F32;
    let r = n.mul_add(-LN2_HI_F32, xc);
    let r = n.mul_add(-LN2_LO_F32, r);
    // Taylor series of degree 7 on |r| <= ln2/2: truncation error below 6e-9.
    let mut p: f32 = 1.0 / 5_040.0;
    p = p.mul_add(r, 1.0 / 720.0);
    p = p.mul_add(r, 1.0 / 120.0);
    p = p.mul_add(r, 1.0 / 24.0);
    p = p.mul_add(r, 1.0 / 6.0);
    p = p.mul_add(r, 0.5);
    p = p.mul_add(r, 1.0);
    p = p.mul_add(r, 1.0);
    let scale = f32::from_bits((t.to_bits().wrapping_add(127)) << 23);
    p * scale
}

/// Natural log in f32 of a positive, normal `x`, branch-free (the atanh series of [`ln`]);
/// the same domain as [`ln`].
#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    let bits = x.to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 127;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let big = m > std::f32::consts::SQRT_2;
    let m = if big { m * 0.5 } else { m };
    let e = (e + i32::from(big)) as f32;
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut p: f32 = 1.0 / 9.0;
    p = p.mul_add(s2, 1.0 / 7.0);
    p = p.mul_add(s2, 1.0 / 5.0);
    p = p.mul_add(s2, 1.0 / 3.0);
    p = p.mul_add(s2, 1.0);
    e.mul_add(LN2_HI_F32, (2.0 * s).mul_add(p, e * LN2_LO_F32))
}

/// The floating-point type a CPU kernel computes in: `f64` (the reference) or `f32` (twice
/// the lanes). Kernels written once over `R: Real` sum per-lane partials in `R` and, when
/// [`Real::WIDEN_SUMS`] says so, fold them into `f64` every few blocks, which keeps an f32 log
/// density accurate over millions of points.
pub trait Real:
    Copy
    + PartialOrd
    + std::fmt::Debug
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + std::ops::AddAssign
    + std::ops::MulAssign
    + bytemuck::Pod
    + Send
    + Sync
    + 'static
{
    /// Whether lane partial sums are folded into `f64` (false for `f64` itself, whose
    /// kernels keep the summation order they have always had).
    const WIDEN_SUMS: bool;
    /// Zero.
    const ZERO: Self;
    /// One.
    const ONE: Self;
    /// Rounds an `f64` to this type.
    fn of(v: f64) -> Self;
    /// Widens to `f64`.
    fn wide(self) -> f64;
    /// `self * a + b` with one rounding.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// The larger of two values (as `f64::max`).
    fn max(self, o: Self) -> Self;
    /// The smaller of two values (as `f64::min`).
    fn min(self, o: Self) -> Self;
    /// Absolute value.
    fn abs(self) -> Self;
    /// [`exp`] or [`exp_f32`].
    fn exp(self) -> Self;
    /// [`ln`] or [`ln_f32`].
    fn ln(self) -> Self;
    /// The data columns of `data` in this type.
    fn columns(data: &crate::data::DataBatch) -> (&[Self], &[Self]);
}

impl Real for f64 {
    const WIDEN_SUMS: bool = false;
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn of(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn wide(self) -> f64 {
        self
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        f64::mul_add(self, a, b)
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        f64::max(self, o)
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        f64::min(self, o)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        f64::abs(self)
    }
    #[inline(always)]
    fn exp(self) -> Self {
        exp(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        ln(self)
    }
    #[inline(always)]
    fn columns(data: &crate::data::DataBatch) -> (&[Self], &[Self]) {
        (data.x(), data.y())
    }
}

impl Real for f32 {
    const WIDEN_SUMS: bool = true;
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn of(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn wide(self) -> f64 {
        f64::from(self)
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        f32::mul_add(self, a, b)
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        f32::max(self, o)
    }
    #[inline(always)]
    fn min(self, o: Self) -> Self {
        f32::min(self, o)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        f32::abs(self)
    }
    #[inline(always)]
    fn exp(self) -> Self {
        exp_f32(self)
    }
    #[inline(always)]
    fn ln(self) -> Self {
        ln_f32(self)
    }
    #[inline(always)]
    fn columns(data: &crate::data::DataBatch) -> (&[Self], &[Self]) {
        data.columns_f32()
    }
}

/// `log(sum(exp(v)))` without overflow; `-inf` for an empty slice or all `-inf`.
pub fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + v.iter().map(|&x| (x - m).exp()).sum::<f64>().ln()
}

/// `log(1 + e^x)` computed without overflow.
#[inline(always)]
pub fn softplus(x: f64) -> f64 {
    x.max(0.0) + ln(1.0 + exp(-x.abs()))
}

/// `1 / (1 + e^-x)` computed without overflow.
#[inline(always)]
pub fn sigmoid(x: f64) -> f64 {
    let e = exp(-x.abs());
    let r = 1.0 / (1.0 + e);
    if x >= 0.0 {
        r
    } else {
        e * r
    }
}

/// Natural log of the gamma function (for normalising constants; not in hot loops).
pub fn lgamma(x: f64) -> f64 {
    statrs::function::gamma::ln_gamma(x)
}

/// Maps a log density and its gradient to finite numbers: a non-finite log density becomes
/// [`LOGP_NEG_INF`] with a zero gradient; non-finite gradient entries are clamped (NaN to 0).
pub fn sanitize(logp: f64, grad: &mut [f64]) -> f64 {
    if !logp.is_finite() || logp < LOGP_NEG_INF {
        grad.iter_mut().for_each(|g| *g = 0.0);
        return LOGP_NEG_INF;
    }
    for g in grad.iter_mut() {
        *g = if g.is_nan() {
            0.0
        } else {
            g.clamp(-GRAD_MAX, GRAD_MAX)
        };
    }
    logp
}

/// Adam (Kingma & Ba), the one copy every engine uses: MDN training (f32, on the CPU and,
/// through [`Adam::scaled`], for the GPU kernel's step), HMC's initial ascent and ChEES's
/// trajectory length (f64). A step moves each parameter by `lr · m̂ / (√v̂ + ε)` with the
/// bias-corrected moments, computed as `s · m / (√v + ε√c₂)` with `s = lr √c₂ / c₁`.
#[derive(Clone, Debug)]
pub struct Adam<F> {
    m: Vec<F>,
    v: Vec<F>,
    t: u32,
    /// First-moment decay.
    pub beta1: F,
    /// Second-moment decay.
    pub beta2: F,
    /// Denominator guard.
    pub eps: F,
}

impl<F: num_traits::Float> Adam<F> {
    /// Zero state for `n` parameters with the usual decays (0.9, 0.999) and guard 1e-8.
    pub fn new(n: usize) -> Self {
        let c = |x: f64| F::from(x).unwrap_or_else(F::zero);
        Self::with(n, c(0.9), c(0.999), c(1e-8))
    }

    /// Zero state for `n` parameters with the given decays and guard.
    pub fn with(n: usize, beta1: F, beta2: F, eps: F) -> Self {
        Self {
            m: vec![F::zero(); n],
            v: vec![F::zero(); n],
            t: 0,
            beta1,
            beta2,
            eps,
        }
    }

    /// Steps taken.
    pub fn steps(&self) -> u32 {
        self.t
    }

    /// Counts one step without moments (a caller whose moments live elsewhere: the GPU).
    pub fn tick(&mut self) {
        self.t += 1;
    }

    /// The current step's scale `lr √c₂ / c₁` and guard `ε √c₂`, with the bias corrections
    /// `c = 1 − βᵗ`.
    pub fn scaled(&self, lr: F) -> (F, F) {
        let t = self.t as i32;
        let c1 = F::one() - self.beta1.powi(t);
        let c2 = F::one() - self.beta2.powi(t);
        (lr * c2.sqrt() / c1, self.eps * c2.sqrt())
    }

    /// Updates the moments with `grad` and hands each parameter's step at rate 1,
    /// `m̂ / (√v̂ + ε)`, to `apply(index, step)` (add it for ascent, subtract for descent).
    pub fn directions(&mut self, grad: &[F], mut apply: impl FnMut(usize, F)) {
        self.tick();
        let (s, eps_hat) = self.scaled(F::one());
        let (b1, b2) = (self.beta1, self.beta2);
        for (i, ((g, m), v)) in grad.iter().zip(&mut self.m).zip(&mut self.v).enumerate() {
            *m = b1 * *m + (F::one() - b1) * *g;
            *v = b2 * *v + (F::one() - b2) * *g * *g;
            apply(i, s * *m / (v.sqrt() + eps_hat));
        }
    }

    /// One descent step of size `lr` against `grad`.
    pub fn step(&mut self, params: &mut [F], grad: &[F], lr: F) {
        self.tick();
        let (step, eps_hat) = self.scaled(lr);
        let (b1, b2) = (self.beta1, self.beta2);
        for (((p, g), m), v) in params
            .iter_mut()
            .zip(grad)
            .zip(self.m.iter_mut())
            .zip(self.v.iter_mut())
        {
            *m = b1 * *m + (F::one() - b1) * *g;
            *v = b2 * *v + (F::one() - b2) * *g * *g;
            *p = *p - step * *m / (v.sqrt() + eps_hat);
        }
    }
}

/// The lower Cholesky factor of a symmetric positive-definite `k`x`k` matrix (row-major), or
/// `None` when it is not (a pivot that is not positive).
pub fn cholesky(a: &[f64], k: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..=i {
            let s = a[i * k + j] - (0..j).map(|m| l[i * k + m] * l[j * k + m]).sum::<f64>();
            if i == j {
                if s.is_nan() || s <= 0.0 {
                    return None;
                }
                l[i * k + i] = s.sqrt();
            } else {
                l[i * k + j] = s / l[j * k + j];
            }
        }
    }
    Some(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f64, b: f64) -> f64 {
        ((a - b) / b).abs()
    }

    /// Aligned scratch starts on a cache line and has the length asked for, however the
    /// buffer was allocated and whatever it held.
    #[test]
    fn aligned_scratch_starts_on_a_cache_line() {
        for start in 0..8 {
            let mut buf = vec![1.0; start];
            for len in [0, 1, 7, 256, 1000] {
                let s = aligned(&mut buf, len);
                assert_eq!(s.len(), len);
                assert_eq!(s.as_ptr() as usize % 64, 0, "start {start} len {len}");
            }
        }
    }

    #[test]
    fn exp_matches_libm() {
        let mut worst: f64 = 0.0;
        let mut x = -700.0;
        while x < 700.0 {
            worst = worst.max(rel(exp(x), x.exp()));
            x += 0.0137;
        }
        assert!(worst < 4e-16, "worst relative error {worst}");
        assert!(exp(f64::NEG_INFINITY) > 0.0 && exp(f64::NEG_INFINITY) < 1e-300);
        assert!(exp(f64::NAN).is_nan());
    }

    #[test]
    fn ln_matches_libm() {
        let mut worst: f64 = 0.0;
        let mut x = 1e-300;
        while x < 1e300 {
            worst = worst.max((ln(x) - x.ln()).abs() / x.ln().abs().max(1.0));
            x *= 1.0173;
        }
        for i in 0..10_000 {
            let x = 1.0 + f64::from(i) * 1e-4;
            worst = worst.max((ln(x) - x.ln()).abs() / x.ln().abs().max(1e-300));
        }
        // A few ulp (the atanh series plus the e*ln2 sum).
        assert!(worst < 1e-15, "worst relative error {worst}");
    }

    #[test]
    fn exp_f32_and_ln_f32_match_libm() {
        // exp: relative to f64's exp, over the unclamped range (measured worst 6.8e-8).
        let (mut worst_exp, mut x) = (0.0f64, -87.0f32);
        while x < 88.0 {
            let want = f64::from(x).exp();
            worst_exp = worst_exp.max(((f64::from(exp_f32(x)) - want) / want).abs());
            x += 0.0137;
        }
        assert!(
            worst_exp < f64::from(f32::EPSILON),
            "exp_f32: {worst_exp:e}"
        );
        assert!(exp_f32(f32::NEG_INFINITY) > 0.0 && exp_f32(f32::NEG_INFINITY) < 1e-37);
        assert!(exp_f32(f32::NAN).is_nan());
        // ln: absolute near 1 (where the value is near 0), relative elsewhere (worst 8.0e-8).
        let (mut worst_ln, mut x) = (0.0f64, 1e-37f32);
        while x < 1e38 {
            let want = f64::from(x).ln();
            worst_ln = worst_ln.max((f64::from(ln_f32(x)) - want).abs() / want.abs().max(1.0));
            x *= 1.0173;
        }
        for i in 0..10_000 {
            let x = 1.0 + i as f32 * 1e-4;
            let want = f64::from(x).ln();
            worst_ln = worst_ln.max((f64::from(ln_f32(x)) - want).abs() / want.abs().max(1.0));
        }
        assert!(worst_ln < f64::from(f32::EPSILON), "ln_f32: {worst_ln:e}");
    }

    #[test]
    fn softplus_and_sigmoid_are_stable() {
        for &x in &[-800.0f64, -40.0, -1.0, 0.0, 0.5, 40.0, 800.0] {
            let want = if x > 30.0 { x } else { x.exp().ln_1p() };
            assert!(rel(softplus(x), want.max(1e-300)) < 1e-12 || softplus(x) < 1e-300);
            let s = sigmoid(x);
            assert!((0.0..=1.0).contains(&s));
            assert!((s - 1.0 / (1.0 + (-x).exp())).abs() < 1e-15);
        }
    }

    #[test]
    fn sanitize_maps_nonfinite() {
        let mut g = [f64::NAN, f64::INFINITY, -1.0];
        assert_eq!(sanitize(1.0, &mut g), 1.0);
        assert_eq!(g, [0.0, GRAD_MAX, -1.0]);
        let mut g = [1.0, 2.0];
        assert_eq!(sanitize(f64::NEG_INFINITY, &mut g), LOGP_NEG_INF);
        assert_eq!(g, [0.0, 0.0]);
        assert_eq!(sanitize(f64::NAN, &mut g), LOGP_NEG_INF);
    }
}
