//! Poseidon hash over the BLS12-381 scalar field.
//!
//! The parameters and output are bit-identical to neptune 13 with
//! `PoseidonConstants::<Fr, A>::new()` (standard strength, Merkle-tree hash
//! type): width `t = arity + 1`, cell 0 starts as the domain tag
//! `2^arity - 1`, cells 1.. hold the inputs, the S-box is `x^5`, there are 8
//! full rounds split around the partial rounds, round constants come from
//! the Grain LFSR, the linear layer is the Cauchy matrix
//! `1 / (i + (t + j))`, and the digest is cell 1 of the final state.
//!
//! [`PoseidonConstants::hash`] is the fast path (sparse partial rounds on
//! limb-level Montgomery arithmetic with one reduction per dot product, no
//! heap allocation); [`PoseidonConstants::hash_reference`] follows the
//! round structure literally and is the yardstick the fast path is tested
//! against.

pub(crate) mod field;
mod grain;
mod matrix;
mod optimized;

use std::sync::OnceLock;

use bls12_381::Scalar;

pub use optimized::SparseForm;
use optimized::{FastConstants, quintic};

/// The arities (inputs per hash) this module provides parameters for.
pub const SUPPORTED_ARITIES: [usize; 5] = [2, 4, 8, 11, 16];

/// Number of full rounds for every supported arity (half before and half
/// after the partial rounds).
pub const FULL_ROUNDS: usize = 8;

/// Errors from building parameters or hashing.
#[derive(Debug, thiserror::Error)]
pub enum PoseidonError {
    /// No parameters exist for this arity.
    #[error("unsupported Poseidon arity {0} (supported: 2, 4, 8, 11, 16)")]
    UnsupportedArity(usize),
    /// The number of inputs differs from the parameters' arity.
    #[error("Poseidon of arity {expected} takes {expected} inputs, got {got}")]
    WrongInputCount {
        /// The arity of the parameters.
        expected: usize,
        /// The number of inputs supplied.
        got: usize,
    },
}

/// Number of partial rounds neptune's standard strength selects per arity.
fn partial_rounds_for(arity: usize) -> Result<usize, PoseidonError> {
    match arity {
        2 => Ok(55),
        4 => Ok(56),
        8 | 11 => Ok(57),
        16 => Ok(59),
        _ => Err(PoseidonError::UnsupportedArity(arity)),
    }
}

/// All parameters of Poseidon for one arity, plus the precomputed data of
/// the fast path.
#[derive(Clone, Debug)]
pub struct PoseidonConstants {
    arity: usize,
    width: usize,
    full_rounds: usize,
    partial_rounds: usize,
    domain_tag: Scalar,
    round_constants: Vec<Scalar>,
    mds: Vec<Vec<Scalar>>,
    fast: FastConstants,
}

impl PoseidonConstants {
    /// Generates the parameters for `arity`. This takes milliseconds (tens
    /// of them for the widest arity); prefer [`constants`], which does it
    /// once per process.
    pub fn new(arity: usize) -> Result<Self, PoseidonError> {
        let partial_rounds = partial_rounds_for(arity)?;
        let width = arity + 1;
        let full_rounds = FULL_ROUNDS;
        let round_constants = grain::round_constants(width, full_rounds, partial_rounds);
        let mds = matrix::cauchy_mds(width);
        // 2^arity - 1 fits in a u64 for every supported arity.
        let domain_tag = Scalar::from((1u64 << arity) - 1);
        let fast = FastConstants::new(
            width,
            full_rounds,
            partial_rounds,
            &round_constants,
            &mds,
            domain_tag,
        );
        Ok(PoseidonConstants {
            arity,
            width,
            full_rounds,
            partial_rounds,
            domain_tag,
            round_constants,
            mds,
            fast,
        })
    }

    /// Number of inputs per hash.
    pub fn arity(&self) -> usize {
        self.arity
    }

    /// State width `t = arity + 1`.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of full rounds (`R_F`).
    pub fn full_rounds(&self) -> usize {
        self.full_rounds
    }

    /// Number of partial rounds (`R_P`).
    pub fn partial_rounds(&self) -> usize {
        self.partial_rounds
    }

    /// The value cell 0 starts with, `2^arity - 1`.
    pub fn domain_tag(&self) -> Scalar {
        self.domain_tag
    }

    /// The `width * (R_F + R_P)` round constants, in the order rounds use
    /// them (`width` per round).
    pub fn round_constants(&self) -> &[Scalar] {
        &self.round_constants
    }

    /// The MDS matrix, row-major (it is symmetric).
    pub fn mds(&self) -> &[Vec<Scalar>] {
        &self.mds
    }

    fn check_inputs(&self, inputs: &[Scalar]) -> Result<(), PoseidonError> {
        if inputs.len() == self.arity {
            Ok(())
        } else {
            Err(PoseidonError::WrongInputCount {
                expected: self.arity,
                got: inputs.len(),
            })
        }
    }

    /// Hashes exactly `arity` field elements (fast path, no allocation).
    pub fn hash(&self, inputs: &[Scalar]) -> Result<Scalar, PoseidonError> {
        self.check_inputs(inputs)?;
        // A fixed width per supported arity lets the compiler keep the state
        // in a stack array and unroll the inner loops.
        match self.width {
            3 => Ok(self.fast.hash::<3>(inputs)),
            5 => Ok(self.fast.hash::<5>(inputs)),
            9 => Ok(self.fast.hash::<9>(inputs)),
            12 => Ok(self.fast.hash::<12>(inputs)),
            17 => Ok(self.fast.hash::<17>(inputs)),
            // `new` only builds the widths above.
            _ => Err(PoseidonError::UnsupportedArity(self.arity)),
        }
    }

    /// The permutation in the sparse form the fast path computes (see [`SparseForm`]).
    pub fn sparse_form(&self) -> &SparseForm {
        self.fast.form()
    }

    /// `out[i]` = [`PoseidonConstants::hash`] of `inputs[i·arity .. (i+1)·arity]`, for
    /// `out.len()` hashes: eight at a time in AVX-512 IFMA lanes where the processor has them
    /// (the same digests), one by one elsewhere.
    pub fn hash_many(&self, inputs: &[Scalar], out: &mut [Scalar]) -> Result<(), PoseidonError> {
        if inputs.len() != out.len().saturating_mul(self.arity) {
            return Err(PoseidonError::WrongInputCount {
                expected: out.len().saturating_mul(self.arity),
                got: inputs.len(),
            });
        }
        match self.width {
            3 => self.fast.hash_many::<3>(inputs, out),
            5 => self.fast.hash_many::<5>(inputs, out),
            9 => self.fast.hash_many::<9>(inputs, out),
            12 => self.fast.hash_many::<12>(inputs, out),
            17 => self.fast.hash_many::<17>(inputs, out),
            _ => return Err(PoseidonError::UnsupportedArity(self.arity)),
        }
        Ok(())
    }

    /// Hashes exactly `arity` field elements with the plain permutation:
    /// every round adds its constants, applies the S-box (all cells in full
    /// rounds, cell 0 in partial rounds), then sets
    /// `new[i] = sum_j state[j] * M[j][i]`, as neptune's unoptimised path
    /// does. Slow; meant as a reference for testing.
    pub fn hash_reference(&self, inputs: &[Scalar]) -> Result<Scalar, PoseidonError> {
        self.check_inputs(inputs)?;
        let t = self.width;
        let half = self.full_rounds / 2;
        let mut state = Vec::with_capacity(t);
        state.push(self.domain_tag);
        state.extend_from_slice(inputs);
        for (round, constants) in self.round_constants.chunks_exact(t).enumerate() {
            for (x, c) in state.iter_mut().zip(constants) {
                *x += c;
            }
            let partial = round >= half && round < half + self.partial_rounds;
            if partial {
                state[0] = quintic(state[0]);
            } else {
                for x in state.iter_mut() {
                    *x = quintic(*x);
                }
            }
            state = (0..t)
                .map(|i| (0..t).map(|j| state[j] * self.mds[j][i]).sum())
                .collect();
        }
        Ok(state[1])
    }
}

/// The parameters for `arity`, generated on first use and shared for the
/// rest of the process.
pub fn constants(arity: usize) -> Result<&'static PoseidonConstants, PoseidonError> {
    static CACHE: [OnceLock<PoseidonConstants>; SUPPORTED_ARITIES.len()] =
        [const { OnceLock::new() }; SUPPORTED_ARITIES.len()];
    let slot = SUPPORTED_ARITIES
        .iter()
        .position(|&a| a == arity)
        .ok_or(PoseidonError::UnsupportedArity(arity))?;
    if let Some(c) = CACHE[slot].get() {
        return Ok(c);
    }
    let built = PoseidonConstants::new(arity)?;
    Ok(CACHE[slot].get_or_init(|| built))
}

/// Poseidon of `inputs`, with the arity taken from `inputs.len()`.
pub fn hash(inputs: &[Scalar]) -> Result<Scalar, PoseidonError> {
    constants(inputs.len())?.hash(inputs)
}

/// Poseidon of `inputs` through the plain reference permutation.
pub fn hash_reference(inputs: &[Scalar]) -> Result<Scalar, PoseidonError> {
    constants(inputs.len())?.hash_reference(inputs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ff::Field;
    use proptest::prelude::*;

    const VECTORS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/vectors/poseidon.json"
    ));

    fn scalar_from_hex(s: &str) -> Scalar {
        let bytes: [u8; 32] = hex::decode(s).unwrap().try_into().unwrap();
        Option::from(Scalar::from_bytes(&bytes)).unwrap()
    }

    /// splitmix64: a tiny deterministic generator for test inputs.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn scalar(&mut self) -> Scalar {
            let mut wide = [0u8; 64];
            for chunk in wide.chunks_exact_mut(8) {
                chunk.copy_from_slice(&self.next_u64().to_le_bytes());
            }
            Scalar::from_bytes_wide(&wide)
        }
    }

    #[test]
    fn known_answers() {
        let doc: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        let arities = doc["arities"].as_array().unwrap();
        let mut seen = Vec::new();
        for entry in arities {
            let arity = entry["arity"].as_u64().unwrap() as usize;
            let c = constants(arity).unwrap();
            assert_eq!(entry["t"].as_u64().unwrap() as usize, c.width());
            assert_eq!(
                entry["full_rounds"].as_u64().unwrap() as usize,
                c.full_rounds()
            );
            assert_eq!(
                entry["partial_rounds"].as_u64().unwrap() as usize,
                c.partial_rounds()
            );
            assert_eq!(
                Scalar::from(entry["domain_tag"].as_u64().unwrap()),
                c.domain_tag()
            );
            let cases = entry["cases"].as_array().unwrap();
            assert!(!cases.is_empty());
            for (i, case) in cases.iter().enumerate() {
                let inputs: Vec<Scalar> = case["inputs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| scalar_from_hex(h.as_str().unwrap()))
                    .collect();
                let want = case["output"].as_str().unwrap();
                let fast = c.hash(&inputs).unwrap();
                let slow = c.hash_reference(&inputs).unwrap();
                assert_eq!(
                    hex::encode(slow.to_bytes()),
                    want,
                    "reference, arity {arity} case {i}"
                );
                assert_eq!(
                    hex::encode(fast.to_bytes()),
                    want,
                    "fast, arity {arity} case {i}"
                );
                assert_eq!(hash(&inputs).unwrap(), fast);
            }
            seen.push(arity);
        }
        seen.sort_unstable();
        assert_eq!(seen, SUPPORTED_ARITIES);
    }

    #[test]
    fn fast_matches_reference_on_random_inputs() {
        let mut rng = Rng(0x6c6f_6465);
        for arity in SUPPORTED_ARITIES {
            let c = constants(arity).unwrap();
            for _ in 0..200 {
                let inputs: Vec<Scalar> = (0..arity).map(|_| rng.scalar()).collect();
                assert_eq!(c.hash(&inputs).unwrap(), c.hash_reference(&inputs).unwrap());
            }
        }
    }

    #[test]
    fn fast_matches_reference_on_edge_inputs() {
        for arity in SUPPORTED_ARITIES {
            let c = constants(arity).unwrap();
            for fill in [Scalar::ZERO, Scalar::ONE, -Scalar::ONE] {
                let inputs = vec![fill; arity];
                assert_eq!(c.hash(&inputs).unwrap(), c.hash_reference(&inputs).unwrap());
            }
        }
    }

    #[test]
    fn fast_matches_reference_on_thousands_of_mixed_inputs() {
        // Random cells mixed with values at the ends of the field, so that
        // the limb arithmetic of the fast path meets its extreme cases.
        let edges = [
            Scalar::ZERO,
            Scalar::ONE,
            -Scalar::ONE,
            -Scalar::from(2u64),
            Scalar::from(u64::MAX),
            Scalar::from(2u64).invert().unwrap(),
        ];
        let mut rng = Rng(0x006d_6978_6564);
        for arity in SUPPORTED_ARITIES {
            let c = constants(arity).unwrap();
            for _ in 0..2000 {
                let inputs: Vec<Scalar> = (0..arity)
                    .map(|_| {
                        let k = rng.next_u64() as usize % (2 * edges.len());
                        edges.get(k).copied().unwrap_or_else(|| rng.scalar())
                    })
                    .collect();
                assert_eq!(
                    c.hash(&inputs).unwrap(),
                    c.hash_reference(&inputs).unwrap(),
                    "arity {arity}, inputs {inputs:?}"
                );
            }
        }
    }

    /// The sparse form, evaluated as its documentation says, gives `hash`'s digests: what a
    /// device kernel built from it relies on.
    #[test]
    #[allow(clippy::needless_range_loop)]
    fn the_sparse_form_computes_the_hash() {
        let mut rng = Rng(0x7370_6172);
        for arity in SUPPORTED_ARITIES {
            let c = constants(arity).unwrap();
            let f = c.sparse_form();
            let t = f.width;
            assert_eq!(t, arity + 1);
            let dense = |m: &[Scalar], s: &[Scalar]| -> Vec<Scalar> {
                (0..t)
                    .map(|i| (0..t).map(|j| m[i * t + j] * s[j]).sum())
                    .collect()
            };
            for _ in 0..5 {
                let inputs: Vec<Scalar> = (0..arity).map(|_| rng.scalar()).collect();
                let mut s = vec![f.tag];
                s.extend_from_slice(&inputs);
                let half = f.full_rounds / 2;
                for r in 0..half {
                    for i in 0..t {
                        s[i] = optimized::quintic(s[i] + f.full[r * t + i]);
                    }
                    s = dense(if r + 1 == half { &f.pre_sparse } else { &f.mds }, &s);
                }
                for k in 0..f.partial_rounds {
                    let x = optimized::quintic(s[0] + f.partial[k]);
                    s[0] = x;
                    let s0 = (0..t).map(|j| f.rows[k * t + j] * s[j]).sum();
                    for i in 1..t {
                        s[i] += f.cols[k * (t - 1) + i - 1] * x;
                    }
                    s[0] = s0;
                }
                for r in half..f.full_rounds {
                    for i in 0..t {
                        s[i] = optimized::quintic(s[i] + f.full[r * t + i]);
                    }
                    if r + 1 < f.full_rounds {
                        s = dense(&f.mds, &s);
                    }
                }
                let digest: Scalar = (0..t).map(|j| f.mds[t + j] * s[j]).sum();
                assert_eq!(digest, c.hash(&inputs).unwrap(), "arity {arity}");
            }
        }
    }

    /// Eight at a time in lanes (where the processor has IFMA) and the rest one by one give
    /// `hash`'s digests, edge values included, for counts around every multiple of eight; a
    /// count that does not fit is refused.
    #[test]
    fn hash_many_is_hash_of_each() {
        let edges = [Scalar::ZERO, Scalar::ONE, -Scalar::ONE, -Scalar::from(2u64)];
        let mut rng = Rng(0x6d61_6e79);
        for arity in SUPPORTED_ARITIES {
            let c = constants(arity).unwrap();
            for count in [0usize, 1, 7, 8, 9, 16, 23, 40] {
                let inputs: Vec<Scalar> = (0..count * arity)
                    .map(|i| {
                        if i % 5 == 0 {
                            edges[i / 5 % edges.len()]
                        } else {
                            rng.scalar()
                        }
                    })
                    .collect();
                let mut out = vec![Scalar::ZERO; count];
                c.hash_many(&inputs, &mut out).unwrap();
                for (i, o) in out.iter().enumerate() {
                    let want = c.hash(&inputs[i * arity..(i + 1) * arity]).unwrap();
                    assert_eq!(*o, want, "arity {arity}, count {count}, hash {i}");
                }
            }
            let mut one = [Scalar::ZERO];
            assert!(
                c.hash_many(&vec![Scalar::ZERO; arity + 1], &mut one)
                    .is_err()
            );
        }
    }

    #[test]
    fn mds_is_symmetric_cauchy() {
        for arity in SUPPORTED_ARITIES {
            let c = constants(arity).unwrap();
            let t = c.width();
            assert_eq!(c.mds().len(), t);
            for i in 0..t {
                for j in 0..t {
                    assert_eq!(c.mds()[i][j], c.mds()[j][i]);
                    let denom = Scalar::from((i + t + j) as u64);
                    assert_eq!(c.mds()[i][j] * denom, Scalar::ONE);
                }
            }
            assert_eq!(
                c.round_constants().len(),
                t * (c.full_rounds() + c.partial_rounds())
            );
        }
    }

    #[test]
    fn rejects_unsupported_arities() {
        for arity in [0, 1, 3, 5, 7, 9, 12, 15, 17, 32] {
            assert!(matches!(
                PoseidonConstants::new(arity),
                Err(PoseidonError::UnsupportedArity(a)) if a == arity
            ));
            assert!(matches!(
                constants(arity),
                Err(PoseidonError::UnsupportedArity(a)) if a == arity
            ));
            let inputs = vec![Scalar::ONE; arity];
            assert!(matches!(hash(&inputs), Err(PoseidonError::UnsupportedArity(a)) if a == arity));
        }
    }

    #[test]
    fn rejects_wrong_input_counts() {
        let c = constants(8).unwrap();
        for got in [0, 1, 7, 9, 16] {
            let inputs = vec![Scalar::ONE; got];
            assert!(matches!(
                c.hash(&inputs),
                Err(PoseidonError::WrongInputCount { expected: 8, got: g }) if g == got
            ));
            assert!(matches!(
                c.hash_reference(&inputs),
                Err(PoseidonError::WrongInputCount { expected: 8, got: g }) if g == got
            ));
        }
    }

    #[test]
    fn constants_are_cached() {
        let a = constants(4).unwrap();
        let b = constants(4).unwrap();
        assert!(std::ptr::eq(a, b));
        assert_eq!(a.arity(), 4);
    }

    #[test]
    fn inputs_matter() {
        let c = constants(2).unwrap();
        let x = c.hash(&[Scalar::ONE, Scalar::from(2u64)]).unwrap();
        let y = c.hash(&[Scalar::from(2u64), Scalar::ONE]).unwrap();
        assert_ne!(x, y);
    }

    proptest! {
        #[test]
        fn fast_matches_reference_proptest(
            arity_index in 0usize..SUPPORTED_ARITIES.len(),
            seed in any::<u64>(),
        ) {
            let arity = SUPPORTED_ARITIES[arity_index];
            let mut rng = Rng(seed);
            let inputs: Vec<Scalar> = (0..arity).map(|_| rng.scalar()).collect();
            let c = constants(arity).unwrap();
            prop_assert_eq!(c.hash(&inputs).unwrap(), c.hash_reference(&inputs).unwrap());
        }
    }
}
