//! The wallet and client commands end to end: a real node (libp2p on 127.0.0.1, the test
//! verifier, funded genesis accounts and a genesis miner) serves its RPC in this process, and the
//! built `lode` binary talks to it — keys made and imported, a transfer sent, included in a block
//! made here with fake proofs, and seen in balances, the head and the tipset; miner power, peers,
//! the token rule for protected calls, and the advice when no node answers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use lode_chain::Genesis;
use lode_chain::Policy;
use lode_chain::crypto::SecretKey;
use lode_chain::genesis::{GenesisMiner, GenesisSector};
use lode_chain::types::{ATTO_PER_TOKEN, ActorId, Address, TokenAmount};
use lode_node::core::CoreConfig;
use lode_node::genesis::{GenesisFile, unix_now};
use lode_node::rpc::client::{ApiInfo, NodeClient};
use lode_node::rpc::{self, RpcServerHandle, SubmitVerdict};
use lode_node::service::{NodeConfig, NodeService};
use lode_node::wire::FullBlock;
use lode_proofs::sector::SectorSize;
use lode_testkit::harness::FakeVerifier;
use lode_testkit::mining::make_block;
use serde_json::Value;

/// How long one `lode` command may run before the test fails.
const COMMAND_LIMIT: Duration = Duration::from_secs(20);

fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed(&[seed; 32])
}

fn empty_comm_d() -> [u8; 32] {
    use lode_proofs::piece::{PaddedPieceSize, comm_d};
    comm_d(PaddedPieceSize::new(2048).unwrap(), &[]).unwrap().0
}

/// One funded account (key 10) and a genesis miner (owner key 10, worker key 20) with two
/// pre-sealed 2 KiB sectors; epoch 0 ten minutes ago, so blocks for early epochs are not early.
fn genesis() -> (GenesisFile, ActorId) {
    let policy = Policy::devnet();
    let exp = *GenesisSector::expiration_range(&policy).start();
    let g = Genesis {
        accounts: vec![(key(10).public_key(), TokenAmount::tokens(1000))],
        verifreg_root: key(1).public_key(),
        verifiers: Vec::new(),
        verified_clients: Vec::new(),
        beacon: [7; 32],
        miners: vec![GenesisMiner {
            owner: key(10).public_key(),
            worker: key(20).public_key(),
            sector_size: SectorSize::S2KiB,
            balance: TokenAmount::tokens(10),
            peer_id: Vec::new(),
            multiaddrs: Vec::new(),
            sectors: (0..2u64)
                .map(|n| GenesisSector {
                    sector_number: n,
                    comm_r: lode_testkit::harness::node(&format!("s{n}")),
                    comm_d: empty_comm_d(),
                    expiration: exp,
                })
                .collect(),
        }],
    };
    let miner = *g.miner_ids().first().unwrap();
    let file = GenesisFile {
        policy,
        timestamp: unix_now().saturating_sub(600),
        genesis: g,
    };
    (file, miner)
}

/// A node serving its RPC on 127.0.0.1, on a runtime of its own.
struct Node {
    rt: tokio::runtime::Runtime,
    _svc: NodeService,
    rpc: RpcServerHandle,
    url: String,
    token: String,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(g: &GenesisFile) -> Node {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = NodeConfig {
            dir: dir.path().to_path_buf(),
            genesis: g.clone(),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            bootstrap: Vec::new(),
            core: CoreConfig::default(),
            status_interval: Duration::from_secs(1),
        };
        let (svc, rpc, addr, token) = rt.block_on(async {
            let svc = NodeService::start(config, Box::new(FakeVerifier))
                .await
                .unwrap();
            let token = rpc::load_or_create_token(dir.path()).unwrap();
            let (addr, handle) =
                rpc::serve_rpc("127.0.0.1:0".parse().unwrap(), svc.clone(), token.clone())
                    .await
                    .unwrap();
            (svc, handle, addr, token)
        });
        Node {
            rt,
            _svc: svc,
            rpc,
            url: format!("http://{addr}"),
            token,
            _dir: dir,
        }
    }

    fn admin(&self) -> NodeClient {
        NodeClient::with_timeout(
            ApiInfo {
                url: self.url.clone(),
                token: Some(self.token.clone()),
            },
            Duration::from_secs(20),
        )
        .unwrap()
    }

    /// Makes and submits the genesis miner's next block, on the node's head, with whatever the
    /// node's pool offers; returns it.
    fn mine(&self, g: &GenesisFile, miner: ActorId) -> FullBlock {
        let admin = self.admin();
        self.rt.block_on(async {
            let head = admin.chain_head().await.unwrap().epoch;
            // Five expected leaders an epoch and one miner: it wins at once, nearly always.
            for epoch in head + 1..=head + 20 {
                let mb = admin.miner_base(miner, epoch).await.unwrap();
                assert!(mb.ineligible.is_none(), "{:?}", mb.ineligible);
                // The worker is key 20.
                let block = make_block(&g.policy, miner, &key(20), &mb).unwrap();
                if let Some(block) = block {
                    let verdict = admin.miner_submit_block(&block).await.unwrap();
                    assert_eq!(verdict, SubmitVerdict::Accepted);
                    return block;
                }
            }
            panic!("the only miner did not win within 20 epochs");
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.rpc.stop();
    }
}

/// `lode` with `args`, none of the environment's node or wallet settings, and `stdin`.
fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lode"));
    cmd.args(args)
        .env_remove("LODE_API")
        .env_remove("LODE_TOKEN")
        .env_remove("LODE_WALLET")
        .env_remove("LODE_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Waits for `child`, at most [`COMMAND_LIMIT`].
fn finish(mut child: std::process::Child, what: &str) -> Output {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > COMMAND_LIMIT {
            let _ = child.kill();
            panic!("`lode {what}` ran past {COMMAND_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn lode_with_input(args: &[&str], input: &str) -> Output {
    let mut child = command(args).stdin(Stdio::piped()).spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    finish(child, &args.join(" "))
}

fn lode(args: &[&str]) -> Output {
    finish(command(args).spawn().unwrap(), &args.join(" "))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `lode args`, which must succeed, and parses its stdout as JSON.
fn json(args: &[&str]) -> Value {
    let out = lode(args);
    assert!(
        out.status.success(),
        "lode {}: {}",
        args.join(" "),
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("lode {}: {e}: {}", args.join(" "), stdout(&out)))
}

/// `127.0.0.1:<port>` where nothing listens.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("127.0.0.1:{}", listener.local_addr().unwrap().port())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_keystore_commands_keep_private_files() {
    let root = tempfile::tempdir().unwrap();
    let w = root.path().join("wallet");
    // No key yet: the default is explained.
    let out = lode(&["wallet", "default", "--wallet", s(&w)]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("lode wallet new"), "{}", stderr(&out));
    assert_eq!(mode(&w), 0o700);

    // The first key is the default; its file is the owner's only.
    let first = json(&["wallet", "new", "--wallet", s(&w), "--json"]);
    assert_eq!(first["default"], true);
    let a = first["address"].as_str().unwrap().to_string();
    assert!(a.starts_with("l3"), "{a}");
    assert_eq!(mode(&w.join(&a)), 0o600);
    let second = lode(&["wallet", "new", "--wallet", s(&w)]);
    assert!(second.status.success(), "{}", stderr(&second));
    let b = stdout(&second).trim().to_string();
    assert_ne!(a, b);
    assert_eq!(mode(&w.join(&b)), 0o600);
    assert_eq!(
        json(&["wallet", "default", "--wallet", s(&w), "--json"])["address"],
        a
    );

    // Import from standard input and from a file (the same key twice changes nothing).
    let secret = hex::encode(key(10).to_bytes());
    let imported = lode_with_input(
        &["wallet", "import", "--wallet", s(&w), "--default"],
        &format!("{secret}\n"),
    );
    assert!(imported.status.success(), "{}", stderr(&imported));
    let k10 = Address::Bls(key(10).public_key()).to_string();
    assert_eq!(stdout(&imported).trim(), k10);
    let file = root.path().join("k.hex");
    std::fs::write(&file, &secret).unwrap();
    assert_eq!(
        json(&["wallet", "import", s(&file), "--wallet", s(&w), "--json"])["address"],
        k10
    );
    assert_eq!(
        json(&["wallet", "default", "--wallet", s(&w), "--json"])["address"],
        k10
    );
    let bad = lode_with_input(&["wallet", "import", "--wallet", s(&w)], "c0ffee\n");
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("not a BLS secret key"),
        "{}",
        stderr(&bad)
    );

    // The default can be moved, and listing shows all three (no node here: no balances).
    let out = lode(&["wallet", "default", &b, "--wallet", s(&w)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list = json(&[
        "wallet",
        "list",
        "--wallet",
        s(&w),
        "--api",
        &closed_port(),
        "--json",
    ]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3);
    for entry in list {
        assert_eq!(entry["default"], entry["address"] == b.as_str(), "{entry}");
        assert!(entry.get("balance").is_none(), "{entry}");
    }

    // A key file others may read is refused with the fix.
    std::fs::set_permissions(w.join(&b), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = lode(&[
        "wallet",
        "send",
        &a,
        "1",
        "--from",
        &b,
        "--wallet",
        s(&w),
        "--api",
        &closed_port(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
}

#[test]
fn unreachable_nodes_and_missing_tokens_say_what_to_do() {
    let api = closed_port();
    let out = lode(&["chain", "head", "--api", &api]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot reach the node at http://{api}")),
        "{err}"
    );
    assert!(
        err.contains("lode node run") && err.contains("LODE_API"),
        "{err}"
    );
    // LODE_API is read too.
    let out = finish(
        command(&["sync", "status"])
            .env("LODE_API", &api)
            .spawn()
            .unwrap(),
        "sync status",
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&api), "{}", stderr(&out));
}

#[test]
fn a_transfer_reaches_the_chain_and_the_client_commands_read_it() {
    let (g, miner) = genesis();
    let node = Node::start(&g);
    let api = node.url.clone();
    let root = tempfile::tempdir().unwrap();
    let (alice, bob) = (root.path().join("alice"), root.path().join("bob"));

    // Alice holds the funded genesis key; Bob a new one.
    let imported = lode_with_input(
        &["wallet", "import", "--wallet", s(&alice)],
        &hex::encode(key(10).to_bytes()),
    );
    assert!(imported.status.success(), "{}", stderr(&imported));
    let from = stdout(&imported).trim().to_string();
    let to = json(&["wallet", "new", "--wallet", s(&bob), "--json"])["address"]
        .as_str()
        .unwrap()
        .to_string();
    let list = json(&[
        "wallet",
        "list",
        "--wallet",
        s(&alice),
        "--api",
        &api,
        "--json",
    ]);
    assert_eq!(list[0]["balance"], TokenAmount::tokens(1000).0.to_string());
    assert_eq!(list[0]["address"], from);
    assert_eq!(list[0]["default"], true);

    // Send 2.5 LODE: the message waits in the pool.
    let sent = json(&[
        "wallet",
        "send",
        &to,
        "2.5",
        "--wallet",
        s(&alice),
        "--api",
        &api,
        "--json",
    ]);
    let id = sent["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 64);
    assert_eq!(sent["nonce"], 0);
    assert_eq!(sent["value"], (5 * ATTO_PER_TOKEN / 2).to_string());
    let pending = json(&["mpool", "pending", "--api", &api, "--json"]);
    assert_eq!(pending.as_array().unwrap().len(), 1);
    assert_eq!(pending[0]["id"], id);
    let out = lode(&["wallet", "balance", &to, "--api", &api]);
    assert_eq!(stdout(&out).trim(), "0 LODE", "{}", stderr(&out));

    // A block includes it; Bob's balance shows it.
    let block = node.mine(&g, miner);
    let epoch = block.header.epoch;
    assert_eq!(block.messages.len(), 1);
    assert_eq!(hex::encode(block.messages[0].id()), id);
    let out = lode(&["wallet", "balance", "--wallet", s(&bob), "--api", &api]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "2.5 LODE");
    let bal = json(&["wallet", "balance", &to, "--api", &api, "--json"]);
    assert_eq!(bal["balance"], (5 * ATTO_PER_TOKEN / 2).to_string());
    let actor = json(&["state", "actor", &to, "--api", &api, "--json"]);
    assert_eq!(actor["kind"], "account");
    assert_eq!(actor["balance"], bal["balance"]);

    // The head and its tipset.
    let head = json(&["chain", "head", "--api", &api, "--json"]);
    assert_eq!(head["epoch"], epoch);
    assert_eq!(head["key"][0], hex::encode(block.id()));
    assert_eq!(
        head["parent_state_root"],
        hex::encode(block.header.parent_state_root)
    );
    assert!(head["state_root"].is_string(), "{head}");
    assert_eq!(head["blocks"][0]["miner"], miner.to_string());
    let tipset = json(&[
        "chain",
        "tipset",
        &epoch.to_string(),
        "--api",
        &api,
        "--json",
    ]);
    assert_eq!(tipset["epoch"], epoch);
    let blocks = tipset["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0]["miner"], miner.to_string());
    assert_eq!(blocks[0]["messages"], 1);
    assert!(blocks[0]["win_count"].as_u64().unwrap() >= 1);
    assert_eq!(
        tipset["parent_state_root"],
        hex::encode(block.header.parent_state_root)
    );
    let text = stdout(&lode(&[
        "chain",
        "tipset",
        &epoch.to_string(),
        "--api",
        &api,
    ]));
    assert!(text.contains("parent state root: "), "{text}");
    let future = lode(&["chain", "tipset", "100000", "--api", &api]);
    assert!(!future.status.success());
    assert!(
        stderr(&future).contains("beyond the head"),
        "{}",
        stderr(&future)
    );

    // A second transfer with --wait returns once a block holds it.
    let child = command(&[
        "wallet",
        "send",
        &to,
        "1500atto",
        "--wallet",
        s(&alice),
        "--api",
        &api,
        "--wait",
        "--wait-timeout",
        "15",
        "--json",
    ])
    .spawn()
    .unwrap();
    let pushed = Instant::now();
    loop {
        let pending = node.rt.block_on(node.admin().mpool_pending()).unwrap();
        if !pending.is_empty() {
            break;
        }
        assert!(
            pushed.elapsed() < COMMAND_LIMIT,
            "the second transfer never arrived"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = node.mine(&g, miner);
    let out = finish(child, "wallet send --wait");
    assert!(out.status.success(), "{}", stderr(&out));
    let sent: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sent["nonce"], 1);
    assert_eq!(sent["included"]["epoch"], second.header.epoch);
    assert_eq!(sent["included"]["block"], hex::encode(second.id()));
    assert_eq!(sent["included"]["applied"], true);
    assert_eq!(
        json(&["wallet", "balance", &to, "--api", &api, "--json"])["balance"],
        (5 * ATTO_PER_TOKEN / 2 + 1500).to_string()
    );

    // Power: the genesis miner's two 2 KiB sectors are all the network has.
    let power = json(&[
        "state",
        "miner-power",
        &miner.to_string(),
        "--api",
        &api,
        "--json",
    ]);
    assert_eq!(power["power"]["raw"], "4096");
    assert_eq!(power["power"]["qa"], "4096");
    assert_eq!(power["network"], power["power"]);
    let total = json(&["state", "network-power", "--api", &api, "--json"]);
    assert_eq!(total["committed"]["raw"], "4096");
    assert_eq!(total["miner_count"], 1);
    let sync = json(&["sync", "status", "--api", &api, "--json"]);
    assert_eq!(sync["epoch"], second.header.epoch);

    // Peers: none, then a second node after `net connect` with the token.
    assert_eq!(
        json(&["net", "peers", "--api", &api, "--json"]),
        Value::Array(vec![])
    );
    let other = Node::start(&g);
    let info = json(&["net", "info", "--api", &other.url, "--json"]);
    let other_addr = info["listen_addrs"][0].as_str().unwrap().to_string();
    let refused = lode(&["net", "connect", &other_addr, "--api", &api]);
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(
        err.contains("without its token") && err.contains("--token") && err.contains("LODE_TOKEN"),
        "{err}"
    );
    let connected = json(&[
        "net",
        "connect",
        &other_addr,
        "--api",
        &api,
        "--token",
        &node.token,
        "--json",
    ]);
    assert_eq!(connected["connected"], other_addr);
    let peers = json(&["net", "peers", "--api", &api, "--json"]);
    let peers = peers.as_array().unwrap();
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(peers[0]["peer_id"], info["peer_id"]);
}
