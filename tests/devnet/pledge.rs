//! An operator's pledge on a devnet, as a user runs it: `lode sectors pledge --count 4 --wait`
//! against a running `lode devnet` brings four new committed-capacity sectors through the
//! provider's sealing pipeline — real SDR sealing, a real PoRep checked by the node, pre-commit and
//! prove-commit messages in blocks — to `Proving`, and their power appears on chain once their
//! deadlines' Window PoSts prove them. `lode sectors list` and `lode sectors status` show them.
//! Then `lode sectors extend` moves one sector's expiration on chain, and `lode sectors
//! terminate --really-do-it` ends another: `Terminated`, its fee reported, the miner's power down
//! by exactly its QA power.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::time::{Duration, Instant};

use lode_chain::types::ActorId;

use crate::common::{Devnet, lode, log_tail, node_client, ok, params_dir};

#[test]
#[ignore = "a devnet sealing four sectors for real: minutes"]
fn pledged_sectors_reach_proving_and_gain_power() {
    let _one = crate::one_at_a_time();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let d = dir.to_str().unwrap().to_string();
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
        "1",
        "--epoch-seconds",
        &crate::common::epoch_seconds(1).to_string(),
        "--period-deadlines",
        "8",
        "--params-dir",
        params.to_str().unwrap(),
    ]));
    let _guard = Devnet(dir.clone());
    let miner = &j["miners"][0];
    let actor = ActorId(miner["actor"].as_str().unwrap()[2..].parse().unwrap());
    let provider_log = dir.join(miner["log"].as_str().unwrap());
    let client = node_client(&dir, 0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let power = || {
        rt.block_on(client.state_miner_power(actor))
            .ok()
            .map(|p| p.power.raw)
    };
    let wait = |secs: u64, what: &str, cond: &mut dyn FnMut() -> bool| {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "timed out after {secs} s waiting for {what}\nprovider log:\n{}",
                log_tail(&provider_log, 40)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    let mut before = 0;
    wait(120, "the genesis sectors' power", &mut || {
        before = power().unwrap_or(0);
        before > 0
    });
    let genesis_sectors = u64::try_from(before / 2048).unwrap();
    eprintln!(
        "devnet up in {:.1} s: {genesis_sectors} genesis sectors",
        started.elapsed().as_secs_f64()
    );

    // Pledge four sectors and wait for them to be proving.
    let pledge_start = Instant::now();
    let out = lode(&[
        "sectors",
        "pledge",
        "--count",
        "4",
        "--wait",
        "--timeout",
        "600",
        "--devnet",
        &d,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}\nprovider log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        log_tail(&provider_log, 40)
    );
    let proving: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let numbers: Vec<u64> = proving
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["state"], "Proving", "{s}");
            assert!(
                s["pre_commit"].is_string() && s["prove_commit"].is_string(),
                "{s}"
            );
            s["sector_number"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(numbers.len(), 4);
    let first = genesis_sectors;
    assert_eq!(numbers, (first..first + 4).collect::<Vec<_>>());
    let sealed_in = pledge_start.elapsed().as_secs_f64();
    eprintln!("4 sectors Proving {sealed_in:.1} s after the pledge");

    // Their power appears once their deadlines prove them (at most a proving period).
    wait(400, "the pledged sectors' power", &mut || {
        power() == Some(before + 4 * 2048)
    });
    let powered_in = pledge_start.elapsed().as_secs_f64();
    eprintln!("their power on chain {powered_in:.1} s after the pledge");

    // The operator's views.
    let list = ok(&lode(&["sectors", "list", "--devnet", &d, "--json"]));
    let on_chain: Vec<&serde_json::Value> = list["sectors"]["sectors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| numbers.contains(&s["sector_number"].as_u64().unwrap()))
        .collect();
    assert_eq!(on_chain.len(), 4, "{list}");
    for s in on_chain {
        assert_eq!(s["chain"]["status"], "active", "{s}");
        assert_eq!(s["readable"], true, "{s}");
    }
    let text = lode(&["sectors", "list", "--devnet", &d]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert_eq!(text.matches("Proving").count(), 4, "{text}");
    let st = ok(&lode(&[
        "sectors",
        "status",
        &first.to_string(),
        "--devnet",
        &d,
        "--json",
    ]));
    assert_eq!(st["pipeline"]["state"], "Proving", "{st}");
    let states: Vec<&str> = st["pipeline"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["to"].as_str().unwrap())
        .collect();
    assert_eq!(states.len(), 12, "every step once: {states:?}");
    assert_eq!(states.last(), Some(&"Proving"));
    // Sealed in the provider's scratch, then moved by Finalize into its sector store.
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("devnet.json")).unwrap()).unwrap();
    let miner_dir = dir.join(j["miners"][0]["dir"].as_str().unwrap());
    let in_store = miner_dir.join("sectors").join(format!(
        "s-{}-{first}",
        j["miners"][0]["actor"]
            .as_str()
            .unwrap()
            .trim_start_matches("l0")
    ));
    // As the provider names it: relative to its working directory (the devnet's), or absolute.
    let reported = dir.join(st["pipeline"]["dir"].as_str().unwrap());
    assert_eq!(reported, in_store, "{st}");
    let scratch: Vec<_> = std::fs::read_dir(miner_dir.join("scratch"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(scratch.is_empty(), "nothing left in scratch: {scratch:?}");

    // The actor: its power and balances through the node; the owner withdraws.
    let info = ok(&lode(&["actor", "info", "--devnet", &d, "--json"]));
    assert_eq!(
        info["power"]["power"]["raw"],
        serde_json::json!((before + 4 * 2048).to_string()),
        "{info}"
    );
    let pledged = info["info"]["initial_pledge"].clone();
    assert_ne!(pledged, serde_json::json!("0"), "{info}");

    // Extend one sector: the chain's record carries the new expiration.
    let old_expiration = st["sector"]["chain"]["expiration"].as_u64().unwrap();
    let x = ok(&lode(&[
        "sectors",
        "extend",
        &first.to_string(),
        "--by",
        "100",
        "--devnet",
        &d,
        "--json",
    ]));
    assert_eq!(x["new_expiration"], old_expiration + 100, "{x}");
    assert_eq!(x["sectors"][0]["old_expiration"], old_expiration, "{x}");
    let st = ok(&lode(&[
        "sectors",
        "status",
        &first.to_string(),
        "--devnet",
        &d,
        "--json",
    ]));
    assert_eq!(
        st["sector"]["chain"]["expiration"],
        old_expiration + 100,
        "{st}"
    );

    // Terminate another: refused without the flag; with it the pipeline sends the message,
    // the sector ends `Terminated`, and the miner's power drops by exactly its QA power.
    let victim = (first + 1).to_string();
    let refused = lode(&["sectors", "terminate", &victim, "--devnet", &d]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--really-do-it"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let qa = || {
        rt.block_on(client.state_miner_power(actor))
            .ok()
            .map(|p| (p.power.raw, p.power.qa))
    };
    let (raw_before, qa_before) = qa().unwrap();
    let terminate_start = Instant::now();
    let t = lode(&[
        "sectors",
        "terminate",
        &victim,
        "--really-do-it",
        "--timeout",
        "300",
        "--devnet",
        &d,
        "--json",
    ]);
    assert!(
        t.status.success(),
        "{}\nprovider log:\n{}",
        String::from_utf8_lossy(&t.stderr),
        log_tail(&provider_log, 40)
    );
    let t: serde_json::Value = serde_json::from_slice(&t.stdout).unwrap();
    assert_eq!(t["pipeline"]["state"], "Terminated", "{t}");
    assert!(t["termination"]["message"].is_string(), "{t}");
    assert!(t["termination"]["fee"].is_string(), "{t}");
    assert!(t["sector"]["chain"].is_null(), "no longer on chain: {t}");
    let (raw_after, qa_after) = qa().unwrap();
    assert_eq!(raw_before - raw_after, 2048, "the sector's raw power");
    assert_eq!(
        qa_before - qa_after,
        2048,
        "a committed-capacity sector's QA power is its raw power"
    );
    eprintln!(
        "sector {victim} terminated {:.1} s after it was asked",
        terminate_start.elapsed().as_secs_f64()
    );
    let owner_key = dir.join("keys/owner-0.key");
    let w = ok(&lode(&[
        "actor",
        "withdraw",
        "1",
        "--devnet",
        &d,
        "--owner-key",
        owner_key.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(w["amount"], "1000000000000000000", "{w}");

    // A second provider created on the running chain by an operator: `lode provider init`
    // creates its miner actor (funded by the faucet's account) and writes its directory.
    let sp = tmp.path().join("sp");
    let faucet_key = dir.join("keys/faucet.key");
    let init = ok(&lode(&[
        "provider",
        "init",
        "--dir",
        sp.to_str().unwrap(),
        "--sector-size",
        "2KiB",
        "--owner-key",
        faucet_key.to_str().unwrap(),
        "--devnet",
        &d,
        "--params-dir",
        params.to_str().unwrap(),
        "--json",
    ]));
    let new_actor = init["actor"].as_str().unwrap().to_string();
    let settings = lode_provider::run::ProviderSettings::load(&sp).unwrap();
    assert_eq!(settings.actor, new_actor);
    let new_info = ok(&lode(&[
        "actor", "info", "--actor", &new_actor, "--devnet", &d, "--json",
    ]));
    assert_eq!(
        new_info["info"]["available"], "100000000000000000000",
        "{new_info}"
    );
    assert_eq!(new_info["info"]["sector_size_bytes"], 2048, "{new_info}");
    let again = lode(&[
        "provider",
        "init",
        "--dir",
        sp.to_str().unwrap(),
        "--sector-size",
        "2KiB",
        "--devnet",
        &d,
    ]);
    assert!(
        !again.status.success(),
        "a second init in the same directory is refused"
    );

    eprintln!(
        "BENCH devnet-pledge sectors=4 size=2KiB proving_s={sealed_in:.1} powered_s={powered_in:.1} sectors_per_hour={:.0}",
        4.0 * 3600.0 / sealed_in
    );
}
