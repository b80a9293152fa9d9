//! `lode node run`: a node from its directory — configuration, chain, network, RPC and metrics.
//!
//! A node's directory holds:
//!
//! | path | what |
//! |---|---|
//! | `config.toml` | [`NodeSettings`] (optional: every field has a default) |
//! | `genesis.json` | the network's genesis (another path may be configured) |
//! | `chain/`, `blocks/` | the state store and the block store (sled) |
//! | `p2p.key` | the libp2p identity (ed25519, `0600`) |
//! | `token` | the RPC bearer token (`0600`) |
//! | `endpoints.json` | written at every start: the bound RPC and metrics addresses, the peer id and the listen multiaddrs, for scripts and `lode devnet` |

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use libp2p::Multiaddr;
use lode_proofs::verifier::ProofVerifier;
use serde::{Deserialize, Serialize};

use crate::core::CoreConfig;
use crate::error::{NodeError, NodeResult};
use crate::genesis::GenesisFile;
use crate::rpc::{MetricsServerHandle, RpcServerHandle};
use crate::service::{NodeConfig, NodeService};

/// The configuration file's name in a node's directory.
pub const CONFIG_FILE: &str = "config.toml";
/// The endpoints file's name in a node's directory.
pub const ENDPOINTS_FILE: &str = "endpoints.json";

/// `config.toml` of a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSettings {
    /// The genesis file (relative to the node's directory).
    pub genesis: PathBuf,
    /// libp2p listen multiaddrs.
    pub listen: Vec<String>,
    /// Peers to dial at start, each ending in `/p2p/<peer id>`.
    pub bootstrap: Vec<String>,
    /// The JSON-RPC address (HTTP and WebSocket).
    pub rpc: SocketAddr,
    /// The Prometheus endpoint's address (`GET /metrics`).
    pub metrics: SocketAddr,
    /// How far (seconds) a block's slot may be ahead of this machine's clock.
    pub clock_drift_secs: u64,
    /// How often (seconds) peers are asked for their head.
    pub status_interval_secs: u64,
    /// The Groth16 parameters (verifying keys) directory; unset: the user's cache directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params_dir: Option<PathBuf>,
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            genesis: PathBuf::from("genesis.json"),
            listen: vec![
                "/ip4/0.0.0.0/tcp/4001".into(),
                "/ip4/0.0.0.0/udp/4001/quic-v1".into(),
            ],
            bootstrap: Vec::new(),
            rpc: SocketAddr::from(([127, 0, 0, 1], 1234)),
            metrics: SocketAddr::from(([127, 0, 0, 1], 9401)),
            clock_drift_secs: CoreConfig::default().clock_drift_secs,
            status_interval_secs: 10,
            params_dir: None,
        }
    }
}

impl NodeSettings {
    /// Reads `<dir>/config.toml`; the defaults when there is none.
    ///
    /// # Errors
    /// [`NodeError::Config`] for an unreadable or invalid file.
    pub fn load(dir: &Path) -> NodeResult<NodeSettings> {
        let path = dir.join(CONFIG_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| NodeError::Config {
                path,
                why: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(NodeSettings::default()),
            Err(e) => Err(NodeError::Io { path, source: e }),
        }
    }

    /// Writes `<dir>/config.toml` atomically.
    ///
    /// # Errors
    /// [`NodeError::Config`] or [`NodeError::Io`].
    pub fn save(&self, dir: &Path) -> NodeResult<()> {
        let path = dir.join(CONFIG_FILE);
        let text = toml::to_string_pretty(self).map_err(|e| NodeError::Config {
            path: path.clone(),
            why: e.to_string(),
        })?;
        lode_proofs::durable::write_atomic(&path, text.as_bytes()).map_err(|e| NodeError::Io {
            path,
            source: std::io::Error::other(e.to_string()),
        })
    }

    fn multiaddrs(&self, dir: &Path, list: &[String]) -> NodeResult<Vec<Multiaddr>> {
        list.iter()
            .map(|a| {
                a.parse::<Multiaddr>().map_err(|e| NodeError::Config {
                    path: dir.join(CONFIG_FILE),
                    why: format!("{a:?} is not a multiaddr: {e}"),
                })
            })
            .collect()
    }
}

/// `endpoints.json`: where a running node can be reached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    /// The RPC URL (`http://host:port`).
    pub rpc: String,
    /// The metrics URL (`http://host:port/metrics`).
    pub metrics: String,
    /// The libp2p peer id.
    pub peer_id: String,
    /// The listen multiaddrs, each ending in `/p2p/<peer id>`.
    pub multiaddrs: Vec<String>,
    /// The process id.
    pub pid: u32,
}

/// A running node with its servers.
#[derive(Debug)]
pub struct RunningNode {
    /// The node.
    pub service: NodeService,
    /// Where it can be reached.
    pub endpoints: Endpoints,
    rpc: RpcServerHandle,
    metrics: MetricsServerHandle,
}

impl RunningNode {
    /// Stops the servers and the network, and flushes the chain.
    pub async fn stop(self) {
        self.rpc.stop();
        self.rpc.stopped().await;
        self.metrics.stop().await;
        let _ = self.service.net().shutdown().await;
        match self.service.with_core(|c| c.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) | Err(e) => {
                tracing::warn!(error = %e, "flushing the chain at shutdown failed");
            }
        }
    }
}

/// Starts the node in `dir` with `settings`: opens (or creates) its chain from the genesis,
/// starts the network, the RPC server (token in `<dir>/token`) and the metrics endpoint, and
/// writes `<dir>/endpoints.json`.
///
/// # Errors
/// Any [`NodeError`]: an unreadable genesis, a directory of another network, an address in use.
pub async fn start(
    dir: &Path,
    settings: &NodeSettings,
    verifier: Box<dyn ProofVerifier>,
) -> NodeResult<RunningNode> {
    std::fs::create_dir_all(dir).map_err(NodeError::io(dir))?;
    let genesis = GenesisFile::load(&dir.join(&settings.genesis))?;
    let core = CoreConfig {
        clock_drift_secs: settings.clock_drift_secs,
        ..CoreConfig::default()
    };
    let config = NodeConfig {
        dir: dir.to_path_buf(),
        genesis,
        listen: settings.multiaddrs(dir, &settings.listen)?,
        bootstrap: settings.multiaddrs(dir, &settings.bootstrap)?,
        core,
        status_interval: Duration::from_secs(settings.status_interval_secs.max(1)),
    };
    let service = NodeService::start(config, verifier).await?;
    let token = crate::rpc::load_or_create_token(dir)?;
    let (rpc_addr, rpc) = crate::rpc::serve_rpc(settings.rpc, service.clone(), token).await?;
    let (metrics_addr, metrics) =
        crate::rpc::serve_node_metrics(settings.metrics, service.clone()).await?;
    let peer_id = service.net().local_peer_id();
    // The listeners report their addresses once bound: wait briefly for them.
    let mut addrs = Vec::new();
    for _ in 0..50 {
        addrs = service
            .net()
            .listen_addrs()
            .await
            .map_err(|e| NodeError::Net(e.to_string()))?;
        if addrs.len() >= settings.listen.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let endpoints = Endpoints {
        rpc: format!("http://{rpc_addr}"),
        metrics: format!("http://{metrics_addr}/metrics"),
        peer_id: peer_id.to_string(),
        multiaddrs: addrs
            .iter()
            .map(|a| with_peer(a, &peer_id.to_string()))
            .collect(),
        pid: std::process::id(),
    };
    let path = dir.join(ENDPOINTS_FILE);
    let json = serde_json::to_vec_pretty(&endpoints).map_err(|e| NodeError::Config {
        path: path.clone(),
        why: e.to_string(),
    })?;
    lode_proofs::durable::write_atomic(&path, &json).map_err(|e| NodeError::Io {
        path,
        source: std::io::Error::other(e.to_string()),
    })?;
    tracing::info!(
        rpc = %endpoints.rpc,
        metrics = %endpoints.metrics,
        peer_id = %endpoints.peer_id,
        "node started"
    );
    Ok(RunningNode {
        service,
        endpoints,
        rpc,
        metrics,
    })
}

/// `addr` ending in `/p2p/<peer>` (unchanged when it already does).
fn with_peer(addr: &Multiaddr, peer: &str) -> String {
    let s = addr.to_string();
    if s.contains("/p2p/") {
        s
    } else {
        format!("{s}/p2p/{peer}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_defaults() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            NodeSettings::load(d.path()).unwrap(),
            NodeSettings::default()
        );
        let s = NodeSettings {
            bootstrap: vec!["/ip4/127.0.0.1/tcp/5/p2p/12D3KooWA".into()],
            ..NodeSettings::default()
        };
        s.save(d.path()).unwrap();
        assert_eq!(NodeSettings::load(d.path()).unwrap(), s);
        std::fs::write(d.path().join(CONFIG_FILE), "rpc = 5\n").unwrap();
        let e = NodeSettings::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("config"), "{e}");
        std::fs::write(d.path().join(CONFIG_FILE), "unknown = 1\n").unwrap();
        assert!(NodeSettings::load(d.path()).is_err());
    }
}
