//! `examples/workflow.rs` (the public API without the CLI: a 1 024-chain fit and a
//! 1 000-dataset study) writes the folders the CLI writes: the same files, and for the same
//! settings the same bytes (meta.json aside, which records timings and the data's source).

mod common;

#[path = "../examples/workflow.rs"]
mod workflow;

use common::{gpsamp_in, TempDir};

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn the_example_writes_what_the_cli_writes() {
    let t = TempDir::new("workflow");
    workflow::run(&t.join("api"), &gpsamp::Backend::cpu()).unwrap();
    let (code, _, err) = gpsamp_in(
        &t.0,
        &[
            "sample",
            "--model",
            "glm",
            "--chains",
            "1024",
            "--warmup",
            "200",
            "--draws",
            "100",
            "--seed",
            "1",
            "--backend",
            "cpu",
            "--quiet",
            "--out",
            "cli/fit",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = gpsamp_in(
        &t.0,
        &[
            "sbc",
            "--model",
            "glm",
            "--datasets",
            "1000",
            "--warmup",
            "300",
            "--draws",
            "300",
            "--backend",
            "cpu",
            "--quiet",
            "--out",
            "cli/study",
        ],
    );
    assert_eq!(code, 0, "{err}");
    for (sub, same) in [
        (
            "fit",
            &[
                "draws.npy",
                "sample_stats.npy",
                "summary.csv",
                "summary.json",
            ][..],
        ),
        (
            "study",
            &["study.json", "datasets.csv", "summary.csv", "summary.json"][..],
        ),
    ] {
        let (api, cli) = (t.join("api").join(sub), t.join("cli").join(sub));
        assert_eq!(names(&api), names(&cli), "{sub}: different files");
        for f in same {
            assert!(
                std::fs::read(api.join(f)).unwrap() == std::fs::read(cli.join(f)).unwrap(),
                "{sub}/{f} differs between the API and the CLI"
            );
        }
    }
}
