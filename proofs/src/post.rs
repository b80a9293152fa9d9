//! Proof of Spacetime, the vanilla part (SPEC §6): leaf challenges, Winning PoSt sector selection,
//! Window PoSt partitions, per-sector openings of tree R, and their verification.
//!
//! A sector's PoSt proof opens tree R at challenged leaves and shows `comm_r = Poseidon_2(comm_c,
//! comm_r_last)`. Challenges depend on the randomness, the sector number and the challenge number only,
//! never on a sector's position among others, so reordering sectors cannot be used to grind.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

use crate::codec::{CodecError, Reader};
use crate::hash::{Tag, hash};
use crate::merkle::{MerkleProof, PoseidonTree, TreeError};
use crate::node::Node;
use crate::sdr::{self, SdrError};
use crate::sector::{SectorSize, prover_id};

/// Challenges per sector in Window PoSt.
pub const WINDOW_CHALLENGES_PER_SECTOR: usize = 10;
/// Challenges of the one sector of a Winning PoSt.
pub const WINNING_CHALLENGES: usize = 66;

/// Format byte of an encoded sector proof.
const FORMAT: u8 = 1;

/// Why a PoSt proof is rejected.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// The proof is for another sector than the one challenged.
    #[error("the proof is for sector {found}, expected sector {expected}")]
    WrongSector {
        /// Sector the verifier expects.
        expected: u64,
        /// Sector the proof names.
        found: u64,
    },
    /// `comm_r` does not commit to the proof's `comm_c` and `comm_r_last`.
    #[error("sector {0}: comm_r does not commit to the proof's comm_c and comm_r_last")]
    CommR(u64),
    /// Wrong number of openings or sector proofs.
    #[error("expected {expected} {what}, found {found}")]
    Count {
        /// What was counted.
        what: &'static str,
        /// Expected count.
        expected: usize,
        /// Found.
        found: usize,
    },
    /// An opening at a leaf other than the challenged one.
    #[error(
        "sector {sector}: challenge {m} opens leaf {found}, but the randomness gives leaf {expected}"
    )]
    Challenge {
        /// The sector.
        sector: u64,
        /// Challenge number.
        m: usize,
        /// Leaf the randomness selects.
        expected: u64,
        /// Leaf the proof opens.
        found: u64,
    },
    /// An opening that does not verify against `comm_r_last`.
    #[error("sector {sector}: opening of challenge {m} does not verify: {source}")]
    Opening {
        /// The sector.
        sector: u64,
        /// Challenge number.
        m: usize,
        /// Why.
        #[source]
        source: TreeError,
    },
    /// No sectors to choose from.
    #[error("no sectors to prove")]
    NoSectors,
    /// A node that must be a field element is not.
    #[error(transparent)]
    Field(#[from] SdrError),
    /// Bytes that do not decode as a proof.
    #[error("malformed PoSt proof bytes: {0}")]
    Malformed(&'static str),
}

/// Leaf challenge `m` of a sector: `first_u64(H("post-challenge", randomness || u64le(sector_number) || u64le(m))) % n`.
pub fn leaf_challenge(size: SectorSize, randomness: &Node, sector_number: u64, m: u64) -> u64 {
    let mut msg = [0u8; 48];
    msg[..32].copy_from_slice(&randomness.0);
    msg[32..40].copy_from_slice(&sector_number.to_le_bytes());
    msg[40..].copy_from_slice(&m.to_le_bytes());
    let h = hash(Tag::PostChallenge, &msg);
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.0[..8]);
    // Every sector size has at least 64 nodes: the remainder always exists.
    u64::from_le_bytes(first)
        .checked_rem(size.nodes())
        .unwrap_or_default()
}

/// The first `count` leaf challenges of a sector.
pub fn leaf_challenges(
    size: SectorSize,
    randomness: &Node,
    sector_number: u64,
    count: usize,
) -> Vec<u64> {
    (0..count as u64)
        .map(|m| leaf_challenge(size, randomness, sector_number, m))
        .collect()
}

/// Winning PoSt sector selection: the index into the miner's active sectors sorted by ascending sector
/// number, `first_u64(H("post-sector", prover_id || randomness || u64le(0))) % number_of_sectors`.
pub fn winning_sector_index(
    miner_id: u64,
    randomness: &Node,
    number_of_sectors: usize,
) -> Result<usize, PostError> {
    if number_of_sectors == 0 {
        return Err(PostError::NoSectors);
    }
    let mut msg = [0u8; 72];
    msg[..32].copy_from_slice(&prover_id(miner_id));
    msg[32..64].copy_from_slice(&randomness.0);
    let h = hash(Tag::PostSector, &msg);
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.0[..8]);
    let index = u64::from_le_bytes(first)
        .checked_rem(number_of_sectors as u64)
        .ok_or(PostError::NoSectors)?;
    Ok(index as usize)
}

/// A sector as the chain knows it: its number and replica commitment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PublicSector {
    /// Sector number.
    pub sector_number: u64,
    /// Its `comm_r`.
    pub comm_r: Node,
}

/// One sector's vanilla PoSt proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectorProof {
    /// The sector proven.
    pub sector_number: u64,
    /// Root of tree C (private in the SNARK).
    pub comm_c: Node,
    /// Root of tree R (private in the SNARK).
    pub comm_r_last: Node,
    /// Tree R openings at the challenged leaves, in challenge order.
    pub openings: Vec<MerkleProof>,
}

/// Checks one sector's proof for `count` challenges drawn from `randomness`.
pub fn verify_sector(
    size: SectorSize,
    randomness: &Node,
    sector: &PublicSector,
    count: usize,
    proof: &SectorProof,
) -> Result<(), PostError> {
    if proof.sector_number != sector.sector_number {
        return Err(PostError::WrongSector {
            expected: sector.sector_number,
            found: proof.sector_number,
        });
    }
    if sdr::comm_r(&proof.comm_c, &proof.comm_r_last)? != sector.comm_r {
        return Err(PostError::CommR(sector.sector_number));
    }
    if proof.openings.len() != count {
        return Err(PostError::Count {
            what: "openings",
            expected: count,
            found: proof.openings.len(),
        });
    }
    let shape = size.tree_shape();
    for (m, opening) in proof.openings.iter().enumerate() {
        let leaf = leaf_challenge(size, randomness, sector.sector_number, m as u64);
        if opening.index != leaf {
            return Err(PostError::Challenge {
                sector: sector.sector_number,
                m,
                expected: leaf,
                found: opening.index,
            });
        }
        opening
            .verify::<PoseidonTree>(&shape, &proof.comm_r_last)
            .map_err(|source| PostError::Opening {
                sector: sector.sector_number,
                m,
                source,
            })?;
    }
    Ok(())
}

/// Checks a Winning PoSt: the proof must be for the sector the randomness selects among `sectors`
/// (sorted here by sector number), with 66 challenges.
pub fn verify_winning(
    size: SectorSize,
    miner_id: u64,
    randomness: &Node,
    sectors: &[PublicSector],
    proof: &SectorProof,
) -> Result<(), PostError> {
    let mut sorted = sectors.to_vec();
    sorted.sort_by_key(|s| s.sector_number);
    let index = winning_sector_index(miner_id, randomness, sorted.len())?;
    // The index is below the sector count by construction.
    let chosen = *sorted.get(index).ok_or(PostError::NoSectors)?;
    verify_sector(size, randomness, &chosen, WINNING_CHALLENGES, proof)
}

/// Splits sectors into Window PoSt partitions of the size's partition size, padding the last partition
/// by repeating its last sector (SPEC §6.3).
pub fn window_partitions<T: Clone>(size: SectorSize, sectors: &[T]) -> Vec<Vec<T>> {
    // At least one sector per partition for every size; `max` keeps `chunks` from panicking regardless.
    let per = size.window_post_sectors_per_partition().max(1);
    sectors
        .chunks(per)
        .map(|chunk| {
            let mut p = chunk.to_vec();
            if let Some(last) = chunk.last() {
                p.resize(per, last.clone());
            }
            p
        })
        .collect()
}

/// Checks a Window PoSt partition: one proof per (padded) sector of the partition, 10 challenges each.
pub fn verify_window_partition(
    size: SectorSize,
    randomness: &Node,
    partition: &[PublicSector],
    proofs: &[SectorProof],
) -> Result<(), PostError> {
    if proofs.len() != partition.len() {
        return Err(PostError::Count {
            what: "sector proofs",
            expected: partition.len(),
            found: proofs.len(),
        });
    }
    for (sector, proof) in partition.iter().zip(proofs) {
        verify_sector(
            size,
            randomness,
            sector,
            WINDOW_CHALLENGES_PER_SECTOR,
            proof,
        )?;
    }
    Ok(())
}

impl SectorProof {
    /// Binary encoding: format byte, `u64le` sector number, `comm_c`, `comm_r_last`, `u32le` count, then
    /// length-prefixed openings.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = vec![FORMAT];
        w.extend_from_slice(&self.sector_number.to_le_bytes());
        w.extend_from_slice(&self.comm_c.0);
        w.extend_from_slice(&self.comm_r_last.0);
        w.extend_from_slice(&(self.openings.len() as u32).to_le_bytes());
        for o in &self.openings {
            let b = o.to_bytes();
            w.extend_from_slice(&(b.len() as u32).to_le_bytes());
            w.extend_from_slice(&b);
        }
        w
    }

    /// Decodes [`SectorProof::to_bytes`]; malformed input is an error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PostError> {
        let malformed = |e: CodecError| PostError::Malformed(e.reason());
        let mut r = Reader::new(bytes);
        if r.u8().map_err(malformed)? != FORMAT {
            return Err(PostError::Malformed("unknown format byte"));
        }
        let sector_number = r.u64_le().map_err(malformed)?;
        let comm_c = r.node().map_err(malformed)?;
        let comm_r_last = r.node().map_err(malformed)?;
        let count = r.count(1 << 16).map_err(|e| match e {
            CodecError::CountTooLarge => PostError::Malformed("too many openings"),
            e => malformed(e),
        })?;
        // The vector grows as openings decode, so a count alone reserves nothing.
        let openings = (0..count)
            .map(|_| {
                let opening = r.prefixed(usize::MAX).map_err(malformed)?;
                MerkleProof::from_bytes(opening).map_err(|_| PostError::Malformed("bad opening"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        r.finish().map_err(malformed)?;
        Ok(SectorProof {
            sector_number,
            comm_c,
            comm_r_last,
            openings,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct SealVector {
        window_post: WindowV,
        winning_post: WinningV,
    }
    #[derive(serde::Deserialize)]
    struct WindowV {
        randomness: String,
        sector_number: u64,
        challenges_m_0_to_9: Vec<u64>,
    }
    #[derive(serde::Deserialize)]
    struct WinningV {
        randomness: String,
        index: usize,
        sector_number: u64,
        sorted_sectors: Vec<u64>,
        challenges_m_0_to_65: Vec<u64>,
    }

    #[test]
    fn challenges_match_the_vectors() {
        let v: SealVector = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/vectors/seal_2kib.json"
        )))
        .unwrap();
        let size = SectorSize::S2KiB;
        let w = &v.window_post;
        let r = Node::from_hex(&w.randomness).unwrap();
        assert_eq!(
            leaf_challenges(size, &r, w.sector_number, WINDOW_CHALLENGES_PER_SECTOR),
            w.challenges_m_0_to_9
        );
        let win = &v.winning_post;
        let r = Node::from_hex(&win.randomness).unwrap();
        let index = winning_sector_index(1000, &r, win.sorted_sectors.len()).unwrap();
        assert_eq!(index, win.index);
        assert_eq!(win.sorted_sectors[index], win.sector_number);
        assert_eq!(
            leaf_challenges(size, &r, win.sector_number, WINNING_CHALLENGES),
            win.challenges_m_0_to_65
        );
        assert!(matches!(
            winning_sector_index(1000, &r, 0),
            Err(PostError::NoSectors)
        ));
    }

    #[test]
    fn partitions_pad_with_the_last_sector() {
        let parts = window_partitions(SectorSize::S2KiB, &[1, 2, 3]);
        assert_eq!(parts, vec![vec![1, 2], vec![3, 3]]);
        assert!(window_partitions::<u8>(SectorSize::S2KiB, &[]).is_empty());
    }
}
