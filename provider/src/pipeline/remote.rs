//! The pipeline's sealing phases on a cluster's workers (`[cluster] db` of the provider's config).
//!
//! A committed-capacity sector sealed on the cluster goes through the same states as one sealed
//! here; only where its phases run changes:
//!
//! - each sealing phase (PreCommit1, PreCommit2, Commit1, Commit2) is a task of the cluster's
//!   engine, its input carrying the sector's record version ([`SectorInput::version`]); the
//!   pipeline follows the sector's newest task of that kind ([`TaskEngine::latest`]) and applies
//!   its output only while the record is still at that version (the record's compare-and-swap
//!   is the fence; the engine's claim token fences the workers among themselves);
//! - PreCommit1 runs on any worker; PreCommit2 and Commit1 are bound to that worker, where the
//!   layers are (its finished PreCommit1 task is the sector's location); Commit2 runs on any
//!   worker, which fetches its small inputs from there, and its proof comes back in the task's
//!   output and is written to the sector's scratch directory here, as a local Commit2 would;
//! - Finalize runs here: it fetches the sector's long-term files (the replica, tree R, the
//!   phases' records) from the worker, with resume and BLAKE3 checks, moves them into the
//!   sector store like a local Finalize, then asks the worker to delete its copy.
//!
//! A deal sector is sealed on the cluster too when this provider serves its sealing scratch to
//! the workers (`[cluster] files_listen`, [`ClusterLink::with_data_url`]) and keeps its sealed
//! sectors itself (not `store_on_workers`: retrievals read the unsealed copy here). Packing
//! writes the sector's data here as for a local seal; its PreCommit1 task names this provider's
//! file server ([`SectorInput::data`]), from which the worker fetches the data (resumed and
//! checked by BLAKE3) before labelling; the CommD it returns is checked against the deals' before
//! the pre-commit, as a local one is. Finalize keeps this provider's own unsealed copy.
//!
//! Deal sectors without such a file server, and sectors whose PreCommit1 began here (before the
//! cluster was configured), are sealed here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lode_proofs::circuit::post::PostKind;
use lode_proofs::node::Node;
use lode_proofs::post::SectorProof;
use lode_proofs::sector::SectorSize;
use lode_sealing::sector_dir::SectorDir;

use super::runner::{Pipeline, Step};
use super::state::{Event, SectorState};
use super::store::{SectorChain, SectorKind, SectorRecord};
use crate::api::NodeApi;
use crate::engine::{AnyEngine, TaskEngine, TaskKind, TaskPhase, TaskRow, TaskSpec, WorkerRow};
use crate::error::{ProviderError, ProviderResult};
use crate::prover::{RemoteSectors, RemoteSnarks};
use crate::worker::{SectorInput, SectorOutput};

/// The files of a sealed sector that Finalize brings from the worker into the sector store (its
/// proof, `commit2.bin`, is here already). `pc1.json` comes last: until it is here the sector
/// counts as the cluster's ([`Pipeline::sealed_remotely`]), so a Finalize interrupted halfway
/// fetches the rest when it runs again.
pub const FINALIZED_FILES: &[&str] = &["sector.json", "pc2.json", "tree-r", "sealed"];

/// The pipeline's link to a cluster: the engine its phases are queued on, and the secret the
/// workers' file servers ask for.
#[derive(Debug)]
pub struct ClusterLink {
    engine: AnyEngine,
    secret: String,
    http: reqwest::Client,
    lost_after: Duration,
    store_on_workers: bool,
    /// This provider's file server, serving its sealing scratch to the workers (deal sectors'
    /// data): `None` seals deal sectors here.
    data_url: Option<String>,
    /// Since when each worker holding a sector's files has been seen unregistered.
    missing: Mutex<HashMap<String, Instant>>,
}

/// How long a worker holding sectors' files may stay unregistered before the files count as lost
/// ([`ClusterLink::with_lost_after`]; `[cluster] lost_after_secs`).
pub const DEFAULT_LOST_AFTER: Duration = Duration::from_secs(1800);

impl ClusterLink {
    /// A link through `engine`, fetching sector files with `secret`.
    pub fn new(engine: AnyEngine, secret: String) -> ClusterLink {
        ClusterLink {
            engine,
            secret,
            http: reqwest::Client::new(),
            lost_after: DEFAULT_LOST_AFTER,
            store_on_workers: false,
            data_url: None,
            missing: Mutex::new(HashMap::new()),
        }
    }

    /// The same link, a holder's files counting as lost once it has been unregistered for
    /// `after` (a sector whose layers are lost is sealed again from PreCommit1).
    pub fn with_lost_after(mut self, after: Duration) -> ClusterLink {
        self.lost_after = after;
        self
    }

    /// The same link, sealed sectors kept on the workers that sealed them (`[cluster]
    /// store_on_workers`): Finalize runs there, and the provider proves them through those
    /// workers ([`ClusterSectors`]) instead of bringing them into its store.
    pub fn with_store_on_workers(mut self, on_workers: bool) -> ClusterLink {
        self.store_on_workers = on_workers;
        self
    }

    /// The same link, deal sectors sealed on the cluster too: `url` is this provider's file
    /// server ([`crate::files::read_only_router`] over its sealing scratch), from which their
    /// PreCommit1 workers fetch the data packed here. Ignored with `store_on_workers` (a deal
    /// sector's unsealed copy must end here, where retrievals read it).
    pub fn with_data_url(mut self, url: Option<String>) -> ClusterLink {
        self.data_url = url;
        self
    }

    /// Whether deal sectors are sealed on the cluster ([`Self::with_data_url`]).
    pub fn seals_deals(&self) -> bool {
        self.data_url.is_some() && !self.store_on_workers
    }

    /// The engine.
    pub fn engine(&self) -> &AnyEngine {
        &self.engine
    }

    /// Where worker `name` stands as the holder of a sector's files, from the registered
    /// `workers`: registered (and forgotten as missing), or unregistered since when this link
    /// first saw it so.
    fn standing<'a>(&self, workers: &'a [WorkerRow], name: &str) -> Standing<'a> {
        let mut missing = self.missing.lock().unwrap_or_else(|p| p.into_inner());
        match workers.iter().find(|w| w.info.name == name) {
            Some(w) => {
                missing.remove(name);
                Standing::Registered(w)
            }
            None => {
                let since = *missing.entry(name.to_string()).or_insert_with(Instant::now);
                let gone = since.elapsed();
                if gone >= self.lost_after {
                    Standing::Lost(gone)
                } else {
                    Standing::Missing(gone)
                }
            }
        }
    }
}

/// How long the prover waits for a worker's vanilla proof.
pub const VANILLA_TIMEOUT: Duration = Duration::from_secs(30);

/// The sectors a cluster's workers hold, for the prover ([`RemoteSectors`]): a sector's vanilla
/// proof is asked of the worker holding it (where its newest sealing phase ran), which proves it
/// from its files ([`crate::files::vanilla`]).
#[derive(Debug)]
pub struct ClusterSectors {
    link: Arc<ClusterLink>,
    miner: u64,
    handle: tokio::runtime::Handle,
}

impl ClusterSectors {
    /// The sectors of `miner` on `link`'s cluster, asked from blocking threads of `handle`'s
    /// runtime.
    pub fn new(link: Arc<ClusterLink>, miner: u64, handle: tokio::runtime::Handle) -> Self {
        ClusterSectors {
            link,
            miner,
            handle,
        }
    }
}

/// Vanilla proofs asked of the cluster's workers at once (over all workers).
pub const VANILLA_IN_FLIGHT: usize = 16;

impl ClusterSectors {
    /// Sector `n`'s vanilla proof from `holder` (registered at `url`, if it is).
    async fn ask(
        &self,
        n: u64,
        holder: &str,
        url: Option<&str>,
        randomness: &Node,
        challenges: usize,
    ) -> Result<SectorProof, String> {
        let link = &self.link;
        let Some(url) = url else {
            return Err(format!(
                "worker {holder}, which holds it, is not registered or serves no files (is it running, with --listen?)"
            ));
        };
        let asked = crate::files::vanilla(
            &link.http,
            url,
            &link.secret,
            self.miner,
            n,
            randomness,
            challenges,
        );
        match tokio::time::timeout(VANILLA_TIMEOUT, asked).await {
            Ok(Ok(proof)) => Ok(proof),
            Ok(Err(ProviderError::Fetch(why))) => Err(format!(
                "worker {holder}, which holds it, did not prove it (is it running?): {why}"
            )),
            Ok(Err(e)) => Err(format!("worker {holder}: {e}")),
            Err(_) => Err(format!(
                "worker {holder} did not prove it within {} s",
                VANILLA_TIMEOUT.as_secs()
            )),
        }
    }
}

impl RemoteSectors for ClusterSectors {
    fn vanilla(
        &self,
        n: u64,
        randomness: &Node,
        challenges: usize,
    ) -> Option<Result<SectorProof, String>> {
        self.vanilla_many(&[n], randomness, challenges)
            .into_iter()
            .next()
            .flatten()
    }

    /// One query of the location index and one of the workers for all of `sectors`, then at most
    /// [`VANILLA_IN_FLIGHT`] requests at a time, each within [`VANILLA_TIMEOUT`].
    fn vanilla_many(
        &self,
        sectors: &[u64],
        randomness: &Node,
        challenges: usize,
    ) -> Vec<Option<Result<SectorProof, String>>> {
        use futures::StreamExt;
        let link = &self.link;
        self.handle.block_on(async {
            let looked_up = async {
                let locations = link
                    .engine
                    .locations(self.miner, Some(sectors))
                    .await
                    .map_err(engine_err)?;
                let workers = link.engine.workers().await.map_err(engine_err)?;
                Ok::<_, ProviderError>((locations, workers))
            };
            let (locations, workers) = match looked_up.await {
                Ok(found) => found,
                Err(e) => return sectors.iter().map(|_| Some(Err(e.to_string()))).collect(),
            };
            // Each sector's newest holder (the index lists it first).
            let mut holder: HashMap<u64, &str> = HashMap::new();
            for l in &locations {
                holder.entry(l.sector).or_insert(l.worker.as_str());
            }
            let url = |name: &str| {
                workers
                    .iter()
                    .find(|w| w.info.name == name)
                    .and_then(|w| w.info.url.as_deref())
            };
            futures::stream::iter(sectors.iter().map(|n| {
                let found = holder.get(n).copied();
                async move {
                    let holder = found?;
                    Some(
                        self.ask(*n, holder, url(holder), randomness, challenges)
                            .await,
                    )
                }
            }))
            .buffered(VANILLA_IN_FLIGHT)
            .collect()
            .await
        })
    }
}

/// How long the provider waits for each kind of PoSt SNARK made by the cluster's workers; a kind
/// without a wait is always proven by the provider.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PostWaits {
    /// A Window PoSt partition's (`wdpost` workers).
    pub window: Option<Duration>,
    /// A Winning PoSt's (`wnpost` workers).
    pub winning: Option<Duration>,
}

/// A cluster's `wdpost` and `wnpost` workers, making the prover's PoSt SNARKs
/// ([`RemoteSnarks`]): the vanilla proofs go into a time-sensitive `WindowPost` or `WinningPost`
/// task, which a worker running that kind claims, proves, and finishes with the proof. Used only
/// for a kind with a wait ([`PostWaits`]) and while a worker running it is registered; a task
/// nobody finished within the wait is withdrawn (when still queued) and the provider proves it
/// itself.
#[derive(Debug)]
pub struct ClusterSnarks {
    link: Arc<ClusterLink>,
    miner: u64,
    handle: tokio::runtime::Handle,
    waits: PostWaits,
}

impl ClusterSnarks {
    /// `miner`'s SNARKs on `link`'s cluster, each waited for as `waits` says, from blocking
    /// threads of `handle`'s runtime.
    pub fn new(
        link: Arc<ClusterLink>,
        miner: u64,
        handle: tokio::runtime::Handle,
        waits: PostWaits,
    ) -> Self {
        ClusterSnarks {
            link,
            miner,
            handle,
            waits,
        }
    }

    async fn post_task(
        &self,
        kind: PostKind,
        subject: u64,
        size: SectorSize,
        vanilla: &[SectorProof],
    ) -> Option<Result<Vec<u8>, String>> {
        let (kind, within, poll) = match kind {
            PostKind::Window => (TaskKind::WindowPost, self.waits.window?, WINDOW_POLL),
            PostKind::Winning => (TaskKind::WinningPost, self.waits.winning?, WINNING_POLL),
        };
        let engine = &self.link.engine;
        let workers = match engine.workers().await {
            Ok(w) => w,
            Err(e) => return Some(Err(e.to_string())),
        };
        if !workers.iter().any(|w| w.info.kinds.contains(&kind)) {
            return None;
        }
        let input = crate::worker::PostInput {
            size: size.to_string(),
            vanilla: vanilla.iter().map(|v| hex::encode(v.to_bytes())).collect(),
        };
        let mut spec = TaskSpec::new(
            self.miner,
            kind,
            subject,
            kind.details(size, super::RetryPolicy::default()).resources,
        );
        spec.input = match serde_json::to_string(&input) {
            Ok(i) => i,
            Err(e) => return Some(Err(e.to_string())),
        };
        let id = match engine.enqueue(&spec).await {
            Ok(q) => q.id(),
            Err(e) => return Some(Err(e.to_string())),
        };
        let started = Instant::now();
        loop {
            match engine.task(id).await {
                Ok(Some(row)) if row.phase == TaskPhase::Done => {
                    let out: SectorOutput =
                        match serde_json::from_str(row.output.as_deref().unwrap_or("{}")) {
                            Ok(o) => o,
                            Err(e) => return Some(Err(format!("cluster task {id}'s output: {e}"))),
                        };
                    return Some(
                        hex::decode(out.proof.unwrap_or_default())
                            .map_err(|e| format!("cluster task {id}'s proof: {e}")),
                    );
                }
                Ok(Some(row)) if row.phase == TaskPhase::Failed => {
                    return Some(Err(format!(
                        "cluster task {id} failed on {}: {}",
                        row.worker.as_deref().unwrap_or("no worker"),
                        row.error.unwrap_or_default()
                    )));
                }
                Ok(Some(_)) => {}
                Ok(None) => return Some(Err(format!("cluster task {id} is gone"))),
                Err(e) => return Some(Err(e.to_string())),
            }
            if started.elapsed() >= within {
                let why = format!(
                    "no worker proved it within {:.1} s: the provider proved it",
                    within.as_secs_f64()
                );
                // Withdrawn when still queued; a worker running it finishes into the history.
                let _ = engine.cancel(id, &why).await;
                return Some(Err(format!("cluster task {id}: {why}")));
            }
            tokio::time::sleep(poll).await;
        }
    }
}

/// How often the provider looks at a Window PoSt task it waits for.
const WINDOW_POLL: Duration = Duration::from_millis(100);
/// How often it looks at a Winning PoSt task: the block waits for it, within its epoch.
const WINNING_POLL: Duration = Duration::from_millis(20);

impl RemoteSnarks for ClusterSnarks {
    fn post_snark(
        &self,
        kind: PostKind,
        subject: u64,
        size: SectorSize,
        vanilla: &[SectorProof],
    ) -> Option<Result<Vec<u8>, String>> {
        self.handle
            .block_on(self.post_task(kind, subject, size, vanilla))
    }
}

/// A holder of a sector's files, as the pipeline finds it.
enum Standing<'a> {
    /// Registered: alive, or restarted under its name.
    Registered(&'a WorkerRow),
    /// Unregistered for this long, less than the link's `lost_after`.
    Missing(Duration),
    /// Unregistered for this long, at least `lost_after`: its files count as lost.
    Lost(Duration),
}

/// Where a phase that reads a sector's files runs.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// Bound to the holder (it runs the phase's kind): no transfer.
    At(String),
    /// On any worker of the kind, which fetches the inputs from the holder first (the holder
    /// does not run the kind).
    From(String),
    /// Not now, for this reason.
    Wait(String),
    /// The holder is gone for good: its files are lost.
    Lost(String, Duration),
}

fn engine_err(e: crate::engine::EngineError) -> ProviderError {
    ProviderError::Engine(e)
}

fn failed(reason: impl Into<String>) -> Step {
    Step::Apply(
        Event::Failed {
            reason: reason.into(),
            retry: true,
        },
        None,
    )
}

fn node32(hex_str: Option<&str>, what: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(hex_str.unwrap_or_default())
        .map_err(|e| format!("the cluster's {what} is not hex: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("the cluster's {what} is {} bytes, not 32", bytes.len()))
}

/// The record version a task was queued for (none for a task queued by `lode cluster seal`).
fn queued_for(row: &TaskRow) -> Option<u64> {
    serde_json::from_str::<SectorInput>(&row.spec.input)
        .ok()
        .and_then(|i| i.version)
}

/// The workers holding a copy of sector `sector`'s files, where it is now first: the cluster's
/// sector location index ([`TaskEngine::locations`]), to which each phase that leaves the sector
/// on its worker (PreCommit1, PreCommit2 and Commit1, fetching the inputs there first when it ran
/// away from them, and Finalize on a worker that keeps it) adds its worker as the newest holder.
async fn holders(engine: &AnyEngine, miner: u64, sector: u64) -> ProviderResult<Vec<String>> {
    Ok(engine
        .locations(miner, Some(&[sector]))
        .await
        .map_err(engine_err)?
        .into_iter()
        .map(|l| l.worker)
        .collect())
}

/// The worker holding sector `sector`'s files now ([`holders`]' first).
async fn location(engine: &AnyEngine, miner: u64, sector: u64) -> ProviderResult<Option<String>> {
    Ok(holders(engine, miner, sector).await?.into_iter().next())
}

/// The input's `from` of a queued task.
fn fetched_from(row: &TaskRow) -> Option<String> {
    serde_json::from_str::<SectorInput>(&row.spec.input)
        .ok()
        .and_then(|i| i.from)
}

/// Asks each of `workers` to delete its copy of sector `n` (a failure is logged: the copy is only
/// wasted room).
async fn delete_copies(link: &ClusterLink, miner: u64, n: u64, workers: &[String]) {
    for worker in workers {
        let deleted = async {
            let url = worker_url(&link.engine, worker).await?;
            crate::files::remove(&link.http, &url, &link.secret, miner, n).await
        };
        match deleted.await {
            Ok(()) => {
                tracing::info!(sector = n, %worker, "the worker deleted its copy of the sector");
                forget(link, miner, n, worker).await;
            }
            Err(e) => {
                tracing::warn!(sector = n, %worker, error = %e, "the worker's copy of the sector stays (delete it by hand)")
            }
        }
    }
}

/// Removes `worker`'s copy of sector `n` from the location index (a failure is logged: the entry
/// only names a copy that is gone, which a later delete skips).
async fn forget(link: &ClusterLink, miner: u64, n: u64, worker: &str) {
    if let Err(e) = link.engine.forget_location(miner, n, Some(worker)).await {
        tracing::warn!(sector = n, %worker, error = %e, "cannot remove the deleted copy from the cluster's location index");
    }
}

/// The URL worker `name` serves its sector files at.
async fn worker_url(engine: &AnyEngine, name: &str) -> ProviderResult<String> {
    engine
        .workers()
        .await
        .map_err(engine_err)?
        .into_iter()
        .find(|w| w.info.name == name)
        .and_then(|w| w.info.url)
        .ok_or_else(|| {
            ProviderError::Fetch(format!(
                "worker {name} is not registered or serves no files (is it running, with --listen?)"
            ))
        })
}

impl<A: NodeApi> Pipeline<A> {
    /// The same pipeline, its committed-capacity sectors sealed on the cluster behind `link`.
    pub fn with_cluster(mut self, link: impl Into<Arc<ClusterLink>>) -> Self {
        self.cluster = Some(link.into());
        self
    }

    /// The cluster this pipeline seals on, if any.
    pub fn cluster(&self) -> Option<&ClusterLink> {
        self.cluster.as_deref()
    }

    /// Whether sector `n` is sealed on the cluster: there is one, it takes the sector's kind
    /// (deal sectors only with a file server here: [`ClusterLink::seals_deals`]), and no
    /// PreCommit1 began here.
    pub(super) fn sealed_remotely(&self, record: &SectorRecord) -> bool {
        let Some(link) = self.cluster.as_deref() else {
            return false;
        };
        if record.kind == SectorKind::Deals && !link.seals_deals() {
            return false;
        }
        let scratch = self.scratch_path(record.number);
        !scratch.join("pc1.json").exists() && !scratch.join("pc1-progress.json").exists()
    }

    /// The cluster task kind of `record`'s state when the cluster runs it now (PreCommit1 only
    /// with a fresh seal ticket: drawing one is a step here).
    pub(super) fn remote_kind(
        &self,
        record: &SectorRecord,
        ticket_fresh: bool,
    ) -> Option<TaskKind> {
        if !self.sealed_remotely(record) {
            return None;
        }
        match record.state() {
            SectorState::PreCommit1 if ticket_fresh => Some(TaskKind::PreCommit1),
            SectorState::PreCommit2 => Some(TaskKind::PreCommit2),
            SectorState::Commit1 => Some(TaskKind::Commit1),
            SectorState::Commit2 => Some(TaskKind::Commit2),
            SectorState::Finalize
                if self.cluster.as_deref().is_some_and(|l| l.store_on_workers) =>
            {
                Some(TaskKind::Finalize)
            }
            _ => None,
        }
    }

    /// Follows `record`'s `kind` task on the cluster: queues it for the record's version when
    /// there is none, waits while it is queued or runs, applies its outcome once it finished.
    ///
    /// PreCommit2 and Commit1 read the sector's files: they are queued bound to the worker
    /// holding them when it runs the kind, else unbound for a worker of the kind to fetch them
    /// ([`Route`]). A queued task whose route no longer holds (its worker stopped running the
    /// kind, or is gone) is withdrawn and queued again; so is a queued task for an older version
    /// of the record (its result would be dropped).
    pub(super) async fn remote_step(
        &self,
        record: &SectorRecord,
        kind: TaskKind,
    ) -> ProviderResult<Step> {
        let Some(link) = self.cluster.as_deref() else {
            return Ok(Step::Wait("no cluster".into()));
        };
        let miner = self.config.miner.0;
        let n = record.number;
        let location = match kind {
            TaskKind::PreCommit1 => None,
            _ => match location(&link.engine, miner, n).await? {
                Some(w) => Some(w),
                None => {
                    return Ok(failed(
                        "no worker of the cluster holds the sector's PreCommit1 output: sealing starts again",
                    ));
                }
            },
        };
        let route = match (&location, kind) {
            (Some(holder), TaskKind::PreCommit2 | TaskKind::Commit1 | TaskKind::Finalize) => {
                Some(self.route(link, kind, holder).await?)
            }
            _ => None,
        };
        let latest = link
            .engine
            .latest(miner, kind, n)
            .await
            .map_err(engine_err)?;
        if let Some(row) = latest {
            let current = queued_for(&row) == Some(record.version);
            let fits = |route: &Route| match route {
                Route::At(h) => row.spec.at.as_deref() == Some(h.as_str()),
                Route::From(h) => {
                    row.spec.at.is_none() && fetched_from(&row).as_deref() == Some(h.as_str())
                }
                Route::Wait(_) => true,
                Route::Lost(..) => false,
            };
            match row.phase {
                TaskPhase::Queued if current && route.as_ref().is_none_or(fits) => {
                    return Ok(Step::Wait(format!(
                        "cluster task {} ({kind}) waits for a worker{}",
                        row.id,
                        row.spec
                            .at
                            .as_deref()
                            .map(|w| format!(" (it runs on {w}, where the sector's files are)"))
                            .unwrap_or_default()
                    )));
                }
                TaskPhase::Queued => {
                    let why = if current {
                        "its route changed: the worker holding the sector's files is gone or no longer runs it"
                    } else {
                        "queued for an older version of the sector's record"
                    };
                    if !link.engine.cancel(row.id, why).await.map_err(engine_err)? {
                        return Ok(Step::Wait(format!(
                            "cluster task {} ({kind}) was claimed meanwhile",
                            row.id
                        )));
                    }
                    tracing::info!(sector = n, task = row.id, %kind, why, "cluster task withdrawn");
                }
                TaskPhase::Running if current => {
                    return Ok(Step::Wait(format!(
                        "cluster task {} ({kind}) runs on {}",
                        row.id,
                        row.worker.as_deref().unwrap_or("a worker")
                    )));
                }
                TaskPhase::Running => {
                    return Ok(Step::Wait(format!(
                        "an earlier cluster task {} ({kind}) of this sector has to finish first",
                        row.id
                    )));
                }
                TaskPhase::Done if current => {
                    if kind == TaskKind::Finalize {
                        self.after_remote_finalize(link, n).await;
                    }
                    return Ok(self.remote_done(record, kind, &row));
                }
                TaskPhase::Failed if current => {
                    return Ok(failed(format!(
                        "{kind} failed on the cluster after {} claims: {}",
                        row.attempts,
                        row.error.as_deref().unwrap_or("no reason given")
                    )));
                }
                TaskPhase::Done | TaskPhase::Failed => {}
            }
        }
        let (at, from) = match route {
            Some(Route::At(h)) => (Some(h), None),
            Some(Route::From(h)) => (None, Some(h)),
            Some(Route::Wait(why)) => return Ok(Step::Wait(why)),
            Some(Route::Lost(h, gone)) if kind == TaskKind::PreCommit2 => {
                return Ok(failed(format!(
                    "worker {h}, which held the sector's layers, has been gone for {} s: they count as lost, and sealing starts again from PreCommit1",
                    gone.as_secs()
                )));
            }
            Some(Route::Lost(h, gone)) => {
                return Ok(Step::Wait(format!(
                    "worker {h}, which holds the sector's sealed files, has been gone for {} s: start it again under its name (`lode worker run --name {h}`); the sector cannot be proven without them",
                    gone.as_secs()
                )));
            }
            // Commit2 runs anywhere, on inputs fetched from the holder.
            None => (None, location.filter(|_| kind == TaskKind::Commit2)),
        };
        let hex32 = |v: Option<[u8; 32]>| v.map(hex::encode);
        let input = SectorInput {
            size: self.config.size.to_string(),
            ticket: (kind == TaskKind::PreCommit1)
                .then(|| hex32(record.chain.ticket))
                .flatten(),
            seed: (kind == TaskKind::Commit1)
                .then(|| hex32(record.chain.seed))
                .flatten(),
            from,
            version: Some(record.version),
            keep_unsealed: kind == TaskKind::Finalize && self.config.keeps_unsealed(record.kind),
            data: (kind == TaskKind::PreCommit1 && record.kind == SectorKind::Deals)
                .then(|| link.data_url.clone())
                .flatten(),
        };
        if kind == TaskKind::PreCommit1 && input.ticket.is_none() {
            return Ok(Step::Wait("no seal ticket drawn yet".into()));
        }
        if kind == TaskKind::Commit1 && input.seed.is_none() {
            return Ok(failed("no seed recorded: wait for it again"));
        }
        let spec = TaskSpec {
            miner,
            kind,
            subject: n,
            resources: self.scheduler().details(kind).resources,
            input: serde_json::to_string(&input).map_err(|e| ProviderError::Task(e.to_string()))?,
            at,
        };
        let id = link.engine.enqueue(&spec).await.map_err(engine_err)?.id();
        tracing::info!(sector = n, task = id, %kind, at = ?spec.at, from = ?input.from, "phase queued on the cluster");
        Ok(Step::Wait(format!(
            "queued on the cluster as task {id} ({kind})"
        )))
    }

    /// Where a `kind` phase of a sector whose files `holder` has runs — the cost choice. On the
    /// holder when it runs `kind`: otherwise the phase moves the layers (11 times the sector's
    /// size for PreCommit2), so running where the files are wins whenever it is possible. Else
    /// on any worker of the kind, which fetches them from the holder (it must serve files).
    async fn route(
        &self,
        link: &ClusterLink,
        kind: TaskKind,
        holder: &str,
    ) -> ProviderResult<Route> {
        let workers = link.engine.workers().await.map_err(engine_err)?;
        Ok(match link.standing(&workers, holder) {
            Standing::Registered(w) if w.info.kinds.contains(&kind) => Route::At(holder.into()),
            // Finalize keeps the sector where it is: it never moves it.
            Standing::Registered(w) if w.info.url.is_some() && kind != TaskKind::Finalize => {
                Route::From(holder.into())
            }
            Standing::Registered(_) if kind == TaskKind::Finalize => Route::Wait(format!(
                "worker {holder} keeps the sector but does not run {kind} tasks: add {} to its --tasks",
                kind.flag()
            )),
            Standing::Registered(_) => Route::Wait(format!(
                "worker {holder} holds the sector's files but neither runs {kind} tasks nor serves files: add {} to its --tasks, or start it with --listen",
                kind.flag()
            )),
            Standing::Missing(gone) => Route::Wait(format!(
                "worker {holder}, which holds the sector's files, has not been registered for {} s (they count as lost after {} s)",
                gone.as_secs(),
                link.lost_after.as_secs()
            )),
            Standing::Lost(gone) => Route::Lost(holder.into(), gone),
        })
    }

    /// After a sector's Finalize on the worker holding it (`store_on_workers`): the other workers
    /// holding a copy delete theirs, and its scratch directory here (the Commit2 proof, sent
    /// already) goes. Failures are logged: they only waste room.
    async fn after_remote_finalize(&self, link: &ClusterLink, n: u64) {
        let miner = self.config.miner.0;
        let holders = match holders(&link.engine, miner, n).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(sector = n, error = %e, "cannot list the sector's copies");
                Vec::new()
            }
        };
        delete_copies(link, miner, n, holders.get(1..).unwrap_or_default()).await;
        let scratch = self.scratch_path(n);
        match std::fs::remove_dir_all(&scratch) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(sector = n, dir = %scratch.display(), error = %e, "cannot delete the sector's scratch directory")
            }
        }
        tracing::info!(sector = n, worker = ?holders.first(), "sector finalized on its worker, where it stays");
    }

    /// Before a sector is removed (`Removing`), or its files dropped once it is terminated:
    /// every worker of the cluster holding a copy deletes it. Failures are logged (an unreachable
    /// worker keeps an unused copy) and never hold the removal up.
    pub(super) async fn remove_remote_copies(&self, record: &SectorRecord) {
        let Some(link) = self.cluster.as_deref() else {
            return;
        };
        let (miner, n) = (self.config.miner.0, record.number);
        let holders = match holders(&link.engine, miner, n).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(sector = n, error = %e, "cannot list the sector's copies on the cluster");
                return;
            }
        };
        delete_copies(link, miner, n, &holders).await;
    }

    /// Whether a remote sector's layers are lost: no worker holds its PreCommit1 output, or the
    /// one holding it has been gone for the link's `lost_after` ([`Pipeline::step`] then seals it
    /// again from PreCommit1 rather than retrying PreCommit2).
    pub(super) async fn layers_lost(&self, record: &SectorRecord) -> ProviderResult<bool> {
        let Some(link) = self.cluster.as_deref() else {
            return Ok(false);
        };
        if !self.sealed_remotely(record) {
            return Ok(false);
        }
        let Some(holder) = location(&link.engine, self.config.miner.0, record.number).await? else {
            return Ok(true);
        };
        let workers = link.engine.workers().await.map_err(engine_err)?;
        let lost = matches!(link.standing(&workers, &holder), Standing::Lost(_));
        if lost {
            // The sector is sealed again elsewhere: the lost copy leaves the index (a worker
            // coming back with it later holds only a stale copy).
            forget(link, self.config.miner.0, record.number, &holder).await;
        }
        Ok(lost)
    }

    /// What a finished `kind` task's output does to `record`.
    fn remote_done(&self, record: &SectorRecord, kind: TaskKind, row: &TaskRow) -> Step {
        let out: SectorOutput = match serde_json::from_str(row.output.as_deref().unwrap_or("{}")) {
            Ok(o) => o,
            Err(e) => return failed(format!("cluster task {}'s output: {e}", row.id)),
        };
        let chain = record.chain.clone();
        let result = match kind {
            TaskKind::PreCommit1 => node32(out.comm_d.as_deref(), "CommD").map(|d| {
                Some(SectorChain {
                    comm_d: Some(d),
                    comm_r: None,
                    ..chain
                })
            }),
            TaskKind::PreCommit2 => node32(out.comm_r.as_deref(), "CommR").map(|r| {
                Some(SectorChain {
                    comm_r: Some(r),
                    ..chain
                })
            }),
            TaskKind::Commit2 => self
                .write_proof(record.number, out.proof.as_deref())
                .map(|()| None),
            _ => Ok(None),
        };
        match result {
            Ok(chain) => {
                tracing::info!(sector = record.number, task = row.id, %kind, worker = ?row.worker, "phase finished on the cluster");
                Step::Apply(Event::Done, chain.map(Box::new))
            }
            Err(e) => failed(e),
        }
    }

    /// Writes the Groth16 proof a cluster's Commit2 returned where a local Commit2 leaves it.
    fn write_proof(&self, n: u64, proof: Option<&str>) -> Result<(), String> {
        let bytes = hex::decode(proof.unwrap_or_default())
            .map_err(|e| format!("the cluster's proof is not hex: {e}"))?;
        let len = lode_proofs::snark::PROOF_LEN;
        if bytes.is_empty() || bytes.len() % len != 0 {
            return Err(format!(
                "the cluster's proof is {} bytes, not a whole number of {len}-byte proofs",
                bytes.len()
            ));
        }
        let dir = SectorDir::create(&self.scratch_path(n)).map_err(|e| e.to_string())?;
        lode_proofs::durable::write_atomic(&dir.commit2(), &bytes).map_err(|e| e.to_string())
    }

    /// Before a remote sector's Finalize (on a blocking thread): brings its long-term files from
    /// the worker holding them into its scratch directory here. `Ok(None)` when the sector is
    /// not on the cluster; otherwise every registered worker holding a copy, with its URL, to
    /// delete those once the sector is in the store.
    pub(super) fn fetch_finalized(
        link: &ClusterLink,
        handle: &tokio::runtime::Handle,
        miner: u64,
        n: u64,
        scratch: &std::path::Path,
        keep_unsealed: bool,
    ) -> ProviderResult<Option<Vec<(String, String)>>> {
        handle.block_on(async {
            let holders = holders(&link.engine, miner, n).await?;
            let Some(worker) = holders.first() else {
                return Ok(None);
            };
            let url = worker_url(&link.engine, worker).await?;
            std::fs::create_dir_all(scratch)
                .map_err(|e| ProviderError::Fetch(format!("{}: {e}", scratch.display())))?;
            let mut files: Vec<&str> = FINALIZED_FILES.to_vec();
            if keep_unsealed {
                files.push("unsealed");
            }
            files.push("pc1.json");
            let mut bytes = 0u64;
            for file in files {
                bytes = bytes.saturating_add(
                    crate::files::fetch(&link.http, &url, &link.secret, miner, n, file, scratch)
                        .await?,
                );
            }
            tracing::info!(sector = n, %worker, bytes, "fetched the sealed sector from its worker");
            let mut copies = vec![(worker.clone(), url)];
            for other in holders.iter().skip(1) {
                match worker_url(&link.engine, other).await {
                    Ok(url) => copies.push((other.clone(), url)),
                    Err(e) => {
                        tracing::warn!(sector = n, worker = %other, error = %e, "an earlier copy of the sector stays on that worker (delete it by hand)")
                    }
                }
            }
            Ok(Some(copies))
        })
    }

    /// After a remote sector's Finalize: each worker holding a copy deletes it (a failure is
    /// logged: the copy is only wasted room).
    pub(super) fn drop_remote_copies(
        link: &ClusterLink,
        handle: &tokio::runtime::Handle,
        miner: u64,
        n: u64,
        copies: &[(String, String)],
    ) {
        for (worker, url) in copies {
            match handle.block_on(crate::files::remove(
                &link.http,
                url,
                &link.secret,
                miner,
                n,
            )) {
                Ok(()) => {
                    tracing::info!(sector = n, %worker, "the worker deleted its copy of the sector");
                    handle.block_on(forget(link, miner, n, worker));
                }
                Err(e) => {
                    tracing::warn!(sector = n, %worker, error = %e, "the worker's copy of the sector stays (delete it by hand)")
                }
            }
        }
    }
}
