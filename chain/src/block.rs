//! Blocks and tipsets: headers with their messages, what the executor applies at one epoch.
//!
//! Headers, election proofs and win counts are in [`crate::header`] (re-exported here), below the
//! actors; this module sits above them, with the messages that call them.
//!
//! **One signature per block.** A block carries its messages unsigned; its header's
//! `bls_aggregate` is the aggregate of their signatures ([`BlockMessages::from_signed`] is how a
//! producer makes both), covered by the header's signature and id. The messages root commits to
//! the messages by their ids, which do not depend on signatures ([`crate::message`]). A block's
//! messages are valid together when ([`check_messages`], run by the executor after the headers):
//!
//! 0. their gas limits sum to at most the block gas limit ([`block_gas`],
//!    [`crate::Policy::block_gas_limit`]): what bounds the work of applying a block;
//! 1. no message appears twice in the block (aggregating a repeated `(key, message)` pair proves
//!    nothing more than one copy, and the rule leaves no room to wonder);
//! 2. the header has an aggregate exactly when the block has messages;
//! 3. every sender has a key in the parent state: an `Address::Bls` names its key, an
//!    `Address::Id` must be an account (whose key is recorded). A sender without a key — an id
//!    that is no actor, or an actor that is not an account — makes the whole block invalid: its
//!    signature cannot be checked, so a producer must not include it. (A BLS address with no
//!    account yet has a key; its message is checked and then rejected by execution like any
//!    message from a sender that does not exist.);
//! 4. one multi-pairing checks `e(g1, aggregate) = Π e(pk_i, H(m_i))`
//!    ([`crate::crypto::aggregate_verify`]).
//!
//! Any failure rejects the block, so the whole tipset, with nothing applied
//! ([`crate::error::BlockFault`] names which rule and which message). Messages applied from a
//! valid block need no further signature check.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::actors::{Actor, ActorKind};
use crate::crypto::{self, CryptoResult, PublicKey, Signature};
use crate::error::{BlockFault, ChainResult};
use crate::message::{Message, SignedMessage};
use crate::runtime::Runtime;
use crate::types::{ActorId, Address, Epoch};

pub use crate::header::{BlockHeader, win_count};

/// A block: header and messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// Header.
    pub header: BlockHeader,
    /// Messages, applied in order, unsigned: the header's `bls_aggregate` covers them.
    pub messages: Vec<Message>,
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

/// A block's messages as its producer assembles them from signed messages: the messages,
/// unsigned, and the aggregate of their signatures (the header's `messages_root` and
/// `bls_aggregate`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockMessages {
    /// The messages, in the order given.
    pub messages: Vec<Message>,
    /// The aggregate of their signatures; `None` when there are none.
    pub bls_aggregate: Option<Signature>,
}

impl BlockMessages {
    /// The messages of `signed`, in order, and the aggregate of their signatures. The signatures
    /// are not checked here (the mempool checked them; the chain checks the aggregate).
    ///
    /// # Errors
    ///
    /// [`crypto::CryptoError::Identity`] if the signatures sum to the identity, which honest
    /// signatures of distinct messages do with negligible probability.
    pub fn from_signed(signed: &[SignedMessage]) -> CryptoResult<Self> {
        let bls_aggregate = if signed.is_empty() {
            None
        } else {
            Some(Signature::aggregate(signed.iter().map(|m| &m.signature))?)
        };
        Ok(BlockMessages {
            messages: signed.iter().map(|m| m.message.clone()).collect(),
            bls_aggregate,
        })
    }

    /// Their [`messages_root`].
    pub fn root(&self) -> [u8; 32] {
        messages_root(&self.messages)
    }
}

/// `H("lode/chain/messages", id_1 || id_2 || …)` over the messages' ids ([`Message::id`]).
pub fn messages_root(messages: &[Message]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("lode/chain/messages");
    for m in messages {
        h.update(&m.id());
    }
    *h.finalize().as_bytes()
}

/// The key that signs for `sender` in `rt`'s state: the key an `Address::Bls` names, or the key of
/// the account an `Address::Id` names; `None` for an id that is no account.
pub(crate) fn sender_key(rt: &Runtime<'_, '_>, sender: &Address) -> ChainResult<Option<PublicKey>> {
    match sender {
        Address::Bls(k) => Ok(Some(*k)),
        Address::Id(id) => account_key(rt, *id),
    }
}

/// The key of account `id` in `rt`'s state; `None` if `id` is no account.
fn account_key(rt: &Runtime<'_, '_>, id: ActorId) -> ChainResult<Option<PublicKey>> {
    Ok(match rt.actor(id)? {
        Some(Actor {
            kind: ActorKind::Account { key },
            ..
        }) => Some(key),
        _ => None,
    })
}

/// The sum of `messages`' gas limits (saturating), what [`Policy::block_gas_limit`] bounds.
///
/// [`Policy::block_gas_limit`]: crate::Policy::block_gas_limit
pub fn block_gas(messages: &[Message]) -> u64 {
    messages
        .iter()
        .fold(0u64, |sum, m| sum.saturating_add(m.gas_limit))
}

/// Checks a block's messages against its aggregate signature (the module docs' rules, in order),
/// with the senders' keys read from `rt`, the parent state. `ids` are the messages' ids.
pub(crate) fn check_messages(
    rt: &Runtime<'_, '_>,
    block: &Block,
    ids: &[[u8; 32]],
) -> Result<(), BlockFault> {
    use rayon::prelude::*;
    let total = block_gas(&block.messages);
    let limit = rt.policy.block_gas_limit;
    if total > limit {
        return Err(BlockFault::GasLimit { total, limit });
    }
    let mut first: HashMap<&[u8; 32], usize> = HashMap::with_capacity(ids.len());
    for (message, id) in ids.iter().enumerate() {
        if let Some(&first) = first.get(id) {
            return Err(BlockFault::DuplicateMessage { message, first });
        }
        first.insert(id, message);
    }
    let aggregate = match (&block.header.bls_aggregate, block.messages.is_empty()) {
        (None, true) => return Ok(()),
        (Some(_), true) => return Err(BlockFault::UnexpectedAggregate),
        (None, false) => return Err(BlockFault::MissingAggregate),
        (Some(a), false) => a,
    };
    let mut keys = Vec::with_capacity(block.messages.len());
    for (message, m) in block.messages.iter().enumerate() {
        let key = match m.from {
            Address::Bls(k) => k,
            Address::Id(sender) => account_key(rt, sender)
                .map_err(|e| BlockFault::State(Box::new(e)))?
                .ok_or(BlockFault::UnknownSender { message, sender })?,
        };
        keys.push(key);
    }
    let network = &rt.policy.network;
    let signed: Vec<[u8; 32]> = block
        .messages
        .par_iter()
        .map(|m| m.signing_bytes(network))
        .collect();
    let pairs: Vec<(&PublicKey, &[u8])> = keys
        .iter()
        .zip(&signed)
        .map(|(k, s)| (k, s.as_slice()))
        .collect();
    crypto::aggregate_verify(&pairs, aggregate).map_err(|_| BlockFault::BlsAggregate)
}
