//! The market's errors.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What can go wrong in the market.
#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A server could not listen on its address.
    #[error("cannot listen on {addr}: {source} (is another process using the port?)")]
    Serve {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The market's result type.
pub type MarketResult<T> = Result<T, MarketError>;
