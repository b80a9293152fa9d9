//! UnixFS v1: files and directories as a DAG of blocks, and back.
//!
//! **Packing** ([`pack_path`], [`pack_reader`]) cuts a file into fixed-size chunks, each a raw block
//! (codec `0x55`); when a file has more than one chunk, dag-pb nodes (codec `0x70`) with a UnixFS
//! `File` message link them in a balanced tree, at most [`DagParams::max_links`] links per node (the
//! leaves grouped left to right, then the groups, until one node remains). A file of one chunk is
//! that raw block alone; an empty file is the empty raw block. A directory is a dag-pb node with a
//! UnixFS `Directory` message and one named link per entry, sorted by name bytes. Every CID is
//! CIDv1 with sha2-256. The defaults ([`DagParams::default`]: 1 MiB chunks, 1024 links per node)
//! are those of `ipfs-car`, so a file or directory packed here has the same root CID as with
//! that tool (the interoperability test checks it). Symbolic links and special files are refused
//! (with the path); so is a directory too large for one UnixFS node (sharded directories are not
//! written). Files are read one chunk at a time: memory is one chunk plus, per DAG level, at most
//! `max_links` pending links, whatever the file size.
//!
//! **Unpacking** ([`unpack`]) walks a DAG from its root through a [`BlockSource`] (which checks
//! every block against its CID) and writes a file or a directory tree, byte-identical to what was
//! packed. It is built for untrusted DAGs: link names that could leave the output directory (`..`,
//! `/`, empty, NUL) and duplicate names are refused, sizes are checked against the UnixFS
//! `filesize`/`blocksizes` at every node, depth, output bytes and entries are bounded
//! ([`UnpackLimits`]), the walk is iterative (no recursion on input), and the output is written
//! under a temporary name and renamed into place only when complete. Symlinks, HAMT-sharded
//! directories and UnixFS metadata nodes are refused.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use cid::Cid;
use ipld_dagpb::{PbLink, PbNode};
use prost::Message;

use crate::cid::{DAG_PB_CODEC, RAW_CODEC, block_cid};
use crate::error::{MarketError, MarketResult, io_at};

/// Largest chunk size [`DagParams`] accepts (4 MiB; IPFS peers refuse blocks over 2 MiB, so the
/// default stays at 1 MiB).
pub const MAX_CHUNK_SIZE: usize = 4 << 20;
/// Largest number of links per file node [`DagParams`] accepts.
pub const MAX_LINKS: usize = 8192;
/// Largest directory node packing writes (1 MiB): a larger directory would need HAMT sharding.
pub const MAX_DIRECTORY_BLOCK: usize = 1 << 20;

/// The UnixFS `Data` message (proto2), carried in a dag-pb node's `Data` field.
#[derive(Clone, PartialEq, Message)]
pub struct UnixFsData {
    /// The node's kind ([`DataType`]).
    #[prost(enumeration = "DataType", required, tag = "1")]
    pub data_type: i32,
    /// File bytes held in the node itself.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub data: Option<Vec<u8>>,
    /// The file's size under this node.
    #[prost(uint64, optional, tag = "3")]
    pub filesize: Option<u64>,
    /// File bytes under each link, in link order (unpacked, as the reference encoders write it).
    #[prost(uint64, repeated, packed = "false", tag = "4")]
    pub blocksizes: Vec<u64>,
    /// Hash function of a HAMT shard.
    #[prost(uint64, optional, tag = "5")]
    pub hash_type: Option<u64>,
    /// Fanout of a HAMT shard.
    #[prost(uint64, optional, tag = "6")]
    pub fanout: Option<u64>,
    /// Unix permission bits (UnixFS 1.5; ignored).
    #[prost(uint32, optional, tag = "7")]
    pub mode: Option<u32>,
    /// Modification time (UnixFS 1.5; ignored).
    #[prost(message, optional, tag = "8")]
    pub mtime: Option<UnixTime>,
}

/// The UnixFS `UnixTime` message.
#[derive(Clone, PartialEq, Message)]
pub struct UnixTime {
    /// Seconds since the epoch.
    #[prost(int64, required, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds.
    #[prost(fixed32, optional, tag = "2")]
    pub fractional_nanoseconds: Option<u32>,
}

/// UnixFS node kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DataType {
    /// Raw file bytes (old-style leaf).
    Raw = 0,
    /// A directory.
    Directory = 1,
    /// A file, or part of one.
    File = 2,
    /// Metadata (unsupported).
    Metadata = 3,
    /// A symbolic link (unsupported).
    Symlink = 4,
    /// A HAMT-sharded directory (unsupported).
    HamtShard = 5,
}

/// How files are cut into blocks and linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DagParams {
    /// Bytes per leaf (the last one may be shorter).
    pub chunk_size: usize,
    /// Most links in one file node.
    pub max_links: usize,
}

impl Default for DagParams {
    /// 1 MiB chunks, 1024 links per node: `ipfs-car`'s settings (and the "unixfs-v1-2025" CID
    /// profile), so the same data gets the same root CID.
    fn default() -> Self {
        DagParams {
            chunk_size: 1 << 20,
            max_links: 1024,
        }
    }
}

impl DagParams {
    /// Checks the parameters: a chunk of 1 byte to [`MAX_CHUNK_SIZE`], 2 to [`MAX_LINKS`] links.
    pub fn check(&self) -> MarketResult<()> {
        if !(1..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(MarketError::BadParams(format!(
                "chunk size {} is outside 1..={MAX_CHUNK_SIZE}",
                self.chunk_size
            )));
        }
        if !(2..=MAX_LINKS).contains(&self.max_links) {
            return Err(MarketError::BadParams(format!(
                "{} links per node is outside 2..={MAX_LINKS}",
                self.max_links
            )));
        }
        Ok(())
    }
}

/// Where packing puts blocks (a CAR writer, a map in tests).
pub trait BlockSink {
    /// Stores one block; `cid` is the block's CID, already computed from `data`.
    fn put(&mut self, cid: &Cid, data: &[u8]) -> MarketResult<()>;
}

/// Where unpacking gets blocks. Implementations must return only data that hashes to `cid`.
pub trait BlockSource {
    /// The block with this CID; [`MarketError::MissingBlock`] when there is none.
    fn get(&mut self, cid: &Cid) -> MarketResult<Vec<u8>>;
}

/// Blocks in memory (tests, small DAGs): a sink and a source.
#[derive(Debug, Default, Clone)]
pub struct MemoryBlocks {
    /// The blocks by CID.
    pub blocks: HashMap<Cid, Vec<u8>>,
    /// CIDs in the order they were first put.
    pub order: Vec<Cid>,
}

impl BlockSink for MemoryBlocks {
    fn put(&mut self, cid: &Cid, data: &[u8]) -> MarketResult<()> {
        if !self.blocks.contains_key(cid) {
            self.blocks.insert(*cid, data.to_vec());
            self.order.push(*cid);
        }
        Ok(())
    }
}

impl BlockSource for MemoryBlocks {
    fn get(&mut self, cid: &Cid) -> MarketResult<Vec<u8>> {
        let data = self
            .blocks
            .get(cid)
            .ok_or_else(|| MarketError::MissingBlock(cid.to_string()))?;
        if !crate::cid::verify_block(cid, data)? {
            return Err(MarketError::BadDag {
                cid: cid.to_string(),
                why: "the block's bytes do not hash to its CID".into(),
            });
        }
        Ok(data.clone())
    }
}

/// A link to a packed subtree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// The subtree's root block.
    pub cid: Cid,
    /// Bytes of all blocks in the subtree (dag-pb `Tsize`).
    pub dag_size: u64,
    /// File bytes under it (0 for a directory).
    pub content_size: u64,
}

/// What packing produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packed {
    /// The DAG's root.
    pub root: Link,
    /// Regular files packed.
    pub files: u64,
    /// Directories packed (the root included when it is one).
    pub directories: u64,
    /// File bytes read.
    pub bytes: u64,
}

fn add(a: u64, b: u64) -> u64 {
    a.saturating_add(b)
}

fn len64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Encodes a dag-pb node and puts it; the link to it.
fn put_node(
    sink: &mut dyn BlockSink,
    links: Vec<PbLink>,
    data: &UnixFsData,
    below: u64,
    content_size: u64,
) -> MarketResult<Link> {
    let bytes = PbNode {
        links,
        data: Some(Bytes::from(data.encode_to_vec())),
    }
    .into_bytes();
    let cid = block_cid(DAG_PB_CODEC, &bytes);
    sink.put(&cid, &bytes)?;
    Ok(Link {
        cid,
        dag_size: add(len64(bytes.len()), below),
        content_size,
    })
}

/// Builds one file's balanced DAG as its chunks arrive.
struct FileBuilder {
    max_links: usize,
    /// `levels[0]` holds leaves not yet grouped, `levels[i]` nodes of height `i`.
    levels: Vec<Vec<Link>>,
}

impl FileBuilder {
    fn new(params: &DagParams) -> Self {
        FileBuilder {
            max_links: params.max_links,
            levels: vec![Vec::new()],
        }
    }

    fn push_leaf(&mut self, sink: &mut dyn BlockSink, chunk: &[u8]) -> MarketResult<()> {
        let cid = block_cid(RAW_CODEC, chunk);
        sink.put(&cid, chunk)?;
        let size = len64(chunk.len());
        self.push(
            sink,
            0,
            Link {
                cid,
                dag_size: size,
                content_size: size,
            },
        )
    }

    /// Adds a link at `level`, grouping a full level into a node one level up.
    fn push(&mut self, sink: &mut dyn BlockSink, level: usize, link: Link) -> MarketResult<()> {
        let mut level = level;
        let mut link = link;
        loop {
            while self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            let Some(row) = self.levels.get_mut(level) else {
                return Ok(());
            };
            row.push(link);
            if row.len() < self.max_links {
                return Ok(());
            }
            let full = std::mem::take(row);
            link = file_node(sink, &full)?;
            level = level.saturating_add(1);
        }
    }

    /// The file's root: each partial level is grouped into a node one level up, until the highest
    /// level holds one link.
    fn finish(mut self, sink: &mut dyn BlockSink) -> MarketResult<Link> {
        let mut level = 0;
        loop {
            let highest = self
                .levels
                .iter()
                .rposition(|row| !row.is_empty())
                .unwrap_or(0);
            let row = self
                .levels
                .get_mut(level)
                .map(std::mem::take)
                .unwrap_or_default();
            match row.len() {
                0 if level >= highest => {
                    // No chunk at all: the empty file is the empty raw block.
                    let cid = block_cid(RAW_CODEC, &[]);
                    sink.put(&cid, &[])?;
                    return Ok(Link {
                        cid,
                        dag_size: 0,
                        content_size: 0,
                    });
                }
                0 => {}
                1 if level >= highest => {
                    if let Some(root) = row.first() {
                        return Ok(*root);
                    }
                }
                _ => {
                    let node = file_node(sink, &row)?;
                    let up = level.saturating_add(1);
                    while self.levels.len() <= up {
                        self.levels.push(Vec::new());
                    }
                    if let Some(next) = self.levels.get_mut(up) {
                        next.push(node);
                    }
                }
            }
            level = level.saturating_add(1);
        }
    }
}

/// A UnixFS `File` node over `children`.
fn file_node(sink: &mut dyn BlockSink, children: &[Link]) -> MarketResult<Link> {
    let filesize = children.iter().fold(0u64, |s, c| add(s, c.content_size));
    let below = children.iter().fold(0u64, |s, c| add(s, c.dag_size));
    let data = UnixFsData {
        data_type: DataType::File as i32,
        filesize: Some(filesize),
        blocksizes: children.iter().map(|c| c.content_size).collect(),
        ..Default::default()
    };
    let links = children
        .iter()
        .map(|c| PbLink {
            cid: c.cid,
            name: Some(String::new()),
            size: Some(c.dag_size),
        })
        .collect();
    put_node(sink, links, &data, below, filesize)
}

/// Reads until `buf` is full or the input ends; the bytes read.
fn fill(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..) {
        if rest.is_empty() {
            break;
        }
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => filled = filled.saturating_add(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Packs one file's bytes from `reader`; `progress` gets the bytes read so far (cumulative over
/// the calls sharing `done`).
pub fn pack_reader(
    reader: &mut dyn Read,
    name: &Path,
    sink: &mut dyn BlockSink,
    params: &DagParams,
    done: &mut u64,
    progress: &mut dyn FnMut(u64),
) -> MarketResult<Link> {
    params.check()?;
    let mut builder = FileBuilder::new(params);
    let mut buf = vec![0u8; params.chunk_size];
    loop {
        let n = fill(reader, &mut buf).map_err(io_at(name))?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        builder.push_leaf(sink, chunk)?;
        *done = add(*done, len64(n));
        progress(*done);
        if n < buf.len() {
            break;
        }
    }
    builder.finish(sink)
}

/// What a directory entry is, judged without following symlinks.
enum EntryKind {
    File,
    Directory,
}

fn entry_kind(path: &Path, meta: &fs::Metadata) -> MarketResult<EntryKind> {
    let ft = meta.file_type();
    if ft.is_file() {
        Ok(EntryKind::File)
    } else if ft.is_dir() {
        Ok(EntryKind::Directory)
    } else if ft.is_symlink() {
        Err(MarketError::Unpackable {
            path: path.to_path_buf(),
            why:
                "symbolic links are not packed; replace it with the file it points to, or remove it"
                    .into(),
        })
    } else {
        Err(MarketError::Unpackable {
            path: path.to_path_buf(),
            why: "not a regular file or directory (a device, socket or FIFO); remove it".into(),
        })
    }
}

/// A directory being packed: its entries still to do and the links made so far.
struct DirFrame {
    path: PathBuf,
    name: String,
    pending: std::vec::IntoIter<(String, PathBuf, EntryKind)>,
    links: Vec<(String, Link)>,
}

fn read_dir_sorted(path: &Path) -> MarketResult<Vec<(String, PathBuf, EntryKind)>> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(path).map_err(io_at(path))? {
        let entry = entry.map_err(io_at(path))?;
        let child = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| MarketError::Unpackable {
                path: child.clone(),
                why: "the name is not valid UTF-8, which UnixFS names must be; rename it".into(),
            })?;
        let meta = fs::symlink_metadata(&child).map_err(io_at(&child))?;
        let kind = entry_kind(&child, &meta)?;
        entries.push((name, child, kind));
    }
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(entries)
}

/// A UnixFS `Directory` node over named links (sorted by name bytes by the dag-pb encoder).
fn directory_node(
    sink: &mut dyn BlockSink,
    path: &Path,
    entries: Vec<(String, Link)>,
) -> MarketResult<Link> {
    let count = entries.len();
    let below = entries.iter().fold(0u64, |s, (_, l)| add(s, l.dag_size));
    let links = entries
        .into_iter()
        .map(|(name, l)| PbLink {
            cid: l.cid,
            name: Some(name),
            size: Some(l.dag_size),
        })
        .collect();
    let data = UnixFsData {
        data_type: DataType::Directory as i32,
        ..Default::default()
    };
    // Encoded first, then checked: a directory node is small next to a file chunk.
    let bytes = PbNode {
        links,
        data: Some(Bytes::from(data.encode_to_vec())),
    }
    .into_bytes();
    if bytes.len() > MAX_DIRECTORY_BLOCK {
        return Err(MarketError::Unpackable {
            path: path.to_path_buf(),
            why: format!(
                "{count} entries make a {} byte UnixFS directory node, over the {MAX_DIRECTORY_BLOCK} byte \
                 block limit (sharded directories are not supported); split it into subdirectories",
                bytes.len()
            ),
        });
    }
    let cid = block_cid(DAG_PB_CODEC, &bytes);
    sink.put(&cid, &bytes)?;
    Ok(Link {
        cid,
        dag_size: add(len64(bytes.len()), below),
        content_size: 0,
    })
}

fn pack_file_at(
    path: &Path,
    sink: &mut dyn BlockSink,
    params: &DagParams,
    done: &mut u64,
    progress: &mut dyn FnMut(u64),
) -> MarketResult<Link> {
    let mut file = File::open(path).map_err(io_at(path))?;
    pack_reader(&mut file, path, sink, params, done, progress)
}

/// Packs a file or a directory tree. A symlink named as `path` itself is followed; inside a
/// directory, symlinks and special files are refused. `progress` gets the file bytes read so far.
pub fn pack_path(
    path: &Path,
    sink: &mut dyn BlockSink,
    params: &DagParams,
    progress: &mut dyn FnMut(u64),
) -> MarketResult<Packed> {
    params.check()?;
    let meta = fs::metadata(path).map_err(io_at(path))?;
    let mut done = 0u64;
    match entry_kind(path, &meta)? {
        EntryKind::File => {
            let root = pack_file_at(path, sink, params, &mut done, progress)?;
            Ok(Packed {
                root,
                files: 1,
                directories: 0,
                bytes: done,
            })
        }
        EntryKind::Directory => pack_directory(path, sink, params, &mut done, progress),
    }
}

fn pack_directory(
    path: &Path,
    sink: &mut dyn BlockSink,
    params: &DagParams,
    done: &mut u64,
    progress: &mut dyn FnMut(u64),
) -> MarketResult<Packed> {
    let mut files = 0u64;
    let mut directories = 1u64;
    let mut stack = vec![DirFrame {
        path: path.to_path_buf(),
        name: String::new(),
        pending: read_dir_sorted(path)?.into_iter(),
        links: Vec::new(),
    }];
    loop {
        let Some(top) = stack.last_mut() else {
            return Err(MarketError::Unpackable {
                path: path.to_path_buf(),
                why: "internal: empty directory stack".into(),
            });
        };
        match top.pending.next() {
            Some((name, child, EntryKind::File)) => {
                let link = pack_file_at(&child, sink, params, done, progress)?;
                files = add(files, 1);
                top.links.push((name, link));
            }
            Some((name, child, EntryKind::Directory)) => {
                let pending = read_dir_sorted(&child)?.into_iter();
                directories = add(directories, 1);
                stack.push(DirFrame {
                    path: child,
                    name,
                    pending,
                    links: Vec::new(),
                });
            }
            None => {
                let Some(frame) = stack.pop() else { continue };
                let link = directory_node(sink, &frame.path, frame.links)?;
                match stack.last_mut() {
                    Some(parent) => parent.links.push((frame.name, link)),
                    None => {
                        return Ok(Packed {
                            root: link,
                            files,
                            directories,
                            bytes: *done,
                        });
                    }
                }
            }
        }
    }
}

/// Bounds on what an unpack may write, against hostile DAGs (a small CAR can describe a huge
/// file by linking one block many times).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnpackLimits {
    /// File bytes written in all.
    pub max_bytes: u64,
    /// Files and directories created in all.
    pub max_entries: u64,
    /// Directory nesting.
    pub max_dir_depth: usize,
    /// Height of one file's DAG.
    pub max_file_depth: usize,
}

impl Default for UnpackLimits {
    /// 1 TiB, ten million entries, 256 directory levels, 64 file DAG levels.
    fn default() -> Self {
        UnpackLimits {
            max_bytes: 1 << 40,
            max_entries: 10_000_000,
            max_dir_depth: 256,
            max_file_depth: 64,
        }
    }
}

/// What an unpack wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unpacked {
    /// Whether the root is a directory.
    pub is_directory: bool,
    /// Regular files written.
    pub files: u64,
    /// Directories created (the root included when it is one).
    pub directories: u64,
    /// File bytes written.
    pub bytes: u64,
}

/// A decoded block: file bytes, a file node, or a directory.
enum Node {
    /// A raw block: file bytes.
    Raw(Vec<u8>),
    /// A UnixFS file node: its own bytes, its children with their sizes, its declared size.
    File {
        data: Vec<u8>,
        children: Vec<(Cid, u64)>,
        filesize: u64,
    },
    /// A UnixFS directory: named children.
    Directory(Vec<(String, Cid)>),
}

fn bad(cid: &Cid, why: impl Into<String>) -> MarketError {
    MarketError::BadDag {
        cid: cid.to_string(),
        why: why.into(),
    }
}

/// Decodes a block fetched for `cid`.
fn decode(cid: &Cid, block: Vec<u8>) -> MarketResult<Node> {
    match cid.codec() {
        RAW_CODEC => return Ok(Node::Raw(block)),
        DAG_PB_CODEC => {}
        other => {
            return Err(bad(
                cid,
                format!("codec 0x{other:x} is not UnixFS (raw 0x55 or dag-pb 0x70)"),
            ));
        }
    }
    let node = PbNode::from_bytes(Bytes::from(block))
        .map_err(|e| bad(cid, format!("not a dag-pb node: {e}")))?;
    let data = node
        .data
        .as_ref()
        .ok_or_else(|| bad(cid, "a dag-pb node without UnixFS data"))?;
    let fs = UnixFsData::decode(data.as_ref())
        .map_err(|e| bad(cid, format!("not a UnixFS message: {e}")))?;
    let kind = DataType::try_from(fs.data_type)
        .map_err(|_| bad(cid, format!("unknown UnixFS type {}", fs.data_type)))?;
    match kind {
        DataType::File | DataType::Raw => {
            let own = fs.data.unwrap_or_default();
            if node.links.len() != fs.blocksizes.len() {
                return Err(bad(
                    cid,
                    format!(
                        "{} links but {} block sizes",
                        node.links.len(),
                        fs.blocksizes.len()
                    ),
                ));
            }
            if fs.blocksizes.contains(&0) {
                return Err(bad(cid, "a link to zero bytes of file inside a file"));
            }
            let sum = fs
                .blocksizes
                .iter()
                .try_fold(len64(own.len()), |s, &b| s.checked_add(b))
                .ok_or_else(|| bad(cid, "block sizes overflow"))?;
            let filesize = fs.filesize.unwrap_or(sum);
            if filesize != sum {
                return Err(bad(
                    cid,
                    format!("filesize {filesize} but its data and block sizes add up to {sum}"),
                ));
            }
            let children = node
                .links
                .iter()
                .zip(fs.blocksizes.iter())
                .map(|(l, &s)| (l.cid, s))
                .collect();
            Ok(Node::File {
                data: own,
                children,
                filesize,
            })
        }
        DataType::Directory => {
            let mut entries = Vec::with_capacity(node.links.len());
            let mut seen = std::collections::HashSet::new();
            for link in node.links {
                let name = link.name.unwrap_or_default();
                check_name(cid, &name)?;
                if !seen.insert(name.clone()) {
                    return Err(bad(cid, format!("the name {name:?} appears twice")));
                }
                entries.push((name, link.cid));
            }
            Ok(Node::Directory(entries))
        }
        DataType::Symlink => Err(bad(cid, "symbolic links are not supported")),
        DataType::HamtShard => Err(bad(
            cid,
            "HAMT-sharded directories are not supported; repack with plain directories",
        )),
        DataType::Metadata => Err(bad(cid, "UnixFS metadata nodes are not supported")),
    }
}

/// A link name must be one path component that stays inside its directory.
fn check_name(cid: &Cid, name: &str) -> MarketResult<()> {
    let refused = if name.is_empty() {
        Some("an empty name")
    } else if name == "." || name == ".." {
        Some("a name that leaves the directory")
    } else if name.contains('/') || name.contains('\\') {
        Some("a name with a path separator")
    } else if name.contains('\0') {
        Some("a name with a NUL byte")
    } else {
        None
    };
    match refused {
        Some(what) => Err(bad(cid, format!("{what}: {name:?}"))),
        None => Ok(()),
    }
}

/// Counters shared by one unpack.
struct Budget<'a> {
    limits: UnpackLimits,
    done: Unpacked,
    progress: &'a mut dyn FnMut(u64),
}

impl Budget<'_> {
    fn entry(&mut self, directory: bool) -> MarketResult<()> {
        let total = add(self.done.files, self.done.directories);
        if total >= self.limits.max_entries {
            return Err(MarketError::LimitExceeded(format!(
                "more than {} files and directories",
                self.limits.max_entries
            )));
        }
        if directory {
            self.done.directories = add(self.done.directories, 1);
        } else {
            self.done.files = add(self.done.files, 1);
        }
        Ok(())
    }

    fn bytes(&mut self, n: u64) -> MarketResult<()> {
        let total = add(self.done.bytes, n);
        if total > self.limits.max_bytes {
            return Err(MarketError::LimitExceeded(format!(
                "more than {} bytes of files",
                self.limits.max_bytes
            )));
        }
        self.done.bytes = total;
        (self.progress)(total);
        Ok(())
    }
}

/// Writes the file rooted at `cid` (its block already decoded as `node`) to `out`, iteratively.
fn write_file(
    source: &mut dyn BlockSource,
    cid: &Cid,
    node: Node,
    expected: Option<u64>,
    out: &mut dyn Write,
    path: &Path,
    budget: &mut Budget<'_>,
) -> MarketResult<()> {
    // Each frame: the children of one file node still to write, and its depth.
    let mut stack: Vec<(std::vec::IntoIter<(Cid, u64)>, usize)> = Vec::new();
    let mut current = Some((*cid, node, expected, 0usize));
    loop {
        if let Some((cid, node, expected, depth)) = current.take() {
            match node {
                Node::Raw(bytes) => {
                    if let Some(want) = expected
                        && want != len64(bytes.len())
                    {
                        return Err(bad(
                            &cid,
                            format!("{} bytes where its parent says {want}", bytes.len()),
                        ));
                    }
                    budget.bytes(len64(bytes.len()))?;
                    out.write_all(&bytes).map_err(io_at(path))?;
                }
                Node::File {
                    data,
                    children,
                    filesize,
                } => {
                    if let Some(want) = expected
                        && want != filesize
                    {
                        return Err(bad(
                            &cid,
                            format!("filesize {filesize} where its parent says {want}"),
                        ));
                    }
                    if depth >= budget.limits.max_file_depth {
                        return Err(MarketError::LimitExceeded(format!(
                            "a file DAG deeper than {} levels at {cid}",
                            budget.limits.max_file_depth
                        )));
                    }
                    if expected.is_none() {
                        // The root of a file: refuse early what could never fit.
                        let after = add(budget.done.bytes, filesize);
                        if after > budget.limits.max_bytes {
                            return Err(MarketError::LimitExceeded(format!(
                                "the file is {filesize} bytes; at most {} bytes may be written",
                                budget.limits.max_bytes
                            )));
                        }
                    }
                    budget.bytes(len64(data.len()))?;
                    out.write_all(&data).map_err(io_at(path))?;
                    stack.push((children.into_iter(), depth.saturating_add(1)));
                }
                Node::Directory(_) => {
                    return Err(bad(&cid, "a directory inside a file"));
                }
            }
        }
        let Some((children, depth)) = stack.last_mut() else {
            return Ok(());
        };
        let depth = *depth;
        match children.next() {
            Some((child, size)) => {
                let block = source.get(&child)?;
                let node = decode(&child, block)?;
                current = Some((child, node, Some(size), depth));
            }
            None => {
                stack.pop();
            }
        }
    }
}

/// Writes a regular file at `path` (which must not exist) and fsyncs it.
fn create_file(
    source: &mut dyn BlockSource,
    cid: &Cid,
    node: Node,
    path: &Path,
    budget: &mut Budget<'_>,
) -> MarketResult<()> {
    budget.entry(false)?;
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_at(path))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    write_file(source, cid, node, None, &mut out, path, budget)?;
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .map_err(io_at(path))?;
    file.sync_all().map_err(io_at(path))
}

/// Writes the directory tree rooted at `entries` into the existing, empty directory `dir`.
fn write_directory(
    source: &mut dyn BlockSource,
    entries: Vec<(String, Cid)>,
    dir: &Path,
    budget: &mut Budget<'_>,
) -> MarketResult<()> {
    let mut stack: Vec<(PathBuf, std::vec::IntoIter<(String, Cid)>)> =
        vec![(dir.to_path_buf(), entries.into_iter())];
    while let Some((path, entries)) = stack.last_mut() {
        let Some((name, cid)) = entries.next() else {
            let (done, _) = stack.pop().unwrap_or_default();
            sync_dir_itself(&done)?;
            continue;
        };
        let target = path.join(&name);
        let node = decode(&cid, source.get(&cid)?)?;
        match node {
            Node::Directory(children) => {
                if stack.len() >= budget.limits.max_dir_depth {
                    return Err(MarketError::LimitExceeded(format!(
                        "directories nested deeper than {}",
                        budget.limits.max_dir_depth
                    )));
                }
                budget.entry(true)?;
                fs::create_dir(&target).map_err(io_at(&target))?;
                stack.push((target, children.into_iter()));
            }
            node => create_file(source, &cid, node, &target, budget)?,
        }
    }
    Ok(())
}

fn sync_dir_itself(dir: &Path) -> MarketResult<()> {
    if cfg!(unix) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_at(dir))?;
    }
    Ok(())
}

/// Unpacks the DAG rooted at `root` to `out` (a path that must not exist): a file, or a directory
/// tree. The output appears under its name only when complete; on error nothing is left there.
/// `progress` gets the file bytes written so far.
pub fn unpack(
    source: &mut dyn BlockSource,
    root: &Cid,
    out: &Path,
    limits: &UnpackLimits,
    progress: &mut dyn FnMut(u64),
) -> MarketResult<Unpacked> {
    if fs::symlink_metadata(out).is_ok() {
        return Err(MarketError::OutputExists(out.to_path_buf()));
    }
    let mut budget = Budget {
        limits: *limits,
        done: Unpacked::default(),
        progress,
    };
    let node = decode(root, source.get(root)?)?;
    let tmp = lode_proofs::durable::tmp_path(out);
    let result = match node {
        Node::Directory(entries) => {
            budget.done.is_directory = true;
            budget
                .entry(true)
                .and_then(|()| fs::create_dir(&tmp).map_err(io_at(&tmp)))
                .and_then(|()| write_directory(source, entries, &tmp, &mut budget))
        }
        node => create_file(source, root, node, &tmp, &mut budget),
    };
    let result = result.and_then(|()| {
        if fs::symlink_metadata(out).is_ok() {
            return Err(MarketError::OutputExists(out.to_path_buf()));
        }
        lode_proofs::durable::rename_durable(&tmp, out).map_err(MarketError::from)
    });
    match result {
        Ok(()) => Ok(budget.done),
        Err(e) => {
            // Best effort: what was written is incomplete; the error is what the caller reports.
            let _ = if budget.done.is_directory {
                fs::remove_dir_all(&tmp)
            } else {
                fs::remove_file(&tmp)
            };
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests;
