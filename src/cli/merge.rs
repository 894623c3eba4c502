//! `gpsamp merge`: combines the folders of a study's shards into the folder one unsharded
//! run would have written (its CSV and JSON files byte for byte; `meta.json` aside).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use gpsamp::study::io::{read_datasets_csv, summary_table, StudyFile};
use gpsamp::study::sbc::report;

use gpsamp::io::output::OutputDir;

use super::sbc::{write_study, STUDY};

/// Options of `gpsamp merge`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Folders written by `gpsamp sbc --shard`, in any order.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Output folder: created if missing; replaced only when it holds an earlier study
    /// (or is empty, or with --force), and never when it holds one of the shards.
    #[arg(long)]
    out: PathBuf,
    /// Replace --out even when it is a folder gpsamp did not write.
    #[arg(long)]
    force: bool,
    /// Exit non-zero when a uniformity test fails.
    #[arg(long)]
    strict: bool,
    /// No table.
    #[arg(long)]
    quiet: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let inputs: Vec<&Path> = a.dirs.iter().map(PathBuf::as_path).collect();
    let out = OutputDir::create("--out", &a.out, STUDY, a.force, &inputs)?;
    let mut parts = Vec::new();
    for dir in &a.dirs {
        let path = dir.join("study.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let file: StudyFile =
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        parts.push((dir.clone(), file));
    }
    let settings = parts[0].1.settings.clone();
    for (dir, f) in &parts[1..] {
        if f.settings != settings {
            bail!(
                "{}: another study (settings differ from {}'s)",
                dir.display(),
                parts[0].0.display()
            );
        }
    }
    parts.sort_by_key(|(_, f)| f.first);
    let mut next = 0;
    for (dir, f) in &parts {
        if f.first < next {
            bail!(
                "{}: datasets {}..{} overlap the shards before it",
                dir.display(),
                f.first,
                f.end
            );
        }
        if f.first > next {
            bail!("datasets {next}..{} are in none of the folders", f.first);
        }
        next = f.end;
    }
    if next != settings.datasets {
        bail!(
            "datasets {next}..{} are in none of the folders",
            settings.datasets
        );
    }
    let mut records = Vec::with_capacity(settings.datasets);
    for (dir, f) in &parts {
        let recs = read_datasets_csv(&dir.join("datasets.csv"), &settings)?;
        let want: Vec<usize> = (f.first..f.end).collect();
        let got: Vec<usize> = recs.iter().map(|r| r.index).collect();
        if got != want {
            bail!(
                "{}: datasets.csv does not hold datasets {}..{} in order",
                dir.display(),
                f.first,
                f.end
            );
        }
        records.extend(recs);
    }
    let rep = report(&settings, &records);
    let file = StudyFile {
        settings,
        first: 0,
        end: records.len(),
    };
    let meta = serde_json::json!({
        "gpsamp": env!("CARGO_PKG_VERSION"),
        "merged_from": a.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
    });
    write_study(out, &file, &records, &rep, meta)?;
    let prior = rep.settings.design.is_prior();
    if !a.quiet {
        if prior {
            out!("{}", summary_table(&rep));
        } else {
            let cells = gpsamp::study::design::cell_report(&rep.settings, &records);
            out!("{}", gpsamp::study::design::cells_table(&cells));
        }
        eprintln!(
            "merged {} folders ({} datasets) into {}",
            a.dirs.len(),
            records.len(),
            a.out.display()
        );
    }
    if a.strict && prior && !rep.pass {
        bail!(
            "--strict: ranks are not uniform at alpha {}",
            rep.settings.alpha
        );
    }
    Ok(())
}
