//! What the process-level devnet tests share: running the `lode` binary, the test parameters'
//! directory, a guard that stops a devnet however the test ends (and shows its logs when it
//! failed), clients for the devnet's nodes, and starting a node or provider process again after a
//! test killed it, as `lode devnet` starts them.
//!
//! Each test binary uses part of it; [`deals`] holds the deal market's devnet steps.
#![allow(dead_code, unreachable_pub)]

pub mod deals;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use lode_devnet::devnet::DevnetFile;
use lode_node::rpc::client::{ApiInfo, NodeClient};
use lode_provider::rpc::client::ProviderClient;

/// Runs the `lode` binary built for this test with `args`.
pub fn lode(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lode"))
        .args(args)
        .output()
        .unwrap()
}

/// The JSON a successful `lode … --json` printed; panics with its output otherwise.
pub fn ok(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    json_of(out)
}

/// The JSON `out` printed (whatever its exit status); panics with its output when it is not JSON.
pub fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Seconds per epoch for a scenario written for `fast` seconds: `fast` where the prover has its
/// vector arithmetic, twice that with MULX/ADX and three times with the portable arithmetic (a
/// Winning PoSt takes about three and four times as long there, and the miners would otherwise
/// miss their blocks, then their Window PoSts). The scenarios then take longer on such machines.
pub fn epoch_seconds(fast: u64) -> u64 {
    use lode_proofs::prover::Arithmetic;
    match lode_proofs::prover::arithmetic() {
        Arithmetic::Vector => fast,
        Arithmetic::Mulx => fast * 2,
        Arithmetic::Portable => fast * 3,
    }
}

/// The Groth16 test parameters (generated once by the tests, kept under `target/`).
pub fn params_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/lode-test-params")
}

/// The last `n` lines of a log file (empty when it cannot be read).
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Stops the devnet in the directory when the test ends, however it ends (a process a test
/// restarted is stopped too when its pid is in `devnet.json`); when the test failed, prints the
/// last lines of every process's log.
pub struct Devnet(pub PathBuf);

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = lode(&["devnet", "stop", "--dir", self.0.to_str().unwrap()]);
        if std::thread::panicking() {
            let mut logs: Vec<PathBuf> = std::fs::read_dir(self.0.join("logs"))
                .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            logs.sort();
            for log in logs {
                eprintln!("--- {}, last lines:\n{}", log.display(), log_tail(&log, 40));
            }
        }
    }
}

/// The devnet's `devnet.json`, as JSON.
pub fn devnet_json(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("devnet.json")).unwrap()).unwrap()
}

/// A client of node `node`'s API with its admin token, and a timeout generous enough for a
/// devnet on a loaded 2-core machine.
pub fn node_client(dir: &Path, node: usize) -> NodeClient {
    let j = devnet_json(dir);
    let n = &j["nodes"][node];
    let token = std::fs::read_to_string(dir.join(n["token_file"].as_str().unwrap())).unwrap();
    NodeClient::with_timeout(
        ApiInfo {
            url: n["rpc"].as_str().unwrap().to_string(),
            token: Some(token.trim().to_string()),
        },
        Duration::from_secs(15),
    )
    .unwrap()
}

/// A read-only client of miner `miner`'s provider API (its address survives restarts), calls
/// timing out after `timeout`.
pub fn provider_client(dir: &Path, miner: usize, timeout: Duration) -> ProviderClient {
    let j = devnet_json(dir);
    ProviderClient::with_timeout(
        ApiInfo {
            url: j["miners"][miner]["rpc"].as_str().unwrap().to_string(),
            token: None,
        },
        timeout,
    )
    .unwrap()
}

/// Waits until `cond` holds, polling every half second, or panics after `secs` with `what`.
pub async fn wait_for<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether `pid` runs: any of its threads has not exited. A killed process's main thread shows
/// as a zombie while its other threads are still exiting, holding its files (and their locks)
/// open; once every thread is a zombie or gone, its files are closed.
pub fn alive(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).any(|t| {
        std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
            !stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
    })
}

/// Sends SIGKILL to `pid` and waits until it is gone (reaping `child` when it is ours).
pub fn kill_9(pid: u32, child: Option<&mut Child>) {
    let st = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill -KILL {pid}");
    if let Some(c) = child {
        c.wait().unwrap();
    }
    let start = Instant::now();
    while alive(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{pid} survives SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A child process killed and reaped when dropped (one a test started again: the devnet's stop
/// may have run already, or not know it).
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Which devnet process to start again.
#[derive(Clone, Copy, Debug)]
pub enum Role {
    /// `lode node run` of node `i`.
    Node(usize),
    /// `lode provider run` of miner `i`.
    Provider(usize),
}

/// Starts `role`'s process again as `lode devnet` does (in the devnet's directory, logging to its
/// log file, in its own process group) and records its pid in `devnet.json`, so that
/// `lode devnet stop` (and [`Devnet`]) stops it too.
pub fn restart(dir: &Path, role: Role) -> Child {
    use std::os::unix::process::CommandExt;
    let mut file = DevnetFile::load(dir).unwrap();
    let (args, log) = match role {
        Role::Node(i) => {
            let n = &file.nodes[i];
            (["node", "run", "--dir"], (n.dir.clone(), n.log.clone()))
        }
        Role::Provider(i) => {
            let m = &file.miners[i];
            (["provider", "run", "--dir"], (m.dir.clone(), m.log.clone()))
        }
    };
    let (proc_dir, log) = log;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(&log))
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_lode"))
        .args(args)
        .arg(&proc_dir)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .env("LODE_LOG", "info")
        .process_group(0)
        .spawn()
        .unwrap();
    match role {
        Role::Node(i) => file.nodes[i].pid = Some(child.id()),
        Role::Provider(i) => file.miners[i].pid = Some(child.id()),
    }
    file.save(dir).unwrap();
    child
}

/// `GET` of `http://host:port/path`: the status line and the body.
pub fn http_get(url: &str) -> (String, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}
