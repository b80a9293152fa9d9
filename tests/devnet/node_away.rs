//! A provider whose node goes away and comes back, on a real devnet (two nodes, two miners, each
//! miner on its own node): a sector is pledged on the miner of node 1; once its PreCommit1 runs,
//! node 1 is killed with SIGKILL. While it is gone:
//!
//! - the provider process keeps running and its own API keeps answering;
//! - the sealing phases go on without the chain: the sector reaches `SubmitPreCommit` and waits
//!   there, with no failure recorded (a node away is not the sector's fault, and must not spend its
//!   retries);
//! - the other miner keeps making blocks through node 0.
//!
//! Node 1 is started again and catches up; the sector is pre-committed, proven and reaches
//! `Proving` without ever entering a failure state, and the miner's power ends at its genesis
//! sectors' and the new sector's (the genesis sectors missed their Window PoSts while the node was
//! away: the provider declares them recovered once it can). Timings are printed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::time::{Duration, Instant};

use lode_chain::types::ActorId;
use lode_proofs::sector::SectorSize;
use lode_provider::pipeline::SectorState;
use lode_provider::rpc::client::ProviderClient;
use lode_provider::rpc::types::PipelineSector;

use crate::common::{
    Devnet, Reaped, Role, alive, devnet_json, kill_9, lode, node_client, ok, params_dir,
    provider_client, restart,
};

/// The sector's pipeline view (`None` while the provider does not answer).
async fn sector(p: &ProviderClient, n: u64) -> Option<PipelineSector> {
    p.sector_status(n).await.ok()?.pipeline
}

/// Panics when `s` ever failed.
fn never_failed(s: &PipelineSector) {
    assert_eq!(s.failures, 0, "{s:?}");
    assert!(
        s.history
            .iter()
            .all(|h| !h.to.is_retryable_failure() && h.to != SectorState::FailedUnrecoverable),
        "a failure state was entered: {:?}",
        s.history
    );
}

#[test]
#[ignore = "a multi-process devnet with real proofs: minutes"]
fn sealing_goes_on_while_the_node_is_away_and_the_sector_lands_when_it_is_back() {
    let _one = crate::one_at_a_time();
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let d = dir.to_str().unwrap().to_string();
    let params = params_dir();
    let out = lode(&[
        "devnet",
        "--dir",
        &d,
        "--detach",
        "--json",
        "--nodes",
        "2",
        "--miners",
        "2",
        // Two miners proving Winning PoSts on 2 cores (see tests/devnet/basic.rs).
        "--epoch-seconds",
        &crate::common::epoch_seconds(2).to_string(),
        "--period-deadlines",
        "8",
        "--params-dir",
        params.to_str().unwrap(),
    ]);
    let _guard = Devnet(dir.clone());
    let j = ok(&out);
    // The miner on node 1.
    let (mi, m) = j["miners"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .find(|(_, m)| m["node"] == 1)
        .expect("a miner on node 1");
    let miner = ActorId(m["actor"].as_str().unwrap()[2..].parse().unwrap());
    let miner_dir = dir.join(m["dir"].as_str().unwrap());
    let provider_pid = m["pid"].as_u64().unwrap() as u32;
    let p = provider_client(&dir, mi, Duration::from_secs(10));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b) = (node_client(&dir, 0), node_client(&dir, 1));

    // The chain runs and the miner has its genesis power.
    let genesis_power = rt.block_on(async {
        let start = Instant::now();
        loop {
            if let Ok(pw) = b.state_miner_power(miner).await
                && pw.power.raw > 0
            {
                break pw.power.raw;
            }
            assert!(start.elapsed() < Duration::from_secs(180), "no power");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    eprintln!(
        "devnet up at {:.0?}, miner {mi} ({miner}) has {genesis_power} bytes",
        t0.elapsed()
    );

    let pledged = ok(&lode(&[
        "sectors",
        "pledge",
        "--dir",
        miner_dir.to_str().unwrap(),
        "--json",
    ]));
    let n = pledged["sectors"][0].as_u64().unwrap();

    // Its PreCommit1 runs (the ticket is drawn from the chain): the node goes away.
    rt.block_on(async {
        let start = Instant::now();
        loop {
            if let Some(s) = sector(&p, n).await
                && s.ticket_epoch.is_some()
            {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(120), "no PreCommit1");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let node_pid = devnet_json(&dir)["nodes"][1]["pid"].as_u64().unwrap() as u32;
    kill_9(node_pid, None);
    let away = Instant::now();
    eprintln!("node 1 killed at {:.0?}", t0.elapsed());

    // Sealing goes on without it, to the pre-commit, which waits.
    let waiting = rt.block_on(async {
        loop {
            if let Some(s) = sector(&p, n).await
                && s.state == SectorState::SubmitPreCommit
            {
                break s;
            }
            assert!(
                away.elapsed() < Duration::from_secs(120),
                "the sector did not reach SubmitPreCommit without the node: {:?}",
                sector(&p, n).await
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    eprintln!(
        "sealed to SubmitPreCommit {:.1?} after the node went away",
        away.elapsed()
    );
    never_failed(&waiting);
    assert!(waiting.pre_commit.is_none(), "{waiting:?}");
    // A few more epochs without the node: still waiting, nothing failed, the provider runs, and
    // the other side of the network makes blocks.
    let h0 = rt.block_on(a.chain_head()).unwrap().epoch;
    std::thread::sleep(Duration::from_secs(10));
    let s = rt
        .block_on(sector(&p, n))
        .expect("the provider's API answers");
    assert_eq!(s.state, SectorState::SubmitPreCommit, "{s:?}");
    never_failed(&s);
    assert!(alive(provider_pid), "the provider exited with its node");
    // Node 0's head moves on. An epoch may be null (its miner lost the election, or its first
    // Winning PoSt loaded the parameters past the epoch's end), so this waits for a block with a
    // bound of many epochs rather than sampling the head once.
    let on = Instant::now();
    let h1 = rt.block_on(async {
        loop {
            let h = a.chain_head().await.unwrap().epoch;
            if h > h0 {
                break h;
            }
            assert!(
                on.elapsed() < Duration::from_secs(90),
                "node 0 made no block after epoch {h0} in {:.0?} while node 1 was away",
                away.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    eprintln!(
        "node 0 went on from epoch {h0} to {h1} ({:.1?} after the node went away)",
        away.elapsed()
    );
    let s = rt
        .block_on(sector(&p, n))
        .expect("the provider's API answers");
    assert_eq!(s.state, SectorState::SubmitPreCommit, "{s:?}");
    never_failed(&s);

    // The node comes back.
    let _node = Reaped(restart(&dir, Role::Node(1)));
    eprintln!(
        "node 1 restarted after {:.0?} away, at {:.0?}",
        away.elapsed(),
        t0.elapsed()
    );
    let back = Instant::now();
    let done = rt.block_on(async {
        loop {
            if let Some(s) = sector(&p, n).await {
                never_failed(&s);
                if s.state == SectorState::Proving {
                    break s;
                }
            }
            assert!(
                back.elapsed() < Duration::from_secs(600),
                "the sector did not reach Proving: {:?}",
                sector(&p, n).await
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    eprintln!("Proving {:.0?} after the node came back", back.elapsed());
    assert!(
        done.pre_commit.is_some() && done.prove_commit.is_some(),
        "{done:?}"
    );
    assert!(alive(provider_pid), "the provider is the one that started");

    // Its power: the genesis sectors (recovered) and the new one.
    let want = genesis_power + u128::from(SectorSize::S2KiB.bytes());
    rt.block_on(async {
        let start = Instant::now();
        loop {
            let got = b.state_miner_power(miner).await.ok().map(|pw| pw.power.raw);
            if got == Some(want) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "power {got:?}, want {want} (genesis {genesis_power} and one sector)"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    eprintln!("power {want} at {:.0?}", t0.elapsed());
}
