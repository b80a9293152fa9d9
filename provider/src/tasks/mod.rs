//! The provider's task scheduler: every CPU-heavy sealing phase, and every PoSt, is a *task* of a
//! [`TaskKind`] that declares what it holds while it runs ([`Resources`]: cores, memory, GPUs,
//! scratch disk), how its failures are retried, and whether it is time-sensitive
//! ([`TaskDetails`], after Curio's HarmonyTask `TypeDetails`).
//!
//! - [`kind`]: the kinds and their figures (from [`lode_sealing::capacity`]);
//! - [`config`]: `[tasks]` of `config.toml` ([`SchedulerConfig`]): the machine, per-kind limits,
//!   the PoSt reserve, the history's retention;
//! - [`admit`]: the pure admission rule (time-sensitive first and never held back by sealing,
//!   then sealing oldest sector first, within resources and limits);
//! - [`store`]: the task records in the pipeline's sled database, fenced by claim tokens, a
//!   sector task's result and its sector's change in one transaction;
//! - [`scheduler`]: [`Scheduler`], the records plus the in-memory queue the pipeline and the
//!   poster go through, and the [`TaskView`] list the API shows.

pub mod admit;
pub mod config;
pub mod kind;
pub mod scheduler;
pub mod store;

pub use config::SchedulerConfig;
pub use kind::{Resources, TaskDetails, TaskKind};
pub use scheduler::{Claim, PostSlot, Scheduler};
pub use store::{SectorOutcome, TaskError, TaskRecord, TaskResult, TaskState, TaskStore, TaskView};
