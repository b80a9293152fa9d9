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

fn test_params() -> lode_proofs::params::ParamStore {
    lode_proofs::params::ParamStore::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/lode-test-params"
    ))
}

#[test]
#[ignore = "real Groth16 proofs: run with --include-ignored"]
fn window_and_winning_post_snarks_over_sealed_sectors_with_a_faulty_one() {
    use lode_proofs::circuit::post::{self as circuit, PostCircuit, PostKind};
    use lode_proofs::post::{PublicSector, leaf_challenge, window_partitions};
    use lode_sealing::post::{SealedSector, prove_window, prove_winning};

    let tmp = tempfile::tempdir().unwrap();
    let size = SectorSize::S2KiB;
    let mut sectors = Vec::new();
    for number in [3u64, 7, 12, 20] {
        let id = SectorId {
            size,
            miner_id: 1000,
            sector_number: number,
        };
        let dir = SectorDir::create(&tmp.path().join(format!("s{number}"))).unwrap();
        let data: Vec<u8> = (0..2032)
            .map(|i| ((i * 7 + number as usize) % 256) as u8)
            .collect();
        seal::add_piece(&dir, &id, &data[..], data.len() as u64).unwrap();
        seal::pre_commit1(
            &dir,
            &id,
            trunc254([number as u8; 32]),
            &tmp.path().join("cache"),
            None,
            &mut no_progress,
        )
        .unwrap();
        seal::pre_commit2(&dir, &id, &mut no_progress).unwrap();
        seal::finalize(&dir, &id, false).unwrap();
        sectors.push(SealedSector { id, dir });
    }
    let randomness = trunc254([0x33; 32]);
    let store = test_params();
    let mut rng = PostKind::Window.params_id(size).insecure_rng();

    // Sector 7's replica corrupted at a challenged leaf.
    let leaf = leaf_challenge(size, &randomness, 7, 2);
    let mut replica = std::fs::read(sectors[1].dir.sealed()).unwrap();
    replica[leaf as usize * 32 + 5] ^= 0x10;
    std::fs::write(sectors[1].dir.sealed(), &replica).unwrap();

    let outcome = prove_window(&sectors, &randomness);
    assert_eq!(
        outcome
            .faulty
            .iter()
            .map(|f| f.sector_number)
            .collect::<Vec<_>>(),
        [7]
    );
    let good: Vec<PublicSector> = sectors
        .iter()
        .filter(|s| s.id.sector_number != 7)
        .map(|s| s.public().unwrap())
        .collect();
    let (params, _, _) = store
        .get_or_generate_insecure(&PostKind::Window.params_id(size), || PostCircuit {
            kind: PostKind::Window,
            size,
            witness: None,
        })
        .unwrap();
    let pvk = groth16::prepare_verifying_key(&params.vk);
    let parts = window_partitions(size, &good);
    let vanilla_parts = window_partitions(size, &outcome.proofs);
    assert_eq!(
        parts.len(),
        2,
        "3 good sectors: a full partition and a padded one"
    );
    for (part, vanilla) in parts.iter().zip(&vanilla_parts) {
        let proof = circuit::prove(&params, PostKind::Window, size, vanilla, &mut rng).unwrap();
        circuit::verify(&pvk, PostKind::Window, size, &randomness, part, &proof).unwrap();
        // The faulty sector cannot stand in for a good one.
        let with_faulty: Vec<PublicSector> = part
            .iter()
            .map(|s| {
                if s.sector_number == 12 {
                    sectors[1].public().unwrap()
                } else {
                    *s
                }
            })
            .collect();
        if with_faulty != *part {
            assert!(
                circuit::verify(
                    &pvk,
                    PostKind::Window,
                    size,
                    &randomness,
                    &with_faulty,
                    &proof
                )
                .is_err()
            );
        }
    }

    // Winning PoSt over the healthy sectors.
    let healthy: Vec<SealedSector> = sectors
        .iter()
        .filter(|s| s.id.sector_number != 7)
        .cloned()
        .collect();
    let (params, _, _) = store
        .get_or_generate_insecure(&PostKind::Winning.params_id(size), || PostCircuit {
            kind: PostKind::Winning,
            size,
            witness: None,
        })
        .unwrap();
    let pvk = groth16::prepare_verifying_key(&params.vk);
    let vanilla = prove_winning(&healthy, 1000, &randomness).unwrap();
    let proof = circuit::prove(&params, PostKind::Winning, size, &[vanilla], &mut rng).unwrap();
    circuit::verify_winning(&pvk, size, 1000, &randomness, &good, &proof).unwrap();
    assert!(
        circuit::verify_winning(&pvk, size, 1001, &randomness, &good, &proof).is_err() || {
            // Another miner id may select the same sector; then its challenges are the same too.
            let idx =
                |m| lode_proofs::post::winning_sector_index(m, &randomness, good.len()).unwrap();
            idx(1000) == idx(1001)
        }
    );
    assert!(
        circuit::verify_winning(&pvk, size, 1000, &trunc254([0x34; 32]), &good, &proof).is_err()
    );
}

#[test]
#[ignore = "real Groth16 proofs: run with --include-ignored"]
fn porep_groth16_end_to_end_at_2kib_with_batch_verification() {
    use lode_proofs::circuit::porep;
    let tmp = tempfile::tempdir().unwrap();
    let (public, vanilla) = seal_2kib(tmp.path());
    let store = test_params();
    let id = porep::params_id(SectorSize::S2KiB);
    let (params, _, _) = store
        .get_or_generate_insecure(&id, || PorepCircuit {
            size: SectorSize::S2KiB,
            witness: None,
        })
        .unwrap();
    let mut rng = id.insecure_rng();
    let start = std::time::Instant::now();
    let proofs = porep::prove(&params, &public, &vanilla, &mut rng).unwrap();
    println!("Commit2 at 2KiB: {:.1} s", start.elapsed().as_secs_f64());
    assert_eq!(proofs.len(), 1);
    assert_eq!(proofs[0].len(), 192);
    let pvk = groth16::prepare_verifying_key(&params.vk);
    porep::verify(&pvk, &public, &proofs).unwrap();

    // Every public input matters; any flipped byte of the proof is rejected; nothing panics.
    let flip = |n: lode_proofs::node::Node| trunc254(*blake3::hash(&n.0).as_bytes());
    for bad in [
        lode_proofs::porep::PorepPublic {
            comm_r: flip(public.comm_r),
            ..public
        },
        lode_proofs::porep::PorepPublic {
            comm_d: flip(public.comm_d),
            ..public
        },
        lode_proofs::porep::PorepPublic {
            seed: flip(public.seed),
            ..public
        },
        lode_proofs::porep::PorepPublic {
            ticket: flip(public.ticket),
            ..public
        },
        lode_proofs::porep::PorepPublic {
            sector_number: public.sector_number + 1,
            ..public
        },
        lode_proofs::porep::PorepPublic {
            miner_id: public.miner_id + 1,
            ..public
        },
    ] {
        assert!(porep::verify(&pvk, &bad, &proofs).is_err());
    }
    for at in (0..192).step_by(7) {
        let mut bad = proofs.clone();
        bad[0][at] ^= 1 << (at % 8);
        assert!(porep::verify(&pvk, &public, &bad).is_err(), "byte {at}");
    }
    assert!(porep::verify(&pvk, &public, &[]).is_err());
    assert!(porep::verify(&pvk, &public, &[vec![0; 191]]).is_err());

    // A proof made with other parameters does not verify under these.
    let other_id = lode_proofs::params::ParamsId::new("porep-other", &[]);
    let other = lode_proofs::params::generate_insecure(
        &other_id,
        lode_proofs::circuit::post::PostCircuit {
            kind: lode_proofs::circuit::post::PostKind::Window,
            size: SectorSize::S2KiB,
            witness: None,
        },
    );
    if let Ok(other) = other {
        assert!(
            porep::verify(&groth16::prepare_verifying_key(&other.vk), &public, &proofs).is_err()
        );
    }

    // Batch verification: two sectors' proofs at once; one bad item fails the batch.
    let tmp2 = tempfile::tempdir().unwrap();
    let id2 = SectorId {
        size: SectorSize::S2KiB,
        miner_id: 1000,
        sector_number: 8,
    };
    let dir2 = SectorDir::create(&tmp2.path().join("s")).unwrap();
    seal::pre_commit1(
        &dir2,
        &id2,
        trunc254([5; 32]),
        &tmp.path().join("cache"),
        None,
        &mut no_progress,
    )
    .unwrap();
    seal::pre_commit2(&dir2, &id2, &mut no_progress).unwrap();
    let (public2, vanilla2) = seal::commit1(&dir2, &id2, trunc254([6; 32])).unwrap();
    let proofs2 = porep::prove(&params, &public2, &vanilla2, &mut rng).unwrap();
    let items = vec![(public, proofs.clone()), (public2, proofs2.clone())];
    porep::verify_batch(&params.vk, &items, &mut rng).unwrap();
    let swapped = vec![(public, proofs2), (public2, proofs)];
    assert!(porep::verify_batch(&params.vk, &swapped, &mut rng).is_err());
}

#[test]
#[ignore = "real Groth16 proofs: run with --include-ignored"]
fn post_and_verify_through_the_command_line() {
    use std::process::Command;
    let tmp = tempfile::tempdir().unwrap();
    let lode = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lode"))
            .args(args)
            .output()
            .unwrap()
    };
    let params = test_params().dir().to_str().unwrap().to_owned();
    let cache = tmp.path().join("cache");
    let mut dirs = Vec::new();
    for n in ["4", "5", "6"] {
        let d = tmp.path().join(n);
        let o = lode(&[
            "seal",
            "run",
            "--sector-size",
            "2KiB",
            "--sector-dir",
            d.to_str().unwrap(),
            "--sector-number",
            n,
            "--cache-dir",
            cache.to_str().unwrap(),
            "--ticket",
            &format!("{n}{n}").repeat(32),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        dirs.push(d.to_str().unwrap().to_owned());
    }
    let randomness = "ab".repeat(32);
    // The Window PoSt's G1 sums on the OpenCL device where there is one (PoCL in CI).
    let opencl = std::env::var_os("LODE_REQUIRE_OPENCL").is_some()
        || std::fs::read_dir("/etc/OpenCL/vendors").is_ok_and(|mut d| d.next().is_some());
    for (kind, device) in [
        ("window", if opencl { "opencl" } else { "off" }),
        ("winning", "off"),
    ] {
        let out = tmp.path().join(format!("{kind}.json"));
        let mut args = vec![
            "post",
            kind,
            "--randomness",
            &randomness,
            "--params-dir",
            &params,
            "--gpu",
            device,
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend(dirs.iter().map(String::as_str));
        let o = lode(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("INSECURE"),
            "insecure parameters must be announced"
        );
        let v = lode(&[
            "verify",
            "post",
            out.to_str().unwrap(),
            "--params-dir",
            &params,
        ]);
        assert!(
            v.status.success(),
            "{} {}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&v.stdout).trim(), "valid");
        // Other randomness in the file: exit 1 with the reason.
        let text = std::fs::read_to_string(&out).unwrap();
        let tampered = text.replace(&randomness[..62], &"cd".repeat(31));
        std::fs::write(&out, tampered).unwrap();
        let v = lode(&[
            "verify",
            "post",
            out.to_str().unwrap(),
            "--params-dir",
            &params,
        ]);
        assert_eq!(v.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&v.stdout).starts_with("invalid"));
    }
}
