//! lode's device kernels, written once in the subset of C that OpenCL C and CUDA C share
//! (`gpu/kernels/`), compiled at run time for the device found: through OpenCL (`opencl3`, the
//! library loaded dynamically: a GPU's driver, or PoCL on the CPU in CI) or CUDA (`cudarc`, the
//! driver and NVRTC loaded dynamically). Nothing is needed to build it, and a machine without a
//! device or its libraries gets [`GpuError::NoDevice`].
//!
//! Every kernel has a CPU twin elsewhere in lode (the definition); the tests compare the two on
//! the same inputs, and CI runs every kernel on PoCL.
//!
//! - [`Gpu::label_layer`]: stacked-DRG labelling of several sectors at once, one work item per
//!   sector, BLAKE3 keyed hashing of 512-byte label inputs (`kernels/label.c`).
//! - [`Gpu::poseidon`]: many Poseidon hashes over the BLS12-381 scalar field at once, one work
//!   item per hash, in Montgomery arithmetic on 64-bit limbs (`kernels/poseidon.c`): column
//!   hashes and the levels of trees C and R.
//! - [`Gpu::msm_g1`]: multi-scalar multiplication over BLS12-381 G1 (Pippenger's buckets, one work
//!   item per group of points and window; `kernels/msm.c`): the G1 sums of Groth16 proving.

mod cuda;
mod opencl;

use std::fmt;
use std::ops::ControlFlow;

/// The kernel sources common to both back ends.
const KERNELS: [&str; 3] = [
    include_str!("../kernels/label.c"),
    // Defines `lode_mac`, which `msm.c` uses too.
    include_str!("../kernels/poseidon.c"),
    include_str!("../kernels/msm.c"),
];

/// The OpenCL C program: its prelude, then the kernels.
fn opencl_source() -> String {
    format!(
        "{}\n{}",
        include_str!("../kernels/prelude_opencl.h"),
        KERNELS.join("\n")
    )
}

/// The CUDA C program: its prelude, then the kernels.
fn cuda_source() -> String {
    format!(
        "{}\n{}",
        include_str!("../kernels/prelude_cuda.h"),
        KERNELS.join("\n")
    )
}

/// The nodes one kernel launch labels (its parents uploaded with it): a progress and
/// cancellation point between launches.
pub const LABEL_CHUNK: u32 = 1 << 16;
/// Parents per node: six in the same layer, eight in the previous one.
pub const DEGREE: usize = 14;
/// Words per label.
pub const LABEL_WORDS: usize = 8;

/// How a device is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// OpenCL: any vendor's GPU driver, or PoCL on the CPU.
    OpenCl,
    /// CUDA: an NVIDIA GPU through its driver, kernels compiled by NVRTC.
    Cuda,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::OpenCl => "opencl",
            Backend::Cuda => "cuda",
        })
    }
}

/// Errors of the device layer.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No usable device of this back end (no library, no platform, no device).
    #[error("no {backend} device: {why}")]
    NoDevice {
        /// The back end asked for.
        backend: Backend,
        /// What was missing.
        why: String,
    },
    /// The device's compiler refused the kernels (its log).
    #[error("the {backend} compiler refused lode's kernels for {device}: {log}")]
    Build {
        /// The back end.
        backend: Backend,
        /// The device.
        device: String,
        /// The compiler's log.
        log: String,
    },
    /// A call to the device failed.
    #[error("{backend} call {call} failed: {detail}")]
    Api {
        /// The back end.
        backend: Backend,
        /// What was called.
        call: &'static str,
        /// The driver's error.
        detail: String,
    },
    /// The job's sizes do not fit together (a caller bug, reported rather than run).
    #[error("invalid device job: {0}")]
    Invalid(&'static str),
    /// The progress callback asked to stop.
    #[error("cancelled")]
    Cancelled,
}

/// The device layer's result.
pub type GpuResult<T> = Result<T, GpuError>;

/// One layer of several sectors to label (SPEC §4.3): what the kernel needs besides the parents.
pub struct LabelJob<'a> {
    /// The BLAKE3 key of the label tag, as eight little-endian words.
    pub key: [u32; 8],
    /// Each sector's replica id, as eight little-endian words, in the layer's sector order.
    pub replica_ids: &'a [[u32; 8]],
    /// The layer, 1-based.
    pub layer: u32,
    /// Nodes per sector: a power of two.
    pub nodes: u32,
}

impl LabelJob<'_> {
    /// The words of one whole layer of every sector.
    pub fn layer_words(&self) -> GpuResult<usize> {
        (self.nodes as usize)
            .checked_mul(self.replica_ids.len())
            .and_then(|n| n.checked_mul(LABEL_WORDS))
            .ok_or(GpuError::Invalid("a layer too large to address"))
    }

    fn check(&self, prev: Option<&[u32]>, out: &[u32]) -> GpuResult<usize> {
        if self.replica_ids.is_empty() || !self.nodes.is_power_of_two() || self.layer == 0 {
            return Err(GpuError::Invalid(
                "a label job needs sectors, a power-of-two node count and a layer from 1",
            ));
        }
        let words = self.layer_words()?;
        if out.len() != words || prev.is_some_and(|p| p.len() != words) {
            return Err(GpuError::Invalid(
                "layers must hold every node of every sector",
            ));
        }
        if self.layer > 1 && prev.is_none() {
            return Err(GpuError::Invalid(
                "a layer above 1 needs the previous layer",
            ));
        }
        Ok(words)
    }
}

/// Poseidon's parameters for one arity in the sparse form the kernel computes
/// (`lode_proofs::poseidon::SparseForm`), field elements as four little-endian 64-bit limbs in
/// Montgomery form (`x · 2^256 mod p`).
pub struct PoseidonJob<'a> {
    /// Inputs per hash (the width is one more), at most 16.
    pub arity: u32,
    /// Full rounds, half before and half after the partial ones.
    pub full_rounds: u32,
    /// Partial rounds.
    pub partial_rounds: u32,
    /// In this order: the domain tag; `full_rounds · width` full-round constants; one per
    /// partial round; the MDS matrix (`width²`, row-major); the pre-sparse matrix (`width²`);
    /// each partial round's sparse row (`width`); each partial round's sparse column
    /// (`width − 1`).
    pub constants: &'a [[u64; 4]],
}

/// The widest Poseidon the kernel holds (arity 16).
pub const MAX_POSEIDON_ARITY: u32 = 16;

impl PoseidonJob<'_> {
    /// The number of hashes in `inputs` (canonical elements, eight words each, `arity` per
    /// hash), checked against `out` (eight words per hash) and the constants' lengths.
    fn check(&self, inputs: &[u32], out: &[u32]) -> GpuResult<u32> {
        let t = self.arity as usize + 1;
        let (f, r) = (self.full_rounds as usize, self.partial_rounds as usize);
        // 1 + F t + R + 2 t² + R t + R (t − 1)
        let expected = 1usize
            .saturating_add(f.saturating_mul(t))
            .saturating_add(r.saturating_mul(2).saturating_mul(t))
            .saturating_add(t.saturating_mul(t).saturating_mul(2));
        if self.arity == 0
            || self.arity > MAX_POSEIDON_ARITY
            || self.full_rounds < 2
            || !self.full_rounds.is_multiple_of(2)
            || self.constants.len() != expected
        {
            return Err(GpuError::Invalid(
                "Poseidon parameters of another width than the arity's",
            ));
        }
        let per_hash = (self.arity as usize).saturating_mul(LABEL_WORDS);
        let hashes = inputs.len() / per_hash;
        if !inputs.len().is_multiple_of(per_hash) || out.len() != hashes.saturating_mul(LABEL_WORDS)
        {
            return Err(GpuError::Invalid(
                "Poseidon inputs of arity elements per hash and one output per hash",
            ));
        }
        u32::try_from(hashes).map_err(|_| GpuError::Invalid("more than 2^32 hashes in one call"))
    }
}

/// A G1 point as the MSM kernel returns it: extended Jacobian `(X, Y, ZZ, ZZZ)`, six limbs each
/// (little-endian, Montgomery form with `R = 2^384`); `ZZ = 0` is the identity.
pub type G1Xyzz = [u64; 24];

/// An affine G1 point as the MSM kernel reads it: `x` then `y`, six limbs each (little-endian,
/// Montgomery form with `R = 2^384`, fully reduced).
pub type G1Base = [u64; 12];

/// A scalar as the MSM kernel reads it: four canonical little-endian limbs below the group order.
pub type Scalar4 = [u64; 4];

/// The largest window of the MSM kernel, in bits.
const MSM_MAX_WINDOW: u32 = 16;
/// Scalar bits (the BLS12-381 group order is below 2^255).
const SCALAR_BITS: u32 = 255;
/// The most device memory the MSM's buckets take.
const MSM_BUCKET_BYTES: u64 = 1 << 30;
/// Bytes of one XYZZ point.
const G1_BYTES: u64 = 24 * 8;

/// How one MSM is cut up: `c`-bit windows, `windows` of them, the points in `groups` ranges; a
/// work item per group and window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MsmPlan {
    pub(crate) c: u32,
    pub(crate) windows: u32,
    pub(crate) groups: u32,
}

impl MsmPlan {
    /// The plan for `n` points (at least one) on a device that runs about `parallel` work items
    /// at once: the window that minimises one work item's additions (its share of the points in
    /// every window, plus two per bucket), within [`MSM_BUCKET_BYTES`] of buckets.
    pub(crate) fn new(n: u32, parallel: u32) -> MsmPlan {
        let n = u64::from(n.max(1));
        let parallel = u64::from(parallel.max(1));
        let mut best: Option<(u64, MsmPlan)> = None;
        for c in 1..=MSM_MAX_WINDOW {
            let windows = SCALAR_BITS.div_ceil(c);
            let groups = (parallel / u64::from(windows)).clamp(1, n);
            let buckets = (1u64 << c) - 1;
            let bytes = groups * u64::from(windows) * buckets * G1_BYTES;
            if bytes > MSM_BUCKET_BYTES && c > 1 {
                continue;
            }
            let cost = n.div_ceil(groups) + 2 * buckets;
            // One work item per group and window; more windows than the device runs at once
            // take turns.
            let rounds = (groups * u64::from(windows)).div_ceil(parallel);
            let cost = cost * rounds;
            let plan = MsmPlan {
                c,
                windows,
                groups: u32::try_from(groups).unwrap_or(u32::MAX),
            };
            if best.is_none_or(|(b, _)| cost < b) {
                best = Some((cost, plan));
            }
        }
        best.map_or(
            MsmPlan {
                c: 1,
                windows: SCALAR_BITS,
                groups: 1,
            },
            |(_, p)| p,
        )
    }

    /// Work items of the bucket launch.
    pub(crate) fn items(&self) -> usize {
        (self.windows as usize).saturating_mul(self.groups as usize)
    }

    /// Words of bucket memory.
    pub(crate) fn bucket_words(&self) -> usize {
        self.items()
            .saturating_mul((1usize << self.c) - 1)
            .saturating_mul(24)
    }
}

/// Fills `out` with the parents of nodes `v_start..v_start + out.len() / DEGREE`, [`DEGREE`]
/// per node (base parents first).
pub type ParentSource<'a> = dyn FnMut(u32, &mut [u32]) + 'a;

enum Engine {
    OpenCl(opencl::OpenCl),
    Cuda(cuda::Cuda),
}

/// A device with lode's kernels built for it.
pub struct Gpu {
    engine: Engine,
    name: String,
}

impl fmt::Debug for Gpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gpu({self})")
    }
}

/// The back end and the device's name: `opencl NVIDIA H200`.
impl fmt::Display for Gpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.backend(), self.name)
    }
}

impl Gpu {
    /// The first OpenCL device, GPUs before others (PoCL's CPU device counts: that is how CI
    /// runs every kernel), with the kernels built for it.
    ///
    /// # Errors
    /// [`GpuError::NoDevice`] without an OpenCL library, platform or device;
    /// [`GpuError::Build`] if its compiler refuses the kernels.
    pub fn opencl() -> GpuResult<Gpu> {
        let (engine, name) = opencl::OpenCl::open(false)?;
        Ok(Gpu {
            engine: Engine::OpenCl(engine),
            name,
        })
    }

    /// CUDA device 0 with the kernels compiled for it by NVRTC.
    ///
    /// # Errors
    /// [`GpuError::NoDevice`] without the CUDA driver, NVRTC or a device; [`GpuError::Build`] if
    /// NVRTC refuses the kernels.
    pub fn cuda() -> GpuResult<Gpu> {
        let (engine, name) = cuda::Cuda::open()?;
        Ok(Gpu {
            engine: Engine::Cuda(engine),
            name,
        })
    }

    /// A real GPU if there is one: CUDA first, then an OpenCL device of GPU type (a CPU's OpenCL
    /// device is slower than lode's CPU code, so it is only used when asked for by name).
    pub fn auto() -> Option<Gpu> {
        match cuda::Cuda::open() {
            Ok((engine, name)) => {
                return Some(Gpu {
                    engine: Engine::Cuda(engine),
                    name,
                });
            }
            Err(e) => tracing::debug!(error = %e, "no CUDA device"),
        }
        match opencl::OpenCl::open(true) {
            Ok((engine, name)) => Some(Gpu {
                engine: Engine::OpenCl(engine),
                name,
            }),
            Err(e) => {
                tracing::debug!(error = %e, "no OpenCL GPU");
                None
            }
        }
    }

    /// The back end this device is reached through.
    pub fn backend(&self) -> Backend {
        match self.engine {
            Engine::OpenCl(_) => Backend::OpenCl,
            Engine::Cuda(_) => Backend::Cuda,
        }
    }

    /// The device's name, as its driver gives it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Labels layer `job.layer` of every sector of `job` into `out` (sector-interleaved words:
    /// word `w` of node `v` of sector `s` at `(v · sectors + s) · 8 + w`), from `prev` (the
    /// previous layer, same layout) above layer 1, taking each launch's parents from `parents`.
    /// `progress` is called with the nodes done after each launch of [`LABEL_CHUNK`] nodes;
    /// `Break` stops with [`GpuError::Cancelled`].
    ///
    /// # Errors
    /// [`GpuError::Invalid`] for sizes that do not fit together; [`GpuError::Api`] for a failed
    /// device call; [`GpuError::Cancelled`].
    pub fn label_layer(
        &self,
        job: &LabelJob<'_>,
        parents: &mut ParentSource<'_>,
        prev: Option<&[u32]>,
        out: &mut [u32],
        progress: &mut dyn FnMut(u64) -> ControlFlow<()>,
    ) -> GpuResult<()> {
        job.check(prev, out)?;
        let prev = if job.layer > 1 { prev } else { None };
        match &self.engine {
            Engine::OpenCl(e) => e.label_layer(job, parents, prev, out, progress),
            Engine::Cuda(e) => e.label_layer(job, parents, prev, out, progress),
        }
    }
}

impl Gpu {
    /// Hashes `inputs` (canonical field elements as eight little-endian words each, `arity`
    /// per hash) into `out` (one canonical element per hash), one work item per hash.
    ///
    /// # Errors
    /// [`GpuError::Invalid`] for parameters or lengths that do not fit the arity;
    /// [`GpuError::Api`] for a failed device call.
    pub fn poseidon(
        &self,
        job: &PoseidonJob<'_>,
        inputs: &[u32],
        out: &mut [u32],
    ) -> GpuResult<()> {
        let hashes = job.check(inputs, out)?;
        if hashes == 0 {
            return Ok(());
        }
        match &self.engine {
            Engine::OpenCl(e) => e.poseidon(job, hashes, inputs, out),
            Engine::Cuda(e) => e.poseidon(job, hashes, inputs, out),
        }
    }
}

impl Gpu {
    /// `Σ scalars[i] · bases[i]` over BLS12-381 G1 (Pippenger's bucket method on the device).
    /// The result is exact for any input, equal and opposite points included; the caller checks
    /// it (on the curve, in the subgroup) before use, as it would any device output.
    ///
    /// # Errors
    /// [`GpuError::Invalid`] when the slices differ in length or hold 2^32 points or more;
    /// [`GpuError::Api`] for a failed device call (out of device memory among them).
    pub fn msm_g1(&self, bases: &[G1Base], scalars: &[Scalar4]) -> GpuResult<G1Xyzz> {
        if bases.len() != scalars.len() {
            return Err(GpuError::Invalid("one scalar per base"));
        }
        let n = u32::try_from(bases.len())
            .map_err(|_| GpuError::Invalid("more than 2^32 points in one sum"))?;
        if n == 0 {
            return Ok([0; 24]);
        }
        match &self.engine {
            Engine::OpenCl(e) => {
                let plan = MsmPlan::new(n, e.parallelism());
                e.msm_g1(plan, n, bases.as_flattened(), scalars.as_flattened())
            }
            Engine::Cuda(e) => {
                let plan = MsmPlan::new(n, cuda::MSM_PARALLEL);
                e.msm_g1(plan, n, bases.as_flattened(), scalars.as_flattened())
            }
        }
    }
}

/// Constants as one flat slice of limbs.
fn limbs(c: &[[u64; 4]]) -> Vec<u64> {
    c.iter().flatten().copied().collect()
}

/// The launches of one layer: `(v_start, count)` for each, [`LABEL_CHUNK`] nodes at most.
fn label_chunks(nodes: u32) -> impl Iterator<Item = (u32, u32)> {
    (0..nodes.div_ceil(LABEL_CHUNK)).map(move |i| {
        let start = i.saturating_mul(LABEL_CHUNK);
        (start, LABEL_CHUNK.min(nodes.saturating_sub(start)))
    })
}

#[cfg(test)]
mod tests;
