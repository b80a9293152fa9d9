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
mod fr8;
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
    bases: Bases,
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

impl Bases {
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

    fn a_len(&self) -> usize {
        match self {
            Bases::Portable { a, .. } => a.len(),
            #[cfg(target_arch = "x86_64")]
            Bases::Ifma { a, .. } => a.len(),
        }
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
        Ok(Self::with_bases(params, Bases::best(params)?))
    }

    /// [`ProvingKey::new`] with the portable 64-bit arithmetic even where AVX-512 IFMA is present
    /// (the same proofs, more slowly; for comparisons).
    pub fn portable(params: &Parameters<Bls12>) -> Result<Self, SynthesisError> {
        Ok(Self::with_bases(params, Bases::portable(params)?))
    }

    fn with_bases(params: &Parameters<Bls12>, bases: Bases) -> Self {
        ProvingKey {
            bases,
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
        let limbs = |s: &Scalar| -> Limbs {
            let b = s.to_repr();
            let mut out = [0u64; 4];
            for (l, c) in out.iter_mut().zip(b.chunks_exact(8)) {
                let mut word = [0u8; 8];
                word.copy_from_slice(c);
                *l = u64::from_le_bytes(word);
            }
            out
        };
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
        if self.bases.a_len() < a_scalars.len() {
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
                .map(|x| limbs(&scale.map_or(*x, |k| *x * k)))
                .collect()
        };
        let timed = |f: &dyn Fn() -> Option<G1Projective>| {
            let t = Instant::now();
            (f(), t.elapsed())
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
                let (c, t_c) = timed(&|| self.bases.msm_c(&scalars));
                (c, t_h, t_c)
            },
            || {
                rayon::join(
                    || timed(&|| self.bases.msm_a(&to_limbs(&a_scalars, None))),
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
        // A computed point off the curve or outside the subgroup would be a bug here, not a
        // property of the input; it is reported rather than turned into a bad proof.
        let internal = || {
            SynthesisError::IoError(std::io::Error::other(
                "the prover computed an invalid curve point",
            ))
        };
        let (a_sum, b_sum, c_sum) = (
            a_sum.ok_or_else(internal)?,
            b_sum.ok_or_else(internal)?,
            c_sum.ok_or_else(internal)?,
        );

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
pub(crate) fn create_random_proof_parallel<C: Circuit<Scalar>, R: Rng + ?Sized>(
    make: impl Fn() -> C,
    witness: impl FnOnce() -> Result<Witness, SynthesisError>,
    params: &Parameters<Bls12>,
    rng: &mut R,
) -> Result<Proof<Bls12>, SynthesisError> {
    let r = Scalar::random(&mut *rng);
    let s = Scalar::random(&mut *rng);
    proving_key(params)?
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
    let r = Scalar::random(&mut *rng);
    let s = Scalar::random(&mut *rng);
    create_proof(circuit, params, r, s)
}

/// Converted keys of live parameters, identified by their point vectors.
struct Cached {
    a: Weak<Vec<G1Affine>>,
    b_g1: Weak<Vec<G1Affine>>,
    b_g2: Weak<Vec<G2Affine>>,
    l: Weak<Vec<G1Affine>>,
    h: Weak<Vec<G1Affine>>,
    key: Arc<ProvingKey>,
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
    {
        let mut c = cache().lock().unwrap_or_else(|e| e.into_inner());
        c.retain(Cached::alive);
        if let Some(hit) = c.iter().find(|e| e.is_for(params)) {
            return Ok(hit.key.clone());
        }
    }
    // Converted outside the lock: the conversion runs on rayon, and a thread waiting for it may
    // run another prover's task that needs the lock.
    let key = Arc::new(ProvingKey::new(params)?);
    let mut c = cache().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(hit) = c.iter().find(|e| e.is_for(params)) {
        return Ok(hit.key.clone());
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
        key: key.clone(),
    });
    Ok(key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
