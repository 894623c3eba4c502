//! `gpsamp logp`: the log density and gradient of a model on a data file at given parameter
//! values, per dataset, on the chosen backend (to check a model against another tool's
//! log_prob).

use std::sync::Arc;

use anyhow::Context;
use gpsamp::Model;

use super::args::{DataArgs, ModelArgs};

/// Options of `gpsamp logp`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: DataArgs,
    /// Constrained parameter values, comma-separated, in the model's parameter order
    /// (default: equal weights, coefficients and intercepts at their prior means, scales 1).
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    params: Vec<f64>,
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

pub fn run(mut a: Args) -> anyhow::Result<()> {
    a.model.resolve()?;
    let data = Arc::new(a.data.load()?);
    let model = a.model.build(data.p())?;
    model
        .check_data(&data)
        .with_context(|| format!("{}", a.data.data.display()))?;
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
    let theta = model.unconstrain(&params).context("--params")?;
    let backend =
        super::args::select_backend(a.backend, a.json)?.with_precision(a.precision.into());
    let b = data.n_datasets();
    let d = model.dim();
    let mut eval = backend.evaluator(Arc::new(model.clone()), data.clone(), 1)?;
    let all: Vec<f64> = (0..b).flat_map(|_| theta.iter().copied()).collect();
    let (mut lp, mut g) = (vec![0.0; b], vec![0.0; b * d]);
    eval.eval(&all, &mut lp, &mut g)?;
    if a.json {
        let rows: Vec<_> = (0..b)
            .map(|i| serde_json::json!({"dataset": data.dataset_name(i), "points": data.range(i).len(), "logp": lp[i], "grad_unconstrained": &g[i * d..(i + 1) * d]}))
            .collect();
        let out = serde_json::json!({"model": model.name(), "backend": eval.backend(), "params": names.iter().zip(&params).map(|(n, v)| (n.clone(), *v)).collect::<std::collections::BTreeMap<_, _>>(), "datasets": rows});
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
    for (n, v) in names.iter().zip(&params) {
        outln!("  {n:<12} = {v}");
    }
    for i in 0..b {
        outln!(
            "dataset {}: {} points, log density {:.10e}",
            data.dataset_name(i),
            data.range(i).len(),
            lp[i]
        );
        outln!("  gradient (unconstrained): {:?}", &g[i * d..(i + 1) * d]);
    }
    Ok(())
}
