//! The provider's Prometheus metrics (`lode_provider_` prefix).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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
    pub winning_post_seconds: Histogram,
    /// Seconds to make one Window PoSt partition proof.
    pub window_post_seconds: Histogram,
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
            winning_post_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
            window_post_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
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
            m.winning_post_seconds.clone(),
        );
        r.register(
            "window_post_seconds",
            "Seconds to make one Window PoSt partition proof",
            m.window_post_seconds.clone(),
        );
        m
    }
}
