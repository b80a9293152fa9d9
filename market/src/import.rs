//! The client's import store: payloads prepared for deals.
//!
//! `lode client import` turns a file or a directory into a CARv1 of UnixFS blocks (or takes a CAR
//! file as it is), keeps that CAR in the store, and records what a deal needs: the payload root
//! CID, the piece CID and padded piece size (CommP of the CAR, by lode_proofs' streaming CommP on a
//! second thread while the CAR is written or copied) and the payload size (the CAR's bytes).
//!
//! Layout of the store directory (default `~/.local/share/lode/client`):
//!
//! ```text
//! lock                  flock'ed while an import id is allocated or stale imports are cleared
//! imports/<id>.json     one ImportRecord per finished import
//! imports/<id>.pending  exists, flock'ed by the importing process, while import <id> runs
//! cars/<id>.car         the payload CAR of import <id>
//! ```
//!
//! **Crash safety.** The CAR is written through [`lode_proofs::durable::AtomicFile`] (a temporary
//! name, fsync, rename, directory fsync) and the record through
//! [`lode_proofs::durable::write_atomic`], in that order, so a record always names a complete CAR.
//! An import killed half-way leaves a `.pending` file that no process holds a lock on; the next
//! [`ImportStore::open`] removes it with its CAR and temporary files. Imports run concurrently:
//! only the id allocation is serialised.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use cid::Cid;
use lode_proofs::cid::PieceCid;
use lode_proofs::durable::{AtomicFile, write_atomic};
use lode_proofs::piece::{CommPHasher, PieceCommitment};
use serde::{Deserialize, Serialize};

use crate::car::{CarFileWriter, looks_like_car, scan_car};
use crate::error::{MarketError, MarketResult, io_at};
use crate::unixfs::{DagParams, pack_path};

/// The environment variable that overrides the client directory.
pub const ENV_CLIENT_DIR: &str = "LODE_CLIENT_DIR";

/// How an import's payload was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportKind {
    /// A file packed into UnixFS.
    File,
    /// A directory tree packed into UnixFS.
    Directory,
    /// A CAR file taken as it is.
    Car,
}

impl std::fmt::Display for ImportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ImportKind::File => "file",
            ImportKind::Directory => "directory",
            ImportKind::Car => "car",
        })
    }
}

/// One import: what a deal for it needs. **API Boundary:** the JSON of this record is what
/// `lode client list-imports --json` prints and what the store keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRecord {
    /// The import's number in this store (1, 2, …).
    pub id: u64,
    /// The file, directory or CAR imported (absolute).
    pub source: PathBuf,
    /// How the payload was made.
    pub kind: ImportKind,
    /// The payload's root CID (the UnixFS root, or the CAR header's root).
    #[serde(with = "as_string")]
    pub payload_root: Cid,
    /// The piece CID (CommP of the CAR).
    #[serde(with = "as_string")]
    pub piece_cid: PieceCid,
    /// The padded piece size in bytes (a power of two).
    pub padded_piece_size: u64,
    /// The payload size: the CAR's length in bytes.
    pub payload_size: u64,
    /// The CAR inside the store, relative to the store directory.
    pub car_path: PathBuf,
    /// When the import finished (RFC 3339, UTC).
    pub created_at: String,
}

/// Serde through `Display`/`FromStr` (CIDs as their text).
mod as_string {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub(super) fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How to import.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Chunking and DAG width for files and directories.
    pub params: DagParams,
    /// Pack a file as UnixFS even when it is a CAR.
    pub as_file: bool,
}

/// The stage an import is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportPhase {
    /// Packing files into the CAR (bytes of file data read).
    Packing,
    /// Checking and copying a CAR into the store, CommP alongside (bytes of the CAR).
    Copying,
    /// Computing CommP of the packed CAR (bytes of the CAR).
    Hashing,
}

/// Progress of an import, for a progress bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportProgress {
    /// The stage.
    pub phase: ImportPhase,
    /// Bytes done in this stage.
    pub done: u64,
    /// Bytes this stage will do, when known.
    pub total: Option<u64>,
}

/// The client's import store in a directory.
#[derive(Clone, Debug)]
pub struct ImportStore {
    dir: PathBuf,
}

/// An import id in use: its `.pending` file, locked for as long as this lives.
struct Reservation {
    id: u64,
    pending: PathBuf,
    _lock: File,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // Best effort: a pending file left behind is cleared by the next `open`.
        let _ = fs::remove_file(&self.pending);
    }
}

/// Chunk size of the CommP pass and of the copy of a CAR.
const CHUNK: usize = 1 << 20;

impl ImportStore {
    /// Opens (creating it if needed) the store in `dir`, and clears imports that a crash left
    /// unfinished.
    pub fn open(dir: impl Into<PathBuf>) -> MarketResult<Self> {
        let store = ImportStore { dir: dir.into() };
        for d in [store.dir.clone(), store.imports_dir(), store.cars_dir()] {
            fs::create_dir_all(&d).map_err(io_at(&d))?;
        }
        let _guard = store.lock()?;
        store.clear_stale()?;
        Ok(store)
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn imports_dir(&self) -> PathBuf {
        self.dir.join("imports")
    }

    fn cars_dir(&self) -> PathBuf {
        self.dir.join("cars")
    }

    fn record_path(&self, id: u64) -> PathBuf {
        self.imports_dir().join(format!("{id}.json"))
    }

    fn pending_path(&self, id: u64) -> PathBuf {
        self.imports_dir().join(format!("{id}.pending"))
    }

    fn relative_car(id: u64) -> PathBuf {
        Path::new("cars").join(format!("{id}.car"))
    }

    /// The absolute path of an import's CAR.
    pub fn car_path(&self, record: &ImportRecord) -> PathBuf {
        self.dir.join(&record.car_path)
    }

    /// The store's lock (blocking: allocation and clean-up are short).
    fn lock(&self) -> MarketResult<File> {
        let path = self.dir.join("lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_at(&path))?;
        file.lock().map_err(io_at(&path))?;
        Ok(file)
    }

    /// Ids of the files in `imports/` with this extension.
    fn ids_with(&self, ext: &str) -> MarketResult<Vec<u64>> {
        let dir = self.imports_dir();
        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_at(&dir))? {
            let entry = entry.map_err(io_at(&dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(id) = name
                .strip_suffix(ext)
                .and_then(|stem| stem.parse::<u64>().ok())
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// Removes imports that were interrupted: a `.pending` file whose lock nobody holds.
    fn clear_stale(&self) -> MarketResult<()> {
        for id in self.ids_with(".pending")? {
            let pending = self.pending_path(id);
            let Ok(file) = OpenOptions::new().read(true).write(true).open(&pending) else {
                continue;
            };
            if file.try_lock().is_err() {
                continue; // an import in progress
            }
            if !self.record_path(id).exists() {
                let car = self.dir.join(Self::relative_car(id));
                remove_if_present(&car)?;
                self.remove_tmp_files(id)?;
            }
            remove_if_present(&pending)?;
            tracing::info!(id, "cleared an interrupted import");
        }
        Ok(())
    }

    /// Removes `cars/<id>.car.*.tmp` (the temporary CARs of a killed import).
    fn remove_tmp_files(&self, id: u64) -> MarketResult<()> {
        let dir = self.cars_dir();
        let prefix = format!("{id}.car.");
        for entry in fs::read_dir(&dir).map_err(io_at(&dir))? {
            let entry = entry.map_err(io_at(&dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(&prefix) && name.ends_with(".tmp") {
                remove_if_present(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Allocates the next id and holds it with a locked `.pending` file.
    fn reserve(&self) -> MarketResult<Reservation> {
        let _guard = self.lock()?;
        let last = self
            .ids_with(".json")?
            .into_iter()
            .chain(self.ids_with(".pending")?)
            .max()
            .unwrap_or(0);
        let id = last.checked_add(1).ok_or_else(|| MarketError::BadRecord {
            path: self.imports_dir(),
            why: "import ids are exhausted".into(),
        })?;
        let pending = self.pending_path(id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&pending)
            .map_err(io_at(&pending))?;
        file.lock().map_err(io_at(&pending))?;
        lode_proofs::durable::sync_dir(&pending)?;
        Ok(Reservation {
            id,
            pending,
            _lock: file,
        })
    }

    /// Imports a file, a directory or a CAR file: the payload CAR is stored and its record written.
    /// A file that parses as a CAR header is taken as a CAR unless `options.as_file`; a CAR must
    /// have exactly one root, present among its blocks, and every block must match its CID.
    pub fn import(
        &self,
        source: &Path,
        options: &ImportOptions,
        progress: &mut (dyn FnMut(ImportProgress) + Send),
    ) -> MarketResult<ImportRecord> {
        options.params.check()?;
        let source = fs::canonicalize(source).map_err(io_at(source))?;
        let meta = fs::metadata(&source).map_err(io_at(&source))?;
        let store_dir = fs::canonicalize(&self.dir).map_err(io_at(&self.dir))?;
        if meta.is_dir() && store_dir.starts_with(&source) {
            return Err(MarketError::Unpackable {
                path: source,
                why: format!(
                    "it contains the client directory {}, which the import would write into; \
                     import a directory that does not contain it, or move the client directory \
                     (--client-dir)",
                    store_dir.display()
                ),
            });
        }
        let kind = if meta.is_dir() {
            ImportKind::Directory
        } else if !options.as_file && meta.is_file() && looks_like_car(&source)? {
            ImportKind::Car
        } else {
            ImportKind::File
        };
        let reservation = self.reserve()?;
        let id = reservation.id;
        let car_rel = Self::relative_car(id);
        let car_path = self.dir.join(&car_rel);
        let mut out = AtomicFile::create(&car_path)?;
        let (payload_root, commitment) = match kind {
            ImportKind::Car => {
                copy_car(&source, meta.len(), &mut out, progress).map_err(|e| match e {
                    MarketError::BadCar { path, why } => MarketError::BadCar {
                        path,
                        why: format!("{why} (`--as-file` packs it as an ordinary file instead)"),
                    },
                    other => other,
                })?
            }
            ImportKind::File | ImportKind::Directory => pack_into(
                &source,
                meta.is_file().then_some(meta.len()),
                options,
                &mut out,
                progress,
            )?,
        };
        out.commit()?;
        let piece_cid = PieceCid::new(commitment.comm_p).ok_or_else(|| {
            MarketError::WrongCid("the piece commitment is not a field element".into())
        })?;
        let record = ImportRecord {
            id,
            source,
            kind,
            payload_root,
            piece_cid,
            padded_piece_size: commitment.padded_size.bytes(),
            payload_size: commitment.payload_len,
            car_path: car_rel,
            created_at: now_rfc3339(),
        };
        let json = serde_json::to_vec_pretty(&record).map_err(|e| MarketError::BadRecord {
            path: self.record_path(id),
            why: e.to_string(),
        })?;
        write_atomic(&self.record_path(id), &json)?;
        drop(reservation);
        tracing::info!(id, root = %record.payload_root, piece = %record.piece_cid, "imported");
        Ok(record)
    }

    /// Every import, by id.
    pub fn list(&self) -> MarketResult<Vec<ImportRecord>> {
        self.ids_with(".json")?
            .into_iter()
            .map(|id| self.get(id))
            .collect()
    }

    /// The import with this id.
    pub fn get(&self, id: u64) -> MarketResult<ImportRecord> {
        let path = self.record_path(id);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(MarketError::UnknownImport(id.to_string()));
            }
            Err(e) => return Err(io_at(&path)(e)),
        };
        let record: ImportRecord =
            serde_json::from_slice(&bytes).map_err(|e| MarketError::BadRecord {
                path: path.clone(),
                why: e.to_string(),
            })?;
        if record.id != id {
            return Err(MarketError::BadRecord {
                path,
                why: format!("it says id {}", record.id),
            });
        }
        Ok(record)
    }

    /// The import named by `key`: its id, its piece CID or its payload root CID (the most recent
    /// import when several match).
    pub fn resolve(&self, key: &str) -> MarketResult<ImportRecord> {
        let key = key.trim();
        if let Ok(id) = key.parse::<u64>() {
            return self.get(id);
        }
        let cid = crate::cid::parse_cid(key)?;
        self.list()?
            .into_iter()
            .rev()
            .find(|r| r.payload_root == cid || crate::cid::piece_to_cid(&r.piece_cid) == cid)
            .ok_or_else(|| MarketError::UnknownImport(key.to_string()))
    }
}

fn remove_if_present(path: &Path) -> MarketResult<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_at(path)(e)),
    }
}

/// Now, RFC 3339 in UTC, whole seconds (how records and reports date themselves).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Packs `source` into a CAR in `out`, computing its CommP alongside (see [`CommPTap`]).
fn pack_into(
    source: &Path,
    file_len: Option<u64>,
    options: &ImportOptions,
    out: &mut AtomicFile,
    progress: &mut (dyn FnMut(ImportProgress) + Send),
) -> MarketResult<(Cid, PieceCommitment)> {
    let tmp = out.tmp_path().to_path_buf();
    let mut tap = CommPTap::new(&mut *out, &tmp)?;
    let mut writer = CarFileWriter::new(&mut tap, &tmp)?;
    let packed = pack_path(source, &mut writer, &options.params, &mut |done| {
        progress(ImportProgress {
            phase: ImportPhase::Packing,
            done,
            total: file_len,
        })
    })?;
    let (_, car_len) = writer.finish(&packed.root.cid)?;
    let rest = tap.close()?;
    // The first chunk, header final now, read back.
    let head_len = car_len.min(COMMP_CHUNK as u64);
    let mut head = vec![0u8; usize::try_from(head_len).unwrap_or(0)];
    let file = out.file()?;
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_exact(&mut head))
        .and_then(|()| file.seek(SeekFrom::End(0)))
        .map_err(io_at(&tmp))?;
    let commitment = rest.finish(&head, car_len)?;
    progress(ImportProgress {
        phase: ImportPhase::Hashing,
        done: car_len,
        total: Some(car_len),
    });
    Ok((packed.root.cid, commitment))
}

/// Raw bytes of one CommP chunk: 127 × 8,192, which fr32-pads to exactly 1 MiB, an aligned subtree
/// of tree D.
const COMMP_CHUNK: usize = 127 * 8192;

/// Roots of tree D subtrees with their heights, in payload order.
type ChunkRoots = Vec<(u32, lode_proofs::node::Node)>;

/// Computes a CAR's CommP while the CAR is written, all but its first chunk, which holds the header
/// that is rewritten when packing ends.
///
/// Tree D of a payload is the left-to-right fold of the roots of aligned subtrees, and a chunk of
/// [`COMMP_CHUNK`] raw bytes pads to exactly one such subtree, whose root is that chunk's own CommP
/// (as is the root of the last, shorter chunk over its own padded size). So every chunk from the
/// second on gets its CommP (lode_proofs' `commp_of_bytes`) on a second thread as the bytes are
/// written, the first chunk's is taken once the header is final, and `TreeDAccumulator` folds them.
/// A test compares the result with CommP of the whole file.
struct CommPTap<W> {
    inner: W,
    path: PathBuf,
    /// Where the next write lands.
    pos: u64,
    /// Bytes below this offset have been handed on (or belong to the first chunk).
    tapped: u64,
    buf: Vec<u8>,
    to_worker: mpsc::SyncSender<Vec<u8>>,
    worker: std::thread::JoinHandle<Result<ChunkRoots, lode_proofs::piece::PieceError>>,
}

impl<W: Write + Seek> CommPTap<W> {
    fn new(inner: W, path: &Path) -> MarketResult<Self> {
        let (to_worker, chunks) = mpsc::sync_channel::<Vec<u8>>(2);
        let worker = std::thread::Builder::new()
            .name("commp".into())
            .spawn(move || {
                let mut roots = Vec::new();
                for chunk in chunks {
                    let c = lode_proofs::piece::commp_of_bytes(&chunk)?;
                    roots.push((c.padded_size.height(), c.comm_p));
                }
                Ok(roots)
            })
            .map_err(io_at(path))?;
        Ok(CommPTap {
            inner,
            path: path.to_path_buf(),
            pos: 0,
            tapped: COMMP_CHUNK as u64,
            buf: Vec::with_capacity(COMMP_CHUNK),
            to_worker,
            worker,
        })
    }

    fn take(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let room = COMMP_CHUNK.saturating_sub(self.buf.len());
            let (now, later) = data.split_at(room.min(data.len()));
            self.buf.extend_from_slice(now);
            data = later;
            if self.buf.len() == COMMP_CHUNK {
                let full = std::mem::replace(&mut self.buf, Vec::with_capacity(COMMP_CHUNK));
                self.to_worker
                    .send(full)
                    .map_err(|_| io::Error::other("the piece commitment thread stopped"))?;
            }
        }
        Ok(())
    }

    /// Hands on the last, partial chunk and stops taking bytes.
    fn close(mut self) -> MarketResult<TapResult> {
        if !self.buf.is_empty() {
            let last = std::mem::take(&mut self.buf);
            // A send error means the worker stopped: its own error comes out of `join` below.
            let _ = self.to_worker.send(last);
        }
        drop(self.to_worker);
        Ok(TapResult {
            worker: self.worker,
            tapped: self.tapped,
            path: self.path,
        })
    }
}

impl<W: Write + Seek> Write for CommPTap<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        let start = self.pos;
        let end = start.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        self.pos = end;
        if end > self.tapped {
            let skip = self
                .tapped
                .checked_sub(start)
                .ok_or_else(|| io::Error::other("a write past the bytes hashed so far"))?;
            let fresh = usize::try_from(skip)
                .ok()
                .and_then(|skip| data.get(skip..n))
                .unwrap_or_default();
            self.take(fresh)?;
            self.tapped = end;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write + Seek> Seek for CommPTap<W> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.pos = self.inner.seek(pos)?;
        Ok(self.pos)
    }
}

/// The roots a [`CommPTap`] computed, waiting for the first chunk.
struct TapResult {
    worker: std::thread::JoinHandle<Result<ChunkRoots, lode_proofs::piece::PieceError>>,
    tapped: u64,
    path: PathBuf,
}

impl TapResult {
    /// CommP of the whole payload of `len` bytes, given its first chunk `head`.
    fn finish(self, head: &[u8], len: u64) -> MarketResult<PieceCommitment> {
        let path = self.path;
        let roots = self.worker.join().map_err(|_| {
            io_at(&path)(io::Error::other("the piece commitment thread panicked"))
        })??;
        let expected = len.max(COMMP_CHUNK as u64);
        if self.tapped != expected {
            return Err(io_at(&path)(io::Error::other(format!(
                "{} bytes went past the piece commitment, {expected} expected",
                self.tapped
            ))));
        }
        let first = lode_proofs::piece::commp_of_bytes(head)?;
        let mut acc = lode_proofs::piece::TreeDAccumulator::new();
        acc.push_subtree(first.padded_size.height(), first.comm_p)?;
        for (height, root) in roots {
            acc.push_subtree(height, root)?;
        }
        let padded_size = lode_proofs::piece::PaddedPieceSize::for_payload(len)?;
        Ok(PieceCommitment {
            comm_p: acc.finish(padded_size.nodes())?,
            padded_size,
            payload_len: len,
        })
    }
}

/// A reader that copies what it reads into the store's CAR and hands it to the CommP thread.
struct Tee<'a, R> {
    inner: R,
    copy: &'a mut AtomicFile,
    to_hasher: mpsc::SyncSender<Vec<u8>>,
    pending: Vec<u8>,
    done: u64,
    total: u64,
    progress: &'a mut (dyn FnMut(ImportProgress) + Send),
}

impl<R: Read> Tee<'_, R> {
    fn send(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK));
        self.to_hasher
            .send(chunk)
            .map_err(|_| io::Error::other("the piece commitment thread stopped"))
    }
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let data = buf.get(..n).unwrap_or_default();
        self.copy.write_all(data)?;
        self.pending.extend_from_slice(data);
        if self.pending.len() >= CHUNK {
            self.send()?;
        }
        self.done = self
            .done
            .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        (self.progress)(ImportProgress {
            phase: ImportPhase::Copying,
            done: self.done,
            total: Some(self.total),
        });
        Ok(n)
    }
}

/// Copies a CAR file into `out` as it is, checking it (every block's hash, one root present among
/// the blocks) and computing its CommP on a second thread, in one read of the source.
fn copy_car(
    source: &Path,
    len: u64,
    out: &mut AtomicFile,
    progress: &mut (dyn FnMut(ImportProgress) + Send),
) -> MarketResult<(Cid, PieceCommitment)> {
    let file = File::open(source).map_err(io_at(source))?;
    let (to_hasher, chunks) = mpsc::sync_channel::<Vec<u8>>(4);
    let hasher = std::thread::Builder::new()
        .name("commp".into())
        .spawn(move || {
            let mut h = CommPHasher::new();
            for chunk in chunks {
                h.write_all(&chunk)?;
            }
            h.finish().map_err(io::Error::other)
        })
        .map_err(io_at(source))?;
    let result = (|| {
        let mut tee = Tee {
            inner: BufReader::with_capacity(CHUNK, file),
            copy: out,
            to_hasher,
            pending: Vec::with_capacity(CHUNK),
            done: 0,
            total: len,
            progress,
        };
        let mut root_seen = false;
        let summary = scan_car(&mut tee, source, |roots, block, _| {
            root_seen |= roots.first() == Some(&block.cid);
            Ok(())
        })?;
        let root = summary.single_root(source)?;
        if !root_seen {
            return Err(MarketError::BadCar {
                path: source.to_path_buf(),
                why: format!(
                    "its root {root} is not among its {} blocks; give a CAR that holds its root",
                    summary.blocks
                ),
            });
        }
        // A CARv2's index after the data, or anything else left: copied as it is.
        io::copy(&mut tee, &mut io::sink()).map_err(io_at(source))?;
        tee.send().map_err(io_at(source))?;
        Ok(root)
    })();
    // The sender was moved into the tee, dropped above: the thread sees the end of the chunks.
    let commitment = hasher
        .join()
        .map_err(|_| io_at(source)(io::Error::other("the piece commitment thread panicked")))
        .and_then(|r| r.map_err(io_at(source)));
    let root = result?;
    Ok((root, commitment?))
}

#[cfg(test)]
mod tests;
