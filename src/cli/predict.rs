//! `gpsamp predict`: posterior predictive draws and intervals for new inputs from a sample
//! folder (the model is rebuilt from its `meta.json`).

use std::path::PathBuf;

use anyhow::{bail, Context};
use gpsamp::io::output::OutputDir;
use gpsamp::workflow::predict::{predict_to_dir, read_inputs, Inputs};
use gpsamp::workflow::{read_sample_meta, ModelSpec};

/// Options of `gpsamp predict`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A folder written by `gpsamp sample` (glm, gmm or mixglm).
    #[arg(long)]
    fit: PathBuf,
    /// CSV with the fit's input columns (named as in the fit's data); other columns are
    /// ignored. A fit without inputs (gmm) takes --n instead.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Fits without inputs (gmm): how many new points to draw.
    #[arg(long, default_value_t = 1)]
    n: usize,
    /// Which dataset of a grouped fit (its --group key); required when the fit has several.
    #[arg(long)]
    dataset: Option<String>,
    /// Seed of the replicates' streams.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder (y_pred.npy, predictions.csv): created if missing; replaced only when
    /// it holds an earlier `gpsamp predict`, is empty, or with --force.
    #[arg(long)]
    out: PathBuf,
    /// Replace --out even when it is a folder gpsamp did not write.
    #[arg(long)]
    force: bool,
    /// Print nothing.
    #[arg(long)]
    quiet: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let inputs: Vec<&std::path::Path> = std::iter::once(a.fit.as_path())
        .chain(a.data.as_deref())
        .collect();
    let out = OutputDir::create("--out", &a.out, "predict", a.force, &inputs)?;
    let meta = read_sample_meta(&a.fit)?;
    let spec: ModelSpec = serde_json::from_value(meta["model_spec"].clone()).map_err(|_| {
        anyhow::anyhow!(
            "--fit {}: meta.json records no model settings (written by an older gpsamp, or by the library without SampleJob::model_spec); refit to predict",
            a.fit.display()
        )
    })?;
    if spec.is_hmm() {
        bail!("--fit {}: predict takes glm, gmm and mixglm fits; decode new sequences of an HMM with `gpsamp em --params --decode`", a.fit.display());
    }
    let x_names: Vec<String> =
        serde_json::from_value(meta["x_columns"].clone()).context("meta.json: x_columns")?;
    let model = spec.build_any(x_names.len())?;
    let groups: Vec<String> = serde_json::from_value(meta["groups"].clone()).unwrap_or_default();
    let dataset = match (&a.dataset, groups.len()) {
        (None, 0 | 1) => 0,
        (None, n) => bail!(
            "--dataset: the fit has {n} datasets; name one (e.g. --dataset {})",
            groups[0]
        ),
        (Some(key), _) => groups.iter().position(|g| g == key).ok_or_else(|| {
            anyhow::anyhow!(
                "--dataset {key}: no such dataset in the fit (its first: {})",
                groups
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?,
    };
    let new = match &a.data {
        Some(path) => read_inputs(path, &x_names)?,
        None if x_names.is_empty() => Inputs {
            n: a.n,
            ..Inputs::default()
        },
        None => bail!(
            "--data: the fit has inputs ({}); give a CSV with them",
            x_names.join(", ")
        ),
    };
    if new.n == 0 {
        bail!("--n must be at least 1");
    }
    let run = predict_to_dir(&a.fit, model, dataset, &new, a.seed, out.path())?;
    out.commit()?;
    if !a.quiet {
        outln!(
            "{} rows x {} draws; wrote {}/{{y_pred.npy, predictions.csv}}",
            run.rows.len(),
            run.shape[0] * run.shape[1],
            a.out.display()
        );
    }
    Ok(())
}
