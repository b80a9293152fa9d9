//! Chain commands: inspect the rules a network runs on, and a node's chain (head, tipsets).

use clap::{Args, Subcommand, ValueEnum};
use lode_chain::Policy;
use lode_chain::types::Epoch;
use lode_node::rpc::client::{ClientResult, NodeClient};
use lode_node::rpc::types::{HeadInfo, HeaderInfo, TipsetInfo};
use serde::Serialize;

use super::common::{ApiArgs, block_on, client_error, print_json};

/// Which network's rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Network {
    /// SPEC §8: 30-second epochs, 2880-epoch proving periods, 32 and 64 GiB sectors.
    Mainnet,
    /// The same ratios with 1-second epochs and 4-minute proving periods; 2 KiB and 8 MiB sectors.
    Devnet,
}

/// Chain subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ChainCommand {
    /// Print every constant of a network's chain rules (epochs, deadlines, deposits, fees, DataCap,
    /// gas). Durations are in epochs; amounts in atto (10^-18 LODE).
    #[command(after_help = "Examples:
  lode chain policy
  lode chain policy --network devnet --json")]
    Policy(PolicyArgs),
    /// The node's head tipset: epoch, key, weight, parent state root, state root, blocks.
    #[command(after_help = "Examples:
  lode chain head
  lode chain head --api 127.0.0.1:1234 --json")]
    Head(HeadArgs),
    /// The canonical tipset at an epoch: its blocks (miner, win count, messages) and parent state
    /// root. A null round has none.
    #[command(after_help = "Examples:
  lode chain tipset 1
  lode chain tipset 120 --devnet ./devnet --json")]
    Tipset(TipsetArgs),
}

/// Arguments of `lode chain head`.
#[derive(Debug, Args)]
pub(crate) struct HeadArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// Print JSON: the head's fields and its blocks' header fields.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lode chain tipset`.
#[derive(Debug, Args)]
pub(crate) struct TipsetArgs {
    /// The epoch.
    height: Epoch,
    #[command(flatten)]
    api: ApiArgs,
    /// Print JSON: the tipset as the node returns it.
    #[arg(long)]
    json: bool,
}

/// What `lode chain head --json` prints: the head with its blocks.
#[derive(Debug, Serialize)]
struct HeadReport {
    #[serde(flatten)]
    head: HeadInfo,
    blocks: Vec<HeaderInfo>,
}

/// How often the head is read again when it moves between the two calls that describe it.
const HEAD_ATTEMPTS: usize = 5;

/// The head and the blocks of the same tipset (read again while the head moves meanwhile).
async fn head_report(client: &NodeClient) -> ClientResult<Option<HeadReport>> {
    for _ in 0..HEAD_ATTEMPTS {
        let head = client.chain_head().await?;
        let tipset = client.chain_tipset_by_height(head.epoch).await?;
        match tipset {
            Some(t) if t.key == head.key => {
                return Ok(Some(HeadReport {
                    head,
                    blocks: t.blocks,
                }));
            }
            // Genesis has no blocks.
            None if head.key.is_empty() => {
                return Ok(Some(HeadReport {
                    head,
                    blocks: Vec::new(),
                }));
            }
            _ => {}
        }
    }
    Ok(None)
}

fn hex_list(ids: &[[u8; 32]]) -> String {
    if ids.is_empty() {
        return "(genesis)".to_string();
    }
    ids.iter().map(hex::encode).collect::<Vec<_>>().join(", ")
}

fn hex_opt(h: Option<[u8; 32]>) -> String {
    h.map(hex::encode)
        .unwrap_or_else(|| "(none: genesis)".to_string())
}

fn print_blocks(blocks: &[HeaderInfo]) {
    outln!("blocks: {}", blocks.len());
    for b in blocks {
        outln!(
            "  {}  miner {}  win count {}  messages {}",
            hex::encode(b.id),
            b.miner,
            b.win_count,
            b.messages
        );
    }
}

fn print_tipset(t: &TipsetInfo) {
    outln!("epoch: {}", t.epoch);
    outln!("tipset: {}", hex_list(&t.key));
    outln!("parents: {}", hex_list(&t.parents));
    outln!("weight: {}", t.weight);
    outln!("parent state root: {}", hex_opt(t.parent_state_root));
    print_blocks(&t.blocks);
}

/// Arguments of `lode chain policy`.
#[derive(Debug, Args)]
pub(crate) struct PolicyArgs {
    /// The network.
    #[arg(long, value_enum, default_value = "mainnet")]
    network: Network,
    /// Print JSON instead of `name = value` lines.
    #[arg(long)]
    json: bool,
}

/// Runs a chain subcommand.
pub(crate) fn run(cmd: ChainCommand) -> anyhow::Result<()> {
    match cmd {
        ChainCommand::Policy(a) => {
            let policy = match a.network {
                Network::Mainnet => Policy::mainnet(),
                Network::Devnet => Policy::devnet(),
            };
            let value = serde_json::to_value(&policy)?;
            if a.json {
                outln!("{}", serde_json::to_string_pretty(&value)?);
            } else if let serde_json::Value::Object(map) = value {
                outln!("epochs_in_day = {}", policy.epochs_in_day());
                for (k, v) in map {
                    outln!("{k} = {v}");
                }
            }
            Ok(())
        }
        ChainCommand::Head(a) => {
            let client = a.api.client()?;
            let Some(report) = block_on(head_report(&client))?.map_err(client_error)? else {
                anyhow::bail!(
                    "the node's head changed {HEAD_ATTEMPTS} times while it was read: try again"
                );
            };
            if a.json {
                return print_json(&report);
            }
            let h = &report.head;
            outln!("epoch: {}", h.epoch);
            outln!("tipset: {}", hex_list(&h.key));
            outln!("weight: {}", h.weight);
            outln!("parent state root: {}", hex_opt(h.parent_state_root));
            outln!("state root: {}", hex_opt(h.state_root));
            print_blocks(&report.blocks);
            Ok(())
        }
        ChainCommand::Tipset(a) => {
            let client = a.api.client()?;
            let tipset = block_on(async {
                let t = client.chain_tipset_by_height(a.height).await?;
                let head = match &t {
                    Some(_) => None,
                    None => Some(client.chain_head().await?.epoch),
                };
                ClientResult::Ok((t, head))
            })?
            .map_err(client_error)?;
            match tipset {
                (Some(t), _) if a.json => print_json(&t),
                (Some(t), _) => {
                    print_tipset(&t);
                    Ok(())
                }
                (None, head) => {
                    let head = head.unwrap_or_default();
                    if a.height > head {
                        anyhow::bail!("epoch {} is beyond the head (epoch {head})", a.height)
                    }
                    anyhow::bail!("epoch {} is a null round: no block was made", a.height)
                }
            }
        }
    }
}
