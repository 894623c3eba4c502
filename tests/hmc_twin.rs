//! The fused GPU transition against its CPU twin: same seed, same momenta and accept
//! uniforms, so the first 20 transitions' positions agree to f32 rounding.

mod common;

use std::sync::Arc;

use common::{arc, data_for, families, gpu, positions, rel_norm};
use gpsamp::hmc::gpu::HmcParams;
use gpsamp::hmc::{CpuIntegrator, GpuIntegrator, Integrator, StepOut, Tuning};
use gpsamp::Model;

#[test]
fn hmc_params_layout() {
    assert_eq!(std::mem::size_of::<HmcParams>(), 48);
    assert_eq!(std::mem::offset_of!(HmcParams, iter), 16);
    assert_eq!(std::mem::offset_of!(HmcParams, max_steps), 28);
    assert_eq!(std::mem::offset_of!(HmcParams, init), 32);
}

#[test]
fn first_twenty_transitions_agree() {
    let Some(ctx) = gpu() else { return };
    for m in families() {
        let (data, truths) = data_for(&m, &[40, 25], 5);
        let data = Arc::new(data);
        let chains = 6;
        let d = m.dim();
        let q0 = positions(&m, &truths, chains, 0.2, 3);
        let n = 2 * chains;
        let mut cpu = CpuIntegrator::new(arc(&m), data.clone(), chains, 42).unwrap();
        let mut gpu = GpuIntegrator::new(ctx.clone(), &m, &data, chains, 42, None).unwrap();
        let (mut l1, mut l2) = (vec![0.0; n], vec![0.0; n]);
        let (mut g1, mut g2) = (vec![0.0; n * d], vec![0.0; n * d]);
        cpu.set_positions(&q0, &mut l1, &mut g1).unwrap();
        gpu.set_positions(&q0, &mut l2, &mut g2).unwrap();
        assert!(rel_norm(&g2, &g1) < 1e-4, "{}: initial gradient", m.name());
        assert!(rel_norm(&l2, &l1) < 1e-4, "{}: initial logp", m.name());
        // Two datasets with different steps (lockstep within each, not across).
        let tuning: Vec<Tuning> = (0..2)
            .map(|b| Tuning {
                step_size: 0.02,
                n_steps: 3 + 2 * b as u32,
                inv_mass: (0..d).map(|i| 0.5 + 0.1 * i as f64).collect(),
                chol: Vec::new(),
            })
            .collect();
        let (mut o1, mut o2) = (StepOut::default(), StepOut::default());
        let mut accepted = 0;
        for it in 0..20 {
            cpu.step(it, &tuning, &mut o1).unwrap();
            gpu.step(it, &tuning, &mut o2).unwrap();
            let e = rel_norm(&o2.position, &o1.position);
            assert!(
                e <= 1e-3,
                "{}: transition {it}: positions differ by {e:e}",
                m.name()
            );
            let ep = rel_norm(&o2.proposal, &o1.proposal);
            assert!(
                ep <= 1e-3,
                "{}: transition {it}: proposals differ by {ep:e}",
                m.name()
            );
            accepted += o1.accept_prob.iter().filter(|&&a| a > 0.0).count();
        }
        assert!(accepted > 0, "{}: nothing moved", m.name());
    }
}

#[test]
fn batched_transitions_equal_single_steps() {
    let Some(ctx) = gpu() else { return };
    let m = gpsamp::MixGlm::mixreg(2, 1, gpsamp::Priors::default()).unwrap();
    let (data, truths) = data_for(&m, &[50, 30, 20], 9);
    let chains = 5;
    let d = m.dim();
    let q0 = positions(&m, &truths, chains, 0.2, 4);
    let n = 3 * chains;
    let tuning: Vec<Tuning> = (0..3)
        .map(|b| Tuning {
            step_size: 0.03,
            n_steps: 0,
            inv_mass: vec![0.7 + 0.1 * b as f64; d],
            chol: Vec::new(),
        })
        .collect();
    let rows: Vec<Vec<u32>> = (0..40u32).map(|r| vec![1 + r % 4, 2 + r % 3, 5]).collect();
    let mut a = GpuIntegrator::new(ctx.clone(), &m, &data, chains, 7, None).unwrap();
    let mut b = GpuIntegrator::new(ctx.clone(), &m, &data, chains, 7, None).unwrap();
    assert!(b.batch_len() > 1);
    let (mut lp, mut g) = (vec![0.0; n], vec![0.0; n * d]);
    a.set_positions(&q0, &mut lp, &mut g).unwrap();
    b.set_positions(&q0, &mut lp, &mut g).unwrap();
    let mut single = StepOut::default();
    let mut batched = vec![StepOut::default(); rows.len()];
    b.run_batch(100, &tuning, &rows, &mut batched).unwrap();
    for (r, row) in rows.iter().enumerate() {
        let t: Vec<Tuning> = tuning
            .iter()
            .zip(row)
            .map(|(t, &s)| Tuning {
                n_steps: s,
                ..t.clone()
            })
            .collect();
        a.step(100 + r as u32, &t, &mut single).unwrap();
        assert_eq!(single.position, batched[r].position, "transition {r}");
        assert_eq!(single.accept_prob, batched[r].accept_prob, "transition {r}");
    }
}

/// A lower-triangular factor with a positive diagonal and correlating entries below it.
fn factor(d: usize, seed: u64) -> Vec<f64> {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..i {
            l[i * d + j] = rng.random_range(-0.4..0.4);
        }
        l[i * d + i] = rng.random_range(0.5..1.2);
    }
    l
}

/// The dense metric's transition: on the CPU, a factor that is the diagonal metric's square
/// root gives the diagonal metric's trajectories (the same leapfrog in whitened momentum);
/// on the GPU, a correlating factor gives the CPU's transitions to f32 rounding.
#[test]
fn dense_metric_transitions_agree() {
    let m = gpsamp::MixGlm::mixreg(2, 1, gpsamp::Priors::default()).unwrap();
    let (data, truths) = data_for(&m, &[40, 25], 6);
    let data = Arc::new(data);
    let chains = 4;
    let d = m.dim();
    let n = 2 * chains;
    let q0 = positions(&m, &truths, chains, 0.2, 5);
    let diag: Vec<f64> = (0..d).map(|i| 0.4 + 0.15 * i as f64).collect();
    let tuning = |chol: &dyn Fn(usize) -> Vec<f64>| -> Vec<Tuning> {
        (0..2)
            .map(|b| Tuning {
                step_size: 0.02,
                n_steps: 4 + b as u32,
                inv_mass: diag.clone(),
                chol: chol(b),
            })
            .collect()
    };
    let mut sqrt_diag = vec![0.0; d * d];
    for i in 0..d {
        sqrt_diag[i * d + i] = diag[i].sqrt();
    }
    let start = |integ: &mut dyn Integrator| {
        let (mut lp, mut g) = (vec![0.0; n], vec![0.0; n * d]);
        integ.set_positions(&q0, &mut lp, &mut g).unwrap();
    };
    let (mut a, mut b) = (
        CpuIntegrator::new(arc(&m), data.clone(), chains, 11).unwrap(),
        CpuIntegrator::new(arc(&m), data.clone(), chains, 11).unwrap(),
    );
    start(&mut a);
    start(&mut b);
    let (plain, as_dense) = (tuning(&|_| Vec::new()), tuning(&|_| sqrt_diag.clone()));
    let (mut o1, mut o2) = (StepOut::default(), StepOut::default());
    for it in 0..10 {
        a.step(it, &plain, &mut o1).unwrap();
        b.step(it, &as_dense, &mut o2).unwrap();
        for (x, y) in [
            (&o1.proposal, &o2.proposal),
            (&o1.velocity, &o2.velocity),
            (&o1.energy, &o2.energy),
        ] {
            let e = rel_norm(y, x);
            assert!(
                e < 1e-12,
                "transition {it}: diagonal as dense differs by {e:e}"
            );
        }
    }
    let Some(ctx) = gpu() else { return };
    let dense = tuning(&|b| factor(d, 20 + b as u64));
    let mut cpu = CpuIntegrator::new(arc(&m), data.clone(), chains, 42).unwrap();
    let mut gpu = GpuIntegrator::new(ctx.clone(), &m, &data, chains, 42, None).unwrap();
    start(&mut cpu);
    start(&mut gpu);
    let mut accepted = 0;
    for it in 0..20 {
        cpu.step(it, &dense, &mut o1).unwrap();
        gpu.step(it, &dense, &mut o2).unwrap();
        for (what, x, y) in [
            ("positions", &o1.position, &o2.position),
            ("proposals", &o1.proposal, &o2.proposal),
            ("velocities", &o1.velocity, &o2.velocity),
        ] {
            let e = rel_norm(y, x);
            assert!(e <= 1e-3, "transition {it}: {what} differ by {e:e}");
        }
        accepted += o1.accept_prob.iter().filter(|&&a| a > 0.0).count();
    }
    assert!(accepted > 0, "nothing moved");
    // Back to the diagonal metric on the same integrator (the rows' stride shrinks).
    cpu.step(20, &plain, &mut o1).unwrap();
    gpu.step(20, &plain, &mut o2).unwrap();
    assert!(rel_norm(&o2.position, &o1.position) <= 1e-3);
}
