// Batch log density + gradient: every chain of every dataset in one dispatch.
// Prepended: LANES, the model's WGSL, and common/density.wgsl.

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
@group(0) @binding(4) var<storage, read> theta_in: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    g_n_total = params.n_total;
    let group = wid.x + wid.y * params.groups_x;
    let local_chain = group * (WG / LANES) + lid / LANES;
    let lane = lid % LANES;
    let live = local_chain < params.n_chains;
    g_chain = local_chain;
    g_chains = params.n_chains;
    var th: array<f32, D>;
    var grad: array<f32, D>;
    var b = 0u;
    if (live) {
        for (var d = 0u; d < D; d++) {
            th[d] = theta_in[local_chain * D + d];
        }
        b = (params.chain_offset + local_chain) / params.chains_per_dataset;
    }
    let lp = density(lid, lane, live, b, &th, &grad);
    if (live && lane == 0u) {
        let base = local_chain * (D + 1u);
        out[base] = lp;
        for (var d = 0u; d < D; d++) {
            out[base + 1u + d] = grad[d];
        }
    }
}
