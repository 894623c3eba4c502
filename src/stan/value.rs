//! Values of a Stan program while it runs: integers, and reals that are constants or tape
//! nodes, in scalars, vectors, row vectors, matrices and arrays of them.

use super::tape::Sc;

/// A value.
#[derive(Clone, Debug)]
pub enum Val {
    /// `int`.
    Int(i64),
    /// `real`.
    Real(Sc),
    /// `vector`.
    Vector(Vec<Sc>),
    /// `row_vector`.
    Row(Vec<Sc>),
    /// `matrix`, row-major.
    Matrix {
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
        /// Entries, row-major.
        v: Vec<Sc>,
    },
    /// `array[...]` of values of one shape.
    Array(Vec<Val>),
}

impl Val {
    /// The value's type, as Stan names it (for errors).
    pub fn type_name(&self) -> String {
        match self {
            Val::Int(_) => "int".into(),
            Val::Real(_) => "real".into(),
            Val::Vector(_) => "vector".into(),
            Val::Row(_) => "row_vector".into(),
            Val::Matrix { .. } => "matrix".into(),
            Val::Array(a) => format!(
                "array of {}",
                a.first().map_or("nothing".into(), |e| e.type_name())
            ),
        }
    }

    /// Dimensions, outermost first (CmdStan's index order).
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Val::Int(_) | Val::Real(_) => vec![],
            Val::Vector(v) | Val::Row(v) => vec![v.len()],
            Val::Matrix { rows, cols, .. } => vec![*rows, *cols],
            Val::Array(a) => {
                let mut d = vec![a.len()];
                if let Some(e) = a.first() {
                    d.extend(e.dims());
                }
                d
            }
        }
    }

    /// The scalar at a full index (0-based, outermost first).
    pub fn at(&self, idx: &[usize]) -> Sc {
        match self {
            Val::Int(i) => Sc::C(*i as f64),
            Val::Real(s) => *s,
            Val::Vector(v) | Val::Row(v) => v[idx[0]],
            Val::Matrix { cols, v, .. } => v[idx[0] * cols + idx[1]],
            Val::Array(a) => a[idx[0]].at(&idx[1..]),
        }
    }

    /// Sets the scalar at a full index (0-based, outermost first); an int stays an int.
    pub fn set(&mut self, idx: &[usize], s: Sc) {
        match self {
            Val::Int(i) => *i = s.constant().unwrap_or(0.0) as i64,
            Val::Real(x) => *x = s,
            Val::Vector(v) | Val::Row(v) => v[idx[0]] = s,
            Val::Matrix { cols, v, .. } => v[idx[0] * *cols + idx[1]] = s,
            Val::Array(a) => a[idx[0]].set(&idx[1..], s),
        }
    }

    /// Every scalar, in row-major order (arrays, then their elements).
    pub fn flat(&self) -> Vec<Sc> {
        let mut out = Vec::new();
        self.flat_into(&mut out);
        out
    }

    fn flat_into(&self, out: &mut Vec<Sc>) {
        match self {
            Val::Int(i) => out.push(Sc::C(*i as f64)),
            Val::Real(s) => out.push(*s),
            Val::Vector(v) | Val::Row(v) | Val::Matrix { v, .. } => out.extend_from_slice(v),
            Val::Array(a) => a.iter().for_each(|e| e.flat_into(out)),
        }
    }

    /// Whether this is an int or an array of ints.
    pub fn is_int(&self) -> bool {
        match self {
            Val::Int(_) => true,
            Val::Array(a) => a.first().is_some_and(|e| e.is_int()),
            _ => false,
        }
    }

    /// Whether this is a single int or real.
    pub fn is_scalar(&self) -> bool {
        matches!(self, Val::Int(_) | Val::Real(_))
    }

    /// The same shape with every scalar mapped by `f` (ints become reals).
    pub fn map(&self, f: &mut impl FnMut(Sc) -> Sc) -> Val {
        match self {
            Val::Int(i) => Val::Real(f(Sc::C(*i as f64))),
            Val::Real(s) => Val::Real(f(*s)),
            Val::Vector(v) => Val::Vector(v.iter().map(|&s| f(s)).collect()),
            Val::Row(v) => Val::Row(v.iter().map(|&s| f(s)).collect()),
            Val::Matrix { rows, cols, v } => Val::Matrix {
                rows: *rows,
                cols: *cols,
                v: v.iter().map(|&s| f(s)).collect(),
            },
            Val::Array(a) => Val::Array(a.iter().map(|e| e.map(f)).collect()),
        }
    }

    /// Names of every scalar in CmdStan's order (the first index varies fastest), e.g.
    /// `b[1,1]`, `b[2,1]`, ...; and the matching full indexes.
    pub fn names(&self, name: &str) -> Vec<(String, Vec<usize>)> {
        let dims = self.dims();
        if dims.is_empty() {
            return vec![(name.to_string(), vec![])];
        }
        let total: usize = dims.iter().product();
        let mut out = Vec::with_capacity(total);
        let mut idx = vec![0usize; dims.len()];
        for _ in 0..total {
            let label: Vec<String> = idx.iter().map(|i| (i + 1).to_string()).collect();
            out.push((format!("{name}[{}]", label.join(",")), idx.clone()));
            for (k, d) in dims.iter().enumerate() {
                idx[k] += 1;
                if idx[k] < *d {
                    break;
                }
                idx[k] = 0;
            }
        }
        out
    }
}
