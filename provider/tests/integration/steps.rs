//! The pipeline's chain steps one at a time, against a node whose answers the test sets: what
//! `SubmitPreCommit`, `SubmitProveCommit` and `WaitSeed` decide from the chain's pre-commits and
//! sectors and from a recorded message's receipt — done without sending, failed with the
//! receipt's error, waiting while pushing the same message again, a new message once the old one
//! is stale, failed for good when the pre-commit expired or the ticket is too old.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common::*;
use lode_chain::Policy;
use lode_chain::actors::miner::MinerMethod;
use lode_chain::message::Method;
use lode_proofs::sector::SectorSize;
use lode_provider::pipeline::runner::{OnChain, PipelineConfig, RESEND_AFTER, Step};
use lode_provider::pipeline::{
    Event, RetryPolicy, SectorChain, SectorKind, SectorRecord, SectorState, SentMessage,
};
use lode_provider::tasks::config::Reserve;
use lode_provider::tasks::{SchedulerConfig, TaskKind, TaskState};
use std::sync::atomic::Ordering;

#[tokio::test]
async fn a_pre_commit_already_on_chain_is_done_without_a_message() {
    let s = setup();
    let r = sector_in(&s, SectorState::SubmitPreCommit);
    s.chain
        .precommits
        .lock()
        .unwrap()
        .push(precommit(r.number, COMM_R, None));
    assert!(is_done(&s.p.step(&r, 25).await.unwrap()));
    // Already proven: done too.
    s.chain.precommits.lock().unwrap().clear();
    s.chain.sectors.lock().unwrap().push(sector(r.number));
    assert!(is_done(&s.p.step(&r, 25).await.unwrap()));
    assert!(s.chain.pushed().is_empty());
    // Another pre-commit under the same number: failed for good.
    s.chain.sectors.lock().unwrap().clear();
    s.chain
        .precommits
        .lock()
        .unwrap()
        .push(precommit(r.number, [9; 32], None));
    let (reason, retry) = failure(&s.p.step(&r, 25).await.unwrap());
    assert!(!retry && reason.contains("another pre-commit"), "{reason}");
    assert!(s.chain.pushed().is_empty());
}

#[tokio::test]
async fn a_pre_commit_is_recorded_before_it_is_pushed_and_pushed_again_while_pending() {
    let s = setup();
    let r = sector_in(&s, SectorState::SubmitPreCommit);
    let step = s.p.step(&r, 10).await.unwrap();
    assert!(matches!(step, Step::Wait(_)), "{step:?}");
    let pushed = s.chain.pushed();
    assert_eq!(pushed.len(), 1);
    let Method::Miner(MinerMethod::PreCommitSectors(infos)) = &pushed[0].message.method else {
        panic!("{:?}", pushed[0].message.method);
    };
    assert_eq!(infos.len(), 1);
    assert_eq!(
        (
            infos[0].sector_number,
            infos[0].comm_r,
            infos[0].seal_rand_epoch
        ),
        (r.number, COMM_R, 8)
    );
    let p = Policy::devnet();
    assert!(infos[0].expiration >= 11 + p.max_prove_commit_duration + p.min_sector_expiration);
    // Recorded, with the message that was pushed.
    let r = s.p.store().get(r.number).unwrap().unwrap();
    let sent = r.chain.pre_commit.clone().unwrap();
    assert_eq!((sent.id, sent.sent_at), (pushed[0].id(), 10));
    // Not executed yet: wait, pushing the same message again (no new one).
    let step = s.p.step(&r, 12).await.unwrap();
    assert!(matches!(step, Step::Wait(_)), "{step:?}");
    let again = s.chain.pushed();
    assert_eq!(again.len(), 2);
    assert_eq!(again[1], pushed[0]);
    // Executed: done.
    s.chain
        .receipts
        .lock()
        .unwrap()
        .insert(sent.id, receipt(0, ""));
    assert!(is_done(&s.p.step(&r, 13).await.unwrap()));
    assert_eq!(s.chain.pushed().len(), 2);
}

#[tokio::test]
async fn a_failed_pre_commit_fails_with_the_receipts_error_and_forgets_the_message() {
    let s = setup();
    let r = sector_in(&s, SectorState::SubmitPreCommit);
    let r = with_sent(&s, &r, true, [7; 32], 10);
    s.chain.receipts.lock().unwrap().insert(
        [7; 32],
        receipt(6, "pre-commit deposits need 5, but only 1 is available"),
    );
    let step = s.p.step(&r, 12).await.unwrap();
    let (reason, retry) = failure(&step);
    assert!(retry && reason.contains("only 1 is available"), "{reason}");
    let Step::Apply(_, Some(chain)) = step else {
        panic!("{step:?}")
    };
    assert!(chain.pre_commit.is_none(), "the retry sends a new message");
    assert!(s.chain.pushed().is_empty());
}

#[tokio::test]
async fn a_stale_message_is_replaced_only_while_the_chain_lacks_the_pre_commit() {
    let s = setup();
    let r = sector_in(&s, SectorState::SubmitPreCommit);
    let r = with_sent(&s, &r, true, [7; 32], 10);
    // Stale, but the pre-commit is on chain (the old message landed under another id view).
    s.chain
        .precommits
        .lock()
        .unwrap()
        .push(precommit(r.number, COMM_R, None));
    assert!(is_done(&s.p.step(&r, 10 + RESEND_AFTER).await.unwrap()));
    assert!(s.chain.pushed().is_empty());
    // Not on chain: a new message, recorded in place of the old one.
    s.chain.precommits.lock().unwrap().clear();
    let step = s.p.step(&r, 10 + RESEND_AFTER).await.unwrap();
    assert!(matches!(step, Step::Wait(_)), "{step:?}");
    let pushed = s.chain.pushed();
    assert_eq!(pushed.len(), 1);
    let sent =
        s.p.store()
            .get(r.number)
            .unwrap()
            .unwrap()
            .chain
            .pre_commit
            .unwrap();
    assert_eq!((sent.id, sent.sent_at), (pushed[0].id(), 10 + RESEND_AFTER));
}

#[tokio::test]
async fn a_ticket_too_old_fails_for_good() {
    let s = setup();
    let r = sector_in(&s, SectorState::SubmitPreCommit);
    let head = 8 + Policy::devnet().max_pre_commit_randomness_lookback;
    let (reason, retry) = failure(&s.p.step(&r, head).await.unwrap());
    assert!(!retry && reason.contains("too old"), "{reason}");
    assert!(s.chain.pushed().is_empty());
}

#[tokio::test]
async fn wait_seed_waits_for_the_seed_and_fails_when_the_pre_commit_is_gone() {
    let s = setup();
    let r = sector_in(&s, SectorState::WaitSeed);
    s.chain
        .precommits
        .lock()
        .unwrap()
        .push(precommit(r.number, COMM_R, None));
    assert!(matches!(s.p.step(&r, 30).await.unwrap(), Step::Wait(_)));
    // Past prove_by without a seed: expired.
    let (_, retry) = failure(&s.p.step(&r, 201).await.unwrap());
    assert!(!retry);
    // The seed, not deep enough yet (seed epoch 32, confidence 2): wait.
    s.chain.precommits.lock().unwrap()[0].seed = Some([5; 32]);
    assert!(matches!(s.p.step(&r, 33).await.unwrap(), Step::Wait(_)));
    // Deep enough: done, and recorded.
    let step = s.p.step(&r, 34).await.unwrap();
    let Step::Apply(Event::Done, Some(chain)) = step else {
        panic!("{step:?}")
    };
    assert_eq!(chain.seed, Some([5; 32]));
    // Gone from the chain: failed for good.
    s.chain.precommits.lock().unwrap().clear();
    let (reason, retry) = failure(&s.p.step(&r, 40).await.unwrap());
    assert!(!retry && reason.contains("no longer on chain"), "{reason}");
}

#[tokio::test]
async fn a_prove_commit_is_done_once_the_chain_has_the_sector() {
    let s = setup();
    let r = sector_in(&s, SectorState::SubmitProveCommit);
    // A recorded message that failed: failed with its error, retried with a new message.
    let r = with_sent(&s, &r, false, [8; 32], 40);
    s.chain
        .receipts
        .lock()
        .unwrap()
        .insert([8; 32], receipt(16, "sector 5: PoRep rejected"));
    let (reason, retry) = failure(&s.p.step(&r, 42).await.unwrap());
    assert!(retry && reason.contains("PoRep rejected"), "{reason}");
    // The sector on chain: done whatever the message says.
    s.chain.sectors.lock().unwrap().push(sector(r.number));
    assert!(is_done(&s.p.step(&r, 42).await.unwrap()));
    assert!(s.chain.pushed().is_empty());
}

/// A sector in `SubmitProveCommit` whose recorded prove-commit the chain executed with
/// `exit_code`, with Commit1 and Commit2 outputs on disk; returns it and its directory.
fn refused_prove_commit(s: &Setup, exit_code: u32) -> (SectorRecord, std::path::PathBuf) {
    let r = sector_in(s, SectorState::SubmitProveCommit);
    let r = with_sent(s, &r, false, [8; 32], 40);
    let dir = s.p.scratch_path(r.number);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["commit1.bin", "commit1.json", "commit2.bin", "pc2.json"] {
        std::fs::write(dir.join(f), b"x").unwrap();
    }
    s.chain.receipts.lock().unwrap().insert(
        [8; 32],
        receipt(exit_code, "sector 5: PoRep rejected: bad proof"),
    );
    (r, dir)
}

/// Applies `step` to `r` and returns the record: a failure at unix time 0 (so its retry is due
/// at once), anything else now.
fn apply(s: &Setup, r: &SectorRecord, step: Step) -> SectorRecord {
    let Step::Apply(event, chain) = step else {
        panic!("{step:?}")
    };
    let now = match event {
        Event::Failed { .. } => 0,
        _ => lode_node::genesis::unix_now(),
    };
    s.p.store()
        .update(
            r.number,
            r.version,
            Some(&event),
            chain.map(|c| *c),
            now,
            &RetryPolicy::default(),
        )
        .unwrap()
}

#[tokio::test]
async fn a_prove_commit_refused_as_an_invalid_proof_is_proven_again_from_commit1() {
    let s = setup();
    let (r, dir) = refused_prove_commit(&s, lode_chain::ExitCode::InvalidProof.value());
    let step = s.p.step(&r, 42).await.unwrap();
    let (reason, retry) = failure(&step);
    assert!(
        retry && reason.contains("computed again from Commit1"),
        "{reason}"
    );
    // The stale outputs are gone (the rest of the sector stays), and the message forgotten.
    for f in ["commit1.bin", "commit1.json", "commit2.bin"] {
        assert!(!dir.join(f).exists(), "{f} left behind");
    }
    assert!(dir.join("pc2.json").exists());
    let r = apply(&s, &r, step);
    assert_eq!(r.state(), SectorState::CommitFailed);
    assert!(r.chain.prove_commit.is_none());
    // Its retry goes back to Commit1 (the seed kept), not to a resend.
    let step = s.p.step(&r, 43).await.unwrap();
    assert_eq!(step, Step::Apply(Event::Redo, None));
    let r = apply(&s, &r, step);
    assert_eq!(r.state(), SectorState::Commit1);
    assert_eq!(r.chain.seed, Some([2; 32]));
    assert!(s.chain.pushed().is_empty());
}

#[tokio::test]
async fn other_prove_commit_refusals_resend_the_same_proof() {
    for code in [
        lode_chain::ExitCode::SysOutOfGas.value(),
        lode_chain::ExitCode::InsufficientFunds.value(),
    ] {
        let s = setup();
        let (r, dir) = refused_prove_commit(&s, code);
        let step = s.p.step(&r, 42).await.unwrap();
        let (reason, retry) = failure(&step);
        assert!(retry && !reason.contains("computed again"), "{reason}");
        assert!(dir.join("commit2.bin").exists() && dir.join("commit1.json").exists());
        let r = apply(&s, &r, step);
        assert_eq!(r.state(), SectorState::CommitFailed);
        let step = s.p.step(&r, 43).await.unwrap();
        assert_eq!(step, Step::Apply(Event::Retry, None), "exit code {code}");
        assert_eq!(apply(&s, &r, step).state(), SectorState::SubmitProveCommit);
    }
}

#[tokio::test]
async fn a_termination_is_sent_once_recorded_followed_and_done_when_the_sector_is_gone() {
    let s = setup();
    let r = sector_in(&s, SectorState::Proving);
    let r =
        s.p.store()
            .apply(
                r.number,
                r.version,
                &Event::Terminate,
                0,
                &RetryPolicy::default(),
            )
            .unwrap();
    assert_eq!(r.state(), SectorState::Terminating);
    let mut on_chain = sector(r.number);
    on_chain.deadline = 2;
    on_chain.partition = 1;
    s.chain.sectors.lock().unwrap().push(on_chain);
    // Its deadline opens too soon (a challenge window and the landing margin): wait, nothing sent.
    let window = Policy::devnet().wpost_challenge_window;
    *s.chain.deadlines.lock().unwrap() = vec![lode_node::core::DeadlineView {
        index: 2,
        open: 50 + window + 3,
        close: 50 + 2 * window,
        challenge: 40,
        fault_cutoff: 45,
        randomness: None,
        posted: Vec::new(),
        partitions: Vec::new(),
    }];
    let step = s.p.step(&r, 50).await.unwrap();
    assert!(
        matches!(&step, Step::Wait(w) if w.contains("deadline 2")),
        "{step:?}"
    );
    assert!(s.chain.pushed().is_empty());
    // One epoch earlier it is far enough: sent, recorded before the push.
    let step = s.p.step(&r, 49).await.unwrap();
    assert!(matches!(step, Step::Wait(_)), "{step:?}");
    let pushed = s.chain.pushed();
    assert_eq!(pushed.len(), 1);
    let Method::Miner(MinerMethod::TerminateSectors(locs)) = &pushed[0].message.method else {
        panic!("{:?}", pushed[0].message.method);
    };
    assert_eq!(locs.len(), 1);
    assert_eq!((locs[0].deadline, locs[0].partition), (2, 1));
    assert_eq!(
        locs[0].sectors.iter().copied().collect::<Vec<_>>(),
        vec![r.number]
    );
    let r = s.p.store().get(r.number).unwrap().unwrap();
    let sent = r.chain.terminate.clone().unwrap();
    assert_eq!(sent.id, pushed[0].id());
    // Pending: the same message pushed again, nothing new signed.
    assert!(matches!(s.p.step(&r, 50).await.unwrap(), Step::Wait(_)));
    assert_eq!(s.chain.pushed(), vec![pushed[0].clone(), pushed[0].clone()]);
    // Refused: forgotten (the state stays Terminating, no failure state), a new one next time.
    s.chain
        .receipts
        .lock()
        .unwrap()
        .insert(sent.id, receipt(18, "deadline 2 is open or about to open"));
    let step = s.p.step(&r, 51).await.unwrap();
    assert!(
        matches!(&step, Step::Wait(w) if w.contains("refused")),
        "{step:?}"
    );
    let r = s.p.store().get(r.number).unwrap().unwrap();
    assert_eq!(
        (r.state(), r.chain.terminate.clone()),
        (SectorState::Terminating, None)
    );
    s.chain.deadlines.lock().unwrap().clear();
    assert!(matches!(s.p.step(&r, 52).await.unwrap(), Step::Wait(_)));
    assert_eq!(s.chain.pushed().len(), 3);
    let r = s.p.store().get(r.number).unwrap().unwrap();
    let second = r.chain.terminate.clone().unwrap();
    assert_ne!(second.id, sent.id);
    // Executed: done.
    s.chain
        .receipts
        .lock()
        .unwrap()
        .insert(second.id, receipt(0, ""));
    assert!(is_done(&s.p.step(&r, 53).await.unwrap()));
    // The sector no longer on chain: done without looking at any message.
    s.chain.sectors.lock().unwrap().clear();
    s.chain.receipts.lock().unwrap().clear();
    assert!(is_done(&s.p.step(&r, 54).await.unwrap()));
    assert_eq!(s.chain.pushed().len(), 3);
}

#[tokio::test]
async fn a_failure_state_is_retried_once_its_back_off_passed() {
    let s = setup();
    let r = sector_in(&s, SectorState::SubmitPreCommit);
    let store = s.p.store();
    let failed = store
        .apply(
            r.number,
            r.version,
            &Event::Failed {
                reason: "x".into(),
                retry: true,
            },
            0,
            &RetryPolicy::default(),
        )
        .unwrap();
    assert_eq!(failed.state(), SectorState::PreCommitFailed);
    // Failed at unix time 0 with a 10 s back-off: due long ago.
    assert_eq!(
        s.p.step(&failed, 50).await.unwrap(),
        Step::Apply(Event::Retry, None)
    );
    let later = store
        .apply(
            failed.number,
            failed.version,
            &Event::Retry,
            lode_node::genesis::unix_now(),
            &RetryPolicy::default(),
        )
        .unwrap();
    let again = store
        .apply(
            later.number,
            later.version,
            &Event::Failed {
                reason: "y".into(),
                retry: true,
            },
            lode_node::genesis::unix_now(),
            &RetryPolicy::default(),
        )
        .unwrap();
    assert!(matches!(s.p.step(&again, 50).await.unwrap(), Step::Wait(_)));
}

#[tokio::test]
async fn the_seal_ticket_is_recorded_before_pre_commit1_and_redrawn_when_too_old() {
    let s = setup();
    let store = s.p.store();
    let mut r = store.create(SectorKind::CommittedCapacity, 5, 0).unwrap();
    while r.state() != SectorState::PreCommit1 {
        r = store
            .apply(
                r.number,
                r.version,
                &Event::Done,
                0,
                &RetryPolicy::default(),
            )
            .unwrap();
    }
    let step = s.p.step(&r, 50).await.unwrap();
    assert!(matches!(step, Step::Wait(_)), "{step:?}");
    let r = store.get(r.number).unwrap().unwrap();
    assert_eq!(r.state(), SectorState::PreCommit1);
    assert_eq!(
        (r.chain.seal_rand_epoch, r.chain.ticket),
        (Some(48), Some([1; 32]))
    );
    // Half the lookback later the ticket is redrawn (not sealed with).
    let later = 48 + Policy::devnet().max_pre_commit_randomness_lookback / 2;
    let step = s.p.step(&r, later).await.unwrap();
    assert!(matches!(step, Step::Wait(_)), "{step:?}");
    let r = store.get(r.number).unwrap().unwrap();
    assert_eq!(r.chain.seal_rand_epoch, Some(later - 2));
}

#[test]
fn the_default_ticket_leaves_time_to_seal_before_the_lookback() {
    for policy in [Policy::devnet(), Policy::mainnet()] {
        let c = PipelineConfig::new(
            MINER,
            SectorSize::S2KiB,
            "s".into(),
            "t".into(),
            "c".into(),
            &policy,
        );
        // PreCommit1 keeps a ticket up to half the lookback old: the default one is younger.
        assert!(c.ticket_depth < policy.max_pre_commit_randomness_lookback / 2);
        assert!(c.expiration_margin >= RESEND_AFTER);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_sectors_seal_at_once_oldest_first_within_the_limits() {
    let mut tasks = SchedulerConfig {
        cores: Some(4),
        post_reserve: Some(Reserve {
            cores: 1,
            ..Reserve::default()
        }),
        ..SchedulerConfig::default()
    };
    tasks.limits.set(TaskKind::PreCommit1, Some(2));
    let s = setup_with(RetryPolicy::default(), Some(tasks));
    *s.chain.head.lock().unwrap() = Some(50);
    let store = s.p.store();
    let sectors: Vec<u64> = plain_sectors(&s, 3, SectorState::PreCommit1)
        .iter()
        .map(|r| r.number)
        .collect();
    // The first tick draws each sector's ticket (inline: a chain step).
    assert!(s.p.tick().await.unwrap().is_empty());
    assert!(s.p.scheduler().list().unwrap().is_empty());
    // The next one queues a PreCommit1 per sector and starts two (the limit), the oldest.
    assert!(s.p.tick().await.unwrap().is_empty());
    let views = s.p.scheduler().list().unwrap();
    let by_state = |st: TaskState| -> Vec<u64> {
        views
            .iter()
            .filter(|v| v.state == st)
            .map(|v| v.sector.unwrap())
            .collect()
    };
    assert_eq!(by_state(TaskState::Running), sectors[..2].to_vec());
    assert_eq!(by_state(TaskState::Queued), sectors[2..].to_vec());
    let moved = s.p.wait_tasks().await;
    let mut numbers: Vec<u64> = moved.iter().map(|t| t.number).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, sectors[..2].to_vec());
    assert!(
        moved
            .iter()
            .all(|t| (t.from, t.to) == (SectorState::PreCommit1, SectorState::PreCommit2))
    );
    // Next, by sector number: the oldest sector's PreCommit2 (four cores, clamped to the three
    // of sealing) takes the whole sealing share; the third sector's PreCommit1 waits for it.
    assert!(s.p.tick().await.unwrap().is_empty());
    let moved = s.p.wait_tasks().await;
    assert_eq!(moved.len(), 1);
    assert_eq!(
        (moved[0].number, moved[0].from),
        (sectors[0], SectorState::PreCommit2)
    );
    for _ in 0..4 {
        s.p.tick().await.unwrap();
        s.p.wait_tasks().await;
    }
    for n in &sectors {
        let r = store.get(*n).unwrap().unwrap();
        assert!(
            r.chain.comm_d.is_some() && r.chain.comm_r.is_some(),
            "{r:?}"
        );
    }
    let views = s.p.scheduler().list().unwrap();
    let pc1: Vec<_> = views
        .iter()
        .filter(|v| v.kind == TaskKind::PreCommit1)
        .collect();
    assert_eq!(pc1.len(), 3);
    assert!(views.iter().all(|v| v.state == TaskState::Done));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phase_out_of_retries_fails_its_task_and_its_sector_together() {
    let retry = RetryPolicy {
        max_retries: 1,
        base_seconds: 0,
        max_seconds: 0,
    };
    let s = setup_with(retry, None);
    *s.chain.head.lock().unwrap() = Some(50);
    // Finalize of a sector whose directory is not there: it fails every time.
    let n = plain_sectors(&s, 1, SectorState::Finalize)[0].number;
    let mut seen = Vec::new();
    for _ in 0..6 {
        let mut moved = s.p.tick().await.unwrap();
        moved.extend(s.p.wait_tasks().await);
        seen.extend(moved.iter().map(|t| t.to));
    }
    use SectorState::*;
    assert_eq!(
        seen,
        vec![FinalizeFailed, Finalize, FailedUnrecoverable],
        "one failure retried, the second out of retries"
    );
    let r = s.p.store().get(n).unwrap().unwrap();
    let reason = r.progress.last_error.clone().unwrap();
    let views = s.p.scheduler().list().unwrap();
    assert_eq!(views.len(), 2);
    for v in &views {
        assert_eq!(
            (v.kind, v.state, v.sector),
            (TaskKind::Finalize, TaskState::Failed, Some(n))
        );
        assert_eq!(v.error.as_deref(), Some(reason.as_str()));
    }
    // Nothing more is queued for it.
    assert!(s.p.tick().await.unwrap().is_empty());
    assert_eq!(s.p.scheduler().counts().unwrap(), (0, 0));
}

/// `r` (on chain) terminated: `Terminate` then `Done`, with `sent` recorded as its termination.
fn terminated(s: &Setup, r: &SectorRecord, sent: Option<SentMessage>) -> SectorRecord {
    let store = s.p.store();
    let policy = RetryPolicy::default();
    let r = store
        .apply(r.number, r.version, &Event::Terminate, 0, &policy)
        .unwrap();
    let chain = SectorChain {
        terminate: sent,
        ..r.chain.clone()
    };
    let r = store.record_chain(r.number, r.version, chain, 0).unwrap();
    let r = store
        .apply(r.number, r.version, &Event::Done, 0, &policy)
        .unwrap();
    assert_eq!(r.state(), SectorState::Terminated);
    r
}

#[tokio::test]
async fn a_terminated_sectors_files_are_deleted_once_the_chain_cannot_bring_it_back() {
    let s = setup();
    let finality = Policy::devnet().chain_finality;
    let files = |n: u64| {
        for dir in [s.p.scratch_path(n), s.p.store_path(n)] {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("sealed"), b"replica").unwrap();
        }
    };
    let kept = |n: u64| s.p.store_path(n).join("sealed").is_file() && s.p.scratch_path(n).is_dir();
    let gone = |n: u64| !s.p.store_path(n).exists() && !s.p.scratch_path(n).exists();

    // Ended by its own message, executed at epoch 21 (`receipt`): the files stay until the
    // chain is final past it.
    let a = sector_in(&s, SectorState::Proving);
    files(a.number);
    let sent = SentMessage {
        id: [9; 32],
        sent_at: 20,
        signed: Vec::new(),
    };
    let a = terminated(&s, &a, Some(sent.clone()));
    // Not found on chain yet: kept.
    assert!(
        !s.p.drop_terminated(&a, 500, &mut OnChain::default())
            .await
            .unwrap()
    );
    assert!(kept(a.number));
    s.chain
        .receipts
        .lock()
        .unwrap()
        .insert(sent.id, receipt(0, ""));
    assert!(
        !s.p.drop_terminated(&a, 21 + finality - 1, &mut OnChain::default())
            .await
            .unwrap()
    );
    assert!(kept(a.number));
    assert!(
        s.p.drop_terminated(&a, 21 + finality, &mut OnChain::default())
            .await
            .unwrap()
    );
    assert!(gone(a.number));

    // Gone from the chain without a message of ours (it expired): its files stay while the
    // chain still lists it, then go (the sector became Terminated long enough ago).
    let b = sector_in(&s, SectorState::Proving);
    files(b.number);
    let b = terminated(&s, &b, None);
    s.chain.sectors.lock().unwrap().push(sector(b.number));
    assert!(
        !s.p.drop_terminated(&b, 30, &mut OnChain::default())
            .await
            .unwrap()
    );
    assert!(kept(b.number));
    // One tick asks the node for the miner's sectors once, however many sectors it looks at.
    let asked = s.chain.sector_queries.load(Ordering::Relaxed);
    let mut tick = OnChain::default();
    for _ in 0..3 {
        assert!(!s.p.drop_terminated(&b, 30, &mut tick).await.unwrap());
    }
    assert_eq!(s.chain.sector_queries.load(Ordering::Relaxed), asked + 1);
    s.chain.sectors.lock().unwrap().clear();
    // The pipeline's tick does it.
    *s.chain.head.lock().unwrap() = Some(31);
    s.p.tick().await.unwrap();
    assert!(gone(b.number));
    // A sector terminated just now waits that many epochs' time.
    let c = sector_in(&s, SectorState::Proving);
    files(c.number);
    let store = s.p.store();
    let policy = RetryPolicy::default();
    let now = lode_node::genesis::unix_now();
    let c = store
        .apply(c.number, c.version, &Event::Terminate, now, &policy)
        .unwrap();
    let c = store
        .apply(c.number, c.version, &Event::Done, now, &policy)
        .unwrap();
    assert!(
        !s.p.drop_terminated(&c, 31, &mut OnChain::default())
            .await
            .unwrap()
    );
    assert!(kept(c.number));
}
