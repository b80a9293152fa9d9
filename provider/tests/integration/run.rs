//! The sealing pipeline against a real in-process node: a committed-capacity 2 KiB sector sealed
//! for real (PreCommit1/2, Commit1, Commit2 with the insecure test parameters), pre-committed and
//! prove-committed through the node's mempool into blocks this test mines (the chain checks the
//! PoRep with the real verifier; blocks and Window PoSts use the test's fake proofs), until the
//! pipeline reports `Proving` and the chain lists the sector. Then the same with the pipeline
//! dropped and rebuilt from its store after every step, a push lost after its message was recorded
//! (a crash between the two), a push that reached the node but reported a failure, and a record
//! that lost its message id: exactly one pre-commit and one prove-commit reach the node, one
//! deposit is locked and then released, and the sector still reaches `Proving`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::Duration;

use lode_chain::actors::miner::MinerMethod;
use lode_node::genesis::unix_now;
use lode_provider::NodeApi;
use lode_provider::pipeline::runner::run_pipeline;
use lode_provider::pipeline::{SectorChain, SectorState};

use crate::common::*;

fn is_pre_commit(m: &MinerMethod) -> bool {
    matches!(m, MinerMethod::PreCommitSectors(_))
}

fn is_prove_commit(m: &MinerMethod) -> bool {
    matches!(m, MinerMethod::ProveCommitSector { .. })
}

/// One sector from pledge to `Proving`, through every working state, in one pipeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pledged_sector_goes_through_every_state_to_proving() {
    bounded(async {
        let w = world().await;
        for _ in 0..3 {
            w.mine().await;
        }
        let db = w.root.join("pipeline");
        let p = w.pipeline(&db);
        let r = p.pledge().await.unwrap();
        assert_eq!(r.number, 4, "above the genesis sectors");
        let mut seen = vec![SectorState::WaitDeals];
        for _ in 0..400 {
            // The sealing phases run as background tasks: a step is a tick and the phases
            // it started.
            let mut moved = p.tick().await.unwrap();
            moved.extend(p.wait_tasks().await);
            for t in &moved {
                assert_eq!(t.number, r.number);
                assert_eq!(Some(t.to), t.from.next(), "no failure: {t:?}");
                seen.push(t.to);
            }
            if p.store().get(r.number).unwrap().unwrap().state() == SectorState::Proving {
                break;
            }
            if moved.is_empty() {
                w.mine().await;
            }
        }
        let rec = p.store().get(r.number).unwrap().unwrap();
        assert_eq!(rec.state(), SectorState::Proving, "{rec:?}");
        use SectorState::*;
        assert_eq!(
            seen,
            vec![
                WaitDeals,
                Packing,
                PreCommit1,
                PreCommit2,
                SubmitPreCommit,
                PreCommitLanded,
                WaitSeed,
                Commit1,
                Commit2,
                SubmitProveCommit,
                ProveCommitLanded,
                Finalize,
                Proving
            ]
        );
        let c = &rec.chain;
        assert!(c.seal_rand_epoch.is_some() && c.comm_r.is_some() && c.seed.is_some());
        assert!(c.pre_commit.is_some() && c.prove_commit.is_some());
        assert_eq!(w.node.forwarded_ids(is_pre_commit).len(), 1);
        assert_eq!(w.node.forwarded_ids(is_prove_commit).len(), 1);
        w.check_proving(r.number).await;
        // The sector the chain lists carries the comm_r the pipeline sealed.
        let on_chain = NodeApi::miner_sectors(&w.node.svc, w.miner).await.unwrap();
        let s = on_chain
            .iter()
            .find(|s| s.sector_number == r.number)
            .unwrap();
        assert_eq!(Some(s.comm_r), c.comm_r);
        // Nothing more to do.
        assert!(p.tick().await.unwrap().is_empty());
        // Every sealing phase ran as a scheduled task, once, and finished.
        use lode_provider::tasks::{TaskKind, TaskState};
        let tasks = p.scheduler().list().unwrap();
        let kinds: Vec<TaskKind> = tasks.iter().map(|t| t.kind).collect();
        assert_eq!(
            kinds,
            vec![
                TaskKind::PreCommit1,
                TaskKind::PreCommit2,
                TaskKind::Commit1,
                TaskKind::Commit2,
                TaskKind::Finalize
            ]
        );
        assert!(
            tasks.iter().all(|t| t.state == TaskState::Done
                && t.sector == Some(r.number)
                && t.attempts == 1),
            "{tasks:?}"
        );
    })
    .await;
}

/// The pipeline dropped and rebuilt from its store after every step, with crashes around the
/// pushes: one pre-commit, one deposit, one prove-commit, and the sector still reaches `Proving`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_at_every_step_send_each_message_once() {
    bounded(async {
        let w = world().await;
        for _ in 0..3 {
            w.mine().await;
        }
        let db = w.root.join("pipeline");
        let n = w.pipeline(&db).pledge().await.unwrap().number;
        let mut lost_pre_commit = false;
        let mut forgot_pre_commit = false;
        let mut failed_prove_commit = false;
        let mut deposit_seen = false;
        for _ in 0..600 {
            // A fresh daemon every step.
            let p = w.pipeline(&db);
            let rec = p.store().get(n).unwrap().unwrap();
            let mut crashed = false;
            match rec.state() {
                SectorState::Proving => break,
                SectorState::SubmitPreCommit if !lost_pre_commit => {
                    // Recorded, then the process dies before the push.
                    lost_pre_commit = true;
                    crashed = true;
                    w.node.set_fault(PushFault::Lose);
                }
                SectorState::SubmitProveCommit if !failed_prove_commit => {
                    // The node takes it as the process dies.
                    failed_prove_commit = true;
                    crashed = true;
                    w.node.set_fault(PushFault::ForwardThenFail);
                }
                _ => {}
            }
            let mut moved = p.tick().await.unwrap();
            // The phases the tick started finish before the daemon "restarts".
            moved.extend(p.wait_tasks().await);
            for t in &moved {
                assert!(
                    t.from.next() == Some(t.to),
                    "no failure on the way: {t:?} ({:?})",
                    p.store().get(n).unwrap().unwrap().progress
                );
            }
            drop(p);
            // Mine unless the process just "died" around a push: the restarted daemon pushes
            // the recorded message again before anything else takes its nonce.
            if moved.is_empty() && !crashed {
                w.mine().await;
            }
            let pre = NodeApi::miner_precommits(&w.node.svc, w.miner)
                .await
                .unwrap();
            if let Some(v) = pre.iter().find(|v| v.sector_number == n) {
                // Exactly one deposit locked while the pre-commit waits.
                assert_eq!(w.pre_commit_deposits().await, v.deposit);
                deposit_seen = true;
                if !forgot_pre_commit {
                    // A record without the message id (written by a daemon that died before
                    // recording it, in an older version): the chain's pre-commit is enough.
                    let s = open_store(&db);
                    let r = s.get(n).unwrap().unwrap();
                    if r.state() == SectorState::SubmitPreCommit {
                        forgot_pre_commit = true;
                        let chain = SectorChain {
                            pre_commit: None,
                            ..r.chain.clone()
                        };
                        s.record_chain(n, r.version, chain, unix_now()).unwrap();
                    }
                }
            }
        }
        let rec = open_store(&db).get(n).unwrap().unwrap();
        assert_eq!(rec.state(), SectorState::Proving, "{rec:?}");
        assert!(lost_pre_commit && failed_prove_commit && forgot_pre_commit && deposit_seen);
        assert_eq!(
            w.node.forwarded_ids(is_pre_commit).len(),
            1,
            "one pre-commit message reached the node"
        );
        assert_eq!(
            w.node.forwarded_ids(is_prove_commit).len(),
            1,
            "one prove-commit message reached the node"
        );
        w.check_proving(n).await;
    })
    .await;
}

/// `run_pipeline` on the network's clock, while blocks come: the sector reaches `Proving`, and
/// the loop ends when told to stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_pipeline_seals_a_sector_on_the_clock_and_stops() {
    bounded(async {
        let w = world().await;
        for _ in 0..3 {
            w.mine().await;
        }
        let db = w.root.join("pipeline");
        let p = Arc::new(w.pipeline(&db));
        let n = p.pledge().await.unwrap().number;
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let running = tokio::spawn(run_pipeline(p.clone(), stop_rx));
        let started = std::time::Instant::now();
        while p.store().get(n).unwrap().unwrap().state() != SectorState::Proving {
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "{:?}",
                p.store().get(n).unwrap()
            );
            w.mine().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(60), running)
            .await
            .expect("the loop stops when told")
            .unwrap()
            .unwrap();
        w.check_proving(n).await;
    })
    .await;
}

/// Sectors whose PreCommit1 tasks are admitted together are labelled as one batch, and go on
/// from there as they would alone: PreCommit2 on each gives a commitment, and the chain takes
/// their pre-commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_commit1_tasks_admitted_together_run_as_one_batch() {
    bounded(async {
        let w = world().await;
        for _ in 0..3 {
            w.mine().await;
        }
        let p = w.pipeline(&w.root.join("pipeline"));
        let mut numbers = Vec::new();
        for _ in 0..3 {
            numbers.push(p.pledge().await.unwrap().number);
        }
        let past_pc2 = |p: &lode_provider::pipeline::runner::Pipeline<_>| {
            numbers
                .iter()
                .all(|&n| p.store().get(n).unwrap().unwrap().chain.comm_r.is_some())
        };
        for _ in 0..200 {
            let mut moved = p.tick().await.unwrap();
            moved.extend(p.wait_tasks().await);
            for t in &moved {
                assert_eq!(Some(t.to), t.from.next(), "no failure: {t:?}");
            }
            if past_pc2(&p) {
                break;
            }
            if moved.is_empty() {
                w.mine().await;
            }
        }
        assert!(past_pc2(&p), "every sector through PreCommit2");
        let (batches, sectors) = p.pre_commit1_batches();
        assert!(
            batches >= 1 && sectors >= 2,
            "{batches} batches of {sectors} sectors"
        );
        for &n in &numbers {
            let rec = p.store().get(n).unwrap().unwrap();
            assert!(
                rec.chain.comm_d.is_some() && rec.chain.comm_r.is_some(),
                "{rec:?}"
            );
        }
    })
    .await;
}

/// The same with the pipeline's device (OpenCL: PoCL in CI): the batch labelled and PreCommit2's
/// columns and trees hashed there, and the chain takes the sectors' real PoRep proofs, which
/// open those trees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sectors_sealed_on_a_device_are_proven_on_chain() {
    let gpu = match lode_sealing::accel::open(lode_sealing::accel::GpuChoice::OpenCl) {
        Ok(Some(g)) => std::sync::Arc::new(g),
        r if std::env::var_os("LODE_REQUIRE_OPENCL").is_some() => {
            panic!("LODE_REQUIRE_OPENCL is set but there is no OpenCL device: {r:?}")
        }
        r => return eprintln!("skipped: no OpenCL device: {r:?}"),
    };
    bounded(async {
        let w = world().await;
        for _ in 0..3 {
            w.mine().await;
        }
        // Commit2 stays on the CPU: on PoCL its G1 sums take 25 s a sector (the device's proofs
        // are compared with the CPU's in `lode-sealing`'s tests).
        let p = w
            .pipeline(&w.root.join("pipeline"))
            .with_gpu(Some(gpu))
            .with_prover_device(None);
        let numbers = [
            p.pledge().await.unwrap().number,
            p.pledge().await.unwrap().number,
        ];
        let proving = |p: &lode_provider::pipeline::runner::Pipeline<_>| {
            numbers
                .iter()
                .all(|&n| p.store().get(n).unwrap().unwrap().state() == SectorState::Proving)
        };
        for _ in 0..400 {
            let mut moved = p.tick().await.unwrap();
            moved.extend(p.wait_tasks().await);
            for t in &moved {
                assert_eq!(Some(t.to), t.from.next(), "no failure: {t:?}");
            }
            if proving(&p) {
                break;
            }
            if moved.is_empty() {
                w.mine().await;
            }
        }
        assert!(proving(&p), "both sectors proving");
        assert_eq!(p.pre_commit1_batches(), (1, 2));
    })
    .await;
}
