//! The sealing pipeline on a cluster, the same suite on both task engines (the embedded one and a
//! real PostgreSQL server started by the test): a committed-capacity sector's PreCommit1,
//! PreCommit2, Commit1 and Commit2 run as tasks on two in-process workers — the later phases
//! bound to the worker holding the layers, Commit2's inputs fetched over HTTP — and their outputs
//! are the same commitments and a proof that verifies against a local seal of the same sector;
//! a result queued for an older version of the record is never applied; Finalize brings the
//! sector's files from the worker into the store and the worker deletes its copy.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lode_proofs::sector::{SectorSize, randomness_node};
use lode_provider::engine::embedded::SledEngine;
use lode_provider::engine::postgres::PgEngine;
use lode_provider::engine::{AnyEngine, TaskEngine, TaskKind, TaskPhase};
use lode_provider::pipeline::remote::ClusterLink;
use lode_provider::pipeline::{Event, RetryPolicy, SectorChain, SectorRecord, SectorState};
use lode_provider::tasks::Resources;
use lode_provider::worker::{WorkerConfig, run_worker};
use lode_sealing::seal::{self, SectorId, no_progress};
use lode_sealing::sector_dir::SectorDir;
use lode_testkit::postgres::Postgres;

use crate::common::{MINER, Setup, plain_sectors, setup};

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

async fn suite(engine: AnyEngine) {
    let Setup { _dir, chain, p } = setup();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_seals_on_the_cluster_embedded() {
    let db = tempfile::tempdir().unwrap();
    let engine = SledEngine::open(&sled::open(db.path()).unwrap()).unwrap();
    suite(AnyEngine::Sled(engine)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_seals_on_the_cluster_postgres() {
    let Some(pg) = Postgres::start() else { return };
    let engine = PgEngine::connect(&pg.create_database("remote"))
        .await
        .unwrap();
    suite(AnyEngine::Postgres(engine)).await;
}
