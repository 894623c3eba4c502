// A Stan program's log density and gradient: the WGSL twin of src/stan/kernel.rs, one
// invocation per chain. The recorded program is data: each dataset's single "point" holds
// it, one word per input column (x_at(j, point)), laid out by `Kernel::encode`:
//   [0] instructions (a multiple of UNROLL) | [1] constants C | [2] target operand |
//   [3] first list word | [HEADER..HEADER+C] constants | 3 words per instruction (op, a, b) |
//   the operand lists of Sum and LogSumExp.
// An operand k < C is constant k, otherwise the value in slot k - C. The forward
// values and adjoints every chain needs for the reverse sweep live in scratch storage.
// The host prepends D, NACC, UNROLL, HEADER, common/logistic.wgsl and common/stan.wgsl
// (the special functions, the chain's point and its words), and fills the two unrolled
// slots below.
// A software adapter (lavapipe) caps the loop iterations of an invocation, so the
// instruction loops run a bundle of UNROLL cheap instructions per iteration (or one costly
// instruction alone: lists, powers, special functions) and list loops four items.

// Forward values (slots 0..n) and adjoints (n..2n), chains side by side.
@group(0) @binding(8) var<storage, read_write> scratch: array<f32>;
var<private> g_nc: u32;
var<private> g_ins: u32;
var<private> g_list: u32;
var<private> g_slots: u32;

fn val(i: u32) -> f32 {
    return scratch[i * g_chains + g_chain];
}

fn set_val(i: u32, y: f32) {
    scratch[i * g_chains + g_chain] = y;
}

fn adj(i: u32) -> f32 {
    return scratch[(g_slots + i) * g_chains + g_chain];
}

fn set_adj(i: u32, a: f32) {
    scratch[(g_slots + i) * g_chains + g_chain] = a;
}

fn arg(k: u32) -> f32 {
    if (k < g_nc) {
        return word(HEADER + k);
    }
    return val(k - g_nc);
}

fn give(k: u32, d: f32) {
    if (k >= g_nc) {
        let i = k - g_nc;
        set_adj(i, adj(i) + d);
    }
}

// Item k of a list ending at `end`: its value, or `pad` past the end.
fn item(k: u32, end: u32, pad: f32) -> f32 {
    if (k < end) {
        return arg(wordu(g_list + k));
    }
    return pad;
}

fn list_sum(a: u32, b: u32) -> f32 {
    var s = 0.0;
    for (var k = a; k < b; k += 4u) {
        s += item(k, b, 0.0);
        s += item(k + 1u, b, 0.0);
        s += item(k + 2u, b, 0.0);
        s += item(k + 3u, b, 0.0);
    }
    return s;
}

fn list_lse(a: u32, b: u32) -> f32 {
    var m = NEG_BIG;
    for (var k = a; k < b; k += 4u) {
        m = max(m, max(max(item(k, b, NEG_BIG), item(k + 1u, b, NEG_BIG)),
            max(item(k + 2u, b, NEG_BIG), item(k + 3u, b, NEG_BIG))));
    }
    if (m <= NEG_BIG || !is_finite_f32(m)) {
        return m;
    }
    var s = 0.0;
    for (var k = a; k < b; k += 4u) {
        s += exp(item(k, b, NEG_BIG) - m);
        s += exp(item(k + 1u, b, NEG_BIG) - m);
        s += exp(item(k + 2u, b, NEG_BIG) - m);
        s += exp(item(k + 3u, b, NEG_BIG) - m);
    }
    return m + log(s);
}

// adj[item k] += g · w over a list ending at `end`; w = 1 (Sum) or e^(item - y) (LogSumExp).
fn give_item(k: u32, end: u32, g: f32, lse: bool, y: f32) {
    if (k < end) {
        let o = wordu(g_list + k);
        var d = g;
        if (lse) {
            d = g * exp(arg(o) - y);
        }
        give(o, d);
    }
}

fn give_list(a: u32, b: u32, g: f32, lse: bool, y: f32) {
    for (var k = a; k < b; k += 4u) {
        give_item(k, b, g, lse, y);
        give_item(k + 1u, b, g, lse, y);
        give_item(k + 2u, b, g, lse, y);
        give_item(k + 3u, b, g, lse, y);
    }
}

// A costly instruction, alone in its bundle: a power, a list, or a special function.
fn fwd_slow(i: u32) {
    let w = g_ins + 3u * i;
    let op = wordu(w);
    let a = wordu(w + 1u);
    let b = wordu(w + 2u);
    var y = 0.0;
    switch op {
        case 5u: { y = st_pow(arg(a), arg(b)); }
        case 8u: { y = list_sum(a, b); }
        case 9u: { y = list_lse(a, b); }
        default: { y = fun_f(op - 16u, arg(a)); }
    }
    set_val(i, y);
    set_adj(i, 0.0);
}

fn rev_slow(i: u32) {
    let g = adj(i);
    if (g == 0.0) {
        return;
    }
    let w = g_ins + 3u * i;
    let op = wordu(w);
    let a = wordu(w + 1u);
    let b = wordu(w + 2u);
    let y = val(i);
    switch op {
        case 5u: {
            let va = arg(a);
            let vb = arg(b);
            give(a, g * vb * st_pow(va, vb - 1.0));
            if (b >= g_nc) {
                give(b, g * y * log(va));
            }
        }
        case 8u: { give_list(a, b, g, false, y); }
        case 9u: { give_list(a, b, g, true, y); }
        default: {
            give(a, g * fun_d(op - 16u, arg(a), y));
        }
    }
}

// Whether an instruction runs alone in its bundle (`kernel::is_slow`).
fn is_slow(op: u32) -> bool {
    return op == 5u || op == 8u || op == 9u || op > 18u;
}

// The cheap instructions, unrolled UNROLL times in the loops below.
fn fwd(i: u32, theta: ptr<function, array<f32, D>>) {
    let w = g_ins + 3u * i;
    let op = wordu(w);
    let a = wordu(w + 1u);
    let b = wordu(w + 2u);
    // (Read for every op; an input's `a` is its parameter index.)
    let va = arg(a);
    var y = 0.0;
    switch op {
        case 0u: { y = (*theta)[min(a, D - 1u)]; }
        case 1u: { y = va + arg(b); }
        case 2u: { y = va - arg(b); }
        case 3u: { y = va * arg(b); }
        case 4u: { y = va / arg(b); }
        case 6u: { y = max(va, arg(b)); }
        case 7u: { y = min(va, arg(b)); }
        case 16u: { y = exp(va); }
        case 17u: { y = log(va); }
        case 18u: { y = sqrt(va); }
        default: {}
    }
    set_val(i, y);
    set_adj(i, 0.0);
}

fn rev(i: u32, grad: ptr<function, array<f32, D>>) {
    let g = adj(i);
    if (g == 0.0) {
        return;
    }
    let w = g_ins + 3u * i;
    let op = wordu(w);
    let a = wordu(w + 1u);
    let b = wordu(w + 2u);
    switch op {
        case 0u: { (*grad)[min(a, D - 1u)] += g; }
        case 1u: { give(a, g); give(b, g); }
        case 2u: { give(a, g); give(b, -g); }
        case 3u: { give(a, g * arg(b)); give(b, g * arg(a)); }
        case 4u: {
            let vb = arg(b);
            give(a, g / vb);
            give(b, -g * val(i) / vb);
        }
        case 6u: {
            let ge = arg(a) >= arg(b);
            give(a, select(0.0, g, ge));
            give(b, select(g, 0.0, ge));
        }
        case 7u: {
            let le = arg(a) <= arg(b);
            give(a, select(0.0, g, le));
            give(b, select(g, 0.0, le));
        }
        case 16u: { give(a, g * val(i)); }
        case 17u: { give(a, g / arg(a)); }
        case 18u: { give(a, g * 0.5 / val(i)); }
        default: {}
    }
}

fn chain_finish(
    c: ptr<function, Chain>,
    theta: ptr<function, array<f32, D>>,
    n_points: u32,
    acc: ptr<function, array<f32, NACC>>,
    grad: ptr<function, array<f32, D>>,
) -> f32 {
    // Threads past the last chain must not touch scratch.
    if (!chain_start(c, grad)) {
        return 0.0;
    }
    let n_ins = wordu(0u);
    g_slots = n_ins;
    g_nc = wordu(1u);
    let tgt = wordu(2u);
    g_list = wordu(3u);
    g_ins = HEADER + g_nc;
    for (var i = 0u; i < n_ins; i += UNROLL) {
        if (is_slow(wordu(g_ins + 3u * i))) {
            fwd_slow(i);
        } else {
            // {FORWARD}
        }
    }
    if (tgt < g_nc) {
        return word(HEADER + tgt);
    }
    let t = tgt - g_nc;
    set_adj(t, 1.0);
    var i = (t / UNROLL + 1u) * UNROLL;
    loop {
        if (i == 0u) {
            break;
        }
        i -= UNROLL;
        if (is_slow(wordu(g_ins + 3u * i))) {
            rev_slow(i);
        } else {
            // {REVERSE}
        }
    }
    return val(t);
}
