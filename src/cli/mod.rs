//! Subcommands of the `gpsamp` binary (clap derive).

mod args;
mod bench;
mod devices;
mod em;
mod logp;
mod mdn;
mod merge;
mod sample;
mod sbc;
mod simulate;

use clap::{Parser, Subcommand};

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
    /// Posterior sampling with ensemble HMC (many chains adapted together).
    Sample(sample::Args),
    /// Draw datasets from a model's prior and write them as CSV.
    Simulate(simulate::Args),
    /// Simulation study: fit many datasets simulated from the prior; calibration (SBC) and
    /// parameter recovery, optionally one shard of it.
    Sbc(sbc::Args),
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
    let cli = Cli::parse();
    match cli.command {
        Command::Devices(a) => devices::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Logp(a) => logp::run(a),
        Command::Sample(a) => sample::run(a),
        Command::Simulate(a) => simulate::run(a),
        Command::Sbc(a) => sbc::run(a),
        Command::Merge(a) => merge::run(a),
        Command::Em(a) => em::run(a),
        Command::Mdn(c) => mdn::run(c),
    }
}
