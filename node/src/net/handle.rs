//! [`NetHandle`]: the node's side of the swarm task.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use super::error::{NetError, NetResult};
use super::{GossipId, Misbehaviour, PeerInfo, ResponseChannel, Topic, Validation};

/// How many commands may wait for the swarm task; callers wait (asynchronously) beyond that.
pub(crate) const COMMAND_QUEUE: usize = 256;

/// Where the swarm task sends a command's answer.
pub(crate) type Reply<T> = oneshot::Sender<NetResult<T>>;

/// What the node asks of the swarm task.
#[derive(Debug)]
pub(crate) enum Command {
    ListenAddrs(Reply<Vec<Multiaddr>>),
    Publish {
        topic: Topic,
        data: Vec<u8>,
        reply: Reply<()>,
    },
    Validate {
        id: GossipId,
        source: PeerId,
        validation: Validation,
        reply: Reply<()>,
    },
    Request {
        peer: PeerId,
        request: Vec<u8>,
        reply: Reply<Vec<u8>>,
    },
    Respond {
        channel: ResponseChannel,
        response: Vec<u8>,
        reply: Reply<()>,
    },
    Peers(Reply<Vec<PeerInfo>>),
    Dial {
        addr: Multiaddr,
        reply: Reply<()>,
    },
    Report {
        peer: PeerId,
        misbehaviour: Misbehaviour,
        reply: Reply<()>,
    },
    Block {
        peer: PeerId,
        reply: Reply<()>,
    },
    Unblock {
        peer: PeerId,
        reply: Reply<()>,
    },
    Shutdown(Reply<()>),
}

/// The node's handle on the network: cheap to clone, usable from any task. Every call goes to the
/// swarm task and returns [`NetError::Stopped`] once that task has ended.
#[derive(Debug, Clone)]
pub struct NetHandle {
    local_peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    request_timeout: Duration,
}

impl NetHandle {
    pub(crate) fn new(
        local_peer_id: PeerId,
        commands: mpsc::Sender<Command>,
        request_timeout: Duration,
    ) -> NetHandle {
        NetHandle {
            local_peer_id,
            commands,
            request_timeout,
        }
    }

    /// Sends the command `make` builds and waits for its answer.
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> NetResult<T> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| NetError::Stopped)?;
        answer.await.map_err(|_| NetError::Stopped)?
    }

    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// The addresses the node listens on, as bound (a port 0 resolved), each ending in
    /// `/p2p/<local peer id>`. Waits until every listener has reported its first address.
    ///
    /// # Errors
    /// [`NetError::Stopped`].
    pub async fn listen_addrs(&self) -> NetResult<Vec<Multiaddr>> {
        self.call(Command::ListenAddrs).await
    }

    /// Publishes `data` on `topic`. Finding no subscribed peer, or bytes the network has already
    /// seen, is not an error: the publication is counted and `Ok` returned.
    ///
    /// # Errors
    /// [`NetError::GossipTooLarge`] beyond `max_gossip_bytes`; [`NetError::Publish`] when no
    /// peer's queue could take it; [`NetError::Stopped`].
    pub async fn publish(&self, topic: Topic, data: Vec<u8>) -> NetResult<()> {
        self.call(|reply| Command::Publish { topic, data, reply })
            .await
    }

    /// Answers a [`super::NetEvent::Gossip`]: `Accept` forwards the message, `Reject` drops it and
    /// penalises `source`, `Ignore` drops it. A message no longer remembered (answered twice, or
    /// after gossipsub's history window) is ignored.
    ///
    /// # Errors
    /// [`NetError::Stopped`].
    pub async fn validate(&self, id: GossipId, source: PeerId, v: Validation) -> NetResult<()> {
        self.call(|reply| Command::Validate {
            id,
            source,
            validation: v,
            reply,
        })
        .await
    }

    /// Sends a sync request to `peer` (dialling it if needed, with the addresses Kademlia and
    /// identify know) and waits for its response, at most `request_timeout`.
    ///
    /// # Errors
    /// [`NetError::RequestTooLarge`] beyond `max_request_bytes` (nothing sent);
    /// [`NetError::PeerBlocked`]; [`NetError::ResponseTooLarge`] when the response exceeds
    /// `max_response_bytes`; [`NetError::Timeout`]; [`NetError::RequestFailed`] when the peer is
    /// unreachable, refuses or closes the stream; [`NetError::Stopped`].
    pub async fn request(&self, peer: PeerId, request: Vec<u8>) -> NetResult<Vec<u8>> {
        let call = self.call(|reply| Command::Request {
            peer,
            request,
            reply,
        });
        match tokio::time::timeout(self.request_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(NetError::Timeout {
                peer,
                timeout: self.request_timeout,
            }),
        }
    }

    /// Answers an inbound sync request.
    ///
    /// # Errors
    /// [`NetError::ResponseTooLarge`] beyond `max_response_bytes` (nothing sent; the requester
    /// sees a failure); [`NetError::ResponseNotSent`] when the request was already abandoned;
    /// [`NetError::Stopped`].
    pub async fn respond(&self, channel: ResponseChannel, response: Vec<u8>) -> NetResult<()> {
        self.call(|reply| Command::Respond {
            channel,
            response,
            reply,
        })
        .await
    }

    /// The connected peers, sorted by peer id.
    ///
    /// # Errors
    /// [`NetError::Stopped`].
    pub async fn peers(&self) -> NetResult<Vec<PeerInfo>> {
        self.call(Command::Peers).await
    }

    /// Dials `addr` (with or without a trailing `/p2p/<peer id>`) and waits until the connection is
    /// established; returns at once when that peer is already connected or being dialled.
    ///
    /// # Errors
    /// [`NetError::PeerBlocked`] for a blocked or banned peer; [`NetError::Dial`] when the dial
    /// fails; [`NetError::Stopped`].
    pub async fn dial(&self, addr: Multiaddr) -> NetResult<()> {
        self.call(|reply| Command::Dial { addr, reply }).await
    }

    /// Tells the network that `peer` misbehaved: a serious misbehaviour disconnects and bans it for
    /// `ban_duration`; a minor one lowers its score (and bans it once the score falls below
    /// `disconnect_score`).
    ///
    /// # Errors
    /// [`NetError::Stopped`].
    pub async fn report(&self, peer: PeerId, misbehaviour: Misbehaviour) -> NetResult<()> {
        self.call(|reply| Command::Report {
            peer,
            misbehaviour,
            reply,
        })
        .await
    }

    /// Disconnects `peer` and refuses it (both ways) until [`NetHandle::unblock_peer`]. Meant for
    /// operators and the partition tests' admin RPC.
    ///
    /// # Errors
    /// [`NetError::Stopped`].
    pub async fn block_peer(&self, peer: PeerId) -> NetResult<()> {
        self.call(|reply| Command::Block { peer, reply }).await
    }

    /// Lifts [`NetHandle::block_peer`] (a ban still running stays in force).
    ///
    /// # Errors
    /// [`NetError::Stopped`].
    pub async fn unblock_peer(&self, peer: PeerId) -> NetResult<()> {
        self.call(|reply| Command::Unblock { peer, reply }).await
    }

    /// Stops the swarm task, closing every connection and listener. Later calls, on any clone,
    /// return [`NetError::Stopped`].
    ///
    /// # Errors
    /// [`NetError::Stopped`] when the task had already stopped.
    pub async fn shutdown(&self) -> NetResult<()> {
        self.call(Command::Shutdown).await
    }
}
