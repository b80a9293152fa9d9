//! `lode client`: the client side of the deal market: data preparation (`import`,
//! `list-imports`), asks (`query-ask`), deals (`deal`, `deals`), escrow (`balance`) and
//! retrieval (`retrieve`). The logic is `lode_market::client`'s; this module parses, calls and
//! prints.
//!
//! Each subcommand is one variant of [`ClientCommand`] with its own `Args` struct and handler;
//! what several of them share is in [`ClientDirArgs`] (the client directory) and
//! [`ClientKeyArgs`] (the key that signs).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use lode_chain::actors::MARKET;
use lode_chain::actors::market::MarketMethod;
use lode_chain::message::Method;
use lode_chain::types::{ActorId, Address, TokenAmount};
use lode_market::client::deal::{DealTerms, PieceSpec, TransferChoice, amount_arg, query_ask};
use lode_market::client::{
    ClientChain, ClientDeal, ClientDealState, ClientDealStore, ClientTransfer, DealClient,
    ProviderAddrs, RetrievalTarget, RpcClientChain, refresh_deals, retrieve,
};
use lode_market::deal::SignedAsk;
use lode_market::import::{ImportOptions, ImportPhase, ImportProgress, ImportRecord};
use lode_market::net::{MarketHost, PushOptions};
use lode_market::unixfs::DagParams;
use lode_node::rpc::types::{EscrowView, parse_actor_id};
use lode_node::wallet;
use serde::Serialize;

use super::common::{
    ApiArgs, ClientDirArgs, ClientKeyArgs, block_on, client_error, human_bytes, print_json, table,
};
use super::progress::{bytes_bar, spinner};

/// `lode client` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ClientCommand {
    /// Prepare a file, a directory or a CAR file for a storage deal.
    ///
    /// A file or directory is packed into a CAR (UnixFS: 1 MiB raw chunks, balanced DAG of up to
    /// 1024 links per node, directories with sorted links; the same root CID as `ipfs-car`). A
    /// CAR file is taken as it is, after checking every block and that its one root is inside.
    /// The CAR is kept in the client directory; the import prints its payload root CID, piece CID
    /// (CommP of the CAR), padded piece size and payload size (the CAR's bytes): what a deal names.
    /// Symbolic links and special files inside a directory are refused.
    #[command(after_help = "Examples:
  lode client import movie.mp4
  lode client import photos/ --json
  lode client import dataset.car
  lode client import backup.car --as-file --client-dir ./client")]
    Import(ImportArgs),
    /// List the imports in the client directory: id, payload root, piece CID, sizes, source.
    #[command(after_help = "Examples:
  lode client list-imports
  lode client list-imports --json")]
    ListImports(ListImportsArgs),
    /// Ask a storage provider for its prices and limits (its signed storage ask, checked against
    /// its miner's worker key on chain).
    ///
    /// The provider is found through its miner's chain record: the market peer id and libp2p
    /// addresses it announced. Prices are per GiB of padded piece per epoch.
    #[command(after_help = "Examples:
  lode client query-ask l01000 --devnet ~/.local/share/lode/devnet
  lode client query-ask l01000 --api 127.0.0.1:1234 --json")]
    QueryAsk(QueryAskArgs),
    /// Make a storage deal for an import with a provider.
    ///
    /// Builds the deal proposal (the piece, the provider, start and end epochs, the price from
    /// the provider's ask, the provider collateral the chain requires plus a fifth), signs it
    /// with the client key, checks that your market escrow covers price × duration (else names
    /// the `lode client balance add` to run), and sends it. By default the CAR is served on an
    /// ephemeral HTTP port (`--serve-addr`) for the provider to pull, and the command waits,
    /// serving it, until the deal is published on chain (`--wait`). With `--push` the CAR is
    /// pushed over libp2p instead; with `--url` the provider pulls from your URL, and
    /// `--no-wait` returns once the provider accepted.
    ///
    /// The deal starts one proving period after the chain's head unless `--start-epoch` says
    /// otherwise (240 epochs, 4 minutes, on the devnet): the provider must fetch the data,
    /// publish the deal and seal and prove its sector by then.
    #[command(after_help = "Examples:
  lode client deal --provider l01000 --piece 1 --duration 43200 --devnet ~/.local/share/lode/devnet
  lode client deal --provider l01000 --piece baga6ea4seaq… --duration 43200 --verified --devnet DIR
  lode client deal --provider l01000 --piece 2 --duration 50000 --push --key client.key
  lode client deal --provider l01000 --piece 3 --duration 43200 --url https://data.example.org/x.car --no-wait --from l3a1b2…
  lode client deal --provider l01000 --piece 1 --duration 43200 --serve-addr 0.0.0.0:0 --public-host 203.0.113.7 --json")]
    Deal(DealArgs),
    /// List your deals with their state: proposed, transferring, published (deal id), sealing
    /// (published, not yet active), active (activation epoch, sector), expired, slashed, or
    /// failed with the reason. Local records are brought up to date from the chain.
    #[command(after_help = "Examples:
  lode client deals --devnet ~/.local/share/lode/devnet
  lode client deals --json")]
    Deals(DealsArgs),
    /// Show your market escrow (balance, locked by deals, available), or add to it or
    /// withdraw from it. Deals lock price × duration and the client collateral from it.
    #[command(after_help = "Examples:
  lode client balance --devnet ~/.local/share/lode/devnet
  lode client balance add 5 --devnet ~/.local/share/lode/devnet
  lode client balance withdraw 1.5 --from l3a1b2… --json")]
    Balance(BalanceArgs),
    /// Retrieve a piece from a provider over HTTP and write its payload: the CAR of an import
    /// unpacked to the same files (or the CAR itself with `--car`).
    ///
    /// `GET /piece/<piece CID>` from the provider's retrieval server (the `/http` address its
    /// miner announced, or `--url`); the piece commitment of what arrives is checked against the
    /// piece CID, and every block of the CAR against its CID. Nothing is written at OUT unless
    /// all of it checks out. A payload root CID is resolved to its piece through your deal
    /// records and imports; the provider, when not given, is one holding your deal for it.
    #[command(after_help = "Examples:
  lode client retrieve baga6ea4seaq… -o photos --devnet ~/.local/share/lode/devnet
  lode client retrieve bafybeig… -o photos --provider l01000
  lode client retrieve baga6ea4seaq… -o data.car --car --url http://203.0.113.7:8080 --json")]
    Retrieve(RetrieveArgs),
}

/// Arguments of `lode client import`.
#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The file, directory or CAR file to import.
    path: PathBuf,
    /// Pack a CAR file as an ordinary file instead of taking it as it is.
    #[arg(long)]
    as_file: bool,
    #[command(flatten)]
    dir: ClientDirArgs,
    /// Print the import record as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lode client list-imports`.
#[derive(Debug, Args)]
pub(crate) struct ListImportsArgs {
    #[command(flatten)]
    dir: ClientDirArgs,
    /// Print the import records as a JSON array.
    #[arg(long)]
    json: bool,
}

/// Runs a `lode client` command.
pub(crate) fn run(cmd: ClientCommand) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Import(args) => import(args),
        ClientCommand::ListImports(args) => list_imports(args),
        ClientCommand::QueryAsk(args) => block_on(query_ask_cmd(args))?,
        ClientCommand::Deal(args) => block_on(deal(args))?,
        ClientCommand::Deals(args) => block_on(deals(args))?,
        ClientCommand::Balance(args) => block_on(balance(args))?,
        ClientCommand::Retrieve(args) => block_on(retrieve_cmd(args))?,
    }
}

/// One progress bar per import phase, replaced when the phase changes.
#[derive(Default)]
struct PhaseBars {
    current: Option<(ImportPhase, ProgressBar)>,
}

impl PhaseBars {
    fn update(&mut self, p: ImportProgress) {
        let same = matches!(&self.current, Some((phase, _)) if *phase == p.phase);
        if !same {
            self.finish();
            let message = match p.phase {
                ImportPhase::Packing => "packing",
                ImportPhase::Copying => "checking and copying",
                ImportPhase::Hashing => "piece commitment",
            };
            self.current = Some((p.phase, bytes_bar(p.total, message)));
        }
        if let Some((_, bar)) = &self.current {
            bar.set_position(p.done);
        }
    }

    fn finish(&mut self) {
        if let Some((_, bar)) = self.current.take() {
            bar.finish_and_clear();
        }
    }
}

fn import(args: ImportArgs) -> anyhow::Result<()> {
    let store = args.dir.store()?;
    let options = ImportOptions {
        params: DagParams::default(),
        as_file: args.as_file,
    };
    let mut bars = PhaseBars::default();
    let record = store
        .import(&args.path, &options, &mut |p| bars.update(p))
        .with_context(|| format!("cannot import {}", args.path.display()));
    bars.finish();
    let record = record?;
    if args.json {
        return print_json(&record);
    }
    outln!("import        {} ({})", record.id, record.kind);
    outln!("payload root  {}", record.payload_root);
    outln!("piece CID     {}", record.piece_cid);
    outln!(
        "padded size   {} ({})",
        record.padded_piece_size,
        human_bytes(record.padded_piece_size)
    );
    outln!("payload size  {} (CAR bytes)", record.payload_size);
    outln!("CAR           {}", store.car_path(&record).display());
    Ok(())
}

fn list_imports(args: ListImportsArgs) -> anyhow::Result<()> {
    let store = args.dir.store()?;
    let records: Vec<ImportRecord> = store.list()?;
    if args.json {
        return print_json(&records);
    }
    if records.is_empty() {
        outln!(
            "no imports in {}; `lode client import FILE` adds one",
            store.dir().display()
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.kind.to_string(),
                r.payload_root.to_string(),
                r.piece_cid.to_string(),
                human_bytes(r.padded_piece_size),
                r.payload_size.to_string(),
                r.created_at.clone(),
                r.source.display().to_string(),
            ]
        })
        .collect();
    out!(
        "{}",
        table(
            &[
                "ID",
                "KIND",
                "PAYLOAD ROOT",
                "PIECE CID",
                "PADDED",
                "PAYLOAD BYTES",
                "CREATED",
                "SOURCE"
            ],
            &rows
        )
    );
    Ok(())
}

/// Arguments of `lode client query-ask`.
#[derive(Debug, Args)]
pub(crate) struct QueryAskArgs {
    /// The provider's miner actor (`l01000`).
    provider: String,
    #[command(flatten)]
    api: ApiArgs,
    /// Print the ask as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lode client deal`.
#[derive(Debug, Args)]
pub(crate) struct DealArgs {
    /// The provider's miner actor (`l01000`).
    #[arg(long, value_name = "ACTOR")]
    provider: String,
    /// The data: an import id, its piece CID or its payload root CID (`lode client list-imports`).
    #[arg(long, value_name = "CID|IMPORT")]
    piece: String,
    /// How many epochs the deal lasts (the chain's bounds: `lode chain` policy; 43200 is the
    /// devnet's minimum).
    #[arg(long, value_name = "EPOCHS")]
    duration: u64,
    /// Price per GiB per epoch (`0.000001`, `5000atto`); default: the provider's ask (its
    /// verified price with `--verified`).
    #[arg(long, value_name = "AMOUNT", value_parser = parse_amount)]
    price: Option<TokenAmount>,
    /// A verified deal: paid with your DataCap, worth 10× in the provider's power.
    #[arg(long)]
    verified: bool,
    /// The epoch the deal starts at (it must be sealed and proven by then); default: the head
    /// plus one proving period (240 epochs on the devnet).
    #[arg(long, value_name = "EPOCH")]
    start_epoch: Option<u64>,
    /// The deal's label (at most 256 bytes); default: the payload root CID.
    #[arg(long, value_name = "TEXT")]
    label: Option<String>,
    /// The provider collateral; default: the chain's floor for the piece plus a fifth.
    #[arg(long, value_name = "AMOUNT", value_parser = parse_amount)]
    provider_collateral: Option<TokenAmount>,
    /// The provider pulls the CAR from this URL (you serve it) instead of from this command.
    #[arg(long, value_name = "URL", conflicts_with = "push")]
    url: Option<String>,
    /// Push the CAR to the provider over libp2p instead of serving it over HTTP.
    #[arg(long)]
    push: bool,
    /// Where this command serves the CAR for the provider (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    serve_addr: SocketAddr,
    /// The host name or address the provider reaches `--serve-addr` at (default: its IP).
    #[arg(long, value_name = "HOST")]
    public_host: Option<String>,
    /// The padded piece size, for `--url` with a piece CID that is not an import.
    #[arg(long, value_name = "BYTES", requires_all = ["url", "payload_size"])]
    piece_size: Option<u64>,
    /// The payload's length in bytes, for `--url` with a piece CID that is not an import.
    #[arg(long, value_name = "BYTES", requires_all = ["url", "piece_size"])]
    payload_size: Option<u64>,
    /// Seconds to wait for the deal's publication on chain (serving the CAR meanwhile).
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    wait: u64,
    /// Return once the provider accepted (only with `--url`: otherwise this command serves or
    /// pushes the data).
    #[arg(long, requires = "url")]
    no_wait: bool,
    #[command(flatten)]
    key: ClientKeyArgs,
    #[command(flatten)]
    api: ApiArgs,
    #[command(flatten)]
    dir: ClientDirArgs,
    /// Print the deal as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lode client deals`.
#[derive(Debug, Args)]
pub(crate) struct DealsArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(flatten)]
    dir: ClientDirArgs,
    /// Print the deals as a JSON array.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lode client balance`.
#[derive(Debug, Args)]
pub(crate) struct BalanceArgs {
    #[command(subcommand)]
    action: Option<BalanceAction>,
    #[command(flatten)]
    key: ClientKeyArgs,
    #[command(flatten)]
    api: ApiArgs,
    /// Print the escrow as JSON.
    #[arg(long)]
    json: bool,
}

/// `lode client balance add|withdraw`.
#[derive(Debug, Subcommand)]
pub(crate) enum BalanceAction {
    /// Move tokens from your account into your market escrow.
    #[command(after_help = "Examples:
  lode client balance add 5 --devnet ~/.local/share/lode/devnet
  lode client balance add 250000atto --key client.key --json")]
    Add(BalanceChangeArgs),
    /// Move available (unlocked) escrow back to your account.
    #[command(after_help = "Examples:
  lode client balance withdraw 1.5 --devnet ~/.local/share/lode/devnet
  lode client balance withdraw 2 --from l3a1b2… --json")]
    Withdraw(BalanceChangeArgs),
}

/// Arguments of `lode client balance add|withdraw`.
#[derive(Debug, Args)]
pub(crate) struct BalanceChangeArgs {
    /// The amount (`5`, `1.5 LODE`, `2500atto`).
    #[arg(value_parser = parse_amount)]
    amount: TokenAmount,
    /// Seconds to wait for the message to be executed.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    wait_timeout: u64,
    #[command(flatten)]
    key: ClientKeyArgs,
    #[command(flatten)]
    api: ApiArgs,
    /// Print the message and the escrow after it as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lode client retrieve`.
#[derive(Debug, Args)]
pub(crate) struct RetrieveArgs {
    /// The piece CID, or the payload root CID of one of your deals or imports.
    cid: String,
    /// Where to write (must not exist): the unpacked files, or the CAR with `--car`.
    #[arg(short, long, value_name = "OUT")]
    out: PathBuf,
    /// The provider to fetch from; default: one holding your deal for this data.
    #[arg(long, value_name = "ACTOR")]
    provider: Option<String>,
    /// The retrieval server's base URL (`http://host:port`); default: the `/http` address the
    /// provider's miner announced on chain.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Write the payload CAR as it is instead of unpacking it.
    #[arg(long)]
    car: bool,
    #[command(flatten)]
    api: ApiArgs,
    #[command(flatten)]
    dir: ClientDirArgs,
    /// Print what was retrieved as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_amount(s: &str) -> Result<TokenAmount, String> {
    s.parse()
        .map_err(|e: lode_chain::types::ParseAmountError| e.to_string())
}

fn parse_actor(s: &str) -> anyhow::Result<ActorId> {
    parse_actor_id(s.trim()).with_context(|| format!("{s:?} is not a miner actor (`l01000`)"))
}

/// The chain over the node the flags name.
fn chain(api: &ApiArgs) -> anyhow::Result<RpcClientChain> {
    Ok(RpcClientChain::new(api.client()?))
}

/// A market error as the user should read it (the node's transport errors say what to do).
fn market_error(e: lode_market::MarketError) -> anyhow::Error {
    match e {
        lode_market::MarketError::Node(c) => client_error(c),
        other => anyhow::Error::new(other),
    }
}

/// A libp2p host of its own for this command (a fresh identity each run).
async fn client_host() -> anyhow::Result<MarketHost> {
    lode_market::client::client_host()
        .await
        .context("cannot start the client's libp2p host")
}

/// What `lode client query-ask --json` prints.
#[derive(Debug, Serialize)]
struct AskReport {
    provider: String,
    peer_id: String,
    /// Atto per GiB of padded piece per epoch.
    price_per_gib_epoch: TokenAmount,
    /// Atto per GiB per epoch, verified deals.
    verified_price_per_gib_epoch: TokenAmount,
    min_piece_size: u64,
    max_piece_size: u64,
    max_duration: u64,
    timestamp: u64,
    seq_no: u64,
    retrieval_url: Option<String>,
}

impl AskReport {
    fn new(provider: &ProviderAddrs, signed: &SignedAsk) -> AskReport {
        let a = &signed.ask;
        AskReport {
            provider: provider.miner.to_string(),
            peer_id: provider.peer_id.to_string(),
            price_per_gib_epoch: a.price_per_gib_epoch,
            verified_price_per_gib_epoch: a.verified_price_per_gib_epoch,
            min_piece_size: a.min_piece_size,
            max_piece_size: a.max_piece_size,
            max_duration: a.max_duration,
            timestamp: a.timestamp,
            seq_no: a.seq_no,
            retrieval_url: provider.retrieval_url.clone(),
        }
    }
}

async fn query_ask_cmd(args: QueryAskArgs) -> anyhow::Result<()> {
    let miner = parse_actor(&args.provider)?;
    let chain = chain(&args.api)?;
    let info = chain.miner_info(miner).await.map_err(market_error)?;
    let provider = ProviderAddrs::from_miner_info(&info)?;
    let host = client_host().await?;
    let bar = spinner(format!("asking provider {miner}"));
    let signed = query_ask(&chain, &host, &provider).await;
    bar.finish_and_clear();
    let signed = signed.map_err(market_error)?;
    let report = AskReport::new(&provider, &signed);
    if args.json {
        return print_json(&report);
    }
    outln!(
        "provider          {} (peer {})",
        report.provider,
        report.peer_id
    );
    outln!(
        "price             {} per GiB per epoch",
        report.price_per_gib_epoch
    );
    outln!(
        "verified price    {} per GiB per epoch",
        report.verified_price_per_gib_epoch
    );
    outln!(
        "piece size        {} to {}",
        human_bytes(report.min_piece_size),
        human_bytes(report.max_piece_size)
    );
    outln!("max duration      {} epochs", report.max_duration);
    outln!(
        "ask               #{} made at epoch {} (signature checked)",
        report.seq_no,
        report.timestamp
    );
    if let Some(url) = &report.retrieval_url {
        outln!("retrieval         {url}");
    }
    Ok(())
}

/// A client deal as `lode client deal`, `lode client deals` and their `--json` show it.
#[derive(Debug, Serialize)]
struct DealReport {
    uuid: String,
    provider: String,
    state: ClientDealState,
    reason: Option<String>,
    deal_id: Option<u64>,
    sector: Option<u64>,
    activation_epoch: Option<u64>,
    piece_cid: String,
    piece_size: u64,
    payload_size: u64,
    payload_root: Option<String>,
    import_id: Option<u64>,
    verified: bool,
    label: String,
    start_epoch: u64,
    end_epoch: u64,
    /// Atto per epoch.
    price_per_epoch: TokenAmount,
    /// Atto: price × duration.
    total_price: Option<TokenAmount>,
    provider_collateral: TokenAmount,
    client_collateral: TokenAmount,
    transfer: ClientTransfer,
    created_at: String,
    updated_at: String,
}

impl DealReport {
    fn new(d: &ClientDeal) -> DealReport {
        let p = &d.proposal.proposal;
        DealReport {
            uuid: d.uuid.to_string(),
            provider: d.provider.to_string(),
            state: d.state,
            reason: d.reason.clone(),
            deal_id: d.deal_id,
            sector: d.sector,
            activation_epoch: d.activation_epoch,
            piece_cid: d.piece_cid.to_string(),
            piece_size: d.piece_size,
            payload_size: d.payload_size,
            payload_root: d.payload_root.map(|c| c.to_string()),
            import_id: d.import_id,
            verified: p.verified,
            label: p.label.clone(),
            start_epoch: p.start_epoch,
            end_epoch: p.end_epoch,
            price_per_epoch: p.price_per_epoch,
            total_price: p.total_storage_fee(),
            provider_collateral: p.provider_collateral,
            client_collateral: p.client_collateral,
            transfer: d.transfer.clone(),
            created_at: d.created_at.clone(),
            updated_at: d.updated_at.clone(),
        }
    }

    fn state_text(&self) -> String {
        let mut s = self.state.to_string();
        if let Some(id) = self.deal_id {
            s.push_str(&format!(" (deal id {id}"));
            if let Some(sector) = self.sector {
                s.push_str(&format!(", sector {sector}"));
            }
            if let Some(at) = self.activation_epoch {
                s.push_str(&format!(", active since epoch {at}"));
            }
            s.push(')');
        }
        s
    }

    fn print(&self) {
        outln!("deal        {}", self.uuid);
        outln!("provider    {}", self.provider);
        outln!(
            "piece       {} ({}, payload {} bytes)",
            self.piece_cid,
            human_bytes(self.piece_size),
            self.payload_size
        );
        if let Some(root) = &self.payload_root {
            outln!("payload     {root}");
        }
        outln!("state       {}", self.state_text());
        if let Some(reason) = &self.reason {
            outln!("reason      {reason}");
        }
        outln!(
            "epochs      {} to {}{}",
            self.start_epoch,
            self.end_epoch,
            if self.verified { " (verified)" } else { "" }
        );
        outln!(
            "price       {} per epoch ({} in all); provider collateral {}",
            self.price_per_epoch,
            self.total_price
                .map_or_else(|| "overflow".to_string(), |t| t.to_string()),
            self.provider_collateral
        );
        match &self.transfer {
            ClientTransfer::Served { url } => {
                outln!("transfer    served by this command at {url}")
            }
            ClientTransfer::Url { url } => outln!("transfer    pulled from {url}"),
            ClientTransfer::Push => outln!("transfer    pushed over libp2p"),
        }
    }
}

async fn deal(args: DealArgs) -> anyhow::Result<()> {
    let miner = parse_actor(&args.provider)?;
    let imports = args.dir.store()?;
    let piece = match imports.resolve(&args.piece) {
        Ok(record) => PieceSpec::from_import(&imports, &record),
        Err(lode_market::MarketError::UnknownImport(_))
            if args.piece_size.is_some() && args.payload_size.is_some() =>
        {
            let cid = lode_market::cid::parse_cid(&args.piece)?;
            PieceSpec {
                piece_cid: lode_market::cid::cid_to_piece(&cid)?,
                piece_size: args.piece_size.unwrap_or_default(),
                payload_size: args.payload_size.unwrap_or_default(),
                payload_root: None,
                import_id: None,
                car: None,
            }
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(
                "the deal's data must be an import (`lode client import`), or a piece CID with --url, --piece-size and --payload-size",
            ));
        }
    };
    let terms = DealTerms {
        duration: args.duration,
        start_epoch: args.start_epoch,
        price_per_gib_epoch: args.price,
        verified: args.verified,
        label: args.label.clone(),
        provider_collateral: args.provider_collateral,
        client_collateral: TokenAmount::ZERO,
    };
    let transfer = if args.push {
        TransferChoice::Push
    } else if let Some(url) = &args.url {
        TransferChoice::Url(url.clone())
    } else {
        TransferChoice::Serve {
            listen: args.serve_addr,
            public_host: args.public_host.clone(),
        }
    };
    let key = args.key.secret(&args.api)?;
    let store = ClientDealStore::open(args.dir.dir())?;
    let client = DealClient::new(chain(&args.api)?, client_host().await?, key, store);

    let bar = spinner(format!("proposing the deal to provider {miner}"));
    let proposed = client.propose(miner, &piece, &terms, transfer).await;
    bar.finish_and_clear();
    let mut proposed = proposed.map_err(market_error)?;
    eprintln!("provider {miner} accepted deal {}", proposed.deal.uuid);
    if args.push {
        let car = piece.car.clone().unwrap_or_default();
        let bar = spinner(format!("pushing {} bytes", piece.payload_size));
        let pushed = client
            .push(&mut proposed, &car, PushOptions::default())
            .await;
        bar.finish_and_clear();
        pushed.map_err(market_error)?;
        eprintln!(
            "payload pushed; the provider checks its piece commitment and publishes the deal"
        );
    }
    let mut deal = proposed.deal.clone();
    if !args.no_wait {
        let bar = spinner("waiting for the deal's publication on chain");
        let waited = client
            .wait_published(
                &deal.uuid,
                Duration::from_secs(args.wait),
                Duration::from_secs(2),
                &mut |d, head| {
                    bar.set_message(format!(
                        "waiting for the deal's publication on chain: {} at epoch {head} (starts at {})",
                        d.state, d.proposal.proposal.start_epoch
                    ));
                },
            )
            .await;
        bar.finish_and_clear();
        deal = waited.map_err(market_error)?;
        if let Some(served) = proposed.served.take() {
            served.stop().await;
        }
        if deal.state.is_unpublished() {
            eprintln!(
                "not published after {} s; `lode client deals` follows it (the provider must publish it before epoch {})",
                args.wait, deal.proposal.proposal.start_epoch
            );
            if matches!(deal.transfer, ClientTransfer::Served { .. }) {
                eprintln!(
                    "the CAR is no longer served: if the provider had not fetched all of it, the deal fails; serve it yourself and use --url, or wait longer with --wait"
                );
            }
        }
    }
    let report = DealReport::new(&deal);
    if args.json {
        print_json(&report)?;
    } else {
        report.print();
    }
    if deal.state == ClientDealState::Failed {
        anyhow::bail!(
            "deal {} failed: {}",
            deal.uuid,
            deal.reason.unwrap_or_default()
        );
    }
    Ok(())
}

async fn deals(args: DealsArgs) -> anyhow::Result<()> {
    let store = ClientDealStore::open(args.dir.dir())?;
    let deals = match chain(&args.api) {
        Ok(chain) => match refresh_deals(&chain, &store).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!(
                    "warning: the chain could not be read ({}); showing the local records as they were",
                    market_error(e)
                );
                store.list()?
            }
        },
        Err(e) => {
            eprintln!("warning: {e:#}; showing the local records as they were");
            store.list()?
        }
    };
    let reports: Vec<DealReport> = deals.iter().map(DealReport::new).collect();
    if args.json {
        return print_json(&reports);
    }
    if reports.is_empty() {
        outln!(
            "no deals in {}; `lode client deal --provider ACTOR --piece IMPORT --duration EPOCHS` makes one",
            store.dir().display()
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            vec![
                r.uuid.clone(),
                r.provider.clone(),
                r.piece_cid.clone(),
                human_bytes(r.piece_size),
                r.state.to_string(),
                r.deal_id.map_or_else(|| "-".into(), |i| i.to_string()),
                r.sector.map_or_else(|| "-".into(), |i| i.to_string()),
                format!("{}-{}", r.start_epoch, r.end_epoch),
                if r.verified { "yes" } else { "no" }.into(),
            ]
        })
        .collect();
    out!(
        "{}",
        table(
            &[
                "DEAL",
                "PROVIDER",
                "PIECE CID",
                "SIZE",
                "STATE",
                "DEAL ID",
                "SECTOR",
                "EPOCHS",
                "VERIFIED"
            ],
            &rows
        )
    );
    for r in &reports {
        if let Some(reason) = &r.reason {
            outln!("{}: {reason}", r.uuid);
        }
    }
    Ok(())
}

/// What `lode client balance --json` prints.
#[derive(Debug, Serialize)]
struct BalanceReport {
    address: String,
    /// The message that changed it (add/withdraw).
    message: Option<String>,
    /// The epoch that executed it.
    epoch: Option<u64>,
    escrow: EscrowView,
}

async fn balance(args: BalanceArgs) -> anyhow::Result<()> {
    let (key, api, json, change) = match &args.action {
        None => (&args.key, &args.api, args.json, None),
        Some(BalanceAction::Add(a)) => (&a.key, &a.api, a.json, Some((true, a))),
        Some(BalanceAction::Withdraw(a)) => (&a.key, &a.api, a.json, Some((false, a))),
    };
    let node = api.client()?;
    let mut report = BalanceReport {
        address: String::new(),
        message: None,
        epoch: None,
        escrow: EscrowView {
            balance: TokenAmount::ZERO,
            locked: TokenAmount::ZERO,
            available: TokenAmount::ZERO,
        },
    };
    let address = match change {
        None => key.address(api)?,
        Some((add, a)) => {
            let secret = key.secret(api)?;
            let owner = Address::Bls(secret.public_key());
            let (value, method) = if add {
                (a.amount, MarketMethod::AddBalance { owner })
            } else {
                (
                    TokenAmount::ZERO,
                    MarketMethod::WithdrawBalance {
                        owner,
                        amount: a.amount,
                    },
                )
            };
            let bar = spinner(if add {
                "adding to your market escrow"
            } else {
                "withdrawing from your market escrow"
            });
            let done = wallet::call_and_wait(
                &node,
                &secret,
                MARKET.into(),
                value,
                Method::Market(method),
                Duration::from_secs(a.wait_timeout),
            )
            .await;
            bar.finish_and_clear();
            let done = done?;
            report.message = Some(hex::encode(done.id));
            report.epoch = Some(done.found.epoch);
            owner
        }
    };
    report.address = address.to_string();
    report.escrow = node
        .state_market_balance(&address)
        .await
        .map_err(client_error)?;
    if json {
        return print_json(&report);
    }
    if let (Some(m), Some(e)) = (&report.message, report.epoch) {
        outln!("message    {m} (epoch {e})");
    }
    outln!("address    {}", report.address);
    outln!("balance    {}", report.escrow.balance);
    outln!("locked     {} (by deals)", report.escrow.locked);
    outln!("available  {}", report.escrow.available);
    if change.is_none() && report.escrow.available == TokenAmount::ZERO {
        outln!(
            "add escrow for deals with `lode client balance add {}`",
            amount_arg(TokenAmount::tokens(1))
        );
    }
    Ok(())
}

async fn retrieve_cmd(args: RetrieveArgs) -> anyhow::Result<()> {
    let cid = lode_market::cid::parse_cid(&args.cid)?;
    let deals = ClientDealStore::open(args.dir.dir())?;
    let imports = args.dir.store()?;
    let target = RetrievalTarget::resolve(&deals, Some(&imports), &cid)?;
    let base = match &args.url {
        Some(u) => u.clone(),
        None => {
            let miner = match &args.provider {
                Some(p) => parse_actor(p)?,
                None => *target.providers.first().with_context(|| {
                    format!(
                        "none of your deals holds {cid} with a provider: pass --provider ACTOR or --url URL"
                    )
                })?,
            };
            let info = chain(&args.api)?
                .miner_info(miner)
                .await
                .map_err(market_error)?;
            ProviderAddrs::from_miner_info(&info)?
                .retrieval()?
                .to_string()
        }
    };
    let mut request = target.request(&base, &args.out);
    request.as_car = args.car;
    let bar = bytes_bar(target.payload_size, "retrieving");
    let done = retrieve(&request, &mut |got, _| bar.set_position(got)).await;
    bar.finish_and_clear();
    let done = done.map_err(market_error)?;
    if args.json {
        return print_json(&done);
    }
    outln!(
        "piece     {} ({}, commitment checked)",
        done.piece_cid,
        human_bytes(done.piece_size)
    );
    outln!("payload   {} bytes from {base}", done.payload_size);
    match &done.output {
        lode_market::client::retrieve::RetrievedOutput::Unpacked {
            is_directory,
            files,
            directories,
            bytes,
            ..
        } => {
            if *is_directory {
                outln!(
                    "wrote     {} ({files} files, {directories} directories, {bytes} bytes; every block checked)",
                    done.out.display()
                );
            } else {
                outln!(
                    "wrote     {} ({bytes} bytes; every block checked)",
                    done.out.display()
                );
            }
        }
        lode_market::client::retrieve::RetrievedOutput::Car => {
            outln!("wrote     {} (the CAR)", done.out.display())
        }
        lode_market::client::retrieve::RetrievedOutput::Raw => {
            outln!("wrote     {} (the payload, not a CAR)", done.out.display())
        }
    }
    Ok(())
}
