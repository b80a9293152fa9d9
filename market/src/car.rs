//! CAR files: writing a CARv1 of packed blocks, reading CARv1 and CARv2 with every block checked,
//! and the block index (CID → byte range) that retrieval serves blocks from.
//!
//! **Writing** ([`CarFileWriter`]) goes through `iroh-car`. A CAR's header names its root, which
//! packing learns only at the end, so the header is first written with a placeholder root CID of
//! the same encoded length (CIDv1 + sha2-256, like every root packing makes) and rewritten in place
//! by [`CarFileWriter::finish`]; the output must be seekable. The blocks are written as they come:
//! leaves first, each parent after its children, the root last.
//!
//! **Reading** ([`scan_car`]) goes through `rs-car`, which parses CARv1 and CARv2 and checks every
//! block's bytes against its CID (sha2-256, blake2b-256, identity). lode adds what an index needs:
//! each block's byte offset and length in the file (a counting reader under `rs-car`), the header's
//! roots, and a check that the input does not end inside a block. `rs-car` 0.5 panics on some
//! malformed framing (a CID version above 1, a multihash digest over 64 bytes, a section shorter
//! than its CID, inconsistent CARv2 offsets); [`scan_car`] runs it under `catch_unwind` so such input
//! is an error like any other (the panic message still reaches stderr through the panic hook).
//!
//! [`CarBlocks`] serves blocks by CID from an indexed CAR file, re-checking each block's hash when it
//! is read (the file may have changed since it was indexed), and [`unpack_car`] unpacks a CAR's
//! UnixFS DAG to files with it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use cid::Cid;
use futures::StreamExt;
use futures::io::AllowStdIo;
use iroh_car::{CarHeader, CarWriter};
use rs_car::{CarDecodeError, CarReader};

use crate::cid::{DAG_PB_CODEC, block_cid, verify_block};
use crate::error::{MarketError, MarketResult, io_at};
use crate::unixfs::{self, BlockSink, BlockSource, UnpackLimits, Unpacked};

/// Largest block [`CarBlocks`] reads (8 MiB): larger blocks are refused when unpacking.
pub const MAX_BLOCK_READ: u64 = 8 << 20;

/// A synchronous `Write` seen as tokio's `AsyncWrite`, for `iroh-car`'s writer driven by
/// `futures::executor::block_on`: every call completes at once (the file is local).
struct SyncWrite<W> {
    inner: W,
    written: u64,
}

impl<W: Write + Unpin> tokio::io::AsyncWrite for SyncWrite<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let n = me.inner.write(buf);
        if let Ok(n) = n {
            me.written = me
                .written
                .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        }
        Poll::Ready(n)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.get_mut().inner.flush())
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

/// The bytes `iroh-car` writes as the header of a CARv1 with one root (length varint included).
fn header_bytes(root: &Cid) -> MarketResult<Vec<u8>> {
    let mut w = CarWriter::new(
        CarHeader::new_v1(vec![*root]),
        SyncWrite {
            inner: Vec::new(),
            written: 0,
        },
    );
    futures::executor::block_on(w.write_header()).map_err(|e| MarketError::BadCar {
        path: PathBuf::from("<header>"),
        why: e.to_string(),
    })?;
    let out = futures::executor::block_on(w.finish()).map_err(|e| MarketError::BadCar {
        path: PathBuf::from("<header>"),
        why: e.to_string(),
    })?;
    Ok(out.inner)
}

/// The root written in the header until the real one is known: a CIDv1 dag-pb sha2-256, the same
/// encoded length as every root that packing makes.
fn placeholder_root() -> Cid {
    block_cid(DAG_PB_CODEC, b"lode placeholder root")
}

/// Writes packed blocks as a CARv1 into a seekable output; the header's root is set by
/// [`CarFileWriter::finish`].
pub struct CarFileWriter<W: Write + Seek + Unpin + Send> {
    car: CarWriter<SyncWrite<W>>,
    path: PathBuf,
    header_len: usize,
    blocks: u64,
}

impl<W: Write + Seek + Unpin + Send> CarFileWriter<W> {
    /// Starts a CAR at the current position of `out` (normally its start); `path` names it in errors.
    pub fn new(out: W, path: &Path) -> MarketResult<Self> {
        let header = CarHeader::new_v1(vec![placeholder_root()]);
        let mut car = CarWriter::new(
            header,
            SyncWrite {
                inner: out,
                written: 0,
            },
        );
        let header_len = futures::executor::block_on(car.write_header())
            .map_err(|e| car_write_error(path, e))?;
        Ok(CarFileWriter {
            car,
            path: path.to_path_buf(),
            header_len,
            blocks: 0,
        })
    }

    /// Blocks written so far.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Sets the header's root to `root`, flushes, and gives back the output with the CAR's length.
    /// `root` must have the placeholder's encoded length (any CIDv1 with a 32-byte sha2-256 digest).
    pub fn finish(self, root: &Cid) -> MarketResult<(W, u64)> {
        let path = self.path;
        let header = header_bytes(root)?;
        if header.len() != self.header_len {
            return Err(MarketError::BadCar {
                path,
                why: format!(
                    "the root {root} does not fit the header written for it ({} bytes, not {})",
                    header.len(),
                    self.header_len
                ),
            });
        }
        let out = futures::executor::block_on(self.car.finish())
            .map_err(|e| car_write_error(&path, e))?;
        let len = out.written;
        let mut inner = out.inner;
        let end = inner.stream_position().map_err(io_at(&path))?;
        let start = end
            .checked_sub(len)
            .ok_or_else(|| io_at(&path)(io::Error::other("the CAR output moved while written")))?;
        inner.seek(SeekFrom::Start(start)).map_err(io_at(&path))?;
        inner.write_all(&header).map_err(io_at(&path))?;
        inner.seek(SeekFrom::Start(end)).map_err(io_at(&path))?;
        inner.flush().map_err(io_at(&path))?;
        Ok((inner, len))
    }
}

impl<W: Write + Seek + Unpin + Send> BlockSink for CarFileWriter<W> {
    fn put(&mut self, cid: &Cid, data: &[u8]) -> MarketResult<()> {
        futures::executor::block_on(self.car.write(*cid, data))
            .map_err(|e| car_write_error(&self.path, e))?;
        self.blocks = self.blocks.saturating_add(1);
        Ok(())
    }
}

fn car_write_error(path: &Path, e: iroh_car::Error) -> MarketError {
    match e {
        iroh_car::Error::Io(source) => MarketError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => MarketError::BadCar {
            path: path.to_path_buf(),
            why: other.to_string(),
        },
    }
}

/// Where one block lies in a CAR file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CarBlockLocation {
    /// The block's CID.
    pub cid: Cid,
    /// Offset of the block's section (its length varint) from the start of the file.
    pub section_offset: u64,
    /// Offset of the block's data (after the varint and the CID) from the start of the file.
    pub offset: u64,
    /// Length of the block's data.
    pub length: u64,
}

/// A CAR's header and size, as [`scan_car`] found them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CarSummary {
    /// 1 or 2.
    pub version: u8,
    /// The header's roots.
    pub roots: Vec<Cid>,
    /// Blocks in the CAR.
    pub blocks: u64,
    /// Bytes read up to the end of the last block (for CARv2, the index after the data is not read).
    pub data_end: u64,
}

impl CarSummary {
    /// The only root; an error when the header has none or several.
    pub fn single_root(&self, path: &Path) -> MarketResult<Cid> {
        match self.roots.as_slice() {
            [root] => Ok(*root),
            roots => Err(MarketError::BadCar {
                path: path.to_path_buf(),
                why: format!(
                    "its header has {} roots; lode takes CARs with exactly one root",
                    roots.len()
                ),
            }),
        }
    }
}

/// A reader that counts the bytes it hands out.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
        Ok(n)
    }
}

/// Explains a decoding error of the header (`block` is `None`) or of block number `block`, whose
/// section starts at byte `at`.
fn decode_error(path: &Path, e: CarDecodeError, block: Option<u64>, at: u64) -> MarketError {
    let Some(block) = block else {
        let why = match e {
            CarDecodeError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                "it is truncated: the input ends inside its header".to_string()
            }
            CarDecodeError::IoError(e) => {
                return MarketError::Io {
                    path: path.to_path_buf(),
                    source: e,
                };
            }
            other => format!("bad header: {}", header_reason(other)),
        };
        return MarketError::BadCar {
            path: path.to_path_buf(),
            why,
        };
    };
    let why = match e {
        CarDecodeError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            format!("it is truncated: the input ends inside block {block} (at byte {at})")
        }
        CarDecodeError::IoError(e) => {
            return MarketError::Io {
                path: path.to_path_buf(),
                source: e,
            };
        }
        CarDecodeError::BlockDigestMismatch(why) => format!(
            "block {block} (at byte {at}) does not hash to its CID: the CAR is corrupted ({why})"
        ),
        CarDecodeError::UnsupportedHashCode((_, cid)) => format!(
            "block {block} (at byte {at}), {cid}, uses a hash function lode cannot check \
             (sha2-256, blake2b-256 and identity can be checked)"
        ),
        CarDecodeError::InvalidCarV1Header(_)
        | CarDecodeError::InvalidCarV2Header(_)
        | CarDecodeError::UnsupportedCarVersion { .. } => header_reason(e),
        CarDecodeError::InvalidMultihash(why) | CarDecodeError::InvalidCid(why) => {
            format!("block {block} (at byte {at}) has a malformed CID: {why}")
        }
        CarDecodeError::InvalidBlockHeader(why) => {
            format!("block {block} (at byte {at}) has a malformed section header: {why}")
        }
        CarDecodeError::BlockStartEOF => format!("it ends before block {block}"),
    };
    MarketError::BadCar {
        path: path.to_path_buf(),
        why,
    }
}

/// The callback of [`scan_car`]: the header's roots, a block's location, its data.
type OnBlock<'a> = dyn FnMut(&[Cid], CarBlockLocation, &[u8]) -> MarketResult<()> + 'a;

/// What is wrong with a header.
fn header_reason(e: CarDecodeError) -> String {
    match e {
        CarDecodeError::InvalidCarV1Header(why) => format!("CARv1 header: {why}"),
        CarDecodeError::InvalidCarV2Header(why) => format!("CARv2 header: {why}"),
        CarDecodeError::UnsupportedCarVersion { version } => {
            format!("CAR version {version} (lode reads versions 1 and 2)")
        }
        other => other.to_string(),
    }
}

fn scan_inner<R: Read + Send>(
    reader: R,
    path: &Path,
    on_block: &mut OnBlock<'_>,
) -> MarketResult<CarSummary> {
    let count = Arc::new(AtomicU64::new(0));
    let mut io = AllowStdIo::new(Counting {
        inner: reader,
        count: Arc::clone(&count),
    });
    futures::executor::block_on(async {
        let mut car = CarReader::new(&mut io, true)
            .await
            .map_err(|e| decode_error(path, e, None, count.load(Ordering::Relaxed)))?;
        let version = car.header.version as u8;
        let roots = car.header.roots.clone();
        let mut blocks = 0u64;
        let mut end = count.load(Ordering::Relaxed);
        while let Some(item) = car.next().await {
            let (cid, data) = item.map_err(|e| decode_error(path, e, Some(blocks), end))?;
            let section_offset = end;
            end = count.load(Ordering::Relaxed);
            let length = u64::try_from(data.len()).unwrap_or(u64::MAX);
            let location = CarBlockLocation {
                cid,
                section_offset,
                offset: end.saturating_sub(length),
                length,
            };
            on_block(&roots, location, &data)?;
            blocks = blocks.saturating_add(1);
        }
        let consumed = count.load(Ordering::Relaxed);
        if consumed != end {
            // rs-car ends a CARv1 quietly when the input stops inside a section's length varint.
            return Err(MarketError::BadCar {
                path: path.to_path_buf(),
                why: format!(
                    "it is truncated: the input ends inside the length of block {blocks} (at byte {end})"
                ),
            });
        }
        Ok(CarSummary {
            version,
            roots,
            blocks,
            data_end: end,
        })
    })
}

/// Reads a CAR (v1 or v2) from `reader`, checking every block's bytes against its CID, and calls
/// `on_block` with the header's roots, each block's location and its data, in file order. `path`
/// names the input in errors. The input is read once, front to back (for a CARv2, up to the end of
/// its data; the index after it is left unread).
pub fn scan_car<R: Read + Send>(
    reader: R,
    path: &Path,
    mut on_block: impl FnMut(&[Cid], CarBlockLocation, &[u8]) -> MarketResult<()>,
) -> MarketResult<CarSummary> {
    let reader = BufReader::with_capacity(1 << 20, reader);
    match std::panic::catch_unwind(AssertUnwindSafe(|| scan_inner(reader, path, &mut on_block))) {
        Ok(result) => result,
        Err(_) => Err(MarketError::BadCar {
            path: path.to_path_buf(),
            why: "its framing is malformed (the CAR reader gave up on it)".into(),
        }),
    }
}

/// Whether the file at `path` starts with a CAR header (v1 or v2); only the header is read.
pub fn looks_like_car(path: &Path) -> MarketResult<bool> {
    let file = File::open(path).map_err(io_at(path))?;
    let mut io = AllowStdIo::new(BufReader::with_capacity(64 << 10, file));
    let parsed = std::panic::catch_unwind(AssertUnwindSafe(|| {
        futures::executor::block_on(async { CarReader::new(&mut io, false).await.is_ok() })
    }));
    Ok(parsed.unwrap_or(false))
}

/// Every block of a CAR file with its byte range, and the CAR's summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CarIndex {
    /// The header and size.
    pub summary: CarSummary,
    /// Each block's location, in file order (a CID may appear more than once).
    pub blocks: Vec<CarBlockLocation>,
}

/// Indexes a CAR file: every block checked, with its CID, offset and length. This is what the
/// retrieval gateway stores to serve blocks of a CAR by range.
pub fn index_car(path: &Path) -> MarketResult<CarIndex> {
    let file = File::open(path).map_err(io_at(path))?;
    let mut blocks = Vec::new();
    let summary = scan_car(file, path, |_, location, _| {
        blocks.push(location);
        Ok(())
    })?;
    Ok(CarIndex { summary, blocks })
}

/// Blocks of an indexed CAR file, read by CID (a [`BlockSource`] for [`unixfs::unpack`]).
pub struct CarBlocks {
    file: File,
    path: PathBuf,
    index: HashMap<Cid, (u64, u64)>,
}

impl CarBlocks {
    /// Opens a CAR file and indexes it (every block checked once here, and again when read).
    pub fn open(path: &Path) -> MarketResult<(Self, CarSummary)> {
        let index = index_car(path)?;
        let mut map = HashMap::with_capacity(index.blocks.len());
        for b in &index.blocks {
            map.entry(b.cid).or_insert((b.offset, b.length));
        }
        let file = File::open(path).map_err(io_at(path))?;
        Ok((
            CarBlocks {
                file,
                path: path.to_path_buf(),
                index: map,
            },
            index.summary,
        ))
    }

    /// Whether the CAR holds a block with this CID.
    pub fn contains(&self, cid: &Cid) -> bool {
        self.index.contains_key(cid)
    }
}

impl BlockSource for CarBlocks {
    fn get(&mut self, cid: &Cid) -> MarketResult<Vec<u8>> {
        let &(offset, length) = self
            .index
            .get(cid)
            .ok_or_else(|| MarketError::MissingBlock(cid.to_string()))?;
        if length > MAX_BLOCK_READ {
            return Err(MarketError::BadDag {
                cid: cid.to_string(),
                why: format!("a block of {length} bytes, over the {MAX_BLOCK_READ} lode unpacks"),
            });
        }
        let mut data = vec![0u8; usize::try_from(length).unwrap_or(0)];
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.read_exact(&mut data))
            .map_err(io_at(&self.path))?;
        if !verify_block(cid, &data)? {
            return Err(MarketError::BadCar {
                path: self.path.clone(),
                why: format!("block {cid} changed since the CAR was checked"),
            });
        }
        Ok(data)
    }
}

/// Unpacks the UnixFS DAG of a CAR file to `out` (which must not exist): from `root`, or from the
/// header's only root. Every block is checked against its CID.
pub fn unpack_car(
    car: &Path,
    root: Option<&Cid>,
    out: &Path,
    limits: &UnpackLimits,
    progress: &mut dyn FnMut(u64),
) -> MarketResult<Unpacked> {
    let (mut blocks, summary) = CarBlocks::open(car)?;
    let root = match root {
        Some(r) => *r,
        None => summary.single_root(car)?,
    };
    if !blocks.contains(&root) {
        return Err(MarketError::MissingBlock(root.to_string()));
    }
    unixfs::unpack(&mut blocks, &root, out, limits, progress)
}

#[cfg(test)]
mod tests;
