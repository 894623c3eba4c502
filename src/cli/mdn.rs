//! `gpsamp mdn train|predict|eval`: amortised posteriors with a mixture density network.

use std::path::PathBuf;

use anyhow::bail;
use gpsamp::mdn::eval::{accuracy, coverage, Accuracy};
use gpsamp::mdn::sim::{read_pairs, Simulator};
use gpsamp::mdn::train::{MdnModel, TrainConfig};
use gpsamp::workflow::mdn::default_eval_y;
use gpsamp::workflow::{train_to_dir, MdnJob, Pairs};

use gpsamp::io::output::OutputDir;

/// Subcommands of `gpsamp mdn`.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Simulate (theta, y) pairs (or read them) and train an MDN on them.
    Train(TrainArgs),
    /// Print the posterior mixture for given y values.
    Predict(PredictArgs),
    /// Accuracy against the exact posterior and coverage over fresh simulations.
    Eval(EvalArgs),
}

/// Options of `gpsamp mdn train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// beta-binomial, gamma-poisson, or csv:FILE (with --theta-cols and --y-cols).
    #[arg(long, default_value = "beta-binomial")]
    simulator: String,
    /// Prior: A,B for Beta(A, B), or SHAPE,RATE for Gamma(SHAPE, rate RATE).
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    prior: Vec<f64>,
    /// Binomial trials n (beta-binomial) or Poisson exposure (gamma-poisson).
    #[arg(long, default_value_t = 100.0)]
    trials: f64,
    /// Simulated pairs.
    #[arg(long, default_value_t = 1_000_000)]
    sims: usize,
    /// csv: theta columns.
    #[arg(long, value_delimiter = ',', default_value = "theta")]
    theta_cols: Vec<String>,
    /// csv: input (y) columns.
    #[arg(long, value_delimiter = ',', default_value = "y")]
    y_cols: Vec<String>,
    /// Mixture components K.
    #[arg(long, default_value_t = 8)]
    components: usize,
    /// Hidden layer sizes (ReLU).
    #[arg(long, value_delimiter = ',', default_value = "24,25,16")]
    hidden: Vec<usize>,
    /// Passes over the pairs.
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// Minibatch size.
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// Initial learning rate (cosine decay to 1%).
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    /// Share of pairs held out for validation and early stopping.
    #[arg(long, default_value_t = 0.05)]
    val_frac: f64,
    /// Early stopping: epochs without a better validation loss before stopping (0: train
    /// all epochs; the best epoch's weights are kept either way).
    #[arg(long, default_value_t = 0)]
    patience: usize,
    /// The notebook's grouped loss: one term per distinct y (each pair weighted by 1 /
    /// count of its y), so rare y values count as much as common ones.
    #[arg(long)]
    grouped: bool,
    /// Seed of the simulations, weights and shuffles.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Backend: auto, gpu or cpu.
    #[arg(long, value_enum, default_value = "auto")]
    backend: super::args::BackendArg,
    /// y values for the accuracy table and figure (built-in simulators).
    #[arg(long, value_delimiter = ',')]
    eval_y: Vec<f64>,
    /// Output folder: model.json, training.json, and for built-in simulators accuracy.csv
    /// and density.svg. Created if missing; replaced only when it holds an earlier
    /// `gpsamp mdn train` output (or is empty, or with --force).
    #[arg(long)]
    out: PathBuf,
    /// Replace --out even when it is a folder gpsamp did not write (never the working
    /// directory, a folder above it, or a folder holding the input).
    #[arg(long)]
    force: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Options of `gpsamp mdn predict`.
#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// Folder written by `mdn train`.
    #[arg(long)]
    model: PathBuf,
    /// y values (one input each; for inputs of dimension D give D values per y, in order).
    #[arg(
        long,
        value_delimiter = ',',
        allow_hyphen_values = true,
        required = true
    )]
    y: Vec<f64>,
    /// JSON: a list of {y, weights, means, sds}.
    #[arg(long)]
    json: bool,
}

/// Options of `gpsamp mdn eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Folder written by `mdn train`.
    #[arg(long)]
    model: PathBuf,
    /// y values for TV and KL against the exact posterior.
    #[arg(long, value_delimiter = ',')]
    y: Vec<f64>,
    /// Fresh simulations for the coverage of central 50/80/95% intervals.
    #[arg(long, default_value_t = 2000)]
    coverage_sims: usize,
    /// Seed of the fresh simulations (kept apart from training's).
    #[arg(long, default_value_t = 1_000_003)]
    seed: u64,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

/// Parses `--simulator` with `--prior` and `--trials`.
fn simulator(a: &TrainArgs) -> anyhow::Result<Option<Simulator>> {
    Ok(Simulator::from_settings(&a.simulator, &a.prior, a.trials)?)
}

fn print_accuracy(acc: &[Accuracy]) -> anyhow::Result<()> {
    outln!(
        "{:>8} {:>9} {:>9} {:>11} {:>11}",
        "y",
        "TV",
        "KL",
        "exact mean",
        "MDN mean"
    );
    for a in acc {
        outln!(
            "{:>8} {:>9.4} {:>9.4} {:>11.4} {:>11.4}",
            a.y,
            a.tv,
            a.kl,
            a.exact_mean,
            a.mdn_mean
        );
    }
    Ok(())
}

pub fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Train(a) => run_train(a),
        Command::Predict(a) => run_predict(a),
        Command::Eval(a) => run_eval(a),
    }
}

fn run_train(a: TrainArgs) -> anyhow::Result<()> {
    let csv = a.simulator.strip_prefix("csv:").map(std::path::Path::new);
    let inputs: Vec<&std::path::Path> = csv.into_iter().collect();
    let out = OutputDir::create("--out", &a.out, "mdn-train", a.force, &inputs)?;
    let sim = simulator(&a)?;
    if sim.is_some() {
        // theta and y in f64, their standardised f32 copies, and the shuffle order.
        super::check_memory(
            "--sims",
            (a.sims as u64).saturating_mul(2 * 8 + 2 * 4 + 8),
            &format!("{} simulated pairs", a.sims),
        )?;
    }
    let pairs = match (sim, a.simulator.strip_prefix("csv:")) {
        (Some(simulator), _) => Pairs::Simulate {
            simulator,
            sims: a.sims,
            seed: a.seed,
        },
        (None, Some(file)) => {
            let (theta, y) = read_pairs(std::path::Path::new(file), &a.theta_cols, &a.y_cols)?;
            Pairs::Given {
                theta,
                y,
                theta_dim: a.theta_cols.len(),
                y_dim: a.y_cols.len(),
            }
        }
        (None, None) => unreachable!("simulator() names one"),
    };
    let job = MdnJob {
        pairs,
        hidden: a.hidden.clone(),
        components: a.components,
        config: TrainConfig {
            epochs: a.epochs,
            batch: a.batch,
            lr: a.lr,
            val_frac: a.val_frac,
            patience: a.patience,
            grouped: a.grouped,
            seed: a.seed,
        },
        source: a.simulator.clone(),
        eval_y: a.eval_y.clone(),
    };
    let bar = super::progress_bar(a.quiet, a.epochs as u64, "{bar:30} epoch {pos}/{len} {msg}");
    let backend = super::args::select_backend(a.backend, a.quiet)?;
    let run = train_to_dir(&job, &backend, out.path(), &mut |s| {
        bar.set_position(s.epoch as u64);
        bar.set_message(format!(
            "train {:.4} val {:.4} lr {:.1e}",
            s.train_loss, s.val_loss, s.lr
        ));
    })?;
    bar.finish_and_clear();
    out.commit()?;
    if !a.quiet {
        let t = &run.trained;
        eprintln!(
            "trained on {} pairs: {} epochs in {:.1} s ({:.3e} pairs/s; simulation {:.2} s), best epoch {} (validation loss {:.4}); wrote {}",
            run.pairs,
            t.history.len(),
            run.training_seconds,
            t.pairs_per_sec,
            run.simulation_seconds,
            t.best_epoch,
            t.history[t.best_epoch - 1].val_loss,
            a.out.display()
        );
        if !run.accuracy.is_empty() {
            print_accuracy(&run.accuracy)?;
        }
    }
    Ok(())
}

fn load(dir: &std::path::Path) -> anyhow::Result<MdnModel> {
    let path = if dir.is_dir() {
        dir.join("model.json")
    } else {
        dir.to_path_buf()
    };
    Ok(MdnModel::load(&path)?)
}

fn run_predict(a: PredictArgs) -> anyhow::Result<()> {
    let model = load(&a.model)?;
    let d = model.shape.input;
    let mixes = model.predict_checked(&a.y)?;
    let scalar = model.shape.theta == 1;
    if a.json {
        let out: Vec<serde_json::Value> =
            a.y.chunks(d)
                .zip(&mixes)
                .map(|(y, m)| {
                    let yv = if d == 1 {
                        serde_json::json!(y[0])
                    } else {
                        serde_json::json!(y)
                    };
                    let (means, sds) = if scalar {
                        (
                            serde_json::json!(m.means.iter().map(|v| v[0]).collect::<Vec<_>>()),
                            serde_json::json!(m.sds.iter().map(|v| v[0]).collect::<Vec<_>>()),
                        )
                    } else {
                        (serde_json::json!(m.means), serde_json::json!(m.sds))
                    };
                    serde_json::json!({"y": yv, "weights": m.weights, "means": means, "sds": sds})
                })
                .collect();
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    for (y, m) in a.y.chunks(d).zip(&mixes) {
        outln!("y = {y:?}");
        outln!("{:>4} {:>9} {:>24} {:>24}", "k", "weight", "mean", "sd");
        for k in 0..m.weights.len() {
            outln!(
                "{:>4} {:>9.4} {:>24} {:>24}",
                k,
                m.weights[k],
                format!("{:.5?}", m.means[k]),
                format!("{:.5?}", m.sds[k])
            );
        }
    }
    Ok(())
}

fn run_eval(a: EvalArgs) -> anyhow::Result<()> {
    let model = load(&a.model)?;
    let Some(sim) = model.simulator else {
        bail!(
            "{}: trained on CSV pairs; eval needs a built-in simulator",
            a.model.display()
        );
    };
    let ys = if a.y.is_empty() {
        default_eval_y(&sim)
    } else {
        a.y.clone()
    };
    let acc = accuracy(&model, &sim, &ys)?;
    if a.coverage_sims == 0 {
        bail!("--coverage-sims must be at least 1");
    }
    let (theta, y) = sim.simulate(a.coverage_sims, a.seed);
    let levels = [0.5, 0.8, 0.95];
    let cov = coverage(&model, &theta, &y, &levels);
    if a.json {
        let v = serde_json::json!({
            "accuracy": acc,
            "coverage": {"levels": levels, "covered": cov[0], "sims": a.coverage_sims},
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print_accuracy(&acc)?;
    outln!(
        "coverage over {} fresh simulations: 50% {:.3}, 80% {:.3}, 95% {:.3}",
        a.coverage_sims,
        cov[0][0],
        cov[0][1],
        cov[0][2]
    );
    Ok(())
}
