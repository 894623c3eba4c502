//! Stan's functions: the math library's elementwise and reducing functions, container
//! builders, and the log densities and mass functions (`_lpdf`, `_lpmf`, `_lcdf`, `_lccdf`,
//! and `~`), each written with the tape's elementary operations so that its gradient is
//! exact. A sampling statement drops the terms that do not depend on the parameters, as
//! Stan's `~` does; a `_lpdf` call keeps them.

use super::interp::{scalar, Block, Interp, R};
use super::tape::{Fun, Sc, Tape};
use super::value::Val;
use super::Pos;

const HALF_LOG_2PI: f64 = 0.918_938_533_204_672_7;
const LOG_PI: f64 = 1.144_729_885_849_400_2;

fn err<T>(pos: Pos, msg: impl Into<String>) -> R<T> {
    Err((pos, msg.into()))
}

/// A recorded function of one scalar.
type UnaryFn = &'static dyn Fn(&mut Tape, Sc) -> Sc;

/// The elementwise functions of one real argument.
fn unary(name: &str) -> Option<UnaryFn> {
    Some(match name {
        "exp" => &|t, x| t.fun(Fun::Exp, x),
        "log" => &|t, x| t.fun(Fun::Log, x),
        "sqrt" => &|t, x| t.fun(Fun::Sqrt, x),
        "square" => &|t, x| t.mul(x, x),
        "log1p" => &|t, x| t.fun(Fun::Log1p, x),
        "expm1" => &|t, x| t.fun(Fun::Expm1, x),
        "lgamma" => &|t, x| t.fun(Fun::Lgamma, x),
        "digamma" => &|t, x| t.fun(Fun::Digamma, x),
        "inv_logit" => &|t, x| t.fun(Fun::InvLogit, x),
        "log1p_exp" => &|t, x| t.fun(Fun::Log1pExp, x),
        "abs" | "fabs" => &|t, x| t.fun(Fun::Abs, x),
        "sin" => &|t, x| t.fun(Fun::Sin, x),
        "cos" => &|t, x| t.fun(Fun::Cos, x),
        "tan" => &|t, x| t.fun(Fun::Tan, x),
        "tanh" => &|t, x| t.fun(Fun::Tanh, x),
        "atan" => &|t, x| t.fun(Fun::Atan, x),
        "erfc" => &|t, x| t.fun(Fun::Erfc, x),
        "erf" => &|t, x| {
            let c = t.fun(Fun::Erfc, x);
            t.sub(Sc::C(1.0), c)
        },
        "Phi" => &|t, x| {
            // Φ(x) = erfc(−x/√2) / 2
            let z = t.mul(x, Sc::C(-std::f64::consts::FRAC_1_SQRT_2));
            let c = t.fun(Fun::Erfc, z);
            t.mul(c, Sc::C(0.5))
        },
        "inv" => &|t, x| t.div(Sc::C(1.0), x),
        "inv_sqrt" => &|t, x| {
            let s = t.fun(Fun::Sqrt, x);
            t.div(Sc::C(1.0), s)
        },
        "inv_square" => &|t, x| {
            let s = t.mul(x, x);
            t.div(Sc::C(1.0), s)
        },
        "logit" => &|t, x| {
            let a = t.fun(Fun::Log, x);
            let m = t.sub(Sc::C(1.0), x);
            let b = t.fun(Fun::Log, m);
            t.sub(a, b)
        },
        "log1m" => &|t, x| {
            let n = t.neg(x);
            t.fun(Fun::Log1p, n)
        },
        "log_inv_logit" => &|t, x| {
            let n = t.neg(x);
            let s = t.fun(Fun::Log1pExp, n);
            t.neg(s)
        },
        "log1m_inv_logit" => &|t, x| {
            let s = t.fun(Fun::Log1pExp, x);
            t.neg(s)
        },
        "log1m_exp" => &|t, x| {
            // log(1 - e^x) for x < 0.
            let e = t.fun(Fun::Expm1, x);
            let n = t.neg(e);
            t.fun(Fun::Log, n)
        },
        "log2" => &|t, x| {
            let l = t.fun(Fun::Log, x);
            t.div(l, Sc::C(std::f64::consts::LN_2))
        },
        "log10" => &|t, x| {
            let l = t.fun(Fun::Log, x);
            t.div(l, Sc::C(std::f64::consts::LN_10))
        },
        "exp2" => &|t, x| t.pow(Sc::C(2.0), x),
        "cbrt" => &|t, x| t.pow(x, Sc::C(1.0 / 3.0)),
        "Phi_approx" => &|t, x| {
            // inv_logit(0.07056 x^3 + 1.5976 x)
            let x2 = t.mul(x, x);
            let x3 = t.mul(x2, x);
            let a = t.mul(Sc::C(0.07056), x3);
            let b = t.mul(Sc::C(1.5976), x);
            let s = t.add(a, b);
            t.fun(Fun::InvLogit, s)
        },
        _ => return None,
    })
}

/// Functions of constants only (no derivative is needed or defined).
fn constant_unary(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "floor" => f64::floor,
        "ceil" => f64::ceil,
        "round" => f64::round,
        "trunc" => f64::trunc,
        "inv_Phi" => |p| {
            use statrs::distribution::ContinuousCDF;
            statrs::distribution::Normal::standard().inverse_cdf(p)
        },
        "tgamma" => statrs::function::gamma::gamma,
        _ => return None,
    })
}

impl Interp {
    /// Calls function `name`.
    pub fn call(&mut self, name: &str, args: Vec<Val>, pos: Pos) -> R<Val> {
        let unnormalised = name
            .strip_suffix("_lupdf")
            .map(|d| format!("{d}_lpdf"))
            .or_else(|| name.strip_suffix("_lupmf").map(|d| format!("{d}_lpmf")));
        let user = match self.overload(name, &args, pos)? {
            Some(f) => Some(f),
            None => match &unnormalised {
                Some(full) => self.overload(full, &args, pos)?,
                None => None,
            },
        };
        if let Some(f) = user {
            return self.call_user(&f, args, pos);
        }
        let n = args.len();
        let want = |k: usize| -> R<()> {
            if n == k {
                Ok(())
            } else {
                err(pos, format!("{name} takes {k} argument(s), got {n}"))
            }
        };
        if let Some(f) = unary(name) {
            want(1)?;
            let t = &mut self.tape;
            return Ok(args[0].map(&mut |x| f(t, x)));
        }
        if let Some(f) = constant_unary(name) {
            want(1)?;
            let mut bad = false;
            let v = args[0].map(&mut |x| match x {
                Sc::C(c) => Sc::C(f(c)),
                Sc::N(_) => {
                    bad = true;
                    x
                }
            });
            if bad {
                return err(pos, format!("{name} of a parameter is not supported yet"));
            }
            return Ok(v);
        }
        for suffix in ["_lpdf", "_lupdf", "_lpmf", "_lupmf"] {
            if let Some(dist) = name.strip_suffix(suffix) {
                let drop = suffix.starts_with("_lu");
                return Ok(Val::Real(self.density(dist, &args, drop, pos)?));
            }
        }
        for suffix in ["_lcdf", "_lccdf", "_cdf"] {
            if let Some(dist) = name.strip_suffix(suffix) {
                return Ok(Val::Real(self.cdf(dist, suffix, &args, pos)?));
            }
        }
        if let Some(dist) = name.strip_suffix("_rng") {
            if self.block != Block::Generated {
                return err(
                    pos,
                    format!("{name}: random numbers are drawn only in generated quantities"),
                );
            }
            let Some(rng) = self.rng.as_mut() else {
                return err(pos, format!("{name}: no random stream to draw from here"));
            };
            return super::random::draw(dist, &args, rng, self.nan_args, pos)
                .unwrap_or_else(|| err(pos, format!("{name}: unknown random number generator")));
        }
        if name.ends_with("_log") && name != "multiply_log" && name != "binomial_coefficient_log" {
            return err(
                pos,
                format!("{name}: the _log suffix was removed from Stan; use _lpdf or _lpmf"),
            );
        }
        let t = &mut self.tape;
        let real = |v: &Val| scalar(v, pos);
        Ok(match name {
            "pi" => Val::Real(Sc::C(std::f64::consts::PI)),
            "e" => Val::Real(Sc::C(std::f64::consts::E)),
            "sqrt2" => Val::Real(Sc::C(std::f64::consts::SQRT_2)),
            "log2" if n == 0 => Val::Real(Sc::C(std::f64::consts::LN_2)),
            "log10" if n == 0 => Val::Real(Sc::C(std::f64::consts::LN_10)),
            "negative_infinity" => Val::Real(Sc::C(f64::NEG_INFINITY)),
            "positive_infinity" => Val::Real(Sc::C(f64::INFINITY)),
            "not_a_number" => Val::Real(Sc::C(f64::NAN)),
            "machine_precision" => Val::Real(Sc::C(f64::EPSILON)),
            "pow" => {
                want(2)?;
                return self.binop("^", args[0].clone(), args[1].clone(), pos);
            }
            "fmax"
            | "fmin"
            | "fdim"
            | "hypot"
            | "lbeta"
            | "lchoose"
            | "binomial_coefficient_log"
            | "log_diff_exp"
            | "multiply_log"
            | "lmultiply"
            | "log_inv_logit_diff" => {
                want(2)?;
                let (a, b) = (real(&args[0])?, real(&args[1])?);
                Val::Real(match name {
                    "fmax" => t.max(a, b),
                    "fmin" => t.min(a, b),
                    "fdim" => {
                        let d = t.sub(a, b);
                        t.max(d, Sc::C(0.0))
                    }
                    "hypot" => {
                        let a2 = t.mul(a, a);
                        let b2 = t.mul(b, b);
                        let s = t.add(a2, b2);
                        t.fun(Fun::Sqrt, s)
                    }
                    "lbeta" => lbeta(t, a, b),
                    "lchoose" | "binomial_coefficient_log" => lchoose(t, a, b),
                    "log_diff_exp" => {
                        // a + log1m_exp(b - a)
                        let d = t.sub(b, a);
                        let e = t.fun(Fun::Expm1, d);
                        let ne = t.neg(e);
                        let l = t.fun(Fun::Log, ne);
                        t.add(a, l)
                    }
                    "log_inv_logit_diff" => {
                        let x = t.fun(Fun::InvLogit, a);
                        let y = t.fun(Fun::InvLogit, b);
                        let d = t.sub(x, y);
                        t.fun(Fun::Log, d)
                    }
                    _ => {
                        // multiply_log(a, b) = a log b (0 when a = b = 0)
                        if a == Sc::C(0.0) && b == Sc::C(0.0) {
                            Sc::C(0.0)
                        } else {
                            let l = t.fun(Fun::Log, b);
                            t.mul(a, l)
                        }
                    }
                })
            }
            "log_sum_exp" => {
                if n == 2 && args[0].is_scalar() && args[1].is_scalar() {
                    Val::Real(t.log_sum_exp(&[real(&args[0])?, real(&args[1])?]))
                } else {
                    want(1)?;
                    Val::Real(t.log_sum_exp(&args[0].flat()))
                }
            }
            "log_mix" => {
                want(3)?;
                if !args[0].is_scalar() {
                    // log_mix(theta vector, lps container): log Σ θ_k e^{lp_k}.
                    let th = args[0].flat();
                    let lp = args[1].flat();
                    if th.len() != lp.len() {
                        return err(pos, "log_mix: weights and densities differ in length");
                    }
                    let terms: Vec<Sc> = th
                        .iter()
                        .zip(&lp)
                        .map(|(&w, &l)| {
                            let lw = t.fun(Fun::Log, w);
                            t.add(lw, l)
                        })
                        .collect();
                    Val::Real(t.log_sum_exp(&terms))
                } else {
                    let th = real(&args[0])?;
                    let (a, b) = (real(&args[1])?, real(&args[2])?);
                    let lt = t.fun(Fun::Log, th);
                    let m = t.sub(Sc::C(1.0), th);
                    let l1t = t.fun(Fun::Log, m);
                    let x = t.add(lt, a);
                    let y = t.add(l1t, b);
                    Val::Real(t.log_sum_exp(&[x, y]))
                }
            }
            "sum" => {
                want(1)?;
                if args[0].is_int() {
                    let s: f64 = args[0].flat().iter().filter_map(|s| s.constant()).sum();
                    Val::Int(s as i64)
                } else {
                    Val::Real(t.sum(&args[0].flat()))
                }
            }
            "prod" => {
                want(1)?;
                let v = args[0].flat();
                let mut p = Sc::C(1.0);
                for x in v {
                    p = t.mul(p, x);
                }
                Val::Real(p)
            }
            "mean" | "variance" | "sd" => {
                want(1)?;
                let v = args[0].flat();
                if v.is_empty() || (name != "mean" && v.len() < 2) {
                    return err(pos, format!("{name} of too few elements"));
                }
                let s = t.sum(&v);
                let m = t.div(s, Sc::C(v.len() as f64));
                if name == "mean" {
                    Val::Real(m)
                } else {
                    let sq: Vec<Sc> = v
                        .iter()
                        .map(|&x| {
                            let d = t.sub(x, m);
                            t.mul(d, d)
                        })
                        .collect();
                    let ss = t.sum(&sq);
                    let var = t.div(ss, Sc::C(v.len() as f64 - 1.0));
                    Val::Real(if name == "sd" {
                        t.fun(Fun::Sqrt, var)
                    } else {
                        var
                    })
                }
            }
            "max" | "min" => {
                if n == 2 {
                    if let (Val::Int(a), Val::Int(b)) = (&args[0], &args[1]) {
                        return Ok(Val::Int(if name == "max" { *a.max(b) } else { *a.min(b) }));
                    }
                    let (a, b) = (real(&args[0])?, real(&args[1])?);
                    return Ok(Val::Real(if name == "max" {
                        t.max(a, b)
                    } else {
                        t.min(a, b)
                    }));
                }
                want(1)?;
                let v = args[0].flat();
                if args[0].is_int() {
                    let c = v.iter().filter_map(|s| s.constant()).map(|x| x as i64);
                    let r = if name == "max" { c.max() } else { c.min() };
                    return r.map(Val::Int).ok_or((pos, format!("{name} of nothing")));
                }
                let mut acc = Sc::C(if name == "max" {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                });
                for x in v {
                    acc = if name == "max" {
                        t.max(acc, x)
                    } else {
                        t.min(acc, x)
                    };
                }
                Val::Real(acc)
            }
            "dot_product" => {
                want(2)?;
                let (a, b) = (args[0].flat(), args[1].flat());
                if a.len() != b.len() {
                    return err(pos, "dot_product of different lengths");
                }
                let terms: Vec<Sc> = a.iter().zip(&b).map(|(&x, &y)| t.mul(x, y)).collect();
                Val::Real(t.sum(&terms))
            }
            "dot_self" => {
                want(1)?;
                let terms: Vec<Sc> = args[0].flat().iter().map(|&x| t.mul(x, x)).collect();
                Val::Real(t.sum(&terms))
            }
            "squared_distance" | "distance" => {
                want(2)?;
                let (a, b) = (args[0].flat(), args[1].flat());
                let terms: Vec<Sc> = a
                    .iter()
                    .zip(&b)
                    .map(|(&x, &y)| {
                        let d = t.sub(x, y);
                        t.mul(d, d)
                    })
                    .collect();
                let s = t.sum(&terms);
                Val::Real(if name == "distance" {
                    t.fun(Fun::Sqrt, s)
                } else {
                    s
                })
            }
            "softmax" | "log_softmax" => {
                want(1)?;
                let v = args[0].flat();
                let lse = t.log_sum_exp(&v);
                Val::Vector(
                    v.iter()
                        .map(|&x| {
                            let d = t.sub(x, lse);
                            if name == "softmax" {
                                t.fun(Fun::Exp, d)
                            } else {
                                d
                            }
                        })
                        .collect(),
                )
            }
            "cumulative_sum" => {
                want(1)?;
                let mut acc = Sc::C(0.0);
                let mut out = Vec::new();
                for x in args[0].flat() {
                    acc = t.add(acc, x);
                    out.push(acc);
                }
                match &args[0] {
                    Val::Row(_) => Val::Row(out),
                    Val::Array(_) => Val::Array(out.into_iter().map(Val::Real).collect()),
                    _ => Val::Vector(out),
                }
            }
            "num_elements" => Val::Int(args.first().map_or(0, |a| a.flat().len()) as i64),
            "size" => {
                want(1)?;
                Val::Int(args[0].dims().first().copied().unwrap_or(1) as i64)
            }
            "rows" | "cols" => {
                want(1)?;
                let d = args[0].dims();
                Val::Int(match (&args[0], name) {
                    (Val::Row(_), "rows") => 1,
                    (Val::Vector(_), "cols") => 1,
                    (Val::Row(_), "cols") | (Val::Vector(_), "rows") => d[0],
                    (Val::Matrix { .. }, "rows") => d[0],
                    (Val::Matrix { .. }, _) => d[1],
                    _ => return err(pos, format!("{name} of a {}", args[0].type_name())),
                } as i64)
            }
            "rep_vector" | "rep_row_vector" => {
                want(2)?;
                let x = real(&args[0])?;
                let k = count(&args[1], pos)?;
                if name == "rep_vector" {
                    Val::Vector(vec![x; k])
                } else {
                    Val::Row(vec![x; k])
                }
            }
            "rep_matrix" if n == 2 => {
                // A vector as every column, or a row_vector as every row.
                let k = count(&args[1], pos)?;
                match &args[0] {
                    Val::Vector(v) => Val::Matrix {
                        rows: v.len(),
                        cols: k,
                        v: v.iter().flat_map(|&x| std::iter::repeat_n(x, k)).collect(),
                    },
                    Val::Row(v) => Val::Matrix {
                        rows: k,
                        cols: v.len(),
                        v: (0..k).flat_map(|_| v.iter().copied()).collect(),
                    },
                    v => return err(pos, format!("rep_matrix of a {} and a size", v.type_name())),
                }
            }
            "rep_matrix" => {
                want(3)?;
                let x = real(&args[0])?;
                let (r, c) = (count(&args[1], pos)?, count(&args[2], pos)?);
                Val::Matrix {
                    rows: r,
                    cols: c,
                    v: vec![x; r * c],
                }
            }
            "rep_array" => {
                if n < 2 {
                    return err(pos, "rep_array takes a value and 1 to 3 sizes");
                }
                let mut v = args[0].clone();
                for d in args[1..].iter().rev() {
                    v = Val::Array(vec![v; count(d, pos)?]);
                }
                v
            }
            "zeros_vector" | "ones_vector" => {
                want(1)?;
                let x = Sc::C(if name == "zeros_vector" { 0.0 } else { 1.0 });
                Val::Vector(vec![x; count(&args[0], pos)?])
            }
            "linspaced_vector" => {
                want(3)?;
                let k = count(&args[0], pos)?;
                let (Some(lo), Some(hi)) = (real(&args[1])?.constant(), real(&args[2])?.constant())
                else {
                    return err(pos, "linspaced_vector of parameters");
                };
                Val::Vector(
                    (0..k)
                        .map(|i| {
                            Sc::C(if k == 1 {
                                hi
                            } else {
                                lo + (hi - lo) * i as f64 / (k - 1) as f64
                            })
                        })
                        .collect(),
                )
            }
            "to_vector" | "to_row_vector" => {
                want(1)?;
                // Matrices are read column-major, as Stan does.
                let v = match &args[0] {
                    Val::Matrix { rows, cols, v } => (0..*cols)
                        .flat_map(|j| (0..*rows).map(move |i| v[i * cols + j]))
                        .collect(),
                    other => other.flat(),
                };
                if name == "to_vector" {
                    Val::Vector(v)
                } else {
                    Val::Row(v)
                }
            }
            "to_array_1d" => {
                want(1)?;
                let ints = args[0].is_int();
                Val::Array(
                    args[0]
                        .flat()
                        .into_iter()
                        .map(|s| match (ints, s) {
                            (true, Sc::C(c)) => Val::Int(c as i64),
                            _ => Val::Real(s),
                        })
                        .collect(),
                )
            }
            "to_int" => {
                want(1)?;
                match real(&args[0])?.constant() {
                    Some(c) => Val::Int(c.trunc() as i64),
                    None => return err(pos, "to_int of a parameter"),
                }
            }
            "int_step" => {
                want(1)?;
                match real(&args[0])?.constant() {
                    Some(c) => Val::Int((c > 0.0) as i64),
                    None => return err(pos, "int_step of a parameter is not supported yet"),
                }
            }
            "is_inf" | "is_nan" => {
                want(1)?;
                match real(&args[0])?.constant() {
                    Some(c) => Val::Int(if name == "is_inf" {
                        c.is_infinite()
                    } else {
                        c.is_nan()
                    } as i64),
                    None => return err(pos, format!("{name} of a parameter is not supported yet")),
                }
            }
            "head" | "tail" | "segment" => {
                let (start, len) = match name {
                    "head" => {
                        want(2)?;
                        (1, count(&args[1], pos)?)
                    }
                    "tail" => {
                        want(2)?;
                        let k = count(&args[1], pos)?;
                        let total = args[0].dims().first().copied().unwrap_or(0);
                        if k > total {
                            return err(pos, "tail longer than its argument");
                        }
                        (total - k + 1, k)
                    }
                    _ => {
                        want(3)?;
                        (count(&args[1], pos)?, count(&args[2], pos)?)
                    }
                };
                let ix =
                    super::interp::Ix::Range(Some(start as i64), Some((start + len) as i64 - 1));
                if len == 0 {
                    return Ok(match &args[0] {
                        Val::Row(_) => Val::Row(vec![]),
                        Val::Array(_) => Val::Array(vec![]),
                        _ => Val::Vector(vec![]),
                    });
                }
                super::interp::index_val(&args[0], &[ix], pos)?
            }
            "reverse" => {
                want(1)?;
                match &args[0] {
                    Val::Vector(v) => Val::Vector(v.iter().rev().copied().collect()),
                    Val::Row(v) => Val::Row(v.iter().rev().copied().collect()),
                    Val::Array(a) => Val::Array(a.iter().rev().cloned().collect()),
                    v => return err(pos, format!("reverse of a {}", v.type_name())),
                }
            }
            "append_row" | "append_col" => {
                want(2)?;
                let (a, b) = (&args[0], &args[1]);
                match (name, a, b) {
                    ("append_row", x, y)
                        if !matches!(x, Val::Matrix { .. } | Val::Row(_))
                            && !matches!(y, Val::Matrix { .. } | Val::Row(_)) =>
                    {
                        let mut v = x.flat();
                        v.extend(y.flat());
                        Val::Vector(v)
                    }
                    ("append_col", x, y)
                        if !matches!(x, Val::Matrix { .. } | Val::Vector(_))
                            && !matches!(y, Val::Matrix { .. } | Val::Vector(_)) =>
                    {
                        let mut v = x.flat();
                        v.extend(y.flat());
                        Val::Row(v)
                    }
                    _ => {
                        // As matrices: a vector is one column, a row_vector one row.
                        let col = name == "append_col";
                        let as_matrix = |v: &Val| match v {
                            Val::Matrix { rows, cols, v } => Some((*rows, *cols, v.clone())),
                            Val::Vector(v) if col => Some((v.len(), 1, v.clone())),
                            Val::Row(v) if !col => Some((1, v.len(), v.clone())),
                            _ => None,
                        };
                        let (Some((ra, ca, va)), Some((rb, cb, vb))) = (as_matrix(a), as_matrix(b))
                        else {
                            return err(
                                pos,
                                format!("{name} of a {} and a {}", a.type_name(), b.type_name()),
                            );
                        };
                        if col && ra != rb || !col && ca != cb {
                            return err(
                                pos,
                                format!("{name}: {ra}x{ca} and {rb}x{cb} do not line up"),
                            );
                        }
                        if col {
                            let v = (0..ra)
                                .flat_map(|i| {
                                    va[i * ca..(i + 1) * ca]
                                        .iter()
                                        .chain(&vb[i * cb..(i + 1) * cb])
                                })
                                .copied()
                                .collect();
                            Val::Matrix {
                                rows: ra,
                                cols: ca + cb,
                                v,
                            }
                        } else {
                            Val::Matrix {
                                rows: ra + rb,
                                cols: ca,
                                v: va.into_iter().chain(vb).collect(),
                            }
                        }
                    }
                }
            }
            "sub_col" | "sub_row" => {
                // x[i:i+n-1, j] or x[i, j:j+n-1].
                want(4)?;
                let (i, j, k) = (
                    count(&args[1], pos)? as i64,
                    count(&args[2], pos)? as i64,
                    count(&args[3], pos)? as i64,
                );
                use super::interp::Ix;
                let ix = if name == "sub_col" {
                    [Ix::Range(Some(i), Some(i + k - 1)), Ix::One(j, pos)]
                } else {
                    [Ix::One(i, pos), Ix::Range(Some(j), Some(j + k - 1))]
                };
                super::interp::index_val(&args[0], &ix, pos)?
            }
            "dims" => {
                want(1)?;
                Val::Array(
                    args[0]
                        .dims()
                        .into_iter()
                        .map(|d| Val::Int(d as i64))
                        .collect(),
                )
            }
            "col" | "row" => {
                want(2)?;
                let k = super::interp::Ix::One(count(&args[1], pos)? as i64, pos);
                let all = super::interp::Ix::Range(None, None);
                if name == "col" {
                    super::interp::index_val(&args[0], &[all, k], pos)?
                } else {
                    super::interp::index_val(&args[0], &[k], pos)?
                }
            }
            "diag_pre_multiply" | "diag_post_multiply" => {
                // diag(v) M scales M's rows by v, M diag(v) its columns.
                want(2)?;
                let pre = name == "diag_pre_multiply";
                let (vec, m) = if pre {
                    (&args[0], &args[1])
                } else {
                    (&args[1], &args[0])
                };
                let Val::Matrix { rows, cols, v } = m else {
                    return err(
                        pos,
                        format!("{name}: expected a matrix, found {}", m.type_name()),
                    );
                };
                let d = vec.flat();
                if d.len() != if pre { *rows } else { *cols } {
                    return err(
                        pos,
                        format!("{name}: a vector of {} for a {rows}x{cols} matrix", d.len()),
                    );
                }
                let t = &mut self.tape;
                let v = (0..rows * cols)
                    .map(|e| t.mul(d[if pre { e / cols } else { e % cols }], v[e]))
                    .collect();
                Val::Matrix {
                    rows: *rows,
                    cols: *cols,
                    v,
                }
            }
            "quad_form_diag" => {
                // diag(v) M diag(v).
                want(2)?;
                let (k, m) = square(&args[0], name, pos)?;
                let d = args[1].flat();
                if d.len() != k {
                    return err(
                        pos,
                        format!("{name}: a vector of {} for a {k}x{k} matrix", d.len()),
                    );
                }
                let t = &mut self.tape;
                let v = (0..k * k)
                    .map(|e| {
                        let a = t.mul(d[e / k], m[e]);
                        t.mul(a, d[e % k])
                    })
                    .collect();
                Val::Matrix {
                    rows: k,
                    cols: k,
                    v,
                }
            }
            "multiply_lower_tri_self_transpose" => {
                // L L' from L's lower triangle.
                want(1)?;
                let Val::Matrix { rows, cols, v } = &args[0] else {
                    return err(
                        pos,
                        format!("{name}: expected a matrix, found {}", args[0].type_name()),
                    );
                };
                let (r, c, t) = (*rows, *cols, &mut self.tape);
                let mut out = vec![Sc::C(0.0); r * r];
                for i in 0..r {
                    for j in 0..=i {
                        let items: Vec<Sc> = (0..c.min(j + 1))
                            .map(|q| t.mul(v[i * c + q], v[j * c + q]))
                            .collect();
                        let x = t.sum(&items);
                        out[i * r + j] = x;
                        out[j * r + i] = x;
                    }
                }
                Val::Matrix {
                    rows: r,
                    cols: r,
                    v: out,
                }
            }
            "cholesky_decompose" => {
                want(1)?;
                let (k, a) = square(&args[0], name, pos)?;
                Val::Matrix {
                    rows: k,
                    cols: k,
                    v: cholesky(&mut self.tape, k, &a, pos)?,
                }
            }
            "gp_exp_quad_cov" => {
                // α² exp(−|x_i − x'_j|² / (2ρ²)), from one set of points or two.
                if n != 3 && n != 4 {
                    return err(pos, "gp_exp_quad_cov takes x (and x2), alpha and rho");
                }
                let xs = points(&args[0], pos)?;
                let ys = if n == 4 {
                    points(&args[1], pos)?
                } else {
                    xs.clone()
                };
                let (alpha, rho) = (real(&args[n - 2])?, real(&args[n - 1])?);
                let t = &mut self.tape;
                let sq_alpha = t.mul(alpha, alpha);
                let sq_rho = t.mul(rho, rho);
                let scale = t.div(Sc::C(-0.5), sq_rho);
                let mut v = vec![Sc::C(0.0); xs.len() * ys.len()];
                for (i, x) in xs.iter().enumerate() {
                    for (j, y) in ys.iter().enumerate() {
                        if n == 3 && j < i {
                            v[i * ys.len() + j] = v[j * ys.len() + i];
                            continue;
                        }
                        if x.len() != y.len() {
                            return err(pos, "gp_exp_quad_cov: points of different sizes");
                        }
                        let d2: Vec<Sc> = x
                            .iter()
                            .zip(y)
                            .map(|(&a, &b)| {
                                let d = t.sub(a, b);
                                t.mul(d, d)
                            })
                            .collect();
                        v[i * ys.len() + j] = if n == 3 && i == j {
                            sq_alpha
                        } else {
                            let d2 = t.sum(&d2);
                            let e = t.mul(d2, scale);
                            let e = t.fun(Fun::Exp, e);
                            t.mul(sq_alpha, e)
                        };
                    }
                }
                Val::Matrix {
                    rows: xs.len(),
                    cols: ys.len(),
                    v,
                }
            }
            "diag_matrix" => {
                want(1)?;
                let v = args[0].flat();
                let k = v.len();
                let mut m = vec![Sc::C(0.0); k * k];
                for (i, &x) in v.iter().enumerate() {
                    m[i * k + i] = x;
                }
                Val::Matrix {
                    rows: k,
                    cols: k,
                    v: m,
                }
            }
            "fma" => {
                want(3)?;
                let m = t.mul(real(&args[0])?, real(&args[1])?);
                Val::Real(t.add(m, real(&args[2])?))
            }
            "step" => {
                want(1)?;
                match real(&args[0])?.constant() {
                    Some(c) => Val::Real(Sc::C(if c < 0.0 { 0.0 } else { 1.0 })),
                    None => return err(pos, "step of a parameter is not supported yet"),
                }
            }
            _ => return err(pos, format!("function '{name}' is not supported")),
        })
    }

    /// The log density (or mass) of `args[0]` under `dist` with parameters `args[1..]`,
    /// summed over the elements; `drop` leaves out the terms that are constants.
    pub fn density(&mut self, dist: &str, args: &[Val], drop: bool, pos: Pos) -> R<Sc> {
        for suffix in ["_lpdf", "_lpmf"] {
            if let Some(f) = self.overload(&format!("{dist}{suffix}"), args, pos)? {
                let v = self.call_user(&f, args.to_vec(), pos)?;
                return scalar(&v, pos);
            }
        }
        if args
            .first()
            .is_some_and(|v| v.flat().iter().all(|s| s.constant().is_some()))
        {
            self.data_densities += 1;
        }
        let t = &mut self.tape;
        let np = |k: usize| -> R<()> {
            if args.len() == k + 1 {
                Ok(())
            } else {
                err(
                    pos,
                    format!("{dist} takes {k} parameter(s), got {}", args.len() - 1),
                )
            }
        };
        let mut terms: Vec<Sc> = Vec::new();
        let keep = |s: Sc, terms: &mut Vec<Sc>| {
            if !(drop && s.constant().is_some()) {
                terms.push(s);
            }
        };
        match dist {
            "lkj_corr_cholesky" => {
                // Σ_k (K − k − 2 + 2η − 2) log L_kk over k = 2..K, plus the normalising
                // constant (Lewandowski, Kurowicka and Joe 2009, theorem 5), as Stan.
                np(1)?;
                let (k, l) = square(&args[0], dist, pos)?;
                let eta = args[1].flat();
                let [eta] = eta[..] else {
                    return err(pos, "lkj_corr_cholesky: eta must be a real");
                };
                if k == 0 {
                    return Ok(Sc::C(0.0));
                }
                let km1 = (k - 1) as f64;
                let lg = t.add(eta, Sc::C(0.5 * km1));
                let lg = t.fun(Fun::Lgamma, lg);
                let mut constant = vec![t.mul(lg, Sc::C(km1))];
                for j in 1..k {
                    let a = t.add(eta, Sc::C(0.5 * (km1 - j as f64)));
                    let lga = t.fun(Fun::Lgamma, a);
                    constant.push(t.neg(lga));
                    constant.push(Sc::C(-0.5 * j as f64 * std::f64::consts::PI.ln()));
                }
                let c = t.sum(&constant);
                keep(c, &mut terms);
                let two_eta = t.mul(eta, Sc::C(2.0));
                for j in 1..k {
                    let ld = t.fun(Fun::Log, l[j * k + j]);
                    let w = t.add(two_eta, Sc::C(km1 - j as f64 - 2.0));
                    keep(t.mul(w, ld), &mut terms);
                }
                return Ok(t.sum(&terms));
            }
            "multi_normal" | "multi_normal_cholesky" => {
                // −½|L⁻¹(y − μ)|² − Σ log L_ii − k/2 log 2π per vector, L the Cholesky
                // factor of the covariance (multi_normal) or the argument itself.
                np(2)?;
                let (k, a) = square(&args[2], dist, pos)?;
                let l = if dist == "multi_normal" {
                    cholesky(t, k, &a, pos)?
                } else {
                    a
                };
                let logs: Vec<Sc> = (0..k).map(|i| t.fun(Fun::Log, l[i * k + i])).collect();
                let log_det = t.sum(&logs);
                let (ys, mus) = (vectors(&args[0]), vectors(&args[1]));
                // An empty array of vectors has no terms.
                let n = if ys.is_empty() || mus.is_empty() {
                    0
                } else {
                    ys.len().max(mus.len())
                };
                for j in 0..n {
                    let (y, mu) = (&ys[j % ys.len()], &mus[j % mus.len()]);
                    if y.len() != k || mu.len() != k {
                        return err(
                            pos,
                            format!(
                                "{dist}: vectors of sizes {} and {} for a {k}x{k} matrix",
                                y.len(),
                                mu.len()
                            ),
                        );
                    }
                    // Forward substitution: L z = y − μ.
                    let mut z: Vec<Sc> = Vec::with_capacity(k);
                    for i in 0..k {
                        let mut items = vec![t.sub(y[i], mu[i])];
                        for (c, &zc) in z.iter().enumerate() {
                            let p = t.mul(l[i * k + c], zc);
                            items.push(t.neg(p));
                        }
                        let r = t.sum(&items);
                        z.push(t.div(r, l[i * k + i]));
                    }
                    let sq: Vec<Sc> = z.iter().map(|&x| t.mul(x, x)).collect();
                    let q = t.sum(&sq);
                    let half = t.mul(q, Sc::C(-0.5));
                    keep(half, &mut terms);
                    let nld = t.neg(log_det);
                    keep(nld, &mut terms);
                    keep(
                        Sc::C(-0.5 * k as f64 * (2.0 * std::f64::consts::PI).ln()),
                        &mut terms,
                    );
                }
                return Ok(t.sum(&terms));
            }
            "dirichlet" => {
                np(1)?;
                let th = vectors(&args[0]);
                let al = vectors(&args[1]);
                let n = if th.is_empty() || al.is_empty() {
                    0
                } else {
                    th.len().max(al.len())
                };
                for k in 0..n {
                    let (th, al) = (&th[k % th.len()], &al[k % al.len()]);
                    if th.len() != al.len() {
                        return err(pos, "dirichlet: theta and alpha differ in length");
                    }
                    let sa = t.sum(al);
                    let lg = t.fun(Fun::Lgamma, sa);
                    keep(lg, &mut terms);
                    for (&x, &a) in th.iter().zip(al) {
                        let lga = t.fun(Fun::Lgamma, a);
                        let nlga = t.neg(lga);
                        keep(nlga, &mut terms);
                        let am1 = t.sub(a, Sc::C(1.0));
                        let lx = t.fun(Fun::Log, x);
                        let term = t.mul(am1, lx);
                        keep(term, &mut terms);
                    }
                }
                return Ok(t.sum(&terms));
            }
            "categorical" | "categorical_logit" => {
                np(1)?;
                let ys = ints(&args[0], pos)?;
                let beta = args[1].flat();
                let lse = if dist == "categorical_logit" {
                    Some(t.log_sum_exp(&beta))
                } else {
                    None
                };
                for y in ys {
                    if y < 1 || y as usize > beta.len() {
                        return err(
                            pos,
                            format!("{dist}: outcome {y} outside 1..{}", beta.len()),
                        );
                    }
                    let b = beta[y as usize - 1];
                    let term = match lse {
                        Some(l) => t.sub(b, l),
                        None => t.fun(Fun::Log, b),
                    };
                    keep(term, &mut terms);
                }
                return Ok(t.sum(&terms));
            }
            "normal_id_glm"
            | "bernoulli_logit_glm"
            | "poisson_log_glm"
            | "neg_binomial_2_log_glm" => {
                // The linear predictor x β + α, then the family's density on it.
                let (family, extra) = match dist {
                    "normal_id_glm" => ("normal", true),
                    "bernoulli_logit_glm" => ("bernoulli_logit", false),
                    "poisson_log_glm" => ("poisson_log", false),
                    _ => ("neg_binomial_2_log", true),
                };
                np(3 + usize::from(extra))?;
                let (rows, cols, v) = match &args[1] {
                    Val::Matrix { rows, cols, v } => (*rows, *cols, v.clone()),
                    Val::Row(v) => (1, v.len(), v.clone()),
                    _ => return err(pos, format!("{dist}: x must be a matrix or row_vector")),
                };
                let beta = args[3].flat();
                if beta.len() != cols {
                    return err(pos, format!("{dist}: beta's length is not x's columns"));
                }
                let alpha = args[2].flat();
                if alpha.len() != 1 && alpha.len() != rows {
                    return err(pos, format!("{dist}: alpha's length is not x's rows"));
                }
                let mut mu = Vec::with_capacity(rows);
                for i in 0..rows {
                    let mut row: Vec<Sc> =
                        (0..cols).map(|j| t.mul(v[i * cols + j], beta[j])).collect();
                    row.push(alpha[i % alpha.len()]);
                    mu.push(t.sum(&row));
                }
                let mut args2 = vec![args[0].clone(), Val::Vector(mu)];
                if extra {
                    args2.push(args[4].clone());
                }
                return self.density(family, &args2, drop, pos);
            }
            _ => {}
        }
        let arity = match dist {
            "normal" | "cauchy" | "double_exponential" | "logistic" | "gamma" | "inv_gamma"
            | "lognormal" | "beta" | "uniform" | "binomial" | "binomial_logit"
            | "neg_binomial_2" | "neg_binomial_2_log" | "weibull" | "beta_proportion" => 2,
            "student_t" => 3,
            "exponential" | "bernoulli" | "bernoulli_logit" | "poisson" | "poisson_log"
            | "std_normal" | "chi_square" | "inv_chi_square" => {
                if dist == "std_normal" {
                    0
                } else {
                    1
                }
            }
            _ => return err(pos, format!("distribution '{dist}' is not supported")),
        };
        np(arity)?;
        let cols: Vec<Vec<Sc>> = args.iter().map(|a| a.flat()).collect();
        let len = cols.iter().map(|c| c.len()).max().unwrap_or(1);
        for c in &cols {
            if c.len() != len && c.len() != 1 {
                return err(
                    pos,
                    format!("{dist}: arguments of lengths {} and {len}", c.len()),
                );
            }
            if c.is_empty() {
                return Ok(Sc::C(0.0));
            }
        }
        let discrete = matches!(
            dist,
            "bernoulli"
                | "bernoulli_logit"
                | "binomial"
                | "binomial_logit"
                | "poisson"
                | "poisson_log"
                | "neg_binomial_2"
                | "neg_binomial_2_log"
        );
        if discrete && !args[0].is_int() {
            return err(
                pos,
                format!("{dist}: the outcome must be an int or int array"),
            );
        }
        let at = |k: usize, i: usize| cols[k][if cols[k].len() == 1 { 0 } else { i }];
        for i in 0..len {
            let y = at(0, i);
            let p = |k: usize| at(k, i);
            match dist {
                "normal" | "std_normal" => {
                    let (mu, sigma) = if dist == "normal" {
                        (p(1), p(2))
                    } else {
                        (Sc::C(0.0), Sc::C(1.0))
                    };
                    // (y − μ) × σ⁻¹, as Stan's normal_lpdf computes it: the reciprocal is
                    // one value however many terms read it (σ a parameter), and the
                    // terms multiply instead of dividing.
                    let d = t.sub(y, mu);
                    let r = t.div(Sc::C(1.0), sigma);
                    let z = t.mul(d, r);
                    let z2 = t.mul(z, z);
                    let a = t.mul(Sc::C(-0.5), z2);
                    keep(a, &mut terms);
                    let ls = t.fun(Fun::Log, sigma);
                    let nls = t.neg(ls);
                    keep(nls, &mut terms);
                    keep(Sc::C(-HALF_LOG_2PI), &mut terms);
                }
                "cauchy" => {
                    let d = t.sub(y, p(1));
                    let z = t.div(d, p(2));
                    let z2 = t.mul(z, z);
                    let l = t.fun(Fun::Log1p, z2);
                    let nl = t.neg(l);
                    keep(nl, &mut terms);
                    let ls = t.fun(Fun::Log, p(2));
                    let nls = t.neg(ls);
                    keep(nls, &mut terms);
                    keep(Sc::C(-LOG_PI), &mut terms);
                }
                "student_t" => {
                    let (nu, mu, sigma) = (p(1), p(2), p(3));
                    let h = t.mul(nu, Sc::C(0.5));
                    let h1 = t.add(h, Sc::C(0.5));
                    let a = t.fun(Fun::Lgamma, h1);
                    let b = t.fun(Fun::Lgamma, h);
                    let ab = t.sub(a, b);
                    let lnu = t.fun(Fun::Log, nu);
                    let hl = t.mul(Sc::C(0.5), lnu);
                    let c = t.sub(ab, hl);
                    keep(c, &mut terms);
                    let ls = t.fun(Fun::Log, sigma);
                    let nls = t.neg(ls);
                    keep(nls, &mut terms);
                    let d = t.sub(y, mu);
                    let z = t.div(d, sigma);
                    let z2 = t.mul(z, z);
                    let q = t.div(z2, nu);
                    let l = t.fun(Fun::Log1p, q);
                    let m = t.mul(h1, l);
                    let nm = t.neg(m);
                    keep(nm, &mut terms);
                    keep(Sc::C(-0.5 * LOG_PI), &mut terms);
                }
                "double_exponential" => {
                    let d = t.sub(y, p(1));
                    let a = t.fun(Fun::Abs, d);
                    let q = t.div(a, p(2));
                    let nq = t.neg(q);
                    keep(nq, &mut terms);
                    let ls = t.fun(Fun::Log, p(2));
                    let nls = t.neg(ls);
                    keep(nls, &mut terms);
                    keep(Sc::C(-std::f64::consts::LN_2), &mut terms);
                }
                "logistic" => {
                    let d = t.sub(y, p(1));
                    let z = t.div(d, p(2));
                    let nz = t.neg(z);
                    let sp = t.fun(Fun::Log1pExp, nz);
                    let two = t.mul(Sc::C(2.0), sp);
                    let a = t.sub(nz, two);
                    keep(a, &mut terms);
                    let ls = t.fun(Fun::Log, p(2));
                    let nls = t.neg(ls);
                    keep(nls, &mut terms);
                }
                "exponential" => {
                    let lb = t.fun(Fun::Log, p(1));
                    keep(lb, &mut terms);
                    let by = t.mul(p(1), y);
                    let nby = t.neg(by);
                    keep(nby, &mut terms);
                }
                "gamma" | "inv_gamma" | "chi_square" | "inv_chi_square" => {
                    // chi_square(ν) is gamma(ν/2, 1/2), inv_chi_square(ν) inv_gamma(ν/2, 1/2).
                    let (a, b) = if dist.ends_with("chi_square") {
                        (t.mul(p(1), Sc::C(0.5)), Sc::C(0.5))
                    } else {
                        (p(1), p(2))
                    };
                    let lb = t.fun(Fun::Log, b);
                    let alb = t.mul(a, lb);
                    keep(alb, &mut terms);
                    let lga = t.fun(Fun::Lgamma, a);
                    let nlga = t.neg(lga);
                    keep(nlga, &mut terms);
                    let ly = t.fun(Fun::Log, y);
                    if dist == "gamma" || dist == "chi_square" {
                        let am1 = t.sub(a, Sc::C(1.0));
                        let x = t.mul(am1, ly);
                        keep(x, &mut terms);
                        let by = t.mul(b, y);
                        let nby = t.neg(by);
                        keep(nby, &mut terms);
                    } else {
                        let ap1 = t.add(a, Sc::C(1.0));
                        let x = t.mul(ap1, ly);
                        let nx = t.neg(x);
                        keep(nx, &mut terms);
                        let boy = t.div(b, y);
                        let nboy = t.neg(boy);
                        keep(nboy, &mut terms);
                    }
                }
                "lognormal" => {
                    let ly = t.fun(Fun::Log, y);
                    let d = t.sub(ly, p(1));
                    let r = t.div(Sc::C(1.0), p(2));
                    let z = t.mul(d, r);
                    let z2 = t.mul(z, z);
                    let a = t.mul(Sc::C(-0.5), z2);
                    keep(a, &mut terms);
                    let ls = t.fun(Fun::Log, p(2));
                    let nls = t.neg(ls);
                    keep(nls, &mut terms);
                    let nly = t.neg(ly);
                    keep(nly, &mut terms);
                    keep(Sc::C(-HALF_LOG_2PI), &mut terms);
                }
                "beta" | "beta_proportion" => {
                    // beta_proportion(μ, κ) is beta(μκ, (1 − μ)κ).
                    let (a, b) = if dist == "beta" {
                        (p(1), p(2))
                    } else {
                        let a = t.mul(p(1), p(2));
                        (a, t.sub(p(2), a))
                    };
                    let ly = t.fun(Fun::Log, y);
                    let om = t.sub(Sc::C(1.0), y);
                    let l1y = t.fun(Fun::Log, om);
                    let am1 = t.sub(a, Sc::C(1.0));
                    let bm1 = t.sub(b, Sc::C(1.0));
                    let x1 = t.mul(am1, ly);
                    keep(x1, &mut terms);
                    let x2 = t.mul(bm1, l1y);
                    keep(x2, &mut terms);
                    let lb = lbeta(t, a, b);
                    let nlb = t.neg(lb);
                    keep(nlb, &mut terms);
                }
                "weibull" => {
                    // log α + (α − 1) log y − α log σ − (y/σ)^α.
                    let (alpha, sigma) = (p(1), p(2));
                    let la = t.fun(Fun::Log, alpha);
                    keep(la, &mut terms);
                    let ly = t.fun(Fun::Log, y);
                    let am1 = t.sub(alpha, Sc::C(1.0));
                    let x = t.mul(am1, ly);
                    keep(x, &mut terms);
                    let ls = t.fun(Fun::Log, sigma);
                    let als = t.mul(alpha, ls);
                    let nals = t.neg(als);
                    keep(nals, &mut terms);
                    let r = t.div(y, sigma);
                    let pw = t.pow(r, alpha);
                    let npw = t.neg(pw);
                    keep(npw, &mut terms);
                }
                "uniform" => {
                    if let (Some(yv), Some(lo), Some(hi)) =
                        (y.constant(), p(1).constant(), p(2).constant())
                    {
                        if yv < lo || yv > hi {
                            return Ok(Sc::C(f64::NEG_INFINITY));
                        }
                    }
                    let w = t.sub(p(2), p(1));
                    let lw = t.fun(Fun::Log, w);
                    let nlw = t.neg(lw);
                    keep(nlw, &mut terms);
                }
                "bernoulli" => {
                    let th = p(1);
                    let yv = y.constant().unwrap_or(0.0);
                    let term = if yv == 1.0 {
                        t.fun(Fun::Log, th)
                    } else {
                        let om = t.sub(Sc::C(1.0), th);
                        t.fun(Fun::Log, om)
                    };
                    keep(term, &mut terms);
                }
                "bernoulli_logit" => {
                    let a = p(1);
                    let yv = y.constant().unwrap_or(0.0);
                    // log inv_logit(a) = -log1p_exp(-a); log(1 - inv_logit(a)) = -log1p_exp(a)
                    let arg = if yv == 1.0 { t.neg(a) } else { a };
                    let sp = t.fun(Fun::Log1pExp, arg);
                    let term = t.neg(sp);
                    keep(term, &mut terms);
                }
                "binomial" | "binomial_logit" => {
                    let nn = p(1);
                    let lc = lchoose(t, nn, y);
                    keep(lc, &mut terms);
                    let nmy = t.sub(nn, y);
                    if dist == "binomial" {
                        let lt = t.fun(Fun::Log, p(2));
                        let om = t.sub(Sc::C(1.0), p(2));
                        let l1t = t.fun(Fun::Log, om);
                        let a = multiply_log_sc(t, y, lt);
                        keep(a, &mut terms);
                        let b = multiply_log_sc(t, nmy, l1t);
                        keep(b, &mut terms);
                    } else {
                        let a = p(2);
                        let na = t.neg(a);
                        let s1 = t.fun(Fun::Log1pExp, na);
                        let s2 = t.fun(Fun::Log1pExp, a);
                        let x = t.mul(y, s1);
                        let nx = t.neg(x);
                        keep(nx, &mut terms);
                        let z = t.mul(nmy, s2);
                        let nz = t.neg(z);
                        keep(nz, &mut terms);
                    }
                }
                "poisson" | "poisson_log" => {
                    let (lam, loglam) = if dist == "poisson" {
                        (p(1), t.fun(Fun::Log, p(1)))
                    } else {
                        (t.fun(Fun::Exp, p(1)), p(1))
                    };
                    let a = multiply_log_sc(t, y, loglam);
                    keep(a, &mut terms);
                    let nl = t.neg(lam);
                    keep(nl, &mut terms);
                    let y1 = t.add(y, Sc::C(1.0));
                    let lg = t.fun(Fun::Lgamma, y1);
                    let nlg = t.neg(lg);
                    keep(nlg, &mut terms);
                }
                "neg_binomial_2" | "neg_binomial_2_log" => {
                    let phi = p(2);
                    let (mu, logmu) = if dist == "neg_binomial_2" {
                        (p(1), t.fun(Fun::Log, p(1)))
                    } else {
                        (t.fun(Fun::Exp, p(1)), p(1))
                    };
                    let s = t.add(mu, phi);
                    let ls = t.fun(Fun::Log, s);
                    // lchoose(y + phi - 1, y) = lgamma(y + phi) - lgamma(y + 1) - lgamma(phi)
                    let yp = t.add(y, phi);
                    let a = t.fun(Fun::Lgamma, yp);
                    keep(a, &mut terms);
                    let y1 = t.add(y, Sc::C(1.0));
                    let b = t.fun(Fun::Lgamma, y1);
                    let nb = t.neg(b);
                    keep(nb, &mut terms);
                    let c = t.fun(Fun::Lgamma, phi);
                    let nc = t.neg(c);
                    keep(nc, &mut terms);
                    let d = t.sub(logmu, ls);
                    let e = multiply_log_sc(t, y, d);
                    keep(e, &mut terms);
                    let lphi = t.fun(Fun::Log, phi);
                    let f = t.sub(lphi, ls);
                    let g = t.mul(phi, f);
                    keep(g, &mut terms);
                }
                _ => return err(pos, format!("distribution '{dist}' is not supported")),
            }
        }
        Ok(t.sum(&terms))
    }

    /// `_lcdf`, `_lccdf` and `_cdf`: closed forms where the derivative is elementary,
    /// constants otherwise.
    pub fn cdf(&mut self, dist: &str, suffix: &str, args: &[Val], pos: Pos) -> R<Sc> {
        let t = &mut self.tape;
        let a: Vec<Sc> = args.iter().map(|v| scalar(v, pos)).collect::<R<_>>()?;
        let lower = suffix != "_lccdf";
        let closed = |t: &mut Tape, z: Sc, f: &dyn Fn(&mut Tape, Sc) -> Sc| -> Sc {
            // f gives the cdf; the log or log complement as asked.
            let c = f(t, z);
            match suffix {
                "_cdf" => c,
                "_lcdf" => t.fun(Fun::Log, c),
                _ => {
                    let m = t.sub(Sc::C(1.0), c);
                    t.fun(Fun::Log, m)
                }
            }
        };
        match (dist, a.len()) {
            ("cauchy", 3) => {
                let d = t.sub(a[0], a[1]);
                let z = t.div(d, a[2]);
                return Ok(closed(t, z, &|t, z| {
                    let at = t.fun(Fun::Atan, z);
                    let q = t.div(at, Sc::C(std::f64::consts::PI));
                    t.add(q, Sc::C(0.5))
                }));
            }
            ("exponential", 2) => {
                let by = t.mul(a[1], a[0]);
                let nby = t.neg(by);
                if !lower {
                    return Ok(nby);
                }
                return Ok(closed(t, nby, &|t, x| {
                    let e = t.fun(Fun::Expm1, x);
                    t.neg(e)
                }));
            }
            ("normal", 3) => {
                // Φ(z) = erfc(−z/√2)/2 and 1 − Φ(z) = erfc(z/√2)/2, each accurate in its
                // own tail.
                let d = t.sub(a[0], a[1]);
                let z = t.div(d, a[2]);
                let k = if suffix == "_lccdf" {
                    std::f64::consts::FRAC_1_SQRT_2
                } else {
                    -std::f64::consts::FRAC_1_SQRT_2
                };
                let w = t.mul(z, Sc::C(k));
                let c = t.fun(Fun::Erfc, w);
                let p = t.mul(c, Sc::C(0.5));
                return Ok(if suffix == "_cdf" {
                    p
                } else {
                    t.fun(Fun::Log, p)
                });
            }
            ("logistic", 3) => {
                let d = t.sub(a[0], a[1]);
                let z = t.div(d, a[2]);
                return Ok(closed(t, z, &|t, z| t.fun(Fun::InvLogit, z)));
            }
            _ => {}
        }
        let Some(c) = a.iter().map(|s| s.constant()).collect::<Option<Vec<f64>>>() else {
            return err(
                pos,
                format!("{dist}{suffix} of parameters is not supported yet"),
            );
        };
        use statrs::distribution::{ContinuousCDF, DiscreteCDF};
        let bad = |e: &dyn std::fmt::Display| (pos, format!("{dist}{suffix}: {e}"));
        let p: f64 = match (dist, c.len()) {
            ("student_t", 4) => statrs::distribution::StudentsT::new(c[2], c[3], c[1])
                .map_err(|e| bad(&e))?
                .cdf(c[0]),
            ("gamma", 3) => statrs::distribution::Gamma::new(c[1], c[2])
                .map_err(|e| bad(&e))?
                .cdf(c[0]),
            ("lognormal", 3) => statrs::distribution::LogNormal::new(c[1], c[2])
                .map_err(|e| bad(&e))?
                .cdf(c[0]),
            ("beta", 3) => statrs::distribution::Beta::new(c[1], c[2])
                .map_err(|e| bad(&e))?
                .cdf(c[0]),
            ("poisson", 2) => statrs::distribution::Poisson::new(c[1])
                .map_err(|e| bad(&e))?
                .cdf(c[0] as u64),
            _ => return err(pos, format!("{dist}{suffix} is not supported")),
        };
        Ok(Sc::C(match suffix {
            "_cdf" => p,
            "_lcdf" => p.ln(),
            _ => (1.0 - p).ln(),
        }))
    }
}

fn lbeta(t: &mut Tape, a: Sc, b: Sc) -> Sc {
    let la = t.fun(Fun::Lgamma, a);
    let lb = t.fun(Fun::Lgamma, b);
    let s = t.add(a, b);
    let ls = t.fun(Fun::Lgamma, s);
    let x = t.add(la, lb);
    t.sub(x, ls)
}

/// log C(n, k) = lgamma(n + 1) − lgamma(k + 1) − lgamma(n − k + 1).
fn lchoose(t: &mut Tape, n: Sc, k: Sc) -> Sc {
    let n1 = t.add(n, Sc::C(1.0));
    let k1 = t.add(k, Sc::C(1.0));
    let d = t.sub(n, k);
    let d1 = t.add(d, Sc::C(1.0));
    let a = t.fun(Fun::Lgamma, n1);
    let b = t.fun(Fun::Lgamma, k1);
    let c = t.fun(Fun::Lgamma, d1);
    let ab = t.sub(a, b);
    t.sub(ab, c)
}

/// y · l, taken as 0 when y is the constant 0 (so that 0 · log 0 = 0).
fn multiply_log_sc(t: &mut Tape, y: Sc, l: Sc) -> Sc {
    if y == Sc::C(0.0) {
        Sc::C(0.0)
    } else {
        t.mul(y, l)
    }
}

fn count(v: &Val, pos: Pos) -> R<usize> {
    match v {
        Val::Int(k) if *k >= 0 => Ok(*k as usize),
        _ => err(
            pos,
            format!("expected a non-negative int, found {}", v.type_name()),
        ),
    }
}

fn ints(v: &Val, pos: Pos) -> R<Vec<i64>> {
    if !v.is_int() {
        return err(pos, format!("expected ints, found {}", v.type_name()));
    }
    Ok(v.flat()
        .iter()
        .map(|s| s.constant().unwrap_or(0.0) as i64)
        .collect())
}

/// A vector, or each vector of an array of vectors.
/// A square matrix's size and entries (row-major).
fn square(v: &Val, name: &str, pos: Pos) -> R<(usize, Vec<Sc>)> {
    match v {
        Val::Matrix { rows, cols, v } if rows == cols => Ok((*rows, v.clone())),
        v => err(
            pos,
            format!("{name}: expected a square matrix, found {}", v.type_name()),
        ),
    }
}

/// The lower Cholesky factor (row-major, zeros above the diagonal) of the symmetric
/// matrix `a` (k × k, its lower triangle read), recorded: a matrix of data that is not
/// positive definite is refused; one of parameters gives NaN, which rejects the draw.
fn cholesky(t: &mut Tape, k: usize, a: &[Sc], pos: Pos) -> R<Vec<Sc>> {
    let mut l = vec![Sc::C(0.0); k * k];
    for j in 0..k {
        for i in j..k {
            let mut items = vec![a[i * k + j]];
            for c in 0..j {
                let p = t.mul(l[i * k + c], l[j * k + c]);
                items.push(t.neg(p));
            }
            let r = t.sum(&items);
            l[i * k + j] = if i == j {
                if r.constant().is_some_and(|r| r <= 0.0 || r.is_nan()) {
                    return err(
                        pos,
                        "cholesky_decompose: the matrix is not positive definite",
                    );
                }
                t.fun(Fun::Sqrt, r)
            } else {
                t.div(r, l[j * k + j])
            };
        }
    }
    Ok(l)
}

/// The points of a GP covariance: an array of reals (points of one dimension) or of
/// vectors.
fn points(v: &Val, pos: Pos) -> R<Vec<Vec<Sc>>> {
    match v {
        Val::Array(a) => Ok(a.iter().map(|e| e.flat()).collect()),
        v => err(
            pos,
            format!("expected an array of points, found {}", v.type_name()),
        ),
    }
}

fn vectors(v: &Val) -> Vec<Vec<Sc>> {
    match v {
        Val::Array(a) => a.iter().map(|e| e.flat()).collect(),
        other => vec![other.flat()],
    }
}
