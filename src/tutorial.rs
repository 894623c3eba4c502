//! The tutorial's datasets (shared/seeds), simulated with a seed, so a fresh machine can fit
//! a real model with one command and tests can check recovery of known truths.

use rand::RngExt;
use rand_distr::{Bernoulli, Distribution, Normal, Poisson, Uniform};

use crate::data::Dataset;
use crate::model::{Likelihood, MixGlm, Model};
use crate::rng::{host_rng, Purpose};

/// A simulated dataset with the truth in the model's constrained parameter order.
pub struct Simulated {
    /// The data.
    pub data: Dataset,
    /// True constrained parameters.
    pub truth: Vec<f64>,
    /// What was simulated.
    pub description: String,
}

/// Linear regression: x ~ U(-10, 10), y = 0.5 x + 5 + N(0, 2^2), N = 1000.
pub fn linear(seed: u64) -> Simulated {
    let mut rng = host_rng(seed, 0, Purpose::Simulate);
    let ux = Uniform::new(-10.0, 10.0).expect("valid");
    let x: Vec<f64> = (0..1000).map(|_| ux.sample(&mut rng)).collect();
    let noise = Normal::new(0.0, 2.0).expect("valid");
    let y = x
        .iter()
        .map(|v| 0.5 * v + 5.0 + noise.sample(&mut rng))
        .collect();
    Simulated {
        data: Dataset { x: vec![x], y },
        truth: vec![0.5, 5.0, 2.0],
        description: "tutorial linear regression: x ~ U(-10,10), w 0.5, c 5, sigma 2, N 1000"
            .into(),
    }
}

/// Logistic regression: x ~ U(-3, 3), P(y = 1) = sigmoid(0.8 x - 0.3), N = 1000.
pub fn logistic(seed: u64) -> Simulated {
    let mut rng = host_rng(seed, 0, Purpose::Simulate);
    let ux = Uniform::new(-3.0, 3.0).expect("valid");
    let x: Vec<f64> = (0..1000).map(|_| ux.sample(&mut rng)).collect();
    let y = x
        .iter()
        .map(|v| {
            let p = 1.0 / (1.0 + (-(0.8 * v - 0.3f64)).exp());
            f64::from(u8::from(
                Bernoulli::new(p).expect("p in [0,1]").sample(&mut rng),
            ))
        })
        .collect();
    Simulated {
        data: Dataset { x: vec![x], y },
        truth: vec![0.8, -0.3],
        description: "logistic regression: x ~ U(-3,3), w 0.8, c -0.3, N 1000".into(),
    }
}

/// Poisson regression: x ~ U(-2, 2), rate exp(0.4 x + 0.5), N = 1000.
pub fn poisson(seed: u64) -> Simulated {
    let mut rng = host_rng(seed, 0, Purpose::Simulate);
    let ux = Uniform::new(-2.0, 2.0).expect("valid");
    let x: Vec<f64> = (0..1000).map(|_| ux.sample(&mut rng)).collect();
    let y = x
        .iter()
        .map(|v| {
            Poisson::new((0.4 * v + 0.5f64).exp())
                .expect("positive rate")
                .sample(&mut rng)
        })
        .collect();
    Simulated {
        data: Dataset { x: vec![x], y },
        truth: vec![0.4, 0.5],
        description: "Poisson regression: x ~ U(-2,2), w 0.4, c 0.5, N 1000".into(),
    }
}

/// Two-component Gaussian mixture: weights 0.7 / 0.3, means 0 and 4, sd 1, N = 2000.
pub fn mixture(seed: u64) -> Simulated {
    let mut rng = host_rng(seed, 0, Purpose::Simulate);
    let n = Normal::new(0.0, 1.0).expect("valid");
    let y = (0..2000)
        .map(|_| {
            if rng.random::<f64>() < 0.7 {
                n.sample(&mut rng)
            } else {
                4.0 + n.sample(&mut rng)
            }
        })
        .collect();
    Simulated {
        data: Dataset { x: vec![], y },
        truth: vec![0.7, 0.3, 0.0, 4.0, 1.0, 1.0],
        description: "tutorial mixture: weights 0.7/0.3, means 0 and 4, sd 1, N 2000".into(),
    }
}

/// Mixture of two regressions ("which factory made this ball"): x ~ U(1, 10); 300 points
/// from y = 0.8 x + 1 + N(0, 1), 700 from y = -0.5 x - 1 + N(0, 2^2).
pub fn mixreg(seed: u64) -> Simulated {
    let mut rng = host_rng(seed, 0, Purpose::Simulate);
    let ux = Uniform::new(1.0, 10.0).expect("valid");
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (count, w, c, s) in [(300, 0.8, 1.0, 1.0), (700, -0.5, -1.0, 2.0)] {
        let noise = Normal::new(0.0, s).expect("valid");
        for _ in 0..count {
            let xi = ux.sample(&mut rng);
            x.push(xi);
            y.push(w * xi + c + noise.sample(&mut rng));
        }
    }
    Simulated {
        data: Dataset { x: vec![x], y },
        truth: vec![0.3, 0.7, 0.8, -0.5, 1.0, -1.0, 1.0, 2.0],
        description: "tutorial mixture of regressions: weights 0.3/0.7, slopes 0.8/-0.5, intercepts 1/-1, sd 1/2, N 1000".into(),
    }
}

impl Simulated {
    /// The data as its Stan program's data (CmdStan's JSON: `N`, `K`, `x`, `y`, with
    /// `components` for `K`), for `examples/stan/mixture.stan` and the like.
    pub fn stan_json(&self, components: usize) -> serde_json::Value {
        serde_json::json!({
            "N": self.data.len(),
            "K": components,
            "x": self.data.x[0],
            "y": self.data.y,
        })
    }
}

/// `n` values uniform on (-1, 1) from the stream `(seed, 0)`: random positions of chains
/// for benchmarks and twin tests of log density kernels.
pub fn positions(seed: u64, n: usize) -> Vec<f64> {
    let mut rng = host_rng(seed, 0, Purpose::Simulate);
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// The tutorial dataset that fits `model` (by family, components and features), if any.
pub fn for_model(model: &MixGlm, seed: u64) -> Option<Simulated> {
    let fixed = model.sigma_fixed().is_some();
    let sim = match (model.components(), model.features(), model.likelihood()) {
        (1, 1, Likelihood::Gaussian) => linear(seed),
        (1, 1, Likelihood::Bernoulli) => logistic(seed),
        (1, 1, Likelihood::Poisson) => poisson(seed),
        (2, 0, Likelihood::Gaussian) => mixture(seed),
        (2, 1, Likelihood::Gaussian) => mixreg(seed),
        _ => return None,
    };
    if fixed {
        // The scale leaves the parameter vector: drop it from the truth.
        let n = model.param_names().len();
        return Some(Simulated {
            truth: sim.truth[..n].to_vec(),
            ..sim
        });
    }
    Some(sim)
}
