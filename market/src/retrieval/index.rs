//! The provider's block index: where each block of its CAR payloads lies, so that the trustless
//! gateway (`/ipfs/<cid>`) can serve blocks out of pieces.
//!
//! When the deal service hands a deal's payload to sealing it indexes the payload, if it is a CAR
//! (v1 or v2; every block checked against its CID while indexing): each block's CID maps to the
//! piece CID and the block data's offset and length **within the payload** (the bytes a
//! [`super::PieceReader`] of that piece reads), and each root of the CAR's header maps to the piece.
//! A block the CAR holds more than once is located at its last occurrence. A payload that is not
//! a CAR, or a malformed one, gets no index (it is still retrievable whole
//! through `/piece/<piece CID>`).
//!
//! It lives in the market's records beside the deal records (trees of
//! [`crate::provider::records::MarketTree`]: the provider's embedded database or the cluster's
//! PostgreSQL database, [`BlockIndex::new`]), or in an embedded database of its own
//! ([`BlockIndex::open`]):
//!
//! - `block_index`: `len(cid) ‖ cid ‖ piece CID` → `offset (u64 BE) ‖ length (u64 BE)`;
//! - `block_roots`: `len(root) ‖ root ‖ piece CID` → empty;
//! - `block_pieces`: `piece CID` → JSON [`IndexedPayload`], written last.
//!
//! **Invariants.** A location is answered only for a piece whose `block_pieces` entry exists,
//! which is written (durably, as every write is) after all of its locations: a crash half-way through indexing
//! leaves locations no lookup answers, and indexing the payload again (which the deal service does
//! when it hands the deal off again after a restart) writes the same keys with the same values
//! (indexing is idempotent; a piece already indexed is not read again). Locations are hints: the
//! gateway checks every block it reads against its CID, so an index that disagrees with the piece
//! (a corrupted or replaced copy) makes an error, never wrong bytes.

use std::path::Path;

use cid::Cid;
use lode_proofs::cid::PieceCid;
use serde::{Deserialize, Serialize};

use crate::car::{looks_like_car, scan_car};
use lode_records::{Abort, KvError};

use crate::error::{MarketError, MarketResult};
use crate::provider::records::{MarketRecords, MarketTree, records_error};

/// Locations written per transaction while indexing.
const BATCH: usize = 8192;
/// The most locations one lookup returns (a block stored in many pieces).
pub const MAX_LOCATIONS: usize = 16;

/// Where one block lies: in which piece's payload, at which offset, how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockLocation {
    /// The piece whose payload holds it.
    pub piece: PieceCid,
    /// Offset of the block's data from the start of the payload.
    pub offset: u64,
    /// Length of the block's data.
    pub length: u64,
}

/// What indexing a piece's payload found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexedPayload {
    /// The CAR header's roots (as text).
    pub roots: Vec<String>,
    /// Blocks indexed (a CID that occurs twice counts twice).
    pub blocks: u64,
    /// The payload's length in bytes.
    pub payload_size: u64,
    /// 1 or 2.
    pub car_version: u8,
}

/// The block index (see the module docs). Cheap to clone: clones share the records.
#[derive(Clone, Debug)]
pub struct BlockIndex {
    records: MarketRecords,
}

/// `len(cid) ‖ cid`: a prefix no other CID's key starts with.
fn cid_prefix(cid: &Cid) -> Vec<u8> {
    let bytes = cid.to_bytes();
    let mut key = Vec::with_capacity(bytes.len().saturating_add(40));
    // A CID's bytes are at most 4 varints and a 64-byte digest: under 256 bytes.
    key.push(u8::try_from(bytes.len()).unwrap_or(u8::MAX));
    key.extend_from_slice(&bytes);
    key
}

fn location_key(cid: &Cid, piece: &PieceCid) -> Vec<u8> {
    let mut key = cid_prefix(cid);
    key.extend_from_slice(&piece.to_bytes());
    key
}

fn location_value(offset: u64, length: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    let (a, b) = v.split_at_mut(8);
    a.copy_from_slice(&offset.to_be_bytes());
    b.copy_from_slice(&length.to_be_bytes());
    v
}

fn parse_value(v: &[u8]) -> Option<(u64, u64)> {
    let offset = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
    let length = u64::from_be_bytes(v.get(8..16)?.try_into().ok()?);
    Some((offset, length))
}

impl BlockIndex {
    /// Opens (or creates) a block index in an embedded database of its own at `path`.
    ///
    /// # Errors
    /// [`MarketError::Records`] when it cannot be opened (another process holds it, …).
    pub fn open(path: impl AsRef<Path>) -> MarketResult<BlockIndex> {
        let path = path.as_ref();
        let records = MarketRecords::open(path).map_err(|e| MarketError::Records {
            at: path.display().to_string(),
            why: format!("block index: {e}"),
        })?;
        Ok(BlockIndex::new(records))
    }

    /// The block index in the market's `records` (the provider's deal records').
    pub fn new(records: MarketRecords) -> BlockIndex {
        BlockIndex { records }
    }

    fn error(&self) -> impl Fn(KvError) -> MarketError + '_ {
        records_error(&self.records)
    }

    /// Writes `entries` into `tree`, all or none, durably.
    fn write(&self, tree: MarketTree, entries: &[(Vec<u8>, Vec<u8>)]) -> MarketResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.records
            .transaction(|tx| -> Result<(), Abort<KvError>> {
                for (k, v) in entries {
                    tx.insert(tree, k, v)?;
                }
                Ok(())
            })
            .map_err(self.error())
    }

    /// Indexes `piece`'s payload at `payload` if it is a CAR. `Ok(None)`: it is not a CAR, or a
    /// malformed one (nothing is indexed; logged at debug); a piece indexed before is not read
    /// again (its summary is returned).
    ///
    /// # Errors
    /// [`MarketError::Io`] when the payload cannot be read, [`MarketError::Records`] when the
    /// index cannot be written.
    pub fn index_payload(
        &self,
        piece: &PieceCid,
        payload: &Path,
    ) -> MarketResult<Option<IndexedPayload>> {
        if let Some(done) = self.indexed(piece)? {
            return Ok(Some(done));
        }
        if !looks_like_car(payload)? {
            tracing::debug!(%piece, path = %payload.display(), "the payload is not a CAR: no block index");
            return Ok(None);
        }
        let piece_bytes = piece.to_bytes();
        let mut batch = Vec::new();
        let mut roots_written = false;
        let scanned = scan_car(
            std::fs::File::open(payload).map_err(MarketError::io(payload))?,
            payload,
            |roots, at, _| {
                if !roots_written {
                    let keys: Vec<_> = roots
                        .iter()
                        .map(|root| {
                            let mut key = cid_prefix(root);
                            key.extend_from_slice(&piece_bytes);
                            (key, Vec::new())
                        })
                        .collect();
                    self.write(MarketTree::BlockRoots, &keys)?;
                    roots_written = true;
                }
                batch.push((
                    location_key(&at.cid, piece),
                    location_value(at.offset, at.length).to_vec(),
                ));
                if batch.len() >= BATCH {
                    self.write(MarketTree::BlockIndex, &std::mem::take(&mut batch))?;
                }
                Ok(())
            },
        );
        let summary = match scanned {
            Ok(s) => s,
            Err(MarketError::BadCar { why, .. }) => {
                tracing::debug!(%piece, path = %payload.display(), %why, "the payload is not a valid CAR: no block index");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        self.write(MarketTree::BlockIndex, &batch)?;
        let done = IndexedPayload {
            roots: summary.roots.iter().map(Cid::to_string).collect(),
            blocks: summary.blocks,
            payload_size: std::fs::metadata(payload)
                .map_err(MarketError::io(payload))?
                .len(),
            car_version: summary.version,
        };
        let encoded = serde_json::to_vec(&done).map_err(|e| MarketError::Records {
            at: self.records.location(),
            why: format!("cannot encode the index summary of piece {piece}: {e}"),
        })?;
        // Everything above is durable before the piece is marked indexed.
        self.records
            .put(MarketTree::BlockPieces, &piece_bytes, &encoded)
            .map_err(self.error())?;
        tracing::info!(%piece, blocks = done.blocks, roots = ?done.roots, "payload blocks indexed");
        Ok(Some(done))
    }

    /// What indexing `piece` found; `None` when it is not (completely) indexed.
    ///
    /// # Errors
    /// [`MarketError::Records`].
    pub fn indexed(&self, piece: &PieceCid) -> MarketResult<Option<IndexedPayload>> {
        match self
            .records
            .get(MarketTree::BlockPieces, &piece.to_bytes())
            .map_err(self.error())?
        {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| MarketError::Records {
                        at: self.records.location(),
                        why: format!("the index summary of piece {piece} does not decode: {e}"),
                    })
            }
        }
    }

    fn is_indexed(&self, piece: &PieceCid) -> MarketResult<bool> {
        Ok(self
            .records
            .get(MarketTree::BlockPieces, &piece.to_bytes())
            .map_err(self.error())?
            .is_some())
    }

    /// Where the block `cid` lies, in completely indexed pieces (at most [`MAX_LOCATIONS`]).
    ///
    /// # Errors
    /// [`MarketError::Records`].
    pub fn locate(&self, cid: &Cid) -> MarketResult<Vec<BlockLocation>> {
        let prefix = cid_prefix(cid);
        let mut out = Vec::new();
        let entries = self
            .records
            .scan(MarketTree::BlockIndex, &prefix)
            .map_err(self.error())?;
        for (key, value) in entries {
            let Some(piece) = key
                .get(prefix.len()..)
                .and_then(|b| PieceCid::from_bytes(b).ok())
            else {
                continue;
            };
            let Some((offset, length)) = parse_value(&value) else {
                continue;
            };
            if !self.is_indexed(&piece)? {
                continue;
            }
            out.push(BlockLocation {
                piece,
                offset,
                length,
            });
            if out.len() >= MAX_LOCATIONS {
                break;
            }
        }
        Ok(out)
    }

    /// The completely indexed pieces whose CAR header names `root`.
    ///
    /// # Errors
    /// [`MarketError::Records`].
    pub fn pieces_with_root(&self, root: &Cid) -> MarketResult<Vec<PieceCid>> {
        let prefix = cid_prefix(root);
        let mut out = Vec::new();
        let entries = self
            .records
            .scan(MarketTree::BlockRoots, &prefix)
            .map_err(self.error())?;
        for (key, _) in entries {
            let Some(piece) = key
                .get(prefix.len()..)
                .and_then(|b| PieceCid::from_bytes(b).ok())
            else {
                continue;
            };
            if self.is_indexed(&piece)? {
                out.push(piece);
            }
        }
        Ok(out)
    }

    /// Forgets `piece` (its deal ended, its sector is gone): it is unmarked first, so lookups
    /// stop answering it at once, then its locations and roots are removed (a scan of the whole
    /// index). Returns the locations removed.
    ///
    /// # Errors
    /// [`MarketError::Records`].
    pub fn remove_piece(&self, piece: &PieceCid) -> MarketResult<u64> {
        let piece_bytes = piece.to_bytes();
        let unmark = |tx: &mut dyn lode_records::Tx<MarketTree>| -> Result<(), Abort<KvError>> {
            tx.remove(MarketTree::BlockPieces, &piece_bytes)?;
            Ok(())
        };
        self.records.transaction(unmark).map_err(self.error())?;
        let mut removed = 0u64;
        for tree in [MarketTree::BlockIndex, MarketTree::BlockRoots] {
            let keys: Vec<Vec<u8>> = self
                .records
                .scan(tree, &[])
                .map_err(self.error())?
                .into_iter()
                .map(|(key, _)| key)
                .filter(|key| {
                    key.first()
                        .and_then(|&len| key.get(usize::from(len).saturating_add(1)..))
                        .is_some_and(|rest| rest == piece_bytes.as_slice())
                })
                .collect();
            self.records
                .transaction(|tx| -> Result<(), Abort<KvError>> {
                    for key in &keys {
                        tx.remove(tree, key)?;
                    }
                    Ok(())
                })
                .map_err(self.error())?;
            if tree == MarketTree::BlockIndex {
                removed = u64::try_from(keys.len()).unwrap_or(u64::MAX);
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests;
