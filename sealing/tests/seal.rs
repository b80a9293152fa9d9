//! Whole-sector scenarios of the sealing engine: the 2 KiB known answers, round trips through
//! unsealing, resuming an interrupted PreCommit1, and vanilla proofs that fail on any change.

#![allow(clippy::unwrap_used)]

use std::ops::ControlFlow;
use std::path::Path;

use lode_proofs::node::{Node, nodes_from_bytes, trunc254};
use lode_proofs::porep::{self, PorepProof};
use lode_proofs::sector::SectorSize;
use lode_sealing::SealError;
use lode_sealing::seal::{self, Progress, SectorId, no_progress};
use lode_sealing::sector_dir::SectorDir;

#[derive(serde::Deserialize)]
struct SealVector {
    inputs: Inputs,
    piece: PieceV,
    comm_d: String,
    replica_id: String,
    labels: Vec<LayerV>,
    columns: Vec<String>,
    comm_c: String,
    comm_r_last: String,
    comm_r: String,
    replica: String,
    porep: PorepV,
}
#[derive(serde::Deserialize)]
struct Inputs {
    miner_id: u64,
    sector_number: u64,
    ticket: String,
    raw_len: usize,
}
#[derive(serde::Deserialize)]
struct PieceV {
    comm_p: String,
}
#[derive(serde::Deserialize)]
struct LayerV {
    layer: usize,
    labels: Vec<String>,
}
#[derive(serde::Deserialize)]
struct PorepV {
    seed: String,
    challenges: Vec<ChallengeV>,
}
#[derive(serde::Deserialize)]
struct ChallengeV {
    c: u64,
}

fn node(h: &str) -> Node {
    Node::from_hex(h).unwrap()
}

fn file_nodes(path: &Path) -> Vec<Node> {
    nodes_from_bytes(&std::fs::read(path).unwrap())
        .unwrap()
        .to_vec()
}

/// Seals `data` (one piece) through every phase and returns the sector id and directory.
fn seal_all(
    root: &Path,
    cache: &Path,
    size: SectorSize,
    data: &[u8],
    ticket: Node,
) -> (SectorId, SectorDir) {
    let id = SectorId {
        size,
        miner_id: 1000,
        sector_number: 7,
    };
    let dir = SectorDir::create(root).unwrap();
    seal::add_piece(&dir, &id, data, data.len() as u64).unwrap();
    seal::pre_commit1(&dir, &id, ticket, cache, None, &mut no_progress).unwrap();
    seal::pre_commit2(&dir, &id, &mut no_progress).unwrap();
    (id, dir)
}

#[test]
fn seal_2kib_known_answers() {
    let v: SealVector =
        serde_json::from_str(include_str!("../../fixtures/vectors/seal_2kib.json")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let raw: Vec<u8> = (0..v.inputs.raw_len)
        .map(|i| ((i * 13 + 5) % 256) as u8)
        .collect();
    let id = SectorId {
        size: SectorSize::S2KiB,
        miner_id: v.inputs.miner_id,
        sector_number: v.inputs.sector_number,
    };
    let dir = SectorDir::create(&tmp.path().join("s")).unwrap();
    let piece = seal::add_piece(&dir, &id, &raw[..], raw.len() as u64).unwrap();
    assert_eq!(piece.comm_p.0, node(&v.piece.comm_p));

    let pc1 = seal::pre_commit1(
        &dir,
        &id,
        node(&v.inputs.ticket),
        &tmp.path().join("cache"),
        None,
        &mut no_progress,
    )
    .unwrap();
    assert_eq!(pc1.comm_d.0, node(&v.comm_d));
    assert_eq!(pc1.replica_id.0, node(&v.replica_id));
    for layer in &v.labels {
        let labels = file_nodes(&dir.layer(layer.layer));
        let expected: Vec<Node> = layer.labels.iter().map(|h| node(h)).collect();
        assert_eq!(labels, expected, "layer {}", layer.layer);
    }

    let pc2 = seal::pre_commit2(&dir, &id, &mut no_progress).unwrap();
    let columns: Vec<Node> = v.columns.iter().map(|h| node(h)).collect();
    assert_eq!(file_nodes(&dir.columns()), columns);
    assert_eq!(pc2.comm_c.0, node(&v.comm_c));
    assert_eq!(pc2.comm_r_last.0, node(&v.comm_r_last));
    assert_eq!(pc2.comm_r.0, node(&v.comm_r));
    assert_eq!(hex::encode(std::fs::read(dir.sealed()).unwrap()), v.replica);

    let (public, proof) = seal::commit1(&dir, &id, node(&v.porep.seed)).unwrap();
    let challenges: Vec<u64> = proof.partitions[0].iter().map(|p| p.data.index).collect();
    assert_eq!(
        challenges,
        v.porep.challenges.iter().map(|c| c.c).collect::<Vec<_>>()
    );
    porep::verify(&public, &proof).unwrap();
    assert_eq!(
        PorepProof::from_bytes(&std::fs::read(dir.commit1()).unwrap()).unwrap(),
        proof
    );
}

fn random_bytes(len: usize, seed: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut h = blake3::Hasher::new();
    h.update(&[seed]);
    let mut xof = h.finalize_xof();
    out.resize(len, 0);
    xof.fill(&mut out);
    out
}

#[test]
fn round_trip_2kib_and_8mib_with_several_pieces() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    for size in [SectorSize::S2KiB, SectorSize::S8MiB] {
        let id = SectorId {
            size,
            miner_id: 42,
            sector_number: 3,
        };
        let dir = SectorDir::create(&tmp.path().join(size.name())).unwrap();
        let quarter = (size.bytes() / 4 / 128 * 127) as usize;
        let pieces = [
            random_bytes(100, 1),
            random_bytes(quarter, 2),
            random_bytes(quarter - 5, 3),
        ];
        for p in &pieces {
            seal::add_piece(&dir, &id, &p[..], p.len() as u64).unwrap();
        }
        seal::pre_commit1(&dir, &id, trunc254([9; 32]), &cache, None, &mut no_progress).unwrap();
        seal::pre_commit2(&dir, &id, &mut no_progress).unwrap();
        let (public, proof) = seal::commit1(&dir, &id, trunc254([5; 32])).unwrap();
        porep::verify(&public, &proof).unwrap();

        // Unsealing needs only the replica: finalize first, dropping the unsealed copy.
        seal::finalize(&dir, &id, false).unwrap();
        assert!(!dir.unsealed().exists() && !dir.layer(1).exists() && dir.sealed().exists());
        for (i, p) in pieces.iter().enumerate() {
            let mut out = Vec::new();
            seal::unseal_piece(&dir, &id, &cache, i, &mut out, &mut no_progress).unwrap();
            assert_eq!(&out, p, "{size} piece {i}");
        }
        // A byte range across the gap between pieces 0 and 1: piece 0's bytes then zeros then piece 1's.
        let meta: seal::SectorMeta =
            serde_json::from_slice(&std::fs::read(dir.sector_meta()).unwrap()).unwrap();
        let start1 = meta.pieces[1].offset / 128 * 127;
        let mut out = Vec::new();
        seal::unseal_range(
            &dir,
            &id,
            &cache,
            50,
            start1 + 20 - 50,
            &mut out,
            &mut no_progress,
        )
        .unwrap();
        assert_eq!(&out[..50], &pieces[0][50..]);
        assert!(out[50..(start1 - 50) as usize].iter().all(|&b| b == 0));
        assert_eq!(&out[(start1 - 50) as usize..], &pieces[1][..20]);
    }
}

/// Deal pieces larger than their payloads (zero-filled to the deal's piece size): CommP and
/// CommD are the zero-filled pieces', ranges read back from the unsealed copy, the unsealed copy
/// rebuilt from the replica after Finalize dropped it, and a damaged replica refused.
#[test]
fn deal_pieces_read_back_from_the_unsealed_copy_and_by_unsealing_the_sector() {
    use lode_proofs::piece::{PaddedPieceSize, PieceInfo, comm_d, commp_of_bytes};
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let id = SectorId {
        size: SectorSize::S2KiB,
        miner_id: 42,
        sector_number: 4,
    };
    let dir = SectorDir::create(&tmp.path().join("s")).unwrap();
    // 300 bytes in a 1 KiB piece (the smallest would be 512), then 200 bytes in a 512-byte one.
    let pieces = [
        (random_bytes(300, 7), 1024u64),
        (random_bytes(200, 8), 512u64),
    ];
    let mut infos = Vec::new();
    for (p, size) in &pieces {
        let size = PaddedPieceSize::new(*size).unwrap();
        let r = seal::add_piece_sized(&dir, &id, &p[..], p.len() as u64, size).unwrap();
        let mut filled = p.clone();
        filled.resize(size.unpadded() as usize, 0);
        assert_eq!(r.comm_p.0, commp_of_bytes(&filled).unwrap().comm_p);
        assert_eq!(
            (r.padded_size, r.payload_size),
            (size.bytes(), p.len() as u64)
        );
        infos.push(PieceInfo {
            comm_p: r.comm_p.0,
            size,
        });
    }
    // A payload longer than its piece holds is refused, nothing recorded.
    let big = random_bytes(600, 9);
    assert!(
        seal::add_piece_sized(&dir, &id, &big[..], 600, PaddedPieceSize::new(512).unwrap())
            .is_err()
    );
    let pc1 =
        seal::pre_commit1(&dir, &id, trunc254([9; 32]), &cache, None, &mut no_progress).unwrap();
    let sector = PaddedPieceSize::new(2048).unwrap();
    assert_eq!(pc1.comm_d.0, comm_d(sector, &infos).unwrap());
    seal::pre_commit2(&dir, &id, &mut no_progress).unwrap();
    seal::finalize(&dir, &id, true).unwrap();
    let meta: seal::SectorMeta =
        serde_json::from_slice(&std::fs::read(dir.sector_meta()).unwrap()).unwrap();
    assert_eq!(meta.pieces.len(), 2);
    let read = |offset: u64, len: u64| {
        let mut out = Vec::new();
        seal::read_unsealed_range(&dir, &id, offset, len, &mut out).map(|()| out)
    };
    for (i, (p, _)) in pieces.iter().enumerate() {
        let start = meta.pieces[i].offset / 128 * 127;
        assert_eq!(&read(start, p.len() as u64).unwrap(), p);
        assert_eq!(read(start + 17, 100).unwrap(), p[17..117].to_vec());
        // Past the payload: the zero fill.
        assert!(
            read(start + p.len() as u64, 50)
                .unwrap()
                .iter()
                .all(|&b| b == 0)
        );
    }
    assert!(read(0, 0).unwrap().is_empty());
    assert!(matches!(
        read(2032, 1).unwrap_err(),
        SealError::RangeOutOfSector { .. }
    ));
    let kept = std::fs::read(dir.unsealed()).unwrap();
    // Dropped, then unsealed again from the replica: the same file, and the pieces unseal.
    std::fs::remove_file(dir.unsealed()).unwrap();
    seal::unseal_sector(&dir, &id, &cache, &mut no_progress).unwrap();
    assert_eq!(std::fs::read(dir.unsealed()).unwrap(), kept);
    for (i, (p, _)) in pieces.iter().enumerate() {
        let mut out = Vec::new();
        seal::unseal_piece(&dir, &id, &cache, i, &mut out, &mut no_progress).unwrap();
        assert_eq!(&out, p);
    }
    // A damaged replica gives no unsealed copy.
    std::fs::remove_file(dir.unsealed()).unwrap();
    let mut replica = std::fs::read(dir.sealed()).unwrap();
    replica[64] ^= 1;
    std::fs::write(dir.sealed(), &replica).unwrap();
    assert!(matches!(
        seal::unseal_sector(&dir, &id, &cache, &mut no_progress).unwrap_err(),
        SealError::Inconsistent(_)
    ));
    assert!(!dir.unsealed().exists());
}

#[test]
fn interrupted_pre_commit1_resumes_from_the_last_complete_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let data = random_bytes(1 << 20, 7);
    let ticket = trunc254([1; 32]);
    let (_, reference) = seal_all(
        &tmp.path().join("ref"),
        &cache,
        SectorSize::S8MiB,
        &data,
        ticket,
    );
    let expected: seal::PreCommit2Output =
        serde_json::from_slice(&std::fs::read(reference.pc2()).unwrap()).unwrap();

    let id = SectorId {
        size: SectorSize::S8MiB,
        miner_id: 1000,
        sector_number: 7,
    };
    let dir = SectorDir::create(&tmp.path().join("resumed")).unwrap();
    seal::add_piece(&dir, &id, &data[..], data.len() as u64).unwrap();
    // Stop in the middle of layer 2.
    let mut stop = |p: Progress| match p {
        Progress::Layer {
            layer: 2,
            done,
            nodes,
            ..
        } if done >= nodes / 2 => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    };
    let r = seal::pre_commit1(&dir, &id, ticket, &cache, None, &mut stop);
    assert!(matches!(r, Err(SealError::Cancelled)), "{r:?}");
    assert!(dir.layer(1).exists() && !dir.layer(2).exists() && !dir.pc1().exists());

    let mut events = Vec::new();
    let mut record = |p: Progress| {
        events.push(p);
        ControlFlow::Continue(())
    };
    seal::pre_commit1(&dir, &id, ticket, &cache, None, &mut record).unwrap();
    assert!(events.contains(&Progress::LayerResumed { layer: 1 }));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Progress::Layer { layer: 1, .. })),
        "layer 1 was recomputed"
    );
    // A damaged layer is found by PreCommit2, and PreCommit1 recomputes it.
    let mut layer = std::fs::read(dir.layer(2)).unwrap();
    layer[12345] ^= 1;
    std::fs::write(dir.layer(2), &layer).unwrap();
    assert!(matches!(
        seal::pre_commit2(&dir, &id, &mut no_progress),
        Err(SealError::CorruptedLayer { layer: 2, .. })
    ));
    let mut events = Vec::new();
    let mut record = |p: Progress| {
        events.push(p);
        ControlFlow::Continue(())
    };
    seal::pre_commit1(&dir, &id, ticket, &cache, None, &mut record).unwrap();
    assert!(events.contains(&Progress::LayerResumed { layer: 1 }));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Progress::Layer { layer: 2, .. })),
        "layer 2 was not recomputed"
    );
    assert_eq!(
        seal::pre_commit2(&dir, &id, &mut no_progress).unwrap(),
        expected
    );
    // Both phases are done now: running them again changes nothing and recomputes nothing.
    let sealed = std::fs::read(dir.sealed()).unwrap();
    let mut events = Vec::new();
    let mut record = |p: Progress| {
        events.push(p);
        ControlFlow::Continue(())
    };
    seal::pre_commit1(&dir, &id, ticket, &cache, None, &mut record).unwrap();
    assert_eq!(events, [Progress::PhaseDone("PreCommit1")]);
    assert_eq!(
        seal::pre_commit2(&dir, &id, &mut no_progress).unwrap(),
        expected
    );
    assert_eq!(std::fs::read(dir.sealed()).unwrap(), sealed);
    // Another ticket for a sector PreCommit1 has sealed is refused.
    assert!(matches!(
        seal::pre_commit1(&dir, &id, trunc254([9; 32]), &cache, None, &mut no_progress),
        Err(SealError::TicketMismatch { .. })
    ));
}

#[test]
fn bad_inputs_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let id = SectorId {
        size: SectorSize::S2KiB,
        miner_id: 1,
        sector_number: 1,
    };
    let dir = SectorDir::create(&tmp.path().join("s")).unwrap();
    // A piece larger than the sector.
    let big = vec![0u8; 2100];
    assert!(matches!(
        seal::add_piece(&dir, &id, &big[..], 2100),
        Err(SealError::PieceDoesNotFit { .. })
    ));
    // A payload shorter than announced.
    assert!(matches!(
        seal::add_piece(&dir, &id, &[1u8; 10][..], 20),
        Err(SealError::WrongFileSize { .. })
    ));
    // Pieces that fill the sector, then one more.
    seal::add_piece(&dir, &id, &[1u8; 1016][..], 1016).unwrap();
    seal::add_piece(&dir, &id, &[2u8; 1016][..], 1016).unwrap();
    assert!(matches!(
        seal::add_piece(&dir, &id, &[3u8; 1][..], 1),
        Err(SealError::PieceDoesNotFit { .. })
    ));
    // Phases out of order.
    assert!(matches!(
        seal::pre_commit2(&dir, &id, &mut no_progress),
        Err(SealError::MissingPhase { .. })
    ));
    assert!(matches!(
        seal::commit1(&dir, &id, Node::ZERO),
        Err(SealError::MissingPhase { .. })
    ));
    // Another sector's directory.
    let other = SectorId {
        sector_number: 2,
        ..id
    };
    assert!(matches!(
        seal::add_piece(&dir, &other, &[0u8; 1][..], 1),
        Err(SealError::WrongSector { .. })
    ));
}

#[test]
fn vanilla_proofs_fail_on_any_change() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let data = random_bytes(2032, 11);
    let (id, dir) = seal_all(
        &tmp.path().join("s"),
        &cache,
        SectorSize::S2KiB,
        &data,
        trunc254([4; 32]),
    );
    let (public, proof) = seal::commit1(&dir, &id, trunc254([8; 32])).unwrap();
    porep::verify(&public, &proof).unwrap();

    // Public inputs.
    let flip = |n: Node| Node::from_fr(&(n.to_fr().unwrap() + bls12_381::Scalar::one()));
    for bad in [
        porep::PorepPublic {
            comm_r: flip(public.comm_r),
            ..public
        },
        porep::PorepPublic {
            comm_d: flip(public.comm_d),
            ..public
        },
        porep::PorepPublic {
            seed: flip(public.seed),
            ..public
        },
        porep::PorepPublic {
            ticket: flip(public.ticket),
            ..public
        },
        porep::PorepPublic {
            sector_number: public.sector_number + 1,
            ..public
        },
        porep::PorepPublic {
            miner_id: public.miner_id + 1,
            ..public
        },
        porep::PorepPublic {
            size: SectorSize::S8MiB,
            ..public
        },
    ] {
        assert!(porep::verify(&bad, &proof).is_err(), "{bad:?}");
    }

    // Every byte class of the proof: flip one bit at spread-out positions; decoding or verifying fails.
    let bytes = proof.to_bytes();
    let step = (bytes.len() / 400).max(1);
    let mut checked = 0;
    for at in (0..bytes.len()).step_by(step).chain([bytes.len() - 1]) {
        let mut bad = bytes.clone();
        bad[at] ^= 1 << (at % 8);
        if let Ok(p) = PorepProof::from_bytes(&bad) {
            assert!(
                porep::verify(&public, &p).is_err(),
                "flipped byte {at} of {} still verifies",
                bytes.len()
            );
        }
        checked += 1;
    }
    assert!(checked >= 400);

    // Structural edits: a column swapped between parents, a challenge's openings from another challenge.
    let mut swapped = proof.clone();
    swapped.partitions[0][0].base.swap(1, 2);
    if swapped != proof {
        assert!(porep::verify(&public, &swapped).is_err());
    }
    let mut moved = proof.clone();
    moved.partitions[0][0] = proof.partitions[0][1].clone();
    if proof.partitions[0][0].data.index != proof.partitions[0][1].data.index {
        assert!(porep::verify(&public, &moved).is_err());
    }
    let mut fewer = proof.clone();
    fewer.partitions[0].pop();
    assert!(porep::verify(&public, &fewer).is_err());
    // Truncated bytes never panic.
    for cut in [0, 1, 33, bytes.len() / 2, bytes.len() - 1] {
        assert!(PorepProof::from_bytes(&bytes[..cut]).is_err());
    }
}

#[test]
fn tickets_are_truncated_before_they_make_the_replica_id() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let id = SectorId {
        size: SectorSize::S2KiB,
        miner_id: 1,
        sector_number: 1,
    };
    let raw = SectorDir::create(&tmp.path().join("raw")).unwrap();
    let cut = SectorDir::create(&tmp.path().join("cut")).unwrap();
    let a = seal::pre_commit1(&raw, &id, Node([0xFF; 32]), &cache, None, &mut no_progress).unwrap();
    let b = seal::pre_commit1(
        &cut,
        &id,
        trunc254([0xFF; 32]),
        &cache,
        None,
        &mut no_progress,
    )
    .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.ticket.0, trunc254([0xFF; 32]));
}

#[test]
fn window_and_winning_post_with_a_faulty_sector() {
    use lode_proofs::post::{self, PublicSector};
    use lode_sealing::post::{SealedSector, prove_window, prove_winning};

    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let size = SectorSize::S2KiB;
    let mut sectors = Vec::new();
    for number in [3u64, 7, 12] {
        let id = SectorId {
            size,
            miner_id: 1000,
            sector_number: number,
        };
        let dir = SectorDir::create(&tmp.path().join(format!("s{number}"))).unwrap();
        let data = random_bytes(2032, number as u8);
        seal::add_piece(&dir, &id, &data[..], data.len() as u64).unwrap();
        seal::pre_commit1(
            &dir,
            &id,
            trunc254([number as u8; 32]),
            &cache,
            None,
            &mut no_progress,
        )
        .unwrap();
        seal::pre_commit2(&dir, &id, &mut no_progress).unwrap();
        seal::finalize(&dir, &id, false).unwrap();
        sectors.push(SealedSector { id, dir });
    }
    let publics: Vec<PublicSector> = sectors.iter().map(|s| s.public().unwrap()).collect();
    let randomness = trunc254([0x41; 32]);

    // All good: one proof per sector; the partitions (padded) verify.
    let out = prove_window(&sectors, &randomness);
    assert!(out.faulty.is_empty());
    let parts = post::window_partitions(size, &publics);
    let proof_parts = post::window_partitions(size, &out.proofs);
    for (p, q) in parts.iter().zip(&proof_parts) {
        post::verify_window_partition(size, &randomness, p, q).unwrap();
    }
    // A proof does not pass for another sector, other randomness, or with a flipped byte.
    let other = trunc254([0x42; 32]);
    assert!(post::verify_sector(size, &other, &publics[0], 10, &out.proofs[0]).is_err());
    assert!(post::verify_sector(size, &randomness, &publics[1], 10, &out.proofs[0]).is_err());
    let bytes = out.proofs[0].to_bytes();
    for at in (0..bytes.len()).step_by(37) {
        let mut bad = bytes.clone();
        bad[at] ^= 0x04;
        if let Ok(p) = post::SectorProof::from_bytes(&bad) {
            assert!(
                post::verify_sector(size, &randomness, &publics[0], 10, &p).is_err(),
                "byte {at}"
            );
        }
    }

    // Corrupt sector 7's replica at its first challenged leaf: exactly sector 7 is reported faulty.
    let leaf = post::leaf_challenge(size, &randomness, 7, 0);
    let sealed = sectors[1].dir.sealed();
    let mut replica = std::fs::read(&sealed).unwrap();
    replica[leaf as usize * 32] ^= 1;
    std::fs::write(&sealed, &replica).unwrap();
    // And remove sector 12's tree R.
    std::fs::remove_file(sectors[2].dir.tree_r()).unwrap();
    let out = prove_window(&sectors, &randomness);
    let faulty: Vec<u64> = out.faulty.iter().map(|f| f.sector_number).collect();
    assert_eq!(faulty, [7, 12]);
    assert_eq!(out.proofs.len(), 1);
    post::verify_sector(size, &randomness, &publics[0], 10, &out.proofs[0]).unwrap();

    // Winning PoSt picks one sector from the randomness; it verifies when that sector is healthy.
    let healthy = &sectors[..1];
    let proof = prove_winning(healthy, 1000, &randomness).unwrap();
    post::verify_winning(size, 1000, &randomness, &publics[..1], &proof).unwrap();
    assert!(post::verify_winning(size, 1001, &other, &publics, &proof).is_err());
}

/// The capacity figures are the lengths of the files the phases really write, for the sizes a test can
/// seal (the larger sizes follow from the same formulas: see `capacity`'s unit tests).
#[test]
fn capacity_figures_are_the_lengths_of_the_files_sealing_writes() {
    use lode_sealing::capacity::{self, Phase, Plan, Work};
    use lode_sealing::parent_cache::ParentCache;

    for size in [SectorSize::S2KiB, SectorSize::S8MiB] {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let data = random_bytes(1000, 3);
        let root = tmp.path().join("s");
        let (id, dir) = seal_all(&root, &cache, size, &data, node(&"11".repeat(32)));
        seal::commit1(&dir, &id, Node::ZERO).unwrap();
        let len = |p: &Path| std::fs::metadata(p).unwrap().len();
        assert_eq!(
            len(&cache.join(ParentCache::file_name(size))),
            ParentCache::file_len(size)
        );
        for l in 1..=size.layers() {
            assert_eq!(len(&dir.layer(l)), capacity::layer_bytes(size), "{size}");
        }
        let files = [
            (dir.tree_d(), capacity::tree_d_bytes(size)),
            (dir.columns(), size.bytes()),
            (dir.tree_c(), capacity::tree_c_bytes(size)),
            (dir.sealed(), size.bytes()),
            (dir.tree_r(), capacity::tree_r_bytes(size)),
            (dir.commit1(), capacity::commit1_bytes(size)),
        ];
        for (path, bytes) in files {
            assert_eq!(len(&path), bytes, "{size}: {}", path.display());
        }
        // Every record is within the allowance.
        for path in [
            dir.sector_meta(),
            dir.pc1(),
            dir.pc2(),
            dir.commit1_public(),
        ] {
            assert!(len(&path) < capacity::RECORDS_BYTES, "{}", path.display());
        }
        // Sealed: a second run of PreCommit1 and PreCommit2 is skipped and needs nothing.
        let work = Work {
            phases: vec![Phase::PreCommit1, Phase::PreCommit2],
            piece_bytes: 0,
        };
        let plan = Plan::new(&root, &cache, size, &work).unwrap();
        assert_eq!(plan.skipped, work.phases);
        assert_eq!(plan.peak(|_| true), 0);
    }
}

/// A batched PreCommit1 writes, for each sector, exactly the files and records the single-sector
/// PreCommit1 writes (2 KiB and 8 MiB; sectors with data and committed-capacity ones, different
/// miners, numbers and tickets), resumes together after an interruption, returns sectors already
/// through PreCommit1 as recorded, and refuses mixed sizes and a directory named twice.
#[test]
fn batched_pre_commit1_writes_what_each_sector_alone_writes() {
    use lode_sealing::seal::BatchSector;
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    for (size, count) in [(SectorSize::S2KiB, 5usize), (SectorSize::S8MiB, 3)] {
        let ids: Vec<SectorId> = (0..count as u64)
            .map(|i| SectorId {
                size,
                miner_id: 1000 + i % 2,
                sector_number: 10 + i,
            })
            .collect();
        let tickets: Vec<Node> = (0..count as u8).map(|i| trunc254([i + 1; 32])).collect();
        let make = |tag: &str, i: usize| {
            let dir =
                SectorDir::create(&tmp.path().join(format!("{}-{tag}-{i}", size.name()))).unwrap();
            // Every other sector holds a piece; the rest are committed capacity.
            if i.is_multiple_of(2) {
                let data = random_bytes(1000 + i * 100, i as u8);
                seal::add_piece(&dir, &ids[i], &data[..], data.len() as u64).unwrap();
            }
            dir
        };
        let singles: Vec<SectorDir> = (0..count).map(|i| make("single", i)).collect();
        for (i, dir) in singles.iter().enumerate() {
            seal::pre_commit1(dir, &ids[i], tickets[i], &cache, None, &mut no_progress).unwrap();
        }
        let batched: Vec<SectorDir> = (0..count).map(|i| make("batch", i)).collect();
        let sectors: Vec<BatchSector<'_>> = (0..count)
            .map(|i| BatchSector {
                dir: &batched[i],
                id: ids[i],
                ticket: tickets[i],
            })
            .collect();
        // Interrupted in the middle of layer 2, then resumed.
        let mut stop = |p: Progress| match p {
            Progress::Layer {
                layer: 2,
                done,
                nodes,
                ..
            } if done >= nodes / 2 => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        };
        if size == SectorSize::S8MiB {
            let r = seal::pre_commit1_batch(&sectors, &cache, None, &mut stop);
            assert!(matches!(r, Err(SealError::Cancelled)), "{r:?}");
            assert!(batched[0].layer(1).exists() && !batched[0].layer(2).exists());
        }
        let outs = seal::pre_commit1_batch(&sectors, &cache, None, &mut no_progress).unwrap();
        assert_eq!(outs.len(), count);
        for i in 0..count {
            let (a, b) = (&singles[i], &batched[i]);
            for layer in 1..=size.layers() {
                assert!(
                    std::fs::read(a.layer(layer)).unwrap()
                        == std::fs::read(b.layer(layer)).unwrap(),
                    "{size} sector {i} layer {layer}"
                );
            }
            assert_eq!(
                std::fs::read(a.pc1()).unwrap(),
                std::fs::read(b.pc1()).unwrap()
            );
            assert_eq!(
                std::fs::read(a.tree_d()).unwrap(),
                std::fs::read(b.tree_d()).unwrap()
            );
        }
        // PreCommit2 of a batched sector gives the single sector's comm_r.
        seal::pre_commit2(&singles[0], &ids[0], &mut no_progress).unwrap();
        seal::pre_commit2(&batched[0], &ids[0], &mut no_progress).unwrap();
        assert_eq!(
            std::fs::read(singles[0].pc2()).unwrap(),
            std::fs::read(batched[0].pc2()).unwrap()
        );
        // Once through PreCommit2, a sector is returned as recorded; the others are not relabelled
        // either (their layers check out).
        let again = seal::pre_commit1_batch(&sectors, &cache, None, &mut no_progress).unwrap();
        assert_eq!(again.len(), count);
    }
    let a = SectorDir::create(&tmp.path().join("mixed-a")).unwrap();
    let b = SectorDir::create(&tmp.path().join("mixed-b")).unwrap();
    let id = |size| SectorId {
        size,
        miner_id: 1,
        sector_number: 1,
    };
    let t = trunc254([3; 32]);
    let mixed = [
        BatchSector {
            dir: &a,
            id: id(SectorSize::S2KiB),
            ticket: t,
        },
        BatchSector {
            dir: &b,
            id: id(SectorSize::S8MiB),
            ticket: t,
        },
    ];
    assert!(seal::pre_commit1_batch(&mixed, &cache, None, &mut no_progress).is_err());
    let twice = [mixed[0], mixed[0]];
    assert!(seal::pre_commit1_batch(&twice, &cache, None, &mut no_progress).is_err());
}

/// The OpenCL device (PoCL on the CPU in CI), or `None` where there is none and
/// `LODE_REQUIRE_OPENCL` is not set.
#[cfg(feature = "gpu")]
fn opencl() -> Option<lode_sealing::accel::Gpu> {
    use lode_sealing::accel::{GpuChoice, open};
    match open(GpuChoice::OpenCl) {
        Ok(g) => g,
        Err(e) if std::env::var_os("LODE_REQUIRE_OPENCL").is_some() => {
            panic!("LODE_REQUIRE_OPENCL is set but {e}")
        }
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

#[cfg(feature = "gpu")]
#[test]
fn device_batched_pre_commit1_writes_what_the_cpu_writes() {
    use lode_sealing::seal::BatchSector;
    let Some(gpu) = opencl() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    for (size, count) in [(SectorSize::S2KiB, 3usize), (SectorSize::S8MiB, 2)] {
        let ids: Vec<SectorId> = (0..count as u64)
            .map(|i| SectorId {
                size,
                miner_id: 2000,
                sector_number: 7 + i,
            })
            .collect();
        let tickets: Vec<Node> = (0..count as u8).map(|i| trunc254([i + 9; 32])).collect();
        let make = |tag: &str| -> Vec<SectorDir> {
            (0..count)
                .map(|i| {
                    let dir =
                        SectorDir::create(&tmp.path().join(format!("{}-{tag}-{i}", size.name())))
                            .unwrap();
                    let data = random_bytes(1500 + i * 10, 40 + i as u8);
                    seal::add_piece(&dir, &ids[i], &data[..], data.len() as u64).unwrap();
                    dir
                })
                .collect()
        };
        let (cpu, dev) = (make("cpu"), make("device"));
        fn batch<'a>(
            dirs: &'a [SectorDir],
            ids: &[SectorId],
            tickets: &[Node],
        ) -> Vec<BatchSector<'a>> {
            dirs.iter()
                .zip(ids.iter().zip(tickets))
                .map(|(dir, (id, ticket))| BatchSector {
                    dir,
                    id: *id,
                    ticket: *ticket,
                })
                .collect()
        }
        seal::pre_commit1_batch(&batch(&cpu, &ids, &tickets), &cache, None, &mut no_progress)
            .unwrap();
        if size == SectorSize::S8MiB {
            // Cancelled in layer 2 on the device, then resumed there.
            let mut stop = |p: Progress| match p {
                Progress::Layer { layer: 2, .. } => ControlFlow::Break(()),
                _ => ControlFlow::Continue(()),
            };
            let r = seal::pre_commit1_batch(
                &batch(&dev, &ids, &tickets),
                &cache,
                Some(&gpu),
                &mut stop,
            );
            assert!(matches!(r, Err(SealError::Cancelled)), "{r:?}");
        }
        seal::pre_commit1_batch(
            &batch(&dev, &ids, &tickets),
            &cache,
            Some(&gpu),
            &mut no_progress,
        )
        .unwrap();
        for i in 0..count {
            for layer in 1..=size.layers() {
                assert!(
                    std::fs::read(cpu[i].layer(layer)).unwrap()
                        == std::fs::read(dev[i].layer(layer)).unwrap(),
                    "{size} sector {i} layer {layer}"
                );
            }
            assert_eq!(
                std::fs::read(cpu[i].pc1()).unwrap(),
                std::fs::read(dev[i].pc1()).unwrap()
            );
        }
        // PreCommit2: the replica in full, the column and tree files and the commitments are the
        // CPU's. At 2 KiB the columns and trees are hashed on the device too; at 8 MiB (about a
        // minute of Poseidon on PoCL, run by hand: BENCHMARKS.md) the replica checks the device's
        // labels.
        seal::pre_commit2(&cpu[0], &ids[0], &mut no_progress).unwrap();
        let on = (size == SectorSize::S2KiB).then_some(&gpu);
        seal::pre_commit2_on(&dev[0], &ids[0], on, &mut no_progress).unwrap();
        for (what, a, b) in [
            ("replica", cpu[0].sealed(), dev[0].sealed()),
            ("columns", cpu[0].columns(), dev[0].columns()),
            ("tree C", cpu[0].tree_c(), dev[0].tree_c()),
            ("tree R", cpu[0].tree_r(), dev[0].tree_r()),
            ("pc2.json", cpu[0].pc2(), dev[0].pc2()),
        ] {
            assert!(
                std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
                "{size} {what} differs"
            );
        }
    }
}

/// Window and Winning PoSt with the proofs' G1 sums on the device: the same proof files as the
/// CPU's from the same randomness and blinding (each is verified before it is returned).
#[cfg(feature = "gpu")]
#[test]
fn post_proven_on_a_device_is_the_cpus_proof() {
    use lode_proofs::circuit::post::{PostCircuit, PostKind};
    use lode_proofs::params::ParamStore;
    use lode_sealing::post::{SealedSector, prove_post_on};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng as _;

    let Some(gpu) = opencl() else { return };
    let device = lode_sealing::accel::prover_device(std::sync::Arc::new(gpu));
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let size = SectorSize::S2KiB;
    let mut sectors = Vec::new();
    for number in [4u64, 5, 6] {
        let id = SectorId {
            size,
            miner_id: 1000,
            sector_number: number,
        };
        let dir = SectorDir::create(&tmp.path().join(format!("s{number}"))).unwrap();
        seal::pre_commit1(
            &dir,
            &id,
            trunc254([number as u8; 32]),
            &cache,
            None,
            &mut no_progress,
        )
        .unwrap();
        seal::pre_commit2(&dir, &id, &mut no_progress).unwrap();
        sectors.push(SealedSector { id, dir });
    }
    let store = ParamStore::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/lode-test-params"
    ));
    let randomness = trunc254([0x17; 32]);
    for kind in [PostKind::Window, PostKind::Winning] {
        let (params, _, _) = store
            .get_or_generate_insecure(&kind.params_id(size), || PostCircuit {
                kind,
                size,
                witness: None,
            })
            .unwrap();
        let prove = |device| {
            let mut rng = ChaCha20Rng::from_seed([3; 32]);
            prove_post_on(
                kind,
                &sectors,
                Some(1000),
                &randomness,
                &params,
                &mut rng,
                device,
                &mut no_progress,
            )
            .unwrap()
        };
        let cpu = prove(None);
        let on_device = prove(Some(&device));
        assert_eq!(on_device, cpu, "{kind:?}");
        assert_eq!(
            cpu.proofs.len(),
            if kind == PostKind::Window { 2 } else { 1 }
        );
    }
}
