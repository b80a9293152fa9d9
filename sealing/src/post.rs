//! Proving PoSt from sealed sectors on disk (SPEC §6): tree R openings at the challenged leaves, read
//! from each sector's replica and tree R file. A sector whose files are missing or damaged, or whose
//! openings do not check out, is reported as faulty instead of failing the whole run, so the miner can
//! declare it or skip it and still prove the others.

use lode_proofs::circuit::post::{self as post_circuit, PostKind};
use lode_proofs::files::{PostFile, PostFileSector};
use lode_proofs::merkle::{DiskTree, PoseidonTree};
use lode_proofs::node::Node;
use lode_proofs::post::{
    self, PublicSector, SectorProof, WINDOW_CHALLENGES_PER_SECTOR, WINNING_CHALLENGES,
    window_partitions,
};

use crate::error::{SealError, SealResult};
use crate::seal::{PreCommit2Output, Progress, SectorId};
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
    /// Opens a sealed sector's directory (which must exist), reading which sector it holds from its
    /// record.
    pub fn open(root: &std::path::Path) -> SealResult<Self> {
        let dir = SectorDir::open(root)?;
        if !dir.sector_meta().exists() {
            return Err(SealError::NoSector {
                path: root.to_path_buf(),
            });
        }
        let meta: crate::seal::SectorMeta = read_json(&dir.sector_meta(), "PoSt", "AddPiece")?;
        Ok(SealedSector { id: meta.id(), dir })
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

/// Checks that `sectors` can form one PoSt: at least one, one size and one miner (`miner_id` when
/// given), no sector number or directory twice. Returns them sorted by sector number.
pub fn check_post_sectors(
    sectors: &[SealedSector],
    miner_id: Option<u64>,
) -> SealResult<Vec<SealedSector>> {
    let Some(first) = sectors.first() else {
        return Err(SealError::Inconsistent("no sectors to prove"));
    };
    let (size, miner) = (first.id.size, miner_id.unwrap_or(first.id.miner_id));
    for s in sectors {
        if s.id.size != size || s.id.miner_id != miner {
            return Err(SealError::MixedSectors {
                path: s.dir.root().to_path_buf(),
                expected: format!("{size} sectors of miner {miner}"),
                found: s.id.to_string(),
            });
        }
    }
    let mut sorted = sectors.to_vec();
    sorted.sort_by_key(|s| s.id.sector_number);
    for pair in sorted.windows(2) {
        if let [a, b] = pair
            && a.id.sector_number == b.id.sector_number
        {
            return Err(SealError::DuplicateSector {
                sector_number: a.id.sector_number,
                first: a.dir.root().to_path_buf(),
                second: b.dir.root().to_path_buf(),
            });
        }
    }
    Ok(sorted)
}

/// Proves a Winning or Window PoSt over sealed sectors and returns the proof file a verifier checks
/// ([`PostFile`]). The sectors are checked with [`check_post_sectors`]; Window PoSt skips faulty
/// sectors (listed in the file) and proves the rest partition by partition; Winning PoSt fails if the
/// selected sector is faulty. Every proof is verified with the parameters' verifying key before the
/// file is returned.
pub fn prove_post(
    kind: PostKind,
    sectors: &[SealedSector],
    miner_id: Option<u64>,
    randomness: &Node,
    params: &groth16::Parameters<bls12_381::Bls12>,
    rng: &mut impl rand_core::CryptoRng,
    progress: crate::seal::ProgressFn<'_>,
) -> SealResult<PostFile> {
    prove_post_on(
        kind, sectors, miner_id, randomness, params, rng, None, progress,
    )
}

/// [`prove_post`] with the proofs' G1 sums on `device` when given
/// ([`crate::accel::prover_device`]): the same proofs, checked the same way.
#[allow(clippy::too_many_arguments)]
pub fn prove_post_on(
    kind: PostKind,
    sectors: &[SealedSector],
    miner_id: Option<u64>,
    randomness: &Node,
    params: &groth16::Parameters<bls12_381::Bls12>,
    rng: &mut impl rand_core::CryptoRng,
    device: Option<&std::sync::Arc<dyn lode_proofs::prover::G1Msm>>,
    progress: crate::seal::ProgressFn<'_>,
) -> SealResult<PostFile> {
    let sorted = check_post_sectors(sectors, miner_id)?;
    let Some(first) = sorted.first() else {
        return Err(SealError::Inconsistent("no sectors to prove"));
    };
    let (size, miner) = (first.id.size, first.id.miner_id);
    let mut step = |done, total| {
        if progress(Progress::Partition { done, total }).is_break() {
            Err(SealError::Cancelled)
        } else {
            Ok(())
        }
    };
    let (proven, faulty, proofs) = match kind {
        PostKind::Winning => {
            let vanilla = prove_winning(&sorted, miner, randomness)?;
            let publics = sorted
                .iter()
                .map(SealedSector::public)
                .collect::<SealResult<Vec<_>>>()?;
            step(0, 1)?;
            let proof = post_circuit::prove_on(params, kind, size, &[vanilla], rng, device)?;
            step(1, 1)?;
            (publics, Vec::new(), vec![proof])
        }
        PostKind::Window => {
            let outcome = prove_window(&sorted, randomness);
            let publics = sorted
                .iter()
                .filter(|s| {
                    !outcome
                        .faulty
                        .iter()
                        .any(|f| f.sector_number == s.id.sector_number)
                })
                .map(SealedSector::public)
                .collect::<SealResult<Vec<_>>>()?;
            let parts = window_partitions(size, &outcome.proofs);
            let mut proofs = Vec::with_capacity(parts.len());
            for (k, part) in parts.iter().enumerate() {
                step(k, parts.len())?;
                proofs.push(post_circuit::prove_on(
                    params, kind, size, part, rng, device,
                )?);
            }
            step(parts.len(), parts.len())?;
            let faulty = outcome
                .faulty
                .iter()
                .map(|f| (f.sector_number, f.error.to_string()))
                .collect();
            (publics, faulty, proofs)
        }
    };
    let file = PostFile {
        kind,
        sector_size: size,
        miner_id: miner,
        randomness: *randomness,
        sectors: proven
            .iter()
            .map(|s| PostFileSector(s.sector_number, s.comm_r))
            .collect(),
        faulty,
        proofs: proofs.iter().map(hex::encode).collect(),
    };
    if file.sectors.is_empty() {
        return Err(SealError::Inconsistent(
            "every sector is faulty: there is nothing to prove",
        ));
    }
    let verifier = lode_proofs::verifier::SnarkVerifier::new(lode_proofs::params::ParamStore::new(
        std::path::PathBuf::new(),
    ));
    verifier.insert_key(&kind.params_id(size), &params.vk);
    file.verify(&verifier).map_err(|_| {
        SealError::Inconsistent(
            "the new PoSt proof does not verify under its own parameters; check the parameter files with `lode params check`",
        )
    })?;
    Ok(file)
}
