//! A storage provider killed with SIGKILL in the middle of a deal loses nothing and publishes
//! nothing twice. On a one-node, two-miner devnet whose providers let a transferred deal wait 10
//! epochs for others before publishing it (`lode devnet --publish-wait-epochs 10`), the client
//! imports a directory and makes a deal with miner 0 (`lode client deal`, the CAR served by the
//! command, which waits for the publication all along):
//!
//! 1. once the provider's record says `transferred` (the data received and its CommP checked),
//!    with nothing on chain yet, the provider is killed with SIGKILL; its record (read from its
//!    database while it is down) is still `transferred` with no publication, and the payload in
//!    its scratch directory is the client's CAR byte for byte; it is started again, as `lode
//!    devnet` starts it, and publishes the deal: `lode client deal` returns it published;
//! 2. once the record is past its publication and not active yet (`published`, `handed_off` or
//!    `sealing`), the provider is killed again: on disk the record keeps its deal id and its
//!    publication message; it is started again.
//!
//! Then the deal becomes active with that same deal id, its sector sealed with real proofs, and:
//! on chain the provider has exactly this one deal, active in the sector the provider's records
//! and its pipeline name (the pipeline holds its piece once); walking every block finds exactly
//! one `PublishDeals` carrying the proposal — the message the provider recorded — executed
//! successfully, and no other publication; the provider's log says it published once; `lode
//! client deals` says active; `curl` of `/piece/<piece CID>` is the CAR and `lode client
//! retrieve` (the piece's CommP checked, every block re-hashed) gives the directory back byte
//! for byte. Two miners, so that blocks keep coming while miner 0 is down; 2-second epochs, so
//! that a provider just restarted still proves its deadline in time (with 1-second epochs, two
//! Window PoSts that miss their deadline on a loaded machine leave the network without power, and
//! the chain stops).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lode_chain::actors::MARKET;
use lode_chain::actors::market::{ClientDealProposal, MarketMethod};
use lode_chain::message::Method;
use lode_chain::types::{Address, DealId};
use lode_market::provider::records::{DealRecords, DealStatus, ProviderDeal};
use lode_market::transfer::Scratch;
use lode_provider::run::ProviderSettings;

use crate::common::deals::{DealNet, curl, tree};
use crate::common::{Reaped, Role, devnet_json, kill_9, log_tail, provider_client, restart};

/// Seconds per epoch.
const EPOCH_SECONDS: u64 = 2;
/// How long a transferred deal waits before its publication: the window for the first kill.
const PUBLISH_WAIT_EPOCHS: &str = "10";

/// The provider's deal record and payload as they are on disk (the provider must be down: the
/// database is one process's at a time).
fn on_disk(miner_dir: &Path) -> (Vec<ProviderDeal>, Scratch) {
    let settings = ProviderSettings::load(miner_dir).unwrap();
    let records = DealRecords::open(miner_dir.join(&settings.market.db)).unwrap();
    let list = records.list().unwrap();
    (
        list,
        Scratch::open(miner_dir.join(&settings.market.scratch)).unwrap(),
    )
}

#[test]
#[ignore = "a devnet whose provider is killed twice during a deal sealed with real proofs: minutes"]
fn a_provider_killed_mid_deal_publishes_it_once_and_loses_nothing() {
    let _one = crate::one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let net = DealNet::start(
        tmp.path(),
        EPOCH_SECONDS,
        &["--publish-wait-epochs", PUBLISH_WAIT_EPOCHS],
    );
    let miner = net.actors[0];
    let miner_dir = net.miner_dir(0);
    let log = &net.logs[0];
    let rt = &net.rt;
    let node = &net.node;
    // The provider's API keeps its address across restarts; no token needed to read.
    let api = provider_client(&net.dir, 0, Duration::from_secs(2));
    let records = || rt.block_on(api.deals()).ok();
    eprintln!("devnet and markets up in {:.1} s", net.secs());

    let import = net.import_photos(tmp.path());
    net.add_escrow("1");
    // Room to publish after the wait and two restarts, then to seal and prove the deal sector.
    let start = net.head() + 200;
    let args = net.deal_args(0, &import.root, start, false);
    let out_path = tmp.path().join("deal.out");
    let err_path = tmp.path().join("deal.err");
    let mut deal_cmd = Reaped(
        Command::new(env!("CARGO_BIN_EXE_lode"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap(),
    );

    // 1. Accepted, data received and checked, not published: the record says `transferred`.
    let mut seen = None;
    net.wait(120, "the deal transferred", &mut || {
        let Some(list) = records() else {
            return false;
        };
        assert!(list.len() <= 1, "one deal only: {list:?}");
        let Some(d) = list.into_iter().next() else {
            return false;
        };
        assert!(
            matches!(
                d.status,
                DealStatus::Accepted | DealStatus::Transferring | DealStatus::Transferred
            ),
            "the deal went past `transferred` before the kill (or failed): {d:?}"
        );
        let done = d.status == DealStatus::Transferred;
        seen = Some(d);
        done
    });
    let accepted = seen.unwrap();
    let uuid = accepted.uuid;
    let on_chain = |node: &lode_node::rpc::client::NodeClient| {
        rt.block_on(node.state_market_deals(Some(miner), None, 0))
            .unwrap()
    };
    assert!(on_chain(node).is_empty(), "published before the kill");
    let pid = devnet_json(&net.dir)["miners"][0]["pid"].as_u64().unwrap() as u32;
    kill_9(pid, None);
    let killed_1 = Instant::now();
    {
        let (list, scratch) = on_disk(&miner_dir);
        assert_eq!(list.len(), 1, "{list:?}");
        let d = &list[0];
        assert_eq!(d.uuid, uuid);
        assert_eq!(d.status, DealStatus::Transferred, "{d:?}");
        assert!(d.publish.is_none() && d.deal_id.is_none(), "{d:?}");
        assert_eq!(d.proposal, accepted.proposal);
        assert_eq!(
            std::fs::read(scratch.payload(&uuid)).unwrap(),
            import.car,
            "the received payload after the kill"
        );
    }
    assert!(on_chain(node).is_empty(), "published by a killed provider");
    eprintln!(
        "kill 1 at {:.1} s: deal {uuid} transferred, not published; record and payload intact",
        net.secs()
    );
    let mut provider = Reaped(restart(&net.dir, Role::Provider(0)));

    // The restarted provider publishes it; the client, waiting all along, sees it on chain.
    let t = Instant::now();
    let status = loop {
        if let Some(status) = deal_cmd.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "`lode client deal` still waits for the publication\nminer-0:\n{}",
            log_tail(log, 40)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let client_out = std::fs::read_to_string(&out_path).unwrap();
    assert!(
        status.success(),
        "lode client deal: {status}\n{client_out}\n{}\nminer-0:\n{}",
        std::fs::read_to_string(&err_path).unwrap(),
        log_tail(log, 40)
    );
    let client_deal: serde_json::Value = serde_json::from_str(&client_out).unwrap();
    eprintln!(
        "published {:.1} s after kill 1: {client_deal}",
        killed_1.elapsed().as_secs_f64()
    );
    let deal_id: DealId = client_deal["deal_id"].as_u64().unwrap();
    assert_eq!(client_deal["uuid"], uuid.to_string());

    // 2. Published, not active: killed again.
    let mut seen = None;
    net.wait(120, "the deal published by the provider", &mut || {
        let Some(d) = records().and_then(|l| l.into_iter().find(|d| d.uuid == uuid)) else {
            return false;
        };
        assert!(
            !matches!(d.status, DealStatus::Active | DealStatus::Failed),
            "the deal went past sealing before the second kill (or failed): {d:?}"
        );
        let past = matches!(
            d.status,
            DealStatus::Published | DealStatus::HandedOff | DealStatus::Sealing
        );
        seen = Some(d);
        past
    });
    let published = seen.unwrap();
    assert_eq!(published.deal_id, Some(deal_id), "{published:?}");
    let message = published.publish.as_ref().unwrap().id;
    kill_9(provider.0.id(), Some(&mut provider.0));
    {
        let (list, _) = on_disk(&miner_dir);
        assert_eq!(list.len(), 1, "{list:?}");
        let d = &list[0];
        assert_eq!(d.deal_id, Some(deal_id), "{d:?}");
        assert_eq!(d.publish.as_ref().map(|p| p.id), Some(message), "{d:?}");
        assert!(
            d.status >= published.status && d.status < DealStatus::Active,
            "{d:?}"
        );
    }
    eprintln!(
        "kill 2 at {:.1} s: deal {deal_id} {}",
        net.secs(),
        published.status
    );
    let provider = Reaped(restart(&net.dir, Role::Provider(0)));

    // Active, with the same deal id.
    let mut last = None;
    net.wait(600, "the deal active", &mut || {
        last = records().and_then(|l| l.into_iter().find(|d| d.uuid == uuid));
        let Some(d) = &last else {
            return false;
        };
        assert_ne!(d.status, DealStatus::Failed, "{d:?}");
        d.status == DealStatus::Active
    });
    let active = last.unwrap();
    eprintln!(
        "deal {deal_id} active at {:.1} s in sector {:?}, published by {}",
        net.secs(),
        active.sector,
        hex::encode(message)
    );
    assert_eq!(active.deal_id, Some(deal_id));
    assert_eq!(active.publish.as_ref().map(|p| p.id), Some(message));
    let sector = active.sector.unwrap();
    let pieces = rt.block_on(api.deal_pieces(Some(&[deal_id]))).unwrap();
    assert_eq!(pieces.len(), 1, "{pieces:?}");
    assert_eq!(pieces[0].sector, Some(sector), "{pieces:?}");

    // On chain: this one deal, active in that sector.
    let deals = on_chain(node);
    assert_eq!(deals.len(), 1, "{deals:?}");
    assert_eq!(deals[0].deal_id, deal_id);
    assert_eq!(deals[0].piece_cid, import.piece);
    assert_eq!(deals[0].state, "active", "{deals:?}");
    assert_eq!(deals[0].sector, Some(sector));
    net.wait(120, "`lode client deals` to say active", &mut || {
        net.client_deals()
            .as_array()
            .is_some_and(|a| a.len() == 1 && a[0]["state"] == "active")
    });

    // Every block: the publications, and the one that carries this proposal.
    let proposal: ClientDealProposal = active.proposal.clone();
    let (carrying, others) = rt.block_on(async {
        let head = node.chain_head().await.unwrap().epoch;
        let mut seen = BTreeSet::new();
        let mut carrying = Vec::new();
        let mut others = Vec::new();
        for epoch in 0..=head {
            let Some(ts) = node.chain_tipset_by_height(epoch).await.unwrap() else {
                continue;
            };
            for block in &ts.key {
                for m in node
                    .chain_get_messages(block)
                    .await
                    .unwrap()
                    .unwrap_or_default()
                {
                    let Method::Market(MarketMethod::PublishDeals(deals)) = &m.message.method
                    else {
                        continue;
                    };
                    if m.message.to != Address::Id(MARKET) || !seen.insert(m.id) {
                        continue;
                    }
                    let found = node.state_search_msg(m.id).await.unwrap();
                    let outcome = found.map(|f| (f.epoch, f.receipt.ok(), f.receipt.error));
                    if deals.contains(&proposal) {
                        carrying.push((m.id, deals.len(), outcome));
                    } else {
                        others.push((m.id, deals.len(), outcome));
                    }
                }
            }
        }
        (carrying, others)
    });
    assert_eq!(
        carrying.len(),
        1,
        "publications of the proposal: {carrying:?}"
    );
    let (id, n, outcome) = &carrying[0];
    assert_eq!(
        *id, message,
        "the publication is the one the provider recorded"
    );
    assert_eq!(*n, 1);
    assert!(
        outcome.as_ref().is_some_and(|o| o.1),
        "the publication's receipt: {outcome:?}"
    );
    assert!(others.is_empty(), "other publications: {others:?}");
    let text = std::fs::read_to_string(log).unwrap();
    let published_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("deals published"))
        .collect();
    assert_eq!(
        published_lines.len(),
        1,
        "the provider's log: {published_lines:?}"
    );
    assert!(published_lines[0].contains(&hex::encode(message)));
    let starts = text
        .lines()
        .filter(|l| l.contains("provider started"))
        .count();
    assert_eq!(starts, 3, "the provider's starts");

    // The data: the piece from the retrieval server the restarted provider announced, and the
    // directory through `lode client retrieve`. The retrieval server serves pieces of proving
    // sectors: the deal is active from its prove-commit, its sector proving after Finalize.
    net.wait(60, "the piece's sector proving", &mut || {
        rt.block_on(api.piece_location(&import.piece))
            .is_ok_and(|l| l.is_some_and(|l| l.sector == sector))
    });
    let mut market = serde_json::Value::Null;
    net.wait(120, "the restarted market announced on chain", &mut || {
        market = net.market(0);
        rt.block_on(node.state_miner_info(miner)).is_ok_and(|i| {
            market["peer_id"].as_str() == i.peer_id.as_deref()
                && market["addrs"] == serde_json::to_value(&i.multiaddrs).unwrap()
        })
    });
    let url = format!(
        "{}/piece/{}",
        market["retrieval_url"].as_str().unwrap(),
        import.piece
    );
    assert_eq!(curl(&[&url]), import.car, "the piece");
    let out = tmp.path().join("restored");
    net.retrieve(&import.root, 0, &out);
    assert_eq!(tree(&out), tree(&import.src));
    let wall = net.secs();
    eprintln!("done in {wall:.1} s");
    eprintln!(
        "BENCH devnet-deals-kill kill2_state={} wall_s={wall:.0}",
        published.status
    );
    drop(provider);
}
