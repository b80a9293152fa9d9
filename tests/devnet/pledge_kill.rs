//! The sealing pipeline survives `kill -9`: on a devnet (one node, two miners), miner 0's provider
//! process is killed with SIGKILL at 100 random moments (a seeded draw of 0.2–2 s after each
//! restart, the seed printed; `LODE_KILL_SEED` replays a run, `LODE_KILLS` changes the count)
//! while it seals pledged committed-capacity sectors, and restarted each time as `lode devnet`
//! starts it. The kills land in every part of the pipeline — sealing phases, chain waits, message
//! sends — and in the provider's own start (Commit2 takes longer than any draw: after 8 kills
//! with every working sector in Commit1/Commit2, the provider is let run until one leaves
//! Commit2, so that later kills land in the prove-commit's steps too; when every sector is
//! `Proving` early, two more are pledged). Then it runs unkilled until every pledged sector is
//! `Proving` and has its power on chain, and the test compares the pipeline's view with the
//! chain's:
//!
//! - every pledged sector is `Proving` in `lode sectors list`, once, and the pipeline holds no
//!   other record;
//! - on chain each is active once, no pre-commit is left, the miner's power is its genesis
//!   sectors' and the pledged ones', no deposit is locked, and the initial pledge grew by exactly
//!   the pledged sectors' pledges;
//! - walking every block of the chain: exactly one successful `PreCommitSectors` and one
//!   successful `ProveCommitSector` for each pledged sector, and no failed one (a second
//!   pre-commit, even refused, would mean the pipeline signed twice).
//!
//! Two miners, because a devnet's only miner that misses its Window PoSts while it is killed over
//! and over loses its power, and then no miner is left to make the blocks that would restore it.
//! The figures (kills, kills per pipeline state, wall time) are printed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use lode_chain::actors::miner::MinerMethod;
use lode_chain::message::Method;
use lode_chain::types::{ActorId, Address};
use lode_provider::pipeline::SectorState;
use lode_provider::rpc::client::ProviderClient;

use crate::common::{
    Devnet, Role, kill_9, lode, node_client, ok, params_dir, provider_client, restart,
};

/// splitmix64: a small seeded generator, so that a run's kill moments can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// The provider process of miner 0: the one `lode devnet` started, then ours.
struct Provider {
    pid: u32,
    child: Option<Child>,
}

impl Provider {
    /// SIGKILL, and waits until it is gone.
    fn kill(&mut self) {
        kill_9(self.pid, self.child.as_mut());
    }
}

/// Starts miner 0's provider as `lode devnet` does, its pid recorded in `devnet.json`.
fn start_provider(dir: &Path) -> Provider {
    let child = restart(dir, Role::Provider(0));
    Provider {
        pid: child.id(),
        child: Some(child),
    }
}

/// The pipeline's records as the provider's API lists them (`None` while it does not answer).
async fn pipeline(c: &ProviderClient) -> Option<BTreeMap<u64, SectorState>> {
    let p = c.pipeline().await.ok()?;
    Some(
        p.sectors
            .iter()
            .map(|s| (s.sector_number, s.state))
            .collect(),
    )
}

/// Which part of the pipeline a state is.
fn part(s: SectorState) -> &'static str {
    use SectorState::*;
    match s {
        WaitDeals | Packing | PreCommit1 | PreCommit2 | Commit1 | Commit2 | Finalize => "sealing",
        SubmitPreCommit | PreCommitLanded | WaitSeed | SubmitProveCommit | ProveCommitLanded => {
            "chain"
        }
        Proving => "proving",
        _ => "failed",
    }
}

#[test]
#[ignore = "a devnet whose provider is killed 100 times while it seals: minutes"]
fn the_pipeline_survives_kill_9_at_random_moments() {
    let _one = crate::one_at_a_time();
    let t0 = Instant::now();
    let secs = |t: Instant| t.elapsed().as_secs_f64();
    let seed = std::env::var("LODE_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let kills_wanted: usize = std::env::var("LODE_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    eprintln!("kill seed {seed} (LODE_KILL_SEED={seed} replays it), {kills_wanted} kills");
    let mut rng = Rng(seed);

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let d = dir.to_str().unwrap().to_string();
    let out = lode(&[
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
        &crate::common::epoch_seconds(2).to_string(),
        "--period-deadlines",
        "8",
        "--params-dir",
        params_dir().to_str().unwrap(),
    ]);
    let _guard = Devnet(dir.clone());
    let j = ok(&out);
    let m0 = &j["miners"][0];
    let miner = ActorId(m0["actor"].as_str().unwrap()[2..].parse().unwrap());
    let c = node_client(&dir, 0);
    // The provider's API keeps its address across restarts; no token needed to read.
    let p = provider_client(&dir, 0, Duration::from_secs(2));
    let rt = tokio::runtime::Runtime::new().unwrap();

    // The genesis sectors' power, and the miner's books before the pledge.
    let start = Instant::now();
    let genesis_power = loop {
        if let Ok(pw) = rt.block_on(c.state_miner_power(miner))
            && pw.power.raw > 0
        {
            break pw.power.raw;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no power");
        std::thread::sleep(Duration::from_millis(250));
    };
    let genesis_sectors = u64::try_from(genesis_power / 2048).unwrap();
    let before = rt.block_on(c.state_miner_info(miner)).unwrap();
    eprintln!(
        "devnet up in {:.1} s: miner {miner} with {genesis_sectors} genesis sectors",
        secs(t0)
    );

    let pledge = |count: u64| -> Vec<u64> {
        let j = ok(&lode(&[
            "sectors",
            "pledge",
            "--count",
            &count.to_string(),
            "--devnet",
            &d,
            "--json",
        ]));
        j["sectors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .collect()
    };
    let mut pledged: Vec<u64> = pledge(3);
    eprintln!("pledged {pledged:?}");

    // The kills.
    let mut provider = Provider {
        pid: j["miners"][0]["pid"].as_u64().unwrap() as u32,
        child: None,
    };
    let kill_start = Instant::now();
    let mut per_state: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut per_part: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut kills = 0;
    // Commit2 takes 20–40 s at 2 KiB, far longer than the longest draw: once every sector at
    // work has been killed in Commit1/Commit2 `STUCK` times running, the provider runs until one
    // leaves Commit2, so that the next kills land after it (the prove-commit's send and wait,
    // Finalize) too.
    const STUCK: usize = 8;
    let mut stuck = 0;
    let mut past_commit2 = 0;
    let mut passes = 0;
    let mut passes_s = 0.0;
    let beyond = |states: &BTreeMap<u64, SectorState>, pledged: &[u64]| {
        states
            .iter()
            .filter(|(n, s)| {
                pledged.contains(n) && **s > SectorState::Commit2 && **s <= SectorState::Proving
            })
            .count()
    };
    while kills < kills_wanted {
        let wait = rng.between(200, 2000);
        std::thread::sleep(Duration::from_millis(wait));
        // What the pipeline was doing at the kill (the sectors not yet proving).
        let seen = rt.block_on(pipeline(&p));
        match &seen {
            None => *per_part.entry("starting").or_default() += 1,
            Some(states) => {
                let working: BTreeSet<SectorState> = states
                    .iter()
                    .filter(|(n, _)| pledged.contains(n))
                    .map(|(_, s)| *s)
                    .filter(|s| *s != SectorState::Proving)
                    .collect();
                for s in &working {
                    *per_state.entry(s.name()).or_default() += 1;
                }
                let parts: BTreeSet<&str> = working.iter().map(|s| part(*s)).collect();
                for part in &parts {
                    *per_part.entry(part).or_default() += 1;
                }
                if parts.is_empty() {
                    *per_part.entry("proving").or_default() += 1;
                }
                past_commit2 = beyond(states, &pledged);
                let in_commit = !working.is_empty()
                    && working
                        .iter()
                        .all(|s| matches!(s, SectorState::Commit1 | SectorState::Commit2));
                stuck = if in_commit { stuck + 1 } else { 0 };
            }
        }
        provider.kill();
        kills += 1;
        provider = start_provider(&dir);
        if stuck >= STUCK {
            let t = Instant::now();
            loop {
                if let Some(states) = rt.block_on(pipeline(&p))
                    && beyond(&states, &pledged) > past_commit2
                {
                    break;
                }
                assert!(
                    t.elapsed() < Duration::from_secs(240),
                    "no sector left Commit2 in 240 s"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            stuck = 0;
            passes += 1;
            passes_s += secs(t);
        }
        // Everything proving before the kills are done: pledge more, so the kills keep landing in
        // the pipeline.
        if let Some(states) = &seen
            && pledged
                .iter()
                .all(|n| states.get(n) == Some(&SectorState::Proving))
            && pledged.len() < 5
            && kills < kills_wanted * 4 / 5
        {
            // The new provider must be up to take the pledge.
            let t = Instant::now();
            while rt.block_on(pipeline(&p)).is_none() {
                assert!(t.elapsed() < Duration::from_secs(60), "provider not back");
                std::thread::sleep(Duration::from_millis(100));
            }
            let more = pledge(2);
            eprintln!("kill {kills}: all proving, pledged {more:?} more");
            pledged.extend(more);
        }
        if kills % 10 == 0 {
            eprintln!(
                "{kills} kills, {:.0} s: {:?}",
                secs(kill_start),
                seen.map(|s| s
                    .iter()
                    .filter(|(n, _)| pledged.contains(n))
                    .map(|(n, s)| format!("{n}:{s}"))
                    .collect::<Vec<_>>())
            );
        }
    }
    let killing = secs(kill_start);
    eprintln!(
        "{kills} kills in {killing:.0} s ({passes} runs through Commit2 unkilled, {passes_s:.0} s); by part {per_part:?}; by state {per_state:?}"
    );

    // Unkilled now: every pledged sector proving, its power on chain.
    let n = pledged.len() as u64;
    let want_power = u128::from(genesis_sectors + n) * 2048;
    let settle = Instant::now();
    let mut last = String::new();
    loop {
        let states = rt.block_on(pipeline(&p));
        let power_info = rt.block_on(c.state_miner_power(miner)).ok();
        let power = power_info.as_ref().map(|p| p.power.raw);
        // A chain that stalled past a deadline's close leaves every miner faulty, and a network
        // without power makes no block again: say so rather than wait.
        assert!(
            power_info.is_none_or(|p| p.network.raw > 0),
            "the network lost all its power (the chain stalled: too slow a machine for 2-second epochs?)"
        );
        if let Some(states) = &states {
            for (num, s) in states {
                assert_ne!(
                    *s,
                    SectorState::FailedUnrecoverable,
                    "sector {num} failed for good: {}",
                    ok(&lode(&[
                        "sectors",
                        "status",
                        &num.to_string(),
                        "--devnet",
                        &d,
                        "--json"
                    ]))
                );
            }
            if pledged
                .iter()
                .all(|n| states.get(n) == Some(&SectorState::Proving))
                && power == Some(want_power)
            {
                break;
            }
        }
        last = format!("{states:?}, power {power:?} (want {want_power})");
        assert!(
            settle.elapsed() < Duration::from_secs(400),
            "not settled after 400 s: {last}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let settled = secs(settle);
    eprintln!("settled {settled:.0} s after the last kill ({last})");

    // The pipeline's view: each pledged sector once, Proving, and nothing else.
    let list = ok(&lode(&["sectors", "list", "--devnet", &d, "--json"]));
    let records: Vec<u64> = list["pipeline"]["sectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["state"], "Proving", "{s}");
            s["sector_number"].as_u64().unwrap()
        })
        .collect();
    let mut want = pledged.clone();
    want.sort_unstable();
    assert_eq!(records, want, "the pipeline's records");
    let first = genesis_sectors;
    assert_eq!(want, (first..first + n).collect::<Vec<_>>(), "numbers");
    // A kill is not a failure: no sector went through a failure state (its history has every
    // transition: twelve steps, a few more for tickets drawn again).
    for num in &want {
        let st = ok(&lode(&[
            "sectors",
            "status",
            &num.to_string(),
            "--devnet",
            &d,
            "--json",
        ]));
        let history = st["pipeline"]["history"].as_array().unwrap();
        let failures: Vec<&serde_json::Value> = history
            .iter()
            .filter(|h| {
                SectorState::from_name(h["to"].as_str().unwrap()).is_some_and(|s| {
                    s.is_retryable_failure() || s == SectorState::FailedUnrecoverable
                })
            })
            .collect();
        assert!(
            failures.is_empty(),
            "sector {num} failed on the way: {failures:?}"
        );
        assert_eq!(st["pipeline"]["failures"], 0, "{st}");
    }
    // What the provider's log says of the restarts.
    let log = std::fs::read_to_string(dir.join("logs/miner-0.log")).unwrap();
    let count = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    eprintln!(
        "provider log: {} starts, {} messages replaced as stale, {} steps retried next epoch, {} changes refused, {} Window PoSts missed",
        count("provider started"),
        count("sending a new one"),
        count("trying again next epoch"),
        count("sector change refused"),
        count("Window PoSt missed")
    );

    // The chain's view.
    rt.block_on(async {
        let sectors = c.state_miner_sectors(miner).await.unwrap();
        let mut on_chain: BTreeMap<u64, usize> = BTreeMap::new();
        for s in &sectors {
            *on_chain.entry(s.sector_number).or_default() += 1;
        }
        for num in &want {
            assert_eq!(on_chain.get(num), Some(&1), "sector {num} on chain: {sectors:?}");
        }
        assert_eq!(sectors.len() as u64, genesis_sectors + n, "{sectors:?}");
        assert!(sectors.iter().all(|s| s.status == "active"), "{sectors:?}");
        let pre = c.state_miner_precommits(miner).await.unwrap();
        assert!(pre.is_empty(), "pre-commits left: {pre:?}");
        let after = c.state_miner_info(miner).await.unwrap();
        assert!(after.pre_commit_deposits.is_zero(), "{after:?}");
        let pledges = sectors
            .iter()
            .filter(|s| want.contains(&s.sector_number))
            .fold(before.initial_pledge, |t, s| {
                t.checked_add(s.initial_pledge).unwrap()
            });
        assert_eq!(after.initial_pledge, pledges, "initial pledge {before:?} → {after:?}");

        // Every block: the pre-commits and prove-commits sent to the miner, and their receipts.
        let head = c.chain_head().await.unwrap().epoch;
        let mut seen = BTreeSet::new();
        let mut pre_ok: BTreeMap<u64, usize> = BTreeMap::new();
        let mut prove_ok: BTreeMap<u64, usize> = BTreeMap::new();
        let mut failed: Vec<String> = Vec::new();
        for epoch in 0..=head {
            let Some(ts) = c.chain_tipset_by_height(epoch).await.unwrap() else {
                continue;
            };
            for id in &ts.key {
                for m in c.chain_get_messages(id).await.unwrap().unwrap_or_default() {
                    if m.message.to != Address::Id(miner) || !seen.insert(m.id) {
                        continue;
                    }
                    let numbers: Vec<(u64, bool)> = match &m.message.method {
                        Method::Miner(MinerMethod::PreCommitSectors(infos)) => {
                            infos.iter().map(|i| (i.sector_number, true)).collect()
                        }
                        Method::Miner(MinerMethod::ProveCommitSector { sector_number, .. }) => {
                            vec![(*sector_number, false)]
                        }
                        Method::Miner(MinerMethod::ProveCommitSectors(infos)) => {
                            infos.iter().map(|i| (i.sector_number, false)).collect()
                        }
                        _ => continue,
                    };
                    // A batch of prove-commits returns the sectors it proved (it skips the others).
                    let batch = matches!(
                        m.message.method,
                        Method::Miner(MinerMethod::ProveCommitSectors(_))
                    );
                    let found = c.state_search_msg(m.id).await.unwrap();
                    let Some(found) = found else {
                        failed.push(format!("{numbers:?}: in a block, not executed"));
                        continue;
                    };
                    let proven: Option<Vec<u64>> = (batch && found.receipt.ok())
                        .then(|| lode_chain::codec::decode(&found.receipt.return_data).unwrap());
                    for (num, is_pre) in numbers {
                        if proven.as_ref().is_some_and(|p| !p.contains(&num)) {
                            failed.push(format!("sector {num}: skipped by its prove-commit batch"));
                        } else if found.receipt.ok() {
                            *(if is_pre { &mut pre_ok } else { &mut prove_ok })
                                .entry(num)
                                .or_default() += 1;
                        } else {
                            failed.push(format!(
                                "sector {num} {}: {} at epoch {}",
                                if is_pre { "pre-commit" } else { "prove-commit" },
                                found.receipt.error,
                                found.epoch
                            ));
                        }
                    }
                }
            }
        }
        let once: BTreeMap<u64, usize> = want.iter().map(|n| (*n, 1)).collect();
        assert_eq!(pre_ok, once, "successful pre-commits per sector");
        assert_eq!(prove_ok, once, "successful prove-commits per sector");
        assert!(failed.is_empty(), "failed messages: {failed:?}");
        eprintln!(
            "chain: {} epochs walked, {} pre-commits and {} prove-commits, none failed; initial pledge {} → {}",
            head + 1,
            pre_ok.len(),
            prove_ok.len(),
            before.initial_pledge,
            after.initial_pledge
        );
    });
    let wall = secs(t0);
    eprintln!(
        "BENCH devnet-pledge-kill kills={kills} sectors={n} seed={seed} killing_s={killing:.0} settle_s={settled:.0} wall_s={wall:.0}"
    );
    drop(provider);
}
