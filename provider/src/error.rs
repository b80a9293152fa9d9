//! The provider's errors.

/// Errors of the provider daemon.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The node refused or failed a request.
    #[error("node: {0}")]
    Node(String),
    /// A sector could not be read or proven.
    #[error(transparent)]
    Seal(#[from] lode_sealing::SealError),
    /// A SNARK could not be made.
    #[error("proving: {0}")]
    Snark(String),
    /// The parameters could not be loaded.
    #[error(transparent)]
    Params(#[from] lode_proofs::params::ParamsError),
    /// A sector the chain expects is not in the sector store.
    #[error("sector {0} is not in the sector store")]
    MissingSector(u64),
    /// The operating system's random source failed.
    #[error("random source: {0}")]
    Random(String),
    /// A configuration or key file is missing or not valid.
    #[error("{path}: {why}")]
    Config {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong, and what to do.
        why: String,
    },
    /// The signatures of the messages selected for a block sum to the identity, which no
    /// aggregate may be (negligibly likely for honest signatures): the block is not made.
    #[error("the selected messages' signatures cannot be aggregated: {0}")]
    Aggregate(#[source] lode_chain::crypto::CryptoError),
    /// A declaration the chain would refuse (nothing was sent): which sector, and why.
    #[error("cannot declare: {0}")]
    Declaration(String),
    /// An operator's request the chain would refuse, or did refuse (what, and what to do).
    #[error("{0}")]
    Refused(String),
    /// The API server could not be started.
    #[error("API server: {0}")]
    Serve(String),
    /// The sector pipeline's records could not be read or changed.
    #[error("sector pipeline: {0}")]
    Pipeline(String),
    /// A sector could not be moved between sealing scratch and long-term storage, or removed.
    #[error(transparent)]
    Storage(#[from] crate::pipeline::storage::StorageError),
    /// A range past the end of a piece's payload.
    #[error("bytes {offset}..{offset}+{len} are past the piece's payload of {payload_size} bytes")]
    PieceRange {
        /// The range's first payload byte.
        offset: u64,
        /// Its length.
        len: u64,
        /// The payload's length.
        payload_size: u64,
    },
    /// The deal market could not be started or answered with an error.
    #[error("market: {0}")]
    Market(String),
    /// The daemon is stopping.
    #[error("stopping")]
    Stopped,
    /// The cluster's task engine failed.
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    /// A cluster task's input or output is not what its kind expects.
    #[error("cluster task: {0}")]
    Task(String),
    /// A sector file could not be fetched from another worker.
    #[error("fetching a sector file from {0}")]
    Fetch(String),
}

impl From<lode_node::NodeError> for ProviderError {
    fn from(e: lode_node::NodeError) -> Self {
        ProviderError::Node(e.to_string())
    }
}

/// The provider's result type.
pub type ProviderResult<T> = Result<T, ProviderError>;
