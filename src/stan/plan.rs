//! The recorded program rearranged for the log density and its gradient over a block of
//! chains, so that the work stays in cache and recovers the loops that recording unrolled.
//!
//! A Stan program's `target` is a sum of terms: one per `~` element and `target +=`, most
//! of them inside loops over the data. A term's own operations (those nothing else reads)
//! are needed only by that term, so each term runs forward and then straight back (its
//! adjoint is 1) while its values are in cache, and only the operations that several terms
//! read (the parameters, their transforms, `log(sigma)`) keep their values for the whole
//! evaluation. Terms recorded from the same statement have the same instructions and
//! differ only in their constants (the data) and in which shared values they read (a row
//! of slots per term), so they are grouped by shape and each instruction runs over a chunk
//! of terms × lanes: the interpretation cost is shared by the chunk, as a loop over the
//! data would share it.
//!
//! Within a term, the chains of operations the recording writes most run as one step with
//! their intermediate values in registers: a linear predictor `a × b + c`, `normal_lpdf`'s
//! `d × ((a − b) / c)²`, and a sum with the one addition that reads it.
//!
//! The forward values are the recording's bit for bit (the same operations in the same
//! order on each lane), but for the terms that are a log-sum-exp (a mixture's points):
//! the logarithm of each one's sum of exponentials is taken once per evaluation, of
//! their product, the way a hand-written mixture does. A log-sum-exp's forward sweep
//! keeps its items' weights, which its reverse sweep reads instead of computing their
//! exponentials again. The gradient's sums run in another order than the recording's.

// The lane loops index several slices in step.
#![allow(clippy::needless_range_loop)]

use std::collections::HashMap;

use super::kernel::{
    apply, each, give_item, give_partial, log_sum_exp_into, sum_into, Arg, Get, Ins, Kernel, Kind,
    Splat, Src,
};

/// An operand of a term's instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Opd {
    /// The term's own value at this position.
    Local(u32),
    /// A value several terms read: the term's shared value in this column (its slot
    /// among the shared values), so that terms reading different ones share a shape.
    Shared(u32),
    /// The term's constant in this column.
    Const(u32),
}

/// What a term's instruction does: a recorded operation, or a chain of them that the
/// recording writes for common expressions, run in one pass over the lanes so that the
/// values inside the chain stay in registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Step {
    /// One recorded operation (`a`, `b`).
    Op(Kind),
    /// `a × b + c`: a product that only a sum of two reads (a linear predictor).
    MulAdd,
    /// `d × ((a − b) × c)²`: `normal_lpdf`'s kernel (`c` the reciprocal of σ), and any
    /// other square of a scaled difference scaled by a constant.
    ScaledSquare,
    /// `Σ_j x_j × c_j` over the pairs `list[s..e]`, each a value and a constant (`c_j`
    /// `Const(NONE)`: the item `x_j` alone), in item order: a sum of products of a value and
    /// a constant that only it reads (a linear predictor's row of data times the
    /// coefficients).
    Dot(u32, u32),
}

/// A term's instruction: lists index the group's `list`; operands past those its step
/// reads are `Const(NONE)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct TermIns {
    pub(super) step: Step,
    pub(super) a: Opd,
    pub(super) b: Opd,
    pub(super) c: Opd,
    pub(super) d: Opd,
}

/// Terms with the same instructions: one program, a row of constants and a row of shared
/// values' slots per term.
#[derive(Clone, Debug, Default)]
pub(super) struct Group {
    pub(super) code: Vec<TermIns>,
    pub(super) list: Vec<Opd>,
    /// Constants per term.
    pub(super) width: usize,
    /// The terms' constants, term after term.
    pub(super) consts: Vec<f64>,
    /// Shared values per term.
    pub(super) reads: usize,
    /// The slots of the terms' shared values, term after term.
    pub(super) shared: Vec<u32>,
    /// Each term's place among the terms (where its value goes).
    pub(super) terms: Vec<u32>,
    /// Per instruction, the first of the rows after the instructions' own that hold a
    /// log-sum-exp's item weights (its derivatives, from the forward sweep's
    /// exponentials), one row per item; `NONE` for other instructions.
    weights: Vec<u32>,
    /// When the term is a log-sum-exp (a mixture's point), the row after the weights
    /// that holds its sum of exponentials: the term's value is then its largest item,
    /// and the logarithms of the sums are taken once per evaluation, of their product
    /// ([`Logs`]); `NONE` otherwise.
    sums: u32,
    /// Rows of values per term: one per instruction, the weights and the sums.
    rows: usize,
}

/// An item of one of the sums that make up `target`.
#[derive(Clone, Copy, Debug)]
pub(super) enum Item {
    Const(f64),
    Term(u32),
    Shared(u32),
    /// An earlier sum.
    Sum(u32),
}

/// The log density's evaluation plan (see the module header).
#[derive(Clone, Debug)]
pub struct Plan {
    /// The values several terms read, in recording order, as a program of their own.
    pub(super) shared: Kernel,
    pub(super) groups: Vec<Group>,
    terms: usize,
    /// The sums, in recording order; the last is `target`.
    pub(super) sums: Vec<Vec<Item>>,
    /// Adjoints the sums give to shared values (slot, count).
    seeds: Vec<(u32, f64)>,
    /// The most instructions of a group.
    widest: usize,
}

/// Terms × lanes an instruction runs over at once, about.
const CHUNK_VALUES: usize = 1024;

/// Rows of `lanes` values a fused step's reverse sweep works in.
const TEMPS: usize = 3;

const SHARED: u32 = u32::MAX;
const DEAD: u32 = u32::MAX - 1;
const SUM: u32 = u32::MAX - 2;
/// The operand a one-operand instruction does not have.
pub(super) const NONE: u32 = u32::MAX;

impl Plan {
    /// The plan of `kernel`'s node `target`; `None` when it is not a sum with terms worth
    /// grouping. With `clone_products`, a product of a value and a constant that several
    /// terms read is computed by each of them (see below): the GPU kernel's plan, whose
    /// shared values are straight-line code; the CPU's keeps it shared, computed once.
    pub fn new(kernel: &Kernel, target: u32, clone_products: bool) -> Option<Plan> {
        let code = &kernel.code[..=target as usize];
        if !matches!(code.last()?.kind, Kind::Sum(..)) {
            return None;
        }
        let n = code.len();
        let items = |ins: &Ins| -> Vec<Arg> {
            match ins.kind {
                Kind::Sum(s, e) | Kind::LogSumExp(s, e) => {
                    kernel.list[s as usize..e as usize].to_vec()
                }
                Kind::Input(_) => Vec::new(),
                Kind::Fun(_) => vec![ins.a],
                _ => vec![ins.a, ins.b],
            }
        };
        let mut uses = vec![0u32; n];
        for ins in code {
            for a in items(ins) {
                if let Arg::Node(m) = a {
                    uses[m as usize] += 1;
                }
            }
        }
        // The sums that only add into target, and their items read once: the terms.
        let mut owner = vec![DEAD; n];
        owner[n - 1] = SUM;
        let mut terms = 0u32;
        let mut root = vec![false; n];
        let mut roots: Vec<u32> = Vec::new();
        for i in (0..n).rev() {
            if owner[i] != SUM {
                continue;
            }
            for a in items(&code[i]) {
                if let Arg::Node(m) = a {
                    let m = m as usize;
                    if uses[m] != 1 {
                        continue;
                    }
                    match code[m].kind {
                        Kind::Sum(..) => owner[m] = SUM,
                        Kind::Input(_) => {}
                        _ => {
                            owner[m] = terms;
                            root[m] = true;
                            roots.push(m as u32);
                            terms += 1;
                        }
                    }
                }
            }
        }
        if terms == 0 {
            return None;
        }
        // Each value belongs to the one term that reads it, or is shared. A product of a
        // value and a constant that several terms read (the recording keeps one node per
        // distinct operands, so rows of data with equal values share it) can be computed
        // by each of them instead: otherwise the terms' shapes depend on which data values
        // repeat (posteriordb's diamonds: a linear predictor over discrete predictors, 4 000
        // shared products and a shape for almost every row), which the CPU's chunks
        // tolerate but which makes the GPU kernel thousands of lines of straight-line code.
        let clonable = |m: usize| clone_products && scaled(&code[m]);
        let mut clones: Vec<(u32, u32)> = Vec::new();
        let merge = |owner: &mut [u32], m: usize, user: u32, sum: bool| {
            owner[m] = match owner[m] {
                SUM => SUM,
                // A term, read by its sum alone.
                o if sum && root[m] => o,
                DEAD => user,
                o if o == user => o,
                _ => SHARED,
            };
        };
        for i in (0..n).rev() {
            let (user, sum) = match owner[i] {
                DEAD => continue,
                SUM => (SHARED, true),
                o => (o, false),
            };
            for a in items(&code[i]) {
                if let Arg::Node(m) = a {
                    let m = m as usize;
                    if user < terms && uses[m] > 1 && clonable(m) && owner[m] != SUM {
                        // The term's own copy; its operand is read by the term.
                        clones.push((user, m as u32));
                        let c = code[m];
                        for x in [c.a, c.b] {
                            if let Arg::Node(x) = x {
                                merge(&mut owner, x as usize, user, false);
                            }
                        }
                        continue;
                    }
                    merge(&mut owner, m, user, sum);
                }
            }
            if let Kind::Input(_) = code[i].kind {
                owner[i] = SHARED;
            }
        }
        // The shared values as a program of their own.
        let mut slot = vec![u32::MAX; n];
        // Only the constants the shared values read (the terms keep theirs in rows).
        let mut shared = Kernel::default();
        let mut consts = Vec::new();
        let mut pool: HashMap<u32, u32> = HashMap::new();
        let mut remap = |slot: &[u32], consts: &mut Vec<f64>, a: Arg| match a {
            Arg::Node(m) => Arg::Node(slot[m as usize]),
            Arg::Const(c) => Arg::Const(*pool.entry(c).or_insert_with(|| {
                consts.push(kernel.consts[c as usize]);
                consts.len() as u32 - 1
            })),
        };
        for (i, ins) in code.iter().enumerate() {
            if owner[i] != SHARED {
                continue;
            }
            let kind = match ins.kind {
                Kind::Sum(s, e) | Kind::LogSumExp(s, e) => {
                    let start = shared.list.len() as u32;
                    for &a in &kernel.list[s as usize..e as usize] {
                        shared.list.push(remap(&slot, &mut consts, a));
                    }
                    let end = shared.list.len() as u32;
                    if let Kind::Sum(..) = ins.kind {
                        Kind::Sum(start, end)
                    } else {
                        Kind::LogSumExp(start, end)
                    }
                }
                k => k,
            };
            slot[i] = shared.code.len() as u32;
            shared.code.push(Ins {
                kind,
                a: remap(&slot, &mut consts, ins.a),
                b: remap(&slot, &mut consts, ins.b),
            });
        }
        shared.consts = consts;
        // Each term's instructions, grouped by shape.
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); terms as usize];
        for i in 0..n {
            if owner[i] < terms {
                members[owner[i] as usize].push(i as u32);
            }
        }
        // Which term's values a node is among (its own term's, or the last clone's).
        let mut member_of = vec![u32::MAX; n];
        if !clones.is_empty() {
            for &(t, m) in &clones {
                members[t as usize].push(m);
            }
            for nodes in &mut members {
                nodes.sort_unstable();
                nodes.dedup();
            }
            // Each term's values in the order its root reads them (operands first), so
            // that terms of one shape list them alike whichever of them the recording
            // met first.
            let mut seen = vec![u32::MAX; n];
            let mut stack: Vec<(u32, bool)> = Vec::new();
            for (t, nodes) in members.iter_mut().enumerate() {
                for &i in nodes.iter() {
                    member_of[i as usize] = t as u32;
                }
                let mut order = Vec::with_capacity(nodes.len());
                stack.push((roots[t], false));
                while let Some((i, done)) = stack.pop() {
                    let iu = i as usize;
                    if done {
                        order.push(i);
                        continue;
                    }
                    if seen[iu] == t as u32 || member_of[iu] != t as u32 {
                        continue;
                    }
                    seen[iu] = t as u32;
                    stack.push((i, true));
                    for a in items(&code[iu]).into_iter().rev() {
                        if let Arg::Node(m) = a {
                            stack.push((m, false));
                        }
                    }
                }
                debug_assert_eq!(order.len(), nodes.len());
                *nodes = order;
            }
        }
        let mut groups: Vec<Group> = Vec::new();
        let mut by_shape: HashMap<(Vec<TermIns>, Vec<Opd>), usize> = HashMap::new();
        let mut local = vec![u32::MAX; n];
        let mut fused: HashMap<u32, (Step, [Arg; 4])> = HashMap::new();
        // Sums that take in the one addition that reads them: (the sum, the other operand).
        let mut sum_plus: HashMap<u32, (usize, Arg)> = HashMap::new();
        // The term that took each value into one of its fused steps.
        let mut absorbed = vec![u32::MAX; n];
        // Sums run as dot products: (the sum, its pairs).
        let mut dots: HashMap<u32, Vec<(Arg, Arg)>> = HashMap::new();
        // Reads of each value within the term being built (stamped with the term).
        let mut reads_in = vec![(u32::MAX, 0u32); n];
        for (t, nodes) in members.iter().enumerate() {
            for &i in nodes {
                member_of[i as usize] = t as u32;
            }
            let (mut body, mut list) = (Vec::new(), Vec::new());
            let mut cols = (Vec::new(), Vec::new());
            // The chains fused steps run, found from their last operation back so that an
            // operation one has taken in is not the end of another.
            let own = |a: Arg, reads: u32| match a {
                Arg::Node(m) if owner[m as usize] == t as u32 && uses[m as usize] == reads => {
                    Some(m as usize)
                }
                _ => None,
            };
            fused.clear();
            sum_plus.clear();
            dots.clear();
            for &j in nodes {
                for a in items(&code[j as usize]) {
                    if let Arg::Node(m) = a {
                        let r = &mut reads_in[m as usize];
                        *r = if r.0 == t as u32 {
                            (r.0, r.1 + 1)
                        } else {
                            (t as u32, 1)
                        };
                    }
                }
            }
            // A product of one of the term's values and a constant that only one of its
            // operations reads.
            let product = |m: usize, absorbed: &[u32]| {
                member_of[m] == t as u32
                    && absorbed[m] != t as u32
                    && reads_in[m] == (t as u32, 1)
                    && scaled(&code[m])
            };
            for &i in nodes.iter().rev() {
                let i = i as usize;
                if absorbed[i] == t as u32 {
                    continue;
                }
                let ins = code[i];
                let found = match ins.kind {
                    Kind::Add => [(ins.a, ins.b), (ins.b, ins.a)]
                        .into_iter()
                        .find_map(|(x, c)| {
                            let j = own(x, 1)?;
                            let m = code[j];
                            (m.kind == Kind::Mul).then_some((
                                Step::MulAdd,
                                vec![m.a, m.b, c],
                                vec![j],
                            ))
                        }),
                    Kind::Mul => [(ins.a, ins.b), (ins.b, ins.a)]
                        .into_iter()
                        .find_map(|(x, k)| {
                            let q = own(x, 1)?;
                            let sq = code[q];
                            let z = own(sq.a, 2)?;
                            let scale = code[z];
                            // The difference times the scale, in either order.
                            let (d, c) = [(scale.a, scale.b), (scale.b, scale.a)]
                                .into_iter()
                                .find_map(|(x, c)| {
                                    let d = own(x, 1)?;
                                    (code[d].kind == Kind::Sub).then_some((d, c))
                                })?;
                            let sub = code[d];
                            (sq.kind == Kind::Mul
                                && matches!(sq.b, Arg::Node(b) if b as usize == z)
                                && scale.kind == Kind::Mul)
                                .then_some((
                                    Step::ScaledSquare,
                                    vec![sub.a, sub.b, c, k],
                                    vec![q, z, d],
                                ))
                        }),
                    _ => None,
                };
                // s + x as one more item of the sum s (x + s is s + x, bit for bit).
                if found.is_none() && ins.kind == Kind::Add {
                    let sum = [(ins.a, ins.b), (ins.b, ins.a)]
                        .into_iter()
                        .find_map(|(x, c)| {
                            let j = own(x, 1)?;
                            matches!(code[j].kind, Kind::Sum(..)).then_some((j, c))
                        });
                    if let Some((j, c)) = sum {
                        absorbed[j] = t as u32;
                        sum_plus.insert(i as u32, (j, c));
                    }
                }
                if let (None, Kind::Sum(s0, e0)) = (&found, ins.kind) {
                    let its = &kernel.list[s0 as usize..e0 as usize];
                    let products = its
                        .iter()
                        .filter(|a| matches!(a, Arg::Node(m) if product(*m as usize, &absorbed)))
                        .count();
                    if products >= 2 && absorbed[i] != t as u32 {
                        let mut pairs = Vec::with_capacity(its.len());
                        for &a in its {
                            match a {
                                Arg::Node(m) if product(m as usize, &absorbed) => {
                                    absorbed[m as usize] = t as u32;
                                    // The value first, the constant second (a product
                                    // is the same bits either way round).
                                    let c = code[m as usize];
                                    pairs.push(match c.a {
                                        Arg::Const(_) => (c.b, c.a),
                                        Arg::Node(_) => (c.a, c.b),
                                    });
                                }
                                _ => pairs.push((a, Arg::Const(NONE))),
                            }
                        }
                        dots.insert(i as u32, pairs);
                    }
                }
                if let Some((step, args, inner)) = found {
                    for j in inner {
                        absorbed[j] = t as u32;
                    }
                    let none = Arg::Const(NONE);
                    let mut all = [none; 4];
                    all[..args.len()].copy_from_slice(&args);
                    fused.insert(i as u32, (step, all));
                }
            }
            let kept = nodes.iter().filter(|&&i| absorbed[i as usize] != t as u32);
            for (p, &i) in kept.enumerate() {
                local[i as usize] = p as u32;
            }
            // The term's constants and shared slots, in the order its operands read them.
            let opd = |a: Arg, (consts, reads): &mut (Vec<f64>, Vec<u32>)| match a {
                Arg::Node(m) if member_of[m as usize] == t as u32 => Opd::Local(local[m as usize]),
                Arg::Node(m) => {
                    reads.push(slot[m as usize]);
                    Opd::Shared(reads.len() as u32 - 1)
                }
                Arg::Const(c) => {
                    consts.push(kernel.consts[c as usize]);
                    Opd::Const(consts.len() as u32 - 1)
                }
            };
            for &i in nodes {
                if absorbed[i as usize] == t as u32 {
                    continue;
                }
                let none = Opd::Const(NONE);
                if let Some(pairs) = dots.get(&i) {
                    let start = list.len() as u32;
                    for &(x, y) in pairs {
                        let x = opd(x, &mut cols);
                        list.push(x);
                        let y = if y == Arg::Const(NONE) {
                            none
                        } else {
                            opd(y, &mut cols)
                        };
                        list.push(y);
                    }
                    let step = Step::Dot(start, list.len() as u32);
                    body.push(TermIns {
                        step,
                        a: none,
                        b: none,
                        c: none,
                        d: none,
                    });
                    continue;
                }
                if let Some(&(step, args)) = fused.get(&i) {
                    let mut o = [none; 4];
                    for (o, a) in o.iter_mut().zip(args) {
                        if a != Arg::Const(NONE) {
                            *o = opd(a, &mut cols);
                        }
                    }
                    let [a, b, c, d] = o;
                    body.push(TermIns { step, a, b, c, d });
                    continue;
                }
                let (ins, extra) = match sum_plus.get(&i) {
                    Some(&(j, x)) => (code[j], Some(x)),
                    None => (code[i as usize], None),
                };
                let (kind, a, b) = match ins.kind {
                    Kind::Sum(s, e) | Kind::LogSumExp(s, e) => {
                        let start = list.len() as u32;
                        for &a in kernel.list[s as usize..e as usize].iter().chain(&extra) {
                            let o = opd(a, &mut cols);
                            list.push(o);
                        }
                        let end = list.len() as u32;
                        let kind = if let Kind::Sum(..) = ins.kind {
                            Kind::Sum(start, end)
                        } else {
                            Kind::LogSumExp(start, end)
                        };
                        (kind, none, none)
                    }
                    Kind::Fun(_) => (ins.kind, opd(ins.a, &mut cols), none),
                    k => {
                        let a = opd(ins.a, &mut cols);
                        (k, a, opd(ins.b, &mut cols))
                    }
                };
                body.push(TermIns {
                    step: Step::Op(kind),
                    a,
                    b,
                    c: none,
                    d: none,
                });
            }
            let g = *by_shape
                .entry((body, list))
                .or_insert_with_key(|(body, list)| {
                    groups.push(Group {
                        code: body.clone(),
                        list: list.clone(),
                        width: cols.0.len(),
                        reads: cols.1.len(),
                        ..Group::default()
                    });
                    groups.len() - 1
                });
            groups[g].consts.extend(cols.0);
            groups[g].shared.extend(cols.1);
            groups[g].terms.push(t as u32);
        }
        // The sums over terms, shared values and earlier sums.
        let mut sums = Vec::new();
        let mut seeds: HashMap<u32, f64> = HashMap::new();
        let mut sum_slot = vec![u32::MAX; n];
        for (i, ins) in code.iter().enumerate() {
            if owner[i] != SUM {
                continue;
            }
            let Kind::Sum(s, e) = ins.kind else {
                continue;
            };
            let row: Vec<Item> = kernel.list[s as usize..e as usize]
                .iter()
                .map(|&a| match a {
                    Arg::Const(c) => Item::Const(kernel.consts[c as usize]),
                    Arg::Node(m) => match owner[m as usize] {
                        SUM => Item::Sum(sum_slot[m as usize]),
                        o if root[m as usize] => Item::Term(o),
                        _ => {
                            *seeds.entry(slot[m as usize]).or_insert(0.0) += 1.0;
                            Item::Shared(slot[m as usize])
                        }
                    },
                })
                .collect();
            sum_slot[i] = sums.len() as u32;
            sums.push(row);
        }
        let mut seeds: Vec<(u32, f64)> = seeds.into_iter().collect();
        seeds.sort_by_key(|s| s.0);
        for g in &mut groups {
            // The weights' rows after the instructions' own, then the sums' row.
            g.rows = g.code.len();
            g.weights = Vec::with_capacity(g.code.len());
            for ins in &g.code {
                let mut first = NONE;
                if let Step::Op(Kind::LogSumExp(s, e)) = ins.step {
                    first = g.rows as u32;
                    g.rows += (e - s) as usize;
                }
                g.weights.push(first);
            }
            g.sums = NONE;
            if let Some(TermIns {
                step: Step::Op(Kind::LogSumExp(..)),
                ..
            }) = g.code.last()
            {
                g.sums = g.rows as u32;
                g.rows += 1;
            }
        }
        let widest = groups.iter().map(|g| g.rows).max().unwrap_or(0);
        Some(Plan {
            shared,
            groups,
            terms: terms as usize,
            sums,
            seeds,
            widest,
        })
    }

    /// Whether some shared value is a product of a value and a constant: only then does
    /// the plan with `clone_products` differ from this one (see [`Plan::new`]).
    pub fn shares_products(&self) -> bool {
        self.shared.code.iter().any(scaled)
    }

    /// Whether some terms are log-sum-exps whose logarithms are taken of their product
    /// (see [`Group`]'s `sums`): the log density is then the recording's to rounding.
    pub(super) fn defers_logs(&self) -> bool {
        self.groups.iter().any(|g| g.sums != NONE)
    }

    /// Shapes of terms.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// Fused steps over the shapes (each a chain of recorded operations run in one pass).
    #[cfg(test)]
    pub fn fused_steps(&self) -> usize {
        let fused = |i: &&TermIns| !matches!(i.step, Step::Op(_));
        self.groups
            .iter()
            .map(|g| g.code.iter().filter(fused).count())
            .sum()
    }

    /// Terms of `target`.
    pub fn term_count(&self) -> usize {
        self.terms
    }

    /// Values several terms read, kept for the whole evaluation.
    pub fn shared_len(&self) -> usize {
        self.shared.code.len()
    }

    /// Terms a chunk holds at `lanes` lanes.
    #[inline(always)]
    fn chunk(lanes: usize) -> usize {
        (CHUNK_VALUES / lanes.max(1)).max(1)
    }

    /// Working memory [`Plan::eval`] needs at `lanes` lanes.
    pub fn scratch_len(&self, lanes: usize) -> usize {
        let shared = self.shared.code.len();
        let chunk = 2 * self.widest * Self::chunk(lanes) + TEMPS;
        let weights = self.shared.weight_rows();
        lanes * (2 * shared + weights + self.terms + self.sums.len() + 2 + chunk)
    }

    /// The log density (`logp`, `lanes`) and its gradient (`grad`, `lanes` × `dim`, added
    /// to) of `lanes` chains whose positions are `theta` (`lanes` × `dim`); `scratch` holds
    /// at least [`Plan::scratch_len`] values.
    pub fn eval(
        &self,
        theta: &[f64],
        dim: usize,
        lanes: usize,
        logp: &mut [f64],
        grad: &mut [f64],
        scratch: &mut [f64],
    ) {
        let ns = self.shared.code.len();
        let (sv, rest) = scratch.split_at_mut(ns * lanes);
        let (sa, rest) = rest.split_at_mut(ns * lanes);
        let (sw, rest) = rest.split_at_mut(self.shared.weight_rows() * lanes);
        let (tv, rest) = rest.split_at_mut(self.terms * lanes);
        let (uv, rest) = rest.split_at_mut(self.sums.len() * lanes);
        let (logs, work) = rest.split_at_mut(2 * lanes);
        let mut logs = Logs::new(logs, lanes);
        self.shared.forward(theta, dim, lanes, sv);
        sa.fill(0.0);
        crate::math::simd_dispatch!(crate::math::simd(), (
            plan: &Plan = self,
            lanes: usize = lanes,
            sv: &[f64] = sv,
            sa: &mut [f64] = sa,
            tv: &mut [f64] = tv,
            logs: &mut Logs = &mut logs,
            work: &mut [f64] = work,
        ) -> () {
            let chunk = Plan::chunk(lanes);
            for g in &plan.groups {
                for first in (0..g.terms.len()).step_by(chunk) {
                    let count = chunk.min(g.terms.len() - first);
                    g.run(first, count, lanes, sv, sa, tv, logs, work);
                }
            }
        });
        for (k, row) in self.sums.iter().enumerate() {
            let (done, rest) = uv.split_at_mut(k * lanes);
            let at = |r: u32, v| row_of(v, r, lanes);
            sum_into(&mut rest[..lanes], row.len(), |j| match row[j] {
                Item::Const(c) => Src::Scalar(c),
                Item::Term(t) => at(t, tv),
                Item::Shared(s) => at(s, sv),
                Item::Sum(u) => at(u, done),
            });
        }
        let last = (self.sums.len() - 1) * lanes;
        logp[..lanes].copy_from_slice(&uv[last..last + lanes]);
        if self.defers_logs() {
            logs.add_to(&mut logp[..lanes]);
        }
        for &(s, count) in &self.seeds {
            for x in &mut sa[s as usize * lanes..(s as usize + 1) * lanes] {
                *x += count;
            }
        }
        self.shared.reverse_seeded(ns, sv, sa, sw, dim, lanes, grad);
    }
}

/// The logarithms the terms that are log-sum-exps leave out (see [`Group`]'s `sums`):
/// per lane, their product as a mantissa in [1, 2) and a power of two, so that one
/// logarithm per evaluation replaces one per term. The product runs in term order, so a
/// chain's bits do not depend on the block it runs in.
struct Logs<'a> {
    mantissa: &'a mut [f64],
    exponent: &'a mut [f64],
}

impl<'a> Logs<'a> {
    /// An empty product over `lanes` lanes of `rows` (2 × `lanes` values).
    fn new(rows: &'a mut [f64], lanes: usize) -> Self {
        let (mantissa, exponent) = rows.split_at_mut(lanes);
        mantissa.fill(1.0);
        exponent.fill(0.0);
        Logs {
            mantissa,
            exponent: &mut exponent[..lanes],
        }
    }

    /// Multiplies in one term's sums (each at least 1, or NaN), keeping the mantissa in
    /// [1, 2): the power of two taken out is exact.
    #[inline(always)]
    fn take(&mut self, sums: &[f64]) {
        let (m, e) = (&mut *self.mantissa, &mut *self.exponent);
        let sums = &sums[..m.len()];
        for l in 0..m.len() {
            let p = m[l] * sums[l];
            let (significand, k) = crate::math::significand_exponent(p);
            let nan = p.is_nan();
            m[l] = if nan { p } else { significand };
            e[l] += if nan { 0.0 } else { k as f64 };
        }
    }

    /// Adds the logarithm of the product to `logp`.
    fn add_to(&self, logp: &mut [f64]) {
        for ((lp, &m), &e) in logp.iter_mut().zip(&*self.mantissa).zip(&*self.exponent) {
            let ln = if m.is_nan() { m } else { crate::math::ln(m) };
            *lp += e.mul_add(std::f64::consts::LN_2, ln);
        }
    }
}

/// Whether `ins` multiplies a value by a constant.
fn scaled(ins: &Ins) -> bool {
    ins.kind == Kind::Mul
        && matches!(
            (ins.a, ins.b),
            (Arg::Const(_), Arg::Node(_)) | (Arg::Node(_), Arg::Const(_))
        )
}

/// Row `r` of `lanes` values.
fn row_of(v: &[f64], r: u32, lanes: usize) -> Src<'_> {
    Src::Lanes(&v[r as usize * lanes..(r as usize + 1) * lanes])
}

/// Where a chunk's operands are.
struct Chunk<'a> {
    sv: &'a [f64],
    consts: &'a [f64],
    width: usize,
    shared: &'a [u32],
    reads: usize,
    stride: usize,
    lanes: usize,
}

impl Chunk<'_> {
    /// The slot of the chunk's term `t`'s shared value in column `c`.
    #[inline(always)]
    fn slot(&self, c: u32, t: usize) -> u32 {
        self.shared[t * self.reads + c as usize]
    }

    /// The constant factor `o` of a [`Step::Dot`] pair of the chunk's term `t`: its
    /// constant, or 1 for an item alone (`x × 1` is `x`, bit for bit).
    #[inline(always)]
    fn factor(&self, o: Opd, t: usize) -> f64 {
        match o {
            Opd::Const(NONE) => 1.0,
            Opd::Const(c) => self.consts[t * self.width + c as usize],
            _ => unreachable!("a dot step's factors are constants"),
        }
    }

    /// Operand `o` of the chunk's term `t`, given the values computed so far (`done`).
    #[inline(always)]
    fn src<'b>(&'b self, done: &'b [f64], o: Opd, t: usize) -> Src<'b> {
        match o {
            Opd::Local(p) => {
                let at = p as usize * self.stride + t * self.lanes;
                Src::Lanes(&done[at..at + self.lanes])
            }
            Opd::Shared(c) => row_of(self.sv, self.slot(c, t), self.lanes),
            Opd::Const(NONE) => Src::Scalar(0.0),
            Opd::Const(c) => Src::Scalar(self.consts[t * self.width + c as usize]),
        }
    }
}

impl Group {
    /// Terms `first..first + count` forward and back: their values into `tv`, their
    /// adjoints into the shared values' `sa`; `work` holds the chunk's values and adjoints.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn run(
        &self,
        first: usize,
        count: usize,
        lanes: usize,
        sv: &[f64],
        sa: &mut [f64],
        tv: &mut [f64],
        logs: &mut Logs,
        work: &mut [f64],
    ) {
        let n = self.code.len();
        let stride = count * lanes;
        let (vals, adj) = work.split_at_mut(self.rows * stride);
        let adj = &mut adj[..n * stride + TEMPS * lanes];
        let consts = &self.consts[first * self.width..(first + count) * self.width];
        let lane = |r: u32| r as usize * lanes..(r as usize + 1) * lanes;
        let chunk = Chunk {
            sv,
            consts,
            width: self.width,
            shared: &self.shared[first * self.reads..(first + count) * self.reads],
            reads: self.reads,
            stride,
            lanes,
        };
        for (i, ins) in self.code.iter().enumerate() {
            let (done, rest) = vals.split_at_mut(i * stride);
            let done = &*done;
            let (rest, weights) = rest.split_at_mut((n - i) * stride);
            let (weights, sums) = weights.split_at_mut(match self.sums {
                NONE => weights.len(),
                r => (r as usize - n) * stride,
            });
            for t in 0..count {
                let out = &mut rest[t * lanes..(t + 1) * lanes];
                let src = |o| chunk.src(done, o, t);
                let kind = match ins.step {
                    Step::Op(k) => k,
                    Step::Dot(s, e) => {
                        // The recording's sum of the products, in its order.
                        out.fill(0.0);
                        for p in self.list[s as usize..e as usize].chunks_exact(2) {
                            let c = chunk.factor(p[1], t);
                            each!(lanes; src(p[0]) => x; {
                                for l in 0..lanes {
                                    out[l] += x.lane(l) * c;
                                }
                            });
                        }
                        continue;
                    }
                    Step::MulAdd => {
                        each!(lanes; src(ins.a) => a, src(ins.b) => b, src(ins.c) => c; {
                            for l in 0..lanes {
                                out[l] = a.lane(l) * b.lane(l) + c.lane(l);
                            }
                        });
                        continue;
                    }
                    Step::ScaledSquare => {
                        each!(lanes; src(ins.a) => a, src(ins.b) => b, src(ins.c) => c,
                              src(ins.d) => d; {
                            for l in 0..lanes {
                                let z = (a.lane(l) - b.lane(l)) * c.lane(l);
                                out[l] = d.lane(l) * (z * z);
                            }
                        });
                        continue;
                    }
                };
                match kind {
                    Kind::Sum(s, e) => {
                        let items = &self.list[s as usize..e as usize];
                        sum_into(out, items.len(), |j| chunk.src(done, items[j], t));
                    }
                    Kind::LogSumExp(s, e) => {
                        let items = &self.list[s as usize..e as usize];
                        let w = (self.weights[i] as usize - n) * stride + t * lanes;
                        let weights = Some((&mut weights[w..], stride));
                        // The term's own log-sum-exp leaves its logarithm to `logs`.
                        let sums = (i == n - 1 && self.sums != NONE)
                            .then(|| &mut sums[t * lanes..(t + 1) * lanes]);
                        log_sum_exp_into(
                            out,
                            items.len(),
                            |j| chunk.src(done, items[j], t),
                            weights,
                            sums,
                        );
                    }
                    k => apply(k, chunk.src(done, ins.a, t), chunk.src(done, ins.b, t), out),
                }
            }
        }
        let root = (n - 1) * stride;
        for t in 0..count {
            let at = self.terms[first + t] as usize * lanes;
            tv[at..at + lanes].copy_from_slice(&vals[root + t * lanes..root + (t + 1) * lanes]);
        }
        if self.sums != NONE {
            let sums = &vals[self.sums as usize * stride..][..stride];
            for row in sums.chunks_exact(lanes) {
                logs.take(row);
            }
        }
        let (adj, temps) = adj.split_at_mut(n * stride);
        let (u, rest) = temps.split_at_mut(lanes);
        let (v, w) = rest.split_at_mut(lanes);
        let w = &mut w[..lanes];
        adj[..root].fill(0.0);
        adj[root..].fill(1.0);
        let vals = &*vals;
        for i in (0..n).rev() {
            let ins = self.code[i];
            let (before, rest) = adj.split_at_mut(i * stride);
            for t in 0..count {
                let a = &rest[t * lanes..(t + 1) * lanes];
                let y = &vals[i * stride + t * lanes..i * stride + (t + 1) * lanes];
                // The adjoint of operand `o` of term `t`: its own or a shared one.
                macro_rules! to {
                    ($o:expr, |$d:ident| $give:expr) => {
                        match $o {
                            Opd::Local(p) => {
                                let at = p as usize * stride + t * lanes;
                                let $d = &mut before[at..at + lanes];
                                $give
                            }
                            Opd::Shared(c) => {
                                let $d = &mut sa[lane(chunk.slot(c, t))];
                                $give
                            }
                            Opd::Const(_) => {}
                        }
                    };
                }
                // Adds `by` (or subtracts it) to operand `o`'s adjoint.
                macro_rules! add {
                    ($o:expr, $by:expr, $sign:tt) => {
                        to!($o, |d| {
                            let by = &$by[..lanes];
                            for l in 0..lanes {
                                d[l] $sign by[l];
                            }
                        })
                    };
                }
                let src = |o| chunk.src(vals, o, t);
                let kind = match ins.step {
                    Step::Op(k) => k,
                    Step::Dot(s, e) => {
                        for p in self.list[s as usize..e as usize].chunks_exact(2) {
                            let c = chunk.factor(p[1], t);
                            for l in 0..lanes {
                                u[l] = a[l] * c;
                            }
                            add!(p[0], u, +=);
                        }
                        continue;
                    }
                    Step::MulAdd => {
                        each!(lanes; src(ins.a) => xa, src(ins.b) => xb; {
                            for l in 0..lanes {
                                u[l] = a[l] * xb.lane(l);
                                v[l] = a[l] * xa.lane(l);
                            }
                        });
                        add!(ins.a, u, +=);
                        add!(ins.b, v, +=);
                        add!(ins.c, a, +=);
                        continue;
                    }
                    Step::ScaledSquare => {
                        // z = (a − b) c: the adjoint of the difference is 2 z d c, that of
                        // c is 2 z d (a − b), that of d is z² (each times the step's).
                        each!(lanes; src(ins.a) => xa, src(ins.b) => xb, src(ins.c) => xc,
                              src(ins.d) => xd; {
                            for l in 0..lanes {
                                let diff = xa.lane(l) - xb.lane(l);
                                let z = diff * xc.lane(l);
                                let g = a[l] * xd.lane(l);
                                let dz = (g + g) * z;
                                u[l] = dz * xc.lane(l);
                                v[l] = dz * diff;
                                w[l] = a[l] * (z * z);
                            }
                        });
                        add!(ins.a, u, +=);
                        add!(ins.b, u, -=);
                        add!(ins.c, v, +=);
                        add!(ins.d, w, +=);
                        continue;
                    }
                };
                match kind {
                    Kind::Sum(s, e) => {
                        for &x in &self.list[s as usize..e as usize] {
                            to!(x, |d| give_item(a, d));
                        }
                    }
                    Kind::LogSumExp(s, e) => {
                        // Each item's adjoint is this one's times its weight.
                        let first = self.weights[i] as usize;
                        for (j, &x) in self.list[s as usize..e as usize].iter().enumerate() {
                            let at = (first + j) * stride + t * lanes;
                            let w = &vals[at..at + lanes];
                            to!(x, |d| {
                                for l in 0..lanes {
                                    d[l] += a[l] * w[l];
                                }
                            });
                        }
                    }
                    k => {
                        let (va, vb) = (src(ins.a), src(ins.b));
                        to!(ins.a, |d| give_partial(k, false, a, y, va, vb, d));
                        if !matches!(k, Kind::Fun(_)) {
                            to!(ins.b, |d| give_partial(k, true, a, y, va, vb, d));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The product of a mixture's sums gives the sum of their logarithms: over many terms
    /// with sums as large as a log-sum-exp of 16 items gives (where a plain product would
    /// overflow), with a lane of NaN staying NaN and a lane of sums of 1 giving 0 exactly.
    #[test]
    fn logs_of_a_product_are_the_sum_of_logs() {
        let lanes = 3;
        let mut rows = vec![f64::NAN; 2 * lanes];
        let mut logs = Logs::new(&mut rows, lanes);
        let mut rng = crate::rng::host_rng(9, 0, crate::rng::Purpose::Simulate);
        let mut want = 0.0;
        for t in 0..20_000 {
            let s: f64 = rand::RngExt::random_range(&mut rng, 1.0..16.0);
            want += s.ln();
            let nan = if t == 7_000 { f64::NAN } else { 2.0 };
            logs.take(&[s, 1.0, nan]);
        }
        let mut lp = vec![0.5; lanes];
        logs.add_to(&mut lp);
        assert!(
            want > 2.0 * f64::MAX_EXP as f64,
            "the product overflows f64"
        );
        let err = (lp[0] - 0.5 - want).abs();
        assert!(err <= 1e-13 * want, "{} vs {want}: {err}", lp[0] - 0.5);
        assert_eq!(lp[1], 0.5);
        assert!(lp[2].is_nan());
    }
}
