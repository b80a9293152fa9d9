//! A cluster on this machine: `lode worker run` processes sharing a real PostgreSQL server (started
//! by the test) — two labelling (PreCommit1), one of them also running PreCommit2 and Commit1
//! (fetching the layers from the other when it labelled the sector), two proving Commit2 with
//! inputs fetched over HTTP — two sectors sealed at once across them with `lode cluster seal`,
//! each proof checked with `lode verify porep`, `lode cluster status` read, and a Commit2 worker
//! killed with SIGKILL in the middle of its proof: the other takes the task over once the dead
//! one's heartbeats stop, and the sector completes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lode_testkit::postgres::Postgres;

use crate::common::{lode, ok, params_dir};

struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start_worker(db: &str, root: &Path, name: &str, tasks: &str) -> Child {
    let log = std::fs::File::create(root.join(format!("{name}.log"))).unwrap();
    Command::new(env!("CARGO_BIN_EXE_lode"))
        .args(["worker", "run", "--db", db, "--name", name, "--cores", "1"])
        .args(["--tasks", tasks, "--listen", "127.0.0.1:0"])
        .args(["--heartbeat-secs", "1", "--dead-after-secs", "3"])
        .env("LODE_CLUSTER_SECRET", "cluster-test-secret")
        .arg("--dir")
        .arg(root.join(name))
        .arg("--cache-dir")
        .arg(root.join("cache"))
        .arg("--params-dir")
        .arg(params_dir())
        .env("LODE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn seal(db: &str, sector: u64) -> Child {
    let ticket = format!("{:064x}", sector + 1);
    let seed = format!("{:064x}", sector + 1000);
    Command::new(env!("CARGO_BIN_EXE_lode"))
        .args([
            "cluster",
            "seal",
            "--db",
            db,
            "--miner",
            "1000",
            "--sector-size",
            "2KiB",
        ])
        .args([
            "--sector",
            &sector.to_string(),
            "--ticket",
            &ticket,
            "--seed",
            &seed,
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn sealed(child: Child) -> serde_json::Value {
    ok(&child.wait_with_output().unwrap())
}

/// Checks the proof `lode cluster seal` printed against the public inputs on the sector's worker;
/// a Commit2 worker that fetched the inputs from there kept no copy of them.
fn verify(root: &Path, sealed: &serde_json::Value) {
    let sector = format!("s-1000-{}", sealed["sector"]);
    let holder = sealed["worker"].as_str().unwrap();
    let dir: PathBuf = root.join(holder).join(&sector);
    let c2 = &sealed["tasks"][3];
    assert_eq!(c2["kind"], "Commit2");
    let prover = c2["worker"].as_str().unwrap();
    if prover != holder {
        let copy = root.join(prover).join(&sector);
        assert!(!copy.exists(), "{} kept the fetched inputs", copy.display());
    }
    let proof = root.join(format!("{sector}.proof"));
    std::fs::write(
        &proof,
        hex::decode(sealed["proof"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let out = lode(&[
        "verify",
        "porep",
        "--public",
        dir.join("commit1.json").to_str().unwrap(),
        "--proof",
        proof.to_str().unwrap(),
        "--params-dir",
        params_dir().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "real Groth16 proofs: run with --include-ignored"]
fn sectors_seal_across_workers_and_a_killed_worker_takes_its_task_back() {
    let Some(pg) = Postgres::start() else { return };
    let db = pg.create_database("cluster");
    let params = params_dir();
    let generated = lode(&[
        "params",
        "generate",
        "--sector-size",
        "2KiB",
        "--circuit",
        "porep",
        "--params-dir",
        params.to_str().unwrap(),
    ]);
    assert!(generated.status.success());
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let names = ["w1", "w2", "p1", "p2"];
    // w2 labels only: a sector whose PreCommit1 it ran has its layers fetched by w1 for
    // PreCommit2, and lives on w1 from then on.
    // The proving workers also take `wdpost` and `wnpost` (PoSt SNARKs), as a GPU machine would.
    let tasks = |n: &str| match n {
        "w1" => "pc1,pc2,c1",
        "w2" => "pc1",
        _ => "c2,wdpost,wnpost",
    };
    let mut workers = Workers(
        names
            .iter()
            .map(|n| start_worker(&db, root, n, tasks(n)))
            .collect(),
    );

    // Two sectors at once over single-core workers.
    let runs: Vec<Child> = (1..=2).map(|s| seal(&db, s)).collect();
    let results: Vec<serde_json::Value> = runs.into_iter().map(sealed).collect();
    let mut used = std::collections::HashSet::new();
    for r in &results {
        verify(root, r);
        for t in r["tasks"].as_array().unwrap() {
            used.insert(t["worker"].as_str().unwrap().to_string());
        }
    }
    assert!(used.len() >= 3, "tasks spread over the workers: {used:?}");
    assert!(
        used.iter().any(|w| w.starts_with('p')),
        "Commit2 ran on a proving worker"
    );

    let status = ok(&lode(&["cluster", "status", "--db", &db, "--json"]));
    assert_eq!(status["workers"].as_array().unwrap().len(), 4);
    let p1 = status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["info"]["name"] == "p1")
        .unwrap();
    assert_eq!(
        p1["info"]["kinds"],
        serde_json::json!(["Commit2", "WindowPost", "WinningPost"]),
        "{p1}"
    );
    assert_eq!(status["storage"].as_array().unwrap().len(), 4);
    let done = status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["phase"] == "Done")
        .count();
    assert_eq!(done, 8, "four phases of two sectors: {status:#}");

    // SIGKILL the worker proving a Commit2: once its heartbeats stop, the other proving worker
    // takes the task over (a new claim, a new token) and fetches the inputs itself.
    let run = seal(&db, 9);
    let started = Instant::now();
    let victim = loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no Commit2 ran"
        );
        let s = ok(&lode(&["cluster", "status", "--db", &db, "--json"]));
        let running = s["tasks"].as_array().unwrap().iter().find(|t| {
            t["spec"]["kind"] == "Commit2" && t["spec"]["subject"] == 9 && t["phase"] == "Running"
        });
        if let Some(t) = running {
            break t["worker"].as_str().unwrap().to_string();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let at = names.iter().position(|n| *n == victim).unwrap();
    workers.0[at].kill().unwrap();
    workers.0[at].wait().unwrap();
    let r = sealed(run);
    verify(root, &r);
    let c2 = &r["tasks"][3];
    assert_ne!(
        c2["worker"],
        victim.as_str(),
        "another worker proved it: {r:#}"
    );
    assert_eq!(c2["attempts"], 2, "claimed again after the kill: {r:#}");
    let status = ok(&lode(&["cluster", "status", "--db", &db, "--json"]));
    assert!(
        status["workers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["info"]["name"] != victim.as_str()),
        "the dead worker is unregistered"
    );
}
