//! Expected Consensus over the block graph: tickets and beacons, tipset keys, and the weight that
//! chooses between forks. The state machine ([`crate::chain`]) checks each block against the
//! state (signatures, election, Winning PoSt); the rules here relate a tipset to its parent and
//! are applied by the node, which holds the graph.
//!
//! - **Tickets.** A block's ticket is its worker's BLS signature of
//!   `draw(Ticket, beacon(e), e, miner)`; BLS signatures are unique, so nobody can grind it. Its
//!   *digest* is `H("lode/chain/ticket-digest", signature)`.
//! - **Beacons.** The beacon of epoch `e` is `H("lode/chain/beacon", min_ticket ‖ u64le(e))`, where
//!   `min_ticket` is the smallest ticket digest of the last tipset before `e` that has blocks (the
//!   genesis beacon stands in for the genesis tipset's). A null round (an epoch nobody wins)
//!   therefore still gets its own beacon, derived from the same ticket with its own epoch, and
//!   every node computes the same one. [`Beacon`] is the seam where an external randomness
//!   network can replace this rule.
//! - **Tipsets.** Blocks of one epoch with the same parents form a tipset; its key is the sorted
//!   list of its block ids.
//! - **Weight.** `w = parent_w + (log2 P << 8) + ((log2 P · Σ win_count) << 8) / (E · 2)`, with `P`
//!   the network's QA power in the parent state, `log2` the floor of the base-2 logarithm (0 for
//!   no power) and `E` the expected leaders per epoch (5). The heaviest tipset wins; between equal
//!   weights, the one whose smallest ticket digest is smaller.

use serde::{Deserialize, Serialize};

use crate::crypto::Signature;
use crate::types::Epoch;

/// `H("lode/chain/ticket-digest", ticket)`: the value tickets are compared by.
pub fn ticket_digest(ticket: &Signature) -> [u8; 32] {
    *blake3::Hasher::new_derive_key("lode/chain/ticket-digest")
        .update(&ticket.to_bytes())
        .finalize()
        .as_bytes()
}

/// Where the epochs' beacon values come from.
pub trait Beacon: Send + Sync {
    /// The beacon of `epoch`, given the smallest ticket digest of the last tipset with blocks
    /// before it.
    fn beacon(&self, min_ticket: &[u8; 32], epoch: Epoch) -> [u8; 32];
}

/// The beacon derived from the tickets on chain (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct TicketBeacon;

impl Beacon for TicketBeacon {
    fn beacon(&self, min_ticket: &[u8; 32], epoch: Epoch) -> [u8; 32] {
        *blake3::Hasher::new_derive_key("lode/chain/beacon")
            .update(min_ticket)
            .update(&epoch.to_le_bytes())
            .finalize()
            .as_bytes()
    }
}

/// A tipset's key: the sorted ids of its blocks (empty for genesis).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TipsetKey(pub Vec<[u8; 32]>);

impl TipsetKey {
    /// The key of these block ids, in any order.
    pub fn new(mut ids: Vec<[u8; 32]>) -> Self {
        ids.sort_unstable();
        ids.dedup();
        TipsetKey(ids)
    }

    /// A 32-byte name for the key: `H("lode/chain/tipset-key", id_1 ‖ …)`.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key("lode/chain/tipset-key");
        for id in &self.0 {
            h.update(id);
        }
        *h.finalize().as_bytes()
    }

    /// Whether the key names no block (the genesis tipset).
    pub fn is_genesis(&self) -> bool {
        self.0.is_empty()
    }
}

/// `floor(log2 p)`, 0 for `p ≤ 1`.
fn log2_floor(p: u128) -> u128 {
    p.checked_ilog2().map_or(0, u128::from)
}

/// The weight of a tipset whose parent weighs `parent_weight`, in a parent state with `network_qa`
/// QA power, whose blocks claim `total_wins` wins in all (see the module docs). Saturates.
pub fn weight(
    parent_weight: u128,
    network_qa: u128,
    total_wins: u64,
    expected_leaders: u64,
) -> u128 {
    let l = log2_floor(network_qa);
    let base = l << 8;
    let denominator = u128::from(expected_leaders).saturating_mul(2).max(1);
    let bonus = l
        .saturating_mul(u128::from(total_wins))
        .checked_shl(8)
        .unwrap_or(u128::MAX)
        .checked_div(denominator)
        .unwrap_or(0);
    parent_weight.saturating_add(base).saturating_add(bonus)
}

/// Whether a tipset of weight `a` with smallest ticket digest `ta` is preferred to one of weight
/// `b` with `tb`: heavier first, then the smaller ticket.
pub fn heavier(a: u128, ta: &[u8; 32], b: u128, tb: &[u8; 32]) -> bool {
    a > b || (a == b && ta < tb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_follows_the_formula() {
        // P = 2^40: log2 = 40. One block with one win, E = 5: 40·256 + 40·256/10 = 10240 + 1024.
        assert_eq!(weight(7, 1 << 40, 1, 5), 7 + 10240 + 1024);
        // Three wins: bonus 40·3·256/10 = 3072.
        assert_eq!(weight(0, 1 << 40, 3, 5), 10240 + 3072);
        // No power: nothing added; saturation instead of overflow.
        assert_eq!(weight(5, 0, 4, 5), 5);
        assert_eq!(weight(u128::MAX, 1 << 40, 1, 5), u128::MAX);
        // Floor of log2.
        assert_eq!(weight(0, (1 << 41) - 1, 0, 5), 40 << 8);
    }

    #[test]
    fn ties_go_to_the_smaller_ticket() {
        assert!(heavier(2, &[9; 32], 1, &[0; 32]));
        assert!(heavier(2, &[0; 32], 2, &[1; 32]));
        assert!(!heavier(2, &[1; 32], 2, &[1; 32]));
    }

    #[test]
    fn keys_are_sorted_and_beacons_differ_per_epoch() {
        let k = TipsetKey::new(vec![[3; 32], [1; 32], [3; 32]]);
        assert_eq!(k.0, vec![[1; 32], [3; 32]]);
        assert_eq!(k.hash(), TipsetKey::new(vec![[1; 32], [3; 32]]).hash());
        let b = TicketBeacon;
        assert_ne!(b.beacon(&[0; 32], 1), b.beacon(&[0; 32], 2));
        assert_ne!(b.beacon(&[0; 32], 1), b.beacon(&[1; 32], 1));
    }
}
