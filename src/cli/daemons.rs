//! `lode node run`: the node's long-running process (`lode provider run` is with the provider's
//! other commands, in `provider.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use lode_node::daemon::NodeSettings;
use lode_proofs::params::ParamStore;
use lode_proofs::verifier::SnarkVerifier;

use super::common::{ParamsDir, daemon_runtime, default_data_dir, shutdown_signal};

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
    daemon_runtime()?.block_on(async move {
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
