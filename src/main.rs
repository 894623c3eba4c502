//! The `gpsamp` command line: `main` runs [`cli::run`] and prints the error chain. A closed
//! stdout (`gpsamp ... | head`) ends the run quietly with exit 0; an interrupted run exits 130.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    let result = cli::run();
    // Flush what is buffered; a closed pipe here is as quiet as anywhere else.
    let flushed = std::io::Write::flush(&mut std::io::stdout());
    match result.and(flushed.map_err(anyhow::Error::from)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut last = e.to_string();
            for cause in e.chain().skip(1) {
                // anyhow's context often repeats its cause's text: say each thing once.
                let c = cause.to_string();
                if !last.contains(&c) {
                    eprintln!("  caused by: {c}");
                }
                last = c;
            }
            if interrupted(&e) {
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<gpsamp::Error>().is_some_and(|g| {
                matches!(g, gpsamp::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
            })
    })
}

fn interrupted(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<gpsamp::Error>(),
            Some(gpsamp::Error::Interrupted)
        )
    })
}
