//! `lode-market`: deals, data transfer, retrieval and compute-over-data jobs.
//!
//! This crate will own what clients and providers exchange off-chain: storage deal negotiation,
//! transfer of pieces to providers, retrieval of stored data, and compute jobs run next to the data.
