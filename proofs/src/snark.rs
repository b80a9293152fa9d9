//! Groth16 proofs as bytes, and the errors of proving and verifying them.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

use bellman::SynthesisError;
use bls12_381::Bls12;
use groth16::Proof;

/// Bytes of one Groth16 proof over BLS12-381 (compressed points: A in G1, B in G2, C in G1).
pub const PROOF_LEN: usize = 192;

/// Errors of SNARK proving and verification.
#[derive(Debug, thiserror::Error)]
pub enum SnarkError {
    /// The witness does not fit the circuit (wrong counts, non-canonical nodes, unsatisfiable).
    #[error("cannot prove: {0}")]
    Synthesis(#[from] SynthesisError),
    /// Proof bytes of the wrong length or with invalid curve points.
    #[error("malformed proof: {0}")]
    Malformed(&'static str),
    /// The proof does not verify against these public inputs and this verifying key.
    #[error("the proof does not verify against these public inputs")]
    Invalid,
    /// A public input that is not a field element.
    #[error("public input {0} is not a canonical field element")]
    NonCanonicalInput(usize),
}

/// Encodes a proof as its 192 compressed bytes.
pub fn proof_to_bytes(proof: &Proof<Bls12>) -> Vec<u8> {
    let mut out = Vec::with_capacity(PROOF_LEN);
    // Writing into a Vec cannot fail.
    let _ = proof.write(&mut out);
    out
}

/// Decodes a proof, checking that every point is on its curve and in the right subgroup.
pub fn proof_from_bytes(bytes: &[u8]) -> Result<Proof<Bls12>, SnarkError> {
    if bytes.len() != PROOF_LEN {
        return Err(SnarkError::Malformed("a Groth16 proof is 192 bytes"));
    }
    Proof::read(bytes).map_err(|_| SnarkError::Malformed("invalid curve point"))
}
