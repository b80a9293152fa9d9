//! Reading deal pieces back for retrieval: where a piece is (by piece CID), and its payload's
//! bytes from its sector's unsealed copy — unsealing the sector first when no copy is kept.
//!
//! A deal sector keeps its unsealed copy after Finalize by default (`[sealing]
//! keep_unsealed_deals`): a range is then read straight from it, only the fr32 blocks that cover
//! it, and unpadded ([`lode_sealing::seal::read_unsealed_range`]). Without one, the first read
//! unseals the whole sector into a new unsealed copy in its directory
//! ([`lode_sealing::seal::unseal_sector`]: every SDR layer labelled again, as long as PreCommit1;
//! the result checked against the sector's CommD before it is renamed into place), one sector at
//! a time; later reads use that copy.
//!
//! Only pieces whose sector is `Proving` are served (the deal is active, and the sector is in
//! its final place, where nothing moves it). Everything here is blocking file work: an async
//! caller (the retrieval HTTP server) runs it on a blocking thread.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use lode_chain::types::{ActorId, DealId};
use lode_proofs::cid::PieceCid;
use lode_proofs::fr32::{PADDED_BLOCK, RAW_BLOCK};
use lode_proofs::sector::SectorSize;
use lode_sealing::seal::{self, SectorId, no_progress};
use lode_sealing::sector_dir::SectorDir;
use serde::{Deserialize, Serialize};

use super::deals::piece_cid_text;
use super::runner::PipelineConfig;
use super::state::SectorState;
use super::storage;
use super::store::PipelineStore;
use crate::error::{ProviderError, ProviderResult};

/// Where a piece's bytes are (`provider_pieceLocation`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceLocation {
    /// The piece CID.
    pub piece_cid: String,
    /// The deal that stores it (one of them, when several store the same piece).
    pub deal_id: DealId,
    /// The sector.
    pub sector: u64,
    /// The piece's padded byte offset in the sector.
    pub offset: u64,
    /// The piece's padded size.
    pub size: u64,
    /// Its payload's length: the bytes a retrieval serves.
    pub payload_size: u64,
    /// Whether the sector has an unsealed copy now (a read needs no unsealing).
    pub unsealed: bool,
}

/// Reads pieces' payloads from the sectors the pipeline sealed (cheap to clone; `Send + Sync`).
#[derive(Clone)]
pub struct PieceReader {
    store: PipelineStore,
    miner: ActorId,
    size: SectorSize,
    scratch_dir: PathBuf,
    store_dir: PathBuf,
    cache_dir: PathBuf,
    /// Held while a sector is unsealed: one at a time (each takes a sector's worth of memory
    /// and every core), and a second reader of the same sector waits for the first's copy.
    unsealing: Arc<Mutex<()>>,
}

impl std::fmt::Debug for PieceReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PieceReader")
            .field("miner", &self.miner)
            .field("store_dir", &self.store_dir)
            .finish_non_exhaustive()
    }
}

impl PieceReader {
    /// A reader over the pipeline's records in `store` and the directories of `config`.
    pub fn new(store: PipelineStore, config: &PipelineConfig) -> Self {
        PieceReader {
            store,
            miner: config.miner,
            size: config.size,
            scratch_dir: config.scratch_dir.clone(),
            store_dir: config.store_dir.clone(),
            cache_dir: config.cache_dir.clone(),
            unsealing: Arc::new(Mutex::new(())),
        }
    }

    fn dir(&self, sector: u64) -> PathBuf {
        storage::work_dir(&self.scratch_dir, &self.store_dir, self.miner, sector)
    }

    fn has_unsealed(&self, sector: u64) -> bool {
        SectorDir::open(&self.dir(sector)).is_ok_and(|dir| {
            std::fs::metadata(dir.unsealed()).is_ok_and(|m| m.len() == self.size.bytes())
        })
    }

    /// Where `piece` is: a deal storing it whose sector is `Proving` (one with an unsealed copy
    /// first, then the lowest deal id); `None` when no such deal is in the pipeline.
    ///
    /// # Errors
    /// [`ProviderError::Pipeline`] when the records cannot be read.
    pub fn locate(&self, piece: &PieceCid) -> ProviderResult<Option<PieceLocation>> {
        let err = |e: super::store::PipelineError| ProviderError::Pipeline(e.to_string());
        let mut found = Vec::new();
        for p in self
            .store
            .pieces_with_comm_p(piece.comm_p().0)
            .map_err(err)?
        {
            let Some(n) = p.sector.filter(|_| p.is_live()) else {
                continue;
            };
            let proving = self
                .store
                .get(n)
                .map_err(err)?
                .is_some_and(|r| r.state() == SectorState::Proving);
            if proving {
                found.push(PieceLocation {
                    piece_cid: piece_cid_text(p.comm_p()),
                    deal_id: p.deal_id,
                    sector: n,
                    offset: p.offset,
                    size: p.piece_size(),
                    payload_size: p.payload_size,
                    unsealed: self.has_unsealed(n),
                });
            }
        }
        found.sort_by_key(|l| (!l.unsealed, l.deal_id));
        Ok(found.into_iter().next())
    }

    /// Makes sure sector `n` has an unsealed copy, unsealing it when it has none (see the module
    /// docs); returns whether it unsealed. Blocking, and as long as PreCommit1 when it unseals.
    ///
    /// # Errors
    /// [`ProviderError::Seal`] when the sector cannot be unsealed (its replica, `pc1.json` or
    /// the parent cache missing, or a damaged replica: the decoded data does not give its CommD).
    pub fn ensure_unsealed(&self, n: u64) -> ProviderResult<bool> {
        if self.has_unsealed(n) {
            return Ok(false);
        }
        let _one = self
            .unsealing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Another reader may have unsealed it while this one waited.
        if self.has_unsealed(n) {
            return Ok(false);
        }
        let dir = SectorDir::open(&self.dir(n))?;
        let id = SectorId {
            size: self.size,
            miner_id: self.miner.0,
            sector_number: n,
        };
        let started = std::time::Instant::now();
        seal::unseal_sector(&dir, &id, &self.cache_dir, &mut no_progress)?;
        tracing::info!(
            sector = n,
            seconds = started.elapsed().as_secs_f64(),
            "sector unsealed for retrieval"
        );
        Ok(true)
    }

    /// Writes `len` bytes of `loc`'s payload, from payload byte `offset`, to `out`: from the
    /// sector's unsealed copy, unsealing the sector first when it has none. Blocking.
    ///
    /// # Errors
    /// [`ProviderError::PieceRange`] for a range past the payload (nothing is written);
    /// [`ProviderError::Seal`] when the sector cannot be read or unsealed.
    pub fn read(
        &self,
        loc: &PieceLocation,
        offset: u64,
        len: u64,
        out: &mut dyn Write,
    ) -> ProviderResult<()> {
        if offset
            .checked_add(len)
            .is_none_or(|end| end > loc.payload_size)
        {
            return Err(ProviderError::PieceRange {
                offset,
                len,
                payload_size: loc.payload_size,
            });
        }
        self.ensure_unsealed(loc.sector)?;
        let dir = SectorDir::open(&self.dir(loc.sector))?;
        let id = SectorId {
            size: self.size,
            miner_id: self.miner.0,
            sector_number: loc.sector,
        };
        // The piece's first payload byte, in the sector's unpadded bytes.
        let start = (loc.offset)
            .checked_div(PADDED_BLOCK as u64)
            .unwrap_or(0)
            .saturating_mul(RAW_BLOCK as u64);
        seal::read_unsealed_range(&dir, &id, start.saturating_add(offset), len, out)?;
        Ok(())
    }
}
