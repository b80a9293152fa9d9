//! Authenticated key-value commitment for the chain state: a compact binary
//! sparse Merkle tree over 256-bit paths.
//!
//! # Hash definitions
//!
//! `H(ctx, m)` is BLAKE3 in key-derivation mode: `blake3::Hasher::new_derive_key(ctx)`,
//! then `update(m)`, then `finalize()`, giving 32 bytes. With `||` for concatenation:
//!
//! * path of a key: `path = H("lode/state/key", key)`;
//! * value hash: `value_hash = H("lode/state/value", value)`;
//! * leaf: `H("lode/state/leaf", path || value_hash)`;
//! * internal node: `H("lode/state/node", left || right)`;
//! * empty subtree: `[0; 32]` ([`EMPTY_HASH`]), so the root of an empty tree is all zeros.
//!
//! Paths are read bit by bit starting from the most significant bit of byte 0;
//! bit `0` goes left and bit `1` goes right.
//!
//! # Structure
//!
//! Conceptually the tree is a full binary tree of depth 256 with one slot per path.
//! It is *compact* in the sense of Diem's Jellyfish Merkle tree: a subtree holding
//! exactly one leaf hashes to that leaf's hash, i.e. each leaf sits at the shortest
//! prefix of its path that no other leaf shares. Subtrees holding two or more leaves
//! are ordinary internal nodes at every bit level, so two leaves whose paths share
//! `k` leading bits sit below a chain of `k` internal nodes each with one empty
//! side. The root therefore depends only on the set of `(path, value_hash)` pairs,
//! never on insertion order or history: a removal that leaves a single leaf under an
//! internal node moves that leaf up.
//!
//! In memory, [`SparseMerkleTree`] keeps leaves and internal nodes in two arenas
//! (with free lists, compacted when more than half of the slots are dead), each node
//! caching its hash, so an insert or removal re-hashes only the nodes on one path.
//! Node indices are `u32`: a tree panics if an arena would pass `u32::MAX` nodes,
//! which is far beyond what fits in memory (a leaf takes 96 bytes).
//!
//! # Proofs
//!
//! A [`Proof`] lists the sibling hashes met on the way from the root to where the
//! key's path ends (the key's own leaf, an empty subtree, or a different leaf that
//! occupies the slot), deepest first, and says which of those three it ended at.
//! [`Proof::verify`] checks inclusion of an exact value or absence of the key.

use std::fmt;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

/// Hash of an empty subtree, and root of the empty tree.
pub const EMPTY_HASH: [u8; 32] = [0u8; 32];

/// Number of bits in a path, hence the greatest possible depth of a leaf and the
/// greatest number of siblings a valid [`Proof`] can carry.
pub const MAX_DEPTH: usize = 256;

const KEY_CONTEXT: &str = "lode/state/key";
const VALUE_CONTEXT: &str = "lode/state/value";
const LEAF_CONTEXT: &str = "lode/state/leaf";
const NODE_CONTEXT: &str = "lode/state/node";

/// Dead arena slots tolerated before [`SparseMerkleTree::remove`] considers compacting.
const COMPACT_MIN_DEAD: usize = 4096;

// Hashers with the derive-key context already absorbed: cloning one is cheaper than
// deriving the context key again for every hash, and gives identical output.
static KEY_HASHER: LazyLock<blake3::Hasher> =
    LazyLock::new(|| blake3::Hasher::new_derive_key(KEY_CONTEXT));
static VALUE_HASHER: LazyLock<blake3::Hasher> =
    LazyLock::new(|| blake3::Hasher::new_derive_key(VALUE_CONTEXT));
static LEAF_HASHER: LazyLock<blake3::Hasher> =
    LazyLock::new(|| blake3::Hasher::new_derive_key(LEAF_CONTEXT));
static NODE_HASHER: LazyLock<blake3::Hasher> =
    LazyLock::new(|| blake3::Hasher::new_derive_key(NODE_CONTEXT));

fn tagged_hash(base: &blake3::Hasher, a: &[u8], b: &[u8]) -> [u8; 32] {
    let mut hasher = base.clone();
    hasher.update(a);
    hasher.update(b);
    *hasher.finalize().as_bytes()
}

/// The 256-bit path of `key`: `H("lode/state/key", key)`.
pub fn key_path(key: &[u8]) -> [u8; 32] {
    tagged_hash(&KEY_HASHER, key, &[])
}

/// The hash committed for `value`: `H("lode/state/value", value)`.
pub fn value_hash(value: &[u8]) -> [u8; 32] {
    tagged_hash(&VALUE_HASHER, value, &[])
}

fn leaf_hash(path: &[u8; 32], value_hash: &[u8; 32]) -> [u8; 32] {
    tagged_hash(&LEAF_HASHER, path, value_hash)
}

fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    tagged_hash(&NODE_HASHER, left, right)
}

/// Bit `index` of `path`, most significant bit of byte 0 first; `false` past the end.
fn bit(path: &[u8; 32], index: usize) -> bool {
    path.get(index / 8)
        .is_some_and(|byte| byte.rotate_left((index % 8) as u32) & 0x80 != 0)
}

/// Index of the first bit where `a` and `b` differ, or `None` if they are equal.
fn first_diff_bit(a: &[u8; 32], b: &[u8; 32]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y).and_then(|i| {
        i.checked_mul(8)?
            .checked_add((a.get(i)? ^ b.get(i)?).leading_zeros() as usize)
    })
}

/// Converts an arena length into a node index.
///
/// Panics only past `u32::MAX` nodes, which would take hundreds of GiB of memory.
// The one panic of the tree: an arena of 2^32 nodes (≥ 192 GiB) cannot exist in a process that
// must also hold the state records, so this is unreachable in practice, and the tree's API stays
// infallible.
#[allow(clippy::panic)]
fn to_index(len: usize) -> u32 {
    match u32::try_from(len) {
        Ok(index) if index < u32::MAX => index,
        _ => panic!("sparse Merkle tree arena exceeds u32::MAX nodes"),
    }
}

/// A reference to a child subtree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ref {
    Empty,
    Leaf(u32),
    Internal(u32),
}

#[derive(Clone, Debug)]
struct LeafNode {
    path: [u8; 32],
    value_hash: [u8; 32],
    hash: [u8; 32],
}

#[derive(Clone, Debug)]
struct InternalNode {
    /// Children indexed by the path bit: `[left, right]`.
    children: [Ref; 2],
    hash: [u8; 32],
}

/// The child on the `right` (path bit 1) or left side.
fn child(children: [Ref; 2], right: bool) -> Ref {
    let [left_child, right_child] = children;
    if right { right_child } else { left_child }
}

/// The child slot on the `right` (path bit 1) or left side.
fn child_mut(children: &mut [Ref; 2], right: bool) -> &mut Ref {
    let [left_child, right_child] = children;
    if right { right_child } else { left_child }
}

/// An in-memory compact binary sparse Merkle tree mapping byte-string keys to
/// values (committed by hash). See the [module documentation](self) for the hash
/// definitions and layout.
#[derive(Clone)]
pub struct SparseMerkleTree {
    root: Ref,
    leaves: Vec<LeafNode>,
    internals: Vec<InternalNode>,
    free_leaves: Vec<u32>,
    free_internals: Vec<u32>,
    len: usize,
}

impl Default for SparseMerkleTree {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SparseMerkleTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Hex([u8; 32]);
        impl fmt::Debug for Hex {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
        f.debug_struct("SparseMerkleTree")
            .field("len", &self.len)
            .field("root", &Hex(self.root()))
            .finish_non_exhaustive()
    }
}

impl SparseMerkleTree {
    /// Creates an empty tree, whose root is [`EMPTY_HASH`].
    pub fn new() -> Self {
        Self {
            root: Ref::Empty,
            leaves: Vec::new(),
            internals: Vec::new(),
            free_leaves: Vec::new(),
            free_internals: Vec::new(),
            len: 0,
        }
    }

    /// Builds a tree from `(key, value)` pairs in one pass: the pairs are hashed,
    /// sorted by path and the tree is assembled bottom-up, hashing each node once.
    /// If a key occurs more than once the last occurrence wins, as with repeated
    /// [`insert`](Self::insert)s.
    pub fn build<'a>(items: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Self {
        let mut entries: Vec<([u8; 32], [u8; 32])> = items
            .into_iter()
            .map(|(key, value)| (key_path(key), value_hash(value)))
            .collect();
        // Stable sort, so equal paths keep their input order and the last one wins.
        entries.sort_by_key(|entry| entry.0);
        entries.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                earlier.1 = later.1;
                true
            } else {
                false
            }
        });
        let mut tree = Self::new();
        tree.leaves.reserve_exact(entries.len());
        // Random paths give about 1.44 internal nodes per leaf.
        tree.internals
            .reserve((entries.len() / 2).saturating_mul(3));
        tree.root = tree.build_sorted(&entries, 0);
        tree
    }

    /// Builds the subtree for `entries` (sorted, distinct paths sharing their first
    /// `depth` bits). Recursion depth is at most [`MAX_DEPTH`]: each call descends
    /// past the first bit where the first and last paths differ.
    fn build_sorted(&mut self, entries: &[([u8; 32], [u8; 32])], depth: usize) -> Ref {
        let (first, last) = match entries {
            [] => return Ref::Empty,
            [only] => return self.new_leaf(only.0, only.1),
            [first, .., last] => (first, last),
        };
        let Some(split) = first_diff_bit(&first.0, &last.0) else {
            // Unreachable for deduplicated sorted input; keep the last entry.
            return self.new_leaf(last.0, last.1);
        };
        // Sorted paths sharing bits `..split`: those with bit `split` clear come first.
        let mid = entries.partition_point(|entry| !bit(&entry.0, split));
        let (left, right) = entries.split_at(mid);
        // `split < MAX_DEPTH`, so these cannot saturate.
        let left = self.build_sorted(left, split.saturating_add(1));
        let right = self.build_sorted(right, split.saturating_add(1));
        let node = self.new_internal([left, right]);
        self.chain_up(node, &first.0, depth, split)
    }

    /// Wraps `node`, which sits at depth `to`, in single-child internal nodes up to
    /// depth `from`, following `path`.
    fn chain_up(&mut self, mut node: Ref, path: &[u8; 32], from: usize, to: usize) -> Ref {
        for depth in (from..to).rev() {
            let mut children = [Ref::Empty; 2];
            *child_mut(&mut children, bit(path, depth)) = node;
            node = self.new_internal(children);
        }
        node
    }

    /// The root hash: [`EMPTY_HASH`] for an empty tree.
    pub fn root(&self) -> [u8; 32] {
        self.hash_of(self.root)
    }

    /// Number of keys in the tree.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the tree holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Inserts `key` with `value`, replacing the previous value if the key is present.
    pub fn insert(&mut self, key: &[u8], value: &[u8]) {
        self.insert_hashed(key_path(key), value_hash(value));
    }

    /// Removes `key`; returns whether it was present.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        self.remove_path(&key_path(key))
    }

    /// The value hash stored for `key` ([`value_hash`] of its value), if present.
    pub fn get_value_hash(&self, key: &[u8]) -> Option<[u8; 32]> {
        let path = key_path(key);
        let mut current = self.root;
        let mut depth = 0;
        loop {
            match current {
                Ref::Empty => return None,
                Ref::Leaf(i) => {
                    let leaf = self.leaf(i);
                    return (leaf.path == path).then_some(leaf.value_hash);
                }
                Ref::Internal(i) => {
                    current = child(self.internal(i).children, bit(&path, depth));
                    // Paths have MAX_DEPTH bits, so the depth cannot saturate.
                    depth = depth.saturating_add(1);
                }
            }
        }
    }

    /// A proof for `key` against the current [`root`](Self::root): an inclusion
    /// proof if the key is present, a non-inclusion proof otherwise.
    pub fn prove(&self, key: &[u8]) -> Proof {
        self.prove_path(&key_path(key))
    }

    fn prove_path(&self, path: &[u8; 32]) -> Proof {
        let mut siblings = Vec::new();
        let mut current = self.root;
        let mut depth = 0;
        let terminal = loop {
            match current {
                Ref::Empty => break ProofTerminal::Empty,
                Ref::Leaf(i) => {
                    let leaf = self.leaf(i);
                    break if leaf.path == *path {
                        ProofTerminal::Included
                    } else {
                        ProofTerminal::OtherLeaf {
                            path: leaf.path,
                            value_hash: leaf.value_hash,
                        }
                    };
                }
                Ref::Internal(i) => {
                    let side = bit(path, depth);
                    let children = self.internal(i).children;
                    siblings.push(self.hash_of(child(children, !side)));
                    current = child(children, side);
                    // Paths have MAX_DEPTH bits, so the depth cannot saturate.
                    depth = depth.saturating_add(1);
                }
            }
        };
        siblings.reverse();
        Proof { siblings, terminal }
    }

    fn hash_of(&self, node: Ref) -> [u8; 32] {
        match node {
            Ref::Empty => EMPTY_HASH,
            Ref::Leaf(i) => self.leaf(i).hash,
            Ref::Internal(i) => self.internal(i).hash,
        }
    }

    // Arena access. Every `Ref::Leaf(i)` / `Ref::Internal(i)` reachable from the root, on a
    // descent stack or on a free list was made by `new_leaf` / `new_internal` (or by
    // `copy_subtree`, which builds fresh arenas and fresh refs together), always with an index
    // below its arena's length, and the arenas never shrink except by being replaced whole along
    // with every ref into them. So these indexings cannot fail; they are the tree's only ones.
    #[allow(clippy::indexing_slicing)]
    fn leaf(&self, i: u32) -> &LeafNode {
        &self.leaves[i as usize]
    }

    #[allow(clippy::indexing_slicing)]
    fn leaf_mut(&mut self, i: u32) -> &mut LeafNode {
        &mut self.leaves[i as usize]
    }

    #[allow(clippy::indexing_slicing)]
    fn internal(&self, i: u32) -> &InternalNode {
        &self.internals[i as usize]
    }

    #[allow(clippy::indexing_slicing)]
    fn internal_mut(&mut self, i: u32) -> &mut InternalNode {
        &mut self.internals[i as usize]
    }

    fn new_leaf(&mut self, path: [u8; 32], value_hash: [u8; 32]) -> Ref {
        let node = LeafNode {
            path,
            value_hash,
            hash: leaf_hash(&path, &value_hash),
        };
        // At most one key per arena slot, and the arena stays below u32::MAX slots.
        self.len = self.len.saturating_add(1);
        if let Some(i) = self.free_leaves.pop() {
            *self.leaf_mut(i) = node;
            Ref::Leaf(i)
        } else {
            let i = to_index(self.leaves.len());
            self.leaves.push(node);
            Ref::Leaf(i)
        }
    }

    fn new_internal(&mut self, children: [Ref; 2]) -> Ref {
        let node = InternalNode {
            children,
            hash: node_hash(
                &self.hash_of(child(children, false)),
                &self.hash_of(child(children, true)),
            ),
        };
        if let Some(i) = self.free_internals.pop() {
            *self.internal_mut(i) = node;
            Ref::Internal(i)
        } else {
            let i = to_index(self.internals.len());
            self.internals.push(node);
            Ref::Internal(i)
        }
    }

    /// Descends along `path` to the first non-internal node, recording the internal
    /// nodes passed and the side taken at each. Returns that node and its depth.
    fn descend(&self, path: &[u8; 32], stack: &mut Vec<(u32, bool)>) -> (Ref, usize) {
        let mut current = self.root;
        while let Ref::Internal(i) = current {
            let side = bit(path, stack.len());
            stack.push((i, side));
            current = child(self.internal(i).children, side);
        }
        (current, stack.len())
    }

    fn insert_hashed(&mut self, path: [u8; 32], value_hash: [u8; 32]) {
        let mut stack = Vec::with_capacity(64);
        let (found, depth) = self.descend(&path, &mut stack);
        let replacement = match found {
            Ref::Leaf(i) => {
                let leaf = self.leaf_mut(i);
                if leaf.path == path {
                    if leaf.value_hash == value_hash {
                        return;
                    }
                    leaf.value_hash = value_hash;
                    leaf.hash = leaf_hash(&path, &value_hash);
                    found
                } else {
                    // Both paths share bits `..depth`, so they first differ at or below it.
                    let other = leaf.path;
                    let split = first_diff_bit(&path, &other).unwrap_or(depth).max(depth);
                    let new = self.new_leaf(path, value_hash);
                    let mut children = [found; 2];
                    *child_mut(&mut children, bit(&path, split)) = new;
                    let node = self.new_internal(children);
                    self.chain_up(node, &path, depth, split)
                }
            }
            // `descend` stops at a non-internal node, so this is the empty case.
            Ref::Empty | Ref::Internal(_) => self.new_leaf(path, value_hash),
        };
        self.reattach(stack, replacement);
    }

    fn remove_path(&mut self, path: &[u8; 32]) -> bool {
        let mut stack = Vec::with_capacity(64);
        let (found, _) = self.descend(path, &mut stack);
        let Ref::Leaf(i) = found else {
            return false;
        };
        if self.leaf(i).path != *path {
            return false;
        }
        self.free_leaves.push(i);
        // The key was present, so `len ≥ 1`.
        self.len = self.len.saturating_sub(1);
        self.reattach(stack, Ref::Empty);
        self.maybe_compact();
        true
    }

    /// Puts `replacement` where the descent recorded in `stack` ended, then walks back
    /// up re-hashing; an internal node left with a lone leaf (or nothing) collapses
    /// into it, so the leaf moves up.
    fn reattach(&mut self, mut stack: Vec<(u32, bool)>, mut replacement: Ref) {
        while let Some((i, side)) = stack.pop() {
            let node = self.internal_mut(i);
            *child_mut(&mut node.children, side) = replacement;
            let children = node.children;
            replacement = match children {
                [Ref::Empty, Ref::Empty] => {
                    self.free_internals.push(i);
                    Ref::Empty
                }
                [Ref::Empty, leaf @ Ref::Leaf(_)] | [leaf @ Ref::Leaf(_), Ref::Empty] => {
                    self.free_internals.push(i);
                    leaf
                }
                [left, right] => {
                    let hash = node_hash(&self.hash_of(left), &self.hash_of(right));
                    self.internal_mut(i).hash = hash;
                    Ref::Internal(i)
                }
            };
        }
        self.root = replacement;
    }

    /// Rebuilds the arenas without dead slots once they outnumber the live ones, so
    /// memory stays proportional to the number of keys. Hashes are copied, not
    /// recomputed; the cost is amortised over the removals that created the slots.
    fn maybe_compact(&mut self) {
        // Counts of arena slots: far below usize::MAX, and the free slots are among them.
        let dead = self
            .free_leaves
            .len()
            .saturating_add(self.free_internals.len());
        let live = self
            .leaves
            .len()
            .saturating_add(self.internals.len())
            .saturating_sub(dead);
        if dead < COMPACT_MIN_DEAD || dead <= live {
            return;
        }
        let mut leaves = Vec::with_capacity(self.len);
        let mut internals = Vec::with_capacity(
            self.internals
                .len()
                .saturating_sub(self.free_internals.len()),
        );
        self.root = self.copy_subtree(self.root, &mut leaves, &mut internals);
        self.leaves = leaves;
        self.internals = internals;
        self.free_leaves = Vec::new();
        self.free_internals = Vec::new();
    }

    /// Copies the subtree at `node` into fresh arenas (recursion depth at most
    /// [`MAX_DEPTH`] + 1).
    fn copy_subtree(
        &self,
        node: Ref,
        leaves: &mut Vec<LeafNode>,
        internals: &mut Vec<InternalNode>,
    ) -> Ref {
        match node {
            Ref::Empty => Ref::Empty,
            Ref::Leaf(i) => {
                let index = to_index(leaves.len());
                leaves.push(self.leaf(i).clone());
                Ref::Leaf(index)
            }
            Ref::Internal(i) => {
                let old = self.internal(i);
                let left = self.copy_subtree(child(old.children, false), leaves, internals);
                let right = self.copy_subtree(child(old.children, true), leaves, internals);
                let index = to_index(internals.len());
                internals.push(InternalNode {
                    children: [left, right],
                    hash: old.hash,
                });
                Ref::Internal(index)
            }
        }
    }
}

/// Where the path of a proven key ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProofTerminal {
    /// At the key's own leaf (inclusion proof); the verifier recomputes the leaf
    /// from the key and the expected value.
    Included,
    /// At an empty subtree (non-inclusion proof).
    Empty,
    /// At a different key's leaf, which occupies the whole subtree the key would
    /// belong to (non-inclusion proof).
    OtherLeaf {
        /// Path of the leaf found there.
        path: [u8; 32],
        /// Value hash of the leaf found there.
        value_hash: [u8; 32],
    },
}

/// Inclusion or non-inclusion proof for one key, produced by
/// [`SparseMerkleTree::prove`] and checked with [`Proof::verify`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// Sibling hashes along the key's path, deepest first (the last one is the
    /// root's other child); one per internal node above the terminal, so at most
    /// [`MAX_DEPTH`].
    pub siblings: Vec<[u8; 32]>,
    /// What the path ends at.
    pub terminal: ProofTerminal,
}

impl Proof {
    /// Checks this proof against `root` for `key`: with `Some(value)` that the key
    /// is present with exactly that value, with `None` that the key is absent.
    pub fn verify(
        &self,
        root: &[u8; 32],
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), SmtError> {
        self.verify_path(root, &key_path(key), value.map(value_hash))
    }

    /// Like [`verify`](Self::verify), but takes the expected value already hashed
    /// with [`value_hash`].
    pub fn verify_value_hash(
        &self,
        root: &[u8; 32],
        key: &[u8],
        value_hash: Option<&[u8; 32]>,
    ) -> Result<(), SmtError> {
        self.verify_path(root, &key_path(key), value_hash.copied())
    }

    fn verify_path(
        &self,
        root: &[u8; 32],
        path: &[u8; 32],
        expected: Option<[u8; 32]>,
    ) -> Result<(), SmtError> {
        let depth = self.siblings.len();
        if depth > MAX_DEPTH {
            return Err(SmtError::TooManySiblings { count: depth });
        }
        // The lowest internal node must hold at least two leaves, so the sibling of
        // whatever the path ends at cannot be empty.
        if self.siblings.first() == Some(&EMPTY_HASH) {
            return Err(SmtError::NonCanonical);
        }
        let mut acc = match (&self.terminal, expected) {
            (ProofTerminal::Included, Some(expected)) => leaf_hash(path, &expected),
            (ProofTerminal::Included, None) => return Err(SmtError::KeyPresent),
            (ProofTerminal::Empty | ProofTerminal::OtherLeaf { .. }, Some(_)) => {
                return Err(SmtError::KeyAbsent);
            }
            (ProofTerminal::Empty, None) => EMPTY_HASH,
            (
                ProofTerminal::OtherLeaf {
                    path: other,
                    value_hash,
                },
                None,
            ) => {
                match first_diff_bit(path, other) {
                    None => return Err(SmtError::OtherLeafSamePath),
                    Some(diff) if diff < depth => return Err(SmtError::OtherLeafOffPath),
                    Some(_) => {}
                }
                leaf_hash(other, value_hash)
            }
        };
        for (level, sibling) in (0..depth).rev().zip(&self.siblings) {
            acc = if bit(path, level) {
                node_hash(sibling, &acc)
            } else {
                node_hash(&acc, sibling)
            };
        }
        if acc == *root {
            Ok(())
        } else {
            Err(SmtError::RootMismatch)
        }
    }
}

/// Why a [`Proof`] was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SmtError {
    /// The proof has more siblings than a path has bits.
    #[error("proof has {count} siblings, more than the {MAX_DEPTH} levels of a path")]
    TooManySiblings {
        /// Number of siblings in the proof.
        count: usize,
    },
    /// The deepest sibling is an empty subtree, which a canonical tree never has.
    #[error("proof is not canonical: the deepest sibling is an empty subtree")]
    NonCanonical,
    /// A value was expected but the proof is a non-inclusion proof.
    #[error("proof shows the key is absent, but a value was expected")]
    KeyAbsent,
    /// Absence was expected but the proof is an inclusion proof.
    #[error("proof shows the key is present, but its absence was expected")]
    KeyPresent,
    /// A non-inclusion proof names a leaf with the queried key's own path.
    #[error("non-inclusion proof names a leaf with the queried key's own path")]
    OtherLeafSamePath,
    /// A non-inclusion proof names a leaf that cannot lie on the queried key's path.
    #[error("non-inclusion proof names a leaf that does not lie on the queried key's path")]
    OtherLeafOffPath,
    /// The proof does not hash to the expected root: wrong value, wrong root or a
    /// tampered proof.
    #[error("proof does not match the root (wrong value, wrong root or tampered proof)")]
    RootMismatch,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    type Model = BTreeMap<Vec<u8>, Vec<u8>>;

    /// `H(ctx, a || b)` straight from the definition, independent of the module's hashers.
    fn h(ctx: &str, parts: &[&[u8]]) -> [u8; 32] {
        blake3::derive_key(ctx, &parts.concat())
    }

    fn ref_path(key: &[u8]) -> [u8; 32] {
        h("lode/state/key", &[key])
    }

    fn ref_leaf(path: &[u8; 32], value_hash: &[u8; 32]) -> [u8; 32] {
        h("lode/state/leaf", &[path, value_hash])
    }

    fn ref_leaf_kv(key: &[u8], value: &[u8]) -> [u8; 32] {
        ref_leaf(&ref_path(key), &h("lode/state/value", &[value]))
    }

    fn ref_node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
        h("lode/state/node", &[left, right])
    }

    fn ref_bit(path: &[u8; 32], i: usize) -> bool {
        path[i / 8] & (0x80 >> (i % 8)) != 0
    }

    /// Naive reference root over distinct `(path, value_hash)` pairs: split on each bit.
    fn naive(entries: &[([u8; 32], [u8; 32])], depth: usize) -> [u8; 32] {
        match entries {
            [] => [0; 32],
            [(path, vh)] => ref_leaf(path, vh),
            _ => {
                let (left, right): (Vec<_>, Vec<_>) =
                    entries.iter().partition(|(path, _)| !ref_bit(path, depth));
                ref_node(&naive(&left, depth + 1), &naive(&right, depth + 1))
            }
        }
    }

    fn naive_root(model: &Model) -> [u8; 32] {
        let entries: Vec<_> = model
            .iter()
            .map(|(k, v)| (ref_path(k), h("lode/state/value", &[v])))
            .collect();
        naive(&entries, 0)
    }

    fn build_from(model: &Model) -> SparseMerkleTree {
        SparseMerkleTree::build(model.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
    }

    fn flipped_root(root: &[u8; 32]) -> [u8; 32] {
        let mut other = *root;
        other[0] ^= 1;
        other
    }

    /// Checks the proof of `key` against the tree, positively and negatively.
    fn check_proof(tree: &SparseMerkleTree, key: &[u8], value: Option<&[u8]>, flip_all: bool) {
        let root = tree.root();
        let proof = tree.prove(key);
        assert!(proof.siblings.len() <= MAX_DEPTH);
        assert_eq!(tree.get_value_hash(key), value.map(value_hash));
        proof.verify(&root, key, value).unwrap();
        proof
            .verify_value_hash(&root, key, value.map(value_hash).as_ref())
            .unwrap();
        assert!(proof.verify(&flipped_root(&root), key, value).is_err());
        match value {
            Some(v) => {
                assert_eq!(proof.terminal, ProofTerminal::Included);
                let mut other = v.to_vec();
                other.push(0);
                assert_eq!(
                    proof.verify(&root, key, Some(&other)),
                    Err(SmtError::RootMismatch)
                );
                assert_eq!(proof.verify(&root, key, None), Err(SmtError::KeyPresent));
                let forged = Proof {
                    siblings: proof.siblings.clone(),
                    terminal: ProofTerminal::Empty,
                };
                assert!(forged.verify(&root, key, None).is_err());
                let forged = Proof {
                    siblings: proof.siblings.clone(),
                    terminal: ProofTerminal::OtherLeaf {
                        path: key_path(key),
                        value_hash: value_hash(v),
                    },
                };
                assert_eq!(
                    forged.verify(&root, key, None),
                    Err(SmtError::OtherLeafSamePath)
                );
            }
            None => {
                assert_ne!(proof.terminal, ProofTerminal::Included);
                assert_eq!(
                    proof.verify(&root, key, Some(b"x")),
                    Err(SmtError::KeyAbsent)
                );
                let forged = Proof {
                    siblings: proof.siblings.clone(),
                    terminal: ProofTerminal::Included,
                };
                assert!(forged.verify(&root, key, Some(b"x")).is_err());
                if let ProofTerminal::OtherLeaf { path, value_hash } = proof.terminal {
                    let mut bad = proof.clone();
                    let mut vh = value_hash;
                    vh[31] ^= 0x80;
                    bad.terminal = ProofTerminal::OtherLeaf {
                        path,
                        value_hash: vh,
                    };
                    assert!(bad.verify(&root, key, None).is_err());
                }
            }
        }
        for i in 0..proof.siblings.len() {
            let bytes: Vec<usize> = if flip_all {
                (0..32).collect()
            } else {
                vec![i % 32]
            };
            for j in bytes {
                let mut bad = proof.clone();
                bad.siblings[i][j] ^= 0xa5;
                assert!(bad.verify(&root, key, value).is_err());
            }
        }
        // Dropping or adding a level also fails.
        if !proof.siblings.is_empty() {
            let mut bad = proof.clone();
            bad.siblings.pop();
            assert!(bad.verify(&root, key, value).is_err());
        }
        let mut bad = proof.clone();
        bad.siblings.push(root);
        assert!(bad.verify(&root, key, value).is_err());
    }

    fn key_with(pred: impl Fn(&[u8; 32]) -> bool) -> Vec<u8> {
        (0u32..)
            .map(|i| format!("k{i}").into_bytes())
            .find(|k| pred(&ref_path(k)))
            .unwrap()
    }

    #[test]
    fn known_answer_empty() {
        let tree = SparseMerkleTree::new();
        assert_eq!(tree.root(), [0; 32]);
        assert!(tree.is_empty());
        assert_eq!(SparseMerkleTree::build([]).root(), [0; 32]);
        let proof = tree.prove(b"anything");
        assert_eq!(
            proof,
            Proof {
                siblings: vec![],
                terminal: ProofTerminal::Empty
            }
        );
        proof.verify(&[0; 32], b"anything", None).unwrap();
        assert_eq!(
            proof.verify(&[0; 32], b"anything", Some(b"")),
            Err(SmtError::KeyAbsent)
        );
    }

    #[test]
    fn known_answer_one_leaf() {
        let mut tree = SparseMerkleTree::new();
        tree.insert(b"alpha", b"1");
        assert_eq!(key_path(b"alpha"), ref_path(b"alpha"));
        assert_eq!(value_hash(b"1"), h("lode/state/value", &[b"1"]));
        assert_eq!(tree.root(), ref_leaf_kv(b"alpha", b"1"));
        assert_eq!(tree.len(), 1);
        check_proof(&tree, b"alpha", Some(b"1"), true);
        check_proof(&tree, b"beta", None, true);
        tree.insert(b"alpha", b"2");
        assert_eq!(tree.root(), ref_leaf_kv(b"alpha", b"2"));
        assert_eq!(tree.len(), 1);
    }

    #[test]
    fn known_answer_two_leaves_first_bit() {
        let a = b"k0".to_vec();
        let a_bit = ref_bit(&ref_path(&a), 0);
        let b = key_with(|p| ref_bit(p, 0) != a_bit);
        let (left, right) = if a_bit { (&b, &a) } else { (&a, &b) };
        let expected = ref_node(&ref_leaf_kv(left, b"L"), &ref_leaf_kv(right, b"R"));
        let mut t1 = SparseMerkleTree::new();
        t1.insert(left, b"L");
        t1.insert(right, b"R");
        let mut t2 = SparseMerkleTree::new();
        t2.insert(right, b"R");
        t2.insert(left, b"L");
        assert_eq!(t1.root(), expected);
        assert_eq!(t2.root(), expected);
        let proof = t1.prove(left);
        assert_eq!(proof.siblings, vec![ref_leaf_kv(right, b"R")]);
        check_proof(&t1, left, Some(b"L"), true);
        check_proof(&t1, right, Some(b"R"), true);
    }

    #[test]
    fn known_answer_shared_first_bit() {
        let a = b"k0".to_vec();
        let pa = ref_path(&a);
        let b = key_with(|p| ref_bit(p, 0) == ref_bit(&pa, 0) && ref_bit(p, 1) != ref_bit(&pa, 1));
        let (left, right) = if ref_bit(&pa, 1) { (&b, &a) } else { (&a, &b) };
        let inner = ref_node(&ref_leaf_kv(left, b""), &ref_leaf_kv(right, b""));
        let expected = if ref_bit(&pa, 0) {
            ref_node(&[0; 32], &inner)
        } else {
            ref_node(&inner, &[0; 32])
        };
        let mut tree = SparseMerkleTree::new();
        tree.insert(&a, b"");
        tree.insert(&b, b"");
        assert_eq!(tree.root(), expected);
        assert_eq!(tree.prove(&a).siblings.len(), 2);
        check_proof(&tree, &a, Some(b""), true);
        // Removing one moves the other leaf back up to the root.
        assert!(tree.remove(&b));
        assert!(!tree.remove(&b));
        assert_eq!(tree.root(), ref_leaf_kv(&a, b""));
        assert!(tree.remove(&a));
        assert_eq!(tree.root(), [0; 32]);
        assert!(tree.is_empty());
    }

    #[test]
    fn deepest_possible_leaves() {
        // Paths that differ only in the last bit sit at depth 256.
        let a = [0u8; 32];
        let mut b = [0u8; 32];
        b[31] = 1;
        let mut c = [0u8; 32];
        c[0] = 0x80;
        let (va, vb, vc) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let mut tree = SparseMerkleTree::new();
        tree.insert_hashed(a, va);
        tree.insert_hashed(b, vb);
        assert_eq!(tree.root(), naive(&[(a, va), (b, vb)], 0));
        let proof = tree.prove_path(&a);
        assert_eq!(proof.siblings.len(), MAX_DEPTH);
        proof.verify_path(&tree.root(), &a, Some(va)).unwrap();
        let absent = tree.prove_path(&c);
        assert_eq!(absent.siblings.len(), 1);
        absent.verify_path(&tree.root(), &c, None).unwrap();
        let mut d = [0u8; 32];
        d[31] = 2;
        let absent = tree.prove_path(&d);
        assert_eq!(absent.terminal, ProofTerminal::Empty);
        absent.verify_path(&tree.root(), &d, None).unwrap();

        tree.insert_hashed(c, vc);
        assert_eq!(tree.root(), naive(&[(a, va), (b, vb), (c, vc)], 0));
        assert!(tree.remove_path(&b));
        assert_eq!(
            tree.root(),
            ref_node(&ref_leaf(&a, &va), &ref_leaf(&c, &vc))
        );
        assert_eq!(tree.internals.len() - tree.free_internals.len(), 1);
        let built = {
            let mut t = SparseMerkleTree::new();
            t.root = t.build_sorted(&[(a, va), (b, vb), (c, vc)], 0);
            t
        };
        assert_eq!(built.root(), naive(&[(a, va), (b, vb), (c, vc)], 0));
        assert_eq!(built.len(), 3);
    }

    #[test]
    fn hostile_proofs_are_rejected() {
        let mut tree = SparseMerkleTree::new();
        for i in 0u32..50 {
            tree.insert(&i.to_le_bytes(), b"v");
        }
        let root = tree.root();
        let key = 7u32.to_le_bytes();
        let too_long = Proof {
            siblings: vec![[1; 32]; MAX_DEPTH + 1],
            terminal: ProofTerminal::Included,
        };
        assert_eq!(
            too_long.verify(&root, &key, Some(b"v")),
            Err(SmtError::TooManySiblings { count: 257 })
        );
        let max_len = Proof {
            siblings: vec![[1; 32]; MAX_DEPTH],
            terminal: ProofTerminal::Empty,
        };
        assert_eq!(
            max_len.verify(&root, &key, None),
            Err(SmtError::RootMismatch)
        );
        let mut zero_first = tree.prove(&key);
        zero_first.siblings.insert(0, [0; 32]);
        assert_eq!(
            zero_first.verify(&root, &key, Some(b"v")),
            Err(SmtError::NonCanonical)
        );
        // A leaf off the key's path cannot prove absence.
        let absent = key_with(|p| {
            let proof = tree.prove_path(p);
            proof.terminal == ProofTerminal::Empty && !proof.siblings.is_empty()
        });
        let proof = tree.prove(&absent);
        let other = Proof {
            siblings: proof.siblings.clone(),
            terminal: ProofTerminal::OtherLeaf {
                path: key_path(&key),
                value_hash: value_hash(b"v"),
            },
        };
        let shared = first_diff_bit(&key_path(&key), &key_path(&absent)).unwrap();
        if shared < proof.siblings.len() {
            assert_eq!(
                other.verify(&root, &absent, None),
                Err(SmtError::OtherLeafOffPath)
            );
        } else {
            assert!(other.verify(&root, &absent, None).is_err());
        }
        assert!(format!("{}", SmtError::TooManySiblings { count: 300 }).contains("300"));
        assert!(format!("{tree:?}").contains("len: 50"));
    }

    #[test]
    fn compaction_after_mass_removal() {
        let mut model = Model::new();
        let mut tree = SparseMerkleTree::new();
        for i in 0u32..20_000 {
            tree.insert(&i.to_be_bytes(), &i.to_le_bytes());
            model.insert(i.to_be_bytes().to_vec(), i.to_le_bytes().to_vec());
        }
        for i in 0u32..16_000 {
            assert!(tree.remove(&i.to_be_bytes()));
            model.remove(i.to_be_bytes().as_slice());
        }
        assert!(tree.leaves.len() < 20_000, "arenas were compacted");
        assert_eq!(tree.len(), 4_000);
        assert_eq!(tree.root(), naive_root(&model));
        for i in (0u32..20_000).step_by(97) {
            check_proof(
                &tree,
                &i.to_be_bytes(),
                model.get(i.to_be_bytes().as_slice()).map(Vec::as_slice),
                false,
            );
        }
        for i in 0u32..1_000 {
            tree.insert(&i.to_be_bytes(), b"again");
            model.insert(i.to_be_bytes().to_vec(), b"again".to_vec());
        }
        assert_eq!(tree.root(), naive_root(&model));
        assert_eq!(tree.root(), build_from(&model).root());
    }

    #[test]
    fn medium_matches_naive() {
        let mut model = Model::new();
        for i in 0u32..5_000 {
            model.insert(i.to_le_bytes().to_vec(), (i * 3).to_le_bytes().to_vec());
        }
        let mut tree = build_from(&model);
        assert_eq!(tree.root(), naive_root(&model));
        for i in 4_500u32..5_500 {
            tree.insert(&i.to_le_bytes(), b"new");
            model.insert(i.to_le_bytes().to_vec(), b"new".to_vec());
        }
        for i in (0u32..6_000).step_by(5) {
            assert_eq!(
                tree.remove(&i.to_le_bytes()),
                model.remove(i.to_le_bytes().as_slice()).is_some()
            );
        }
        assert_eq!(tree.len(), model.len());
        assert_eq!(tree.root(), naive_root(&model));
        for i in (0u32..6_000).step_by(37) {
            check_proof(
                &tree,
                &i.to_le_bytes(),
                model.get(i.to_le_bytes().as_slice()).map(Vec::as_slice),
                i % 3 == 0,
            );
        }
    }

    #[test]
    fn large_build_then_inserts() {
        let n: u64 = 200_000;
        let keys: Vec<[u8; 8]> = (0..n).map(u64::to_le_bytes).collect();
        let mut tree = SparseMerkleTree::build(keys.iter().map(|k| (&k[..], &k[..])));
        assert_eq!(tree.len(), 200_000);
        // Half overwrite existing keys, half are new.
        let updates: Vec<([u8; 8], [u8; 8])> = (n - 5_000..n + 5_000)
            .map(|i| (i.to_le_bytes(), (i * 7).to_be_bytes()))
            .collect();
        for (k, v) in &updates {
            tree.insert(k, v);
        }
        assert_eq!(tree.len(), 205_000);
        // Bulk build with duplicates: the last occurrence wins.
        let all = keys
            .iter()
            .map(|k| (&k[..], &k[..]))
            .chain(updates.iter().map(|(k, v)| (&k[..], &v[..])));
        let rebuilt = SparseMerkleTree::build(all);
        assert_eq!(rebuilt.len(), 205_000);
        assert_eq!(tree.root(), rebuilt.root());
        for (k, v) in updates.iter().step_by(500) {
            check_proof(&tree, k, Some(v), false);
        }
    }

    fn ops_strategy() -> impl Strategy<Value = Vec<(bool, u8, u8)>> {
        prop::collection::vec((any::<bool>(), 0u8..24, 0u8..4), 0..80)
    }

    proptest! {
        #[test]
        fn random_ops_match_naive_and_build(ops in ops_strategy()) {
            let mut tree = SparseMerkleTree::new();
            let mut model = Model::new();
            for (is_insert, k, v) in ops {
                if is_insert {
                    tree.insert(&[k], &[v]);
                    model.insert(vec![k], vec![v]);
                } else {
                    prop_assert_eq!(tree.remove(&[k]), model.remove(&[k][..]).is_some());
                }
                prop_assert_eq!(tree.root(), naive_root(&model));
                prop_assert_eq!(tree.len(), model.len());
            }
            prop_assert_eq!(build_from(&model).root(), tree.root());
            for k in 0u8..24 {
                prop_assert_eq!(tree.get_value_hash(&[k]), model.get(&[k][..]).map(|v| value_hash(v)));
            }
        }

        #[test]
        fn root_is_order_independent(
            (entries, shuffled) in prop::collection::btree_map(0u8..40, 0u8..4, 0..30)
                .prop_flat_map(|m| {
                    let v: Vec<(u8, u8)> = m.into_iter().collect();
                    (Just(v.clone()), Just(v).prop_shuffle())
                }),
            noise in prop::collection::vec(40u8..60, 0..10),
        ) {
            let mut sorted = SparseMerkleTree::new();
            for (k, v) in &entries {
                sorted.insert(&[*k], &[*v]);
            }
            let mut other = SparseMerkleTree::new();
            for k in &noise {
                other.insert(&[*k], b"noise");
            }
            for (k, v) in &shuffled {
                other.insert(&[*k], &[v.wrapping_add(1)]);
                other.insert(&[*k], &[*v]);
            }
            for k in &noise {
                other.remove(&[*k]);
            }
            prop_assert_eq!(sorted.root(), other.root());
            let pairs: Vec<([u8; 1], [u8; 1])> = shuffled.iter().map(|(k, v)| ([*k], [*v])).collect();
            let built = SparseMerkleTree::build(pairs.iter().map(|(k, v)| (&k[..], &v[..])));
            prop_assert_eq!(sorted.root(), built.root());
        }

        #[test]
        fn hostile_proofs_never_panic(
            siblings in prop::collection::vec(any::<[u8; 32]>(), 0..300),
            kind in 0u8..3,
            other_path in any::<[u8; 32]>(),
            other_vh in any::<[u8; 32]>(),
            root in any::<[u8; 32]>(),
            key in prop::collection::vec(any::<u8>(), 0..8),
            value in prop::option::of(prop::collection::vec(any::<u8>(), 0..8)),
        ) {
            let terminal = match kind {
                0 => ProofTerminal::Included,
                1 => ProofTerminal::Empty,
                _ => ProofTerminal::OtherLeaf { path: other_path, value_hash: other_vh },
            };
            let proof = Proof { siblings, terminal };
            prop_assert!(proof.verify(&root, &key, value.as_deref()).is_err());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn proofs_verify_and_reject_tampering(
            model in prop::collection::btree_map(0u8..24, 0u8..4, 0..24),
        ) {
            let model: Model = model.into_iter().map(|(k, v)| (vec![k], vec![v])).collect();
            let tree = build_from(&model);
            for k in 0u8..24 {
                check_proof(&tree, &[k], model.get(&[k][..]).map(Vec::as_slice), true);
            }
        }
    }
}
