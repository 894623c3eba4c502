// Log density + gradient of one chain, shared by the batch evaluator and the HMC transition.
// The model's WGSL (see `Model::wgsl`) defines D, NACC, Chain, chain_setup,
// point_accumulate and chain_finish; the kernel defines LANES. Each chain is served by LANES
// threads that stride over its dataset's points and reduce their accumulators in workgroup
// memory; every lane gets the result. `density` has barriers: all threads of a workgroup
// must call it together.

const WG: u32 = 64u;
const LOGP_NEG_INF: f32 = -3.0e38;
const GRAD_MAX: f32 = 3.0e38;

@group(0) @binding(1) var<storage, read> data_x: array<f32>;
@group(0) @binding(2) var<storage, read> data_y: array<f32>;
@group(0) @binding(3) var<storage, read> offsets: array<u32>;

// Points over all datasets (the stride of an input column); set by the kernel's main.
var<private> g_n_total: u32;
// This invocation's chain among the g_chains of its dispatch (the index into a model's
// scratch storage, see `Model::device_scratch`); set by the kernel's main.
var<private> g_chain: u32;
var<private> g_chains: u32;
var<workgroup> red: array<f32, WG>;

fn x_at(j: u32, n: u32) -> f32 {
    return data_x[j * g_n_total + n];
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

fn density(
    lid: u32,
    lane: u32,
    live: bool,
    b: u32,
    th: ptr<function, array<f32, D>>,
    grad: ptr<function, array<f32, D>>,
) -> f32 {
    var acc: array<f32, NACC>;
    var c: Chain;
    var n_points = 0u;
    if (live) {
        c = chain_setup(th);
        let start = offsets[b];
        let end = offsets[b + 1u];
        n_points = end - start;
        for (var n = start + lane; n < end; n += LANES) {
            point_accumulate(&c, n, &acc);
        }
    }
    // Tree reduction of each accumulator over the LANES lanes of a chain, then broadcast.
    let head = lid - lane;
    for (var i = 0u; i < NACC; i++) {
        red[lid] = acc[i];
        workgroupBarrier();
        for (var s = LANES / 2u; s > 0u; s = s / 2u) {
            if (lane < s) {
                red[lid] = red[lid] + red[lid + s];
            }
            workgroupBarrier();
        }
        acc[i] = red[head];
        workgroupBarrier();
    }
    var lp = chain_finish(&c, th, n_points, &acc, grad);
    if (!is_finite_f32(lp) || lp < LOGP_NEG_INF) {
        for (var d = 0u; d < D; d++) {
            (*grad)[d] = 0.0;
        }
        return LOGP_NEG_INF;
    }
    for (var d = 0u; d < D; d++) {
        var g = (*grad)[d];
        if (is_nan_f32(g)) {
            g = 0.0;
        } else if (!is_finite_f32(g)) {
            g = select(-GRAD_MAX, GRAD_MAX, g > 0.0);
        }
        (*grad)[d] = clamp(g, -GRAD_MAX, GRAD_MAX);
    }
    return lp;
}
