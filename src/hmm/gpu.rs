//! The GPU E-step of batched EM: the twin of [`super::estep::estep_cpu`].
//!
//! One thread per (restart, sequence): a normalised forward pass that stores α̂_t and the
//! normaliser c_t in a scratch buffer, then a backward pass that rebuilds β̂ on the fly and
//! accumulates the sequence's sufficient statistics ([`Stats`] layout) in registers; one
//! dispatch per chunk of restarts per EM iteration, and only the statistics come back (the
//! host sums them per job in f64 and runs the M-step). The kernel is generated with the
//! loops over states, dimensions and inputs unrolled (see [`shader_source`]), so a step
//! costs one loop iteration: a software adapter caps an invocation at 65 535 of them.

use std::fmt::Write;
use std::sync::Arc;

use super::em::{fit_with, EmConfig, EmFit, Stats};
use super::{sequences, EmissionKind, HmmParams, HmmSpec};
use crate::data::DataBatch;
use crate::device::{upload_data, GpuContext};
use crate::error::{Error, Result};

/// Uniform parameters of the E-step kernel (must match `struct EParams` in the source).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct EParams {
    pub(crate) n_threads: u32,
    pub(crate) n_seq: u32,
    pub(crate) r0: u32,
    pub(crate) restarts: u32,
    pub(crate) n_total: u32,
    pub(crate) groups_x: u32,
    pub(crate) _pad0: u32,
    pub(crate) _pad1: u32,
}

/// The E-step kernel for `spec`, with every loop over states, dimensions and inputs
/// unrolled.
pub fn shader_source(spec: &HmmSpec) -> String {
    let (k, de, p) = (spec.k, spec.d, spec.p);
    let q = p + 1;
    let gauss = spec.has_sds();
    // Offsets into the statistics written (o_) and the parameters read (p_).
    let (sb, pb) = (spec.layout().stats(), spec.layout().params());
    let (ns, np) = (sb.len, pb.len);
    let (o_init, o_tr, o_xx) = (sb.init.start, sb.trans.start, sb.xx.start);
    let (o_xy, o_yy, o_ll) = (sb.xy.start, sb.yy.start, sb.loglik);
    let (p_tr, p_loc) = (pb.transition.start, pb.loc.start);
    let (p_w, p_sd) = (pb.weights.start, pb.sds.start);
    let mut w = String::new();
    let _ = write!(
        w,
        "struct EParams {{ n_threads: u32, n_seq: u32, r0: u32, restarts: u32, n_total: u32, groups_x: u32, _pad0: u32, _pad1: u32, }}
@group(0) @binding(0) var<uniform> ep: EParams;
@group(0) @binding(1) var<storage, read> data_x: array<f32>;
@group(0) @binding(2) var<storage, read> data_y: array<f32>;
@group(0) @binding(3) var<storage, read> seqs: array<u32>;
@group(0) @binding(4) var<storage, read> prm: array<f32>;
@group(0) @binding(5) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

fn x_at(j: u32, n: u32) -> f32 {{
    return data_x[j * ep.n_total + n];
}}

fn y_at(n: u32) -> f32 {{
    return data_y[n];
}}
"
    );
    // The generated kernel follows the shared helpers.
    let mut w = crate::shader::Wgsl::new()
        .code(&w)
        .part(crate::shader::LOGISTIC)
        .build();
    let _ = write!(
        w,
        "@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {{
    let tid = (wid.x + wid.y * ep.groups_x) * 64u + lid;
    if (tid >= ep.n_threads) {{
        return;
    }}
    let s = tid % ep.n_seq;
    let rl = tid / ep.n_seq;
    let start = seqs[3u * s];
    let end = seqs[3u * s + 1u];
    let b = seqs[3u * s + 2u];
    let pb = (b * ep.restarts + ep.r0 + rl) * {np}u;
    let sb = rl * ep.n_total;
    var pr: array<f32, {np}>;
    for (var i = 0u; i < {np}u; i++) {{
        pr[i] = prm[pb + i];
    }}
"
    );
    if gauss {
        for kd in 0..k * de {
            let _ = writeln!(w, "    let inv{kd} = 1.0 / pr[{}];", p_sd + kd);
            let _ = writeln!(w, "    let lin{kd} = log(inv{kd});");
        }
    }
    let emission = |w: &mut String, ind: &str| {
        w.push_str(&emissions_wgsl(
            spec,
            ind,
            &|kd| format!("pr[{}]", p_loc + kd),
            &|i| format!("pr[{}]", p_w + i),
            &|kd| format!("inv{kd}"),
            &|kd| format!("lin{kd}"),
        ))
    };
    // Forward pass.
    for st in 0..k {
        let _ = writeln!(w, "    var al{st} = 0.0;");
    }
    w.push_str("    var ll = 0.0;\n    for (var n = start; n < end; n++) {\n");
    emission(&mut w, "        ");
    w.push_str("        if (n == start) {\n");
    for st in 0..k {
        let _ = writeln!(w, "            al{st} = pr[{st}] * e{st};");
    }
    w.push_str("        } else {\n");
    for j in 0..k {
        let pred: Vec<String> = (0..k)
            .map(|i| format!("al{i} * pr[{}]", p_tr + i * k + j))
            .collect();
        let _ = writeln!(w, "            let a{j} = ({}) * e{j};", pred.join(" + "));
    }
    for st in 0..k {
        let _ = writeln!(w, "            al{st} = a{st};");
    }
    w.push_str("        }\n");
    let sum: Vec<String> = (0..k).map(|s| format!("al{s}")).collect();
    let _ = writeln!(w, "        let c = {};", sum.join(" + "));
    let _ = writeln!(w, "        let base = (sb + n) * {}u;", k + 1);
    for st in 0..k {
        let _ = writeln!(w, "        al{st} = al{st} / c;");
        let _ = writeln!(w, "        scratch[base + {st}u] = al{st};");
    }
    let _ = writeln!(w, "        scratch[base + {k}u] = c;");
    w.push_str("        ll += log(c) + mx;\n    }\n");
    // Backward pass with the statistics.
    let _ = writeln!(w, "    var st: array<f32, {ns}>;");
    for st in 0..k {
        let _ = writeln!(w, "    var be{st} = 1.0;");
    }
    w.push_str("    for (var m = end; m > start; m--) {\n        let n = m - 1u;\n");
    emission(&mut w, "        ");
    let _ = writeln!(w, "        let base = (sb + n) * {}u;", k + 1);
    for st in 0..k {
        let _ = writeln!(w, "        let g{st} = scratch[base + {st}u] * be{st};");
    }
    w.push_str("        if (n == start) {\n");
    for st in 0..k {
        let _ = writeln!(w, "            st[{}] += g{st};", o_init + st);
    }
    w.push_str("        }\n");
    let xt = |a: usize| -> String {
        if a == 0 {
            "1.0".into()
        } else {
            format!("x{}", a - 1)
        }
    };
    for st in 0..k {
        for e in 0..de {
            let kd = st * de + e;
            let r = match spec.kind {
                EmissionKind::Gaussian => format!("y{e}"),
                EmissionKind::Bernoulli => format!("(y{e} - sigmoid(eta{kd}))"),
            };
            for a in 0..q {
                for bb in 0..q {
                    let _ = writeln!(
                        w,
                        "        st[{}] += g{st} * {} * {};",
                        o_xx + kd * q * q + a * q + bb,
                        xt(a),
                        xt(bb)
                    );
                }
                let _ = writeln!(
                    w,
                    "        st[{}] += g{st} * {} * {r};",
                    o_xy + kd * q + a,
                    xt(a)
                );
            }
            let _ = writeln!(w, "        st[{}] += g{st} * y{e} * y{e};", o_yy + kd);
        }
    }
    w.push_str("        if (n > start) {\n");
    let _ = writeln!(w, "            let c = scratch[base + {k}u];");
    let _ = writeln!(w, "            let pbase = base - {}u;", k + 1);
    for j in 0..k {
        let _ = writeln!(w, "            let tmp{j} = e{j} * be{j} / c;");
    }
    for i in 0..k {
        let _ = writeln!(w, "            let ap{i} = scratch[pbase + {i}u];");
        let mut beta = Vec::new();
        for j in 0..k {
            let t = format!("pr[{}] * tmp{j}", p_tr + i * k + j);
            let _ = writeln!(w, "            st[{}] += ap{i} * {t};", o_tr + i * k + j);
            beta.push(t);
        }
        let _ = writeln!(w, "            let nb{i} = {};", beta.join(" + "));
    }
    for i in 0..k {
        let _ = writeln!(w, "            be{i} = nb{i};");
    }
    w.push_str("        }\n    }\n");
    let _ = writeln!(w, "    st[{o_ll}] = ll;");
    let _ = writeln!(
        w,
        "    for (var i = 0u; i < {ns}u; i++) {{\n        out[tid * {ns}u + i] = st[i];\n    }}\n}}"
    );
    w
}

/// WGSL statements for point `n` of both HMM kernels, with every loop unrolled: inputs
/// `x{j}` and emissions `y{e}` (read through `x_at`/`y_at`), linear predictors `eta{kd}`,
/// standardised residuals `z{kd}` (Gaussian), log emissions `le{s}`, their maximum `mx` and
/// `e{s} = exp(le{s} − mx)`. The closures name where the parameters live: location `kd`,
/// weight `kd · P + j`, 1/sd and log(1/sd) of `kd`.
pub(crate) fn emissions_wgsl(
    spec: &HmmSpec,
    ind: &str,
    loc: &dyn Fn(usize) -> String,
    weight: &dyn Fn(usize) -> String,
    inv: &dyn Fn(usize) -> String,
    log_inv: &dyn Fn(usize) -> String,
) -> String {
    let (k, de, p) = (spec.k, spec.d, spec.p);
    let mut w = String::new();
    for j in 0..p {
        let _ = writeln!(w, "{ind}let x{j} = x_at({}u, n);", 1 + j);
    }
    for e in 0..de {
        if e == 0 {
            let _ = writeln!(w, "{ind}let y0 = y_at(n);");
        } else {
            let _ = writeln!(w, "{ind}let y{e} = x_at({}u, n);", p + e);
        }
    }
    for s in 0..k {
        let mut le = Vec::new();
        for e in 0..de {
            let kd = s * de + e;
            let mut eta = loc(kd);
            for j in 0..p {
                eta = format!("fma({}, x{j}, {eta})", weight(kd * p + j));
            }
            let _ = writeln!(w, "{ind}let eta{kd} = {eta};");
            if spec.has_sds() {
                let _ = writeln!(w, "{ind}let z{kd} = (y{e} - eta{kd}) * {};", inv(kd));
                le.push(format!(
                    "-0.5 * z{kd} * z{kd} + {} - 0.9189385",
                    log_inv(kd)
                ));
            } else {
                le.push(format!("y{e} * eta{kd} - softplus(eta{kd})"));
            }
        }
        let _ = writeln!(w, "{ind}let le{s} = {};", le.join(" + "));
    }
    let mut mx = "le0".to_string();
    for s in 1..k {
        mx = format!("max({mx}, le{s})");
    }
    let _ = writeln!(w, "{ind}let mx = {mx};");
    for s in 0..k {
        let _ = writeln!(w, "{ind}let e{s} = exp(le{s} - mx);");
    }
    w
}

/// The GPU E-step for one data batch and a fixed number of restarts (see the module docs).
pub struct GpuEstep {
    ctx: Arc<GpuContext>,
    spec: HmmSpec,
    pipeline: wgpu::ComputePipeline,
    bind_groups: Vec<(wgpu::BindGroup, (u32, u32), u32)>,
    params: wgpu::Buffer,
    out: wgpu::Buffer,
    staging: wgpu::Buffer,
    n_seq: usize,
    seq_dataset: Vec<usize>,
    restarts: usize,
    n_datasets: usize,
    _keep: Vec<wgpu::Buffer>,
}

impl GpuEstep {
    /// Uploads the data and builds the kernel for `restarts` restarts of every dataset.
    pub fn new(
        ctx: Arc<GpuContext>,
        spec: &HmmSpec,
        data: &DataBatch,
        restarts: usize,
    ) -> Result<Self> {
        spec.check_data(data)?;
        let mut seqs: Vec<u32> = Vec::new();
        let mut seq_dataset = Vec::new();
        for b in 0..data.n_datasets() {
            for s in sequences(data, b) {
                seqs.extend([s.start as u32, s.end as u32, b as u32]);
                seq_dataset.push(b);
            }
        }
        let n_seq = seq_dataset.len();
        let ns = Stats::flat_len(spec);
        // Restarts per dispatch: as many as the scratch and output bindings allow.
        let max_bind = ctx
            .limits
            .max_storage_buffer_binding_size
            .min(ctx.limits.max_buffer_size);
        let per_restart = (data.n_total() * (spec.k + 1) * 4).max((n_seq * ns * 4).max(4)) as u64;
        let chunk = ((max_bind / per_restart) as usize).min(restarts);
        if chunk == 0 {
            return Err(Error::DeviceLimit(format!(
                "the data ({} points, K = {}) do not fit one GPU storage binding ({max_bind} bytes): split them into groups",
                data.n_total(),
                spec.k
            )));
        }
        let [x, y, _offsets] = upload_data(&ctx, data)?;
        let seq_buf = ctx.storage_init("hmm sequences", &seqs, false)?;
        let n_jobs = data.n_datasets() * restarts;
        let params = ctx.storage("hmm params", (n_jobs * spec.n_params() * 4) as u64, false)?;
        let scratch = ctx.storage(
            "hmm scratch",
            (chunk * data.n_total() * (spec.k + 1) * 4) as u64,
            false,
        )?;
        let out_bytes = (chunk * n_seq * ns * 4) as u64;
        let out = ctx.storage("hmm stats", out_bytes, true)?;
        let staging = ctx.staging("hmm stats staging", out_bytes)?;
        let name = format!("hmm_estep[K={}, D={}, P={}]", spec.k, spec.d, spec.p);
        let source = shader_source(spec);
        let layout = ctx.layout_for(&name, &source)?;
        let pipeline = ctx.pipeline(&name, &source, &layout)?;
        let mut bind_groups = Vec::new();
        let mut keep = vec![x.clone(), y.clone(), seq_buf.clone(), scratch.clone()];
        let mut r0 = 0;
        while r0 < restarts {
            let rc = chunk.min(restarts - r0);
            let threads = (rc * n_seq) as u32;
            let groups = ctx.grid(threads.div_ceil(64));
            let u = ctx.uniform(
                "hmm estep params",
                &EParams {
                    n_threads: threads,
                    n_seq: n_seq as u32,
                    r0: r0 as u32,
                    restarts: restarts as u32,
                    n_total: data.n_total() as u32,
                    groups_x: groups.0,
                    ..Default::default()
                },
            );
            let bg = ctx.bind_group(
                "hmm estep",
                &layout,
                &[&u, &x, &y, &seq_buf, &params, &scratch, &out],
            )?;
            bind_groups.push((bg, groups, rc as u32));
            keep.push(u);
            r0 += rc;
        }
        Ok(Self {
            ctx,
            spec: *spec,
            pipeline,
            bind_groups,
            params,
            out,
            staging,
            n_seq,
            seq_dataset,
            restarts,
            n_datasets: data.n_datasets(),
            _keep: keep,
        })
    }

    /// Statistics of every job (index b · R + r) at `params` (same order).
    pub fn run(&self, params: &[HmmParams]) -> Result<Vec<Stats>> {
        let n_jobs = self.n_datasets * self.restarts;
        if params.len() != n_jobs {
            return Err(Error::Invalid(format!(
                "expected {n_jobs} parameter sets, got {}",
                params.len()
            )));
        }
        let mut flat: Vec<f32> = Vec::with_capacity(n_jobs * self.spec.n_params());
        for p in params {
            flat.extend(p.to_flat().map(|v| v as f32));
        }
        self.ctx
            .queue
            .write_buffer(&self.params, 0, bytemuck::cast_slice(&flat));
        let ns = Stats::flat_len(&self.spec);
        let mut stats = vec![Stats::zeros(&self.spec); n_jobs];
        let mut r0 = 0;
        for (bg, groups, rc) in &self.bind_groups {
            let rc = *rc as usize;
            let mut enc = self.ctx.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("hmm_estep"),
                    timestamp_writes: None,
                });
                pass.set_pipeline(&self.pipeline);
                pass.set_bind_group(0, bg, &[]);
                pass.dispatch_workgroups(groups.0, groups.1, 1);
            }
            let bytes = (rc * self.n_seq * ns * 4) as u64;
            enc.copy_buffer_to_buffer(&self.out, 0, &self.staging, 0, bytes);
            self.ctx.queue.submit([enc.finish()]);
            let v: Vec<f32> = self.ctx.map_read(&self.staging, bytes)?;
            for rl in 0..rc {
                for (s, &b) in self.seq_dataset.iter().enumerate() {
                    let o = (rl * self.n_seq + s) * ns;
                    stats[b * self.restarts + r0 + rl]
                        .add_flat(v[o..o + ns].iter().map(|&x| f64::from(x)));
                }
            }
            r0 += rc;
        }
        Ok(stats)
    }
}

/// EM with the E-step on the GPU: every job advances in lockstep, one dispatch per chunk of
/// restarts per iteration; the same M-step and restart selection as [`super::em::fit_cpu`].
pub fn fit_gpu(
    ctx: Arc<GpuContext>,
    spec: &HmmSpec,
    cfg: &EmConfig,
    data: &DataBatch,
) -> Result<Vec<EmFit>> {
    fit_gpu_with_progress(ctx, spec, cfg, data, &|_| {})
}

/// [`fit_gpu`], calling `progress(n)` after each iteration with the number of jobs it
/// advanced.
pub fn fit_gpu_with_progress(
    ctx: Arc<GpuContext>,
    spec: &HmmSpec,
    cfg: &EmConfig,
    data: &DataBatch,
    progress: &dyn Fn(u64),
) -> Result<Vec<EmFit>> {
    let estep = GpuEstep::new(ctx, spec, data, cfg.restarts)?;
    fit_with(spec, cfg, data, |params| estep.run(params), progress)
}
