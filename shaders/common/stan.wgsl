// What both kernels of Stan programs share: the recording's interpreter (stan.wgsl) and
// the kernels generated from a program's plan (src/stan/codegen.rs). Each dataset's one
// point holds the program's words (x_at(j, point)); chain_finish runs it. The special
// functions are numbered in `tape::Fun`'s order (`kernel::fun_code`) by fun_f and fun_d.
// Needs common/logistic.wgsl (`sigmoid`).

struct Chain {
    point: u32,
    // 1 for a chain (chain_setup runs only for them), 0 for a thread past the last chain.
    live: u32,
}

var<private> g_point: u32;

const NEG_BIG: f32 = -3.0e38;

fn word(j: u32) -> f32 {
    return x_at(j, g_point);
}

fn wordu(j: u32) -> u32 {
    return u32(x_at(j, g_point));
}

fn chain_setup(theta: ptr<function, array<f32, D>>) -> Chain {
    var c: Chain;
    c.point = 0u;
    c.live = 1u;
    return c;
}

// The dataset's one point: where its program is.
fn point_accumulate(c: ptr<function, Chain>, n: u32, acc: ptr<function, array<f32, NACC>>) {
    (*c).point = n;
}

// Whether this invocation runs a chain (threads past the last chain, which density calls too,
// have no program); if it does, its words are its dataset's and its gradient is zeroed.
fn chain_start(c: ptr<function, Chain>, grad: ptr<function, array<f32, D>>) -> bool {
    if ((*c).live == 0u) {
        return false;
    }
    g_point = (*c).point;
    for (var d = 0u; d < D; d++) {
        (*grad)[d] = 0.0;
    }
    return true;
}

// log(1 + x), accurate for small x (Goldberg's trick).
fn st_log1p(x: f32) -> f32 {
    let u = 1.0 + x;
    if (u == 1.0) {
        return x;
    }
    return log(u) * x / (u - 1.0);
}

// e^x - 1, accurate for small x (Kahan's trick).
fn st_expm1(x: f32) -> f32 {
    let u = exp(x);
    if (u == 1.0) {
        return x;
    }
    let um = u - 1.0;
    if (um == -1.0) {
        return -1.0;
    }
    return um * x / log(u);
}

fn st_tanh(x: f32) -> f32 {
    let e = exp(-2.0 * abs(x));
    return sign(x) * (1.0 - e) / (1.0 + e);
}

// ln Γ(x) for x > 0: the recurrence up to x ≥ 6 (unrolled: no loop), then Stirling's series;
// reflection below 0.5.
fn st_lgamma_pos(x0: f32) -> f32 {
    var x = x0;
    var p = 1.0;
    if (x < 6.0) { p *= x; x += 1.0; }
    if (x < 6.0) { p *= x; x += 1.0; }
    if (x < 6.0) { p *= x; x += 1.0; }
    if (x < 6.0) { p *= x; x += 1.0; }
    if (x < 6.0) { p *= x; x += 1.0; }
    if (x < 6.0) { p *= x; x += 1.0; }
    let f = 1.0 / (x * x);
    let series = (1.0 / 12.0 - f * (1.0 / 360.0 - f / 1260.0)) / x;
    return (x - 0.5) * log(x) - x + 0.91893853320467274 + series - log(p);
}

fn st_lgamma(x: f32) -> f32 {
    if (x < 0.5) {
        let s = abs(sin(3.14159265358979 * x));
        return log(3.14159265358979 / s) - st_lgamma_pos(1.0 - x);
    }
    return st_lgamma_pos(x);
}

fn st_digamma_pos(x0: f32) -> f32 {
    var x = x0;
    var r = 0.0;
    if (x < 6.0) { r -= 1.0 / x; x += 1.0; }
    if (x < 6.0) { r -= 1.0 / x; x += 1.0; }
    if (x < 6.0) { r -= 1.0 / x; x += 1.0; }
    if (x < 6.0) { r -= 1.0 / x; x += 1.0; }
    if (x < 6.0) { r -= 1.0 / x; x += 1.0; }
    if (x < 6.0) { r -= 1.0 / x; x += 1.0; }
    let f = 1.0 / (x * x);
    return r + log(x) - 0.5 / x - f * (1.0 / 12.0 - f * (1.0 / 120.0 - f / 252.0));
}

fn st_digamma(x: f32) -> f32 {
    if (x < 0.5) {
        return st_digamma_pos(1.0 - x) - 3.14159265358979 / tan(3.14159265358979 * x);
    }
    return st_digamma_pos(x);
}

fn st_trigamma_pos(x0: f32) -> f32 {
    var x = x0;
    var r = 0.0;
    if (x < 6.0) { r += 1.0 / (x * x); x += 1.0; }
    if (x < 6.0) { r += 1.0 / (x * x); x += 1.0; }
    if (x < 6.0) { r += 1.0 / (x * x); x += 1.0; }
    if (x < 6.0) { r += 1.0 / (x * x); x += 1.0; }
    if (x < 6.0) { r += 1.0 / (x * x); x += 1.0; }
    if (x < 6.0) { r += 1.0 / (x * x); x += 1.0; }
    let f = 1.0 / (x * x);
    return r + 1.0 / x + f / 2.0 + f / x * (1.0 / 6.0 - f * (1.0 / 30.0 - f / 42.0));
}

fn st_trigamma(x: f32) -> f32 {
    if (x < 0.5) {
        let s = sin(3.14159265358979 * x);
        return -st_trigamma_pos(1.0 - x) + 9.8696044010893586 / (s * s);
    }
    return st_trigamma_pos(x);
}

// erfc x with relative error below 1.2e-7 everywhere (Numerical Recipes' erfcc, a
// Chebyshev fit), so the tails keep their precision.
fn st_erfc(x: f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
        + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
        + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * exp(-z * z + p);
    return select(2.0 - r, r, x >= 0.0);
}

// a^b; a negative base with an integer exponent as Rust's powf gives it.
fn st_pow(a: f32, b: f32) -> f32 {
    if (a < 0.0 && b == floor(b)) {
        let p = pow(-a, b);
        return select(p, -p, fract(0.5 * b) != 0.0);
    }
    if (a == 0.0) {
        if (b > 0.0) {
            return 0.0;
        }
        if (b == 0.0) {
            return 1.0;
        }
    }
    return pow(a, b);
}

// The functions of `tape::Fun`, in its order: fun_f_N is function N (the generated kernels
// call it by name, so that no switch is left to fold), fun_f(N, x) the interpreter's.
fn fun_f_0(x: f32) -> f32 {
    return exp(x);
}

fn fun_f_1(x: f32) -> f32 {
    return log(x);
}

fn fun_f_2(x: f32) -> f32 {
    return sqrt(x);
}

fn fun_f_3(x: f32) -> f32 {
    return st_log1p(x);
}

fn fun_f_4(x: f32) -> f32 {
    return st_expm1(x);
}

fn fun_f_5(x: f32) -> f32 {
    return st_lgamma(x);
}

fn fun_f_6(x: f32) -> f32 {
    return sigmoid(x);
}

fn fun_f_7(x: f32) -> f32 {
    return max(x, 0.0) + st_log1p(exp(-abs(x)));
}

fn fun_f_8(x: f32) -> f32 {
    return abs(x);
}

fn fun_f_9(x: f32) -> f32 {
    return sin(x);
}

fn fun_f_10(x: f32) -> f32 {
    return cos(x);
}

fn fun_f_11(x: f32) -> f32 {
    return tan(x);
}

fn fun_f_12(x: f32) -> f32 {
    return st_tanh(x);
}

fn fun_f_13(x: f32) -> f32 {
    return atan(x);
}

fn fun_f_14(x: f32) -> f32 {
    return st_digamma(x);
}

fn fun_f_15(x: f32) -> f32 {
    return st_erfc(x);
}

fn fun_f(f: u32, x: f32) -> f32 {
    switch f {
        case 0u: { return fun_f_0(x); }
        case 1u: { return fun_f_1(x); }
        case 2u: { return fun_f_2(x); }
        case 3u: { return fun_f_3(x); }
        case 4u: { return fun_f_4(x); }
        case 5u: { return fun_f_5(x); }
        case 6u: { return fun_f_6(x); }
        case 7u: { return fun_f_7(x); }
        case 8u: { return fun_f_8(x); }
        case 9u: { return fun_f_9(x); }
        case 10u: { return fun_f_10(x); }
        case 11u: { return fun_f_11(x); }
        case 12u: { return fun_f_12(x); }
        case 13u: { return fun_f_13(x); }
        case 14u: { return fun_f_14(x); }
        default: { return fun_f_15(x); }
    }
}

// Their derivatives at x, given y = f(x).
fn fun_d_0(x: f32, y: f32) -> f32 {
    return y;
}

fn fun_d_1(x: f32, y: f32) -> f32 {
    return 1.0 / x;
}

fn fun_d_2(x: f32, y: f32) -> f32 {
    return 0.5 / y;
}

fn fun_d_3(x: f32, y: f32) -> f32 {
    return 1.0 / (1.0 + x);
}

fn fun_d_4(x: f32, y: f32) -> f32 {
    return y + 1.0;
}

fn fun_d_5(x: f32, y: f32) -> f32 {
    return st_digamma(x);
}

fn fun_d_6(x: f32, y: f32) -> f32 {
    return y * (1.0 - y);
}

fn fun_d_7(x: f32, y: f32) -> f32 {
    return sigmoid(x);
}

fn fun_d_8(x: f32, y: f32) -> f32 {
    return sign(x);
}

fn fun_d_9(x: f32, y: f32) -> f32 {
    return cos(x);
}

fn fun_d_10(x: f32, y: f32) -> f32 {
    return -sin(x);
}

fn fun_d_11(x: f32, y: f32) -> f32 {
    return 1.0 + y * y;
}

fn fun_d_12(x: f32, y: f32) -> f32 {
    return 1.0 - y * y;
}

fn fun_d_13(x: f32, y: f32) -> f32 {
    return 1.0 / (1.0 + x * x);
}

fn fun_d_14(x: f32, y: f32) -> f32 {
    return st_trigamma(x);
}

fn fun_d_15(x: f32, y: f32) -> f32 {
    return -1.1283791670955126 * exp(-x * x);
}

fn fun_d(f: u32, x: f32, y: f32) -> f32 {
    switch f {
        case 0u: { return fun_d_0(x, y); }
        case 1u: { return fun_d_1(x, y); }
        case 2u: { return fun_d_2(x, y); }
        case 3u: { return fun_d_3(x, y); }
        case 4u: { return fun_d_4(x, y); }
        case 5u: { return fun_d_5(x, y); }
        case 6u: { return fun_d_6(x, y); }
        case 7u: { return fun_d_7(x, y); }
        case 8u: { return fun_d_8(x, y); }
        case 9u: { return fun_d_9(x, y); }
        case 10u: { return fun_d_10(x, y); }
        case 11u: { return fun_d_11(x, y); }
        case 12u: { return fun_d_12(x, y); }
        case 13u: { return fun_d_13(x, y); }
        case 14u: { return fun_d_14(x, y); }
        default: { return fun_d_15(x, y); }
    }
}
