//! What nodes send each other: gossiped blocks and messages, and the chain-sync protocol.
//!
//! Everything is postcard-encoded ([`lode_chain::codec`]) and decoded strictly: trailing bytes are
//! an error, lengths are bounded by the transport (the net layer caps every payload) and by the
//! counts below, and a decoder never panics (property-tested).
//!
//! Gossiped messages (`/msgs`) are [`SignedMessage`](lode_chain::message::SignedMessage)s, each with its signature. A block carries
//! its messages unsigned: its header's `bls_aggregate` is the aggregate of their signatures
//! ([`lode_chain::block`]), so a block costs one signature however many messages it has.
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
use lode_chain::message::Message;
use lode_chain::types::Epoch;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{NodeError, NodeResult};

/// Most tipsets one sync response carries.
pub const MAX_SYNC_TIPSETS: u64 = 64;

/// A block with its messages, as gossiped and synced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FullBlock {
    /// The header (with the aggregate of the messages' signatures).
    pub header: BlockHeader,
    /// The messages, in order, unsigned.
    pub messages: Vec<Message>,
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
    use lode_chain::block::BlockMessages;
    use lode_chain::crypto::SecretKey;
    use lode_chain::message::{Method, SignedMessage};
    use lode_chain::types::{ActorId, Address, TokenAmount};
    use proptest::prelude::*;

    /// A block with three signed transfers aggregated (the header's other fields arbitrary).
    fn sample_block() -> FullBlock {
        static BLOCK: std::sync::OnceLock<FullBlock> = std::sync::OnceLock::new();
        BLOCK
            .get_or_init(|| {
                let key = SecretKey::from_seed(&[5; 32]);
                let signed: Vec<SignedMessage> = (0..3u64)
                    .map(|n| {
                        Message {
                            from: Address::Id(ActorId(100 + n)),
                            to: Address::Bls(key.public_key()),
                            nonce: n,
                            value: TokenAmount::atto(u128::from(n) + 1),
                            method: Method::Send,
                            gas_limit: 1_000_000,
                            gas_price: TokenAmount::atto(100),
                        }
                        .sign("devnet", &key)
                    })
                    .collect();
                let body = BlockMessages::from_signed(&signed).unwrap();
                let header = BlockHeader {
                    epoch: 7,
                    miner: ActorId(1000),
                    parents: vec![[1; 32], [2; 32]],
                    parent_weight: 12345,
                    ticket: key.sign(b"ticket"),
                    timestamp: 1_700_000_000,
                    parent_state_root: [3; 32],
                    beacon: [4; 32],
                    messages_root: body.root(),
                    bls_aggregate: body.bls_aggregate,
                    election_proof: key.sign(b"election"),
                    win_count: 2,
                    winning_post: vec![9; 192],
                    signature: key.sign(b"header"),
                };
                FullBlock {
                    header,
                    messages: body.messages,
                }
            })
            .clone()
    }

    proptest! {
        #[test]
        fn decoders_never_panic_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode::<FullBlock>(&bytes, "block");
            let _ = decode::<SignedMessage>(&bytes, "message");
            let _ = decode::<SyncRequest>(&bytes, "sync request");
            let _ = decode::<SyncResponse>(&bytes, "sync response");
        }

        #[test]
        fn a_block_round_trips_and_its_truncations_and_extensions_are_errors(cut in 0usize..4096, extra in 1usize..8, flip in 0usize..4096, bit in 0u8..8) {
            let block = sample_block();
            let bytes = encode(&block);
            prop_assert_eq!(decode::<FullBlock>(&bytes, "block").unwrap(), block);
            let cut = cut % bytes.len();
            prop_assert!(decode::<FullBlock>(&bytes[..cut], "block").is_err());
            let mut longer = bytes.clone();
            longer.extend(std::iter::repeat_n(0u8, extra));
            prop_assert!(decode::<FullBlock>(&longer, "block").is_err());
            // A flipped bit decodes to a block or to an error, never a panic.
            let mut flipped = bytes.clone();
            flipped[flip % bytes.len()] ^= 1 << bit;
            let _ = decode::<FullBlock>(&flipped, "block");
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
