//! The market's integration tests: two libp2p hosts negotiating asks and deals, HTTP transfers
//! against real servers that misbehave, the provider's deal service through crashes, and its
//! compute-job service against the chain's rules and the real executor.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod client;
mod common;
mod jobs;
mod negotiation;
mod provider_flow;
mod rpc_view;
mod transfer;
