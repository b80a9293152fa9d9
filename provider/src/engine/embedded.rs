//! The embedded task engine: one process, its records in a sled database.
//!
//! Everything lives in one tree (`engine`) under key prefixes — `t/` unfinished tasks by id, `k/`
//! the `(miner, kind, subject)` index, `h/` the history, `w/` workers, `l/` leases, `s/` storage
//! paths, `p/` the sector location index (`miner, sector, worker` to the order it was placed in),
//! `m/` the counters — so that every change is one sled transaction. Changes are serialised by a
//! mutex (one process owns the database), so a read before a transaction stays true through it.
//! A finished task's record is flushed before [`TaskEngine::finish`] returns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use tokio::sync::watch;

use super::{
    Claimed, EngineError, EngineResult, Enqueued, Outcome, StoragePath, TaskEngine, TaskKind,
    TaskPhase, TaskRow, TaskSpec, WorkerInfo, WorkerRow, claim_order, claimable,
};
use crate::tasks::Resources;

const TASK: &[u8] = b"t/";
const KEY: &[u8] = b"k/";
const HISTORY: &[u8] = b"h/";
const WORKER: &[u8] = b"w/";
const LEASE: &[u8] = b"l/";
const STORAGE: &[u8] = b"s/";
const LOCATION: &[u8] = b"p/";
const NEXT_ID: &[u8] = b"m/next-id";
const TOKEN: &[u8] = b"m/token";
const PLACED: &[u8] = b"m/placed";
/// Set once the location index has been built from the history (databases written before it).
const LOCATIONS_BUILT: &[u8] = b"m/locations-built";

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    id: u64,
    spec: TaskSpec,
    owner: Option<String>,
    token: u64,
    attempts: u32,
    not_before_ms: u64,
    error: Option<String>,
    /// For the history: whether it succeeded.
    ok: Option<bool>,
    /// For the history: its output, and the worker that finished it.
    output: Option<String>,
    finished_by: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Worker {
    info: WorkerInfo,
    beat_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Lease {
    holder: String,
    epoch: u64,
    expires_ms: u64,
}

struct Inner {
    tree: sled::Tree,
    lock: Mutex<()>,
    events: watch::Sender<u64>,
}

/// The embedded engine (cheap to clone: each clone waits on its own cursor of the wakeups).
pub struct SledEngine {
    inner: Arc<Inner>,
    seen: AtomicU64,
}

impl Clone for SledEngine {
    fn clone(&self) -> Self {
        SledEngine {
            inner: Arc::clone(&self.inner),
            seen: AtomicU64::new(self.seen.load(Ordering::Relaxed)),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn key(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len().saturating_add(rest.len()));
    k.extend_from_slice(prefix);
    k.extend_from_slice(rest);
    k
}

fn spec_key(spec: &TaskSpec) -> Vec<u8> {
    let mut k = key(KEY, &spec.miner.to_be_bytes());
    k.extend_from_slice(spec.kind.name().as_bytes());
    k.push(b'/');
    k.extend_from_slice(&spec.subject.to_be_bytes());
    k
}

fn enc<T: Serialize>(v: &T) -> EngineResult<Vec<u8>> {
    postcard::to_allocvec(v).map_err(|e| EngineError::Corrupt(e.to_string()))
}

fn dec<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> EngineResult<T> {
    postcard::from_bytes(bytes).map_err(|e| EngineError::Corrupt(e.to_string()))
}

fn u64_at(bytes: Option<sled::IVec>) -> u64 {
    bytes
        .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
        .map_or(0, u64::from_be_bytes)
}

/// Runs `f` as one transaction of the engine's tree, its errors as the engine's.
fn transact<T>(
    tree: &sled::Tree,
    f: impl Fn(&TransactionalTree) -> Result<T, ConflictableTransactionError<EngineError>>,
) -> EngineResult<T> {
    tree.transaction(f).map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => EngineError::Sled(e),
    })
}

fn abort(e: EngineError) -> ConflictableTransactionError<EngineError> {
    ConflictableTransactionError::Abort(e)
}

/// Moves finished (or withdrawn) task `r` from the queue into the history, in transaction `t`.
fn to_history(
    t: &TransactionalTree,
    r: &Record,
) -> Result<(), ConflictableTransactionError<EngineError>> {
    t.remove(key(TASK, &r.id.to_be_bytes()))?;
    t.remove(spec_key(&r.spec))?;
    t.insert(key(HISTORY, &r.id.to_be_bytes()), enc(r).map_err(abort)?)?;
    Ok(())
}

/// The location index's key for `worker`'s copy of `miner`'s sector `sector` (the worker's name
/// last, so that a sector's entries share a prefix).
fn location_key(miner: u64, sector: u64, worker: &str) -> Vec<u8> {
    let mut k = location_prefix(miner, Some(sector));
    k.extend_from_slice(worker.as_bytes());
    k
}

fn location_prefix(miner: u64, sector: Option<u64>) -> Vec<u8> {
    let mut k = key(LOCATION, &miner.to_be_bytes());
    if let Some(sector) = sector {
        k.extend_from_slice(&sector.to_be_bytes());
    }
    k
}

/// Records in transaction `t` that `worker` holds the newest copy of `miner`'s sector `sector`.
fn place(
    t: &TransactionalTree,
    miner: u64,
    sector: u64,
    worker: &str,
) -> Result<(), ConflictableTransactionError<EngineError>> {
    let placed = u64_at(t.get(PLACED)?).saturating_add(1);
    t.insert(PLACED, &placed.to_be_bytes())?;
    t.insert(location_key(miner, sector, worker), &placed.to_be_bytes())?;
    Ok(())
}

/// A location entry from its key and value.
fn location_of(k: &[u8], v: &[u8]) -> EngineResult<super::SectorLocation> {
    let corrupt = || EngineError::Corrupt("a sector location entry".to_string());
    let rest = k.get(LOCATION.len()..).ok_or_else(corrupt)?;
    let (miner, rest) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
    let (sector, worker) = rest.split_first_chunk::<8>().ok_or_else(corrupt)?;
    Ok(super::SectorLocation {
        miner: u64::from_be_bytes(*miner),
        sector: u64::from_be_bytes(*sector),
        worker: String::from_utf8(worker.to_vec()).map_err(|_| corrupt())?,
        placed: u64_at(Some(sled::IVec::from(v))),
    })
}

fn row_of(r: Record) -> TaskRow {
    TaskRow {
        id: r.id,
        spec: r.spec,
        phase: match r.ok {
            Some(true) => TaskPhase::Done,
            Some(false) => TaskPhase::Failed,
            None if r.owner.is_some() => TaskPhase::Running,
            None => TaskPhase::Queued,
        },
        worker: r.owner.or(r.finished_by),
        attempts: r.attempts,
        error: r.error,
        output: r.output,
    }
}

/// Builds the location index of a database written before it, from the history (as the
/// pipeline found holders then): for each sector, the workers of its newest successful task of
/// each kind that leaves files, in the order those finished.
fn build_locations(tree: &sled::Tree) -> EngineResult<()> {
    use std::collections::BTreeMap;
    // (miner, sector, kind) -> the newest task's (id, worker if it succeeded).
    let mut newest: BTreeMap<(u64, u64, TaskKind), (u64, Option<String>)> = BTreeMap::new();
    for kv in tree.scan_prefix(HISTORY) {
        let r: Record = dec(&kv?.1)?;
        if !r.spec.kind.leaves_files() {
            continue;
        }
        let worker = r.finished_by.filter(|_| r.ok == Some(true));
        let slot = newest
            .entry((r.spec.miner, r.spec.subject, r.spec.kind))
            .or_insert((r.id, None));
        if r.id >= slot.0 {
            *slot = (r.id, worker);
        }
    }
    // (miner, sector, worker) -> the newest id it was placed by.
    let mut places: BTreeMap<(u64, u64, String), u64> = BTreeMap::new();
    for ((miner, sector, _), (id, worker)) in newest {
        if let Some(worker) = worker {
            let at = places.entry((miner, sector, worker)).or_insert(id);
            *at = (*at).max(id);
        }
    }
    transact(tree, |t| {
        let mut top = u64_at(t.get(PLACED)?);
        for ((miner, sector, worker), id) in &places {
            t.insert(location_key(*miner, *sector, worker), &id.to_be_bytes())?;
            top = top.max(*id);
        }
        t.insert(PLACED, &top.to_be_bytes())?;
        t.insert(LOCATIONS_BUILT, &[1u8][..])?;
        Ok(())
    })?;
    tree.flush()?;
    Ok(())
}

impl SledEngine {
    /// The engine over `db`'s tree `engine` (the pipeline's database, so its records sit beside
    /// the sectors').
    pub fn open(db: &sled::Db) -> EngineResult<SledEngine> {
        let tree = db.open_tree("engine")?;
        if tree.get(LOCATIONS_BUILT)?.is_none() {
            build_locations(&tree)?;
        }
        let (events, _) = watch::channel(0);
        Ok(SledEngine {
            inner: Arc::new(Inner {
                tree,
                lock: Mutex::new(()),
                events,
            }),
            seen: AtomicU64::new(0),
        })
    }

    fn guard(&self) -> MutexGuard<'_, ()> {
        // A panic while holding it left no half-written state (changes are transactions).
        self.inner.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self) {
        self.inner.events.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn records(&self, prefix: &[u8]) -> EngineResult<Vec<Record>> {
        self.inner
            .tree
            .scan_prefix(prefix)
            .map(|kv| dec(&kv?.1))
            .collect()
    }

    fn workers_now(&self) -> EngineResult<Vec<Worker>> {
        self.inner
            .tree
            .scan_prefix(WORKER)
            .map(|kv| dec(&kv?.1))
            .collect()
    }

    /// Puts `owner`'s tasks (or the tasks of any owner in `owners`) back in the queue and removes
    /// the workers, in one transaction. Returns the tasks given back.
    fn give_back(&self, owners: &[String]) -> EngineResult<u64> {
        let held: Vec<Record> = self
            .records(TASK)?
            .into_iter()
            .filter(|r| r.owner.as_ref().is_some_and(|o| owners.contains(o)))
            .collect();
        let count = held.len() as u64;
        transact(&self.inner.tree, |t| {
            for r in &held {
                let mut r = r.clone();
                r.owner = None;
                t.insert(key(TASK, &r.id.to_be_bytes()), enc(&r).map_err(abort)?)?;
            }
            for o in owners {
                t.remove(key(WORKER, o.as_bytes()))?;
            }
            Ok(())
        })?;
        self.inner.tree.flush()?;
        if count > 0 {
            self.wake();
        }
        Ok(count)
    }
}

impl TaskEngine for SledEngine {
    async fn register(&self, worker: &WorkerInfo) -> EngineResult<()> {
        let _g = self.guard();
        let w = Worker {
            info: worker.clone(),
            beat_ms: now_ms(),
        };
        self.inner
            .tree
            .insert(key(WORKER, worker.name.as_bytes()), enc(&w)?)?;
        Ok(())
    }

    async fn enqueue(&self, spec: &TaskSpec) -> EngineResult<Enqueued> {
        let queued = {
            let _g = self.guard();
            let k = spec_key(spec);
            transact(&self.inner.tree, |t| {
                if let Some(id) = t.get(&k)? {
                    return Ok(Enqueued::Existing(u64_at(Some(id))));
                }
                let id = u64_at(t.get(NEXT_ID)?).saturating_add(1);
                t.insert(NEXT_ID, &id.to_be_bytes())?;
                t.insert(k.as_slice(), &id.to_be_bytes())?;
                let r = Record {
                    id,
                    spec: spec.clone(),
                    owner: None,
                    token: 0,
                    attempts: 0,
                    not_before_ms: 0,
                    error: None,
                    ok: None,
                    output: None,
                    finished_by: None,
                };
                t.insert(key(TASK, &id.to_be_bytes()), enc(&r).map_err(abort)?)?;
                Ok(Enqueued::New(id))
            })?
        };
        if matches!(queued, Enqueued::New(_)) {
            self.wake();
        }
        Ok(queued)
    }

    async fn claim(
        &self,
        worker: &str,
        kinds: &[TaskKind],
        room: &Resources,
    ) -> EngineResult<Option<Claimed>> {
        let _g = self.guard();
        if self
            .inner
            .tree
            .get(key(WORKER, worker.as_bytes()))?
            .is_none()
        {
            return Ok(None);
        }
        let now = now_ms();
        let Some(best) = self
            .records(TASK)?
            .into_iter()
            .filter(|r| r.owner.is_none() && r.not_before_ms <= now)
            .filter(|r| claimable(&r.spec, worker, kinds, room))
            .min_by_key(|r| claim_order(&r.spec, r.id))
        else {
            return Ok(None);
        };
        let claimed = transact(&self.inner.tree, |t| {
            let token = u64_at(t.get(TOKEN)?).saturating_add(1);
            t.insert(TOKEN, &token.to_be_bytes())?;
            let mut r = best.clone();
            r.owner = Some(worker.to_string());
            r.token = token;
            r.attempts = r.attempts.saturating_add(1);
            t.insert(key(TASK, &r.id.to_be_bytes()), enc(&r).map_err(abort)?)?;
            Ok(Claimed {
                id: r.id,
                spec: r.spec.clone(),
                token,
                attempts: r.attempts,
                worker: worker.to_string(),
            })
        })?;
        Ok(Some(claimed))
    }

    async fn heartbeat(&self, worker: &str) -> EngineResult<bool> {
        let _g = self.guard();
        let k = key(WORKER, worker.as_bytes());
        let Some(bytes) = self.inner.tree.get(&k)? else {
            return Ok(false);
        };
        let mut w: Worker = dec(&bytes)?;
        w.beat_ms = now_ms();
        self.inner.tree.insert(k, enc(&w)?)?;
        Ok(true)
    }

    async fn finish(&self, claim: &Claimed, outcome: &Outcome) -> EngineResult<()> {
        let requeued = {
            let _g = self.guard();
            let tk = key(TASK, &claim.id.to_be_bytes());
            let current: Option<Record> = self.inner.tree.get(&tk)?.map(|b| dec(&b)).transpose()?;
            let Some(r) = current.filter(|r| {
                r.token == claim.token && r.owner.as_deref() == Some(claim.worker.as_str())
            }) else {
                return Err(EngineError::Stale {
                    task: claim.id,
                    token: claim.token,
                });
            };
            let requeued = matches!(outcome, Outcome::Retry { .. });
            transact(&self.inner.tree, |t| {
                let mut r = r.clone();
                match outcome {
                    Outcome::Retry { reason, after } => {
                        r.owner = None;
                        r.error = Some(reason.clone());
                        let wait = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
                        r.not_before_ms = now_ms().saturating_add(wait);
                        t.insert(tk.as_slice(), enc(&r).map_err(abort)?)?;
                    }
                    Outcome::Done(_) | Outcome::Failed(_) => {
                        match outcome {
                            Outcome::Failed(reason) => r.error = Some(reason.clone()),
                            Outcome::Done(output) => r.output = Some(output.clone()),
                            Outcome::Retry { .. } => {}
                        }
                        r.ok = Some(matches!(outcome, Outcome::Done(_)));
                        r.finished_by = r.owner.take();
                        to_history(t, &r)?;
                        if r.ok == Some(true)
                            && r.spec.kind.leaves_files()
                            && let Some(worker) = &r.finished_by
                        {
                            place(t, r.spec.miner, r.spec.subject, worker)?;
                        }
                    }
                }
                Ok(())
            })?;
            self.inner.tree.flush()?;
            requeued
        };
        if requeued {
            self.wake();
        }
        Ok(())
    }

    async fn cancel(&self, id: u64, reason: &str) -> EngineResult<bool> {
        let _g = self.guard();
        let tk = key(TASK, &id.to_be_bytes());
        let queued: Option<Record> = self.inner.tree.get(&tk)?.map(|b| dec(&b)).transpose()?;
        let Some(r) = queued.filter(|r| r.owner.is_none()) else {
            return Ok(false);
        };
        transact(&self.inner.tree, |t| {
            let mut r = r.clone();
            r.ok = Some(false);
            r.error = Some(reason.to_string());
            to_history(t, &r)?;
            Ok(())
        })?;
        self.inner.tree.flush()?;
        Ok(true)
    }

    async fn release(&self, worker: &str) -> EngineResult<u64> {
        let _g = self.guard();
        self.give_back(&[worker.to_string()])
    }

    async fn reclaim_dead(&self, timeout: Duration) -> EngineResult<u64> {
        let _g = self.guard();
        let limit = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let now = now_ms();
        let dead: Vec<String> = self
            .workers_now()?
            .into_iter()
            .filter(|w| now.saturating_sub(w.beat_ms) > limit)
            .map(|w| w.info.name)
            .collect();
        if dead.is_empty() {
            return Ok(0);
        }
        self.give_back(&dead)
    }

    async fn wait(&self, timeout: Duration) {
        super::wait_for_wakeup(&self.inner.events, &self.seen, timeout).await;
    }

    async fn tasks(&self, history: usize) -> EngineResult<Vec<TaskRow>> {
        let _g = self.guard();
        let mut rows: Vec<TaskRow> = self.records(TASK)?.into_iter().map(row_of).collect();
        let finished: Vec<TaskRow> = self
            .inner
            .tree
            .scan_prefix(HISTORY)
            .rev()
            .take(history)
            .map(|kv| dec::<Record>(&kv?.1).map(row_of))
            .collect::<EngineResult<_>>()?;
        rows.extend(finished);
        Ok(rows)
    }

    async fn workers(&self) -> EngineResult<Vec<WorkerRow>> {
        let _g = self.guard();
        let now = now_ms();
        Ok(self
            .workers_now()?
            .into_iter()
            .map(|w| WorkerRow {
                silent_ms: now.saturating_sub(w.beat_ms),
                info: w.info,
            })
            .collect())
    }

    async fn register_storage(&self, storage: &StoragePath) -> EngineResult<()> {
        let _g = self.guard();
        let mut k = key(STORAGE, storage.worker.as_bytes());
        k.push(0);
        k.extend_from_slice(storage.path.as_bytes());
        self.inner.tree.insert(k, enc(storage)?)?;
        Ok(())
    }

    async fn storage(&self) -> EngineResult<Vec<StoragePath>> {
        let _g = self.guard();
        self.inner
            .tree
            .scan_prefix(STORAGE)
            .map(|kv| dec(&kv?.1))
            .collect()
    }

    async fn task(&self, id: u64) -> EngineResult<Option<TaskRow>> {
        let _g = self.guard();
        for prefix in [TASK, HISTORY] {
            if let Some(bytes) = self.inner.tree.get(key(prefix, &id.to_be_bytes()))? {
                return Ok(Some(row_of(dec(&bytes)?)));
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
        let _g = self.guard();
        let probe = TaskSpec::new(miner, kind, subject, Resources::ZERO);
        if let Some(id) = self.inner.tree.get(spec_key(&probe))? {
            let id = u64_at(Some(id));
            if let Some(bytes) = self.inner.tree.get(key(TASK, &id.to_be_bytes()))? {
                return Ok(Some(row_of(dec(&bytes)?)));
            }
        }
        // The history by id, newest first.
        for kv in self.inner.tree.scan_prefix(HISTORY).rev() {
            let r: Record = dec(&kv?.1)?;
            if r.spec.miner == miner && r.spec.kind == kind && r.spec.subject == subject {
                return Ok(Some(row_of(r)));
            }
        }
        Ok(None)
    }

    async fn locations(
        &self,
        miner: u64,
        sectors: Option<&[u64]>,
    ) -> EngineResult<Vec<super::SectorLocation>> {
        let _g = self.guard();
        let prefixes: Vec<Vec<u8>> = match sectors {
            Some(list) => list
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .map(|n| location_prefix(miner, Some(*n)))
                .collect(),
            None => vec![location_prefix(miner, None)],
        };
        let mut out = Vec::new();
        for prefix in prefixes {
            for kv in self.inner.tree.scan_prefix(prefix) {
                let (k, v) = kv?;
                out.push(location_of(&k, &v)?);
            }
        }
        out.sort_by(|a, b| a.sector.cmp(&b.sector).then(b.placed.cmp(&a.placed)));
        Ok(out)
    }

    async fn held(&self) -> EngineResult<Vec<(String, u64)>> {
        let _g = self.guard();
        let mut by = std::collections::BTreeMap::<String, u64>::new();
        for kv in self.inner.tree.scan_prefix(LOCATION) {
            let (k, v) = kv?;
            let l = location_of(&k, &v)?;
            let n = by.entry(l.worker).or_default();
            *n = n.saturating_add(1);
        }
        Ok(by.into_iter().collect())
    }

    async fn forget_location(
        &self,
        miner: u64,
        sector: u64,
        worker: Option<&str>,
    ) -> EngineResult<u64> {
        let _g = self.guard();
        let keys: Vec<sled::IVec> = match worker {
            Some(w) => {
                let k = location_key(miner, sector, w);
                self.inner
                    .tree
                    .get(&k)?
                    .map(|_| sled::IVec::from(k))
                    .into_iter()
                    .collect()
            }
            None => self
                .inner
                .tree
                .scan_prefix(location_prefix(miner, Some(sector)))
                .keys()
                .collect::<Result<_, _>>()?,
        };
        transact(&self.inner.tree, |t| {
            for k in &keys {
                t.remove(k)?;
            }
            Ok(())
        })?;
        self.inner.tree.flush()?;
        Ok(keys.len() as u64)
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> EngineResult<Option<u64>> {
        let _g = self.guard();
        let k = key(LEASE, name.as_bytes());
        let now = now_ms();
        let current: Option<Lease> = self.inner.tree.get(&k)?.map(|b| dec(&b)).transpose()?;
        let epoch = match &current {
            Some(l) if l.holder == holder => l.epoch,
            Some(l) if l.expires_ms >= now => return Ok(None),
            Some(l) => l.epoch.saturating_add(1),
            None => 1,
        };
        let lease = Lease {
            holder: holder.to_string(),
            epoch,
            expires_ms: now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
        };
        self.inner.tree.insert(k, enc(&lease)?)?;
        self.inner.tree.flush()?;
        Ok(Some(epoch))
    }

    async fn release_lease(&self, name: &str, holder: &str) -> EngineResult<()> {
        let _g = self.guard();
        let k = key(LEASE, name.as_bytes());
        if let Some(bytes) = self.inner.tree.get(&k)? {
            let mut l: Lease = dec(&bytes)?;
            if l.holder == holder {
                l.expires_ms = 0;
                self.inner.tree.insert(k, enc(&l)?)?;
                self.inner.tree.flush()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(kind: TaskKind, subject: u64) -> TaskSpec {
        TaskSpec::new(7, kind, subject, Resources::ZERO)
    }

    async fn run(e: &SledEngine, worker: &str, kind: TaskKind, subject: u64, ok: bool) {
        e.register(&WorkerInfo {
            name: worker.into(),
            resources: Resources::ZERO,
            kinds: TaskKind::ALL.to_vec(),
            url: None,
        })
        .await
        .unwrap();
        e.enqueue(&spec(kind, subject)).await.unwrap();
        let c = e
            .claim(worker, &[kind], &Resources::ZERO)
            .await
            .unwrap()
            .unwrap();
        let outcome = if ok {
            Outcome::Done("{}".into())
        } else {
            Outcome::Failed("no".into())
        };
        e.finish(&c, &outcome).await.unwrap();
    }

    fn listed(found: Vec<super::super::SectorLocation>) -> Vec<(u64, String)> {
        found.into_iter().map(|l| (l.sector, l.worker)).collect()
    }

    /// A database written before the location index gets it built from its history at open, as
    /// the pipeline found holders then; the index then goes on from there.
    #[tokio::test]
    async fn the_location_index_is_built_from_an_older_history() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let e = SledEngine::open(&db).unwrap();
        run(&e, "wa", TaskKind::PreCommit1, 4, true).await;
        run(&e, "wb", TaskKind::PreCommit2, 4, true).await;
        run(&e, "wa", TaskKind::Commit1, 4, true).await;
        run(&e, "wc", TaskKind::Commit1, 4, false).await;
        run(&e, "wd", TaskKind::Commit2, 4, true).await;
        run(&e, "wb", TaskKind::PreCommit1, 5, true).await;
        let live = listed(e.locations(7, None).await.unwrap());
        assert_eq!(
            live,
            [(4, "wa".into()), (4, "wb".into()), (5, "wb".into())],
            "as written by the finishes"
        );
        // The same history without its index, as an older lode left it.
        let tree = db.open_tree("engine").unwrap();
        for k in tree.scan_prefix(LOCATION).keys() {
            tree.remove(k.unwrap()).unwrap();
        }
        tree.remove(LOCATIONS_BUILT).unwrap();
        drop(e);
        let e = SledEngine::open(&db).unwrap();
        // Sector 4's newest Commit1 failed, so only its PreCommit1 and PreCommit2 count.
        assert_eq!(
            listed(e.locations(7, None).await.unwrap()),
            [(4, "wb".into()), (4, "wa".into()), (5, "wb".into())]
        );
        // Built once: forgetting is not undone by a later open, and new placements are newest.
        assert_eq!(e.forget_location(7, 5, None).await.unwrap(), 1);
        run(&e, "wa", TaskKind::PreCommit2, 4, true).await;
        drop(e);
        let e = SledEngine::open(&db).unwrap();
        assert_eq!(
            listed(e.locations(7, None).await.unwrap()),
            [(4, "wa".into()), (4, "wb".into())]
        );
    }
}
