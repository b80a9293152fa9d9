//! The task engine: the shared queue that the machines of a cluster claim their work from.
//!
//! One trait, [`TaskEngine`], and two back ends:
//!
//! - [`embedded::SledEngine`]: the default — one process, the records in a sled database, wakeups
//!   inside the process;
//! - [`postgres::PgEngine`]: a PostgreSQL database shared by every machine of a cluster (`--db
//!   postgres://…`), its schema migrated at start, claims by `SELECT … FOR UPDATE SKIP LOCKED`,
//!   wakeups by `LISTEN/NOTIFY`, time from the database's clock (machines' clocks may differ).
//!
//! The model (after Curio's HarmonyTask, with what its users miss):
//!
//! - A task is a [`TaskSpec`]: a miner actor, a [`TaskKind`], a *subject* (the sector number for a
//!   sealing phase, the challenge epoch for a PoSt), the [`Resources`] it holds while it runs, its
//!   input, and optionally the worker it must run on (the one holding its sector's files). At
//!   most one unfinished task exists per `(miner, kind, subject)`: queueing it again answers the
//!   one there ([`Enqueued::Existing`]). A finished task keeps its output in the history.
//! - A worker registers itself ([`WorkerInfo`]) and heartbeats ([`TaskEngine::heartbeat`]); it
//!   claims ([`TaskEngine::claim`]) the most urgent queued task of the kinds it runs that fits the
//!   room it has left: time-sensitive first, then the lowest subject (the oldest sector), then the
//!   oldest task. Every claim draws a new **fencing token** from a counter that only grows.
//! - A result ([`TaskEngine::finish`]) is written only under the claim's current token and owner:
//!   a stale claim — its worker declared dead and the task claimed again — is refused with
//!   [`EngineError::Stale`] and changes nothing. A finished task moves to the history.
//! - A worker whose heartbeat is older than the timeout is dead ([`TaskEngine::reclaim_dead`]): its
//!   tasks go back to the queue (their next claim gets a new token) and its row is removed. A
//!   worker shutting down cleanly gives its tasks back at once ([`TaskEngine::release`]).
//! - A named **lease** ([`TaskEngine::acquire_lease`]) elects one holder at a time — the one
//!   provider process per miner actor that sends chain messages. Its epoch grows with every change
//!   of holder, so what a holder records can be fenced by it.
//! - The **sector location index** ([`TaskEngine::locations`]): which workers hold a copy of a
//!   sector's files. A sealing phase that leaves the sector on the worker that ran it (PreCommit1,
//!   PreCommit2, Commit1, and Finalize when workers keep their sectors: [`TaskKind::leaves_files`])
//!   records its worker in the same transaction that finishes it, as the newest holder; a copy
//!   deleted is forgotten ([`TaskEngine::forget_location`]). The newest holder is where the sector
//!   is: where its next phase runs and where it is proven.

pub mod embedded;
pub mod postgres;

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::tasks::{Resources, TaskKind};

/// Errors of a task engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The embedded database failed.
    #[error("task database: {0}")]
    Sled(#[from] sled::Error),
    /// PostgreSQL failed or could not be reached (a worker retries; check the `--db` address and
    /// that the server is up).
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The claim is no longer the task's: another worker holds it now, or it has finished. Its
    /// result was not written.
    #[error(
        "task {task}: claim {token} is stale (the task was reclaimed or finished); its result was not written"
    )]
    Stale {
        /// The task.
        task: u64,
        /// The stale token.
        token: u64,
    },
    /// A stored record does not decode (a damaged database, or one written by a newer lode).
    #[error("task database: a record does not decode: {0}")]
    Corrupt(String),
    /// The database's schema is newer than this lode knows: upgrade lode on this machine.
    #[error(
        "the cluster database is at schema version {found}, newer than this lode's {known}: upgrade lode on this machine"
    )]
    SchemaTooNew {
        /// The database's version.
        found: i64,
        /// This build's latest.
        known: i64,
    },
    /// An argument out of range (a name too long, a figure too large for the database).
    #[error("{0}")]
    Invalid(String),
}

/// The result alias of the task engines.
pub type EngineResult<T> = Result<T, EngineError>;

/// A task to queue.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The miner actor it works for.
    pub miner: u64,
    /// Its kind.
    pub kind: TaskKind,
    /// The sector number (sealing phases) or the challenge epoch (PoSt).
    pub subject: u64,
    /// What it holds while it runs.
    pub resources: Resources,
    /// What the worker needs to run it (JSON, the kind's own format).
    pub input: String,
    /// The worker it must run on (where its files are), or any.
    pub at: Option<String>,
}

impl TaskSpec {
    /// A task any worker may run, with `input`.
    pub fn new(miner: u64, kind: TaskKind, subject: u64, resources: Resources) -> TaskSpec {
        TaskSpec {
            miner,
            kind,
            subject,
            resources,
            input: String::new(),
            at: None,
        }
    }
}

/// What queueing a task found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// A new task, with its id.
    New(u64),
    /// The unfinished task already there for the same `(miner, kind, subject)`.
    Existing(u64),
}

impl Enqueued {
    /// The task's id either way.
    pub fn id(self) -> u64 {
        match self {
            Enqueued::New(id) | Enqueued::Existing(id) => id,
        }
    }
}

/// A task claimed by a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claimed {
    /// The task.
    pub id: u64,
    /// What it is.
    pub spec: TaskSpec,
    /// This claim's fencing token: the task's result is written only under it.
    pub token: u64,
    /// Claims so far, this one included.
    pub attempts: u32,
    /// The worker holding it.
    pub worker: String,
}

/// How a task ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded, with its output (JSON, the kind's own format; kept in the history).
    Done(String),
    /// It failed for good (the reason is kept in the history).
    Failed(String),
    /// It failed and goes back to the queue, claimable again after `after`.
    Retry {
        /// Why.
        reason: String,
        /// The wait before it may be claimed again.
        after: Duration,
    },
}

/// A worker as it registers: its name (unique in the cluster, e.g. `host:port`), what it has, and
/// the kinds it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Its name.
    pub name: String,
    /// Its machine's resources.
    pub resources: Resources,
    /// The kinds it claims.
    pub kinds: Vec<TaskKind>,
    /// Where it serves its sector files (`http://host:port`), if it does.
    pub url: Option<String>,
}

/// A registered worker, as the cluster's status lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRow {
    /// What it registered.
    pub info: WorkerInfo,
    /// Milliseconds since its last heartbeat (on the engine's clock).
    pub silent_ms: u64,
}

/// Where a task is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskPhase {
    /// Waiting for a worker.
    Queued,
    /// Held by a worker.
    Running,
    /// Finished and succeeded (history).
    Done,
    /// Finished and failed (history).
    Failed,
}

/// A task as the cluster's status lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRow {
    /// Its id.
    pub id: u64,
    /// What it is.
    pub spec: TaskSpec,
    /// Where it is.
    pub phase: TaskPhase,
    /// The worker holding it while it runs, or that finished it.
    pub worker: Option<String>,
    /// Claims so far.
    pub attempts: u32,
    /// The last failure's reason.
    pub error: Option<String>,
    /// Its output, once done.
    pub output: Option<String>,
}

/// A storage path a worker registers: where it keeps sectors, and its room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoragePath {
    /// The worker.
    pub worker: String,
    /// The path on the worker's machine.
    pub path: String,
    /// Bytes free on it (`None` when its filesystem reports no figure).
    pub available: Option<u64>,
}

/// A worker holding a copy of a sector's files (the sector location index).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorLocation {
    /// The miner actor.
    pub miner: u64,
    /// The sector number.
    pub sector: u64,
    /// The worker holding the copy.
    pub worker: String,
    /// When it was placed there, as an order only: a higher number is newer.
    pub placed: u64,
}

/// The shared task queue of a cluster (see the module's documentation for the model).
pub trait TaskEngine: Send + Sync {
    /// Registers (or re-registers) a worker and counts as its heartbeat.
    fn register(&self, worker: &WorkerInfo) -> impl Future<Output = EngineResult<()>> + Send;

    /// Queues a task, or finds the unfinished one for the same `(miner, kind, subject)`. Wakes the
    /// workers waiting in [`TaskEngine::wait`].
    fn enqueue(&self, spec: &TaskSpec) -> impl Future<Output = EngineResult<Enqueued>> + Send;

    /// Claims the most urgent queued task of `kinds` whose resources fit in `room`, for `worker`,
    /// under a new fencing token; `None` when there is none.
    fn claim(
        &self,
        worker: &str,
        kinds: &[TaskKind],
        room: &Resources,
    ) -> impl Future<Output = EngineResult<Option<Claimed>>> + Send;

    /// Records that `worker` is alive (and so are its claims). An unregistered worker (declared
    /// dead meanwhile) gets `false`: its claims are gone and it should register again.
    fn heartbeat(&self, worker: &str) -> impl Future<Output = EngineResult<bool>> + Send;

    /// Writes a claim's outcome, only if the claim is still the task's ([`EngineError::Stale`]
    /// otherwise, nothing changed).
    fn finish(
        &self,
        claim: &Claimed,
        outcome: &Outcome,
    ) -> impl Future<Output = EngineResult<()>> + Send;

    /// Withdraws a queued task that no worker holds (its binding no longer fits: the worker it
    /// must run on is gone, or no longer runs its kind): it moves to the history as failed with
    /// `reason`. `false`, with nothing changed, when it is not queued (claimed meanwhile, or
    /// finished).
    fn cancel(&self, id: u64, reason: &str) -> impl Future<Output = EngineResult<bool>> + Send;

    /// A clean shutdown: `worker`'s tasks go back to the queue and it is unregistered. Returns the
    /// tasks given back.
    fn release(&self, worker: &str) -> impl Future<Output = EngineResult<u64>> + Send;

    /// Declares dead the workers silent for longer than `timeout`: their tasks go back to the queue
    /// and they are unregistered. Returns the tasks given back.
    fn reclaim_dead(&self, timeout: Duration) -> impl Future<Output = EngineResult<u64>> + Send;

    /// Waits until a task may have become claimable (queued, given back, or due after a retry
    /// wait), or `timeout` passes.
    fn wait(&self, timeout: Duration) -> impl Future<Output = ()> + Send;

    /// The unfinished tasks and the newest `history` finished ones.
    fn tasks(&self, history: usize) -> impl Future<Output = EngineResult<Vec<TaskRow>>> + Send;

    /// The registered workers.
    fn workers(&self) -> impl Future<Output = EngineResult<Vec<WorkerRow>>> + Send;

    /// Records (or updates) a worker's storage path and its room.
    fn register_storage(
        &self,
        storage: &StoragePath,
    ) -> impl Future<Output = EngineResult<()>> + Send;

    /// The registered storage paths.
    fn storage(&self) -> impl Future<Output = EngineResult<Vec<StoragePath>>> + Send;

    /// A task by id: unfinished, or from the history.
    fn task(&self, id: u64) -> impl Future<Output = EngineResult<Option<TaskRow>>> + Send;

    /// The newest task of `(miner, kind, subject)`: the unfinished one, else the last finished
    /// (how the pipeline follows a sector's phase, and finds the worker holding its files).
    fn latest(
        &self,
        miner: u64,
        kind: TaskKind,
        subject: u64,
    ) -> impl Future<Output = EngineResult<Option<TaskRow>>> + Send;

    /// The location index of `miner`'s sectors (of those in `sectors` only, when given): by sector
    /// number, each sector's newest holder first.
    fn locations(
        &self,
        miner: u64,
        sectors: Option<&[u64]>,
    ) -> impl Future<Output = EngineResult<Vec<SectorLocation>>> + Send;

    /// How many sector copies each worker holds, by the location index (every miner's), by
    /// worker name.
    fn held(&self) -> impl Future<Output = EngineResult<Vec<(String, u64)>>> + Send;

    /// Forgets that `worker` (every worker, when `None`) holds a copy of `miner`'s sector `sector`
    /// (the copy was deleted, or is lost). Returns the entries removed.
    fn forget_location(
        &self,
        miner: u64,
        sector: u64,
        worker: Option<&str>,
    ) -> impl Future<Output = EngineResult<u64>> + Send;

    /// Takes or renews lease `name` for `holder` for `ttl`: its epoch when `holder` holds it now,
    /// `None` when another holder's lease has not expired. The epoch grows with every change of
    /// holder.
    fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> impl Future<Output = EngineResult<Option<u64>>> + Send;

    /// Gives lease `name` up if `holder` holds it (another may take it at once).
    fn release_lease(
        &self,
        name: &str,
        holder: &str,
    ) -> impl Future<Output = EngineResult<()>> + Send;
}

/// Waits on an engine's wakeup counter `events` from the cursor `seen`: at once when it moved
/// since `seen` was last brought up to date (so a wakeup between a claim that found nothing and
/// this wait is not missed), else until it moves or `timeout` passes.
pub(crate) async fn wait_for_wakeup(
    events: &tokio::sync::watch::Sender<u64>,
    seen: &std::sync::atomic::AtomicU64,
    timeout: Duration,
) {
    use std::sync::atomic::Ordering;
    let mut rx = events.subscribe();
    let now = *rx.borrow_and_update();
    if seen.swap(now, Ordering::Relaxed) != now {
        return;
    }
    let _ = tokio::time::timeout(timeout, rx.changed()).await;
    seen.store(*rx.borrow(), Ordering::Relaxed);
}

/// The order claims take: time-sensitive first, then the lowest subject, then the oldest task.
pub fn claim_order(spec: &TaskSpec, id: u64) -> (bool, u64, u64) {
    (!spec.kind.is_time_sensitive(), spec.subject, id)
}

/// Whether a task of `spec` may be claimed by `worker`, of `kinds`, with `room` left.
pub fn claimable(spec: &TaskSpec, worker: &str, kinds: &[TaskKind], room: &Resources) -> bool {
    kinds.contains(&spec.kind)
        && spec.resources.fits_in(room)
        && spec.at.as_deref().is_none_or(|w| w == worker)
}

/// Either back end, chosen at run time (`[cluster] db` of the provider's config): what the
/// pipeline and the workers hold when the choice is the operator's.
#[derive(Clone)]
pub enum AnyEngine {
    /// The embedded engine (one process).
    Sled(embedded::SledEngine),
    /// A PostgreSQL database shared by the cluster.
    Postgres(postgres::PgEngine),
}

impl std::fmt::Debug for AnyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AnyEngine::Sled(_) => "AnyEngine::Sled",
            AnyEngine::Postgres(_) => "AnyEngine::Postgres",
        })
    }
}

macro_rules! either {
    ($self:ident, $e:ident => $call:expr) => {
        match $self {
            AnyEngine::Sled($e) => $call,
            AnyEngine::Postgres($e) => $call,
        }
    };
}

impl TaskEngine for AnyEngine {
    async fn register(&self, worker: &WorkerInfo) -> EngineResult<()> {
        either!(self, e => e.register(worker).await)
    }
    async fn enqueue(&self, spec: &TaskSpec) -> EngineResult<Enqueued> {
        either!(self, e => e.enqueue(spec).await)
    }
    async fn claim(
        &self,
        worker: &str,
        kinds: &[TaskKind],
        room: &Resources,
    ) -> EngineResult<Option<Claimed>> {
        either!(self, e => e.claim(worker, kinds, room).await)
    }
    async fn heartbeat(&self, worker: &str) -> EngineResult<bool> {
        either!(self, e => e.heartbeat(worker).await)
    }
    async fn finish(&self, claim: &Claimed, outcome: &Outcome) -> EngineResult<()> {
        either!(self, e => e.finish(claim, outcome).await)
    }
    async fn cancel(&self, id: u64, reason: &str) -> EngineResult<bool> {
        either!(self, e => e.cancel(id, reason).await)
    }
    async fn release(&self, worker: &str) -> EngineResult<u64> {
        either!(self, e => e.release(worker).await)
    }
    async fn reclaim_dead(&self, timeout: Duration) -> EngineResult<u64> {
        either!(self, e => e.reclaim_dead(timeout).await)
    }
    async fn wait(&self, timeout: Duration) {
        either!(self, e => e.wait(timeout).await)
    }
    async fn tasks(&self, history: usize) -> EngineResult<Vec<TaskRow>> {
        either!(self, e => e.tasks(history).await)
    }
    async fn workers(&self) -> EngineResult<Vec<WorkerRow>> {
        either!(self, e => e.workers().await)
    }
    async fn register_storage(&self, storage: &StoragePath) -> EngineResult<()> {
        either!(self, e => e.register_storage(storage).await)
    }
    async fn storage(&self) -> EngineResult<Vec<StoragePath>> {
        either!(self, e => e.storage().await)
    }
    async fn task(&self, id: u64) -> EngineResult<Option<TaskRow>> {
        either!(self, e => e.task(id).await)
    }
    async fn latest(
        &self,
        miner: u64,
        kind: TaskKind,
        subject: u64,
    ) -> EngineResult<Option<TaskRow>> {
        either!(self, e => e.latest(miner, kind, subject).await)
    }
    async fn locations(
        &self,
        miner: u64,
        sectors: Option<&[u64]>,
    ) -> EngineResult<Vec<SectorLocation>> {
        either!(self, e => e.locations(miner, sectors).await)
    }
    async fn held(&self) -> EngineResult<Vec<(String, u64)>> {
        either!(self, e => e.held().await)
    }
    async fn forget_location(
        &self,
        miner: u64,
        sector: u64,
        worker: Option<&str>,
    ) -> EngineResult<u64> {
        either!(self, e => e.forget_location(miner, sector, worker).await)
    }
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> EngineResult<Option<u64>> {
        either!(self, e => e.acquire_lease(name, holder, ttl).await)
    }
    async fn release_lease(&self, name: &str, holder: &str) -> EngineResult<()> {
        either!(self, e => e.release_lease(name, holder).await)
    }
}
