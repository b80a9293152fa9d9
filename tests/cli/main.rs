//! The `lode` binary driven as a user drives it, without a devnet: the general commands and
//! `lode bench`, the wallet and client commands against an in-process node, data import, sealing
//! phase by phase and its guards, SNARKs over real sealed sectors, and the repository's own hygiene.
//!
//! One test binary for all of them: each integration-test binary links the whole stack again.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod basics;
mod client;
mod cluster;
#[path = "../common/mod.rs"]
mod common;
mod market_client;
mod seal;
mod seal_guards;
mod snark;
mod tidy;
