//! Admission: which waiting tasks start now, given what runs, the machine and the per-kind
//! limits. Pure: no I/O, no clock.
//!
//! Candidates come in priority order ([`priority`]): time-sensitive tasks first (oldest first),
//! then sealing tasks by sector number (the oldest sector first: numbers are handed out in
//! order). Each is admitted when its kind is under its limit and its requirement fits:
//!
//! - a time-sensitive task in the whole machine ([`Capacity::total`]);
//! - a sealing task in the sealing part ([`Capacity::sealing`], the machine less the PoSt
//!   reserve) **and** in the whole machine (a PoSt may have taken more than the reserve), and
//!   only while no time-sensitive task waits: one that does not fit pauses sealing admission
//!   until it runs.
//!
//! A requirement larger than the capacity it is checked against is clamped to it (such a task
//! runs alone rather than never). A task that does not fit does not stop the ones behind it
//! (a smaller task may fill the gap), but the kinds that did not fit are skipped from then on.

use super::config::{Capacity, TaskLimits};
use super::kind::{Resources, TaskKind};

/// The order of admission: time-sensitive first, then by `order` (a sealing task's sector number,
/// a time-sensitive task's id), then by id.
pub fn priority(kind: TaskKind, sector: Option<u64>, id: u64) -> (bool, u64, u64) {
    (
        !kind.is_time_sensitive(),
        if kind.is_time_sensitive() {
            id
        } else {
            sector.unwrap_or(u64::MAX)
        },
        id,
    )
}

/// A task waiting for admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Its id.
    pub id: u64,
    /// Its kind.
    pub kind: TaskKind,
    /// What it declares (before clamping).
    pub resources: Resources,
}

/// What runs: the sums the admission checks against.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Load {
    /// Held by every running task.
    pub all: Resources,
    /// Held by running sealing tasks.
    pub sealing: Resources,
    /// Running tasks per kind (by [`TaskKind::index`]).
    pub per_kind: [u32; TaskKind::ALL.len()],
}

impl Load {
    /// Adds a task that holds `r` (already clamped: [`held`]).
    pub fn add(&mut self, kind: TaskKind, r: &Resources) {
        self.all = self.all.plus(r);
        if !kind.is_time_sensitive() {
            self.sealing = self.sealing.plus(r);
        }
        if let Some(n) = self.per_kind.get_mut(kind.index()) {
            *n = n.saturating_add(1);
        }
    }

    /// Removes a task that held `r`.
    pub fn remove(&mut self, kind: TaskKind, r: &Resources) {
        self.all = self.all.minus(r);
        if !kind.is_time_sensitive() {
            self.sealing = self.sealing.minus(r);
        }
        if let Some(n) = self.per_kind.get_mut(kind.index()) {
            *n = n.saturating_sub(1);
        }
    }

    /// Running tasks of `kind`.
    pub fn running(&self, kind: TaskKind) -> u32 {
        self.per_kind.get(kind.index()).copied().unwrap_or(0)
    }
}

/// What a task of `kind` declaring `r` holds once admitted: `r` clamped to the capacity it is
/// checked against.
pub fn held(kind: TaskKind, r: &Resources, cap: &Capacity) -> Resources {
    if kind.is_time_sensitive() {
        r.min(&cap.total)
    } else {
        r.min(&cap.sealing)
    }
}

/// Whether a task of `kind` holding `r` (clamped) may start on top of `load`.
fn fits(kind: TaskKind, r: &Resources, load: &Load, cap: &Capacity, limits: &TaskLimits) -> bool {
    if limits.get(kind).is_some_and(|l| load.running(kind) >= l) {
        return false;
    }
    let total_ok = load.all.plus(r).fits_in(&cap.total);
    if kind.is_time_sensitive() {
        total_ok
    } else {
        total_ok && load.sealing.plus(r).fits_in(&cap.sealing)
    }
}

/// PreCommit1 tasks that may join the PreCommit1 tasks of `admitted` in one batch (the pipeline
/// labels the PreCommit1 tasks of one admission together): a batch walks the graph once for all
/// its sectors, so a joining task holds no cores or GPUs of its own, only its memory and
/// scratch. Taken in queue order while they fit on top of `load` (a PreCommit1 limit counts
/// them too) and the batch stays within `max` sectors; each is added to `load`.
pub fn co_admit_pre_commit1(
    candidates: &[Candidate],
    admitted: &[u64],
    load: &mut Load,
    cap: &Capacity,
    limits: &TaskLimits,
    max: usize,
) -> Vec<u64> {
    let kind = TaskKind::PreCommit1;
    // A PoSt waiting for resources holds sealing back: nothing joins then.
    if candidates
        .iter()
        .any(|c| c.kind.is_time_sensitive() && !admitted.contains(&c.id))
    {
        return Vec::new();
    }
    let mut batch = candidates
        .iter()
        .filter(|c| c.kind == kind && admitted.contains(&c.id))
        .count();
    let mut out = Vec::new();
    if batch == 0 {
        return out;
    }
    for c in candidates
        .iter()
        .filter(|c| c.kind == kind && !admitted.contains(&c.id))
    {
        if batch >= max {
            break;
        }
        let r = sharing(&held(kind, &c.resources, cap));
        if !fits(kind, &r, load, cap, limits) {
            break;
        }
        load.add(kind, &r);
        out.push(c.id);
        batch = batch.saturating_add(1);
    }
    out
}

/// What a task joining a batch holds: its resources less cores and GPUs.
pub fn sharing(r: &Resources) -> Resources {
    Resources {
        cores: 0,
        gpus: 0,
        ..*r
    }
}

/// Admits from `candidates` (in [`priority`] order) what fits on top of `load`, adding each
/// admitted task to `load`; returns their ids, in order.
pub fn admit(
    candidates: impl IntoIterator<Item = Candidate>,
    load: &mut Load,
    cap: &Capacity,
    limits: &TaskLimits,
) -> Vec<u64> {
    let mut out = Vec::new();
    let mut blocked = [false; TaskKind::ALL.len()];
    let mut post_waits = false;
    for c in candidates {
        let kind = c.kind;
        if !kind.is_time_sensitive() && post_waits {
            break;
        }
        if blocked.get(kind.index()).copied().unwrap_or(true) {
            if blocked.iter().all(|b| *b) {
                break;
            }
            continue;
        }
        let r = held(kind, &c.resources, cap);
        if fits(kind, &r, load, cap, limits) {
            load.add(kind, &r);
            out.push(c.id);
        } else {
            if let Some(b) = blocked.get_mut(kind.index()) {
                *b = true;
            }
            if kind.is_time_sensitive() {
                post_waits = true;
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cap(cores: u32, memory: u64, reserve_cores: u32) -> Capacity {
        Capacity::new(
            Resources {
                cores,
                memory,
                gpus: 0,
                scratch: u64::MAX,
            },
            Resources {
                cores: reserve_cores,
                ..Resources::ZERO
            },
        )
    }

    fn c(id: u64, kind: TaskKind, cores: u32, memory: u64) -> Candidate {
        Candidate {
            id,
            kind,
            resources: Resources {
                cores,
                memory,
                gpus: 0,
                scratch: 0,
            },
        }
    }

    #[test]
    fn pre_commit1_tasks_join_an_admitted_one_for_their_memory_alone() {
        use TaskKind::*;
        // Two cores for sealing: one PreCommit1 (one core) and one PreCommit2 (one core) fit.
        let cap = cap(3, 100, 1);
        let queue = [
            c(1, PreCommit1, 1, 20),
            c(2, PreCommit1, 1, 20),
            c(3, PreCommit2, 1, 10),
            c(4, PreCommit1, 1, 20),
            c(5, PreCommit1, 1, 20),
            c(6, PreCommit1, 1, 20),
        ];
        let limits = TaskLimits::default();
        let mut load = Load::default();
        let admitted = admit(queue, &mut load, &cap, &limits);
        assert_eq!(admitted, [1, 2]);
        let joining = co_admit_pre_commit1(&queue, &admitted, &mut load, &cap, &limits, 64);
        // Memory bounds them (40 + 3 × 20 = 100 of 100); they hold no cores.
        assert_eq!(joining, [4, 5, 6]);
        assert_eq!(load.all.memory, 100);
        assert_eq!(load.all.cores, 2);
        // A batch of at most `max` sectors; none without an admitted PreCommit1 to join.
        let mut load = Load::default();
        assert_eq!(
            co_admit_pre_commit1(&queue, &[1], &mut load, &cap, &limits, 2),
            [2]
        );
        let mut load = Load::default();
        assert!(co_admit_pre_commit1(&queue, &[3], &mut load, &cap, &limits, 64).is_empty());
        // Nor while a PoSt waits for resources.
        let mut with_post = queue.to_vec();
        with_post.push(c(7, WindowPost, 1, 10));
        let mut load = Load::default();
        assert!(co_admit_pre_commit1(&with_post, &[1], &mut load, &cap, &limits, 64).is_empty());
        // A PreCommit1 limit counts the joining tasks too.
        let mut limited = TaskLimits::default();
        limited.set(PreCommit1, Some(2));
        let mut load = Load::default();
        let admitted = admit(queue, &mut load, &cap, &limited);
        assert!(co_admit_pre_commit1(&queue, &admitted, &mut load, &cap, &limited, 64).is_empty());
    }

    #[test]
    fn resources_and_limits_bound_what_is_admitted() {
        use TaskKind::*;
        let cap = cap(8, 100, 1);
        let mut limits = TaskLimits::default();
        limits.set(PreCommit1, Some(2));
        let mut load = Load::default();
        let got = admit(
            [
                c(1, PreCommit1, 1, 10),
                c(2, PreCommit1, 1, 10),
                c(3, PreCommit1, 1, 10), // over the limit
                c(4, PreCommit2, 4, 50),
                c(5, Commit2, 4, 10), // 1+1+4+4 > 7 sealing cores
                c(6, Finalize, 1, 10),
                c(7, Commit1, 1, 30), // 10+10+50+10+30 > 100 memory
            ],
            &mut load,
            &cap,
            &limits,
        );
        assert_eq!(got, vec![1, 2, 4, 6]);
        assert_eq!(load.sealing.cores, 7);
        assert_eq!(load.running(PreCommit1), 2);
        // The reserve is left for PoSt.
        let post = admit([c(9, WindowPost, 1, 0)], &mut load, &cap, &limits);
        assert_eq!(post, vec![9]);
        assert_eq!(load.all.cores, 8);
        // A task larger than the machine is clamped and runs alone.
        let mut empty = Load::default();
        let got = admit(
            [c(1, Commit2, 64, 1000), c(2, Finalize, 1, 0)],
            &mut empty,
            &cap,
            &limits,
        );
        assert_eq!(got, vec![1]);
        assert_eq!(empty.all.cores, 7);
    }

    #[test]
    fn a_waiting_post_pauses_sealing_and_sealing_never_takes_the_reserve() {
        use TaskKind::*;
        let cap = cap(4, 100, 1);
        let limits = TaskLimits::default();
        // Sealing fills its three cores; the PoSt still gets the reserved one.
        let mut load = Load::default();
        let got = admit(
            [
                c(1, PreCommit1, 1, 0),
                c(2, PreCommit1, 1, 0),
                c(3, PreCommit1, 1, 0),
                c(4, PreCommit1, 1, 0),
            ],
            &mut load,
            &cap,
            &limits,
        );
        assert_eq!(got, vec![1, 2, 3]);
        assert_eq!(
            admit([c(5, WindowPost, 1, 0)], &mut load, &cap, &limits),
            vec![5]
        );
        // A PoSt that does not fit (two cores, one free) pauses sealing: the free core waits
        // for it.
        let mut load = Load::default();
        load.add(
            PreCommit1,
            &Resources {
                cores: 2,
                ..Resources::ZERO
            },
        );
        let got = admit(
            [c(6, WindowPost, 3, 0), c(7, PreCommit1, 1, 0)],
            &mut load,
            &cap,
            &limits,
        );
        assert!(got.is_empty(), "{got:?}");
        // Time-sensitive first, whatever order they were queued in.
        assert!(priority(WindowPost, None, 99) < priority(PreCommit1, Some(0), 1));
        assert!(priority(PreCommit2, Some(3), 50) < priority(PreCommit1, Some(4), 1));
    }

    fn kind() -> impl Strategy<Value = TaskKind> {
        prop::sample::select(TaskKind::ALL.to_vec())
    }

    proptest! {
        /// Whatever runs and waits, the admitted set with what ran before never exceeds the
        /// machine, the sealing part, or a kind's limit.
        #[test]
        fn the_admitted_set_never_exceeds_resources_or_limits(
            total in (1u32..64, 0u64..1000, 0u32..4),
            reserve in (0u32..8, 0u64..200, 0u32..2),
            limits in prop::collection::vec(prop::option::of(0u32..4), TaskKind::ALL.len()),
            running in prop::collection::vec((kind(), 0u32..16, 0u64..300, 0u32..2), 0..6),
            waiting in prop::collection::vec((kind(), 0u32..16, 0u64..300, 0u32..2, 0u64..50), 0..40),
        ) {
            let cap = Capacity::new(
                Resources { cores: total.0, memory: total.1, gpus: total.2, scratch: u64::MAX },
                Resources { cores: reserve.0, memory: reserve.1, gpus: reserve.2, scratch: 0 },
            );
            let mut l = TaskLimits::default();
            for (k, lim) in TaskKind::ALL.iter().zip(&limits) {
                l.set(*k, *lim);
            }
            let resources = |cores, memory, gpus| Resources { cores, memory, gpus, scratch: 0 };
            let mut load = Load::default();
            let mut ids = 0u64;
            // What already runs was admitted by the same rule.
            let mut before = Vec::new();
            for (k, cores, memory, gpus) in running {
                ids += 1;
                before.push(Candidate { id: ids, kind: k, resources: resources(cores, memory, gpus) });
            }
            let ran = admit(before.clone(), &mut load, &cap, &l);
            let mut queue: Vec<(Candidate, u64)> = waiting.into_iter().map(|(k, cores, memory, gpus, sector)| {
                ids += 1;
                (Candidate { id: ids, kind: k, resources: resources(cores, memory, gpus) }, sector)
            }).collect();
            queue.sort_by_key(|(c, s)| priority(c.kind, Some(*s), c.id));
            let admitted = admit(queue.iter().map(|(c, _)| *c), &mut load, &cap, &l);
            // The sums recomputed from the admitted tasks, not from the load's bookkeeping.
            let mut check = Load::default();
            for cand in before.iter().filter(|c| ran.contains(&c.id))
                .chain(queue.iter().map(|(c, _)| c).filter(|c| admitted.contains(&c.id)))
            {
                check.add(cand.kind, &held(cand.kind, &cand.resources, &cap));
            }
            prop_assert_eq!(&check, &load);
            prop_assert!(check.all.fits_in(&cap.total), "{:?} > {:?}", check.all, cap.total);
            prop_assert!(check.sealing.fits_in(&cap.sealing), "{:?} > {:?}", check.sealing, cap.sealing);
            for &k in TaskKind::ALL {
                if let Some(lim) = l.get(k) {
                    prop_assert!(check.running(k) <= lim, "{}: {} > {}", k, check.running(k), lim);
                }
            }
            // Nothing sealing was admitted past a time-sensitive task left waiting.
            let waiting_post = queue.iter().any(|(c, _)| c.kind.is_time_sensitive() && !admitted.contains(&c.id));
            if waiting_post {
                prop_assert!(queue.iter().all(|(c, _)| c.kind.is_time_sensitive() || !admitted.contains(&c.id)));
            }
        }
    }
}
