//! The errors of the networking layer.

use std::path::PathBuf;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

/// What went wrong in the networking layer.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The swarm task has stopped (after [`super::NetHandle::shutdown`], or because it failed); no
    /// further call can succeed.
    #[error("the network task has stopped")]
    Stopped,
    /// [`super::spawn`] was called outside a tokio runtime.
    #[error("net::spawn must be called from within a tokio runtime")]
    NoRuntime,
    /// The [`super::NetConfig`] is unusable; the message says which field and why.
    #[error("invalid network configuration: {0}")]
    InvalidConfig(String),
    /// A bootstrap address does not name its peer.
    #[error("bootstrap address {0} does not end in /p2p/<peer id>")]
    BootstrapWithoutPeerId(Multiaddr),
    /// The transport or a behaviour could not be set up.
    #[error("cannot set up the network stack: {0}")]
    Setup(String),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address asked for.
        addr: Multiaddr,
        /// Why it failed.
        reason: String,
    },
    /// A dial failed.
    #[error("dialling {addr} failed: {reason}")]
    Dial {
        /// The address dialled.
        addr: Multiaddr,
        /// Why it failed.
        reason: String,
    },
    /// The peer is blocked (by [`super::NetHandle::block_peer`]) or banned; nothing is sent to it.
    #[error("peer {0} is blocked or banned")]
    PeerBlocked(PeerId),
    /// A gossip message is larger than `max_gossip_bytes`; nothing was published.
    #[error("gossip message of {len} bytes exceeds the limit of {limit} bytes")]
    GossipTooLarge {
        /// The message's length.
        len: usize,
        /// `max_gossip_bytes`.
        limit: usize,
    },
    /// Publishing failed for a reason other than a missing audience.
    #[error("publishing failed: {0}")]
    Publish(String),
    /// A sync request is larger than `max_request_bytes`; it was not sent.
    #[error("sync request of {len} bytes exceeds the limit of {limit} bytes")]
    RequestTooLarge {
        /// The request's length.
        len: usize,
        /// `max_request_bytes`.
        limit: usize,
    },
    /// A sync response is (or announced itself as) larger than `max_response_bytes`: the requester
    /// stopped reading at the length prefix, or the responder refused to send it.
    #[error("sync response of {len} bytes from {peer} exceeds the limit of {limit} bytes")]
    ResponseTooLarge {
        /// The peer that answered (or, on the responder, the peer that asked).
        peer: PeerId,
        /// The response's length.
        len: u64,
        /// `max_response_bytes`.
        limit: usize,
    },
    /// A sync request got no complete response within `request_timeout`.
    #[error("sync request to {peer} timed out after {timeout:?}")]
    Timeout {
        /// The peer asked.
        peer: PeerId,
        /// `request_timeout`.
        timeout: Duration,
    },
    /// A sync request failed: the peer could not be reached, does not speak the sync protocol,
    /// refused the request (for instance because it exceeds the peer's own limit) or closed the
    /// stream.
    #[error("sync request to {peer} failed: {reason}")]
    RequestFailed {
        /// The peer asked.
        peer: PeerId,
        /// Why it failed.
        reason: String,
    },
    /// A response could not be sent: the request had already been abandoned (it timed out, or its
    /// connection closed).
    #[error(
        "the response to {0} could not be sent: the request timed out or its connection closed"
    )]
    ResponseNotSent(PeerId),
    /// The node key file could not be read, decoded or written.
    #[error("node key file {path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// The result of the networking layer's fallible operations.
pub type NetResult<T> = Result<T, NetError>;
