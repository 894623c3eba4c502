//! `gpsamp plot DIR`: redraws the figures of a sample folder (trace.svg, rank.svg,
//! posterior.svg, and ppc.svg while its data file is readable), e.g. one written with
//! `--no-plots` or by an older gpsamp.

use std::path::PathBuf;

/// Options of `gpsamp plot`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A folder written by `gpsamp sample`.
    dir: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let files = gpsamp::workflow::plot::redraw(&a.dir)?;
    for f in files {
        outln!("{}", a.dir.join(f).display());
    }
    Ok(())
}
