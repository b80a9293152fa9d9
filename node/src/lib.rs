//! `lode-node`: the chain made live — the chain store, sync, the mempool, block production, libp2p
//! networking, the JSON-RPC server and metrics.
//!
//! - [`net`]: the libp2p swarm (TCP and QUIC, noise, yamux, identify, ping, Kademlia, gossipsub
//!   with validation and peer scoring, request–response for chain sync), driven by its own task
//!   and reached through a [`net::NetHandle`]; it moves bytes and knows nothing of blocks.
//! - [`core`]: the consensus core — block graph, fork choice, reorganisations, the state at the
//!   head, mining bases — synchronous and deterministic; [`blockstore`]: blocks and tipset
//!   records in sled; [`mempool`]: pending messages; [`wire`]: what nodes send each other;
//!   [`genesis`]: the genesis file.
//! - [`service`]: the running node — the core behind a lock, gossip handling, sync jobs, head
//!   events; [`metrics`]: its Prometheus metrics.
//! - [`rpc`]: the JSON-RPC API (HTTP and WebSocket) with its token auth, `GET /metrics`, and the
//!   typed client the CLI uses.

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

pub mod net;

pub mod blockstore;
pub mod core;
pub mod daemon;
pub mod error;
pub mod genesis;
pub mod mempool;
pub mod metrics;
pub mod rpc;
pub mod service;
pub mod wallet;
pub mod wire;

pub use error::{NodeError, NodeResult};
