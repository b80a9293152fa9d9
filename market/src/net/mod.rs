//! The market's libp2p host: `/lode/ask/1` and `/lode/deal/1` over request–response.
//!
//! A provider runs its own host (its own ed25519 identity, whose peer id the miner announces on
//! chain) serving a [`MarketServer`]; a client runs one without a server ([`MarketHost::client`])
//! and asks providers through [`MarketHost::query_ask`] and [`MarketHost::propose_deal`].
//!
//! | protocol | request | response | limits |
//! |---|---|---|---|
//! | `/lode/ask/1` | [`AskRequest`] | [`AskResponse`] | 1 KiB / 4 KiB |
//! | `/lode/deal/1` | [`DealRequest`] | [`SignedDealResponse`] | 16 KiB / 4 KiB |
//! | `/lode/transfer/1` | [`PushRequest`] | [`PushResponse`] | 1 MiB + 1 KiB / 1 KiB |
//!
//! Each message is one frame ([`codec`]): a big-endian `u32` length and a postcard message decoded
//! strictly ([`crate::deal::decode`]). The host runs on its own task (TCP, noise, yamux, like the
//! node's); a call is a message on a bounded channel and an answer on a oneshot. Bounds: at most
//! [`MAX_INFLIGHT`] inbound requests are handled at once (more are dropped unanswered: the
//! requester sees its stream closed), 8 concurrent streams per connection, and a request waits at
//! most [`HostConfig::request_timeout`] end to end. A deal request that does not decode is answered
//! by the server (a signed [`Rejection::Malformed`](crate::deal::Rejection::Malformed)); an ask
//! request that does not decode is dropped.

pub mod codec;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::deal::{AskRequest, AskResponse, DealRequest, SignedDealResponse, decode, encode};
use crate::error::{MarketError, MarketResult};
use crate::transfer::push::{
    MAX_PUSH_CHUNK, MAX_PUSH_REQUEST, MAX_PUSH_RESPONSE, PushRequest, PushResponse,
    TRANSFER_PROTOCOL,
};
use codec::FrameCodec;

/// The ask protocol's id.
pub const ASK_PROTOCOL: &str = "/lode/ask/1";
/// The deal protocol's id.
pub const DEAL_PROTOCOL: &str = "/lode/deal/1";
/// Bound on an ask request.
pub const MAX_ASK_REQUEST: usize = 1024;
/// Bound on an ask response.
pub const MAX_ASK_RESPONSE: usize = 4096;
/// Bound on a deal request (a 256-byte label, a 2 KiB URL and the rest fit with room to spare).
pub const MAX_DEAL_REQUEST: usize = 16 * 1024;
/// Bound on a deal response.
pub const MAX_DEAL_RESPONSE: usize = 4096;
/// Inbound requests handled at once, at most.
pub const MAX_INFLIGHT: usize = 64;
/// Concurrent streams per connection and protocol.
const STREAMS_PER_CONNECTION: usize = 8;
/// Commands queued to the host task.
const COMMAND_QUEUE: usize = 64;
/// How long an idle connection stays open.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// What a provider's host answers: implemented by the provider's deal service.
pub trait MarketServer: Send + Sync + 'static {
    /// Answers `/lode/ask/1`.
    fn ask(&self, request: AskRequest) -> impl Future<Output = AskResponse> + Send;
    /// Answers `/lode/deal/1` from `peer`: the decoded request, or why it did not decode.
    fn deal(
        &self,
        peer: PeerId,
        request: Result<DealRequest, String>,
    ) -> impl Future<Output = SignedDealResponse> + Send;
    /// Answers `/lode/transfer/1` from `peer`; by default every push is refused.
    fn push(
        &self,
        peer: PeerId,
        request: PushRequest,
    ) -> impl Future<Output = PushResponse> + Send {
        let _ = (peer, request);
        async { PushResponse::Refused("this host takes no pushed data".into()) }
    }
}

/// A host's settings.
#[derive(Clone)]
pub struct HostConfig {
    /// The host's identity.
    pub keypair: Keypair,
    /// Where to listen (e.g. `/ip4/127.0.0.1/tcp/0`); empty for a client that only dials.
    pub listen: Vec<Multiaddr>,
    /// How long a request may take, end to end.
    pub request_timeout: Duration,
}

impl HostConfig {
    /// A host with `keypair`, listening on `listen`, with a 30-second request timeout.
    pub fn new(keypair: Keypair, listen: Vec<Multiaddr>) -> HostConfig {
        HostConfig {
            keypair,
            listen,
            request_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(NetworkBehaviour)]
struct MarketBehaviour {
    ask: request_response::Behaviour<FrameCodec>,
    deal: request_response::Behaviour<FrameCodec>,
    push: request_response::Behaviour<FrameCodec>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Protocol {
    Ask,
    Deal,
    Push,
}

type Reply<T> = oneshot::Sender<MarketResult<T>>;

enum Command {
    Request {
        protocol: Protocol,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        bytes: Vec<u8>,
        reply: Reply<Vec<u8>>,
    },
    ListenAddrs(Reply<Vec<Multiaddr>>),
    Shutdown(Reply<()>),
}

/// A response computed by the server, to be sent by the task that owns the swarm.
struct Respond {
    protocol: Protocol,
    channel: ResponseChannel<Vec<u8>>,
    bytes: Vec<u8>,
}

/// How a client retries a push ([`MarketHost::push_payload`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PushOptions {
    /// Failed requests in a row before the push gives up.
    pub max_attempts: u32,
    /// The first back-off after a failure; doubled after each (at most 30 s).
    pub backoff: Duration,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            max_attempts: 8,
            backoff: Duration::from_millis(500),
        }
    }
}

/// A running market host (cheap to clone).
#[derive(Clone, Debug)]
pub struct MarketHost {
    peer_id: PeerId,
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl MarketHost {
    /// Starts a host serving `server` on the current tokio runtime.
    ///
    /// # Errors
    /// [`MarketError::Net`] when the transport cannot be built or an address cannot be bound.
    pub async fn serve<S: MarketServer>(
        config: HostConfig,
        server: Arc<S>,
    ) -> MarketResult<MarketHost> {
        Self::start(config, Some(server)).await
    }

    /// Starts a host that only asks (it serves neither protocol).
    ///
    /// # Errors
    /// [`MarketError::Net`] when the transport cannot be built.
    pub async fn client(config: HostConfig) -> MarketResult<MarketHost> {
        Self::start::<NoServer>(config, None).await
    }

    async fn start<S: MarketServer>(
        config: HostConfig,
        server: Option<Arc<S>>,
    ) -> MarketResult<MarketHost> {
        let support = if server.is_some() {
            ProtocolSupport::Full
        } else {
            ProtocolSupport::Outbound
        };
        let rr_config = request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(STREAMS_PER_CONNECTION);
        let behaviour = MarketBehaviour {
            ask: request_response::Behaviour::with_codec(
                FrameCodec::new(MAX_ASK_REQUEST, MAX_ASK_RESPONSE),
                [(StreamProtocol::new(ASK_PROTOCOL), support.clone())],
                rr_config.clone(),
            ),
            deal: request_response::Behaviour::with_codec(
                FrameCodec::new(MAX_DEAL_REQUEST, MAX_DEAL_RESPONSE),
                [(StreamProtocol::new(DEAL_PROTOCOL), support.clone())],
                rr_config.clone(),
            ),
            push: request_response::Behaviour::with_codec(
                FrameCodec::new(MAX_PUSH_REQUEST, MAX_PUSH_RESPONSE),
                [(StreamProtocol::new(TRANSFER_PROTOCOL), support)],
                rr_config,
            ),
        };
        let net = |what: &str, e: &dyn std::fmt::Display| MarketError::Net(format!("{what}: {e}"));
        let mut swarm = SwarmBuilder::with_existing_identity(config.keypair.clone())
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default().nodelay(true),
                libp2p::noise::Config::new,
                libp2p::yamux::Config::default,
            )
            .map_err(|e| net("transport", &e))?
            .with_behaviour(|_| behaviour)
            .map_err(|e| net("behaviour", &e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
            .build();
        let mut listening = 0usize;
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| net(&format!("cannot listen on {addr}"), &e))?;
            listening = listening.saturating_add(1);
        }
        let peer_id = *swarm.local_peer_id();
        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (respond_tx, respond_rx) = mpsc::channel(MAX_INFLIGHT);
        let task = HostTask {
            swarm,
            server,
            commands: command_rx,
            respond_tx,
            respond_rx,
            inflight: Arc::new(Semaphore::new(MAX_INFLIGHT)),
            pending: std::collections::HashMap::new(),
            listeners_pending: listening,
            listen_waiters: Vec::new(),
        };
        tokio::spawn(task.run());
        Ok(MarketHost { peer_id, commands })
    }

    /// The host's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The addresses it listens on, once every listener has reported one.
    ///
    /// # Errors
    /// [`MarketError::Stopped`].
    pub async fn listen_addrs(&self) -> MarketResult<Vec<Multiaddr>> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::ListenAddrs(reply), rx).await
    }

    /// Asks `peer` (dialled at `addrs` if not connected) for `miner`'s storage ask. The
    /// signature is not checked here: [`crate::deal::SignedAsk::verify`] against the miner's
    /// worker key.
    ///
    /// # Errors
    /// [`MarketError::Net`] when the peer cannot be reached or does not answer in time;
    /// [`MarketError::Malformed`] for an answer that does not decode.
    pub async fn query_ask(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: &AskRequest,
    ) -> MarketResult<AskResponse> {
        let bytes = self
            .request(Protocol::Ask, peer, addrs, encode(request))
            .await?;
        decode("ask response", &bytes)
    }

    /// Proposes a deal to `peer`. The response's signature is not checked here:
    /// [`SignedDealResponse::verify`] against the miner's worker key.
    ///
    /// # Errors
    /// As [`MarketHost::query_ask`].
    pub async fn propose_deal(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: &DealRequest,
    ) -> MarketResult<SignedDealResponse> {
        let bytes = self
            .request(Protocol::Deal, peer, addrs, encode(request))
            .await?;
        decode("deal response", &bytes)
    }

    /// Pushes a deal's payload (`payload_size` bytes of `path`) to `peer` over
    /// `/lode/transfer/1`, resuming from what the provider holds after a broken connection or
    /// a restart of either side; gives up after [`PushOptions::max_attempts`] failed requests in
    /// a row, with an exponential back-off between them.
    ///
    /// # Errors
    /// [`MarketError::Transfer`] when the provider refuses the push or cannot be reached;
    /// [`MarketError::Io`] when the file cannot be read.
    pub async fn push_payload(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        uuid: crate::deal::DealUuid,
        path: &std::path::Path,
        payload_size: u64,
        options: PushOptions,
    ) -> MarketResult<()> {
        let PushOptions {
            max_attempts,
            backoff,
        } = options;
        let file = Arc::new(std::fs::File::open(path).map_err(MarketError::io(path))?);
        let mut have: Option<u64> = None;
        let mut failures = 0u32;
        loop {
            let offset = have.unwrap_or(0);
            if have == Some(payload_size) {
                return Ok(());
            }
            let data = match have {
                None => Vec::new(),
                Some(at) => {
                    let len = usize::try_from(payload_size.saturating_sub(at))
                        .unwrap_or(MAX_PUSH_CHUNK)
                        .min(MAX_PUSH_CHUNK);
                    let file = file.clone();
                    let p = path.to_path_buf();
                    tokio::task::spawn_blocking(move || {
                        use std::os::unix::fs::FileExt;
                        let mut buf = vec![0u8; len];
                        file.read_exact_at(&mut buf, at)
                            .map(|()| buf)
                            .map_err(MarketError::io(p))
                    })
                    .await
                    .map_err(|e| MarketError::Transfer(e.to_string()))??
                }
            };
            let sent_data = !data.is_empty();
            let request = PushRequest { uuid, offset, data };
            let answer = match self
                .request(Protocol::Push, peer, addrs.clone(), encode(&request))
                .await
            {
                Ok(bytes) => decode::<PushResponse>("push response", &bytes),
                Err(e) => Err(e),
            };
            match answer {
                Ok(PushResponse::Have(n)) if n > payload_size => {
                    return Err(MarketError::Transfer(format!(
                        "the provider claims {n} bytes of a {payload_size}-byte payload"
                    )));
                }
                Ok(PushResponse::Have(n)) => {
                    if n > offset {
                        failures = 0;
                    } else if sent_data {
                        // The chunk was not taken: count it as a failed attempt.
                        failures = failures.saturating_add(1);
                        if failures >= max_attempts {
                            return Err(MarketError::Transfer(format!(
                                "the provider does not take the payload past byte {n}"
                            )));
                        }
                    }
                    have = Some(n);
                }
                Ok(PushResponse::Refused(why)) => {
                    return Err(MarketError::Transfer(format!(
                        "the provider refused the push: {why}"
                    )));
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    if failures >= max_attempts {
                        return Err(MarketError::Transfer(format!(
                            "pushing to {peer} failed {failures} times: {e}"
                        )));
                    }
                    let wait = backoff
                        .saturating_mul(1u32.checked_shl(failures.min(10)).unwrap_or(1024))
                        .min(Duration::from_secs(30));
                    tokio::time::sleep(wait).await;
                    // Ask again where to resume.
                    have = None;
                }
            }
        }
    }

    /// Stops the host: every connection and listener closes.
    ///
    /// # Errors
    /// [`MarketError::Stopped`] if it had stopped already.
    pub async fn shutdown(&self) -> MarketResult<()> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::Shutdown(reply), rx).await
    }

    /// Sends raw bytes on `protocol` (tests use it to send malformed requests).
    async fn request(
        &self,
        protocol: Protocol,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        bytes: Vec<u8>,
    ) -> MarketResult<Vec<u8>> {
        let (reply, rx) = oneshot::channel();
        self.command(
            Command::Request {
                protocol,
                peer,
                addrs,
                bytes,
                reply,
            },
            rx,
        )
        .await
    }

    /// Sends `bytes` as a `/lode/deal/1` request and returns the raw answer: for tests of what
    /// a provider does with malformed or oversized requests.
    ///
    /// # Errors
    /// As [`MarketHost::query_ask`].
    pub async fn send_raw_deal_request(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        bytes: Vec<u8>,
    ) -> MarketResult<Vec<u8>> {
        self.request(Protocol::Deal, peer, addrs, bytes).await
    }

    async fn command<T>(
        &self,
        command: Command,
        rx: oneshot::Receiver<MarketResult<T>>,
    ) -> MarketResult<T> {
        self.commands
            .send(command)
            .await
            .map_err(|_| MarketError::Stopped)?;
        rx.await.map_err(|_| MarketError::Stopped)?
    }
}

/// The server of a client-only host: never called (the host serves no protocol).
struct NoServer;

impl MarketServer for NoServer {
    async fn ask(&self, request: AskRequest) -> AskResponse {
        AskResponse::NoAsk {
            miner: request.miner,
        }
    }

    async fn deal(&self, _: PeerId, _: Result<DealRequest, String>) -> SignedDealResponse {
        // Unreachable: a client host has no inbound protocols. Dropping the channel (what a
        // never-completing future amounts to) leaves the requester with a closed stream.
        std::future::pending().await
    }
}

struct HostTask<S> {
    swarm: Swarm<MarketBehaviour>,
    server: Option<Arc<S>>,
    commands: mpsc::Receiver<Command>,
    respond_tx: mpsc::Sender<Respond>,
    respond_rx: mpsc::Receiver<Respond>,
    inflight: Arc<Semaphore>,
    pending: std::collections::HashMap<(Protocol, OutboundRequestId), Reply<Vec<u8>>>,
    listeners_pending: usize,
    listen_waiters: Vec<Reply<Vec<Multiaddr>>>,
}

impl<S: MarketServer> HostTask<S> {
    async fn run(mut self) {
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
                Some(respond) = self.respond_rx.recv() => {
                    let behaviour = self.swarm.behaviour_mut();
                    let rr = match respond.protocol {
                        Protocol::Ask => &mut behaviour.ask,
                        Protocol::Deal => &mut behaviour.deal,
                        Protocol::Push => &mut behaviour.push,
                    };
                    // Fails only when the requester is gone: nothing to do.
                    let _ = rr.send_response(respond.channel, respond.bytes);
                }
                event = self.swarm.select_next_some() => self.event(event),
            }
        }
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(MarketError::Stopped));
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Request {
                protocol,
                peer,
                addrs,
                bytes,
                reply,
            } => {
                let behaviour = self.swarm.behaviour_mut();
                let id = match protocol {
                    Protocol::Ask => behaviour
                        .ask
                        .send_request_with_addresses(&peer, bytes, addrs),
                    Protocol::Deal => behaviour
                        .deal
                        .send_request_with_addresses(&peer, bytes, addrs),
                    Protocol::Push => behaviour
                        .push
                        .send_request_with_addresses(&peer, bytes, addrs),
                };
                self.pending.insert((protocol, id), reply);
            }
            Command::ListenAddrs(reply) => {
                if self.listeners_pending == 0 {
                    let _ = reply.send(Ok(self.swarm.listeners().cloned().collect()));
                } else {
                    self.listen_waiters.push(reply);
                }
            }
            Command::Shutdown(_) => {}
        }
    }

    fn event(&mut self, event: SwarmEvent<MarketBehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { .. } => {
                self.listeners_pending = self.listeners_pending.saturating_sub(1);
                if self.listeners_pending == 0 {
                    let addrs: Vec<Multiaddr> = self.swarm.listeners().cloned().collect();
                    for waiter in self.listen_waiters.drain(..) {
                        let _ = waiter.send(Ok(addrs.clone()));
                    }
                }
            }
            SwarmEvent::Behaviour(MarketBehaviourEvent::Ask(e)) => self.rr_event(Protocol::Ask, e),
            SwarmEvent::Behaviour(MarketBehaviourEvent::Deal(e)) => {
                self.rr_event(Protocol::Deal, e)
            }
            SwarmEvent::Behaviour(MarketBehaviourEvent::Push(e)) => {
                self.rr_event(Protocol::Push, e)
            }
            _ => {}
        }
    }

    fn rr_event(&mut self, protocol: Protocol, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.inbound(protocol, peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.pending.remove(&(protocol, request_id)) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(reply) = self.pending.remove(&(protocol, request_id)) {
                    let _ = reply.send(Err(MarketError::Net(format!(
                        "request to {peer} failed: {error}"
                    ))));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, ?protocol, "inbound market request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn inbound(
        &mut self,
        protocol: Protocol,
        peer: PeerId,
        request: Vec<u8>,
        channel: ResponseChannel<Vec<u8>>,
    ) {
        let Some(server) = self.server.clone() else {
            return;
        };
        let Ok(permit) = self.inflight.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many market requests in flight: one dropped");
            return;
        };
        let respond = self.respond_tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let bytes = match protocol {
                Protocol::Ask => match decode::<AskRequest>("ask request", &request) {
                    Ok(req) => encode(&server.ask(req).await),
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "malformed ask request dropped");
                        return;
                    }
                },
                Protocol::Deal => {
                    let req =
                        decode::<DealRequest>("deal request", &request).map_err(|e| e.to_string());
                    encode(&server.deal(peer, req).await)
                }
                Protocol::Push => match decode::<PushRequest>("push request", &request) {
                    Ok(req) => encode(&server.push(peer, req).await),
                    Err(e) => encode(&PushResponse::Refused(e.to_string())),
                },
            };
            let _ = respond
                .send(Respond {
                    protocol,
                    channel,
                    bytes,
                })
                .await;
        });
    }
}
