//! The provider's Prometheus metrics (`lode_provider_` prefix).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
    pub winning_post_seconds: Seconds,
    /// Seconds to make one Window PoSt partition proof.
    pub window_post_seconds: Seconds,
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
        m
    }
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
