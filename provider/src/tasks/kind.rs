//! The task types and what each declares: the resources it holds while it runs, its retry policy,
//! and whether it is time-sensitive.
//!
//! The sealing phases' figures come from [`lode_sealing::capacity`] (the bytes a phase writes in
//! the sector and cache directories, the anonymous memory it holds); cores are what the phase's
//! code uses: PreCommit1's labeller is one sequential walk, PreCommit2's trees and Commit2's prover
//! spread over a thread pool ([`PARALLEL_CORES`]). A requirement larger than the machine is
//! clamped to it by the admission ([`super::admit`]), so a task is never refused for ever.

use lode_proofs::sector::SectorSize;
use lode_sealing::capacity::{self, Phase};
use serde::{Deserialize, Serialize};

use crate::pipeline::{RetryPolicy, SectorState};

/// The cores a task that spreads over a thread pool is accounted for (clamped to the machine).
pub const PARALLEL_CORES: u32 = 4;

/// Defines [`TaskKind`], [`TaskKind::ALL`] and [`TaskKind::name`] from one list.
macro_rules! task_kinds {
    ($($(#[doc = $doc:literal])+ $kind:ident,)+) => {
        /// A type of task the scheduler runs.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum TaskKind {
            $($(#[doc = $doc])+ $kind,)+
        }

        impl TaskKind {
            /// Every kind, sealing phases first, in pipeline order.
            pub const ALL: &'static [TaskKind] = &[$(TaskKind::$kind,)+];

            /// The kind's name, as the configuration and the API write it (the variant's name).
            pub fn name(self) -> &'static str {
                match self {
                    $(TaskKind::$kind => stringify!($kind),)+
                }
            }
        }
    };
}

task_kinds! {
    /// PreCommit1: tree D and the SDR layers.
    PreCommit1,
    /// PreCommit2: columns, tree C, the replica, tree R.
    PreCommit2,
    /// Commit1: the vanilla PoRep proof.
    Commit1,
    /// Commit2: the Groth16 PoRep proof.
    Commit2,
    /// Finalize: what proving does not need is deleted.
    Finalize,
    /// A deadline's Window PoSt (time-sensitive).
    WindowPost,
    /// An election's Winning PoSt (time-sensitive).
    WinningPost,
}

impl TaskKind {
    /// The task that does the work of a sector in `state`, for the states whose work is a
    /// CPU-heavy sealing phase.
    pub fn for_state(state: SectorState) -> Option<TaskKind> {
        Some(match state {
            SectorState::PreCommit1 => TaskKind::PreCommit1,
            SectorState::PreCommit2 => TaskKind::PreCommit2,
            SectorState::Commit1 => TaskKind::Commit1,
            SectorState::Commit2 => TaskKind::Commit2,
            SectorState::Finalize => TaskKind::Finalize,
            _ => return None,
        })
    }

    /// The sector state whose work this kind does (`None` for the PoSt kinds).
    pub fn state(self) -> Option<SectorState> {
        Some(match self {
            TaskKind::PreCommit1 => SectorState::PreCommit1,
            TaskKind::PreCommit2 => SectorState::PreCommit2,
            TaskKind::Commit1 => SectorState::Commit1,
            TaskKind::Commit2 => SectorState::Commit2,
            TaskKind::Finalize => SectorState::Finalize,
            TaskKind::WindowPost | TaskKind::WinningPost => return None,
        })
    }

    /// Whether a task of this kind, run on a cluster's worker, leaves its sector's files there (so
    /// that finishing it records the worker in the sector location index): the sealing phases
    /// that write into the sector and cache directories, and Finalize (which runs on a worker only
    /// when the workers keep their sectors). Commit2 reads only Commit1's output.
    pub fn leaves_files(self) -> bool {
        matches!(
            self,
            TaskKind::PreCommit1 | TaskKind::PreCommit2 | TaskKind::Commit1 | TaskKind::Finalize
        )
    }

    /// Whether a deadline hangs on it: admitted before any sealing task, never held back by one.
    pub fn is_time_sensitive(self) -> bool {
        matches!(self, TaskKind::WindowPost | TaskKind::WinningPost)
    }

    /// The kind's short name, as `lode worker run --tasks` takes it (`pc1`, `pc2`, `c1`, `c2`,
    /// `finalize`, `wdpost`, `wnpost`).
    pub fn flag(self) -> &'static str {
        match self {
            TaskKind::PreCommit1 => "pc1",
            TaskKind::PreCommit2 => "pc2",
            TaskKind::Commit1 => "c1",
            TaskKind::Commit2 => "c2",
            TaskKind::Finalize => "finalize",
            TaskKind::WindowPost => "wdpost",
            TaskKind::WinningPost => "wnpost",
        }
    }

    /// The kind whose short name ([`TaskKind::flag`]) is `flag`.
    pub fn from_flag(flag: &str) -> Option<TaskKind> {
        TaskKind::ALL.iter().copied().find(|k| k.flag() == flag)
    }

    /// The kind named `name` (as [`TaskKind::name`] writes it).
    pub fn from_name(name: &str) -> Option<TaskKind> {
        TaskKind::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// The index of the kind in [`TaskKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// What the kind declares for sectors of `size`, failures retried by `retry`.
    pub fn details(self, size: SectorSize, retry: RetryPolicy) -> TaskDetails {
        let from_phase = |phase: Phase, cores: u32| {
            let f = capacity::figures(size, phase, 0);
            Resources {
                cores,
                memory: f.memory.map_or(0, |m| m.bytes),
                gpus: 0,
                scratch: f.sector_bytes().saturating_add(f.cache_bytes()),
            }
        };
        let resources = match self {
            TaskKind::PreCommit1 => from_phase(Phase::PreCommit1, 1),
            TaskKind::PreCommit2 => from_phase(Phase::PreCommit2, PARALLEL_CORES),
            TaskKind::Commit1 => from_phase(Phase::Commit1, 1),
            TaskKind::Commit2 => from_phase(Phase::Commit2, PARALLEL_CORES),
            TaskKind::Finalize => from_phase(Phase::Finalize, 1),
            TaskKind::WindowPost | TaskKind::WinningPost => Resources {
                cores: 1,
                ..Resources::ZERO
            },
        };
        TaskDetails {
            kind: self,
            resources,
            time_sensitive: self.is_time_sensitive(),
            // A PoSt is not retried by the scheduler: its caller proves again while the
            // deadline (or the election) is still open.
            retry: (!self.is_time_sensitive()).then_some(retry),
        }
    }
}

impl std::fmt::Display for TaskKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a task holds while it runs (or what a machine has).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    /// CPU cores.
    pub cores: u32,
    /// Bytes of memory.
    pub memory: u64,
    /// GPUs.
    pub gpus: u32,
    /// Bytes of scratch disk.
    pub scratch: u64,
}

impl Resources {
    /// Nothing.
    pub const ZERO: Resources = Resources {
        cores: 0,
        memory: 0,
        gpus: 0,
        scratch: 0,
    };

    /// Without limit (what an undetected figure stands for).
    pub const UNLIMITED: Resources = Resources {
        cores: u32::MAX,
        memory: u64::MAX,
        gpus: u32::MAX,
        scratch: u64::MAX,
    };

    /// The sum, saturating.
    pub fn plus(&self, o: &Resources) -> Resources {
        Resources {
            cores: self.cores.saturating_add(o.cores),
            memory: self.memory.saturating_add(o.memory),
            gpus: self.gpus.saturating_add(o.gpus),
            scratch: self.scratch.saturating_add(o.scratch),
        }
    }

    /// The difference, saturating at zero.
    pub fn minus(&self, o: &Resources) -> Resources {
        Resources {
            cores: self.cores.saturating_sub(o.cores),
            memory: self.memory.saturating_sub(o.memory),
            gpus: self.gpus.saturating_sub(o.gpus),
            scratch: self.scratch.saturating_sub(o.scratch),
        }
    }

    /// Each figure at most `o`'s.
    pub fn min(&self, o: &Resources) -> Resources {
        Resources {
            cores: self.cores.min(o.cores),
            memory: self.memory.min(o.memory),
            gpus: self.gpus.min(o.gpus),
            scratch: self.scratch.min(o.scratch),
        }
    }

    /// Whether every figure is at most `o`'s.
    pub fn fits_in(&self, o: &Resources) -> bool {
        self.cores <= o.cores
            && self.memory <= o.memory
            && self.gpus <= o.gpus
            && self.scratch <= o.scratch
    }
}

/// What a task type declares (Curio's `TypeDetails`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskDetails {
    /// The kind.
    pub kind: TaskKind,
    /// What it holds while it runs (before clamping to the machine).
    pub resources: Resources,
    /// Whether a deadline hangs on it.
    pub time_sensitive: bool,
    /// How its failures are retried (through the sector's state: [`crate::pipeline::state`]);
    /// `None`: not retried by the scheduler.
    pub retry: Option<RetryPolicy>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_states_and_back() {
        for &k in TaskKind::ALL {
            assert_eq!(TaskKind::ALL[k.index()], k);
            match k.state() {
                Some(s) => assert_eq!(TaskKind::for_state(s), Some(k)),
                None => assert!(k.is_time_sensitive()),
            }
        }
        assert_eq!(TaskKind::for_state(SectorState::SubmitPreCommit), None);
        for &k in TaskKind::ALL {
            assert_eq!(TaskKind::from_flag(k.flag()), Some(k));
        }
        assert_eq!(TaskKind::from_flag("pc3"), None);
    }

    #[test]
    fn sealing_figures_follow_the_sector_size() {
        let retry = RetryPolicy::default();
        let small = TaskKind::PreCommit1.details(SectorSize::S2KiB, retry);
        let big = TaskKind::PreCommit1.details(SectorSize::S32GiB, retry);
        // Two layers of labels in memory; every layer, tree D and the parent cache on disk.
        assert_eq!(big.resources.memory, 2 * (32 << 30));
        assert!(big.resources.scratch > 11 * (32u64 << 30));
        assert!(small.resources.scratch < big.resources.scratch);
        assert_eq!(big.retry, Some(retry));
        let post = TaskKind::WindowPost.details(SectorSize::S32GiB, retry);
        assert!(post.time_sensitive && post.retry.is_none());
        assert!(!big.time_sensitive);
    }

    #[test]
    fn resource_arithmetic_saturates() {
        let a = Resources {
            cores: 2,
            memory: 10,
            gpus: 0,
            scratch: 5,
        };
        assert_eq!(Resources::UNLIMITED.plus(&a), Resources::UNLIMITED);
        assert_eq!(a.minus(&Resources::UNLIMITED), Resources::ZERO);
        assert!(a.fits_in(&a) && !a.plus(&a).fits_in(&a));
        assert_eq!(Resources::UNLIMITED.min(&a), a);
    }
}
