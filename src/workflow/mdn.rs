//! `mdn train` as a library function: simulate (or take) (theta, y) pairs, train a mixture
//! density network on a backend, and write the folder `gpsamp mdn train` writes
//! (`model.json`, `training.json`, and for a built-in simulator `accuracy.csv` and
//! `density.svg`), returning what the caller may print.

use std::path::Path;
use std::time::Instant;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::mdn::eval::{accuracy, plot_densities, Accuracy};
use crate::mdn::sim::Simulator;
use crate::mdn::train::{train, EpochStats, TrainConfig, Trained};
use crate::mdn::Shape;

/// Where the training pairs come from.
#[derive(Clone, Debug)]
pub enum Pairs {
    /// `sims` pairs from a built-in simulator (theta from its prior, y given theta), drawn
    /// with `seed`; accuracy against the exact posterior is then measured too.
    Simulate {
        /// The simulator.
        simulator: Simulator,
        /// Number of pairs.
        sims: usize,
        /// Seed of the simulation.
        seed: u64,
    },
    /// Pairs given row by row: `theta` (`n x theta_dim`) and `y` (`n x y_dim`).
    Given {
        /// Parameters, row-major.
        theta: Vec<f64>,
        /// Observations, row-major.
        y: Vec<f64>,
        /// Parameters per pair.
        theta_dim: usize,
        /// Observed values per pair.
        y_dim: usize,
    },
}

/// What to train and record.
#[derive(Clone, Debug)]
pub struct MdnJob {
    /// The training pairs.
    pub pairs: Pairs,
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// Mixture components.
    pub components: usize,
    /// Epochs, batch, learning rate, validation share, patience, seed.
    pub config: TrainConfig,
    /// Where the pairs came from, for `training.json` (`beta-binomial`, `csv:FILE`).
    pub source: String,
    /// The y values at which a built-in simulator's accuracy is measured (empty: the
    /// notebook's, [`default_eval_y`]).
    pub eval_y: Vec<f64>,
}

/// What a finished training returns besides its folder.
pub struct MdnRun {
    /// The network with the best validation loss, and the training history.
    pub trained: Trained,
    /// Training pairs.
    pub pairs: usize,
    /// Wall seconds of the simulation (0 for given pairs).
    pub simulation_seconds: f64,
    /// Wall seconds of the training.
    pub training_seconds: f64,
    /// Accuracy against the exact posterior at each evaluation y (built-in simulators).
    pub accuracy: Vec<Accuracy>,
}

/// y values the notebook looks at: 10, 30, 60, 80, 90 of 100 trials, or the matching
/// counts for an exposure.
pub fn default_eval_y(s: &Simulator) -> Vec<f64> {
    match s {
        Simulator::BetaBinomial { trials, .. } => [0.1, 0.3, 0.6, 0.8, 0.9]
            .iter()
            .map(|f| (f * *trials as f64).round())
            .collect(),
        Simulator::GammaPoisson { .. } => vec![10.0, 30.0, 50.0, 70.0, 90.0],
    }
}

/// `accuracy.csv`: one row per evaluation y.
pub fn accuracy_csv(acc: &[Accuracy]) -> String {
    let mut s = String::from("y,tv,kl,exact_mean,mdn_mean\n");
    for a in acc {
        s.push_str(&format!(
            "{},{},{},{},{}\n",
            a.y, a.tv, a.kl, a.exact_mean, a.mdn_mean
        ));
    }
    s
}

/// Trains the job's network on `backend` and writes it into `dir` (an existing, empty
/// folder: an [`crate::io::output::OutputDir`]'s temporary, say). `progress` gets each
/// epoch's statistics.
pub fn train_to_dir(
    job: &MdnJob,
    backend: &Backend,
    dir: &Path,
    progress: &mut dyn FnMut(&EpochStats),
) -> Result<MdnRun> {
    let t0 = Instant::now();
    let simulated;
    let (theta, y, theta_dim, y_dim, simulator) = match &job.pairs {
        Pairs::Simulate {
            simulator,
            sims,
            seed,
        } => {
            if *sims < 2 {
                return Err(Error::Config {
                    flag: "--sims".into(),
                    message: "must be at least 2".into(),
                });
            }
            simulator.validate()?;
            simulated = simulator.simulate(*sims, *seed);
            (&simulated.0[..], &simulated.1[..], 1, 1, Some(*simulator))
        }
        Pairs::Given {
            theta,
            y,
            theta_dim,
            y_dim,
        } => (&theta[..], &y[..], *theta_dim, *y_dim, None),
    };
    let simulation_seconds = t0.elapsed().as_secs_f64();
    let shape = Shape {
        input: y_dim,
        hidden: job.hidden.clone(),
        k: job.components,
        theta: theta_dim,
    };
    shape.validate()?;
    let trained = train(&shape, theta, y, simulator, &job.config, backend, progress)?;
    let training_seconds = trained.history.last().map_or(0.0, |h| h.seconds);
    let pairs = y.len() / y_dim.max(1);
    trained.model.save(&dir.join("model.json"))?;
    let info = serde_json::json!({
        "backend": backend.describe(),
        "simulator": job.source,
        "pairs": pairs,
        "settings": job.config,
        "best_epoch": trained.best_epoch,
        "simulation_seconds": simulation_seconds,
        "training_seconds": training_seconds,
        "pairs_per_second": trained.pairs_per_sec,
        "history": trained.history,
    });
    super::write_text(
        &dir.join("training.json"),
        (super::json_pretty(&info)? + "\n").as_bytes(),
    )?;
    let mut acc = Vec::new();
    if let Some(s) = &simulator {
        let ys = if job.eval_y.is_empty() {
            default_eval_y(s)
        } else {
            job.eval_y.clone()
        };
        acc = accuracy(&trained.model, s, &ys)?;
        super::write_text(&dir.join("accuracy.csv"), accuracy_csv(&acc).as_bytes())?;
        plot_densities(&dir.join("density.svg"), &trained.model, s, &ys)?;
    }
    Ok(MdnRun {
        trained,
        pairs,
        simulation_seconds,
        training_seconds,
        accuracy: acc,
    })
}
