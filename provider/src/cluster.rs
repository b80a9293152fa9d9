//! Sealing a sector across a cluster's workers, and the cluster's status.
//!
//! [`seal_sector`] drives one committed-capacity sector through the task engine: PreCommit1 on
//! any worker that takes it, then PreCommit2 and Commit1 bound to the worker holding the layers
//! when it runs them, else on a worker of the kind that fetches them ([`placement`]), then
//! Commit2 on any worker (it fetches its small inputs from the sector's worker), each queued once
//! the one before has finished, its output read from the history.
//! It is what `lode cluster seal` runs; the sealing pipeline's phases take the same tasks.

use std::time::Duration;

use lode_proofs::sector::SectorSize;
use serde::{Deserialize, Serialize};

use crate::engine::{StoragePath, TaskEngine, TaskKind, TaskPhase, TaskRow, TaskSpec, WorkerRow};
use crate::error::ProviderResult;
use crate::pipeline::RetryPolicy;
use crate::worker::{SectorInput, SectorOutput, task_err};

/// What sealing a sector across the cluster produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSector {
    /// The miner actor.
    pub miner: u64,
    /// The sector number.
    pub sector: u64,
    /// CommD, hex.
    pub comm_d: String,
    /// CommR, hex.
    pub comm_r: String,
    /// The Groth16 PoRep proof, hex.
    pub proof: String,
    /// The worker holding the sector's files.
    pub worker: String,
    /// Each phase's task: kind, id, the worker that finished it, claims.
    pub tasks: Vec<PhaseTask>,
}

/// One phase's task, as [`seal_sector`] saw it finish.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseTask {
    /// Its kind.
    pub kind: TaskKind,
    /// Its id.
    pub id: u64,
    /// The worker that finished it.
    pub worker: String,
    /// Claims it took.
    pub attempts: u32,
}

/// The cluster as `lode cluster status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The registered workers.
    pub workers: Vec<WorkerRow>,
    /// Unfinished tasks, then the newest finished ones.
    pub tasks: Vec<TaskRow>,
    /// The workers' storage paths.
    pub storage: Vec<StoragePath>,
    /// How many sector copies each worker holds (the sector location index), by name.
    #[serde(default)]
    pub held: std::collections::BTreeMap<String, u64>,
}

impl ClusterStatus {
    /// The sector copies worker `name` holds.
    pub fn held_by(&self, name: &str) -> u64 {
        self.held.get(name).copied().unwrap_or(0)
    }
}

/// Reads the cluster's status (`history` finished tasks at most).
pub async fn status<E: TaskEngine>(engine: &E, history: usize) -> ProviderResult<ClusterStatus> {
    Ok(ClusterStatus {
        workers: engine.workers().await?,
        tasks: engine.tasks(history).await?,
        storage: engine.storage().await?,
        held: engine.held().await?.into_iter().collect(),
    })
}

/// Where a `kind` phase reading the files of a sector held by `holder` runs, given the registered
/// `workers`: bound to the holder when it runs `kind` (`(Some(holder), None)`), else on any worker
/// of the kind, which fetches the files from the holder first (`(None, Some(holder))`).
pub fn placement(
    workers: &[WorkerRow],
    kind: TaskKind,
    holder: &str,
) -> (Option<String>, Option<String>) {
    let runs_it = workers
        .iter()
        .any(|w| w.info.name == holder && w.info.kinds.contains(&kind));
    if runs_it {
        (Some(holder.to_string()), None)
    } else {
        (None, Some(holder.to_string()))
    }
}

/// Queues `kind` for the sector and waits for it to finish (polling its row every `poll`).
async fn run_task<E: TaskEngine>(
    engine: &E,
    spec: TaskSpec,
    poll: Duration,
) -> ProviderResult<(SectorOutput, PhaseTask)> {
    let kind = spec.kind;
    let id = engine.enqueue(&spec).await?.id();
    tracing::info!(task = id, %kind, sector = spec.subject, at = ?spec.at, "task queued");
    loop {
        let row = engine
            .task(id)
            .await?
            .ok_or_else(|| task_err(format!("task {id} vanished from the cluster database")))?;
        match row.phase {
            TaskPhase::Done => {
                let output: SectorOutput =
                    serde_json::from_str(row.output.as_deref().unwrap_or("{}"))
                        .map_err(|e| task_err(format!("task {id}'s output: {e}")))?;
                let worker = row
                    .worker
                    .ok_or_else(|| task_err(format!("task {id} finished with no worker")))?;
                return Ok((
                    output,
                    PhaseTask {
                        kind,
                        id,
                        worker,
                        attempts: row.attempts,
                    },
                ));
            }
            TaskPhase::Failed => {
                return Err(task_err(format!(
                    "{kind} of sector {} failed after {} claims: {}",
                    spec.subject,
                    row.attempts,
                    row.error.unwrap_or_default()
                )));
            }
            TaskPhase::Queued | TaskPhase::Running => tokio::time::sleep(poll).await,
        }
    }
}

/// Seals committed-capacity sector `sector` of `miner` across the cluster with `ticket` and
/// `seed` (32 bytes each), checking each output is there.
pub async fn seal_sector<E: TaskEngine>(
    engine: &E,
    miner: u64,
    sector: u64,
    size: SectorSize,
    ticket: [u8; 32],
    seed: [u8; 32],
) -> ProviderResult<SealedSector> {
    let poll = Duration::from_millis(200);
    let spec = |kind: TaskKind, input: SectorInput, at: Option<String>| TaskSpec {
        miner,
        kind,
        subject: sector,
        resources: kind.details(size, RetryPolicy::default()).resources,
        input: serde_json::to_string(&input).unwrap_or_default(),
        at,
    };
    let plain = SectorInput {
        size: size.to_string(),
        ticket: None,
        seed: None,
        from: None,
        version: None,
        keep_unsealed: false,
        data: None,
    };
    let mut tasks = Vec::new();
    let (pc1, t) = run_task(
        engine,
        spec(
            TaskKind::PreCommit1,
            SectorInput {
                ticket: Some(hex::encode(ticket)),
                ..plain.clone()
            },
            None,
        ),
        poll,
    )
    .await?;
    let mut worker = t.worker.clone();
    tasks.push(t);
    let (at, from) = placement(&engine.workers().await?, TaskKind::PreCommit2, &worker);
    let (pc2, t) = run_task(
        engine,
        spec(
            TaskKind::PreCommit2,
            SectorInput {
                from,
                ..plain.clone()
            },
            at,
        ),
        poll,
    )
    .await?;
    // The sector lives where PreCommit2 ran (it fetched the layers there if it had to).
    worker.clone_from(&t.worker);
    tasks.push(t);
    let (at, from) = placement(&engine.workers().await?, TaskKind::Commit1, &worker);
    let commit1 = SectorInput {
        seed: Some(hex::encode(seed)),
        from,
        ..plain.clone()
    };
    let (_, t) = run_task(engine, spec(TaskKind::Commit1, commit1, at), poll).await?;
    worker.clone_from(&t.worker);
    tasks.push(t);
    // Commit2 runs on any worker that takes it (a GPU machine): its inputs are small and are
    // fetched from the worker holding the sector.
    let commit2 = SectorInput {
        from: Some(worker.clone()),
        ..plain
    };
    let (c2, t) = run_task(engine, spec(TaskKind::Commit2, commit2, None), poll).await?;
    tasks.push(t);
    let missing = |what: &str| task_err(format!("the cluster's {what} output is missing"));
    Ok(SealedSector {
        miner,
        sector,
        comm_d: pc1.comm_d.ok_or_else(|| missing("PreCommit1"))?,
        comm_r: pc2.comm_r.ok_or_else(|| missing("PreCommit2"))?,
        proof: c2.proof.ok_or_else(|| missing("Commit2"))?,
        worker,
        tasks,
    })
}
