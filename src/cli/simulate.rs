//! `gpsamp simulate`: datasets drawn from a model's prior, written as CSV (columns
//! `dataset,x0..,[system,]y`; for HMMs `[dataset,]seq,t,x0..,y,state`) with the true
//! parameters as JSON beside it.

use std::path::Path;

use gpsamp::io::output::OutputFile;
use gpsamp::rng::{host_rng, Purpose};

use super::args::ModelArgs;

/// Options of `gpsamp simulate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Input columns to simulate (glm and mixglm), each standard normal.
    #[arg(long, default_value_t = 1)]
    features: usize,
    /// Write the tutorial's dataset for the model instead (what `gpsamp sample` fits
    /// without --data: the linear, logistic and Poisson regressions, the mixture of two
    /// Gaussians, the mixture of two regressions; --seed as there), one dataset.
    #[arg(long, conflicts_with_all = ["n", "datasets"])]
    tutorial: bool,
    /// eiv shared: systems per dataset, each with its own b (a `system` column 0..S).
    #[arg(long)]
    systems: Option<usize>,
    /// Points per dataset.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Number of datasets.
    #[arg(long, default_value_t = 1)]
    datasets: usize,
    /// Seed; dataset i is drawn from (seed, i), so any dataset can be redrawn alone.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// hmm/glmhmm: sequences per dataset.
    #[arg(long, default_value_t = 3)]
    sequences: usize,
    /// hmm/glmhmm: steps per sequence.
    #[arg(long, default_value_t = 200)]
    steps: usize,
    /// hmm/glmhmm: true parameters as JSON (the keys of `gpsamp em`'s params.json, or that
    /// file itself: its first dataset); default: the tutorial's for 3 Gaussian states, else
    /// random sticky ones from --seed.
    #[arg(long)]
    params: Option<std::path::PathBuf>,
    /// Output CSV; the truth goes to the same path with `.truth.json`. An existing file is
    /// replaced only when an earlier `gpsamp simulate` wrote it (or with --force).
    #[arg(long)]
    out: std::path::PathBuf,
    /// Replace --out and its .truth.json even when gpsamp did not write them.
    #[arg(long)]
    force: bool,
}

/// FNV-1a of `bytes`: how the truth file recognises the CSV it was written with.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The `gpsamp_output` record of a truth file written by `simulate`.
fn truth_record(truth: &Path) -> Option<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(truth).ok()?).ok()?;
    let rec = v.get("gpsamp_output")?.clone();
    (rec.get("command")?.as_str()? == "simulate").then_some(rec)
}

/// The CSV and truth file of a run, checked before any work: each may be replaced only when
/// an earlier `simulate` wrote it (the CSV's size and hash are in its truth file).
struct Outputs {
    csv: OutputFile,
    truth: OutputFile,
    truth_path: std::path::PathBuf,
}

impl Outputs {
    fn create(a: &Args) -> anyhow::Result<Self> {
        let truth_path = a.out.with_extension("truth.json");
        let inputs: Vec<&Path> = a
            .params
            .as_deref()
            .into_iter()
            .chain(a.model.model_file.as_deref())
            .collect();
        let tp = truth_path.clone();
        let csv_is_ours = move |csv: &Path| {
            let Some(rec) = truth_record(&tp) else {
                return false;
            };
            let Ok(bytes) = std::fs::read(csv) else {
                return false;
            };
            rec.get("csv_bytes").and_then(|v| v.as_u64()) == Some(bytes.len() as u64)
                && rec.get("csv_fnv1a").and_then(|v| v.as_str())
                    == Some(format!("{:016x}", fnv1a(&bytes)).as_str())
        };
        let csv = OutputFile::create("--out", &a.out, a.force, &inputs, &csv_is_ours)?;
        let truth = OutputFile::create(
            "--out (its .truth.json)",
            &truth_path,
            a.force,
            &inputs,
            &|t: &Path| truth_record(t).is_some(),
        )?;
        Ok(Self {
            csv,
            truth,
            truth_path,
        })
    }

    /// Writes both files and renames them into place.
    fn write(mut self, csv: &str, mut meta: serde_json::Value) -> anyhow::Result<()> {
        meta["gpsamp_output"] = serde_json::json!({
            "command": "simulate",
            "csv_bytes": csv.len(),
            "csv_fnv1a": format!("{:016x}", fnv1a(csv.as_bytes())),
        });
        self.csv.write_all(csv.as_bytes())?;
        self.truth
            .write_all(serde_json::to_string_pretty(&meta)?.as_bytes())?;
        self.csv.commit()?;
        self.truth.commit()?;
        Ok(())
    }
}

/// `simulate --model hmm|glmhmm`: CSV `[dataset,]seq,t,x0..,y(0..),state` like the tutorial's.
fn run_hmm(a: &Args, outs: Outputs) -> anyhow::Result<()> {
    use anyhow::Context;
    use gpsamp::hmm::io::{
        params_from_json, params_to_json, random_params, simulate, tutorial_params,
    };
    let p = if a.model.kind() == super::args::ModelKind::Glmhmm {
        a.features
    } else {
        0
    };
    let spec = a.model.hmm_spec(p, 1)?;
    if a.sequences == 0 || a.steps == 0 || a.datasets == 0 {
        anyhow::bail!("--sequences, --steps and --datasets must be at least 1");
    }
    let given = match &a.params {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--params: reading {}", path.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("--params: {} is not JSON", path.display()))?;
            let v = v.get("datasets").and_then(|d| d.get(0)).unwrap_or(&v);
            Some(
                params_from_json(&spec, v)
                    .with_context(|| format!("--params {}", path.display()))?,
            )
        }
        None => None,
    };
    let mut csv = String::new();
    if a.datasets > 1 {
        csv.push_str("dataset,");
    }
    csv.push_str("seq,t");
    for j in 0..p {
        csv.push_str(&format!(",x{j}"));
    }
    csv.push_str(",y,state\n");
    let mut truths = Vec::new();
    for b in 0..a.datasets {
        let mut rng = host_rng(a.seed, b as u64, Purpose::Simulate);
        let prm = given
            .clone()
            .or_else(|| tutorial_params(&spec))
            .unwrap_or_else(|| random_params(&spec, &mut rng));
        let (d, states) = simulate(&spec, &prm, a.sequences, a.steps, &mut rng);
        for (i, &z) in states.iter().enumerate() {
            if a.datasets > 1 {
                csv.push_str(&format!("{b},"));
            }
            csv.push_str(&format!("{},{}", i / a.steps, i % a.steps));
            for j in 0..p {
                csv.push_str(&format!(",{}", d.x[1 + j][i]));
            }
            csv.push_str(&format!(",{},{z}\n", d.y[i]));
        }
        truths.push(params_to_json(&spec, &prm));
    }
    let truth_path = outs.truth_path.clone();
    let meta = serde_json::json!({"model": gpsamp::Model::name(&a.model.build_hmm(p, 1)?), "seed": a.seed, "sequences": a.sequences, "steps": a.steps, "truth": truths});
    outs.write(&csv, meta)?;
    eprintln!(
        "wrote {} ({} dataset(s) x {} sequences x {} steps) and {}",
        a.out.display(),
        a.datasets,
        a.sequences,
        a.steps,
        truth_path.display()
    );
    Ok(())
}

/// The CSV header: `dataset, x0..x{p-1}, [system,] y`.
fn header(p: usize, system: bool) -> String {
    let mut csv = String::from("dataset");
    for j in 0..p {
        csv.push_str(&format!(",x{j}"));
    }
    if system {
        csv.push_str(",system");
    }
    csv.push_str(",y\n");
    csv
}

/// Appends dataset `b`'s rows (`b, x.., y`) to `csv`.
fn push_rows(csv: &mut String, b: usize, d: &gpsamp::Dataset) {
    for i in 0..d.len() {
        csv.push_str(&b.to_string());
        for col in &d.x {
            csv.push_str(&format!(",{}", col[i]));
        }
        csv.push_str(&format!(",{}\n", d.y[i]));
    }
}

pub fn run(mut a: Args) -> anyhow::Result<()> {
    a.model.resolve()?;
    a.model.builtin_only("simulate")?;
    let outs = Outputs::create(&a)?;
    let rows = if a.model.is_hmm() {
        (a.datasets as u64).saturating_mul((a.sequences as u64).saturating_mul(a.steps as u64))
    } else {
        (a.datasets as u64).saturating_mul(a.n as u64)
    };
    // The CSV is built in memory: about 24 bytes per number, a few numbers per row.
    super::check_memory(
        "--n / --datasets / --sequences / --steps",
        rows.saturating_mul(24 * (a.features as u64 + 4)),
        &format!("{rows} simulated rows"),
    )?;
    if a.model.is_hmm() {
        return run_hmm(&a, outs);
    }
    let p = match a.model.kind() {
        super::args::ModelKind::Gmm => 0,
        super::args::ModelKind::Eiv => a.model.w.len(),
        _ => a.features,
    };
    if a.systems.is_some() && a.model.kind() != super::args::ModelKind::Eiv {
        anyhow::bail!("--systems: only --model eiv pools systems");
    }
    a.model.systems = a.systems;
    let model = a.model.build_any(p)?;
    if a.n == 0 || a.datasets == 0 {
        anyhow::bail!("--n and --datasets must be at least 1");
    }
    let names = model.param_names();
    if a.tutorial {
        let probe = a.model.build(p)?;
        let Some(sim) = gpsamp::tutorial::for_model(&probe, a.seed) else {
            anyhow::bail!("--tutorial: no tutorial dataset for {}", model.name());
        };
        let d = &sim.data;
        let mut csv = header(p, false);
        push_rows(&mut csv, 0, d);
        let truth: std::collections::BTreeMap<_, _> = names
            .iter()
            .cloned()
            .zip(sim.truth.iter().copied())
            .collect();
        let meta = serde_json::json!({"model": model.name(), "seed": a.seed, "n": d.len(),
            "tutorial": sim.description, "truth": [truth]});
        let truth_path = outs.truth_path.clone();
        outs.write(&csv, meta)?;
        eprintln!(
            "wrote {} (the {}) and {}",
            a.out.display(),
            sim.description,
            truth_path.display()
        );
        return Ok(());
    }
    let mut csv = header(p, a.systems.is_some());
    let mut truths = Vec::new();
    for b in 0..a.datasets {
        let mut rng = host_rng(a.seed, b as u64, Purpose::Simulate);
        let (theta, d) = model.simulate(a.n, &mut rng);
        push_rows(&mut csv, b, &d);
        let values = model.constrain(&theta);
        truths.push(
            names
                .iter()
                .cloned()
                .zip(values)
                .collect::<std::collections::BTreeMap<_, _>>(),
        );
    }
    let truth_path = outs.truth_path.clone();
    let meta =
        serde_json::json!({"model": model.name(), "seed": a.seed, "n": a.n, "truth": truths});
    outs.write(&csv, meta)?;
    eprintln!(
        "wrote {} ({} dataset(s) x {} points) and {}",
        a.out.display(),
        a.datasets,
        a.n,
        truth_path.display()
    );
    Ok(())
}
