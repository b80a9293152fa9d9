//! The node's JSON-RPC 2.0 API (HTTP `POST` and WebSocket on one address), its authorisation, the
//! Prometheus endpoint, and the typed client the CLI uses.
//!
//! [`serve_rpc`] starts the server (jsonrpsee) on a [`NodeService`] through [`serve_module`],
//! which serves any method table with the same bounds and token rule (the storage provider's API
//! uses it); [`serve_metrics`] serves `GET /metrics`; [`client::NodeClient`] calls every method below with the same result types
//! ([`types`]) the server builds.
//!
//! # Conventions
//!
//! Parameters are positional (a JSON array). Hashes, block and message ids, keys and
//! commitments are lowercase hex; actors are addresses — `l0<id>`, or `l3<BLS public key hex>` where
//! an account's key is accepted; token amounts are decimal strings of atto units; power and
//! weights are decimal strings (they outgrow JSON numbers); epochs, counts and nonces are numbers.
//! Results that may not exist are `null` (`chain_tipsetByHeight` at a null round, an unknown
//! block or actor).
//!
//! # Methods
//!
//! *open*: anyone who can reach the address may call it. *protected*: it needs
//! `Authorization: Bearer <token>` (the token in `<node dir>/token`, see [`auth`]).
//!
//! | method | params | result | access |
//! |---|---|---|---|
//! | `chain_head` | — | [`HeadInfo`]: epoch, key, weight, parent state root, state root | open |
//! | `chain_tipsetByHeight` | epoch | [`TipsetInfo`] (blocks' header fields, parent state root) or `null` for a null round or a future epoch | open |
//! | `chain_getBlock` | block id | [`BlockInfo`]: header and message ids, or `null` | open |
//! | `chain_getMessages` | block id | [`BlockMessageInfo`] list (id and message, unsigned: the block's aggregate signature covers them), or `null` | open |
//! | `chain_genesis` | — | [`GenesisInfo`]: id, network, timestamp, policy | open |
//! | `chain_subscribeHeads` | — | subscription id; then notifications `chain_headEvent` of [`HeadEventInfo`] (WebSocket only) | open |
//! | `chain_unsubscribeHeads` | subscription id | `true` | open |
//! | `state_balance` | address | token amount (`"0"` for an unknown address) | open |
//! | `state_actor` | address | [`ActorInfo`]: id, kind, key, balance, nonce; or `null` | open |
//! | `state_lookupId` | address | `l0<id>` or `null` | open |
//! | `state_minerPower` | miner `l0<id>` | [`MinerPowerInfo`]: its raw/QA power, the network's consensus totals, whether it meets the minimum | open |
//! | `state_minerInfo` | miner | [`MinerInfoView`]: owner, worker, worker key, sector size, partition size, peer id, multiaddrs, balances, proving period | open |
//! | `state_minerSectors` | miner | [`SectorInfo`] list: every live sector with status `active`/`unproven`/`faulty`/`recovering` | open |
//! | `state_minerDeadlines` | miner | [`MinerDeadlinesInfo`]: head epoch, proving period, the current deadline's window, each deadline with partitions: open/close/challenge/fault cutoff epochs, randomness, posted partitions, sectors, faults, recoveries | open |
//! | `state_minerPreCommits` | miner | [`PreCommitView`] list: each pre-committed sector with its commitments, deposit, ticket, seed epoch and seed (once on chain), and the last epoch its prove-commit is accepted | open |
//! | `state_sealTicket` | miner, epoch | the seal ticket (hex) the miner draws from that epoch's randomness, for a pre-commit naming it | open |
//! | `state_searchMsg` | message id | [`MessageLookupInfo`]: the canonical tipset that executed it and its receipt (exit code, gas, fee, return value, error); `null` while pending, unknown, or only on a reverted fork | open |
//! | `state_networkPower` | — | [`NetworkPowerInfo`]: consensus, committed and above-minimum totals, miner counts, smoothed QA estimate, total locked | open |
//! | `state_marketBalance` | address | [`EscrowView`]: the actor's market escrow (balance, locked, available); zero for an unknown address | open |
//! | `state_marketDeal` | deal id | [`DealView`]: the proposal, `published` or `active`, its sector, paid-until epoch and allocation; `null` for an unknown or ended deal | open |
//! | `state_computeJob` | job id | [`JobView`]: terms, slots, verifier, `open`/`settled`/`failed`, the final result and who got what; `null` for an unknown id | open |
//! | `state_computeJobs` | client or `null`, provider or `null`, verifier or `null`, open only (bool, optional), first job id (optional) | [`JobView`] list, oldest first, at most [`query::MAX_JOBS_LISTED`] | open |
//! | `state_marketDeals` | provider address or `null`, client address or `null`, first deal id (optional) | [`DealView`] list, oldest first, at most [`query::MAX_DEALS_LISTED`] | open |
//! | `state_dealCollateralBounds` | padded piece size | [`CollateralBoundsView`]: the least provider collateral `PublishDeals` takes now for a piece of that size, and the cap on each amount of a deal | open |
//! | `state_verifiedClientDataCap` | address | the client's DataCap in bytes (decimal string), or `null` for none | open |
//! | `state_verifierAllowance` | address | the verifier's remaining allowance in bytes (decimal string), or `null` for a non-verifier | open |
//! | `mpool_push` | signed message: hex of its postcard encoding, or its JSON | message id | open (the signature authorises it) |
//! | `mpool_pending` | — | [`MessageInfo`] list, by sender and nonce | open |
//! | `mpool_nonce` | address | the account's next nonce counting pending messages, or `null` for no account | open |
//! | `net_peers` | — | [`PeerView`] list | open |
//! | `net_info` | — | [`NetInfo`]: peer id, listen multiaddrs ending in `/p2p/<peer id>` | open |
//! | `net_connect` | multiaddr (with or without `/p2p/`) | `null` once connected | protected |
//! | `net_blockPeer` | peer id | `null`; the peer is disconnected and refused until unblocked | protected |
//! | `net_unblockPeer` | peer id | `null` | protected |
//! | `sync_status` | — | [`SyncStatusInfo`]: genesis, head key, epoch, weight, clock epoch, lag, peers | open |
//! | `miner_base` | miner, epoch | [`MinerBase`](crate::core::MinerBase): mining base, miner QA power, eligibility, active sectors, messages to include (after the null rounds before `epoch`, computed without committing them) | protected |
//! | `miner_provingView` | miner | [`ProvingView`](crate::core::ProvingView): the miner's deadlines at the head with their windows, challenge randomness (once drawn), posted partitions and each partition's sectors, faults and recoveries — what its Window PoSt prover needs | open |
//! | `miner_submitBlock` | hex of a [`FullBlock`]'s postcard encoding | [`SubmitVerdict`]: `accepted` (and gossiped), `stored`, `duplicate`, `need_parents`, `rejected` with a reason | protected |
//! | `node_version` | — | [`VersionInfo`]: version, API version, network, genesis id | open |
//!
//! [`OPEN_METHODS`] and [`PROTECTED_METHODS`] list them; a registered method missing from
//! [`OPEN_METHODS`] is protected.
//!
//! # Errors
//!
//! JSON-RPC errors: `-32700` parse error, `-32600` invalid request, `-32601` unknown method,
//! `-32602` invalid params (a malformed address, hash, message or block), and this API's own
//! [`codes`]: `-32001` unauthorised (a protected method on a WebSocket opened without the token),
//! `-32002` not found (e.g. not a miner), `-32003` refused (a message the mempool refuses, a block
//! the node rejects outright, a dial that fails), `-32000` internal. Over HTTP, a request that
//! calls a protected method without the token gets **HTTP 401** and nothing of it runs; a body over
//! the request limit gets HTTP 413.
//!
//! # Bounds
//!
//! [`RpcConfig`]: request body (4 MiB), response (16 MiB), connections (64), subscriptions per
//! connection (16), calls per batch (64). A malformed request never panics the server; it gets an
//! error.

pub mod auth;
pub mod client;
mod metrics_http;
pub mod query;
pub mod types;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use jsonrpsee::RpcModule;
use jsonrpsee::core::middleware::RpcServiceBuilder;
use jsonrpsee::server::{
    BatchRequestConfig, PendingSubscriptionSink, Server, ServerConfig, ServerHandle,
};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use lode_chain::error::ExitCode;
use lode_chain::message::SignedMessage;
use lode_chain::types::{ActorId, Address, DealId, Epoch, TokenAmount};
use tokio::sync::broadcast::error::RecvError;

pub use auth::{TOKEN_FILE, load_or_create_token};
pub use metrics_http::{
    MetricsServerHandle, OPENMETRICS_CONTENT_TYPE, serve_http, serve_metrics, serve_node_metrics,
};
pub use types::{
    ActorInfo, BlockInfo, BlockMessageInfo, CollateralBoundsView, DealView, EscrowView,
    GenesisInfo, HeadEventInfo, HeadInfo, JobFilter, JobInputView, JobSettlementView, JobSlotView,
    JobTermsView, JobVerifierView, JobView, MessageInfo, MessageParam, MinerDeadlinesInfo,
    MinerInfoView, MinerPowerInfo, NetInfo, NetworkPowerInfo, PeerView, SectorInfo, SubmitVerdict,
    SyncStatusInfo, TipsetInfo, VersionInfo,
};

use crate::core::NodeCore;
use crate::error::{NodeError, NodeResult};
use crate::genesis::unix_now;
use crate::service::NodeService;
use crate::wire::{self, FullBlock};

/// The API's version (`node_version`): raised when a method changes incompatibly.
pub const API_VERSION: u32 = 1;

/// The notification method of `chain_subscribeHeads`.
pub const HEAD_NOTIFICATION: &str = "chain_headEvent";

/// The API's own JSON-RPC error codes.
pub mod codes {
    /// Internal failure of the node.
    pub const INTERNAL: i32 = -32000;
    /// A protected method without the token.
    pub const UNAUTHORIZED: i32 = -32001;
    /// What was asked for does not exist (e.g. not a miner).
    pub const NOT_FOUND: i32 = -32002;
    /// The node refused the request (a message, a block, a dial).
    pub const REFUSED: i32 = -32003;
    /// Malformed parameters (JSON-RPC's standard code).
    pub const INVALID_PARAMS: i32 = -32602;
}

/// Methods anyone may call.
pub const OPEN_METHODS: &[&str] = &[
    "chain_head",
    "chain_tipsetByHeight",
    "chain_getBlock",
    "chain_getMessages",
    "chain_genesis",
    "chain_subscribeHeads",
    "chain_unsubscribeHeads",
    "state_balance",
    "state_actor",
    "state_lookupId",
    "state_minerPower",
    "state_minerInfo",
    "state_minerSectors",
    "state_minerDeadlines",
    "state_minerPreCommits",
    "state_sealTicket",
    "state_searchMsg",
    "state_networkPower",
    "state_marketBalance",
    "state_marketDeal",
    "state_marketDeals",
    "state_computeJob",
    "state_computeJobs",
    "state_dealCollateralBounds",
    "state_verifiedClientDataCap",
    "state_verifierAllowance",
    "miner_provingView",
    "mpool_push",
    "mpool_pending",
    "mpool_nonce",
    "net_peers",
    "net_info",
    "sync_status",
    "node_version",
];

/// Methods that need the token.
pub const PROTECTED_METHODS: &[&str] = &[
    "net_connect",
    "net_blockPeer",
    "net_unblockPeer",
    "miner_base",
    "miner_submitBlock",
];

/// The server's bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcConfig {
    /// Largest request body (HTTP) or message (WebSocket), bytes.
    pub max_request_bytes: u32,
    /// Largest response, bytes (a bigger result is an error).
    pub max_response_bytes: u32,
    /// Most open connections (HTTP and WebSocket).
    pub max_connections: u32,
    /// Most subscriptions per WebSocket connection.
    pub max_subscriptions_per_connection: u32,
    /// Most calls in one batch.
    pub max_batch_len: u32,
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            max_request_bytes: 4 << 20,
            max_response_bytes: 16 << 20,
            max_connections: 64,
            max_subscriptions_per_connection: 16,
            max_batch_len: 64,
        }
    }
}

/// What every method runs on.
#[derive(Debug)]
pub struct RpcContext {
    svc: NodeService,
}

/// A running RPC server: dropping it stops the server.
#[derive(Debug)]
pub struct RpcServerHandle {
    addr: SocketAddr,
    handle: ServerHandle,
}

impl RpcServerHandle {
    /// The address it is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections and closes the open ones (idempotent).
    pub fn stop(&self) {
        let _ = self.handle.stop();
    }

    /// Waits until the server has stopped.
    pub async fn stopped(self) {
        self.handle.stopped().await
    }
}

/// Serves the API for `svc` on `addr` with the default [`RpcConfig`]; returns the bound address
/// (a port 0 resolved) and the server's handle.
///
/// # Errors
/// [`NodeError::Serve`] when `addr` cannot be bound.
pub async fn serve_rpc(
    addr: SocketAddr,
    svc: NodeService,
    token: String,
) -> NodeResult<(SocketAddr, RpcServerHandle)> {
    serve_rpc_with(addr, svc, token, RpcConfig::default()).await
}

/// [`serve_rpc`] with explicit bounds.
///
/// # Errors
/// [`NodeError::Serve`] when `addr` cannot be bound.
pub async fn serve_rpc_with(
    addr: SocketAddr,
    svc: NodeService,
    token: String,
    config: RpcConfig,
) -> NodeResult<(SocketAddr, RpcServerHandle)> {
    let module = module(svc).map_err(|e| NodeError::Serve {
        addr,
        source: std::io::Error::other(e.to_string()),
    })?;
    serve_module(addr, module, OPEN_METHODS, token, config).await
}

/// Serves any JSON-RPC `module` on `addr` the way this API is served: HTTP `POST` and WebSocket,
/// `config`'s bounds, and the token rule of [`auth`] — every method of `module` not named in
/// `open` is protected (HTTP 401 without `Authorization: Bearer <token>`). The node's API is
/// one such module; the storage provider serves its own API with it.
///
/// # Errors
/// [`NodeError::Serve`] when `addr` cannot be bound.
pub async fn serve_module<C: Send + Sync + 'static>(
    addr: SocketAddr,
    module: RpcModule<C>,
    open: &[&str],
    token: String,
    config: RpcConfig,
) -> NodeResult<(SocketAddr, RpcServerHandle)> {
    let serve_error = |source: std::io::Error| NodeError::Serve { addr, source };
    let protected: Arc<HashSet<&'static str>> = Arc::new(
        module
            .method_names()
            .filter(|m| !open.contains(m))
            .collect(),
    );
    let http = tower::ServiceBuilder::new().layer(auth::AuthLayer::new(
        token,
        (*protected).clone(),
        config.max_request_bytes as usize,
    ));
    let rpc = RpcServiceBuilder::new().layer_fn({
        let protected = protected.clone();
        move |service| auth::RpcAuth::new(service, protected.clone())
    });
    let server_config = ServerConfig::builder()
        .max_request_body_size(config.max_request_bytes)
        .max_response_body_size(config.max_response_bytes)
        .max_connections(config.max_connections)
        .max_subscriptions_per_connection(config.max_subscriptions_per_connection)
        .set_batch_request_config(BatchRequestConfig::Limit(config.max_batch_len))
        .build();
    let server = Server::builder()
        .set_config(server_config)
        .set_http_middleware(http)
        .set_rpc_middleware(rpc)
        .build(addr)
        .await
        .map_err(serve_error)?;
    let bound = server.local_addr().map_err(serve_error)?;
    let handle = server.start(module);
    tracing::info!(addr = %bound, "JSON-RPC server listening");
    Ok((
        bound,
        RpcServerHandle {
            addr: bound,
            handle,
        },
    ))
}

type RpcResult<T> = Result<T, ErrorObjectOwned>;

fn error(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned::<()>(code, message.into(), None)
}

fn invalid_params(message: impl std::fmt::Display) -> ErrorObjectOwned {
    error(codes::INVALID_PARAMS, message.to_string())
}

/// The JSON-RPC error for a node error.
fn node_error(e: NodeError) -> ErrorObjectOwned {
    let code = match &e {
        NodeError::Actor(a) if a.code == ExitCode::NotFound => codes::NOT_FOUND,
        NodeError::UnknownTipset(_) => codes::NOT_FOUND,
        NodeError::Mempool(_)
        | NodeError::InvalidBlock { .. }
        | NodeError::SlotFull { .. }
        | NodeError::Net(_) => codes::REFUSED,
        NodeError::Decode { .. } => codes::INVALID_PARAMS,
        _ => codes::INTERNAL,
    };
    error(code, e.to_string())
}

/// Runs a query on the core (blocking pool).
async fn on_core<R: Send + 'static>(
    ctx: &RpcContext,
    f: impl FnOnce(&mut NodeCore) -> NodeResult<R> + Send + 'static,
) -> RpcResult<R> {
    ctx.svc
        .with_core(f)
        .await
        .map_err(node_error)?
        .map_err(node_error)
}

fn address_param(params: &Params<'_>) -> RpcResult<Address> {
    let s: String = params.one()?;
    types::parse_address(&s).map_err(invalid_params)
}

fn actor_param(s: &str) -> RpcResult<ActorId> {
    types::parse_actor_id(s).map_err(invalid_params)
}

fn hash_param(params: &Params<'_>) -> RpcResult<[u8; 32]> {
    let s: String = params.one()?;
    types::parse_hash(&s).map_err(invalid_params)
}

fn peer_param(params: &Params<'_>) -> RpcResult<libp2p::PeerId> {
    let s: String = params.one()?;
    s.parse()
        .map_err(|e| invalid_params(format!("{s:?} is not a peer id: {e}")))
}

/// Decodes hex of a postcard encoding on the blocking pool (signature checks in decoding cost).
async fn decode_hex<T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static>(
    hex_text: String,
    what: &'static str,
) -> RpcResult<T> {
    tokio::task::spawn_blocking(move || {
        let bytes = hex::decode(hex_text.trim())
            .map_err(|e| invalid_params(format!("{what}: not hex: {e}")))?;
        wire::decode::<T>(&bytes, what).map_err(node_error)
    })
    .await
    .map_err(|_| node_error(NodeError::Stopped))?
}

/// The API's methods on `svc` (what [`serve_rpc`] serves; exposed to embed them elsewhere).
///
/// # Errors
/// A method registered twice (a bug).
pub fn module(
    svc: NodeService,
) -> Result<RpcModule<RpcContext>, jsonrpsee::core::RegisterMethodError> {
    let mut m = RpcModule::new(RpcContext { svc });

    // chain
    m.register_async_method("chain_head", |_, ctx, _| async move {
        on_core(&ctx, |c| query::head(c)).await
    })?;
    m.register_async_method("chain_tipsetByHeight", |params, ctx, _| async move {
        let epoch: Epoch = params.one()?;
        on_core(&ctx, move |c| query::tipset_by_height(c, epoch)).await
    })?;
    m.register_async_method("chain_getBlock", |params, ctx, _| async move {
        let id = hash_param(&params)?;
        on_core(&ctx, move |c| query::block(c, &id)).await
    })?;
    m.register_async_method("chain_getMessages", |params, ctx, _| async move {
        let id = hash_param(&params)?;
        on_core(&ctx, move |c| query::block_messages(c, &id)).await
    })?;
    m.register_async_method("chain_genesis", |_, ctx, _| async move {
        on_core(&ctx, |c| Ok(query::genesis(c))).await
    })?;
    m.register_subscription(
        "chain_subscribeHeads",
        HEAD_NOTIFICATION,
        "chain_unsubscribeHeads",
        |_, pending, ctx, _| async move { heads(pending, ctx).await },
    )?;

    // state
    m.register_async_method("state_balance", |params, ctx, _| async move {
        let addr = address_param(&params)?;
        on_core(&ctx, move |c| Ok::<TokenAmount, _>(c.balance(&addr))).await
    })?;
    m.register_async_method("state_actor", |params, ctx, _| async move {
        let addr = address_param(&params)?;
        on_core(&ctx, move |c| query::actor(c, &addr)).await
    })?;
    m.register_async_method("state_lookupId", |params, ctx, _| async move {
        let addr = address_param(&params)?;
        let id = on_core(&ctx, move |c| query::lookup_id(c, &addr)).await?;
        Ok::<_, ErrorObjectOwned>(id.map(types::IdAddress))
    })?;
    m.register_async_method("state_minerPower", |params, ctx, _| async move {
        let id = actor_param(&params.one::<String>()?)?;
        on_core(&ctx, move |c| query::miner_power(c, id)).await
    })?;
    m.register_async_method("state_minerInfo", |params, ctx, _| async move {
        let id = actor_param(&params.one::<String>()?)?;
        on_core(&ctx, move |c| query::miner_info(c, id)).await
    })?;
    m.register_async_method("state_minerSectors", |params, ctx, _| async move {
        let id = actor_param(&params.one::<String>()?)?;
        on_core(&ctx, move |c| query::miner_sectors(c, id)).await
    })?;
    m.register_async_method("state_minerPreCommits", |params, ctx, _| async move {
        let id = actor_param(&params.one::<String>()?)?;
        on_core(&ctx, move |c| query::miner_precommits(c, id)).await
    })?;
    m.register_async_method("state_sealTicket", |params, ctx, _| async move {
        let (miner, epoch): (String, Epoch) = params.parse()?;
        let id = actor_param(&miner)?;
        on_core(&ctx, move |c| {
            query::seal_ticket(c, id, epoch).map(hex::encode)
        })
        .await
    })?;
    m.register_async_method("state_searchMsg", |params, ctx, _| async move {
        let id = hash_param(&params)?;
        on_core(&ctx, move |c| query::search_message(c, &id)).await
    })?;
    m.register_async_method("state_minerDeadlines", |params, ctx, _| async move {
        let id = actor_param(&params.one::<String>()?)?;
        on_core(&ctx, move |c| query::miner_deadlines(c, id)).await
    })?;
    m.register_async_method("state_networkPower", |_, ctx, _| async move {
        on_core(&ctx, |c| query::network_power(c)).await
    })?;
    m.register_async_method("state_marketBalance", |params, ctx, _| async move {
        let addr = address_param(&params)?;
        on_core(&ctx, move |c| query::market_balance(c, &addr)).await
    })?;
    m.register_async_method("state_marketDeal", |params, ctx, _| async move {
        let id: DealId = params.one()?;
        on_core(&ctx, move |c| query::market_deal(c, id)).await
    })?;
    m.register_async_method("state_marketDeals", |params, ctx, _| async move {
        let mut seq = params.sequence();
        let provider: Option<String> = seq.optional_next()?;
        let client: Option<String> = seq.optional_next()?;
        let from: Option<DealId> = seq.optional_next()?;
        let provider = provider.as_deref().map(actor_param).transpose()?;
        let client = client.as_deref().map(actor_param).transpose()?;
        on_core(&ctx, move |c| {
            query::market_deals(c, provider, client, from.unwrap_or(0))
        })
        .await
    })?;
    m.register_async_method("state_computeJob", |params, ctx, _| async move {
        let id: u64 = params.one()?;
        on_core(&ctx, move |c| query::compute_job(c, id)).await
    })?;
    m.register_async_method("state_computeJobs", |params, ctx, _| async move {
        let mut seq = params.sequence();
        let client: Option<String> = seq.optional_next()?;
        let provider: Option<String> = seq.optional_next()?;
        let verifier: Option<String> = seq.optional_next()?;
        let open_only: Option<bool> = seq.optional_next()?;
        let from: Option<u64> = seq.optional_next()?;
        let filter = JobFilter {
            client: client.as_deref().map(actor_param).transpose()?,
            provider: provider.as_deref().map(actor_param).transpose()?,
            verifier: verifier.as_deref().map(actor_param).transpose()?,
            open_only: open_only.unwrap_or(false),
        };
        on_core(&ctx, move |c| {
            query::compute_jobs(c, filter, from.unwrap_or(0))
        })
        .await
    })?;
    m.register_async_method("state_dealCollateralBounds", |params, ctx, _| async move {
        let piece_size: u64 = params.one()?;
        on_core(&ctx, move |c| query::deal_collateral_bounds(c, piece_size)).await
    })?;
    m.register_async_method("state_verifiedClientDataCap", |params, ctx, _| async move {
        let addr = address_param(&params)?;
        let cap = on_core(&ctx, move |c| query::verified_client_datacap(c, &addr)).await?;
        Ok::<_, ErrorObjectOwned>(cap.map(|b| b.to_string()))
    })?;
    m.register_async_method("state_verifierAllowance", |params, ctx, _| async move {
        let addr = address_param(&params)?;
        let cap = on_core(&ctx, move |c| query::verifier_allowance(c, &addr)).await?;
        Ok::<_, ErrorObjectOwned>(cap.map(|b| b.to_string()))
    })?;

    // mpool
    m.register_async_method("mpool_push", |params, ctx, _| async move {
        let msg: SignedMessage = match params.one::<MessageParam>()? {
            MessageParam::Hex(h) => decode_hex(h, "signed message").await?,
            MessageParam::Json(m) => *m,
        };
        let id = ctx.svc.push_message(msg).await.map_err(node_error)?;
        Ok::<_, ErrorObjectOwned>(types::Hash(id))
    })?;
    m.register_async_method("mpool_pending", |_, ctx, _| async move {
        on_core(&ctx, |c| Ok(query::pending(c))).await
    })?;
    m.register_async_method("mpool_nonce", |params, ctx, _| async move {
        let addr = address_param(&params)?;
        on_core(&ctx, move |c| Ok(query::next_nonce(c, &addr))).await
    })?;

    // net
    m.register_async_method("net_peers", |_, ctx, _| async move {
        let peers = ctx
            .svc
            .net()
            .peers()
            .await
            .map_err(|e| node_error(NodeError::Net(e.to_string())))?;
        Ok::<_, ErrorObjectOwned>(peers.into_iter().map(PeerView::from).collect::<Vec<_>>())
    })?;
    m.register_async_method("net_info", |_, ctx, _| async move {
        let net = ctx.svc.net();
        let addrs = net
            .listen_addrs()
            .await
            .map_err(|e| node_error(NodeError::Net(e.to_string())))?;
        Ok::<_, ErrorObjectOwned>(NetInfo {
            peer_id: net.local_peer_id().to_string(),
            listen_addrs: addrs.iter().map(ToString::to_string).collect(),
        })
    })?;
    m.register_async_method("net_connect", |params, ctx, _| async move {
        let s: String = params.one()?;
        let addr: libp2p::Multiaddr = s
            .parse()
            .map_err(|e| invalid_params(format!("{s:?} is not a multiaddr: {e}")))?;
        ctx.svc
            .net()
            .dial(addr)
            .await
            .map_err(|e| node_error(NodeError::Net(e.to_string())))
    })?;
    m.register_async_method("net_blockPeer", |params, ctx, _| async move {
        let peer = peer_param(&params)?;
        ctx.svc
            .net()
            .block_peer(peer)
            .await
            .map_err(|e| node_error(NodeError::Net(e.to_string())))
    })?;
    m.register_async_method("net_unblockPeer", |params, ctx, _| async move {
        let peer = peer_param(&params)?;
        ctx.svc
            .net()
            .unblock_peer(peer)
            .await
            .map_err(|e| node_error(NodeError::Net(e.to_string())))
    })?;

    // sync
    m.register_async_method("sync_status", |_, ctx, _| async move {
        let peers = ctx.svc.net().peers().await.map_or(0, |p| p.len() as u64);
        let (status, clock_epoch) =
            on_core(&ctx, |c| Ok((c.status(), c.genesis().epoch_at(unix_now())))).await?;
        Ok::<_, ErrorObjectOwned>(SyncStatusInfo {
            genesis: status.genesis,
            head: status.head.0,
            epoch: status.epoch,
            weight: status.weight,
            clock_epoch,
            lag: clock_epoch.saturating_sub(status.epoch),
            peers,
        })
    })?;

    // miner
    m.register_async_method("miner_base", |params, ctx, _| async move {
        let (miner, epoch): (String, Epoch) = params.parse()?;
        let id = actor_param(&miner)?;
        on_core(&ctx, move |c| c.miner_base(id, epoch)).await
    })?;
    m.register_async_method("miner_provingView", |params, ctx, _| async move {
        let id = actor_param(&params.one::<String>()?)?;
        on_core(&ctx, move |c| c.proving_view(id)).await
    })?;
    m.register_async_method("miner_submitBlock", |params, ctx, _| async move {
        let block: FullBlock = decode_hex(params.one::<String>()?, "block").await?;
        let verdict = ctx.svc.submit_block(block).await.map_err(node_error)?;
        Ok::<_, ErrorObjectOwned>(SubmitVerdict::from(verdict))
    })?;

    // node
    m.register_async_method("node_version", |_, ctx, _| async move {
        let (network, genesis) = on_core(&ctx, |c| {
            Ok((c.genesis().network().to_string(), c.genesis_id()))
        })
        .await?;
        Ok::<_, ErrorObjectOwned>(VersionInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            api_version: API_VERSION,
            network,
            genesis,
        })
    })?;
    Ok(m)
}

/// `chain_subscribeHeads`: forwards head events until the client unsubscribes or disconnects.
async fn heads(pending: PendingSubscriptionSink, ctx: Arc<RpcContext>) {
    let mut events = ctx.svc.subscribe_heads();
    let Ok(sink) = pending.accept().await else {
        return;
    };
    loop {
        tokio::select! {
            () = sink.closed() => break,
            event = events.recv() => match event {
                Ok(event) => {
                    let Ok(json) = serde_json::value::to_raw_value(&HeadEventInfo::from(event)) else {
                        break;
                    };
                    if sink.send(json).await.is_err() {
                        break;
                    }
                }
                // A slow subscriber misses events; the next one carries the current head.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => break,
            },
        }
    }
}

/// Every method is either open or protected, and the lists name only registered methods.
#[cfg(test)]
mod tests {
    #[test]
    fn lists_are_disjoint() {
        for m in super::PROTECTED_METHODS {
            assert!(!super::OPEN_METHODS.contains(m), "{m}");
        }
    }
}
