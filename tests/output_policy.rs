//! The output policy (DESIGN §12) from the command line: `--out` never destroys what gpsamp
//! did not write, an interrupted or failed run leaves nothing behind, stale temporaries of
//! dead processes are removed, `--keep-partial` keeps the draws made so far, and a closed
//! stdout ends a run quietly. Each test fails on the gpsamp before the policy.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{gpsamp_in, snapshot, TempDir};

/// A quick `sample` run (the tutorial's regression, simulated) into `out`.
fn sample_args<'a>(out: &'a str, seed: &'a str) -> Vec<&'a str> {
    vec![
        "sample",
        "--model",
        "glm",
        "--chains",
        "2",
        "--warmup",
        "50",
        "--draws",
        "20",
        "--seed",
        seed,
        "--backend",
        "cpu",
        "--quiet",
        "--out",
        out,
    ]
}

/// Names in `dir` that look like gpsamp temporaries.
fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".gpsamp-") || n.contains(".partial-"))
        .collect()
}

fn meta_seed(dir: &Path) -> u64 {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    v["seed"].as_u64().unwrap()
}

#[test]
fn out_holding_the_input_is_refused_and_untouched() {
    let t = TempDir::new("policy-input");
    let (code, _, err) = gpsamp_in(
        &t.0,
        &[
            "simulate",
            "--model",
            "glm",
            "--n",
            "50",
            "--out",
            "proj/data.csv",
        ],
    );
    assert_eq!(code, 0, "{err}");
    std::fs::create_dir_all(t.join("proj/notes")).unwrap();
    std::fs::write(t.join("proj/notes/a.txt"), "keep me").unwrap();
    let before = snapshot(&t.0);
    let (code, _, err) = gpsamp_in(
        &t.0,
        &[
            "sample",
            "--model",
            "glm",
            "--data",
            "proj/data.csv",
            "--x",
            "x0",
            "--warmup",
            "20",
            "--draws",
            "10",
            "--backend",
            "cpu",
            "--out",
            "proj",
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("--out proj") && err.contains("holds the input"),
        "{err}"
    );
    // Refused even with --force.
    let (code, _, _) = gpsamp_in(
        &t.0,
        &[
            "sample",
            "--model",
            "glm",
            "--data",
            "proj/data.csv",
            "--x",
            "x0",
            "--out",
            "proj",
            "--force",
        ],
    );
    assert_ne!(code, 0);
    assert_eq!(snapshot(&t.0), before);
}

#[test]
fn foreign_folder_file_and_cwd_are_refused() {
    let t = TempDir::new("policy-foreign");
    std::fs::create_dir_all(t.join("mine/sub")).unwrap();
    std::fs::write(t.join("mine/results.txt"), "precious").unwrap();
    std::fs::write(t.join("plain.txt"), "a file").unwrap();
    let before = snapshot(&t.0);
    for (out, needle) in [
        ("mine", "gpsamp did not write"),
        ("plain.txt", "is a file"),
        (".", "working directory"),
        ("..", "working directory"),
    ] {
        let (code, _, err) = gpsamp_in(&t.0, &sample_args(out, "1"));
        assert_ne!(code, 0, "--out {out} was accepted");
        assert!(err.contains(needle), "--out {out}: {err}");
        assert_eq!(snapshot(&t.0), before, "--out {out} touched files");
    }
    // The working directory by its absolute path, even with --force.
    let abs = t.0.display().to_string();
    let mut args = sample_args(&abs, "1");
    args.push("--force");
    let (code, _, err) = gpsamp_in(&t.0, &args);
    assert_ne!(code, 0);
    assert!(err.contains("working directory"), "{err}");
    assert_eq!(snapshot(&t.0), before);
    // --force replaces a foreign folder that holds nothing of the run's.
    let mut args = sample_args("mine", "1");
    args.push("--force");
    let (code, _, err) = gpsamp_in(&t.0, &args);
    assert_eq!(code, 0, "{err}");
    assert!(t.join("mine/draws.npy").exists() && !t.join("mine/results.txt").exists());
}

#[test]
fn previous_output_of_the_same_command_is_replaced() {
    let t = TempDir::new("policy-replace");
    let (code, _, err) = gpsamp_in(&t.0, &sample_args("fit", "1"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(meta_seed(&t.join("fit")), 1);
    let (code, _, err) = gpsamp_in(&t.0, &sample_args("fit", "2"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(meta_seed(&t.join("fit")), 2);
    assert!(temporaries(&t.0).is_empty(), "{:?}", temporaries(&t.0));
    // An empty folder is fine too; another command's output is not.
    std::fs::create_dir(t.join("empty")).unwrap();
    assert_eq!(gpsamp_in(&t.0, &sample_args("empty", "1")).0, 0);
    let (code, _, err) = gpsamp_in(
        &t.0,
        &[
            "sbc",
            "--model",
            "glm",
            "--datasets",
            "2",
            "--n",
            "20",
            "--warmup",
            "30",
            "--draws",
            "30",
            "--backend",
            "cpu",
            "--quiet",
            "--out",
            "fit",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("gpsamp sample"), "{err}");
    assert_eq!(meta_seed(&t.join("fit")), 2);
}

#[test]
fn merge_into_a_parent_of_its_shards_is_refused() {
    let t = TempDir::new("policy-merge");
    for i in ["1", "2"] {
        let shard = format!("{i}/2");
        let out = format!("A/{i}");
        let (code, _, err) = gpsamp_in(
            &t.0,
            &[
                "sbc",
                "--model",
                "glm",
                "--datasets",
                "4",
                "--n",
                "20",
                "--warmup",
                "30",
                "--draws",
                "30",
                "--backend",
                "cpu",
                "--quiet",
                "--shard",
                &shard,
                "--out",
                &out,
            ],
        );
        assert_eq!(code, 0, "{err}");
    }
    let before = snapshot(&t.0);
    for out in ["A", "A/1", "."] {
        let (code, _, err) = gpsamp_in(&t.0, &["merge", "A/1", "A/2", "--out", out, "--force"]);
        assert_ne!(code, 0, "merge --out {out} was accepted");
        assert!(
            err.contains("holds the input") || err.contains("working directory"),
            "{err}"
        );
        assert_eq!(snapshot(&t.0), before);
    }
    let (code, _, err) = gpsamp_in(&t.0, &["merge", "A/1", "A/2", "--out", "merged"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn stale_temporaries_of_dead_processes_are_removed() {
    let t = TempDir::new("policy-stale");
    // A temporary whose owner died (its marker is not locked), one of an older gpsamp, and
    // one that a live process (this test) holds.
    let dead = t.join(".fit.gpsamp-tmp-4000001-0");
    std::fs::create_dir(&dead).unwrap();
    std::fs::write(dead.join(".gpsamp-output"), "{}").unwrap();
    std::fs::write(dead.join("draws.npy"), vec![0u8; 1 << 16]).unwrap();
    let legacy = t.join(".fit.partial-4000002");
    std::fs::create_dir(&legacy).unwrap();
    std::fs::write(legacy.join("draws.npy"), vec![0u8; 1 << 10]).unwrap();
    let live = t.join(".fit.gpsamp-tmp-1-7");
    std::fs::create_dir(&live).unwrap();
    let lock = std::fs::File::create(live.join(".gpsamp-output")).unwrap();
    lock.try_lock().unwrap();
    let (code, _, err) = gpsamp_in(&t.0, &sample_args("fit", "1"));
    assert_eq!(code, 0, "{err}");
    assert!(
        !dead.exists(),
        "the dead process's temporary is still there"
    );
    assert!(!legacy.exists(), "the old-style temporary is still there");
    assert!(live.exists(), "a live process's temporary was removed");
    drop(lock);
}

/// Starts a long `sample`, waits until it writes its temporary, lets it run `after`, sends
/// SIGINT, and returns its exit code and stderr.
fn interrupt_sample(dir: &Path, out: &str, extra: &[&str], after: Duration) -> (i32, String) {
    let mut args = vec![
        "sample",
        "--model",
        "glm",
        "--chains",
        "4",
        "--warmup",
        "100",
        "--draws",
        "3000000",
        "--backend",
        "cpu",
        "--out",
        out,
    ];
    args.extend_from_slice(extra);
    let child = Command::new(env!("CARGO_BIN_EXE_gpsamp"))
        .current_dir(dir)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !temporaries(dir)
        .iter()
        .any(|n| dir.join(n).join("draws.npy").exists())
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no temporary appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(after);
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn sigint_during_sample_leaves_no_temporary_and_the_old_output() {
    let t = TempDir::new("policy-sigint");
    let (code, _, err) = gpsamp_in(&t.0, &sample_args("fit", "5"));
    assert_eq!(code, 0, "{err}");
    let before = snapshot(&t.0);
    for wait in [0, 1500] {
        let (code, err) = interrupt_sample(&t.0, "fit", &[], Duration::from_millis(wait));
        assert_eq!(code, 130, "{err}");
        assert!(err.contains("interrupted"), "{err}");
        assert!(temporaries(&t.0).is_empty(), "{:?}", temporaries(&t.0));
        assert_eq!(snapshot(&t.0), before, "the previous output changed");
        assert_eq!(meta_seed(&t.join("fit")), 5);
    }
}

#[test]
fn keep_partial_keeps_the_draws_made_so_far() {
    let t = TempDir::new("policy-partial");
    let (code, err) = interrupt_sample(
        &t.0,
        "fit",
        &["--keep-partial", "--quiet"],
        Duration::from_millis(2500),
    );
    assert_eq!(code, 130, "{err}");
    assert!(err.contains("--keep-partial"), "{err}");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.join("fit/meta.json")).unwrap()).unwrap();
    let kept = meta["draws_completed"].as_u64().unwrap() as usize;
    assert!(kept > 0 && kept < 3_000_000, "kept {kept}");
    assert_eq!(meta["interrupted"], true);
    assert_eq!(meta["draws_shape"][1].as_u64().unwrap() as usize, kept);
    let (shape, data) = gpsamp::io::npy::read_f32(&t.join("fit/draws.npy")).unwrap();
    assert_eq!(shape, vec![4, kept, 3]);
    // The last kept draw of every chain was really written (sigma > 0), not zero fill.
    for c in 0..4 {
        assert!(data[(c * kept + kept - 1) * 3 + 2] > 0.0, "chain {c}");
    }
    let (shape, _) = gpsamp::io::npy::read_f32(&t.join("fit/sample_stats.npy")).unwrap();
    assert_eq!(shape, vec![4, kept, 5]);
    let summary = std::fs::read_to_string(t.join("fit/summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 4);
    assert!(temporaries(&t.0).is_empty());
}

#[test]
fn simulate_replaces_only_its_own_files() {
    let t = TempDir::new("policy-simulate");
    std::fs::write(t.join("mine.csv"), "a,b\n1,2\n").unwrap();
    let sim = |out: &str, force: bool| {
        let mut args = vec!["simulate", "--model", "glm", "--n", "20", "--out", out];
        if force {
            args.push("--force");
        }
        gpsamp_in(&t.0, &args)
    };
    let (code, _, err) = sim("mine.csv", false);
    assert_ne!(code, 0);
    assert!(err.contains("gpsamp did not write"), "{err}");
    assert_eq!(
        std::fs::read_to_string(t.join("mine.csv")).unwrap(),
        "a,b\n1,2\n"
    );
    assert!(!t.join("mine.truth.json").exists());
    assert_eq!(sim("sims.csv", false).0, 0);
    assert_eq!(sim("sims.csv", false).0, 0, "its own output is replaced");
    // Edited by the user: no longer what gpsamp wrote.
    let mut text = std::fs::read_to_string(t.join("sims.csv")).unwrap();
    text.push_str("0,1,2\n");
    std::fs::write(t.join("sims.csv"), &text).unwrap();
    assert_ne!(sim("sims.csv", false).0, 0);
    assert_eq!(std::fs::read_to_string(t.join("sims.csv")).unwrap(), text);
    assert_eq!(sim("sims.csv", true).0, 0);
    assert!(temporaries(&t.0).is_empty());
}

/// Runs `args` with stdout into a pipe whose reader takes `take` bytes and closes it.
fn closed_pipe(dir: &Path, args: &[&str], take: usize) -> (Option<i32>, String) {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpsamp"))
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = vec![0u8; take];
    stdout.read_exact(&mut buf).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn closed_stdout_ends_quietly() {
    let t = TempDir::new("policy-pipe");
    // Enough datasets that the output outgrows the pipe's buffer.
    let (code, _, err) = gpsamp_in(
        &t.0,
        &[
            "simulate",
            "--model",
            "glm",
            "--n",
            "5",
            "--datasets",
            "3000",
            "--out",
            "d.csv",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, err) = closed_pipe(
        &t.0,
        &[
            "logp",
            "--model",
            "glm",
            "--data",
            "d.csv",
            "--x",
            "x0",
            "--group",
            "dataset",
            "--backend",
            "cpu",
        ],
        1,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    common::tiny_mdn(&t);
    let ys: Vec<String> = (0..4000).map(|i| (i % 100).to_string()).collect();
    let ys = ys.join(",");
    let (code, err) = closed_pipe(&t.0, &["mdn", "predict", "--model", "net", "--y", &ys], 10);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
