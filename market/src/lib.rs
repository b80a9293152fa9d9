//! `lode-market`: deals, data transfer, retrieval and compute-over-data jobs.
//!
//! This crate owns what clients and providers exchange off-chain:
//!
//! - [`cid`]: piece CIDs as the `cid` crate's [`::cid::Cid`] (the definition stays in
//!   `lode_proofs::cid`), block CIDs and hash checks;
//! - [`unixfs`]: files and directory trees packed into a UnixFS v1 DAG (raw leaves, balanced
//!   dag-pb file nodes, directories) and unpacked back, byte-identical, from untrusted DAGs;
//! - [`car`]: CARv1 writing (iroh-car), CARv1/v2 reading with every block checked (rs-car), the
//!   block index (CID → offset, length) that retrieval serves from, and unpacking a CAR to files;
//! - [`client`]: the client's side of deals and retrieval: providers found on chain, asks,
//!   proposals, escrow, the payload served or pushed, the client's deal records and their state
//!   on chain, and retrieval with the CommP checked;
//! - [`import`]: the client's import store (`lode client import`, `lode client list-imports`):
//!   the payload CAR kept, with its payload root, piece CID and sizes;
//! - [`deal`]: the deal protocol's messages (storage asks, deal requests and signed responses),
//!   their strict codec, and the provider's deal policy ([`deal::policy`]) over a
//!   [`deal::policy::ChainView`] ([`deal::chain`]: over the node's RPC);
//! - [`net`]: the market's libp2p host (`/lode/ask/1`, `/lode/deal/1`);
//! - [`transfer`]: the provider's HTTP pull (resumable, bounded, public addresses only unless
//!   allowed), the CommP check of what arrived, and the client's file server;
//! - [`provider`]: the provider's deal records and the service that takes a deal from
//!   acceptance through transfer, publication and sealing to activation;
//! - [`retrieval`]: the provider's HTTP retrieval server (`GET|HEAD /piece/<piece CID>` with
//!   ranges, conditional requests and bounded resources) over a [`retrieval::PieceSource`].
//! - [`compute`]: compute-over-data jobs: the job spec and canonical job, the deterministic
//!   WASM executor (wasmtime, WASI preview 1) and the result hash;
//! - [`jobs`]: the provider's side of compute jobs: which it takes ([`jobs::JobSettings`]), its
//!   module store, its crash-safe job records, the service that accepts, runs, commits, reveals
//!   or posts on time, and the HTTP routes for modules and outputs;
//! - [`error`]: [`MarketError`] and [`MarketResult`].

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

pub mod car;
pub mod cid;
pub mod client;
pub mod compute;
pub mod deal;
pub mod error;
pub mod import;
pub mod jobs;
pub mod net;
pub mod provider;
pub mod retrieval;
pub mod transfer;
pub mod unixfs;

pub use error::{MarketError, MarketResult};
