//! The sector store and PoSt proving.
//!
//! The sector store is a directory whose subdirectories are sealed sector directories (as
//! `lode seal` and `lode genesis new` leave them); each names its sector in its `sector.json`, and
//! only this miner's sectors of the store's size count. A sector is *readable* when its directory
//! opens and its replica and tree R are present; proving reads them and checks every opening, so a
//! damaged sector shows up as faulty rather than as a proof the chain rejects.
//!
//! The sealing pipeline seals in a scratch directory and moves a sector into the store at
//! Finalize, which runs after the sector's prove-commit has landed: from then until the move the
//! chain may challenge it. A store made [`SectorStore::with_sealing`] therefore also finds, for a
//! number the store itself lacks, a sector in the sealing scratch whose PreCommit2 is done
//! (`pc2.json`: its replica and tree R complete) — so a sector is provable from the epoch it
//! lands, and never declared faulty for being on its way to long-term storage.
//!
//! Proofs are made with the Winning and Window PoSt parameters, loaded once and kept in memory, and
//! randomness from the operating system for the zero-knowledge blinding.
//!
//! **Proving check.** Before a deadline's fault cutoff the poster checks every sector the deadline
//! must prove ([`SectorStore::check`]): its directory opens, its replica and tree R are there, a
//! handful of leaves drawn from the epoch ([`check_randomness`]) open against tree R's root, read
//! from the replica and checked natively, and that root with `comm_c` gives the `comm_r` the chain
//! holds. A corrupted replica byte under a challenged leaf, a truncated or damaged tree, or a
//! record that no longer matches the chain fails the check with a [`CheckFailure`], the reason the
//! API reports; the leaves change every epoch, so damage anywhere is found in time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bls12_381::Bls12;
use groth16::Parameters;
use lode_chain::types::Epoch;
use lode_node::core::SectorRef;
use lode_proofs::circuit::post::{self as post_circuit, PostKind};
use lode_proofs::node::{Node, trunc254};
use lode_proofs::params::ParamStore;
use lode_proofs::post::{
    SectorProof, WINDOW_CHALLENGES_PER_SECTOR, WINNING_CHALLENGES, verify_sector,
    window_partitions, winning_sector_index,
};
use lode_proofs::sector::{SectorSize, randomness_node};
use lode_sealing::post::{SealedSector, prove_sector};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::error::{ProviderError, ProviderResult};

/// Sectors this provider proves that live on other machines (a cluster's workers): their
/// vanilla proofs are made there, and verified here against the chain's `comm_r` before use. The
/// seam between the prover and the cluster ([`crate::pipeline::remote::ClusterSectors`]).
pub trait RemoteSectors: Send + Sync + std::fmt::Debug {
    /// Sector `n`'s vanilla proof for `challenges` leaves drawn from `randomness`, from the
    /// machine holding it: `None` when no machine holds it, else the proof or why it could not be
    /// had. Called on a blocking thread.
    fn vanilla(
        &self,
        n: u64,
        randomness: &Node,
        challenges: usize,
    ) -> Option<Result<SectorProof, String>>;

    /// [`RemoteSectors::vanilla`] for each of `sectors`, in their order: an implementation asks
    /// the machines at once (a Window PoSt partition or a proving check covers many sectors).
    fn vanilla_many(
        &self,
        sectors: &[u64],
        randomness: &Node,
        challenges: usize,
    ) -> Vec<Option<Result<SectorProof, String>>> {
        sectors
            .iter()
            .map(|n| self.vanilla(*n, randomness, challenges))
            .collect()
    }
}

/// Machines that make PoSt SNARKs for this provider (a cluster's `wdpost` and `wnpost` workers):
/// the seam between the prover and the cluster ([`crate::pipeline::remote::ClusterSnarks`]). The
/// vanilla proofs are gathered here (from this store and through [`RemoteSectors`]); the machine
/// only runs the circuit, and its proof is verified here before it is used.
pub trait RemoteSnarks: Send + Sync + std::fmt::Debug {
    /// The `kind` PoSt SNARK of `vanilla` (a Window PoSt partition's vanilla proofs, padded as the
    /// circuit takes them, or a Winning PoSt's one) made on another machine: `None` when no
    /// machine takes such work (prove here), else the proof or why it could not be had (then it
    /// is proven here). `subject` names the proof among the miner's ([`post_subject`]: its
    /// task). Called on a blocking thread.
    fn post_snark(
        &self,
        kind: PostKind,
        subject: u64,
        size: SectorSize,
        vanilla: &[SectorProof],
    ) -> Option<Result<Vec<u8>, String>>;
}

/// This miner's sealed sectors on disk (and, with [`SectorStore::with_remote`], on the machines of
/// its cluster).
#[derive(Clone, Debug)]
pub struct SectorStore {
    dir: PathBuf,
    miner: u64,
    size: SectorSize,
    /// The sealing scratch, looked at for sectors sealed and not moved yet.
    sealing: Option<PathBuf>,
    /// Where sectors not on this machine are proven.
    remote: Option<Arc<dyn RemoteSectors>>,
}

impl SectorStore {
    /// The store in `dir` for `miner`'s sectors of `size`.
    pub fn new(dir: impl Into<PathBuf>, miner: u64, size: SectorSize) -> Self {
        SectorStore {
            dir: dir.into(),
            miner,
            size,
            sealing: None,
            remote: None,
        }
    }

    /// The same store, proving the sectors it does not hold through `remote` (the machines of a
    /// cluster): a sector sealed on a worker is provable from the epoch its prove-commit lands,
    /// before Finalize brings it here, and wherever it is kept.
    pub fn with_remote(mut self, remote: Arc<dyn RemoteSectors>) -> Self {
        self.remote = Some(remote);
        self
    }

    /// `sector`'s vanilla proof for `count` leaves drawn from `randomness`: from its files here
    /// (`index` from [`SectorStore::scan`]; every opening checked natively), else from the machine
    /// holding it, verified against the chain's `comm_r`. The reason when it cannot be had.
    ///
    /// # Errors
    /// Why the sector cannot be proven (a missing or damaged file, a worker that cannot prove it
    /// or whose proof does not verify, a sector nobody holds).
    pub fn prove(
        &self,
        index: &BTreeMap<u64, PathBuf>,
        sector: &SectorRef,
        randomness: &Node,
        count: usize,
    ) -> Result<SectorProof, String> {
        let n = sector.sector_number;
        if index.contains_key(&n) {
            let sealed = self
                .open(n, index)
                .ok_or_else(|| "its replica or tree R is missing".to_string())?;
            return prove_sector(&sealed, randomness, count).map_err(|e| e.to_string());
        }
        match self
            .remote
            .as_ref()
            .map(|r| r.vanilla(n, randomness, count))
        {
            None | Some(None) => Err(CheckFailure::NotInStore.to_string()),
            Some(Some(Err(why))) => Err(why),
            Some(Some(Ok(proof))) => {
                verify_sector(self.size, randomness, &sector.public(), count, &proof)
                    .map(|()| proof)
                    .map_err(|e| format!("its worker's proof does not verify: {e}"))
            }
        }
    }

    /// [`SectorStore::prove`] for each of `sectors`, in their order: those held here proven from
    /// their files, the others asked of the machines holding them all at once
    /// ([`RemoteSectors::vanilla_many`]) and each verified against its `comm_r`.
    pub fn prove_many(
        &self,
        index: &BTreeMap<u64, PathBuf>,
        sectors: &[SectorRef],
        randomness: &Node,
        count: usize,
    ) -> Vec<Result<SectorProof, String>> {
        let away: Vec<u64> = sectors
            .iter()
            .map(|s| s.sector_number)
            .filter(|n| !index.contains_key(n))
            .collect();
        let mut asked = match (&self.remote, away.is_empty()) {
            (Some(remote), false) => remote.vanilla_many(&away, randomness, count),
            _ => Vec::new(),
        }
        .into_iter();
        sectors
            .iter()
            .map(|sector| {
                if index.contains_key(&sector.sector_number) {
                    return self.prove(index, sector, randomness, count);
                }
                match asked.next().flatten() {
                    None => Err(CheckFailure::NotInStore.to_string()),
                    Some(Err(why)) => Err(why),
                    Some(Ok(proof)) => {
                        verify_sector(self.size, randomness, &sector.public(), count, &proof)
                            .map(|()| proof)
                            .map_err(|e| format!("its worker's proof does not verify: {e}"))
                    }
                }
            })
            .collect()
    }

    /// The same store, also finding in the sealing scratch `dir` the sectors whose PreCommit2 is
    /// done and that Finalize has not moved into the store yet (see the module docs).
    pub fn with_sealing(mut self, dir: impl Into<PathBuf>) -> Self {
        self.sealing = Some(dir.into());
        self
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every sector directory of this miner and size, by sector number (rescanned each call).
    /// Hidden entries (a name starting with `.`) are skipped: a sector being copied in from
    /// scratch is `.s-<miner>-<n>.moving` until it is renamed into place, complete.
    /// With [`SectorStore::with_sealing`], a number the store lacks is also looked for among the
    /// sealed sectors of the sealing scratch.
    pub fn scan(&self) -> BTreeMap<u64, PathBuf> {
        let mut out = BTreeMap::new();
        self.scan_into(&self.dir, false, &mut out);
        if let Some(sealing) = &self.sealing {
            self.scan_into(sealing, true, &mut out);
        }
        out
    }

    /// Adds the sectors of `dir` to `out` (not over one already there); with `sealed_only`, only
    /// those whose PreCommit2 is done.
    fn scan_into(&self, dir: &Path, sealed_only: bool, out: &mut BTreeMap<u64, PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if !path.is_dir() || e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if let Ok(s) = SealedSector::open(&path)
                && s.id.miner_id == self.miner
                && s.id.size == self.size
                && (!sealed_only || s.dir.pc2().is_file())
            {
                out.entry(s.id.sector_number).or_insert(path);
            }
        }
    }

    /// Opens sector `n` if it is present and readable.
    pub fn open(&self, n: u64, index: &BTreeMap<u64, PathBuf>) -> Option<SealedSector> {
        let path = index.get(&n)?;
        let s = SealedSector::open(path).ok()?;
        (s.dir.sealed().is_file() && s.dir.tree_r().is_file()).then_some(s)
    }

    /// The proving check of one sector the chain lists (its number and `comm_r`): see the module
    /// docs. `randomness` comes from [`check_randomness`]; `index` from [`SectorStore::scan`].
    ///
    /// # Errors
    /// The [`CheckFailure`] that makes the sector unprovable.
    pub fn check_sector(
        &self,
        index: &BTreeMap<u64, PathBuf>,
        sector: &SectorRef,
        randomness: &Node,
    ) -> Result<(), CheckFailure> {
        let Some(path) = index.get(&sector.sector_number) else {
            // Not here: on a worker of the cluster, which proves it for the check.
            return match &self.remote {
                Some(_) => self
                    .prove(index, sector, randomness, CHECK_CHALLENGES)
                    .map(|_| ())
                    .map_err(|why| {
                        if why == CheckFailure::NotInStore.to_string() {
                            CheckFailure::NotInStore
                        } else {
                            CheckFailure::Remote(why)
                        }
                    }),
                None => Err(CheckFailure::NotInStore),
            };
        };
        let sealed =
            SealedSector::open(path).map_err(|e| CheckFailure::Unreadable(e.to_string()))?;
        if !sealed.dir.sealed().is_file() {
            return Err(CheckFailure::Missing("replica"));
        }
        if !sealed.dir.tree_r().is_file() {
            return Err(CheckFailure::Missing("tree R"));
        }
        let proof = prove_sector(&sealed, randomness, CHECK_CHALLENGES)
            .map_err(|e| CheckFailure::Opening(e.to_string()))?;
        let comm_r = lode_proofs::sdr::comm_r(&proof.comm_c, &proof.comm_r_last)
            .map_err(|e| CheckFailure::Unreadable(e.to_string()))?;
        if comm_r.0 != sector.comm_r {
            return Err(CheckFailure::WrongCommR {
                found: hex::encode(comm_r.0),
                expected: hex::encode(sector.comm_r),
            });
        }
        Ok(())
    }

    /// The proving check of `sectors` at `epoch` (one scan of the store), in order: each sector's
    /// number and, when it fails, why.
    pub fn check(
        &self,
        sectors: &[SectorRef],
        epoch: Epoch,
    ) -> Vec<(u64, Result<(), CheckFailure>)> {
        let index = self.scan();
        let randomness = check_randomness(self.miner, epoch);
        // The sectors on other machines are asked for at once.
        let away: Vec<SectorRef> = sectors
            .iter()
            .filter(|s| !index.contains_key(&s.sector_number))
            .cloned()
            .collect();
        let mut remote = match &self.remote {
            Some(_) if !away.is_empty() => self
                .prove_many(&index, &away, &randomness, CHECK_CHALLENGES)
                .into_iter()
                .map(|r| {
                    r.map(|_| ()).map_err(|why| {
                        if why == CheckFailure::NotInStore.to_string() {
                            CheckFailure::NotInStore
                        } else {
                            CheckFailure::Remote(why)
                        }
                    })
                })
                .collect(),
            _ => Vec::new(),
        }
        .into_iter();
        sectors
            .iter()
            .map(|s| {
                let result = if index.contains_key(&s.sector_number) {
                    self.check_sector(&index, s, &randomness)
                } else {
                    remote.next().unwrap_or(Err(CheckFailure::NotInStore))
                };
                (s.sector_number, result)
            })
            .collect()
    }
}

/// Leaves a proving check opens per sector: as many as a Window PoSt challenges.
pub const CHECK_CHALLENGES: usize = WINDOW_CHALLENGES_PER_SECTOR;

/// Why a sector failed its proving check ([`SectorStore::check`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckFailure {
    /// No directory of the store holds it.
    #[error("not in the sector store")]
    NotInStore,
    /// Its directory or its records cannot be read.
    #[error("its directory cannot be read: {0}")]
    Unreadable(String),
    /// A file proving needs is missing.
    #[error("its {0} is missing")]
    Missing(&'static str),
    /// A challenged leaf could not be opened, or its opening does not lead to tree R's root (a
    /// damaged replica or tree), or the tree's root is not the one the sector was sealed with.
    #[error("challenged leaves do not open: {0}")]
    Opening(String),
    /// It lives on a worker of the cluster, which could not prove it, or whose proof does not
    /// verify.
    #[error("on the cluster: {0}")]
    Remote(String),
    /// Tree R's root and `comm_c` do not give the `comm_r` the chain holds.
    #[error("its comm_r is {found}, the chain's is {expected}")]
    WrongCommR {
        /// What the sector's files give (hex).
        found: String,
        /// What the chain holds (hex).
        expected: String,
    },
}

/// The randomness a proving check of `miner`'s sectors at `epoch` draws its leaves from (each
/// sector's leaves are then drawn with its number, as a PoSt's are): new every epoch, so repeated
/// checks cover the whole sector, and known to nobody before the epoch.
pub fn check_randomness(miner: u64, epoch: Epoch) -> Node {
    let mut h = blake3::Hasher::new_derive_key("lode/provider/proving-check");
    h.update(&miner.to_le_bytes());
    h.update(&epoch.to_le_bytes());
    trunc254(*h.finalize().as_bytes())
}

/// Proves PoSts over the sector store.
pub struct Prover {
    store: SectorStore,
    size: SectorSize,
    winning: Arc<Parameters<Bls12>>,
    window: Arc<Parameters<Bls12>>,
    /// Where PoSt SNARKs are made when not here, and the keys their proofs are checked with.
    snarks: Option<(Arc<dyn RemoteSnarks>, PostKeys)>,
}

/// The PoSt circuits' prepared verifying keys, which check a proof made elsewhere.
struct PostKeys {
    winning: groth16::PreparedVerifyingKey<Bls12>,
    window: groth16::PreparedVerifyingKey<Bls12>,
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

impl Prover {
    /// A `kind` PoSt SNARK of `vanilla` (over `sectors`) from the remote machines, verified
    /// here: `None` (prove here) when there are none, or when theirs failed or does not verify
    /// (said in the log).
    fn remote_snark(
        &self,
        kind: PostKind,
        randomness: [u8; 32],
        sectors: &[SectorRef],
        vanilla: &[SectorProof],
    ) -> Option<Vec<u8>> {
        let (remote, keys) = self.snarks.as_ref()?;
        let (pvk, what) = match kind {
            PostKind::Winning => (&keys.winning, "Winning PoSt"),
            PostKind::Window => (&keys.window, "Window PoSt partition"),
        };
        let subject = post_subject(kind, &randomness, vanilla);
        let proof = match remote.post_snark(kind, subject, self.size, vanilla)? {
            Ok(proof) => proof,
            Err(why) => {
                tracing::warn!(%why, "the cluster did not prove the {what}: proving it here");
                return None;
            }
        };
        let comm_r: BTreeMap<u64, [u8; 32]> = sectors
            .iter()
            .map(|s| (s.sector_number, s.comm_r))
            .collect();
        let public: Option<Vec<lode_proofs::post::PublicSector>> = vanilla
            .iter()
            .map(|v| {
                comm_r
                    .get(&v.sector_number)
                    .map(|c| lode_proofs::post::PublicSector {
                        sector_number: v.sector_number,
                        comm_r: Node(*c),
                    })
            })
            .collect();
        let verified = public
            .ok_or_else(|| format!("a sector the {what} does not name"))
            .and_then(|public| {
                post_circuit::verify(
                    pvk,
                    kind,
                    self.size,
                    &randomness_node(randomness),
                    &public,
                    &proof,
                )
                .map_err(|e| e.to_string())
            });
        match verified {
            Ok(()) => Some(proof),
            Err(why) => {
                tracing::warn!(%why, "the cluster's proof of the {what} does not verify: proving it here");
                None
            }
        }
    }
}

/// The task subject naming a PoSt SNARK of `kind`: 48 bits of a hash of the kind, the randomness
/// and the sectors proven (unique among a miner's proofs in flight).
pub fn post_subject(kind: PostKind, randomness: &[u8; 32], vanilla: &[SectorProof]) -> u64 {
    let mut h = blake3::Hasher::new_derive_key("lode/provider/window-post-subject");
    // The Window PoSt subject hashes no kind byte (as before Winning PoSts were made remotely).
    if kind == PostKind::Winning {
        h.update(b"winning");
    }
    h.update(randomness);
    for v in vanilla {
        h.update(&v.sector_number.to_le_bytes());
    }
    let mut top = [0u8; 8];
    top[2..].copy_from_slice(&h.finalize().as_bytes()[..6]);
    u64::from_be_bytes(top)
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
            snarks: None,
        }
    }

    /// The same prover, its PoSt SNARKs made by `remote` when it takes them (a cluster's
    /// `wdpost` and `wnpost` workers); a proof from there is verified here first, and a proof it
    /// does not make, or makes wrongly, is made here.
    pub fn with_remote_snarks(mut self, remote: Arc<dyn RemoteSnarks>) -> Self {
        let keys = PostKeys {
            winning: groth16::prepare_verifying_key(&self.winning.vk),
            window: groth16::prepare_verifying_key(&self.window.vk),
        };
        self.snarks = Some((remote, keys));
        self
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
        let r = randomness_node(randomness);
        let mut sorted = sectors.to_vec();
        sorted.sort_by_key(|s| s.sector_number);
        let chosen = winning_sector_index(miner, &r, sorted.len())
            .ok()
            .and_then(|i| sorted.get(i))
            .ok_or_else(|| ProviderError::Snark("no sectors to prove".into()))?;
        let vanilla = self
            .store
            .prove(&index, chosen, &r, WINNING_CHALLENGES)
            .map_err(|why| {
                tracing::warn!(sector = chosen.sector_number, %why, "the elected sector cannot be proven");
                ProviderError::MissingSector(chosen.sector_number)
            })?;
        let vanilla = [vanilla];
        if let Some(proof) = self.remote_snark(PostKind::Winning, randomness, &[*chosen], &vanilla)
        {
            return Ok(proof);
        }
        let mut rng = os_rng()?;
        post_circuit::prove(
            &self.winning,
            PostKind::Winning,
            self.size,
            &vanilla,
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
        let r = randomness_node(randomness);
        let mut proofs = Vec::with_capacity(sectors.len());
        let proven = self
            .store
            .prove_many(&index, sectors, &r, WINDOW_CHALLENGES_PER_SECTOR);
        for (s, result) in sectors.iter().zip(proven) {
            match result {
                Ok(p) => proofs.push(p),
                Err(why) => {
                    tracing::warn!(sector = s.sector_number, %why, "sector failed its Window PoSt challenges");
                    skipped.push(s.sector_number);
                }
            }
        }
        skipped.sort_unstable();
        if proofs.is_empty() {
            return Ok(PartitionProof {
                proof: Vec::new(),
                skipped,
            });
        }
        // The circuit proves a full partition: when sectors were skipped, the last proven one
        // fills the places left, as the verifier pads the statement's sectors.
        let mut padded = window_partitions(self.size, &proofs);
        let (Some(vanilla), true) = (padded.pop(), padded.is_empty()) else {
            return Err(ProviderError::Snark(format!(
                "{} sectors do not fit one Window PoSt partition of {} sectors",
                proofs.len(),
                self.size.window_post_sectors_per_partition()
            )));
        };
        let proof = match self.remote_snark(PostKind::Window, randomness, sectors, &vanilla) {
            Some(proof) => proof,
            None => {
                let mut rng = os_rng()?;
                post_circuit::prove(
                    &self.window,
                    PostKind::Window,
                    self.size,
                    &vanilla,
                    &mut rng,
                )
                .map_err(|e| ProviderError::Snark(e.to_string()))?
            }
        };
        Ok(PartitionProof { proof, skipped })
    }
}
