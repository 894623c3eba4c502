//! The library's typed errors. The CLI wraps them with `anyhow` and prints the chain.

use std::path::PathBuf;

/// Everything that can go wrong in gpsamp.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input data, located by file, line and column.
    #[error("{path}:{line}:{column}: {message}")]
    Data {
        /// The file.
        path: PathBuf,
        /// 1-based line number (the header is line 1).
        line: usize,
        /// Column name, or 1-based index when the header itself is at fault.
        column: String,
        /// What is wrong.
        message: String,
    },
    /// A Stan program gpsamp cannot compile or run, located by file, line and column.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Program {
        /// The program.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong (for a construct outside the subset, its name).
        message: String,
    },
    /// Bad input data in an in-memory table (a DataFrame or dict of columns handed to the
    /// library), located by column and row (0-based, as the table counts them).
    #[error("column {column:?}{}: {message}", row.map(|r| format!(", row {r}")).unwrap_or_default())]
    Table {
        /// The column.
        column: String,
        /// The row, when one row is at fault.
        row: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An argument or setting is out of its domain.
    #[error("{0}")]
    Invalid(String),
    /// No GPU adapter exists (or none matched `WGPU_ADAPTER_NAME`).
    #[error("no GPU adapter found{0}")]
    NoAdapter(String),
    /// The GPU device could not be created.
    #[error("could not create the GPU device: {0}")]
    Device(String),
    /// wgpu reported a validation or out-of-memory error.
    #[error("GPU error in {context}: {message}")]
    Gpu {
        /// What gpsamp was doing.
        context: String,
        /// wgpu's message.
        message: String,
    },
    /// An output path that the output policy refuses to write or replace.
    #[error("{flag} {}: {reason}", path.display())]
    Output {
        /// The option that named the path (`--out`).
        flag: String,
        /// The path.
        path: PathBuf,
        /// Why it is refused.
        reason: String,
    },
    /// A setting out of its domain, named by the option that set it.
    #[error("{flag}: {message}")]
    Config {
        /// The option (`--keep`, `--init em`).
        flag: String,
        /// What is wrong.
        message: String,
    },
    /// Chains could not be started (every start had a log density of -inf or NaN).
    #[error("chain {chain}: {message}")]
    Init {
        /// The first chain (over all datasets) that failed.
        chain: usize,
        /// What was tried.
        message: String,
    },
    /// The run was interrupted (a signal, or the caller's cancel flag).
    #[error("interrupted")]
    Interrupted,
    /// A size the machine cannot hold, refused before allocating.
    #[error("{what}: {asked} asked for, at most {limit} allowed")]
    TooLarge {
        /// What was asked for, with the option that asked (`--datasets`).
        what: String,
        /// The size asked for.
        asked: u64,
        /// The limit.
        limit: u64,
    },
    /// The job does not fit this GPU's limits (a storage binding, the points of one batch);
    /// the CPU backend, or smaller batches or groups, can run it.
    #[error("beyond the GPU's limits: {0}")]
    DeviceLimit(String),
    /// A shader failed to parse or validate.
    #[error("shader {name}: {message}")]
    Shader {
        /// Shader name.
        name: String,
        /// naga's message.
        message: String,
    },
}

impl Error {
    /// A setting out of its domain, named by its option: [`Error::Config`].
    pub fn config(flag: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            flag: flag.into(),
            message: message.into(),
        }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
