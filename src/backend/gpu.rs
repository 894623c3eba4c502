//! Batch log density + gradient on the GPU: data uploaded once, one pipeline, and every
//! chain of every dataset evaluated by one dispatch per chunk of chains (one chunk unless the
//! chains outgrow the storage-binding limit).

use std::sync::Arc;

use crate::backend::Evaluator;
use crate::data::DataBatch;
use crate::device::{choose_lanes, upload_data, GpuContext};
use crate::error::{Error, Result};
use crate::math::LOGP_NEG_INF;
use crate::model::Model;

/// Uniform parameters of `shaders/logp_batch.wgsl`. Must match `struct EvalParams` there
/// (a test checks the offsets and a GPU probe checks what the shader reads).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct EvalParams {
    /// Chains in this dispatch.
    pub n_chains: u32,
    /// Global index of the dispatch's first chain.
    pub chain_offset: u32,
    /// Chains per dataset (chain `c` belongs to dataset `c / chains_per_dataset`).
    pub chains_per_dataset: u32,
    /// Points over all datasets (the stride of an input column).
    pub n_total: u32,
    /// Workgroups along x (the grid is x by y within the per-dimension limit).
    pub groups_x: u32,
    /// Padding to 32 bytes.
    pub _pad0: u32,
    /// Padding.
    pub _pad1: u32,
    /// Padding.
    pub _pad2: u32,
}

struct Chunk {
    bind_group: wgpu::BindGroup,
    groups: (u32, u32),
}

/// The GPU batch evaluator (see the module docs).
pub struct GpuEvaluator {
    ctx: Arc<GpuContext>,
    pipeline: wgpu::ComputePipeline,
    chunks: Vec<Chunk>,
    theta: wgpu::Buffer,
    out: wgpu::Buffer,
    staging: wgpu::Buffer,
    theta_f32: Vec<f32>,
    constants: Vec<f64>,
    dim: usize,
    n_chains: usize,
    chains_per_dataset: usize,
    lanes: u32,
    // Kept alive for the bind groups.
    _scratch: wgpu::Buffer,
    _data: [wgpu::Buffer; 3],
    _params: Vec<wgpu::Buffer>,
}

impl GpuEvaluator {
    /// Uploads the data, builds the pipeline and the per-chunk bind groups. `lanes` (a power
    /// of two up to 64) overrides the default (`device::default_lanes`: more lanes for larger datasets).
    pub fn new(
        ctx: Arc<GpuContext>,
        model: &dyn Model,
        data: &DataBatch,
        chains_per_dataset: usize,
        lanes: Option<u32>,
    ) -> Result<Self> {
        model.check_data(data)?;
        crate::model::require_gpu_kernel(model)?;
        let device_data = model.device_data(data)?;
        let data = device_data.as_ref().unwrap_or(data);
        let dim = model.dim();
        let n_datasets = data.n_datasets();
        let n_chains = n_datasets * chains_per_dataset;
        if chains_per_dataset == 0 {
            return Err(Error::Invalid(
                "at least one chain per dataset is needed".into(),
            ));
        }
        if n_chains > u32::MAX as usize / 2 || data.n_total() > u32::MAX as usize / 2 {
            return Err(Error::DeviceLimit(
                "too many chains or points for one GPU batch".into(),
            ));
        }
        let lanes = choose_lanes(lanes, data, model.max_lanes())?;
        crate::device::check_loop_limit(&ctx, model, data, lanes)?;
        let source = crate::shader::logp_batch(&model.wgsl(), lanes);
        let name = format!("logp_batch[{}]", model.name());
        let layout = ctx.layout_for(&name, &source)?;
        let pipeline = ctx.pipeline(&name, &source, &layout)?;

        let [x, y, offsets] = upload_data(&ctx, data)?;

        // Chunk the chains so each binding fits the adapter's limit; chunk starts are
        // multiples of 64 chains so binding offsets stay 256-byte aligned.
        let max_bind = ctx.limits.max_storage_buffer_binding_size;
        let per_chain = ((dim + 1) * 4) as u64;
        let mut chunk_chains = ((max_bind / per_chain) / 64 * 64).max(64) as usize;
        let wpd = u64::from(ctx.limits.max_compute_workgroups_per_dimension);
        let max_groups = (wpd * wpd).min(u64::from(u32::MAX));
        chunk_chains = chunk_chains.min((max_groups * 64 / u64::from(lanes)) as usize / 64 * 64);
        // A model's scratch storage: one region per chunk of one buffer (chunks do not share).
        let scratch_per_chain = (model.device_scratch() * 4) as u64;
        if let Some(fit) = max_bind.checked_div(scratch_per_chain) {
            chunk_chains = chunk_chains.min((fit / 64 * 64) as usize);
            if chunk_chains == 0 {
                return Err(Error::DeviceLimit(format!(
                    "{}: 64 chains need {} bytes of scratch storage, more than the adapter's binding limit",
                    model.name(),
                    64 * scratch_per_chain
                )));
            }
        }
        let theta_bytes = (n_chains * dim * 4) as u64;
        let out_bytes = (n_chains * (dim + 1) * 4) as u64;
        if out_bytes > ctx.limits.max_buffer_size {
            return Err(Error::Gpu {
                context: "allocating chain buffers".into(),
                message: format!(
                    "{n_chains} chains need {out_bytes} bytes, more than the adapter's buffer limit"
                ),
            });
        }
        let buf = |label: &str, size: u64, usage: wgpu::BufferUsages| {
            ctx.scoped(label, || {
                ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: size.max(4),
                    usage,
                    mapped_at_creation: false,
                })
            })
        };
        use wgpu::BufferUsages as U;
        let theta = buf("theta", theta_bytes, U::STORAGE | U::COPY_DST)?;
        let out = buf("logp+grad", out_bytes, U::STORAGE | U::COPY_SRC)?;
        let staging = ctx.staging("logp+grad staging", out_bytes)?;
        let scratch_bytes = n_chains.div_ceil(64) as u64 * 64 * scratch_per_chain;
        if scratch_bytes > ctx.limits.max_buffer_size {
            return Err(Error::DeviceLimit(format!(
                "{n_chains} chains of {} need {scratch_bytes} bytes of scratch storage, more than the adapter's buffer limit",
                model.name()
            )));
        }
        let scratch = buf("model scratch", scratch_bytes, U::STORAGE)?;

        let mut chunks = Vec::new();
        let mut params_bufs = Vec::new();
        let mut first = 0usize;
        while first < n_chains {
            let n = chunk_chains.min(n_chains - first);
            let groups = ctx.grid((n * lanes as usize).div_ceil(64) as u32);
            let params = EvalParams {
                n_chains: n as u32,
                chain_offset: first as u32,
                chains_per_dataset: chains_per_dataset as u32,
                n_total: data.n_total() as u32,
                groups_x: groups.0,
                ..Default::default()
            };
            let pbuf = ctx.uniform("eval params", &params);
            let mut entries = vec![
                bind(0, &pbuf, 0, None),
                bind(1, &x, 0, None),
                bind(2, &y, 0, None),
                bind(3, &offsets, 0, None),
                bind(
                    4,
                    &theta,
                    (first * dim * 4) as u64,
                    Some((n * dim * 4) as u64),
                ),
                bind(
                    5,
                    &out,
                    (first * (dim + 1) * 4) as u64,
                    Some((n * (dim + 1) * 4) as u64),
                ),
            ];
            if scratch_per_chain > 0 {
                entries.push(bind(
                    crate::model::SCRATCH_BINDING,
                    &scratch,
                    first as u64 * scratch_per_chain,
                    Some(n as u64 * scratch_per_chain),
                ));
            }
            let bind_group = ctx.scoped("bind group", || {
                ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("logp_batch"),
                    layout: &layout,
                    entries: &entries,
                })
            })?;
            chunks.push(Chunk { bind_group, groups });
            params_bufs.push(pbuf);
            first += n;
        }
        let constants = (0..n_datasets).map(|b| model.constant(data, b)).collect();
        Ok(Self {
            ctx,
            pipeline,
            chunks,
            theta,
            out,
            staging,
            theta_f32: vec![0.0; n_chains * dim],
            constants,
            dim,
            n_chains,
            chains_per_dataset,
            lanes,
            _data: [x, y, offsets],
            _scratch: scratch,
            _params: params_bufs,
        })
    }

    /// Threads per chain in use.
    pub fn lanes(&self) -> u32 {
        self.lanes
    }

    /// Number of dispatches one evaluation uses.
    pub fn dispatches_per_eval(&self) -> usize {
        self.chunks.len()
    }

    /// Uploads positions (chains x D, converted to f32).
    pub fn upload(&mut self, theta: &[f64]) {
        for (d, s) in self.theta_f32.iter_mut().zip(theta) {
            *d = *s as f32;
        }
        self.ctx
            .queue
            .write_buffer(&self.theta, 0, bytemuck::cast_slice(&self.theta_f32));
    }

    /// Runs the evaluation `repeats` times on the resident positions, in one submission,
    /// and waits: the device-side cost of an evaluation without transfers.
    pub fn dispatch(&self, repeats: usize) -> Result<()> {
        self.ctx.scoped("logp_batch dispatch", || {
            let mut enc = self.ctx.device.create_command_encoder(&Default::default());
            for _ in 0..repeats {
                self.encode(&mut enc);
            }
            self.ctx.queue.submit([enc.finish()]);
        })?;
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu {
                context: "waiting for logp_batch".into(),
                message: e.to_string(),
            })?;
        Ok(())
    }

    fn encode(&self, enc: &mut wgpu::CommandEncoder) {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("logp_batch"),
            timestamp_writes: None,
        });
        pass.set_pipeline(&self.pipeline);
        for c in &self.chunks {
            pass.set_bind_group(0, &c.bind_group, &[]);
            pass.dispatch_workgroups(c.groups.0, c.groups.1, 1);
        }
    }
}

fn bind<'a>(
    binding: u32,
    buffer: &'a wgpu::Buffer,
    offset: u64,
    size: Option<u64>,
) -> wgpu::BindGroupEntry<'a> {
    wgpu::BindGroupEntry {
        binding,
        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer,
            offset,
            size: size.and_then(std::num::NonZeroU64::new),
        }),
    }
}

impl Evaluator for GpuEvaluator {
    fn dim(&self) -> usize {
        self.dim
    }

    fn n_chains(&self) -> usize {
        self.n_chains
    }

    fn backend(&self) -> String {
        format!("gpu ({})", self.ctx.summary.name)
    }

    fn eval(&mut self, theta: &[f64], logp: &mut [f64], grad: &mut [f64]) -> Result<()> {
        crate::backend::check_lengths(self, theta, logp, grad)?;
        self.upload(theta);
        let size = (self.n_chains * (self.dim + 1) * 4) as u64;
        let out: Vec<f32> = self
            .ctx
            .scoped("logp_batch", || {
                let mut enc = self.ctx.device.create_command_encoder(&Default::default());
                self.encode(&mut enc);
                enc.copy_buffer_to_buffer(&self.out, 0, &self.staging, 0, size);
                self.ctx.queue.submit([enc.finish()]);
            })
            .and_then(|()| self.ctx.map_read(&self.staging, size))?;
        let d = self.dim;
        for c in 0..self.n_chains {
            let row = &out[c * (d + 1)..(c + 1) * (d + 1)];
            let lp = f64::from(row[0]);
            logp[c] = if lp <= LOGP_NEG_INF {
                LOGP_NEG_INF
            } else {
                lp + self.constants[c / self.chains_per_dataset]
            };
            for (g, &v) in grad[c * d..(c + 1) * d].iter_mut().zip(&row[1..]) {
                *g = f64::from(v);
            }
        }
        Ok(())
    }
}
