//! The pipeline's sector records ([`super::kv`]: in the provider's embedded database, or in the
//! cluster's PostgreSQL database): one record per sector, changed only by compare-and-swap on its
//! version, and durable before a change is reported done.
//!
//! **Invariants:** a sector number is allocated once (the counter and the new record are written
//! in one transaction, so a crash never hands the same number out twice); a change names the
//! version it was computed from and is refused when the record moved on since (a stale worker's
//! result never overwrites a newer state: the version is the fencing token); a change the caller
//! has been told about is durable.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::kv::{Abort, KvError, Records, Tree, Tx, abort};

use super::state::{Event, RetryPolicy, SectorProgress, SectorState, TransitionError, transition};

/// What a sector holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SectorKind {
    /// Committed capacity: zeros, no deals.
    CommittedCapacity,
    /// Deal data.
    Deals,
}

/// A sector in the pipeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorRecord {
    /// Sector number.
    pub number: u64,
    /// What it holds.
    pub kind: SectorKind,
    /// Unix time it was created.
    pub created_at: u64,
    /// Bumped by every change: the fencing token of whoever works on the sector.
    pub version: u64,
    /// Its state and history.
    pub progress: SectorProgress,
    /// What the sector's chain steps chose and sent (changed in the same compare-and-swap as
    /// the state, so the two never disagree after a crash).
    pub chain: SectorChain,
}

/// A message the pipeline signed for a sector, recorded **before** it is pushed: after a crash
/// the same signed message is pushed again (harmless: the node's pool and the chain take a message
/// once) instead of signing a second one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentMessage {
    /// The message id (`state_searchMsg` finds its receipt by it).
    pub id: [u8; 32],
    /// The chain head's epoch when it was signed.
    pub sent_at: u64,
    /// The signed message, encoded (what is pushed again).
    pub signed: Vec<u8>,
}

/// A sector's chain bookkeeping: the seal randomness it was sealed with, its commitments, and the
/// messages sent for it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorChain {
    /// The epoch whose randomness is the seal ticket (chosen by PreCommit1).
    pub seal_rand_epoch: Option<u64>,
    /// The ticket drawn from it.
    pub ticket: Option<[u8; 32]>,
    /// `comm_d` (PreCommit1).
    pub comm_d: Option<[u8; 32]>,
    /// `comm_r` (PreCommit2).
    pub comm_r: Option<[u8; 32]>,
    /// The interactive seed (WaitSeed).
    pub seed: Option<[u8; 32]>,
    /// The pre-commit message.
    pub pre_commit: Option<SentMessage>,
    /// The prove-commit message.
    pub prove_commit: Option<SentMessage>,
    /// The termination message (`Terminating`). Added after the first records were written:
    /// a record without it (the encoding ends after `prove_commit`) decodes with `None`
    /// ([`decode_record`]); it must stay the last field.
    pub terminate: Option<SentMessage>,
}

/// A record as written before [`SectorChain::terminate`] existed: the same fields, in the same
/// order, without it (postcard has no field names, so an old record is a prefix of the new
/// layout).
#[derive(Deserialize)]
struct RecordV1 {
    number: u64,
    kind: SectorKind,
    created_at: u64,
    version: u64,
    progress: SectorProgress,
    chain: ChainV1,
}

#[derive(Deserialize)]
struct ChainV1 {
    seal_rand_epoch: Option<u64>,
    ticket: Option<[u8; 32]>,
    comm_d: Option<[u8; 32]>,
    comm_r: Option<[u8; 32]>,
    seed: Option<[u8; 32]>,
    pre_commit: Option<SentMessage>,
    prove_commit: Option<SentMessage>,
}

impl From<RecordV1> for SectorRecord {
    fn from(r: RecordV1) -> Self {
        let c = r.chain;
        SectorRecord {
            number: r.number,
            kind: r.kind,
            created_at: r.created_at,
            version: r.version,
            progress: r.progress,
            chain: SectorChain {
                seal_rand_epoch: c.seal_rand_epoch,
                ticket: c.ticket,
                comm_d: c.comm_d,
                comm_r: c.comm_r,
                seed: c.seed,
                pre_commit: c.pre_commit,
                prove_commit: c.prove_commit,
                terminate: None,
            },
        }
    }
}

impl SectorRecord {
    /// The state.
    pub fn state(&self) -> SectorState {
        self.progress.state
    }

    /// Unix time the sector entered its state: its last transition into it (the creation time
    /// for a sector that never moved, or whose history no longer holds that transition).
    pub fn state_since(&self) -> u64 {
        let state = self.state();
        self.progress
            .history
            .iter()
            .rev()
            .find(|h| h.to == state)
            .map_or(self.created_at, |h| h.at)
    }
}

/// Errors of the pipeline's store.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The database failed.
    #[error("pipeline database: {0}")]
    Db(#[from] KvError),
    /// A record does not decode.
    #[error("pipeline database: the record of sector {0} is corrupt")]
    Corrupt(u64),
    /// No such sector.
    #[error("sector {0} is not in the pipeline")]
    Unknown(u64),
    /// The record changed since the caller read it (another worker, or an operator, moved it).
    #[error(
        "sector {number} changed since version {expected} (it is at version {found}): read it again"
    )]
    Conflict {
        /// The sector.
        number: u64,
        /// The version the change was computed from.
        expected: u64,
        /// The version found.
        found: u64,
    },
    /// The deal's piece is in the pipeline already.
    #[error("deal {0}'s piece is in the pipeline already")]
    DealExists(u64),
    /// The sector takes no more pieces.
    #[error("sector {number} is in {state}: it takes no more pieces")]
    NotWaiting {
        /// The sector.
        number: u64,
        /// Its state.
        state: SectorState,
    },
    /// A deal piece's record does not decode.
    #[error("pipeline database: the record of deal {0}'s piece is corrupt")]
    CorruptPiece(u64),
    /// The event does not apply to the sector's state.
    #[error("sector {number}: {source}")]
    Transition {
        /// The sector.
        number: u64,
        /// Why.
        #[source]
        source: TransitionError,
    },
}

/// The pipeline store's result type.
pub type PipelineResult<T> = Result<T, PipelineError>;

pub(super) const NEXT_NUMBER: &[u8] = b"next_sector_number";

/// The pipeline's records.
#[derive(Debug, Clone)]
pub struct PipelineStore {
    records: Records,
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    lode_chain::codec::encode(v)
}

/// Decodes a record, in the current layout or, failing that, in the layout before
/// [`SectorChain::terminate`] (whose bytes end where that field would begin); the whole input
/// must be used either way.
pub(crate) fn decode_record(number: u64, bytes: &[u8]) -> PipelineResult<SectorRecord> {
    match postcard::take_from_bytes::<SectorRecord>(bytes) {
        Ok((r, [])) => Ok(r),
        _ => match postcard::take_from_bytes::<RecordV1>(bytes) {
            Ok((r, [])) => Ok(r.into()),
            _ => Err(PipelineError::Corrupt(number)),
        },
    }
}

pub(super) fn number_from(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX)
}

impl PipelineStore {
    /// Opens (or creates) the embedded database in `dir`.
    pub fn open(dir: &Path) -> PipelineResult<Self> {
        Ok(Self::new(Records::open(dir)?))
    }

    /// The store over `records` (embedded, or in the cluster's database).
    pub fn new(records: Records) -> Self {
        PipelineStore { records }
    }

    /// Where the records are (the task scheduler's and the deal pieces' records live there too,
    /// so that a task's result and its sector's change are one transaction).
    pub fn records(&self) -> &Records {
        &self.records
    }

    /// Creates a sector with the next free number, at least `min_number` (the chain's numbers
    /// already used, such as pre-sealed sectors', stay below it), at unix time `now`.
    pub fn create(
        &self,
        kind: SectorKind,
        min_number: u64,
        now: u64,
    ) -> PipelineResult<SectorRecord> {
        self.records
            .transaction(|tx| create_tx(tx, kind, min_number, now))
    }

    /// A sector's record.
    pub fn get(&self, number: u64) -> PipelineResult<Option<SectorRecord>> {
        self.records
            .get(Tree::Sectors, &number.to_be_bytes())?
            .map(|b| decode_record(number, &b))
            .transpose()
    }

    /// Every sector, by number.
    pub fn list(&self) -> PipelineResult<Vec<SectorRecord>> {
        self.records
            .scan(Tree::Sectors, &[])?
            .into_iter()
            .map(|(k, v)| decode_record(number_from(&k), &v))
            .collect()
    }

    /// Applies `event` to sector `number`, whose record the caller read at `version`: refused
    /// (nothing changes) when the record moved on since, or when the event does not apply.
    /// Returns the new record once it is durable.
    pub fn apply(
        &self,
        number: u64,
        version: u64,
        event: &Event,
        now: u64,
        policy: &RetryPolicy,
    ) -> PipelineResult<SectorRecord> {
        self.update(number, version, Some(event), None, now, policy)
    }

    /// Records `chain` as sector `number`'s chain bookkeeping without changing its state (a
    /// message signed and about to be pushed), under the same fencing as [`Self::apply`].
    pub fn record_chain(
        &self,
        number: u64,
        version: u64,
        chain: SectorChain,
        now: u64,
    ) -> PipelineResult<SectorRecord> {
        self.update(
            number,
            version,
            None,
            Some(chain),
            now,
            &RetryPolicy::default(),
        )
    }

    /// Records `chain` for several sectors at once, each under the version its caller read,
    /// in **one** transaction, durable before it returns: all or none (a message shared by a
    /// batch of sectors is recorded in every one of them before it is pushed, or in none).
    ///
    /// # Errors
    /// [`PipelineError::Conflict`] or [`PipelineError::Unknown`] for the first sector that moved
    /// on or is gone (nothing is written); [`PipelineError::Db`].
    pub fn record_chains(
        &self,
        changes: &[(u64, u64, SectorChain)],
        now: u64,
    ) -> PipelineResult<Vec<SectorRecord>> {
        self.records.transaction(|tx| {
            let mut out = Vec::with_capacity(changes.len());
            for (number, version, chain) in changes {
                let key = number.to_be_bytes();
                let Some(old) = tx.get(Tree::Sectors, &key)? else {
                    return abort(PipelineError::Unknown(*number));
                };
                let old = decode_record(*number, &old).map_err(Abort::With)?;
                let new = changed(
                    &old,
                    *version,
                    None,
                    Some(chain.clone()),
                    now,
                    &RetryPolicy::default(),
                )
                .map_err(Abort::With)?;
                tx.insert(Tree::Sectors, &key, &encode(&new))?;
                out.push(new);
            }
            Ok(out)
        })
    }

    /// The one change of a record: `event` (if any) applied to its state and `chain` (if any)
    /// replacing its chain bookkeeping, in one compare-and-swap on `version`, durable before it
    /// returns. Refused, with nothing changed, when the record moved on since `version` or the
    /// event does not apply. The version is bumped even when only `chain` changes.
    pub fn update(
        &self,
        number: u64,
        version: u64,
        event: Option<&Event>,
        chain: Option<SectorChain>,
        now: u64,
        policy: &RetryPolicy,
    ) -> PipelineResult<SectorRecord> {
        let key = number.to_be_bytes();
        self.records.transaction(|tx| {
            let Some(old) = tx.get(Tree::Sectors, &key)? else {
                return abort(PipelineError::Unknown(number));
            };
            let old = decode_record(number, &old).map_err(Abort::With)?;
            let new =
                changed(&old, version, event, chain.clone(), now, policy).map_err(Abort::With)?;
            tx.insert(Tree::Sectors, &key, &encode(&new))?;
            Ok(new)
        })
    }
}

/// Creates a sector of `kind` in transaction `tx`, numbered from the counter (at least
/// `min_number`), the counter moved past it: what [`PipelineStore::create`] and a deal piece
/// placed in a new sector both do.
pub(super) fn create_tx(
    tx: &mut dyn Tx<Tree>,
    kind: SectorKind,
    min_number: u64,
    now: u64,
) -> Result<SectorRecord, Abort<PipelineError>> {
    let next = tx
        .get(Tree::Meta, NEXT_NUMBER)?
        .map(|b| number_from(&b))
        .unwrap_or(0)
        .max(min_number);
    if tx.get(Tree::Sectors, &next.to_be_bytes())?.is_some() {
        return abort(PipelineError::Conflict {
            number: next,
            expected: 0,
            found: 1,
        });
    }
    let record = SectorRecord {
        number: next,
        kind,
        created_at: now,
        version: 1,
        progress: SectorProgress::new(now),
        chain: SectorChain::default(),
    };
    tx.insert(Tree::Sectors, &next.to_be_bytes(), &encode(&record))?;
    tx.insert(
        Tree::Meta,
        NEXT_NUMBER,
        &next.saturating_add(1).to_be_bytes(),
    )?;
    Ok(record)
}

/// `old` after `event` (if any) and with `chain` (if any) as its bookkeeping, the version bumped;
/// refused when `old` is not at `version` or the event does not apply.
pub(crate) fn changed(
    old: &SectorRecord,
    version: u64,
    event: Option<&Event>,
    chain: Option<SectorChain>,
    now: u64,
    policy: &RetryPolicy,
) -> PipelineResult<SectorRecord> {
    let number = old.number;
    if old.version != version {
        return Err(PipelineError::Conflict {
            number,
            expected: version,
            found: old.version,
        });
    }
    let progress = match event {
        Some(event) => transition(&old.progress, event, now, policy)
            .map_err(|source| PipelineError::Transition { number, source })?,
        None => old.progress.clone(),
    };
    Ok(SectorRecord {
        version: old.version.saturating_add(1),
        progress,
        chain: chain.unwrap_or_else(|| old.chain.clone()),
        ..old.clone()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_allocated_once_and_survive_reopening() {
        let d = tempfile::tempdir().unwrap();
        let s = PipelineStore::open(d.path()).unwrap();
        let a = s.create(SectorKind::CommittedCapacity, 2, 10).unwrap();
        let b = s.create(SectorKind::CommittedCapacity, 2, 11).unwrap();
        assert_eq!((a.number, b.number), (2, 3));
        // A higher floor skips ahead; a lower one does not go back.
        assert_eq!(s.create(SectorKind::Deals, 10, 12).unwrap().number, 10);
        assert_eq!(s.create(SectorKind::Deals, 0, 13).unwrap().number, 11);
        drop(s);
        let s = PipelineStore::open(d.path()).unwrap();
        assert_eq!(
            s.create(SectorKind::CommittedCapacity, 0, 14)
                .unwrap()
                .number,
            12
        );
        let all: Vec<u64> = s.list().unwrap().iter().map(|r| r.number).collect();
        assert_eq!(all, vec![2, 3, 10, 11, 12]);
        assert_eq!(s.get(3).unwrap().unwrap(), b);
        assert!(s.get(4).unwrap().is_none());
    }

    #[test]
    fn a_change_from_a_stale_version_is_refused_and_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let s = PipelineStore::open(d.path()).unwrap();
        let policy = RetryPolicy::default();
        let r = s.create(SectorKind::CommittedCapacity, 0, 0).unwrap();
        let r2 = s
            .apply(r.number, r.version, &Event::Done, 5, &policy)
            .unwrap();
        assert_eq!((r2.state(), r2.version), (SectorState::Packing, 2));
        // A worker that read version 1 reports late: refused.
        let err = s
            .apply(r.number, r.version, &Event::Done, 6, &policy)
            .unwrap_err();
        assert!(
            matches!(
                err,
                PipelineError::Conflict {
                    expected: 1,
                    found: 2,
                    ..
                }
            ),
            "{err}"
        );
        // An event that does not apply: refused, nothing changes.
        let err = s.apply(r.number, 2, &Event::Retry, 7, &policy).unwrap_err();
        assert!(matches!(err, PipelineError::Transition { .. }), "{err}");
        assert!(matches!(
            s.apply(99, 1, &Event::Done, 7, &policy).unwrap_err(),
            PipelineError::Unknown(99)
        ));
        assert_eq!(s.get(r.number).unwrap().unwrap(), r2);
    }

    #[test]
    fn chain_bookkeeping_changes_with_the_state_in_one_fenced_swap() {
        let d = tempfile::tempdir().unwrap();
        let s = PipelineStore::open(d.path()).unwrap();
        let policy = RetryPolicy::default();
        let r = s.create(SectorKind::CommittedCapacity, 0, 0).unwrap();
        assert_eq!(r.chain, SectorChain::default());
        let chain = SectorChain {
            seal_rand_epoch: Some(4),
            ..SectorChain::default()
        };
        let r2 = s
            .update(
                r.number,
                1,
                Some(&Event::Done),
                Some(chain.clone()),
                3,
                &policy,
            )
            .unwrap();
        assert_eq!(
            (r2.state(), r2.version, &r2.chain),
            (SectorState::Packing, 2, &chain)
        );
        // Only the bookkeeping: the state stays, the version moves on.
        let sent = SectorChain {
            pre_commit: Some(SentMessage {
                id: [9; 32],
                sent_at: 5,
                signed: vec![1, 2, 3],
            }),
            ..chain.clone()
        };
        let r3 = s.record_chain(r.number, 2, sent.clone(), 4).unwrap();
        assert_eq!(
            (r3.state(), r3.version, &r3.chain),
            (SectorState::Packing, 3, &sent)
        );
        // A stale writer's bookkeeping is refused like its events; an event that does not apply
        // takes its bookkeeping down with it.
        assert!(matches!(
            s.record_chain(r.number, 2, SectorChain::default(), 5)
                .unwrap_err(),
            PipelineError::Conflict { .. }
        ));
        assert!(matches!(
            s.update(
                r.number,
                3,
                Some(&Event::Retry),
                Some(SectorChain::default()),
                5,
                &policy
            )
            .unwrap_err(),
            PipelineError::Transition { .. }
        ));
        drop(s);
        let s = PipelineStore::open(d.path()).unwrap();
        assert_eq!(s.get(r.number).unwrap().unwrap(), r3);
    }

    #[test]
    fn a_record_written_before_the_termination_message_existed_still_decodes() {
        #[derive(Serialize)]
        struct OldChain {
            seal_rand_epoch: Option<u64>,
            ticket: Option<[u8; 32]>,
            comm_d: Option<[u8; 32]>,
            comm_r: Option<[u8; 32]>,
            seed: Option<[u8; 32]>,
            pre_commit: Option<SentMessage>,
            prove_commit: Option<SentMessage>,
        }
        #[derive(Serialize)]
        struct OldRecord {
            number: u64,
            kind: SectorKind,
            created_at: u64,
            version: u64,
            progress: SectorProgress,
            chain: OldChain,
        }
        let sent = SentMessage {
            id: [4; 32],
            sent_at: 9,
            signed: vec![1, 2],
        };
        let old = OldRecord {
            number: 7,
            kind: SectorKind::CommittedCapacity,
            created_at: 3,
            version: 12,
            progress: SectorProgress::new(3),
            chain: OldChain {
                seal_rand_epoch: Some(1),
                ticket: Some([1; 32]),
                comm_d: Some([2; 32]),
                comm_r: Some([3; 32]),
                seed: None,
                pre_commit: Some(sent.clone()),
                prove_commit: Some(sent.clone()),
            },
        };
        let d = tempfile::tempdir().unwrap();
        let s = PipelineStore::open(d.path()).unwrap();
        s.records()
            .put(Tree::Sectors, &7u64.to_be_bytes(), &encode(&old))
            .unwrap();
        let r = s.get(7).unwrap().unwrap();
        assert_eq!((r.number, r.version, r.created_at), (7, 12, 3));
        assert_eq!(r.chain.prove_commit, Some(sent.clone()));
        assert_eq!(r.chain.comm_r, Some([3; 32]));
        assert_eq!(r.chain.terminate, None);
        // Changed, it is written in the new layout, and reads back the same.
        let r2 = s
            .record_chain(
                7,
                12,
                SectorChain {
                    terminate: Some(sent.clone()),
                    ..r.chain.clone()
                },
                4,
            )
            .unwrap();
        assert_eq!(s.get(7).unwrap().unwrap(), r2);
        assert_eq!(r2.chain.terminate, Some(sent));
        // A new record never decodes as an old one with bytes left over, nor the reverse.
        assert!(s.list().unwrap().len() == 1);
    }

    #[test]
    fn a_corrupt_record_is_an_error_not_a_panic() {
        let d = tempfile::tempdir().unwrap();
        let s = PipelineStore::open(d.path()).unwrap();
        s.records()
            .put(Tree::Sectors, &7u64.to_be_bytes(), &[0xff, 0x01])
            .unwrap();
        assert!(matches!(s.get(7).unwrap_err(), PipelineError::Corrupt(7)));
        assert!(s.list().is_err());
    }
}
