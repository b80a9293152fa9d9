//! Trees stored in one memory-mapped file, built level by level in parallel.
//!
//! File layout (format 1, little-endian):
//!
//! | offset | bytes | content |
//! |---|---|---|
//! | 0 | 8 | magic `LODETREE` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | hasher id ([`TreeHasher::ID`]) |
//! | 16 | 8 | leaf count |
//! | 24 | 4 | height (levels above the leaves) |
//! | 28 | 4 | first stored level above the leaves (`1 + discard_rows`, at most the height) |
//! | 32 | 4 | 1 if the leaves are inside this file, 0 if they live in their own file |
//! | 36 | 64 | arity of each level, one byte each, bottom first |
//! | 100 | 32 | root |
//! | 224 | 32 | BLAKE3 of bytes 0..224 |
//! | 256 | … | the leaves (if inside), then every stored level from the lowest to the root |
//!
//! A file is written through a memory map under a temporary name, fsynced, then renamed into place and
//! its directory fsynced ([`crate::durable`]), so a crash never leaves a half-written tree under the real
//! name.

use std::fs::File;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rayon::prelude::*;

use super::{MerkleProof, TreeError, TreeHasher, TreeShape};
use crate::durable::{AtomicFile, DurableError};
use crate::node::{NODE_SIZE, Node, nodes_as_bytes, nodes_from_bytes, nodes_from_bytes_mut};

const MAGIC: &[u8; 8] = b"LODETREE";
const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 256;
const CHECKSUM_AT: usize = 224;
const MAX_LEVELS: usize = 64;
/// Leaves folded per parallel task when hashing the rows that are not stored.
const LEAVES_PER_TASK: u64 = 1 << 14;

/// How a tree is stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeConfig {
    /// Rows directly above the leaves that are not stored; proving recomputes them from the leaves
    /// (`arity^rows` leaves per proof). 0 stores every level.
    pub discard_rows: usize,
}

impl TreeConfig {
    /// The first level above the leaves that is stored: `1 + discard_rows`, at most the height.
    fn first_stored(&self, shape: &TreeShape) -> usize {
        self.discard_rows
            .saturating_add(1)
            .min(shape.height().max(1))
    }

    /// The exact length of the file [`DiskTree::build`] (`leaves_inside`) or
    /// [`DiskTree::build_over_file`] (not `leaves_inside`) writes for `shape` under this config: the
    /// 256-byte header, then 32 bytes per stored node. What a caller sizes disk space with.
    pub fn file_len(&self, shape: &TreeShape, leaves_inside: bool) -> u64 {
        let (_, body_nodes) = layout(shape, self.first_stored(shape), leaves_inside);
        body_nodes
            .saturating_mul(NODE_SIZE as u64)
            .saturating_add(HEADER_LEN as u64)
    }
}

enum Leaves {
    /// Inside the tree file, at this node offset of the map.
    Inside,
    /// In their own file.
    External { map: Mmap },
}

/// A Merkle tree stored on disk. Nodes are read through a memory map, so the tree may be far larger
/// than RAM.
pub struct DiskTree<H: TreeHasher> {
    path: PathBuf,
    shape: TreeShape,
    map: Mmap,
    leaves: Leaves,
    first_stored: usize,
    /// Node offset (from the start of the body) of each stored level, lowest first.
    level_offsets: Vec<u64>,
    root: Node,
    _hasher: PhantomData<H>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TreeError + '_ {
    move |source| TreeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn durable_err(e: DurableError) -> TreeError {
    TreeError::Io {
        path: e.path,
        source: e.source,
    }
}

/// Where each stored level starts, in nodes from the start of the body, and the body's node count.
fn layout(shape: &TreeShape, first_stored: usize, leaves_inside: bool) -> (Vec<u64>, u64) {
    let mut offset = if leaves_inside { shape.leaves() } else { 0 };
    let mut offsets = Vec::new();
    for level in first_stored..=shape.height() {
        if level == 0 {
            continue;
        }
        offsets.push(offset);
        offset += shape.level_len(level);
    }
    (offsets, offset)
}

/// Folds `leaves` through `arities` into `out` (one output node per `product(arities)` leaves), serially.
fn fold_serial<H: TreeHasher>(
    arities: &[usize],
    leaves: &[Node],
    out: &mut [Node],
) -> Result<(), TreeError> {
    match arities {
        [] => {
            out.copy_from_slice(leaves);
            Ok(())
        }
        [a] => H::hash_level_serial(*a, leaves, out),
        [a, rest @ ..] => {
            let mut next = vec![Node::ZERO; leaves.len() / a];
            H::hash_level_serial(*a, leaves, &mut next)?;
            fold_serial::<H>(rest, &next, out)
        }
    }
}

/// Parallel [`fold_serial`]: tasks of about `LEAVES_PER_TASK` leaves each.
fn fold_parallel<H: TreeHasher>(
    arities: &[usize],
    leaves: &[Node],
    out: &mut [Node],
) -> Result<(), TreeError> {
    let span = arities.iter().product::<usize>().max(1);
    let per_task = (LEAVES_PER_TASK as usize / span).max(1);
    out.par_chunks_mut(per_task)
        .zip(leaves.par_chunks(per_task * span))
        .try_for_each(|(o, l)| fold_serial::<H>(arities, l, o))
}

impl<H: TreeHasher> DiskTree<H> {
    /// Builds a tree over in-memory `leaves` and stores it, leaves included, at `path`.
    pub fn build(
        shape: &TreeShape,
        leaves: &[Node],
        path: &Path,
        config: TreeConfig,
    ) -> Result<Self, TreeError> {
        write_tree::<H>(shape, leaves, path, config, true, None)?;
        Self::open(path, None)
    }

    /// Builds a tree whose leaves are the nodes of the file `leaves_path` (a sector's data or replica),
    /// which stays where it is; the tree file at `path` holds only the levels above.
    pub fn build_over_file(
        shape: &TreeShape,
        leaves_path: &Path,
        path: &Path,
        config: TreeConfig,
    ) -> Result<Self, TreeError> {
        Self::build_over_file_with(shape, leaves_path, path, config, None)
    }

    /// [`DiskTree::build_over_file`] with every level hashed by `level_hasher` when one is given
    /// (a device's): the same file, byte for byte, as long as it hashes as `H` does.
    pub fn build_over_file_with(
        shape: &TreeShape,
        leaves_path: &Path,
        path: &Path,
        config: TreeConfig,
        level_hasher: Option<&LevelHasher<'_>>,
    ) -> Result<Self, TreeError> {
        let map = map_leaves(shape, leaves_path)?;
        let leaves = nodes_from_bytes(&map).ok_or(TreeError::WrongFileLength {
            path: leaves_path.to_path_buf(),
            expected: shape.leaves() * NODE_SIZE as u64,
            found: map.len() as u64,
        })?;
        write_tree::<H>(shape, leaves, path, config, false, level_hasher)?;
        Self::open(path, Some(leaves_path))
    }

    /// Opens a stored tree; `leaves_path` names the leaves file of a tree built with
    /// [`DiskTree::build_over_file`]. Checks the header, the hasher and every length, not the content
    /// (see [`DiskTree::check`]).
    pub fn open(path: &Path, leaves_path: Option<&Path>) -> Result<Self, TreeError> {
        let file = File::open(path).map_err(io_err(path))?;
        let not_tree = |reason| TreeError::NotATreeFile {
            path: path.to_path_buf(),
            reason,
        };
        let len = file.metadata().map_err(io_err(path))?.len();
        if len < HEADER_LEN as u64 {
            return Err(not_tree("shorter than a tree header"));
        }
        // SAFETY: the map is read-only and lode never writes a tree file after renaming it into place.
        // Another process truncating the file under us could fault the reads; that is outside the contract.
        let map = unsafe { Mmap::map(&file) }.map_err(io_err(path))?;
        let header = &map[..HEADER_LEN];
        if &header[..8] != MAGIC {
            return Err(not_tree("bad magic"));
        }
        if blake3::hash(&header[..CHECKSUM_AT]).as_bytes() != &header[CHECKSUM_AT..HEADER_LEN] {
            return Err(not_tree("header checksum mismatch"));
        }
        let u32_at = |at: usize| {
            u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        if u32_at(8) != FORMAT_VERSION {
            return Err(not_tree("unsupported format version"));
        }
        if u32_at(12) != H::ID {
            return Err(TreeError::WrongHasher {
                path: path.to_path_buf(),
                expected: H::ID,
                found: u32_at(12),
            });
        }
        let mut leaves_bytes = [0u8; 8];
        leaves_bytes.copy_from_slice(&header[16..24]);
        let leaf_count = u64::from_le_bytes(leaves_bytes);
        let height = u32_at(24) as usize;
        let first_stored = u32_at(28) as usize;
        let leaves_inside = match u32_at(32) {
            0 => false,
            1 => true,
            _ => return Err(not_tree("bad leaves flag")),
        };
        if height > MAX_LEVELS || first_stored == 0 || first_stored > height.max(1) {
            return Err(not_tree("bad level counts"));
        }
        let arities = header[36..36 + height]
            .iter()
            .map(|&a| usize::from(a))
            .collect();
        let shape = TreeShape::new(leaf_count, arities).map_err(|_| not_tree("bad shape"))?;
        let mut root = Node::ZERO;
        root.0.copy_from_slice(&header[100..132]);

        let (level_offsets, body_nodes) = layout(&shape, first_stored, leaves_inside);
        let expected = body_nodes
            .checked_mul(NODE_SIZE as u64)
            .and_then(|b| b.checked_add(HEADER_LEN as u64))
            .ok_or_else(|| not_tree("bad shape"))?;
        if len != expected {
            return Err(TreeError::WrongFileLength {
                path: path.to_path_buf(),
                expected,
                found: len,
            });
        }
        let leaves = if leaves_inside {
            Leaves::Inside
        } else {
            let leaves_path = leaves_path.ok_or(TreeError::MissingLeaves)?;
            Leaves::External {
                map: map_leaves(&shape, leaves_path)?,
            }
        };
        let tree = DiskTree {
            path: path.to_path_buf(),
            shape,
            map,
            leaves,
            first_stored,
            level_offsets,
            root,
            _hasher: PhantomData,
        };
        let top = if tree.shape.height() == 0 {
            tree.leaves()[0]
        } else {
            tree.stored_level(tree.shape.height())[0]
        };
        if top != root {
            return Err(TreeError::Corrupted { path: tree.path });
        }
        Ok(tree)
    }

    /// The root.
    pub fn root(&self) -> Node {
        self.root
    }

    /// The shape.
    pub fn shape(&self) -> &TreeShape {
        &self.shape
    }

    /// The tree file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All leaves (memory-mapped).
    pub fn leaves(&self) -> &[Node] {
        let bytes = match &self.leaves {
            Leaves::Inside => {
                &self.map[HEADER_LEN..HEADER_LEN + self.shape.leaves() as usize * NODE_SIZE]
            }
            Leaves::External { map } => &map[..],
        };
        nodes_from_bytes(bytes).unwrap_or_default()
    }

    /// A stored level (`first_stored ≤ level ≤ height`). Lengths were checked when the file was opened.
    fn stored_level(&self, level: usize) -> &[Node] {
        let i = level - self.first_stored;
        let start = HEADER_LEN + self.level_offsets[i] as usize * NODE_SIZE;
        let len = self.shape.level_len(level) as usize * NODE_SIZE;
        nodes_from_bytes(&self.map[start..start + len]).unwrap_or_default()
    }

    /// An inclusion proof for leaf `index`; discarded rows are recomputed from the leaves.
    pub fn prove(&self, index: u64) -> Result<MerkleProof, TreeError> {
        let leaves = self.shape.leaves();
        if index >= leaves {
            return Err(TreeError::IndexOutOfRange { index, leaves });
        }
        let arities = self.shape.arities();
        // Levels below the first stored one, for the subtree holding `index`.
        let s = self.first_stored.min(self.shape.height());
        let span = self.shape.span(s);
        let base = index / span * span;
        let mut recomputed: Vec<Vec<Node>> = Vec::new();
        if s > 1 {
            let mut level = self.leaves()[base as usize..(base + span) as usize].to_vec();
            for &a in &arities[..s - 1] {
                let mut next = vec![Node::ZERO; level.len() / a];
                H::hash_level_serial(a, &level, &mut next)?;
                recomputed.push(next.clone());
                level = next;
            }
        }
        let mut siblings = Vec::with_capacity(self.shape.height());
        let mut i = index;
        for (level, &a) in arities.iter().enumerate() {
            let group = (i / a as u64 * a as u64) as usize;
            let pos = (i % a as u64) as usize;
            let nodes: &[Node] = if level == 0 {
                &self.leaves()[group..group + a]
            } else if level < s {
                let local = group - (base / self.shape.span(level)) as usize;
                &recomputed[level - 1][local..local + a]
            } else {
                &self.stored_level(level)[group..group + a]
            };
            let mut sib = nodes.to_vec();
            sib.remove(pos);
            siblings.push(sib);
            i /= a as u64;
        }
        Ok(MerkleProof {
            index,
            leaf: self.leaves()[index as usize],
            siblings,
        })
    }

    /// Recomputes every stored level from the leaves and compares: `Corrupted` if any node differs.
    pub fn check(&self) -> Result<(), TreeError> {
        let corrupted = || TreeError::Corrupted {
            path: self.path.clone(),
        };
        let height = self.shape.height();
        if height == 0 {
            return Ok(());
        }
        let arities = self.shape.arities();
        let s = self.first_stored;
        let span = self.shape.span(s) as usize;
        let per_task = (LEAVES_PER_TASK as usize / span).max(1);
        let stored = self.stored_level(s);
        stored
            .par_chunks(per_task)
            .zip(self.leaves().par_chunks(per_task * span))
            .try_for_each(|(st, l)| {
                let mut out = vec![Node::ZERO; st.len()];
                fold_serial::<H>(&arities[..s], l, &mut out)?;
                if out == st { Ok(()) } else { Err(corrupted()) }
            })?;
        for level in s + 1..=height {
            let a = arities[level - 1];
            let (children, parents) = (self.stored_level(level - 1), self.stored_level(level));
            parents
                .par_chunks(4096)
                .zip(children.par_chunks(4096 * a))
                .try_for_each(|(p, c)| {
                    let mut out = vec![Node::ZERO; p.len()];
                    H::hash_level_serial(a, c, &mut out)?;
                    if out == p { Ok(()) } else { Err(corrupted()) }
                })?;
        }
        Ok(())
    }
}

fn map_leaves(shape: &TreeShape, path: &Path) -> Result<Mmap, TreeError> {
    let file = File::open(path).map_err(io_err(path))?;
    let found = file.metadata().map_err(io_err(path))?.len();
    let expected = shape.leaves().saturating_mul(NODE_SIZE as u64);
    if found != expected {
        return Err(TreeError::WrongFileLength {
            path: path.to_path_buf(),
            expected,
            found,
        });
    }
    // SAFETY: read-only map of a sector file that lode does not modify while a tree over it is open.
    unsafe { Mmap::map(&file) }.map_err(io_err(path))
}

/// Hashes a whole level: `parents[i] = hash(children[i·arity .. (i+1)·arity])` with the tree's
/// hash — the seam through which a tree's levels are computed elsewhere (on a device) while the
/// file is written here. It must give exactly what `H::hash_level` gives.
pub type LevelHasher<'a> = dyn Fn(usize, &[Node], &mut [Node]) -> Result<(), TreeError> + Sync + 'a;

/// Computes every stored level into a fresh file, then renames it to `path`. Returns the root.
fn write_tree<H: TreeHasher>(
    shape: &TreeShape,
    leaves: &[Node],
    path: &Path,
    config: TreeConfig,
    leaves_inside: bool,
    level_hasher: Option<&LevelHasher<'_>>,
) -> Result<Node, TreeError> {
    if leaves.len() as u64 != shape.leaves() {
        return Err(TreeError::LeafCount {
            expected: shape.leaves(),
            got: leaves.len() as u64,
        });
    }
    if let Some(&arity) = shape.arities().iter().find(|&&a| !H::supports_arity(a)) {
        return Err(TreeError::UnsupportedArity {
            hasher: H::NAME,
            arity,
        });
    }
    if shape.height() > MAX_LEVELS || shape.arities().iter().any(|&a| a > usize::from(u8::MAX)) {
        return Err(TreeError::InvalidShape {
            leaves: shape.leaves(),
            arities: shape.arities().to_vec(),
        });
    }
    let height = shape.height();
    let first_stored = config.first_stored(shape);
    let (offsets, _) = layout(shape, first_stored, leaves_inside);

    let mut file = AtomicFile::create(path).map_err(durable_err)?;
    let mut map = file
        .map_mut(config.file_len(shape, leaves_inside))
        .map_err(durable_err)?;
    let (header, body) = map.split_at_mut(HEADER_LEN);
    let body = nodes_from_bytes_mut(body).ok_or(TreeError::LeafCount {
        expected: 0,
        got: 0,
    })?;

    if leaves_inside {
        body[..leaves.len()]
            .par_chunks_mut(1 << 16)
            .zip(leaves.par_chunks(1 << 16))
            .for_each(|(d, s)| d.copy_from_slice(s));
    }
    let root = if height == 0 {
        leaves[0]
    } else {
        // The lowest stored level, straight from the leaves.
        let start = offsets[0] as usize;
        let len = shape.level_len(first_stored) as usize;
        let out = &mut body[start..start + len];
        match level_hasher {
            None => fold_parallel::<H>(&shape.arities()[..first_stored], leaves, out)?,
            Some(hash) => {
                // Level by level through the unstored ones (at most `MAX_LEVELS`).
                let mut below: Vec<Node> = Vec::new();
                let arities = &shape.arities()[..first_stored];
                match arities.split_last() {
                    None => out.copy_from_slice(leaves),
                    Some((&last, lower)) => {
                        for &a in lower {
                            let children: &[Node] = if below.is_empty() { leaves } else { &below };
                            let mut next = vec![Node::ZERO; children.len() / a];
                            hash(a, children, &mut next)?;
                            below = next;
                        }
                        let children: &[Node] = if below.is_empty() { leaves } else { &below };
                        hash(last, children, out)?;
                    }
                }
            }
        }
        // Every level above, from the one below it.
        for (i, level) in (first_stored + 1..=height).enumerate() {
            let (below, above) = body.split_at_mut(offsets[i + 1] as usize);
            let children = &below[offsets[i] as usize..][..shape.level_len(level - 1) as usize];
            let parents = &mut above[..shape.level_len(level) as usize];
            match level_hasher {
                None => H::hash_level(shape.arities()[level - 1], children, parents)?,
                Some(hash) => hash(shape.arities()[level - 1], children, parents)?,
            }
        }
        body[offsets[offsets.len() - 1] as usize]
    };

    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&H::ID.to_le_bytes());
    header[16..24].copy_from_slice(&shape.leaves().to_le_bytes());
    header[24..28].copy_from_slice(&(height as u32).to_le_bytes());
    header[28..32].copy_from_slice(&(first_stored as u32).to_le_bytes());
    header[32..36].copy_from_slice(&u32::from(leaves_inside).to_le_bytes());
    for (slot, &a) in header[36..36 + height].iter_mut().zip(shape.arities()) {
        *slot = a as u8;
    }
    header[100..132].copy_from_slice(nodes_as_bytes(std::slice::from_ref(&root)));
    let checksum = blake3::hash(&header[..CHECKSUM_AT]);
    header[CHECKSUM_AT..HEADER_LEN].copy_from_slice(checksum.as_bytes());

    map.flush().map_err(durable_err)?;
    drop(map);
    file.commit().map_err(durable_err)?;
    Ok(root)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::Blake3TreeD;
    use super::*;
    use crate::node::trunc254;

    fn leaves(n: u64, seed: u8) -> Vec<Node> {
        (0..n)
            .map(|i| trunc254(*blake3::hash(&[&i.to_le_bytes()[..], &[seed]].concat()).as_bytes()))
            .collect()
    }

    #[test]
    fn tree_d_root_equals_the_streaming_root() {
        let dir = tempfile::tempdir().unwrap();
        for rows in [0, 1, 3] {
            let l = leaves(1 << 12, 1);
            let shape = TreeShape::binary(l.len() as u64).unwrap();
            let path = dir.path().join(format!("t{rows}"));
            let t = DiskTree::<Blake3TreeD>::build(
                &shape,
                &l,
                &path,
                TreeConfig { discard_rows: rows },
            )
            .unwrap();
            assert_eq!(t.root(), crate::piece::tree_d_root(&l));
            let config = TreeConfig { discard_rows: rows };
            let len = std::fs::metadata(&path).unwrap().len();
            assert_eq!(config.file_len(&shape, true), len);
            t.check().unwrap();
            for i in [0u64, 1, 2, 77, 4095] {
                let p = t.prove(i).unwrap();
                p.verify_leaf::<Blake3TreeD>(&shape, &t.root(), i, &l[i as usize])
                    .unwrap();
            }
        }
    }

    #[test]
    fn reopen_after_restart_and_detect_damage() {
        let dir = tempfile::tempdir().unwrap();
        let l = leaves(256, 2);
        let shape = TreeShape::binary(256).unwrap();
        let leaves_path = dir.path().join("data");
        std::fs::write(&leaves_path, nodes_as_bytes(&l)).unwrap();
        let path = dir.path().join("tree-d");
        let built = DiskTree::<Blake3TreeD>::build_over_file(
            &shape,
            &leaves_path,
            &path,
            TreeConfig::default(),
        )
        .unwrap();
        let root = built.root();
        drop(built);
        assert!(matches!(
            DiskTree::<Blake3TreeD>::open(&path, None),
            Err(TreeError::MissingLeaves)
        ));
        let t = DiskTree::<Blake3TreeD>::open(&path, Some(&leaves_path)).unwrap();
        assert_eq!(t.root(), root);
        assert_eq!(t.prove(9).unwrap().leaf, l[9]);
        t.check().unwrap();
        drop(t);

        // A flipped node inside a level: opens (lengths are fine) but `check` finds it.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER_LEN + 40 * NODE_SIZE] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let t = DiskTree::<Blake3TreeD>::open(&path, Some(&leaves_path)).unwrap();
        assert!(matches!(t.check(), Err(TreeError::Corrupted { .. })));
        drop(t);

        // A truncated file and a damaged header are refused at open.
        std::fs::write(&path, &bytes[..bytes.len() - 32]).unwrap();
        assert!(matches!(
            DiskTree::<Blake3TreeD>::open(&path, Some(&leaves_path)),
            Err(TreeError::WrongFileLength { .. })
        ));
        bytes[20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            DiskTree::<Blake3TreeD>::open(&path, Some(&leaves_path)),
            Err(TreeError::NotATreeFile { .. })
        ));
        // A header with a valid checksum but impossible level numbers.
        let mut crafted = std::fs::read(&path).unwrap();
        crafted[20] ^= 1;
        crafted[28..32].copy_from_slice(&0u32.to_le_bytes());
        let sum = blake3::hash(&crafted[..CHECKSUM_AT]);
        crafted[CHECKSUM_AT..HEADER_LEN].copy_from_slice(sum.as_bytes());
        std::fs::write(&path, &crafted).unwrap();
        assert!(matches!(
            DiskTree::<Blake3TreeD>::open(&path, Some(&leaves_path)),
            Err(TreeError::NotATreeFile { .. })
        ));
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            DiskTree::<Blake3TreeD>::open(&path, None),
            Err(TreeError::NotATreeFile { .. })
        ));
        // A leaves file of the wrong size.
        std::fs::write(&leaves_path, [0u8; 64]).unwrap();
        assert!(
            DiskTree::<Blake3TreeD>::build_over_file(
                &shape,
                &leaves_path,
                &path,
                TreeConfig::default()
            )
            .is_err()
        );
    }

    #[test]
    fn single_leaf_tree() {
        let dir = tempfile::tempdir().unwrap();
        let l = leaves(1, 3);
        let shape = TreeShape::binary(1).unwrap();
        let t = DiskTree::<Blake3TreeD>::build(
            &shape,
            &l,
            &dir.path().join("one"),
            TreeConfig::default(),
        )
        .unwrap();
        assert_eq!(t.root(), l[0]);
        let p = t.prove(0).unwrap();
        p.verify::<Blake3TreeD>(&shape, &l[0]).unwrap();
        assert!(t.prove(1).is_err());
    }
}
