//! The node's consensus core: the block graph, fork choice, and the state kept at the head.
//!
//! [`NodeCore`] is synchronous and deterministic (it is given the time): the service around it
//! feeds it gossiped blocks, synced tipsets and messages, and asks it for mining bases. It owns
//! the state machine ([`Chain`]), the [`BlockStore`], the record of every known tipset and the
//! [`Mempool`].
//!
//! **Head and state.** The state in the chain store is always exactly the state after the head
//! tipset: null rounds are never committed on their own. Which tipset the state belongs to is
//! written as metadata in the same atomic commit as the state (`node/head`), so after a crash the
//! node reopens at a committed head and checks the state root against the tipset's record. (A
//! directory written before null rounds were committed with their tipset may hold null rounds
//! past the head: opening reverts them.)
//!
//! **Null rounds.** The epochs between the head and a later epoch `e` that nobody won are run in
//! a scratch overlay ([`lode_chain::AfterNulls`]), never committed: each has its beacon (from the
//! head's tickets) and runs cron. The result is kept for the head — a later request extends it
//! with the new rounds only — and is what a block at `e` is built on and checked against: its
//! parent state root, the network power its weight and elections divide by, the miner's power,
//! eligibility and sectors. There is no limit tied to finality, so the chain lives on after any
//! stall: a tipset after `n` null rounds is applied with them in one commit whose undo record
//! reaches back to its parent. What bounds the work: a received block must be no later than the
//! clock allows (its slot at most `clock_drift_secs` ahead of `now`), and a mining base is refused
//! more than [`MAX_NULL_ROUNDS`] null rounds after the head.
//!
//! **Applying a tipset** on the head: each block's consensus fields are checked against the
//! parent (parents, beacon, parent weight, timestamp slot), the weight is computed from the QA
//! power after the null rounds before it, and the state machine runs those null rounds and
//! validates and applies the blocks (signatures, ticket, election, Winning PoSt, messages) — all
//! or nothing, one commit.
//!
//! **Fork choice.** Blocks with the same epoch and parents form one tipset (one block per miner).
//! A second block by the same miner in the slot is consensus-fault evidence only once both headers
//! have passed the header checks against the parent state (the consensus fields, then
//! [`Chain::check_header_after`]: worker signature, eligibility, ticket, election proof and win
//! count, Winning PoSt): checked when the second one arrives if the parent is on the canonical
//! chain (the head's null rounds, or a recent past state, [`Chain::at_past`]), otherwise when the
//! slot is applied. A header that fails is remembered as bad; one that was only stored (a lighter
//! fork, a synced tipset) never counts, so a forged header neither accuses the miner nor gets its
//! honest block refused. A tipset heavier than
//! the head (by its claimed parent weight plus its own share, then by the smallest ticket) is
//! switched to: the state is reverted to the common ancestor by the state store's undo records
//! (one per tipset, walked back tipset by tipset) and the branch applied tipset by tipset. A
//! reorganisation may revert only tipsets within `chain_finality` epochs of the head: its depth
//! is counted from the oldest tipset it reverts, not from the ancestor, which may lie far before
//! it behind null rounds (two miners that both end a long stall fork there, and that fork must
//! resolve). If a tipset of the branch fails, it and its block at fault are marked invalid and
//! the old branch is restored.
//!
//! **Gossiped blocks** are checked before they are stored whenever their parent state can be had
//! (a parent on the canonical chain): a header nobody signed costs one check, no disk, and no
//! attempt at a branch that claims more wins than it has. Blocks on a fork whose state is not at
//! hand are stored unchecked, at most `MAX_UNCHECKED_SLOT_BLOCKS` (64) in one slot.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use lode_chain::actors::{miner, power};
use lode_chain::block::{Block, BlockHeader, Tipset};
use lode_chain::consensus::{self, Beacon, TicketBeacon, TipsetKey};
use lode_chain::error::{BlockRejection, ChainError};
use lode_chain::message::{Message, Receipt, SignedMessage};
use lode_chain::store::StateStore;
use lode_chain::types::{ActorId, Address, Epoch, TokenAmount};
use lode_chain::{AfterNulls, Chain, NullRound};
use lode_proofs::post::PublicSector;
use lode_proofs::verifier::ProofVerifier;
use serde::{Deserialize, Serialize};

use crate::blockstore::{BlockStore, TipsetMeta, TipsetReceipts};
use crate::error::{NodeError, NodeResult};
use crate::genesis::GenesisFile;
use crate::mempool::{AccountState, Mempool, MempoolConfig};
use crate::wire::{FullBlock, FullTipset, MAX_SYNC_TIPSETS, Status, SyncRequest, SyncResponse};

/// The metadata key naming the head tipset (value: `(tipset hash, epoch)`).
const HEAD_META: &[u8] = b"node/head";
/// The file naming the genesis a node directory belongs to.
const GENESIS_ID_FILE: &str = "genesis-id";
/// The chain's state (sled), in the node directory.
const STATE_DIR: &str = "state";
/// The blocks received and made, in the node directory.
const BLOCKS_DIR: &str = "blocks";
/// How many bad block ids are remembered.
const MAX_BAD_BLOCKS: usize = 10_000;
/// How many ids of headers known to pass the header checks are remembered.
const MAX_VALID_HEADERS: usize = 10_000;
/// How many blocks a slot (an epoch on given parents) may hold before a gossiped block whose
/// header cannot be checked yet is refused: far more than the winners of an epoch (five expected),
/// so honest blocks fit, while forged headers on a fork cannot pile up without bound (each block
/// received in a slot reads every header the slot holds).
const MAX_UNCHECKED_SLOT_BLOCKS: usize = 64;
/// The most null rounds a mining base may follow the head by: a bound on the work one request
/// can cause (each null round runs cron, about a tenth of a millisecond on a small devnet, more
/// with more miners), not a consensus rule — a received block is bounded by the clock instead.
/// 100,000 epochs are 28 hours of one-second epochs, 35 days of thirty-second ones; a network
/// stalled longer than that cannot mine again.
pub const MAX_NULL_ROUNDS: u64 = 100_000;

/// Limits and tolerances of the core.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// How far (seconds) a block's slot may be ahead of the local clock.
    pub clock_drift_secs: u64,
    /// Most messages in a block.
    pub max_block_messages: usize,
    /// The mempool's limits.
    pub mempool: MempoolConfig,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            clock_drift_secs: 1,
            max_block_messages: 4_000,
            mempool: MempoolConfig::default(),
        }
    }
}

/// What became of a received block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockVerdict {
    /// Valid and part of the new head: forward it.
    Accepted,
    /// Stored, but on a fork no heavier than the head (not validated yet): do not forward.
    Stored,
    /// Already known.
    Duplicate,
    /// Its parents are unknown: fetch them (from the peer that sent it) and submit it again.
    NeedParents(TipsetKey),
    /// Invalid: penalise whoever sent it.
    Rejected(String),
}

/// How the head moved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeadChange {
    /// Tipsets taken off the chain, newest first.
    pub reverted: Vec<[u8; 32]>,
    /// Tipsets applied, oldest first.
    pub applied: Vec<[u8; 32]>,
}

/// Everything a miner needs to try for a block at an epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MiningBase {
    /// The epoch to mine.
    pub epoch: Epoch,
    /// The parent tipset (the head).
    pub parents: TipsetKey,
    /// The parent's weight.
    pub parent_weight: u128,
    /// The state root before `epoch` (after the null rounds since the head).
    pub parent_state_root: [u8; 32],
    /// The epoch's beacon.
    pub beacon: [u8; 32],
    /// Unix time of the epoch's slot (the block's timestamp).
    pub timestamp: u64,
    /// The network's QA power at the parent state (what elections divide by).
    pub network_qa: u128,
}

/// A miner's view at a mining base.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinerBase {
    /// The base.
    pub base: MiningBase,
    /// The miner's QA power.
    pub miner_qa: u128,
    /// Why it cannot win, if it cannot.
    pub ineligible: Option<String>,
    /// Its active sectors (what a Winning PoSt challenges).
    pub sectors: Vec<SectorRef>,
    /// The messages a block would carry (by gas price), when the miner can win, with their
    /// signatures: the producer puts them in its block unsigned and their aggregate in the header
    /// ([`lode_chain::block::BlockMessages::from_signed`]).
    pub messages: Vec<SignedMessage>,
}

/// One deadline of a miner, as its prover needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlineView {
    /// Deadline index.
    pub index: u64,
    /// First epoch of its next (or current) challenge window.
    pub open: Epoch,
    /// First epoch after that window.
    pub close: Epoch,
    /// The epoch whose randomness challenges it.
    pub challenge: Epoch,
    /// Faults and recoveries for it must land before this epoch.
    pub fault_cutoff: Epoch,
    /// The Window PoSt randomness, once the challenge epoch is on chain.
    pub randomness: Option<[u8; 32]>,
    /// Partitions proven in the current window.
    pub posted: Vec<u64>,
    /// Its partitions.
    pub partitions: Vec<PartitionView>,
}

/// Where a message was executed on the canonical chain ([`NodeCore::search_message`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageLookup {
    /// The tipset's epoch.
    pub epoch: Epoch,
    /// The tipset's key.
    pub tipset: TipsetKey,
    /// What executing the message gave.
    pub receipt: Receipt,
}

/// One partition of a deadline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionView {
    /// Index within the deadline.
    pub index: u64,
    /// Live sectors.
    pub sectors: Vec<SectorRef>,
    /// Faulty ones.
    pub faults: Vec<u64>,
    /// Faulty ones declared recovered.
    pub recoveries: Vec<u64>,
}

/// What a miner's prover needs at the head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvingView {
    /// The head's epoch.
    pub head_epoch: Epoch,
    /// The miner's sector size.
    pub sector_size: lode_proofs::sector::SectorSize,
    /// The worker account (signs PoSt messages).
    pub worker: ActorId,
    /// Every deadline that has partitions, with its next window not closed at `head_epoch + 1`.
    pub deadlines: Vec<DeadlineView>,
}

/// A sector as a PoSt names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorRef {
    /// Sector number.
    pub sector_number: u64,
    /// Its `comm_r`.
    pub comm_r: [u8; 32],
}

impl SectorRef {
    /// As the proofs name it.
    pub fn public(&self) -> PublicSector {
        PublicSector {
            sector_number: self.sector_number,
            comm_r: lode_proofs::node::Node(self.comm_r),
        }
    }
}

/// Two headers by one miner at one epoch (and on the same parents), each of which passed the
/// header checks against its parent state: the miner's worker signed both, and both won.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsensusFaultEvidence {
    /// The first header seen.
    pub first: BlockHeader,
    /// The second.
    pub second: BlockHeader,
}

/// What the checks made of a received block with twins (other blocks by its miner in its slot).
enum Twins {
    /// The received block's header fails the checks.
    Invalid(String),
    /// Both pass: a consensus fault, with this twin as the first header.
    Fault(Box<BlockHeader>),
    /// The received block passes and no twin does (each failing one is now remembered as bad).
    NoValidTwin,
    /// The slot's parent state cannot be had now (a parent off the canonical chain): nothing
    /// checked, nothing recorded.
    Unchecked,
}

/// The consensus core (see the module docs).
pub struct NodeCore {
    genesis: GenesisFile,
    genesis_id: [u8; 32],
    genesis_hash: [u8; 32],
    chain: Chain,
    blocks: BlockStore,
    tipsets: HashMap<[u8; 32], TipsetMeta>,
    slots: HashMap<(Epoch, [u8; 32]), BTreeSet<[u8; 32]>>,
    bad_blocks: HashMap<[u8; 32], String>,
    valid_headers: HashSet<[u8; 32]>,
    head: [u8; 32],
    canonical: BTreeMap<Epoch, [u8; 32]>,
    mempool: Mempool,
    beacon: Box<dyn Beacon>,
    config: CoreConfig,
    faults: Vec<ConsensusFaultEvidence>,
    nulls: NullCache,
}

/// The state after the null rounds since the head, as last computed (see the module docs).
struct NullCache {
    /// The head tipset it was computed for (its tickets give the null rounds' beacons).
    head: [u8; 32],
    /// The state after them.
    after: AfterNulls,
}

impl std::fmt::Debug for NodeCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCore")
            .field("network", &self.genesis.network())
            .field("head", &hex::encode(self.head))
            .field("epoch", &self.head_epoch())
            .finish()
    }
}

fn missing(h: &[u8; 32]) -> NodeError {
    NodeError::UnknownTipset(hex::encode(h))
}

impl NodeCore {
    /// Removes the chain a node directory holds — the genesis it belongs to, `state/` and
    /// `blocks/` — and nothing else (keys, token, configuration), so that [`NodeCore::open`] then
    /// starts the chain of another genesis there. Nothing to remove is no error.
    ///
    /// # Errors
    /// [`NodeError::Io`] when a part exists and cannot be removed.
    pub fn remove_chain(dir: &Path) -> NodeResult<()> {
        for name in [GENESIS_ID_FILE, STATE_DIR, BLOCKS_DIR] {
            let p = dir.join(name);
            let removed = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            match removed {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(NodeError::io(&p)(e)),
            }
        }
        Ok(())
    }

    /// Opens the node's chain in `dir` (`state/`, `blocks/`), creating it from `genesis` if empty.
    pub fn open(
        dir: &Path,
        genesis: GenesisFile,
        verifier: Box<dyn ProofVerifier>,
        config: CoreConfig,
    ) -> NodeResult<Self> {
        std::fs::create_dir_all(dir).map_err(NodeError::io(dir))?;
        let genesis_id = genesis.id();
        let id_file = dir.join(GENESIS_ID_FILE);
        match std::fs::read_to_string(&id_file) {
            Ok(found) if found.trim() != hex::encode(genesis_id) => {
                return Err(NodeError::WrongGenesis {
                    dir: dir.to_path_buf(),
                    expected: hex::encode(genesis_id),
                    found: found.trim().to_string(),
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                lode_proofs::durable::write_atomic(&id_file, hex::encode(genesis_id).as_bytes())
                    .map_err(|e| NodeError::Io {
                        path: id_file.clone(),
                        source: std::io::Error::other(e.to_string()),
                    })?;
            }
            Err(e) => return Err(NodeError::io(&id_file)(e)),
        }
        let blocks = BlockStore::open(&dir.join(BLOCKS_DIR))?;
        let store = StateStore::open_sled(&dir.join(STATE_DIR))?;
        let policy = genesis.policy.clone();
        let fresh = store.head().is_none();
        let mut chain = if fresh {
            Chain::genesis(store, policy, &genesis.genesis, verifier)?
        } else {
            Chain::open(store, policy, verifier)?
        };
        let genesis_hash = TipsetKey::default().hash();
        let mut tipsets: HashMap<[u8; 32], TipsetMeta> = HashMap::new();
        for m in blocks.tipsets()? {
            tipsets.insert(m.hash(), m);
        }
        let genesis_meta = match tipsets.get(&genesis_hash) {
            Some(m) => m.clone(),
            None if fresh => {
                let m = TipsetMeta {
                    key: TipsetKey::default(),
                    epoch: 0,
                    parents: TipsetKey::default(),
                    min_ticket: genesis.genesis.beacon,
                    wins: 0,
                    claimed_parent_weight: 0,
                    weight: Some(0),
                    post_root: Some(chain.head().root),
                    invalid: None,
                };
                blocks.put_tipset(&m)?;
                blocks.flush()?;
                tipsets.insert(genesis_hash, m.clone());
                m
            }
            None => return Err(NodeError::Corrupt("the genesis tipset record is missing")),
        };
        // Which tipset the state belongs to. The state is that tipset's, except in a directory
        // written when null rounds past the head were committed on their own: revert those.
        let (head, head_epoch) = match chain.meta(HEAD_META)? {
            Some(bytes) => postcard::from_bytes::<([u8; 32], Epoch)>(&bytes)
                .map_err(|_| NodeError::Corrupt("the head record"))?,
            None => (genesis_hash, 0),
        };
        if chain.head().epoch > head_epoch {
            chain.revert_to(head_epoch)?;
        }
        let root = chain.head().root;
        let Some(meta) = tipsets.get_mut(&head) else {
            return Err(missing(&head));
        };
        match meta.post_root {
            Some(r) if r != root => {
                return Err(NodeError::Corrupt(
                    "the state root differs from the head tipset's record",
                ));
            }
            Some(_) => {}
            None => {
                // The state was committed but the process died before the record was updated.
                meta.post_root = Some(root);
                blocks.put_tipset(meta)?;
            }
        }
        if genesis_meta.post_root.is_none() {
            return Err(NodeError::Corrupt("the genesis record has no state root"));
        }
        let mut canonical = BTreeMap::new();
        let mut at = head;
        loop {
            let m = tipsets.get(&at).ok_or_else(|| missing(&at))?;
            canonical.insert(m.epoch, at);
            if m.key.is_genesis() {
                break;
            }
            at = m.parents.hash();
        }
        let mut slots: HashMap<(Epoch, [u8; 32]), BTreeSet<[u8; 32]>> = HashMap::new();
        for m in tipsets.values() {
            let slot = slots.entry((m.epoch, m.parents.hash())).or_default();
            slot.extend(m.key.0.iter().copied());
        }
        let nulls = NullCache {
            head,
            after: chain.at_head(),
        };
        let missing_receipts = !tipsets.get(&head).is_some_and(|m| m.key.is_genesis())
            && blocks.receipts(&head)?.is_none();
        let mut core = NodeCore {
            genesis,
            genesis_id,
            genesis_hash,
            chain,
            blocks,
            tipsets,
            slots,
            bad_blocks: HashMap::new(),
            valid_headers: HashSet::new(),
            head,
            canonical,
            mempool: Mempool::new(config.mempool.clone()),
            beacon: Box::new(TicketBeacon),
            config,
            faults: Vec::new(),
            nulls,
        };
        if missing_receipts {
            // The process died between the head's state commit and its receipts (or the directory
            // predates receipts): apply the head again from its parent.
            let parent = core
                .tipsets
                .get(&head)
                .map(|m| m.parents.hash())
                .ok_or_else(|| missing(&head))?;
            tracing::info!(
                epoch = head_epoch,
                "the head's receipts are missing: applying it again"
            );
            core.rewind_to(parent)?;
            core.apply_child(head)?;
        }
        Ok(core)
    }

    /// Where message `id` was executed on the canonical chain: the tipset and its receipt.
    pub fn search_message(&self, id: &[u8; 32]) -> NodeResult<Option<MessageLookup>> {
        for hash in self.blocks.tipsets_with_message(id)? {
            let Some(meta) = self.tipsets.get(&hash) else {
                continue;
            };
            if self.canonical.get(&meta.epoch) != Some(&hash) {
                continue;
            }
            let Some(receipts) = self.blocks.receipts(&hash)? else {
                continue;
            };
            if let Some((_, receipt)) = receipts.into_iter().find(|(m, _)| m == id) {
                return Ok(Some(MessageLookup {
                    epoch: meta.epoch,
                    tipset: meta.key.clone(),
                    receipt,
                }));
            }
        }
        Ok(None)
    }

    /// The genesis file.
    pub fn genesis(&self) -> &GenesisFile {
        &self.genesis
    }

    /// The genesis id.
    pub fn genesis_id(&self) -> [u8; 32] {
        self.genesis_id
    }

    /// The state machine (read-only: queries and proofs of state).
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// The head tipset's record.
    pub fn head(&self) -> &TipsetMeta {
        // The head is always a known tipset (checked at open, kept by every switch).
        self.tipsets
            .get(&self.head)
            .unwrap_or_else(|| unreachable_head())
    }

    /// The head's hash.
    pub fn head_hash(&self) -> [u8; 32] {
        self.head
    }

    /// The head's epoch.
    pub fn head_epoch(&self) -> Epoch {
        self.tipsets.get(&self.head).map_or(0, |m| m.epoch)
    }

    /// The head's weight.
    pub fn head_weight(&self) -> u128 {
        self.tipsets
            .get(&self.head)
            .and_then(|m| m.weight)
            .unwrap_or(0)
    }

    /// This node's sync status.
    pub fn status(&self) -> Status {
        Status {
            genesis: self.genesis_id,
            head: self.head().key.clone(),
            epoch: self.head_epoch(),
            weight: self.head_weight(),
        }
    }

    /// A tipset's record.
    pub fn tipset(&self, hash: &[u8; 32]) -> Option<&TipsetMeta> {
        self.tipsets.get(hash)
    }

    /// The canonical tipset at `epoch` (`None` for a null round or beyond the head).
    pub fn tipset_at(&self, epoch: Epoch) -> Option<&TipsetMeta> {
        self.canonical.get(&epoch).and_then(|h| self.tipsets.get(h))
    }

    /// A stored block.
    pub fn block(&self, id: &[u8; 32]) -> NodeResult<Option<FullBlock>> {
        self.blocks.block(id)
    }

    /// The mempool.
    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }

    /// Consensus-fault evidence seen so far: two blocks by one miner at one epoch, both of whose
    /// headers passed the header checks (never a header that was not checked, or failed).
    pub fn consensus_faults(&self) -> &[ConsensusFaultEvidence] {
        &self.faults
    }

    fn policy(&self) -> &lode_chain::Policy {
        self.chain.policy()
    }

    /// An account as the current state has it.
    pub fn account(&self, addr: &Address) -> Option<AccountState> {
        account_in(&self.chain, addr)
    }

    fn network_qa(&self) -> NodeResult<u128> {
        Ok(self.chain.view(|rt| {
            let st = power::load(rt)?;
            Ok::<_, ChainError>(power::current_total(rt, &st).qa)
        })?)
    }

    fn remember_bad(&mut self, id: [u8; 32], why: String) {
        if self.bad_blocks.len() >= MAX_BAD_BLOCKS {
            self.bad_blocks.clear();
        }
        self.valid_headers.remove(&id);
        self.bad_blocks.insert(id, why);
    }

    /// Remembers that a header passed the header checks against its parent state (forgetting
    /// costs only a check again).
    fn remember_valid(&mut self, id: [u8; 32]) {
        if self.valid_headers.len() >= MAX_VALID_HEADERS {
            self.valid_headers.clear();
        }
        self.valid_headers.insert(id);
    }

    /// Records consensus-fault evidence, once per pair. Both headers must have passed the header
    /// checks: the callers check that.
    fn record_fault(&mut self, first: BlockHeader, second: BlockHeader) {
        let (a, b) = (first.id(), second.id());
        let known = self.faults.iter().any(|f| {
            let (x, y) = (f.first.id(), f.second.id());
            (x == a && y == b) || (x == b && y == a)
        });
        if known {
            return;
        }
        tracing::warn!(
            miner = %first.miner,
            epoch = first.epoch,
            "consensus fault: two blocks by one miner at one epoch"
        );
        self.faults.push(ConsensusFaultEvidence { first, second });
    }

    /// The state the blocks at `epoch` on the parent tipset `parent_hash` are checked against
    /// (the parent's state after the null rounds before `epoch`), when it can be had now: the
    /// parent is on the canonical chain, within the undo records' window. `None` otherwise.
    fn state_for_slot(
        &mut self,
        parent_hash: [u8; 32],
        parent: &TipsetMeta,
        epoch: Epoch,
    ) -> NodeResult<Option<AfterNulls>> {
        if self.canonical.get(&parent.epoch) != Some(&parent_hash) {
            return Ok(None);
        }
        if parent_hash == self.head {
            self.prepare_nulls(epoch)?;
            return Ok(Some(self.nulls.after.clone()));
        }
        let past = match self.chain.at_past(parent.epoch) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, epoch = parent.epoch, "a past state cannot be read");
                return Ok(None);
            }
        };
        let first = parent.epoch.saturating_add(1);
        let beacon = &self.beacon;
        let rounds = (first..epoch).map(|e| NullRound {
            epoch: e,
            beacon: beacon.beacon(&parent.min_ticket, e),
        });
        Ok(Some(self.chain.run_null_rounds(past, rounds)?))
    }

    /// Runs the header checks on `header`, a block at its epoch on `parent`, against `state`
    /// ([`NodeCore::state_for_slot`]): the consensus fields against the parent, then what the
    /// chain checks of a header (signature by the worker key, ticket, election proof and win
    /// count, Winning PoSt, eligibility, parent state root). `Err(why)` when it fails.
    fn check_header(
        &self,
        header: &BlockHeader,
        parent: &TipsetMeta,
        state: &AfterNulls,
    ) -> NodeResult<Result<(), String>> {
        if let Err(why) = self.check_against_parent(header, parent) {
            return Ok(Err(why));
        }
        let beacon = self.beacon.beacon(&parent.min_ticket, header.epoch);
        match self.chain.check_header_after(state, beacon, header) {
            Ok(()) => Ok(Ok(())),
            Err(e @ ChainError::InvalidBlock { .. }) => Ok(Err(e.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Judges a received block `id` that has `twins` in its slot: other stored blocks by the same
    /// miner at the same epoch on the same parents, none known bad. Both sides are checked first
    /// (see [`Twins`]); a header that fails is remembered as bad.
    fn judge_twins(
        &mut self,
        id: [u8; 32],
        header: &BlockHeader,
        parent_hash: [u8; 32],
        parent: &TipsetMeta,
        twins: Vec<([u8; 32], BlockHeader)>,
    ) -> NodeResult<Twins> {
        let Some(state) = self.state_for_slot(parent_hash, parent, header.epoch)? else {
            return Ok(Twins::Unchecked);
        };
        if !self.valid_headers.contains(&id) {
            if let Err(why) = self.check_header(header, parent, &state)? {
                return Ok(Twins::Invalid(why));
            }
            self.remember_valid(id);
        }
        let mut valid_twin = None;
        for (twin_id, twin) in twins {
            if !self.valid_headers.contains(&twin_id) {
                if let Err(why) = self.check_header(&twin, parent, &state)? {
                    self.remember_bad(twin_id, why);
                    continue;
                }
                self.remember_valid(twin_id);
            }
            valid_twin.get_or_insert(twin);
        }
        Ok(match valid_twin {
            Some(first) => Twins::Fault(Box::new(first)),
            None => Twins::NoValidTwin,
        })
    }

    /// Checks that a block carries the messages its header commits to, and not too many. A
    /// failure condemns the copy, not the header: anyone can pair a gossiped header with other
    /// messages, so it must not be remembered against the block's id (which covers the header
    /// only), or the honest block would be refused when it arrives.
    fn check_body(&self, b: &FullBlock) -> Result<(), String> {
        if b.messages.len() > self.config.max_block_messages {
            return Err(format!(
                "{} messages exceed the limit of {}",
                b.messages.len(),
                self.config.max_block_messages
            ));
        }
        let gas = lode_chain::block::block_gas(&b.messages);
        let limit = self.chain.policy().block_gas_limit;
        if gas > limit {
            return Err(format!(
                "the messages' gas limits sum to {gas}, above the block gas limit {limit}"
            ));
        }
        if b.header.messages_root != lode_chain::block::messages_root(&b.messages) {
            return Err("the messages root does not match the messages".into());
        }
        Ok(())
    }

    /// Checks what a block's header can be checked for without state.
    fn check_stateless(&self, b: &FullBlock, now: u64) -> Result<(), String> {
        let h = &b.header;
        if h.epoch == 0 {
            return Err("a block cannot be at epoch 0".into());
        }
        if TipsetKey::new(h.parents.clone()).0 != h.parents {
            return Err("the parents are not sorted and distinct".into());
        }
        let slot = self.genesis.slot_time(h.epoch);
        if h.timestamp != slot {
            return Err(format!(
                "timestamp {} is not epoch {}'s slot {slot}",
                h.timestamp, h.epoch
            ));
        }
        if slot > now.saturating_add(self.config.clock_drift_secs) {
            return Err(format!(
                "epoch {} starts at {slot}, in the future (now {now})",
                h.epoch
            ));
        }
        Ok(())
    }

    /// Checks a block's consensus fields against its parent tipset.
    fn check_against_parent(&self, h: &BlockHeader, parent: &TipsetMeta) -> Result<(), String> {
        if h.epoch <= parent.epoch {
            return Err(format!(
                "epoch {} is not after its parent's {}",
                h.epoch, parent.epoch
            ));
        }
        if h.parents != parent.key.0 {
            return Err("parents differ from the parent tipset".into());
        }
        if h.beacon != self.beacon.beacon(&parent.min_ticket, h.epoch) {
            return Err("the beacon is not derived from the parent's tickets".into());
        }
        if let Some(w) = parent.weight
            && h.parent_weight != w
        {
            return Err(format!(
                "parent weight {} is not the parent's {w}",
                h.parent_weight
            ));
        }
        Ok(())
    }

    /// Receives a block from the network or a local miner (see [`BlockVerdict`]).
    pub fn receive_block(&mut self, block: FullBlock, now: u64) -> NodeResult<BlockVerdict> {
        let id = block.id();
        if let Some(why) = self.bad_blocks.get(&id) {
            return Ok(BlockVerdict::Rejected(why.clone()));
        }
        if self.blocks.has_block(&id)? {
            return Ok(BlockVerdict::Duplicate);
        }
        // A block from the future may be fine later: refused now, not remembered as bad.
        let slot = self.genesis.slot_time(block.header.epoch);
        if slot > now.saturating_add(self.config.clock_drift_secs) {
            return Ok(BlockVerdict::Rejected(format!(
                "epoch {} starts at {slot}, in the future (now {now})",
                block.header.epoch
            )));
        }
        // Messages that are not the header's: refused, and the header not held against the id.
        if let Err(why) = self.check_body(&block) {
            return Ok(BlockVerdict::Rejected(why));
        }
        if let Err(why) = self.check_stateless(&block, now) {
            self.remember_bad(id, why.clone());
            return Ok(BlockVerdict::Rejected(why));
        }
        let parents = TipsetKey(block.header.parents.clone());
        let parent_hash = parents.hash();
        let Some(parent) = self.tipsets.get(&parent_hash).cloned() else {
            return Ok(BlockVerdict::NeedParents(parents));
        };
        if let Some(why) = &parent.invalid {
            let why = format!("its parent is invalid ({why})");
            self.remember_bad(id, why.clone());
            return Ok(BlockVerdict::Rejected(why));
        }
        if let Err(why) = self.check_against_parent(&block.header, &parent) {
            self.remember_bad(id, why.clone());
            return Ok(BlockVerdict::Rejected(why));
        }
        let finality = self.policy().chain_finality;
        if block.header.epoch.saturating_add(finality) < self.head_epoch() {
            return Ok(BlockVerdict::Rejected(format!(
                "epoch {} is more than finality behind the head",
                block.header.epoch
            )));
        }
        let slot_key = (block.header.epoch, parent_hash);
        // A header whose parent state can be had now (a parent on the canonical chain) is checked
        // in full before anything is stored: signature by the worker key, election, ticket, win
        // count, Winning PoSt. So a forged header costs the node one check and no disk, and never
        // makes it revert its state to try a branch that claims more wins than it has. A header
        // on a fork whose state is not at hand is stored unchecked (checked when its tipset is
        // applied), and a slot holds at most `MAX_UNCHECKED_SLOT_BLOCKS` of those.
        if !self.valid_headers.contains(&id) {
            match self.state_for_slot(parent_hash, &parent, block.header.epoch)? {
                Some(state) => {
                    if let Err(why) = self.check_header(&block.header, &parent, &state)? {
                        self.remember_bad(id, why.clone());
                        return Ok(BlockVerdict::Rejected(why));
                    }
                    self.remember_valid(id);
                }
                None => {
                    let held = self.slots.get(&slot_key).map_or(0, BTreeSet::len);
                    if held >= MAX_UNCHECKED_SLOT_BLOCKS {
                        // An error, not a rejection: nothing proves the block bad, and a peer
                        // relaying an honest fork block must not be penalised for it.
                        return Err(NodeError::SlotFull {
                            epoch: block.header.epoch,
                            held,
                        });
                    }
                }
            }
        }
        // Equivocation: another block by this miner in the same slot. Blocks already found
        // invalid do not count, and neither does one whose header has not passed the checks:
        // both headers are checked before a fault is recorded (a forged or unchecked header
        // never accuses the miner, nor gets its honest block refused).
        let slot = self.slots.get(&slot_key).cloned().unwrap_or_default();
        let mut twins = Vec::new();
        for other in slot.iter().filter(|b| !self.bad_blocks.contains_key(*b)) {
            if let Some(h) = self.blocks.header(other)?
                && h.miner == block.header.miner
            {
                twins.push((*other, h));
            }
        }
        if !twins.is_empty() {
            match self.judge_twins(id, &block.header, parent_hash, &parent, twins)? {
                Twins::Invalid(why) => {
                    self.remember_bad(id, why.clone());
                    return Ok(BlockVerdict::Rejected(why));
                }
                Twins::Fault(first) => {
                    self.record_fault(*first, block.header.clone());
                    return Ok(BlockVerdict::Rejected(
                        "a second block by this miner at this epoch (consensus fault recorded)"
                            .into(),
                    ));
                }
                // Stored: the tipset takes one block per miner; the pair is judged when the slot
                // is applied.
                Twins::NoValidTwin | Twins::Unchecked => {}
            }
        }
        self.blocks.put_block(&block)?;
        let candidate = {
            let slot = self.slots.entry(slot_key).or_default();
            slot.insert(id);
            slot.iter().copied().collect::<Vec<_>>()
        };
        // One block per miner: one whose header passed the checks, else the one just received,
        // else the first by id.
        let mut per_miner: BTreeMap<ActorId, (u8, BlockHeader)> = BTreeMap::new();
        for b in &candidate {
            if self.bad_blocks.contains_key(b) {
                continue;
            }
            let Some(h) = self.blocks.header(b)? else {
                continue;
            };
            let rank = if self.valid_headers.contains(b) {
                0
            } else if *b == id {
                1
            } else {
                2
            };
            match per_miner.get(&h.miner) {
                Some((r, _)) if *r <= rank => {}
                _ => {
                    per_miner.insert(h.miner, (rank, h));
                }
            }
        }
        let refs: Vec<&BlockHeader> = per_miner.values().map(|(_, h)| h).collect();
        let Some(meta) = TipsetMeta::of_headers(&refs) else {
            return Ok(BlockVerdict::Stored);
        };
        let hash = meta.hash();
        if !self.tipsets.contains_key(&hash) {
            self.blocks.put_tipset(&meta)?;
            self.tipsets.insert(hash, meta);
        }
        let result = self.consider(hash);
        let epoch = block.header.epoch;
        let on_chain = self.canonical.get(&epoch) == Some(&hash);
        match result {
            Ok(_) if on_chain => Ok(BlockVerdict::Accepted),
            Ok(_) => Ok(BlockVerdict::Stored),
            Err(e) => match self.bad_blocks.get(&id) {
                Some(why) => Ok(BlockVerdict::Rejected(why.clone())),
                None => {
                    tracing::debug!(error = %e, "a candidate tipset could not be applied");
                    Ok(BlockVerdict::Stored)
                }
            },
        }
    }

    /// Stores tipsets fetched by sync (newest first, each the parent of the one before), after
    /// the checks that need no state; returns the newest one's hash. They are validated when
    /// applied ([`NodeCore::consider`]).
    pub fn import(&mut self, tipsets: Vec<FullTipset>, now: u64) -> NodeResult<Option<[u8; 32]>> {
        let mut newest = None;
        let mut expected_key: Option<TipsetKey> = None;
        for ts in tipsets {
            let headers: Vec<&BlockHeader> = ts.blocks.iter().map(|b| &b.header).collect();
            let Some(meta) = TipsetMeta::of_headers(&headers) else {
                return Err(NodeError::InvalidBlock {
                    epoch: 0,
                    why: "an empty tipset".into(),
                });
            };
            if let Some(k) = &expected_key
                && *k != meta.key
            {
                return Err(NodeError::InvalidBlock {
                    epoch: meta.epoch,
                    why: "a synced tipset is not the parent of the one after it".into(),
                });
            }
            for b in &ts.blocks {
                let h = &b.header;
                if h.epoch != meta.epoch || h.parents != meta.parents.0 {
                    return Err(NodeError::InvalidBlock {
                        epoch: h.epoch,
                        why: "blocks of one tipset disagree on epoch or parents".into(),
                    });
                }
                if let Err(why) = self
                    .check_body(b)
                    .and_then(|()| self.check_stateless(b, now))
                {
                    return Err(NodeError::InvalidBlock {
                        epoch: h.epoch,
                        why,
                    });
                }
            }
            let hash = meta.hash();
            newest.get_or_insert(hash);
            expected_key = Some(meta.parents.clone());
            if self.tipsets.contains_key(&hash) {
                break;
            }
            for b in &ts.blocks {
                self.blocks.put_block(b)?;
            }
            let slot = self
                .slots
                .entry((meta.epoch, meta.parents.hash()))
                .or_default();
            slot.extend(meta.key.0.iter().copied());
            self.blocks.put_tipset(&meta)?;
            self.tipsets.insert(hash, meta);
        }
        Ok(newest)
    }

    /// Whether the parent of a stored tipset chain is known down to a tipset already on record:
    /// the key of the oldest unknown ancestor's parent to fetch next, or `None` when complete.
    pub fn missing_ancestor(&self, hash: &[u8; 32]) -> Option<TipsetKey> {
        let mut at = *hash;
        loop {
            let m = self.tipsets.get(&at)?;
            if m.key.is_genesis() {
                return None;
            }
            let p = m.parents.hash();
            if !self.tipsets.contains_key(&p) {
                return Some(m.parents.clone());
            }
            if m.weight.is_some() {
                return None;
            }
            at = p;
        }
    }

    /// Switches to tipset `hash` if it is heavier than the head; returns how the head moved.
    pub fn consider(&mut self, hash: [u8; 32]) -> NodeResult<Option<HeadChange>> {
        let Some(meta) = self.tipsets.get(&hash).cloned() else {
            return Err(missing(&hash));
        };
        if meta.invalid.is_some() || hash == self.head {
            return Ok(None);
        }
        let head = self.head().clone();
        let estimate = match meta.weight {
            Some(w) => w,
            None => consensus::weight(
                meta.claimed_parent_weight,
                self.network_qa()?,
                meta.wins,
                self.policy().expected_leaders_per_epoch,
            ),
        };
        let head_weight = head.weight.unwrap_or(0);
        if !consensus::heavier(estimate, &meta.min_ticket, head_weight, &head.min_ticket) {
            return Ok(None);
        }
        let old_head = self.head;
        let change = self.switch_to(hash)?;
        // The estimate used the claimed parent weight and today's power: confirm with the
        // computed weight, and go back if the branch turned out lighter.
        let new = self.head().clone();
        if !consensus::heavier(
            new.weight.unwrap_or(0),
            &new.min_ticket,
            head_weight,
            &head.min_ticket,
        ) {
            let back = self.switch_to(old_head)?;
            return Ok(Some(HeadChange {
                reverted: back.reverted,
                applied: back.applied,
            }));
        }
        Ok(Some(change))
    }

    /// The path from the canonical chain to `target`: the ancestor on the canonical chain and
    /// the tipsets after it, oldest first.
    fn path_to(&self, target: [u8; 32]) -> NodeResult<([u8; 32], Vec<[u8; 32]>)> {
        let mut path = Vec::new();
        let mut at = target;
        loop {
            let m = self.tipsets.get(&at).ok_or_else(|| missing(&at))?;
            if self.canonical.get(&m.epoch) == Some(&at) {
                path.reverse();
                return Ok((at, path));
            }
            if let Some(why) = &m.invalid {
                return Err(NodeError::InvalidBlock {
                    epoch: m.epoch,
                    why: why.clone(),
                });
            }
            path.push(at);
            if m.key.is_genesis() {
                return Err(NodeError::Corrupt("a second genesis tipset"));
            }
            at = m.parents.hash();
        }
    }

    /// Makes `target` the head (validating the tipsets on the way), or changes nothing.
    fn switch_to(&mut self, target: [u8; 32]) -> NodeResult<HeadChange> {
        let (ancestor, path) = self.path_to(target)?;
        let anc_epoch = self.tipsets.get(&ancestor).map_or(0, |m| m.epoch);
        let old: Vec<(Epoch, [u8; 32])> = self
            .canonical
            .range(anc_epoch.saturating_add(1)..)
            .map(|(e, h)| (*e, *h))
            .collect();
        // The depth counts from the oldest tipset to revert (the null rounds between it and the
        // ancestor were committed with it): exactly what the undo records' window keeps.
        let depth = old.first().map_or(0, |(oldest, _)| {
            self.head_epoch().saturating_sub(*oldest).saturating_add(1)
        });
        let finality = self.policy().chain_finality;
        if depth > finality {
            return Err(NodeError::BeyondFinality {
                fork_epoch: anc_epoch,
                depth,
                finality,
            });
        }
        let old: Vec<[u8; 32]> = old.into_iter().map(|(_, h)| h).collect();
        let reverted_messages = self.messages_of(&old)?;
        self.rewind_to(ancestor)?;
        for (i, h) in path.iter().enumerate() {
            if let Err(e) = self.apply_child(*h) {
                for later in path.iter().skip(i) {
                    if let Some(m) = self.tipsets.get_mut(later) {
                        m.invalid.get_or_insert_with(|| e.to_string());
                        let m = m.clone();
                        self.blocks.put_tipset(&m)?;
                    }
                }
                // Back to the old branch: it was valid, and still is.
                self.rewind_to(ancestor)?;
                for h in &old {
                    self.apply_child(*h)?;
                }
                return Err(e);
            }
        }
        // Messages of reverted blocks go back to the pool (those now included are dropped by the
        // revalidation below), when the pool remembers their signatures (blocks carry none).
        for m in reverted_messages {
            let Some(m) = self.mempool.signed(&m) else {
                tracing::debug!(
                    id = %hex::encode(m.id()),
                    "a reverted block's message has no known signature: not returned to the pool"
                );
                continue;
            };
            let lookup = |a: &Address| account_in(&self.chain, a);
            let _ = self.mempool.add(m, self.chain.policy(), &lookup);
        }
        let lookup = |a: &Address| account_in(&self.chain, a);
        self.mempool.revalidate(&lookup);
        let mut reverted = old;
        reverted.reverse();
        Ok(HeadChange {
            reverted,
            applied: path,
        })
    }

    fn messages_of(&self, tipsets: &[[u8; 32]]) -> NodeResult<Vec<Message>> {
        let mut out = Vec::new();
        for h in tipsets {
            if let Some(m) = self.tipsets.get(h) {
                for id in &m.key.0 {
                    if let Some(b) = self.blocks.block(id)? {
                        out.extend(b.messages);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Reverts the state to canonical tipset `ancestor` and makes it the head.
    fn rewind_to(&mut self, ancestor: [u8; 32]) -> NodeResult<()> {
        let epoch = self
            .tipsets
            .get(&ancestor)
            .map(|m| m.epoch)
            .ok_or_else(|| missing(&ancestor))?;
        self.chain.clear_staged_meta();
        self.chain.stage_meta(
            HEAD_META.to_vec(),
            lode_chain::codec::encode(&(ancestor, epoch)),
        );
        if self.chain.head().epoch > epoch {
            self.chain.revert_to(epoch)?;
        }
        self.chain.clear_staged_meta();
        self.canonical.split_off(&epoch.saturating_add(1));
        self.set_head(ancestor);
        Ok(())
    }

    /// Makes `hash` (whose state the chain now holds) the head, and forgets the null rounds
    /// computed after the old one.
    fn set_head(&mut self, hash: [u8; 32]) {
        self.head = hash;
        self.nulls = NullCache {
            head: hash,
            after: self.chain.at_head(),
        };
    }

    /// Makes `self.nulls` the state after the null rounds between the head and `epoch` (the
    /// epochs `head + 1 .. epoch`), committing nothing: kept if it is already there, extended
    /// by the missing rounds if it stops earlier, computed from the head otherwise. The beacons
    /// come from the head's tickets.
    fn prepare_nulls(&mut self, epoch: Epoch) -> NodeResult<()> {
        let (head_epoch, min_ticket) = {
            let head = self.head();
            (head.epoch, head.min_ticket)
        };
        let Some(last) = epoch.checked_sub(1).filter(|last| *last >= head_epoch) else {
            return Err(NodeError::InvalidBlock {
                epoch,
                why: format!("not after the head at epoch {head_epoch}"),
            });
        };
        let fresh = NullCache {
            head: self.head,
            after: self.chain.at_head(),
        };
        let cached = std::mem::replace(&mut self.nulls, fresh);
        let start = if cached.head == self.head
            && cached.after.base() == self.chain.head()
            && cached.after.epoch() <= last
        {
            cached.after
        } else {
            self.chain.at_head()
        };
        let first = start.epoch().saturating_add(1);
        let beacon = &self.beacon;
        let rounds = (first..=last).map(|e| NullRound {
            epoch: e,
            beacon: beacon.beacon(&min_ticket, e),
        });
        // On an error the cache stays empty (at the head).
        let after = self.chain.run_null_rounds(start, rounds)?;
        self.nulls.after = after;
        Ok(())
    }

    /// The network's QA power after the null rounds in `self.nulls`.
    fn network_qa_after_nulls(&self) -> NodeResult<u128> {
        Ok(self.chain.view_after(&self.nulls.after, |rt| {
            let st = power::load(rt)?;
            Ok::<_, ChainError>(power::current_total(rt, &st).qa)
        })??)
    }

    /// Applies the stored tipset `hash`, a child of the head, and makes it the head.
    fn apply_child(&mut self, hash: [u8; 32]) -> NodeResult<()> {
        let mut meta = self
            .tipsets
            .get(&hash)
            .cloned()
            .ok_or_else(|| missing(&hash))?;
        let parent = self.head().clone();
        let mut blocks = Vec::with_capacity(meta.key.0.len());
        for id in &meta.key.0 {
            let b = self
                .blocks
                .block(id)?
                .ok_or_else(|| NodeError::UnknownTipset(hex::encode(id)))?;
            blocks.push(b);
        }
        for b in &blocks {
            if let Err(why) = self.check_against_parent(&b.header, &parent) {
                self.remember_bad(b.id(), why.clone());
                return Err(NodeError::InvalidBlock {
                    epoch: meta.epoch,
                    why,
                });
            }
        }
        self.prepare_nulls(meta.epoch)?;
        let twins = self.check_twins(&meta, &parent, &blocks)?;
        let weight = consensus::weight(
            parent.weight.unwrap_or(0),
            self.network_qa_after_nulls()?,
            meta.wins,
            self.policy().expected_leaders_per_epoch,
        );
        meta.weight = Some(weight);
        self.blocks.put_tipset(&meta)?;
        let beacon = self.beacon.beacon(&parent.min_ticket, meta.epoch);
        let ids: Vec<[u8; 32]> = blocks.iter().map(FullBlock::id).collect();
        let tipset = Tipset {
            epoch: meta.epoch,
            beacon,
            blocks: blocks
                .into_iter()
                .map(|b| Block {
                    header: b.header,
                    messages: b.messages,
                })
                .collect(),
        };
        // The tipset's record and blocks are durable before the state names it as the head.
        self.blocks.flush()?;
        self.chain.clear_staged_meta();
        self.chain.stage_meta(
            HEAD_META.to_vec(),
            lode_chain::codec::encode(&(hash, meta.epoch)),
        );
        let outcome = match self.chain.apply_tipset_after(&self.nulls.after, &tipset) {
            Ok(o) => o,
            Err(e) => {
                self.chain.clear_staged_meta();
                let index = match &e {
                    ChainError::InvalidBlock {
                        reason:
                            BlockRejection::Block { index, .. } | BlockRejection::MessagesRoot { index },
                        ..
                    } => Some(*index),
                    _ => None,
                };
                if let Some(id) = index.and_then(|i| ids.get(i)) {
                    self.remember_bad(*id, e.to_string());
                }
                return Err(e.into());
            }
        };
        for r in outcome.receipts.iter().filter(|r| !r.error.is_empty()) {
            tracing::debug!(epoch = meta.epoch, exit = ?r.exit_code, error = %r.error, "a message failed");
        }
        // Receipts, with the ids of the distinct messages they belong to (in execution order).
        let mut seen = BTreeSet::new();
        let executed = tipset
            .blocks
            .iter()
            .flat_map(|b| b.messages.iter().map(Message::id))
            .filter(|id| seen.insert(*id));
        let receipts: TipsetReceipts = executed.zip(outcome.receipts).collect();
        self.blocks.put_receipts(&hash, &receipts)?;
        // Every header of the tipset passed the checks: with a twin that passed them too, a fault.
        for id in &ids {
            self.remember_valid(*id);
        }
        for (first, second) in twins {
            self.record_fault(first, second);
        }
        meta.post_root = Some(outcome.root);
        self.blocks.put_tipset(&meta)?;
        self.canonical.insert(meta.epoch, hash);
        self.tipsets.insert(hash, meta);
        self.set_head(hash);
        Ok(())
    }

    /// Checks, against the state the tipset `meta` (a child of the head, whose `blocks` these
    /// are) is about to be applied in, the other stored blocks of its slot by its miners (twins,
    /// stored because they could not be checked when received): a failing one is remembered as
    /// bad; a passing one is returned with the tipset's block by the same miner, a fault to
    /// record once the tipset's own headers pass.
    fn check_twins(
        &mut self,
        meta: &TipsetMeta,
        parent: &TipsetMeta,
        blocks: &[FullBlock],
    ) -> NodeResult<Vec<(BlockHeader, BlockHeader)>> {
        let slot = self
            .slots
            .get(&(meta.epoch, meta.parents.hash()))
            .cloned()
            .unwrap_or_default();
        let mut found = Vec::new();
        for other in &slot {
            if self.bad_blocks.contains_key(other) || meta.key.0.contains(other) {
                continue;
            }
            let Some(h) = self.blocks.header(other)? else {
                continue;
            };
            let Some(mine) = blocks.iter().find(|b| b.header.miner == h.miner) else {
                continue;
            };
            if !self.valid_headers.contains(other) {
                if let Err(why) = self.check_header(&h, parent, &self.nulls.after)? {
                    self.remember_bad(*other, why);
                    continue;
                }
                self.remember_valid(*other);
            }
            found.push((mine.header.clone(), h));
        }
        Ok(found)
    }

    /// The mining base at `epoch` (after the head): the state after the null rounds since the
    /// head, computed without committing it (see the module docs). Refused for an epoch not
    /// after the head, or more than [`MAX_NULL_ROUNDS`] null rounds after it.
    pub fn mining_base(&mut self, epoch: Epoch) -> NodeResult<MiningBase> {
        let head = self.head().clone();
        if epoch <= head.epoch {
            return Err(NodeError::InvalidBlock {
                epoch,
                why: format!("the head is already at epoch {}", head.epoch),
            });
        }
        let rounds = epoch.saturating_sub(head.epoch).saturating_sub(1);
        if rounds > MAX_NULL_ROUNDS {
            return Err(NodeError::InvalidBlock {
                epoch,
                why: format!(
                    "{rounds} null rounds after the head at epoch {}, more than the {MAX_NULL_ROUNDS} a mining base may follow; is the epoch right?",
                    head.epoch
                ),
            });
        }
        self.prepare_nulls(epoch)?;
        Ok(MiningBase {
            epoch,
            parents: head.key.clone(),
            parent_weight: head.weight.unwrap_or(0),
            parent_state_root: self.nulls.after.root(),
            beacon: self.beacon.beacon(&head.min_ticket, epoch),
            timestamp: self.genesis.slot_time(epoch),
            network_qa: self.network_qa_after_nulls()?,
        })
    }

    /// A miner's view at the mining base of `epoch`: its power, eligibility and sectors after the
    /// null rounds since the head; the messages come from the pool, checked against the head's
    /// accounts (null rounds run only cron, which moves no account's nonce or balance).
    pub fn miner_base(&mut self, miner_id: ActorId, epoch: Epoch) -> NodeResult<MinerBase> {
        let base = self.mining_base(epoch)?;
        let (miner_qa, ineligible, sectors) =
            self.chain.view_after(&self.nulls.after, |rt| {
                let qa = power::claim(rt, miner_id)?.map_or(0, |c| c.power.qa);
                let inel = miner::ineligibility(rt, miner_id).map_err(NodeError::Actor)?;
                let sectors = miner::active_sectors(rt, miner_id)
                    .map_err(NodeError::Actor)?
                    .into_iter()
                    .map(|s| SectorRef {
                        sector_number: s.sector_number,
                        comm_r: s.comm_r.0,
                    })
                    .collect();
                Ok::<_, NodeError>((qa, inel, sectors))
            })??;
        let messages = if ineligible.is_none() && miner_qa > 0 {
            self.select_messages()
        } else {
            Vec::new()
        };
        Ok(MinerBase {
            base,
            miner_qa,
            ineligible,
            sectors,
            messages,
        })
    }

    /// What `miner`'s prover needs at the head: its deadlines, partitions and challenges.
    pub fn proving_view(&self, miner_id: ActorId) -> NodeResult<ProvingView> {
        use lode_chain::actors::miner::{Deadline, DeadlineInfo};
        use lode_chain::runtime::RandomnessTag;
        let head_epoch = self.head_epoch();
        let policy = self.policy().clone();
        self.chain.view(|rt| {
            let info = miner::info(rt, miner_id).map_err(NodeError::Actor)?;
            let st = miner::load_state(rt, miner_id).map_err(NodeError::Actor)?;
            let mut deadlines = Vec::new();
            for (key, dl) in rt
                .state
                .scan::<Deadline>(&lode_chain::keys::deadline_prefix(miner_id))?
            {
                let Some(index) = lode_chain::keys::last_u64(&key) else {
                    continue;
                };
                if dl.partitions.is_empty() {
                    continue;
                }
                let di = DeadlineInfo::new(&policy, st.proving_period_start, index)
                    .next_not_elapsed(&policy, head_epoch.saturating_add(1));
                let randomness = if di.challenge <= head_epoch {
                    rt.randomness(
                        RandomnessTag::WindowPost,
                        di.challenge,
                        &miner_id.0.to_le_bytes(),
                    )
                    .ok()
                } else {
                    None
                };
                let mut partitions = Vec::new();
                for (i, p) in dl.partitions.iter().enumerate() {
                    let mut sectors = Vec::new();
                    for n in &p.sectors {
                        let Some(s) = rt
                            .state
                            .get::<miner::SectorOnChain>(&lode_chain::keys::sector(miner_id, *n))?
                        else {
                            return Err(NodeError::Corrupt("a partition names a missing sector"));
                        };
                        sectors.push(SectorRef {
                            sector_number: *n,
                            comm_r: s.comm_r,
                        });
                    }
                    partitions.push(PartitionView {
                        index: i as u64,
                        sectors,
                        faults: p.faults.iter().copied().collect(),
                        recoveries: p.recoveries.iter().copied().collect(),
                    });
                }
                // `posted` belongs to the window that is open now; a later instance starts empty.
                let posted = if di.is_open(head_epoch.saturating_add(1)) || di.is_open(head_epoch) {
                    dl.posted.iter().copied().collect()
                } else {
                    Vec::new()
                };
                deadlines.push(DeadlineView {
                    index,
                    open: di.open,
                    close: di.close,
                    challenge: di.challenge,
                    fault_cutoff: di.fault_cutoff,
                    randomness,
                    posted,
                    partitions,
                });
            }
            Ok(ProvingView {
                head_epoch,
                sector_size: info.sector_size,
                worker: info.worker,
                deadlines,
            })
        })
    }

    /// Checks a message against the head state and adds it to the mempool.
    pub fn push_message(&mut self, msg: SignedMessage) -> NodeResult<[u8; 32]> {
        let chain = &self.chain;
        let lookup = |a: &Address| account_in(chain, a);
        Ok(self.mempool.add(msg, chain.policy(), &lookup)?)
    }

    /// Messages for a block at the head, by gas price, at most `max_block_messages` and at most
    /// the policy's block gas limit in gas limits.
    pub fn select_messages(&self) -> Vec<SignedMessage> {
        let chain = &self.chain;
        let lookup = |a: &Address| account_in(chain, a);
        self.mempool.select(
            self.config.max_block_messages,
            chain.policy().block_gas_limit,
            &lookup,
        )
    }

    /// The sender's next nonce, counting its pending messages.
    pub fn next_nonce(&self, addr: &Address) -> Option<u64> {
        let a = self.account(addr)?;
        Some(self.mempool.next_nonce(a.id, a.nonce))
    }

    /// Answers a peer's sync request.
    pub fn serve(&self, req: &SyncRequest) -> SyncResponse {
        match self.serve_inner(req) {
            Ok(r) => r,
            Err(e) => SyncResponse::Error(e.to_string()),
        }
    }

    fn full_tipset(&self, meta: &TipsetMeta) -> NodeResult<FullTipset> {
        let mut blocks = Vec::new();
        for id in &meta.key.0 {
            blocks.push(
                self.blocks
                    .block(id)?
                    .ok_or_else(|| NodeError::UnknownTipset(hex::encode(id)))?,
            );
        }
        Ok(FullTipset { blocks })
    }

    fn serve_inner(&self, req: &SyncRequest) -> NodeResult<SyncResponse> {
        match req {
            SyncRequest::Status => Ok(SyncResponse::Status(self.status())),
            SyncRequest::Ancestors { head, count } => {
                let mut out = Vec::new();
                let mut at = head.hash();
                let count = (*count).min(MAX_SYNC_TIPSETS);
                while (out.len() as u64) < count {
                    let Some(m) = self.tipsets.get(&at) else {
                        break;
                    };
                    if m.key.is_genesis() || m.invalid.is_some() {
                        break;
                    }
                    out.push(self.full_tipset(m)?);
                    at = m.parents.hash();
                }
                Ok(SyncResponse::Tipsets(out))
            }
            SyncRequest::Range { from, count } => {
                let count = (*count).min(MAX_SYNC_TIPSETS);
                let end = from.saturating_add(count);
                let mut out = Vec::new();
                for (_, h) in self.canonical.range(*from..end) {
                    if let Some(m) = self.tipsets.get(h)
                        && !m.key.is_genesis()
                    {
                        out.push(self.full_tipset(m)?);
                    }
                }
                Ok(SyncResponse::Tipsets(out))
            }
        }
    }

    /// The canonical chain's tipset hashes from `from` (inclusive), oldest first.
    pub fn canonical_from(&self, from: Epoch) -> Vec<(Epoch, [u8; 32])> {
        self.canonical
            .range(from..)
            .map(|(e, h)| (*e, *h))
            .collect()
    }

    /// Whether `hash` is the genesis tipset.
    pub fn is_genesis(&self, hash: &[u8; 32]) -> bool {
        *hash == self.genesis_hash
    }

    /// Durably flushes the block store (the state store flushes on every commit).
    pub fn flush(&self) -> NodeResult<()> {
        self.blocks.flush()
    }

    /// A balance, or zero for an unknown address.
    pub fn balance(&self, addr: &Address) -> TokenAmount {
        self.chain.view(|rt| {
            rt.resolve(addr)
                .ok()
                .flatten()
                .and_then(|id| rt.actor(id).ok().flatten())
                .map_or(TokenAmount::ZERO, |a| a.balance)
        })
    }
}

#[cold]
fn unreachable_head() -> &'static TipsetMeta {
    static EMPTY: std::sync::OnceLock<TipsetMeta> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| TipsetMeta {
        key: TipsetKey::default(),
        epoch: 0,
        parents: TipsetKey::default(),
        min_ticket: [0; 32],
        wins: 0,
        claimed_parent_weight: 0,
        weight: Some(0),
        post_root: None,
        invalid: None,
    })
}

fn account_in(chain: &Chain, addr: &Address) -> Option<AccountState> {
    chain.view(|rt| {
        let id = rt.resolve(addr).ok().flatten()?;
        let a = rt.actor(id).ok().flatten()?;
        match a.kind {
            lode_chain::actor::ActorKind::Account { key } => Some(AccountState {
                id,
                key,
                nonce: a.nonce,
                balance: a.balance,
            }),
            _ => None,
        }
    })
}
