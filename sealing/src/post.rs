//! Proving PoSt from sealed sectors on disk (SPEC §6): tree R openings at the challenged leaves, read
//! from each sector's replica and tree R file. A sector whose files are missing or damaged, or whose
//! openings do not check out, is reported as faulty instead of failing the whole run, so the miner can
//! declare it or skip it and still prove the others.

use lode_proofs::merkle::{DiskTree, PoseidonTree};
use lode_proofs::node::Node;
use lode_proofs::post::{
    self, PublicSector, SectorProof, WINDOW_CHALLENGES_PER_SECTOR, WINNING_CHALLENGES,
};

use crate::error::{SealError, SealResult};
use crate::seal::{PreCommit2Output, SectorId};
use crate::sector_dir::{SectorDir, read_json};

/// A sealed sector the miner proves: who it is and where its files are.
#[derive(Clone, Debug)]
pub struct SealedSector {
    /// The sector.
    pub id: SectorId,
    /// Its directory.
    pub dir: SectorDir,
}

impl SealedSector {
    /// Opens a sealed sector's directory, reading which sector it holds from its record.
    pub fn open(root: &std::path::Path) -> SealResult<Self> {
        let dir = SectorDir::create(root)?;
        let meta: crate::seal::SectorMeta = read_json(&dir.sector_meta(), "PoSt", "AddPiece")?;
        let size = meta
            .size
            .parse()
            .map_err(|_| SealError::Inconsistent("sector.json names an unknown sector size"))?;
        Ok(SealedSector {
            id: SectorId {
                size,
                miner_id: meta.miner_id,
                sector_number: meta.sector_number,
            },
            dir,
        })
    }

    /// The sector as the chain knows it (number and `comm_r`), from its PreCommit2 record.
    pub fn public(&self) -> SealResult<PublicSector> {
        let pc2: PreCommit2Output = read_json(&self.dir.pc2(), "PoSt", "PreCommit2")?;
        Ok(PublicSector {
            sector_number: self.id.sector_number,
            comm_r: pc2.comm_r.0,
        })
    }
}

/// A sector that could not be proven, and why.
#[derive(Debug)]
pub struct FaultySector {
    /// The sector number.
    pub sector_number: u64,
    /// What is wrong with it.
    pub error: SealError,
}

/// The outcome of proving a set of sectors: proofs of the good ones, in input order, and the faulty ones.
#[derive(Debug, Default)]
pub struct PostOutcome {
    /// One proof per good sector.
    pub proofs: Vec<SectorProof>,
    /// The sectors that could not be proven.
    pub faulty: Vec<FaultySector>,
}

/// Proves one sector for `count` challenges drawn from `randomness`, checking every opening natively so
/// that a corrupted replica or tree is found here rather than by the verifier.
pub fn prove_sector(
    sector: &SealedSector,
    randomness: &Node,
    count: usize,
) -> SealResult<SectorProof> {
    let pc2: PreCommit2Output = read_json(&sector.dir.pc2(), "PoSt", "PreCommit2")?;
    let tree = DiskTree::<PoseidonTree>::open(&sector.dir.tree_r(), Some(&sector.dir.sealed()))?;
    if tree.root() != pc2.comm_r_last.0 {
        return Err(SealError::Inconsistent(
            "tree R's root differs from the sector's comm_r_last",
        ));
    }
    let size = sector.id.size;
    let shape = size.tree_shape();
    let openings = post::leaf_challenges(size, randomness, sector.id.sector_number, count)
        .into_iter()
        .map(|leaf| {
            let opening = tree.prove(leaf)?;
            opening.verify::<PoseidonTree>(&shape, &pc2.comm_r_last.0)?;
            Ok(opening)
        })
        .collect::<SealResult<Vec<_>>>()?;
    Ok(SectorProof {
        sector_number: sector.id.sector_number,
        comm_c: pc2.comm_c.0,
        comm_r_last: pc2.comm_r_last.0,
        openings,
    })
}

/// Proves every sector with `count` challenges each, collecting faults instead of stopping.
pub fn prove_sectors(sectors: &[SealedSector], randomness: &Node, count: usize) -> PostOutcome {
    let mut outcome = PostOutcome::default();
    for s in sectors {
        match prove_sector(s, randomness, count) {
            Ok(p) => outcome.proofs.push(p),
            Err(error) => {
                tracing::warn!(sector = s.id.sector_number, %error, "faulty sector");
                outcome.faulty.push(FaultySector {
                    sector_number: s.id.sector_number,
                    error,
                });
            }
        }
    }
    outcome
}

/// Window PoSt over a deadline's sectors: 10 challenges per sector.
pub fn prove_window(sectors: &[SealedSector], randomness: &Node) -> PostOutcome {
    prove_sectors(sectors, randomness, WINDOW_CHALLENGES_PER_SECTOR)
}

/// Winning PoSt: the sector the randomness selects among `sectors` (sorted by number), 66 challenges.
/// A faulty selected sector is an error: the block cannot be won with it.
pub fn prove_winning(
    sectors: &[SealedSector],
    miner_id: u64,
    randomness: &Node,
) -> SealResult<SectorProof> {
    let mut sorted: Vec<&SealedSector> = sectors.iter().collect();
    sorted.sort_by_key(|s| s.id.sector_number);
    let index = post::winning_sector_index(miner_id, randomness, sorted.len())
        .map_err(|_| SealError::Inconsistent("no sectors to prove"))?;
    prove_sector(sorted[index], randomness, WINNING_CHALLENGES)
}
