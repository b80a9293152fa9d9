//! `lode node run` and `lode provider run`: the long-running processes.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use lode_node::daemon::NodeSettings;
use lode_proofs::params::ParamStore;
use lode_proofs::verifier::SnarkVerifier;
use lode_provider::run::ProviderSettings;

use super::common::{ParamsDir, default_data_dir};

/// Node subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum NodeCommand {
    /// Run a node: the chain, the libp2p network, the JSON-RPC API and /metrics, until Ctrl-C or
    /// SIGTERM. Its directory's `config.toml` sets addresses and peers (flags override it).
    #[command(after_help = "Examples:
  lode node run --dir ~/.local/share/lode/node --genesis genesis.json
  lode node run --dir node-1 --rpc 127.0.0.1:1240 --bootstrap /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...
  lode devnet        # starts nodes and miners for you

The node writes <dir>/token (the RPC token for protected methods, 0600) and <dir>/endpoints.json
(RPC and metrics URLs, peer id, multiaddrs).")]
    Run(NodeRunArgs),
}

/// Arguments of `lode node run`.
#[derive(Debug, Args)]
pub(crate) struct NodeRunArgs {
    /// The node's directory (default: the user's data directory's `lode/node`).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The genesis file (default: `genesis.json` in the directory, or as configured).
    #[arg(long)]
    genesis: Option<PathBuf>,
    /// JSON-RPC address.
    #[arg(long)]
    rpc: Option<SocketAddr>,
    /// Prometheus /metrics address.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// libp2p listen multiaddr (repeatable; replaces the configured ones).
    #[arg(long)]
    listen: Vec<String>,
    /// Peer to dial at start, ending in /p2p/<peer id> (repeatable; added to the configured ones).
    #[arg(long)]
    bootstrap: Vec<String>,
    #[command(flatten)]
    params: ParamsDir,
}

/// Provider subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ProviderCommand {
    /// Run a storage provider's proving daemon: mines blocks with Winning PoSt when it wins,
    /// proves every deadline with Window PoSt, declares faults and recoveries, until Ctrl-C or
    /// SIGTERM. Its directory's `config.toml` names the miner actor, the node and the files.
    #[command(after_help = "Examples:
  lode provider run --dir ~/.local/share/lode/devnet/miner-0

config.toml:
  actor = \"l01004\"
  node_api = \"http://127.0.0.1:1234\"
  node_token_file = \"../node-0/token\"
  params_dir = \"/home/me/.cache/lode/params\"
  metrics = \"127.0.0.1:9501\"     # optional; also genesis, worker_key, sectors")]
    Run(ProviderRunArgs),
}

/// Arguments of `lode provider run`.
#[derive(Debug, Args)]
pub(crate) struct ProviderRunArgs {
    /// The provider's directory.
    #[arg(long)]
    dir: PathBuf,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Waits for Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Runs a node subcommand.
pub(crate) fn node(cmd: NodeCommand) -> anyhow::Result<()> {
    let NodeCommand::Run(a) = cmd;
    let dir = a.dir.unwrap_or_else(|| default_data_dir().join("node"));
    let mut settings = NodeSettings::load(&dir)?;
    if let Some(g) = a.genesis {
        settings.genesis = std::path::absolute(&g).unwrap_or(g);
    }
    if let Some(r) = a.rpc {
        settings.rpc = r;
    }
    if let Some(m) = a.metrics {
        settings.metrics = m;
    }
    if !a.listen.is_empty() {
        settings.listen = a.listen;
    }
    settings.bootstrap.extend(a.bootstrap);
    let params = match &settings.params_dir {
        Some(p) => ParamStore::new(dir.join(p)),
        None => a.params.store(),
    };
    if !dir.join(&settings.genesis).exists() {
        anyhow::bail!(
            "no genesis at {}: pass --genesis FILE (`lode genesis new` makes one), or start a local network with `lode devnet`",
            dir.join(&settings.genesis).display()
        );
    }
    runtime()?.block_on(async move {
        let verifier = Box::new(SnarkVerifier::new(params));
        let node = lode_node::daemon::start(&dir, &settings, verifier)
            .await
            .with_context(|| format!("cannot start the node in {}", dir.display()))?;
        eprintln!(
            "node running: rpc {}, metrics {}, peer {}",
            node.endpoints.rpc, node.endpoints.metrics, node.endpoints.peer_id
        );
        shutdown_signal().await;
        tracing::info!("stopping");
        node.stop().await;
        Ok(())
    })
}

/// Runs a provider subcommand.
pub(crate) fn provider(cmd: ProviderCommand) -> anyhow::Result<()> {
    let ProviderCommand::Run(a) = cmd;
    let settings = ProviderSettings::load(&a.dir)?;
    runtime()?.block_on(async move {
        let p = lode_provider::run::start(&a.dir, &settings)
            .await
            .with_context(|| format!("cannot start the provider in {}", a.dir.display()))?;
        eprintln!(
            "provider running: miner {}, metrics {}",
            p.endpoints.actor, p.endpoints.metrics
        );
        shutdown_signal().await;
        tracing::info!("stopping");
        p.stop().await;
        Ok(())
    })
}
