//! The scheduler: the task records ([`TaskStore`]) and, in memory, what waits and what runs, so
//! that admission is a walk over the queue in priority order, not a scan of the database.
//!
//! Sealing tasks are queued by the pipeline ([`Scheduler::want`]) and started by it with the
//! claims [`Scheduler::admit`] hands out; their results go back through
//! [`Scheduler::complete_sector`] (one transaction with the sector's change). Time-sensitive
//! tasks are registered by their caller ([`Scheduler::time_sensitive`], which waits for
//! admission) and hold their resources until the [`PostSlot`] is finished or dropped.
//!
//! The in-memory state is loaded from the records at first use (a restart re-queues what was
//! running: [`TaskStore::recover`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use lode_proofs::sector::SectorSize;
use tokio::sync::{Notify, oneshot};

use super::admit::{self, Candidate, Load};
use super::config::{Capacity, SchedulerConfig, TaskLimits};
use super::kind::{Resources, TaskDetails, TaskKind};
use super::store::{SectorOutcome, TaskError, TaskRecord, TaskResult, TaskStore, TaskView};
use crate::pipeline::{PipelineStore, RetryPolicy, SectorRecord};

/// A claim of a sealing task: what the pipeline runs, and the token its result must carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The task.
    pub id: u64,
    /// Its kind.
    pub kind: TaskKind,
    /// Its sector.
    pub sector: u64,
    /// The sector record's version it was queued at.
    pub sector_version: u64,
    /// The fencing token.
    pub token: u64,
}

#[derive(Clone, Copy, Debug)]
struct Queued {
    kind: TaskKind,
    sector: Option<u64>,
    resources: Resources,
}

#[derive(Clone, Copy, Debug)]
struct Running {
    kind: TaskKind,
    sector: Option<u64>,
    held: Resources,
    token: u64,
}

type Key = (bool, u64, u64);

#[derive(Default)]
struct Live {
    loaded: bool,
    queue: BTreeMap<Key, u64>,
    queued: HashMap<u64, (Key, Queued)>,
    running: HashMap<u64, Running>,
    /// Sector → its unfinished task (queued or running).
    sectors: HashMap<u64, u64>,
    load: Load,
    waiters: HashMap<u64, oneshot::Sender<u64>>,
}

impl Live {
    fn push(&mut self, r: &TaskRecord) {
        let key = admit::priority(r.kind, r.sector, r.id);
        self.queue.insert(key, r.id);
        self.queued.insert(
            r.id,
            (
                key,
                Queued {
                    kind: r.kind,
                    sector: r.sector,
                    resources: r.resources,
                },
            ),
        );
        if let Some(s) = r.sector {
            self.sectors.insert(s, r.id);
        }
    }

    fn unqueue(&mut self, id: u64) -> Option<Queued> {
        let (key, q) = self.queued.remove(&id)?;
        self.queue.remove(&key);
        Some(q)
    }

    /// Forgets a finished task (queued or running under `token`).
    fn forget(&mut self, id: u64, token: Option<u64>) {
        let sector = if let Some(q) = self.unqueue(id) {
            q.sector
        } else {
            match self.running.get(&id) {
                Some(r) if token.is_none_or(|t| t == r.token) => {
                    let r = *r;
                    self.running.remove(&id);
                    self.load.remove(r.kind, &r.held);
                    r.sector
                }
                _ => None,
            }
        };
        if let Some(s) = sector
            && self.sectors.get(&s) == Some(&id)
        {
            self.sectors.remove(&s);
        }
        self.waiters.remove(&id);
    }
}

struct Inner {
    store: TaskStore,
    size: SectorSize,
    retry: RetryPolicy,
    cap: Capacity,
    limits: TaskLimits,
    max_age: u64,
    max_entries: u64,
    live: Mutex<Live>,
    changed: Notify,
}

/// The provider's task scheduler (cheap to clone: one shared state).
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("capacity", &self.inner.cap)
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    lode_node::genesis::unix_now()
}

impl Scheduler {
    /// A scheduler over `store`'s database, for sectors of `size` whose failures `retry`
    /// judges, with the machine and limits of `config`.
    pub fn new(
        store: &PipelineStore,
        config: &SchedulerConfig,
        size: SectorSize,
        retry: RetryPolicy,
    ) -> Self {
        let post = TaskKind::WindowPost.details(size, retry).resources;
        Scheduler {
            inner: Arc::new(Inner {
                store: TaskStore::new(store),
                size,
                retry,
                cap: config.capacity(post),
                limits: config.limits.clone(),
                max_age: config.history_max_age_seconds,
                max_entries: config.history_max_entries,
                live: Mutex::new(Live::default()),
                changed: Notify::new(),
            }),
        }
    }

    /// The task records.
    pub fn store(&self) -> &TaskStore {
        &self.inner.store
    }

    /// The machine as admission sees it.
    pub fn capacity(&self) -> Capacity {
        self.inner.cap
    }

    /// What `kind` declares here.
    pub fn details(&self, kind: TaskKind) -> TaskDetails {
        kind.details(self.inner.size, self.inner.retry)
    }

    /// Resolves when a task finished since the last call (resources were freed, a result waits).
    pub async fn changed(&self) {
        self.inner.changed.notified().await;
    }

    /// The in-memory state, loaded (and the restart recovered) at first use.
    fn live(&self) -> TaskResult<MutexGuard<'_, Live>> {
        let mut live = self
            .inner
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !live.loaded {
            let unfinished = self.inner.store.recover(unix_now())?;
            for r in &unfinished {
                live.push(r);
            }
            live.loaded = true;
        }
        Ok(live)
    }

    /// Tasks waiting, and tasks running.
    pub fn counts(&self) -> TaskResult<(usize, usize)> {
        let live = self.live()?;
        Ok((live.queued.len(), live.running.len()))
    }

    /// What sector `number` (read at `version`) needs: a task of `kind`, or none. Queues one
    /// when the sector has none; a queued task for another kind or an older version is dropped
    /// (failed: the sector moved on). A running one is left to finish (its result will be
    /// refused if the sector moved on).
    pub fn want(
        &self,
        number: u64,
        want: Option<(TaskKind, u64)>,
        now: u64,
    ) -> TaskResult<Option<TaskRecord>> {
        let mut live = self.live()?;
        if let Some(&id) = live.sectors.get(&number) {
            if live.running.contains_key(&id) {
                return Ok(None);
            }
            let current = self.inner.store.get(id)?;
            let same = current.as_ref().is_some_and(|r| {
                want.is_some_and(|(k, v)| r.kind == k && r.sector_version == Some(v))
            });
            if same {
                return Ok(None);
            }
            // Queued for a state the sector left: drop it.
            let claimed = self.inner.store.claim(id, now)?;
            self.inner
                .store
                .finish(id, claimed.token, Some("the sector moved on".into()), now)?;
            live.forget(id, None);
        }
        let Some((kind, version)) = want else {
            return Ok(None);
        };
        let held = admit::held(kind, &self.details(kind).resources, &self.inner.cap);
        let r = self
            .inner
            .store
            .enqueue(kind, Some((number, version)), held, now)?;
        live.push(&r);
        Ok(Some(r))
    }

    /// Admits what fits (time-sensitive tasks first; their waiters are woken) and returns the
    /// claims of the admitted sealing tasks, which the caller starts.
    pub fn admit(&self, now: u64) -> TaskResult<Vec<Claim>> {
        let mut live = self.live()?;
        self.admit_locked(&mut live, now, false)
    }

    fn admit_locked(&self, live: &mut Live, now: u64, posts_only: bool) -> TaskResult<Vec<Claim>> {
        // Walked lazily: admission stops as soon as no kind can start.
        let candidates: Vec<Candidate> = live
            .queue
            .values()
            .filter_map(|id| {
                live.queued.get(id).map(|(_, q)| Candidate {
                    id: *id,
                    kind: q.kind,
                    resources: q.resources,
                })
            })
            .take_while(|c| !posts_only || c.kind.is_time_sensitive())
            .collect();
        let mut load = live.load.clone();
        let mut admitted = admit::admit(
            candidates.iter().copied(),
            &mut load,
            &self.inner.cap,
            &self.inner.limits,
        );
        // PreCommit1 tasks that join an admitted one's batch hold no cores of their own.
        let joining = admit::co_admit_pre_commit1(
            &candidates,
            &admitted,
            &mut load,
            &self.inner.cap,
            &self.inner.limits,
            lode_sealing::labels::MAX_BATCH,
        );
        admitted.extend(&joining);
        let mut claims = Vec::new();
        for id in admitted {
            let Some(q) = live.unqueue(id) else { continue };
            let r = self.inner.store.claim(id, now)?;
            let held = if joining.contains(&id) {
                admit::sharing(&q.resources)
            } else {
                q.resources
            };
            live.load.add(q.kind, &held);
            live.running.insert(
                id,
                Running {
                    kind: q.kind,
                    sector: q.sector,
                    held,
                    token: r.token,
                },
            );
            if q.kind.is_time_sensitive() {
                let woken = live
                    .waiters
                    .remove(&id)
                    .is_some_and(|w| w.send(r.token).is_ok());
                if !woken {
                    // Its caller gave up waiting.
                    self.inner.store.finish(
                        id,
                        r.token,
                        Some("abandoned before it started".into()),
                        now,
                    )?;
                    live.forget(id, Some(r.token));
                }
            } else if let (Some(sector), Some(sector_version)) = (r.sector, r.sector_version) {
                claims.push(Claim {
                    id,
                    kind: q.kind,
                    sector,
                    sector_version,
                    token: r.token,
                });
            }
        }
        Ok(claims)
    }

    /// Applies a sealing task's outcome to its sector and finishes it, in one transaction
    /// ([`TaskStore::finish_sector`]). When the sector side is refused (it moved on, or the
    /// event does not apply), the task is finished as failed alone, and the refusal returned.
    /// A stale token changes nothing.
    pub fn complete_sector(
        &self,
        claim: &Claim,
        outcome: &SectorOutcome,
        now: u64,
    ) -> TaskResult<SectorRecord> {
        let result = self
            .inner
            .store
            .finish_sector(claim.id, claim.token, outcome, now);
        let mut live = self.live()?;
        let out = match result {
            Ok((_, sector)) => Ok(sector),
            Err(TaskError::Sector(e)) => {
                self.inner.store.finish(
                    claim.id,
                    claim.token,
                    Some(format!("result refused: {e}")),
                    now,
                )?;
                Err(TaskError::Sector(e))
            }
            Err(e) => return Err(e),
        };
        live.forget(claim.id, Some(claim.token));
        drop(live);
        self.inner.changed.notify_one();
        self.wake_posts(now)?;
        out
    }

    /// Finishes a claimed task without a sector change (it could not start: the sector moved
    /// on), failed with `why`.
    pub fn cancel(&self, claim: &Claim, why: &str, now: u64) -> TaskResult<()> {
        self.finish_plain(claim.id, claim.token, Some(why.to_string()), now)
    }

    fn finish_plain(&self, id: u64, token: u64, error: Option<String>, now: u64) -> TaskResult<()> {
        let result = self.inner.store.finish(id, token, error, now);
        let mut live = self.live()?;
        if !matches!(result, Err(TaskError::Stale { .. })) {
            live.forget(id, Some(token));
        }
        drop(live);
        self.inner.changed.notify_one();
        self.wake_posts(now)?;
        result.map(|_| ())
    }

    fn wake_posts(&self, now: u64) -> TaskResult<()> {
        let mut live = self.live()?;
        if !live.waiters.is_empty() {
            self.admit_locked(&mut live, now, true)?;
        }
        Ok(())
    }

    /// Registers a time-sensitive task of `kind` and waits until it is admitted (at once, unless
    /// other time-sensitive tasks hold the machine: sealing never holds the reserve, and sealing
    /// admission pauses while it waits). The returned slot holds its resources until finished.
    pub async fn time_sensitive(&self, kind: TaskKind) -> TaskResult<PostSlot> {
        let now = unix_now();
        let rx = {
            let mut live = self.live()?;
            let held = admit::held(kind, &self.details(kind).resources, &self.inner.cap);
            let r = self.inner.store.enqueue(kind, None, held, now)?;
            live.push(&r);
            let (tx, rx) = oneshot::channel();
            live.waiters.insert(r.id, tx);
            self.admit_locked(&mut live, now, true)?;
            (r.id, rx)
        };
        let (id, rx) = rx;
        let mut slot = PostSlot {
            scheduler: self.clone(),
            id,
            token: 0,
            finished: false,
        };
        match rx.await {
            Ok(token) => slot.token = token,
            Err(_) => {
                slot.finished = true;
                return Err(TaskError::Unknown(id));
            }
        }
        Ok(slot)
    }

    /// Every task, by id, as the API lists them.
    pub fn list(&self) -> TaskResult<Vec<TaskView>> {
        Ok(self
            .inner
            .store
            .list()?
            .iter()
            .map(TaskRecord::view)
            .collect())
    }

    /// Prunes the history by the retention policy; returns how many went.
    pub fn prune(&self, now: u64) -> TaskResult<usize> {
        self.inner
            .store
            .prune(now, self.inner.max_age, self.inner.max_entries)
    }

    /// The running task of `sector`, if any.
    pub fn running_on(&self, sector: u64) -> TaskResult<Option<u64>> {
        let live = self.live()?;
        Ok(live
            .sectors
            .get(&sector)
            .copied()
            .filter(|id| live.running.contains_key(id)))
    }
}

/// A running time-sensitive task: it holds its resources until [`PostSlot::finish`] (or until
/// dropped, which finishes it as failed).
#[derive(Debug)]
pub struct PostSlot {
    scheduler: Scheduler,
    id: u64,
    token: u64,
    finished: bool,
}

impl PostSlot {
    /// The task's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Finishes the task: done, or failed with `error`.
    ///
    /// # Errors
    /// [`TaskError`] when the record cannot be written (the resources are freed anyway).
    pub fn finish(mut self, error: Option<String>) -> TaskResult<()> {
        self.finished = true;
        self.scheduler
            .finish_plain(self.id, self.token, error, unix_now())
    }
}

impl Drop for PostSlot {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.scheduler.finish_plain(
                self.id,
                self.token,
                Some("abandoned".into()),
                unix_now(),
            );
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use crate::pipeline::{Event, SectorKind, SectorState};
    use crate::tasks::config::Reserve;
    use crate::tasks::store::TaskState;

    fn config(cores: u32, reserve: u32) -> SchedulerConfig {
        SchedulerConfig {
            cores: Some(cores),
            memory: Some(1 << 40),
            post_reserve: Some(Reserve {
                cores: reserve,
                ..Reserve::default()
            }),
            ..SchedulerConfig::default()
        }
    }

    /// `n` sectors moved to `state`.
    fn sectors(p: &PipelineStore, n: usize, state: SectorState) -> Vec<SectorRecord> {
        (0..n)
            .map(|_| {
                let mut r = p.create(SectorKind::CommittedCapacity, 0, 0).unwrap();
                while r.state() != state {
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
            })
            .collect()
    }

    fn done() -> SectorOutcome {
        SectorOutcome {
            event: Event::Done,
            chain: None,
            policy: RetryPolicy::default(),
        }
    }

    #[test]
    fn oldest_sector_first_within_limits_and_resources() {
        let d = tempfile::tempdir().unwrap();
        let p = PipelineStore::open(d.path()).unwrap();
        let mut c = config(4, 1);
        c.limits.set(TaskKind::PreCommit1, Some(2));
        let s = Scheduler::new(&p, &c, SectorSize::S2KiB, RetryPolicy::default());
        let pc1 = sectors(&p, 4, SectorState::PreCommit1);
        let pc2 = sectors(&p, 1, SectorState::PreCommit2);
        // Queued newest first: admission still goes by sector number.
        for r in pc1.iter().rev() {
            s.want(r.number, Some((TaskKind::PreCommit1, r.version)), 1)
                .unwrap();
        }
        s.want(
            pc2[0].number,
            Some((TaskKind::PreCommit2, pc2[0].version)),
            1,
        )
        .unwrap();
        // Asking again queues nothing more.
        assert!(
            s.want(
                pc1[0].number,
                Some((TaskKind::PreCommit1, pc1[0].version)),
                1
            )
            .unwrap()
            .is_none()
        );
        let claims = s.admit(2).unwrap();
        let got: Vec<(TaskKind, u64)> = claims.iter().map(|c| (c.kind, c.sector)).collect();
        // Two PC1s (the limit), the two oldest; PC2 (4 cores clamped to the 3 of sealing)
        // does not fit beside them.
        assert_eq!(
            got,
            vec![
                (TaskKind::PreCommit1, pc1[0].number),
                (TaskKind::PreCommit1, pc1[1].number)
            ]
        );
        assert_eq!(s.counts().unwrap(), (3, 2));
        // One finishes: the next oldest PC1 goes, PC2 still waits for cores.
        let sector = s.complete_sector(&claims[0], &done(), 3).unwrap();
        assert_eq!(sector.state(), SectorState::PreCommit2);
        let next = s.admit(3).unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].sector, pc1[2].number);
        s.complete_sector(&claims[1], &done(), 4).unwrap();
        s.complete_sector(&next[0], &done(), 4).unwrap();
        // The machine is free: the older PC2 before the last PC1? No: by sector number, the
        // last PC1 (older) first, then PC2 does not fit beside it.
        let last = s.admit(5).unwrap();
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].sector, pc1[3].number);
        s.complete_sector(&last[0], &done(), 6).unwrap();
        let pc2_claim = s.admit(6).unwrap();
        assert_eq!(pc2_claim.len(), 1);
        assert_eq!(pc2_claim[0].kind, TaskKind::PreCommit2);
        let views = s.list().unwrap();
        let held = views
            .iter()
            .find(|v| v.id == pc2_claim[0].id)
            .unwrap()
            .resources;
        assert_eq!(held.cores, 3, "clamped to sealing's share");
    }

    #[tokio::test]
    async fn a_post_is_admitted_past_sealing_and_pauses_it_while_waiting() {
        let d = tempfile::tempdir().unwrap();
        let p = PipelineStore::open(d.path()).unwrap();
        let s = Scheduler::new(&p, &config(3, 1), SectorSize::S2KiB, RetryPolicy::default());
        // Commit1: one core each (PreCommit1 tasks would join each other's batch).
        let c1 = sectors(&p, 4, SectorState::Commit1);
        for r in &c1 {
            s.want(r.number, Some((TaskKind::Commit1, r.version)), 1)
                .unwrap();
        }
        // Sealing takes its two cores, never the reserved third.
        let claims = s.admit(1).unwrap();
        assert_eq!(claims.len(), 2);
        let post = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            s.time_sensitive(TaskKind::WindowPost),
        )
        .await
        .expect("a PoSt is never held back by sealing")
        .unwrap();
        // A second PoSt finds the reserve taken: it waits, and sealing admission pauses.
        let s2 = s.clone();
        let second = tokio::spawn(async move { s2.time_sensitive(TaskKind::WindowPost).await });
        tokio::task::yield_now().await;
        while s.counts().unwrap().0 < 3 {
            tokio::task::yield_now().await;
        }
        s.complete_sector(&claims[0], &done(), 2).unwrap();
        // The freed core went to the waiting PoSt, not to the next sector.
        let second = tokio::time::timeout(std::time::Duration::from_secs(5), second)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(s.admit(2).unwrap().is_empty());
        post.finish(None).unwrap();
        drop(second); // finished as abandoned
        // Sealing admission resumes: one sector beside the one still running.
        assert_eq!(s.admit(3).unwrap().len(), 1);
        assert_eq!(s.counts().unwrap(), (1, 2));
        let views = s.list().unwrap();
        let posts: Vec<_> = views
            .iter()
            .filter(|v| v.kind == TaskKind::WindowPost)
            .collect();
        assert_eq!(posts.len(), 2);
        assert_eq!(posts[0].state, TaskState::Done);
        assert_eq!(posts[1].state, TaskState::Failed);
        assert_eq!(posts[1].error.as_deref(), Some("abandoned"));
    }

    #[tokio::test]
    async fn a_winning_post_takes_the_reserve_and_holds_sealing_back_while_it_waits() {
        let d = tempfile::tempdir().unwrap();
        let p = PipelineStore::open(d.path()).unwrap();
        let s = Scheduler::new(&p, &config(3, 1), SectorSize::S2KiB, RetryPolicy::default());
        // Commit1: one core each (PreCommit1 tasks would join each other's batch).
        let c1 = sectors(&p, 4, SectorState::Commit1);
        for r in &c1 {
            s.want(r.number, Some((TaskKind::Commit1, r.version)), 1)
                .unwrap();
        }
        let within = std::time::Duration::from_secs(5);
        // Sealing takes its two cores; the reserved third is the Winning PoSt's at once.
        let claims = s.admit(1).unwrap();
        assert_eq!(claims.len(), 2);
        let winning = tokio::time::timeout(within, s.time_sensitive(TaskKind::WinningPost))
            .await
            .expect("a Winning PoSt is never held back by sealing")
            .unwrap();
        // While it runs, no sealing task is admitted beyond the sealing share.
        s.complete_sector(&claims[0], &done(), 2).unwrap();
        let more = s.admit(2).unwrap();
        assert_eq!(more.len(), 1, "only the core sealing freed");
        assert!(s.admit(2).unwrap().is_empty());
        // A Window PoSt now waits (the reserve is taken): a second Winning PoSt queued behind it
        // waits too, and while they wait sealing admits nothing, even with a core freed.
        let s2 = s.clone();
        let window = tokio::spawn(async move { s2.time_sensitive(TaskKind::WindowPost).await });
        let s3 = s.clone();
        let next = tokio::spawn(async move { s3.time_sensitive(TaskKind::WinningPost).await });
        while s.counts().unwrap().0 < 3 {
            tokio::task::yield_now().await;
        }
        s.complete_sector(&claims[1], &done(), 3).unwrap();
        let window = tokio::time::timeout(within, window)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(s.admit(3).unwrap().is_empty(), "a Winning PoSt still waits");
        winning.finish(None).unwrap();
        let next = tokio::time::timeout(within, next)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(s.admit(4).unwrap().is_empty(), "the PoSts hold the machine");
        next.finish(Some("no sectors".into())).unwrap();
        window.finish(None).unwrap();
        // Sealing resumes once no PoSt waits: the last sector beside the one still running.
        assert_eq!(s.admit(5).unwrap().len(), 1);
        let views = s.list().unwrap();
        let states: Vec<_> = views
            .iter()
            .filter(|v| v.kind.is_time_sensitive())
            .map(|v| (v.kind, v.state))
            .collect();
        assert_eq!(
            states,
            vec![
                (TaskKind::WinningPost, TaskState::Done),
                (TaskKind::WindowPost, TaskState::Done),
                (TaskKind::WinningPost, TaskState::Failed),
            ]
        );
    }

    #[test]
    fn a_restart_requeues_running_tasks_under_new_tokens() {
        let d = tempfile::tempdir().unwrap();
        let c = config(4, 1);
        let (stale, number) = {
            let p = PipelineStore::open(d.path()).unwrap();
            let s = Scheduler::new(&p, &c, SectorSize::S2KiB, RetryPolicy::default());
            let r = &sectors(&p, 1, SectorState::Commit1)[0];
            s.want(r.number, Some((TaskKind::Commit1, r.version)), 1)
                .unwrap();
            let claims = s.admit(1).unwrap();
            assert_eq!(claims.len(), 1);
            (claims[0], r.number)
        };
        // The daemon restarts: the task is queued again and claimed under a new token.
        let p = PipelineStore::open(d.path()).unwrap();
        let s = Scheduler::new(&p, &c, SectorSize::S2KiB, RetryPolicy::default());
        assert_eq!(s.counts().unwrap(), (1, 0));
        let again = s.admit(2).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].id, again[0].sector), (stale.id, number));
        assert!(again[0].token > stale.token);
        // The worker of before the restart reports: refused, nothing written.
        let before = p.get(number).unwrap().unwrap();
        assert!(matches!(
            s.complete_sector(&stale, &done(), 3).unwrap_err(),
            TaskError::Stale { .. }
        ));
        assert_eq!(p.get(number).unwrap().unwrap(), before);
        assert_eq!(s.counts().unwrap(), (0, 1));
        let after = s.complete_sector(&again[0], &done(), 4).unwrap();
        assert_eq!(after.state(), SectorState::Commit2);
        let v = &s.list().unwrap()[0];
        assert_eq!((v.state, v.attempts), (TaskState::Done, 2));
    }

    #[test]
    fn a_queued_task_of_a_state_the_sector_left_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        let p = PipelineStore::open(d.path()).unwrap();
        let s = Scheduler::new(&p, &config(2, 1), SectorSize::S2KiB, RetryPolicy::default());
        let r = &sectors(&p, 2, SectorState::Commit2);
        s.want(r[0].number, Some((TaskKind::Commit2, r[0].version)), 1)
            .unwrap();
        s.want(r[1].number, Some((TaskKind::Commit2, r[1].version)), 1)
            .unwrap();
        let running = s.admit(1).unwrap();
        assert_eq!(running.len(), 1);
        // The operator removed the second sector while its task waited.
        s.want(r[1].number, None, 2).unwrap();
        assert_eq!(s.counts().unwrap(), (0, 1));
        let views = s.list().unwrap();
        assert_eq!(views[1].state, TaskState::Failed);
        assert_eq!(views[1].error.as_deref(), Some("the sector moved on"));
    }

    /// The scheduler's own cost per task: queue, admit, complete with the sector's change (one
    /// sled transaction and a flush each). Prints the figure (BENCHMARKS.md records it);
    /// `LODE_SCHED_TASKS` sets the count (2,000 by default; the recorded figure is of 10,000).
    #[test]
    fn overhead_per_task() {
        let d = tempfile::tempdir().unwrap();
        let p = PipelineStore::open(d.path()).unwrap();
        let c = SchedulerConfig {
            cores: Some(64),
            ..config(64, 1)
        };
        let s = Scheduler::new(&p, &c, SectorSize::S2KiB, RetryPolicy::default());
        let n: usize = std::env::var("LODE_SCHED_TASKS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2_000);
        let recs = sectors(&p, n, SectorState::Finalize);
        let started = std::time::Instant::now();
        for r in &recs {
            s.want(r.number, Some((TaskKind::Finalize, r.version)), 1)
                .unwrap();
        }
        let queued = started.elapsed();
        let mut finished = 0usize;
        while finished < n {
            let claims = s.admit(2).unwrap();
            assert!(!claims.is_empty());
            for claim in &claims {
                s.complete_sector(claim, &done(), 3).unwrap();
            }
            finished += claims.len();
        }
        let total = started.elapsed();
        let per = |d: std::time::Duration| d.as_nanos() / n as u128;
        println!(
            "scheduler overhead: {n} tasks, {} ns/task (queue {} ns/task, admit + complete {} ns/task)",
            per(total),
            per(queued),
            per(total - queued)
        );
        assert!(
            p.list()
                .unwrap()
                .iter()
                .all(|r| r.state() == SectorState::Proving)
        );
        assert_eq!(s.counts().unwrap(), (0, 0));
    }
}
