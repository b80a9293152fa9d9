//! `lode devnet`: a local network of node and provider processes on loopback.
//!
//! [`prepare`] lays the network out in its directory (see the crate docs): parameters generated or
//! found, a genesis whose miners' sectors are sealed for real (once: later runs reuse the keys and
//! sectors and only give the genesis a new start time, unless `resume` keeps the old chain), one
//! directory per node and per provider with its `config.toml`, loopback ports chosen up front so a
//! restarted process comes back on the same addresses, every node bootstrapping from every other,
//! and `devnet.json`. [`launch`] starts the processes (`lode node run`, `lode provider run`), each
//! logging to `logs/`; [`stop`] stops them (SIGTERM, then SIGKILL after a grace period);
//! [`status`] asks the nodes for height, peers and each miner's power.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lode_chain::types::ActorId;
use lode_node::daemon::NodeSettings;
use lode_node::genesis::GenesisFile;
use lode_node::rpc::client::{ApiInfo, NodeClient};
use lode_proofs::params::ParamStore;
use lode_proofs::sector::SectorSize;
use lode_provider::run::{ProviderSettings, SealingSettings};
use serde::{Deserialize, Serialize};

use crate::error::{DevnetError, DevnetResult};
use crate::genesis::{self, GenesisOptions};

/// The devnet file's name.
pub const DEVNET_FILE: &str = "devnet.json";

/// How `lode devnet` lays out a network.
#[derive(Clone, Debug)]
pub struct DevnetOptions {
    /// The devnet's directory.
    pub dir: PathBuf,
    /// The network's name.
    pub network: String,
    /// Node processes.
    pub nodes: usize,
    /// Miner (provider) processes, each a genesis miner.
    pub miners: usize,
    /// Pre-sealed sectors per miner.
    pub sectors_per_miner: u64,
    /// Sector size.
    pub sector_size: SectorSize,
    /// Groth16 parameters (generated there when missing: insecure, for devnets only).
    pub params_dir: PathBuf,
    /// SDR parent caches.
    pub cache_dir: PathBuf,
    /// Seconds from preparation to epoch 0 of a new genesis: time for the processes to start.
    pub start_delay_secs: u64,
    /// Keep the chain of an earlier run (its genesis time too) instead of starting a new one.
    pub resume: bool,
    /// Seconds per epoch (the devnet policy's when unset).
    pub epoch_seconds: Option<u64>,
    /// Deadlines per proving period (the devnet policy's 48 when unset): fewer make a shorter
    /// proving period, so each deadline comes round sooner (tests of faults and recoveries).
    pub period_deadlines: Option<u64>,
    /// Epochs a provider's transferred deal waits for others to share its publication message
    /// ([`DEVNET_PUBLISH_WAIT_EPOCHS`] when unset): longer gathers more deals per
    /// `PublishDeals`, and leaves a deal `transferred` long enough to watch (or to stop its
    /// provider before it is published).
    pub publish_wait_epochs: Option<u64>,
    /// A PostgreSQL database the miners' committed-capacity sectors are sealed through
    /// (`[cluster] db` of each provider): the devnet writes the cluster secret
    /// ([`CLUSTER_SECRET_FILE`]); `lode worker run` processes started against the same database
    /// do the sealing.
    pub cluster_db: Option<String>,
    /// With [`DevnetOptions::cluster_db`]: sealed sectors stay on the workers that sealed them
    /// (`[cluster] store_on_workers`), and the providers prove them through those workers.
    pub cluster_store_on_workers: bool,
}

/// The cluster secret of a devnet started with [`DevnetOptions::cluster_db`], in its directory.
pub const CLUSTER_SECRET_FILE: &str = "cluster.secret";

/// How long a devnet worker holding a sector's layers may stay away before they count as lost
/// (`[cluster] lost_after_secs`): a minute, so a worker stopped for good costs its 2 KiB sectors
/// one PreCommit1 again, while one restarted at once keeps them.
pub const DEVNET_LOST_AFTER_SECS: u64 = 60;

/// How long a devnet provider's leader lease lasts (`[cluster] lease_secs`): short, so that a
/// standby takes over quickly.
pub const DEVNET_LEASE_SECS: u64 = 10;

/// How long a devnet provider's transferred deal waits for others to share its publication
/// message, unless [`DevnetOptions::publish_wait_epochs`] says otherwise.
pub const DEVNET_PUBLISH_WAIT_EPOCHS: u64 = 2;

/// The fewest deadlines a proving period may have: the open deadline and the next cannot take
/// new sectors, so a period needs others, and a window's fault cutoff must fall after the
/// previous window of the same deadline.
pub const MIN_PERIOD_DEADLINES: u64 = 4;

/// Applies the epoch length and the period's deadlines `opts` asks for to `policy`.
fn shape_policy(policy: &mut lode_chain::Policy, opts: &DevnetOptions) -> DevnetResult<()> {
    let fitting = default_epoch_seconds(opts.miners, opts.sector_size);
    if let (Some(asked), Some(fits)) = (opts.epoch_seconds, fitting)
        && asked < fits
    {
        tracing::warn!(
            asked,
            fits,
            "epochs shorter than this machine's Winning PoSt needs: the miners may miss blocks and Window PoSts, lose their power, and stop the devnet"
        );
    }
    if let Some(secs) = opts.epoch_seconds.or(fitting) {
        policy.epoch_duration_seconds = secs.max(1);
    }
    let deadlines = opts
        .period_deadlines
        .unwrap_or(lode_chain::Policy::devnet().wpost_period_deadlines);
    if !(MIN_PERIOD_DEADLINES..=lode_chain::Policy::devnet().wpost_period_deadlines)
        .contains(&deadlines)
    {
        return Err(DevnetError::Genesis(format!(
            "a proving period of {deadlines} deadlines: a devnet's has {MIN_PERIOD_DEADLINES} to {}",
            lode_chain::Policy::devnet().wpost_period_deadlines
        )));
    }
    policy.wpost_period_deadlines = deadlines;
    Ok(())
}

/// The epoch length when none is asked for. Every genesis miner wins nearly every epoch (five
/// leaders are expected per epoch), so each proves a Winning PoSt per epoch, and an epoch must
/// leave room for it. At 2 KiB, with the prover's vector arithmetic
/// ([`lode_proofs::prover::Arithmetic::Vector`]): the devnet policy's 1 s where the machine has two
/// cores or more per miner, else 2 s (two miners proving at once on 2 cores take about 0.9 s
/// each: with 1-second epochs each would make a block only every other epoch). Its MULX/ADX
/// arithmetic proves a 2 KiB Winning PoSt three times slower (1.6–1.9 s against 0.52–0.56 s on 2
/// cores with `lode bench post`): 2 s and 4 s; the portable arithmetic four times slower: 3 s and
/// 6 s (the devnet scenarios pass at those epochs on a 2-core machine, BENCHMARKS.md). At larger
/// sizes, whose Winning PoSt
/// takes seconds (about 15 s at 8 MiB on one core), 20 s per epoch and twice that on a machine
/// with fewer than two cores per miner (and twice again without the vector arithmetic). Without
/// this the miners would miss their blocks and then their Window PoSts, lose their power, and the
/// devnet would stop.
pub fn default_epoch_seconds(miners: usize, size: SectorSize) -> Option<u64> {
    use lode_proofs::prover::Arithmetic;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let short = cores < miners.saturating_mul(2);
    let arithmetic = lode_proofs::prover::arithmetic();
    if size.bytes() <= SectorSize::S2KiB.bytes() {
        let seconds: u64 = match arithmetic {
            Arithmetic::Vector => 1,
            Arithmetic::Mulx => 2,
            Arithmetic::Portable => 3,
        };
        let seconds = if short {
            seconds.saturating_mul(2)
        } else {
            seconds
        };
        // The policy's own epoch is 1 s.
        (seconds > 1).then_some(seconds)
    } else {
        let seconds: u64 = if arithmetic == Arithmetic::Vector {
            20
        } else {
            40
        };
        Some(if short {
            seconds.saturating_mul(2)
        } else {
            seconds
        })
    }
}

/// A node of `devnet.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    /// Its RPC URL.
    pub rpc: String,
    /// Its token file, relative to the devnet directory.
    pub token_file: PathBuf,
    /// Its metrics URL.
    pub metrics: String,
    /// Its TCP multiaddr, ending in `/p2p/<peer id>`.
    pub multiaddr: String,
    /// Its peer id.
    pub peer_id: String,
    /// Its directory, relative to the devnet directory.
    pub dir: PathBuf,
    /// Its log file, relative to the devnet directory.
    pub log: PathBuf,
    /// Its process id while running.
    pub pid: Option<u32>,
}

/// A miner of `devnet.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinerEntry {
    /// Its actor (`l0…`).
    pub actor: String,
    /// The index of the node it is connected to (that node's entry has its RPC).
    pub node: usize,
    /// The provider's own JSON-RPC API (`lode provider info|sectors|proving`).
    pub rpc: String,
    /// That API's token file, relative to the devnet directory.
    pub token_file: PathBuf,
    /// Its metrics URL.
    pub metrics: String,
    /// Its HTTP server's base URL: `/metrics`, and the dashboard (`/`, `/api/dashboard.json`).
    pub http: String,
    /// Its directory, relative to the devnet directory.
    pub dir: PathBuf,
    /// Its log file, relative to the devnet directory.
    pub log: PathBuf,
    /// Its process id while running.
    pub pid: Option<u32>,
}

/// `devnet.json`: what scripts and `--devnet DIR` read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevnetFile {
    /// The network's name.
    pub network: String,
    /// Unix time of epoch 0.
    pub genesis_timestamp: u64,
    /// Seconds per epoch.
    pub epoch_seconds: u64,
    /// The genesis file, relative to the devnet directory.
    pub genesis: PathBuf,
    /// The parameters directory.
    pub params_dir: PathBuf,
    /// A funded account's key file (hex), relative to the devnet directory.
    pub faucet_key: PathBuf,
    /// The storage client's key file (funded, with DataCap), relative to the devnet directory.
    #[serde(default)]
    pub client_key: PathBuf,
    /// A verifier's key file (with DataCap to grant), relative to the devnet directory.
    #[serde(default)]
    pub verifier_key: PathBuf,
    /// Sector size of the genesis miners.
    pub sector_size: SectorSize,
    /// The nodes.
    pub nodes: Vec<NodeEntry>,
    /// The miners.
    pub miners: Vec<MinerEntry>,
    /// The cluster database the miners seal through, if any (`lode worker run --db`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_db: Option<String>,
    /// The cluster secret's file, relative to the devnet directory (`lode worker run
    /// --secret-file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_secret: Option<PathBuf>,
    /// Whether sealed sectors stay on the cluster's workers (`[cluster] store_on_workers`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cluster_store_on_workers: bool,
}

impl DevnetFile {
    /// Reads `<dir>/devnet.json`.
    ///
    /// # Errors
    /// [`DevnetError::DevnetFile`] when it is missing or not valid.
    pub fn load(dir: &Path) -> DevnetResult<DevnetFile> {
        let path = dir.join(DEVNET_FILE);
        let bytes = std::fs::read(&path).map_err(|e| DevnetError::DevnetFile {
            path: path.clone(),
            why: format!(
                "{e} (is there a devnet in {}? `lode devnet --dir` makes one)",
                dir.display()
            ),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| DevnetError::DevnetFile {
            path,
            why: e.to_string(),
        })
    }

    /// Writes `<dir>/devnet.json` atomically.
    ///
    /// # Errors
    /// [`DevnetError::Io`].
    pub fn save(&self, dir: &Path) -> DevnetResult<()> {
        let path = dir.join(DEVNET_FILE);
        let json = serde_json::to_vec_pretty(self).map_err(|e| DevnetError::DevnetFile {
            path: path.clone(),
            why: e.to_string(),
        })?;
        lode_proofs::durable::write_atomic(&path, &json)
            .map_err(|e| DevnetError::io(&path)(std::io::Error::other(e.to_string())))
    }

    /// Process ids recorded and still alive.
    pub fn live_pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.pid)
            .chain(self.miners.iter().filter_map(|m| m.pid))
            .filter(|p| alive(*p))
            .collect()
    }
}

/// What [`prepare`] is doing, for progress display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Loading or generating the parameters of a circuit (its name; whether it is generated).
    Params(&'static str, bool),
    /// Pre-sealing: sectors sealed, of how many.
    Sealing(u64, u64),
    /// Reusing the genesis miners and sectors of an earlier run.
    Reusing,
}

/// Whether process `pid` is alive (and not a zombie).
pub fn alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None).is_err() {
        return false;
    }
    // A zombie (exited, not yet reaped) is not running.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// Generates (insecure, for devnets) or finds the PoRep, Winning and Window PoSt parameters of
/// `size` in `params_dir`.
///
/// # Errors
/// [`DevnetError::Params`] for a damaged file or a failed write.
pub fn ensure_params(
    params_dir: &Path,
    size: SectorSize,
    progress: &mut dyn FnMut(Stage),
) -> DevnetResult<()> {
    use lode_proofs::circuit::porep::{self, PorepCircuit};
    use lode_proofs::circuit::post::{PostCircuit, PostKind};
    let store = ParamStore::new(params_dir);
    let missing = |id: &lode_proofs::params::ParamsId| !store.params_path(id).exists();
    let id = porep::params_id(size);
    progress(Stage::Params("porep", missing(&id)));
    store.get_or_generate_insecure(&id, || PorepCircuit {
        size,
        witness: None,
    })?;
    for (name, kind) in [
        ("winning-post", PostKind::Winning),
        ("window-post", PostKind::Window),
    ] {
        let id = kind.params_id(size);
        progress(Stage::Params(name, missing(&id)));
        store.get_or_generate_insecure(&id, || PostCircuit {
            kind,
            size,
            witness: None,
        })?;
    }
    Ok(())
}

fn free_tcp() -> DevnetResult<(TcpListener, u16)> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(DevnetError::io("127.0.0.1:0"))?;
    let port = l
        .local_addr()
        .map_err(DevnetError::io("127.0.0.1:0"))?
        .port();
    Ok((l, port))
}

fn free_udp() -> DevnetResult<(UdpSocket, u16)> {
    let s = UdpSocket::bind("127.0.0.1:0").map_err(DevnetError::io("127.0.0.1:0"))?;
    let port = s
        .local_addr()
        .map_err(DevnetError::io("127.0.0.1:0"))?
        .port();
    Ok((s, port))
}

fn unix_now() -> u64 {
    lode_node::genesis::unix_now()
}

fn rel(p: &str) -> PathBuf {
    PathBuf::from(p)
}

/// Lays the devnet out in `opts.dir` (see the module docs) and writes `devnet.json` (no
/// process running yet).
///
/// # Errors
/// [`DevnetError::Running`] when a devnet runs there already; otherwise any failure to seal,
/// generate parameters or write.
pub fn prepare(opts: &DevnetOptions, progress: &mut dyn FnMut(Stage)) -> DevnetResult<DevnetFile> {
    let dir = &opts.dir;
    std::fs::create_dir_all(dir).map_err(DevnetError::io(dir))?;
    let previous = DevnetFile::load(dir).ok();
    // A resumed devnet keeps its cluster unless told another one.
    let (cluster_db, store_on_workers) = match (&opts.cluster_db, &previous) {
        (None, Some(old)) if opts.resume => (old.cluster_db.clone(), old.cluster_store_on_workers),
        _ => (opts.cluster_db.clone(), opts.cluster_store_on_workers),
    };
    if let Some(old) = &previous
        && let Some(pid) = old.live_pids().first()
    {
        return Err(DevnetError::Running {
            dir: dir.clone(),
            pid: *pid,
        });
    }
    ensure_params(&opts.params_dir, opts.sector_size, progress)?;
    let genesis_path = genesis::genesis_path(dir);
    let start = unix_now().saturating_add(opts.start_delay_secs);
    let reusable = GenesisFile::load(&genesis_path).ok().filter(|g| {
        g.genesis.miners.len() == opts.miners
            && g.genesis.miners.iter().all(|m| {
                m.sector_size == opts.sector_size
                    && m.sectors.len() as u64 == opts.sectors_per_miner
            })
            && g.policy.network == opts.network
    });
    let genesis = match reusable {
        Some(g) if opts.resume => g,
        Some(mut g) => {
            progress(Stage::Reusing);
            g.timestamp = start;
            genesis::ensure_market_participants(dir, &mut g.genesis)?;
            shape_policy(&mut g.policy, opts)?;
            g.save(&genesis_path)?;
            // A new chain: the nodes' old chains are of another genesis.
            for i in 0..opts.nodes.max(64) {
                let d = dir.join(format!("node-{i}"));
                lode_node::core::NodeCore::remove_chain(&d)?;
            }
            g
        }
        None => {
            if genesis_path.exists() {
                return Err(DevnetError::Genesis(format!(
                    "{} holds a devnet with other options (miners, sectors, sector size or network): use another --dir, or remove it",
                    dir.display()
                )));
            }
            let mut gopts = GenesisOptions::devnet(&opts.network, start);
            gopts.miners = opts.miners;
            gopts.sectors_per_miner = opts.sectors_per_miner;
            gopts.sector_size = opts.sector_size;
            shape_policy(&mut gopts.policy, opts)?;
            let (g, _) = genesis::new_genesis(dir, &opts.cache_dir, &gopts, &mut |d, t| {
                progress(Stage::Sealing(d, t))
            })?;
            g
        }
    };
    let actors = genesis.genesis.miner_ids();
    let genesis_json = std::fs::read(&genesis_path).map_err(DevnetError::io(&genesis_path))?;

    // Ports: chosen together (held until all are chosen, so none repeats), then released.
    let mut held_tcp = Vec::new();
    let mut held_udp = Vec::new();
    let mut tcp = || -> DevnetResult<u16> {
        let (l, p) = free_tcp()?;
        held_tcp.push(l);
        Ok(p)
    };
    struct NodePorts {
        p2p: u16,
        quic: u16,
        rpc: u16,
        metrics: u16,
    }
    let mut node_ports = Vec::new();
    for _ in 0..opts.nodes {
        let (s, quic) = free_udp()?;
        held_udp.push(s);
        node_ports.push(NodePorts {
            p2p: tcp()?,
            quic,
            rpc: tcp()?,
            metrics: tcp()?,
        });
    }
    // Per miner: metrics, API.
    let miner_ports: Vec<(u16, u16)> = (0..opts.miners)
        .map(|_| Ok((tcp()?, tcp()?)))
        .collect::<DevnetResult<_>>()?;
    drop(held_tcp);
    drop(held_udp);

    let mut nodes = Vec::new();
    for (i, ports) in node_ports.iter().enumerate() {
        let name = format!("node-{i}");
        let ndir = dir.join(&name);
        std::fs::create_dir_all(&ndir).map_err(DevnetError::io(&ndir))?;
        let key = lode_node::net::load_or_create_keypair(&ndir.join("p2p.key"))
            .map_err(|e| DevnetError::Node(lode_node::NodeError::Net(e.to_string())))?;
        let peer_id = key.public().to_peer_id().to_string();
        nodes.push(NodeEntry {
            rpc: format!("http://127.0.0.1:{}", ports.rpc),
            token_file: rel(&format!("{name}/token")),
            metrics: format!("http://127.0.0.1:{}/metrics", ports.metrics),
            multiaddr: format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer_id}", ports.p2p),
            peer_id,
            dir: rel(&name),
            log: rel(&format!("logs/{name}.log")),
            pid: None,
        });
    }
    for (i, ports) in node_ports.iter().enumerate() {
        let ndir = dir.join(format!("node-{i}"));
        let gpath = ndir.join("genesis.json");
        lode_proofs::durable::write_atomic(&gpath, &genesis_json)
            .map_err(|e| DevnetError::io(&gpath)(std::io::Error::other(e.to_string())))?;
        let settings = NodeSettings {
            listen: vec![
                format!("/ip4/127.0.0.1/tcp/{}", ports.p2p),
                format!("/ip4/127.0.0.1/udp/{}/quic-v1", ports.quic),
            ],
            bootstrap: nodes
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, n)| n.multiaddr.clone())
                .collect(),
            rpc: SocketAddr::from(([127, 0, 0, 1], ports.rpc)),
            metrics: SocketAddr::from(([127, 0, 0, 1], ports.metrics)),
            status_interval_secs: 2,
            params_dir: Some(opts.params_dir.clone()),
            ..NodeSettings::default()
        };
        settings.save(&ndir)?;
    }
    let cluster = match &cluster_db {
        Some(db) => {
            let path = dir.join(CLUSTER_SECRET_FILE);
            if !path.is_file() {
                let mut secret = [0u8; 32];
                getrandom::fill(&mut secret).map_err(|e| DevnetError::Random(e.to_string()))?;
                lode_proofs::durable::write_atomic(&path, hex::encode(secret).as_bytes())
                    .map_err(|e| DevnetError::io(&path)(std::io::Error::other(e.to_string())))?;
            }
            lode_provider::run::ClusterSettings {
                db: Some(db.clone()),
                secret_file: PathBuf::from("..").join(CLUSTER_SECRET_FILE),
                lease_secs: DEVNET_LEASE_SECS,
                lost_after_secs: DEVNET_LOST_AFTER_SECS,
                store_on_workers,
                // A devnet's challenge windows and epochs are seconds long: its partitions and
                // elections are proven by the provider itself.
                window_post_wait_secs: 0,
                winning_post_wait_ms: 0,
                // Deal sectors too are sealed on the workers, from the data each provider
                // packed and serves them on loopback (not with store_on_workers: a deal
                // sector's unsealed copy ends at its provider).
                files_listen: (!store_on_workers)
                    .then(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
                files_url: None,
            }
        }
        None => lode_provider::run::ClusterSettings::default(),
    };
    let mut miners = Vec::new();
    for (i, (actor, (port, api_port))) in actors.iter().zip(&miner_ports).enumerate() {
        let name = format!("miner-{i}");
        let mdir = dir.join(&name);
        let node_index = i.checked_rem(opts.nodes.max(1)).unwrap_or(0);
        let node = nodes
            .get(node_index)
            .ok_or_else(|| DevnetError::Genesis("a devnet needs at least one node".into()))?;
        let gpath = mdir.join("genesis.json");
        lode_proofs::durable::write_atomic(&gpath, &genesis_json)
            .map_err(|e| DevnetError::io(&gpath)(std::io::Error::other(e.to_string())))?;
        let settings = ProviderSettings {
            actor: actor.to_string(),
            node_api: node.rpc.clone(),
            node_token_file: PathBuf::from("..").join(&node.token_file),
            genesis: PathBuf::from("genesis.json"),
            worker_key: PathBuf::from("worker.key"),
            sectors: PathBuf::from("sectors"),
            params_dir: opts.params_dir.clone(),
            metrics: SocketAddr::from(([127, 0, 0, 1], *port)),
            api: SocketAddr::from(([127, 0, 0, 1], *api_port)),
            sealing: SealingSettings {
                parent_cache: opts.cache_dir.clone(),
                ..SealingSettings::default()
            },
            proving: lode_provider::poster::ProvingSettings::default(),
            tasks: Default::default(),
            market: devnet_market(opts),
            cluster: cluster.clone(),
        };
        settings.save(&mdir)?;
        miners.push(MinerEntry {
            actor: actor.to_string(),
            node: node_index,
            rpc: format!("http://127.0.0.1:{api_port}"),
            token_file: rel(&format!("{name}/{}", lode_node::rpc::TOKEN_FILE)),
            metrics: format!("http://127.0.0.1:{port}/metrics"),
            http: format!("http://127.0.0.1:{port}"),
            dir: rel(&name),
            log: rel(&format!("logs/{name}.log")),
            pid: None,
        });
    }
    let file = DevnetFile {
        network: genesis.policy.network.clone(),
        genesis_timestamp: genesis.timestamp,
        epoch_seconds: genesis.policy.epoch_duration_seconds,
        genesis: rel("genesis.json"),
        params_dir: opts.params_dir.clone(),
        faucet_key: rel("keys/faucet.key"),
        client_key: rel("keys/client.key"),
        verifier_key: rel("keys/verifier.key"),
        sector_size: opts.sector_size,
        nodes,
        miners,
        cluster_secret: cluster.db.as_ref().map(|_| rel(CLUSTER_SECRET_FILE)),
        cluster_store_on_workers: cluster.db.is_some() && store_on_workers,
        cluster_db: cluster.db,
    };
    file.save(dir)?;
    Ok(file)
}

/// The market of a devnet provider: data fetched from loopback (the client serves it there),
/// deals published after at most [`DEVNET_PUBLISH_WAIT_EPOCHS`] epochs of waiting (or what
/// `opts` asks for), deals taken that start far enough ahead for the pipeline to seal them (its
/// `deal_start_margin_epochs`), and active deals settled every 5 epochs (payments visible at
/// once).
fn devnet_market(opts: &DevnetOptions) -> lode_provider::market::MarketSettings {
    let mut m = lode_provider::market::MarketSettings::default();
    m.transfer.allow_private_addresses = true;
    m.publish_wait_epochs = opts
        .publish_wait_epochs
        .unwrap_or(DEVNET_PUBLISH_WAIT_EPOCHS);
    m.republish_after_epochs = 10;
    m.settle_every_epochs = 5;
    m
}

/// The running processes of a launched devnet.
#[derive(Debug)]
pub struct Processes {
    /// Children, nodes first.
    pub children: Vec<(String, Child)>,
}

fn spawn(
    dir: &Path,
    exe: &Path,
    what: &str,
    args: &[&str],
    log: &Path,
    detach: bool,
) -> DevnetResult<Child> {
    use std::os::unix::process::CommandExt;
    let log_path = dir.join(log);
    if let Some(parent) = log_path.parent() {
        std::fs::create_dir_all(parent).map_err(DevnetError::io(parent))?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(DevnetError::io(&log_path))?;
    let err = out.try_clone().map_err(DevnetError::io(&log_path))?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    if std::env::var_os("LODE_LOG").is_none() {
        cmd.env("LODE_LOG", "info");
    }
    if detach {
        // Its own process group: a Ctrl-C in the terminal that started it does not reach it.
        cmd.process_group(0);
    }
    cmd.spawn().map_err(|source| DevnetError::Spawn {
        what: what.to_string(),
        source,
    })
}

/// Waits until `<dir>/endpoints.json` is newer than `since`, or `child` exits, or `timeout`.
fn wait_endpoints(
    dir: &Path,
    since: std::time::SystemTime,
    child: &mut Child,
    what: &str,
    log: &Path,
    timeout: Duration,
) -> DevnetResult<()> {
    let path = dir.join("endpoints.json");
    let start = Instant::now();
    let not_ready = || DevnetError::NotReady {
        what: what.to_string(),
        secs: timeout.as_secs(),
        log: log.to_path_buf(),
    };
    loop {
        if let Ok(m) = std::fs::metadata(&path)
            && m.modified().is_ok_and(|t| t >= since)
        {
            return Ok(());
        }
        if let Ok(Some(_)) = child.try_wait() {
            return Err(not_ready());
        }
        if start.elapsed() > timeout {
            return Err(not_ready());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts the devnet's processes with the `lode` executable `exe`: the nodes, then (once each
/// node has written its endpoints) the providers; records their pids in `devnet.json`.
/// `detach` puts them in their own process groups so they outlive the caller's terminal.
///
/// # Errors
/// [`DevnetError::Spawn`] or [`DevnetError::NotReady`] (the processes started so far are killed).
pub fn launch(dir: &Path, exe: &Path, detach: bool) -> DevnetResult<Processes> {
    let mut file = DevnetFile::load(dir)?;
    let mut procs = Processes {
        children: Vec::new(),
    };
    let result = (|| -> DevnetResult<()> {
        let since = std::time::SystemTime::now()
            .checked_sub(Duration::from_secs(1))
            .unwrap_or(std::time::UNIX_EPOCH);
        for (i, n) in file.nodes.iter_mut().enumerate() {
            let what = format!("node {i}");
            let ndir = n.dir.to_string_lossy().to_string();
            let child = spawn(
                dir,
                exe,
                &what,
                &["node", "run", "--dir", &ndir],
                &n.log,
                detach,
            )?;
            n.pid = Some(child.id());
            procs.children.push((what, child));
        }
        for (i, n) in file.nodes.iter().enumerate() {
            if let Some((what, child)) = procs.children.get_mut(i) {
                wait_endpoints(
                    &dir.join(&n.dir),
                    since,
                    child,
                    what,
                    &dir.join(&n.log),
                    Duration::from_secs(60),
                )?;
            }
        }
        for (i, m) in file.miners.iter_mut().enumerate() {
            let what = format!("miner {i} ({})", m.actor);
            let mdir = m.dir.to_string_lossy().to_string();
            let child = spawn(
                dir,
                exe,
                &what,
                &["provider", "run", "--dir", &mdir],
                &m.log,
                detach,
            )?;
            m.pid = Some(child.id());
            procs.children.push((what, child));
        }
        let nodes = file.nodes.len();
        for (i, m) in file.miners.iter().enumerate() {
            if let Some((what, child)) = procs.children.get_mut(nodes.saturating_add(i)) {
                wait_endpoints(
                    &dir.join(&m.dir),
                    since,
                    child,
                    what,
                    &dir.join(&m.log),
                    Duration::from_secs(120),
                )?;
            }
        }
        file.save(dir)
    })();
    if let Err(e) = result {
        for (_, c) in &mut procs.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        return Err(e);
    }
    Ok(procs)
}

/// Stops the devnet in `dir`: SIGTERM to every recorded process (providers first), SIGKILL to
/// those still alive after `grace`; clears the pids. Returns the pids that were running.
///
/// # Errors
/// [`DevnetError::DevnetFile`] when there is no devnet there.
pub fn stop(dir: &Path, grace: Duration) -> DevnetResult<Vec<u32>> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let mut file = DevnetFile::load(dir)?;
    let pids: Vec<u32> = file
        .miners
        .iter()
        .filter_map(|m| m.pid)
        .chain(file.nodes.iter().filter_map(|n| n.pid))
        .filter(|p| alive(*p))
        .collect();
    let signal = |pid: u32, s: Signal| {
        if let Ok(raw) = i32::try_from(pid) {
            let _ = kill(Pid::from_raw(raw), s);
        }
    };
    for p in &pids {
        signal(*p, Signal::SIGTERM);
    }
    let start = Instant::now();
    while pids.iter().any(|p| alive(*p)) && start.elapsed() < grace {
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in pids.iter().filter(|p| alive(**p)) {
        tracing::warn!(pid = p, "did not stop in time: killed");
        signal(*p, Signal::SIGKILL);
    }
    for n in &mut file.nodes {
        n.pid = None;
    }
    for m in &mut file.miners {
        m.pid = None;
    }
    file.save(dir)?;
    Ok(pids)
}

/// One node's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    /// Its index.
    pub node: usize,
    /// Head epoch (`None`: unreachable).
    pub height: Option<u64>,
    /// Connected peers.
    pub peers: Option<usize>,
}

/// One miner's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MinerStatus {
    /// Its actor.
    pub actor: String,
    /// Raw byte power (`None`: unknown).
    pub raw_power: Option<u128>,
    /// Quality-adjusted power.
    pub qa_power: Option<u128>,
}

/// The devnet's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DevnetStatus {
    /// The epoch by the clock.
    pub clock_epoch: u64,
    /// Per node.
    pub nodes: Vec<NodeStatus>,
    /// Per miner, as the first reachable node sees it.
    pub miners: Vec<MinerStatus>,
}

/// Asks every node for its head and peers, and the first one for each miner's power.
pub async fn status(dir: &Path, file: &DevnetFile) -> DevnetStatus {
    let clock_epoch = unix_now()
        .saturating_sub(file.genesis_timestamp)
        .checked_div(file.epoch_seconds)
        .unwrap_or(0);
    let mut nodes = Vec::new();
    let mut first: Option<NodeClient> = None;
    for (i, n) in file.nodes.iter().enumerate() {
        let token = std::fs::read_to_string(dir.join(&n.token_file))
            .ok()
            .map(|t| t.trim().to_string());
        let client = NodeClient::with_timeout(
            ApiInfo {
                url: n.rpc.clone(),
                token,
            },
            Duration::from_secs(2),
        )
        .ok();
        let (mut height, mut peers) = (None, None);
        if let Some(c) = &client {
            height = c.chain_head().await.ok().map(|h| h.epoch);
            peers = c.net_peers().await.ok().map(|p| p.len());
        }
        if first.is_none() && height.is_some() {
            first = client;
        }
        nodes.push(NodeStatus {
            node: i,
            height,
            peers,
        });
    }
    let mut miners = Vec::new();
    for m in &file.miners {
        let id = m
            .actor
            .strip_prefix("l0")
            .and_then(|s| s.parse::<u64>().ok())
            .map(ActorId);
        let power = match (&first, id) {
            (Some(c), Some(id)) => c.state_miner_power(id).await.ok(),
            _ => None,
        };
        miners.push(MinerStatus {
            actor: m.actor.clone(),
            raw_power: power.as_ref().map(|p| p.power.raw),
            qa_power: power.as_ref().map(|p| p.power.qa),
        });
    }
    DevnetStatus {
        clock_epoch,
        nodes,
        miners,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_leave_room_for_the_sector_size_s_winning_post() {
        use lode_proofs::prover::Arithmetic;
        let arithmetic = lode_proofs::prover::arithmetic();
        // 2 KiB: the policy's 1 s, or 2 s when the machine is short of cores, with the vector
        // arithmetic; 2 s and 4 s with MULX/ADX; 3 s and 6 s with the portable one.
        let (roomy, crowded) = match arithmetic {
            Arithmetic::Vector => (None, Some(2)),
            Arithmetic::Mulx => (Some(2), Some(4)),
            Arithmetic::Portable => (Some(3), Some(6)),
        };
        let one = default_epoch_seconds(1, SectorSize::S2KiB);
        assert!(one == roomy || one == crowded, "{one:?} with {arithmetic}");
        assert_eq!(default_epoch_seconds(10_000, SectorSize::S2KiB), crowded);
        // 8 MiB: a Winning PoSt of seconds.
        let (roomy, crowded) = if arithmetic == Arithmetic::Vector {
            (Some(20), Some(40))
        } else {
            (Some(40), Some(80))
        };
        let one = default_epoch_seconds(1, SectorSize::S8MiB);
        assert!(one == roomy || one == crowded, "{one:?} with {arithmetic}");
        assert_eq!(default_epoch_seconds(10_000, SectorSize::S8MiB), crowded);
    }
}
