//! Messages: what accounts sign, how they are encoded, and the receipts the chain returns.
//!
//! A [`Message`] names its sender and receiver, the sender's next nonce, a value to transfer, a
//! [`Method`] with its parameters, and gas terms. The sender's BLS key signs
//! `H("lode/chain/message", network || postcard(message))` ([`Message::signing_bytes`]), so a
//! signature is valid on one network only. Gas: every message pays
//! `gas_base + gas_per_byte × size` plus what its method charges (proofs, signatures, sectors),
//! at `gas_price` atto per unit; the fee is burnt.

use serde::{Deserialize, Serialize};

use crate::actors::market::MarketMethod;
use crate::actors::miner::MinerMethod;
use crate::actors::power::PowerMethod;
use crate::actors::verifreg::VerifRegMethod;
use crate::codec::encode;
use crate::crypto::{PublicKey, SecretKey, Signature};
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

    /// A stable id: the BLAKE3 hash of the encoding.
    pub fn id(&self) -> [u8; 32] {
        let bytes = encode(self);
        *blake3::Hasher::new_derive_key("lode/chain/message-id")
            .update(&bytes)
            .finalize()
            .as_bytes()
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
