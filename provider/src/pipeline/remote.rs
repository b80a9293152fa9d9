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
//! Deal sectors, and sectors whose PreCommit1 began here (before the cluster was configured),
//! are sealed here.

use std::sync::Arc;

use lode_sealing::sector_dir::SectorDir;

use super::runner::{Pipeline, Step};
use super::state::{Event, SectorState};
use super::store::{SectorChain, SectorKind, SectorRecord};
use crate::api::NodeApi;
use crate::engine::{AnyEngine, TaskEngine, TaskKind, TaskPhase, TaskRow, TaskSpec};
use crate::error::{ProviderError, ProviderResult};
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
}

impl ClusterLink {
    /// A link through `engine`, fetching sector files with `secret`.
    pub fn new(engine: AnyEngine, secret: String) -> ClusterLink {
        ClusterLink {
            engine,
            secret,
            http: reqwest::Client::new(),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &AnyEngine {
        &self.engine
    }
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

/// The worker holding sector `sector`'s files: the one that finished its newest PreCommit1.
async fn location(engine: &AnyEngine, miner: u64, sector: u64) -> ProviderResult<Option<String>> {
    Ok(engine
        .latest(miner, TaskKind::PreCommit1, sector)
        .await
        .map_err(engine_err)?
        .filter(|r| r.phase == TaskPhase::Done)
        .and_then(|r| r.worker))
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
    pub fn with_cluster(mut self, link: ClusterLink) -> Self {
        self.cluster = Some(Arc::new(link));
        self
    }

    /// The cluster this pipeline seals on, if any.
    pub fn cluster(&self) -> Option<&ClusterLink> {
        self.cluster.as_deref()
    }

    /// Whether sector `n` is sealed on the cluster: there is one, it holds no deals, and no
    /// PreCommit1 began here.
    pub(super) fn sealed_remotely(&self, record: &SectorRecord) -> bool {
        if self.cluster.is_none() || record.kind != SectorKind::CommittedCapacity {
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
            _ => None,
        }
    }

    /// Follows `record`'s `kind` task on the cluster: queues it for the record's version when
    /// there is none, waits while it is queued or runs, applies its outcome once it finished.
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
        let latest = link
            .engine
            .latest(miner, kind, n)
            .await
            .map_err(engine_err)?;
        if let Some(row) = latest {
            let unfinished = matches!(row.phase, TaskPhase::Queued | TaskPhase::Running);
            if queued_for(&row) == Some(record.version) {
                return Ok(match row.phase {
                    TaskPhase::Queued => Step::Wait(format!(
                        "cluster task {} ({kind}) waits for a worker{}",
                        row.id,
                        row.spec
                            .at
                            .as_deref()
                            .map(|w| format!(" (it runs on {w}, where the sector's files are)"))
                            .unwrap_or_default()
                    )),
                    TaskPhase::Running => Step::Wait(format!(
                        "cluster task {} ({kind}) runs on {}",
                        row.id,
                        row.worker.as_deref().unwrap_or("a worker")
                    )),
                    TaskPhase::Done => self.remote_done(record, kind, &row),
                    TaskPhase::Failed => failed(format!(
                        "{kind} failed on the cluster after {} claims: {}",
                        row.attempts,
                        row.error.as_deref().unwrap_or("no reason given")
                    )),
                });
            }
            if unfinished {
                return Ok(Step::Wait(format!(
                    "an earlier cluster task {} ({kind}) of this sector has to finish first",
                    row.id
                )));
            }
        }
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
        let hex32 = |v: Option<[u8; 32]>| v.map(hex::encode);
        let input = SectorInput {
            size: self.config.size.to_string(),
            ticket: (kind == TaskKind::PreCommit1)
                .then(|| hex32(record.chain.ticket))
                .flatten(),
            seed: (kind == TaskKind::Commit1)
                .then(|| hex32(record.chain.seed))
                .flatten(),
            from: (kind == TaskKind::Commit2)
                .then(|| location.clone())
                .flatten(),
            version: Some(record.version),
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
            // PreCommit2 and Commit1 read the layers: they run where those are.
            at: matches!(kind, TaskKind::PreCommit2 | TaskKind::Commit1)
                .then_some(location)
                .flatten(),
        };
        let id = link.engine.enqueue(&spec).await.map_err(engine_err)?.id();
        tracing::info!(sector = n, task = id, %kind, at = ?spec.at, "phase queued on the cluster");
        Ok(Step::Wait(format!(
            "queued on the cluster as task {id} ({kind})"
        )))
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
    /// not on the cluster; otherwise the worker's name and URL, to delete its copy once the
    /// sector is in the store.
    pub(super) fn fetch_finalized(
        link: &ClusterLink,
        handle: &tokio::runtime::Handle,
        miner: u64,
        n: u64,
        scratch: &std::path::Path,
        keep_unsealed: bool,
    ) -> ProviderResult<Option<(String, String)>> {
        handle.block_on(async {
            let Some(worker) = location(&link.engine, miner, n).await? else {
                return Ok(None);
            };
            let url = worker_url(&link.engine, &worker).await?;
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
            Ok(Some((worker, url)))
        })
    }

    /// After a remote sector's Finalize: the worker deletes its copy (a failure is logged: the
    /// copy is only wasted room).
    pub(super) fn drop_remote_copy(
        link: &ClusterLink,
        handle: &tokio::runtime::Handle,
        miner: u64,
        n: u64,
        worker: &str,
        url: &str,
    ) {
        match handle.block_on(crate::files::remove(
            &link.http,
            url,
            &link.secret,
            miner,
            n,
        )) {
            Ok(()) => {
                tracing::info!(sector = n, %worker, "the worker deleted its copy of the sector")
            }
            Err(e) => {
                tracing::warn!(sector = n, %worker, error = %e, "the worker's copy of the sector stays (delete it by hand)")
            }
        }
    }
}
