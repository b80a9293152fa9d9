//! Blocks and tipsets: headers with their messages, what the executor applies at one epoch.
//!
//! Headers, election proofs and win counts are in [`crate::header`] (re-exported here), below the
//! actors; this module sits above them, with the messages that call them.

use serde::{Deserialize, Serialize};

use crate::message::SignedMessage;
use crate::types::Epoch;

pub use crate::header::{BlockHeader, win_count};

/// A block: header and messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// Header.
    pub header: BlockHeader,
    /// Messages, applied in order.
    pub messages: Vec<SignedMessage>,
}

/// Everything applied at one epoch: the beacon and the blocks (none in a null round).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tipset {
    /// Epoch.
    pub epoch: Epoch,
    /// The beacon value.
    pub beacon: [u8; 32],
    /// The blocks, at most one per miner.
    pub blocks: Vec<Block>,
}

/// `H("lode/chain/messages", id_1 || id_2 || …)`.
pub fn messages_root(messages: &[SignedMessage]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("lode/chain/messages");
    for m in messages {
        h.update(&m.id());
    }
    *h.finalize().as_bytes()
}
