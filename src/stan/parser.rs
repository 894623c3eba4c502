//! A recursive-descent parser for the subset of Stan gpsamp runs. Anything outside it is
//! refused with its position and the name of the construct.

use super::ast::*;
use super::lexer::Tok;
use super::Pos;

type PResult<T> = Result<T, (Pos, String)>;

/// Parses a whole program from its tokens.
pub fn parse(toks: Vec<(Tok, Pos)>) -> PResult<Program> {
    let mut p = Parser {
        toks,
        i: 0,
        in_function: false,
    };
    p.program()
}

struct Parser {
    toks: Vec<(Tok, Pos)>,
    i: usize,
    /// Whether a function body is being parsed (`return` allowed).
    in_function: bool,
}

const TYPES: &[&str] = &[
    "int",
    "real",
    "vector",
    "row_vector",
    "matrix",
    "simplex",
    "ordered",
    "positive_ordered",
    "cholesky_factor_corr",
    "cholesky_factor_cov",
    "corr_matrix",
    "cov_matrix",
    "array",
];

const UNSUPPORTED_TYPES: &[&str] = &[
    "complex",
    "complex_vector",
    "complex_row_vector",
    "complex_matrix",
    "unit_vector",
    "sum_to_zero_vector",
    "tuple",
    "column_stochastic_matrix",
    "row_stochastic_matrix",
];

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.i].0
    }
    fn peek_at(&self, k: usize) -> &Tok {
        &self.toks[(self.i + k).min(self.toks.len() - 1)].0
    }
    fn pos(&self) -> Pos {
        self.toks[self.i].1
    }
    fn bump(&mut self) -> (Tok, Pos) {
        let t = self.toks[self.i].clone();
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
        t
    }
    fn is_sym(&self, s: &str) -> bool {
        matches!(self.peek(), Tok::Sym(x) if *x == s)
    }
    fn is_ident(&self, s: &str) -> bool {
        matches!(self.peek(), Tok::Ident(x) if x == s)
    }
    fn eat_sym(&mut self, s: &str) -> bool {
        if self.is_sym(s) {
            self.bump();
            true
        } else {
            false
        }
    }
    fn expect_sym(&mut self, s: &str) -> PResult<()> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            Err((
                self.pos(),
                format!("expected '{s}', found {}", self.describe()),
            ))
        }
    }
    fn describe(&self) -> String {
        describe(self.peek())
    }
    fn ident(&mut self) -> PResult<String> {
        match self.peek().clone() {
            Tok::Ident(s) => {
                self.bump();
                Ok(s)
            }
            _ => Err((
                self.pos(),
                format!("expected a name, found {}", self.describe()),
            )),
        }
    }

    fn program(&mut self) -> PResult<Program> {
        let mut prog = Program::default();
        let order = [
            "functions",
            "data",
            "transformed data",
            "parameters",
            "transformed parameters",
            "model",
            "generated quantities",
        ];
        let mut last = None;
        while *self.peek() != Tok::Eof {
            let pos = self.pos();
            let first = self.ident()?;
            let name = if first == "transformed" || first == "generated" {
                let second = self.ident()?;
                format!("{first} {second}")
            } else {
                first
            };
            let Some(rank) = order.iter().position(|b| *b == name) else {
                return Err((pos, format!("expected a program block, found '{name}'")));
            };
            if last.is_some_and(|l| l >= rank) {
                return Err((pos, format!("block '{name}' out of order or repeated")));
            }
            last = Some(rank);
            self.expect_sym("{")?;
            match name.as_str() {
                "functions" => {
                    while !self.is_sym("}") {
                        if let Some(f) = self.function()? {
                            // Overloads differ in their argument types.
                            let types = |g: &FunDef| {
                                g.params
                                    .iter()
                                    .map(|(t, _)| (t.base.clone(), t.dims))
                                    .collect::<Vec<_>>()
                            };
                            if prog
                                .functions
                                .iter()
                                .any(|g| g.name == f.name && types(g) == types(&f))
                            {
                                return Err((
                                    f.pos,
                                    format!(
                                        "function '{}' is defined twice with the same argument types",
                                        f.name
                                    ),
                                ));
                            }
                            prog.functions.push(f);
                        }
                    }
                }
                "data" => prog.data = self.decls("data")?,
                "parameters" => prog.parameters = self.decls("parameters")?,
                _ => {
                    let mut stmts = Vec::new();
                    while !self.is_sym("}") {
                        stmts.push(self.stmt()?);
                    }
                    match name.as_str() {
                        "transformed data" => prog.transformed_data = stmts,
                        "transformed parameters" => prog.transformed_parameters = stmts,
                        "model" => prog.model = stmts,
                        _ => prog.generated_quantities = stmts,
                    }
                }
            }
            self.expect_sym("}")?;
        }
        Ok(prog)
    }

    /// An argument or return type: `[data] [array[,...]] int|real|vector|row_vector|matrix`,
    /// or `void` where `void_ok`.
    fn fun_type(&mut self, void_ok: bool) -> PResult<FunType> {
        if self.is_ident("data") {
            self.bump();
        }
        let mut dims = 0;
        if self.is_ident("array") {
            self.bump();
            self.expect_sym("[")?;
            dims = 1;
            while self.eat_sym(",") {
                dims += 1;
            }
            self.expect_sym("]")?;
        }
        let pos = self.pos();
        let base = self.ident()?;
        let ok = matches!(
            base.as_str(),
            "int" | "real" | "vector" | "row_vector" | "matrix"
        ) || (void_ok && base == "void" && dims == 0);
        if !ok {
            return Err((
                pos,
                format!("type '{base}' is not supported in a function signature"),
            ));
        }
        Ok(FunType { base, dims })
    }

    /// A function definition (`None`: a forward declaration).
    fn function(&mut self) -> PResult<Option<FunDef>> {
        let pos = self.pos();
        let ret = self.fun_type(true)?;
        let name = self.ident()?;
        self.expect_sym("(")?;
        let mut params = Vec::new();
        if !self.eat_sym(")") {
            loop {
                let t = self.fun_type(false)?;
                params.push((t, self.ident()?));
                if self.eat_sym(")") {
                    break;
                }
                self.expect_sym(",")?;
            }
        }
        if self.eat_sym(";") {
            return Ok(None);
        }
        self.expect_sym("{")?;
        self.in_function = true;
        let mut body = Vec::new();
        while !self.is_sym("}") {
            match self.stmt() {
                Ok(s) => body.push(s),
                Err(e) => {
                    self.in_function = false;
                    return Err(e);
                }
            }
        }
        self.in_function = false;
        self.bump();
        Ok(Some(FunDef {
            ret,
            name,
            params,
            body,
            pos,
        }))
    }

    fn decls(&mut self, block: &str) -> PResult<Vec<Decl>> {
        let mut out = Vec::new();
        while !self.is_sym("}") {
            if !self.at_type() {
                return Err((
                    self.pos(),
                    format!(
                        "the {block} block holds declarations only, found {}",
                        self.describe()
                    ),
                ));
            }
            let d = self.decl()?;
            if d.init.is_some() {
                return Err((d.pos, format!("a {block} declaration cannot have a value")));
            }
            out.push(d);
        }
        Ok(out)
    }

    fn at_type(&self) -> bool {
        match self.peek() {
            Tok::Ident(s) => {
                (TYPES.contains(&s.as_str()) || UNSUPPORTED_TYPES.contains(&s.as_str()))
                    && !matches!(self.peek_at(1), Tok::Sym("(")) // a call like int_step(...)
            }
            _ => false,
        }
    }

    fn decl(&mut self) -> PResult<Decl> {
        let pos = self.pos();
        let mut dims = Vec::new();
        if self.is_ident("array") {
            self.bump();
            self.expect_sym("[")?;
            dims = self.expr_list("]")?;
        }
        let tpos = self.pos();
        let ty = self.ident()?;
        if UNSUPPORTED_TYPES.contains(&ty.as_str()) {
            return Err((tpos, format!("type '{ty}' is not supported yet")));
        }
        let mut constraint = Constraint::default();
        let sized = |p: &mut Self| -> PResult<Expr> {
            p.expect_sym("[")?;
            let e = p.expr()?;
            p.expect_sym("]")?;
            Ok(e)
        };
        if matches!(
            ty.as_str(),
            "int" | "real" | "vector" | "row_vector" | "matrix"
        ) && self.eat_sym("<")
        {
            loop {
                let kpos = self.pos();
                let key = self.ident()?;
                self.expect_sym("=")?;
                // Bounds are additive expressions: a '>' closes the constraint.
                let e = self.binary(ADDITIVE)?;
                let slot = match key.as_str() {
                    "lower" => &mut constraint.lower,
                    "upper" => &mut constraint.upper,
                    "offset" => &mut constraint.offset,
                    "multiplier" => &mut constraint.multiplier,
                    _ => return Err((kpos, format!("unknown constraint '{key}'"))),
                };
                *slot = Some(e);
                if !self.eat_sym(",") {
                    break;
                }
            }
            self.expect_sym(">")?;
        }
        let shape = match ty.as_str() {
            "int" => Shape::Int,
            "real" => Shape::Real,
            "vector" => Shape::Vector(sized(self)?),
            "row_vector" => Shape::RowVector(sized(self)?),
            "matrix" => {
                self.expect_sym("[")?;
                let r = self.expr()?;
                self.expect_sym(",")?;
                let c = self.expr()?;
                self.expect_sym("]")?;
                Shape::Matrix(r, c)
            }
            "simplex" => Shape::Simplex(sized(self)?),
            "ordered" => Shape::Ordered(sized(self)?),
            "positive_ordered" => Shape::PositiveOrdered(sized(self)?),
            "cholesky_factor_corr" => Shape::CholeskyCorr(sized(self)?),
            "cholesky_factor_cov" => {
                self.expect_sym("[")?;
                let m = self.expr()?;
                let n = if self.eat_sym(",") {
                    self.expr()?
                } else {
                    m.clone()
                };
                self.expect_sym("]")?;
                Shape::CholeskyCov(m, n)
            }
            "corr_matrix" => Shape::SquareMatrix(sized(self)?, true),
            "cov_matrix" => Shape::SquareMatrix(sized(self)?, false),
            _ => return Err((tpos, format!("expected a type, found '{ty}'"))),
        };
        let name = self.ident()?;
        if self.is_sym("[") {
            return Err((
                self.pos(),
                format!("old array syntax: write 'array[...] {ty} {name}' (Stan 2.33+)"),
            ));
        }
        let init = if self.eat_sym("=") {
            Some(self.expr()?)
        } else {
            None
        };
        self.expect_sym(";")?;
        Ok(Decl {
            shape,
            dims,
            constraint,
            name,
            init,
            pos,
        })
    }

    fn block_or_stmt(&mut self) -> PResult<Box<Stmt>> {
        Ok(Box::new(self.stmt()?))
    }

    fn stmt(&mut self) -> PResult<Stmt> {
        let pos = self.pos();
        let st = |kind| Ok(Stmt { kind, pos });
        if self.at_type() {
            return st(StmtKind::Decl(Box::new(self.decl()?)));
        }
        if self.eat_sym(";") {
            return st(StmtKind::Empty);
        }
        if self.eat_sym("{") {
            let mut body = Vec::new();
            while !self.is_sym("}") {
                body.push(self.stmt()?);
            }
            self.bump();
            return st(StmtKind::Block(body));
        }
        if let Tok::Ident(word) = self.peek().clone() {
            match word.as_str() {
                "target" if matches!(self.peek_at(1), Tok::Sym("+=")) => {
                    self.bump();
                    self.bump();
                    let e = self.expr()?;
                    self.expect_sym(";")?;
                    return st(StmtKind::Target(e));
                }
                "for" => {
                    self.bump();
                    self.expect_sym("(")?;
                    let var = self.ident()?;
                    if !self.is_ident("in") {
                        return Err((self.pos(), "expected 'in'".into()));
                    }
                    self.bump();
                    let lo = self.expr()?;
                    if self.eat_sym(":") {
                        let hi = self.expr()?;
                        self.expect_sym(")")?;
                        let body = self.block_or_stmt()?;
                        return st(StmtKind::For { var, lo, hi, body });
                    }
                    self.expect_sym(")")?;
                    let body = self.block_or_stmt()?;
                    return st(StmtKind::ForEach {
                        var,
                        over: lo,
                        body,
                    });
                }
                "while" => {
                    self.bump();
                    self.expect_sym("(")?;
                    let c = self.expr()?;
                    self.expect_sym(")")?;
                    let body = self.block_or_stmt()?;
                    return st(StmtKind::While(c, body));
                }
                "if" => {
                    self.bump();
                    self.expect_sym("(")?;
                    let c = self.expr()?;
                    self.expect_sym(")")?;
                    let a = self.block_or_stmt()?;
                    let b = if self.is_ident("else") {
                        self.bump();
                        Some(self.block_or_stmt()?)
                    } else {
                        None
                    };
                    return st(StmtKind::If(c, a, b));
                }
                "print" | "reject" | "fatal_error" => {
                    self.bump();
                    self.expect_sym("(")?;
                    let mut items = Vec::new();
                    if !self.is_sym(")") {
                        loop {
                            if let Tok::Str(s) = self.peek().clone() {
                                self.bump();
                                items.push(Printable::Str(s));
                            } else {
                                items.push(Printable::Expr(self.expr()?));
                            }
                            if !self.eat_sym(",") {
                                break;
                            }
                        }
                    }
                    self.expect_sym(")")?;
                    self.expect_sym(";")?;
                    return st(if word == "print" {
                        StmtKind::Print(items)
                    } else {
                        StmtKind::Reject(items)
                    });
                }
                "break" | "continue" => {
                    self.bump();
                    self.expect_sym(";")?;
                    return st(if word == "break" {
                        StmtKind::Break
                    } else {
                        StmtKind::Continue
                    });
                }
                "return" => {
                    if !self.in_function {
                        return Err((pos, "'return' outside a function".into()));
                    }
                    self.bump();
                    let value = if self.is_sym(";") {
                        None
                    } else {
                        Some(self.expr()?)
                    };
                    self.expect_sym(";")?;
                    return st(StmtKind::Return(value));
                }
                "increment_log_prob" | "get_lp" => {
                    return Err((
                        pos,
                        format!("'{word}' was removed from Stan; use target +="),
                    ));
                }
                _ => {}
            }
        }
        let lhs = self.expr()?;
        if self.eat_sym("~") {
            let dist = self.ident()?;
            self.expect_sym("(")?;
            let args = self.expr_list(")")?;
            let trunc = if self.is_ident("T") && matches!(self.peek_at(1), Tok::Sym("[")) {
                self.bump();
                self.bump();
                let lo = if self.is_sym(",") {
                    None
                } else {
                    Some(self.expr()?)
                };
                self.expect_sym(",")?;
                let hi = if self.is_sym("]") {
                    None
                } else {
                    Some(self.expr()?)
                };
                self.expect_sym("]")?;
                Some((lo, hi))
            } else {
                None
            };
            self.expect_sym(";")?;
            return st(StmtKind::Tilde {
                lhs,
                dist,
                args,
                trunc,
            });
        }
        if self.is_sym("<-") {
            return Err((self.pos(), "'<-' was removed from Stan; use '='".into()));
        }
        for op in ["=", "+=", "-=", "*=", "/=", ".*=", "./="] {
            if self.is_sym(op) {
                let op_pos = self.pos();
                self.bump();
                let value = self.expr()?;
                self.expect_sym(";")?;
                // x[i][j] as x[i, j]: the indexings from the variable out.
                let mut levels = Vec::new();
                let mut base = lhs;
                while let ExprKind::Index(b, idx) = base.kind {
                    levels.push(idx);
                    base = *b;
                }
                let ExprKind::Var(name) = base.kind else {
                    return Err((
                        op_pos,
                        "the left side of an assignment must be a variable or its element".into(),
                    ));
                };
                let last = levels.first().map_or(0, |l| l.len());
                let index: Vec<Index> = levels.into_iter().rev().flatten().collect();
                let chained = index.len() - last;
                if index[..chained]
                    .iter()
                    .any(|i| matches!(i, Index::Range(..)))
                {
                    return Err((
                        op_pos,
                        "x[a:b][i] cannot be assigned: index it as x[a:b, i] or by one position"
                            .into(),
                    ));
                }
                let op = match op {
                    "=" => "=",
                    "+=" => "+=",
                    "-=" => "-=",
                    "*=" => "*=",
                    "/=" => "/=",
                    ".*=" => ".*=",
                    _ => "./=",
                };
                return st(StmtKind::Assign {
                    name,
                    index,
                    chained,
                    op,
                    value,
                });
            }
        }
        if let ExprKind::Call(..) = &lhs.kind {
            self.expect_sym(";")?;
            return st(StmtKind::Call(lhs));
        }
        Err((
            self.pos(),
            format!("expected a statement, found {}", self.describe()),
        ))
    }

    /// Comma-separated expressions up to and including `close`.
    fn expr_list(&mut self, close: &str) -> PResult<Vec<Expr>> {
        let mut out = Vec::new();
        if self.eat_sym(close) {
            return Ok(out);
        }
        loop {
            out.push(self.expr()?);
            if self.eat_sym(close) {
                return Ok(out);
            }
            self.expect_sym(",")?;
        }
    }

    fn expr(&mut self) -> PResult<Expr> {
        let c = self.binary(0)?;
        if self.is_sym("?") {
            let pos = self.pos();
            self.bump();
            let a = self.expr()?;
            self.expect_sym(":")?;
            let b = self.expr()?;
            return Ok(Expr {
                kind: ExprKind::Cond(Box::new(c), Box::new(a), Box::new(b)),
                pos,
            });
        }
        Ok(c)
    }

    fn binary(&mut self, min: u8) -> PResult<Expr> {
        let mut lhs = self.unary()?;
        while let Tok::Sym(op) = *self.peek() {
            let Some(prec) = precedence(op) else { break };
            if prec < min {
                break;
            }
            let pos = self.pos();
            self.bump();
            let rhs = self.binary(prec + 1)?;
            lhs = Expr {
                kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)),
                pos,
            };
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> PResult<Expr> {
        let pos = self.pos();
        for op in ["-", "!", "+"] {
            if self.eat_sym(op) {
                let e = self.unary()?;
                let op = match op {
                    "-" => "-",
                    "!" => "!",
                    _ => "+",
                };
                return Ok(Expr {
                    kind: ExprKind::Unary(op, Box::new(e)),
                    pos,
                });
            }
        }
        self.power()
    }

    /// `a ^ b` binds tighter than unary minus and is right-associative.
    fn power(&mut self) -> PResult<Expr> {
        let base = self.postfix()?;
        if self.is_sym("^") {
            let pos = self.pos();
            self.bump();
            let exp = self.unary()?;
            return Ok(Expr {
                kind: ExprKind::Binary("^", Box::new(base), Box::new(exp)),
                pos,
            });
        }
        Ok(base)
    }

    fn postfix(&mut self) -> PResult<Expr> {
        let mut e = self.primary()?;
        loop {
            let pos = self.pos();
            if self.eat_sym("[") {
                let mut idx = Vec::new();
                loop {
                    idx.push(self.index()?);
                    if self.eat_sym("]") {
                        break;
                    }
                    self.expect_sym(",")?;
                }
                e = Expr {
                    kind: ExprKind::Index(Box::new(e), idx),
                    pos,
                };
            } else if self.eat_sym("'") {
                e = Expr {
                    kind: ExprKind::Transpose(Box::new(e)),
                    pos,
                };
            } else {
                return Ok(e);
            }
        }
    }

    fn index(&mut self) -> PResult<Index> {
        if self.is_sym(":") {
            self.bump();
            if self.is_sym(",") || self.is_sym("]") {
                return Ok(Index::Range(None, None));
            }
            return Ok(Index::Range(None, Some(self.expr()?)));
        }
        let a = self.binary(0)?;
        if self.eat_sym(":") {
            if self.is_sym(",") || self.is_sym("]") {
                return Ok(Index::Range(Some(a), None));
            }
            return Ok(Index::Range(Some(a), Some(self.binary(0)?)));
        }
        Ok(Index::One(a))
    }

    fn primary(&mut self) -> PResult<Expr> {
        let (tok, pos) = self.bump();
        let kind = match tok {
            Tok::Int(v) => ExprKind::Int(v),
            Tok::Real(v) => ExprKind::Real(v),
            Tok::Sym("(") => {
                let e = self.expr()?;
                self.expect_sym(")")?;
                return Ok(e);
            }
            Tok::Sym("{") => ExprKind::Array(self.expr_list("}")?),
            Tok::Sym("[") => ExprKind::RowVec(self.expr_list("]")?),
            Tok::Ident(name) => {
                if self.eat_sym("(") {
                    let mut args = Vec::new();
                    if !self.eat_sym(")") {
                        args.push(self.expr()?);
                        if self.eat_sym("|") {
                            // Conditional notation: f(y | a, b) is f(y, a, b).
                            if !self.is_sym(")") {
                                loop {
                                    args.push(self.expr()?);
                                    if !self.eat_sym(",") {
                                        break;
                                    }
                                }
                            }
                        } else {
                            while self.eat_sym(",") {
                                args.push(self.expr()?);
                            }
                        }
                        self.expect_sym(")")?;
                    }
                    ExprKind::Call(name, args)
                } else {
                    ExprKind::Var(name)
                }
            }
            other => {
                return Err((
                    pos,
                    format!("expected an expression, found {}", describe(&other)),
                ));
            }
        };
        Ok(Expr { kind, pos })
    }
}

/// A token as an error message names it.
fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("'{s}'"),
        Tok::Int(v) => format!("'{v}'"),
        Tok::Real(v) => format!("'{v}'"),
        Tok::Str(_) => "a string".into(),
        Tok::Sym(s) => format!("'{s}'"),
        Tok::Eof => "the end of the file".into(),
    }
}

/// Additive level: what a declaration's bounds are parsed at.
const ADDITIVE: u8 = 5;

fn precedence(op: &str) -> Option<u8> {
    Some(match op {
        "||" => 0,
        "&&" => 1,
        "==" | "!=" => 2,
        "<" | "<=" | ">" | ">=" => 3,
        "+" | "-" => ADDITIVE,
        "*" | "/" | "%" | "\\" | ".*" | "./" => 6,
        _ => return None,
    })
}
