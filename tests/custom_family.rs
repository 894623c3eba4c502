//! The example custom family (examples/custom_family.rs), written only against the public
//! API, samples on both backends and recovers its truth; its WGSL twin matches its CPU code.

mod common;
#[path = "../examples/custom_family.rs"]
mod custom_family;

use std::sync::Arc;

use custom_family::{fit, StudentT};
use gpsamp::backend::{CpuEvaluator, Evaluator, GpuEvaluator};
use gpsamp::{Backend, Model};

#[test]
fn custom_family_samples_on_both_backends() {
    let mut backends = vec![Backend::cpu()];
    if let Some(ctx) = common::gpu() {
        backends.push(Backend::Gpu(ctx));
    }
    for b in backends {
        let (mean, truth, div) = fit(&b, 3).unwrap();
        assert_eq!(div, 0, "{}", b.describe());
        for i in 0..3 {
            assert!(
                (mean[i] - truth[i]).abs() < 0.25,
                "{}: param {i}: {} vs {}",
                b.describe(),
                mean[i],
                truth[i]
            );
        }
    }
}

#[test]
fn custom_family_gpu_matches_cpu() {
    let Some(ctx) = common::gpu() else { return };
    let m = StudentT { nu: 4.0 };
    let mut rng = gpsamp::rng::host_rng(1, 0, gpsamp::rng::Purpose::Simulate);
    let (truth, d) = m.simulate(300, &mut rng);
    let data = Arc::new(gpsamp::DataBatch::new(1, &[d]).unwrap());
    let theta = common::positions(&m, &[truth], 4, 0.3, 1);
    let (mut l1, mut g1) = (vec![0.0; 4], vec![0.0; 12]);
    let (mut l2, mut g2) = (vec![0.0; 4], vec![0.0; 12]);
    CpuEvaluator::new(Arc::new(m.clone()), data.clone(), 4)
        .unwrap()
        .eval(&theta, &mut l1, &mut g1)
        .unwrap();
    GpuEvaluator::new(ctx, &m, &data, 4, None)
        .unwrap()
        .eval(&theta, &mut l2, &mut g2)
        .unwrap();
    assert!(common::rel_norm(&l2, &l1) < 1e-4 && common::rel_norm(&g2, &g1) < 1e-4);
}
