//! `[tasks]` of the provider's `config.toml`: what the machine offers the scheduler, the per-kind
//! limits, the reserve for PoSt and how long finished tasks are kept.
//!
//! ```toml
//! [tasks]
//! cores = 32                 # default: the CPUs this process may use
//! memory = 274877906944      # bytes; default: the machine's total memory
//! gpus = 0
//! scratch = 4398046511104    # bytes; default: no limit (each phase checks its disk itself)
//! history_max_age_seconds = 604800
//! history_max_entries = 1000
//!
//! [tasks.limits]             # at most this many at once, per kind
//! PreCommit1 = 4
//! Commit2 = 1
//!
//! [tasks.post_reserve]       # what sealing may never take; default: one Window PoSt's needs
//! cores = 2
//! memory = 8589934592
//! ```

use serde::{Deserialize, Serialize};

use super::kind::{Resources, TaskKind};

/// The scheduler's configuration (`[tasks]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// Cores to schedule; default: [`std::thread::available_parallelism`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    /// Bytes of memory to schedule; default: `MemTotal` of `/proc/meminfo` (no limit where the
    /// system does not say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// GPUs to schedule.
    pub gpus: u32,
    /// Bytes of scratch disk to schedule; default: no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scratch: Option<u64>,
    /// At most this many tasks of a kind at once.
    pub limits: TaskLimits,
    /// What sealing tasks may never take, kept for PoSt; default: what one Window PoSt needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_reserve: Option<Reserve>,
    /// Finished tasks older than this many seconds are pruned from the history.
    pub history_max_age_seconds: u64,
    /// At most this many finished tasks are kept (the oldest pruned first).
    pub history_max_entries: u64,
}

/// The default [`SchedulerConfig::history_max_age_seconds`]: a week.
pub const HISTORY_MAX_AGE: u64 = 7 * 24 * 3600;
/// The default [`SchedulerConfig::history_max_entries`].
pub const HISTORY_MAX_ENTRIES: u64 = 1000;

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            cores: None,
            memory: None,
            gpus: 0,
            scratch: None,
            limits: TaskLimits::default(),
            post_reserve: None,
            history_max_age_seconds: HISTORY_MAX_AGE,
            history_max_entries: HISTORY_MAX_ENTRIES,
        }
    }
}

/// Per-kind limits (`[tasks.limits]`, keyed by the kind's name); a missing kind has none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct TaskLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_commit1: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_commit2: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit1: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit2: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finalize: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_post: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub winning_post: Option<u32>,
}

impl TaskLimits {
    /// The limit of `kind` (`None`: only resources limit it).
    pub fn get(&self, kind: TaskKind) -> Option<u32> {
        match kind {
            TaskKind::PreCommit1 => self.pre_commit1,
            TaskKind::PreCommit2 => self.pre_commit2,
            TaskKind::Commit1 => self.commit1,
            TaskKind::Commit2 => self.commit2,
            TaskKind::Finalize => self.finalize,
            TaskKind::WindowPost => self.window_post,
            TaskKind::WinningPost => self.winning_post,
        }
    }

    /// Sets the limit of `kind`.
    pub fn set(&mut self, kind: TaskKind, limit: Option<u32>) {
        let slot = match kind {
            TaskKind::PreCommit1 => &mut self.pre_commit1,
            TaskKind::PreCommit2 => &mut self.pre_commit2,
            TaskKind::Commit1 => &mut self.commit1,
            TaskKind::Commit2 => &mut self.commit2,
            TaskKind::Finalize => &mut self.finalize,
            TaskKind::WindowPost => &mut self.window_post,
            TaskKind::WinningPost => &mut self.winning_post,
        };
        *slot = limit;
    }
}

/// Resources kept for time-sensitive tasks (`[tasks.post_reserve]`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Reserve {
    /// Cores.
    pub cores: u32,
    /// Bytes of memory.
    pub memory: u64,
    /// GPUs.
    pub gpus: u32,
}

/// The machine as the admission sees it: everything, and the part sealing may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// What time-sensitive tasks may use (everything).
    pub total: Resources,
    /// What sealing tasks may use: `total` less the PoSt reserve.
    pub sealing: Resources,
}

impl Capacity {
    /// `total` with `reserve` kept from sealing; the reserve leaves sealing at least one core,
    /// so sealing is never starved by the configuration (on a one-core machine nothing is
    /// reserved: a PoSt waits for the running sealing task, sealing admission paused meanwhile).
    pub fn new(total: Resources, reserve: Resources) -> Self {
        let mut reserve = reserve.min(&total);
        reserve.cores = reserve.cores.min(total.cores.saturating_sub(1));
        Capacity {
            total,
            sealing: total.minus(&reserve),
        }
    }
}

impl SchedulerConfig {
    /// What the machine offers: the configured figures, else the detected ones.
    pub fn total(&self) -> Resources {
        Resources {
            cores: self.cores.unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
            }),
            memory: self.memory.or_else(detect_memory).unwrap_or(u64::MAX),
            gpus: self.gpus,
            scratch: self.scratch.unwrap_or(u64::MAX),
        }
    }

    /// The capacity, the reserve defaulting to `post` (what one Window PoSt needs).
    pub fn capacity(&self, post: Resources) -> Capacity {
        let reserve = match self.post_reserve {
            Some(r) => Resources {
                cores: r.cores,
                memory: r.memory,
                gpus: r.gpus,
                scratch: 0,
            },
            None => Resources { scratch: 0, ..post },
        };
        Capacity::new(self.total(), reserve)
    }
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
pub fn detect_memory() -> Option<u64> {
    parse_mem_total(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
pub fn parse_mem_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line.split_whitespace().skip(1);
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct File {
        tasks: SchedulerConfig,
    }

    #[test]
    fn the_tasks_section_parses_with_defaults() {
        let f: File = toml::from_str(
            "[tasks]\ncores = 8\nhistory_max_entries = 10\n[tasks.limits]\nPreCommit1 = 1\nCommit2 = 2\n[tasks.post_reserve]\ncores = 2\n",
        )
        .unwrap();
        let c = f.tasks;
        assert_eq!(c.cores, Some(8));
        assert_eq!(c.limits.get(TaskKind::PreCommit1), Some(1));
        assert_eq!(c.limits.get(TaskKind::Commit2), Some(2));
        assert_eq!(c.limits.get(TaskKind::PreCommit2), None);
        assert_eq!(
            (c.history_max_entries, c.history_max_age_seconds),
            (10, HISTORY_MAX_AGE)
        );
        let cap = c.capacity(Resources::ZERO);
        assert_eq!((cap.total.cores, cap.sealing.cores), (8, 6));
        assert_eq!(cap.total.scratch, u64::MAX);
        // Defaults: detected cores, no GPU.
        let d = SchedulerConfig::default();
        assert!(d.total().cores >= 1);
        assert_eq!(d.total().gpus, 0);
        assert_eq!(d.history_max_entries, HISTORY_MAX_ENTRIES);
        // Round trip through the file format.
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<SchedulerConfig>(&text).unwrap(), c);
    }

    #[test]
    fn malformed_values_name_the_field() {
        for (text, field) in [
            ("[tasks]\ncores = \"many\"\n", "cores"),
            ("[tasks]\ncpus = 4\n", "cpus"),
            ("[tasks.limits]\nPreCommit3 = 1\n", "PreCommit3"),
            ("[tasks.limits]\nPreCommit1 = -1\n", "PreCommit1"),
            ("[tasks.post_reserve]\nmemory = 1.5\n", "memory"),
            (
                "[tasks]\nhistory_max_age_seconds = \"a week\"\n",
                "history_max_age_seconds",
            ),
        ] {
            let err = toml::from_str::<File>(text).unwrap_err().to_string();
            assert!(err.contains(field), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_provider_config_carries_the_tasks_section() {
        use crate::run::ProviderSettings;
        let base = "actor = \"l01000\"\nnode_api = \"http://127.0.0.1:1234\"\nnode_token_file = \"t\"\nparams_dir = \"p\"\n";
        let s: ProviderSettings = toml::from_str(base).unwrap();
        assert_eq!(s.tasks, SchedulerConfig::default());
        let s: ProviderSettings = toml::from_str(&format!(
            "{base}[tasks]\ngpus = 1\n[tasks.limits]\nCommit2 = 1\n"
        ))
        .unwrap();
        assert_eq!(
            (s.tasks.gpus, s.tasks.limits.get(TaskKind::Commit2)),
            (1, Some(1))
        );
        // Saved and loaded again, unchanged.
        let again: ProviderSettings = toml::from_str(&toml::to_string_pretty(&s).unwrap()).unwrap();
        assert_eq!(again, s);
        let err = toml::from_str::<ProviderSettings>(&format!("{base}[tasks]\ngpus = \"one\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("gpus"), "{err}");
    }

    #[test]
    fn the_reserve_leaves_sealing_a_core() {
        let total = Resources {
            cores: 4,
            memory: 100,
            gpus: 1,
            scratch: 1000,
        };
        let all = Capacity::new(total, Resources::UNLIMITED);
        assert_eq!(all.sealing.cores, 1);
        assert_eq!((all.sealing.memory, all.sealing.gpus), (0, 0));
        let one = Capacity::new(Resources { cores: 1, ..total }, Resources::UNLIMITED);
        assert_eq!(one.sealing.cores, 1);
        assert_eq!(
            parse_mem_total("MemTotal:       131072000 kB\nMemFree: 1 kB\n"),
            Some(131_072_000 * 1024)
        );
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
    }
}
