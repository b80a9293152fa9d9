//! SNARKs over real sealed sectors: the PoRep circuit from a Commit1 output, satisfied and then broken.

#![allow(clippy::unwrap_used)]

use bellman::Circuit;
use bellman::gadgets::test::TestConstraintSystem;
use lode_proofs::circuit::porep::{PorepCircuit, PorepWitness, public_inputs};
use lode_proofs::node::trunc254;
use lode_proofs::sector::SectorSize;
use lode_sealing::seal::{self, SectorId, no_progress};
use lode_sealing::sector_dir::SectorDir;

fn seal_2kib(
    root: &std::path::Path,
) -> (
    lode_proofs::porep::PorepPublic,
    lode_proofs::porep::PorepProof,
) {
    let id = SectorId {
        size: SectorSize::S2KiB,
        miner_id: 1000,
        sector_number: 7,
    };
    let dir = SectorDir::create(&root.join("sector")).unwrap();
    let data: Vec<u8> = (0..2032).map(|i| ((i * 13 + 5) % 256) as u8).collect();
    seal::add_piece(&dir, &id, &data[..], data.len() as u64).unwrap();
    seal::pre_commit1(
        &dir,
        &id,
        trunc254([1; 32]),
        &root.join("cache"),
        None,
        &mut no_progress,
    )
    .unwrap();
    seal::pre_commit2(&dir, &id, &mut no_progress).unwrap();
    seal::commit1(&dir, &id, trunc254([2; 32])).unwrap()
}

#[test]
fn porep_circuit_is_satisfied_by_a_real_commit1_and_broken_by_any_change() {
    let tmp = tempfile::tempdir().unwrap();
    let (public, vanilla) = seal_2kib(tmp.path());
    let witness = PorepWitness {
        replica_id: public.replica_id(),
        comm_d: public.comm_d,
        comm_c: vanilla.comm_c,
        comm_r_last: vanilla.comm_r_last,
        challenges: &vanilla.partitions[0],
    };
    let mut cs = TestConstraintSystem::new();
    PorepCircuit {
        size: public.size,
        witness: Some(witness),
    }
    .synthesize(&mut cs)
    .unwrap();
    assert!(cs.is_satisfied(), "{:?}", cs.which_is_unsatisfied());
    let inputs = public_inputs(&public, 0).unwrap();
    assert_eq!(inputs.len(), 3 + 2 * 3);
    assert!(cs.verify(&inputs));
    println!(
        "PoRep 2KiB partition: {} constraints, {} public inputs",
        cs.num_constraints(),
        inputs.len()
    );
    // The anchor's circuit has 2,687,921 constraints for the same layers and challenges.
    assert!(
        cs.num_constraints() * 3 <= 2_687_921,
        "{} constraints",
        cs.num_constraints()
    );

    // Public inputs of another seed do not match the proof's witness.
    let other = lode_proofs::porep::PorepPublic {
        seed: trunc254([3; 32]),
        ..public
    };
    assert!(!cs.verify(&public_inputs(&other, 0).unwrap()));

    // A label of a parent changed: unsatisfied.
    let mut bad = vanilla.clone();
    bad.partitions[0][0].base[2].labels[0] = bad.partitions[0][0].base[3].labels[0];
    let w = PorepWitness {
        challenges: &bad.partitions[0],
        ..witness
    };
    let mut cs = TestConstraintSystem::new();
    PorepCircuit {
        size: public.size,
        witness: Some(w),
    }
    .synthesize(&mut cs)
    .unwrap();
    assert!(!cs.is_satisfied());

    // A data node changed: unsatisfied.
    let mut bad = vanilla.clone();
    bad.partitions[0][1].data.leaf = bad.partitions[0][0].data.leaf;
    if bad != vanilla {
        let w = PorepWitness {
            challenges: &bad.partitions[0],
            ..witness
        };
        let mut cs = TestConstraintSystem::new();
        PorepCircuit {
            size: public.size,
            witness: Some(w),
        }
        .synthesize(&mut cs)
        .unwrap();
        assert!(!cs.is_satisfied());
    }

    // A malformed vanilla proof is an error, not a panic.
    let mut short = vanilla.clone();
    short.partitions[0][0].base.pop();
    let w = PorepWitness {
        challenges: &short.partitions[0],
        ..witness
    };
    let mut cs = TestConstraintSystem::<bls12_381::Scalar>::new();
    assert!(
        PorepCircuit {
            size: public.size,
            witness: Some(w)
        }
        .synthesize(&mut cs)
        .is_err()
    );
}
