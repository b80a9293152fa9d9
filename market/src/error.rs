//! The market's errors: one enum for the crate, with a variant per kind of failure and messages
//! that say what to do.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::deal::DealUuid;

/// What can go wrong in the market.
#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    /// Bytes from a peer (or a record on disk) that do not decode as the type expected.
    #[error("malformed {what}: {why}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// Why it does not decode.
        why: String,
    },
    /// A signed ask or deal response whose signature does not verify against the miner's worker
    /// key: it was not made by that provider (or was changed on the way).
    #[error("the {what}'s signature does not verify against the miner's worker key")]
    BadSignature {
        /// What was signed (`storage ask`, `deal response`).
        what: &'static str,
    },
    /// The libp2p host could not be set up, or a request to a peer failed.
    #[error("market network: {0}")]
    Net(String),
    /// The libp2p host has stopped.
    #[error("the market's libp2p host has stopped")]
    Stopped,
    /// The node's RPC failed.
    #[error("node: {0}")]
    Node(#[from] lode_node::rpc::client::ClientError),
    /// The deal records could not be read or written.
    #[error("deal records at {path}: {why}")]
    Records {
        /// The database directory.
        path: PathBuf,
        /// What failed.
        why: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
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
    /// A deal UUID that no record holds.
    #[error("no deal {0} in the provider's records")]
    UnknownDeal(DealUuid),
    /// Fetching a deal's data failed (the reason says why, and is what the deal's record keeps).
    #[error("transfer: {0}")]
    Transfer(String),
    /// The piece that arrived does not match the proposal.
    #[error("{0}")]
    Commp(String),
    /// Publishing deals on chain failed.
    #[error("publishing deals: {0}")]
    Publish(String),
    /// The sealing pipeline refused or failed a piece.
    #[error("sealing: {0}")]
    Sealing(String),
    /// A configuration value is not usable.
    #[error("market configuration: {0}")]
    Config(String),
}

/// The market's result type.
pub type MarketResult<T> = Result<T, MarketError>;

impl MarketError {
    /// A closure mapping an I/O error on `path` into [`MarketError::Io`].
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> MarketError {
        let path = path.into();
        move |source| MarketError::Io { path, source }
    }
}

impl From<lode_proofs::durable::DurableError> for MarketError {
    fn from(e: lode_proofs::durable::DurableError) -> Self {
        MarketError::Io {
            path: e.path,
            source: e.source,
        }
    }
}
