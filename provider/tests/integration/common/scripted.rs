//! The fake node the pipeline's step tests script, and helpers to put sectors where a test
//! needs them.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lode_chain::Policy;
use lode_chain::crypto::SecretKey;
use lode_chain::message::SignedMessage;
use lode_chain::types::{ActorId, Address, Epoch, TokenAmount};
use lode_node::core::{BlockVerdict, MinerBase, ProvingView};
use lode_node::rpc::types::{HeadInfo, MessageLookupInfo, PreCommitView, ReceiptInfo, SectorInfo};
use lode_node::wire::FullBlock;
use lode_proofs::sector::SectorSize;
use lode_provider::pipeline::kv::Records;
use lode_provider::pipeline::runner::{Pipeline, PipelineConfig, Step};
use lode_provider::pipeline::{
    Event, PipelineStore, RetryPolicy, SectorChain, SectorKind, SectorRecord, SectorState,
    SentMessage,
};
use lode_provider::poster::Messenger;
use lode_provider::tasks::SchedulerConfig;
use lode_provider::{NodeApi, ProviderError, ProviderResult};

pub const MINER: ActorId = ActorId(1000);
pub const WORKER: ActorId = ActorId(101);
pub const COMM_R: [u8; 32] = [3; 32];

/// A node that answers from what the test sets and records every message pushed.
#[derive(Default)]
pub struct Chain {
    pub precommits: Mutex<Vec<PreCommitView>>,
    pub sectors: Mutex<Vec<SectorInfo>>,
    pub receipts: Mutex<HashMap<[u8; 32], MessageLookupInfo>>,
    pub pushed: Mutex<Vec<SignedMessage>>,
    /// The head's epoch, once the test sets one.
    pub head: Mutex<Option<Epoch>>,
    /// The miner's deadlines, as `proving_view` reports them.
    pub deadlines: Mutex<Vec<lode_node::core::DeadlineView>>,
    /// Whether pushes are refused (the message is then not recorded as pushed).
    pub refuse: Mutex<bool>,
    /// The market's deals, when the test makes the node answer deal queries (`None`: it does
    /// not, as a node API without them).
    pub deals: Mutex<Option<HashMap<u64, lode_chain::actors::market::Deal>>>,
    /// How many times the miner's sectors were asked for.
    pub sector_queries: std::sync::atomic::AtomicUsize,
}

impl Chain {
    pub fn pushed(&self) -> Vec<SignedMessage> {
        self.pushed.lock().unwrap().clone()
    }
}

impl NodeApi for Chain {
    async fn miner_base(&self, _: ActorId, _: Epoch) -> ProviderResult<MinerBase> {
        Err(ProviderError::Node("not in this test".into()))
    }
    async fn submit_block(&self, _: FullBlock) -> ProviderResult<BlockVerdict> {
        Err(ProviderError::Node("not in this test".into()))
    }
    async fn proving_view(&self, _: ActorId) -> ProviderResult<ProvingView> {
        Ok(ProvingView {
            head_epoch: 0,
            sector_size: SectorSize::S2KiB,
            worker: WORKER,
            deadlines: self.deadlines.lock().unwrap().clone(),
        })
    }
    async fn push_message(&self, msg: SignedMessage) -> ProviderResult<[u8; 32]> {
        if *self.refuse.lock().unwrap() {
            return Err(ProviderError::Node("the node is down".into()));
        }
        let id = msg.id();
        self.pushed.lock().unwrap().push(msg);
        Ok(id)
    }
    async fn next_nonce(&self, _: Address) -> ProviderResult<u64> {
        Ok(self.pushed.lock().unwrap().len() as u64)
    }
    async fn chain_head(&self) -> ProviderResult<HeadInfo> {
        match *self.head.lock().unwrap() {
            Some(epoch) => Ok(HeadInfo {
                epoch,
                key: Vec::new(),
                weight: 0,
                parent_state_root: None,
                state_root: None,
            }),
            None => Err(ProviderError::Node("not in this test".into())),
        }
    }
    async fn miner_sectors(&self, _: ActorId) -> ProviderResult<Vec<SectorInfo>> {
        self.sector_queries
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self.sectors.lock().unwrap().clone())
    }
    async fn miner_precommits(&self, _: ActorId) -> ProviderResult<Vec<PreCommitView>> {
        Ok(self.precommits.lock().unwrap().clone())
    }
    async fn seal_ticket(&self, _: ActorId, _: Epoch) -> ProviderResult<[u8; 32]> {
        Ok([1; 32])
    }
    async fn search_message(&self, id: [u8; 32]) -> ProviderResult<Option<MessageLookupInfo>> {
        Ok(self.receipts.lock().unwrap().get(&id).cloned())
    }
    async fn market_deal(&self, id: u64) -> ProviderResult<lode_provider::DealLookup> {
        use lode_provider::DealLookup;
        Ok(match &*self.deals.lock().unwrap() {
            None => DealLookup::NotReported,
            Some(deals) => deals.get(&id).map_or(DealLookup::Absent, |d| {
                DealLookup::Found(Box::new(d.clone()))
            }),
        })
    }
}

pub fn precommit(n: u64, comm_r: [u8; 32], seed: Option<[u8; 32]>) -> PreCommitView {
    PreCommitView {
        sector_number: n,
        comm_r,
        comm_d: [0; 32],
        deal_ids: Vec::new(),
        expiration: 100_000,
        seal_rand_epoch: 8,
        ticket: [1; 32],
        epoch: 20,
        deposit: TokenAmount::tokens(1),
        seed_epoch: 32,
        seed,
        prove_by: 200,
    }
}

pub fn sector(n: u64) -> SectorInfo {
    SectorInfo {
        sector_number: n,
        comm_r: COMM_R,
        status: "unproven".into(),
        activation: 40,
        expiration: 100_000,
        deal_ids: Vec::new(),
        deal_weight: 0,
        verified_deal_weight: 0,
        initial_pledge: TokenAmount::ZERO,
        deadline: 0,
        partition: 0,
    }
}

pub fn receipt(exit_code: u32, error: &str) -> MessageLookupInfo {
    MessageLookupInfo {
        epoch: 21,
        tipset: Vec::new(),
        receipt: ReceiptInfo {
            exit_code,
            exit: match exit_code {
                0 => "Ok",
                7 => "SysOutOfGas",
                21 => "InvalidProof",
                _ => "InsufficientFunds",
            }
            .into(),
            gas_used: 1,
            fee: TokenAmount::ZERO,
            return_data: Vec::new(),
            error: error.into(),
        },
    }
}

pub struct Setup {
    pub _dir: tempfile::TempDir,
    pub chain: Arc<Chain>,
    pub p: Pipeline<Chain>,
}

pub fn setup() -> Setup {
    setup_with(RetryPolicy::default(), None)
}

/// A pipeline whose failures `retry` judges, its scheduler configured by `tasks` (the default
/// when `None`).
pub fn setup_with(retry: RetryPolicy, tasks: Option<SchedulerConfig>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let chain = Arc::new(Chain::default());
    let p = pipeline_in(dir.path(), chain.clone(), retry, tasks, 0);
    Setup {
        _dir: dir,
        chain,
        p,
    }
}

/// The pipeline of a [`Setup`] over the records in `dir` and the node `chain`, its sectors
/// sharing a message when ready within `batch_wait_epochs` (batches of at most 16).
pub fn pipeline_in(
    dir: &std::path::Path,
    chain: Arc<Chain>,
    retry: RetryPolicy,
    tasks: Option<SchedulerConfig>,
    batch_wait_epochs: Epoch,
) -> Pipeline<Chain> {
    let store = PipelineStore::open(&dir.join("db")).unwrap();
    pipeline_over(store, dir, chain, retry, tasks, batch_wait_epochs)
}

/// [`setup_with`] with the pipeline's records in `records` (the cluster's database) rather than
/// in an embedded database.
pub fn setup_over(records: Records, retry: RetryPolicy) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let chain = Arc::new(Chain::default());
    let store = PipelineStore::new(records);
    let p = pipeline_over(store, dir.path(), chain.clone(), retry, None, 0);
    Setup {
        _dir: dir,
        chain,
        p,
    }
}

/// [`pipeline_in`] over `store`.
pub fn pipeline_over(
    store: PipelineStore,
    dir: &std::path::Path,
    chain: Arc<Chain>,
    retry: RetryPolicy,
    tasks: Option<SchedulerConfig>,
    batch_wait_epochs: Epoch,
) -> Pipeline<Chain> {
    let policy = Policy::devnet();
    let p = Pipeline::new(
        chain,
        store,
        Arc::new(Messenger::new(
            MINER,
            SecretKey::from_seed(&[20; 32]),
            policy.clone(),
        )),
        lode_testkit::harness::unused_params(),
        policy,
        PipelineConfig {
            miner: MINER,
            size: SectorSize::S2KiB,
            store_dir: dir.join("sectors"),
            scratch_dir: dir.join("scratch"),
            keep_unsealed: false,
            keep_unsealed_deals: true,
            wait_deals_epochs: 30,
            deal_start_margin_epochs: 40,
            cache_dir: dir.join("cache"),
            ticket_depth: 2,
            seed_confidence: 2,
            expiration_margin: 20,
            retry,
            batch_wait_epochs,
            max_batch: 16,
        },
    );
    match tasks {
        Some(t) => p.with_tasks(&t),
        None => p,
    }
}

/// The same pipeline started again over its records (what a restart of the provider does).
pub fn restart(s: Setup) -> Setup {
    let Setup { _dir, chain, p } = s;
    drop(p);
    let p = pipeline_in(_dir.path(), chain.clone(), RetryPolicy::default(), None, 0);
    Setup { _dir, chain, p }
}

/// A sector moved to `state` (by `Done` events) with commitments and a ticket recorded.
pub fn sector_in(s: &Setup, state: SectorState) -> SectorRecord {
    let store = s.p.store();
    let mut r = store.create(SectorKind::CommittedCapacity, 5, 0).unwrap();
    while r.state() != state {
        r = store
            .apply(
                r.number,
                r.version,
                &Event::Done,
                0,
                &RetryPolicy::default(),
            )
            .unwrap();
    }
    let chain = SectorChain {
        seal_rand_epoch: Some(8),
        ticket: Some([1; 32]),
        comm_d: Some([0; 32]),
        comm_r: Some(COMM_R),
        seed: Some([2; 32]),
        ..SectorChain::default()
    };
    store.record_chain(r.number, r.version, chain, 0).unwrap()
}

pub fn with_sent(
    s: &Setup,
    r: &SectorRecord,
    pre: bool,
    id: [u8; 32],
    sent_at: u64,
) -> SectorRecord {
    let mut chain = r.chain.clone();
    let sent = Some(SentMessage {
        id,
        sent_at,
        signed: Vec::new(),
    });
    if pre {
        chain.pre_commit = sent;
    } else {
        chain.prove_commit = sent;
    }
    s.p.store()
        .record_chain(r.number, r.version, chain, 0)
        .unwrap()
}

pub fn is_done(step: &Step) -> bool {
    matches!(step, Step::Apply(Event::Done, _))
}

pub fn failure(step: &Step) -> (String, bool) {
    match step {
        Step::Apply(Event::Failed { reason, retry }, _) => (reason.clone(), *retry),
        other => panic!("not a failure: {other:?}"),
    }
}

/// Sectors moved to `state` by `Done` events, without chain bookkeeping.
pub fn plain_sectors(s: &Setup, n: usize, state: SectorState) -> Vec<SectorRecord> {
    let store = s.p.store();
    (0..n)
        .map(|_| {
            let mut r = store.create(SectorKind::CommittedCapacity, 5, 0).unwrap();
            while r.state() != state {
                r = store
                    .apply(
                        r.number,
                        r.version,
                        &Event::Done,
                        0,
                        &RetryPolicy::default(),
                    )
                    .unwrap();
            }
            r
        })
        .collect()
}

/// Deterministic payload bytes.
pub fn payload_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    let mut out = vec![0u8; len];
    h.finalize_xof().fill(&mut out);
    out
}

/// The CommP of `payload` zero-filled to a piece of `piece_size` padded bytes.
pub fn piece_comm_p(payload: &[u8], piece_size: u64) -> [u8; 32] {
    let size = lode_proofs::piece::PaddedPieceSize::new(piece_size).unwrap();
    let mut filled = payload.to_vec();
    filled.resize(size.unpadded() as usize, 0);
    lode_proofs::piece::commp_of_bytes(&filled)
        .unwrap()
        .comm_p
        .0
}

/// A proposal for `payload` as a piece of `piece_size`, with provider `MINER`.
pub fn proposal_for(
    payload: &[u8],
    piece_size: u64,
    start_epoch: Epoch,
    end_epoch: Epoch,
) -> lode_chain::actors::market::DealProposal {
    lode_chain::actors::market::DealProposal {
        piece_cid: piece_comm_p(payload, piece_size),
        piece_size,
        verified: false,
        client: ActorId(2000),
        provider: MINER,
        label: "test".into(),
        start_epoch,
        end_epoch,
        price_per_epoch: TokenAmount::atto(1000),
        provider_collateral: TokenAmount::ZERO,
        client_collateral: TokenAmount::ZERO,
    }
}

/// Deal `id`'s piece: `len` payload bytes written to `<dir>/payload-<id>`, as a piece of
/// `piece_size` starting at `start_epoch` (ending 50,000 epochs later).
pub fn deal_piece(
    dir: &std::path::Path,
    id: u64,
    len: usize,
    piece_size: u64,
    start_epoch: Epoch,
) -> lode_provider::pipeline::DealPiece {
    let bytes = payload_bytes(len, id);
    let path = dir.join(format!("payload-{id}"));
    std::fs::write(&path, &bytes).unwrap();
    lode_provider::pipeline::DealPiece {
        deal_id: id,
        proposal: proposal_for(&bytes, piece_size, start_epoch, start_epoch + 50_000),
        payload: path,
        payload_size: len as u64,
    }
}

/// A published, not yet active deal for `piece` (what the node's market holds).
pub fn published(piece: &lode_provider::pipeline::DealPiece) -> lode_chain::actors::market::Deal {
    lode_chain::actors::market::Deal {
        proposal: piece.proposal.clone(),
        state: lode_chain::actors::market::DealState::default(),
    }
}
