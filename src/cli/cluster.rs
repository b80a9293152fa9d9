//! `lode worker run` and `lode cluster`: sealing across machines through a shared PostgreSQL
//! database (the task engine of `lode_provider::engine`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use lode_proofs::sector::SectorSize;
use lode_provider::cluster;
use lode_provider::engine::postgres::PgEngine;
use lode_provider::engine::{TaskKind, TaskPhase};
use lode_provider::tasks::Resources;
use lode_provider::worker::{WorkerConfig, hostname, run_worker};

use super::common::{
    ParamsDir, block_on, daemon_runtime, default_cache_dir, parse_byte_count, parse_size,
    print_json, shutdown_signal, table,
};

/// The cluster database: a PostgreSQL connection string.
#[derive(Debug, Args)]
pub(crate) struct DbArgs {
    /// PostgreSQL: `postgres://user:password@host:5432/lode`, or `host=/run/postgresql user=lode
    /// dbname=lode`. The schema is created or migrated on first use.
    #[arg(long, env = "LODE_DB")]
    db: String,
}

impl DbArgs {
    async fn connect(&self) -> anyhow::Result<PgEngine> {
        PgEngine::connect(&self.db).await.with_context(
            || "cannot open the cluster database (check --db and that PostgreSQL is up)",
        )
    }
}

/// `lode worker`.
#[derive(Debug, Subcommand)]
pub(crate) enum WorkerCommand {
    /// Run a worker: claim the sealing tasks this machine can run from the cluster database, run
    /// them in --dir, report their outputs; heartbeat meanwhile. Ctrl-C or SIGTERM gives its
    /// running tasks back to the cluster at once.
    #[command(after_help = "Examples:
  lode worker run --db postgres://lode@db-host/lode --dir /srv/lode/sealing --secret-file secret
  lode worker run --db \"host=/run/postgresql dbname=lode\" --dir /mnt/nvme --tasks pc1,pc2,c1 \\
      --name nvme-box --listen 0.0.0.0:7001 --url http://nvme-box:7001 --secret-file secret
  LODE_DB=postgres://lode@db-host/lode lode worker run --dir /srv/lode/c2 --tasks c2,wdpost,wnpost --gpus 1 --secret-file secret")]
    Run(WorkerRunArgs),
}

#[derive(Debug, Args)]
pub(crate) struct WorkerRunArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Where this worker keeps the sectors it seals (one directory per sector).
    #[arg(long)]
    dir: PathBuf,
    /// Its name in the cluster (unique; the same name after a restart takes its own tasks back).
    /// Default: `<hostname>:<dir>`.
    #[arg(long)]
    name: Option<String>,
    /// The tasks it claims: pc1, pc2, c1, c2, finalize, wdpost and wnpost (Window PoSt and Winning
    /// PoSt SNARKs over the vanilla proofs the provider gathers, when the provider's `[cluster]
    /// window_post_wait_secs` and `winning_post_wait_ms` ask for them; the provider verifies each
    /// proof, and proves itself what no worker proves in time).
    #[arg(long, value_delimiter = ',', default_value = "pc1,pc2,c1,c2,finalize")]
    tasks: Vec<String>,
    /// Cores it offers: what it claims tasks for, and the threads its phases compute on (default:
    /// the machine's).
    #[arg(long)]
    cores: Option<u32>,
    /// Memory it offers, e.g. `64GiB` (default: the machine's).
    #[arg(long, value_parser = parse_byte_count)]
    memory: Option<u128>,
    /// GPUs it offers.
    #[arg(long, default_value_t = 0)]
    gpus: u32,
    /// Directory of the SDR parent caches (default: the cache directory).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    #[command(flatten)]
    params: ParamsDir,
    /// Seconds between heartbeats.
    #[arg(long, default_value_t = 10)]
    heartbeat_secs: u64,
    /// Seconds of silence after which a worker is declared dead and its tasks reclaimed.
    #[arg(long, default_value_t = 60)]
    dead_after_secs: u64,
    /// Where to serve this worker's sector files to the other workers (HTTP).
    #[arg(long, default_value = "0.0.0.0:0")]
    listen: std::net::SocketAddr,
    /// The URL the other workers reach it at (default: `http://<hostname>:<port>`, or the
    /// listening address when it is not a wildcard).
    #[arg(long)]
    url: Option<String>,
    /// A file holding the cluster's shared secret (every worker the same; file requests carry
    /// it). `LODE_CLUSTER_SECRET` gives it directly.
    #[arg(long, env = "LODE_CLUSTER_SECRET_FILE")]
    secret_file: Option<PathBuf>,
}

/// `lode cluster`.
#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// The cluster: its workers (resources, sectors held, last heartbeat), its tasks (queued,
    /// running and on which worker, recently finished) and the workers' storage paths with their
    /// free space.
    #[command(after_help = "Examples:
  lode cluster status --db postgres://lode@db-host/lode
  lode cluster status --db postgres://lode@db-host/lode --json --history 100")]
    Status(ClusterStatusArgs),
    /// Seal a committed-capacity sector across the cluster: PreCommit1 on the first worker that
    /// takes it, then PreCommit2, Commit1 and Commit2 on that worker (where its layers are).
    #[command(after_help = "Examples:
  lode cluster seal --db postgres://lode@db-host/lode --miner 1000 --sector 1 --sector-size 2KiB \\
      --ticket 0101010101010101010101010101010101010101010101010101010101010101 \\
      --seed 0202020202020202020202020202020202020202020202020202020202020202")]
    Seal(ClusterSealArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ClusterStatusArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Finished tasks to show.
    #[arg(long, default_value_t = 20)]
    history: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ClusterSealArgs {
    #[command(flatten)]
    db: DbArgs,
    /// The miner actor's id.
    #[arg(long)]
    miner: u64,
    /// The sector number.
    #[arg(long)]
    sector: u64,
    /// The sector size.
    #[arg(long, value_parser = parse_size)]
    sector_size: SectorSize,
    /// The seal ticket: 64 hex digits.
    #[arg(long, value_parser = parse_hex32)]
    ticket: [u8; 32],
    /// The interactive seed: 64 hex digits.
    #[arg(long, value_parser = parse_hex32)]
    seed: [u8; 32],
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn parse_hex32(s: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(s.strip_prefix("0x").unwrap_or(s)).map_err(|e| e.to_string())?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| "expected 64 hex digits".to_string())
}

fn task_kind(name: &str) -> anyhow::Result<TaskKind> {
    match TaskKind::from_flag(name.trim()) {
        Some(kind) => Ok(kind),
        None => {
            anyhow::bail!("unknown task {name:?}: use pc1, pc2, c1, c2, finalize, wdpost or wnpost")
        }
    }
}

pub(crate) fn worker(cmd: WorkerCommand) -> anyhow::Result<()> {
    let WorkerCommand::Run(a) = cmd;
    let kinds = a
        .tasks
        .iter()
        .map(|t| task_kind(t))
        .collect::<anyhow::Result<Vec<_>>>()?;
    std::fs::create_dir_all(&a.dir)
        .with_context(|| format!("cannot create {}", a.dir.display()))?;
    let dir = a
        .dir
        .canonicalize()
        .with_context(|| format!("{}", a.dir.display()))?;
    let cores = a.cores.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
    });
    let memory = match a.memory {
        Some(m) => u64::try_from(m).unwrap_or(u64::MAX),
        None => lode_provider::tasks::config::detect_memory().unwrap_or(u64::MAX),
    };
    let config = WorkerConfig {
        name: a
            .name
            .clone()
            .unwrap_or_else(|| format!("{}:{}", hostname(), dir.display())),
        kinds,
        resources: Resources {
            cores,
            memory,
            gpus: a.gpus,
            scratch: u64::MAX,
        },
        dir,
        cache_dir: a.cache_dir.clone().unwrap_or_else(default_cache_dir),
        params_dir: a.params.store().dir().to_path_buf(),
        heartbeat: Duration::from_secs(a.heartbeat_secs.max(1)),
        dead_after: Duration::from_secs(a.dead_after_secs.max(2)),
        listen: Some(a.listen),
        url: a.url.clone(),
        secret: String::new(),
    };
    let secret = match (&a.secret_file, std::env::var("LODE_CLUSTER_SECRET").ok()) {
        (Some(path), _) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the cluster secret {}", path.display()))?
            .trim()
            .to_string(),
        (None, Some(s)) => s.trim().to_string(),
        (None, None) => anyhow::bail!(
            "no cluster secret: give --secret-file FILE (the same on every worker; e.g. `od -An -tx1 -N32 /dev/urandom | tr -d ' \\n' > secret`) or LODE_CLUSTER_SECRET"
        ),
    };
    anyhow::ensure!(!secret.is_empty(), "the cluster secret is empty");
    let config = WorkerConfig { secret, ..config };
    let rt = daemon_runtime()?;
    rt.block_on(async {
        // A worker may boot before the database (or while it restarts): it waits for it.
        let engine = loop {
            match PgEngine::connect(&a.db.db).await {
                Ok(e) => break e,
                Err(lode_provider::engine::EngineError::Postgres(e)) => {
                    tracing::warn!(error = %e, "cannot reach the cluster database (check --db and that PostgreSQL is up); trying again in 2 s");
                    tokio::select! {
                        () = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                        () = shutdown_signal() => return Ok(()),
                    }
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context("cannot open the cluster database"));
                }
            }
        };
        eprintln!("worker {} claiming {:?}", config.name, a.tasks);
        run_worker(engine, config, shutdown_signal()).await?;
        Ok(())
    })
}

pub(crate) fn run(cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Status(a) => {
            let s = block_on(async {
                let engine = a.db.connect().await?;
                anyhow::Ok(cluster::status(&engine, a.history).await?)
            })??;
            if a.json {
                return print_json(&s);
            }
            let workers: Vec<Vec<String>> = s
                .workers
                .iter()
                .map(|w| {
                    vec![
                        w.info.name.clone(),
                        w.info.resources.cores.to_string(),
                        super::common::human_bytes(w.info.resources.memory),
                        w.info.resources.gpus.to_string(),
                        w.info
                            .kinds
                            .iter()
                            .map(|k| k.name())
                            .collect::<Vec<_>>()
                            .join(","),
                        s.held_by(&w.info.name).to_string(),
                        format!("{:.1} s ago", w.silent_ms as f64 / 1000.0),
                    ]
                })
                .collect();
            outln!("workers");
            outln!(
                "{}",
                table(
                    &[
                        "name",
                        "cores",
                        "memory",
                        "gpus",
                        "tasks",
                        "sectors",
                        "heartbeat"
                    ],
                    &workers
                )
            );
            let tasks: Vec<Vec<String>> = s
                .tasks
                .iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        t.spec.kind.name().to_string(),
                        t.spec.miner.to_string(),
                        t.spec.subject.to_string(),
                        match t.phase {
                            TaskPhase::Queued => "queued",
                            TaskPhase::Running => "running",
                            TaskPhase::Done => "done",
                            TaskPhase::Failed => "failed",
                        }
                        .to_string(),
                        t.worker.clone().unwrap_or_default(),
                        t.attempts.to_string(),
                        t.error.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            outln!("\ntasks");
            outln!(
                "{}",
                table(
                    &[
                        "id", "kind", "miner", "sector", "state", "worker", "claims", "error"
                    ],
                    &tasks
                )
            );
            let storage: Vec<Vec<String>> = s
                .storage
                .iter()
                .map(|p| {
                    vec![
                        p.worker.clone(),
                        p.path.clone(),
                        p.available
                            .map_or("unknown".into(), super::common::human_bytes),
                    ]
                })
                .collect();
            outln!("\nstorage");
            outln!("{}", table(&["worker", "path", "free"], &storage));
            Ok(())
        }
        ClusterCommand::Seal(a) => {
            let sealed = block_on(async {
                let engine = a.db.connect().await?;
                anyhow::Ok(
                    cluster::seal_sector(
                        &engine,
                        a.miner,
                        a.sector,
                        a.sector_size,
                        a.ticket,
                        a.seed,
                    )
                    .await?,
                )
            })??;
            if a.json {
                return print_json(&sealed);
            }
            outln!("sector    {} of miner {}", sealed.sector, sealed.miner);
            outln!("comm_d    {}", sealed.comm_d);
            outln!("comm_r    {}", sealed.comm_r);
            outln!("worker    {}", sealed.worker);
            for t in &sealed.tasks {
                outln!(
                    "{:<12}task {} on {} ({} claims)",
                    t.kind.name(),
                    t.id,
                    t.worker,
                    t.attempts
                );
            }
            Ok(())
        }
    }
}
