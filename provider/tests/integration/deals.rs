//! Deal pieces through the sealing pipeline. Against a node whose answers the test sets: a
//! piece checked, copied and placed once (a repeated call answers the same); every piece the
//! pipeline must refuse refused with nothing kept; a deal sector held in `WaitDeals` until full,
//! waited long enough or a start epoch close; deals that can no longer be sealed in time dropped
//! with the reason and the other pieces moved down to where CommD puts them; Packing writing the
//! data whose CommD is the deals'; the pre-commit naming the deals in piece order; a sector whose
//! deal cannot be activated failed and its other pieces placed again. A process placing pieces
//! killed with SIGKILL at random moments: nothing lost, nothing placed twice, every layout still
//! CommD's. Against a real in-process node with real 2 KiB sealing and proofs: a client funded,
//! escrow added, a verifier and DataCap granted, two deals (one verified) published, both pieces
//! sealed into one sector to `Proving` — with the pipeline reopened mid-way — the deals active,
//! the sector's deal weights and QA power as the chain computes them, and the pieces read back
//! from the unsealed copy and by unsealing the sector; and the market's publisher against it: a
//! publication recorded and lost before its push, whose nonce the worker's next message took, is
//! seen as passed (it can never be executed) while it is not on chain.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use lode_chain::actors::miner::MinerMethod;
use lode_chain::message::Method;
use lode_chain::types::ActorId;
use lode_proofs::node::{Node, nodes_from_bytes};
use lode_proofs::piece::{PaddedPieceSize, PieceInfo, comm_d, piece_offsets, tree_d_root};
use lode_provider::ProviderError;
use lode_provider::pipeline::deals::staged_path;
use lode_provider::pipeline::runner::Step;
use lode_provider::pipeline::{
    DealPiece, Event, PieceState, RetryPolicy, SectorChain, SectorKind, SectorRecord, SectorState,
};

/// The head the scripted node reports.
const HEAD: u64 = 100;

fn deal_setup() -> Setup {
    let s = setup();
    *s.chain.head.lock().unwrap() = Some(HEAD);
    s
}

fn scratch(s: &Setup) -> std::path::PathBuf {
    s.p.config().scratch_dir.clone()
}

/// Applies `step` to `r` as a tick would.
fn apply(s: &Setup, r: &SectorRecord, step: Step) -> SectorRecord {
    let Step::Apply(event, chain) = step else {
        panic!("nothing to apply: {step:?}")
    };
    s.p.store()
        .update(
            r.number,
            r.version,
            Some(&event),
            chain.map(|c| *c),
            lode_node::genesis::unix_now(),
            &RetryPolicy::default(),
        )
        .unwrap()
}

fn get(s: &Setup, n: u64) -> SectorRecord {
    s.p.store().get(n).unwrap().unwrap()
}

/// Moves sector `n` along with `Done` events (no work done) until `state`.
fn move_to(s: &Setup, n: u64, state: SectorState) -> SectorRecord {
    let mut r = get(s, n);
    while r.state() != state {
        r =
            s.p.store()
                .apply(n, r.version, &Event::Done, 0, &RetryPolicy::default())
                .unwrap();
    }
    r
}

/// The CommD the chain computes for these deals' pieces, in order.
fn deals_comm_d(pieces: &[&DealPiece]) -> [u8; 32] {
    let infos: Vec<PieceInfo> = pieces
        .iter()
        .map(|p| PieceInfo {
            comm_p: Node(p.proposal.piece_cid),
            size: PaddedPieceSize::new(p.proposal.piece_size).unwrap(),
        })
        .collect();
    comm_d(PaddedPieceSize::new(2048).unwrap(), &infos)
        .unwrap()
        .0
}

fn refused(e: ProviderError) -> String {
    match e {
        ProviderError::Refused(why) => why,
        other => panic!("not a refusal: {other}"),
    }
}

#[tokio::test]
async fn a_piece_is_checked_copied_and_placed_once() {
    let s = deal_setup();
    let dir = s._dir.path();
    let a = deal_piece(dir, 1, 700, 1024, 1000);
    let info = s.p.add_piece(a.clone()).await.unwrap();
    assert_eq!(info.state, PieceState::Waiting);
    assert_eq!((info.offset, info.payload_size), (Some(0), 700));
    let n = info.sector.unwrap();
    assert_eq!(get(&s, n).kind, SectorKind::Deals);
    // The pipeline copied the payload: the market may delete its own.
    assert_eq!(
        std::fs::read(staged_path(&scratch(&s), 1)).unwrap(),
        std::fs::read(&a.payload).unwrap()
    );
    std::fs::remove_file(&a.payload).unwrap();
    // Again (a lost answer, a restart): the same assignment, nothing copied.
    assert_eq!(s.p.add_piece(a.clone()).await.unwrap(), info);
    // Two half-kilobyte pieces fill the sector; the next piece opens another.
    let b = deal_piece(dir, 2, 300, 512, 1000);
    let c = deal_piece(dir, 3, 508, 512, 1000);
    let ib = s.p.add_piece(b).await.unwrap();
    let ic = s.p.add_piece(c).await.unwrap();
    assert_eq!(
        (ib.sector, ib.offset, ic.sector, ic.offset),
        (Some(n), Some(1024), Some(n), Some(1536))
    );
    let d = deal_piece(dir, 4, 10, 128, 1000);
    let id = s.p.add_piece(d).await.unwrap();
    assert!(id.sector.unwrap() > n, "{id:?}");
    assert_eq!(id.offset, Some(0));
    // One deal id names one piece.
    let other = deal_piece(dir, 2, 301, 512, 1000);
    let why = refused(s.p.add_piece(other).await.unwrap_err());
    assert!(why.contains("already"), "{why}");
    // The rows.
    let rows = s.p.deal_pieces().unwrap();
    assert_eq!(
        rows.iter().map(|r| r.deal_id).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    let cid: lode_proofs::cid::PieceCid = rows[0].piece_cid.parse().unwrap();
    assert_eq!(cid.comm_p().0, a.proposal.piece_cid);
    assert!(rows.iter().all(|r| r.state == PieceState::Waiting));
    // A new pipeline over the same records (a restart) has them all.
    let s = restart(s);
    assert_eq!(s.p.deal_pieces().unwrap(), rows);
}

#[tokio::test]
async fn pieces_the_pipeline_cannot_take_are_refused_with_nothing_kept() {
    let s = deal_setup();
    let dir = s._dir.path();
    let mut cases: Vec<(DealPiece, &str)> = Vec::new();
    let mut p = deal_piece(dir, 10, 100, 512, 1000);
    p.proposal.provider = ActorId(999);
    cases.push((p, "provider l0999"));
    cases.push((
        deal_piece(dir, 11, 100, 4096, 1000),
        "does not fit a 2KiB sector",
    ));
    let mut p = deal_piece(dir, 12, 508, 512, 1000);
    std::fs::write(&p.payload, payload_bytes(509, 12)).unwrap();
    p.payload_size = 509;
    cases.push((p, "does not fit its 512-byte piece"));
    let mut p = deal_piece(dir, 13, 700, 1024, 1000);
    p.payload_size = 699;
    cases.push((p, "holds 700 bytes"));
    let mut p = deal_piece(dir, 14, 700, 1024, 1000);
    p.proposal.piece_cid = piece_comm_p(&payload_bytes(700, 99), 1024);
    cases.push((p, "is not the deal's"));
    // The same payload named as a larger piece has another CommP.
    let mut p = deal_piece(dir, 15, 700, 1024, 1000);
    p.proposal.piece_size = 2048;
    cases.push((p, "is not the deal's"));
    cases.push((deal_piece(dir, 16, 100, 512, HEAD - 10), "has passed"));
    cases.push((deal_piece(dir, 17, 100, 512, HEAD + 5), "too soon"));
    let mut p = deal_piece(dir, 18, 100, 512, 1000);
    p.payload = dir.join("nowhere");
    cases.push((p, "cannot be opened"));
    for (p, want) in &cases {
        let why = refused(s.p.add_piece(p.clone()).await.unwrap_err());
        assert!(why.contains(want), "deal {}: {why}", p.deal_id);
        assert!(s.p.store().deal_piece(p.deal_id).unwrap().is_none());
        assert!(!staged_path(&scratch(&s), p.deal_id).exists());
    }
    // With a node that answers deal queries: not published, another proposal, already active.
    let unpublished = deal_piece(dir, 20, 100, 512, 1000);
    let changed = deal_piece(dir, 21, 100, 512, 1000);
    let active = deal_piece(dir, 22, 100, 512, 1000);
    let mut deals = HashMap::new();
    let mut other = published(&changed);
    other.proposal.label = "another".into();
    deals.insert(21, other);
    let mut on = published(&active);
    on.state.sector = Some(3);
    deals.insert(22, on);
    *s.chain.deals.lock().unwrap() = Some(deals);
    for (p, want) in [
        (unpublished, "not on chain"),
        (changed, "another proposal"),
        (active, "already active"),
    ] {
        let why = refused(s.p.add_piece(p.clone()).await.unwrap_err());
        assert!(why.contains(want), "deal {}: {why}", p.deal_id);
        assert!(s.p.store().deal_piece(p.deal_id).unwrap().is_none());
        assert!(!staged_path(&scratch(&s), p.deal_id).exists());
    }
    assert!(s.p.store().list().unwrap().is_empty(), "no sector was made");
    assert!(s.p.deal_pieces().unwrap().is_empty());
}

#[tokio::test]
async fn a_deal_sector_waits_until_full_waited_long_enough_or_a_deal_starts_soon() {
    let dir = tempfile::tempdir().unwrap();
    // Not full, no deal close: waits until `wait_deals_epochs` (30) after its first piece.
    let s = deal_setup();
    let n =
        s.p.add_piece(deal_piece(dir.path(), 1, 100, 512, 1000))
            .await
            .unwrap()
            .sector
            .unwrap();
    let r = get(&s, n);
    let Step::Wait(why) = s.p.step(&r, HEAD + 29).await.unwrap() else {
        panic!()
    };
    assert!(why.contains("sealing starts at epoch 130"), "{why}");
    assert!(is_done(&s.p.step(&r, HEAD + 30).await.unwrap()));
    // A deal starting soon: starts once its start is `deal_start_margin_epochs` (40) away.
    let s = deal_setup();
    let n =
        s.p.add_piece(deal_piece(dir.path(), 2, 100, 512, 150))
            .await
            .unwrap()
            .sector
            .unwrap();
    let r = get(&s, n);
    assert!(matches!(s.p.step(&r, 109).await.unwrap(), Step::Wait(_)));
    assert!(is_done(&s.p.step(&r, 110).await.unwrap()));
    // Full: at once.
    let s = deal_setup();
    for (id, size) in [(3, 1024), (4, 512), (5, 256), (6, 256)] {
        s.p.add_piece(deal_piece(dir.path(), id, 100, size, 1000))
            .await
            .unwrap();
    }
    let r = get(&s, s.p.store().list().unwrap()[0].number);
    assert!(is_done(&s.p.step(&r, HEAD).await.unwrap()));
    // A piece placed after the step read the sector: its Done is refused (fenced by the
    // version), so the pieces packed are always the ones the step saw.
    let s = deal_setup();
    let n =
        s.p.add_piece(deal_piece(dir.path(), 7, 100, 512, 1000))
            .await
            .unwrap()
            .sector
            .unwrap();
    let r = get(&s, n);
    let step = s.p.step(&r, HEAD + 30).await.unwrap();
    s.p.add_piece(deal_piece(dir.path(), 8, 100, 512, 1000))
        .await
        .unwrap();
    let Step::Apply(event, _) = step else {
        panic!()
    };
    assert!(
        s.p.store()
            .apply(n, r.version, &event, 0, &RetryPolicy::default())
            .is_err()
    );
    assert_eq!(get(&s, n).state(), SectorState::WaitDeals);
}

#[tokio::test]
async fn deals_that_cannot_be_sealed_in_time_are_dropped_and_the_others_move_down() {
    let s = deal_setup();
    let dir = s._dir.path();
    // 512 bytes at 0 (starts soon), 128 at 512, 1024 at 1024.
    let a = deal_piece(dir, 1, 100, 512, 130);
    let b = deal_piece(dir, 2, 100, 128, 1000);
    let c = deal_piece(dir, 3, 100, 1024, 1000);
    for p in [&a, &b, &c] {
        s.p.add_piece(p.clone()).await.unwrap();
    }
    let n = s.p.store().deal_piece(1).unwrap().unwrap().sector.unwrap();
    let offsets = |s: &Setup| -> Vec<(u64, u64)> {
        s.p.store()
            .sector_pieces(n)
            .unwrap()
            .iter()
            .map(|p| (p.deal_id, p.offset))
            .collect()
    };
    assert_eq!(offsets(&s), vec![(1, 0), (2, 512), (3, 1024)]);
    // At epoch 115 deal 1 (start 130) can no longer be proven in time (18 epochs from a
    // pre-commit): dropped, and the 128-byte piece moves down to 0.
    let r = get(&s, n);
    let step = s.p.step(&r, 115).await.unwrap();
    assert_eq!(offsets(&s), vec![(2, 0), (3, 1024)]);
    let rows = s.p.deal_pieces().unwrap();
    assert_eq!(rows[0].state, PieceState::Failed);
    let why = rows[0].reason.clone().unwrap();
    assert!(why.contains("had to be active by epoch 130"), "{why}");
    assert!(!staged_path(&scratch(&s), 1).exists());
    assert_eq!(rows[1].state, PieceState::Waiting);
    // Its first deal now starts at 1000: the sector waits.
    assert!(matches!(step, Step::Wait(_)), "{step:?}");
    // The chain drops a deal too (the node answers deal queries): deal 3 is no longer there.
    let mut deals = HashMap::new();
    deals.insert(2, published(&b));
    *s.chain.deals.lock().unwrap() = Some(deals);
    s.p.step(&get(&s, n), 116).await.unwrap();
    assert_eq!(offsets(&s), vec![(2, 0)]);
    let why = s.p.store().deal_piece(3).unwrap().unwrap().failed.unwrap();
    assert!(why.contains("no longer on chain"), "{why}");
}

/// Moves a deal sector to Packing and packs it.
async fn packed(s: &Setup, n: u64) -> (SectorRecord, Step) {
    let r = move_to(s, n, SectorState::Packing);
    let step = s.p.step(&r, HEAD).await.unwrap();
    (r, step)
}

#[tokio::test]
async fn packing_writes_the_data_whose_comm_d_is_the_deals() {
    let s = deal_setup();
    let dir = s._dir.path();
    let a = deal_piece(dir, 1, 200, 256, 1000);
    let b = deal_piece(dir, 2, 1000, 1024, 1000);
    let c = deal_piece(dir, 3, 90, 128, 1000);
    for p in [&a, &b, &c] {
        s.p.add_piece(p.clone()).await.unwrap();
    }
    let n = s.p.store().deal_piece(1).unwrap().unwrap().sector.unwrap();
    // 256 at 0, 1024 at 1024, 128 at 256.
    let (at_packing, step) = packed(&s, n).await;
    assert!(is_done(&step), "{step:?}");
    let r = apply(&s, &at_packing, step);
    assert_eq!(r.state(), SectorState::PreCommit1);
    let sector_dir = s.p.sector_dir(n).unwrap();
    let unsealed = std::fs::read(sector_dir.join("unsealed")).unwrap();
    let root = tree_d_root(nodes_from_bytes(&unsealed).unwrap());
    assert_eq!(root.0, deals_comm_d(&[&a, &c, &b]), "the chain's CommD");
    // Each payload is where its piece is, fr32-padded.
    for (p, offset) in [(&a, 0usize), (&c, 256), (&b, 1024)] {
        let size = p.proposal.piece_size as usize;
        let raw = lode_proofs::fr32::unpad(&unsealed[offset..offset + size]).unwrap();
        assert_eq!(
            &raw[..p.payload_size as usize],
            &payload_bytes(p.payload_size as usize, p.deal_id)[..]
        );
        assert!(raw[p.payload_size as usize..].iter().all(|&x| x == 0));
    }
    // Packing again (a crash before the state moved on) writes nothing new.
    let again = s.p.step(&at_packing, HEAD).await.unwrap();
    assert!(is_done(&again));
    assert_eq!(
        std::fs::read(sector_dir.join("unsealed")).unwrap(),
        unsealed
    );
}

#[tokio::test]
async fn a_damaged_payload_copy_fails_its_piece_and_the_sector_is_packed_without_it() {
    let s = deal_setup();
    let dir = s._dir.path();
    let a = deal_piece(dir, 1, 500, 512, 1000);
    let b = deal_piece(dir, 2, 500, 512, 1000);
    for p in [&a, &b] {
        s.p.add_piece(p.clone()).await.unwrap();
    }
    let n = s.p.store().deal_piece(1).unwrap().unwrap().sector.unwrap();
    let staged = staged_path(&scratch(&s), 1);
    let mut bytes = std::fs::read(&staged).unwrap();
    bytes[7] ^= 0x10;
    std::fs::write(&staged, &bytes).unwrap();
    let (r, step) = packed(&s, n).await;
    let Step::Apply(Event::Repack { reason }, Some(chain)) = &step else {
        panic!("{step:?}")
    };
    assert!(reason.contains("damaged"), "{reason}");
    assert_eq!(**chain, SectorChain::default());
    let r = apply(&s, &r, step);
    assert_eq!(r.state(), SectorState::WaitDeals);
    let rows = s.p.deal_pieces().unwrap();
    assert_eq!(
        (rows[0].state, rows[1].state),
        (PieceState::Failed, PieceState::Waiting)
    );
    assert_eq!(rows[1].offset, Some(0), "moved down");
    // Back in WaitDeals, the data written with the damaged piece is deleted.
    assert!(s.p.sector_dir(n).is_some());
    assert!(matches!(s.p.step(&r, HEAD).await.unwrap(), Step::Wait(_)));
    assert!(s.p.sector_dir(n).is_none());
    // Packed again: only deal 2's piece, at 0, the old data gone.
    let (r, step) = packed(&s, n).await;
    assert!(is_done(&step), "{step:?}");
    apply(&s, &r, step);
    let mut unsealed = std::fs::read(s.p.sector_dir(n).unwrap().join("unsealed")).unwrap();
    assert_eq!(unsealed.len(), 512, "deal 2's piece alone");
    // PreCommit1 zero-fills it to the sector's size.
    unsealed.resize(2048, 0);
    let root = tree_d_root(nodes_from_bytes(&unsealed).unwrap());
    assert_eq!(root.0, deals_comm_d(&[&b]));
}

/// A deal sector of `pieces` moved to `SubmitPreCommit` with its commitments recorded (`comm_d`
/// the deals' unless given).
async fn pre_committing(
    s: &Setup,
    pieces: &[&DealPiece],
    comm_d: Option<[u8; 32]>,
) -> SectorRecord {
    for p in pieces {
        s.p.add_piece((*p).clone()).await.unwrap();
    }
    let n =
        s.p.store()
            .deal_piece(pieces[0].deal_id)
            .unwrap()
            .unwrap()
            .sector
            .unwrap();
    let r = move_to(s, n, SectorState::SubmitPreCommit);
    let mut sorted: Vec<&DealPiece> = pieces.to_vec();
    sorted.sort_by_key(|p| s.p.store().deal_piece(p.deal_id).unwrap().unwrap().offset);
    let chain = SectorChain {
        seal_rand_epoch: Some(95),
        ticket: Some([1; 32]),
        comm_d: Some(comm_d.unwrap_or_else(|| deals_comm_d(&sorted))),
        comm_r: Some(COMM_R),
        ..SectorChain::default()
    };
    s.p.store().record_chain(n, r.version, chain, 0).unwrap()
}

#[tokio::test]
async fn the_pre_commit_names_the_deals_in_piece_order_and_outlives_them() {
    let s = deal_setup();
    let dir = s._dir.path();
    let a = deal_piece(dir, 5, 100, 256, 1000);
    let b = deal_piece(dir, 6, 900, 1024, 900);
    let c = deal_piece(dir, 7, 100, 128, 1000);
    let mut c = c;
    c.proposal.end_epoch = 600_000;
    std::fs::write(&c.payload, payload_bytes(100, 7)).unwrap();
    // 256 at 0, 1024 at 1024, 128 at 256: piece order 5, 7, 6.
    let r = pre_committing(&s, &[&a, &b, &c], None).await;
    let step = s.p.step(&r, 110).await.unwrap();
    assert!(matches!(step, Step::Wait(_)), "{step:?}");
    let pushed = s.chain.pushed();
    let Method::Miner(MinerMethod::PreCommitSectors(infos)) = &pushed[0].message.method else {
        panic!()
    };
    assert_eq!(infos[0].deal_ids, vec![5, 7, 6]);
    assert_eq!(
        infos[0].expiration, 600_000,
        "the sector lives as long as its longest deal"
    );
    assert_eq!(Some(infos[0].comm_d), r.chain.comm_d);
}

#[tokio::test]
async fn a_deal_dropped_before_the_pre_commit_repacks_the_sector() {
    // Recorded CommD that is not the deals' (a piece dropped after the data was written, and a
    // crash before the repack): repacked, no message.
    let s = deal_setup();
    let dir = s._dir.path();
    let a = deal_piece(dir, 1, 100, 512, 1000);
    let b = deal_piece(dir, 2, 100, 512, 1000);
    let r = pre_committing(&s, &[&a, &b], Some([5; 32])).await;
    let step = s.p.step(&r, 110).await.unwrap();
    assert!(
        matches!(step, Step::Apply(Event::Repack { .. }, _)),
        "{step:?}"
    );
    assert!(s.chain.pushed().is_empty());
    // The chain no longer has deal 2: it is dropped, the sector repacked with deal 1 alone.
    let s = deal_setup();
    let r = pre_committing(&s, &[&a, &b], None).await;
    let mut deals = HashMap::new();
    deals.insert(1, published(&a));
    *s.chain.deals.lock().unwrap() = Some(deals);
    let step = s.p.step(&r, 110).await.unwrap();
    let Step::Apply(Event::Repack { reason }, _) = &step else {
        panic!("{step:?}")
    };
    assert!(reason.contains("deal 2 is no longer on chain"), "{reason}");
    let r = apply(&s, &r, step);
    assert_eq!(r.state(), SectorState::WaitDeals);
    assert_eq!(
        r.chain,
        SectorChain::default(),
        "a new ticket and new commitments"
    );
    assert_eq!(
        s.p.store()
            .sector_pieces(r.number)
            .unwrap()
            .iter()
            .map(|p| p.deal_id)
            .collect::<Vec<_>>(),
        vec![1]
    );
    assert!(s.chain.pushed().is_empty());
}

#[tokio::test]
async fn a_deal_that_can_no_longer_be_activated_fails_the_sector_and_its_other_pieces_move() {
    let s = deal_setup();
    let dir = s._dir.path();
    let a = deal_piece(dir, 1, 100, 512, 140);
    let b = deal_piece(dir, 2, 100, 512, 1000);
    let r = pre_committing(&s, &[&a, &b], None).await;
    let n = r.number;
    let r = move_to(&s, n, SectorState::SubmitProveCommit);
    // Deal 1 had to be active by 140: at 141 the chain would refuse the prove-commit.
    let step = s.p.step(&r, 141).await.unwrap();
    let (reason, retry) = failure(&step);
    assert!(!retry && reason.contains("deal 1"), "{reason}");
    let r = apply(&s, &r, step);
    assert_eq!(r.state(), SectorState::FailedUnrecoverable);
    assert!(s.chain.pushed().is_empty());
    // The next tick: deal 2 is placed in a new sector, deal 1 fails with the sector's reason.
    *s.chain.head.lock().unwrap() = Some(141);
    s.p.tick().await.unwrap();
    let p2 = s.p.store().deal_piece(2).unwrap().unwrap();
    assert!(p2.sector.unwrap() > n && p2.is_live(), "{p2:?}");
    assert_eq!((p2.offset, p2.placements), (0, 2));
    assert_eq!(get(&s, p2.sector.unwrap()).state(), SectorState::WaitDeals);
    let p1 = s.p.store().deal_piece(1).unwrap().unwrap();
    let why = p1.failed.unwrap();
    assert!(
        why.contains(&format!("sector {n} is FailedUnrecoverable")),
        "{why}"
    );
    assert!(s.p.store().sector_pieces(n).unwrap().is_empty());
    let rows = s.p.deal_pieces().unwrap();
    assert_eq!(
        (rows[0].state, rows[1].state),
        (PieceState::Failed, PieceState::Waiting)
    );
}

/// The API: `provider_addPiece` needs the token and answers a repeated call the same;
/// `provider_dealPieces` lists, filtered by deal ids; `provider_pieceLocation` refuses a malformed
/// CID and finds nothing for a piece not yet proven; a refusal carries its reason and code.
#[tokio::test]
async fn the_api_takes_lists_and_locates_deal_pieces() {
    use lode_node::rpc::client::{ApiInfo, ClientError};
    use lode_node::rpc::codes;
    use lode_provider::metrics::ProviderMetrics;
    use lode_provider::poster::Poster;
    use lode_provider::prover::{Prover, SectorStore};
    use lode_provider::rpc::client::ProviderClient;
    use lode_provider::rpc::{self, Identity, ProviderRpc};

    let dir = tempfile::tempdir().unwrap();
    let chain = std::sync::Arc::new(Chain::default());
    *chain.head.lock().unwrap() = Some(HEAD);
    let pipeline = std::sync::Arc::new(pipeline_in(
        dir.path(),
        chain.clone(),
        RetryPolicy::default(),
        None,
        0,
    ));
    let policy = lode_chain::Policy::devnet();
    let store = SectorStore::new(
        dir.path().join("sectors"),
        MINER.0,
        lode_proofs::sector::SectorSize::S2KiB,
    );
    let prover = std::sync::Arc::new(Prover::with_params(
        store.clone(),
        lode_proofs::sector::SectorSize::S2KiB,
        lode_testkit::harness::unused_params(),
        lode_testkit::harness::unused_params(),
    ));
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = ProviderMetrics::register(&mut registry);
    let poster = Poster::new(
        MINER,
        SecretKey::from_seed(&[20; 32]),
        policy,
        prover,
        metrics.clone(),
    );
    let (_mining, mining_rx) = tokio::sync::watch::channel(Default::default());
    let token = "cd".repeat(32);
    let ctx = |pipeline| ProviderRpc {
        api: chain.clone(),
        identity: Identity {
            actor: MINER,
            owner: WORKER,
            worker: WORKER,
            sector_size: lode_proofs::sector::SectorSize::S2KiB,
            network: "devnet".into(),
            node_api: "scripted".into(),
            started_at: 0,
        },
        store: store.clone(),
        poster: poster.handle(),
        mining: mining_rx.clone(),
        metrics: metrics.clone(),
        pipeline,
        market: Err("not in this test".into()),
    };
    let (addr, _server) = rpc::serve(
        "127.0.0.1:0".parse().unwrap(),
        ctx(Ok(pipeline)),
        token.clone(),
    )
    .await
    .unwrap();
    let client = |token: Option<String>| {
        ProviderClient::new(ApiInfo {
            url: format!("http://{addr}"),
            token,
        })
        .unwrap()
    };
    let code = |e: &ClientError| match e {
        ClientError::Rpc { code, .. } => Some(*code),
        _ => None,
    };
    let anyone = client(None);
    let market = client(Some(token.clone()));
    let piece = deal_piece(dir.path(), 7, 300, 512, 1000);
    assert!(matches!(
        anyone.add_piece(&piece).await,
        Err(ClientError::Unauthorized)
    ));
    let info = market.add_piece(&piece).await.unwrap();
    assert_eq!(
        (info.deal_id, info.state, info.offset),
        (7, PieceState::Waiting, Some(0))
    );
    assert_eq!(market.add_piece(&piece).await.unwrap(), info);
    assert_eq!(anyone.deal_pieces(None).await.unwrap(), vec![info.clone()]);
    assert_eq!(anyone.deal_pieces(Some(&[7])).await.unwrap().len(), 1);
    assert!(anyone.deal_pieces(Some(&[8])).await.unwrap().is_empty());
    // Refused with the reason, nothing kept.
    let late = deal_piece(dir.path(), 8, 300, 512, HEAD - 1);
    let e = market.add_piece(&late).await.unwrap_err();
    assert_eq!(code(&e), Some(codes::REFUSED), "{e}");
    assert!(e.to_string().contains("has passed"), "{e}");
    assert_eq!(anyone.deal_pieces(None).await.unwrap().len(), 1);
    // Located only once proven; a malformed CID is an invalid parameter.
    assert_eq!(anyone.piece_location(&info.piece_cid).await.unwrap(), None);
    let e = anyone.piece_location("bafy-not-a-cid").await.unwrap_err();
    assert_eq!(code(&e), Some(codes::INVALID_PARAMS), "{e}");
    // A provider without a pipeline says why.
    let (addr2, _server2) = rpc::serve(
        "127.0.0.1:0".parse().unwrap(),
        ctx(Err("disabled here".into())),
        token.clone(),
    )
    .await
    .unwrap();
    let off = ProviderClient::new(ApiInfo {
        url: format!("http://{addr2}"),
        token: Some(token.clone()),
    })
    .unwrap();
    let e = off.deal_pieces(None).await.unwrap_err();
    assert_eq!(code(&e), Some(codes::REFUSED), "{e}");
    assert!(e.to_string().contains("disabled here"), "{e}");
    let e = off.add_piece(&piece).await.unwrap_err();
    assert_eq!(code(&e), Some(codes::REFUSED), "{e}");
}

const PLACER: &str = "LODE_PIECE_PLACER";

/// The placer: adds deal pieces 1, 2, … (after a restart, again from a little before the last
/// one recorded: a repeated call answers the same), printing `placed <deal> <sector> <offset>` once each call returned, and
/// now and then starts a waiting sector, until it is killed.
fn placer(dir: &str) {
    let dir = std::path::Path::new(dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let chain = std::sync::Arc::new(Chain::default());
        *chain.head.lock().unwrap() = Some(HEAD);
        let p = pipeline_in(dir, chain, RetryPolicy::default(), None, 0);
        let payloads = dir.join("payloads");
        std::fs::create_dir_all(&payloads).unwrap();
        // Again from a little before the last piece recorded: those answer the same.
        let first = p
            .store()
            .deal_pieces()
            .unwrap()
            .last()
            .map_or(1, |r| r.deal_id.saturating_sub(2).max(1));
        for id in first.. {
            let size = 128u64 << (id % 4);
            let piece = deal_piece(&payloads, id, (id as usize * 37) % 100 + 1, size, 1000);
            let info = p.add_piece(piece).await.unwrap();
            println!(
                "placed {id} {} {}",
                info.sector.unwrap(),
                info.offset.unwrap()
            );
            if id % 5 == 0
                && let Some(r) = p
                    .store()
                    .list()
                    .unwrap()
                    .into_iter()
                    .find(|r| r.state() == SectorState::WaitDeals)
            {
                let _ = p.store().apply(
                    r.number,
                    r.version,
                    &Event::Done,
                    0,
                    &RetryPolicy::default(),
                );
            }
        }
    });
}

#[test]
fn placing_pieces_survives_kill_9_at_random_moments() {
    if let Ok(dir) = std::env::var(PLACER) {
        placer(&dir);
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut reported: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..60 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "deals::placing_pieces_survives_kill_9_at_random_moments",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(PLACER, d.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(40 + seed % 160));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if let ["placed", id, n, off] = line.split_whitespace().collect::<Vec<_>>().as_slice() {
                let (id, n, off) = (
                    id.parse().unwrap(),
                    n.parse().unwrap(),
                    off.parse().unwrap(),
                );
                // Once told, an assignment never changes (repeated calls answer the same).
                let e = reported.entry(id).or_insert((n, off));
                assert_eq!(*e, (n, off), "round {round}: deal {id} moved");
            }
        }
        let store = lode_provider::pipeline::PipelineStore::open(&d.path().join("db")).unwrap();
        let pieces = store.deal_pieces().unwrap();
        let sectors = store.list().unwrap();
        for (id, (n, off)) in &reported {
            let p = store.deal_piece(*id).unwrap().unwrap_or_else(|| {
                panic!("round {round}: deal {id} was reported placed and is gone")
            });
            assert_eq!((p.sector, p.offset), (Some(*n), *off), "round {round}");
        }
        // Every recorded piece is in exactly one sector's list, with its payload copy, and each
        // sector's pieces sit where CommD puts them.
        let mut listed = BTreeSet::new();
        for r in &sectors {
            assert_eq!(r.kind, SectorKind::Deals);
            let list = store.sector_pieces(r.number).unwrap();
            let sizes: Vec<PaddedPieceSize> = list
                .iter()
                .map(|p| PaddedPieceSize::new(p.piece_size()).unwrap())
                .collect();
            let offsets = piece_offsets(&sizes);
            assert!(
                offsets[list.len()] <= 2048,
                "round {round}: sector {} overflows",
                r.number
            );
            for (p, o) in list.iter().zip(&offsets) {
                assert_eq!(p.offset, *o, "round {round}: deal {} misplaced", p.deal_id);
                assert!(
                    listed.insert(p.deal_id),
                    "round {round}: deal {} twice",
                    p.deal_id
                );
                let copy =
                    std::fs::read(staged_path(&d.path().join("scratch"), p.deal_id)).unwrap();
                assert_eq!(copy, payload_bytes(p.payload_size as usize, p.deal_id));
            }
        }
        assert_eq!(
            listed.len(),
            pieces.len(),
            "round {round}: a piece in no sector"
        );
        // Sector numbers handed out once, from the floor, without gaps.
        let numbers: Vec<u64> = sectors.iter().map(|r| r.number).collect();
        assert_eq!(numbers, (0..numbers.len() as u64).collect::<Vec<_>>());
    }
    assert!(reported.len() > 20, "only {} pieces placed", reported.len());
}

// ---- Against a real node, real sealing and proofs ----

use lode_chain::actors::market::{ClientDealProposal, DealProposal, MarketMethod};
use lode_chain::actors::verifreg::VerifRegMethod;
use lode_chain::actors::{MARKET, VERIFREG};
use lode_chain::crypto::SecretKey;
use lode_chain::types::{Address, TokenAmount};
use lode_provider::NodeApi;

/// Funds a client with escrow and DataCap, and the miner's escrow; publishes two deals of a
/// kilobyte each (the second verified) starting `start` epochs ahead; returns them with their
/// payloads.
async fn two_published_deals(
    w: &World,
    dir: &std::path::Path,
    start: u64,
) -> Vec<(DealPiece, Vec<u8>)> {
    let worker = worker_key();
    let client = SecretKey::from_seed(&[30; 32]);
    let verifier = SecretKey::from_seed(&[31; 32]);
    let root = SecretKey::from_seed(&[1; 32]);
    for k in [&client, &verifier, &root] {
        w.send_ok(
            &worker,
            Address::Bls(k.public_key()),
            Method::Send,
            TokenAmount::tokens(50),
        )
        .await;
    }
    let client_id = w.lookup(Address::Bls(client.public_key())).await;
    let verifier_id = w.lookup(Address::Bls(verifier.public_key())).await;
    w.send_ok(
        &root,
        Address::Id(VERIFREG),
        Method::VerifReg(VerifRegMethod::AddVerifier {
            verifier: Address::Id(verifier_id),
            allowance: 1 << 20,
        }),
        TokenAmount::ZERO,
    )
    .await;
    w.send_ok(
        &verifier,
        Address::Id(VERIFREG),
        Method::VerifReg(VerifRegMethod::AddVerifiedClient {
            client: Address::Id(client_id),
            allowance: 4096,
        }),
        TokenAmount::ZERO,
    )
    .await;
    w.send_ok(
        &client,
        Address::Id(MARKET),
        Method::Market(MarketMethod::AddBalance {
            owner: Address::Id(client_id),
        }),
        TokenAmount::tokens(20),
    )
    .await;
    w.send_ok(
        &worker,
        Address::Id(MARKET),
        Method::Market(MarketMethod::AddBalance {
            owner: Address::Id(w.miner),
        }),
        TokenAmount::tokens(20),
    )
    .await;
    let head = NodeApi::chain_head(&w.node.svc).await.unwrap().epoch;
    let start_epoch = head + start;
    let mut out = Vec::new();
    let mut proposals = Vec::new();
    for (i, (len, verified)) in [(700usize, false), (1016usize, true)]
        .into_iter()
        .enumerate()
    {
        let bytes = payload_bytes(len, 40 + i as u64);
        let proposal = DealProposal {
            piece_cid: piece_comm_p(&bytes, 1024),
            piece_size: 1024,
            verified,
            client: client_id,
            provider: w.miner,
            label: format!("piece {i}"),
            start_epoch,
            end_epoch: start_epoch + w.policy.deal_min_duration,
            price_per_epoch: TokenAmount::atto(1_000_000),
            provider_collateral: TokenAmount::tokens(1),
            client_collateral: TokenAmount::atto(1_000),
        };
        let client_signature = client.sign(&proposal.signing_bytes(&w.policy.network));
        proposals.push(ClientDealProposal {
            proposal: proposal.clone(),
            client_signature,
        });
        let path = dir.join(format!("payload-{i}"));
        std::fs::write(&path, &bytes).unwrap();
        out.push((
            DealPiece {
                deal_id: 0,
                proposal,
                payload: path,
                payload_size: len as u64,
            },
            bytes,
        ));
    }
    let r = w
        .send_ok(
            &worker,
            Address::Id(MARKET),
            Method::Market(MarketMethod::PublishDeals(proposals)),
            TokenAmount::ZERO,
        )
        .await;
    let ids: Vec<u64> = postcard::from_bytes(&r.receipt.return_data).unwrap();
    for ((piece, _), id) in out.iter_mut().zip(ids) {
        piece.deal_id = id;
    }
    out
}

/// Two deals, one verified, sealed into one 2 KiB sector to `Proving` with real proofs — the
/// pipeline reopened over its records after every step, and the first piece handed over again
/// after a reopen: the deals active in the sector, its deal weights, its QA power 10× for the
/// verified kilobyte exactly as the chain computes it, and the pieces read back from the unsealed
/// copy and by unsealing the sector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deals_one_verified_are_sealed_into_one_sector_and_activated() {
    bounded(async {
        let w = world().await;
        for _ in 0..3 {
            w.mine().await;
        }
        let dir = w.root.join("client");
        std::fs::create_dir_all(&dir).unwrap();
        let deals = two_published_deals(&w, &dir, 200).await;
        let db = w.root.join("pipeline");
        let first = w.pipeline(&db).add_piece(deals[0].0.clone()).await.unwrap();
        // Reopened (a restart): the same piece again answers the same, then the second.
        let p = w.pipeline(&db);
        assert_eq!(p.add_piece(deals[0].0.clone()).await.unwrap(), first);
        let second = p.add_piece(deals[1].0.clone()).await.unwrap();
        let n = first.sector.unwrap();
        assert_eq!((second.sector, second.offset), (Some(n), Some(1024)));
        drop(p);
        // The market deletes its copies.
        for (d, _) in &deals {
            std::fs::remove_file(&d.payload).unwrap();
        }
        let mut pre_commits = BTreeSet::new();
        for _ in 0..600 {
            // A fresh pipeline every step.
            let p = w.pipeline(&db);
            if p.store().get(n).unwrap().unwrap().state() == SectorState::Proving {
                break;
            }
            let mut moved = p.tick().await.unwrap();
            moved.extend(p.wait_tasks().await);
            for t in &moved {
                assert_eq!(
                    t.from.next(),
                    Some(t.to),
                    "no failure: {t:?} {:?}",
                    p.store().get(t.number)
                );
            }
            if let Some(sent) = p.store().get(n).unwrap().unwrap().chain.pre_commit {
                pre_commits.insert(sent.id);
            }
            drop(p);
            if moved.is_empty() {
                w.mine().await;
            }
        }
        let p = w.pipeline(&db);
        let rec = p.store().get(n).unwrap().unwrap();
        assert_eq!(rec.state(), SectorState::Proving, "{rec:?}");
        assert_eq!(pre_commits.len(), 1, "one pre-commit");
        let ids: Vec<u64> = deals.iter().map(|(d, _)| d.deal_id).collect();
        // On chain: the sector holds both deals, in piece order, and they are active in it.
        let sectors = NodeApi::miner_sectors(&w.node.svc, w.miner).await.unwrap();
        let s = sectors.iter().find(|s| s.sector_number == n).unwrap();
        assert_eq!(s.deal_ids, ids);
        let duration = u128::from(s.expiration - s.activation);
        assert_eq!(s.deal_weight, 1024 * duration);
        assert_eq!(s.verified_deal_weight, 1024 * duration);
        assert!(s.expiration >= deals[1].0.proposal.end_epoch);
        for id in &ids {
            let lode_provider::DealLookup::Found(d) =
                NodeApi::market_deal(&w.node.svc, *id).await.unwrap()
            else {
                panic!("deal {id} is gone")
            };
            assert_eq!(d.state.sector, Some(n));
            assert_eq!(d.state.activation_epoch, Some(s.activation));
        }
        let rows = p.deal_pieces().unwrap();
        assert!(
            rows.iter()
                .all(|r| r.state == PieceState::Proving && r.sector == Some(n)),
            "{rows:?}"
        );
        // The payload copies are gone; the unsealed copy is kept in the store.
        for id in &ids {
            assert!(!staged_path(&w.scratch_dir(), *id).exists());
        }
        w.check_proving(n).await;
        let store_dir = p.store_path(n);
        assert!(store_dir.join("unsealed").is_file());
        // The sector's first Window PoSt gives it power: 10× for the verified kilobyte, 1× for
        // the other, exactly as the chain computes it.
        let before = NodeApi::miner_power(&w.node.svc, w.miner)
            .await
            .unwrap()
            .power;
        let mut after = before;
        for _ in 0..400 {
            w.mine().await;
            after = NodeApi::miner_power(&w.node.svc, w.miner)
                .await
                .unwrap()
                .power;
            if after.raw > before.raw {
                break;
            }
        }
        assert_eq!(after.raw - before.raw, 2048, "the sector's raw power");
        let qa = lode_chain::monies::qa_power_for_weight(
            &w.policy,
            2048,
            s.expiration - s.activation,
            s.verified_deal_weight,
        );
        assert_eq!(after.qa - before.qa, qa);
        assert_eq!(
            qa,
            1024 * 10 + 1024,
            "10× for the verified bytes, 1× for the others"
        );
        // Retrieval: the pieces read back from the unsealed copy…
        let reader = p.piece_reader();
        for (d, bytes) in &deals {
            let cid: lode_proofs::cid::PieceCid =
                lode_provider::pipeline::deals::piece_cid_text(d.proposal.piece_cid)
                    .parse()
                    .unwrap();
            let loc = reader.locate(&cid).unwrap().unwrap();
            assert!(loc.unsealed);
            assert_eq!(
                (loc.deal_id, loc.sector, loc.payload_size),
                (d.deal_id, n, bytes.len() as u64)
            );
            let mut out = Vec::new();
            reader.read(&loc, 0, loc.payload_size, &mut out).unwrap();
            assert_eq!(&out, bytes);
            let mut out = Vec::new();
            reader.read(&loc, 100, 50, &mut out).unwrap();
            assert_eq!(&out[..], &bytes[100..150]);
            assert!(matches!(
                reader
                    .read(&loc, loc.payload_size, 1, &mut Vec::new())
                    .unwrap_err(),
                ProviderError::PieceRange { .. }
            ));
        }
        // …and by unsealing the sector when no copy is kept.
        std::fs::remove_file(store_dir.join("unsealed")).unwrap();
        let (d, bytes) = &deals[1];
        let cid: lode_proofs::cid::PieceCid =
            lode_provider::pipeline::deals::piece_cid_text(d.proposal.piece_cid)
                .parse()
                .unwrap();
        let loc = reader.locate(&cid).unwrap().unwrap();
        assert!(!loc.unsealed);
        let mut out = Vec::new();
        reader.read(&loc, 10, 1000, &mut out).unwrap();
        assert_eq!(&out[..], &bytes[10..1010]);
        assert!(store_dir.join("unsealed").is_file());
        // Unknown piece: none.
        let unknown =
            lode_proofs::cid::PieceCid::new(lode_proofs::node::trunc254([9; 32])).unwrap();
        assert!(reader.locate(&unknown).unwrap().is_none());
    })
    .await;
}

/// [`lode_provider::market::WorkerPublisher`] against a real node: a publication signed,
/// recorded, and lost before its push (a crash) is not passed while its nonce is free; once the
/// worker's next message has taken that nonce and been executed, it is passed (it can never be
/// executed), and it is still not on chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_publication_whose_nonce_another_message_took_is_seen_passed() {
    use lode_market::provider::DealPublisher;
    use lode_provider::market::WorkerPublisher;
    use lode_provider::poster::Messenger;
    use std::sync::{Arc, Mutex};

    bounded(async {
        let w = world().await;
        let worker = worker_key();
        let worker_id = w.lookup(Address::Bls(worker.public_key())).await;
        let publisher = WorkerPublisher::new(
            w.node.clone(),
            Arc::new(Messenger::new(w.miner, worker_key(), w.policy.clone())),
            worker_id,
        );
        let client = SecretKey::from_seed(&[32; 32]);
        let head = NodeApi::chain_head(&w.node.svc).await.unwrap().epoch;
        let proposal = DealProposal {
            piece_cid: piece_comm_p(&payload_bytes(700, 50), 1024),
            piece_size: 1024,
            verified: false,
            client: ActorId(1),
            provider: w.miner,
            label: String::new(),
            start_epoch: head + 100,
            end_epoch: head + 100 + w.policy.deal_min_duration,
            price_per_epoch: TokenAmount::ZERO,
            // No collateral: no escrow top-up goes before the publication.
            provider_collateral: TokenAmount::ZERO,
            client_collateral: TokenAmount::ZERO,
        };
        let client_signature = client.sign(&proposal.signing_bytes(&w.policy.network));
        let deals = vec![ClientDealProposal {
            proposal,
            client_signature,
        }];

        w.node.set_fault(PushFault::Lose);
        let recorded: Arc<Mutex<Option<lode_chain::message::SignedMessage>>> = Arc::default();
        let keep = recorded.clone();
        let sent = publisher
            .publish(
                deals,
                Box::new(move |m| {
                    *keep.lock().unwrap() = Some(m.clone());
                    Ok(())
                }),
            )
            .await;
        assert!(sent.is_err(), "the push was lost: {sent:?}");
        let lost = recorded.lock().unwrap().clone().unwrap();
        assert!(!publisher.nonce_passed(&lost).await.unwrap());

        // The worker's next message takes the lost one's nonce.
        let found = w
            .send_ok(
                &worker,
                Address::Bls(client.public_key()),
                Method::Send,
                TokenAmount::tokens(1),
            )
            .await;
        assert!(found.receipt.ok());
        assert!(publisher.nonce_passed(&lost).await.unwrap());
        assert!(publisher.search(lost.id()).await.unwrap().is_none());
    })
    .await;
}
