//! `lode-proofs`: the pure definitions of the lode protocol and the checkers built on them.
//!
//! Everything that a verifier must agree on bit for bit lives here, as plain synchronous functions:
//! field nodes and domain-separated hashes ([`node`], [`hash`], [`poseidon`]), fr32 padding ([`fr32`]),
//! pieces, tree D, CommP and CommD ([`piece`]), piece CIDs ([`cid`]), and the sector-scale Merkle
//! trees with their inclusion proofs ([`merkle`]). Every file is written atomically and durably through
//! [`durable`]. The crate knows nothing of async runtimes, databases or networking; the sealing engine,
//! chain and market build on it.
//!
//! ```
//! use lode_proofs::{cid::PieceCid, piece::commp_of_bytes};
//! let c = commp_of_bytes(b"hello, lode").expect("a tiny payload fits a piece");
//! assert_eq!(c.padded_size.bytes(), 128);
//! let cid = PieceCid::new(c.comm_p).expect("CommP is a node");
//! assert_eq!(cid.to_string().parse::<PieceCid>(), Ok(cid));
//! ```

pub mod cid;
pub mod circuit;
pub mod codec;
pub mod durable;
pub mod files;
pub mod fr32;
pub mod graph;
pub mod hash;
pub mod merkle;
#[cfg(target_arch = "x86_64")]
mod mulx;
pub mod node;
pub mod params;
pub mod piece;
pub mod porep;
pub mod poseidon;
pub mod post;
pub mod prover;
pub mod sdr;
pub mod sector;
pub mod snark;
pub mod verifier;
