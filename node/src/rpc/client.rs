//! The typed RPC client: one async method per RPC method, returning the server's own result
//! types ([`super::types`]), over HTTP (jsonrpsee's client) with an optional bearer token; head
//! subscriptions over WebSocket.
//!
//! [`ApiInfo`] says which node to talk to and with which token; [`ApiInfo::resolve`] finds it
//! from the command line's `--api`/`--token`, the `LODE_API`/`LODE_TOKEN` environment variables,
//! or a devnet directory's `devnet.json`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), lode_node::rpc::client::ClientError> {
//! use lode_node::rpc::client::{ApiInfo, ApiOptions, NodeClient};
//! let api = ApiInfo::from_env(&ApiOptions::default())?;
//! let client = NodeClient::new(api)?;
//! let head = client.chain_head().await?;
//! println!("head at epoch {}", head.epoch);
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonrpsee::core::ClientError as RpcClientError;
use jsonrpsee::core::client::{ClientT, Subscription, SubscriptionClientT};
use jsonrpsee::core::traits::ToRpcParams;
use jsonrpsee::http_client::{HeaderMap, HeaderValue, HttpClient, HttpClientBuilder};
use jsonrpsee::ws_client::{WsClient, WsClientBuilder};
use lode_chain::message::SignedMessage;
use lode_chain::types::{ActorId, Address, DealId, Epoch, TokenAmount};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::types::{
    ActorInfo, BlockInfo, BlockMessageInfo, CollateralBoundsView, DealView, EscrowView,
    GenesisInfo, Hash, HeadEventInfo, HeadInfo, IdAddress, JobFilter, JobView, MessageInfo,
    MessageLookupInfo, MinerDeadlinesInfo, MinerInfoView, MinerPowerInfo, NetInfo,
    NetworkPowerInfo, PeerView, PreCommitView, SectorInfo, SubmitVerdict, SyncStatusInfo,
    TipsetInfo, VersionInfo,
};
use crate::core::{MinerBase, ProvingView};
use crate::wire::{self, FullBlock};

/// The API address used when none is given.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:1234";
/// The environment variable naming the API address.
pub const ENV_API: &str = "LODE_API";
/// The environment variable holding the API token.
pub const ENV_TOKEN: &str = "LODE_TOKEN";
/// The devnet description file in a devnet directory.
pub const DEVNET_FILE: &str = "devnet.json";
/// How long a call waits by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node wants its API token for this method, and it was missing or wrong (HTTP 401, or
    /// the unauthorised error on a WebSocket).
    #[error(
        "the node refused the call: it needs the node's API token (pass --token or set LODE_TOKEN)"
    )]
    Unauthorized,
    /// The node answered with another HTTP error status.
    #[error("the node answered HTTP {status}")]
    Http {
        /// The status.
        status: u16,
    },
    /// The node answered with a JSON-RPC error.
    #[error("{message} (RPC error {code})")]
    Rpc {
        /// The error code (see [`super::codes`]).
        code: i32,
        /// The node's message.
        message: String,
    },
    /// The node could not be reached, or the connection failed.
    #[error("cannot reach the node at {url}: {why}")]
    Transport {
        /// Where.
        url: String,
        /// What failed.
        why: String,
    },
    /// The node's answer does not have the expected shape (a different API version?).
    #[error("cannot decode the node's answer: {0}")]
    Decode(String),
    /// No answer in time.
    #[error("no answer from the node within {0:?}")]
    Timeout(Duration),
    /// The API address is not a URL this client can use.
    #[error("invalid API address {url:?}: {why}")]
    Url {
        /// The address given.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// A devnet file or token file could not be used.
    #[error("{path}: {why}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// The client's result type.
pub type ClientResult<T> = Result<T, ClientError>;

/// A byte count the node sends as a decimal string.
fn parse_bytes(s: &str) -> ClientResult<u128> {
    s.parse()
        .map_err(|e| ClientError::Decode(format!("{s:?} is not a byte count: {e}")))
}

/// Which node and which token.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiInfo {
    /// The API's URL (`http://host:port`; `ws://` is accepted too).
    pub url: String,
    /// The API token, if any (needed for protected methods only).
    pub token: Option<String>,
}

impl std::fmt::Debug for ApiInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("ApiInfo")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// Which entry of a `devnet.json` to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ApiTarget {
    /// The first node.
    #[default]
    Node,
    /// The first miner.
    Miner,
}

/// Where the caller says the API is (the command line's options).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ApiOptions {
    /// `--api URL`.
    pub api: Option<String>,
    /// `--token T`.
    pub token: Option<String>,
    /// `--devnet DIR`: a devnet directory with a `devnet.json`.
    pub devnet: Option<PathBuf>,
    /// Which devnet entry.
    pub target: ApiTarget,
}

impl std::fmt::Debug for ApiOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiOptions")
            .field("api", &self.api)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("devnet", &self.devnet)
            .field("target", &self.target)
            .finish()
    }
}

/// One endpoint of a `devnet.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevnetEndpoint {
    /// Its RPC address (`host:port` or a URL).
    pub rpc: String,
    /// Its token file (relative paths are relative to the devnet directory).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// The parts of a `devnet.json` the client reads (other fields are ignored).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevnetFile {
    /// The nodes.
    #[serde(default)]
    pub nodes: Vec<DevnetEndpoint>,
    /// The miners.
    #[serde(default)]
    pub miners: Vec<DevnetEndpoint>,
}

impl ApiInfo {
    /// Resolves the API from `opts`, then the environment (`env` looks a variable up), then
    /// `opts.devnet`'s `devnet.json`, then [`DEFAULT_API_URL`]. The token comes from `--token`,
    /// then `LODE_TOKEN`, then — only when the address came from the devnet file too — the
    /// entry's token file; otherwise there is none.
    ///
    /// # Errors
    /// [`ClientError::Config`] when the devnet file or its token file cannot be read or has no
    /// entry of the target kind; [`ClientError::Url`] for an unusable address.
    pub fn resolve(
        opts: &ApiOptions,
        env: impl Fn(&str) -> Option<String>,
    ) -> ClientResult<ApiInfo> {
        let nonempty = |s: Option<String>| s.filter(|v| !v.trim().is_empty());
        let flag_token = nonempty(opts.token.clone()).or_else(|| nonempty(env(ENV_TOKEN)));
        if let Some(url) = nonempty(opts.api.clone()).or_else(|| nonempty(env(ENV_API))) {
            return Ok(ApiInfo {
                url: http_url(&url)?,
                token: flag_token.map(|t| t.trim().to_string()),
            });
        }
        if let Some(dir) = &opts.devnet {
            let entry = devnet_entry(dir, opts.target)?;
            let token = match flag_token {
                Some(t) => Some(t.trim().to_string()),
                None => match &entry.token_file {
                    Some(f) => Some(read_token_file(&dir.join(f))?),
                    None => None,
                },
            };
            return Ok(ApiInfo {
                url: http_url(&entry.rpc)?,
                token,
            });
        }
        Ok(ApiInfo {
            url: DEFAULT_API_URL.to_string(),
            token: flag_token.map(|t| t.trim().to_string()),
        })
    }

    /// [`ApiInfo::resolve`] with the process's environment.
    ///
    /// # Errors
    /// As [`ApiInfo::resolve`].
    pub fn from_env(opts: &ApiOptions) -> ClientResult<ApiInfo> {
        ApiInfo::resolve(opts, |k| std::env::var(k).ok())
    }

    /// The WebSocket URL of the same server.
    ///
    /// # Errors
    /// [`ClientError::Url`] for an unusable address.
    pub fn ws_url(&self) -> ClientResult<String> {
        let http = http_url(&self.url)?;
        Ok(match http.strip_prefix("https://") {
            Some(rest) => format!("wss://{rest}"),
            None => format!("ws://{}", http.strip_prefix("http://").unwrap_or(&http)),
        })
    }

    fn headers(&self) -> ClientResult<HeaderMap> {
        let mut headers = HeaderMap::new();
        if let Some(token) = &self.token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                ClientError::Config {
                    path: PathBuf::from("<token>"),
                    why: "the token has characters a header cannot carry".into(),
                }
            })?;
            value.set_sensitive(true);
            headers.insert(http::header::AUTHORIZATION, value);
        }
        Ok(headers)
    }
}

/// Reads the first node's or miner's entry of `<dir>/devnet.json`.
fn devnet_entry(dir: &Path, target: ApiTarget) -> ClientResult<DevnetEndpoint> {
    let path = dir.join(DEVNET_FILE);
    let bytes = std::fs::read(&path).map_err(|e| ClientError::Config {
        path: path.clone(),
        why: e.to_string(),
    })?;
    let file: DevnetFile = serde_json::from_slice(&bytes).map_err(|e| ClientError::Config {
        path: path.clone(),
        why: e.to_string(),
    })?;
    let (list, what) = match target {
        ApiTarget::Node => (file.nodes, "node"),
        ApiTarget::Miner => (file.miners, "miner"),
    };
    list.into_iter().next().ok_or_else(|| ClientError::Config {
        path,
        why: format!("no {what} is listed"),
    })
}

fn read_token_file(path: &Path) -> ClientResult<String> {
    let config = |why: String| ClientError::Config {
        path: path.to_path_buf(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| config(e.to_string()))?;
    if meta.len() > 1024 {
        return Err(config("too large to be a token file".into()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| config(e.to_string()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(config("the token file is empty".into()));
    }
    Ok(token.to_string())
}

/// `host:port`, `http://…`, `https://…`, `ws://…` or `wss://…` as an HTTP(S) URL.
fn http_url(s: &str) -> ClientResult<String> {
    let s = s.trim();
    let bad = |why: &str| ClientError::Url {
        url: s.to_string(),
        why: why.to_string(),
    };
    let (scheme, rest) = s.split_once("://").unwrap_or(("http", s));
    let scheme = match scheme {
        "http" | "ws" => "http",
        "https" | "wss" => "https",
        _ => return Err(bad("use http://, https://, ws:// or wss://")),
    };
    let rest = rest.trim_end_matches('/');
    if rest.split('/').next().unwrap_or("").is_empty() {
        return Err(bad("no host"));
    }
    Ok(format!("{scheme}://{rest}"))
}

/// Positional parameters.
struct Positional(Vec<Value>);

impl ToRpcParams for Positional {
    fn to_rpc_params(self) -> Result<Option<Box<serde_json::value::RawValue>>, serde_json::Error> {
        serde_json::value::to_raw_value(&self.0).map(Some)
    }
}

/// A client of one node's API (cheap to clone).
#[derive(Clone, Debug)]
pub struct NodeClient {
    http: HttpClient,
    api: ApiInfo,
    timeout: Duration,
}

impl NodeClient {
    /// A client of `api` with the default timeout.
    ///
    /// # Errors
    /// [`ClientError::Url`] for an unusable address.
    pub fn new(api: ApiInfo) -> ClientResult<Self> {
        NodeClient::with_timeout(api, DEFAULT_TIMEOUT)
    }

    /// A client of `api` whose calls wait at most `timeout`.
    ///
    /// # Errors
    /// [`ClientError::Url`] for an unusable address.
    pub fn with_timeout(api: ApiInfo, timeout: Duration) -> ClientResult<Self> {
        let url = http_url(&api.url)?;
        let http = HttpClientBuilder::default()
            .request_timeout(timeout)
            .max_request_size(super::RpcConfig::default().max_request_bytes)
            .max_response_size(super::RpcConfig::default().max_response_bytes)
            .set_headers(api.headers()?)
            .build(&url)
            .map_err(|e| ClientError::Url {
                url: url.clone(),
                why: e.to_string(),
            })?;
        Ok(NodeClient {
            http,
            api: ApiInfo { url, ..api },
            timeout,
        })
    }

    /// Where it connects.
    pub fn api(&self) -> &ApiInfo {
        &self.api
    }

    fn map_error(&self, e: RpcClientError) -> ClientError {
        map_error(&self.api.url, self.timeout, e)
    }

    async fn call<R: DeserializeOwned>(&self, method: &str, params: Vec<Value>) -> ClientResult<R> {
        self.http
            .request(method, Positional(params))
            .await
            .map_err(|e| self.map_error(e))
    }

    /// Calls any method with positional JSON parameters and returns the raw JSON result.
    ///
    /// # Errors
    /// As every call: [`ClientError`].
    pub async fn call_raw(&self, method: &str, params: Vec<Value>) -> ClientResult<Value> {
        self.call(method, params).await
    }

    /// `chain_head`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn chain_head(&self) -> ClientResult<HeadInfo> {
        self.call("chain_head", vec![]).await
    }

    /// `chain_tipsetByHeight`: `None` for a null round or a future epoch.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn chain_tipset_by_height(&self, epoch: Epoch) -> ClientResult<Option<TipsetInfo>> {
        self.call("chain_tipsetByHeight", vec![epoch.into()]).await
    }

    /// `chain_getBlock`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn chain_get_block(&self, id: &[u8; 32]) -> ClientResult<Option<BlockInfo>> {
        self.call("chain_getBlock", vec![hex::encode(id).into()])
            .await
    }

    /// `chain_getMessages`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn chain_get_messages(
        &self,
        id: &[u8; 32],
    ) -> ClientResult<Option<Vec<BlockMessageInfo>>> {
        self.call("chain_getMessages", vec![hex::encode(id).into()])
            .await
    }

    /// `chain_genesis`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn chain_genesis(&self) -> ClientResult<GenesisInfo> {
        self.call("chain_genesis", vec![]).await
    }

    /// `state_balance`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn state_balance(&self, addr: &Address) -> ClientResult<TokenAmount> {
        self.call("state_balance", vec![addr.to_string().into()])
            .await
    }

    /// `state_actor`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn state_actor(&self, addr: &Address) -> ClientResult<Option<ActorInfo>> {
        self.call("state_actor", vec![addr.to_string().into()])
            .await
    }

    /// `state_lookupId`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn state_lookup_id(&self, addr: &Address) -> ClientResult<Option<ActorId>> {
        let id: Option<IdAddress> = self
            .call("state_lookupId", vec![addr.to_string().into()])
            .await?;
        Ok(id.map(|i| i.0))
    }

    /// `state_minerPower`.
    ///
    /// # Errors
    /// [`ClientError`] (`Rpc` with [`super::codes::NOT_FOUND`] for a non-miner).
    pub async fn state_miner_power(&self, miner: ActorId) -> ClientResult<MinerPowerInfo> {
        self.call("state_minerPower", vec![miner.to_string().into()])
            .await
    }

    /// `state_minerInfo`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn state_miner_info(&self, miner: ActorId) -> ClientResult<MinerInfoView> {
        self.call("state_minerInfo", vec![miner.to_string().into()])
            .await
    }

    /// `state_minerSectors`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn state_miner_sectors(&self, miner: ActorId) -> ClientResult<Vec<SectorInfo>> {
        self.call("state_minerSectors", vec![miner.to_string().into()])
            .await
    }

    /// `state_minerPreCommits`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn state_miner_precommits(&self, miner: ActorId) -> ClientResult<Vec<PreCommitView>> {
        self.call("state_minerPreCommits", vec![miner.to_string().into()])
            .await
    }

    /// `state_sealTicket`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn state_seal_ticket(&self, miner: ActorId, epoch: Epoch) -> ClientResult<[u8; 32]> {
        let ticket: Hash = self
            .call(
                "state_sealTicket",
                vec![miner.to_string().into(), epoch.into()],
            )
            .await?;
        Ok(ticket.0)
    }

    /// `state_searchMsg`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn state_search_msg(&self, id: [u8; 32]) -> ClientResult<Option<MessageLookupInfo>> {
        self.call("state_searchMsg", vec![hex::encode(id).into()])
            .await
    }

    /// `state_minerDeadlines`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn state_miner_deadlines(&self, miner: ActorId) -> ClientResult<MinerDeadlinesInfo> {
        self.call("state_minerDeadlines", vec![miner.to_string().into()])
            .await
    }

    /// `state_networkPower`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn state_network_power(&self) -> ClientResult<NetworkPowerInfo> {
        self.call("state_networkPower", vec![]).await
    }

    /// `state_marketBalance`: an actor's market escrow.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn state_market_balance(&self, addr: &Address) -> ClientResult<EscrowView> {
        self.call("state_marketBalance", vec![addr.to_string().into()])
            .await
    }

    /// `state_marketDeal`: a published deal, `None` when unknown or ended.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn state_market_deal(&self, id: DealId) -> ClientResult<Option<DealView>> {
        self.call("state_marketDeal", vec![id.into()]).await
    }

    /// `state_marketDeals`: the deals of a provider and/or a client (both `None`: all), from deal
    /// id `from`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn state_market_deals(
        &self,
        provider: Option<ActorId>,
        client: Option<ActorId>,
        from: DealId,
    ) -> ClientResult<Vec<DealView>> {
        let addr = |a: Option<ActorId>| a.map_or(Value::Null, |a| Value::from(a.to_string()));
        self.call(
            "state_marketDeals",
            vec![addr(provider), addr(client), from.into()],
        )
        .await
    }

    /// `state_computeJob`: a compute job, `None` for an unknown id.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn state_compute_job(&self, id: u64) -> ClientResult<Option<JobView>> {
        self.call("state_computeJob", vec![id.into()]).await
    }

    /// `state_computeJobs`: jobs matching `filter`, from job id `from`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn state_compute_jobs(
        &self,
        filter: JobFilter,
        from: u64,
    ) -> ClientResult<Vec<JobView>> {
        let addr = |a: Option<ActorId>| a.map_or(Value::Null, |a| Value::from(a.to_string()));
        self.call(
            "state_computeJobs",
            vec![
                addr(filter.client),
                addr(filter.provider),
                addr(filter.verifier),
                filter.open_only.into(),
                from.into(),
            ],
        )
        .await
    }

    /// `state_dealCollateralBounds`: the collateral bounds of a deal of `piece_size` padded bytes.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn state_deal_collateral_bounds(
        &self,
        piece_size: u64,
    ) -> ClientResult<CollateralBoundsView> {
        self.call("state_dealCollateralBounds", vec![piece_size.into()])
            .await
    }

    /// `state_verifiedClientDataCap`: a client's DataCap in bytes, `None` for none.
    ///
    /// # Errors
    /// [`ClientError`] (`Decode` for a malformed number).
    pub async fn state_verified_client_datacap(
        &self,
        addr: &Address,
    ) -> ClientResult<Option<u128>> {
        let v: Option<String> = self
            .call("state_verifiedClientDataCap", vec![addr.to_string().into()])
            .await?;
        v.map(|s| parse_bytes(&s)).transpose()
    }

    /// `state_verifierAllowance`: a verifier's remaining allowance in bytes, `None` for a
    /// non-verifier.
    ///
    /// # Errors
    /// [`ClientError`] (`Decode` for a malformed number).
    pub async fn state_verifier_allowance(&self, addr: &Address) -> ClientResult<Option<u128>> {
        let v: Option<String> = self
            .call("state_verifierAllowance", vec![addr.to_string().into()])
            .await?;
        v.map(|s| parse_bytes(&s)).transpose()
    }

    /// `mpool_push`, sending the message's exact postcard encoding; returns its id.
    ///
    /// # Errors
    /// [`ClientError`] (`Rpc` with [`super::codes::REFUSED`] when the mempool refuses it).
    pub async fn mpool_push(&self, msg: &SignedMessage) -> ClientResult<[u8; 32]> {
        let id: Hash = self
            .call("mpool_push", vec![hex::encode(wire::encode(msg)).into()])
            .await?;
        Ok(id.0)
    }

    /// `mpool_pending`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn mpool_pending(&self) -> ClientResult<Vec<MessageInfo>> {
        self.call("mpool_pending", vec![]).await
    }

    /// `mpool_nonce`: `None` when the address names no account.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn mpool_nonce(&self, addr: &Address) -> ClientResult<Option<u64>> {
        self.call("mpool_nonce", vec![addr.to_string().into()])
            .await
    }

    /// `net_peers`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn net_peers(&self) -> ClientResult<Vec<PeerView>> {
        self.call("net_peers", vec![]).await
    }

    /// `net_info`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn net_info(&self) -> ClientResult<NetInfo> {
        self.call("net_info", vec![]).await
    }

    /// `net_connect` (protected).
    ///
    /// # Errors
    /// [`ClientError`] ([`ClientError::Unauthorized`] without the token).
    pub async fn net_connect(&self, multiaddr: &str) -> ClientResult<()> {
        self.call("net_connect", vec![multiaddr.into()]).await
    }

    /// `net_blockPeer` (protected).
    ///
    /// # Errors
    /// [`ClientError`] ([`ClientError::Unauthorized`] without the token).
    pub async fn net_block_peer(&self, peer_id: &str) -> ClientResult<()> {
        self.call("net_blockPeer", vec![peer_id.into()]).await
    }

    /// `net_unblockPeer` (protected).
    ///
    /// # Errors
    /// [`ClientError`] ([`ClientError::Unauthorized`] without the token).
    pub async fn net_unblock_peer(&self, peer_id: &str) -> ClientResult<()> {
        self.call("net_unblockPeer", vec![peer_id.into()]).await
    }

    /// `sync_status`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn sync_status(&self) -> ClientResult<SyncStatusInfo> {
        self.call("sync_status", vec![]).await
    }

    /// `miner_base` (protected).
    ///
    /// # Errors
    /// [`ClientError`] ([`ClientError::Unauthorized`] without the token).
    pub async fn miner_base(&self, miner: ActorId, epoch: Epoch) -> ClientResult<MinerBase> {
        self.call("miner_base", vec![miner.to_string().into(), epoch.into()])
            .await
    }

    /// `miner_provingView`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn miner_proving_view(&self, miner: ActorId) -> ClientResult<ProvingView> {
        self.call("miner_provingView", vec![miner.to_string().into()])
            .await
    }

    /// `miner_submitBlock` (protected), sending the block's postcard encoding.
    ///
    /// # Errors
    /// [`ClientError`] ([`ClientError::Unauthorized`] without the token).
    pub async fn miner_submit_block(&self, block: &FullBlock) -> ClientResult<SubmitVerdict> {
        self.call(
            "miner_submitBlock",
            vec![hex::encode(wire::encode(block)).into()],
        )
        .await
    }

    /// `node_version`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn node_version(&self) -> ClientResult<VersionInfo> {
        self.call("node_version", vec![]).await
    }

    /// Opens a WebSocket to the node and subscribes to head changes (`chain_subscribeHeads`).
    ///
    /// # Errors
    /// [`ClientError`] when the connection or the subscription fails.
    pub async fn subscribe_heads(&self) -> ClientResult<HeadSubscription> {
        let url = self.api.ws_url()?;
        let ws = WsClientBuilder::default()
            .request_timeout(self.timeout)
            .set_headers(self.api.headers()?)
            .build(&url)
            .await
            .map_err(|e| map_error(&url, self.timeout, e))?;
        let sub = ws
            .subscribe(
                "chain_subscribeHeads",
                Positional(vec![]),
                "chain_unsubscribeHeads",
            )
            .await
            .map_err(|e| map_error(&url, self.timeout, e))?;
        Ok(HeadSubscription { sub, _ws: ws })
    }
}

/// Head changes from a node, until dropped.
#[derive(Debug)]
pub struct HeadSubscription {
    sub: Subscription<HeadEventInfo>,
    _ws: WsClient,
}

impl HeadSubscription {
    /// The next head change; `None` when the node closed the subscription or the connection.
    pub async fn next(&mut self) -> Option<ClientResult<HeadEventInfo>> {
        self.sub
            .next()
            .await
            .map(|r| r.map_err(|e| ClientError::Decode(e.to_string())))
    }

    /// Unsubscribes and closes the connection.
    ///
    /// # Errors
    /// [`ClientError::Transport`] when the connection is already gone.
    pub async fn unsubscribe(self) -> ClientResult<()> {
        self.sub
            .unsubscribe()
            .await
            .map_err(|e| ClientError::Transport {
                url: String::new(),
                why: e.to_string(),
            })
    }
}

fn map_error(url: &str, timeout: Duration, e: RpcClientError) -> ClientError {
    match e {
        RpcClientError::Call(obj) if obj.code() == super::codes::UNAUTHORIZED => {
            ClientError::Unauthorized
        }
        RpcClientError::Call(obj) => ClientError::Rpc {
            code: obj.code(),
            message: obj.message().to_string(),
        },
        RpcClientError::RequestTimeout => ClientError::Timeout(timeout),
        RpcClientError::ParseError(e) => ClientError::Decode(e.to_string()),
        RpcClientError::Transport(e) => {
            // jsonrpsee reports a non-2xx status as the HTTP transport's `Rejected`.
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e.as_ref());
            while let Some(err) = source {
                if let Some(jsonrpsee::http_client::transport::Error::Rejected { status_code }) =
                    err.downcast_ref::<jsonrpsee::http_client::transport::Error>()
                {
                    return if *status_code == 401 {
                        ClientError::Unauthorized
                    } else {
                        ClientError::Http {
                            status: *status_code,
                        }
                    };
                }
                source = err.source();
            }
            ClientError::Transport {
                url: url.to_string(),
                why: e.to_string(),
            }
        }
        other => ClientError::Transport {
            url: url.to_string(),
            why: other.to_string(),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn urls() {
        assert_eq!(http_url("127.0.0.1:5").unwrap(), "http://127.0.0.1:5");
        assert_eq!(http_url("ws://h:5/").unwrap(), "http://h:5");
        assert_eq!(http_url("wss://h:5").unwrap(), "https://h:5");
        assert!(http_url("ftp://h").is_err());
        assert!(http_url("http://").is_err());
        let api = ApiInfo {
            url: "http://h:5".into(),
            token: None,
        };
        assert_eq!(api.ws_url().unwrap(), "ws://h:5");
    }

    #[test]
    fn resolution_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("node0.token"), "aa\n").unwrap();
        std::fs::write(dir.path().join("miner0.token"), "bb").unwrap();
        std::fs::write(
            dir.path().join(DEVNET_FILE),
            r#"{"network":"x","nodes":[{"rpc":"127.0.0.1:7001","token_file":"node0.token","p2p":"/ip4/1.2.3.4/tcp/1"},{"rpc":"127.0.0.1:7002"}],
               "miners":[{"rpc":"http://127.0.0.1:7101","token_file":"miner0.token"}]}"#,
        )
        .unwrap();
        let devnet = ApiOptions {
            devnet: Some(dir.path().to_path_buf()),
            ..ApiOptions::default()
        };
        let node = ApiInfo::resolve(&devnet, no_env).unwrap();
        assert_eq!(node.url, "http://127.0.0.1:7001");
        assert_eq!(node.token.as_deref(), Some("aa"));
        let miner = ApiInfo::resolve(
            &ApiOptions {
                target: ApiTarget::Miner,
                ..devnet.clone()
            },
            no_env,
        )
        .unwrap();
        assert_eq!(miner.url, "http://127.0.0.1:7101");
        assert_eq!(miner.token.as_deref(), Some("bb"));
        // The environment beats the devnet file, and the devnet token is not sent elsewhere.
        let env = |k: &str| (k == ENV_API).then(|| "127.0.0.1:9".to_string());
        let other = ApiInfo::resolve(&devnet, env).unwrap();
        assert_eq!(other.url, "http://127.0.0.1:9");
        assert_eq!(other.token, None);
        // Flags beat the environment.
        let flags = ApiOptions {
            api: Some("127.0.0.1:8".into()),
            token: Some("sekrit".into()),
            ..devnet.clone()
        };
        let env = |k: &str| Some(format!("{k}-value"));
        let f = ApiInfo::resolve(&flags, env).unwrap();
        assert_eq!(
            (f.url.as_str(), f.token.as_deref()),
            ("http://127.0.0.1:8", Some("sekrit"))
        );
        // Defaults.
        let d = ApiInfo::resolve(&ApiOptions::default(), no_env).unwrap();
        assert_eq!((d.url.as_str(), d.token), (DEFAULT_API_URL, None));
        assert!(!format!("{f:?}").contains("sekrit"));
        assert!(!format!("{flags:?}").contains("sekrit"));
        // Missing pieces are errors naming the file.
        std::fs::remove_file(dir.path().join("node0.token")).unwrap();
        assert!(matches!(
            ApiInfo::resolve(&devnet, no_env),
            Err(ClientError::Config { .. })
        ));
        let empty = tempfile::tempdir().unwrap();
        let none = ApiOptions {
            devnet: Some(empty.path().to_path_buf()),
            ..ApiOptions::default()
        };
        assert!(matches!(
            ApiInfo::resolve(&none, no_env),
            Err(ClientError::Config { .. })
        ));
    }
}
