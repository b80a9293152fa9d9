//! The sector pipeline: each sector's way from creation to `Proving`, as a persisted state
//! machine.
//!
//! - [`state`]: the states, the events that move a sector between them, bounded retries with
//!   back-off, and the one pure function that applies an event ([`state::transition`]);
//! - [`store`]: the sector records, changed by compare-and-swap on a version that fences stale
//!   workers, durable before a change is reported; [`kv`]: where the records live (the
//!   provider's sled database, or the cluster's PostgreSQL database);
//! - [`storage`]: where a sector's files live (sealing scratch, then long-term storage), the
//!   crash-safe move between them at Finalize, and the room a new sector needs before it starts;
//! - [`params`]: the PoRep parameters, loaded by the first Commit2 rather than at start;
//! - [`deals`]: deal pieces: the market's hand-over, where each piece goes in a deal sector, and
//!   their records (the driver's deal steps are in `intake.rs`); [`reader`]: reading a piece's payload back for retrieval (from the unsealed
//!   copy, or unsealing the sector first);
//! - [`remote`]: the sealing phases of committed-capacity sectors on a cluster's workers, and
//!   Finalize fetching their files from there;
//! - [`runner`]: the driver that does each state's work (sealing phases, idempotent chain steps)
//!   and applies what came of it, once per epoch.

pub mod deals;
mod intake;
pub mod kv;
pub mod params;
pub mod reader;
pub mod remote;
pub mod runner;
pub mod state;
pub mod storage;
pub mod store;

pub use deals::{DealPiece, DealPieceInfo, DealPieceRecord, PieceState};
pub use reader::{PieceLocation, PieceReader};
pub use state::{Event, RetryPolicy, SectorProgress, SectorState};
pub use store::{
    PipelineError, PipelineResult, PipelineStore, SectorChain, SectorKind, SectorRecord,
    SentMessage,
};
