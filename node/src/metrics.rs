//! The node's Prometheus metrics (`lode_` prefix), in the registry libp2p's metrics share.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Why a block was rejected (a label value).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The reason, in a few words.
    pub reason: String,
}

/// Where a block came from.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// `gossip`, `sync` or `local`.
    pub source: String,
}

/// The node's metrics.
#[derive(Debug)]
pub struct NodeMetrics {
    /// Epoch of the head.
    pub chain_height: Gauge,
    /// Weight of the head (as a float: weights grow past 2^63 only after aeons).
    pub head_weight: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Connected peers.
    pub peers: Gauge,
    /// Pending messages.
    pub mempool_size: Gauge,
    /// Bytes of pending messages.
    pub mempool_bytes: Gauge,
    /// Blocks accepted onto the head, by source.
    pub blocks_accepted: Family<SourceLabel, Counter>,
    /// Blocks rejected, by reason.
    pub blocks_rejected: Family<ReasonLabel, Counter>,
    /// Blocks submitted by local miners and accepted.
    pub blocks_produced: Counter,
    /// Reorganisations (head switches that reverted tipsets).
    pub reorgs: Counter,
    /// Tipsets applied.
    pub tipsets_applied: Counter,
    /// Messages accepted into the mempool.
    pub messages_accepted: Counter,
    /// Messages refused by the mempool, by reason.
    pub messages_rejected: Family<ReasonLabel, Counter>,
    /// Seconds to validate and apply a received block.
    pub block_apply_seconds: Histogram,
    /// Tipsets fetched by sync.
    pub sync_tipsets: Counter,
    /// Consensus faults seen (two blocks by one miner at one epoch).
    pub consensus_faults: Counter,
}

impl NodeMetrics {
    /// Creates the metrics and registers them in `registry` (under `lode_`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = NodeMetrics {
            chain_height: Gauge::default(),
            head_weight: Gauge::default(),
            peers: Gauge::default(),
            mempool_size: Gauge::default(),
            mempool_bytes: Gauge::default(),
            blocks_accepted: Family::default(),
            blocks_rejected: Family::default(),
            blocks_produced: Counter::default(),
            reorgs: Counter::default(),
            tipsets_applied: Counter::default(),
            messages_accepted: Counter::default(),
            messages_rejected: Family::default(),
            block_apply_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            sync_tipsets: Counter::default(),
            consensus_faults: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("lode");
        r.register(
            "chain_height",
            "Epoch of the head tipset",
            m.chain_height.clone(),
        );
        r.register(
            "head_weight",
            "Weight of the head tipset",
            m.head_weight.clone(),
        );
        r.register("peers", "Connected peers", m.peers.clone());
        r.register("mempool_size", "Pending messages", m.mempool_size.clone());
        r.register(
            "mempool_bytes",
            "Bytes of pending messages",
            m.mempool_bytes.clone(),
        );
        r.register(
            "blocks_accepted",
            "Blocks accepted onto the head, by source",
            m.blocks_accepted.clone(),
        );
        r.register(
            "blocks_rejected",
            "Blocks rejected, by reason",
            m.blocks_rejected.clone(),
        );
        r.register(
            "blocks_produced",
            "Blocks made by this node's miners and accepted",
            m.blocks_produced.clone(),
        );
        r.register(
            "reorgs",
            "Head switches that reverted tipsets",
            m.reorgs.clone(),
        );
        r.register(
            "tipsets_applied",
            "Tipsets applied",
            m.tipsets_applied.clone(),
        );
        r.register(
            "messages_accepted",
            "Messages accepted into the mempool",
            m.messages_accepted.clone(),
        );
        r.register(
            "messages_rejected",
            "Messages refused by the mempool, by reason",
            m.messages_rejected.clone(),
        );
        r.register(
            "block_apply_seconds",
            "Seconds to validate and apply a received block",
            m.block_apply_seconds.clone(),
        );
        r.register(
            "sync_tipsets",
            "Tipsets fetched by sync",
            m.sync_tipsets.clone(),
        );
        r.register(
            "consensus_faults",
            "Two blocks by one miner at one epoch, seen",
            m.consensus_faults.clone(),
        );
        m
    }

    /// Counts a rejection under a short reason (the first words of the error).
    pub fn reject_block(&self, why: &str) {
        self.blocks_rejected
            .get_or_create(&ReasonLabel {
                reason: short_reason(why),
            })
            .inc();
    }

    /// Counts a refused message.
    pub fn reject_message(&self, why: &str) {
        self.messages_rejected
            .get_or_create(&ReasonLabel {
                reason: short_reason(why),
            })
            .inc();
    }
}

/// A bounded label: the text before the first digit or colon, at most 48 characters (so labels
/// do not multiply with numbers in messages).
fn short_reason(why: &str) -> String {
    let cut = why
        .find(|c: char| c.is_ascii_digit() || c == ':' || c == '(')
        .unwrap_or(why.len());
    let head = why.get(..cut).unwrap_or(why).trim();
    head.chars().take(48).collect()
}

/// Encodes the registry in the Prometheus text exposition format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_bounded_labels() {
        assert_eq!(
            short_reason("timestamp 12 is not epoch 3's slot 15"),
            "timestamp"
        );
        assert_eq!(
            short_reason("the beacon is not derived"),
            "the beacon is not derived"
        );
        let mut r = Registry::default();
        let m = NodeMetrics::register(&mut r);
        m.reject_block("block 0 by l0100: Winning PoSt rejected");
        m.chain_height.set(7);
        let text = encode(&r);
        assert!(text.contains("lode_chain_height 7"), "{text}");
        assert!(
            text.contains("lode_blocks_rejected_total{reason=\"block\"} 1"),
            "{text}"
        );
    }
}
