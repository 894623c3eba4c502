//! Shader assembly and validation. Every kernel is put together one way, by [`Wgsl`]: typed
//! constants (the sizes and offsets a family or engine bakes in), named parts (the shared
//! WGSL files, each added once), templates with named slots, and generated code. Every
//! assembled shader can be parsed and validated by naga without a GPU, and bind group
//! layouts are read from the validated module ([`bindings`]).

use std::fmt::Write;

use crate::error::{Error, Result};

/// A named WGSL file that kernels include; [`Wgsl::part`] adds each name once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    /// What it is called in the assembled source's comments and in errors.
    pub name: &'static str,
    /// The WGSL.
    pub source: &'static str,
}

macro_rules! part {
    ($name:literal, $file:literal) => {
        Part {
            name: $name,
            source: include_str!(concat!("../shaders/", $file)),
        }
    };
}

/// Shared WGSL: the Philox generator and its uniform/normal maps.
pub const PHILOX: Part = part!("philox", "common/philox.wgsl");
/// Stable `softplus` and `sigmoid` (the HMM kernels).
pub const LOGISTIC: Part = part!("logistic", "common/logistic.wgsl");
/// Log density + gradient of one chain with lanes and a workgroup reduction.
pub const DENSITY: Part = part!("density", "common/density.wgsl");
/// The batch log-density kernel (see `Model::wgsl`).
pub const LOGP_BATCH: Part = part!("logp_batch", "logp_batch.wgsl");
/// The fused HMC transition kernel.
pub const HMC_TRANSITION: Part = part!("hmc_transition", "hmc_transition.wgsl");
/// Known-answer and stream kernel for the Philox twin test.
pub const PHILOX_TEST: Part = part!("philox_test", "philox_test.wgsl");
/// Layout probe for the shared Rust/WGSL structs.
pub const LAYOUT_PROBE: Part = part!("layout_probe", "layout_probe.wgsl");
/// The mixture-of-GLMs density template (slot `LIKELIHOOD`).
pub const MIXGLM: Part = part!("mixglm", "mixglm.wgsl");
/// The errors-in-variables density.
pub const EIV: Part = part!("eiv", "eiv.wgsl");
/// The HMM forward-pass density (its per-point code is generated).
pub const HMM: Part = part!("hmm", "hmm.wgsl");
/// The MDN training kernels.
pub const MDN: Part = part!("mdn", "mdn.wgsl");
/// What both Stan-program kernels share: the chain's program words and special functions.
pub const STAN_COMMON: Part = part!("stan_common", "common/stan.wgsl");
/// The Stan-program interpreter (slots `FORWARD` and `REVERSE`: the unrolled steps).
pub const STAN: Part = part!("stan", "stan.wgsl");
/// A Stan program's generated kernel (slot `BODY`, see `src/stan/codegen.rs`).
pub const STAN_GEN: Part = part!("stan_gen", "stan_gen.wgsl");

/// Formats an `f64` as a WGSL f32 literal that always has a decimal point or exponent.
pub fn f32_literal(x: f64) -> String {
    format!("{:e}f", x as f32)
}

/// A WGSL source being assembled, in order: constants, parts, templates and code.
///
/// ```
/// use gpsamp::shader::{Wgsl, PHILOX, PHILOX_TEST};
/// let src = Wgsl::new().u32("K", 3).f32("SD", 2.5).part(PHILOX).part(PHILOX).part(PHILOX_TEST).build();
/// assert!(src.starts_with("const K: u32 = 3u;\nconst SD: f32 = 2.5e0f;\n"));
/// assert_eq!(src.matches("fn philox4x32").count(), 1);
/// gpsamp::shader::validate("philox_test", &src).unwrap();
/// ```
#[derive(Clone, Debug, Default)]
pub struct Wgsl {
    text: String,
    parts: Vec<&'static str>,
}

impl Wgsl {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    /// `const NAME: u32 = v;`
    pub fn u32(mut self, name: &str, v: usize) -> Self {
        let _ = writeln!(self.text, "const {name}: u32 = {v}u;");
        self
    }

    /// `const NAME: f32 = v;` (rounded to f32).
    pub fn f32(mut self, name: &str, v: f64) -> Self {
        let _ = writeln!(self.text, "const {name}: f32 = {};", f32_literal(v));
        self
    }

    /// `const NAME: bool = v;`
    pub fn bool(mut self, name: &str, v: bool) -> Self {
        let _ = writeln!(self.text, "const {name}: bool = {v};");
        self
    }

    /// `const NAME: array<f32, n> = array<f32, n>(v...);`
    pub fn f32_array(mut self, name: &str, v: &[f64]) -> Self {
        let n = v.len();
        let list: Vec<String> = v.iter().map(|&x| f32_literal(x)).collect();
        let _ = writeln!(
            self.text,
            "const {name}: array<f32, {n}> = array<f32, {n}>({});",
            list.join(", ")
        );
        self
    }

    /// A private `u32` table, `var<private> NAME: array<u32, n> = array<u32, n>(v...);`, for
    /// offsets indexed at run time.
    pub fn u32_table(mut self, name: &str, v: &[usize]) -> Self {
        let n = v.len();
        let list: Vec<String> = v.iter().map(|x| format!("{x}u")).collect();
        let _ = writeln!(
            self.text,
            "var<private> {name}: array<u32, {n}> = array<u32, {n}>({});",
            list.join(", ")
        );
        self
    }

    /// A shared part, once: asking again for a part already added adds nothing.
    pub fn part(mut self, part: Part) -> Self {
        if !self.parts.contains(&part.name) {
            self.parts.push(part.name);
            self.text.push_str(part.source);
            self.text.push('\n');
        }
        self
    }

    /// A part whose `// {SLOT}` lines are replaced by code; every slot named must occur in the
    /// part exactly once (a template and its filler are written together, so a miss is a bug).
    pub fn template(mut self, part: Part, slots: &[(&str, &str)]) -> Self {
        let mut src = part.source.to_string();
        for (slot, code) in slots {
            let mark = format!("// {{{slot}}}");
            assert_eq!(
                src.matches(&mark).count(),
                1,
                "slot {slot} in WGSL part {}",
                part.name
            );
            src = src.replace(&mark, code);
        }
        self.parts.push(part.name);
        self.text.push_str(&src);
        self.text.push('\n');
        self
    }

    /// Generated or family-specific code, as is.
    pub fn code(mut self, code: &str) -> Self {
        self.text.push_str(code);
        if !code.ends_with('\n') {
            self.text.push('\n');
        }
        self
    }

    /// The assembled source.
    pub fn build(self) -> String {
        self.text
    }
}

/// The batch log-density shader for a model's WGSL with `lanes` threads per chain.
pub fn logp_batch(model_wgsl: &str, lanes: u32) -> String {
    Wgsl::new()
        .u32("LANES", lanes as usize)
        .code(model_wgsl)
        .part(DENSITY)
        .part(LOGP_BATCH)
        .build()
}

/// The fused HMC transition shader for a model's WGSL with `lanes` threads per chain.
pub fn hmc_transition(model_wgsl: &str, lanes: u32) -> String {
    Wgsl::new()
        .u32("LANES", lanes as usize)
        .code(model_wgsl)
        .part(PHILOX)
        .part(DENSITY)
        .part(HMC_TRANSITION)
        .build()
}

/// The Philox test shader.
pub fn philox_test() -> String {
    Wgsl::new().part(PHILOX).part(PHILOX_TEST).build()
}

/// Parses and validates WGSL with naga, as the GPU driver would.
pub fn validate(name: &str, source: &str) -> Result<naga::Module> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| Error::Shader {
        name: name.into(),
        message: e.emit_to_string(source),
    })?;
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default(),
    )
    .validate(&module)
    .map_err(|e| Error::Shader {
        name: name.into(),
        message: e.emit_to_string(source),
    })?;
    Ok(module)
}

/// What a kernel's `@group(0) @binding(i)` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// `var<uniform>`.
    Uniform,
    /// `var<storage, read>`.
    StorageRead,
    /// `var<storage, read_write>`.
    StorageReadWrite,
}

/// The bindings of group 0 in `module`, by binding number: the bind group layout a kernel
/// needs, read from the shader itself instead of written again beside it.
pub fn bindings(module: &naga::Module) -> Vec<(u32, Binding)> {
    let mut out: Vec<(u32, Binding)> = module
        .global_variables
        .iter()
        .filter_map(|(_, g)| {
            let b = g.binding.as_ref().filter(|b| b.group == 0)?;
            let kind = match g.space {
                naga::AddressSpace::Uniform => Binding::Uniform,
                naga::AddressSpace::Storage { access } => {
                    if access.contains(naga::StorageAccess::STORE) {
                        Binding::StorageReadWrite
                    } else {
                        Binding::StorageRead
                    }
                }
                _ => return None,
            };
            Some((b.binding, kind))
        })
        .collect();
    out.sort_by_key(|&(b, _)| b);
    out
}

/// Member names and byte offsets of WGSL struct `name` in `module`, and its size: what a
/// Rust `#[repr(C)]` twin must match.
pub fn struct_layout(module: &naga::Module, name: &str) -> Option<(Vec<(String, u32)>, u32)> {
    module.types.iter().find_map(|(_, ty)| match &ty.inner {
        naga::TypeInner::Struct { members, span } if ty.name.as_deref() == Some(name) => Some((
            members
                .iter()
                .map(|m| (m.name.clone().unwrap_or_default(), m.offset))
                .collect(),
            *span,
        )),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;

    /// (field, offset) of a Rust struct, in declaration order.
    macro_rules! rust_layout {
        ($t:ty; $($f:ident),* $(,)?) => {
            (
                vec![$((stringify!($f).to_string(), std::mem::offset_of!($t, $f) as u32)),*],
                std::mem::size_of::<$t>() as u32,
            )
        };
    }

    /// One kernel of each engine: (its uniform struct, its source): the batch density and the
    /// HMC transition of a GLM, the HMM E-step, the MDN step.
    fn engine_kernels() -> [(&'static str, String); 4] {
        let glm = crate::MixGlm::glm(crate::Likelihood::Gaussian, 1, crate::Priors::default())
            .unwrap()
            .wgsl();
        let spec = crate::hmm::HmmSpec::gaussian(3, 1).unwrap();
        let shape = crate::mdn::Shape {
            input: 1,
            hidden: vec![4],
            k: 2,
            theta: 1,
        };
        [
            ("EvalParams", logp_batch(&glm, 4)),
            ("HmcParams", hmc_transition(&glm, 4)),
            ("EParams", crate::hmm::gpu::shader_source(&spec)),
            ("StepParams", crate::mdn::gpu::shader_source(&shape, 64)),
        ]
    }

    /// The layouts read from the kernels are the ones the engines used to write by hand.
    #[test]
    fn bindings_are_read_from_the_kernels() {
        use Binding::{StorageRead as R, StorageReadWrite as W, Uniform as U};
        let kinds = |src: &str| -> Vec<Binding> {
            let m = validate("k", src).unwrap();
            let b = bindings(&m);
            assert!(b.iter().enumerate().all(|(i, &(n, _))| n == i as u32));
            b.into_iter().map(|(_, k)| k).collect()
        };
        let want: [&[Binding]; 4] = [
            &[U, R, R, R, R, W],
            &[U, R, R, R, R, W, W, R],
            &[U, R, R, R, R, W, W],
            &[U, R, R, W, W, W, W],
        ];
        for ((name, src), want) in engine_kernels().iter().zip(want) {
            assert_eq!(kinds(src), want, "{name}'s kernel");
        }
    }

    fn wgsl_layout(source: &str, name: &str) -> (Vec<(String, u32)>, u32) {
        let module = validate(name, source).unwrap();
        struct_layout(&module, name).unwrap_or_else(|| panic!("no struct {name}"))
    }

    /// Every uniform struct shared by Rust and WGSL has the same members at the same offsets
    /// and the same size on both sides.
    #[test]
    fn uniform_structs_match_their_wgsl() {
        use crate::backend::gpu::EvalParams;
        use crate::hmc::gpu::HmcParams;
        use crate::hmm::gpu::EParams;
        use crate::mdn::gpu::StepParams;
        let rust = [
            rust_layout!(EvalParams; n_chains, chain_offset, chains_per_dataset, n_total,
                groups_x, _pad0, _pad1, _pad2),
            rust_layout!(HmcParams; n_chains, chains_per_dataset, n_total, groups_x, iter,
                seed_lo, seed_hi, max_steps, init, row, chain_offset, dense),
            rust_layout!(EParams; n_threads, n_seq, r0, restarts, n_total, groups_x, _pad0,
                _pad1),
            rust_layout!(StepParams; start, n, slot, update, step_scale, eps_hat, beta1,
                beta2, wscale, _pad0, _pad1, _pad2),
        ];
        for ((name, src), rust) in engine_kernels().into_iter().zip(rust) {
            assert_eq!(wgsl_layout(&src, name), rust, "{name}: WGSL vs Rust");
        }
    }
}
