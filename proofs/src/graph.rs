//! The stacked-DRG graph (SPEC §4.1, §4.2): which 14 nodes each node's label depends on.
//!
//! Every node `v` has six *base* parents in its own layer (`v − 1` and five sampled by bucket sampling
//! from a BLAKE3 stream) and eight *expander* parents in the previous layer (a keyed Feistel permutation
//! of `8v..8v+8`, divided by 8). The whole graph follows from the node count and the `porep_id`.
//!
//! Two paths compute the same parents:
//! - the single-node methods ([`Graph::parents`] and friends), which a verifier calls for a handful of
//!   challenged nodes: each Feistel round is one BLAKE3 compression;
//! - [`Graph::parents_into`], which the parent cache calls for every node: the Feistel round function
//!   only ever sees `2^h` distinct inputs per key, so on first use it tabulates all `3 · 2^h` round
//!   values (at most 3 MiB, for `2^32` nodes) and afterwards a round is a table lookup.
//!
//! Both paths call BLAKE3's one-block compression directly (`compress_in_place`, `xof_many` of the hidden
//! `blake3::platform` API,
//! which is why `blake3` is pinned exactly); tests compare it with `blake3::keyed_hash` and the XOF.

use std::fmt;
use std::sync::{Arc, OnceLock};

use blake3::platform::{Platform, words_from_le_bytes_32};

use crate::hash::{self, Tag};
use crate::sector::SectorSize;

/// Same-layer (base) parents per node.
pub const BASE_DEGREE: usize = 6;
/// Previous-layer (expander) parents per node.
pub const EXP_DEGREE: usize = 8;
/// All parents per node: base first, then expander.
pub const DEGREE: usize = BASE_DEGREE + EXP_DEGREE;

/// The fewest nodes a graph may have.
pub const MIN_NODES: u64 = 2;
/// The most nodes a graph may have: every parent index must fit in a `u32`.
pub const MAX_NODES: u64 = 1 << 32;

// BLAKE3 flags of a keyed hash whose whole input is one block: CHUNK_START | CHUNK_END | ROOT | KEYED_HASH.
const ONE_BLOCK_KEYED: u8 = 1 | (1 << 1) | (1 << 3) | (1 << 4);
const BLOCK_LEN: usize = 64;
/// Length of the DRG stream's input `porep_id || u64le(v)`.
const DRG_INPUT_LEN: u8 = 40;
/// Length of the Feistel round function's input `u64le(R) || u64le(key)`.
const FEISTEL_INPUT_LEN: u8 = 16;
const FEISTEL_ROUNDS: usize = 3;

/// Why a graph cannot be built, or a node is not in it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    /// Fewer than [`MIN_NODES`] nodes.
    #[error("a graph needs at least {MIN_NODES} nodes, not {0}")]
    TooFewNodes(u64),
    /// More than [`MAX_NODES`] nodes.
    #[error("a graph has at most 2^32 nodes, not {0}")]
    TooManyNodes(u64),
    /// A node count that is not a power of two.
    #[error("a graph's node count must be a power of two, not {0}")]
    NotPowerOfTwo(u64),
    /// A node index outside the graph.
    #[error("node {v} is outside a graph of {nodes} nodes")]
    NodeOutOfRange {
        /// The index asked for.
        v: u64,
        /// The graph's node count.
        nodes: u64,
    },
}

/// The expander's Feistel permutation on `0..8n` (SPEC §4.2).
#[derive(Clone)]
struct Feistel {
    /// Round keys `k0, k1, k2` (`k3` is derived but unused).
    keys: [u64; FEISTEL_ROUNDS],
    /// Half width in bits: the smallest `h ≥ 1` with `4^h ≥ domain`.
    half_bits: u32,
    /// `2^h − 1`.
    right_mask: u64,
    /// The permuted domain `N = 8n`.
    domain: u64,
    /// `K("feistel")` as BLAKE3 chaining-value words.
    key_words: [u32; 8],
}

impl Feistel {
    fn new(nodes: u64, porep_id: &[u8; 32]) -> Feistel {
        let digest = hash::hash(Tag::Feistel, porep_id);
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&digest.0[8 * i..8 * i + 8]);
            u64::from_le_bytes(w)
        };
        let domain = nodes * EXP_DEGREE as u64;
        let mut half_bits = 1;
        while (1u64 << (2 * half_bits)) < domain {
            half_bits += 1;
        }
        Feistel {
            keys: [word(0), word(1), word(2)],
            half_bits,
            right_mask: (1 << half_bits) - 1,
            domain,
            key_words: words_from_le_bytes_32(hash::key(Tag::Feistel)),
        }
    }

    /// `F(R, key) = first_u64(keyed_hash(K("feistel"), u64le(R) || u64le(key))) & right_mask`: one
    /// compression of a single 16-byte block.
    fn round_fn(&self, platform: Platform, r: u64, key: u64) -> u64 {
        let mut block = [0u8; BLOCK_LEN];
        block[..8].copy_from_slice(&r.to_le_bytes());
        block[8..16].copy_from_slice(&key.to_le_bytes());
        let mut cv = self.key_words;
        platform.compress_in_place(&mut cv, &block, FEISTEL_INPUT_LEN, 0, ONE_BLOCK_KEYED);
        (u64::from(cv[0]) | (u64::from(cv[1]) << 32)) & self.right_mask
    }

    /// Every round value: `table[round · 2^h + R] = F(R, k_round)`. Values have `h ≤ 18` bits.
    fn table(&self, platform: Platform) -> Box<[u32]> {
        let half = 1u64 << self.half_bits;
        let mut table = Vec::with_capacity(FEISTEL_ROUNDS << self.half_bits);
        for key in self.keys {
            // `h ≤ 18`, so every value fits a u32.
            table.extend((0..half).map(|r| self.round_fn(platform, r, key) as u32));
        }
        table.into_boxed_slice()
    }

    /// One pass of the three rounds on `x < 4^h`; `round(i, R)` is `F(R, k_i)`.
    #[inline(always)]
    fn encode(&self, x: u64, round: &impl Fn(usize, u64) -> u64) -> u64 {
        let mut left = (x >> self.half_bits) & self.right_mask;
        let mut right = x & self.right_mask;
        for i in 0..FEISTEL_ROUNDS {
            (left, right) = (right, left ^ round(i, right));
        }
        (left << self.half_bits) | right
    }

    /// The permutation of `0..N` by cycle walking. `encode` permutes `0..4^h ⊇ 0..N`, so the cycle
    /// through `a < N` returns to `0..N` at the latest at `a` itself: the loop ends.
    #[inline(always)]
    fn permute(&self, a: u64, round: &impl Fn(usize, u64) -> u64) -> u64 {
        debug_assert!(a < self.domain);
        let mut x = self.encode(a, round);
        while x >= self.domain {
            x = self.encode(x, round);
        }
        x
    }

    /// [`Feistel::exp_parents`] with the round table, walking all eight cycles in lockstep: every pass
    /// encodes every lane and keeps the result only where the lane is still outside `0..N`. That wastes
    /// a few lookups but has no data-dependent branch per lane, and the eight chains overlap.
    #[inline(always)]
    fn exp_parents_lockstep(&self, v: u64, table: &[u32]) -> [u32; EXP_DEGREE] {
        let round = |i: usize, r: u64| {
            // r ≤ right_mask, so the index is < 3 · 2^h = table.len(); `get` keeps it panic-free.
            table
                .get((i << self.half_bits) | r as usize)
                .map_or(0, |&x| u64::from(x))
        };
        let first = v * EXP_DEGREE as u64;
        let mut x: [u64; EXP_DEGREE] =
            std::array::from_fn(|i| self.encode(first + i as u64, &round));
        while x.iter().any(|&x| x >= self.domain) {
            for lane in &mut x {
                let next = self.encode(*lane, &round);
                *lane = if *lane >= self.domain { next } else { *lane };
            }
        }
        x.map(|x| (x / EXP_DEGREE as u64) as u32)
    }

    #[inline(always)]
    fn exp_parents(&self, v: u64, round: &impl Fn(usize, u64) -> u64) -> [u32; EXP_DEGREE] {
        let first = v * EXP_DEGREE as u64;
        // permute(..) < N = 8n, so each parent is < n ≤ 2^32.
        std::array::from_fn(|i| (self.permute(first + i as u64, round) / EXP_DEGREE as u64) as u32)
    }
}

/// The SDR graph of one node count and `porep_id`.
///
/// Node indices are `u64`; parent indices are `u32` (a graph has at most `2^32` nodes). The methods
/// that take a node expect `v < nodes()`: challenge indices are derived modulo the node count, so a
/// larger index is a caller bug. They never index out of bounds or loop on one: debug builds assert,
/// release builds return all-zero parents. [`Graph::try_parents`] checks instead.
#[derive(Clone)]
pub struct Graph {
    nodes: u64,
    porep_id: [u8; 32],
    /// `K("drg")` as chaining-value words.
    drg_key: [u32; 8],
    /// The DRG stream's input block with `porep_id` in place; `u64le(v)` goes at bytes 32..40.
    drg_block: [u8; BLOCK_LEN],
    feistel: Feistel,
    /// The Feistel round table for [`Graph::parents_into`], built on first use and shared by clones.
    table: Arc<OnceLock<Box<[u32]>>>,
    platform: Platform,
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let porep_id: String = self.porep_id.iter().map(|b| format!("{b:02x}")).collect();
        f.debug_struct("Graph")
            .field("nodes", &self.nodes)
            .field("porep_id", &porep_id)
            .field("feistel_half_bits", &self.feistel.half_bits)
            .field("table_built", &self.table.get().is_some())
            .finish()
    }
}

impl Graph {
    /// The graph of a sector size: `size.nodes()` nodes and `size.porep_id()`.
    pub fn new(size: SectorSize) -> Graph {
        match Graph::with_nodes(size.nodes(), size.porep_id()) {
            Ok(graph) => graph,
            Err(_) => unreachable!("every sector size has 2^k nodes with 6 ≤ k ≤ 31"),
        }
    }

    /// The graph of `nodes` nodes (a power of two in `2..=2^32`) and a `porep_id`.
    pub fn with_nodes(nodes: u64, porep_id: [u8; 32]) -> Result<Graph, GraphError> {
        if nodes < MIN_NODES {
            return Err(GraphError::TooFewNodes(nodes));
        }
        if nodes > MAX_NODES {
            return Err(GraphError::TooManyNodes(nodes));
        }
        if !nodes.is_power_of_two() {
            return Err(GraphError::NotPowerOfTwo(nodes));
        }
        let mut drg_block = [0u8; BLOCK_LEN];
        drg_block[..32].copy_from_slice(&porep_id);
        Ok(Graph {
            nodes,
            porep_id,
            drg_key: words_from_le_bytes_32(hash::key(Tag::Drg)),
            drg_block,
            feistel: Feistel::new(nodes, &porep_id),
            table: Arc::new(OnceLock::new()),
            platform: Platform::detect(),
        })
    }

    /// The node count `n`.
    pub fn nodes(&self) -> u64 {
        self.nodes
    }

    /// The `porep_id` the graph is derived from.
    pub fn porep_id(&self) -> &[u8; 32] {
        &self.porep_id
    }

    /// `Ok(())` if `v` is a node of this graph.
    pub fn check_node(&self, v: u64) -> Result<(), GraphError> {
        if v < self.nodes {
            Ok(())
        } else {
            Err(GraphError::NodeOutOfRange {
                v,
                nodes: self.nodes,
            })
        }
    }

    /// The six same-layer parents of `v` (SPEC §4.1). Node 0 has none: it gets six zeros, as node 1 does.
    ///
    /// Expects `v < nodes()` (see [`Graph`]): otherwise zeros in release builds.
    pub fn base_parents(&self, v: u64) -> [u32; BASE_DEGREE] {
        debug_assert!(v < self.nodes, "node {v} outside {} nodes", self.nodes);
        if v >= self.nodes {
            return [0; BASE_DEGREE];
        }
        self.base_unchecked(v)
    }

    /// The eight previous-layer parents of `v` (SPEC §4.2), node 0 included (its label ignores them).
    ///
    /// Expects `v < nodes()` (see [`Graph`]): otherwise zeros in release builds.
    pub fn exp_parents(&self, v: u64) -> [u32; EXP_DEGREE] {
        debug_assert!(v < self.nodes, "node {v} outside {} nodes", self.nodes);
        if v >= self.nodes {
            return [0; EXP_DEGREE];
        }
        let f = &self.feistel;
        let platform = self.platform;
        f.exp_parents(v, &|i, r| f.round_fn(platform, r, f.keys[i]))
    }

    /// All fourteen parents of `v`: the base parents, then the expander parents.
    ///
    /// Expects `v < nodes()` (see [`Graph`]): otherwise zeros in release builds.
    pub fn parents(&self, v: u64) -> [u32; DEGREE] {
        join(self.base_parents(v), self.exp_parents(v))
    }

    /// [`Graph::parents`] for an index that may be outside the graph.
    pub fn try_parents(&self, v: u64) -> Result<[u32; DEGREE], GraphError> {
        self.check_node(v)?;
        Ok(self.parents(v))
    }

    /// Fills `out[j]` with the parents of node `start + j`, the fast way (see the module doc). The first
    /// call on a graph (or any clone of it) tabulates the Feistel rounds: `3 · 2^h` compressions, about
    /// 0.4 M for 32 GiB sectors.
    ///
    /// Expects `start + out.len() ≤ nodes()`: slots past the end get zeros in release builds.
    pub fn parents_into(&self, start: u64, out: &mut [[u32; DEGREE]]) {
        let end = start.saturating_add(out.len() as u64);
        debug_assert!(
            end <= self.nodes,
            "nodes {start}..{end} outside {}",
            self.nodes
        );
        let table = self.table.get_or_init(|| self.feistel.table(self.platform));
        for (v, slot) in (start..end).zip(out.iter_mut()) {
            *slot = if v < self.nodes {
                join(
                    self.base_unchecked(v),
                    self.feistel.exp_parents_lockstep(v, table),
                )
            } else {
                [0; DEGREE]
            };
        }
        // Only when `start + out.len()` overflows u64 are there slots the range did not reach.
        let reached = usize::try_from(end - start).unwrap_or(out.len());
        if let Some(rest) = out.get_mut(reached..) {
            rest.fill([0; DEGREE]);
        }
    }

    /// Bucket sampling for `v < nodes`.
    #[inline(always)]
    fn base_unchecked(&self, v: u64) -> [u32; BASE_DEGREE] {
        let mut parents = [0u32; BASE_DEGREE];
        if v < 2 {
            return parents;
        }
        // The first 80 bytes of the keyed XOF of the 40-byte input are in its root output blocks 0 and 1;
        // `xof_many` computes both in one go (in parallel lanes with AVX-512).
        let mut block = self.drg_block;
        block[32..40].copy_from_slice(&v.to_le_bytes());
        let mut out = [0u8; 2 * BLOCK_LEN];
        self.platform.xof_many(
            &self.drg_key,
            &block,
            DRG_INPUT_LEN,
            0,
            ONE_BLOCK_KEYED,
            &mut out,
        );
        let mut stream = out.chunks_exact(8).map(|c| {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            u64::from_le_bytes(w)
        });
        let mut next = || stream.next().unwrap_or(0);

        parents[0] = (v - 1) as u32;
        // v < 2^32, so meta < 5 · 2^32 and every bucket is < 64 bits wide.
        let meta = 5 * v;
        let n_buckets = u64::from(64 - (meta - 1).leading_zeros());
        for p in &mut parents[1..] {
            let bucket = next() % n_buckets + 1;
            let largest = meta.min(1 << bucket);
            let smallest = (largest >> 1).max(2);
            let dist = smallest + next() % (largest - smallest + 1);
            // dist ≥ 2, so the parent is at most v − 1; dist ≤ meta, so it is ≥ 0.
            *p = ((meta - dist) / 5) as u32;
        }
        parents
    }
}

fn join(base: [u32; BASE_DEGREE], exp: [u32; EXP_DEGREE]) -> [u32; DEGREE] {
    let mut all = [0u32; DEGREE];
    all[..BASE_DEGREE].copy_from_slice(&base);
    all[BASE_DEGREE..].copy_from_slice(&exp);
    all
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[derive(serde::Deserialize)]
    struct Vectors {
        nodes_count: u64,
        porep_id: String,
        feistel: FeistelVector,
        nodes: Vec<NodeVector>,
    }
    #[derive(serde::Deserialize)]
    struct FeistelVector {
        #[serde(rename = "domain_N")]
        domain_n: u64,
        h: u32,
        key_hash: String,
        keys_k0_k3: [u64; 4],
    }
    #[derive(serde::Deserialize)]
    struct NodeVector {
        v: u64,
        base: Vec<u32>,
        exp: Vec<u32>,
    }

    fn hex_of(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn known_answers_for_every_node_of_2kib() {
        let vectors: Vectors = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/vectors/graph_2kib.json"
        )))
        .unwrap();
        let size = SectorSize::S2KiB;
        let graph = Graph::new(size);
        assert_eq!(vectors.nodes_count, graph.nodes());
        assert_eq!(vectors.porep_id, hex_of(graph.porep_id()));
        let key_hash = hash::hash(Tag::Feistel, &size.porep_id());
        assert_eq!(vectors.feistel.key_hash, key_hash.to_hex());
        assert_eq!(vectors.feistel.keys_k0_k3[..3], graph.feistel.keys);
        assert_eq!(vectors.feistel.h, graph.feistel.half_bits);
        assert_eq!(vectors.feistel.domain_n, graph.feistel.domain);

        assert_eq!(vectors.nodes.len() as u64, graph.nodes());
        let mut bulk = vec![[0u32; DEGREE]; vectors.nodes.len()];
        graph.parents_into(0, &mut bulk);
        for (node, fast) in vectors.nodes.iter().zip(&bulk) {
            let v = node.v;
            let base = graph.base_parents(v);
            if v == 0 {
                assert!(node.base.is_empty());
                assert_eq!(base, [0; BASE_DEGREE]);
            } else {
                assert_eq!(node.base, base, "base parents of {v}");
            }
            assert_eq!(node.exp, graph.exp_parents(v), "expander parents of {v}");
            assert_eq!(*fast, graph.parents(v), "bulk parents of {v}");
        }
    }

    #[test]
    fn one_block_compression_equals_keyed_hash_and_xof() {
        let graph = Graph::with_nodes(1 << 20, [7; 32]).unwrap();
        let f = &graph.feistel;
        for (r, key) in [(0u64, 0u64), (1, 2), (u64::MAX, 12345), (999, u64::MAX)] {
            let mut m = [0u8; 16];
            m[..8].copy_from_slice(&r.to_le_bytes());
            m[8..].copy_from_slice(&key.to_le_bytes());
            let full = blake3::keyed_hash(hash::key(Tag::Feistel), &m);
            let first = u64::from_le_bytes(full.as_bytes()[..8].try_into().unwrap());
            assert_eq!(f.round_fn(graph.platform, r, key), first & f.right_mask);
        }
        for v in [2u64, 3, 1000, (1 << 20) - 1] {
            let mut xof = hash::hasher(Tag::Drg);
            xof.update(graph.porep_id());
            xof.update(&v.to_le_bytes());
            let mut stream = [0u8; 128];
            xof.finalize_xof().fill(&mut stream);
            let mut block = graph.drg_block;
            block[32..40].copy_from_slice(&v.to_le_bytes());
            let mut out = [0u8; 128];
            graph
                .platform
                .xof_many(&graph.drg_key, &block, 40, 0, ONE_BLOCK_KEYED, &mut out);
            assert_eq!(stream, out);
        }
    }

    #[test]
    fn node_counts_are_checked() {
        for bad in [0u64, 1] {
            assert_eq!(
                Graph::with_nodes(bad, [0; 32]).unwrap_err(),
                GraphError::TooFewNodes(bad)
            );
        }
        for bad in [(1u64 << 32) + 1, 1 << 33, u64::MAX] {
            assert_eq!(
                Graph::with_nodes(bad, [0; 32]).unwrap_err(),
                GraphError::TooManyNodes(bad)
            );
        }
        for bad in [3u64, 96, (1 << 32) - 1] {
            assert_eq!(
                Graph::with_nodes(bad, [0; 32]).unwrap_err(),
                GraphError::NotPowerOfTwo(bad)
            );
        }
        for size in SectorSize::ALL {
            assert_eq!(Graph::new(size).nodes(), size.nodes());
        }
    }

    #[test]
    fn the_extremes_of_the_node_range() {
        let tiny = Graph::with_nodes(2, [1; 32]).unwrap();
        assert_eq!(tiny.parents(1)[..BASE_DEGREE], [0; BASE_DEGREE]);
        for v in 0..2 {
            assert!(tiny.exp_parents(v).iter().all(|&p| p < 2));
        }
        let huge = Graph::with_nodes(MAX_NODES, [2; 32]).unwrap();
        let last = MAX_NODES - 1;
        let parents = huge.parents(last);
        assert_eq!(parents[0], (last - 1) as u32);
        assert!(parents[1..BASE_DEGREE].iter().all(|&p| u64::from(p) < last));
        let mut bulk = [[0u32; DEGREE]; 3];
        huge.parents_into(last - 2, &mut bulk);
        assert_eq!(bulk[2], parents);
        assert_eq!(bulk[0], huge.parents(last - 2));
    }

    #[test]
    fn out_of_range_nodes_are_errors() {
        let graph = Graph::with_nodes(64, [0; 32]).unwrap();
        assert_eq!(
            graph.try_parents(64),
            Err(GraphError::NodeOutOfRange { v: 64, nodes: 64 })
        );
        assert_eq!(graph.try_parents(63), Ok(graph.parents(63)));
        assert!(graph.try_parents(u64::MAX).is_err());
    }

    #[test]
    fn base_parents_come_before_their_node() {
        let graph = Graph::with_nodes(1 << 12, [9; 32]).unwrap();
        for v in 1..graph.nodes() {
            let base = graph.base_parents(v);
            assert!(base.iter().all(|&p| u64::from(p) < v), "node {v}: {base:?}");
            if v >= 2 {
                assert_eq!(u64::from(base[0]), v - 1);
            }
        }
    }

    #[test]
    fn permute_is_a_bijection_on_small_domains() {
        for log_nodes in 1..=10 {
            let graph = Graph::with_nodes(1 << log_nodes, [log_nodes as u8; 32]).unwrap();
            let f = &graph.feistel;
            let round = |i: usize, r: u64| f.round_fn(graph.platform, r, f.keys[i]);
            let mut seen = vec![false; f.domain as usize];
            for a in 0..f.domain {
                let x = f.permute(a, &round);
                assert!(x < f.domain);
                assert!(
                    !seen[x as usize],
                    "{x} hit twice with {} nodes",
                    graph.nodes()
                );
                seen[x as usize] = true;
            }
            // Likewise `encode` on its whole domain 0..4^h.
            let full = 1u64 << (2 * f.half_bits);
            let mut hits: Vec<u64> = (0..full).map(|x| f.encode(x, &round)).collect();
            hits.sort_unstable();
            assert!(hits.iter().copied().eq(0..full));
        }
    }

    #[test]
    fn bulk_equals_one_by_one() {
        for (log_nodes, porep_id) in [(6, [0u8; 32]), (11, [3; 32]), (18, [4; 32])] {
            let graph = Graph::with_nodes(1 << log_nodes, porep_id).unwrap();
            let n = graph.nodes();
            for (start, len) in [(0, 1usize), (0, 100), (n / 2 - 7, 33), (n - 50, 50)] {
                let len = len.min((n - start) as usize);
                let mut bulk = vec![[0u32; DEGREE]; len];
                graph.parents_into(start, &mut bulk);
                for (j, p) in bulk.iter().enumerate() {
                    assert_eq!(
                        *p,
                        graph.parents(start + j as u64),
                        "node {}",
                        start + j as u64
                    );
                }
            }
        }
    }

    #[test]
    fn clones_share_the_round_table() {
        let graph = Graph::with_nodes(1 << 10, [5; 32]).unwrap();
        let clone = graph.clone();
        let mut out = [[0u32; DEGREE]; 4];
        clone.parents_into(4, &mut out);
        assert!(graph.table.get().is_some());
        assert!(format!("{graph:?}").contains("table_built: true"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn parents_are_in_range(porep_id: [u8; 32], log_nodes in 1u32..=32, pick: u64) {
            let graph = Graph::with_nodes(1 << log_nodes, porep_id).unwrap();
            let v = pick % graph.nodes();
            let parents = graph.parents(v);
            for &p in &parents[..BASE_DEGREE] {
                prop_assert!(u64::from(p) < v.max(1));
            }
            for &p in &parents[BASE_DEGREE..] {
                prop_assert!(u64::from(p) < graph.nodes());
            }
        }

        #[test]
        fn bulk_matches_single(porep_id: [u8; 32], log_nodes in 1u32..=16, pick: u64, len in 1usize..40) {
            let graph = Graph::with_nodes(1 << log_nodes, porep_id).unwrap();
            let start = pick % graph.nodes();
            let len = len.min((graph.nodes() - start) as usize);
            let mut bulk = vec![[0u32; DEGREE]; len];
            graph.parents_into(start, &mut bulk);
            for (j, p) in bulk.iter().enumerate() {
                prop_assert_eq!(*p, graph.parents(start + j as u64));
            }
        }
    }
}
