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
use gpsamp::Backend;
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

const BETA_2_5: Simulator = Simulator::BetaBinomial {
    a: 2.0,
    b: 5.0,
    trials: 100,
};

/// `train` on the CPU backend, unwrapped.
fn cpu_train(
    shape: &Shape,
    theta: &[f64],
    y: &[f64],
    sim: Simulator,
    cfg: &TrainConfig,
) -> gpsamp::mdn::train::Trained {
    train(
        shape,
        theta,
        y,
        Some(sim),
        cfg,
        &Backend::cpu(),
        &mut |_| {},
    )
    .unwrap()
}

/// The notebook's network trained on `n` pairs of `sim` for `epochs`.
fn fit(
    sim: Simulator,
    n: usize,
    seed: u64,
    epochs: usize,
    backend: &Backend,
) -> gpsamp::mdn::train::Trained {
    let (theta, y) = sim.simulate(n, seed);
    let cfg = TrainConfig {
        epochs,
        ..TrainConfig::default()
    };
    train(
        &notebook_shape(),
        &theta,
        &y,
        Some(sim),
        &cfg,
        backend,
        &mut |_| {},
    )
    .unwrap()
}

fn notebook(sim: Simulator, ys: &[f64]) {
    let (theta, y) = sim.simulate(1_000_000, 0);
    let shape = notebook_shape();
    let cfg = TrainConfig {
        epochs: 20,
        grouped: true,
        ..TrainConfig::default()
    };
    let t = cpu_train(&shape, &theta, &y, sim, &cfg);
    for a in accuracy(&t.model, &sim, ys).unwrap() {
        assert!(a.tv <= 0.05, "{}: {a:?}", sim.name());
    }
}

#[test]
fn beta_binomial_posteriors_are_within_tv_005() {
    notebook(BETA_2_5, &[10.0, 30.0, 60.0, 80.0, 90.0]);
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
    let sim = BETA_2_5;
    let t = fit(sim, 300_000, 5, 10, &Backend::cpu());
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
    let a = cpu_train(&shape, &theta, &y, sim, &cfg);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let b = pool.install(|| cpu_train(&shape, &theta, &y, sim, &cfg));
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

#[test]
fn shader_validates() {
    for shape in [
        notebook_shape(),
        Shape {
            input: 3,
            hidden: vec![7],
            k: 3,
            theta: 2,
        },
    ] {
        let src = gpsamp::mdn::gpu::shader_source(&shape, 512);
        gpsamp::shader::validate("mdn", &src).unwrap();
    }
}

#[test]
fn gpu_gradient_and_losses_match_the_cpu() {
    let Some(ctx) = common::gpu() else { return };
    for shape in [
        notebook_shape(),
        Shape {
            input: 3,
            hidden: vec![7],
            k: 3,
            theta: 2,
        },
    ] {
        let n = 300;
        let (x, t, w) = random_batch(&shape, n, 7);
        let params = init_params(&shape, 8);
        let stride = shape.input + shape.theta + 1;
        let mut data = Vec::with_capacity(n * stride);
        for i in 0..n {
            data.extend_from_slice(&x[i * shape.input..(i + 1) * shape.input]);
            data.extend_from_slice(&t[i * shape.theta..(i + 1) * shape.theta]);
            data.push(w[i]);
        }
        let mut g =
            gpsamp::mdn::gpu::GpuTrainer::new(ctx.clone(), &shape, &data, &params, 512, 4).unwrap();
        // A minibatch of the pairs 50..250 in reverse order.
        let order: Vec<u32> = (0..n as u32).rev().collect();
        g.set_order(&order);
        let wsum: f32 = (50..250).map(|i| w[n - 1 - i]).sum();
        let loss = g.run(&[(50, 200, 1.0 / wsum)], None).unwrap()[0];
        let (grad, per_sample) = g.last_gradient(200).unwrap();
        // The CPU twin on the same pairs and normalised weights.
        let idx: Vec<usize> = (50..250).map(|i| n - 1 - i).collect();
        let xb: Vec<f32> = idx
            .iter()
            .flat_map(|&i| x[i * shape.input..(i + 1) * shape.input].to_vec())
            .collect();
        let tb: Vec<f32> = idx
            .iter()
            .flat_map(|&i| t[i * shape.theta..(i + 1) * shape.theta].to_vec())
            .collect();
        let wb: Vec<f32> = idx.iter().map(|&i| w[i] / wsum).collect();
        let batch = Batch {
            x: &xb,
            theta: &tb,
            weight: Some(&wb),
        };
        let mut cg = vec![0.0; params.len()];
        let cl = loss_and_grad(&shape, &params, &batch, &mut cg, &mut Vec::new());
        let f = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
        assert!(rel_norm(&f(&grad), &f(&cg)) < 1e-4, "{shape:?} gradient");
        assert!(
            ((loss as f64) - cl).abs() < 1e-4 * cl.abs().max(1.0),
            "{loss} vs {cl}"
        );
        // Per-sample losses (the forward pass) against the CPU mixture density.
        let mixes = gpsamp::mdn::predict(&shape, &params, &xb);
        let cpu: Vec<f64> = mixes
            .iter()
            .enumerate()
            .map(|(j, m)| {
                let th = &tb[j * shape.theta..(j + 1) * shape.theta];
                -(wb[j] * gpsamp::mdn::mixture_log_density(m, th)) as f64
            })
            .collect();
        assert!(rel_norm(&f(&per_sample), &cpu) < 1e-4, "{shape:?} losses");
        // One Adam step on both sides gives the same weights.
        let mut cp = params.clone();
        let mut adam = gpsamp::mdn::Adam::new(cp.len());
        adam.step(&mut cp, &cg, 1e-3);
        g.run(&[(50, 200, 1.0 / wsum)], Some(&[1e-3])).unwrap();
        let gp = g.params().unwrap();
        assert!(rel_norm(&f(&gp), &f(&cp)) < 1e-5, "{shape:?} Adam step");
    }
}

#[test]
fn gpu_training_matches_cpu_training() {
    let Some(ctx) = common::gpu() else { return };
    let sim = BETA_2_5;
    let cpu = fit(sim, 50_000, 3, 3, &Backend::cpu());
    let gpu = fit(sim, 50_000, 3, 3, &Backend::Gpu(ctx));
    // Same pairs, order and schedule, but f32 sums in another order: one step agrees to
    // 1e-5 (gpu_gradient_and_losses_match_the_cpu), while thousands of Adam steps at a high
    // learning rate amplify the difference (epoch 1's validation loss was 0.055 on the CPU,
    // 0.048 on lavapipe and 0.045 on an H100). So: every epoch within 0.02, and the last
    // epoch, after the schedule has decayed the rate, within 0.01.
    for (c, g) in cpu.history.iter().zip(&gpu.history) {
        assert!((c.val_loss - g.val_loss).abs() < 0.02, "{c:?} vs {g:?}");
    }
    let (c, g) = (cpu.history.last().unwrap(), gpu.history.last().unwrap());
    assert!((c.val_loss - g.val_loss).abs() < 0.01, "{c:?} vs {g:?}");
    let ys = [10.0, 30.0, 60.0];
    let a = accuracy(&cpu.model, &sim, &ys).unwrap();
    let b = accuracy(&gpu.model, &sim, &ys).unwrap();
    for (a, b) in a.iter().zip(&b) {
        assert!((a.tv - b.tv).abs() < 0.01 && b.tv < 0.08, "{a:?} vs {b:?}");
    }
}
