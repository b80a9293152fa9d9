//! The fault and recovery cycle on a real devnet: one node and one provider process, real
//! Window and Winning PoSt over two 2 KiB sectors, 1-second epochs and a short proving period
//! (8 deadlines of 5 epochs). One sector's replica is corrupted on disk: the provider's proving
//! check finds it and declares the sector faulty before its deadline's fault cutoff, and the
//! miner's power drops by exactly that sector's power; `lode proving check|faults|info|deadline`
//! report it. The replica is restored: the provider declares the sector recovered and the power
//! comes back with the deadline's next Window PoSt. Timings are printed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::time::{Duration, Instant};

use lode_chain::types::ActorId;
use lode_node::rpc::client::NodeClient;
use lode_proofs::sector::SectorSize;

use crate::common::{Devnet, json_of, lode, node_client, params_dir};

/// What the node says now: head epoch, the miner's (raw, QA) power, sector 0's status, and
/// sector 0's deadline instance (open, fault cutoff). `None` while the node does not answer.
async fn look(c: &NodeClient, miner: ActorId) -> Option<(u64, (u128, u128), String, (u64, u64))> {
    let head = c.chain_head().await.ok()?.epoch;
    let p = c.state_miner_power(miner).await.ok()?.power;
    let sectors = c.state_miner_sectors(miner).await.ok()?;
    let s0 = sectors.iter().find(|s| s.sector_number == 0)?;
    let dls = c.state_miner_deadlines(miner).await.ok()?;
    let dl = dls.deadlines.iter().find(|d| d.index == s0.deadline)?;
    Some((
        head,
        (p.raw, p.qa),
        s0.status.clone(),
        (dl.open, dl.fault_cutoff),
    ))
}

/// Polls `look` every 250 ms until `cond` holds on it, or panics after `secs` with `what`.
async fn until<F>(
    c: &NodeClient,
    miner: ActorId,
    secs: u64,
    what: &str,
    mut cond: F,
) -> (u64, (u128, u128), String, (u64, u64))
where
    F: FnMut(&(u64, (u128, u128), String, (u64, u64))) -> bool,
{
    let start = Instant::now();
    loop {
        if let Some(l) = look(c, miner).await
            && cond(&l)
        {
            return l;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}: last {:?}",
            look(c, miner).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[test]
#[ignore = "a multi-process devnet with real proofs: minutes"]
fn a_corrupt_replica_is_declared_faulty_and_recovers() {
    let _one = crate::one_at_a_time();
    let t0 = Instant::now();
    let secs = |t: Instant| t.elapsed().as_secs_f64();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let d = dir.to_str().unwrap().to_string();
    let out = lode(&[
        "devnet",
        "--dir",
        &d,
        "--detach",
        "--json",
        "--nodes",
        "1",
        "--miners",
        "1",
        "--sectors",
        "2",
        "--epoch-seconds",
        &crate::common::epoch_seconds(1).to_string(),
        "--period-deadlines",
        "8",
        "--params-dir",
        params_dir().to_str().unwrap(),
    ]);
    let _guard = Devnet(dir.clone());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = json_of(&out);
    let actor = j["miners"][0]["actor"].as_str().unwrap().to_string();
    let miner = ActorId(actor[2..].parse().unwrap());
    let miner_dir = dir.join(j["miners"][0]["dir"].as_str().unwrap());
    let store = lode_provider::prover::SectorStore::new(
        miner_dir.join("sectors"),
        miner.0,
        SectorSize::S2KiB,
    );
    let replica = lode_sealing::post::SealedSector::open(&store.scan()[&0])
        .unwrap()
        .dir
        .sealed();
    eprintln!("devnet started in {:.1} s", secs(t0));

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = node_client(&dir, 0);
        // Power from genesis, and the proving period of 8 deadlines of 5 epochs.
        let (head, full, status, (open, _)) = until(&c, miner, 120, "the chain", |l| {
            l.0 >= 2 && l.1.0 > 0
        })
        .await;
        assert_eq!(status, "active");
        assert_eq!(full, (4096, 4096), "two 2 KiB committed-capacity sectors");
        let dls = c.state_miner_deadlines(miner).await.unwrap();
        assert_eq!(dls.period_deadlines, 8);
        eprintln!(
            "epoch {head} ({:.1} s): power {full:?}; sector 0's deadline opens at {open}",
            secs(t0)
        );

        // Wait until sector 0's next fault cutoff is 20 epochs ahead: the provider checks a
        // deadline's sectors from 20 epochs (four challenge windows) before its cutoff, so the
        // damage is found at once and both declarations have 20 epochs to land (blocks are
        // missed while the damaged sector is drawn for Winning PoSt).
        // First, the deadline's window that opens right after genesis is judged (the sector
        // proven, full power), so that only the damage changes the power.
        let first_close = open + 5;
        let (h_ready, _, _, (open, cutoff)) = until(&c, miner, 150, "a fault cutoff ahead", |l| {
            l.0 > first_close && l.1 == full && l.2 == "active" && l.3.1 >= l.0 + 20
        })
        .await;
        eprintln!(
            "epoch {h_ready} ({:.1} s): sector 0's next window opens at {open}, fault cutoff {cutoff}",
            secs(t0)
        );

        // Corrupt the whole replica (every byte changed; the files are all there).
        let original = std::fs::read(&replica).unwrap();
        let broken: Vec<u8> = original.iter().map(|b| b ^ 0x5a).collect();
        std::fs::write(&replica, &broken).unwrap();
        let t_corrupt = Instant::now();
        let corrupted_at = look(&c, miner).await.unwrap().0;

        // Declared faulty before the window it would have failed in: the chain marks it faulty
        // while its instance's window has not opened (after the cutoff a declaration is refused;
        // a sector skipped by a proof would turn faulty only inside the window). Power drops by
        // the sector's: a 2 KiB committed-capacity sector's raw and QA power are 2048 bytes.
        let (h_fault, power, _, (fault_open, fault_cutoff)) =
            until(&c, miner, 120, "sector 0 faulty", |l| l.2 == "faulty").await;
        assert_eq!(
            (fault_open, fault_cutoff),
            (open, cutoff),
            "sector 0 turned faulty at epoch {h_fault}, after its window opened at {open}: not declared before the cutoff"
        );
        assert!(h_fault < cutoff);
        assert_eq!(power, (full.0 - 2048, full.1 - 2048), "power after the fault");
        eprintln!(
            "corrupted at epoch {corrupted_at}; faulty on chain at epoch {h_fault} ({:.1} s later), the window opening at {fault_open} (fault cutoff {fault_cutoff}); power {power:?}",
            secs(t_corrupt)
        );

        // What the operator sees: the check fails with its reason (exit 1), the fault is listed
        // with its deadline and partition, the period is known.
        let out = lode(&["proving", "check", "--devnet", &d, "--json"]);
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
        let check = json_of(&out);
        let s0 = check["sectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["sector_number"] == 0)
            .unwrap()
            .clone();
        assert_eq!((s0["ok"].clone(), s0["faulty"].clone()), (false.into(), true.into()), "{check}");
        assert!(
            s0["reason"].as_str().unwrap().contains("challenged leaves do not open"),
            "{check}"
        );
        let sectors = c.state_miner_sectors(miner).await.unwrap();
        let chain0 = sectors.iter().find(|s| s.sector_number == 0).unwrap();
        let faults = json_of(&lode(&["proving", "faults", "--devnet", &d, "--json"]));
        assert_eq!(faults.as_array().unwrap().len(), 1, "{faults}");
        assert_eq!(faults[0]["sector_number"], 0);
        assert_eq!(faults[0]["deadline"], chain0.deadline);
        assert_eq!(faults[0]["partition"], chain0.partition);
        assert!(faults[0]["check_failure"].is_string(), "{faults}");
        // The poster publishes what it saw at its last tick: at most an epoch behind the node.
        let start = Instant::now();
        let info = loop {
            let info = json_of(&lode(&["proving", "info", "--devnet", &d, "--json"]));
            if info["faults"] == 1 || start.elapsed() > Duration::from_secs(10) {
                break info;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        assert_eq!((info["faults"].clone(), info["sectors"].clone()), (1.into(), 2.into()), "{info}");
        assert_eq!(info["period"]["deadlines"], 8, "{info}");
        let deadline = json_of(&lode(&[
            "proving",
            "deadline",
            &chain0.deadline.to_string(),
            "--devnet",
            &d,
            "--json",
        ]));
        assert_eq!(deadline["partitions"][0]["sectors"].as_array().unwrap().len(), 2, "{deadline}");

        // Restored: declared recovered, and the power is back with the deadline's next proof.
        std::fs::write(&replica, &original).unwrap();
        let t_restore = Instant::now();
        let restored_at = look(&c, miner).await.unwrap().0;
        let (h_rec, _, _, (rec_open, rec_cutoff)) =
            until(&c, miner, 120, "sector 0 recovering", |l| l.2 != "faulty").await;
        assert!(h_rec < rec_open, "declared recovered at {h_rec}, after its window opened");
        let (h_back, back, _, _) = until(&c, miner, 120, "the power back", |l| {
            l.2 == "active" && l.1 == full
        })
        .await;
        assert!(
            h_back >= rec_open,
            "power back at epoch {h_back}, before the window (opening at {rec_open}) that proves the sector"
        );
        eprintln!(
            "restored at epoch {restored_at}: recovering on chain at epoch {h_rec} (window opening at {rec_open}, cutoff {rec_cutoff}); power {back:?} back at epoch {h_back}, {:.1} s after the restore",
            secs(t_restore)
        );
        let out = lode(&["proving", "check", "--devnet", &d]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    });
    eprintln!("the whole cycle took {:.1} s", secs(t0));
    let out = lode(&["devnet", "stop", "--dir", &d]);
    assert!(out.status.success());
}
