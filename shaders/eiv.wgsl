// Errors-in-variables dot product: the WGSL twin of src/model/eiv.rs. The host prepends
// M, D, NACC, OBS, SHARED, OFF_Z, NONCENTRING, the known weights W and the prior functions.
// Shared: the latents are u with b = sigma_w^NONCENTRING u, SYS systems of M each; with
// SYS_COL the input column M holds each point's system index. Accumulators per system k at
// k (M + 2): [sum r^2, count, sum r x_m (M)].
// Per observation accumulators: [log lik, sum g, sum g q].

const IDX_OBS: u32 = min(2u, D - 1u);
const ACC2: u32 = min(2u, NACC - 1u);

const NV: u32 = SYS * M;

struct Chain {
    w: array<f32, M>,
    v: array<f32, NV>,
    sx: f32,
    sw: f32,
    // sigma_w^NONCENTRING: b = scale_b u.
    scale_b: f32,
    so2: f32,
    ww: f32,
    // Per observation: the parameter-only part of the variance.
    s2: f32,
}

fn chain_setup(theta: ptr<function, array<f32, D>>) -> Chain {
    var c: Chain;
    c.w = W;
    c.sx = exp((*theta)[0]);
    c.sw = exp((*theta)[1]);
    c.scale_b = exp(NONCENTRING * (*theta)[1]);
    c.so2 = 0.0;
    if (OBS) {
        c.so2 = exp(2.0 * (*theta)[IDX_OBS]);
    }
    c.ww = 0.0;
    for (var m = 0u; m < M; m++) {
        c.ww += c.w[m] * c.w[m];
    }
    if (SHARED) {
        for (var j = 0u; j < NV; j++) {
            c.v[j] = c.w[j % M] * (1.0 + c.scale_b * (*theta)[OFF_Z + j]);
        }
    } else {
        c.s2 = c.sx * c.sx * (1.0 + c.sw * c.sw) * c.ww + c.so2;
    }
    return c;
}

fn point_accumulate(c: ptr<function, Chain>, n: u32, acc: ptr<function, array<f32, NACC>>) {
    let y = y_at(n);
    if (SHARED) {
        var k = 0u;
        if (SYS_COL) {
            k = min(u32(x_at(M, n)), SYS - 1u);
        }
        var r = y;
        for (var m = 0u; m < M; m++) {
            r -= x_at(m, n) * (*c).v[k * M + m];
        }
        let o = k * (M + 2u);
        (*acc)[o] += r * r;
        (*acc)[o + 1u] += 1.0;
        for (var m = 0u; m < M; m++) {
            (*acc)[o + 2u + m] += r * x_at(m, n);
        }
    } else {
        var mu = 0.0;
        var q = 0.0;
        for (var m = 0u; m < M; m++) {
            let xw = x_at(m, n) * (*c).w[m];
            mu += xw;
            q += xw * xw;
        }
        let var_n = (*c).sw * (*c).sw * q + (*c).s2;
        let r = y - mu;
        (*acc)[0] += -0.5 * r * r / var_n - 0.5 * log(var_n);
        let g = 0.5 * r * r / (var_n * var_n) - 0.5 / var_n;
        (*acc)[1] += g;
        (*acc)[ACC2] += g * q;
    }
}

fn chain_finish(
    c: ptr<function, Chain>,
    theta: ptr<function, array<f32, D>>,
    n_points: u32,
    acc: ptr<function, array<f32, NACC>>,
    grad: ptr<function, array<f32, D>>,
) -> f32 {
    let sx2 = (*c).sx * (*c).sx;
    let sw2 = (*c).sw * (*c).sw;
    var lp = 0.0;
    for (var d = 0u; d < D; d++) {
        (*grad)[d] = 0.0;
    }
    if (SHARED) {
        let cc = NONCENTRING;
        var ds2_obs = 0.0;
        for (var k = 0u; k < SYS; k++) {
            let o = k * (M + 2u);
            var vv = 0.0;
            for (var m = 0u; m < M; m++) {
                vv += (*c).v[k * M + m] * (*c).v[k * M + m];
            }
            let s = (*acc)[o];
            let nk = (*acc)[o + 1u];
            let s2 = sx2 * vv + (*c).so2;
            lp += -0.5 * s / s2 - 0.5 * nk * log(s2);
            let ds2 = 0.5 * s / (s2 * s2) - 0.5 * nk / s2;
            (*grad)[0] += ds2 * 2.0 * sx2 * vv;
            ds2_obs += ds2;
            for (var m = 0u; m < M; m++) {
                let j = k * M + m;
                let db = ((*acc)[o + 2u + m] / s2 + ds2 * 2.0 * sx2 * (*c).v[j]) * (*c).w[m];
                (*grad)[OFF_Z + j] = db * (*c).scale_b;
                (*grad)[1] += cc * db * (*c).scale_b * (*theta)[OFF_Z + j];
            }
        }
        // Prior u_j ~ N(0, sigma_w^(2 - 2c)); the likelihood sees b = sigma_w^c u.
        let iu2 = exp(-2.0 * (1.0 - cc) * (*theta)[1]);
        for (var j = 0u; j < NV; j++) {
            let u = (*theta)[OFF_Z + j];
            (*grad)[OFF_Z + j] -= u * iu2;
            (*grad)[1] += (1.0 - cc) * (u * u * iu2 - 1.0);
            lp -= 0.5 * u * u * iu2 + (1.0 - cc) * (*theta)[1];
        }
        if (OBS) {
            (*grad)[IDX_OBS] = ds2_obs * 2.0 * (*c).so2;
        }
    } else {
        lp = (*acc)[0];
        let gs = (*acc)[1];
        let hs = (*acc)[ACC2];
        (*grad)[1] = hs * 2.0 * sw2 + gs * sx2 * (*c).ww * 2.0 * sw2;
        (*grad)[0] = gs * 2.0 * sx2 * (1.0 + sw2) * (*c).ww;
        if (OBS) {
            (*grad)[IDX_OBS] = gs * 2.0 * (*c).so2;
        }
    }
    let px = prior_x((*theta)[0]);
    lp += px.x;
    (*grad)[0] += px.y;
    let pw = prior_w((*theta)[1]);
    lp += pw.x;
    (*grad)[1] += pw.y;
    if (OBS) {
        let po = prior_obs((*theta)[IDX_OBS]);
        lp += po.x;
        (*grad)[IDX_OBS] += po.y;
    }
    return lp;
}
