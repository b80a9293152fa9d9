//! The deal market on a devnet, as a client and two providers use it: the client imports a
//! directory, makes an unverified deal with one provider and a verified deal (DataCap) with the
//! other, both providers fetch the data from the client over HTTP, publish the deals, seal them
//! into deal sectors with real proofs and activate them; the verified sector's quality-adjusted
//! power is 10× its verified bytes, the providers' escrow grows as the deals are paid, `curl`
//! ranges of `/piece/<piece CID>` are the payload's bytes, and `lode client retrieve` gives the
//! directory back byte for byte.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lode_chain::types::{ActorId, Address};

mod common;
use common::{Devnet, devnet_json, lode, log_tail, node_client, ok, params_dir};

/// Every file under `root`, by relative path, with its bytes.
fn tree(root: &Path) -> Vec<(String, Vec<u8>)> {
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

fn curl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("curl")
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

#[test]
#[ignore = "a devnet whose two providers seal deal sectors for real: minutes"]
fn a_client_stores_a_directory_with_two_providers_and_gets_it_back() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let d = dir.to_str().unwrap().to_string();
    let client_dir = tmp.path().join("client");
    let cd = client_dir.to_str().unwrap().to_string();
    let params = params_dir();
    let j = ok(&lode(&[
        "devnet",
        "--dir",
        &d,
        "--detach",
        "--json",
        "--nodes",
        "1",
        "--miners",
        "2",
        "--epoch-seconds",
        "1",
        "--period-deadlines",
        "8",
        "--params-dir",
        params.to_str().unwrap(),
    ]));
    let _guard = Devnet(dir.clone());
    let actors: Vec<ActorId> = (0..2)
        .map(|i| {
            ActorId(
                j["miners"][i]["actor"].as_str().unwrap()[2..]
                    .parse()
                    .unwrap(),
            )
        })
        .collect();
    let logs: Vec<_> = (0..2)
        .map(|i| dir.join(j["miners"][i]["log"].as_str().unwrap()))
        .collect();
    let client = node_client(&dir, 0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let wait = |secs: u64, what: &str, cond: &mut dyn FnMut() -> bool| {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "timed out after {secs} s waiting for {what}\nminer-0:\n{}\nminer-1:\n{}",
                log_tail(&logs[0], 30),
                log_tail(&logs[1], 30)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    let power = |a: ActorId| {
        rt.block_on(client.state_miner_power(a))
            .ok()
            .map(|p| p.power)
    };

    // Both providers are up, and each has announced its market on chain: its peer id, its
    // libp2p address and its retrieval server (`…/http`).
    wait(180, "both markets announced on chain", &mut || {
        actors.iter().all(|a| {
            rt.block_on(client.state_miner_info(*a)).is_ok_and(|i| {
                i.peer_id.is_some() && i.multiaddrs.iter().any(|m| m.ends_with("/http"))
            })
        })
    });
    let j = devnet_json(&dir);
    let mut retrieval_urls = Vec::new();
    for (i, a) in actors.iter().enumerate() {
        let m = ok(&lode(&[
            "provider",
            "market",
            "--dir",
            dir.join(j["miners"][i]["dir"].as_str().unwrap())
                .to_str()
                .unwrap(),
            "--json",
        ]));
        let info = rt.block_on(client.state_miner_info(*a)).unwrap();
        assert_eq!(m["peer_id"].as_str(), info.peer_id.as_deref(), "{m}");
        assert_eq!(
            m["addrs"],
            serde_json::to_value(&info.multiaddrs).unwrap(),
            "{m}"
        );
        retrieval_urls.push(m["retrieval_url"].as_str().unwrap().to_string());
    }
    eprintln!(
        "devnet and markets up in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The client's directory: a few files, one in a subdirectory, small enough for a 2 KiB
    // sector's piece once packed.
    let src = tmp.path().join("photos");
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
        &cd,
        "--json",
    ]));
    let root = import["payload_root"].as_str().unwrap().to_string();
    let piece = import["piece_cid"].as_str().unwrap().to_string();
    let piece_size = import["padded_piece_size"].as_u64().unwrap();
    let car = std::fs::read(client_dir.join(import["car_path"].as_str().unwrap())).unwrap();
    assert!(piece_size <= 2048, "{import}");

    // Escrow for both deals, then the deals: unverified with miner-0, verified with miner-1.
    ok(&lode(&[
        "client", "balance", "add", "1", "--devnet", &d, "--json",
    ]));
    let before = [power(actors[0]).unwrap(), power(actors[1]).unwrap()];
    // Deals start 150 epochs from now: room to seal and prove a deal sector; they are paid
    // from then on.
    let start = (rt.block_on(client.chain_head()).unwrap().epoch + 150).to_string();
    let mut deals = Vec::new();
    for (i, verified) in [(0, false), (1, true)] {
        let provider = actors[i].to_string();
        let mut args = vec![
            "client",
            "deal",
            "--provider",
            &provider,
            "--piece",
            &root,
            "--duration",
            "100000",
            "--start-epoch",
            &start,
            "--devnet",
            &d,
            "--client-dir",
            &cd,
            "--json",
        ];
        if verified {
            args.push("--verified");
        }
        let out = lode(&args);
        assert!(
            out.status.success(),
            "deal with miner-{i}: {}\nminer log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            log_tail(&logs[i], 40)
        );
        let deal: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        eprintln!("deal with miner-{i} published: {deal}");
        deals.push(deal);
    }

    // Both deals become active: sealed, pre-committed, prove-committed with real proofs.
    let mut listed = serde_json::Value::Null;
    wait(900, "both deals active", &mut || {
        listed = ok(&lode(&[
            "client",
            "deals",
            "--devnet",
            &d,
            "--client-dir",
            &cd,
            "--json",
        ]));
        listed
            .as_array()
            .is_some_and(|a| a.len() == 2 && a.iter().all(|x| x["state"] == "active"))
    });
    eprintln!(
        "both deals active {:.1} s after the start: {listed}",
        started.elapsed().as_secs_f64()
    );
    let provider_deals = ok(&lode(&["provider", "deals", "--devnet", &d, "--json"]));
    assert_eq!(provider_deals[0]["status"], "active", "{provider_deals}");

    // The verified sector's QA power: the sector's raw bytes plus 9× the verified piece's (10×
    // for those bytes), once its deadline has proven it; the unverified one counts 1×.
    wait(400, "the deal sectors' power", &mut || {
        let now = [power(actors[0]).unwrap(), power(actors[1]).unwrap()];
        now[0].raw == before[0].raw + 2048
            && now[1].raw == before[1].raw + 2048
            && now[0].qa == before[0].qa + 2048
            && now[1].qa == before[1].qa + 2048 + 9 * u128::from(piece_size)
    });

    // Payments: the providers' escrow grows as the deals are settled, epoch after epoch.
    let escrow = |a: ActorId| {
        rt.block_on(client.state_market_balance(&Address::Id(a)))
            .unwrap()
            .balance
    };
    let first = escrow(actors[0]);
    wait(300, "the unverified deal's payments", &mut || {
        escrow(actors[0]) > first
    });
    let second = escrow(actors[0]);
    wait(60, "more payments", &mut || escrow(actors[0]) > second);

    // Retrieval: ranges of the piece are the payload's (the CAR's) bytes.
    let url = format!("{}/piece/{piece}", retrieval_urls[0]);
    assert_eq!(curl(&[&url]), car);
    assert_eq!(curl(&["-r", "0-99", &url]), car[..100].to_vec());
    let tail = car.len() - 10;
    assert_eq!(
        curl(&["-r", &format!("{tail}-"), &url]),
        car[tail..].to_vec()
    );

    // And the client gets its directory back, byte for byte, from the verified provider.
    let out = tmp.path().join("restored");
    let r = lode(&[
        "client",
        "retrieve",
        &root,
        "-o",
        out.to_str().unwrap(),
        "--provider",
        &actors[1].to_string(),
        "--devnet",
        &d,
        "--client-dir",
        &cd,
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(tree(&out), tree(&src));
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
}
