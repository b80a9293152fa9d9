//! The composed libp2p behaviour and the parameters of each part (see the module docs of
//! [`crate::net`] for what they mean to a caller).

use std::time::Duration;

use libp2p::gossipsub::{self, MessageAuthenticity, MessageId, ValidationMode};
use libp2p::identity::Keypair;
use libp2p::kad::{self, store::MemoryStore};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    StreamProtocol, allow_block_list, connection_limits, identify, ping, request_response,
};
use prometheus_client::registry::Registry;

use super::codec::SyncCodec;
use super::error::{NetError, NetResult};
use super::metrics::NetMetrics;
use super::{NetConfig, Topic};

/// The identify protocol version lode announces (and that lode peers share).
pub(crate) const IDENTIFY_PROTOCOL: &str = "/lode/id/1.0.0";
/// Gossipsub mesh size target, low and high water marks, and outbound minimum: a devnet of 2 to 10
/// peers.
const MESH_N: usize = 4;
const MESH_N_LOW: usize = 2;
const MESH_N_HIGH: usize = 8;
const MESH_OUTBOUND_MIN: usize = 1;
/// Bytes the gossipsub envelope (signature, public key, topic, sequence number) adds to a message's
/// data; the frame limit is `max_gossip_bytes` plus this.
pub(crate) const GOSSIP_ENVELOPE_BYTES: usize = 1024;
/// Weight of one invalid message (P4, squared count) in a topic's score: three rejected messages
/// within the decay window (-450) pass the default `disconnect_score` of -400.
pub(crate) const INVALID_MESSAGE_WEIGHT: f64 = -50.0;
/// Half-life-like decay window of the invalid-message counter.
const INVALID_MESSAGE_DECAY: Duration = Duration::from_secs(30 * 60);
/// Gossipsub score thresholds: below `GOSSIP` a peer gets no gossip, below `PUBLISH` no published
/// messages, below `GRAYLIST` everything it sends is ignored.
const GOSSIP_THRESHOLD: f64 = -100.0;
const PUBLISH_THRESHOLD: f64 = -200.0;
const GRAYLIST_THRESHOLD: f64 = -300.0;
/// How often Kademlia bootstraps on its own.
const KAD_BOOTSTRAP_INTERVAL: Duration = Duration::from_secs(60);
/// How much longer than `request_timeout` a sync stream stays open inside libp2p: the requester
/// gives up after `request_timeout` (in [`super::NetHandle::request`]), and the responder's side
/// must outlast that, or the requester would see the stream closed instead of its own timeout.
pub(crate) const SYNC_STREAM_GRACE: Duration = Duration::from_secs(2);
/// Concurrent sync streams per connection.
const SYNC_CONCURRENT_STREAMS: usize = 32;

/// Every protocol a lode node runs, in the order the swarm consults them: the block list and the
/// connection limits first, so that a refused connection reaches no other protocol.
#[derive(NetworkBehaviour)]
pub(crate) struct LodeBehaviour {
    pub(crate) block_list: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) kad: kad::Behaviour<MemoryStore>,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) sync: request_response::Behaviour<SyncCodec>,
}

/// The protocol ids of one network.
#[derive(Debug, Clone)]
pub(crate) struct Protocols {
    pub(crate) blocks: gossipsub::IdentTopic,
    pub(crate) messages: gossipsub::IdentTopic,
    pub(crate) sync: StreamProtocol,
    pub(crate) kad: StreamProtocol,
}

impl Protocols {
    pub(crate) fn new(network: &str) -> NetResult<Protocols> {
        let protocol = |id: String| {
            StreamProtocol::try_from_owned(id.clone())
                .map_err(|e| NetError::InvalidConfig(format!("protocol id {id}: {e}")))
        };
        Ok(Protocols {
            blocks: gossipsub::IdentTopic::new(Topic::Blocks.topic_string(network)),
            messages: gossipsub::IdentTopic::new(Topic::Messages.topic_string(network)),
            sync: protocol(format!("/lode/{network}/sync/1"))?,
            kad: protocol(format!("/lode/{network}/kad/1.0.0"))?,
        })
    }

    /// Which of the two topics `hash` is.
    pub(crate) fn topic(&self, hash: &gossipsub::TopicHash) -> Option<Topic> {
        if *hash == self.blocks.hash() {
            Some(Topic::Blocks)
        } else if *hash == self.messages.hash() {
            Some(Topic::Messages)
        } else {
            None
        }
    }

    /// The gossipsub topic of `topic`.
    pub(crate) fn ident(&self, topic: Topic) -> &gossipsub::IdentTopic {
        match topic {
            Topic::Blocks => &self.blocks,
            Topic::Messages => &self.messages,
        }
    }
}

/// Builds the behaviour; registers gossipsub's own metrics in `registry`.
pub(crate) fn build(
    config: &NetConfig,
    protocols: &Protocols,
    metrics: &NetMetrics,
    registry: &mut Registry,
) -> NetResult<LodeBehaviour> {
    let keypair = &config.keypair;
    let local = keypair.public().to_peer_id();

    // Nothing is blocked at start.
    let block_list = allow_block_list::Behaviour::default();

    let limits = connection_limits::Behaviour::new(
        connection_limits::ConnectionLimits::default()
            .with_max_pending_incoming(Some(config.max_peers))
            .with_max_pending_outgoing(Some(config.max_peers))
            .with_max_established_incoming(Some(config.max_peers))
            .with_max_established_outgoing(Some(config.max_peers))
            .with_max_established(Some(config.max_peers.saturating_mul(2)))
            .with_max_established_per_peer(Some(2)),
    );

    let identify = identify::Behaviour::new(
        identify::Config::new(IDENTIFY_PROTOCOL.to_string(), keypair.public())
            .with_agent_version(format!("lode/{}", env!("CARGO_PKG_VERSION")))
            .with_push_listen_addr_updates(true),
    );

    let ping = ping::Behaviour::new(ping::Config::new());

    let mut kad_config = kad::Config::new(protocols.kad.clone());
    kad_config
        .set_periodic_bootstrap_interval(Some(KAD_BOOTSTRAP_INTERVAL))
        // Records are not used: inbound PUT_VALUE/ADD_PROVIDER are reported, never stored.
        .set_record_filtering(kad::StoreInserts::FilterBoth);
    let mut kad = kad::Behaviour::with_config(local, MemoryStore::new(local), kad_config);
    // Serve the DHT even without a confirmed external address (loopback devnets never get one).
    kad.set_mode(Some(kad::Mode::Server));

    let gossipsub = gossipsub(config, keypair, protocols, registry)?;

    let sync = request_response::Behaviour::with_codec(
        SyncCodec::new(
            config.max_request_bytes,
            config.max_response_bytes,
            metrics.sync_requests_oversized.clone(),
            metrics.sync_responses_oversized.clone(),
        ),
        [(
            protocols.sync.clone(),
            request_response::ProtocolSupport::Full,
        )],
        request_response::Config::default()
            .with_request_timeout(config.request_timeout.saturating_add(SYNC_STREAM_GRACE))
            .with_max_concurrent_streams(SYNC_CONCURRENT_STREAMS),
    );

    Ok(LodeBehaviour {
        block_list,
        limits,
        identify,
        ping,
        kad,
        gossipsub,
        sync,
    })
}

/// Gossipsub v1.1: signed messages, validation by the node before forwarding, content-addressed
/// ids, peer scoring.
fn gossipsub(
    config: &NetConfig,
    keypair: &Keypair,
    protocols: &Protocols,
    registry: &mut Registry,
) -> NetResult<gossipsub::Behaviour> {
    let setup = |what: &str, e: &dyn std::fmt::Display| NetError::Setup(format!("{what}: {e}"));
    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(|message: &gossipsub::Message| {
            MessageId::from(blake3::hash(&message.data).as_bytes().to_vec())
        })
        .max_transmit_size(
            config
                .max_gossip_bytes
                .saturating_add(GOSSIP_ENVELOPE_BYTES),
        )
        .mesh_n(MESH_N)
        .mesh_n_low(MESH_N_LOW)
        .mesh_n_high(MESH_N_HIGH)
        .mesh_outbound_min(MESH_OUTBOUND_MIN)
        .gossip_lazy(MESH_N)
        .heartbeat_initial_delay(Duration::from_millis(500))
        .heartbeat_interval(Duration::from_secs(1))
        .flood_publish(true)
        .duplicate_cache_time(Duration::from_secs(120))
        .build()
        .map_err(|e| setup("gossipsub configuration", &e))?;

    let mut behaviour =
        gossipsub::Behaviour::new(MessageAuthenticity::Signed(keypair.clone()), gossip_config)
            .map_err(|e| setup("gossipsub", &e))?
            .with_metrics(
                registry.sub_registry_with_prefix("gossipsub"),
                gossipsub::MetricsConfig::default(),
            );

    let mut params = gossipsub::PeerScoreParams {
        // Good behaviour cannot buy much credit against invalid messages.
        topic_score_cap: 20.0,
        // The node's reports (minor misbehaviour) arrive as negative application scores.
        app_specific_weight: 1.0,
        // Devnets run many nodes on one host: no penalty for sharing an IP address.
        ip_colocation_factor_weight: 0.0,
        retain_score: Duration::from_secs(30 * 60),
        ..gossipsub::PeerScoreParams::default()
    };
    for (topic, weight) in [(Topic::Blocks, 1.0), (Topic::Messages, 0.5)] {
        params
            .topics
            .insert(protocols.ident(topic).hash(), topic_params(weight));
    }
    let thresholds = gossipsub::PeerScoreThresholds {
        gossip_threshold: GOSSIP_THRESHOLD,
        publish_threshold: PUBLISH_THRESHOLD,
        graylist_threshold: GRAYLIST_THRESHOLD,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 5.0,
    };
    behaviour
        .with_peer_score(params, thresholds)
        .map_err(|e| setup("gossipsub peer scoring", &e))?;
    for topic in [&protocols.blocks, &protocols.messages] {
        behaviour
            .subscribe(topic)
            .map_err(|e| setup("gossipsub subscription", &e))?;
    }
    Ok(behaviour)
}

/// The score parameters of one topic. Mesh-delivery penalties (P3, P3b) are off: a quiet devnet
/// delivers too few messages for them to mean anything. Invalid messages (P4) weigh heavily;
/// time in the mesh (P1) and first deliveries (P2) earn a little credit, capped.
fn topic_params(topic_weight: f64) -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 300.0,
        first_message_deliveries_weight: 0.5,
        first_message_deliveries_decay: gossipsub::score_parameter_decay(Duration::from_secs(600)),
        first_message_deliveries_cap: 20.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: INVALID_MESSAGE_WEIGHT,
        invalid_message_deliveries_decay: gossipsub::score_parameter_decay(INVALID_MESSAGE_DECAY),
        ..gossipsub::TopicScoreParams::default()
    }
}
