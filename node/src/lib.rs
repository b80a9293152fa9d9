//! `lode-node`: the chain made live — the chain store, sync, the mempool, block production, libp2p
//! networking, the JSON-RPC server and metrics.
//!
//! - [`net`]: the libp2p swarm (TCP and QUIC, noise, yamux, identify, ping, Kademlia, gossipsub
//!   with validation and peer scoring, request–response for chain sync), driven by its own task
//!   and reached through a [`net::NetHandle`]; it moves bytes and knows nothing of blocks.

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
