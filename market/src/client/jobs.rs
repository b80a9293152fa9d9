//! The client's and the verifier's side of compute jobs, as the `lode job` commands use it: a
//! job spec made into the chain's terms ([`job_terms`]), the providers that can run it (those
//! holding an active deal for every input, [`providers_storing`]), the module uploaded to them
//! ([`upload_module`]), the outputs downloaded and checked against the final result on chain
//! ([`fetch_result`]), and a verifier's re-execution from the pieces retrieved over HTTP
//! ([`fetch_inputs`], [`rerun`]).
//!
//! Nothing here trusts a provider: a module fetched is checked against its hash, an input piece
//! against its CommP ([`super::retrieve`]), and an outputs archive is unpacked with path checks
//! and hashed with the run's outcome; only a hash equal to the chain's final result is kept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cid::Cid;
use futures::StreamExt;
use lode_chain::actors::compute::{
    JobInput as ChainInput, JobLimits as ChainLimits, JobTerms, Verification as ChainVerification,
};
use lode_chain::policy::ComputePolicy;
use lode_chain::types::{ActorId, Epoch, TokenAmount};
use lode_node::rpc::types::{DealView, JobView, piece_cid_string};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::retrieve::{RetrieveRequest, retrieve};
use crate::compute::spec::{Job, Verification};
use crate::compute::{Outcome, OutputBounds};
use crate::error::{MarketError, MarketResult, io_at};
use crate::jobs::runner::{RunRecord, check_archive};
use crate::jobs::{ExecutorRunner, JobRunner, RunOutput, RunRequest};

/// The most bytes of a run's outcome record a client reads.
const MAX_OUTCOME_BYTES: u64 = 64 << 10;
/// How long an HTTP exchange with a provider may stall.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

fn job_err(why: impl Into<String>) -> MarketError {
    MarketError::Job(why.into())
}

/// The chain's terms of `job`: `piece_size` answers each input's padded piece size (from the
/// client's imports or deals); `verifier` is the verifier's account and bond in verifier mode.
///
/// # Errors
/// [`MarketError::Job`] when an input's piece size is unknown, or a verifier job comes without
/// its verifier's account (or a replicated one with one).
pub fn job_terms(
    job: &Job,
    piece_size: &mut dyn FnMut(&Cid) -> Option<u64>,
    verifier: Option<(ActorId, TokenAmount)>,
) -> MarketResult<JobTerms> {
    let mut inputs = Vec::with_capacity(job.inputs.len());
    for input in &job.inputs {
        let cid = input.piece_cid()?;
        let size = piece_size(&cid).ok_or_else(|| {
            job_err(format!(
                "the piece size of {cid} (mounted at /inputs/{}) is unknown: import the data with \
                 `lode client import` or make a deal for it first",
                input.path
            ))
        })?;
        inputs.push(ChainInput {
            piece_cid: input.comm_p,
            piece_size: size,
            payload_size: input.payload_size,
            mount: input.path.clone(),
        });
    }
    let (verification, providers) = match (&job.verification, verifier) {
        (Verification::Replicated { k, providers }, None) => (
            ChainVerification::Replicated { k: u64::from(*k) },
            providers.clone(),
        ),
        (Verification::Verifier { provider, .. }, Some((verifier, bond))) => (
            ChainVerification::Verifier {
                verifier,
                fee: job.payment.verifier_fee,
                bond,
            },
            provider.iter().copied().collect(),
        ),
        (Verification::Replicated { .. }, Some(_)) => {
            return Err(job_err("a replicated job has no verifier"));
        }
        (Verification::Verifier { .. }, None) => {
            return Err(job_err("a verifier job needs its verifier's account id"));
        }
    };
    let l = &job.limits;
    Ok(JobTerms {
        module: job.module.0,
        entrypoint: job.entrypoint.clone(),
        args: job.args.clone(),
        env: job.env.clone(),
        inputs,
        limits: ChainLimits {
            fuel: l.fuel,
            memory_pages: l.memory_pages,
            timeout_ms: l.timeout_ms,
            output_bytes: l.output_bytes,
            output_entries: l.output_entries,
        },
        payment: job.payment.per_provider,
        provider_collateral: job.payment.collateral,
        providers,
        verification,
        deadline: job.payment.deadline,
    })
}

/// The epoch a job with `terms` settles at under `policy` (its deadline plus the reveal or
/// dispute window): the deals backing its inputs must last past it.
pub fn settle_epoch(terms: &JobTerms, policy: &ComputePolicy) -> Epoch {
    let window = match terms.verification {
        ChainVerification::Replicated { .. } => policy.reveal_epochs,
        ChainVerification::Verifier { .. } => policy.dispute_epochs,
    };
    terms.deadline.saturating_add(window)
}

/// The providers among `deals` that hold an active deal for every input of `terms` lasting past
/// `until`: the ones that may accept the job. Sorted, each once.
pub fn providers_storing(deals: &[DealView], terms: &JobTerms, until: Epoch) -> Vec<ActorId> {
    let mut providers: Vec<ActorId> = deals.iter().map(|d| d.provider).collect();
    providers.sort();
    providers.dedup();
    providers.retain(|p| {
        terms.inputs.iter().all(|input| {
            let cid = piece_cid_string(&input.piece_cid);
            deals.iter().any(|d| {
                d.provider == *p
                    && d.piece_cid == cid
                    && d.piece_size == input.piece_size
                    && d.activation_epoch.is_some()
                    && d.end_epoch > until
            })
        })
    });
    providers
}

fn http() -> MarketResult<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(HTTP_TIMEOUT)
        .build()
        .map_err(|e| MarketError::Transfer(format!("HTTP client: {e}")))
}

fn url(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

/// Uploads `module` to the provider at `base_url` (`PUT /modules/<blake3 hex>`); `true` when
/// the provider stored it now, `false` when it held it already.
///
/// # Errors
/// [`MarketError::Transfer`] with the provider's answer when it refuses the module or cannot be
/// reached.
pub async fn upload_module(base_url: &str, module: &[u8]) -> MarketResult<bool> {
    let hash = blake3::hash(module);
    let to = url(base_url, &format!("/modules/{}", hash.to_hex()));
    let resp = http()?
        .put(&to)
        .body(module.to_vec())
        .send()
        .await
        .map_err(|e| MarketError::Transfer(format!("PUT {to}: {e}")))?;
    let status = resp.status();
    if status == reqwest::StatusCode::CREATED {
        return Ok(true);
    }
    if status == reqwest::StatusCode::OK {
        return Ok(false);
    }
    let body = resp.text().await.unwrap_or_default();
    Err(MarketError::Transfer(format!(
        "PUT {to}: {status}: {}",
        body.trim()
    )))
}

/// GETs `path` from `base_url`: the response of a successful request, else the status and the
/// body's reason as an error.
async fn get_ok(base_url: &str, path: &str) -> MarketResult<(String, reqwest::Response)> {
    let from = url(base_url, path);
    let resp = http()?
        .get(&from)
        .send()
        .await
        .map_err(|e| MarketError::Transfer(format!("GET {from}: {e}")))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(MarketError::Transfer(format!(
            "GET {from}: {status}: {}",
            body.trim()
        )));
    }
    Ok((from, resp))
}

/// GETs `path` from `base_url` into memory, refusing more than `max` bytes.
async fn get_bytes(base_url: &str, path: &str, max: u64) -> MarketResult<Vec<u8>> {
    let (from, resp) = get_ok(base_url, path).await?;
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| MarketError::Transfer(format!("GET {from}: {e}")))?;
        if (out.len() as u64).saturating_add(chunk.len() as u64) > max {
            return Err(MarketError::Transfer(format!(
                "GET {from}: the answer is over {max} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// GETs `path` from `base_url` into the file `to`, refusing more than `max` bytes.
async fn get_file(base_url: &str, path: &str, to: &Path, max: u64) -> MarketResult<u64> {
    let (from, resp) = get_ok(base_url, path).await?;
    let mut file = tokio::fs::File::create(to).await.map_err(io_at(to))?;
    let mut stream = resp.bytes_stream();
    let mut written: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| MarketError::Transfer(format!("GET {from}: {e}")))?;
        written = written.saturating_add(chunk.len() as u64);
        if written > max {
            return Err(MarketError::Transfer(format!(
                "GET {from}: the answer is over {max} bytes"
            )));
        }
        file.write_all(&chunk).await.map_err(io_at(to))?;
    }
    file.flush().await.map_err(io_at(to))?;
    Ok(written)
}

/// Fetches module `hash` from the provider at `base_url` (`GET /modules/<hex>`) and checks it
/// against the hash.
///
/// # Errors
/// [`MarketError::Transfer`]; [`MarketError::Job`] when the bytes are not the module.
pub async fn fetch_module(
    base_url: &str,
    hash: &[u8; 32],
    max_bytes: u64,
) -> MarketResult<Vec<u8>> {
    let bytes = get_bytes(
        base_url,
        &format!("/modules/{}", hex::encode(hash)),
        max_bytes,
    )
    .await?;
    if blake3::hash(&bytes).as_bytes() != hash {
        return Err(job_err(format!(
            "the module {base_url} sent does not hash to {}",
            hex::encode(hash)
        )));
    }
    Ok(bytes)
}

/// What [`fetch_result`] downloaded and checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckedResult {
    /// The job.
    pub job_id: u64,
    /// The provider it came from.
    pub provider: String,
    /// The final result on chain, which the outputs hash to (hex).
    pub result: String,
    /// How the run ended.
    pub outcome: Outcome,
    /// Where the outputs were written.
    pub out: PathBuf,
    /// Files written.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The bounds a job's outputs are checked under (its limits on chain).
pub fn output_bounds(terms: &JobTerms) -> OutputBounds {
    OutputBounds {
        max_bytes: terms.limits.output_bytes,
        max_entries: u64::from(terms.limits.output_entries),
    }
}

/// Downloads job `job`'s outputs from `provider`'s server at `base_url` (`GET /job/<id>/outcome`
/// and `/job/<id>/outputs`), checks that they and the run's outcome hash to the job's final
/// result on chain, and writes them at `out` (which must not exist). Nothing is left at `out`
/// unless they do.
///
/// # Errors
/// [`MarketError::Job`] when the job has no final result yet or the outputs do not hash to it;
/// [`MarketError::OutputExists`]; [`MarketError::Transfer`] for a provider that does not serve
/// them.
pub async fn fetch_result(
    base_url: &str,
    provider: ActorId,
    job: &JobView,
    out: &Path,
) -> MarketResult<CheckedResult> {
    let Some(result) = job.result else {
        return Err(job_err(format!(
            "job {} has no final result (state {}{}): `lode job status {}` shows where it stands",
            job.job_id,
            job.state,
            job.failure
                .as_deref()
                .map(|f| format!(": {f}"))
                .unwrap_or_default(),
            job.job_id
        )));
    };
    if std::fs::symlink_metadata(out).is_ok() {
        return Err(MarketError::OutputExists(out.to_path_buf()));
    }
    let terms = job.terms.to_terms().map_err(job_err)?;
    let bounds = output_bounds(&terms);
    let record = get_bytes(
        base_url,
        &format!("/job/{}/outcome", job.job_id),
        MAX_OUTCOME_BYTES,
    )
    .await?;
    let record: RunRecord = serde_json::from_slice(&record).map_err(|e| {
        job_err(format!(
            "provider {provider}'s outcome record of job {} is not valid: {e}",
            job.job_id
        ))
    })?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "outputs".into());
    let pid = std::process::id();
    let archive = parent.join(format!(".{name}.{pid}.tar.part"));
    let staging = parent.join(format!(".{name}.{pid}.part"));
    // A tar holds each file in 512-byte blocks after a 512-byte header (two with a long name),
    // and ends with two zero blocks.
    let max_archive = bounds
        .max_bytes
        .saturating_add(bounds.max_entries.saturating_add(2).saturating_mul(2048));
    let cleanup = |archive: &Path, staging: &Path| {
        // Best effort: leftovers are hidden `.part` names.
        let _ = std::fs::remove_file(archive);
        let _ = std::fs::remove_dir_all(staging);
    };
    let checked = async {
        get_file(
            base_url,
            &format!("/job/{}/outputs", job.job_id),
            &archive,
            max_archive,
        )
        .await?;
        let (a, s, outcome) = (archive.clone(), staging.clone(), record.outcome);
        tokio::task::spawn_blocking(move || check_archive(&a, &s, outcome, bounds))
            .await
            .map_err(|e| job_err(format!("checking the outputs stopped: {e}")))?
    }
    .await;
    let hash = match checked {
        Ok(h) => h,
        Err(e) => {
            cleanup(&archive, &staging);
            return Err(e);
        }
    };
    if hash != result {
        cleanup(&archive, &staging);
        return Err(job_err(format!(
            "the outputs provider {provider} serves for job {} hash to {}, not to the final result {}: \
             fetch them from another provider of the job",
            job.job_id,
            hex::encode(hash),
            hex::encode(result)
        )));
    }
    let (files, bytes) = count_files(&staging)?;
    let renamed = std::fs::rename(&staging, out).map_err(io_at(out));
    cleanup(&archive, &staging);
    renamed?;
    Ok(CheckedResult {
        job_id: job.job_id,
        provider: provider.to_string(),
        result: hex::encode(result),
        outcome: record.outcome,
        out: out.to_path_buf(),
        files,
        bytes,
    })
}

fn count_files(dir: &Path) -> MarketResult<(u64, u64)> {
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(io_at(&d))? {
            let entry = entry.map_err(io_at(&d))?;
            let meta = entry.metadata().map_err(io_at(&entry.path()))?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                files = files.saturating_add(1);
                bytes = bytes.saturating_add(meta.len());
            }
        }
    }
    Ok((files, bytes))
}

/// Retrieves every input piece of `terms` from the provider at `base_url` into `dir` (created;
/// each payload's CommP checked against its piece CID), as the (mount path, payload file) pairs a
/// [`RunRequest`] takes.
///
/// # Errors
/// What [`retrieve`] returns.
pub async fn fetch_inputs(
    base_url: &str,
    terms: &JobTerms,
    dir: &Path,
) -> MarketResult<Vec<(String, PathBuf)>> {
    std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    let mut inputs = Vec::with_capacity(terms.inputs.len());
    for (i, input) in terms.inputs.iter().enumerate() {
        let piece = lode_proofs::cid::PieceCid::new(lode_proofs::node::Node(input.piece_cid))
            .ok_or_else(|| job_err(format!("input {:?} has an invalid CommP", input.mount)))?;
        let path = dir.join(format!("input-{i}"));
        let mut req = RetrieveRequest::new(base_url, piece, &path);
        req.piece_size = Some(input.piece_size);
        req.payload_size = Some(input.payload_size);
        req.as_car = true;
        retrieve(&req, &mut |_, _| {}).await?;
        inputs.push((input.mount.clone(), path));
    }
    Ok(inputs)
}

/// Runs job `job_id` with `terms` and `module` on the `inputs` fetched, in `work` (created, empty
/// but for what [`fetch_inputs`] wrote): the result a verifier compares with the posted one.
/// Blocking.
///
/// # Errors
/// What the executor returns for a job it cannot run at all.
pub fn rerun(
    job_id: u64,
    terms: &JobTerms,
    module: Vec<u8>,
    inputs: Vec<(String, PathBuf)>,
    work: &Path,
) -> MarketResult<RunOutput> {
    std::fs::create_dir_all(work).map_err(io_at(work))?;
    ExecutorRunner::new()?.run(&RunRequest {
        job_id,
        terms: terms.clone(),
        module,
        inputs,
        work: work.to_path_buf(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::compute::spec::{JobSpec, ModuleHash};
    use crate::jobs::executor_job;

    const SPEC: &str = r#"
name: wc
engine: { type: wasm, module: "blake3:0000000000000000000000000000000000000000000000000000000000000001", args: [data], env: { B: "2", A: "1" } }
inputs:
  - piece: bagazrqabqkmmaajafzezga7v5unwfq7kuapz64x2nm332gzykbnoixnjwwsu2mgvyida
    path: /inputs/data
    payload_size: 219
resources: { fuel: 1000, memory: 1MiB, timeout: 5s, output: 4KiB }
verification: { replicated: { k: 3, providers: [l01001] } }
payment: { per_provider: "1 LODE", collateral: "2 LODE", deadline: 500 }
"#;

    fn job() -> Job {
        let spec = JobSpec::parse(SPEC).unwrap();
        spec.to_job(ModuleHash([1; 32]), &mut |_| None).unwrap()
    }

    #[test]
    fn terms_carry_the_job_and_give_the_same_executor_job_back() {
        let job = job();
        let terms = job_terms(&job, &mut |_| Some(256), None).unwrap();
        assert_eq!(terms.inputs[0].piece_size, 256);
        assert_eq!(terms.inputs[0].payload_size, 219);
        assert_eq!(terms.providers, vec![ActorId(1001)]);
        assert_eq!(terms.escrow(), Some(TokenAmount::tokens(3)));
        let back = executor_job(7, &terms).unwrap();
        // What the chain does not carry: the name, the nonce (the chain's id), the result paths.
        assert_eq!(back.nonce, 7);
        assert_eq!(
            (
                &back.module,
                &back.args,
                &back.env,
                &back.inputs,
                back.limits
            ),
            (&job.module, &job.args, &job.env, &job.inputs, job.limits)
        );
        assert_eq!(back.verification, job.verification);
        assert_eq!(back.payment, job.payment);
    }

    #[test]
    fn unknown_piece_sizes_and_missing_verifiers_are_refused() {
        let job = job();
        let e = job_terms(&job, &mut |_| None, None).unwrap_err();
        assert!(e.to_string().contains("piece size"), "{e}");
        let e = job_terms(
            &job,
            &mut |_| Some(256),
            Some((ActorId(9), TokenAmount::ZERO)),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no verifier"), "{e}");
    }

    fn deal(provider: u64, piece: &str, active: bool, end: Epoch) -> DealView {
        DealView {
            deal_id: provider,
            piece_cid: piece.into(),
            piece_size: 256,
            verified: false,
            client: ActorId(100),
            provider: ActorId(provider),
            label: String::new(),
            start_epoch: 10,
            end_epoch: end,
            price_per_epoch: TokenAmount::ZERO,
            provider_collateral: TokenAmount::ZERO,
            client_collateral: TokenAmount::ZERO,
            state: "active".into(),
            sector: None,
            activation_epoch: active.then_some(12),
            paid_until: 0,
            allocation: None,
        }
    }

    #[test]
    fn only_providers_with_active_lasting_deals_for_every_input_may_run_a_job() {
        let terms = job_terms(&job(), &mut |_| Some(256), None).unwrap();
        let piece = piece_cid_string(&terms.inputs[0].piece_cid);
        let deals = vec![
            deal(1001, &piece, true, 10_000),
            deal(1002, &piece, false, 10_000),
            deal(1003, &piece, true, 510),
            deal(1004, "baga-other", true, 10_000),
            deal(1005, &piece, true, 10_000),
        ];
        assert_eq!(
            providers_storing(&deals, &terms, 520),
            vec![ActorId(1001), ActorId(1005)]
        );
    }
}
