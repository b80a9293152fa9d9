//! Deal pieces in the sealing pipeline: what the market hands over, where each piece goes, and
//! the records that keep it.
//!
//! The market publishes a deal on chain, then hands its piece to the pipeline
//! ([`super::runner::Pipeline::add_piece`], the API's `provider_addPiece`) as a [`DealPiece`]: the
//! deal id, its proposal, and a file holding the piece's payload (at most the piece's unpadded
//! size; the piece is that payload zero-filled to it). The pipeline checks the deal, **copies**
//! the payload into its scratch (`<scratch>/pieces/deal-<id>`, written through
//! `lode_proofs::durable` while its CommP is computed, renamed into place only when the CommP is
//! the deal's), so the market may delete its own copy once the call returned; then it records the
//! piece in a deal sector waiting in `WaitDeals` (a new one when none has room), at the offset
//! [`place_piece`] gives.
//!
//! **Invariants:** a deal's piece is recorded once (keyed by deal id, in one transaction
//! with its sector's version bump, or with the new sector and the sector counter), so a repeated
//! or concurrent call, or one after a crash, finds it and returns its assignment; a piece is
//! recorded only once its payload copy is complete under its final name, so a recorded piece
//! never lacks its data; a sector takes pieces only while it is in `WaitDeals`, and the
//! assignment bumps its version, so the step that moves it to `Packing` (a compare-and-swap on
//! the version it read) never packs a set of pieces other than the one it decided on. The pieces
//! of a sector, in offset order, are exactly where SPEC §3.2's CommD places them, so the chain's
//! CommD of the deals equals the CommD of the data sealed.
//!
//! A piece ends in exactly one of: its sector `Proving`, or failed with the reason recorded
//! ([`DealPieceRecord::failed`]) — its start epoch too close to seal in time, the chain refusing
//! the deal, its payload copy damaged, or its sector failed for good with no time left to place
//! it again. A piece whose sector failed before the deal was activated is placed again in
//! another sector while its start epoch allows (at most [`MAX_PLACEMENTS`] times).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use lode_chain::actors::market::DealProposal;
use lode_chain::types::{DealId, Epoch};
use lode_proofs::node::Node;
use lode_proofs::piece::{CommPHasher, PaddedPieceSize};
use serde::{Deserialize, Serialize};

use super::kv::{Abort, Tree, Tx, abort};

use super::state::{RetryPolicy, SectorState};
use super::store::{
    PipelineError, PipelineResult, PipelineStore, SectorKind, SectorRecord, changed, create_tx,
    decode_record, encode, number_from,
};
use crate::error::{ProviderError, ProviderResult};

/// How many sectors a piece is placed in at most (its first, and again after a sector failed
/// before the deal was activated).
pub const MAX_PLACEMENTS: u32 = 3;

/// A deal's piece handed to the pipeline (`provider_addPiece`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealPiece {
    /// The deal's id on chain (published already).
    pub deal_id: DealId,
    /// The deal's proposal, as published.
    pub proposal: DealProposal,
    /// A file on the provider's machine holding the piece's payload: the unpadded bytes, at most
    /// the piece's unpadded size (`piece_size × 127/128`); the piece is the payload zero-filled to
    /// that size. The pipeline copies it: the caller may delete it once the call returned.
    pub payload: PathBuf,
    /// The payload's length in bytes (the file's length).
    pub payload_size: u64,
}

/// What the pipeline keeps of a deal's piece (tree `deals`, keyed by deal id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealPieceRecord {
    /// The deal.
    pub deal_id: DealId,
    /// Its proposal.
    pub proposal: DealProposal,
    /// The payload's length.
    pub payload_size: u64,
    /// The sector it is placed in (the last one, once failed).
    pub sector: Option<u64>,
    /// Its padded byte offset in that sector.
    pub offset: u64,
    /// The chain head's epoch when it was placed there (what `wait_deals_epochs` counts from).
    pub placed_epoch: Epoch,
    /// How many sectors it was placed in.
    pub placements: u32,
    /// Unix time the piece was handed over.
    pub added_at: u64,
    /// Why the piece failed, if it did (then it is in no sector's piece list).
    pub failed: Option<String>,
}

impl DealPieceRecord {
    /// The piece's commitment, as the deal names it.
    pub fn comm_p(&self) -> [u8; 32] {
        self.proposal.piece_cid
    }

    /// The piece's padded size.
    pub fn piece_size(&self) -> u64 {
        self.proposal.piece_size
    }

    /// Whether the piece is still on its way to `Proving` (not failed).
    pub fn is_live(&self) -> bool {
        self.failed.is_none()
    }
}

/// Where a deal piece is, as `provider_dealPieces` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PieceState {
    /// In a sector that waits for more deals (`WaitDeals`).
    Waiting,
    /// Its sector's data is being written (`Packing`).
    Packed,
    /// Its sector is being sealed, pre-committed, proven or finalized.
    Sealing,
    /// Its sector is on chain and proven: the deal is active.
    Proving,
    /// Failed: `reason` says why.
    Failed,
}

impl PieceState {
    /// The state's name as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            PieceState::Waiting => "waiting",
            PieceState::Packed => "packed",
            PieceState::Sealing => "sealing",
            PieceState::Proving => "proving",
            PieceState::Failed => "failed",
        }
    }
}

/// One deal piece: `provider_addPiece`'s result and `provider_dealPieces`' rows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealPieceInfo {
    /// The deal.
    pub deal_id: DealId,
    /// The piece CID (text).
    pub piece_cid: String,
    /// The piece's padded size.
    pub piece_size: u64,
    /// The payload's length.
    pub payload_size: u64,
    /// Whether the deal is verified (DataCap).
    pub verified: bool,
    /// The epoch by which the deal must be active.
    pub start_epoch: Epoch,
    /// The deal's end.
    pub end_epoch: Epoch,
    /// The sector it is in (`null` only if it never was placed).
    pub sector: Option<u64>,
    /// Its padded byte offset in the sector.
    pub offset: Option<u64>,
    /// Where it is.
    pub state: PieceState,
    /// Why it failed (or why its sector did).
    pub reason: Option<String>,
    /// Unix time it was handed over.
    pub added_at: u64,
}

/// The text CID of a piece commitment (the hex node when it is not a valid CommP, which a
/// published deal never has).
pub fn piece_cid_text(comm_p: [u8; 32]) -> String {
    lode_proofs::cid::PieceCid::new(Node(comm_p))
        .map_or_else(|| hex::encode(comm_p), |c| c.to_string())
}

/// A piece's state from its record and its sector's (`None`: the sector is not in the
/// pipeline).
pub fn piece_state(
    piece: &DealPieceRecord,
    sector: Option<&SectorRecord>,
) -> (PieceState, Option<String>) {
    use SectorState::*;
    if let Some(why) = &piece.failed {
        return (PieceState::Failed, Some(why.clone()));
    }
    let Some(sector) = sector else {
        return (
            PieceState::Failed,
            Some("its sector is not in the pipeline".into()),
        );
    };
    let why = sector.progress.last_error.clone();
    match sector.state() {
        WaitDeals => (PieceState::Waiting, None),
        Packing | AddPieceFailed => (
            PieceState::Packed,
            why.filter(|_| sector.state() == AddPieceFailed),
        ),
        Proving => (PieceState::Proving, None),
        FailedUnrecoverable | Removing | Removed | Terminating | Terminated => (
            PieceState::Failed,
            Some(format!(
                "sector {} is {}{}",
                sector.number,
                sector.state(),
                why.map(|w| format!(": {w}")).unwrap_or_default()
            )),
        ),
        s => (
            PieceState::Sealing,
            why.filter(|_| s.is_retryable_failure()),
        ),
    }
}

/// The row of `piece`, whose sector is `sector`.
pub fn piece_info(piece: &DealPieceRecord, sector: Option<&SectorRecord>) -> DealPieceInfo {
    let (state, reason) = piece_state(piece, sector);
    let p = &piece.proposal;
    DealPieceInfo {
        deal_id: piece.deal_id,
        piece_cid: piece_cid_text(p.piece_cid),
        piece_size: p.piece_size,
        payload_size: piece.payload_size,
        verified: p.verified,
        start_epoch: p.start_epoch,
        end_epoch: p.end_epoch,
        sector: piece.sector,
        offset: piece.sector.map(|_| piece.offset),
        state,
        reason,
        added_at: piece.added_at,
    }
}

/// The padded offset where a piece of padded `size` goes in a sector of `sector_size` bytes that
/// already holds the pieces `taken` (padded offset, padded size): the first gap, in offset order,
/// where an offset that is a multiple of `size` past the end of the pieces before it leaves room
/// before the next piece (or the sector's end). `None`: no room.
///
/// Every piece the pipeline places is at the smallest multiple of its size past the end of the
/// pieces before it, which is where SPEC §3.2's CommD (`lode_proofs::piece::comm_d`) puts a list of
/// pieces in order; a piece put in a gap keeps that true of the pieces after it (the next one's
/// offset is a multiple of its size at or past the new end, so it is still the smallest such).
/// The sector's pieces in offset order are thus exactly the chain's CommD of its deals.
pub fn place_piece(taken: &[(u64, u64)], size: u64, sector_size: u64) -> Option<u64> {
    if size == 0 || !size.is_power_of_two() || size > sector_size {
        return None;
    }
    let mut sorted = taken.to_vec();
    sorted.sort_unstable();
    let fits = |end: u64, limit: u64| -> Option<u64> {
        let at = end.div_ceil(size).checked_mul(size)?;
        (at.checked_add(size)? <= limit).then_some(at)
    };
    let mut end = 0u64;
    for &(offset, len) in &sorted {
        if let Some(at) = fits(end, offset) {
            return Some(at);
        }
        end = end.max(offset.saturating_add(len));
    }
    fits(end, sector_size)
}

/// Whether a sector holding `taken` has no room left for even the smallest piece.
pub fn is_full(taken: &[(u64, u64)], sector_size: u64) -> bool {
    place_piece(taken, lode_proofs::piece::MIN_PIECE_SIZE, sector_size).is_none()
}

/// Where the pipeline keeps its copy of deal `id`'s payload until the piece's sector is
/// finalized (or the piece fails).
pub fn staged_path(scratch: &Path, id: DealId) -> PathBuf {
    scratch.join("pieces").join(format!("deal-{id}"))
}

/// Copies `payload_size` bytes of `src` to `dest` (through a durable temporary file) and returns
/// the CommP of the piece of `piece_size` they make; `dest` is renamed into place only when that
/// CommP is `want` (otherwise nothing is left behind).
///
/// # Errors
/// [`ProviderError::Refused`] when the file is not `payload_size` long or its CommP is not
/// `want`; [`ProviderError::Pipeline`] when the copy cannot be written.
pub fn stage_payload(
    src: &Path,
    dest: &Path,
    payload_size: u64,
    piece_size: PaddedPieceSize,
    want: [u8; 32],
) -> ProviderResult<()> {
    let io_err = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        ProviderError::Pipeline(format!("cannot {what} {}: {e}", path.display()))
    };
    let file = std::fs::File::open(src).map_err(|e| {
        ProviderError::Refused(format!(
            "the payload file {} cannot be opened: {e} (it must be readable by the provider)",
            src.display()
        ))
    })?;
    let len = file.metadata().map_err(|e| io_err("read", src, &e))?.len();
    if len != payload_size {
        return Err(ProviderError::Refused(format!(
            "the payload file {} holds {len} bytes, not the {payload_size} named",
            src.display()
        )));
    }
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_err("create", parent, &e))?;
    }
    let durable = |e: lode_proofs::durable::DurableError| {
        ProviderError::Pipeline(format!("cannot write the payload copy: {e}"))
    };
    let mut out = lode_proofs::durable::AtomicFile::create(dest).map_err(durable)?;
    let mut commp = CommPHasher::new();
    {
        let mut tee = Tee {
            out: io::BufWriter::with_capacity(1 << 20, &mut out),
            commp: &mut commp,
        };
        let copied = io::copy(
            &mut io::BufReader::with_capacity(1 << 20, file).take(payload_size),
            &mut tee,
        )
        .map_err(|e| io_err("copy", src, &e))?;
        tee.out.flush().map_err(|e| io_err("write", dest, &e))?;
        if copied != payload_size {
            return Err(ProviderError::Refused(format!(
                "the payload file {} ended after {copied} of {payload_size} bytes",
                src.display()
            )));
        }
    }
    let got = commp
        .finish_as(piece_size)
        .map_err(|e| ProviderError::Refused(format!("the payload does not fit the piece: {e}")))?;
    if got.comm_p.0 != want {
        return Err(ProviderError::Refused(format!(
            "the payload's piece CID {} (as a {piece_size}-byte piece) is not the deal's {}: nothing was kept",
            piece_cid_text(got.comm_p.0),
            piece_cid_text(want)
        )));
    }
    out.commit().map_err(durable)
}

/// Checks the CommP of a staged payload copy against the deal's (before its bytes are sealed).
///
/// # Errors
/// A description of what is wrong (missing, short, another CommP).
pub fn check_staged(
    path: &Path,
    payload_size: u64,
    piece_size: u64,
    want: [u8; 32],
) -> Result<(), String> {
    let size = PaddedPieceSize::new(piece_size).map_err(|e| e.to_string())?;
    let file = std::fs::File::open(path)
        .map_err(|e| format!("the payload copy {} is gone: {e}", path.display()))?;
    let mut commp = CommPHasher::new();
    let n = io::copy(
        &mut io::BufReader::with_capacity(1 << 20, file).take(payload_size),
        &mut commp,
    )
    .map_err(|e| format!("the payload copy {} cannot be read: {e}", path.display()))?;
    if n != payload_size {
        return Err(format!(
            "the payload copy {} is {n} bytes, not {payload_size}",
            path.display()
        ));
    }
    let got = commp.finish_as(size).map_err(|e| e.to_string())?;
    if got.comm_p.0 != want {
        return Err(format!(
            "the payload copy {} is damaged (its piece CID is {})",
            path.display(),
            piece_cid_text(got.comm_p.0)
        ));
    }
    Ok(())
}

/// Passes bytes on to a writer and to a CommP hasher.
struct Tee<'a, W> {
    out: W,
    commp: &'a mut CommPHasher,
}

impl<W: Write> Write for Tee<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.commp.write_all(buf.get(..n).unwrap_or_default())?;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Where [`PipelineStore::place_piece`] puts a piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A deal sector in `WaitDeals`, at the version it was read at (its pieces decided the
    /// offset).
    Sector {
        /// The sector.
        number: u64,
        /// Its version when read.
        version: u64,
    },
    /// A new deal sector, numbered at least `min_number` (above the chain's numbers).
    New {
        /// The lowest number it may take.
        min_number: u64,
    },
}

/// A piece placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    /// Its record, as written.
    pub piece: DealPieceRecord,
    /// Its sector's record, as written (its version bumped; or new).
    pub sector: SectorRecord,
    /// Whether the sector was created for it.
    pub created: bool,
}

fn deal_key(id: DealId) -> [u8; 8] {
    id.to_be_bytes()
}

fn sector_key(n: u64, id: DealId) -> [u8; 16] {
    let mut k = [0u8; 16];
    let (a, b) = k.split_at_mut(8);
    a.copy_from_slice(&n.to_be_bytes());
    b.copy_from_slice(&id.to_be_bytes());
    k
}

fn cid_key(comm_p: [u8; 32], id: DealId) -> [u8; 40] {
    let mut k = [0u8; 40];
    let (a, b) = k.split_at_mut(32);
    a.copy_from_slice(&comm_p);
    b.copy_from_slice(&id.to_be_bytes());
    k
}

fn decode_piece(id: DealId, bytes: &[u8]) -> PipelineResult<DealPieceRecord> {
    match postcard::take_from_bytes::<DealPieceRecord>(bytes) {
        Ok((r, [])) => Ok(r),
        _ => Err(PipelineError::CorruptPiece(id)),
    }
}

type TxResult<T> = Result<T, Abort<PipelineError>>;

/// Writes `new` over deal `new.deal_id`'s record, keeping the two indexes in step: the old
/// sector's entry removed, the new one's added while the piece is live, the CID entry kept.
fn write_piece_tx(tx: &mut dyn Tx<Tree>, new: &DealPieceRecord) -> TxResult<()> {
    let id = new.deal_id;
    if let Some(old) = tx.get(Tree::Deals, &deal_key(id))? {
        let old = decode_piece(id, &old).map_err(Abort::With)?;
        if let Some(s) = old.sector {
            tx.remove(Tree::DealSectors, &sector_key(s, id))?;
        }
    }
    tx.insert(Tree::Deals, &deal_key(id), &encode(new))?;
    if let (Some(s), true) = (new.sector, new.is_live()) {
        tx.insert(Tree::DealSectors, &sector_key(s, id), &[])?;
    }
    tx.insert(Tree::PieceCids, &cid_key(new.comm_p(), id), &[])?;
    Ok(())
}

impl PipelineStore {
    /// Deal `id`'s piece, if the pipeline has it.
    pub fn deal_piece(&self, id: DealId) -> PipelineResult<Option<DealPieceRecord>> {
        self.records()
            .get(Tree::Deals, &deal_key(id))?
            .map(|b| decode_piece(id, &b))
            .transpose()
    }

    /// Every deal piece, by deal id.
    pub fn deal_pieces(&self) -> PipelineResult<Vec<DealPieceRecord>> {
        self.records()
            .scan(Tree::Deals, &[])?
            .into_iter()
            .map(|(k, v)| decode_piece(number_from(&k), &v))
            .collect()
    }

    /// Sector `n`'s live pieces, in offset order (the order of its deals on chain).
    pub fn sector_pieces(&self, n: u64) -> PipelineResult<Vec<DealPieceRecord>> {
        let mut out = Vec::new();
        for (k, _) in self.records().scan(Tree::DealSectors, &n.to_be_bytes())? {
            let id = number_from(k.get(8..).unwrap_or_default());
            if let Some(p) = self.deal_piece(id)?
                && p.sector == Some(n)
                && p.is_live()
            {
                out.push(p);
            }
        }
        out.sort_by_key(|p| (p.offset, p.deal_id));
        Ok(out)
    }

    /// The pieces whose commitment is `comm_p` (several deals may store one piece), by deal id.
    pub fn pieces_with_comm_p(&self, comm_p: [u8; 32]) -> PipelineResult<Vec<DealPieceRecord>> {
        let mut out = Vec::new();
        for (k, _) in self.records().scan(Tree::PieceCids, &comm_p)? {
            let id = number_from(k.get(32..).unwrap_or_default());
            if let Some(p) = self.deal_piece(id)? {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Writes pieces' records (a failure, a release), the indexes in step, in one transaction,
    /// durable before it returns.
    pub fn put_pieces(&self, pieces: &[DealPieceRecord]) -> PipelineResult<()> {
        self.records().transaction(|tx| {
            for p in pieces {
                write_piece_tx(tx, p)?;
            }
            Ok(())
        })
    }

    /// Places `piece` (its `sector` and `offset` set by the caller for `Target::Sector`; the
    /// sector is filled in for `Target::New`, at offset 0) in one transaction with its sector's
    /// change: the target sector's version bumped (refused with [`PipelineError::Conflict`] when
    /// it moved on or left `WaitDeals`), or a new deal sector created with the next number. With
    /// `fresh`, refused with [`PipelineError::DealExists`] when the deal already has a piece
    /// (another call placed it first). Durable before it returns.
    pub fn place_piece(
        &self,
        piece: &DealPieceRecord,
        target: Target,
        fresh: bool,
        now: u64,
    ) -> PipelineResult<Placed> {
        self.records().transaction(|tx| {
            let id = piece.deal_id;
            if fresh && tx.get(Tree::Deals, &deal_key(id))?.is_some() {
                return abort(PipelineError::DealExists(id));
            }
            let mut piece = piece.clone();
            let (sector, created) = match target {
                Target::Sector { number, version } => {
                    let key = number.to_be_bytes();
                    let Some(old) = tx.get(Tree::Sectors, &key)? else {
                        return abort(PipelineError::Unknown(number));
                    };
                    let old = decode_record(number, &old).map_err(Abort::With)?;
                    if old.kind != SectorKind::Deals || old.state() != SectorState::WaitDeals {
                        return abort(PipelineError::NotWaiting {
                            number,
                            state: old.state(),
                        });
                    }
                    let new = changed(&old, version, None, None, now, &RetryPolicy::default())
                        .map_err(Abort::With)?;
                    tx.insert(Tree::Sectors, &key, &encode(&new))?;
                    piece.sector = Some(number);
                    (new, false)
                }
                Target::New { min_number } => {
                    let record = create_tx(tx, SectorKind::Deals, min_number, now)?;
                    let next = record.number;
                    piece.sector = Some(next);
                    piece.offset = 0;
                    (record, true)
                }
            };
            write_piece_tx(tx, &piece)?;
            Ok(Placed {
                piece,
                sector,
                created,
            })
        })
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
    use lode_chain::types::{ActorId, TokenAmount};
    use lode_proofs::piece::{PieceInfo, comm_d, piece_offsets};
    use proptest::prelude::*;

    fn proposal(id: u64, size: u64) -> DealProposal {
        DealProposal {
            piece_cid: lode_proofs::node::trunc254([id as u8; 32]).0,
            piece_size: size,
            verified: false,
            client: ActorId(2000),
            provider: ActorId(1000),
            label: String::new(),
            start_epoch: 100,
            end_epoch: 1000,
            price_per_epoch: TokenAmount::ZERO,
            provider_collateral: TokenAmount::ZERO,
            client_collateral: TokenAmount::ZERO,
        }
    }

    fn record(id: u64, size: u64) -> DealPieceRecord {
        DealPieceRecord {
            deal_id: id,
            proposal: proposal(id, size),
            payload_size: 10,
            sector: None,
            offset: 0,
            placed_epoch: 5,
            placements: 1,
            added_at: 1,
            failed: None,
        }
    }

    #[test]
    fn pieces_go_in_the_first_aligned_gap() {
        let s = 2048;
        assert_eq!(place_piece(&[], 512, s), Some(0));
        assert_eq!(place_piece(&[(0, 128)], 512, s), Some(512));
        // The gap 128..512 takes a 128 and a 256, not a 512.
        assert_eq!(place_piece(&[(0, 128), (512, 512)], 128, s), Some(128));
        assert_eq!(
            place_piece(&[(0, 128), (128, 128), (512, 512)], 256, s),
            Some(256)
        );
        assert_eq!(place_piece(&[(0, 128), (512, 512)], 512, s), Some(1024));
        assert_eq!(place_piece(&[(0, 1024), (1024, 1024)], 128, s), None);
        assert!(is_full(&[(0, 1024), (1024, 1024)], s));
        assert!(!is_full(&[(0, 1024)], s));
        assert_eq!(place_piece(&[], 4096, s), None);
        assert_eq!(place_piece(&[], 3, s), None);
        assert_eq!(place_piece(&[], 0, s), None);
    }

    proptest! {
        /// Pieces placed one by one, in any order of sizes, never overlap, and in offset order
        /// sit exactly where CommD's alignment rule puts them: the chain's CommD of the deals is
        /// the CommD of the sector's data.
        #[test]
        fn placements_are_where_comm_d_puts_the_pieces(sizes in prop::collection::vec(0u32..5, 1..24)) {
            let sector = 2048u64;
            let mut taken: Vec<(u64, u64)> = Vec::new();
            for h in sizes {
                let size = 128u64 << h;
                if let Some(at) = place_piece(&taken, size, sector) {
                    prop_assert_eq!(at % size, 0);
                    prop_assert!(at + size <= sector);
                    for &(o, l) in &taken {
                        prop_assert!(at + size <= o || o + l <= at, "overlap");
                    }
                    taken.push((at, size));
                } else {
                    // No room: no aligned free slot of that size exists.
                    for at in (0..sector).step_by(size as usize) {
                        prop_assert!(taken.iter().any(|&(o, l)| !(at + size <= o || o + l <= at)));
                    }
                }
            }
            taken.sort_unstable();
            let sizes: Vec<PaddedPieceSize> = taken.iter().map(|&(_, l)| PaddedPieceSize::new(l).unwrap()).collect();
            let offsets = piece_offsets(&sizes);
            prop_assert_eq!(&offsets[..taken.len()], &taken.iter().map(|&(o, _)| o).collect::<Vec<_>>()[..]);
            let infos: Vec<PieceInfo> = sizes.iter().map(|&size| PieceInfo { comm_p: Node::ZERO, size }).collect();
            prop_assert!(comm_d(PaddedPieceSize::new(sector).unwrap(), &infos).is_ok());
        }
    }

    #[test]
    fn a_piece_is_placed_once_with_its_sector_and_indexed() {
        let d = tempfile::tempdir().unwrap();
        let s = PipelineStore::open(d.path()).unwrap();
        let a = s
            .place_piece(&record(7, 1024), Target::New { min_number: 4 }, true, 10)
            .unwrap();
        assert!(a.created);
        assert_eq!((a.sector.number, a.sector.kind), (4, SectorKind::Deals));
        assert_eq!((a.piece.sector, a.piece.offset), (Some(4), 0));
        // The same deal again: refused, nothing changes.
        assert!(matches!(
            s.place_piece(&record(7, 1024), Target::New { min_number: 4 }, true, 11)
                .unwrap_err(),
            PipelineError::DealExists(7)
        ));
        // Into the sector, at the version read: its version moves on.
        let mut b = record(8, 512);
        b.offset = 1024;
        let placed = s
            .place_piece(
                &b,
                Target::Sector {
                    number: 4,
                    version: a.sector.version,
                },
                true,
                12,
            )
            .unwrap();
        assert_eq!(placed.sector.version, a.sector.version + 1);
        // A writer that read the old version is refused.
        let mut c = record(9, 128);
        c.offset = 1536;
        assert!(matches!(
            s.place_piece(
                &c,
                Target::Sector {
                    number: 4,
                    version: a.sector.version
                },
                true,
                13
            )
            .unwrap_err(),
            PipelineError::Conflict { .. }
        ));
        assert!(s.deal_piece(9).unwrap().is_none());
        let pieces = s.sector_pieces(4).unwrap();
        assert_eq!(
            pieces
                .iter()
                .map(|p| (p.deal_id, p.offset))
                .collect::<Vec<_>>(),
            vec![(7, 0), (8, 1024)]
        );
        assert_eq!(
            s.pieces_with_comm_p(proposal(8, 512).piece_cid)
                .unwrap()
                .len(),
            1
        );
        // Failed: out of the sector's list, still found by CID and by id.
        let mut failed = pieces[1].clone();
        failed.failed = Some("start epoch passed".into());
        s.put_pieces(&[failed]).unwrap();
        assert_eq!(s.sector_pieces(4).unwrap().len(), 1);
        assert_eq!(s.deal_pieces().unwrap().len(), 2);
        assert!(s.deal_piece(8).unwrap().unwrap().failed.is_some());
        // A sector no longer in WaitDeals takes no piece.
        let r = s.get(4).unwrap().unwrap();
        s.apply(
            4,
            r.version,
            &super::super::Event::Done,
            14,
            &RetryPolicy::default(),
        )
        .unwrap();
        let r = s.get(4).unwrap().unwrap();
        assert!(matches!(
            s.place_piece(
                &c,
                Target::Sector {
                    number: 4,
                    version: r.version
                },
                true,
                15
            )
            .unwrap_err(),
            PipelineError::NotWaiting { .. }
        ));
        // The next new sector takes the next number; a reopened store has everything.
        drop(s);
        let s = PipelineStore::open(d.path()).unwrap();
        let n = s
            .place_piece(&record(10, 128), Target::New { min_number: 0 }, true, 16)
            .unwrap();
        assert_eq!(n.sector.number, 5);
        assert_eq!(s.deal_pieces().unwrap().len(), 3);
    }

    #[test]
    fn a_corrupt_piece_record_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let s = PipelineStore::open(d.path()).unwrap();
        s.records()
            .put(super::super::kv::Tree::Deals, &3u64.to_be_bytes(), &[0xff])
            .unwrap();
        assert!(matches!(
            s.deal_piece(3).unwrap_err(),
            PipelineError::CorruptPiece(3)
        ));
    }

    #[test]
    fn staged_payloads_are_kept_only_when_their_comm_p_is_the_deals() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("payload");
        let payload: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        std::fs::write(&src, &payload).unwrap();
        let size = PaddedPieceSize::new(1024).unwrap();
        let mut filled = payload.clone();
        filled.resize(size.unpadded() as usize, 0);
        let want = lode_proofs::piece::commp_of_bytes(&filled)
            .unwrap()
            .comm_p
            .0;
        let dest = staged_path(d.path(), 5);
        // Another CommP, a wrong length, a missing file: refused, nothing kept.
        for (len, cid) in [(300, [0u8; 32]), (299, want), (301, want)] {
            let e = stage_payload(&src, &dest, len, size, cid).unwrap_err();
            assert!(matches!(e, ProviderError::Refused(_)), "{e}");
            assert!(!dest.exists());
        }
        assert!(stage_payload(&d.path().join("none"), &dest, 300, size, want).is_err());
        stage_payload(&src, &dest, 300, size, want).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), payload);
        check_staged(&dest, 300, 1024, want).unwrap();
        let mut damaged = payload.clone();
        damaged[3] ^= 1;
        std::fs::write(&dest, &damaged).unwrap();
        assert!(
            check_staged(&dest, 300, 1024, want)
                .unwrap_err()
                .contains("damaged")
        );
        std::fs::remove_file(&dest).unwrap();
        assert!(
            check_staged(&dest, 300, 1024, want)
                .unwrap_err()
                .contains("gone")
        );
        // The text CID.
        assert!(piece_cid_text(want).starts_with('b'));
    }
}
