//! Inclusion proofs: the leaf, its index, and the siblings at every level.

use super::{TreeError, TreeHasher, TreeShape};
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
        let mut children = [Node::ZERO; 16];
        for (&arity, sibs) in shape.arities().iter().zip(&self.siblings) {
            if sibs.len() + 1 != arity || arity > children.len() {
                return Err(TreeError::ProofShape("wrong number of siblings at a level"));
            }
            let pos = (index % arity as u64) as usize;
            children[..pos].copy_from_slice(&sibs[..pos]);
            children[pos] = node;
            children[pos + 1..arity].copy_from_slice(&sibs[pos..]);
            node = H::hash_children(&children[..arity])?;
            index /= arity as u64;
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
        let count: usize = self.siblings.iter().map(Vec::len).sum();
        let mut out =
            Vec::with_capacity(1 + 8 + NODE_SIZE + 1 + self.siblings.len() + count * NODE_SIZE);
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
        let mut r = Reader(bytes);
        if r.take(1)?[0] != PROOF_FORMAT {
            return Err(TreeError::MalformedProof("unknown format byte"));
        }
        let mut index = [0u8; 8];
        index.copy_from_slice(r.take(8)?);
        let leaf = r.node()?;
        let levels = r.take(1)?[0];
        let mut siblings = Vec::with_capacity(usize::from(levels));
        for _ in 0..levels {
            let n = r.take(1)?[0];
            let level = (0..n).map(|_| r.node()).collect::<Result<Vec<_>, _>>()?;
            siblings.push(level);
        }
        if !r.0.is_empty() {
            return Err(TreeError::MalformedProof("trailing bytes"));
        }
        Ok(MerkleProof {
            index: u64::from_le_bytes(index),
            leaf,
            siblings,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TreeError> {
        if self.0.len() < n {
            return Err(TreeError::MalformedProof("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn node(&mut self) -> Result<Node, TreeError> {
        let mut n = [0u8; NODE_SIZE];
        n.copy_from_slice(self.take(NODE_SIZE)?);
        Ok(Node(n))
    }
}
