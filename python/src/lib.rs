//! `gpsamp._gpsamp`: the library's workflow functions for the Python package
//! (`python/gpsamp`), which turns the folders they write into ArviZ InferenceData and pandas
//! DataFrames. Nothing here decides a default or checks data: the workflow layer and the
//! model settings ([`gpsamp::workflow::ModelSpec`]) do, as for the CLI.
//!
//! Each job runs on a worker thread with the GIL released; the calling thread wakes every
//! 50 ms to run Python's signal handlers (Ctrl-C cancels the job through
//! [`gpsamp::Config::cancel`] and raises `KeyboardInterrupt`) and to hand the progress to a
//! Python callback. Library errors become `ValueError` (bad data, with column and row; bad
//! settings, with the keyword), `OSError`, `RuntimeError` (the GPU) or `KeyboardInterrupt`.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gpsamp::hmm::io::{read_sequences_table, SeqSpec};
use gpsamp::io::output::OutputDir;
use gpsamp::io::{read_table, Column, CsvSpec, Table};
use gpsamp::workflow::{self, ModelSpec, SampleJob};
use gpsamp::{Backend, BackendKind, Config, DataBatch, Model, Precision};
use numpy::PyReadonlyArray1;
use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// A keyword as Python spells it, from the CLI flag a library error names (`--prior-sigma`
/// → `prior_sigma`).
fn keyword(flag: &str) -> String {
    flag.trim_start_matches("--").replace('-', "_")
}

/// The Python exception for a library error.
fn py_err(e: gpsamp::Error) -> PyErr {
    use gpsamp::Error as E;
    match e {
        E::Interrupted => PyKeyboardInterrupt::new_err("gpsamp: interrupted"),
        E::Config { flag, message } => {
            PyValueError::new_err(format!("{}: {message}", keyword(&flag)))
        }
        E::Output { flag, path, reason } => {
            PyValueError::new_err(format!("{} {}: {reason}", keyword(&flag), path.display()))
        }
        E::Io { .. } => PyOSError::new_err(e.to_string()),
        E::NoAdapter(_) | E::Device(_) | E::Gpu { .. } | E::Shader { .. } => {
            PyRuntimeError::new_err(e.to_string())
        }
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// A column handed over by Python: a float64 array (borrowed, not copied) or text cells.
enum Cells<'py> {
    Numbers(PyReadonlyArray1<'py, f64>),
    Text(Vec<String>),
}

/// The columns of `data` (a dict of name → float64 array or list of str, made by the Python
/// package from a DataFrame or dict).
fn cells<'py>(data: &Bound<'py, PyDict>) -> PyResult<Vec<(String, Cells<'py>)>> {
    data.iter()
        .map(|(k, v)| {
            let name: String = k.extract()?;
            let c = match v.extract::<PyReadonlyArray1<'py, f64>>() {
                Ok(a) => Cells::Numbers(a),
                Err(_) => Cells::Text(v.extract::<Vec<String>>().map_err(|_| {
                    PyValueError::new_err(format!(
                        "column {name:?}: neither float64 numbers nor text"
                    ))
                })?),
            };
            Ok((name, c))
        })
        .collect()
}

/// The library's table over the borrowed columns.
fn table<'a>(cols: &'a [(String, Cells<'_>)]) -> PyResult<Table<'a>> {
    let columns = cols
        .iter()
        .map(|(name, c)| {
            let col = match c {
                Cells::Numbers(a) => match a.as_slice() {
                    Ok(s) => Column::Numbers(Cow::Borrowed(s)),
                    Err(_) => Column::Numbers(Cow::Owned(a.as_array().to_vec())),
                },
                Cells::Text(t) => Column::Text(t.clone()),
            };
            (name.clone(), col)
        })
        .collect();
    Table::new(columns).map_err(py_err)
}

/// The backend `backend` ("auto", "cpu", "gpu") names, at `precision` ("f32", "f64"), and
/// the note saying what `auto` chose.
fn backend(
    backend: &str,
    precision: &str,
    chains: Option<usize>,
) -> PyResult<(Backend, Option<String>)> {
    let kind = match backend {
        "auto" => BackendKind::Auto,
        "cpu" => BackendKind::Cpu,
        "gpu" => BackendKind::Gpu,
        other => {
            return Err(PyValueError::new_err(format!(
                "backend: {other:?} is not auto, cpu or gpu"
            )))
        }
    };
    let precision = match precision {
        "f32" => Precision::F32,
        "f64" => Precision::F64,
        other => {
            return Err(PyValueError::new_err(format!(
                "precision: {other:?} is not f32 or f64"
            )))
        }
    };
    let (b, note) = match chains {
        Some(c) => Backend::select_for_chains(kind, c),
        None => Backend::select_noted(kind),
    }
    .map_err(py_err)?;
    Ok((b.with_precision(precision), note))
}

/// What a worker reports: phase, iterations done, iterations in the phase.
#[derive(Clone, Default)]
struct Status {
    phase: String,
    done: usize,
    total: usize,
}

/// Runs `work` on a worker thread with the GIL released. Every 50 ms the caller runs Python's
/// signal handlers (a `KeyboardInterrupt` sets `cancel`, waits for the worker to stop, and is
/// raised) and calls `progress(phase, done, total)` with the worker's [`Status`].
fn run_cancellable<T: Send>(
    py: Python<'_>,
    progress: Option<&Bound<'_, PyAny>>,
    cancel: &AtomicBool,
    status: &Mutex<Status>,
    work: impl FnOnce() -> gpsamp::Result<T> + Send,
) -> PyResult<T> {
    std::thread::scope(|s| {
        let worker = s.spawn(work);
        let mut shown = (String::new(), usize::MAX);
        while !worker.is_finished() {
            py.detach(|| std::thread::sleep(Duration::from_millis(50)));
            if let Err(e) = py.check_signals() {
                cancel.store(true, Ordering::Relaxed);
                let _ = py.detach(|| worker.join());
                return Err(e);
            }
            if let Some(cb) = progress {
                let st = status.lock().map(|g| g.clone()).unwrap_or_default();
                if (st.phase.clone(), st.done) != shown && !st.phase.is_empty() {
                    shown = (st.phase.clone(), st.done);
                    if let Err(e) = cb.call1((st.phase, st.done, st.total)) {
                        cancel.store(true, Ordering::Relaxed);
                        let _ = py.detach(|| worker.join());
                        return Err(e);
                    }
                }
            }
        }
        match py.detach(|| worker.join()) {
            Ok(r) => r.map_err(py_err),
            Err(_) => Err(PyRuntimeError::new_err(
                "gpsamp: the worker thread panicked (a bug: please report it)",
            )),
        }
    })
}

/// Sets the status from a worker's progress callback.
fn report(status: &Mutex<Status>, phase: &str, done: usize, total: usize) {
    if let Ok(mut s) = status.lock() {
        if s.phase != phase {
            s.phase = phase.to_string();
        }
        s.done = done;
        s.total = total;
    }
}

/// An output folder under the CLI's policy (DESIGN §12): created, or replacing only an
/// earlier output of the same command; `None` for `out=None` callers is not offered, the
/// Python package passes a path inside a temporary folder it owns.
fn output(out: &Path, command: &str) -> PyResult<OutputDir> {
    OutputDir::create("--out", out, command, false, &[]).map_err(py_err)
}

/// The table or sequence data a model reads, with the model built for its columns and the
/// HMM starting points when the chains start from an EM fit.
struct Prepared {
    model: Arc<dyn Model>,
    data: DataBatch,
    init_centers: Vec<Vec<f64>>,
}

#[allow(clippy::too_many_arguments)]
fn prepare(
    spec: &ModelSpec,
    tab: &Table<'_>,
    x: &[String],
    y: &[String],
    group: Option<String>,
    seq: &str,
    t: &str,
    init: &str,
    seed: u64,
) -> gpsamp::Result<Prepared> {
    let em_init = match init {
        "auto" => spec.is_hmm(),
        "random" => false,
        "em" if spec.is_hmm() => true,
        "em" => {
            return Err(gpsamp::Error::Config {
                flag: "--init".into(),
                message: "em: only hmm/glmhmm have an EM fit to start from".into(),
            })
        }
        other => {
            return Err(gpsamp::Error::Config {
                flag: "--init".into(),
                message: format!("{other:?} is not auto, random or em"),
            })
        }
    };
    if spec.is_hmm() {
        let hmm = spec.build_hmm(x.len(), y.len())?;
        let sd = read_sequences_table(
            tab,
            &SeqSpec {
                seq: seq.into(),
                t: t.into(),
                x: x.to_vec(),
                y: y.to_vec(),
                group,
                binary: hmm.spec().kind == gpsamp::hmm::EmissionKind::Bernoulli,
            },
        )?;
        let init_centers = if em_init {
            workflow::em_init_centers(&hmm, &sd.batch, spec.stickiness, seed)?
        } else {
            Vec::new()
        };
        return Ok(Prepared {
            model: Arc::new(hmm),
            data: sd.batch,
            init_centers,
        });
    }
    let [y] = y else {
        return Err(gpsamp::Error::Config {
            flag: "--y".into(),
            message: format!("{} takes one response column, got {}", spec.family, y.len()),
        });
    };
    let data = read_table(
        tab,
        &CsvSpec {
            x: x.to_vec(),
            y: y.clone(),
            group,
        },
    )?;
    let model = spec.build_any(data.p())?;
    model.check_data(&data)?;
    Ok(Prepared {
        model,
        data,
        init_centers: Vec::new(),
    })
}

/// Ensemble HMC of a model on a table, written to the folder `out` as `gpsamp sample` writes
/// it (plus `log_lik.npy` when it holds at most `log_lik` values); returns the run's `meta.json`, warnings and notes
/// as JSON.
#[pyfunction]
#[pyo3(signature = (model, data, x, y, out, *, group=None, seq="seq".to_string(), t="t".to_string(),
    chains=4, warmup=None, draws=1000, thin=1, seed=0, target_accept=None, target_ess=None,
    superchain_size=None, init_steps=200, max_steps=1024, init="auto".to_string(),
    metric="diag".to_string(), keep=Vec::new(), backend="auto".to_string(),
    precision="f32".to_string(), log_lik=None, plots=false, y_rep=false, progress=None))]
#[allow(clippy::too_many_arguments)]
fn sample(
    py: Python<'_>,
    model: &str,
    data: &Bound<'_, PyDict>,
    x: Vec<String>,
    y: Vec<String>,
    out: PathBuf,
    group: Option<String>,
    seq: String,
    t: String,
    chains: usize,
    warmup: Option<usize>,
    draws: usize,
    thin: usize,
    seed: u64,
    target_accept: Option<f64>,
    target_ess: Option<f64>,
    superchain_size: Option<usize>,
    init_steps: usize,
    max_steps: u32,
    init: String,
    metric: String,
    keep: Vec<String>,
    backend: String,
    precision: String,
    log_lik: Option<u64>,
    plots: bool,
    y_rep: bool,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<String> {
    let spec = ModelSpec::from_json(model).map_err(py_err)?;
    let cols = cells(data)?;
    let tab = table(&cols)?;
    let p = prepare(&spec, &tab, &x, &y, group.clone(), &seq, &t, &init, seed).map_err(py_err)?;
    drop(tab);
    drop(cols);
    let (backend, note) = self::backend(&backend, &precision, Some(p.data.n_datasets() * chains))?;
    let cancel = Arc::new(AtomicBool::new(false));
    let cfg = Config {
        cancel: Some(cancel.clone()),
        chains,
        warmup: warmup.unwrap_or(1000),
        adaptive_warmup: warmup.is_none(),
        target_ess,
        draws,
        thin,
        seed,
        target_accept,
        superchain_size: superchain_size.unwrap_or(workflow::default_superchain(chains)),
        init_steps,
        max_steps,
        metric: parse_metric(&metric)?,
        init_radius: if p.init_centers.is_empty() { 2.0 } else { 0.5 },
        init_centers: p.init_centers,
        ..Config::default()
    };
    cfg.validate().map_err(py_err)?;
    let job = SampleJob {
        config: cfg,
        keep,
        keep_partial: false,
        source: "python".into(),
        truth: None,
        group_column: group,
        log_lik,
        plots,
        y_rep,
        model_spec: Some(spec.clone()),
    };
    let dir = output(&out, "sample")?;
    let status = Mutex::new(Status::default());
    let (model, data) = (p.model, Arc::new(p.data));
    let run = run_cancellable(py, progress.as_ref(), &cancel, &status, || {
        workflow::sample_to_dir(
            model,
            data,
            &backend,
            &job,
            dir.path(),
            &mut |phase, i, n, _| report(&status, phase, i, n),
        )
    })?;
    dir.commit().map_err(py_err)?;
    let v = serde_json::json!({
        "meta": run.meta,
        "warnings": run.warnings,
        "notes": run.notes.iter().cloned().chain(note).collect::<Vec<_>>(),
    });
    Ok(v.to_string())
}

/// The `metric` keyword: the inverse mass matrix warmup adapts.
fn parse_metric(metric: &str) -> PyResult<gpsamp::hmc::Metric> {
    match metric {
        "diag" => Ok(gpsamp::hmc::Metric::Diag),
        "dense" => Ok(gpsamp::hmc::Metric::Dense),
        other => Err(PyValueError::new_err(format!(
            "metric: {other:?} is not one of diag, dense"
        ))),
    }
}

/// A simulation-based calibration study of a built-in family, written to the folder `out`
/// as `gpsamp sbc` writes it; returns its `meta.json` and the number of datasets as JSON.
#[pyfunction]
#[pyo3(signature = (model, out, *, features=1, n=100, datasets=1000, chains_per_dataset=4,
    warmup=None, draws=500, seed=0, batch=None, alpha=0.001, backend="auto".to_string(),
    precision="f32".to_string(), progress=None, grid_columns=Vec::new(), grid_rows=Vec::new(),
    replicates=100, null=0.0, metric="diag".to_string()))]
#[allow(clippy::too_many_arguments)]
fn sbc(
    py: Python<'_>,
    model: &str,
    out: PathBuf,
    features: usize,
    n: usize,
    datasets: usize,
    chains_per_dataset: usize,
    warmup: Option<usize>,
    draws: usize,
    seed: u64,
    batch: Option<usize>,
    alpha: f64,
    backend: String,
    precision: String,
    progress: Option<Bound<'_, PyAny>>,
    grid_columns: Vec<String>,
    grid_rows: Vec<Vec<f64>>,
    replicates: usize,
    null: f64,
    metric: String,
) -> PyResult<String> {
    use gpsamp::workflow::spec::ModelKind;
    let spec = ModelSpec::from_json(model).map_err(py_err)?;
    let p = match spec.model {
        ModelKind::Gmm => 0,
        ModelKind::Eiv => spec.w.len(),
        _ => features,
    };
    let model = spec.build_simulated(p).map_err(py_err)?;
    let (backend, _) = self::backend(&backend, &precision, None)?;
    let backend = backend.for_model(model.as_ref());
    let cancel = Arc::new(AtomicBool::new(false));
    // A study at chosen values: one cell per row of the grid (an `n` column sets its size).
    let design = if grid_columns.is_empty() {
        gpsamp::study::Design::Prior
    } else {
        if replicates == 0 {
            return Err(PyValueError::new_err("replicates: must be at least 1"));
        }
        let cells = grid_rows
            .iter()
            .enumerate()
            .map(|(r, row)| {
                let mut cell = gpsamp::study::Cell {
                    values: Vec::new(),
                    n,
                };
                for (name, &v) in grid_columns.iter().zip(row) {
                    if name == "n" {
                        cell.n = gpsamp::study::design::cell_points(v).map_err(|m| {
                            PyValueError::new_err(format!("grid: row {r}, column \"n\": {m}"))
                        })?;
                    } else {
                        cell.values.push((name.clone(), v));
                    }
                }
                Ok(cell)
            })
            .collect::<PyResult<Vec<_>>>()?;
        gpsamp::study::Design::Grid {
            cells,
            replicates,
            null,
        }
    };
    let datasets = design.datasets().unwrap_or(datasets);
    let study = gpsamp::Study {
        generator: model.clone(),
        fit: model,
        points: n,
        datasets,
        config: Config {
            chains: chains_per_dataset,
            warmup: warmup.unwrap_or(500),
            adaptive_warmup: warmup.is_none(),
            draws,
            seed,
            superchain_size: workflow::default_superchain(chains_per_dataset),
            cancel: Some(cancel.clone()),
            metric: parse_metric(&metric)?,
            ..Config::default()
        },
        batch: batch.unwrap_or_else(|| gpsamp::study::default_batch(&backend, chains_per_dataset)),
        alpha,
        design,
        given: None,
    };
    study.validate().map_err(py_err)?;
    let dir = output(&out, workflow::STUDY)?;
    let status = Mutex::new(Status::default());
    let run = run_cancellable(py, progress.as_ref(), &cancel, &status, || {
        workflow::study_to_dir(
            &study,
            0..datasets,
            None,
            &backend,
            dir.path(),
            &mut |i, n| report(&status, "datasets", i, n),
        )
    })?;
    dir.commit().map_err(py_err)?;
    Ok(serde_json::json!({"meta": run.meta, "datasets": run.datasets}).to_string())
}

/// Batched EM of an HMM or GLM-HMM on sequences, written to the folder `out` as `gpsamp em`
/// writes it (`params.json`, `states.csv`, `posteriors.npy`); returns `params.json` and the
/// held-out scores as JSON. EM is not cancellable mid-run: Ctrl-C is raised when it ends.
#[pyfunction]
#[pyo3(signature = (model, data, x, y, out, *, seq="seq".to_string(), t="t".to_string(),
    group=None, restarts=10, max_iters=200, tol=1e-6, init=None, concentration=1.1,
    coef_sd=10.0, var_floor=1e-4, holdout=0, seed=0, backend="auto".to_string(),
    progress=None))]
#[allow(clippy::too_many_arguments)]
fn em(
    py: Python<'_>,
    model: &str,
    data: &Bound<'_, PyDict>,
    x: Vec<String>,
    y: Vec<String>,
    out: PathBuf,
    seq: String,
    t: String,
    group: Option<String>,
    restarts: usize,
    max_iters: usize,
    tol: f64,
    init: Option<String>,
    concentration: f64,
    coef_sd: f64,
    var_floor: f64,
    holdout: usize,
    seed: u64,
    backend: String,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<String> {
    use gpsamp::hmm::em::{EmConfig, EmPriors, Init};
    use gpsamp::hmm::EmissionKind;
    let spec = ModelSpec::from_json(model).map_err(py_err)?;
    let hmm = spec.hmm_spec(x.len(), y.len()).map_err(py_err)?;
    let bernoulli = hmm.kind == EmissionKind::Bernoulli;
    let cfg = EmConfig {
        restarts,
        max_iters,
        tol,
        var_floor,
        priors: EmPriors {
            initial: concentration,
            transition: concentration,
            stickiness: spec.stickiness,
            coef_sd,
            ..EmPriors::default()
        },
        init: match init.as_deref() {
            Some("kmeans") if bernoulli => {
                return Err(PyValueError::new_err(
                    "init: kmeans needs Gaussian emissions; use init=\"random\"",
                ))
            }
            Some("kmeans") => Init::Kmeans,
            Some("random") => Init::Random,
            None if bernoulli => Init::Random,
            None => Init::Kmeans,
            Some(other) => {
                return Err(PyValueError::new_err(format!(
                    "init: {other:?} is not kmeans or random"
                )))
            }
        },
        seed,
    };
    cfg.validate().map_err(py_err)?;
    let cols = cells(data)?;
    let tab = table(&cols)?;
    let all = read_sequences_table(
        &tab,
        &SeqSpec {
            seq,
            t,
            x,
            y,
            group,
            binary: bernoulli,
        },
    )
    .map_err(py_err)?;
    drop(tab);
    drop(cols);
    let (train, test) = if holdout > 0 {
        let (tr, te) = all.split_holdout(holdout).map_err(py_err)?;
        (tr, Some(te))
    } else {
        (all, None)
    };
    let (backend, _) = self::backend(&backend, "f32", None)?;
    let job = workflow::EmJob {
        spec: hmm,
        config: cfg,
        truth: None,
        source: "python".into(),
        plots: false,
    };
    let total = train.batch.n_datasets() * restarts * max_iters;
    let dir = output(&out, "em")?;
    let status = Mutex::new(Status::default());
    let done = std::sync::atomic::AtomicUsize::new(0);
    let cancel = AtomicBool::new(false);
    let run = run_cancellable(py, progress.as_ref(), &cancel, &status, || {
        workflow::em_to_dir(&train, test.as_ref(), &backend, &job, dir.path(), &|n| {
            let d = done.fetch_add(n as usize, Ordering::Relaxed) + n as usize;
            report(&status, "EM job-iterations", d, total);
        })
    })?;
    dir.commit().map_err(py_err)?;
    let v = serde_json::json!({
        "params": run.params_json,
        "heldout": run.heldout,
        "seconds": run.seconds,
        "groups": train.groups,
    });
    Ok(v.to_string())
}

/// Trains a mixture density network on pairs from a built-in simulator (`beta-binomial`,
/// `gamma-poisson`, with `prior` and `trials`) or given (`theta`, `y`: row-major, `theta_dim`
/// and `y_dim` per pair), written to the folder `out` as `gpsamp mdn train` writes it;
/// returns the training summary as JSON. Training is not cancellable mid-run: Ctrl-C is
/// raised when it ends.
#[pyfunction]
#[pyo3(signature = (out, *, simulator="beta-binomial".to_string(), prior=Vec::new(),
    trials=100.0, sims=1_000_000, theta=None, y=None, theta_dim=1, y_dim=1, components=8,
    hidden=vec![24, 25, 16], epochs=20, batch=512, lr=3e-3, val_frac=0.05, patience=0,
    grouped=false, seed=0, eval_y=Vec::new(), backend="auto".to_string(), progress=None))]
#[allow(clippy::too_many_arguments)]
fn mdn_train(
    py: Python<'_>,
    out: PathBuf,
    simulator: String,
    prior: Vec<f64>,
    trials: f64,
    sims: usize,
    theta: Option<Vec<f64>>,
    y: Option<Vec<f64>>,
    theta_dim: usize,
    y_dim: usize,
    components: usize,
    hidden: Vec<usize>,
    epochs: usize,
    batch: usize,
    lr: f64,
    val_frac: f64,
    patience: usize,
    grouped: bool,
    seed: u64,
    eval_y: Vec<f64>,
    backend: String,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<String> {
    use gpsamp::mdn::sim::Simulator;
    use gpsamp::mdn::train::TrainConfig;
    use gpsamp::workflow::{MdnJob, Pairs};
    let (pairs, source) = match (theta, y) {
        (Some(theta), Some(y)) => (
            Pairs::Given {
                theta,
                y,
                theta_dim,
                y_dim,
            },
            "python".to_string(),
        ),
        (None, None) => {
            let sim = Simulator::from_settings(&simulator, &prior, trials)
                .map_err(py_err)?
                .ok_or_else(|| {
                    PyValueError::new_err("simulator: give theta= and y= for pairs of your own")
                })?;
            (
                Pairs::Simulate {
                    simulator: sim,
                    sims,
                    seed,
                },
                simulator,
            )
        }
        _ => {
            return Err(PyValueError::new_err(
                "theta, y: give both (pairs of your own) or neither (a built-in simulator)",
            ))
        }
    };
    let job = MdnJob {
        pairs,
        hidden,
        components,
        config: TrainConfig {
            epochs,
            batch,
            lr,
            val_frac,
            patience,
            grouped,
            seed,
        },
        source,
        eval_y,
    };
    let (backend, _) = self::backend(&backend, "f32", None)?;
    let dir = output(&out, "mdn-train")?;
    let status = Mutex::new(Status::default());
    let cancel = AtomicBool::new(false);
    let run = run_cancellable(py, progress.as_ref(), &cancel, &status, || {
        workflow::train_to_dir(&job, &backend, dir.path(), &mut |s| {
            report(&status, "epochs", s.epoch, epochs)
        })
    })?;
    dir.commit().map_err(py_err)?;
    let t = &run.trained;
    Ok(serde_json::json!({
        "pairs": run.pairs,
        "simulation_seconds": run.simulation_seconds,
        "training_seconds": run.training_seconds,
        "best_epoch": t.best_epoch,
        "history": t.history,
        "accuracy": run.accuracy,
    })
    .to_string())
}

/// The posterior mixtures an MDN (a folder written by `mdn train`, or its `model.json`)
/// gives for the observations `y` (`input` values each), as JSON: a list of
/// `{weights, means, sds}`.
#[pyfunction]
fn mdn_predict(model: PathBuf, y: Vec<f64>) -> PyResult<String> {
    let path = if model.is_dir() {
        model.join("model.json")
    } else {
        model
    };
    let m = gpsamp::mdn::train::MdnModel::load(&path).map_err(py_err)?;
    let mixes = m.predict_checked(&y).map_err(py_err)?;
    serde_json::to_string(&serde_json::json!({"input": m.shape.input, "mixtures": mixes}))
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// The GPU adapters wgpu sees, as JSON (name, backend, device type, driver, limits).
#[pyfunction]
fn devices() -> PyResult<String> {
    serde_json::to_string(&gpsamp::backend::list_adapters())
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// The extension module.
#[pymodule]
fn _gpsamp(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sample, m)?)?;
    m.add_function(wrap_pyfunction!(sbc, m)?)?;
    m.add_function(wrap_pyfunction!(em, m)?)?;
    m.add_function(wrap_pyfunction!(mdn_train, m)?)?;
    m.add_function(wrap_pyfunction!(mdn_predict, m)?)?;
    m.add_function(wrap_pyfunction!(devices, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
