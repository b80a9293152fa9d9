//! Labelling: computing the layers of SDR (SPEC §4.3) over a whole sector.
//!
//! Labels within a layer depend on each other (node `v − 1` is always a parent), so one sector's layer is
//! a sequential walk. What makes it fast is not waiting for memory: parents are known in advance from the
//! parent cache, so the labeller prefetches the labels that node `v + AHEAD` will need while it hashes
//! node `v`, and hashes each 512-byte label input with single-lane BLAKE3 compressions (8 per label).
//! The [`Labeller`] trait is the seam where a multi-sector SIMD or GPU labeller will plug in.

use std::ops::ControlFlow;

use lode_proofs::graph::{BASE_DEGREE, DEGREE};
use lode_proofs::node::Node;
use lode_proofs::sdr::LabelInput;

use crate::error::{SealError, SealResult};
use crate::parent_cache::ParentCache;

/// A layer's labels in memory: an anonymous map asking for transparent huge pages, so that the labeller's
/// random reads across a layer of hundreds of MiB do not miss the TLB on every parent.
pub struct LayerBuf {
    map: memmap2::MmapMut,
}

impl LayerBuf {
    /// A zeroed buffer of `nodes` labels.
    pub fn new(nodes: usize) -> SealResult<Self> {
        let bytes = nodes.max(1) * lode_proofs::node::NODE_SIZE;
        let map = memmap2::MmapOptions::new()
            .len(bytes)
            .map_anon()
            .map_err(|source| SealError::Io {
                path: "anonymous layer buffer".into(),
                source,
            })?;
        #[cfg(target_os = "linux")]
        if let Err(e) = map.advise(memmap2::Advice::HugePage) {
            tracing::debug!(error = %e, "no transparent huge pages for the layer buffer");
        }
        Ok(LayerBuf { map })
    }

    /// The labels.
    pub fn nodes(&self) -> &[Node] {
        lode_proofs::node::nodes_from_bytes(&self.map).unwrap_or_default()
    }

    /// The labels, mutably.
    pub fn nodes_mut(&mut self) -> &mut [Node] {
        lode_proofs::node::nodes_from_bytes_mut(&mut self.map).unwrap_or_default()
    }
}

/// How far ahead of the node being hashed parents are prefetched.
const AHEAD: usize = 32;
/// Nodes between two progress reports (and cancellation checks).
pub const PROGRESS_EVERY: u64 = 1 << 16;

/// Computes one layer of labels.
pub trait Labeller: Sync {
    /// A short name, for logs and benchmarks.
    fn name(&self) -> &'static str;

    /// Computes layer `layer` (1-based) into `out` (one node per sector node), given the previous
    /// layer's labels for layers above 1. `progress` is called with the nodes done so far every
    /// [`PROGRESS_EVERY`] nodes; returning `ControlFlow::Break` cancels with [`SealError::Cancelled`].
    fn label_layer(
        &self,
        replica_id: &Node,
        layer: u32,
        prev: Option<&[Node]>,
        out: &mut [Node],
        progress: &mut dyn FnMut(u64) -> ControlFlow<()>,
    ) -> SealResult<()>;
}

/// The single-sector CPU labeller.
pub struct CpuLabeller<'a> {
    cache: &'a ParentCache,
}

impl<'a> CpuLabeller<'a> {
    /// A labeller reading parents from `cache`.
    pub fn new(cache: &'a ParentCache) -> Self {
        CpuLabeller { cache }
    }
}

#[inline(always)]
fn prefetch(node: &Node) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is a hint with no memory effects; SSE is part of the x86_64 baseline, and the
    // pointer comes from a live reference.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>((node as *const Node).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = node;
}

impl Labeller for CpuLabeller<'_> {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn label_layer(
        &self,
        replica_id: &Node,
        layer: u32,
        prev: Option<&[Node]>,
        out: &mut [Node],
        progress: &mut dyn FnMut(u64) -> ControlFlow<()>,
    ) -> SealResult<()> {
        let n = out.len();
        if n as u64 != self.cache.nodes() {
            return Err(SealError::Inconsistent(
                "layer length differs from the parent cache's node count",
            ));
        }
        let prev = match (layer, prev) {
            (1, _) => None,
            (_, Some(p)) if p.len() == n => Some(p),
            _ => {
                return Err(SealError::Inconsistent(
                    "a layer above 1 needs the whole previous layer",
                ));
            }
        };
        if !n.is_power_of_two() {
            return Err(SealError::Inconsistent(
                "sector node counts are powers of two",
            ));
        }
        // Parents are < n by construction; masking (not `%`, a division) keeps a damaged cache in bounds.
        let mask = n - 1;
        let mut input = LabelInput::new(replica_id, layer, 0);
        out[0] = input.hash();

        // Parents of the next AHEAD nodes, decoded once: ring[v % AHEAD].
        let mut ring = [[0u32; DEGREE]; AHEAD];
        for v in 1..n.min(AHEAD + 1) {
            ring[v % AHEAD] = self.cache.parents(v as u64);
        }
        let mut released = 0u64;
        for v in 1..n {
            let parents = ring[v % AHEAD];
            let ahead = v + AHEAD;
            if ahead < n {
                let next = self.cache.parents(ahead as u64);
                if let Some(p) = prev {
                    for &e in &next[BASE_DEGREE..] {
                        prefetch(&p[e as usize & mask]);
                    }
                }
                for &b in &next[1..BASE_DEGREE] {
                    prefetch(&out[b as usize & mask]);
                }
                ring[ahead % AHEAD] = next;
            }
            input.set_node(v as u64);
            for (k, &b) in parents[..BASE_DEGREE].iter().enumerate() {
                input.set_parent(k, &out[b as usize & mask]);
            }
            if let Some(p) = prev {
                for (k, &e) in parents[BASE_DEGREE..].iter().enumerate() {
                    input.set_parent(BASE_DEGREE + k, &p[e as usize & mask]);
                }
            }
            out[v] = input.hash();
            if (v as u64 + 1).is_multiple_of(PROGRESS_EVERY) {
                // Parents up to here have been read (the ring holds the next AHEAD).
                self.cache.release(released, (v + 1) as u64);
                released = (v + 1) as u64;
                if progress(v as u64 + 1).is_break() {
                    return Err(SealError::Cancelled);
                }
            }
        }
        if progress(n as u64).is_break() {
            return Err(SealError::Cancelled);
        }
        Ok(())
    }
}
