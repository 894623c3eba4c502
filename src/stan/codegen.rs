//! WGSL generated from a program's evaluation plan ([`Plan`]), so that the GPU runs the
//! program as compiled code rather than interpreting its recording (`shaders/stan.wgsl`,
//! whose per-instruction `switch` and scratch-storage traffic leave a software adapter at
//! about 1.5e3 gradients per second on kidiq).
//!
//! The code mirrors `plan.rs`: the values several terms read run forward as straight-line
//! code (each a `let`); each shape of terms is a loop over its terms whose body is the
//! shape's instructions forward (each value a `let`, in registers) and then back (adjoints
//! in `var`s, the term's own adjoint 1), adding to the shared values' adjoints; finally the
//! shared values run back into the gradient. A shared value that every term of a shape
//! reads at the same place (a mixture's weights and coefficients) is that value's register,
//! its adjoint a register too; only the values that terms read by index (a hierarchical
//! model's `theta[j[n]]`) go through scratch storage, `sv` and `sa`. The data the terms differ
//! in (their constants, and which shared values they read) are the dataset's words, so the
//! code depends only on the program's shapes: the datasets a study binds one program to
//! share one kernel when their shapes agree.
//!
//! The shared values' constants (the program's numbers and what transformed data computed
//! once) are literals in the code; the terms' constants (the data the loops run over) are
//! words, as `shaders/common/stan.wgsl` reads them (`word(j)`, `wordu(j)`): per shape `g`,
//! `[3g ..]` its term count, the first word of its constants and the first word of its
//! shared reads; then each shape's constants (term after term) and shared reads by index (the
//! values' places in scratch storage).
//!
//! The code has as few branches as it can: lavapipe's compiler (LLVM) spends its time on
//! basic blocks, and every load from storage at a place that differs between invocations
//! is a loop over the SIMD lanes there, so the straight-line parts read no storage.

use std::fmt::Write;

use super::kernel::{fun_code, Arg, Kind};
use super::plan::{Item, Opd, Plan, Step, TermIns, NONE};

/// The most instructions and list items the generated code may hold (its source grows
/// with them, and so does the adapter's compile time); past it the interpreter runs.
const MAX_CODE: usize = 60_000;

/// A program's generated kernel for one dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    /// The code that fills `shaders/stan_gen.wgsl`'s `BODY` slot.
    pub body: String,
    /// Shared values that terms read, which the kernel keeps in scratch storage (a value
    /// and an adjoint each per chain); the others stay in registers.
    pub stored: usize,
    /// The dataset's words.
    pub words: Vec<f64>,
    /// Loop iterations of one evaluation (one per term of a shape of several, and one per
    /// stored value, whose adjoint is zeroed in a loop).
    pub iterations: usize,
}

/// The kernel of `plan`; `None` when the program is too large for it ([`MAX_CODE`]) or a
/// word would not be exact in f32.
pub fn generate(plan: &Plan) -> Option<Generated> {
    let shared = &plan.shared;
    let ns = shared.code.len();
    let size = ns
        + shared.list.len()
        + plan
            .groups
            .iter()
            .map(|g| g.code.len() + g.list.len())
            .sum::<usize>();
    if size > MAX_CODE {
        return None;
    }
    // The words: the shapes' headers, then their rows.
    let mut words = vec![0.0; 3 * plan.groups.len()];
    let mut seeds = vec![0.0f64; ns];
    let mut constant = 0.0;
    for row in &plan.sums {
        for item in row {
            match *item {
                Item::Const(c) => constant += c,
                Item::Shared(s) => seeds[s as usize] += 1.0,
                Item::Term(_) | Item::Sum(_) => {}
            }
        }
    }
    // The shared values that terms read by index (a read whose slot differs between a
    // shape's terms), numbered in storage; a read of one slot by every term uses its
    // register.
    let uniforms: Vec<Vec<Option<u32>>> = plan.groups.iter().map(uniform_reads).collect();
    let mut read: Vec<Option<u32>> = vec![None; ns];
    let mut stored = 0u32;
    for (group, uniform) in plan.groups.iter().zip(&uniforms) {
        for (k, &s) in group.shared.iter().enumerate() {
            if uniform[k % group.reads].is_none() {
                read[s as usize].get_or_insert_with(|| {
                    stored += 1;
                    stored - 1
                });
            }
        }
    }
    let stored = stored as usize;
    for (g, group) in plan.groups.iter().enumerate() {
        if group.terms.len() == 1 {
            // Written out in the code.
            continue;
        }
        words[3 * g] = group.terms.len() as f64;
        words[1 + 3 * g] = words.len() as f64;
        words.extend(&group.consts);
        words[2 + 3 * g] = words.len() as f64;
        // The reads by index alone: the code names a uniform read's register.
        let uniform = &uniforms[g];
        words.extend(
            group
                .shared
                .iter()
                .enumerate()
                .filter(|(k, _)| uniform[k % group.reads].is_none())
                .map(|(_, &s)| f64::from(read[s as usize].expect("numbered above"))),
        );
    }
    if words.len() >= 1 << 24 {
        return None;
    }
    let mut out = Code::default();
    // The shared values forward, each a `let`; those that terms read also into storage.
    let sarg = |a: Arg| match a {
        Arg::Node(m) => format!("s{m}"),
        Arg::Const(c) => literal(shared.consts[c as usize]),
    };
    for (i, ins) in shared.code.iter().enumerate() {
        let y = format!("s{i}");
        match ins.kind {
            Kind::Input(k) => out.line(format_args!("let {y} = (*theta)[{k}];")),
            Kind::Sum(s, e) | Kind::LogSumExp(s, e) => {
                let items: Vec<String> = shared.list[s as usize..e as usize]
                    .iter()
                    .map(|&a| sarg(a))
                    .collect();
                out.line(format_args!("var {y}: f32;"));
                out.list(ins.kind, &y, &items);
            }
            k => out.line(format_args!(
                "let {y} = {};",
                value(k, &sarg(ins.a), &sarg(ins.b))
            )),
        }
        if let Some(k) = read[i] {
            out.line(format_args!("set_sv({k}u, {y});"));
        }
    }
    if stored > 0 {
        out.line(format_args!("for (var k = 0u; k < {stored}u; k++) {{"));
        out.line(format_args!("    set_sa(k, 0.0);"));
        out.line(format_args!("}}"));
    }
    out.line(format_args!("lp = {};", literal(constant)));
    for (i, &count) in seeds.iter().enumerate() {
        let c = literal(count);
        if count != 0.0 {
            out.line(format_args!("lp += {c} * s{i};"));
        }
        out.line(format_args!("var a{i} = {c};"));
    }
    // The shapes of terms.
    for (g, (group, uniform)) in plan.groups.iter().zip(&uniforms).enumerate() {
        out.term_loop(g, group, uniform);
    }
    // The shared values back.
    for (i, ins) in shared.code.iter().enumerate().rev() {
        let y = format!("s{i}");
        if let Some(k) = read[i] {
            out.line(format_args!("a{i} += sa({k}u);"));
        }
        // Without branches (a branch per value slows the adapter's compiler): a zero
        // adjoint gives nothing, even where a partial derivative is not finite.
        out.line(format_args!("{{"));
        out.depth += 1;
        out.line(format_args!("let g = a{i};"));
        out.line(format_args!("let live = g != 0.0;"));
        let to = |a: Arg| match a {
            Arg::Node(m) => Some(format!("a{m}")),
            Arg::Const(_) => None,
        };
        match ins.kind {
            Kind::Input(k) => out.line(format_args!("(*grad)[{k}] += g;")),
            Kind::Sum(s, e) | Kind::LogSumExp(s, e) => {
                for &a in &shared.list[s as usize..e as usize] {
                    if let Some(d) = to(a) {
                        let by = item_partial(ins.kind, &sarg(a), &y);
                        out.line(format_args!("{d} += select(0.0, {by}, live);"));
                    }
                }
            }
            k => {
                let (pa, pb) = partials(k, &sarg(ins.a), &sarg(ins.b), &y);
                for (arg, p) in [(ins.a, Some(pa)), (ins.b, pb)] {
                    if let (Some(d), Some(p)) = (to(arg), p) {
                        out.line(format_args!("{d} += select(0.0, {p}, live);"));
                    }
                }
            }
        }
        out.depth -= 1;
        out.line(format_args!("}}"));
    }
    let iterations = plan
        .groups
        .iter()
        .map(|g| g.terms.len())
        .filter(|&n| n > 1)
        .sum::<usize>()
        + stored;
    Some(Generated {
        body: out.text,
        stored,
        words,
        iterations,
    })
}

impl Generated {
    /// The module-scope declarations the body needs: the scratch storage of the shared
    /// values that terms read (slot `k` of chain `g_chain` at `k * g_chains + g_chain`,
    /// adjoints after the values) and its accessors; nothing when there are none.
    pub fn globals(&self) -> String {
        if self.stored == 0 {
            return String::new();
        }
        let (b, n) = (crate::model::SCRATCH_BINDING, self.stored);
        format!(
            "@group(0) @binding({b}) var<storage, read_write> scratch: array<f32>;

fn sv(k: u32) -> f32 {{
    return scratch[k * g_chains + g_chain];
}}

fn set_sv(k: u32, x: f32) {{
    scratch[k * g_chains + g_chain] = x;
}}

fn sa(k: u32) -> f32 {{
    return scratch[({n}u + k) * g_chains + g_chain];
}}

fn set_sa(k: u32, x: f32) {{
    scratch[({n}u + k) * g_chains + g_chain] = x;
}}

fn add_sa(k: u32, x: f32) {{
    let i = ({n}u + k) * g_chains + g_chain;
    scratch[i] += x;
}}
"
        )
    }
}

/// For each of a shape's shared reads, the slot every one of its terms reads there, when
/// they all read the same one (always, for a shape of one term): the code then names that
/// value's register and adds to its adjoint's, with no storage or index.
fn uniform_reads(group: &super::plan::Group) -> Vec<Option<u32>> {
    (0..group.reads)
        .map(|r| {
            let first = group.shared[r];
            group
                .shared
                .iter()
                .skip(r)
                .step_by(group.reads)
                .all(|&s| s == first)
                .then_some(first)
        })
        .collect()
}

/// `x` in f32 as WGSL: a literal, or the bits of an infinity or NaN (which have none).
fn literal(x: f64) -> String {
    let f = x as f32;
    if f.is_finite() {
        crate::shader::f32_literal(x)
    } else {
        format!("bitcast<f32>({:#010x}u)", f.to_bits())
    }
}

/// The value of a one- or two-operand instruction.
fn value(kind: Kind, a: &str, b: &str) -> String {
    match kind {
        Kind::Add => format!("{a} + {b}"),
        Kind::Sub => format!("{a} - {b}"),
        Kind::Mul => format!("{a} * {b}"),
        Kind::Div => format!("{a} / {b}"),
        Kind::Pow => format!("st_pow({a}, {b})"),
        Kind::Max => format!("max({a}, {b})"),
        Kind::Min => format!("min({a}, {b})"),
        Kind::Fun(f) => format!("fun_f_{}({a})", fun_code(f)),
        Kind::Input(_) | Kind::Sum(..) | Kind::LogSumExp(..) => {
            unreachable!("{kind:?} is written by its caller")
        }
    }
}

/// The adjoint an instruction of value `y` gives its operands, times its own `g`: the
/// first operand's, and the second's where it has one.
fn partials(kind: Kind, a: &str, b: &str, y: &str) -> (String, Option<String>) {
    match kind {
        Kind::Add => ("g".into(), Some("g".into())),
        Kind::Sub => ("g".into(), Some("-g".into())),
        Kind::Mul => (format!("g * {b}"), Some(format!("g * {a}"))),
        Kind::Div => (format!("g / {b}"), Some(format!("-g * {y} / {b}"))),
        Kind::Pow => (
            format!("g * {b} * st_pow({a}, {b} - 1.0)"),
            Some(format!("g * {y} * log({a})")),
        ),
        Kind::Max => (
            format!("select(0.0, g, {a} >= {b})"),
            Some(format!("select(g, 0.0, {a} >= {b})")),
        ),
        Kind::Min => (
            format!("select(0.0, g, {a} <= {b})"),
            Some(format!("select(g, 0.0, {a} <= {b})")),
        ),
        Kind::Fun(f) => (format!("g * fun_d_{}({a}, {y})", fun_code(f)), None),
        Kind::Input(_) | Kind::Sum(..) | Kind::LogSumExp(..) => {
            unreachable!("{kind:?} is written by its caller")
        }
    }
}

/// What a list's item `x` gets of the list's adjoint `g` (the list's value `y`).
fn item_partial(kind: Kind, x: &str, y: &str) -> String {
    match kind {
        Kind::LogSumExp(..) => format!("g * exp({x} - {y})"),
        _ => "g".into(),
    }
}

/// WGSL being written, indented.
#[derive(Default)]
struct Code {
    text: String,
    depth: usize,
}

impl Code {
    fn line(&mut self, l: std::fmt::Arguments) {
        for _ in 0..self.depth + 1 {
            self.text.push_str("    ");
        }
        self.text
            .write_fmt(l)
            .expect("a String takes what is written");
        self.text.push('\n');
    }

    /// `y = Σ items` or `y = ln Σ e^items` (as the interpreter: the largest item out first,
    /// the largest alone when it is not finite).
    fn list(&mut self, kind: Kind, y: &str, items: &[String]) {
        self.line(format_args!("{{"));
        self.depth += 1;
        if let Kind::LogSumExp(..) = kind {
            // Without a branch: the sum runs shifted by 0 where it is not taken.
            self.line(format_args!("var m = NEG_BIG;"));
            for x in items {
                self.line(format_args!("m = max(m, {x});"));
            }
            self.line(format_args!("let ok = m > NEG_BIG && is_finite_f32(m);"));
            self.line(format_args!("let k = select(0.0, m, ok);"));
            self.line(format_args!("var s = 0.0;"));
            for x in items {
                self.line(format_args!("s += exp({x} - k);"));
            }
            self.line(format_args!("{y} = select(m, m + log(s), ok);"));
        } else {
            self.line(format_args!("var s = 0.0;"));
            for x in items {
                self.line(format_args!("s += {x};"));
            }
            self.line(format_args!("{y} = s;"));
        }
        self.depth -= 1;
        self.line(format_args!("}}"));
    }

    /// Shape `g`'s terms: a loop whose body runs a term forward and back.
    /// `uniform`: [`uniform_reads`] of the shape.
    fn term_loop(&mut self, g: usize, group: &super::plan::Group, uniform: &[Option<u32>]) {
        let n = group.code.len();
        // A shape of one term is written out: its constants literals, its shared values
        // the registers that hold them (no storage, no loop).
        let single = group.terms.len() == 1;
        self.line(format_args!("{{"));
        self.depth += 1;
        if single {
            for (c, &x) in group.consts.iter().enumerate() {
                self.line(format_args!("let c{c} = {};", literal(x)));
            }
        } else {
            self.line(format_args!("let n = wordu({}u);", 3 * g));
            self.line(format_args!("let cb = wordu({}u);", 1 + 3 * g));
            self.line(format_args!("let rb = wordu({}u);", 2 + 3 * g));
            self.line(format_args!("for (var t = 0u; t < n; t++) {{"));
            self.depth += 1;
            for c in 0..group.width {
                self.line(format_args!(
                    "let c{c} = word(cb + t * {}u + {c}u);",
                    group.width
                ));
            }
            let indexed: Vec<usize> = (0..group.reads).filter(|&r| uniform[r].is_none()).collect();
            for (j, r) in indexed.iter().enumerate() {
                self.line(format_args!(
                    "let r{r} = wordu(rb + t * {}u + {j}u);",
                    indexed.len()
                ));
            }
        }
        let opd = |o: Opd| match o {
            Opd::Local(p) => format!("v{p}"),
            Opd::Shared(c) => match uniform[c as usize] {
                Some(slot) => format!("s{slot}"),
                None => format!("sv(r{c})"),
            },
            Opd::Const(NONE) => "0.0".into(),
            Opd::Const(c) => format!("c{c}"),
        };
        let items = |s: u32, e: u32| -> Vec<Opd> { group.list[s as usize..e as usize].to_vec() };
        // Forward.
        for (i, ins) in group.code.iter().enumerate() {
            let y = format!("v{i}");
            let TermIns { step, a, b, c, d } = *ins;
            let (a, b, c, d) = (opd(a), opd(b), opd(c), opd(d));
            match step {
                Step::MulAdd => self.line(format_args!("let {y} = {a} * {b} + {c};")),
                Step::Dot(s, e) => {
                    self.line(format_args!("var {y} = 0.0;"));
                    for p in items(s, e).chunks_exact(2) {
                        match p[1] {
                            Opd::Const(NONE) => self.line(format_args!("{y} += {};", opd(p[0]))),
                            q => self.line(format_args!("{y} += {} * {};", opd(p[0]), opd(q))),
                        }
                    }
                }
                Step::ScaledSquare => {
                    self.line(format_args!("let z{i} = ({a} - {b}) * {c};"));
                    self.line(format_args!("let {y} = {d} * (z{i} * z{i});"));
                }
                Step::Op(k @ (Kind::Sum(s, e) | Kind::LogSumExp(s, e))) => {
                    let xs: Vec<String> = items(s, e).into_iter().map(opd).collect();
                    self.line(format_args!("var {y}: f32;"));
                    self.list(k, &y, &xs);
                }
                Step::Op(k) => self.line(format_args!("let {y} = {};", value(k, &a, &b))),
            }
        }
        self.line(format_args!("lp += v{};", n - 1));
        // Back: every value but the term's own starts at 0.
        for i in 0..n - 1 {
            self.line(format_args!("var d{i} = 0.0;"));
        }
        self.line(format_args!("var d{} = 1.0;", n - 1));
        for (i, ins) in group.code.iter().enumerate().rev() {
            let y = format!("v{i}");
            let TermIns { step, a, b, c, d } = *ins;
            self.line(format_args!("{{"));
            self.depth += 1;
            self.line(format_args!("let g = d{i};"));
            let mut give = |o: Opd, by: String| match o {
                Opd::Local(p) => self.line(format_args!("d{p} += {by};")),
                Opd::Shared(c) => match uniform[c as usize] {
                    Some(slot) => self.line(format_args!("a{slot} += {by};")),
                    None => self.line(format_args!("add_sa(r{c}, {by});")),
                },
                Opd::Const(_) => {}
            };
            match step {
                Step::Dot(s, e) => {
                    // Each value times its constant (the constants have no adjoint).
                    for p in items(s, e).chunks_exact(2) {
                        match p[1] {
                            Opd::Const(NONE) => give(p[0], "g".into()),
                            c => give(p[0], format!("g * {}", opd(c))),
                        }
                    }
                }
                Step::MulAdd => {
                    give(a, format!("g * {}", opd(b)));
                    give(b, format!("g * {}", opd(a)));
                    give(c, "g".into());
                }
                Step::ScaledSquare => {
                    // z = (a − b) c: the difference gets 2 z d g c, c gets 2 z d g
                    // (a − b), d gets z² g.
                    let dz = format!("(2.0 * g * {} * z{i})", opd(d));
                    give(a, format!("{dz} * {}", opd(c)));
                    give(b, format!("-{dz} * {}", opd(c)));
                    give(c, format!("{dz} * ({} - {})", opd(a), opd(b)));
                    give(d, format!("g * (z{i} * z{i})"));
                }
                Step::Op(k @ (Kind::Sum(s, e) | Kind::LogSumExp(s, e))) => {
                    for x in items(s, e) {
                        give(x, item_partial(k, &opd(x), &y));
                    }
                }
                Step::Op(k) => {
                    let (pa, pb) = partials(k, &opd(a), &opd(b), &y);
                    give(a, pa);
                    if let Some(pb) = pb {
                        give(b, pb);
                    }
                }
            }
            self.depth -= 1;
            self.line(format_args!("}}"));
        }
        if !single {
            self.depth -= 1;
            self.line(format_args!("}}"));
        }
        self.depth -= 1;
        self.line(format_args!("}}"));
    }
}
