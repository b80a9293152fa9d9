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
    /// The market's records (deals, jobs, block index) could not be read or written.
    #[error("the market's records in {at}: {why}")]
    Records {
        /// Where they are: the embedded database's directory, or the cluster database.
        at: String,
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
    /// A compute job spec (YAML or JSON) or a job's canonical bytes that do not make a valid job:
    /// the message names the field and what to change.
    #[error("job spec: {0}")]
    JobSpec(String),
    /// A compute job cannot be submitted, fetched or checked as asked (what is wrong, and what to
    /// do).
    #[error("compute job: {0}")]
    Job(String),
    /// A compute job's module could not be read, or its bytes do not hash to the job's module.
    #[error("job module: {0}")]
    JobModule(String),
    /// The executor itself failed (its engine, the job's work directory, staging an input); the
    /// job's own faults are not errors but a [`crate::compute::Outcome`].
    #[error("compute executor: {0}")]
    Executor(String),
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
    /// A CID is not the kind expected (a piece CID where a payload CID was given, or the reverse).
    #[error("{0}")]
    WrongCid(String),
    /// Text that should be a CID is not one.
    #[error("{text:?} is not a CID: {why}")]
    BadCid {
        /// The text given.
        text: String,
        /// What is wrong with it.
        why: String,
    },
    /// A CAR file is malformed: bad framing, a block whose bytes do not hash to its CID, a header
    /// without exactly one root, a root that is not among the blocks.
    #[error("{path}: not a valid CAR: {why}")]
    BadCar {
        /// The CAR file (or a description of the stream).
        path: PathBuf,
        /// What is wrong, and where.
        why: String,
    },
    /// A UnixFS DAG is malformed or uses a feature lode does not support.
    #[error("the UnixFS DAG is not valid at block {cid}: {why}")]
    BadDag {
        /// The block where the problem was found.
        cid: String,
        /// What is wrong.
        why: String,
    },
    /// A block the DAG links to is not in the CAR.
    #[error("block {0} is missing from the CAR: the CAR does not hold the whole DAG")]
    MissingBlock(String),
    /// Something in the input cannot be packed (a symlink, a special file, a name that is not
    /// UTF-8, a directory too large for one UnixFS node).
    #[error("{path}: {why}")]
    Unpackable {
        /// The file or directory.
        path: PathBuf,
        /// Why, and what to do.
        why: String,
    },
    /// Unpacking would go past a limit (output bytes, entries, depth).
    #[error("unpacking stopped: {0}")]
    LimitExceeded(String),
    /// The output path of an unpack already exists.
    #[error("{0}: already exists; give a path that does not exist yet")]
    OutputExists(PathBuf),
    /// Invalid packing parameters.
    #[error("invalid packing parameters: {0}")]
    BadParams(String),
    /// The piece commitment of a payload could not be computed.
    #[error("piece commitment: {0}")]
    Piece(#[from] lode_proofs::piece::PieceError),
    /// No import with this id, piece CID or payload root.
    #[error("no import {0} in the client store; `lode client list-imports` shows them")]
    UnknownImport(String),
    /// An import record on disk is damaged.
    #[error("{path}: damaged import record: {why}")]
    BadRecord {
        /// The record file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A provider cannot be dealt with as its chain record stands (no market peer id
    /// announced, no address of the kind needed, a worker key that does not decode).
    #[error("provider {miner}: {why}")]
    Provider {
        /// The miner actor.
        miner: lode_chain::types::ActorId,
        /// What is missing, and what to do.
        why: String,
    },
    /// The client's market escrow does not cover a deal.
    #[error(
        "your market escrow has {available} available, but {needed} is needed (this deal's price × duration and client collateral, plus what your deals accepted and not yet published will lock): run `lode client balance add {shortfall}` first"
    )]
    InsufficientEscrow {
        /// Escrow not locked by published deals.
        available: lode_chain::types::TokenAmount,
        /// What this deal locks plus what the client's accepted, unpublished deals will lock.
        needed: lode_chain::types::TokenAmount,
        /// `needed − available`, as `lode client balance add` takes it (`1.5`, `300atto`).
        shortfall: String,
    },
    /// The provider refused the deal (its signed answer's reason).
    #[error("the provider rejected the deal: {0}")]
    Rejected(crate::deal::Rejection),
    /// A deal the client would propose breaks a rule it can check itself (the ask's limits, the
    /// chain's bounds).
    #[error("{0}")]
    BadDeal(String),
    /// A retrieval failed (the server's answer, or the data does not match its piece CID).
    #[error("retrieval: {0}")]
    Retrieval(String),
    /// No deal with this UUID in the client's records.
    #[error("no deal {0} in the client's records; `lode client deals` lists them")]
    UnknownClientDeal(String),
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

/// Maps an `io::Error` to [`MarketError::Io`] at `path`.
pub(crate) fn io_at(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> MarketError + '_ {
    move |source| MarketError::Io {
        path: path.to_path_buf(),
        source,
    }
}
