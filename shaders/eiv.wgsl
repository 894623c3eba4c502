// Errors-in-variables dot product: the WGSL twin of src/model/eiv.rs. The host prepends
// M, D, NACC, OBS, SHARED, OFF_Z, the known weights W and the prior functions.
// Accumulators: shared: [sum r^2, sum r x_m (M)]; per observation: [log lik, sum g, sum g q].

const IDX_OBS: u32 = min(2u, D - 1u);
const ACC2: u32 = min(2u, NACC - 1u);

struct Chain {
    w: array<f32, M>,
    v: array<f32, M>,
    sx: f32,
    sw: f32,
    so2: f32,
    vv: f32,
    ww: f32,
    // Shared: the marginal variance; per observation: its parameter-only part.
    s2: f32,
}

fn chain_setup(theta: ptr<function, array<f32, D>>) -> Chain {
    var c: Chain;
    c.w = W;
    c.sx = exp((*theta)[0]);
    c.sw = exp((*theta)[1]);
    c.so2 = 0.0;
    if (OBS) {
        c.so2 = exp(2.0 * (*theta)[IDX_OBS]);
    }
    c.ww = 0.0;
    c.vv = 0.0;
    for (var m = 0u; m < M; m++) {
        c.ww += c.w[m] * c.w[m];
        if (SHARED) {
            c.v[m] = c.w[m] * (1.0 + (*theta)[OFF_Z + m]);
            c.vv += c.v[m] * c.v[m];
        }
    }
    if (SHARED) {
        c.s2 = c.sx * c.sx * c.vv + c.so2;
    } else {
        c.s2 = c.sx * c.sx * (1.0 + c.sw * c.sw) * c.ww + c.so2;
    }
    return c;
}

fn point_accumulate(c: ptr<function, Chain>, n: u32, acc: ptr<function, array<f32, NACC>>) {
    let y = y_at(n);
    if (SHARED) {
        var r = y;
        for (var m = 0u; m < M; m++) {
            r -= x_at(m, n) * (*c).v[m];
        }
        (*acc)[0] += r * r;
        for (var m = 0u; m < M; m++) {
            (*acc)[1u + m] += r * x_at(m, n);
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
        let s = (*acc)[0];
        let s2 = (*c).s2;
        let n = f32(n_points);
        lp = -0.5 * s / s2 - 0.5 * n * log(s2);
        let ds2 = 0.5 * s / (s2 * s2) - 0.5 * n / s2;
        (*grad)[0] = ds2 * 2.0 * sx2 * (*c).vv;
        // Centred prior b_m ~ N(0, sigma_w^2).
        let isw2 = 1.0 / sw2;
        for (var m = 0u; m < M; m++) {
            let bm = (*theta)[OFF_Z + m];
            let dv = (*acc)[1u + m] / s2 + ds2 * 2.0 * sx2 * (*c).v[m];
            (*grad)[OFF_Z + m] = dv * (*c).w[m] - bm * isw2;
            (*grad)[1] += bm * bm * isw2 - 1.0;
            lp -= 0.5 * bm * bm * isw2 + (*theta)[1];
        }
        if (OBS) {
            (*grad)[IDX_OBS] = ds2 * 2.0 * (*c).so2;
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
