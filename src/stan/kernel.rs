//! The recorded program lowered for evaluation over a block of chains at once
//! (structure of arrays: slot `i` of every chain side by side), so that the cost of reading
//! each instruction is shared by the block and the arithmetic runs in SIMD over chains.
//! Every chain's value goes through the same operations in the same order whatever the
//! block size, so one chain gives the same bits alone or in any block.

// The lane loops index several slices in step.
#![allow(clippy::needless_range_loop)]

use super::tape::{Fun, Op, Sc, Tape};

/// An operand: a node (its slot) or a constant (its index in the pool).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Arg {
    Node(u32),
    Const(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Input(u32),
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
    Fun(Fun),
    /// Σ over `list[a..b]`.
    Sum(u32, u32),
    /// ln Σ e^ over `list[a..b]`.
    LogSumExp(u32, u32),
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Ins {
    pub(super) kind: Kind,
    pub(super) a: Arg,
    pub(super) b: Arg,
}

/// Words before the constants in an encoded program (see [`Kernel::encode`]).
pub const HEADER: usize = 4;
/// Instructions the GPU kernel runs per loop iteration.
pub const UNROLL: usize = 8;

/// A program encoded for the GPU kernel (`shaders/stan.wgsl`), whose layout it documents.
#[derive(Clone, Debug, Default)]
pub struct Encoded {
    /// The words, each an integer below 2^24 or a constant, so that f32 keeps them.
    pub words: Vec<f64>,
    /// Values one chain keeps (instructions, padded to a multiple of [`UNROLL`]).
    pub slots: usize,
    /// Loop iterations of one evaluation, at most (software adapters cap them).
    pub loop_iterations: usize,
}

/// A program ready to run over blocks of chains.
#[derive(Clone, Debug, Default)]
pub struct Kernel {
    pub(super) code: Vec<Ins>,
    pub(super) consts: Vec<f64>,
    pub(super) list: Vec<Arg>,
}

/// The GPU kernel's padding instruction.
const NOP: u32 = 15;

/// Whether the GPU kernel runs an instruction alone in its bundle (`fwd_slow` in
/// `shaders/stan.wgsl`): lists, powers and the functions other than exp, log and sqrt.
fn is_slow(k: Kind) -> bool {
    matches!(
        k,
        Kind::Pow | Kind::Sum(..) | Kind::LogSumExp(..) | Kind::Fun(_)
    ) && !matches!(k, Kind::Fun(Fun::Exp | Fun::Log | Fun::Sqrt))
}

/// The WGSL kernel's number for each function (`fun_f` in `shaders/stan.wgsl`).
pub(super) fn fun_code(f: Fun) -> u32 {
    match f {
        Fun::Exp => 0,
        Fun::Log => 1,
        Fun::Sqrt => 2,
        Fun::Log1p => 3,
        Fun::Expm1 => 4,
        Fun::Lgamma => 5,
        Fun::InvLogit => 6,
        Fun::Log1pExp => 7,
        Fun::Abs => 8,
        Fun::Sin => 9,
        Fun::Cos => 10,
        Fun::Tan => 11,
        Fun::Tanh => 12,
        Fun::Atan => 13,
        Fun::Digamma => 14,
        Fun::Erfc => 15,
    }
}

/// A source operand over a block: a slice (one value per lane) or a constant.
#[derive(Clone, Copy)]
pub(super) enum Src<'a> {
    Lanes(&'a [f64]),
    Scalar(f64),
}

impl Kernel {
    /// Lowers a recording.
    pub fn new(tape: &Tape) -> Self {
        let mut k = Kernel::default();
        let arg = |k: &mut Kernel, s: &Sc| match *s {
            Sc::N(n) => Arg::Node(n),
            Sc::C(c) => {
                k.consts.push(c);
                Arg::Const(k.consts.len() as u32 - 1)
            }
        };
        // Constant 0 is the operand one-operand instructions do not read, so it exists.
        k.consts.push(0.0);
        let none = Arg::Const(0);
        if tape.ops.is_empty() {
            return k;
        }
        for op in &tape.ops {
            let ins = match op {
                Op::Input(i) => Ins {
                    kind: Kind::Input(*i),
                    a: none,
                    b: none,
                },
                Op::Add(a, b)
                | Op::Sub(a, b)
                | Op::Mul(a, b)
                | Op::Div(a, b)
                | Op::Pow(a, b)
                | Op::Max(a, b)
                | Op::Min(a, b) => {
                    let kind = match op {
                        Op::Add(..) => Kind::Add,
                        Op::Sub(..) => Kind::Sub,
                        Op::Mul(..) => Kind::Mul,
                        Op::Div(..) => Kind::Div,
                        Op::Pow(..) => Kind::Pow,
                        Op::Max(..) => Kind::Max,
                        _ => Kind::Min,
                    };
                    let a = arg(&mut k, a);
                    let b = arg(&mut k, b);
                    Ins { kind, a, b }
                }
                Op::Fun(f, a) => {
                    let a = arg(&mut k, a);
                    Ins {
                        kind: Kind::Fun(*f),
                        a,
                        b: none,
                    }
                }
                Op::Sum(t) | Op::LogSumExp(t) => {
                    let start = k.list.len() as u32;
                    for s in t {
                        let x = arg(&mut k, s);
                        k.list.push(x);
                    }
                    let end = k.list.len() as u32;
                    Ins {
                        kind: if let Op::Sum(_) = op {
                            Kind::Sum(start, end)
                        } else {
                            Kind::LogSumExp(start, end)
                        },
                        a: none,
                        b: none,
                    }
                }
            };
            k.code.push(ins);
        }
        k
    }

    /// The program as the GPU kernel reads it, with `target` its output; `dim` parameters.
    /// Instructions come in bundles of [`UNROLL`] slots that the kernel runs in one loop
    /// iteration: a bundle of cheap instructions, or one costly instruction ([`is_slow`])
    /// alone, so that the unrolled loop body holds only the cheap cases. `None` when a word
    /// would not be exact in f32 (more than 2^24 words).
    pub fn encode(&self, target: Sc, dim: usize) -> Option<Encoded> {
        let mut consts = self.consts.clone();
        if let Sc::C(c) = target {
            consts.push(c);
        }
        let nc = consts.len();
        // The slot of every node.
        let mut slot = Vec::with_capacity(self.code.len());
        let mut next = 0usize;
        for ins in &self.code {
            if is_slow(ins.kind) {
                next = next.div_ceil(UNROLL) * UNROLL;
                slot.push(next);
                next += UNROLL;
            } else {
                slot.push(next);
                next += 1;
            }
        }
        let n_slots = next.div_ceil(UNROLL).max(1) * UNROLL;
        let target_word = match target {
            Sc::N(n) => nc + slot[n as usize],
            Sc::C(_) => nc - 1,
        };
        let operand = |a: Arg| -> f64 {
            match a {
                Arg::Const(k) => k as f64,
                Arg::Node(n) => (nc + slot[n as usize]) as f64,
            }
        };
        let list_at = HEADER + nc + 3 * n_slots;
        let mut words = Vec::with_capacity(list_at + self.list.len());
        words.extend([
            n_slots as f64,
            nc as f64,
            target_word as f64,
            list_at as f64,
        ]);
        words.extend(&consts);
        let ins_at = words.len();
        words.resize(list_at, 0.0);
        for k in 0..n_slots {
            words[ins_at + 3 * k] = f64::from(NOP);
        }
        let mut lists = 0usize;
        for (ins, &at) in self.code.iter().zip(&slot) {
            let (op, a, b) = match ins.kind {
                Kind::Input(i) => (0, f64::from(i), 0.0),
                Kind::Add => (1, operand(ins.a), operand(ins.b)),
                Kind::Sub => (2, operand(ins.a), operand(ins.b)),
                Kind::Mul => (3, operand(ins.a), operand(ins.b)),
                Kind::Div => (4, operand(ins.a), operand(ins.b)),
                Kind::Pow => (5, operand(ins.a), operand(ins.b)),
                Kind::Max => (6, operand(ins.a), operand(ins.b)),
                Kind::Min => (7, operand(ins.a), operand(ins.b)),
                Kind::Sum(s, e) | Kind::LogSumExp(s, e) => {
                    // Forward (twice for the maximum) and reverse, four items an iteration.
                    let per = if let Kind::Sum(..) = ins.kind { 2 } else { 3 };
                    lists += per * ((e - s) as usize).div_ceil(4);
                    let op = if let Kind::Sum(..) = ins.kind { 8 } else { 9 };
                    (op, f64::from(s), f64::from(e))
                }
                Kind::Fun(f) => (16 + fun_code(f), operand(ins.a), 0.0),
            };
            words[ins_at + 3 * at..ins_at + 3 * at + 3].copy_from_slice(&[f64::from(op), a, b]);
        }
        words.extend(self.list.iter().map(|&a| operand(a)));
        if words.len() >= 1 << 24 {
            return None;
        }
        Some(Encoded {
            words,
            slots: n_slots,
            loop_iterations: 2 * n_slots / UNROLL + lists + 2 * dim + 8,
        })
    }

    /// Slots per lane.
    pub fn slots(&self) -> usize {
        self.code.len()
    }

    #[inline(always)]
    fn src<'a>(&self, done: &'a [f64], a: Arg, lanes: usize) -> Src<'a> {
        match a {
            Arg::Node(n) => Src::Lanes(&done[n as usize * lanes..(n as usize + 1) * lanes]),
            Arg::Const(c) => Src::Scalar(self.consts[c as usize]),
        }
    }

    /// Evaluates every slot of `lanes` chains; `theta` holds the chains' positions one
    /// after another (`lanes` × `dim`), `vals` gets `slots()` × `lanes` values.
    pub fn forward(&self, theta: &[f64], dim: usize, lanes: usize, vals: &mut [f64]) {
        for (i, ins) in self.code.iter().enumerate() {
            let (done, rest) = vals.split_at_mut(i * lanes);
            let out = &mut rest[..lanes];
            let list = |s: u32, e: u32| &self.list[s as usize..e as usize];
            match ins.kind {
                Kind::Input(k) => {
                    for l in 0..lanes {
                        out[l] = theta[l * dim + k as usize];
                    }
                }
                Kind::Sum(s, e) => {
                    let items = list(s, e);
                    sum_into(out, items.len(), |j| self.src(done, items[j], lanes));
                }
                Kind::LogSumExp(s, e) => {
                    let items = list(s, e);
                    log_sum_exp_into(
                        out,
                        items.len(),
                        |j| self.src(done, items[j], lanes),
                        None,
                        None,
                    );
                }
                k => apply(
                    k,
                    self.src(done, ins.a, lanes),
                    self.src(done, ins.b, lanes),
                    out,
                ),
            }
        }
    }

    /// Rows of working memory the reverse sweep needs beside the adjoints: the longest
    /// log-sum-exp's item weights and its value (0 without one).
    pub(super) fn weight_rows(&self) -> usize {
        let rows = |ins: &Ins| match ins.kind {
            Kind::LogSumExp(s, e) => (e - s) as usize + 1,
            _ => 0,
        };
        self.code.iter().map(rows).max().unwrap_or(0)
    }

    /// Adds the gradient of slot `out` of each lane with respect to that lane's position to
    /// `grad` (`lanes` × `dim`), given the forward values; `adj` is working memory of
    /// (`slots()` + [`Kernel::weight_rows`]) × `lanes`.
    pub fn reverse(
        &self,
        out: usize,
        vals: &[f64],
        adj: &mut [f64],
        dim: usize,
        lanes: usize,
        grad: &mut [f64],
    ) {
        let (adj, weights) = adj.split_at_mut(self.slots() * lanes);
        adj[..(out + 1) * lanes].fill(0.0);
        adj[out * lanes..(out + 1) * lanes].fill(1.0);
        self.reverse_seeded(out + 1, vals, adj, weights, dim, lanes, grad);
    }

    /// The reverse sweep over slots `0..upto` from the adjoints already in `adj` (`upto` ×
    /// `lanes`, consumed): adds each lane's gradient to `grad`. `weights` is working memory
    /// of [`Kernel::weight_rows`] × `lanes`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn reverse_seeded(
        &self,
        upto: usize,
        vals: &[f64],
        adj: &mut [f64],
        weights: &mut [f64],
        dim: usize,
        lanes: usize,
        grad: &mut [f64],
    ) {
        for i in (0..upto).rev() {
            let ins = self.code[i];
            let (before, rest) = adj.split_at_mut(i * lanes);
            let a = &rest[..lanes];
            if a.iter().all(|&x| x == 0.0) {
                continue;
            }
            let y = &vals[i * lanes..(i + 1) * lanes];
            let slot = |n: u32| n as usize * lanes..(n as usize + 1) * lanes;
            match ins.kind {
                Kind::Input(k) => {
                    for l in 0..lanes {
                        grad[l * dim + k as usize] += a[l];
                    }
                }
                Kind::Sum(s, e) => {
                    for &x in &self.list[s as usize..e as usize] {
                        if let Arg::Node(n) = x {
                            give_item(a, &mut before[slot(n)]);
                        }
                    }
                }
                Kind::LogSumExp(s, e) => {
                    // The items' weights, from the exponentials of the forward sweep's sum
                    // (as the plan keeps them), computed again.
                    let items = &self.list[s as usize..e as usize];
                    let (w, out) = weights.split_at_mut(items.len() * lanes);
                    let out = &mut out[..lanes];
                    let item = |j: usize| self.src(vals, items[j], lanes);
                    log_sum_exp_into(out, items.len(), item, Some((w, lanes)), None);
                    for (j, &x) in items.iter().enumerate() {
                        if let Arg::Node(n) = x {
                            let (w, d) = (&w[j * lanes..(j + 1) * lanes], &mut before[slot(n)]);
                            for l in 0..lanes {
                                d[l] += a[l] * w[l];
                            }
                        }
                    }
                }
                k => {
                    let (va, vb) = (self.src(vals, ins.a, lanes), self.src(vals, ins.b, lanes));
                    if let Arg::Node(n) = ins.a {
                        give_partial(k, false, a, y, va, vb, &mut before[slot(n)]);
                    }
                    if let Arg::Node(n) = ins.b {
                        give_partial(k, true, a, y, va, vb, &mut before[slot(n)]);
                    }
                }
            }
        }
    }
}

/// `out[l] = kind(a[l], b[l])` for the kinds of one or two operands (not inputs or lists,
/// which the callers run).
#[inline(always)]
pub(super) fn apply(kind: Kind, a: Src, b: Src, out: &mut [f64]) {
    #[inline(always)]
    fn bin(a: Src, b: Src, out: &mut [f64], f: impl Fn(f64, f64) -> f64) {
        let n = out.len();
        match (a, b) {
            (Src::Lanes(a), Src::Lanes(b)) => {
                let (a, b) = (&a[..n], &b[..n]);
                for l in 0..n {
                    out[l] = f(a[l], b[l]);
                }
            }
            (Src::Lanes(a), Src::Scalar(b)) => {
                let a = &a[..n];
                for l in 0..n {
                    out[l] = f(a[l], b);
                }
            }
            (Src::Scalar(a), Src::Lanes(b)) => {
                let b = &b[..n];
                for l in 0..n {
                    out[l] = f(a, b[l]);
                }
            }
            (Src::Scalar(a), Src::Scalar(b)) => out.fill(f(a, b)),
        }
    }
    match kind {
        Kind::Add => bin(a, b, out, |x, y| x + y),
        Kind::Sub => bin(a, b, out, |x, y| x - y),
        Kind::Mul => bin(a, b, out, |x, y| x * y),
        Kind::Div => bin(a, b, out, |x, y| x / y),
        Kind::Pow => bin(a, b, out, f64::powf),
        Kind::Max => bin(a, b, out, f64::max),
        Kind::Min => bin(a, b, out, f64::min),
        Kind::Fun(f) => bin(a, Src::Scalar(0.0), out, |x, _| f.f(x)),
        Kind::Input(_) | Kind::Sum(..) | Kind::LogSumExp(..) => {
            debug_assert!(false, "apply: {kind:?} is run by the caller")
        }
    }
}

/// An operand of a fused step as its lane loop reads it: a row of lanes or one value.
pub(super) trait Get: Copy {
    fn lane(self, l: usize) -> f64;
}

impl Get for &[f64] {
    #[inline(always)]
    fn lane(self, l: usize) -> f64 {
        self[l]
    }
}

/// One value for every lane.
#[derive(Clone, Copy)]
pub(super) struct Splat(pub(super) f64);

impl Get for Splat {
    #[inline(always)]
    fn lane(self, _: usize) -> f64 {
        self.0
    }
}

/// Runs `$body` with each operand bound to a row of `$n` lanes or a [`Splat`], one copy
/// of the body per combination, so that each lane loop vectorises.
macro_rules! each {
    ($n:expr; $src:expr => $x:ident $(, $rest:expr => $y:ident)*; $body:block) => {
        match $src {
            Src::Lanes(s) => {
                let $x: &[f64] = &s[..$n];
                each!($n; $($rest => $y),*; $body)
            }
            Src::Scalar(c) => {
                let $x = Splat(c);
                each!($n; $($rest => $y),*; $body)
            }
        }
    };
    ($n:expr; ; $body:block) => {
        $body
    };
}
pub(super) use each;

/// `out[l] = Σ_j item(j)[l]`, in item order, four items per pass over the lanes.
#[inline(always)]
pub(super) fn sum_into<'a>(out: &mut [f64], n: usize, item: impl Fn(usize) -> Src<'a>) {
    let lanes = out.len();
    // −0 is the identity of addition (x + −0 is x, bit for bit), so it pads the last pass.
    let at = |j: usize| if j < n { item(j) } else { Src::Scalar(-0.0) };
    let mut j = 0;
    loop {
        let first = j == 0;
        each!(lanes; at(j) => a, at(j + 1) => b, at(j + 2) => c, at(j + 3) => d; {
            if first {
                for l in 0..lanes {
                    out[l] = 0.0 + a.lane(l) + b.lane(l) + c.lane(l) + d.lane(l);
                }
            } else {
                for l in 0..lanes {
                    out[l] = out[l] + a.lane(l) + b.lane(l) + c.lane(l) + d.lane(l);
                }
            }
        });
        j += 4;
        if j >= n {
            break;
        }
    }
}

/// `out[l] = ln Σ_j e^item(j)[l]` (the largest item taken out first), with the
/// branch-free [`crate::math::exp`] and [`crate::math::ln`] that vectorise. With
/// `weights` (values and a stride), item `j`'s weight `e^(item(j) − out)` (the result's
/// derivative with respect to it) goes to `weights[j × stride..][..lanes]`, from the
/// exponentials the sum computes, so that the reverse sweep needs none of its own. With
/// `sums`, the logarithm is left to the caller: `out[l]` is the largest item and
/// `sums[l]` the sum of the exponentials after taking it out (1 where the largest item is
/// not finite, and `out[l]` the result), so that the result is `out[l] + ln sums[l]`;
/// `sums` comes with `weights` (the plan's terms keep both).
#[inline(always)]
pub(super) fn log_sum_exp_into<'a>(
    out: &mut [f64],
    n: usize,
    item: impl Fn(usize) -> Src<'a>,
    weights: Option<(&mut [f64], usize)>,
    sums: Option<&mut [f64]>,
) {
    let lanes = out.len();
    if n == 2 {
        // The common pair (a two-component mixture, two states) in one pass. The larger
        // item's exponential, e^(m − m), is 1 exactly, so only the other's is computed:
        // the same sum, bit for bit, as the passes below (NaN when either item is NaN).
        let weights = weights.map(|(w, stride)| {
            let (w0, w1) = w.split_at_mut(stride);
            (&mut w0[..lanes], &mut w1[..lanes])
        });
        // One lane loop per combination of outputs, so that each vectorises: `$body`
        // sees the largest item `m`, the other's exponential `e`, their sum `s`, and
        // whether the first item is the larger.
        macro_rules! pair {
            (|$l:ident, $m:ident, $e:ident, $s:ident, $first:ident| $body:block) => {
                each!(lanes; item(0) => a, item(1) => b; {
                    for $l in 0..lanes {
                        let (x, y) = (a.lane($l), b.lane($l));
                        let $m = f64::NEG_INFINITY.max(x).max(y);
                        let $first = x >= y;
                        let other = if x.is_nan() || y.is_nan() {
                            f64::NAN
                        } else if $first {
                            y
                        } else {
                            x
                        };
                        let $e = crate::math::exp(other - $m);
                        let $s = 1.0 + $e;
                        $body
                    }
                })
            };
        }
        // The item weights 1/s and e/s, the larger item's first.
        let pair_weights = |s: f64, e: f64, first: bool| {
            let r = 1.0 / s;
            if first {
                (r, e * r)
            } else {
                (e * r, r)
            }
        };
        match (weights, sums) {
            (None, None) => pair!(|l, m, e, s, first| {
                let _ = (e, first);
                let ln = if s.is_nan() { s } else { crate::math::ln(s) };
                out[l] = if m.is_finite() { m + ln } else { m };
            }),
            (Some((w0, w1)), None) => pair!(|l, m, e, s, first| {
                let ln = if s.is_nan() { s } else { crate::math::ln(s) };
                out[l] = if m.is_finite() { m + ln } else { m };
                (w0[l], w1[l]) = pair_weights(s, e, first);
            }),
            (Some((w0, w1)), Some(sums)) => pair!(|l, m, e, s, first| {
                sums[l] = if m.is_finite() { s } else { 1.0 };
                out[l] = m;
                (w0[l], w1[l]) = pair_weights(s, e, first);
            }),
            (None, Some(_)) => unreachable!("a log-sum-exp leaves its logarithm with its weights"),
        }
        return;
    }
    const CHUNK: usize = 64;
    let mut sum = [0.0f64; CHUNK];
    let (mut weights, mut sums) = (weights, sums);
    for (c, out) in out.chunks_mut(CHUNK).enumerate() {
        let (base, lanes) = (c * CHUNK, out.len());
        let sum = &mut sum[..lanes];
        // Item `j` on this chunk's lanes.
        let at = |j: usize| match item(j) {
            Src::Lanes(x) => Src::Lanes(&x[base..base + lanes]),
            s => s,
        };
        out.fill(f64::NEG_INFINITY);
        // Each item's form matched outside its lane loop, so that the loops vectorise.
        for j in 0..n {
            each!(lanes; at(j) => x; {
                for l in 0..lanes {
                    out[l] = out[l].max(x.lane(l));
                }
            });
        }
        sum.fill(0.0);
        for j in 0..n {
            match &mut weights {
                Some((w, stride)) => {
                    let w = &mut w[j * *stride + base..][..lanes];
                    each!(lanes; at(j) => x; {
                        for l in 0..lanes {
                            w[l] = crate::math::exp(x.lane(l) - out[l]);
                            sum[l] += w[l];
                        }
                    });
                }
                None => each!(lanes; at(j) => x; {
                    for l in 0..lanes {
                        sum[l] += crate::math::exp(x.lane(l) - out[l]);
                    }
                }),
            }
        }
        // The sum is at least 1 (the largest item's term) or NaN.
        match &mut sums {
            Some(sums) => {
                for l in 0..lanes {
                    sums[base + l] = if out[l].is_finite() { sum[l] } else { 1.0 };
                }
            }
            None => {
                for l in 0..lanes {
                    let s = sum[l];
                    let ln = if s.is_nan() { s } else { crate::math::ln(s) };
                    if out[l].is_finite() {
                        out[l] += ln;
                    }
                }
            }
        }
        if let Some((w, stride)) = &mut weights {
            for l in 0..lanes {
                sum[l] = 1.0 / sum[l];
            }
            for j in 0..n {
                let w = &mut w[j * *stride + base..][..lanes];
                for l in 0..lanes {
                    w[l] *= sum[l];
                }
            }
        }
    }
}

/// Adds `adj[l]` to `dst[l]`: what a sum gives each of its items.
#[inline(always)]
pub(super) fn give_item(adj: &[f64], dst: &mut [f64]) {
    let n = adj.len();
    let dst = &mut dst[..n];
    for l in 0..n {
        dst[l] += adj[l];
    }
}

/// Adds `adj[l]` times the partial derivative of `kind`'s result `y` with respect to its
/// first operand (value `va`), or its second (`vb`) when `second`, to `dst[l]`, for the
/// kinds [`apply`] runs.
#[inline(always)]
pub(super) fn give_partial(
    kind: Kind,
    second: bool,
    adj: &[f64],
    y: &[f64],
    va: Src,
    vb: Src,
    dst: &mut [f64],
) {
    let n = adj.len();
    let (adj, y, dst) = (&adj[..n], &y[..n], &mut dst[..n]);
    // One loop per pair of operand forms, so that each vectorises.
    macro_rules! give {
        (|$a:ident, $b:ident, $y:ident| $d:expr) => {
            match (va, vb) {
                (Src::Lanes(xa), Src::Lanes(xb)) => {
                    let (xa, xb) = (&xa[..n], &xb[..n]);
                    for l in 0..n {
                        let ($a, $b, $y) = (xa[l], xb[l], y[l]);
                        dst[l] += adj[l] * $d;
                    }
                }
                (Src::Lanes(xa), Src::Scalar($b)) => {
                    let xa = &xa[..n];
                    for l in 0..n {
                        let ($a, $y) = (xa[l], y[l]);
                        dst[l] += adj[l] * $d;
                    }
                }
                (Src::Scalar($a), Src::Lanes(xb)) => {
                    let xb = &xb[..n];
                    for l in 0..n {
                        let ($b, $y) = (xb[l], y[l]);
                        dst[l] += adj[l] * $d;
                    }
                }
                (Src::Scalar($a), Src::Scalar($b)) => {
                    for l in 0..n {
                        let $y = y[l];
                        dst[l] += adj[l] * $d;
                    }
                }
            }
        };
    }
    match (kind, second) {
        (Kind::Add, _) | (Kind::Sub, false) => {
            for l in 0..n {
                dst[l] += adj[l];
            }
        }
        (Kind::Sub, true) => {
            for l in 0..n {
                dst[l] -= adj[l];
            }
        }
        (Kind::Mul, false) => give!(|_a, b, _y| b),
        (Kind::Mul, true) => give!(|a, _b, _y| a),
        (Kind::Div, false) => give!(|_a, b, _y| 1.0 / b),
        (Kind::Div, true) => give!(|_a, b, y| -y / b),
        (Kind::Pow, false) => give!(|a, b, _y| b * a.powf(b - 1.0)),
        (Kind::Pow, true) => give!(|a, _b, y| y * a.ln()),
        (Kind::Max, false) => give!(|a, b, _y| f64::from(u8::from(a >= b))),
        (Kind::Max, true) => give!(|a, b, _y| f64::from(u8::from(a < b))),
        (Kind::Min, false) => give!(|a, b, _y| f64::from(u8::from(a <= b))),
        (Kind::Min, true) => give!(|a, b, _y| f64::from(u8::from(a > b))),
        (Kind::Fun(f), false) => give!(|a, _b, y| f.d(a, y)),
        _ => debug_assert!(false, "give_partial: {kind:?} has no operand {second}"),
    }
}
