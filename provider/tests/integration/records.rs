//! The pipeline's records and the market's (deals, compute jobs, the block index), one suite each
//! run against both places they live: the embedded sled database and a real PostgreSQL server
//! started by the test (`lode_testkit::postgres`), as a provider in a cluster keeps them. Then what
//! only the shared database has: writes fenced by the leader lease, a provider's embedded records
//! brought into the cluster's database, the connection opened again after the server restarted,
//! and the pipeline's rows of schema 6 renamed by migration 7.

use std::time::Duration;

use lode_chain::actors::market::ClientDealProposal;
use lode_chain::actors::market::DealProposal;
use lode_chain::types::{ActorId, TokenAmount};
use lode_market::MarketError;
use lode_market::car::{CarFileWriter, index_car};
use lode_market::deal::{DealUuid, TransferSpec};
use lode_market::jobs::records::{JobPhase, JobRecord};
use lode_market::provider::records::{DealRecords, DealStatus, MarketRecords, ProviderDeal};
use lode_market::unixfs::{DagParams, pack_path};
use lode_proofs::cid::PieceCid;
use lode_provider::engine::TaskEngine;
use lode_provider::engine::postgres::PgEngine;
use lode_provider::pipeline::deals::Target;
use lode_provider::pipeline::kv::{Fence, KvError, Records, Tree};
use lode_provider::pipeline::{
    DealPieceRecord, Event, PipelineError, PipelineStore, RetryPolicy, SectorChain, SectorKind,
    SectorState,
};
use lode_provider::tasks::{Resources, SectorOutcome, TaskError, TaskKind, TaskState, TaskStore};
use lode_testkit::postgres::Postgres;

fn piece(id: u64, size: u64) -> DealPieceRecord {
    DealPieceRecord {
        deal_id: id,
        proposal: DealProposal {
            piece_cid: lode_proofs::node::trunc254([u8::try_from(id).unwrap(); 32]).0,
            piece_size: size,
            verified: false,
            client: ActorId(2000),
            provider: ActorId(1000),
            label: String::new(),
            start_epoch: 100,
            end_epoch: 1000,
            price_per_epoch: TokenAmount::ZERO,
            provider_collateral: TokenAmount::ZERO,
            client_collateral: TokenAmount::ZERO,
        },
        payload_size: 10,
        sector: None,
        offset: 0,
        placed_epoch: 5,
        placements: 1,
        added_at: 1,
        failed: None,
    }
}

/// Sector numbers, compare-and-swap changes, batches all or none, tasks finished with their
/// sector in one transaction, and deal pieces with their indexes.
fn suite(store: &PipelineStore) {
    let retry = RetryPolicy::default();
    // Numbers: above the floor, once each.
    let a = store.create(SectorKind::CommittedCapacity, 2, 10).unwrap();
    let b = store.create(SectorKind::CommittedCapacity, 0, 11).unwrap();
    assert_eq!((a.number, b.number), (2, 3));

    // A change computed from an old version is refused, and nothing is written.
    let a = store.apply(2, a.version, &Event::Done, 12, &retry).unwrap();
    let err = store
        .apply(2, a.version - 1, &Event::Done, 13, &retry)
        .unwrap_err();
    assert!(
        matches!(err, PipelineError::Conflict { number: 2, .. }),
        "{err}"
    );
    assert_eq!(store.get(2).unwrap().unwrap(), a);
    assert!(matches!(
        store.apply(9, 1, &Event::Done, 13, &retry).unwrap_err(),
        PipelineError::Unknown(9)
    ));

    // A batch of chain records: all or none.
    let chain = SectorChain {
        ticket: Some([1; 32]),
        seal_rand_epoch: Some(7),
        ..SectorChain::default()
    };
    let err = store
        .record_chains(
            &[
                (2, a.version, chain.clone()),
                (3, b.version + 5, chain.clone()),
            ],
            14,
        )
        .unwrap_err();
    assert!(
        matches!(err, PipelineError::Conflict { number: 3, .. }),
        "{err}"
    );
    assert_eq!(
        store.get(2).unwrap().unwrap(),
        a,
        "the batch's first change was written"
    );
    let both = store
        .record_chains(
            &[(2, a.version, chain.clone()), (3, b.version, chain.clone())],
            14,
        )
        .unwrap();
    assert!(both.iter().all(|r| r.chain == chain));
    let numbers: Vec<u64> = store.list().unwrap().iter().map(|r| r.number).collect();
    assert_eq!(numbers, [2, 3]);

    // A task's result and its sector's change: one transaction, under the claim's token.
    let tasks = TaskStore::new(store);
    let s3 = store.get(3).unwrap().unwrap();
    let resources = Resources {
        cores: 1,
        ..Resources::ZERO
    };
    let t = tasks
        .enqueue(TaskKind::PreCommit1, Some((3, s3.version)), resources, 20)
        .unwrap();
    let claim = tasks.claim(t.id, 21).unwrap();
    assert_eq!(claim.state, TaskState::Running);
    assert!(matches!(
        tasks.claim(t.id, 21).unwrap_err(),
        TaskError::NotQueued { .. }
    ));
    let done = SectorOutcome {
        event: Event::Done,
        chain: None,
        policy: retry,
    };
    let err = tasks
        .finish_sector(t.id, claim.token + 1, &done, 22)
        .unwrap_err();
    assert!(matches!(err, TaskError::Stale { .. }), "{err}");
    // The sector moved on since the task was queued: the task stays running, the sector as is.
    let bumped = store
        .record_chain(3, s3.version, s3.chain.clone(), 22)
        .unwrap();
    let err = tasks
        .finish_sector(t.id, claim.token, &done, 23)
        .unwrap_err();
    assert!(
        matches!(err, TaskError::Sector(PipelineError::Conflict { .. })),
        "{err}"
    );
    assert_eq!(tasks.get(t.id).unwrap().unwrap().state, TaskState::Running);
    assert_eq!(store.get(3).unwrap().unwrap(), bumped);
    // Queued again for the sector's version, it finishes with it.
    let t = tasks
        .enqueue(
            TaskKind::PreCommit1,
            Some((3, bumped.version)),
            resources,
            24,
        )
        .unwrap();
    let claim = tasks.claim(t.id, 25).unwrap();
    let (task, sector) = tasks.finish_sector(t.id, claim.token, &done, 26).unwrap();
    assert_eq!(task.state, TaskState::Done);
    assert_eq!(sector.version, bumped.version + 1);
    assert_ne!(sector.state(), bumped.state());
    assert_eq!(tasks.get(t.id).unwrap().unwrap(), task);
    assert_eq!(store.get(3).unwrap().unwrap(), sector);
    // Finished tasks pruned; the unfinished one stays.
    assert_eq!(tasks.prune(1000, 10, 100).unwrap(), 1);
    let left: Vec<u64> = tasks.list().unwrap().iter().map(|r| r.id).collect();
    assert_eq!(left.len(), 1);

    // Deal pieces: a new deal sector for the first, the second beside it, the indexes in step.
    let first = store
        .place_piece(&piece(7, 512), Target::New { min_number: 10 }, true, 30)
        .unwrap();
    assert!(first.created);
    assert_eq!(first.sector.number, 10);
    assert_eq!(first.sector.state(), SectorState::WaitDeals);
    let mut second = piece(8, 512);
    second.sector = Some(10);
    second.offset = 512;
    let placed = store
        .place_piece(
            &second,
            Target::Sector {
                number: 10,
                version: first.sector.version,
            },
            true,
            31,
        )
        .unwrap();
    assert!(!placed.created);
    assert!(matches!(
        store
            .place_piece(&piece(7, 512), Target::New { min_number: 10 }, true, 32)
            .unwrap_err(),
        PipelineError::DealExists(7)
    ));
    let ids = |v: Vec<DealPieceRecord>| v.iter().map(|p| p.deal_id).collect::<Vec<_>>();
    assert_eq!(ids(store.sector_pieces(10).unwrap()), [7, 8]);
    assert_eq!(
        ids(store.pieces_with_comm_p(piece(8, 512).comm_p()).unwrap()),
        [8]
    );
    let mut failed = placed.piece.clone();
    failed.sector = None;
    failed.failed = Some("expired".into());
    store.put_pieces(&[failed]).unwrap();
    assert_eq!(ids(store.sector_pieces(10).unwrap()), [7]);
    assert_eq!(ids(store.deal_pieces().unwrap()), [7, 8]);
    // The sector counter went on past the deal sector.
    assert_eq!(
        store
            .create(SectorKind::CommittedCapacity, 0, 40)
            .unwrap()
            .number,
        11
    );
}

/// A server and a database for one test, with the task engine's schema (which holds the
/// records' table); `None` where PostgreSQL is missing (and not required).
async fn database(name: &str) -> Option<(Postgres, PgEngine, String)> {
    let pg = Postgres::start()?;
    let url = pg.create_database(name);
    let engine = PgEngine::connect(&url).await.unwrap();
    Some((pg, engine, url))
}

#[test]
fn the_records_suite_passes_on_the_embedded_database() {
    let d = tempfile::tempdir().unwrap();
    suite(&PipelineStore::open(d.path()).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_records_suite_passes_on_postgres_and_miners_do_not_see_each_other() {
    let Some((_pg, _engine, url)) = database("records").await else {
        return;
    };
    let store = PipelineStore::new(Records::postgres(&url, 1000, None).unwrap());
    suite(&store);
    // Another miner's records in the same database are its own.
    let other = PipelineStore::new(Records::postgres(&url, 1001, None).unwrap());
    assert!(other.list().unwrap().is_empty());
    suite(&other);
    // Opened again (a restarted provider), the records are there.
    drop(store);
    let again = PipelineStore::new(Records::postgres(&url, 1000, None).unwrap());
    assert_eq!(again.list().unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_lost_the_lease_cannot_write_the_records() {
    let Some((_pg, engine, url)) = database("fence").await else {
        return;
    };
    let lease = "provider/f1000";
    let ttl = Duration::from_millis(300);
    let first = engine
        .acquire_lease(lease, "a", ttl)
        .await
        .unwrap()
        .unwrap();
    let fenced = |epoch| {
        Records::postgres(
            &url,
            1000,
            Some(Fence {
                lease: lease.into(),
                epoch,
            }),
        )
        .unwrap()
    };
    let a = PipelineStore::new(fenced(first));
    let s = a.create(SectorKind::CommittedCapacity, 0, 1).unwrap();
    // The lease lapses and another provider takes it: the first one's writes are refused.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let second = engine
        .acquire_lease(lease, "b", ttl)
        .await
        .unwrap()
        .unwrap();
    assert!(second > first);
    let err = a.apply(
        s.number,
        s.version,
        &Event::Done,
        2,
        &RetryPolicy::default(),
    );
    match err {
        Err(PipelineError::Db(KvError::Deposed { ours, .. })) => assert_eq!(ours, first),
        other => panic!("a deposed provider's write: {other:?}"),
    }
    assert!(matches!(
        a.create(SectorKind::CommittedCapacity, 0, 3).unwrap_err(),
        PipelineError::Db(KvError::Deposed { .. })
    ));
    // Reads still work, and show nothing of the refused writes.
    assert_eq!(a.get(s.number).unwrap().unwrap(), s);
    // The new leader writes.
    let b = PipelineStore::new(fenced(second));
    b.apply(
        s.number,
        s.version,
        &Event::Done,
        4,
        &RetryPolicy::default(),
    )
    .unwrap();
    assert_eq!(b.list().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_records_are_brought_into_the_cluster_database_once() {
    let Some((_pg, _engine, url)) = database("import").await else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let local = PipelineStore::open(d.path()).unwrap();
    suite(&local);
    let expected = (
        local.list().unwrap(),
        TaskStore::new(&local).list().unwrap(),
        local.deal_pieces().unwrap(),
    );
    let shared = Records::postgres(&url, 1000, None).unwrap();
    assert!(shared.is_empty().unwrap());
    let copied = shared.import(local.records()).unwrap();
    assert!(copied > 0);
    let store = PipelineStore::new(shared);
    assert!(!store.records().is_empty().unwrap());
    assert_eq!(
        (
            store.list().unwrap(),
            TaskStore::new(&store).list().unwrap(),
            store.deal_pieces().unwrap(),
        ),
        expected
    );
    assert_eq!(store.sector_pieces(10).unwrap().len(), 1);
    // The counters came too: the next number follows the embedded database's.
    assert_eq!(
        store
            .create(SectorKind::CommittedCapacity, 0, 50)
            .unwrap()
            .number,
        12
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_records_connection_comes_back_after_the_server_restarted() {
    let Some((pg, _engine, url)) = database("restart").await else {
        return;
    };
    let store = PipelineStore::new(Records::postgres(&url, 1000, None).unwrap());
    let s = store.create(SectorKind::CommittedCapacity, 0, 1).unwrap();
    pg.stop();
    let err = store
        .create(SectorKind::CommittedCapacity, 0, 2)
        .unwrap_err();
    assert!(
        matches!(err, PipelineError::Db(KvError::Postgres(_))),
        "{err}"
    );
    pg.start_again();
    let mut next = None;
    for _ in 0..100 {
        match store.create(SectorKind::CommittedCapacity, 0, 3) {
            Ok(r) => {
                next = Some(r);
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let next = next.expect("the records are written again once the server is back");
    assert_eq!(next.number, s.number + 1, "the failed write took no number");
    assert_eq!(store.list().unwrap().len(), 2);
}

/// A deal record of the market (never checked by the records: the signature is any).
fn deal(tag: u8) -> ProviderDeal {
    let key = lode_chain::crypto::SecretKey::from_seed(&[tag; 32]);
    ProviderDeal {
        uuid: DealUuid::new_random(),
        client_peer: format!("peer-{tag}"),
        proposal: ClientDealProposal {
            proposal: piece(u64::from(tag), 2048).proposal,
            client_signature: key.sign(b"proposal"),
        },
        transfer: TransferSpec::Http {
            url: "http://127.0.0.1:1/p.car".into(),
            payload_size: 100,
        },
        status: DealStatus::Accepted,
        accepted_epoch: u64::from(tag),
        transferred_epoch: None,
        publish: None,
        deal_id: None,
        sector: None,
        error: None,
        updated_at: 1,
    }
}

fn job(id: u64, phase: JobPhase) -> JobRecord {
    JobRecord {
        job_id: id,
        phase,
        replicated: true,
        deadline: 90,
        salt: [7; 32],
        result: Some([id as u8; 32]),
        summary: None,
        message: None,
        sent_at: None,
        note: None,
    }
}

/// A small directory packed into a CAR at `dir/p.car`; its root and every block's CID.
fn packed_car(dir: &std::path::Path) -> (std::path::PathBuf, cid::Cid, Vec<cid::Cid>) {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let bytes: Vec<u8> = (0..9000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(src.join("a.bin"), &bytes).unwrap();
    std::fs::write(src.join("b.txt"), b"hello").unwrap();
    let car = dir.join("p.car");
    let mut w = CarFileWriter::new(std::fs::File::create(&car).unwrap(), &car).unwrap();
    let params = DagParams {
        chunk_size: 1000,
        max_links: 3,
    };
    let packed = pack_path(&src, &mut w, &params, &mut |_| {}).unwrap();
    w.finish(&packed.root.cid).unwrap();
    let blocks = index_car(&car).unwrap().blocks;
    (
        car,
        packed.root.cid,
        blocks.into_iter().map(|b| b.cid).collect(),
    )
}

/// The market's records: deals inserted once and replaced all or none, job records, and a CAR
/// payload's blocks located, then forgotten.
fn market_suite(records: &MarketRecords) {
    let deals = DealRecords::new(records.clone());
    let mut a = deal(1);
    assert!(deals.insert_new(&a).unwrap());
    let mut twin = a.clone();
    twin.client_peer = "someone else".into();
    assert!(!deals.insert_new(&twin).unwrap(), "a UUID is taken once");
    a.set_status(DealStatus::Transferring);
    let mut b = deal(2);
    deals.insert_new(&b).unwrap();
    b.set_status(DealStatus::Published);
    b.deal_id = Some(44);
    deals.put_all(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(deals.get(&a.uuid).unwrap(), Some(a.clone()));
    assert_eq!(deals.get(&DealUuid::new_random()).unwrap(), None);
    let mut want = vec![a, b];
    want.sort_by_key(|d| *d.uuid.as_bytes());
    assert_eq!(deals.list().unwrap(), want);

    let jobs = deals.job_records();
    jobs.put(&job(300, JobPhase::Accepted)).unwrap();
    jobs.put(&job(2, JobPhase::Ran)).unwrap();
    jobs.put(&job(300, JobPhase::Submitted)).unwrap();
    assert_eq!(jobs.get(300).unwrap(), Some(job(300, JobPhase::Submitted)));
    assert_eq!(jobs.get(3).unwrap(), None);
    let ids: Vec<u64> = jobs.list().unwrap().iter().map(|j| j.job_id).collect();
    assert_eq!(ids, [2, 300], "in job id order");

    let dir = tempfile::tempdir().unwrap();
    let (car, root, cids) = packed_car(dir.path());
    let index = deals.block_index();
    let p = PieceCid::new(lode_proofs::node::trunc254([9; 32])).unwrap();
    assert_eq!(index.indexed(&p).unwrap(), None);
    let done = index.index_payload(&p, &car).unwrap().unwrap();
    assert_eq!(done.roots, [root.to_string()]);
    assert_eq!(index.indexed(&p).unwrap(), Some(done));
    for cid in &cids {
        let at = index.locate(cid).unwrap();
        assert_eq!(at.len(), 1, "{cid}");
        assert_eq!(at[0].piece, p);
    }
    assert_eq!(index.pieces_with_root(&root).unwrap(), [p]);
    let removed = index.remove_piece(&p).unwrap();
    assert!(removed > 0 && removed <= cids.len() as u64);
    assert!(index.locate(&root).unwrap().is_empty());
    assert!(index.pieces_with_root(&root).unwrap().is_empty());
    assert_eq!(index.indexed(&p).unwrap(), None);
}

#[test]
fn the_market_records_suite_passes_on_the_embedded_database() {
    let d = tempfile::tempdir().unwrap();
    market_suite(&MarketRecords::open(d.path()).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_market_records_suite_passes_on_postgres_beside_the_pipeline() {
    let Some((_pg, engine, url)) = database("market").await else {
        return;
    };
    let market = MarketRecords::postgres(&url, 1000, None).unwrap();
    let pipeline = Records::postgres(&url, 1000, None).unwrap();
    assert!(market.is_empty().unwrap());
    PipelineStore::new(pipeline.clone())
        .create(SectorKind::CommittedCapacity, 0, 1)
        .unwrap();
    // The pipeline's rows are not the market's: each set is empty or not on its own.
    assert!(market.is_empty().unwrap());
    market_suite(&market);
    assert!(!market.is_empty().unwrap());
    assert_eq!(PipelineStore::new(pipeline).list().unwrap().len(), 1);
    // Another miner's market records in the same database are its own.
    let other = MarketRecords::postgres(&url, 1001, None).unwrap();
    assert!(other.is_empty().unwrap());
    assert!(DealRecords::new(other).list().unwrap().is_empty());

    // An embedded market database is brought over once, whole.
    let d = tempfile::tempdir().unwrap();
    let local = MarketRecords::open(d.path()).unwrap();
    let kept = DealRecords::new(local.clone());
    let a = deal(5);
    kept.insert_new(&a).unwrap();
    kept.job_records().put(&job(8, JobPhase::Accepted)).unwrap();
    let shared = MarketRecords::postgres(&url, 1002, None).unwrap();
    assert_eq!(shared.import(&local).unwrap(), 2);
    let moved = DealRecords::new(shared);
    assert_eq!(moved.list().unwrap(), [a]);
    assert_eq!(
        moved.job_records().get(8).unwrap(),
        Some(job(8, JobPhase::Accepted))
    );

    // Fenced by the lease like the pipeline's: a deposed provider's deal write is refused.
    let lease = "provider/f1003";
    let ttl = Duration::from_millis(300);
    let first = engine
        .acquire_lease(lease, "a", ttl)
        .await
        .unwrap()
        .unwrap();
    let fenced = |epoch| {
        DealRecords::new(
            MarketRecords::postgres(
                &url,
                1003,
                Some(Fence {
                    lease: lease.into(),
                    epoch,
                }),
            )
            .unwrap(),
        )
    };
    let old = fenced(first);
    let d1 = deal(6);
    assert!(old.insert_new(&d1).unwrap());
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let second = engine
        .acquire_lease(lease, "b", ttl)
        .await
        .unwrap()
        .unwrap();
    let err = old.put(&deal(7)).unwrap_err();
    assert!(
        matches!(&err, MarketError::Records { why, .. } if why.contains("another provider leads")),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("the cluster database (miner 1003)"),
        "{err}"
    );
    let new = fenced(second);
    new.put(&deal(7)).unwrap();
    assert_eq!(new.list().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_7_names_the_pipeline_rows_of_schema_6() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.create_database("schema6");
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut sql = String::from(
        "CREATE TABLE lode_schema (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());",
    );
    for m in [
        include_str!("../../src/engine/migrations/0001_tasks.sql"),
        include_str!("../../src/engine/migrations/0002_payloads_storage.sql"),
        include_str!("../../src/engine/migrations/0003_worker_urls.sql"),
        include_str!("../../src/engine/migrations/0004_task_subjects.sql"),
        include_str!("../../src/engine/migrations/0005_sector_locations.sql"),
        include_str!("../../src/engine/migrations/0006_pipeline_records.sql"),
    ] {
        sql.push_str(m);
    }
    sql.push_str("INSERT INTO lode_schema (version) VALUES (1), (2), (3), (4), (5), (6);");
    client.batch_execute(&sql).await.unwrap();
    // What schema 6 held: a sector counter (tree 1) and one deal piece's index (tree 6) of
    // miner 1000.
    client
        .batch_execute(
            "INSERT INTO lode_pipeline (miner, tree, key, value) VALUES
                 (1000, 1, 'n'::bytea, '\\x07'::bytea),
                 (1000, 6, '\\x0102'::bytea, ''::bytea);",
        )
        .await
        .unwrap();
    let engine = PgEngine::connect(&url).await.unwrap();
    assert_eq!(engine.schema_version().await.unwrap(), 7);
    let records = Records::postgres(&url, 1000, None).unwrap();
    assert_eq!(records.get(Tree::Meta, b"n").unwrap(), Some(vec![7]));
    assert_eq!(
        records.scan(Tree::PieceCids, &[]).unwrap(),
        [(vec![1, 2], Vec::new())]
    );
    assert!(records.scan(Tree::Sectors, &[]).unwrap().is_empty());
    let names: Vec<String> = client
        .query("SELECT tree FROM lode_records ORDER BY tree", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["pipeline/meta", "pipeline/piece_cids"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_trees_answer_what_the_database_holds() {
    let Some((_pg, _engine, url)) = database("cache").await else {
        return;
    };
    let cached = PipelineStore::new(
        Records::postgres_cached(&url, 1000, None, lode_provider::pipeline::kv::CACHED).unwrap(),
    );
    // The whole suite through the cache: every read after a write sees it.
    suite(&cached);
    let plain = PipelineStore::new(Records::postgres(&url, 1000, None).unwrap());
    let same = |a: &PipelineStore, b: &PipelineStore| {
        assert_eq!(a.list().unwrap(), b.list().unwrap());
        assert_eq!(
            TaskStore::new(a).list().unwrap(),
            TaskStore::new(b).list().unwrap()
        );
        assert_eq!(a.deal_pieces().unwrap(), b.deal_pieces().unwrap());
        assert_eq!(a.get(10).unwrap(), b.get(10).unwrap());
    };
    same(&cached, &plain);
    // A refused change leaves the cache as the database (nothing was written).
    let s = cached.get(10).unwrap().unwrap();
    assert!(
        cached
            .apply(10, s.version + 1, &Event::Done, 60, &RetryPolicy::default())
            .is_err()
    );
    same(&cached, &plain);

    // What a tick reads, 1,000 sector records from the cache and from the database.
    for i in 0..1000 {
        cached
            .create(SectorKind::CommittedCapacity, 0, 100 + i)
            .unwrap();
    }
    same(&cached, &plain);
    let time = |store: &PipelineStore| {
        let t = std::time::Instant::now();
        for _ in 0..5 {
            assert_eq!(store.list().unwrap().len(), 1004);
        }
        t.elapsed() / 5
    };
    let (from_memory, from_db) = (time(&cached), time(&plain));
    eprintln!("1,004 sector records: {from_memory:?} from the cache, {from_db:?} from PostgreSQL");
}
