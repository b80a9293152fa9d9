//! `lode-market`: deals, data transfer, retrieval and compute-over-data jobs.
//!
//! This crate owns what clients and providers exchange off-chain:
//!
//! - [`deal`]: the deal protocol's messages (storage asks, deal requests and signed responses),
//!   their strict codec, and the provider's deal policy ([`deal::policy`]) over a
//!   [`deal::policy::ChainView`] ([`deal::chain`]: over the node's RPC);
//! - [`net`]: the market's libp2p host (`/lode/ask/1`, `/lode/deal/1`);
//! - [`transfer`]: the provider's HTTP pull (resumable, bounded, public addresses only unless
//!   allowed), the CommP check of what arrived, and the client's file server;
//! - [`provider`]: the provider's deal records and the service that takes a deal from
//!   acceptance through transfer, publication and sealing to activation.
//! - [`retrieval`]: the provider's HTTP retrieval server (`GET|HEAD /piece/<piece CID>` with
//!   ranges, conditional requests and bounded resources) over a [`retrieval::PieceSource`].

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

pub mod deal;
pub mod error;
pub mod net;
pub mod provider;
pub mod retrieval;
pub mod transfer;

pub use error::{MarketError, MarketResult};
