//! The task engine's suite, one suite run against both back ends: the embedded sled engine and a
//! real PostgreSQL server started by the test (`lode_testkit::postgres`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use lode_provider::engine::embedded::SledEngine;
use lode_provider::engine::postgres::PgEngine;
use lode_provider::engine::{
    EngineError, Enqueued, Outcome, StoragePath, TaskEngine, TaskPhase, TaskSpec, WorkerInfo,
};
use lode_provider::tasks::{Resources, TaskKind};
use lode_testkit::postgres::Postgres;

fn spec(miner: u64, kind: TaskKind, subject: u64, cores: u32) -> TaskSpec {
    let resources = Resources {
        cores,
        memory: 1 << 30,
        ..Resources::ZERO
    };
    TaskSpec::new(miner, kind, subject, resources)
}

fn room(cores: u32) -> Resources {
    Resources {
        cores,
        memory: 64 << 30,
        gpus: 0,
        scratch: u64::MAX,
    }
}

async fn worker<E: TaskEngine>(e: &E, name: &str) -> String {
    e.register(&WorkerInfo {
        name: name.into(),
        resources: room(8),
        kinds: TaskKind::ALL.to_vec(),
        url: Some(format!("http://{name}.example:7001")),
    })
    .await
    .unwrap();
    name.to_string()
}

/// Claims go time-sensitive first, then lowest subject, within the worker's kinds and room; a
/// task is queued once per (miner, kind, subject); an unregistered worker claims nothing.
async fn claim_order_and_room<E: TaskEngine>(e: &E) {
    let a = worker(e, "order").await;
    let pc1_5 = e
        .enqueue(&spec(1, TaskKind::PreCommit1, 5, 1))
        .await
        .unwrap();
    let pc1_3 = e
        .enqueue(&spec(1, TaskKind::PreCommit1, 3, 1))
        .await
        .unwrap();
    let post = e
        .enqueue(&spec(1, TaskKind::WindowPost, 100, 1))
        .await
        .unwrap();
    let pc2 = e
        .enqueue(&spec(1, TaskKind::PreCommit2, 1, 4))
        .await
        .unwrap();
    assert!(matches!(pc1_5, Enqueued::New(_)));
    assert_eq!(
        e.enqueue(&spec(1, TaskKind::PreCommit1, 5, 1))
            .await
            .unwrap(),
        Enqueued::Existing(pc1_5.id())
    );
    assert!(
        e.claim("nobody", TaskKind::ALL, &room(8))
            .await
            .unwrap()
            .is_none()
    );
    let mut claims = Vec::new();
    while let Some(c) = e.claim(&a, TaskKind::ALL, &room(2)).await.unwrap() {
        assert_eq!(c.attempts, 1);
        claims.push(c);
    }
    let order: Vec<u64> = claims.iter().map(|c| c.id).collect();
    let tokens: Vec<u64> = claims.iter().map(|c| c.token).collect();
    assert_eq!(
        order,
        [post.id(), pc1_3.id(), pc1_5.id()],
        "PreCommit2 needs 4 cores"
    );
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "tokens only grow");
    assert!(
        e.claim(&a, &[TaskKind::Commit2], &room(8))
            .await
            .unwrap()
            .is_none()
    );
    let c = e.claim(&a, TaskKind::ALL, &room(4)).await.unwrap().unwrap();
    assert_eq!(c.id, pc2.id());
    claims.push(c);
    for c in &claims {
        e.finish(c, &Outcome::Done(String::new())).await.unwrap();
    }
    assert_eq!(e.release(&a).await.unwrap(), 0);
    assert!(
        e.tasks(10)
            .await
            .unwrap()
            .iter()
            .all(|r| r.phase == TaskPhase::Done)
    );
}

/// A worker declared dead loses its claims: another takes the task under a larger token, the dead
/// one's result is refused and changes nothing, and its heartbeat says it must register again.
async fn fencing<E: TaskEngine>(e: &E) {
    let a = worker(e, "fence-a").await;
    let id = e
        .enqueue(&spec(2, TaskKind::Commit2, 7, 1))
        .await
        .unwrap()
        .id();
    let old = e.claim(&a, TaskKind::ALL, &room(8)).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = worker(e, "fence-b").await;
    assert_eq!(e.reclaim_dead(Duration::from_millis(200)).await.unwrap(), 1);
    assert!(
        !e.heartbeat(&a).await.unwrap(),
        "a dead worker must register again"
    );
    assert!(e.heartbeat(&b).await.unwrap());
    let new = e.claim(&b, TaskKind::ALL, &room(8)).await.unwrap().unwrap();
    assert_eq!((new.id, new.attempts), (id, 2));
    assert!(new.token > old.token);
    let stale = e.finish(&old, &Outcome::Done(String::new())).await;
    assert!(matches!(stale, Err(EngineError::Stale { .. })), "{stale:?}");
    e.finish(&new, &Outcome::Failed("proof did not verify".into()))
        .await
        .unwrap();
    let again = e.finish(&new, &Outcome::Done(String::new())).await;
    assert!(
        matches!(again, Err(EngineError::Stale { .. })),
        "a finished task is history"
    );
    let rows = e.tasks(10).await.unwrap();
    let row = rows.iter().find(|r| r.id == id).unwrap();
    assert_eq!(row.phase, TaskPhase::Failed);
    assert_eq!(row.error.as_deref(), Some("proof did not verify"));
    e.release(&b).await.unwrap();
}

/// A retried task waits its delay, then is claimed again; a task is queued anew once finished.
async fn retry<E: TaskEngine>(e: &E) {
    let a = worker(e, "retry").await;
    let s = spec(3, TaskKind::PreCommit2, 1, 1);
    let id = e.enqueue(&s).await.unwrap().id();
    let c = e.claim(&a, TaskKind::ALL, &room(8)).await.unwrap().unwrap();
    let wait = Duration::from_millis(400);
    e.finish(
        &c,
        &Outcome::Retry {
            reason: "disk busy".into(),
            after: wait,
        },
    )
    .await
    .unwrap();
    assert!(
        e.claim(&a, TaskKind::ALL, &room(8))
            .await
            .unwrap()
            .is_none()
    );
    tokio::time::sleep(wait + Duration::from_millis(150)).await;
    let c = e.claim(&a, TaskKind::ALL, &room(8)).await.unwrap().unwrap();
    assert_eq!((c.id, c.attempts), (id, 2));
    e.finish(&c, &Outcome::Done(String::new())).await.unwrap();
    let next = e.enqueue(&s).await.unwrap();
    assert!(matches!(next, Enqueued::New(n) if n != id));
    e.release(&a).await.unwrap();
}

/// A waiting worker is woken by a task queued or given back, long before its timeout.
async fn wakeups<E: TaskEngine + Clone + 'static>(e: &E) {
    let a = worker(e, "wake-a").await;
    let b = worker(e, "wake-b").await;
    let waiter = e.clone();
    // Nothing seen yet is consumed first.
    waiter.wait(Duration::from_millis(50)).await;
    waiter.wait(Duration::from_millis(50)).await;
    let started = Instant::now();
    let woken = tokio::spawn(async move {
        waiter.wait(Duration::from_secs(20)).await;
        started.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    e.enqueue(&spec(4, TaskKind::Finalize, 1, 1)).await.unwrap();
    let took = woken.await.unwrap();
    assert!(took < Duration::from_secs(5), "woken after {took:?}");
    let c = e.claim(&a, TaskKind::ALL, &room(8)).await.unwrap().unwrap();
    let waiter = e.clone();
    waiter.wait(Duration::from_millis(50)).await;
    let started = Instant::now();
    let woken = tokio::spawn(async move {
        waiter.wait(Duration::from_secs(20)).await;
        started.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(e.release(&a).await.unwrap(), 1);
    assert!(woken.await.unwrap() < Duration::from_secs(5));
    let again = e.claim(&b, TaskKind::ALL, &room(8)).await.unwrap().unwrap();
    assert_eq!(again.id, c.id);
    e.finish(&again, &Outcome::Done(String::new()))
        .await
        .unwrap();
    e.release(&b).await.unwrap();
}

/// One holder at a time; the epoch grows with every new holder.
async fn leases<E: TaskEngine>(e: &E) {
    let ttl = Duration::from_secs(30);
    assert_eq!(
        e.acquire_lease("miner-1000", "p1", ttl).await.unwrap(),
        Some(1)
    );
    assert_eq!(
        e.acquire_lease("miner-1000", "p2", ttl).await.unwrap(),
        None
    );
    assert_eq!(
        e.acquire_lease("miner-1000", "p1", ttl).await.unwrap(),
        Some(1)
    );
    assert_eq!(
        e.acquire_lease("miner-1001", "p2", ttl).await.unwrap(),
        Some(1)
    );
    e.release_lease("miner-1000", "p2").await.unwrap();
    assert_eq!(
        e.acquire_lease("miner-1000", "p2", ttl).await.unwrap(),
        None
    );
    e.release_lease("miner-1000", "p1").await.unwrap();
    assert_eq!(
        e.acquire_lease("miner-1000", "p2", ttl).await.unwrap(),
        Some(2)
    );
    // An expired lease is taken over.
    let short = Duration::from_millis(100);
    assert_eq!(
        e.acquire_lease("miner-1000", "p2", short).await.unwrap(),
        Some(2)
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        e.acquire_lease("miner-1000", "p3", ttl).await.unwrap(),
        Some(3)
    );
}

/// `workers` competing handles claim and finish `tasks` tasks of miner `miner` at once: each task
/// is run exactly once, every token is distinct. Returns the time the claims took.
async fn race<E: TaskEngine + 'static>(handles: Vec<E>, miner: u64, tasks: u64) -> Duration {
    let queue = &handles[0];
    for s in 0..tasks {
        queue
            .enqueue(&spec(miner, TaskKind::PreCommit1, s, 1))
            .await
            .unwrap();
    }
    let started = Instant::now();
    let mut joins = Vec::new();
    for (i, e) in handles.into_iter().enumerate() {
        joins.push(tokio::spawn(async move {
            let name = worker(&e, &format!("race-{miner}-{i}")).await;
            let mut ran = Vec::new();
            while let Some(c) = e
                .claim(&name, &[TaskKind::PreCommit1], &room(8))
                .await
                .unwrap()
            {
                assert_eq!(c.spec.miner, miner);
                e.finish(&c, &Outcome::Done(String::new())).await.unwrap();
                ran.push((c.spec.subject, c.token));
            }
            e.release(&name).await.unwrap();
            ran
        }));
    }
    let mut subjects = HashSet::new();
    let mut tokens = HashSet::new();
    for j in joins {
        for (s, t) in j.await.unwrap() {
            assert!(subjects.insert(s), "task {s} ran twice");
            assert!(tokens.insert(t), "token {t} handed out twice");
        }
    }
    assert_eq!(subjects.len() as u64, tasks, "every task ran");
    started.elapsed()
}

/// A task bound to a worker is claimed by that worker only; inputs travel with the claim and
/// outputs stay in the history with the worker that produced them; storage paths are listed.
async fn binding_payloads_and_storage<E: TaskEngine>(e: &E) {
    let a = worker(e, "bind-a").await;
    let b = worker(e, "bind-b").await;
    let listed = e.workers().await.unwrap();
    let row = listed.iter().find(|w| w.info.name == "bind-a").unwrap();
    assert_eq!(row.info.url.as_deref(), Some("http://bind-a.example:7001"));
    assert!(row.silent_ms < 5_000);
    let mut s = spec(5, TaskKind::PreCommit2, 9, 1);
    s.input = r#"{"ticket":"01"}"#.into();
    s.at = Some(a.clone());
    let id = e.enqueue(&s).await.unwrap().id();
    assert!(
        e.claim(&b, TaskKind::ALL, &room(8))
            .await
            .unwrap()
            .is_none()
    );
    let c = e.claim(&a, TaskKind::ALL, &room(8)).await.unwrap().unwrap();
    assert_eq!(c.spec, s);
    e.finish(&c, &Outcome::Done(r#"{"comm_r":"ab"}"#.into()))
        .await
        .unwrap();
    let row = e.task(id).await.unwrap().unwrap();
    assert_eq!(row.phase, TaskPhase::Done);
    assert_eq!(row.worker.as_deref(), Some("bind-a"));
    assert_eq!(row.output.as_deref(), Some(r#"{"comm_r":"ab"}"#));
    assert_eq!(row.spec.input, s.input);
    assert!(e.task(u64::MAX >> 1).await.unwrap().is_none());
    let path = StoragePath {
        worker: a.clone(),
        path: "/srv/lode".into(),
        available: Some(1 << 40),
    };
    e.register_storage(&path).await.unwrap();
    e.register_storage(&StoragePath {
        available: Some(1 << 39),
        ..path.clone()
    })
    .await
    .unwrap();
    assert_eq!(
        e.storage().await.unwrap(),
        [StoragePath {
            available: Some(1 << 39),
            ..path
        }]
    );
    e.release(&a).await.unwrap();
    e.release(&b).await.unwrap();
}

/// A queued task is withdrawn into the history with its reason, freeing its `(miner, kind,
/// subject)` for a new one; a claimed or finished task is not.
async fn cancelling<E: TaskEngine>(e: &E) {
    let a = worker(e, "cancel-a").await;
    let mut s = spec(6, TaskKind::WinningPost, 3, 1);
    s.at = Some("cancel-gone".into());
    let id = e.enqueue(&s).await.unwrap().id();
    assert!(e.cancel(id, "its worker is gone").await.unwrap());
    let row = e.task(id).await.unwrap().unwrap();
    assert_eq!(row.phase, TaskPhase::Failed);
    assert_eq!(row.error.as_deref(), Some("its worker is gone"));
    assert_eq!(row.worker, None);
    assert!(!e.cancel(id, "again").await.unwrap(), "cancelled twice");
    assert_eq!(
        e.latest(6, TaskKind::WinningPost, 3)
            .await
            .unwrap()
            .unwrap()
            .id,
        id
    );
    // The subject is free again: a new task, unbound, which a worker claims.
    s.at = None;
    let again = e.enqueue(&s).await.unwrap();
    assert!(matches!(again, Enqueued::New(n) if n != id), "{again:?}");
    let c = e
        .claim(&a, &[TaskKind::WinningPost], &room(8))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.id, again.id());
    assert!(
        !e.cancel(c.id, "claimed").await.unwrap(),
        "a claimed task was cancelled"
    );
    e.finish(&c, &Outcome::Done(String::new())).await.unwrap();
    assert!(!e.cancel(c.id, "finished").await.unwrap());
    assert_eq!(e.task(c.id).await.unwrap().unwrap().phase, TaskPhase::Done);
    e.release(&a).await.unwrap();
}

/// Claims `kind` for `subject` of miner 30 as `worker` and ends it with `outcome`.
async fn run_task<E: TaskEngine>(
    e: &E,
    worker: &str,
    kind: TaskKind,
    subject: u64,
    outcome: Outcome,
) {
    let mut s = spec(30, kind, subject, 1);
    s.at = Some(worker.to_string());
    e.enqueue(&s).await.unwrap();
    let c = e.claim(worker, &[kind], &room(8)).await.unwrap().unwrap();
    e.finish(&c, &outcome).await.unwrap();
}

/// Which workers `locations` lists for miner 30's `sector`, newest first.
async fn holders<E: TaskEngine>(e: &E, sector: u64) -> Vec<String> {
    e.locations(30, Some(&[sector]))
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.worker)
        .collect()
}

/// The sector location index: a phase that leaves files on its worker, finished successfully,
/// makes that worker the sector's newest holder (again, when it held a copy already); Commit2 and
/// failures leave the index alone; a deleted copy is forgotten, one worker's or all.
async fn locating<E: TaskEngine>(e: &E) {
    let a = worker(e, "loc-a").await;
    let b = worker(e, "loc-b").await;
    let done = || Outcome::Done("{}".into());
    run_task(e, &a, TaskKind::PreCommit1, 1, done()).await;
    assert_eq!(holders(e, 1).await, [a.as_str()]);
    run_task(e, &b, TaskKind::PreCommit2, 1, done()).await;
    assert_eq!(holders(e, 1).await, [b.as_str(), a.as_str()]);
    run_task(e, &a, TaskKind::Commit2, 1, done()).await;
    run_task(e, &a, TaskKind::Commit1, 1, Outcome::Failed("no".into())).await;
    assert_eq!(holders(e, 1).await, [b.as_str(), a.as_str()]);
    run_task(e, &a, TaskKind::Commit1, 1, done()).await;
    assert_eq!(holders(e, 1).await, [a.as_str(), b.as_str()]);
    run_task(e, &b, TaskKind::PreCommit1, 2, done()).await;
    let all = e.locations(30, None).await.unwrap();
    let listed: Vec<(u64, &str)> = all.iter().map(|l| (l.sector, l.worker.as_str())).collect();
    assert_eq!(listed, [(1, "loc-a"), (1, "loc-b"), (2, "loc-b")]);
    assert!(all.iter().all(|l| l.miner == 30));
    assert!(all[0].placed > all[1].placed);
    assert_eq!(holders(e, 2).await, [b.as_str()]);
    let held = e.held().await.unwrap();
    let count = |w: &str| held.iter().find(|(n, _)| n == w).map_or(0, |(_, c)| *c);
    assert_eq!((count("loc-a"), count("loc-b")), (1, 2), "{held:?}");
    let both = e.locations(30, Some(&[2, 1, 2])).await.unwrap();
    assert_eq!(both.len(), 3, "{both:?}");
    assert!(e.locations(31, None).await.unwrap().is_empty());
    assert_eq!(e.forget_location(30, 1, Some(&b)).await.unwrap(), 1);
    assert_eq!(e.forget_location(30, 1, Some(&b)).await.unwrap(), 0);
    assert_eq!(holders(e, 1).await, [a.as_str()]);
    assert_eq!(e.forget_location(30, 2, None).await.unwrap(), 1);
    assert!(holders(e, 2).await.is_empty());
    assert_eq!(holders(e, 1).await, [a.as_str()]);
    e.release(&a).await.unwrap();
    e.release(&b).await.unwrap();
}

async fn suite<E: TaskEngine + Clone + 'static>(e: &E) {
    claim_order_and_room(e).await;
    binding_payloads_and_storage(e).await;
    fencing(e).await;
    retry(e).await;
    wakeups(e).await;
    leases(e).await;
    cancelling(e).await;
    locating(e).await;
}

fn sled_engine(dir: &std::path::Path) -> SledEngine {
    SledEngine::open(&sled::open(dir).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_engine_suite_on_sled() {
    let tmp = tempfile::tempdir().unwrap();
    let e = sled_engine(tmp.path());
    suite(&e).await;
    // Racing workers of one process.
    for (miner, workers, tasks) in [(10, 2, 50), (11, 8, 200), (12, 16, 64)] {
        race(vec![e.clone(); workers], miner, tasks).await;
    }
    // Records and the token counter survive a restart of the process.
    let a = worker(&e, "restart").await;
    e.enqueue(&spec(20, TaskKind::Commit1, 1, 1)).await.unwrap();
    let before = e.claim(&a, TaskKind::ALL, &room(8)).await.unwrap().unwrap();
    drop(e);
    let e = sled_engine(tmp.path());
    assert_eq!(e.release(&a).await.unwrap(), 1);
    let a = worker(&e, "restart").await;
    let after = e.claim(&a, TaskKind::ALL, &room(8)).await.unwrap().unwrap();
    assert_eq!(after.id, before.id);
    assert!(after.token > before.token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_engine_suite_on_postgres() {
    let Some(pg) = Postgres::start() else { return };

    // A database at schema 1 with a queued task is migrated forward, the task kept.
    let old = pg.create_database("upgrade");
    let (client, conn) = tokio_postgres::connect(&old, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(include_str!("../../src/engine/migrations/0001_tasks.sql"))
        .await
        .unwrap();
    client
        .batch_execute(
            "CREATE TABLE lode_schema (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
             INSERT INTO lode_schema (version) VALUES (1);
             INSERT INTO lode_tasks (miner, kind, subject, cores, memory, gpus, scratch, time_sensitive)
             VALUES (7, 'PreCommit1', 3, 1, 0, 0, 0, false);
             INSERT INTO lode_task_history (id, miner, kind, subject, cores, memory, gpus, scratch,
                 attempts, worker, ok, created_at)
             VALUES (100, 7, 'PreCommit1', 4, 1, 0, 0, 0, 1, 'wa', true, now()),
                    (101, 7, 'PreCommit2', 4, 1, 0, 0, 0, 1, 'wb', true, now()),
                    (102, 7, 'Commit1', 4, 1, 0, 0, 0, 1, 'wa', true, now()),
                    (103, 7, 'Commit1', 4, 1, 0, 0, 0, 1, 'wc', false, now()),
                    (104, 7, 'Commit2', 4, 1, 0, 0, 0, 1, 'wd', true, now()),
                    (105, 7, 'PreCommit1', 5, 1, 0, 0, 0, 1, 'wb', true, now());",
        )
        .await
        .unwrap();
    let upgraded = PgEngine::connect(&old).await.unwrap();
    assert_eq!(upgraded.schema_version().await.unwrap(), 7);
    // The location index is built from the history: each leaving kind's newest task, when it
    // succeeded (sector 4's newest Commit1 failed; Commit2 leaves nothing), newest first.
    let built: Vec<(u64, String)> = upgraded
        .locations(7, None)
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.sector, l.worker))
        .collect();
    assert_eq!(
        built,
        [
            (4, "wb".to_string()),
            (4, "wa".to_string()),
            (5, "wb".to_string())
        ]
    );
    let w = worker(&upgraded, "upgrade").await;
    let c = upgraded
        .claim(&w, TaskKind::ALL, &room(8))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (c.spec.miner, c.spec.subject, c.spec.input.as_str()),
        (7, 3, "")
    );

    let url = pg.create_database("suite");
    let e = PgEngine::connect(&url).await.unwrap();
    assert_eq!(e.schema_version().await.unwrap(), 7);
    suite(&e).await;

    // Workers on separate connections (as separate machines would be) racing for the claims.
    for (miner, workers, tasks) in [(10u64, 2usize, 50u64), (11, 8, 200)] {
        let mut handles = Vec::new();
        for _ in 0..workers {
            handles.push(PgEngine::connect(&url).await.unwrap());
        }
        race(handles, miner, tasks).await;
    }

    // A second start migrates nothing; a database newer than this build is refused.
    let again = PgEngine::connect(&url).await.unwrap();
    assert_eq!(again.schema_version().await.unwrap(), 7);

    // PostgreSQL restarted under a running worker: calls fail while it is down, then reconnect;
    // the listener reconnects too and wakes its waiters.
    let a = worker(&e, "restart").await;
    e.enqueue(&spec(30, TaskKind::Commit2, 1, 1)).await.unwrap();
    pg.stop();
    assert!(e.claim(&a, TaskKind::ALL, &room(8)).await.is_err());
    pg.start_again();
    let mut claimed = None;
    for _ in 0..50 {
        match e.claim(&a, TaskKind::ALL, &room(8)).await {
            Ok(c) => {
                claimed = c;
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let c = claimed.expect("the worker reconnects and claims the task");
    e.finish(&c, &Outcome::Done(String::new())).await.unwrap();
    let waiter = e.clone();
    waiter.wait(Duration::from_millis(50)).await;
    let woken = tokio::spawn(async move {
        let t = Instant::now();
        waiter.wait(Duration::from_secs(20)).await;
        t.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    e.enqueue(&spec(30, TaskKind::Commit2, 2, 1)).await.unwrap();
    assert!(
        woken.await.unwrap() < Duration::from_secs(10),
        "the listener reconnected"
    );

    let client_url = url.clone();
    let (client, conn) = tokio_postgres::connect(&client_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .execute("INSERT INTO lode_schema (version) VALUES (99)", &[])
        .await
        .unwrap();
    let newer = PgEngine::connect(&url).await;
    assert!(
        matches!(
            newer,
            Err(EngineError::SchemaTooNew {
                found: 99,
                known: 7
            })
        ),
        "{:?}",
        newer.err()
    );
}

/// Claim throughput with 16 competing workers, each on its own connection (the BENCHMARKS
/// figure): `cargo test --release -p lode-provider --test integration -- claim_throughput --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claim_throughput_of_16_workers_on_postgres() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.create_database("throughput");
    let tasks = 2000u64;
    let mut handles = Vec::new();
    for _ in 0..16 {
        handles.push(PgEngine::connect(&url).await.unwrap());
    }
    let took = race(handles, 1, tasks).await;
    eprintln!(
        "postgres: {tasks} tasks claimed and finished by 16 workers in {:.2} s: {:.0} tasks/s",
        took.as_secs_f64(),
        tasks as f64 / took.as_secs_f64()
    );
    // One claim's latency on an idle queue.
    let e = PgEngine::connect(&url).await.unwrap();
    let w = worker(&e, "latency").await;
    let mut total = Duration::ZERO;
    for s in 0..200u64 {
        e.enqueue(&spec(2, TaskKind::PreCommit1, s, 1))
            .await
            .unwrap();
        let t = Instant::now();
        let c = e.claim(&w, TaskKind::ALL, &room(8)).await.unwrap().unwrap();
        total += t.elapsed();
        e.finish(&c, &Outcome::Done(String::new())).await.unwrap();
    }
    eprintln!(
        "postgres: claim latency {:.2} ms (mean of 200)",
        total.as_secs_f64() * 1e3 / 200.0
    );

    let tmp = tempfile::tempdir().unwrap();
    let e = sled_engine(tmp.path());
    let took = race(vec![e.clone(); 16], 1, tasks).await;
    eprintln!(
        "sled: {tasks} tasks claimed and finished by 16 workers in {:.2} s: {:.0} tasks/s",
        took.as_secs_f64(),
        tasks as f64 / took.as_secs_f64()
    );
}

/// The claim hammered: any number of workers racing over any number of tasks, on both back
/// ends — each task runs exactly once, no token is handed out twice.
#[test]
fn racing_claims_run_each_task_exactly_once() {
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let pg = Postgres::start();
    let url = pg.as_ref().map(|pg| pg.create_database("race"));
    let tmp = tempfile::tempdir().unwrap();
    let sled = sled_engine(tmp.path());
    let miner = AtomicU64::new(100);
    let config = ProptestConfig {
        cases: 12,
        ..ProptestConfig::default()
    };
    proptest!(config, |(workers in 2usize..=16, tasks in 1u64..=60)| {
        let m = miner.fetch_add(1, Ordering::Relaxed);
        rt.block_on(race(vec![sled.clone(); workers], m, tasks));
        if let Some(url) = &url {
            rt.block_on(async {
                let mut handles = Vec::new();
                for _ in 0..workers {
                    handles.push(PgEngine::connect(url).await.unwrap());
                }
                race(handles, m, tasks).await
            });
        }
    });
}
