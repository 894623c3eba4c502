//! HMMs from the command line: simulate/em round trips, grouped EM, bad sequence data, sampling
//! a GLM-HMM from CSV, and SBC of a GLM-HMM.

#![allow(clippy::needless_range_loop)]

mod common;

use common::hmm::*;

#[test]
fn cli_simulate_em_round_trip() {
    let d = tmp("roundtrip");
    let csv = d.join("h.csv");
    let out = d.join("fit");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    gpsamp_ok(&[
        "simulate",
        "--model",
        "hmm",
        "--sequences",
        "4",
        "--out",
        &s(&csv),
    ]);
    let truth = csv.with_extension("truth.json");
    let stdout = gpsamp_ok(&[
        "em",
        "--model",
        "hmm",
        "--data",
        &s(&csv),
        "--stickiness",
        "10",
        "--holdout",
        "1",
        "--truth",
        &s(&truth),
        "--backend",
        "cpu",
        "--out",
        &s(&out),
    ]);
    assert!(stdout.contains("held-out"), "{stdout}");
    let params: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("params.json")).unwrap()).unwrap();
    let ds = &params["datasets"][0];
    let means: Vec<f64> = ds["means"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (m, t) in means.iter().zip([-3.0, 0.0, 4.0]) {
        assert!((m - t).abs() < 0.3, "means {means:?}");
    }
    assert_eq!(ds["transition"].as_array().unwrap().len(), 3);
    assert!(ds["trace"].as_array().unwrap().len() >= 2);
    assert!(ds["heldout_bits_per_obs"].as_f64().unwrap() < 0.0);
    // states.csv: the 3 training sequences of 200 steps; posteriors rows sum to 1.
    let states = std::fs::read_to_string(out.join("states.csv")).unwrap();
    assert_eq!(states.lines().next(), Some("seq,t,state"));
    assert_eq!(states.lines().count(), 1 + 600);
    let (shape, post) = gpsamp::io::npy::read_f32(&out.join("posteriors.npy")).unwrap();
    assert_eq!(shape, vec![600, 3]);
    assert!(post
        .chunks(3)
        .all(|r| (r.iter().sum::<f32>() - 1.0).abs() < 1e-4));
    // The tutorial's figures: the objective per restart, emissions over the data, states
    // over time; listed in params.json.
    assert_eq!(
        params["figures"],
        serde_json::json!(["em_trace.svg", "emissions.svg", "states.svg"])
    );
    let restarts = format!("restart {} (best)", ds["restart"]);
    common::assert_svg(
        &out.join("em_trace.svg"),
        &[
            "penalised log likelihood",
            "EM iteration",
            &restarts,
            "other restarts",
        ],
    );
    common::assert_svg(
        &out.join("emissions.svg"),
        &[
            "emission densities over the data",
            "density",
            "state 0",
            "state 2",
            "data",
        ],
    );
    common::assert_svg(
        &out.join("states.svg"),
        &[
            "sequence 0",
            "Viterbi state",
            "time step",
            "smoothed state probabilities",
            "P(state | all data)",
        ],
    );
}

#[test]
fn cli_rejects_bad_sequence_data() {
    let d = tmp("bad");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let write = |name: &str, text: &str| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        s(&p)
    };
    let out = s(&d.join("out"));
    let cases = [
        (
            write("order.csv", "seq,t,y\na,0,1.0\na,2,0.5\na,1,0.2\n"),
            vec![],
            ":4:",
            "out of order",
        ),
        (
            write("resume.csv", "seq,t,y\na,0,1.0\nb,0,0.5\na,1,0.2\n"),
            vec![],
            ":4:",
            "contiguous",
        ),
        (
            write("missing.csv", "seq,t,y\na,0,1.0\n,1,0.5\n"),
            vec![],
            ":3:",
            "missing sequence id",
        ),
        (
            write("few.csv", "seq,t,y\na,0,1.0\na,1,0.5\n"),
            vec![],
            "--states 3",
            "too few",
        ),
        (
            write("ok.csv", "seq,t,y\na,0,1.0\na,1,0.5\na,2,0.1\na,3,0.3\n"),
            vec!["--states", "0"],
            "--states",
            "at least 1",
        ),
        (
            write("binary.csv", "seq,t,x,y\na,0,1,1\na,1,0.3,2\n"),
            vec!["--model", "glmhmm", "--emission", "bernoulli", "--x", "x"],
            ":3:",
            "not 0 or 1",
        ),
    ];
    for (path, extra, place, what) in cases {
        let mut args = vec!["em", "--data", &path, "--out", &out, "--backend", "cpu"];
        if !extra.contains(&"--model") {
            args.extend(["--model", "hmm"]);
        }
        args.extend(extra.iter().copied());
        let (ok, _, err) = common::gpsamp(&args);
        assert!(!ok, "{path}: accepted");
        assert!(err.contains(place) && err.contains(what), "{path}: {err}");
        assert!(!err.contains("panicked"), "{path}: {err}");
    }
    assert!(!d.join("out").exists(), "a failed run wrote output");
}

#[test]
fn cli_samples_a_glm_hmm_from_csv() {
    let d = tmp("sample");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let csv = d.join("sr.csv");
    gpsamp_ok(&[
        "simulate",
        "--model",
        "glmhmm",
        "--sequences",
        "4",
        "--steps",
        "50",
        "--out",
        &s(&csv),
    ]);
    let out = d.join("post");
    gpsamp_ok(&[
        "sample",
        "--model",
        "glmhmm",
        "--x",
        "x0",
        "--data",
        &s(&csv),
        "--chains",
        "4",
        "--warmup",
        "100",
        "--draws",
        "50",
        "--backend",
        "cpu",
        "--quiet",
        "--out",
        &s(&out),
    ]);
    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    for name in ["transition[2,1]", "bias[0]", "weight[2,0]", "sd[1]"] {
        assert!(summary.contains(name), "{name} missing from {summary}");
    }
    let (shape, _) = gpsamp::io::npy::read_f32(&out.join("draws.npy")).unwrap();
    assert_eq!(shape, vec![4, 50, 3 + 9 + 3 + 3 + 3]);
}

#[test]
fn cli_em_fits_groups_with_their_own_sequence_ids() {
    let d = tmp("groups");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let csv = d.join("g.csv");
    gpsamp_ok(&[
        "simulate",
        "--model",
        "hmm",
        "--datasets",
        "2",
        "--sequences",
        "2",
        "--out",
        &s(&csv),
    ]);
    let out = d.join("fit");
    let stdout = gpsamp_ok(&[
        "em",
        "--model",
        "hmm",
        "--data",
        &s(&csv),
        "--group",
        "dataset",
        "--restarts",
        "2",
        "--backend",
        "cpu",
        "--out",
        &s(&out),
    ]);
    assert_eq!(stdout.matches("log likelihood").count(), 2, "{stdout}");
    let params: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("params.json")).unwrap()).unwrap();
    assert_eq!(params["datasets"].as_array().unwrap().len(), 2);
    let states = std::fs::read_to_string(out.join("states.csv")).unwrap();
    assert_eq!(states.lines().next(), Some("group,seq,t,state"));
    assert_eq!(states.lines().count(), 1 + 2 * 2 * 200);
}

#[test]
fn cli_sbc_runs_on_a_glm_hmm() {
    let d = tmp("sbc");
    let out = d.join("study");
    gpsamp_ok(&[
        "sbc",
        "--model",
        "glmhmm",
        "--states",
        "2",
        "--features",
        "1",
        "--n",
        "60",
        "--datasets",
        "8",
        "--warmup",
        "100",
        "--draws",
        "100",
        "--backend",
        "cpu",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    for name in [
        "transition[1,1]",
        "bias[1]",
        "weight[1,0]",
        "sd[0]",
        "log_lik",
    ] {
        assert!(summary.contains(name), "{name} missing from {summary}");
    }
}

/// Reads an f32 .npy written by gpsamp as f64.
fn npy(path: &std::path::Path) -> (Vec<usize>, Vec<f64>) {
    let (shape, v) = gpsamp::io::npy::read_f32(path).unwrap();
    (shape, v.into_iter().map(f64::from).collect())
}

#[test]
fn decoding_under_given_parameters_reproduces_the_fit_and_decodes_new_sequences() {
    let d = tmp("decode");
    let s = |p: &str| d.s(p);
    gpsamp_ok(&[
        "simulate",
        "--model",
        "hmm",
        "--sequences",
        "3",
        "--steps",
        "150",
        "--seed",
        "4",
        "--out",
        &s("train.csv"),
    ]);
    gpsamp_ok(&[
        "em",
        "--model",
        "hmm",
        "--data",
        &s("train.csv"),
        "--backend",
        "cpu",
        "--quiet",
        "--out",
        &s("fit"),
    ]);
    // Decoding the training data under the fitted parameters gives what em wrote.
    gpsamp_ok(&[
        "em",
        "--model",
        "hmm",
        "--data",
        &s("train.csv"),
        "--params",
        &s("fit/params.json"),
        "--decode",
        "--quiet",
        "--out",
        &s("dec"),
    ]);
    let read = |p: &str| std::fs::read_to_string(d.join(p)).unwrap();
    assert_eq!(read("dec/states.csv"), read("fit/states.csv"));
    // Decoding draws the states and emissions (no EM trace: nothing was fitted), the same
    // figures as the fit's.
    assert!(!d.join("dec/em_trace.svg").exists());
    for f in ["states.svg", "emissions.svg"] {
        assert_eq!(read(&format!("dec/{f}")), read(&format!("fit/{f}")), "{f}");
    }
    let (shape, smoothed) = npy(&d.join("dec/posteriors.npy"));
    assert_eq!(smoothed, npy(&d.join("fit/posteriors.npy")).1);
    let params: serde_json::Value = serde_json::from_str(&read("fit/params.json")).unwrap();
    let fitted = params["datasets"][0]["log_likelihood"].as_f64().unwrap();
    let total: f64 = read("dec/sequences.csv")
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(
        (total - fitted).abs() < 1e-9 * fitted.abs(),
        "{total} vs {fitted}"
    );
    // Filtered probabilities sum to 1 per row and equal the smoothed ones at the last step
    // of every sequence (nothing comes after it).
    let (_, filt) = npy(&d.join("dec/filtered.npy"));
    let k = shape[1];
    for row in filt.chunks(k) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-5);
    }
    for end in [149, 299, 449] {
        for j in 0..k {
            let (f, g) = (filt[end * k + j], smoothed[end * k + j]);
            assert!((f - g).abs() < 1e-5, "step {end} state {j}: {f} vs {g}");
        }
    }
    // New sequences from the same HMM, decoded under the truth file: the Viterbi path
    // recovers the simulated states.
    gpsamp_ok(&[
        "simulate",
        "--model",
        "hmm",
        "--sequences",
        "2",
        "--steps",
        "200",
        "--seed",
        "9",
        "--out",
        &s("new.csv"),
    ]);
    gpsamp_ok(&[
        "em",
        "--model",
        "hmm",
        "--data",
        &s("new.csv"),
        "--params",
        &s("new.truth.json"),
        "--quiet",
        "--out",
        &s("dec-new"),
    ]);
    let truth: Vec<usize> = read("new.csv")
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    let path: Vec<usize> = read("dec-new/states.csv")
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(agreement(&truth, &path, k) > 0.9);
    // --decode without --params is refused by the parser.
    let (ok, _, err) = common::gpsamp(&[
        "em",
        "--model",
        "hmm",
        "--data",
        &s("new.csv"),
        "--decode",
        "--out",
        &s("x"),
    ]);
    assert!(!ok && err.contains("--params"), "{err}");
}

#[test]
fn em_figures_of_a_grouped_glm_hmm_name_the_dataset_and_input() {
    let d = common::TempDir::new("glmhmm_figures");
    gpsamp_ok(&[
        "simulate",
        "--model",
        "glmhmm",
        "--datasets",
        "2",
        "--sequences",
        "2",
        "--steps",
        "100",
        "--out",
        &d.s("g.csv"),
    ]);
    gpsamp_ok(&[
        "em",
        "--model",
        "glmhmm",
        "--x",
        "x0",
        "--data",
        &d.s("g.csv"),
        "--group",
        "dataset",
        "--restarts",
        "3",
        "--backend",
        "cpu",
        "--quiet",
        "--out",
        &d.s("fit"),
    ]);
    common::assert_svg(
        &d.join("fit/emissions.svg"),
        &[
            "emissions by decoded state (dataset 0)",
            "x0",
            "state 0",
            "state 2",
        ],
    );
    common::assert_svg(&d.join("fit/em_trace.svg"), &["(dataset 0)", "restart"]);
    // --no-plots draws none.
    gpsamp_ok(&[
        "em",
        "--model",
        "glmhmm",
        "--x",
        "x0",
        "--data",
        &d.s("g.csv"),
        "--group",
        "dataset",
        "--restarts",
        "1",
        "--backend",
        "cpu",
        "--quiet",
        "--no-plots",
        "--out",
        &d.s("bare"),
    ]);
    assert!(!d.join("bare/states.svg").exists());
}

#[test]
fn logp_of_an_hmm_takes_a_params_file_or_values_and_the_gpu_agrees() {
    let d = common::TempDir::new("logp_hmm");
    gpsamp_ok(&[
        "simulate",
        "--model",
        "glmhmm",
        "--sequences",
        "3",
        "--steps",
        "80",
        "--out",
        &d.s("g.csv"),
    ]);
    let truth = d.s("g.truth.json");
    let data = d.s("g.csv");
    let logp = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "logp", "--model", "glmhmm", "--x", "x0", "--data", &data, "--json",
        ];
        args.extend(extra);
        let (ok, out, err) = common::gpsamp(&args);
        assert!(ok, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let from_file = logp(&["--params-file", &truth, "--backend", "cpu"]);
    let lp = from_file["datasets"][0]["logp"].as_f64().unwrap();
    assert!(lp.is_finite());
    // The truth's values, given on the command line in the model's order, give the same.
    let names = [
        "initial[0]",
        "initial[1]",
        "initial[2]",
        "transition[0,0]",
        "transition[0,1]",
        "transition[0,2]",
        "transition[1,0]",
        "transition[1,1]",
        "transition[1,2]",
        "transition[2,0]",
        "transition[2,1]",
        "transition[2,2]",
        "bias[0]",
        "bias[1]",
        "bias[2]",
        "weight[0,0]",
        "weight[1,0]",
        "weight[2,0]",
        "sd[0]",
        "sd[1]",
        "sd[2]",
    ];
    let values: Vec<String> = names
        .iter()
        .map(|n| from_file["params"][n].as_f64().unwrap().to_string())
        .collect();
    let by_value = logp(&["--params", &values.join(","), "--backend", "cpu"]);
    let lp2 = by_value["datasets"][0]["logp"].as_f64().unwrap();
    assert!((lp2 - lp).abs() < 1e-9 * lp.abs(), "{lp2} vs {lp}");
    let (ok, _, err) = common::gpsamp(&[
        "logp",
        "--model",
        "glmhmm",
        "--x",
        "x0",
        "--data",
        &d.s("g.csv"),
        "--backend",
        "cpu",
    ]);
    assert!(!ok && err.contains("--params-file"), "{err}");
    if common::gpu().is_some() {
        let gpu = logp(&["--params-file", &truth, "--backend", "gpu"]);
        let (a, b) = (gpu["datasets"][0]["logp"].as_f64().unwrap(), lp);
        assert!((a - b).abs() < 1e-4 * b.abs(), "gpu {a} vs cpu {b}");
        let ga: Vec<f64> =
            serde_json::from_value(gpu["datasets"][0]["grad_unconstrained"].clone()).unwrap();
        let gb: Vec<f64> =
            serde_json::from_value(from_file["datasets"][0]["grad_unconstrained"].clone()).unwrap();
        assert!(common::rel_norm(&ga, &gb) < 1e-3, "{ga:?} vs {gb:?}");
    }
}

#[test]
fn sampled_state_paths_have_the_smoothed_marginals() {
    let d = common::TempDir::new("ffbs");
    gpsamp_ok(&[
        "simulate",
        "--model",
        "hmm",
        "--sequences",
        "2",
        "--steps",
        "60",
        "--seed",
        "8",
        "--out",
        &d.s("h.csv"),
    ]);
    gpsamp_ok(&[
        "em",
        "--model",
        "hmm",
        "--data",
        &d.s("h.csv"),
        "--params",
        &d.s("h.truth.json"),
        "--decode",
        "--sample-paths",
        "4000",
        "--seed",
        "3",
        "--quiet",
        "--no-plots",
        "--out",
        &d.s("dec"),
    ]);
    let (shape, paths) = npy(&d.join("dec/sampled_paths.npy"));
    assert_eq!(shape, vec![4000, 120]);
    let (_, smoothed) = npy(&d.join("dec/posteriors.npy"));
    // Each row's share of draws in each state is its smoothed probability (binomial error
    // of 4 000 draws: sd at most 0.008).
    let mut worst = 0.0f64;
    for row in 0..120 {
        for s in 0..3 {
            let share = (0..4000)
                .filter(|&r| paths[r * 120 + row] == s as f64)
                .count() as f64
                / 4000.0;
            worst = worst.max((share - smoothed[row * 3 + s]).abs());
        }
    }
    assert!(worst < 0.035, "largest gap {worst}");
    // Adjacent states of a draw follow the chain: pairs are distributed as the smoothed
    // two-slice marginals, so a draw is not 120 independent marginal draws. Check one
    // consequence: the share of draws that switch state between two steps is far below
    // what independent draws from the marginals would give where both are uncertain.
    let switch = |row: usize| {
        (0..4000)
            .filter(|&r| paths[r * 120 + row] != paths[r * 120 + row + 1])
            .count() as f64
            / 4000.0
    };
    let independent = |row: usize| {
        1.0 - (0..3)
            .map(|s| smoothed[row * 3 + s] * smoothed[(row + 1) * 3 + s])
            .sum::<f64>()
    };
    let (obs, ind): (f64, f64) = (0..59)
        .map(|r| (switch(r), independent(r)))
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    assert!(obs <= ind + 0.05, "switches {obs} vs independent {ind}");
}

#[test]
fn hmc_fits_of_an_hmm_store_the_posterior_mean_state_probabilities() {
    let d = common::TempDir::new("state_probs");
    gpsamp_ok(&[
        "simulate",
        "--model",
        "hmm",
        "--sequences",
        "2",
        "--steps",
        "150",
        "--seed",
        "5",
        "--out",
        &d.s("h.csv"),
    ]);
    gpsamp_ok(&[
        "sample",
        "--model",
        "hmm",
        "--data",
        &d.s("h.csv"),
        "--chains",
        "8",
        "--draws",
        "200",
        "--backend",
        "cpu",
        "--quiet",
        "--no-plots",
        "--out",
        &d.s("fit"),
    ]);
    gpsamp_ok(&[
        "em",
        "--model",
        "hmm",
        "--data",
        &d.s("h.csv"),
        "--backend",
        "cpu",
        "--quiet",
        "--no-plots",
        "--out",
        &d.s("em"),
    ]);
    let (shape, probs) = npy(&d.join("fit/state_probs.npy"));
    assert_eq!(shape, vec![300, 3]);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("fit/meta.json")).unwrap()).unwrap();
    assert_eq!(meta["state_probs_shape"], serde_json::json!([300, 3]));
    for row in probs.chunks(3) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-4);
    }
    // They recover the simulated states, and are close to the smoothed probabilities at
    // the EM fit (the posterior of the parameters is narrow at 300 steps).
    let text = std::fs::read_to_string(d.join("h.csv")).unwrap();
    let states: Vec<usize> = text
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    let argmax = |r: &[f64]| (0..3).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap();
    let right = probs
        .chunks(3)
        .zip(&states)
        .filter(|(r, &s)| argmax(r) == s)
        .count();
    assert!(
        right as f64 > 0.85 * 300.0,
        "{right} of 300 states recovered"
    );
    let (_, em) = npy(&d.join("em/posteriors.npy"));
    let gap = probs
        .iter()
        .zip(&em)
        .map(|(a, b)| (a - b).abs())
        .sum::<f64>()
        / probs.len() as f64;
    assert!(
        gap < 0.05,
        "mean gap to the EM fit's smoothed probabilities: {gap}"
    );
}

/// The tutorial's switching regression (weights 1/-0.8/0.2, biases 2/0/-1, sds 1/0.8/1.5,
/// transitions 0.5/0.4/0.1 rotated) on its sine input x_t = 4 sin(2 pi t / 50) + 5, 100 steps
/// per sequence, simulated here with the test's own generator.
fn sine_sequences(n_seq: usize, seed: u64) -> (String, Vec<usize>, Vec<(f64, f64)>) {
    let (w, b, sd) = ([1.0, -0.8, 0.2], [2.0, 0.0, -1.0], [1.0, 0.8, 1.5]);
    let a = [[0.5, 0.4, 0.1], [0.1, 0.5, 0.4], [0.4, 0.1, 0.5]];
    let mut state = seed
        .wrapping_mul(2862933555777941757)
        .wrapping_add(3037000493);
    let mut u = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let mut csv = String::from("seq,t,x0,y\n");
    let (mut states, mut xy) = (Vec::new(), Vec::new());
    for s in 0..n_seq {
        let mut z = ((u() * 3.0) as usize).min(2);
        for t in 0..100 {
            if t > 0 {
                let r = u();
                z = if r < a[z][0] {
                    0
                } else if r < a[z][0] + a[z][1] {
                    1
                } else {
                    2
                };
            }
            let x = (2.0 * std::f64::consts::PI * t as f64 / 50.0).sin() * 4.0 + 5.0;
            let (u1, u2) = (u(), u());
            let e = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            let y = w[z] * x + b[z] + sd[z] * e;
            csv.push_str(&format!("{s},{t},{x},{y}\n"));
            states.push(z);
            xy.push((x, y));
        }
    }
    (csv, states, xy)
}

#[test]
fn decoding_the_tutorial_sine_input_sequence_under_the_truth_recovers_its_states() {
    let d = common::TempDir::new("sine");
    // The default truth of `simulate --model glmhmm` is the tutorial's.
    gpsamp_ok(&[
        "simulate",
        "--model",
        "glmhmm",
        "--sequences",
        "1",
        "--steps",
        "2",
        "--out",
        &d.s("truth.csv"),
    ]);
    let (csv, states, xy) = sine_sequences(20, 7);
    std::fs::write(d.join("sine.csv"), csv).unwrap();
    gpsamp_ok(&[
        "em",
        "--model",
        "glmhmm",
        "--x",
        "x0",
        "--data",
        &d.s("sine.csv"),
        "--params",
        &d.s("truth.truth.json"),
        "--decode",
        "--quiet",
        "--out",
        &d.s("dec"),
    ]);
    let path: Vec<usize> = std::fs::read_to_string(d.join("dec/states.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(path.len(), states.len());
    let viterbi =
        path.iter().zip(&states).filter(|(a, b)| a == b).count() as f64 / states.len() as f64;
    // Each point alone: the state whose line explains it best, ignoring the sequence.
    let (w, b, sd) = ([1.0, -0.8, 0.2], [2.0, 0.0, -1.0], [1.0, 0.8, 1.5]);
    let alone = xy
        .iter()
        .zip(&states)
        .filter(|&(&(x, y), &z)| {
            let ll = |k: usize| -((y - w[k] * x - b[k]) / sd[k]).powi(2) / 2.0 - f64::ln(sd[k]);
            (0..3).max_by(|&i, &j| ll(i).total_cmp(&ll(j))).unwrap() == z
        })
        .count() as f64
        / states.len() as f64;
    eprintln!(
        "Viterbi agrees with the true path on {viterbi:.3} of 2 000 steps; points alone {alone:.3}"
    );
    assert!(viterbi > 0.75, "Viterbi agreement {viterbi}");
    assert!(
        viterbi > alone + 0.02,
        "Viterbi {viterbi} vs points alone {alone}"
    );
}
