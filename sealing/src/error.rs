//! The sealing engine's errors.

use std::path::PathBuf;

use lode_proofs::merkle::TreeError;
use lode_proofs::piece::PieceError;
use lode_proofs::sdr::SdrError;

use crate::parent_cache::ParentCacheError;

/// Everything that can stop a sealing phase. Each variant says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A metadata file that does not parse.
    #[error("{path}: unreadable sector metadata ({source}); the sector directory is damaged")]
    Metadata {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A phase was asked for before the one it needs.
    #[error("{phase} needs {missing} first (missing {path})")]
    MissingPhase {
        /// The phase asked for.
        phase: &'static str,
        /// The phase that must run before.
        missing: &'static str,
        /// The file that would show it ran.
        path: PathBuf,
    },
    /// The sector directory belongs to another sector or size than the one asked for.
    #[error("the sector directory holds {found}, not {expected}; use another --sector-dir")]
    WrongSector {
        /// What the caller asked for.
        expected: String,
        /// What the directory holds.
        found: String,
    },
    /// A file has the wrong size (truncated, or not this sector's).
    #[error(
        "{path}: expected {expected} bytes, found {found}; the file is truncated or belongs to another sector"
    )]
    WrongFileSize {
        /// The file.
        path: PathBuf,
        /// Expected size.
        expected: u64,
        /// Actual size.
        found: u64,
    },
    /// A stored layer no longer matches the checksum recorded when it was written.
    #[error(
        "{path}: layer {layer} is corrupted (checksum mismatch); delete it and run PreCommit1 again"
    )]
    CorruptedLayer {
        /// The file.
        path: PathBuf,
        /// The layer.
        layer: usize,
    },
    /// A piece that does not fit in what is left of the sector.
    #[error(
        "the piece does not fit: it needs {needed} padded bytes at offset {offset}, but the sector has {sector_size}"
    )]
    PieceDoesNotFit {
        /// The piece's padded size.
        needed: u64,
        /// Where it would start (aligned).
        offset: u64,
        /// The sector size.
        sector_size: u64,
    },
    /// A byte range outside the sector's payload capacity.
    #[error("range {offset}+{len} is outside the sector's {capacity} unpadded bytes")]
    RangeOutOfSector {
        /// Start, unpadded bytes.
        offset: u64,
        /// Length, unpadded bytes.
        len: u64,
        /// The sector's unpadded capacity.
        capacity: u64,
    },
    /// The sealed data does not open to the commitments recorded for it.
    #[error("the replica or its trees do not match the recorded commitments: {0}")]
    Inconsistent(&'static str),
    /// The run was cancelled through its progress callback; completed layers stay on disk.
    #[error("cancelled; run the phase again to resume from the last complete layer")]
    Cancelled,
    /// A tree error.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// A piece or commitment error.
    #[error(transparent)]
    Piece(#[from] PieceError),
    /// A field-arithmetic error on sector data.
    #[error(transparent)]
    Sdr(#[from] SdrError),
    /// The parent cache could not be opened or built.
    #[error(transparent)]
    ParentCache(#[from] ParentCacheError),
}

/// Result alias of the sealing engine.
pub type SealResult<T> = Result<T, SealError>;

/// Maps an `io::Error` on `path` into a [`SealError`].
pub(crate) fn io_at(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> SealError + '_ {
    move |source| SealError::Io {
        path: path.to_path_buf(),
        source,
    }
}
