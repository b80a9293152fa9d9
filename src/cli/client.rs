//! Client commands that read a node through its RPC: the network (`lode net`), the state
//! (`lode state`), the message pool (`lode mpool`) and sync (`lode sync`).

use clap::{Args, Subcommand};
use lode_chain::message::Method;
use lode_node::rpc::types::{parse_actor_id, parse_address};

use super::common::{ApiArgs, block_on, client_error, print_json};

/// The output flag and node flags every client command takes.
#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// Print JSON (the RPC result as the node returns it).
    #[arg(long)]
    json: bool,
}

/// Network subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum NetCommand {
    /// The node's connected peers: addresses, ping round trip, gossip score, agent.
    #[command(after_help = "Examples:
  lode net peers
  lode net peers --api 127.0.0.1:1234 --json")]
    Peers(ClientArgs),
    /// The node's peer id and the addresses other nodes can dial.
    #[command(after_help = "Examples:
  lode net info
  lode net info --devnet ./devnet --json")]
    Info(ClientArgs),
    /// Ask the node to connect to a peer (protected: needs the node's token).
    #[command(after_help = "Examples:
  lode net connect /ip4/10.0.0.2/tcp/4001/p2p/12D3KooW...
  lode net connect /ip4/10.0.0.2/udp/4001/quic-v1 --token $(cat NODE_DIR/token) --json")]
    Connect(ConnectArgs),
}

/// Arguments of `lode net connect`.
#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// The peer's multiaddress (with or without `/p2p/<peer id>`).
    multiaddr: String,
    #[command(flatten)]
    client: ClientArgs,
}

/// State subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum StateCommand {
    /// A miner's raw and quality-adjusted power, and the network's consensus totals.
    #[command(after_help = "Examples:
  lode state miner-power l01000
  lode state miner-power l01000 --json")]
    MinerPower(MinerPowerArgs),
    /// An actor's record: id, kind, key, balance, nonce.
    #[command(after_help = "Examples:
  lode state actor l0100
  lode state actor l3a1b2... --json")]
    Actor(ActorArgs),
    /// The power actor's totals: consensus, committed, miner counts, smoothed estimate, locked.
    #[command(after_help = "Examples:
  lode state network-power
  lode state network-power --json")]
    NetworkPower(ClientArgs),
}

/// Arguments of `lode state miner-power`.
#[derive(Debug, Args)]
pub(crate) struct MinerPowerArgs {
    /// The miner's id address (`l0<id>`).
    miner: String,
    #[command(flatten)]
    client: ClientArgs,
}

/// Arguments of `lode state actor`.
#[derive(Debug, Args)]
pub(crate) struct ActorArgs {
    /// The actor's address (`l0<id>` or an account's `l3…`).
    address: String,
    #[command(flatten)]
    client: ClientArgs,
}

/// Message pool subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum MpoolCommand {
    /// The messages waiting to be included, by sender and nonce.
    #[command(after_help = "Examples:
  lode mpool pending
  lode mpool pending --json")]
    Pending(ClientArgs),
}

/// Sync subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum SyncCommand {
    /// How far the node's chain is: head, weight, the clock's epoch, lag, peers.
    #[command(after_help = "Examples:
  lode sync status
  lode sync status --devnet ./devnet --json")]
    Status(ClientArgs),
}

/// Runs a network subcommand.
pub(crate) fn net(cmd: NetCommand) -> anyhow::Result<()> {
    match cmd {
        NetCommand::Peers(c) => {
            let client = c.api.client()?;
            let peers = block_on(client.net_peers())?.map_err(client_error)?;
            if c.json {
                return print_json(&peers);
            }
            if peers.is_empty() {
                eprintln!("no peers connected");
            }
            for p in peers {
                let rtt = p.rtt_ms.map(|r| format!("  {r:.1} ms")).unwrap_or_default();
                let score = p
                    .score
                    .map(|s| format!("  score {s:.2}"))
                    .unwrap_or_default();
                let addr = p.addresses.first().cloned().unwrap_or_default();
                let agent = p.agent_version.unwrap_or_default();
                outln!("{}  {addr}{rtt}{score}  {agent}", p.peer_id);
            }
            Ok(())
        }
        NetCommand::Info(c) => {
            let client = c.api.client()?;
            let info = block_on(client.net_info())?.map_err(client_error)?;
            if c.json {
                return print_json(&info);
            }
            outln!("peer id: {}", info.peer_id);
            for a in info.listen_addrs {
                outln!("listening: {a}");
            }
            Ok(())
        }
        NetCommand::Connect(a) => {
            let client = a.client.api.client()?;
            block_on(client.net_connect(&a.multiaddr))?.map_err(client_error)?;
            if a.client.json {
                print_json(&serde_json::json!({ "connected": a.multiaddr }))
            } else {
                outln!("connected to {}", a.multiaddr);
                Ok(())
            }
        }
    }
}

/// Runs a state subcommand.
pub(crate) fn state(cmd: StateCommand) -> anyhow::Result<()> {
    match cmd {
        StateCommand::MinerPower(a) => {
            let miner = parse_actor_id(a.miner.trim())?;
            let client = a.client.api.client()?;
            let p = block_on(client.state_miner_power(miner))?.map_err(client_error)?;
            if a.client.json {
                return print_json(&p);
            }
            outln!("miner: {}", p.miner);
            outln!("raw power: {} bytes", p.power.raw);
            outln!("quality-adjusted power: {} bytes", p.power.qa);
            outln!("network raw power: {} bytes", p.network.raw);
            outln!("network quality-adjusted power: {} bytes", p.network.qa);
            outln!("meets the consensus minimum: {}", p.meets_consensus_minimum);
            Ok(())
        }
        StateCommand::Actor(a) => {
            let address = parse_address(a.address.trim())?;
            let client = a.client.api.client()?;
            let actor = block_on(client.state_actor(&address))?.map_err(client_error)?;
            let Some(actor) = actor else {
                anyhow::bail!(
                    "no actor at {address} on chain (a key address gets an account when it first receives funds)"
                );
            };
            if a.client.json {
                return print_json(&actor);
            }
            outln!("id: {}", actor.id);
            outln!("kind: {}", actor.kind);
            if let Some(key) = &actor.key {
                outln!("address: l3{key}");
            }
            outln!("balance: {}", actor.balance);
            outln!("nonce: {}", actor.nonce);
            Ok(())
        }
        StateCommand::NetworkPower(c) => {
            let client = c.api.client()?;
            let p = block_on(client.state_network_power())?.map_err(client_error)?;
            if c.json {
                return print_json(&p);
            }
            outln!("consensus raw power: {} bytes", p.total.raw);
            outln!("consensus quality-adjusted power: {} bytes", p.total.qa);
            outln!("committed raw power: {} bytes", p.committed.raw);
            outln!("committed quality-adjusted power: {} bytes", p.committed.qa);
            outln!(
                "miners: {} ({} above the minimum)",
                p.miner_count,
                p.miners_above_minimum
            );
            outln!(
                "smoothed quality-adjusted estimate: {} bytes",
                p.qa_estimate
            );
            outln!("total locked: {}", p.total_locked);
            Ok(())
        }
    }
}

/// Runs a message pool subcommand.
pub(crate) fn mpool(cmd: MpoolCommand) -> anyhow::Result<()> {
    match cmd {
        MpoolCommand::Pending(c) => {
            let client = c.api.client()?;
            let pending = block_on(client.mpool_pending())?.map_err(client_error)?;
            if c.json {
                return print_json(&pending);
            }
            if pending.is_empty() {
                eprintln!("no pending messages");
            }
            for m in pending {
                let msg = &m.message.message;
                outln!(
                    "{}  {} -> {}  nonce {}  {}  {}",
                    hex::encode(m.id),
                    msg.from,
                    msg.to,
                    msg.nonce,
                    msg.value,
                    method_kind(&msg.method)
                );
            }
            Ok(())
        }
    }
}

/// Which actor's method a message calls.
fn method_kind(m: &Method) -> &'static str {
    match m {
        Method::Send => "send",
        Method::Power(_) => "power method",
        Method::Miner(_) => "miner method",
        Method::Market(_) => "market method",
        Method::VerifReg(_) => "verified registry method",
        Method::Compute(_) => "compute method",
    }
}

/// Runs a sync subcommand.
pub(crate) fn sync(cmd: SyncCommand) -> anyhow::Result<()> {
    match cmd {
        SyncCommand::Status(c) => {
            let client = c.api.client()?;
            let s = block_on(client.sync_status())?.map_err(client_error)?;
            if c.json {
                return print_json(&s);
            }
            outln!("epoch: {}", s.epoch);
            outln!(
                "head: {}",
                s.head
                    .iter()
                    .map(hex::encode)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            outln!("weight: {}", s.weight);
            outln!("clock epoch: {}", s.clock_epoch);
            outln!("lag: {} epochs", s.lag);
            outln!("peers: {}", s.peers);
            outln!("genesis: {}", hex::encode(s.genesis));
            Ok(())
        }
    }
}
