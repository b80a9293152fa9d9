//! The deal market, hosted by `lode provider run` (`[market]` of `config.toml`): the market's
//! deal service ([`lode_market::provider::service::DealProvider`]) on its own libp2p host, and
//! the HTTP retrieval server, over this daemon's sealing pipeline and message sender.
//!
//! The market crate states what it needs as traits; this module answers them with the daemon's
//! parts:
//!
//! - [`PipelineSealing`]: [`SealingApi`] over [`Pipeline::add_piece`] and the pipeline's deal
//!   pieces; its free capacity is `[market] max_sealing_deal_sectors` sectors' worth of deal
//!   bytes less the deal bytes already in sectors that are not proving yet;
//! - [`WorkerPublisher`]: [`DealPublisher`] through the poster's [`Messenger`], so that
//!   `PublishDeals` takes its nonce from the worker's one sequence, never beside a PoSt;
//! - [`PipelinePieces`]: the retrieval server's [`PieceSource`] over the pipeline's
//!   [`PieceReader`](crate::pipeline::reader::PieceReader) (a piece of a proving sector, read
//!   from its unsealed copy, unsealed on demand); the server also answers the trustless
//!   gateway's `/ipfs/<cid>` from the block index the deal service keeps of CAR payloads.
//!
//! At every start the daemon compares the miner's peer info on chain with the market host's
//! peer id and addresses (its libp2p addresses, and the retrieval server as
//! `/ip4/<ip>/tcp/<port>/http`) and sends `ChangePeerInfo` when they differ: that is how clients
//! find the provider's market from its actor alone.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use lode_chain::actors::COMPUTE;
use lode_chain::actors::MARKET;
use lode_chain::actors::compute::ComputeMethod;
use lode_chain::actors::market::{ClientDealProposal, DealProposal, MarketMethod};
use lode_chain::actors::miner::{MAX_MULTIADDRS, MinerMethod};
use lode_chain::message::{Method, SignedMessage};
use lode_chain::types::{ActorId, DealId, TokenAmount};
use lode_market::deal::StorageAsk;
use lode_market::deal::policy::{ChainView, DealPolicyConfig};
use lode_market::jobs::http::JobFiles;
use lode_market::jobs::modules::ModuleStore;
use lode_market::jobs::{ExecutorRunner, JobChain, JobService, JobSettings};
use lode_market::provider::records::DealRecords;
use lode_market::provider::service::{DealProvider, ProviderConfig};
use lode_market::provider::{DealPublisher, PieceProgress, RecordMessage, SealingApi};
use lode_market::retrieval::{PieceReader as RetrievalReader, PieceSource, RetrievalConfig};
use lode_market::transfer::Scratch;
use lode_market::transfer::http::TransferConfig;
use lode_market::{MarketError, MarketResult};
use lode_node::rpc::types::{DealView, JobFilter, JobView, MessageLookupInfo};
use lode_proofs::cid::PieceCid;
use serde::{Deserialize, Serialize};

use crate::api::NodeApi;
use crate::error::{ProviderError, ProviderResult};
use crate::pipeline::deals::{DealPiece, PieceState};
use crate::pipeline::reader::{PieceLocation, PieceReader};
use crate::pipeline::runner::Pipeline;
use crate::pipeline::state::SectorState;
use crate::poster::Messenger;

/// `[market]` of a provider's `config.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarketSettings {
    /// Whether the market runs (it needs the sealing pipeline).
    pub enabled: bool,
    /// The market host's libp2p listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Addresses announced on chain instead of the bound ones (a public address behind NAT, a
    /// DNS name); each may end in `/http` for the retrieval server. Empty: the bound libp2p
    /// addresses and the retrieval server's, with an unspecified IP (`0.0.0.0`) announced as
    /// `127.0.0.1`.
    pub announce: Vec<Multiaddr>,
    /// The market host's libp2p key (relative to the provider's directory; created at the
    /// first start): the peer id clients dial.
    pub key: PathBuf,
    /// The deal records' database (relative to the provider's directory).
    pub db: PathBuf,
    /// Where deal data is received before it is handed to sealing (relative to the provider's
    /// directory).
    pub scratch: PathBuf,
    /// The storage ask.
    pub ask: AskSettings,
    /// Which deals are taken (`[market.policy]`).
    pub policy: DealPolicyConfig,
    /// How deal data is fetched (`[market.transfer]`).
    pub transfer: TransferConfig,
    /// The HTTP retrieval server (`[market.retrieval]`).
    pub retrieval: RetrievalConfig,
    /// The longest a transferred deal waits for others to share its publication message.
    pub publish_wait_epochs: u64,
    /// The most deals one publication message carries.
    pub max_publish_batch: usize,
    /// Epochs after which a publication message not found on chain is pushed again.
    pub republish_after_epochs: u64,
    /// Sectors' worth of deal data that may be in the pipeline (not proving yet) at once: new
    /// deals are refused beyond it.
    pub max_sealing_deal_sectors: u64,
    /// Every this many epochs the provider settles its active deals (`SettleDeals`): the chain
    /// pays a deal's epochs lazily, and settling moves them from the client's escrow to the
    /// provider's (0: never; the chain still settles at a deal's end).
    pub settle_every_epochs: u64,
    /// Compute jobs over the provider's pieces (`[market.compute]`).
    pub compute: JobSettings,
}

impl Default for MarketSettings {
    fn default() -> Self {
        MarketSettings {
            enabled: true,
            listen: vec![
                Multiaddr::empty()
                    .with(Protocol::Ip4(Ipv4Addr::LOCALHOST))
                    .with(Protocol::Tcp(0)),
            ],
            announce: Vec::new(),
            key: PathBuf::from("market.key"),
            db: PathBuf::from("market"),
            scratch: PathBuf::from("deal-scratch"),
            ask: AskSettings::default(),
            policy: DealPolicyConfig::default(),
            transfer: TransferConfig::default(),
            retrieval: RetrievalConfig::default(),
            publish_wait_epochs: 10,
            max_publish_batch: 8,
            republish_after_epochs: 20,
            max_sealing_deal_sectors: 16,
            settle_every_epochs: 120,
            compute: JobSettings::default(),
        }
    }
}

/// `[market.ask]`: the provider's storage ask.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AskSettings {
    /// Price per GiB of padded piece per epoch for unverified deals, in atto units (a decimal
    /// string).
    pub price_per_gib_epoch: TokenAmount,
    /// The same for verified deals (DataCap); usually 0.
    pub verified_price_per_gib_epoch: TokenAmount,
    /// The smallest padded piece taken, in bytes.
    pub min_piece_size: u64,
    /// The largest padded piece taken, in bytes (0: the sector size).
    pub max_piece_size: u64,
    /// The longest deal taken, in epochs (0: the chain's maximum).
    pub max_duration: u64,
}

impl Default for AskSettings {
    fn default() -> Self {
        AskSettings {
            price_per_gib_epoch: TokenAmount(100_000_000),
            verified_price_per_gib_epoch: TokenAmount::ZERO,
            min_piece_size: 256,
            max_piece_size: 0,
            max_duration: 0,
        }
    }
}

fn market_err(e: MarketError) -> ProviderError {
    ProviderError::Market(e.to_string())
}

fn sealing_err(e: impl std::fmt::Display) -> MarketError {
    MarketError::Sealing(e.to_string())
}

fn publish_err(e: impl std::fmt::Display) -> MarketError {
    MarketError::Publish(e.to_string())
}

/// [`SealingApi`] over the daemon's pipeline.
#[derive(Debug)]
pub struct PipelineSealing<A: NodeApi> {
    pipeline: Arc<Pipeline<A>>,
    max_sectors: u64,
}

impl<A: NodeApi> PipelineSealing<A> {
    /// Over `pipeline`, with room for `max_sectors` sectors of deals not proving yet.
    pub fn new(pipeline: Arc<Pipeline<A>>, max_sectors: u64) -> Self {
        PipelineSealing {
            pipeline,
            max_sectors,
        }
    }
}

fn progress_of(state: PieceState, sector: Option<u64>, reason: Option<String>) -> PieceProgress {
    PieceProgress {
        sector,
        state: state.as_str().to_string(),
        failed: (state == PieceState::Failed).then(|| reason.unwrap_or_else(|| "failed".into())),
    }
}

impl<A: NodeApi> SealingApi for PipelineSealing<A> {
    async fn add_piece(
        &self,
        deal_id: DealId,
        proposal: &DealProposal,
        payload: &Path,
        payload_size: u64,
    ) -> MarketResult<PieceProgress> {
        let info = self
            .pipeline
            .add_piece(DealPiece {
                deal_id,
                proposal: proposal.clone(),
                payload: payload.to_path_buf(),
                payload_size,
            })
            .await
            .map_err(sealing_err)?;
        Ok(progress_of(info.state, info.sector, info.reason))
    }

    async fn piece_progress(&self, deal_id: DealId) -> MarketResult<Option<PieceProgress>> {
        let pieces = self.pipeline.deal_pieces().map_err(sealing_err)?;
        Ok(pieces
            .into_iter()
            .find(|p| p.deal_id == deal_id)
            .map(|p| progress_of(p.state, p.sector, p.reason)))
    }

    async fn free_capacity(&self) -> MarketResult<u64> {
        let size = self.pipeline.config().size.bytes();
        let sectors: HashMap<u64, SectorState> = self
            .pipeline
            .store()
            .list()
            .map_err(sealing_err)?
            .into_iter()
            .map(|r| (r.number, r.state()))
            .collect();
        let busy: u64 = self
            .pipeline
            .store()
            .deal_pieces()
            .map_err(sealing_err)?
            .iter()
            .filter(|p| p.is_live())
            .filter(|p| {
                p.sector
                    .and_then(|n| sectors.get(&n))
                    .is_none_or(|s| *s != SectorState::Proving)
            })
            .map(|p| p.piece_size())
            .fold(0u64, u64::saturating_add);
        Ok(self.max_sectors.saturating_mul(size).saturating_sub(busy))
    }
}

/// [`DealPublisher`] through the worker's message sender.
#[derive(Debug)]
pub struct WorkerPublisher<A: NodeApi> {
    api: Arc<A>,
    messenger: Arc<Messenger>,
    worker: ActorId,
}

impl<A: NodeApi> WorkerPublisher<A> {
    /// Publishes from the `worker` account through `messenger`.
    pub fn new(api: Arc<A>, messenger: Arc<Messenger>, worker: ActorId) -> Self {
        WorkerPublisher {
            api,
            messenger,
            worker,
        }
    }
}

impl<A: NodeApi> WorkerPublisher<A> {
    /// Adds to the miner's market escrow, from the worker, what the provider collateral of
    /// `deals` needs beyond what is available there (the message goes before the publication,
    /// one nonce earlier: it is executed first).
    async fn top_up(&self, deals: &[ClientDealProposal]) -> MarketResult<()> {
        let need = deals
            .iter()
            .map(|d| d.proposal.provider_collateral)
            .fold(TokenAmount::ZERO, |a, b| {
                TokenAmount(a.0.saturating_add(b.0))
            });
        if need == TokenAmount::ZERO {
            return Ok(());
        }
        let miner = deals.first().map_or(self.worker, |d| d.proposal.provider);
        let escrow = self.api.market_escrow(miner).await.map_err(publish_err)?;
        let short = need.saturating_sub(escrow.available);
        if short == TokenAmount::ZERO {
            return Ok(());
        }
        let id = self
            .messenger
            .send_to_recorded(
                self.api.as_ref(),
                self.worker,
                MARKET,
                short,
                Method::Market(MarketMethod::AddBalance {
                    owner: lode_chain::types::Address::Id(miner),
                }),
                0,
                |_| Ok(()),
            )
            .await
            .map_err(publish_err)?;
        tracing::info!(%miner, amount = %short, message = %hex::encode(id), "provider collateral added to the market escrow from the worker");
        Ok(())
    }
}

impl<A: NodeApi> DealPublisher for WorkerPublisher<A> {
    async fn publish(
        &self,
        deals: Vec<ClientDealProposal>,
        record: RecordMessage,
    ) -> MarketResult<[u8; 32]> {
        let n = deals.len();
        self.top_up(&deals).await?;
        self.messenger
            .send_to_recorded(
                self.api.as_ref(),
                self.worker,
                MARKET,
                TokenAmount::ZERO,
                Method::Market(MarketMethod::PublishDeals(deals)),
                n,
                |signed| record(signed).map_err(|e| ProviderError::Market(e.to_string())),
            )
            .await
            .map_err(publish_err)
    }

    async fn push_again(&self, message: SignedMessage) -> MarketResult<()> {
        self.messenger
            .push_again(self.api.as_ref(), message)
            .await
            .map(|_| ())
            .map_err(publish_err)
    }

    async fn search(&self, id: [u8; 32]) -> MarketResult<Option<MessageLookupInfo>> {
        self.api.search_message(id).await.map_err(publish_err)
    }

    async fn nonce_passed(&self, message: &SignedMessage) -> MarketResult<bool> {
        let nonce = self
            .api
            .chain_nonce(message.message.from)
            .await
            .map_err(publish_err)?;
        Ok(nonce > message.message.nonce)
    }
}

fn jobs_err(e: impl std::fmt::Display) -> MarketError {
    MarketError::Config(format!("compute jobs: {e}"))
}

/// The job service's chain: the node's view of jobs and deals, and the worker's messages to the
/// compute actor (collateral comes from the worker's balance and goes back to it).
#[derive(Debug)]
pub struct WorkerJobs<A: NodeApi> {
    api: Arc<A>,
    messenger: Arc<Messenger>,
    worker: ActorId,
}

impl<A: NodeApi> WorkerJobs<A> {
    /// The chain of the job service of the miner `worker` works for.
    pub fn new(api: Arc<A>, messenger: Arc<Messenger>, worker: ActorId) -> Self {
        WorkerJobs {
            api,
            messenger,
            worker,
        }
    }
}

impl<A: NodeApi> JobChain for WorkerJobs<A> {
    async fn head(&self) -> MarketResult<lode_chain::types::Epoch> {
        self.api
            .chain_head()
            .await
            .map(|h| h.epoch)
            .map_err(jobs_err)
    }

    async fn open_jobs(&self, from: u64) -> MarketResult<Vec<JobView>> {
        let filter = JobFilter {
            open_only: true,
            ..JobFilter::default()
        };
        self.api.compute_jobs(filter, from).await.map_err(jobs_err)
    }

    async fn job(&self, id: u64) -> MarketResult<Option<JobView>> {
        self.api.compute_job(id).await.map_err(jobs_err)
    }

    async fn provider_deals(&self, provider: ActorId) -> MarketResult<Vec<DealView>> {
        self.api.provider_deals(provider).await.map_err(jobs_err)
    }

    async fn send(
        &self,
        method: ComputeMethod,
        value: TokenAmount,
        checks: usize,
        record: RecordMessage,
    ) -> MarketResult<[u8; 32]> {
        self.messenger
            .send_to_recorded(
                self.api.as_ref(),
                self.worker,
                COMPUTE,
                value,
                Method::Compute(method),
                checks,
                |signed| record(signed).map_err(|e| ProviderError::Market(e.to_string())),
            )
            .await
            .map_err(jobs_err)
    }

    async fn push_again(&self, message: SignedMessage) -> MarketResult<()> {
        self.messenger
            .push_again(self.api.as_ref(), message)
            .await
            .map(|_| ())
            .map_err(jobs_err)
    }

    async fn search(&self, id: [u8; 32]) -> MarketResult<Option<MessageLookupInfo>> {
        self.api.search_message(id).await.map_err(jobs_err)
    }
}

/// The retrieval server's pieces: those of proving sectors in the pipeline.
#[derive(Debug)]
pub struct PipelinePieces {
    reader: Arc<PieceReader>,
}

impl PipelinePieces {
    /// Over the pipeline's piece reader.
    pub fn new(reader: PieceReader) -> Self {
        PipelinePieces {
            reader: Arc::new(reader),
        }
    }
}

struct LocatedPiece {
    reader: Arc<PieceReader>,
    location: PieceLocation,
}

impl RetrievalReader for LocatedPiece {
    fn len(&self) -> u64 {
        self.location.payload_size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let len = self.location.payload_size;
        if offset >= len {
            return Ok(0);
        }
        let want = u64::try_from(buf.len())
            .unwrap_or(u64::MAX)
            .min(len.saturating_sub(offset));
        let Some(out) = usize::try_from(want).ok().and_then(|w| buf.get_mut(..w)) else {
            return Ok(0);
        };
        let mut cursor = std::io::Cursor::new(out);
        self.reader
            .read(&self.location, offset, want, &mut cursor)
            .map_err(std::io::Error::other)?;
        usize::try_from(cursor.position())
            .map_err(|_| std::io::Error::other("a read longer than memory"))
    }
}

impl PieceSource for PipelinePieces {
    fn open(&self, piece: &PieceCid) -> MarketResult<Option<Box<dyn RetrievalReader>>> {
        let Some(location) = self.reader.locate(piece).map_err(sealing_err)? else {
            return Ok(None);
        };
        // Unseal first, if the sector has no unsealed copy: the response then starts only
        // once there is something to send.
        self.reader
            .ensure_unsealed(location.sector)
            .map_err(sealing_err)?;
        Ok(Some(Box::new(LocatedPiece {
            reader: self.reader.clone(),
            location,
        })))
    }
}

/// The most deals one `SettleDeals` message carries.
pub const MAX_SETTLE_BATCH: usize = 256;

/// Settles the active deals of `records` every `every` epochs until `stop` fires.
async fn settle_loop<A: NodeApi>(
    api: Arc<A>,
    messenger: Arc<Messenger>,
    worker: ActorId,
    records: DealRecords,
    every: u64,
    epoch: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut last: Option<u64> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(epoch) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
        let Ok(head) = api.chain_head().await.map(|h| h.epoch) else {
            continue;
        };
        if last.is_some_and(|l| head < l.saturating_add(every)) {
            continue;
        }
        let ids: Vec<DealId> = match records.list() {
            Ok(list) => list
                .iter()
                .filter(|d| d.status == lode_market::provider::records::DealStatus::Active)
                .filter_map(|d| d.deal_id)
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "deal records for settlement");
                continue;
            }
        };
        last = Some(head);
        for batch in ids.chunks(MAX_SETTLE_BATCH) {
            let method = Method::Market(MarketMethod::SettleDeals(batch.to_vec()));
            match messenger
                .send_to_recorded(
                    api.as_ref(),
                    worker,
                    MARKET,
                    TokenAmount::ZERO,
                    method,
                    batch.len(),
                    |_| Ok(()),
                )
                .await
            {
                Ok(id) => {
                    tracing::info!(deals = batch.len(), head, message = %hex::encode(id), "active deals settled");
                }
                Err(e) => tracing::warn!(error = %e, "settling deals failed; will retry"),
            }
        }
    }
}

/// What clients need to reach the market: announced on chain with `ChangePeerInfo`.
pub fn announced_addrs(
    settings: &MarketSettings,
    bound: &[Multiaddr],
    retrieval: SocketAddr,
) -> Vec<Multiaddr> {
    if !settings.announce.is_empty() {
        return settings
            .announce
            .iter()
            .take(MAX_MULTIADDRS)
            .cloned()
            .collect();
    }
    let loopback_if_unspecified = |a: &Multiaddr| -> Multiaddr {
        a.iter()
            .map(|p| match p {
                Protocol::Ip4(ip) if ip.is_unspecified() => Protocol::Ip4(Ipv4Addr::LOCALHOST),
                Protocol::Ip6(ip) if ip.is_unspecified() => {
                    Protocol::Ip6(std::net::Ipv6Addr::LOCALHOST)
                }
                other => other,
            })
            .collect()
    };
    let ip = match retrieval.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => Protocol::Ip4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(ip) => Protocol::Ip4(ip),
        IpAddr::V6(ip) if ip.is_unspecified() => Protocol::Ip6(std::net::Ipv6Addr::LOCALHOST),
        IpAddr::V6(ip) => Protocol::Ip6(ip),
    };
    let http = Multiaddr::empty()
        .with(ip)
        .with(Protocol::Tcp(retrieval.port()))
        .with(Protocol::Http);
    let mut out: Vec<Multiaddr> = bound.iter().map(loopback_if_unspecified).collect();
    out.dedup();
    out.truncate(MAX_MULTIADDRS.saturating_sub(1));
    out.push(http);
    out
}

/// Sends `ChangePeerInfo` unless the chain has `peer` and `addrs` already; returns whether it
/// sent one.
///
/// # Errors
/// [`ProviderError::Node`] when the node cannot be asked or refuses the message.
pub async fn announce<A: NodeApi>(
    api: &A,
    messenger: &Messenger,
    actor: ActorId,
    worker: ActorId,
    peer: libp2p::PeerId,
    addrs: &[Multiaddr],
) -> ProviderResult<bool> {
    let info = api.miner_info(actor).await?;
    let want: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    if info.peer_id.as_deref() == Some(peer.to_string().as_str()) && info.multiaddrs == want {
        return Ok(false);
    }
    let method = Method::Miner(MinerMethod::ChangePeerInfo {
        peer_id: peer.to_bytes(),
        multiaddrs: addrs.iter().map(|a| a.to_vec()).collect(),
    });
    let id = messenger.send(api, worker, method, 0, 0).await?;
    tracing::info!(%peer, addrs = ?want, message = %hex::encode(id), "market peer info announced on chain");
    Ok(true)
}

fn resolve(dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

/// The market while it runs.
#[derive(Debug)]
pub struct RunningMarket {
    /// The market host's peer id.
    pub peer_id: libp2p::PeerId,
    /// What was announced (libp2p addresses, then the retrieval server's).
    pub addrs: Vec<Multiaddr>,
    /// The retrieval server's base URL.
    pub retrieval_url: String,
    /// The deal records (the API lists them).
    pub records: DealRecords,
    host: lode_market::net::MarketHost,
    retrieval: lode_market::retrieval::RetrievalServer,
    service: tokio::task::JoinHandle<()>,
    jobs: tokio::task::JoinHandle<()>,
    settle: Option<tokio::task::JoinHandle<()>>,
}

impl RunningMarket {
    /// Stops the deal service (its transfers stop, their progress stays on disk), the host and
    /// the retrieval server.
    pub async fn stop(self) {
        let _ = self.service.await;
        let _ = self.jobs.await;
        if let Some(s) = self.settle {
            let _ = s.await;
        }
        let _ = self.host.shutdown().await;
        self.retrieval.stop().await;
    }
}

/// What [`start`] needs from the daemon.
#[derive(Debug)]
pub struct MarketParts<A: NodeApi, V: ChainView> {
    /// The provider's directory.
    pub dir: PathBuf,
    /// The miner actor.
    pub actor: ActorId,
    /// The worker account.
    pub worker: ActorId,
    /// The worker key (signs asks and deal responses).
    pub worker_key: lode_chain::crypto::SecretKey,
    /// The network's name.
    pub network: String,
    /// How the node answers (sending messages, reading the chain).
    pub api: Arc<A>,
    /// The chain as the deal policy reads it.
    pub view: V,
    /// The worker's message sender.
    pub messenger: Arc<Messenger>,
    /// The sealing pipeline.
    pub pipeline: Arc<Pipeline<A>>,
    /// The epoch's length (the service ticks twice an epoch).
    pub epoch: Duration,
    /// The chain's longest deal, for an ask without `max_duration`.
    pub max_deal_duration: u64,
    /// The market's records in the cluster's database (a provider in a cluster); `None`: in the
    /// embedded database, `[market] db` of the provider's directory.
    pub records: Option<lode_market::provider::records::MarketRecords>,
}

/// Starts the market: opens the deal records, starts the retrieval server and the market host
/// (the deal service answering on it), announces them on chain, and runs the service's driver
/// until `stop` fires.
///
/// # Errors
/// [`ProviderError::Market`] when the records, the key or an address cannot be opened or bound.
pub async fn start<A: NodeApi, V: ChainView>(
    settings: &MarketSettings,
    parts: MarketParts<A, V>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> ProviderResult<RunningMarket> {
    let dir = &parts.dir;
    let size = parts.pipeline.config().size.bytes();
    let records = match parts.records {
        Some(shared) => DealRecords::new(shared),
        None => DealRecords::open(resolve(dir, &settings.db)).map_err(market_err)?,
    };
    let scratch = Scratch::open(resolve(dir, &settings.scratch)).map_err(market_err)?;
    let keypair = lode_node::net::load_or_create_keypair(&resolve(dir, &settings.key))
        .map_err(|e| ProviderError::Market(e.to_string()))?;
    let mut config = ProviderConfig::new(parts.actor, parts.network.clone(), size);
    config.policy = settings.policy.clone();
    // A deal must leave the pipeline the time it needs to seal and prove its sector before the
    // deal's start: one starting sooner is refused at once, with the reason, rather than lost.
    let needs = parts.pipeline.config().deal_start_margin_epochs;
    if config.policy.start_epoch_margin < needs {
        config.policy.start_epoch_margin = needs;
    }
    config.transfer = settings.transfer.clone();
    config.publish_wait_epochs = settings.publish_wait_epochs;
    config.max_publish_batch = settings.max_publish_batch.max(1);
    config.republish_after_epochs = settings.republish_after_epochs;
    let service = Arc::new(DealProvider::new(
        config,
        parts.worker_key,
        parts.view,
        WorkerPublisher::new(parts.api.clone(), parts.messenger.clone(), parts.worker),
        PipelineSealing::new(parts.pipeline.clone(), settings.max_sealing_deal_sectors),
        records.clone(),
        scratch,
    ));
    let a = &settings.ask;
    service.set_ask(StorageAsk {
        miner: parts.actor,
        price_per_gib_epoch: a.price_per_gib_epoch,
        verified_price_per_gib_epoch: a.verified_price_per_gib_epoch,
        min_piece_size: a.min_piece_size,
        max_piece_size: if a.max_piece_size == 0 {
            size
        } else {
            a.max_piece_size.min(size)
        },
        max_duration: if a.max_duration == 0 {
            parts.max_deal_duration
        } else {
            a.max_duration
        },
        timestamp: 0,
        seq_no: lode_node::genesis::unix_now(),
    });
    let pieces: Arc<dyn PieceSource> = Arc::new(PipelinePieces::new(parts.pipeline.piece_reader()));
    let index = records.block_index();
    let jobs_dir = resolve(dir, &settings.compute.dir);
    let modules = ModuleStore::open(jobs_dir.join("modules"), settings.compute.max_module_bytes)
        .map_err(market_err)?;
    let jobs = Arc::new(JobService::new(
        parts.actor,
        settings.compute.clone(),
        jobs_dir.clone(),
        WorkerJobs::new(parts.api.clone(), parts.messenger.clone(), parts.worker),
        Arc::new(ExecutorRunner::new().map_err(market_err)?),
        pieces.clone(),
        modules.clone(),
        records.job_records(),
    ));
    let routes = lode_market::jobs::http::routes(JobFiles {
        modules,
        outputs: jobs.outputs_dir(),
    });
    let retrieval =
        lode_market::retrieval::serve_with_routes(&settings.retrieval, pieces, index, routes)
            .await
            .map_err(market_err)?;
    let host = lode_market::net::MarketHost::serve(
        lode_market::net::HostConfig::new(keypair, settings.listen.clone()),
        service.clone(),
    )
    .await
    .map_err(market_err)?;
    let bound = host.listen_addrs().await.map_err(market_err)?;
    let addrs = announced_addrs(settings, &bound, retrieval.addr());
    let peer_id = host.peer_id();
    if let Err(e) = announce(
        parts.api.as_ref(),
        &parts.messenger,
        parts.actor,
        parts.worker,
        peer_id,
        &addrs,
    )
    .await
    {
        // Clients that were given the addresses can still deal; the next start tries again.
        tracing::warn!(error = %e, "the market's peer info could not be announced on chain");
    }
    let tick = parts
        .epoch
        .checked_div(2)
        .unwrap_or(parts.epoch)
        .max(Duration::from_millis(200));
    let driver = tokio::spawn(service.run(tick, stop.clone()));
    let jobs_driver = tokio::spawn(jobs.clone().run(tick, stop.clone()));
    let settle = (settings.settle_every_epochs > 0).then(|| {
        tokio::spawn(settle_loop(
            parts.api.clone(),
            parts.messenger.clone(),
            parts.worker,
            records.clone(),
            settings.settle_every_epochs,
            parts.epoch,
            stop,
        ))
    });
    tracing::info!(%peer_id, addrs = ?addrs, retrieval = %retrieval.url(), "market started");
    Ok(RunningMarket {
        peer_id,
        addrs,
        retrieval_url: retrieval.url(),
        records,
        host,
        retrieval,
        service: driver,
        jobs: jobs_driver,
        settle,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_retrieval_server_is_announced_after_the_libp2p_addresses() {
        let settings = MarketSettings::default();
        let bound: Vec<Multiaddr> = vec![
            "/ip4/0.0.0.0/tcp/4001".parse().unwrap(),
            "/ip4/10.0.0.2/tcp/4001".parse().unwrap(),
        ];
        let addrs = announced_addrs(&settings, &bound, "0.0.0.0:8080".parse().unwrap());
        let text: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "/ip4/127.0.0.1/tcp/4001",
                "/ip4/10.0.0.2/tcp/4001",
                "/ip4/127.0.0.1/tcp/8080/http"
            ]
        );
        // Configured announcements replace them.
        let set = MarketSettings {
            announce: vec!["/dns/sp.example/tcp/443/http".parse().unwrap()],
            ..MarketSettings::default()
        };
        let addrs = announced_addrs(&set, &bound, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(addrs, set.announce);
        // Never more than the chain takes.
        let many: Vec<Multiaddr> = (0..40u16)
            .map(|i| format!("/ip4/10.0.0.1/tcp/{}", 1000 + i).parse().unwrap())
            .collect();
        assert_eq!(
            announced_addrs(&settings, &many, "127.0.0.1:1".parse().unwrap()).len(),
            MAX_MULTIADDRS
        );
    }

    #[test]
    fn the_market_table_is_optional_and_strict() {
        let plain: MarketSettings = toml::from_str("").unwrap();
        assert_eq!(plain, MarketSettings::default());
        let set: MarketSettings = toml::from_str(
            "max_sealing_deal_sectors = 2\n[ask]\nprice_per_gib_epoch = \"500\"\n[transfer]\nallow_private_addresses = true\n[policy]\nverified_only = true\n",
        )
        .unwrap();
        assert_eq!(set.max_sealing_deal_sectors, 2);
        assert_eq!(set.ask.price_per_gib_epoch, TokenAmount(500));
        assert!(set.transfer.allow_private_addresses && set.policy.verified_only);
        let text = toml::to_string_pretty(&set).unwrap();
        assert_eq!(toml::from_str::<MarketSettings>(&text).unwrap(), set);
        assert!(
            toml::from_str::<MarketSettings>("listen_addr = []")
                .unwrap_err()
                .to_string()
                .contains("listen_addr")
        );
    }
}
