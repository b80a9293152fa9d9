//! Fast Groth16 parameter generation: the parameters `groth16::generate_random_parameters` makes, byte
//! for byte, computed in parallel.
//!
//! The reference generator evaluates the QAP with an inverse FFT over one vector of powers of τ,
//! keeps one `Vec` per variable and matrix, and multiplies the generators with wNAF (about 255
//! doublings per point). Here:
//!
//! 1. the circuit is synthesised into its R1CS by [`R1cs`], a constraint system that records the
//!    three matrices as flat lists of `(row, column, coefficient)` entries;
//! 2. the Lagrange basis of the evaluation domain is evaluated at τ directly,
//!    `L_j(τ) = ω^j·Z(τ) / (m·(τ − ω^j))` with batch inversion, in parallel chunks (when τ lies in
//!    the domain, `L_j(τ)` is 1 at that point and 0 elsewhere);
//! 3. `u_i(τ)`, `v_i(τ)`, `w_i(τ)` are accumulated per variable: every entry is multiplied by its
//!    row's Lagrange coefficient in parallel, then summed into its column, the three matrices at once;
//! 4. the H query's exponents `τ^i·Z(τ)/δ` are computed in parallel chunks;
//! 5. every point is a fixed-base multiple of `g1` or `g2`, computed from a [`FixedBase`] table
//!    (signed windows: a point costs one mixed addition per window, no doubling), in parallel
//!    chunks that are normalised to affine in one batch each.
//!
//! Affine points have one representation, so equal scalars give equal bytes whatever the method.
//! The toxic waste is drawn from the RNG in the reference order ([`ToxicWaste::random`]), the same
//! dummy constraints `x·0 = 0` are added for the public inputs, the queries keep the same order and
//! the same points at infinity are dropped (A and B queries) or kept (IC, H); the errors are the
//! same too. Tests compare the serialised parameters of both generators.

use std::sync::Arc;

use bellman::{Circuit, ConstraintSystem, Index, LinearCombination, SynthesisError, Variable};
use bls12_381::{Bls12, G1Affine, G1Projective, G2Affine, G2Projective, Scalar};
use ff::{BatchInvert, Field, PrimeField};
use groth16::{Parameters, VerifyingKey};
use group::{Curve, Group};
use rand_core::Rng;
use rayon::prelude::*;

/// The secret values of a setup ("toxic waste"). Whoever knows them can forge proofs.
#[derive(Clone, Copy, Debug)]
pub struct ToxicWaste {
    /// The G1 generator the parameters are built on.
    pub g1: G1Projective,
    /// The G2 generator the parameters are built on.
    pub g2: G2Projective,
    /// α.
    pub alpha: Scalar,
    /// β.
    pub beta: Scalar,
    /// γ (must be nonzero).
    pub gamma: Scalar,
    /// δ (must be nonzero).
    pub delta: Scalar,
    /// τ, the point the QAP is evaluated at.
    pub tau: Scalar,
}

impl ToxicWaste {
    /// Draws the values in the order `groth16::generate_random_parameters` draws them (g1, g2, α, β,
    /// γ, δ, τ), so the same RNG state gives the same setup.
    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let g1 = G1Projective::random(rng);
        let g2 = G2Projective::random(rng);
        let alpha = Scalar::random(rng);
        let beta = Scalar::random(rng);
        let gamma = Scalar::random(rng);
        let delta = Scalar::random(rng);
        let tau = Scalar::random(rng);
        ToxicWaste {
            g1,
            g2,
            alpha,
            beta,
            gamma,
            delta,
            tau,
        }
    }
}

/// Generates parameters for `circuit` (a blank instance: no witness is read) with toxic waste drawn
/// from `rng`: the same parameters as `groth16::generate_random_parameters` with the same RNG state.
pub fn generate_random_parameters<C, R>(
    circuit: C,
    rng: &mut R,
) -> Result<Parameters<Bls12>, SynthesisError>
where
    C: Circuit<Scalar>,
    R: Rng + ?Sized,
{
    generate_parameters(circuit, &ToxicWaste::random(rng))
}

/// Generates parameters for `circuit` from the given toxic waste: the same parameters as
/// `groth16::generate_parameters` with the same values.
///
/// Errors: the circuit's synthesis errors; `PolynomialDegreeTooLarge` when the evaluation domain
/// would need 2^32 points or more; `UnexpectedIdentity` when γ or δ is zero;
/// `UnconstrainedVariable` when a private variable is in no constraint (its L query point would be
/// the identity); `IoError` (kind `InvalidInput`) when a constraint names a variable this constraint
/// system did not allocate.
pub fn generate_parameters<C: Circuit<Scalar>>(
    circuit: C,
    toxic: &ToxicWaste,
) -> Result<Parameters<Bls12>, SynthesisError> {
    let mut r1cs = R1cs::default();
    // The "one" input variable.
    r1cs.alloc_input(|| "", || Ok(Scalar::ONE))?;
    circuit.synthesize(&mut r1cs)?;
    // The reference's dummy constraints `x · 0 = 0`, one per public input, make the IC query dense.
    for i in 0..r1cs.num_inputs {
        r1cs.enforce(
            || "",
            |lc| lc + Variable::new_unchecked(Index::Input(i)),
            |lc| lc,
            |lc| lc,
        );
    }
    r1cs.check()?;

    let domain = Domain::new(r1cs.num_constraints)?;
    let gamma_inv =
        Option::<Scalar>::from(toxic.gamma.invert()).ok_or(SynthesisError::UnexpectedIdentity)?;
    let delta_inv =
        Option::<Scalar>::from(toxic.delta.invert()).ok_or(SynthesisError::UnexpectedIdentity)?;

    let num_inputs = r1cs.num_inputs;
    let columns = r1cs.columns();
    let tau = toxic.tau;
    let z = domain.z(&tau);
    let lagrange = domain.lagrange_at(&tau, &z);

    // u_i(τ), v_i(τ), w_i(τ) for every variable, inputs first.
    let R1cs { a, b, c, .. } = r1cs;
    let (at, (bt, ct)) = rayon::join(
        || evaluate(a, &lagrange, num_inputs, columns),
        || {
            rayon::join(
                || evaluate(b, &lagrange, num_inputs, columns),
                || evaluate(c, &lagrange, num_inputs, columns),
            )
        },
    );
    drop(lagrange);

    // IC (inputs, over γ) and L (private variables, over δ): (β·u + α·v + w) / γ or δ.
    let ext: Vec<Scalar> = at
        .par_iter()
        .zip(bt.par_iter())
        .zip(ct.par_iter())
        .enumerate()
        .map(|(i, ((u, v), w))| {
            let inv = if i < num_inputs { gamma_inv } else { delta_inv };
            (u * toxic.beta + v * toxic.alpha + w) * inv
        })
        .collect();
    drop(ct);
    // A private variable in no constraint would give an L point at infinity: refused, as the
    // reference does (after its γ and δ checks, as here).
    if ext[num_inputs..].iter().any(|e| bool::from(e.is_zero())) {
        return Err(SynthesisError::UnconstrainedVariable);
    }
    let nonzero = |v: &[Scalar]| -> Vec<Scalar> {
        v.iter()
            .filter(|s| !bool::from(s.is_zero()))
            .copied()
            .collect()
    };
    let a_scalars = nonzero(&at);
    let b_scalars = nonzero(&bt);
    drop((at, bt));
    let h_scalars = domain.h_exponents(&tau, &(z * delta_inv));

    let g1_count = h_scalars.len() + a_scalars.len() + b_scalars.len() + ext.len();
    let g1_table = FixedBase::new(toxic.g1, FixedBase::<G1Projective>::window_for(g1_count));
    let h = g1_table.mul_batch(&h_scalars);
    drop(h_scalars);
    let mut ext_points = g1_table.mul_batch(&ext);
    drop(ext);
    let l = ext_points.split_off(num_inputs);
    let ic = ext_points;
    if l.iter().any(|p| bool::from(p.is_identity())) {
        return Err(SynthesisError::UnconstrainedVariable);
    }
    let a_points = g1_table.mul_batch(&a_scalars);
    drop(a_scalars);
    let b_g1 = g1_table.mul_batch(&b_scalars);
    drop(g1_table);
    let g2_table = FixedBase::new(
        toxic.g2,
        FixedBase::<G2Projective>::window_for(b_scalars.len()),
    );
    let b_g2 = g2_table.mul_batch(&b_scalars);
    drop(g2_table);

    let g1 = toxic.g1.to_affine();
    let g2 = toxic.g2.to_affine();
    let vk = VerifyingKey::<Bls12> {
        alpha_g1: (g1 * toxic.alpha).to_affine(),
        beta_g1: (g1 * toxic.beta).to_affine(),
        beta_g2: (g2 * toxic.beta).to_affine(),
        gamma_g2: (g2 * toxic.gamma).to_affine(),
        delta_g1: (g1 * toxic.delta).to_affine(),
        delta_g2: (g2 * toxic.delta).to_affine(),
        ic,
    };
    // Points at infinity are dropped from the A and B queries (only possible here when a generator
    // is the identity: zero scalars were skipped above).
    fn finite<A: Copy>(points: Vec<A>, is_identity: impl Fn(&A) -> bool) -> Vec<A> {
        points.into_iter().filter(|p| !is_identity(p)).collect()
    }
    Ok(Parameters {
        vk,
        h: Arc::new(h),
        l: Arc::new(l),
        a: Arc::new(finite(a_points, |p: &G1Affine| p.is_identity().into())),
        b_g1: Arc::new(finite(b_g1, |p: &G1Affine| p.is_identity().into())),
        b_g2: Arc::new(finite(b_g2, |p: &G2Affine| p.is_identity().into())),
    })
}

/// Marks a column index as a private (auxiliary) variable's in [`Entry::col`].
const AUX: u32 = 1 << 31;

/// One nonzero coefficient of a constraint matrix.
#[derive(Clone, Copy)]
struct Entry {
    /// The constraint.
    row: u32,
    /// The variable: an input's index, or a private variable's index with [`AUX`] set.
    col: u32,
    /// The coefficient (multiplied in place by the row's Lagrange coefficient when evaluating).
    coeff: Scalar,
}

/// A constraint system that records the R1CS of a circuit: the variables' counts and the three
/// matrices as flat entry lists. Assignments are never evaluated.
#[derive(Default)]
pub struct R1cs {
    num_inputs: usize,
    num_aux: usize,
    num_constraints: usize,
    a: Vec<Entry>,
    b: Vec<Entry>,
    c: Vec<Entry>,
    /// A count or index beyond what the entries can hold (2^31 variables of a kind, 2^32 rows).
    too_large: bool,
    /// A constraint named a variable this system did not allocate.
    foreign: bool,
}

impl R1cs {
    /// The number of public inputs, the "one" variable included when it was allocated.
    pub fn num_inputs(&self) -> usize {
        self.num_inputs
    }

    /// The number of private variables.
    pub fn num_aux(&self) -> usize {
        self.num_aux
    }

    /// The number of constraints.
    pub fn num_constraints(&self) -> usize {
        self.num_constraints
    }

    /// The number of nonzero entries of the A, B and C matrices together.
    pub fn num_entries(&self) -> usize {
        self.a.len() + self.b.len() + self.c.len()
    }

    fn columns(&self) -> usize {
        self.num_inputs + self.num_aux
    }

    fn record(
        entries: &mut Vec<Entry>,
        lc: &LinearCombination<Scalar>,
        row: u32,
        flags: (&mut bool, &mut bool),
        counts: (usize, usize),
    ) {
        let (too_large, foreign) = flags;
        let (inputs, aux) = counts;
        for (var, coeff) in lc.as_ref() {
            let (index, limit, tag) = match var.get_unchecked() {
                Index::Input(i) => (i, inputs, 0),
                Index::Aux(i) => (i, aux, AUX),
            };
            if index >= limit {
                *foreign = true;
                continue;
            }
            match u32::try_from(index) {
                Ok(i) if i < AUX => entries.push(Entry {
                    row,
                    col: i | tag,
                    coeff: *coeff,
                }),
                _ => *too_large = true,
            }
        }
    }

    /// The error a recording problem stands for, if any.
    fn check(&self) -> Result<(), SynthesisError> {
        if self.foreign {
            return Err(SynthesisError::IoError(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a constraint names a variable the constraint system did not allocate",
            )));
        }
        if self.too_large {
            return Err(SynthesisError::PolynomialDegreeTooLarge);
        }
        Ok(())
    }
}

impl ConstraintSystem<Scalar> for R1cs {
    fn alloc<F, A, AR>(&mut self, _: A, _: F) -> Result<Variable, SynthesisError>
    where
        F: FnOnce() -> Result<Scalar, SynthesisError>,
        A: FnOnce() -> AR,
        AR: Into<String>,
    {
        let index = self.num_aux;
        self.num_aux += 1;
        Ok(Variable::new_unchecked(Index::Aux(index)))
    }

    fn alloc_input<F, A, AR>(&mut self, _: A, _: F) -> Result<Variable, SynthesisError>
    where
        F: FnOnce() -> Result<Scalar, SynthesisError>,
        A: FnOnce() -> AR,
        AR: Into<String>,
    {
        let index = self.num_inputs;
        self.num_inputs += 1;
        Ok(Variable::new_unchecked(Index::Input(index)))
    }

    fn enforce<A, AR, LA, LB, LC>(&mut self, _: A, a: LA, b: LB, c: LC)
    where
        A: FnOnce() -> AR,
        AR: Into<String>,
        LA: FnOnce(LinearCombination<Scalar>) -> LinearCombination<Scalar>,
        LB: FnOnce(LinearCombination<Scalar>) -> LinearCombination<Scalar>,
        LC: FnOnce(LinearCombination<Scalar>) -> LinearCombination<Scalar>,
    {
        let Ok(row) = u32::try_from(self.num_constraints) else {
            self.too_large = true;
            return;
        };
        let counts = (self.num_inputs, self.num_aux);
        for (entries, lc) in [
            (&mut self.a, a(LinearCombination::zero())),
            (&mut self.b, b(LinearCombination::zero())),
            (&mut self.c, c(LinearCombination::zero())),
        ] {
            R1cs::record(
                entries,
                &lc,
                row,
                (&mut self.too_large, &mut self.foreign),
                counts,
            );
        }
        self.num_constraints += 1;
    }

    crate::circuit::root_without_namespaces!();
}

/// Sums one matrix's entries, each multiplied by its row's Lagrange coefficient, per column: the
/// polynomials of every variable evaluated at τ (inputs first, then private variables).
fn evaluate(
    mut entries: Vec<Entry>,
    lagrange: &[Scalar],
    num_inputs: usize,
    columns: usize,
) -> Vec<Scalar> {
    entries
        .par_iter_mut()
        .with_min_len(1 << 12)
        .for_each(|e| e.coeff *= lagrange[e.row as usize]);
    let mut sums = vec![Scalar::ZERO; columns];
    for e in &entries {
        let col = if e.col & AUX == 0 {
            e.col as usize
        } else {
            num_inputs + (e.col & !AUX) as usize
        };
        sums[col] += e.coeff;
    }
    sums
}

/// `x^e` (the field's generic exponentiation; `Scalar` has an inherent one of another signature).
fn pow(x: &Scalar, e: u64) -> Scalar {
    Field::pow_vartime(x, [e])
}

/// Rows per parallel task in the domain computations.
const DOMAIN_CHUNK: usize = 1 << 14;

/// The radix-2 evaluation domain of `m ≥ constraints` points, as the reference builds it.
struct Domain {
    m: usize,
    omega: Scalar,
}

impl Domain {
    fn new(constraints: usize) -> Result<Self, SynthesisError> {
        let mut m = 1usize;
        let mut exp = 0u32;
        while m < constraints {
            m *= 2;
            exp += 1;
            if exp >= Scalar::S {
                return Err(SynthesisError::PolynomialDegreeTooLarge);
            }
        }
        let mut omega = Scalar::ROOT_OF_UNITY;
        for _ in exp..Scalar::S {
            omega = omega.square();
        }
        Ok(Domain { m, omega })
    }

    /// Z(τ) = τ^m − 1.
    fn z(&self, tau: &Scalar) -> Scalar {
        pow(tau, self.m as u64) - Scalar::ONE
    }

    /// `L_j(τ)` for every point `ω^j` of the domain (what the reference gets from an inverse FFT of
    /// the powers of τ); `z` is Z(τ).
    fn lagrange_at(&self, tau: &Scalar, z: &Scalar) -> Vec<Scalar> {
        let mut out = vec![Scalar::ZERO; self.m];
        if bool::from(z.is_zero()) {
            // τ is a point of the domain: its basis polynomial is 1 there, the others 0.
            let mut w = Scalar::ONE;
            for l in out.iter_mut() {
                if w == *tau {
                    *l = Scalar::ONE;
                }
                w *= self.omega;
            }
            return out;
        }
        let m_inv =
            Option::<Scalar>::from(Scalar::from(self.m as u64).invert()).unwrap_or(Scalar::ZERO);
        let scale = *z * m_inv;
        out.par_chunks_mut(DOMAIN_CHUNK)
            .enumerate()
            .for_each(|(chunk, out)| {
                let start = pow(&self.omega, (chunk * DOMAIN_CHUNK) as u64);
                let mut w = start;
                for l in out.iter_mut() {
                    *l = *tau - w;
                    w *= self.omega;
                }
                // τ ≠ ω^j here (Z(τ) ≠ 0): no zero to invert.
                out.iter_mut().batch_invert();
                let mut w = start * scale;
                for l in out.iter_mut() {
                    *l *= w;
                    w *= self.omega;
                }
            });
        out
    }

    /// The exponents of the H query, `τ^i · coeff` for `i < m − 1` (`coeff` = Z(τ)/δ).
    fn h_exponents(&self, tau: &Scalar, coeff: &Scalar) -> Vec<Scalar> {
        let mut out = vec![Scalar::ZERO; self.m - 1];
        out.par_chunks_mut(DOMAIN_CHUNK)
            .enumerate()
            .for_each(|(chunk, out)| {
                let mut p = pow(tau, (chunk * DOMAIN_CHUNK) as u64) * coeff;
                for h in out.iter_mut() {
                    *h = p;
                    p *= tau;
                }
            });
        out
    }
}

/// Points per parallel task (and per batch normalisation) of [`FixedBase::mul_batch`].
const MUL_CHUNK: usize = 1 << 10;
/// The widest window: a G1 table is then 16 windows of 2^15 affine points (about 53 MB), a G2 table
/// about twice that.
const MAX_WINDOW: u32 = 16;

/// A fixed-base multiplication table of one point `P`: for every window `i` of `w` bits, the
/// multiples `j·2^(w·i)·P` for `1 ≤ j ≤ 2^(w−1)`, in affine form. A 255-bit scalar is recoded into
/// signed digits of `w` bits; its multiple of `P` is then one table lookup and one mixed addition
/// (or subtraction) per nonzero digit.
pub struct FixedBase<G: Curve> {
    window: u32,
    windows: usize,
    table: Vec<G::Affine>,
}

impl<G> FixedBase<G>
where
    G: Curve + Send + Sync,
{
    /// The window width that minimises the additions for `count` multiplications: the table costs
    /// about two additions per entry, each multiplication one per window.
    pub fn window_for(count: usize) -> u32 {
        (1..=MAX_WINDOW)
            .min_by_key(|&w| {
                let windows = 256usize.div_ceil(w as usize);
                windows.saturating_mul(count.saturating_add(2usize << (w - 1)))
            })
            .unwrap_or(MAX_WINDOW)
    }

    /// The table of `base` for windows of `window` bits (clamped to 1..=16).
    pub fn new(base: G, window: u32) -> Self {
        let window = window.clamp(1, MAX_WINDOW);
        let windows = 256usize.div_ceil(window as usize);
        let half = 1usize << (window - 1);
        let mut bases = Vec::with_capacity(windows);
        let mut b = base;
        for _ in 0..windows {
            bases.push(b);
            for _ in 0..window {
                b = b.double();
            }
        }
        let mut table = vec![G::identity().to_affine(); windows * half];
        table
            .par_chunks_mut(half)
            .zip(bases.par_iter())
            .for_each(|(row, b)| {
                let mut multiples = Vec::with_capacity(half);
                let mut acc = *b;
                for _ in 0..half {
                    multiples.push(acc);
                    acc += b;
                }
                G::batch_normalize(&multiples, row);
            });
        FixedBase {
            window,
            windows,
            table,
        }
    }

    /// The signed digits of `scalar`, one per window, lowest first: `scalar = Σ dᵢ·2^(w·i)` with
    /// `|dᵢ| ≤ 2^(w−1)`.
    fn recode(&self, scalar: &Scalar, digits: &mut [i32]) {
        let repr = scalar.to_repr();
        let mut limbs = [0u64; 4];
        for (limb, bytes) in limbs.iter_mut().zip(repr.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(bytes);
            *limb = u64::from_le_bytes(b);
        }
        let w = self.window as usize;
        let half = 1u64 << (w - 1);
        let full = 1u64 << w;
        let mut carry = 0u64;
        for (i, digit) in digits.iter_mut().enumerate().take(self.windows) {
            let raw = bits(&limbs, i * w, w) + carry;
            // Signed digit in [−2^(w−1), 2^(w−1)]: the last window never carries out, since a
            // canonical scalar is below 2^255 and the windows cover 256 bits.
            *digit = if raw > half {
                carry = 1;
                -((full - raw) as i32)
            } else {
                carry = 0;
                raw as i32
            };
        }
        debug_assert_eq!(carry, 0);
    }

    /// Adds the table entry of `digit` in the window of `row` to `acc`.
    fn add_digit(acc: &mut G, row: &[G::Affine], digit: i32) {
        let index = digit.unsigned_abs() as usize;
        if index != 0 {
            let point = &row[index - 1];
            if digit < 0 {
                *acc -= point;
            } else {
                *acc += point;
            }
        }
    }

    /// `scalar · P`.
    pub fn mul(&self, scalar: &Scalar) -> G {
        let mut digits = vec![0i32; self.windows];
        self.recode(scalar, &mut digits);
        let mut acc = G::identity();
        for (row, &digit) in self.rows().zip(&digits) {
            Self::add_digit(&mut acc, row, digit);
        }
        acc
    }

    fn rows(&self) -> std::slice::ChunksExact<'_, G::Affine> {
        self.table.chunks_exact(1 << (self.window - 1))
    }

    /// `s · P` for every scalar, in parallel, in affine form. Each task takes a chunk of scalars
    /// window by window, so one window's table is in use at a time.
    pub fn mul_batch(&self, scalars: &[Scalar]) -> Vec<G::Affine> {
        let mut out = vec![G::identity().to_affine(); scalars.len()];
        out.par_chunks_mut(MUL_CHUNK)
            .zip(scalars.par_chunks(MUL_CHUNK))
            .for_each(|(out, scalars)| {
                let mut digits = vec![0i32; scalars.len() * self.windows];
                for (s, d) in scalars.iter().zip(digits.chunks_exact_mut(self.windows)) {
                    self.recode(s, d);
                }
                let mut points = vec![G::identity(); scalars.len()];
                for (i, row) in self.rows().enumerate() {
                    for (acc, d) in points.iter_mut().zip(digits.chunks_exact(self.windows)) {
                        Self::add_digit(acc, row, d[i]);
                    }
                }
                G::batch_normalize(&points, out);
            });
        out
    }
}

/// `width` (≤ 32) bits of the 256-bit little-endian number `limbs` from bit `at` (zero past the end).
fn bits(limbs: &[u64; 4], at: usize, width: usize) -> u64 {
    let (i, shift) = (at / 64, at % 64);
    let lo = limbs.get(i).map_or(0, |l| l >> shift);
    let hi = match limbs.get(i + 1) {
        Some(l) if shift + width > 64 => l << (64 - shift),
        _ => 0,
    };
    (lo | hi) & ((1u64 << width) - 1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn bytes(p: &Parameters<Bls12>) -> Vec<u8> {
        let mut out = Vec::new();
        p.write(&mut out).unwrap();
        out
    }

    /// Both generators from the same seed: equal serialised parameters, or the same error. Says
    /// whether parameters were made.
    fn same_as_reference<C: Circuit<Scalar> + Clone>(circuit: C, seed: u8) -> bool {
        let ours =
            generate_random_parameters(circuit.clone(), &mut ChaCha20Rng::from_seed([seed; 32]));
        let theirs = groth16::generate_random_parameters::<Bls12, _, _>(
            circuit,
            &mut ChaCha20Rng::from_seed([seed; 32]),
        );
        match (ours, theirs) {
            (Ok(ours), Ok(theirs)) => {
                assert!(bytes(&ours) == bytes(&theirs), "seed {seed}");
                true
            }
            (Err(ours), Err(theirs)) => {
                assert_eq!(ours.to_string(), theirs.to_string());
                false
            }
            (ours, theirs) => panic!(
                "ours {:?}, reference {:?}",
                ours.map(|_| ()),
                theirs.map(|_| ())
            ),
        }
    }

    /// A circuit described by its shape: `inputs` public inputs, `aux` private variables, and
    /// constraints as (A, B, C) lists of (variable, coefficient); variable `i < inputs` is input `i`
    /// (0 being "one"), the others private.
    #[derive(Clone)]
    struct Shape {
        inputs: usize,
        aux: usize,
        constraints: Vec<[Vec<(usize, u64)>; 3]>,
    }

    impl Circuit<Scalar> for Shape {
        fn synthesize<CS: ConstraintSystem<Scalar>>(
            self,
            cs: &mut CS,
        ) -> Result<(), SynthesisError> {
            let mut vars = vec![CS::one()];
            for i in 1..self.inputs {
                vars.push(cs.alloc_input(|| format!("x{i}"), || Ok(Scalar::ONE))?);
            }
            for i in 0..self.aux {
                vars.push(cs.alloc(|| format!("w{i}"), || Ok(Scalar::ONE))?);
            }
            for (n, [a, b, c]) in self.constraints.into_iter().enumerate() {
                let vars = &vars;
                let lc = |terms: Vec<(usize, u64)>| {
                    move |mut lc: LinearCombination<Scalar>| {
                        for (v, k) in terms {
                            lc = lc + (Scalar::from(k) - Scalar::from(3), vars[v]);
                        }
                        lc
                    }
                };
                cs.enforce(|| format!("c{n}"), lc(a), lc(b), lc(c));
            }
            Ok(())
        }
    }

    /// A pseudo-random shape in which every private variable appears somewhere.
    fn random_shape(seed: u64, inputs: usize, aux: usize, constraints: usize) -> Shape {
        let mut state = seed;
        let mut next = |n: usize| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as usize) % n
        };
        let vars = inputs + aux;
        let mut cons: Vec<[Vec<(usize, u64)>; 3]> = (0..constraints)
            .map(|_| {
                let mut lc = |max: usize| -> Vec<(usize, u64)> {
                    (0..next(max))
                        .map(|_| (next(vars), next(7) as u64))
                        .collect()
                };
                [lc(4), lc(3), lc(3)]
            })
            .collect();
        // Every private variable in some C row (k = 4: coefficient 1).
        for v in inputs..vars {
            let row = next(constraints);
            cons[row][2].push((v, 4));
        }
        Shape {
            inputs,
            aux,
            constraints: cons,
        }
    }

    #[test]
    fn equals_the_reference_on_small_circuits() {
        // Public inputs and private variables, duplicate terms, zero coefficients (k = 3).
        for (seed, inputs, aux, constraints) in [
            (1, 1, 1, 1),
            (2, 3, 5, 7),
            (3, 5, 20, 33),
            (4, 2, 40, 64),
            (5, 9, 100, 129),
        ] {
            assert!(same_as_reference(
                random_shape(seed, inputs, aux, constraints),
                seed as u8
            ));
        }
    }

    #[test]
    fn equals_the_reference_with_variables_outside_a_and_b() {
        // Private variable 3 only in C, variable 4 only in B, input 1 only in A (besides its dummy
        // constraint): their A or B points are absent from the queries in both.
        let shape = Shape {
            inputs: 2,
            aux: 3,
            constraints: vec![
                [vec![(1, 4), (2, 5)], vec![(2, 4)], vec![(3, 4)]],
                [vec![(2, 4)], vec![(4, 6)], vec![(2, 1)]],
                [vec![], vec![], vec![(4, 5)]],
            ],
        };
        assert!(same_as_reference(shape, 7));
    }

    #[test]
    fn an_unused_private_variable_is_refused_like_the_reference() {
        let shape = Shape {
            inputs: 2,
            aux: 2,
            constraints: vec![[vec![(2, 4)], vec![(2, 4)], vec![(1, 4)]]],
        };
        assert!(!same_as_reference(shape.clone(), 8));
        assert!(matches!(
            generate_random_parameters(shape, &mut ChaCha20Rng::from_seed([8; 32])),
            Err(SynthesisError::UnconstrainedVariable)
        ));
    }

    #[test]
    fn equals_the_reference_for_chosen_toxic_waste() {
        // τ on the domain (Lagrange basis degenerate), τ = 0, and a zero δ (refused).
        // Rows 0 and 5 hold every private variable, so that τ = ω^0 or ω^5 (where only that row's
        // Lagrange coefficient is nonzero) leaves none unconstrained.
        let mut shape = random_shape(11, 3, 10, 13);
        for row in [0, 5] {
            shape.constraints[row] = [vec![], vec![], (3..13).map(|v| (v, 4)).collect()];
        }
        let mut rng = ChaCha20Rng::from_seed([9; 32]);
        let base = ToxicWaste::random(&mut rng);
        let mut made = 0;
        let omega16 = {
            let mut w = Scalar::ROOT_OF_UNITY;
            for _ in 4..Scalar::S {
                w = w.square();
            }
            w
        };
        for toxic in [
            ToxicWaste {
                tau: pow(&omega16, 5),
                ..base
            },
            ToxicWaste {
                tau: Scalar::ONE,
                ..base
            },
            ToxicWaste {
                tau: Scalar::ZERO,
                ..base
            },
            ToxicWaste {
                delta: Scalar::ZERO,
                ..base
            },
            ToxicWaste {
                gamma: Scalar::ZERO,
                ..base
            },
            ToxicWaste {
                alpha: Scalar::ZERO,
                beta: Scalar::ZERO,
                ..base
            },
        ] {
            let ours = generate_parameters(shape.clone(), &toxic);
            let theirs = groth16::generate_parameters::<Bls12, _>(
                shape.clone(),
                toxic.g1,
                toxic.g2,
                toxic.alpha,
                toxic.beta,
                toxic.gamma,
                toxic.delta,
                toxic.tau,
            );
            match (ours, theirs) {
                (Ok(ours), Ok(theirs)) => {
                    assert!(bytes(&ours) == bytes(&theirs));
                    made += 1;
                }
                (Err(ours), Err(theirs)) => {
                    assert!(matches!(ours, SynthesisError::UnexpectedIdentity));
                    assert_eq!(ours.to_string(), theirs.to_string());
                }
                _ => panic!("one generator failed, the other did not"),
            }
        }
        assert_eq!(made, 4, "only a zero γ or δ is refused");
    }

    /// Poseidon (arity 8) of private inputs with a public digest: lode's own gadget.
    #[derive(Clone)]
    struct PoseidonDigest;

    impl Circuit<Scalar> for PoseidonDigest {
        fn synthesize<CS: ConstraintSystem<Scalar>>(
            self,
            cs: &mut CS,
        ) -> Result<(), SynthesisError> {
            use bellman::gadgets::num::AllocatedNum;
            let inputs = (0..8)
                .map(|i| {
                    AllocatedNum::alloc(cs.namespace(|| format!("in {i}")), || {
                        Err(SynthesisError::AssignmentMissing)
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let digest = crate::circuit::poseidon::poseidon_hash(cs.namespace(|| "hash"), &inputs)?;
            crate::circuit::poseidon::LinearNum::from(&digest).inputize(cs.namespace(|| "digest"))
        }
    }

    #[test]
    fn equals_the_reference_on_a_poseidon_gadget() {
        assert!(same_as_reference(PoseidonDigest, 12));
    }

    #[test]
    #[ignore = "real Groth16 proofs: run with --include-ignored"]
    fn equals_the_reference_on_the_2kib_window_post_circuit() {
        use crate::circuit::post::{PostCircuit, PostKind};
        use crate::sector::SectorSize;
        let id = PostKind::Window.params_id(SectorSize::S2KiB);
        let blank = || PostCircuit {
            kind: PostKind::Window,
            size: SectorSize::S2KiB,
            witness: None,
        };
        let ours = crate::params::generate_insecure(&id, blank()).unwrap();
        let theirs =
            groth16::generate_random_parameters::<Bls12, _, _>(blank(), &mut id.insecure_rng())
                .unwrap();
        assert!(bytes(&ours) == bytes(&theirs));
    }

    #[test]
    fn a_foreign_variable_is_an_error_not_a_panic() {
        struct Foreign;
        impl Circuit<Scalar> for Foreign {
            fn synthesize<CS: ConstraintSystem<Scalar>>(
                self,
                cs: &mut CS,
            ) -> Result<(), SynthesisError> {
                let x = Variable::new_unchecked(Index::Aux(5));
                cs.enforce(|| "c", |lc| lc + x, |lc| lc + x, |lc| lc + x);
                Ok(())
            }
        }
        let err = generate_random_parameters(Foreign, &mut ChaCha20Rng::from_seed([1; 32]));
        assert!(matches!(err, Err(SynthesisError::IoError(_))));
    }

    #[test]
    fn fixed_base_multiples_match_plain_multiplication() {
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let g = G1Projective::random(&mut rng);
        let mut scalars: Vec<Scalar> = (0..40).map(|_| Scalar::random(&mut rng)).collect();
        // Edge digits: zero, one, −1 (all windows full of ones), 2^(w−1) patterns, powers of two.
        scalars.extend([Scalar::ZERO, Scalar::ONE, -Scalar::ONE, -Scalar::from(2)]);
        scalars.extend((0..255).step_by(17).map(|k| pow(&Scalar::from(2), k)));
        scalars.push(Scalar::from(0x8000_8000_8000_8000u64));
        for window in [1, 2, 5, 8, 11, 16] {
            let table = FixedBase::new(g, window);
            let got = table.mul_batch(&scalars);
            for (s, p) in scalars.iter().zip(&got) {
                assert_eq!(*p, (g * s).to_affine(), "window {window}");
            }
        }
        let g2 = G2Projective::random(&mut rng);
        let table = FixedBase::new(g2, 7);
        for s in &scalars {
            assert_eq!(table.mul(s), g2 * s);
        }
    }

    #[test]
    fn window_grows_with_the_batch() {
        assert!(FixedBase::<G1Projective>::window_for(1) <= 4);
        assert!(FixedBase::<G1Projective>::window_for(1 << 22) >= 14);
        assert!(FixedBase::<G1Projective>::window_for(usize::MAX) <= MAX_WINDOW);
    }

    #[test]
    fn lagrange_coefficients_match_an_inverse_fft() {
        use bellman::domain::{EvaluationDomain, Scalar as S};
        use bellman::multicore::Worker;
        let tau = Scalar::from(123_456_789u64);
        for constraints in [1, 2, 5, 64, 1 << 15] {
            let domain = Domain::new(constraints).unwrap();
            let powers: Vec<S<Scalar>> = (0..domain.m).map(|i| S(pow(&tau, i as u64))).collect();
            let mut reference = EvaluationDomain::from_coeffs(powers).unwrap();
            reference.ifft(&Worker::new());
            let ours = domain.lagrange_at(&tau, &domain.z(&tau));
            assert!(ours.iter().zip(reference.as_ref()).all(|(a, b)| *a == b.0));
        }
    }
}
