//! The provider's metrics and the alert rules built on them: the pipeline's gauges refreshed from
//! its records, the sealing phase histogram, the exposition through `promtool check metrics`, and
//! `deploy/prometheus/lode-provider-alerts.yml` through `promtool check rules` and `promtool test
//! rules` (its unit tests fire every alert), naming only metrics the provider exports.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use lode_chain::types::{ActorId, TokenAmount};
use lode_node::rpc::types::{MinerInfoView, MinerPowerInfo, Power};
use lode_proofs::sector::SectorSize;
use lode_provider::metrics::ProviderMetrics;
use lode_provider::pipeline::state::HistoryEntry;
use lode_provider::pipeline::{SectorChain, SectorKind, SectorProgress, SectorRecord, SectorState};
use lode_provider::status::{DeadlineStatus, ProvingStatus};
use prometheus_client::registry::Registry;

fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus")
}

fn record(number: u64, state: SectorState, created: u64, entered: u64) -> SectorRecord {
    let mut progress = SectorProgress::new(created);
    progress.state = state;
    progress.history.push(HistoryEntry {
        at: entered,
        from: SectorState::WaitDeals,
        to: state,
        note: "Done".into(),
    });
    SectorRecord {
        number,
        kind: SectorKind::CommittedCapacity,
        created_at: created,
        version: 1,
        progress,
        chain: SectorChain::default(),
    }
}

/// The value of the sample `name` (with its labels written as in the exposition).
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// A registry whose every provider metric holds a sample.
fn exposition() -> (ProviderMetrics, Registry) {
    let mut registry = Registry::default();
    let m = ProviderMetrics::register(&mut registry);
    let now = 10_000;
    m.refresh_pipeline(
        &[
            record(1, SectorState::PreCommit1, 1_000, 9_000),
            record(2, SectorState::PreCommit1, 1_000, 9_500),
            record(3, SectorState::WaitSeed, 9_900, 9_990),
            record(4, SectorState::Proving, 100, 200),
            record(5, SectorState::Removed, 100, 200),
        ],
        now,
    );
    m.observe_phase(SectorState::PreCommit1, 0.5);
    m.observe_phase(SectorState::Commit2, 30.0);
    m.observe_phase(SectorState::WaitSeed, 1.0);
    m.refresh_proving(&ProvingStatus {
        deadlines: vec![
            DeadlineStatus {
                faults: 2,
                recoveries: 1,
                ..DeadlineStatus::default()
            },
            DeadlineStatus {
                faults: 1,
                ..DeadlineStatus::default()
            },
        ],
        ..ProvingStatus::default()
    });
    let power = MinerPowerInfo {
        miner: ActorId(1000),
        power: Power {
            raw: 8192,
            qa: 81920,
        },
        network: Power { raw: 0, qa: 0 },
        meets_consensus_minimum: true,
    };
    let info = MinerInfoView {
        miner: ActorId(1000),
        owner: ActorId(100),
        worker: ActorId(101),
        worker_key: Vec::new(),
        sector_size: SectorSize::S2KiB,
        sector_size_bytes: 2048,
        partition_sectors: 2,
        peer_id: None,
        multiaddrs: Vec::new(),
        balance: TokenAmount::tokens(100),
        available: TokenAmount::atto(2_500_000_000_000_000_000),
        pre_commit_deposits: TokenAmount::ZERO,
        initial_pledge: TokenAmount::ZERO,
        locked_funds: TokenAmount::ZERO,
        fee_debt: TokenAmount::ZERO,
        proving_period_start: 0,
        current_deadline: 0,
        consensus_fault_elapsed: None,
    };
    m.set_chain(Some(&power), Some(&info));
    m.window_post_missed.inc();
    (m, registry)
}

fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text
}

#[test]
fn the_gauges_follow_the_pipeline_the_poster_and_the_chain() {
    let (m, registry) = exposition();
    let text = encode(&registry);
    let g = |name: &str| sample(&text, name).unwrap_or_else(|| panic!("no {name} in\n{text}"));
    // Counts for every state, zeros included; final and Proving sectors counted too.
    assert_eq!(
        g("lode_provider_pipeline_sectors{state=\"PreCommit1\"}"),
        2.0
    );
    assert_eq!(g("lode_provider_pipeline_sectors{state=\"Proving\"}"), 1.0);
    assert_eq!(g("lode_provider_pipeline_sectors{state=\"Removed\"}"), 1.0);
    assert_eq!(g("lode_provider_pipeline_sectors{state=\"Commit2\"}"), 0.0);
    // The oldest sector of each waiting state: since its transition into it.
    assert_eq!(
        g("lode_provider_pipeline_oldest_state_seconds{state=\"PreCommit1\"}"),
        1_000.0
    );
    assert_eq!(
        g("lode_provider_pipeline_oldest_state_seconds{state=\"WaitSeed\"}"),
        10.0
    );
    assert!(
        !text.contains("oldest_state_seconds{state=\"Proving\"}"),
        "{text}"
    );
    assert!(
        !text.contains("oldest_state_seconds{state=\"Removed\"}"),
        "{text}"
    );
    // Sealing phases only; a chain step is not a phase.
    assert_eq!(
        g("lode_provider_sealing_phase_seconds_count{phase=\"Commit2\"}"),
        1.0
    );
    assert!(!text.contains("phase=\"WaitSeed\""), "{text}");
    assert_eq!(g("lode_provider_faulty_sectors"), 3.0);
    assert_eq!(g("lode_provider_recovering_sectors"), 1.0);
    assert_eq!(g("lode_provider_power_raw_bytes"), 8192.0);
    assert_eq!(g("lode_provider_power_qa_bytes"), 81920.0);
    assert_eq!(g("lode_provider_available_balance_lode"), 2.5);
    assert_eq!(g("lode_provider_window_post_missed_total"), 1.0);

    // A state that empties reads 0 and its age disappears.
    m.refresh_pipeline(&[record(4, SectorState::Proving, 100, 200)], 10_000);
    let text = encode(&registry);
    assert_eq!(
        sample(
            &text,
            "lode_provider_pipeline_sectors{state=\"PreCommit1\"}"
        ),
        Some(0.0)
    );
    assert!(
        !text.contains("oldest_state_seconds{state=\"PreCommit1\"}"),
        "{text}"
    );
    lode_testkit::metrics::promtool_check(&text);
}

#[test]
fn the_alert_rules_pass_promtool_and_name_exported_metrics() {
    let rules = rules_dir().join("lode-provider-alerts.yml");
    let tests = rules_dir().join("lode-provider-alerts.test.yml");
    let text = std::fs::read_to_string(&rules).unwrap();
    // Every metric a rule names is one the provider exports (a renamed metric would leave an
    // alert that never fires).
    let (_, registry) = exposition();
    let exposition = encode(&registry);
    let exported: BTreeSet<&str> = exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let named: BTreeSet<&str> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("lode_provider_"))
        .collect();
    assert!(named.len() >= 5, "{named:?}");
    for n in &named {
        assert!(
            exported.contains(n),
            "the rules name {n}, not exported: {exported:?}"
        );
    }
    lode_testkit::metrics::promtool(&["check", "rules", rules.to_str().unwrap()]);
    lode_testkit::metrics::promtool(&["test", "rules", tests.to_str().unwrap()]);
}
