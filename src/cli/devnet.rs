//! `lode devnet` and `lode genesis new`: local networks and genesis files.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use lode_devnet::devnet::{self, DevnetFile, DevnetOptions, Stage};
use lode_devnet::genesis::{self as genfile, GenesisOptions};
use lode_proofs::sector::SectorSize;

use super::common::{ParamsDir, default_cache_dir, default_data_dir, parse_size};

/// Genesis subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum GenesisCommand {
    /// Create a genesis: fresh keys, a funded faucet account, and miners whose sectors are sealed
    /// for real now (committed capacity), with power from epoch 0.
    #[command(after_help = "Examples:
  lode genesis new --out mynet
  lode genesis new --out mynet --network testnet-1 --miners 3 --sectors 4 --start-in 120 --json

Writes <out>/genesis.json, <out>/keys/ (faucet and owner keys, 0600) and <out>/miner-<i>/
(worker.key and sectors/) for each miner; give each miner's directory to `lode provider run`.")]
    New(GenesisNewArgs),
}

/// Arguments of `lode genesis new`.
#[derive(Debug, Args)]
pub(crate) struct GenesisNewArgs {
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// The network's name (the devnet rules under this name).
    #[arg(long, default_value = "devnet")]
    network: String,
    /// Genesis miners.
    #[arg(long, default_value_t = 2)]
    miners: usize,
    /// Pre-sealed sectors per miner.
    #[arg(long, default_value_t = 2)]
    sectors: u64,
    /// Sector size (2KiB or 8MiB on a devnet).
    #[arg(long, value_parser = parse_size, default_value = "2KiB")]
    sector_size: SectorSize,
    /// Seconds from now to epoch 0.
    #[arg(long, default_value_t = 30)]
    start_in: u64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Devnet subcommands (none: start one).
#[derive(Debug, Subcommand)]
pub(crate) enum DevnetCommand {
    /// Stop the devnet running in a directory (SIGTERM, then SIGKILL after 15 s).
    #[command(after_help = "Examples:
  lode devnet stop
  lode devnet stop --dir /tmp/net")]
    Stop(DevnetStopArgs),
    /// Print the status of a devnet: height and peers per node, power per miner.
    #[command(after_help = "Examples:
  lode devnet status
  lode devnet status --dir /tmp/net --json")]
    Status(DevnetStatusArgs),
}

/// `--dir`.
#[derive(Debug, Args)]
pub(crate) struct DevnetDirArgs {
    /// The devnet's directory (default: the user's data directory's `lode/devnet`).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Arguments of `lode devnet stop`.
#[derive(Debug, Args)]
pub(crate) struct DevnetStopArgs {
    #[command(flatten)]
    dir: DevnetDirArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lode devnet status`.
#[derive(Debug, Args)]
pub(crate) struct DevnetStatusArgs {
    #[command(flatten)]
    dir: DevnetDirArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lode devnet`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct DevnetArgs {
    #[command(subcommand)]
    command: Option<DevnetCommand>,
    #[command(flatten)]
    run: DevnetRunArgs,
}

/// Arguments of `lode devnet` (start).
#[derive(Debug, Args)]
pub(crate) struct DevnetRunArgs {
    #[command(flatten)]
    dir: DevnetDirArgs,
    /// Node processes.
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// Miner processes (genesis miners with pre-sealed sectors).
    #[arg(long, default_value_t = 2)]
    miners: usize,
    /// Pre-sealed sectors per miner.
    #[arg(long, default_value_t = 2)]
    sectors: u64,
    /// Sector size: 2KiB or 8MiB.
    #[arg(long, value_parser = parse_size, default_value = "2KiB")]
    sector_size: SectorSize,
    /// Seconds per epoch (default at 2 KiB: the devnet rules', 1 s, on machines with two cores or
    /// more per miner, else 2 s; at 8 MiB: 20 s, else 40 s: every miner proves a Winning PoSt
    /// nearly every epoch).
    #[arg(long)]
    epoch_seconds: Option<u64>,
    /// Deadlines per proving period (default: the devnet rules' 48, a 240-epoch period; 4 to
    /// 48): fewer bring each deadline round sooner, e.g. to watch faults and recoveries.
    #[arg(long, value_name = "N")]
    period_deadlines: Option<u64>,
    /// Epochs a provider's transferred deal waits for more deals to share its publication
    /// message (`[market] publish_wait_epochs` of each provider's config.toml; default 2): longer
    /// gathers more deals per `PublishDeals`, and leaves deals `transferred` (see `lode provider
    /// deals`) long enough to watch.
    #[arg(long, value_name = "EPOCHS")]
    publish_wait_epochs: Option<u64>,
    /// Seal the miners' committed-capacity sectors through a cluster: the PostgreSQL database
    /// (`postgres://…`) that `lode worker run` processes claim their tasks from (start them with
    /// the command the devnet prints). Each provider then leads its miner through a lease there.
    #[arg(long, value_name = "URL")]
    cluster_db: Option<String>,
    /// With --cluster-db: keep sealed sectors on the workers that sealed them (Finalize runs
    /// there) and prove them through those workers, instead of bringing them into the providers'
    /// stores.
    #[arg(long, requires = "cluster_db")]
    cluster_store_on_workers: bool,
    /// Start in the background and return (stop with `lode devnet stop`).
    #[arg(long)]
    detach: bool,
    /// Continue the chain of the last run instead of starting a new one from the same miners
    /// (its cluster too, unless --cluster-db names another).
    #[arg(long)]
    resume: bool,
    /// Print devnet.json once started (with --detach).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    params: ParamsDir,
}

fn devnet_dir(d: &DevnetDirArgs) -> PathBuf {
    d.dir
        .clone()
        .unwrap_or_else(|| default_data_dir().join("devnet"))
}

/// A progress display for parameter generation and sealing (plain lines off a terminal).
struct StageDisplay {
    bar: Option<ProgressBar>,
    tty: bool,
}

impl StageDisplay {
    fn new() -> Self {
        StageDisplay {
            bar: None,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn update(&mut self, s: Stage) {
        match s {
            Stage::Params(name, true) => {
                self.finish();
                let msg = format!("generating insecure {name} parameters (devnets only)");
                if self.tty {
                    let b = ProgressBar::new_spinner().with_message(msg);
                    b.enable_steady_tick(Duration::from_millis(120));
                    self.bar = Some(b);
                } else {
                    eprintln!("{msg}");
                }
            }
            Stage::Params(_, false) => self.finish(),
            Stage::Sealing(done, total) => {
                if self.tty {
                    let b = self.bar.get_or_insert_with(|| {
                        ProgressBar::new(total).with_style(
                            ProgressStyle::with_template(
                                "pre-sealing sectors [{bar:30}] {pos}/{len} ({elapsed})",
                            )
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                        )
                    });
                    b.set_position(done);
                } else {
                    eprintln!("pre-sealed {done}/{total} sectors");
                }
            }
            Stage::Reusing => {
                self.finish();
                eprintln!("reusing the genesis miners and sectors of the last run; new chain");
            }
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

/// Runs `lode genesis …`.
pub(crate) fn genesis(cmd: GenesisCommand) -> anyhow::Result<()> {
    let GenesisCommand::New(a) = cmd;
    if genfile::genesis_path(&a.out).exists() {
        anyhow::bail!(
            "{} exists: choose another --out",
            genfile::genesis_path(&a.out).display()
        );
    }
    let mut opts = GenesisOptions::devnet(
        &a.network,
        lode_node::genesis::unix_now().saturating_add(a.start_in),
    );
    opts.miners = a.miners;
    opts.sectors_per_miner = a.sectors;
    opts.sector_size = a.sector_size;
    let mut display = StageDisplay::new();
    let (file, miners) = genfile::new_genesis(
        &a.out,
        &default_cache_dir().join("parents"),
        &opts,
        &mut |d, t| display.update(Stage::Sealing(d, t)),
    )?;
    display.finish();
    let rows: Vec<serde_json::Value> = miners
        .iter()
        .map(|m| {
            serde_json::json!({
                "actor": m.actor.to_string(),
                "dir": m.dir.display().to_string(),
            })
        })
        .collect();
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "genesis": genfile::genesis_path(&a.out).display().to_string(),
                "network": file.policy.network,
                "timestamp": file.timestamp,
                "faucet_key": genfile::faucet_key_path(&a.out).display().to_string(),
                "miners": rows,
            }))?
        );
    } else {
        outln!("wrote {}", genfile::genesis_path(&a.out).display());
        for m in &miners {
            outln!("miner {}: {}", m.actor, m.dir.display());
        }
    }
    Ok(())
}

/// Runs `lode devnet …`.
pub(crate) fn run(a: DevnetArgs) -> anyhow::Result<()> {
    match a.command {
        Some(DevnetCommand::Stop(d)) => {
            let dir = devnet_dir(&d.dir);
            let stopped = devnet::stop(&dir, Duration::from_secs(15))?;
            if d.json {
                outln!("{}", serde_json::json!({ "stopped": stopped }));
            } else {
                outln!("stopped {} processes", stopped.len());
            }
            Ok(())
        }
        Some(DevnetCommand::Status(s)) => {
            let dir = devnet_dir(&s.dir);
            let file = DevnetFile::load(&dir)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let st = rt.block_on(devnet::status(&dir, &file));
            if s.json {
                outln!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                outln!("{}", status_line(&st));
            }
            Ok(())
        }
        None => start(a.run),
    }
}

fn status_line(st: &devnet::DevnetStatus) -> String {
    let show = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    let nodes: Vec<String> = st
        .nodes
        .iter()
        .map(|n| {
            format!(
                "node {}: height {} peers {}",
                n.node,
                show(n.height),
                show(n.peers.map(|p| p as u64))
            )
        })
        .collect();
    let miners: Vec<String> = st
        .miners
        .iter()
        .map(|m| {
            format!(
                "{} power {}",
                m.actor,
                m.qa_power.map_or("-".to_string(), |p| format!("{p} B"))
            )
        })
        .collect();
    format!(
        "epoch {} | {} | {}",
        st.clock_epoch,
        nodes.join(", "),
        miners.join(", ")
    )
}

fn start(a: DevnetRunArgs) -> anyhow::Result<()> {
    let dir = devnet_dir(&a.dir);
    let opts = DevnetOptions {
        dir: dir.clone(),
        network: "devnet".into(),
        nodes: a.nodes.max(1),
        miners: a.miners,
        sectors_per_miner: a.sectors,
        sector_size: a.sector_size,
        // Absolute: each provider runs in its own directory, where a relative path would name
        // another place than the one the user meant.
        params_dir: std::path::absolute(a.params.store().dir())
            .context("cannot resolve --params-dir")?,
        cache_dir: default_cache_dir().join("parents"),
        start_delay_secs: 6,
        resume: a.resume,
        epoch_seconds: a.epoch_seconds,
        period_deadlines: a.period_deadlines,
        publish_wait_epochs: a.publish_wait_epochs,
        cluster_db: a.cluster_db.clone(),
        cluster_store_on_workers: a.cluster_store_on_workers,
    };
    let mut display = StageDisplay::new();
    devnet::prepare(&opts, &mut |s| display.update(s))
        .with_context(|| format!("cannot prepare the devnet in {}", dir.display()))?;
    display.finish();
    let exe = std::env::current_exe().context("cannot find the lode executable")?;
    let mut procs = devnet::launch(&dir, &exe, a.detach)?;
    let file = DevnetFile::load(&dir)?;
    if a.detach {
        // The children live on in their own process groups; reap nothing, wait for nothing.
        for (_, c) in procs.children.drain(..) {
            std::mem::forget(c);
        }
        if a.json {
            outln!("{}", serde_json::to_string_pretty(&file)?);
        } else {
            print_started(&dir, &file);
            outln!("stop it with: lode devnet stop --dir {}", dir.display());
        }
        return Ok(());
    }
    print_started(&dir, &file);
    outln!("Ctrl-C stops it");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome: anyhow::Result<()> = rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let mut last = String::new();
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = tick.tick() => {}
            }
            for (what, c) in &mut procs.children {
                if let Ok(Some(status)) = c.try_wait() {
                    anyhow::bail!(
                        "{what} exited ({status}); its log is under {}/logs",
                        dir.display()
                    );
                }
            }
            let line = status_line(&devnet::status(&dir, &file).await);
            if line != last {
                outln!("{line}");
                last = line;
            }
        }
    });
    eprintln!("stopping the devnet");
    devnet::stop(&dir, Duration::from_secs(15))?;
    for (_, c) in &mut procs.children {
        let _ = c.wait();
    }
    outcome
}

fn print_started(dir: &std::path::Path, file: &DevnetFile) {
    outln!(
        "devnet {} running in {} ({} nodes, {} miners, epoch 0 at unix {})",
        file.network,
        dir.display(),
        file.nodes.len(),
        file.miners.len(),
        file.genesis_timestamp
    );
    for (i, n) in file.nodes.iter().enumerate() {
        outln!(
            "  node {i}: rpc {} metrics {} {}",
            n.rpc,
            n.metrics,
            n.multiaddr
        );
    }
    for m in &file.miners {
        outln!(
            "  miner {}: node {} api {} metrics {} dashboard {}/",
            m.actor,
            m.node,
            m.rpc,
            m.metrics,
            m.http.trim_end_matches('/')
        );
    }
    outln!(
        "  use it: lode chain head --devnet {}   (or LODE_API={} )",
        dir.display(),
        file.nodes.first().map_or("", |n| n.rpc.as_str())
    );
    outln!(
        "          lode provider proving --devnet {}   (the first miner's deadlines)",
        dir.display()
    );
    if let (Some(db), Some(secret)) = (&file.cluster_db, &file.cluster_secret) {
        outln!(
            "  seal on the cluster: lode worker run --db '{db}' --dir {}/worker-1 --listen 127.0.0.1:0 --secret-file {}   (one per worker)",
            dir.display(),
            dir.join(secret).display()
        );
    }
}
