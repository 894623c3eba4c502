//! `gpsamp devices`: the adapters wgpu sees.

use gpsamp::backend::list_adapters;

/// Options of `gpsamp devices`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let adapters = list_adapters();
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&adapters)?);
        return Ok(());
    }
    if adapters.is_empty() {
        outln!("no GPU adapters found: the CPU backend will be used (on Debian/Ubuntu, `apt-get install mesa-vulkan-drivers` adds the lavapipe software adapter)");
        return Ok(());
    }
    for (i, s) in adapters.iter().enumerate() {
        outln!("[{i}] {} ({}, {})", s.name, s.backend, s.device_type);
        outln!("    driver:                          {}", s.driver);
        outln!(
            "    max storage buffer binding:      {} MiB",
            s.max_storage_buffer_binding_size >> 20
        );
        outln!(
            "    max buffer size:                 {} MiB",
            s.max_buffer_size >> 20
        );
        outln!(
            "    max workgroups per dimension:    {}",
            s.max_compute_workgroups_per_dimension
        );
        outln!(
            "    workgroup memory:                {} KiB",
            s.max_compute_workgroup_storage_size >> 10
        );
        outln!(
            "    invocations per workgroup:       {}",
            s.max_compute_invocations_per_workgroup
        );
    }
    Ok(())
}
