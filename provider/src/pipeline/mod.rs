//! The sector pipeline: each sector's way from creation to `Proving`, as a persisted state
//! machine.
//!
//! - [`state`]: the states, the events that move a sector between them, bounded retries with
//!   back-off, and the one pure function that applies an event ([`state::transition`]);
//! - [`store`]: the records in the provider's sled database, changed by compare-and-swap on a
//!   version that fences stale workers, durable before a change is reported;
//! - [`storage`]: where a sector's files live (sealing scratch, then long-term storage), the
//!   crash-safe move between them at Finalize, and the room a new sector needs before it starts;
//! - [`params`]: the PoRep parameters, loaded by the first Commit2 rather than at start;
//! - [`runner`]: the driver that does each state's work (sealing phases, idempotent chain steps)
//!   and applies what came of it, once per epoch.

pub mod params;
pub mod runner;
pub mod state;
pub mod storage;
pub mod store;

pub use state::{Event, RetryPolicy, SectorProgress, SectorState};
pub use store::{
    PipelineError, PipelineResult, PipelineStore, SectorChain, SectorKind, SectorRecord,
    SentMessage,
};
