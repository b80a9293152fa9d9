//! The parent cache: every node's 14 parents, computed once per graph and memory-mapped.
//!
//! Labelling reads the parents of every node in every layer; computing them costs several BLAKE3
//! compressions per node, so they are computed once per sector size (the `porep_id`, and with it the
//! graph, follows from the size) and stored in a file that every sealing job maps read-only.
//!
//! File layout (format 1, little-endian):
//!
//! | offset | bytes | content |
//! |---|---|---|
//! | 0 | 8 | magic `LODEPRNT` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | parents per node (14) |
//! | 16 | 8 | node count |
//! | 24 | 32 | `porep_id` |
//! | 56 | 32 | BLAKE3 of the body |
//! | 88 | 40 | zero |
//! | 128 | nodes × 56 | the body: per node, 14 × `u32` (6 base parents, then 8 expander parents) |
//!
//! The file is named `parents-v1-<size>-<8 hex>.cache`, the hex being the start of `BLAKE3(porep_id)`.
//! Opening checks every header field against the expected graph, the file length, and the body's
//! checksum (hashed in parallel), so a truncated, corrupted or foreign file is an error, never wrong
//! parents. Building writes through [`lode_proofs::durable::AtomicFile`] (a temporary name in the same
//! directory, fsync, rename, directory fsync), so a crash never leaves a half-written cache under the real
//! name, and a mapped cache is never modified.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use blake3::hazmat::{ChainingValue, HasherExt, Mode, left_subtree_len};
use lode_proofs::durable::{AtomicFile, DurableError};
use lode_proofs::graph::{DEGREE, Graph};
use lode_proofs::sector::SectorSize;
use memmap2::Mmap;
use rayon::prelude::*;

const MAGIC: &[u8; 8] = b"LODEPRNT";
/// The format version, also part of the file name.
pub const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 128;
const BODY_HASH_AT: usize = 56;
/// Bytes per node in the body: 14 little-endian `u32`.
pub const NODE_BYTES: usize = DEGREE * 4;
/// Nodes computed and written per window while building (56 MiB of body).
const WINDOW_NODES: usize = 1 << 20;
/// Nodes per parallel task within a window.
const TASK_NODES: usize = 1 << 12;
/// Bytes below which a subtree of the body checksum is hashed on one thread.
const SERIAL_HASH_LEN: usize = 1 << 22;

/// What is wrong with a parent-cache file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CacheDefect {
    /// Shorter than the header.
    #[error("{len} bytes, shorter than the {HEADER_LEN}-byte header")]
    ShortHeader {
        /// The file's length.
        len: u64,
    },
    /// Not a parent-cache file.
    #[error("bad magic")]
    BadMagic,
    /// Another format version, or a header whose fixed fields are wrong.
    #[error("unsupported format (version {version}, {degree} parents per node)")]
    Format {
        /// The version found.
        version: u32,
        /// The parents per node found.
        degree: u32,
    },
    /// The cache of another graph.
    #[error("built for {nodes} nodes and porep_id {porep_id}, not this sector size's graph")]
    WrongGraph {
        /// The node count found.
        nodes: u64,
        /// The `porep_id` found, in hex.
        porep_id: String,
    },
    /// The length does not match the node count (a truncated or extended file).
    #[error("{found} bytes, expected {expected}")]
    WrongLength {
        /// The length the header implies.
        expected: u64,
        /// The file's length.
        found: u64,
    },
    /// The body does not hash to the checksum in the header.
    #[error("the body does not match its checksum")]
    Checksum,
}

/// Errors of the parent cache.
#[derive(Debug, thiserror::Error)]
pub enum ParentCacheError {
    /// An I/O error on a named file or directory.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// [`ParentCache::open`] found no cache file.
    #[error("{path}: no parent cache; ParentCache::open_or_build creates it")]
    NotFound {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// The file exists but is not a valid cache of this graph.
    #[error("{path}: damaged parent cache ({defect}); delete it, or let open_or_build rebuild it")]
    Corrupted {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        defect: CacheDefect,
    },
    /// The cache does not fit this machine's address space (only on 32-bit targets).
    #[error("a parent cache of {nodes} nodes is too large to map on this machine")]
    TooLarge {
        /// The graph's node count.
        nodes: u64,
    },
    /// [`ParentCache::try_parents`] with an index outside the graph.
    #[error("node {v} is outside a graph of {nodes} nodes")]
    NodeOutOfRange {
        /// The index asked for.
        v: u64,
        /// The node count.
        nodes: u64,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ParentCacheError + '_ {
    move |source| ParentCacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn durable_err(e: DurableError) -> ParentCacheError {
    ParentCacheError::Io {
        path: e.path,
        source: e.source,
    }
}

fn corrupted(path: &Path, defect: CacheDefect) -> ParentCacheError {
    ParentCacheError::Corrupted {
        path: path.to_path_buf(),
        defect,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The parents of every node of one sector size's graph, memory-mapped from a verified file.
#[derive(Debug)]
pub struct ParentCache {
    path: PathBuf,
    size: SectorSize,
    nodes: u64,
    map: Mmap,
}

impl ParentCache {
    /// The cache's file name for a sector size: `parents-v1-<size>-<8 hex of BLAKE3(porep_id)>.cache`.
    pub fn file_name(size: SectorSize) -> String {
        let id = blake3::hash(&size.porep_id());
        format!(
            "parents-v{FORMAT_VERSION}-{}-{}.cache",
            size.name(),
            hex(&id.as_bytes()[..4])
        )
    }

    /// The exact length of the cache file of `size`: the 128-byte header and 56 bytes per node
    /// (120 GiB + 128 bytes for a 64 GiB sector).
    pub fn file_len(size: SectorSize) -> u64 {
        size.nodes()
            .saturating_mul(NODE_BYTES as u64)
            .saturating_add(HEADER_LEN as u64)
    }

    /// Whether `dir` holds a cache of `size` that [`ParentCache::open_or_build`] will use rather than
    /// build: its header names this graph and its length is right. The body's checksum is not hashed
    /// (that reads the whole file, 120 GiB for 64 GiB sectors); a body that fails it on open is rebuilt.
    pub fn is_present(dir: &Path, size: SectorSize) -> bool {
        Self::map_and_check(dir.join(Self::file_name(size)), size, false).is_ok()
    }

    /// Opens and verifies the cache of `size` in `dir`; [`ParentCacheError::NotFound`] if there is none.
    /// Verification reads the whole file once (hashed on all rayon threads).
    pub fn open(dir: &Path, size: SectorSize) -> Result<ParentCache, ParentCacheError> {
        Self::map_and_check(dir.join(Self::file_name(size)), size, true)
    }

    /// Opens the cache of `size` in `dir`, or builds it if it is missing. A damaged or foreign file is
    /// logged (`tracing::warn!`) and rebuilt.
    pub fn open_or_build(dir: &Path, size: SectorSize) -> Result<ParentCache, ParentCacheError> {
        match Self::open(dir, size) {
            Ok(cache) => Ok(cache),
            Err(ParentCacheError::NotFound { .. }) => Self::build(dir, size),
            Err(ParentCacheError::Corrupted { path, defect }) => {
                tracing::warn!(path = %path.display(), %defect, "damaged parent cache, rebuilding it");
                Self::build(dir, size)
            }
            Err(e) => Err(e),
        }
    }

    /// Computes the cache of `size` (on all rayon threads) and writes it into `dir` (created if
    /// needed), replacing any file of the same name; then opens it.
    pub fn build(dir: &Path, size: SectorSize) -> Result<ParentCache, ParentCacheError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join(Self::file_name(size));
        let graph = Graph::new(size);
        let mut file = AtomicFile::create(&path).map_err(durable_err)?;
        write_cache(&graph, &mut file).map_err(io_err(file.tmp_path()))?;
        // Fsync, rename and fsync the directory; on any error the temporary file is removed.
        file.commit().map_err(durable_err)?;
        // The body hash was computed while writing; only the header and length are checked again.
        Self::map_and_check(path, size, false)
    }

    /// Maps `path` and checks it is the cache of `size`: header, length and, if `verify_body`, the
    /// body checksum.
    fn map_and_check(
        path: PathBuf,
        size: SectorSize,
        verify_body: bool,
    ) -> Result<ParentCache, ParentCacheError> {
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ParentCacheError::NotFound { path });
            }
            Err(source) => return Err(ParentCacheError::Io { path, source }),
        };
        let found = file.metadata().map_err(io_err(&path))?.len();
        if found < HEADER_LEN as u64 {
            return Err(corrupted(&path, CacheDefect::ShortHeader { len: found }));
        }
        let nodes = size.nodes();
        let expected = nodes
            .checked_mul(NODE_BYTES as u64)
            .and_then(|body| body.checked_add(HEADER_LEN as u64))
            .filter(|&len| usize::try_from(len).is_ok())
            .ok_or(ParentCacheError::TooLarge { nodes })?;
        // SAFETY: a read-only map. lode never writes a cache file in place: it builds under another name
        // and renames, so the file behind this map is not modified or truncated while it is mapped.
        let map = unsafe { Mmap::map(&file) }.map_err(io_err(&path))?;

        let header = map.get(..HEADER_LEN).unwrap_or_default();
        let u32_at = |at: usize| {
            header
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_le_bytes)
        };
        if header.get(..8) != Some(MAGIC.as_slice()) {
            return Err(corrupted(&path, CacheDefect::BadMagic));
        }
        let (version, degree) = (u32_at(8), u32_at(12));
        let padding_is_zero = header
            .get(BODY_HASH_AT + 32..)
            .is_some_and(|p| p.iter().all(|&b| b == 0));
        if version != FORMAT_VERSION || degree != DEGREE as u32 || !padding_is_zero {
            return Err(corrupted(&path, CacheDefect::Format { version, degree }));
        }
        let found_nodes = header
            .get(16..24)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes);
        let porep_id = header.get(24..56).unwrap_or_default();
        if found_nodes != nodes || porep_id != size.porep_id().as_slice() {
            let porep_id = hex(porep_id);
            let defect = CacheDefect::WrongGraph {
                nodes: found_nodes,
                porep_id,
            };
            return Err(corrupted(&path, defect));
        }
        if found != expected || map.len() as u64 != expected {
            return Err(corrupted(
                &path,
                CacheDefect::WrongLength { expected, found },
            ));
        }
        if verify_body {
            let stored = header
                .get(BODY_HASH_AT..BODY_HASH_AT + 32)
                .unwrap_or_default();
            let body = map.get(HEADER_LEN..).unwrap_or_default();
            if body_hash(body).as_bytes().as_slice() != stored {
                return Err(corrupted(&path, CacheDefect::Checksum));
            }
        }
        let cache = ParentCache {
            path,
            size,
            nodes,
            map,
        };
        // Verifying touched every page; the labeller streams through the file, so let them go.
        cache.release(0, nodes);
        Ok(cache)
    }

    /// Drops the memory-mapped pages holding the parents of nodes `start..end` from this process's
    /// resident memory (they stay in the page cache and fault back in if read again). The labeller calls
    /// it behind itself, so a sector's parent cache never adds its size to the sealer's peak RSS.
    pub fn release(&self, start: u64, end: u64) {
        const PAGE: usize = 4096;
        let to_byte = |v: u64| HEADER_LEN + v.min(self.nodes) as usize * NODE_BYTES;
        // Whole pages inside the range only.
        let (from, to) = (
            to_byte(start).div_ceil(PAGE) * PAGE,
            to_byte(end) / PAGE * PAGE,
        );
        if to > from {
            // SAFETY: the map is a read-only shared file mapping: MADV_DONTNEED only unmaps its pages
            // from this process; later reads fault the unchanged file content back in. No reference into
            // the map outlives a call of `parents`, which copies the values out.
            let r = unsafe {
                self.map
                    .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, from, to - from)
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, "could not release parent-cache pages");
            }
        }
    }

    /// The 14 parents of node `v`: the 6 base parents, then the 8 expander parents.
    ///
    /// Expects `v < nodes()` (the labeller walks `0..nodes`): otherwise zeros, after a debug assertion.
    /// [`ParentCache::try_parents`] checks instead.
    pub fn parents(&self, v: u64) -> [u32; DEGREE] {
        debug_assert!(v < self.nodes, "node {v} outside {} nodes", self.nodes);
        let mut parents = [0u32; DEGREE];
        if v >= self.nodes {
            return parents;
        }
        // v < nodes, and the whole file fits a usize (checked on open).
        let at = HEADER_LEN + v as usize * NODE_BYTES;
        if let Some(bytes) = self.map.get(at..at + NODE_BYTES) {
            for (p, b) in parents.iter_mut().zip(bytes.chunks_exact(4)) {
                *p = b.try_into().map_or(0, u32::from_le_bytes);
            }
        }
        parents
    }

    /// [`ParentCache::parents`] for an index that may be outside the graph.
    pub fn try_parents(&self, v: u64) -> Result<[u32; DEGREE], ParentCacheError> {
        if v < self.nodes {
            Ok(self.parents(v))
        } else {
            Err(ParentCacheError::NodeOutOfRange {
                v,
                nodes: self.nodes,
            })
        }
    }

    /// The node count.
    pub fn nodes(&self) -> u64 {
        self.nodes
    }

    /// The sector size whose graph this is.
    pub fn size(&self) -> SectorSize {
        self.size
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes the header (with a zero checksum), the body window by window, then the real header.
fn write_cache(graph: &Graph, file: &mut (impl Write + Seek)) -> std::io::Result<()> {
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&(DEGREE as u32).to_le_bytes());
    header[16..24].copy_from_slice(&graph.nodes().to_le_bytes());
    header[24..56].copy_from_slice(graph.porep_id());
    file.write_all(&header)?;

    let mut hasher = blake3::Hasher::new();
    let mut window = Vec::new();
    let mut start = 0u64;
    while start < graph.nodes() {
        let count = (graph.nodes() - start).min(WINDOW_NODES as u64) as usize;
        window.resize(count * NODE_BYTES, 0);
        window
            .par_chunks_mut(TASK_NODES * NODE_BYTES)
            .enumerate()
            .for_each(|(task, bytes)| {
                let mut parents = vec![[0u32; DEGREE]; bytes.len() / NODE_BYTES];
                graph.parents_into(start + (task * TASK_NODES) as u64, &mut parents);
                for (node, out) in parents.iter().zip(bytes.chunks_exact_mut(NODE_BYTES)) {
                    for (p, o) in node.iter().zip(out.chunks_exact_mut(4)) {
                        o.copy_from_slice(&p.to_le_bytes());
                    }
                }
            });
        hasher.update(&window);
        file.write_all(&window)?;
        start += count as u64;
    }

    header[BODY_HASH_AT..BODY_HASH_AT + 32].copy_from_slice(hasher.finalize().as_bytes());
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&header)
}

/// `blake3::hash(body)`, with the BLAKE3 tree split across rayon threads.
fn body_hash(body: &[u8]) -> blake3::Hash {
    if body.len() <= blake3::CHUNK_LEN {
        return blake3::hash(body);
    }
    let (left, right) = body.split_at(left_subtree_len(body.len() as u64) as usize);
    let (l, r) = rayon::join(
        || subtree_cv(left, 0),
        || subtree_cv(right, left.len() as u64),
    );
    blake3::hazmat::merge_subtrees_root(&l, &r, Mode::Hash)
}

/// The chaining value of the subtree of the body that starts at `offset`. The split points come from
/// `left_subtree_len`, so every subtree is one BLAKE3's own tree has (offsets are multiples of its size).
fn subtree_cv(data: &[u8], offset: u64) -> ChainingValue {
    if data.len() <= SERIAL_HASH_LEN {
        let mut hasher = blake3::Hasher::new();
        hasher.set_input_offset(offset);
        hasher.update(data);
        return hasher.finalize_non_root();
    }
    let (left, right) = data.split_at(left_subtree_len(data.len() as u64) as usize);
    let (l, r) = rayon::join(
        || subtree_cv(left, offset),
        || subtree_cv(right, offset + left.len() as u64),
    );
    blake3::hazmat::merge_subtrees_non_root(&l, &r, Mode::Hash)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn body_start() -> u64 {
        HEADER_LEN as u64
    }

    #[test]
    fn build_reopen_and_compare_with_the_graph() {
        let dir = tempfile::tempdir().unwrap();
        let size = SectorSize::S2KiB;
        let built = ParentCache::open_or_build(dir.path(), size).unwrap();
        assert_eq!(built.path(), dir.path().join(ParentCache::file_name(size)));
        assert!(ParentCache::file_name(size).starts_with("parents-v1-2KiB-"));
        let graph = Graph::new(size);
        let reopened = ParentCache::open(dir.path(), size).unwrap();
        assert_eq!(reopened.nodes(), graph.nodes());
        assert_eq!(reopened.size(), size);
        for v in 0..graph.nodes() {
            assert_eq!(built.parents(v), graph.parents(v), "node {v}");
            assert_eq!(reopened.parents(v), graph.parents(v), "node {v}");
        }
        let len = std::fs::metadata(reopened.path()).unwrap().len();
        assert_eq!(len, body_start() + graph.nodes() * NODE_BYTES as u64);
        assert!(matches!(
            reopened.try_parents(graph.nodes()),
            Err(ParentCacheError::NodeOutOfRange { v: 64, nodes: 64 })
        ));
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_cache_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let err = ParentCache::open(dir.path(), SectorSize::S2KiB).unwrap_err();
        assert!(matches!(err, ParentCacheError::NotFound { .. }), "{err}");
    }

    /// Damages a built cache with `damage`, checks `open` reports `defect`, and that `open_or_build`
    /// repairs it.
    fn check_damage(damage: impl FnOnce(&Path), defect: CacheDefect) {
        let dir = tempfile::tempdir().unwrap();
        let size = SectorSize::S2KiB;
        let path = ParentCache::open_or_build(dir.path(), size)
            .unwrap()
            .path()
            .to_path_buf();
        let good = std::fs::read(&path).unwrap();
        damage(&path);
        match ParentCache::open(dir.path(), size) {
            Err(ParentCacheError::Corrupted { path: p, defect: d }) => {
                assert_eq!(p, path);
                assert_eq!(d, defect);
            }
            other => panic!("expected {defect:?}, got {other:?}"),
        }
        let repaired = ParentCache::open_or_build(dir.path(), size).unwrap();
        assert_eq!(std::fs::read(repaired.path()).unwrap(), good);
        assert!(ParentCache::open(dir.path(), size).is_ok());
    }

    fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
        let mut bytes = std::fs::read(path).unwrap();
        f(&mut bytes);
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn a_flipped_body_byte_is_detected_and_repaired() {
        check_damage(
            |p| edit(p, |b| b[HEADER_LEN + 1000] ^= 0x10),
            CacheDefect::Checksum,
        );
    }

    #[test]
    fn a_flipped_checksum_byte_is_detected_and_repaired() {
        check_damage(|p| edit(p, |b| b[BODY_HASH_AT] ^= 1), CacheDefect::Checksum);
    }

    #[test]
    fn a_truncated_file_is_detected_and_repaired() {
        let expected = body_start() + 64 * NODE_BYTES as u64;
        check_damage(
            |p| edit(p, |b| b.truncate(b.len() - 4)),
            CacheDefect::WrongLength {
                expected,
                found: expected - 4,
            },
        );
        check_damage(
            |p| edit(p, |b| b.truncate(10)),
            CacheDefect::ShortHeader { len: 10 },
        );
        check_damage(|p| edit(p, Vec::clear), CacheDefect::ShortHeader { len: 0 });
        check_damage(
            |p| edit(p, |b| b.push(0)),
            CacheDefect::WrongLength {
                expected,
                found: expected + 1,
            },
        );
    }

    #[test]
    fn foreign_headers_are_detected_and_repaired() {
        check_damage(|p| edit(p, |b| b[0] = b'X'), CacheDefect::BadMagic);
        check_damage(
            |p| edit(p, |b| b[8] = 2),
            CacheDefect::Format {
                version: 2,
                degree: 14,
            },
        );
        check_damage(
            |p| edit(p, |b| b[HEADER_LEN - 1] = 1),
            CacheDefect::Format {
                version: 1,
                degree: 14,
            },
        );
        check_damage(
            |p| edit(p, |b| b[16] = 128),
            CacheDefect::WrongGraph {
                nodes: 128,
                porep_id: "00".repeat(32),
            },
        );
        let mut other_id = "00".repeat(32);
        other_id.replace_range(0..2, "01");
        check_damage(
            |p| edit(p, |b| b[24] = 1),
            CacheDefect::WrongGraph {
                nodes: 64,
                porep_id: other_id,
            },
        );
    }

    #[test]
    fn parallel_body_hash_equals_blake3() {
        let data: Vec<u8> = (0..(3 * SERIAL_HASH_LEN + 12345))
            .map(|i| (i * 7 + i / 1000) as u8)
            .collect();
        for len in [
            0,
            1,
            1024,
            1025,
            4096,
            SERIAL_HASH_LEN,
            SERIAL_HASH_LEN + 1,
            2 * SERIAL_HASH_LEN,
            data.len(),
        ] {
            assert_eq!(body_hash(&data[..len]), blake3::hash(&data[..len]), "{len}");
        }
    }

    #[test]
    fn sizes_get_distinct_file_names() {
        let names: std::collections::BTreeSet<String> = SectorSize::ALL
            .iter()
            .map(|&s| ParentCache::file_name(s))
            .collect();
        assert_eq!(names.len(), SectorSize::ALL.len());
    }
}
