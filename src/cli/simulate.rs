//! `gpsamp simulate`: datasets drawn from a model's prior, written as CSV (columns
//! `dataset,x0..,[system,]y`) with the true parameters as JSON beside it.

use gpsamp::rng::{host_rng, Purpose};

use super::args::{write_atomic, ModelArgs};

/// Options of `gpsamp simulate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Input columns to simulate (glm and mixglm), each standard normal.
    #[arg(long, default_value_t = 1)]
    features: usize,
    /// eiv shared: systems per dataset, each with its own b (a `system` column 0..S).
    #[arg(long)]
    systems: Option<usize>,
    /// Points per dataset.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Number of datasets.
    #[arg(long, default_value_t = 1)]
    datasets: usize,
    /// Seed; dataset i is drawn from (seed, i), so any dataset can be redrawn alone.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output CSV; the truth goes to the same path with `.truth.json`.
    #[arg(long)]
    out: std::path::PathBuf,
}

pub fn run(mut a: Args) -> anyhow::Result<()> {
    a.model.resolve()?;
    let p = match a.model.kind() {
        super::args::ModelKind::Gmm => 0,
        super::args::ModelKind::Eiv => a.model.w.len(),
        _ => a.features,
    };
    if a.systems.is_some() && a.model.kind() != super::args::ModelKind::Eiv {
        anyhow::bail!("--systems: only --model eiv pools systems");
    }
    a.model.systems = a.systems;
    let model = a.model.build_any(p)?;
    if a.n == 0 || a.datasets == 0 {
        anyhow::bail!("--n and --datasets must be at least 1");
    }
    let names = model.param_names();
    let mut csv = String::from("dataset");
    for j in 0..p {
        csv.push_str(&format!(",x{j}"));
    }
    if a.systems.is_some() {
        csv.push_str(",system");
    }
    csv.push_str(",y\n");
    let mut truths = Vec::new();
    for b in 0..a.datasets {
        let mut rng = host_rng(a.seed, b as u64, Purpose::Simulate);
        let (theta, d) = model.simulate(a.n, &mut rng);
        for i in 0..d.len() {
            csv.push_str(&b.to_string());
            for col in &d.x {
                csv.push_str(&format!(",{}", col[i]));
            }
            csv.push_str(&format!(",{}\n", d.y[i]));
        }
        let values = model.constrain(&theta);
        truths.push(
            names
                .iter()
                .cloned()
                .zip(values)
                .collect::<std::collections::BTreeMap<_, _>>(),
        );
    }
    write_atomic(&a.out, csv.as_bytes())?;
    let truth_path = a.out.with_extension("truth.json");
    let meta =
        serde_json::json!({"model": model.name(), "seed": a.seed, "n": a.n, "truth": truths});
    write_atomic(&truth_path, serde_json::to_string_pretty(&meta)?.as_bytes())?;
    eprintln!(
        "wrote {} ({} dataset(s) x {} points) and {}",
        a.out.display(),
        a.datasets,
        a.n,
        truth_path.display()
    );
    Ok(())
}
