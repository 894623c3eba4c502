// One HMC transition for every chain of every dataset in one dispatch: momentum from
// Philox, all leapfrog steps, the Metropolis accept. The twin of src/hmc/cpu.rs
// (`transition`). Prepended: LANES, the model's WGSL, common/philox.wgsl and
// common/density.wgsl.
//
// Chains of different datasets may take different numbers of steps; the step loop runs to
// the dispatch's largest count (uniform control flow for the barriers in `density`) and a
// chain stops moving after its own count.

// Must match hmc::gpu::HmcParams (src/hmc/gpu.rs).
struct HmcParams {
    n_chains: u32,
    chains_per_dataset: u32,
    n_total: u32,
    groups_x: u32,
    iter: u32,
    seed_lo: u32,
    seed_hi: u32,
    max_steps: u32,
    // 1: only evaluate the density at the state's positions (initialisation).
    init: u32,
    // Row of `sched` holding this transition's leapfrog steps per dataset.
    row: u32,
    // Added to the chain index in the random streams (a study's dataset offset).
    chain_offset: u32,
    // 1: every tuning row holds a dense metric's Cholesky factor (src/hmc/metric.rs).
    dense: u32,
}

@group(0) @binding(0) var<uniform> hp: HmcParams;
// Per dataset, stride D + 1: step size, inverse mass (D); with a dense metric, stride
// D + 1 + D * D, followed by the lower Cholesky factor L of the inverse mass L Lᵀ (row-major).
@group(0) @binding(4) var<storage, read> tuning: array<f32>;
// Per chain, stride 2 D + 1: position (D), log density, gradient (D).
@group(0) @binding(5) var<storage, read_write> state: array<f32>;
// Per chain, stride 3 D + 4: position (D), log density, proposal (D), velocity (D),
// acceptance probability, divergent (0/1), energy.
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
// Leapfrog steps: row r holds one count per dataset (several transitions per submission).
@group(0) @binding(7) var<storage, read> sched: array<u32>;

const MAX_ENERGY_ERROR: f32 = 1000.0;
const PURPOSE_MOMENTUM: u32 = 0u;
const PURPOSE_ACCEPT: u32 = 1u;

// Dense metric, with the whitened momentum r = Lᵀ p (src/hmc/metric.rs): r += h Lᵀ g.
fn dense_kick(lb: u32, g: ptr<function, array<f32, D>>, r: ptr<function, array<f32, D>>, h: f32) {
    for (var i = 0u; i < D; i++) {
        var acc = 0.0;
        for (var j = i; j < D; j++) {
            acc += tuning[lb + j * D + i] * (*g)[j];
        }
        (*r)[i] += h * acc;
    }
}

// Row i of L r: the velocity L Lᵀ p, and the position step's direction.
fn dense_row(lb: u32, r: ptr<function, array<f32, D>>, i: u32) -> f32 {
    var acc = 0.0;
    for (var j = 0u; j <= i; j++) {
        acc += tuning[lb + i * D + j] * (*r)[j];
    }
    return acc;
}

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    g_n_total = hp.n_total;
    let group = wid.x + wid.y * hp.groups_x;
    let chain = group * (WG / LANES) + lid / LANES;
    let lane = lid % LANES;
    let live = chain < hp.n_chains;
    g_chain = chain;
    g_chains = hp.n_chains;
    var b = 0u;
    var q: array<f32, D>;
    var g: array<f32, D>;
    var lp = 0.0;
    let sb = chain * (2u * D + 1u);
    if (live) {
        b = chain / hp.chains_per_dataset;
        for (var i = 0u; i < D; i++) {
            q[i] = state[sb + i];
            g[i] = state[sb + D + 1u + i];
        }
        lp = state[sb + D];
    }
    if (hp.init == 1u) {
        lp = density(lid, lane, live, b, &q, &g);
        if (live && lane == 0u) {
            state[sb + D] = lp;
            for (var i = 0u; i < D; i++) {
                state[sb + D + 1u + i] = g[i];
            }
        }
        return;
    }
    let dense = hp.dense == 1u;
    let tb = b * select(D + 1u, D + 1u + D * D, dense);
    let lb = tb + 1u + D;
    let eps = tuning[tb];
    let n_datasets = hp.n_chains / hp.chains_per_dataset;
    let n_steps = sched[hp.row * n_datasets + b];
    let key = vec2<u32>(hp.seed_lo, hp.seed_hi);
    var p: array<f32, D>;
    var k0 = 0.0;
    for (var i = 0u; i < D; i++) {
        let w = philox4x32_10(vec4<u32>(chain + hp.chain_offset, hp.iter, PURPOSE_MOMENTUM, i / 2u), key);
        var z: f32;
        if (i % 2u == 0u) {
            z = box_muller(u32_to_uniform(w.x), u32_to_uniform(w.y));
        } else {
            z = box_muller(u32_to_uniform(w.z), u32_to_uniform(w.w));
        }
        if (dense) {
            p[i] = z;
            k0 += z * z;
        } else {
            let m = tuning[tb + 1u + i];
            p[i] = z / sqrt(m);
            k0 += m * p[i] * p[i];
        }
    }
    let h0 = -lp + 0.5 * k0;
    var q1 = q;
    var g1 = g;
    var lp1 = lp;
    var g_new: array<f32, D>;
    for (var s = 0u; s < hp.max_steps; s++) {
        let moving = live && s < n_steps;
        if (moving) {
            if (dense) {
                dense_kick(lb, &g1, &p, 0.5 * eps);
                for (var i = 0u; i < D; i++) {
                    q1[i] += eps * dense_row(lb, &p, i);
                }
            } else {
                for (var i = 0u; i < D; i++) {
                    p[i] += 0.5 * eps * g1[i];
                    q1[i] += eps * tuning[tb + 1u + i] * p[i];
                }
            }
        }
        let lp_new = density(lid, lane, live, b, &q1, &g_new);
        if (moving) {
            lp1 = lp_new;
            g1 = g_new;
            if (dense) {
                dense_kick(lb, &g1, &p, 0.5 * eps);
            } else {
                for (var i = 0u; i < D; i++) {
                    p[i] += 0.5 * eps * g1[i];
                }
            }
        }
    }
    if (!live || lane != 0u) {
        return;
    }
    var k1 = 0.0;
    let ob = chain * (3u * D + 4u);
    for (var i = 0u; i < D; i++) {
        out[ob + D + 1u + i] = q1[i];
        if (dense) {
            k1 += p[i] * p[i];
            out[ob + 2u * D + 1u + i] = dense_row(lb, &p, i);
        } else {
            let m = tuning[tb + 1u + i];
            k1 += m * p[i] * p[i];
            out[ob + 2u * D + 1u + i] = m * p[i];
        }
    }
    let h1 = -lp1 + 0.5 * k1;
    let delta = h1 - h0;
    let div = !is_finite_f32(delta) || delta > MAX_ENERGY_ERROR || lp1 <= LOGP_NEG_INF;
    var a = 0.0;
    if (!div) {
        a = min(1.0, exp(-delta));
    }
    let u = u32_to_uniform(philox4x32_10(vec4<u32>(chain + hp.chain_offset, hp.iter, PURPOSE_ACCEPT, 0u), key).x);
    var energy = h0;
    if (!div && u < a) {
        q = q1;
        g = g1;
        lp = lp1;
        energy = h1;
    }
    for (var i = 0u; i < D; i++) {
        state[sb + i] = q[i];
        state[sb + D + 1u + i] = g[i];
        out[ob + i] = q[i];
    }
    state[sb + D] = lp;
    out[ob + D] = lp;
    out[ob + 3u * D + 1u] = a;
    out[ob + 3u * D + 2u] = select(0.0, 1.0, div);
    out[ob + 3u * D + 3u] = energy;
}
