//! Runs a Stan program's statements symbolically: data and literals are constants,
//! parameters are tape nodes, and every operation on a node is recorded
//! ([`super::tape::Tape`]). The same code runs `transformed data` (all constants) once on
//! the host in f64. Control flow must not depend on the parameters (then the recorded
//! program is the same at every position); where it would, the program is refused with the
//! position of the condition.

use std::collections::HashMap;

use super::ast::*;
use super::tape::{Sc, Tape};
use super::value::Val;
use super::Pos;

/// An error at a position.
pub type R<T> = Result<T, (Pos, String)>;

/// How a statement ended.
enum Flow {
    Normal,
    /// A function body's `return` (its value in [`Interp::returned`]).
    Return,
    Break,
    Continue,
}

/// Which block runs: what `target` and `~` may do there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// `transformed data`: constants only.
    TransformedData,
    /// `transformed parameters`.
    TransformedParameters,
    /// `model`.
    Model,
    /// `generated quantities`, per draw, in f64.
    Generated,
}

/// The interpreter's state.
pub struct Interp {
    /// The recorded operations.
    pub tape: Tape,
    scopes: Vec<HashMap<String, Val>>,
    /// Read-only variables below every scope (data and transformed data, shared by the
    /// per-draw runs of generated quantities).
    base: Option<std::sync::Arc<HashMap<String, Val>>>,
    /// Terms of `target`.
    pub target: Vec<Sc>,
    /// The block running.
    pub block: Block,
    /// Lines of `print` output (printed once, when the program is recorded).
    pub printed: Vec<String>,
    /// Terms of `target` that are the log likelihood: `~` statements whose left side is
    /// data, and `target +=` statements that call a density of data.
    pub loglik: Vec<Sc>,
    /// Densities evaluated so far whose variate is data (constant).
    pub data_densities: usize,
    /// The stream `_rng` functions draw from (generated quantities only).
    pub rng: Option<rand::rngs::StdRng>,
    /// What a NaN argument of an `_rng` function does.
    pub nan_args: super::random::NanArgs,
    /// The program's user-defined functions.
    pub functions: std::sync::Arc<HashMap<String, Vec<std::sync::Arc<FunDef>>>>,
    /// The value of the `return` that ended a function body.
    returned: Option<Val>,
    /// Functions being called, innermost last (recursion is refused).
    calls: Vec<Pos>,
}

fn err<T>(pos: Pos, msg: impl Into<String>) -> R<T> {
    Err((pos, msg.into()))
}

impl Interp {
    /// An interpreter with one (global) scope.
    pub fn new() -> Self {
        Self {
            tape: Tape::default(),
            scopes: vec![HashMap::new()],
            base: None,
            target: Vec::new(),
            block: Block::TransformedData,
            printed: Vec::new(),
            loglik: Vec::new(),
            data_densities: 0,
            rng: None,
            nan_args: super::random::NanArgs::Refuse,
            functions: Default::default(),
            returned: None,
            calls: Vec::new(),
        }
    }

    /// Binds `name` in the innermost scope.
    pub fn bind(&mut self, name: &str, v: Val) {
        self.scopes
            .last_mut()
            .expect("a scope")
            .insert(name.to_string(), v);
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&Val> {
        self.scopes
            .iter()
            .rev()
            .find_map(|s| s.get(name))
            .or_else(|| self.base.as_ref().and_then(|b| b.get(name)))
    }

    /// The variables bound so far at the top level.
    pub fn globals(&self) -> HashMap<String, Val> {
        self.scopes[0].clone()
    }

    /// An interpreter over read-only `base` variables.
    pub fn with_base(base: std::sync::Arc<HashMap<String, Val>>) -> Self {
        Self {
            base: Some(base),
            ..Self::new()
        }
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut Val> {
        self.scopes.iter_mut().rev().find_map(|s| s.get_mut(name))
    }

    /// Runs statements in the current scope.
    pub fn run(&mut self, stmts: &[Stmt]) -> R<()> {
        for s in stmts {
            match self.exec(s)? {
                Flow::Normal => {}
                _ => return err(s.pos, "break or continue outside a loop"),
            }
        }
        Ok(())
    }

    /// `lp` of `vals[0] ~ dist(vals[1..]) T[lo, hi]`: less the log probability of the
    /// interval, which `~` drops when it does not depend on the parameters. The variate
    /// must be a scalar; a discrete one's interval starts at `lo - 1` in the CDF.
    fn truncate(
        &mut self,
        lp: Sc,
        dist: &str,
        vals: &[Val],
        lo: Option<&Expr>,
        hi: Option<&Expr>,
        pos: Pos,
    ) -> R<Sc> {
        if !vals[0].is_scalar() {
            return err(pos, "truncation T[,] of a container is not supported yet");
        }
        let discrete = vals[0].is_int();
        let bound = |me: &mut Self, e: Option<&Expr>| -> R<Option<Sc>> {
            match e {
                Some(e) => Ok(Some(scalar(&me.eval(e)?, e.pos)?)),
                None => Ok(None),
            }
        };
        let l = bound(self, lo)?;
        let h = bound(self, hi)?;
        if let Some(y) = vals[0].flat()[0].constant() {
            let below = l.and_then(Sc::constant).is_some_and(|l| y < l);
            let above = h.and_then(Sc::constant).is_some_and(|h| y > h);
            if below || above {
                return err(pos, format!("{y} is outside its truncation bounds"));
            }
        }
        let mut all: Vec<Sc> = [l, h].into_iter().flatten().collect();
        for v in &vals[1..] {
            all.extend(v.flat());
        }
        let constant = all.iter().all(|s| s.constant().is_some());
        if constant {
            // `~` drops terms that do not depend on the parameters.
            return Ok(lp);
        }
        let at = |x: Sc| {
            let mut a = vec![Val::Real(x)];
            a.extend(vals[1..].iter().cloned());
            a
        };
        // P(y >= l) is the complement of the CDF just below l for a discrete variate.
        let below = |me: &mut Self, l: Sc| {
            if discrete {
                me.tape.sub(l, Sc::C(1.0))
            } else {
                l
            }
        };
        let norm = match (l, h) {
            (None, None) => return Ok(lp),
            (Some(l), None) => {
                let l = below(self, l);
                self.cdf(dist, "_lccdf", &at(l), pos)?
            }
            (None, Some(h)) => self.cdf(dist, "_lcdf", &at(h), pos)?,
            (Some(l), Some(h)) => {
                let l = below(self, l);
                let a = self.cdf(dist, "_lcdf", &at(h), pos)?;
                let b = self.cdf(dist, "_lcdf", &at(l), pos)?;
                let v = self.call("log_diff_exp", vec![Val::Real(a), Val::Real(b)], pos)?;
                scalar(&v, pos)?
            }
        };
        Ok(self.tape.sub(lp, norm))
    }

    /// The user-defined function `name` that takes `args`: its one definition, or the
    /// overload whose argument types the arguments have (exactly, else with ints promoted
    /// to reals); `None` when no function has that name.
    pub fn overload(
        &self,
        name: &str,
        args: &[Val],
        pos: Pos,
    ) -> R<Option<std::sync::Arc<FunDef>>> {
        let Some(all) = self.functions.get(name) else {
            return Ok(None);
        };
        if let [one] = &all[..] {
            return Ok(Some(one.clone()));
        }
        // Some(exact) when every argument fits its parameter.
        let fits = |f: &FunDef| -> Option<bool> {
            if f.params.len() != args.len() {
                return None;
            }
            let mut exact = true;
            for ((t, _), a) in f.params.iter().zip(args) {
                let (mut v, mut dims) = (a, 0);
                while let Val::Array(items) = v {
                    dims += 1;
                    match items.first() {
                        Some(e) => v = e,
                        // An empty array fits any element type of its rank or more.
                        None => break,
                    }
                }
                let empty = matches!(v, Val::Array(_));
                if dims != t.dims && !(empty && dims <= t.dims) {
                    return None;
                }
                let base = match v {
                    _ if empty => continue,
                    Val::Int(_) => "int",
                    Val::Real(_) => "real",
                    Val::Vector(_) => "vector",
                    Val::Row(_) => "row_vector",
                    Val::Matrix { .. } => "matrix",
                    Val::Array(_) => return None,
                };
                if base == "int" && t.base == "real" {
                    exact = false;
                } else if base != t.base {
                    return None;
                }
            }
            Some(exact)
        };
        let exact = all.iter().find(|f| fits(f) == Some(true));
        match exact.or_else(|| all.iter().find(|f| fits(f).is_some())) {
            Some(f) => Ok(Some(f.clone())),
            None => err(
                pos,
                format!(
                    "no definition of {name} takes ({})",
                    args.iter()
                        .map(Val::type_name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        }
    }

    /// Calls user-defined function `f`: its body runs with only its arguments in scope.
    pub fn call_user(&mut self, f: &FunDef, mut args: Vec<Val>, pos: Pos) -> R<Val> {
        if args.len() != f.params.len() {
            return err(
                pos,
                format!(
                    "{} takes {} argument(s), got {}",
                    f.name,
                    f.params.len(),
                    args.len()
                ),
            );
        }
        // A definition is known by its position: overloads may call one another.
        if self.calls.contains(&f.pos) {
            return err(
                pos,
                format!("recursive function '{}' is not supported", f.name),
            );
        }
        for ((t, name), a) in f.params.iter().zip(args.iter_mut()) {
            let empty = matches!(a, Val::Array(v) if v.is_empty());
            if t.base == "int" && !a.is_int() && !empty {
                return err(
                    pos,
                    format!(
                        "{}: argument {name} must be an int, found {}",
                        f.name,
                        a.type_name()
                    ),
                );
            }
            if t.base != "int" && a.is_int() {
                *a = a.map(&mut |s| s);
            }
        }
        let first_is_data = args
            .first()
            .is_some_and(|v| v.flat().iter().all(|s| s.constant().is_some()));
        if (f.name.ends_with("_lpdf") || f.name.ends_with("_lpmf")) && first_is_data {
            self.data_densities += 1;
        }
        let scopes = std::mem::replace(&mut self.scopes, vec![HashMap::new()]);
        let base = self.base.take();
        for ((_, name), a) in f.params.iter().zip(args) {
            self.bind(name, a);
        }
        self.calls.push(f.pos);
        self.returned = None;
        let mut result = Ok(());
        for st in &f.body {
            match self.exec(st) {
                Ok(Flow::Normal) => {}
                Ok(Flow::Return) => break,
                Ok(_) => {
                    result = err(st.pos, "break or continue outside a loop");
                    break;
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.calls.pop();
        self.scopes = scopes;
        self.base = base;
        result?;
        match (f.ret.base.as_str(), self.returned.take()) {
            ("void", _) => Ok(Val::Int(0)),
            ("int", Some(v)) if !v.is_int() => err(
                f.pos,
                format!("{} returns an int, not {}", f.name, v.type_name()),
            ),
            (base, Some(v)) if base != "int" && v.is_int() => Ok(v.map(&mut |s| s)),
            (_, Some(v)) => Ok(v),
            (_, None) => err(
                f.pos,
                format!("function '{}' ended without returning a value", f.name),
            ),
        }
    }

    fn scoped<T>(&mut self, f: impl FnOnce(&mut Self) -> R<T>) -> R<T> {
        self.scopes.push(HashMap::new());
        let r = f(self);
        self.scopes.pop();
        r
    }

    /// A declared variable's initial value (NaN reals, as Stan does) and its shape.
    pub fn declare(&mut self, d: &Decl) -> R<Val> {
        let mut dims = Vec::new();
        for e in &d.dims {
            dims.push(self.size(e)?);
        }
        let elem = match &d.shape {
            Shape::Int => Val::Int(i64::MIN),
            Shape::Real => Val::Real(Sc::C(f64::NAN)),
            Shape::Vector(n)
            | Shape::Simplex(n)
            | Shape::Ordered(n)
            | Shape::PositiveOrdered(n) => Val::Vector(vec![Sc::C(f64::NAN); self.size(n)?]),
            Shape::RowVector(n) => Val::Row(vec![Sc::C(f64::NAN); self.size(n)?]),
            Shape::CholeskyCorr(k) | Shape::SquareMatrix(k, _) => {
                let k = self.size(k)?;
                Val::Matrix {
                    rows: k,
                    cols: k,
                    v: vec![Sc::C(f64::NAN); k * k],
                }
            }
            Shape::Matrix(r, c) | Shape::CholeskyCov(r, c) => {
                let (rows, cols) = (self.size(r)?, self.size(c)?);
                Val::Matrix {
                    rows,
                    cols,
                    v: vec![Sc::C(f64::NAN); rows * cols],
                }
            }
        };
        Ok(dims
            .iter()
            .rev()
            .fold(elem, |acc, &n| Val::Array(vec![acc; n])))
    }

    /// A size expression: a non-negative int.
    pub fn size(&mut self, e: &Expr) -> R<usize> {
        match self.eval(e)? {
            Val::Int(n) if n >= 0 => Ok(n as usize),
            Val::Int(n) => err(e.pos, format!("size {n} is negative")),
            v => err(
                e.pos,
                format!("a size must be an int, found {}", v.type_name()),
            ),
        }
    }

    fn exec(&mut self, s: &Stmt) -> R<Flow> {
        match &s.kind {
            StmtKind::Empty => {}
            StmtKind::Decl(d) => {
                let mut v = self.declare(d)?;
                if let Some(init) = &d.init {
                    let x = self.eval(init)?;
                    v = convert(x, &v, init.pos)?;
                }
                self.bind(&d.name, v);
            }
            StmtKind::Assign {
                name,
                index,
                chained,
                op,
                value,
            } => {
                let rhs = self.eval(value)?;
                let idx = self.indexes(index)?;
                if idx[..*chained].iter().any(|i| !matches!(i, Ix::One(..))) {
                    return err(
                        s.pos,
                        "x[idxs][i] with a multiple index cannot be assigned: write x[idxs, i]",
                    );
                }
                let Some(cur) = self.get(name) else {
                    return err(s.pos, format!("unknown variable '{name}'"));
                };
                let old = index_val(cur, &idx, s.pos)?;
                let new = match *op {
                    "=" => rhs,
                    "+=" => self.binop("+", old.clone(), rhs, s.pos)?,
                    "-=" => self.binop("-", old.clone(), rhs, s.pos)?,
                    "*=" => self.binop("*", old.clone(), rhs, s.pos)?,
                    "/=" => self.binop("/", old.clone(), rhs, s.pos)?,
                    ".*=" => self.binop(".*", old.clone(), rhs, s.pos)?,
                    _ => self.binop("./", old.clone(), rhs, s.pos)?,
                };
                let new = convert(new, &old, value.pos)?;
                let Some(target) = self.get_mut(name) else {
                    return err(s.pos, format!("'{name}' cannot be assigned in this block"));
                };
                assign(target, &idx, new, s.pos)?;
            }
            StmtKind::Target(e) => {
                self.need_model(s.pos, "target +=")?;
                let before = self.data_densities;
                let v = self.eval(e)?;
                let terms = v.flat();
                let t = self.tape.sum(&terms);
                self.target.push(t);
                if self.data_densities > before {
                    self.loglik.push(t);
                }
            }
            StmtKind::Tilde {
                lhs,
                dist,
                args,
                trunc,
            } => {
                self.need_model(s.pos, "~")?;
                let mut vals = vec![self.eval(lhs)?];
                for a in args {
                    vals.push(self.eval(a)?);
                }
                let mut lp = self.density(dist, &vals, true, s.pos)?;
                if let Some((lo, hi)) = trunc {
                    lp = self.truncate(lp, dist, &vals, lo.as_ref(), hi.as_ref(), s.pos)?;
                }
                self.target.push(lp);
                if vals[0].flat().iter().all(|x| x.constant().is_some()) {
                    self.loglik.push(lp);
                }
            }
            StmtKind::For { var, lo, hi, body } => {
                let lo = self.int(lo)?;
                let hi = self.int(hi)?;
                let mut i = lo;
                while i <= hi {
                    let flow = self.scoped(|me| {
                        me.bind(var, Val::Int(i));
                        me.exec(body)
                    })?;
                    match flow {
                        Flow::Break => break,
                        Flow::Return => return Ok(Flow::Return),
                        _ => {}
                    }
                    i += 1;
                }
            }
            StmtKind::ForEach { var, over, body } => {
                let items: Vec<Val> = match self.eval(over)? {
                    Val::Array(a) => a,
                    Val::Vector(v) | Val::Row(v) => v.into_iter().map(Val::Real).collect(),
                    Val::Matrix { v, .. } => v.into_iter().map(Val::Real).collect(),
                    other => {
                        return err(
                            over.pos,
                            format!("cannot loop over a {}", other.type_name()),
                        )
                    }
                };
                for item in items {
                    let flow = self.scoped(|me| {
                        me.bind(var, item);
                        me.exec(body)
                    })?;
                    match flow {
                        Flow::Break => break,
                        Flow::Return => return Ok(Flow::Return),
                        _ => {}
                    }
                }
            }
            StmtKind::While(c, body) => {
                let mut n = 0u64;
                while self.cond(c)? {
                    n += 1;
                    if n > 100_000_000 {
                        return err(s.pos, "while loop ran 10^8 times");
                    }
                    let flow = self.scoped(|me| me.exec(body))?;
                    match flow {
                        Flow::Break => break,
                        Flow::Return => return Ok(Flow::Return),
                        _ => {}
                    }
                }
            }
            StmtKind::If(c, a, b) => {
                if self.cond(c)? {
                    return self.scoped(|me| me.exec(a));
                } else if let Some(b) = b {
                    return self.scoped(|me| me.exec(b));
                }
            }
            StmtKind::Block(body) => {
                return self.scoped(|me| {
                    for st in body {
                        match me.exec(st)? {
                            Flow::Normal => {}
                            f => return Ok(f),
                        }
                    }
                    Ok(Flow::Normal)
                });
            }
            StmtKind::Print(items) => {
                let line = self.printable(items)?;
                self.printed.push(line);
            }
            StmtKind::Reject(items) => {
                let line = self.printable(items)?;
                return err(s.pos, format!("reject: {line}"));
            }
            StmtKind::Return(e) => {
                self.returned = match e {
                    Some(e) => Some(self.eval(e)?),
                    None => None,
                };
                return Ok(Flow::Return);
            }
            StmtKind::Call(e) => {
                self.eval(e)?;
            }
            StmtKind::Break => return Ok(Flow::Break),
            StmtKind::Continue => return Ok(Flow::Continue),
        }
        Ok(Flow::Normal)
    }

    fn printable(&mut self, items: &[Printable]) -> R<String> {
        let mut line = String::new();
        for it in items {
            match it {
                Printable::Str(s) => line.push_str(s),
                Printable::Expr(e) => {
                    let v = self.eval(e)?;
                    let parts: Vec<String> = v
                        .flat()
                        .iter()
                        .map(|s| match s {
                            Sc::C(c) => format!("{c}"),
                            Sc::N(_) => "(parameter)".into(),
                        })
                        .collect();
                    line.push_str(&parts.join(","));
                }
            }
        }
        Ok(line)
    }

    fn need_model(&self, pos: Pos, what: &str) -> R<()> {
        if self.block == Block::Model {
            Ok(())
        } else {
            err(pos, format!("'{what}' is allowed only in the model block"))
        }
    }

    fn int(&mut self, e: &Expr) -> R<i64> {
        match self.eval(e)? {
            Val::Int(i) => Ok(i),
            v => err(e.pos, format!("expected an int, found {}", v.type_name())),
        }
    }

    fn cond(&mut self, e: &Expr) -> R<bool> {
        match self.eval(e)? {
            Val::Int(i) => Ok(i != 0),
            Val::Real(Sc::C(c)) => Ok(c != 0.0),
            Val::Real(Sc::N(_)) => err(
                e.pos,
                "a condition that depends on the parameters is not supported yet",
            ),
            v => err(
                e.pos,
                format!("a condition must be a scalar, found {}", v.type_name()),
            ),
        }
    }

    fn indexes(&mut self, idx: &[Index]) -> R<Vec<Ix>> {
        let mut out = Vec::new();
        for i in idx {
            out.push(match i {
                Index::One(e) => match self.eval(e)? {
                    Val::Int(k) => Ix::One(k, e.pos),
                    v @ Val::Array(_) if v.is_int() => Ix::Multi(
                        v.flat()
                            .iter()
                            .map(|s| s.constant().unwrap_or(0.0) as i64)
                            .collect(),
                        e.pos,
                    ),
                    v => {
                        return err(
                            e.pos,
                            format!("an index must be an int, found {}", v.type_name()),
                        )
                    }
                },
                Index::Range(a, b) => {
                    let lo = match a {
                        Some(e) => Some(self.int(e)?),
                        None => None,
                    };
                    let hi = match b {
                        Some(e) => Some(self.int(e)?),
                        None => None,
                    };
                    Ix::Range(lo, hi)
                }
            });
        }
        Ok(out)
    }

    /// Evaluates an expression.
    pub fn eval(&mut self, e: &Expr) -> R<Val> {
        match &e.kind {
            ExprKind::Int(i) => Ok(Val::Int(*i)),
            ExprKind::Real(r) => Ok(Val::Real(Sc::C(*r))),
            ExprKind::Var(n) => match self.get(n) {
                Some(v) => Ok(v.clone()),
                None => match n.as_str() {
                    "target" => err(e.pos, "reading target is not supported"),
                    _ if self.functions.contains_key(n) => err(
                        e.pos,
                        format!(
                            "function '{n}' passed as a value: higher-order functions (ODE \
                             solvers, algebraic solvers, reduce_sum) are not supported"
                        ),
                    ),
                    _ => err(e.pos, format!("unknown variable '{n}'")),
                },
            },
            ExprKind::Unary(op, a) => {
                let v = self.eval(a)?;
                match *op {
                    "+" => Ok(v),
                    "-" => match v {
                        Val::Int(i) => Ok(Val::Int(-i)),
                        v => Ok(v.map(&mut |s| self.tape.neg(s))),
                    },
                    _ => Ok(Val::Int((!self.truth(&v, a.pos)?) as i64)),
                }
            }
            ExprKind::Binary(op, a, b) => {
                if *op == "&&" || *op == "||" {
                    let x = self.cond(a)?;
                    if (*op == "&&" && !x) || (*op == "||" && x) {
                        return Ok(Val::Int(x as i64));
                    }
                    return Ok(Val::Int(self.cond(b)? as i64));
                }
                let x = self.eval(a)?;
                let y = self.eval(b)?;
                self.binop(op, x, y, e.pos)
            }
            ExprKind::Cond(c, a, b) => {
                if self.cond(c)? {
                    self.eval(a)
                } else {
                    self.eval(b)
                }
            }
            ExprKind::Index(base, idx) => {
                let ix = self.indexes(idx)?;
                // A variable is indexed in place: `y[t]` in a loop copies one element, not y.
                if let ExprKind::Var(n) = &base.kind {
                    if let Some(v) = self.get(n) {
                        return index_val(v, &ix, e.pos);
                    }
                }
                let v = self.eval(base)?;
                index_val(&v, &ix, e.pos)
            }
            ExprKind::Transpose(a) => match self.eval(a)? {
                Val::Vector(v) => Ok(Val::Row(v)),
                Val::Row(v) => Ok(Val::Vector(v)),
                Val::Matrix { rows, cols, v } => {
                    let mut t = Vec::with_capacity(v.len());
                    for j in 0..cols {
                        for i in 0..rows {
                            t.push(v[i * cols + j]);
                        }
                    }
                    Ok(Val::Matrix {
                        rows: cols,
                        cols: rows,
                        v: t,
                    })
                }
                v => err(e.pos, format!("cannot transpose a {}", v.type_name())),
            },
            ExprKind::Array(items) => {
                let mut vals = Vec::new();
                for i in items {
                    vals.push(self.eval(i)?);
                }
                // Mixed ints and reals promote to reals.
                if vals.iter().any(|v| matches!(v, Val::Real(_))) {
                    vals = vals
                        .into_iter()
                        .map(|v| match v {
                            Val::Int(i) => Val::Real(Sc::C(i as f64)),
                            v => v,
                        })
                        .collect();
                }
                Ok(Val::Array(vals))
            }
            ExprKind::RowVec(items) => {
                let mut vals = Vec::new();
                for i in items {
                    vals.push(self.eval(i)?);
                }
                if vals.iter().all(|v| v.is_scalar()) {
                    Ok(Val::Row(vals.iter().map(|v| v.at(&[])).collect()))
                } else if vals.iter().all(|v| matches!(v, Val::Row(_))) {
                    let cols = vals.first().map_or(0, |v| v.dims()[0]);
                    let mut m = Vec::new();
                    for v in &vals {
                        if v.dims()[0] != cols {
                            return err(e.pos, "rows of different lengths");
                        }
                        m.extend(v.flat());
                    }
                    Ok(Val::Matrix {
                        rows: vals.len(),
                        cols,
                        v: m,
                    })
                } else {
                    err(e.pos, "a [...] expression holds scalars or row vectors")
                }
            }
            ExprKind::Call(name, args) => {
                let mut vals = Vec::with_capacity(args.len());
                for a in args {
                    vals.push(self.eval(a)?);
                }
                self.call(name, vals, e.pos)
            }
        }
    }

    fn truth(&self, v: &Val, pos: Pos) -> R<bool> {
        match v {
            Val::Int(i) => Ok(*i != 0),
            Val::Real(Sc::C(c)) => Ok(*c != 0.0),
            Val::Real(Sc::N(_)) => err(
                pos,
                "a condition that depends on the parameters is not supported yet",
            ),
            v => err(pos, format!("expected a scalar, found {}", v.type_name())),
        }
    }

    /// A binary operator.
    pub fn binop(&mut self, op: &str, x: Val, y: Val, pos: Pos) -> R<Val> {
        use Val::*;
        if let (Int(a), Int(b)) = (&x, &y) {
            let (a, b) = (*a, *b);
            return Ok(Int(match op {
                "+" => a.wrapping_add(b),
                "-" => a.wrapping_sub(b),
                "*" | ".*" => a.wrapping_mul(b),
                "/" | "./" => {
                    if b == 0 {
                        return err(pos, "integer division by zero");
                    }
                    a / b
                }
                "%" => {
                    if b == 0 {
                        return err(pos, "modulus by zero");
                    }
                    a % b
                }
                "^" => return Ok(Real(Sc::C((a as f64).powf(b as f64)))),
                "==" => (a == b) as i64,
                "!=" => (a != b) as i64,
                "<" => (a < b) as i64,
                "<=" => (a <= b) as i64,
                ">" => (a > b) as i64,
                ">=" => (a >= b) as i64,
                _ => return err(pos, format!("operator '{op}' is not supported")),
            }));
        }
        if matches!(op, "==" | "!=" | "<" | "<=" | ">" | ">=") {
            let (a, b) = match (&x, &y) {
                (a, b) if a.is_scalar() && b.is_scalar() => (a.at(&[]), b.at(&[])),
                _ => {
                    return err(
                        pos,
                        format!("cannot compare {} and {}", x.type_name(), y.type_name()),
                    )
                }
            };
            let (Sc::C(a), Sc::C(b)) = (a, b) else {
                return err(
                    pos,
                    "a comparison that depends on the parameters is not supported yet",
                );
            };
            return Ok(Int(match op {
                "==" => a == b,
                "!=" => a != b,
                "<" => a < b,
                "<=" => a <= b,
                ">" => a > b,
                _ => a >= b,
            } as i64));
        }
        let t = &mut self.tape;
        let ew = |t: &mut Tape, op: &str, a: Sc, b: Sc| match op {
            "+" => t.add(a, b),
            "-" => t.sub(a, b),
            "*" | ".*" => t.mul(a, b),
            "/" | "./" => t.div(a, b),
            _ => t.pow(a, b),
        };
        match op {
            "+" | "-" | ".*" | "./" | "^" | ".^" => {
                let op = if op == ".^" { "^" } else { op };
                if x.is_scalar() {
                    let a = x.at(&[]);
                    return Ok(y.map(&mut |b| ew(t, op, a, b)));
                }
                if y.is_scalar() {
                    let b = y.at(&[]);
                    return Ok(x.map(&mut |a| ew(t, op, a, b)));
                }
                if x.dims() != y.dims() || std::mem::discriminant(&x) != std::mem::discriminant(&y)
                {
                    return err(
                        pos,
                        format!(
                            "'{op}' needs operands of one shape: {} {:?} and {} {:?}",
                            x.type_name(),
                            x.dims(),
                            y.type_name(),
                            y.dims()
                        ),
                    );
                }
                if let Array(_) = x {
                    return err(pos, format!("'{op}' is not defined for arrays"));
                }
                let yb = y.flat();
                let mut k = 0;
                Ok(x.map(&mut |a| {
                    let r = ew(t, op, a, yb[k]);
                    k += 1;
                    r
                }))
            }
            "*" => {
                if x.is_scalar() {
                    let a = x.at(&[]);
                    if let Array(_) = y {
                        return err(pos, "'*' is not defined for arrays");
                    }
                    return Ok(y.map(&mut |b| t.mul(a, b)));
                }
                if y.is_scalar() {
                    let b = y.at(&[]);
                    if let Array(_) = x {
                        return err(pos, "'*' is not defined for arrays");
                    }
                    return Ok(x.map(&mut |a| t.mul(a, b)));
                }
                let (xr, xc, xv) = as_matrix(&x);
                let (yr, yc, yv) = as_matrix(&y);
                if xc != yr || matches!(x, Array(_) | Vector(_)) && !matches!(y, Row(_)) {
                    return err(
                        pos,
                        format!(
                            "cannot multiply {} {:?} by {} {:?}",
                            x.type_name(),
                            x.dims(),
                            y.type_name(),
                            y.dims()
                        ),
                    );
                }
                let mut out = Vec::with_capacity(xr * yc);
                for i in 0..xr {
                    for j in 0..yc {
                        let mut terms = Vec::with_capacity(xc);
                        for k in 0..xc {
                            terms.push(t.mul(xv[i * xc + k], yv[k * yc + j]));
                        }
                        out.push(t.sum(&terms));
                    }
                }
                Ok(match (&x, &y) {
                    (Row(_), Vector(_)) => Real(out[0]),
                    (Matrix { .. }, Vector(_)) => Vector(out),
                    (Row(_), Matrix { .. }) => Row(out),
                    _ => Matrix {
                        rows: xr,
                        cols: yc,
                        v: out,
                    },
                })
            }
            "/" => {
                if y.is_scalar() {
                    let b = y.at(&[]);
                    if let Array(_) = x {
                        return err(pos, "'/' is not defined for arrays");
                    }
                    return Ok(x.map(&mut |a| t.div(a, b)));
                }
                err(
                    pos,
                    format!("cannot divide by a {} (use ./)", y.type_name()),
                )
            }
            "\\" => err(pos, "left division '\\' is not supported yet"),
            "%" => err(pos, "'%' needs two ints"),
            _ => err(pos, format!("operator '{op}' is not supported")),
        }
    }
}

impl Default for Interp {
    fn default() -> Self {
        Self::new()
    }
}

/// A vector, row vector or matrix as (rows, cols, row-major entries).
fn as_matrix(v: &Val) -> (usize, usize, Vec<Sc>) {
    match v {
        Val::Vector(x) => (x.len(), 1, x.clone()),
        Val::Row(x) => (1, x.len(), x.clone()),
        Val::Matrix { rows, cols, v } => (*rows, *cols, v.clone()),
        other => (usize::MAX, usize::MAX - 1, other.flat()),
    }
}

/// Converts an assigned value to the declared shape of `like` (ints to reals, and checks
/// shapes).
pub fn convert(v: Val, like: &Val, pos: Pos) -> R<Val> {
    Ok(match (v, like) {
        (Val::Int(i), Val::Real(_)) => Val::Real(Sc::C(i as f64)),
        (Val::Int(i), Val::Int(_)) => Val::Int(i),
        (Val::Real(s), Val::Real(_)) => Val::Real(s),
        (Val::Real(_), Val::Int(_)) => return err(pos, "cannot assign a real to an int"),
        (Val::Array(a), Val::Array(l)) => {
            if a.len() != l.len() {
                return err(
                    pos,
                    format!(
                        "size mismatch: {} assigned to {} elements",
                        a.len(),
                        l.len()
                    ),
                );
            }
            let mut out = Vec::with_capacity(a.len());
            for (x, y) in a.into_iter().zip(l) {
                out.push(convert(x, y, pos)?);
            }
            Val::Array(out)
        }
        (v, l) => {
            if std::mem::discriminant(&v) != std::mem::discriminant(l) || v.dims() != l.dims() {
                return err(
                    pos,
                    format!(
                        "cannot assign {} {:?} to {} {:?}",
                        v.type_name(),
                        v.dims(),
                        l.type_name(),
                        l.dims()
                    ),
                );
            }
            v
        }
    })
}

/// A resolved index.
#[derive(Clone, Debug)]
pub enum Ix {
    /// One 1-based position.
    One(i64, Pos),
    /// Several.
    Multi(Vec<i64>, Pos),
    /// `lo:hi`, either end open.
    Range(Option<i64>, Option<i64>),
}

fn positions(ix: &Ix, n: usize, pos: Pos) -> R<Vec<usize>> {
    let check = |k: i64| -> R<usize> {
        if k >= 1 && (k as usize) <= n {
            Ok(k as usize - 1)
        } else {
            err(pos, format!("index {k} out of range 1..{n}"))
        }
    };
    match ix {
        Ix::One(k, _) => Ok(vec![check(*k)?]),
        Ix::Multi(ks, _) => ks.iter().map(|&k| check(k)).collect(),
        Ix::Range(lo, hi) => {
            let lo = lo.unwrap_or(1);
            let hi = hi.unwrap_or(n as i64);
            (lo..=hi).map(check).collect()
        }
    }
}

/// `v[idx...]`.
pub fn index_val(v: &Val, idx: &[Ix], pos: Pos) -> R<Val> {
    let Some((first, rest)) = idx.split_first() else {
        return Ok(v.clone());
    };
    let single = matches!(first, Ix::One(..));
    match v {
        Val::Array(a) => {
            let ps = positions(first, a.len(), pos)?;
            if single {
                index_val(&a[ps[0]], rest, pos)
            } else {
                let mut out = Vec::with_capacity(ps.len());
                for p in ps {
                    out.push(index_val(&a[p], rest, pos)?);
                }
                Ok(Val::Array(out))
            }
        }
        Val::Vector(x) | Val::Row(x) => {
            if !rest.is_empty() {
                return err(pos, "too many indexes");
            }
            let ps = positions(first, x.len(), pos)?;
            if single {
                Ok(Val::Real(x[ps[0]]))
            } else {
                let sub: Vec<Sc> = ps.iter().map(|&p| x[p]).collect();
                Ok(if let Val::Vector(_) = v {
                    Val::Vector(sub)
                } else {
                    Val::Row(sub)
                })
            }
        }
        Val::Matrix { rows, cols, v: m } => {
            let rs = positions(first, *rows, pos)?;
            let (cs, col_single) = match rest.first() {
                Some(c) => (positions(c, *cols, pos)?, matches!(c, Ix::One(..))),
                None => ((0..*cols).collect(), false),
            };
            if rest.len() > 1 {
                return err(pos, "too many indexes");
            }
            let pick = |r: usize, c: usize| m[r * cols + c];
            Ok(match (single, col_single) {
                (true, true) => Val::Real(pick(rs[0], cs[0])),
                (true, false) => Val::Row(cs.iter().map(|&c| pick(rs[0], c)).collect()),
                (false, true) => Val::Vector(rs.iter().map(|&r| pick(r, cs[0])).collect()),
                (false, false) => Val::Matrix {
                    rows: rs.len(),
                    cols: cs.len(),
                    v: rs
                        .iter()
                        .flat_map(|&r| cs.iter().map(move |&c| pick(r, c)))
                        .collect(),
                },
            })
        }
        _ => err(pos, format!("cannot index a {}", v.type_name())),
    }
}

/// `target[idx...] = value`.
pub fn assign(target: &mut Val, idx: &[Ix], value: Val, pos: Pos) -> R<()> {
    let Some((first, rest)) = idx.split_first() else {
        *target = value;
        return Ok(());
    };
    let single = matches!(first, Ix::One(..));
    match target {
        Val::Array(a) => {
            let ps = positions(first, a.len(), pos)?;
            if single {
                return assign(&mut a[ps[0]], rest, value, pos);
            }
            let Val::Array(vs) = value else {
                return err(pos, "a multi-index assignment needs an array");
            };
            if vs.len() != ps.len() {
                return err(pos, "size mismatch in a multi-index assignment");
            }
            for (p, v) in ps.into_iter().zip(vs) {
                assign(&mut a[p], rest, v, pos)?;
            }
            Ok(())
        }
        Val::Vector(x) | Val::Row(x) => {
            let ps = positions(first, x.len(), pos)?;
            let vals = if single {
                vec![scalar(&value, pos)?]
            } else {
                value.flat()
            };
            if vals.len() != ps.len() || !rest.is_empty() {
                return err(pos, "size mismatch in an indexed assignment");
            }
            for (p, v) in ps.into_iter().zip(vals) {
                x[p] = v;
            }
            Ok(())
        }
        Val::Matrix { rows, cols, v: m } => {
            let rs = positions(first, *rows, pos)?;
            let cs = match rest.first() {
                Some(c) => positions(c, *cols, pos)?,
                None => (0..*cols).collect(),
            };
            let vals = value.flat();
            if vals.len() != rs.len() * cs.len() {
                return err(pos, "size mismatch in a matrix assignment");
            }
            let mut k = 0;
            for &r in &rs {
                for &c in &cs {
                    m[r * *cols + c] = vals[k];
                    k += 1;
                }
            }
            Ok(())
        }
        _ => err(pos, "cannot index-assign a scalar"),
    }
}

/// A single scalar (int or real).
pub fn scalar(v: &Val, pos: Pos) -> R<Sc> {
    if v.is_scalar() {
        Ok(v.at(&[]))
    } else {
        err(pos, format!("expected a scalar, found {}", v.type_name()))
    }
}
