//! The libp2p networking layer: it moves bytes between lode nodes and knows nothing of blocks,
//! messages or chain types — the node encodes and decodes those itself.
//!
//! # What runs
//!
//! [`spawn`] builds a libp2p swarm and moves it onto a task of the current tokio runtime. The node
//! talks to that task through a [`NetHandle`] (cheap to clone; every call is a message on a bounded
//! channel and an answer on a oneshot) and hears from it through the bounded
//! [`tokio::sync::mpsc::Receiver<NetEvent>`] that `spawn` returns. [`NetHandle::shutdown`] (or
//! dropping every handle) stops the task and closes every connection; afterwards every call
//! returns [`NetError::Stopped`].
//!
//! Transports: TCP and QUIC (`/ip4/…/tcp/…`, `/ip4/…/udp/…/quic-v1`), TCP secured by noise and
//! multiplexed by yamux; DNS addresses resolve through the system resolver when one is configured
//! (without one, DNS is left out and a warning logged). mDNS is not used: peers are found through
//! the bootstrap list and Kademlia.
//!
//! # Protocols (with `<network>` the [`NetConfig::network`] name)
//!
//! | protocol | id | what for |
//! |---|---|---|
//! | identify | `/ipfs/id/1.0.0`, protocol version `/lode/id/1.0.0`, agent `lode/<crate version>` | listen addresses, protocols, agent of each peer |
//! | ping | `/ipfs/ping/1.0.0` | liveness and round-trip time ([`PeerInfo::rtt`]) |
//! | Kademlia | `/lode/<network>/kad/1.0.0` | peer discovery: bootstrap peers and identify-reported listen addresses are added to the routing table; bootstraps at start and every 60 s; serves the DHT (server mode) but stores no records |
//! | gossipsub v1.1 | `/meshsub/1.1.0` etc.; topics `/lode/<network>/blocks` ([`Topic::Blocks`]) and `/lode/<network>/msgs` ([`Topic::Messages`]) | block and message propagation |
//! | request–response | `/lode/<network>/sync/1` | chain sync: one request, one response ([`NetHandle::request`]) |
//!
//! Nodes of different networks share no topic and no protocol id, so they cannot talk sync or
//! gossip to each other.
//!
//! # Gossip
//!
//! Messages are signed by their author (strict validation: unsigned or badly signed ones are
//! dropped by gossipsub). A message's id is the BLAKE3 hash of its data, so the same bytes are
//! delivered once however many peers send them (ids are remembered for 2 minutes), and
//! publishing bytes this node has already seen in that time is a no-op (counted, not an error).
//! Nothing is forwarded before the node has judged it: every [`NetEvent::Gossip`] must be answered
//! with [`NetHandle::validate`] —
//! [`Validation::Accept`] forwards it to the mesh, [`Validation::Reject`] drops it and penalises
//! the peer that sent it (gossipsub's P4, invalid deliveries, weighs −50 per squared count on the
//! blocks topic, −25 on msgs), [`Validation::Ignore`] drops it without penalty. An unanswered
//! message is forgotten after gossipsub's history window (about 5 s) and its validation entry
//! after a minute. Mesh parameters suit 2–10 peers (D = 4, D_low = 2, D_high = 8); publishing
//! floods to every subscribed peer.
//!
//! # Bounds
//!
//! Everything a peer can send is bounded:
//! - a gossip message's data: at most `max_gossip_bytes` (the frame limit is that plus 1 KiB of
//!   envelope; a message with more data is rejected and its sender penalised);
//! - a sync request: at most `max_request_bytes`, a sync response at most `max_response_bytes`.
//!   Both travel as a big-endian `u32` length and the bytes; the reader refuses a length over the
//!   limit before reading the body, and grows its buffer only as bytes arrive. A requester waits at
//!   most `request_timeout` end to end; a responder's node has `request_timeout` + 2 s to answer
//!   before its stream is dropped; at most 32 concurrent sync streams run per connection;
//! - connections: at most `max_peers` established incoming, `max_peers` established outgoing,
//!   `2 × max_peers` established in all, `max_peers` pending each way, and 2 per peer;
//! - the event queue to the node holds [`EVENT_QUEUE`] events. When it is full the event is
//!   dropped and counted (`lode_net_events_dropped_total`): a gossip message is answered `Ignore`
//!   (no penalty for its sender), a sync request is left unanswered (the requester sees it fail),
//!   a peer event is lost (call [`NetHandle::peers`] for the truth).
//!
//! # Standing, bans and blocks
//!
//! Each peer's gossipsub score is polled every [`SCORE_POLL_INTERVAL`]; a peer whose score falls
//! below `disconnect_score` is disconnected and refused for `ban_duration` (the default −400 is
//! passed by three rejected block messages in quick succession). [`NetHandle::report`] lets the
//! node add what it learns itself: a [serious](Misbehaviour::is_serious) misbehaviour (an invalid
//! block, a provably wrong sync response) bans the peer at once; a minor one subtracts its
//! [penalty](Misbehaviour::penalty) from the peer's application score, which decays by half every
//! five minutes, and bans it when the total score falls below `disconnect_score`. A banned peer's
//! connections are closed, its inbound and outbound connections refused and it is removed from
//! the Kademlia table; when the ban ends it may connect again (its gossipsub score, remembered for
//! 30 minutes, still counts against it). [`NetHandle::block_peer`] is the operator's (and the
//! partition tests') switch: the peer is disconnected and refused until
//! [`NetHandle::unblock_peer`], independently of any ban.
//!
//! Bootstrap peers are dialled at start and redialled every 30 s while not connected (unless
//! banned or blocked).
//!
//! # Metrics
//!
//! `spawn` registers, under the `lode` prefix of the registry it is given: libp2p's own metrics
//! (`lode_libp2p_*`: swarm, identify, Kademlia, ping, gossipsub, bandwidth), gossipsub's internal
//! metrics (`lode_gossipsub_*`), and this layer's counters (`lode_net_*`): gossip received,
//! accepted, rejected, ignored, oversized, published, published without peers and duplicate, per
//! topic (`topic="blocks"|"msgs"`); events dropped per kind; sync requests received, served,
//! failed, oversized; sync requests sent, answered, failed, responses oversized; peers banned per
//! reason (`reason="score"|"report"`); peers connected.
//!
//! # Keys
//!
//! The node's identity is an ed25519 keypair; [`load_or_create_keypair`] keeps it in a file of the
//! node's directory (protobuf encoding, mode `0600`).

mod behaviour;
mod codec;
mod error;
mod handle;
mod keys;
mod metrics;
mod task;

use std::fmt;
use std::time::Duration;

use libp2p::gossipsub::MessageId;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, Swarm, SwarmBuilder, request_response};
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::mpsc;

pub use codec::{FrameTooLarge, read_frame, write_frame};
pub use error::{NetError, NetResult};
pub use handle::NetHandle;
pub use keys::{generate_keypair, load_keypair, load_or_create_keypair, save_keypair};

use behaviour::{LodeBehaviour, Protocols};
use metrics::NetMetrics;

/// How many events the queue from the swarm task to the node holds.
pub const EVENT_QUEUE: usize = 1024;
/// How often peer scores are polled and bans expired.
pub const SCORE_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// How long a connection without any active protocol stays open.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(300);

/// Default bound on a sync request (64 KiB).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Default bound on a sync response (16 MiB).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Default bound on a gossip message's data (1 MiB).
pub const DEFAULT_MAX_GOSSIP_BYTES: usize = 1024 * 1024;
/// Default sync request timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default connection cap (see [`NetConfig::max_peers`]).
pub const DEFAULT_MAX_PEERS: u32 = 50;
/// Default score below which a peer is banned.
pub const DEFAULT_DISCONNECT_SCORE: f64 = -400.0;
/// Default ban length.
pub const DEFAULT_BAN_DURATION: Duration = Duration::from_secs(600);

/// Everything [`spawn`] needs.
#[derive(Clone)]
pub struct NetConfig {
    /// The network's name (`devnet`, …): letters, digits, `-`, `_` and `.`, at most 64 bytes. It
    /// is part of every topic and protocol id.
    pub network: String,
    /// The node's identity (ed25519; see [`load_or_create_keypair`]).
    pub keypair: Keypair,
    /// Addresses to listen on, e.g. `/ip4/127.0.0.1/tcp/0` and `/ip4/127.0.0.1/udp/0/quic-v1`.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start and add to Kademlia, each address ending in `/p2p/<peer id>`.
    pub bootstrap: Vec<Multiaddr>,
    /// Bound on a sync request, both sent and received (at most `u32::MAX`).
    pub max_request_bytes: usize,
    /// Bound on a sync response, both sent and received (at most `u32::MAX`); a longer one is an
    /// error, never buffered whole.
    pub max_response_bytes: usize,
    /// How long a sync request may take, end to end.
    pub request_timeout: Duration,
    /// Bound on a gossip message's data (at least 100 bytes).
    pub max_gossip_bytes: usize,
    /// Connection cap: established incoming and outgoing connections each, and pending ones each
    /// way; twice this in all; 2 per peer.
    pub max_peers: u32,
    /// Peers whose gossipsub score falls below this (negative) value are disconnected and banned.
    pub disconnect_score: f64,
    /// How long a ban lasts.
    pub ban_duration: Duration,
}

impl NetConfig {
    /// A configuration with the defaults (`DEFAULT_*`), listening on loopback TCP and QUIC with
    /// ports chosen by the system, and no bootstrap peers.
    pub fn new(network: impl Into<String>, keypair: Keypair) -> NetConfig {
        let loopback = |protocol: Protocol<'static>| {
            Multiaddr::empty()
                .with(Protocol::Ip4(std::net::Ipv4Addr::LOCALHOST))
                .with(protocol)
        };
        NetConfig {
            network: network.into(),
            keypair,
            listen: vec![
                loopback(Protocol::Tcp(0)),
                loopback(Protocol::Udp(0)).with(Protocol::QuicV1),
            ],
            bootstrap: Vec::new(),
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_gossip_bytes: DEFAULT_MAX_GOSSIP_BYTES,
            max_peers: DEFAULT_MAX_PEERS,
            disconnect_score: DEFAULT_DISCONNECT_SCORE,
            ban_duration: DEFAULT_BAN_DURATION,
        }
    }

    /// The peer id of [`NetConfig::keypair`].
    pub fn local_peer_id(&self) -> PeerId {
        self.keypair.public().to_peer_id()
    }

    /// Checks every field; `spawn` calls it.
    ///
    /// # Errors
    /// [`NetError::InvalidConfig`] naming the first unusable field.
    pub fn validate(&self) -> NetResult<()> {
        let invalid = |what: String| Err(NetError::InvalidConfig(what));
        let name_ok = !self.network.is_empty()
            && self.network.len() <= 64
            && self
                .network
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !name_ok {
            return invalid(format!(
                "network name {:?}: use 1 to 64 letters, digits, '-', '_' or '.'",
                self.network
            ));
        }
        let u32_max = usize::try_from(u32::MAX).unwrap_or(usize::MAX);
        for (name, value) in [
            ("max_request_bytes", self.max_request_bytes),
            ("max_response_bytes", self.max_response_bytes),
        ] {
            if value == 0 || value > u32_max {
                return invalid(format!("{name} = {value}: must be in 1..=u32::MAX"));
            }
        }
        if self.max_gossip_bytes < 100 || self.max_gossip_bytes > u32_max {
            return invalid(format!(
                "max_gossip_bytes = {}: must be in 100..=u32::MAX",
                self.max_gossip_bytes
            ));
        }
        if self.request_timeout.is_zero() {
            return invalid("request_timeout must not be zero".into());
        }
        if self.max_peers == 0 {
            return invalid("max_peers must not be zero".into());
        }
        if !self.disconnect_score.is_finite() || self.disconnect_score >= 0.0 {
            return invalid(format!(
                "disconnect_score = {}: must be negative (a new peer scores 0)",
                self.disconnect_score
            ));
        }
        if self.listen.is_empty() {
            return invalid("listen: at least one address is needed".into());
        }
        Ok(())
    }
}

impl fmt::Debug for NetConfig {
    /// Everything but the secret key (shown as the peer id).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetConfig")
            .field("network", &self.network)
            .field("peer_id", &self.local_peer_id())
            .field("listen", &self.listen)
            .field("bootstrap", &self.bootstrap)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("max_gossip_bytes", &self.max_gossip_bytes)
            .field("max_peers", &self.max_peers)
            .field("disconnect_score", &self.disconnect_score)
            .field("ban_duration", &self.ban_duration)
            .finish()
    }
}

/// A gossip topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Blocks: `/lode/<network>/blocks`.
    Blocks,
    /// Messages for the mempool: `/lode/<network>/msgs`.
    Messages,
}

impl Topic {
    /// Both topics.
    pub const ALL: [Topic; 2] = [Topic::Blocks, Topic::Messages];

    /// The topic's short name: `blocks` or `msgs` (also its metrics label).
    pub fn name(self) -> &'static str {
        match self {
            Topic::Blocks => "blocks",
            Topic::Messages => "msgs",
        }
    }

    /// The gossipsub topic string on `network`: `/lode/<network>/<name>`.
    pub fn topic_string(self, network: &str) -> String {
        format!("/lode/{network}/{}", self.name())
    }
}

/// The node's verdict on a gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// Valid: forward it to the mesh.
    Accept,
    /// Invalid: drop it and penalise the peer that sent it.
    Reject,
    /// Not worth forwarding (a duplicate block, too old, …), but not a fault: drop it, no penalty.
    Ignore,
}

/// The id of a gossip message (the BLAKE3 hash of its data); opaque, to be passed back to
/// [`NetHandle::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GossipId(pub(crate) MessageId);

impl fmt::Display for GossipId {
    /// The id in hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0.0))
    }
}

/// Answers one inbound sync request, through [`NetHandle::respond`]. Dropping it leaves the request
/// unanswered (the requester sees a failure).
#[derive(Debug)]
pub struct ResponseChannel {
    pub(crate) inner: request_response::ResponseChannel<Vec<u8>>,
    pub(crate) peer: PeerId,
}

impl ResponseChannel {
    /// The peer that asked.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// Whether the requester still waits (false once the request timed out or its connection
    /// closed).
    pub fn is_open(&self) -> bool {
        self.inner.is_open()
    }
}

/// What the network tells the node.
#[derive(Debug)]
pub enum NetEvent {
    /// A gossip message, not yet forwarded. It MUST be answered with [`NetHandle::validate`]
    /// (with this `id` and `source`).
    Gossip {
        /// Its topic.
        topic: Topic,
        /// The peer it came from (not necessarily its author).
        source: PeerId,
        /// Its id.
        id: GossipId,
        /// Its data (at most `max_gossip_bytes`).
        data: Vec<u8>,
    },
    /// A peer asks for something (at most `max_request_bytes`); answer through `channel` within
    /// `request_timeout`.
    SyncRequest {
        /// The peer asking.
        peer: PeerId,
        /// The request.
        request: Vec<u8>,
        /// Where the answer goes.
        channel: ResponseChannel,
    },
    /// A peer's first connection opened.
    PeerConnected(PeerId),
    /// A peer's last connection closed.
    PeerDisconnected(PeerId),
}

/// What the node found wrong with a peer, for [`NetHandle::report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Did not answer a sync request in time, or answered with nothing useful. Minor.
    Unresponsive,
    /// Sent bytes that do not decode (a malformed block, message or sync response). Minor, but
    /// weighs more.
    Malformed,
    /// Answered a sync request with a response that decodes but is provably wrong (blocks that do
    /// not chain, do not match what was asked, carry invalid proofs). Serious.
    BadSyncResponse,
    /// Sent a block that fails validation. Serious.
    InvalidBlock,
}

impl Misbehaviour {
    /// Whether the peer is banned at once.
    pub fn is_serious(self) -> bool {
        matches!(
            self,
            Misbehaviour::BadSyncResponse | Misbehaviour::InvalidBlock
        )
    }

    /// What a minor misbehaviour subtracts from the peer's score (serious ones ban instead).
    pub fn penalty(self) -> f64 {
        match self {
            Misbehaviour::Unresponsive => 10.0,
            Misbehaviour::Malformed => 50.0,
            Misbehaviour::BadSyncResponse | Misbehaviour::InvalidBlock => 1000.0,
        }
    }
}

/// What the node knows about a connected peer (serialisable for RPC: ids and addresses as
/// strings, `rtt` as `rtt_ms`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerInfo {
    /// The peer.
    #[serde(serialize_with = "ser::display")]
    pub peer_id: PeerId,
    /// The remote addresses of its open connections.
    #[serde(serialize_with = "ser::display_all")]
    pub addresses: Vec<Multiaddr>,
    /// The addresses it listens on, as it reported them (identify; at most 32).
    #[serde(serialize_with = "ser::display_all")]
    pub listen_addrs: Vec<Multiaddr>,
    /// Its gossipsub score (`None` before gossipsub knows it).
    pub score: Option<f64>,
    /// Its agent version (identify), e.g. `lode/0.1.0`.
    pub agent_version: Option<String>,
    /// The protocols it supports (identify; at most 64).
    pub protocols: Vec<String>,
    /// The last ping round-trip time.
    #[serde(rename = "rtt_ms", serialize_with = "ser::millis")]
    pub rtt: Option<Duration>,
    /// The gossip topics it subscribes to.
    pub topics: Vec<String>,
    /// The gossip topics for which it is in this node's mesh.
    pub mesh_topics: Vec<String>,
}

mod ser {
    //! Serialisers for [`super::PeerInfo`]'s libp2p types.

    use std::fmt::Display;
    use std::time::Duration;

    use serde::Serializer;

    pub(super) fn display<T: Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub(super) fn display_all<T: Display, S: Serializer>(
        values: &[T],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(values.iter().map(ToString::to_string))
    }

    pub(super) fn millis<S: Serializer>(rtt: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match rtt {
            Some(rtt) => s.serialize_some(&(rtt.as_secs_f64() * 1000.0)),
            None => s.serialize_none(),
        }
    }
}

/// Builds the swarm from `config`, registers its metrics under `lode_` in `registry`, starts
/// listening and dialling the bootstrap peers, and moves it onto a task of the current tokio
/// runtime.
///
/// # Errors
/// [`NetError::NoRuntime`] outside a tokio runtime; [`NetError::InvalidConfig`] or
/// [`NetError::BootstrapWithoutPeerId`] for a bad configuration; [`NetError::Setup`] when the
/// transport or a behaviour cannot be built; [`NetError::Listen`] when an address cannot be bound.
pub fn spawn(
    config: NetConfig,
    registry: &mut Registry,
) -> NetResult<(NetHandle, mpsc::Receiver<NetEvent>)> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| NetError::NoRuntime)?;
    config.validate()?;
    let protocols = Protocols::new(&config.network)?;
    let bootstrap = config
        .bootstrap
        .iter()
        .map(|addr| match addr.iter().last() {
            Some(Protocol::P2p(peer)) => Ok((peer, addr.clone())),
            _ => Err(NetError::BootstrapWithoutPeerId(addr.clone())),
        })
        .collect::<NetResult<Vec<_>>>()?;

    let lode = registry.sub_registry_with_prefix("lode");
    let metrics = NetMetrics::register(lode.sub_registry_with_prefix("net"));
    let behaviour = behaviour::build(&config, &protocols, &metrics, lode)?;
    let libp2p_metrics = libp2p::metrics::Metrics::new(lode);
    let swarm = build_swarm(&config.keypair, behaviour, lode)?;

    let local_peer_id = config.local_peer_id();
    let request_timeout = config.request_timeout;
    let (commands, command_rx) = mpsc::channel(handle::COMMAND_QUEUE);
    let (event_tx, events) = mpsc::channel(EVENT_QUEUE);
    let task = task::SwarmTask::start(task::Parts {
        swarm,
        config,
        protocols,
        bootstrap,
        metrics,
        libp2p_metrics,
        commands: command_rx,
        events: event_tx,
    })?;
    runtime.spawn(task.run());
    Ok((
        NetHandle::new(local_peer_id, commands, request_timeout),
        events,
    ))
}

/// The transport (TCP + noise + yamux, QUIC, DNS when the system has a resolver configuration,
/// bandwidth metrics) around `behaviour`.
fn build_swarm(
    keypair: &Keypair,
    behaviour: LodeBehaviour,
    registry: &mut Registry,
) -> NetResult<Swarm<LodeBehaviour>> {
    let setup = |e: &dyn fmt::Display| NetError::Setup(e.to_string());
    let swarm_config =
        |c: libp2p::swarm::Config| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT);
    let base = SwarmBuilder::with_existing_identity(keypair.clone())
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .map_err(|e| setup(&e))?
        .with_quic();
    let swarm = match base.with_dns() {
        Ok(builder) => builder
            .with_bandwidth_metrics(registry)
            .with_behaviour(|_| behaviour)
            .map_err(|e| match e {})?
            .with_swarm_config(swarm_config)
            .build(),
        Err(e) => {
            tracing::warn!(error = %e, "no system DNS configuration: /dns addresses will not resolve");
            SwarmBuilder::with_existing_identity(keypair.clone())
                .with_tokio()
                .with_tcp(
                    libp2p::tcp::Config::default().nodelay(true),
                    libp2p::noise::Config::new,
                    libp2p::yamux::Config::default,
                )
                .map_err(|e| setup(&e))?
                .with_quic()
                .with_bandwidth_metrics(registry)
                .with_behaviour(|_| behaviour)
                .map_err(|e| match e {})?
                .with_swarm_config(swarm_config)
                .build()
        }
    };
    Ok(swarm)
}
