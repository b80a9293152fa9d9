//! The bridge from a job on chain to the executor: the canonical executor job every provider
//! derives the same way, the run, and the outputs archive that is served and checked.

use std::fs::File;
use std::path::{Path, PathBuf};

use lode_chain::actors::compute::{JobTerms, Verification as ChainVerification};
use lode_chain::types::{Address, TokenAmount};
use serde::{Deserialize, Serialize};

use super::{JobRunner, RunOutput, RunRequest};
use crate::compute::spec::{
    JOB_VERSION, Job, JobInput, JobLimits, JobPayment, ModuleHash, Verification,
};
use crate::compute::{Executor, Outcome, OutputBounds, hash_outputs};
use crate::error::{MarketError, MarketResult};

/// The executor's job for chain job `id`: a pure function of the id and the terms, so every
/// provider and every verifier runs the same job with the same seed. The name is empty, the
/// nonce is the chain's job id, inputs are sorted by mount path and the environment by name.
///
/// # Errors
/// [`MarketError`] when the terms do not make a valid executor job (the provider does not take it).
pub fn executor_job(id: u64, t: &JobTerms) -> MarketResult<Job> {
    let mut inputs: Vec<JobInput> = t
        .inputs
        .iter()
        .map(|i| JobInput {
            comm_p: i.piece_cid,
            payload_size: i.payload_size,
            path: i.mount.clone(),
        })
        .collect();
    inputs.sort_by(|a, b| a.path.cmp(&b.path));
    let mut env = t.env.clone();
    env.sort();
    let (verification, verifier_fee) = match &t.verification {
        ChainVerification::Replicated { k } => (
            Verification::Replicated {
                k: u8::try_from(*k).map_err(|_| MarketError::Config(format!("{k} replicas")))?,
                providers: t.providers.clone(),
            },
            TokenAmount::ZERO,
        ),
        ChainVerification::Verifier { verifier, fee, .. } => (
            Verification::Verifier {
                verifier: Address::Id(*verifier),
                provider: t.providers.first().copied(),
            },
            *fee,
        ),
    };
    let job = Job {
        version: JOB_VERSION,
        name: String::new(),
        nonce: id,
        module: ModuleHash(t.module),
        entrypoint: t.entrypoint.clone(),
        args: t.args.clone(),
        env,
        inputs,
        outputs: Vec::new(),
        limits: JobLimits {
            fuel: t.limits.fuel,
            memory_pages: t.limits.memory_pages,
            timeout_ms: t.limits.timeout_ms,
            output_bytes: t.limits.output_bytes,
            output_entries: t.limits.output_entries,
        },
        verification,
        payment: JobPayment {
            per_provider: t.payment,
            collateral: t.provider_collateral,
            verifier_fee,
            deadline: t.deadline,
        },
    };
    job.validate()?;
    Ok(job)
}

/// How a run ended, served beside its outputs (`GET /job/<id>/outcome`) so that a client can
/// recompute the result hash from the archive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The chain's job id.
    pub job_id: u64,
    /// How the job ended.
    pub outcome: Outcome,
    /// The result hash, hex.
    #[serde(with = "lode_node::rpc::types::serde_hex::hash")]
    pub result: [u8; 32],
}

/// The file name of [`RunRecord`] beside `outputs.tar`.
pub const OUTCOME_FILE: &str = "outcome.json";

/// Runs jobs with the deterministic executor.
pub struct ExecutorRunner {
    executor: Executor,
}

impl ExecutorRunner {
    /// A runner with its own executor (engine, module cache, epoch thread).
    ///
    /// # Errors
    /// The engine cannot be built.
    pub fn new() -> MarketResult<Self> {
        Ok(ExecutorRunner {
            executor: Executor::new()?,
        })
    }
}

impl JobRunner for ExecutorRunner {
    fn run(&self, r: &RunRequest) -> MarketResult<RunOutput> {
        let job = executor_job(r.job_id, &r.terms)?;
        let mut payloads: Vec<&Path> = Vec::with_capacity(job.inputs.len());
        for input in &job.inputs {
            let Some((_, path)) = r.inputs.iter().find(|(m, _)| *m == input.path) else {
                return Err(MarketError::Config(format!(
                    "no payload for input {:?}",
                    input.path
                )));
            };
            payloads.push(path.as_path());
        }
        let run_dir = r.work.join("run");
        let report = self.executor.run(&job, &r.module, &payloads, &run_dir)?;
        let archive = r.work.join("outputs.tar");
        let outputs = report.outcome.exited().then_some(report.outputs.as_path());
        write_archive(outputs, &archive)?;
        let record = RunRecord {
            job_id: r.job_id,
            outcome: report.outcome,
            result: report.result.0,
        };
        let json = serde_json::to_vec_pretty(&record)
            .map_err(|e| MarketError::Config(format!("outcome record: {e}")))?;
        let path = r.work.join(OUTCOME_FILE);
        std::fs::write(&path, json).map_err(crate::error::io_at(&path))?;
        let summary = match &report.detail {
            Some(d) => format!("{:?}: {d}", report.outcome),
            None => format!("{:?}", report.outcome),
        };
        Ok(RunOutput {
            result: report.result.0,
            summary,
        })
    }
}

/// Every regular file under `dir`, as (path relative to `dir` with `/`, path on disk), sorted
/// bytewise by the relative path.
fn files_under(dir: &Path) -> MarketResult<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), dir.to_path_buf())];
    while let Some((prefix, d)) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(crate::error::io_at(&d))? {
            let entry = entry.map_err(crate::error::io_at(&d))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let kind = entry
                .file_type()
                .map_err(crate::error::io_at(&entry.path()))?;
            if kind.is_dir() {
                stack.push((rel, entry.path()));
            } else if kind.is_file() {
                out.push((rel, entry.path()));
            }
        }
    }
    out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(out)
}

/// Writes `outputs` (or nothing) as a deterministic tar: regular files only, sorted, mode 0644,
/// owner 0, time 0.
///
/// # Errors
/// [`MarketError::Io`].
pub fn write_archive(outputs: Option<&Path>, archive: &Path) -> MarketResult<()> {
    let file = File::create(archive).map_err(crate::error::io_at(archive))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    tar.mode(tar::HeaderMode::Deterministic);
    if let Some(dir) = outputs {
        for (rel, path) in files_under(dir)? {
            let mut f = File::open(&path).map_err(crate::error::io_at(&path))?;
            tar.append_file(&rel, &mut f)
                .map_err(crate::error::io_at(archive))?;
        }
    }
    let inner = tar.into_inner().map_err(crate::error::io_at(archive))?;
    let file = inner
        .into_inner()
        .map_err(|e| crate::error::io_at(archive)(e.into_error()))?;
    file.sync_all().map_err(crate::error::io_at(archive))
}

/// Unpacks an outputs archive into `dir` (which must not exist) and recomputes the result hash
/// for `outcome`: what a client checks against the final result on chain.
///
/// # Errors
/// [`MarketError`] for an unreadable archive, an entry that is not a regular file or leaves the
/// directory, or outputs over `bounds`.
pub fn check_archive(
    archive: &Path,
    dir: &Path,
    outcome: Outcome,
    bounds: OutputBounds,
) -> MarketResult<[u8; 32]> {
    if dir.exists() {
        return Err(MarketError::OutputExists(dir.to_path_buf()));
    }
    std::fs::create_dir_all(dir).map_err(crate::error::io_at(dir))?;
    let file = File::open(archive).map_err(crate::error::io_at(archive))?;
    let mut tar = tar::Archive::new(std::io::BufReader::new(file));
    for entry in tar.entries().map_err(crate::error::io_at(archive))? {
        let mut entry = entry.map_err(crate::error::io_at(archive))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(MarketError::LimitExceeded(
                "the outputs archive holds something other than regular files".into(),
            ));
        }
        // `unpack_in` refuses paths that leave `dir`.
        let inside = entry.unpack_in(dir).map_err(crate::error::io_at(archive))?;
        if !inside {
            return Err(MarketError::LimitExceeded(
                "an outputs archive entry points outside its directory".into(),
            ));
        }
    }
    let (hash, _) = hash_outputs(outcome, Some(dir), bounds)?;
    Ok(hash.0)
}
