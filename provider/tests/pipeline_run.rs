//! The sealing pipeline against a real in-process node: a committed-capacity 2 KiB sector sealed
//! for real (PreCommit1/2, Commit1, Commit2 with the insecure test parameters), pre-committed and
//! prove-committed through the node's mempool into blocks this test mines (the chain checks the
//! PoRep with the real verifier; blocks and Window PoSts use the test's fake proofs), until the
//! pipeline reports `Proving` and the chain lists the sector. Then the same with the pipeline
//! dropped and rebuilt from its store after every step, a push lost after its message was recorded
//! (a crash between the two), a push that reached the node but reported a failure, and a record
//! that lost its message id: exactly one pre-commit and one prove-commit reach the node, one
//! deposit is locked and then released, and the sector still reaches `Proving`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bls12_381::Bls12;
use lode_chain::Genesis;
use lode_chain::Policy;
use lode_chain::actors::miner::MinerMethod;
use lode_chain::crypto::SecretKey;
use lode_chain::genesis::{GenesisMiner, GenesisSector};
use lode_chain::message::{Method, SignedMessage};
use lode_chain::types::{ActorId, Address, Epoch, TokenAmount};
use lode_node::core::{BlockVerdict, CoreConfig, MinerBase, ProvingView};
use lode_node::genesis::{GenesisFile, unix_now};
use lode_node::rpc::types::{HeadInfo, MessageLookupInfo, PreCommitView, SectorInfo};
use lode_node::service::{NodeConfig, NodeService};
use lode_node::wire::FullBlock;
use lode_proofs::porep::PorepPublic;
use lode_proofs::sector::SectorSize;
use lode_proofs::verifier::{
    ProofVerifier, SnarkVerifier, VerifyError, WindowPostStatement, WinningPostStatement,
};
use lode_provider::pipeline::runner::{Pipeline, PipelineConfig, run_pipeline};
use lode_provider::pipeline::{PipelineStore, RetryPolicy, SectorChain, SectorState};
use lode_provider::poster::Messenger;
use lode_provider::prover::SectorStore;
use lode_provider::{NodeApi, ProviderError, ProviderResult};
use lode_testkit::harness::FakeVerifier;
use lode_testkit::mining::{make_block, push_window_posts};

const LIMIT: Duration = Duration::from_secs(900);

fn worker_key() -> SecretKey {
    SecretKey::from_seed(&[20; 32])
}

/// The real PoRep verifier (the test parameters' key); fake Window and Winning PoSts.
struct SealVerifier(SnarkVerifier);

impl ProofVerifier for SealVerifier {
    fn verify_seal(&self, public: &PorepPublic, proofs: &[Vec<u8>]) -> Result<(), VerifyError> {
        self.0.verify_seal(public, proofs)
    }
    fn verify_window_post(&self, s: &WindowPostStatement, proof: &[u8]) -> Result<(), VerifyError> {
        FakeVerifier.verify_window_post(s, proof)
    }
    fn verify_winning_post(
        &self,
        s: &WinningPostStatement,
        proof: &[u8],
    ) -> Result<(), VerifyError> {
        FakeVerifier.verify_winning_post(s, proof)
    }
}

fn porep_params() -> Arc<groth16::Parameters<Bls12>> {
    static P: OnceLock<Arc<groth16::Parameters<Bls12>>> = OnceLock::new();
    P.get_or_init(|| {
        use lode_proofs::circuit::porep::{self as porep_circuit, PorepCircuit};
        let size = SectorSize::S2KiB;
        Arc::new(
            lode_testkit::harness::test_params()
                .get_or_generate_insecure(&porep_circuit::params_id(size), || PorepCircuit {
                    size,
                    witness: None,
                })
                .unwrap()
                .0,
        )
    })
    .clone()
}

/// What the next push does (a crash at the moment of pushing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PushFault {
    /// Forwarded.
    None,
    /// Lost: the process died after recording the message, before pushing it.
    Lose,
    /// Forwarded, but the caller hears an error (it died as the node took it).
    ForwardThenFail,
}

/// The node, with pushes that can fail as a crash would, and every message that reached it.
struct Node {
    svc: NodeService,
    fault: Mutex<PushFault>,
    forwarded: Mutex<Vec<SignedMessage>>,
}

impl Node {
    fn set_fault(&self, f: PushFault) {
        *self.fault.lock().unwrap() = f;
    }
    /// Distinct ids of forwarded messages of the kind `pick` selects.
    fn forwarded_ids(&self, pick: fn(&MinerMethod) -> bool) -> BTreeSet<[u8; 32]> {
        self.forwarded
            .lock()
            .unwrap()
            .iter()
            .filter(|m| matches!(&m.message.method, Method::Miner(mm) if pick(mm)))
            .map(|m| m.id())
            .collect()
    }
}

impl NodeApi for Node {
    async fn miner_base(&self, miner: ActorId, epoch: Epoch) -> ProviderResult<MinerBase> {
        NodeApi::miner_base(&self.svc, miner, epoch).await
    }
    async fn submit_block(&self, block: FullBlock) -> ProviderResult<BlockVerdict> {
        NodeApi::submit_block(&self.svc, block).await
    }
    async fn proving_view(&self, miner: ActorId) -> ProviderResult<ProvingView> {
        NodeApi::proving_view(&self.svc, miner).await
    }
    async fn push_message(&self, msg: SignedMessage) -> ProviderResult<[u8; 32]> {
        let fault = std::mem::replace(&mut *self.fault.lock().unwrap(), PushFault::None);
        match fault {
            PushFault::Lose => Err(ProviderError::Node("crashed before the push".into())),
            PushFault::None | PushFault::ForwardThenFail => {
                self.forwarded.lock().unwrap().push(msg.clone());
                let r = NodeApi::push_message(&self.svc, msg).await;
                if fault == PushFault::ForwardThenFail {
                    Err(ProviderError::Node("crashed as the node took it".into()))
                } else {
                    r
                }
            }
        }
    }
    async fn next_nonce(&self, addr: Address) -> ProviderResult<u64> {
        NodeApi::next_nonce(&self.svc, addr).await
    }
    async fn chain_head(&self) -> ProviderResult<HeadInfo> {
        NodeApi::chain_head(&self.svc).await
    }
    async fn miner_sectors(&self, miner: ActorId) -> ProviderResult<Vec<SectorInfo>> {
        NodeApi::miner_sectors(&self.svc, miner).await
    }
    async fn miner_precommits(&self, miner: ActorId) -> ProviderResult<Vec<PreCommitView>> {
        NodeApi::miner_precommits(&self.svc, miner).await
    }
    async fn seal_ticket(&self, miner: ActorId, epoch: Epoch) -> ProviderResult<[u8; 32]> {
        NodeApi::seal_ticket(&self.svc, miner, epoch).await
    }
    async fn search_message(&self, id: [u8; 32]) -> ProviderResult<Option<MessageLookupInfo>> {
        NodeApi::search_message(&self.svc, id).await
    }
}

struct World {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    node: Arc<Node>,
    policy: Policy,
    miner: ActorId,
}

async fn world() -> World {
    let policy = Policy::devnet();
    let exp = *GenesisSector::expiration_range(&policy).start();
    let empty_comm_d = {
        use lode_proofs::piece::{PaddedPieceSize, comm_d};
        comm_d(PaddedPieceSize::new(2048).unwrap(), &[]).unwrap().0
    };
    let g = Genesis {
        accounts: vec![(worker_key().public_key(), TokenAmount::tokens(1000))],
        verifreg_root: SecretKey::from_seed(&[1; 32]).public_key(),
        beacon: [7; 32],
        miners: vec![GenesisMiner {
            owner: SecretKey::from_seed(&[10; 32]).public_key(),
            worker: worker_key().public_key(),
            sector_size: SectorSize::S2KiB,
            balance: TokenAmount::tokens(10),
            peer_id: Vec::new(),
            multiaddrs: Vec::new(),
            sectors: (0..4u64)
                .map(|n| GenesisSector {
                    sector_number: n,
                    comm_r: lode_testkit::harness::node(&format!("s{n}")),
                    comm_d: empty_comm_d,
                    expiration: exp,
                })
                .collect(),
        }],
    };
    let miner = *g.miner_ids().first().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let svc = NodeService::start(
        NodeConfig {
            dir: root.join("node"),
            genesis: GenesisFile {
                policy: policy.clone(),
                // Room for a few thousand one-second epochs before blocks come from the future.
                timestamp: unix_now().saturating_sub(3000),
                genesis: g,
            },
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            bootstrap: Vec::new(),
            core: CoreConfig::default(),
            status_interval: Duration::from_secs(1),
        },
        Box::new(SealVerifier(SnarkVerifier::new(
            lode_testkit::harness::test_params(),
        ))),
    )
    .await
    .unwrap();
    World {
        _dir: dir,
        root,
        node: Arc::new(Node {
            svc,
            fault: Mutex::new(PushFault::None),
            forwarded: Mutex::new(Vec::new()),
        }),
        policy,
        miner,
    }
}

impl World {
    /// Mines the next block (the miner's Window PoSts pushed first, so it keeps its power);
    /// returns its epoch.
    async fn mine(&self) -> Epoch {
        let svc = &self.node.svc;
        let head = NodeApi::chain_head(svc).await.unwrap().epoch;
        let miner = self.miner;
        for epoch in head + 1..head + 100 {
            svc.with_core(move |c| push_window_posts(c, miner, &worker_key()))
                .await
                .unwrap()
                .unwrap();
            let mb = svc
                .with_core(move |c| c.miner_base(miner, epoch))
                .await
                .unwrap()
                .unwrap();
            assert!(mb.ineligible.is_none(), "{:?}", mb.ineligible);
            if let Some(block) = make_block(&self.policy, miner, &worker_key(), &mb).unwrap() {
                let v = NodeService::submit_block(svc, block).await.unwrap();
                assert_eq!(v, BlockVerdict::Accepted);
                return epoch;
            }
        }
        panic!("the only miner won no block in 100 epochs");
    }

    fn store_dir(&self) -> std::path::PathBuf {
        self.root.join("sectors")
    }

    /// A pipeline over the store in `db` (opened afresh: a restarted daemon).
    fn pipeline(&self, db: &Path) -> Pipeline<Node> {
        Pipeline::new(
            self.node.clone(),
            PipelineStore::open(db).unwrap(),
            Arc::new(Messenger::new(
                self.miner,
                worker_key(),
                self.policy.clone(),
            )),
            porep_params(),
            self.policy.clone(),
            PipelineConfig {
                miner: self.miner,
                size: SectorSize::S2KiB,
                store_dir: self.store_dir(),
                cache_dir: self.root.join("cache"),
                ticket_depth: 2,
                seed_confidence: 2,
                expiration_margin: 20,
                retry: RetryPolicy {
                    max_retries: 3,
                    base_seconds: 0,
                    max_seconds: 0,
                },
            },
        )
    }

    async fn pre_commit_deposits(&self) -> TokenAmount {
        let miner = self.miner;
        self.node
            .svc
            .with_core(move |c| lode_node::rpc::query::miner_info(c, miner))
            .await
            .unwrap()
            .unwrap()
            .pre_commit_deposits
    }

    /// Checks the chain and the sector store once the sector is `Proving`.
    async fn check_proving(&self, n: u64) {
        let sectors = NodeApi::miner_sectors(&self.node.svc, self.miner)
            .await
            .unwrap();
        assert_eq!(
            sectors.iter().filter(|s| s.sector_number == n).count(),
            1,
            "the chain lists sector {n} once"
        );
        assert!(
            self.node
                .svc
                .miner_precommits(self.miner)
                .await
                .unwrap()
                .iter()
                .all(|p| p.sector_number != n)
        );
        assert_eq!(self.pre_commit_deposits().await, TokenAmount::ZERO);
        let store = SectorStore::new(self.store_dir(), self.miner.0, SectorSize::S2KiB);
        let index = store.scan();
        let sealed = store
            .open(n, &index)
            .expect("the prover finds the sealed sector");
        // Finalized: the layers are gone, the replica and tree R stay.
        assert!(!sealed.dir.layer(1).exists());
    }
}

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("the test ran past its time limit");
}

fn is_pre_commit(m: &MinerMethod) -> bool {
    matches!(m, MinerMethod::PreCommitSectors(_))
}

fn is_prove_commit(m: &MinerMethod) -> bool {
    matches!(m, MinerMethod::ProveCommitSector { .. })
}

/// One sector from pledge to `Proving`, through every working state, in one pipeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pledged_sector_goes_through_every_state_to_proving() {
    bounded(async {
        let w = world().await;
        for _ in 0..3 {
            w.mine().await;
        }
        let db = w.root.join("pipeline");
        let p = w.pipeline(&db);
        let r = p.pledge().await.unwrap();
        assert_eq!(r.number, 4, "above the genesis sectors");
        let mut seen = vec![SectorState::WaitDeals];
        for _ in 0..400 {
            // The sealing phases run as background tasks: a step is a tick and the phases
            // it started.
            let mut moved = p.tick().await.unwrap();
            moved.extend(p.wait_tasks().await);
            for t in &moved {
                assert_eq!(t.number, r.number);
                assert_eq!(Some(t.to), t.from.next(), "no failure: {t:?}");
                seen.push(t.to);
            }
            if p.store().get(r.number).unwrap().unwrap().state() == SectorState::Proving {
                break;
            }
            if moved.is_empty() {
                w.mine().await;
            }
        }
        let rec = p.store().get(r.number).unwrap().unwrap();
        assert_eq!(rec.state(), SectorState::Proving, "{rec:?}");
        use SectorState::*;
        assert_eq!(
            seen,
            vec![
                WaitDeals,
                Packing,
                PreCommit1,
                PreCommit2,
                SubmitPreCommit,
                PreCommitLanded,
                WaitSeed,
                Commit1,
                Commit2,
                SubmitProveCommit,
                ProveCommitLanded,
                Finalize,
                Proving
            ]
        );
        let c = &rec.chain;
        assert!(c.seal_rand_epoch.is_some() && c.comm_r.is_some() && c.seed.is_some());
        assert!(c.pre_commit.is_some() && c.prove_commit.is_some());
        assert_eq!(w.node.forwarded_ids(is_pre_commit).len(), 1);
        assert_eq!(w.node.forwarded_ids(is_prove_commit).len(), 1);
        w.check_proving(r.number).await;
        // The sector the chain lists carries the comm_r the pipeline sealed.
        let on_chain = NodeApi::miner_sectors(&w.node.svc, w.miner).await.unwrap();
        let s = on_chain
            .iter()
            .find(|s| s.sector_number == r.number)
            .unwrap();
        assert_eq!(Some(s.comm_r), c.comm_r);
        // Nothing more to do.
        assert!(p.tick().await.unwrap().is_empty());
        // Every sealing phase ran as a scheduled task, once, and finished.
        use lode_provider::tasks::{TaskKind, TaskState};
        let tasks = p.scheduler().list().unwrap();
        let kinds: Vec<TaskKind> = tasks.iter().map(|t| t.kind).collect();
        assert_eq!(
            kinds,
            vec![
                TaskKind::PreCommit1,
                TaskKind::PreCommit2,
                TaskKind::Commit1,
                TaskKind::Commit2,
                TaskKind::Finalize
            ]
        );
        assert!(
            tasks.iter().all(|t| t.state == TaskState::Done
                && t.sector == Some(r.number)
                && t.attempts == 1),
            "{tasks:?}"
        );
    })
    .await;
}

/// The pipeline dropped and rebuilt from its store after every step, with crashes around the
/// pushes: one pre-commit, one deposit, one prove-commit, and the sector still reaches `Proving`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_at_every_step_send_each_message_once() {
    bounded(async {
        let w = world().await;
        for _ in 0..3 {
            w.mine().await;
        }
        let db = w.root.join("pipeline");
        let n = w.pipeline(&db).pledge().await.unwrap().number;
        let mut lost_pre_commit = false;
        let mut forgot_pre_commit = false;
        let mut failed_prove_commit = false;
        let mut deposit_seen = false;
        for _ in 0..600 {
            // A fresh daemon every step.
            let p = w.pipeline(&db);
            let rec = p.store().get(n).unwrap().unwrap();
            let mut crashed = false;
            match rec.state() {
                SectorState::Proving => break,
                SectorState::SubmitPreCommit if !lost_pre_commit => {
                    // Recorded, then the process dies before the push.
                    lost_pre_commit = true;
                    crashed = true;
                    w.node.set_fault(PushFault::Lose);
                }
                SectorState::SubmitProveCommit if !failed_prove_commit => {
                    // The node takes it as the process dies.
                    failed_prove_commit = true;
                    crashed = true;
                    w.node.set_fault(PushFault::ForwardThenFail);
                }
                _ => {}
            }
            let mut moved = p.tick().await.unwrap();
            // The phases the tick started finish before the daemon "restarts".
            moved.extend(p.wait_tasks().await);
            for t in &moved {
                assert!(
                    t.from.next() == Some(t.to),
                    "no failure on the way: {t:?} ({:?})",
                    p.store().get(n).unwrap().unwrap().progress
                );
            }
            drop(p);
            // Mine unless the process just "died" around a push: the restarted daemon pushes
            // the recorded message again before anything else takes its nonce.
            if moved.is_empty() && !crashed {
                w.mine().await;
            }
            let pre = NodeApi::miner_precommits(&w.node.svc, w.miner)
                .await
                .unwrap();
            if let Some(v) = pre.iter().find(|v| v.sector_number == n) {
                // Exactly one deposit locked while the pre-commit waits.
                assert_eq!(w.pre_commit_deposits().await, v.deposit);
                deposit_seen = true;
                if !forgot_pre_commit {
                    // A record without the message id (written by a daemon that died before
                    // recording it, in an older version): the chain's pre-commit is enough.
                    let s = PipelineStore::open(&db).unwrap();
                    let r = s.get(n).unwrap().unwrap();
                    if r.state() == SectorState::SubmitPreCommit {
                        forgot_pre_commit = true;
                        let chain = SectorChain {
                            pre_commit: None,
                            ..r.chain.clone()
                        };
                        s.record_chain(n, r.version, chain, unix_now()).unwrap();
                    }
                }
            }
        }
        let rec = PipelineStore::open(&db).unwrap().get(n).unwrap().unwrap();
        assert_eq!(rec.state(), SectorState::Proving, "{rec:?}");
        assert!(lost_pre_commit && failed_prove_commit && forgot_pre_commit && deposit_seen);
        assert_eq!(
            w.node.forwarded_ids(is_pre_commit).len(),
            1,
            "one pre-commit message reached the node"
        );
        assert_eq!(
            w.node.forwarded_ids(is_prove_commit).len(),
            1,
            "one prove-commit message reached the node"
        );
        w.check_proving(n).await;
    })
    .await;
}

/// `run_pipeline` on the network's clock, while blocks come: the sector reaches `Proving`, and
/// the loop ends when told to stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_pipeline_seals_a_sector_on_the_clock_and_stops() {
    bounded(async {
        let w = world().await;
        for _ in 0..3 {
            w.mine().await;
        }
        let db = w.root.join("pipeline");
        let p = Arc::new(w.pipeline(&db));
        let n = p.pledge().await.unwrap().number;
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let running = tokio::spawn(run_pipeline(p.clone(), stop_rx));
        let started = std::time::Instant::now();
        while p.store().get(n).unwrap().unwrap().state() != SectorState::Proving {
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "{:?}",
                p.store().get(n).unwrap()
            );
            w.mine().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(60), running)
            .await
            .expect("the loop stops when told")
            .unwrap()
            .unwrap();
        w.check_proving(n).await;
    })
    .await;
}
