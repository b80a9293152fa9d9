//! The networking layer's own counters, registered as `lode_net_*` beside libp2p's metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Topic;

/// A gossip topic, as a label: `blocks` or `msgs`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TopicLabel {
    topic: &'static str,
}

impl From<Topic> for TopicLabel {
    fn from(topic: Topic) -> TopicLabel {
        TopicLabel {
            topic: topic.name(),
        }
    }
}

/// Why a peer was banned, as a label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct BanLabel {
    reason: &'static str,
}

/// Why a peer was banned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BanReason {
    /// Its gossipsub score fell below `disconnect_score`.
    Score,
    /// The node reported a serious misbehaviour.
    Report,
}

impl BanReason {
    fn label(self) -> &'static str {
        match self {
            BanReason::Score => "score",
            BanReason::Report => "report",
        }
    }
}

/// Which event the node's queue had no room for, as a label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct EventLabel {
    kind: &'static str,
}

/// Which event the node's queue had no room for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// A gossip message (answered `Ignore` instead).
    Gossip,
    /// An inbound sync request (left unanswered).
    SyncRequest,
    /// A peer connected or disconnected.
    Peer,
}

impl EventKind {
    fn label(self) -> &'static str {
        match self {
            EventKind::Gossip => "gossip",
            EventKind::SyncRequest => "sync_request",
            EventKind::Peer => "peer",
        }
    }
}

/// The counters of the networking layer.
#[derive(Debug, Clone, Default)]
pub(crate) struct NetMetrics {
    pub(crate) gossip_received: Family<TopicLabel, Counter>,
    pub(crate) gossip_accepted: Family<TopicLabel, Counter>,
    pub(crate) gossip_rejected: Family<TopicLabel, Counter>,
    pub(crate) gossip_ignored: Family<TopicLabel, Counter>,
    pub(crate) gossip_published: Family<TopicLabel, Counter>,
    pub(crate) gossip_publish_no_peers: Family<TopicLabel, Counter>,
    pub(crate) gossip_publish_duplicate: Family<TopicLabel, Counter>,
    pub(crate) gossip_oversized: Family<TopicLabel, Counter>,
    pub(crate) events_dropped: Family<EventLabel, Counter>,
    pub(crate) sync_requests_received: Counter,
    pub(crate) sync_requests_served: Counter,
    pub(crate) sync_requests_failed: Counter,
    pub(crate) sync_requests_oversized: Counter,
    pub(crate) sync_requests_sent: Counter,
    pub(crate) sync_responses_received: Counter,
    pub(crate) sync_requests_sent_failed: Counter,
    pub(crate) sync_responses_oversized: Counter,
    pub(crate) peers_banned: Family<BanLabel, Counter>,
    pub(crate) peers_connected: Gauge,
}

impl NetMetrics {
    /// Registers every counter in `registry` (which the caller has already prefixed).
    pub(crate) fn register(registry: &mut Registry) -> NetMetrics {
        let m = NetMetrics::default();
        let families: [(&str, &str, &Family<TopicLabel, Counter>); 8] = [
            (
                "gossip_received",
                "Gossip messages received and handed to the node for validation, by topic",
                &m.gossip_received,
            ),
            (
                "gossip_accepted",
                "Gossip messages the node accepted (and so forwarded), by topic",
                &m.gossip_accepted,
            ),
            (
                "gossip_rejected",
                "Gossip messages the node rejected (their sender is penalised), by topic",
                &m.gossip_rejected,
            ),
            (
                "gossip_ignored",
                "Gossip messages ignored, by the node or because its queue was full, by topic",
                &m.gossip_ignored,
            ),
            (
                "gossip_published",
                "Gossip messages published by this node, by topic",
                &m.gossip_published,
            ),
            (
                "gossip_publish_no_peers",
                "Publications that found no subscribed peer, by topic",
                &m.gossip_publish_no_peers,
            ),
            (
                "gossip_publish_duplicate",
                "Publications of bytes already seen on the network, by topic",
                &m.gossip_publish_duplicate,
            ),
            (
                "gossip_oversized",
                "Gossip messages received with more data than max_gossip_bytes (rejected), by topic",
                &m.gossip_oversized,
            ),
        ];
        for (name, help, family) in families {
            // Every label exists from the start, so dashboards see zeros rather than nothing.
            for topic in Topic::ALL {
                drop(family.get_or_create(&TopicLabel::from(topic)));
            }
            registry.register(name, help, family.clone());
        }
        for kind in [EventKind::Gossip, EventKind::SyncRequest, EventKind::Peer] {
            drop(
                m.events_dropped
                    .get_or_create(&EventLabel { kind: kind.label() }),
            );
        }
        for reason in [BanReason::Score, BanReason::Report] {
            drop(m.peers_banned.get_or_create(&BanLabel {
                reason: reason.label(),
            }));
        }
        registry.register(
            "events_dropped",
            "Events dropped because the node's event queue was full, by kind",
            m.events_dropped.clone(),
        );
        let counters: [(&str, &str, &Counter); 8] = [
            (
                "sync_requests_received",
                "Inbound sync requests handed to the node",
                &m.sync_requests_received,
            ),
            (
                "sync_requests_served",
                "Inbound sync requests answered",
                &m.sync_requests_served,
            ),
            (
                "sync_requests_failed",
                "Inbound sync requests that failed (timed out, unanswered, connection closed)",
                &m.sync_requests_failed,
            ),
            (
                "sync_requests_oversized",
                "Inbound sync requests refused for exceeding max_request_bytes",
                &m.sync_requests_oversized,
            ),
            (
                "sync_requests_sent",
                "Outbound sync requests sent",
                &m.sync_requests_sent,
            ),
            (
                "sync_responses_received",
                "Outbound sync requests answered",
                &m.sync_responses_received,
            ),
            (
                "sync_requests_sent_failed",
                "Outbound sync requests that failed (timeout, refusal, oversized response, ...)",
                &m.sync_requests_sent_failed,
            ),
            (
                "sync_responses_oversized",
                "Sync responses refused for exceeding max_response_bytes (either direction)",
                &m.sync_responses_oversized,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "peers_banned",
            "Peers disconnected and banned for ban_duration, by reason",
            m.peers_banned.clone(),
        );
        registry.register(
            "peers_connected",
            "Peers with at least one open connection",
            m.peers_connected.clone(),
        );
        m
    }

    /// The counter of a topic in `family`.
    pub(crate) fn topic(family: &Family<TopicLabel, Counter>, topic: Topic) -> Counter {
        family.get_or_create(&TopicLabel::from(topic)).clone()
    }

    /// Counts an event dropped for lack of room.
    pub(crate) fn dropped(&self, kind: EventKind) {
        self.events_dropped
            .get_or_create(&EventLabel { kind: kind.label() })
            .inc();
    }

    /// Counts a ban.
    pub(crate) fn banned(&self, reason: BanReason) {
        self.peers_banned
            .get_or_create(&BanLabel {
                reason: reason.label(),
            })
            .inc();
    }
}
