//! The compiled form of a Stan program's log density: a straight-line list of scalar
//! operations on the unconstrained parameters (data folded in as constants), recorded once
//! by running the program symbolically. One forward sweep gives the log density, one reverse
//! sweep its exact gradient (reverse-mode differentiation of the recorded program).

use std::collections::HashMap;

/// A scalar while recording: a constant (data, literals, anything that does not depend on
/// the parameters) or the index of a recorded node.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sc {
    /// A known value.
    C(f64),
    /// A node of the tape.
    N(u32),
}

impl Sc {
    /// The constant, when this is one.
    pub fn constant(self) -> Option<f64> {
        match self {
            Sc::C(v) => Some(v),
            Sc::N(_) => None,
        }
    }
}

/// Elementary functions of one argument, with their derivatives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fun {
    /// e^x
    Exp,
    /// ln x
    Log,
    /// √x
    Sqrt,
    /// ln(1 + x)
    Log1p,
    /// e^x − 1
    Expm1,
    /// ln Γ(x)
    Lgamma,
    /// 1 / (1 + e^−x)
    InvLogit,
    /// ln(1 + e^x)
    Log1pExp,
    /// |x|
    Abs,
    /// sin x
    Sin,
    /// cos x
    Cos,
    /// tan x
    Tan,
    /// tanh x
    Tanh,
    /// atan x
    Atan,
    /// ψ(x) (the derivative of ln Γ)
    Digamma,
    /// erfc x = 1 − erf x
    Erfc,
}

impl Fun {
    /// The value at `x`.
    pub fn f(self, x: f64) -> f64 {
        match self {
            Fun::Exp => x.exp(),
            Fun::Log => x.ln(),
            Fun::Sqrt => x.sqrt(),
            Fun::Log1p => x.ln_1p(),
            Fun::Expm1 => x.exp_m1(),
            Fun::Lgamma => crate::math::lgamma(x),
            Fun::InvLogit => {
                if x >= 0.0 {
                    1.0 / (1.0 + (-x).exp())
                } else {
                    let e = x.exp();
                    e / (1.0 + e)
                }
            }
            Fun::Log1pExp => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            Fun::Abs => x.abs(),
            Fun::Sin => x.sin(),
            Fun::Cos => x.cos(),
            Fun::Tan => x.tan(),
            Fun::Tanh => x.tanh(),
            Fun::Atan => x.atan(),
            Fun::Digamma => digamma(x),
            Fun::Erfc => statrs::function::erf::erfc(x),
        }
    }

    /// The derivative at `x`, given the value `y = f(x)`.
    pub(super) fn d(self, x: f64, y: f64) -> f64 {
        match self {
            Fun::Exp => y,
            Fun::Log => 1.0 / x,
            Fun::Sqrt => 0.5 / y,
            Fun::Log1p => 1.0 / (1.0 + x),
            Fun::Expm1 => y + 1.0,
            Fun::Lgamma => digamma(x),
            Fun::InvLogit => y * (1.0 - y),
            Fun::Log1pExp => Fun::InvLogit.f(x),
            Fun::Abs => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            Fun::Sin => x.cos(),
            Fun::Cos => -x.sin(),
            Fun::Tan => 1.0 + y * y,
            Fun::Tanh => 1.0 - y * y,
            Fun::Atan => 1.0 / (1.0 + x * x),
            Fun::Digamma => trigamma(x),
            Fun::Erfc => -std::f64::consts::FRAC_2_SQRT_PI * (-x * x).exp(),
        }
    }
}

/// ψ(x) by recurrence to x ≥ 6 and the asymptotic series.
pub fn digamma(mut x: f64) -> f64 {
    let mut r = 0.0;
    if x <= 0.0 && x == x.floor() {
        return f64::NAN;
    }
    if x < 0.0 {
        // Reflection: ψ(1 − x) − ψ(x) = π cot(πx).
        return digamma(1.0 - x) - std::f64::consts::PI / (std::f64::consts::PI * x).tan();
    }
    while x < 6.0 {
        r -= 1.0 / x;
        x += 1.0;
    }
    let f = 1.0 / (x * x);
    r + x.ln()
        - 0.5 / x
        - f * (1.0 / 12.0 - f * (1.0 / 120.0 - f * (1.0 / 252.0 - f * (1.0 / 240.0 - f / 132.0))))
}

/// ψ′(x) by recurrence to x ≥ 6 and the asymptotic series.
pub fn trigamma(mut x: f64) -> f64 {
    let mut r = 0.0;
    if x <= 0.0 && x == x.floor() {
        return f64::NAN;
    }
    if x < 0.0 {
        let s = (std::f64::consts::PI * x).sin();
        return -trigamma(1.0 - x) + std::f64::consts::PI * std::f64::consts::PI / (s * s);
    }
    while x < 6.0 {
        r += 1.0 / (x * x);
        x += 1.0;
    }
    let f = 1.0 / (x * x);
    r + 1.0 / x + f / 2.0 + f / x * (1.0 / 6.0 - f * (1.0 / 30.0 - f * (1.0 / 42.0 - f / 30.0)))
}

/// One recorded operation.
#[derive(Clone, Debug)]
pub enum Op {
    /// The i-th unconstrained parameter.
    Input(u32),
    /// a + b
    Add(Sc, Sc),
    /// a − b
    Sub(Sc, Sc),
    /// a · b
    Mul(Sc, Sc),
    /// a / b
    Div(Sc, Sc),
    /// a^b
    Pow(Sc, Sc),
    /// max(a, b) (the derivative follows the larger)
    Max(Sc, Sc),
    /// min(a, b)
    Min(Sc, Sc),
    /// f(a)
    Fun(Fun, Sc),
    /// Σ terms
    Sum(Vec<Sc>),
    /// ln Σ e^terms
    LogSumExp(Vec<Sc>),
}

/// A recorded program.
#[derive(Clone, Debug, Default)]
pub struct Tape {
    /// The operations, in order; node i is the value of `ops[i]`.
    pub ops: Vec<Op>,
    memo: HashMap<(Fun, u32), u32>,
    /// The node of each binary operation already recorded (operation, operands' keys).
    memo2: HashMap<BinKey, u32>,
}

/// A binary operation as a hash key: its number and its operands' keys.
type BinKey = (u8, (bool, u64), (bool, u64));

/// An operand as a hash key: a node's index or a constant's bits.
fn key(s: Sc) -> (bool, u64) {
    match s {
        Sc::C(c) => (false, c.to_bits()),
        Sc::N(n) => (true, u64::from(n)),
    }
}

impl Tape {
    fn push(&mut self, op: Op) -> Sc {
        self.ops.push(op);
        Sc::N(self.ops.len() as u32 - 1)
    }

    /// A binary operation, recorded once per operands (the operations are pure).
    fn push2(&mut self, op: Op) -> Sc {
        let k = match &op {
            Op::Add(a, b) => (0, *a, *b),
            Op::Sub(a, b) => (1, *a, *b),
            Op::Mul(a, b) => (2, *a, *b),
            Op::Div(a, b) => (3, *a, *b),
            Op::Pow(a, b) => (4, *a, *b),
            Op::Max(a, b) => (5, *a, *b),
            Op::Min(a, b) => (6, *a, *b),
            _ => return self.push(op),
        };
        let k = (k.0, key(k.1), key(k.2));
        if let Some(&n) = self.memo2.get(&k) {
            return Sc::N(n);
        }
        let r = self.push(op);
        if let Sc::N(n) = r {
            self.memo2.insert(k, n);
        }
        r
    }

    /// A node for unconstrained parameter `i`.
    pub fn input(&mut self, i: usize) -> Sc {
        self.push(Op::Input(i as u32))
    }

    /// a + b
    pub fn add(&mut self, a: Sc, b: Sc) -> Sc {
        match (a, b) {
            (Sc::C(x), Sc::C(y)) => Sc::C(x + y),
            (Sc::C(0.0), o) | (o, Sc::C(0.0)) => o,
            _ => self.push2(Op::Add(a, b)),
        }
    }

    /// a − b
    pub fn sub(&mut self, a: Sc, b: Sc) -> Sc {
        match (a, b) {
            (Sc::C(x), Sc::C(y)) => Sc::C(x - y),
            (o, Sc::C(0.0)) => o,
            _ => self.push2(Op::Sub(a, b)),
        }
    }

    /// a · b
    pub fn mul(&mut self, a: Sc, b: Sc) -> Sc {
        match (a, b) {
            (Sc::C(x), Sc::C(y)) => Sc::C(x * y),
            (Sc::C(1.0), o) | (o, Sc::C(1.0)) => o,
            _ => self.push2(Op::Mul(a, b)),
        }
    }

    /// a / b
    pub fn div(&mut self, a: Sc, b: Sc) -> Sc {
        match (a, b) {
            (Sc::C(x), Sc::C(y)) => Sc::C(x / y),
            (o, Sc::C(1.0)) => o,
            _ => self.push2(Op::Div(a, b)),
        }
    }

    /// −a
    pub fn neg(&mut self, a: Sc) -> Sc {
        self.sub(Sc::C(0.0), a)
    }

    /// a^b
    pub fn pow(&mut self, a: Sc, b: Sc) -> Sc {
        match (a, b) {
            (Sc::C(x), Sc::C(y)) => Sc::C(x.powf(y)),
            (o, Sc::C(1.0)) => o,
            (o, Sc::C(2.0)) => self.mul(o, o),
            _ => self.push2(Op::Pow(a, b)),
        }
    }

    /// max(a, b)
    pub fn max(&mut self, a: Sc, b: Sc) -> Sc {
        match (a, b) {
            (Sc::C(x), Sc::C(y)) => Sc::C(x.max(y)),
            _ => self.push2(Op::Max(a, b)),
        }
    }

    /// min(a, b)
    pub fn min(&mut self, a: Sc, b: Sc) -> Sc {
        match (a, b) {
            (Sc::C(x), Sc::C(y)) => Sc::C(x.min(y)),
            _ => self.push2(Op::Min(a, b)),
        }
    }

    /// f(a), recorded once per operand.
    pub fn fun(&mut self, f: Fun, a: Sc) -> Sc {
        match a {
            Sc::C(x) => Sc::C(f.f(x)),
            Sc::N(n) => {
                if let Some(&m) = self.memo.get(&(f, n)) {
                    return Sc::N(m);
                }
                let r = self.push(Op::Fun(f, a));
                if let Sc::N(m) = r {
                    self.memo.insert((f, n), m);
                }
                r
            }
        }
    }

    /// Σ terms (constants folded into one).
    pub fn sum(&mut self, terms: &[Sc]) -> Sc {
        let c: f64 = terms.iter().filter_map(|t| t.constant()).sum();
        let mut nodes: Vec<Sc> = terms
            .iter()
            .copied()
            .filter(|t| t.constant().is_none())
            .collect();
        match nodes.len() {
            0 => Sc::C(c),
            1 if c == 0.0 => nodes[0],
            _ => {
                if c != 0.0 {
                    nodes.push(Sc::C(c));
                }
                self.push(Op::Sum(nodes))
            }
        }
    }

    /// ln Σ e^terms.
    pub fn log_sum_exp(&mut self, terms: &[Sc]) -> Sc {
        if let Some(cs) = terms
            .iter()
            .map(|t| t.constant())
            .collect::<Option<Vec<f64>>>()
        {
            return Sc::C(crate::math::log_sum_exp(&cs));
        }
        self.push(Op::LogSumExp(terms.to_vec()))
    }
}
