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
//! It lives in sled trees beside the deal records (in the same database, [`BlockIndex::in_db`]),
//! or in a database of its own ([`BlockIndex::open`]):
//!
//! - `block_index`: `len(cid) ‖ cid ‖ piece CID` → `offset (u64 BE) ‖ length (u64 BE)`;
//! - `block_roots`: `len(root) ‖ root ‖ piece CID` → empty;
//! - `block_pieces`: `piece CID` → JSON [`IndexedPayload`], written last and flushed.
//!
//! **Invariants.** A location is answered only for a piece whose `block_pieces` entry exists,
//! which is written (and flushed) after all of its locations: a crash half-way through indexing
//! leaves locations no lookup answers, and indexing the payload again (which the deal service does
//! when it hands the deal off again after a restart) writes the same keys with the same values
//! (indexing is idempotent; a piece already indexed is not read again). Locations are hints: the
//! gateway checks every block it reads against its CID, so an index that disagrees with the piece
//! (a corrupted or replaced copy) makes an error, never wrong bytes.

use std::path::{Path, PathBuf};

use cid::Cid;
use lode_proofs::cid::PieceCid;
use serde::{Deserialize, Serialize};

use crate::car::{looks_like_car, scan_car};
use crate::error::{MarketError, MarketResult};

/// Locations written per sled batch while indexing.
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

/// The block index (see the module docs). Cheap to clone: clones share the trees.
#[derive(Clone, Debug)]
pub struct BlockIndex {
    path: PathBuf,
    db: sled::Db,
    blocks: sled::Tree,
    roots: sled::Tree,
    pieces: sled::Tree,
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
    /// Opens (or creates) a block index in a sled database of its own at `path`.
    ///
    /// # Errors
    /// [`MarketError::Records`] when it cannot be opened (another process holds it, …).
    pub fn open(path: impl AsRef<Path>) -> MarketResult<BlockIndex> {
        let path = path.as_ref().to_path_buf();
        let db = sled::open(&path).map_err(db_error(&path))?;
        BlockIndex::in_db(db, path)
    }

    /// The block index in the trees of an open database (the provider's deal database, whose
    /// directory is `path`).
    ///
    /// # Errors
    /// [`MarketError::Records`] when the trees cannot be opened.
    pub fn in_db(db: sled::Db, path: PathBuf) -> MarketResult<BlockIndex> {
        let blocks = db.open_tree("block_index").map_err(db_error(&path))?;
        let roots = db.open_tree("block_roots").map_err(db_error(&path))?;
        let pieces = db.open_tree("block_pieces").map_err(db_error(&path))?;
        Ok(BlockIndex {
            path,
            db,
            blocks,
            roots,
            pieces,
        })
    }

    fn error(&self) -> impl Fn(sled::Error) -> MarketError + '_ {
        db_error(&self.path)
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
        let mut batch = sled::Batch::default();
        let mut in_batch = 0usize;
        let mut roots_written = false;
        let scanned = scan_car(
            std::fs::File::open(payload).map_err(MarketError::io(payload))?,
            payload,
            |roots, at, _| {
                if !roots_written {
                    let mut rb = sled::Batch::default();
                    for root in roots {
                        let mut key = cid_prefix(root);
                        key.extend_from_slice(&piece_bytes);
                        rb.insert(key, Vec::new());
                    }
                    self.roots.apply_batch(rb).map_err(self.error())?;
                    roots_written = true;
                }
                batch.insert(
                    location_key(&at.cid, piece),
                    location_value(at.offset, at.length).to_vec(),
                );
                in_batch = in_batch.saturating_add(1);
                if in_batch >= BATCH {
                    self.blocks
                        .apply_batch(std::mem::take(&mut batch))
                        .map_err(self.error())?;
                    in_batch = 0;
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
        self.blocks.apply_batch(batch).map_err(self.error())?;
        let done = IndexedPayload {
            roots: summary.roots.iter().map(Cid::to_string).collect(),
            blocks: summary.blocks,
            payload_size: std::fs::metadata(payload)
                .map_err(MarketError::io(payload))?
                .len(),
            car_version: summary.version,
        };
        let encoded = serde_json::to_vec(&done).map_err(|e| MarketError::Records {
            path: self.path.clone(),
            why: format!("cannot encode the index summary of piece {piece}: {e}"),
        })?;
        // Everything above reaches the disk before the piece is marked indexed.
        self.db.flush().map_err(self.error())?;
        self.pieces
            .insert(piece_bytes, encoded)
            .map_err(self.error())?;
        self.db.flush().map_err(self.error())?;
        tracing::info!(%piece, blocks = done.blocks, roots = ?done.roots, "payload blocks indexed");
        Ok(Some(done))
    }

    /// What indexing `piece` found; `None` when it is not (completely) indexed.
    ///
    /// # Errors
    /// [`MarketError::Records`].
    pub fn indexed(&self, piece: &PieceCid) -> MarketResult<Option<IndexedPayload>> {
        match self.pieces.get(piece.to_bytes()).map_err(self.error())? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| MarketError::Records {
                        path: self.path.clone(),
                        why: format!("the index summary of piece {piece} does not decode: {e}"),
                    })
            }
        }
    }

    /// Where the block `cid` lies, in completely indexed pieces (at most [`MAX_LOCATIONS`]).
    ///
    /// # Errors
    /// [`MarketError::Records`].
    pub fn locate(&self, cid: &Cid) -> MarketResult<Vec<BlockLocation>> {
        let prefix = cid_prefix(cid);
        let mut out = Vec::new();
        for entry in self.blocks.scan_prefix(&prefix) {
            let (key, value) = entry.map_err(self.error())?;
            let Some(piece) = key
                .get(prefix.len()..)
                .and_then(|b| PieceCid::from_bytes(b).ok())
            else {
                continue;
            };
            let Some((offset, length)) = parse_value(&value) else {
                continue;
            };
            if !self
                .pieces
                .contains_key(piece.to_bytes())
                .map_err(self.error())?
            {
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
        for entry in self.roots.scan_prefix(&prefix) {
            let (key, _) = entry.map_err(self.error())?;
            let Some(piece) = key
                .get(prefix.len()..)
                .and_then(|b| PieceCid::from_bytes(b).ok())
            else {
                continue;
            };
            if self
                .pieces
                .contains_key(piece.to_bytes())
                .map_err(self.error())?
            {
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
        self.pieces.remove(&piece_bytes).map_err(self.error())?;
        self.db.flush().map_err(self.error())?;
        let mut removed = 0u64;
        for tree in [&self.blocks, &self.roots] {
            let mut batch = sled::Batch::default();
            for entry in tree.iter() {
                let (key, _) = entry.map_err(self.error())?;
                let Some(&len) = key.first() else { continue };
                let Some(rest) = key.get(usize::from(len).saturating_add(1)..) else {
                    continue;
                };
                if rest == piece_bytes.as_slice() {
                    batch.remove(key);
                    if std::ptr::eq(tree, &self.blocks) {
                        removed = removed.saturating_add(1);
                    }
                }
            }
            tree.apply_batch(batch).map_err(self.error())?;
        }
        self.db.flush().map_err(self.error())?;
        Ok(removed)
    }
}

fn db_error(path: &Path) -> impl Fn(sled::Error) -> MarketError + '_ {
    move |e| MarketError::Records {
        path: path.to_path_buf(),
        why: format!("block index: {e}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests;
