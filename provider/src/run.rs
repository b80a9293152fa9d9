//! `lode provider run`: a provider from its directory — configuration, keys, sectors, the node it
//! talks to, and the mining and proving loops.
//!
//! A provider's directory holds:
//!
//! | path | what |
//! |---|---|
//! | `config.toml` | [`ProviderSettings`] |
//! | `genesis.json` | the network's genesis (the slot clock and the rules; another path may be configured) |
//! | `worker.key` | the worker's BLS secret key, hex (`0600`; never logged) |
//! | `sectors/` | long-term storage: sealed sector directories, found by scanning (Finalize moves newly sealed sectors there) |
//! | `scratch/` | sealing scratch: the sectors being sealed, one directory each (`[sealing] scratch`; the prover looks there only for a sector on chain that Finalize has not moved yet) |
//! | `pipeline/` | the sealing pipeline's database (sled): one record per sector (`[sealing] db`) |
//! | `cache/` | the SDR parent cache, shared by every sector of a size (`[sealing] parent_cache`) |
//! | `market/` | the market's deal records (sled; `[market] db`) |
//! | `deal-scratch/` | deal data received and not yet handed to sealing (`[market] scratch`) |
//! | `market.key` | the market host's libp2p key (`0600`; `[market] key`): its peer id, announced on chain |
//! | `token` | the provider API's bearer token for protected methods (`0600`; created at the first start) |
//! | `endpoints.json` | written at every start: the API URL and token file, the metrics URL, the actor and the process id |
//! | `lock` | held (an exclusive file lock) while a `lode provider run` uses the directory: a second one refuses to start |

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lode_chain::crypto::SecretKey;
use lode_chain::types::ActorId;
use lode_node::genesis::GenesisFile;
use lode_node::rpc::client::{ApiInfo, NodeClient};
use lode_proofs::params::ParamStore;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::api::NodeApi;
use crate::daemon::{Timing, chain_gauges_loop, mine_loop, post_loop};
use crate::error::{ProviderError, ProviderResult};
use crate::metrics::ProviderMetrics;
use crate::miner::Miner;
use crate::pipeline::PipelineStore;
use crate::pipeline::params::PorepParams;
use crate::pipeline::runner::{Pipeline, PipelineConfig, run_pipeline};
use crate::poster::{Messenger, Poster, ProvingSettings};
use crate::prover::{Prover, SectorStore};
use crate::rpc::{Identity, ProviderRpc};
use crate::status::MiningEvents;

/// The configuration file's name in a provider's directory.
pub const CONFIG_FILE: &str = "config.toml";
/// The endpoints file's name in a provider's directory.
pub const ENDPOINTS_FILE: &str = "endpoints.json";

/// The file a running provider holds an exclusive lock on (released by the system when the
/// process ends, however it ends).
pub const LOCK_FILE: &str = "lock";

/// Takes the provider directory's lock: one daemon per directory, so that two never mine, prove
/// and sign for one miner at once (two would double every PoSt and fight over the worker's
/// nonces). A lock left by a killed process is released by the system with it.
fn lock_dir(dir: &Path) -> ProviderResult<std::fs::File> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| config_error(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(config_error(
            &path,
            "another `lode provider run` uses this directory (its process id is in endpoints.json): stop it first",
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(config_error(&path, e)),
    }
}

/// `config.toml` of a provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// The miner actor (`l0…` id address or its number).
    pub actor: String,
    /// The node's RPC URL.
    pub node_api: String,
    /// The node's token file (relative to the provider's directory).
    pub node_token_file: PathBuf,
    /// The genesis file (relative to the provider's directory).
    #[serde(default = "default_genesis")]
    pub genesis: PathBuf,
    /// The worker key file (relative to the provider's directory).
    #[serde(default = "default_worker_key")]
    pub worker_key: PathBuf,
    /// The sector store (relative to the provider's directory).
    #[serde(default = "default_sectors")]
    pub sectors: PathBuf,
    /// The Groth16 parameters (absolute, or relative to the provider's directory).
    pub params_dir: PathBuf,
    /// The provider's HTTP address: `GET /metrics` (Prometheus) and the dashboard (`GET /`,
    /// `GET /api/dashboard.json`; see [`crate::dashboard`]).
    #[serde(default = "default_metrics")]
    pub metrics: SocketAddr,
    /// The provider's JSON-RPC API address (see [`crate::rpc`]); port 0 picks a free port,
    /// recorded in `endpoints.json`.
    #[serde(default = "default_api")]
    pub api: SocketAddr,
    /// How Window PoSts are proven and sectors checked (the `[proving]` table: `margin_epochs`,
    /// `check_ahead_epochs`; see [`ProvingSettings`]).
    #[serde(default)]
    pub proving: ProvingSettings,
    /// The sealing pipeline (`[sealing]`).
    #[serde(default)]
    pub sealing: SealingSettings,
    /// The task scheduler (`[tasks]`: the machine, per-kind limits, the PoSt reserve, the
    /// history's retention).
    #[serde(default)]
    pub tasks: crate::tasks::SchedulerConfig,
    /// The deal market (`[market]`: the ask, the deal policy, transfers, retrieval; see
    /// [`crate::market`]).
    #[serde(default)]
    pub market: crate::market::MarketSettings,
    /// A cluster of workers sealing for this provider (`[cluster]`: `db`, `secret_file`,
    /// `lease_secs`, `lost_after_secs`; see [`ClusterSettings`]).
    #[serde(default, skip_serializing_if = "ClusterSettings::is_default")]
    pub cluster: ClusterSettings,
}

/// `[cluster]` of `config.toml`: the PostgreSQL database a cluster's workers and this provider
/// share. With it, committed-capacity sectors are sealed by `lode worker run` processes on any
/// machine, and this provider sends the chain messages only while it holds the miner's leader
/// lease (a second `lode provider run` of the same miner waits as a standby).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// The cluster's database (`postgres://user@host/db`, or `postgresql:///db?host=/socket/dir`);
    /// none: everything runs here.
    pub db: Option<String>,
    /// The cluster secret the workers' file servers ask for (relative to the provider's
    /// directory; the same file as the workers' `--secret-file`).
    pub secret_file: PathBuf,
    /// The leader lease's length: a provider that stops renewing it (killed, cut off) is replaced
    /// by a standby this long after its last renewal.
    pub lease_secs: u64,
    /// How long a worker holding a sector's layers may stay unregistered (stopped, its machine
    /// down) before they count as lost and the sector is sealed again from PreCommit1 elsewhere.
    pub lost_after_secs: u64,
    /// Keep sealed sectors on the workers that sealed them (their storage paths are long-term
    /// storage; Finalize runs there) rather than bringing them into this provider's store; they
    /// are proven through those workers, which must then be up at every deadline.
    pub store_on_workers: bool,
    /// Window PoSt SNARKs on the cluster's `wdpost` workers: how long this provider waits for a
    /// worker's proof of a partition before proving the partition itself (at most a third of the
    /// challenge window). 0, the default, proves every partition here. The wait comes out of the
    /// window, which must still hold a proof made here and its message landing: set it only where
    /// the window is long beside those (e.g. 300 s for 30-minute windows), not on a devnet's.
    pub window_post_wait_secs: u64,
    /// Winning PoSt SNARKs on the cluster's `wnpost` workers: how long this provider waits for a
    /// worker's proof of an election it won before proving it itself, in milliseconds (at most
    /// half an epoch). 0, the default, proves every election here. The block waits for the proof
    /// and must still be made in its epoch, so a worker must prove faster than this machine for
    /// the wait to pay (a GPU machine beside a provider without one).
    pub winning_post_wait_ms: u64,
    /// Where this provider serves its sealing scratch to the workers (read-only, with the
    /// cluster secret), e.g. `"0.0.0.0:2347"`: then deal sectors are sealed on the cluster too,
    /// their PreCommit1 workers fetching the data packed here. None, the default: deal sectors
    /// are sealed here. Ignored with `store_on_workers`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files_listen: Option<std::net::SocketAddr>,
    /// The URL the workers reach that server at (default: `http://` and the bound address, the
    /// host name for an unspecified one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files_url: Option<String>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            db: None,
            secret_file: PathBuf::from("cluster.secret"),
            lease_secs: 30,
            lost_after_secs: crate::pipeline::remote::DEFAULT_LOST_AFTER.as_secs(),
            store_on_workers: false,
            window_post_wait_secs: 0,
            winning_post_wait_ms: 0,
            files_listen: None,
            files_url: None,
        }
    }
}

impl ClusterSettings {
    fn is_default(&self) -> bool {
        *self == ClusterSettings::default()
    }
}

/// How long the provider waits for the cluster's PoSt SNARKs (`[cluster] window_post_wait_secs`
/// and `winning_post_wait_ms`; 0 proves that kind here): a Window PoSt partition's at most a third
/// of the challenge window, a Winning PoSt's at most half an epoch (a larger setting is capped,
/// with a warning).
pub fn post_waits(
    cluster: &ClusterSettings,
    policy: &lode_chain::Policy,
) -> crate::pipeline::remote::PostWaits {
    use std::time::Duration;
    let epoch_ms = policy.epoch_duration_seconds.saturating_mul(1000);
    let window_cap = policy
        .wpost_challenge_window
        .saturating_mul(policy.epoch_duration_seconds)
        .saturating_div(3)
        .max(1);
    let winning_cap = (epoch_ms / 2).max(1);
    let capped = |asked: u64, cap: u64, name: &str, unit: &str| {
        if asked > cap {
            tracing::warn!(
                asked,
                cap,
                "[cluster] {name} is more than {}: waiting {cap} {unit}",
                if unit == "s" {
                    "a third of the challenge window"
                } else {
                    "half an epoch"
                }
            );
        }
        asked.min(cap)
    };
    crate::pipeline::remote::PostWaits {
        window: (cluster.window_post_wait_secs > 0).then(|| {
            Duration::from_secs(capped(
                cluster.window_post_wait_secs,
                window_cap,
                "window_post_wait_secs",
                "s",
            ))
        }),
        winning: (cluster.winning_post_wait_ms > 0).then(|| {
            Duration::from_millis(capped(
                cluster.winning_post_wait_ms,
                winning_cap,
                "winning_post_wait_ms",
                "ms",
            ))
        }),
    }
}

/// `[sealing]` of `config.toml`: where the sealing pipeline keeps its records and its scratch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SealingSettings {
    /// Whether the pipeline runs (`false`: a proving-only provider; pledges are refused).
    pub enabled: bool,
    /// The pipeline's database (relative to the provider's directory).
    pub db: PathBuf,
    /// The SDR parent cache's directory (absolute, or relative to the provider's directory).
    pub parent_cache: PathBuf,
    /// The sealing scratch (absolute, or relative to the provider's directory): the phases
    /// before Finalize work here, Finalize moves the sector to the sector store (`sectors`).
    /// A fast disk with room for the sectors sealed at once; it may be another filesystem.
    pub scratch: PathBuf,
    /// Whether Finalize keeps each committed-capacity sector's unsealed copy (moved to the
    /// sector store beside the replica); `false` deletes it.
    pub keep_unsealed: bool,
    /// Whether Finalize keeps each deal sector's unsealed copy (default `true`: retrievals read
    /// it directly); `false` deletes it, and the first retrieval of a piece unseals its sector
    /// (as long as PreCommit1) into a new copy.
    pub keep_unsealed_deals: bool,
    /// Epochs a deal sector waits for more deals after its first piece before it is sealed
    /// (unless full first); default a quarter of a proving period.
    pub wait_deals_epochs: Option<u64>,
    /// A deal sector starts sealing once its earliest deal's start epoch is this many epochs
    /// away (the expected time to seal and prove it); default: the seed's delay × 4 plus the
    /// seed's confidence and the messages' batch waits (62 on the devnet).
    pub deal_start_margin_epochs: Option<u64>,
    /// How long, in epochs, a sector ready for its pre-commit or prove-commit waits for others
    /// to share one message (0: only the sectors ready in the same tick share it).
    pub batch_wait_epochs: u64,
    /// The most sectors one pre-commit or prove-commit message carries.
    pub max_batch: usize,
    /// Where batched PreCommit1 labels and PreCommit2 hashes: `auto` (a GPU when the machine
    /// has one: CUDA, then an OpenCL GPU; the CPU otherwise), `off`, `opencl` or `cuda` (without
    /// that device the pipeline does not start, and says why).
    pub gpu: lode_sealing::accel::GpuChoice,
}

impl Default for SealingSettings {
    fn default() -> Self {
        SealingSettings {
            enabled: true,
            db: PathBuf::from("pipeline"),
            parent_cache: PathBuf::from("cache"),
            scratch: PathBuf::from("scratch"),
            keep_unsealed: false,
            keep_unsealed_deals: true,
            wait_deals_epochs: None,
            deal_start_margin_epochs: None,
            batch_wait_epochs: crate::pipeline::runner::BATCH_WAIT_EPOCHS,
            max_batch: crate::pipeline::runner::MAX_BATCH,
            gpu: lode_sealing::accel::GpuChoice::Auto,
        }
    }
}

fn default_genesis() -> PathBuf {
    PathBuf::from("genesis.json")
}
fn default_worker_key() -> PathBuf {
    PathBuf::from("worker.key")
}
fn default_sectors() -> PathBuf {
    PathBuf::from("sectors")
}
fn default_metrics() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9501))
}
fn default_api() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn config_error(path: &Path, why: impl std::fmt::Display) -> ProviderError {
    ProviderError::Config {
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

impl ProviderSettings {
    /// Reads `<dir>/config.toml`.
    ///
    /// # Errors
    /// [`ProviderError::Config`] for a missing, unreadable or invalid file.
    pub fn load(dir: &Path) -> ProviderResult<ProviderSettings> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            config_error(
                &path,
                format!("{e} (a provider directory is made by `lode devnet` or by hand, see `lode provider run --help`)"),
            )
        })?;
        toml::from_str(&text).map_err(|e| config_error(&path, e))
    }

    /// Writes `<dir>/config.toml` atomically.
    ///
    /// # Errors
    /// [`ProviderError::Config`].
    pub fn save(&self, dir: &Path) -> ProviderResult<()> {
        let path = dir.join(CONFIG_FILE);
        let text = toml::to_string_pretty(self).map_err(|e| config_error(&path, e))?;
        lode_proofs::durable::write_atomic(&path, text.as_bytes())
            .map_err(|e| config_error(&path, e))
    }

    /// The miner actor's id.
    ///
    /// # Errors
    /// [`ProviderError::Config`] when `actor` is neither `l0<n>` nor `<n>`.
    pub fn actor_id(&self, dir: &Path) -> ProviderResult<ActorId> {
        let s = self.actor.trim();
        s.strip_prefix("l0")
            .unwrap_or(s)
            .parse::<u64>()
            .map(ActorId)
            .map_err(|_| {
                config_error(
                    &dir.join(CONFIG_FILE),
                    format!("actor {s:?} is not an id address (l0<n>)"),
                )
            })
    }
}

/// Writes a BLS secret key as hex to `path`, readable by its owner only (`0600`).
///
/// # Errors
/// [`ProviderError::Config`] when the file cannot be written.
pub fn write_key_file(path: &Path, key: &SecretKey) -> ProviderResult<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(hex::encode(key.to_bytes()).as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| config_error(path, e))
}

/// Reads a key written by [`write_key_file`]; refuses a file others can read.
///
/// # Errors
/// [`ProviderError::Config`] for a missing, unreadable, malformed or too open file.
pub fn read_key_file(path: &Path) -> ProviderResult<SecretKey> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| config_error(path, e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(config_error(
            path,
            "the key file is readable by others: `chmod 600` it",
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| config_error(path, e))?;
    let bytes = hex::decode(text.trim()).map_err(|_| config_error(path, "not a hex key"))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| config_error(path, "a BLS secret key has 32 bytes"))?;
    SecretKey::from_bytes(&bytes).map_err(|_| config_error(path, "not a valid BLS secret key"))
}

/// `endpoints.json` of a running provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderEndpoints {
    /// The miner actor (`l0…`).
    pub actor: String,
    /// The provider API's URL.
    pub rpc: String,
    /// The API's token file, relative to the provider's directory.
    pub token_file: PathBuf,
    /// The metrics URL.
    pub metrics: String,
    /// The process id.
    pub pid: u32,
}

impl ProviderEndpoints {
    /// Reads `<dir>/endpoints.json`.
    ///
    /// # Errors
    /// [`ProviderError::Config`] for a missing or invalid file (the provider has not run there).
    pub fn load(dir: &Path) -> ProviderResult<ProviderEndpoints> {
        let path = dir.join(ENDPOINTS_FILE);
        let bytes = std::fs::read(&path).map_err(|e| {
            config_error(
                &path,
                format!("{e} (written when `lode provider run` starts in this directory)"),
            )
        })?;
        serde_json::from_slice(&bytes).map_err(|e| config_error(&path, e))
    }

    /// The API and its token, for a client (the token file is read, relative to `dir`).
    ///
    /// # Errors
    /// [`ProviderError::Config`] when the token file cannot be read.
    pub fn api_info(&self, dir: &Path) -> ProviderResult<ApiInfo> {
        let path = resolve(dir, &self.token_file);
        let token = std::fs::read_to_string(&path).map_err(|e| config_error(&path, e))?;
        Ok(ApiInfo {
            url: self.rpc.clone(),
            token: Some(token.trim().to_string()),
        })
    }
}

/// A running provider.
#[derive(Debug)]
pub struct RunningProvider {
    /// Where it can be reached.
    pub endpoints: ProviderEndpoints,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    metrics: lode_node::rpc::MetricsServerHandle,
    rpc: lode_node::rpc::RpcServerHandle,
    market: Option<crate::market::RunningMarket>,
    /// The directory's lock, held until the provider is dropped.
    _lock: std::fs::File,
    /// In a cluster, the miner's leader lease this process holds.
    leader: Option<crate::leader::Leader>,
}

impl RunningProvider {
    /// Stops the API, the loops (a proof in progress finishes first) and the metrics endpoint.
    pub async fn stop(self) {
        self.rpc.stop();
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(m) = self.market {
            m.stop().await;
        }
        self.rpc.stopped().await;
        self.metrics.stop().await;
        if let Some(leader) = self.leader {
            leader.release().await;
        }
    }

    /// Resolves when this provider, in a cluster, lost its miner's leader lease (it must stop:
    /// another provider leads now); never without a cluster.
    pub async fn deposed(&mut self) {
        match &mut self.leader {
            Some(l) => l.deposed().await,
            None => std::future::pending().await,
        }
    }
}

fn resolve(dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

/// Opens the sealing pipeline of a provider: its records, and the PoRep parameters found (they
/// are loaded by the first Commit2, see [`crate::pipeline::params`]). The records are in the
/// embedded database, or, in a cluster (`shared`: the database's address and the leader lease
/// held), in the cluster's database. `Err` says why it does not run (disabled, parameters
/// missing, database locked, damaged or unreachable); the provider then proves and mines without
/// it.
#[allow(clippy::too_many_arguments)]
fn start_pipeline<A: NodeApi>(
    dir: &Path,
    settings: &ProviderSettings,
    shared: Option<(&str, lode_records::Fence)>,
    api: &Arc<A>,
    messenger: Arc<Messenger>,
    genesis: &GenesisFile,
    actor: ActorId,
    size: lode_proofs::sector::SectorSize,
) -> Result<Pipeline<A>, String> {
    let s = &settings.sealing;
    if !s.enabled {
        return Err("disabled by `[sealing] enabled = false` in config.toml".into());
    }
    // Only that the file is there: the parameters are loaded by the first Commit2, so that a
    // (re)start does not hold mining and proving back while hundreds of megabytes are read.
    let params = ParamStore::new(resolve(dir, &settings.params_dir));
    let id = lode_proofs::circuit::porep::params_id(size);
    if !params.params_path(&id).is_file() {
        return Err(format!(
            "the PoRep parameters of {size} sectors are not in {} (run `lode params generate --sector-size {size}`)",
            params.dir().display()
        ));
    }
    let porep = PorepParams::lazy(params, id);
    let db = resolve(dir, &s.db);
    let store = match shared {
        None => PipelineStore::open(&db)
            .map_err(|e| format!("the pipeline database {}: {e}", db.display()))?,
        Some((url, fence)) => PipelineStore::new(
            tokio::task::block_in_place(|| {
                shared_records(
                    url,
                    actor,
                    fence,
                    &db,
                    "pipeline",
                    crate::pipeline::kv::CACHED,
                )
            })
            .map_err(|e| format!("the pipeline's records in the cluster database: {e}"))?,
        ),
    };
    let mut config = PipelineConfig::new(
        actor,
        size,
        resolve(dir, &settings.sectors),
        resolve(dir, &s.scratch),
        resolve(dir, &s.parent_cache),
        &genesis.policy,
    );
    config.keep_unsealed = s.keep_unsealed;
    config.keep_unsealed_deals = s.keep_unsealed_deals;
    config.batch_wait_epochs = s.batch_wait_epochs;
    config.max_batch = s.max_batch.clamp(
        1,
        usize::try_from(genesis.policy.pre_commit_sector_batch_max).unwrap_or(1),
    );
    if let Some(w) = s.wait_deals_epochs {
        config.wait_deals_epochs = w;
    }
    config.deal_start_margin_epochs = s.deal_start_margin_epochs.unwrap_or_else(|| {
        crate::pipeline::runner::default_deal_start_margin(&genesis.policy, &config)
    });
    let gpu = lode_sealing::accel::open(s.gpu)
        .map_err(|e| format!("`[sealing] gpu = \"{}\"` in config.toml: {e}", s.gpu))?;
    Ok(Pipeline::new(
        api.clone(),
        store,
        messenger,
        porep,
        genesis.policy.clone(),
        config,
    )
    .with_tasks(&settings.tasks)
    .with_gpu(gpu.map(Arc::new)))
}

/// Starts the provider in `dir`: loads the genesis, the worker key and the PoSt parameters,
/// checks with the node that the actor exists with this worker key, and starts the mining and
/// proving loops, the provider's API (token in `<dir>/token`) and the HTTP endpoint (metrics and
/// dashboard).
///
/// # Errors
/// [`ProviderError`]: a bad configuration, a key that is not the actor's worker, missing
/// parameters (run `lode params generate`), an unreachable node.
pub async fn start(dir: &Path, settings: &ProviderSettings) -> ProviderResult<RunningProvider> {
    let actor = settings.actor_id(dir)?;
    // In a cluster, only the leader of the miner runs (a standby waits here for the lease).
    let cluster = match &settings.cluster.db {
        Some(url) => Some(join_cluster(dir, &settings.cluster, url, actor).await?),
        None => None,
    };
    let lock = lock_dir(dir)?;
    let genesis_path = resolve(dir, &settings.genesis);
    let genesis = GenesisFile::load(&genesis_path)?;
    settings
        .proving
        .validate(&genesis.policy)
        .map_err(|why| config_error(&dir.join(CONFIG_FILE), why))?;
    let worker = read_key_file(&resolve(dir, &settings.worker_key))?;
    let token_path = resolve(dir, &settings.node_token_file);
    let token = std::fs::read_to_string(&token_path)
        .map_err(|e| config_error(&token_path, e))?
        .trim()
        .to_string();
    let client = NodeClient::new(ApiInfo {
        url: settings.node_api.clone(),
        token: Some(token),
    })
    .map_err(|e| ProviderError::Node(e.to_string()))?;
    let info = client
        .state_miner_info(actor)
        .await
        .map_err(|e| ProviderError::Node(format!("miner {actor}: {e}")))?;
    if info.worker_key != worker.public_key().to_bytes().to_vec() {
        return Err(config_error(
            &resolve(dir, &settings.worker_key),
            format!("this is not the worker key of miner {actor}"),
        ));
    }
    let size = info.sector_size;
    // Sectors on chain and not moved out of the sealing scratch yet are proven from there; in a
    // cluster, sectors on a worker (sealed and not finalized yet) are proven by that worker.
    let link = match &cluster {
        Some((engine, _, secret)) => {
            // Deal sectors' data, served to the workers that seal them.
            let data_url = match settings.cluster.files_listen {
                Some(addr) if !settings.cluster.store_on_workers => {
                    let app = crate::files::read_only_router(
                        resolve(dir, &settings.sealing.scratch),
                        secret.clone(),
                    );
                    let url =
                        crate::files::serve(addr, app, settings.cluster.files_url.clone()).await?;
                    tracing::info!(%url, "serving the sealing scratch to the cluster: deal sectors are sealed on its workers");
                    Some(url)
                }
                Some(_) => {
                    tracing::warn!(
                        "[cluster] files_listen is ignored with store_on_workers: deal sectors are sealed here"
                    );
                    None
                }
                None => None,
            };
            Some(Arc::new(
                crate::pipeline::remote::ClusterLink::new(engine.clone(), secret.clone())
                    .with_lost_after(std::time::Duration::from_secs(
                        settings.cluster.lost_after_secs,
                    ))
                    .with_store_on_workers(settings.cluster.store_on_workers)
                    .with_data_url(data_url),
            ))
        }
        None => None,
    };
    let mut store = SectorStore::new(resolve(dir, &settings.sectors), actor.0, size)
        .with_sealing(resolve(dir, &settings.sealing.scratch));
    if let Some(link) = &link {
        store = store.with_remote(Arc::new(crate::pipeline::remote::ClusterSectors::new(
            Arc::clone(link),
            actor.0,
            tokio::runtime::Handle::current(),
        )));
    }
    let params = ParamStore::new(resolve(dir, &settings.params_dir));
    let mut prover = tokio::task::block_in_place(|| Prover::load(&params, size, store))?;
    if let Some(link) = &link {
        let waits = post_waits(&settings.cluster, &genesis.policy);
        if waits != crate::pipeline::remote::PostWaits::default() {
            prover =
                prover.with_remote_snarks(Arc::new(crate::pipeline::remote::ClusterSnarks::new(
                    Arc::clone(link),
                    actor.0,
                    tokio::runtime::Handle::current(),
                    waits,
                )));
        }
    }
    let prover = Arc::new(prover);
    let mut registry = Registry::default();
    let metrics = ProviderMetrics::register(&mut registry);
    metrics
        .sectors
        .set(i64::try_from(prover.store().scan().len()).unwrap_or(i64::MAX));
    let registry = Arc::new(registry);
    let api = Arc::new(client);
    let timing = Timing::for_epoch(genesis.policy.epoch_duration_seconds);
    let (stop, stopped) = watch::channel(false);
    let miner = Miner::new(
        actor,
        worker.clone(),
        genesis.policy.clone(),
        prover.clone(),
        metrics.clone(),
    );
    let store = prover.store().clone();
    let poster = Poster::new(
        actor,
        worker,
        genesis.policy.clone(),
        prover,
        metrics.clone(),
    )
    .with_settings(settings.proving.clone());
    let shared = match (&settings.cluster.db, &cluster) {
        (Some(url), Some((_, leader, _))) => Some((
            url.as_str(),
            lode_records::Fence {
                lease: crate::leader::lease_name(actor),
                epoch: leader.epoch(),
            },
        )),
        _ => None,
    };
    let pipeline = start_pipeline(
        dir,
        settings,
        shared.clone(),
        &api,
        poster.messenger(),
        &genesis,
        actor,
        size,
    )
    .map(|p| {
        let p = p.with_metrics(metrics.clone());
        Arc::new(match &link {
            Some(link) => p.with_cluster(Arc::clone(link)),
            None => p,
        })
    });
    if let Err(why) = &pipeline {
        tracing::warn!(%why, "the sealing pipeline does not run: pledges are refused");
    }
    // Window PoSts run as time-sensitive tasks of the sealing pipeline's scheduler: sealing
    // never takes their reserve and pauses its admissions while one waits.
    let poster = match &pipeline {
        Ok(p) => poster.with_tasks(p.scheduler().clone()),
        Err(_) => poster,
    };
    // Winning PoSts likewise.
    let miner = match &pipeline {
        Ok(p) => miner.with_tasks(p.scheduler().clone()),
        Err(_) => miner,
    };
    let market = match &pipeline {
        Ok(_) if !settings.market.enabled => {
            Err("disabled by `[market] enabled = false` in config.toml".to_string())
        }
        Err(why) => Err(format!("the sealing pipeline does not run: {why}")),
        // In a cluster, the market's records are in the cluster's database too.
        Ok(p) => match market_records(dir, settings, shared.as_ref(), actor) {
            Err(why) => Err(why),
            Ok(records) => {
                let view_client = NodeClient::new(ApiInfo {
                    url: settings.node_api.clone(),
                    token: None,
                })
                .map_err(|e| ProviderError::Node(e.to_string()))?;
                let parts = crate::market::MarketParts {
                    dir: dir.to_path_buf(),
                    actor,
                    worker: info.worker,
                    worker_key: read_key_file(&resolve(dir, &settings.worker_key))?,
                    network: genesis.policy.network.clone(),
                    api: api.clone(),
                    view: lode_market::deal::chain::RpcChainView::new(view_client),
                    messenger: poster.messenger(),
                    pipeline: p.clone(),
                    epoch: std::time::Duration::from_secs(genesis.policy.epoch_duration_seconds),
                    max_deal_duration: genesis.policy.deal_max_duration,
                    records,
                };
                crate::market::start(&settings.market, parts, stopped.clone())
                    .await
                    .map_err(|e| e.to_string())
            }
        },
    };
    if let Err(why) = &market {
        tracing::warn!(%why, "the deal market does not run: deals are refused");
    }
    let market_view = market
        .as_ref()
        .map(|m| crate::rpc::MarketView {
            info: crate::rpc::MarketInfo {
                peer_id: m.peer_id.to_string(),
                addrs: m.addrs.iter().map(ToString::to_string).collect(),
                retrieval_url: m.retrieval_url.clone(),
            },
            records: m.records.clone(),
        })
        .map_err(Clone::clone);
    let (mining, mining_events) = watch::channel(MiningEvents::default());
    let rpc_context = ProviderRpc {
        api: api.clone(),
        identity: Identity {
            actor,
            owner: info.owner,
            worker: info.worker,
            sector_size: size,
            network: genesis.policy.network.clone(),
            node_api: settings.node_api.clone(),
            started_at: lode_node::genesis::unix_now(),
        },
        store,
        poster: poster.handle(),
        mining: mining_events,
        metrics: metrics.clone(),
        pipeline: pipeline.clone(),
        market: market_view,
    };
    // `/metrics` refreshes the pipeline's and the poster's gauges at each scrape; `/` and
    // `/api/dashboard.json` are the dashboard, built from the API's own functions.
    let encode = {
        let registry = registry.clone();
        let metrics = metrics.clone();
        let pipeline = pipeline.clone();
        let poster = rpc_context.poster.clone();
        move || {
            if let Ok(p) = &pipeline {
                match p.store().list() {
                    Ok(records) => {
                        metrics.refresh_pipeline(&records, lode_node::genesis::unix_now());
                    }
                    Err(e) => tracing::warn!(error = %e, "pipeline records for /metrics"),
                }
            }
            metrics.refresh_proving(&poster.status());
            lode_node::metrics::encode(&registry)
        }
    };
    let dashboard = crate::dashboard::routes(Arc::new(rpc_context.clone()));
    let (metrics_addr, metrics_server) =
        lode_node::rpc::serve_http(settings.metrics, encode, dashboard).await?;
    let api_token = lode_node::rpc::load_or_create_token(dir)?;
    let (rpc_addr, rpc) = crate::rpc::serve(settings.api, rpc_context, api_token).await?;
    let mut tasks = vec![
        tokio::spawn(mine_loop(
            api.clone(),
            miner,
            genesis.clone(),
            timing,
            mining,
            stopped.clone(),
        )),
        tokio::spawn(chain_gauges_loop(
            api.clone(),
            actor,
            metrics.clone(),
            genesis.clone(),
            timing,
            stopped.clone(),
        )),
        tokio::spawn(post_loop(api, poster, genesis, timing, stopped.clone())),
    ];
    if let Ok(p) = pipeline {
        tasks.push(tokio::spawn(async move {
            if let Err(e) = run_pipeline(p, stopped).await {
                tracing::error!(error = %e, "the sealing pipeline stopped");
            }
        }));
    }
    let endpoints = ProviderEndpoints {
        actor: actor.to_string(),
        rpc: format!("http://{rpc_addr}"),
        token_file: PathBuf::from(lode_node::rpc::TOKEN_FILE),
        metrics: format!("http://{metrics_addr}/metrics"),
        pid: std::process::id(),
    };
    let path = dir.join(ENDPOINTS_FILE);
    let json = serde_json::to_vec_pretty(&endpoints).map_err(|e| config_error(&path, e))?;
    lode_proofs::durable::write_atomic(&path, &json).map_err(|e| config_error(&path, e))?;
    tracing::info!(actor = %endpoints.actor, api = %endpoints.rpc, metrics = %endpoints.metrics, "provider started");
    Ok(RunningProvider {
        endpoints,
        stop,
        tasks,
        metrics: metrics_server,
        rpc,
        market: market.ok(),
        _lock: lock,
        leader: cluster.map(|(_, leader, _)| leader),
    })
}

/// The cluster secret of `[cluster] secret_file`.
fn link_secret(dir: &Path, cluster: &ClusterSettings) -> ProviderResult<String> {
    let path = resolve(dir, &cluster.secret_file);
    let secret = std::fs::read_to_string(&path)
        .map_err(|e| {
            config_error(
                &path,
                format!(
                    "{e} (`[cluster] secret_file`: the same file as the workers' --secret-file)"
                ),
            )
        })?
        .trim()
        .to_string();
    if secret.is_empty() {
        return Err(config_error(&path, "the cluster secret is empty"));
    }
    Ok(secret)
}

/// Records of miner `actor` (the pipeline's or the market's: `what`) in the cluster's database at
/// `url`, fenced by the leader lease held, the trees read whole every tick kept in memory
/// (`cached`: this leader is their only writer). The first time, when the database has none of this
/// miner's records of that set and the embedded database at `local` has some (a provider that ran
/// alone joins a cluster), they are copied over; the embedded copy is not used again.
fn shared_records<T: lode_records::Trees>(
    url: &str,
    actor: ActorId,
    fence: lode_records::Fence,
    local: &Path,
    what: &str,
    cached: &[T],
) -> Result<lode_records::Records<T>, lode_records::KvError> {
    use lode_records::Records;
    let records = Records::<T>::postgres_cached(url, actor.0, Some(fence), cached)?;
    if local.exists() && records.is_empty()? {
        let embedded = Records::<T>::open(local)?;
        if !embedded.is_empty()? {
            let copied = records.import(&embedded)?;
            tracing::info!(
                entries = copied,
                from = %local.display(),
                "the {what}'s records were copied into the cluster database, where they are kept from now on"
            );
        }
    }
    Ok(records)
}

/// The market's records in the cluster's database (`shared`: its address and the lease held), or
/// `None` outside a cluster (the market opens its embedded database). `Err` says why not.
fn market_records(
    dir: &Path,
    settings: &ProviderSettings,
    shared: Option<&(&str, lode_records::Fence)>,
    actor: ActorId,
) -> Result<Option<lode_market::provider::records::MarketRecords>, String> {
    let Some((url, fence)) = shared else {
        return Ok(None);
    };
    let local = resolve(dir, &settings.market.db);
    tokio::task::block_in_place(|| {
        shared_records(
            url,
            actor,
            fence.clone(),
            &local,
            "market",
            lode_market::provider::records::CACHED,
        )
    })
    .map(Some)
    .map_err(|e| format!("the market's records in the cluster database: {e}"))
}

/// Reads the cluster secret, connects to the cluster's database and waits to lead miner `actor`
/// there.
async fn join_cluster(
    dir: &Path,
    cluster: &ClusterSettings,
    url: &str,
    actor: ActorId,
) -> ProviderResult<(crate::engine::AnyEngine, crate::leader::Leader, String)> {
    let secret = link_secret(dir, cluster)?;
    let engine =
        crate::engine::AnyEngine::Postgres(crate::engine::postgres::PgEngine::connect(url).await?);
    let holder = format!("{}:{}", crate::worker::hostname(), std::process::id());
    let ttl = std::time::Duration::from_secs(cluster.lease_secs.max(1));
    let leader = crate::leader::Leader::acquire(engine.clone(), actor, holder, ttl).await?;
    Ok((engine, leader, secret))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn post_waits_are_off_by_default_and_capped_by_the_window_and_the_epoch() {
        use std::time::Duration;
        let policy = lode_chain::Policy::devnet();
        let mut cluster = ClusterSettings::default();
        assert_eq!(
            post_waits(&cluster, &policy),
            crate::pipeline::remote::PostWaits::default()
        );
        cluster.winning_post_wait_ms = 300;
        let waits = post_waits(&cluster, &policy);
        assert_eq!(waits.window, None);
        assert_eq!(waits.winning, Some(Duration::from_millis(300)));
        // Past half an epoch, or a third of the challenge window, the wait is cut to that.
        cluster.winning_post_wait_ms = u64::MAX;
        cluster.window_post_wait_secs = u64::MAX;
        let waits = post_waits(&cluster, &policy);
        let epoch = Duration::from_secs(policy.epoch_duration_seconds);
        let window = policy.wpost_challenge_window * policy.epoch_duration_seconds;
        assert_eq!(waits.winning, Some(epoch / 2));
        assert_eq!(waits.window, Some(Duration::from_secs(window / 3)));
        // The TOML names.
        let parsed: ClusterSettings =
            toml::from_str("winning_post_wait_ms = 500\nwindow_post_wait_secs = 30").unwrap();
        assert_eq!(
            (parsed.winning_post_wait_ms, parsed.window_post_wait_secs),
            (500, 30)
        );
    }

    #[test]
    fn a_second_provider_on_one_directory_is_refused_until_the_first_is_gone() {
        let d = tempfile::tempdir().unwrap();
        let first = lock_dir(d.path()).unwrap();
        let err = lock_dir(d.path()).unwrap_err().to_string();
        assert!(
            err.contains("another `lode provider run` uses this directory"),
            "{err}"
        );
        drop(first);
        lock_dir(d.path()).unwrap();
    }

    const BASE: &str = r#"
actor = "l01000"
node_api = "http://127.0.0.1:1234"
node_token_file = "../node-0/token"
params_dir = "/params"
"#;

    #[test]
    fn the_proving_table_is_optional_and_strict() {
        let plain: ProviderSettings = toml::from_str(BASE).unwrap();
        assert_eq!(plain.proving, ProvingSettings::default());
        let set: ProviderSettings = toml::from_str(&format!(
            "{BASE}\n[proving]\nmargin_epochs = 3\ncheck_ahead_epochs = 12\n"
        ))
        .unwrap();
        assert_eq!(
            set.proving,
            ProvingSettings {
                margin_epochs: 3,
                check_ahead_epochs: Some(12),
            }
        );
        // What is saved reads back the same.
        let text = toml::to_string_pretty(&set).unwrap();
        assert_eq!(toml::from_str::<ProviderSettings>(&text).unwrap(), set);
        let typo = toml::from_str::<ProviderSettings>(&format!("{BASE}\n[proving]\nmargin = 3\n"));
        assert!(typo.unwrap_err().to_string().contains("margin"));
    }

    #[test]
    fn deal_sectors_keep_their_unsealed_copy_unless_told_not_to() {
        let plain: ProviderSettings = toml::from_str(BASE).unwrap();
        assert!(plain.sealing.keep_unsealed_deals && !plain.sealing.keep_unsealed);
        assert_eq!(
            (
                plain.sealing.wait_deals_epochs,
                plain.sealing.deal_start_margin_epochs
            ),
            (None, None)
        );
        let set: ProviderSettings = toml::from_str(&format!(
            "{BASE}\n[sealing]\nkeep_unsealed_deals = false\nwait_deals_epochs = 30\ndeal_start_margin_epochs = 90\n"
        ))
        .unwrap();
        assert!(!set.sealing.keep_unsealed_deals);
        assert_eq!(
            (
                set.sealing.wait_deals_epochs,
                set.sealing.deal_start_margin_epochs
            ),
            (Some(30), Some(90))
        );
        let text = toml::to_string_pretty(&set).unwrap();
        assert_eq!(toml::from_str::<ProviderSettings>(&text).unwrap(), set);
        // The defaults follow the network's rules: a minute or so on the devnet.
        let policy = lode_chain::Policy::devnet();
        let config = crate::pipeline::runner::PipelineConfig::new(
            ActorId(1000),
            lode_proofs::sector::SectorSize::S2KiB,
            "s".into(),
            "t".into(),
            "c".into(),
            &policy,
        );
        assert!(config.keep_unsealed_deals && !config.keep_unsealed);
        assert_eq!(config.wait_deals_epochs, 60);
        assert_eq!(config.deal_start_margin_epochs, 62);
        assert!(config.deal_start_margin_epochs > config.prove_commit_epochs(&policy));
    }

    #[test]
    fn sealing_scratch_defaults_to_the_providers_scratch_directory() {
        let plain: ProviderSettings = toml::from_str(BASE).unwrap();
        assert_eq!(plain.sealing.scratch, PathBuf::from("scratch"));
        assert!(!plain.sealing.keep_unsealed);
        // A config written before the keys existed still reads (defaults for what is missing).
        let old: ProviderSettings =
            toml::from_str(&format!("{BASE}\n[sealing]\nparent_cache = \"/c\"\n")).unwrap();
        assert_eq!(old.sealing.scratch, PathBuf::from("scratch"));
        let set: ProviderSettings = toml::from_str(&format!(
            "{BASE}\n[sealing]\nscratch = \"/fast/scratch\"\nkeep_unsealed = true\n"
        ))
        .unwrap();
        assert_eq!(set.sealing.scratch, PathBuf::from("/fast/scratch"));
        assert!(set.sealing.keep_unsealed);
        let text = toml::to_string_pretty(&set).unwrap();
        assert_eq!(toml::from_str::<ProviderSettings>(&text).unwrap(), set);
        let typo =
            toml::from_str::<ProviderSettings>(&format!("{BASE}\n[sealing]\nscrach = \"x\"\n"));
        assert!(typo.unwrap_err().to_string().contains("scrach"));
    }
}
