//! Chain commands: inspect the rules a network runs on.

use clap::{Args, Subcommand, ValueEnum};
use lode_chain::Policy;

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
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else if let serde_json::Value::Object(map) = value {
                println!("epochs_in_day = {}", policy.epochs_in_day());
                for (k, v) in map {
                    println!("{k} = {v}");
                }
            }
            Ok(())
        }
    }
}
