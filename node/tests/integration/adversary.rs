//! Adversarial peers against running nodes: two honest [`NodeService`]s on 127.0.0.1 (A mines
//! a block every epoch it wins, with fake proofs the test verifier checks; B follows it over the
//! network), and test peers speaking the real protocols (lode's own network layer with its
//! limits lifted where an attacker would lift them) that:
//!
//! - announce heavier heads and gossip blocks on unknown parents, then never answer the sync
//!   requests these draw, or answer them with more bytes than any honest node sends;
//! - answer sync with tipsets that are not the ones asked for;
//! - flood both gossip topics with garbage;
//! - gossip blocks whose Winning PoSt is wrong, and blocks a miner equivocates with;
//! - open hundreds of connections: half-open TCP ones, then full libp2p peers.
//!
//! Throughout, the honest nodes must keep following the chain A produces, stay within their
//! connection bounds and a memory bound (the process's resident memory, measured before the
//! crowd of peers, whose swarms live in the same process), and score, disconnect and ban the
//! attackers.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use lode_chain::consensus::TipsetKey;
use lode_chain::crypto::SecretKey;
use lode_chain::genesis::{GenesisMiner, GenesisSector};
use lode_chain::message::{Message, Method, SignedMessage};
use lode_chain::types::{ActorId, Address, TokenAmount};
use lode_chain::{Genesis, Policy};
use lode_node::core::CoreConfig;
use lode_node::genesis::{GenesisFile, unix_now};
use lode_node::net::{self, NetConfig, NetEvent, NetHandle, Topic, Validation};
use lode_node::service::{NodeConfig, NodeService};
use lode_node::wire::{self, FullBlock, Status, SyncRequest, SyncResponse};
use lode_proofs::sector::SectorSize;
use lode_testkit::harness::FakeVerifier;
use lode_testkit::mining::{make_block, push_window_posts};
use tokio::sync::mpsc::Receiver;

use crate::net::eventually;

/// The bound on the whole test.
const TEST_LIMIT: Duration = Duration::from_secs(240);
/// How long an honest node may take to reach the head the miner made.
const FOLLOW: Duration = Duration::from_secs(20);

fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed(&[seed; 32])
}

/// The honest miner (8 sectors, worker key 20) and the byzantine one (1 sector, worker key 21,
/// whose key the attackers hold).
const HONEST_WORKER: u8 = 20;
const BYZANTINE_WORKER: u8 = 21;

fn genesis() -> (GenesisFile, ActorId, ActorId) {
    let policy = Policy::devnet();
    let exp = *GenesisSector::expiration_range(&policy).start();
    let comm_d = {
        use lode_proofs::piece::{PaddedPieceSize, comm_d};
        comm_d(PaddedPieceSize::new(2048).unwrap(), &[]).unwrap().0
    };
    let miner = |owner: u8, worker: u8, sectors: u64| GenesisMiner {
        owner: key(owner).public_key(),
        worker: key(worker).public_key(),
        sector_size: SectorSize::S2KiB,
        balance: TokenAmount::tokens(10),
        peer_id: Vec::new(),
        multiaddrs: Vec::new(),
        sectors: (0..sectors)
            .map(|n| GenesisSector {
                sector_number: n,
                comm_r: lode_testkit::harness::node(&format!("m{worker}-s{n}")),
                comm_d,
                expiration: exp,
            })
            .collect(),
    };
    let g = Genesis {
        accounts: vec![
            (key(10).public_key(), TokenAmount::tokens(1000)),
            (key(11).public_key(), TokenAmount::tokens(1000)),
            (key(HONEST_WORKER).public_key(), TokenAmount::tokens(100)),
            (key(BYZANTINE_WORKER).public_key(), TokenAmount::tokens(100)),
        ],
        verifreg_root: key(1).public_key(),
        verifiers: Vec::new(),
        verified_clients: Vec::new(),
        beacon: [7; 32],
        miners: vec![miner(10, HONEST_WORKER, 8), miner(11, BYZANTINE_WORKER, 1)],
    };
    let ids = g.miner_ids();
    (
        GenesisFile {
            policy,
            // Epochs are one second long: the test mines faster than that through epochs whose
            // slots are all in the past.
            timestamp: unix_now().saturating_sub(3600),
            genesis: g,
        },
        ids[0],
        ids[1],
    )
}

struct Honest {
    svc: NodeService,
    _dir: tempfile::TempDir,
}

impl Honest {
    async fn start(g: &GenesisFile, bootstrap: Vec<Multiaddr>) -> Honest {
        let dir = tempfile::tempdir().unwrap();
        let config = NodeConfig {
            dir: dir.path().to_path_buf(),
            genesis: g.clone(),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            bootstrap,
            core: CoreConfig::default(),
            status_interval: Duration::from_secs(1),
        };
        let svc = NodeService::start(config, Box::new(FakeVerifier))
            .await
            .unwrap();
        Honest { svc, _dir: dir }
    }

    fn id(&self) -> PeerId {
        self.svc.net().local_peer_id()
    }

    async fn addr(&self) -> Multiaddr {
        tcp_addr(self.svc.net()).await
    }

    async fn head(&self) -> ([u8; 32], u64) {
        self.svc
            .with_core(|c| (c.head_hash(), c.head_epoch()))
            .await
            .unwrap()
    }

    async fn peers(&self) -> HashSet<PeerId> {
        self.svc
            .net()
            .peers()
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.peer_id)
            .collect()
    }

    fn metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, self.svc.registry()).unwrap();
        text
    }

    /// The value of the metric line starting with `name` (0 when absent).
    fn metric(&self, name: &str) -> f64 {
        self.metrics()
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}

/// `handle`'s TCP listen address, ending in its peer id.
async fn tcp_addr(handle: &NetHandle) -> Multiaddr {
    handle
        .listen_addrs()
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.iter().any(|p| matches!(p, Protocol::Tcp(_))))
        .expect("a TCP listen address")
        .with(Protocol::P2p(handle.local_peer_id()))
}

/// Whether `node` reaches (or passes) `a`'s head within [`FOLLOW`].
async fn follows(node: &Honest, a: &Honest) -> bool {
    let (_, target) = a.head().await;
    eventually(FOLLOW, || async { node.head().await.1 >= target }).await
}

/// The process's resident memory, from `/proc/self/status`.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// An attacker: lode's network layer under a fresh identity, its own limits lifted so that it
/// can send what no honest node sends.
struct Attacker {
    handle: NetHandle,
    events: Receiver<NetEvent>,
}

impl Attacker {
    fn start(g: &GenesisFile, bootstrap: Vec<Multiaddr>) -> Attacker {
        let mut config = NetConfig::new(g.network().to_string(), net::generate_keypair());
        config.bootstrap = bootstrap;
        config.max_response_bytes = 64 * 1024 * 1024;
        config.max_gossip_bytes = 4 * 1024 * 1024;
        let mut registry = prometheus_client::registry::Registry::default();
        let (handle, events) = net::spawn(config, &mut registry).unwrap();
        Attacker { handle, events }
    }

    fn id(&self) -> PeerId {
        self.handle.local_peer_id()
    }

    /// Waits until it is connected to `peer` and both gossip topics have had time to be
    /// announced.
    async fn connected_to(&self, peer: PeerId) {
        assert!(
            eventually(Duration::from_secs(10), || async {
                self.handle
                    .peers()
                    .await
                    .unwrap()
                    .iter()
                    .any(|p| p.peer_id == peer)
            })
            .await,
            "the attacker never connected"
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }

    /// Answers its events with `answer` until the test ends, ignoring all gossip.
    fn serve(
        self,
        mut answer: impl FnMut(SyncRequest) -> Answer + Send + 'static,
    ) -> (NetHandle, tokio::task::JoinHandle<()>) {
        let Attacker { handle, mut events } = self;
        let h = handle.clone();
        let task = tokio::spawn(async move {
            // Requests never answered stay held here, so their streams stay open.
            let mut held = Vec::new();
            while let Some(ev) = events.recv().await {
                match ev {
                    NetEvent::Gossip { id, source, .. } => {
                        let _ = h.validate(id, source, Validation::Ignore).await;
                    }
                    NetEvent::SyncRequest {
                        request, channel, ..
                    } => {
                        let Ok(req) = wire::decode::<SyncRequest>(&request, "request") else {
                            continue;
                        };
                        match answer(req) {
                            Answer::Bytes(b) => {
                                let _ = h.respond(channel, b).await;
                            }
                            Answer::Never => held.push(channel),
                        }
                    }
                    _ => {}
                }
            }
        });
        (handle, task)
    }
}

enum Answer {
    Bytes(Vec<u8>),
    Never,
}

/// A status claiming a head far heavier than the honest chain's, at a key nobody has.
fn lying_status(g: &GenesisFile, seed: u8) -> Vec<u8> {
    wire::encode(&SyncResponse::Status(Status {
        genesis: g.id(),
        head: TipsetKey::new(vec![[seed; 32]]),
        epoch: 100_000,
        weight: u128::MAX / 2,
    }))
}

/// The honest miner's loop on A: each epoch it proves its deadlines and, when it wins, submits
/// its block; every `pace`. Stops when `stop` turns true; returns the epochs it produced blocks
/// for and the longest time one epoch's work took.
fn mine(
    a: NodeService,
    g: GenesisFile,
    miner: ActorId,
    byzantine: ActorId,
    pace: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<(Vec<u64>, Duration)> {
    tokio::spawn(async move {
        let mut produced = Vec::new();
        let mut slowest = Duration::ZERO;
        let mut epoch = 0;
        while !*stop.borrow() {
            let started = Instant::now();
            let policy = g.policy.clone();
            let after = epoch;
            let (e, block) = a
                .with_core(move |c| {
                    // The next epoch, past any block another miner added meanwhile.
                    let epoch = (after + 1).max(c.head_epoch() + 1);
                    // Both miners keep their power: the byzantine one's deadlines are proven too,
                    // so it can still make blocks the attackers misuse.
                    push_window_posts(c, miner, &key(HONEST_WORKER)).unwrap();
                    push_window_posts(c, byzantine, &key(BYZANTINE_WORKER)).unwrap();
                    let mb = c.miner_base(miner, epoch).unwrap();
                    (
                        epoch,
                        make_block(&policy, miner, &key(HONEST_WORKER), &mb).unwrap(),
                    )
                })
                .await
                .unwrap();
            epoch = e;
            if let Some(block) = block {
                let v = a.submit_block(block).await.unwrap();
                assert_eq!(v, lode_node::core::BlockVerdict::Accepted, "epoch {epoch}");
                produced.push(epoch);
            }
            slowest = slowest.max(started.elapsed());
            tokio::select! {
                _ = tokio::time::sleep(pace) => {}
                _ = stop.changed() => {}
            }
        }
        (produced, slowest)
    })
}

/// Blocks of the byzantine miner on A's head (at the first epoch after it that the miner wins),
/// honest in every field: one carrying `messages` for each list given.
async fn byzantine_blocks(
    a: &Honest,
    g: &GenesisFile,
    byzantine: ActorId,
    bodies: Vec<Vec<SignedMessage>>,
) -> Vec<FullBlock> {
    let policy = g.policy.clone();
    a.svc
        .with_core(move |c| {
            let head = c.head_epoch();
            let mut mb = (head + 1..head + 200)
                .map(|e| c.miner_base(byzantine, e).unwrap())
                .find(|mb| {
                    make_block(&policy, byzantine, &key(BYZANTINE_WORKER), mb)
                        .unwrap()
                        .is_some()
                })
                .expect("the byzantine miner wins within 200 epochs");
            bodies
                .into_iter()
                .map(|messages| {
                    mb.messages = messages;
                    make_block(&policy, byzantine, &key(BYZANTINE_WORKER), &mb)
                        .unwrap()
                        .unwrap()
                })
                .collect()
        })
        .await
        .unwrap()
}

/// A transfer of one token from account key 11, with `nonce`.
fn transfer(g: &GenesisFile, nonce: u64) -> SignedMessage {
    Message {
        from: Address::Bls(key(11).public_key()),
        to: Address::Bls(key(10).public_key()),
        nonce,
        value: TokenAmount::tokens(1),
        method: Method::Send,
        gas_limit: 1_000_000,
        gas_price: g.policy.min_gas_price,
    }
    .sign(&g.policy.network, &key(11))
}

/// `block` with `change` applied and the header signed again by the byzantine worker.
fn resigned(g: &GenesisFile, block: &FullBlock, change: impl FnOnce(&mut FullBlock)) -> FullBlock {
    let mut b = block.clone();
    change(&mut b);
    b.header.signature = key(BYZANTINE_WORKER).sign(&b.header.signing_bytes(g.network()));
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_nodes_keep_the_chain_going_under_attack() {
    tokio::time::timeout(TEST_LIMIT, attack())
        .await
        .expect("test timed out");
}

async fn attack() {
    let (g, miner, byzantine) = genesis();
    let a = Honest::start(&g, Vec::new()).await;
    let a_addr = a.addr().await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let miner_task = mine(
        a.svc.clone(),
        g.clone(),
        miner,
        byzantine,
        Duration::from_millis(150),
        stop_rx,
    );
    // A chain to catch up with before B exists.
    assert!(eventually(Duration::from_secs(30), || async { a.head().await.1 >= 30 }).await);
    let rss_before = rss_bytes();

    // 1. Stallers: a peer announcing a heavier head and gossiping blocks on unknown parents,
    // which then never answers the sync requests they draw; another answering them with 20 MiB
    // (more than any node sends). B meets them before it meets A.
    let staller = Attacker::start(&g, Vec::new());
    let staller_id = staller.id();
    let staller_addr = tcp_addr(&staller.handle).await;
    let (staller, _staller_task) = staller.serve({
        let g = g.clone();
        move |req| match req {
            SyncRequest::Status => Answer::Bytes(lying_status(&g, 0xee)),
            _ => Answer::Never,
        }
    });
    let flooder_of_bytes = Attacker::start(&g, Vec::new());
    let bytes_id = flooder_of_bytes.id();
    let bytes_addr = tcp_addr(&flooder_of_bytes.handle).await;
    let (_bytes, _bytes_task) = flooder_of_bytes.serve({
        let g = g.clone();
        move |req| match req {
            SyncRequest::Status => Answer::Bytes(lying_status(&g, 0xdd)),
            _ => Answer::Bytes(vec![0xab; 20 * 1024 * 1024]),
        }
    });
    let b = Honest::start(&g, vec![staller_addr, bytes_addr]).await;
    // (The peer answering with too many bytes may be gone already: see below.)
    assert!(
        eventually(Duration::from_secs(10), || async {
            b.peers().await.contains(&staller_id)
        })
        .await
    );
    // Time for the gossip topics to be announced both ways.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Blocks on parents nobody has, each drawing a sync request the staller leaves unanswered.
    let template = a
        .svc
        .with_core(|c| {
            let key = c.head().key.clone();
            c.serve(&SyncRequest::Ancestors {
                head: key,
                count: 1,
            })
        })
        .await
        .unwrap();
    let SyncResponse::Tipsets(ts) = template else {
        panic!("A serves its head")
    };
    let template = ts[0].blocks[0].clone();
    for i in 0..8u8 {
        let mut orphan = template.clone();
        orphan.header.parents = vec![[i; 32]];
        let _ = staller.publish(Topic::Blocks, wire::encode(&orphan)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Now B meets A, and must catch up with it while the stallers hold their requests.
    b.svc.net().dial(a_addr.clone()).await.unwrap();
    let caught_up = Instant::now();
    assert!(
        follows(&b, &a).await,
        "B did not catch up with A while stallers held its sync requests (B at {:?}, A at {:?})",
        b.head().await,
        a.head().await
    );
    eprintln!("B caught up with A in {:?}", caught_up.elapsed());
    // The peer answering with too many bytes is banned at once: no honest node sends that.
    assert!(
        eventually(Duration::from_secs(15), || async {
            !b.peers().await.contains(&bytes_id)
                && b.metric("lode_net_peers_banned_total{reason=\"report\"}") >= 1.0
        })
        .await,
        "the peer sending oversized responses was not banned"
    );

    // 2. A liar: it announces a heavier head and answers with tipsets that are not the ones
    // asked for (A's real genesis-side tipset). Banned for it.
    let banned_before = b.metric("lode_net_peers_banned_total{reason=\"report\"}");
    let liar = Attacker::start(&g, vec![b.addr().await]);
    let liar_id = liar.id();
    let real_old = a
        .svc
        .with_core(|c| c.serve(&SyncRequest::Range { from: 1, count: 1 }))
        .await
        .unwrap();
    let (_liar, _liar_task) = liar.serve({
        let g = g.clone();
        move |req| match req {
            SyncRequest::Status => Answer::Bytes(lying_status(&g, 0xcc)),
            _ => Answer::Bytes(wire::encode(&real_old)),
        }
    });
    assert!(
        eventually(Duration::from_secs(15), || async {
            b.metric("lode_net_peers_banned_total{reason=\"report\"}") > banned_before
                && !b.peers().await.contains(&liar_id)
        })
        .await,
        "the liar was not banned"
    );

    // 3. A gossip flood: garbage on both topics, far more than any peer sends.
    let flooder = Attacker::start(&g, vec![a_addr.clone()]);
    let flooder_id = flooder.id();
    flooder.connected_to(a.id()).await;
    let score_bans = a.metric("lode_net_peers_banned_total{reason=\"score\"}");
    for i in 0..2000u32 {
        let topic = if i % 10 == 0 {
            Topic::Blocks
        } else {
            Topic::Messages
        };
        let mut junk = i.to_le_bytes().to_vec();
        junk.extend_from_slice(&[0x5a; 300]);
        if flooder.handle.publish(topic, junk).await.is_err() {
            break;
        }
    }
    assert!(
        eventually(Duration::from_secs(20), || async {
            !a.peers().await.contains(&flooder_id)
                && a.metric("lode_net_peers_banned_total{reason=\"score\"}") > score_bans
        })
        .await,
        "the flooder was not disconnected and banned by its score"
    );
    let pool = a.svc.with_core(|c| c.mempool().len()).await.unwrap();
    assert!(pool < 50, "the flood reached the message pool: {pool}");
    assert!(follows(&b, &a).await, "B fell behind during the flood");

    // 4. Blocks whose Winning PoSt is wrong (signed by the miner's real worker key, every other
    // field honest): refused, and their sender scored out.
    let forger = Attacker::start(&g, vec![a_addr.clone()]);
    let forger_id = forger.id();
    forger.connected_to(a.id()).await;
    let mut forged_ids = Vec::new();
    for _ in 0..4 {
        let honest = byzantine_blocks(&a, &g, byzantine, vec![Vec::new()])
            .await
            .remove(0);
        let forged = resigned(&g, &honest, |b| b.header.winning_post[0] ^= 1);
        forged_ids.push(forged.id());
        let _ = forger
            .handle
            .publish(Topic::Blocks, wire::encode(&forged))
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        eventually(Duration::from_secs(20), || async {
            !a.peers().await.contains(&forger_id)
        })
        .await,
        "the forger of proofs is still connected"
    );
    let heads_with_forged = {
        let ids = forged_ids.clone();
        a.svc
            .with_core(move |c| ids.iter().any(|id| c.head().key.0.contains(id)))
            .await
            .unwrap()
    };
    assert!(!heads_with_forged, "a forged block made it into the head");

    // 5. Equivocation: the byzantine miner's two different blocks for one slot, both properly
    // made and signed. A records the consensus fault and goes on.
    let equivocator = Attacker::start(&g, vec![a_addr.clone()]);
    equivocator.connected_to(a.id()).await;
    let mut twins =
        byzantine_blocks(&a, &g, byzantine, vec![Vec::new(), vec![transfer(&g, 0)]]).await;
    let (first, twin) = (twins.remove(0), twins.remove(0));
    assert_ne!(first.id(), twin.id());
    for block in [&first, &twin] {
        let _ = equivocator
            .handle
            .publish(Topic::Blocks, wire::encode(block))
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        eventually(Duration::from_secs(15), || async {
            a.svc
                .with_core(|c| !c.consensus_faults().is_empty())
                .await
                .unwrap()
        })
        .await,
        "the equivocation was not recorded"
    );

    // Memory, measured before the crowd below (whose 120 swarms live in this process too): the
    // stallers' held requests, the 20 MiB answers, the flood and the forged blocks cost the
    // honest nodes no more than this.
    let grown = rss_bytes().saturating_sub(rss_before);
    eprintln!(
        "resident memory grew by {} MiB through the first five attacks",
        grown >> 20
    );
    assert!(grown < 256 << 20, "resident memory grew by {grown} bytes");

    // 6. Hundreds of connections. First 200 half-open TCP connections (no handshake): they take
    // at most the pending slots, and the chain goes on.
    let tcp_port = a_addr
        .iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();
    let mut half_open = Vec::new();
    for _ in 0..200 {
        if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", tcp_port)).await {
            half_open.push(s);
        }
    }
    assert!(half_open.len() >= 150, "{} connections", half_open.len());
    assert!(
        follows(&b, &a).await,
        "B fell behind during the half-open flood"
    );
    assert!(a.peers().await.contains(&b.id()));
    drop(half_open);
    // Then 120 full libp2p peers dialling A: it takes them up to its bound and no further, and
    // keeps its honest peer.
    let crowd: Vec<Attacker> = (0..120)
        .map(|_| Attacker::start(&g, vec![a_addr.clone()]))
        .collect();
    let bound = net::DEFAULT_MAX_PEERS as usize;
    let filled = eventually(Duration::from_secs(30), || async {
        a.peers().await.len() >= bound - 5
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let connected = a.peers().await.len();
    eprintln!(
        "A holds {connected} peers with 120 dialling (bounds: {bound} incoming, {bound} outgoing)"
    );
    assert!(
        filled,
        "the crowd never filled A's slots ({connected} peers)"
    );
    // Incoming connections stop at the bound; A may also have dialled a few of the crowd it
    // learnt of (Kademlia), which the outgoing bound covers.
    assert!(
        connected <= 2 * bound,
        "A holds {connected} peers, more than its bound of {} in all",
        2 * bound
    );
    assert!(
        a.peers().await.contains(&b.id()),
        "A lost its honest peer to the crowd"
    );
    assert!(follows(&b, &a).await, "B fell behind during the crowd");
    for c in &crowd {
        let _ = c.handle.shutdown().await;
    }

    // The chain went on throughout: A made a block for nearly every epoch, and none of its
    // epochs took long.
    stop_tx.send(true).unwrap();
    let (produced, slowest) = miner_task.await.unwrap();
    let span = produced.last().unwrap() - produced.first().unwrap() + 1;
    eprintln!(
        "A produced {} blocks over {span} epochs; slowest epoch {slowest:?}",
        produced.len()
    );
    assert!(
        produced.len() as u64 * 100 >= span * 90,
        "A produced blocks for only {} of {span} epochs",
        produced.len()
    );
    assert!(
        slowest < Duration::from_secs(5),
        "an epoch took {slowest:?}"
    );
    assert!(follows(&b, &a).await);
    let (a_head, _) = a.head().await;
    assert!(
        eventually(FOLLOW, || async { b.head().await.0 == a_head }).await,
        "B does not end on A's head"
    );
    let _ = staller.shutdown().await;
}
