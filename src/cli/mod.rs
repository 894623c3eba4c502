//! Subcommands of the `gpsamp` binary (clap derive), the signal handler, and stdout writes
//! that turn a closed pipe into a quiet exit.

/// `println!` for the CLI: a failed write (a closed pipe) returns an error from the calling
/// function instead of panicking; `main` ends quietly on a broken pipe.
macro_rules! outln {
    () => {
        $crate::cli::stdout_write(format_args!("\n"))?
    };
    ($($t:tt)*) => {
        $crate::cli::stdout_write(format_args!("{}\n", format_args!($($t)*)))?
    };
}

/// `print!` for the CLI (see [`outln!`]).
macro_rules! out {
    ($($t:tt)*) => {
        $crate::cli::stdout_write(format_args!($($t)*))?
    };
}

mod args;
mod bench;
mod bench_stan;
mod devices;
mod em;
mod logp;
mod loo;
mod mdn;
mod merge;
mod model_file;
mod plot;
mod predict;
mod sample;
mod sbc;
mod simulate;
mod study;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Writes to stdout; the error (a closed pipe, a full disk) goes to the caller.
pub fn stdout_write(args: std::fmt::Arguments) -> anyhow::Result<()> {
    use std::io::Write;
    std::io::stdout().lock().write_fmt(args)?;
    Ok(())
}

pub use gpsamp::workflow::sig;

/// A progress bar on stderr with `template` (indicatif's keys, plus `{rate}`: items per
/// second in 3 significant digits), hidden with `--quiet` or when stderr is not a terminal.
pub fn progress_bar(quiet: bool, len: u64, template: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let style = indicatif::ProgressStyle::with_template(template)
        .expect("valid template")
        .with_key(
            "rate",
            |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}/s", sig(s.per_sec(), 3));
            },
        );
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(style);
    bar
}

/// Memory this process may plan to use: three quarters of the machine's (8 GiB when it
/// cannot be read).
pub fn memory_budget() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(8 << 30, |kb| kb * 1024);
    total / 4 * 3
}

/// Refuses up front a run whose memory (`bytes`, an estimate) would not fit, naming the flag
/// that asked for it, what it asked for and the limit.
pub fn check_memory(flag: &str, bytes: u64, what: &str) -> anyhow::Result<()> {
    let limit = memory_budget();
    if bytes > limit {
        anyhow::bail!(
            "{flag}: {what} would need about {:.1} GB of memory; this machine allows {:.1} GB",
            bytes as f64 / 1e9,
            limit as f64 / 1e9
        );
    }
    Ok(())
}

/// Set by the first SIGINT/SIGTERM while a command that polls it runs.
static INTERRUPT: std::sync::LazyLock<Arc<AtomicBool>> =
    std::sync::LazyLock::new(|| Arc::new(AtomicBool::new(false)));
/// Whether the running command polls [`INTERRUPT`] (else the handler cleans up and exits).
static COOPERATIVE: AtomicBool = AtomicBool::new(false);
static SIGNALS: AtomicUsize = AtomicUsize::new(0);

/// The flag a signal sets; a command that hands it to the engine (and so stops by itself)
/// calls this, which tells the handler to let it.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    COOPERATIVE.store(true, Ordering::SeqCst);
    INTERRUPT.clone()
}

/// SIGINT, SIGTERM and SIGHUP: the first one stops a cooperative command (it cleans up and
/// exits 130 by itself) or removes this process's unfinished output and exits 130; a second
/// one exits at once (a later run removes what is left).
fn install_signal_handler() {
    let _ = ctrlc::set_handler(|| {
        let n = SIGNALS.fetch_add(1, Ordering::SeqCst);
        if n == 0 && COOPERATIVE.load(Ordering::SeqCst) {
            INTERRUPT.store(true, Ordering::SeqCst);
            eprintln!("\ngpsamp: interrupted; stopping (interrupt again to exit at once)");
            return;
        }
        if n == 0 {
            gpsamp::io::output::remove_temporaries();
            eprintln!("\ngpsamp: interrupted; the unfinished output was removed");
        }
        std::process::exit(130);
    });
}

/// Bayesian inference for thousands of chains or datasets at once, on the GPU or the CPU.
#[derive(Parser, Debug)]
#[command(name = "gpsamp", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the GPU adapters wgpu can see, with the limits that matter.
    Devices(devices::Args),
    /// Measure batch log density + gradient throughput on the CPU and GPU backends.
    Bench(bench::Args),
    /// Log density and gradient of a model on a CSV file at given parameter values.
    Logp(logp::Args),
    /// PSIS-LOO of sample folders written with --log-lik, and ArviZ's compare table for
    /// several.
    Loo(loo::Args),
    /// Redraw the figures of a sample folder (trace, rank, posterior and predictive plots).
    Plot(plot::Args),
    /// Posterior predictive draws and intervals for new inputs from a sample folder.
    Predict(predict::Args),
    /// Posterior sampling with ensemble HMC (many chains adapted together).
    Sample(sample::Args),
    /// Draw datasets from a model's prior and write them as CSV.
    Simulate(simulate::Args),
    /// Simulation study: fit many datasets simulated from the prior; calibration (SBC) and
    /// parameter recovery, optionally one shard of it.
    Sbc(sbc::Args),
    /// Recovery and power studies at chosen values: a grid of parameter values and sample
    /// sizes, or your own simulated datasets with their truths (bias, RMSE, coverage,
    /// power per cell).
    Study(study::Args),
    /// Batched EM for HMMs and GLM-HMMs: restarts x datasets in one batch, Viterbi paths,
    /// state posteriors and held-out log likelihood.
    Em(em::Args),
    /// Combine the folders of a study's shards into one report.
    Merge(merge::Args),
    /// Amortised posteriors with a mixture density network: train, predict, eval.
    #[command(subcommand)]
    Mdn(mdn::Command),
}

/// Parses the command line and runs the subcommand.
pub fn run() -> anyhow::Result<()> {
    install_signal_handler();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cmd = Cli::command();
    let matches = cmd
        .clone()
        .try_get_matches_from(&argv)
        .unwrap_or_else(|e| e.exit());
    // --model-file: its settings become flags after the user's own (which win).
    let matches = model_file::apply(&cmd, &matches, &argv)?.unwrap_or(matches);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Devices(a) => devices::run(a),
        Command::Bench(a) => {
            let sub = matches
                .subcommand_matches("bench")
                .expect("the bench subcommand");
            bench::run(a, sub)
        }
        Command::Logp(a) => logp::run(a),
        Command::Loo(a) => loo::run(a),
        Command::Plot(a) => plot::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Sample(a) => sample::run(a),
        Command::Simulate(a) => simulate::run(a),
        Command::Sbc(a) => sbc::run(a),
        Command::Study(a) => study::run(a),
        Command::Merge(a) => merge::run(a),
        Command::Em(a) => em::run(a),
        Command::Mdn(c) => mdn::run(c),
    }
}
