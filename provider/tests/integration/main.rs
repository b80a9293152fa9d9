//! The provider daemon's integration tests: the sealing pipeline step by step against a scripted
//! node and end to end against a real in-process node, sector batches, deal pieces, storage
//! faults, its records through kill -9 and in PostgreSQL, its API over real HTTP, and its metrics and alert rules
//! through `promtool`.
//!
//! One test binary for all of them: each integration-test binary links the whole stack again.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod alert_rules;
mod batch;
mod common;
mod deals;
mod engine;
mod faults;
mod files;
mod kill;
mod records;
mod remote;
mod rpc;
mod run;
mod steps;
