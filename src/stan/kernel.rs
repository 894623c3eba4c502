//! The recorded program lowered for evaluation over a block of chains at once
//! (structure of arrays: slot `i` of every chain side by side), so that the cost of reading
//! each instruction is shared by the block and the arithmetic runs in SIMD over chains.
//! Every chain's value goes through the same operations in the same order whatever the
//! block size, so one chain gives the same bits alone or in any block.

// The lane loops index several slices in step.
#![allow(clippy::needless_range_loop)]

use super::tape::{Fun, Op, Sc, Tape};

/// An operand: a node (its slot) or a constant (its index in the pool).
#[derive(Clone, Copy, Debug)]
enum Arg {
    Node(u32),
    Const(u32),
}

#[derive(Clone, Copy, Debug)]
enum Kind {
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
struct Ins {
    kind: Kind,
    a: Arg,
    b: Arg,
}

/// A program ready to run over blocks of chains.
#[derive(Clone, Debug, Default)]
pub struct Kernel {
    code: Vec<Ins>,
    consts: Vec<f64>,
    list: Vec<Arg>,
}

/// A source operand over a block: a slice (one value per lane) or a constant.
#[derive(Clone, Copy)]
enum Src<'a> {
    Lanes(&'a [f64]),
    Scalar(f64),
}

impl Src<'_> {
    #[inline(always)]
    fn at(&self, l: usize) -> f64 {
        match self {
            Src::Lanes(s) => s[l],
            Src::Scalar(c) => *c,
        }
    }
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
            macro_rules! bin {
                ($f:expr) => {{
                    let (a, b) = (self.src(done, ins.a, lanes), self.src(done, ins.b, lanes));
                    match (a, b) {
                        (Src::Lanes(a), Src::Lanes(b)) => {
                            for l in 0..lanes {
                                out[l] = $f(a[l], b[l]);
                            }
                        }
                        (Src::Lanes(a), Src::Scalar(b)) => {
                            for l in 0..lanes {
                                out[l] = $f(a[l], b);
                            }
                        }
                        (Src::Scalar(a), Src::Lanes(b)) => {
                            for l in 0..lanes {
                                out[l] = $f(a, b[l]);
                            }
                        }
                        (Src::Scalar(a), Src::Scalar(b)) => out.fill($f(a, b)),
                    }
                }};
            }
            match ins.kind {
                Kind::Input(k) => {
                    for l in 0..lanes {
                        out[l] = theta[l * dim + k as usize];
                    }
                }
                Kind::Add => bin!(|x: f64, y: f64| x + y),
                Kind::Sub => bin!(|x: f64, y: f64| x - y),
                Kind::Mul => bin!(|x: f64, y: f64| x * y),
                Kind::Div => bin!(|x: f64, y: f64| x / y),
                Kind::Pow => bin!(|x: f64, y: f64| x.powf(y)),
                Kind::Max => bin!(|x: f64, y: f64| x.max(y)),
                Kind::Min => bin!(|x: f64, y: f64| x.min(y)),
                Kind::Fun(f) => {
                    let a = self.src(done, ins.a, lanes);
                    for (l, o) in out.iter_mut().enumerate() {
                        *o = f.f(a.at(l));
                    }
                }
                Kind::Sum(s, e) => {
                    out.fill(0.0);
                    for &x in &self.list[s as usize..e as usize] {
                        match self.src(done, x, lanes) {
                            Src::Lanes(a) => {
                                for l in 0..lanes {
                                    out[l] += a[l];
                                }
                            }
                            Src::Scalar(c) => out.iter_mut().for_each(|o| *o += c),
                        }
                    }
                }
                Kind::LogSumExp(s, e) => {
                    let items = &self.list[s as usize..e as usize];
                    for l in 0..lanes {
                        let m = items
                            .iter()
                            .map(|&x| self.src(done, x, lanes).at(l))
                            .fold(f64::NEG_INFINITY, f64::max);
                        out[l] = if !m.is_finite() {
                            m
                        } else {
                            m + items
                                .iter()
                                .map(|&x| (self.src(done, x, lanes).at(l) - m).exp())
                                .sum::<f64>()
                                .ln()
                        };
                    }
                }
            }
        }
    }

    /// Adds the gradient of slot `out` of each lane with respect to that lane's position to
    /// `grad` (`lanes` × `dim`), given the forward values; `adj` is working memory of
    /// `slots()` × `lanes`.
    pub fn reverse(
        &self,
        out: usize,
        vals: &[f64],
        adj: &mut [f64],
        dim: usize,
        lanes: usize,
        grad: &mut [f64],
    ) {
        adj[..(out + 1) * lanes].fill(0.0);
        adj[out * lanes..(out + 1) * lanes].fill(1.0);
        for i in (0..=out).rev() {
            let ins = self.code[i];
            let (before, rest) = adj.split_at_mut(i * lanes);
            let a = &rest[..lanes];
            if a.iter().all(|&x| x == 0.0) {
                continue;
            }
            let y = &vals[i * lanes..(i + 1) * lanes];
            let (va, vb) = (self.src(vals, ins.a, lanes), self.src(vals, ins.b, lanes));
            // adj[x] += a · d(l) for each lane l, when x is a node.
            macro_rules! give {
                ($x:expr, |$l:ident| $d:expr) => {
                    if let Arg::Node(n) = $x {
                        let dst = &mut before[n as usize * lanes..(n as usize + 1) * lanes];
                        for $l in 0..lanes {
                            dst[$l] += a[$l] * $d;
                        }
                    }
                };
            }
            match ins.kind {
                Kind::Input(k) => {
                    for l in 0..lanes {
                        grad[l * dim + k as usize] += a[l];
                    }
                }
                Kind::Add => {
                    give!(ins.a, |l| 1.0);
                    give!(ins.b, |l| 1.0);
                }
                Kind::Sub => {
                    give!(ins.a, |l| 1.0);
                    if let Arg::Node(n) = ins.b {
                        let dst = &mut before[n as usize * lanes..(n as usize + 1) * lanes];
                        for l in 0..lanes {
                            dst[l] -= a[l];
                        }
                    }
                }
                Kind::Mul => {
                    give!(ins.a, |l| vb.at(l));
                    give!(ins.b, |l| va.at(l));
                }
                Kind::Div => {
                    give!(ins.a, |l| 1.0 / vb.at(l));
                    give!(ins.b, |l| -y[l] / vb.at(l));
                }
                Kind::Pow => {
                    give!(ins.a, |l| vb.at(l) * va.at(l).powf(vb.at(l) - 1.0));
                    give!(ins.b, |l| y[l] * va.at(l).ln());
                }
                Kind::Max => {
                    give!(ins.a, |l| f64::from(u8::from(va.at(l) >= vb.at(l))));
                    give!(ins.b, |l| f64::from(u8::from(va.at(l) < vb.at(l))));
                }
                Kind::Min => {
                    give!(ins.a, |l| f64::from(u8::from(va.at(l) <= vb.at(l))));
                    give!(ins.b, |l| f64::from(u8::from(va.at(l) > vb.at(l))));
                }
                Kind::Fun(f) => give!(ins.a, |l| f.d(va.at(l), y[l])),
                Kind::Sum(s, e) => {
                    for &x in &self.list[s as usize..e as usize] {
                        give!(x, |l| 1.0);
                    }
                }
                Kind::LogSumExp(s, e) => {
                    for &x in &self.list[s as usize..e as usize] {
                        let vx = self.src(vals, x, lanes);
                        give!(x, |l| (vx.at(l) - y[l]).exp());
                    }
                }
            }
        }
    }
}
