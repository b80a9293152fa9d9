//! Choosing where work runs: the CPU, or a device through `lode-gpu` (the `gpu` feature, on by
//! default). `--gpu auto|off|opencl|cuda` on the command line and `gpu` in the daemons'
//! configuration parse into [`GpuChoice`]; [`open`] turns it into a device or none, and says which.

use std::fmt;
use std::str::FromStr;

use crate::error::{SealError, SealResult};

/// A device with lode's kernels (from `lode-gpu`).
#[cfg(feature = "gpu")]
pub use lode_gpu::Gpu;

/// No device exists in a build without the `gpu` feature.
#[cfg(not(feature = "gpu"))]
#[derive(Debug)]
pub enum Gpu {}

#[cfg(not(feature = "gpu"))]
impl fmt::Display for Gpu {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

/// Which device to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuChoice {
    /// A real GPU when there is one (CUDA first, then an OpenCL GPU), the CPU otherwise.
    #[default]
    Auto,
    /// The CPU only.
    Off,
    /// The first OpenCL device, of any type (PoCL's CPU device included); an error without one.
    #[serde(rename = "opencl")]
    OpenCl,
    /// CUDA device 0; an error without one.
    Cuda,
}

impl fmt::Display for GpuChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GpuChoice::Auto => "auto",
            GpuChoice::Off => "off",
            GpuChoice::OpenCl => "opencl",
            GpuChoice::Cuda => "cuda",
        })
    }
}

impl FromStr for GpuChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(GpuChoice::Auto),
            "off" | "cpu" => Ok(GpuChoice::Off),
            "opencl" => Ok(GpuChoice::OpenCl),
            "cuda" => Ok(GpuChoice::Cuda),
            other => Err(format!(
                "unknown device {other:?}: use auto, off, opencl or cuda"
            )),
        }
    }
}

/// Opens the device `choice` names: `None` for the CPU (`off`, or `auto` without a GPU), the
/// choice logged either way.
///
/// # Errors
/// [`SealError::Device`] when `opencl` or `cuda` was asked for and cannot be had (no library,
/// no device, kernels refused, or a build without the `gpu` feature).
pub fn open(choice: GpuChoice) -> SealResult<Option<Gpu>> {
    let gpu = open_device(choice)?;
    match &gpu {
        Some(g) => tracing::info!(%choice, device = %g, "sealing and proving on a device"),
        None => tracing::info!(%choice, "sealing and proving on the CPU"),
    }
    Ok(gpu)
}

#[cfg(feature = "gpu")]
fn open_device(choice: GpuChoice) -> SealResult<Option<Gpu>> {
    let device = |e: lode_gpu::GpuError| SealError::Device(e.to_string());
    match choice {
        GpuChoice::Off => Ok(None),
        GpuChoice::Auto => Ok(Gpu::auto()),
        GpuChoice::OpenCl => Gpu::opencl().map(Some).map_err(device),
        GpuChoice::Cuda => Gpu::cuda().map(Some).map_err(device),
    }
}

#[cfg(not(feature = "gpu"))]
fn open_device(choice: GpuChoice) -> SealResult<Option<Gpu>> {
    match choice {
        GpuChoice::Off | GpuChoice::Auto => Ok(None),
        GpuChoice::OpenCl | GpuChoice::Cuda => Err(SealError::Device(format!(
            "--gpu {choice}: this lode was built without the gpu feature"
        ))),
    }
}

/// The G1 sums of Groth16 proving (Commit2, PoSt) on `gpu`: the prover's device seam. Make it
/// once per device and keep it: the prover keeps its converted parameters per device object.
#[cfg(feature = "gpu")]
pub fn prover_device(gpu: std::sync::Arc<Gpu>) -> std::sync::Arc<dyn lode_proofs::prover::G1Msm> {
    std::sync::Arc::new(DeviceMsm(gpu))
}

/// No device exists in a build without the `gpu` feature.
#[cfg(not(feature = "gpu"))]
pub fn prover_device(gpu: std::sync::Arc<Gpu>) -> std::sync::Arc<dyn lode_proofs::prover::G1Msm> {
    match *gpu {}
}

/// [`Gpu::msm_g1`] as the prover's [`lode_proofs::prover::G1Msm`].
#[cfg(feature = "gpu")]
struct DeviceMsm(std::sync::Arc<Gpu>);

#[cfg(feature = "gpu")]
impl lode_proofs::prover::G1Msm for DeviceMsm {
    fn msm_g1(&self, bases: &[[u64; 12]], scalars: &[[u64; 4]]) -> Result<[u64; 24], String> {
        self.0.msm_g1(bases, scalars).map_err(|e| e.to_string())
    }
}

/// A node's little-endian words: how the kernels take nodes.
#[cfg(feature = "gpu")]
pub(crate) fn node_words(n: &lode_proofs::node::Node) -> [u32; 8] {
    std::array::from_fn(|i| {
        let at = i.saturating_mul(4);
        n.0.get(at..at.saturating_add(4))
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_le_bytes)
    })
}

/// Poseidon's parameters for `arity` as the device takes them: the sparse form's constants in
/// Montgomery-form limbs, in the kernel's order.
#[cfg(feature = "gpu")]
struct DevicePoseidon {
    arity: u32,
    full_rounds: u32,
    partial_rounds: u32,
    constants: Vec<[u64; 4]>,
}

/// `x · 2^256 mod p` as four little-endian limbs: the device's representation of `x`.
#[cfg(feature = "gpu")]
fn montgomery(x: &bls12_381::Scalar) -> [u64; 4] {
    // 2^256 mod p, from 2^192 · 2^64.
    let r = bls12_381::Scalar::from_raw([0, 0, 0, 1]) * bls12_381::Scalar::from_raw([0, 1, 0, 0]);
    let bytes = (x * r).to_bytes();
    std::array::from_fn(|i| {
        let at = i.saturating_mul(8);
        bytes
            .get(at..at.saturating_add(8))
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_le_bytes)
    })
}

#[cfg(feature = "gpu")]
fn device_poseidon(arity: usize) -> SealResult<&'static DevicePoseidon> {
    use lode_proofs::poseidon::SUPPORTED_ARITIES;
    use std::sync::OnceLock;
    static CACHE: [OnceLock<DevicePoseidon>; SUPPORTED_ARITIES.len()] =
        [const { OnceLock::new() }; SUPPORTED_ARITIES.len()];
    let bad = || SealError::Device(format!("no Poseidon parameters for arity {arity}"));
    let slot = SUPPORTED_ARITIES
        .iter()
        .position(|&a| a == arity)
        .and_then(|i| CACHE.get(i))
        .ok_or_else(bad)?;
    if let Some(c) = slot.get() {
        return Ok(c);
    }
    let f = lode_proofs::poseidon::constants(arity)
        .map_err(|_| bad())?
        .sparse_form();
    let constants = std::iter::once(&f.tag)
        .chain(&f.full)
        .chain(&f.partial)
        .chain(&f.mds)
        .chain(&f.pre_sparse)
        .chain(&f.rows)
        .chain(&f.cols)
        .map(montgomery)
        .collect();
    let built = DevicePoseidon {
        arity: u32::try_from(arity).map_err(|_| bad())?,
        full_rounds: u32::try_from(f.full_rounds).map_err(|_| bad())?,
        partial_rounds: u32::try_from(f.partial_rounds).map_err(|_| bad())?,
        constants,
    };
    Ok(slot.get_or_init(|| built))
}

/// `out[i] = Poseidon(inputs[i·arity .. (i+1)·arity])` on `gpu`, exactly
/// `lode_proofs::poseidon::hash` of each group (inputs are canonical field elements, as every
/// label and tree node is).
///
/// # Errors
/// [`SealError::Device`] for an arity without parameters, lengths that do not fit it, or a
/// failed device call.
#[cfg(feature = "gpu")]
pub fn poseidon_many(
    gpu: &Gpu,
    arity: usize,
    inputs: &[lode_proofs::node::Node],
    out: &mut [lode_proofs::node::Node],
) -> SealResult<()> {
    let p = device_poseidon(arity)?;
    let mut result = vec![0u32; out.len().saturating_mul(8)];
    let job = lode_gpu::PoseidonJob {
        arity: p.arity,
        full_rounds: p.full_rounds,
        partial_rounds: p.partial_rounds,
        constants: &p.constants,
    };
    let words: Vec<u32> = inputs.iter().flat_map(node_words).collect();
    gpu.poseidon(&job, &words, &mut result)
        .map_err(|e| SealError::Device(e.to_string()))?;
    for (o, w) in out.iter_mut().zip(result.chunks_exact(8)) {
        for (b, word) in o.0.chunks_exact_mut(4).zip(w) {
            b.copy_from_slice(&word.to_le_bytes());
        }
    }
    Ok(())
}

/// Hashes per device call when a level or the columns are hashed (bounds device memory).
#[cfg(feature = "gpu")]
const HASHES_PER_CALL: usize = 1 << 18;

/// A tree level hasher on `gpu` (for `DiskTree::build_over_file_with`): Poseidon of each group
/// of `arity` children, in calls of [`HASHES_PER_CALL`] parents.
#[cfg(feature = "gpu")]
pub fn level_hasher(
    gpu: &Gpu,
) -> impl Fn(
    usize,
    &[lode_proofs::node::Node],
    &mut [lode_proofs::node::Node],
) -> Result<(), lode_proofs::merkle::TreeError>
+ Sync
+ '_ {
    move |arity, children, parents| {
        if children.len() != parents.len().saturating_mul(arity) {
            return Err(lode_proofs::merkle::TreeError::LeafCount {
                expected: parents.len().saturating_mul(arity) as u64,
                got: children.len() as u64,
            });
        }
        for (p, c) in parents
            .chunks_mut(HASHES_PER_CALL)
            .zip(children.chunks(HASHES_PER_CALL.saturating_mul(arity)))
        {
            poseidon_many(gpu, arity, c, p)
                .map_err(|e| lode_proofs::merkle::TreeError::LevelHasher(e.to_string()))?;
        }
        Ok(())
    }
}

/// Column hashes on `gpu`: `cols[v] = Poseidon(layers[0][v], …, layers[L-1][v])`, as
/// `lode_proofs::sdr::column_hash` computes each.
#[cfg(feature = "gpu")]
pub fn columns(
    gpu: &Gpu,
    layers: &[&[lode_proofs::node::Node]],
    cols: &mut [lode_proofs::node::Node],
) -> SealResult<()> {
    if layers.iter().any(|l| l.len() != cols.len()) {
        return Err(SealError::Inconsistent(
            "every layer has one label per column",
        ));
    }
    let mut inputs = Vec::with_capacity(HASHES_PER_CALL.saturating_mul(layers.len()));
    for (chunk, out) in cols.chunks_mut(HASHES_PER_CALL).enumerate() {
        let start = chunk.saturating_mul(HASHES_PER_CALL);
        inputs.clear();
        for v in start..start.saturating_add(out.len()) {
            inputs.extend(layers.iter().filter_map(|l| l.get(v)));
        }
        poseidon_many(gpu, layers.len(), &inputs, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn choices_parse_and_print_the_same_words() {
        for c in [
            GpuChoice::Auto,
            GpuChoice::Off,
            GpuChoice::OpenCl,
            GpuChoice::Cuda,
        ] {
            assert_eq!(c.to_string().parse::<GpuChoice>().unwrap(), c);
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{c}\""));
        }
        assert!(
            "gpu"
                .parse::<GpuChoice>()
                .unwrap_err()
                .contains("auto, off")
        );
        assert_eq!(open(GpuChoice::Off).unwrap().map(|_| ()), None);
    }

    #[cfg(feature = "gpu")]
    #[test]
    fn device_poseidon_equals_the_cpu_definition() {
        use lode_proofs::node::{Node, trunc254};
        let gpu = match open(GpuChoice::OpenCl) {
            Ok(Some(g)) => g,
            r if std::env::var_os("LODE_REQUIRE_OPENCL").is_some() => {
                panic!("LODE_REQUIRE_OPENCL is set but there is no OpenCL device: {r:?}")
            }
            r => return eprintln!("skipped: no OpenCL device: {r:?}"),
        };
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut node = || {
            let mut b = [0u8; 32];
            for x in &mut b {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *x = (seed >> 24) as u8;
            }
            trunc254(b)
        };
        for (arity, hashes) in [(2usize, 37usize), (8, 9), (11, 5), (16, 2)] {
            let mut inputs: Vec<Node> = (0..arity * hashes).map(|_| node()).collect();
            // Zeros and the largest labels too.
            inputs[0] = Node::default();
            inputs[1] = trunc254([0xFF; 32]);
            let mut got = vec![Node::default(); hashes];
            poseidon_many(&gpu, arity, &inputs, &mut got).unwrap();
            for (i, g) in got.iter().enumerate() {
                let frs: Vec<_> = inputs[i * arity..(i + 1) * arity]
                    .iter()
                    .map(|n| n.to_fr().unwrap())
                    .collect();
                let want = Node::from_fr(&lode_proofs::poseidon::hash(&frs).unwrap());
                assert_eq!(*g, want, "arity {arity} hash {i}");
            }
        }
        let mut one = [Node::default(); 1];
        assert!(poseidon_many(&gpu, 3, &[Node::default(); 3], &mut one).is_err());
        assert!(poseidon_many(&gpu, 2, &[Node::default(); 3], &mut one).is_err());
    }

    /// The device's G1 sum against the CPU's, on random points and on the inputs that take the
    /// slow paths: equal and opposite points, zero and largest scalars, one point.
    #[cfg(feature = "gpu")]
    #[test]
    fn device_msm_equals_the_cpu() {
        use bls12_381::{G1Affine, G1Projective, Scalar};
        use ff::Field as _;
        use group::Curve as _;
        use lode_proofs::prover::msm_g1;
        use rand_chacha::ChaCha20Rng;
        use rand_core::SeedableRng as _;
        let gpu = match open(GpuChoice::OpenCl) {
            Ok(Some(g)) => std::sync::Arc::new(g),
            r if std::env::var_os("LODE_REQUIRE_OPENCL").is_some() => {
                panic!("LODE_REQUIRE_OPENCL is set but there is no OpenCL device: {r:?}")
            }
            r => return eprintln!("skipped: no OpenCL device: {r:?}"),
        };
        let device = prover_device(gpu);
        let mut rng = ChaCha20Rng::from_seed([9; 32]);
        let point = |rng: &mut ChaCha20Rng| -> G1Affine {
            (G1Projective::generator() * Scalar::random(&mut *rng)).to_affine()
        };
        let mut cases: Vec<(Vec<G1Affine>, Vec<Scalar>)> = Vec::new();
        for n in [1usize, 2, 7, 300, 3000] {
            let bases = (0..n).map(|_| point(&mut rng)).collect();
            let scalars = (0..n).map(|_| Scalar::random(&mut rng)).collect();
            cases.push((bases, scalars));
        }
        let p = point(&mut rng);
        let q = point(&mut rng);
        let minus_one = -Scalar::ONE;
        // P + P (one bucket doubles), P - P, zero scalars, the largest scalar, repeated points.
        cases.push((vec![p, p], vec![Scalar::from(5u64), Scalar::from(5u64)]));
        cases.push((vec![p, -p], vec![Scalar::from(3u64), Scalar::from(3u64)]));
        cases.push((
            vec![p, q, p],
            vec![Scalar::ZERO, Scalar::ZERO, Scalar::ZERO],
        ));
        cases.push((vec![p, q], vec![minus_one, Scalar::ONE]));
        cases.push((vec![q; 500], vec![minus_one; 500]));
        let mixed: Vec<G1Affine> = (0..400).map(|i| if i % 2 == 0 { p } else { -p }).collect();
        cases.push((
            mixed,
            (0..400).map(|i| Scalar::from(i as u64 % 7)).collect(),
        ));
        for (k, (bases, scalars)) in cases.iter().enumerate() {
            let want = msm_g1(bases, scalars, None).unwrap();
            let naive: G1Projective = bases
                .iter()
                .zip(scalars)
                .map(|(b, s)| G1Projective::from(b) * s)
                .sum();
            assert_eq!(want, naive, "case {k}: the CPU sum");
            let got = msm_g1(bases, scalars, Some(device.as_ref())).unwrap();
            assert_eq!(got, want, "case {k}: {} points", bases.len());
        }
    }
}
