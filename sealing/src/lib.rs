//! `lode-sealing`: the replication engine and sector storage on disk.
//!
//! This crate runs what `lode-proofs` defines, over whole sectors and as fast as the machine allows: the
//! parent cache ([`parent_cache`]), layer labelling behind the [`labels::Labeller`] seam, and the sector
//! phases a miner schedules ([`seal`]): AddPiece → PreCommit1 → PreCommit2 → Commit1 → Finalize, plus
//! unsealing. Every phase reads and writes files in one sector directory ([`sector_dir`]), written
//! atomically, so a phase can run in another process or resume after a crash. Before a phase runs, its
//! caller asks [`capacity`] whether the disk and memory it needs are there, so a phase that could not
//! finish is refused before it writes anything.
//!
//! It never touches the network and never redefines a protocol function: labels, columns, encodings,
//! commitments and proofs all come from `lode-proofs`.

pub mod accel;
pub mod capacity;
pub mod error;
pub mod labels;
pub mod parent_cache;
pub mod post;
pub mod seal;
pub mod sector_dir;

pub use error::{SealError, SealResult};
