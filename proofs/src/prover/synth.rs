//! The witness of a circuit as the prover needs it: the assignment of every variable, which
//! variables occur in `A` and `B` (the density of those queries), and the values of the `A`, `B`, `C`
//! linear combinations of every constraint — exactly what `groth16::create_proof` records.
//!
//! Synthesis itself only keeps the linear combinations the circuit builds (and marks the densities
//! as it goes); their values are computed afterwards by [`Assignment::evaluate`], in parallel, so
//! that the sums that need only the assignment can start as soon as synthesis ends.
//!
//! A circuit's constraints do not depend on its witness (parameters are generated from a blank
//! circuit), so a prover that proves the same circuit again can keep them: [`Structure`] holds the
//! three matrices and the densities, and [`Witness`] synthesises the next witness without asking
//! the circuit for its linear combinations at all (bellman builds them in closures that a
//! constraint system need not call, as lode's constraint counter does not).

use bellman::{Circuit, ConstraintSystem, Index, LinearCombination, SynthesisError, Variable};
use bls12_381::Scalar;
use ff::{Field, PrimeField};
use rayon::prelude::*;

use std::collections::HashMap;

use crate::poseidon::field::{Coeff, Fe, Wide};

/// Constraints per parallel task when evaluating.
const EVAL_CHUNK: usize = 1 << 10;

/// A circuit's witness and constraints.
#[derive(Default)]
pub(crate) struct Assignment {
    /// Public inputs, "one" first.
    pub(crate) inputs: Vec<Scalar>,
    /// Private variables.
    pub(crate) aux: Vec<Scalar>,
    /// The `A`, `B`, `C` combinations of every constraint.
    constraints: Vec<[LinearCombination<Scalar>; 3]>,
    /// Private variables occurring in some `A` (inputs always do: see [`Assignment::synthesize`]).
    pub(crate) a_aux: Vec<bool>,
    /// Inputs occurring in some `B`.
    pub(crate) b_inputs: Vec<bool>,
    /// Private variables occurring in some `B`.
    pub(crate) b_aux: Vec<bool>,
    /// A constraint named a variable this system did not allocate.
    foreign: bool,
}

impl Assignment {
    /// Synthesises `circuit` with its witness: the "one" input first, and after the circuit one
    /// constraint `x · 0 = 0` per input, as the reference prover and parameter generator do.
    pub(crate) fn synthesize<C: Circuit<Scalar>>(circuit: C) -> Result<Self, SynthesisError> {
        let mut cs = Assignment::default();
        cs.alloc_input(|| "", || Ok(Scalar::ONE))?;
        circuit.synthesize(&mut cs)?;
        for i in 0..cs.inputs.len() {
            cs.enforce(
                || "",
                |lc| lc + Variable::new_unchecked(Index::Input(i)),
                |lc| lc,
                |lc| lc,
            );
        }
        if cs.foreign {
            return Err(SynthesisError::IoError(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a constraint names a variable the constraint system did not allocate",
            )));
        }
        Ok(cs)
    }

    /// The number of constraints (the dummy ones included).
    pub(crate) fn num_constraints(&self) -> usize {
        self.constraints.len()
    }

    /// The values of every constraint's `A`, `B` and `C`, in parallel.
    pub(crate) fn evaluate(&self) -> (Vec<Fe>, Vec<Fe>, Vec<Fe>) {
        let n = self.constraints.len();
        let mut out = (
            vec![Fe::default(); n],
            vec![Fe::default(); n],
            vec![Fe::default(); n],
        );
        self.constraints
            .par_chunks(EVAL_CHUNK)
            .zip(out.0.par_chunks_mut(EVAL_CHUNK))
            .zip(out.1.par_chunks_mut(EVAL_CHUNK))
            .zip(out.2.par_chunks_mut(EVAL_CHUNK))
            .for_each(|(((cons, a), b), c)| {
                for (k, [la, lb, lc]) in cons.iter().enumerate() {
                    a[k] = Fe::from_scalar(&self.value(la));
                    b[k] = Fe::from_scalar(&self.value(lb));
                    c[k] = Fe::from_scalar(&self.value(lc));
                }
            });
        out
    }

    /// The value of `lc` (every variable in it was checked when it was recorded).
    fn value(&self, lc: &LinearCombination<Scalar>) -> Scalar {
        lc_value(lc, &self.inputs, &self.aux)
    }

    /// Marks the variables of `lc` with a nonzero coefficient in the given density vectors (as the
    /// reference does) and checks that they exist.
    fn mark(&mut self, lc: &LinearCombination<Scalar>, inputs: Option<Which>, aux: Option<Which>) {
        for (var, coeff) in lc.as_ref() {
            if bool::from(coeff.is_zero()) {
                continue;
            }
            let (i, which, len) = match var.get_unchecked() {
                Index::Input(i) => (i, inputs, self.inputs.len()),
                Index::Aux(i) => (i, aux, self.aux.len()),
            };
            if i >= len {
                self.foreign = true;
                continue;
            }
            let density = match which {
                Some(Which::AAux) => &mut self.a_aux,
                Some(Which::BInputs) => &mut self.b_inputs,
                Some(Which::BAux) => &mut self.b_aux,
                None => continue,
            };
            if let Some(x) = density.get_mut(i) {
                *x = true;
            }
        }
    }
}

/// The value of `lc` for the assignment `inputs`, `aux`; a variable beyond them counts as zero.
#[inline]
pub(crate) fn lc_value(
    lc: &LinearCombination<Scalar>,
    inputs: &[Scalar],
    aux: &[Scalar],
) -> Scalar {
    let mut acc = Scalar::ZERO;
    for (var, coeff) in lc.as_ref() {
        let value = match var.get_unchecked() {
            Index::Input(i) => inputs.get(i),
            Index::Aux(i) => aux.get(i),
        };
        let Some(&value) = value else { continue };
        if *coeff == Scalar::ONE {
            acc += value;
        } else {
            acc += value * coeff;
        }
    }
    acc
}

/// A term of a constraint matrix: the variable (inputs first, then private variables) and the index
/// of its coefficient in [`Structure::coeffs`].
#[derive(Clone, Copy)]
struct Term {
    var: u32,
    coeff: u32,
}

/// The constraints of a circuit, kept from one proof for the next: the `A`, `B`, `C` matrices (rows
/// of terms with nonzero coefficients) and the densities of the `A` and `B` queries.
pub(crate) struct Structure {
    inputs: usize,
    aux: usize,
    /// Per matrix, where each row's terms start (one more entry than rows).
    starts: [Vec<u32>; 3],
    terms: [Vec<Term>; 3],
    /// The distinct coefficients, prepared for sums of products.
    coeffs: Vec<Coeff>,
    pub(crate) a_aux: Vec<bool>,
    pub(crate) b_inputs: Vec<bool>,
    pub(crate) b_aux: Vec<bool>,
}

impl Structure {
    /// The structure of the synthesised `w`; `None` when it is too large for 32-bit indices.
    pub(crate) fn new(w: &Assignment) -> Option<Self> {
        let inputs = w.inputs.len();
        let mut index: HashMap<[u8; 32], u32> = HashMap::new();
        let mut coeffs: Vec<Coeff> = Vec::new();
        let mut starts: [Vec<u32>; 3] = Default::default();
        let mut terms: [Vec<Term>; 3] = Default::default();
        for lcs in &w.constraints {
            for ((lc, starts), terms) in lcs.iter().zip(&mut starts).zip(&mut terms) {
                starts.push(u32::try_from(terms.len()).ok()?);
                for (var, coeff) in lc.as_ref() {
                    if bool::from(coeff.is_zero()) {
                        continue;
                    }
                    let var = match var.get_unchecked() {
                        Index::Input(i) => i,
                        Index::Aux(i) => inputs.checked_add(i)?,
                    };
                    let bytes = coeff.to_repr();
                    let next = u32::try_from(coeffs.len()).ok()?;
                    let coeff = *index.entry(bytes).or_insert_with(|| {
                        coeffs.push(Coeff::new(Fe::from_scalar(coeff)));
                        next
                    });
                    terms.push(Term {
                        var: u32::try_from(var).ok()?,
                        coeff,
                    });
                }
            }
        }
        for (starts, terms) in starts.iter_mut().zip(&terms) {
            starts.push(u32::try_from(terms.len()).ok()?);
        }
        Some(Structure {
            inputs,
            aux: w.aux.len(),
            starts,
            terms,
            coeffs,
            a_aux: w.a_aux.clone(),
            b_inputs: w.b_inputs.clone(),
            b_aux: w.b_aux.clone(),
        })
    }

    /// The number of constraints (the dummy ones included).
    pub(crate) fn num_constraints(&self) -> usize {
        self.starts[0].len().saturating_sub(1)
    }

    /// Whether `w` has this structure's numbers of inputs, private variables and constraints.
    pub(crate) fn fits(&self, w: &Witness) -> bool {
        w.inputs.len() == self.inputs
            && w.aux.len() == self.aux
            && w.constraints == self.num_constraints()
    }

    /// The values of every constraint's `A`, `B` and `C` for the witness `w` (which [`fits`]),
    /// in parallel: sums of products reduced once per row.
    ///
    /// [`fits`]: Structure::fits
    pub(crate) fn evaluate(&self, w: &Witness) -> (Vec<Fe>, Vec<Fe>, Vec<Fe>) {
        let values: Vec<Fe> = w
            .inputs
            .par_iter()
            .chain(w.aux.par_iter())
            .with_min_len(EVAL_CHUNK)
            .map(Fe::from_scalar)
            .collect();
        let n = self.num_constraints();
        let matrix = |m: usize| -> Vec<Fe> {
            let (starts, terms) = (&self.starts[m], &self.terms[m]);
            let mut out = vec![Fe::default(); n];
            out.par_chunks_mut(EVAL_CHUNK)
                .enumerate()
                .for_each(|(chunk, out)| {
                    for (k, o) in out.iter_mut().enumerate() {
                        let row = chunk * EVAL_CHUNK + k;
                        let (from, to) = (starts[row] as usize, starts[row + 1] as usize);
                        let mut acc = Wide::default();
                        for t in &terms[from..to] {
                            // Indices were made from this structure's own counts.
                            if let (Some(c), Some(x)) = (
                                self.coeffs.get(t.coeff as usize),
                                values.get(t.var as usize),
                            ) {
                                acc.add_product(c, x);
                            }
                        }
                        *o = acc.reduce();
                    }
                });
            out
        };
        let (a, (b, c)) = rayon::join(|| matrix(0), || rayon::join(|| matrix(1), || matrix(2)));
        (a, b, c)
    }
}

/// A witness synthesised against a known [`Structure`]: the values only.
#[derive(Default, Debug, PartialEq)]
pub(crate) struct Witness {
    pub(crate) inputs: Vec<Scalar>,
    pub(crate) aux: Vec<Scalar>,
    constraints: usize,
}

impl Witness {
    /// Synthesises `circuit`'s witness (with the "one" input and the inputs' dummy constraints, as
    /// [`Assignment::synthesize`]), not asking for any linear combination.
    pub(crate) fn synthesize<C: Circuit<Scalar>>(circuit: C) -> Result<Self, SynthesisError> {
        let mut cs = Witness::begin()?;
        circuit.synthesize(&mut cs)?;
        Ok(cs.finish())
    }

    /// A witness with the "one" input only, for a circuit synthesised in parts ([`Witness::append`],
    /// then [`Witness::finish`]).
    pub(crate) fn begin() -> Result<Self, SynthesisError> {
        let mut cs = Witness::default();
        cs.alloc_input(|| "", || Ok(Scalar::ONE))?;
        Ok(cs)
    }

    /// Appends what `part` allocated and enforced, as if synthesised here (a part that only uses
    /// variables by value: indices are never read in a witness).
    pub(crate) fn append(&mut self, part: Witness) {
        self.inputs.extend(part.inputs);
        self.aux.extend(part.aux);
        self.constraints += part.constraints;
    }

    /// Adds the inputs' dummy constraints: the witness is complete.
    pub(crate) fn finish(mut self) -> Self {
        self.constraints += self.inputs.len();
        self
    }
}

impl ConstraintSystem<Scalar> for Witness {
    fn alloc<F, A, AR>(&mut self, _: A, f: F) -> Result<Variable, SynthesisError>
    where
        F: FnOnce() -> Result<Scalar, SynthesisError>,
        A: FnOnce() -> AR,
        AR: Into<String>,
    {
        self.aux.push(f()?);
        Ok(Variable::new_unchecked(Index::Aux(self.aux.len() - 1)))
    }

    fn alloc_input<F, A, AR>(&mut self, _: A, f: F) -> Result<Variable, SynthesisError>
    where
        F: FnOnce() -> Result<Scalar, SynthesisError>,
        A: FnOnce() -> AR,
        AR: Into<String>,
    {
        self.inputs.push(f()?);
        Ok(Variable::new_unchecked(Index::Input(self.inputs.len() - 1)))
    }

    fn enforce<A, AR, LA, LB, LC>(&mut self, _: A, _: LA, _: LB, _: LC)
    where
        A: FnOnce() -> AR,
        AR: Into<String>,
        LA: FnOnce(LinearCombination<Scalar>) -> LinearCombination<Scalar>,
        LB: FnOnce(LinearCombination<Scalar>) -> LinearCombination<Scalar>,
        LC: FnOnce(LinearCombination<Scalar>) -> LinearCombination<Scalar>,
    {
        self.constraints += 1;
    }

    crate::circuit::root_without_namespaces!();
}

/// A density vector.
#[derive(Clone, Copy)]
enum Which {
    AAux,
    BInputs,
    BAux,
}

impl ConstraintSystem<Scalar> for Assignment {
    fn alloc<F, A, AR>(&mut self, _: A, f: F) -> Result<Variable, SynthesisError>
    where
        F: FnOnce() -> Result<Scalar, SynthesisError>,
        A: FnOnce() -> AR,
        AR: Into<String>,
    {
        self.aux.push(f()?);
        self.a_aux.push(false);
        self.b_aux.push(false);
        Ok(Variable::new_unchecked(Index::Aux(self.aux.len() - 1)))
    }

    fn alloc_input<F, A, AR>(&mut self, _: A, f: F) -> Result<Variable, SynthesisError>
    where
        F: FnOnce() -> Result<Scalar, SynthesisError>,
        A: FnOnce() -> AR,
        AR: Into<String>,
    {
        self.inputs.push(f()?);
        self.b_inputs.push(false);
        Ok(Variable::new_unchecked(Index::Input(self.inputs.len() - 1)))
    }

    fn enforce<A, AR, LA, LB, LC>(&mut self, _: A, a: LA, b: LB, c: LC)
    where
        A: FnOnce() -> AR,
        AR: Into<String>,
        LA: FnOnce(LinearCombination<Scalar>) -> LinearCombination<Scalar>,
        LB: FnOnce(LinearCombination<Scalar>) -> LinearCombination<Scalar>,
        LC: FnOnce(LinearCombination<Scalar>) -> LinearCombination<Scalar>,
    {
        let (a, b, c) = (
            a(LinearCombination::zero()),
            b(LinearCombination::zero()),
            c(LinearCombination::zero()),
        );
        // Inputs count as dense in A (their dummy constraints), and nothing is tracked for C.
        self.mark(&a, None, Some(Which::AAux));
        self.mark(&b, Some(Which::BInputs), Some(Which::BAux));
        self.mark(&c, None, None);
        self.constraints.push([a, b, c]);
    }

    crate::circuit::root_without_namespaces!();
}
