//! Block headers and Expected Consensus: election proofs and win counts.
//!
//! Each epoch has a beacon value (32 bytes of public randomness). A miner's election proof is its
//! worker's BLS signature over `draw(Election, beacon, epoch, miner)`; BLS signatures are unique, so
//! the proof is a VRF output nobody can grind. Its win count is drawn from a Poisson distribution
//! with mean `λ = E × miner_qa / network_qa` (`E` = 5 expected leaders) by inverse CDF on the first
//! 128 bits of `H(election proof)`, in Q.128 fixed point: `j = 0; rhs = 1 − e^{−λ}; while h < rhs
//! and j < max: j += 1; pmf ← pmf·λ/j; rhs −= pmf`. A winner attaches a Winning PoSt over its
//! active sectors and signs the header. Two different headers signed by one miner at one epoch are
//! a consensus fault.
//!
//! Headers sit below the actors (a consensus-fault report carries two of them); whole blocks, with
//! their messages, are in [`crate::block`].

use num_bigint::BigInt;
use serde::{Deserialize, Serialize};

use crate::crypto::Signature;
use crate::fixed::{exp_neg_q128, q128_from_ratio, q128_mul};
use crate::types::{ActorId, Epoch, StoragePower};

/// The signed part of a block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    /// Epoch.
    pub epoch: Epoch,
    /// The winning miner.
    pub miner: ActorId,
    /// The parent tipset: the ids ([`BlockHeader::id`]) of its blocks, sorted; empty for a block
    /// on the genesis tipset.
    pub parents: Vec<[u8; 32]>,
    /// The chain weight of the parent tipset ([`crate::consensus::weight`]).
    pub parent_weight: u128,
    /// The worker's signature of the ticket randomness (drawn from `beacon`): the VRF whose
    /// digest orders tipsets and seeds the next epochs' beacons.
    pub ticket: Signature,
    /// When the block was made, in Unix seconds (checked by the node against the epoch's slot).
    pub timestamp: u64,
    /// State root before this epoch.
    pub parent_state_root: [u8; 32],
    /// The epoch's beacon value.
    pub beacon: [u8; 32],
    /// [`messages_root`](crate::block::messages_root) of the block's messages.
    pub messages_root: [u8; 32],
    /// The aggregate of the block's messages' signatures ([`crate::crypto::Signature::aggregate`]),
    /// `None` exactly when the block has no messages: the messages themselves travel unsigned.
    pub bls_aggregate: Option<Signature>,
    /// The worker's signature of the election randomness.
    pub election_proof: Signature,
    /// Win count the election proof yields.
    pub win_count: u64,
    /// Winning PoSt proof.
    pub winning_post: Vec<u8>,
    /// The worker's signature of [`BlockHeader::signing_bytes`].
    pub signature: Signature,
}

#[derive(Serialize)]
struct Unsigned<'a> {
    epoch: Epoch,
    miner: ActorId,
    parents: &'a [[u8; 32]],
    parent_weight: u128,
    ticket: &'a Signature,
    timestamp: u64,
    parent_state_root: &'a [u8; 32],
    beacon: &'a [u8; 32],
    messages_root: &'a [u8; 32],
    bls_aggregate: &'a Option<Signature>,
    election_proof: &'a Signature,
    win_count: u64,
    winning_post: &'a [u8],
}

impl BlockHeader {
    /// The bytes the worker signs: every field but the signature (the messages' aggregate
    /// included), on `network`.
    pub fn signing_bytes(&self, network: &str) -> [u8; 32] {
        let u = Unsigned {
            epoch: self.epoch,
            miner: self.miner,
            parents: &self.parents,
            parent_weight: self.parent_weight,
            ticket: &self.ticket,
            timestamp: self.timestamp,
            parent_state_root: &self.parent_state_root,
            beacon: &self.beacon,
            messages_root: &self.messages_root,
            bls_aggregate: &self.bls_aggregate,
            election_proof: &self.election_proof,
            win_count: self.win_count,
            winning_post: &self.winning_post,
        };
        let mut h = blake3::Hasher::new_derive_key("lode/chain/block-header");
        h.update(&(network.len() as u64).to_le_bytes());
        h.update(network.as_bytes());
        h.update(&crate::codec::encode(&u));
        *h.finalize().as_bytes()
    }

    /// The block's id: `H("lode/chain/block-id", encoding of the whole header)`, signature included.
    pub fn id(&self) -> [u8; 32] {
        *blake3::Hasher::new_derive_key("lode/chain/block-id")
            .update(&crate::codec::encode(self))
            .finalize()
            .as_bytes()
    }

    /// The digest of the block's ticket ([`crate::consensus::ticket_digest`]).
    pub fn ticket_digest(&self) -> [u8; 32] {
        crate::consensus::ticket_digest(&self.ticket)
    }
}

/// The win count of an election proof for a miner with `miner_qa` of `network_qa` power.
pub fn win_count(
    election_proof: &Signature,
    miner_qa: StoragePower,
    network_qa: StoragePower,
    expected_leaders: u64,
    max_win_count: u64,
) -> u64 {
    if miner_qa == 0 || network_qa == 0 {
        return 0;
    }
    let digest = blake3::Hasher::new_derive_key("lode/chain/election-digest")
        .update(&election_proof.to_bytes())
        .finalize();
    let mut top = [0u8; 16];
    top.copy_from_slice(&digest.as_bytes()[..16]);
    let h = BigInt::from(u128::from_be_bytes(top));
    let lambda = q128_from_ratio(
        &(BigInt::from(miner_qa) * BigInt::from(expected_leaders)),
        &BigInt::from(network_qa),
    );
    let one = BigInt::from(1) << 128;
    let mut pmf = exp_neg_q128(&lambda);
    let mut rhs = &one - &pmf;
    let mut wins = 0u64;
    for j in 1..=max_win_count {
        if h >= rhs {
            break;
        }
        wins = j;
        pmf = q128_mul(&pmf, &lambda) / BigInt::from(j);
        rhs -= &pmf;
    }
    wins
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    #[test]
    fn win_counts_average_the_expected_share() {
        let key = SecretKey::from_seed(&[3; 32]);
        let trials = 2000u64;
        let total: u64 = (0..trials)
            .map(|i| win_count(&key.sign(&i.to_le_bytes()), 1, 5, 5, 15))
            .sum();
        // λ = 1: mean 1, so the total is within 5 standard deviations (√2000 ≈ 45) of 2000.
        assert!((total as i64 - trials as i64).abs() < 225, "total {total}");
        assert_eq!(win_count(&key.sign(b"x"), 0, 5, 5, 15), 0);
        // All the power: λ = 5.
        let all: u64 = (0..500u64)
            .map(|i| win_count(&key.sign(&i.to_le_bytes()), 7, 7, 5, 15))
            .sum();
        assert!((all as i64 - 2500).abs() < 250, "total {all}");
    }
}
