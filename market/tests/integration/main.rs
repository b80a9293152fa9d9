//! The market's integration tests: two libp2p hosts negotiating asks and deals, HTTP transfers
//! against real servers that misbehave, the provider's deal service through crashes, and its
//! compute-job service against the chain's rules and the real executor; the executor on the
//! example jobs, the HTTP gateway and retrieval end to end, and CAR files checked against the
//! `ipfs-car` tool.
//!
//! One test binary for all of them: each integration-test binary links the whole stack again.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod client;
mod common;
mod compute;
mod gateway;
mod ipfs_car_interop;
mod jobs;
mod negotiation;
mod provider_flow;
mod retrieval;
mod rpc_view;
mod transfer;
