//! Draws pinned bit for bit: short `gpsamp sample` runs of several families whose
//! `draws.npy` and `sample_stats.npy` must hash to the values recorded before the
//! architecture refactor (issue 13), on the CPU backend in f64 and on lavapipe; and the f32
//! CPU kernels' runs, recorded when they were added (issue 17). The CPU runs are repeated on
//! every SIMD tier the processor has (`GPSAMP_SIMD` caps it), which must give the same bits:
//! the kernels fix their lanes and summation order in code. A change that moves one bit of
//! one draw fails here: refactors must not change results; a change that means to (a new
//! sampler default, say) updates the hashes and says why in its commit.
//!
//! Print the current hashes with `cargo test --release --test pinned_draws -- --nocapture`.

mod common;

use common::{gpsamp_in_env, TempDir};

/// (name, command-line arguments after `sample`).
const RUNS: &[(&str, &[&str])] = &[
    (
        "glm",
        &[
            "--model", "glm", "--chains", "4", "--warmup", "150", "--draws", "40",
        ],
    ),
    (
        "mixglm",
        &[
            "--model",
            "mixglm",
            "--components",
            "2",
            "--chains",
            "8",
            "--warmup",
            "150",
            "--draws",
            "40",
        ],
    ),
    (
        "hmm",
        &[
            "--model",
            "hmm",
            "--stickiness",
            "5",
            "--chains",
            "4",
            "--warmup",
            "60",
            "--draws",
            "20",
        ],
    ),
    (
        "eiv",
        &[
            "--model", "eiv", "--chains", "4", "--warmup", "100", "--draws", "30",
        ],
    ),
];

/// FNV-1a over the bytes of the run's two arrays. `cpu` is the CPU backend's (precision,
/// SIMD tier).
fn hash_run(backend: &str, cpu: Option<(&str, &str)>, args: &[&str]) -> Option<String> {
    let t = TempDir::new("pinned");
    let mut full = vec!["sample", "--seed", "11", "--quiet", "--backend", backend];
    let mut env = Vec::new();
    if let Some((precision, simd)) = cpu {
        full.extend_from_slice(&["--precision", precision]);
        env.push(("GPSAMP_SIMD", simd));
    }
    full.extend_from_slice(args);
    full.extend_from_slice(&["--out", "fit"]);
    let (code, _, err) = gpsamp_in_env(&t.0, &full, &env);
    assert_eq!(code, 0, "{full:?}: {err}");
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for f in ["draws.npy", "sample_stats.npy"] {
        for b in std::fs::read(t.join("fit").join(f)).unwrap() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    Some(format!("{h:016x}"))
}

fn check(backend: &str, cpu: Option<(&str, &str)>, pinned: &[(&str, &str)]) {
    let mut bad = Vec::new();
    for (name, args) in RUNS {
        let Some(&(_, want)) = pinned.iter().find(|(n, _)| n == name) else {
            continue;
        };
        let got = hash_run(backend, cpu, args).unwrap();
        eprintln!("{backend} {cpu:?} {name}: {got}");
        if got != want {
            bad.push(format!("{name}: {got}, pinned {want}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{backend} {cpu:?} draws changed:\n{}",
        bad.join("\n")
    );
}

/// The SIMD tiers to run: every cap of `GPSAMP_SIMD` (a cap above what the processor has
/// runs its best tier again).
const TIERS: [&str; 3] = ["avx512", "avx2", "portable"];

#[test]
fn cpu_f64_draws_are_pinned_on_every_simd_tier() {
    for simd in TIERS {
        check("cpu", Some(("f64", simd)), CPU);
    }
}

#[test]
fn cpu_f32_draws_are_pinned_on_every_simd_tier() {
    for simd in TIERS {
        check("cpu", Some(("f32", simd)), CPU_F32);
    }
}

#[test]
fn lavapipe_draws_are_pinned() {
    let Some(ctx) = common::gpu() else {
        return;
    };
    if !ctx.summary.name.contains("llvmpipe") {
        eprintln!(
            "\n!!! SKIPPING pinned GPU draws: recorded on lavapipe, this adapter is {} !!!\n",
            ctx.summary.name
        );
        return;
    }
    check("gpu", None, LAVAPIPE);
}

// Recorded on 2026-11-26 at commit "README: the output-folder rules..." (before issue 13);
// re-recorded on 2026-11-27 when the three copies of Adam became one (`math::Adam`): the
// initial ascent's step is now computed as MDN's is, s·m/(√v + ε√c₂) with 1 − β computed,
// which rounds differently from the old m̂/(√v̂ + ε) with the literals 0.1 and 0.001. The same
// step in exact arithmetic; lavapipe's draws (positions in f32) did not move.
const CPU: &[(&str, &str)] = &[
    ("glm", "9e9ffead8e9aafc9"),
    ("mixglm", "6b443d94283981dc"),
    ("hmm", "1f1006302922c9e2"),
    ("eiv", "8dbd227b0a49d6ba"),
];

// Recorded on 2026-11-26 when the f32 CPU kernels were added (issue 17). The HMM and the
// errors-in-variables model have no f32 kernel: in f32 they give their f64 draws.
// Re-recorded with `CPU` (one Adam).
const CPU_F32: &[(&str, &str)] = &[
    ("glm", "ef82037b131bb2ac"),
    ("mixglm", "62708bf5bc520780"),
    ("hmm", "1f1006302922c9e2"),
    ("eiv", "8dbd227b0a49d6ba"),
];

const LAVAPIPE: &[(&str, &str)] = &[
    ("glm", "8cff3e9e6b8d29b5"),
    ("mixglm", "0c0b142ceb593460"),
    ("hmm", "3e8c538619220cd5"),
    ("eiv", "d7b9bc7e70bdb213"),
];
