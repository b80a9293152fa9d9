//! The swarm task: owns the libp2p swarm, runs the node's commands against it, turns swarm events
//! into [`NetEvent`]s, and keeps the peers' standing (scores, bans, blocks).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::gossipsub::{self, MessageAcceptance, MessageId, PublishError};
use libp2p::metrics::Recorder;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundFailure, OutboundRequestId};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, core::transport::ListenerId, identify};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use super::behaviour::{IDENTIFY_PROTOCOL, LodeBehaviour, LodeBehaviourEvent, Protocols};
use super::codec::FrameTooLarge;
use super::error::{NetError, NetResult};
use super::handle::{Command, Reply};
use super::metrics::{BanReason, EventKind, NetMetrics};
use super::{
    GossipId, Misbehaviour, NetConfig, NetEvent, PeerInfo, ResponseChannel, SCORE_POLL_INTERVAL,
    Topic, Validation,
};

/// Gossip messages handed to the node and not yet validated, at most (beyond that, new ones are
/// ignored).
const MAX_PENDING_VALIDATIONS: usize = 2 * super::EVENT_QUEUE;
/// How long a validation entry is kept for the node's answer (gossipsub itself forgets the message
/// after its history window).
const VALIDATION_TTL: Duration = Duration::from_secs(60);
/// How often unconnected bootstrap peers are dialled again.
const BOOTSTRAP_REDIAL: Duration = Duration::from_secs(30);
/// Half-life of the penalties of minor misbehaviour.
const PENALTY_HALF_LIFE: Duration = Duration::from_secs(300);
/// A penalty below this is forgotten.
const PENALTY_FLOOR: f64 = 0.5;
/// Listen addresses and protocols kept per peer from identify.
const MAX_REPORTED_ADDRS: usize = 32;
const MAX_REPORTED_PROTOCOLS: usize = 64;
/// Longest agent version kept, in bytes.
const MAX_AGENT_LEN: usize = 256;

/// What [`super::spawn`] hands the task.
pub(crate) struct Parts {
    pub(crate) swarm: Swarm<LodeBehaviour>,
    pub(crate) config: NetConfig,
    pub(crate) protocols: Protocols,
    pub(crate) bootstrap: Vec<(PeerId, Multiaddr)>,
    pub(crate) metrics: NetMetrics,
    pub(crate) libp2p_metrics: libp2p::metrics::Metrics,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) events: mpsc::Sender<NetEvent>,
}

/// What is known of a connected peer.
#[derive(Debug, Default)]
struct PeerState {
    connections: HashMap<ConnectionId, Multiaddr>,
    agent_version: Option<String>,
    protocols: Vec<String>,
    listen_addrs: Vec<Multiaddr>,
    rtt: Option<Duration>,
}

/// The swarm task's state.
pub(crate) struct SwarmTask {
    swarm: Swarm<LodeBehaviour>,
    config: NetConfig,
    protocols: Protocols,
    /// Bootstrap peers and their addresses without the `/p2p` suffix.
    bootstrap: Vec<(PeerId, Multiaddr)>,
    metrics: NetMetrics,
    libp2p_metrics: libp2p::metrics::Metrics,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetEvent>,
    peers: HashMap<PeerId, PeerState>,
    /// Listeners that have not reported an address yet, and who waits for them.
    pending_listeners: HashSet<ListenerId>,
    listen_waiters: Vec<Reply<Vec<Multiaddr>>>,
    pending_dials: HashMap<ConnectionId, (Multiaddr, Reply<()>)>,
    pending_requests: HashMap<OutboundRequestId, (PeerId, Reply<Vec<u8>>)>,
    pending_validations: HashMap<MessageId, (Topic, Instant)>,
    /// Peers blocked by the operator, until unblocked.
    blocked: HashSet<PeerId>,
    /// Banned peers and the end of their ban (`None`: beyond what `Instant` can represent).
    bans: HashMap<PeerId, Option<Instant>>,
    /// Accumulated penalties of minor misbehaviour (applied as negative application scores).
    penalties: HashMap<PeerId, f64>,
    last_redial: Instant,
}

impl SwarmTask {
    /// Starts listening, registers and dials the bootstrap peers.
    pub(crate) fn start(parts: Parts) -> NetResult<SwarmTask> {
        let Parts {
            mut swarm,
            config,
            protocols,
            bootstrap,
            metrics,
            libp2p_metrics,
            commands,
            events,
        } = parts;
        let mut pending_listeners = HashSet::new();
        for addr in &config.listen {
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Listen {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
            pending_listeners.insert(id);
        }
        let bootstrap: Vec<(PeerId, Multiaddr)> = bootstrap
            .into_iter()
            .map(|(peer, mut addr)| {
                addr.pop();
                (peer, addr)
            })
            .collect();
        let mut task = SwarmTask {
            swarm,
            config,
            protocols,
            bootstrap,
            metrics,
            libp2p_metrics,
            commands,
            events,
            peers: HashMap::new(),
            pending_listeners,
            listen_waiters: Vec::new(),
            pending_dials: HashMap::new(),
            pending_requests: HashMap::new(),
            pending_validations: HashMap::new(),
            blocked: HashSet::new(),
            bans: HashMap::new(),
            penalties: HashMap::new(),
            last_redial: Instant::now(),
        };
        for (peer, addr) in task.bootstrap.clone() {
            task.swarm.add_peer_address(peer, addr.clone());
            task.swarm.behaviour_mut().kad.add_address(&peer, addr);
        }
        task.dial_bootstrap();
        if !task.bootstrap.is_empty() {
            // Only fails without known peers, which the loop above rules out.
            let _ = task.swarm.behaviour_mut().kad.bootstrap();
        }
        Ok(task)
    }

    /// Runs until [`Command::Shutdown`] or until every handle is dropped. Dropping the swarm closes
    /// every connection and listener; pending callers get [`NetError::Stopped`].
    pub(crate) async fn run(mut self) {
        let mut tick = tokio::time::interval(SCORE_POLL_INTERVAL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown(reply)) => {
                        let _ = reply.send(Ok(()));
                        break;
                    }
                    Some(command) => self.command(command),
                    None => break,
                },
                event = self.swarm.select_next_some() => self.swarm_event(event),
                _ = tick.tick() => self.maintain(),
            }
        }
        tracing::info!(peer_id = %self.swarm.local_peer_id(), "network task stopped");
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::ListenAddrs(reply) => {
                if self.pending_listeners.is_empty() {
                    let _ = reply.send(Ok(self.listen_addrs()));
                } else {
                    self.listen_waiters.push(reply);
                }
            }
            Command::Publish { topic, data, reply } => {
                let _ = reply.send(self.publish(topic, data));
            }
            Command::Validate {
                id,
                source,
                validation,
                reply,
            } => {
                self.validate(id, source, validation);
                let _ = reply.send(Ok(()));
            }
            Command::Request {
                peer,
                request,
                reply,
            } => self.request(peer, request, reply),
            Command::Respond {
                channel,
                response,
                reply,
            } => {
                let _ = reply.send(self.respond(channel, response));
            }
            Command::Peers(reply) => {
                let _ = reply.send(Ok(self.peer_infos()));
            }
            Command::Dial { addr, reply } => self.dial(addr, reply),
            Command::Report {
                peer,
                misbehaviour,
                reply,
            } => {
                self.report(peer, misbehaviour);
                let _ = reply.send(Ok(()));
            }
            Command::Block { peer, reply } => {
                tracing::info!(%peer, "peer blocked");
                self.blocked.insert(peer);
                self.swarm.behaviour_mut().block_list.block_peer(peer);
                let _ = reply.send(Ok(()));
            }
            Command::Unblock { peer, reply } => {
                tracing::info!(%peer, "peer unblocked");
                self.blocked.remove(&peer);
                if !self.bans.contains_key(&peer) {
                    self.swarm.behaviour_mut().block_list.unblock_peer(peer);
                }
                let _ = reply.send(Ok(()));
            }
            // Handled by `run`.
            Command::Shutdown(reply) => {
                let _ = reply.send(Ok(()));
            }
        }
    }

    fn listen_addrs(&self) -> Vec<Multiaddr> {
        let local = *self.swarm.local_peer_id();
        self.swarm
            .listeners()
            .map(|addr| addr.clone().with_p2p(local).unwrap_or_else(|addr| addr))
            .collect()
    }

    fn answer_listen_waiters(&mut self) {
        if self.pending_listeners.is_empty() {
            let addrs = self.listen_addrs();
            for reply in self.listen_waiters.drain(..) {
                let _ = reply.send(Ok(addrs.clone()));
            }
        }
    }

    fn is_refused(&self, peer: &PeerId) -> bool {
        self.blocked.contains(peer) || self.bans.contains_key(peer)
    }

    fn publish(&mut self, topic: Topic, data: Vec<u8>) -> NetResult<()> {
        let limit = self.config.max_gossip_bytes;
        if data.len() > limit {
            return Err(NetError::GossipTooLarge {
                len: data.len(),
                limit,
            });
        }
        let len = data.len();
        let ident = self.protocols.ident(topic).clone();
        match self.swarm.behaviour_mut().gossipsub.publish(ident, data) {
            Ok(_) => {
                NetMetrics::topic(&self.metrics.gossip_published, topic).inc();
                Ok(())
            }
            Err(PublishError::NoPeersSubscribedToTopic) => {
                tracing::debug!(topic = topic.name(), "published with no subscribed peer");
                NetMetrics::topic(&self.metrics.gossip_publish_no_peers, topic).inc();
                Ok(())
            }
            Err(PublishError::Duplicate) => {
                NetMetrics::topic(&self.metrics.gossip_publish_duplicate, topic).inc();
                Ok(())
            }
            Err(PublishError::MessageTooLarge) => Err(NetError::GossipTooLarge { len, limit }),
            Err(e) => Err(NetError::Publish(e.to_string())),
        }
    }

    fn validate(&mut self, id: GossipId, source: PeerId, validation: Validation) {
        let topic = self
            .pending_validations
            .remove(&id.0)
            .map(|(topic, _)| topic);
        let acceptance = match validation {
            Validation::Accept => MessageAcceptance::Accept,
            Validation::Reject => MessageAcceptance::Reject,
            Validation::Ignore => MessageAcceptance::Ignore,
        };
        let known = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id.0, &source, acceptance);
        if let (true, Some(topic)) = (known, topic) {
            let family = match validation {
                Validation::Accept => &self.metrics.gossip_accepted,
                Validation::Reject => &self.metrics.gossip_rejected,
                Validation::Ignore => &self.metrics.gossip_ignored,
            };
            NetMetrics::topic(family, topic).inc();
        } else if !known {
            tracing::debug!(%id, "validation of a message gossipsub no longer holds");
        }
    }

    fn request(&mut self, peer: PeerId, request: Vec<u8>, reply: Reply<Vec<u8>>) {
        let limit = self.config.max_request_bytes;
        if request.len() > limit {
            let _ = reply.send(Err(NetError::RequestTooLarge {
                len: request.len(),
                limit,
            }));
            return;
        }
        if self.is_refused(&peer) {
            let _ = reply.send(Err(NetError::PeerBlocked(peer)));
            return;
        }
        let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
        self.metrics.sync_requests_sent.inc();
        self.pending_requests.insert(id, (peer, reply));
    }

    fn respond(&mut self, channel: ResponseChannel, response: Vec<u8>) -> NetResult<()> {
        let ResponseChannel { inner, peer } = channel;
        let limit = self.config.max_response_bytes;
        if response.len() > limit {
            self.metrics.sync_responses_oversized.inc();
            return Err(NetError::ResponseTooLarge {
                peer,
                len: u64::try_from(response.len()).unwrap_or(u64::MAX),
                limit,
            });
        }
        self.swarm
            .behaviour_mut()
            .sync
            .send_response(inner, response)
            .map_err(|_| NetError::ResponseNotSent(peer))
    }

    fn peer_infos(&self) -> Vec<PeerInfo> {
        let gossipsub = &self.swarm.behaviour().gossipsub;
        let subscriptions: HashMap<PeerId, Vec<String>> = gossipsub
            .all_peers()
            .map(|(peer, topics)| {
                let topics = topics.iter().map(|t| t.as_str().to_string()).collect();
                (*peer, topics)
            })
            .collect();
        let mut mesh: HashMap<PeerId, Vec<String>> = HashMap::new();
        for topic in Topic::ALL {
            let hash = self.protocols.ident(topic).hash();
            for peer in gossipsub.mesh_peers(&hash) {
                mesh.entry(*peer)
                    .or_default()
                    .push(hash.as_str().to_string());
            }
        }
        let mut infos: Vec<PeerInfo> = self
            .peers
            .iter()
            .map(|(peer, state)| {
                let mut addresses: Vec<Multiaddr> = state.connections.values().cloned().collect();
                addresses.sort();
                addresses.dedup();
                PeerInfo {
                    peer_id: *peer,
                    addresses,
                    listen_addrs: state.listen_addrs.clone(),
                    score: gossipsub.peer_score(peer),
                    agent_version: state.agent_version.clone(),
                    protocols: state.protocols.clone(),
                    rtt: state.rtt,
                    topics: subscriptions.get(peer).cloned().unwrap_or_default(),
                    mesh_topics: mesh.get(peer).cloned().unwrap_or_default(),
                }
            })
            .collect();
        infos.sort_by_key(|info| info.peer_id);
        infos
    }

    fn dial(&mut self, addr: Multiaddr, reply: Reply<()>) {
        let peer = match addr.iter().last() {
            Some(Protocol::P2p(peer)) => Some(peer),
            _ => None,
        };
        if let Some(peer) = peer
            && self.is_refused(&peer)
        {
            let _ = reply.send(Err(NetError::PeerBlocked(peer)));
            return;
        }
        let opts = match peer {
            Some(peer) => DialOpts::peer_id(peer)
                .addresses(vec![addr.clone()])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build(),
            None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
        };
        let connection = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.pending_dials.insert(connection, (addr, reply));
            }
            Err(DialError::DialPeerConditionFalse(_)) => {
                let _ = reply.send(Ok(()));
            }
            Err(e) => {
                let _ = reply.send(Err(NetError::Dial {
                    addr,
                    reason: e.to_string(),
                }));
            }
        }
    }

    fn dial_bootstrap(&mut self) {
        for (peer, addr) in self.bootstrap.clone() {
            if self.swarm.is_connected(&peer) || self.is_refused(&peer) {
                continue;
            }
            let opts = DialOpts::peer_id(peer)
                .addresses(vec![addr.clone()])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            match self.swarm.dial(opts) {
                Ok(()) | Err(DialError::DialPeerConditionFalse(_)) => {}
                Err(e) => tracing::warn!(%peer, %addr, error = %e, "cannot dial bootstrap peer"),
            }
        }
    }

    fn report(&mut self, peer: PeerId, misbehaviour: Misbehaviour) {
        tracing::info!(%peer, ?misbehaviour, "peer reported");
        if misbehaviour.is_serious() {
            self.ban(peer, BanReason::Report);
            return;
        }
        let total = self.penalties.entry(peer).or_insert(0.0);
        *total += misbehaviour.penalty();
        let score = -*total;
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        gossipsub.set_application_score(&peer, score);
        let below = gossipsub
            .peer_score(&peer)
            .is_some_and(|s| s < self.config.disconnect_score);
        if below {
            self.ban(peer, BanReason::Score);
        }
    }

    /// Disconnects `peer` and refuses it for `ban_duration` (a running ban is extended).
    fn ban(&mut self, peer: PeerId, reason: BanReason) {
        let until = Instant::now().checked_add(self.config.ban_duration);
        if self.bans.insert(peer, until).is_none() {
            self.metrics.banned(reason);
        }
        tracing::warn!(%peer, ?reason, ban = ?self.config.ban_duration, "peer banned");
        self.penalties.remove(&peer);
        let behaviour = self.swarm.behaviour_mut();
        behaviour.gossipsub.set_application_score(&peer, 0.0);
        behaviour.block_list.block_peer(peer);
        behaviour.kad.remove_peer(&peer);
    }

    /// The periodic work: bans ended, penalties decayed, low scores banned, stale validations
    /// forgotten, bootstrap peers redialled.
    fn maintain(&mut self) {
        let now = Instant::now();
        let ended: Vec<PeerId> = self
            .bans
            .iter()
            .filter(|(_, until)| until.is_some_and(|until| until <= now))
            .map(|(peer, _)| *peer)
            .collect();
        for peer in ended {
            self.bans.remove(&peer);
            if !self.blocked.contains(&peer) {
                tracing::info!(%peer, "ban ended");
                self.swarm.behaviour_mut().block_list.unblock_peer(peer);
            }
        }

        let decay =
            0.5_f64.powf(SCORE_POLL_INTERVAL.as_secs_f64() / PENALTY_HALF_LIFE.as_secs_f64());
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        self.penalties.retain(|peer, total| {
            *total *= decay;
            let keep = *total >= PENALTY_FLOOR;
            gossipsub.set_application_score(peer, if keep { -*total } else { 0.0 });
            keep
        });

        let threshold = self.config.disconnect_score;
        let low: Vec<PeerId> = self
            .swarm
            .connected_peers()
            .filter(|peer| {
                self.swarm
                    .behaviour()
                    .gossipsub
                    .peer_score(peer)
                    .is_some_and(|s| s < threshold)
            })
            .copied()
            .collect();
        for peer in low {
            self.ban(peer, BanReason::Score);
        }

        self.pending_validations
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < VALIDATION_TTL);

        if now.saturating_duration_since(self.last_redial) >= BOOTSTRAP_REDIAL {
            self.last_redial = now;
            self.dial_bootstrap();
        }
    }

    fn emit_peer_event(&mut self, event: NetEvent) {
        if self.events.try_send(event).is_err() {
            self.metrics.dropped(EventKind::Peer);
        }
    }

    fn swarm_event(&mut self, event: SwarmEvent<LodeBehaviourEvent>) {
        self.libp2p_metrics.record(&event);
        match event {
            SwarmEvent::Behaviour(event) => self.behaviour_event(event),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                let remote = match &endpoint {
                    ConnectedPoint::Dialer { address, .. } => address.clone(),
                    ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr.clone(),
                };
                tracing::debug!(peer = %peer_id, %remote, "connection established");
                self.peers
                    .entry(peer_id)
                    .or_default()
                    .connections
                    .insert(connection_id, remote);
                if let Some((_, reply)) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Ok(()));
                }
                if num_established.get() == 1 {
                    self.set_connected_gauge();
                    self.emit_peer_event(NetEvent::PeerConnected(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                tracing::debug!(peer = %peer_id, ?cause, "connection closed");
                if let Some(state) = self.peers.get_mut(&peer_id) {
                    state.connections.remove(&connection_id);
                }
                if num_established == 0 {
                    self.peers.remove(&peer_id);
                    self.set_connected_gauge();
                    self.emit_peer_event(NetEvent::PeerDisconnected(peer_id));
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                if let Some((addr, reply)) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Err(NetError::Dial {
                        addr,
                        reason: error.to_string(),
                    }));
                }
            }
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                tracing::info!(%address, "listening");
                self.pending_listeners.remove(&listener_id);
                self.answer_listen_waiters();
            }
            SwarmEvent::ListenerClosed { listener_id, .. } => {
                self.pending_listeners.remove(&listener_id);
                self.answer_listen_waiters();
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                tracing::warn!(%error, "listener error");
                self.pending_listeners.remove(&listener_id);
                self.answer_listen_waiters();
            }
            _ => {}
        }
    }

    fn set_connected_gauge(&self) {
        let n = i64::try_from(self.peers.len()).unwrap_or(i64::MAX);
        self.metrics.peers_connected.set(n);
    }

    fn behaviour_event(&mut self, event: LodeBehaviourEvent) {
        match event {
            LodeBehaviourEvent::BlockList(never) => match never {},
            LodeBehaviourEvent::Limits(never) => match never {},
            LodeBehaviourEvent::Identify(event) => {
                self.libp2p_metrics.record(&event);
                if let identify::Event::Received { peer_id, info, .. } = event {
                    self.identified(peer_id, info);
                }
            }
            LodeBehaviourEvent::Ping(event) => {
                self.libp2p_metrics.record(&event);
                if let (Ok(rtt), Some(state)) = (event.result, self.peers.get_mut(&event.peer)) {
                    state.rtt = Some(rtt);
                }
            }
            LodeBehaviourEvent::Kad(event) => self.libp2p_metrics.record(&event),
            LodeBehaviourEvent::Gossipsub(event) => {
                self.libp2p_metrics.record(&event);
                if let gossipsub::Event::Message {
                    propagation_source,
                    message_id,
                    message,
                } = event
                {
                    self.gossip(propagation_source, message_id, message);
                }
            }
            LodeBehaviourEvent::Sync(event) => self.sync_event(event),
        }
    }

    fn identified(&mut self, peer: PeerId, info: identify::Info) {
        let listen: Vec<Multiaddr> = info
            .listen_addrs
            .into_iter()
            .take(MAX_REPORTED_ADDRS)
            .collect();
        let is_lode = info.protocol_version == IDENTIFY_PROTOCOL
            && info.protocols.contains(&self.protocols.kad);
        if is_lode {
            let kad = &mut self.swarm.behaviour_mut().kad;
            for addr in &listen {
                kad.add_address(&peer, addr.clone());
            }
        }
        if let Some(state) = self.peers.get_mut(&peer) {
            let mut agent = info.agent_version;
            if agent.len() > MAX_AGENT_LEN {
                let mut cut = MAX_AGENT_LEN;
                while !agent.is_char_boundary(cut) {
                    cut = cut.saturating_sub(1);
                }
                agent.truncate(cut);
            }
            state.agent_version = Some(agent);
            state.protocols = info
                .protocols
                .iter()
                .take(MAX_REPORTED_PROTOCOLS)
                .map(ToString::to_string)
                .collect();
            state.listen_addrs = listen;
        }
    }

    fn gossip(&mut self, source: PeerId, id: MessageId, message: gossipsub::Message) {
        let Some(topic) = self.protocols.topic(&message.topic) else {
            self.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&id, &source, MessageAcceptance::Ignore);
            return;
        };
        NetMetrics::topic(&self.metrics.gossip_received, topic).inc();
        let verdict = if message.data.len() > self.config.max_gossip_bytes {
            NetMetrics::topic(&self.metrics.gossip_oversized, topic).inc();
            NetMetrics::topic(&self.metrics.gossip_rejected, topic).inc();
            MessageAcceptance::Reject
        } else if self.pending_validations.len() >= MAX_PENDING_VALIDATIONS {
            self.metrics.dropped(EventKind::Gossip);
            NetMetrics::topic(&self.metrics.gossip_ignored, topic).inc();
            MessageAcceptance::Ignore
        } else {
            let event = NetEvent::Gossip {
                topic,
                source,
                id: GossipId(id.clone()),
                data: message.data,
            };
            match self.events.try_send(event) {
                Ok(()) => {
                    self.pending_validations.insert(id, (topic, Instant::now()));
                    return;
                }
                Err(_) => {
                    self.metrics.dropped(EventKind::Gossip);
                    NetMetrics::topic(&self.metrics.gossip_ignored, topic).inc();
                    MessageAcceptance::Ignore
                }
            }
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id, &source, verdict);
    }

    fn sync_event(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                self.metrics.sync_requests_received.inc();
                let event = NetEvent::SyncRequest {
                    peer,
                    request,
                    channel: ResponseChannel {
                        inner: channel,
                        peer,
                    },
                };
                if self.events.try_send(event).is_err() {
                    // The channel is dropped with the event: the requester sees a failure.
                    self.metrics.dropped(EventKind::SyncRequest);
                }
            }
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                self.metrics.sync_responses_received.inc();
                if let Some((_, reply)) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.metrics.sync_requests_sent_failed.inc();
                tracing::debug!(%peer, %error, "sync request failed");
                if let Some((_, reply)) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Err(self.outbound_error(peer, error)));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                self.metrics.sync_requests_failed.inc();
                tracing::debug!(%peer, %error, "inbound sync request failed");
            }
            request_response::Event::ResponseSent { .. } => {
                self.metrics.sync_requests_served.inc();
            }
        }
    }

    fn outbound_error(&self, peer: PeerId, error: OutboundFailure) -> NetError {
        match error {
            OutboundFailure::Timeout => NetError::Timeout {
                peer,
                timeout: self.config.request_timeout,
            },
            OutboundFailure::Io(e) => match FrameTooLarge::find(&e) {
                Some(FrameTooLarge { len, limit }) => {
                    NetError::ResponseTooLarge { peer, len, limit }
                }
                None => NetError::RequestFailed {
                    peer,
                    reason: e.to_string(),
                },
            },
            other => NetError::RequestFailed {
                peer,
                reason: other.to_string(),
            },
        }
    }
}
