//! [`JobService`]: the provider's compute-job loop.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lode_chain::actors::compute::{ComputeMethod, commitment};
use lode_chain::types::{ActorId, Address, DealId, Epoch};
use lode_node::rpc::types::{DealView, JobView, VerificationView};
use lode_proofs::cid::PieceCid;
use lode_proofs::node::Node;

use super::modules::ModuleStore;
use super::records::{JobPhase, JobRecord, JobRecords};
use super::{JobChain, JobRunner, JobSettings, RunRequest};
use crate::error::{MarketError, MarketResult, io_at};
use crate::retrieval::PieceSource;

/// The provider's compute-job service (see the [module docs](super)).
pub struct JobService<C: JobChain, R: JobRunner> {
    provider: ActorId,
    settings: JobSettings,
    dir: PathBuf,
    chain: C,
    runner: Arc<R>,
    pieces: Arc<dyn PieceSource>,
    modules: ModuleStore,
    records: JobRecords,
    /// Jobs being run right now (their records are left alone until the run ends).
    running: Arc<Mutex<BTreeSet<u64>>>,
    /// The lowest job id that may still be open: every job below it has settled (settled jobs
    /// never reopen), so each tick lists open jobs from here, not from job 0.
    scan_from: std::sync::atomic::AtomicU64,
    /// Test networks only: the jobs whose results the provider lies about (a tampered
    /// executor), so tests can show that the chain's rules catch it. Set from
    /// `LODE_TEST_TAMPER_JOB_RESULTS` ([`Tamper::from_env`]).
    tamper: Tamper,
}

/// The environment variable that makes a provider lie about job results (tests only).
pub const TAMPER_ENV: &str = "LODE_TEST_TAMPER_JOB_RESULTS";

/// Which results a test provider lies about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Tamper {
    /// None (every real provider).
    #[default]
    Never,
    /// Every job's.
    All,
    /// These jobs'.
    Jobs(BTreeSet<u64>),
}

impl Tamper {
    /// What [`TAMPER_ENV`]'s `value` asks of miner `provider`: empty, `1` or `all` lies about
    /// every job; otherwise a comma-separated list of `l0<miner>` (every job of that miner) and
    /// `l0<miner>:<job id>` (that job), entries for other miners ignored, so that one variable
    /// can be given to every process of a devnet.
    pub fn parse(provider: ActorId, value: &str) -> Tamper {
        let value = value.trim();
        if value.is_empty() || value == "1" || value == "all" {
            return Tamper::All;
        }
        let me = provider.to_string();
        let mut jobs = BTreeSet::new();
        for entry in value.split(',').map(str::trim) {
            let (miner, job) = match entry.split_once(':') {
                Some((m, j)) => (m, Some(j)),
                None => (entry, None),
            };
            if miner != me {
                continue;
            }
            match job.map(str::parse::<u64>) {
                None => return Tamper::All,
                Some(Ok(j)) => {
                    jobs.insert(j);
                }
                Some(Err(_)) => {
                    tracing::warn!(entry, "{TAMPER_ENV}: not l0<miner>:<job id>; ignored");
                }
            }
        }
        if jobs.is_empty() {
            Tamper::Never
        } else {
            Tamper::Jobs(jobs)
        }
    }

    /// Whether job `id`'s result is to be a lie.
    pub fn applies(&self, id: u64) -> bool {
        match self {
            Tamper::Never => false,
            Tamper::All => true,
            Tamper::Jobs(jobs) => jobs.contains(&id),
        }
    }
}

/// Why the provider does not take a job (logged at debug level).
fn refuse(why: impl Into<String>) -> MarketResult<Vec<DealId>> {
    Err(MarketError::Config(why.into()))
}

impl<C: JobChain, R: JobRunner> JobService<C, R> {
    /// The service of miner `provider`, its work under `dir` (the settings' `dir`, resolved).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        provider: ActorId,
        settings: JobSettings,
        dir: PathBuf,
        chain: C,
        runner: Arc<R>,
        pieces: Arc<dyn PieceSource>,
        modules: ModuleStore,
        records: JobRecords,
    ) -> Self {
        let tamper = match std::env::var(TAMPER_ENV) {
            Ok(v) => Tamper::parse(provider, &v),
            Err(_) => Tamper::Never,
        };
        if tamper != Tamper::Never {
            tracing::warn!(
                ?tamper,
                "{TAMPER_ENV} is set: this provider lies about job results (tests only)"
            );
        }
        JobService {
            provider,
            settings,
            dir,
            chain,
            runner,
            pieces,
            modules,
            records,
            running: Arc::new(Mutex::new(BTreeSet::new())),
            scan_from: std::sync::atomic::AtomicU64::new(0),
            tamper,
        }
    }

    /// Makes the provider lie about its results (tests of the slashing rules).
    pub fn set_tamper(&mut self, tamper: Tamper) {
        self.tamper = tamper;
    }

    /// The records.
    pub fn records(&self) -> &JobRecords {
        &self.records
    }

    /// Where job `id`'s inputs and work files are.
    pub fn job_dir(&self, id: u64) -> PathBuf {
        self.dir.join("work").join(id.to_string())
    }

    /// Where the outputs are served from (`<outputs>/<id>/outputs`, [`super::http`]).
    pub fn outputs_dir(&self) -> PathBuf {
        self.dir.join("outputs")
    }

    /// Runs [`JobService::tick`] every `every` until `stop` fires.
    pub async fn run(
        self: Arc<Self>,
        every: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "compute jobs: tick failed; will retry");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// One pass: takes the open jobs it may take, and moves each of its jobs one step on.
    ///
    /// # Errors
    /// The chain or the records failing; each job's own trouble is recorded in its record.
    pub async fn tick(self: &Arc<Self>) -> MarketResult<()> {
        let head = self.chain.head().await?;
        let mut mine: BTreeMap<u64, JobRecord> = self
            .records
            .list()?
            .into_iter()
            .map(|r| (r.job_id, r))
            .collect();
        if self.settings.enabled {
            use std::sync::atomic::Ordering;
            let listed = self
                .chain
                .open_jobs(self.scan_from.load(Ordering::Relaxed))
                .await?;
            if let Some(lowest) = listed.iter().map(|j| j.job_id).min() {
                self.scan_from.fetch_max(lowest, Ordering::Relaxed);
            }
            let open: Vec<JobView> = listed
                .into_iter()
                .filter(|j| !mine.contains_key(&j.job_id))
                .collect();
            // The deals are read only when there is a job to weigh.
            let deals = if open.is_empty() {
                Vec::new()
            } else {
                self.chain.provider_deals(self.provider).await?
            };
            for job in open {
                if mine.contains_key(&job.job_id) {
                    continue;
                }
                match self.eligible(&job, head, &deals) {
                    Ok(deal_ids) => match self.accept(&job, deal_ids, head).await {
                        Ok(r) => {
                            mine.insert(r.job_id, r);
                        }
                        Err(e) => {
                            tracing::warn!(job = job.job_id, error = %e, "accepting a compute job failed");
                        }
                    },
                    Err(why) => {
                        tracing::debug!(job = job.job_id, %why, "compute job not taken");
                    }
                }
            }
        }
        for (_, r) in mine {
            if r.phase.is_final() || self.is_running(r.job_id) {
                continue;
            }
            let id = r.job_id;
            if let Err(e) = self.advance(r, head).await {
                tracing::warn!(job = id, error = %e, "compute job step failed; will retry");
            }
        }
        Ok(())
    }

    fn is_running(&self, id: u64) -> bool {
        self.running.lock().map(|s| s.contains(&id)).unwrap_or(true)
    }

    /// The deal backing each input, if the provider may and can take `job`.
    fn eligible(
        &self,
        job: &JobView,
        head: Epoch,
        deals: &[DealView],
    ) -> MarketResult<Vec<DealId>> {
        let s = &self.settings;
        let t = &job.terms;
        let me = self.provider.to_string();
        if job.state != "open" {
            return refuse("not open");
        }
        if t.providers.is_empty() {
            if !s.accept_unnamed {
                return refuse("names no provider, and this provider takes only jobs that name it");
            }
        } else if !t.providers.contains(&me) {
            return refuse("names other providers");
        }
        let replicas = match &t.verification {
            VerificationView::Replicated { k } => *k,
            VerificationView::Verifier { verifier, .. } => {
                if job.verifier.is_none() {
                    return refuse("its verifier has not accepted yet");
                }
                if !s.trusted_verifiers.is_empty()
                    && !s.trusted_verifiers.contains(&verifier.to_string())
                {
                    return refuse(format!("verifier {verifier} is not trusted"));
                }
                1
            }
        };
        if job.slots.len() as u64 >= replicas {
            return refuse("all slots taken");
        }
        if job.slots.iter().any(|sl| sl.provider == self.provider) {
            return refuse("already accepted");
        }
        if head.saturating_add(s.min_lead_epochs) >= t.deadline {
            return refuse(format!("deadline {} is too close", t.deadline));
        }
        let l = &t.limits;
        if l.fuel > s.max_fuel
            || l.memory_pages > s.max_memory_pages
            || l.output_bytes > s.max_output_bytes
            || l.timeout_ms > s.max_timeout_ms
        {
            return refuse("its limits are above this provider's");
        }
        if t.payment < s.min_payment {
            return refuse(format!("payment {} below {}", t.payment, s.min_payment));
        }
        if t.provider_collateral > s.max_collateral {
            return refuse(format!(
                "collateral {} above {}",
                t.provider_collateral, s.max_collateral
            ));
        }
        let terms = t.to_terms().map_err(MarketError::Config)?;
        if let Err(e) = super::runner::executor_job(job.job_id, &terms) {
            return refuse(format!("not a job this executor runs: {e}"));
        }
        if !self.modules.has(&t.module) {
            return refuse(format!(
                "module {} has not been uploaded here",
                hex::encode(t.module)
            ));
        }
        let mut ids = Vec::with_capacity(t.inputs.len());
        for input in &t.inputs {
            let Some(d) = deals.iter().find(|d| {
                d.piece_cid == input.piece_cid
                    && d.piece_size == input.piece_size
                    && d.activation_epoch.is_some()
                    && d.end_epoch > job.settle_epoch
            }) else {
                return refuse(format!(
                    "no active deal of its own holds {}",
                    input.piece_cid
                ));
            };
            ids.push(d.deal_id);
        }
        Ok(ids)
    }

    async fn accept(
        &self,
        job: &JobView,
        deals: Vec<DealId>,
        head: Epoch,
    ) -> MarketResult<JobRecord> {
        let mut salt = [0u8; 32];
        getrandom::fill(&mut salt)
            .map_err(|e| MarketError::Config(format!("no randomness: {e}")))?;
        let record = JobRecord {
            job_id: job.job_id,
            phase: JobPhase::Accepting,
            replicated: matches!(job.terms.verification, VerificationView::Replicated { .. }),
            deadline: job.terms.deadline,
            salt,
            result: None,
            summary: None,
            message: None,
            sent_at: Some(head),
            note: None,
        };
        let checks = deals.len();
        let method = ComputeMethod::AcceptJob {
            job: job.job_id,
            provider: Address::Id(self.provider),
            deals,
        };
        let sent = self
            .send(record, method, job.terms.provider_collateral, checks)
            .await?;
        tracing::info!(
            job = job.job_id,
            "compute job accepted (collateral {})",
            job.terms.provider_collateral
        );
        Ok(sent)
    }

    /// Sends `method` for `record` (already in the phase the message starts), recording the
    /// signed message before it is pushed.
    async fn send(
        &self,
        record: JobRecord,
        method: ComputeMethod,
        value: lode_chain::types::TokenAmount,
        checks: usize,
    ) -> MarketResult<JobRecord> {
        let records = self.records.clone();
        let mut r = record;
        let saved = Arc::new(Mutex::new(None));
        let saved_in = saved.clone();
        self.chain
            .send(
                method,
                value,
                checks,
                Box::new(move |m| {
                    r.message = Some(m.clone());
                    records.put(&r)?;
                    if let Ok(mut s) = saved_in.lock() {
                        *s = Some(r);
                    }
                    Ok(())
                }),
            )
            .await?;
        let out = saved.lock().ok().and_then(|mut s| s.take());
        out.ok_or_else(|| MarketError::Config("the message was pushed without its record".into()))
    }

    /// Whether the record's message landed: `Some(Ok)` on success, `Some(Err(why))` on failure,
    /// `None` while not found (pushed again after `resend_after_epochs`).
    async fn landed(
        &self,
        r: &mut JobRecord,
        head: Epoch,
    ) -> MarketResult<Option<Result<(), String>>> {
        let Some(m) = r.message.clone() else {
            return Ok(Some(Ok(())));
        };
        if let Some(found) = self.chain.search(m.id()).await? {
            return Ok(Some(if found.receipt.exit_code == 0 {
                Ok(())
            } else {
                Err(found.receipt.error.clone())
            }));
        }
        if r.sent_at
            .is_none_or(|at| head >= at.saturating_add(self.settings.resend_after_epochs))
        {
            if let Err(e) = self.chain.push_again(m).await {
                tracing::debug!(job = r.job_id, error = %e, "pushing again");
            }
            r.sent_at = Some(head);
            self.records.put(r)?;
        }
        Ok(None)
    }

    fn fail(&self, mut r: JobRecord, why: impl Into<String>) -> MarketResult<()> {
        let why = why.into();
        tracing::warn!(job = r.job_id, %why, "compute job failed on this provider");
        r.phase = JobPhase::Failed;
        r.message = None;
        r.note = Some(why);
        self.records.put(&r)
    }

    fn set(&self, mut r: JobRecord, phase: JobPhase) -> MarketResult<()> {
        r.phase = phase;
        r.message = None;
        self.records.put(&r)
    }

    /// Moves one job one step.
    async fn advance(self: &Arc<Self>, mut r: JobRecord, head: Epoch) -> MarketResult<()> {
        let settled = match self.chain.job(r.job_id).await? {
            Some(j) if j.state != "open" => Some(j),
            Some(_) => None,
            None => return self.fail(r, "the chain has no such job"),
        };
        if let Some(j) = settled {
            // The chain's word is final; say how it went for this provider.
            let me = self.provider.to_string();
            let paid = j
                .settlement
                .as_ref()
                .is_some_and(|s| s.paid.iter().any(|(who, _)| *who == me));
            let slashed = j
                .settlement
                .as_ref()
                .is_some_and(|s| s.slashed.iter().any(|(who, _)| *who == me));
            r.note = Some(format!(
                "job {}{}{}",
                j.state,
                if paid { "; paid" } else { "" },
                if slashed { "; collateral slashed" } else { "" }
            ));
            if slashed {
                tracing::warn!(
                    job = r.job_id,
                    "compute job settled: this provider's collateral was slashed"
                );
            } else {
                tracing::info!(job = r.job_id, paid, "compute job settled");
            }
            return self.set(r, JobPhase::Settled);
        }
        match r.phase {
            JobPhase::Accepting => match self.landed(&mut r, head).await? {
                Some(Ok(())) => self.set(r, JobPhase::Accepted),
                Some(Err(why)) => self.fail(r, format!("AcceptJob failed: {why}")),
                None if head > r.deadline => {
                    self.fail(r, "AcceptJob did not land before the deadline")
                }
                None => Ok(()),
            },
            JobPhase::Accepted => {
                if head > r.deadline {
                    return self.fail(r, "the job could not be run before its deadline");
                }
                self.start_run(r);
                Ok(())
            }
            JobPhase::Ran => {
                let Some(result) = r.result else {
                    return self.set(r, JobPhase::Accepted);
                };
                if head > r.deadline {
                    return self.fail(r, "the result was ready after the deadline");
                }
                let job = r.job_id;
                let provider = Address::Id(self.provider);
                let (method, next) = if r.replicated {
                    let c = commitment(&result, self.provider, &r.salt);
                    (
                        ComputeMethod::CommitResult {
                            job,
                            provider,
                            commitment: c,
                        },
                        JobPhase::Committing,
                    )
                } else {
                    (
                        ComputeMethod::PostResult {
                            job,
                            provider,
                            result,
                        },
                        JobPhase::Posting,
                    )
                };
                r.phase = next;
                r.sent_at = Some(head);
                self.send(r, method, lode_chain::types::TokenAmount::ZERO, 0)
                    .await?;
                Ok(())
            }
            JobPhase::Committing => match self.landed(&mut r, head).await? {
                Some(Ok(())) => self.set(r, JobPhase::Committed),
                Some(Err(why)) => self.fail(r, format!("CommitResult failed: {why}")),
                None => Ok(()),
            },
            JobPhase::Committed => {
                if head <= r.deadline {
                    return Ok(());
                }
                let Some(result) = r.result else {
                    return self.fail(r, "committed without a result on record");
                };
                let method = ComputeMethod::RevealResult {
                    job: r.job_id,
                    provider: Address::Id(self.provider),
                    result,
                    salt: r.salt,
                };
                r.phase = JobPhase::Revealing;
                r.sent_at = Some(head);
                self.send(r, method, lode_chain::types::TokenAmount::ZERO, 0)
                    .await?;
                Ok(())
            }
            JobPhase::Revealing | JobPhase::Posting => match self.landed(&mut r, head).await? {
                Some(Ok(())) => self.set(r, JobPhase::Submitted),
                Some(Err(why)) => self.fail(r, format!("sending the result failed: {why}")),
                None => Ok(()),
            },
            JobPhase::Submitted | JobPhase::Settled | JobPhase::Failed => Ok(()),
        }
    }

    /// Runs the job off the runtime; its record moves to `Ran` when done.
    fn start_run(self: &Arc<Self>, r: JobRecord) {
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        if !running.insert(r.job_id) {
            return;
        }
        drop(running);
        let this = self.clone();
        tokio::spawn(async move {
            let id = r.job_id;
            let job = this.chain.job(id).await;
            let outcome = match job {
                Ok(Some(j)) => {
                    let this2 = this.clone();
                    tokio::task::spawn_blocking(move || this2.run_blocking(&j))
                        .await
                        .map_err(|e| MarketError::Config(format!("the run panicked: {e}")))
                        .and_then(|x| x)
                }
                Ok(None) => Err(MarketError::Config("the chain has no such job".into())),
                Err(e) => Err(e),
            };
            let mut r = r;
            match outcome {
                Ok((result, summary)) => {
                    let result = if this.tamper.applies(id) {
                        *blake3::hash(&[&result[..], b"tampered"].concat()).as_bytes()
                    } else {
                        result
                    };
                    tracing::info!(job = id, %summary, result = %hex::encode(result), "compute job ran");
                    r.result = Some(result);
                    r.summary = Some(summary);
                    r.phase = JobPhase::Ran;
                    if let Err(e) = this.records.put(&r) {
                        tracing::warn!(job = id, error = %e, "recording a job's result");
                    }
                }
                Err(e) => {
                    // Left in `Accepted`: the next tick runs it again (until the deadline).
                    tracing::warn!(job = id, error = %e, "running a compute job failed; will retry");
                }
            }
            if let Ok(mut s) = this.running.lock() {
                s.remove(&id);
            }
        });
    }

    /// Fetches the module and inputs and runs the job (blocking).
    fn run_blocking(&self, job: &JobView) -> MarketResult<([u8; 32], String)> {
        let terms = job
            .terms
            .to_terms()
            .map_err(|e| MarketError::Config(format!("job {}: {e}", job.job_id)))?;
        let module = self.modules.get(&terms.module)?.ok_or_else(|| {
            MarketError::Config(format!(
                "module {} is no longer stored",
                hex::encode(terms.module)
            ))
        })?;
        let work = self.job_dir(job.job_id);
        if work.exists() {
            std::fs::remove_dir_all(&work).map_err(io_at(&work))?;
        }
        let inputs_dir = work.join("inputs");
        std::fs::create_dir_all(&inputs_dir).map_err(io_at(&inputs_dir))?;
        let mut inputs = Vec::with_capacity(terms.inputs.len());
        for (i, input) in terms.inputs.iter().enumerate() {
            let cid = PieceCid::new(Node(input.piece_cid)).ok_or_else(|| {
                MarketError::Config(format!("input {:?} is not a piece commitment", input.mount))
            })?;
            let mut reader = self
                .pieces
                .open(&cid)?
                .ok_or_else(|| MarketError::Config(format!("piece {cid} is not held here")))?;
            let path = inputs_dir.join(format!("{i}.payload"));
            let mut file = std::fs::File::create(&path).map_err(io_at(&path))?;
            let len = input.payload_size;
            if reader.len() < len {
                return Err(MarketError::Config(format!(
                    "piece {cid} holds {} payload bytes here; the job mounts {len}",
                    reader.len()
                )));
            }
            let mut buf = vec![0u8; 1 << 20];
            let mut at = 0u64;
            while at < len {
                let want = usize::try_from(len.saturating_sub(at))
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                let part = buf.get_mut(..want).unwrap_or_default();
                let n = reader.read_at(at, part).map_err(io_at(&path))?;
                if n == 0 {
                    return Err(MarketError::Config(format!("piece {cid} ended early")));
                }
                let chunk = part.get(..n).unwrap_or_default();
                file.write_all(chunk).map_err(io_at(&path))?;
                at = at.saturating_add(n as u64);
            }
            file.sync_all().map_err(io_at(&path))?;
            inputs.push((input.mount.clone(), path));
        }
        let request = RunRequest {
            job_id: job.job_id,
            terms,
            module,
            inputs,
            work,
        };
        let out = self.runner.run(&request)?;
        let archive = request.work.join("outputs.tar");
        let served = self.outputs_dir().join(job.job_id.to_string());
        std::fs::create_dir_all(&served).map_err(io_at(&served))?;
        std::fs::rename(&archive, served.join("outputs")).map_err(io_at(&archive))?;
        let outcome = request.work.join(super::runner::OUTCOME_FILE);
        std::fs::rename(&outcome, served.join("outcome")).map_err(io_at(&outcome))?;
        Ok((out.result, out.summary))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tamper_variable_names_miners_and_jobs() {
        let me = ActorId(1002);
        assert_eq!(Tamper::parse(me, ""), Tamper::All);
        assert_eq!(Tamper::parse(me, "all"), Tamper::All);
        assert_eq!(Tamper::parse(me, "l01002"), Tamper::All);
        assert_eq!(Tamper::parse(me, "l01001"), Tamper::Never);
        assert_eq!(
            Tamper::parse(me, "l01001:0, l01002:3,l01002:x"),
            Tamper::Jobs([3].into())
        );
        let t = Tamper::parse(me, "l01002:1,l01002:4");
        assert!(t.applies(1) && t.applies(4) && !t.applies(0));
        assert!(!Tamper::Never.applies(0));
    }
}
