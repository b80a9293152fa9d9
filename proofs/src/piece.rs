//! Pieces, tree D, the piece commitment (CommP) and the sector data commitment (CommD) — SPEC §3.2.
//!
//! Tree D is a binary tree over 32-byte nodes with `parent = H("tree-d", left || right)` and no leaf hashing.
//! Everything here is streaming or works from commitments alone:
//! - [`CommPHasher`] takes raw payload bytes through `Write`, fr32-pads them and folds each 1 MiB of padded
//!   nodes into a subtree root as it goes, so a file of any size needs only a few MiB of memory;
//! - [`TreeDAccumulator`] folds aligned subtree roots and runs of zero nodes into a root, using the
//!   zero-commitment table for the zeros, which is how [`comm_d`] reduces `(CommP, size)` pairs.

use std::io::{self, Write};
use std::sync::OnceLock;

use crate::fr32::{PADDED_BLOCK, RAW_BLOCK, pad_block};
use crate::hash::{Tag, hash_pairs};
use crate::node::{NODE_SIZE, Node, nodes_as_bytes};

/// The smallest piece: 128 padded bytes (one fr32 block, four nodes).
pub const MIN_PIECE_SIZE: u64 = 128;

/// Tree D height of the subtrees that [`CommPHasher`] hashes at once: 2^15 nodes = 1 MiB padded.
const CHUNK_HEIGHT: u32 = 15;
const CHUNK_NODES: usize = 1 << CHUNK_HEIGHT;
const CHUNK_RAW: usize = CHUNK_NODES * NODE_SIZE / PADDED_BLOCK * RAW_BLOCK;

/// Errors about pieces and data commitments.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PieceError {
    /// A padded piece or sector size must be a power of two of at least 128 bytes.
    #[error("invalid padded size {0}: it must be a power of two of at least 128 bytes")]
    InvalidPaddedSize(u64),
    /// The payload cannot fit any representable piece.
    #[error("a payload of {0} bytes is too large for a piece")]
    PayloadTooLarge(u64),
    /// The pieces need more room than the sector has (after alignment).
    #[error(
        "the pieces do not fit: they need {needed} bytes with alignment, the sector has {sector_size}"
    )]
    PiecesDoNotFit {
        /// Padded bytes the pieces occupy, including alignment gaps.
        needed: u64,
        /// The sector's padded size.
        sector_size: u64,
    },
    /// A subtree was placed at a position that is not a multiple of its own size.
    #[error(
        "a subtree of 2^{height} nodes cannot start at node {position}: it must be aligned to its size"
    )]
    Misaligned {
        /// The subtree's height.
        height: u32,
        /// Where it was placed, in nodes.
        position: u64,
    },
}

/// A padded piece (or sector) size in bytes: a power of two, at least 128.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PaddedPieceSize(u64);

impl PaddedPieceSize {
    /// Validates a padded size.
    pub fn new(bytes: u64) -> Result<Self, PieceError> {
        if bytes < MIN_PIECE_SIZE || !bytes.is_power_of_two() {
            return Err(PieceError::InvalidPaddedSize(bytes));
        }
        Ok(PaddedPieceSize(bytes))
    }

    /// The smallest piece whose unpadded capacity holds `payload_len` bytes (SPEC §3.2); 128 for an empty payload.
    pub fn for_payload(payload_len: u64) -> Result<Self, PieceError> {
        let blocks = payload_len.div_ceil(RAW_BLOCK as u64).max(1);
        blocks
            .checked_mul(PADDED_BLOCK as u64)
            .and_then(u64::checked_next_power_of_two)
            .map(PaddedPieceSize)
            .ok_or(PieceError::PayloadTooLarge(payload_len))
    }

    /// Padded bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Unpadded capacity: `padded × 127 / 128`.
    pub fn unpadded(self) -> u64 {
        self.0 / PADDED_BLOCK as u64 * RAW_BLOCK as u64
    }

    /// Number of 32-byte nodes.
    pub fn nodes(self) -> u64 {
        self.0 / NODE_SIZE as u64
    }

    /// Height of the piece's tree D: log2 of its node count.
    pub fn height(self) -> u32 {
        self.nodes().trailing_zeros()
    }
}

impl std::fmt::Display for PaddedPieceSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A piece's commitment and padded size: what a deal names and what CommD is reduced from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PieceInfo {
    /// The root of the piece's tree D.
    pub comm_p: Node,
    /// The piece's padded size.
    pub size: PaddedPieceSize,
}

/// The zero-commitment table: `Z[0] = 0^32`, `Z[k+1] = H("tree-d", Z[k] || Z[k])`, for `k` in `0..=63`.
pub fn zero_commitments() -> &'static [Node; 64] {
    static TABLE: OnceLock<[Node; 64]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut z = [Node::ZERO; 64];
        for k in 1..64 {
            let mut pair = [0u8; 64];
            pair[..32].copy_from_slice(&z[k - 1].0);
            pair[32..].copy_from_slice(&z[k - 1].0);
            z[k] = crate::hash::hash(Tag::TreeD, &pair);
        }
        z
    })
}

/// The root of `2^height` zero nodes.
///
/// # Panics
/// If `height > 63` (no such tree fits a `u64` count).
pub fn zero_commitment(height: u32) -> Node {
    zero_commitments()[height as usize]
}

/// Hashes two tree D nodes into their parent.
pub fn tree_d_parent(left: &Node, right: &Node) -> Node {
    let mut pair = [0u8; 64];
    pair[..32].copy_from_slice(&left.0);
    pair[32..].copy_from_slice(&right.0);
    crate::hash::hash(Tag::TreeD, &pair)
}

/// The tree D root of `nodes`, zero-extended to the next power of two (at least one node).
/// Levels are hashed in SIMD batches; `nodes` is used as scratch space and left overwritten.
pub fn tree_d_root_in_place(nodes: &mut [Node]) -> Node {
    let n = nodes.len().max(1).next_power_of_two();
    if nodes.is_empty() {
        return Node::ZERO;
    }
    let mut scratch = vec![Node::ZERO; n / 2];
    let mut len = nodes.len();
    let mut height = 0u32;
    // Ping-pong between the caller's buffer and the scratch buffer; odd tails meet zero subtrees.
    let mut in_scratch = false;
    while (1usize << height) < n {
        let (src, dst): (&mut [Node], &mut [Node]) = if in_scratch {
            (&mut scratch[..], &mut nodes[..])
        } else {
            (&mut nodes[..], &mut scratch[..])
        };
        let pairs = len / 2;
        hash_pairs(Tag::TreeD, &src[..2 * pairs], &mut dst[..pairs]);
        let mut next = pairs;
        if len % 2 == 1 {
            dst[pairs] = tree_d_parent(&src[len - 1], &zero_commitment(height));
            next += 1;
        }
        len = next;
        height += 1;
        in_scratch = !in_scratch;
    }
    if in_scratch { scratch[0] } else { nodes[0] }
}

/// Folds a tree D from left to right out of aligned subtree roots and runs of zero nodes.
///
/// Invariant: `stack` holds the roots of the complete subtrees to the left of `position`, with strictly
/// decreasing heights; a new subtree merges with the top while their heights are equal.
#[derive(Clone, Debug, Default)]
pub struct TreeDAccumulator {
    stack: Vec<(u32, Node)>,
    position: u64,
}

impl TreeDAccumulator {
    /// An empty accumulator at node position 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Node position of the next subtree.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Appends a subtree of `2^height` nodes with the given root; its position must be a multiple of its size.
    pub fn push_subtree(&mut self, height: u32, root: Node) -> Result<(), PieceError> {
        let size = 1u64.checked_shl(height).filter(|_| height < 64);
        let Some(size) = size.filter(|s| self.position.is_multiple_of(*s)) else {
            return Err(PieceError::Misaligned {
                height,
                position: self.position,
            });
        };
        self.position = self
            .position
            .checked_add(size)
            .ok_or(PieceError::Misaligned {
                height,
                position: self.position,
            })?;
        let (mut h, mut node) = (height, root);
        while let Some(&(top_h, top)) = self.stack.last() {
            if top_h != h {
                break;
            }
            self.stack.pop();
            node = tree_d_parent(&top, &node);
            h += 1;
        }
        self.stack.push((h, node));
        Ok(())
    }

    /// Appends `count` zero nodes, as the largest aligned zero subtrees.
    pub fn push_zeros(&mut self, mut count: u64) -> Result<(), PieceError> {
        while count > 0 {
            let align = if self.position == 0 {
                63
            } else {
                self.position.trailing_zeros()
            };
            let fit = 63 - count.leading_zeros();
            let h = align.min(fit);
            self.push_subtree(h, zero_commitment(h))?;
            count -= 1 << h;
        }
        Ok(())
    }

    /// Zero-fills up to `total_nodes` (a power of two ≥ everything pushed) and returns the root.
    pub fn finish(mut self, total_nodes: u64) -> Result<Node, PieceError> {
        if !total_nodes.is_power_of_two() || self.position > total_nodes {
            return Err(PieceError::PiecesDoNotFit {
                needed: self.position.saturating_mul(NODE_SIZE as u64),
                sector_size: total_nodes.saturating_mul(NODE_SIZE as u64),
            });
        }
        self.push_zeros(total_nodes - self.position)?;
        match self.stack.as_slice() {
            [(_, root)] => Ok(*root),
            _ => unreachable!("a power-of-two span of aligned subtrees folds into one root"),
        }
    }
}

/// CommD of a sector from its pieces' `(CommP, size)` pairs, placed in order, each aligned to its own size
/// (SPEC §3.2). An empty list gives the commitment of an all-zero sector.
pub fn comm_d(sector_size: PaddedPieceSize, pieces: &[PieceInfo]) -> Result<Node, PieceError> {
    let mut acc = TreeDAccumulator::new();
    let mut needed = 0u64;
    for piece in pieces {
        let nodes = piece.size.nodes();
        let aligned = acc.position().div_ceil(nodes).saturating_mul(nodes);
        needed = aligned
            .saturating_add(nodes)
            .saturating_mul(NODE_SIZE as u64);
        if needed > sector_size.bytes() {
            return Err(PieceError::PiecesDoNotFit {
                needed,
                sector_size: sector_size.bytes(),
            });
        }
        acc.push_zeros(aligned - acc.position())?;
        acc.push_subtree(piece.size.height(), piece.comm_p)?;
    }
    debug_assert!(needed <= sector_size.bytes());
    acc.finish(sector_size.nodes())
}

/// Byte offsets (padded) at which `pieces` start in a sector, with alignment; the end offset last.
pub fn piece_offsets(pieces: &[PaddedPieceSize]) -> Vec<u64> {
    let mut offsets = Vec::with_capacity(pieces.len() + 1);
    let mut pos = 0u64;
    for p in pieces {
        pos = pos.div_ceil(p.bytes()).saturating_mul(p.bytes());
        offsets.push(pos);
        pos = pos.saturating_add(p.bytes());
    }
    offsets.push(pos);
    offsets
}

/// The commitment of a piece and what it was computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PieceCommitment {
    /// The piece commitment.
    pub comm_p: Node,
    /// The piece's padded size.
    pub padded_size: PaddedPieceSize,
    /// Raw payload bytes that went in.
    pub payload_len: u64,
}

impl PieceCommitment {
    /// The piece's `PieceInfo`.
    pub fn info(&self) -> PieceInfo {
        PieceInfo {
            comm_p: self.comm_p,
            size: self.padded_size,
        }
    }
}

/// Computes CommP of a payload streamed through `Write` (SPEC §3.2: zero-filled to the smallest piece
/// that holds it, fr32-padded, tree D root). Memory use is constant (about 2 MiB).
pub struct CommPHasher {
    raw: Vec<u8>,
    nodes: Vec<Node>,
    acc: TreeDAccumulator,
    payload_len: u64,
}

impl Default for CommPHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl CommPHasher {
    /// A hasher with nothing written yet.
    pub fn new() -> Self {
        CommPHasher {
            raw: Vec::with_capacity(CHUNK_RAW),
            nodes: vec![Node::ZERO; CHUNK_NODES],
            acc: TreeDAccumulator::new(),
            payload_len: 0,
        }
    }

    /// Raw payload bytes written so far.
    pub fn payload_len(&self) -> u64 {
        self.payload_len
    }

    /// Pads the buffered raw bytes (zero-extending the last block) and folds them into the tree.
    fn fold_buffer(&mut self) -> Result<(), PieceError> {
        let blocks = self.raw.len().div_ceil(RAW_BLOCK);
        self.raw.resize(blocks * RAW_BLOCK, 0);
        let node_count = blocks * PADDED_BLOCK / NODE_SIZE;
        let nodes = &mut self.nodes[..node_count];
        for (raw, dst) in self
            .raw
            .chunks_exact(RAW_BLOCK)
            .zip(nodes.chunks_exact_mut(4))
        {
            let out = crate::node::nodes_as_bytes_mut(dst);
            if let (Ok(raw), Ok(out)) = (
                <&[u8; RAW_BLOCK]>::try_from(raw),
                <&mut [u8; PADDED_BLOCK]>::try_from(out),
            ) {
                pad_block(raw, out);
            }
        }
        let root = tree_d_root_in_place(nodes);
        let height = node_count.next_power_of_two().trailing_zeros();
        self.raw.clear();
        self.acc.push_subtree(height, root)
    }

    /// Finishes: the piece commitment, its padded size and the payload length.
    pub fn finish(mut self) -> Result<PieceCommitment, PieceError> {
        let padded_size = PaddedPieceSize::for_payload(self.payload_len)?;
        if !self.raw.is_empty() {
            self.fold_buffer()?;
        }
        let comm_p = self.acc.finish(padded_size.nodes())?;
        Ok(PieceCommitment {
            comm_p,
            padded_size,
            payload_len: self.payload_len,
        })
    }

    /// Finishes as a piece of `size`: the payload zero-filled to `size`'s unpadded capacity (a
    /// deal may name a piece larger than the smallest that holds its payload). The zeros are
    /// folded from the zero-commitment table, never hashed. Equal to [`CommPHasher::finish`]
    /// when `size` is the smallest piece for the payload.
    ///
    /// # Errors
    /// [`PieceError::PayloadTooLarge`] when more than `size.unpadded()` bytes were written.
    pub fn finish_as(mut self, size: PaddedPieceSize) -> Result<PieceCommitment, PieceError> {
        if self.payload_len > size.unpadded() {
            return Err(PieceError::PayloadTooLarge(self.payload_len));
        }
        if !self.raw.is_empty() {
            self.fold_buffer()?;
        }
        let comm_p = self.acc.finish(size.nodes())?;
        Ok(PieceCommitment {
            comm_p,
            padded_size: size,
            payload_len: self.payload_len,
        })
    }
}

impl Write for CommPHasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK_RAW - self.raw.len());
        self.raw.extend_from_slice(&buf[..n]);
        self.payload_len += n as u64;
        if self.raw.len() == CHUNK_RAW {
            self.fold_buffer()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// CommP of an in-memory payload.
pub fn commp_of_bytes(payload: &[u8]) -> Result<PieceCommitment, PieceError> {
    let mut h = CommPHasher::new();
    // Writing to the hasher only fails through `fold_buffer`, which cannot fail for chunk-aligned folds.
    for chunk in payload.chunks(CHUNK_RAW) {
        let mut rest = chunk;
        while !rest.is_empty() {
            match h.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(_) => return Err(PieceError::PayloadTooLarge(payload.len() as u64)),
            }
        }
    }
    h.finish()
}

/// The tree D root over a sector's worth of nodes held in memory (power-of-two count), for tests and
/// small sectors; large sectors build tree D on disk with [`crate::merkle`].
pub fn tree_d_root(nodes: &[Node]) -> Node {
    let mut copy = nodes.to_vec();
    tree_d_root_in_place(&mut copy)
}

/// Bytes of nodes, for convenience in callers that hash whole sectors.
pub fn nodes_bytes(nodes: &[Node]) -> &[u8] {
    nodes_as_bytes(nodes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fr32;
    use proptest::prelude::*;

    #[derive(serde::Deserialize)]
    struct Vectors {
        zero_commitments: Vec<String>,
        pieces: Vec<PieceVector>,
        commp_payloads: Vec<PayloadVector>,
        comm_d_cases: Vec<CommDCase>,
    }
    #[derive(serde::Deserialize)]
    struct PieceVector {
        comm_p: String,
        padded_size: u64,
        raw_len: usize,
    }
    #[derive(serde::Deserialize)]
    struct PayloadVector {
        comm_p: String,
        padded_size: u64,
        payload_len: usize,
    }
    #[derive(serde::Deserialize)]
    struct CommDCase {
        comm_d: String,
        sector_size: u64,
        pieces: Vec<CommDPiece>,
    }
    #[derive(serde::Deserialize)]
    struct CommDPiece {
        comm_p: String,
        offset: u64,
        padded_size: u64,
    }

    fn vectors() -> Vectors {
        serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/vectors/tree_d.json"
        )))
        .unwrap()
    }

    fn node(h: &str) -> Node {
        Node::from_hex(h).unwrap()
    }

    fn pattern(len: usize, k: usize) -> Vec<u8> {
        (0..len).map(|i| ((i * 7 + 3 + k) % 256) as u8).collect()
    }

    /// Tree D by the definition: pad, zero-extend, hash pairs one at a time.
    fn naive_root(mut level: Vec<Node>) -> Node {
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|p| tree_d_parent(&p[0], &p[1]))
                .collect();
        }
        level[0]
    }

    #[test]
    fn zero_commitment_table_matches() {
        let v = vectors();
        assert_eq!(v.zero_commitments.len(), 31);
        for (k, z) in v.zero_commitments.iter().enumerate() {
            assert_eq!(zero_commitment(k as u32), node(z), "Z[{k}]");
        }
    }

    #[test]
    fn piece_commitments_match() {
        for p in vectors().pieces {
            let c = commp_of_bytes(&pattern(p.raw_len, 0)).unwrap();
            assert_eq!(c.comm_p, node(&p.comm_p));
            assert_eq!(c.padded_size.bytes(), p.padded_size);
        }
    }

    #[test]
    fn payload_commitments_match() {
        let v = vectors();
        assert!(v.commp_payloads.iter().any(|p| p.payload_len == 0));
        for p in v.commp_payloads {
            let c = commp_of_bytes(&pattern(p.payload_len, 0)).unwrap();
            assert_eq!(
                c.comm_p,
                node(&p.comm_p),
                "payload of {} bytes",
                p.payload_len
            );
            assert_eq!(c.padded_size.bytes(), p.padded_size);
            assert_eq!(c.payload_len, p.payload_len as u64);
        }
    }

    #[test]
    fn comm_d_matches_from_pairs_and_from_the_assembled_sector() {
        for case in vectors().comm_d_cases {
            let sector = PaddedPieceSize::new(case.sector_size).unwrap();
            let mut infos = Vec::new();
            let mut assembled = vec![0u8; case.sector_size as usize];
            let sizes: Vec<_> = case
                .pieces
                .iter()
                .map(|p| PaddedPieceSize::new(p.padded_size).unwrap())
                .collect();
            let offsets = piece_offsets(&sizes);
            for (k, p) in case.pieces.iter().enumerate() {
                let size = PaddedPieceSize::new(p.padded_size).unwrap();
                let raw = pattern(size.unpadded() as usize, k);
                let c = commp_of_bytes(&raw).unwrap();
                assert_eq!(c.comm_p, node(&p.comm_p));
                assert_eq!(offsets[k], p.offset);
                let padded = fr32::pad(&raw);
                assembled[p.offset as usize..][..padded.len()].copy_from_slice(&padded);
                infos.push(c.info());
            }
            let expected = node(&case.comm_d);
            assert_eq!(comm_d(sector, &infos).unwrap(), expected);
            let nodes = crate::node::nodes_from_bytes(&assembled).unwrap();
            assert_eq!(tree_d_root(nodes), expected);
        }
    }

    #[test]
    fn comm_d_rejects_pieces_that_do_not_fit() {
        let p = PieceInfo {
            comm_p: Node::ZERO,
            size: PaddedPieceSize::new(1024).unwrap(),
        };
        let small = PieceInfo {
            comm_p: Node::ZERO,
            size: PaddedPieceSize::new(128).unwrap(),
        };
        let sector = PaddedPieceSize::new(2048).unwrap();
        assert!(comm_d(sector, &[p, p]).is_ok());
        // 128 then 1024 aligns the second to 1024, then another 1024 overflows.
        assert_eq!(
            comm_d(sector, &[small, p, p]),
            Err(PieceError::PiecesDoNotFit {
                needed: 3072,
                sector_size: 2048
            })
        );
        assert_eq!(comm_d(sector, &[]).unwrap(), zero_commitment(6));
    }

    #[test]
    fn sizes_are_validated() {
        assert!(PaddedPieceSize::new(0).is_err());
        assert!(PaddedPieceSize::new(64).is_err());
        assert!(PaddedPieceSize::new(384).is_err());
        assert_eq!(PaddedPieceSize::for_payload(0).unwrap().bytes(), 128);
        assert_eq!(PaddedPieceSize::for_payload(127).unwrap().bytes(), 128);
        assert_eq!(PaddedPieceSize::for_payload(128).unwrap().bytes(), 256);
        assert_eq!(
            PaddedPieceSize::for_payload(u64::MAX),
            Err(PieceError::PayloadTooLarge(u64::MAX))
        );
        assert_eq!(
            PaddedPieceSize::for_payload(1 << 62).unwrap().bytes(),
            1 << 63
        );
        let mut acc = TreeDAccumulator::new();
        acc.push_subtree(0, Node::ZERO).unwrap();
        assert_eq!(
            acc.push_subtree(1, Node::ZERO),
            Err(PieceError::Misaligned {
                height: 1,
                position: 1
            })
        );
    }

    #[test]
    fn streaming_across_chunk_boundaries_matches_the_definition() {
        for len in [
            CHUNK_RAW - 1,
            CHUNK_RAW,
            CHUNK_RAW + 1,
            3 * CHUNK_RAW + 12345,
        ] {
            let raw = pattern(len, 5);
            let c = commp_of_bytes(&raw).unwrap();
            let mut padded = fr32::pad(&raw);
            padded.resize(c.padded_size.bytes() as usize, 0);
            let nodes = crate::node::nodes_from_bytes(&padded).unwrap().to_vec();
            assert_eq!(c.comm_p, naive_root(nodes), "len {len}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn commp_equals_the_naive_tree(raw in proptest::collection::vec(any::<u8>(), 0..20000), split in 1usize..5000) {
            let mut h = CommPHasher::new();
            for piece in raw.chunks(split) { h.write_all(piece).unwrap(); }
            let c = h.finish().unwrap();
            prop_assert_eq!(c, commp_of_bytes(&raw).unwrap());
            let mut padded = fr32::pad(&raw);
            padded.resize(c.padded_size.bytes() as usize, 0);
            let nodes = crate::node::nodes_from_bytes(&padded).unwrap().to_vec();
            prop_assert_eq!(c.comm_p, naive_root(nodes));
        }

        /// A payload finished as a larger piece is the payload zero-filled to that piece's
        /// capacity; as its own smallest piece, the same as `finish`; too small a piece is refused.
        #[test]
        fn finish_as_a_larger_piece_is_the_zero_filled_payload(raw in proptest::collection::vec(any::<u8>(), 0..3000), grow in 0u32..4) {
            let own = commp_of_bytes(&raw).unwrap();
            let size = PaddedPieceSize::new(own.padded_size.bytes() << grow).unwrap();
            let mut h = CommPHasher::new();
            h.write_all(&raw).unwrap();
            let c = h.finish_as(size).unwrap();
            let mut filled = raw.clone();
            filled.resize(size.unpadded() as usize, 0);
            prop_assert_eq!(c.comm_p, commp_of_bytes(&filled).unwrap().comm_p);
            prop_assert_eq!((c.padded_size, c.payload_len), (size, raw.len() as u64));
            if grow == 0 {
                prop_assert_eq!(c, own);
            }
            if own.padded_size.bytes() > MIN_PIECE_SIZE {
                let mut h = CommPHasher::new();
                h.write_all(&raw).unwrap();
                let small = PaddedPieceSize::new(own.padded_size.bytes() / 2).unwrap();
                prop_assert!(h.finish_as(small).is_err());
            }
        }

        #[test]
        fn accumulator_equals_the_naive_tree(runs in proptest::collection::vec((0u64..40, any::<bool>()), 0..12)) {
            // Random runs of zeros and of nonzero leaves folded one leaf at a time.
            let mut acc = TreeDAccumulator::new();
            let mut leaves = Vec::new();
            for (i, (len, zero)) in runs.iter().enumerate() {
                if *zero {
                    acc.push_zeros(*len).unwrap();
                    leaves.extend(std::iter::repeat_n(Node::ZERO, *len as usize));
                } else {
                    for j in 0..*len {
                        let n = crate::node::trunc254(*blake3::hash(&[i as u8, j as u8]).as_bytes());
                        acc.push_subtree(0, n).unwrap();
                        leaves.push(n);
                    }
                }
            }
            let total = (leaves.len() as u64).max(1).next_power_of_two();
            leaves.resize(total as usize, Node::ZERO);
            prop_assert_eq!(acc.finish(total).unwrap(), naive_root(leaves));
        }
    }
}
