//! The JSON-RPC API end to end: real nodes (libp2p on 127.0.0.1, the test verifier) with their RPC
//! servers on port 0, called through the typed client, raw HTTP and WebSocket. Covers every open
//! method, message submission, the token (HTTP 401 and no state change without it, for single
//! calls, batches and WebSockets), malformed and oversized requests, head subscriptions fed by a
//! block made through `miner_base`/`miner_submitBlock`, and the metrics endpoint.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use jsonrpsee::core::client::ClientT;
use lode_chain::crypto::SecretKey;
use lode_chain::genesis::{GenesisMiner, GenesisSector};
use lode_chain::message::{Message, Method, SignedMessage};
use lode_chain::types::{ActorId, Address, TokenAmount};
use lode_chain::{Genesis, Policy};
use lode_node::core::CoreConfig;
use lode_node::genesis::{GenesisFile, unix_now};
use lode_node::rpc::client::{ApiInfo, ClientError, NodeClient};
use lode_node::rpc::{self, RpcServerHandle, SubmitVerdict, codes};
use lode_node::service::{NodeConfig, NodeService};
use lode_proofs::sector::SectorSize;
use lode_testkit::harness::FakeVerifier;
use lode_testkit::mining::make_block;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The bound on each whole test.
const TEST_LIMIT: Duration = Duration::from_secs(90);

async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_LIMIT, f)
        .await
        .expect("the test ran past its time limit");
}

fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed(&[seed; 32])
}

fn empty_comm_d() -> [u8; 32] {
    use lode_proofs::piece::{PaddedPieceSize, comm_d};
    comm_d(PaddedPieceSize::new(2048).unwrap(), &[]).unwrap().0
}

/// Two funded accounts (keys 10 and 11) and one genesis miner (owner key 10, worker key 20) with
/// two pre-sealed sectors; epoch 0 a few minutes ago, so blocks for the first epochs are not in
/// the future.
fn genesis() -> (GenesisFile, ActorId) {
    let policy = Policy::devnet();
    let exp = *GenesisSector::expiration_range(&policy).start();
    let g = Genesis {
        accounts: vec![
            (key(10).public_key(), TokenAmount::tokens(1000)),
            (key(11).public_key(), TokenAmount::tokens(1000)),
        ],
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
    (
        GenesisFile {
            policy,
            timestamp: unix_now().saturating_sub(600),
            genesis: g,
        },
        miner,
    )
}

struct Node {
    svc: NodeService,
    rpc: RpcServerHandle,
    addr: SocketAddr,
    token: String,
    _dir: tempfile::TempDir,
}

impl Node {
    async fn start(g: &GenesisFile) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let config = NodeConfig {
            dir: dir.path().to_path_buf(),
            genesis: g.clone(),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            bootstrap: Vec::new(),
            core: CoreConfig::default(),
            status_interval: Duration::from_secs(1),
        };
        let svc = NodeService::start(config, Box::new(FakeVerifier))
            .await
            .unwrap();
        let token = rpc::load_or_create_token(dir.path()).unwrap();
        let (addr, rpc) =
            rpc::serve_rpc("127.0.0.1:0".parse().unwrap(), svc.clone(), token.clone())
                .await
                .unwrap();
        assert_eq!(rpc.local_addr(), addr);
        Node {
            svc,
            rpc,
            addr,
            token,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn client(&self, token: Option<&str>) -> NodeClient {
        NodeClient::with_timeout(
            ApiInfo {
                url: self.url(),
                token: token.map(str::to_string),
            },
            Duration::from_secs(20),
        )
        .unwrap()
    }

    fn open(&self) -> NodeClient {
        self.client(None)
    }

    fn admin(&self) -> NodeClient {
        self.client(Some(&self.token))
    }
}

fn account(seed: u8) -> Address {
    Address::Bls(key(seed).public_key())
}

fn transfer(
    g: &GenesisFile,
    from: u8,
    to: Address,
    nonce: u64,
    value: TokenAmount,
) -> SignedMessage {
    Message {
        from: account(from),
        to,
        nonce,
        value,
        method: Method::Send,
        gas_limit: 1_000_000,
        gas_price: g.policy.min_gas_price,
    }
    .sign(&g.policy.network, &key(from))
}

/// A raw HTTP/1.1 exchange: status, headers (lowercase names), body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    let mut has_length = false;
    for (k, v) in headers {
        has_length |= k.eq_ignore_ascii_case("content-length");
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_length {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    // The server may answer (and close) before reading all of a body it refuses.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

async fn post_json(addr: SocketAddr, token: Option<&str>, body: &str) -> (u16, String) {
    let mut headers = vec![("Content-Type", "application/json".to_string())];
    if let Some(t) = token {
        headers.push(("Authorization", format!("Bearer {t}")));
    }
    let (status, _, body) = http(addr, "POST", "/", &headers, body.as_bytes()).await;
    (status, body)
}

fn rpc_code(e: &ClientError) -> Option<i32> {
    match e {
        ClientError::Rpc { code, .. } => Some(*code),
        _ => None,
    }
}

/// Waits until `check` holds, at most 20 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_methods_answer_from_the_genesis_state() {
    bounded(async {
        let (g, miner) = genesis();
        let node = Node::start(&g).await;
        let c = node.open();

        // Every registered method is classified, and the lists hold only registered methods.
        let module = rpc::module(node.svc.clone()).unwrap();
        let registered: Vec<&str> = module.method_names().collect();
        for m in &registered {
            assert!(
                rpc::OPEN_METHODS.contains(m) || rpc::PROTECTED_METHODS.contains(m),
                "{m} is neither open nor protected"
            );
        }
        for m in rpc::OPEN_METHODS.iter().chain(rpc::PROTECTED_METHODS) {
            assert!(registered.contains(m), "{m} is listed but not registered");
        }

        let v = c.node_version().await.unwrap();
        assert_eq!(v.api_version, rpc::API_VERSION);
        assert_eq!(v.network, g.policy.network);
        assert_eq!(v.genesis, g.id());
        let genesis_info = c.chain_genesis().await.unwrap();
        assert_eq!(
            (genesis_info.id, genesis_info.timestamp),
            (g.id(), g.timestamp)
        );
        assert_eq!(genesis_info.policy, g.policy);

        let head = c.chain_head().await.unwrap();
        assert_eq!(head.epoch, 0);
        assert!(head.key.is_empty());
        assert!(head.parent_state_root.is_none());
        assert!(head.state_root.is_some());
        let t0 = c.chain_tipset_by_height(0).await.unwrap().unwrap();
        assert!(t0.blocks.is_empty());
        assert_eq!(t0.state_root, head.state_root);
        assert!(c.chain_tipset_by_height(5).await.unwrap().is_none());
        assert!(c.chain_tipset_by_height(u64::MAX).await.unwrap().is_none());
        assert!(c.chain_get_block(&[9; 32]).await.unwrap().is_none());
        assert!(c.chain_get_messages(&[9; 32]).await.unwrap().is_none());

        let a = account(10);
        assert_eq!(
            c.state_balance(&a).await.unwrap(),
            TokenAmount::tokens(1000)
        );
        assert_eq!(
            c.state_balance(&account(99)).await.unwrap(),
            TokenAmount::ZERO
        );
        let actor = c.state_actor(&a).await.unwrap().unwrap();
        assert_eq!(actor.kind, "account");
        assert_eq!(actor.nonce, 0);
        assert_eq!(
            actor.key,
            Some(hex::encode(key(10).public_key().to_bytes()))
        );
        let id = c.state_lookup_id(&a).await.unwrap().unwrap();
        assert_eq!(id, actor.id);
        assert_eq!(
            c.state_balance(&Address::Id(id)).await.unwrap(),
            TokenAmount::tokens(1000)
        );
        assert!(c.state_lookup_id(&account(99)).await.unwrap().is_none());
        assert!(
            c.state_actor(&Address::Id(ActorId(999_999)))
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(c.mpool_nonce(&a).await.unwrap(), Some(0));
        assert_eq!(c.mpool_nonce(&account(99)).await.unwrap(), None);
        assert!(c.mpool_pending().await.unwrap().is_empty());

        // The genesis miner: power from epoch 0, two sectors, deadlines for its prover.
        let power = c.state_miner_power(miner).await.unwrap();
        assert_eq!(power.power.raw, 2 * 2048);
        assert!(power.power.qa >= power.power.raw);
        assert_eq!(power.network, power.power);
        assert!(power.meets_consensus_minimum);
        let net = c.state_network_power().await.unwrap();
        assert_eq!(net.miner_count, 1);
        assert_eq!(net.total, power.power);
        let info = c.state_miner_info(miner).await.unwrap();
        assert_eq!(info.sector_size, SectorSize::S2KiB);
        assert_eq!(info.sector_size_bytes, 2048);
        assert_eq!(
            Some(info.owner),
            c.state_lookup_id(&account(10)).await.unwrap()
        );
        assert_eq!(info.worker_key, key(20).public_key().to_bytes().to_vec());
        assert_eq!(info.balance, TokenAmount::tokens(10));
        let sectors = c.state_miner_sectors(miner).await.unwrap();
        assert_eq!(
            sectors.iter().map(|s| s.sector_number).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert!(sectors.iter().all(|s| s.status == "active"), "{sectors:?}");
        let dls = c.state_miner_deadlines(miner).await.unwrap();
        assert_eq!(dls.head_epoch, 0);
        assert_eq!(dls.worker, info.worker);
        assert_eq!(dls.period_deadlines, g.policy.wpost_period_deadlines);
        let proven: usize = dls
            .deadlines
            .iter()
            .flat_map(|d| &d.partitions)
            .map(|p| p.sectors.len())
            .sum();
        assert_eq!(proven, 2);
        for d in &dls.deadlines {
            assert!(d.open < d.close && d.challenge <= d.open, "{d:?}");
        }
        // Not a miner, a malformed address: errors, not panics.
        let e = c.state_miner_power(id).await.unwrap_err();
        assert_eq!(rpc_code(&e), Some(codes::NOT_FOUND), "{e}");
        let e = c.state_miner_info(ActorId(999_999)).await.unwrap_err();
        assert_eq!(rpc_code(&e), Some(codes::NOT_FOUND), "{e}");
        for (method, params) in [
            ("state_balance", json!(["zz"])),
            ("state_balance", json!([])),
            ("state_minerPower", json!([a.to_string()])),
            ("chain_getBlock", json!(["00"])),
            ("chain_tipsetByHeight", json!([-1])),
            ("mpool_push", json!(["zz"])),
            ("mpool_push", json!([{"message": 1}])),
        ] {
            let e = c
                .call_raw(method, params.as_array().unwrap().clone())
                .await
                .unwrap_err();
            assert_eq!(
                rpc_code(&e),
                Some(codes::INVALID_PARAMS),
                "{method} {params}: {e}"
            );
        }

        let sync = c.sync_status().await.unwrap();
        assert_eq!((sync.epoch, sync.peers, sync.genesis), (0, 0, g.id()));
        assert!(sync.clock_epoch >= 600 && sync.lag == sync.clock_epoch);
        let me = c.net_info().await.unwrap();
        assert_eq!(me.peer_id, node.svc.net().local_peer_id().to_string());
        assert!(!me.listen_addrs.is_empty());
        assert!(
            me.listen_addrs
                .iter()
                .all(|a| a.ends_with(&format!("/p2p/{}", me.peer_id)))
        );
        assert!(c.net_peers().await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_pushed_as_postcard_hex_or_json() {
    bounded(async {
        let (g, _) = genesis();
        let node = Node::start(&g).await;
        let c = node.open();
        let m0 = transfer(&g, 10, account(11), 0, TokenAmount::tokens(1));
        let id0 = c.mpool_push(&m0).await.unwrap();
        assert_eq!(id0, m0.id());
        // The JSON form, as `mpool_pending` and `chain_getMessages` show messages.
        let m1 = transfer(&g, 10, account(11), 1, TokenAmount::tokens(2));
        let id1 = c
            .call_raw("mpool_push", vec![serde_json::to_value(&m1).unwrap()])
            .await
            .unwrap();
        assert_eq!(id1, json!(hex::encode(m1.id())));
        let pending = c.mpool_pending().await.unwrap();
        assert_eq!(
            pending.iter().map(|m| m.id).collect::<Vec<_>>(),
            vec![m0.id(), m1.id()]
        );
        assert_eq!(pending[0].message, m0);
        assert_eq!(c.mpool_nonce(&account(10)).await.unwrap(), Some(2));
        // Refused: a bad signature (signed by another key), a nonce already used.
        let mut forged = transfer(&g, 11, account(11), 2, TokenAmount::tokens(1));
        forged.message.from = account(10);
        let e = c.mpool_push(&forged).await.unwrap_err();
        assert_eq!(rpc_code(&e), Some(codes::REFUSED), "{e}");
        let stale = transfer(&g, 11, account(10), 0, TokenAmount::tokens(1));
        c.mpool_push(&stale).await.unwrap();
        let replay = transfer(&g, 11, account(10), 0, TokenAmount::tokens(1));
        assert!(c.mpool_push(&replay).await.is_err());
        assert_eq!(c.mpool_pending().await.unwrap().len(), 3);
        // Trailing bytes after a valid encoding are refused.
        let mut bytes = lode_node::wire::encode(&m0);
        bytes.push(0);
        let e = c
            .call_raw("mpool_push", vec![json!(hex::encode(bytes))])
            .await
            .unwrap_err();
        assert_eq!(rpc_code(&e), Some(codes::INVALID_PARAMS), "{e}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_methods_need_the_token_and_change_nothing_without_it() {
    bounded(async {
        let (g, miner) = genesis();
        let a = Node::start(&g).await;
        let b = Node::start(&g).await;
        let b_info = b.open().net_info().await.unwrap();
        let b_addr = b_info.listen_addrs.first().unwrap().clone();

        // Without the token, or with a wrong one: refused, and nothing happens.
        for client in [a.open(), a.client(Some(&"00".repeat(32))), a.client(Some("x"))] {
            assert!(matches!(
                client.net_connect(&b_addr).await,
                Err(ClientError::Unauthorized)
            ));
            assert!(matches!(
                client.miner_base(miner, 1).await,
                Err(ClientError::Unauthorized)
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(a.open().net_peers().await.unwrap().is_empty());

        // With the token: connected.
        a.admin().net_connect(&b_addr).await.unwrap();
        let peers = a.open().net_peers().await.unwrap();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].peer_id, b_info.peer_id);

        // Raw HTTP: a protected call, alone or in a batch with open ones, without the token is
        // HTTP 401 and the peer stays connected.
        let block = json!({"jsonrpc": "2.0", "id": 1, "method": "net_blockPeer", "params": [b_info.peer_id]});
        let open = json!({"jsonrpc": "2.0", "id": 2, "method": "node_version"});
        let notification = json!({"jsonrpc": "2.0", "method": "net_blockPeer", "params": [b_info.peer_id]});
        for body in [
            block.clone(),
            json!([open.clone(), block.clone()]),
            json!([open.clone(), notification]),
        ] {
            for token in [None, Some("wrong")] {
                let (status, text) = post_json(a.addr, token, &body.to_string()).await;
                assert_eq!(status, 401, "{body}: {text}");
                let v: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(v["error"]["code"], codes::UNAUTHORIZED);
            }
        }
        // A batch of open methods needs no token.
        let (status, text) = post_json(a.addr, None, &json!([open.clone(), open.clone()]).to_string()).await;
        assert_eq!(status, 200, "{text}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(a.open().net_peers().await.unwrap().len(), 1);

        // A WebSocket opened without the token may call open methods only.
        let ws = jsonrpsee::ws_client::WsClientBuilder::default()
            .build(format!("ws://{}", a.addr))
            .await
            .unwrap();
        let v: Value = ws
            .request("node_version", jsonrpsee::rpc_params![])
            .await
            .unwrap();
        assert_eq!(v["network"], json!(g.policy.network));
        let e = ws
            .request::<Value, _>("net_blockPeer", jsonrpsee::rpc_params![b_info.peer_id.clone()])
            .await
            .unwrap_err();
        match e {
            jsonrpsee::core::ClientError::Call(obj) => assert_eq!(obj.code(), codes::UNAUTHORIZED),
            other => panic!("{other}"),
        }
        let mut batch = jsonrpsee::core::params::BatchRequestBuilder::new();
        batch.insert("node_version", jsonrpsee::rpc_params![]).unwrap();
        batch
            .insert("net_blockPeer", jsonrpsee::rpc_params![b_info.peer_id.clone()])
            .unwrap();
        let answers = ws.batch_request::<Value>(batch).await.unwrap();
        let mut answers = answers.into_iter();
        assert!(answers.next().unwrap().is_ok());
        assert_eq!(answers.next().unwrap().unwrap_err().code(), codes::UNAUTHORIZED);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(a.open().net_peers().await.unwrap().len(), 1);

        // With the token: blocked (disconnected, no reconnection), then unblocked.
        let admin = a.admin();
        admin.net_block_peer(&b_info.peer_id).await.unwrap();
        eventually("the blocked peer to be disconnected", || async {
            a.open().net_peers().await.unwrap().is_empty()
        })
        .await;
        assert!(admin.net_connect(&b_addr).await.is_err());
        assert!(matches!(
            a.open().net_unblock_peer(&b_info.peer_id).await,
            Err(ClientError::Unauthorized)
        ));
        assert!(admin.net_connect(&b_addr).await.is_err());
        admin.net_unblock_peer(&b_info.peer_id).await.unwrap();
        admin.net_connect(&b_addr).await.unwrap();
        assert_eq!(a.open().net_peers().await.unwrap().len(), 1);
        let e = admin.net_block_peer("not a peer").await.unwrap_err();
        assert_eq!(rpc_code(&e), Some(codes::INVALID_PARAMS));
        let e = admin.net_connect("/not/an/addr").await.unwrap_err();
        assert_eq!(rpc_code(&e), Some(codes::INVALID_PARAMS));
        drop(b);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_unknown_and_oversized_requests_get_errors() {
    bounded(async {
        let (g, _) = genesis();
        let node = Node::start(&g).await;
        let token = node.token.clone();
        for t in [None, Some(token.as_str())] {
            let (status, text) = post_json(node.addr, t, "{not json").await;
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["error"]["code"], -32700, "{status} {text}");
            let (_, text) = post_json(
                node.addr,
                t,
                r#"{"jsonrpc":"2.0","id":1,"method":"no_such"}"#,
            )
            .await;
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["error"]["code"], -32601, "{text}");
            let (_, text) = post_json(node.addr, t, r#"{"jsonrpc":"2.0","id":1}"#).await;
            let v: Value = serde_json::from_str(&text).unwrap();
            assert!(v["error"]["code"].as_i64().unwrap() < 0, "{text}");
            let (_, text) = post_json(node.addr, t, &format!("[{}]", "[".repeat(10_000))).await;
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["error"]["code"], -32700, "{text}");
            // A body declared over the 4 MiB limit is refused before it is read.
            let mut headers = vec![
                ("Content-Type", "application/json".to_string()),
                ("Content-Length", (5u64 << 20).to_string()),
            ];
            if let Some(t) = t {
                headers.push(("Authorization", format!("Bearer {t}")));
            }
            let (status, _, _) = http(node.addr, "POST", "/", &headers, b"[").await;
            assert_eq!(status, 413);
            // A body really over the limit.
            let huge = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"state_balance","params":["{}"]}}"#,
                "0".repeat(5 << 20)
            );
            let (status, _) = post_json(node.addr, t, &huge).await;
            assert_eq!(status, 413);
            // More calls than a batch may hold.
            let batch: Vec<Value> = (0..65)
                .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "node_version"}))
                .collect();
            let (_, text) = post_json(node.addr, t, &json!(batch).to_string()).await;
            let v: Value = serde_json::from_str(&text).unwrap();
            assert!(v["error"]["code"].as_i64().unwrap() < 0, "{text}");
            // Not JSON content, not POST.
            let (status, _, _) = http(node.addr, "POST", "/", &[], b"{}").await;
            assert_eq!(status, 415);
            let (status, _, _) = http(node.addr, "PUT", "/", &[], b"").await;
            assert_eq!(status, 405);
        }
        // Still serving.
        assert_eq!(node.open().chain_head().await.unwrap().epoch, 0);
        // `stop` signals the server, which stops a moment later: poll.
        node.rpc.stop();
        let stopping = std::time::Instant::now();
        while node.open().chain_head().await.is_ok() {
            assert!(
                stopping.elapsed() < Duration::from_secs(10),
                "still serving 10 s after stop"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_through_the_miner_methods_reaches_head_subscribers() {
    bounded(async {
        let (g, miner) = genesis();
        let node = Node::start(&g).await;
        let open = node.open();
        let admin = node.admin();
        let mut heads = open.subscribe_heads().await.unwrap();
        let msg = transfer(&g, 10, account(11), 0, TokenAmount::tokens(5));
        open.mpool_push(&msg).await.unwrap();

        // Mine on the head until the miner wins (five expected leaders an epoch: at once, nearly
        // always).
        let mut made = None;
        for epoch in 1..=20 {
            let mb = admin.miner_base(miner, epoch).await.unwrap();
            assert!(mb.ineligible.is_none(), "{:?}", mb.ineligible);
            assert_eq!(mb.sectors.len(), 2);
            // The worker is key 20.
            if let Some(block) = make_block(&g.policy, miner, &key(20), &mb).unwrap() {
                made = Some(block);
                break;
            }
        }
        let block = made.expect("the only miner won within 20 epochs");
        let epoch = block.header.epoch;
        assert!(block.messages.contains(&msg.message));
        assert_eq!(
            admin.miner_submit_block(&block).await.unwrap(),
            SubmitVerdict::Accepted
        );
        assert_eq!(
            admin.miner_submit_block(&block).await.unwrap(),
            SubmitVerdict::Duplicate
        );
        assert!(matches!(
            open.miner_submit_block(&block).await,
            Err(ClientError::Unauthorized)
        ));

        // The subscriber hears of the new head.
        let event = tokio::time::timeout(Duration::from_secs(20), heads.next())
            .await
            .expect("a head event")
            .expect("the subscription is open")
            .unwrap();
        assert_eq!(event.epoch, epoch);
        assert_eq!(event.key, vec![block.id()]);
        heads.unsubscribe().await.unwrap();

        let head = open.chain_head().await.unwrap();
        assert_eq!((head.epoch, head.key.clone()), (epoch, vec![block.id()]));
        assert_eq!(head.parent_state_root, Some(block.header.parent_state_root));
        assert_eq!(head.weight, event.weight);
        let t = open.chain_tipset_by_height(epoch).await.unwrap().unwrap();
        assert_eq!(t.blocks.len(), 1);
        assert_eq!(t.blocks[0].miner, miner);
        assert_eq!(t.blocks[0].messages, 1);
        assert_eq!(t.blocks[0].ticket_digest, block.header.ticket_digest());
        for e in 1..epoch {
            assert!(
                open.chain_tipset_by_height(e).await.unwrap().is_none(),
                "null round {e}"
            );
        }
        let info = open.chain_get_block(&block.id()).await.unwrap().unwrap();
        assert_eq!(info.header.epoch, epoch);
        assert_eq!(info.messages, vec![msg.id()]);
        let msgs = open.chain_get_messages(&block.id()).await.unwrap().unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!((msgs[0].id, &msgs[0].message), (msg.id(), &msg.message));
        // The transfer was applied.
        assert_eq!(
            open.state_balance(&account(11)).await.unwrap(),
            TokenAmount::tokens(1005)
        );
        assert_eq!(
            open.state_actor(&account(10)).await.unwrap().unwrap().nonce,
            1
        );
        assert_eq!(open.sync_status().await.unwrap().epoch, epoch);
        // Its receipt, by message id; an unknown id has none.
        let found = open.state_search_msg(msg.id()).await.unwrap().unwrap();
        assert_eq!(
            (found.epoch, found.tipset.clone()),
            (epoch, vec![block.id()])
        );
        assert!(found.receipt.ok(), "{:?}", found.receipt);
        assert_eq!(found.receipt.exit, "Ok");
        assert!(open.state_search_msg([3; 32]).await.unwrap().is_none());
        // No pre-commits; a seal ticket from an epoch on chain, none from the future.
        assert!(open.state_miner_precommits(miner).await.unwrap().is_empty());
        let ticket = open.state_seal_ticket(miner, epoch).await.unwrap();
        assert_eq!(open.state_seal_ticket(miner, epoch).await.unwrap(), ticket);
        assert!(open.state_seal_ticket(miner, epoch + 50).await.is_err());

        // A block for an epoch the head has passed is refused, not a crash.
        let e = admin.miner_base(miner, epoch).await.unwrap_err();
        assert_eq!(rpc_code(&e), Some(codes::REFUSED), "{e}");
        let mut bad = block.clone();
        bad.header.win_count += 1;
        match admin.miner_submit_block(&bad).await.unwrap() {
            SubmitVerdict::Rejected { reason } => assert!(!reason.is_empty()),
            other => panic!("{other:?}"),
        }
        let e = admin
            .call_raw("miner_submitBlock", vec![json!("00ff")])
            .await
            .unwrap_err();
        assert_eq!(rpc_code(&e), Some(codes::INVALID_PARAMS), "{e}");
    })
    .await;
}

/// Mines one block holding what the mempool has, after `after`, and submits it.
async fn mine_one(admin: &NodeClient, g: &GenesisFile, miner: ActorId, after: u64) -> u64 {
    for epoch in after + 1..=after + 40 {
        let mb = admin.miner_base(miner, epoch).await.unwrap();
        if let Some(block) = make_block(&g.policy, miner, &key(20), &mb).unwrap() {
            assert_eq!(
                admin.miner_submit_block(&block).await.unwrap(),
                SubmitVerdict::Accepted
            );
            return block.header.epoch;
        }
    }
    panic!("the only miner won no election in 40 epochs");
}

fn call(
    g: &GenesisFile,
    from: u8,
    nonce: u64,
    to: ActorId,
    method: Method,
    value: TokenAmount,
) -> SignedMessage {
    Message {
        from: account(from),
        to: to.into(),
        nonce,
        value,
        method,
        gas_limit: 50_000_000,
        gas_price: g.policy.min_gas_price,
    }
    .sign(&g.policy.network, &key(from))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn market_and_verified_registry_queries_follow_the_state() {
    use lode_chain::actors::market::{ClientDealProposal, DealProposal, MarketMethod};
    use lode_chain::actors::verifreg::VerifRegMethod;
    use lode_chain::actors::{MARKET, VERIFREG};
    bounded(async {
        let (mut g, _) = genesis();
        // The registry's root (key 1) needs funds for gas.
        g.genesis
            .accounts
            .push((key(1).public_key(), TokenAmount::tokens(10)));
        let miner = *g.genesis.miner_ids().first().unwrap();
        let node = Node::start(&g).await;
        let open = node.open();
        let admin = node.admin();

        // Nothing yet: no escrow, no DataCap, no verifier, no deal.
        let zero = open.state_market_balance(&account(11)).await.unwrap();
        assert_eq!(
            (zero.balance, zero.locked),
            (TokenAmount::ZERO, TokenAmount::ZERO)
        );
        assert_eq!(
            open.state_verified_client_datacap(&account(11))
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            open.state_verifier_allowance(&account(10)).await.unwrap(),
            None
        );
        assert_eq!(open.state_market_deal(0).await.unwrap(), None);
        assert!(
            open.state_market_deals(None, None, 0)
                .await
                .unwrap()
                .is_empty()
        );
        // An unknown address has nothing either; a malformed one is an invalid-params error.
        assert_eq!(
            open.state_market_balance(&account(99))
                .await
                .unwrap()
                .balance,
            TokenAmount::ZERO
        );
        let e = open
            .call_raw("state_marketBalance", vec![json!("nonsense")])
            .await
            .unwrap_err();
        assert_eq!(rpc_code(&e), Some(codes::INVALID_PARAMS), "{e}");

        // Escrow for the client and the miner; the root appoints key 10 a verifier.
        let client = account(11);
        for m in [
            call(
                &g,
                11,
                0,
                MARKET,
                Method::Market(MarketMethod::AddBalance { owner: client }),
                TokenAmount::tokens(5),
            ),
            call(
                &g,
                10,
                0,
                MARKET,
                Method::Market(MarketMethod::AddBalance {
                    owner: miner.into(),
                }),
                TokenAmount::tokens(2),
            ),
            call(
                &g,
                1,
                0,
                VERIFREG,
                Method::VerifReg(VerifRegMethod::AddVerifier {
                    verifier: account(10),
                    allowance: 1 << 20,
                }),
                TokenAmount::ZERO,
            ),
        ] {
            open.mpool_push(&m).await.unwrap();
        }
        let epoch = mine_one(&admin, &g, miner, 0).await;
        let escrow = open.state_market_balance(&client).await.unwrap();
        assert_eq!(escrow.balance, TokenAmount::tokens(5));
        assert_eq!(escrow.available, TokenAmount::tokens(5));
        assert_eq!(
            open.state_verifier_allowance(&account(10)).await.unwrap(),
            Some(1 << 20)
        );

        // The collateral a deal must carry: a floor that grows with the piece, below what the
        // deal below offers (it publishes), and the policy's cap.
        let small = open.state_deal_collateral_bounds(2048).await.unwrap();
        let large = open.state_deal_collateral_bounds(8 << 20).await.unwrap();
        assert_eq!(small.piece_size, 2048);
        assert!(small.provider_min > TokenAmount::ZERO, "{small:?}");
        assert!(
            small.provider_min <= large.provider_min,
            "{small:?} {large:?}"
        );
        assert!(small.provider_min < TokenAmount::tokens(1), "{small:?}");
        assert_eq!(small.max, g.policy.deal_max_amount);

        // The verifier grants DataCap; the miner's owner publishes a deal the client signed.
        let now = open.chain_head().await.unwrap().epoch;
        let proposal = DealProposal {
            piece_cid: lode_testkit::harness::node("piece"),
            piece_size: 2048,
            verified: false,
            client: open.state_lookup_id(&client).await.unwrap().unwrap(),
            provider: miner,
            label: "a label".into(),
            start_epoch: now + 1000,
            end_epoch: now + 1000 + g.policy.deal_min_duration,
            price_per_epoch: TokenAmount(1),
            provider_collateral: TokenAmount::tokens(1),
            client_collateral: TokenAmount::ZERO,
        };
        let deal = ClientDealProposal {
            client_signature: key(11).sign(&proposal.signing_bytes(&g.policy.network)),
            proposal: proposal.clone(),
        };
        for m in [
            call(
                &g,
                10,
                1,
                VERIFREG,
                Method::VerifReg(VerifRegMethod::AddVerifiedClient {
                    client,
                    allowance: 4096,
                }),
                TokenAmount::ZERO,
            ),
            call(
                &g,
                10,
                2,
                MARKET,
                Method::Market(MarketMethod::PublishDeals(vec![deal])),
                TokenAmount::ZERO,
            ),
        ] {
            open.mpool_push(&m).await.unwrap();
        }
        mine_one(&admin, &g, miner, epoch).await;
        assert_eq!(
            open.state_verified_client_datacap(&client).await.unwrap(),
            Some(4096)
        );
        assert_eq!(
            open.state_verifier_allowance(&account(10)).await.unwrap(),
            Some((1 << 20) - 4096)
        );
        let view = open
            .state_market_deal(0)
            .await
            .unwrap()
            .expect("deal 0 is published");
        assert_eq!(view.state, "published");
        assert_eq!((view.provider, view.client), (miner, proposal.client));
        assert_eq!(
            (view.piece_size, view.start_epoch, view.label.as_str()),
            (2048, proposal.start_epoch, "a label")
        );
        assert!(view.piece_cid.starts_with('b'), "{}", view.piece_cid);
        assert_eq!(view.sector, None);
        // The client's escrow now has the deal's fee locked.
        let escrow = open.state_market_balance(&client).await.unwrap();
        assert_eq!(escrow.locked, proposal.client_lock().unwrap());
        assert_eq!(
            escrow.available,
            escrow.balance.saturating_sub(escrow.locked)
        );
        // Listing by provider and by client finds it; another provider or a later id does not.
        assert_eq!(
            open.state_market_deals(Some(miner), None, 0).await.unwrap(),
            vec![view.clone()]
        );
        assert_eq!(
            open.state_market_deals(None, Some(proposal.client), 0)
                .await
                .unwrap(),
            vec![view]
        );
        assert!(
            open.state_market_deals(Some(ActorId(999)), None, 0)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            open.state_market_deals(None, None, 1)
                .await
                .unwrap()
                .is_empty()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_serves_node_and_libp2p_metrics() {
    bounded(async {
        let (g, _) = genesis();
        let node = Node::start(&g).await;
        let (addr, server) =
            rpc::serve_node_metrics("127.0.0.1:0".parse().unwrap(), node.svc.clone())
                .await
                .unwrap();
        assert_eq!(server.local_addr(), addr);
        let (status, headers, body) = http(addr, "GET", "/metrics", &[], b"").await;
        assert_eq!(status, 200, "{body}");
        let content_type = headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| v.clone())
            .unwrap();
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        assert!(body.contains("lode_chain_height 0"), "{body}");
        assert!(body.contains("lode_libp2p_"), "no libp2p metrics in {body}");
        assert!(body.contains("lode_net_"), "no net metrics in {body}");
        assert!(body.trim_end().ends_with("# EOF"));
        lode_testkit::metrics::promtool_check(&body);

        let (status, _, _) = http(addr, "GET", "/other", &[], b"").await;
        assert_eq!(status, 404);
        let (status, _, _) = http(addr, "POST", "/metrics", &[], b"").await;
        assert_eq!(status, 405);
        server.stop().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    })
    .await;
}
