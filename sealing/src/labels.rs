//! Labelling: computing the layers of SDR (SPEC §4.3) over a whole sector.
//!
//! Labels within a layer depend on each other (node `v − 1` is always a parent), so one sector's layer is
//! a sequential walk. What makes it fast is not waiting for memory: parents are known in advance from the
//! parent cache, so the labeller prefetches the same-layer labels that node `v + AHEAD` will need
//! while it hashes node `v`, and a helper thread prepares the nodes two chunks ahead: the chaining
//! value after each label input's header block (it holds no label) and the expander parents'
//! labels, gathered from the previous layer. The hashing thread then finishes each 512-byte label
//! input with seven single-lane BLAKE3 compressions.
//!
//! Several sectors of one size share the graph, so [`BatchLabeller`]s label `N` of them together:
//! [`CpuBatchLabeller`] walks the graph once, reads each node's parents once for all sectors, and
//! hashes the `N` label inputs of a node across BLAKE3's SIMD lanes
//! ([`lode_proofs::hash::hash_many`]: 16 lanes with AVX-512, 8 with AVX2, 4 with SSE4.1, one
//! without; detected at run time). Its layers live in sector-interleaved memory ([`BatchLayer`]:
//! node `v` of sector `s` at `v·N + s`), so one parent's labels for every sector are adjacent.
//! Each sector's labels are exactly the single-sector labeller's.
//!
//! [`GpuBatchLabeller`] (the `gpu` feature) labels the same interleaved layers on a device with
//! `lode-gpu`'s kernel, one work item per sector; its labels are the CPU's, byte for byte.

use std::ops::ControlFlow;
use std::sync::mpsc;

use lode_proofs::graph::{BASE_DEGREE, DEGREE};
use lode_proofs::hash::{Tag, finish_blocks, first_block_cv, hash_many};
use lode_proofs::node::{NODE_SIZE, Node};
use lode_proofs::sdr::{LABEL_INPUT_LEN, LabelInput, label_header};

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

    /// A handle with which another thread faults this buffer's pages in while it is in use
    /// ([`Prefault`]).
    pub fn prefault(&self) -> Prefault {
        Prefault {
            addr: self.map.as_ptr() as usize,
            len: self.map.len(),
        }
    }
}

/// Faults a [`LayerBuf`]'s pages in ahead of the labeller, from another thread.
///
/// The first write to each page of a fresh anonymous map faults, and the kernel zeroes the page
/// then. On a virtual machine whose host backs guest memory lazily this costs seconds per GiB,
/// paid by the labelling thread: a sixth of a 512 MiB PreCommit1 on a 2-core cloud machine
/// (BENCHMARKS.md). [`Prefault::run`] asks the kernel to populate the pages in order
/// (`MADV_POPULATE_WRITE`, Linux 5.14 and later), which moves that cost to the thread that
/// calls it; the labeller, walking the same pages in the same order behind it, finds them ready.
#[derive(Clone, Copy, Debug)]
pub struct Prefault {
    addr: usize,
    len: usize,
}

impl Prefault {
    /// Bytes populated per request, between two looks at the stop flag.
    const STEP: usize = 16 << 20;

    /// Populates the buffer from its start to its end, stopping early when `stop` is set or the
    /// kernel cannot (an older kernel, another system); returns the bytes populated. The buffer's
    /// contents do not change.
    pub fn run(&self, stop: &std::sync::atomic::AtomicBool) -> usize {
        let mut done = 0usize;
        #[cfg(target_os = "linux")]
        while done < self.len && !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let len = Self::STEP.min(self.len - done);
            // SAFETY: MADV_POPULATE_WRITE only faults pages in as a write would, without writing:
            // it never changes what the memory holds, so it cannot race with the labeller's
            // writes to the same pages. `addr + done` is page-aligned (the map's start plus a
            // multiple of STEP). A range that is no longer mapped makes the call fail (ENOMEM),
            // which ends the loop; the callers keep the buffer alive until this returns anyway.
            let r = unsafe {
                rustix::mm::madvise(
                    (self.addr + done) as *mut std::ffi::c_void,
                    len,
                    rustix::mm::Advice::LinuxPopulateWrite,
                )
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, "the kernel does not populate the layer buffer ahead");
                break;
            }
            done += len;
        }
        #[cfg(not(target_os = "linux"))]
        let _ = stop;
        done
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

    /// As [`Labeller::label_layer`], and hands the finished labels to `sink` as they become final:
    /// consecutive ranges of `out`, in order, from node 0 to the end, each given once and never
    /// written again. A labeller that cannot tell (the default) gives the whole layer at the end.
    /// An error from `sink` stops the labelling and is returned.
    fn label_layer_streaming(
        &self,
        replica_id: &Node,
        layer: u32,
        prev: Option<&[Node]>,
        out: &mut [Node],
        progress: &mut dyn FnMut(u64) -> ControlFlow<()>,
        sink: &mut dyn FnMut(&[Node]) -> SealResult<()>,
    ) -> SealResult<()> {
        self.label_layer(replica_id, layer, prev, out, progress)?;
        sink(out)
    }
}

/// Nodes the single-sector labeller hands to a streaming sink at a time (2 MiB).
pub const STREAM_NODES: usize = 1 << 16;

/// The parents of the nodes a labeller walks, decoded from the cache `AHEAD` nodes early (so their
/// labels can be prefetched), and the cache's pages released behind the walk.
struct ParentWalk<'c> {
    cache: &'c ParentCache,
    n: usize,
    ring: [[u32; DEGREE]; AHEAD],
    released: u64,
}

impl<'c> ParentWalk<'c> {
    /// A walk over the `n` nodes of `cache` from node 1.
    fn new(cache: &'c ParentCache, n: usize) -> Self {
        let mut ring = [[0u32; DEGREE]; AHEAD];
        for v in 1..n.min(AHEAD + 1) {
            ring[v % AHEAD] = cache.parents(v as u64);
        }
        ParentWalk {
            cache,
            n,
            ring,
            released: 0,
        }
    }

    /// Node `v`'s parents, and those of node `v + AHEAD` when there is one (to prefetch).
    #[inline(always)]
    fn step(&mut self, v: usize) -> ([u32; DEGREE], Option<[u32; DEGREE]>) {
        let parents = self.ring[v % AHEAD];
        let ahead = v + AHEAD;
        let next = (ahead < self.n).then(|| {
            let next = self.cache.parents(ahead as u64);
            self.ring[ahead % AHEAD] = next;
            next
        });
        (parents, next)
    }

    /// After node `v`: every [`PROGRESS_EVERY`] nodes, releases the cache pages read so far and
    /// reports progress (a break cancels).
    #[inline(always)]
    fn done(
        &mut self,
        v: usize,
        progress: &mut dyn FnMut(u64) -> ControlFlow<()>,
    ) -> SealResult<()> {
        let count = v as u64 + 1;
        if count.is_multiple_of(PROGRESS_EVERY) {
            // Parents up to here have been read (the ring holds the next AHEAD).
            self.cache.release(self.released, count);
            self.released = count;
            if progress(count).is_break() {
                return Err(SealError::Cancelled);
            }
        }
        Ok(())
    }
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
        self.label_layer_streaming(replica_id, layer, prev, out, progress, &mut |_| Ok(()))
    }

    fn label_layer_streaming(
        &self,
        replica_id: &Node,
        layer: u32,
        prev: Option<&[Node]>,
        out: &mut [Node],
        progress: &mut dyn FnMut(u64) -> ControlFlow<()>,
        sink: &mut dyn FnMut(&[Node]) -> SealResult<()>,
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
        let input = LabelInput::new(replica_id, layer, 0);
        out[0] = input.hash();
        let cache = self.cache;
        // Nodes 1.. in chunks; a helper thread prepares each chunk two ahead of the hashing.
        let chunks: Vec<(usize, usize)> = (1..n)
            .step_by(CHUNK)
            .map(|s| (s, s.saturating_add(CHUNK).min(n)))
            .collect();
        // Labels before `flushed` have been handed to `sink`.
        let mut flushed = 0;
        std::thread::scope(|scope| -> SealResult<()> {
            let (jobs, job_rx) = mpsc::channel::<(usize, Prepared)>();
            let (done_tx, done) = mpsc::channel::<Prepared>();
            let chunks = &chunks;
            scope.spawn(move || {
                for (j, mut buf) in job_rx {
                    if let Some(&(start, end)) = chunks.get(j) {
                        buf.fill(replica_id, layer, prev, cache, mask, start, end);
                    }
                    if done_tx.send(buf).is_err() {
                        break;
                    }
                }
            });
            for j in 0..chunks.len().min(2) {
                // The helper is alive until `jobs` is dropped.
                let _ = jobs.send((j, Prepared::default()));
            }
            let stopped = || SealError::Inconsistent("the labeller's helper thread stopped");
            let mut walk = ParentWalk::new(cache, n);
            let mut rest = [0u8; LABEL_INPUT_LEN - HEADER_LEN];
            for (j, &(start, end)) in chunks.iter().enumerate() {
                let buf = done.recv().map_err(|_| stopped())?;
                if buf.cvs.len() != end - start || (prev.is_some() && buf.exp.len() != end - start)
                {
                    return Err(stopped());
                }
                for v in start..end {
                    let i = v - start;
                    let (parents, next) = walk.step(v);
                    if let Some(next) = next {
                        for &b in &next[1..BASE_DEGREE] {
                            prefetch(&out[b as usize & mask]);
                        }
                    }
                    for (slot, &b) in rest
                        .chunks_exact_mut(NODE_SIZE)
                        .zip(&parents[..BASE_DEGREE])
                    {
                        slot.copy_from_slice(&out[b as usize & mask].0);
                    }
                    if prev.is_some() {
                        rest[BASE_DEGREE * NODE_SIZE..].copy_from_slice(&buf.exp[i]);
                    }
                    out[v] = finish_blocks(buf.cvs[i], &rest);
                    walk.done(v, progress)?;
                }
                // Base parents precede their node, so labels before `end` are final.
                if end - flushed >= STREAM_NODES || end == n {
                    sink(&out[flushed..end])?;
                    flushed = end;
                }
                if j + 2 < chunks.len() {
                    let _ = jobs.send((j + 2, buf));
                }
            }
            Ok(())
        })?;
        if flushed < n {
            sink(&out[flushed..])?;
        }
        if progress(n as u64).is_break() {
            return Err(SealError::Cancelled);
        }
        Ok(())
    }
}

/// Nodes per chunk of the single-sector labeller's pipeline (512 KiB of gathered parents).
const CHUNK: usize = 2048;
/// The label input's header: one BLAKE3 block.
const HEADER_LEN: usize = 64;
/// Bytes of a node's expander parents' labels.
const EXPANDER_BYTES: usize = (DEGREE - BASE_DEGREE) * NODE_SIZE;

/// What the helper prepares for a chunk of nodes: each node's chaining value after its header
/// block (which depends on no label), and above layer 1 its expander parents' labels, gathered
/// from the previous layer.
#[derive(Default)]
struct Prepared {
    cvs: Vec<[u32; 8]>,
    exp: Vec<[u8; EXPANDER_BYTES]>,
}

impl Prepared {
    #[allow(clippy::too_many_arguments)]
    fn fill(
        &mut self,
        replica_id: &Node,
        layer: u32,
        prev: Option<&[Node]>,
        cache: &ParentCache,
        mask: usize,
        start: usize,
        end: usize,
    ) {
        self.cvs.clear();
        self.exp.clear();
        for v in start..end {
            self.cvs.push(first_block_cv(
                Tag::Label,
                &label_header(replica_id, layer, v as u64),
            ));
        }
        if let Some(p) = prev {
            for v in start..end {
                if v + 8 < end {
                    for &e in &cache.parents((v + 8) as u64)[BASE_DEGREE..] {
                        prefetch(&p[e as usize & mask]);
                    }
                }
                let mut e = [0u8; EXPANDER_BYTES];
                for (slot, &x) in e
                    .chunks_exact_mut(NODE_SIZE)
                    .zip(&cache.parents(v as u64)[BASE_DEGREE..])
                {
                    slot.copy_from_slice(&p[x as usize & mask].0);
                }
                self.exp.push(e);
            }
        }
    }
}

/// The most sectors labelled together (a memory bound as much as a lane count: each sector costs
/// two layers of memory).
pub const MAX_BATCH: usize = 64;

/// One layer of `N` sectors in sector-interleaved memory: node `v` of sector `s` at `v·N + s`.
pub struct BatchLayer {
    buf: LayerBuf,
    sectors: usize,
    nodes: usize,
}

impl BatchLayer {
    /// A zeroed layer of `sectors` sectors of `nodes` nodes each.
    pub fn new(nodes: usize, sectors: usize) -> SealResult<Self> {
        let total = nodes.checked_mul(sectors).ok_or(SealError::Inconsistent(
            "a batch layer too large to address",
        ))?;
        Ok(BatchLayer {
            buf: LayerBuf::new(total)?,
            sectors,
            nodes,
        })
    }

    /// Sectors in the batch.
    pub fn sectors(&self) -> usize {
        self.sectors
    }

    /// Nodes per sector.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// Every label, interleaved.
    pub fn labels(&self) -> &[Node] {
        self.buf.nodes()
    }

    /// [`LayerBuf::prefault`] of the whole batch layer.
    pub fn prefault(&self) -> Prefault {
        self.buf.prefault()
    }

    /// Every label, interleaved, mutably.
    pub fn labels_mut(&mut self) -> &mut [Node] {
        self.buf.nodes_mut()
    }

    /// Copies sector `s`'s labels out, in node order.
    pub fn gather(&self, s: usize, out: &mut [Node]) {
        for (o, row) in out.iter_mut().zip(self.labels().chunks_exact(self.sectors)) {
            *o = row[s];
        }
    }

    /// Sets sector `s`'s labels from `from`, in node order.
    pub fn scatter(&mut self, s: usize, from: &[Node]) {
        let sectors = self.sectors;
        for (row, f) in self.labels_mut().chunks_exact_mut(sectors).zip(from) {
            row[s] = *f;
        }
    }
}

/// Computes one layer of several sectors of one size at once.
pub trait BatchLabeller: Sync {
    /// A short name, for logs and benchmarks.
    fn name(&self) -> &'static str;

    /// Computes layer `layer` (1-based) of the sectors with `replica_ids` (one per sector of
    /// `out`, in order) into `out`, given the previous layer for layers above 1. `progress` as for
    /// [`Labeller::label_layer`].
    fn label_layers(
        &self,
        replica_ids: &[Node],
        layer: u32,
        prev: Option<&BatchLayer>,
        out: &mut BatchLayer,
        progress: &mut dyn FnMut(u64) -> ControlFlow<()>,
    ) -> SealResult<()>;
}

/// A label input of zeros: what unused slots of the per-node reference array point at.
static ZERO_INPUT: [u8; LABEL_INPUT_LEN] = [0; LABEL_INPUT_LEN];

/// The multi-sector CPU labeller: BLAKE3 across SIMD lanes, one sector per lane.
pub struct CpuBatchLabeller<'a> {
    cache: &'a ParentCache,
}

impl<'a> CpuBatchLabeller<'a> {
    /// A labeller reading parents from `cache`.
    pub fn new(cache: &'a ParentCache) -> Self {
        CpuBatchLabeller { cache }
    }
}

/// Prefetches one interleaved row (`row.len()` labels, several cache lines).
#[inline(always)]
fn prefetch_row(row: &[Node]) {
    for line in row.chunks(64 / NODE_SIZE) {
        if let Some(first) = line.first() {
            prefetch(first);
        }
    }
}

impl BatchLabeller for CpuBatchLabeller<'_> {
    fn name(&self) -> &'static str {
        "cpu-batch"
    }

    fn label_layers(
        &self,
        replica_ids: &[Node],
        layer: u32,
        prev: Option<&BatchLayer>,
        out: &mut BatchLayer,
        progress: &mut dyn FnMut(u64) -> ControlFlow<()>,
    ) -> SealResult<()> {
        let (n, lanes) = (out.nodes(), out.sectors());
        if replica_ids.len() != lanes || lanes == 0 || lanes > MAX_BATCH {
            return Err(SealError::Inconsistent(
                "a batch needs one replica id per sector, 1 to MAX_BATCH sectors",
            ));
        }
        if n as u64 != self.cache.nodes() || !n.is_power_of_two() {
            return Err(SealError::Inconsistent(
                "layer length differs from the parent cache's node count",
            ));
        }
        let prev = match (layer, prev) {
            (1, _) => None,
            (_, Some(p)) if p.nodes() == n && p.sectors() == lanes => Some(p.labels()),
            _ => {
                return Err(SealError::Inconsistent(
                    "a layer above 1 needs the whole previous layer of every sector",
                ));
            }
        };
        let mask = n - 1;
        let labels = out.labels_mut();
        let row = |v: usize| (v & mask) * lanes;
        // Node 0 of every sector: no parents.
        let mut inputs: Vec<LabelInput> = replica_ids
            .iter()
            .map(|r| LabelInput::new(r, layer, 0))
            .collect();
        let mut hashed = vec![Node::default(); lanes];
        {
            let refs: Vec<&[u8; LABEL_INPUT_LEN]> = inputs.iter().map(|i| &i.0).collect();
            hash_many(Tag::Label, &refs, &mut hashed);
        }
        labels[..lanes].copy_from_slice(&hashed);

        let mut walk = ParentWalk::new(self.cache, n);
        for v in 1..n {
            let (parents, next) = walk.step(v);
            if let Some(next) = next {
                if let Some(p) = prev {
                    for &e in &next[BASE_DEGREE..] {
                        let at = row(e as usize);
                        prefetch_row(&p[at..at + lanes]);
                    }
                }
                for &b in &next[1..BASE_DEGREE] {
                    let at = row(b as usize);
                    prefetch_row(&labels[at..at + lanes]);
                }
            }
            for input in &mut inputs {
                input.set_node(v as u64);
            }
            for (k, &b) in parents[..BASE_DEGREE].iter().enumerate() {
                let at = row(b as usize);
                for (input, label) in inputs.iter_mut().zip(&labels[at..at + lanes]) {
                    input.set_parent(k, label);
                }
            }
            if let Some(p) = prev {
                for (k, &e) in parents[BASE_DEGREE..].iter().enumerate() {
                    let at = row(e as usize);
                    for (input, label) in inputs.iter_mut().zip(&p[at..at + lanes]) {
                        input.set_parent(BASE_DEGREE + k, label);
                    }
                }
            }
            let mut refs: [&[u8; LABEL_INPUT_LEN]; MAX_BATCH] = [&ZERO_INPUT; MAX_BATCH];
            for (r, input) in refs.iter_mut().zip(&inputs) {
                *r = &input.0;
            }
            hash_many(
                Tag::Label,
                &refs[..lanes],
                &mut labels[v * lanes..(v + 1) * lanes],
            );
            walk.done(v, progress)?;
        }
        if progress(n as u64).is_break() {
            return Err(SealError::Cancelled);
        }
        Ok(())
    }
}

/// The multi-sector labeller on a device (`lode-gpu`'s `lode_label` kernel, OpenCL or CUDA):
/// the parents of each launch's nodes read from the cache here and uploaded with it, the
/// previous layer uploaded once per layer, the layer read back when it is done.
#[cfg(feature = "gpu")]
pub struct GpuBatchLabeller<'a> {
    cache: &'a ParentCache,
    gpu: &'a lode_gpu::Gpu,
}

#[cfg(feature = "gpu")]
const _: () = assert!(DEGREE == lode_gpu::DEGREE);

#[cfg(feature = "gpu")]
impl<'a> GpuBatchLabeller<'a> {
    /// A labeller on `gpu` reading parents from `cache`.
    pub fn new(cache: &'a ParentCache, gpu: &'a lode_gpu::Gpu) -> Self {
        GpuBatchLabeller { cache, gpu }
    }
}

/// Labels as the kernel's words, in place: layers are page-aligned maps, and on a little-endian
/// machine a node's bytes are its words.
#[cfg(feature = "gpu")]
fn layer_words(nodes: &mut [Node]) -> SealResult<&mut [u32]> {
    let bytes = lode_proofs::node::nodes_as_bytes_mut(nodes);
    // SAFETY: every bit pattern is a valid `u32`, and `align_to_mut` only hands out the aligned
    // middle of the slice; a misaligned start or end is refused by `viewable`.
    let (pre, words, post) = unsafe { bytes.align_to_mut::<u32>() };
    viewable(pre.len(), post.len())?;
    Ok(words)
}

/// [`layer_words`], read only.
#[cfg(feature = "gpu")]
fn layer_words_ref(nodes: &[Node]) -> SealResult<&[u32]> {
    let bytes = lode_proofs::node::nodes_as_bytes(nodes);
    // SAFETY: as in `layer_words`.
    let (pre, words, post) = unsafe { bytes.align_to::<u32>() };
    viewable(pre.len(), post.len())?;
    Ok(words)
}

/// Whether a layer's bytes are its words whole: nothing left before or after the aligned part,
/// on a little-endian machine.
#[cfg(feature = "gpu")]
fn viewable(pre: usize, post: usize) -> SealResult<()> {
    if pre != 0 || post != 0 || cfg!(target_endian = "big") {
        return Err(SealError::Inconsistent(
            "device labelling needs 4-byte-aligned layers on a little-endian machine",
        ));
    }
    Ok(())
}

#[cfg(feature = "gpu")]
impl BatchLabeller for GpuBatchLabeller<'_> {
    fn name(&self) -> &'static str {
        "gpu-batch"
    }

    fn label_layers(
        &self,
        replica_ids: &[Node],
        layer: u32,
        prev: Option<&BatchLayer>,
        out: &mut BatchLayer,
        progress: &mut dyn FnMut(u64) -> ControlFlow<()>,
    ) -> SealResult<()> {
        let (n, lanes) = (out.nodes(), out.sectors());
        if replica_ids.len() != lanes || lanes == 0 || lanes > MAX_BATCH {
            return Err(SealError::Inconsistent(
                "a batch needs one replica id per sector, 1 to MAX_BATCH sectors",
            ));
        }
        let nodes = u32::try_from(n).map_err(|_| {
            SealError::Inconsistent("device labelling takes sectors of at most 2^32 nodes")
        })?;
        if n as u64 != self.cache.nodes() || !n.is_power_of_two() {
            return Err(SealError::Inconsistent(
                "layer length differs from the parent cache's node count",
            ));
        }
        if layer > 1 && prev.is_none_or(|p| p.nodes() != n || p.sectors() != lanes) {
            return Err(SealError::Inconsistent(
                "a layer above 1 needs the whole previous layer of every sector",
            ));
        }
        let ids: Vec<[u32; 8]> = replica_ids.iter().map(crate::accel::node_words).collect();
        let job = lode_gpu::LabelJob {
            key: crate::accel::node_words(&Node(*lode_proofs::hash::key(Tag::Label))),
            replica_ids: &ids,
            layer,
            nodes,
        };
        let prev_words = match prev.filter(|_| layer > 1) {
            Some(p) => Some(layer_words_ref(p.labels())?),
            None => None,
        };
        let cache = self.cache;
        let mut released = 0u64;
        self.gpu
            .label_layer(
                &job,
                &mut |start, buf| {
                    for (i, slot) in buf.chunks_exact_mut(DEGREE).enumerate() {
                        slot.copy_from_slice(&cache.parents(u64::from(start) + i as u64));
                    }
                    let done = u64::from(start) + (buf.len() / DEGREE) as u64;
                    cache.release(released, done);
                    released = done;
                },
                prev_words,
                layer_words(out.labels_mut())?,
                progress,
            )
            .map_err(|e| match e {
                lode_gpu::GpuError::Cancelled => SealError::Cancelled,
                e => SealError::Device(e.to_string()),
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cache(dir: &std::path::Path) -> ParentCache {
        ParentCache::open_or_build(dir, lode_proofs::sector::SectorSize::S2KiB).unwrap()
    }

    fn replica(i: u8) -> Node {
        lode_proofs::node::trunc254([i.wrapping_mul(37).wrapping_add(1); 32])
    }

    /// Populating a buffer ahead (from another thread, while it is written) leaves what it holds
    /// as it was, covers the whole buffer on Linux, and does nothing once told to stop.
    #[test]
    fn prefaulting_covers_the_buffer_and_changes_nothing() {
        use std::sync::atomic::AtomicBool;
        let n = (40 << 20) / NODE_SIZE + 3; // three steps, the last one short and not page-sized
        let mut buf = LayerBuf::new(n).unwrap();
        let prefault = buf.prefault();
        let go = AtomicBool::new(false);
        let mut written = 0;
        let done = std::thread::scope(|s| {
            let ahead = s.spawn(|| prefault.run(&go));
            for (i, node) in buf.nodes_mut().iter_mut().enumerate().step_by(1021) {
                *node = replica(i as u8);
                written += 1;
            }
            ahead.join().unwrap()
        });
        assert!(written > 1_000);
        if cfg!(target_os = "linux") {
            assert_eq!(done, n * NODE_SIZE);
        }
        for (i, node) in buf.nodes().iter().enumerate() {
            let want = if i % 1021 == 0 {
                replica(i as u8)
            } else {
                Node::default()
            };
            assert_eq!(*node, want, "node {i}");
        }
        // Populated again, pages already present: still the same contents.
        assert_eq!(buf.prefault().run(&go), done);
        assert_eq!(buf.nodes()[1021], replica((1021 % 256) as u8));
        let stop = AtomicBool::new(true);
        assert_eq!(LayerBuf::new(n).unwrap().prefault().run(&stop), 0);
    }

    /// Every sector of a batch gets exactly the single-sector labeller's layers, for batch sizes
    /// around every SIMD degree.
    #[test]
    fn a_batch_labels_each_sector_as_the_single_labeller_does() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = cache(tmp.path());
        let n = cache.nodes() as usize;
        let single = CpuLabeller::new(&cache);
        let batch = CpuBatchLabeller::new(&cache);
        let none = &mut |_| ControlFlow::Continue(());
        for lanes in [1usize, 3, 8, 17] {
            let ids: Vec<Node> = (0..lanes as u8).map(replica).collect();
            let mut prev = BatchLayer::new(n, lanes).unwrap();
            let mut cur = BatchLayer::new(n, lanes).unwrap();
            let mut expected: Vec<Vec<Node>> = vec![Vec::new(); lanes];
            for layer in 1..=3u32 {
                batch
                    .label_layers(&ids, layer, (layer > 1).then_some(&prev), &mut cur, none)
                    .unwrap();
                for (s, id) in ids.iter().enumerate() {
                    let mut want = vec![Node::default(); n];
                    let p = (layer > 1).then_some(expected[s].as_slice());
                    single.label_layer(id, layer, p, &mut want, none).unwrap();
                    let mut got = vec![Node::default(); n];
                    cur.gather(s, &mut got);
                    assert!(got == want, "{lanes} lanes, sector {s}, layer {layer}");
                    expected[s] = want;
                }
                std::mem::swap(&mut prev, &mut cur);
            }
        }
    }

    /// A streaming sink sees every label once, in order, in several ranges, equal to the layer the
    /// plain call computes; an error from the sink stops the labelling.
    #[test]
    fn streaming_hands_out_each_final_label_once_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let cache =
            ParentCache::open_or_build(tmp.path(), lode_proofs::sector::SectorSize::S8MiB).unwrap();
        let n = cache.nodes() as usize;
        let labeller = CpuLabeller::new(&cache);
        let none = &mut |_| ControlFlow::Continue(());
        let id = replica(5);
        let mut l1 = vec![Node::default(); n];
        labeller.label_layer(&id, 1, None, &mut l1, none).unwrap();
        let mut want = vec![Node::default(); n];
        labeller
            .label_layer(&id, 2, Some(&l1), &mut want, none)
            .unwrap();

        let (mut streamed, mut ranges) = (Vec::new(), 0);
        let mut out = vec![Node::default(); n];
        labeller
            .label_layer_streaming(&id, 2, Some(&l1), &mut out, none, &mut |r| {
                ranges += 1;
                streamed.extend_from_slice(r);
                Ok(())
            })
            .unwrap();
        assert!(streamed == want && out == want);
        assert_eq!(ranges, n / STREAM_NODES);

        let mut calls = 0;
        let stopped =
            labeller.label_layer_streaming(&id, 2, Some(&l1), &mut out, none, &mut |_| {
                calls += 1;
                Err(SealError::Cancelled)
            });
        assert!(matches!(stopped, Err(SealError::Cancelled)));
        assert_eq!(
            calls, 1,
            "nothing is labelled or handed out after the sink's error"
        );
    }

    #[test]
    fn scatter_and_gather_are_inverse_and_batches_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = cache(tmp.path());
        let n = cache.nodes() as usize;
        let mut layer = BatchLayer::new(n, 3).unwrap();
        let data: Vec<Node> = (0..n).map(|i| replica(i as u8)).collect();
        layer.scatter(1, &data);
        let mut back = vec![Node::default(); n];
        layer.gather(1, &mut back);
        assert!(back == data);
        layer.gather(0, &mut back);
        assert!(back.iter().all(|x| *x == Node::default()));
        let batch = CpuBatchLabeller::new(&cache);
        let none = &mut |_| ControlFlow::Continue(());
        // Two replica ids for three sectors; a layer 2 without its previous layer.
        assert!(
            batch
                .label_layers(&[replica(0), replica(1)], 1, None, &mut layer, none)
                .is_err()
        );
        let ids = [replica(0), replica(1), replica(2)];
        assert!(batch.label_layers(&ids, 2, None, &mut layer, none).is_err());
        // Cancelled by the progress callback.
        let stop = &mut |_| ControlFlow::Break(());
        assert!(matches!(
            batch.label_layers(&ids, 1, None, &mut layer, stop),
            Err(SealError::Cancelled)
        ));
    }
}
