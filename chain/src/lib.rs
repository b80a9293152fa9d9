//! `lode-chain`: lode's deterministic state machine — everything a block applies.
//!
//! - [`types`] and [`policy`]: addresses, atto-unit token amounts, epochs, power, and every rule
//!   constant ([`policy::Policy::mainnet`], [`policy::Policy::devnet`]).
//! - [`crypto`]: BLS signatures (keys in G1, signatures in G2, hash-to-curve); [`codec`]: the one
//!   binary encoding.
//! - [`message`]: signed messages, methods, gas and receipts.
//! - [`store`], [`smt`] and [`keys`]: the state as a key–value map in sled, its authenticated root
//!   (a sparse Merkle tree), atomic flushed commits (one per applied epoch, the null rounds
//!   before it included) with undo records for reorganisations.
//! - [`actor`]: the record every actor has and the built-in ids; [`runtime`]: what a method sees.
//! - [`actors`]: accounts, miner, power, market, verified registry, reward, the compute slot, and
//!   the economic snapshot their formulas read.
//! - [`monies`], [`minting`], [`smooth`], [`fixed`], [`math`]: the economics in integers.
//! - [`header`]: block headers, election proofs and win counts (Expected Consensus); [`consensus`]:
//!   tickets, beacons, tipset keys and the fork-choice weight; [`block`]:
//!   blocks with their messages, and tipsets.
//! - [`chain`]: genesis and the epoch executor (a tipset and the null rounds before it in one
//!   commit); [`invariants`]: the state checks.
//!
//! Only this crate decides consensus. It verifies proofs through
//! [`lode_proofs::verifier::ProofVerifier`] and knows nothing of networking.
//!
//! No unsafe code, and outside tests the compiler rejects `unwrap`, `expect`, `panic!`, unchecked
//! indexing and arithmetic that can overflow: token amounts use checked arithmetic
//! ([`error::OutOfRange`]), epochs saturate ([`types::Epoch`]).

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

pub mod actor;
pub mod actors;
pub mod block;
pub mod chain;
pub mod codec;
pub mod consensus;
pub mod crypto;
pub mod error;
pub mod fixed;
pub mod genesis;
pub mod header;
pub mod invariants;
pub mod keys;
pub mod math;
pub mod message;
pub mod minting;
pub mod monies;
pub mod policy;
pub mod runtime;
pub mod smooth;
pub mod smt;
pub mod store;
pub mod types;

pub use chain::{AfterNulls, Chain, EpochInput, NullRound, TipsetOutcome};
pub use error::{ActorError, ChainError, ExitCode};
pub use genesis::Genesis;
pub use policy::Policy;
