//! `gpsamp logp`: the log density and gradient of a model on a data file at given parameter
//! values, per dataset, on the chosen backend (to check a model against another tool's
//! log_prob); HMMs and GLM-HMMs read sequence data and take their parameters from a JSON
//! file too, and a Stan program (`--stan`) its data file as `sample --stan` does.

use std::sync::Arc;

use anyhow::Context;
use gpsamp::Model;

use super::args::{DataArgs, ModelArgs, ModelKind};

/// Options of `gpsamp logp`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: DataArgs,
    /// Constrained parameter values, comma-separated, in the model's parameter order
    /// (default: equal weights, coefficients and intercepts at their prior means, scales 1;
    /// hmm/glmhmm and Stan programs have no default: give these or, for an HMM,
    /// --params-file; a Stan program takes its `parameters` block's values in CmdStan's
    /// order, without transformed parameters).
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    params: Vec<f64>,
    /// hmm/glmhmm: parameters as JSON (`gpsamp em`'s params.json, one set per dataset or one
    /// for all, or a truth file of `gpsamp simulate`).
    #[arg(long, conflicts_with = "params")]
    params_file: Option<std::path::PathBuf>,
    /// hmm/glmhmm: sequence id column.
    #[arg(long, default_value = "seq")]
    seq: String,
    /// hmm/glmhmm: time column.
    #[arg(long, default_value = "t")]
    t: String,
    /// Backend: auto, gpu or cpu.
    #[arg(long, value_enum, default_value = "auto")]
    backend: super::args::BackendArg,
    /// Arithmetic of the CPU backend (f32: single precision on twice the SIMD lanes, sums
    /// in f64; glm, gmm and mixglm only). The GPU computes in f32 either way.
    #[arg(long, value_enum, default_value = "f64")]
    precision: super::args::PrecisionArg,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// A model, its data, and the constrained parameter values for each dataset.
type Setup = (Arc<dyn Model>, Arc<gpsamp::DataBatch>, Vec<Vec<f64>>);

/// The model, data and (constrained) parameter values of each dataset of an HMM `logp`.
fn hmm_setup(a: &Args) -> anyhow::Result<Setup> {
    let ys: Vec<String> = a.data.y.split(',').map(|s| s.trim().to_string()).collect();
    let spec = gpsamp::hmm::io::SeqSpec {
        seq: a.seq.clone(),
        t: a.t.clone(),
        x: a.data.x.clone(),
        y: ys.clone(),
        group: a.data.group.clone(),
        binary: a.model.kind() == ModelKind::Glmhmm
            && a.model.emission == super::args::Emission::Bernoulli,
    };
    let sd = gpsamp::hmm::io::read_sequences(&a.data.data, &spec)?;
    let hmm = a.model.build_hmm(a.data.x.len(), ys.len())?;
    let b = sd.batch.n_datasets();
    let params = match &a.params_file {
        Some(path) => {
            let sets = super::em::read_hmm_params("--params-file", path, hmm.spec())?;
            if sets.len() != 1 && sets.len() != b {
                anyhow::bail!(
                    "--params-file {}: {} parameter sets for {b} datasets",
                    path.display(),
                    sets.len()
                );
            }
            (0..b)
                .map(|i| {
                    let th = hmm.theta(&sets[i.min(sets.len() - 1)])?;
                    Ok(hmm.constrain(&th))
                })
                .collect::<anyhow::Result<Vec<_>>>()?
        }
        None if a.params.is_empty() => anyhow::bail!(
            "--params: an HMM has no default parameters; give --params (in the order {}) or --params-file params.json",
            hmm.param_names().join(", ")
        ),
        None => vec![a.params.clone(); b],
    };
    Ok((Arc::new(hmm), Arc::new(sd.batch), params))
}

/// The program, its (placeholder) batch and the parameter values of a Stan `logp`.
fn stan_setup(a: &Args, program: &std::path::Path) -> anyhow::Result<(Setup, Vec<String>)> {
    if a.params_file.is_some() {
        anyhow::bail!("--params-file: for hmm/glmhmm; give --params for a Stan program");
    }
    let m = gpsamp::stan::StanModel::from_files(program, Some(&a.data.data))?;
    let names = m.parameter_names();
    if a.params.len() != names.len() {
        anyhow::bail!(
            "--params: {} value(s); the program's parameters are {} ({} values, CmdStan's order: first index fastest)",
            a.params.len(),
            names.join(", "),
            names.len()
        );
    }
    let data = Arc::new(gpsamp::stan::placeholder_data());
    Ok(((Arc::new(m), data, vec![a.params.clone()]), names))
}

pub fn run(mut a: Args) -> anyhow::Result<()> {
    a.model.resolve()?;
    let mut stan_names = None;
    let (model, data, per_dataset): Setup = if let Some(program) = a.model.stan.clone() {
        let (setup, names) = stan_setup(&a, &program)?;
        stan_names = Some(names);
        setup
    } else if a.model.is_hmm() {
        hmm_setup(&a)?
    } else {
        if a.params_file.is_some() {
            anyhow::bail!("--params-file: for hmm/glmhmm; give --params for this model");
        }
        let data = Arc::new(a.data.load()?);
        let model = a.model.build(data.p())?;
        let names = model.param_names();
        let params = if a.params.is_empty() {
            let pr = model.priors();
            let k = model.components();
            names
                .iter()
                .map(|n| {
                    if n.starts_with("weights") {
                        1.0 / k as f64
                    } else if n.starts_with("sigma") {
                        1.0
                    } else if n.starts_with("beta") {
                        pr.coef.mean
                    } else {
                        pr.intercept.mean
                    }
                })
                .collect()
        } else {
            a.params.clone()
        };
        let b = data.n_datasets();
        (Arc::new(model) as Arc<dyn Model>, data, vec![params; b])
    };
    model
        .check_data(&data)
        .with_context(|| format!("{}", a.data.data.display()))?;
    // A Stan program's data is its own: no datasets of points to count.
    let stan = stan_names.is_some();
    let names = stan_names.unwrap_or_else(|| model.param_names());
    let theta = per_dataset
        .iter()
        .map(|p| model.unconstrain(p))
        .collect::<gpsamp::Result<Vec<_>>>()
        .context("--params")?;
    let backend =
        super::args::select_backend(a.backend, a.json)?.with_precision(a.precision.into());
    let b = data.n_datasets();
    let d = model.dim();
    let mut eval = backend.evaluator(model.clone(), data.clone(), 1)?;
    let all: Vec<f64> = theta.iter().flatten().copied().collect();
    let (mut lp, mut g) = (vec![0.0; b], vec![0.0; b * d]);
    eval.eval(&all, &mut lp, &mut g)?;
    if a.json {
        let rows: Vec<_> = (0..b)
            .map(|i| {
                let mut row = serde_json::json!({"dataset": data.dataset_name(i), "points": data.range(i).len(), "logp": lp[i], "grad_unconstrained": &g[i * d..(i + 1) * d]});
                if stan {
                    row["dataset"] = serde_json::json!(a.data.data.display().to_string());
                    row.as_object_mut().map(|r| r.remove("points"));
                }
                row
            })
            .collect();
        let out = serde_json::json!({"model": model.name(), "backend": eval.backend(), "params": names.iter().zip(&per_dataset[0]).map(|(n, v)| (n.clone(), *v)).collect::<std::collections::BTreeMap<_, _>>(), "datasets": rows});
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    outln!(
        "model {} on {} ({} dataset(s)), backend {}",
        model.name(),
        a.data.data.display(),
        b,
        eval.backend()
    );
    for (n, v) in names.iter().zip(&per_dataset[0]) {
        outln!("  {n:<12} = {v}");
    }
    for i in 0..b {
        if stan {
            outln!("log density {:.10e}", lp[i]);
        } else {
            outln!(
                "dataset {}: {} points, log density {:.10e}",
                data.dataset_name(i),
                data.range(i).len(),
                lp[i]
            );
        }
        outln!("  gradient (unconstrained): {:?}", &g[i * d..(i + 1) * d]);
    }
    Ok(())
}
