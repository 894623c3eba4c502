//! Stan programs as model families. A program is parsed ([`parser`]), run once against
//! its data with the parameters as symbols ([`interp`]), and what it computes from them is
//! recorded as a straight-line program ([`tape`]) whose forward sweep is the log density
//! and whose reverse sweep is its exact gradient. Data and transformed data are folded in as
//! constants; parameters go through Stan's constraining transforms, whose log Jacobians
//! join `target`, so the sampler works on the unconstrained space as Stan's does.
//!
//! `generated quantities` run per stored draw on the CPU in f64, after the parameters and
//! transformed parameters are recomputed from the draw; their `_rng` functions
//! ([`random`]) draw from the Philox stream of the draw. A study (`gpsamp sbc --stan`)
//! simulates datasets with them ([`StanModel::for_study`]) and compiles the program
//! against each one ([`Model::bind`]).
//!
//! Two kernels run the recording: on the CPU over blocks of chains (`kernel.rs`, structure
//! of arrays), term by term with the terms of one shape together (`plan.rs`: the loops that
//! recording unrolled), and on the GPU one invocation per chain, by code generated from the
//! plan (`codegen.rs`, `shaders/stan_gen.wgsl`) whose terms' data are the dataset's words
//! ([`Model::device_data`]), or where there is none by the recording's interpreter
//! (`shaders/stan.wgsl`), which reads the whole program from its data batch and keeps each
//! chain's forward values and adjoints in scratch storage.

pub mod ast;
mod codegen;
mod functions;
pub mod interp;
mod kernel;
pub mod lexer;
pub mod parser;
mod plan;
pub mod random;
pub mod tape;
pub mod value;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::data::{DataBatch, Dataset};
use crate::error::{Error, Result};
use crate::model::Model;
use ast::{Decl, Program, Shape, StmtKind};
use interp::{Block, Interp};
use tape::{Fun, Sc, Tape};

use value::Val;

/// Chains evaluated together on the CPU, at most: wide blocks share each instruction's
/// interpretation among more chains, as long as the values a block keeps stay in cache.
const BLOCK_LANES: usize = 256;

/// Values a block keeps for the whole evaluation (the shared values and their adjoints, or
/// every slot without a plan), at most, when it can: 4 MiB.
const BLOCK_VALUES: usize = 1 << 19;

/// A position in a program: 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line.
    pub line: usize,
    /// Column.
    pub col: usize,
}

/// An interpreter error as the error of the program in `path`, at its line and column.
fn located(path: &Path, (pos, message): (Pos, String)) -> Error {
    Error::Program {
        path: path.to_path_buf(),
        line: pos.line,
        column: pos.col,
        message,
    }
}

/// Parses a program; errors name the file, line and column.
pub fn parse(path: &Path, source: &str) -> Result<Program> {
    let located = |e| located(path, e);
    let toks = lexer::lex(source).map_err(located)?;
    parser::parse(toks).map_err(located)
}

/// A Stan program compiled against its data: a model family for the samplers.
#[derive(Clone, Debug)]
pub struct StanModel {
    name: String,
    /// The recording against the data file's data.
    rec: Arc<Recording>,
    /// One recording per dataset of the batch the model is bound to ([`Model::bind`]: a
    /// study's simulated datasets); `None`: every dataset is `rec`'s.
    bound: Option<Arc<Vec<Arc<Recording>>>>,
    dim: usize,
    /// CmdStan names of the parameters and transformed parameters.
    output_names: Vec<String>,
    /// Whether the generated quantities are among the model's quantities (not in a study,
    /// where they are the simulation).
    report_generated: bool,
    notes: Vec<String>,
    /// The program and its data, to compile it again against simulated data.
    source: Arc<Source>,
    /// What a study simulates ([`StanModel::for_study`]).
    simulation: Option<Arc<Simulation>>,
    /// Whether the GPU interprets the recording even where a generated kernel exists
    /// ([`StanModel::interpreted`]).
    interpret: bool,
    /// Whether every dataset shares one generated kernel: decided once, since the GPU
    /// asks per dataset and the answer compares every dataset's code (a study's
    /// thousands). Unset again where the recordings or `interpret` change.
    shares_generated: std::sync::OnceLock<bool>,
}

/// The user-defined functions by name, each name's overloads in definition order.
type Functions = Arc<std::collections::HashMap<String, Vec<Arc<ast::FunDef>>>>;

/// A parsed program and the data it was given.
#[derive(Debug)]
struct Source {
    path: PathBuf,
    prog: Program,
    /// The program's user-defined functions by name.
    functions: Functions,
    data_path: PathBuf,
    json: serde_json::Value,
}

/// What running a program against one dataset recorded.
#[derive(Debug)]
struct Recording {
    kernel: kernel::Kernel,
    /// The log density and gradient by terms (`None`: target is not a sum of terms).
    plan: Option<plan::Plan>,
    /// The recording as the GPU interpreter reads it (`None`: too long for f32 words).
    encoded: Option<Arc<kernel::Encoded>>,
    /// The plan as a generated GPU kernel (`None`: no plan, or too large for one).
    compiled: Option<Arc<codegen::Generated>>,
    target: Sc,
    /// The log likelihood: the `~` and `target +=` terms with a density of data (the
    /// target when there are none).
    loglik: Sc,
    /// (CmdStan name, value) of every parameter and transformed parameter.
    outputs: Vec<(String, Sc)>,
    /// Data and transformed data.
    base: Arc<std::collections::HashMap<String, Val>>,
    /// What runs per draw for `generated quantities`, when the program has them.
    generated: Option<Arc<Generated>>,
}

impl Recording {
    /// Parameters and transformed parameters at `theta`.
    fn outputs_at(&self, theta: &[f64], dim: usize) -> Vec<f64> {
        let mut vals = vec![0.0; self.kernel.slots()];
        self.kernel.forward(theta, dim, 1, &mut vals);
        self.outputs
            .iter()
            .map(|(_, s)| value_of(*s, &vals))
            .collect()
    }
}

fn value_of(s: Sc, vals: &[f64]) -> f64 {
    match s {
        Sc::C(c) => c,
        Sc::N(i) => vals[i as usize],
    }
}

/// A program's `generated quantities`, run per draw on the CPU in f64 after the
/// parameters and transformed parameters are recomputed from the draw.
#[derive(Debug)]
struct Generated {
    /// Data and transformed data.
    base: Arc<std::collections::HashMap<String, Val>>,
    /// The program (its parameters, transformed parameters, generated quantities and
    /// functions), shared by every recording.
    source: Arc<Source>,
    /// CmdStan names of the generated quantities.
    names: Vec<String>,
}

impl Generated {
    /// Runs the block with the parameters bound to `outputs` (CmdStan order; `None`: NaN,
    /// and NaN arguments of `_rng` functions give NaN) and returns the interpreter.
    fn interp(
        &self,
        outputs: Option<&[f64]>,
        rng: Option<rand::rngs::StdRng>,
    ) -> interp::R<Interp> {
        let prog = &self.source.prog;
        let mut it = Interp::with_base(self.base.clone());
        it.functions = self.source.functions.clone();
        it.rng = rng;
        if outputs.is_none() {
            it.nan_args = random::NanArgs::Propagate;
        }
        it.block = Block::TransformedParameters;
        let mut k = 0;
        for d in &prog.parameters {
            let mut v = it.declare(d)?;
            for (_, idx) in v.names(&d.name) {
                v.set(&idx, Sc::C(outputs.map_or(f64::NAN, |o| o[k])));
                k += 1;
            }
            it.bind(&d.name, v);
        }
        if outputs.is_some() {
            it.run(&prog.transformed_parameters)?;
        }
        it.block = Block::Generated;
        it.run(&prog.generated_quantities)?;
        Ok(it)
    }

    /// The generated quantities at a draw whose parameters and transformed parameters are
    /// `outputs` (CmdStan order), drawing random numbers from `rng`.
    fn run(&self, outputs: &[f64], rng: Option<rand::rngs::StdRng>) -> interp::R<Vec<f64>> {
        let it = self.interp(Some(outputs), rng)?;
        let mut out = Vec::with_capacity(self.names.len());
        for s in &self.source.prog.generated_quantities {
            if let StmtKind::Decl(d) = &s.kind {
                let v = it.get(&d.name).expect("declared at the top level");
                for (_, idx) in v.names(&d.name) {
                    out.push(v.at(&idx).constant().unwrap_or(f64::NAN));
                }
            }
        }
        Ok(out)
    }
}

impl StanModel {
    /// Compiles the program in `path` with the data in `data`: CmdStan's JSON format, or a
    /// CSV file (by its `.csv` extension) whose columns are vectors of the data block (see
    /// [`csv_data`]).
    pub fn from_files(path: &Path, data: Option<&Path>) -> Result<Self> {
        let source = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let json = match data {
            Some(d) if d.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) => {
                let prog = parse(path, &source)?;
                Some((d.to_path_buf(), csv_data(d, &prog)?))
            }
            Some(d) => {
                let text = std::fs::read_to_string(d).map_err(|e| Error::Io {
                    path: d.to_path_buf(),
                    source: e,
                })?;
                let v: serde_json::Value =
                    serde_json::from_str(&text).map_err(|e| Error::Data {
                        path: d.to_path_buf(),
                        line: e.line(),
                        column: e.column().to_string(),
                        message: format!("not JSON: {e}"),
                    })?;
                Some((d.to_path_buf(), v))
            }
            None => None,
        };
        Self::compile(path, &source, json.as_ref().map(|(p, v)| (p.as_path(), v)))
    }

    /// Compiles `source` (read from `path`, for errors) with `data` (the data file's path
    /// and its JSON).
    pub fn compile(
        path: &Path,
        source: &str,
        data: Option<(&Path, &serde_json::Value)>,
    ) -> Result<Self> {
        let prog = parse(path, source)?;
        let (data_path, json) = match data {
            Some((p, v)) => (p.to_path_buf(), v.clone()),
            None => (
                PathBuf::from("(no data)"),
                serde_json::Value::Object(Default::default()),
            ),
        };
        let mut by_name = std::collections::HashMap::<String, Vec<_>>::new();
        for f in &prog.functions {
            by_name
                .entry(f.name.clone())
                .or_default()
                .push(Arc::new(f.clone()));
        }
        let functions: Functions = Arc::new(by_name);
        let source = Arc::new(Source {
            path: path.to_path_buf(),
            functions,
            prog,
            data_path,
            json,
        });
        let (rec, dim, notes) = record(&source, &Default::default())?;
        let name = path
            .file_stem()
            .map_or("stan".into(), |s| s.to_string_lossy().into_owned());
        Self {
            name,
            output_names: rec.outputs.iter().map(|(n, _)| n.clone()).collect(),
            rec: Arc::new(rec),
            bound: None,
            dim,
            report_generated: true,
            notes,
            source,
            simulation: None,
            interpret: false,
            shares_generated: Default::default(),
        }
        .check_generated()
    }

    /// Runs the generated quantities once (at the unconstrained origin) so that a
    /// construct they use outside the subset is refused now, with its position, and not
    /// draw by draw; an error that depends on the values (a `reject`) is left to the draws.
    fn check_generated(self) -> Result<Self> {
        if let Some(g) = &self.rec.generated {
            let outputs = self.rec.outputs_at(&vec![0.0; self.dim], self.dim);
            let rng = crate::rng::stream_rng(0, 0, 0, crate::rng::Purpose::Predict);
            if let Err((pos, message)) = g.run(&outputs, Some(rng)) {
                if message.contains("not supported")
                    || message.contains("unknown")
                    || message.contains("only in generated")
                {
                    return Err(self.located((pos, message)));
                }
            }
        }
        Ok(self)
    }

    fn located(&self, e: (Pos, String)) -> Error {
        located(&self.source.path, e)
    }

    /// The recording of dataset `b`.
    fn rec(&self, b: usize) -> &Recording {
        match &self.bound {
            Some(all) => &all[b],
            None => &self.rec,
        }
    }

    /// Parameters and transformed parameters at `theta`.
    fn outputs_at(&self, theta: &[f64]) -> Vec<f64> {
        self.rec.outputs_at(theta, self.dim)
    }

    /// Every recording: the data file's, or one per bound dataset.
    fn recordings(&self) -> impl Iterator<Item = &Recording> {
        let all: &[Arc<Recording>] = match &self.bound {
            Some(b) => b,
            None => std::slice::from_ref(&self.rec),
        };
        all.iter().map(|r| r.as_ref())
    }

    /// [`Model::constrain`], the generated quantities drawing from `rng`.
    fn constrain_with(&self, theta: &[f64], rng: Option<rand::rngs::StdRng>) -> Vec<f64> {
        let mut out = self.outputs_at(theta);
        if let Some(g) = self
            .rec
            .generated
            .as_ref()
            .filter(|_| self.report_generated)
        {
            match g.run(&out, rng) {
                Ok(v) => out.extend(v),
                Err(_) => out.extend(std::iter::repeat_n(f64::NAN, g.names.len())),
            }
        }
        out
    }

    /// The program as a study fits and simulates it (`gpsamp sbc --stan`): its generated
    /// quantities are the simulation and not among its quantities. They must declare
    /// `<p>_sim` for every parameter `p`, drawn from the prior with `_rng` functions and
    /// without reading the parameters, and `<y>_sim` for each data variable `y` they
    /// simulate (at least one), of the same shape; the data file gives every other data
    /// variable. Each dataset is the data file's with `y` replaced by `y_sim`, and its
    /// true parameters are the `p_sim`.
    pub fn for_study(self) -> Result<Self> {
        let bad = |message: String| Error::Program {
            path: self.source.path.clone(),
            line: 1,
            column: 1,
            message,
        };
        if self.rec.generated.is_none() {
            return Err(bad(format!(
                "a study needs a generated quantities block that simulates the data: <parameter>{SIM} for every parameter, drawn from its prior, and <data>{SIM} for the data it simulates"
            )));
        }
        let declared: std::collections::HashMap<&str, &Decl> = self
            .source
            .prog
            .generated_quantities
            .iter()
            .filter_map(|s| match &s.kind {
                StmtKind::Decl(d) => Some((d.name.as_str(), d.as_ref())),
                _ => None,
            })
            .collect();
        let mut probe = Interp::with_base(self.rec.base.clone());
        probe.functions = self.source.functions.clone();
        let mut shape_of = |d: &Decl| probe.declare(d).map_err(|e| self.located(e));
        for d in &self.source.prog.parameters {
            let want = format!("{}{SIM}", d.name);
            let Some(gd) = declared.get(want.as_str()) else {
                return Err(bad(format!(
                    "parameter {} has no generated quantity {want} (its true value, drawn from the prior)",
                    d.name
                )));
            };
            if shape_of(d)?.dims() != shape_of(gd)?.dims() {
                return Err(self.located((
                    gd.pos,
                    format!("{want} must have the shape of parameter {}", d.name),
                )));
            }
        }
        let mut data = Vec::new();
        let mut shapes = Vec::new();
        for d in &self.source.prog.data {
            let want = format!("{}{SIM}", d.name);
            if let Some(gd) = declared.get(want.as_str()) {
                let shape = shape_of(d)?;
                if shape.dims() != shape_of(gd)?.dims() || shape.is_int() != shape_of(gd)?.is_int()
                {
                    return Err(self.located((
                        gd.pos,
                        format!(
                            "{want} must have the type and shape of data variable {}",
                            d.name
                        ),
                    )));
                }
                data.push(d.name.clone());
                shapes.push(shape);
            }
        }
        if data.is_empty() {
            return Err(bad(format!(
                "the generated quantities simulate no data variable: declare <data>{SIM} for the data they simulate (e.g. y{SIM} for y)"
            )));
        }
        Ok(Self {
            report_generated: false,
            simulation: Some(Arc::new(Simulation { data, shapes })),
            ..self
        })
    }

    /// The same model whose GPU kernel interprets the recording (`shaders/stan.wgsl`)
    /// instead of running the code generated from its plan: the two kernels compute the
    /// same thing, and this keeps the interpreter comparable.
    pub fn interpreted(self) -> Self {
        Self {
            interpret: true,
            shares_generated: Default::default(),
            ..self
        }
    }

    /// Whether the GPU runs code generated for the program (`false`: it interprets the
    /// recording, for a program too large for generated code, or datasets whose programs
    /// differ in shape).
    pub fn gpu_kernel_is_generated(&self) -> bool {
        self.compiled().is_some()
    }

    /// The generated kernel of every dataset, when they share one.
    fn compiled(&self) -> Option<&codegen::Generated> {
        let first = self.rec(0).compiled.as_deref()?;
        let shared = *self.shares_generated.get_or_init(|| {
            !self.interpret
                && self
                    .recordings()
                    .all(|r| r.compiled.as_ref().is_some_and(|c| c.body == first.body))
        });
        shared.then_some(first)
    }

    /// CmdStan names of the `parameters` block's values (no transformed parameters): the
    /// values [`Model::unconstrain`] reads.
    pub fn parameter_names(&self) -> Vec<String> {
        let mut probe = Interp::with_base(self.rec.base.clone());
        probe.functions = self.source.functions.clone();
        let n: usize = self
            .source
            .prog
            .parameters
            .iter()
            .map(|d| probe.declare(d).map_or(0, |v| v.flat().len()))
            .sum();
        self.output_names[..n.min(self.output_names.len())].to_vec()
    }

    /// Operations recorded for one evaluation of the log density.
    pub fn tape_len(&self) -> usize {
        self.rec.kernel.slots()
    }

    /// The terms of `target` and the shapes they fall into (the CPU kernel runs the terms
    /// of a shape together: the program's loops), when `target` is a sum of terms.
    pub fn terms_and_shapes(&self) -> Option<(usize, usize)> {
        self.rec.plan.as_ref().map(|p| (p.term_count(), p.groups()))
    }

    /// What a user should know about how the program runs (its `print` output when
    /// recorded, blocks not run).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Log densities and gradients of `lanes` chains at once (positions one after
    /// another) on dataset `b`.
    fn eval_block(
        &self,
        b: usize,
        lanes: usize,
        theta: &[f64],
        grad: &mut [f64],
        logp: &mut [f64],
        scratch: &mut Vec<f64>,
    ) {
        let rec = self.rec(b);
        grad[..lanes * self.dim].fill(0.0);
        match (&rec.plan, rec.target) {
            (Some(plan), _) => {
                let scratch = crate::math::aligned(scratch, plan.scratch_len(lanes));
                plan.eval(theta, self.dim, lanes, logp, grad, scratch);
            }
            (None, Sc::C(c)) => logp[..lanes].fill(c),
            (None, Sc::N(i)) => {
                let (n, i) = (rec.kernel.slots(), i as usize);
                let len = (2 * n + rec.kernel.weight_rows()) * lanes;
                let scratch = crate::math::aligned(scratch, len);
                let (vals, adj) = scratch.split_at_mut(n * lanes);
                rec.kernel.forward(theta, self.dim, lanes, vals);
                logp[..lanes].copy_from_slice(&vals[i * lanes..(i + 1) * lanes]);
                rec.kernel.reverse(i, vals, adj, self.dim, lanes, grad);
            }
        }
        for l in 0..lanes {
            logp[l] = crate::math::sanitize(logp[l], &mut grad[l * self.dim..(l + 1) * self.dim]);
        }
    }
}

/// Runs `src`'s program against its data (variables in `overrides` replacing the data
/// file's) with the parameters as symbols: the recording, the parameter count and the
/// program's notes.
fn record(
    src: &Arc<Source>,
    overrides: &std::collections::HashMap<String, Val>,
) -> Result<(Recording, usize, Vec<String>)> {
    let (path, prog) = (&src.path, &src.prog);
    let located = |e| located(path, e);
    let mut it = Interp::new();
    it.functions = src.functions.clone();
    for d in &prog.data {
        let shape = it.declare(d).map_err(located)?;
        let v = match overrides.get(&d.name) {
            Some(v) => v.clone(),
            None => read_data(&src.data_path, &src.json, d, &shape)?,
        };
        check_bounds(&mut it, d, &v).map_err(|(pos, m)| Error::Config {
            flag: format!("--data {}", src.data_path.display()),
            message: format!(
                "{}: {m} (declared at {}:{}:{})",
                d.name,
                path.display(),
                pos.line,
                pos.col
            ),
        })?;
        it.bind(&d.name, v);
    }
    it.block = Block::TransformedData;
    it.run(&prog.transformed_data).map_err(located)?;
    let base = Arc::new(it.globals());
    // Parameters: unconstrained inputs through Stan's transforms.
    let mut next = 0usize;
    let mut outputs = Vec::new();
    let mut jacobian = Vec::new();
    for d in &prog.parameters {
        let shape = it.declare(d).map_err(located)?;
        let v = constrain(&mut it, d, &shape, &mut next, &mut jacobian).map_err(located)?;
        for (name, idx) in v.names(&d.name) {
            outputs.push((name, v.at(&idx)));
        }
        it.bind(&d.name, v);
    }
    it.block = Block::TransformedParameters;
    it.run(&prog.transformed_parameters).map_err(located)?;
    for s in &prog.transformed_parameters {
        if let StmtKind::Decl(d) = &s.kind {
            let v = it.get(&d.name).cloned().expect("declared");
            for (name, idx) in v.names(&d.name) {
                outputs.push((name, v.at(&idx)));
            }
        }
    }
    it.block = Block::Model;
    it.target.extend(jacobian);
    let model_block = ast::Stmt {
        kind: StmtKind::Block(prog.model.clone()),
        pos: Pos::default(),
    };
    it.run(std::slice::from_ref(&model_block))
        .map_err(located)?;
    let terms = std::mem::take(&mut it.target);
    let target = it.tape.sum(&terms);
    let loglik = if it.loglik.is_empty() {
        target
    } else {
        let terms = std::mem::take(&mut it.loglik);
        it.tape.sum(&terms)
    };
    let notes: Vec<String> = it.printed.iter().map(|l| format!("print: {l}")).collect();
    let generated = if prog.generated_quantities.is_empty() {
        None
    } else {
        // The quantities' names come from their declared sizes (data only).
        let mut names = Vec::new();
        let mut g = Interp::with_base(base.clone());
        g.functions = src.functions.clone();
        for s in &prog.generated_quantities {
            if let StmtKind::Decl(d) = &s.kind {
                let shape = g.declare(d).map_err(located)?;
                names.extend(shape.names(&d.name).into_iter().map(|(n, _)| n));
            }
        }
        Some(Arc::new(Generated {
            base: base.clone(),
            source: src.clone(),
            names,
        }))
    };
    let kernel = kernel::Kernel::new(&it.tape);
    let encoded = kernel.encode(target, next).map(Arc::new);
    let plan = match target {
        Sc::N(t) => plan::Plan::new(&kernel, t, false),
        Sc::C(_) => None,
    };
    // The GPU's plan computes shared products in each term (see `Plan::new`); it is built
    // only when there are some.
    let gpu_plan = match (&plan, target) {
        (Some(p), Sc::N(t)) if p.shares_products() => plan::Plan::new(&kernel, t, true),
        _ => None,
    };
    let compiled = gpu_plan
        .as_ref()
        .or(plan.as_ref())
        .and_then(codegen::generate)
        .map(Arc::new);
    Ok((
        Recording {
            kernel,
            plan,
            encoded,
            compiled,
            target,
            loglik,
            outputs,
            base,
            generated,
        },
        next,
        notes,
    ))
}

/// A CSV file (header line first) as the data of `prog`, in CmdStan's JSON form: each column
/// named after a variable of the data block holds that variable's values, one per row (a
/// `vector`, `row_vector` or one-dimensional `array`); an `int` of the data block that sizes
/// such a column and is not itself a column is the row count. Columns the data block does
/// not declare are ignored; its other variables are missing (give them in JSON).
pub fn csv_data(path: &Path, prog: &Program) -> Result<serde_json::Value> {
    let bad = |line: usize, column: &str, message: String| Error::Data {
        path: path.to_path_buf(),
        line,
        column: column.to_string(),
        message,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| {
            let message = e.to_string();
            match e.into_kind() {
                csv::ErrorKind::Io(source) => Error::Io {
                    path: path.to_path_buf(),
                    source,
                },
                _ => bad(1, "1", message),
            }
        })?;
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| bad(1, "1", e.to_string()))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut cols: Vec<Vec<f64>> = vec![Vec::new(); headers.len()];
    for (r, rec) in rdr.records().enumerate() {
        let line = r + 2;
        let rec = rec.map_err(|e| bad(line, "1", e.to_string()))?;
        for (j, cell) in rec.iter().enumerate() {
            let v: f64 = cell
                .parse()
                .map_err(|_| bad(line, &headers[j], format!("{cell:?} is not a number")))?;
            cols[j].push(v);
        }
    }
    let rows = cols.first().map_or(0, Vec::len);
    let mut obj = serde_json::Map::new();
    let mut sizes = Vec::new();
    for d in &prog.data {
        let Some(j) = headers.iter().position(|h| *h == d.name) else {
            continue;
        };
        let size = match (&d.shape, d.dims.as_slice()) {
            (Shape::Vector(n) | Shape::RowVector(n), []) => n,
            (Shape::Int | Shape::Real, [n]) => n,
            _ => {
                return Err(bad(
                    1,
                    &d.name,
                    format!(
                        "the data block declares {} (line {}) as more than one value per row; give it in JSON",
                        d.name, d.pos.line
                    ),
                ))
            }
        };
        if let ast::ExprKind::Var(n) = &size.kind {
            sizes.push(n.clone());
        }
        let values = if matches!(d.shape, Shape::Int) {
            let mut v = Vec::with_capacity(rows);
            for (r, &x) in cols[j].iter().enumerate() {
                if x.fract() != 0.0 || x.abs() > 9.0e15 {
                    return Err(bad(
                        r + 2,
                        &d.name,
                        format!("{x} is not an integer, and {} is declared int", d.name),
                    ));
                }
                v.push(serde_json::json!(x as i64));
            }
            v
        } else {
            cols[j].iter().map(|&x| serde_json::json!(x)).collect()
        };
        obj.insert(d.name.clone(), serde_json::Value::Array(values));
    }
    for n in sizes {
        if !obj.contains_key(&n) && headers.iter().all(|h| *h != n) {
            obj.insert(n, serde_json::json!(rows));
        }
    }
    Ok(serde_json::Value::Object(obj))
}

/// Reads variable `d` of the data block from the JSON object, shaped like `like`.
fn read_data(path: &Path, json: &serde_json::Value, d: &Decl, like: &Val) -> Result<Val> {
    let bad = |message: String| Error::Config {
        flag: format!("--data {}", path.display()),
        message: if message.starts_with(&d.name) {
            message
        } else {
            format!("{}: {message}", d.name)
        },
    };
    let Some(v) = json.get(&d.name) else {
        return Err(bad("missing: the program's data block declares it".into()));
    };
    fn fill(v: &serde_json::Value, like: &Val, at: &str) -> std::result::Result<Val, String> {
        let num = |x: &serde_json::Value| -> std::result::Result<f64, String> {
            match x {
                serde_json::Value::Number(n) => {
                    n.as_f64().ok_or_else(|| format!("{at}: not a number"))
                }
                serde_json::Value::String(s) if s == "Inf" || s == "inf" || s == "Infinity" => {
                    Ok(f64::INFINITY)
                }
                serde_json::Value::String(s) if s == "-Inf" || s == "-inf" || s == "-Infinity" => {
                    Ok(f64::NEG_INFINITY)
                }
                serde_json::Value::String(s) if s == "NaN" => Ok(f64::NAN),
                _ => Err(format!("{at}: expected a number, found {x}")),
            }
        };
        /// The `n` items of a JSON list (a one-element container may be a scalar).
        fn list<'a>(
            x: &'a serde_json::Value,
            n: usize,
            at: &str,
        ) -> std::result::Result<Vec<&'a serde_json::Value>, String> {
            match x {
                serde_json::Value::Array(a) if a.len() == n => Ok(a.iter().collect()),
                serde_json::Value::Array(a) => {
                    Err(format!("{at}: {} values, the declaration has {n}", a.len()))
                }
                other if n == 1 => Ok(vec![other]),
                other => Err(format!("{at}: expected a list of {n}, found {other}")),
            }
        }
        Ok(match like {
            Val::Int(_) => {
                let x = num(v)?;
                if x.fract() != 0.0 {
                    return Err(format!("{at}: {x} is not an int"));
                }
                Val::Int(x as i64)
            }
            Val::Real(_) => Val::Real(Sc::C(num(v)?)),
            Val::Vector(x) | Val::Row(x) => {
                let items = list(v, x.len(), at)?;
                let vals = items
                    .into_iter()
                    .map(num)
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let s = vals.into_iter().map(Sc::C).collect();
                if let Val::Vector(_) = like {
                    Val::Vector(s)
                } else {
                    Val::Row(s)
                }
            }
            Val::Matrix { rows, cols, .. } => {
                let rs = list(v, *rows, at)?;
                let mut m = Vec::with_capacity(rows * cols);
                for (i, r) in rs.iter().enumerate() {
                    for x in list(r, *cols, at).map_err(|e| format!("row {}: {e}", i + 1))? {
                        m.push(Sc::C(num(x)?));
                    }
                }
                Val::Matrix {
                    rows: *rows,
                    cols: *cols,
                    v: m,
                }
            }
            Val::Array(a) => {
                let items = list(v, a.len(), at)?;
                let mut out = Vec::with_capacity(a.len());
                for (i, (x, l)) in items.into_iter().zip(a).enumerate() {
                    out.push(fill(x, l, &format!("{at}[{}]", i + 1))?);
                }
                Val::Array(out)
            }
        })
    }
    fill(v, like, &d.name).map_err(bad)
}

/// Checks data against its declared bounds.
fn check_bounds(it: &mut Interp, d: &Decl, v: &Val) -> interp::R<()> {
    let c = &d.constraint;
    for (bound, lower) in [(&c.lower, true), (&c.upper, false)] {
        let Some(e) = bound else { continue };
        let b = it.eval(e)?;
        let bs = b.flat();
        for (k, x) in v.flat().iter().enumerate() {
            let (Some(x), Some(l)) = (
                x.constant(),
                bs[if bs.len() == 1 { 0 } else { k % bs.len() }].constant(),
            ) else {
                continue;
            };
            if (lower && x < l) || (!lower && x > l) {
                return Err((
                    d.pos,
                    format!(
                        "{x} is {} the declared {} bound {l}",
                        if lower { "below" } else { "above" },
                        if lower { "lower" } else { "upper" }
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The constrained value of parameter `d` from fresh unconstrained inputs; log Jacobian
/// terms go to `jac`.
fn constrain(
    it: &mut Interp,
    d: &Decl,
    like: &Val,
    next: &mut usize,
    jac: &mut Vec<Sc>,
) -> interp::R<Val> {
    match (&d.shape, like) {
        (_, Val::Array(a)) => {
            let mut out = Vec::with_capacity(a.len());
            for l in a {
                out.push(constrain(it, d, l, next, jac)?);
            }
            Ok(Val::Array(out))
        }
        (Shape::Int, _) => Err((d.pos, "parameters cannot be ints".into())),
        (Shape::Simplex(_), Val::Vector(x)) => {
            // Stick breaking (Stan's transform before 2.36): K − 1 free values.
            let k = x.len();
            if k == 0 {
                return Err((d.pos, "a simplex needs at least one element".into()));
            }
            let t = &mut it.tape;
            let mut out = Vec::with_capacity(k);
            let mut rest = Sc::C(1.0);
            for i in 0..k - 1 {
                let u = t.input(*next);
                *next += 1;
                let shifted = t.sub(u, Sc::C(((k - 1 - i) as f64).ln()));
                let z = t.fun(Fun::InvLogit, shifted);
                let xi = t.mul(rest, z);
                // log Jacobian: log z + log(1 − z) + log(rest)
                let lz = log_inv_logit(t, shifted);
                let l1z = log1m_inv_logit(t, shifted);
                let lr = t.fun(Fun::Log, rest);
                jac.extend([lz, l1z, lr]);
                rest = t.sub(rest, xi);
                out.push(xi);
            }
            out.push(rest);
            Ok(Val::Vector(out))
        }
        (Shape::CholeskyCorr(_), Val::Matrix { rows: k, .. }) => {
            // Stan's transform: canonical partial correlations z = tanh(u), row by row
            // below the diagonal, each row scaled to unit length; K(K − 1)/2 free values.
            let (k, t) = (*k, &mut it.tape);
            let mut l = vec![Sc::C(0.0); k * k];
            if k > 0 {
                l[0] = Sc::C(1.0);
            }
            for i in 1..k {
                let mut sum_sqs = Sc::C(0.0);
                for j in 0..i {
                    let u = t.input(*next);
                    *next += 1;
                    let z = t.fun(Fun::Tanh, u);
                    let z2 = t.mul(z, z);
                    let one_m = t.sub(Sc::C(1.0), z2);
                    jac.push(t.fun(Fun::Log, one_m));
                    let x = if j == 0 {
                        z
                    } else {
                        let rest = t.sub(Sc::C(1.0), sum_sqs);
                        let lr = t.fun(Fun::Log, rest);
                        jac.push(t.mul(lr, Sc::C(0.5)));
                        let sr = t.fun(Fun::Sqrt, rest);
                        t.mul(z, sr)
                    };
                    let x2 = t.mul(x, x);
                    sum_sqs = t.add(sum_sqs, x2);
                    l[i * k + j] = x;
                }
                let rest = t.sub(Sc::C(1.0), sum_sqs);
                l[i * k + i] = t.fun(Fun::Sqrt, rest);
            }
            Ok(Val::Matrix {
                rows: k,
                cols: k,
                v: l,
            })
        }
        (
            Shape::CholeskyCov(..),
            Val::Matrix {
                rows: m, cols: n, ..
            },
        ) => {
            // Below the diagonal free, the diagonal exp of a free value (its log Jacobian).
            let (m, n, t) = (*m, *n, &mut it.tape);
            if n > m {
                return Err((
                    d.pos,
                    format!("cholesky_factor_cov[{m}, {n}]: more columns than rows"),
                ));
            }
            let mut l = vec![Sc::C(0.0); m * n];
            for i in 0..m {
                for j in 0..n.min(i + 1) {
                    let u = t.input(*next);
                    *next += 1;
                    l[i * n + j] = if i == j {
                        jac.push(u);
                        t.fun(Fun::Exp, u)
                    } else {
                        u
                    };
                }
            }
            Ok(Val::Matrix {
                rows: m,
                cols: n,
                v: l,
            })
        }
        (Shape::SquareMatrix(_, corr), _) => Err((
            d.pos,
            format!(
                "{} parameters are not supported yet: declare a {} and multiply it by its \
                 transpose (multiply_lower_tri_self_transpose)",
                if *corr { "corr_matrix" } else { "cov_matrix" },
                if *corr {
                    "cholesky_factor_corr"
                } else {
                    "cholesky_factor_cov"
                }
            ),
        )),
        (Shape::Ordered(_) | Shape::PositiveOrdered(_), Val::Vector(x)) => {
            let positive = matches!(d.shape, Shape::PositiveOrdered(_));
            let t = &mut it.tape;
            let mut out = Vec::with_capacity(x.len());
            for i in 0..x.len() {
                let u = t.input(*next);
                *next += 1;
                let v = if i == 0 && !positive {
                    u
                } else {
                    jac.push(u);
                    let e = t.fun(Fun::Exp, u);
                    if i == 0 {
                        e
                    } else {
                        t.add(out[i - 1], e)
                    }
                };
                out.push(v);
            }
            Ok(Val::Vector(out))
        }
        (_, like) => {
            let c = &d.constraint;
            let bound = |it: &mut Interp, e: &Option<ast::Expr>| -> interp::R<Option<Vec<Sc>>> {
                match e {
                    Some(e) => Ok(Some(it.eval(e)?.flat())),
                    None => Ok(None),
                }
            };
            let lo = bound(it, &c.lower)?;
            let hi = bound(it, &c.upper)?;
            let off = bound(it, &c.offset)?;
            let mul = bound(it, &c.multiplier)?;
            let pick = |b: &Option<Vec<Sc>>, k: usize| {
                b.as_ref()
                    .map(|v| v[if v.len() == 1 { 0 } else { k % v.len() }])
            };
            let t = &mut it.tape;
            let mut k = 0;
            let v = like.map(&mut |_| {
                let u = t.input(*next);
                *next += 1;
                let (l, h) = (pick(&lo, k), pick(&hi, k));
                let x = match (l, h) {
                    (Some(l), Some(h)) => {
                        let w = t.sub(h, l);
                        let s = t.fun(Fun::InvLogit, u);
                        let ws = t.mul(w, s);
                        let lw = t.fun(Fun::Log, w);
                        let a = log_inv_logit(t, u);
                        let b = log1m_inv_logit(t, u);
                        jac.extend([lw, a, b]);
                        t.add(l, ws)
                    }
                    (Some(l), None) => {
                        jac.push(u);
                        let e = t.fun(Fun::Exp, u);
                        t.add(l, e)
                    }
                    (None, Some(h)) => {
                        jac.push(u);
                        let e = t.fun(Fun::Exp, u);
                        t.sub(h, e)
                    }
                    (None, None) => {
                        let (o, m) = (pick(&off, k), pick(&mul, k));
                        let mut x = u;
                        if let Some(m) = m {
                            let lm = t.fun(Fun::Log, m);
                            jac.push(lm);
                            x = t.mul(x, m);
                        }
                        if let Some(o) = o {
                            x = t.add(x, o);
                        }
                        x
                    }
                };
                k += 1;
                x
            });
            Ok(v)
        }
    }
}

fn log_inv_logit(t: &mut Tape, u: Sc) -> Sc {
    let n = t.neg(u);
    let s = t.fun(Fun::Log1pExp, n);
    t.neg(s)
}

fn log1m_inv_logit(t: &mut Tape, u: Sc) -> Sc {
    let s = t.fun(Fun::Log1pExp, u);
    t.neg(s)
}

impl Model for StanModel {
    fn name(&self) -> String {
        format!("stan:{}", self.name)
    }

    fn data_in_columns(&self) -> bool {
        false
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn param_names(&self) -> Vec<String> {
        let mut names = self.output_names.clone();
        if let Some(g) = self
            .rec
            .generated
            .as_ref()
            .filter(|_| self.report_generated)
        {
            names.extend(g.names.iter().cloned());
        }
        names
    }

    /// Parameters, transformed parameters and generated quantities (NaN where the
    /// generated quantities failed at this draw, e.g. by `reject`, or drew random numbers:
    /// those need [`Model::constrain_draw`]'s stream).
    fn constrain(&self, theta: &[f64]) -> Vec<f64> {
        self.constrain_with(theta, None)
    }

    fn constrain_draw(&self, theta: &[f64], seed: u64, chain: u32, draw: u32) -> Vec<f64> {
        let rng = crate::rng::stream_rng(seed, chain, draw, crate::rng::Purpose::Predict);
        self.constrain_with(theta, Some(rng))
    }

    /// The parameters (and transformed parameters, which are recomputed and not read) in
    /// CmdStan order through the inverses of Stan's transforms.
    fn unconstrain(&self, params: &[f64]) -> Result<Vec<f64>> {
        let src = &self.source;
        let mut it = Interp::with_base(self.rec.base.clone());
        it.functions = self.source.functions.clone();
        it.block = Block::TransformedParameters;
        let mut out = Vec::with_capacity(self.dim);
        let mut k = 0;
        for d in &src.prog.parameters {
            let mut v = it.declare(d).map_err(|e| self.located(e))?;
            for (_, idx) in v.names(&d.name) {
                let Some(&x) = params.get(k) else {
                    return Err(Error::Invalid(format!(
                        "{} values, too few for the parameters of {}",
                        params.len(),
                        self.name
                    )));
                };
                v.set(&idx, Sc::C(x));
                k += 1;
            }
            unconstrain(&mut it, d, &v, &mut out)
                .map_err(|(_, m)| Error::Invalid(format!("{}: {m}", d.name)))?;
            it.bind(&d.name, v);
        }
        Ok(out)
    }

    fn check_data(&self, _data: &DataBatch) -> Result<()> {
        Ok(())
    }

    fn log_density(
        &self,
        _data: &DataBatch,
        b: usize,
        theta: &[f64],
        grad: &mut [f64],
        scratch: &mut Vec<f64>,
    ) -> f64 {
        let mut lp = [0.0];
        self.eval_block(b, 1, theta, grad, &mut lp, scratch);
        lp[0]
    }

    fn log_density_block(
        &self,
        _data: &DataBatch,
        b: usize,
        lanes: usize,
        theta: &[f64],
        grad: &mut [f64],
        logp: &mut [f64],
        scratch: &mut Vec<f64>,
    ) {
        self.eval_block(b, lanes, theta, grad, logp, scratch);
    }

    fn block_lanes(&self) -> usize {
        let rec = self.rec(0);
        let kept = match &rec.plan {
            Some(p) => 2 * p.shared_len(),
            None => 2 * rec.kernel.slots(),
        };
        // A power of two between 16 and BLOCK_LANES.
        let fit = (BLOCK_VALUES / kept.max(1)).clamp(16, BLOCK_LANES);
        1 << fit.ilog2()
    }

    fn constant(&self, _data: &DataBatch, _b: usize) -> f64 {
        0.0
    }

    /// The `~` statements whose left side is data and the `target +=` statements that
    /// evaluate a density of data (the whole target when the program has neither).
    fn log_lik(&self, _data: &DataBatch, b: usize, theta: &[f64]) -> Option<f64> {
        let rec = self.rec(b);
        let mut vals = vec![0.0; rec.kernel.slots()];
        rec.kernel.forward(theta, self.dim, 1, &mut vals);
        Some(value_of(rec.loglik, &vals))
    }

    /// Compiles the program against each dataset of `data` when they are simulated ones
    /// (see [`StanModel::for_study`]).
    fn bind(&self, data: &DataBatch) -> Result<Option<Arc<dyn Model>>> {
        let Some(sim) = &self.simulation else {
            return Ok(None);
        };
        use rayon::prelude::*;
        let recs = (0..data.n_datasets())
            .into_par_iter()
            .map(|b| {
                let y = &data.y()[data.range(b)];
                let overrides = sim.unflatten(y).map_err(|m| {
                    Error::Invalid(format!("dataset {}: {m}", data.dataset_name(b)))
                })?;
                let (rec, dim, _) = record(&self.source, &overrides)?;
                if dim != self.dim {
                    return Err(Error::Invalid(format!(
                        "dataset {}: the program has {dim} parameters with this data, not {}",
                        data.dataset_name(b),
                        self.dim
                    )));
                }
                Ok(Arc::new(rec))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Arc::new(Self {
            bound: Some(Arc::new(recs)),
            shares_generated: Default::default(),
            ..self.clone()
        })))
    }

    fn wgsl(&self) -> String {
        use kernel::{HEADER, UNROLL};

        let wgsl = crate::shader::Wgsl::new().u32("D", self.dim).u32("NACC", 1);
        if let Some(c) = self.compiled() {
            return wgsl
                .part(crate::shader::LOGISTIC)
                .part(crate::shader::STAN_COMMON)
                .template(
                    crate::shader::STAN_GEN,
                    &[("GLOBALS", &c.globals()), ("BODY", &c.body)],
                )
                .build();
        }
        let forward: String = (0..UNROLL)
            .map(|u| format!("            fwd(i + {u}u, theta);\n"))
            .collect();
        let reverse: String = (0..UNROLL)
            .rev()
            .map(|u| format!("            rev(i + {u}u, grad);\n"))
            .collect();
        wgsl.u32("UNROLL", UNROLL)
            .u32("HEADER", HEADER)
            .part(crate::shader::LOGISTIC)
            .part(crate::shader::STAN_COMMON)
            .template(
                crate::shader::STAN,
                &[("FORWARD", &forward), ("REVERSE", &reverse)],
            )
            .build()
    }

    fn has_gpu_kernel(&self) -> bool {
        self.dim > 0
            && (self.compiled().is_some() || self.recordings().all(|r| r.encoded.is_some()))
    }

    /// One thread per chain runs the program.
    fn max_lanes(&self) -> u32 {
        1
    }

    /// One point per dataset whose input columns are its program's words (shorter ones
    /// padded with zeros): the generated kernel's data, or the encoded recording.
    fn device_data(&self, data: &DataBatch) -> Result<Option<DataBatch>> {
        let generated = self.compiled().is_some();
        let mut words = Vec::with_capacity(data.n_datasets());
        for b in 0..data.n_datasets() {
            let rec = self.rec(b);
            if generated {
                words.push(&rec.compiled.as_ref().expect("checked by compiled").words);
                continue;
            }
            let e = rec.encoded.as_ref().ok_or_else(|| {
                Error::DeviceLimit(format!(
                    "{}: the recorded program has {} operations, too many for the GPU kernel",
                    self.name,
                    rec.kernel.slots()
                ))
            })?;
            words.push(&e.words);
        }
        let w = words.iter().map(|e| e.len()).max().unwrap_or(0);
        let all: Vec<Dataset> = words
            .iter()
            .map(|e| Dataset {
                x: (0..w)
                    .map(|j| vec![e.get(j).copied().unwrap_or(0.0)])
                    .collect(),
                y: vec![0.0],
            })
            .collect();
        Ok(Some(DataBatch::new(w, &all)?))
    }

    /// The interpreter's values and adjoints, or the generated kernel's shared values that
    /// terms read and their adjoints.
    fn device_scratch(&self) -> usize {
        if let Some(c) = self.compiled() {
            return 2 * c.stored;
        }
        2 * self
            .recordings()
            .filter_map(|r| r.encoded.as_ref().map(|e| e.slots))
            .max()
            .unwrap_or(0)
    }

    fn device_loop_iterations(&self, _data: &DataBatch, b: usize, _lanes: u32) -> usize {
        if self.compiled().is_some() {
            return self.rec(b).compiled.as_ref().map_or(1, |c| c.iterations);
        }
        self.rec(b)
            .encoded
            .as_ref()
            .map_or(1, |e| e.loop_iterations)
    }

    fn simulate(&self, _n: usize, rng: &mut rand::rngs::StdRng) -> (Vec<f64>, Dataset) {
        match self.try_simulate(0, rng) {
            Ok(s) => s,
            Err(_) => (vec![f64::NAN; self.dim], Dataset::default()),
        }
    }

    fn try_simulate(&self, _n: usize, rng: &mut rand::rngs::StdRng) -> Result<(Vec<f64>, Dataset)> {
        let sim = self.simulation.as_ref().ok_or_else(|| {
            Error::Invalid(format!(
                "{}: a Stan program simulates datasets only in a study (`gpsamp sbc --stan`)",
                self.name
            ))
        })?;
        let g = self.rec.generated.as_ref().expect("checked by for_study");
        let child: rand::rngs::StdRng = rand::SeedableRng::from_rng(rng);
        let it = g.interp(None, Some(child)).map_err(|e| self.located(e))?;
        let values = |name: &str, like: Vec<(String, Vec<usize>)>| -> Result<Vec<f64>> {
            let v = it.get(&format!("{name}{SIM}")).expect("declared");
            let out: Vec<f64> = if like.is_empty() {
                v.flat()
                    .iter()
                    .map(|s| s.constant().unwrap_or(f64::NAN))
                    .collect()
            } else {
                like.iter()
                    .map(|(_, idx)| v.at(idx).constant().unwrap_or(f64::NAN))
                    .collect()
            };
            if out.iter().any(|x| !x.is_finite()) {
                return Err(Error::Invalid(format!(
                    "{}: the generated quantities gave {name}{SIM} a value that is not finite (it must be drawn with _rng functions from constants and data, not from the parameters)",
                    self.name
                )));
            }
            Ok(out)
        };
        let mut params = Vec::new();
        let mut probe = Interp::with_base(self.rec.base.clone());
        probe.functions = self.source.functions.clone();
        for d in &self.source.prog.parameters {
            // CmdStan order, as unconstrain reads it.
            let shape = probe.declare(d).map_err(|e| self.located(e))?;
            params.extend(values(&d.name, shape.names(&d.name))?);
        }
        let mut y = Vec::new();
        for name in &sim.data {
            y.extend(values(name, Vec::new())?);
        }
        let theta = self
            .unconstrain(&params)
            .map_err(|e| Error::Invalid(format!("{}: a simulated parameter: {e}", self.name)))?;
        Ok((theta, Dataset { x: Vec::new(), y }))
    }
}

/// The suffix of a generated quantity that simulates the parameter or data variable it
/// is named after, in a study (`gpsamp sbc --stan`).
pub const SIM: &str = "_sim";

/// Which data variables a study simulates, and their shapes.
#[derive(Debug)]
struct Simulation {
    /// Data variables with a `<name>_sim` generated quantity, in data-block order.
    data: Vec<String>,
    /// Their declared shapes (filled with placeholders).
    shapes: Vec<Val>,
}

impl Simulation {
    /// The simulated variables from a dataset's values (flattened in data-block order).
    fn unflatten(
        &self,
        y: &[f64],
    ) -> std::result::Result<std::collections::HashMap<String, Val>, String> {
        let mut out = std::collections::HashMap::new();
        let mut k = 0;
        for (name, like) in self.data.iter().zip(&self.shapes) {
            let n = like.flat().len();
            let vals = y
                .get(k..k + n)
                .ok_or_else(|| format!("{} values, the simulated data need more", y.len()))?;
            out.insert(name.clone(), fill_flat(like, vals));
            k += n;
        }
        Ok(out)
    }
}

/// `like` with its scalars replaced by `vals` in [`Val::flat`] order (ints stay ints).
fn fill_flat(like: &Val, vals: &[f64]) -> Val {
    fn go(like: &Val, vals: &[f64], k: &mut usize) -> Val {
        let mut next = || {
            *k += 1;
            vals[*k - 1]
        };
        match like {
            Val::Int(_) => Val::Int(next() as i64),
            Val::Array(a) => Val::Array(a.iter().map(|e| go(e, vals, k)).collect()),
            other => other.map(&mut |_| Sc::C(next())),
        }
    }
    go(like, vals, &mut 0)
}

/// Appends the unconstrained values of parameter `d` (constrained value `v`) to `out`:
/// the inverse of [`constrain`], with its bounds evaluated by `it`.
fn unconstrain(it: &mut Interp, d: &Decl, v: &Val, out: &mut Vec<f64>) -> interp::R<()> {
    let nums = |v: &Val| -> Vec<f64> {
        v.flat()
            .iter()
            .map(|s| s.constant().unwrap_or(f64::NAN))
            .collect()
    };
    let outside = |what: String| Err((d.pos, what));
    match (&d.shape, v) {
        (_, Val::Array(a)) => {
            for e in a {
                unconstrain(it, d, e, out)?;
            }
            Ok(())
        }
        (Shape::Simplex(_), Val::Vector(_)) => {
            let x = nums(v);
            let k = x.len();
            if x.iter().any(|v| v.is_nan() || *v <= 0.0)
                || (x.iter().sum::<f64>() - 1.0).abs() > 1e-8
            {
                return outside(format!("{x:?} is not a simplex"));
            }
            let mut rest = 1.0;
            for (i, xi) in x.iter().enumerate().take(k - 1) {
                let z = xi / rest;
                out.push((z / (1.0 - z)).ln() + ((k - 1 - i) as f64).ln());
                rest -= xi;
            }
            Ok(())
        }
        (Shape::CholeskyCorr(_), Val::Matrix { rows: k, .. }) => {
            let (k, x) = (*k, nums(v));
            for i in 0..k {
                let row: f64 = x[i * k..=i * k + i].iter().map(|a| a * a).sum();
                let upper = x[i * k + i + 1..(i + 1) * k].iter().any(|a| *a != 0.0);
                if (row - 1.0).abs() > 1e-8 || upper || x[i * k + i] <= 0.0 {
                    return outside(format!(
                        "{x:?} is not the Cholesky factor of a correlation matrix"
                    ));
                }
                let mut sum_sqs = 0.0f64;
                for j in 0..i {
                    let a = x[i * k + j];
                    let z = if j == 0 {
                        a
                    } else {
                        a / (1.0 - sum_sqs).sqrt()
                    };
                    out.push(z.atanh());
                    sum_sqs += a * a;
                }
            }
            Ok(())
        }
        (
            Shape::CholeskyCov(..),
            Val::Matrix {
                rows: m, cols: n, ..
            },
        ) => {
            let (m, n, x) = (*m, *n, nums(v));
            for i in 0..m {
                for j in 0..n {
                    let a = x[i * n + j];
                    if (j > i && a != 0.0) || (j == i && a <= 0.0) || a.is_nan() {
                        return outside(format!(
                            "{x:?} is not a Cholesky factor (lower triangular, positive diagonal)"
                        ));
                    }
                    if j < i {
                        out.push(a);
                    } else if j == i {
                        out.push(a.ln());
                    }
                }
            }
            Ok(())
        }
        (Shape::Ordered(_) | Shape::PositiveOrdered(_), Val::Vector(_)) => {
            let x = nums(v);
            let positive = matches!(d.shape, Shape::PositiveOrdered(_));
            for i in 0..x.len() {
                let step = if i == 0 { x[0] } else { x[i] - x[i - 1] };
                if i == 0 && !positive {
                    out.push(x[0]);
                } else if step > 0.0 {
                    out.push(step.ln());
                } else {
                    return outside(format!(
                        "{x:?} is not {}",
                        if positive {
                            "positive and ordered"
                        } else {
                            "ordered"
                        }
                    ));
                }
            }
            Ok(())
        }
        (_, v) => {
            let c = &d.constraint;
            let bound = |it: &mut Interp, e: &Option<ast::Expr>| -> interp::R<Option<Vec<f64>>> {
                match e {
                    Some(e) => Ok(Some(nums(&it.eval(e)?))),
                    None => Ok(None),
                }
            };
            let lo = bound(it, &c.lower)?;
            let hi = bound(it, &c.upper)?;
            let off = bound(it, &c.offset)?;
            let mul = bound(it, &c.multiplier)?;
            let pick = |b: &Option<Vec<f64>>, k: usize| {
                b.as_ref()
                    .map(|v| v[if v.len() == 1 { 0 } else { k % v.len() }])
            };
            for (k, x) in nums(v).into_iter().enumerate() {
                let u = match (pick(&lo, k), pick(&hi, k)) {
                    (Some(l), Some(h)) if l < x && x < h => {
                        let p = (x - l) / (h - l);
                        (p / (1.0 - p)).ln()
                    }
                    (Some(l), None) if x > l => (x - l).ln(),
                    (None, Some(h)) if x < h => (h - x).ln(),
                    (None, None) => {
                        let o = pick(&off, k).unwrap_or(0.0);
                        let m = pick(&mul, k).unwrap_or(1.0);
                        (x - o) / m
                    }
                    (l, h) => {
                        return outside(format!(
                            "{x} is outside ({}, {})",
                            l.map_or("-inf".into(), |l| l.to_string()),
                            h.map_or("inf".into(), |h| h.to_string())
                        ))
                    }
                };
                if !u.is_finite() {
                    return outside(format!("{x} has no finite unconstrained value"));
                }
                out.push(u);
            }
            Ok(())
        }
    }
}

/// The one-dataset batch a Stan program is evaluated on (its data live in the model).
pub fn placeholder_data() -> DataBatch {
    DataBatch::new(
        0,
        &[Dataset {
            x: vec![],
            y: vec![0.0],
        }],
    )
    .expect("a one-point dataset")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernel::HEADER;

    /// Runs an encoded program forward in f64 as `shaders/stan.wgsl` reads it.
    fn run_encoded(e: &kernel::Encoded, theta: &[f64]) -> f64 {
        let w = &e.words;
        let (n, nc, tgt, list) = (w[0] as usize, w[1] as usize, w[2] as usize, w[3] as usize);
        let mut val = vec![0.0; n];
        let arg = |val: &[f64], k: usize| if k < nc { w[HEADER + k] } else { val[k - nc] };
        for i in 0..n {
            let at = HEADER + nc + 3 * i;
            let (op, a, b) = (w[at] as u32, w[at + 1] as usize, w[at + 2] as usize);
            let items = |val: &[f64]| -> Vec<f64> {
                (a..b).map(|k| arg(val, w[list + k] as usize)).collect()
            };
            val[i] = match op {
                0 => theta[a],
                1 => arg(&val, a) + arg(&val, b),
                2 => arg(&val, a) - arg(&val, b),
                3 => arg(&val, a) * arg(&val, b),
                4 => arg(&val, a) / arg(&val, b),
                5 => arg(&val, a).powf(arg(&val, b)),
                6 => arg(&val, a).max(arg(&val, b)),
                7 => arg(&val, a).min(arg(&val, b)),
                8 => items(&val).iter().sum(),
                9 => crate::math::log_sum_exp(&items(&val)),
                15 => 0.0,
                f => {
                    let funs = [
                        Fun::Exp,
                        Fun::Log,
                        Fun::Sqrt,
                        Fun::Log1p,
                        Fun::Expm1,
                        Fun::Lgamma,
                        Fun::InvLogit,
                        Fun::Log1pExp,
                        Fun::Abs,
                        Fun::Sin,
                        Fun::Cos,
                        Fun::Tan,
                        Fun::Tanh,
                        Fun::Atan,
                        Fun::Digamma,
                        Fun::Erfc,
                    ];
                    funs[f as usize - 16].f(arg(&val, a))
                }
            };
        }
        arg(&val, tgt)
    }

    /// The encoding (bundles, slots, operands, lists) computes what the CPU kernel does.
    #[test]
    fn encoded_programs_compute_what_the_kernel_does() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/posteriordb");
        for name in [
            "kilpisjarvi_mod-kilpisjarvi",
            "eight_schools-eight_schools_noncentered",
            "arK-arK",
            "low_dim_gauss_mix-low_dim_gauss_mix",
        ] {
            let m = StanModel::from_files(
                &dir.join(name).join("model.stan"),
                Some(&dir.join(name).join("data.json")),
            )
            .unwrap();
            let e = m.rec.encoded.as_ref().unwrap();
            let theta: Vec<f64> = (0..m.dim).map(|i| 0.3 - 0.1 * i as f64).collect();
            let mut g = vec![0.0; m.dim];
            let lp = m.log_density(&placeholder_data(), 0, &theta, &mut g, &mut Vec::new());
            let lp2 = run_encoded(e, &theta);
            assert!(
                (lp - lp2).abs() < 1e-9 * (1.0 + lp.abs()),
                "{name}: {lp} vs {lp2}"
            );
        }
    }

    /// The plan (terms grouped by shape, run forward and back in chunks) gives the
    /// recording's log density and gradient to rounding (bit for bit where no term is a
    /// log-sum-exp, whose logarithms the plan takes of their product), and a chain the
    /// same bits alone or in a block.
    #[test]
    fn planned_evaluation_is_the_recordings() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/posteriordb");
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        names.sort();
        assert!(names.len() >= 11);
        let (mut grouped, mut fused) = (0, 0);
        for p in &names {
            let m =
                StanModel::from_files(&p.join("model.stan"), Some(&p.join("data.json"))).unwrap();
            let (rec, d) = (&m.rec, m.dim);
            assert!(rec.plan.is_some(), "{p:?}: no plan");
            let Sc::N(target) = rec.target else {
                panic!("{p:?}: constant target")
            };
            // The CPU's plan, and the GPU kernel's, whose terms compute their own products
            // of a value and a constant.
            let cpu = plan::Plan::new(&rec.kernel, target, false).unwrap();
            let gpu = plan::Plan::new(&rec.kernel, target, true).unwrap();
            // Without shared products the GPU's plan keeps the same shared values and
            // shapes (so the CPU's serves it, and it is not built).
            if !cpu.shares_products() {
                assert_eq!(gpu.shared_len(), cpu.shared_len(), "{p:?}");
                assert_eq!(gpu.groups(), cpu.groups(), "{p:?}");
            }
            grouped += usize::from(cpu.groups() < cpu.term_count());
            fused += usize::from(cpu.fused_steps() > 0);
            if p.ends_with("diamonds-diamonds") {
                // Its rows share products wherever their predictors repeat a value: the
                // CPU computes each once, the GPU's terms each their own, in one shape.
                assert!(cpu.shares_products() && cpu.shared_len() > 1000);
                assert!(gpu.shared_len() < 100, "{}", gpu.shared_len());
                assert!(gpu.groups() < cpu.groups(), "{}", gpu.groups());
            }
            for plan in [&cpu, &gpu] {
                let mut rng = crate::rng::host_rng(3, 0, crate::rng::Purpose::Simulate);
                for lanes in [1, 5, 64] {
                    let theta: Vec<f64> = (0..lanes * d)
                        .map(|_| rand::RngExt::random_range(&mut rng, -1.0..1.0))
                        .collect();
                    let n = rec.kernel.slots();
                    let rows = n + rec.kernel.weight_rows();
                    let (mut vals, mut adj) = (vec![0.0; n * lanes], vec![0.0; rows * lanes]);
                    let mut want_g = vec![0.0; lanes * d];
                    rec.kernel.forward(&theta, d, lanes, &mut vals);
                    rec.kernel
                        .reverse(target as usize, &vals, &mut adj, d, lanes, &mut want_g);
                    let mut scratch = vec![f64::NAN; plan.scratch_len(lanes)];
                    let (mut lp, mut g) = (vec![0.0; lanes], vec![0.0; lanes * d]);
                    plan.eval(&theta, d, lanes, &mut lp, &mut g, &mut scratch);
                    for l in 0..lanes {
                        let want = vals[target as usize * lanes + l];
                        if plan.defers_logs() {
                            let err = (lp[l] - want).abs();
                            assert!(err <= 1e-13 * (1.0 + want.abs()), "{p:?} lane {l}: {err}");
                        } else {
                            assert_eq!(lp[l].to_bits(), want.to_bits(), "{p:?} lane {l}");
                        }
                        let (gw, gp) = (&want_g[l * d..(l + 1) * d], &g[l * d..(l + 1) * d]);
                        let err: f64 = gw.iter().zip(gp).map(|(a, b)| (a - b).powi(2)).sum();
                        let norm: f64 = gw.iter().map(|a| a * a).sum();
                        assert!(
                            err.sqrt() <= 1e-12 * (1.0 + norm.sqrt()),
                            "{p:?} lane {l}: gradient {gp:?} vs {gw:?}"
                        );
                        // The same chain alone.
                        let mut s1 = vec![0.0; plan.scratch_len(1)];
                        let (mut lp1, mut g1) = ([0.0], vec![0.0; d]);
                        plan.eval(&theta[l * d..(l + 1) * d], d, 1, &mut lp1, &mut g1, &mut s1);
                        assert_eq!(lp1[0].to_bits(), lp[l].to_bits(), "{p:?} lane {l} alone");
                        assert!(g1.iter().zip(gp).all(|(a, b)| a.to_bits() == b.to_bits()));
                    }
                }
            }
        }
        // Most programs' terms repeat a shape (the loops recording unrolled).
        assert!(grouped >= 8, "{grouped} programs grouped");
        // Most run fused steps (normal_lpdf's kernel, linear predictors).
        assert!(fused >= 8, "{fused} programs with fused steps");
    }

    /// A program without a single constant runs on both paths (the unread operand of a
    /// one-operand instruction is a constant that exists).
    #[test]
    fn a_program_without_constants_runs() {
        let m = StanModel::compile(
            Path::new("e.stan"),
            "parameters { real x; } model { target += exp(x); }",
            None,
        )
        .unwrap();
        let (mut g, x) = (vec![0.0], 0.5f64);
        let lp = m.log_density(&placeholder_data(), 0, &[x], &mut g, &mut Vec::new());
        assert_eq!(lp, x.exp());
        assert_eq!(g[0], x.exp());
        assert_eq!(m.rec.outputs_at(&[x], 1), vec![x]);
    }
}
