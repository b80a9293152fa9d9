//! Sector-scale Merkle trees: any arity per level, stored on disk, built in parallel, with inclusion proofs.
//!
//! The same code serves the binary BLAKE3 tree D and the arity-8 Poseidon trees C and R: the hash sits
//! behind [`TreeHasher`], the geometry in [`TreeShape`] (arities level by level, so a 64 GiB tree with
//! a binary top level is just another shape). [`DiskTree`] writes every stored level into one
//! memory-mapped file, so a 64 GiB sector's trees never need to fit in RAM: the kernel pages them.
//! Leaves can live inside the tree file or stay in their own file (the sector data or the replica),
//! and the lowest rows above the leaves can be left out and recomputed on demand when proving.
//! [`MerkleProof`] verifies against a trusted root and a trusted shape only.

mod disk;
mod hasher;
mod proof;
mod shape;

pub use disk::{DiskTree, LevelHasher, TreeConfig};
pub use hasher::{Blake3TreeD, PoseidonTree, TreeHasher};
pub use proof::MerkleProof;
pub use shape::TreeShape;

use std::path::PathBuf;

/// Errors of tree building, storage, proving and verification.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A shape whose arities do not multiply to its leaf count, or with an arity below 2.
    #[error("invalid tree shape: {leaves} leaves cannot be split by arities {arities:?}")]
    InvalidShape {
        /// The leaf count.
        leaves: u64,
        /// The arities, bottom level first.
        arities: Vec<usize>,
    },
    /// The hasher cannot hash this many children.
    #[error("the {hasher} hasher does not support arity {arity}")]
    UnsupportedArity {
        /// The hasher's name.
        hasher: &'static str,
        /// The arity asked for.
        arity: usize,
    },
    /// A node is not a canonical field element where the hash needs one.
    #[error("node is not a canonical field element")]
    NonCanonicalNode,
    /// The number of leaves given does not match the shape.
    #[error("expected {expected} leaves, got {got}")]
    LeafCount {
        /// Leaves the shape has.
        expected: u64,
        /// Leaves given.
        got: u64,
    },
    /// A leaf index past the end of the tree.
    #[error("leaf index {index} is out of range for a tree of {leaves} leaves")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The tree's leaf count.
        leaves: u64,
    },
    /// A proof whose levels or sibling counts do not match the expected shape.
    #[error("the proof does not have the tree's shape: {0}")]
    ProofShape(&'static str),
    /// A level hasher given to the tree builder failed (a device error, in its words).
    #[error("hashing a level failed: {0}")]
    LevelHasher(String),
    /// The proof's path does not lead to the trusted root.
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
    /// A proof's leaf or index is not the one expected.
    #[error("the proof is for another leaf or index")]
    WrongLeaf,
    /// Bytes that do not decode as a proof.
    #[error("malformed proof bytes: {0}")]
    MalformedProof(&'static str),
    /// A file that is not a lode tree file, or was written by another format version.
    #[error("{path}: not a lode tree file ({reason})")]
    NotATreeFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// The tree file was built with another hasher.
    #[error("{path}: the tree was built with hasher {found}, expected {expected}")]
    WrongHasher {
        /// The file.
        path: PathBuf,
        /// Hasher id expected.
        expected: u32,
        /// Hasher id in the file.
        found: u32,
    },
    /// A tree or leaf file has the wrong length (truncated or not the file the tree was built over).
    #[error(
        "{path}: expected {expected} bytes, found {found}; the file is truncated or belongs to another tree"
    )]
    WrongFileLength {
        /// The file.
        path: PathBuf,
        /// Expected length.
        expected: u64,
        /// Actual length.
        found: u64,
    },
    /// The tree's leaves live in another file, which was not given.
    #[error("the tree's leaves are stored outside the tree file; open it with the leaves file")]
    MissingLeaves,
    /// The stored root differs from the one recomputed from the file's content.
    #[error("{path}: the tree's content does not hash to its stored root (corrupted file)")]
    Corrupted {
        /// The file.
        path: PathBuf,
    },
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests;
