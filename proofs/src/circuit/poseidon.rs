//! Gadgets for lode's Poseidon hash and what is built on it: inclusion in the Poseidon trees C and R,
//! column hashes, the replica encoding and `comm_r`.
//!
//! # Cost model
//!
//! The only multiplications in Poseidon are its S-boxes, `x^5`, which cost three constraints each
//! (`x·x`, `x²·x²`, `x⁴·x`). Round constants and the MDS layer are linear, so the state is kept as
//! [`LinearNum`]s (linear combinations with their witness values) and a variable is allocated only at
//! an S-box output. An S-box whose input is a constant (cell 0 of the first round holds the domain tag)
//! is evaluated natively and costs nothing. Poseidon of arity `a` therefore costs
//! `3·(8·(a + 1) − 1 + R_P)` constraints when every input is a variable, plus one when the digest is
//! allocated as an [`AllocatedNum`]; the `_lc` variants hand the digest back as a [`LinearNum`] so that
//! a chain of hashes (a Merkle path) allocates only its end.
//!
//! Placing a path node among its `2^k − 1` siblings takes the `2^k − k − 1` products of two or more
//! position bits, then one product per sibling (see [`insert_node`]): 11 constraints for arity 8.
//!
//! Errors: besides bellman's own (`AssignmentMissing` when a witness value is asked for but absent),
//! malformed arguments (an unsupported arity, siblings or bits that do not match the shape, a
//! non-canonical node) are reported as [`SynthesisError::IoError`] of kind
//! [`std::io::ErrorKind::InvalidInput`] with a message, since bellman's error type has no variant for
//! them.

use std::cmp::Ordering;
use std::ops::{Add, Neg, Sub};
use std::sync::OnceLock;

use bellman::gadgets::boolean::{AllocatedBit, Boolean};
use bellman::gadgets::num::AllocatedNum;
use bellman::{ConstraintSystem, Index, LinearCombination, SynthesisError, Variable};
use bls12_381::Scalar;
use ff::Field;

use crate::merkle::{MerkleProof, TreeShape};
use crate::node::Node;
use crate::poseidon::{self, PoseidonConstants, SUPPORTED_ARITIES};

/// Largest column a column hash takes (SPEC: 2 or 11 labels).
const MAX_COLUMN: usize = 11;

/// A malformed-argument error, carried in bellman's error type.
pub(crate) fn invalid<E>(error: E) -> SynthesisError
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    SynthesisError::IoError(std::io::Error::new(std::io::ErrorKind::InvalidInput, error))
}

/// Orders variables: inputs before auxiliaries, then by index.
fn var_key(var: &Variable) -> (bool, usize) {
    match var.get_unchecked() {
        Index::Input(i) => (false, i),
        Index::Aux(i) => (true, i),
    }
}

fn bool_scalar(b: bool) -> Scalar {
    if b { Scalar::ONE } else { Scalar::ZERO }
}

/// A linear combination of circuit variables plus a constant, together with its value when the
/// witness is known.
///
/// Arithmetic on `LinearNum`s (`+`, `-`, scaling, adding constants) adds no constraint; only
/// [`LinearNum::mul`], [`LinearNum::to_allocated`], [`LinearNum::inputize`] and
/// [`LinearNum::enforce_equal`] do. Terms are kept merged (one coefficient per variable), so repeated
/// linear layers do not blow the combination up.
#[derive(Clone, Debug)]
pub struct LinearNum {
    /// `(variable, coefficient)`, sorted by variable, no variable twice, no zero coefficient.
    terms: Vec<(Variable, Scalar)>,
    constant: Scalar,
    value: Option<Scalar>,
}

impl LinearNum {
    /// The constant 0.
    pub fn zero() -> Self {
        Self::constant(Scalar::ZERO)
    }

    /// A constant (known to every party; no variable).
    pub fn constant(c: Scalar) -> Self {
        LinearNum {
            terms: Vec::new(),
            constant: c,
            value: Some(c),
        }
    }

    /// One variable with coefficient 1, e.g. a public input allocated with
    /// [`ConstraintSystem::alloc_input`].
    pub fn from_variable(var: Variable, value: Option<Scalar>) -> Self {
        LinearNum {
            terms: vec![(var, Scalar::ONE)],
            constant: Scalar::ZERO,
            value,
        }
    }

    /// A boolean as 0 or 1 (a negated bit becomes `1 − bit`; a constant stays a constant).
    pub fn from_boolean(bit: &Boolean) -> Self {
        match bit {
            Boolean::Constant(b) => Self::constant(bool_scalar(*b)),
            Boolean::Is(a) => Self::from_variable(a.get_variable(), a.get_value().map(bool_scalar)),
            Boolean::Not(a) => {
                let v = Self::from_variable(a.get_variable(), a.get_value().map(bool_scalar));
                &Self::constant(Scalar::ONE) - &v
            }
        }
    }

    /// The value, when the witness is known (always for a constant).
    pub fn value(&self) -> Option<Scalar> {
        self.value
    }

    /// Whether no variable occurs (the value is then known during parameter generation too).
    pub fn is_constant(&self) -> bool {
        self.terms.is_empty()
    }

    /// Number of variables with a nonzero coefficient.
    pub fn num_terms(&self) -> usize {
        self.terms.len()
    }

    /// The combination as bellman's [`LinearCombination`], the constant carried by `CS::one()`.
    pub fn lc<CS: ConstraintSystem<Scalar>>(&self) -> LinearCombination<Scalar> {
        let mut lc = LinearCombination::zero();
        if self.constant != Scalar::ZERO {
            lc = lc + (self.constant, CS::one());
        }
        for &(var, coeff) in &self.terms {
            lc = lc + (coeff, var);
        }
        lc
    }

    /// `self · c`.
    pub fn scale(&self, c: Scalar) -> Self {
        if c == Scalar::ZERO {
            return Self::zero();
        }
        LinearNum {
            terms: self.terms.iter().map(|&(v, k)| (v, k * c)).collect(),
            constant: self.constant * c,
            value: self.value.map(|x| x * c),
        }
    }

    /// `self + c`.
    pub fn add_constant(&self, c: Scalar) -> Self {
        let mut out = self.clone();
        out.add_constant_assign(c);
        out
    }

    fn add_constant_assign(&mut self, c: Scalar) {
        self.constant += c;
        self.value = self.value.map(|x| x + c);
    }

    /// `self += coeff · other`, merging terms of the same variable.
    fn add_scaled_assign(&mut self, coeff: Scalar, other: &LinearNum) {
        if coeff == Scalar::ZERO {
            return;
        }
        self.constant += coeff * other.constant;
        self.value = match (self.value, other.value) {
            (Some(a), Some(b)) => Some(a + coeff * b),
            _ => None,
        };
        let appends = match (self.terms.last(), other.terms.first()) {
            (Some(last), Some(first)) => var_key(&last.0) < var_key(&first.0),
            _ => true,
        };
        if appends {
            // Every new variable comes after ours (the common case: fresh S-box outputs).
            self.terms
                .extend(other.terms.iter().map(|&(v, k)| (v, k * coeff)));
        } else {
            let (a, b) = (&self.terms, &other.terms);
            let mut merged = Vec::with_capacity(a.len() + b.len());
            let (mut i, mut j) = (0, 0);
            while i < a.len() && j < b.len() {
                match var_key(&a[i].0).cmp(&var_key(&b[j].0)) {
                    Ordering::Less => {
                        merged.push(a[i]);
                        i += 1;
                    }
                    Ordering::Greater => {
                        merged.push((b[j].0, b[j].1 * coeff));
                        j += 1;
                    }
                    Ordering::Equal => {
                        let k = a[i].1 + b[j].1 * coeff;
                        if k != Scalar::ZERO {
                            merged.push((a[i].0, k));
                        }
                        i += 1;
                        j += 1;
                    }
                }
            }
            merged.extend_from_slice(&a[i..]);
            merged.extend(b[j..].iter().map(|&(v, k)| (v, k * coeff)));
            self.terms = merged;
        }
        if self.terms.is_empty() {
            // Everything cancelled: the value is the constant even without a witness.
            self.value = Some(self.constant);
        }
    }

    /// `a · b`: one constraint and one new variable, or none when either side is a constant.
    pub fn mul<CS: ConstraintSystem<Scalar>>(
        mut cs: CS,
        a: &LinearNum,
        b: &LinearNum,
    ) -> Result<LinearNum, SynthesisError> {
        if a.is_constant() {
            return Ok(b.scale(a.constant));
        }
        if b.is_constant() {
            return Ok(a.scale(b.constant));
        }
        let value = a.value.zip(b.value).map(|(x, y)| x * y);
        let product = cs.alloc(
            || "product",
            || value.ok_or(SynthesisError::AssignmentMissing),
        )?;
        cs.enforce(
            || "a * b = product",
            |_| a.lc::<CS>(),
            |_| b.lc::<CS>(),
            |lc| lc + product,
        );
        Ok(LinearNum::from_variable(product, value))
    }

    /// Allocates a variable equal to `self` (one constraint).
    pub fn to_allocated<CS: ConstraintSystem<Scalar>>(
        &self,
        mut cs: CS,
    ) -> Result<AllocatedNum<Scalar>, SynthesisError> {
        let value = self.value;
        let num = AllocatedNum::alloc(cs.namespace(|| "value"), || {
            value.ok_or(SynthesisError::AssignmentMissing)
        })?;
        cs.enforce(
            || "value = combination",
            |_| self.lc::<CS>(),
            |lc| lc + CS::one(),
            |lc| lc + num.get_variable(),
        );
        Ok(num)
    }

    /// Makes `self` a public input (one constraint): allocates the input and enforces equality.
    pub fn inputize<CS: ConstraintSystem<Scalar>>(&self, mut cs: CS) -> Result<(), SynthesisError> {
        let value = self.value;
        let input = cs.alloc_input(
            || "input",
            || value.ok_or(SynthesisError::AssignmentMissing),
        )?;
        cs.enforce(
            || "input = combination",
            |_| self.lc::<CS>(),
            |lc| lc + CS::one(),
            |lc| lc + input,
        );
        Ok(())
    }

    /// Enforces `a == b` (one constraint, even between constants, so counts never depend on values).
    pub fn enforce_equal<CS: ConstraintSystem<Scalar>>(
        mut cs: CS,
        a: &LinearNum,
        b: &LinearNum,
    ) -> Result<(), SynthesisError> {
        let diff = a - b;
        cs.enforce(
            || "a = b",
            |_| diff.lc::<CS>(),
            |lc| lc + CS::one(),
            |lc| lc,
        );
        Ok(())
    }
}

impl From<&AllocatedNum<Scalar>> for LinearNum {
    fn from(num: &AllocatedNum<Scalar>) -> Self {
        LinearNum::from_variable(num.get_variable(), num.get_value())
    }
}

impl From<AllocatedNum<Scalar>> for LinearNum {
    fn from(num: AllocatedNum<Scalar>) -> Self {
        LinearNum::from(&num)
    }
}

impl Add<&LinearNum> for &LinearNum {
    type Output = LinearNum;

    fn add(self, other: &LinearNum) -> LinearNum {
        let mut out = self.clone();
        out.add_scaled_assign(Scalar::ONE, other);
        out
    }
}

impl Sub<&LinearNum> for &LinearNum {
    type Output = LinearNum;

    fn sub(self, other: &LinearNum) -> LinearNum {
        let mut out = self.clone();
        out.add_scaled_assign(-Scalar::ONE, other);
        out
    }
}

impl Neg for &LinearNum {
    type Output = LinearNum;

    fn neg(self) -> LinearNum {
        self.scale(-Scalar::ONE)
    }
}

/// `x^5`: three constraints, none for a constant.
fn quintic<CS: ConstraintSystem<Scalar>>(
    mut cs: CS,
    x: &LinearNum,
) -> Result<LinearNum, SynthesisError> {
    let x2 = LinearNum::mul(cs.namespace(|| "x^2"), x, x)?;
    let x4 = LinearNum::mul(cs.namespace(|| "x^4"), &x2, &x2)?;
    LinearNum::mul(cs.namespace(|| "x^5"), &x4, x)
}

/// `new[i] = sum_j state[j] · M[j][i]`.
fn mix(mds: &[Vec<Scalar>], state: &[LinearNum]) -> Vec<LinearNum> {
    (0..state.len())
        .map(|i| {
            let mut acc = LinearNum::zero();
            for (x, row) in state.iter().zip(mds) {
                acc.add_scaled_assign(row[i], x);
            }
            acc
        })
        .collect()
}

/// Checks that the parameters fit a state of their width (they always do for [`poseidon::constants`]),
/// so that no slicing below can go out of bounds.
fn check_params(params: &PoseidonConstants, state: &[LinearNum]) -> Result<(), SynthesisError> {
    let t = params.width();
    let ok = state.len() == t
        && params.mds().len() == t
        && params.mds().iter().all(|row| row.len() == t)
        && params.full_rounds() >= 2
        && params.full_rounds().is_multiple_of(2)
        && params.round_constants().len() == t * (params.full_rounds() + params.partial_rounds());
    if ok {
        Ok(())
    } else {
        Err(invalid("Poseidon parameters do not match the state width"))
    }
}

/// A linear form over atoms: coefficients (a prefix of the atoms) and a constant.
type Form = (Vec<Scalar>, Scalar);

/// The partial rounds of one arity, unrolled once over their "atoms": the `t` S-box outputs `y` of the
/// last full round before them, then the S-box output `z_r` of each partial round. Every S-box input
/// of the partial rounds, and the state after them, is a fixed linear form in these atoms; computing
/// the forms natively once lets synthesis build each combination directly (`t + r` terms in round
/// `r`) instead of pushing growing combinations through the dense MDS matrix every round.
struct PartialRounds {
    /// For partial round `r`: its S-box input, over `y` and `z_0 .. z_(r−1)`.
    sbox_inputs: Vec<Form>,
    /// The state after the last partial round's MDS layer, over all atoms.
    outputs: Vec<Form>,
}

impl PartialRounds {
    fn new(params: &PoseidonConstants) -> Self {
        let t = params.width();
        let half = params.full_rounds() / 2;
        let rp = params.partial_rounds();
        let mds = params.mds();
        let atoms = t + rp;
        // After the last MDS layer of the first half: state_i = sum_j M[j][i] · y_j.
        let mut state: Vec<Form> = (0..t)
            .map(|i| {
                let mut coeffs = vec![Scalar::ZERO; atoms];
                for (c, row) in coeffs.iter_mut().zip(mds) {
                    *c = row[i];
                }
                (coeffs, Scalar::ZERO)
            })
            .collect();
        let mut sbox_inputs = Vec::with_capacity(rp);
        let rounds = params.round_constants().chunks_exact(t).skip(half).take(rp);
        for (r, constants) in rounds.enumerate() {
            let live = t + r;
            for (cell, &c) in state.iter_mut().zip(constants) {
                cell.1 += c;
            }
            if let Some(first) = state.first_mut() {
                sbox_inputs.push((first.0[..live].to_vec(), first.1));
                // Cell 0 is now the fresh atom z_r.
                first.0.fill(Scalar::ZERO);
                first.0[live] = Scalar::ONE;
                first.1 = Scalar::ZERO;
            }
            let live = live + 1;
            state = (0..t)
                .map(|i| {
                    let mut coeffs = vec![Scalar::ZERO; atoms];
                    let mut constant = Scalar::ZERO;
                    for (cell, row) in state.iter().zip(mds) {
                        let m = row[i];
                        for (a, b) in coeffs[..live].iter_mut().zip(&cell.0[..live]) {
                            *a += m * b;
                        }
                        constant += m * cell.1;
                    }
                    (coeffs, constant)
                })
                .collect();
        }
        PartialRounds {
            sbox_inputs,
            outputs: state,
        }
    }

    /// The tables for `params` (one of [`poseidon::constants`]), built on first use.
    fn get(params: &PoseidonConstants) -> Result<&'static PartialRounds, SynthesisError> {
        static CACHE: [OnceLock<PartialRounds>; SUPPORTED_ARITIES.len()] =
            [const { OnceLock::new() }; SUPPORTED_ARITIES.len()];
        let slot = SUPPORTED_ARITIES
            .iter()
            .position(|&a| a == params.arity())
            .ok_or_else(|| invalid(format!("unsupported Poseidon arity {}", params.arity())))?;
        Ok(CACHE[slot].get_or_init(|| PartialRounds::new(params)))
    }
}

/// `sum_k coeffs[k] · atoms[k] + constant`.
fn combine(form: &Form, atoms: &[LinearNum]) -> LinearNum {
    let mut x = LinearNum::constant(form.1);
    for (&k, atom) in form.0.iter().zip(atoms) {
        x.add_scaled_assign(k, atom);
    }
    x
}

/// One round: round constants on every cell, S-boxes on the first `sboxes` cells (all of them in a
/// full round, cell 0 in a partial one), then the MDS layer when `mix_after` holds.
fn apply_round<CS: ConstraintSystem<Scalar>>(
    mut cs: CS,
    params: &PoseidonConstants,
    round: usize,
    state: &mut Vec<LinearNum>,
    sboxes: usize,
    mix_after: bool,
) -> Result<(), SynthesisError> {
    let t = params.width();
    let constants = params.round_constants().chunks_exact(t).nth(round);
    for (x, &c) in state.iter_mut().zip(constants.into_iter().flatten()) {
        x.add_constant_assign(c);
    }
    for (i, x) in state.iter_mut().take(sboxes).enumerate() {
        *x = quintic(cs.namespace(|| format!("s-box {i}")), x)?;
    }
    if mix_after {
        *state = mix(params.mds(), state);
    }
    Ok(())
}

/// The Poseidon permutation on a full state (`width` cells) with the parameters of
/// [`poseidon::constants`]. It enforces exactly the round structure of the reference permutation;
/// the partial rounds go through [`PartialRounds`] to keep synthesis fast.
fn permute<CS: ConstraintSystem<Scalar>>(
    mut cs: CS,
    params: &PoseidonConstants,
    mut state: Vec<LinearNum>,
) -> Result<Vec<LinearNum>, SynthesisError> {
    check_params(params, &state)?;
    let half = params.full_rounds() / 2;
    let rp = params.partial_rounds();
    let t = params.width();
    for round in 0..half {
        // The MDS layer of the last round before the partial ones is part of the tables.
        apply_round(
            cs.namespace(|| format!("round {round}")),
            params,
            round,
            &mut state,
            t,
            round + 1 < half,
        )?;
    }
    let tables = PartialRounds::get(params)?;
    let mut atoms = state;
    atoms.reserve(rp);
    for (r, form) in tables.sbox_inputs.iter().enumerate() {
        let round = half + r;
        let x = combine(form, &atoms);
        let mut cs = cs.namespace(|| format!("round {round}"));
        atoms.push(quintic(cs.namespace(|| "s-box 0"), &x)?);
    }
    let mut state: Vec<LinearNum> = tables.outputs.iter().map(|f| combine(f, &atoms)).collect();
    for round in half + rp..params.full_rounds() + rp {
        apply_round(
            cs.namespace(|| format!("round {round}")),
            params,
            round,
            &mut state,
            t,
            true,
        )?;
    }
    Ok(state)
}

/// The permutation exactly as the reference states it, every round through the dense MDS layer: the
/// yardstick [`permute`] is tested against (same constraints, same values).
#[cfg(test)]
fn permute_plain<CS: ConstraintSystem<Scalar>>(
    mut cs: CS,
    params: &PoseidonConstants,
    mut state: Vec<LinearNum>,
) -> Result<Vec<LinearNum>, SynthesisError> {
    check_params(params, &state)?;
    let half = params.full_rounds() / 2;
    let partial = half..half + params.partial_rounds();
    let rounds = params.full_rounds() + params.partial_rounds();
    for round in 0..rounds {
        let sboxes = if partial.contains(&round) {
            1
        } else {
            params.width()
        };
        apply_round(
            cs.namespace(|| format!("round {round}")),
            params,
            round,
            &mut state,
            sboxes,
            true,
        )?;
    }
    Ok(state)
}

/// Poseidon of `inputs` (arity `inputs.len()`: 2, 4, 8, 11 or 16), the digest left as a linear
/// combination: `3·(8·(arity + 1) − 1 + R_P)` constraints when no input is a constant.
pub fn poseidon_hash_lc<CS: ConstraintSystem<Scalar>>(
    cs: CS,
    inputs: &[LinearNum],
) -> Result<LinearNum, SynthesisError> {
    let params = poseidon::constants(inputs.len()).map_err(invalid)?;
    let mut state = Vec::with_capacity(params.width());
    state.push(LinearNum::constant(params.domain_tag()));
    state.extend_from_slice(inputs);
    let state = permute(cs, params, state)?;
    state
        .into_iter()
        .nth(1)
        .ok_or_else(|| invalid("Poseidon state has no output cell"))
}

/// Poseidon of allocated `inputs` (arity `inputs.len()`: 2, 4, 8, 11 or 16), equal to
/// [`crate::poseidon::hash`]; one constraint more than [`poseidon_hash_lc`] to allocate the digest.
pub fn poseidon_hash<CS: ConstraintSystem<Scalar>>(
    mut cs: CS,
    inputs: &[AllocatedNum<Scalar>],
) -> Result<AllocatedNum<Scalar>, SynthesisError> {
    let inputs: Vec<LinearNum> = inputs.iter().map(LinearNum::from).collect();
    let digest = poseidon_hash_lc(cs.namespace(|| "poseidon"), &inputs)?;
    digest.to_allocated(cs.namespace(|| "digest"))
}

/// The children of a tree node: `node` inserted among its `siblings` (in order) at the position whose
/// little-endian bits are `position` (`siblings.len() + 1 == 2^position.len()`).
///
/// With `g_j = [position > j]`, child `j` is `s_(j−1) + P_j − P_(j−1)` where `P_j = g_j·(s_j − node)`
/// (child 0 is `node + P_0`, the last child `s_(a−2) − P_(a−2)`). Each `g_j` is linear in the products
/// of the position bits, so the cost is `2^k − k − 1` constraints for those products (4 for arity 8,
/// 1 for arity 4, 0 for arity 2) plus one per sibling: 11 for arity 8, 4 for arity 4, 1 for arity 2.
/// The bits must be booleans (as [`Boolean`] guarantees); no constraint is added on them here.
pub fn insert_node<CS: ConstraintSystem<Scalar>>(
    mut cs: CS,
    node: &LinearNum,
    siblings: &[LinearNum],
    position: &[Boolean],
) -> Result<Vec<LinearNum>, SynthesisError> {
    let arity = siblings.len() + 1;
    let k = position.len();
    if u32::try_from(k)
        .ok()
        .and_then(|k| 1usize.checked_shl(k))
        .filter(|&a| a == arity)
        .is_none()
    {
        return Err(invalid(format!(
            "{} siblings cannot be addressed by {k} position bits",
            siblings.len()
        )));
    }
    // monomials[mask] = product of the bits in `mask` (mask 0: the constant 1).
    let mut monomials: Vec<LinearNum> = Vec::with_capacity(arity);
    monomials.push(LinearNum::constant(Scalar::ONE));
    for mask in 1..arity {
        let top = (usize::BITS - 1 - mask.leading_zeros()) as usize;
        let rest = mask & !(1 << top);
        let bit = LinearNum::from_boolean(&position[top]);
        let m = LinearNum::mul(
            cs.namespace(|| format!("bits {mask:b}")),
            &monomials[rest],
            &bit,
        )?;
        monomials.push(m);
    }
    // [position == p] = prod_{i in p} b_i * prod_{i not in p} (1 - b_i)
    //                 = sum over masks containing p of (-1)^{|mask \ p|} monomials[mask].
    let one_hot = |p: usize| {
        let mut e = LinearNum::zero();
        for (mask, m) in monomials.iter().enumerate() {
            if mask & p == p {
                let sign = if (mask ^ p).count_ones().is_multiple_of(2) {
                    Scalar::ONE
                } else {
                    -Scalar::ONE
                };
                e.add_scaled_assign(sign, m);
            }
        }
        e
    };
    // greater[j] = [position > j] = sum_{p > j} [position == p], for j < arity - 1.
    let mut greater = vec![LinearNum::zero(); arity - 1];
    let mut acc = LinearNum::zero();
    for j in (0..arity - 1).rev() {
        acc = &acc + &one_hot(j + 1);
        greater[j] = acc.clone();
    }
    let mut products = Vec::with_capacity(arity - 1);
    for (j, (g, s)) in greater.iter().zip(siblings).enumerate() {
        products.push(LinearNum::mul(
            cs.namespace(|| format!("select {j}")),
            g,
            &(s - node),
        )?);
    }
    let mut children = Vec::with_capacity(arity);
    for j in 0..arity {
        let child = match j {
            0 => node + &products[0],
            _ if j == arity - 1 => &siblings[j - 1] - &products[j - 1],
            _ => &(&siblings[j - 1] + &products[j]) - &products[j - 1],
        };
        children.push(child);
    }
    Ok(children)
}

/// `log2(arity)` for a power-of-two arity of at least 2.
fn level_bits(arity: usize) -> Result<usize, SynthesisError> {
    if arity >= 2 && arity.is_power_of_two() {
        Ok(arity.trailing_zeros() as usize)
    } else {
        Err(invalid(format!(
            "tree level of arity {arity} is not addressed by bits"
        )))
    }
}

/// Number of index bits a path in `shape` takes: `log2(arity)` per level (every arity must be a power
/// of two, as in [`TreeShape::octal`]).
pub fn index_bits_len(shape: &TreeShape) -> Result<usize, SynthesisError> {
    shape.arities().iter().map(|&a| level_bits(a)).sum()
}

/// The root of a Poseidon tree of `shape` reached from `leaf` (the root left as a linear combination).
///
/// `siblings[l]` are the `arity − 1` siblings at level `l` (bottom first, in order, without the path
/// node, as in [`MerkleProof`]); `index_bits` are the little-endian bits of the leaf index,
/// `log2(arity)` per level. Each level costs [`insert_node`] plus [`poseidon_hash_lc`]: 11 + 384 = 395
/// constraints at arity 8, 1 + 234 = 235 at arity 2, 4 + 285 = 289 at arity 4.
pub fn merkle_root_lc<CS: ConstraintSystem<Scalar>>(
    mut cs: CS,
    shape: &TreeShape,
    leaf: &LinearNum,
    siblings: &[Vec<LinearNum>],
    index_bits: &[Boolean],
) -> Result<LinearNum, SynthesisError> {
    if siblings.len() != shape.height() {
        return Err(invalid(format!(
            "{} levels of siblings for a tree of height {}",
            siblings.len(),
            shape.height()
        )));
    }
    let needed = index_bits_len(shape)?;
    if index_bits.len() != needed {
        return Err(invalid(format!(
            "{} index bits for a tree addressed by {needed}",
            index_bits.len()
        )));
    }
    let mut node = leaf.clone();
    let mut bits = index_bits;
    for (level, (&arity, sibs)) in shape.arities().iter().zip(siblings).enumerate() {
        if sibs.len() + 1 != arity {
            return Err(invalid(format!(
                "{} siblings at level {level} of arity {arity}",
                sibs.len()
            )));
        }
        let (here, rest) = bits.split_at(level_bits(arity)?);
        bits = rest;
        let mut cs = cs.namespace(|| format!("level {level}"));
        let children = insert_node(cs.namespace(|| "insert"), &node, sibs, here)?;
        node = poseidon_hash_lc(cs.namespace(|| "hash"), &children)?;
    }
    Ok(node)
}

/// The root of a Poseidon tree of `shape` reached from an allocated `leaf`, `siblings` and index bits
/// (see [`merkle_root_lc`]), allocated (one more constraint). Equal to
/// [`MerkleProof::compute_root`] with [`crate::merkle::PoseidonTree`]; the caller decides what the
/// root is checked against (a public input, another gadget's output).
pub fn merkle_root<CS, S>(
    mut cs: CS,
    shape: &TreeShape,
    leaf: &AllocatedNum<Scalar>,
    siblings: &[S],
    index_bits: &[Boolean],
) -> Result<AllocatedNum<Scalar>, SynthesisError>
where
    CS: ConstraintSystem<Scalar>,
    S: AsRef<[AllocatedNum<Scalar>]>,
{
    let siblings: Vec<Vec<LinearNum>> = siblings
        .iter()
        .map(|level| level.as_ref().iter().map(LinearNum::from).collect())
        .collect();
    let root = merkle_root_lc(
        cs.namespace(|| "path"),
        shape,
        &LinearNum::from(leaf),
        &siblings,
        index_bits,
    )?;
    root.to_allocated(cs.namespace(|| "root"))
}

/// Allocates the `bits` little-endian bits of a leaf index (one booleanity constraint each).
/// `index` is `None` when synthesizing without a witness; an index that does not fit is an error.
pub fn alloc_index_bits<CS: ConstraintSystem<Scalar>>(
    mut cs: CS,
    index: Option<u64>,
    bits: usize,
) -> Result<Vec<Boolean>, SynthesisError> {
    if bits > 64 {
        return Err(invalid(format!("a u64 index has no {bits} bits")));
    }
    if let Some(i) = index
        && bits < 64
        && i >> bits != 0
    {
        return Err(invalid(format!("index {i} does not fit in {bits} bits")));
    }
    (0..bits)
        .map(|b| {
            let bit = AllocatedBit::alloc(
                cs.namespace(|| format!("bit {b}")),
                index.map(|i| (i >> b) & 1 == 1),
            )?;
            Ok(Boolean::from(bit))
        })
        .collect()
}

/// `sum_i 2^i · bits[i]`, no constraint: with [`LinearNum::inputize`] or
/// [`LinearNum::enforce_equal`] an index is tied to a public input by one constraint.
pub fn pack_bits(bits: &[Boolean]) -> LinearNum {
    let mut packed = LinearNum::zero();
    let mut weight = Scalar::ONE;
    for bit in bits {
        packed.add_scaled_assign(weight, &LinearNum::from_boolean(bit));
        weight = weight.double();
    }
    packed
}

/// Allocates a node's value; a non-canonical node is an error.
pub(crate) fn alloc_node<CS: ConstraintSystem<Scalar>>(
    cs: CS,
    node: Option<&Node>,
) -> Result<AllocatedNum<Scalar>, SynthesisError> {
    let value = node
        .map(|n| {
            n.to_fr()
                .ok_or_else(|| invalid("node is not a canonical field element"))
        })
        .transpose()?;
    AllocatedNum::alloc(cs, || value.ok_or(SynthesisError::AssignmentMissing))
}

/// A Merkle path allocated in a circuit: the leaf, the siblings per level and the index bits.
#[derive(Clone)]
pub struct AllocatedPath {
    /// The leaf.
    pub leaf: AllocatedNum<Scalar>,
    /// For each level from the bottom, the `arity − 1` siblings in order, without the path node.
    pub siblings: Vec<Vec<AllocatedNum<Scalar>>>,
    /// Little-endian bits of the leaf index, `log2(arity)` per level.
    pub index_bits: Vec<Boolean>,
}

impl AllocatedPath {
    /// Allocates the path of `proof` in a tree of `shape`, or a witness-free path of that shape when
    /// `proof` is `None` (parameter generation). Costs one constraint per index bit; a proof that does
    /// not have the shape is an error.
    pub fn alloc<CS: ConstraintSystem<Scalar>>(
        mut cs: CS,
        shape: &TreeShape,
        proof: Option<&MerkleProof>,
    ) -> Result<Self, SynthesisError> {
        let bits = index_bits_len(shape)?;
        if let Some(p) = proof {
            if p.index >= shape.leaves() {
                return Err(invalid(format!(
                    "leaf index {} is out of range for {} leaves",
                    p.index,
                    shape.leaves()
                )));
            }
            if p.siblings.len() != shape.height()
                || p.siblings
                    .iter()
                    .zip(shape.arities())
                    .any(|(s, &a)| s.len() + 1 != a)
            {
                return Err(invalid("the proof does not have the tree's shape"));
            }
        }
        let leaf = alloc_node(cs.namespace(|| "leaf"), proof.map(|p| &p.leaf))?;
        let mut siblings = Vec::with_capacity(shape.height());
        for (level, &arity) in shape.arities().iter().enumerate() {
            let mut row = Vec::with_capacity(arity - 1);
            for i in 0..arity - 1 {
                row.push(alloc_node(
                    cs.namespace(|| format!("sibling {level}.{i}")),
                    proof.map(|p| &p.siblings[level][i]),
                )?);
            }
            siblings.push(row);
        }
        let index_bits = alloc_index_bits(cs.namespace(|| "index"), proof.map(|p| p.index), bits)?;
        Ok(AllocatedPath {
            leaf,
            siblings,
            index_bits,
        })
    }

    /// The root this path leads to in a tree of `shape` (see [`merkle_root`]).
    pub fn root<CS: ConstraintSystem<Scalar>>(
        &self,
        cs: CS,
        shape: &TreeShape,
    ) -> Result<AllocatedNum<Scalar>, SynthesisError> {
        merkle_root(cs, shape, &self.leaf, &self.siblings, &self.index_bits)
    }

    /// The leaf index packed from its bits (no constraint).
    pub fn index(&self) -> LinearNum {
        pack_bits(&self.index_bits)
    }
}

/// Column hash, Poseidon over the `L` labels of a column (`L` = 2 or 11 in the protocol; 2, 4, 8 or 11
/// accepted, as by [`crate::sdr::column_hash`]).
pub fn column_hash<CS: ConstraintSystem<Scalar>>(
    cs: CS,
    labels: &[AllocatedNum<Scalar>],
) -> Result<AllocatedNum<Scalar>, SynthesisError> {
    if labels.len() > MAX_COLUMN {
        return Err(invalid(format!(
            "a column has at most {MAX_COLUMN} labels, got {}",
            labels.len()
        )));
    }
    poseidon_hash(cs, labels)
}

/// `replica = data + key`, allocated (one constraint), as [`crate::sdr::encode`].
pub fn encode<CS: ConstraintSystem<Scalar>>(
    mut cs: CS,
    data: &AllocatedNum<Scalar>,
    key: &AllocatedNum<Scalar>,
) -> Result<AllocatedNum<Scalar>, SynthesisError> {
    let sum = &LinearNum::from(data) + &LinearNum::from(key);
    sum.to_allocated(cs.namespace(|| "replica"))
}

/// Enforces `replica == data + key` between existing variables (one constraint).
pub fn enforce_encoding<CS: ConstraintSystem<Scalar>>(
    cs: CS,
    data: &AllocatedNum<Scalar>,
    key: &AllocatedNum<Scalar>,
    replica: &AllocatedNum<Scalar>,
) -> Result<(), SynthesisError> {
    let sum = &LinearNum::from(data) + &LinearNum::from(key);
    LinearNum::enforce_equal(cs, &sum, &LinearNum::from(replica))
}

/// `comm_r = Poseidon_2(comm_c, comm_r_last)`, as [`crate::sdr::comm_r`].
pub fn comm_r<CS: ConstraintSystem<Scalar>>(
    cs: CS,
    comm_c: &AllocatedNum<Scalar>,
    comm_r_last: &AllocatedNum<Scalar>,
) -> Result<AllocatedNum<Scalar>, SynthesisError> {
    poseidon_hash(cs, &[comm_c.clone(), comm_r_last.clone()])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bellman::Circuit;
    use bellman::gadgets::test::TestConstraintSystem;
    use bls12_381::{Bls12, G1Projective, G2Projective};

    use crate::merkle::{DiskTree, PoseidonTree, TreeConfig};
    use crate::node::trunc254;
    use crate::sdr;

    /// `n` field elements from a BLAKE3 XOF keyed by `seed`, each 32 bytes cut to 254 bits.
    fn scalars(seed: &str, n: usize) -> Vec<Scalar> {
        let mut xof = blake3::Hasher::new().update(seed.as_bytes()).finalize_xof();
        (0..n)
            .map(|_| {
                let mut bytes = [0u8; 32];
                xof.fill(&mut bytes);
                trunc254(bytes).to_fr().unwrap()
            })
            .collect()
    }

    fn nodes(seed: &str, n: usize) -> Vec<Node> {
        scalars(seed, n).iter().map(Node::from_fr).collect()
    }

    fn alloc_all<CS: ConstraintSystem<Scalar>>(
        mut cs: CS,
        values: &[Option<Scalar>],
    ) -> Vec<AllocatedNum<Scalar>> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                AllocatedNum::alloc(cs.namespace(|| format!("in {i}")), || {
                    v.ok_or(SynthesisError::AssignmentMissing)
                })
                .unwrap()
            })
            .collect()
    }

    /// Counts without asking for values, as parameter generation synthesizes.
    use super::super::Counter as CountingCs;

    /// Constraints of Poseidon over `arity` variables, digest left as a linear combination.
    fn hash_cost(arity: usize) -> usize {
        let c = poseidon::constants(arity).unwrap();
        3 * (c.full_rounds() * c.width() - 1 + c.partial_rounds())
    }

    fn insert_cost(arity: usize) -> usize {
        let k = arity.trailing_zeros() as usize;
        (arity - k - 1) + (arity - 1)
    }

    /// Constraints of `merkle_root` (allocated root) over a shape.
    fn root_cost(shape: &TreeShape) -> usize {
        shape
            .arities()
            .iter()
            .map(|&a| insert_cost(a) + hash_cost(a))
            .sum::<usize>()
            + 1
    }

    #[test]
    fn poseidon_matches_native_for_every_arity() {
        for arity in SUPPORTED_ARITIES {
            for case in 0..4 {
                let inputs = scalars(&format!("poseidon {arity} {case}"), arity);
                let mut cs = TestConstraintSystem::new();
                let values: Vec<_> = inputs.iter().copied().map(Some).collect();
                let vars = alloc_all(cs.namespace(|| "inputs"), &values);
                let out = poseidon_hash(cs.namespace(|| "hash"), &vars).unwrap();
                assert_eq!(out.get_value(), Some(poseidon::hash(&inputs).unwrap()));
                assert!(cs.is_satisfied(), "{:?}", cs.which_is_unsatisfied());
                assert_eq!(cs.num_constraints(), hash_cost(arity) + 1);
            }
            let mut counting = CountingCs::default();
            let vars = alloc_all(&mut counting, &vec![None; arity]);
            let out = poseidon_hash(&mut counting, &vars).unwrap();
            assert_eq!(out.get_value(), None);
            assert_eq!(counting.0.constraints, hash_cost(arity) + 1);
        }
    }

    /// The fast synthesis builds the very same R1CS as the literal round-by-round one: same
    /// constraints (compared through bellman's canonical hash of the constraint system), same values.
    #[test]
    fn fast_synthesis_matches_the_plain_rounds() {
        for arity in SUPPORTED_ARITIES {
            let inputs = scalars(&format!("plain {arity}"), arity);
            let values: Vec<_> = inputs.iter().copied().map(Some).collect();
            let params = poseidon::constants(arity).unwrap();
            let mut hashes = Vec::new();
            for plain in [false, true] {
                let mut cs = TestConstraintSystem::new();
                let vars = alloc_all(cs.namespace(|| "inputs"), &values);
                let mut state = vec![LinearNum::constant(params.domain_tag())];
                state.extend(vars.iter().map(LinearNum::from));
                let out = if plain {
                    permute_plain(cs.namespace(|| "permutation"), params, state)
                } else {
                    permute(cs.namespace(|| "permutation"), params, state)
                }
                .unwrap();
                for (i, cell) in out.iter().enumerate() {
                    cell.to_allocated(cs.namespace(|| format!("cell {i}")))
                        .unwrap();
                }
                assert_eq!(
                    out[1].value(),
                    Some(poseidon::hash_reference(&inputs).unwrap())
                );
                assert!(cs.is_satisfied());
                assert_eq!(cs.num_constraints(), hash_cost(arity) + arity + 1);
                hashes.push(cs.hash());
            }
            assert_eq!(hashes[0], hashes[1], "arity {arity}");
        }
    }

    #[test]
    fn poseidon_constraint_counts() {
        let counts: Vec<(usize, usize)> = SUPPORTED_ARITIES
            .iter()
            .map(|&a| (a, hash_cost(a) + 1))
            .collect();
        assert_eq!(counts, [(2, 235), (4, 286), (8, 385), (11, 457), (16, 583)]);
    }

    #[test]
    fn poseidon_of_edge_values() {
        for arity in SUPPORTED_ARITIES {
            for fill in [Scalar::ZERO, Scalar::ONE, -Scalar::ONE] {
                let inputs = vec![fill; arity];
                let mut cs = TestConstraintSystem::new();
                let values: Vec<_> = inputs.iter().copied().map(Some).collect();
                let vars = alloc_all(cs.namespace(|| "inputs"), &values);
                let out = poseidon_hash(cs.namespace(|| "hash"), &vars).unwrap();
                assert_eq!(out.get_value(), Some(poseidon::hash(&inputs).unwrap()));
                assert!(cs.is_satisfied());
            }
        }
    }

    #[test]
    fn constant_inputs_are_folded() {
        let inputs = scalars("constants", 4);
        let mut cs = TestConstraintSystem::new();
        let vars = alloc_all(
            cs.namespace(|| "inputs"),
            &[Some(inputs[1]), Some(inputs[3])],
        );
        let lcs = [
            LinearNum::constant(inputs[0]),
            LinearNum::from(&vars[0]),
            LinearNum::constant(inputs[2]),
            LinearNum::from(&vars[1]),
        ];
        let out = poseidon_hash_lc(cs.namespace(|| "hash"), &lcs).unwrap();
        assert_eq!(out.value(), Some(poseidon::hash(&inputs).unwrap()));
        assert!(cs.is_satisfied());
        // Two more first-round S-boxes fold.
        assert_eq!(cs.num_constraints(), hash_cost(4) - 6);

        let all_constant: Vec<_> = inputs.iter().map(|&x| LinearNum::constant(x)).collect();
        let mut cs = TestConstraintSystem::new();
        let out = poseidon_hash_lc(&mut cs, &all_constant).unwrap();
        // Constants all the way: evaluated natively, nothing enforced.
        assert!(out.is_constant());
        assert_eq!(out.value(), Some(poseidon::hash(&inputs).unwrap()));
        assert_eq!(cs.num_constraints(), 0);
    }

    #[test]
    fn tampered_sbox_is_caught() {
        let inputs = scalars("tamper", 8);
        let mut cs = TestConstraintSystem::new();
        let values: Vec<_> = inputs.iter().copied().map(Some).collect();
        let vars = alloc_all(cs.namespace(|| "inputs"), &values);
        poseidon_hash(cs.namespace(|| "hash"), &vars).unwrap();
        assert!(cs.is_satisfied());
        for path in [
            "hash/poseidon/round 0/s-box 3/x^4/product",
            "hash/poseidon/round 30/s-box 0/x^5/product",
            "hash/digest/value/num",
        ] {
            let mut bad = TestConstraintSystem::new();
            let vars = alloc_all(bad.namespace(|| "inputs"), &values);
            poseidon_hash(bad.namespace(|| "hash"), &vars).unwrap();
            let v = bad.get(path);
            bad.set(path, v + Scalar::ONE);
            assert!(!bad.is_satisfied(), "{path}");
        }
    }

    #[test]
    fn unsupported_arities_are_errors() {
        for arity in [0, 1, 3, 5, 9, 17] {
            let mut cs = TestConstraintSystem::new();
            let vars = alloc_all(cs.namespace(|| "inputs"), &vec![Some(Scalar::ONE); arity]);
            assert!(matches!(
                poseidon_hash(cs.namespace(|| "hash"), &vars),
                Err(SynthesisError::IoError(_))
            ));
        }
        let mut cs = TestConstraintSystem::new();
        let vars = alloc_all(cs.namespace(|| "inputs"), &[Some(Scalar::ONE); 16]);
        assert!(column_hash(cs.namespace(|| "column"), &vars).is_err());
    }

    #[test]
    fn linear_num_merges_and_cancels() {
        let mut cs = CountingCs::default();
        let x = LinearNum::from_variable(Variable::new_unchecked(Index::Aux(0)), Some(3u64.into()));
        let y = LinearNum::from_variable(Variable::new_unchecked(Index::Aux(1)), None);
        let s = &(&x + &y) + &x;
        assert_eq!(s.num_terms(), 2);
        assert_eq!(s.value(), None);
        let d = &s - &(&x.scale(Scalar::from(2u64)) + &y);
        assert!(d.is_constant());
        assert_eq!(d.value(), Some(Scalar::ZERO));
        let n = -&x.add_constant(Scalar::ONE);
        assert_eq!(n.value(), Some(-Scalar::from(4u64)));
        let p = LinearNum::mul(
            cs.namespace(|| "const"),
            &LinearNum::constant(Scalar::ONE),
            &x,
        )
        .unwrap();
        assert_eq!(p.value(), Some(Scalar::from(3u64)));
        assert_eq!(cs.0.constraints, 0);
    }

    #[test]
    fn insert_node_places_the_node() {
        for k in 1..=4usize {
            let arity = 1 << k;
            let values = scalars(&format!("insert {arity}"), arity);
            for pos in 0..arity as u64 {
                let mut cs = TestConstraintSystem::new();
                let vals: Vec<_> = values.iter().copied().map(Some).collect();
                let vars = alloc_all(cs.namespace(|| "values"), &vals);
                let node = LinearNum::from(&vars[0]);
                let sibs: Vec<LinearNum> = vars[1..].iter().map(LinearNum::from).collect();
                let bits = alloc_index_bits(cs.namespace(|| "bits"), Some(pos), k).unwrap();
                let children = insert_node(cs.namespace(|| "insert"), &node, &sibs, &bits).unwrap();
                let mut expected = values[1..].to_vec();
                expected.insert(pos as usize, values[0]);
                let got: Vec<_> = children.iter().map(|c| c.value().unwrap()).collect();
                assert_eq!(got, expected, "arity {arity} position {pos}");
                assert!(cs.is_satisfied());
                assert_eq!(cs.num_constraints(), k + insert_cost(arity));
            }
            // Constant position bits cost nothing.
            let mut cs = TestConstraintSystem::new();
            let vals: Vec<_> = values.iter().copied().map(Some).collect();
            let vars = alloc_all(cs.namespace(|| "values"), &vals);
            let node = LinearNum::from(&vars[0]);
            let sibs: Vec<LinearNum> = vars[1..].iter().map(LinearNum::from).collect();
            let bits: Vec<Boolean> = (0..k).map(|b| Boolean::constant(b == 0)).collect();
            let children = insert_node(cs.namespace(|| "insert"), &node, &sibs, &bits).unwrap();
            assert_eq!(children[1].value(), Some(values[0]));
            assert_eq!(cs.num_constraints(), 0);
        }
        assert_eq!(insert_cost(8), 11);
        let mut cs = TestConstraintSystem::new();
        let bits = alloc_index_bits(cs.namespace(|| "bits"), Some(0), 2).unwrap();
        let sibs = vec![LinearNum::zero(); 2];
        assert!(insert_node(&mut cs, &LinearNum::zero(), &sibs, &bits).is_err());
    }

    /// Synthesizes the path of `proof`, ties the root and the index to public inputs, and returns the
    /// computed root with whether the constraint system is satisfied.
    fn prove_path(shape: &TreeShape, proof: &MerkleProof) -> (Scalar, bool, usize) {
        let mut cs = TestConstraintSystem::new();
        let path = AllocatedPath::alloc(cs.namespace(|| "path"), shape, Some(proof)).unwrap();
        let root = path.root(cs.namespace(|| "root"), shape).unwrap();
        path.index().inputize(cs.namespace(|| "index")).unwrap();
        root.inputize(cs.namespace(|| "root input")).unwrap();
        let value = root.get_value().unwrap();
        assert!(cs.verify(&[Scalar::from(proof.index), value]));
        (value, cs.is_satisfied(), cs.num_constraints())
    }

    /// Synthesizes `proof`'s path and enforces that it reaches `root`: whether that is satisfied.
    fn reaches(shape: &TreeShape, proof: &MerkleProof, root: Scalar) -> (Scalar, bool) {
        let mut cs = TestConstraintSystem::new();
        let path = AllocatedPath::alloc(cs.namespace(|| "path"), shape, Some(proof)).unwrap();
        let got = path.root(cs.namespace(|| "root"), shape).unwrap();
        let trusted = cs.alloc_input(|| "trusted root", || Ok(root)).unwrap();
        LinearNum::enforce_equal(
            cs.namespace(|| "check"),
            &LinearNum::from(&got),
            &LinearNum::from_variable(trusted, Some(root)),
        )
        .unwrap();
        (got.get_value().unwrap(), cs.is_satisfied())
    }

    fn witness_free_cost(shape: &TreeShape) -> usize {
        let mut cs = CountingCs::default();
        let path = AllocatedPath::alloc(cs.namespace(|| "path"), shape, None).unwrap();
        let root = path.root(cs.namespace(|| "root"), shape).unwrap();
        assert_eq!(root.get_value(), None);
        path.index().inputize(cs.namespace(|| "index")).unwrap();
        root.inputize(cs.namespace(|| "root input")).unwrap();
        cs.0.constraints
    }

    fn check_tree(leaves: u64, step: u64) {
        let shape = TreeShape::octal(leaves).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let l = nodes(&format!("tree {leaves}"), leaves as usize);
        let tree = DiskTree::<PoseidonTree>::build(
            &shape,
            &l,
            &dir.path().join("tree"),
            TreeConfig { discard_rows: 0 },
        )
        .unwrap();
        let root = tree.root().to_fr().unwrap();
        let bits = index_bits_len(&shape).unwrap();
        // Path bits, the root, two public inputs.
        let expected = bits + root_cost(&shape) + 2;
        assert_eq!(witness_free_cost(&shape), expected);
        for i in (0..leaves).step_by(step as usize) {
            let proof = tree.prove(i).unwrap();
            let (got, ok, count) = prove_path(&shape, &proof);
            assert_eq!(got, root, "leaf {i} of {leaves}");
            assert!(ok);
            assert_eq!(count, expected);
        }
        // Negative cases on a few indices.
        for i in [0, 1, leaves / 2 + 3, leaves - 1] {
            let proof = tree.prove(i).unwrap();
            assert_eq!(reaches(&shape, &proof, root), (root, true));
            let junk = scalars(&format!("junk {leaves} {i}"), 1)[0];
            for (level, sibs) in proof.siblings.iter().enumerate() {
                for j in 0..sibs.len() {
                    let mut bad = proof.clone();
                    bad.siblings[level][j] = Node::from_fr(&junk);
                    let (got, ok) = reaches(&shape, &bad, root);
                    assert_ne!(got, root);
                    assert!(!ok);
                }
            }
            for b in 0..bits {
                let mut bad = proof.clone();
                bad.index ^= 1 << b;
                let (got, ok) = reaches(&shape, &bad, root);
                assert_ne!(got, root, "leaf {i}, bit {b}");
                assert!(!ok);
            }
            let mut bad = proof.clone();
            bad.leaf = l[((i + 1) % leaves) as usize];
            let (got, ok) = reaches(&shape, &bad, root);
            assert_ne!(got, root);
            assert!(!ok);
            // The right path against another root.
            assert!(!reaches(&shape, &proof, root + Scalar::ONE).1);
        }
    }

    #[test]
    fn inclusion_octal_8_and_16() {
        check_tree(8, 1);
        check_tree(16, 1);
    }

    #[test]
    fn inclusion_octal_64() {
        check_tree(64, 1);
    }

    #[test]
    fn inclusion_octal_128() {
        check_tree(128, 1);
    }

    /// Sector-sized shapes, from random paths whose root is computed natively.
    #[test]
    fn inclusion_sector_shapes() {
        for leaves in [1u64 << 18, 1 << 24, 1 << 31, 1 << 32] {
            let shape = TreeShape::octal(leaves).unwrap();
            for case in 0..2 {
                let seed = format!("random path {leaves} {case}");
                let index = u64::from_le_bytes(
                    blake3::hash(seed.as_bytes()).as_bytes()[..8]
                        .try_into()
                        .unwrap(),
                ) % leaves;
                let proof = MerkleProof {
                    index,
                    leaf: nodes(&seed, 1)[0],
                    siblings: shape
                        .arities()
                        .iter()
                        .enumerate()
                        .map(|(l, &a)| nodes(&format!("{seed} level {l}"), a - 1))
                        .collect(),
                };
                let want = proof
                    .compute_root::<PoseidonTree>(&shape)
                    .unwrap()
                    .to_fr()
                    .unwrap();
                let (got, ok, count) = prove_path(&shape, &proof);
                assert_eq!(got, want);
                assert!(ok);
                assert_eq!(count, witness_free_cost(&shape));
            }
        }
    }

    #[test]
    fn malformed_paths_are_errors() {
        let shape = TreeShape::octal(64).unwrap();
        let good = MerkleProof {
            index: 5,
            leaf: Node::ZERO,
            siblings: vec![vec![Node::ZERO; 7]; 2],
        };
        let mut cs = TestConstraintSystem::new();
        assert!(AllocatedPath::alloc(cs.namespace(|| "ok"), &shape, Some(&good)).is_ok());
        let mut bad = good.clone();
        bad.index = 64;
        assert!(AllocatedPath::alloc(cs.namespace(|| "index"), &shape, Some(&bad)).is_err());
        let mut bad = good.clone();
        bad.siblings[1].pop();
        assert!(AllocatedPath::alloc(cs.namespace(|| "short"), &shape, Some(&bad)).is_err());
        let mut bad = good.clone();
        bad.leaf = Node([0xff; 32]);
        assert!(AllocatedPath::alloc(cs.namespace(|| "leaf"), &shape, Some(&bad)).is_err());
        // Bits or levels that do not match the shape.
        let path = AllocatedPath::alloc(cs.namespace(|| "path"), &shape, Some(&good)).unwrap();
        let other = TreeShape::octal(128).unwrap();
        assert!(path.root(cs.namespace(|| "other"), &other).is_err());
        let three = TreeShape::new(9, vec![3, 3]).unwrap();
        assert!(index_bits_len(&three).is_err());
        assert!(
            merkle_root(
                cs.namespace(|| "bits"),
                &shape,
                &path.leaf,
                &path.siblings,
                &path.index_bits[..5],
            )
            .is_err()
        );
    }

    #[test]
    fn index_bits_pack_to_the_index() {
        let mut cs = TestConstraintSystem::new();
        let bits = alloc_index_bits(cs.namespace(|| "bits"), Some(37), 6).unwrap();
        assert_eq!(cs.num_constraints(), 6);
        pack_bits(&bits).inputize(cs.namespace(|| "index")).unwrap();
        assert_eq!(cs.num_constraints(), 7);
        assert!(cs.is_satisfied());
        assert!(cs.verify(&[Scalar::from(37u64)]));
        assert!(!cs.verify(&[Scalar::from(38u64)]));

        let mut cs = TestConstraintSystem::new();
        assert!(alloc_index_bits(cs.namespace(|| "big"), Some(64), 6).is_err());
        assert!(alloc_index_bits(cs.namespace(|| "wide"), Some(0), 65).is_err());
        let bits = alloc_index_bits(cs.namespace(|| "max"), Some(u64::MAX), 64).unwrap();
        assert_eq!(pack_bits(&bits).value(), Some(Scalar::from(u64::MAX)));
        assert!(cs.is_satisfied());
    }

    #[test]
    fn column_hash_matches_sdr() {
        for l in [2, 4, 8, 11] {
            let labels = nodes(&format!("column {l}"), l);
            let values: Vec<_> = labels.iter().map(|n| n.to_fr()).collect();
            let mut cs = TestConstraintSystem::new();
            let vars = alloc_all(cs.namespace(|| "labels"), &values);
            let out = column_hash(cs.namespace(|| "column"), &vars).unwrap();
            assert_eq!(out.get_value(), sdr::column_hash(&labels).unwrap().to_fr());
            assert!(cs.is_satisfied());
            assert_eq!(cs.num_constraints(), hash_cost(l) + 1);

            let mut counting = CountingCs::default();
            let vars = alloc_all(&mut counting, &vec![None; l]);
            column_hash(&mut counting, &vars).unwrap();
            assert_eq!(counting.0.constraints, hash_cost(l) + 1);
        }
    }

    #[test]
    fn comm_r_matches_sdr() {
        for case in 0..4 {
            let [c, r]: [Node; 2] = nodes(&format!("comm_r {case}"), 2).try_into().unwrap();
            let mut cs = TestConstraintSystem::new();
            let vars = alloc_all(cs.namespace(|| "in"), &[c.to_fr(), r.to_fr()]);
            let out = comm_r(cs.namespace(|| "comm_r"), &vars[0], &vars[1]).unwrap();
            assert_eq!(out.get_value(), sdr::comm_r(&c, &r).unwrap().to_fr());
            assert!(cs.is_satisfied());
            assert_eq!(cs.num_constraints(), 235);
        }
        let mut counting = CountingCs::default();
        let vars = alloc_all(&mut counting, &[None, None]);
        comm_r(&mut counting, &vars[0], &vars[1]).unwrap();
        assert_eq!(counting.0.constraints, 235);
    }

    #[test]
    fn encode_matches_sdr() {
        for case in 0..4 {
            let [d, k]: [Node; 2] = nodes(&format!("encode {case}"), 2).try_into().unwrap();
            let want = sdr::encode(&d, &k).unwrap().to_fr();
            let mut cs = TestConstraintSystem::new();
            let vars = alloc_all(cs.namespace(|| "in"), &[d.to_fr(), k.to_fr(), want]);
            let out = encode(cs.namespace(|| "encode"), &vars[0], &vars[1]).unwrap();
            assert_eq!(out.get_value(), want);
            enforce_encoding(cs.namespace(|| "check"), &vars[0], &vars[1], &vars[2]).unwrap();
            assert!(cs.is_satisfied());
            assert_eq!(cs.num_constraints(), 2);

            let mut cs = TestConstraintSystem::new();
            let wrong = want.map(|w| w + Scalar::ONE);
            let vars = alloc_all(cs.namespace(|| "in"), &[d.to_fr(), k.to_fr(), wrong]);
            enforce_encoding(cs.namespace(|| "check"), &vars[0], &vars[1], &vars[2]).unwrap();
            assert!(!cs.is_satisfied());
        }
    }

    /// Prints and pins the constraint counts of the sector shapes (`--nocapture` shows them).
    #[test]
    fn inclusion_constraint_counts() {
        let level = insert_cost(8) + hash_cost(8);
        assert_eq!(level, 395);
        let mut counts = Vec::new();
        for leaves in [64u64, 1 << 18, 1 << 24, 1 << 30, 1 << 31] {
            let shape = TreeShape::octal(leaves).unwrap();
            let mut cs = CountingCs::default();
            let path = AllocatedPath::alloc(cs.namespace(|| "path"), &shape, None).unwrap();
            let bits = cs.0.constraints;
            path.root(cs.namespace(|| "root"), &shape).unwrap();
            let root = cs.0.constraints - bits;
            assert_eq!(root, root_cost(&shape));
            println!(
                "{leaves} leaves, arities {:?}: merkle_root {root} constraints, index bits {bits}",
                shape.arities()
            );
            counts.push(root);
        }
        assert_eq!(counts, [791, 2371, 3161, 3951, 4186]);
        for arity in SUPPORTED_ARITIES {
            println!(
                "poseidon arity {arity}: {} constraints ({} with the digest allocated)",
                hash_cost(arity),
                hash_cost(arity) + 1
            );
        }
    }

    /// The gadget through real Groth16: parameters from a witness-free synthesis, a proof, and checks
    /// against the right and wrong public inputs.
    struct InclusionCircuit {
        shape: TreeShape,
        proof: Option<MerkleProof>,
    }

    impl Circuit<Scalar> for InclusionCircuit {
        fn synthesize<CS: ConstraintSystem<Scalar>>(
            self,
            cs: &mut CS,
        ) -> Result<(), SynthesisError> {
            let path =
                AllocatedPath::alloc(cs.namespace(|| "path"), &self.shape, self.proof.as_ref())?;
            path.index().inputize(cs.namespace(|| "index"))?;
            let root = path.root(cs.namespace(|| "root"), &self.shape)?;
            root.inputize(cs.namespace(|| "root input"))
        }
    }

    #[test]
    fn groth16_inclusion_proof() {
        let shape = TreeShape::octal(64).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let l = nodes("groth16 tree", 64);
        let tree = DiskTree::<PoseidonTree>::build(
            &shape,
            &l,
            &dir.path().join("tree"),
            TreeConfig { discard_rows: 0 },
        )
        .unwrap();
        let root = tree.root().to_fr().unwrap();
        let toxic = scalars("groth16 toxic waste", 7);
        let params = groth16::generate_parameters::<Bls12, _>(
            InclusionCircuit {
                shape: shape.clone(),
                proof: None,
            },
            G1Projective::generator(),
            G2Projective::generator(),
            toxic[0],
            toxic[1],
            toxic[2],
            toxic[3],
            toxic[4],
        )
        .unwrap();
        let pvk = groth16::prepare_verifying_key(&params.vk);
        let index = 45u64;
        let proof = groth16::create_proof(
            InclusionCircuit {
                shape: shape.clone(),
                proof: Some(tree.prove(index).unwrap()),
            },
            &params,
            toxic[5],
            toxic[6],
        )
        .unwrap();
        assert!(groth16::verify_proof(&pvk, &proof, &[Scalar::from(index), root]).is_ok());
        assert!(groth16::verify_proof(&pvk, &proof, &[Scalar::from(index + 1), root]).is_err());
        assert!(
            groth16::verify_proof(&pvk, &proof, &[Scalar::from(index), root + Scalar::ONE])
                .is_err()
        );
    }
}
