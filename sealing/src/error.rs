//! The sealing engine's errors.

use std::path::PathBuf;

use lode_proofs::merkle::TreeError;
use lode_proofs::piece::PieceError;
use lode_proofs::sdr::SdrError;

use crate::capacity::human_bytes;
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
    /// The accelerator asked for is absent or failed (the device layer's message).
    #[error("{0}; run with --gpu off to use the CPU")]
    Device(String),
    /// A sector directory that does not exist (or is not a directory).
    #[error("{path} is not a sector directory (missing); check the path")]
    NotASectorDir {
        /// The path given.
        path: PathBuf,
    },
    /// A directory that holds no sector record yet, asked for by a phase that needs one.
    #[error(
        "{path} holds no sector (no sector.json); start the sector with `lode seal run` or `lode seal add-piece`"
    )]
    NoSector {
        /// The directory.
        path: PathBuf,
    },
    /// A new sector was started without its size.
    #[error("a new sector needs its size: give --sector-size (2KiB, 8MiB, 512MiB, 32GiB or 64GiB)")]
    SizeNeeded,
    /// Another process holds the sector's lock.
    #[error(
        "{path} is in use by another lode process; wait for it to finish (or stop it) and run the command again"
    )]
    Locked {
        /// The sector directory.
        path: PathBuf,
    },
    /// A phase asked for after a later one made it impossible.
    #[error("{phase} cannot run: {reason}")]
    TooLate {
        /// The phase asked for.
        phase: &'static str,
        /// Why, and what to do instead.
        reason: &'static str,
    },
    /// PreCommit1 was asked for with another ticket than the one it already ran with.
    #[error(
        "PreCommit1 already ran with ticket {recorded}; give that --ticket (or none) to resume, or seal a new sector"
    )]
    TicketMismatch {
        /// The recorded ticket, as hex.
        recorded: String,
    },
    /// A piece named by the command differs from the one the sector holds at that position.
    #[error(
        "piece {index} ({file}) has CommP {given}, but the sector already holds {recorded} there; this sector was started with other pieces"
    )]
    PieceMismatch {
        /// Position of the piece.
        index: usize,
        /// The file named.
        file: PathBuf,
        /// CommP of the file.
        given: String,
        /// CommP recorded for that position.
        recorded: String,
    },
    /// The sector holds more pieces than the command names.
    #[error(
        "the sector already holds {recorded} pieces but the command names {given}; name every piece, in order"
    )]
    ExtraPieces {
        /// Pieces recorded.
        recorded: usize,
        /// Pieces named.
        given: usize,
    },
    /// A file a phase consumes changed since the phase that recorded it.
    #[error(
        "{path} changed since {recorded_by} recorded it; restore the original (or start a new sector)"
    )]
    Changed {
        /// The file.
        path: PathBuf,
        /// The phase whose record it contradicts.
        recorded_by: &'static str,
    },
    /// The Commit1 output does not prove its public inputs.
    #[error(
        "{path} does not prove the sector's public inputs ({reason}); run `lode seal commit1` again"
    )]
    BadCommit1 {
        /// The Commit1 file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Two sectors of one PoSt share a sector number, or one directory was given twice.
    #[error("sector {sector_number} is given twice ({first} and {second}); name each sector once")]
    DuplicateSector {
        /// The sector number.
        sector_number: u64,
        /// One directory.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// The sectors of one PoSt differ in size or miner.
    #[error(
        "{path} holds {found}, but the PoSt is over {expected}; prove each miner and size separately"
    )]
    MixedSectors {
        /// The odd sector's directory.
        path: PathBuf,
        /// What the PoSt is over.
        expected: String,
        /// What the directory holds.
        found: String,
    },
    /// A phase would run out of disk: refused before it writes anything (see [`crate::capacity`]).
    #[error(
        "{work} of a {size} sector needs {} more on {place} ({} free) to write {parts}: free {} there, or {remedy}",
        human_bytes(*.needed),
        human_bytes(*.available),
        human_bytes(.needed.saturating_sub(*.available))
    )]
    InsufficientDisk {
        /// The phases that would run, as a phrase (`PreCommit1`, `AddPiece, PreCommit1 and PreCommit2`).
        work: String,
        /// The sector size.
        size: lode_proofs::sector::SectorSize,
        /// The directory or directories on that filesystem (`/data/s-7 and /data/cache`).
        place: String,
        /// Bytes the work needs there at its peak, beyond what is already written.
        needed: u64,
        /// Bytes the filesystem has available to this process.
        available: u64,
        /// What the bytes are for, largest first (`11 layers (704.0 GiB), tree D (64.0 GiB)`).
        parts: String,
        /// What to do besides freeing space (which directory option to point elsewhere).
        remedy: &'static str,
    },
    /// A phase would run out of memory: refused before it writes anything (see [`crate::capacity`]).
    #[error(
        "{work} of a {size} sector needs {} of memory for {what}, but {} is available: stop other jobs, or run it on a machine with more memory",
        human_bytes(*.needed),
        human_bytes(*.available)
    )]
    InsufficientMemory {
        /// The phase that needs the most memory.
        work: String,
        /// The sector size.
        size: lode_proofs::sector::SectorSize,
        /// What the memory holds (`two layers of labels`).
        what: &'static str,
        /// Bytes it needs.
        needed: u64,
        /// Bytes available (`MemAvailable`, or less under a cgroup limit).
        available: u64,
    },
    /// A SNARK could not be made or does not verify.
    #[error(transparent)]
    Snark(#[from] lode_proofs::snark::SnarkError),
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
