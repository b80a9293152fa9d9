//! The pipeline's chain steps one at a time, against a node whose answers the test sets: what
//! `SubmitPreCommit`, `SubmitProveCommit` and `WaitSeed` decide from the chain's pre-commits and
//! sectors and from a recorded message's receipt — done without sending, failed with the
//! receipt's error, waiting while pushing the same message again, a new message once the old one
//! is stale, failed for good when the pre-commit expired or the ticket is too old.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lode_chain::Policy;
use lode_chain::actors::miner::MinerMethod;
use lode_chain::crypto::SecretKey;
use lode_chain::message::{Method, SignedMessage};
use lode_chain::types::{ActorId, Address, Epoch, TokenAmount};
use lode_node::core::{BlockVerdict, MinerBase, ProvingView};
use lode_node::rpc::types::{HeadInfo, MessageLookupInfo, PreCommitView, ReceiptInfo, SectorInfo};
use lode_node::wire::FullBlock;
use lode_proofs::sector::SectorSize;
use lode_provider::pipeline::runner::{Pipeline, PipelineConfig, RESEND_AFTER, Step};
use lode_provider::pipeline::{
    Event, PipelineStore, RetryPolicy, SectorChain, SectorKind, SectorRecord, SectorState,
    SentMessage,
};
use lode_provider::poster::Messenger;
use lode_provider::tasks::config::Reserve;
use lode_provider::tasks::{SchedulerConfig, TaskKind, TaskState};
use lode_provider::{NodeApi, ProviderError, ProviderResult};

const MINER: ActorId = ActorId(1000);
const WORKER: ActorId = ActorId(101);
const COMM_R: [u8; 32] = [3; 32];

/// A node that answers from what the test sets and records every message pushed.
#[derive(Default)]
struct Chain {
    precommits: Mutex<Vec<PreCommitView>>,
    sectors: Mutex<Vec<SectorInfo>>,
    receipts: Mutex<HashMap<[u8; 32], MessageLookupInfo>>,
    pushed: Mutex<Vec<SignedMessage>>,
    /// The head's epoch, once the test sets one.
    head: Mutex<Option<Epoch>>,
}

impl Chain {
    fn pushed(&self) -> Vec<SignedMessage> {
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
            deadlines: Vec::new(),
        })
    }
    async fn push_message(&self, msg: SignedMessage) -> ProviderResult<[u8; 32]> {
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
}

fn precommit(n: u64, comm_r: [u8; 32], seed: Option<[u8; 32]>) -> PreCommitView {
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

fn sector(n: u64) -> SectorInfo {
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

fn receipt(exit_code: u32, error: &str) -> MessageLookupInfo {
    MessageLookupInfo {
        epoch: 21,
        tipset: Vec::new(),
        receipt: ReceiptInfo {
            exit_code,
            exit: if exit_code == 0 {
                "Ok"
            } else {
                "InsufficientFunds"
            }
            .into(),
            gas_used: 1,
            fee: TokenAmount::ZERO,
            return_data: Vec::new(),
            error: error.into(),
        },
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    chain: Arc<Chain>,
    p: Pipeline<Chain>,
}

fn setup() -> Setup {
    setup_with(RetryPolicy::default(), None)
}

/// A pipeline whose failures `retry` judges, its scheduler configured by `tasks` (the default
/// when `None`).
fn setup_with(retry: RetryPolicy, tasks: Option<SchedulerConfig>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let chain = Arc::new(Chain::default());
    let policy = Policy::devnet();
    let p = Pipeline::new(
        chain.clone(),
        PipelineStore::open(&dir.path().join("db")).unwrap(),
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
            store_dir: dir.path().join("sectors"),
            cache_dir: dir.path().join("cache"),
            ticket_depth: 2,
            seed_confidence: 2,
            expiration_margin: 20,
            retry,
        },
    );
    let p = match tasks {
        Some(t) => p.with_tasks(&t),
        None => p,
    };
    Setup {
        _dir: dir,
        chain,
        p,
    }
}

/// A sector moved to `state` (by `Done` events) with commitments and a ticket recorded.
fn sector_in(s: &Setup, state: SectorState) -> SectorRecord {
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

fn with_sent(s: &Setup, r: &SectorRecord, pre: bool, id: [u8; 32], sent_at: u64) -> SectorRecord {
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

fn is_done(step: &Step) -> bool {
    matches!(step, Step::Apply(Event::Done, _))
}

fn failure(step: &Step) -> (String, bool) {
    match step {
        Step::Apply(Event::Failed { reason, retry }, _) => (reason.clone(), *retry),
        other => panic!("not a failure: {other:?}"),
    }
}

#[tokio::test]
async fn a_pre_commit_already_on_chain_is_done_without_a_message() {
    let s = setup();
    let r = sector_in(&s, SectorState::SubmitPreCommit);
    s.chain
        .precommits
        .lock()
        .unwrap()
        .push(precommit(r.number, COMM_R, None));
    assert!(is_done(&s.p.step(&r, 25).await.unwrap()));
    // Already proven: done too.
    s.chain.precommits.lock().unwrap().clear();
    s.chain.sectors.lock().unwrap().push(sector(r.number));
    assert!(is_done(&s.p.step(&r, 25).await.unwrap()));
    assert!(s.chain.pushed().is_empty());
    // Another pre-commit under the same number: failed for good.
    s.chain.sectors.lock().unwrap().clear();
    s.chain
        .precommits
        .lock()
        .unwrap()
        .push(precommit(r.number, [9; 32], None));
    let (reason, retry) = failure(&s.p.step(&r, 25).await.unwrap());
    assert!(!retry && reason.contains("another pre-commit"), "{reason}");
    assert!(s.chain.pushed().is_empty());
}

#[tokio::test]
async fn a_pre_commit_is_recorded_before_it_is_pushed_and_pushed_again_while_pending() {
    let s = setup();
    let r = sector_in(&s, SectorState::SubmitPreCommit);
    let step = s.p.step(&r, 10).await.unwrap();
    assert!(matches!(step, Step::Wait(_)), "{step:?}");
    let pushed = s.chain.pushed();
    assert_eq!(pushed.len(), 1);
    let Method::Miner(MinerMethod::PreCommitSectors(infos)) = &pushed[0].message.method else {
        panic!("{:?}", pushed[0].message.method);
    };
    assert_eq!(infos.len(), 1);
    assert_eq!(
        (
            infos[0].sector_number,
            infos[0].comm_r,
            infos[0].seal_rand_epoch
        ),
        (r.number, COMM_R, 8)
    );
    let p = Policy::devnet();
    assert!(infos[0].expiration >= 11 + p.max_prove_commit_duration + p.min_sector_expiration);
    // Recorded, with the message that was pushed.
    let r = s.p.store().get(r.number).unwrap().unwrap();
    let sent = r.chain.pre_commit.clone().unwrap();
    assert_eq!((sent.id, sent.sent_at), (pushed[0].id(), 10));
    // Not executed yet: wait, pushing the same message again (no new one).
    let step = s.p.step(&r, 12).await.unwrap();
    assert!(matches!(step, Step::Wait(_)), "{step:?}");
    let again = s.chain.pushed();
    assert_eq!(again.len(), 2);
    assert_eq!(again[1], pushed[0]);
    // Executed: done.
    s.chain
        .receipts
        .lock()
        .unwrap()
        .insert(sent.id, receipt(0, ""));
    assert!(is_done(&s.p.step(&r, 13).await.unwrap()));
    assert_eq!(s.chain.pushed().len(), 2);
}

#[tokio::test]
async fn a_failed_pre_commit_fails_with_the_receipts_error_and_forgets_the_message() {
    let s = setup();
    let r = sector_in(&s, SectorState::SubmitPreCommit);
    let r = with_sent(&s, &r, true, [7; 32], 10);
    s.chain.receipts.lock().unwrap().insert(
        [7; 32],
        receipt(6, "pre-commit deposits need 5, but only 1 is available"),
    );
    let step = s.p.step(&r, 12).await.unwrap();
    let (reason, retry) = failure(&step);
    assert!(retry && reason.contains("only 1 is available"), "{reason}");
    let Step::Apply(_, Some(chain)) = step else {
        panic!("{step:?}")
    };
    assert!(chain.pre_commit.is_none(), "the retry sends a new message");
    assert!(s.chain.pushed().is_empty());
}

#[tokio::test]
async fn a_stale_message_is_replaced_only_while_the_chain_lacks_the_pre_commit() {
    let s = setup();
    let r = sector_in(&s, SectorState::SubmitPreCommit);
    let r = with_sent(&s, &r, true, [7; 32], 10);
    // Stale, but the pre-commit is on chain (the old message landed under another id view).
    s.chain
        .precommits
        .lock()
        .unwrap()
        .push(precommit(r.number, COMM_R, None));
    assert!(is_done(&s.p.step(&r, 10 + RESEND_AFTER).await.unwrap()));
    assert!(s.chain.pushed().is_empty());
    // Not on chain: a new message, recorded in place of the old one.
    s.chain.precommits.lock().unwrap().clear();
    let step = s.p.step(&r, 10 + RESEND_AFTER).await.unwrap();
    assert!(matches!(step, Step::Wait(_)), "{step:?}");
    let pushed = s.chain.pushed();
    assert_eq!(pushed.len(), 1);
    let sent =
        s.p.store()
            .get(r.number)
            .unwrap()
            .unwrap()
            .chain
            .pre_commit
            .unwrap();
    assert_eq!((sent.id, sent.sent_at), (pushed[0].id(), 10 + RESEND_AFTER));
}

#[tokio::test]
async fn a_ticket_too_old_fails_for_good() {
    let s = setup();
    let r = sector_in(&s, SectorState::SubmitPreCommit);
    let head = 8 + Policy::devnet().max_pre_commit_randomness_lookback;
    let (reason, retry) = failure(&s.p.step(&r, head).await.unwrap());
    assert!(!retry && reason.contains("too old"), "{reason}");
    assert!(s.chain.pushed().is_empty());
}

#[tokio::test]
async fn wait_seed_waits_for_the_seed_and_fails_when_the_pre_commit_is_gone() {
    let s = setup();
    let r = sector_in(&s, SectorState::WaitSeed);
    s.chain
        .precommits
        .lock()
        .unwrap()
        .push(precommit(r.number, COMM_R, None));
    assert!(matches!(s.p.step(&r, 30).await.unwrap(), Step::Wait(_)));
    // Past prove_by without a seed: expired.
    let (_, retry) = failure(&s.p.step(&r, 201).await.unwrap());
    assert!(!retry);
    // The seed, not deep enough yet (seed epoch 32, confidence 2): wait.
    s.chain.precommits.lock().unwrap()[0].seed = Some([5; 32]);
    assert!(matches!(s.p.step(&r, 33).await.unwrap(), Step::Wait(_)));
    // Deep enough: done, and recorded.
    let step = s.p.step(&r, 34).await.unwrap();
    let Step::Apply(Event::Done, Some(chain)) = step else {
        panic!("{step:?}")
    };
    assert_eq!(chain.seed, Some([5; 32]));
    // Gone from the chain: failed for good.
    s.chain.precommits.lock().unwrap().clear();
    let (reason, retry) = failure(&s.p.step(&r, 40).await.unwrap());
    assert!(!retry && reason.contains("no longer on chain"), "{reason}");
}

#[tokio::test]
async fn a_prove_commit_is_done_once_the_chain_has_the_sector() {
    let s = setup();
    let r = sector_in(&s, SectorState::SubmitProveCommit);
    // A recorded message that failed: failed with its error, retried with a new message.
    let r = with_sent(&s, &r, false, [8; 32], 40);
    s.chain
        .receipts
        .lock()
        .unwrap()
        .insert([8; 32], receipt(16, "sector 5: PoRep rejected"));
    let (reason, retry) = failure(&s.p.step(&r, 42).await.unwrap());
    assert!(retry && reason.contains("PoRep rejected"), "{reason}");
    // The sector on chain: done whatever the message says.
    s.chain.sectors.lock().unwrap().push(sector(r.number));
    assert!(is_done(&s.p.step(&r, 42).await.unwrap()));
    assert!(s.chain.pushed().is_empty());
}

#[tokio::test]
async fn a_failure_state_is_retried_once_its_back_off_passed() {
    let s = setup();
    let r = sector_in(&s, SectorState::SubmitPreCommit);
    let store = s.p.store();
    let failed = store
        .apply(
            r.number,
            r.version,
            &Event::Failed {
                reason: "x".into(),
                retry: true,
            },
            0,
            &RetryPolicy::default(),
        )
        .unwrap();
    assert_eq!(failed.state(), SectorState::PreCommitFailed);
    // Failed at unix time 0 with a 10 s back-off: due long ago.
    assert_eq!(
        s.p.step(&failed, 50).await.unwrap(),
        Step::Apply(Event::Retry, None)
    );
    let later = store
        .apply(
            failed.number,
            failed.version,
            &Event::Retry,
            lode_node::genesis::unix_now(),
            &RetryPolicy::default(),
        )
        .unwrap();
    let again = store
        .apply(
            later.number,
            later.version,
            &Event::Failed {
                reason: "y".into(),
                retry: true,
            },
            lode_node::genesis::unix_now(),
            &RetryPolicy::default(),
        )
        .unwrap();
    assert!(matches!(s.p.step(&again, 50).await.unwrap(), Step::Wait(_)));
}

#[tokio::test]
async fn the_seal_ticket_is_recorded_before_pre_commit1_and_redrawn_when_too_old() {
    let s = setup();
    let store = s.p.store();
    let mut r = store.create(SectorKind::CommittedCapacity, 5, 0).unwrap();
    while r.state() != SectorState::PreCommit1 {
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
    let step = s.p.step(&r, 50).await.unwrap();
    assert!(matches!(step, Step::Wait(_)), "{step:?}");
    let r = store.get(r.number).unwrap().unwrap();
    assert_eq!(r.state(), SectorState::PreCommit1);
    assert_eq!(
        (r.chain.seal_rand_epoch, r.chain.ticket),
        (Some(48), Some([1; 32]))
    );
    // Half the lookback later the ticket is redrawn (not sealed with).
    let later = 48 + Policy::devnet().max_pre_commit_randomness_lookback / 2;
    let step = s.p.step(&r, later).await.unwrap();
    assert!(matches!(step, Step::Wait(_)), "{step:?}");
    let r = store.get(r.number).unwrap().unwrap();
    assert_eq!(r.chain.seal_rand_epoch, Some(later - 2));
}

#[test]
fn the_default_ticket_leaves_time_to_seal_before_the_lookback() {
    for policy in [Policy::devnet(), Policy::mainnet()] {
        let c = PipelineConfig::new(MINER, SectorSize::S2KiB, "s".into(), "c".into(), &policy);
        // PreCommit1 keeps a ticket up to half the lookback old: the default one is younger.
        assert!(c.ticket_depth < policy.max_pre_commit_randomness_lookback / 2);
        assert!(c.expiration_margin >= RESEND_AFTER);
    }
}

/// Sectors moved to `state` by `Done` events, without chain bookkeeping.
fn plain_sectors(s: &Setup, n: usize, state: SectorState) -> Vec<SectorRecord> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_sectors_seal_at_once_oldest_first_within_the_limits() {
    let mut tasks = SchedulerConfig {
        cores: Some(4),
        post_reserve: Some(Reserve {
            cores: 1,
            ..Reserve::default()
        }),
        ..SchedulerConfig::default()
    };
    tasks.limits.set(TaskKind::PreCommit1, Some(2));
    let s = setup_with(RetryPolicy::default(), Some(tasks));
    *s.chain.head.lock().unwrap() = Some(50);
    let store = s.p.store();
    let sectors: Vec<u64> = plain_sectors(&s, 3, SectorState::PreCommit1)
        .iter()
        .map(|r| r.number)
        .collect();
    // The first tick draws each sector's ticket (inline: a chain step).
    assert!(s.p.tick().await.unwrap().is_empty());
    assert!(s.p.scheduler().list().unwrap().is_empty());
    // The next one queues a PreCommit1 per sector and starts two (the limit), the oldest.
    assert!(s.p.tick().await.unwrap().is_empty());
    let views = s.p.scheduler().list().unwrap();
    let by_state = |st: TaskState| -> Vec<u64> {
        views
            .iter()
            .filter(|v| v.state == st)
            .map(|v| v.sector.unwrap())
            .collect()
    };
    assert_eq!(by_state(TaskState::Running), sectors[..2].to_vec());
    assert_eq!(by_state(TaskState::Queued), sectors[2..].to_vec());
    let moved = s.p.wait_tasks().await;
    let mut numbers: Vec<u64> = moved.iter().map(|t| t.number).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, sectors[..2].to_vec());
    assert!(
        moved
            .iter()
            .all(|t| (t.from, t.to) == (SectorState::PreCommit1, SectorState::PreCommit2))
    );
    // Next, by sector number: the oldest sector's PreCommit2 (four cores, clamped to the three
    // of sealing) takes the whole sealing share; the third sector's PreCommit1 waits for it.
    assert!(s.p.tick().await.unwrap().is_empty());
    let moved = s.p.wait_tasks().await;
    assert_eq!(moved.len(), 1);
    assert_eq!(
        (moved[0].number, moved[0].from),
        (sectors[0], SectorState::PreCommit2)
    );
    for _ in 0..4 {
        s.p.tick().await.unwrap();
        s.p.wait_tasks().await;
    }
    for n in &sectors {
        let r = store.get(*n).unwrap().unwrap();
        assert!(
            r.chain.comm_d.is_some() && r.chain.comm_r.is_some(),
            "{r:?}"
        );
    }
    let views = s.p.scheduler().list().unwrap();
    let pc1: Vec<_> = views
        .iter()
        .filter(|v| v.kind == TaskKind::PreCommit1)
        .collect();
    assert_eq!(pc1.len(), 3);
    assert!(views.iter().all(|v| v.state == TaskState::Done));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phase_out_of_retries_fails_its_task_and_its_sector_together() {
    let retry = RetryPolicy {
        max_retries: 1,
        base_seconds: 0,
        max_seconds: 0,
    };
    let s = setup_with(retry, None);
    *s.chain.head.lock().unwrap() = Some(50);
    // Finalize of a sector whose directory is not there: it fails every time.
    let n = plain_sectors(&s, 1, SectorState::Finalize)[0].number;
    let mut seen = Vec::new();
    for _ in 0..6 {
        let mut moved = s.p.tick().await.unwrap();
        moved.extend(s.p.wait_tasks().await);
        seen.extend(moved.iter().map(|t| t.to));
    }
    use SectorState::*;
    assert_eq!(
        seen,
        vec![FinalizeFailed, Finalize, FailedUnrecoverable],
        "one failure retried, the second out of retries"
    );
    let r = s.p.store().get(n).unwrap().unwrap();
    let reason = r.progress.last_error.clone().unwrap();
    let views = s.p.scheduler().list().unwrap();
    assert_eq!(views.len(), 2);
    for v in &views {
        assert_eq!(
            (v.kind, v.state, v.sector),
            (TaskKind::Finalize, TaskState::Failed, Some(n))
        );
        assert_eq!(v.error.as_deref(), Some(reason.as_str()));
    }
    // Nothing more is queued for it.
    assert!(s.p.tick().await.unwrap().is_empty());
    assert_eq!(s.p.scheduler().counts().unwrap(), (0, 0));
}
