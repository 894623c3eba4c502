//! Mixture density networks: the CPU gradient against finite differences, accuracy against
//! the exact Beta-Binomial and Gamma-Poisson posteriors at the notebook's setting (10^6
//! simulations), coverage over fresh simulations, persistence, reproducibility and bad input.

mod common;

use common::{gpsamp, rel_norm};
use gpsamp::mdn::eval::{accuracy, coverage};
use gpsamp::mdn::sim::Simulator;
use gpsamp::mdn::train::{train, MdnModel, TrainConfig};
use gpsamp::mdn::{init_params, loss_and_grad, Batch, Shape};
use gpsamp::rng::{host_rng, Purpose};
use rand::RngExt;

fn random_batch(shape: &Shape, n: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut rng = host_rng(seed, 0, Purpose::Other);
    let mut u = |s: f32| (rng.random::<f32>() - 0.5) * s;
    let x = (0..n * shape.input).map(|_| u(3.0)).collect();
    let t = (0..n * shape.theta).map(|_| u(2.0)).collect();
    let w: Vec<f32> = (0..n).map(|_| 0.5 + u(0.5)).collect();
    (x, t, w)
}

#[test]
fn gradient_matches_finite_differences() {
    for shape in [
        Shape {
            input: 1,
            hidden: vec![24, 25, 16],
            k: 8,
            theta: 1,
        },
        Shape {
            input: 3,
            hidden: vec![7],
            k: 3,
            theta: 2,
        },
    ] {
        let n = 37; // not a multiple of the lane or chunk width
        let (x, t, w) = random_batch(&shape, n, 1);
        let mut params = init_params(&shape, 2);
        // Non-zero biases so that ReLU kinks sit away from the probe points.
        let mut rng = host_rng(3, 0, Purpose::Other);
        params
            .iter_mut()
            .for_each(|p| *p += (rng.random::<f32>() - 0.5) * 0.2);
        // Raw log variances far from zero, where the bounding tanh bends.
        let offs = shape.offsets();
        let (n_in, n_out) = *shape.layers().last().unwrap();
        let biases = offs[offs.len() - 2] + n_in * n_out;
        for j in shape.k * (1 + shape.theta)..n_out {
            params[biases + j] += if j % 2 == 0 { 5.0 } else { -3.0 };
        }
        let batch = Batch {
            x: &x,
            theta: &t,
            weight: Some(&w),
        };
        let mut g = vec![0.0; params.len()];
        let mut scratch = Vec::new();
        loss_and_grad(&shape, &params, &batch, &mut g, &mut scratch);
        let mut g2 = vec![0.0; params.len()];
        let fd: Vec<f32> = (0..params.len())
            .map(|i| {
                let h = 1e-3f32;
                let mut p = params.clone();
                p[i] += h;
                let a = loss_and_grad(&shape, &p, &batch, &mut g2, &mut scratch);
                p[i] -= 2.0 * h;
                let b = loss_and_grad(&shape, &p, &batch, &mut g2, &mut scratch);
                ((a - b) / (2.0 * h as f64)) as f32
            })
            .collect();
        let g: Vec<f64> = g.iter().map(|&v| v as f64).collect();
        let fd: Vec<f64> = fd.iter().map(|&v| v as f64).collect();
        let r = rel_norm(&g, &fd);
        assert!(r < 2e-3, "{shape:?}: relative error {r}");
    }
}

fn notebook_shape() -> Shape {
    Shape {
        input: 1,
        hidden: vec![24, 25, 16],
        k: 8,
        theta: 1,
    }
}

fn notebook(sim: Simulator, ys: &[f64]) {
    let (theta, y) = sim.simulate(1_000_000, 0);
    let shape = notebook_shape();
    let cfg = TrainConfig {
        epochs: 20,
        grouped: true,
        ..TrainConfig::default()
    };
    let t = train(&shape, &theta, &y, Some(sim), &cfg, &mut |_| {}).unwrap();
    for a in accuracy(&t.model, &sim, ys).unwrap() {
        assert!(a.tv <= 0.05, "{}: {a:?}", sim.name());
    }
}

#[test]
fn beta_binomial_posteriors_are_within_tv_005() {
    notebook(
        Simulator::BetaBinomial {
            a: 2.0,
            b: 5.0,
            trials: 100,
        },
        &[10.0, 30.0, 60.0, 80.0, 90.0],
    );
}

#[test]
fn gamma_poisson_posteriors_are_within_tv_005() {
    notebook(
        Simulator::GammaPoisson {
            shape: 2.0,
            rate: 3.0,
            exposure: 100.0,
        },
        &[10.0, 30.0, 50.0, 70.0, 90.0],
    );
}

#[test]
fn central_intervals_cover_at_their_level() {
    let sim = Simulator::BetaBinomial {
        a: 2.0,
        b: 5.0,
        trials: 100,
    };
    let (theta, y) = sim.simulate(300_000, 5);
    let shape = notebook_shape();
    let cfg = TrainConfig {
        epochs: 10,
        ..TrainConfig::default()
    };
    let t = train(&shape, &theta, &y, Some(sim), &cfg, &mut |_| {}).unwrap();
    let (th, yy) = sim.simulate(2000, 99);
    let levels = [0.5, 0.8, 0.95];
    let cov = coverage(&t.model, &th, &yy, &levels);
    for (c, l) in cov[0].iter().zip(levels) {
        assert!((c - l).abs() <= 0.03, "coverage {c} at {l}");
    }
}

#[test]
fn training_is_reproducible_and_survives_a_round_trip() {
    let sim = Simulator::GammaPoisson {
        shape: 2.0,
        rate: 3.0,
        exposure: 100.0,
    };
    let (theta, y) = sim.simulate(20_000, 1);
    let shape = Shape {
        input: 1,
        hidden: vec![8, 8],
        k: 3,
        theta: 1,
    };
    let cfg = TrainConfig {
        epochs: 2,
        seed: 4,
        ..TrainConfig::default()
    };
    let a = train(&shape, &theta, &y, Some(sim), &cfg, &mut |_| {}).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let b = pool.install(|| train(&shape, &theta, &y, Some(sim), &cfg, &mut |_| {}).unwrap());
    assert_eq!(
        a.model.params, b.model.params,
        "same seed, other thread count"
    );
    let path = std::env::temp_dir().join(format!("gpsamp-mdn-{}.json", std::process::id()));
    a.model.save(&path).unwrap();
    let back = MdnModel::load(&path).unwrap();
    assert_eq!(back.predict(&[10.0, 50.0]), a.model.predict(&[10.0, 50.0]));
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"version\":1", "\"version\":99");
    std::fs::write(&path, text).unwrap();
    let e = MdnModel::load(&path).unwrap_err().to_string();
    assert!(e.contains("version 99"), "{e}");
    std::fs::remove_file(&path).ok();
}

#[test]
fn cli_trains_predicts_and_rejects_bad_input() {
    let dir = std::env::temp_dir().join(format!("gpsamp-mdn-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("net");
    let o = out.to_str().unwrap();
    let (ok, stdout, e) = gpsamp(&[
        "mdn",
        "train",
        "--sims",
        "20000",
        "--epochs",
        "2",
        "--components",
        "3",
        "--hidden",
        "8,8",
        "--out",
        o,
    ]);
    assert!(ok, "{e}");
    assert!(stdout.contains("TV"), "{stdout}");
    for f in ["model.json", "training.json", "accuracy.csv", "density.svg"] {
        assert!(out.join(f).exists(), "{f}");
    }
    let (ok, stdout, e) = gpsamp(&["mdn", "predict", "--model", o, "--y", "10,30,60", "--json"]);
    assert!(ok, "{e}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    assert_eq!(v[1]["y"], 30.0);
    let w: f64 = v[0]["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_f64().unwrap())
        .sum();
    assert!((w - 1.0).abs() < 1e-5);
    assert_eq!(v[2]["means"].as_array().unwrap().len(), 3);
    // y outside the simulator's support, K = 0, no hidden layer, NaN in CSV pairs.
    let (ok, _, e) = gpsamp(&["mdn", "predict", "--model", o, "--y", "101"]);
    assert!(!ok && e.contains("0..=100"), "{e}");
    let (ok, _, e) = gpsamp(&["mdn", "train", "--components", "0", "--out", o]);
    assert!(!ok && e.contains("--components"), "{e}");
    let (ok, _, e) = gpsamp(&["mdn", "train", "--hidden", "", "--out", o]);
    assert!(!ok && e.contains("--hidden"), "{e}");
    let csv = dir.join("pairs.csv");
    std::fs::write(&csv, "theta,y\n0.5,3\nNaN,4\n").unwrap();
    let sim = format!("csv:{}", csv.display());
    let (ok, _, e) = gpsamp(&["mdn", "train", "--simulator", &sim, "--out", o]);
    assert!(!ok && e.contains("pairs.csv:3:theta"), "{e}");
    // The good model is still there.
    assert!(MdnModel::load(&out.join("model.json")).is_ok());
    std::fs::remove_dir_all(&dir).ok();
}
