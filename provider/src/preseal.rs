//! Pre-sealing: a genesis miner's sectors, sealed for real before the chain exists.
//!
//! A network's genesis names miners that have power from epoch 0; their sectors are committed
//! capacity (all zeros) sealed with a ticket derived from the miner and sector number — there is no
//! chain randomness yet, and the chain does not check a PoRep for genesis sectors. The sealed
//! directories land in the miner's sector store, where its prover finds them like any other.

use std::path::{Path, PathBuf};

use lode_chain::genesis::GenesisSector;
use lode_chain::types::{ActorId, Epoch};
use lode_proofs::sector::SectorSize;
use lode_sealing::capacity::{self, Phase, SystemProbe, Work};
use lode_sealing::seal::{self, SectorId, no_progress};
use lode_sealing::sector_dir::SectorDir;

use crate::error::ProviderResult;

/// The ticket a genesis sector is sealed with: `H("lode/provider/preseal", miner ‖ number)`.
pub fn preseal_ticket(miner: ActorId, sector_number: u64) -> [u8; 32] {
    *blake3::Hasher::new_derive_key("lode/provider/preseal")
        .update(&miner.0.to_le_bytes())
        .update(&sector_number.to_le_bytes())
        .finalize()
        .as_bytes()
}

/// The directory of sector `n` of `miner` under a sector store's root.
pub fn sector_path(store: &Path, miner: ActorId, sector_number: u64) -> PathBuf {
    store.join(format!("s-{}-{sector_number}", miner.0))
}

/// Seals sector `sector_number` of `miner` (empty, `size`) into `store` and finalizes it (layers
/// and tree C removed; the replica and tree R kept for PoSt); returns it as a genesis sector
/// expiring at `expiration`. `cache_dir` holds the SDR parent cache, shared between sectors.
///
/// # Errors
/// [`crate::ProviderError::Seal`] when sealing fails (disk space, permissions).
pub fn preseal(
    store: &Path,
    cache_dir: &Path,
    miner: ActorId,
    size: SectorSize,
    sector_number: u64,
    expiration: Epoch,
) -> ProviderResult<GenesisSector> {
    let id = SectorId {
        size,
        miner_id: miner.0,
        sector_number,
    };
    let path = sector_path(store, miner, sector_number);
    // Refused with the figures before anything is written when the disks or memory are short.
    let work = Work {
        phases: vec![Phase::PreCommit1, Phase::PreCommit2, Phase::Finalize],
        piece_bytes: 0,
    };
    capacity::check(&path, cache_dir, size, &work, &SystemProbe)?;
    let dir = SectorDir::create(&path)?;
    let ticket = lode_proofs::sector::randomness_node(preseal_ticket(miner, sector_number));
    let pc1 = seal::pre_commit1(&dir, &id, ticket, cache_dir, None, &mut no_progress)?;
    let pc2 = seal::pre_commit2(&dir, &id, &mut no_progress)?;
    seal::finalize(&dir, &id, false)?;
    Ok(GenesisSector {
        sector_number,
        comm_r: pc2.comm_r.0.0,
        comm_d: pc1.comm_d.0.0,
        expiration,
    })
}
