//! The device runtime, the bottom layer: wgpu adapter choice, a device with the adapter's
//! real limits, buffer helpers, data uploads, the threads-per-chain choice, and wgpu errors
//! turned into [`Error`]s. It knows nothing of models or engines; the backends, model
//! families and engines above build on it.

use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use crate::data::DataBatch;
use crate::error::{Error, Result};

/// What `gpsamp devices` shows of an adapter.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterSummary {
    /// Adapter name, e.g. "NVIDIA H100" or "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub name: String,
    /// Graphics API backend (Vulkan, Metal, Dx12, Gl).
    pub backend: String,
    /// Discrete, integrated, virtual or CPU (lavapipe is a CPU device).
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
    /// Largest storage buffer binding, bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer, bytes.
    pub max_buffer_size: u64,
    /// Workgroups per dispatch dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// Workgroup memory, bytes.
    pub max_compute_workgroup_storage_size: u32,
    /// Threads per workgroup.
    pub max_compute_invocations_per_workgroup: u32,
}

impl AdapterSummary {
    fn new(info: &wgpu::AdapterInfo, limits: &wgpu::Limits) -> Self {
        Self {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
        }
    }
}

/// The backends to search: `WGPU_BACKEND` (vulkan, metal, dx12, gl) when set, else the
/// primary ones (Vulkan, Metal, DX12); OpenGL compute is a last resort one asks for by name.
fn backends() -> wgpu::Backends {
    wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY)
}

fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends();
    wgpu::Instance::new(desc)
}

/// Lists every adapter wgpu can see.
pub fn list_adapters() -> Vec<AdapterSummary> {
    let instance = instance();
    pollster::block_on(instance.enumerate_adapters(backends()))
        .iter()
        .map(|a| AdapterSummary::new(&a.get_info(), &a.limits()))
        .collect()
}

/// A GPU device and queue with the adapter's full limits; build once, share everywhere.
pub struct GpuContext {
    /// The adapter's description.
    pub summary: AdapterSummary,
    /// The device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// The limits the device was created with (the adapter's own).
    pub limits: wgpu::Limits,
    /// wgpu errors raised outside an error scope, reported by the next [`GpuContext::scoped`].
    uncaptured: Arc<Mutex<Vec<String>>>,
}

impl GpuContext {
    /// Picks an adapter (by `WGPU_ADAPTER_NAME` if set, else the high-performance default,
    /// within `WGPU_BACKEND` if set) and creates a device with its real limits.
    pub fn new() -> Result<Arc<Self>> {
        let instance = instance();
        let adapter = match std::env::var("WGPU_ADAPTER_NAME") {
            Ok(want) if !want.is_empty() => {
                let want_lc = want.to_lowercase();
                pollster::block_on(instance.enumerate_adapters(backends()))
                    .into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&want_lc))
                    .ok_or_else(|| {
                        Error::NoAdapter(format!(" whose name contains WGPU_ADAPTER_NAME={want:?}"))
                    })?
            }
            _ => pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            }))
            .map_err(|e| Error::NoAdapter(format!(" ({e})")))?,
        };
        let limits = adapter.limits();
        let summary = AdapterSummary::new(&adapter.get_info(), &limits);
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("gpsamp"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::default(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::Device(e.to_string()))?;
        // Errors outside an error scope would otherwise panic; every gpsamp operation runs
        // inside a scope, so anything arriving here is kept and reported by the next
        // [`GpuContext::scoped`] call as its error.
        let uncaptured: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        Ok(Arc::new(Self {
            summary,
            device,
            queue,
            limits,
            uncaptured,
        }))
    }

    /// Runs `f` inside validation and out-of-memory error scopes and returns the first
    /// error wgpu reports as [`Error::Gpu`].
    pub fn scoped<T>(&self, context: &str, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let v = pollster::block_on(val.pop());
        let o = pollster::block_on(oom.pop());
        let stray =
            self.uncaptured.lock().ok().and_then(|mut u| {
                (!u.is_empty()).then(|| u.drain(..).collect::<Vec<_>>().join("; "))
            });
        match (v.or(o), stray) {
            (Some(e), _) => Err(Error::Gpu {
                context: context.into(),
                message: e.to_string(),
            }),
            (None, Some(m)) => Err(Error::Gpu {
                context: format!("{context} (an error raised outside a scope)"),
                message: m,
            }),
            (None, None) => Ok(out),
        }
    }

    /// Compiles a compute shader (validated by naga first, so errors name the shader).
    pub fn pipeline(
        &self,
        name: &str,
        source: &str,
        layout: &wgpu::BindGroupLayout,
    ) -> Result<wgpu::ComputePipeline> {
        self.pipeline_entry(name, source, layout, "main")
    }

    /// [`GpuContext::pipeline`] for the entry point `entry`.
    pub fn pipeline_entry(
        &self,
        name: &str,
        source: &str,
        layout: &wgpu::BindGroupLayout,
        entry: &str,
    ) -> Result<wgpu::ComputePipeline> {
        crate::shader::validate(name, source)?;
        self.scoped(name, || {
            let module = self
                .device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(name),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                });
            let pl = self
                .device
                .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some(name),
                    bind_group_layouts: &[Some(layout)],
                    immediate_size: 0,
                });
            self.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(name),
                    layout: Some(&pl),
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: Default::default(),
                    cache: None,
                })
        })
    }

    /// The bind group layout kernel `source` declares (group 0: its uniform and storage
    /// buffers, read-only or read-write as the WGSL says), read from the naga module; `name`
    /// names the shader in errors.
    pub fn layout_for(&self, name: &str, source: &str) -> Result<wgpu::BindGroupLayout> {
        let module = crate::shader::validate(name, source)?;
        let entries: Vec<wgpu::BindGroupLayoutEntry> = crate::shader::bindings(&module)
            .into_iter()
            .map(|(b, kind)| {
                entry(
                    b,
                    match kind {
                        crate::shader::Binding::Uniform => wgpu::BufferBindingType::Uniform,
                        crate::shader::Binding::StorageRead => {
                            wgpu::BufferBindingType::Storage { read_only: true }
                        }
                        crate::shader::Binding::StorageReadWrite => {
                            wgpu::BufferBindingType::Storage { read_only: false }
                        }
                    },
                )
            })
            .collect();
        Ok(self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(name),
                entries: &entries,
            }))
    }

    /// A bind group binding whole `buffers` to bindings 0, 1, 2, ... of `layout`.
    pub fn bind_group(
        &self,
        label: &str,
        layout: &wgpu::BindGroupLayout,
        buffers: &[&wgpu::Buffer],
    ) -> Result<wgpu::BindGroup> {
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        self.scoped(label, || {
            self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(label),
                layout,
                entries: &entries,
            })
        })
    }

    /// A storage buffer holding `data` (at least 4 bytes, so empty data can still bind).
    pub fn storage_init<T: bytemuck::Pod>(
        &self,
        label: &str,
        data: &[T],
        copy_src: bool,
    ) -> Result<wgpu::Buffer> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        self.check_binding(label, bytes.len() as u64)?;
        let pad = [0u8; 4];
        let contents = if bytes.is_empty() { &pad[..] } else { bytes };
        let mut usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
        if copy_src {
            usage |= wgpu::BufferUsages::COPY_SRC;
        }
        self.scoped(label, || {
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents,
                    usage,
                })
        })
    }

    /// An uninitialised storage buffer of `size` bytes.
    pub fn storage(&self, label: &str, size: u64, copy_src: bool) -> Result<wgpu::Buffer> {
        self.check_binding(label, size)?;
        let mut usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
        if copy_src {
            usage |= wgpu::BufferUsages::COPY_SRC;
        }
        self.scoped(label, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: size.max(4),
                usage,
                mapped_at_creation: false,
            })
        })
    }

    /// A buffer the host can map for reading.
    pub fn staging(&self, label: &str, size: u64) -> Result<wgpu::Buffer> {
        self.scoped(label, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: size.max(4),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })
    }

    /// A uniform buffer holding `value`.
    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::bytes_of(value),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            })
    }

    fn check_binding(&self, label: &str, size: u64) -> Result<()> {
        if size > self.limits.max_storage_buffer_binding_size || size > self.limits.max_buffer_size
        {
            return Err(Error::Gpu {
                context: label.into(),
                message: format!(
                    "{size} bytes exceed the adapter's storage binding limit of {} bytes",
                    self.limits
                        .max_storage_buffer_binding_size
                        .min(self.limits.max_buffer_size)
                ),
            });
        }
        Ok(())
    }

    /// Copies `size` bytes of `src` into `staging`, waits, and returns them as `T`s.
    pub fn read_back<T: bytemuck::Pod>(
        &self,
        src: &wgpu::Buffer,
        staging: &wgpu::Buffer,
        size: u64,
    ) -> Result<Vec<T>> {
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(src, 0, staging, 0, size);
        self.queue.submit([enc.finish()]);
        self.map_read(staging, size)
    }

    /// Maps the first `size` bytes of a staging buffer after all submitted work, copies them
    /// out and unmaps.
    pub fn map_read<T: bytemuck::Pod>(&self, staging: &wgpu::Buffer, size: u64) -> Result<Vec<T>> {
        let (tx, rx) = std::sync::mpsc::channel();
        let slice = staging.slice(..size);
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu {
                context: "waiting for the GPU".into(),
                message: e.to_string(),
            })?;
        rx.recv()
            .map_err(|e| Error::Gpu {
                context: "mapping a buffer".into(),
                message: e.to_string(),
            })?
            .map_err(|e| Error::Gpu {
                context: "mapping a buffer".into(),
                message: e.to_string(),
            })?;
        let out = {
            let view = slice.get_mapped_range().map_err(|e| Error::Gpu {
                context: "reading a mapped buffer".into(),
                message: e.to_string(),
            })?;
            bytemuck::cast_slice::<u8, T>(&view).to_vec()
        };
        staging.unmap();
        Ok(out)
    }

    /// Splits `groups` workgroups over x and y within the per-dimension limit.
    pub fn grid(&self, groups: u32) -> (u32, u32) {
        let max = self.limits.max_compute_workgroups_per_dimension.max(1);
        if groups <= max {
            (groups.max(1), 1)
        } else {
            let y = groups.div_ceil(max);
            (groups.div_ceil(y), y)
        }
    }
}

fn entry(binding: u32, ty: wgpu::BufferBindingType) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

/// Threads per chain for a mean dataset size: enough lanes to keep each one busy with about
/// 16 or more points, at most a workgroup.
pub fn default_lanes(mean_points: usize) -> u32 {
    let mut lanes = 1u32;
    while lanes < 64 && (lanes as usize * 2) * 16 <= mean_points {
        lanes *= 2;
    }
    lanes
}

/// Loop iterations a software adapter (lavapipe) runs in one shader invocation before it
/// silently ends it, keeping what it had.
pub const SOFTWARE_LOOP_LIMIT: usize = 65_535;

/// On a software adapter, the loop iterations one evaluation of `model` runs on `data`
/// (its longest dataset, at `lanes` threads per chain): an error when they pass
/// [`SOFTWARE_LOOP_LIMIT`], since the adapter would return a wrong log density without a
/// word (the interpreted kernel of a program with tens of thousands of operations).
pub fn check_loop_limit(
    ctx: &GpuContext,
    model: &dyn crate::model::Model,
    data: &DataBatch,
    lanes: u32,
) -> Result<usize> {
    let longest = (0..data.n_datasets())
        .map(|b| model.device_loop_iterations(data, b, lanes))
        .max()
        .unwrap_or(1)
        .max(1);
    if ctx.summary.device_type == "Cpu" && longest >= SOFTWARE_LOOP_LIMIT {
        return Err(Error::DeviceLimit(format!(
            "{}: one evaluation runs {longest} loop iterations in the shader, and the software adapter {} stops an invocation after {SOFTWARE_LOOP_LIMIT} (a hardware GPU, or the CPU backend)",
            model.name(),
            ctx.summary.name
        )));
    }
    Ok(longest)
}

/// Threads per chain: `lanes` if given (a power of two up to 64), else [`default_lanes`] for
/// `data`; at most `max_lanes` (1 for a model whose points depend on each other in order).
pub fn choose_lanes(lanes: Option<u32>, data: &DataBatch, max_lanes: u32) -> Result<u32> {
    let lanes = lanes.unwrap_or_else(|| default_lanes(data.n_total() / data.n_datasets()));
    let lanes = lanes.min(max_lanes.max(1));
    if !lanes.is_power_of_two() || lanes > 64 {
        return Err(Error::Invalid(format!(
            "lanes must be a power of two up to 64, got {lanes}"
        )));
    }
    Ok(lanes)
}

/// Uploads a batch's inputs, responses (as f32) and offsets: bindings 1, 2, 3 of the
/// density kernels.
pub fn upload_data(ctx: &GpuContext, data: &DataBatch) -> Result<[wgpu::Buffer; 3]> {
    if data.n_total() > u32::MAX as usize / 2 {
        return Err(Error::DeviceLimit(
            "too many points for one GPU batch".into(),
        ));
    }
    let to_f32 = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
    let x = ctx.storage_init("data x", &to_f32(data.x()), false)?;
    let y = ctx.storage_init("data y", &to_f32(data.y()), false)?;
    let offsets: Vec<u32> = data.offsets().iter().map(|&o| o as u32).collect();
    let offsets = ctx.storage_init("offsets", &offsets, false)?;
    Ok([x, y, offsets])
}
