//! A cluster worker (`lode worker run`): registers with the task engine, claims the sealing tasks
//! its kinds and room allow, runs them in its own sector directories, and reports their outputs.
//!
//! - Each sector lives in `<dir>/s-<miner>-<number>` ([`sector_path`]) on the worker that ran its
//!   PreCommit1. The provider queues its PreCommit2 and Commit1 bound to that worker
//!   ([`crate::engine::TaskSpec::at`]) when it runs those kinds, so they run where the files
//!   are; otherwise unbound, naming the holder in [`SectorInput::from`]: the worker claiming it
//!   fetches the inputs first ([`fetched_inputs`]) and, once the phase succeeded, holds the
//!   sector itself. Commit2 runs anywhere on fetched inputs and keeps nothing. A deal sector's
//!   PreCommit1 names the provider's file server in [`SectorInput::data`]: the worker fetches
//!   the data the provider packed (`sector.json`, `unsealed`) before labelling; a PreCommit1
//!   interrupted there starts again from that fetch (the copy is disposable until the phase
//!   succeeded), where a committed-capacity one resumes from its last layer.
//! - A worker heartbeats every [`WorkerConfig::heartbeat`] and, at the same time, declares dead
//!   the workers silent for [`WorkerConfig::dead_after`] (any live worker frees a dead one's
//!   tasks). Told it was declared dead, it registers again; its stale results are refused.
//! - At start it releases what a previous run under its name still held (its claims died with
//!   it), so a restarted worker claims its own bound tasks again; the phases resume from what is
//!   on disk (PreCommit1 from its last complete layer).
//! - A failed phase is retried after [`RETRY_AFTER`] up to [`MAX_ATTEMPTS`] claims, then fails
//!   for good with its reason.
//! - Stopping (the future passed to [`run_worker`] completes) releases its tasks at once.
//! - A `wdpost` worker makes Window PoSt SNARKs and a `wnpost` worker Winning PoSt SNARKs
//!   ([`PostInput`]: a partition's or an election's vanilla proofs, gathered by the provider,
//!   which verifies the proof before it uses it); a failed one is not retried (the provider
//!   proves it itself).

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lode_chain::types::ActorId;
use lode_proofs::params::ParamStore;
use lode_proofs::sector::{SectorSize, randomness_node};
use lode_sealing::capacity::{SpaceProbe, SystemProbe};
use lode_sealing::seal::{self, SectorId, no_progress};
use lode_sealing::sector_dir::SectorDir;
use serde::{Deserialize, Serialize};

use crate::engine::{Claimed, Outcome, StoragePath, TaskEngine, TaskKind, WorkerInfo};
use crate::error::{ProviderError, ProviderResult};
use crate::pipeline::params::PorepParams;
use crate::preseal::sector_path;
use crate::tasks::Resources;

/// Claims of one task before its failure is final.
pub const MAX_ATTEMPTS: u32 = 3;
/// The wait before a failed task may be claimed again.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The input of a sealing task (JSON in the task's `input`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorInput {
    /// The sector's size.
    pub size: String,
    /// The seal ticket (PreCommit1), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// The interactive seed (Commit1), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    /// The worker holding the sector's files, when the task may run elsewhere (its inputs are
    /// fetched from there: [`fetched_inputs`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The version of the sector's pipeline record the task was queued for: the provider applies
    /// its output only while the record is still at it (a result for a sector that moved on is
    /// dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Finalize: keep the sector's unsealed copy (the provider's `keep_unsealed` for its kind).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_unsealed: bool,
    /// PreCommit1 of a deal sector: the URL of the provider's file server (`[cluster]
    /// files_listen`), where the data it packed waits (`sector.json`, the pieces' layout, and
    /// `unsealed`); the worker fetches both before labelling. A committed-capacity sector has
    /// none: PreCommit1 seals zeros.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// The output of a sealing task (JSON in the history's `output`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorOutput {
    /// CommD (PreCommit1), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm_d: Option<String>,
    /// CommR (PreCommit2), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm_r: Option<String>,
    /// The Groth16 proof (Commit2), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
}

/// A worker's settings.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Its name, unique in the cluster.
    pub name: String,
    /// The kinds it claims.
    pub kinds: Vec<TaskKind>,
    /// What it has to run them.
    pub resources: Resources,
    /// Where its sectors live.
    pub dir: PathBuf,
    /// The parent caches.
    pub cache_dir: PathBuf,
    /// The Groth16 parameters (Commit2).
    pub params_dir: PathBuf,
    /// Between two heartbeats.
    pub heartbeat: Duration,
    /// Silence after which a worker is declared dead.
    pub dead_after: Duration,
    /// Where to serve its sector files to the cluster (none: it serves none, and tasks needing
    /// its files run only here).
    pub listen: Option<std::net::SocketAddr>,
    /// The URL other workers reach it at (default: `http://` and the bound address).
    pub url: Option<String>,
    /// The cluster's shared secret, which file requests carry both ways.
    pub secret: String,
}

pub(crate) fn task_err(why: impl Into<String>) -> ProviderError {
    ProviderError::Task(why.into())
}

fn node_hex(hex_str: &str, what: &str) -> ProviderResult<[u8; 32]> {
    let bytes = hex::decode(hex_str).map_err(|e| task_err(format!("{what}: {e}")))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| task_err(format!("{what}: 32 bytes expected, got {}", bytes.len())))
}

/// This machine's host name (`localhost` when it has none).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The input of a Window PoSt or Winning PoSt task (JSON in the task's `input`): a partition's
/// vanilla proofs, padded as the circuit takes them, or the elected sector's; gathered by the
/// provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostInput {
    /// The sectors' size.
    pub size: String,
    /// Each sector's vanilla proof (`SectorProof::to_bytes`), hex.
    pub vanilla: Vec<String>,
}

/// The Groth16 parameters a worker loaded, by task kind and sector size (loaded on first use,
/// kept while the worker runs).
type ParamSlots = Mutex<std::collections::HashMap<(TaskKind, u64), Arc<PorepParams>>>;

/// The parameters of `kind` (Commit2, Window PoSt or Winning PoSt) at `size`, loaded once.
fn params_for(
    config: &WorkerConfig,
    params: &ParamSlots,
    kind: TaskKind,
    size: SectorSize,
) -> ProviderResult<Arc<groth16::Parameters<bls12_381::Bls12>>> {
    let id = match kind {
        TaskKind::WindowPost => lode_proofs::circuit::post::PostKind::Window.params_id(size),
        TaskKind::WinningPost => lode_proofs::circuit::post::PostKind::Winning.params_id(size),
        _ => lode_proofs::circuit::porep::params_id(size),
    };
    let slot = {
        let mut slots = params.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(slots.entry((kind, size.bytes())).or_insert_with(|| {
            Arc::new(PorepParams::lazy(ParamStore::new(&config.params_dir), id))
        }))
    };
    slot.get()
}

/// A Window PoSt or Winning PoSt task (`kind`): the SNARK of its vanilla proofs (each decoded
/// strictly: a malformed one, or a count the circuit does not take, fails the task). The provider
/// verifies the proof before using it.
fn run_post(
    config: &WorkerConfig,
    params: &ParamSlots,
    claim: &Claimed,
    kind: lode_proofs::circuit::post::PostKind,
) -> ProviderResult<String> {
    let (input, size) = task_input(claim, |i: &PostInput| &i.size)?;
    let vanilla = input
        .vanilla
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let bytes = hex::decode(v)
                .map_err(|e| task_err(format!("task {} vanilla proof {i}: {e}", claim.id)))?;
            lode_proofs::post::SectorProof::from_bytes(&bytes)
                .map_err(|e| task_err(format!("task {} vanilla proof {i}: {e}", claim.id)))
        })
        .collect::<ProviderResult<Vec<_>>>()?;
    let loaded = params_for(config, params, claim.spec.kind, size)?;
    let mut rng = crate::prover::os_rng()?;
    let proof = lode_proofs::circuit::post::prove(&loaded, kind, size, &vanilla, &mut rng)
        .map_err(|e| task_err(format!("task {}: {e}", claim.id)))?;
    let out = SectorOutput {
        proof: Some(hex::encode(proof)),
        ..SectorOutput::default()
    };
    serde_json::to_string(&out).map_err(|e| task_err(e.to_string()))
}

/// A claimed task's input (JSON of the kind's own format) and the sector size it names.
fn task_input<T: serde::de::DeserializeOwned>(
    claim: &Claimed,
    size_of: impl Fn(&T) -> &str,
) -> ProviderResult<(T, SectorSize)> {
    let input: T = serde_json::from_str(&claim.spec.input)
        .map_err(|e| task_err(format!("task {} input: {e}", claim.id)))?;
    let size = size_of(&input)
        .parse()
        .map_err(|e| task_err(format!("task {} size: {e}", claim.id)))?;
    Ok((input, size))
}

/// Runs one task of `claim` (a sealing phase in `config.dir`, or a PoSt SNARK); its output as
/// JSON.
fn run_phase(
    config: &WorkerConfig,
    params: &ParamSlots,
    claim: &Claimed,
) -> ProviderResult<String> {
    match claim.spec.kind {
        TaskKind::WindowPost => {
            return run_post(
                config,
                params,
                claim,
                lode_proofs::circuit::post::PostKind::Window,
            );
        }
        TaskKind::WinningPost => {
            return run_post(
                config,
                params,
                claim,
                lode_proofs::circuit::post::PostKind::Winning,
            );
        }
        _ => {}
    }
    let (input, size) = task_input(claim, |i: &SectorInput| &i.size)?;
    let id = SectorId {
        size,
        miner_id: claim.spec.miner,
        sector_number: claim.spec.subject,
    };
    let path = sector_path(&config.dir, ActorId(claim.spec.miner), claim.spec.subject);
    let mut out = SectorOutput::default();
    match claim.spec.kind {
        TaskKind::PreCommit1 => {
            let ticket = node_hex(input.ticket.as_deref().unwrap_or_default(), "ticket")?;
            let dir = SectorDir::create(&path)?;
            let _lock = dir.lock()?;
            let pc1 = seal::pre_commit1(
                &dir,
                &id,
                randomness_node(ticket),
                &config.cache_dir,
                None,
                &mut no_progress,
            )?;
            out.comm_d = Some(hex::encode(pc1.comm_d.0.0));
        }
        TaskKind::PreCommit2 => {
            let dir = SectorDir::open(&path)?;
            let _lock = dir.lock()?;
            let pc2 = seal::pre_commit2_on(&dir, &id, None, &mut no_progress)?;
            out.comm_r = Some(hex::encode(pc2.comm_r.0.0));
        }
        TaskKind::Commit1 => {
            let seed = node_hex(input.seed.as_deref().unwrap_or_default(), "seed")?;
            let dir = SectorDir::open(&path)?;
            let _lock = dir.lock()?;
            seal::commit1(&dir, &id, randomness_node(seed))?;
        }
        TaskKind::Commit2 => {
            let dir = SectorDir::open(&path)?;
            let _lock = dir.lock()?;
            let loaded = params_for(config, params, TaskKind::Commit2, size)?;
            let mut rng = crate::prover::os_rng()?;
            let (_, proofs) = seal::commit2(&dir, &id, &loaded, &mut rng, &mut no_progress)?;
            out.proof = Some(hex::encode(proofs.concat()));
        }
        TaskKind::Finalize => {
            let dir = SectorDir::open(&path)?;
            let _lock = dir.lock()?;
            seal::finalize(&dir, &id, input.keep_unsealed)?;
        }
        other => return Err(task_err(format!("a worker does not run {other} tasks yet"))),
    }
    serde_json::to_string(&out).map_err(|e| task_err(e.to_string()))
}

/// The files Commit2 reads, fetched when it runs away from the sector's worker.
const COMMIT2_INPUTS: &[&str] = &[
    "sector.json",
    "pc1.json",
    "pc2.json",
    "commit1.json",
    "commit1.bin",
];

/// The files `kind` reads from its sector's directory when it runs away from the machine holding
/// them (`None` for a kind that never does): PreCommit1 a deal sector's packed data (from the
/// provider), PreCommit2 the layers and PreCommit1's records, Commit1 those and PreCommit2's
/// trees and replica, Commit2 Commit1's proofs.
pub fn fetched_inputs(kind: TaskKind, size: SectorSize) -> Option<Vec<String>> {
    let pc2: Vec<String> = ["sector.json", "pc1.json", "unsealed", "tree-d"]
        .iter()
        .map(|f| (*f).to_string())
        .chain((1..=size.layers()).map(|l| format!("layer-{l}")))
        .collect();
    match kind {
        TaskKind::PreCommit1 => Some(DEAL_DATA.iter().map(|f| (*f).to_string()).collect()),
        TaskKind::PreCommit2 => Some(pc2),
        TaskKind::Commit1 => Some(
            pc2.into_iter()
                .chain(
                    ["pc2.json", "columns", "tree-c", "sealed", "tree-r"]
                        .iter()
                        .map(|f| (*f).to_string()),
                )
                .collect(),
        ),
        TaskKind::Commit2 => Some(COMMIT2_INPUTS.iter().map(|f| (*f).to_string()).collect()),
        _ => None,
    }
}

/// A deal sector's packed data, which its PreCommit1 fetches from the provider.
const DEAL_DATA: &[&str] = &["sector.json", "unsealed"];

/// Whether a phase run here on fetched inputs leaves the sector here (PreCommit1 labels its
/// layers, PreCommit2 and Commit1 write its trees and replica: this worker holds its files from
/// then on), rather than only borrowing them (Commit2: the copy goes once the proof is out).
fn keeps_fetched(kind: TaskKind) -> bool {
    matches!(
        kind,
        TaskKind::PreCommit1 | TaskKind::PreCommit2 | TaskKind::Commit1
    )
}

/// Where a claimed task's inputs come from when they are not here.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    /// The worker of that name (its URL from the engine's registry).
    Worker(String),
    /// The provider's file server at that URL (a deal sector's packed data).
    Provider(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Worker(name) => f.write_str(name),
            Source::Provider(url) => f.write_str(url),
        }
    }
}

/// Where a claimed task fetches its inputs from: a deal sector's PreCommit1 from the provider's
/// `data`; a later phase from the input's `from`, unless that is this worker (the files are
/// here).
fn fetched_from(config: &WorkerConfig, claim: &Claimed) -> Option<Source> {
    let input = || serde_json::from_str::<SectorInput>(&claim.spec.input).ok();
    match claim.spec.kind {
        TaskKind::PreCommit1 => input()?.data.map(Source::Provider),
        TaskKind::PreCommit2 | TaskKind::Commit1 | TaskKind::Commit2 => input()?
            .from
            .filter(|f| *f != config.name)
            .map(Source::Worker),
        _ => None,
    }
}

/// Before a phase that runs away from its sector's files: fetches them from the worker holding
/// them (its URL from the engine).
///
/// The directory is marked a copy ([`FETCHED_MARK`], naming the task and the worker fetched
/// from) while the fetch and the phase run: a retry of the same task resumes the files fetched
/// so far; anything else found there (another task's copy, an older run's files) is deleted
/// first, so a phase never mixes files of two runs.
async fn fetch_inputs<E: TaskEngine>(
    engine: &E,
    config: &WorkerConfig,
    http: &reqwest::Client,
    claim: &Claimed,
) -> ProviderResult<()> {
    let Some(from) = fetched_from(config, claim) else {
        return Ok(());
    };
    let (_, size) = task_input(claim, |i: &SectorInput| &i.size)?;
    let files = fetched_inputs(claim.spec.kind, size).unwrap_or_default();
    let url = match &from {
        Source::Provider(url) => url.clone(),
        Source::Worker(name) => engine
            .workers()
            .await?
            .into_iter()
            .find(|w| w.info.name == *name)
            .and_then(|w| w.info.url)
            .ok_or_else(|| {
                task_err(format!(
                    "worker {name} holding sector {}'s files is not registered or serves no files",
                    claim.spec.subject
                ))
            })?,
    };
    let dir = sector_path(&config.dir, ActorId(claim.spec.miner), claim.spec.subject);
    let mark = format!("{from} {}", claim.id);
    let ours = std::fs::read_to_string(dir.join(FETCHED_MARK)).is_ok_and(|m| m == mark);
    if !ours && dir.exists() {
        tracing::info!(dir = %dir.display(), task = claim.id, "deleting an older copy of the sector before fetching its inputs");
        std::fs::remove_dir_all(&dir).map_err(|e| task_err(format!("{}: {e}", dir.display())))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| task_err(format!("{}: {e}", dir.display())))?;
    // Marks the directory a disposable copy (a restarted worker deletes those it finds).
    std::fs::write(dir.join(FETCHED_MARK), mark.as_bytes())
        .map_err(|e| task_err(format!("{}: {e}", dir.display())))?;
    let mut bytes = 0u64;
    for file in &files {
        bytes = bytes.saturating_add(
            crate::files::fetch(
                http,
                &url,
                &config.secret,
                claim.spec.miner,
                claim.spec.subject,
                file,
                &dir,
            )
            .await?,
        );
    }
    tracing::info!(task = claim.id, kind = %claim.spec.kind, from = %from, files = files.len(), bytes, "fetched the phase's inputs");
    Ok(())
}

/// The file marking a sector directory as a copy of inputs fetched from another worker.
const FETCHED_MARK: &str = "fetched-inputs";

/// At start: deletes the copies of fetched inputs a previous run left (its claims were given
/// back; a phase claimed again fetches them again).
fn drop_stale_copies(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.join(FETCHED_MARK).is_file() {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    tracing::info!(dir = %path.display(), "deleted the inputs a previous run fetched")
                }
                Err(e) => {
                    tracing::warn!(dir = %path.display(), error = %e, "cannot delete fetched inputs")
                }
            }
        }
    }
}

/// After a phase run on fetched inputs: a PreCommit2 or Commit1 that succeeded keeps the sector
/// here (the mark goes, before the result is reported: a crash in between leaves an unused copy,
/// never a missing one); otherwise the copy is deleted (a retry, here or elsewhere, fetches it
/// again).
fn settle_fetched_inputs(config: &WorkerConfig, claim: &Claimed, succeeded: bool) {
    if fetched_from(config, claim).is_none() {
        return;
    }
    let dir = sector_path(&config.dir, ActorId(claim.spec.miner), claim.spec.subject);
    if succeeded && keeps_fetched(claim.spec.kind) {
        if let Err(e) = std::fs::remove_file(dir.join(FETCHED_MARK)) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot unmark the sector's directory");
        }
        return;
    }
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot delete the fetched inputs")
        }
    }
}

/// Registers the worker and its storage path.
async fn register<E: TaskEngine>(
    engine: &E,
    config: &WorkerConfig,
    url: &Option<String>,
) -> ProviderResult<()> {
    engine
        .register(&WorkerInfo {
            name: config.name.clone(),
            resources: config.resources,
            kinds: config.kinds.clone(),
            url: url.clone(),
        })
        .await?;
    let fs = SystemProbe.filesystem(&config.dir).ok();
    engine
        .register_storage(&StoragePath {
            worker: config.name.clone(),
            path: config.dir.display().to_string(),
            available: fs.and_then(|f| f.available),
        })
        .await?;
    Ok(())
}

/// Runs the worker until `stop` completes, then releases its tasks.
pub async fn run_worker<E: TaskEngine + Clone + 'static>(
    engine: E,
    config: WorkerConfig,
    stop: impl Future<Output = ()>,
) -> ProviderResult<()> {
    std::fs::create_dir_all(&config.dir)
        .map_err(|e| task_err(format!("cannot create {}: {e}", config.dir.display())))?;
    let released = engine.release(&config.name).await?;
    if released > 0 {
        tracing::info!(
            tasks = released,
            "gave back what a previous run of this worker held"
        );
    }
    drop_stale_copies(&config.dir);
    let url = match config.listen {
        Some(addr) => {
            let app = crate::files::router(config.dir.clone(), config.secret.clone());
            let url = crate::files::serve(addr, app, config.url.clone()).await?;
            tracing::info!(%url, "serving sector files");
            Some(url)
        }
        None => None,
    };
    register(&engine, &config, &url).await?;
    tracing::info!(worker = %config.name, kinds = ?config.kinds, "worker registered");
    // Phases compute on as many threads as the cores this worker offers (a machine shared with
    // other work keeps the rest).
    let threads = usize::try_from(config.resources.cores.max(1)).unwrap_or(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("lode-worker-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| task_err(format!("cannot start the worker's {threads} threads: {e}")))?;
    let config = Arc::new(config);
    let params: Arc<ParamSlots> = Arc::new(Mutex::new(std::collections::HashMap::new()));
    let running = Arc::new(Mutex::new(Resources::ZERO));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();

    let http = reqwest::Client::new();
    let beat = {
        let (engine, config, url) = (engine.clone(), Arc::clone(&config), url.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(config.heartbeat).await;
                match engine.heartbeat(&config.name).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!("declared dead by the cluster: registering again");
                        if let Err(e) = register(&engine, &config, &url).await {
                            tracing::warn!(error = %e, "cannot register again");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                }
                if let Err(e) = engine.reclaim_dead(config.dead_after).await {
                    tracing::debug!(error = %e, "cannot look for dead workers");
                }
            }
        })
    };

    let work = async {
        loop {
            // Idle, a worker takes a task larger than itself (it runs alone, as the local
            // scheduler clamps one); busy, only what fits beside what runs.
            let room = {
                let used = running.lock().unwrap_or_else(|p| p.into_inner());
                if *used == Resources::ZERO {
                    Resources::UNLIMITED
                } else {
                    config.resources.minus(&used)
                }
            };
            let claimed = match engine.claim(&config.name, &config.kinds, &room).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "claim failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let Some(claim) = claimed else {
                tokio::select! {
                    () = engine.wait(Duration::from_secs(5)) => {}
                    _ = done_rx.recv() => {}
                }
                continue;
            };
            tracing::info!(task = claim.id, kind = %claim.spec.kind, sector = claim.spec.subject, attempt = claim.attempts, "task claimed");
            {
                let mut used = running.lock().unwrap_or_else(|p| p.into_inner());
                *used = used.plus(&claim.spec.resources);
            }
            let (engine, config, params, running, done_tx, http, pool) = (
                engine.clone(),
                Arc::clone(&config),
                Arc::clone(&params),
                Arc::clone(&running),
                done_tx.clone(),
                http.clone(),
                Arc::clone(&pool),
            );
            tokio::spawn(async move {
                let phase_claim = claim.clone();
                let phase_config = Arc::clone(&config);
                let result = match fetch_inputs(&engine, &config, &http, &claim).await {
                    Ok(()) => tokio::task::spawn_blocking(move || {
                        pool.install(|| run_phase(&phase_config, &params, &phase_claim))
                    })
                    .await
                    .unwrap_or_else(|e| Err(task_err(format!("the phase panicked: {e}")))),
                    Err(e) => Err(e),
                };
                let outcome = match result {
                    Ok(output) => Outcome::Done(output),
                    // A PoSt is not retried: the provider waiting for it proves it itself.
                    Err(e)
                        if claim.attempts < MAX_ATTEMPTS
                            && !claim.spec.kind.is_time_sensitive() =>
                    {
                        Outcome::Retry {
                            reason: e.to_string(),
                            after: RETRY_AFTER,
                        }
                    }
                    Err(e) => Outcome::Failed(e.to_string()),
                };
                // A phase run on fetched inputs: a Commit2 leaves nothing here whatever its
                // outcome; a PreCommit2 or Commit1 that succeeded keeps the sector here.
                settle_fetched_inputs(&config, &claim, matches!(outcome, Outcome::Done(_)));
                match engine.finish(&claim, &outcome).await {
                    Ok(()) => {
                        tracing::info!(task = claim.id, kind = %claim.spec.kind, sector = claim.spec.subject, outcome = ?outcome_name(&outcome), "task finished")
                    }
                    Err(e) => tracing::warn!(task = claim.id, error = %e, "result not written"),
                }
                {
                    let mut used = running.lock().unwrap_or_else(|p| p.into_inner());
                    *used = used.minus(&claim.spec.resources);
                }
                let _ = done_tx.send(());
            });
        }
    };
    tokio::select! {
        () = work => {}
        () = stop => {}
    }
    beat.abort();
    let released = engine.release(&config.name).await?;
    tracing::info!(
        tasks = released,
        "worker stopped; its tasks were given back"
    );
    Ok(())
}

fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Done(_) => "done",
        Outcome::Failed(_) => "failed",
        Outcome::Retry { .. } => "retry",
    }
}
