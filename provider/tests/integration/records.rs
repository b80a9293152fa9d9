//! The pipeline's records, one suite run against both places they live: the embedded sled
//! database and a real PostgreSQL server started by the test (`lode_testkit::postgres`), as a
//! provider in a cluster keeps them. Then what only the shared database has: writes fenced by the
//! leader lease, a provider's embedded records brought into the cluster's database, and the
//! connection opened again after the server restarted.

use std::time::Duration;

use lode_chain::actors::market::DealProposal;
use lode_chain::types::{ActorId, TokenAmount};
use lode_provider::engine::TaskEngine;
use lode_provider::engine::postgres::PgEngine;
use lode_provider::pipeline::deals::Target;
use lode_provider::pipeline::kv::{Fence, KvError, Records};
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
