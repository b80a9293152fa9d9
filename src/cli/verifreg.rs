//! `lode verifreg`: the verified registry — the root appointing verifiers (`add-verifier`),
//! verifiers granting DataCap to clients (`grant-datacap`), and anyone reading an address's
//! DataCap and verifier allowance (`datacap`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use lode_chain::actors::VERIFREG;
use lode_chain::actors::verifreg::VerifRegMethod;
use lode_chain::crypto::SecretKey;
use lode_chain::message::Method;
use lode_chain::types::{Address, TokenAmount};
use lode_node::rpc::types::parse_address;
use lode_node::wallet::{self, Keystore};
use serde::Serialize;

use super::common::{ApiArgs, block_on, client_error, parse_byte_count, print_json};

/// Verified-registry subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum VerifRegCommand {
    /// Appoint a verifier with an allowance of DataCap it may grant (signed by the registry's
    /// root key).
    #[command(after_help = "Examples:
  lode verifreg add-verifier l3a1b2… 1TiB --root-key root.key
  lode verifreg add-verifier l01010 512GiB --devnet ~/.local/share/lode/devnet   # keys/verifreg-root.key")]
    AddVerifier(AddVerifierArgs),
    /// Grant DataCap to a client (signed by a verifier); its verified deals then count 10× in
    /// their sectors' quality-adjusted power.
    #[command(after_help = "Examples:
  lode verifreg grant-datacap --client l3c4d5… --bytes 64GiB --verifier-key verifier.key
  lode verifreg grant-datacap --client l01012 --bytes 1GiB --devnet ~/.local/share/lode/devnet   # keys/verifier.key")]
    GrantDatacap(GrantArgs),
    /// An address's DataCap (what its verified deals may still use) and, for a verifier, the
    /// allowance it may still grant.
    #[command(after_help = "Examples:
  lode verifreg datacap l01012 --devnet ~/.local/share/lode/devnet
  lode verifreg datacap l3c4d5… --api 127.0.0.1:1234 --json")]
    Datacap(DatacapArgs),
}

/// How the signer is found, and how long to wait for the message.
#[derive(Debug, Args)]
pub(crate) struct SignerArgs {
    /// The signer's account in the wallet (`l0…`/`l3…`); else the wallet's default address.
    #[arg(long, value_name = "ADDRESS")]
    from: Option<String>,
    /// The wallet directory; else `$LODE_WALLET`, else `<data dir>/lode/wallet`.
    #[arg(long, value_name = "DIR")]
    wallet: Option<PathBuf>,
    /// Seconds to wait for the message to be executed.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    wait_timeout: u64,
    #[command(flatten)]
    api: ApiArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lode verifreg add-verifier`.
#[derive(Debug, Args)]
pub(crate) struct AddVerifierArgs {
    /// The new verifier's account.
    verifier: String,
    /// The DataCap it may grant (`1TiB`, `512 GiB`, `1048576`).
    #[arg(value_parser = parse_byte_count)]
    allowance: u128,
    /// The root's secret key file (hex); else `<devnet>/keys/verifreg-root.key` with
    /// `--devnet`, else the wallet's key for `--from`.
    #[arg(long, value_name = "FILE")]
    root_key: Option<PathBuf>,
    #[command(flatten)]
    signer: SignerArgs,
}

/// Arguments of `lode verifreg grant-datacap`.
#[derive(Debug, Args)]
pub(crate) struct GrantArgs {
    /// The client's account.
    #[arg(long, value_name = "ADDRESS")]
    client: String,
    /// How much DataCap (`1GiB`, `64 GiB`, `2048`).
    #[arg(long, value_parser = parse_byte_count)]
    bytes: u128,
    /// The verifier's secret key file (hex); else `<devnet>/keys/verifier.key` with `--devnet`,
    /// else the wallet's key for `--from`.
    #[arg(long, value_name = "FILE")]
    verifier_key: Option<PathBuf>,
    #[command(flatten)]
    signer: SignerArgs,
}

/// Arguments of `lode verifreg datacap`.
#[derive(Debug, Args)]
pub(crate) struct DatacapArgs {
    /// The address.
    address: String,
    #[command(flatten)]
    api: ApiArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs a verified-registry subcommand.
pub(crate) fn run(cmd: VerifRegCommand) -> anyhow::Result<()> {
    match cmd {
        VerifRegCommand::AddVerifier(a) => {
            let verifier = parse_address(&a.verifier)?;
            let key = signer_key(&a.signer, a.root_key.as_deref(), "keys/verifreg-root.key")?;
            let method = VerifRegMethod::AddVerifier {
                verifier,
                allowance: a.allowance,
            };
            send(&a.signer, &key, method, |r| {
                format!(
                    "{} is a verifier with {} more bytes to grant (message {}, epoch {})",
                    r.address, r.bytes, r.message, r.epoch
                )
            })
        }
        VerifRegCommand::GrantDatacap(a) => {
            let client = parse_address(&a.client)?;
            let key = signer_key(&a.signer, a.verifier_key.as_deref(), "keys/verifier.key")?;
            let method = VerifRegMethod::AddVerifiedClient {
                client,
                allowance: a.bytes,
            };
            send(&a.signer, &key, method, |r| {
                format!(
                    "granted {} bytes of DataCap to {} (message {}, epoch {})",
                    r.bytes, r.address, r.message, r.epoch
                )
            })
        }
        VerifRegCommand::Datacap(a) => datacap(&a),
    }
}

/// The signer's key: the file given, else the devnet's key file, else the wallet's.
fn signer_key(s: &SignerArgs, file: Option<&Path>, devnet_file: &str) -> anyhow::Result<SecretKey> {
    let from_file = |path: &Path| {
        lode_provider::run::read_key_file(path)
            .with_context(|| format!("reading the signer's key {}", path.display()))
    };
    if let Some(path) = file {
        return from_file(path);
    }
    if s.from.is_none()
        && let Some(dir) = &s.api.devnet
    {
        return from_file(&dir.join(devnet_file));
    }
    let dir = wallet::resolve_dir(s.wallet.as_deref(), |k| std::env::var(k).ok())?;
    let ks = Keystore::open(dir)?;
    let from = match &s.from {
        Some(a) => parse_address(a)?,
        None => ks.default_address()?,
    };
    Ok(ks.get(&from)?)
}

/// What `add-verifier` and `grant-datacap` print with `--json`.
#[derive(Debug, Serialize)]
struct Granted {
    /// The verifier appointed, or the client granted DataCap.
    address: String,
    /// Its allowance or DataCap added, in bytes (decimal string).
    #[serde(with = "lode_node::rpc::types::serde_hex::string")]
    bytes: u128,
    /// The message id.
    message: String,
    /// The epoch that executed it.
    epoch: u64,
}

fn send(
    s: &SignerArgs,
    key: &SecretKey,
    method: VerifRegMethod,
    text: impl Fn(&Granted) -> String,
) -> anyhow::Result<()> {
    let (address, bytes) = match &method {
        VerifRegMethod::AddVerifier {
            verifier,
            allowance,
        } => (verifier.to_string(), *allowance),
        VerifRegMethod::AddVerifiedClient { client, allowance } => (client.to_string(), *allowance),
        _ => anyhow::bail!("not a grant"),
    };
    let client = s.api.client()?;
    let done = block_on(wallet::call_and_wait(
        &client,
        key,
        VERIFREG.into(),
        TokenAmount::ZERO,
        Method::VerifReg(method),
        Duration::from_secs(s.wait_timeout),
    ))??;
    let report = Granted {
        address,
        bytes,
        message: hex::encode(done.id),
        epoch: done.found.epoch,
    };
    if s.json {
        return print_json(&report);
    }
    outln!("{}", text(&report));
    Ok(())
}

/// What `lode verifreg datacap --json` prints.
#[derive(Debug, Serialize)]
struct DatacapReport {
    address: String,
    /// DataCap in bytes (decimal string), `null` for none.
    datacap: Option<String>,
    /// The verifier's allowance in bytes (decimal string), `null` when not a verifier.
    verifier_allowance: Option<String>,
}

fn datacap(a: &DatacapArgs) -> anyhow::Result<()> {
    let address: Address = parse_address(&a.address)?;
    let client = a.api.client()?;
    let (cap, allowance) = block_on(async {
        (
            client.state_verified_client_datacap(&address).await,
            client.state_verifier_allowance(&address).await,
        )
    })?;
    let report = DatacapReport {
        address: address.to_string(),
        datacap: cap.map_err(client_error)?.map(|b| b.to_string()),
        verifier_allowance: allowance.map_err(client_error)?.map(|b| b.to_string()),
    };
    if a.json {
        return print_json(&report);
    }
    outln!(
        "{}: DataCap {}",
        report.address,
        report
            .datacap
            .as_deref()
            .map_or("none".to_string(), |b| format!("{b} bytes"))
    );
    if let Some(v) = &report.verifier_allowance {
        outln!("  verifier, {v} bytes left to grant");
    }
    Ok(())
}
