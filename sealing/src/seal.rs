//! The sector phases a miner schedules: AddPiece → PreCommit1 → PreCommit2 → Commit1 → Finalize, and
//! unsealing. Each phase reads the previous phases' files from the sector directory (see
//! [`crate::sector_dir`]) and records its own, so each can run in another process, later, or again after
//! a crash. PreCommit1 resumes from the last complete layer.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use lode_proofs::circuit::porep as porep_circuit;
use lode_proofs::files::PorepPublicFile;
use lode_proofs::fr32::{PADDED_BLOCK, PadWriter, RAW_BLOCK, UnpadWriter};
use lode_proofs::graph::Graph;
use lode_proofs::merkle::{Blake3TreeD, DiskTree, PoseidonTree, TreeConfig};
use lode_proofs::node::{
    NODE_SIZE, Node, nodes_as_bytes, nodes_as_bytes_mut, nodes_from_bytes, nodes_from_bytes_mut,
};
use lode_proofs::piece::{CommPHasher, PaddedPieceSize, PieceInfo, comm_d, piece_offsets};
use lode_proofs::porep::{self, ChallengeProof, ColumnOpening, PorepProof, PorepPublic};
use lode_proofs::sdr;
use lode_proofs::sector::{SectorSize, prover_id};
use memmap2::Mmap;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{SealError, SealResult, io_at};
use crate::labels::{
    BatchLabeller, BatchLayer, CpuBatchLabeller, CpuLabeller, Labeller, LayerBuf, MAX_BATCH,
};
use crate::parent_cache::ParentCache;
use crate::sector_dir::{HexNode, SectorDir, read_json, write_atomic, write_json};

/// Rows of tree R above the leaves that are not stored (recomputed from the replica when proving).
pub const TREE_R_DISCARD_ROWS: usize = 2;

/// Which sector: its size, owner and number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectorId {
    /// Sector size.
    pub size: SectorSize,
    /// The miner that seals it.
    pub miner_id: u64,
    /// Its number within the miner.
    pub sector_number: u64,
}

impl std::fmt::Display for SectorId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sector {} of miner {} ({})",
            self.sector_number, self.miner_id, self.size
        )
    }
}

/// A piece placed in the sector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceRecord {
    /// Its commitment.
    pub comm_p: HexNode,
    /// Its padded size.
    pub padded_size: u64,
    /// Payload bytes it holds (the rest of its capacity is zero fill).
    #[serde(alias = "payload_len")]
    pub payload_size: u64,
    /// Padded byte offset in the sector.
    pub offset: u64,
}

/// `sector.json`: which sector the directory holds, and its pieces.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SectorMeta {
    /// Sector size.
    #[serde(alias = "size", with = "lode_proofs::files::sector_size_name")]
    pub sector_size: SectorSize,
    /// Miner id.
    pub miner_id: u64,
    /// Sector number.
    pub sector_number: u64,
    /// Pieces in order.
    pub pieces: Vec<PieceRecord>,
}

impl SectorMeta {
    /// The sector this record names.
    pub fn id(&self) -> SectorId {
        SectorId {
            size: self.sector_size,
            miner_id: self.miner_id,
            sector_number: self.sector_number,
        }
    }
}

/// What a command says about the sector it works on; `None` means "whatever the directory records".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SectorSpec {
    /// The sector size (needed to start a new sector).
    pub size: Option<SectorSize>,
    /// The miner (default for a new sector: [`SectorSpec::DEFAULT_MINER_ID`]).
    pub miner_id: Option<u64>,
    /// The sector number (default for a new sector: 0).
    pub sector_number: Option<u64>,
}

impl SectorSpec {
    /// The miner id of a new sector when none is given (a test miner).
    pub const DEFAULT_MINER_ID: u64 = 1000;

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.sector_number {
            parts.push(format!("sector {n}"));
        }
        if let Some(m) = self.miner_id {
            parts.push(format!("miner {m}"));
        }
        if let Some(s) = self.size {
            parts.push(s.name().to_string());
        }
        parts.join(", ")
    }
}

/// The identity of the sector in `dir`: read from its `sector.json` and checked against everything
/// `spec` names. Without a record, `create` starts a new sector (its size is then required) and
/// records it at once; otherwise a missing record is an error. The caller holds the sector's lock.
pub fn sector_identity(dir: &SectorDir, spec: &SectorSpec, create: bool) -> SealResult<SectorId> {
    let path = dir.sector_meta();
    if path.exists() {
        let meta: SectorMeta = read_json(&path, "this command", "AddPiece")?;
        let id = meta.id();
        let differs = spec.size.is_some_and(|s| s != id.size)
            || spec.miner_id.is_some_and(|m| m != id.miner_id)
            || spec.sector_number.is_some_and(|n| n != id.sector_number);
        if differs {
            return Err(SealError::WrongSector {
                expected: spec.describe(),
                found: id.to_string(),
            });
        }
        return Ok(id);
    }
    if !create {
        return Err(SealError::NoSector {
            path: dir.root().to_path_buf(),
        });
    }
    let id = SectorId {
        size: spec.size.ok_or(SealError::SizeNeeded)?,
        miner_id: spec.miner_id.unwrap_or(SectorSpec::DEFAULT_MINER_ID),
        sector_number: spec.sector_number.unwrap_or(0),
    };
    write_json(
        &path,
        &SectorMeta {
            sector_size: id.size,
            miner_id: id.miner_id,
            sector_number: id.sector_number,
            pieces: Vec::new(),
        },
    )?;
    Ok(id)
}

/// `pc1.json`: what PreCommit1 produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreCommit1Output {
    /// The ticket used.
    pub ticket: HexNode,
    /// The data commitment.
    pub comm_d: HexNode,
    /// The replica id.
    pub replica_id: HexNode,
    /// BLAKE3 of each layer file, layer 1 first.
    pub layer_checksums: Vec<HexNode>,
    /// BLAKE3 of the unsealed file that was sealed (checked by PreCommit2 before it encodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsealed_checksum: Option<HexNode>,
}

/// `pc2.json`: what PreCommit2 produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreCommit2Output {
    /// The replica id of the PreCommit1 record it was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_id: Option<HexNode>,
    /// Root of tree C.
    pub comm_c: HexNode,
    /// Root of tree R.
    pub comm_r_last: HexNode,
    /// `Poseidon_2(comm_c, comm_r_last)`.
    pub comm_r: HexNode,
}

/// Progress of a running phase, for progress bars and cancellation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Labelling `layer` of `layers`: `done` of `nodes` nodes.
    Layer {
        /// Layer being labelled (1-based).
        layer: usize,
        /// Layers in all.
        layers: usize,
        /// Nodes done.
        done: u64,
        /// Nodes in the layer.
        nodes: u64,
    },
    /// A layer found complete on disk and not recomputed.
    LayerResumed {
        /// The layer.
        layer: usize,
    },
    /// A named step started (`tree D`, `columns`, `tree C`, `encoding`, `tree R`, …).
    Step(&'static str),
    /// A phase found complete on disk and not run again.
    PhaseDone(&'static str),
    /// Proving SNARK partitions: `done` of `total`.
    Partition {
        /// Partitions proven.
        done: usize,
        /// Partitions in all.
        total: usize,
    },
}

/// A progress callback: return `ControlFlow::Break(())` to cancel.
pub type ProgressFn<'a> = &'a mut dyn FnMut(Progress) -> ControlFlow<()>;

/// A progress callback that ignores progress and never cancels.
pub fn no_progress(_: Progress) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

fn load_meta(dir: &SectorDir, id: &SectorId, phase: &'static str) -> SealResult<SectorMeta> {
    let meta: SectorMeta = match read_json(&dir.sector_meta(), phase, "AddPiece") {
        Ok(m) => m,
        // A sector without pieces is committed capacity: all zeros.
        Err(SealError::MissingPhase { .. }) => SectorMeta {
            sector_size: id.size,
            miner_id: id.miner_id,
            sector_number: id.sector_number,
            pieces: Vec::new(),
        },
        Err(e) => return Err(e),
    };
    if meta.id() != *id {
        return Err(SealError::WrongSector {
            expected: id.to_string(),
            found: meta.id().to_string(),
        });
    }
    Ok(meta)
}

fn piece_infos(meta: &SectorMeta) -> SealResult<Vec<PieceInfo>> {
    meta.pieces
        .iter()
        .map(|p| {
            Ok(PieceInfo {
                comm_p: p.comm_p.0,
                size: PaddedPieceSize::new(p.padded_size)?,
            })
        })
        .collect()
}

/// Passes bytes on to a writer and to a CommP hasher.
struct Tee<'a, W> {
    out: W,
    commp: &'a mut CommPHasher,
}

impl<W: Write> Write for Tee<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.commp.write_all(&buf[..n])?;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// AddPiece: appends a piece of `payload_len` bytes read from `payload` to the sector's unsealed file —
/// aligned to its own size, fr32-padded, zero-filled to its padded size — and records it. Returns the
/// piece with its CommP. On any error the sector's record is unchanged.
pub fn add_piece(
    dir: &SectorDir,
    id: &SectorId,
    payload: impl Read,
    payload_len: u64,
) -> SealResult<PieceRecord> {
    add_piece_sized(
        dir,
        id,
        payload,
        payload_len,
        PaddedPieceSize::for_payload(payload_len)?,
    )
}

/// AddPiece for a piece of a given padded `size` (a deal's piece, which may be larger than the
/// smallest piece that holds its payload): the `payload_len` bytes of `payload` zero-filled to
/// `size`'s unpadded capacity, placed as [`add_piece`] places a piece. The returned CommP is that
/// of the zero-filled piece (what the deal names).
///
/// # Errors
/// [`SealError::Piece`] when the payload is longer than the piece holds; the errors of
/// [`add_piece`].
pub fn add_piece_sized(
    dir: &SectorDir,
    id: &SectorId,
    payload: impl Read,
    payload_len: u64,
    size: PaddedPieceSize,
) -> SealResult<PieceRecord> {
    let mut meta = load_meta(dir, id, "AddPiece")?;
    if dir.pc1().exists() || dir.pc1_progress().exists() {
        return Err(SealError::TooLate {
            phase: "AddPiece",
            reason: "PreCommit1 has started on this sector, so its pieces are fixed; put the piece in a new sector",
        });
    }
    if payload_len > size.unpadded() {
        return Err(lode_proofs::piece::PieceError::PayloadTooLarge(payload_len).into());
    }
    let mut sizes = piece_infos(&meta)?
        .iter()
        .map(|p| p.size)
        .collect::<Vec<_>>();
    sizes.push(size);
    let offsets = piece_offsets(&sizes);
    let offset = offsets[offsets.len() - 2];
    if offsets[offsets.len() - 1] > id.size.bytes() {
        return Err(SealError::PieceDoesNotFit {
            needed: size.bytes(),
            offset,
            sector_size: id.size.bytes(),
        });
    }

    let path = dir.unsealed();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_at(&path))?;
    // Bytes past the recorded pieces are leftovers of an interrupted AddPiece: overwrite them.
    file.set_len(offset).map_err(io_at(&path))?;
    file.seek(SeekFrom::Start(offset)).map_err(io_at(&path))?;
    let mut commp = CommPHasher::new();
    // Raw bytes go both to CommP and, padded, to the file.
    let copied = {
        let padder = PadWriter::new(io::BufWriter::with_capacity(1 << 20, &mut file));
        let mut tee = Tee {
            out: padder,
            commp: &mut commp,
        };
        let copied = io::copy(&mut payload.take(payload_len), &mut tee).map_err(io_at(&path))?;
        let Tee { out, .. } = tee;
        out.finish()
            .and_then(|mut w| w.flush())
            .map_err(io_at(&path))?;
        copied
    };
    if copied != payload_len {
        return Err(SealError::WrongFileSize {
            path: path.clone(),
            expected: payload_len,
            found: copied,
        });
    }
    file.set_len(offset + size.bytes()).map_err(io_at(&path))?;
    file.sync_all().map_err(io_at(&path))?;
    let c = commp.finish_as(size)?;
    let record = PieceRecord {
        comm_p: HexNode(c.comm_p),
        padded_size: size.bytes(),
        payload_size: payload_len,
        offset,
    };
    meta.pieces.push(record.clone());
    write_json(&dir.sector_meta(), &meta)?;
    tracing::info!(%id, offset, padded = size.bytes(), comm_p = %c.comm_p, "piece added");
    Ok(record)
}

/// A piece file a command placed (or found already placed) in the sector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedPiece {
    /// The file.
    pub file: std::path::PathBuf,
    /// Its record in the sector.
    pub record: PieceRecord,
    /// False when the sector already held it (a re-run): nothing was written.
    pub added: bool,
}

/// How [`place_pieces`] matches the files it is given against the pieces the sector already holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The files are the sector's whole piece list, in order (`lode seal run`): the first ones may
    /// already be placed (by an earlier, interrupted run) and must then be the same pieces.
    AllInOrder,
    /// The files are appended (`lode seal add-piece`); a file the sector already holds is recognised by
    /// its CommP and size and not added again.
    Append,
}

/// The CommP and payload size of a file, streamed.
fn commp_of_file(path: &Path) -> SealResult<(Node, u64)> {
    let file = File::open(path).map_err(io_at(path))?;
    let mut hasher = CommPHasher::new();
    let len = io::copy(
        &mut io::BufReader::with_capacity(1 << 20, file),
        &mut hasher,
    )
    .map_err(io_at(path))?;
    Ok((hasher.finish()?.comm_p, len))
}

/// AddPiece for piece files, safe to re-run: pieces the sector already holds (recognised by their
/// CommP) are reported and skipped, so a command interrupted after some pieces were placed can be run
/// again unchanged.
pub fn place_pieces(
    dir: &SectorDir,
    id: &SectorId,
    files: &[std::path::PathBuf],
    placement: Placement,
) -> SealResult<Vec<PlacedPiece>> {
    let recorded = load_meta(dir, id, "AddPiece")?.pieces;
    if placement == Placement::AllInOrder && recorded.len() > files.len() {
        return Err(SealError::ExtraPieces {
            recorded: recorded.len(),
            given: files.len(),
        });
    }
    let mut placed = Vec::with_capacity(files.len());
    for (index, file) in files.iter().enumerate() {
        let len = std::fs::metadata(file).map_err(io_at(file))?.len();
        let known = match placement {
            Placement::AllInOrder => recorded.get(index).cloned().map(|r| vec![r]),
            Placement::Append => {
                let same_size: Vec<PieceRecord> = recorded
                    .iter()
                    .filter(|r| r.payload_size == len)
                    .cloned()
                    .collect();
                (!same_size.is_empty()).then_some(same_size)
            }
        };
        if let Some(candidates) = known {
            let (comm_p, size) = commp_of_file(file)?;
            if let Some(r) = candidates
                .iter()
                .find(|r| r.comm_p.0 == comm_p && r.payload_size == size)
            {
                tracing::info!(%id, file = %file.display(), offset = r.offset, "piece already placed");
                placed.push(PlacedPiece {
                    file: file.clone(),
                    record: r.clone(),
                    added: false,
                });
                continue;
            }
            if placement == Placement::AllInOrder
                && let Some(r) = candidates.first()
            {
                return Err(SealError::PieceMismatch {
                    index,
                    file: file.clone(),
                    given: comm_p.to_hex(),
                    recorded: r.comm_p.0.to_hex(),
                });
            }
        }
        let f = File::open(file).map_err(io_at(file))?;
        let record = add_piece(dir, id, io::BufReader::with_capacity(1 << 20, f), len)?;
        placed.push(PlacedPiece {
            file: file.clone(),
            record,
            added: true,
        });
    }
    Ok(placed)
}

/// Maps a file read-only, checking its length.
fn map_file(path: &Path, expected: u64) -> SealResult<Mmap> {
    let file = File::open(path).map_err(io_at(path))?;
    let found = file.metadata().map_err(io_at(path))?.len();
    if found != expected {
        return Err(SealError::WrongFileSize {
            path: path.to_path_buf(),
            expected,
            found,
        });
    }
    // SAFETY: sector files are written once under a temporary name and renamed; nothing writes them
    // while a phase has them mapped.
    unsafe { Mmap::map(&file) }.map_err(io_at(path))
}

fn as_nodes(map: &Mmap) -> &[Node] {
    nodes_from_bytes(map).unwrap_or_default()
}

/// Creates `path.tmp` of `len` bytes, lets `fill` write it through a map, then fsyncs and renames it.
fn write_mapped(
    path: &Path,
    len: u64,
    fill: impl FnOnce(&mut [Node]) -> SealResult<()>,
) -> SealResult<()> {
    let durable = |e: lode_proofs::durable::DurableError| SealError::Io {
        path: e.path,
        source: e.source,
    };
    let mut file = lode_proofs::durable::AtomicFile::create(path).map_err(durable)?;
    {
        let mut map = file.map_mut(len).map_err(durable)?;
        fill(nodes_from_bytes_mut(&mut map).unwrap_or_default())?;
        map.flush().map_err(durable)?;
    }
    file.commit().map_err(durable)
}

/// Zero-fills the unsealed file to the sector size (committed capacity after the last piece).
fn complete_unsealed(dir: &SectorDir, id: &SectorId, meta: &SectorMeta) -> SealResult<()> {
    let path = dir.unsealed();
    let end = meta.pieces.last().map_or(0, |p| p.offset + p.padded_size);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_at(&path))?;
    let len = file.metadata().map_err(io_at(&path))?.len();
    if len != id.size.bytes() {
        file.set_len(end).map_err(io_at(&path))?;
        file.set_len(id.size.bytes()).map_err(io_at(&path))?;
        file.sync_all().map_err(io_at(&path))?;
    }
    Ok(())
}

/// Sets its flag when dropped: tells a helper thread of a scope to stop however the scope ends.
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Buffers of streamed labels in flight to the layer writer (2 MiB each).
const STREAM_DEPTH: usize = 8;

/// Writes a layer file of `len` bytes from the buffers received on `rx`, hashing them as they pass
/// and handing each buffer back on `free`. Returns the layer's checksum once the file is committed,
/// or `None` (and no file) when the stream ends short of `len` bytes.
fn stream_layer(
    path: &Path,
    len: u64,
    rx: mpsc::Receiver<Vec<u8>>,
    free: mpsc::Sender<Vec<u8>>,
) -> SealResult<Option<Node>> {
    let durable = |e: lode_proofs::durable::DurableError| SealError::Io {
        path: e.path,
        source: e.source,
    };
    let mut file = lode_proofs::durable::AtomicFile::create(path).map_err(durable)?;
    let mut hasher = blake3::Hasher::new();
    let mut written = 0u64;
    for buf in rx {
        written = written.saturating_add(buf.len() as u64);
        if written > len {
            return Err(SealError::Inconsistent(
                "a streamed layer is longer than the sector",
            ));
        }
        file.write_all(&buf).map_err(io_at(file.tmp_path()))?;
        hasher.update(&buf);
        // The labeller may have finished; then the buffer is simply dropped.
        let _ = free.send(buf);
    }
    if written != len {
        // Dropping the file removes its temporary name.
        return Ok(None);
    }
    file.commit().map_err(durable)?;
    Ok(Some(Node(*hasher.finalize().as_bytes())))
}

fn layer_checksum(nodes: &[Node]) -> Node {
    Node(*blake3::hash(nodes_as_bytes(nodes)).as_bytes())
}

/// BLAKE3 of a whole sector-sized file.
fn file_checksum(path: &Path, len: u64) -> SealResult<Node> {
    let map = map_file(path, len)?;
    let mut hasher = blake3::Hasher::new();
    hasher.update(&map);
    Ok(Node(*hasher.finalize().as_bytes()))
}

/// The seed of the Commit1 output on disk, if Commit1 has run: what a re-run without `--seed` keeps.
pub fn recorded_seed(dir: &SectorDir) -> SealResult<Option<Node>> {
    if !dir.commit1_public().exists() {
        return Ok(None);
    }
    let rec: PorepPublicFile = read_json(&dir.commit1_public(), "Commit1", "Commit1")?;
    Ok(Some(rec.seed))
}

/// Whether Finalize has run: the sector is sealed but its layers and tree C are gone.
pub fn finalized(dir: &SectorDir) -> bool {
    dir.pc2().exists() && !dir.layer(1).exists() && !dir.tree_c().exists()
}

/// The ticket PreCommit1 ran (or started) with, if it has: what a re-run without `--ticket` resumes.
pub fn recorded_ticket(dir: &SectorDir) -> SealResult<Option<Node>> {
    for path in [dir.pc1(), dir.pc1_progress()] {
        if path.exists() {
            let rec: PreCommit1Output = read_json(&path, "PreCommit1", "PreCommit1")?;
            return Ok(Some(rec.ticket.0));
        }
    }
    Ok(None)
}

/// Reads a complete layer file back, checking it against its recorded checksum.
fn read_layer(
    dir: &SectorDir,
    id: &SectorId,
    layer: usize,
    checksum: &Node,
    out: &mut [Node],
) -> SealResult<()> {
    let path = dir.layer(layer);
    let mut f = File::open(&path).map_err(io_at(&path))?;
    let found = f.metadata().map_err(io_at(&path))?.len();
    if found != id.size.bytes() {
        return Err(SealError::WrongFileSize {
            path,
            expected: id.size.bytes(),
            found,
        });
    }
    f.read_exact(nodes_as_bytes_mut(out))
        .map_err(io_at(&path))?;
    if layer_checksum(out) != *checksum {
        return Err(SealError::CorruptedLayer { path, layer });
    }
    Ok(())
}

/// Where one sector's PreCommit1 starts.
enum Pc1Start {
    /// Done already, and PreCommit2 has used its layers.
    Done(PreCommit1Output),
    /// To do or to finish: the record of the layers done so far (maybe none).
    Todo(PreCommit1Output),
}

/// The checks and records every PreCommit1 starts with: CommD of the pieces, the replica id for
/// `ticket`, a finished phase recognised, another ticket refused, the layers recorded so far.
fn pc1_start(dir: &SectorDir, id: &SectorId, ticket: Node) -> SealResult<Pc1Start> {
    let meta = load_meta(dir, id, "PreCommit1")?;
    let pieces = piece_infos(&meta)?;
    let sector = PaddedPieceSize::new(id.size.bytes())?;
    let comm_d = comm_d(sector, &pieces)?;
    // Tickets are chain randomness made into a node (SPEC §4.4) before anything uses them.
    let ticket = lode_proofs::node::trunc254(ticket.0);
    let replica_id = sdr::replica_id(
        &prover_id(id.miner_id),
        id.sector_number,
        &ticket,
        &comm_d,
        &id.size.porep_id(),
    );

    // Done already: the same inputs are a no-op once PreCommit2 has used the layers (before that,
    // the layers are checked below and a damaged one is recomputed); another ticket would orphan
    // every later phase.
    let mut recorded_done = None;
    if dir.pc1().exists() {
        let recorded: PreCommit1Output = read_json(&dir.pc1(), "PreCommit1", "PreCommit1")?;
        if recorded.replica_id.0 == replica_id {
            if dir.pc2().exists() {
                return Ok(Pc1Start::Done(recorded));
            }
            recorded_done = Some(recorded);
        } else if recorded.ticket.0 != ticket {
            return Err(SealError::TicketMismatch {
                recorded: recorded.ticket.0.to_hex(),
            });
        } else {
            return Err(SealError::Changed {
                path: dir.sector_meta(),
                recorded_by: "PreCommit1",
            });
        }
    }
    // Resume: the record of the layers done so far for this replica id.
    let progress_path = dir.pc1_progress();
    let progress_record = match recorded_done {
        Some(r) => Ok(r),
        None => read_json::<PreCommit1Output>(&progress_path, "PreCommit1", "PreCommit1"),
    };
    let done: PreCommit1Output = match progress_record {
        Ok(p) if p.replica_id.0 == replica_id => p,
        Ok(p) if p.ticket.0 != ticket => {
            return Err(SealError::TicketMismatch {
                recorded: p.ticket.0.to_hex(),
            });
        }
        _ => PreCommit1Output {
            ticket: HexNode(ticket),
            comm_d: HexNode(comm_d),
            replica_id: HexNode(replica_id),
            layer_checksums: Vec::new(),
            unsealed_checksum: None,
        },
    };
    complete_unsealed(dir, id, &meta)?;
    if !dir.sector_meta().exists() {
        write_json(&dir.sector_meta(), &meta)?;
    }
    Ok(Pc1Start::Todo(done))
}

/// PreCommit1: CommD, tree D and every SDR layer for `ticket`. Labels are computed by `labeller`
/// (the CPU labeller over the parent cache in `cache_dir` when `None`). Layers already on disk for the
/// same ticket, with matching checksums, are not recomputed.
pub fn pre_commit1(
    dir: &SectorDir,
    id: &SectorId,
    ticket: Node,
    cache_dir: &Path,
    labeller: Option<&dyn Labeller>,
    progress: ProgressFn<'_>,
) -> SealResult<PreCommit1Output> {
    let mut done = match pc1_start(dir, id, ticket)? {
        Pc1Start::Done(recorded) => {
            if progress(Progress::PhaseDone("PreCommit1")).is_break() {
                return Err(SealError::Cancelled);
            }
            return Ok(recorded);
        }
        Pc1Start::Todo(done) => done,
    };
    let replica_id = done.replica_id.0;
    let comm_d = done.comm_d.0;
    let progress_path = dir.pc1_progress();
    let cache = ParentCache::open_or_build(cache_dir, id.size)?;
    let cpu = CpuLabeller::new(&cache);
    let labeller = labeller.unwrap_or(&cpu);
    let layers = id.size.layers();
    let n = id.size.nodes() as usize;

    let stop_prefault = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| -> SealResult<()> {
        // Tree D and the unsealed file's checksum need only the data: computed on the other core
        // while the layers are labelled.
        let tree_d = s.spawn(|| -> SealResult<(Node, Node)> {
            let tree = DiskTree::<Blake3TreeD>::build_over_file(
                &id.size.tree_d_shape(),
                &dir.unsealed(),
                &dir.tree_d(),
                TreeConfig::default(),
            )?;
            Ok((
                tree.root(),
                file_checksum(&dir.unsealed(), id.size.bytes())?,
            ))
        });

        let mut prev = LayerBuf::new(n)?;
        let mut cur = LayerBuf::new(n)?;
        // Both buffers' pages are faulted in on another core ahead of the labeller, in the order
        // it fills them (`Prefault`); stopped when this scope ends early.
        let (first_buf, second_buf) = (cur.prefault(), prev.prefault());
        let _stop_prefault = StopOnDrop(&stop_prefault);
        let stop = &stop_prefault;
        s.spawn(move || first_buf.run(stop) + second_buf.run(stop));
        let mut first = 1;
        // Keep the complete layers whose files still match; the last of them seeds the next layer.
        let recorded = done.layer_checksums.clone();
        for (i, sum) in recorded.iter().enumerate() {
            match read_layer(dir, id, i + 1, &sum.0, cur.nodes_mut()) {
                Ok(()) => {
                    std::mem::swap(&mut prev, &mut cur);
                    first = i + 2;
                    if progress(Progress::LayerResumed { layer: i + 1 }).is_break() {
                        return Err(SealError::Cancelled);
                    }
                }
                Err(e) => {
                    tracing::warn!(layer = i + 1, error = %e, "recomputing from this layer");
                    done.layer_checksums.truncate(i);
                    break;
                }
            }
        }
        // A finished layer's file is written and checksummed on another thread while the next
        // layer is labelled (both only read it); its checksum is recorded, in order, before the
        // buffers turn over.
        let save = |layer: usize, nodes: &[Node]| -> SealResult<Node> {
            write_atomic(&dir.layer(layer), nodes_as_bytes(nodes))?;
            Ok(layer_checksum(nodes))
        };
        for layer in first..=layers {
            let started = Instant::now();
            let mut report = |d: u64| {
                progress(Progress::Layer {
                    layer,
                    layers,
                    done: d,
                    nodes: n as u64,
                })
            };
            let (prev_nodes, cur_nodes) = (prev.nodes(), cur.nodes_mut());
            let (labelled, written) = std::thread::scope(|ls| {
                let writing =
                    (layer > first).then(|| ls.spawn(move || save(layer - 1, prev_nodes)));
                let prev_layer = (layer > 1).then_some(prev_nodes);
                let labelled = if layer == layers {
                    // The last layer goes to its file as it is labelled (nothing labels after it).
                    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(STREAM_DEPTH);
                    let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
                    let path = dir.layer(layer);
                    let bytes = id.size.bytes();
                    let streaming = ls.spawn(move || stream_layer(&path, bytes, rx, free_tx));
                    let mut sink = move |nodes: &[Node]| -> SealResult<()> {
                        let mut buf = free_rx.try_recv().unwrap_or_default();
                        buf.clear();
                        buf.extend_from_slice(nodes_as_bytes(nodes));
                        tx.send(buf)
                            .map_err(|_| SealError::Inconsistent("the layer writer stopped"))
                    };
                    let labelled = labeller.label_layer_streaming(
                        &replica_id,
                        layer as u32,
                        prev_layer,
                        cur_nodes,
                        &mut report,
                        &mut sink,
                    );
                    // Closes the stream: the writer commits a whole layer, or discards a partial one.
                    drop(sink);
                    let streamed = match streaming.join() {
                        Ok(r) => r,
                        Err(panic) => std::panic::resume_unwind(panic),
                    };
                    match (labelled, streamed) {
                        (_, Err(e)) | (Err(e), _) => Err(e),
                        (Ok(()), Ok(Some(sum))) => Ok(Some(sum)),
                        (Ok(()), Ok(None)) => Err(SealError::Inconsistent(
                            "the labeller did not hand out its whole last layer",
                        )),
                    }
                } else {
                    labeller
                        .label_layer(
                            &replica_id,
                            layer as u32,
                            prev_layer,
                            cur_nodes,
                            &mut report,
                        )
                        .map(|()| None)
                };
                let written = writing.map(|h| match h.join() {
                    Ok(r) => r,
                    Err(panic) => std::panic::resume_unwind(panic),
                });
                (labelled, written)
            });
            if let Some(sum) = written {
                done.layer_checksums.push(HexNode(sum?));
                write_json(&progress_path, &done)?;
            }
            if let Some(sum) = labelled? {
                done.layer_checksums.push(HexNode(sum));
                write_json(&progress_path, &done)?;
            }
            tracing::info!(
                layer,
                seconds = started.elapsed().as_secs_f64(),
                "layer labelled"
            );
            std::mem::swap(&mut prev, &mut cur);
        }
        let (root, unsealed_sum) = match tree_d.join() {
            Ok(r) => r?,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        done.unsealed_checksum = Some(HexNode(unsealed_sum));
        if root != comm_d {
            return Err(SealError::Inconsistent(
                "tree D over the unsealed file differs from CommD of the pieces",
            ));
        }
        Ok(())
    })?;
    write_json(&dir.pc1(), &done)?;
    Ok(done)
}

/// One sector of a batched PreCommit1 ([`pre_commit1_batch`]).
#[derive(Clone, Copy, Debug)]
pub struct BatchSector<'a> {
    /// Its directory (locked by the caller).
    pub dir: &'a SectorDir,
    /// Which sector.
    pub id: SectorId,
    /// Its ticket.
    pub ticket: Node,
}

/// The memory a batched PreCommit1 of `sectors` sectors of `size` labels in: two
/// sector-interleaved layers of every sector, and one sector's layer for writing files.
pub fn batch_memory(size: SectorSize, sectors: u64) -> u64 {
    size.bytes()
        .saturating_mul(sectors.saturating_mul(2).saturating_add(1))
}

/// PreCommit1 of several sectors of one size together: each sector's CommD, tree D and layers,
/// the layers labelled on `gpu` ([`crate::labels::GpuBatchLabeller`]) or, when `None`, by the
/// multi-sector CPU labeller, in one walk of
/// the graph for all of them. Every file and record is exactly what [`pre_commit1`] writes for
/// each sector on its own. Sectors already through PreCommit1 are returned as recorded; the
/// others resume together from the first layer one of them lacks. Memory: [`batch_memory`].
///
/// # Errors
/// [`SealError::Inconsistent`] for sectors of different sizes, a directory named twice or more
/// than [`crate::labels::MAX_BATCH`] sectors; what [`pre_commit1`] returns for each sector.
pub fn pre_commit1_batch(
    sectors: &[BatchSector<'_>],
    cache_dir: &Path,
    gpu: Option<&crate::accel::Gpu>,
    progress: ProgressFn<'_>,
) -> SealResult<Vec<PreCommit1Output>> {
    let Some(first_sector) = sectors.first() else {
        return Ok(Vec::new());
    };
    let size = first_sector.id.size;
    if sectors.iter().any(|s| s.id.size != size) {
        return Err(SealError::Inconsistent(
            "a PreCommit1 batch holds sectors of one size",
        ));
    }
    if sectors.len() > MAX_BATCH {
        return Err(SealError::Inconsistent(
            "a PreCommit1 batch holds at most MAX_BATCH sectors",
        ));
    }
    let mut paths: Vec<&Path> = sectors.iter().map(|s| s.dir.root()).collect();
    paths.sort();
    if paths.windows(2).any(|w| w[0] == w[1]) {
        return Err(SealError::Inconsistent(
            "a sector directory is named twice in a PreCommit1 batch",
        ));
    }
    let mut results: Vec<Option<PreCommit1Output>> = vec![None; sectors.len()];
    // The sectors still to label: (index in `sectors`, record so far).
    let mut todo: Vec<(usize, PreCommit1Output)> = Vec::new();
    for (i, s) in sectors.iter().enumerate() {
        match pc1_start(s.dir, &s.id, s.ticket)? {
            Pc1Start::Done(r) => results[i] = Some(r),
            Pc1Start::Todo(done) => todo.push((i, done)),
        }
    }
    if todo.is_empty() {
        if progress(Progress::PhaseDone("PreCommit1")).is_break() {
            return Err(SealError::Cancelled);
        }
        return Ok(results.into_iter().flatten().collect());
    }
    let cache = ParentCache::open_or_build(cache_dir, size)?;
    let cpu = CpuBatchLabeller::new(&cache);
    #[cfg(feature = "gpu")]
    let device = gpu.map(|g| crate::labels::GpuBatchLabeller::new(&cache, g));
    #[cfg(feature = "gpu")]
    let labeller: &dyn BatchLabeller = match &device {
        Some(d) => d,
        None => &cpu,
    };
    #[cfg(not(feature = "gpu"))]
    let labeller: &dyn BatchLabeller = match gpu {
        Some(g) => match *g {},
        None => &cpu,
    };
    tracing::debug!(
        labeller = labeller.name(),
        sectors = todo.len(),
        "labelling a batch"
    );
    let layers = size.layers();
    let n = size.nodes() as usize;
    let lanes = todo.len();
    let replica_ids: Vec<Node> = todo.iter().map(|(_, d)| d.replica_id.0).collect();
    let mut one = LayerBuf::new(n)?;

    // Resume from the first layer one of the sectors lacks (its files checked), seeded by every
    // sector's layer below it.
    let mut first = layers + 1;
    for (i, done) in &mut todo {
        let s = &sectors[*i];
        let mut complete = 0;
        for (l, sum) in done.layer_checksums.iter().enumerate() {
            match read_layer(s.dir, &s.id, l + 1, &sum.0, one.nodes_mut()) {
                Ok(()) => complete = l + 1,
                Err(e) => {
                    tracing::warn!(sector = %s.id, layer = l + 1, error = %e, "recomputing from this layer");
                    break;
                }
            }
        }
        done.layer_checksums.truncate(complete);
        first = first.min(complete + 1);
    }
    let mut prev = BatchLayer::new(n, lanes)?;
    let mut cur = BatchLayer::new(n, lanes)?;
    if first > 1 {
        for (lane, (i, done)) in todo.iter().enumerate() {
            let s = &sectors[*i];
            let sum = &done.layer_checksums[first - 2].0;
            read_layer(s.dir, &s.id, first - 1, sum, one.nodes_mut())?;
            prev.scatter(lane, one.nodes());
        }
        for layer in 1..first {
            if progress(Progress::LayerResumed { layer }).is_break() {
                return Err(SealError::Cancelled);
            }
        }
    }

    let stop_prefault = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| -> SealResult<()> {
        // The layer buffers' pages are faulted in ahead of the labeller, in the order it fills
        // them (as in `pre_commit1`).
        let (first_buf, second_buf) = (cur.prefault(), prev.prefault());
        let _stop_prefault = StopOnDrop(&stop_prefault);
        let stop = &stop_prefault;
        scope.spawn(move || first_buf.run(stop) + second_buf.run(stop));
        // Tree D of each sector and its unsealed file's checksum, on another core meanwhile.
        let indices: Vec<usize> = todo.iter().map(|(i, _)| *i).collect();
        let tree_d = scope.spawn(move || -> SealResult<Vec<(Node, Node)>> {
            indices
                .iter()
                .map(|&i| {
                    let s = &sectors[i];
                    let tree = DiskTree::<Blake3TreeD>::build_over_file(
                        &size.tree_d_shape(),
                        &s.dir.unsealed(),
                        &s.dir.tree_d(),
                        TreeConfig::default(),
                    )?;
                    Ok((tree.root(), file_checksum(&s.dir.unsealed(), size.bytes())?))
                })
                .collect()
        });
        // Each layer's files are written by a second thread while the next layer is labelled
        // from it (both only read it); a layer is recorded once its files are complete.
        let dirs: Vec<&SectorDir> = todo.iter().map(|(i, _)| sectors[*i].dir).collect();
        let mut record = |layer: usize, sums: Vec<Node>| -> SealResult<()> {
            for ((_, done), sum) in todo.iter_mut().zip(sums) {
                done.layer_checksums.truncate(layer - 1);
                done.layer_checksums.push(HexNode(sum));
            }
            for (dir, (_, done)) in dirs.iter().zip(todo.iter()) {
                write_json(&dir.pc1_progress(), done)?;
            }
            Ok(())
        };
        let mut pending: Option<usize> = None;
        for layer in first..=layers {
            let started = Instant::now();
            let mut report = |d: u64| {
                progress(Progress::Layer {
                    layer,
                    layers,
                    done: d,
                    nodes: n as u64,
                })
            };
            let (labelled, written) = std::thread::scope(|w| {
                let writer = pending.map(|l| {
                    let (prev, dirs, one) = (&prev, &dirs, &mut one);
                    w.spawn(move || write_batch_layer(l, prev, dirs, one))
                });
                let labelled = labeller.label_layers(
                    &replica_ids,
                    layer as u32,
                    (layer > 1).then_some(&prev),
                    &mut cur,
                    &mut report,
                );
                let written = writer.map(|h| match h.join() {
                    Ok(r) => r,
                    Err(panic) => std::panic::resume_unwind(panic),
                });
                (labelled, written)
            });
            if let (Some(l), Some(sums)) = (pending, written) {
                record(l, sums?)?;
            }
            labelled?;
            tracing::info!(
                layer,
                sectors = lanes,
                seconds = started.elapsed().as_secs_f64(),
                "layer labelled for a batch of sectors"
            );
            pending = Some(layer);
            std::mem::swap(&mut prev, &mut cur);
        }
        if let Some(l) = pending {
            let sums = write_batch_layer(l, &prev, &dirs, &mut one)?;
            record(l, sums)?;
        }
        let roots = match tree_d.join() {
            Ok(r) => r?,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        for ((_, done), (root, unsealed_sum)) in todo.iter_mut().zip(roots) {
            if root != done.comm_d.0 {
                return Err(SealError::Inconsistent(
                    "tree D over the unsealed file differs from CommD of the pieces",
                ));
            }
            done.unsealed_checksum = Some(HexNode(unsealed_sum));
        }
        Ok(())
    })?;
    for (i, done) in todo {
        write_json(&sectors[i].dir.pc1(), &done)?;
        results[i] = Some(done);
    }
    Ok(results.into_iter().flatten().collect())
}

/// Writes layer `layer` of every sector of `batch` to its directory (de-interleaved through
/// `one`), returning each sector's layer checksum.
fn write_batch_layer(
    layer: usize,
    batch: &BatchLayer,
    dirs: &[&SectorDir],
    one: &mut LayerBuf,
) -> SealResult<Vec<Node>> {
    let mut sums = Vec::with_capacity(dirs.len());
    for (lane, dir) in dirs.iter().enumerate() {
        batch.gather(lane, one.nodes_mut());
        write_atomic(&dir.layer(layer), nodes_as_bytes(one.nodes()))?;
        sums.push(layer_checksum(one.nodes()));
    }
    Ok(sums)
}

/// PreCommit2: columns and tree C, the replica and tree R, and `comm_r`.
pub fn pre_commit2(
    dir: &SectorDir,
    id: &SectorId,
    progress: ProgressFn<'_>,
) -> SealResult<PreCommit2Output> {
    pre_commit2_on(dir, id, None, progress)
}

/// [`pre_commit2`] with the column hashes and the levels of trees C and R computed on `gpu`
/// when one is given (`lode-gpu`'s Poseidon kernel): the same files, byte for byte.
pub fn pre_commit2_on(
    dir: &SectorDir,
    id: &SectorId,
    gpu: Option<&crate::accel::Gpu>,
    progress: ProgressFn<'_>,
) -> SealResult<PreCommit2Output> {
    load_meta(dir, id, "PreCommit2")?;
    let pc1: PreCommit1Output = read_json(&dir.pc1(), "PreCommit2", "PreCommit1")?;
    if dir.pc2().exists() {
        let done: PreCommit2Output = read_json(&dir.pc2(), "PreCommit2", "PreCommit2")?;
        if done.replica_id.is_none_or(|r| r == pc1.replica_id) {
            if progress(Progress::PhaseDone("PreCommit2")).is_break() {
                return Err(SealError::Cancelled);
            }
            return Ok(done);
        }
        return Err(SealError::Changed {
            path: dir.pc1(),
            recorded_by: "PreCommit2",
        });
    }
    let layers = id.size.layers();
    if pc1.layer_checksums.len() != layers {
        return Err(SealError::Inconsistent(
            "pc1.json does not record every layer",
        ));
    }
    let bytes = id.size.bytes();
    // The data must be what PreCommit1 committed to, or the replica would contradict comm_d.
    if let Some(sum) = &pc1.unsealed_checksum
        && file_checksum(&dir.unsealed(), bytes)? != sum.0
    {
        return Err(SealError::Changed {
            path: dir.unsealed(),
            recorded_by: "PreCommit1",
        });
    }
    let maps = (1..=layers)
        .map(|l| map_file(&dir.layer(l), bytes))
        .collect::<SealResult<Vec<_>>>()?;
    let layer_nodes: Vec<&[Node]> = maps.iter().map(as_nodes).collect();
    for (l, (nodes, sum)) in layer_nodes.iter().zip(&pc1.layer_checksums).enumerate() {
        if layer_checksum(nodes) != sum.0 {
            return Err(SealError::CorruptedLayer {
                path: dir.layer(l + 1),
                layer: l + 1,
            });
        }
    }
    let shape = id.size.tree_shape();

    let mut step = |s| {
        if progress(Progress::Step(s)).is_break() {
            Err(SealError::Cancelled)
        } else {
            Ok(())
        }
    };
    step("columns")?;
    #[cfg(feature = "gpu")]
    let level = gpu.map(crate::accel::level_hasher);
    #[cfg(feature = "gpu")]
    let level = level
        .as_ref()
        .map(|l| l as &lode_proofs::merkle::LevelHasher<'_>);
    #[cfg(not(feature = "gpu"))]
    let level: Option<&lode_proofs::merkle::LevelHasher<'_>> = gpu.map(|g| match *g {});
    write_mapped(&dir.columns(), bytes, |cols| {
        #[cfg(feature = "gpu")]
        if let Some(g) = gpu {
            return crate::accel::columns(g, &layer_nodes, cols);
        }
        cols.par_chunks_mut(4096)
            .enumerate()
            .try_for_each(|(chunk, out)| {
                // The chunk's columns side by side, hashed eight at a time where the CPU can.
                let mut labels = Vec::with_capacity(out.len() * layers);
                for i in 0..out.len() {
                    let v = chunk * 4096 + i;
                    labels.extend(layer_nodes.iter().map(|layer| layer[v]));
                }
                Ok(sdr::column_hashes(&labels, layers, out)?)
            })
    })?;
    step("tree C")?;
    let tree_c = DiskTree::<PoseidonTree>::build_over_file_with(
        &shape,
        &dir.columns(),
        &dir.tree_c(),
        TreeConfig::default(),
        level,
    )?;

    step("encoding")?;
    let data_map = map_file(&dir.unsealed(), bytes)?;
    let data = as_nodes(&data_map);
    let key = layer_nodes[layers - 1];
    write_mapped(&dir.sealed(), bytes, |replica| {
        replica
            .par_chunks_mut(1 << 14)
            .zip(data.par_chunks(1 << 14))
            .zip(key.par_chunks(1 << 14))
            .try_for_each(|((r, d), k)| {
                for ((r, d), k) in r.iter_mut().zip(d).zip(k) {
                    *r = sdr::encode(d, k)?;
                }
                Ok(())
            })
    })?;
    step("tree R")?;
    let tree_r = DiskTree::<PoseidonTree>::build_over_file_with(
        &shape,
        &dir.sealed(),
        &dir.tree_r(),
        TreeConfig {
            discard_rows: TREE_R_DISCARD_ROWS,
        },
        level,
    )?;
    let comm_r = sdr::comm_r(&tree_c.root(), &tree_r.root())?;
    let out = PreCommit2Output {
        replica_id: Some(pc1.replica_id),
        comm_c: HexNode(tree_c.root()),
        comm_r_last: HexNode(tree_r.root()),
        comm_r: HexNode(comm_r),
    };
    write_json(&dir.pc2(), &out)?;
    Ok(out)
}

/// The public inputs of this sector's PoRep for `seed`, from its records.
pub fn porep_public(dir: &SectorDir, id: &SectorId, seed: Node) -> SealResult<PorepPublic> {
    load_meta(dir, id, "Commit1")?;
    let pc1: PreCommit1Output = read_json(&dir.pc1(), "Commit1", "PreCommit1")?;
    let pc2: PreCommit2Output = read_json(&dir.pc2(), "Commit1", "PreCommit2")?;
    Ok(PorepPublic {
        size: id.size,
        miner_id: id.miner_id,
        sector_number: id.sector_number,
        ticket: pc1.ticket.0,
        seed: lode_proofs::node::trunc254(seed.0),
        comm_d: pc1.comm_d.0,
        comm_r: pc2.comm_r.0,
    })
}

/// Commit1: the vanilla PoRep proof for `seed`, checked natively before it is returned and stored in
/// `commit1.bin`.
pub fn commit1(
    dir: &SectorDir,
    id: &SectorId,
    seed: Node,
) -> SealResult<(PorepPublic, PorepProof)> {
    let public = porep_public(dir, id, seed)?;
    if let Some(proof) = commit1_done(dir, &public)? {
        return Ok((public, proof));
    }
    if finalized(dir) {
        return Err(SealError::TooLate {
            phase: "Commit1",
            reason: "the sector is finalized (its layers and trees C and D are deleted); Commit1 runs before Finalize",
        });
    }
    let pc2: PreCommit2Output = read_json(&dir.pc2(), "Commit1", "PreCommit2")?;
    let bytes = id.size.bytes();
    let layers = id.size.layers();
    let maps = (1..=layers)
        .map(|l| map_file(&dir.layer(l), bytes))
        .collect::<SealResult<Vec<_>>>()?;
    let layer_nodes: Vec<&[Node]> = maps.iter().map(as_nodes).collect();
    let tree_d = DiskTree::<Blake3TreeD>::open(&dir.tree_d(), Some(&dir.unsealed()))?;
    let tree_c = DiskTree::<PoseidonTree>::open(&dir.tree_c(), Some(&dir.columns()))?;
    let tree_r = DiskTree::<PoseidonTree>::open(&dir.tree_r(), Some(&dir.sealed()))?;
    if tree_d.root() != public.comm_d
        || tree_c.root() != pc2.comm_c.0
        || tree_r.root() != pc2.comm_r_last.0
    {
        return Err(SealError::Inconsistent(
            "a tree on disk differs from the recorded commitment",
        ));
    }
    let graph = Graph::new(id.size);
    let column = |v: u64| -> SealResult<ColumnOpening> {
        Ok(ColumnOpening {
            labels: layer_nodes.iter().map(|l| l[v as usize]).collect(),
            proof: tree_c.prove(v)?,
        })
    };
    let replica_id = public.replica_id();
    let partitions = (0..id.size.porep_partitions())
        .map(|k| {
            sdr::porep_partition_challenges(id.size, &replica_id, &public.seed, k)
                .into_iter()
                .map(|c| {
                    Ok(ChallengeProof {
                        data: tree_d.prove(c)?,
                        column: column(c)?,
                        base: graph
                            .base_parents(c)
                            .iter()
                            .map(|&p| column(u64::from(p)))
                            .collect::<SealResult<_>>()?,
                        exp: graph
                            .exp_parents(c)
                            .iter()
                            .map(|&p| column(u64::from(p)))
                            .collect::<SealResult<_>>()?,
                        replica: tree_r.prove(c)?,
                    })
                })
                .collect::<SealResult<Vec<_>>>()
        })
        .collect::<SealResult<Vec<_>>>()?;
    let proof = PorepProof {
        comm_c: pc2.comm_c.0,
        comm_r_last: pc2.comm_r_last.0,
        partitions,
    };
    porep::verify(&public, &proof)
        .map_err(|_| SealError::Inconsistent("the sector's own proof does not verify"))?;
    // A Groth16 proof of an earlier seed no longer matches: gone before the new record appears.
    remove_if_present(&dir.commit2())?;
    write_atomic(&dir.commit1(), &proof.to_bytes())?;
    write_json(&dir.commit1_public(), &PorepPublicFile::from(&public))?;
    Ok((public, proof))
}

/// The Commit1 output on disk, if it is complete and for exactly `public`.
fn commit1_done(dir: &SectorDir, public: &PorepPublic) -> SealResult<Option<PorepProof>> {
    if !dir.commit1_public().exists() || !dir.commit1().exists() {
        return Ok(None);
    }
    let recorded: PorepPublicFile = read_json(&dir.commit1_public(), "Commit1", "Commit1")?;
    if PorepPublic::from(recorded) != *public {
        return Ok(None);
    }
    let bytes = std::fs::read(dir.commit1()).map_err(io_at(&dir.commit1()))?;
    Ok(PorepProof::from_bytes(&bytes)
        .ok()
        .filter(|p| porep::verify(public, p).is_ok()))
}

fn remove_if_present(path: &Path) -> SealResult<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SealError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// The public inputs and vanilla proof Commit1 recorded, checked before anything is built on them:
/// `commit1.json` must agree with the sector's own records, and `commit1.bin` must prove it.
pub fn commit1_output(dir: &SectorDir, id: &SectorId) -> SealResult<(PorepPublic, PorepProof)> {
    let recorded: PorepPublicFile = read_json(&dir.commit1_public(), "Commit2", "Commit1")?;
    let public = PorepPublic::from(recorded);
    if porep_public(dir, id, public.seed)? != public {
        return Err(SealError::Changed {
            path: dir.commit1_public(),
            recorded_by: "PreCommit1 and PreCommit2",
        });
    }
    let path = dir.commit1();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(SealError::MissingPhase {
                phase: "Commit2",
                missing: "Commit1",
                path,
            });
        }
        Err(e) => return Err(SealError::Io { path, source: e }),
    };
    let proof = PorepProof::from_bytes(&bytes)
        .and_then(|p| porep::verify(&public, &p).map(|()| p))
        .map_err(|e| SealError::BadCommit1 {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    Ok((public, proof))
}

/// Commit2: the Groth16 PoRep proof (192 bytes per partition) of the Commit1 output, written to
/// `commit2.bin`. The inputs are checked first (see [`commit1_output`]) and the proof is verified
/// with the parameters' own verifying key before it is written, so a damaged input or parameter file
/// never yields a proof file. A `commit2.bin` that already proves the current Commit1 output is kept.
pub fn commit2<R: rand_core::CryptoRng>(
    dir: &SectorDir,
    id: &SectorId,
    params: &groth16::Parameters<bls12_381::Bls12>,
    rng: &mut R,
    progress: ProgressFn<'_>,
) -> SealResult<(PorepPublic, Vec<Vec<u8>>)> {
    commit2_on(dir, id, params, rng, None, progress)
}

/// [`commit2`] with the proofs' G1 sums on `device` when given ([`crate::accel::prover_device`]):
/// the same proofs, checked the same way.
pub fn commit2_on<R: rand_core::CryptoRng>(
    dir: &SectorDir,
    id: &SectorId,
    params: &groth16::Parameters<bls12_381::Bls12>,
    rng: &mut R,
    device: Option<&std::sync::Arc<dyn lode_proofs::prover::G1Msm>>,
    progress: ProgressFn<'_>,
) -> SealResult<(PorepPublic, Vec<Vec<u8>>)> {
    let (public, vanilla) = commit1_output(dir, id)?;
    let pvk = groth16::prepare_verifying_key(&params.vk);
    if let Ok(bytes) = std::fs::read(dir.commit2()) {
        let proofs: Vec<Vec<u8>> = bytes
            .chunks(lode_proofs::snark::PROOF_LEN)
            .map(<[u8]>::to_vec)
            .collect();
        if porep_circuit::verify(&pvk, &public, &proofs).is_ok() {
            if progress(Progress::PhaseDone("Commit2")).is_break() {
                return Err(SealError::Cancelled);
            }
            return Ok((public, proofs));
        }
    }
    let total = vanilla.partitions.len();
    let mut proofs = Vec::with_capacity(total);
    for k in 0..total {
        if progress(Progress::Partition { done: k, total }).is_break() {
            return Err(SealError::Cancelled);
        }
        proofs.push(porep_circuit::prove_partition_on(
            params, &public, &vanilla, k, rng, device,
        )?);
    }
    if progress(Progress::Partition { done: total, total }).is_break() {
        return Err(SealError::Cancelled);
    }
    porep_circuit::verify(&pvk, &public, &proofs).map_err(|_| {
        SealError::Inconsistent(
            "the new Groth16 proof does not verify under its own parameters; check the parameter files with `lode params check`",
        )
    })?;
    write_atomic(&dir.commit2(), &proofs.concat())?;
    Ok((public, proofs))
}

/// Finalize: deletes what Window PoSt and unsealing do not need — layers, columns, trees C and D, the
/// Commit1 output, and the unsealed copy unless `keep_unsealed`. Returns the bytes freed.
pub fn finalize(dir: &SectorDir, id: &SectorId, keep_unsealed: bool) -> SealResult<u64> {
    load_meta(dir, id, "Finalize")?;
    let _: PreCommit2Output = read_json(&dir.pc2(), "Finalize", "PreCommit2")?;
    let mut paths: Vec<_> = (1..=id.size.layers()).map(|l| dir.layer(l)).collect();
    paths.extend([
        dir.columns(),
        dir.tree_c(),
        dir.tree_d(),
        dir.commit1(),
        dir.pc1_progress(),
    ]);
    if !keep_unsealed {
        paths.push(dir.unsealed());
    }
    let mut freed = 0;
    for p in paths {
        match std::fs::metadata(&p) {
            Ok(m) => {
                std::fs::remove_file(&p).map_err(io_at(&p))?;
                freed += m.len();
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(SealError::Io { path: p, source: e }),
        }
    }
    Ok(freed)
}

/// Regenerates the last layer's labels (the encoding key) of a sealed sector.
fn regenerate_key(
    dir: &SectorDir,
    id: &SectorId,
    cache_dir: &Path,
    progress: ProgressFn<'_>,
) -> SealResult<LayerBuf> {
    let pc1: PreCommit1Output = read_json(&dir.pc1(), "Unseal", "PreCommit1")?;
    let cache = ParentCache::open_or_build(cache_dir, id.size)?;
    let labeller = CpuLabeller::new(&cache);
    let n = id.size.nodes() as usize;
    let layers = id.size.layers();
    let mut prev = LayerBuf::new(n)?;
    let mut cur = LayerBuf::new(n)?;
    for layer in 1..=layers {
        let mut report = |d: u64| {
            progress(Progress::Layer {
                layer,
                layers,
                done: d,
                nodes: n as u64,
            })
        };
        let below = (layer > 1).then_some(prev.nodes());
        labeller.label_layer(
            &pc1.replica_id.0,
            layer as u32,
            below,
            cur.nodes_mut(),
            &mut report,
        )?;
        std::mem::swap(&mut prev, &mut cur);
    }
    Ok(prev)
}

/// Unsealing: writes `len` payload bytes starting at unpadded byte `offset` of the sector, recovered
/// from the replica (labels are regenerated from the replica id; nothing but `sealed`, `pc1.json` and
/// the parent cache is needed).
pub fn unseal_range(
    dir: &SectorDir,
    id: &SectorId,
    cache_dir: &Path,
    offset: u64,
    len: u64,
    out: &mut dyn Write,
    progress: ProgressFn<'_>,
) -> SealResult<()> {
    load_meta(dir, id, "Unseal")?;
    let capacity = id.size.bytes() / PADDED_BLOCK as u64 * RAW_BLOCK as u64;
    if offset.checked_add(len).is_none_or(|end| end > capacity) {
        return Err(SealError::RangeOutOfSector {
            offset,
            len,
            capacity,
        });
    }
    let replica_map = map_file(&dir.sealed(), id.size.bytes())?;
    let replica = as_nodes(&replica_map);
    let key_buf = regenerate_key(dir, id, cache_dir, progress)?;
    let key = key_buf.nodes();
    // Whole fr32 blocks covering the range, decoded block by block and unpadded into `out`.
    let first_block = offset / RAW_BLOCK as u64;
    let skip = offset - first_block * RAW_BLOCK as u64;
    let nodes_per_block = PADDED_BLOCK / NODE_SIZE;
    let mut unpadder = UnpadWriter::with_limit(SkipWriter { inner: out, skip }, skip + len);
    let end_block = (offset + len).div_ceil(RAW_BLOCK as u64) as usize;
    let mut block = [Node::ZERO; 4];
    for b in first_block as usize..end_block {
        for (i, slot) in block.iter_mut().enumerate() {
            let v = b * nodes_per_block + i;
            *slot = sdr::decode(&replica[v], &key[v])?;
        }
        unpadder
            .write_all(nodes_as_bytes(&block))
            .map_err(io_at(&dir.sealed()))?;
    }
    unpadder.finish().map_err(|e| SealError::Io {
        path: dir.sealed(),
        source: e.into(),
    })?;
    Ok(())
}

/// Unseals piece `index` of the sector into `out` — exactly its payload bytes — and checks that they
/// hash to the piece's recorded CommP.
pub fn unseal_piece(
    dir: &SectorDir,
    id: &SectorId,
    cache_dir: &Path,
    index: usize,
    out: &mut dyn Write,
    progress: ProgressFn<'_>,
) -> SealResult<PieceRecord> {
    let meta = load_meta(dir, id, "Unseal")?;
    let Some(piece) = meta.pieces.get(index).cloned() else {
        return Err(SealError::RangeOutOfSector {
            offset: index as u64,
            len: 0,
            capacity: meta.pieces.len() as u64,
        });
    };
    let mut commp = CommPHasher::new();
    let mut tee = Tee {
        out,
        commp: &mut commp,
    };
    let offset = piece.offset / PADDED_BLOCK as u64 * RAW_BLOCK as u64;
    unseal_range(
        dir,
        id,
        cache_dir,
        offset,
        piece.payload_size,
        &mut tee,
        progress,
    )?;
    if commp
        .finish_as(PaddedPieceSize::new(piece.padded_size)?)?
        .comm_p
        != piece.comm_p.0
    {
        return Err(SealError::Inconsistent(
            "the unsealed piece does not hash to its CommP",
        ));
    }
    Ok(piece)
}

/// Reads `len` payload bytes starting at unpadded byte `offset` of the sector from its unsealed
/// copy (`unsealed`, fr32-padded), unpadding them into `out`: what a retrieval reads when the
/// unsealed copy is kept. Only the padded blocks covering the range are read.
///
/// # Errors
/// [`SealError::RangeOutOfSector`] for a range past the sector's capacity;
/// [`SealError::WrongFileSize`] when the unsealed copy is not a whole sector; [`SealError::Io`]
/// when it cannot be read, or holds a node that is not a field element (a damaged copy).
pub fn read_unsealed_range(
    dir: &SectorDir,
    id: &SectorId,
    offset: u64,
    len: u64,
    out: &mut dyn Write,
) -> SealResult<()> {
    let capacity = id.size.bytes() / PADDED_BLOCK as u64 * RAW_BLOCK as u64;
    if offset.checked_add(len).is_none_or(|end| end > capacity) {
        return Err(SealError::RangeOutOfSector {
            offset,
            len,
            capacity,
        });
    }
    let path = dir.unsealed();
    let mut file = File::open(&path).map_err(io_at(&path))?;
    let found = file.metadata().map_err(io_at(&path))?.len();
    if found != id.size.bytes() {
        return Err(SealError::WrongFileSize {
            path,
            expected: id.size.bytes(),
            found,
        });
    }
    if len == 0 {
        return Ok(());
    }
    let first_block = offset / RAW_BLOCK as u64;
    let skip = offset - first_block * RAW_BLOCK as u64;
    let end_block = (offset + len).div_ceil(RAW_BLOCK as u64);
    file.seek(SeekFrom::Start(first_block * PADDED_BLOCK as u64))
        .map_err(io_at(&path))?;
    let padded = (end_block - first_block) * PADDED_BLOCK as u64;
    let mut unpadder = UnpadWriter::with_limit(SkipWriter { inner: out, skip }, skip + len);
    io::copy(
        &mut io::BufReader::with_capacity(1 << 20, file).take(padded),
        &mut unpadder,
    )
    .map_err(io_at(&path))?;
    unpadder.finish().map_err(|e| SealError::Io {
        path,
        source: e.into(),
    })?;
    Ok(())
}

/// Unseals the whole sector into its unsealed copy (`unsealed`, fr32-padded, as AddPiece wrote
/// it): the encoding key regenerated from the replica id (every layer labelled again: as long as
/// PreCommit1), every node of the replica decoded, and the result checked against the CommD
/// PreCommit1 recorded before it is renamed into place — so a damaged replica never yields an
/// unsealed copy. Afterwards [`read_unsealed_range`] serves any range without the replica.
///
/// # Errors
/// [`SealError::MissingPhase`] before PreCommit2; [`SealError::Inconsistent`] when the decoded
/// data does not give the recorded CommD; I/O errors.
pub fn unseal_sector(
    dir: &SectorDir,
    id: &SectorId,
    cache_dir: &Path,
    progress: ProgressFn<'_>,
) -> SealResult<()> {
    load_meta(dir, id, "Unseal")?;
    let pc1: PreCommit1Output = read_json(&dir.pc1(), "Unseal", "PreCommit1")?;
    let _: PreCommit2Output = read_json(&dir.pc2(), "Unseal", "PreCommit2")?;
    let replica_map = map_file(&dir.sealed(), id.size.bytes())?;
    let replica = as_nodes(&replica_map);
    let key_buf = regenerate_key(dir, id, cache_dir, progress)?;
    let key = key_buf.nodes();
    write_mapped(&dir.unsealed(), id.size.bytes(), |out| {
        out.par_iter_mut()
            .zip(replica.par_iter().zip(key.par_iter()))
            .try_for_each(|(o, (r, k))| -> SealResult<()> {
                *o = sdr::decode(r, k)?;
                Ok(())
            })?;
        // CommD over the decoded data, 2^15 nodes at a time.
        let mut acc = lode_proofs::piece::TreeDAccumulator::new();
        for chunk in out.chunks(1 << 15) {
            let height = chunk.len().trailing_zeros();
            acc.push_subtree(height, lode_proofs::piece::tree_d_root(chunk))?;
        }
        if acc.finish(id.size.nodes())? != pc1.comm_d.0 {
            return Err(SealError::Inconsistent(
                "the unsealed data does not give the sector's CommD: the replica is damaged",
            ));
        }
        Ok(())
    })
}

/// Drops the first `skip` bytes written to it.
struct SkipWriter<'a> {
    inner: &'a mut dyn Write,
    skip: u64,
}

impl Write for SkipWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let drop = (self.skip.min(buf.len() as u64)) as usize;
        self.skip -= drop as u64;
        self.inner.write_all(&buf[drop..])?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
