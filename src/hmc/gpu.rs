//! GPU HMC: `shaders/hmc_transition.wgsl` runs one whole transition (momentum, every
//! leapfrog step, the accept) for every chain of every dataset in one dispatch. Data and
//! chain states stay on the device; the host uploads per-dataset tuning and reads back the
//! positions and statistics it needs for adaptation and draws.

use std::sync::Arc;

use super::{Integrator, Metric, StepOut, Tuning};
use crate::data::DataBatch;
use crate::device::{choose_lanes, upload_data, GpuContext};
use crate::error::{Error, Result};
use crate::model::Model;

/// Uniform parameters of `shaders/hmc_transition.wgsl`. Must match `struct HmcParams` there.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct HmcParams {
    /// Chains over all datasets.
    pub n_chains: u32,
    /// Chains per dataset.
    pub chains_per_dataset: u32,
    /// Points over all datasets.
    pub n_total: u32,
    /// Workgroups along x.
    pub groups_x: u32,
    /// Transition index (the Philox counter).
    pub iter: u32,
    /// Low word of the seed.
    pub seed_lo: u32,
    /// High word of the seed.
    pub seed_hi: u32,
    /// Largest leapfrog step count of this dispatch.
    pub max_steps: u32,
    /// 1: evaluate the density at the state only.
    pub init: u32,
    /// Row of the step schedule this transition uses.
    pub row: u32,
    /// Added to the chain index in the random streams (see `Config::chain_offset`).
    pub chain_offset: u32,
    /// 1: the tuning rows hold a dense metric's Cholesky factor (stride D + 1 + D²).
    pub dense: u32,
}

/// HMC transitions on the GPU (see the module docs).
pub struct GpuIntegrator {
    ctx: Arc<GpuContext>,
    pipeline: wgpu::ComputePipeline,
    /// One bind group and uniform buffer per transition of a batch.
    bind_groups: Vec<wgpu::BindGroup>,
    params: HmcParams,
    params_bufs: Vec<wgpu::Buffer>,
    tuning_buf: wgpu::Buffer,
    sched_buf: wgpu::Buffer,
    n_datasets: usize,
    state: wgpu::Buffer,
    out: wgpu::Buffer,
    staging: wgpu::Buffer,
    groups: (u32, u32),
    dim: usize,
    n_chains: usize,
    tuning_f32: Vec<f32>,
    /// On a software adapter, the loop iterations of one leapfrog step with a diagonal
    /// metric (see [`GpuIntegrator::new`]).
    step_loops: Option<usize>,
    layout: wgpu::BindGroupLayout,
    // Kept for rebinding (a larger tuning buffer for a dense metric).
    scratch: Option<wgpu::Buffer>,
    data: [wgpu::Buffer; 3],
}

impl GpuIntegrator {
    /// Uploads the data and builds the transition pipeline for `chains_per_dataset` chains on
    /// each dataset; `lanes` overrides the threads per chain.
    pub fn new(
        ctx: Arc<GpuContext>,
        model: &dyn Model,
        data: &DataBatch,
        chains_per_dataset: usize,
        seed: u64,
        lanes: Option<u32>,
    ) -> Result<Self> {
        model.check_data(data)?;
        crate::model::require_gpu_kernel(model)?;
        let device_data = model.device_data(data)?;
        let data = device_data.as_ref().unwrap_or(data);
        let dim = model.dim();
        let n_datasets = data.n_datasets();
        let n_chains = n_datasets * chains_per_dataset;
        if n_chains == 0 {
            return Err(Error::Invalid("at least one chain is needed".into()));
        }
        let lanes = choose_lanes(lanes, data, model.max_lanes())?;
        // A software adapter (lavapipe) ends an invocation after 65 535 loop iterations and
        // silently keeps what it had; a transition spends at least one per point its lane
        // walks per leapfrog step (exactly one for the HMM family's unrolled kernel), or
        // what the family says one evaluation spends, and the kernel's own loops over the
        // dimensions (five per step, four more per transition; `hmc_transition.wgsl` and
        // `common/density.wgsl`): without them a model of many terms and few dimensions
        // reached the cap at the last steps, and its chains stalled.
        let longest = crate::device::check_loop_limit(&ctx, model, data, lanes)?;
        let step_loops = (ctx.summary.device_type == "Cpu")
            .then(|| longest + 5 * dim + 8 + lanes.ilog2() as usize);
        let source = crate::shader::hmc_transition(&model.wgsl(), lanes);
        let name = format!("hmc_transition[{}]", model.name());
        let layout = ctx.layout_for(&name, &source)?;
        let pipeline = ctx.pipeline(&name, &source, &layout)?;
        let [x, y, offsets] = upload_data(&ctx, data)?;
        let tuning_f32 = vec![0.0f32; n_datasets * (dim + 1)];
        let tuning_buf = ctx.storage_init("tuning", &tuning_f32, false)?;
        let state = ctx.storage("chain state", (n_chains * (2 * dim + 1) * 4) as u64, true)?;
        let out_bytes = (n_chains * (3 * dim + 4) * 4) as u64;
        let out = ctx.storage("transition out", out_bytes, true)?;
        // Transitions per submission: outputs of a whole batch come back in one read,
        // within about 64 MiB of staging.
        let batch = ((64u64 << 20) / out_bytes).clamp(1, 32) as usize;
        let sched_buf =
            ctx.storage_init("step schedule", &vec![0u32; batch * n_datasets], false)?;
        let state_bytes = (n_chains * (2 * dim + 1) * 4) as u64;
        let staging = ctx.staging(
            "transition staging",
            (out_bytes * batch as u64).max(state_bytes),
        )?;
        let groups = ctx.grid((n_chains * lanes as usize).div_ceil(64) as u32);
        let scratch_bytes = (n_chains * model.device_scratch() * 4) as u64;
        if scratch_bytes > ctx.limits.max_storage_buffer_binding_size {
            return Err(Error::DeviceLimit(format!(
                "{n_chains} chains of {} need {scratch_bytes} bytes of scratch storage, more than the adapter's binding limit (fewer chains, or the CPU backend)",
                model.name()
            )));
        }
        let scratch = ctx.storage("model scratch", scratch_bytes, false)?;
        let params = HmcParams {
            n_chains: n_chains as u32,
            chains_per_dataset: chains_per_dataset as u32,
            n_total: data.n_total() as u32,
            groups_x: groups.0,
            seed_lo: seed as u32,
            seed_hi: (seed >> 32) as u32,
            ..Default::default()
        };
        let params_bufs: Vec<wgpu::Buffer> = (0..batch)
            .map(|_| ctx.uniform("hmc params", &params))
            .collect();
        let mut me = Self {
            ctx,
            pipeline,
            bind_groups: Vec::new(),
            params,
            params_bufs,
            tuning_buf,
            sched_buf,
            n_datasets,
            state,
            out,
            staging,
            groups,
            dim,
            n_chains,
            tuning_f32,
            step_loops,
            layout,
            scratch: (scratch_bytes > 0).then_some(scratch),
            data: [x, y, offsets],
        };
        me.bind()?;
        Ok(me)
    }

    /// (Re)builds the bind groups, one per transition of a batch.
    fn bind(&mut self) -> Result<()> {
        let [x, y, offsets] = &self.data;
        self.bind_groups = self
            .params_bufs
            .iter()
            .map(|pb| {
                let mut buffers = vec![
                    pb,
                    x,
                    y,
                    offsets,
                    &self.tuning_buf,
                    &self.state,
                    &self.out,
                    &self.sched_buf,
                ];
                if let Some(scratch) = &self.scratch {
                    debug_assert_eq!(buffers.len(), crate::model::SCRATCH_BINDING as usize);
                    buffers.push(scratch);
                }
                self.ctx
                    .bind_group("hmc_transition", &self.layout, &buffers)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(())
    }

    /// Encodes transitions `first_iter..` (one per row of `steps`), copying each one's
    /// output into the staging buffer, submits once and reads everything back.
    fn run_rows(&mut self, first_iter: u32, steps: &[Vec<u32>]) -> Result<Vec<f32>> {
        let out_bytes = (self.n_chains * (3 * self.dim + 4) * 4) as u64;
        let mut sched = Vec::with_capacity(steps.len() * self.n_datasets);
        for row in steps {
            sched.extend_from_slice(row);
        }
        self.ctx
            .queue
            .write_buffer(&self.sched_buf, 0, bytemuck::cast_slice(&sched));
        for (r, row) in steps.iter().enumerate() {
            let p = HmcParams {
                iter: first_iter + r as u32,
                row: r as u32,
                max_steps: row.iter().copied().max().unwrap_or(0),
                init: 0,
                ..self.params
            };
            self.ctx
                .queue
                .write_buffer(&self.params_bufs[r], 0, bytemuck::bytes_of(&p));
        }
        self.ctx.scoped("hmc_transition", || {
            let mut enc = self.ctx.device.create_command_encoder(&Default::default());
            for r in 0..steps.len() {
                {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("hmc_transition"),
                        timestamp_writes: None,
                    });
                    pass.set_pipeline(&self.pipeline);
                    pass.set_bind_group(0, &self.bind_groups[r], &[]);
                    pass.dispatch_workgroups(self.groups.0, self.groups.1, 1);
                }
                enc.copy_buffer_to_buffer(
                    &self.out,
                    0,
                    &self.staging,
                    r as u64 * out_bytes,
                    out_bytes,
                );
            }
            self.ctx.queue.submit([enc.finish()]);
        })?;
        self.ctx
            .map_read(&self.staging, out_bytes * steps.len() as u64)
    }

    fn unpack(&self, raw: &[f32], out: &mut StepOut) {
        let d = self.dim;
        out.resize(self.n_chains, d);
        let stride = 3 * d + 4;
        for c in 0..self.n_chains {
            let r = &raw[c * stride..(c + 1) * stride];
            for i in 0..d {
                out.position[c * d + i] = f64::from(r[i]);
                out.proposal[c * d + i] = f64::from(r[d + 1 + i]);
                out.velocity[c * d + i] = f64::from(r[2 * d + 1 + i]);
            }
            out.logp[c] = f64::from(r[d]);
            out.accept_prob[c] = f64::from(r[3 * d + 1]);
            out.divergent[c] = r[3 * d + 2] != 0.0;
            out.energy[c] = f64::from(r[3 * d + 3]);
        }
    }

    /// Writes every dataset's step size and metric. When one dataset's metric is dense,
    /// every row is (stride D + 1 + D², a diagonal one as its diagonal factor), and the
    /// tuning buffer grows to hold them the first time.
    fn upload_tuning(&mut self, tuning: &[Tuning]) -> Result<()> {
        let d = self.dim;
        let dense = tuning.iter().any(|t| !t.chol.is_empty());
        let stride = if dense { d + 1 + d * d } else { d + 1 };
        self.tuning_f32.clear();
        self.tuning_f32.resize(tuning.len() * stride, 0.0);
        for (t, row) in tuning.iter().zip(self.tuning_f32.chunks_mut(stride)) {
            row[0] = t.step_size as f32;
            for i in 0..d {
                row[1 + i] = t.inv_mass[i] as f32;
            }
            if dense {
                let l = &mut row[1 + d..];
                if t.chol.is_empty() {
                    for i in 0..d {
                        l[i * d + i] = t.inv_mass[i].sqrt() as f32;
                    }
                } else {
                    l.iter_mut().zip(&t.chol).for_each(|(a, &v)| *a = v as f32);
                }
            }
        }
        self.params.dense = u32::from(dense);
        let bytes = (self.tuning_f32.len() * 4) as u64;
        if bytes > self.tuning_buf.size() {
            if bytes > self.ctx.limits.max_storage_buffer_binding_size {
                return Err(Error::DeviceLimit(format!(
                    "a dense metric of {d} dimensions for {} datasets needs {bytes} bytes of tuning storage, more than the adapter's binding limit (the diagonal metric, or the CPU backend)",
                    tuning.len()
                )));
            }
            self.tuning_buf = self.ctx.storage_init("tuning", &self.tuning_f32, false)?;
            self.bind()?;
        }
        self.ctx
            .queue
            .write_buffer(&self.tuning_buf, 0, bytemuck::cast_slice(&self.tuning_f32));
        Ok(())
    }
}

impl Integrator for GpuIntegrator {
    fn set_chain_offset(&mut self, offset: u32) {
        self.params.chain_offset = offset;
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn n_chains(&self) -> usize {
        self.n_chains
    }

    /// A dense metric's triangular products add about 1.5 D² + 3 D loop iterations per
    /// leapfrog step and D² / 2 + D per transition (`hmc_transition.wgsl`).
    fn step_cap(&self, metric: Metric) -> Option<u32> {
        let d = self.dim;
        self.step_loops.map(|base| {
            let (per_step, once) = match metric {
                Metric::Diag => (base, 4 * d + 8),
                Metric::Dense => (base + 2 * d * (d + 1) + 3 * d, d * (d + 1) + 5 * d + 8),
            };
            (60_000usize.saturating_sub(once) / per_step).max(1) as u32
        })
    }

    fn set_positions(&mut self, q: &[f64], logp: &mut [f64], grad: &mut [f64]) -> Result<()> {
        let d = self.dim;
        let mut st = vec![0.0f32; self.n_chains * (2 * d + 1)];
        for c in 0..self.n_chains {
            for i in 0..d {
                st[c * (2 * d + 1) + i] = q[c * d + i] as f32;
            }
        }
        self.ctx
            .queue
            .write_buffer(&self.state, 0, bytemuck::cast_slice(&st));
        let p = HmcParams {
            init: 1,
            max_steps: 0,
            ..self.params
        };
        self.ctx
            .queue
            .write_buffer(&self.params_bufs[0], 0, bytemuck::bytes_of(&p));
        self.ctx.scoped("hmc_transition init", || {
            let mut enc = self.ctx.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(&self.pipeline);
                pass.set_bind_group(0, &self.bind_groups[0], &[]);
                pass.dispatch_workgroups(self.groups.0, self.groups.1, 1);
            }
            self.ctx.queue.submit([enc.finish()]);
        })?;
        let st: Vec<f32> = self
            .ctx
            .read_back(&self.state, &self.staging, (st.len() * 4) as u64)?;
        for c in 0..self.n_chains {
            let row = &st[c * (2 * d + 1)..(c + 1) * (2 * d + 1)];
            logp[c] = f64::from(row[d]);
            for i in 0..d {
                grad[c * d + i] = f64::from(row[d + 1 + i]);
            }
        }
        Ok(())
    }

    fn step(&mut self, iter: u32, tuning: &[Tuning], out: &mut StepOut) -> Result<()> {
        self.upload_tuning(tuning)?;
        let steps = vec![tuning.iter().map(|t| t.n_steps).collect::<Vec<u32>>()];
        let raw = self.run_rows(iter, &steps)?;
        self.unpack(&raw, out);
        Ok(())
    }

    fn batch_len(&self) -> usize {
        self.bind_groups.len()
    }

    fn run_batch(
        &mut self,
        first_iter: u32,
        tuning: &[Tuning],
        steps: &[Vec<u32>],
        outs: &mut [StepOut],
    ) -> Result<()> {
        self.upload_tuning(tuning)?;
        let stride = self.n_chains * (3 * self.dim + 4);
        for (k, rows) in steps.chunks(self.batch_len()).enumerate() {
            let first = k * self.batch_len();
            let raw = self.run_rows(first_iter + first as u32, rows)?;
            for (r, out) in outs[first..first + rows.len()].iter_mut().enumerate() {
                self.unpack(&raw[r * stride..(r + 1) * stride], out);
            }
        }
        Ok(())
    }
}
