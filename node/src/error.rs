//! The node's errors.

use lode_chain::types::Epoch;

/// Errors of the node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The state machine refused or failed.
    #[error(transparent)]
    Chain(#[from] lode_chain::ChainError),
    /// A query of an actor's state failed (no such actor or record).
    #[error("{}", .0.message)]
    Actor(lode_chain::ActorError),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] lode_chain::error::StoreError),
    /// The block database failed.
    #[error("block database: {0}")]
    Database(#[from] sled::Error),
    /// A stored record could not be decoded.
    #[error("block database is corrupt: {0}")]
    Corrupt(&'static str),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A genesis file is not valid.
    #[error("genesis file {path}: {why}")]
    Genesis {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The node's directory belongs to another network (another genesis).
    #[error(
        "{dir} holds the chain of genesis {found}, not {expected}: use another --dir, or remove it to start over"
    )]
    WrongGenesis {
        /// The directory.
        dir: std::path::PathBuf,
        /// The genesis the node was started with.
        expected: String,
        /// The genesis the directory holds.
        found: String,
    },
    /// Input from the network or an RPC client could not be decoded.
    #[error("cannot decode {what}: {why}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        why: String,
    },
    /// A block is invalid.
    #[error("invalid block at epoch {epoch}: {why}")]
    InvalidBlock {
        /// Its epoch.
        epoch: Epoch,
        /// Why.
        why: String,
    },
    /// A message was refused by the mempool.
    #[error("message refused: {0}")]
    Mempool(#[from] crate::mempool::MempoolError),
    /// A reorganisation would revert past finality.
    #[error(
        "switching to the fork at epoch {fork_epoch} would revert a tipset {depth} epochs deep, more than chain finality ({finality})"
    )]
    BeyondFinality {
        /// Epoch of the common ancestor.
        fork_epoch: Epoch,
        /// How far back the oldest tipset to revert is, in epochs, counting its own.
        depth: u64,
        /// The policy's finality.
        finality: u64,
    },
    /// A block whose header cannot be checked yet (its parent is off the canonical chain) came to
    /// a slot already holding as many blocks as the node keeps unchecked: not stored, and not held
    /// against whoever sent it.
    #[error(
        "epoch {epoch} on these parents already holds {held} blocks and the parent state is not at hand to check another: not stored (sync fetches the branch if it becomes the heaviest)"
    )]
    SlotFull {
        /// The block's epoch.
        epoch: Epoch,
        /// How many blocks the slot holds.
        held: usize,
    },
    /// A tipset the node needs is not stored.
    #[error("unknown tipset {0}")]
    UnknownTipset(String),
    /// The network layer failed.
    #[error("network: {0}")]
    Net(String),
    /// The RPC or metrics server could not start on its address.
    #[error("cannot serve on {addr}: {source}")]
    Serve {
        /// The address.
        addr: std::net::SocketAddr,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The node's configuration file is not valid.
    #[error("config {path}: {why}")]
    Config {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The node is shutting down or a task stopped.
    #[error("the node is stopping")]
    Stopped,
}

/// The node's result type.
pub type NodeResult<T> = Result<T, NodeError>;

impl NodeError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<std::path::PathBuf>) -> impl FnOnce(std::io::Error) -> NodeError {
        let path = path.into();
        move |source| NodeError::Io { path, source }
    }
}
