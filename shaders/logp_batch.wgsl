// Batch log density + gradient: every chain of every dataset in one dispatch.
// The model's WGSL (see `Model::wgsl`) is prepended; it defines D, NACC, Chain,
// chain_setup, point_accumulate and chain_finish. The host also prepends LANES: each chain
// is served by LANES threads that stride over its dataset's points and reduce their
// accumulators in workgroup memory (LANES = 1: a thread per chain; LANES = 64: a
// workgroup per chain).

const WG: u32 = 64u;
const LOGP_NEG_INF: f32 = -3.0e38;
const GRAD_MAX: f32 = 3.0e38;

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
@group(0) @binding(1) var<storage, read> data_x: array<f32>;
@group(0) @binding(2) var<storage, read> data_y: array<f32>;
@group(0) @binding(3) var<storage, read> offsets: array<u32>;
@group(0) @binding(4) var<storage, read> theta_in: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

var<workgroup> red: array<f32, WG>;

fn x_at(j: u32, n: u32) -> f32 {
    return data_x[j * params.n_total + n];
}

fn y_at(n: u32) -> f32 {
    return data_y[n];
}

// Implementations may assume floats are finite: test the bits instead.
fn is_finite_f32(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

fn is_nan_f32(x: f32) -> bool {
    let b = bitcast<u32>(x);
    return (b & 0x7f800000u) == 0x7f800000u && (b & 0x007fffffu) != 0u;
}

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let group = wid.x + wid.y * params.groups_x;
    let local_chain = group * (WG / LANES) + lid / LANES;
    let lane = lid % LANES;
    let live = local_chain < params.n_chains;
    var acc: array<f32, NACC>;
    var th: array<f32, D>;
    var c: Chain;
    var n_points = 0u;
    if (live) {
        for (var d = 0u; d < D; d++) {
            th[d] = theta_in[local_chain * D + d];
        }
        c = chain_setup(&th);
        let b = (params.chain_offset + local_chain) / params.chains_per_dataset;
        let start = offsets[b];
        let end = offsets[b + 1u];
        n_points = end - start;
        for (var n = start + lane; n < end; n += LANES) {
            point_accumulate(&c, n, &acc);
        }
    }
    // Tree reduction of each accumulator over the LANES lanes of a chain.
    for (var i = 0u; i < NACC; i++) {
        red[lid] = acc[i];
        workgroupBarrier();
        for (var s = LANES / 2u; s > 0u; s = s / 2u) {
            if (lane < s) {
                red[lid] = red[lid] + red[lid + s];
            }
            workgroupBarrier();
        }
        acc[i] = red[lid];
        workgroupBarrier();
    }
    if (live && lane == 0u) {
        var grad: array<f32, D>;
        var lp = chain_finish(&c, &th, n_points, &acc, &grad);
        let base = local_chain * (D + 1u);
        if (!is_finite_f32(lp) || lp < LOGP_NEG_INF) {
            out[base] = LOGP_NEG_INF;
            for (var d = 0u; d < D; d++) {
                out[base + 1u + d] = 0.0;
            }
            return;
        }
        out[base] = lp;
        for (var d = 0u; d < D; d++) {
            var g = grad[d];
            if (is_nan_f32(g)) {
                g = 0.0;
            } else if (!is_finite_f32(g)) {
                g = select(-GRAD_MAX, GRAD_MAX, g > 0.0);
            }
            out[base + 1u + d] = clamp(g, -GRAD_MAX, GRAD_MAX);
        }
    }
}
