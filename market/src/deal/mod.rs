//! The deal protocol's messages: what a client and a provider say to each other off-chain.
//!
//! - [`StorageAsk`] / [`SignedAsk`]: the provider's prices and limits, signed by the miner's
//!   worker key (`/lode/ask/1` answers an [`AskRequest`] with an [`AskResponse`]).
//! - [`DealRequest`]: a deal UUID chosen by the client, the client-signed
//!   [`ClientDealProposal`] (SPEC §8: a BLS signature over
//!   [`DealProposal::signing_bytes`](lode_chain::actors::market::DealProposal::signing_bytes)) and
//!   how the data travels ([`TransferSpec`]); answered on `/lode/deal/1` by a
//!   [`SignedDealResponse`]: accepted, or rejected with a [`Rejection`] the client prints.
//!
//! Everything travels as postcard (the chain's encoding) in one length-prefixed frame; decoding is
//! strict (no trailing bytes, keys and signatures validated as points, bounded frames: see
//! [`crate::net`]). Signatures are domain-separated and bound to the network's name, so an ask
//! or a response signed on one network means nothing on another.

pub mod chain;
pub mod policy;

use std::fmt;

use lode_chain::actors::market::ClientDealProposal;
use lode_chain::crypto::{PublicKey, SecretKey, Signature};
use lode_chain::types::{ActorId, Epoch, TokenAmount};
use serde::{Deserialize, Serialize};

use crate::error::{MarketError, MarketResult};

pub use policy::Rejection;

/// Bytes in a GiB: asks are priced per GiB of padded piece per epoch.
pub const GIB: u128 = 1 << 30;

/// A deal's UUID, chosen by the client (random, version 4) and the key of both sides' records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DealUuid(pub uuid::Uuid);

impl DealUuid {
    /// A fresh random UUID.
    pub fn new_random() -> DealUuid {
        DealUuid(uuid::Uuid::new_v4())
    }

    /// The 16 bytes (the records' key).
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl fmt::Display for DealUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for DealUuid {
    type Err = MarketError;

    fn from_str(s: &str) -> MarketResult<DealUuid> {
        uuid::Uuid::parse_str(s)
            .map(DealUuid)
            .map_err(|e| MarketError::Malformed {
                what: "deal UUID",
                why: format!("{s:?}: {e}"),
            })
    }
}

/// A provider's storage ask: its prices and the deals it takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageAsk {
    /// The miner actor the ask is for.
    pub miner: ActorId,
    /// Price per GiB of padded piece per epoch, for unverified deals.
    pub price_per_gib_epoch: TokenAmount,
    /// Price per GiB of padded piece per epoch, for verified deals (DataCap).
    pub verified_price_per_gib_epoch: TokenAmount,
    /// The smallest padded piece taken.
    pub min_piece_size: u64,
    /// The largest padded piece taken.
    pub max_piece_size: u64,
    /// The longest deal taken, in epochs.
    pub max_duration: u64,
    /// The epoch at which the ask was made.
    pub timestamp: Epoch,
    /// Increases with every new ask of the miner: a client keeps the highest it has seen.
    pub seq_no: u64,
}

impl StorageAsk {
    /// The least `price_per_epoch` this ask takes for a piece of `piece_size` padded bytes
    /// (`verified` chooses the price): `price × piece_size / GiB`, rounded up, so that a piece of
    /// a few KiB is not free; `None` if it overflows.
    pub fn min_price_per_epoch(&self, piece_size: u64, verified: bool) -> Option<TokenAmount> {
        let price = if verified {
            self.verified_price_per_gib_epoch
        } else {
            self.price_per_gib_epoch
        };
        price_for_piece(price, piece_size)
    }

    /// The bytes the worker key signs on `network`.
    pub fn signing_bytes(&self, network: &str) -> [u8; 32] {
        signing_hash("lode/market/storage-ask", network, &encode(self))
    }

    /// Signs the ask with the miner's worker key.
    pub fn sign(self, network: &str, worker: &SecretKey) -> SignedAsk {
        let signature = worker.sign(&self.signing_bytes(network));
        SignedAsk {
            ask: self,
            signature,
        }
    }
}

/// The price per epoch of a piece of `piece_size` padded bytes at `price_per_gib_epoch`:
/// `price × piece_size / GiB`, rounded up (a piece of a few KiB is not free); `None` if it
/// overflows.
pub fn price_for_piece(price_per_gib_epoch: TokenAmount, piece_size: u64) -> Option<TokenAmount> {
    let price = price_per_gib_epoch;
    let floor = price.mul_div(u128::from(piece_size), GIB)?;
    let exact = floor.0.checked_mul(GIB)? == price.0.checked_mul(u128::from(piece_size))?;
    if exact {
        Some(floor)
    } else {
        floor.checked_add(TokenAmount(1))
    }
}

/// A [`StorageAsk`] with the worker key's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAsk {
    /// The ask.
    pub ask: StorageAsk,
    /// The worker key's BLS signature of [`StorageAsk::signing_bytes`].
    pub signature: Signature,
}

impl SignedAsk {
    /// Checks the signature against the miner's worker key (`state_minerInfo`'s `worker_key`).
    ///
    /// # Errors
    /// [`MarketError::BadSignature`].
    pub fn verify(&self, network: &str, worker_key: &PublicKey) -> MarketResult<()> {
        worker_key
            .verify(&self.ask.signing_bytes(network), &self.signature)
            .map_err(|_| MarketError::BadSignature {
                what: "storage ask",
            })
    }
}

/// `/lode/ask/1`'s request: the ask of which miner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AskRequest {
    /// The miner actor.
    pub miner: ActorId,
}

/// `/lode/ask/1`'s response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AskResponse {
    /// The miner's current ask.
    Ask(Box<SignedAsk>),
    /// This host serves no such miner (or has no ask set).
    NoAsk {
        /// The miner asked for.
        miner: ActorId,
    },
}

/// How the provider gets the deal's data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferSpec {
    /// The provider pulls the payload from an HTTP(S) URL the client serves (`HEAD` for the
    /// length, `GET` with `Range`).
    Http {
        /// The URL.
        url: String,
        /// The payload's length in bytes (at most the piece's unpadded size).
        payload_size: u64,
    },
    /// The client pushes the payload over libp2p (`/lode/transfer/1`).
    Push {
        /// The payload's length in bytes.
        payload_size: u64,
    },
}

impl TransferSpec {
    /// The payload's length in bytes.
    pub fn payload_size(&self) -> u64 {
        match self {
            TransferSpec::Http { payload_size, .. } | TransferSpec::Push { payload_size } => {
                *payload_size
            }
        }
    }
}

/// `/lode/deal/1`'s request: a client proposes a deal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealRequest {
    /// The deal's UUID (the client's choice; both sides' records are keyed by it).
    pub uuid: DealUuid,
    /// The proposal, signed by the client.
    pub proposal: ClientDealProposal,
    /// How the data travels.
    pub transfer: TransferSpec,
}

/// The provider's decision on a [`DealRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DealDecision {
    /// Accepted: the provider will fetch the data, check its CommP and publish the deal.
    Accepted,
    /// Rejected; nothing was kept.
    Rejected(Rejection),
}

/// The provider's answer to a [`DealRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealResponse {
    /// The deal's UUID (the request's; the nil UUID when the request could not be decoded).
    pub uuid: DealUuid,
    /// The miner that answers.
    pub miner: ActorId,
    /// Accepted or rejected.
    pub decision: DealDecision,
}

impl DealResponse {
    /// The bytes the worker key signs on `network`.
    pub fn signing_bytes(&self, network: &str) -> [u8; 32] {
        signing_hash("lode/market/deal-response", network, &encode(self))
    }

    /// Signs the response with the miner's worker key.
    pub fn sign(self, network: &str, worker: &SecretKey) -> SignedDealResponse {
        let signature = worker.sign(&self.signing_bytes(network));
        SignedDealResponse {
            response: self,
            signature,
        }
    }
}

/// A [`DealResponse`] with the worker key's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedDealResponse {
    /// The response.
    pub response: DealResponse,
    /// The worker key's BLS signature of [`DealResponse::signing_bytes`].
    pub signature: Signature,
}

impl SignedDealResponse {
    /// Checks the signature against the miner's worker key.
    ///
    /// # Errors
    /// [`MarketError::BadSignature`].
    pub fn verify(&self, network: &str, worker_key: &PublicKey) -> MarketResult<()> {
        worker_key
            .verify(&self.response.signing_bytes(network), &self.signature)
            .map_err(|_| MarketError::BadSignature {
                what: "deal response",
            })
    }
}

impl SignedDealResponse {
    /// What a client does with a provider's answer to `request`: checks the signature against
    /// the miner's worker key, and that the answer is about this deal and from the proposal's
    /// provider; returns the decision.
    ///
    /// # Errors
    /// [`MarketError::BadSignature`]; [`MarketError::Malformed`] for an answer about another deal
    /// or from another miner.
    pub fn check_for(
        &self,
        request: &DealRequest,
        network: &str,
        worker_key: &PublicKey,
    ) -> MarketResult<&DealDecision> {
        self.verify(network, worker_key)?;
        let r = &self.response;
        let malformed = |why: String| MarketError::Malformed {
            what: "deal response",
            why,
        };
        if r.uuid != request.uuid {
            return Err(malformed(format!(
                "it answers deal {} instead of {}",
                r.uuid, request.uuid
            )));
        }
        if r.miner != request.proposal.proposal.provider {
            return Err(malformed(format!(
                "it comes from miner {} instead of {}",
                r.miner, request.proposal.proposal.provider
            )));
        }
        Ok(&r.decision)
    }
}

/// Signs `proposal` with the client's key for `network` (SPEC §8).
pub fn sign_proposal(
    proposal: lode_chain::actors::market::DealProposal,
    network: &str,
    client: &SecretKey,
) -> ClientDealProposal {
    let client_signature = client.sign(&proposal.signing_bytes(network));
    ClientDealProposal {
        proposal,
        client_signature,
    }
}

/// `H(derive_key(context), u64le(len(network)) ‖ network ‖ body)`.
fn signing_hash(context: &str, network: &str, body: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(context);
    h.update(&(network.len() as u64).to_le_bytes());
    h.update(network.as_bytes());
    h.update(body);
    *h.finalize().as_bytes()
}

/// The postcard encoding of a protocol message.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these types into a Vec cannot fail: no map with non-string keys, no
    // unbounded sequence length beyond usize, and allocation failure aborts.
    postcard::to_allocvec(value).unwrap_or_default()
}

/// Decodes a protocol message strictly: the whole input must be one value, nothing after it, in
/// the canonical encoding [`encode`] writes (postcard also reads over-long varints).
///
/// # Errors
/// [`MarketError::Malformed`] naming `what`.
pub fn decode<'a, T: Serialize + Deserialize<'a>>(
    what: &'static str,
    bytes: &'a [u8],
) -> MarketResult<T> {
    let malformed = |why: String| MarketError::Malformed { what, why };
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(|e| malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(malformed(format!("{} bytes after the message", rest.len())));
    }
    if encode(&value) != bytes {
        return Err(malformed(
            "not in canonical form (an integer is encoded longer than it needs)".into(),
        ));
    }
    Ok(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
pub(crate) mod tests {
    use lode_chain::actors::market::DealProposal;
    use proptest::prelude::*;

    use super::*;

    pub(crate) fn key(seed: u8) -> SecretKey {
        SecretKey::from_seed(&[seed; 32])
    }

    pub(crate) fn proposal() -> DealProposal {
        DealProposal {
            piece_cid: [1; 32],
            piece_size: 2048,
            verified: false,
            client: ActorId(100),
            provider: ActorId(1000),
            label: "hello".into(),
            start_epoch: 500,
            end_epoch: 1500,
            price_per_epoch: TokenAmount(10),
            provider_collateral: TokenAmount(0),
            client_collateral: TokenAmount(0),
        }
    }

    pub(crate) fn request(network: &str, client: &SecretKey) -> DealRequest {
        let proposal = proposal();
        let client_signature = client.sign(&proposal.signing_bytes(network));
        DealRequest {
            uuid: DealUuid::new_random(),
            proposal: ClientDealProposal {
                proposal,
                client_signature,
            },
            transfer: TransferSpec::Http {
                url: "http://127.0.0.1:1/x".into(),
                payload_size: 2000,
            },
        }
    }

    pub(crate) fn ask() -> StorageAsk {
        StorageAsk {
            miner: ActorId(1000),
            price_per_gib_epoch: TokenAmount(1 << 30),
            verified_price_per_gib_epoch: TokenAmount(0),
            min_piece_size: 128,
            max_piece_size: 2048,
            max_duration: 10_000,
            timestamp: 3,
            seq_no: 1,
        }
    }

    #[test]
    fn signed_ask_verifies_only_with_its_key_and_network() {
        let worker = key(1);
        let signed = ask().sign("devnet", &worker);
        signed.verify("devnet", &worker.public_key()).unwrap();
        assert!(matches!(
            signed.verify("mainnet", &worker.public_key()),
            Err(MarketError::BadSignature { .. })
        ));
        assert!(signed.verify("devnet", &key(2).public_key()).is_err());
        let mut changed = signed.clone();
        changed.ask.price_per_gib_epoch = TokenAmount(0);
        assert!(changed.verify("devnet", &worker.public_key()).is_err());
    }

    #[test]
    fn signed_response_verifies_only_unchanged() {
        let worker = key(1);
        let response = DealResponse {
            uuid: DealUuid::new_random(),
            miner: ActorId(1000),
            decision: DealDecision::Rejected(Rejection::LabelTooLong { len: 300, max: 256 }),
        }
        .sign("devnet", &worker);
        response.verify("devnet", &worker.public_key()).unwrap();
        let mut flipped = response.clone();
        flipped.response.decision = DealDecision::Accepted;
        assert!(flipped.verify("devnet", &worker.public_key()).is_err());
    }

    #[test]
    fn a_client_checks_the_answer_is_for_its_deal() {
        let worker = key(1);
        let req = request("devnet", &key(3));
        let answer = |uuid, miner| {
            DealResponse {
                uuid,
                miner,
                decision: DealDecision::Accepted,
            }
            .sign("devnet", &worker)
        };
        let good = answer(req.uuid, ActorId(1000));
        assert_eq!(
            good.check_for(&req, "devnet", &worker.public_key())
                .unwrap(),
            &DealDecision::Accepted
        );
        assert!(matches!(
            good.check_for(&req, "devnet", &key(2).public_key()),
            Err(MarketError::BadSignature { .. })
        ));
        assert!(matches!(
            answer(DealUuid::new_random(), ActorId(1000)).check_for(
                &req,
                "devnet",
                &worker.public_key()
            ),
            Err(MarketError::Malformed { .. })
        ));
        assert!(matches!(
            answer(req.uuid, ActorId(1001)).check_for(&req, "devnet", &worker.public_key()),
            Err(MarketError::Malformed { .. })
        ));
        let signed = sign_proposal(proposal(), "devnet", &key(3));
        assert_eq!(signed, req.proposal);
    }

    #[test]
    fn min_price_rounds_up() {
        let mut a = ask();
        a.price_per_gib_epoch = TokenAmount(1 << 30);
        assert_eq!(a.min_price_per_epoch(2048, false), Some(TokenAmount(2048)));
        a.price_per_gib_epoch = TokenAmount(1);
        // 1 × 2048 / 2^30 is a fraction: rounded up to 1 atto.
        assert_eq!(a.min_price_per_epoch(2048, false), Some(TokenAmount(1)));
        assert_eq!(a.min_price_per_epoch(2048, true), Some(TokenAmount(0)));
        a.price_per_gib_epoch = TokenAmount(u128::MAX);
        assert_eq!(a.min_price_per_epoch(1 << 40, false), None);
    }

    #[test]
    fn decode_is_strict() {
        let req = request("devnet", &key(3));
        let mut bytes = encode(&req);
        assert_eq!(decode::<DealRequest>("deal request", &bytes).unwrap(), req);
        bytes.push(0);
        assert!(decode::<DealRequest>("deal request", &bytes).is_err());
        bytes.pop();
        bytes.pop();
        assert!(decode::<DealRequest>("deal request", &bytes).is_err());
        // An over-long varint (miner 5 in two bytes) is not the message's encoding.
        let ask = AskRequest { miner: ActorId(5) };
        assert_eq!(encode(&ask), [5]);
        assert_eq!(decode::<AskRequest>("ask request", &[5]).unwrap(), ask);
        assert!(decode::<AskRequest>("ask request", &[0x85, 0x00]).is_err());
    }

    #[test]
    fn uuid_parses_and_prints() {
        let u = DealUuid::new_random();
        assert_eq!(u.to_string().parse::<DealUuid>().unwrap(), u);
        assert!("not-a-uuid".parse::<DealUuid>().is_err());
    }

    proptest! {
        /// Arbitrary bytes never panic the decoders.
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode::<DealRequest>("deal request", &bytes);
            let _ = decode::<SignedDealResponse>("deal response", &bytes);
            let _ = decode::<AskResponse>("ask response", &bytes);
            let _ = decode::<AskRequest>("ask request", &bytes);
        }

        /// Every request round-trips; every strict prefix is refused.
        #[test]
        fn request_roundtrip_and_truncation(label in "[a-z]{0,40}", size in any::<u64>(), cut in 0usize..1000) {
            let client = key(4);
            let mut req = request("devnet", &client);
            req.proposal.proposal.label = label;
            req.transfer = TransferSpec::Push { payload_size: size };
            let bytes = encode(&req);
            prop_assert_eq!(decode::<DealRequest>("deal request", &bytes).unwrap(), req);
            let cut = cut % bytes.len();
            prop_assert!(decode::<DealRequest>("deal request", &bytes[..cut]).is_err());
        }
    }
}
