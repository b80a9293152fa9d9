//! The running node: the consensus core behind a lock, the network, sync, and head events.
//!
//! One task reads the network's events in order: gossiped blocks go to
//! [`NodeCore::receive_block`] and are forwarded only once accepted; gossiped messages go to the
//! mempool and are forwarded only once accepted; sync requests are answered from the core. A block
//! whose parents are unknown, and a peer that reports a heavier head (every peer is asked for its
//! [`Status`] when it connects and every `status_interval`), start a sync job: it fetches the
//! missing tipsets from that peer, newest first, 64 at a time, until it reaches a tipset the node
//! knows, stores them after the checks that need no state, and lets fork choice decide — which
//! validates every block of the branch as it applies it. Up to four jobs run at once, never two
//! with one peer, so a peer that announces a head and then stalls holds up only its own job
//! (one more waits per peer; a newer one replaces it). A peer whose sync response is malformed or
//! does not chain, is larger than any node sends, or whose branch turns out invalid, is reported
//! to the net layer (and banned); one that lets a request time out loses a little score.
//!
//! Work on the core (validation with proof checks, reorganisations) runs on tokio's blocking pool.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use lode_chain::consensus::TipsetKey;
use lode_chain::message::SignedMessage;
use lode_proofs::verifier::ProofVerifier;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};

use crate::core::{BlockVerdict, CoreConfig, NodeCore};
use crate::error::{NodeError, NodeResult};
use crate::genesis::{GenesisFile, unix_now};
use crate::metrics::{NodeMetrics, SourceLabel};
use crate::net::{self, Misbehaviour, NetConfig, NetEvent, NetHandle, Topic, Validation};
use crate::wire::{self, FullBlock, MAX_SYNC_TIPSETS, Status, SyncRequest, SyncResponse};

/// How a node runs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Its directory (chain, keys).
    pub dir: PathBuf,
    /// The network's genesis.
    pub genesis: GenesisFile,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start (each ending in `/p2p/<peer id>`).
    pub bootstrap: Vec<Multiaddr>,
    /// The core's limits.
    pub core: CoreConfig,
    /// How often peers are asked for their head.
    pub status_interval: Duration,
}

/// A change of head, for subscribers (RPC, logs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HeadEvent {
    /// The new head's epoch.
    pub epoch: u64,
    /// The new head's key (block ids, hex).
    pub key: Vec<String>,
    /// Its weight.
    pub weight: u128,
    /// Tipsets reverted to get there.
    pub reverted: usize,
    /// Tipsets applied.
    pub applied: usize,
}

struct SyncJob {
    peer: PeerId,
    target: TipsetKey,
    block: Option<FullBlock>,
}

/// At most this many sync jobs run at once, each with a different peer: a peer that stalls (never
/// answers, or answers slowly) holds up only its own job, never another peer's.
const SYNC_LANES: usize = 4;
/// At most this many jobs wait for a lane, one per peer (a peer's newer job replaces its older
/// one); more are dropped (the next status check asks again).
const SYNC_WAITING: usize = 64;

struct Inner {
    core: Mutex<NodeCore>,
    net: NetHandle,
    metrics: NodeMetrics,
    registry: Registry,
    heads: broadcast::Sender<HeadEvent>,
    sync: mpsc::Sender<SyncJob>,
    genesis_id: [u8; 32],
}

/// A handle on the running node (cheap to clone).
#[derive(Clone)]
pub struct NodeService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NodeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeService")
            .field("peer_id", &self.inner.net.local_peer_id())
            .finish()
    }
}

fn lock(core: &Mutex<NodeCore>) -> std::sync::MutexGuard<'_, NodeCore> {
    // A panic while holding the lock cannot leave the core half-changed in a way later calls
    // could see: every change is committed atomically by the state store or not at all.
    core.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl NodeService {
    /// Opens the chain, starts the network and the node's tasks.
    pub async fn start(
        config: NodeConfig,
        verifier: Box<dyn ProofVerifier>,
    ) -> NodeResult<NodeService> {
        let mut registry = Registry::default();
        let metrics = NodeMetrics::register(&mut registry);
        let dir = config.dir.clone();
        let genesis = config.genesis.clone();
        let core_config = config.core.clone();
        let core = tokio::task::spawn_blocking(move || {
            NodeCore::open(&dir, genesis, verifier, core_config)
        })
        .await
        .map_err(|_| NodeError::Stopped)??;
        let genesis_id = core.genesis_id();
        let keypair = net::load_or_create_keypair(&config.dir.join("p2p.key"))
            .map_err(|e| NodeError::Net(e.to_string()))?;
        let mut netcfg = NetConfig::new(config.genesis.network().to_string(), keypair);
        netcfg.listen = config.listen.clone();
        netcfg.bootstrap = config.bootstrap.clone();
        let (net, events) =
            net::spawn(netcfg, &mut registry).map_err(|e| NodeError::Net(e.to_string()))?;
        let (heads, _) = broadcast::channel(256);
        let (sync_tx, sync_rx) = mpsc::channel(64);
        let svc = NodeService {
            inner: Arc::new(Inner {
                core: Mutex::new(core),
                net,
                metrics,
                registry,
                heads,
                sync: sync_tx,
                genesis_id,
            }),
        };
        svc.update_gauges().await;
        tokio::spawn(svc.clone().event_loop(events, config.status_interval));
        tokio::spawn(svc.clone().sync_worker(sync_rx));
        Ok(svc)
    }

    /// Runs `f` on the core in the blocking pool.
    pub async fn with_core<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut NodeCore) -> R + Send + 'static,
    ) -> NodeResult<R> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&mut lock(&inner.core)))
            .await
            .map_err(|_| NodeError::Stopped)
    }

    /// The network handle.
    pub fn net(&self) -> &NetHandle {
        &self.inner.net
    }

    /// The metrics registry (node and libp2p metrics).
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &NodeMetrics {
        &self.inner.metrics
    }

    /// Head changes from now on.
    pub fn subscribe_heads(&self) -> broadcast::Receiver<HeadEvent> {
        self.inner.heads.subscribe()
    }

    /// A block made by a local miner: validated, applied and, if accepted, gossiped.
    pub async fn submit_block(&self, block: FullBlock) -> NodeResult<BlockVerdict> {
        let bytes = wire::encode(&block);
        let epoch = block.header.epoch;
        let miner = block.header.miner;
        let verdict = self.receive(block, "local").await?;
        if verdict == BlockVerdict::Accepted {
            self.inner.metrics.blocks_produced.inc();
            tracing::info!(epoch, %miner, "block produced");
            if let Err(e) = self.inner.net.publish(Topic::Blocks, bytes).await {
                tracing::warn!(error = %e, "could not gossip a produced block");
            }
        }
        Ok(verdict)
    }

    /// A signed message from a client: checked, pooled and gossiped.
    pub async fn push_message(&self, msg: SignedMessage) -> NodeResult<[u8; 32]> {
        let bytes = wire::encode(&msg);
        let result = self.with_core(move |c| c.push_message(msg)).await?;
        match &result {
            Ok(_) => {
                self.inner.metrics.messages_accepted.inc();
                if let Err(e) = self.inner.net.publish(Topic::Messages, bytes).await {
                    tracing::warn!(error = %e, "could not gossip a message");
                }
            }
            Err(e) => self.inner.metrics.reject_message(&e.to_string()),
        }
        self.update_gauges().await;
        result
    }

    async fn receive(&self, block: FullBlock, source: &str) -> NodeResult<BlockVerdict> {
        let started = Instant::now();
        let epoch = block.header.epoch;
        let miner = block.header.miner;
        let before = self.with_core(|c| c.head_hash()).await?;
        let verdict = self
            .with_core(move |c| c.receive_block(block, unix_now()))
            .await??;
        self.inner
            .metrics
            .block_apply_seconds
            .observe(started.elapsed().as_secs_f64());
        match &verdict {
            BlockVerdict::Accepted => {
                self.inner
                    .metrics
                    .blocks_accepted
                    .get_or_create(&SourceLabel {
                        source: source.to_string(),
                    })
                    .inc();
                if source != "local" {
                    tracing::info!(epoch, %miner, source, "block received");
                }
            }
            BlockVerdict::Rejected(why) => {
                self.inner.metrics.reject_block(why);
                tracing::warn!(epoch, %miner, source, why = %why, "block rejected");
            }
            _ => {}
        }
        self.after_head_change(before).await;
        Ok(verdict)
    }

    async fn after_head_change(&self, before: [u8; 32]) {
        let Ok((hash, event, faults)) = self
            .with_core(|c| {
                let h = c.head();
                (
                    c.head_hash(),
                    HeadEvent {
                        epoch: h.epoch,
                        key: h.key.0.iter().map(hex::encode).collect(),
                        weight: h.weight.unwrap_or(0),
                        reverted: 0,
                        applied: 0,
                    },
                    c.consensus_faults().len(),
                )
            })
            .await
        else {
            return;
        };
        let seen = self.inner.metrics.consensus_faults.get();
        if (faults as u64) > seen {
            self.inner
                .metrics
                .consensus_faults
                .inc_by((faults as u64).saturating_sub(seen));
        }
        if hash != before {
            self.inner.metrics.tipsets_applied.inc();
            let _ = self.inner.heads.send(event);
        }
        self.update_gauges().await;
    }

    async fn update_gauges(&self) {
        if let Ok((epoch, weight, len, bytes)) = self
            .with_core(|c| {
                (
                    c.head_epoch(),
                    c.head_weight(),
                    c.mempool().len(),
                    c.mempool().bytes(),
                )
            })
            .await
        {
            let m = &self.inner.metrics;
            m.chain_height.set(i64::try_from(epoch).unwrap_or(i64::MAX));
            m.head_weight.set(weight as f64);
            m.mempool_size.set(i64::try_from(len).unwrap_or(i64::MAX));
            m.mempool_bytes
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    async fn event_loop(self, mut events: mpsc::Receiver<NetEvent>, status_interval: Duration) {
        let mut tick = tokio::time::interval(status_interval.max(Duration::from_millis(100)));
        let mut peers = 0i64;
        loop {
            tokio::select! {
                ev = events.recv() => {
                    let Some(ev) = ev else { break };
                    match ev {
                        NetEvent::Gossip { topic, source, id, data } => {
                            let v = self.on_gossip(topic, source, data).await;
                            let _ = self.inner.net.validate(id, source, v).await;
                        }
                        NetEvent::SyncRequest { peer, request, channel } => {
                            let svc = self.clone();
                            tokio::spawn(async move {
                                let resp = svc.serve(peer, &request).await;
                                let _ = svc.inner.net.respond(channel, resp).await;
                            });
                        }
                        NetEvent::PeerConnected(peer) => {
                            peers = peers.saturating_add(1);
                            self.inner.metrics.peers.set(peers);
                            let svc = self.clone();
                            tokio::spawn(async move { svc.check_status(peer).await });
                        }
                        NetEvent::PeerDisconnected(_) => {
                            peers = peers.saturating_sub(1).max(0);
                            self.inner.metrics.peers.set(peers);
                        }
                    }
                }
                _ = tick.tick() => {
                    if let Ok(list) = self.inner.net.peers().await {
                        self.inner.metrics.peers.set(i64::try_from(list.len()).unwrap_or(0));
                        for p in list.into_iter().take(4) {
                            let svc = self.clone();
                            tokio::spawn(async move { svc.check_status(p.peer_id).await });
                        }
                    }
                }
            }
        }
    }

    async fn serve(&self, peer: PeerId, request: &[u8]) -> Vec<u8> {
        let req = match wire::decode::<SyncRequest>(request, "sync request") {
            Ok(r) => r,
            Err(e) => {
                let _ = self.inner.net.report(peer, Misbehaviour::Malformed).await;
                return wire::encode(&SyncResponse::Error(e.to_string()));
            }
        };
        match self.with_core(move |c| c.serve(&req)).await {
            Ok(resp) => wire::encode(&resp),
            Err(e) => wire::encode(&SyncResponse::Error(e.to_string())),
        }
    }

    async fn on_gossip(&self, topic: Topic, source: PeerId, data: Vec<u8>) -> Validation {
        match topic {
            Topic::Blocks => {
                let block = match wire::decode::<FullBlock>(&data, "gossiped block") {
                    Ok(b) => b,
                    Err(_) => {
                        self.inner.metrics.reject_block("malformed");
                        return Validation::Reject;
                    }
                };
                match self.receive(block.clone(), "gossip").await {
                    Ok(BlockVerdict::Accepted) => Validation::Accept,
                    Ok(BlockVerdict::Rejected(_)) => Validation::Reject,
                    Ok(BlockVerdict::NeedParents(key)) => {
                        let _ = self.inner.sync.try_send(SyncJob {
                            peer: source,
                            target: key,
                            block: Some(block),
                        });
                        Validation::Ignore
                    }
                    Ok(BlockVerdict::Stored | BlockVerdict::Duplicate) | Err(_) => {
                        Validation::Ignore
                    }
                }
            }
            Topic::Messages => {
                let msg = match wire::decode::<SignedMessage>(&data, "gossiped message") {
                    Ok(m) => m,
                    Err(_) => {
                        self.inner.metrics.reject_message("malformed");
                        return Validation::Reject;
                    }
                };
                let result = self.with_core(move |c| c.push_message(msg)).await;
                match result {
                    Ok(Ok(_)) => {
                        self.inner.metrics.messages_accepted.inc();
                        self.update_gauges().await;
                        Validation::Accept
                    }
                    Ok(Err(NodeError::Mempool(e))) => {
                        self.inner.metrics.reject_message(&e.to_string());
                        match e {
                            crate::mempool::MempoolError::BadSignature
                            | crate::mempool::MempoolError::TooLarge { .. } => Validation::Reject,
                            _ => Validation::Ignore,
                        }
                    }
                    _ => Validation::Ignore,
                }
            }
        }
    }

    async fn check_status(&self, peer: PeerId) {
        let Ok(bytes) = self
            .inner
            .net
            .request(peer, wire::encode(&SyncRequest::Status))
            .await
        else {
            return;
        };
        let status = match wire::decode::<SyncResponse>(&bytes, "status") {
            Ok(SyncResponse::Status(s)) => s,
            _ => {
                let _ = self.inner.net.report(peer, Misbehaviour::Malformed).await;
                return;
            }
        };
        if status.genesis != self.inner.genesis_id {
            return;
        }
        let ours = self.with_core(|c| c.status()).await;
        let Ok(ours) = ours else { return };
        if status.weight > ours.weight && status.head != ours.head {
            let known = self
                .with_core({
                    let h = status.head.hash();
                    move |c| c.tipset(&h).is_some_and(|m| m.weight.is_some())
                })
                .await
                .unwrap_or(true);
            if !known {
                let _ = self.inner.sync.try_send(SyncJob {
                    peer,
                    target: status.head,
                    block: None,
                });
            }
        }
    }

    /// Runs the sync jobs: up to [`SYNC_LANES`] at once, never two with one peer, the others
    /// waiting (at most [`SYNC_WAITING`], one per peer).
    async fn sync_worker(self, mut jobs: mpsc::Receiver<SyncJob>) {
        let mut waiting: std::collections::VecDeque<SyncJob> = std::collections::VecDeque::new();
        let mut running: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
        // The peer of each running job, by task.
        let mut busy: std::collections::HashMap<tokio::task::Id, PeerId> =
            std::collections::HashMap::new();
        loop {
            while running.len() < SYNC_LANES {
                let Some(i) = waiting
                    .iter()
                    .position(|j| !busy.values().any(|p| *p == j.peer))
                else {
                    break;
                };
                let Some(job) = waiting.remove(i) else { break };
                let peer = job.peer;
                let svc = self.clone();
                let task = running.spawn(async move { svc.sync_job(job).await });
                busy.insert(task.id(), peer);
            }
            tokio::select! {
                job = jobs.recv() => {
                    let Some(job) = job else { break };
                    if let Some(older) = waiting.iter_mut().find(|j| j.peer == job.peer) {
                        *older = job;
                    } else if waiting.len() < SYNC_WAITING {
                        waiting.push_back(job);
                    }
                }
                Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(e) => e.id(),
                    };
                    busy.remove(&id);
                }
            }
        }
    }

    async fn sync_job(&self, job: SyncJob) {
        match self.sync_from(job.peer, &job.target).await {
            Ok(()) => {
                if let Some(block) = job.block {
                    let _ = self.receive(block, "gossip").await;
                }
            }
            Err(e) => {
                tracing::warn!(peer = %job.peer, error = %e, "sync failed");
            }
        }
    }

    /// Fetches `target` and its unknown ancestors from `peer`, then lets fork choice decide.
    async fn sync_from(&self, peer: PeerId, target: &TipsetKey) -> NodeResult<()> {
        let target_hash = target.hash();
        let mut want = {
            let t = target_hash;
            let k = target.clone();
            self.with_core(move |c| match c.tipset(&t) {
                Some(_) => c.missing_ancestor(&t),
                None => Some(k),
            })
            .await?
        };
        while let Some(key) = want {
            let req = SyncRequest::Ancestors {
                head: key.clone(),
                count: MAX_SYNC_TIPSETS,
            };
            let bytes = match self.inner.net.request(peer, wire::encode(&req)).await {
                Ok(bytes) => bytes,
                Err(e) => {
                    // A response over the bound every node keeps is one no honest node sends;
                    // one that never came costs the peer a little.
                    let fault = match e {
                        net::NetError::ResponseTooLarge { .. } => {
                            Some(Misbehaviour::BadSyncResponse)
                        }
                        net::NetError::Timeout { .. } => Some(Misbehaviour::Unresponsive),
                        _ => None,
                    };
                    if let Some(fault) = fault {
                        let _ = self.inner.net.report(peer, fault).await;
                    }
                    return Err(NodeError::Net(e.to_string()));
                }
            };
            let tipsets = match wire::decode::<SyncResponse>(&bytes, "sync response") {
                Ok(SyncResponse::Tipsets(t)) if !t.is_empty() => t,
                Ok(SyncResponse::Tipsets(_)) | Ok(SyncResponse::Error(_)) => {
                    let _ = self
                        .inner
                        .net
                        .report(peer, Misbehaviour::Unresponsive)
                        .await;
                    return Err(NodeError::Net(format!(
                        "{peer} does not have the tipsets asked for"
                    )));
                }
                Ok(SyncResponse::Status(_)) | Err(_) => {
                    let _ = self.inner.net.report(peer, Misbehaviour::Malformed).await;
                    return Err(NodeError::Net(format!(
                        "{peer} sent a malformed sync response"
                    )));
                }
            };
            let first_ok = tipsets.first().is_some_and(|t| {
                TipsetKey::new(t.blocks.iter().map(FullBlock::id).collect()) == key
            });
            if !first_ok {
                let _ = self
                    .inner
                    .net
                    .report(peer, Misbehaviour::BadSyncResponse)
                    .await;
                return Err(NodeError::Net(format!(
                    "{peer} answered with other tipsets"
                )));
            }
            let n = tipsets.len() as u64;
            let imported = self
                .with_core(move |c| c.import(tipsets, unix_now()))
                .await?;
            if let Err(e) = imported {
                let _ = self
                    .inner
                    .net
                    .report(peer, Misbehaviour::BadSyncResponse)
                    .await;
                return Err(e);
            }
            self.inner.metrics.sync_tipsets.inc_by(n);
            want = self
                .with_core(move |c| c.missing_ancestor(&target_hash))
                .await?;
        }
        let before = self.with_core(|c| c.head_hash()).await?;
        let result = self.with_core(move |c| c.consider(target_hash)).await?;
        match result {
            Ok(Some(change)) => {
                if !change.reverted.is_empty() {
                    self.inner.metrics.reorgs.inc();
                }
                tracing::info!(
                    applied = change.applied.len(),
                    reverted = change.reverted.len(),
                    "synced"
                );
            }
            Ok(None) => {}
            Err(e) => {
                // Only a branch found invalid is the peer's fault; a local failure (the store, a
                // revert out of reach) is not.
                if matches!(
                    e,
                    NodeError::Chain(lode_chain::ChainError::InvalidBlock { .. })
                        | NodeError::InvalidBlock { .. }
                ) {
                    let _ = self
                        .inner
                        .net
                        .report(peer, Misbehaviour::InvalidBlock)
                        .await;
                }
                self.after_head_change(before).await;
                return Err(e);
            }
        }
        self.after_head_change(before).await;
        Ok(())
    }

    /// This node's status.
    pub async fn status(&self) -> NodeResult<Status> {
        self.with_core(|c| c.status()).await
    }
}
