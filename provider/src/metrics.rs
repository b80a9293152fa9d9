//! The provider's Prometheus metrics (`lode_provider_` prefix).
//!
//! Counters and histograms are recorded where things happen (the miner, the poster, the
//! pipeline's runner for sealing phases); the gauges of the pipeline and of the poster's view are
//! refreshed from them when `/metrics` is scraped ([`ProviderMetrics::refresh_pipeline`],
//! [`ProviderMetrics::refresh_proving`]), and the chain's (power, available balance) by a loop
//! every epoch ([`ProviderMetrics::set_chain`]). `deploy/prometheus/lode-provider-alerts.yml`
//! alerts on them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lode_node::rpc::types::{MinerInfoView, MinerPowerInfo};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::pipeline::state::ALL_STATES;
use crate::pipeline::{SectorRecord, SectorState};
use crate::status::ProvingStatus;

/// The sealing phases whose durations [`ProviderMetrics::sealing_phase_seconds`] records (the
/// pipeline states that run a sealing computation; `Packing` is AddPiece).
pub const SEALING_PHASES: &[SectorState] = &[
    SectorState::Packing,
    SectorState::PreCommit1,
    SectorState::PreCommit2,
    SectorState::Commit1,
    SectorState::Commit2,
    SectorState::Finalize,
];

/// The `state` label of the pipeline's gauges: a [`SectorState`]'s name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// The state's name (`PreCommit1`, `WaitSeed`, …).
    pub state: String,
}

/// The `phase` label of the sealing phase histogram: a sealing state's name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    /// The phase's state name (`PreCommit1`, `Commit2`, …).
    pub phase: String,
}

/// Buckets of sealing phase durations: 10 ms, ×4 up to about 11.6 hours (a 2 KiB sector's
/// phases take milliseconds, a 32 GiB PreCommit1 hours).
fn phase_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 4.0, 12))
}

/// The provider's metrics.
#[derive(Debug, Clone)]
pub struct ProviderMetrics {
    /// Elections won (win count > 0).
    pub elections_won: Counter,
    /// Blocks the node accepted.
    pub blocks_produced: Counter,
    /// Blocks the node refused.
    pub blocks_refused: Counter,
    /// Window PoSt messages submitted.
    pub window_post_submitted: Counter,
    /// Deadlines whose partitions were proven on chain.
    pub window_post_proven: Counter,
    /// Deadlines that closed without this provider's proof on chain.
    pub window_post_missed: Counter,
    /// Sectors declared faulty.
    pub faults_declared: Counter,
    /// Sectors declared recovered.
    pub recoveries_declared: Counter,
    /// Sectors in the sector store.
    pub sectors: Gauge,
    /// Seconds to make a Winning PoSt (vanilla and SNARK).
    pub winning_post_seconds: Seconds,
    /// Seconds to make one Window PoSt partition proof.
    pub window_post_seconds: Seconds,
    /// Epochs from a deadline's opening to the head at which this provider saw its Window PoSt
    /// on chain (every partition proven), per deadline confirmed.
    pub window_post_landed_epochs: Histogram,
    /// Sectors of the pipeline per state (every state, zeros included; refreshed at each scrape).
    pub pipeline_sectors: Family<StateLabel, Gauge>,
    /// Per state that is neither final nor `Proving`, and holds sectors: seconds since the sector
    /// that entered it first did so (refreshed at each scrape; a stuck sector makes it grow).
    pub pipeline_oldest_state_seconds: Family<StateLabel, Gauge>,
    /// Seconds each sealing phase took ([`SEALING_PHASES`]), recorded when a phase completes.
    pub sealing_phase_seconds: Family<PhaseLabel, Histogram, fn() -> Histogram>,
    /// Sectors faulty on chain in the poster's last view (refreshed at each scrape).
    pub faulty_sectors: Gauge,
    /// Of those, declared recovered.
    pub recovering_sectors: Gauge,
    /// The miner's raw power, bytes (the chain's claim, every epoch).
    pub power_raw_bytes: Gauge,
    /// Its quality-adjusted power, bytes.
    pub power_qa_bytes: Gauge,
    /// Its available balance — what deposits and pledges are paid from — in LODE.
    pub available_balance_lode: Gauge<f64, AtomicU64>,
    /// Its fee debt, in LODE.
    pub fee_debt_lode: Gauge<f64, AtomicU64>,
}

/// A histogram of durations in seconds that also keeps its count and total, so the provider's
/// API can report an average (the Prometheus histogram does not expose them). Clones share it.
#[derive(Debug, Clone)]
pub struct Seconds {
    histogram: Histogram,
    count: Arc<AtomicU64>,
    total_micros: Arc<AtomicU64>,
}

impl Seconds {
    /// Buckets from 10 ms doubling twelve times (about 41 s).
    fn new() -> Self {
        Seconds {
            histogram: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
            count: Arc::new(AtomicU64::new(0)),
            total_micros: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records one duration of `secs` seconds.
    pub fn observe(&self, secs: f64) {
        self.histogram.observe(secs);
        let micros = Duration::try_from_secs_f64(secs)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        self.count.fetch_add(1, Ordering::Relaxed);
        self.total_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Their mean in seconds (`None` before the first).
    pub fn mean(&self) -> Option<f64> {
        let n = self.count();
        let total = Duration::from_micros(self.total_micros.load(Ordering::Relaxed));
        let n32 = u32::try_from(n).unwrap_or(u32::MAX);
        (n > 0).then(|| total.checked_div(n32).unwrap_or_default().as_secs_f64())
    }
}

impl ProviderMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &mut Registry) -> Self {
        let m = ProviderMetrics {
            elections_won: Counter::default(),
            blocks_produced: Counter::default(),
            blocks_refused: Counter::default(),
            window_post_submitted: Counter::default(),
            window_post_proven: Counter::default(),
            window_post_missed: Counter::default(),
            faults_declared: Counter::default(),
            recoveries_declared: Counter::default(),
            sectors: Gauge::default(),
            winning_post_seconds: Seconds::new(),
            window_post_seconds: Seconds::new(),
            window_post_landed_epochs: Histogram::new(exponential_buckets(1.0, 2.0, 8)),
            pipeline_sectors: Family::default(),
            pipeline_oldest_state_seconds: Family::default(),
            sealing_phase_seconds: Family::new_with_constructor(phase_histogram),
            faulty_sectors: Gauge::default(),
            recovering_sectors: Gauge::default(),
            power_raw_bytes: Gauge::default(),
            power_qa_bytes: Gauge::default(),
            available_balance_lode: Gauge::default(),
            fee_debt_lode: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("lode_provider");
        r.register("elections_won", "Elections won", m.elections_won.clone());
        r.register(
            "blocks_produced",
            "Blocks the node accepted",
            m.blocks_produced.clone(),
        );
        r.register(
            "blocks_refused",
            "Blocks the node refused",
            m.blocks_refused.clone(),
        );
        r.register(
            "window_post_submitted",
            "Window PoSt messages submitted",
            m.window_post_submitted.clone(),
        );
        r.register(
            "window_post_proven",
            "Deadlines proven on chain",
            m.window_post_proven.clone(),
        );
        r.register(
            "window_post_missed",
            "Deadlines that closed without this provider's proof on chain",
            m.window_post_missed.clone(),
        );
        r.register(
            "faults_declared",
            "Sectors declared faulty",
            m.faults_declared.clone(),
        );
        r.register(
            "recoveries_declared",
            "Sectors declared recovered",
            m.recoveries_declared.clone(),
        );
        r.register("sectors", "Sectors in the sector store", m.sectors.clone());
        r.register(
            "winning_post_seconds",
            "Seconds to make a Winning PoSt",
            m.winning_post_seconds.histogram.clone(),
        );
        r.register(
            "window_post_seconds",
            "Seconds to make one Window PoSt partition proof",
            m.window_post_seconds.histogram.clone(),
        );
        r.register(
            "window_post_landed_epochs",
            "Epochs from a deadline's opening to its Window PoSt seen on chain",
            m.window_post_landed_epochs.clone(),
        );
        r.register(
            "pipeline_sectors",
            "Sectors of the sealing pipeline per state",
            m.pipeline_sectors.clone(),
        );
        r.register(
            "pipeline_oldest_state_seconds",
            "Seconds the longest-waiting sector has been in its state, per state that is neither final nor Proving",
            m.pipeline_oldest_state_seconds.clone(),
        );
        r.register(
            "sealing_phase_seconds",
            "Seconds a sealing phase took",
            m.sealing_phase_seconds.clone(),
        );
        r.register(
            "faulty_sectors",
            "Sectors faulty on chain in the poster's last view",
            m.faulty_sectors.clone(),
        );
        r.register(
            "recovering_sectors",
            "Faulty sectors declared recovered in the poster's last view",
            m.recovering_sectors.clone(),
        );
        r.register(
            "power_raw_bytes",
            "The miner's raw power on chain, bytes",
            m.power_raw_bytes.clone(),
        );
        r.register(
            "power_qa_bytes",
            "The miner's quality-adjusted power on chain, bytes",
            m.power_qa_bytes.clone(),
        );
        r.register(
            "available_balance_lode",
            "The miner's available balance (what deposits and pledges are paid from), LODE",
            m.available_balance_lode.clone(),
        );
        r.register(
            "fee_debt_lode",
            "The miner's fee debt, LODE",
            m.fee_debt_lode.clone(),
        );
        m
    }

    /// Records that the sealing phase `phase` completed in `secs` seconds (nothing for a state
    /// that is not one of [`SEALING_PHASES`]).
    pub fn observe_phase(&self, phase: SectorState, secs: f64) {
        if SEALING_PHASES.contains(&phase) {
            self.sealing_phase_seconds
                .get_or_create(&PhaseLabel {
                    phase: phase.name().to_string(),
                })
                .observe(secs);
        }
    }

    /// Sets the pipeline's gauges from its records at unix time `now`: the sectors per state
    /// (every state, so an emptied state reads 0), and the age of the oldest sector of each
    /// waiting state (a state that emptied disappears; deal sectors waiting for deals are not
    /// counted).
    pub fn refresh_pipeline(&self, records: &[SectorRecord], now: u64) {
        let mut counts = std::collections::BTreeMap::<SectorState, i64>::new();
        let mut oldest = std::collections::BTreeMap::<SectorState, u64>::new();
        for r in records {
            let state = r.state();
            let n = counts.entry(state).or_default();
            *n = n.saturating_add(1);
            // A deal sector in `WaitDeals` waits for the market, not for the pipeline (and is
            // started `wait_deals_epochs` after its first piece): never a stuck sector.
            let waits_for_deals =
                state == SectorState::WaitDeals && r.kind == crate::pipeline::SectorKind::Deals;
            if !state.is_final() && state != SectorState::Proving && !waits_for_deals {
                let since = r.state_since();
                let e = oldest.entry(state).or_insert(since);
                *e = (*e).min(since);
            }
        }
        for state in ALL_STATES {
            let label = StateLabel {
                state: state.name().to_string(),
            };
            self.pipeline_sectors
                .get_or_create(&label)
                .set(counts.get(state).copied().unwrap_or(0));
        }
        self.pipeline_oldest_state_seconds.clear();
        for (state, since) in oldest {
            let age = i64::try_from(now.saturating_sub(since)).unwrap_or(i64::MAX);
            self.pipeline_oldest_state_seconds
                .get_or_create(&StateLabel {
                    state: state.name().to_string(),
                })
                .set(age);
        }
    }

    /// Sets the faulty and recovering sectors from the poster's snapshot.
    pub fn refresh_proving(&self, st: &ProvingStatus) {
        let (faults, recoveries) = st.deadlines.iter().fold((0u64, 0u64), |(f, r), d| {
            (f.saturating_add(d.faults), r.saturating_add(d.recoveries))
        });
        self.faulty_sectors
            .set(i64::try_from(faults).unwrap_or(i64::MAX));
        self.recovering_sectors
            .set(i64::try_from(recoveries).unwrap_or(i64::MAX));
    }

    /// Sets the chain's gauges: the miner's power and its balances.
    pub fn set_chain(&self, power: Option<&MinerPowerInfo>, info: Option<&MinerInfoView>) {
        if let Some(p) = power {
            self.power_raw_bytes
                .set(i64::try_from(p.power.raw).unwrap_or(i64::MAX));
            self.power_qa_bytes
                .set(i64::try_from(p.power.qa).unwrap_or(i64::MAX));
        }
        if let Some(i) = info {
            self.available_balance_lode.set(to_lode(i.available));
            self.fee_debt_lode.set(to_lode(i.fee_debt));
        }
    }
}

/// An amount in LODE, as a float (exact to about 15 significant digits: a gauge's precision).
pub fn to_lode(amount: lode_chain::types::TokenAmount) -> f64 {
    // u128 → f64 rounds to the nearest representable value; never panics.
    #[allow(clippy::cast_precision_loss)]
    let atto = amount.0 as f64;
    atto / 1e18
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_keep_a_mean_beside_the_histogram() {
        let mut registry = Registry::default();
        let m = ProviderMetrics::register(&mut registry);
        assert_eq!(m.winning_post_seconds.mean(), None);
        m.winning_post_seconds.observe(0.5);
        m.winning_post_seconds.clone().observe(1.5);
        assert_eq!(m.winning_post_seconds.count(), 2);
        assert_eq!(m.winning_post_seconds.mean(), Some(1.0));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap_or_default();
        assert!(
            text.contains("lode_provider_winning_post_seconds_count 2"),
            "{text}"
        );
    }
}
