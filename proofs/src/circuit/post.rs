//! The PoSt circuit (SPEC §6.4), one Groth16 proof per Winning PoSt or per Window PoSt partition.
//!
//! Per sector: private `comm_c` and `comm_r_last`, the public `comm_r = Poseidon_2(comm_c, comm_r_last)`,
//! and per challenge a tree R inclusion of a private leaf at a public index. Public inputs, in order, per
//! sector: `comm_r`, then each leaf index.

use bellman::gadgets::num::AllocatedNum;
use bellman::{Circuit, ConstraintSystem, SynthesisError};
use bls12_381::{Bls12, Scalar};
use groth16::{Parameters, PreparedVerifyingKey};
use rand_core::{CryptoRng, Rng};
use rayon::prelude::*;

use super::poseidon::{AllocatedPath, LinearNum, alloc_node, comm_r, invalid};
use crate::merkle::{MerkleProof, TreeShape};
use crate::node::Node;
use crate::params::ParamsId;
use crate::post::{
    self, PostError, PublicSector, SectorProof, WINDOW_CHALLENGES_PER_SECTOR, WINNING_CHALLENGES,
};
use crate::prover::G1Msm;
use crate::prover::synth::Witness;
use crate::sector::SectorSize;
use crate::snark::{SnarkError, proof_from_bytes, proof_to_bytes};
use std::sync::Arc;

/// Which PoSt a circuit proves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PostKind {
    /// One sector, 66 challenges.
    Winning,
    /// One partition of sectors, 10 challenges each.
    Window,
}

impl PostKind {
    /// Sectors per circuit.
    pub fn sectors(self, size: SectorSize) -> usize {
        match self {
            PostKind::Winning => 1,
            PostKind::Window => size.window_post_sectors_per_partition(),
        }
    }

    /// Challenges per sector.
    pub fn challenges(self) -> usize {
        match self {
            PostKind::Winning => WINNING_CHALLENGES,
            PostKind::Window => WINDOW_CHALLENGES_PER_SECTOR,
        }
    }

    /// The name used in parameter identifiers and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            PostKind::Winning => "winning-post",
            PostKind::Window => "window-post",
        }
    }

    /// The identifier of this circuit's parameters for `size`.
    pub fn params_id(self, size: SectorSize) -> ParamsId {
        ParamsId::new(
            self.name(),
            &[
                ("sector_size", size.bytes().to_string()),
                ("sectors", self.sectors(size).to_string()),
                ("challenges", self.challenges().to_string()),
                ("tree_r_arities", size.tree_shape().arities_csv()),
                ("hash", "poseidon-bls12-381".into()),
            ],
        )
    }
}

/// The PoSt circuit: blank (`witness: None`) for parameter generation, or with the sectors' vanilla proofs.
pub struct PostCircuit<'a> {
    /// Which PoSt.
    pub kind: PostKind,
    /// Sector size.
    pub size: SectorSize,
    /// One vanilla proof per sector of the circuit (already padded for Window PoSt).
    pub witness: Option<&'a [SectorProof]>,
}

impl PostCircuit<'_> {
    /// Refuses vanilla proofs without the circuit's sector and challenge counts.
    fn check(&self) -> Result<(), SynthesisError> {
        let (sectors, challenges) = (self.kind.sectors(self.size), self.kind.challenges());
        let mismatched = |w: &[SectorProof]| {
            w.len() != sectors || w.iter().any(|p| p.openings.len() != challenges)
        };
        if self.witness.is_some_and(mismatched) {
            return Err(invalid(
                "the vanilla proofs do not have the circuit's sector and challenge counts",
            ));
        }
        Ok(())
    }

    /// A sector's own part: `comm_c`, `comm_r_last`, and `comm_r` made a public input. Returns
    /// `comm_r_last`, which every challenge's path leads to.
    fn sector<CS: ConstraintSystem<Scalar>>(
        cs: &mut CS,
        proof: Option<&SectorProof>,
    ) -> Result<AllocatedNum<Scalar>, SynthesisError> {
        let comm_c = alloc_node(cs.namespace(|| "comm_c"), proof.map(|p| &p.comm_c))?;
        let comm_r_last = alloc_node(
            cs.namespace(|| "comm_r_last"),
            proof.map(|p| &p.comm_r_last),
        )?;
        let cr = comm_r(cs.namespace(|| "comm_r"), &comm_c, &comm_r_last)?;
        cr.inputize(cs.namespace(|| "comm_r input"))?;
        Ok(comm_r_last)
    }

    /// One challenge: the opening's path to `comm_r_last`, and its leaf index made a public input.
    fn challenge<CS: ConstraintSystem<Scalar>>(
        cs: &mut CS,
        shape: &TreeShape,
        opening: Option<&MerkleProof>,
        comm_r_last: &AllocatedNum<Scalar>,
    ) -> Result<(), SynthesisError> {
        let path = AllocatedPath::alloc(cs.namespace(|| "path"), shape, opening)?;
        let root = path.root(cs.namespace(|| "root"), shape)?;
        LinearNum::enforce_equal(
            cs.namespace(|| "root is comm_r_last"),
            &LinearNum::from(&root),
            &LinearNum::from(comm_r_last),
        )?;
        path.index().inputize(cs.namespace(|| "leaf index input"))
    }

    /// The witness alone, as [`crate::prover`] synthesises it for a circuit whose constraints it
    /// already knows: the same values in the same order as [`Circuit::synthesize`] allocates them,
    /// the challenges of a sector synthesised in parallel (each allocates its own variables only).
    pub(crate) fn witness(&self) -> Result<Witness, SynthesisError> {
        self.check()?;
        let shape = self.size.tree_shape();
        let mut w = Witness::begin()?;
        for s in 0..self.kind.sectors(self.size) {
            let proof = self.witness.map(|w| &w[s]);
            let comm_r_last = Self::sector(&mut w, proof)?;
            let parts: Vec<Result<Witness, SynthesisError>> = (0..self.kind.challenges())
                .into_par_iter()
                .map(|m| {
                    let mut part = Witness::default();
                    Self::challenge(
                        &mut part,
                        &shape,
                        proof.map(|p| &p.openings[m]),
                        &comm_r_last,
                    )?;
                    Ok(part)
                })
                .collect();
            for part in parts {
                w.append(part?);
            }
        }
        Ok(w.finish())
    }
}

impl Circuit<Scalar> for PostCircuit<'_> {
    fn synthesize<CS: ConstraintSystem<Scalar>>(self, cs: &mut CS) -> Result<(), SynthesisError> {
        self.check()?;
        let shape = self.size.tree_shape();
        for s in 0..self.kind.sectors(self.size) {
            let proof = self.witness.map(|w| &w[s]);
            let mut cs = cs.namespace(|| format!("sector {s}"));
            let comm_r_last = Self::sector(&mut cs, proof)?;
            for m in 0..self.kind.challenges() {
                let mut cs = cs.namespace(|| format!("challenge {m}"));
                Self::challenge(&mut cs, &shape, proof.map(|p| &p.openings[m]), &comm_r_last)?;
            }
        }
        Ok(())
    }
}

fn fr(n: &Node, at: usize) -> Result<Scalar, SnarkError> {
    n.to_fr().ok_or(SnarkError::NonCanonicalInput(at))
}

/// The public inputs of a PoSt circuit: per sector, `comm_r` then its leaf challenges.
pub fn public_inputs(
    kind: PostKind,
    size: SectorSize,
    randomness: &Node,
    sectors: &[PublicSector],
) -> Result<Vec<Scalar>, SnarkError> {
    let mut inputs = Vec::with_capacity(sectors.len() * (1 + kind.challenges()));
    for s in sectors {
        inputs.push(fr(&s.comm_r, inputs.len())?);
        for leaf in post::leaf_challenges(size, randomness, s.sector_number, kind.challenges()) {
            inputs.push(Scalar::from(leaf));
        }
    }
    Ok(inputs)
}

/// Proves a PoSt from the vanilla proofs of the circuit's sectors (for Window PoSt, one partition,
/// padded); returns the 192-byte proof.
///
/// The proof is made by [`crate::prover`], the same proof `groth16::create_random_proof` makes
/// from the same RNG state; the parameters' points are converted on the first proof and kept while
/// `params` lives, with the circuit's constraints, so a prover that keeps its parameters in memory
/// pays that once.
pub fn prove<R: Rng + CryptoRng>(
    params: &Parameters<Bls12>,
    kind: PostKind,
    size: SectorSize,
    vanilla: &[SectorProof],
    rng: &mut R,
) -> Result<Vec<u8>, SnarkError> {
    prove_on(params, kind, size, vanilla, rng, None)
}

/// [`prove`] with the proof's G1 sums on `device` when given (the same proof).
pub fn prove_on<R: Rng + CryptoRng>(
    params: &Parameters<Bls12>,
    kind: PostKind,
    size: SectorSize,
    vanilla: &[SectorProof],
    rng: &mut R,
    device: Option<&Arc<dyn G1Msm>>,
) -> Result<Vec<u8>, SnarkError> {
    let circuit = || PostCircuit {
        kind,
        size,
        witness: Some(vanilla),
    };
    let proof = crate::prover::create_random_proof_parallel(
        circuit,
        || circuit().witness(),
        params,
        rng,
        device,
    )?;
    Ok(proof_to_bytes(&proof))
}

/// Verifies a PoSt proof for `sectors` (for Window PoSt, one partition, padded; for Winning PoSt,
/// the selected sector — see [`verify_winning`]).
pub fn verify(
    pvk: &PreparedVerifyingKey<Bls12>,
    kind: PostKind,
    size: SectorSize,
    randomness: &Node,
    sectors: &[PublicSector],
    proof: &[u8],
) -> Result<(), SnarkError> {
    if sectors.len() != kind.sectors(size) {
        return Err(SnarkError::Malformed(
            "wrong number of sectors for this circuit",
        ));
    }
    let inputs = public_inputs(kind, size, randomness, sectors)?;
    let proof = proof_from_bytes(proof)?;
    groth16::verify_proof(pvk, &proof, &inputs).map_err(|_| SnarkError::Invalid)
}

/// Verifies a Winning PoSt proof: the sector is selected by the randomness among the miner's sectors.
pub fn verify_winning(
    pvk: &PreparedVerifyingKey<Bls12>,
    size: SectorSize,
    miner_id: u64,
    randomness: &Node,
    sectors: &[PublicSector],
    proof: &[u8],
) -> Result<(), SnarkError> {
    let mut sorted = sectors.to_vec();
    sorted.sort_by_key(|s| s.sector_number);
    let index = post::winning_sector_index(miner_id, randomness, sorted.len())
        .map_err(|_: PostError| SnarkError::Malformed("no sectors"))?;
    verify(
        pvk,
        PostKind::Winning,
        size,
        randomness,
        &sorted[index..=index],
        proof,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::merkle::{DiskTree, PoseidonTree, TreeConfig};
    use crate::node::trunc254;
    use crate::params::ParamStore;
    use bellman::gadgets::test::TestConstraintSystem;

    /// A replica-like tree with random leaves, and its sector's commitments.
    fn sector(dir: &std::path::Path, number: u64) -> (PublicSector, DiskTree<PoseidonTree>, Node) {
        let size = SectorSize::S2KiB;
        let leaves: Vec<Node> = (0..size.nodes())
            .map(|i| {
                trunc254(
                    *blake3::hash(&[number.to_le_bytes(), i.to_le_bytes()].concat()).as_bytes(),
                )
            })
            .collect();
        let tree = DiskTree::<PoseidonTree>::build(
            &size.tree_shape(),
            &leaves,
            &dir.join(format!("r{number}")),
            TreeConfig { discard_rows: 1 },
        )
        .unwrap();
        let comm_c = trunc254([number as u8; 32]);
        let comm_r = crate::sdr::comm_r(&comm_c, &tree.root()).unwrap();
        (
            PublicSector {
                sector_number: number,
                comm_r,
            },
            tree,
            comm_c,
        )
    }

    fn vanilla(
        size: SectorSize,
        r: &Node,
        s: &PublicSector,
        tree: &DiskTree<PoseidonTree>,
        comm_c: Node,
        count: usize,
    ) -> SectorProof {
        let openings = post::leaf_challenges(size, r, s.sector_number, count)
            .into_iter()
            .map(|l| tree.prove(l).unwrap())
            .collect();
        SectorProof {
            sector_number: s.sector_number,
            comm_c,
            comm_r_last: tree.root(),
            openings,
        }
    }

    #[test]
    fn window_circuit_is_satisfied_and_counts_constraints() {
        let dir = tempfile::tempdir().unwrap();
        let size = SectorSize::S2KiB;
        let r = trunc254([7; 32]);
        let (s1, t1, c1) = sector(dir.path(), 3);
        let (s2, t2, c2) = sector(dir.path(), 9);
        let proofs = [
            vanilla(size, &r, &s1, &t1, c1, 10),
            vanilla(size, &r, &s2, &t2, c2, 10),
        ];
        let mut cs = TestConstraintSystem::new();
        PostCircuit {
            kind: PostKind::Window,
            size,
            witness: Some(&proofs),
        }
        .synthesize(&mut cs)
        .unwrap();
        assert!(cs.is_satisfied(), "{:?}", cs.which_is_unsatisfied());
        let inputs = public_inputs(PostKind::Window, size, &r, &[s1, s2]).unwrap();
        assert_eq!(cs.num_inputs(), 1 + inputs.len());
        assert!(cs.verify(&inputs));
        // A leaf from another index breaks it.
        let mut bad = proofs.clone();
        bad[1].openings[3].leaf = bad[1].openings[4].leaf;
        let mut cs = TestConstraintSystem::new();
        PostCircuit {
            kind: PostKind::Window,
            size,
            witness: Some(&bad),
        }
        .synthesize(&mut cs)
        .unwrap();
        assert!(!cs.is_satisfied());
        // The circuit's size, pinned (parameter generation synthesizes it without a witness).
        assert_eq!(cs.num_constraints(), 16_452);
    }

    #[test]
    fn the_parallel_witness_is_the_synthesised_one() {
        let dir = tempfile::tempdir().unwrap();
        let size = SectorSize::S2KiB;
        let r = trunc254([3; 32]);
        let (s1, t1, c1) = sector(dir.path(), 4);
        let (s2, t2, c2) = sector(dir.path(), 6);
        let window = [
            vanilla(size, &r, &s1, &t1, c1, 10),
            vanilla(size, &r, &s2, &t2, c2, 10),
        ];
        let winning = [vanilla(size, &r, &s2, &t2, c2, WINNING_CHALLENGES)];
        for (kind, proofs) in [
            (PostKind::Window, &window[..]),
            (PostKind::Winning, &winning[..]),
        ] {
            let circuit = || PostCircuit {
                kind,
                size,
                witness: Some(proofs),
            };
            let parallel = circuit().witness().unwrap();
            assert_eq!(parallel, Witness::synthesize(circuit()).unwrap());
        }
        // The same errors: counts that do not fit, a missing witness.
        let short = PostCircuit {
            kind: PostKind::Window,
            size,
            witness: Some(&window[..1]),
        };
        assert!(short.witness().is_err());
        let blank = PostCircuit {
            kind: PostKind::Window,
            size,
            witness: None,
        };
        assert!(matches!(
            blank.witness(),
            Err(SynthesisError::AssignmentMissing)
        ));
    }

    #[test]
    fn window_post_groth16_end_to_end() {
        let dir = tempfile::tempdir().unwrap();
        let size = SectorSize::S2KiB;
        let store = ParamStore::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/lode-test-params"
        ));
        let id = PostKind::Window.params_id(size);
        let (params, _, _) = store
            .get_or_generate_insecure(&id, || PostCircuit {
                kind: PostKind::Window,
                size,
                witness: None,
            })
            .unwrap();
        let pvk = groth16::prepare_verifying_key(&params.vk);
        let r = trunc254([8; 32]);
        let (s1, t1, c1) = sector(dir.path(), 3);
        let (s2, t2, c2) = sector(dir.path(), 9);
        let proofs = [
            vanilla(size, &r, &s1, &t1, c1, 10),
            vanilla(size, &r, &s2, &t2, c2, 10),
        ];
        let mut rng = id.insecure_rng();
        let proof = prove(&params, PostKind::Window, size, &proofs, &mut rng).unwrap();
        assert_eq!(proof.len(), 192);
        verify(&pvk, PostKind::Window, size, &r, &[s1, s2], &proof).unwrap();
        // The first proof with these parameters recorded the circuit's constraints; the next one
        // takes the parallel witness: still the groth16 crate's proof for the same RNG state.
        let mut ours = id.insecure_rng();
        let mut theirs = id.insecure_rng();
        for _ in 0..2 {
            let proof = prove(&params, PostKind::Window, size, &proofs, &mut ours).unwrap();
            let circuit = PostCircuit {
                kind: PostKind::Window,
                size,
                witness: Some(&proofs),
            };
            let reference = groth16::create_random_proof(circuit, &params, &mut theirs).unwrap();
            assert_eq!(proof, proof_to_bytes(&reference));
        }
        // Other randomness, another comm_r, swapped sectors, a flipped byte: all rejected.
        assert!(
            verify(
                &pvk,
                PostKind::Window,
                size,
                &trunc254([9; 32]),
                &[s1, s2],
                &proof
            )
            .is_err()
        );
        let other = PublicSector {
            comm_r: s1.comm_r,
            ..s2
        };
        assert!(verify(&pvk, PostKind::Window, size, &r, &[s1, other], &proof).is_err());
        assert!(verify(&pvk, PostKind::Window, size, &r, &[s2, s1], &proof).is_err());
        for at in [0, 47, 48, 100, 150, 191] {
            let mut bad = proof.clone();
            bad[at] ^= 1;
            assert!(
                verify(&pvk, PostKind::Window, size, &r, &[s1, s2], &bad).is_err(),
                "byte {at}"
            );
        }
        assert!(verify(&pvk, PostKind::Window, size, &r, &[s1, s2], &proof[..191]).is_err());
        // The same circuit with parameters from another setup (another identifier, so other toxic
        // waste): its verifying key rejects a proof made with ours.
        let other_id = ParamsId::new(
            "window-post-other-setup",
            &[("sector_size", size.bytes().to_string())],
        );
        let other = crate::params::generate_insecure(
            &other_id,
            PostCircuit {
                kind: PostKind::Window,
                size,
                witness: None,
            },
        )
        .unwrap();
        let other_pvk = groth16::prepare_verifying_key(&other.vk);
        assert!(verify(&other_pvk, PostKind::Window, size, &r, &[s1, s2], &proof).is_err());
        let theirs = prove(&other, PostKind::Window, size, &proofs, &mut rng).unwrap();
        verify(&other_pvk, PostKind::Window, size, &r, &[s1, s2], &theirs).unwrap();
        assert!(verify(&pvk, PostKind::Window, size, &r, &[s1, s2], &theirs).is_err());
    }
}
