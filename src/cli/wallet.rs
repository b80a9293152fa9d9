//! Wallet commands: keys in the local keystore (`lode_node::wallet`), balances and transfers
//! through a node's RPC.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use lode_chain::types::{Address, TokenAmount};
use lode_node::rpc::client::NodeClient;
use lode_node::rpc::types::parse_address;
use lode_node::wallet::{self, Inclusion, Keystore, Transfer, WalletError};
use serde::Serialize;

use super::common::{ApiArgs, block_on, client_error, print_json};

/// Largest secret-key input read by `lode wallet import`.
const MAX_SECRET_INPUT: u64 = 4096;

/// Wallet subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum WalletCommand {
    /// Create a key from the operating system's randomness and keep it in the wallet (a file
    /// readable by you only). The first key becomes the default.
    #[command(after_help = "Examples:
  lode wallet new
  lode wallet new --default --json
  lode wallet new --wallet ./keys")]
    New(NewArgs),
    /// Add an existing secret key: 64 hex digits or a key file, from FILE or standard input.
    #[command(after_help = "Examples:
  lode wallet import key.hex
  echo $SECRET_HEX | lode wallet import --default
  lode wallet import other-wallet/l3a1b2... --json")]
    Import(ImportArgs),
    /// List the wallet's addresses, with balances when a node is reachable.
    #[command(after_help = "Examples:
  lode wallet list
  lode wallet list --devnet ./devnet --json")]
    List(ListArgs),
    /// An address's balance (the default address's when none is given).
    #[command(after_help = "Examples:
  lode wallet balance
  lode wallet balance l3a1b2... --api 127.0.0.1:1234 --json
  lode wallet balance l0100")]
    Balance(BalanceArgs),
    /// Print the default address, or make ADDRESS the default.
    #[command(after_help = "Examples:
  lode wallet default
  lode wallet default l3a1b2...
  lode wallet default --json")]
    Default(DefaultArgs),
    /// Send tokens: sign a transfer with a wallet key and push it to the node's message pool.
    #[command(after_help = "Examples:
  lode wallet send l3a1b2... 1.5
  lode wallet send l3a1b2... 2500atto --from l3c3d4... --json
  lode wallet send l0104 10 --wait --wait-timeout 60 --devnet ./devnet")]
    Send(SendArgs),
}

/// The keystore flag every wallet command takes.
#[derive(Debug, Args)]
pub(crate) struct WalletDir {
    /// The wallet directory; else `$LODE_WALLET`, else `<data dir>/lode/wallet`
    /// (`~/.local/share/lode/wallet` on Linux).
    #[arg(long, value_name = "DIR")]
    wallet: Option<PathBuf>,
}

impl WalletDir {
    fn open(&self) -> anyhow::Result<Keystore> {
        let dir = wallet::resolve_dir(self.wallet.as_deref(), |k| std::env::var(k).ok())?;
        Ok(Keystore::open(dir)?)
    }
}

/// Arguments of `lode wallet new`.
#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    #[command(flatten)]
    wallet: WalletDir,
    /// Make the new key the default (the first key always is).
    #[arg(long)]
    default: bool,
    /// Print JSON: the address and whether it is the default.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lode wallet import`.
#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The file holding the secret key; `-` or nothing reads standard input.
    file: Option<PathBuf>,
    #[command(flatten)]
    wallet: WalletDir,
    /// Make the imported key the default (the first key always is).
    #[arg(long)]
    default: bool,
    /// Print JSON: the address and whether it is the default.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lode wallet list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    wallet: WalletDir,
    #[command(flatten)]
    api: ApiArgs,
    /// Print JSON: a list of {address, default, balance (atto, when a node answered)}.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lode wallet balance`.
#[derive(Debug, Args)]
pub(crate) struct BalanceArgs {
    /// The address (`l3…` or `l0<id>`); the wallet's default when left out.
    address: Option<String>,
    #[command(flatten)]
    wallet: WalletDir,
    #[command(flatten)]
    api: ApiArgs,
    /// Print JSON: {address, balance (atto)}.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lode wallet default`.
#[derive(Debug, Args)]
pub(crate) struct DefaultArgs {
    /// The address to make the default; left out, the default is printed.
    address: Option<String>,
    #[command(flatten)]
    wallet: WalletDir,
    /// Print JSON: {address}.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lode wallet send`.
#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// The receiver: `l3…` (a new address gets an account) or `l0<id>`.
    to: String,
    /// How much: LODE with up to 18 decimals (`1.5`) or atto units (`2500atto`).
    #[arg(value_parser = parse_amount)]
    amount: TokenAmount,
    /// The sender, a key in the wallet; the default address when left out.
    #[arg(long, value_name = "ADDRESS")]
    from: Option<String>,
    /// Most gas the message may use; by default twice what including a transfer costs.
    #[arg(long, value_name = "N")]
    gas_limit: Option<u64>,
    /// Atto per gas unit (`150`, or an amount with a unit such as `0.000001 LODE`); by default
    /// the network's minimum.
    #[arg(long, value_name = "P", value_parser = parse_gas_price)]
    gas_price: Option<TokenAmount>,
    /// Wait until the message is in a block.
    #[arg(long)]
    wait: bool,
    /// How long `--wait` waits, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    wait_timeout: u64,
    #[command(flatten)]
    wallet: WalletDir,
    #[command(flatten)]
    api: ApiArgs,
    /// Print JSON: the message id, its terms, and with `--wait` where it was included.
    #[arg(long)]
    json: bool,
}

fn parse_amount(s: &str) -> Result<TokenAmount, String> {
    s.parse()
        .map_err(|e: lode_chain::types::ParseAmountError| e.to_string())
}

/// A plain integer is atto; anything else is an amount with its unit.
fn parse_gas_price(s: &str) -> Result<TokenAmount, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse()
            .map(TokenAmount)
            .map_err(|_| format!("{s:?} is too large"));
    }
    parse_amount(s)
}

fn parse_addr(s: &str) -> anyhow::Result<Address> {
    Ok(parse_address(s.trim())?)
}

/// A wallet address as the commands report it.
#[derive(Debug, Serialize)]
struct AddressReport {
    address: String,
    default: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    balance: Option<TokenAmount>,
}

/// Runs a wallet subcommand.
pub(crate) fn run(cmd: WalletCommand) -> anyhow::Result<()> {
    match cmd {
        WalletCommand::New(a) => {
            let ks = a.wallet.open()?;
            let address = ks.new_key()?;
            report_added(&ks, address, a.default, a.json)
        }
        WalletCommand::Import(a) => {
            let text = read_secret_input(a.file.as_deref())?;
            let key = wallet::parse_secret(&text)?;
            let ks = a.wallet.open()?;
            let address = ks.import(&key)?;
            report_added(&ks, address, a.default, a.json)
        }
        WalletCommand::List(a) => list(a),
        WalletCommand::Balance(a) => {
            let address = match &a.address {
                Some(s) => parse_addr(s)?,
                None => a.wallet.open()?.default_address()?,
            };
            let client = a.api.client()?;
            let balance = block_on(client.state_balance(&address))?.map_err(client_error)?;
            if a.json {
                print_json(&serde_json::json!({
                    "address": address.to_string(),
                    "balance": balance,
                }))
            } else {
                outln!("{balance}");
                Ok(())
            }
        }
        WalletCommand::Default(a) => {
            let ks = a.wallet.open()?;
            let address = match &a.address {
                Some(s) => {
                    let address = parse_addr(s)?;
                    ks.set_default(&address)?;
                    address
                }
                None => ks.default_address()?,
            };
            if a.json {
                print_json(&serde_json::json!({ "address": address.to_string() }))
            } else {
                outln!("{address}");
                Ok(())
            }
        }
        WalletCommand::Send(a) => send(a),
    }
}

/// Makes `address` the default when asked or when there is none, and reports it.
fn report_added(
    ks: &Keystore,
    address: Address,
    make_default: bool,
    json: bool,
) -> anyhow::Result<()> {
    let default = if make_default || ks.default_address_opt()?.is_none() {
        ks.set_default(&address)?;
        true
    } else {
        ks.default_address_opt()? == Some(address)
    };
    if json {
        print_json(&AddressReport {
            address: address.to_string(),
            default,
            balance: None,
        })
    } else {
        outln!("{address}");
        if default {
            eprintln!("{address} is the default address");
        }
        Ok(())
    }
}

fn read_secret_input(file: Option<&std::path::Path>) -> anyhow::Result<String> {
    let mut text = String::new();
    match file.filter(|p| p.as_os_str() != "-") {
        Some(path) => {
            std::fs::File::open(path)
                .with_context(|| format!("cannot read the secret key from {}", path.display()))?
                .take(MAX_SECRET_INPUT)
                .read_to_string(&mut text)
                .with_context(|| format!("{} is not a text key file", path.display()))?;
        }
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprintln!("paste the secret key (64 hex digits), then Enter and Ctrl-D:");
            }
            std::io::stdin()
                .take(MAX_SECRET_INPUT)
                .read_to_string(&mut text)
                .context("cannot read the secret key from standard input")?;
        }
    }
    Ok(text)
}

fn list(a: ListArgs) -> anyhow::Result<()> {
    let ks = a.wallet.open()?;
    let addresses = ks.list()?;
    let default = ks.default_address_opt()?;
    let balances = if addresses.is_empty() {
        None
    } else {
        let client = a.api.client()?;
        match block_on(balances_of(&client, &addresses))? {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("balances left out: {:#}", client_error(e));
                None
            }
        }
    };
    let reports: Vec<AddressReport> = addresses
        .iter()
        .enumerate()
        .map(|(i, address)| AddressReport {
            address: address.to_string(),
            default: default == Some(*address),
            balance: balances.as_ref().and_then(|b| b.get(i).copied()),
        })
        .collect();
    if a.json {
        return print_json(&reports);
    }
    if reports.is_empty() {
        eprintln!(
            "the wallet {} has no keys: `lode wallet new` makes one",
            ks.dir().display()
        );
    }
    for r in reports {
        let balance = r.balance.map(|b| format!("  {b}")).unwrap_or_default();
        let mark = if r.default { "  (default)" } else { "" };
        outln!("{}{balance}{mark}", r.address);
    }
    Ok(())
}

async fn balances_of(
    client: &NodeClient,
    addresses: &[Address],
) -> Result<Vec<TokenAmount>, lode_node::rpc::client::ClientError> {
    let mut out = Vec::with_capacity(addresses.len());
    for address in addresses {
        out.push(client.state_balance(address).await?);
    }
    Ok(out)
}

/// What `lode wallet send --json` prints.
#[derive(Debug, Serialize)]
struct SendReport {
    #[serde(with = "lode_node::rpc::types::serde_hex::hash")]
    id: [u8; 32],
    from: String,
    to: String,
    value: TokenAmount,
    nonce: u64,
    gas_limit: u64,
    gas_price: TokenAmount,
    #[serde(skip_serializing_if = "Option::is_none")]
    included: Option<Inclusion>,
}

fn send(a: SendArgs) -> anyhow::Result<()> {
    let ks = a.wallet.open()?;
    let from = match &a.from {
        Some(s) => parse_addr(s)?,
        None => ks.default_address()?,
    };
    let key = ks.get(&from)?;
    let to = parse_addr(&a.to)?;
    let client = a.api.client()?;
    let report = block_on(async {
        let genesis = client.chain_genesis().await?;
        let Some(nonce) = client.mpool_nonce(&from).await? else {
            return Err(WalletError::Transfer(format!(
                "{from} has no account on chain yet: it must receive funds before it can send"
            )));
        };
        let msg = wallet::sign_transfer(
            &genesis.policy,
            &Transfer {
                from,
                to,
                value: a.amount,
                nonce,
                gas_limit: a.gas_limit,
                gas_price: a.gas_price,
            },
            &key,
        )?;
        let since = client.chain_head().await?.epoch;
        let id = client.mpool_push(&msg).await?;
        let included = if a.wait {
            if !a.json {
                outln!("{}", hex::encode(id));
            }
            eprintln!("waiting for message {} to be included…", hex::encode(id));
            let inclusion = wallet::wait_for_inclusion(
                &client,
                id,
                &from,
                nonce,
                since,
                Duration::from_secs(a.wait_timeout),
                Duration::from_millis(500),
            )
            .await?;
            Some(inclusion)
        } else {
            None
        };
        Ok(SendReport {
            id,
            from: from.to_string(),
            to: to.to_string(),
            value: msg.message.value,
            nonce,
            gas_limit: msg.message.gas_limit,
            gas_price: msg.message.gas_price,
            included,
        })
    })?
    .map_err(|e| match e {
        WalletError::Client(c) => client_error(c),
        other => anyhow::Error::new(other),
    })?;
    if a.json {
        print_json(&report)?;
    } else if let Some(inc) = &report.included {
        outln!(
            "included at epoch {} in block {}",
            inc.epoch,
            hex::encode(inc.block)
        );
    } else {
        outln!("{}", hex::encode(report.id));
    }
    if let Some(inc) = &report.included
        && !inc.applied
    {
        anyhow::bail!(
            "message {} was included at epoch {} but the chain did not apply it (its nonce, funds or signature failed the chain's checks)",
            hex::encode(report.id),
            inc.epoch
        );
    }
    Ok(())
}
