// Mixture density network: the WGSL twin of src/mdn/mod.rs. The host prepends INPUT, THETA,
// K, HEAD, N_LAYERS, N_PARAMS, WIDEST, TOTAL (units over all layers), LV_BOUND, MAX_BATCH,
// and the private arrays DIM_IN, DIM_OUT, W_OFF (parameter offset of each layer) and A_OFF
// (offset of each layer's input activations in the per-thread activation array).
// `data` holds each pair as [x (INPUT), theta (THETA), weight]; `out` holds the gradient
// (N_PARAMS), the minibatch's per-sample losses (MAX_BATCH) and the per-step loss sums.
//
// Entry `grad_samples`: one thread per minibatch sample: forward, loss, backward; writes the
// sample's weighted gradient row and loss (no float atomics: rows are summed next).
// Entry `reduce_adam`: one thread per parameter: sums the rows in sample order, writes the
// gradient, and takes the Adam step (bias corrections folded into the uniform). Thread 0
// also sums the losses into the step's slot of `out`.

struct StepParams {
    // First index into `order` of this minibatch, and its size.
    start: u32,
    n: u32,
    // Where thread 0 of reduce_adam writes the minibatch loss.
    slot: u32,
    // 1: take the Adam step; 0: only write the gradient.
    update: u32,
    // lr sqrt(1 - b2^t) / (1 - b1^t).
    step_scale: f32,
    // eps sqrt(1 - b2^t).
    eps_hat: f32,
    beta1: f32,
    beta2: f32,
    // 1 / (sum of the minibatch's weights): the loss is a weighted mean.
    wscale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> sp: StepParams;
@group(0) @binding(1) var<storage, read> data: array<f32>;
@group(0) @binding(2) var<storage, read> order: array<u32>;
@group(0) @binding(3) var<storage, read_write> params: array<f32>;
@group(0) @binding(4) var<storage, read_write> rows: array<f32>;
@group(0) @binding(5) var<storage, read_write> adam: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

const LN_2PI: f32 = 1.8378771;
const STRIDE: u32 = INPUT + THETA + 1u;
const LOSS_OFF: u32 = N_PARAMS;
const SLOT_OFF: u32 = N_PARAMS + MAX_BATCH;

@compute @workgroup_size(64)
fn grad_samples(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let s = gid.x + gid.y * nwg.x * 64u;
    if (s >= sp.n) {
        return;
    }
    let i = order[sp.start + s];
    let w = data[i * STRIDE + INPUT + THETA] * sp.wscale;
    var act: array<f32, TOTAL>;
    for (var d = 0u; d < INPUT; d++) {
        act[d] = data[i * STRIDE + d];
    }
    // Forward: layer l reads act[A_OFF[l]..] and writes act[A_OFF[l + 1]..].
    for (var l = 0u; l < N_LAYERS; l++) {
        let n_in = DIM_IN[l];
        let n_out = DIM_OUT[l];
        let wo = W_OFF[l];
        let ai = A_OFF[l];
        let ao = A_OFF[l + 1u];
        for (var o = 0u; o < n_out; o++) {
            var z = params[wo + n_out * n_in + o];
            for (var j = 0u; j < n_in; j++) {
                z += params[wo + o * n_in + j] * act[ai + j];
            }
            if (l + 1u < N_LAYERS) {
                z = max(z, 0.0);
            }
            act[ao + o] = z;
        }
    }
    // Head: log weights, log variances, loss and the gradient w.r.t. the head's outputs.
    let h = A_OFF[N_LAYERS];
    var mx = -3.0e38;
    for (var k = 0u; k < K; k++) {
        mx = max(mx, act[h + k]);
    }
    var se = 0.0;
    for (var k = 0u; k < K; k++) {
        se += exp(act[h + k] - mx);
    }
    let lse = mx + log(se);
    var comp: array<f32, K>;
    var cmax = -3.0e38;
    for (var k = 0u; k < K; k++) {
        var c = act[h + k] - lse;
        for (var d = 0u; d < THETA; d++) {
            let idx = k * THETA + d;
            let lv = LV_BOUND * tanh(act[h + K + K * THETA + idx] / LV_BOUND);
            let r = data[i * STRIDE + INPUT + d] - act[h + K + idx];
            c -= 0.5 * (lv + LN_2PI + r * r * exp(-lv));
        }
        comp[k] = c;
        cmax = max(cmax, c);
    }
    var cs = 0.0;
    for (var k = 0u; k < K; k++) {
        cs += exp(comp[k] - cmax);
    }
    let logp = cmax + log(cs);
    out[LOSS_OFF + s] = -w * logp;
    var delta: array<f32, WIDEST>;
    var dnext: array<f32, WIDEST>;
    for (var k = 0u; k < K; k++) {
        let r = exp(comp[k] - logp);
        let pi = exp(act[h + k] - lse);
        delta[k] = -w * (r - pi);
        for (var d = 0u; d < THETA; d++) {
            let idx = k * THETA + d;
            let lv = LV_BOUND * tanh(act[h + K + K * THETA + idx] / LV_BOUND);
            let iv = exp(-lv);
            let res = data[i * STRIDE + INPUT + d] - act[h + K + idx];
            delta[K + idx] = -w * r * res * iv;
            let th = lv / LV_BOUND;
            delta[K + K * THETA + idx] = -w * r * 0.5 * (res * res * iv - 1.0) * (1.0 - th * th);
        }
    }
    // Backward: this sample's gradient row.
    let row = s * N_PARAMS;
    for (var li = 0u; li < N_LAYERS; li++) {
        let l = N_LAYERS - 1u - li;
        let n_in = DIM_IN[l];
        let n_out = DIM_OUT[l];
        let wo = W_OFF[l];
        let ai = A_OFF[l];
        for (var o = 0u; o < n_out; o++) {
            rows[row + wo + n_out * n_in + o] = delta[o];
            for (var j = 0u; j < n_in; j++) {
                rows[row + wo + o * n_in + j] = delta[o] * act[ai + j];
            }
        }
        if (l == 0u) {
            break;
        }
        for (var j = 0u; j < n_in; j++) {
            var acc = 0.0;
            for (var o = 0u; o < n_out; o++) {
                acc += params[wo + o * n_in + j] * delta[o];
            }
            if (act[ai + j] <= 0.0) {
                acc = 0.0;
            }
            dnext[j] = acc;
        }
        for (var j = 0u; j < n_in; j++) {
            delta[j] = dnext[j];
        }
    }
}

@compute @workgroup_size(64)
fn reduce_adam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let p = gid.x + gid.y * nwg.x * 64u;
    if (p == 0u) {
        var l = 0.0;
        for (var s = 0u; s < sp.n; s++) {
            l += out[LOSS_OFF + s];
        }
        out[SLOT_OFF + sp.slot] = l;
    }
    if (p >= N_PARAMS) {
        return;
    }
    var g = 0.0;
    for (var s = 0u; s < sp.n; s++) {
        g += rows[s * N_PARAMS + p];
    }
    out[p] = g;
    if (sp.update == 1u) {
        let m = sp.beta1 * adam[2u * p] + (1.0 - sp.beta1) * g;
        let v = sp.beta2 * adam[2u * p + 1u] + (1.0 - sp.beta2) * g * g;
        adam[2u * p] = m;
        adam[2u * p + 1u] = v;
        params[p] -= sp.step_scale * m / (sqrt(v) + sp.eps_hat);
    }
}
