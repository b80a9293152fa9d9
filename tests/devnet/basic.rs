//! `lode devnet` as a user runs it: separate node and provider processes on loopback, real
//! Winning and Window PoSt over 2 KiB sectors sealed at genesis; then the faults a network must
//! survive — a node killed with SIGKILL and restarted, a network split and healed. The first
//! miner's deadlines are read through its own API (`lode provider proving`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::path::Path;
use std::time::{Duration, Instant};

use lode_node::rpc::client::NodeClient;

use crate::common::{
    Devnet, Reaped, Role, devnet_json, http_get, kill_9, lode, log_tail, node_client, params_dir,
    restart, wait_for,
};

/// Seconds per epoch of the test network: two miners each prove a Winning PoSt nearly every
/// epoch (about 0.45 s alone on 2 cores, 0.9 s when both prove at once).
const EPOCH_SECONDS: u64 = 2;

async fn height(c: &NodeClient) -> Option<u64> {
    c.chain_head().await.ok().map(|h| h.epoch)
}

/// The node's height, asking again for up to 30 s while it does not answer (a busy node on a
/// loaded machine may miss one call's timeout).
async fn height_now(c: &NodeClient) -> u64 {
    let start = Instant::now();
    loop {
        if let Some(h) = height(c).await {
            return h;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the node stopped answering chain_head"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether both nodes hold the same chain at `epoch`: the same tipset (key, parent state root)
/// at the highest epoch at or below it where either has one.
async fn agree_at(a: &NodeClient, b: &NodeClient, epoch: u64) -> bool {
    for e in (1..=epoch).rev() {
        match (
            a.chain_tipset_by_height(e).await,
            b.chain_tipset_by_height(e).await,
        ) {
            (Ok(None), Ok(None)) => continue,
            (Ok(x), Ok(y)) => return x == y,
            _ => return false,
        }
    }
    false
}

/// `GET` of a metrics URL (`http://127.0.0.1:PORT/metrics`): the exposition's text.
fn metrics(url: &str) -> String {
    let (status, body) = http_get(url);
    assert!(status.contains(" 200"), "{status}");
    body
}

/// The value of an unlabelled sample `name` in an exposition.
fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|v| v.trim().parse().ok())
}

/// A peer speaking the devnet's own protocols that floods node 0's mempool past its per-sender
/// bound with valid messages, then gossips malformed blocks and messages: the mempool stays within
/// its bound, the peer is scored down and disconnected, and the chain keeps growing.
async fn adversary(dir: &Path, a: &NodeClient) {
    use lode_chain::message::{Message, Method};
    use lode_chain::types::{Address, TokenAmount};
    use lode_node::net::{self, NetConfig, NetEvent, Topic};

    let genesis = lode_node::genesis::GenesisFile::load(&dir.join("genesis.json")).unwrap();
    let policy = &genesis.policy;
    let node0 = devnet_json(dir)["nodes"][0].clone();
    let node0_peer = node0["peer_id"].as_str().unwrap().to_string();
    let mut config = NetConfig::new(policy.network.clone(), net::generate_keypair());
    config.bootstrap = vec![node0["multiaddr"].as_str().unwrap().parse().unwrap()];
    let mut registry = prometheus_client::registry::Registry::default();
    let (evil, mut events) = net::spawn(config, &mut registry).unwrap();
    let evil_id = evil.local_peer_id().to_string();

    // The faucet's messages, valid and funded, at every nonce up to 300 past the mempool's
    // per-sender bound (1,000 pending): the excess is refused, not held.
    let faucet = lode_node::wallet::parse_secret(
        &std::fs::read_to_string(dir.join("keys/faucet.key")).unwrap(),
    )
    .unwrap();
    let from = Address::Bls(faucet.public_key());
    let first = a.mpool_nonce(&from).await.unwrap().unwrap_or(0);
    let to = Address::Bls(lode_chain::crypto::SecretKey::from_seed(&[9; 32]).public_key());
    let gas_limit = lode_node::wallet::transfer_gas_limit(policy, &from, &to);
    let flood: Vec<Vec<u8>> = (first..first + 1_300)
        .map(|nonce| {
            let m = Message {
                from,
                to,
                nonce,
                value: TokenAmount(1),
                method: Method::Send,
                gas_limit,
                gas_price: policy.min_gas_price,
            }
            .sign(&policy.network, &faucet);
            lode_node::wire::encode(&m)
        })
        .collect();
    // Publishing needs node 0 in the adversary's mesh.
    let start = Instant::now();
    let mut flood = flood.into_iter();
    let first_msg = flood.next().unwrap();
    while evil
        .publish(Topic::Messages, first_msg.clone())
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no gossip mesh with node 0"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for m in flood {
        evil.publish(Topic::Messages, m).await.unwrap();
    }
    let node0_metrics = node0["metrics"].as_str().unwrap().to_string();
    let mut most = 0.0f64;
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(15) {
        let size = metric(&metrics(&node0_metrics), "lode_mempool_size").unwrap();
        most = most.max(size);
        // The bound, plus the providers' own messages (Window PoSts, declarations).
        assert!(
            size <= 1_010.0,
            "mempool of {size} messages past its per-sender bound"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(most > 0.0, "the flood never reached node 0's mempool");
    eprintln!("adversary: 1,300 valid messages flooded, node 0's mempool peaked at {most}");

    // Malformed blocks and messages: rejected, costing the sender its score until node 0
    // disconnects and bans it.
    let mut disconnected = false;
    let mut sent = 0u64;
    let junk = Instant::now();
    while !disconnected {
        assert!(
            junk.elapsed() < Duration::from_secs(60),
            "node 0 kept a peer that gossips junk"
        );
        // Each payload new (gossip drops what it has seen).
        for _ in 0..20 {
            sent += 1;
            let _ = evil
                .publish(Topic::Blocks, sent.to_le_bytes().repeat(25))
                .await;
            let _ = evil
                .publish(Topic::Messages, sent.to_be_bytes().repeat(7))
                .await;
        }
        while let Ok(Some(e)) =
            tokio::time::timeout(Duration::from_millis(500), events.recv()).await
        {
            if matches!(&e, NetEvent::PeerDisconnected(p) if p.to_string() == node0_peer) {
                disconnected = true;
                break;
            }
        }
    }
    eprintln!(
        "adversary: disconnected by node 0 {:.1} s after it began to gossip junk ({sent} blocks, {sent} messages)",
        junk.elapsed().as_secs_f64()
    );
    let body = metrics(&node0_metrics);
    assert!(
        body.contains("lode_blocks_rejected_total{reason=\"malformed\"}"),
        "{body}"
    );
    assert!(
        a.net_peers()
            .await
            .unwrap()
            .iter()
            .all(|p| p.peer_id != evil_id),
        "node 0 still lists the adversary"
    );
    // The honest network keeps producing blocks.
    let h = height_now(a).await;
    wait_for(60, "blocks after the adversary", || async {
        height(a).await.unwrap_or(0) >= h + 3
    })
    .await;
    let _ = evil.shutdown().await;
}

#[test]
#[ignore = "a multi-process devnet with real proofs: minutes"]
fn devnet_produces_blocks_survives_a_kill_and_a_split() {
    let _one = crate::one_at_a_time();
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
        "--epoch-seconds",
        &crate::common::epoch_seconds(EPOCH_SECONDS).to_string(),
        "--params-dir",
        params.to_str().unwrap(),
    ]);
    let _guard = Devnet(dir.clone());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(j["miners"].as_array().unwrap().len(), 2);
    for m in j["miners"].as_array().unwrap() {
        // Each miner's `rpc` is the provider's own API, with its own token.
        let rpc = m["rpc"].as_str().unwrap();
        assert!(rpc.starts_with("http://127.0.0.1:"), "{m}");
        assert!(
            j["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|n| n["rpc"] != rpc)
        );
        let token = dir.join(m["token_file"].as_str().unwrap());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&token).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    for n in j["nodes"].as_array().unwrap() {
        assert!(n["rpc"].as_str().unwrap().starts_with("http://127.0.0.1:"));
        assert!(n["metrics"].as_str().unwrap().ends_with("/metrics"));
        let ma = n["multiaddr"].as_str().unwrap();
        assert!(ma.ends_with(&format!("/p2p/{}", n["peer_id"].as_str().unwrap())));
        let token = dir.join(n["token_file"].as_str().unwrap());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&token).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (a, b) = (node_client(&dir, 0), node_client(&dir, 1));
        // Blocks on both nodes, the same chain.
        wait_for(180, "height 4 on both nodes", || async {
            height(&a).await.unwrap_or(0) >= 4 && height(&b).await.unwrap_or(0) >= 4
        })
        .await;
        wait_for(60, "agreement at epoch 3", || agree_at(&a, &b, 3)).await;
        // Every genesis miner has its power.
        for m in j["miners"].as_array().unwrap() {
            let id = m["actor"].as_str().unwrap()[2..].parse::<u64>().unwrap();
            let p = a
                .state_miner_power(lode_chain::types::ActorId(id))
                .await
                .unwrap();
            assert!(p.power.raw > 0, "{m}: {p:?}");
        }
        // The daemons' metrics: the providers' sector stores and blocks, the nodes' chain.
        for m in j["miners"].as_array().unwrap() {
            let body = metrics(m["metrics"].as_str().unwrap());
            assert_eq!(metric(&body, "lode_provider_sectors"), Some(2.0), "{body}");
            assert!(metric(&body, "lode_provider_winning_post_seconds_count") > Some(0.0));
            lode_testkit::metrics::promtool_check(&body);
        }
        for n in j["nodes"].as_array().unwrap() {
            let body = metrics(n["metrics"].as_str().unwrap());
            assert!(metric(&body, "lode_chain_height") >= Some(4.0), "{body}");
            lode_testkit::metrics::promtool_check(&body);
        }
        // The providers' own API: the first miner's deadlines through `lode provider proving`.
        let out = lode(&["provider", "proving", "--devnet", &d, "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let proving: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(proving["actor"], j["miners"][0]["actor"], "{proving}");
        assert!(proving["head_epoch"].as_u64() >= Some(1), "{proving}");
        let deadlines = proving["deadlines"].as_array().unwrap();
        assert!(!deadlines.is_empty(), "{proving}");
        let mut sectors = 0;
        for dl in deadlines {
            assert!(dl["open"].as_u64() < dl["close"].as_u64(), "{dl}");
            assert!(dl["partitions"].as_u64() >= Some(1), "{dl}");
            let state = dl["state"].as_str().unwrap();
            assert!(
                ["waiting", "proving", "proved", "submitted", "confirmed"].contains(&state),
                "{dl}"
            );
            sectors += dl["sectors"].as_u64().unwrap();
        }
        assert_eq!(sectors, 2, "{proving}");

        // kill -9 node 1, restart it: it reopens at a committed head and catches up.
        let pid = devnet_json(&dir)["nodes"][1]["pid"].as_u64().unwrap();
        kill_9(pid as u32, None);
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Killed when the test ends however it ends (`devnet stop` also knows its pid now).
        let mut restarted = Reaped(restart(&dir, Role::Node(1)));
        let b = node_client(&dir, 1);
        let back = Instant::now();
        while height(&b).await.is_none() {
            if let Ok(Some(status)) = restarted.0.try_wait() {
                panic!(
                    "the restarted node exited ({status}):\n{}",
                    log_tail(&dir.join("logs/node-1.log"), 40)
                );
            }
            assert!(
                back.elapsed() < Duration::from_secs(60),
                "node 1 not back after 60 s:\n{}",
                log_tail(&dir.join("logs/node-1.log"), 40)
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let target = height_now(&a).await + 2;
        wait_for(180, "node 1 caught up", || async {
            height(&b).await.unwrap_or(0) >= target
        })
        .await;
        wait_for(60, "agreement after the restart", || async {
            agree_at(&a, &b, target - 1).await
        })
        .await;

        // A split: node 0 blocks node 1; each side keeps its miner and builds its own fork.
        let peer_b = b.net_info().await.unwrap().peer_id;
        a.net_block_peer(&peer_b).await.unwrap();
        let split = height_now(&a).await;
        wait_for(120, "both sides advancing apart", || async {
            height(&a).await.unwrap_or(0) >= split + 3 && height(&b).await.unwrap_or(0) >= split + 3
        })
        .await;
        // Heal: the nodes reconnect and converge on the heavier fork.
        a.net_unblock_peer(&peer_b).await.unwrap();
        let addr = devnet_json(&dir)["nodes"][1]["multiaddr"]
            .as_str()
            .unwrap()
            .to_string();
        let _ = a.net_connect(&addr).await;
        wait_for(240, "convergence after the split", || async {
            let (Some(ha), Some(hb)) = (height(&a).await, height(&b).await) else {
                return false;
            };
            let e = ha.min(hb).saturating_sub(1);
            e > split + 3 && agree_at(&a, &b, e).await
        })
        .await;

        adversary(&dir, &a).await;

        drop(restarted);
    });
    // A clean stop.
    let out = lode(&["devnet", "stop", "--dir", &d]);
    assert!(out.status.success());
}
