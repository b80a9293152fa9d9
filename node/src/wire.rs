//! What nodes send each other: gossiped blocks and messages, and the chain-sync protocol.
//!
//! Everything is postcard-encoded ([`lode_chain::codec`]) and decoded strictly: trailing bytes are
//! an error, lengths are bounded by the transport (the net layer caps every payload) and by the
//! counts below, and a decoder never panics (property-tested).
//!
//! Sync requests (protocol `/lode/<network>/sync/1`):
//! - `Status`: the responder's genesis id, head tipset key, epoch and weight;
//! - `Ancestors { head, count }`: the tipset `head` and its ancestors, newest first, at most
//!   [`MAX_SYNC_TIPSETS`], each with every block's messages — how a node fetches a fork or catches
//!   up, walking back until it reaches a tipset it knows;
//! - `Range { from, count }`: the responder's canonical tipsets at epochs `from..from+count`
//!   (null rounds skipped), oldest first.

use lode_chain::block::BlockHeader;
use lode_chain::consensus::TipsetKey;
use lode_chain::message::SignedMessage;
use lode_chain::types::Epoch;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{NodeError, NodeResult};

/// Most tipsets one sync response carries.
pub const MAX_SYNC_TIPSETS: u64 = 64;

/// A block with its messages, as gossiped and synced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FullBlock {
    /// The header.
    pub header: BlockHeader,
    /// The messages, in order.
    pub messages: Vec<SignedMessage>,
}

impl FullBlock {
    /// The block's id.
    pub fn id(&self) -> [u8; 32] {
        self.header.id()
    }
}

/// A tipset with its blocks' messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FullTipset {
    /// The blocks (same epoch, same parents).
    pub blocks: Vec<FullBlock>,
}

/// A sync request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncRequest {
    /// The responder's head.
    Status,
    /// `head` and its ancestors, newest first.
    Ancestors {
        /// The newest tipset wanted.
        head: TipsetKey,
        /// How many (at most [`MAX_SYNC_TIPSETS`]).
        count: u64,
    },
    /// Canonical tipsets at epochs `from..from + count`, oldest first.
    Range {
        /// First epoch.
        from: Epoch,
        /// Number of epochs (at most [`MAX_SYNC_TIPSETS`]).
        count: u64,
    },
}

/// A node's view of its chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The genesis id.
    pub genesis: [u8; 32],
    /// The head tipset.
    pub head: TipsetKey,
    /// Its epoch.
    pub epoch: Epoch,
    /// Its weight.
    pub weight: u128,
}

/// A sync response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResponse {
    /// Answer to [`SyncRequest::Status`].
    Status(Status),
    /// Answer to `Ancestors` and `Range`.
    Tipsets(Vec<FullTipset>),
    /// The request could not be served.
    Error(String),
}

/// Encodes anything the node sends.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    lode_chain::codec::encode(value)
}

/// Decodes `bytes` as exactly one `T` (no trailing bytes).
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> NodeResult<T> {
    let (value, rest) = postcard::take_from_bytes::<T>(bytes).map_err(|e| NodeError::Decode {
        what,
        why: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(NodeError::Decode {
            what,
            why: format!("{} trailing bytes", rest.len()),
        });
    }
    Ok(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decoders_never_panic_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode::<FullBlock>(&bytes, "block");
            let _ = decode::<SignedMessage>(&bytes, "message");
            let _ = decode::<SyncRequest>(&bytes, "sync request");
            let _ = decode::<SyncResponse>(&bytes, "sync response");
        }

        #[test]
        fn truncations_and_extensions_of_a_request_are_errors(count in 0u64..1000, cut in 0usize..64, extra in 1usize..8) {
            let req = SyncRequest::Ancestors { head: TipsetKey::new(vec![[7; 32]]), count };
            let bytes = encode(&req);
            prop_assert_eq!(decode::<SyncRequest>(&bytes, "sync request").unwrap(), req);
            if cut < bytes.len() {
                prop_assert!(decode::<SyncRequest>(&bytes[..cut], "sync request").is_err());
            }
            let mut longer = bytes.clone();
            longer.extend(std::iter::repeat_n(0u8, extra));
            prop_assert!(decode::<SyncRequest>(&longer, "sync request").is_err());
        }
    }
}
