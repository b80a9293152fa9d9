//! The genesis file: the network's rules, its start time and its initial state.
//!
//! A JSON file (`genesis.json`) that every node of a network loads: the [`Policy`], the Unix time of
//! epoch 0, and the [`Genesis`] state (accounts, the verified-registry root, miners with pre-sealed
//! sectors). Its id — `H("lode/node/genesis", canonical encoding)` — names the network's chain: a
//! node refuses a directory created from another genesis, and peers compare it.

use std::path::Path;

use lode_chain::types::Epoch;
use lode_chain::{Genesis, Policy};
use serde::{Deserialize, Serialize};

use crate::error::{NodeError, NodeResult};

/// The genesis file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisFile {
    /// The rules (the network name is `policy.network`).
    pub policy: Policy,
    /// Unix time (seconds) of epoch 0; epoch `e` starts `e × epoch_duration_seconds` later.
    pub timestamp: u64,
    /// The initial state.
    pub genesis: Genesis,
}

impl GenesisFile {
    /// Reads and checks a genesis file.
    pub fn load(path: &Path) -> NodeResult<Self> {
        let bytes = std::fs::read(path).map_err(NodeError::io(path))?;
        let g: GenesisFile = serde_json::from_slice(&bytes).map_err(|e| NodeError::Genesis {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        if g.policy.epoch_duration_seconds == 0 {
            return Err(NodeError::Genesis {
                path: path.to_path_buf(),
                why: "the policy's epoch duration is 0".into(),
            });
        }
        Ok(g)
    }

    /// Writes the file atomically.
    pub fn save(&self, path: &Path) -> NodeResult<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| NodeError::Genesis {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        lode_proofs::durable::write_atomic(path, &json).map_err(|e| NodeError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })
    }

    /// The network's name.
    pub fn network(&self) -> &str {
        &self.policy.network
    }

    /// `H("lode/node/genesis", canonical encoding)`.
    pub fn id(&self) -> [u8; 32] {
        *blake3::Hasher::new_derive_key("lode/node/genesis")
            .update(&lode_chain::codec::encode(self))
            .finalize()
            .as_bytes()
    }

    /// The Unix time epoch `epoch` starts at (saturating).
    pub fn slot_time(&self, epoch: Epoch) -> u64 {
        self.timestamp
            .saturating_add(epoch.saturating_mul(self.policy.epoch_duration_seconds))
    }

    /// The epoch running at Unix time `now` (0 before genesis).
    pub fn epoch_at(&self, now: u64) -> Epoch {
        now.saturating_sub(self.timestamp)
            .checked_div(self.policy.epoch_duration_seconds)
            .unwrap_or(0)
    }
}

/// The current Unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
