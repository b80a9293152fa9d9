//! Inclusion proofs: the leaf, its index, and the siblings at every level.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

use super::{TreeError, TreeHasher, TreeShape};
use crate::codec::{CodecError, Reader};
use crate::node::{NODE_SIZE, Node};

/// Format byte that opens the binary encoding of a proof.
const PROOF_FORMAT: u8 = 1;

/// A Merkle inclusion proof. It carries no shape or root of its own: it is only ever checked against a
/// shape and root the verifier already trusts, so a proof from another tree, index or leaf fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerkleProof {
    /// The leaf's index.
    pub index: u64,
    /// The leaf.
    pub leaf: Node,
    /// For each level from the bottom, the `arity − 1` siblings of the path node, in order, without it.
    pub siblings: Vec<Vec<Node>>,
}

impl MerkleProof {
    /// The root this proof leads to under `shape` (checks the proof's geometry against the shape).
    pub fn compute_root<H: TreeHasher>(&self, shape: &TreeShape) -> Result<Node, TreeError> {
        if self.index >= shape.leaves() {
            return Err(TreeError::IndexOutOfRange {
                index: self.index,
                leaves: shape.leaves(),
            });
        }
        if self.siblings.len() != shape.height() {
            return Err(TreeError::ProofShape("wrong number of levels"));
        }
        let mut node = self.leaf;
        let mut index = self.index;
        let mut buffer = [Node::ZERO; 16];
        for (&arity, sibs) in shape.arities().iter().zip(&self.siblings) {
            let wrong_siblings = || TreeError::ProofShape("wrong number of siblings at a level");
            if sibs.len().checked_add(1) != Some(arity) {
                return Err(wrong_siblings());
            }
            let children = buffer.get_mut(..arity).ok_or_else(wrong_siblings)?;
            // `arity ≥ 1` here (it is `sibs.len() + 1`), so neither operation can fail.
            let a = u64::try_from(arity).map_err(|_| wrong_siblings())?;
            let pos = index.checked_rem(a).ok_or_else(wrong_siblings)?;
            let pos = usize::try_from(pos).map_err(|_| wrong_siblings())?;
            let (before, after) = sibs.split_at_checked(pos).ok_or_else(wrong_siblings)?;
            let path = before.iter().chain([&node]).chain(after);
            for (slot, child) in children.iter_mut().zip(path) {
                *slot = *child;
            }
            node = H::hash_children(children)?;
            index = index.checked_div(a).ok_or_else(wrong_siblings)?;
        }
        Ok(node)
    }

    /// Checks the proof against a trusted shape and root.
    pub fn verify<H: TreeHasher>(&self, shape: &TreeShape, root: &Node) -> Result<(), TreeError> {
        if self.compute_root::<H>(shape)? == *root {
            Ok(())
        } else {
            Err(TreeError::RootMismatch)
        }
    }

    /// Checks the proof against a trusted shape and root, and that it opens `leaf` at `index`.
    pub fn verify_leaf<H: TreeHasher>(
        &self,
        shape: &TreeShape,
        root: &Node,
        index: u64,
        leaf: &Node,
    ) -> Result<(), TreeError> {
        if self.index != index || self.leaf != *leaf {
            return Err(TreeError::WrongLeaf);
        }
        self.verify::<H>(shape, root)
    }

    /// Binary encoding: format byte, `u64le` index, leaf, level count, then per level the sibling count
    /// (one byte) and the siblings.
    pub fn to_bytes(&self) -> Vec<u8> {
        // The leaf and every sibling, then the format byte, index, level count and one count per level.
        let nodes = self
            .siblings
            .iter()
            .fold(1usize, |n, level| n.saturating_add(level.len()));
        let len = nodes
            .saturating_mul(NODE_SIZE)
            .saturating_add(1 + 8 + 1)
            .saturating_add(self.siblings.len());
        let mut out = Vec::with_capacity(len);
        out.push(PROOF_FORMAT);
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&self.leaf.0);
        out.push(self.siblings.len() as u8);
        for level in &self.siblings {
            out.push(level.len() as u8);
            for s in level {
                out.extend_from_slice(&s.0);
            }
        }
        out
    }

    /// Decodes [`MerkleProof::to_bytes`]; malformed input gets an error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TreeError> {
        let malformed = |e: CodecError| TreeError::MalformedProof(e.reason());
        let mut r = Reader::new(bytes);
        if r.u8().map_err(malformed)? != PROOF_FORMAT {
            return Err(TreeError::MalformedProof("unknown format byte"));
        }
        let index = r.u64_le().map_err(malformed)?;
        let leaf = r.node().map_err(malformed)?;
        let levels = r.u8().map_err(malformed)?;
        let mut siblings = Vec::with_capacity(usize::from(levels));
        for _ in 0..levels {
            let n = r.u8().map_err(malformed)?;
            let level = (0..n)
                .map(|_| r.node().map_err(malformed))
                .collect::<Result<Vec<_>, _>>()?;
            siblings.push(level);
        }
        r.finish().map_err(malformed)?;
        Ok(MerkleProof {
            index,
            leaf,
            siblings,
        })
    }
}
