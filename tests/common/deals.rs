//! The deal market's steps the process-level deal tests share: a one-node devnet (two miners, or
//! as many as asked) with an 8-deadline proving period, started and waited for until every
//! market is announced on chain; a client directory imported; escrow added; the `lode client
//! deal` arguments; a retrieval; and a directory's files, for comparing what came back.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lode_chain::types::{ActorId, Epoch};
use lode_node::rpc::client::NodeClient;

use super::{Devnet, devnet_json, lode, log_tail, node_client, ok, params_dir};

/// A running deal devnet: `lode devnet --nodes 1 --miners 2 --period-deadlines 8` (or more
/// miners), its client directory beside it, stopped when dropped.
pub struct DealNet {
    /// The devnet's directory.
    pub dir: PathBuf,
    /// The same, as `--devnet` takes it.
    pub d: String,
    /// The client's directory (`--client-dir`).
    pub client_dir: PathBuf,
    /// The same, as a string.
    pub cd: String,
    /// The miners' actors, by index.
    pub actors: Vec<ActorId>,
    /// The miners' log files, by index.
    pub logs: Vec<PathBuf>,
    /// A client of the node's API.
    pub node: NodeClient,
    /// A runtime for the API calls.
    pub rt: tokio::runtime::Runtime,
    /// When [`DealNet::start`] was called.
    pub started: Instant,
    _guard: Devnet,
}

/// A client import of a small directory.
pub struct Import {
    /// The directory imported.
    pub src: PathBuf,
    /// Its payload root CID.
    pub root: String,
    /// Its piece CID.
    pub piece: String,
    /// The padded piece size.
    pub piece_size: u64,
    /// The CAR's bytes (the deal's payload).
    pub car: Vec<u8>,
}

impl DealNet {
    /// Starts the devnet in `root/net` with `epoch_seconds` per epoch (and `extra` arguments to
    /// `lode devnet`), the client's directory `root/client`, and waits until every miner has
    /// announced its market on chain: peer id, libp2p address and retrieval server (`…/http`).
    pub fn start(root: &Path, epoch_seconds: u64, extra: &[&str]) -> DealNet {
        Self::start_miners(root, epoch_seconds, 2, extra, &[])
    }

    /// [`DealNet::start`] with `miners` miners, and `env` set for `lode devnet` (and so for every
    /// process it starts).
    pub fn start_miners(
        root: &Path,
        epoch_seconds: u64,
        miners: usize,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> DealNet {
        let started = Instant::now();
        let dir = root.join("net");
        let d = dir.to_str().unwrap().to_string();
        let client_dir = root.join("client");
        let cd = client_dir.to_str().unwrap().to_string();
        let params = params_dir();
        // Scaled where the prover lacks its vector arithmetic ([`super::epoch_seconds`]).
        let epoch_seconds = super::epoch_seconds(epoch_seconds).to_string();
        let miner_count = miners.to_string();
        let mut args = vec![
            "devnet",
            "--dir",
            &d,
            "--detach",
            "--json",
            "--nodes",
            "1",
            "--miners",
            &miner_count,
            "--epoch-seconds",
            &epoch_seconds,
            "--period-deadlines",
            "8",
            "--params-dir",
            params.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lode"))
            .args(&args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let guard = Devnet(dir.clone());
        let j = ok(&out);
        let actors: Vec<ActorId> = (0..miners)
            .map(|i| {
                ActorId(
                    j["miners"][i]["actor"].as_str().unwrap()[2..]
                        .parse()
                        .unwrap(),
                )
            })
            .collect();
        let logs: Vec<PathBuf> = (0..miners)
            .map(|i| dir.join(j["miners"][i]["log"].as_str().unwrap()))
            .collect();
        let net = DealNet {
            node: node_client(&dir, 0),
            rt: tokio::runtime::Runtime::new().unwrap(),
            dir,
            d,
            client_dir,
            cd,
            actors,
            logs,
            started,
            _guard: guard,
        };
        net.wait(180, "every market announced on chain", &mut || {
            net.actors.iter().all(|a| {
                net.rt
                    .block_on(net.node.state_miner_info(*a))
                    .is_ok_and(|i| {
                        i.peer_id.is_some() && i.multiaddrs.iter().any(|m| m.ends_with("/http"))
                    })
            })
        });
        net
    }

    /// Waits until `cond` holds, polling every half second; after `secs`, panics with `what` and
    /// the last lines of every provider's log.
    pub fn wait(&self, secs: u64, what: &str, cond: &mut dyn FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            if start.elapsed() >= Duration::from_secs(secs) {
                let logs: String = self
                    .logs
                    .iter()
                    .enumerate()
                    .map(|(i, l)| format!("miner-{i}:\n{}\n", log_tail(l, 30)))
                    .collect();
                panic!("timed out after {secs} s waiting for {what}\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Seconds since [`DealNet::start`].
    pub fn secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The head's epoch.
    pub fn head(&self) -> Epoch {
        self.rt.block_on(self.node.chain_head()).unwrap().epoch
    }

    /// Miner `i`'s directory.
    pub fn miner_dir(&self, i: usize) -> PathBuf {
        self.dir
            .join(devnet_json(&self.dir)["miners"][i]["dir"].as_str().unwrap())
    }

    /// `lode provider market --json` of miner `i`: its peer id, announced addresses and
    /// retrieval URL as the running provider has them.
    pub fn market(&self, i: usize) -> serde_json::Value {
        ok(&lode(&[
            "provider",
            "market",
            "--dir",
            self.miner_dir(i).to_str().unwrap(),
            "--json",
        ]))
    }

    /// Writes the client's directory under `root/photos` — a few files, one in a
    /// subdirectory, small enough for a 2 KiB sector's piece once packed — and imports it.
    pub fn import_photos(&self, root: &Path) -> Import {
        let src = root.join("photos");
        std::fs::create_dir_all(src.join("2026")).unwrap();
        std::fs::write(src.join("readme.txt"), b"holiday photos, lode devnet\n").unwrap();
        std::fs::write(
            src.join("2026").join("beach.raw"),
            (0..300u32).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>(),
        )
        .unwrap();
        std::fs::write(src.join("2026").join("notes.md"), b"# day one\nsun\n").unwrap();
        let import = ok(&lode(&[
            "client",
            "import",
            src.to_str().unwrap(),
            "--client-dir",
            &self.cd,
            "--json",
        ]));
        let car =
            std::fs::read(self.client_dir.join(import["car_path"].as_str().unwrap())).unwrap();
        Import {
            src,
            root: import["payload_root"].as_str().unwrap().to_string(),
            piece: import["piece_cid"].as_str().unwrap().to_string(),
            piece_size: import["padded_piece_size"].as_u64().unwrap(),
            car,
        }
    }

    /// `lode client balance add <amount>` from the devnet's client.
    pub fn add_escrow(&self, amount: &str) {
        ok(&lode(&[
            "client", "balance", "add", amount, "--devnet", &self.d, "--json",
        ]));
    }

    /// The arguments of `lode client deal` for a deal of `root` with miner `i`, starting at
    /// `start` and lasting 100000 epochs, the CAR served by the command (`--json`).
    pub fn deal_args(&self, i: usize, root: &str, start: Epoch, verified: bool) -> Vec<String> {
        let mut args: Vec<String> = [
            "client",
            "deal",
            "--provider",
            &self.actors[i].to_string(),
            "--piece",
            root,
            "--duration",
            "100000",
            "--start-epoch",
            &start.to_string(),
            "--devnet",
            &self.d,
            "--client-dir",
            &self.cd,
            "--json",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        if verified {
            args.push("--verified".into());
        }
        args
    }

    /// `lode client deals --json`.
    pub fn client_deals(&self) -> serde_json::Value {
        ok(&lode(&[
            "client",
            "deals",
            "--devnet",
            &self.d,
            "--client-dir",
            &self.cd,
            "--json",
        ]))
    }

    /// `lode client retrieve <root> -o <out> --provider <miner i>`; panics unless it succeeds.
    pub fn retrieve(&self, root: &str, i: usize, out: &Path) {
        let r = lode(&[
            "client",
            "retrieve",
            root,
            "-o",
            out.to_str().unwrap(),
            "--provider",
            &self.actors[i].to_string(),
            "--devnet",
            &self.d,
            "--client-dir",
            &self.cd,
        ]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    }
}

/// Every file under `root`, by relative path, with its bytes.
pub fn tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// `curl --silent --show-error --fail <args>`'s body; panics unless it succeeds.
pub fn curl(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("curl")
        .args(["--silent", "--show-error", "--fail"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
