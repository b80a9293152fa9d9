//! `lode actor`: a miner actor on chain, through a node — its owner, worker, power and balances
//! (`info`), and the owner withdrawing its available balance (`withdraw`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use lode_chain::actors::miner::MinerMethod;
use lode_chain::message::Method;
use lode_chain::types::{ActorId, Address, TokenAmount};
use lode_node::rpc::types::{MinerInfoView, MinerPowerInfo};
use lode_node::wallet::{self, Keystore};
use serde::Serialize;

use super::common::{ApiArgs, block_on, client_error, print_json};

/// Actor subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ActorCommand {
    /// A miner actor: owner, worker, sector size, power (raw and quality-adjusted) and its share
    /// of the network's, and its balances — total, available, pre-commit deposits, initial
    /// pledge, locked (vesting) rewards, fee debt — and its proving period.
    #[command(after_help = "Examples:
  lode actor info --devnet ~/.local/share/lode/devnet          # its first miner
  lode actor info --actor l01004 --api 127.0.0.1:1234 --json")]
    Info(ActorInfoArgs),
    /// Withdraw available balance to the owner (signed by the owner's key from the wallet, or
    /// `--owner-key`); everything available when no amount is given.
    #[command(after_help = "Examples:
  lode actor withdraw --devnet ~/.local/share/lode/devnet --owner-key ~/.local/share/lode/devnet/keys/owner-0.key
  lode actor withdraw 12.5 --actor l01004 --devnet ./net --json")]
    Withdraw(WithdrawArgs),
}

/// Which miner, on which node.
#[derive(Debug, Args)]
pub(crate) struct ActorArgs {
    /// The miner actor (`l0…`); with `--devnet` and none given, the devnet's first miner.
    #[arg(long, value_name = "ACTOR")]
    actor: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lode actor info`.
#[derive(Debug, Args)]
pub(crate) struct ActorInfoArgs {
    #[command(flatten)]
    actor: ActorArgs,
}

/// Arguments of `lode actor withdraw`.
#[derive(Debug, Args)]
pub(crate) struct WithdrawArgs {
    /// How much (`12.5`, `3 LODE`, `2500 atto`); everything available when omitted.
    #[arg(value_parser = parse_amount)]
    amount: Option<TokenAmount>,
    /// The owner's secret key file (hex); else the wallet's key for the owner's account.
    #[arg(long, value_name = "FILE")]
    owner_key: Option<PathBuf>,
    /// The wallet directory; else `$LODE_WALLET`, else `<data dir>/lode/wallet`.
    #[arg(long, value_name = "DIR")]
    wallet: Option<PathBuf>,
    /// Seconds to wait for the message to be executed.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    wait_timeout: u64,
    #[command(flatten)]
    actor: ActorArgs,
}

fn parse_amount(s: &str) -> Result<TokenAmount, String> {
    s.parse()
        .map_err(|e: lode_chain::types::ParseAmountError| e.to_string())
}

/// Runs an actor subcommand.
pub(crate) fn run(cmd: ActorCommand) -> anyhow::Result<()> {
    match cmd {
        ActorCommand::Info(a) => info(&a.actor),
        ActorCommand::Withdraw(a) => withdraw(&a),
    }
}

/// The miner `--actor` names, or the devnet's first miner.
pub(crate) fn resolve_actor(
    actor: Option<&str>,
    devnet: Option<&std::path::Path>,
) -> anyhow::Result<ActorId> {
    let text = match (actor, devnet) {
        (Some(a), _) => a.to_string(),
        (None, Some(dir)) => {
            let file = lode_devnet::devnet::DevnetFile::load(dir)?;
            file.miners
                .first()
                .map(|m| m.actor.clone())
                .context("the devnet has no miner")?
        }
        (None, None) => anyhow::bail!("which miner? Pass --actor l0<id> (or --devnet DIR)"),
    };
    let t = text.trim();
    t.strip_prefix("l0")
        .unwrap_or(t)
        .parse::<u64>()
        .map(ActorId)
        .map_err(|_| anyhow::anyhow!("{t:?} is not a miner's id address (l0<n>)"))
}

/// `lode actor info --json`.
#[derive(Debug, Serialize)]
struct ActorReport {
    info: MinerInfoView,
    power: MinerPowerInfo,
}

fn info(a: &ActorArgs) -> anyhow::Result<()> {
    let actor = resolve_actor(a.actor.as_deref(), a.api.devnet.as_deref())?;
    let client = a.api.client()?;
    let (info, power) = block_on(async {
        (
            client.state_miner_info(actor).await,
            client.state_miner_power(actor).await,
        )
    })?;
    let report = ActorReport {
        info: info.map_err(client_error)?,
        power: power.map_err(client_error)?,
    };
    if a.json {
        return print_json(&report);
    }
    out!("{}", info_text(&report));
    Ok(())
}

fn share(part: u128, whole: u128) -> String {
    if whole == 0 {
        return "0%".into();
    }
    // Basis points in integers (scaled down first where ×10,000 could overflow).
    let (part, whole) = if whole > u128::MAX / 10_000 {
        (part / 10_000, whole / 10_000)
    } else {
        (part, whole)
    };
    let bp = part.saturating_mul(10_000).checked_div(whole).unwrap_or(0);
    format!("{}.{:02}%", bp / 100, bp % 100)
}

/// `lode actor info`'s text, like `lotus-miner actor info`.
fn info_text(r: &ActorReport) -> String {
    let i = &r.info;
    let p = &r.power;
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<20}{v}\n"));
    line("Miner:", i.miner.to_string());
    line("Owner:", i.owner.to_string());
    line("Worker:", i.worker.to_string());
    line("Sector size:", i.sector_size.to_string());
    line(
        "Power:",
        format!(
            "{} B raw ({} of the network), {} B QA ({})",
            p.power.raw,
            share(p.power.raw, p.network.raw),
            p.power.qa,
            share(p.power.qa, p.network.qa)
        ),
    );
    line(
        "Consensus minimum:",
        if p.meets_consensus_minimum {
            "met: eligible to win blocks".to_string()
        } else {
            "not met: not eligible to win blocks yet".to_string()
        },
    );
    line("Balance:", i.balance.to_string());
    line("  Available:", i.available.to_string());
    line("  PreCommit deposits:", i.pre_commit_deposits.to_string());
    line("  Initial pledge:", i.initial_pledge.to_string());
    line("  Vesting (locked):", i.locked_funds.to_string());
    line("  Fee debt:", i.fee_debt.to_string());
    line(
        "Proving period:",
        format!(
            "starts at epoch {}, deadline {} current",
            i.proving_period_start, i.current_deadline
        ),
    );
    out
}

/// `lode actor withdraw --json`.
#[derive(Debug, Serialize)]
struct Withdrawn {
    message: String,
    epoch: u64,
    amount: TokenAmount,
    available_after: TokenAmount,
}

fn withdraw(a: &WithdrawArgs) -> anyhow::Result<()> {
    let actor = resolve_actor(a.actor.actor.as_deref(), a.actor.api.devnet.as_deref())?;
    let client = a.actor.api.client()?;
    let report = block_on(async {
        let genesis = client.chain_genesis().await.map_err(client_error)?;
        let info = client.state_miner_info(actor).await.map_err(client_error)?;
        let key = match &a.owner_key {
            Some(path) => lode_provider::run::read_key_file(path)?,
            None => {
                let dir = wallet::resolve_dir(a.wallet.as_deref(), |k| std::env::var(k).ok())?;
                let ks = Keystore::open(dir)?;
                wallet::key_for_account(&client, &ks, &Address::Id(info.owner))
                    .await
                    .with_context(|| {
                        format!(
                            "the owner {} must sign: import its key (`lode wallet import`) or pass --owner-key",
                            info.owner
                        )
                    })?
            }
        };
        let from = Address::Bls(key.public_key());
        let nonce = client
            .mpool_nonce(&from)
            .await
            .map_err(client_error)?
            .with_context(|| format!("{from} has no account on chain"))?;
        let amount = a.amount.unwrap_or(info.available);
        let msg = wallet::sign_method(
            &genesis.policy,
            &key,
            Address::Id(actor),
            TokenAmount::ZERO,
            Method::Miner(MinerMethod::WithdrawBalance { amount }),
            nonce,
            0,
            0,
        );
        let id = client.mpool_push(&msg).await.map_err(client_error)?;
        let found = wallet::wait_for_receipt(
            &client,
            id,
            Duration::from_secs(a.wait_timeout),
            Duration::from_millis(500),
        )
        .await?;
        if !found.receipt.ok() {
            anyhow::bail!(
                "the withdrawal failed at epoch {}: {} ({})",
                found.epoch,
                found.receipt.exit,
                found.receipt.error
            );
        }
        let withdrawn: TokenAmount = lode_chain::codec::decode(&found.receipt.return_data)
            .context("the withdrawal's receipt does not decode as an amount")?;
        let after = client.state_miner_info(actor).await.map_err(client_error)?;
        Ok::<_, anyhow::Error>(Withdrawn {
            message: hex::encode(id),
            epoch: found.epoch,
            amount: withdrawn,
            available_after: after.available,
        })
    })??;
    if a.actor.json {
        return print_json(&report);
    }
    outln!(
        "withdrew {} to the owner at epoch {} (message {}); {} available now",
        report.amount,
        report.epoch,
        report.message,
        report.available_after
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_exact_to_the_basis_point() {
        assert_eq!(share(0, 0), "0%");
        assert_eq!(share(1, 3), "33.33%");
        assert_eq!(share(2048, 4096), "50.00%");
        assert_eq!(share(u128::MAX, u128::MAX), "100.00%");
    }

    #[test]
    fn actors_resolve_from_flags() {
        assert_eq!(
            resolve_actor(Some("l01004"), None).ok(),
            Some(ActorId(1004))
        );
        assert_eq!(resolve_actor(Some("1004"), None).ok(), Some(ActorId(1004)));
        assert!(resolve_actor(Some("l3abc"), None).is_err());
        assert!(resolve_actor(None, None).is_err());
    }
}
