//! `lode-devnet`: local lode networks.
//!
//! - [`genesis`]: `lode genesis new` — fresh keys, miners whose sectors are sealed for real, the
//!   genesis file;
//! - [`devnet`]: `lode devnet` — a network of node and provider processes on loopback, laid out in
//!   one directory:
//!
//! | path | what |
//! |---|---|
//! | `devnet.json` | endpoints, directories, logs and process ids of every node and miner ([`devnet::DevnetFile`]) |
//! | `genesis.json`, `keys/` | the genesis and its keys (`keys/faucet.key` is a funded account) |
//! | `node-<i>/` | a node's directory (`config.toml`, chain, `token`, `p2p.key`, `endpoints.json`) |
//! | `miner-<i>/` | a provider's directory (`config.toml`, `worker.key`, `sectors/`, its API `token`, `endpoints.json`) |
//! | `logs/` | one log file per process |

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

pub mod devnet;
pub mod error;
pub mod genesis;

pub use error::{DevnetError, DevnetResult};
