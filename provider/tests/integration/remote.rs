//! The sealing pipeline on a cluster, the same suite on both task engines (the embedded one and a
//! real PostgreSQL server started by the test): a committed-capacity sector's PreCommit1,
//! PreCommit2, Commit1 and Commit2 run as tasks on two in-process workers — the later phases
//! bound to the worker holding the layers, Commit2's inputs fetched over HTTP — and their outputs
//! are the same commitments and a proof that verifies against a local seal of the same sector;
//! a result queued for an older version of the record is never applied; Finalize brings the
//! sector's files from the worker into the store and the worker deletes its copy. A deal sector
//! is sealed on a worker from the data the provider packed and serves it (`[cluster]
//! files_listen`), and here without that server.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lode_proofs::sector::{SectorSize, randomness_node};
use lode_provider::engine::embedded::SledEngine;
use lode_provider::engine::postgres::PgEngine;
use lode_provider::engine::{AnyEngine, TaskEngine, TaskKind, TaskPhase};
use lode_provider::pipeline::kv::Records;
use lode_provider::pipeline::remote::ClusterLink;
use lode_provider::pipeline::{
    Event, RetryPolicy, SectorChain, SectorKind, SectorRecord, SectorState,
};
use lode_provider::tasks::Resources;
use lode_provider::worker::{WorkerConfig, run_worker};
use lode_sealing::seal::{self, SectorId, no_progress};
use lode_sealing::sector_dir::SectorDir;
use lode_testkit::postgres::Postgres;

use crate::common::{MINER, Setup, deal_piece, plain_sectors, setup, setup_over, setup_with};

const SECRET: &str = "remote-suite-secret";

fn worker_config(root: &Path, name: &str, cache: &Path) -> WorkerConfig {
    WorkerConfig {
        name: name.into(),
        kinds: vec![
            TaskKind::PreCommit1,
            TaskKind::PreCommit2,
            TaskKind::Commit1,
            TaskKind::Commit2,
        ],
        resources: Resources {
            cores: 2,
            ..Resources::UNLIMITED
        },
        dir: root.join(name),
        cache_dir: cache.to_path_buf(),
        params_dir: lode_testkit::harness::test_params().dir().to_path_buf(),
        heartbeat: Duration::from_millis(200),
        dead_after: Duration::from_secs(5),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        url: None,
        secret: SECRET.into(),
    }
}

/// Ticks the pipeline until sector `n` reaches `state` (30 s at most).
async fn tick_until(s: &Setup, n: u64, state: SectorState) -> SectorRecord {
    let start = Instant::now();
    loop {
        s.p.tick().await.unwrap();
        let r = s.p.store().get(n).unwrap().unwrap();
        if r.state() == state {
            return r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "sector {n} stuck in {} (waiting: {:?})",
            r.state(),
            s.p.waiting(n)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Moves sector `n` by `Done` events until `state`, recording `chain`.
fn move_to(s: &Setup, n: u64, state: SectorState, chain: Option<SectorChain>) -> SectorRecord {
    let store = s.p.store();
    let mut r = store.get(n).unwrap().unwrap();
    if let Some(c) = chain {
        r = store.record_chain(n, r.version, c, 0).unwrap();
    }
    while r.state() != state {
        r = store
            .apply(n, r.version, &Event::Done, 0, &RetryPolicy::default())
            .unwrap();
    }
    r
}

async fn suite(engine: AnyEngine, records: Option<String>) {
    let Setup { _dir, chain, p } = setup_for(records.as_deref(), RetryPolicy::default());
    let root = _dir.path().to_path_buf();
    let p = p.with_cluster(ClusterLink::new(engine.clone(), SECRET.into()));
    let s = Setup { _dir, chain, p };
    *s.chain.head.lock().unwrap() = Some(50);
    let cache = root.join("cache");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    for name in ["a", "b"] {
        let (engine, config) = (engine.clone(), worker_config(&root, name, &cache));
        let mut rx = stop_rx.clone();
        workers.push(tokio::spawn(async move {
            run_worker(engine, config, async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await
            .unwrap();
        }));
    }

    let n = plain_sectors(&s, 1, SectorState::PreCommit1)[0].number;
    // The first tick draws the ticket here (a chain step); the next queues PreCommit1 on the
    // cluster for the record's version. Moving the record on before the task's result is applied
    // makes that result stale: it is dropped, and the phase queued again for the new version.
    s.p.tick().await.unwrap();
    s.p.tick().await.unwrap();
    let first = engine
        .latest(MINER.0, TaskKind::PreCommit1, n)
        .await
        .unwrap()
        .expect("PreCommit1 queued on the cluster");
    let r = s.p.store().get(n).unwrap().unwrap();
    let bumped =
        s.p.store()
            .record_chain(n, r.version, r.chain.clone(), 0)
            .unwrap();
    assert_eq!(bumped.state(), SectorState::PreCommit1);
    let r = tick_until(&s, n, SectorState::SubmitPreCommit).await;
    let pc1 = engine
        .latest(MINER.0, TaskKind::PreCommit1, n)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(pc1.id, first.id, "the stale task's result was applied");
    assert_eq!(pc1.phase, TaskPhase::Done);
    let holder = pc1.worker.clone().unwrap();
    let pc2 = engine
        .latest(MINER.0, TaskKind::PreCommit2, n)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        pc2.worker.as_deref(),
        Some(holder.as_str()),
        "PreCommit2 ran away from the layers"
    );

    // The same sector sealed here: the same commitments.
    let id = SectorId {
        size: SectorSize::S2KiB,
        miner_id: MINER.0,
        sector_number: n,
    };
    let local = SectorDir::create(&root.join("local")).unwrap();
    let ticket = randomness_node(r.chain.ticket.unwrap());
    let lpc1 = seal::pre_commit1(&local, &id, ticket, &cache, None, &mut no_progress).unwrap();
    let lpc2 = seal::pre_commit2(&local, &id, &mut no_progress).unwrap();
    assert_eq!(r.chain.comm_d, Some(lpc1.comm_d.0.0));
    assert_eq!(r.chain.comm_r, Some(lpc2.comm_r.0.0));

    // Commit1 on the holder, Commit2 anywhere: the proof verifies against the local public inputs.
    let seed = [7u8; 32];
    move_to(
        &s,
        n,
        SectorState::Commit1,
        Some(SectorChain {
            seed: Some(seed),
            ..r.chain.clone()
        }),
    );
    tick_until(&s, n, SectorState::SubmitProveCommit).await;
    let c1 = engine
        .latest(MINER.0, TaskKind::Commit1, n)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c1.worker.as_deref(), Some(holder.as_str()));
    let (public, _) = seal::commit1(&local, &id, randomness_node(seed)).unwrap();
    let proof = std::fs::read(s.p.scratch_path(n).join("commit2.bin")).unwrap();
    let proofs: Vec<Vec<u8>> = proof
        .chunks(lode_proofs::snark::PROOF_LEN)
        .map(<[u8]>::to_vec)
        .collect();
    let params = lode_testkit::harness::shared_params();
    let pvk = groth16::prepare_verifying_key(&params.porep.vk);
    lode_proofs::circuit::porep::verify(&pvk, &public, &proofs).unwrap();

    // Before Finalize the sector is only on its worker: its proving check and its PoSts are
    // proven there and verified here against the chain's CommR.
    prove_on_the_cluster(&engine, &root, n, r.chain.comm_r.unwrap()).await;
    post_snarks_on_the_cluster(&engine, &root, n, r.chain.comm_r.unwrap()).await;

    // Finalize here: the files come from the holder, which then deletes its copy.
    move_to(&s, n, SectorState::Finalize, None);
    let start = Instant::now();
    while s.p.store().get(n).unwrap().unwrap().state() == SectorState::Finalize {
        s.p.tick().await.unwrap();
        s.p.wait_tasks().await;
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            s.p.waiting(n)
        );
    }
    let r = s.p.store().get(n).unwrap().unwrap();
    assert_eq!(r.state(), SectorState::Proving, "{:?}", r.progress);
    let stored: PathBuf = s.p.store_path(n);
    for file in [
        "sealed",
        "tree-r",
        "pc1.json",
        "pc2.json",
        "sector.json",
        "commit2.bin",
    ] {
        assert!(
            stored.join(file).is_file(),
            "no {file} in {}",
            stored.display()
        );
    }
    assert_eq!(
        std::fs::read(stored.join("sealed")).unwrap(),
        std::fs::read(local.sealed()).unwrap(),
        "the stored replica differs from the local seal's"
    );
    assert!(!s.p.scratch_path(n).exists(), "scratch not emptied");
    let copy = lode_provider::preseal::sector_path(&root.join(&holder), MINER, n);
    assert!(!copy.exists(), "{} kept its copy", holder);

    stop_tx.send(true).unwrap();
    for w in workers {
        w.await.unwrap();
    }
}

/// PoSt SNARKs made by `wdpost` and `wnpost` workers, each kind in turn: the prover gathers the
/// vanilla proofs (here through the worker holding sector `n`) and a worker running only that kind
/// makes the SNARK, which verifies with the chain's verifier. A worker answering garbage has its
/// proof refused (the proof is made here, and still verifies); with no worker of the kind
/// registered the proof is made here without a task.
async fn post_snarks_on_the_cluster(engine: &AnyEngine, root: &Path, n: u64, comm_r: [u8; 32]) {
    use lode_node::core::SectorRef;
    use lode_proofs::verifier::{
        ProofVerifier, SnarkVerifier, WindowPostStatement, WinningPostStatement,
    };
    use lode_provider::engine::{Outcome, WorkerInfo};
    use lode_provider::pipeline::remote::{ClusterSectors, ClusterSnarks, PostWaits};
    use lode_provider::prover::{Prover, SectorStore};
    use std::sync::Arc;

    let link = Arc::new(ClusterLink::new(engine.clone(), SECRET.into()));
    let handle = tokio::runtime::Handle::current();
    let store = SectorStore::new(root.join("empty-store"), MINER.0, SectorSize::S2KiB).with_remote(
        Arc::new(ClusterSectors::new(
            Arc::clone(&link),
            MINER.0,
            handle.clone(),
        )),
    );
    let params = lode_testkit::harness::shared_params();
    let prover = Arc::new(
        Prover::with_params(
            store,
            SectorSize::S2KiB,
            Arc::new(params.winning.clone()),
            Arc::new(params.window.clone()),
        )
        .with_remote_snarks(Arc::new(ClusterSnarks::new(
            link,
            MINER.0,
            handle,
            PostWaits {
                window: Some(Duration::from_secs(60)),
                winning: Some(Duration::from_secs(60)),
            },
        ))),
    );
    let sector = SectorRef {
        sector_number: n,
        comm_r,
    };
    let verifier = SnarkVerifier::new(lode_testkit::harness::test_params());

    for kind in [TaskKind::WindowPost, TaskKind::WinningPost] {
        let name = kind.flag();
        // One PoSt of `kind` with `randomness`, made by the prover (on a blocking thread, as the
        // daemon does) and checked with the chain's verifier.
        let post = |randomness: [u8; 32]| {
            let prover = Arc::clone(&prover);
            let verifier = &verifier;
            async move {
                let proof = tokio::task::spawn_blocking(move || match kind {
                    TaskKind::WindowPost => {
                        let p = prover.window_post(randomness, &[sector]).unwrap();
                        assert!(p.skipped.is_empty(), "{p:?}");
                        p.proof
                    }
                    _ => prover.winning_post(MINER.0, randomness, &[sector]).unwrap(),
                })
                .await
                .unwrap();
                match kind {
                    TaskKind::WindowPost => verifier.verify_window_post(
                        &WindowPostStatement {
                            size: SectorSize::S2KiB,
                            randomness,
                            sectors: vec![sector.public()],
                        },
                        &proof,
                    ),
                    _ => verifier.verify_winning_post(
                        &WinningPostStatement {
                            size: SectorSize::S2KiB,
                            miner_id: MINER.0,
                            randomness,
                            sectors: vec![sector.public()],
                        },
                        &proof,
                    ),
                }
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        };
        let kind_tasks = || async {
            engine
                .tasks(10_000)
                .await
                .unwrap()
                .into_iter()
                .filter(|t| t.spec.kind == kind && t.spec.miner == MINER.0)
                .collect::<Vec<_>>()
        };

        // A worker running only this kind makes the SNARK.
        let mut config = worker_config(root, name, &root.join("cache"));
        config.kinds = vec![kind];
        config.listen = None;
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let worker = tokio::spawn(run_worker(engine.clone(), config, async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        }));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !engine
            .workers()
            .await
            .unwrap()
            .iter()
            .any(|w| w.info.name == name)
        {
            assert!(
                Instant::now() < deadline,
                "the {name} worker never registered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        post([5; 32]).await;
        let tasks = kind_tasks().await;
        assert_eq!(tasks.len(), 1, "{tasks:?}");
        assert_eq!(tasks[0].phase, TaskPhase::Done, "{tasks:?}");
        assert_eq!(tasks[0].worker.as_deref(), Some(name));
        stop_tx.send(true).unwrap();
        worker.await.unwrap().unwrap();

        // A worker answering a proof that does not verify: the proof is made here instead.
        let rogue_name = format!("rogue-{name}");
        engine
            .register(&WorkerInfo {
                name: rogue_name.clone(),
                resources: Resources::UNLIMITED,
                kinds: vec![kind],
                url: None,
            })
            .await
            .unwrap();
        let rogue = {
            let engine = engine.clone();
            let rogue_name = rogue_name.clone();
            tokio::spawn(async move {
                loop {
                    if let Some(c) = engine
                        .claim(&rogue_name, &[kind], &Resources::UNLIMITED)
                        .await
                        .unwrap()
                    {
                        let garbage = format!(r#"{{"proof":"{}"}}"#, "ab".repeat(192));
                        engine.finish(&c, &Outcome::Done(garbage)).await.unwrap();
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        post([6; 32]).await;
        let tasks = kind_tasks().await;
        assert_eq!(tasks.len(), 2, "{tasks:?}");
        assert!(
            tasks
                .iter()
                .any(|t| t.worker.as_deref() == Some(rogue_name.as_str())
                    && t.phase == TaskPhase::Done),
            "{tasks:?}"
        );
        rogue.abort();
        engine.release(&rogue_name).await.unwrap();

        // No worker of this kind: proven here, no task queued.
        post([7; 32]).await;
        assert_eq!(kind_tasks().await.len(), 2);
    }
}

/// A store holding nothing itself proves sector `n` (CommR `comm_r`) through the worker holding
/// it: the proving check passes, a Window PoSt and a Winning PoSt over it verify with the chain's
/// verifier; with a CommR the worker's files do not give, the check fails and the Window PoSt
/// skips the sector; a request without the cluster secret is refused.
async fn prove_on_the_cluster(engine: &AnyEngine, root: &Path, n: u64, comm_r: [u8; 32]) {
    use lode_node::core::SectorRef;
    use lode_proofs::verifier::{
        ProofVerifier, SnarkVerifier, WindowPostStatement, WinningPostStatement,
    };
    use lode_provider::pipeline::remote::ClusterSectors;
    use lode_provider::prover::{CheckFailure, Prover, SectorStore};
    use std::sync::Arc;

    let link = Arc::new(ClusterLink::new(engine.clone(), SECRET.into()));
    let remote = Arc::new(ClusterSectors::new(
        link,
        MINER.0,
        tokio::runtime::Handle::current(),
    ));
    let store =
        SectorStore::new(root.join("empty-store"), MINER.0, SectorSize::S2KiB).with_remote(remote);
    let params = lode_testkit::harness::shared_params();
    let prover = Prover::with_params(
        store,
        SectorSize::S2KiB,
        Arc::new(params.winning.clone()),
        Arc::new(params.window.clone()),
    );
    let good = SectorRef {
        sector_number: n,
        comm_r,
    };
    let mut wrong = comm_r;
    wrong[0] ^= 1;
    let bad = SectorRef {
        sector_number: n,
        comm_r: wrong,
    };
    let (checks, window, winning) = tokio::task::spawn_blocking(move || {
        let checks = prover.store().check(&[good, bad], 77);
        let window = prover.window_post([3; 32], &[good]).unwrap();
        let skipped = prover.window_post([3; 32], &[bad]).unwrap();
        assert!(
            skipped.proof.is_empty() && skipped.skipped == [n],
            "{skipped:?}"
        );
        let winning = prover.winning_post(MINER.0, [4; 32], &[good]).unwrap();
        (checks, window, winning)
    })
    .await
    .unwrap();
    assert_eq!(checks[0], (n, Ok(())));
    assert!(
        matches!(&checks[1].1, Err(CheckFailure::Remote(why)) if why.contains("does not verify")),
        "{checks:?}"
    );
    assert!(window.skipped.is_empty(), "{window:?}");
    let verifier = SnarkVerifier::new(lode_testkit::harness::test_params());
    let public = vec![lode_proofs::post::PublicSector {
        sector_number: n,
        comm_r: lode_proofs::node::Node(comm_r),
    }];
    verifier
        .verify_window_post(
            &WindowPostStatement {
                size: SectorSize::S2KiB,
                randomness: [3; 32],
                sectors: public.clone(),
            },
            &window.proof,
        )
        .unwrap();
    verifier
        .verify_winning_post(
            &WinningPostStatement {
                size: SectorSize::S2KiB,
                miner_id: MINER.0,
                randomness: [4; 32],
                sectors: public,
            },
            &winning,
        )
        .unwrap();
    // The worker's file server refuses a caller without the secret.
    let holder = engine
        .latest(MINER.0, TaskKind::Commit1, n)
        .await
        .unwrap()
        .and_then(|r| r.worker)
        .unwrap();
    let url = engine
        .workers()
        .await
        .unwrap()
        .into_iter()
        .find(|w| w.info.name == holder)
        .and_then(|w| w.info.url)
        .unwrap();
    let err = lode_provider::files::vanilla(
        &reqwest::Client::new(),
        &url,
        "not-the-secret",
        MINER.0,
        n,
        &lode_proofs::node::Node([3; 32]),
        10,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("secrets differ"), "{err}");
}

/// The embedded engine in a temporary directory (kept while the directory lives).
fn embedded() -> (tempfile::TempDir, AnyEngine) {
    let db = tempfile::tempdir().unwrap();
    let engine = SledEngine::open(&sled::open(db.path()).unwrap()).unwrap();
    (db, AnyEngine::Sled(engine))
}

/// The PostgreSQL engine on database `name` of a server started for the test (kept while the
/// server lives), and the database's address (where the pipeline keeps its records too);
/// `None` where PostgreSQL is missing (and not required).
async fn postgres(name: &str) -> Option<(Postgres, AnyEngine, String)> {
    let pg = Postgres::start()?;
    let url = pg.create_database(name);
    let engine = PgEngine::connect(&url).await.unwrap();
    Some((pg, AnyEngine::Postgres(engine), url))
}

/// A suite's pipeline, its records in the embedded database (`None`) or in the PostgreSQL
/// database at the address (as a provider in a cluster keeps them).
fn setup_for(records: Option<&str>, retry: RetryPolicy) -> Setup {
    match records {
        None => setup_with(retry, None),
        Some(url) => setup_over(Records::postgres(url, MINER.0, None).unwrap(), retry),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_seals_on_the_cluster_embedded() {
    let (_db, engine) = embedded();
    suite(engine, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_seals_on_the_cluster_postgres() {
    let Some((_pg, engine, url)) = postgres("remote").await else {
        return;
    };
    suite(engine, Some(url)).await;
}

/// Starts worker `name` of `kinds`, stopped when `stop` turns true.
fn spawn_worker(
    engine: &AnyEngine,
    root: &Path,
    cache: &Path,
    name: &str,
    kinds: &[TaskKind],
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let config = WorkerConfig {
        kinds: kinds.to_vec(),
        ..worker_config(root, name, cache)
    };
    let engine = engine.clone();
    let mut stop = stop;
    tokio::spawn(async move {
        run_worker(engine, config, async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
        .unwrap();
    })
}

/// The sector sealed here with `ticket`: its CommR.
fn local_comm_r(root: &Path, cache: &Path, n: u64, ticket: [u8; 32], name: &str) -> [u8; 32] {
    let id = SectorId {
        size: SectorSize::S2KiB,
        miner_id: MINER.0,
        sector_number: n,
    };
    let local = SectorDir::create(&root.join(name)).unwrap();
    seal::pre_commit1(
        &local,
        &id,
        randomness_node(ticket),
        cache,
        None,
        &mut no_progress,
    )
    .unwrap();
    seal::pre_commit2(&local, &id, &mut no_progress)
        .unwrap()
        .comm_r
        .0
        .0
}

/// A cluster whose workers split the phases, Curio-style, and keep the sectors they seal
/// (`store_on_workers`): `a` runs PreCommit1 only, `b` the rest. PreCommit2 cannot run where the
/// layers are, so `b` fetches them from `a` and holds the sector from then on (Commit1 is bound to
/// `b`); Finalize runs on `b`, which keeps the sector, and `a` deletes its copy; the sector is
/// proven through `b` ([`prove_on_the_cluster`]). Then the worker
/// holding a sector's layers goes away for good: once it has been gone for the link's
/// `lost_after`, the queued PreCommit2 is withdrawn and the sector sealed again from PreCommit1
/// on a third worker, to the same CommR.
async fn split_suite(engine: AnyEngine, records: Option<String>) {
    let fast = RetryPolicy {
        max_retries: 5,
        base_seconds: 1,
        max_seconds: 2,
    };
    let Setup { _dir, chain, p } = setup_for(records.as_deref(), fast);
    let root = _dir.path().to_path_buf();
    let link = ClusterLink::new(engine.clone(), SECRET.into())
        .with_lost_after(Duration::from_secs(1))
        .with_store_on_workers(true);
    let s = Setup {
        _dir,
        chain,
        p: p.with_cluster(link),
    };
    *s.chain.head.lock().unwrap() = Some(50);
    let cache = root.join("cache");
    let (stop_a, rx) = tokio::sync::watch::channel(false);
    let a = spawn_worker(&engine, &root, &cache, "a", &[TaskKind::PreCommit1], rx);
    let (stop_b, rx) = tokio::sync::watch::channel(false);
    let b = spawn_worker(
        &engine,
        &root,
        &cache,
        "b",
        &[
            TaskKind::PreCommit2,
            TaskKind::Commit1,
            TaskKind::Commit2,
            TaskKind::Finalize,
        ],
        rx,
    );

    // PreCommit1 on a, PreCommit2 on b over a's layers.
    let n = plain_sectors(&s, 1, SectorState::PreCommit1)[0].number;
    let r = tick_until(&s, n, SectorState::SubmitPreCommit).await;
    let latest = |kind, n| {
        let engine = engine.clone();
        async move {
            engine
                .latest(MINER.0, kind, n)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("no {kind} task"))
        }
    };
    assert_eq!(
        latest(TaskKind::PreCommit1, n).await.worker.as_deref(),
        Some("a")
    );
    let pc2 = latest(TaskKind::PreCommit2, n).await;
    // Queued unbound, naming the holder to fetch from (the history keeps no binding).
    assert_eq!(pc2.worker.as_deref(), Some("b"));
    assert!(
        pc2.spec.input.contains(r#""from":"a""#),
        "{}",
        pc2.spec.input
    );
    let at_b = lode_provider::preseal::sector_path(&root.join("b"), MINER, n);
    assert!(at_b.join("layer-1").is_file() && at_b.join("tree-r").is_file());
    assert!(
        !at_b.join("fetched-inputs").exists(),
        "b's copy is still marked disposable"
    );
    assert_eq!(
        r.chain.comm_r,
        Some(local_comm_r(
            &root,
            &cache,
            n,
            r.chain.ticket.unwrap(),
            "local-1"
        ))
    );

    // Commit1 where the sector is now (b runs it), Commit2 there too; Finalize on b, which keeps
    // the sector (its layers gone), while a deletes its copy and nothing comes here.
    move_to(
        &s,
        n,
        SectorState::Commit1,
        Some(SectorChain {
            seed: Some([5; 32]),
            ..r.chain.clone()
        }),
    );
    tick_until(&s, n, SectorState::SubmitProveCommit).await;
    let c1 = latest(TaskKind::Commit1, n).await;
    assert_eq!(c1.worker.as_deref(), Some("b"));
    assert!(!c1.spec.input.contains("from"), "{}", c1.spec.input);
    move_to(&s, n, SectorState::Finalize, None);
    let start = Instant::now();
    while s.p.store().get(n).unwrap().unwrap().state() == SectorState::Finalize {
        s.p.tick().await.unwrap();
        s.p.wait_tasks().await;
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            s.p.waiting(n)
        );
    }
    assert_eq!(
        s.p.store().get(n).unwrap().unwrap().state(),
        SectorState::Proving
    );
    assert!(
        !s.p.store_path(n).exists(),
        "the sector came into the store"
    );
    assert!(!s.p.scratch_path(n).exists(), "scratch not emptied");
    let finalize = latest(TaskKind::Finalize, n).await;
    assert_eq!(finalize.worker.as_deref(), Some("b"));
    assert!(at_b.join("sealed").is_file() && at_b.join("tree-r").is_file());
    assert!(!at_b.join("layer-1").exists(), "Finalize left the layers");
    let at_a = lode_provider::preseal::sector_path(&root.join("a"), MINER, n);
    assert!(!at_a.exists(), "a kept its copy of sector {n}");
    prove_on_the_cluster(&engine, &root, n, r.chain.comm_r.unwrap()).await;

    // b stops: the next sector's PreCommit2 waits, queued for any worker to fetch from a. Then
    // a goes for good: the task is withdrawn and the sector labelled again.
    stop_b.send(true).unwrap();
    b.await.unwrap();
    let n = plain_sectors(&s, 1, SectorState::PreCommit1)[0].number;
    let start = Instant::now();
    let queued = loop {
        s.p.tick().await.unwrap();
        if let Some(row) = engine
            .latest(MINER.0, TaskKind::PreCommit2, n)
            .await
            .unwrap()
        {
            break row;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            s.p.waiting(n)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(queued.phase, TaskPhase::Queued);
    let first_ticket = s.p.store().get(n).unwrap().unwrap().chain.ticket;
    stop_a.send(true).unwrap();
    a.await.unwrap();
    let r = tick_until(&s, n, SectorState::PreCommit1).await;
    let withdrawn = engine.task(queued.id).await.unwrap().unwrap();
    assert_eq!(withdrawn.phase, TaskPhase::Failed);
    assert!(
        withdrawn
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("route changed"),
        "{withdrawn:?}"
    );
    assert!(
        r.progress
            .history
            .iter()
            .any(|h| h.note.contains("count as lost")),
        "{:?}",
        r.progress.history
    );
    let (stop_c, rx) = tokio::sync::watch::channel(false);
    let c = spawn_worker(
        &engine,
        &root,
        &cache,
        "c",
        &[TaskKind::PreCommit1, TaskKind::PreCommit2],
        rx,
    );
    let r = tick_until(&s, n, SectorState::SubmitPreCommit).await;
    assert_eq!(
        latest(TaskKind::PreCommit1, n).await.worker.as_deref(),
        Some("c")
    );
    let pc2 = latest(TaskKind::PreCommit2, n).await;
    assert_eq!(pc2.worker.as_deref(), Some("c"));
    assert!(!pc2.spec.input.contains("from"), "{}", pc2.spec.input);
    assert_eq!(r.chain.ticket, first_ticket, "a fresh ticket was kept");
    assert_eq!(
        r.chain.comm_r,
        Some(local_comm_r(
            &root,
            &cache,
            n,
            r.chain.ticket.unwrap(),
            "local-2"
        ))
    );
    // Removed before its pre-commit: c deletes its copy.
    let at_c = lode_provider::preseal::sector_path(&root.join("c"), MINER, n);
    assert!(at_c.join("sealed").is_file());
    s.p.store()
        .apply(n, r.version, &Event::Remove, 0, &RetryPolicy::default())
        .unwrap();
    tick_until(&s, n, SectorState::Removed).await;
    assert!(!at_c.exists(), "c kept the removed sector's copy");
    stop_c.send(true).unwrap();
    c.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_phases_fetch_their_inputs_and_lost_layers_are_sealed_again_embedded() {
    let (_db, engine) = embedded();
    split_suite(engine, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_phases_fetch_their_inputs_and_lost_layers_are_sealed_again_postgres() {
    let Some((_pg, engine, url)) = postgres("split").await else {
        return;
    };
    split_suite(engine, Some(url)).await;
}

/// A deal sector on a cluster whose provider serves its sealing scratch (`[cluster]
/// files_listen`): Packing writes the deals' data here; its PreCommit1 runs on a worker, which
/// fetches that data from the provider's file server (a request without the cluster secret is
/// refused); the CommD is the deals' and the CommR that of a local seal of the same data;
/// Finalize brings the sealed files here and keeps the provider's own unsealed copy, and the
/// worker deletes its copy. Without the file server the same kind of sector is sealed here.
async fn deal_suite(engine: AnyEngine, records: Option<String>) {
    let Setup { _dir, chain, p } = setup_for(records.as_deref(), RetryPolicy::default());
    let root = _dir.path().to_path_buf();
    let scratch = p.config().scratch_dir.clone();
    let app = lode_provider::files::read_only_router(scratch.clone(), SECRET.into());
    let url = lode_provider::files::serve("127.0.0.1:0".parse().unwrap(), app, None)
        .await
        .unwrap();
    let link = ClusterLink::new(engine.clone(), SECRET.into()).with_data_url(Some(url.clone()));
    assert!(link.seals_deals());
    let p = p.with_cluster(link);
    let s = Setup { _dir, chain, p };
    *s.chain.head.lock().unwrap() = Some(50);
    let cache = root.join("cache");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = spawn_worker(
        &engine,
        &root,
        &cache,
        "a",
        &[
            TaskKind::PreCommit1,
            TaskKind::PreCommit2,
            TaskKind::Commit1,
            TaskKind::Commit2,
        ],
        stop_rx,
    );

    let a = deal_piece(&root, 1, 700, 1024, 1000);
    let b = deal_piece(&root, 2, 200, 256, 1000);
    for piece in [&a, &b] {
        s.p.add_piece(piece.clone()).await.unwrap();
    }
    let n = s.p.store().deal_piece(1).unwrap().unwrap().sector.unwrap();
    assert_eq!(s.p.store().get(n).unwrap().unwrap().kind, SectorKind::Deals);
    move_to(&s, n, SectorState::Packing, None);
    let r = tick_until(&s, n, SectorState::SubmitPreCommit).await;

    // PreCommit1 ran on the worker, on the data it fetched from the provider.
    let pc1 = engine
        .latest(MINER.0, TaskKind::PreCommit1, n)
        .await
        .unwrap()
        .expect("the deal sector's PreCommit1 ran on the cluster");
    assert_eq!(pc1.phase, TaskPhase::Done);
    assert_eq!(pc1.worker.as_deref(), Some("a"));
    let input: lode_provider::worker::SectorInput = serde_json::from_str(&pc1.spec.input).unwrap();
    assert_eq!(input.data.as_deref(), Some(url.as_str()));
    let here = s.p.scratch_path(n);
    let copy = lode_provider::preseal::sector_path(&root.join("a"), MINER, n);
    let packed = std::fs::read(here.join("unsealed")).unwrap();
    // Packing writes the pieces; the sector's tail is zeros, which PreCommit1 writes out.
    let full = |mut data: Vec<u8>| {
        data.resize(2048, 0);
        data
    };
    let fetched = std::fs::read(copy.join("unsealed")).unwrap();
    assert!(
        full(fetched.clone()) == full(packed.clone()),
        "the worker's data ({} bytes) is not what the provider packed ({} bytes)",
        fetched.len(),
        packed.len()
    );
    assert!(
        !copy.join("fetched-inputs").exists(),
        "the worker still marks its sector a disposable copy"
    );
    assert!(
        copy.join("pc1.json").is_file(),
        "no layers' record on the worker"
    );
    assert!(!here.join("pc1.json").exists(), "PreCommit1 ran here");

    // The CommD is the deals' (in piece order: the larger piece first), the CommR a local
    // seal's of the same data.
    let infos: Vec<lode_proofs::piece::PieceInfo> = [&a, &b]
        .iter()
        .map(|p| lode_proofs::piece::PieceInfo {
            comm_p: lode_proofs::node::Node(p.proposal.piece_cid),
            size: lode_proofs::piece::PaddedPieceSize::new(p.proposal.piece_size).unwrap(),
        })
        .collect();
    let deals_comm_d = lode_proofs::piece::comm_d(
        lode_proofs::piece::PaddedPieceSize::new(2048).unwrap(),
        &infos,
    )
    .unwrap();
    assert_eq!(r.chain.comm_d, Some(deals_comm_d.0));
    let local = root.join("local-deal");
    std::fs::create_dir_all(&local).unwrap();
    for f in ["sector.json", "unsealed"] {
        std::fs::copy(here.join(f), local.join(f)).unwrap();
    }
    let id = SectorId {
        size: SectorSize::S2KiB,
        miner_id: MINER.0,
        sector_number: n,
    };
    let dir = SectorDir::open(&local).unwrap();
    let ticket = randomness_node(r.chain.ticket.unwrap());
    let lpc1 = seal::pre_commit1(&dir, &id, ticket, &cache, None, &mut no_progress).unwrap();
    let lpc2 = seal::pre_commit2(&dir, &id, &mut no_progress).unwrap();
    assert_eq!(lpc1.comm_d.0, deals_comm_d);
    assert_eq!(r.chain.comm_r, Some(lpc2.comm_r.0.0));

    // The file server wants the cluster secret.
    let refused = reqwest::Client::new()
        .get(format!("{url}/sectors/{}/{n}/unsealed", MINER.0))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);

    // Finalize here: the sealed files come from the worker, the unsealed copy is this
    // provider's own, and the worker deletes its copy.
    move_to(&s, n, SectorState::Finalize, None);
    let start = Instant::now();
    while s.p.store().get(n).unwrap().unwrap().state() == SectorState::Finalize {
        s.p.tick().await.unwrap();
        s.p.wait_tasks().await;
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            s.p.waiting(n)
        );
    }
    let r = s.p.store().get(n).unwrap().unwrap();
    assert_eq!(r.state(), SectorState::Proving, "{:?}", r.progress);
    let stored = s.p.store_path(n);
    assert!(
        full(std::fs::read(stored.join("unsealed")).unwrap()) == full(packed),
        "the stored unsealed copy is not the packed data"
    );
    assert!(
        std::fs::read(stored.join("sealed")).unwrap() == std::fs::read(dir.sealed()).unwrap(),
        "the stored replica differs from the local seal's"
    );
    assert!(!copy.exists(), "the worker kept its copy");

    stop_tx.send(true).unwrap();
    worker.await.unwrap();

    // Without a file server here, a deal sector is sealed here: no PreCommit1 task.
    let Setup { _dir, chain, p } = setup();
    let p = p.with_cluster(ClusterLink::new(engine.clone(), SECRET.into()));
    let s = Setup { _dir, chain, p };
    *s.chain.head.lock().unwrap() = Some(50);
    let c = deal_piece(s._dir.path(), 3, 100, 128, 1000);
    s.p.add_piece(c).await.unwrap();
    let m = s.p.store().deal_piece(3).unwrap().unwrap().sector.unwrap();
    move_to(&s, m, SectorState::Packing, None);
    tick_until(&s, m, SectorState::SubmitPreCommit).await;
    assert!(
        s.p.scratch_path(m).join("pc1.json").is_file(),
        "not sealed here"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deal_sectors_are_sealed_on_the_cluster_from_the_providers_data_embedded() {
    let (_db, engine) = embedded();
    deal_suite(engine, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deal_sectors_are_sealed_on_the_cluster_from_the_providers_data_postgres() {
    let Some((_pg, engine, url)) = postgres("remote_deals").await else {
        return;
    };
    deal_suite(engine, Some(url)).await;
}
