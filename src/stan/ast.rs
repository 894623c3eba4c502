//! The syntax tree of a Stan program, every node with the position it was written at.

use super::Pos;

/// An expression.
#[derive(Clone, Debug)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where it starts.
    pub pos: Pos,
}

/// The kinds of expression.
#[derive(Clone, Debug)]
pub enum ExprKind {
    /// Integer literal.
    Int(i64),
    /// Real literal.
    Real(f64),
    /// A variable.
    Var(String),
    /// `-e`, `!e`, `+e`.
    Unary(&'static str, Box<Expr>),
    /// `a op b`.
    Binary(&'static str, Box<Expr>, Box<Expr>),
    /// `f(args)`; a conditional-notation call `f(y | a, b)` has `y` first.
    Call(String, Vec<Expr>),
    /// `e[idx, ...]`.
    Index(Box<Expr>, Vec<Index>),
    /// `e'`.
    Transpose(Box<Expr>),
    /// `c ? a : b`.
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
    /// `{a, b, ...}` (an array).
    Array(Vec<Expr>),
    /// `[a, b, ...]` (a row vector).
    RowVec(Vec<Expr>),
}

/// One index position.
#[derive(Clone, Debug)]
pub enum Index {
    /// `e`: a single index, or a multiple index when `e` is an integer array.
    One(Expr),
    /// `:` / `a:` / `:b` / `a:b`.
    Range(Option<Expr>, Option<Expr>),
}

/// A declared type without its array dimensions.
#[derive(Clone, Debug)]
pub enum Shape {
    /// `int`.
    Int,
    /// `real`.
    Real,
    /// `vector[n]`.
    Vector(Expr),
    /// `row_vector[n]`.
    RowVector(Expr),
    /// `matrix[r, c]`.
    Matrix(Expr, Expr),
    /// `simplex[n]`.
    Simplex(Expr),
    /// `ordered[n]`.
    Ordered(Expr),
    /// `positive_ordered[n]`.
    PositiveOrdered(Expr),
    /// `cholesky_factor_corr[k]`.
    CholeskyCorr(Expr),
    /// `cholesky_factor_cov[m, n]` (`[m]` is `[m, m]`).
    CholeskyCov(Expr, Expr),
    /// `corr_matrix[k]` or `cov_matrix[k]` (`true` for a correlation matrix): a matrix
    /// outside `parameters`, where it is not supported yet.
    SquareMatrix(Expr, bool),
}

/// Bounds and affine transforms of a declaration.
#[derive(Clone, Debug, Default)]
pub struct Constraint {
    /// `lower=`.
    pub lower: Option<Expr>,
    /// `upper=`.
    pub upper: Option<Expr>,
    /// `offset=`.
    pub offset: Option<Expr>,
    /// `multiplier=`.
    pub multiplier: Option<Expr>,
}

/// `array[dims] shape<constraint> name = init;`
#[derive(Clone, Debug)]
pub struct Decl {
    /// The element shape.
    pub shape: Shape,
    /// Array dimensions, outermost first.
    pub dims: Vec<Expr>,
    /// Constraint.
    pub constraint: Constraint,
    /// Name.
    pub name: String,
    /// Initial value.
    pub init: Option<Expr>,
    /// Position of the declaration.
    pub pos: Pos,
}

/// A statement.
#[derive(Clone, Debug)]
pub struct Stmt {
    /// What it is.
    pub kind: StmtKind,
    /// Where it starts.
    pub pos: Pos,
}

/// The kinds of statement.
#[derive(Clone, Debug)]
pub enum StmtKind {
    /// A local variable.
    Decl(Box<Decl>),
    /// `name[idx] op= value` (`op` is `=`, `+=`, `-=`, `*=`, `/=`, `.*=`, `./=`).
    Assign {
        /// The variable.
        name: String,
        /// Its indexes, if any: those of `x[i][j]` one after the other.
        index: Vec<Index>,
        /// How many of them come before the last indexing of `x[i][j]` (0 for `x[i, j]`),
        /// which must be single indexes for `x[i][j]` to be `x[i, j]`.
        chained: usize,
        /// The operator.
        op: &'static str,
        /// The right-hand side.
        value: Expr,
    },
    /// `e ~ dist(args) T[lo, hi]`.
    Tilde {
        /// The left-hand side.
        lhs: Expr,
        /// Distribution name (without suffix).
        dist: String,
        /// Its arguments.
        args: Vec<Expr>,
        /// Truncation bounds.
        trunc: Option<(Option<Expr>, Option<Expr>)>,
    },
    /// `target += e`.
    Target(Expr),
    /// `for (v in lo:hi) body`.
    For {
        /// Loop variable.
        var: String,
        /// First value.
        lo: Expr,
        /// Last value (inclusive).
        hi: Expr,
        /// Body.
        body: Box<Stmt>,
    },
    /// `for (v in container) body`.
    ForEach {
        /// Loop variable.
        var: String,
        /// What it runs over.
        over: Expr,
        /// Body.
        body: Box<Stmt>,
    },
    /// `while (c) body`.
    While(Expr, Box<Stmt>),
    /// `if (c) a else b`.
    If(Expr, Box<Stmt>, Option<Box<Stmt>>),
    /// `{ ... }`.
    Block(Vec<Stmt>),
    /// `print(...)`.
    Print(Vec<Printable>),
    /// `reject(...)` / `fatal_error(...)`.
    Reject(Vec<Printable>),
    /// `break;`
    Break,
    /// `continue;`
    Continue,
    /// `;`
    Empty,
    /// `return e;` / `return;` (in a function body).
    Return(Option<Expr>),
    /// `f(args);`: a call of a `void` function.
    Call(Expr),
}

/// An argument or return type of a user-defined function (unsized).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunType {
    /// `int`, `real`, `vector`, `row_vector`, `matrix` or `void`.
    pub base: String,
    /// Array dimensions (`array[,] real`: 2).
    pub dims: usize,
}

/// A user-defined function of the `functions` block.
#[derive(Clone, Debug)]
pub struct FunDef {
    /// What it returns.
    pub ret: FunType,
    /// Its name.
    pub name: String,
    /// Its arguments' types and names.
    pub params: Vec<(FunType, String)>,
    /// Its body.
    pub body: Vec<Stmt>,
    /// Where it is defined.
    pub pos: Pos,
}

/// An argument of `print` or `reject`.
#[derive(Clone, Debug)]
pub enum Printable {
    /// A string literal.
    Str(String),
    /// An expression.
    Expr(Expr),
}

/// A whole program: the blocks it has, in order.
#[derive(Clone, Debug, Default)]
pub struct Program {
    /// `functions` (definitions; forward declarations are dropped).
    pub functions: Vec<FunDef>,
    /// `data`.
    pub data: Vec<Decl>,
    /// `transformed data`.
    pub transformed_data: Vec<Stmt>,
    /// `parameters`.
    pub parameters: Vec<Decl>,
    /// `transformed parameters`.
    pub transformed_parameters: Vec<Stmt>,
    /// `model`.
    pub model: Vec<Stmt>,
    /// `generated quantities`.
    pub generated_quantities: Vec<Stmt>,
}
