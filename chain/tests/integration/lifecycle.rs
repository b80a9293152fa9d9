//! The sector lifecycle on a devnet chain with real 2 KiB Groth16 proofs: a deal, a sealed sector
//! pre-committed with the chain's ticket, proven with the chain's seed (Commit2), its power appearing
//! with the first real Window PoSt, a real Winning PoSt winning a block — and bad proofs rejected with
//! no state change beyond the sender's gas.

#![allow(clippy::unwrap_used)]

use lode_testkit::harness::*;

use lode_chain::actors::MARKET;
use lode_chain::actors::market::{ClientDealProposal, DealProposal, MarketMethod};
use lode_chain::actors::miner::{MinerMethod, PostPartition, PreCommitInfo, WindowPostParams};
use lode_chain::message::Method;
use lode_chain::runtime::RandomnessTag;
use lode_chain::store::StateStore;
use lode_chain::types::{Address, PowerPair, TokenAmount};
use lode_chain::{EpochInput, ExitCode};
use lode_proofs::circuit::porep as porep_circuit;
use lode_proofs::circuit::post::{self as post_circuit, PostKind};
use lode_proofs::post::window_partitions;
use lode_proofs::sector::{SectorSize, randomness_node};
use lode_proofs::verifier::SnarkVerifier;
use lode_sealing::post::{SealedSector, prove_window, prove_winning};
use lode_sealing::seal::{self, SectorId, no_progress};
use lode_sealing::sector_dir::SectorDir;

#[test]
#[ignore = "real Groth16 proofs: run with --include-ignored"]
fn real_proofs_seal_prove_and_win_on_chain() {
    let size = SectorSize::S2KiB;
    // The insecure test parameters the verifier reads: generated once under target/, shared with
    // the other real-proof tests of this process.
    let params = shared_params();
    let (porep_params, window_params, winning_params) =
        (&params.porep, &params.window, &params.winning);
    let mut h = Harness::with(
        StateStore::memory(),
        Box::new(SnarkVerifier::new(test_params())),
    );
    let m = h.create_miner(TokenAmount::tokens(10));
    let client = h.id("client");
    h.send_ok(
        "client",
        MARKET,
        Method::Market(MarketMethod::AddBalance {
            owner: Address::Id(client),
        }),
        TokenAmount::tokens(100),
    );
    h.send_ok(
        "owner",
        MARKET,
        Method::Market(MarketMethod::AddBalance {
            owner: Address::Id(m),
        }),
        TokenAmount::tokens(10),
    );

    // The client's piece fills the sector.
    let tmp = tempfile::tempdir().unwrap();
    let id = SectorId {
        size,
        miner_id: m.0,
        sector_number: 1,
    };
    let dir = SectorDir::create(&tmp.path().join("s1")).unwrap();
    let data: Vec<u8> = (0..2032).map(|i| ((i * 31 + 7) % 251) as u8).collect();
    let piece = seal::add_piece(&dir, &id, &data[..], data.len() as u64).unwrap();
    let start = h.epoch() + 200;
    let expiration = h.cc_expiration();
    let proposal = DealProposal {
        piece_cid: piece.comm_p.0.0,
        piece_size: 2048,
        verified: false,
        client,
        provider: m,
        label: "real piece".into(),
        start_epoch: start,
        end_epoch: expiration,
        price_per_epoch: TokenAmount::atto(1000),
        provider_collateral: TokenAmount::tokens(1),
        client_collateral: TokenAmount::ZERO,
    };
    let client_signature = key("client").sign(&proposal.signing_bytes(&h.policy.network));
    let r = h.send_ok(
        "worker",
        MARKET,
        Method::Market(MarketMethod::PublishDeals(vec![ClientDealProposal {
            proposal,
            client_signature,
        }])),
        TokenAmount::ZERO,
    );
    let deal_ids: Vec<u64> = decode(&r.return_data);

    // Seal with the chain's ticket, pre-commit.
    let seal_rand_epoch = h.epoch();
    let ticket = h.randomness(
        RandomnessTag::SealTicket,
        seal_rand_epoch,
        &m.0.to_le_bytes(),
    );
    seal::pre_commit1(
        &dir,
        &id,
        randomness_node(ticket),
        &tmp.path().join("cache"),
        None,
        &mut no_progress,
    )
    .unwrap();
    let pc2 = seal::pre_commit2(&dir, &id, &mut no_progress).unwrap();
    let info = PreCommitInfo {
        sector_number: 1,
        comm_r: pc2.comm_r.0.0,
        comm_d: piece.comm_p.0.0,
        seal_rand_epoch,
        deal_ids,
        expiration,
    };
    h.send_ok(
        "worker",
        m,
        Method::Miner(MinerMethod::PreCommitSectors(vec![info])),
        TokenAmount::ZERO,
    );

    // Commit1 and Commit2 with the chain's seed.
    let ready = h.seed_ready(m, 1);
    h.advance_to(ready - 1);
    let public = h.seal_public(m, 1);
    let (sealed_public, vanilla) = seal::commit1(&dir, &id, public.seed).unwrap();
    assert_eq!(
        sealed_public, public,
        "the sealer and the chain agree on the statement"
    );
    let mut rng = porep_circuit::params_id(size).insecure_rng();
    let proofs = porep_circuit::prove(porep_params, &public, &vanilla, &mut rng).unwrap();

    // A flipped byte is rejected: only the sender's nonce and gas change.
    let mut bad = proofs.clone();
    bad[0][17] ^= 4;
    let r = h.send(
        "worker",
        m,
        Method::Miner(MinerMethod::ProveCommitSector {
            sector_number: 1,
            proofs: bad,
        }),
        TokenAmount::ZERO,
    );
    assert_eq!(r.exit_code, ExitCode::InvalidProof, "{}", r.error);
    assert!(h.sector(m, 1).is_none());
    let r = h.send(
        "worker",
        m,
        Method::Miner(MinerMethod::ProveCommitSector {
            sector_number: 1,
            proofs,
        }),
        TokenAmount::ZERO,
    );
    assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
    let sector = h.sector(m, 1).unwrap();
    assert_eq!(
        h.claim(m).power,
        PowerPair::ZERO,
        "no power before the first Window PoSt"
    );

    // The first Window PoSt, proven from the replica on disk.
    seal::finalize(&dir, &id, false).unwrap();
    let sealed = vec![SealedSector {
        id,
        dir: dir.clone(),
    }];
    let dl = h.deadline(m, sector.deadline);
    h.advance_to(dl.open - 1);
    let randomness = h.randomness(RandomnessTag::WindowPost, dl.challenge, &m.0.to_le_bytes());
    let outcome = prove_window(&sealed, &randomness_node(randomness));
    assert!(outcome.faulty.is_empty());
    let vanilla = window_partitions(size, &outcome.proofs).pop().unwrap();
    let mut rng = PostKind::Window.params_id(size).insecure_rng();
    let proof =
        post_circuit::prove(window_params, PostKind::Window, size, &vanilla, &mut rng).unwrap();
    let post = |proof: Vec<u8>| {
        Method::Miner(MinerMethod::SubmitWindowPost(WindowPostParams {
            deadline: sector.deadline,
            partitions: vec![PostPartition {
                index: sector.partition,
                skipped: Default::default(),
            }],
            proofs: vec![proof],
        }))
    };
    let mut bad = proof.clone();
    bad[100] ^= 1;
    let r = h.send("worker", m, post(bad), TokenAmount::ZERO);
    assert_eq!(r.exit_code, ExitCode::InvalidProof, "{}", r.error);
    assert_eq!(h.claim(m).power, PowerPair::ZERO);
    let r = h.send("worker", m, post(proof), TokenAmount::ZERO);
    assert_eq!(r.exit_code, ExitCode::Ok, "{}", r.error);
    assert_eq!(
        h.claim(m).power,
        PowerPair {
            raw: 2048,
            qa: 2048
        }
    );

    // A block with a real Winning PoSt.
    let prove = |s: &lode_proofs::verifier::WinningPostStatement| {
        let vanilla = prove_winning(&sealed, s.miner_id, &randomness_node(s.randomness)).unwrap();
        let mut rng = PostKind::Winning.params_id(size).insecure_rng();
        post_circuit::prove(
            winning_params,
            PostKind::Winning,
            size,
            &[vanilla],
            &mut rng,
        )
        .unwrap()
    };
    let header = loop {
        if let Some(b) = h.try_block(m, prove) {
            break b;
        }
        h.step(vec![], vec![]);
    };
    let before = h.balance(m);
    let epoch = h.epoch() + 1;
    let mut forged = header.clone();
    forged.winning_post[40] ^= 2;
    forged.signature = key("worker").sign(&forged.signing_bytes(&h.policy.network));
    let err = h.try_step(vec![forged], vec![]).unwrap_err();
    assert!(err.to_string().contains("Winning PoSt"), "{err}");
    assert_eq!(h.epoch(), epoch - 1, "a rejected block changes nothing");
    let out = h
        .chain
        .apply_epoch(&EpochInput {
            epoch,
            beacon: beacon(epoch),
            blocks: vec![header],
            messages: vec![],
        })
        .unwrap();
    h.assert_invariants();
    assert_eq!(out.rewards.len(), 1);
    assert!(out.rewards[0].1.0 > 0);
    assert_eq!(h.balance(m).0 - before.0, out.rewards[0].1.0);
}
