//! Pre-commits and prove-commits shared by several sectors, against the scripted node of
//! `common`: sectors ready in one tick go out in one message, recorded in every sector's record
//! before it is pushed (a restart between the two pushes the same message again, never a new
//! one); a prove-commit batch that skipped a sector, or failed, has its sectors retried alone.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;

use crate::common::*;
use lode_chain::actors::miner::MinerMethod;
use lode_chain::message::{Method, SignedMessage};
use lode_provider::pipeline::{Event, RetryPolicy, SectorRecord, SectorState};

fn method(m: &SignedMessage) -> &MinerMethod {
    match &m.message.method {
        Method::Miner(mm) => mm,
        other => panic!("{other:?}"),
    }
}

fn records(s: &Setup, numbers: &[u64]) -> Vec<SectorRecord> {
    numbers
        .iter()
        .map(|n| s.p.store().get(*n).unwrap().unwrap())
        .collect()
}

#[tokio::test]
async fn sectors_ready_together_share_one_pre_commit_recorded_in_each() {
    let s = setup();
    *s.chain.head.lock().unwrap() = Some(10);
    let numbers: Vec<u64> = (0..3)
        .map(|_| sector_in(&s, SectorState::SubmitPreCommit).number)
        .collect();
    assert!(s.p.tick().await.unwrap().is_empty());
    let pushed = s.chain.pushed();
    assert_eq!(pushed.len(), 1, "one message for the three");
    let MinerMethod::PreCommitSectors(infos) = method(&pushed[0]) else {
        panic!("{:?}", pushed[0].message.method)
    };
    let in_it: Vec<u64> = infos.iter().map(|i| i.sector_number).collect();
    assert_eq!(in_it, numbers);
    for r in records(&s, &numbers) {
        let sent = r.chain.pre_commit.clone().unwrap();
        assert_eq!((sent.id, sent.sent_at), (pushed[0].id(), 10));
    }
    // Pending: each sector pushes the same message again; nothing new is signed.
    assert!(s.p.tick().await.unwrap().is_empty());
    let ids: BTreeSet<[u8; 32]> = s.chain.pushed().iter().map(|m| m.id()).collect();
    assert_eq!(ids.len(), 1);
    // On chain: every sector moves on.
    for n in &numbers {
        s.chain
            .precommits
            .lock()
            .unwrap()
            .push(precommit(*n, COMM_R, None));
    }
    let moved = s.p.tick().await.unwrap();
    assert_eq!(moved.len(), 3);
    assert!(moved.iter().all(|t| t.to == SectorState::PreCommitLanded));
}

#[tokio::test]
async fn a_restart_between_record_and_push_pushes_the_same_batch_again() {
    let s = setup();
    *s.chain.head.lock().unwrap() = Some(10);
    let numbers: Vec<u64> = (0..3)
        .map(|_| sector_in(&s, SectorState::SubmitPreCommit).number)
        .collect();
    // The push fails after the message was recorded (as a crash between the two would leave it).
    *s.chain.refuse.lock().unwrap() = true;
    assert!(s.p.tick().await.unwrap().is_empty());
    assert!(s.chain.pushed().is_empty());
    let sent = records(&s, &numbers)[0].chain.pre_commit.clone().unwrap();
    for r in records(&s, &numbers) {
        assert_eq!(r.chain.pre_commit.as_ref(), Some(&sent));
    }
    // Restarted: the same signed message is pushed again, no second one signed.
    let s = restart(s);
    *s.chain.refuse.lock().unwrap() = false;
    assert!(s.p.tick().await.unwrap().is_empty());
    let pushed = s.chain.pushed();
    assert!(!pushed.is_empty());
    assert!(
        pushed.iter().all(|m| m.id() == sent.id),
        "only the recorded message"
    );
    assert_eq!(lode_chain::codec::encode(&pushed[0]), sent.signed);
    let MinerMethod::PreCommitSectors(infos) = method(&pushed[0]) else {
        panic!()
    };
    assert_eq!(infos.len(), 3);
}

/// Sectors in `SubmitProveCommit` with a proof on disk.
fn proven(s: &Setup, count: usize) -> Vec<u64> {
    (0..count)
        .map(|_| {
            let r = sector_in(s, SectorState::SubmitProveCommit);
            s.chain
                .precommits
                .lock()
                .unwrap()
                .push(precommit(r.number, COMM_R, Some([2; 32])));
            let dir = s.p.scratch_path(r.number);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("commit2.bin"), [r.number as u8; 192]).unwrap();
            r.number
        })
        .collect()
}

#[tokio::test]
async fn a_prove_commit_batch_that_skips_a_sector_has_it_retried_alone() {
    let s = setup();
    *s.chain.head.lock().unwrap() = Some(40);
    let numbers = proven(&s, 2);
    assert!(s.p.tick().await.unwrap().is_empty());
    let pushed = s.chain.pushed();
    assert_eq!(pushed.len(), 1);
    let MinerMethod::ProveCommitSectors(batch) = method(&pushed[0]) else {
        panic!("{:?}", pushed[0].message.method)
    };
    let in_it: Vec<u64> = batch.iter().map(|b| b.sector_number).collect();
    assert_eq!(in_it, numbers);
    assert_eq!(batch[1].proofs, vec![vec![numbers[1] as u8; 192]]);
    // Executed, proving only the first: it moves on, the second fails and is retried alone.
    s.chain
        .receipts
        .lock()
        .unwrap()
        .insert(pushed[0].id(), receipt(0, ""));
    s.chain.sectors.lock().unwrap().push(sector(numbers[0]));
    let moved = s.p.tick().await.unwrap();
    assert_eq!(moved.len(), 2);
    let second = s.p.store().get(numbers[1]).unwrap().unwrap();
    assert_eq!(second.state(), SectorState::CommitFailed);
    assert!(
        second
            .progress
            .last_error
            .as_deref()
            .unwrap()
            .contains("alone"),
        "{second:?}"
    );
    let retried =
        s.p.store()
            .apply(
                second.number,
                second.version,
                &Event::Retry,
                u64::MAX,
                &RetryPolicy::default(),
            )
            .unwrap();
    assert_eq!(retried.state(), SectorState::SubmitProveCommit);
    // (The first sector moves on meanwhile: ProveCommitLanded → Finalize.)
    let moved = s.p.tick().await.unwrap();
    assert!(moved.iter().all(|t| t.number == numbers[0]), "{moved:?}");
    let pushed = s.chain.pushed();
    assert_eq!(pushed.len(), 2);
    assert!(matches!(
        method(&pushed[1]),
        MinerMethod::ProveCommitSector { sector_number, .. } if *sector_number == numbers[1]
    ));
}

#[tokio::test]
async fn a_refused_prove_commit_batch_keeps_every_proof_and_retries_each_alone() {
    let s = setup();
    *s.chain.head.lock().unwrap() = Some(40);
    let numbers = proven(&s, 2);
    assert!(s.p.tick().await.unwrap().is_empty());
    let id = s.chain.pushed()[0].id();
    s.chain.receipts.lock().unwrap().insert(
        id,
        receipt(21, "no sector of the batch was proven: PoRep rejected"),
    );
    let moved = s.p.tick().await.unwrap();
    assert_eq!(moved.len(), 2);
    for r in records(&s, &numbers) {
        assert_eq!(r.state(), SectorState::CommitFailed);
        assert!(r.chain.prove_commit.is_none());
        // Not known to be this sector's proof: kept, and the retry resends it alone.
        assert!(s.p.scratch_path(r.number).join("commit2.bin").exists());
        assert!(r.progress.last_error.as_deref().unwrap().contains("alone"));
    }
}
