//! The networking layer with real swarms on 127.0.0.1 (ports chosen by the system): gossip with
//! validation and scoring, sync request–response with its bounds, blocks, bans, metrics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use lode_node::net::{
    self, Misbehaviour, NetConfig, NetError, NetEvent, NetHandle, PeerInfo, Topic, Validation,
};
use prometheus_client::registry::Registry;
use tokio::sync::mpsc::{self, Receiver};
use tokio::time::timeout;

/// The bound on each whole test.
const TEST_LIMIT: Duration = Duration::from_secs(30);
/// How long a "nothing arrives" check waits.
const QUIET: Duration = Duration::from_millis(700);

fn config() -> NetConfig {
    let mut config = NetConfig::new("testnet", net::generate_keypair());
    config.request_timeout = Duration::from_secs(1);
    config
}

struct Node {
    handle: NetHandle,
    events: Receiver<NetEvent>,
    registry: Registry,
}

impl Node {
    fn start(config: NetConfig) -> Node {
        let mut registry = Registry::default();
        let (handle, events) = net::spawn(config, &mut registry).unwrap();
        Node {
            handle,
            events,
            registry,
        }
    }

    fn id(&self) -> PeerId {
        self.handle.local_peer_id()
    }

    async fn addr(&self, quic: bool) -> Multiaddr {
        self.handle
            .listen_addrs()
            .await
            .unwrap()
            .into_iter()
            .find(|a| a.iter().any(|p| matches!(p, Protocol::QuicV1)) == quic)
            .expect("a listen address of that transport")
    }

    async fn peer(&self, peer: PeerId) -> Option<PeerInfo> {
        let peers = self.handle.peers().await.unwrap();
        peers.into_iter().find(|p| p.peer_id == peer)
    }

    /// The next event `pick` accepts within `within`, skipping the others.
    async fn next<T>(
        &mut self,
        within: Duration,
        mut pick: impl FnMut(NetEvent) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => {
                    if let Some(t) = pick(event) {
                        return Some(t);
                    }
                }
                Ok(None) | Err(_) => return None,
            }
        }
    }

    async fn connected(&mut self, peer: PeerId, within: Duration) -> bool {
        self.next(within, |e| {
            matches!(e, NetEvent::PeerConnected(p) if p == peer).then_some(())
        })
        .await
        .is_some()
    }

    async fn disconnected(&mut self, peer: PeerId, within: Duration) -> bool {
        self.next(within, |e| {
            matches!(e, NetEvent::PeerDisconnected(p) if p == peer).then_some(())
        })
        .await
        .is_some()
    }

    async fn gossip(
        &mut self,
        within: Duration,
    ) -> Option<(Topic, PeerId, net::GossipId, Vec<u8>)> {
        self.next(within, |e| match e {
            NetEvent::Gossip {
                topic,
                source,
                id,
                data,
            } => Some((topic, source, id, data)),
            _ => None,
        })
        .await
    }

    fn metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text
    }
}

/// Polls `check` every 50 ms until it holds; false after `within`.
pub(crate) async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < within {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn blocks_topic() -> String {
    Topic::Blocks.topic_string("testnet")
}

/// A — B over TCP, B — C over QUIC only; A and C keep apart, so whatever reaches C went through B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_is_forwarded_only_after_validation_and_rejection_costs_score() {
    timeout(TEST_LIMIT, async {
        let a = Node::start(config());
        let mut b_config = config();
        b_config.bootstrap = vec![a.addr(false).await];
        let mut b = Node::start(b_config);
        let mut c_config = config();
        c_config.listen = vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()];
        c_config.bootstrap = vec![b.addr(true).await];
        let c_id = c_config.local_peer_id();
        a.handle.block_peer(c_id).await.unwrap();
        let mut c = Node::start(c_config);
        c.handle.block_peer(a.id()).await.unwrap();
        assert_eq!(c.handle.listen_addrs().await.unwrap().len(), 1);

        // Meshes formed: A knows B subscribes to blocks, B has C in its blocks mesh.
        let topic = blocks_topic();
        let ready = eventually(Duration::from_secs(10), || async {
            let ab = a
                .peer(b.id())
                .await
                .is_some_and(|p| p.topics.contains(&topic));
            let bc = b
                .peer(c.id())
                .await
                .is_some_and(|p| p.mesh_topics.contains(&topic));
            ab && bc
        })
        .await;
        assert!(ready, "meshes did not form");
        let c_at_b = b.peer(c.id()).await.unwrap();
        assert!(
            c_at_b
                .addresses
                .iter()
                .all(|a| a.to_string().contains("/quic-v1")),
            "C reached B over QUIC only: {:?}",
            c_at_b.addresses
        );
        let a_at_b = b.peer(a.id()).await.unwrap();
        assert!(
            a_at_b
                .addresses
                .iter()
                .all(|a| a.to_string().contains("/tcp/"))
        );
        assert!(a.peer(c.id()).await.is_none() && c.peer(a.id()).await.is_none());

        // An accepted message reaches C only after B's verdict.
        a.handle
            .publish(Topic::Blocks, b"block one".to_vec())
            .await
            .unwrap();
        let (topic1, source, id, data) = b.gossip(Duration::from_secs(5)).await.expect("B got it");
        assert_eq!(
            (topic1, source, data.as_slice()),
            (Topic::Blocks, a.id(), &b"block one"[..])
        );
        assert!(
            c.gossip(QUIET).await.is_none(),
            "forwarded before validation"
        );
        b.handle
            .validate(id, source, Validation::Accept)
            .await
            .unwrap();
        let (_, source, id, data) = c.gossip(Duration::from_secs(5)).await.expect("C got it");
        assert_eq!((source, data.as_slice()), (b.id(), &b"block one"[..]));
        c.handle
            .validate(id, source, Validation::Accept)
            .await
            .unwrap();

        // A rejected message goes no further and costs A its standing at B.
        let before = b.peer(a.id()).await.unwrap().score.expect("A is scored");
        a.handle
            .publish(Topic::Blocks, b"bad block".to_vec())
            .await
            .unwrap();
        let (_, source, id, data) = b.gossip(Duration::from_secs(5)).await.expect("B got it");
        assert_eq!(data, b"bad block");
        b.handle
            .validate(id, source, Validation::Reject)
            .await
            .unwrap();
        assert!(
            c.gossip(QUIET).await.is_none(),
            "a rejected message was forwarded"
        );
        let after = b.peer(a.id()).await.unwrap().score.unwrap();
        assert!(after < before && after < -20.0, "score {before} -> {after}");
        // One rejection is not enough for a ban.
        assert!(b.peer(a.id()).await.is_some());

        // Republishing the same bytes is a counted no-op, not an error.
        a.handle
            .publish(Topic::Blocks, b"block one".to_vec())
            .await
            .unwrap();
        let too_big = vec![0u8; net::DEFAULT_MAX_GOSSIP_BYTES + 1];
        assert!(matches!(
            a.handle.publish(Topic::Blocks, too_big).await,
            Err(NetError::GossipTooLarge { .. })
        ));

        // Identify ran, and the peer list serialises for RPC.
        let a_at_b = b.peer(a.id()).await.unwrap();
        assert_eq!(
            a_at_b.agent_version.as_deref(),
            Some(concat!("lode/", env!("CARGO_PKG_VERSION")))
        );
        assert!(a_at_b.protocols.iter().any(|p| p == "/lode/testnet/sync/1"));
        let json = serde_json::to_value(&a_at_b).unwrap();
        assert_eq!(json["peer_id"], a.id().to_string());
        assert!(json.get("rtt_ms").is_some());

        let text = b.metrics();
        for line in [
            "lode_net_gossip_received_total{topic=\"blocks\"} 2",
            "lode_net_gossip_accepted_total{topic=\"blocks\"} 1",
            "lode_net_gossip_rejected_total{topic=\"blocks\"} 1",
        ] {
            assert!(
                text.contains(line),
                "{line} missing from B's metrics:\n{text}"
            );
        }
        let text = a.metrics();
        for line in [
            "lode_net_gossip_published_total{topic=\"blocks\"} 2",
            "lode_net_gossip_publish_duplicate_total{topic=\"blocks\"} 1",
            "lode_libp2p_bandwidth_bytes_total{",
        ] {
            assert!(
                text.contains(line),
                "{line} missing from A's metrics:\n{text}"
            );
        }
    })
    .await
    .expect("test timed out");
}

/// What B's responder saw and did.
#[derive(Debug)]
enum Responder {
    /// A request it keeps unanswered, and the channel to answer it later.
    Held(net::ResponseChannel),
    /// Every request it received.
    Seen(Vec<u8>),
    /// The result of a response it sent.
    Responded(Result<(), NetError>),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_request_response_with_bounds_and_timeout() {
    timeout(TEST_LIMIT, async {
        let mut a_config = config();
        a_config.max_request_bytes = 1024;
        a_config.max_response_bytes = 4096;
        let mut a = Node::start(a_config);
        let mut b_config = config();
        b_config.max_request_bytes = 256;
        b_config.max_response_bytes = 64 * 1024;
        b_config.bootstrap = vec![a.addr(false).await];
        let b = Node::start(b_config);
        assert!(a.connected(b.id(), Duration::from_secs(5)).await);

        // B answers by the request's content.
        let (seen_tx, mut seen) = mpsc::channel(16);
        let Node {
            handle: b_handle,
            events: mut b_events,
            registry: b_registry,
        } = b;
        let responder = b_handle.clone();
        tokio::spawn(async move {
            while let Some(event) = b_events.recv().await {
                let NetEvent::SyncRequest {
                    request, channel, ..
                } = event
                else {
                    continue;
                };
                seen_tx
                    .send(Responder::Seen(request.clone()))
                    .await
                    .unwrap();
                let response = match request.as_slice() {
                    b"small" => vec![1u8; 2000],
                    b"big" => vec![2u8; 8192],
                    b"huge" => vec![3u8; 70_000],
                    _ => {
                        seen_tx.send(Responder::Held(channel)).await.unwrap();
                        continue;
                    }
                };
                let result = responder.respond(channel, response).await;
                seen_tx.send(Responder::Responded(result)).await.unwrap();
            }
        });
        let b_id = b_handle.local_peer_id();

        // Round trip.
        assert_eq!(
            a.handle.request(b_id, b"small".to_vec()).await.unwrap(),
            vec![1u8; 2000]
        );
        assert!(matches!(seen.recv().await, Some(Responder::Seen(r)) if r == b"small"));
        assert!(matches!(
            seen.recv().await,
            Some(Responder::Responded(Ok(())))
        ));

        // A response over A's bound fails on A with the sizes.
        match a.handle.request(b_id, b"big".to_vec()).await {
            Err(NetError::ResponseTooLarge { peer, len, limit }) => {
                assert_eq!((peer, len, limit), (b_id, 8192, 4096));
            }
            other => panic!("expected ResponseTooLarge, got {other:?}"),
        }
        assert!(matches!(seen.recv().await, Some(Responder::Seen(_))));
        assert!(matches!(seen.recv().await, Some(Responder::Responded(_))));

        // A response over B's own bound is refused on B; A's request fails.
        let failed = a.handle.request(b_id, b"huge".to_vec()).await;
        assert!(
            matches!(failed, Err(NetError::RequestFailed { .. })),
            "{failed:?}"
        );
        assert!(matches!(seen.recv().await, Some(Responder::Seen(_))));
        match seen.recv().await {
            Some(Responder::Responded(Err(NetError::ResponseTooLarge {
                len: 70_000,
                limit: 65_536,
                ..
            }))) => {}
            other => panic!("expected B to refuse its own oversized response, got {other:?}"),
        }

        // A request over A's bound is not sent; one within A's but over B's is refused by B
        // before B's node ever sees it.
        assert!(matches!(
            a.handle.request(b_id, vec![0; 2000]).await,
            Err(NetError::RequestTooLarge {
                len: 2000,
                limit: 1024
            })
        ));
        let refused = a.handle.request(b_id, vec![b'x'; 512]).await;
        assert!(
            matches!(refused, Err(NetError::RequestFailed { .. })),
            "{refused:?}"
        );

        // Timeout: B holds the request.
        let started = Instant::now();
        let timed_out = a.handle.request(b_id, b"hold".to_vec()).await;
        let waited = started.elapsed();
        assert!(
            matches!(timed_out, Err(NetError::Timeout { .. })),
            "{timed_out:?}"
        );
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
            "{waited:?}"
        );
        // The 512-byte request never reached B's node: the next thing seen is "hold".
        assert!(matches!(seen.recv().await, Some(Responder::Seen(r)) if r == b"hold"));
        let Some(Responder::Held(channel)) = seen.recv().await else {
            panic!("no held channel")
        };
        // B's side of the stream lives request_timeout + 2 s, then the late answer has nowhere to go.
        assert!(
            eventually(Duration::from_secs(5), || std::future::ready(
                !channel.is_open()
            ))
            .await
        );
        assert!(matches!(
            b_handle.respond(channel, b"late".to_vec()).await,
            Err(NetError::ResponseNotSent(_))
        ));

        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &b_registry).unwrap();
        assert!(
            text.contains("lode_net_sync_requests_oversized_total 1"),
            "{text}"
        );
        assert!(
            text.contains("lode_net_sync_requests_served_total 2"),
            "{text}"
        );
        let text = a.metrics();
        assert!(
            text.contains("lode_net_sync_responses_oversized_total 1"),
            "{text}"
        );
        assert!(
            text.contains("lode_net_sync_responses_received_total 1"),
            "{text}"
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_peer_stays_out_until_unblocked() {
    timeout(TEST_LIMIT, async {
        let mut a = Node::start(config());
        let a_addr = a.addr(false).await;
        let mut b_config = config();
        b_config.bootstrap = vec![a_addr.clone()];
        let b = Node::start(b_config);
        let b_addr = b.addr(false).await;
        assert!(a.connected(b.id(), Duration::from_secs(5)).await);

        a.handle.block_peer(b.id()).await.unwrap();
        assert!(a.disconnected(b.id(), Duration::from_secs(3)).await);
        // B knocks, over both transports; A lets nothing through.
        let _ = b.handle.dial(a_addr.clone()).await;
        let _ = b.handle.dial(a.addr(true).await).await;
        assert!(!a.connected(b.id(), QUIET).await);
        assert!(a.peer(b.id()).await.is_none());
        assert!(
            matches!(a.handle.dial(b_addr).await, Err(NetError::PeerBlocked(p)) if p == b.id())
        );
        assert!(matches!(
            a.handle.request(b.id(), b"x".to_vec()).await,
            Err(NetError::PeerBlocked(_))
        ));

        a.handle.unblock_peer(b.id()).await.unwrap();
        b.handle.dial(a_addr).await.unwrap();
        assert!(a.connected(b.id(), Duration::from_secs(5)).await);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seriously_misbehaving_peer_is_banned_for_the_ban_duration() {
    timeout(TEST_LIMIT, async {
        let mut a_config = config();
        a_config.ban_duration = Duration::from_secs(2);
        let mut a = Node::start(a_config);
        let a_addr = a.addr(false).await;
        let mut b_config = config();
        b_config.bootstrap = vec![a_addr.clone()];
        let mut b = Node::start(b_config);
        assert!(a.connected(b.id(), Duration::from_secs(5)).await);

        // A minor fault lowers the score but keeps the peer.
        a.handle
            .report(b.id(), Misbehaviour::Unresponsive)
            .await
            .unwrap();
        assert!(!a.disconnected(b.id(), Duration::from_millis(300)).await);
        assert!(a.peer(b.id()).await.is_some());

        a.handle
            .report(b.id(), Misbehaviour::InvalidBlock)
            .await
            .unwrap();
        let banned_at = Instant::now();
        assert!(a.disconnected(b.id(), Duration::from_secs(3)).await);
        assert!(b.disconnected(a.id(), Duration::from_secs(3)).await);
        let _ = b.handle.dial(a_addr.clone()).await;
        assert!(
            !a.connected(b.id(), QUIET).await,
            "reconnected during the ban"
        );
        assert!(matches!(
            a.handle.dial(b.addr(false).await).await,
            Err(NetError::PeerBlocked(_))
        ));

        // After the ban, B may come back.
        let back = eventually(Duration::from_secs(8), || async {
            let _ = b.handle.dial(a_addr.clone()).await;
            a.peer(b.id()).await.is_some()
        })
        .await;
        assert!(back, "B could not reconnect after the ban");
        assert!(banned_at.elapsed() >= Duration::from_secs(2));
        assert!(
            a.metrics()
                .contains("lode_net_peers_banned_total{reason=\"report\"} 1")
        );

        // Shutting A down disconnects B, and A's handle reports it stopped.
        a.handle.shutdown().await.unwrap();
        assert!(b.disconnected(a.id(), Duration::from_secs(3)).await);
        assert!(matches!(a.handle.peers().await, Err(NetError::Stopped)));
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_score_falls_below_the_threshold_is_banned() {
    timeout(TEST_LIMIT, async {
        let a = Node::start(config());
        let mut b_config = config();
        b_config.disconnect_score = -10.0;
        b_config.bootstrap = vec![a.addr(false).await];
        let mut b = Node::start(b_config);
        let topic = blocks_topic();
        assert!(
            eventually(Duration::from_secs(10), || async {
                a.peer(b.id())
                    .await
                    .is_some_and(|p| p.topics.contains(&topic))
            })
            .await
        );
        a.handle
            .publish(Topic::Blocks, b"invalid".to_vec())
            .await
            .unwrap();
        let (_, source, id, _) = b.gossip(Duration::from_secs(5)).await.unwrap();
        b.handle
            .validate(id, source, Validation::Reject)
            .await
            .unwrap();
        // The score poll runs every 2 s.
        assert!(b.disconnected(a.id(), Duration::from_secs(5)).await);
        assert!(
            b.metrics()
                .contains("lode_net_peers_banned_total{reason=\"score\"} 1")
        );
        assert!(matches!(
            b.handle.request(a.id(), b"x".to_vec()).await,
            Err(NetError::PeerBlocked(_))
        ));
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn the_registry_holds_libp2p_and_lode_metrics() {
    let node = Node::start(config());
    node.handle.listen_addrs().await.unwrap();
    let text = node.metrics();
    for name in [
        "lode_libp2p_swarm_",
        "lode_libp2p_identify_",
        "lode_libp2p_kad_",
        "lode_libp2p_ping_",
        "lode_gossipsub_",
        "lode_net_gossip_received_total{topic=\"blocks\"} 0",
        "lode_net_gossip_rejected_total{topic=\"msgs\"} 0",
        "lode_net_events_dropped_total{kind=\"gossip\"} 0",
        "lode_net_sync_requests_served_total 0",
        "lode_net_peers_banned_total{reason=\"score\"} 0",
        "lode_net_peers_connected",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test]
async fn bad_configurations_are_refused() {
    let mut registry = Registry::default();
    let mut c = config();
    c.network = "dev net".into();
    assert!(matches!(
        net::spawn(c, &mut registry),
        Err(NetError::InvalidConfig(_))
    ));
    let mut c = config();
    c.disconnect_score = 1.0;
    assert!(matches!(
        net::spawn(c, &mut registry),
        Err(NetError::InvalidConfig(_))
    ));
    let mut c = config();
    c.max_response_bytes = 0;
    assert!(matches!(
        net::spawn(c, &mut registry),
        Err(NetError::InvalidConfig(_))
    ));
    let mut c = config();
    c.bootstrap = vec!["/ip4/127.0.0.1/tcp/1".parse().unwrap()];
    assert!(matches!(
        net::spawn(c, &mut registry),
        Err(NetError::BootstrapWithoutPeerId(_))
    ));
}

#[test]
fn spawning_outside_a_runtime_is_an_error() {
    let mut registry = Registry::default();
    assert!(matches!(
        net::spawn(config(), &mut registry),
        Err(NetError::NoRuntime)
    ));
}
