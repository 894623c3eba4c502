//! `gpsamp study`: recovery and power studies at chosen values, from a grid of parameter
//! values and sample sizes (replicate datasets simulated per cell) or from the user's own
//! datasets with their truths; the same batching, sharding and `merge` as `gpsamp sbc`.

use std::path::{Path, PathBuf};

use gpsamp::io::csv::CsvSpec;
use gpsamp::io::output::OutputDir;
use gpsamp::study::design::{read_given, read_grid};
use gpsamp::study::{Design, Study};

use super::args::{ModelArgs, ModelKind};
use super::sbc::{run_study, RunArgs, STUDY};

/// Options of `gpsamp study`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Grid file: a CSV with a column per chosen parameter (named as in summary.csv:
    /// `beta[0]`, `sigma`) and optionally `n` (points per dataset), one row per cell.
    /// Parameters it does not name are drawn from the prior for each replicate.
    #[arg(
        long,
        required_unless_present = "datasets",
        conflicts_with = "datasets"
    )]
    grid: Option<PathBuf>,
    /// Datasets simulated per cell of --grid.
    #[arg(long, default_value_t = 100)]
    replicates: usize,
    /// Points per dataset of grid cells without an n column.
    #[arg(long, default_value_t = 100)]
    n: usize,
    /// Input columns of each simulated dataset (glm and mixglm), each standard normal.
    #[arg(long, default_value_t = 1)]
    features: usize,
    /// The user's simulated datasets: a CSV whose --group column names each dataset; the
    /// truths are in --truth. Datasets with equal truths and sizes form a cell.
    #[arg(long, requires_all = ["group", "truth"])]
    datasets: Option<PathBuf>,
    /// --datasets: input columns, comma-separated.
    #[arg(long, value_delimiter = ',')]
    x: Vec<String>,
    /// --datasets: response column.
    #[arg(long, default_value = "y")]
    y: String,
    /// --datasets: the column naming each dataset (in the data and the truth file).
    #[arg(long)]
    group: Option<String>,
    /// --datasets: a CSV with the --group column and one column per parameter of the
    /// model, one row per dataset.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// The value whose exclusion by a replicate's 95% interval counts as a detection in
    /// the power column (per quantity).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    null: f64,
    #[command(flatten)]
    run: RunArgs,
}

pub fn run(mut a: Args) -> anyhow::Result<()> {
    a.model.resolve()?;
    a.model.builtin_only("study")?;
    if a.model.spec().is_hmm() {
        anyhow::bail!("--model: studies at chosen values take glm, gmm, mixglm and eiv; hmm and glmhmm studies run from the prior with `gpsamp sbc`");
    }
    let inputs: Vec<&Path> = [&a.model.model_file, &a.grid, &a.datasets, &a.truth]
        .into_iter()
        .filter_map(|p| p.as_deref())
        .collect();
    let out = OutputDir::create("--out", &a.run.out, STUDY, a.run.force, &inputs)?;
    if !a.null.is_finite() {
        anyhow::bail!("--null must be a finite number");
    }
    let (design, given, p) = match (&a.grid, &a.datasets) {
        (Some(grid), _) => {
            if a.replicates == 0 {
                anyhow::bail!("--replicates must be at least 1");
            }
            let p = match a.model.kind() {
                ModelKind::Gmm => 0,
                ModelKind::Eiv => a.model.w.len(),
                _ => a.features,
            };
            let names = a.model.build_simulated(p)?.param_names();
            let cells = read_grid(grid, &names, a.n)?;
            let design = Design::Grid {
                cells,
                replicates: a.replicates,
                null: a.null,
            };
            (design, None, p)
        }
        (None, Some(data)) => {
            let spec = CsvSpec {
                x: a.x.clone(),
                y: a.y.clone(),
                group: a.group.clone(),
            };
            let names = a.model.build_simulated(a.x.len())?.param_names();
            let truth = a.truth.as_deref().expect("clap requires --truth");
            let (design, given) = read_given(data, &spec, truth, &names, a.null)?;
            (design, Some(std::sync::Arc::new(given)), a.x.len())
        }
        (None, None) => unreachable!("clap requires --grid or --datasets"),
    };
    let model = a.model.build_simulated(p)?;
    let study = Study {
        generator: model.clone(),
        fit: model,
        points: a.n,
        datasets: design.datasets().unwrap_or(0),
        config: a.run.config()?,
        batch: 1,
        alpha: 0.001,
        design,
        given,
    };
    run_study(study, &a.run, out, "study")?;
    Ok(())
}
