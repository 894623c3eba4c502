// Layout probe: echoes the fields of EvalParams as the shader reads them, so a test can
// check that Rust's #[repr(C)] layout and WGSL's uniform layout agree.
// Must match backend::gpu::EvalParams (src/backend/gpu/eval.rs).
struct EvalParams {
    n_chains: u32,
    chain_offset: u32,
    chains_per_dataset: u32,
    n_total: u32,
    groups_x: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: EvalParams;
@group(0) @binding(1) var<storage, read_write> echo: array<u32>;

@compute @workgroup_size(1)
fn main() {
    echo[0] = params.n_chains;
    echo[1] = params.chain_offset;
    echo[2] = params.chains_per_dataset;
    echo[3] = params.n_total;
    echo[4] = params.groups_x;
}
