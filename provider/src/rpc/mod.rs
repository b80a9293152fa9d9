//! The storage provider's own JSON-RPC 2.0 API: what it holds, how its deadlines and elections
//! go, and declarations on the operator's behalf.
//!
//! It is served like the node's API ([`lode_node::rpc::serve_module`]: HTTP `POST` and
//! WebSocket on one address, the same bounds, the same token rule), on the address `api` of the
//! provider's `config.toml` (loopback by default), with its token in `<provider dir>/token`
//! (`0600`). `endpoints.json` records the bound URL and the token file. [`client::ProviderClient`]
//! calls every method below with the same result types.
//!
//! # Methods
//!
//! Parameters are positional (a JSON array); actors are `l0<id>` addresses, hashes lowercase
//! hex, epochs and counts numbers. *open*: anyone who can reach the address may call it.
//! *protected*: it needs `Authorization: Bearer <token>`; without it the request gets
//! **HTTP 401** and nothing of it runs.
//!
//! | method | params | result | access |
//! |---|---|---|---|
//! | `provider_info` | — | [`ProviderInfo`]: actor, owner, worker, sector size, network, the node API it uses, version, API version, start time, sectors in the store, and the node's head (or why the node did not answer) | open |
//! | `provider_sectors` | — | [`ProviderSectors`]: every sector in the sector store or live on chain — its directory, whether it is readable, its chain record from the node's `state_minerSectors` (status, deadline, partition, activation, expiration), whether the operator holds it faulty | open |
//! | `provider_proving` | — | [`ProvingStatus`]: the poster's last view — per deadline holding partitions: index, window (open, close, challenge, fault cutoff), whether it is current, partitions, sectors, faults, recoveries, partitions posted, the poster's state (`waiting`, `proving`, `proved`, `submitted`, `confirmed`), last submission epoch, how the previous window ended (`confirmed`/`missed`), windows missed; totals and the last round's error | open |
//! | `provider_check` | optional deadline index | [`ProvingCheck`]: the proving check, run now at the head, of the live sectors of every deadline (or of the one given): per sector its number, deadline, partition, whether it is faulty on chain, whether it passed (files readable, challenged leaves opening against its `comm_r`) and why not | open |
//! | `provider_mining` | — | [`MiningInfo`]: elections won, blocks produced and refused, Winning PoSt count and mean seconds, Window PoSt partition count and mean seconds, the last election's epoch, the last block (epoch, id, win count), the last refusal, ineligibility, the last error | open |
//! | `provider_pipeline` | — | [`PipelineSectors`]: every sector of the sealing pipeline — state, failures and the last reason, the next retry, ticket epoch, `comm_r`, the pre-commit and prove-commit message ids, its last transitions; or why the pipeline does not run | open |
//! | `provider_tasks` | with history (bool, optional) | [`ProviderTasks`]: the task scheduler's tasks — running, then queued, oldest first, with each one's kind, sector, resources, attempts and times; with `true`, the finished ones kept by the retention policy too | open |
//! | `provider_sectorStatus` | sector number | [`SectorStatus`]: the sector's pipeline record and its store and chain records (`provider_sectors`' row) | open |
//! | `provider_dealPieces` | deal ids (optional array: all when absent) | [`DealPieceInfo`]s: each deal piece the pipeline holds — deal id, piece CID, piece and payload sizes, verified, start and end epochs, sector and padded offset, state (`waiting`, `packed`, `sealing`, `proving`, `failed`) and the reason of a failure | open |
//! | `provider_pieceLocation` | piece CID (text) | [`PieceLocation`] or `null`: a deal storing the piece whose sector is `Proving` — deal id, sector, padded offset and size, payload size, whether an unsealed copy is there (what the retrieval server reads) | open |
//! | `provider_addPiece` | deal id, the deal's proposal (as published: `lode_chain::actors::market::DealProposal`), payload file path (on the provider's machine), payload size | [`DealPieceInfo`]: where the piece went; the pipeline copies the payload (the caller may delete it once this returns), places the piece in a deal sector and seals it; idempotent by deal id. `-32003` for a deal it does not take (another provider's, a piece larger than a sector, a payload longer than the piece holds or not the deal's CommP, a start epoch too close or passed, a deal not on chain) | protected |
//! | `provider_market` | — | [`MarketInfo`]: the hosted market's libp2p peer id, the addresses announced on chain (the retrieval server's ends in `/http`) and the retrieval URL; `-32003` when the market does not run, with why | open |
//! | `provider_deals` | — | the market's deal records ([`lode_market::provider::records::ProviderDeal`]), newest first: UUID, client peer, signed proposal, transfer, status (`accepted`, `transferring`, `transferred`, `publishing`, `published`, `handed_off`, `sealing`, `active`, `expired`, `slashed`, `failed`), deal id, sector, the failure reason | open |
//! | `provider_pledge` | count (1–256) | [`Pledged`]: the numbers of the committed-capacity sectors created; the pipeline seals, pre-commits and prove-commits them | protected |
//! | `provider_removeSector` | sector number | [`PipelineSector`]: the sector moved to `Removing` (its files are deleted, then `Removed`); refused for a sector on chain (terminate it instead) | protected |
//! | `provider_terminateSector` | sector number | [`PipelineSector`]: the sector moved to `Terminating`; the pipeline sends `TerminateSectors` once its deadline is mutable, then `Terminated` (`provider_sectorStatus` gives the message and the fee); refused for a sector not live on chain (remove it instead) or not in the pipeline | protected |
//! | `provider_extendSectors` | sector numbers, new expiration epoch | [`Extended`]: sends `ExtendSectorExpiration` once every sector is checked against the chain's rules (live and active, expiring before the new epoch, within the policy's extension and lifetime bounds) and waits until it is executed: the message id, its epoch, the new and old expirations | protected |
//! | `provider_declareFaults` | sector numbers | [`Declared`]: the message id and each sector's deadline and partition; the sectors stay faulty until declared recovered through this API | protected |
//! | `provider_declareRecoveries` | sector numbers | [`Declared`] | protected |
//!
//! A declaration is checked before anything is sent ([`crate::poster::plan_declaration`]: every
//! sector live, its deadline's fault cutoff ahead, a recovered sector faulty); a sector that fails
//! refuses the whole call with `-32003` and nothing is sent.
//!
//! # Errors
//!
//! The node API's codes ([`lode_node::rpc::codes`]): `-32602` invalid params, `-32003` refused
//! (a declaration the chain would refuse), `-32000` internal (the node failed or could not be
//! reached), `-32001` unauthorised (a protected method on a WebSocket opened without the token).

pub mod client;
pub mod types;

use std::net::SocketAddr;
use std::sync::Arc;

use jsonrpsee::RpcModule;
use jsonrpsee::types::ErrorObjectOwned;
use lode_chain::types::ActorId;
use lode_node::rpc::{RpcConfig, RpcServerHandle, codes};
use lode_proofs::sector::SectorSize;
use tokio::sync::watch;

pub use types::{
    ChainSector, MarketInfo, MiningInfo, PipelineSector, PipelineSectors, Pledged, ProviderInfo,
    ProviderSector, ProviderSectors, ProviderTasks, ProvingCheck, SectorCheck, SectorStatus,
    Termination,
};

use crate::api::NodeApi;
use crate::error::{ProviderError, ProviderResult};
use crate::metrics::ProviderMetrics;
use crate::pipeline::runner::Pipeline;
use crate::pipeline::{DealPiece, DealPieceInfo, Event, PieceLocation, PipelineError};
use crate::poster::{Declaration, Declared, Extended, MAX_EXTEND, PosterHandle};
use crate::prover::SectorStore;
use crate::status::{MiningEvents, ProvingStatus};

/// The API's version (`provider_info`): raised when a method changes incompatibly.
pub const API_VERSION: u32 = 1;

/// Methods anyone may call.
pub const OPEN_METHODS: &[&str] = &[
    "provider_info",
    "provider_sectors",
    "provider_proving",
    "provider_mining",
    "provider_pipeline",
    "provider_sectorStatus",
    "provider_check",
    "provider_tasks",
    "provider_dealPieces",
    "provider_pieceLocation",
    "provider_market",
    "provider_deals",
];

/// Methods that need the token.
pub const PROTECTED_METHODS: &[&str] = &[
    "provider_declareFaults",
    "provider_declareRecoveries",
    "provider_pledge",
    "provider_removeSector",
    "provider_terminateSector",
    "provider_extendSectors",
    "provider_addPiece",
];

/// The most sectors one `provider_pledge` creates.
pub const MAX_PLEDGE: u64 = 256;

/// What the provider knows about itself from its start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The miner actor.
    pub actor: ActorId,
    /// Its owner.
    pub owner: ActorId,
    /// Its worker.
    pub worker: ActorId,
    /// Its sector size.
    pub sector_size: SectorSize,
    /// The network's name.
    pub network: String,
    /// The node API the provider uses.
    pub node_api: String,
    /// Unix time the provider started.
    pub started_at: u64,
}

/// What every method runs on: the node (through [`NodeApi`]), the sector store, and what the
/// daemon's loops publish.
pub struct ProviderRpc<A: NodeApi> {
    /// The node.
    pub api: Arc<A>,
    /// Who the provider is.
    pub identity: Identity,
    /// The sector store.
    pub store: SectorStore,
    /// The poster's status and declarations.
    pub poster: PosterHandle,
    /// The mining loop's last events.
    pub mining: watch::Receiver<MiningEvents>,
    /// The provider's metrics (the counters `provider_mining` reports).
    pub metrics: ProviderMetrics,
    /// The sealing pipeline, or why it does not run.
    pub pipeline: Result<Arc<Pipeline<A>>, String>,
    /// The hosted market, or why it does not run.
    pub market: Result<MarketView, String>,
}

/// The hosted market as the API shows it.
#[derive(Clone, Debug)]
pub struct MarketView {
    /// Its peer id and addresses.
    pub info: MarketInfo,
    /// Its deal records.
    pub records: lode_market::provider::records::DealRecords,
}

impl<A: NodeApi> Clone for ProviderRpc<A> {
    fn clone(&self) -> Self {
        ProviderRpc {
            api: self.api.clone(),
            identity: self.identity.clone(),
            store: self.store.clone(),
            poster: self.poster.clone(),
            mining: self.mining.clone(),
            metrics: self.metrics.clone(),
            pipeline: self.pipeline.clone(),
            market: self.market.clone(),
        }
    }
}

impl<A: NodeApi> std::fmt::Debug for ProviderRpc<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderRpc")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// Serves the API for `ctx` on `addr` with the default bounds; returns the bound address (a port
/// 0 resolved) and the server's handle (dropping it stops the server).
///
/// # Errors
/// [`ProviderError::Serve`] when `addr` cannot be bound.
pub async fn serve<A: NodeApi>(
    addr: SocketAddr,
    ctx: ProviderRpc<A>,
    token: String,
) -> ProviderResult<(SocketAddr, RpcServerHandle)> {
    let module = module(ctx).map_err(|e| ProviderError::Serve(e.to_string()))?;
    lode_node::rpc::serve_module(addr, module, OPEN_METHODS, token, RpcConfig::default())
        .await
        .map_err(|e| ProviderError::Serve(e.to_string()))
}

fn error(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned::<()>(code, message.into(), None)
}

/// The JSON-RPC error for a provider error.
fn provider_error(e: ProviderError) -> ErrorObjectOwned {
    let code = match &e {
        ProviderError::Declaration(_)
        | ProviderError::Refused(_)
        | ProviderError::PieceRange { .. } => codes::REFUSED,
        _ => codes::INTERNAL,
    };
    error(code, e.to_string())
}

/// The API's methods on `ctx` (what [`serve`] serves).
///
/// # Errors
/// A method registered twice (a bug).
pub fn module<A: NodeApi>(
    ctx: ProviderRpc<A>,
) -> Result<RpcModule<ProviderRpc<A>>, jsonrpsee::core::RegisterMethodError> {
    let mut m = RpcModule::new(ctx);
    m.register_async_method("provider_info", |_, ctx, _| async move {
        Ok::<_, ErrorObjectOwned>(info(&ctx).await)
    })?;
    m.register_async_method("provider_sectors", |_, ctx, _| async move {
        sectors(&ctx).await.map_err(provider_error)
    })?;
    m.register_method("provider_proving", |_, ctx, _| {
        Ok::<ProvingStatus, ErrorObjectOwned>(ctx.poster.status())
    })?;
    m.register_method("provider_mining", |_, ctx, _| {
        Ok::<MiningInfo, ErrorObjectOwned>(mining(ctx))
    })?;
    m.register_method("provider_pipeline", |_, ctx, _| pipeline(ctx))?;
    m.register_method("provider_tasks", |params, ctx, _| {
        let history: Option<bool> = params.sequence().optional_next()?;
        tasks(ctx, history.unwrap_or(false))
    })?;
    m.register_async_method("provider_sectorStatus", |params, ctx, _| async move {
        let n: u64 = params.one()?;
        sector_status(&ctx, n).await
    })?;
    m.register_async_method("provider_pledge", |params, ctx, _| async move {
        let count: u64 = params.one()?;
        pledge(&ctx, count).await
    })?;
    m.register_method("provider_removeSector", |params, ctx, _| {
        let n: u64 = params.one()?;
        remove(ctx, n)
    })?;
    m.register_async_method("provider_terminateSector", |params, ctx, _| async move {
        let n: u64 = params
            .one()
            .map_err(|e| invalid_param("sector", "a sector number", &e))?;
        terminate(&ctx, n).await
    })?;
    m.register_async_method("provider_extendSectors", |params, ctx, _| async move {
        let mut seq = params.sequence();
        let sectors: Vec<u64> = seq
            .next()
            .map_err(|e| invalid_param("sectors", "an array of sector numbers", &e))?;
        let expiration: u64 = seq
            .next()
            .map_err(|e| invalid_param("expiration", "the new expiration epoch", &e))?;
        extend(&ctx, &sectors, expiration).await
    })?;
    m.register_async_method("provider_addPiece", |params, ctx, _| async move {
        let mut seq = params.sequence();
        let deal_id: u64 = seq
            .next()
            .map_err(|e| invalid_param("deal_id", "the deal's id", &e))?;
        let proposal = seq
            .next()
            .map_err(|e| invalid_param("proposal", "the deal's proposal as published", &e))?;
        let payload: std::path::PathBuf = seq
            .next()
            .map_err(|e| invalid_param("payload", "the payload file's path", &e))?;
        let payload_size: u64 = seq
            .next()
            .map_err(|e| invalid_param("payload_size", "the payload's length in bytes", &e))?;
        let piece = DealPiece {
            deal_id,
            proposal,
            payload,
            payload_size,
        };
        sealing(&ctx)?
            .add_piece(piece)
            .await
            .map_err(provider_error)
    })?;
    m.register_method("provider_dealPieces", |params, ctx, _| {
        let ids: Option<Vec<u64>> = params
            .sequence()
            .optional_next()
            .map_err(|e| invalid_param("deal_ids", "an array of deal ids", &e))?;
        deal_pieces(ctx, ids.as_deref())
    })?;
    m.register_async_method("provider_pieceLocation", |params, ctx, _| async move {
        let cid: String = params
            .one()
            .map_err(|e| invalid_param("piece_cid", "a piece CID", &e))?;
        piece_location(&ctx, &cid).await
    })?;
    m.register_method("provider_market", |_, ctx, _| {
        market(ctx).map(|m| m.info.clone())
    })?;
    m.register_method("provider_deals", |_, ctx, _| {
        let mut deals = market(ctx)?
            .records
            .list()
            .map_err(|e| provider_error(ProviderError::Market(e.to_string())))?;
        deals.sort_by_key(|d| std::cmp::Reverse(d.updated_at));
        Ok::<_, ErrorObjectOwned>(deals)
    })?;
    m.register_async_method("provider_check", |params, ctx, _| async move {
        let deadline: Option<u64> = params.sequence().optional_next()?;
        check(&ctx, deadline).await
    })?;
    m.register_async_method("provider_declareFaults", |params, ctx, _| async move {
        let sectors: Vec<u64> = params.one()?;
        declare(&ctx, Declaration::Faults, &sectors).await
    })?;
    m.register_async_method("provider_declareRecoveries", |params, ctx, _| async move {
        let sectors: Vec<u64> = params.one()?;
        declare(&ctx, Declaration::Recoveries, &sectors).await
    })?;
    Ok(m)
}

pub(crate) async fn info<A: NodeApi>(ctx: &ProviderRpc<A>) -> ProviderInfo {
    let id = &ctx.identity;
    let store = ctx.store.clone();
    let in_store = tokio::task::spawn_blocking(move || store.scan().len() as u64)
        .await
        .unwrap_or(0);
    let (head, node_error) = match ctx.api.chain_head().await {
        Ok(h) => (Some(h), None),
        Err(e) => (None, Some(e.to_string())),
    };
    ProviderInfo {
        actor: id.actor,
        owner: id.owner,
        worker: id.worker,
        sector_size: id.sector_size,
        network: id.network.clone(),
        node_api: id.node_api.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        api_version: API_VERSION,
        started_at: id.started_at,
        sectors_in_store: in_store,
        head,
        node_error,
    }
}

/// How long `provider_sectors` waits for the cluster's location index.
const CLUSTER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

pub(crate) async fn sectors<A: NodeApi>(ctx: &ProviderRpc<A>) -> ProviderResult<ProviderSectors> {
    use std::collections::BTreeMap;
    let store = ctx.store.clone();
    let on_disk = tokio::task::spawn_blocking(move || {
        let index = store.scan();
        index
            .iter()
            .map(|(n, path)| {
                let readable = store.open(*n, &index).is_some();
                (*n, (path.display().to_string(), readable))
            })
            .collect::<BTreeMap<_, _>>()
    })
    .await
    .map_err(|_| ProviderError::Stopped)?;
    let (on_chain, node_error) = match ctx.api.miner_sectors(ctx.identity.actor).await {
        Ok(list) => (
            list.into_iter()
                .map(|s| {
                    let record = ChainSector {
                        status: s.status,
                        deadline: s.deadline,
                        partition: s.partition,
                        activation: s.activation,
                        expiration: s.expiration,
                    };
                    (s.sector_number, record)
                })
                .collect::<BTreeMap<_, _>>(),
            None,
        ),
        Err(e) => (BTreeMap::new(), Some(e.to_string())),
    };
    let (on_workers, cluster_error) = match ctx.pipeline.as_ref().ok().and_then(|p| p.cluster()) {
        Some(link) => match tokio::time::timeout(
            CLUSTER_TIMEOUT,
            crate::engine::TaskEngine::locations(link.engine(), ctx.identity.actor.0, None),
        )
        .await
        {
            Ok(Ok(found)) => {
                // The index lists each sector's newest holder first.
                let mut newest = BTreeMap::new();
                for l in found {
                    newest.entry(l.sector).or_insert(l.worker);
                }
                (newest, None)
            }
            Ok(Err(e)) => (BTreeMap::new(), Some(e.to_string())),
            Err(_) => (
                BTreeMap::new(),
                Some(format!(
                    "the cluster's database did not answer within {} s",
                    CLUSTER_TIMEOUT.as_secs()
                )),
            ),
        },
        None => (BTreeMap::new(), None),
    };
    let held = ctx.poster.status().held_faults;
    let mut numbers: Vec<u64> = on_disk
        .keys()
        .chain(on_chain.keys())
        .chain(on_workers.keys())
        .copied()
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    let sectors = numbers
        .into_iter()
        .map(|n| {
            let disk = on_disk.get(&n);
            ProviderSector {
                sector_number: n,
                dir: disk.map(|(d, _)| d.clone()),
                readable: disk.is_some_and(|(_, r)| *r),
                chain: on_chain.get(&n).cloned(),
                held_faulty: held.contains(&n),
                worker: disk
                    .is_none()
                    .then(|| on_workers.get(&n).cloned())
                    .flatten(),
            }
        })
        .collect();
    Ok(ProviderSectors {
        sectors,
        node_error,
        cluster_error,
    })
}

pub(crate) fn mining<A: NodeApi>(ctx: &ProviderRpc<A>) -> MiningInfo {
    let m = &ctx.metrics;
    MiningInfo {
        elections_won: m.elections_won.get(),
        blocks_produced: m.blocks_produced.get(),
        blocks_refused: m.blocks_refused.get(),
        winning_posts: m.winning_post_seconds.count(),
        winning_post_average_seconds: m.winning_post_seconds.mean(),
        window_post_partitions: m.window_post_seconds.count(),
        window_post_average_seconds: m.window_post_seconds.mean(),
        events: ctx.mining.borrow().clone(),
    }
}

async fn check<A: NodeApi>(
    ctx: &ProviderRpc<A>,
    deadline: Option<u64>,
) -> Result<ProvingCheck, ErrorObjectOwned> {
    let deadlines = ctx.poster.period_deadlines();
    if let Some(d) = deadline
        && d >= deadlines
    {
        return Err(error(
            codes::INVALID_PARAMS,
            format!(
                "no deadline {d}: a proving period has deadlines 0 to {}",
                deadlines.saturating_sub(1)
            ),
        ));
    }
    let view = ctx
        .api
        .proving_view(ctx.identity.actor)
        .await
        .map_err(provider_error)?;
    let mut located = Vec::new();
    for dl in view
        .deadlines
        .iter()
        .filter(|dl| deadline.is_none_or(|d| d == dl.index))
    {
        for p in &dl.partitions {
            for s in &p.sectors {
                located.push((dl.index, p.index, p.faults.contains(&s.sector_number), *s));
            }
        }
    }
    let store = ctx.store.clone();
    let epoch = view.head_epoch;
    let started = std::time::Instant::now();
    let sectors = tokio::task::spawn_blocking(move || {
        let refs: Vec<_> = located.iter().map(|l| l.3).collect();
        let results = store.check(&refs, epoch);
        located
            .iter()
            .zip(results)
            .map(
                |((deadline, partition, faulty, s), (_, result))| SectorCheck {
                    sector_number: s.sector_number,
                    deadline: *deadline,
                    partition: *partition,
                    faulty: *faulty,
                    ok: result.is_ok(),
                    reason: result.err().map(|e| e.to_string()),
                },
            )
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|_| provider_error(ProviderError::Stopped))?;
    Ok(ProvingCheck {
        head_epoch: epoch,
        deadline,
        sectors,
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn declare<A: NodeApi>(
    ctx: &ProviderRpc<A>,
    declaration: Declaration,
    sectors: &[u64],
) -> Result<Declared, ErrorObjectOwned> {
    if sectors.is_empty() {
        return Err(error(codes::INVALID_PARAMS, "no sectors given"));
    }
    ctx.poster
        .declare(ctx.api.as_ref(), declaration, sectors)
        .await
        .map_err(provider_error)
}

fn sealing<A: NodeApi>(ctx: &ProviderRpc<A>) -> Result<&Arc<Pipeline<A>>, ErrorObjectOwned> {
    ctx.pipeline.as_ref().map_err(|why| {
        error(
            codes::REFUSED,
            format!("the sealing pipeline does not run: {why}"),
        )
    })
}

fn market<A: NodeApi>(ctx: &ProviderRpc<A>) -> Result<&MarketView, ErrorObjectOwned> {
    ctx.market
        .as_ref()
        .map_err(|why| error(codes::REFUSED, format!("the market does not run: {why}")))
}

fn pipeline_error(e: PipelineError) -> ErrorObjectOwned {
    match e {
        PipelineError::Unknown(_) => error(codes::INVALID_PARAMS, e.to_string()),
        PipelineError::Transition { .. } | PipelineError::Conflict { .. } => {
            error(codes::REFUSED, e.to_string())
        }
        PipelineError::DealExists(_) | PipelineError::NotWaiting { .. } => {
            error(codes::REFUSED, e.to_string())
        }
        PipelineError::Db(_) | PipelineError::Corrupt(_) | PipelineError::CorruptPiece(_) => {
            error(codes::INTERNAL, e.to_string())
        }
    }
}

pub(crate) fn pipeline<A: NodeApi>(
    ctx: &ProviderRpc<A>,
) -> Result<PipelineSectors, ErrorObjectOwned> {
    match &ctx.pipeline {
        Ok(p) => {
            let records = p.store().list().map_err(pipeline_error)?;
            Ok(PipelineSectors {
                disabled: None,
                sectors: records.iter().map(|r| PipelineSector::live(r, p)).collect(),
            })
        }
        Err(why) => Ok(PipelineSectors {
            disabled: Some(why.clone()),
            sectors: Vec::new(),
        }),
    }
}

fn tasks<A: NodeApi>(
    ctx: &ProviderRpc<A>,
    history: bool,
) -> Result<ProviderTasks, ErrorObjectOwned> {
    use crate::tasks::TaskState;
    let p = match &ctx.pipeline {
        Ok(p) => p,
        Err(why) => {
            return Ok(ProviderTasks {
                disabled: Some(why.clone()),
                tasks: Vec::new(),
            });
        }
    };
    let mut tasks = p
        .scheduler()
        .list()
        .map_err(|e| error(codes::INTERNAL, e.to_string()))?;
    tasks.retain(|t| history || matches!(t.state, TaskState::Running | TaskState::Queued));
    let rank = |s: TaskState| match s {
        TaskState::Running => 0,
        TaskState::Queued => 1,
        TaskState::Done | TaskState::Failed => 2,
    };
    tasks.sort_by_key(|t| (rank(t.state), t.created_at, t.id));
    Ok(ProviderTasks {
        disabled: None,
        tasks,
    })
}

async fn sector_status<A: NodeApi>(
    ctx: &ProviderRpc<A>,
    n: u64,
) -> Result<SectorStatus, ErrorObjectOwned> {
    let (record, live) = match &ctx.pipeline {
        Ok(p) => {
            let r = p.store().get(n).map_err(pipeline_error)?;
            let live = r.as_ref().map(|r| PipelineSector::live(r, p));
            (r, live)
        }
        Err(_) => (None, None),
    };
    let sectors = sectors(ctx).await.map_err(provider_error)?;
    let sector = sectors.sectors.into_iter().find(|s| s.sector_number == n);
    if record.is_none() && sector.is_none() {
        return Err(error(
            codes::INVALID_PARAMS,
            format!(
                "sector {n} is neither in the pipeline, nor in the sector store, nor live on chain"
            ),
        ));
    }
    let termination = match record.as_ref().and_then(|r| r.chain.terminate.as_ref()) {
        Some(sent) => Some(termination(ctx, sent.id).await?),
        None => None,
    };
    Ok(SectorStatus {
        sector_number: n,
        pipeline: live,
        sector,
        termination,
    })
}

/// What the chain made of termination message `id`: the fee from its return value.
async fn termination<A: NodeApi>(
    ctx: &ProviderRpc<A>,
    id: [u8; 32],
) -> Result<Termination, ErrorObjectOwned> {
    let found = ctx.api.search_message(id).await.map_err(provider_error)?;
    Ok(match found {
        None => Termination {
            message: hex::encode(id),
            executed_at: None,
            fee: None,
            error: None,
        },
        Some(f) if f.receipt.ok() => Termination {
            message: hex::encode(id),
            executed_at: Some(f.epoch),
            fee: postcard::from_bytes(&f.receipt.return_data).ok(),
            error: None,
        },
        Some(f) => Termination {
            message: hex::encode(id),
            executed_at: Some(f.epoch),
            fee: None,
            error: Some(format!("{} ({})", f.receipt.exit, f.receipt.error)),
        },
    })
}

async fn pledge<A: NodeApi>(ctx: &ProviderRpc<A>, count: u64) -> Result<Pledged, ErrorObjectOwned> {
    if count == 0 || count > MAX_PLEDGE {
        return Err(error(
            codes::INVALID_PARAMS,
            format!("count must be between 1 and {MAX_PLEDGE}, not {count}"),
        ));
    }
    let p = sealing(ctx)?;
    let mut sectors = Vec::new();
    for _ in 0..count {
        let r = p.pledge().await.map_err(provider_error)?;
        sectors.push(r.number);
    }
    Ok(Pledged { sectors })
}

fn deal_pieces<A: NodeApi>(
    ctx: &ProviderRpc<A>,
    ids: Option<&[u64]>,
) -> Result<Vec<DealPieceInfo>, ErrorObjectOwned> {
    let mut pieces = sealing(ctx)?.deal_pieces().map_err(provider_error)?;
    if let Some(ids) = ids {
        pieces.retain(|p| ids.contains(&p.deal_id));
    }
    Ok(pieces)
}

async fn piece_location<A: NodeApi>(
    ctx: &ProviderRpc<A>,
    cid: &str,
) -> Result<Option<PieceLocation>, ErrorObjectOwned> {
    let piece: lode_proofs::cid::PieceCid = cid.parse().map_err(|e| {
        error(
            codes::INVALID_PARAMS,
            format!("invalid `piece_cid`: {cid:?} is not a piece CID ({e})"),
        )
    })?;
    let reader = sealing(ctx)?.piece_reader();
    tokio::task::spawn_blocking(move || reader.locate(&piece))
        .await
        .map_err(|_| provider_error(ProviderError::Stopped))?
        .map_err(provider_error)
}

fn remove<A: NodeApi>(ctx: &ProviderRpc<A>, n: u64) -> Result<PipelineSector, ErrorObjectOwned> {
    let p = sealing(ctx)?;
    let store = p.store();
    let record = store
        .get(n)
        .map_err(pipeline_error)?
        .ok_or_else(|| pipeline_error(PipelineError::Unknown(n)))?;
    let new = store
        .apply(
            n,
            record.version,
            &Event::Remove,
            lode_node::genesis::unix_now(),
            &p.config().retry,
        )
        .map_err(pipeline_error)?;
    Ok(PipelineSector::from_record(&new))
}

/// A parameter that does not parse: the error names it and says what it should be.
fn invalid_param(name: &str, want: &str, e: &ErrorObjectOwned) -> ErrorObjectOwned {
    error(
        codes::INVALID_PARAMS,
        format!("invalid `{name}`: expected {want} ({})", e.message()),
    )
}

async fn terminate<A: NodeApi>(
    ctx: &ProviderRpc<A>,
    n: u64,
) -> Result<PipelineSector, ErrorObjectOwned> {
    let p = sealing(ctx)?;
    let store = p.store();
    let live = ctx
        .api
        .miner_sectors(ctx.identity.actor)
        .await
        .map_err(provider_error)?
        .iter()
        .any(|s| s.sector_number == n);
    let Some(record) = store.get(n).map_err(pipeline_error)? else {
        return Err(error(
            codes::REFUSED,
            if live {
                format!(
                    "sector {n} is live on chain but not in the pipeline (pre-sealed?): the pipeline terminates only the sectors it sealed"
                )
            } else {
                format!(
                    "sector {n} is neither in the pipeline nor live on chain: nothing to terminate"
                )
            },
        ));
    };
    if !live || !record.state().is_on_chain() {
        return Err(error(
            codes::REFUSED,
            format!(
                "sector {n} is in {} and not live on chain: only sectors on chain are terminated ({})",
                record.state(),
                if record.state().is_on_chain() {
                    "it is already gone"
                } else {
                    "remove this one: lode sectors remove"
                }
            ),
        ));
    }
    let new = store
        .apply(
            n,
            record.version,
            &Event::Terminate,
            lode_node::genesis::unix_now(),
            &p.config().retry,
        )
        .map_err(pipeline_error)?;
    tracing::info!(sector = n, "termination asked by the operator");
    Ok(PipelineSector::from_record(&new))
}

async fn extend<A: NodeApi>(
    ctx: &ProviderRpc<A>,
    sectors: &[u64],
    expiration: u64,
) -> Result<Extended, ErrorObjectOwned> {
    if sectors.is_empty() {
        return Err(error(
            codes::INVALID_PARAMS,
            "invalid `sectors`: no sectors given",
        ));
    }
    if sectors.len() > MAX_EXTEND {
        return Err(error(
            codes::INVALID_PARAMS,
            format!(
                "invalid `sectors`: at most {MAX_EXTEND} sectors per call, not {}",
                sectors.len()
            ),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(n) = sectors.iter().find(|n| !seen.insert(**n)) {
        return Err(error(
            codes::INVALID_PARAMS,
            format!("invalid `sectors`: sector {n} is named twice"),
        ));
    }
    ctx.poster
        .extend(ctx.api.as_ref(), sectors, expiration)
        .await
        .map_err(provider_error)
}

/// Every method is either open or protected.
#[cfg(test)]
mod tests {
    #[test]
    fn lists_are_disjoint() {
        for m in super::PROTECTED_METHODS {
            assert!(!super::OPEN_METHODS.contains(m), "{m}");
        }
    }
}
