//! The sector store and PoSt proving.
//!
//! The sector store is a directory whose subdirectories are sealed sector directories (as
//! `lode seal` and `lode genesis new` leave them); each names its sector in its `sector.json`, and
//! only this miner's sectors of the store's size count. A sector is *readable* when its directory
//! opens and its replica and tree R are present; proving reads them and checks every opening, so a
//! damaged sector shows up as faulty rather than as a proof the chain rejects.
//!
//! Proofs are made with the Winning and Window PoSt parameters, loaded once and kept in memory, and
//! randomness from the operating system for the zero-knowledge blinding.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bls12_381::Bls12;
use groth16::Parameters;
use lode_node::core::SectorRef;
use lode_proofs::circuit::post::{self as post_circuit, PostKind};
use lode_proofs::params::ParamStore;
use lode_proofs::post::window_partitions;
use lode_proofs::sector::{SectorSize, randomness_node};
use lode_sealing::post::{SealedSector, prove_window, prove_winning};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::error::{ProviderError, ProviderResult};

/// This miner's sealed sectors on disk.
#[derive(Clone, Debug)]
pub struct SectorStore {
    dir: PathBuf,
    miner: u64,
    size: SectorSize,
}

impl SectorStore {
    /// The store in `dir` for `miner`'s sectors of `size`.
    pub fn new(dir: impl Into<PathBuf>, miner: u64, size: SectorSize) -> Self {
        SectorStore {
            dir: dir.into(),
            miner,
            size,
        }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every sector directory of this miner and size, by sector number (rescanned each call).
    pub fn scan(&self) -> BTreeMap<u64, PathBuf> {
        let mut out = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for e in entries.flatten() {
            let path = e.path();
            if !path.is_dir() {
                continue;
            }
            if let Ok(s) = SealedSector::open(&path)
                && s.id.miner_id == self.miner
                && s.id.size == self.size
            {
                out.insert(s.id.sector_number, path);
            }
        }
        out
    }

    /// Opens sector `n` if it is present and readable.
    pub fn open(&self, n: u64, index: &BTreeMap<u64, PathBuf>) -> Option<SealedSector> {
        let path = index.get(&n)?;
        let s = SealedSector::open(path).ok()?;
        (s.dir.sealed().is_file() && s.dir.tree_r().is_file()).then_some(s)
    }
}

/// Proves PoSts over the sector store.
pub struct Prover {
    store: SectorStore,
    size: SectorSize,
    winning: Arc<Parameters<Bls12>>,
    window: Arc<Parameters<Bls12>>,
}

impl std::fmt::Debug for Prover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prover")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// A Window PoSt for one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionProof {
    /// The SNARK (empty when every sector was skipped).
    pub proof: Vec<u8>,
    /// Sectors that could not be proven (they are skipped and become faulty).
    pub skipped: Vec<u64>,
}

pub(crate) fn os_rng() -> ProviderResult<ChaCha20Rng> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| ProviderError::Random(e.to_string()))?;
    Ok(ChaCha20Rng::from_seed(seed))
}

impl Prover {
    /// Loads the Winning and Window PoSt parameters of `size` from `params` (they must exist:
    /// `lode params generate` makes them).
    pub fn load(params: &ParamStore, size: SectorSize, store: SectorStore) -> ProviderResult<Self> {
        let (winning, _) = params.load(&PostKind::Winning.params_id(size))?;
        let (window, _) = params.load(&PostKind::Window.params_id(size))?;
        Ok(Self::with_params(
            store,
            size,
            Arc::new(winning),
            Arc::new(window),
        ))
    }

    /// A prover with parameters already in memory.
    pub fn with_params(
        store: SectorStore,
        size: SectorSize,
        winning: Arc<Parameters<Bls12>>,
        window: Arc<Parameters<Bls12>>,
    ) -> Self {
        Prover {
            store,
            size,
            winning,
            window,
        }
    }

    /// The sector store.
    pub fn store(&self) -> &SectorStore {
        &self.store
    }

    /// A Winning PoSt over `sectors` (all the miner's active sectors, as the chain lists them).
    pub fn winning_post(
        &self,
        miner: u64,
        randomness: [u8; 32],
        sectors: &[SectorRef],
    ) -> ProviderResult<Vec<u8>> {
        let index = self.store.scan();
        let mut sealed = Vec::with_capacity(sectors.len());
        for s in sectors {
            sealed.push(
                self.store
                    .open(s.sector_number, &index)
                    .ok_or(ProviderError::MissingSector(s.sector_number))?,
            );
        }
        let vanilla = prove_winning(&sealed, miner, &randomness_node(randomness))?;
        let mut rng = os_rng()?;
        post_circuit::prove(
            &self.winning,
            PostKind::Winning,
            self.size,
            &[vanilla],
            &mut rng,
        )
        .map_err(|e| ProviderError::Snark(e.to_string()))
    }

    /// A Window PoSt over one partition's `sectors` (those the chain expects proven): sectors that
    /// are missing or fail their openings are skipped.
    pub fn window_post(
        &self,
        randomness: [u8; 32],
        sectors: &[SectorRef],
    ) -> ProviderResult<PartitionProof> {
        let index = self.store.scan();
        let mut skipped = Vec::new();
        let mut sealed = Vec::new();
        for s in sectors {
            match self.store.open(s.sector_number, &index) {
                Some(x) => sealed.push(x),
                None => skipped.push(s.sector_number),
            }
        }
        let r = randomness_node(randomness);
        let outcome = prove_window(&sealed, &r);
        for f in &outcome.faulty {
            tracing::warn!(sector = f.sector_number, error = %f.error, "sector failed its Window PoSt challenges");
            skipped.push(f.sector_number);
        }
        skipped.sort_unstable();
        if outcome.proofs.is_empty() {
            return Ok(PartitionProof {
                proof: Vec::new(),
                skipped,
            });
        }
        // The circuit proves a full partition: when sectors were skipped, the last proven one
        // fills the places left, as the verifier pads the statement's sectors.
        let mut padded = window_partitions(self.size, &outcome.proofs);
        let (Some(vanilla), true) = (padded.pop(), padded.is_empty()) else {
            return Err(ProviderError::Snark(format!(
                "{} sectors do not fit one Window PoSt partition of {} sectors",
                outcome.proofs.len(),
                self.size.window_post_sectors_per_partition()
            )));
        };
        let mut rng = os_rng()?;
        let proof = post_circuit::prove(
            &self.window,
            PostKind::Window,
            self.size,
            &vanilla,
            &mut rng,
        )
        .map_err(|e| ProviderError::Snark(e.to_string()))?;
        Ok(PartitionProof { proof, skipped })
    }
}
