//! The node's integration tests: the consensus core without a network, the networking layer with
//! real swarms on 127.0.0.1, and the JSON-RPC API end to end.
//!
//! One test binary for all of them: each integration-test binary links the whole stack again.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod adversary;
mod consensus;
mod net;
mod rpc;
