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

use lode_chain::types::{ActorId, Address};

mod common;
use common::deals::{DealNet, curl, tree};
use common::{lode, log_tail, ok};

#[test]
#[ignore = "a devnet whose two providers seal deal sectors for real: minutes"]
fn a_client_stores_a_directory_with_two_providers_and_gets_it_back() {
    let tmp = tempfile::tempdir().unwrap();
    // Both providers are up, and each has announced its market on chain: its peer id, its
    // libp2p address and its retrieval server (`…/http`).
    let net = DealNet::start(tmp.path(), 1, &[]);
    let (actors, logs) = (&net.actors, &net.logs);
    let (client, rt) = (&net.node, &net.rt);
    let wait = |secs: u64, what: &str, cond: &mut dyn FnMut() -> bool| net.wait(secs, what, cond);
    let power = |a: ActorId| {
        rt.block_on(client.state_miner_power(a))
            .ok()
            .map(|p| p.power)
    };

    let mut retrieval_urls = Vec::new();
    for (i, a) in actors.iter().enumerate() {
        let m = net.market(i);
        let info = rt.block_on(client.state_miner_info(*a)).unwrap();
        assert_eq!(m["peer_id"].as_str(), info.peer_id.as_deref(), "{m}");
        assert_eq!(
            m["addrs"],
            serde_json::to_value(&info.multiaddrs).unwrap(),
            "{m}"
        );
        retrieval_urls.push(m["retrieval_url"].as_str().unwrap().to_string());
    }
    eprintln!("devnet and markets up in {:.1} s", net.secs());

    // The client's directory: a few files, one in a subdirectory, small enough for a 2 KiB
    // sector's piece once packed.
    let import = net.import_photos(tmp.path());
    let (root, piece, piece_size, car) =
        (&import.root, &import.piece, import.piece_size, &import.car);
    assert!(piece_size <= 2048, "piece of {piece_size} bytes");

    // Escrow for both deals, then the deals: unverified with miner-0, verified with miner-1.
    net.add_escrow("1");
    let before = [power(actors[0]).unwrap(), power(actors[1]).unwrap()];
    // Deals start 150 epochs from now: room to seal and prove a deal sector; they are paid
    // from then on.
    let start = net.head() + 150;
    let mut deals = Vec::new();
    for (i, verified) in [(0, false), (1, true)] {
        let args = net.deal_args(i, root, start, verified);
        let out = lode(&args.iter().map(String::as_str).collect::<Vec<_>>());
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
        listed = net.client_deals();
        listed
            .as_array()
            .is_some_and(|a| a.len() == 2 && a.iter().all(|x| x["state"] == "active"))
    });
    eprintln!(
        "both deals active {:.1} s after the start: {listed}",
        net.secs()
    );
    let provider_deals = ok(&lode(&["provider", "deals", "--devnet", &net.d, "--json"]));
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
    assert_eq!(&curl(&[&url]), car);
    assert_eq!(curl(&["-r", "0-99", &url]), car[..100].to_vec());
    let tail = car.len() - 10;
    assert_eq!(
        curl(&["-r", &format!("{tail}-"), &url]),
        car[tail..].to_vec()
    );

    // And the client gets its directory back, byte for byte, from the verified provider.
    let out = tmp.path().join("restored");
    net.retrieve(root, 1, &out);
    assert_eq!(tree(&out), tree(&import.src));
    eprintln!("done in {:.1} s", net.secs());
}
