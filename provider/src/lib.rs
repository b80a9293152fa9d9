//! `lode-provider`: the storage provider's daemon (`lode provider run`).
//!
//! This crate holds the provider's proving half: a miner process holds its sealed sector
//! directories and the PoSt parameters in memory and, connected to a node through [`NodeApi`]
//! (the node's RPC, or an in-process node), produces a block whenever it wins an election
//! ([`miner`]: ticket, election proof, Winning PoSt, signature), proves every deadline that holds
//! its partitions with a Window PoSt, declares faulty the sectors that fail the proving check
//! ([`prover::SectorStore::check`]) and declares them recovered when they pass again ([`poster`]). [`daemon::mine_loop`] and [`daemon::post_loop`] drive them once per epoch, on the
//! network's clock. The sealing pipeline ([`pipeline::runner::run_pipeline`]) runs on the same
//! clock; `lode provider run` does not start it yet.
//!
//! - [`prover`]: the sector store and the Groth16 proving of Winning and Window PoSt;
//! - [`rpc`]: the provider's own JSON-RPC API (info, sectors, deadlines, elections, fault and
//!   recovery declarations) and its typed client; [`status`]: what the loops publish for it;
//! - [`metrics`]: the provider's Prometheus metrics (`lode_provider_…`); [`dashboard`]: the HTML
//!   page and its JSON served beside them (`GET /`, `GET /api/dashboard.json`);
//! - [`pipeline`]: the sector pipeline: its persisted state machine (states, retries, the sled
//!   records) and the driver that seals committed-capacity and deal sectors through it
//!   ([`pipeline::runner`]); deal pieces handed over by the market ([`pipeline::deals`]) and
//!   read back for retrieval ([`pipeline::reader`]);
//! - [`market`]: the deal market hosted by the daemon (the market crate's deal service and
//!   retrieval server over this daemon's pipeline and message sender; peer info on chain);
//! - [`engine`]: the task engine a cluster's machines claim work from ([`engine::TaskEngine`]:
//!   embedded in sled, or shared in PostgreSQL), with fenced claims, heartbeats and leases;
//! - [`worker`]: a cluster worker (`lode worker run`) claiming sealing tasks from the engine and
//!   [`cluster`]: sealing a sector across a cluster's workers, and the cluster's status;
//! - [`tasks`]: the task scheduler: sealing phases and PoSt as tasks with declared resources,
//!   admitted within the machine and per-kind limits, PoSt first; fenced, persisted records.

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

pub mod api;
pub mod cluster;
pub mod daemon;
pub mod dashboard;
pub mod engine;
pub mod error;
pub mod files;
pub mod leader;
pub mod market;
pub mod metrics;
pub mod miner;
pub mod pipeline;
pub mod poster;
pub mod preseal;
pub mod prover;
pub mod rpc;
pub mod run;
pub mod status;
pub mod tasks;
pub mod worker;

pub use api::{DealLookup, NodeApi};
pub use error::{ProviderError, ProviderResult};
