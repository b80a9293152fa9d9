//! The task records, in the pipeline's records (trees `tasks` and `task_meta` beside the sectors'
//! in [`crate::pipeline::kv::Records`], so that a task's result and its sector's change are one
//! transaction).
//!
//! **Fencing:** every claim of a task draws a new token from a counter that only grows (kept in
//! `task_meta`, and never below a token a record holds); a result is written only under the
//! task's current token, while it runs — a stale claim (the task re-queued by a restart, or
//! finished by someone else) is refused with [`TaskError::Stale`] and changes nothing.
//!
//! **Durability:** every change is durable before it returns (a task's result with its sector's
//! change: the pipeline's rule).

use serde::{Deserialize, Serialize};

use super::kind::{Resources, TaskKind};
use crate::pipeline::kv::{Abort, KvError, Records, Tree};
use crate::pipeline::store::{changed, decode_record, encode};
use crate::pipeline::{
    Event, PipelineError, PipelineStore, RetryPolicy, SectorChain, SectorRecord,
};

/// Where a task is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskState {
    /// Waiting for admission.
    Queued,
    /// Admitted and running under its current token.
    Running,
    /// Finished and succeeded.
    Done,
    /// Finished and failed (the error says why).
    Failed,
}

impl TaskState {
    /// Whether the task is finished (history).
    pub fn is_finished(self) -> bool {
        matches!(self, TaskState::Done | TaskState::Failed)
    }

    /// The state's name, as the API writes it.
    pub fn name(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Done => "done",
            TaskState::Failed => "failed",
        }
    }
}

/// A task as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Its id (handed out in order).
    pub id: u64,
    /// Its kind.
    pub kind: TaskKind,
    /// The sector it works on (`None` for PoSt).
    pub sector: Option<u64>,
    /// The sector record's version it was queued at: its result applies to that version only.
    pub sector_version: Option<u64>,
    /// Where it is.
    pub state: TaskState,
    /// What it holds while it runs (clamped to the machine).
    pub resources: Resources,
    /// Claims so far (a task re-queued by a restart is claimed again).
    pub attempts: u32,
    /// The current claim's fencing token (0 before the first claim).
    pub token: u64,
    /// Unix time it was queued.
    pub created_at: u64,
    /// Unix time of the last claim.
    pub started_at: Option<u64>,
    /// Unix time it finished.
    pub finished_at: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A task as the API lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    /// Its id.
    pub id: u64,
    /// Its kind's name.
    pub kind: TaskKind,
    /// The sector (none for PoSt).
    pub sector: Option<u64>,
    /// `queued`, `running`, `done` or `failed`.
    pub state: TaskState,
    /// What it holds while it runs.
    pub resources: Resources,
    /// Claims so far.
    pub attempts: u32,
    /// Unix time it was queued.
    pub created_at: u64,
    /// Unix time it last started.
    pub started_at: Option<u64>,
    /// Unix time it finished.
    pub finished_at: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
}

impl TaskRecord {
    /// The API's view of it.
    pub fn view(&self) -> TaskView {
        TaskView {
            id: self.id,
            kind: self.kind,
            sector: self.sector,
            state: self.state,
            resources: self.resources,
            attempts: self.attempts,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            error: self.error.clone(),
        }
    }
}

/// Errors of the task store.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The database failed.
    #[error("task database: {0}")]
    Db(#[from] KvError),
    /// A record does not decode.
    #[error("task database: the record of task {0} is corrupt")]
    Corrupt(u64),
    /// No such task.
    #[error("task {0} is not in the database")]
    Unknown(u64),
    /// The claim is not the task's current one: nothing was written.
    #[error("task {id}: token {token} is stale (the task is {state} under token {current})")]
    Stale {
        /// The task.
        id: u64,
        /// The token the writer holds.
        token: u64,
        /// The task's current token.
        current: u64,
        /// Where the task is.
        state: &'static str,
    },
    /// The task is not queued (it cannot be claimed).
    #[error("task {id} is {state}, not queued")]
    NotQueued {
        /// The task.
        id: u64,
        /// Where it is.
        state: &'static str,
    },
    /// The sector's change was refused (nothing was written, the task's state included).
    #[error(transparent)]
    Sector(#[from] PipelineError),
    /// The task does not work on a sector.
    #[error("task {0} has no sector")]
    NoSector(u64),
}

/// The task store's result type.
pub type TaskResult<T> = Result<T, TaskError>;

const NEXT_ID: &[u8] = b"next_task_id";
const NEXT_TOKEN: &[u8] = b"next_token";

fn decode_task(id: u64, bytes: &[u8]) -> TaskResult<TaskRecord> {
    postcard::from_bytes(bytes).map_err(|_| TaskError::Corrupt(id))
}

fn counter(bytes: Option<Vec<u8>>) -> u64 {
    bytes
        .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
        .map_or(1, u64::from_be_bytes)
        .max(1)
}

fn key_id(bytes: &[u8]) -> u64 {
    <[u8; 8]>::try_from(bytes).map_or(u64::MAX, u64::from_be_bytes)
}

fn abort<T>(e: TaskError) -> Result<T, Abort<TaskError>> {
    Err(Abort::With(e))
}

/// How a sector task ended, for [`TaskStore::finish_sector`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectorOutcome {
    /// The event for the sector (`Done`, or `Failed` with the reason).
    pub event: Event,
    /// The sector's new chain bookkeeping, if the phase changed it.
    pub chain: Option<SectorChain>,
    /// The retry policy the failure is judged by.
    pub policy: RetryPolicy,
}

/// The task records (a view of the pipeline's database).
#[derive(Debug, Clone)]
pub struct TaskStore {
    pipeline: PipelineStore,
}

impl TaskStore {
    /// The task records of `pipeline`'s database.
    pub fn new(pipeline: &PipelineStore) -> Self {
        TaskStore {
            pipeline: pipeline.clone(),
        }
    }

    fn records(&self) -> &Records {
        self.pipeline.records()
    }

    /// A task.
    pub fn get(&self, id: u64) -> TaskResult<Option<TaskRecord>> {
        self.records()
            .get(Tree::Tasks, &id.to_be_bytes())?
            .map(|b| decode_task(id, &b))
            .transpose()
    }

    /// Every task, by id.
    pub fn list(&self) -> TaskResult<Vec<TaskRecord>> {
        self.records()
            .scan(Tree::Tasks, &[])?
            .into_iter()
            .map(|(k, v)| decode_task(key_id(&k), &v))
            .collect()
    }

    /// Queues a task of `kind` holding `resources`, on `sector` at the given record version.
    pub fn enqueue(
        &self,
        kind: TaskKind,
        sector: Option<(u64, u64)>,
        resources: Resources,
        now: u64,
    ) -> TaskResult<TaskRecord> {
        self.records().transaction(|tx| {
            let id = counter(tx.get(Tree::TaskMeta, NEXT_ID)?);
            let record = TaskRecord {
                id,
                kind,
                sector: sector.map(|s| s.0),
                sector_version: sector.map(|s| s.1),
                state: TaskState::Queued,
                resources,
                attempts: 0,
                token: 0,
                created_at: now,
                started_at: None,
                finished_at: None,
                error: None,
            };
            tx.insert(Tree::Tasks, &id.to_be_bytes(), &encode(&record))?;
            tx.insert(Tree::TaskMeta, NEXT_ID, &id.saturating_add(1).to_be_bytes())?;
            Ok(record)
        })
    }

    /// Claims a queued task: it runs under a new token from now on.
    pub fn claim(&self, id: u64, now: u64) -> TaskResult<TaskRecord> {
        self.restart(id, now, TaskState::Running)
    }

    /// Moves task `id` (queued, or running for a re-queue) to `state` under a new token.
    fn restart(&self, id: u64, now: u64, state: TaskState) -> TaskResult<TaskRecord> {
        self.records().transaction(|tx| {
            let Some(bytes) = tx.get(Tree::Tasks, &id.to_be_bytes())? else {
                return abort(TaskError::Unknown(id));
            };
            let mut r = decode_task(id, &bytes).or_else(abort)?;
            let claimable = match state {
                TaskState::Running => r.state == TaskState::Queued,
                _ => r.state == TaskState::Running,
            };
            if !claimable {
                return abort(TaskError::NotQueued {
                    id,
                    state: r.state.name(),
                });
            }
            let token = counter(tx.get(Tree::TaskMeta, NEXT_TOKEN)?).max(r.token.saturating_add(1));
            r.token = token;
            r.state = state;
            if state == TaskState::Running {
                r.attempts = r.attempts.saturating_add(1);
                r.started_at = Some(now);
            }
            tx.insert(Tree::Tasks, &id.to_be_bytes(), &encode(&r))?;
            tx.insert(
                Tree::TaskMeta,
                NEXT_TOKEN,
                &token.saturating_add(1).to_be_bytes(),
            )?;
            Ok(r)
        })
    }

    /// Checks that `token` is `r`'s current claim of a running task.
    fn check_token(r: &TaskRecord, token: u64) -> TaskResult<()> {
        if r.state != TaskState::Running || r.token != token {
            return Err(TaskError::Stale {
                id: r.id,
                token,
                current: r.token,
                state: r.state.name(),
            });
        }
        Ok(())
    }

    /// Finishes a task that changes no sector (a PoSt, or a task whose sector moved on): done,
    /// or failed with `error`. Refused, with nothing written, unless `token` is current.
    pub fn finish(
        &self,
        id: u64,
        token: u64,
        error: Option<String>,
        now: u64,
    ) -> TaskResult<TaskRecord> {
        self.records().transaction(|tx| {
            let Some(bytes) = tx.get(Tree::Tasks, &id.to_be_bytes())? else {
                return abort(TaskError::Unknown(id));
            };
            let mut r = decode_task(id, &bytes).or_else(abort)?;
            Self::check_token(&r, token).or_else(abort)?;
            r.state = if error.is_some() {
                TaskState::Failed
            } else {
                TaskState::Done
            };
            r.error = error.clone();
            r.finished_at = Some(now);
            tx.insert(Tree::Tasks, &id.to_be_bytes(), &encode(&r))?;
            Ok(r)
        })
    }

    /// Finishes a sector task and applies its outcome to the sector **in one transaction**
    /// across both trees: the task done (or failed with the reason) and the sector's record
    /// moved by [`crate::pipeline::state::transition`] — to its next state, to its phase's
    /// failure state, or to `FailedUnrecoverable` when out of retries. Refused, with nothing
    /// written in either tree, when `token` is stale, the sector moved on since the task was
    /// queued, or the event does not apply. Durable before it returns.
    pub fn finish_sector(
        &self,
        id: u64,
        token: u64,
        outcome: &SectorOutcome,
        now: u64,
    ) -> TaskResult<(TaskRecord, SectorRecord)> {
        self.records().transaction(|tx| {
            let Some(bytes) = tx.get(Tree::Tasks, &id.to_be_bytes())? else {
                return abort(TaskError::Unknown(id));
            };
            let mut task = decode_task(id, &bytes).or_else(abort)?;
            Self::check_token(&task, token).or_else(abort)?;
            let (Some(number), Some(version)) = (task.sector, task.sector_version) else {
                return abort(TaskError::NoSector(id));
            };
            let Some(old) = tx.get(Tree::Sectors, &number.to_be_bytes())? else {
                return abort(PipelineError::Unknown(number).into());
            };
            let old = decode_record(number, &old)
                .map_err(TaskError::from)
                .or_else(abort)?;
            let new = changed(
                &old,
                version,
                Some(&outcome.event),
                outcome.chain.clone(),
                now,
                &outcome.policy,
            )
            .map_err(TaskError::from)
            .or_else(abort)?;
            match &outcome.event {
                Event::Failed { reason, .. } => {
                    task.state = TaskState::Failed;
                    task.error = Some(reason.clone());
                }
                _ => {
                    task.state = TaskState::Done;
                    task.error = None;
                }
            }
            task.finished_at = Some(now);
            tx.insert(Tree::Tasks, &id.to_be_bytes(), &encode(&task))?;
            tx.insert(Tree::Sectors, &number.to_be_bytes(), &encode(&new))?;
            Ok((task, new))
        })
    }

    /// What a restart finds: every task running at the crash is queued again under a new token
    /// (a stale worker's result is refused from now on), except time-sensitive ones, which
    /// fail (their caller asks again). Returns the unfinished tasks, by id. Durable.
    pub fn recover(&self, now: u64) -> TaskResult<Vec<TaskRecord>> {
        let mut out = Vec::new();
        for r in self.list()? {
            match r.state {
                TaskState::Running | TaskState::Queued if r.kind.is_time_sensitive() => {
                    let token = if r.state == TaskState::Queued {
                        self.claim(r.id, now)?.token
                    } else {
                        r.token
                    };
                    self.finish(r.id, token, Some("interrupted by a restart".into()), now)?;
                }
                TaskState::Running => out.push(self.restart(r.id, now, TaskState::Queued)?),
                TaskState::Queued => out.push(r),
                TaskState::Done | TaskState::Failed => {}
            }
        }
        Ok(out)
    }

    /// Prunes finished tasks: those finished more than `max_age` seconds before `now`, then the
    /// oldest past `max_entries`. Returns how many went.
    pub fn prune(&self, now: u64, max_age: u64, max_entries: u64) -> TaskResult<usize> {
        let mut finished: Vec<(u64, u64)> = self
            .list()?
            .into_iter()
            .filter(|r| r.state.is_finished())
            .map(|r| (r.finished_at.unwrap_or(0), r.id))
            .collect();
        finished.sort_unstable();
        let cutoff = now.saturating_sub(max_age);
        let keep = usize::try_from(max_entries).unwrap_or(usize::MAX);
        let extra = finished.len().saturating_sub(keep);
        let gone: Vec<u64> = finished
            .iter()
            .enumerate()
            .filter(|(i, (at, _))| *i < extra || *at < cutoff)
            .map(|(_, (_, id))| *id)
            .collect();
        if gone.is_empty() {
            return Ok(0);
        }
        self.records()
            .transaction(|tx| -> Result<(), Abort<TaskError>> {
                for id in &gone {
                    tx.remove(Tree::Tasks, &id.to_be_bytes())?;
                }
                Ok(())
            })?;
        Ok(gone.len())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::pipeline::{SectorKind, SectorState};

    fn setup() -> (tempfile::TempDir, PipelineStore, TaskStore) {
        let d = tempfile::tempdir().unwrap();
        let p = PipelineStore::open(d.path()).unwrap();
        let t = TaskStore::new(&p);
        (d, p, t)
    }

    /// A sector in PreCommit1.
    fn sector_in_pc1(p: &PipelineStore) -> SectorRecord {
        let mut r = p.create(SectorKind::CommittedCapacity, 0, 0).unwrap();
        while r.state() != SectorState::PreCommit1 {
            r = p
                .apply(
                    r.number,
                    r.version,
                    &Event::Done,
                    0,
                    &RetryPolicy::default(),
                )
                .unwrap();
        }
        r
    }

    fn done() -> SectorOutcome {
        SectorOutcome {
            event: Event::Done,
            chain: None,
            policy: RetryPolicy::default(),
        }
    }

    #[test]
    fn a_stale_token_is_refused_and_writes_nothing() {
        let (_d, p, t) = setup();
        let s = sector_in_pc1(&p);
        let q = t
            .enqueue(
                TaskKind::PreCommit1,
                Some((s.number, s.version)),
                Resources::ZERO,
                1,
            )
            .unwrap();
        assert_eq!((q.state, q.token), (TaskState::Queued, 0));
        let first = t.claim(q.id, 2).unwrap();
        assert_eq!((first.state, first.attempts), (TaskState::Running, 1));
        // A claim of a running task is refused.
        assert!(matches!(
            t.claim(q.id, 2).unwrap_err(),
            TaskError::NotQueued { .. }
        ));
        // A restart re-queues it; the next claim has a new, larger token.
        let again = t.recover(3).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].state, TaskState::Queued);
        assert!(again[0].token > first.token);
        let second = t.claim(q.id, 4).unwrap();
        assert!(second.token > again[0].token);
        assert_eq!(second.attempts, 2);
        // The first claim's result: refused in both trees.
        let before_task = t.get(q.id).unwrap().unwrap();
        let before_sector = p.get(s.number).unwrap().unwrap();
        let err = t.finish_sector(q.id, first.token, &done(), 5).unwrap_err();
        assert!(
            matches!(err, TaskError::Stale { token, current, .. } if token == first.token && current == second.token),
            "{err}"
        );
        assert!(matches!(
            t.finish(q.id, first.token, None, 5).unwrap_err(),
            TaskError::Stale { .. }
        ));
        assert_eq!(t.get(q.id).unwrap().unwrap(), before_task);
        assert_eq!(p.get(s.number).unwrap().unwrap(), before_sector);
        // The current claim's result is applied to both.
        let (task, sector) = t.finish_sector(q.id, second.token, &done(), 6).unwrap();
        assert_eq!((task.state, task.finished_at), (TaskState::Done, Some(6)));
        assert_eq!(sector.state(), SectorState::PreCommit2);
        // Finished: any token is stale now.
        assert!(matches!(
            t.finish_sector(q.id, second.token, &done(), 7).unwrap_err(),
            TaskError::Stale { .. }
        ));
    }

    #[test]
    fn out_of_retries_fails_the_task_and_the_sector_in_one_transaction() {
        let (_d, p, t) = setup();
        let policy = RetryPolicy {
            max_retries: 1,
            base_seconds: 0,
            max_seconds: 0,
        };
        let fail = SectorOutcome {
            event: Event::Failed {
                reason: "labels: disk full".into(),
                retry: true,
            },
            chain: None,
            policy,
        };
        let mut s = sector_in_pc1(&p);
        // First failure: the sector waits in its failure state for a retry.
        let q = t
            .enqueue(
                TaskKind::PreCommit1,
                Some((s.number, s.version)),
                Resources::ZERO,
                1,
            )
            .unwrap();
        let c = t.claim(q.id, 1).unwrap();
        let (task, sector) = t.finish_sector(q.id, c.token, &fail, 2).unwrap();
        assert_eq!(task.state, TaskState::Failed);
        assert_eq!(sector.state(), SectorState::SealPreCommit1Failed);
        s = p
            .apply(s.number, sector.version, &Event::Retry, 3, &policy)
            .unwrap();
        // The last retry fails: the task failed and the sector out of the pipeline, with the
        // reason, together.
        let q = t
            .enqueue(
                TaskKind::PreCommit1,
                Some((s.number, s.version)),
                Resources::ZERO,
                4,
            )
            .unwrap();
        let c = t.claim(q.id, 4).unwrap();
        let (task, sector) = t.finish_sector(q.id, c.token, &fail, 5).unwrap();
        assert_eq!(task.state, TaskState::Failed);
        assert_eq!(task.error.as_deref(), Some("labels: disk full"));
        assert_eq!(sector.state(), SectorState::FailedUnrecoverable);
        assert_eq!(
            sector.progress.last_error.as_deref(),
            Some("labels: disk full")
        );
        assert_eq!(p.get(s.number).unwrap().unwrap(), sector);
        assert_eq!(t.get(q.id).unwrap().unwrap(), task);
        // Atomic: when the sector side is refused (it moved on), the task stays running.
        let s2 = sector_in_pc1(&p);
        let q = t
            .enqueue(
                TaskKind::PreCommit1,
                Some((s2.number, s2.version)),
                Resources::ZERO,
                6,
            )
            .unwrap();
        let c = t.claim(q.id, 6).unwrap();
        p.apply(s2.number, s2.version, &Event::Remove, 7, &policy)
            .unwrap();
        let err = t.finish_sector(q.id, c.token, &fail, 8).unwrap_err();
        assert!(
            matches!(err, TaskError::Sector(PipelineError::Conflict { .. })),
            "{err}"
        );
        assert_eq!(t.get(q.id).unwrap().unwrap(), c);
        assert_eq!(
            p.get(s2.number).unwrap().unwrap().state(),
            SectorState::Removing
        );
    }

    #[test]
    fn history_is_pruned_by_age_and_count() {
        let (_d, _p, t) = setup();
        let mut ids = Vec::new();
        for i in 0..10u64 {
            let q = t
                .enqueue(TaskKind::WindowPost, None, Resources::ZERO, i)
                .unwrap();
            let c = t.claim(q.id, i).unwrap();
            t.finish(q.id, c.token, None, 100 + i).unwrap();
            ids.push(q.id);
        }
        let open = t
            .enqueue(TaskKind::WindowPost, None, Resources::ZERO, 50)
            .unwrap();
        // Age: finished before 103 go (100, 101, 102).
        assert_eq!(t.prune(110, 7, 100).unwrap(), 3);
        // Count: the oldest past five go (103, 104).
        assert_eq!(t.prune(110, 1000, 5).unwrap(), 2);
        let left: Vec<u64> = t.list().unwrap().iter().map(|r| r.id).collect();
        let mut want = ids[5..].to_vec();
        want.push(open.id);
        assert_eq!(left, want, "unfinished tasks are never pruned");
        assert_eq!(t.prune(110, 1000, 5).unwrap(), 0);
    }

    #[test]
    fn a_restart_fails_interrupted_post_tasks_and_ids_never_repeat() {
        let (d, p, t) = setup();
        let a = t
            .enqueue(TaskKind::WindowPost, None, Resources::ZERO, 1)
            .unwrap();
        t.claim(a.id, 1).unwrap();
        let b = t
            .enqueue(TaskKind::WindowPost, None, Resources::ZERO, 1)
            .unwrap();
        assert_eq!(t.recover(2).unwrap(), Vec::new());
        for id in [a.id, b.id] {
            let r = t.get(id).unwrap().unwrap();
            assert_eq!(r.state, TaskState::Failed);
            assert_eq!(r.error.as_deref(), Some("interrupted by a restart"));
        }
        t.prune(1000, 0, 0).unwrap();
        drop((t, p));
        let p = PipelineStore::open(d.path()).unwrap();
        let t = TaskStore::new(&p);
        let c = t
            .enqueue(TaskKind::Commit2, None, Resources::ZERO, 3)
            .unwrap();
        assert!(c.id > b.id);
        t.records()
            .put(Tree::Tasks, &99u64.to_be_bytes(), &[0xff])
            .unwrap();
        assert!(matches!(t.get(99).unwrap_err(), TaskError::Corrupt(99)));
    }
}
