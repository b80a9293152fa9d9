//! The deal side of the pipeline's driver: taking a deal's piece ([`Pipeline::add_piece`]),
//! holding deal sectors in `WaitDeals` until they are full, waited long enough or a deal's start
//! comes close, writing their data (Packing), checking their deals before the pre-commit and the
//! prove-commit, dropping the deals that cannot make it (the reason recorded), and placing again
//! the pieces of a sector that failed before its deals were activated.
//!
//! **A dropped piece never leaves the others misplaced:** the pieces after it are moved down to
//! where CommD puts the list without it (each to the smallest multiple of its size past the end
//! of the pieces before it, never further than it was), in the same transaction that records the
//! failure; a sector whose data was written with the dropped piece goes back to `WaitDeals`
//! ([`Event::Repack`]) and is packed and sealed again. After a crash between the two, the
//! pre-commit's own check (the CommD of the sector's deals against the CommD sealed) finds the
//! difference and repacks it then.

use std::collections::{BTreeSet, HashMap};

use lode_chain::types::{DealId, Epoch};
use lode_proofs::node::Node;
use lode_proofs::piece::{PaddedPieceSize, PieceInfo, comm_d, piece_offsets};
use lode_sealing::seal;
use lode_sealing::sector_dir::SectorDir;

use super::deals::{
    self, DealPiece, DealPieceInfo, DealPieceRecord, MAX_PLACEMENTS, Placed, Target, is_full,
    piece_info, place_piece, staged_path,
};
use super::reader::PieceReader;
use super::runner::{Pipeline, Step};
use super::state::{Event, SectorState};
use super::store::{PipelineError, SectorChain, SectorKind, SectorRecord};
use crate::api::{DealLookup, NodeApi};
use crate::error::{ProviderError, ProviderResult};

fn pipeline_err(e: PipelineError) -> ProviderError {
    ProviderError::Pipeline(e.to_string())
}

fn unix_now() -> u64 {
    lode_node::genesis::unix_now()
}

/// How often a placement is tried again when its sector changed meanwhile.
const PLACE_ATTEMPTS: usize = 8;

/// A deal sector's deals as its pre-commit names them.
pub(super) struct SectorDeals {
    /// The deal ids in piece order.
    pub(super) ids: Vec<DealId>,
    /// The last deal's end epoch (the sector must live until then).
    pub(super) last_end: Epoch,
}

/// A repack of the sector, its chain bookkeeping forgotten (new ticket, new commitments).
fn repack(reason: String) -> Step {
    Step::Apply(
        Event::Repack { reason },
        Some(Box::new(SectorChain::default())),
    )
}

/// One piece of a Packing: what AddPiece reads and where the piece must land.
struct PackPiece {
    deal_id: DealId,
    staged: std::path::PathBuf,
    payload_size: u64,
    size: u64,
    offset: u64,
    comm_p: [u8; 32],
}

/// What Packing made of a deal sector's pieces.
enum Packed {
    /// Every piece written where it belongs.
    Done,
    /// These pieces' payload copies are unusable (gone or damaged): they fail.
    Bad(Vec<(DealId, String)>),
}

/// Writes the unsealed data of a deal sector: each piece's payload copy fr32-padded and
/// zero-filled at its offset (AddPiece, which also checks its CommP). Resumes over the pieces a
/// Packing killed midway recorded when they are the first ones planned; anything else in the
/// directory (a sector packed before some of its pieces were dropped) is deleted first.
fn write_deal_data(
    path: &std::path::Path,
    id: &seal::SectorId,
    plan: &[PackPiece],
) -> ProviderResult<Packed> {
    let mut recorded = Vec::new();
    if path.exists() {
        let dir = SectorDir::open(path)?;
        let meta: Option<seal::SectorMeta> = std::fs::read(dir.sector_meta())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        recorded = meta.map(|m| m.pieces).unwrap_or_default();
        let prefix = recorded.len() <= plan.len()
            && recorded.iter().zip(plan).all(|(r, p)| {
                r.comm_p.0.0 == p.comm_p && r.offset == p.offset && r.padded_size == p.size
            });
        let sealing_started = dir.pc1().exists() || dir.pc1_progress().exists();
        if !prefix || sealing_started {
            tracing::info!(sector = id.sector_number, path = %path.display(), "the sector's pieces changed: its data is written again");
            std::fs::remove_dir_all(path).map_err(|e| {
                ProviderError::Pipeline(format!("cannot delete {}: {e}", path.display()))
            })?;
            recorded.clear();
        }
    }
    let dir = SectorDir::create(path)?;
    for p in plan.iter().skip(recorded.len()) {
        let file = match std::fs::File::open(&p.staged) {
            Ok(f) => f,
            Err(e) => {
                return Ok(Packed::Bad(vec![(
                    p.deal_id,
                    format!("its payload copy {} is gone: {e}", p.staged.display()),
                )]));
            }
        };
        let size =
            PaddedPieceSize::new(p.size).map_err(|e| ProviderError::Pipeline(e.to_string()))?;
        let r = match seal::add_piece_sized(
            &dir,
            id,
            std::io::BufReader::with_capacity(1 << 20, file),
            p.payload_size,
            size,
        ) {
            Ok(r) => r,
            // A short copy: the file changed under the pipeline.
            Err(lode_sealing::SealError::WrongFileSize { .. }) => {
                return Ok(Packed::Bad(vec![(
                    p.deal_id,
                    format!("its payload copy {} is truncated", p.staged.display()),
                )]));
            }
            Err(e) => return Err(e.into()),
        };
        if r.comm_p.0.0 != p.comm_p {
            return Ok(Packed::Bad(vec![(
                p.deal_id,
                format!(
                    "its payload copy {} is damaged (piece CID {}, the deal names {})",
                    p.staged.display(),
                    deals::piece_cid_text(r.comm_p.0.0),
                    deals::piece_cid_text(p.comm_p)
                ),
            )]));
        }
        if r.offset != p.offset {
            return Err(ProviderError::Pipeline(format!(
                "deal {}'s piece landed at offset {} instead of {}: the sector's pieces are out of order",
                p.deal_id, r.offset, p.offset
            )));
        }
    }
    Ok(Packed::Done)
}

impl<A: NodeApi> Pipeline<A> {
    /// Takes deal `piece.deal_id`'s piece: checks the deal (this provider's, a piece that fits a
    /// sector, a payload that fits the piece, a start epoch far enough ahead to seal it in time,
    /// and — when the node answers deal queries — published on chain with this proposal and not
    /// active yet), **copies** the payload into the sealing scratch while computing its CommP
    /// (refused, nothing kept, unless it is the deal's), and places the piece in a deal sector
    /// waiting for deals (a new one when none has room). Returns where it went.
    ///
    /// Idempotent by deal id: a repeated call (after a crash, a lost answer) returns the piece's
    /// current assignment without copying anything. Once it returned, the caller may delete its
    /// payload file.
    ///
    /// # Errors
    /// [`ProviderError::Refused`] for a piece the pipeline does not take (the reason says what
    /// to do); [`ProviderError::Node`] when the chain cannot be read; [`ProviderError::Pipeline`]
    /// when the copy or the records cannot be written.
    pub async fn add_piece(&self, piece: DealPiece) -> ProviderResult<DealPieceInfo> {
        let id = piece.deal_id;
        if let Some(existing) = self.store.deal_piece(id).map_err(pipeline_err)? {
            return self.existing_piece(&piece, &existing);
        }
        let head = self.api.chain_head().await?.epoch;
        let size = self.check_new_piece(&piece, head).await?;
        let dest = staged_path(&self.config.scratch_dir, id);
        {
            let (src, dest) = (piece.payload.clone(), dest.clone());
            let (payload_size, want) = (piece.payload_size, piece.proposal.piece_cid);
            tokio::task::spawn_blocking(move || {
                deals::stage_payload(&src, &dest, payload_size, size, want)
            })
            .await
            .map_err(|_| ProviderError::Stopped)??;
        }
        let _one = self.placing.lock().await;
        // A concurrent call for the same deal may have placed it while this one copied.
        if let Some(existing) = self.store.deal_piece(id).map_err(pipeline_err)? {
            return self.existing_piece(&piece, &existing);
        }
        let record = DealPieceRecord {
            deal_id: id,
            proposal: piece.proposal,
            payload_size: piece.payload_size,
            sector: None,
            offset: 0,
            placed_epoch: head,
            placements: 1,
            added_at: unix_now(),
            failed: None,
        };
        let placed = self.place(&record, head, true).await?;
        tracing::info!(
            deal = id,
            sector = ?placed.piece.sector,
            offset = placed.piece.offset,
            new_sector = placed.created,
            "deal piece placed"
        );
        Ok(piece_info(&placed.piece, Some(&placed.sector)))
    }

    /// The answer to a repeated [`Pipeline::add_piece`]: the piece's row, when the call names
    /// the same piece.
    fn existing_piece(
        &self,
        piece: &DealPiece,
        existing: &DealPieceRecord,
    ) -> ProviderResult<DealPieceInfo> {
        if existing.proposal != piece.proposal || existing.payload_size != piece.payload_size {
            return Err(ProviderError::Refused(format!(
                "deal {}'s piece is in the pipeline already with another proposal or payload size: a deal id names one piece",
                piece.deal_id
            )));
        }
        self.piece_row(existing)
    }

    /// A piece's row, with its sector's state.
    fn piece_row(&self, piece: &DealPieceRecord) -> ProviderResult<DealPieceInfo> {
        let sector = match piece.sector {
            Some(n) => self.store.get(n).map_err(pipeline_err)?,
            None => None,
        };
        Ok(piece_info(piece, sector.as_ref()))
    }

    /// Every deal piece the pipeline holds, by deal id, with where it is (`provider_dealPieces`).
    ///
    /// # Errors
    /// [`ProviderError::Pipeline`] when the records cannot be read.
    pub fn deal_pieces(&self) -> ProviderResult<Vec<DealPieceInfo>> {
        let sectors: HashMap<u64, SectorRecord> = self
            .store
            .list()
            .map_err(pipeline_err)?
            .into_iter()
            .map(|r| (r.number, r))
            .collect();
        Ok(self
            .store
            .deal_pieces()
            .map_err(pipeline_err)?
            .iter()
            .map(|p| piece_info(p, p.sector.and_then(|n| sectors.get(&n))))
            .collect())
    }

    /// A reader of the pieces' payloads for retrieval (see [`PieceReader`]).
    pub fn piece_reader(&self) -> PieceReader {
        PieceReader::new(self.store.clone(), &self.config)
    }

    /// What a new piece must be; returns its padded size.
    async fn check_new_piece(
        &self,
        piece: &DealPiece,
        head: Epoch,
    ) -> ProviderResult<PaddedPieceSize> {
        let id = piece.deal_id;
        let p = &piece.proposal;
        let refused = |why: String| Err(ProviderError::Refused(format!("deal {id}: {why}")));
        if p.provider != self.config.miner {
            return refused(format!(
                "it is a deal with provider {}, not with this one ({})",
                p.provider, self.config.miner
            ));
        }
        let sector = self.config.size.bytes();
        let size = match PaddedPieceSize::new(p.piece_size) {
            Ok(s) if s.bytes() <= sector => s,
            _ => {
                return refused(format!(
                    "its piece of {} bytes does not fit a {} sector (a piece is a power of two from 128 bytes to the sector size)",
                    p.piece_size, self.config.size
                ));
            }
        };
        if piece.payload_size > size.unpadded() {
            return refused(format!(
                "a payload of {} bytes does not fit its {}-byte piece (at most {} bytes)",
                piece.payload_size,
                size.bytes(),
                size.unpadded()
            ));
        }
        if p.end_epoch <= p.start_epoch {
            return refused(format!(
                "it ends at epoch {}, not after its start at {}",
                p.end_epoch, p.start_epoch
            ));
        }
        let needed = self.config.prove_commit_epochs(&self.policy);
        if p.start_epoch <= head {
            return refused(format!(
                "its start epoch {} has passed (the chain is at {head})",
                p.start_epoch
            ));
        }
        if p.start_epoch < head.saturating_add(needed) {
            return refused(format!(
                "it starts at epoch {}, too soon to seal it: a sector takes at least {needed} epochs from its pre-commit to its prove-commit (start at epoch {} or later)",
                p.start_epoch,
                head.saturating_add(needed)
            ));
        }
        match self.api.market_deal(id).await? {
            DealLookup::NotReported => {}
            DealLookup::Absent => {
                return refused(
                    "it is not on chain: publish it first (or it ended: its start epoch passed unactivated)"
                        .into(),
                );
            }
            DealLookup::Found(d) if d.proposal != *p => {
                return refused("the chain holds another proposal under this deal id".into());
            }
            DealLookup::Found(d) => {
                if let Some(s) = d.state.sector {
                    return refused(format!("it is already active, in sector {s}"));
                }
            }
        }
        Ok(size)
    }

    /// Places `piece` (the caller holds `placing`): in the first deal sector waiting in
    /// `WaitDeals` with room for it (the lowest number first), at the offset [`place_piece`]
    /// gives; else in a new deal sector. Tried again when the sector it chose moved on meanwhile.
    pub(super) async fn place(
        &self,
        piece: &DealPieceRecord,
        head: Epoch,
        fresh: bool,
    ) -> ProviderResult<Placed> {
        let sector_bytes = self.config.size.bytes();
        let mut last = None;
        for _ in 0..PLACE_ATTEMPTS {
            let records = self.store.list().map_err(pipeline_err)?;
            let mut target = None;
            for r in records
                .iter()
                .filter(|r| r.kind == SectorKind::Deals && r.state() == SectorState::WaitDeals)
            {
                let taken: Vec<(u64, u64)> = self
                    .store
                    .sector_pieces(r.number)
                    .map_err(pipeline_err)?
                    .iter()
                    .filter(|p| p.deal_id != piece.deal_id)
                    .map(|p| (p.offset, p.piece_size()))
                    .collect();
                if let Some(at) = place_piece(&taken, piece.piece_size(), sector_bytes) {
                    target = Some((r.number, r.version, at));
                    break;
                }
            }
            let mut rec = piece.clone();
            rec.placed_epoch = head;
            let target = match target {
                Some((number, version, at)) => {
                    rec.offset = at;
                    Target::Sector { number, version }
                }
                None => Target::New {
                    min_number: self.min_sector_number().await?,
                },
            };
            match self.store.place_piece(&rec, target, fresh, unix_now()) {
                Ok(placed) => return Ok(placed),
                Err(e @ (PipelineError::Conflict { .. } | PipelineError::NotWaiting { .. })) => {
                    last = Some(e)
                }
                Err(e) => return Err(pipeline_err(e)),
            }
        }
        Err(ProviderError::Pipeline(format!(
            "deal {}'s piece could not be placed: its sectors kept changing ({}); try again",
            piece.deal_id,
            last.map(|e| e.to_string()).unwrap_or_default()
        )))
    }

    /// Why deal piece `p` cannot go into a sector pre-committed `needed` epochs after `head`
    /// at the earliest (`None`: it can).
    async fn deal_problem(
        &self,
        p: &DealPieceRecord,
        head: Epoch,
        needed: Epoch,
    ) -> ProviderResult<Option<String>> {
        let id = p.deal_id;
        let start = p.proposal.start_epoch;
        let ready = head.saturating_add(needed);
        if start < ready {
            return Ok(Some(format!(
                "deal {id} had to be active by epoch {start}, and its sector could not be proven before epoch {ready}"
            )));
        }
        Ok(match self.api.market_deal(id).await? {
            DealLookup::NotReported => None,
            DealLookup::Absent => Some(format!(
                "deal {id} is no longer on chain (not activated by its start epoch, or never published)"
            )),
            DealLookup::Found(d) if d.proposal != p.proposal => Some(format!(
                "the chain holds another proposal under deal id {id}"
            )),
            DealLookup::Found(d) if d.proposal.provider != self.config.miner => Some(format!(
                "deal {id} belongs to provider {}",
                d.proposal.provider
            )),
            DealLookup::Found(d) => d
                .state
                .sector
                .map(|s| format!("deal {id} is already active, in sector {s}")),
        })
    }

    /// Fails `dropped` pieces of sector `n` with their reasons and moves the pieces left down to
    /// where CommD puts them without the dropped ones, in one transaction; then deletes the
    /// dropped pieces' payload copies. Returns the reasons, joined.
    async fn drop_pieces(
        &self,
        n: u64,
        dropped: Vec<(DealPieceRecord, String)>,
    ) -> ProviderResult<String> {
        let _one = self.placing.lock().await;
        let ids: BTreeSet<DealId> = dropped.iter().map(|(p, _)| p.deal_id).collect();
        let mut reasons = Vec::new();
        let mut changes = Vec::new();
        for (mut p, why) in dropped {
            tracing::warn!(deal = p.deal_id, sector = n, reason = %why, "deal piece dropped");
            p.failed = Some(why.clone());
            reasons.push(why);
            changes.push(p);
        }
        let left: Vec<DealPieceRecord> = self
            .store
            .sector_pieces(n)
            .map_err(pipeline_err)?
            .into_iter()
            .filter(|p| !ids.contains(&p.deal_id))
            .collect();
        let sizes = left
            .iter()
            .map(|p| PaddedPieceSize::new(p.piece_size()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ProviderError::Pipeline(e.to_string()))?;
        for (mut p, offset) in left.into_iter().zip(piece_offsets(&sizes)) {
            if p.offset != offset {
                p.offset = offset;
                changes.push(p);
            }
        }
        self.store.put_pieces(&changes).map_err(pipeline_err)?;
        for id in ids {
            let path = staged_path(&self.config.scratch_dir, id);
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete a dropped piece's payload copy");
            }
        }
        Ok(reasons.join("; "))
    }

    /// The pieces of `pieces` that cannot make a pre-commit `needed` epochs after `head`, with
    /// why.
    async fn problems(
        &self,
        pieces: &[DealPieceRecord],
        head: Epoch,
        needed: Epoch,
    ) -> ProviderResult<Vec<(DealPieceRecord, String)>> {
        let mut out = Vec::new();
        for p in pieces {
            if let Some(why) = self.deal_problem(p, head, needed).await? {
                out.push((p.clone(), why));
            }
        }
        Ok(out)
    }

    /// `WaitDeals` of a deal sector: drops the deals that can no longer be sealed in time, then
    /// starts the sector (`Done`) once it is full, has waited `wait_deals_epochs` since its first
    /// piece, or its earliest deal starts within `deal_start_margin_epochs`; otherwise waits,
    /// saying until when.
    pub(super) async fn wait_deals(
        &self,
        record: &SectorRecord,
        head: Epoch,
    ) -> ProviderResult<Step> {
        let n = record.number;
        let c = &self.config;
        // A sector back here after a repack holds no data yet: what it wrote (layers, maybe) is
        // deleted now rather than at its next Packing, which may be long in coming.
        let scratch = self.scratch_path(n);
        if scratch.exists() {
            std::fs::remove_dir_all(&scratch).map_err(|e| {
                ProviderError::Pipeline(format!("cannot delete {}: {e}", scratch.display()))
            })?;
            tracing::info!(sector = n, path = %scratch.display(), "the repacked sector's old data deleted");
        }
        let pieces = self.store.sector_pieces(n).map_err(pipeline_err)?;
        let needed = c.prove_commit_epochs(&self.policy);
        let bad = self.problems(&pieces, head, needed).await?;
        let pieces = if bad.is_empty() {
            pieces
        } else {
            self.drop_pieces(n, bad).await?;
            self.store.sector_pieces(n).map_err(pipeline_err)?
        };
        let (Some(first), Some(earliest)) = (
            pieces.iter().map(|p| p.placed_epoch).min(),
            pieces.iter().map(|p| p.proposal.start_epoch).min(),
        ) else {
            return Ok(Step::Wait("waiting for deals: no piece yet".into()));
        };
        let taken: Vec<(u64, u64)> = pieces.iter().map(|p| (p.offset, p.piece_size())).collect();
        let used: u64 = taken.iter().map(|(_, s)| *s).fold(0, u64::saturating_add);
        let waited = first.saturating_add(c.wait_deals_epochs);
        let urgent = earliest.saturating_sub(c.deal_start_margin_epochs);
        let why = if is_full(&taken, c.size.bytes()) {
            Some("full".to_string())
        } else if head >= waited {
            Some(format!("waited {} epochs for deals", c.wait_deals_epochs))
        } else if head >= urgent {
            Some(format!("its first deal starts at epoch {earliest}"))
        } else {
            None
        };
        Ok(match why {
            Some(why) => {
                tracing::info!(sector = n, deals = pieces.len(), %why, "deal sector starts sealing");
                Step::Apply(Event::Done, None)
            }
            None => Step::Wait(format!(
                "waiting for deals: {} deals, {used} of {} bytes used; sealing starts at epoch {} (or once full)",
                pieces.len(),
                c.size.bytes(),
                waited.min(urgent)
            )),
        })
    }

    /// Packing of a deal sector (its room already checked): its pieces' payload copies written
    /// into its unsealed file at their offsets. A piece whose copy is gone or damaged fails, and
    /// the sector goes back to `WaitDeals` without it; no piece left: back to `WaitDeals` too.
    pub(super) async fn pack_deals(&self, record: &SectorRecord) -> ProviderResult<Step> {
        let n = record.number;
        let pieces = self.store.sector_pieces(n).map_err(pipeline_err)?;
        if pieces.is_empty() {
            return Ok(repack("no deal pieces left in the sector".into()));
        }
        let plan: Vec<PackPiece> = pieces
            .iter()
            .map(|p| PackPiece {
                deal_id: p.deal_id,
                staged: staged_path(&self.config.scratch_dir, p.deal_id),
                payload_size: p.payload_size,
                size: p.piece_size(),
                offset: p.offset,
                comm_p: p.comm_p(),
            })
            .collect();
        let path = self.dir(n);
        let id = self.sector_id(n);
        let written = tokio::task::spawn_blocking(move || write_deal_data(&path, &id, &plan))
            .await
            .map_err(|_| ProviderError::Stopped)?;
        Ok(match written {
            Ok(Packed::Done) => Step::Apply(Event::Done, None),
            Ok(Packed::Bad(bad)) => {
                let dropped = bad
                    .into_iter()
                    .filter_map(|(id, why)| {
                        pieces
                            .iter()
                            .find(|p| p.deal_id == id)
                            .map(|p| (p.clone(), why))
                    })
                    .collect();
                repack(self.drop_pieces(n, dropped).await?)
            }
            Err(e) => Step::Apply(
                Event::Failed {
                    reason: e.to_string(),
                    retry: true,
                },
                None,
            ),
        })
    }

    /// Before a deal sector's pre-commit: drops the deals that cannot make it (repacking the
    /// sector), checks that the CommD of its deals' pieces — what the chain computes — is the
    /// CommD sealed (repacking it otherwise), and returns the deals in piece order.
    pub(super) async fn deals_for_pre_commit(
        &self,
        record: &SectorRecord,
        head: Epoch,
    ) -> ProviderResult<Result<SectorDeals, Step>> {
        let n = record.number;
        let pieces = self.store.sector_pieces(n).map_err(pipeline_err)?;
        if pieces.is_empty() {
            return Ok(Err(repack("no deal pieces left in the sector".into())));
        }
        // The pre-commit lands at `head + 1` at the earliest.
        let needed = self
            .config
            .prove_commit_epochs(&self.policy)
            .saturating_add(1);
        let bad = self.problems(&pieces, head, needed).await?;
        if !bad.is_empty() {
            return Ok(Err(repack(self.drop_pieces(n, bad).await?)));
        }
        let infos = pieces
            .iter()
            .map(|p| {
                Ok(PieceInfo {
                    comm_p: Node(p.comm_p()),
                    size: PaddedPieceSize::new(p.piece_size())?,
                })
            })
            .collect::<Result<Vec<_>, lode_proofs::piece::PieceError>>();
        let chain_comm_d =
            infos.and_then(|infos| comm_d(PaddedPieceSize::new(self.config.size.bytes())?, &infos));
        match chain_comm_d {
            Ok(c) if Some(c.0) == record.chain.comm_d => {}
            _ => {
                return Ok(Err(repack(
                    "the sector's data is not its deals' pieces any more (a deal was dropped): it is packed again".into(),
                )));
            }
        }
        Ok(Ok(SectorDeals {
            ids: pieces.iter().map(|p| p.deal_id).collect(),
            last_end: pieces
                .iter()
                .map(|p| p.proposal.end_epoch)
                .max()
                .unwrap_or(0),
        }))
    }

    /// Before a deal sector's prove-commit: a deal the chain would refuse to activate (its start
    /// epoch passed, or gone from the chain) makes the sector fail for good — the chain refuses
    /// the whole prove-commit then, and its pre-commit cannot be changed; its other pieces are
    /// placed again ([`Pipeline::release_pieces`]).
    pub(super) async fn deals_for_prove_commit(
        &self,
        record: &SectorRecord,
        head: Epoch,
    ) -> ProviderResult<Option<Step>> {
        let pieces = self
            .store
            .sector_pieces(record.number)
            .map_err(pipeline_err)?;
        let bad = self.problems(&pieces, head, 1).await?;
        Ok(bad.first().map(|(_, why)| {
            Step::Apply(
                Event::Failed {
                    reason: format!(
                        "{why}: the chain would refuse the prove-commit, and the pre-commit cannot be changed (its deposit will be lost); the sector's other deals are placed again"
                    ),
                    retry: false,
                },
                None,
            )
        }))
    }

    /// The pieces of a deal sector that failed for good, was removed or terminated: each is
    /// placed again in another sector while its deal can still be activated in time and it has
    /// been placed fewer than [`MAX_PLACEMENTS`] times (its payload copy still there); otherwise
    /// it fails with the sector's reason.
    pub(super) async fn release_pieces(
        &self,
        record: &SectorRecord,
        head: Epoch,
    ) -> ProviderResult<()> {
        let n = record.number;
        let pieces = self.store.sector_pieces(n).map_err(pipeline_err)?;
        if pieces.is_empty() {
            return Ok(());
        }
        let why = format!(
            "sector {n} is {}{}",
            record.state(),
            record
                .progress
                .last_error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
        let needed = self
            .config
            .prove_commit_epochs(&self.policy)
            .saturating_add(self.config.deal_start_margin_epochs);
        let mut failures = Vec::new();
        for p in pieces {
            let again = record.state() != SectorState::Terminated
                && p.placements < MAX_PLACEMENTS
                && staged_path(&self.config.scratch_dir, p.deal_id).is_file();
            let problem = if again {
                self.deal_problem(&p, head, needed).await?
            } else {
                Some("it cannot be placed again".into())
            };
            match problem {
                None => {
                    let _one = self.placing.lock().await;
                    let mut moved = p.clone();
                    moved.placements = moved.placements.saturating_add(1);
                    let placed = self.place(&moved, head, false).await?;
                    tracing::warn!(deal = p.deal_id, from = n, to = ?placed.piece.sector, reason = %why, "deal piece placed again");
                }
                Some(problem) => failures.push((p, format!("{why} ({problem})"))),
            }
        }
        if !failures.is_empty() {
            self.drop_pieces(n, failures).await?;
        }
        Ok(())
    }
}
