//! `lode-market`: deals, data transfer, retrieval and compute-over-data jobs.
//!
//! This crate owns what clients and providers exchange off-chain:
//!
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

pub mod error;
pub mod retrieval;

pub use error::{MarketError, MarketResult};
