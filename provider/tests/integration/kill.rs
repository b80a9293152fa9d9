//! kill -9 of a process writing the pipeline's records, at random moments: after every restart the
//! database opens, every record decodes, no sector number was handed out twice, and every change
//! the process reported (it prints a change only once the store returned it, durable) is there.
//!
//! The writer is this test binary run again with `LODE_PIPELINE_WRITER=<dir>`: it creates sectors
//! and moves them along (with failures and retries) until it is killed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use lode_provider::pipeline::{Event, PipelineStore, RetryPolicy, SectorKind, SectorState};

const WRITER: &str = "LODE_PIPELINE_WRITER";

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        base_seconds: 0,
        max_seconds: 0,
    }
}

/// The writer: runs until killed, printing `created N` and `applied N V` after each change.
fn writer(dir: &str) {
    let store = PipelineStore::open(std::path::Path::new(dir)).unwrap();
    let mut i = 0u64;
    loop {
        i += 1;
        // Carry on with an unfinished sector, or start one.
        let open = store
            .list()
            .unwrap()
            .into_iter()
            .find(|r| r.state() != SectorState::Proving && !r.state().is_final());
        let r = match open {
            Some(r) => r,
            None => {
                let r = store.create(SectorKind::CommittedCapacity, 2, i).unwrap();
                println!("created {}", r.number);
                r
            }
        };
        let event = if r.state().is_retryable_failure() {
            Event::Retry
        } else if r.state() == SectorState::FailedUnrecoverable {
            Event::Remove
        } else if i.is_multiple_of(7) {
            Event::Failed {
                reason: format!("injected failure {i}"),
                retry: true,
            }
        } else {
            Event::Done
        };
        if let Ok(n) = store.apply(r.number, r.version, &event, i, &policy()) {
            println!("applied {} {}", n.number, n.version);
        }
    }
}

#[test]
fn the_pipeline_store_survives_kill_9_at_random_moments() {
    if let Ok(dir) = std::env::var(WRITER) {
        writer(&dir);
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    // The last version each sector was reported at, over all runs.
    let mut reported: BTreeMap<u64, u64> = BTreeMap::new();
    let mut created = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let kills = 100;
    for round in 0..kills {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "kill::the_pipeline_store_survives_kill_9_at_random_moments",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WRITER, d.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(20 + seed % 120));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        for line in out.lines() {
            let line = line.unwrap();
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                ["created", n] => {
                    let n: u64 = n.parse().unwrap();
                    created.push(n);
                    reported.entry(n).or_insert(1);
                }
                ["applied", n, v] => {
                    let (n, v): (u64, u64) = (n.parse().unwrap(), v.parse().unwrap());
                    let e = reported.entry(n).or_insert(v);
                    *e = (*e).max(v);
                }
                _ => {}
            }
        }
        // After each kill: opens, decodes, and holds everything reported.
        let store = PipelineStore::open(d.path()).unwrap();
        let all = store.list().unwrap();
        let by_number: BTreeMap<u64, _> = all.iter().map(|r| (r.number, r)).collect();
        assert_eq!(by_number.len(), all.len());
        for (n, v) in &reported {
            let r = by_number.get(n).unwrap_or_else(|| {
                panic!("round {round}: sector {n} was reported created but is gone")
            });
            assert!(
                r.version >= *v,
                "round {round}: sector {n} was reported at version {v} but is at {}",
                r.version
            );
            assert_eq!(r.progress.history.len() as u64, (r.version - 1).min(32));
        }
    }
    // Numbers were handed out once each, from the floor, without gaps.
    let mut sorted = created.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), created.len(), "a number was handed out twice");
    let store = PipelineStore::open(d.path()).unwrap();
    let numbers: Vec<u64> = store.list().unwrap().iter().map(|r| r.number).collect();
    assert_eq!(numbers, (2..2 + numbers.len() as u64).collect::<Vec<_>>());
    assert!(
        store
            .list()
            .unwrap()
            .iter()
            .any(|r| r.state() == SectorState::Proving),
        "no sector reached Proving over {kills} runs"
    );
}
