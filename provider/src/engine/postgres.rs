//! The PostgreSQL task engine: the queue of a cluster, shared by every machine's workers.
//!
//! - The schema is versioned (`lode_schema`) and migrated at [`PgEngine::connect`], under an
//!   advisory lock so that machines starting together migrate once; a database newer than this
//!   build is refused ([`EngineError::SchemaTooNew`]).
//! - A claim is one statement: the most urgent fitting queued task, `FOR UPDATE SKIP LOCKED` (two
//!   workers never wait on, nor both take, one row), given its owner and the next token of the
//!   sequence `lode_task_tokens`.
//! - Finishing is one statement fenced by `(id, token, owner)`: the row moves to the history (and,
//!   for a phase that leaves its sector's files on its worker, the worker becomes the sector's
//!   newest location), or nothing happens and the claim is stale.
//! - A worker's row deleted (shut down, or silent past the timeout) frees its tasks through the
//!   foreign key's `ON DELETE SET NULL`.
//! - Every change that makes a task claimable is followed by `NOTIFY lode_tasks`; waiting workers
//!   `LISTEN` on a connection of their own (reconnected with back-off, with a wakeup after each
//!   reconnection so nothing queued meanwhile is missed) instead of polling the database.
//! - Times are the database's (`now()`): the machines' clocks need not agree.
//! - A lost connection is reopened by the next call: a PostgreSQL restart costs the calls made
//!   while it is down (their errors), not the engine.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{Mutex, watch};
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Row};

use super::{
    Claimed, EngineError, EngineResult, Enqueued, Outcome, StoragePath, TaskEngine, TaskKind,
    TaskPhase, TaskRow, TaskSpec, WorkerInfo, WorkerRow,
};
use crate::tasks::Resources;

/// The migrations, in order: version `i + 1` is `MIGRATIONS[i]`.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_tasks.sql"),
    include_str!("migrations/0002_payloads_storage.sql"),
    include_str!("migrations/0003_worker_urls.sql"),
    include_str!("migrations/0004_task_subjects.sql"),
    include_str!("migrations/0005_sector_locations.sql"),
    include_str!("migrations/0006_pipeline_records.sql"),
    include_str!("migrations/0007_records.sql"),
];

/// The channel `LISTEN`ed to for claimable tasks.
const CHANNEL: &str = "lode_tasks";

/// The advisory lock key held while migrating ("lode" in ASCII).
const MIGRATION_LOCK: i64 = 0x6c6f_6465;

struct Inner {
    config: Config,
    client: Mutex<Option<Arc<Client>>>,
    events: watch::Sender<u64>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// The PostgreSQL engine (cheap to clone: clones share the connection, each waits on its own
/// cursor of the wakeups).
pub struct PgEngine {
    inner: Arc<Inner>,
    seen: AtomicU64,
}

impl Clone for PgEngine {
    fn clone(&self) -> Self {
        PgEngine {
            inner: Arc::clone(&self.inner),
            seen: AtomicU64::new(self.seen.load(Ordering::Relaxed)),
        }
    }
}

fn to_i64(what: &str, v: u64) -> EngineResult<i64> {
    i64::try_from(v)
        .map_err(|_| EngineError::Invalid(format!("{what} {v} is too large for the database")))
}

/// A room figure: larger than the database holds means no limit.
fn room_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn kind_of(name: &str) -> EngineResult<TaskKind> {
    TaskKind::from_name(name)
        .ok_or_else(|| EngineError::Corrupt(format!("unknown task kind {name:?} in the database")))
}

/// The spec from a row with columns `miner, kind, subject, cores, memory, gpus, scratch, input,
/// at_worker`.
fn spec_of(row: &Row) -> EngineResult<TaskSpec> {
    Ok(TaskSpec {
        input: row.try_get("input")?,
        at: row.try_get("at_worker")?,
        miner: to_u64(row.try_get("miner")?),
        kind: kind_of(row.try_get("kind")?)?,
        subject: to_u64(row.try_get("subject")?),
        resources: Resources {
            cores: u32::try_from(row.try_get::<_, i64>("cores")?).unwrap_or(0),
            memory: to_u64(row.try_get("memory")?),
            gpus: u32::try_from(row.try_get::<_, i64>("gpus")?).unwrap_or(0),
            scratch: to_u64(row.try_get("scratch")?),
        },
    })
}

/// The unfinished tasks, as [`row_of`] reads them.
const UNFINISHED: &str = "SELECT id, miner, kind, subject, cores, memory, gpus, scratch, input,
        at_worker, owner AS worker, attempts, error, NULL::text AS output, NULL::boolean AS ok
    FROM lode_tasks";
/// The finished tasks, as [`row_of`] reads them.
const FINISHED: &str = "SELECT id, miner, kind, subject, cores, memory, gpus, scratch, input,
        NULL::text AS at_worker, worker, attempts, error, output, ok
    FROM lode_task_history";

/// A task row from [`UNFINISHED`] or [`FINISHED`].
fn row_of(row: &Row) -> EngineResult<TaskRow> {
    let worker: Option<String> = row.try_get("worker")?;
    let ok: Option<bool> = row.try_get("ok")?;
    Ok(TaskRow {
        id: to_u64(row.try_get("id")?),
        spec: spec_of(row)?,
        phase: match ok {
            Some(true) => TaskPhase::Done,
            Some(false) => TaskPhase::Failed,
            None if worker.is_some() => TaskPhase::Running,
            None => TaskPhase::Queued,
        },
        worker,
        attempts: u32::try_from(row.try_get::<_, i32>("attempts")?).unwrap_or(0),
        error: row.try_get("error")?,
        output: row.try_get("output")?,
    })
}

impl PgEngine {
    /// Connects to `url` (`postgres://user@host:port/db`, or `host=/run/dir port=5432 user=…`),
    /// migrates the schema, and starts listening for wakeups.
    pub async fn connect(url: &str) -> EngineResult<PgEngine> {
        let config = Config::from_str(url)?;
        let (mut client, conn) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "PostgreSQL connection closed");
            }
        });
        migrate(&mut client).await?;
        let (events, _) = watch::channel(0);
        let listener = tokio::spawn(listen(config.clone(), events.clone()));
        Ok(PgEngine {
            inner: Arc::new(Inner {
                config,
                client: Mutex::new(Some(Arc::new(client))),
                events,
                listener,
            }),
            seen: AtomicU64::new(0),
        })
    }

    /// The schema version of the database.
    pub async fn schema_version(&self) -> EngineResult<i64> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT coalesce(max(version), 0) AS v FROM lode_schema",
                &[],
            )
            .await?;
        Ok(row.try_get("v")?)
    }

    /// The shared connection, reopened when it was lost.
    async fn client(&self) -> EngineResult<Arc<Client>> {
        let mut slot = self.inner.client.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(c));
        }
        let (client, conn) = self.inner.config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "PostgreSQL connection closed");
            }
        });
        let client = Arc::new(client);
        *slot = Some(Arc::clone(&client));
        tracing::info!("connected to the cluster database");
        Ok(client)
    }

    async fn notify(&self, client: &Client) -> EngineResult<()> {
        client
            .execute("SELECT pg_notify($1, '')", &[&CHANNEL])
            .await?;
        Ok(())
    }
}

/// Applies the migrations the database lacks, in one transaction under an advisory lock.
async fn migrate(client: &mut Client) -> EngineResult<()> {
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS lode_schema (
             version    BIGINT PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await?;
    let found: i64 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) AS v FROM lode_schema",
            &[],
        )
        .await?
        .try_get("v")?;
    if found > known {
        return Err(EngineError::SchemaTooNew { found, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i64::try_from(i).unwrap_or(i64::MAX).saturating_add(1);
        if version > found {
            tx.batch_execute(sql).await?;
            tx.execute("INSERT INTO lode_schema (version) VALUES ($1)", &[&version])
                .await?;
            tracing::info!(version, "cluster database migrated");
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Listens on [`CHANNEL`] for ever, bumping `events` on every notification and after every
/// (re)connection; reconnects with back-off.
async fn listen(config: Config, events: watch::Sender<u64>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match listen_once(&config, &events).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => tracing::warn!(error = %e, "cluster database listener lost; reconnecting"),
        }
        // Whatever happened while the listener was away is looked at again.
        events.send_modify(|n| *n = n.wrapping_add(1));
        tokio::time::sleep(backoff).await;
        backoff = backoff.saturating_mul(2).min(Duration::from_secs(2));
    }
}

async fn listen_once(
    config: &Config,
    events: &watch::Sender<u64>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut conn) = config.connect(NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(_)) => {
                    if tx.send(()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    events.send_modify(|n| *n = n.wrapping_add(1));
    while rx.recv().await.is_some() {
        events.send_modify(|n| *n = n.wrapping_add(1));
    }
    drop(client);
    match driver.await {
        Ok(r) => r,
        Err(_) => Ok(()),
    }
}

impl TaskEngine for PgEngine {
    async fn register(&self, worker: &WorkerInfo) -> EngineResult<()> {
        let r = &worker.resources;
        let kinds: Vec<&str> = worker.kinds.iter().map(|k| k.name()).collect();
        self.client()
            .await?
            .execute(
                "INSERT INTO lode_workers (name, cores, memory, gpus, scratch, kinds, url)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (name) DO UPDATE SET cores = $2, memory = $3, gpus = $4,
                     scratch = $5, kinds = $6, url = $7, heartbeat_at = now()",
                &[
                    &worker.name,
                    &i64::from(r.cores),
                    &room_i64(r.memory),
                    &i64::from(r.gpus),
                    &room_i64(r.scratch),
                    &kinds,
                    &worker.url,
                ],
            )
            .await?;
        Ok(())
    }

    async fn enqueue(&self, spec: &TaskSpec) -> EngineResult<Enqueued> {
        let client = self.client().await?;
        let r = &spec.resources;
        let (miner, subject) = (
            to_i64("miner", spec.miner)?,
            to_i64("subject", spec.subject)?,
        );
        let (memory, scratch) = (to_i64("memory", r.memory)?, to_i64("scratch", r.scratch)?);
        // The existing task may finish between the insert and the look-up: try again then.
        for _ in 0..3 {
            let inserted = client
                .query_opt(
                    "INSERT INTO lode_tasks (miner, kind, subject, cores, memory, gpus, scratch,
                         time_sensitive, input, at_worker)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (miner, kind, subject) DO NOTHING RETURNING id",
                    &[
                        &miner,
                        &spec.kind.name(),
                        &subject,
                        &i64::from(r.cores),
                        &memory,
                        &i64::from(r.gpus),
                        &scratch,
                        &spec.kind.is_time_sensitive(),
                        &spec.input,
                        &spec.at,
                    ],
                )
                .await?;
            if let Some(row) = inserted {
                self.notify(&client).await?;
                return Ok(Enqueued::New(to_u64(row.try_get("id")?)));
            }
            let existing = client
                .query_opt(
                    "SELECT id FROM lode_tasks WHERE miner = $1 AND kind = $2 AND subject = $3",
                    &[&miner, &spec.kind.name(), &subject],
                )
                .await?;
            if let Some(row) = existing {
                return Ok(Enqueued::Existing(to_u64(row.try_get("id")?)));
            }
        }
        Err(EngineError::Invalid(format!(
            "task {} of miner {} for {} kept changing while it was queued",
            spec.kind, spec.miner, spec.subject
        )))
    }

    async fn claim(
        &self,
        worker: &str,
        kinds: &[TaskKind],
        room: &Resources,
    ) -> EngineResult<Option<Claimed>> {
        let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
        let row = self
            .client()
            .await?
            .query_opt(
                "WITH c AS (
                     SELECT id FROM lode_tasks
                     WHERE owner IS NULL AND kind = ANY($2) AND not_before <= now()
                       AND cores <= $3 AND memory <= $4 AND gpus <= $5 AND scratch <= $6
                       AND (at_worker IS NULL OR at_worker = $1)
                       AND EXISTS (SELECT 1 FROM lode_workers WHERE name = $1)
                     ORDER BY time_sensitive DESC, subject, id
                     LIMIT 1
                     FOR UPDATE SKIP LOCKED)
                 UPDATE lode_tasks t
                 SET owner = $1, token = nextval('lode_task_tokens'),
                     attempts = t.attempts + 1, started_at = now()
                 FROM c WHERE t.id = c.id
                 RETURNING t.id, t.miner, t.kind, t.subject, t.cores, t.memory, t.gpus,
                           t.scratch, t.input, t.at_worker, t.token, t.attempts",
                &[
                    &worker,
                    &names,
                    &i64::from(room.cores),
                    &room_i64(room.memory),
                    &i64::from(room.gpus),
                    &room_i64(room.scratch),
                ],
            )
            .await?;
        row.map(|row| {
            Ok(Claimed {
                id: to_u64(row.try_get("id")?),
                spec: spec_of(&row)?,
                token: to_u64(row.try_get("token")?),
                attempts: u32::try_from(row.try_get::<_, i32>("attempts")?).unwrap_or(0),
                worker: worker.to_string(),
            })
        })
        .transpose()
    }

    async fn heartbeat(&self, worker: &str) -> EngineResult<bool> {
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE lode_workers SET heartbeat_at = now() WHERE name = $1",
                &[&worker],
            )
            .await?;
        Ok(n == 1)
    }

    async fn finish(&self, claim: &Claimed, outcome: &Outcome) -> EngineResult<()> {
        let client = self.client().await?;
        let (id, token) = (to_i64("task", claim.id)?, to_i64("token", claim.token)?);
        let n = match outcome {
            Outcome::Retry { reason, after } => {
                client
                    .execute(
                        "UPDATE lode_tasks SET owner = NULL, error = $4,
                             not_before = now() + $5::bigint * interval '1 millisecond'
                         WHERE id = $1 AND token = $2 AND owner = $3",
                        &[&id, &token, &claim.worker, reason, &ms(*after)],
                    )
                    .await?
            }
            Outcome::Done(_) | Outcome::Failed(_) => {
                let (error, output) = match outcome {
                    Outcome::Failed(reason) => (Some(reason.as_str()), None),
                    Outcome::Done(output) => (None, Some(output.as_str())),
                    Outcome::Retry { .. } => (None, None),
                };
                let leaves: Vec<&str> = TaskKind::ALL
                    .iter()
                    .filter(|k| k.leaves_files())
                    .map(|k| k.name())
                    .collect();
                let row = client
                    .query_one(
                        "WITH done AS (
                             DELETE FROM lode_tasks WHERE id = $1 AND token = $2 AND owner = $3
                             RETURNING *),
                         moved AS (
                             INSERT INTO lode_task_history (id, miner, kind, subject, cores,
                                 memory, gpus, scratch, attempts, worker, ok, error, created_at,
                                 started_at, input, output)
                             SELECT id, miner, kind, subject, cores, memory, gpus, scratch,
                                 attempts, owner, $4, $5, created_at, started_at, input, $6
                             FROM done
                             RETURNING miner, kind, subject, worker, ok),
                         placed AS (
                             INSERT INTO lode_sector_locations (miner, sector, worker)
                             SELECT miner, subject, worker FROM moved
                             WHERE ok AND worker IS NOT NULL AND kind = ANY($7)
                             ON CONFLICT (miner, sector, worker) DO UPDATE
                                 SET placed = nextval('lode_location_order'), updated_at = now())
                         SELECT count(*) FROM moved",
                        &[
                            &id,
                            &token,
                            &claim.worker,
                            &matches!(outcome, Outcome::Done(_)),
                            &error,
                            &output,
                            &leaves,
                        ],
                    )
                    .await?;
                to_u64(row.try_get(0)?)
            }
        };
        if n != 1 {
            return Err(EngineError::Stale {
                task: claim.id,
                token: claim.token,
            });
        }
        if matches!(outcome, Outcome::Retry { .. }) {
            self.notify(&client).await?;
        }
        Ok(())
    }

    async fn cancel(&self, id: u64, reason: &str) -> EngineResult<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "WITH gone AS (
                     DELETE FROM lode_tasks WHERE id = $1 AND owner IS NULL RETURNING *)
                 INSERT INTO lode_task_history (id, miner, kind, subject, cores, memory, gpus,
                     scratch, attempts, worker, ok, error, created_at, started_at, input, output)
                 SELECT id, miner, kind, subject, cores, memory, gpus, scratch, attempts, NULL,
                     false, $2, created_at, started_at, input, NULL FROM gone",
                &[&to_i64("task", id)?, &reason],
            )
            .await?;
        Ok(n == 1)
    }

    async fn release(&self, worker: &str) -> EngineResult<u64> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE lode_tasks SET owner = NULL WHERE owner = $1",
                &[&worker],
            )
            .await?;
        client
            .execute("DELETE FROM lode_workers WHERE name = $1", &[&worker])
            .await?;
        if n > 0 {
            self.notify(&client).await?;
        }
        Ok(n)
    }

    async fn reclaim_dead(&self, timeout: Duration) -> EngineResult<u64> {
        let client = self.client().await?;
        // The count is read from the statement's snapshot (before the foreign key frees them).
        let row = client
            .query_one(
                "WITH dead AS (
                     DELETE FROM lode_workers
                     WHERE heartbeat_at < now() - $1::bigint * interval '1 millisecond'
                     RETURNING name)
                 SELECT count(*) AS n FROM lode_tasks WHERE owner IN (SELECT name FROM dead)",
                &[&ms(timeout)],
            )
            .await?;
        let n = to_u64(row.try_get("n")?);
        if n > 0 {
            tracing::warn!(
                tasks = n,
                "reclaimed the tasks of workers that stopped heartbeating"
            );
            self.notify(&client).await?;
        }
        Ok(n)
    }

    async fn wait(&self, timeout: Duration) {
        super::wait_for_wakeup(&self.inner.events, &self.seen, timeout).await;
    }

    async fn tasks(&self, history: usize) -> EngineResult<Vec<TaskRow>> {
        let client = self.client().await?;
        let limit = i64::try_from(history).unwrap_or(i64::MAX);
        let mut rows = Vec::new();
        for row in client
            .query(&format!("{UNFINISHED} ORDER BY id"), &[])
            .await?
        {
            rows.push(row_of(&row)?);
        }
        for row in client
            .query(
                &format!("{FINISHED} ORDER BY finished_at DESC, id DESC LIMIT $1"),
                &[&limit],
            )
            .await?
        {
            rows.push(row_of(&row)?);
        }
        Ok(rows)
    }

    async fn task(&self, id: u64) -> EngineResult<Option<TaskRow>> {
        let client = self.client().await?;
        let id = to_i64("task", id)?;
        for query in [UNFINISHED, FINISHED] {
            if let Some(row) = client
                .query_opt(&format!("{query} WHERE id = $1"), &[&id])
                .await?
            {
                return Ok(Some(row_of(&row)?));
            }
        }
        Ok(None)
    }

    async fn latest(
        &self,
        miner: u64,
        kind: TaskKind,
        subject: u64,
    ) -> EngineResult<Option<TaskRow>> {
        let client = self.client().await?;
        let (miner, subject) = (to_i64("miner", miner)?, to_i64("subject", subject)?);
        let kind = kind.name();
        let filter = "WHERE miner = $1 AND kind = $2 AND subject = $3";
        for query in [
            format!("{UNFINISHED} {filter}"),
            format!("{FINISHED} {filter} ORDER BY id DESC LIMIT 1"),
        ] {
            if let Some(row) = client.query_opt(&query, &[&miner, &kind, &subject]).await? {
                return Ok(Some(row_of(&row)?));
            }
        }
        Ok(None)
    }

    async fn locations(
        &self,
        miner: u64,
        sectors: Option<&[u64]>,
    ) -> EngineResult<Vec<super::SectorLocation>> {
        let client = self.client().await?;
        let miner_i = to_i64("miner", miner)?;
        let rows = match sectors {
            Some(list) => {
                let list = list
                    .iter()
                    .map(|n| to_i64("sector", *n))
                    .collect::<EngineResult<Vec<i64>>>()?;
                client
                    .query(
                        "SELECT sector, worker, placed FROM lode_sector_locations
                         WHERE miner = $1 AND sector = ANY($2) ORDER BY sector, placed DESC",
                        &[&miner_i, &list],
                    )
                    .await?
            }
            None => {
                client
                    .query(
                        "SELECT sector, worker, placed FROM lode_sector_locations
                         WHERE miner = $1 ORDER BY sector, placed DESC",
                        &[&miner_i],
                    )
                    .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(super::SectorLocation {
                    miner,
                    sector: to_u64(r.try_get("sector")?),
                    worker: r.try_get("worker")?,
                    placed: to_u64(r.try_get("placed")?),
                })
            })
            .collect()
    }

    async fn held(&self) -> EngineResult<Vec<(String, u64)>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT worker, count(*) AS n FROM lode_sector_locations
                 GROUP BY worker ORDER BY worker",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("worker")?, to_u64(r.try_get("n")?))))
            .collect()
    }

    async fn forget_location(
        &self,
        miner: u64,
        sector: u64,
        worker: Option<&str>,
    ) -> EngineResult<u64> {
        let n = self
            .client()
            .await?
            .execute(
                "DELETE FROM lode_sector_locations
                 WHERE miner = $1 AND sector = $2 AND ($3::text IS NULL OR worker = $3)",
                &[
                    &to_i64("miner", miner)?,
                    &to_i64("sector", sector)?,
                    &worker,
                ],
            )
            .await?;
        Ok(n)
    }

    async fn register_storage(&self, storage: &StoragePath) -> EngineResult<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO lode_storage (worker, path, available) VALUES ($1, $2, $3)
                 ON CONFLICT (worker, path) DO UPDATE SET available = $3, updated_at = now()",
                &[
                    &storage.worker,
                    &storage.path,
                    &storage.available.map(room_i64),
                ],
            )
            .await?;
        Ok(())
    }

    async fn storage(&self) -> EngineResult<Vec<StoragePath>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT worker, path, available FROM lode_storage ORDER BY worker, path",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(StoragePath {
                    worker: row.try_get("worker")?,
                    path: row.try_get("path")?,
                    available: row.try_get::<_, Option<i64>>("available")?.map(to_u64),
                })
            })
            .collect()
    }

    async fn workers(&self) -> EngineResult<Vec<WorkerRow>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT name, cores, memory, gpus, scratch, kinds, url,
                        (extract(epoch FROM now() - heartbeat_at) * 1000)::bigint AS silent
                 FROM lode_workers ORDER BY name",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let kinds: Vec<String> = row.try_get("kinds")?;
                Ok(WorkerRow {
                    info: WorkerInfo {
                        name: row.try_get("name")?,
                        resources: Resources {
                            cores: u32::try_from(row.try_get::<_, i64>("cores")?).unwrap_or(0),
                            memory: to_u64(row.try_get("memory")?),
                            gpus: u32::try_from(row.try_get::<_, i64>("gpus")?).unwrap_or(0),
                            scratch: to_u64(row.try_get("scratch")?),
                        },
                        kinds: kinds
                            .iter()
                            .map(|k| kind_of(k))
                            .collect::<EngineResult<_>>()?,
                        url: row.try_get("url")?,
                    },
                    silent_ms: to_u64(row.try_get("silent")?),
                })
            })
            .collect()
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> EngineResult<Option<u64>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "INSERT INTO lode_leases (name, holder, epoch, expires_at)
                 VALUES ($1, $2, 1, now() + $3::bigint * interval '1 millisecond')
                 ON CONFLICT (name) DO UPDATE SET
                     epoch = CASE WHEN lode_leases.holder = EXCLUDED.holder
                                  THEN lode_leases.epoch ELSE lode_leases.epoch + 1 END,
                     holder = EXCLUDED.holder,
                     expires_at = EXCLUDED.expires_at
                 WHERE lode_leases.holder = EXCLUDED.holder OR lode_leases.expires_at < now()
                 RETURNING epoch",
                &[&name, &holder, &ms(ttl)],
            )
            .await?;
        row.map(|r| Ok(to_u64(r.try_get("epoch")?))).transpose()
    }

    async fn release_lease(&self, name: &str, holder: &str) -> EngineResult<()> {
        self.client()
            .await?
            .execute(
                "UPDATE lode_leases SET expires_at = '-infinity' WHERE name = $1 AND holder = $2",
                &[&name, &holder],
            )
            .await?;
        Ok(())
    }
}
