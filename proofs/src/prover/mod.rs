//! A fast Groth16 prover for BLS12-381: the proofs `groth16::create_proof` makes, from the same
//! `groth16::Parameters`, in the same `groth16::Proof` format, computed in parallel with lode's own
//! arithmetic.
//!
//! Given the same `r` and `s` the proof is the same, byte for byte ([`create_proof`] against the
//! reference in the tests); [`create_random_proof`] draws `r` and `s` from the RNG in the
//! reference's order. What differs is how the group elements are computed:
//!
//! - the witness is synthesised into [`synth::Assignment`] (the reference's bookkeeping: values,
//!   constraint evaluations, query densities);
//! - `h = (A·B − C) / Z` comes from [`fft::Domain::quotient`], seven radix-2 transforms without
//!   permutation passes;
//! - the five multi-exponentiations of the reference become three multi-scalar multiplications
//!   ([`msm`]: batched affine Pippenger): `A` in G1, `B` in G2, and one G1 sum for everything `C`
//!   needs that is not already in `A` — the `B` query in G1 with its scalars multiplied by `r`, the
//!   `L` query and the `H` query. `A` and `B` run while the transforms compute `h`.
//!
//! A [`G1Msm`] device (a GPU, through `lode-gpu`; [`ProvingKey::with_device`]) takes the two G1
//! sums, `A` and `C`; `B` in G2 stays on the CPU. The device's results are checked (coordinates
//! reduced and consistent, the point on the curve and in the subgroup) before use, and the proof is
//! the same as the CPU's.
//!
//! The parameters' points are converted once into the prover's representation ([`ProvingKey`]).
//! [`proving_key`] keeps converted keys for parameters that are still alive (it holds weak
//! references to their point vectors, which are immutable while shared), so provers that keep their
//! parameters in memory pay the conversion once.
//!
//! Errors are those of the reference for the same defects: synthesis errors, `UnexpectedIdentity`
//! for an identity `δ` (or, here, any identity point in a query), an I/O error of kind
//! `UnexpectedEof` when a query has fewer points than the witness needs,
//! `PolynomialDegreeTooLarge` for a circuit beyond the field's two-adicity — and an I/O error of kind
//! `InvalidInput` where the reference would panic (a constraint naming a variable that was never
//! allocated).

mod curve;
mod fft;
mod field;
#[cfg(target_arch = "x86_64")]
pub(crate) mod fr8;
#[cfg(target_arch = "x86_64")]
mod ifma;
#[cfg(target_arch = "x86_64")]
mod lanes;
mod msm;
pub(crate) mod synth;

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use bellman::{Circuit, SynthesisError};
use bls12_381::{Bls12, G1Affine, G1Projective, G2Affine, G2Projective, Scalar};
use ff::{Field as _, PrimeField};
use groth16::{Parameters, Proof};
use group::Curve as _;
use rand_core::Rng;
use rayon::prelude::*;

use crate::poseidon::field::Fe;
use curve::{Affine, G1, G2, Group};
use field::{Fp, Fp2};
use msm::{Limbs, Portable, msm};
use synth::{Assignment, Structure, Witness};

/// The parameters' query points in the prover's representation, and the evaluation domain of the
/// `H` query.
pub struct ProvingKey {
    /// The CPU's bases: all three queries, or only `B` in G2 when `device` takes the G1 sums.
    bases: Bases,
    device: Option<DeviceG1>,
    /// Points of the `A` query.
    a_len: usize,
    /// Points of the `B` query in G1 and of `L` (the first two parts of the `C` bases).
    b_g1_len: usize,
    l_len: usize,
    /// All points of the `C` bases.
    c_len: usize,
    /// The domain the `H` query is made for, built on first use.
    domain: OnceLock<Arc<fft::Domain>>,
    /// The circuit's constraints, recorded by the first [`ProvingKey::create_proof_with`].
    structure: OnceLock<Structure>,
}

/// The query points for one arithmetic backend: the `A` query, the `C` bases (the `B` query in G1,
/// then `L`, then `H`: one multiplication) and the `B` query in G2.
enum Bases {
    Portable {
        a: Vec<Affine<Fp>>,
        c: Vec<Affine<Fp>>,
        b_g2: Vec<Affine<Fp2>>,
    },
    #[cfg(target_arch = "x86_64")]
    Ifma {
        g1: ifma::IfmaG1,
        g2: ifma::IfmaG2,
        a: Vec<ifma::BaseG1>,
        c: Vec<ifma::BaseG1>,
        b_g2: Vec<ifma::BaseG2>,
    },
}

/// A device that computes multi-scalar multiplications over G1 for the prover: the seam through
/// which a GPU (`lode-gpu`, wired by `lode-sealing`) takes the `A` and `C` sums.
pub trait G1Msm: Send + Sync {
    /// `Σ scalars[i] · bases[i]` (equal lengths). Bases are affine points, `x` then `y`, each six
    /// little-endian 64-bit limbs in Montgomery form (`x · 2^384 mod p`, fully reduced); scalars
    /// are four canonical little-endian limbs. The sum comes back as extended Jacobian
    /// coordinates `(X, Y, ZZ, ZZZ)` in the same form (`x = X / ZZ`, `y = Y / ZZZ`; `ZZ = 0` for
    /// the identity).
    ///
    /// # Errors
    /// Whatever stopped the device, as text for the prover's error.
    fn msm_g1(&self, bases: &[[u64; 12]], scalars: &[Limbs]) -> Result<[u64; 24], String>;
}

/// The G1 queries in the device's representation.
struct DeviceG1 {
    msm: Arc<dyn G1Msm>,
    a: DeviceBases,
    c: DeviceBases,
}

/// A base in the representation [`G1Msm`] takes.
fn device_base(p: &Affine<Fp>) -> [u64; 12] {
    let mut out = [0u64; 12];
    let (x, y) = out.split_at_mut(6);
    x.copy_from_slice(&p.x.montgomery());
    y.copy_from_slice(&p.y.montgomery());
    out
}

/// The device's sum as a `bls12_381` point, `None` when it is not a valid point of G1.
fn device_point(limbs: &[u64; 24]) -> Option<G1Projective> {
    let fp = |k: usize| -> Option<Fp> {
        let mut l = [0u64; 6];
        l.copy_from_slice(limbs.get(k * 6..k * 6 + 6)?);
        Fp::from_montgomery(l)
    };
    let p = curve::Xyzz::from_untrusted(fp(0)?, fp(1)?, fp(2)?, fp(3)?)?;
    G1::export(&p)
}

/// `Σ scalars[i] · bases[i]` on `msm` (equal lengths), its result checked.
fn device_sum(
    msm: &dyn G1Msm,
    bases: &[[u64; 12]],
    scalars: &[Limbs],
) -> Result<G1Projective, SynthesisError> {
    let limbs = msm.msm_g1(bases, scalars).map_err(|e| {
        SynthesisError::IoError(std::io::Error::other(format!(
            "the device's multi-scalar multiplication failed: {e}"
        )))
    })?;
    device_point(&limbs).ok_or_else(|| {
        SynthesisError::IoError(std::io::Error::other(
            "the device's multi-scalar multiplication returned an invalid point; prove on the CPU (--gpu off) and report the device",
        ))
    })
}

/// A point the prover computed that is off the curve or outside the subgroup: a bug here, not a
/// property of the input, reported rather than turned into a bad proof.
fn invalid_point() -> SynthesisError {
    SynthesisError::IoError(std::io::Error::other(
        "the prover computed an invalid curve point",
    ))
}

impl DeviceG1 {
    /// `Σ s_i P_i` over the first `scalars.len()` points of `bases` on the device, checked.
    fn sum(&self, bases: &[[u64; 12]], scalars: &[Limbs]) -> Result<G1Projective, SynthesisError> {
        let bases = bases.get(..scalars.len()).ok_or_else(|| eof("device"))?;
        device_sum(self.msm.as_ref(), bases, scalars)
    }
}

/// `Σ scalars[i] · bases[i]` over G1, on `device` when given, else on the CPU (the fastest
/// arithmetic this processor has): for comparing a device with the CPU on any input.
///
/// # Errors
/// `UnexpectedIdentity` for a base at infinity; a length mismatch or the device's failure as an
/// I/O error.
pub fn msm_g1(
    bases: &[G1Affine],
    scalars: &[Scalar],
    device: Option<&dyn G1Msm>,
) -> Result<G1Projective, SynthesisError> {
    if bases.len() != scalars.len() {
        return Err(eof("the sum's"));
    }
    let limbs: Vec<Limbs> = scalars.iter().map(scalar_limbs).collect();
    let affine = bases
        .iter()
        .map(G1::import)
        .collect::<Option<Vec<_>>>()
        .ok_or(SynthesisError::UnexpectedIdentity)?;
    match device {
        Some(d) => {
            let ours: Vec<[u64; 12]> = affine.iter().map(device_base).collect();
            device_sum(d, &ours, &limbs)
        }
        None => {
            #[cfg(target_arch = "x86_64")]
            if let Some(g1) = ifma::IfmaG1::new() {
                let b: Vec<_> = affine.iter().map(|p| g1.base(p)).collect();
                return G1::export(&msm(&g1, &b, &limbs)).ok_or_else(invalid_point);
            }
            G1::export(&msm(&Portable::new(), &affine, &limbs)).ok_or_else(invalid_point)
        }
    }
}

/// A scalar's canonical little-endian limbs.
fn scalar_limbs(s: &Scalar) -> Limbs {
    let b = s.to_repr();
    let mut out = [0u64; 4];
    for (l, c) in out.iter_mut().zip(b.chunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(c);
        *l = u64::from_le_bytes(word);
    }
    out
}

/// The `A` query, the `C` bases and the `B` query in G2 of `params`, each point converted by `g1`
/// or `g2` (in parallel); `UnexpectedIdentity` if a conversion fails (a point at infinity).
type Converted<T1, T2> = (Vec<T1>, Vec<T1>, Vec<T2>);

fn convert<T1: Send, T2: Send>(
    params: &Parameters<Bls12>,
    g1: impl Fn(&G1Affine) -> Option<T1> + Sync,
    g2: impl Fn(&G2Affine) -> Option<T2> + Sync,
) -> Result<Converted<T1, T2>, SynthesisError> {
    let all = |v: &[G1Affine]| -> Result<Vec<T1>, SynthesisError> {
        v.par_iter()
            .with_min_len(1 << 10)
            .map(&g1)
            .collect::<Option<Vec<T1>>>()
            .ok_or(SynthesisError::UnexpectedIdentity)
    };
    let (a, (c, b_g2)) = rayon::join(
        || all(&params.a),
        || {
            rayon::join(
                || -> Result<Vec<T1>, SynthesisError> {
                    let mut c = all(&params.b_g1)?;
                    c.extend(all(&params.l)?);
                    c.extend(all(&params.h)?);
                    Ok(c)
                },
                || {
                    params
                        .b_g2
                        .par_iter()
                        .with_min_len(1 << 10)
                        .map(&g2)
                        .collect::<Option<Vec<T2>>>()
                        .ok_or(SynthesisError::UnexpectedIdentity)
                },
            )
        },
    );
    Ok((a?, c?, b_g2?))
}

/// The `B` query in G2 of `params`, each point converted by `g2` (in parallel).
fn convert_g2<T2: Send>(
    params: &Parameters<Bls12>,
    g2: impl Fn(&G2Affine) -> Option<T2> + Sync,
) -> Result<Vec<T2>, SynthesisError> {
    params
        .b_g2
        .par_iter()
        .with_min_len(1 << 10)
        .map(&g2)
        .collect::<Option<Vec<T2>>>()
        .ok_or(SynthesisError::UnexpectedIdentity)
}

/// A device's bases: affine points as [`G1Msm`] takes them.
type DeviceBases = Vec<[u64; 12]>;

/// The G1 queries of `params` for a device: the `A` query and the `C` bases.
fn convert_device(
    params: &Parameters<Bls12>,
) -> Result<(DeviceBases, DeviceBases), SynthesisError> {
    let all = |v: &[G1Affine]| -> Result<DeviceBases, SynthesisError> {
        v.par_iter()
            .with_min_len(1 << 10)
            .map(|p| G1::import(p).map(|p| device_base(&p)))
            .collect::<Option<Vec<_>>>()
            .ok_or(SynthesisError::UnexpectedIdentity)
    };
    let a = all(&params.a)?;
    let mut c = all(&params.b_g1)?;
    c.extend(all(&params.l)?);
    c.extend(all(&params.h)?);
    Ok((a, c))
}

impl Bases {
    /// The fastest arithmetic's bases for `B` in G2 alone (the G1 sums are a device's).
    fn best_g2_only(params: &Parameters<Bls12>) -> Result<Self, SynthesisError> {
        #[cfg(target_arch = "x86_64")]
        if let (Some(g1), Some(g2)) = (ifma::IfmaG1::new(), ifma::IfmaG2::new()) {
            let b_g2 = convert_g2(params, |p| G2::import(p).map(|p| g2.base(&p)))?;
            return Ok(Bases::Ifma {
                g1,
                g2,
                a: Vec::new(),
                c: Vec::new(),
                b_g2,
            });
        }
        Ok(Bases::Portable {
            a: Vec::new(),
            c: Vec::new(),
            b_g2: convert_g2(params, G2::import)?,
        })
    }

    /// The portable arithmetic's bases.
    fn portable(params: &Parameters<Bls12>) -> Result<Self, SynthesisError> {
        let (a, c, b_g2) = convert(params, G1::import, G2::import)?;
        Ok(Bases::Portable { a, c, b_g2 })
    }

    /// The fastest arithmetic's bases: AVX-512 IFMA where the processor has it.
    fn best(params: &Parameters<Bls12>) -> Result<Self, SynthesisError> {
        #[cfg(target_arch = "x86_64")]
        if let (Some(g1), Some(g2)) = (ifma::IfmaG1::new(), ifma::IfmaG2::new()) {
            let (a, c, b_g2) = convert(
                params,
                |p| G1::import(p).map(|p| g1.base(&p)),
                |p| G2::import(p).map(|p| g2.base(&p)),
            )?;
            return Ok(Bases::Ifma { g1, g2, a, c, b_g2 });
        }
        Self::portable(params)
    }

    fn b_g2_len(&self) -> usize {
        match self {
            Bases::Portable { b_g2, .. } => b_g2.len(),
            #[cfg(target_arch = "x86_64")]
            Bases::Ifma { b_g2, .. } => b_g2.len(),
        }
    }

    fn msm_a(&self, s: &[Limbs]) -> Option<G1Projective> {
        match self {
            Bases::Portable { a, .. } => G1::export(&msm(&Portable::new(), a, s)),
            #[cfg(target_arch = "x86_64")]
            Bases::Ifma { g1, a, .. } => G1::export(&msm(g1, a, s)),
        }
    }

    fn msm_c(&self, s: &[Limbs]) -> Option<G1Projective> {
        match self {
            Bases::Portable { c, .. } => G1::export(&msm(&Portable::new(), c, s)),
            #[cfg(target_arch = "x86_64")]
            Bases::Ifma { g1, c, .. } => G1::export(&msm(g1, c, s)),
        }
    }

    fn msm_b_g2(&self, s: &[Limbs]) -> Option<G2Projective> {
        match self {
            Bases::Portable { b_g2, .. } => G2::export(&msm(&Portable::new(), b_g2, s)),
            #[cfg(target_arch = "x86_64")]
            Bases::Ifma { g2, b_g2, .. } => G2::export(&msm(g2, b_g2, s)),
        }
    }
}

fn eof(what: &str) -> SynthesisError {
    SynthesisError::IoError(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        format!("expected more bases from source ({what} query)"),
    ))
}

impl ProvingKey {
    /// Converts the query points of `params` (in parallel), for the fastest arithmetic this
    /// processor has. `UnexpectedIdentity` when a query holds the point at infinity (parameters
    /// read from a file never do: `groth16` refuses them).
    pub fn new(params: &Parameters<Bls12>) -> Result<Self, SynthesisError> {
        Ok(Self::with_bases(params, Bases::best(params)?, None))
    }

    /// [`ProvingKey::new`] with the G1 sums (`A` and `C`) on `device`: the same proofs, the G1
    /// queries kept in the device's representation (`B` in G2 stays on the CPU).
    pub fn with_device(
        params: &Parameters<Bls12>,
        device: Arc<dyn G1Msm>,
    ) -> Result<Self, SynthesisError> {
        let (bases, g1) = rayon::join(|| Bases::best_g2_only(params), || convert_device(params));
        let (a, c) = g1?;
        Ok(Self::with_bases(
            params,
            bases?,
            Some(DeviceG1 { msm: device, a, c }),
        ))
    }

    /// Whether the G1 sums run on a device.
    pub fn on_device(&self) -> bool {
        self.device.is_some()
    }

    /// [`ProvingKey::new`] with the portable 64-bit arithmetic even where AVX-512 IFMA is present
    /// (the same proofs, more slowly; for comparisons).
    pub fn portable(params: &Parameters<Bls12>) -> Result<Self, SynthesisError> {
        Ok(Self::with_bases(params, Bases::portable(params)?, None))
    }

    fn with_bases(params: &Parameters<Bls12>, bases: Bases, device: Option<DeviceG1>) -> Self {
        ProvingKey {
            bases,
            device,
            a_len: params.a.len(),
            b_g1_len: params.b_g1.len(),
            l_len: params.l.len(),
            c_len: params.b_g1.len() + params.l.len() + params.h.len(),
            domain: OnceLock::new(),
            structure: OnceLock::new(),
        }
    }

    /// Whether this key uses the AVX-512 IFMA arithmetic.
    pub fn is_vectorized(&self) -> bool {
        !matches!(self.bases, Bases::Portable { .. })
    }

    fn h_len(&self) -> usize {
        self.c_len - self.b_g1_len - self.l_len
    }

    /// The domain of a circuit with `n` constraints (the dummy ones included): the key's own when
    /// its `H` query fits it (`m − 1` points), else one built for this proof.
    fn domain(&self, n: usize) -> Result<Arc<fft::Domain>, SynthesisError> {
        let d = fft::Domain::size_for(n)?;
        if d == self.h_len() + 1 {
            if let Some(cached) = self.domain.get() {
                return Ok(cached.clone());
            }
            let built = Arc::new(fft::Domain::new(n)?);
            return Ok(self.domain.get_or_init(|| built).clone());
        }
        Ok(Arc::new(fft::Domain::new(n)?))
    }

    /// A proof of `circuit` with blinding `r` and `s`, the same as `groth16::create_proof` makes with
    /// the parameters this key was made from (whose verifying key `vk` must be).
    pub fn create_proof<C: Circuit<Scalar>>(
        &self,
        vk: &groth16::VerifyingKey<Bls12>,
        circuit: C,
        r: Scalar,
        s: Scalar,
    ) -> Result<Proof<Bls12>, SynthesisError> {
        self.create_proof_timed(vk, circuit, r, s).map(|(p, _)| p)
    }

    /// [`ProvingKey::create_proof`], with the time each stage took.
    pub fn create_proof_timed<C: Circuit<Scalar>>(
        &self,
        vk: &groth16::VerifyingKey<Bls12>,
        circuit: C,
        r: Scalar,
        s: Scalar,
    ) -> Result<(Proof<Bls12>, Timings), SynthesisError> {
        let start = Instant::now();
        let w = Assignment::synthesize(circuit)?;
        self.prove(vk, &Synthesized::Recorded(&w), r, s, start)
    }

    /// [`ProvingKey::create_proof`] for a circuit that `make` builds (as often as needed: the same
    /// circuit each time). The first proof records the circuit's constraints in this key; later
    /// ones synthesise only the witness and evaluate the recorded constraints, which is faster.
    /// A circuit whose numbers of variables or constraints differ from the recorded ones is
    /// synthesised in full, as by [`ProvingKey::create_proof`].
    pub fn create_proof_with<C: Circuit<Scalar>>(
        &self,
        vk: &groth16::VerifyingKey<Bls12>,
        make: impl Fn() -> C,
        r: Scalar,
        s: Scalar,
    ) -> Result<(Proof<Bls12>, Timings), SynthesisError> {
        let start = Instant::now();
        if let Some(st) = self.structure.get() {
            let w = Witness::synthesize(make())?;
            if st.fits(&w) {
                return self.prove(vk, &Synthesized::Cached(st, &w), r, s, start);
            }
        }
        let w = Assignment::synthesize(make())?;
        let (proof, structure) = rayon::join(
            || self.prove(vk, &Synthesized::Recorded(&w), r, s, start),
            || match self.structure.get() {
                None => Structure::new(&w),
                Some(_) => None,
            },
        );
        if let Some(st) = structure {
            let _ = self.structure.set(st);
        }
        proof
    }

    /// [`ProvingKey::create_proof_with`] where `witness` gives the circuit's witness without
    /// synthesising it through `make` (a faster equivalent the circuit provides), used once the
    /// constraints are recorded.
    pub(crate) fn create_proof_parallel<C: Circuit<Scalar>>(
        &self,
        vk: &groth16::VerifyingKey<Bls12>,
        make: impl Fn() -> C,
        witness: impl FnOnce() -> Result<Witness, SynthesisError>,
        r: Scalar,
        s: Scalar,
    ) -> Result<(Proof<Bls12>, Timings), SynthesisError> {
        let start = Instant::now();
        if let Some(st) = self.structure.get() {
            let w = witness()?;
            if st.fits(&w) {
                return self.prove(vk, &Synthesized::Cached(st, &w), r, s, start);
            }
        }
        self.create_proof_with(vk, make, r, s)
    }

    /// The proof from a synthesised witness.
    fn prove(
        &self,
        vk: &groth16::VerifyingKey<Bls12>,
        w: &Synthesized<'_>,
        r: Scalar,
        s: Scalar,
        start: Instant,
    ) -> Result<(Proof<Bls12>, Timings), SynthesisError> {
        let mut t = Timings {
            synthesis: start.elapsed(),
            ..Timings::default()
        };
        let (inputs, aux) = w.assignment();
        let (a_aux, b_inputs, b_aux) = w.densities();
        let domain = self.domain(w.num_constraints())?;
        let m = domain.size();

        // Scalars of the three sums, aligned with the bases (zeros where a query has spare points).
        let dense = |values: &[Scalar], density: &[bool]| -> Vec<Scalar> {
            values
                .iter()
                .zip(density)
                .filter(|(_, d)| **d)
                .map(|(v, _)| *v)
                .collect()
        };
        let a_scalars: Vec<Scalar> = inputs.iter().copied().chain(dense(aux, a_aux)).collect();
        let b_scalars: Vec<Scalar> = dense(inputs, b_inputs)
            .into_iter()
            .chain(dense(aux, b_aux))
            .collect();
        if self.a_len < a_scalars.len() {
            return Err(eof("A"));
        }
        if self.b_g1_len < b_scalars.len() {
            return Err(eof("B in G1"));
        }
        if self.bases.b_g2_len() < b_scalars.len() {
            return Err(eof("B in G2"));
        }
        if self.l_len < aux.len() {
            return Err(eof("L"));
        }
        if self.h_len() < m - 1 {
            return Err(eof("H"));
        }
        if bool::from(vk.delta_g1.is_identity() | vk.delta_g2.is_identity()) {
            return Err(SynthesisError::UnexpectedIdentity);
        }

        let to_limbs = |v: &[Scalar], scale: Option<Scalar>| -> Vec<Limbs> {
            v.par_iter()
                .with_min_len(1 << 10)
                .map(|x| scalar_limbs(&scale.map_or(*x, |k| *x * k)))
                .collect()
        };
        let timed = |f: &dyn Fn() -> Result<G1Projective, SynthesisError>| {
            let t = Instant::now();
            (f(), t.elapsed())
        };
        let msm_a = |s: &[Limbs]| match &self.device {
            Some(d) => d.sum(&d.a, s),
            None => self.bases.msm_a(s).ok_or_else(invalid_point),
        };
        let msm_c = |s: &[Limbs]| match &self.device {
            Some(d) => d.sum(&d.c, s),
            None => self.bases.msm_c(s).ok_or_else(invalid_point),
        };
        let parallel = Instant::now();
        let ((c_sum, t_h, t_c), ((a_sum, t_a), (b_sum, t_b))) = rayon::join(
            || {
                // h, then the sum over B (times r), L and H.
                let t0 = Instant::now();
                let (fa, fb, fc) = w.evaluate();
                let h = domain.quotient(fa, fb, fc);
                let mut scalars = Vec::with_capacity(self.c_len);
                scalars.extend(to_limbs(&b_scalars, Some(r)));
                scalars.resize(self.b_g1_len, [0; 4]);
                scalars.extend(to_limbs(aux, None));
                scalars.resize(self.b_g1_len + self.l_len, [0; 4]);
                scalars.par_extend(h.par_iter().with_min_len(1 << 10).map(|x| {
                    let b = x.to_repr();
                    let mut out = [0u64; 4];
                    for (l, c) in out.iter_mut().zip(b.chunks_exact(8)) {
                        let mut word = [0u8; 8];
                        word.copy_from_slice(c);
                        *l = u64::from_le_bytes(word);
                    }
                    out
                }));
                let t_h = t0.elapsed();
                let (c, t_c) = timed(&|| msm_c(&scalars));
                (c, t_h, t_c)
            },
            || {
                rayon::join(
                    || timed(&|| msm_a(&to_limbs(&a_scalars, None))),
                    || {
                        let t = Instant::now();
                        let b = self.bases.msm_b_g2(&to_limbs(&b_scalars, None));
                        (b, t.elapsed())
                    },
                )
            },
        );
        t.parallel = parallel.elapsed();
        (t.quotient, t.msm_a, t.msm_b_g2, t.msm_c) = (t_h, t_a, t_b, t_c);
        let (a_sum, b_sum, c_sum) = (a_sum?, b_sum.ok_or_else(invalid_point)?, c_sum?);

        let g_a: G1Projective = vk.delta_g1 * r + vk.alpha_g1 + a_sum;
        let g_b: G2Projective = vk.delta_g2 * s + vk.beta_g2 + b_sum;
        let g_c: G1Projective =
            vk.delta_g1 * (r * s) + vk.alpha_g1 * s + vk.beta_g1 * r + a_sum * s + c_sum;
        let proof = Proof {
            a: g_a.to_affine(),
            b: g_b.to_affine(),
            c: g_c.to_affine(),
        };
        t.total = start.elapsed();
        Ok((proof, t))
    }
}

/// A synthesised witness: recorded in full, or values only for a known structure.
enum Synthesized<'a> {
    Recorded(&'a Assignment),
    Cached(&'a Structure, &'a Witness),
}

impl Synthesized<'_> {
    fn assignment(&self) -> (&[Scalar], &[Scalar]) {
        match self {
            Synthesized::Recorded(w) => (&w.inputs, &w.aux),
            Synthesized::Cached(_, w) => (&w.inputs, &w.aux),
        }
    }

    fn densities(&self) -> (&[bool], &[bool], &[bool]) {
        match self {
            Synthesized::Recorded(w) => (&w.a_aux, &w.b_inputs, &w.b_aux),
            Synthesized::Cached(st, _) => (&st.a_aux, &st.b_inputs, &st.b_aux),
        }
    }

    fn num_constraints(&self) -> usize {
        match self {
            Synthesized::Recorded(w) => w.num_constraints(),
            Synthesized::Cached(st, _) => st.num_constraints(),
        }
    }

    fn evaluate(&self) -> (Vec<Fe>, Vec<Fe>, Vec<Fe>) {
        match self {
            Synthesized::Recorded(w) => w.evaluate(),
            Synthesized::Cached(st, w) => st.evaluate(w),
        }
    }
}

/// Where the time of one proof went (wall-clock times; the quotient and the three sums run side
/// by side, so their times overlap and add up to more than [`Timings::parallel`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    /// Synthesis: the circuit's witness and the values of its constraints.
    pub synthesis: Duration,
    /// The quotient polynomial `h` (the FFTs) and its scalars.
    pub quotient: Duration,
    /// The `A` sum (G1).
    pub msm_a: Duration,
    /// The `B` sum in G2.
    pub msm_b_g2: Duration,
    /// The G1 sum over the `B`, `L` and `H` queries.
    pub msm_c: Duration,
    /// The quotient and the three sums, from start to end.
    pub parallel: Duration,
    /// The whole proof.
    pub total: Duration,
}

/// Whether this processor runs the prover's vector arithmetic (AVX-512 F and IFMA): the fastest
/// of the three [`Arithmetic`]s.
pub fn vectorized() -> bool {
    arithmetic() == Arithmetic::Vector
}

/// How this processor's prover computes: the same proofs at three speeds. Whatever paces itself
/// on proofs, such as a devnet's epoch, asks here.
///
/// A 2 KiB Winning PoSt on 2 cores (`lode bench post`, BENCHMARKS.md): 0.52–0.56 s with
/// [`Arithmetic::Vector`], 1.58–1.90 s with [`Arithmetic::Mulx`] and 2.08–2.28 s with
/// [`Arithmetic::Portable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arithmetic {
    /// Eight field products at a time in AVX-512 IFMA lanes (the multi-scalar multiplications),
    /// and MULX/ADX products elsewhere.
    Vector,
    /// One product at a time with MULX, ADCX and ADOX (x86-64 BMI2 and ADX: nearly every x86-64
    /// processor made since 2015).
    Mulx,
    /// 64-bit Rust arithmetic, on any processor.
    Portable,
}

impl Arithmetic {
    /// Its name in reports: `avx512-ifma`, `mulx-adx` or `portable`.
    pub fn name(self) -> &'static str {
        match self {
            Arithmetic::Vector => "avx512-ifma",
            Arithmetic::Mulx => "mulx-adx",
            Arithmetic::Portable => "portable",
        }
    }
}

impl std::fmt::Display for Arithmetic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How far [`limit_arithmetic`] has capped this process: 0 not at all, 1 at
/// [`Arithmetic::Mulx`], 2 at [`Arithmetic::Portable`].
static CEILING: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Caps the field arithmetic of this process at `ceiling`: with [`Arithmetic::Mulx`] the AVX-512
/// IFMA lanes are no longer used, with [`Arithmetic::Portable`] neither are MULX/ADX products. The
/// proofs, trees and digests are the same, only slower (every path is tested equal to the portable
/// one); this is for measuring the paths side by side on one machine (`lode bench --arithmetic`).
/// A cap only ever lowers: a later call with a higher `ceiling` changes nothing. Call it before any
/// work starts, since a computation already running keeps the arithmetic it chose.
pub fn limit_arithmetic(ceiling: Arithmetic) {
    let level = match ceiling {
        Arithmetic::Vector => 0,
        Arithmetic::Mulx => 1,
        Arithmetic::Portable => 2,
    };
    CEILING.fetch_max(level, std::sync::atomic::Ordering::Relaxed);
    #[cfg(target_arch = "x86_64")]
    if level >= 2 {
        crate::mulx::disable();
    }
}

/// Whether [`limit_arithmetic`] leaves the vector arithmetic allowed (the processor may still
/// lack it).
#[inline]
pub(crate) fn vector_allowed() -> bool {
    CEILING.load(std::sync::atomic::Ordering::Relaxed) == 0
}

/// The fastest [`Arithmetic`] this processor runs (the one the prover uses), within the cap of
/// [`limit_arithmetic`] if one was set.
pub fn arithmetic() -> Arithmetic {
    #[cfg(target_arch = "x86_64")]
    {
        if fr8::Ifma::new().is_some() {
            Arithmetic::Vector
        } else if crate::mulx::available() {
            Arithmetic::Mulx
        } else {
            Arithmetic::Portable
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Arithmetic::Portable
    }
}

/// A proof of `circuit` with blinding `r` and `s`: the same proof as `groth16::create_proof`.
/// Converts the parameters' points for this proof only; see [`proving_key`] to keep them.
pub fn create_proof<C: Circuit<Scalar>>(
    circuit: C,
    params: &Parameters<Bls12>,
    r: Scalar,
    s: Scalar,
) -> Result<Proof<Bls12>, SynthesisError> {
    ProvingKey::new(params)?.create_proof(&params.vk, circuit, r, s)
}

/// A proof of `circuit` with `r` and `s` drawn from `rng` as `groth16::create_random_proof` draws
/// them; the parameters' converted points come from [`proving_key`].
pub fn create_random_proof<C: Circuit<Scalar>, R: Rng + ?Sized>(
    circuit: C,
    params: &Parameters<Bls12>,
    rng: &mut R,
) -> Result<Proof<Bls12>, SynthesisError> {
    let r = Scalar::random(&mut *rng);
    let s = Scalar::random(&mut *rng);
    proving_key(params)?.create_proof(&params.vk, circuit, r, s)
}

/// [`create_random_proof`] for a circuit that `make` builds (the same circuit each call): with the
/// key of [`proving_key`], whose recorded constraints spare later proofs most of the synthesis
/// (see [`ProvingKey::create_proof_with`]).
pub fn create_random_proof_with<C: Circuit<Scalar>, R: Rng + ?Sized>(
    make: impl Fn() -> C,
    params: &Parameters<Bls12>,
    rng: &mut R,
) -> Result<Proof<Bls12>, SynthesisError> {
    let r = Scalar::random(&mut *rng);
    let s = Scalar::random(&mut *rng);
    proving_key(params)?
        .create_proof_with(&params.vk, make, r, s)
        .map(|(p, _)| p)
}

/// [`create_random_proof_with`] with a faster way to the witness once the constraints are known
/// (see [`ProvingKey::create_proof_parallel`]).
/// The G1 sums run on `device` when given (with a key kept for that device).
pub(crate) fn create_random_proof_parallel<C: Circuit<Scalar>, R: Rng + ?Sized>(
    make: impl Fn() -> C,
    witness: impl FnOnce() -> Result<Witness, SynthesisError>,
    params: &Parameters<Bls12>,
    rng: &mut R,
    device: Option<&Arc<dyn G1Msm>>,
) -> Result<Proof<Bls12>, SynthesisError> {
    let r = Scalar::random(&mut *rng);
    let s = Scalar::random(&mut *rng);
    proving_key_on(params, device)?
        .create_proof_parallel(&params.vk, make, witness, r, s)
        .map(|(p, _)| p)
}

/// [`create_random_proof`] without keeping the converted points: they are made for this proof
/// and dropped after it (for large parameters used rarely).
pub fn create_random_proof_uncached<C: Circuit<Scalar>, R: Rng + ?Sized>(
    circuit: C,
    params: &Parameters<Bls12>,
    rng: &mut R,
) -> Result<Proof<Bls12>, SynthesisError> {
    create_random_proof_uncached_on(circuit, params, rng, None)
}

/// [`create_random_proof_uncached`] with the G1 sums on `device` when given.
pub fn create_random_proof_uncached_on<C: Circuit<Scalar>, R: Rng + ?Sized>(
    circuit: C,
    params: &Parameters<Bls12>,
    rng: &mut R,
    device: Option<&Arc<dyn G1Msm>>,
) -> Result<Proof<Bls12>, SynthesisError> {
    let r = Scalar::random(&mut *rng);
    let s = Scalar::random(&mut *rng);
    let key = match device {
        Some(d) => ProvingKey::with_device(params, d.clone())?,
        None => ProvingKey::new(params)?,
    };
    key.create_proof(&params.vk, circuit, r, s)
}

/// Converted keys of live parameters, identified by their point vectors.
struct Cached {
    a: Weak<Vec<G1Affine>>,
    b_g1: Weak<Vec<G1Affine>>,
    b_g2: Weak<Vec<G2Affine>>,
    l: Weak<Vec<G1Affine>>,
    h: Weak<Vec<G1Affine>>,
    /// The device the key's G1 sums run on.
    device: Option<Arc<dyn G1Msm>>,
    key: Arc<ProvingKey>,
}

/// The same device (the same object), or both none.
fn same_device(a: Option<&Arc<dyn G1Msm>>, b: Option<&Arc<dyn G1Msm>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b)),
        _ => false,
    }
}

impl Cached {
    fn alive(&self) -> bool {
        self.a.strong_count() > 0
            && self.b_g1.strong_count() > 0
            && self.b_g2.strong_count() > 0
            && self.l.strong_count() > 0
            && self.h.strong_count() > 0
    }

    fn is_for(&self, p: &Parameters<Bls12>) -> bool {
        // A weak reference keeps its allocation, so a live vector at the same address is the same
        // vector, and while shared it cannot change.
        self.alive()
            && Weak::as_ptr(&self.a) == Arc::as_ptr(&p.a)
            && Weak::as_ptr(&self.b_g1) == Arc::as_ptr(&p.b_g1)
            && Weak::as_ptr(&self.b_g2) == Arc::as_ptr(&p.b_g2)
            && Weak::as_ptr(&self.l) == Arc::as_ptr(&p.l)
            && Weak::as_ptr(&self.h) == Arc::as_ptr(&p.h)
    }
}

/// Most keys kept at once (the oldest goes first).
const CACHED_KEYS: usize = 8;

fn cache() -> &'static Mutex<Vec<Cached>> {
    static CACHE: OnceLock<Mutex<Vec<Cached>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(Vec::new()))
}

/// The converted key of `params`: made on first use, then kept as long as the parameters' point
/// vectors are alive (up to eight parameter sets).
pub fn proving_key(params: &Parameters<Bls12>) -> Result<Arc<ProvingKey>, SynthesisError> {
    proving_key_on(params, None)
}

/// [`proving_key`] for proving with the G1 sums on `device` (kept apart from the CPU's key).
pub fn proving_key_on(
    params: &Parameters<Bls12>,
    device: Option<&Arc<dyn G1Msm>>,
) -> Result<Arc<ProvingKey>, SynthesisError> {
    let hit = |e: &Cached| e.is_for(params) && same_device(e.device.as_ref(), device);
    {
        let mut c = cache().lock().unwrap_or_else(|e| e.into_inner());
        c.retain(Cached::alive);
        if let Some(found) = c.iter().find(|e| hit(e)) {
            return Ok(found.key.clone());
        }
    }
    // Converted outside the lock: the conversion runs on rayon, and a thread waiting for it may
    // run another prover's task that needs the lock.
    let key = Arc::new(match device {
        Some(d) => ProvingKey::with_device(params, d.clone())?,
        None => ProvingKey::new(params)?,
    });
    let mut c = cache().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = c.iter().find(|e| hit(e)) {
        return Ok(found.key.clone());
    }
    if c.len() >= CACHED_KEYS {
        c.remove(0);
    }
    c.push(Cached {
        a: Arc::downgrade(&params.a),
        b_g1: Arc::downgrade(&params.b_g1),
        b_g2: Arc::downgrade(&params.b_g2),
        l: Arc::downgrade(&params.l),
        h: Arc::downgrade(&params.h),
        device: device.cloned(),
        key: key.clone(),
    });
    Ok(key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
