//! What the command groups share: argument parsers, default directories, Groth16 parameters for
//! proving, how a verification outcome is reported, how client commands reach a node or a
//! storage provider, and how the daemons run until a signal. The command modules import from here
//! and never from each other.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bls12_381::Bls12;
use clap::{Args, ValueEnum};
use groth16::Parameters;
use lode_node::rpc::client::{
    ApiInfo, ApiOptions, ApiTarget, ClientError, ENV_API, ENV_TOKEN, NodeClient,
};
use lode_proofs::circuit::porep::{self as porep_circuit, PorepCircuit};
use lode_proofs::circuit::post::{PostCircuit, PostKind};
use lode_proofs::circuit::{CircuitInfo, circuit_info};
use lode_proofs::files::PorepPublicFile;
use lode_proofs::node::Node;
use lode_proofs::params::{Origin, ParamStore, ParamsId};
use lode_proofs::porep::PorepPublic;
use lode_proofs::sector::SectorSize;
use lode_provider::rpc::client::ProviderClient;
use lode_provider::run::ProviderEndpoints;

pub(crate) fn parse_size(s: &str) -> Result<SectorSize, String> {
    s.parse()
        .map_err(|e: lode_proofs::sector::UnsupportedSectorSize| e.to_string())
}

/// A byte count: a number with an optional binary unit (`2048`, `512MiB`, `1 TiB`, `4KiB`; `B`,
/// `KiB`, `MiB`, `GiB`, `TiB`, `PiB`, case-insensitive).
pub(crate) fn parse_byte_count(s: &str) -> Result<u128, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u128 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a byte count: use e.g. 2048, 512MiB or 1TiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "kib" => 10,
        "mib" => 20,
        "gib" => 30,
        "tib" => 40,
        "pib" => 50,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?}: use B, KiB, MiB, GiB, TiB or PiB"
            ));
        }
    };
    n.checked_mul(1u128 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

pub(crate) fn parse_node(s: &str) -> Result<Node, String> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    Node::from_hex(s)
        .map(|n| lode_proofs::node::trunc254(n.0))
        .ok_or_else(|| "expected 64 hex digits".to_string())
}

/// `$XDG_CACHE_HOME/lode`, `$HOME/.cache/lode`, or `.lode-cache` in the working directory.
pub(crate) fn default_cache_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("lode");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".cache").join("lode");
    }
    PathBuf::from(".lode-cache")
}

/// The user's data directory for lode: `$XDG_DATA_HOME/lode`, else `~/.local/share/lode`.
pub(crate) fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("lode");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".local").join("share").join("lode");
    }
    PathBuf::from(".lode")
}

/// Which circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum CircuitArg {
    /// The PoRep circuit (one proof per partition).
    Porep,
    /// Winning PoSt.
    WinningPost,
    /// Window PoSt (one proof per partition).
    WindowPost,
}

impl CircuitArg {
    pub(crate) const ALL: [CircuitArg; 3] = [
        CircuitArg::Porep,
        CircuitArg::WinningPost,
        CircuitArg::WindowPost,
    ];

    pub(crate) fn of_post(kind: PostKind) -> Self {
        match kind {
            PostKind::Winning => CircuitArg::WinningPost,
            PostKind::Window => CircuitArg::WindowPost,
        }
    }

    pub(crate) fn id(self, size: SectorSize) -> ParamsId {
        match self {
            CircuitArg::Porep => porep_circuit::params_id(size),
            CircuitArg::WinningPost => PostKind::Winning.params_id(size),
            CircuitArg::WindowPost => PostKind::Window.params_id(size),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            CircuitArg::Porep => "porep",
            CircuitArg::WinningPost => "winning-post",
            CircuitArg::WindowPost => "window-post",
        }
    }

    pub(crate) fn info(self, size: SectorSize) -> anyhow::Result<CircuitInfo> {
        Ok(match self {
            CircuitArg::Porep => circuit_info(PorepCircuit {
                size,
                witness: None,
            })?,
            CircuitArg::WinningPost => circuit_info(PostCircuit {
                kind: PostKind::Winning,
                size,
                witness: None,
            })?,
            CircuitArg::WindowPost => circuit_info(PostCircuit {
                kind: PostKind::Window,
                size,
                witness: None,
            })?,
        })
    }
}

/// Where parameters live.
#[derive(Debug, Args, Clone)]
pub(crate) struct ParamsDir {
    /// Directory of Groth16 parameter files (default: the cache directory's `params/`).
    #[arg(long, env = "LODE_PARAMS_DIR")]
    params_dir: Option<PathBuf>,
}

impl ParamsDir {
    pub(crate) fn store(&self) -> ParamStore {
        ParamStore::new(
            self.params_dir
                .clone()
                .unwrap_or_else(|| default_cache_dir().join("params")),
        )
    }
}

/// A cryptographic RNG seeded from the operating system, for the zero-knowledge blinding of proofs.
pub(crate) fn fresh_rng() -> anyhow::Result<rand_chacha::ChaCha20Rng> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| {
        anyhow::anyhow!("the operating system gave no randomness for the proof: {e}")
    })?;
    Ok(<rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::from_seed(seed))
}

pub(crate) fn warn_insecure(origin: Origin, id: &ParamsId) {
    if origin == Origin::InsecureTest {
        eprintln!(
            "warning: INSECURE test parameters ({}): anyone can forge proofs with them; for tests and devnets only",
            id.canonical()
        );
    }
}

/// Parameters for proving with a circuit: loaded, or generated (insecure, deterministic) when
/// missing — announced on stderr every time.
pub(crate) fn params_for(
    store: &ParamStore,
    circuit: CircuitArg,
    size: SectorSize,
) -> anyhow::Result<Parameters<Bls12>> {
    let id = circuit.id(size);
    let (params, origin, fresh) = match circuit {
        CircuitArg::Porep => store.get_or_generate_insecure(&id, || PorepCircuit {
            size,
            witness: None,
        }),
        CircuitArg::WinningPost => store.get_or_generate_insecure(&id, || PostCircuit {
            kind: PostKind::Winning,
            size,
            witness: None,
        }),
        CircuitArg::WindowPost => store.get_or_generate_insecure(&id, || PostCircuit {
            kind: PostKind::Window,
            size,
            witness: None,
        }),
    }
    .with_context(|| {
        format!(
            "cannot load or generate the {} parameters for {size}",
            circuit.name()
        )
    })?;
    if fresh {
        tracing::info!(path = %store.params_path(&id).display(), "generated parameters");
    }
    warn_insecure(origin, &id);
    Ok(params)
}

/// Prints a verification outcome: exit 0 and "valid", or exit 1 and "invalid: <reason>".
pub(crate) fn report_validity(
    valid: Result<(), String>,
    json: bool,
    extra: serde_json::Value,
) -> anyhow::Result<ExitCode> {
    if json {
        let mut v = serde_json::json!({ "valid": valid.is_ok(), "reason": valid.as_ref().err() });
        if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        match &valid {
            Ok(()) => outln!("valid"),
            Err(r) => outln!("invalid: {r}"),
        }
    }
    Ok(if valid.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Reads a PoRep public-inputs file (commit1.json), strictly.
pub(crate) fn read_public(path: &std::path::Path) -> anyhow::Result<PorepPublic> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(super::cannot_check)?;
    let file: PorepPublicFile = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a PoRep public-inputs file", path.display()))
        .map_err(super::cannot_check)?;
    Ok(file.into())
}

/// Which node a client command talks to (see `lode_node::rpc::client::ApiInfo::resolve` for the
/// order: flags, then `LODE_API`/`LODE_TOKEN`, then the devnet's `devnet.json`, then
/// `http://127.0.0.1:1234`).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ApiArgs {
    /// The node's RPC address (`host:port` or `http://host:port`); else `$LODE_API`.
    #[arg(long, value_name = "URL")]
    pub(crate) api: Option<String>,
    /// The node's API token, needed by protected calls; else `$LODE_TOKEN` (the node keeps it in
    /// `<node dir>/token`).
    #[arg(long, value_name = "TOKEN")]
    pub(crate) token: Option<String>,
    /// A devnet directory: its `devnet.json` names the node and its token file.
    #[arg(long, value_name = "DIR")]
    pub(crate) devnet: Option<PathBuf>,
}

impl ApiArgs {
    /// The client for the node these flags (and the environment) name.
    pub(crate) fn client(&self) -> anyhow::Result<NodeClient> {
        let opts = ApiOptions {
            api: self.api.clone(),
            token: self.token.clone(),
            devnet: self.devnet.clone(),
            target: ApiTarget::Node,
        };
        let api = ApiInfo::from_env(&opts).map_err(client_error)?;
        NodeClient::new(api).map_err(client_error)
    }
}

/// Which storage provider a provider command talks to: `--api` (with `--token` or
/// `LODE_TOKEN`), else `--dir` (the provider directory's `endpoints.json`), else `LODE_API`,
/// else `--devnet`'s first miner. There is no default address: a provider's API port is its own.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ProviderApiArgs {
    /// The provider's API address (`host:port` or `http://host:port`: `rpc` in its
    /// endpoints.json); else `--dir`, `$LODE_API` or `--devnet`.
    #[arg(long, value_name = "URL")]
    pub(crate) api: Option<String>,
    /// The provider's API token, needed by declarations; else `$LODE_TOKEN` (the provider keeps
    /// it in `<provider dir>/token`).
    #[arg(long, value_name = "TOKEN")]
    pub(crate) token: Option<String>,
    /// A provider's directory: its `endpoints.json` names the API and the token file.
    #[arg(long, value_name = "DIR", conflicts_with = "devnet")]
    pub(crate) dir: Option<PathBuf>,
    /// A devnet directory: the first miner of its `devnet.json` (its API and token file).
    #[arg(long, value_name = "DIR")]
    pub(crate) devnet: Option<PathBuf>,
}

impl ProviderApiArgs {
    /// The client for the provider these flags (and the environment) name.
    pub(crate) fn client(&self) -> anyhow::Result<ProviderClient> {
        self.client_with_timeout(lode_node::rpc::client::DEFAULT_TIMEOUT)
    }

    /// [`Self::client`], its calls waiting at most `timeout` (a call that waits for the chain).
    pub(crate) fn client_with_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> anyhow::Result<ProviderClient> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let opts = ApiOptions {
            api: self.api.clone(),
            token: self.token.clone(),
            devnet: self.devnet.clone(),
            target: ApiTarget::Miner,
        };
        let api = match &self.dir {
            Some(dir) if self.api.is_none() => {
                let endpoints = ProviderEndpoints::load(dir)?;
                let mut api = endpoints.api_info(dir)?;
                if let Some(t) = self.token.clone().or_else(|| env(ENV_TOKEN)) {
                    api.token = Some(t.trim().to_string());
                }
                api
            }
            _ if self.api.is_some() || self.devnet.is_some() || env(ENV_API).is_some() => {
                ApiInfo::from_env(&opts).map_err(provider_client_error)?
            }
            _ => anyhow::bail!(
                "which provider? Pass --api URL (the `rpc` of <provider dir>/endpoints.json), --dir PROVIDER_DIR, --devnet DIR, or set LODE_API"
            ),
        };
        ProviderClient::with_timeout(api, timeout).map_err(provider_client_error)
    }
}

/// A provider client error as the user should read it.
pub(crate) fn provider_client_error(e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Transport { url, why } => anyhow::anyhow!(
            "cannot reach the provider at {url}: is `lode provider run` (or `lode devnet`) running? Pass --api, --dir or --devnet ({why})"
        ),
        ClientError::Unauthorized => anyhow::anyhow!(
            "the provider refused the call without its token: pass --token or LODE_TOKEN (the token is in <provider dir>/token)"
        ),
        other => anyhow::Error::new(other),
    }
}

/// A multi-threaded runtime for a daemon.
pub(crate) fn daemon_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Waits for Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
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

/// Runs `f` to completion on a runtime made for this command (one thread: a client waits on the
/// node, it computes nothing).
pub(crate) fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(rt.block_on(f))
}

/// A client error as the user should read it: what to do about the usual ones.
pub(crate) fn client_error(e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Transport { url, why } => anyhow::anyhow!(
            "cannot reach the node at {url}: is `lode node run` (or `lode devnet`) running? Set --api or LODE_API ({why})"
        ),
        ClientError::Unauthorized => anyhow::anyhow!(
            "the node refused the call without its token: pass --token or LODE_TOKEN (the token is in <node dir>/token)"
        ),
        other => anyhow::Error::new(other),
    }
}

/// Prints `value` as pretty JSON on stdout.
pub(crate) fn print_json<T: serde::Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Binary units for humans: the largest unit that divides `bytes` exactly (`2048` is `2 KiB`).
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut unit = 0;
    let mut value = bytes;
    while value >= 1024 && value.is_multiple_of(1024) && unit + 1 < UNITS.len() {
        value /= 1024;
        unit += 1;
    }
    format!("{value} {}", UNITS[unit])
}

/// Left-aligned columns two spaces apart.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", text.join("  ").trim_end())
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_take_binary_units() {
        assert_eq!(parse_byte_count("2048"), Ok(2048));
        assert_eq!(parse_byte_count("512MiB"), Ok(512 << 20));
        assert_eq!(parse_byte_count(" 1 TiB "), Ok(1 << 40));
        assert_eq!(parse_byte_count("4kib"), Ok(4096));
        assert_eq!(parse_byte_count("7B"), Ok(7));
        for bad in ["", "GiB", "1.5GiB", "1GB", "-1", "1 KiBs"] {
            assert!(parse_byte_count(bad).is_err(), "{bad:?}");
        }
        assert!(parse_byte_count(&format!("{}PiB", u128::MAX)).is_err());
    }
}

/// The client directory flag every `lode client` command takes.
#[derive(Debug, Args)]
pub(crate) struct ClientDirArgs {
    /// The client's directory (imports and their CARs) [default: ~/.local/share/lode/client].
    #[arg(long, env = lode_market::import::ENV_CLIENT_DIR, value_name = "DIR")]
    client_dir: Option<PathBuf>,
}

impl ClientDirArgs {
    /// The directory given, or the default one.
    pub(crate) fn dir(&self) -> PathBuf {
        self.client_dir
            .clone()
            .unwrap_or_else(|| default_data_dir().join("client"))
    }

    /// Opens (creating it if needed) the import store.
    pub(crate) fn store(&self) -> anyhow::Result<lode_market::import::ImportStore> {
        let dir = self.dir();
        lode_market::import::ImportStore::open(&dir)
            .with_context(|| format!("cannot open the client directory {}", dir.display()))
    }
}

/// Which key signs for the client: `--key FILE`, else `<devnet>/keys/client.key` with
/// `--devnet`, else the wallet's key for `--from` (or the wallet's default address).
#[derive(Debug, Args)]
pub(crate) struct ClientKeyArgs {
    /// The client's secret key file (hex); else `<devnet>/keys/client.key` with `--devnet`,
    /// else the wallet's key for `--from`.
    #[arg(long, value_name = "FILE")]
    pub(crate) key: Option<PathBuf>,
    /// The client's account in the wallet (`l0…`/`l3…`); else the wallet's default address.
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) from: Option<String>,
    /// The wallet directory; else `$LODE_WALLET`, else `<data dir>/lode/wallet`.
    #[arg(long, value_name = "DIR")]
    pub(crate) wallet: Option<PathBuf>,
}

impl ClientKeyArgs {
    /// The client's secret key.
    pub(crate) fn secret(&self, api: &ApiArgs) -> anyhow::Result<lode_chain::crypto::SecretKey> {
        let from_file = |path: &std::path::Path| {
            lode_provider::run::read_key_file(path)
                .with_context(|| format!("reading the client key {}", path.display()))
        };
        if let Some(path) = &self.key {
            return from_file(path);
        }
        if self.from.is_none()
            && let Some(dir) = &api.devnet
        {
            return from_file(&dir.join("keys/client.key"));
        }
        let dir =
            lode_node::wallet::resolve_dir(self.wallet.as_deref(), |k| std::env::var(k).ok())?;
        let ks = lode_node::wallet::Keystore::open(dir)?;
        let from = match &self.from {
            Some(a) => lode_node::rpc::types::parse_address(a)?,
            None => ks.default_address()?,
        };
        ks.get(&from).with_context(|| {
            format!("the wallet has no key for {from}: pass --key FILE, --devnet DIR or --from")
        })
    }

    /// The client's address, without needing its key when `--from` names it.
    pub(crate) fn address(&self, api: &ApiArgs) -> anyhow::Result<lode_chain::types::Address> {
        if let Some(a) = &self.from {
            return Ok(lode_node::rpc::types::parse_address(a)?);
        }
        Ok(lode_chain::types::Address::Bls(
            self.secret(api)?.public_key(),
        ))
    }
}
