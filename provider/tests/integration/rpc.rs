//! The provider's API end to end over real HTTP: its server on 127.0.0.1 port 0 in front of a
//! poster, a sector store with a sector sealed for real, and a node — a recording [`NodeApi`]
//! whose deadlines the test sets, or a real in-process node (the test verifier) whose mempool must
//! accept the declarations. Covers every open method, the poster's snapshot after its rounds, the
//! token rule (HTTP 401 and nothing sent without it, for single calls and batches), declarations
//! sent with it, the poster leaving operator-declared faults alone, and refused declarations; and,
//! with real Window PoSt parameters, the poster's states through windows (waiting, proving,
//! proved, submitted, confirmed) and its verdict on windows that closed before it saw its proof on
//! chain (taken, or missed when the chain faulted the sectors), and a deadline of many partitions
//! sent in messages that each fit a block (a small block gas limit), resending only the
//! partitions not on chain.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bls12_381::Bls12;
use groth16::Parameters;
use lode_chain::Policy;
use lode_chain::actors::miner::MinerMethod;
use lode_chain::crypto::SecretKey;
use lode_chain::message::{Method, SignedMessage};
use lode_chain::types::{ActorId, Address, Epoch};
use lode_node::core::{
    BlockVerdict, DeadlineView, MinerBase, PartitionView, ProvingView, SectorRef,
};
use lode_node::rpc::client::{ApiInfo, ClientError};
use lode_node::rpc::types::{HeadInfo, SectorInfo};
use lode_node::rpc::{RpcServerHandle, codes};
use lode_node::wire::FullBlock;
use lode_proofs::node::Node;
use lode_proofs::post::PublicSector;
use lode_proofs::sector::SectorSize;
use lode_proofs::verifier::{ProofVerifier, SnarkVerifier, WindowPostStatement};
use lode_provider::metrics::ProviderMetrics;
use lode_provider::pipeline::runner::{Pipeline, PipelineConfig};
use lode_provider::pipeline::{PipelineStore, SectorState};
use lode_provider::poster::{Declaration, Poster};
use lode_provider::prover::{Prover, SectorStore};
use lode_provider::rpc::client::ProviderClient;
use lode_provider::rpc::{self, Identity, ProviderRpc};
use lode_provider::status::{BlockRecord, MiningEvents, PostState, WindowResult};
use lode_provider::{NodeApi, ProviderError, ProviderResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

const LIMIT: Duration = Duration::from_secs(120);
const MINER: ActorId = ActorId(1000);
const WORKER: ActorId = ActorId(101);
const OWNER: ActorId = ActorId(100);

async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("the test ran past its time limit");
}

fn worker_key() -> SecretKey {
    SecretKey::from_seed(&[20; 32])
}

/// A node that answers from what the test sets and records every message pushed.
#[derive(Default)]
struct FakeNode {
    view: Mutex<Option<ProvingView>>,
    pushed: Mutex<Vec<SignedMessage>>,
    /// Whether pushed messages are reported executed (successfully) by `search_message`.
    executes: Mutex<bool>,
}

impl FakeNode {
    fn set_view(&self, v: ProvingView) {
        *self.view.lock().unwrap() = Some(v);
    }
    fn pushed(&self) -> Vec<SignedMessage> {
        self.pushed.lock().unwrap().clone()
    }
}

impl NodeApi for FakeNode {
    async fn miner_base(&self, _: ActorId, _: Epoch) -> ProviderResult<MinerBase> {
        Err(ProviderError::Node("not in this test".into()))
    }
    async fn submit_block(&self, _: FullBlock) -> ProviderResult<BlockVerdict> {
        Err(ProviderError::Node("not in this test".into()))
    }
    async fn proving_view(&self, _: ActorId) -> ProviderResult<ProvingView> {
        self.view
            .lock()
            .unwrap()
            .clone()
            .ok_or_else(|| ProviderError::Node("no view yet".into()))
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
        let epoch = self
            .view
            .lock()
            .unwrap()
            .as_ref()
            .map_or(0, |v| v.head_epoch);
        Ok(HeadInfo {
            epoch,
            key: vec![[1; 32]],
            weight: 7,
            parent_state_root: None,
            state_root: Some([2; 32]),
        })
    }
    async fn miner_sectors(&self, _: ActorId) -> ProviderResult<Vec<SectorInfo>> {
        let view = self.view.lock().unwrap().clone();
        let mut out = Vec::new();
        for dl in view.iter().flat_map(|v| v.deadlines.iter()) {
            for p in &dl.partitions {
                for s in &p.sectors {
                    let n = s.sector_number;
                    let status = match (p.faults.contains(&n), p.recoveries.contains(&n)) {
                        (false, _) => "active",
                        (true, false) => "faulty",
                        (true, true) => "recovering",
                    };
                    out.push(SectorInfo {
                        sector_number: n,
                        comm_r: s.comm_r,
                        status: status.into(),
                        activation: 0,
                        expiration: 5000,
                        deal_ids: Vec::new(),
                        deal_weight: 0,
                        verified_deal_weight: 0,
                        initial_pledge: lode_chain::types::TokenAmount::ZERO,
                        deadline: dl.index,
                        partition: p.index,
                    });
                }
            }
        }
        Ok(out)
    }
    async fn miner_precommits(
        &self,
        _: ActorId,
    ) -> ProviderResult<Vec<lode_node::rpc::types::PreCommitView>> {
        Ok(Vec::new())
    }
    async fn seal_ticket(&self, _: ActorId, _: Epoch) -> ProviderResult<[u8; 32]> {
        Err(ProviderError::Node("not in this test".into()))
    }
    async fn search_message(
        &self,
        id: [u8; 32],
    ) -> ProviderResult<Option<lode_node::rpc::types::MessageLookupInfo>> {
        let pushed = self.pushed.lock().unwrap().iter().any(|m| m.id() == id);
        if !(pushed && *self.executes.lock().unwrap()) {
            return Ok(None);
        }
        Ok(Some(lode_node::rpc::types::MessageLookupInfo {
            epoch: 11,
            tipset: Vec::new(),
            receipt: lode_node::rpc::types::ReceiptInfo {
                exit_code: 0,
                exit: "Ok".into(),
                gas_used: 1,
                fee: lode_chain::types::TokenAmount::ZERO,
                return_data: Vec::new(),
                error: String::new(),
            },
        }))
    }
}

/// One deadline (index 3, window 20–40, fault cutoff 15, challenge not drawn) holding sectors 0
/// (on disk) and 1 (not), with the given faults, at `head`.
fn view(head: Epoch, comm_r: [u8; 32], faults: &[u64], recoveries: &[u64]) -> ProvingView {
    ProvingView {
        head_epoch: head,
        sector_size: SectorSize::S2KiB,
        worker: WORKER,
        deadlines: vec![DeadlineView {
            index: 3,
            open: 20,
            close: 40,
            challenge: 0,
            fault_cutoff: 15,
            randomness: None,
            posted: Vec::new(),
            partitions: vec![PartitionView {
                index: 0,
                sectors: vec![
                    SectorRef {
                        sector_number: 0,
                        comm_r,
                    },
                    SectorRef {
                        sector_number: 1,
                        comm_r: [9; 32],
                    },
                ],
                faults: faults.to_vec(),
                recoveries: recoveries.to_vec(),
            }],
        }],
    }
}

struct Provider {
    node: Arc<FakeNode>,
    poster: Poster,
    mining: watch::Sender<MiningEvents>,
    metrics: ProviderMetrics,
    rpc: RpcServerHandle,
    addr: SocketAddr,
    token: String,
    comm_r: [u8; 32],
    /// The task scheduler the poster registers its Window PoSts with.
    tasks: lode_provider::tasks::Scheduler,
    _dir: tempfile::TempDir,
}

impl Provider {
    /// A provider whose store holds sector 0 of [`MINER`], sealed for real (2 KiB).
    async fn start() -> Provider {
        Self::start_with(lode_testkit::harness::unused_params()).await
    }

    /// [`Provider::start`], proving Window PoSts with `window` parameters.
    async fn start_with(window: Arc<Parameters<Bls12>>) -> Provider {
        Self::start_with_policy(window, Policy::devnet()).await
    }

    /// [`Provider::start_with`], the poster signing under `policy`.
    async fn start_with_policy(window: Arc<Parameters<Bls12>>, policy: Policy) -> Provider {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join("sectors");
        let cache = dir.path().join("cache");
        std::fs::create_dir_all(&store_dir).unwrap();
        let sealed = {
            let (s, c) = (store_dir.clone(), cache.clone());
            tokio::task::spawn_blocking(move || {
                lode_provider::preseal::preseal(&s, &c, MINER, SectorSize::S2KiB, 0, 5000)
            })
            .await
            .unwrap()
            .unwrap()
        };
        let store = SectorStore::new(&store_dir, MINER.0, SectorSize::S2KiB);
        let prover = Arc::new(Prover::with_params(
            store.clone(),
            SectorSize::S2KiB,
            lode_testkit::harness::unused_params(),
            window,
        ));
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = ProviderMetrics::register(&mut registry);
        let node = Arc::new(FakeNode::default());
        let tasks = lode_provider::tasks::Scheduler::new(
            &lode_provider::pipeline::PipelineStore::open(&dir.path().join("pipeline")).unwrap(),
            &lode_provider::tasks::SchedulerConfig::default(),
            SectorSize::S2KiB,
            lode_provider::pipeline::RetryPolicy::default(),
        );
        let poster = Poster::new(MINER, worker_key(), policy, prover, metrics.clone())
            .with_tasks(tasks.clone());
        let (mining, mining_rx) = watch::channel(MiningEvents::default());
        let ctx = ProviderRpc {
            api: node.clone(),
            identity: Identity {
                actor: MINER,
                owner: OWNER,
                worker: WORKER,
                sector_size: SectorSize::S2KiB,
                network: "devnet".into(),
                node_api: "http://127.0.0.1:1234".into(),
                started_at: 1_700_000_000,
            },
            store,
            poster: poster.handle(),
            mining: mining_rx,
            metrics: metrics.clone(),
            pipeline: Err("not in this test".into()),
            market: Err("not in this test".into()),
        };
        let token = lode_node::rpc::load_or_create_token(dir.path()).unwrap();
        let (addr, rpc) = rpc::serve("127.0.0.1:0".parse().unwrap(), ctx, token.clone())
            .await
            .unwrap();
        Provider {
            node,
            poster,
            mining,
            metrics,
            rpc,
            addr,
            token,
            comm_r: sealed.comm_r,
            tasks,
            _dir: dir,
        }
    }

    fn client(&self, token: Option<&str>) -> ProviderClient {
        ProviderClient::with_timeout(
            ApiInfo {
                url: format!("http://{}", self.addr),
                token: token.map(str::to_string),
            },
            Duration::from_secs(20),
        )
        .unwrap()
    }
}

/// A raw HTTP/1.1 `POST /` of a JSON body: status and body.
async fn post_json(addr: SocketAddr, token: Option<&str>, body: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, body.to_string())
}

fn rpc_code(e: &ClientError) -> Option<i32> {
    match e {
        ClientError::Rpc { code, .. } => Some(*code),
        _ => None,
    }
}

/// The miner method of a recorded message, checked to come from the worker, to the miner, with
/// a valid signature.
fn miner_method(m: &SignedMessage) -> MinerMethod {
    assert_eq!(m.message.from, Address::Id(WORKER));
    assert_eq!(m.message.to, Address::Id(MINER));
    assert!(m.verify(&Policy::devnet().network, &worker_key().public_key()));
    match &m.message.method {
        Method::Miner(mm) => mm.clone(),
        other => panic!("not a miner method: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_methods_report_the_store_the_poster_and_the_miner() {
    bounded(async {
        let mut p = Provider::start().await;
        let c = p.client(None);

        // Every registered method is classified.
        let module = rpc::module(ProviderRpc {
            api: p.node.clone(),
            identity: Identity {
                actor: MINER,
                owner: OWNER,
                worker: WORKER,
                sector_size: SectorSize::S2KiB,
                network: String::new(),
                node_api: String::new(),
                started_at: 0,
            },
            store: SectorStore::new("/nonexistent", MINER.0, SectorSize::S2KiB),
            poster: p.poster.handle(),
            mining: p.mining.subscribe(),
            metrics: p.metrics.clone(),
            pipeline: Err("not in this test".into()),
            market: Err("not in this test".into()),
        })
        .unwrap();
        let registered: Vec<&str> = module.method_names().collect();
        for m in &registered {
            assert!(
                rpc::OPEN_METHODS.contains(m) || rpc::PROTECTED_METHODS.contains(m),
                "{m} is neither open nor protected"
            );
        }
        for m in rpc::OPEN_METHODS.iter().chain(rpc::PROTECTED_METHODS) {
            assert!(registered.contains(m), "{m} is listed but not registered");
        }

        // Without a pipeline: the listing says why, a pledge is refused with it.
        let listed = c.pipeline().await.unwrap();
        assert_eq!(listed.disabled.as_deref(), Some("not in this test"));
        let tasks = c.tasks(true).await.unwrap();
        assert_eq!(tasks.disabled.as_deref(), Some("not in this test"));
        assert!(tasks.tasks.is_empty());
        let e = p.client(Some(&p.token)).pledge(1).await.unwrap_err();
        assert_eq!(rpc_code(&e), Some(codes::REFUSED), "{e}");
        assert!(e.to_string().contains("not in this test"), "{e}");

        // Before the poster's first round: no view, and the node has no answer yet either.
        let st = c.proving().await.unwrap();
        assert_eq!((st.actor, st.head_epoch), (MINER, None));
        assert!(st.deadlines.is_empty());

        // A round at epoch 10: sector 1 is not on disk, so the poster declares it faulty.
        p.node.set_view(view(10, p.comm_r, &[], &[]));
        let report = p.poster.tick(p.node.as_ref()).await.unwrap();
        assert_eq!(report.faults, vec![1]);
        let pushed = p.node.pushed();
        assert_eq!(pushed.len(), 1);
        assert!(matches!(
            miner_method(&pushed[0]),
            MinerMethod::DeclareFaults(_)
        ));

        let st = c.proving().await.unwrap();
        assert_eq!(st.head_epoch, Some(10));
        assert!(st.updated_at.is_some());
        assert_eq!(st.last_error, None);
        assert_eq!(st.deadlines.len(), 1);
        let d = &st.deadlines[0];
        assert_eq!((d.index, d.open, d.close, d.fault_cutoff), (3, 20, 40, 15));
        assert_eq!((d.partitions, d.sectors, d.faults, d.posted), (1, 2, 0, 0));
        assert_eq!(d.state, PostState::Waiting);
        assert!(!d.current);
        assert_eq!((d.last_submitted, d.last_result, d.missed), (None, None, 0));
        // The JSON names the states as documented.
        let raw = c.proving().await.unwrap();
        let json = serde_json::to_value(&raw).unwrap();
        assert_eq!(json["deadlines"][0]["state"], "waiting");
        assert_eq!(json["actor"], "l01000");

        // A failed round is reported, the last view kept.
        *p.node.view.lock().unwrap() = None;
        assert!(p.poster.tick(p.node.as_ref()).await.is_err());
        let st = c.proving().await.unwrap();
        assert!(st.last_error.unwrap().contains("no view yet"));
        assert_eq!(st.head_epoch, Some(10));
        p.node.set_view(view(10, p.comm_r, &[1], &[]));

        // info: who, and the node's head.
        let info = c.info().await.unwrap();
        assert_eq!(
            (info.actor, info.owner, info.worker),
            (MINER, OWNER, WORKER)
        );
        assert_eq!(info.sector_size, SectorSize::S2KiB);
        assert_eq!(info.node_api, "http://127.0.0.1:1234");
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(info.api_version, rpc::API_VERSION);
        assert_eq!(info.sectors_in_store, 1);
        assert_eq!(info.head.map(|h| h.epoch), Some(10));
        assert_eq!(info.node_error, None);

        // sectors: the store beside the chain.
        let list = c.sectors().await.unwrap();
        assert_eq!(list.node_error, None);
        assert_eq!(list.sectors.len(), 2);
        let (s0, s1) = (&list.sectors[0], &list.sectors[1]);
        assert_eq!(s0.sector_number, 0);
        assert!(s0.dir.as_ref().unwrap().ends_with("s-1000-0"));
        assert!(s0.readable);
        let chain0 = s0.chain.as_ref().unwrap();
        assert_eq!(
            (chain0.status.as_str(), chain0.deadline, chain0.partition),
            ("active", 3, 0)
        );
        assert_eq!(
            (s1.sector_number, s1.dir.as_deref(), s1.readable),
            (1, None, false)
        );
        assert_eq!(s1.chain.as_ref().unwrap().status, "faulty");

        // mining: the metrics' counters and the loop's events.
        p.metrics.elections_won.inc();
        p.metrics.blocks_produced.inc();
        p.metrics.winning_post_seconds.observe(0.25);
        p.metrics.winning_post_seconds.observe(0.75);
        p.mining.send_replace(MiningEvents {
            last_election: Some(9),
            last_block: Some(BlockRecord {
                epoch: 9,
                id: [5; 32],
                wins: 2,
            }),
            ..MiningEvents::default()
        });
        let m = c.mining().await.unwrap();
        assert_eq!(
            (m.elections_won, m.blocks_produced, m.blocks_refused),
            (1, 1, 0)
        );
        assert_eq!(m.winning_posts, 2);
        assert_eq!(m.winning_post_average_seconds, Some(0.5));
        assert_eq!(m.window_post_average_seconds, None);
        assert_eq!(
            m.events.last_block.as_ref().map(|b| (b.epoch, b.wins)),
            Some((9, 2))
        );
        let json = c.mining().await.unwrap();
        let json = serde_json::to_value(&json).unwrap();
        assert_eq!(json["last_block"]["id"], hex::encode([5; 32]));

        p.rpc.stop();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declarations_need_the_token_and_stay_declared() {
    bounded(async {
        let mut p = Provider::start().await;
        p.node.set_view(view(10, p.comm_r, &[], &[]));
        let before = p.node.pushed().len();

        // Without the token: HTTP 401, nothing sent, nothing held — single calls and batches.
        let call = r#"{"jsonrpc":"2.0","id":1,"method":"provider_declareFaults","params":[[0]]}"#;
        let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"provider_info"},{"jsonrpc":"2.0","id":2,"method":"provider_declareRecoveries","params":[[0]]}]"#;
        for body in [call, batch] {
            let (status, text) = post_json(p.addr, None, body).await;
            assert_eq!(status, 401, "{body}: {text}");
            assert!(text.contains(&codes::UNAUTHORIZED.to_string()), "{text}");
            let (status, _) = post_json(p.addr, Some("00"), body).await;
            assert_eq!(status, 401, "a wrong token is no token");
        }
        let open = p.client(None);
        assert!(matches!(
            open.declare_faults(&[0]).await,
            Err(ClientError::Unauthorized)
        ));
        assert_eq!(p.node.pushed().len(), before);
        assert!(open.proving().await.unwrap().held_faults.is_empty());
        // Open methods need no token.
        let (status, text) = post_json(
            p.addr,
            None,
            r#"{"jsonrpc":"2.0","id":1,"method":"provider_proving"}"#,
        )
        .await;
        assert_eq!(status, 200, "{text}");

        // With it: the declaration is sent, located, and held.
        let c = p.client(Some(&p.token));
        let d = c.declare_faults(&[0]).await.unwrap();
        assert_eq!(d.declaration, Declaration::Faults);
        assert_eq!(d.locations.len(), 1);
        let l = &d.locations[0];
        assert_eq!((l.deadline, l.partition, l.sectors.clone()), (3, 0, vec![0]));
        let pushed = p.node.pushed();
        assert_eq!(pushed.len(), before + 1);
        let msg = pushed.last().unwrap();
        assert_eq!(msg.id(), d.message);
        assert_eq!(msg.message.nonce, before as u64);
        match miner_method(msg) {
            MinerMethod::DeclareFaults(locs) => {
                assert_eq!(locs.len(), 1);
                assert_eq!((locs[0].deadline, locs[0].partition), (3, 0));
                assert_eq!(locs[0].sectors.iter().copied().collect::<Vec<_>>(), vec![0]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.proving().await.unwrap().held_faults, vec![0]);
        assert_eq!(p.metrics.faults_declared.get(), 1);

        // The chain now has sector 0 faulty; it is readable, but held: the poster leaves it.
        p.node.set_view(view(11, p.comm_r, &[0, 1], &[]));
        let report = p.poster.tick(p.node.as_ref()).await.unwrap();
        assert!(report.recoveries.is_empty(), "{report:?}");
        assert_eq!(p.node.pushed().len(), before + 1);
        let sectors = c.sectors().await.unwrap();
        assert!(sectors.sectors[0].held_faulty);

        // Refusals, nothing sent: a sector not live, a recovery of a sector not faulty, an
        // empty list, and anything once the deadline's fault cutoff has passed.
        let refused = |r: Result<_, ClientError>| rpc_code(&r.unwrap_err());
        assert_eq!(refused(c.declare_faults(&[7]).await), Some(codes::REFUSED));
        p.node.set_view(view(11, p.comm_r, &[1], &[]));
        assert_eq!(refused(c.declare_recoveries(&[0]).await), Some(codes::REFUSED));
        assert_eq!(refused(c.declare_faults(&[]).await), Some(codes::INVALID_PARAMS));
        p.node.set_view(view(14, p.comm_r, &[0, 1], &[]));
        let late = c.declare_recoveries(&[0]).await.unwrap_err();
        assert_eq!(rpc_code(&late), Some(codes::REFUSED));
        assert!(late.to_string().contains("fault cutoff"), "{late}");
        assert_eq!(p.node.pushed().len(), before + 1);

        // Declared recovered by the operator: sent, and released.
        p.node.set_view(view(12, p.comm_r, &[0, 1], &[]));
        let d = c.declare_recoveries(&[0]).await.unwrap();
        assert_eq!(d.declaration, Declaration::Recoveries);
        let pushed = p.node.pushed();
        assert_eq!(pushed.len(), before + 2);
        assert!(matches!(
            miner_method(pushed.last().unwrap()),
            MinerMethod::DeclareRecoveries(_)
        ));
        assert!(c.proving().await.unwrap().held_faults.is_empty());

        p.rpc.stop();
    })
    .await;
}

/// Against a real node: the declaration the API sends is one the node's mempool accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extensions_and_terminations_need_the_token_and_name_a_bad_param() {
    bounded(async {
        let p = Provider::start().await;
        p.node.set_view(view(10, p.comm_r, &[1], &[]));
        let before = p.node.pushed().len();
        // Without the token: HTTP 401 and nothing sent.
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"provider_extendSectors","params":[[0],6000]}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"provider_terminateSector","params":[0]}"#,
        ] {
            let (status, text) = post_json(p.addr, None, body).await;
            assert_eq!(status, 401, "{body}: {text}");
        }
        let open = p.client(None);
        assert!(matches!(
            open.extend_sectors(&[0], 6000).await,
            Err(ClientError::Unauthorized)
        ));
        assert!(matches!(
            open.terminate_sector(0).await,
            Err(ClientError::Unauthorized)
        ));
        // Malformed params: invalid params, the error naming the field.
        for (params, field) in [
            (r#"[["x"],6000]"#, "`sectors`"),
            (r#"[0,6000]"#, "`sectors`"),
            (r#"[[0],"soon"]"#, "`expiration`"),
            (r#"[[0]]"#, "`expiration`"),
            (r#"[[],6000]"#, "`sectors`"),
            (r#"[[0,0],6000]"#, "`sectors`"),
            (r#"[[0],-1]"#, "`expiration`"),
        ] {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"provider_extendSectors","params":{params}}}"#
            );
            let (status, text) = post_json(p.addr, Some(&p.token), &body).await;
            assert_eq!(status, 200, "{text}");
            assert!(
                text.contains(&codes::INVALID_PARAMS.to_string()) && text.contains(field),
                "{params}: {text}"
            );
        }
        let body =
            r#"{"jsonrpc":"2.0","id":1,"method":"provider_terminateSector","params":["seven"]}"#;
        let (_, text) = post_json(p.addr, Some(&p.token), body).await;
        assert!(
            text.contains(&codes::INVALID_PARAMS.to_string()) && text.contains("`sector`"),
            "{text}"
        );
        // Against the chain's rules: refused, each naming the sector and what to do.
        let c = p.client(Some(&p.token));
        let too_far = 11 + Policy::devnet().max_sector_expiration_extension + 1;
        for (sectors, expiration, says) in [
            (vec![9], 6000, "sector 9 is not live on chain"),
            (vec![1], 6000, "sector 1 is faulty"),
            (vec![0], 5000, "already expires at epoch 5000"),
            (vec![0], too_far, "more than"),
        ] {
            let e = c.extend_sectors(&sectors, expiration).await.unwrap_err();
            assert_eq!(rpc_code(&e), Some(codes::REFUSED), "{e}");
            assert!(e.to_string().contains(says), "{says}: {e}");
        }
        assert_eq!(p.node.pushed().len(), before, "nothing sent");
        // The pipeline does not run here: a termination is refused, saying so.
        let e = c.terminate_sector(0).await.unwrap_err();
        assert_eq!(rpc_code(&e), Some(codes::REFUSED), "{e}");
        assert!(e.to_string().contains("pipeline does not run"), "{e}");
        // A good extension: one message, located, waited for until executed.
        *p.node.executes.lock().unwrap() = true;
        let x = c.extend_sectors(&[0], 6000).await.unwrap();
        assert_eq!((x.new_expiration, x.executed_at), (6000, 11));
        assert_eq!(x.sectors.len(), 1);
        assert_eq!(
            (x.sectors[0].sector_number, x.sectors[0].old_expiration),
            (0, 5000)
        );
        let pushed = p.node.pushed();
        assert_eq!(pushed.len(), before + 1);
        assert_eq!(pushed.last().unwrap().id(), x.message);
        match miner_method(pushed.last().unwrap()) {
            MinerMethod::ExtendSectorExpiration {
                sectors,
                new_expiration,
            } => {
                assert_eq!(new_expiration, 6000);
                assert_eq!(sectors.len(), 1);
                assert_eq!((sectors[0].deadline, sectors[0].partition), (3, 0));
                assert_eq!(
                    sectors[0].sectors.iter().copied().collect::<Vec<_>>(),
                    vec![0]
                );
            }
            other => panic!("{other:?}"),
        }
        p.rpc.stop();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_node_accepts_the_declaration() {
    use lode_node::core::CoreConfig;
    use lode_node::genesis::{GenesisFile, unix_now};
    use lode_node::service::{NodeConfig, NodeService};
    use lode_testkit::harness::FakeVerifier;

    bounded(async {
        let policy = Policy::devnet();
        let g = lode_testkit::harness::one_miner_genesis(&policy, &worker_key(), 4);
        let miner = *g.miner_ids().first().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let genesis = GenesisFile {
            policy: policy.clone(),
            timestamp: unix_now().saturating_sub(600),
            genesis: g,
        };
        let svc = NodeService::start(
            NodeConfig {
                dir: dir.path().join("node"),
                genesis,
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
                bootstrap: Vec::new(),
                core: CoreConfig::default(),
                status_interval: Duration::from_secs(1),
            },
            Box::new(FakeVerifier),
        )
        .await
        .unwrap();
        let node = Arc::new(svc.clone());
        let view = node.proving_view(miner).await.unwrap();
        let next = view.head_epoch + 1;
        let sector = view
            .deadlines
            .iter()
            .filter(|d| next < d.fault_cutoff)
            .flat_map(|d| d.partitions.iter().flat_map(|p| p.sectors.iter()))
            .map(|s| s.sector_number)
            .next()
            .expect("a sector whose deadline's fault cutoff is ahead");
        let info = node.chain_head().await.unwrap();

        let store_dir = dir.path().join("sectors");
        let store = SectorStore::new(&store_dir, miner.0, SectorSize::S2KiB);
        let prover = Arc::new(Prover::with_params(
            store.clone(),
            SectorSize::S2KiB,
            lode_testkit::harness::unused_params(),
            lode_testkit::harness::unused_params(),
        ));
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = ProviderMetrics::register(&mut registry);
        let poster = Poster::new(miner, worker_key(), policy.clone(), prover, metrics.clone());
        let (_mining, mining_rx) = watch::channel(MiningEvents::default());
        let token = "ab".repeat(32);
        let pipeline = Arc::new(Pipeline::new(
            node.clone(),
            PipelineStore::open(&dir.path().join("pipeline")).unwrap(),
            poster.messenger(),
            lode_testkit::harness::unused_params(),
            policy.clone(),
            PipelineConfig::new(
                miner,
                SectorSize::S2KiB,
                store_dir.clone(),
                dir.path().join("scratch"),
                dir.path().join("cache"),
                &policy,
            ),
        ));
        let (addr, rpc) = rpc::serve(
            "127.0.0.1:0".parse().unwrap(),
            ProviderRpc {
                api: node.clone(),
                identity: Identity {
                    actor: miner,
                    owner: view.worker,
                    worker: view.worker,
                    sector_size: SectorSize::S2KiB,
                    network: "devnet".into(),
                    node_api: "in-process".into(),
                    started_at: unix_now(),
                },
                store,
                poster: poster.handle(),
                mining: mining_rx,
                metrics,
                pipeline: Ok(pipeline),
                market: Err("not in this test".into()),
            },
            token.clone(),
        )
        .await
        .unwrap();
        let url = format!("http://{addr}");
        let client = |token: Option<String>| {
            ProviderClient::new(ApiInfo {
                url: url.clone(),
                token,
            })
            .unwrap()
        };

        // The chain's sectors, none on disk; the head as the node reports it.
        let c = client(None);
        let i = c.info().await.unwrap();
        assert_eq!(i.head, Some(info));
        let list = c.sectors().await.unwrap();
        assert_eq!(list.sectors.len(), 4);
        assert!(
            list.sectors
                .iter()
                .all(|s| s.dir.is_none() && s.chain.is_some())
        );

        // Refused without the token, the mempool untouched.
        assert!(matches!(
            c.declare_faults(&[sector]).await,
            Err(ClientError::Unauthorized)
        ));
        let pending = |svc: NodeService| async move {
            svc.with_core(|c| lode_node::rpc::query::pending(c))
                .await
                .unwrap()
        };
        assert!(pending(svc.clone()).await.is_empty());
        // With it, the message is in the node's mempool.
        let d = client(Some(token.clone()))
            .declare_faults(&[sector])
            .await
            .unwrap();
        let pending = pending(svc.clone()).await;
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, d.message);

        // Pledges: protected, bounded, numbered above the chain's sectors (0–3), listed by the
        // pipeline and by a sector's status; a removal moves the record, a second is refused.
        assert!(matches!(c.pledge(1).await, Err(ClientError::Unauthorized)));
        let owner = client(Some(token.clone()));
        for bad in [0, rpc::MAX_PLEDGE + 1] {
            let e = owner.pledge(bad).await.unwrap_err();
            assert_eq!(rpc_code(&e), Some(codes::INVALID_PARAMS), "{e}");
        }
        let pledged = owner.pledge(2).await.unwrap();
        assert_eq!(pledged.sectors, vec![4, 5]);
        let listed = c.pipeline().await.unwrap();
        assert_eq!(listed.disabled, None);
        let states: Vec<(u64, SectorState)> = listed
            .sectors
            .iter()
            .map(|s| (s.sector_number, s.state))
            .collect();
        assert_eq!(
            states,
            vec![(4, SectorState::WaitDeals), (5, SectorState::WaitDeals)]
        );
        let st = c.sector_status(5).await.unwrap();
        assert_eq!(
            st.pipeline.as_ref().map(|p| p.state),
            Some(SectorState::WaitDeals)
        );
        assert!(st.sector.is_none(), "not sealed, not on chain");
        let st = c.sector_status(2).await.unwrap();
        assert!(st.pipeline.is_none());
        assert!(
            st.sector.and_then(|s| s.chain).is_some(),
            "a genesis sector"
        );
        let e = c.sector_status(99).await.unwrap_err();
        assert_eq!(rpc_code(&e), Some(codes::INVALID_PARAMS), "{e}");
        assert!(matches!(
            c.remove_sector(5).await,
            Err(ClientError::Unauthorized)
        ));
        let removed = owner.remove_sector(5).await.unwrap();
        assert_eq!(removed.state, SectorState::Removing);
        let e = owner.remove_sector(5).await.unwrap_err();
        assert_eq!(rpc_code(&e), Some(codes::REFUSED), "{e}");
        let e = owner.remove_sector(99).await.unwrap_err();
        assert_eq!(rpc_code(&e), Some(codes::INVALID_PARAMS), "{e}");
        // Terminations: only sectors the pipeline sealed and the chain holds.
        assert!(matches!(
            c.terminate_sector(2).await,
            Err(ClientError::Unauthorized)
        ));
        let e = owner.terminate_sector(2).await.unwrap_err();
        assert_eq!(rpc_code(&e), Some(codes::REFUSED), "{e}");
        assert!(e.to_string().contains("not in the pipeline"), "{e}");
        let e = owner.terminate_sector(4).await.unwrap_err();
        assert_eq!(rpc_code(&e), Some(codes::REFUSED), "{e}");
        assert!(e.to_string().contains("remove this one"), "{e}");
        let e = owner.terminate_sector(99).await.unwrap_err();
        assert_eq!(rpc_code(&e), Some(codes::REFUSED), "{e}");
        assert!(e.to_string().contains("nothing to terminate"), "{e}");
        // No phase has been queued (the pipeline is not ticking): no tasks, no error.
        let tasks = c.tasks(false).await.unwrap();
        assert_eq!((tasks.disabled, tasks.tasks.len()), (None, 0));
        // The next pledge does not reuse a number.
        assert_eq!(owner.pledge(1).await.unwrap().sectors, vec![6]);
        rpc.stop();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_of_many_partitions_goes_out_in_messages_that_each_fit_a_block() {
    bounded(async {
        let params = tokio::task::spawn_blocking(lode_testkit::harness::shared_params)
            .await
            .unwrap();
        // A block gas limit that takes two one-sector partitions' Window PoSt, not three.
        let mut policy = Policy::devnet();
        policy.block_gas_limit = 5_000_000;
        let mut p =
            Provider::start_with_policy(Arc::new(params.window.clone()), policy.clone()).await;
        // Deadline 3 with seven partitions, each holding sector 0 (on disk).
        let open = 100;
        let many = |head: Epoch, posted: &[u64]| {
            let mut v = window_view(head, open, p.comm_r, &[], posted);
            let part = PartitionView {
                index: 0,
                sectors: vec![SectorRef {
                    sector_number: 0,
                    comm_r: p.comm_r,
                }],
                faults: Vec::new(),
                recoveries: Vec::new(),
            };
            v.deadlines[0].partitions = (0..7)
                .map(|index| PartitionView {
                    index,
                    ..part.clone()
                })
                .collect();
            v
        };
        let posts = |node: &FakeNode| -> Vec<(SignedMessage, Vec<u64>)> {
            node.pushed()
                .into_iter()
                .filter_map(|m| match miner_method(&m) {
                    MinerMethod::SubmitWindowPost(w) => {
                        Some((m, w.partitions.iter().map(|x| x.index).collect()))
                    }
                    _ => None,
                })
                .collect()
        };
        p.node.set_view(many(open - 1, &[]));
        let r = p.poster.tick(p.node.as_ref()).await.unwrap();
        assert_eq!((r.proved, r.submitted), (vec![3], vec![3]));
        let sent = posts(&p.node);
        let groups: Vec<Vec<u64>> = sent.iter().map(|(_, g)| g.clone()).collect();
        assert_eq!(groups, [vec![0, 1], vec![2, 3], vec![4, 5], vec![6]]);
        for (m, _) in &sent {
            // Every message fits a block, and the mempool's checks.
            assert!(m.message.gas_limit <= policy.block_gas_limit);
            assert!(m.encoded_len() as u64 <= policy.max_message_size);
            let needed = policy.gas_base + policy.gas_per_byte * m.encoded_len() as u64;
            assert!(m.message.gas_limit >= needed);
        }
        // The first two land; a tick before the resend delay sends nothing, one after it sends
        // only the partitions still not on chain, split again.
        p.node.set_view(many(open + 1, &[0, 1, 2, 3]));
        let r = p.poster.tick(p.node.as_ref()).await.unwrap();
        assert!(r.submitted.is_empty());
        p.node.set_view(many(open + 4, &[0, 1, 2, 3]));
        let r = p.poster.tick(p.node.as_ref()).await.unwrap();
        assert_eq!(r.submitted, vec![3]);
        let again: Vec<Vec<u64>> = posts(&p.node)[sent.len()..]
            .iter()
            .map(|(_, g)| g.clone())
            .collect();
        assert_eq!(again, [vec![4, 5], vec![6]]);
        // All posted: confirmed, nothing more sent.
        p.node.set_view(many(open + 5, &[0, 1, 2, 3, 4, 5, 6]));
        let r = p.poster.tick(p.node.as_ref()).await.unwrap();
        assert_eq!((r.confirmed, r.submitted), (vec![3], vec![]));
        p.rpc.stop();
    })
    .await;
}

/// Deadline 3's instance opening at `open` (window 20 epochs, challenge 2 before it and drawn),
/// at `head`: sector 0 (on disk) and 1 (not), with `faults`, and `posted`.
fn window_view(
    head: Epoch,
    open: Epoch,
    comm_r: [u8; 32],
    faults: &[u64],
    posted: &[u64],
) -> ProvingView {
    let mut v = view(head, comm_r, faults, &[]);
    let dl = &mut v.deadlines[0];
    (dl.open, dl.close, dl.challenge, dl.fault_cutoff) = (open, open + 20, open - 2, open - 5);
    dl.randomness = Some([open as u8; 32]);
    dl.posted = posted.to_vec();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poster_walks_its_windows_and_judges_lost_ones_by_the_chain() {
    bounded(async {
        let params = tokio::task::spawn_blocking(lode_testkit::harness::shared_params)
            .await
            .unwrap();
        let mut p = Provider::start_with(Arc::new(params.window.clone())).await;
        let c = p.client(None);
        let state = |st: &lode_provider::status::ProvingStatus| {
            let d = &st.deadlines[0];
            (d.state, d.last_result, d.missed)
        };
        let posts = |node: &FakeNode| -> Vec<lode_chain::actors::miner::WindowPostParams> {
            node.pushed()
                .iter()
                .filter_map(|m| match miner_method(m) {
                    MinerMethod::SubmitWindowPost(w) => Some(w),
                    _ => None,
                })
                .collect()
        };
        let (a, b, d) = (100, 340, 580); // three windows of deadline 3, a period (240) apart

        // Window a, seen through: waiting before the challenge is deep, proved once it is (sector
        // 1, faulty and not on disk, is not asked for), submitted once the window opens,
        // confirmed when the chain shows it posted, and kept as the last result when it closes.
        p.node.set_view(window_view(a - 2, a, p.comm_r, &[1], &[]));
        let r = p.poster.tick(p.node.as_ref()).await.unwrap();
        assert!(r.proved.is_empty());
        assert_eq!(state(&c.proving().await.unwrap()).0, PostState::Waiting);
        p.node.set_view(window_view(a - 1, a, p.comm_r, &[1], &[]));
        let r = p.poster.tick(p.node.as_ref()).await.unwrap();
        assert_eq!(
            (r.proved.as_slice(), r.submitted.as_slice()),
            (&[3][..], &[3][..])
        );
        // The proof ran as a time-sensitive task of the scheduler, finished and released.
        let tasks = p.tasks.list().unwrap();
        assert_eq!(tasks.len(), 1);
        assert_eq!(
            (tasks[0].kind, tasks[0].state, tasks[0].sector),
            (
                lode_provider::tasks::TaskKind::WindowPost,
                lode_provider::tasks::TaskState::Done,
                None
            )
        );
        assert!(tasks[0].started_at.is_some() && tasks[0].finished_at.is_some());
        assert_eq!(p.tasks.counts().unwrap(), (0, 0));
        let sent = posts(&p.node);
        assert_eq!(sent.len(), 1);
        assert_eq!(
            (
                sent[0].deadline,
                sent[0].partitions.len(),
                sent[0].proofs.len()
            ),
            (3, 1, 1)
        );
        assert!(sent[0].partitions[0].skipped.is_empty());
        // The chain's verifier takes it: one sector proven in a partition of two (the circuit's
        // second place is filled as the verifier fills it).
        let verifier = SnarkVerifier::new(lode_testkit::harness::test_params());
        let statement = WindowPostStatement {
            size: SectorSize::S2KiB,
            randomness: [a as u8; 32],
            sectors: vec![PublicSector {
                sector_number: 0,
                comm_r: Node(p.comm_r),
            }],
        };
        verifier
            .verify_window_post(&statement, &sent[0].proofs[0])
            .unwrap();
        assert_eq!(
            state(&c.proving().await.unwrap()),
            (PostState::Submitted, None, 0)
        );
        p.node.set_view(window_view(a + 1, a, p.comm_r, &[1], &[0]));
        let r = p.poster.tick(p.node.as_ref()).await.unwrap();
        assert_eq!(r.confirmed, vec![3]);
        assert_eq!(
            state(&c.proving().await.unwrap()),
            (PostState::Confirmed, None, 0)
        );
        p.node.set_view(window_view(a + 19, b, p.comm_r, &[1], &[]));
        let r = p.poster.tick(p.node.as_ref()).await.unwrap();
        assert!(r.missed.is_empty());
        assert_eq!(
            state(&c.proving().await.unwrap()),
            (PostState::Waiting, Some(WindowResult::Confirmed), 0)
        );

        // Window b: submitted, then the poster next looks after the close without having seen
        // the proof on chain (it landed in the last epochs, or a reorganisation hid it). The chain
        // did not fault sector 0: the proof was taken, not missed.
        p.node.set_view(window_view(b - 1, b, p.comm_r, &[1], &[]));
        let r = p.poster.tick(p.node.as_ref()).await.unwrap();
        assert_eq!(r.submitted, vec![3]);
        p.node.set_view(window_view(b + 19, d, p.comm_r, &[1], &[]));
        let r = p.poster.tick(p.node.as_ref()).await.unwrap();
        assert_eq!(
            (r.confirmed.as_slice(), r.missed.as_slice()),
            (&[3][..], &[][..])
        );
        assert_eq!(
            state(&c.proving().await.unwrap()),
            (PostState::Waiting, Some(WindowResult::Confirmed), 0)
        );
        assert_eq!(p.metrics.window_post_missed.get(), 0);

        // Window d: the same, but the chain faulted sector 0 at the close: missed.
        p.node.set_view(window_view(d - 1, d, p.comm_r, &[1], &[]));
        let r = p.poster.tick(p.node.as_ref()).await.unwrap();
        assert_eq!(r.submitted, vec![3]);
        p.node
            .set_view(window_view(d + 19, d + 240, p.comm_r, &[0, 1], &[]));
        let r = p.poster.tick(p.node.as_ref()).await.unwrap();
        assert_eq!(
            (r.confirmed.as_slice(), r.missed.as_slice()),
            (&[][..], &[3][..])
        );
        let st = c.proving().await.unwrap();
        assert_eq!(
            state(&st),
            (PostState::Waiting, Some(WindowResult::Missed), 1)
        );
        assert_eq!(st.missed, 1);
        assert_eq!(p.metrics.window_post_missed.get(), 1);
        assert_eq!(posts(&p.node).len(), 3);

        p.rpc.stop();
    })
    .await;
}

/// Sector 0's sealed directory in the provider's store.
fn sector0(p: &Provider) -> lode_sealing::post::SealedSector {
    let store = SectorStore::new(p._dir.path().join("sectors"), MINER.0, SectorSize::S2KiB);
    lode_sealing::post::SealedSector::open(&store.scan()[&0]).unwrap()
}

/// Flips the bits of one byte of `path` at `offset`.
fn flip(path: &std::path::Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

/// [`view`] at `head`, with deadline 3's fault cutoff 5 epochs ahead (its window 5 after that).
fn view_before_cutoff(head: Epoch, comm_r: [u8; 32], faults: &[u64]) -> ProvingView {
    let mut v = view(head, comm_r, faults, &[]);
    let dl = &mut v.deadlines[0];
    (dl.fault_cutoff, dl.open, dl.close, dl.challenge) = (head + 5, head + 10, head + 30, head + 8);
    v
}

/// A corrupted replica byte under a challenged leaf — not a missing file — fails the proving
/// check (`provider_check` says why) and gets the sector declared faulty; restored, it passes and
/// is declared recovered. A truncated tree R, a damaged one and a `comm_r` the chain does not
/// hold fail too; deadlines whose fault cutoff is far are not checked by the poster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_leaf_fails_the_check_and_gets_the_sector_declared_faulty() {
    use lode_provider::prover::{CHECK_CHALLENGES, check_randomness};
    bounded(async {
        let mut p = Provider::start().await;
        let c = p.client(None);
        let sealed = sector0(&p);
        let replica = sealed.dir.sealed();
        let leaves = |epoch: Epoch| {
            lode_proofs::post::leaf_challenges(
                SectorSize::S2KiB,
                &check_randomness(MINER.0, epoch),
                0,
                CHECK_CHALLENGES,
            )
        };

        // Healthy: sector 0 passes, sector 1 (not on disk) fails.
        p.node.set_view(view_before_cutoff(10, p.comm_r, &[]));
        let check = c.check(None).await.unwrap();
        assert_eq!((check.head_epoch, check.deadline), (10, None));
        let verdicts: Vec<_> = check
            .sectors
            .iter()
            .map(|s| {
                (
                    s.sector_number,
                    s.deadline,
                    s.partition,
                    s.ok,
                    s.reason.clone(),
                )
            })
            .collect();
        assert_eq!(
            verdicts,
            vec![
                (0, 3, 0, true, None),
                (1, 3, 0, false, Some("not in the sector store".into()))
            ]
        );
        eprintln!(
            "proving check: {} sectors in {:.4} s",
            check.sectors.len(),
            check.seconds
        );
        // Timed alone: one 2 KiB sector, ten challenged leaves.
        let store = SectorStore::new(p._dir.path().join("sectors"), MINER.0, SectorSize::S2KiB);
        let refs = [SectorRef {
            sector_number: 0,
            comm_r: p.comm_r,
        }];
        let started = std::time::Instant::now();
        for e in 0..50 {
            assert!(store.check(&refs, e)[0].1.is_ok());
        }
        eprintln!(
            "proving check of one 2 KiB sector: {:.2} ms (mean of 50, scan included)",
            started.elapsed().as_secs_f64() * 1000.0 / 50.0
        );

        // One byte of a leaf the check challenges at epoch 10. (Tree R keeps no row below 64
        // leaves, so an opening recomputes its leaf's 64-leaf subtree from the replica: in a 2 KiB
        // sector that is every leaf; in a larger one, damage elsewhere is found at the epochs
        // whose leaves fall near it.)
        let found = 10;
        let leaf = leaves(found)[0];
        flip(&replica, leaf * 32 + 3);
        let check = c.check(Some(3)).await.unwrap();
        let s0 = &check.sectors[0];
        assert!(!s0.ok);
        assert!(
            s0.reason
                .as_deref()
                .unwrap()
                .contains("challenged leaves do not open"),
            "{s0:?}"
        );

        // The poster declares both faulty before the cutoff, and says why.
        let before = p.node.pushed().len();
        let report = p.poster.tick(p.node.as_ref()).await.unwrap();
        assert_eq!(report.faults, vec![0, 1]);
        assert_eq!(report.failed_checks, vec![0, 1]);
        let pushed = p.node.pushed();
        assert_eq!(pushed.len(), before + 1);
        match miner_method(pushed.last().unwrap()) {
            MinerMethod::DeclareFaults(locs) => {
                assert_eq!(locs.len(), 1);
                assert_eq!(
                    locs[0].sectors.iter().copied().collect::<Vec<_>>(),
                    vec![0, 1]
                );
            }
            other => panic!("{other:?}"),
        }
        let st = c.proving().await.unwrap();
        let failures: Vec<_> = st
            .check_failures
            .iter()
            .map(|f| (f.sector_number, f.deadline, f.partition, f.epoch))
            .collect();
        assert_eq!(failures, vec![(0, 3, 0, found), (1, 3, 0, found)]);
        // Declared once per deadline instance: the next tick sends nothing new.
        p.node.set_view(view_before_cutoff(found, p.comm_r, &[]));
        let again = p.poster.tick(p.node.as_ref()).await.unwrap();
        assert!(again.faults.is_empty(), "{again:?}");

        // Restored before the cutoff: sector 0 passes again and is declared recovered in the same
        // deadline instance, to be proven in its window; sector 1 stays faulty.
        flip(&replica, leaf * 32 + 3);
        let mut same = view_before_cutoff(found, p.comm_r, &[0, 1]);
        same.head_epoch = found + 1;
        p.node.set_view(same);
        let report = p.poster.tick(p.node.as_ref()).await.unwrap();
        assert_eq!(report.recoveries, vec![0]);
        assert!(matches!(
            miner_method(p.node.pushed().last().unwrap()),
            MinerMethod::DeclareRecoveries(_)
        ));
        let st = c.proving().await.unwrap();
        assert_eq!(
            st.check_failures
                .iter()
                .map(|f| f.sector_number)
                .collect::<Vec<_>>(),
            vec![1]
        );

        // A truncated tree R, a damaged one, a replica cut short, a comm_r the chain does not
        // hold: each fails, with its reason.
        let tree = sealed.dir.tree_r();
        let whole = std::fs::read(&tree).unwrap();
        std::fs::write(&tree, &whole[..whole.len() / 2]).unwrap();
        let reason = |check: lode_provider::rpc::ProvingCheck| check.sectors[0].reason.clone();
        assert!(reason(c.check(Some(3)).await.unwrap()).is_some());
        let mut damaged = whole.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 0x01;
        std::fs::write(&tree, &damaged).unwrap();
        let why = reason(c.check(Some(3)).await.unwrap()).unwrap();
        assert!(why.contains("challenged leaves do not open"), "{why}");
        std::fs::write(&tree, &whole).unwrap();
        let replica_bytes = std::fs::read(&replica).unwrap();
        std::fs::write(&replica, &replica_bytes[..1024]).unwrap();
        assert!(reason(c.check(Some(3)).await.unwrap()).is_some());
        std::fs::write(&replica, &replica_bytes).unwrap();
        assert_eq!(reason(c.check(Some(3)).await.unwrap()), None);
        p.node.set_view(view_before_cutoff(found + 1, [7; 32], &[]));
        let why = reason(c.check(Some(3)).await.unwrap()).unwrap();
        assert!(why.contains("the chain's is"), "{why}");

        // One deadline, or none: an empty deadline has nothing to check, an index past the
        // period is refused.
        assert!(c.check(Some(2)).await.unwrap().sectors.is_empty());
        assert_eq!(
            rpc_code(&c.check(Some(48)).await.unwrap_err()),
            Some(codes::INVALID_PARAMS)
        );

        // A deadline whose fault cutoff is further than the check's reach is left alone.
        let mut far = view_before_cutoff(found + 2, p.comm_r, &[]);
        far.deadlines[0].fault_cutoff = found + 200;
        p.node.set_view(far);
        let before = p.node.pushed().len();
        let report = p.poster.tick(p.node.as_ref()).await.unwrap();
        assert!(
            report.faults.is_empty() && report.failed_checks.is_empty(),
            "{report:?}"
        );
        assert_eq!(p.node.pushed().len(), before);
        p.rpc.stop();
    })
    .await;
}

/// The safety margin: the poster proves from the window's opening, tries again a proof that
/// proved nothing, submits only before `close − margin`, and gives a window up (once) when the
/// margin is reached without a proof.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poster_proves_within_its_margin_and_retries() {
    use lode_proofs::circuit::post::{PostCircuit, PostKind};
    use lode_provider::poster::ProvingSettings;
    bounded(async {
        let window = tokio::task::spawn_blocking(|| {
            let id = PostKind::Window.params_id(SectorSize::S2KiB);
            lode_testkit::harness::test_params()
                .get_or_generate_insecure(&id, || PostCircuit {
                    kind: PostKind::Window,
                    size: SectorSize::S2KiB,
                    witness: None,
                })
                .unwrap()
                .0
        })
        .await
        .unwrap();
        let mut p = Provider::start_with(Arc::new(window)).await;
        let margin = 5;
        p.poster = p.poster.with_settings(ProvingSettings {
            margin_epochs: margin,
            check_ahead_epochs: None,
        });
        let c = p.client(None);
        let posts = |node: &FakeNode| {
            node.pushed()
                .iter()
                .filter(|m| matches!(miner_method(m), MinerMethod::SubmitWindowPost(_)))
                .count()
        };
        let replica = sector0(&p).dir.sealed();
        let aside = replica.with_extension("aside");
        let (a, b, d) = (100, 340, 580); // windows of 20 epochs: close = open + 20

        // Window a: sector 0's replica is away as the window opens: nothing proven, nothing sent.
        std::fs::rename(&replica, &aside).unwrap();
        p.node.set_view(window_view(a - 1, a, p.comm_r, &[1], &[]));
        let r = p.poster.tick(p.node.as_ref()).await.unwrap();
        assert_eq!(
            (r.proved.as_slice(), r.submitted.as_slice()),
            (&[3][..], &[][..])
        );
        assert_eq!(posts(&p.node), 0);
        let st = c.proving().await.unwrap();
        assert_eq!(
            (st.margin_epochs, st.deadlines[0].submit_by),
            (margin, a + 20 - margin)
        );
        // Back: tried again at the next tick, proven and submitted.
        std::fs::rename(&aside, &replica).unwrap();
        p.node.set_view(window_view(a, a, p.comm_r, &[1], &[]));
        let r = p.poster.tick(p.node.as_ref()).await.unwrap();
        assert_eq!(r.submitted, vec![3]);
        assert_eq!(posts(&p.node), 1);

        // Window b, first seen at close − margin − 1 (the next epoch is close − margin): too
        // late to start. Given up, reported once, nothing sent.
        p.node
            .set_view(window_view(b + 20 - margin - 1, b, p.comm_r, &[1], &[]));
        let r = p.poster.tick(p.node.as_ref()).await.unwrap();
        assert_eq!(
            (r.proved.as_slice(), r.late.as_slice()),
            (&[][..], &[3][..])
        );
        p.node
            .set_view(window_view(b + 20 - margin, b, p.comm_r, &[1], &[]));
        let r = p.poster.tick(p.node.as_ref()).await.unwrap();
        assert!(r.late.is_empty() && r.proved.is_empty(), "{r:?}");
        assert_eq!(posts(&p.node), 1);
        assert_eq!(
            c.proving().await.unwrap().deadlines[0].state,
            PostState::Waiting
        );

        // Window d, first seen one epoch earlier: the last epoch the margin allows. Proven and
        // submitted.
        p.node
            .set_view(window_view(d + 20 - margin - 2, d, p.comm_r, &[1], &[]));
        let r = p.poster.tick(p.node.as_ref()).await.unwrap();
        assert_eq!(
            (r.proved.as_slice(), r.submitted.as_slice()),
            (&[3][..], &[3][..])
        );
        assert_eq!(posts(&p.node), 2);
        p.rpc.stop();
    })
    .await;
}
