//! Shader assembly and validation: WGSL files are embedded with `include_str!`, a model's
//! source is joined with an engine template and its size constants, and every assembled
//! shader can be parsed and validated by naga without a GPU.

use crate::error::{Error, Result};

/// Shared WGSL: the Philox generator and its uniform/normal maps.
pub const PHILOX: &str = include_str!("../shaders/common/philox.wgsl");
/// Stable `softplus` and `sigmoid` (the HMM kernels).
pub const LOGISTIC: &str = include_str!("../shaders/common/logistic.wgsl");
/// Log density + gradient of one chain with lanes and a workgroup reduction.
pub const DENSITY: &str = include_str!("../shaders/common/density.wgsl");
/// The batch log-density kernel (see `Model::wgsl`).
pub const LOGP_BATCH: &str = include_str!("../shaders/logp_batch.wgsl");
/// The fused HMC transition kernel.
pub const HMC_TRANSITION: &str = include_str!("../shaders/hmc_transition.wgsl");
/// Known-answer and stream kernel for the Philox twin test.
pub const PHILOX_TEST: &str = include_str!("../shaders/philox_test.wgsl");
/// Layout probe for the shared Rust/WGSL structs.
pub const LAYOUT_PROBE: &str = include_str!("../shaders/layout_probe.wgsl");

/// The batch log-density shader for a model's WGSL with `lanes` threads per chain.
pub fn logp_batch(model_wgsl: &str, lanes: u32) -> String {
    format!("const LANES: u32 = {lanes}u;\n{model_wgsl}\n{DENSITY}\n{LOGP_BATCH}")
}

/// The fused HMC transition shader for a model's WGSL with `lanes` threads per chain.
pub fn hmc_transition(model_wgsl: &str, lanes: u32) -> String {
    format!("const LANES: u32 = {lanes}u;\n{model_wgsl}\n{PHILOX}\n{DENSITY}\n{HMC_TRANSITION}")
}

/// The Philox test shader.
pub fn philox_test() -> String {
    format!("{PHILOX}\n{PHILOX_TEST}")
}

/// Parses and validates WGSL with naga, as the GPU driver would.
pub fn validate(name: &str, source: &str) -> Result<naga::Module> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| Error::Shader {
        name: name.into(),
        message: e.emit_to_string(source),
    })?;
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default(),
    )
    .validate(&module)
    .map_err(|e| Error::Shader {
        name: name.into(),
        message: e.emit_to_string(source),
    })?;
    Ok(module)
}
