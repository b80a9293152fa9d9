//! Helpers shared by the pipeline's integration tests: a real in-process node whose pushes can
//! fail as a crash would, a genesis with one 2 KiB miner, block mining with the test's fake
//! Window PoSts, and the pipeline over a directory of the test's own (sector store, sealing
//! scratch, parent cache), sealing for real with the insecure test parameters.

#![allow(
    dead_code,
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
use lode_chain::Policy;
use lode_chain::actors::miner::MinerMethod;
use lode_chain::crypto::SecretKey;
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
use lode_provider::pipeline::runner::{Pipeline, PipelineConfig};
use lode_provider::pipeline::{PipelineStore, RetryPolicy};
use lode_provider::poster::Messenger;
use lode_provider::prover::SectorStore;
use lode_provider::{NodeApi, ProviderError, ProviderResult};
use lode_testkit::harness::FakeVerifier;
use lode_testkit::mining::{make_block, push_window_posts};

pub(crate) const LIMIT: Duration = Duration::from_secs(900);

pub(crate) fn worker_key() -> SecretKey {
    SecretKey::from_seed(&[20; 32])
}

/// The real PoRep verifier (the test parameters' key); fake Window and Winning PoSts.
pub(crate) struct SealVerifier(SnarkVerifier);

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

pub(crate) fn porep_params() -> Arc<groth16::Parameters<Bls12>> {
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
pub(crate) enum PushFault {
    /// Forwarded.
    None,
    /// Lost: the process died after recording the message, before pushing it.
    Lose,
    /// Forwarded, but the caller hears an error (it died as the node took it).
    ForwardThenFail,
}

/// The node, with pushes that can fail as a crash would, and every message that reached it.
pub(crate) struct Node {
    pub(crate) svc: NodeService,
    pub(crate) fault: Mutex<PushFault>,
    pub(crate) forwarded: Mutex<Vec<SignedMessage>>,
}

impl Node {
    pub(crate) fn set_fault(&self, f: PushFault) {
        *self.fault.lock().unwrap() = f;
    }
    /// Distinct ids of forwarded messages of the kind `pick` selects.
    pub(crate) fn forwarded_ids(&self, pick: fn(&MinerMethod) -> bool) -> BTreeSet<[u8; 32]> {
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
    async fn chain_nonce(&self, addr: Address) -> ProviderResult<u64> {
        NodeApi::chain_nonce(&self.svc, addr).await
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
    async fn market_deal(&self, id: u64) -> ProviderResult<lode_provider::DealLookup> {
        NodeApi::market_deal(&self.svc, id).await
    }
}

pub(crate) struct World {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) root: std::path::PathBuf,
    pub(crate) node: Arc<Node>,
    pub(crate) policy: Policy,
    pub(crate) miner: ActorId,
}

pub(crate) async fn world() -> World {
    let policy = Policy::devnet();
    let g = lode_testkit::harness::one_miner_genesis(&policy, &worker_key(), 4);
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
    pub(crate) async fn mine(&self) -> Epoch {
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

    /// Sends `method` with `value` from `key`'s account to `to`, mines until it is executed,
    /// and checks that it succeeded.
    pub(crate) async fn send_ok(
        &self,
        key: &SecretKey,
        to: Address,
        method: Method,
        value: TokenAmount,
    ) -> MessageLookupInfo {
        let svc = &self.node.svc;
        let nonce = NodeApi::next_nonce(svc, Address::Bls(key.public_key()))
            .await
            .unwrap();
        let msg = lode_node::wallet::sign_method(&self.policy, key, to, value, method, nonce, 0, 0);
        let id = NodeApi::push_message(svc, msg).await.unwrap();
        for _ in 0..30 {
            self.mine().await;
            if let Some(found) = NodeApi::search_message(svc, id).await.unwrap() {
                assert!(found.receipt.ok(), "{:?}", found.receipt);
                return found;
            }
        }
        panic!("message {} not executed in 30 epochs", hex::encode(id));
    }

    /// The id of the actor at `addr`.
    pub(crate) async fn lookup(&self, addr: Address) -> ActorId {
        self.node
            .svc
            .with_core(move |c| lode_node::rpc::query::lookup_id(c, &addr))
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    }

    pub(crate) fn store_dir(&self) -> std::path::PathBuf {
        self.root.join("sectors")
    }

    /// The sealing scratch.
    pub(crate) fn scratch_dir(&self) -> std::path::PathBuf {
        self.root.join("scratch")
    }

    /// The pipeline's configuration: the test's directories, short chain waits, three
    /// immediate retries.
    pub(crate) fn config(&self) -> PipelineConfig {
        PipelineConfig {
            miner: self.miner,
            size: SectorSize::S2KiB,
            store_dir: self.store_dir(),
            scratch_dir: self.scratch_dir(),
            keep_unsealed: false,
            keep_unsealed_deals: true,
            wait_deals_epochs: 40,
            deal_start_margin_epochs: 40,
            cache_dir: self.root.join("cache"),
            ticket_depth: 2,
            seed_confidence: 2,
            expiration_margin: 20,
            retry: RetryPolicy {
                max_retries: 3,
                base_seconds: 0,
                max_seconds: 0,
            },
            batch_wait_epochs: 0,
            max_batch: 16,
        }
    }

    /// A pipeline over the store in `db` (opened afresh: a restarted daemon).
    pub(crate) fn pipeline(&self, db: &Path) -> Pipeline<Node> {
        self.pipeline_with(db, self.config())
    }

    /// A pipeline over the store in `db` with `config`.
    pub(crate) fn pipeline_with(&self, db: &Path, config: PipelineConfig) -> Pipeline<Node> {
        Pipeline::new(
            self.node.clone(),
            open_store(db),
            Arc::new(Messenger::new(
                self.miner,
                worker_key(),
                self.policy.clone(),
            )),
            porep_params(),
            self.policy.clone(),
            config,
        )
    }

    pub(crate) async fn pre_commit_deposits(&self) -> TokenAmount {
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
    pub(crate) async fn check_proving(&self, n: u64) {
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
        // Moved out of the sealing scratch, and no temporary copy left in the store.
        let name = format!("s-{}-{n}", self.miner.0);
        assert!(
            !self.scratch_dir().join(&name).exists(),
            "scratch left behind"
        );
        assert!(!self.store_dir().join(format!(".{name}.moving")).exists());
    }
}

pub(crate) async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("the test ran past its time limit");
}

/// Opens the pipeline store in `db`, as a restarted daemon would. Sled releases its file lock from
/// a background thread after the last handle is dropped, so a store reopened at once in the same
/// process can still find the lock held for a moment: retry while that is the error.
pub(crate) fn open_store(db: &Path) -> PipelineStore {
    lode_testkit::reopen_sled(db, || PipelineStore::open(db))
}
