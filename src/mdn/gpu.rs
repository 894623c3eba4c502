//! The MDN on the GPU (`shaders/mdn.wgsl`): the training pairs stay resident, each minibatch
//! is two dispatches (per-sample gradient rows, then the ordered sum and the Adam step),
//! and up to [`SLOTS`] minibatches go in one submission; the host reads back only the
//! per-step losses and, at the end of an epoch, the weights.

use std::sync::Arc;

use super::{Shape, LV_BOUND};
use crate::device::GpuContext;
use crate::error::{Error, Result};

/// Minibatches per submission.
pub const SLOTS: usize = 32;

/// Uniform of one step. Must match `struct StepParams` in `shaders/mdn.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepParams {
    /// First index into the order of this minibatch.
    pub start: u32,
    /// Its size.
    pub n: u32,
    /// Where its loss sum goes.
    pub slot: u32,
    /// 1: take the Adam step.
    pub update: u32,
    /// lr sqrt(1 - b2^t) / (1 - b1^t).
    pub step_scale: f32,
    /// eps sqrt(1 - b2^t).
    pub eps_hat: f32,
    /// Adam beta1.
    pub beta1: f32,
    /// Adam beta2.
    pub beta2: f32,
    /// 1 / sum of the minibatch's weights.
    pub wscale: f32,
    /// Padding.
    pub _pad0: u32,
    /// Padding.
    pub _pad1: u32,
    /// Padding.
    pub _pad2: u32,
}

/// The shader with the network's sizes written in.
pub fn shader_source(shape: &Shape, max_batch: usize) -> String {
    let layers = shape.layers();
    let offs = shape.offsets();
    // act holds the input then every layer's output: offsets input, input + out_0, ...
    let mut acc = shape.input;
    let mut a = vec![0usize];
    for &(_, o) in &layers {
        a.push(acc);
        acc += o;
    }
    let dim_in: Vec<usize> = layers.iter().map(|l| l.0).collect();
    let dim_out: Vec<usize> = layers.iter().map(|l| l.1).collect();
    crate::shader::Wgsl::new()
        .u32("INPUT", shape.input)
        .u32("THETA", shape.theta)
        .u32("K", shape.k)
        .u32("HEAD", shape.head())
        .u32("N_LAYERS", layers.len())
        .u32("N_PARAMS", shape.n_params())
        .u32("WIDEST", shape.widest())
        .u32("TOTAL", acc)
        .f32("LV_BOUND", f64::from(LV_BOUND))
        .u32("MAX_BATCH", max_batch)
        .u32_table("DIM_IN", &dim_in)
        .u32_table("DIM_OUT", &dim_out)
        .u32_table("W_OFF", &offs[..layers.len()])
        .u32_table("A_OFF", &a)
        .part(crate::shader::MDN)
        .build()
}

/// Resident training state on a GPU.
pub struct GpuTrainer {
    ctx: Arc<GpuContext>,
    grad_pipe: wgpu::ComputePipeline,
    adam_pipe: wgpu::ComputePipeline,
    bind_groups: Vec<wgpu::BindGroup>,
    uniforms: Vec<wgpu::Buffer>,
    order: wgpu::Buffer,
    params: wgpu::Buffer,
    out: wgpu::Buffer,
    staging: wgpu::Buffer,
    n_params: usize,
    max_batch: usize,
    max_steps: usize,
    n_pairs: usize,
    /// The step count and settings; the moments live on the GPU.
    adam: super::Adam,
    // Kept alive for the bind groups.
    _bufs: [wgpu::Buffer; 3],
}

impl GpuTrainer {
    /// Uploads `data` (`n x (input + theta + 1)`: inputs, thetas, weight per pair) and the
    /// initial `params`; minibatches of at most `max_batch`, at most `max_steps` per run.
    pub fn new(
        ctx: Arc<GpuContext>,
        shape: &Shape,
        data: &[f32],
        params: &[f32],
        max_batch: usize,
        max_steps: usize,
    ) -> Result<Self> {
        let stride = shape.input + shape.theta + 1;
        let n_pairs = data.len() / stride;
        let n_params = shape.n_params();
        if max_batch * n_params * 4 > ctx.limits.max_storage_buffer_binding_size as usize {
            return Err(Error::DeviceLimit(format!(
                "--batch {max_batch}: the per-sample gradient rows would exceed a storage binding"
            )));
        }
        let src = shader_source(shape, max_batch);
        let layout = ctx.layout_for("mdn", &src)?;
        let grad_pipe = ctx.pipeline_entry("mdn grad_samples", &src, &layout, "grad_samples")?;
        let adam_pipe = ctx.pipeline_entry("mdn reduce_adam", &src, &layout, "reduce_adam")?;
        let data_buf = ctx.storage_init("mdn pairs", data, false)?;
        let order = ctx.storage("mdn order", (n_pairs.max(1) * 4) as u64, false)?;
        let params_buf = ctx.storage_init("mdn params", params, true)?;
        let rows = ctx.storage(
            "mdn gradient rows",
            (max_batch * n_params * 4) as u64,
            false,
        )?;
        let adam = ctx.storage_init("mdn adam", &vec![0.0f32; 2 * n_params], false)?;
        let out_len = n_params + max_batch + max_steps;
        let out = ctx.storage("mdn out", (out_len * 4) as u64, true)?;
        let staging = ctx.staging("mdn staging", (out_len * 4) as u64)?;
        let uniforms: Vec<wgpu::Buffer> = (0..SLOTS)
            .map(|_| ctx.uniform("mdn step", &StepParams::default()))
            .collect();
        let bind_groups = uniforms
            .iter()
            .map(|u| {
                ctx.bind_group(
                    "mdn",
                    &layout,
                    &[u, &data_buf, &order, &params_buf, &rows, &adam, &out],
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            ctx,
            grad_pipe,
            adam_pipe,
            bind_groups,
            uniforms,
            order,
            params: params_buf,
            out,
            staging,
            n_params,
            max_batch,
            max_steps,
            n_pairs,
            adam: super::Adam::new(0),
            _bufs: [data_buf, rows, adam],
        })
    }

    /// Sets the order in which pairs are taken (indices into the uploaded pairs).
    pub fn set_order(&mut self, order: &[u32]) {
        self.ctx
            .queue
            .write_buffer(&self.order, 0, bytemuck::cast_slice(order));
    }

    /// Runs minibatches `batches` (start in the order, size, 1 / weight sum), each with
    /// learning rate `lrs[i]` (None: gradients only, no update); returns each one's loss.
    pub fn run(&mut self, batches: &[(u32, u32, f32)], lrs: Option<&[f32]>) -> Result<Vec<f32>> {
        if batches.len() > self.max_steps {
            return Err(Error::Invalid("too many MDN steps in one run".into()));
        }
        let (b1, b2) = (self.adam.beta1, self.adam.beta2);
        for (g, group) in batches.chunks(SLOTS).enumerate() {
            for (r, &(start, n, wscale)) in group.iter().enumerate() {
                if n as usize > self.max_batch || (start + n) as usize > self.n_pairs {
                    return Err(Error::Invalid("MDN minibatch out of range".into()));
                }
                let step = g * SLOTS + r;
                let (update, scale, eps_hat) = match lrs {
                    Some(l) => {
                        self.adam.tick();
                        let (scale, eps_hat) = self.adam.scaled(l[step]);
                        (1, scale, eps_hat)
                    }
                    None => (0, 0.0, self.adam.eps),
                };
                let p = StepParams {
                    start,
                    n,
                    slot: step as u32,
                    update,
                    step_scale: scale,
                    eps_hat,
                    beta1: b1,
                    beta2: b2,
                    wscale,
                    _pad0: 0,
                    _pad1: 0,
                    _pad2: 0,
                };
                self.ctx
                    .queue
                    .write_buffer(&self.uniforms[r], 0, bytemuck::bytes_of(&p));
            }
            self.ctx.scoped("mdn step", || {
                let mut enc = self.ctx.device.create_command_encoder(&Default::default());
                for (r, &(_, n, _)) in group.iter().enumerate() {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    pass.set_bind_group(0, &self.bind_groups[r], &[]);
                    pass.set_pipeline(&self.grad_pipe);
                    let (x, y) = self.ctx.grid((n as usize).div_ceil(64) as u32);
                    pass.dispatch_workgroups(x, y, 1);
                    pass.set_pipeline(&self.adam_pipe);
                    let (x, y) = self.ctx.grid(self.n_params.div_ceil(64) as u32);
                    pass.dispatch_workgroups(x, y, 1);
                }
                self.ctx.queue.submit([enc.finish()]);
            })?;
        }
        // Only the steps' loss sums come back.
        self.read(&self.out, self.n_params + self.max_batch, batches.len())
    }

    /// `len` floats of `buf` from float `offset`, through the staging buffer.
    fn read(&self, buf: &wgpu::Buffer, offset: usize, len: usize) -> Result<Vec<f32>> {
        self.ctx.scoped("mdn read", || {
            let mut enc = self.ctx.device.create_command_encoder(&Default::default());
            enc.copy_buffer_to_buffer(buf, (offset * 4) as u64, &self.staging, 0, (len * 4) as u64);
            self.ctx.queue.submit([enc.finish()]);
        })?;
        self.ctx.map_read(&self.staging, (len * 4) as u64)
    }

    /// Gradient and per-sample losses of the last minibatch run (`n` samples).
    pub fn last_gradient(&self, n: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let mut all = self.read(&self.out, 0, self.n_params + n)?;
        let losses = all.split_off(self.n_params);
        Ok((all, losses))
    }

    /// The current weights.
    pub fn params(&self) -> Result<Vec<f32>> {
        self.read(&self.params, 0, self.n_params)
    }
}
