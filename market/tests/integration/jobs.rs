//! The provider's compute-job service against the real chain rules (an in-memory chain through
//! `lode_testkit`'s harness) and the real executor: three providers holding the same piece take a
//! `replicated(3)` job, run it, commit, reveal after the deadline and are paid; with one provider's
//! results tampered, it is outvoted and its collateral slashed; a provider restarted mid-job
//! resumes from its records and sends no step twice.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lode_chain::actors::compute::{
    self, ComputeMethod, JobInput, JobLimits, JobTerms, Outcome, Verification,
};
use lode_chain::actors::{COMPUTE, market};
use lode_chain::message::{Message, Method, SignedMessage};
use lode_chain::types::{ActorId, Address, TokenAmount};
use lode_market::compute::{Executor, load_module};
use lode_market::jobs::modules::ModuleStore;
use lode_market::jobs::records::JobPhase;
use lode_market::jobs::service::Tamper;
use lode_market::jobs::{ExecutorRunner, JobChain, JobService, JobSettings, executor_job};
use lode_market::provider::RecordMessage;
use lode_market::retrieval::{DirPieces, PieceSource};
use lode_market::{MarketError, MarketResult};
use lode_node::rpc::query::deal_view;
use lode_node::rpc::types::{DealView, JobView, MessageLookupInfo, ReceiptInfo};
use lode_proofs::cid::PieceCid;
use lode_proofs::node::Node;
use lode_testkit::harness::{Harness, key};
use lode_testkit::scenarios::{deal, fund_market, publish};

const PAYMENT: TokenAmount = TokenAmount::atto(1_000_000_000_000_000_007);
const COLLATERAL: TokenAmount = TokenAmount::atto(2_000_000_000_000_000_001);

/// The chain the services share: messages wait in a pool until the test applies the next epoch.
#[derive(Clone)]
struct TestChain(Arc<Mutex<ChainState>>);

struct ChainState {
    h: Harness,
    pool: Vec<SignedMessage>,
    receipts: BTreeMap<[u8; 32], MessageLookupInfo>,
    pushed: BTreeMap<[u8; 32], u32>,
}

impl TestChain {
    fn step(&self) {
        let mut s = self.0.lock().unwrap();
        let msgs = std::mem::take(&mut s.pool);
        let receipts = s.h.step(Vec::new(), msgs.clone());
        let epoch = s.h.epoch();
        for (m, r) in msgs.iter().zip(receipts) {
            s.receipts.insert(
                m.id(),
                MessageLookupInfo {
                    epoch,
                    tipset: Vec::new(),
                    receipt: ReceiptInfo {
                        exit_code: r.exit_code.value(),
                        exit: format!("{:?}", r.exit_code),
                        gas_used: r.gas_used,
                        fee: r.fee,
                        return_data: r.return_data,
                        error: r.error,
                    },
                },
            );
        }
    }

    fn job(&self, id: u64) -> compute::Job {
        let s = self.0.lock().unwrap();
        s.h.chain.view(|rt| compute::job(rt, id)).unwrap().unwrap()
    }
}

impl JobChain for TestChain {
    async fn head(&self) -> MarketResult<u64> {
        Ok(self.0.lock().unwrap().h.epoch())
    }

    async fn open_jobs(&self, from: u64) -> MarketResult<Vec<JobView>> {
        let s = self.0.lock().unwrap();
        let policy = s.h.policy.clone();
        Ok(s.h
            .chain
            .view(|rt| {
                let next = compute::load(rt)?.next_job_id;
                let mut out = Vec::new();
                for id in from..next {
                    if let Some(j) = compute::job(rt, id)?
                        && j.outcome.is_none()
                    {
                        out.push(JobView::of(id, &j, &policy));
                    }
                }
                Ok::<_, lode_chain::ChainError>(out)
            })
            .unwrap())
    }

    async fn job(&self, id: u64) -> MarketResult<Option<JobView>> {
        let s = self.0.lock().unwrap();
        let policy = s.h.policy.clone();
        Ok(s.h
            .chain
            .view(|rt| compute::job(rt, id))
            .unwrap()
            .map(|j| JobView::of(id, &j, &policy)))
    }

    async fn provider_deals(&self, provider: ActorId) -> MarketResult<Vec<DealView>> {
        let s = self.0.lock().unwrap();
        Ok(s.h
            .chain
            .view(|rt| {
                let next = market::load(rt)?.next_deal_id;
                let mut out = Vec::new();
                for id in 0..next {
                    if let Some(d) = market::deal(rt, id)?
                        && d.proposal.provider == provider
                    {
                        out.push(deal_view(id, &d));
                    }
                }
                Ok::<_, lode_chain::ChainError>(out)
            })
            .unwrap())
    }

    async fn send(
        &self,
        method: ComputeMethod,
        value: TokenAmount,
        _checks: usize,
        record: RecordMessage,
    ) -> MarketResult<[u8; 32]> {
        let mut s = self.0.lock().unwrap();
        let from = s.h.id("worker");
        let committed = s.h.chain.view(|rt| rt.actor(from)).unwrap().unwrap().nonce;
        let nonce = committed + s.pool.len() as u64;
        let m = Message {
            from: Address::Id(from),
            to: Address::Id(COMPUTE),
            nonce,
            value,
            method: Method::Compute(method),
            gas_limit: 100_000_000,
            gas_price: s.h.policy.min_gas_price,
        }
        .sign(&s.h.policy.network, &key("worker"));
        record(&m)?;
        let id = m.id();
        s.pool.push(m);
        Ok(id)
    }

    async fn push_again(&self, message: SignedMessage) -> MarketResult<()> {
        let mut s = self.0.lock().unwrap();
        *s.pushed.entry(message.id()).or_default() += 1;
        if !s.receipts.contains_key(&message.id()) && !s.pool.contains(&message) {
            return Err(MarketError::Config("the test chain lost a message".into()));
        }
        Ok(())
    }

    async fn search(&self, id: [u8; 32]) -> MarketResult<Option<MessageLookupInfo>> {
        Ok(self.0.lock().unwrap().receipts.get(&id).cloned())
    }
}

struct World {
    chain: TestChain,
    miners: Vec<ActorId>,
    piece: PieceCid,
    payload: Vec<u8>,
    module: Vec<u8>,
    dir: tempfile::TempDir,
}

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/jobs")
}

/// Three miners with an active deal each for the same piece (the example jobs' `input.txt`).
fn world() -> World {
    let mut h = Harness::new();
    let payload = std::fs::read(examples().join("input.txt")).unwrap();
    let comm_p = h.piece("job-input", 1024);
    let piece = PieceCid::new(Node(comm_p)).unwrap();
    let exp = h.cc_expiration();
    let start = h.epoch() + 200;
    let mut miners = Vec::new();
    let mut deals = Vec::new();
    for _ in 0..3 {
        let m = h.create_miner(TokenAmount::tokens(10));
        fund_market(&mut h, m);
        let proposal = deal(&h, m, comm_p, 1024, false, start, exp);
        let ids = publish(&mut h, vec![proposal]);
        miners.push(m);
        deals.push(ids[0]);
    }
    for (i, &m) in miners.iter().enumerate() {
        let r = h.precommit(m, 1, vec![deals[i]], &[(comm_p, 1024)], exp);
        assert!(r.exit_code.is_success(), "{}", r.error);
    }
    for &m in &miners {
        assert!(h.prove_commit(m, 1).exit_code.is_success());
    }
    let module = load_module(&examples().join("wc.wat")).unwrap();
    World {
        chain: TestChain(Arc::new(Mutex::new(ChainState {
            h,
            pool: Vec::new(),
            receipts: BTreeMap::new(),
            pushed: BTreeMap::new(),
        }))),
        miners,
        piece,
        payload,
        module,
        dir: tempfile::tempdir().unwrap(),
    }
}

type Service = Arc<JobService<TestChain, ExecutorRunner>>;

impl World {
    /// Provider `i`'s job service (its own directory, records and module store).
    fn service(&self, i: usize, tamper: bool) -> Service {
        let root = self.dir.path().join(format!("provider-{i}"));
        let pieces_dir = root.join("pieces");
        std::fs::create_dir_all(&pieces_dir).unwrap();
        let pieces = DirPieces::new(&pieces_dir);
        std::fs::write(pieces.path(&self.piece), &self.payload).unwrap();
        let modules = ModuleStore::open(root.join("jobs/modules"), 1 << 20).unwrap();
        let hash = *blake3::hash(&self.module).as_bytes();
        modules.put(&hash, &self.module).unwrap();
        // A restarted provider reopens its database once the old handle lets go of its lock.
        let records = (0..100)
            .find_map(|_| {
                lode_market::provider::records::MarketRecords::open(&root.join("market"))
                    .ok()
                    .or_else(|| {
                        std::thread::sleep(Duration::from_millis(100));
                        None
                    })
            })
            .unwrap();
        let records = lode_market::jobs::records::JobRecords::new(records);
        let mut service = JobService::new(
            self.miners[i],
            JobSettings::default(),
            root.join("jobs"),
            self.chain.clone(),
            Arc::new(ExecutorRunner::new().unwrap()),
            Arc::new(pieces) as Arc<dyn PieceSource>,
            modules,
            records,
        );
        service.set_tamper(if tamper { Tamper::All } else { Tamper::Never });
        Arc::new(service)
    }

    fn terms(&self, deadline_in: u64) -> JobTerms {
        let epoch = self.chain.0.lock().unwrap().h.epoch();
        JobTerms {
            module: *blake3::hash(&self.module).as_bytes(),
            entrypoint: "_start".into(),
            args: vec!["data".into()],
            env: Vec::new(),
            inputs: vec![JobInput {
                piece_cid: self.piece.comm_p().0,
                piece_size: 1024,
                payload_size: self.payload.len() as u64,
                mount: "data".into(),
            }],
            limits: JobLimits {
                fuel: 100_000_000,
                memory_pages: 16,
                timeout_ms: 60_000,
                output_bytes: 4096,
                output_entries: 16,
            },
            payment: PAYMENT,
            provider_collateral: COLLATERAL,
            providers: Vec::new(),
            verification: Verification::Replicated { k: 3 },
            deadline: epoch + deadline_in,
        }
    }

    fn submit(&self, terms: JobTerms) -> u64 {
        let mut s = self.chain.0.lock().unwrap();
        let value = terms.escrow().unwrap();
        let r = s.h.send_ok(
            "client",
            COMPUTE,
            Method::Compute(ComputeMethod::SubmitJob(terms)),
            value,
        );
        lode_testkit::harness::decode(&r.return_data)
    }

    /// What every honest provider must get: the job run here, by a separate executor.
    fn expected(&self, id: u64, terms: &JobTerms) -> [u8; 32] {
        let job = executor_job(id, terms).unwrap();
        let input = self.dir.path().join("expected-input");
        std::fs::write(&input, &self.payload).unwrap();
        let work = self.dir.path().join(format!("expected-{id}"));
        let report = Executor::new()
            .unwrap()
            .run(&job, &self.module, &[input.as_path()], &work)
            .unwrap();
        assert!(matches!(
            report.outcome,
            lode_market::compute::Outcome::Exited(0)
        ));
        report.result.0
    }

    fn balance(&self, id: ActorId) -> u128 {
        self.chain.0.lock().unwrap().h.balance(id).0
    }

    /// Ticks every service and applies an epoch, until job `id` settles (bounded).
    async fn drive(&self, services: &[Service], id: u64) {
        for _ in 0..400 {
            for s in services {
                s.tick().await.unwrap();
            }
            if self.chain.job(id).outcome.is_some() {
                // One more tick so every provider records how it ended.
                for s in services {
                    s.tick().await.unwrap();
                }
                return;
            }
            self.chain.step();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("job {id} did not settle: {:#?}", self.chain.job(id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_providers_run_a_replicated_job_and_are_paid() {
    let w = world();
    let services: Vec<Service> = (0..3).map(|i| w.service(i, false)).collect();
    let terms = w.terms(60);
    let id = w.submit(terms.clone());
    let before: Vec<u128> = w.miners.iter().map(|&m| w.balance(m)).collect();
    w.drive(&services, id).await;
    let job = w.chain.job(id);
    let want = w.expected(id, &terms);
    assert_eq!(
        job.outcome,
        Some(Outcome::Final {
            result: want,
            disputed: false
        }),
        "{job:#?}"
    );
    for (i, &m) in w.miners.iter().enumerate() {
        assert_eq!(w.balance(m) - before[i], PAYMENT.0, "miner {m} paid once");
        let r = services[i].records().get(id).unwrap().unwrap();
        assert_eq!(r.phase, JobPhase::Settled, "{r:?}");
        assert_eq!(r.result, Some(want));
        // The outputs are served: the archive and how the run ended.
        let served = w.dir.path().join(format!("provider-{i}/jobs/outputs/{id}"));
        let outcome: lode_market::jobs::runner::RunRecord =
            serde_json::from_slice(&std::fs::read(served.join("outcome")).unwrap()).unwrap();
        assert_eq!(outcome.result, want);
        let check = lode_market::jobs::runner::check_archive(
            &served.join("outputs"),
            &w.dir.path().join(format!("checked-{i}")),
            outcome.outcome,
            lode_market::compute::OutputBounds {
                max_bytes: 4096,
                max_entries: 16,
            },
        )
        .unwrap();
        assert_eq!(check, want, "the archive hashes to the result");
    }
    // No step was ever pushed twice: every message landed at its first push.
    assert!(w.chain.0.lock().unwrap().pushed.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_lies_is_outvoted_and_slashed() {
    let w = world();
    let services: Vec<Service> = vec![w.service(0, false), w.service(1, false), w.service(2, true)];
    let terms = w.terms(60);
    let id = w.submit(terms.clone());
    let client = w.chain.0.lock().unwrap().h.id("client");
    let liar_before = w.balance(w.miners[2]);
    let client_before = w.balance(client);
    w.drive(&services, id).await;
    let job = w.chain.job(id);
    let want = w.expected(id, &terms);
    assert_eq!(
        job.outcome,
        Some(Outcome::Final {
            result: want,
            disputed: false
        })
    );
    let st = job.settlement.unwrap();
    assert_eq!(st.slashed, vec![(w.miners[2], COLLATERAL)]);
    assert_eq!(
        w.balance(w.miners[2]),
        liar_before,
        "the liar earns nothing"
    );
    // After escrowing three payments, the client gets back the liar's and half its collateral.
    assert_eq!(
        w.balance(client) - client_before,
        PAYMENT.0 + COLLATERAL.0 / 2
    );
    let r = services[2].records().get(id).unwrap().unwrap();
    assert_eq!(r.phase, JobPhase::Settled);
    assert!(r.note.as_deref().unwrap().contains("slashed"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_restarted_mid_job_resumes_from_its_records() {
    let w = world();
    let mut services: Vec<Service> = (0..3).map(|i| w.service(i, false)).collect();
    let id = w.submit(w.terms(60));
    // Let every provider accept and commit, then "restart" provider 0: a new service over the
    // same directory and records (its sled database is reopened).
    for _ in 0..80 {
        for s in &services {
            s.tick().await.unwrap();
        }
        w.chain.step();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = services[0].records().get(id).unwrap();
        if r.is_some_and(|r| r.phase == JobPhase::Committed) {
            break;
        }
    }
    assert_eq!(
        services[0].records().get(id).unwrap().unwrap().phase,
        JobPhase::Committed
    );
    let old = services.remove(0);
    drop(old);
    services.insert(0, w.service(0, false));
    w.drive(&services, id).await;
    let job = w.chain.job(id);
    assert!(
        matches!(job.outcome, Some(Outcome::Final { .. })),
        "{job:#?}"
    );
    assert!(job.settlement.unwrap().slashed.is_empty());
}
