//! A devnet whose provider seals through a cluster: `lode devnet --cluster-db` against a real
//! PostgreSQL server (started by the test), three `lode worker run` processes, and sectors pledged
//! with `lode sectors pledge` — each phase a task of the cluster, PreCommit1s spread over the
//! workers, each sector finalized and kept on its worker — reaching `Proving` through everything
//! a cluster must survive:
//!
//! - the provider leader killed with SIGKILL: a standby `lode provider run` of the same miner,
//!   waiting on the leader lease, takes over and the sectors go on from their records, which are
//!   in the cluster's database (the leader wrote no embedded pipeline or market database);
//! - a worker killed with SIGKILL in the middle of a Commit2 and started again under its name:
//!   the task is claimed again and the sector goes on (the phases bound to that worker's files
//!   run there again); that another worker takes over a dead one's task once its heartbeats stop
//!   is `tests/cli/cluster.rs`;
//! - PostgreSQL stopped and started again: workers and provider reconnect.
//!
//! The sectors stay on the workers (`--cluster-store-on-workers`): Finalize runs there, and the
//! provider's proving check reaches each sector through its worker. (Finalize into the provider's
//! store, the default, is `provider/tests/integration/remote.rs`.)

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lode_testkit::postgres::Postgres;

use crate::common::{
    Devnet, Reaped, Role, http_get, kill_9, lode, log_tail, ok, params_dir, restart,
};

fn start_worker(dir: &Path, db: &str, secret: &Path, name: &str) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("logs").join(format!("{name}.log")))
        .unwrap();
    // Below the devnet's own processes: on one small machine, three workers proving at once
    // would otherwise starve the provider's Window PoSts (on a real cluster they have their own
    // machines).
    Command::new("nice")
        .args(["-n", "10", env!("CARGO_BIN_EXE_lode")])
        .args(["worker", "run", "--db", db, "--name", name, "--cores", "1"])
        .args([
            "--tasks",
            "pc1,pc2,c1,c2,finalize",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--heartbeat-secs", "1", "--dead-after-secs", "3"])
        .arg("--secret-file")
        .arg(secret)
        .arg("--dir")
        .arg(dir.join(name))
        .arg("--params-dir")
        .arg(params_dir())
        .env("LODE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// `lode cluster status --json` with the history, `None` while the database is away.
fn cluster_status(db: &str) -> Option<serde_json::Value> {
    let out = lode(&[
        "cluster",
        "status",
        "--db",
        db,
        "--history",
        "200",
        "--json",
    ]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn tasks(status: &serde_json::Value) -> Vec<serde_json::Value> {
    status["tasks"].as_array().cloned().unwrap_or_default()
}

/// The pipeline's sectors from the provider's API (`None` while no provider answers).
fn sectors(d: &str) -> Option<Vec<serde_json::Value>> {
    let out = lode(&["sectors", "list", "--devnet", d, "--json"]);
    if !out.status.success() {
        return None;
    }
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    j["pipeline"]["sectors"].as_array().cloned()
}

#[test]
#[ignore = "a devnet sealing through a cluster of worker processes: minutes"]
fn a_cluster_seals_pledged_sectors_through_kills_and_a_database_restart() {
    let _one = crate::one_at_a_time();
    let Some(pg) = Postgres::start() else { return };
    let db = pg.create_database("devnet");
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let d = dir.to_str().unwrap().to_string();
    let j = ok(&lode(&[
        "devnet",
        "--dir",
        &d,
        "--detach",
        "--json",
        "--nodes",
        "1",
        "--miners",
        "1",
        "--epoch-seconds",
        &crate::common::epoch_seconds(1).to_string(),
        "--period-deadlines",
        "8",
        "--cluster-db",
        &db,
        "--cluster-store-on-workers",
        "--params-dir",
        params_dir().to_str().unwrap(),
    ]));
    let _guard = Devnet(dir.clone());
    assert_eq!(j["cluster_db"], db.as_str(), "{j}");
    let secret = dir.join(j["cluster_secret"].as_str().unwrap());
    let miner = &j["miners"][0];
    let actor: u64 = miner["actor"].as_str().unwrap()[2..].parse().unwrap();
    let provider_log = dir.join(miner["log"].as_str().unwrap());
    let node_log = dir.join(j["nodes"][0]["log"].as_str().unwrap());
    let leader_pid = u32::try_from(miner["pid"].as_u64().unwrap()).unwrap();
    let fail = |what: &str| -> ! {
        let log = std::fs::read_to_string(&provider_log).unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("sector") || l.contains("lease") || l.contains("ERROR"))
            .collect();
        panic!(
            "{what}\nthe provider's sector lines:\n{}\nits last lines:\n{}\nthe node's last lines:\n{}",
            lines[lines.len().saturating_sub(80)..].join("\n"),
            log_tail(&provider_log, 20),
            log_tail(&node_log, 20)
        )
    };
    let wait = |secs: u64, what: &str, cond: &mut dyn FnMut() -> bool| {
        let start = Instant::now();
        while !cond() {
            if start.elapsed() > Duration::from_secs(secs) {
                fail(&format!("timed out after {secs} s waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let names = ["w1", "w2", "w3"];
    let mut workers: Vec<Reaped> = names
        .iter()
        .map(|n| Reaped(start_worker(&dir, &db, &secret, n)))
        .collect();
    wait(60, "three registered workers", &mut || {
        cluster_status(&db).is_some_and(|s| s["workers"].as_array().is_some_and(|w| w.len() == 3))
    });
    // A standby provider of the same miner: it waits for the leader lease.
    let _standby = Reaped(restart(&dir, Role::Provider(0)));

    let out = lode(&[
        "sectors", "pledge", "--count", "3", "--devnet", &d, "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pledged: Vec<u64> = sectors(&d)
        .unwrap()
        .iter()
        .map(|s| s["sector_number"].as_u64().unwrap())
        .collect();
    assert_eq!(pledged.len(), 3, "{pledged:?}");
    eprintln!(
        "devnet up and 3 sectors pledged after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The leader dies once sealing is under way; the standby takes the lease over.
    wait(120, "a PreCommit1 task on the cluster", &mut || {
        cluster_status(&db)
            .is_some_and(|s| tasks(&s).iter().any(|t| t["spec"]["kind"] == "PreCommit1"))
    });
    kill_9(leader_pid, None);
    let failover = Instant::now();
    // The pipeline's and the market's records are in the cluster's database, not in the
    // leader's directory: the standby goes on from what the leader wrote there.
    for db in ["pipeline", "market"] {
        let local = dir.join(miner["dir"].as_str().unwrap()).join(db);
        assert!(
            !local.exists(),
            "a provider in a cluster wrote an embedded {db} database at {}",
            local.display()
        );
    }
    wait(60, "the standby to lead the miner", &mut || {
        std::fs::read_to_string(&provider_log)
            .is_ok_and(|l| l.matches("this provider leads its miner").count() >= 2)
            && sectors(&d).is_some()
    });
    eprintln!(
        "the standby leads {:.1} s after the leader's SIGKILL",
        failover.elapsed().as_secs_f64()
    );
    // Both ran the market, on its records in the database.
    let log = std::fs::read_to_string(&provider_log).unwrap();
    assert_eq!(
        log.matches("market started").count(),
        2,
        "{}",
        log_tail(&provider_log, 40)
    );
    assert!(
        !log.contains("the deal market does not run"),
        "{}",
        log_tail(&provider_log, 40)
    );

    // A worker dies in the middle of a Commit2 and is started again under its name: the task is
    // claimed again (by it or another worker; the sector's files may be on the dead one, so it
    // comes back at once) and completes.
    let mut victim = None;
    wait(300, "a Commit2 task running", &mut || {
        victim = cluster_status(&db).and_then(|s| {
            tasks(&s).into_iter().find(|t| {
                t["spec"]["kind"] == "Commit2" && t["phase"] == "Running" && t["worker"].is_string()
            })
        });
        victim.is_some()
    });
    let victim = victim.unwrap();
    let (task, name) = (
        victim["id"].as_u64().unwrap(),
        victim["worker"].as_str().unwrap().to_string(),
    );
    let at = names.iter().position(|n| *n == name).unwrap();
    let pid = workers[at].0.id();
    kill_9(pid, Some(&mut workers[at].0));
    workers[at] = Reaped(start_worker(&dir, &db, &secret, &name));
    eprintln!("killed worker {name} in the middle of Commit2 task {task}, and started it again");

    // The database goes away and comes back: workers and provider reconnect.
    std::thread::sleep(Duration::from_secs(1));
    pg.stop();
    std::thread::sleep(Duration::from_secs(2));
    pg.start_again();
    eprintln!("PostgreSQL restarted");

    // Claimed again: it ends (done, or failed for good if its sector's worker was away for all
    // of its claims, when the pipeline proves the sector again from Commit1).
    let mut finished = None;
    wait(240, "the killed worker's Commit2 to end", &mut || {
        finished = cluster_status(&db).and_then(|s| {
            tasks(&s).into_iter().find(|t| {
                t["id"].as_u64() == Some(task) && (t["phase"] == "Done" || t["phase"] == "Failed")
            })
        });
        finished.is_some()
    });
    let finished = finished.unwrap();
    assert!(finished["attempts"].as_u64().unwrap() >= 2, "{finished}");

    wait(240, "the pledged sectors Proving", &mut || {
        sectors(&d).is_some_and(|list| {
            list.iter()
                .filter(|s| pledged.contains(&s["sector_number"].as_u64().unwrap()))
                .all(|s| s["state"] == "Proving")
        })
    });
    eprintln!(
        "3 sectors Proving {:.1} s after the start",
        started.elapsed().as_secs_f64()
    );

    let status = cluster_status(&db).unwrap();
    let all = tasks(&status);
    // Every phase of every sector on the cluster, PreCommit1s spread over the workers.
    for kind in ["PreCommit1", "PreCommit2", "Commit1", "Commit2"] {
        for n in &pledged {
            assert!(
                all.iter().any(|t| t["spec"]["kind"] == kind
                    && t["spec"]["subject"].as_u64() == Some(*n)
                    && t["phase"] == "Done"),
                "no finished {kind} for sector {n}: {status}"
            );
        }
    }
    let mut pc1_workers: Vec<&str> = all
        .iter()
        .filter(|t| t["spec"]["kind"] == "PreCommit1" && t["phase"] == "Done")
        .filter_map(|t| t["worker"].as_str())
        .collect();
    pc1_workers.sort_unstable();
    pc1_workers.dedup();
    assert!(
        pc1_workers.len() >= 2,
        "PreCommit1 ran on {pc1_workers:?} only"
    );
    // The sectors stay on the workers (`--cluster-store-on-workers`): Finalize ran where each
    // sector was, which keeps it without its layers; none came into the provider's store.
    let store: PathBuf = dir.join(miner["dir"].as_str().unwrap()).join("sectors");
    for n in &pledged {
        assert!(
            !store.join(format!("s-{actor}-{n}")).exists(),
            "sector {n} came into the provider's store"
        );
        let held: Vec<PathBuf> = names
            .iter()
            .map(|w| dir.join(w).join(format!("s-{actor}-{n}")))
            .filter(|s| s.join("sealed").is_file())
            .collect();
        assert_eq!(held.len(), 1, "sector {n} is held by {held:?}");
        for file in ["tree-r", "pc2.json"] {
            assert!(
                held[0].join(file).is_file(),
                "{} has no {file}",
                held[0].display()
            );
        }
        assert!(
            !held[0].join("layer-1").exists(),
            "{} kept its layers",
            held[0].display()
        );
    }
    // `lode sectors list` names each sector's worker, from the cluster's location index.
    let out = lode(&["sectors", "list", "--devnet", &d, "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        fail(&format!(
            "lode sectors list: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    });
    for n in &pledged {
        let holder = names
            .iter()
            .find(|w| {
                dir.join(w)
                    .join(format!("s-{actor}-{n}"))
                    .join("sealed")
                    .is_file()
            })
            .unwrap();
        let row = list["sectors"]["sectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["sector_number"].as_u64() == Some(*n))
            .unwrap_or_else(|| panic!("sector {n} not listed: {list}"));
        assert_eq!(row["worker"].as_str(), Some(*holder), "{row}");
        assert_eq!(row["dir"], serde_json::Value::Null, "{row}");
    }
    let out = lode(&["sectors", "list", "--devnet", &d]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Files") && text.contains("worker "), "{text}");
    // `lode cluster status` counts the copies each worker holds: at least the pledged sectors.
    let status = cluster_status(&db).unwrap_or_else(|| fail("lode cluster status failed"));
    let held: u64 = names
        .iter()
        .map(|n| status["held"][n].as_u64().unwrap_or(0))
        .sum();
    assert!(held >= pledged.len() as u64, "{}", status["held"]);
    // The provider proves them through their workers: its proving check passes for each.
    let out = lode(&["proving", "check", "--devnet", &d, "--json"]);
    let check: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        fail(&format!(
            "lode proving check: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    });
    for n in &pledged {
        let row = check["sectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["sector_number"].as_u64() == Some(*n))
            .unwrap_or_else(|| panic!("sector {n} not checked: {check}"));
        assert_eq!(row["ok"], true, "{row}");
    }
    let log = std::fs::read_to_string(&provider_log).unwrap();
    assert!(
        log.contains("another provider of this miner leads: standing by"),
        "the standby never waited"
    );
    // The leading provider's dashboard shows the cluster: its workers, tasks and storage paths.
    let http = miner["http"].as_str().unwrap();
    let (status, body) = http_get(&format!("{http}/api/dashboard.json"));
    assert!(status.contains("200"), "{status}");
    let dashboard: serde_json::Value = serde_json::from_str(&body).unwrap();
    let cluster = &dashboard["cluster"];
    let mut shown: Vec<&str> = cluster["workers"]
        .as_array()
        .unwrap_or_else(|| panic!("no cluster on the dashboard: {dashboard}"))
        .iter()
        .filter_map(|w| w["info"]["name"].as_str())
        .collect();
    shown.sort_unstable();
    assert_eq!(shown, names, "{cluster}");
    assert_eq!(cluster["storage"].as_array().unwrap().len(), 3, "{cluster}");
    assert!(
        !cluster["tasks"].as_array().unwrap().is_empty(),
        "{cluster}"
    );
    let (_, html) = http_get(&format!("{http}/"));
    assert!(
        html.contains("<span id=\"cluster-workers\">3</span> workers"),
        "{html}"
    );
}
