//! The witness of a circuit as the prover needs it: the assignment of every variable, which
//! variables occur in `A` and `B` (the density of those queries), and the values of the `A`, `B`, `C`
//! linear combinations of every constraint — exactly what `groth16::create_proof` records.
//!
//! Synthesis itself only keeps the linear combinations the circuit builds (and marks the densities
//! as it goes); their values are computed afterwards by [`Assignment::evaluate`], in parallel, so
//! that the sums that need only the assignment can start as soon as synthesis ends.

use bellman::{Circuit, ConstraintSystem, Index, LinearCombination, SynthesisError, Variable};
use bls12_381::Scalar;
use ff::Field;
use rayon::prelude::*;

use crate::poseidon::field::Fe;

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
        let mut acc = Scalar::ZERO;
        for (var, coeff) in lc.as_ref() {
            let value = match var.get_unchecked() {
                Index::Input(i) => self.inputs.get(i),
                Index::Aux(i) => self.aux.get(i),
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

/// A density vector.
#[derive(Clone, Copy)]
enum Which {
    AAux,
    BInputs,
    BAux,
}

impl ConstraintSystem<Scalar> for Assignment {
    type Root = Self;

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

    fn push_namespace<NR, N>(&mut self, _: N)
    where
        NR: Into<String>,
        N: FnOnce() -> NR,
    {
    }

    fn pop_namespace(&mut self) {}

    fn get_root(&mut self) -> &mut Self::Root {
        self
    }
}
