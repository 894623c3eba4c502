//! Every WGSL shader gpsamp can assemble is parsed and validated by naga, without a GPU:
//! the density and transition kernels of every family (generated HMM code included) at every
//! lane count it allows, the EM E-step and MDN kernels, and the test shaders.

mod common;

use gpsamp::shader;

#[test]
fn every_assembled_shader_validates() {
    for m in common::families() {
        for lanes in [1, 2, 4, 8, 16, 32, 64] {
            let src = shader::logp_batch(&gpsamp::Model::wgsl(&m), lanes);
            if let Err(e) = shader::validate("logp_batch", &src) {
                panic!("{} with {lanes} lanes: {e}", gpsamp::Model::name(&m));
            }
            let src = shader::hmc_transition(&gpsamp::Model::wgsl(&m), lanes);
            if let Err(e) = shader::validate("hmc_transition", &src) {
                panic!(
                    "hmc_transition, {} with {lanes} lanes: {e}",
                    gpsamp::Model::name(&m)
                );
            }
        }
    }
    shader::validate("philox_test", &shader::philox_test()).unwrap();
    shader::validate("layout_probe", shader::LAYOUT_PROBE.source).unwrap();
}

/// The density and transition kernels of every other family, with the lane counts each
/// allows (the errors-in-variables variants; HMMs, whose per-step code is generated).
#[test]
fn every_family_kernel_validates() {
    use gpsamp::hmm::HmmSpec;
    use gpsamp::{Eiv, EivVariant, Hmm, HmmPriors, Model};
    let mut models: Vec<Box<dyn Model>> = vec![
        Box::new(Eiv::new(vec![1.0, 2.0, 0.5], EivVariant::Shared, false).unwrap()),
        Box::new(Eiv::new(vec![1.0, 2.0], EivVariant::Shared, true).unwrap()),
        Box::new(Eiv::new(vec![0.5], EivVariant::PerObservation, true).unwrap()),
        Box::new(
            Eiv::new(vec![1.0, 2.0, 0.5], EivVariant::Shared, false)
                .unwrap()
                .with_systems(4)
                .unwrap(),
        ),
    ];
    for spec in [
        HmmSpec::gaussian(1, 1).unwrap(),
        HmmSpec::gaussian(3, 1).unwrap(),
        HmmSpec::gaussian(4, 2).unwrap(),
        HmmSpec::regression(3, 1).unwrap(),
        HmmSpec::regression(2, 3).unwrap(),
        HmmSpec::bernoulli(3, 2).unwrap(),
    ] {
        models.push(Box::new(Hmm::new(spec, HmmPriors::default()).unwrap()));
    }
    // Stan programs: the interpreter kernel, for a few parameter counts.
    let ex = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/posteriordb");
    for name in [
        "eight_schools-eight_schools_noncentered",
        "hmm_example-hmm_example",
    ] {
        let dir = ex.join(name);
        let m = gpsamp::stan::StanModel::from_files(
            &dir.join("model.stan"),
            Some(&dir.join("data.json")),
        )
        .unwrap();
        assert!(m.has_gpu_kernel());
        models.push(Box::new(m));
    }
    for m in &models {
        let max = m.max_lanes().clamp(1, 64);
        let mut lanes = 1;
        while lanes <= max {
            for (kind, src) in [
                ("logp_batch", shader::logp_batch(&m.wgsl(), lanes)),
                ("hmc_transition", shader::hmc_transition(&m.wgsl(), lanes)),
            ] {
                if let Err(e) = shader::validate(kind, &src) {
                    panic!("{kind}, {} with {lanes} lanes: {e}", m.name());
                }
            }
            lanes *= 2;
        }
    }
}

/// The generated EM E-step kernels and the MDN kernels, over the shapes they are built for.
#[test]
fn generated_engine_kernels_validate() {
    use gpsamp::hmm::HmmSpec;
    for spec in [
        HmmSpec::gaussian(1, 1).unwrap(),
        HmmSpec::gaussian(3, 1).unwrap(),
        HmmSpec::gaussian(8, 3).unwrap(),
        HmmSpec::regression(3, 2).unwrap(),
        HmmSpec::bernoulli(4, 2).unwrap(),
    ] {
        let src = gpsamp::hmm::gpu::shader_source(&spec);
        if let Err(e) = shader::validate("hmm estep", &src) {
            panic!("E-step for {spec:?}: {e}");
        }
    }
    for (input, hidden, k, theta) in [
        (1, vec![24, 25, 16], 8, 1),
        (3, vec![4], 1, 2),
        (2, vec![64, 64], 3, 5),
    ] {
        let shape = gpsamp::mdn::Shape {
            input,
            hidden,
            k,
            theta,
        };
        let src = gpsamp::mdn::gpu::shader_source(&shape, 512);
        if let Err(e) = shader::validate("mdn", &src) {
            panic!("MDN {shape:?}: {e}");
        }
    }
}

#[test]
fn a_broken_shader_is_reported_with_its_name() {
    let e = shader::validate("broken", "fn main() { let x: f32 = 1u; }").unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("shader broken:"), "{msg}");
}
