//! The f32 CPU kernels (`--precision f32`) against the f64 reference: agreement to f32
//! accuracy on random inputs for every family shape (the fixed-shape and the general kernel,
//! partial blocks, fold boundaries), the same bits on the SIMD and portable paths, and the
//! log density's error at N = 10^6 points (`tests/gradients.rs` checks both precisions at
//! extreme positions).
//!
//! `cargo test --release --test precision -- --nocapture` prints the measured errors.

mod common;

use common::{data_for, families, positions, rel_norm};
use gpsamp::backend::{CpuEvaluator, Evaluator, Precision};
use gpsamp::{Likelihood, MixGlm, Model, Priors};

/// Sizes that cover one point, a partial block, exact blocks, a fold boundary (16 blocks of
/// 32) and several folds with a partial tail.
const SIZES: [usize; 6] = [1, 7, 32, 512, 545, 4099];

#[test]
fn f32_kernels_agree_with_f64_to_f32_accuracy() {
    let (mut worst_lp, mut worst_g) = (0.0f64, 0.0f64);
    for m in families() {
        let (data, truths) = data_for(&m, &SIZES, 5);
        let theta = positions(&m, &truths, 3, 0.5, 6);
        let d = m.dim();
        let (mut g64, mut g32) = (vec![0.0; d], vec![0.0; d]);
        let mut s = Vec::new();
        for (c, th) in theta.chunks(d).enumerate() {
            let b = c / 3;
            let n = SIZES[b] as f64;
            let lp64 = m.log_density(&data, b, th, &mut g64, &mut s);
            let lp32 = m.log_density_f32(&data, b, th, &mut g32, &mut s);
            // f32 rounds each point's terms at about 6e-8 of their size; the sums are
            // folded into f64, so the error grows like the number of points at worst. A
            // Poisson rate near e^20 rounds its gradient terms at that size, relative to a
            // gradient that sums terms of both signs: hence the looser gradient bound.
            let scale = n + lp64.abs();
            let e_lp = (lp32 - lp64).abs() / scale;
            let g_scale: f64 = g64.iter().map(|v| v * v).sum::<f64>().sqrt() + n;
            let e_g =
                rel_norm(&g32, &g64) * g64.iter().map(|v| v * v).sum::<f64>().sqrt() / g_scale;
            worst_lp = worst_lp.max(e_lp);
            worst_g = worst_g.max(e_g);
            assert!(
                e_lp < 1e-6,
                "{} N={n}: logp f32 {lp32} vs f64 {lp64} (error {e_lp:e} of {scale})",
                m.name()
            );
            assert!(
                e_g < 2e-5,
                "{} N={n}: gradient error {e_g:e}\n  f32 {g32:?}\n  f64 {g64:?}",
                m.name()
            );
        }
    }
    eprintln!("worst scaled error: logp {worst_lp:e}, gradient {worst_g:e}");
}

#[test]
fn f32_simd_and_portable_paths_give_the_same_bits() {
    for m in families() {
        let (data, truths) = data_for(&m, &[1000], 3);
        let theta = positions(&m, &truths, 1, 0.4, 2);
        let d = m.dim();
        let (mut g1, mut g2) = (vec![0.0; d], vec![0.0; d]);
        let mut s = Vec::new();
        let a = m.log_density_f32(&data, 0, &theta, &mut g1, &mut s);
        let b = m.log_density_portable::<f32>(&data, 0, &theta, &mut g2, &mut s);
        assert_eq!(a.to_bits(), b.to_bits(), "{}: {a} vs {b}", m.name());
        assert_eq!(g1, g2, "{}", m.name());
    }
}

/// The README's figure: the relative error of the f32 log density against f64 at a million
/// points, for the GLM and the mixture of two regressions, with the evaluator's constants.
#[test]
fn f32_log_density_error_at_a_million_points() {
    let n = 1_000_000;
    for m in [
        MixGlm::glm(Likelihood::Gaussian, 1, Priors::default()).unwrap(),
        MixGlm::glm(Likelihood::Bernoulli, 1, Priors::default()).unwrap(),
        MixGlm::mixreg(2, 1, Priors::default()).unwrap(),
    ] {
        let (data, truths) = data_for(&m, &[n], 8);
        let data = std::sync::Arc::new(data);
        let theta = positions(&m, &truths, 4, 0.05, 9);
        let d = m.dim();
        let run = |p: Precision| {
            let mut e = CpuEvaluator::new(common::arc(&m), data.clone(), 4)
                .unwrap()
                .with_precision(p);
            let (mut lp, mut g) = (vec![0.0; 4], vec![0.0; 4 * d]);
            e.eval(&theta, &mut lp, &mut g).unwrap();
            (lp, g)
        };
        let (lp64, g64) = run(Precision::F64);
        let (lp32, g32) = run(Precision::F32);
        let rel = lp64
            .iter()
            .zip(&lp32)
            .map(|(a, b)| ((a - b) / a).abs())
            .fold(0.0, f64::max);
        let g_err = rel_norm(&g32, &g64);
        eprintln!(
            "{} at N = {n}: logp relative error {rel:.2e} (|logp| = {:.3e}), gradient relative error {g_err:.2e}",
            m.name(),
            lp64[0].abs()
        );
        assert!(rel < 1e-7, "{}: logp relative error {rel:e}", m.name());
        assert!(
            g_err < 1e-3,
            "{}: gradient relative error {g_err:e}",
            m.name()
        );
    }
}
