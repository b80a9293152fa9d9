//! `lode provider`: the storage provider's daemon (`run`) and the commands that read and drive a
//! running one through its own API (`info`, `sectors`, `proving`, `declare-faults`,
//! `declare-recoveries`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use lode_chain::types::TokenAmount;
use lode_provider::rpc::client::ProviderClient;
use lode_provider::rpc::{MiningInfo, ProviderInfo, ProviderSectors};
use lode_provider::run::ProviderSettings;
use lode_provider::status::ProvingStatus;

use super::common::{
    ProviderApiArgs, block_on, client_error, daemon_runtime, print_json, provider_client_error,
    shutdown_signal, table,
};

/// Provider subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ProviderCommand {
    /// Run a storage provider's proving daemon: mines blocks with Winning PoSt when it wins,
    /// proves every deadline with Window PoSt, declares faults and recoveries, and serves its own
    /// API, until Ctrl-C or SIGTERM. Its directory's `config.toml` names the miner actor, the
    /// node and the files.
    #[command(after_help = "Examples:
  lode provider run --dir ~/.local/share/lode/devnet/miner-0
  lode provider run --dir ~/sp --db postgres://lode@db-host/lode

config.toml:
  actor = \"l01004\"
  node_api = \"http://127.0.0.1:1234\"
  node_token_file = \"../node-0/token\"
  params_dir = \"/home/me/.cache/lode/params\"
  metrics = \"127.0.0.1:9501\"     # optional; also genesis, worker_key, sectors
  api = \"127.0.0.1:0\"            # optional: the provider's API (0: a free port)

  [proving]                      # optional
  margin_epochs = 2              # submit each Window PoSt at least 2 epochs before its window closes
  check_ahead_epochs = 20        # check a deadline's sectors from 20 epochs before its fault cutoff

  [sealing]                      # optional
  scratch = \"scratch\"            # where sectors are sealed (a fast disk; may be another filesystem)
  keep_unsealed = false          # keep each committed-capacity sector's unsealed copy after Finalize
  keep_unsealed_deals = true     # keep each deal sector's unsealed copy (retrievals read it)
  wait_deals_epochs = 60         # optional: how long a deal sector waits for more deals
  deal_start_margin_epochs = 62  # optional: seal once the first deal starts this soon
  parent_cache = \"cache\"         # the SDR parent cache; also enabled, db

  [cluster]                      # optional: seal on `lode worker run` machines
  db = \"postgres://lode@db-host/lode\"   # the cluster's PostgreSQL (or --db)
  secret_file = \"cluster.secret\" # the workers' --secret-file
  lease_secs = 30                # a standby provider takes over this long after the leader stops
  lost_after_secs = 1800         # a worker away this long loses its sectors' layers: they are sealed again
  store_on_workers = false       # keep sealed sectors on the workers (proven through them), not here
  window_post_wait_secs = 0      # >0: Window PoSt SNARKs on `wdpost` workers, waited this long each
  winning_post_wait_ms = 0       # >0: Winning PoSt SNARKs on `wnpost` workers, waited this long each
  files_listen = \"0.0.0.0:2347\" # optional: serve the sealing scratch to the workers, which then
                                 # seal deal sectors too (from the data packed here)

New sectors are sealed in `scratch` and moved by Finalize into `sectors` (the long-term store the
prover reads); a sector starts only once both have room for it (`lode sectors status N` says why
it waits, with the figures).

The provider writes <dir>/token (its API token for declarations, 0600) and <dir>/endpoints.json
(the API URL and token file, the metrics URL); `lode provider info --dir <dir>` reads them.")]
    Run(ProviderRunArgs),
    /// Create a storage provider: a new miner actor on chain (owned by the owner's account, with a
    /// fresh worker key funded from it) and its directory — `worker.key`, `genesis.json`,
    /// `node.token`, `config.toml` — ready for `lode provider run`.
    #[command(after_help = "Examples:
  lode wallet import ~/.local/share/lode/devnet/keys/faucet.key
  lode provider init --dir ~/sp --sector-size 2KiB --devnet ~/.local/share/lode/devnet
  lode provider run --dir ~/sp

  lode provider init --dir ~/sp --sector-size 8MiB --owner-key owner.key \\
      --api 10.0.0.5:1234 --token $(cat node/token) --genesis net/genesis.json --json

The owner pays the worker's funds (`--worker-funds`, gas for PoSt and sector messages) and the miner's
starting balance (`--deposit`, out of which pre-commit deposits and initial pledges are paid).")]
    Init(ProviderInitArgs),
    /// Who the provider is and how it mines: actor, owner, worker, sector size, its node and the
    /// node's head, version, uptime, elections won, blocks, Winning PoSt time.
    #[command(after_help = "Examples:
  lode provider info --devnet ~/.local/share/lode/devnet
  lode provider info --dir mynet/miner-0 --json
  lode provider info --api 127.0.0.1:2345")]
    Info(ProviderClientArgs),
    /// The sectors in the provider's store beside the chain's record of each: readable or not,
    /// status (active, unproven, faulty, recovering), deadline, partition, expiration.
    #[command(after_help = "Examples:
  lode provider sectors --devnet ~/.local/share/lode/devnet
  lode provider sectors --dir mynet/miner-0 --json")]
    Sectors(ProviderClientArgs),
    /// The deadlines holding the miner's partitions, with each window and what the Window PoSt
    /// prover did in it: waiting, proving, proved, submitted, confirmed; the last submission,
    /// how the previous window ended, windows missed.
    #[command(after_help = "Examples:
  lode provider proving --devnet ~/.local/share/lode/devnet
  lode provider proving --dir mynet/miner-0 --json")]
    Proving(ProviderClientArgs),
    /// The task scheduler's tasks: running, then queued (oldest first) — kind, sector, the
    /// resources each holds or asks for, attempts, times; `--all` adds the finished ones the
    /// retention policy keeps. Window PoSt tasks always go first.
    #[command(after_help = "Examples:
  lode provider tasks --devnet ~/.local/share/lode/devnet
  lode provider tasks --all --dir mynet/miner-0 --json")]
    Tasks(TasksArgs),
    /// The market's deals, newest first: UUID, client, piece, size, verified, status
    /// (accepted, transferring, transferred, publishing, published, handed_off, sealing, active,
    /// expired, slashed, failed), deal id, sector, and why a deal failed.
    #[command(after_help = "Examples:
  lode provider deals --devnet ~/.local/share/lode/devnet
  lode provider deals --dir mynet/miner-0 --json")]
    Deals(ProviderClientArgs),
    /// How clients reach the provider's market: its libp2p peer id, the addresses announced on
    /// chain, and the retrieval URL (`GET /piece/<piece CID>`).
    #[command(after_help = "Examples:
  lode provider market --devnet ~/.local/share/lode/devnet
  lode provider market --dir mynet/miner-0 --json")]
    Market(ProviderClientArgs),
    /// Declare sectors faulty (protected: needs the provider's token). They lose power until
    /// declared recovered and proven; the provider does not declare them recovered by itself.
    #[command(after_help = "Examples:
  lode provider declare-faults 3 --devnet ~/.local/share/lode/devnet
  lode provider declare-faults 3 4 --dir mynet/miner-0 --json")]
    DeclareFaults(DeclareArgs),
    /// Declare faulty sectors recovered (protected: needs the provider's token); they regain
    /// power when their deadline's next Window PoSt proves them.
    #[command(after_help = "Examples:
  lode provider declare-recoveries 3 --devnet ~/.local/share/lode/devnet
  lode provider declare-recoveries 3 4 --api 127.0.0.1:2345 --token $(cat mynet/miner-0/token) --json")]
    DeclareRecoveries(DeclareArgs),
}

/// Arguments of `lode provider run`.
#[derive(Debug, Args)]
pub(crate) struct ProviderRunArgs {
    /// The provider's directory.
    #[arg(long)]
    dir: PathBuf,
    /// Seal through a cluster: its PostgreSQL database (`[cluster] db` of config.toml; this
    /// overrides it). Workers (`lode worker run --db` the same URL) run the sealing phases; this
    /// provider leads its miner while it holds the miner's lease there.
    #[arg(long, value_name = "URL")]
    db: Option<String>,
}

/// Arguments of `lode provider init`.
#[derive(Debug, Args)]
pub(crate) struct ProviderInitArgs {
    /// The provider's directory to create (it must not hold a `config.toml` yet).
    #[arg(long)]
    dir: PathBuf,
    /// The sector size the miner seals (one the network accepts).
    #[arg(long, value_parser = super::common::parse_size)]
    sector_size: lode_proofs::sector::SectorSize,
    /// The owner's account (an address in the wallet); else `--owner-key`, else the wallet's
    /// default address.
    #[arg(long, value_name = "ADDRESS", conflicts_with = "owner_key")]
    owner: Option<String>,
    /// The owner's secret key file (hex), instead of the wallet.
    #[arg(long, value_name = "FILE")]
    owner_key: Option<PathBuf>,
    /// The wallet directory; else `$LODE_WALLET`, else `<data dir>/lode/wallet`.
    #[arg(long, value_name = "DIR")]
    wallet: Option<PathBuf>,
    /// The miner's starting balance, sent with its creation.
    #[arg(long, default_value = "100", value_parser = parse_amount)]
    deposit: TokenAmount,
    /// Sent from the owner to the new worker account (its gas).
    #[arg(long, default_value = "10", value_parser = parse_amount)]
    worker_funds: TokenAmount,
    /// The network's genesis file; with `--devnet`, the devnet's.
    #[arg(long, value_name = "FILE")]
    genesis: Option<PathBuf>,
    #[command(flatten)]
    params: super::common::ParamsDir,
    /// The provider's metrics and dashboard address (port 0: a free port, in endpoints.json).
    #[arg(long, default_value = "127.0.0.1:0")]
    metrics: std::net::SocketAddr,
    /// Seconds to wait for each message to be executed.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    wait_timeout: u64,
    #[command(flatten)]
    api: super::common::ApiArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn parse_amount(s: &str) -> Result<TokenAmount, String> {
    s.parse()
        .map_err(|e: lode_chain::types::ParseAmountError| e.to_string())
}

/// The provider flags and the output flag every provider client command takes.
#[derive(Debug, Args)]
pub(crate) struct ProviderClientArgs {
    #[command(flatten)]
    api: ProviderApiArgs,
    /// Print JSON (the API's result as the provider returns it).
    #[arg(long)]
    json: bool,
}

/// Arguments of `lode provider tasks`.
#[derive(Debug, Args)]
pub(crate) struct TasksArgs {
    /// Finished tasks too (what the retention policy keeps).
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    client: ProviderClientArgs,
}

/// Arguments of the declarations.
#[derive(Debug, Args)]
pub(crate) struct DeclareArgs {
    /// Sector numbers.
    #[arg(required = true, value_name = "SECTOR")]
    sectors: Vec<u64>,
    #[command(flatten)]
    client: ProviderClientArgs,
}

/// Runs a provider subcommand.
pub(crate) fn run(cmd: ProviderCommand) -> anyhow::Result<()> {
    match cmd {
        ProviderCommand::Run(a) => run_daemon(a),
        ProviderCommand::Init(a) => init(&a),
        ProviderCommand::Info(c) => info(&c),
        ProviderCommand::Sectors(c) => sectors(&c),
        ProviderCommand::Proving(c) => proving(&c),
        ProviderCommand::Tasks(a) => tasks(&a),
        ProviderCommand::Deals(c) => deals(&c),
        ProviderCommand::Market(c) => market(&c),
        ProviderCommand::DeclareFaults(a) => declare(&a, true),
        ProviderCommand::DeclareRecoveries(a) => declare(&a, false),
    }
}

fn run_daemon(a: ProviderRunArgs) -> anyhow::Result<()> {
    let mut settings = ProviderSettings::load(&a.dir)?;
    if let Some(db) = &a.db {
        settings.cluster.db = Some(db.clone());
    }
    daemon_runtime()?.block_on(async move {
        let p = lode_provider::run::start(&a.dir, &settings)
            .await
            .with_context(|| format!("cannot start the provider in {}", a.dir.display()))?;
        eprintln!(
            "provider running: miner {}, api {}, metrics {}",
            p.endpoints.actor, p.endpoints.rpc, p.endpoints.metrics
        );
        let mut p = p;
        let deposed = tokio::select! {
            () = shutdown_signal() => false,
            () = p.deposed() => true,
        };
        tracing::info!("stopping");
        p.stop().await;
        if deposed {
            anyhow::bail!(
                "this provider lost its miner's leader lease (another `lode provider run` leads now, or the cluster database was out of reach): stopped"
            );
        }
        Ok(())
    })
}

/// `lode provider init --json`.
#[derive(Debug, serde::Serialize)]
struct Initialised {
    actor: String,
    dir: PathBuf,
    owner: String,
    worker: String,
    worker_funds_message: String,
    create_miner_message: String,
    epoch: u64,
}

fn init(a: &ProviderInitArgs) -> anyhow::Result<()> {
    use lode_chain::actors::power::PowerMethod;
    use lode_chain::message::Method;
    use lode_node::wallet::{self, Keystore, Transfer};
    use std::time::Duration;

    let dir = &a.dir;
    if dir.join(lode_provider::run::CONFIG_FILE).exists() {
        anyhow::bail!(
            "{} already holds a provider (config.toml): run it with `lode provider run --dir {}`",
            dir.display(),
            dir.display()
        );
    }
    let genesis_path = match (&a.genesis, &a.api.devnet) {
        (Some(p), _) => p.clone(),
        (None, Some(d)) => lode_devnet::genesis::genesis_path(d),
        (None, None) => anyhow::bail!("which network? Pass --genesis FILE (or --devnet DIR)"),
    };
    let genesis = lode_node::genesis::GenesisFile::load(&genesis_path)?;
    let client = a.api.client()?;
    let timeout = Duration::from_secs(a.wait_timeout);
    let poll = Duration::from_millis(500);
    let report = block_on(async {
        let chain = client.chain_genesis().await.map_err(client_error)?;
        if chain.network != genesis.policy.network || chain.timestamp != genesis.timestamp {
            anyhow::bail!(
                "{} is not the genesis of the node's network {:?}",
                genesis_path.display(),
                chain.network
            );
        }
        let policy = &chain.policy;
        if !policy.sector_sizes.contains(&a.sector_size) {
            anyhow::bail!(
                "the network does not accept {} sectors (it accepts {:?})",
                a.sector_size,
                policy.sector_sizes
            );
        }
        let owner = match &a.owner_key {
            Some(path) => lode_provider::run::read_key_file(path)?,
            None => {
                let wdir = wallet::resolve_dir(a.wallet.as_deref(), |k| std::env::var(k).ok())?;
                let ks = Keystore::open(wdir)?;
                let address = match &a.owner {
                    Some(s) => lode_node::rpc::types::parse_address(s.trim())?,
                    None => ks.default_address()?,
                };
                wallet::key_for_account(&client, &ks, &address).await?
            }
        };
        let owner_address = lode_chain::types::Address::Bls(owner.public_key());
        let worker = lode_chain::crypto::SecretKey::generate(&mut super::common::fresh_rng()?);
        let worker_address = lode_chain::types::Address::Bls(worker.public_key());
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        lode_provider::run::write_key_file(&dir.join("worker.key"), &worker)?;

        // 1. The worker's account, funded for gas.
        let nonce = client
            .mpool_nonce(&owner_address)
            .await
            .map_err(client_error)?
            .with_context(|| {
                format!("the owner {owner_address} has no account on chain: fund it first")
            })?;
        let fund = wallet::sign_transfer(
            policy,
            &Transfer {
                from: owner_address,
                to: worker_address,
                value: a.worker_funds,
                nonce,
                gas_limit: None,
                gas_price: None,
            },
            &owner,
        )?;
        let fund_id = client.mpool_push(&fund).await.map_err(client_error)?;
        // 2. The miner, created by the owner with its starting balance.
        let create = wallet::sign_method(
            policy,
            &owner,
            lode_chain::types::Address::Id(lode_chain::actors::POWER),
            a.deposit,
            Method::Power(PowerMethod::CreateMiner {
                worker: worker_address,
                sector_size: a.sector_size,
            }),
            nonce.saturating_add(1),
            0,
            0,
        );
        let create_id = client.mpool_push(&create).await.map_err(client_error)?;
        if !a.json {
            eprintln!(
                "waiting for the miner's creation ({})…",
                hex::encode(create_id)
            );
        }
        let funded = wallet::wait_for_receipt(&client, fund_id, timeout, poll).await?;
        if !funded.receipt.ok() {
            anyhow::bail!(
                "funding the worker failed: {} ({})",
                funded.receipt.exit,
                funded.receipt.error
            );
        }
        let created = wallet::wait_for_receipt(&client, create_id, timeout, poll).await?;
        if !created.receipt.ok() {
            anyhow::bail!(
                "creating the miner failed at epoch {}: {} ({})",
                created.epoch,
                created.receipt.exit,
                created.receipt.error
            );
        }
        let actor: lode_chain::types::ActorId =
            lode_chain::codec::decode(&created.receipt.return_data)
                .context("CreateMiner's receipt does not decode as an actor id")?;

        // 3. The directory.
        let api = client.api();
        let token = api.token.clone().unwrap_or_default();
        write_secret(&dir.join("node.token"), token.as_bytes())?;
        std::fs::copy(&genesis_path, dir.join("genesis.json"))
            .with_context(|| format!("cannot copy {}", genesis_path.display()))?;
        let params_dir = a.params.store().dir().to_path_buf();
        let params_dir = std::path::absolute(&params_dir).unwrap_or(params_dir);
        let settings = ProviderSettings {
            actor: actor.to_string(),
            node_api: api.url.clone(),
            node_token_file: PathBuf::from("node.token"),
            genesis: PathBuf::from("genesis.json"),
            worker_key: PathBuf::from("worker.key"),
            sectors: PathBuf::from("sectors"),
            params_dir,
            metrics: a.metrics,
            api: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            proving: Default::default(),
            tasks: Default::default(),
            sealing: lode_provider::run::SealingSettings {
                parent_cache: super::common::default_cache_dir().join("parents"),
                ..Default::default()
            },
            market: Default::default(),
            cluster: Default::default(),
        };
        settings.save(dir)?;
        Ok(Initialised {
            actor: actor.to_string(),
            dir: dir.clone(),
            owner: owner_address.to_string(),
            worker: worker_address.to_string(),
            worker_funds_message: hex::encode(fund_id),
            create_miner_message: hex::encode(create_id),
            epoch: created.epoch,
        })
    })??;
    if a.json {
        return print_json(&report);
    }
    outln!("miner {} created at epoch {}", report.actor, report.epoch);
    outln!("  owner  {}", report.owner);
    outln!(
        "  worker {} (key in {})",
        report.worker,
        dir.join("worker.key").display()
    );
    outln!(
        "  config {}",
        dir.join(lode_provider::run::CONFIG_FILE).display()
    );
    outln!("next:");
    outln!("  lode provider run --dir {}", dir.display());
    outln!(
        "  lode sectors pledge --count 4 --wait --dir {}",
        dir.display()
    );
    Ok(())
}

/// Writes `bytes` to `path`, readable by its owner only.
fn write_secret(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

fn client(c: &ProviderClientArgs) -> anyhow::Result<ProviderClient> {
    c.api.client()
}

fn info(c: &ProviderClientArgs) -> anyhow::Result<()> {
    let client = client(c)?;
    let (info, mining) = block_on(async { (client.info().await, client.mining().await) })?;
    let info = info.map_err(provider_client_error)?;
    let mining = mining.map_err(provider_client_error)?;
    if c.json {
        return print_json(&serde_json::json!({ "info": info, "mining": mining }));
    }
    out!(
        "{}",
        info_text(&info, &mining, lode_node::genesis::unix_now())
    );
    Ok(())
}

/// `lode provider info`'s text, at unix time `now`.
fn info_text(info: &ProviderInfo, mining: &MiningInfo, now: u64) -> String {
    let head = match (&info.head, &info.node_error) {
        (Some(h), _) => format!("head epoch {}", h.epoch),
        (None, Some(e)) => format!("not answering: {e}"),
        (None, None) => "no head".to_string(),
    };
    let seconds = |v: Option<f64>, n: u64, what: &str| match v {
        Some(s) => format!("{n} {what}, {s:.2} s on average"),
        None => format!("none yet ({what})"),
    };
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<15}{v}\n"));
    line("Miner:", info.actor.to_string());
    line("Owner:", info.owner.to_string());
    line("Worker:", info.worker.to_string());
    line("Sector size:", info.sector_size.to_string());
    line("Network:", info.network.clone());
    line("Node:", format!("{} ({head})", info.node_api));
    line(
        "Version:",
        format!("{} (API {})", info.version, info.api_version),
    );
    line(
        "Started:",
        format!(
            "unix {} ({} ago)",
            info.started_at,
            duration(now.saturating_sub(info.started_at))
        ),
    );
    line(
        "Sectors:",
        format!("{} in the store", info.sectors_in_store),
    );
    line("Elections won:", mining.elections_won.to_string());
    line(
        "Blocks:",
        format!(
            "{} produced, {} refused",
            mining.blocks_produced, mining.blocks_refused
        ),
    );
    let last = match &mining.events.last_block {
        Some(b) => format!(
            "epoch {}, win count {}, {}",
            b.epoch,
            b.wins,
            hex::encode(b.id)
        ),
        None => "none yet".to_string(),
    };
    line("Last block:", last);
    if let Some(n) = &mining.events.ineligible {
        line("Ineligible:", format!("{} (epoch {})", n.why, n.epoch));
    }
    if let Some(n) = &mining.events.last_error {
        line("Last error:", format!("{} (epoch {})", n.why, n.epoch));
    }
    line(
        "Winning PoSt:",
        seconds(
            mining.winning_post_average_seconds,
            mining.winning_posts,
            "proofs",
        ),
    );
    line(
        "Window PoSt:",
        seconds(
            mining.window_post_average_seconds,
            mining.window_post_partitions,
            "partition proofs",
        ),
    );
    out
}

/// `3h 2m 5s`.
fn duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if h > 0 {
        format!("{h}h {m}m {s}s")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

fn sectors(c: &ProviderClientArgs) -> anyhow::Result<()> {
    let client = client(c)?;
    let list = block_on(client.sectors())?.map_err(provider_client_error)?;
    if c.json {
        return print_json(&list);
    }
    out!("{}", sectors_text(&list));
    Ok(())
}

/// `lode provider sectors`' text.
fn sectors_text(list: &ProviderSectors) -> String {
    let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
    let rows: Vec<Vec<String>> = list
        .sectors
        .iter()
        .map(|s| {
            let (status, deadline, partition, expiration) = match &s.chain {
                Some(c) => (
                    c.status.clone(),
                    c.deadline.to_string(),
                    c.partition.to_string(),
                    c.expiration.to_string(),
                ),
                None => ("-".into(), "-".into(), "-".into(), "-".into()),
            };
            let status = if s.held_faulty {
                format!("{status} (held)")
            } else {
                status
            };
            vec![
                s.sector_number.to_string(),
                yes(s.dir.is_some()),
                yes(s.readable),
                status,
                deadline,
                partition,
                expiration,
            ]
        })
        .collect();
    let mut out = table(
        &[
            "Sector",
            "In store",
            "Readable",
            "On chain",
            "Deadline",
            "Partition",
            "Expiration",
        ],
        &rows,
    );
    if list.sectors.is_empty() {
        out.push_str("no sectors in the store or on chain\n");
    }
    if let Some(e) = &list.node_error {
        out.push_str(&format!("the node did not answer: {e}\n"));
    }
    out
}

fn deals(c: &ProviderClientArgs) -> anyhow::Result<()> {
    let client = client(c)?;
    let list = block_on(client.deals())?.map_err(provider_client_error)?;
    if c.json {
        return print_json(&list);
    }
    out!("{}", deals_text(&list));
    Ok(())
}

/// `lode provider deals`' text.
fn deals_text(list: &[lode_market::provider::records::ProviderDeal]) -> String {
    if list.is_empty() {
        return "No deals yet.\n".to_string();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|d| {
            let p = &d.proposal.proposal;
            let status = serde_json::to_value(d.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            vec![
                d.uuid.to_string(),
                p.client.to_string(),
                lode_provider::pipeline::deals::piece_cid_text(p.piece_cid),
                p.piece_size.to_string(),
                if p.verified { "yes" } else { "no" }.to_string(),
                status,
                d.deal_id.map_or("-".to_string(), |i| i.to_string()),
                d.sector.map_or("-".to_string(), |s| s.to_string()),
                d.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "UUID", "Client", "Piece", "Size", "Verified", "Status", "Deal", "Sector", "Reason",
        ],
        &rows,
    )
}

fn market(c: &ProviderClientArgs) -> anyhow::Result<()> {
    let client = client(c)?;
    let info = block_on(client.market())?.map_err(provider_client_error)?;
    if c.json {
        return print_json(&info);
    }
    outln!("Peer id:       {}", info.peer_id);
    for a in &info.addrs {
        outln!("Address:       {a}");
    }
    outln!("Retrieval:     {}/piece/<piece CID>", info.retrieval_url);
    Ok(())
}

fn tasks(a: &TasksArgs) -> anyhow::Result<()> {
    let client = client(&a.client)?;
    let list = block_on(client.tasks(a.all))?.map_err(provider_client_error)?;
    if a.client.json {
        return print_json(&list);
    }
    out!("{}", tasks_text(&list, lode_node::genesis::unix_now()));
    Ok(())
}

/// `lode provider tasks`' text, at unix time `now`.
fn tasks_text(list: &lode_provider::rpc::ProviderTasks, now: u64) -> String {
    let gib = |b: u64| format!("{:.1} GiB", b as f64 / f64::from(1u32 << 30));
    let ago = |t: Option<u64>| {
        t.map_or("-".to_string(), |t| {
            format!("{} ago", duration(now.saturating_sub(t)))
        })
    };
    let rows: Vec<Vec<String>> = list
        .tasks
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.kind.to_string(),
                t.sector.map_or("-".to_string(), |s| s.to_string()),
                format!("{:?}", t.state).to_lowercase(),
                t.resources.cores.to_string(),
                gib(t.resources.memory),
                t.resources.gpus.to_string(),
                t.attempts.to_string(),
                ago(Some(t.created_at)),
                ago(t.started_at),
                t.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "ID", "Task", "Sector", "State", "Cores", "Memory", "GPUs", "Attempts", "Queued",
            "Started", "Error",
        ],
        &rows,
    );
    if list.tasks.is_empty() {
        out.push_str("no tasks running or queued\n");
    }
    if let Some(why) = &list.disabled {
        out.push_str(&format!("the sealing pipeline does not run: {why}\n"));
    }
    out
}

fn proving(c: &ProviderClientArgs) -> anyhow::Result<()> {
    let client = client(c)?;
    let status = block_on(client.proving())?.map_err(provider_client_error)?;
    if c.json {
        return print_json(&status);
    }
    out!("{}", proving_text(&status));
    Ok(())
}

/// `lode provider proving`'s text: like `lotus-miner proving deadlines`.
fn proving_text(st: &ProvingStatus) -> String {
    let mut out = match st.head_epoch {
        Some(h) => format!(
            "Miner: {}  head epoch {h}  windows missed: {}\n",
            st.actor, st.missed
        ),
        None => format!(
            "Miner: {}  the prover has not looked at the chain yet\n",
            st.actor
        ),
    };
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    let rows: Vec<Vec<String>> = st
        .deadlines
        .iter()
        .map(|d| {
            vec![
                format!("{}{}", d.index, if d.current { " (current)" } else { "" }),
                format!("{}-{}", d.open, d.close),
                d.partitions.to_string(),
                format!(
                    "{} ({} faulty, {} recovering)",
                    d.sectors, d.faults, d.recoveries
                ),
                format!("{}/{}", d.posted, d.partitions),
                d.state.as_str().to_string(),
                opt(d.last_submitted),
                d.last_result
                    .map_or("-".to_string(), |r| r.as_str().to_string()),
                d.missed.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "Deadline",
            "Window",
            "Partitions",
            "Sectors",
            "Posted",
            "State",
            "Submitted",
            "Previous",
            "Missed",
        ],
        &rows,
    ));
    if st.deadlines.is_empty() && st.head_epoch.is_some() {
        out.push_str("no deadline holds a partition of this miner\n");
    }
    if !st.held_faults.is_empty() {
        let held: Vec<String> = st.held_faults.iter().map(u64::to_string).collect();
        out.push_str(&format!(
            "held faulty by the operator: {}\n",
            held.join(", ")
        ));
    }
    if let Some(e) = &st.last_error {
        out.push_str(&format!("last round failed: {e}\n"));
    }
    out
}

fn declare(a: &DeclareArgs, faults: bool) -> anyhow::Result<()> {
    let client = client(&a.client)?;
    let declared = block_on(async {
        if faults {
            client.declare_faults(&a.sectors).await
        } else {
            client.declare_recoveries(&a.sectors).await
        }
    })?
    .map_err(provider_client_error)?;
    if a.client.json {
        return print_json(&declared);
    }
    let what = if faults { "faulty" } else { "recovered" };
    for l in &declared.locations {
        let sectors: Vec<String> = l.sectors.iter().map(u64::to_string).collect();
        outln!(
            "declared {what}: sectors {} (deadline {}, partition {})",
            sectors.join(", "),
            l.deadline,
            l.partition
        );
    }
    outln!("message: {}", hex::encode(declared.message));
    Ok(())
}

#[cfg(test)]
mod tests {
    use lode_provider::status::{DeadlineStatus, PostState, WindowResult};

    use super::*;

    #[test]
    fn proving_prints_one_row_per_deadline() {
        let st = ProvingStatus {
            actor: lode_chain::types::ActorId(1000),
            head_epoch: Some(57),
            updated_at: Some(1),
            deadlines: vec![DeadlineStatus {
                index: 2,
                open: 40,
                close: 60,
                challenge: 20,
                fault_cutoff: 30,
                current: true,
                partitions: 1,
                sectors: 2,
                posted: 1,
                state: PostState::Confirmed,
                last_submitted: Some(41),
                last_result: Some(WindowResult::Missed),
                missed: 1,
                ..DeadlineStatus::default()
            }],
            missed: 1,
            held_faults: vec![3],
            last_error: None,
            ..ProvingStatus::default()
        };
        let text = proving_text(&st);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.first().copied(),
            Some("Miner: l01000  head epoch 57  windows missed: 1")
        );
        assert!(lines.get(1).is_some_and(|l| l.starts_with("Deadline")));
        let row = lines.get(2).copied().unwrap_or_default();
        for cell in ["2 (current)", "40-60", "1/1", "confirmed", "41", "missed"] {
            assert!(row.contains(cell), "{row}");
        }
        assert!(text.contains("held faulty by the operator: 3"));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(65), "1m 5s");
        assert_eq!(duration(3725), "1h 2m 5s");
    }
}
