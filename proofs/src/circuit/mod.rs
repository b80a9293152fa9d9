//! Circuits for Groth16 over BLS12-381 (bellman): gadgets for the protocol's hashes and Merkle trees.
//!
//! Each gadget mirrors a native function of this crate and is tested against it on random inputs; the
//! native code stays the definition, the gadget only enforces it.
pub mod blake3;
pub mod porep;
pub mod poseidon;
pub mod post;

use bellman::{Circuit, ConstraintSystem, Index, LinearCombination, SynthesisError, Variable};
use bls12_381::Scalar;

/// The size of a circuit: what parameter generation and proving scale with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CircuitInfo {
    /// Multiplication constraints.
    pub constraints: usize,
    /// Public inputs (without the constant one).
    pub public_inputs: usize,
    /// Private variables.
    pub private_variables: usize,
}

/// The parts of a [`ConstraintSystem`] implementation for a system that is its own root and
/// ignores names: `type Root = Self`, namespaces that do nothing, and `get_root`. Every constraint
/// system of this crate is one; it writes only `alloc`, `alloc_input` and `enforce`.
macro_rules! root_without_namespaces {
    () => {
        type Root = Self;

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
    };
}
pub(crate) use root_without_namespaces;

/// A constraint system that only counts, never asking for values: blank circuits synthesize in it.
#[derive(Default)]
pub(crate) struct Counter(pub(crate) CircuitInfo);

impl ConstraintSystem<Scalar> for Counter {
    fn alloc<F, A, AR>(&mut self, _: A, _: F) -> Result<Variable, SynthesisError>
    where
        F: FnOnce() -> Result<Scalar, SynthesisError>,
        A: FnOnce() -> AR,
        AR: Into<String>,
    {
        self.0.private_variables += 1;
        Ok(Variable::new_unchecked(Index::Aux(
            self.0.private_variables - 1,
        )))
    }

    fn alloc_input<F, A, AR>(&mut self, _: A, _: F) -> Result<Variable, SynthesisError>
    where
        F: FnOnce() -> Result<Scalar, SynthesisError>,
        A: FnOnce() -> AR,
        AR: Into<String>,
    {
        self.0.public_inputs += 1;
        Ok(Variable::new_unchecked(Index::Input(self.0.public_inputs)))
    }

    fn enforce<A, AR, LA, LB, LC>(&mut self, _: A, _: LA, _: LB, _: LC)
    where
        A: FnOnce() -> AR,
        AR: Into<String>,
        LA: FnOnce(LinearCombination<Scalar>) -> LinearCombination<Scalar>,
        LB: FnOnce(LinearCombination<Scalar>) -> LinearCombination<Scalar>,
        LC: FnOnce(LinearCombination<Scalar>) -> LinearCombination<Scalar>,
    {
        self.0.constraints += 1;
    }

    root_without_namespaces!();
}

/// Counts the constraints, public inputs and private variables of a (blank) circuit.
pub fn circuit_info<C: Circuit<Scalar>>(circuit: C) -> Result<CircuitInfo, SynthesisError> {
    let mut cs = Counter::default();
    circuit.synthesize(&mut cs)?;
    Ok(cs.0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sector::SectorSize;

    #[test]
    fn blank_circuits_count_as_their_witnessed_runs() {
        // The witnessed counts are pinned by the circuits' own tests (PoSt) and the sealing scenario (PoRep).
        let window = circuit_info(post::PostCircuit {
            kind: post::PostKind::Window,
            size: SectorSize::S2KiB,
            witness: None,
        })
        .unwrap();
        assert_eq!(window.constraints, 16_452);
        assert_eq!(window.public_inputs, 2 * 11);
        let porep = circuit_info(porep::PorepCircuit {
            size: SectorSize::S2KiB,
            witness: None,
        })
        .unwrap();
        assert_eq!(porep.constraints, 696_367);
        assert_eq!(porep.public_inputs, 3 + 2 * 3);
    }
}
