//! The market's integration tests: two libp2p hosts negotiating asks and deals, HTTP transfers
//! against real servers that misbehave, and the provider's deal service through crashes.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod client;
mod common;
mod negotiation;
mod provider_flow;
mod rpc_view;
mod transfer;
