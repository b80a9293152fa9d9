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

/// Decodes `bytes` as exactly one `T` in its canonical encoding: no trailing bytes, and the bytes
/// [`encode`] writes for the value (postcard also reads over-long varints, so without this one
/// message or block would have many encodings, each passing as new to gossip and to anything
/// keyed by the bytes).
pub fn decode<T: Serialize + DeserializeOwned>(bytes: &[u8], what: &'static str) -> NodeResult<T> {
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
    if encode(&value) != bytes {
        return Err(NodeError::Decode {
            what,
            why: "not in canonical form (an integer is encoded longer than it needs)".into(),
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

    #[test]
    fn over_long_integers_are_refused() {
        // Postcard writes 5 in one varint byte and also reads it from two (0x85 0x00): only the
        // first is the encoding, or one value would travel under many byte strings.
        let req = SyncRequest::Range { from: 5, count: 5 };
        assert_eq!(encode(&req), [2, 5, 5]);
        assert_eq!(
            decode::<SyncRequest>(&[2, 5, 5], "sync request").unwrap(),
            req
        );
        let err = decode::<SyncRequest>(&[2, 0x85, 0x00, 5], "sync request").unwrap_err();
        assert!(err.to_string().contains("canonical"), "{err}");
        // What the fuzzer found (fuzz/fuzz/corpus/signed_message/regression-overlong-varint): a
        // signed message's sender id, 104, in two bytes.
        let block = sample_block();
        let msg = SignedMessage {
            message: block.messages[0].clone(),
            signature: block.header.signature,
        };
        let bytes = encode(&msg);
        assert_eq!(bytes[..2], [0, 100]);
        let longer = [&[0, 0xe4, 0x00][..], &bytes[2..]].concat();
        assert!(decode::<SignedMessage>(&longer, "message").is_err());
    }

    proptest! {
        #[test]
        fn whatever_decodes_is_its_own_canonical_encoding(flip in 0usize..4096, bit in 0u8..8) {
            let bytes = encode(&sample_block());
            let mut flipped = bytes.clone();
            flipped[flip % bytes.len()] ^= 1 << bit;
            if let Ok(b) = decode::<FullBlock>(&flipped, "block") {
                prop_assert_eq!(encode(&b), flipped);
            }
        }

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

/// Adversarial mutations of honest encodings: a block as a producer makes it (messages from three
/// accounts under one aggregate, the header signed by the worker), a signed message, and a sync
/// response carrying the block. Every decoder of network input either refuses a mutation or yields
/// a value that fails the checks a node makes without state — or is the original, re-encoding to
/// the original bytes. Truncations and extensions are always refused.
#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod mutations {
    use std::collections::{HashMap, HashSet};

    use lode_chain::block::{Block, BlockMessages, messages_root};
    use lode_chain::crypto::{PublicKey, SecretKey, aggregate_verify};
    use lode_chain::message::{Method, SignedMessage};
    use lode_chain::types::{ActorId, Address, TokenAmount};
    use proptest::prelude::*;

    use super::*;

    const NETWORK: &str = "devnet";

    struct Fixture {
        block: FullBlock,
        block_bytes: Vec<u8>,
        message: SignedMessage,
        message_bytes: Vec<u8>,
        response: SyncResponse,
        response_bytes: Vec<u8>,
        worker: PublicKey,
        accounts: HashMap<ActorId, PublicKey>,
    }

    fn fixture() -> &'static Fixture {
        static F: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
        F.get_or_init(|| {
            let worker = SecretKey::from_seed(&[5; 32]);
            let senders: Vec<SecretKey> = (0..3u8)
                .map(|i| SecretKey::from_seed(&[10 + i; 32]))
                .collect();
            let mut signed: Vec<SignedMessage> = (0..3u64)
                .map(|n| {
                    Message {
                        from: Address::Id(ActorId(100 + n)),
                        to: Address::Id(ActorId(101)),
                        nonce: n + 4,
                        value: TokenAmount::atto(u128::from(n) * 1_000 + 1),
                        method: Method::Send,
                        gas_limit: 1_000_000,
                        gas_price: TokenAmount::atto(100),
                    }
                    .sign(NETWORK, &senders[n as usize])
                })
                .collect();
            // A sender named by its key, as a new account sends.
            signed.push(
                Message {
                    from: Address::Bls(senders[2].public_key()),
                    to: Address::Id(ActorId(100)),
                    nonce: 0,
                    value: TokenAmount::atto(9),
                    method: Method::Send,
                    gas_limit: 2_000_000,
                    gas_price: TokenAmount::atto(150),
                }
                .sign(NETWORK, &senders[2]),
            );
            let body = BlockMessages::from_signed(&signed).unwrap();
            let mut header = BlockHeader {
                epoch: 7,
                miner: ActorId(1000),
                parents: vec![[1; 32], [2; 32]],
                parent_weight: 12345,
                ticket: worker.sign(b"ticket"),
                timestamp: 1_700_000_000,
                parent_state_root: [3; 32],
                beacon: [4; 32],
                messages_root: body.root(),
                bls_aggregate: body.bls_aggregate,
                election_proof: worker.sign(b"election"),
                win_count: 2,
                winning_post: vec![9; 192],
                signature: worker.sign(b""),
            };
            header.signature = worker.sign(&header.signing_bytes(NETWORK));
            let block = FullBlock {
                header,
                messages: body.messages,
            };
            let response = SyncResponse::Tipsets(vec![FullTipset {
                blocks: vec![block.clone()],
            }]);
            let f = Fixture {
                block_bytes: encode(&block),
                message_bytes: encode(&signed[1]),
                message: signed[1].clone(),
                response_bytes: encode(&response),
                response,
                block,
                worker: worker.public_key(),
                accounts: (0..3u64)
                    .map(|n| (ActorId(100 + n), senders[n as usize].public_key()))
                    .collect(),
            };
            assert!(f.block_valid(&f.block), "the honest block must pass");
            assert!(f.message_valid(&f.message), "the honest message must pass");
            assert!(f.response_valid(&f.response));
            f
        })
    }

    impl Fixture {
        fn key_of(&self, a: &Address) -> Option<PublicKey> {
            match a {
                Address::Bls(k) => Some(*k),
                Address::Id(id) => self.accounts.get(id).copied(),
            }
        }

        /// What a node checks of a block without state: the messages root, the worker's
        /// signature of the header, and the rules of one aggregate per block
        /// ([`lode_chain::block`]): no repeat, an aggregate exactly when there are messages,
        /// every sender with a key, and the aggregate verifying.
        fn block_valid(&self, b: &FullBlock) -> bool {
            let h = &b.header;
            if h.messages_root != messages_root(&b.messages)
                || self
                    .worker
                    .verify(&h.signing_bytes(NETWORK), &h.signature)
                    .is_err()
            {
                return false;
            }
            let mut ids = HashSet::new();
            if !b.messages.iter().all(|m| ids.insert(m.id())) {
                return false;
            }
            let aggregate = match (&h.bls_aggregate, b.messages.is_empty()) {
                (None, true) => return true,
                (Some(a), false) => a,
                _ => return false,
            };
            let Some(keys) = b
                .messages
                .iter()
                .map(|m| self.key_of(&m.from))
                .collect::<Option<Vec<_>>>()
            else {
                return false;
            };
            let bytes: Vec<[u8; 32]> = b
                .messages
                .iter()
                .map(|m| m.signing_bytes(NETWORK))
                .collect();
            let pairs: Vec<(&PublicKey, &[u8])> = keys
                .iter()
                .zip(&bytes)
                .map(|(k, m)| (k, m.as_slice()))
                .collect();
            aggregate_verify(&pairs, aggregate).is_ok()
        }

        fn message_valid(&self, m: &SignedMessage) -> bool {
            self.key_of(&m.message.from)
                .is_some_and(|k| m.verify(NETWORK, &k))
        }

        fn response_valid(&self, r: &SyncResponse) -> bool {
            match r {
                SyncResponse::Tipsets(ts) => {
                    !ts.is_empty()
                        && ts.iter().all(|t| {
                            !t.blocks.is_empty() && t.blocks.iter().all(|b| self.block_valid(b))
                        })
                }
                _ => false,
            }
        }

        /// Decodes `bytes` with every decoder that may be handed the block's, the message's or
        /// the response's bytes; fails when one of them yields a value that passes its checks
        /// and is not the original (or does not re-encode to the original bytes).
        fn check(&self, bytes: &[u8]) -> Result<(), TestCaseError> {
            if let Ok(b) = decode::<FullBlock>(bytes, "block") {
                if self.block_valid(&b) {
                    prop_assert_eq!(&b, &self.block, "a mutated block passes");
                    prop_assert_eq!(encode(&b), self.block_bytes.clone());
                } else {
                    prop_assert_ne!(&b, &self.block);
                }
            }
            if let Ok(b) = decode::<Block>(bytes, "block") {
                let b = FullBlock {
                    header: b.header,
                    messages: b.messages,
                };
                prop_assert!(!self.block_valid(&b) || b == self.block);
            }
            if let Ok(t) = decode::<FullTipset>(bytes, "tipset") {
                for b in &t.blocks {
                    prop_assert!(!self.block_valid(b) || *b == self.block);
                }
            }
            if let Ok(m) = decode::<SignedMessage>(bytes, "message")
                && self.message_valid(&m)
            {
                prop_assert_eq!(&m, &self.message, "a mutated message passes");
                prop_assert_eq!(encode(&m), self.message_bytes.clone());
            }
            if let Ok(r) = decode::<SyncResponse>(bytes, "sync response")
                && self.response_valid(&r)
            {
                prop_assert_eq!(&r, &self.response, "a mutated response passes");
                prop_assert_eq!(encode(&r), self.response_bytes.clone());
            }
            let _ = decode::<SyncRequest>(bytes, "sync request");
            Ok(())
        }

        fn originals(&self) -> [&[u8]; 3] {
            [&self.block_bytes, &self.message_bytes, &self.response_bytes]
        }
    }

    /// Every strict prefix of each original is refused by its decoder (and by the chain's block
    /// decoder for the block's bytes), and no decoder makes anything valid of it.
    #[test]
    fn every_truncation_is_refused() {
        let f = fixture();
        for original in f.originals() {
            for cut in 0..original.len() {
                f.check(&original[..cut]).unwrap();
            }
        }
        for cut in 0..f.block_bytes.len() {
            let p = &f.block_bytes[..cut];
            assert!(decode::<FullBlock>(p, "block").is_err(), "cut {cut}");
            assert!(decode::<Block>(p, "block").is_err(), "cut {cut}");
        }
        for cut in 0..f.response_bytes.len() {
            let p = &f.response_bytes[..cut];
            assert!(
                decode::<SyncResponse>(p, "sync response").is_err(),
                "cut {cut}"
            );
        }
        for cut in 0..f.message_bytes.len() {
            let p = &f.message_bytes[..cut];
            assert!(decode::<SignedMessage>(p, "message").is_err(), "cut {cut}");
        }
    }

    /// One bit flipped in every byte of the block: whatever still decodes is caught by the
    /// checks (and some flips do decode: the checks are exercised, not only the decoder).
    #[test]
    fn a_bit_flipped_in_any_byte_of_a_block_is_refused_or_caught() {
        let f = fixture();
        let mut decoded = 0;
        for i in 0..f.block_bytes.len() {
            let mut b = f.block_bytes.clone();
            b[i] ^= 1 << (i % 8);
            f.check(&b).unwrap();
            if let Ok(d) = decode::<FullBlock>(&b, "block") {
                assert!(!f.block_valid(&d), "byte {i}");
                decoded += 1;
            }
        }
        assert!(
            decoded > f.block_bytes.len() / 4,
            "only {decoded} flips decoded"
        );
    }

    #[derive(Clone, Debug)]
    enum Mutation {
        /// Keep this many bytes (modulo the length).
        Truncate(usize),
        /// Append these bytes.
        Extend(Vec<u8>),
        /// Flip these bits (byte index modulo the length, bit).
        Flip(Vec<(usize, u8)>),
        /// Replace these bytes (index modulo the length).
        Replace(Vec<(usize, u8)>),
        /// Insert bytes at an index (modulo the length + 1).
        Insert(usize, Vec<u8>),
        /// Remove a run of bytes starting at an index.
        Remove(usize, usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let edits = || proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6);
        prop_oneof![
            any::<usize>().prop_map(Mutation::Truncate),
            proptest::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Extend),
            proptest::collection::vec((any::<usize>(), 0u8..8), 1..6).prop_map(Mutation::Flip),
            edits().prop_map(Mutation::Replace),
            (
                any::<usize>(),
                proptest::collection::vec(any::<u8>(), 1..16)
            )
                .prop_map(|(i, b)| Mutation::Insert(i, b)),
            (any::<usize>(), 1usize..32).prop_map(|(i, n)| Mutation::Remove(i, n)),
        ]
    }

    /// `original` mutated; `None` when the mutation changes nothing (a byte replaced by itself).
    fn apply(original: &[u8], m: &Mutation) -> Option<Vec<u8>> {
        let len = original.len();
        let mut b = original.to_vec();
        match m {
            Mutation::Truncate(n) => b.truncate(n % len),
            Mutation::Extend(extra) => b.extend_from_slice(extra),
            Mutation::Flip(flips) => {
                for (i, bit) in flips {
                    b[i % len] ^= 1 << bit;
                }
            }
            Mutation::Replace(edits) => {
                for (i, v) in edits {
                    b[i % len] = *v;
                }
            }
            Mutation::Insert(i, extra) => {
                let at = i % (len + 1);
                b.splice(at..at, extra.iter().copied());
            }
            Mutation::Remove(i, n) => {
                let at = i % len;
                b.drain(at..(at + n).min(len));
            }
        }
        (b != original).then_some(b)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(192))]

        #[test]
        fn mutated_encodings_are_refused_or_fail_the_checks(which in 0usize..3, m in mutation()) {
            let f = fixture();
            let original = f.originals()[which];
            let Some(bytes) = apply(original, &m) else {
                return Ok(());
            };
            f.check(&bytes)?;
            // Truncations and extensions of the whole encoding are refused outright.
            match &m {
                Mutation::Truncate(_) | Mutation::Extend(_) => {
                    prop_assert!(decode::<FullBlock>(&bytes, "block").is_err() || which != 0);
                    prop_assert!(decode::<SignedMessage>(&bytes, "m").is_err() || which != 1);
                    prop_assert!(decode::<SyncResponse>(&bytes, "r").is_err() || which != 2);
                }
                _ => {}
            }
        }
    }
}
