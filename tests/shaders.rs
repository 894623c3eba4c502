//! Every WGSL shader gpsamp can assemble is parsed and validated by naga, without a GPU.

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
    shader::validate("layout_probe", shader::LAYOUT_PROBE).unwrap();
}

#[test]
fn a_broken_shader_is_reported_with_its_name() {
    let e = shader::validate("broken", "fn main() { let x: f32 = 1u; }").unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("shader broken:"), "{msg}");
}
