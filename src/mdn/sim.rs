//! Simulators of (theta, y) pairs for MDN training: the conjugate Beta-Binomial and
//! Gamma-Poisson (with their exact posteriors, for evaluation), and pairs read from CSV.

use std::path::Path;

use rand_distr::{Beta, Binomial, Distribution, Gamma, Poisson};
use rayon::prelude::*;
use statrs::distribution::{Continuous, ContinuousCDF};

use crate::error::{Error, Result};
use crate::rng::{host_rng, Purpose};

/// Pairs per random stream: pair i comes from stream i / BLOCK, so the pairs do not depend
/// on the number of threads.
const BLOCK: usize = 4096;

/// A built-in simulator.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Simulator {
    /// theta ~ Beta(a, b), y ~ Binomial(trials, theta).
    BetaBinomial {
        /// Prior alpha.
        a: f64,
        /// Prior beta.
        b: f64,
        /// Trials n.
        trials: u64,
    },
    /// theta ~ Gamma(shape, rate), y ~ Poisson(exposure theta).
    GammaPoisson {
        /// Prior shape.
        shape: f64,
        /// Prior rate.
        rate: f64,
        /// Exposure.
        exposure: f64,
    },
}

impl Simulator {
    /// The simulator `name` (`beta-binomial`, `gamma-poisson`) with its `prior` (two numbers:
    /// A,B of Beta(A, B), or SHAPE,RATE of Gamma; empty: the notebook's Beta(2, 5) or
    /// Gamma(2, 3)) and `trials` (binomial trials, or Poisson exposure), validated; `None` for
    /// `csv:FILE` (pairs given). Errors name the flag (`--simulator`, `--prior`, `--trials`).
    pub fn from_settings(name: &str, prior: &[f64], trials: f64) -> Result<Option<Self>> {
        let config = |flag: &str, message: String| Error::Config {
            flag: flag.into(),
            message,
        };
        let prior = |default: [f64; 2]| -> Result<(f64, f64)> {
            match prior {
                [] => Ok((default[0], default[1])),
                [p, q] => Ok((*p, *q)),
                other => Err(config(
                    "--prior",
                    format!("expected two numbers A,B, got {other:?}"),
                )),
            }
        };
        let sim = match name {
            "beta-binomial" => {
                let (p, q) = prior([2.0, 5.0])?;
                if trials < 1.0 || trials.fract() != 0.0 {
                    return Err(config(
                        "--trials",
                        format!("a whole number of trials is needed, got {trials}"),
                    ));
                }
                Simulator::BetaBinomial {
                    a: p,
                    b: q,
                    trials: trials as u64,
                }
            }
            "gamma-poisson" => {
                let (p, q) = prior([2.0, 3.0])?;
                Simulator::GammaPoisson {
                    shape: p,
                    rate: q,
                    exposure: trials,
                }
            }
            s if s.starts_with("csv:") => return Ok(None),
            other => {
                return Err(config(
                    "--simulator",
                    format!("beta-binomial, gamma-poisson or csv:FILE, got {other:?}"),
                ))
            }
        };
        sim.validate()?;
        Ok(Some(sim))
    }

    /// Checks the prior and design.
    pub fn validate(&self) -> Result<()> {
        let ok = match *self {
            Simulator::BetaBinomial { a, b, trials } => {
                a > 0.0 && b > 0.0 && a.is_finite() && b.is_finite() && trials > 0
            }
            Simulator::GammaPoisson {
                shape,
                rate,
                exposure,
            } => {
                shape > 0.0 && rate > 0.0 && exposure > 0.0 && (shape + rate + exposure).is_finite()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Error::config(
                "--prior, --trials",
                format!("{self:?} needs positive finite values"),
            ))
        }
    }

    /// Name for files and tables.
    pub fn name(&self) -> &'static str {
        match self {
            Simulator::BetaBinomial { .. } => "beta-binomial",
            Simulator::GammaPoisson { .. } => "gamma-poisson",
        }
    }

    /// `n` pairs (theta, y) from `seed`.
    pub fn simulate(&self, n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
        let blocks: Vec<(Vec<f64>, Vec<f64>)> = (0..n.div_ceil(BLOCK))
            .into_par_iter()
            .map(|b| {
                let mut rng = host_rng(seed, b as u64, Purpose::Simulate);
                let len = BLOCK.min(n - b * BLOCK);
                let mut th = Vec::with_capacity(len);
                let mut ys = Vec::with_capacity(len);
                for _ in 0..len {
                    let (t, y) = self.draw(&mut rng);
                    th.push(t);
                    ys.push(y);
                }
                (th, ys)
            })
            .collect();
        let mut theta = Vec::with_capacity(n);
        let mut y = Vec::with_capacity(n);
        for (t, v) in blocks {
            theta.extend(t);
            y.extend(v);
        }
        (theta, y)
    }

    fn draw(&self, rng: &mut rand::rngs::StdRng) -> (f64, f64) {
        match *self {
            Simulator::BetaBinomial { a, b, trials } => {
                let t: f64 = Beta::new(a, b).expect("validated").sample(rng);
                let y = Binomial::new(trials, t.clamp(0.0, 1.0))
                    .expect("p in [0, 1]")
                    .sample(rng);
                (t, y as f64)
            }
            Simulator::GammaPoisson {
                shape,
                rate,
                exposure,
            } => {
                let t: f64 = Gamma::new(shape, 1.0 / rate)
                    .expect("validated")
                    .sample(rng);
                let lam = (exposure * t).max(1e-300);
                let y: f64 = Poisson::new(lam).map(|d| d.sample(rng)).unwrap_or(0.0);
                (t, y)
            }
        }
    }

    /// Whether `y` is a possible observation.
    pub fn check_y(&self, y: f64) -> Result<()> {
        let ok = match *self {
            Simulator::BetaBinomial { trials, .. } => {
                y >= 0.0 && y <= trials as f64 && y.fract() == 0.0
            }
            Simulator::GammaPoisson { .. } => y >= 0.0 && y.fract() == 0.0 && y.is_finite(),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::config(
                "--y",
                format!(
                    "{y}: not a possible observation of the {} simulator{}",
                    self.name(),
                    match self {
                        Simulator::BetaBinomial { trials, .. } =>
                            format!(" (an integer in 0..={trials})"),
                        Simulator::GammaPoisson { .. } => " (a count, 0 or more)".into(),
                    }
                ),
            ))
        }
    }

    /// Exact posterior density of theta given `y`, and its support's ends for a grid.
    pub fn posterior(&self, y: f64) -> Posterior {
        match *self {
            Simulator::BetaBinomial { a, b, trials } => Posterior::Beta(
                statrs::distribution::Beta::new(a + y, b + trials as f64 - y).unwrap(),
            ),
            Simulator::GammaPoisson {
                shape,
                rate,
                exposure,
            } => Posterior::Gamma(
                statrs::distribution::Gamma::new(shape + y, rate + exposure).unwrap(),
            ),
        }
    }
}

/// An exact conjugate posterior.
#[derive(Clone, Debug)]
pub enum Posterior {
    /// Beta.
    Beta(statrs::distribution::Beta),
    /// Gamma (shape, rate).
    Gamma(statrs::distribution::Gamma),
}

impl Posterior {
    /// Density.
    pub fn pdf(&self, t: f64) -> f64 {
        match self {
            Posterior::Beta(d) => d.pdf(t),
            Posterior::Gamma(d) => d.pdf(t),
        }
    }

    /// Interval holding all but 1e-9 of the mass at each end.
    pub fn range(&self) -> (f64, f64) {
        match self {
            Posterior::Beta(d) => (d.inverse_cdf(1e-9), d.inverse_cdf(1.0 - 1e-9)),
            Posterior::Gamma(d) => (d.inverse_cdf(1e-9), d.inverse_cdf(1.0 - 1e-9)),
        }
    }
}

/// (theta, y) pairs from a CSV file: `theta_cols` and `y_cols` name the columns; every cell
/// must be a finite number (errors name the file, line and column).
pub fn read_pairs(
    path: &Path,
    theta_cols: &[String],
    y_cols: &[String],
) -> Result<(Vec<f64>, Vec<f64>)> {
    let (last, rest) = y_cols
        .split_last()
        .ok_or_else(|| Error::config("--y", "name at least one column"))?;
    let mut x = theta_cols.to_vec();
    x.extend_from_slice(rest);
    let spec = crate::io::CsvSpec {
        x,
        y: last.clone(),
        group: None,
    };
    let batch = crate::io::read_csv(path, &spec)?;
    let nt = batch.n_total();
    let mut table: Vec<&[f64]> = batch.x().chunks(nt.max(1)).take(spec.x.len()).collect();
    table.push(batch.y());
    let n = nt;
    if n == 0 {
        return Err(Error::Data {
            path: path.to_path_buf(),
            line: 2,
            column: "".into(),
            message: "no (theta, y) pairs".into(),
        });
    }
    let t = theta_cols.len();
    let mut theta = Vec::with_capacity(n * t);
    let mut y = Vec::with_capacity(n * y_cols.len());
    for i in 0..n {
        theta.extend(table[..t].iter().map(|c| c[i]));
        y.extend(table[t..].iter().map(|c| c[i]));
    }
    Ok((theta, y))
}
