//! Training: minibatch Adam over all simulated pairs (or the grouped loss, one term per
//! distinct input), a cosine learning-rate schedule, a validation split and early stopping
//! that keeps the best epoch's weights. Inputs and theta are standardised internally; the
//! saved model ([`MdnModel`]) maps back to theta's own units.

use std::time::Instant;

use super::{init_params, loss_and_grad, predict, Adam, Batch, Mixture, Shape};
use crate::error::{Error, Result};
use crate::rng::{host_rng, Purpose};

/// Training settings.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainConfig {
    /// Passes over the training pairs.
    pub epochs: usize,
    /// Minibatch size.
    pub batch: usize,
    /// Initial learning rate (cosine decay to 1% of it by the last epoch).
    pub lr: f64,
    /// Share of the pairs held out for validation.
    pub val_frac: f64,
    /// Stop after this many epochs without a better validation loss (0: never).
    pub patience: usize,
    /// Weight each pair by 1 / (number of pairs with its input): one term per distinct y,
    /// as the MDN notebook does, so rare y values count as much as common ones.
    pub grouped: bool,
    /// Seed of the initial weights, the split and the shuffles.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 20,
            batch: 512,
            lr: 3e-3,
            val_frac: 0.05,
            patience: 0,
            grouped: false,
            seed: 0,
        }
    }
}

/// Means and standard deviations used to standardise inputs and theta.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Standardise {
    /// Input means.
    pub x_mean: Vec<f64>,
    /// Input sds.
    pub x_sd: Vec<f64>,
    /// Theta means.
    pub theta_mean: Vec<f64>,
    /// Theta sds.
    pub theta_sd: Vec<f64>,
}

/// Rows of `v` (`mean.len()` columns) standardised column by column, as f32.
fn standardise(v: &[f64], mean: &[f64], sd: &[f64]) -> Vec<f32> {
    v.chunks(mean.len())
        .flat_map(|r| {
            r.iter()
                .zip(mean.iter().zip(sd))
                .map(|(v, (m, s))| ((v - m) / s) as f32)
        })
        .collect()
}

fn moments(v: &[f64], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let n = (v.len() / dim) as f64;
    let mut mean = vec![0.0; dim];
    for row in v.chunks(dim) {
        mean.iter_mut().zip(row).for_each(|(m, x)| *m += x / n);
    }
    let mut var = vec![0.0; dim];
    for row in v.chunks(dim) {
        var.iter_mut()
            .zip(row.iter().zip(&mean))
            .for_each(|(s, (x, m))| *s += (x - m).powi(2) / n);
    }
    let sd = var
        .iter()
        .map(|v| if *v > 0.0 { v.sqrt() } else { 1.0 })
        .collect();
    (mean, sd)
}

/// A trained network with everything needed to use it (saved as JSON, see
/// [`MdnModel::save`]).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct MdnModel {
    /// Always `gpsamp-mdn`.
    pub format: String,
    /// File format version ([`MdnModel::VERSION`]).
    pub version: u32,
    /// Sizes.
    pub shape: Shape,
    /// Parameters (layout in the module docs of [`super`]).
    pub params: Vec<f32>,
    /// Standardisation.
    pub standardise: Standardise,
    /// The simulator it was trained on, when built in.
    pub simulator: Option<super::sim::Simulator>,
}

/// A mixture over theta in its own units.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct UnitMixture {
    /// Component weights.
    pub weights: Vec<f64>,
    /// Means, per component (T each).
    pub means: Vec<Vec<f64>>,
    /// Standard deviations, per component (T each).
    pub sds: Vec<Vec<f64>>,
}

impl UnitMixture {
    /// Density at `theta` (T values).
    pub fn pdf(&self, theta: &[f64]) -> f64 {
        let mut p = 0.0;
        for (k, w) in self.weights.iter().enumerate() {
            let mut c = *w;
            for (d, &t) in theta.iter().enumerate() {
                let (m, s) = (self.means[k][d], self.sds[k][d]);
                let z = (t - m) / s;
                c *= (-0.5 * z * z).exp() / (s * (2.0 * std::f64::consts::PI).sqrt());
            }
            p += c;
        }
        p
    }

    /// Marginal CDF of dimension `d` at `t`.
    pub fn cdf(&self, d: usize, t: f64) -> f64 {
        self.weights
            .iter()
            .enumerate()
            .map(|(k, w)| {
                let z = (t - self.means[k][d]) / self.sds[k][d];
                w * 0.5 * statrs::function::erf::erfc(-z / std::f64::consts::SQRT_2)
            })
            .sum()
    }
}

impl MdnModel {
    /// Format version written by this build.
    pub const VERSION: u32 = 1;

    /// [`MdnModel::predict`] after checking `y`: whole observations of the model's input
    /// size, finite, and possible under the simulator it was trained on (errors name `--y`).
    pub fn predict_checked(&self, y: &[f64]) -> Result<Vec<UnitMixture>> {
        let d = self.shape.input;
        let config = |message: String| Error::Config {
            flag: "--y".into(),
            message,
        };
        if !y.len().is_multiple_of(d) {
            return Err(config(format!(
                "the model takes {d} values per observation, got {}",
                y.len()
            )));
        }
        if let Some(v) = y.iter().find(|v| !v.is_finite()) {
            return Err(config(format!("{v} is not a finite number")));
        }
        if let Some(s) = &self.simulator {
            for &v in y {
                s.check_y(v)?;
            }
        }
        Ok(self.predict(y))
    }

    /// Mixtures for inputs `y` (`n x input`, own units).
    pub fn predict(&self, y: &[f64]) -> Vec<UnitMixture> {
        let st = &self.standardise;
        let x = standardise(y, &st.x_mean, &st.x_sd);
        predict(&self.shape, &self.params, &x)
            .iter()
            .map(|m| self.to_units(m))
            .collect()
    }

    fn to_units(&self, m: &Mixture) -> UnitMixture {
        let t = self.shape.theta;
        let st = &self.standardise;
        UnitMixture {
            weights: m.log_w.iter().map(|v| (*v as f64).exp()).collect(),
            means: m
                .mean
                .chunks(t)
                .map(|c| {
                    c.iter()
                        .enumerate()
                        .map(|(d, v)| st.theta_mean[d] + st.theta_sd[d] * *v as f64)
                        .collect()
                })
                .collect(),
            sds: m
                .log_var
                .chunks(t)
                .map(|c| {
                    c.iter()
                        .enumerate()
                        .map(|(d, v)| st.theta_sd[d] * (0.5 * *v as f64).exp())
                        .collect()
                })
                .collect(),
        }
    }

    /// Writes the model as JSON to `path` (through a temporary file).
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let text = serde_json::to_string(self).map_err(|e| Error::Invalid(e.to_string()))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(|source| Error::Io {
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Checks every field a file could get wrong: the shape, the simulator's prior, the
    /// standardisation (finite means, positive finite sds of the right lengths) and finite
    /// weights.
    fn check(&self) -> std::result::Result<(), String> {
        self.shape.validate().map_err(|e| format!("shape: {e}"))?;
        if let Some(s) = &self.simulator {
            s.validate().map_err(|e| format!("simulator: {e}"))?;
            if self.shape.input != 1 || self.shape.theta != 1 {
                return Err("simulator: the built-in simulators have scalar theta and y".into());
            }
        }
        let st = &self.standardise;
        for (name, v, len, sd) in [
            ("x_mean", &st.x_mean, self.shape.input, false),
            ("x_sd", &st.x_sd, self.shape.input, true),
            ("theta_mean", &st.theta_mean, self.shape.theta, false),
            ("theta_sd", &st.theta_sd, self.shape.theta, true),
        ] {
            if v.len() != len {
                return Err(format!(
                    "standardise.{name}: {} values for a dimension of {len}",
                    v.len()
                ));
            }
            if let Some((i, x)) = v
                .iter()
                .enumerate()
                .find(|(_, x)| !x.is_finite() || (sd && **x <= 0.0))
            {
                return Err(format!(
                    "standardise.{name}[{i}] = {x}: {}",
                    if sd {
                        "an sd must be positive and finite"
                    } else {
                        "a mean must be finite"
                    }
                ));
            }
        }
        if let Some(i) = self.params.iter().position(|p| !p.is_finite()) {
            return Err(format!("params[{i}] is not a finite number"));
        }
        Ok(())
    }

    /// Reads a model written by [`MdnModel::save`], checking its format and version.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // From bytes, so that invalid UTF-8 is reported at its line and column too.
        let m: MdnModel = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Invalid(format!("{}: not an MDN model file: {e}", path.display()))
        })?;
        if m.format != "gpsamp-mdn" || m.version != Self::VERSION {
            return Err(Error::Invalid(format!(
                "{}: format {} version {} (this build reads gpsamp-mdn version {})",
                path.display(),
                m.format,
                m.version,
                Self::VERSION
            )));
        }
        m.check()
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        if m.params.len() != m.shape.n_params() {
            return Err(Error::Invalid(format!(
                "{}: key \"params\": {} parameters for a network that has {}",
                path.display(),
                m.params.len(),
                m.shape.n_params()
            )));
        }
        Ok(m)
    }
}

/// One epoch's figures.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EpochStats {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Mean training loss (-log q per pair, standardised units).
    pub train_loss: f64,
    /// Validation loss.
    pub val_loss: f64,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Seconds since training started.
    pub seconds: f64,
}

/// Result of [`train`].
pub struct Trained {
    /// The model with the best validation loss.
    pub model: MdnModel,
    /// Per epoch.
    pub history: Vec<EpochStats>,
    /// Epoch whose weights were kept.
    pub best_epoch: usize,
    /// Training pairs per second (all epochs).
    pub pairs_per_sec: f64,
}

/// Trains an MDN of `shape` on pairs `theta` (`n x T`) and `y` (`n x input`) on `backend`
/// (on a GPU the pairs stay resident there; the validation loss is computed on the CPU).
pub fn train(
    shape: &Shape,
    theta: &[f64],
    y: &[f64],
    simulator: Option<super::sim::Simulator>,
    cfg: &TrainConfig,
    backend: &crate::backend::Backend,
    progress: &mut dyn FnMut(&EpochStats),
) -> Result<Trained> {
    shape.validate()?;
    let n = y.len() / shape.input;
    if n * shape.input != y.len() || n * shape.theta != theta.len() {
        return Err(Error::Invalid(
            "theta and y hold different numbers of pairs".into(),
        ));
    }
    if let Some(v) = theta.iter().chain(y).find(|v| !v.is_finite()) {
        return Err(Error::Invalid(format!("pairs: {v} is not a finite number")));
    }
    if cfg.batch == 0
        || cfg.epochs == 0
        || cfg.lr.is_nan()
        || cfg.lr <= 0.0
        || !(0.0..0.5).contains(&cfg.val_frac)
    {
        return Err(Error::Invalid(
            "--batch and --epochs must be at least 1, --lr positive, the validation share in [0, 0.5)".into(),
        ));
    }
    let n_val = ((n as f64 * cfg.val_frac) as usize).min(n.saturating_sub(1));
    if n - n_val < 2 {
        return Err(Error::Invalid(format!("{n} pairs are too few to train on")));
    }
    let (x_mean, x_sd) = moments(y, shape.input);
    let (theta_mean, theta_sd) = moments(theta, shape.theta);
    let st = Standardise {
        x_mean,
        x_sd,
        theta_mean,
        theta_sd,
    };
    let xs = standardise(y, &st.x_mean, &st.x_sd);
    let ts = standardise(theta, &st.theta_mean, &st.theta_sd);
    // Grouped loss: weight 1 / count of the pair's input.
    let weights: Option<Vec<f32>> = cfg.grouped.then(|| {
        let mut counts = std::collections::HashMap::new();
        for r in xs.chunks(shape.input) {
            *counts
                .entry(r.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
                .or_insert(0usize) += 1;
        }
        xs.chunks(shape.input)
            .map(|r| 1.0 / counts[&r.iter().map(|v| v.to_bits()).collect::<Vec<_>>()] as f32)
            .collect()
    });
    // A fixed shuffle splits off the validation pairs.
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, cfg.seed, u64::MAX);
    let (val_idx, train_idx) = order.split_at(n_val);
    let mut train_idx = train_idx.to_vec();
    let gather = |idx: &[usize], xb: &mut Vec<f32>, tb: &mut Vec<f32>, wb: &mut Vec<f32>| {
        xb.clear();
        tb.clear();
        wb.clear();
        for &i in idx {
            xb.extend_from_slice(&xs[i * shape.input..(i + 1) * shape.input]);
            tb.extend_from_slice(&ts[i * shape.theta..(i + 1) * shape.theta]);
            wb.push(weights.as_ref().map_or(1.0, |w| w[i]));
        }
        let total: f32 = wb.iter().sum();
        wb.iter_mut().for_each(|w| *w /= total);
    };
    // The validation pairs, gathered once. Unweighted even for the grouped loss: the mean
    // -log q per held-out pair is what early stopping watches (the grouped one is dominated
    // by a few rare y).
    let (mut val_x, mut val_t, mut val_w) = (Vec::new(), Vec::new(), Vec::new());
    gather(val_idx, &mut val_x, &mut val_t, &mut val_w);
    let val_batch = Batch {
        x: &val_x,
        theta: &val_t,
        weight: None,
    };
    let mut params = init_params(shape, cfg.seed);
    let mut adam = Adam::new(params.len());
    let mut grad = vec![0.0f32; params.len()];
    let mut scratch = Vec::new();
    let (mut xb, mut tb, mut wb) = (Vec::new(), Vec::new(), Vec::new());
    let steps_per_epoch = train_idx.len().div_ceil(cfg.batch);
    let mut device = match backend {
        crate::backend::Backend::Gpu(ctx) => {
            let stride = shape.input + shape.theta + 1;
            let mut data = Vec::with_capacity(n * stride);
            for i in 0..n {
                data.extend_from_slice(&xs[i * shape.input..(i + 1) * shape.input]);
                data.extend_from_slice(&ts[i * shape.theta..(i + 1) * shape.theta]);
                data.push(weights.as_ref().map_or(1.0, |w| w[i]));
            }
            Some(super::gpu::GpuTrainer::new(
                ctx.clone(),
                shape,
                &data,
                &params,
                cfg.batch,
                steps_per_epoch,
            )?)
        }
        crate::backend::Backend::Cpu(_) => None,
    };
    let total_steps = (steps_per_epoch * cfg.epochs) as f64;
    let t0 = Instant::now();
    let mut history = Vec::new();
    let mut best = (f64::INFINITY, 0usize, params.clone());
    let mut pairs = 0usize;
    let mut lr = cfg.lr;
    for epoch in 1..=cfg.epochs {
        shuffle(&mut train_idx, cfg.seed, epoch as u64);
        let mut sum = 0.0;
        let lr_at = |s: usize| {
            let progress = ((epoch - 1) * steps_per_epoch + s) as f64 / total_steps;
            cfg.lr * (0.01 + 0.99 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
        };
        if let Some(dev) = device.as_mut() {
            let order: Vec<u32> = train_idx.iter().map(|&i| i as u32).collect();
            dev.set_order(&order);
            let batches: Vec<(u32, u32, f32)> = train_idx
                .chunks(cfg.batch)
                .enumerate()
                .map(|(s, idx)| {
                    let wsum: f32 = idx
                        .iter()
                        .map(|&i| weights.as_ref().map_or(1.0, |w| w[i]))
                        .sum();
                    ((s * cfg.batch) as u32, idx.len() as u32, 1.0 / wsum)
                })
                .collect();
            let lrs: Vec<f32> = (0..batches.len()).map(|s| lr_at(s) as f32).collect();
            lr = lr_at(batches.len() - 1);
            sum = dev
                .run(&batches, Some(&lrs))?
                .iter()
                .map(|&l| l as f64)
                .sum();
            params = dev.params()?;
            pairs += train_idx.len();
        } else {
            for (s, idx) in train_idx.chunks(cfg.batch).enumerate() {
                gather(idx, &mut xb, &mut tb, &mut wb);
                let batch = Batch {
                    x: &xb,
                    theta: &tb,
                    weight: Some(&wb),
                };
                sum += loss_and_grad(shape, &params, &batch, &mut grad, &mut scratch);
                lr = lr_at(s);
                adam.step(&mut params, &grad, lr as f32);
                pairs += idx.len();
            }
        }
        let train_loss = sum / steps_per_epoch as f64;
        let val_loss = if val_idx.is_empty() {
            train_loss
        } else {
            super::loss(shape, &params, &val_batch)
        };
        let stats = EpochStats {
            epoch,
            train_loss,
            val_loss,
            lr,
            seconds: t0.elapsed().as_secs_f64(),
        };
        progress(&stats);
        history.push(stats);
        if !val_loss.is_finite() {
            return Err(Error::Invalid(format!(
                "training diverged at epoch {epoch} (validation loss {val_loss}); try a smaller --lr"
            )));
        }
        if val_loss < best.0 {
            best = (val_loss, epoch, params.clone());
        } else if cfg.patience > 0 && epoch - best.1 >= cfg.patience {
            break;
        }
    }
    let pairs_per_sec = pairs as f64 / t0.elapsed().as_secs_f64();
    Ok(Trained {
        model: MdnModel {
            format: "gpsamp-mdn".into(),
            version: MdnModel::VERSION,
            shape: shape.clone(),
            params: best.2,
            standardise: st,
            simulator,
        },
        history,
        best_epoch: best.1,
        pairs_per_sec,
    })
}

/// Fisher-Yates shuffle from stream `(seed, round)`.
fn shuffle(v: &mut [usize], seed: u64, round: u64) {
    let mut rng = host_rng(seed, round, Purpose::Other);
    for i in (1..v.len()).rev() {
        let j = rand::RngExt::random_range(&mut rng, 0..=i);
        v.swap(i, j);
    }
}
