//! `lode-sealing`: the replication engine and sector storage on disk.
//!
//! This crate will own everything a storage miner runs to turn client data into a sealed replica: the
//! stacked-DRG labeller (SIMD across sectors, GPU), tree building for trees C and R, the sector phases
//! (AddPiece, PreCommit1/2, Commit1, Finalize), unsealing, and the on-disk layout of a sector. The
//! definitions it computes (labels, trees, commitments) live in `lode-proofs`; this crate only makes
//! them fast and durable.
