//! The sector pipeline's states and the one function that moves a sector between them.
//!
//! A sector is in exactly one [`SectorState`]. The daemon runs the work of a *working* state (a
//! sealing phase, or a chain step: sending a message and waiting for it to land) and reports how it
//! ended as an [`Event`]; [`transition`] gives the next state, or refuses an event that does not
//! belong to the state (the record is then left as it was). Nothing here does I/O or reads a
//! clock: the time of an event comes with it.
//!
//! ```text
//! WaitDeals → Packing → PreCommit1 → PreCommit2 → SubmitPreCommit → PreCommitLanded → WaitSeed
//!   → Commit1 → Commit2 → SubmitProveCommit → ProveCommitLanded → Finalize → Proving
//! ```
//!
//! A phase that fails moves to its failure state with the reason recorded
//! (`AddPieceFailed`, `SealPreCommit1Failed`, `SealPreCommit2Failed`, `PreCommitFailed`,
//! `ComputeProofFailed`, `CommitFailed`, `FinalizeFailed`) and a time before which it is not
//! retried (exponential back-off, [`RetryPolicy`]); [`Event::Retry`] moves it back to the phase,
//! or [`Event::Redo`] to an earlier one when what the phase consumes is gone (`CommitFailed` →
//! `Commit1`: a proof the chain refused as invalid is computed again, not resent).
//! A failure past the policy's retries, or one that cannot be retried (a pre-commit that expired
//! on chain: its deposit is gone), moves it to `FailedUnrecoverable` **in the same transition**, so
//! no sector waits silently forever. `Removing → Removed` and `Terminating → Terminated` are the
//! operator's way out; `Removed` and `Terminated` are final.
//!
//! A deal sector whose pieces changed before its pre-commit reached the chain (a deal dropped: its
//! start epoch too close, the chain refused it, its payload damaged) goes back to `WaitDeals`
//! ([`Event::Repack`]) from any state between `Packing` and `SubmitPreCommit` (their failure
//! states included): its data is written again from the pieces left, and sealed again.

use serde::{Deserialize, Serialize};

/// Defines [`SectorState`], [`ALL_STATES`] and [`SectorState::name`] from one list, so that a
/// state's name is written once.
macro_rules! sector_states {
    ($($(#[doc = $doc:literal])+ $state:ident,)+) => {
        /// Where a sector is in the pipeline.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum SectorState {
            $($(#[doc = $doc])+ $state,)+
        }

        /// Every state, in pipeline order then failures, then the way out.
        pub const ALL_STATES: &[SectorState] = &[$(SectorState::$state,)+];

        impl SectorState {
            /// The state's name as the CLI and API write it (the variant's name).
            pub fn name(self) -> &'static str {
                match self {
                    $(SectorState::$state => stringify!($state),)+
                }
            }
        }
    };
}

sector_states! {
    /// Created; waiting for deals (or, for a pledged sector, for packing to start).
    WaitDeals,
    /// AddPiece: the sector's pieces (or zeros, for committed capacity) are written.
    Packing,
    /// PreCommit1: the SDR layers are labelled.
    PreCommit1,
    /// PreCommit2: the column and replica trees are built, `comm_r` computed.
    PreCommit2,
    /// The pre-commit message is sent (unless the chain has it already) and awaited.
    SubmitPreCommit,
    /// The pre-commit is on chain.
    PreCommitLanded,
    /// Waiting for the interactive seed's epoch.
    WaitSeed,
    /// Commit1: the vanilla PoRep proofs.
    Commit1,
    /// Commit2: the Groth16 proof.
    Commit2,
    /// The prove-commit message is sent (unless the chain has the sector already) and awaited.
    SubmitProveCommit,
    /// The sector is on chain.
    ProveCommitLanded,
    /// The scratch files are cleaned up and the sealed sector moved to long-term storage.
    Finalize,
    /// Done: the sector is proven every deadline.
    Proving,
    /// AddPiece failed.
    AddPieceFailed,
    /// PreCommit1 failed.
    SealPreCommit1Failed,
    /// PreCommit2 failed.
    SealPreCommit2Failed,
    /// The pre-commit message failed or was refused.
    PreCommitFailed,
    /// Commit1 or Commit2 failed.
    ComputeProofFailed,
    /// The prove-commit message failed or was refused.
    CommitFailed,
    /// Finalize failed.
    FinalizeFailed,
    /// Out of retries, or failed for good: the reason says why. Only removal leaves it.
    FailedUnrecoverable,
    /// The operator asked for removal: the sector's files are being deleted.
    Removing,
    /// Removed (final).
    Removed,
    /// The operator asked for early termination on chain.
    Terminating,
    /// Terminated on chain (final).
    Terminated,
}

impl SectorState {
    /// The state named `name` (as [`SectorState::name`] writes it, any case).
    pub fn from_name(name: &str) -> Option<Self> {
        ALL_STATES
            .iter()
            .copied()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// The next state of a working state whose work is done (`None` for others).
    pub fn next(self) -> Option<Self> {
        use SectorState::*;
        Some(match self {
            WaitDeals => Packing,
            Packing => PreCommit1,
            PreCommit1 => PreCommit2,
            PreCommit2 => SubmitPreCommit,
            SubmitPreCommit => PreCommitLanded,
            PreCommitLanded => WaitSeed,
            WaitSeed => Commit1,
            Commit1 => Commit2,
            Commit2 => SubmitProveCommit,
            SubmitProveCommit => ProveCommitLanded,
            ProveCommitLanded => Finalize,
            Finalize => Proving,
            Removing => Removed,
            Terminating => Terminated,
            _ => return None,
        })
    }

    /// Where a failure of this working state goes (`None`: it cannot fail).
    pub fn failure(self) -> Option<Self> {
        use SectorState::*;
        Some(match self {
            Packing => AddPieceFailed,
            PreCommit1 => SealPreCommit1Failed,
            PreCommit2 => SealPreCommit2Failed,
            SubmitPreCommit | PreCommitLanded | WaitSeed => PreCommitFailed,
            Commit1 | Commit2 => ComputeProofFailed,
            SubmitProveCommit | ProveCommitLanded => CommitFailed,
            Finalize => FinalizeFailed,
            _ => return None,
        })
    }

    /// The working state a failure state retries (`None` for others).
    pub fn retries(self) -> Option<Self> {
        use SectorState::*;
        Some(match self {
            AddPieceFailed => Packing,
            SealPreCommit1Failed => PreCommit1,
            SealPreCommit2Failed => PreCommit2,
            PreCommitFailed => SubmitPreCommit,
            // Commit1 is cheap next to Commit2 and its output may be what failed.
            ComputeProofFailed => Commit1,
            CommitFailed => SubmitProveCommit,
            FinalizeFailed => Finalize,
            _ => return None,
        })
    }

    /// The earlier working state a failure state goes back to when what its phase consumes is
    /// gone ([`Event::Redo`]): `CommitFailed` → `Commit1` when there is no proof to send (the
    /// chain refused it as invalid and its stale outputs were deleted, or it cannot be read), so
    /// the vanilla and Groth16 proofs are computed again rather than the same bad proof resent;
    /// `SealPreCommit2Failed` → `PreCommit1` when the layers are lost (the cluster's worker
    /// holding them is gone), so the sector is labelled again.
    pub fn redoes(self) -> Option<Self> {
        use SectorState::*;
        Some(match self {
            CommitFailed => Commit1,
            SealPreCommit2Failed => PreCommit1,
            _ => return None,
        })
    }

    /// Whether a deal sector in this state may go back to `WaitDeals` to be packed again
    /// ([`Event::Repack`]): its data is written but its pre-commit is not on chain yet.
    pub fn repacks(self) -> bool {
        use SectorState::*;
        matches!(
            self,
            Packing
                | PreCommit1
                | PreCommit2
                | SubmitPreCommit
                | AddPieceFailed
                | SealPreCommit1Failed
                | SealPreCommit2Failed
                | PreCommitFailed
        )
    }

    /// Whether the daemon has work to do in this state.
    pub fn is_working(self) -> bool {
        self.next().is_some()
    }

    /// Whether this is a failure state that a retry leaves.
    pub fn is_retryable_failure(self) -> bool {
        self.retries().is_some()
    }

    /// Whether nothing ever leaves this state.
    pub fn is_final(self) -> bool {
        matches!(self, SectorState::Removed | SectorState::Terminated)
    }

    /// Whether the sector is on chain (prove-committed), so that leaving the pipeline means a
    /// termination rather than a removal.
    pub fn is_on_chain(self) -> bool {
        use SectorState::*;
        matches!(
            self,
            ProveCommitLanded | Finalize | FinalizeFailed | Proving | Terminating | Terminated
        )
    }
}

impl std::fmt::Display for SectorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Bounded retries with exponential back-off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Failures of one phase before the sector is failed for good.
    pub max_retries: u32,
    /// The first back-off, seconds.
    pub base_seconds: u64,
    /// The longest back-off, seconds.
    pub max_seconds: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            base_seconds: 10,
            max_seconds: 3600,
        }
    }
}

impl RetryPolicy {
    /// The back-off after failure number `failures` (1 for the first): `base × 2^(failures−1)`,
    /// at most `max_seconds`.
    pub fn backoff(&self, failures: u32) -> u64 {
        let doublings = failures.saturating_sub(1).min(63);
        self.base_seconds
            .saturating_mul(1u64 << doublings)
            .min(self.max_seconds)
    }
}

/// How a piece of work ended, or what the operator asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// The work of the current working state is done.
    Done,
    /// The work of the current working state failed: `retry: false` for a failure no retry can
    /// mend (the sector then fails for good).
    Failed {
        /// What went wrong, for the operator.
        reason: String,
        /// Whether a retry may succeed.
        retry: bool,
    },
    /// A failure state's back-off has passed: try the phase again.
    Retry,
    /// The operator removes the sector (not on chain yet, or failed).
    Remove,
    /// The operator terminates the sector on chain.
    Terminate,
    /// A failure state's back-off has passed, but what its phase consumes is gone: go back to
    /// the earlier phase that makes it ([`SectorState::redoes`]).
    Redo,
    /// A deal sector's pieces changed before its pre-commit reached the chain: back to
    /// `WaitDeals`, its data to be written again ([`SectorState::repacks`]).
    Repack {
        /// Why (the deals dropped, for the operator).
        reason: String,
    },
}

/// Why an event was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The event has no meaning in the state.
    #[error("sector in {state}: {event} does not apply (it applies to {applies_to})")]
    NotApplicable {
        /// The state.
        state: SectorState,
        /// The event's name.
        event: &'static str,
        /// Where it would apply.
        applies_to: &'static str,
    },
    /// A retry before the back-off has passed.
    #[error("sector in {state}: not retried before unix time {retry_at} (now {now})")]
    TooEarly {
        /// The state.
        state: SectorState,
        /// When the retry is due.
        retry_at: u64,
        /// The event's time.
        now: u64,
    },
}

/// What the pipeline keeps of a sector's progress (the sealing outputs live in its sector
/// directory; this is the state and its history).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorProgress {
    /// The state.
    pub state: SectorState,
    /// Failures of the phase being retried (reset when a phase completes).
    pub failures: u32,
    /// The last failure's reason (kept after a retry, for the operator).
    pub last_error: Option<String>,
    /// Unix time before which a failure state is not retried.
    pub retry_at: Option<u64>,
    /// Unix time of the last change.
    pub updated_at: u64,
    /// The last transitions, oldest first (at most [`HISTORY`]).
    pub history: Vec<HistoryEntry>,
}

/// How many transitions a sector remembers.
pub const HISTORY: usize = 32;

/// One transition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Unix time.
    pub at: u64,
    /// From.
    pub from: SectorState,
    /// To.
    pub to: SectorState,
    /// Why (a failure's reason, or the event).
    pub note: String,
}

impl SectorProgress {
    /// A new sector, at unix time `now`.
    pub fn new(now: u64) -> Self {
        SectorProgress {
            state: SectorState::WaitDeals,
            failures: 0,
            last_error: None,
            retry_at: None,
            updated_at: now,
            history: Vec::new(),
        }
    }
}

fn event_name(e: &Event) -> &'static str {
    match e {
        Event::Done => "Done",
        Event::Failed { .. } => "Failed",
        Event::Retry => "Retry",
        Event::Remove => "Remove",
        Event::Terminate => "Terminate",
        Event::Redo => "Redo",
        Event::Repack { .. } => "Repack",
    }
}

/// The progress after `event` at unix time `now`, or why the event does not apply (the
/// progress is then unchanged: the caller keeps the old record).
pub fn transition(
    p: &SectorProgress,
    event: &Event,
    now: u64,
    policy: &RetryPolicy,
) -> Result<SectorProgress, TransitionError> {
    use SectorState::*;
    let state = p.state;
    let not = |applies_to| TransitionError::NotApplicable {
        state,
        event: event_name(event),
        applies_to,
    };
    let mut out = p.clone();
    out.retry_at = None;
    let note: String;
    match event {
        Event::Done => {
            let Some(next) = state.next() else {
                return Err(not("working states"));
            };
            out.state = next;
            out.failures = 0;
            note = "done".into();
        }
        Event::Failed { reason, retry } => {
            let Some(failed) = state.failure() else {
                return Err(not("states with a phase that can fail"));
            };
            out.failures = p.failures.saturating_add(1);
            out.last_error = Some(reason.clone());
            if !retry || out.failures > policy.max_retries {
                out.state = FailedUnrecoverable;
                note = if *retry {
                    format!("{reason} (after {} failures: out of retries)", out.failures)
                } else {
                    reason.clone()
                };
            } else {
                out.state = failed;
                out.retry_at = Some(now.saturating_add(policy.backoff(out.failures)));
                note = reason.clone();
            }
        }
        Event::Retry | Event::Redo => {
            let again = if matches!(event, Event::Redo) {
                state.redoes()
            } else {
                state.retries()
            };
            let Some(again) = again else {
                return Err(not(if matches!(event, Event::Redo) {
                    "failure states that go back to an earlier phase"
                } else {
                    "failure states that can be retried"
                }));
            };
            if let Some(at) = p.retry_at
                && now < at
            {
                return Err(TransitionError::TooEarly {
                    state,
                    retry_at: at,
                    now,
                });
            }
            out.state = again;
            note = if matches!(event, Event::Redo) {
                format!("retry {} from {again}", p.failures)
            } else {
                format!("retry {}", p.failures)
            };
        }
        Event::Remove => {
            if state.is_on_chain() || state.is_final() || matches!(state, Removing) {
                return Err(not("sectors not on chain (terminate those)"));
            }
            out.state = Removing;
            note = "removal asked".into();
        }
        Event::Terminate => {
            if !state.is_on_chain() || matches!(state, Terminating | Terminated) {
                return Err(not("sectors on chain (remove the others)"));
            }
            out.state = Terminating;
            note = "termination asked".into();
        }
        Event::Repack { reason } => {
            if !state.repacks() {
                return Err(not(
                    "sectors between Packing and a pre-commit not yet on chain",
                ));
            }
            out.state = WaitDeals;
            out.failures = 0;
            out.last_error = Some(reason.clone());
            note = format!("repacked: {reason}");
        }
    }
    out.updated_at = now;
    out.history.push(HistoryEntry {
        at: now,
        from: state,
        to: out.state,
        note,
    });
    if out.history.len() > HISTORY {
        let extra = out.history.len().saturating_sub(HISTORY);
        out.history.drain(..extra);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use SectorState::*;
    use proptest::prelude::*;

    const PIPELINE: [SectorState; 13] = [
        WaitDeals,
        Packing,
        PreCommit1,
        PreCommit2,
        SubmitPreCommit,
        PreCommitLanded,
        WaitSeed,
        Commit1,
        Commit2,
        SubmitProveCommit,
        ProveCommitLanded,
        Finalize,
        Proving,
    ];

    #[test]
    fn done_walks_the_pipeline_to_proving() {
        let policy = RetryPolicy::default();
        let mut p = SectorProgress::new(0);
        for (i, want) in PIPELINE.iter().enumerate().skip(1) {
            p = transition(&p, &Event::Done, i as u64, &policy).unwrap();
            assert_eq!(p.state, *want);
        }
        assert!(transition(&p, &Event::Done, 99, &policy).is_err());
        assert_eq!(p.history.len(), PIPELINE.len() - 1);
        assert_eq!(p.history[0].from, WaitDeals);
    }

    #[test]
    fn names_round_trip() {
        for &s in ALL_STATES {
            assert_eq!(SectorState::from_name(s.name()), Some(s));
            assert_eq!(SectorState::from_name(&s.name().to_lowercase()), Some(s));
        }
        assert_eq!(SectorState::from_name("Sealing"), None);
    }

    #[test]
    fn failures_back_off_then_fail_for_good_in_the_same_transition() {
        let policy = RetryPolicy {
            max_retries: 2,
            base_seconds: 10,
            max_seconds: 15,
        };
        let mut p = SectorProgress::new(0);
        p.state = PreCommit1;
        let fail = Event::Failed {
            reason: "disk".into(),
            retry: true,
        };
        p = transition(&p, &fail, 100, &policy).unwrap();
        assert_eq!(
            (p.state, p.failures, p.retry_at),
            (SealPreCommit1Failed, 1, Some(110))
        );
        let early = transition(&p, &Event::Retry, 109, &policy).unwrap_err();
        assert!(matches!(
            early,
            TransitionError::TooEarly { retry_at: 110, .. }
        ));
        p = transition(&p, &Event::Retry, 110, &policy).unwrap();
        assert_eq!(p.state, PreCommit1);
        p = transition(&p, &fail, 200, &policy).unwrap();
        // Second failure: 20 s capped at 15.
        assert_eq!((p.state, p.retry_at), (SealPreCommit1Failed, Some(215)));
        p = transition(&p, &Event::Retry, 215, &policy).unwrap();
        p = transition(&p, &fail, 300, &policy).unwrap();
        assert_eq!(p.state, FailedUnrecoverable);
        assert_eq!(p.last_error.as_deref(), Some("disk"));
        assert!(p.history.last().unwrap().note.contains("out of retries"));
        // A failure no retry mends fails at once.
        let mut q = SectorProgress::new(0);
        q.state = WaitSeed;
        let q = transition(
            &q,
            &Event::Failed {
                reason: "pre-commit expired".into(),
                retry: false,
            },
            1,
            &policy,
        )
        .unwrap();
        assert_eq!(q.state, FailedUnrecoverable);
        // A completed phase forgets its failures.
        let mut r = SectorProgress::new(0);
        r.state = PreCommit2;
        r = transition(&r, &fail, 0, &policy).unwrap();
        r = transition(&r, &Event::Retry, 100, &policy).unwrap();
        r = transition(&r, &Event::Done, 101, &policy).unwrap();
        assert_eq!((r.state, r.failures), (SubmitPreCommit, 0));
        assert_eq!(r.last_error.as_deref(), Some("disk"));
    }

    #[test]
    fn redo_takes_a_failed_prove_commit_back_to_commit1_after_its_back_off() {
        let policy = RetryPolicy::default();
        let mut p = SectorProgress::new(0);
        p.state = SubmitProveCommit;
        let fail = Event::Failed {
            reason: "InvalidProof".into(),
            retry: true,
        };
        p = transition(&p, &fail, 100, &policy).unwrap();
        assert_eq!((p.state, p.retry_at), (CommitFailed, Some(110)));
        assert!(matches!(
            transition(&p, &Event::Redo, 109, &policy).unwrap_err(),
            TransitionError::TooEarly { .. }
        ));
        let q = transition(&p, &Event::Redo, 110, &policy).unwrap();
        assert_eq!((q.state, q.failures), (Commit1, 1));
        assert!(q.history.last().unwrap().note.contains("from Commit1"));
        // Plain retry still resends.
        assert_eq!(
            transition(&p, &Event::Retry, 110, &policy).unwrap().state,
            SubmitProveCommit
        );
        // Only CommitFailed and SealPreCommit2Failed go back.
        for &s in ALL_STATES {
            let mut r = SectorProgress::new(0);
            r.state = s;
            assert_eq!(
                transition(&r, &Event::Redo, 1, &policy).is_ok(),
                matches!(s, CommitFailed | SealPreCommit2Failed),
                "{s}"
            );
        }
    }

    #[test]
    fn removal_before_the_chain_and_termination_after() {
        let policy = RetryPolicy::default();
        for &s in ALL_STATES {
            let mut p = SectorProgress::new(0);
            p.state = s;
            let removed = transition(&p, &Event::Remove, 1, &policy);
            let terminated = transition(&p, &Event::Terminate, 1, &policy);
            if s.is_final() {
                assert!(removed.is_err() && terminated.is_err(), "{s}");
            } else if s.is_on_chain() {
                assert!(removed.is_err(), "{s}");
                assert_eq!(terminated.is_ok(), s != Terminating, "{s}: {terminated:?}");
            } else {
                assert!(terminated.is_err(), "{s}");
                assert_eq!(removed.is_ok(), s != Removing, "{s}");
            }
        }
    }

    #[test]
    fn repack_takes_a_deal_sector_back_to_wait_deals_before_its_pre_commit_lands() {
        let policy = RetryPolicy::default();
        let repack = Event::Repack {
            reason: "deal 4 dropped".into(),
        };
        for &s in ALL_STATES {
            let mut p = SectorProgress::new(0);
            p.state = s;
            p.failures = 2;
            p.retry_at = Some(1_000);
            match transition(&p, &repack, 5, &policy) {
                Ok(q) => {
                    assert!(s.repacks(), "{s}");
                    assert_eq!((q.state, q.failures, q.retry_at), (WaitDeals, 0, None));
                    assert_eq!(q.last_error.as_deref(), Some("deal 4 dropped"));
                    assert!(q.history.last().unwrap().note.contains("repacked"));
                }
                Err(_) => assert!(!s.repacks(), "{s}"),
            }
        }
        // Never once the pre-commit may be on chain.
        for s in [PreCommitLanded, WaitSeed, Commit1, Proving, WaitDeals] {
            assert!(!s.repacks(), "{s}");
        }
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            4 => Just(Event::Done),
            2 => any::<bool>().prop_map(|retry| Event::Failed { reason: "x".into(), retry }),
            2 => Just(Event::Retry),
            1 => Just(Event::Redo),
            1 => Just(Event::Remove),
            1 => Just(Event::Terminate),
            1 => Just(Event::Repack { reason: "y".into() }),
        ]
    }

    proptest! {
        /// Any sequence of events: refused events change nothing, final states are absorbing,
        /// failures never exceed the policy without the sector failing for good, every failure
        /// state has a retry time, and the history is bounded and chained.
        #[test]
        fn any_event_sequence_keeps_the_invariants(events in prop::collection::vec((event(), 0u64..50), 0..80)) {
            let policy = RetryPolicy { max_retries: 3, base_seconds: 5, max_seconds: 40 };
            let mut p = SectorProgress::new(0);
            let mut now = 0u64;
            for (e, dt) in events {
                now += dt;
                if let Ok(next) = transition(&p, &e, now, &policy) {
                    prop_assert!(!p.state.is_final(), "left final state {}", p.state);
                    let last = next.history.last().unwrap();
                    prop_assert_eq!((last.from, last.to), (p.state, next.state));
                    prop_assert!(next.history.len() <= HISTORY);
                    if next.state.is_retryable_failure() {
                        prop_assert!(next.retry_at.is_some());
                        prop_assert!(next.failures <= policy.max_retries);
                    }
                    p = next;
                }
            }
        }
    }

    #[test]
    fn backoff_doubles_and_saturates() {
        let p = RetryPolicy {
            max_retries: 100,
            base_seconds: 3,
            max_seconds: u64::MAX,
        };
        assert_eq!([p.backoff(1), p.backoff(2), p.backoff(3)], [3, 6, 12]);
        assert_eq!(p.backoff(100), u64::MAX);
        assert_eq!(RetryPolicy::default().backoff(0), 10);
    }
}
