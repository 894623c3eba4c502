//! The library without the CLI: a 1 024-chain fit of the tutorial's linear regression and a
//! 1 000-dataset simulation study of the Gaussian GLM, each written to the folder that
//! `gpsamp sample` and `gpsamp sbc` write for the same settings, through the public API
//! only. `cargo run --release --example workflow [OUT]` (default `workflow-out`);
//! `tests/workflow_example.rs` runs it and compares its folders with the CLI's.

use std::path::Path;
use std::sync::Arc;

use gpsamp::hmc::Config;
use gpsamp::io::output::OutputDir;
use gpsamp::study::{default_batch, Study};
use gpsamp::workflow::{sample_to_dir, study_to_dir, SampleJob, STUDY};
use gpsamp::{Backend, BackendKind, DataBatch, Likelihood, MixGlm, Model, Priors};

/// Writes `out/fit` and `out/study` on `backend`.
pub fn run(out: &Path, backend: &Backend) -> Result<(), Box<dyn std::error::Error>> {
    // 1. The tutorial's regression (y = 0.5 x + 5 + N(0, 2^2), N = 1 000), 1 024 chains.
    let model = MixGlm::glm(Likelihood::Gaussian, 1, Priors::default())?;
    let sim = gpsamp::tutorial::for_model(&model, 1).ok_or("no tutorial data")?;
    let mut data = DataBatch::new(1, std::slice::from_ref(&sim.data))?;
    data.x_names = vec!["x0".into()];
    let job = SampleJob {
        config: Config {
            chains: 1024,
            warmup: 200,
            draws: 100,
            seed: 1,
            superchain_size: 4,
            ..Config::default()
        },
        source: format!("simulated: {}", sim.description),
        truth: Some(sim.truth.clone()),
        plots: true,
        // As the CLI does by default (here 1 024 x 100 x 1 000 values: over the limit, so
        // none, and a note says why).
        log_lik: Some(gpsamp::workflow::LOG_LIK_AUTO_LIMIT),
        ..SampleJob::default()
    };
    let dir = OutputDir::create("out", &out.join("fit"), "sample", false, &[])?;
    let fit = sample_to_dir(
        Arc::new(model),
        Arc::new(data),
        backend,
        &job,
        dir.path(),
        &mut |_, _, _, _| {},
    )?;
    dir.commit()?;
    for row in &fit.summaries[0] {
        println!(
            "{:<8} mean {:>8.4}  sd {:>7.4}  ess_bulk {:>7.0}  r_hat {:.4}",
            row.param, row.mean, row.sd, row.ess_bulk, row.r_hat
        );
    }
    for w in &fit.warnings {
        eprintln!("warning: {w}");
    }

    // 2. Simulation-based calibration over 1 000 datasets drawn from the GLM's prior.
    let glm: Arc<dyn Model> = Arc::new(MixGlm::glm(Likelihood::Gaussian, 1, Priors::default())?);
    let study = Study {
        generator: glm.clone(),
        fit: glm,
        points: 100,
        datasets: 1000,
        config: Config {
            chains: 4,
            warmup: 300,
            draws: 300,
            seed: 0,
            superchain_size: 1,
            ..Config::default()
        },
        batch: default_batch(backend, 4),
        alpha: 0.001,
        design: gpsamp::study::Design::Prior,
        given: None,
    };
    let dir = OutputDir::create("out", &out.join("study"), STUDY, false, &[])?;
    let run = study_to_dir(
        &study,
        0..study.datasets,
        None,
        backend,
        dir.path(),
        &mut |_, _| {},
    )?;
    dir.commit()?;
    println!(
        "{} datasets in {:.1} s: {}",
        run.datasets,
        run.seconds,
        if run.report.pass {
            "calibrated"
        } else {
            "NOT calibrated"
        }
    );
    Ok(())
}

#[allow(dead_code)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "workflow-out".into());
    run(Path::new(&out), &Backend::select(BackendKind::Auto)?)
}
