//! The market end to end on a devnet, as a client, three providers and a verifier use it.
//!
//! **Deals.** The client imports a directory and stores it with all three providers: unverified
//! deals with miner-0 and miner-2, a verified deal (DataCap) with miner-1. The providers fetch the
//! data from the client over HTTP, publish the deals, seal them into deal sectors with real proofs
//! and activate them; the verified sector's quality-adjusted power is 10× its verified bytes, the
//! providers' escrow grows as the deals are paid, `curl` ranges of `/piece/<piece CID>` are the
//! payload's bytes, and `lode client retrieve` gives the directory back byte for byte.
//!
//! **Compute over the stored piece.** Three jobs running examples/jobs/wc.wat over it, submitted
//! with `lode job submit`:
//!
//! - job 0, `replicated(3)`, every provider honest: it settles with the right result (the line,
//!   word and byte counts of the piece's payload) and pays every provider;
//! - job 1, `replicated(3)`, miner-2 with a tampered executor: it is outvoted, loses its
//!   collateral (half to the client, half burnt), and the honest two are paid;
//! - job 2, `verifier` mode, miner-0 tampered: the verifier (`lode job verify`) re-runs the job
//!   from the piece it retrieves, disputes, and miner-0 is slashed while the client is refunded.
//!
//! Every settlement balances to the atto (what went in — escrow, collateral, bond — is what came
//! out), and the client downloads the final results with `lode job result` and checks them.
//!
//! One devnet serves both parts (2-second epochs: three miners proving on two cores), which keeps
//! the suite's time down.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::path::Path;
use std::process::{Command, Stdio};

use lode_chain::types::{ActorId, Address, TokenAmount};
use lode_node::rpc::types::{JobView, VerificationView};

use crate::common::deals::{DealNet, curl, tree};
use crate::common::{Reaped, lode, log_tail, ok};

/// The miner actors the genesis of a three-miner devnet gives (ids are handed out in a fixed
/// order), which the tamper variable must name before the devnet starts.
const MINERS: [u64; 3] = [108, 109, 110];

const PAYMENT: TokenAmount = TokenAmount(10_000_000_000_000_000);
const COLLATERAL: TokenAmount = TokenAmount(100_000_000_000_000_000);
const FEE: TokenAmount = TokenAmount(5_000_000_000_000_000);
const BOND: TokenAmount = TokenAmount(200_000_000_000_000_000);

fn spec(path: &Path, piece: &str, verification: &str, fee: bool) {
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/jobs/wc.wat");
    let fee = if fee {
        "\n  verifier_fee: \"0.005 LODE\""
    } else {
        ""
    };
    std::fs::write(
        path,
        format!(
            "name: wc
engine:
  type: wasm
  module: {}
  args: [data]
inputs:
  - piece: {piece}
    path: /inputs/data
resources: {{ fuel: 100000000, memory: 1MiB, timeout: 60s, output: 4KiB }}
verification: {verification}
payment:
  per_provider: \"0.01 LODE\"
  collateral: \"0.1 LODE\"
  deadline: 1{fee}
",
            module.display()
        ),
    )
    .unwrap();
}

/// `wc` of `bytes` as the example job counts: lines, words, bytes.
fn wc(bytes: &[u8]) -> String {
    let lines = bytes.iter().filter(|&&b| b == b'\n').count();
    let mut words = 0;
    let mut in_word = false;
    for &b in bytes {
        let space = matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
        if !space && !in_word {
            words += 1;
        }
        in_word = !space;
    }
    format!("{lines} {words} {}\n", bytes.len())
}

fn sum<'a>(amounts: impl IntoIterator<Item = &'a TokenAmount>) -> u128 {
    amounts.into_iter().map(|a| a.0).sum()
}

/// What went into the job (escrow, collateral, bond) is what came out, to the atto.
fn balances(job: &JobView) {
    let s = job.settlement.as_ref().expect("settled");
    let t = &job.terms;
    let k = match &t.verification {
        VerificationView::Replicated { k } => *k as u128,
        VerificationView::Verifier { .. } => 1,
    };
    let fee = match &t.verification {
        VerificationView::Verifier { fee, .. } => fee.0,
        VerificationView::Replicated { .. } => 0,
    };
    let bond = match &t.verification {
        VerificationView::Verifier { bond, .. } => bond.0,
        VerificationView::Replicated { .. } => 0,
    };
    let went_in = k * t.payment.0 + fee + k * t.provider_collateral.0 + bond;
    let came_out = sum(s.paid.iter().map(|(_, a)| a))
        + sum(s.returned.iter().map(|(_, a)| a))
        + s.refunded.0
        + s.to_client.0
        + s.burnt.0;
    assert_eq!(went_in, came_out, "job {}: {s:?}", job.job_id);
    assert_eq!(
        sum(s.slashed.iter().map(|(_, a)| a)),
        s.to_client.0 + s.burnt.0,
        "job {}: {s:?}",
        job.job_id
    );
}

fn amounts(list: &[(String, TokenAmount)]) -> Vec<(String, TokenAmount)> {
    let mut l = list.to_vec();
    l.sort();
    l
}

#[test]
#[ignore = "a devnet of three providers that seal deal sectors and run compute jobs: minutes"]
fn a_client_stores_a_directory_with_three_providers_gets_it_back_and_computes_over_it() {
    let _one = crate::one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let miner = |i: usize| ActorId(MINERS[i]).to_string();
    // Miner-2 lies about job 1's result and miner-0 about job 2's (tests only).
    let tamper = format!("{}:1,{}:2", miner(2), miner(0));
    let net = DealNet::start_miners(
        tmp.path(),
        2,
        3,
        &[],
        &[("LODE_TEST_TAMPER_JOB_RESULTS", &tamper)],
    );
    assert_eq!(
        net.actors,
        MINERS.map(ActorId).to_vec(),
        "the genesis gives the miners other ids now: update MINERS"
    );
    let (actors, logs) = (&net.actors, &net.logs);
    let (client, rt) = (&net.node, &net.rt);
    let power = |a: ActorId| {
        rt.block_on(client.state_miner_power(a))
            .ok()
            .map(|p| p.power)
    };
    // Every provider is up and has announced its market on chain: its peer id, its libp2p
    // address and its retrieval server (`…/http`).
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
    // sector's piece once packed; stored with all three providers, verified with miner-1.
    let import = net.import_photos(tmp.path());
    assert!(
        import.piece_size <= 2048,
        "piece of {} bytes",
        import.piece_size
    );
    net.add_escrow("1");
    let before: Vec<_> = actors.iter().map(|a| power(*a).unwrap()).collect();
    // Deals start 110 epochs from now: room to seal and prove the deal sectors; they are paid
    // from then on.
    let start = net.head() + 110;
    for (i, verified) in [(0, false), (1, true), (2, false)] {
        let args = net.deal_args(i, &import.root, start, verified);
        let out = lode(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            out.status.success(),
            "deal with miner-{i}: {}\nminer log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            log_tail(&logs[i], 40)
        );
    }
    // The deals become active: sealed, pre-committed, prove-committed with real proofs.
    net.wait(900, "the three deals active", &mut || {
        let listed = net.client_deals();
        listed
            .as_array()
            .is_some_and(|a| a.len() == 3 && a.iter().all(|x| x["state"] == "active"))
    });
    eprintln!("three deals active at {:.1} s", net.secs());
    let provider_deals = ok(&lode(&["provider", "deals", "--devnet", &net.d, "--json"]));
    assert_eq!(provider_deals[0]["status"], "active", "{provider_deals}");

    // The jobs.
    let replicated = tmp.path().join("wc.yaml");
    spec(
        &replicated,
        &import.piece,
        "{ replicated: { k: 3 } }",
        false,
    );
    let verifier_key = net.dir.join("keys/verifier.key");
    let verifier_addr = Address::Bls(
        lode_provider::run::read_key_file(&verifier_key)
            .unwrap()
            .public_key(),
    );
    let with_verifier = tmp.path().join("wc-verifier.yaml");
    spec(
        &with_verifier,
        &import.piece,
        &format!(
            "{{ verifier: {{ address: {verifier_addr}, provider: {}, bond: \"0.2 LODE\" }} }}",
            miner(0)
        ),
        true,
    );
    let submit = |spec: &Path| {
        ok(&lode(&[
            "job",
            "submit",
            spec.to_str().unwrap(),
            "--deadline-in",
            "16",
            "--devnet",
            &net.d,
            "--client-dir",
            &net.cd,
            "--json",
        ]))
    };
    let s0 = submit(&replicated);
    let s1 = submit(&replicated);
    let s2 = submit(&with_verifier);
    assert_eq!(
        [&s0["job_id"], &s1["job_id"], &s2["job_id"]],
        [0, 1, 2],
        "{s0} {s1} {s2}"
    );
    assert_eq!(s0["providers"].as_array().unwrap().len(), 3, "{s0}");
    assert_eq!(s2["providers"], serde_json::json!([miner(0)]), "{s2}");
    // The verifier takes its role (the provider takes the job only then), waits for the posted
    // result, re-runs the job and gives its verdict.
    let verify_out = tmp.path().join("verify.json");
    let verifier = Reaped(
        Command::new(env!("CARGO_BIN_EXE_lode"))
            .args([
                "job",
                "verify",
                "2",
                "--key",
                verifier_key.to_str().unwrap(),
                "--devnet",
                &net.d,
                "--client-dir",
                &net.cd,
                "--wait-timeout",
                "300",
                "--json",
            ])
            .stdout(std::fs::File::create(&verify_out).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );

    // While the jobs run: retrieval. Ranges of the piece are the payload's (the CAR's) bytes,
    // and the client gets its directory back, byte for byte, from the verified provider.
    let (piece, car) = (&import.piece, &import.car);
    let url = format!("{}/piece/{piece}", retrieval_urls[0]);
    assert_eq!(&curl(&[&url]), car);
    assert_eq!(curl(&["-r", "0-99", &url]), car[..100].to_vec());
    let tail = car.len() - 10;
    assert_eq!(
        curl(&["-r", &format!("{tail}-"), &url]),
        car[tail..].to_vec()
    );
    let restored = tmp.path().join("restored");
    net.retrieve(&import.root, 1, &restored);
    assert_eq!(tree(&restored), tree(&import.src));

    let settled = |id: u64| -> JobView {
        let out = ok(&lode(&[
            "job",
            "status",
            &id.to_string(),
            "--wait",
            "--wait-timeout",
            "400",
            "--devnet",
            &net.d,
            "--json",
        ]));
        serde_json::from_value(out).unwrap()
    };
    let jobs = [settled(0), settled(1), settled(2)];
    eprintln!("three jobs settled at {:.1} s", net.secs());
    let mut verifier = verifier;
    let status = verifier.0.wait().unwrap();
    let verdict: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&verify_out).unwrap()).unwrap();
    assert!(status.success(), "{verdict}");
    assert_eq!(verdict["verdict"], "disputed", "{verdict}");
    assert_ne!(verdict["posted"], verdict["recomputed"], "{verdict}");

    let honest = jobs[0].result.expect("job 0 has a result");
    assert_eq!(verdict["recomputed"], hex::encode(honest), "{verdict}");
    let all: Vec<(String, TokenAmount)> = (0..3).map(|i| (miner(i), PAYMENT)).collect();
    // Job 0: all three agree; each is paid and gets its collateral back.
    let (j, s) = (&jobs[0], jobs[0].settlement.as_ref().unwrap());
    assert_eq!(j.state, "settled", "{j:?}");
    assert!(j.slots.iter().all(|sl| sl.result == Some(honest)), "{j:?}");
    assert_eq!(amounts(&s.paid), all);
    // Collateral goes back to the account that locked it (each provider's worker).
    let mut payers: Vec<(String, TokenAmount)> = j
        .slots
        .iter()
        .map(|sl| (sl.payer.to_string(), COLLATERAL))
        .collect();
    payers.sort();
    assert_eq!(amounts(&s.returned), payers);
    assert!(
        s.slashed.is_empty() && s.burnt == TokenAmount::ZERO,
        "{s:?}"
    );

    // Job 1: miner-2's result is outvoted; it loses its collateral, half to the client.
    let (j, s) = (&jobs[1], jobs[1].settlement.as_ref().unwrap());
    assert_eq!(j.result, Some(honest), "{j:?}");
    let liar = j
        .slots
        .iter()
        .find(|sl| sl.provider == net.actors[2])
        .unwrap();
    assert!(
        liar.result.is_some() && liar.result != Some(honest),
        "{j:?}"
    );
    assert_eq!(amounts(&s.paid), all[..2].to_vec());
    assert_eq!(s.slashed, vec![(miner(2), COLLATERAL)]);
    assert_eq!(s.to_client.0, COLLATERAL.0 / 2);
    assert_eq!(s.refunded, PAYMENT);

    // Job 2: the verifier disputed; its result is final, miner-0 is slashed, the client refunded
    // and the verifier paid its fee with its bond back.
    let (j, s) = (&jobs[2], jobs[2].settlement.as_ref().unwrap());
    assert!(j.disputed, "{j:?}");
    assert_eq!(j.result, Some(honest), "{j:?}");
    let verifier_id = j.verifier.as_ref().unwrap().verifier.to_string();
    assert_eq!(s.paid, vec![(verifier_id.clone(), FEE)]);
    assert_eq!(s.returned, vec![(verifier_id, BOND)]);
    assert_eq!(s.slashed, vec![(miner(0), COLLATERAL)]);
    assert_eq!(s.refunded, PAYMENT);

    for j in &jobs {
        balances(j);
    }

    // The client downloads the final results and checks them against the chain: the counts of
    // the piece's payload.
    let expected = wc(&import.car);
    for id in ["0", "1"] {
        let out = tmp.path().join(format!("result-{id}"));
        let r = ok(&lode(&[
            "job",
            "result",
            id,
            "-o",
            out.to_str().unwrap(),
            "--devnet",
            &net.d,
            "--json",
        ]));
        assert_eq!(r["result"], hex::encode(honest), "{r}");
        assert_eq!(
            std::fs::read_to_string(out.join("counts.txt")).unwrap(),
            expected
        );
    }
    // Job 2's final result is the verifier's: no provider posted it, so none serves outputs
    // that check out, and nothing is written.
    let out = tmp.path().join("result-2");
    let r = lode(&[
        "job",
        "result",
        "2",
        "-o",
        out.to_str().unwrap(),
        "--devnet",
        &net.d,
    ]);
    assert!(!r.status.success());
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("the verifier's result prevailed"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(!out.exists());

    // The deal sectors' power: each sector's raw bytes, plus 9× the verified piece's for
    // miner-1 (10× for those bytes), once its deadline has proven it.
    let piece_size = u128::from(import.piece_size);
    net.wait(400, "the deal sectors' power", &mut || {
        let now: Vec<_> = actors.iter().map(|a| power(*a).unwrap()).collect();
        (0..3).all(|i| now[i].raw == before[i].raw + 2048)
            && now[0].qa == before[0].qa + 2048
            && now[1].qa == before[1].qa + 2048 + 9 * piece_size
            && now[2].qa == before[2].qa + 2048
    });

    // Payments: the providers' escrow grows as the deals are settled, epoch after epoch.
    let escrow = |a: ActorId| {
        rt.block_on(client.state_market_balance(&Address::Id(a)))
            .unwrap()
            .balance
    };
    let first = escrow(actors[0]);
    net.wait(300, "the unverified deal's payments", &mut || {
        escrow(actors[0]) > first
    });
    let second = escrow(actors[0]);
    net.wait(60, "more payments", &mut || escrow(actors[0]) > second);
    eprintln!("done in {:.1} s", net.secs());
}
