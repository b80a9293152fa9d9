//! Messages: what accounts sign, how they are encoded, and the receipts the chain returns.
//!
//! A [`Message`] names its sender and receiver, the sender's next nonce, a value to transfer, a
//! [`Method`] with its parameters, and gas terms. The sender's BLS key signs
//! `H("lode/chain/message", network || postcard(message))` ([`Message::signing_bytes`]), so a
//! signature is valid on one network only. Gas: every message pays
//! `gas_base + gas_per_byte × size` plus what its method charges (proofs, signatures, sectors),
//! at `gas_price` atto per unit; the fee is burnt.
//!
//! **Identity.** A message's id is a hash of the unsigned message ([`Message::id`]), and a signed
//! message has its message's id: signatures are not part of what identifies a message. Outside
//! blocks (mempool, gossip, RPC) every message travels with its own signature; in a block the
//! messages travel unsigned and the header carries the aggregate of their signatures
//! ([`crate::block`]), so the id a wallet computes before sending is the one the block's messages
//! root, receipts and RPC queries use. (BLS signatures are unique: a key has one valid signature
//! per message, so nothing is lost by leaving it out.)
//!
//! **Size.** Gas is charged on a message's *signed* size ([`Message::signed_len`], equal to
//! [`SignedMessage::encoded_len`]) wherever the message is carried: one price whether it arrives
//! with its own signature or under a block's aggregate.

use serde::{Deserialize, Serialize};

use crate::actors::compute::ComputeMethod;
use crate::actors::market::MarketMethod;
use crate::actors::miner::MinerMethod;
use crate::actors::power::PowerMethod;
use crate::actors::verifreg::VerifRegMethod;
use crate::codec::encode;
use crate::crypto::{PublicKey, SIGNATURE_LEN, SecretKey, Signature};
use crate::error::ExitCode;
use crate::types::{Address, TokenAmount};

/// A method call and its parameters. The receiver must be the actor the method belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    /// Transfers `value` only (to any actor; a new BLS address gets an account).
    Send,
    /// A power actor method.
    Power(PowerMethod),
    /// A miner method (the receiver is the miner).
    Miner(MinerMethod),
    /// A market method.
    Market(MarketMethod),
    /// A verified registry method.
    VerifReg(VerifRegMethod),
    /// A compute-over-data method.
    Compute(ComputeMethod),
}

/// An unsigned message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The sender (an account).
    pub from: Address,
    /// The receiver.
    pub to: Address,
    /// The sender's next nonce.
    pub nonce: u64,
    /// Tokens transferred to the receiver before the method runs.
    pub value: TokenAmount,
    /// The call.
    pub method: Method,
    /// Most gas the sender will pay for.
    pub gas_limit: u64,
    /// Atto per gas unit.
    pub gas_price: TokenAmount,
}

impl Message {
    /// The bytes a sender signs on `network`.
    pub fn signing_bytes(&self, network: &str) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key("lode/chain/message");
        h.update(&(network.len() as u64).to_le_bytes());
        h.update(network.as_bytes());
        h.update(&encode(self));
        *h.finalize().as_bytes()
    }

    /// Signs the message.
    pub fn sign(self, network: &str, key: &SecretKey) -> SignedMessage {
        let signature = key.sign(&self.signing_bytes(network));
        SignedMessage {
            message: self,
            signature,
        }
    }

    /// The message's id: `H("lode/chain/message-id", postcard(message))`. It does not depend on
    /// any signature (see the module docs).
    pub fn id(&self) -> [u8; 32] {
        *blake3::Hasher::new_derive_key("lode/chain/message-id")
            .update(&encode(self))
            .finalize()
            .as_bytes()
    }

    /// The encoded size of this message once signed ([`SignedMessage::encoded_len`]): what gas is
    /// charged on, whether a block carries the signature or covers it with its aggregate.
    pub fn signed_len(&self) -> usize {
        // postcard writes a signature as a one-byte length (96 < 128) and its 96 bytes.
        encode(self)
            .len()
            .saturating_add(SIGNATURE_LEN.saturating_add(1))
    }

    /// The largest fee this message can cost: `gas_limit × gas_price`.
    pub fn max_fee(&self) -> Option<TokenAmount> {
        self.gas_price
            .0
            .checked_mul(u128::from(self.gas_limit))
            .map(TokenAmount)
    }
}

/// A message and its sender's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedMessage {
    /// The message.
    pub message: Message,
    /// BLS signature of [`Message::signing_bytes`].
    pub signature: Signature,
}

impl SignedMessage {
    /// Encoded size in bytes (what gas is charged on).
    pub fn encoded_len(&self) -> usize {
        encode(self).len()
    }

    /// Whether the signature verifies under `key`.
    pub fn verify(&self, network: &str, key: &PublicKey) -> bool {
        key.verify(&self.message.signing_bytes(network), &self.signature)
            .is_ok()
    }

    /// The message's id ([`Message::id`]): the signature is not part of it.
    pub fn id(&self) -> [u8; 32] {
        self.message.id()
    }
}

/// What applying a message produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Success or the reason of failure.
    pub exit_code: ExitCode,
    /// Gas charged.
    pub gas_used: u64,
    /// The fee paid (burnt).
    pub fee: TokenAmount,
    /// The method's return value (postcard), empty on failure.
    pub return_data: Vec<u8>,
    /// The failure message, empty on success.
    pub error: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::types::ActorId;
    use proptest::prelude::*;

    fn message(nonce: u64, value: u128, gas_limit: u64) -> Message {
        Message {
            from: Address::Id(ActorId(100)),
            to: Address::Bls(SecretKey::from_seed(&[2; 32]).public_key()),
            nonce,
            value: TokenAmount(value),
            method: Method::Send,
            gas_limit,
            gas_price: TokenAmount(100),
        }
    }

    #[test]
    fn ids_ignore_the_signature() {
        let m = message(3, 5, 1_000_000);
        let a = m.clone().sign("devnet", &SecretKey::from_seed(&[1; 32]));
        let b = m.clone().sign("devnet", &SecretKey::from_seed(&[9; 32]));
        assert_ne!(a.signature, b.signature);
        assert_eq!(a.id(), m.id());
        assert_eq!(b.id(), m.id());
        assert_ne!(message(4, 5, 1_000_000).id(), m.id());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn signed_len_is_the_signed_encoding(nonce: u64, value: u128, gas_limit: u64) {
            let m = message(nonce, value, gas_limit);
            let signed = m.clone().sign("devnet", &SecretKey::from_seed(&[1; 32]));
            prop_assert_eq!(m.signed_len(), signed.encoded_len());
        }
    }
}
