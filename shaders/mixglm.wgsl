// Mixture of GLMs: the WGSL twin of src/model/mixglm.rs (`MixGlm::log_density`).
// The host prepends the constants (K, P, D, NACC, layout offsets, priors) and the
// `scale_prior` function, and replaces the likelihood marker below with the per-component
// likelihood terms. Accumulator layout (shared with the CPU twin):
//   [0] log-sum-exp | [A_R..] responsibilities (K > 1) | [A_BETA..] | [A_ALPHA..] | [A_SIG..]

struct Chain {
    lw: array<f32, K>,
    beta: array<f32, KP_ARR>,
    alpha: array<f32, K>,
    u: array<f32, K>,
    invs: array<f32, K>,
}

// log(1 + x) for x in [0, 1], accurate for small x (Goldberg's trick).
fn log1p_small(x: f32) -> f32 {
    let u = 1.0 + x;
    if (u == 1.0) {
        return x;
    }
    return log(u) * x / (u - 1.0);
}

fn chain_setup(theta: ptr<function, array<f32, D>>) -> Chain {
    var c: Chain;
    if (K > 1u) {
        var mx = 0.0;
        for (var j = 0u; j < K - 1u; j++) {
            mx = max(mx, (*theta)[j]);
        }
        var s = exp(-mx);
        for (var j = 0u; j < K - 1u; j++) {
            s += exp((*theta)[j] - mx);
        }
        let lse = mx + log(s);
        for (var j = 0u; j < K - 1u; j++) {
            c.lw[j] = (*theta)[j] - lse;
        }
        c.lw[K - 1u] = -lse;
    } else {
        c.lw[0] = 0.0;
    }
    for (var i = 0u; i < K * P; i++) {
        c.beta[i] = (*theta)[OFF_BETA + i];
    }
    for (var k = 0u; k < K; k++) {
        c.alpha[k] = (*theta)[OFF_ALPHA + k];
        if (GAUSSIAN) {
            if (SIGMA_FREE) {
                c.u[k] = (*theta)[OFF_SIG + k];
            } else {
                c.u[k] = LOG_SIGMA_FIXED;
            }
            c.invs[k] = exp(-c.u[k]);
        }
    }
    return c;
}

fn point_accumulate(c: ptr<function, Chain>, n: u32, acc: ptr<function, array<f32, NACC>>) {
    let y = y_at(n);
    var a: array<f32, K>;
    var g: array<f32, K>;
    var h: array<f32, K>;
    for (var k = 0u; k < K; k++) {
        var eta = (*c).alpha[k];
        for (var j = 0u; j < P; j++) {
            eta = fma((*c).beta[k * P + j], x_at(j, n), eta);
        }
        // {LIKELIHOOD}
    }
    if (K == 1u) {
        (*acc)[0] += a[0];
        (*acc)[A_ALPHA] += g[0];
        for (var j = 0u; j < P; j++) {
            (*acc)[A_BETA + j] += g[0] * x_at(j, n);
        }
        if (SIGMA_FREE) {
            (*acc)[A_SIG] += h[0];
        }
        return;
    }
    var m = a[0];
    for (var k = 1u; k < K; k++) {
        m = max(m, a[k]);
    }
    var s = 0.0;
    for (var k = 0u; k < K; k++) {
        a[k] = exp(a[k] - m);
        s += a[k];
    }
    (*acc)[0] += m + log(s);
    let inv = 1.0 / s;
    for (var k = 0u; k < K; k++) {
        let r = a[k] * inv;
        if (r > 0.0) {
            let rg = r * g[k];
            (*acc)[A_R + k] += r;
            (*acc)[A_ALPHA + k] += rg;
            for (var j = 0u; j < P; j++) {
                (*acc)[A_BETA + k * P + j] += rg * x_at(j, n);
            }
            if (SIGMA_FREE) {
                (*acc)[A_SIG + k] += r * h[k];
            }
        }
    }
}

fn normal_prior(v: f32, m: f32, s: f32) -> vec2<f32> {
    let z = (v - m) / s;
    return vec2<f32>(-0.5 * z * z, -z / s);
}

fn chain_finish(
    c: ptr<function, Chain>,
    theta: ptr<function, array<f32, D>>,
    n_points: u32,
    acc: ptr<function, array<f32, NACC>>,
    grad: ptr<function, array<f32, D>>,
) -> f32 {
    var lp = (*acc)[0];
    if (K > 1u) {
        let kc = f32(K) * DIRICHLET_C;
        let n = f32(n_points);
        for (var k = 0u; k < K; k++) {
            lp += DIRICHLET_C * (*c).lw[k];
            if (k + 1u < K) {
                (*grad)[k] = (*acc)[A_R + k] - (n + kc) * exp((*c).lw[k]) + DIRICHLET_C;
            }
        }
    }
    for (var i = 0u; i < K * P; i++) {
        let v = normal_prior((*theta)[OFF_BETA + i], COEF_MEAN, COEF_SD);
        lp += v.x;
        (*grad)[OFF_BETA + i] = (*acc)[A_BETA + i] + v.y;
    }
    for (var k = 0u; k < K; k++) {
        let v = normal_prior((*theta)[OFF_ALPHA + k], ICPT_MEAN, ICPT_SD);
        lp += v.x;
        (*grad)[OFF_ALPHA + k] = (*acc)[A_ALPHA + k] + v.y;
        if (SIGMA_FREE) {
            let s = scale_prior((*theta)[OFF_SIG + k]);
            lp += s.x;
            (*grad)[OFF_SIG + k] = (*acc)[A_SIG + k] + s.y;
        }
    }
    return lp;
}
