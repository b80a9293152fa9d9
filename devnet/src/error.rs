//! The devnet's errors.

use std::path::PathBuf;

/// Errors of devnet creation and control.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The genesis could not be built.
    #[error("genesis: {0}")]
    Genesis(String),
    /// Pre-sealing or parameters failed.
    #[error(transparent)]
    Provider(#[from] lode_provider::ProviderError),
    /// A node-side file could not be read or written.
    #[error(transparent)]
    Node(#[from] lode_node::NodeError),
    /// Parameters could not be loaded or generated.
    #[error(transparent)]
    Params(#[from] lode_proofs::params::ParamsError),
    /// `devnet.json` is missing or not valid.
    #[error("{path}: {why}")]
    DevnetFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A devnet is already running in the directory.
    #[error(
        "a devnet is already running in {dir} (process {pid}): stop it with `lode devnet stop --dir {dir}`"
    )]
    Running {
        /// The directory.
        dir: PathBuf,
        /// One of its processes.
        pid: u32,
    },
    /// A process could not be started.
    #[error("cannot start {what}: {source}")]
    Spawn {
        /// Which process.
        what: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A process did not come up.
    #[error("{what} did not start within {secs} s: see its log {log}")]
    NotReady {
        /// Which process.
        what: String,
        /// How long was waited.
        secs: u64,
        /// Its log file.
        log: PathBuf,
    },
    /// The operating system's random source failed.
    #[error("random source: {0}")]
    Random(String),
}

/// The devnet's result type.
pub type DevnetResult<T> = Result<T, DevnetError>;

impl DevnetError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DevnetError {
        let path = path.into();
        move |source| DevnetError::Io { path, source }
    }
}
