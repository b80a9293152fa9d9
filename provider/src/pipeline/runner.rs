//! The pipeline's driver: it reads a sector's record, does the work of its state (a sealing phase
//! on a blocking thread, or one look at the chain and at most one message), and applies the
//! [`Event`] that came of it through the store, with the record's version as fencing token.
//!
//! **Sealing phases are scheduled tasks.** [`Pipeline::tick`] does not run the CPU-heavy phases
//! (PreCommit1, PreCommit2, Commit1, Commit2, Finalize) itself: it queues each as a task of the
//! provider's [`Scheduler`], starts on blocking threads the ones the scheduler admits (as many
//! sectors at once as the machine and the per-kind limits allow, behind any waiting PoSt), and
//! applies each result on a later tick through [`Scheduler::complete_sector`]: the task's record
//! and the sector's in one transaction, fenced by the task's claim token and the sector's
//! version. A phase still running when the daemon stops is lost with it and queued again at the
//! next start (PreCommit1 resumes over the layers it wrote).
//!
//! **Chain steps are idempotent.** `SubmitPreCommit` and `SubmitProveCommit` first ask the chain
//! whether the step is already done (the pre-commit, or the sector, is there); then whether the
//! message recorded for the sector was executed (`state_searchMsg`): a success is `Done`, a failure
//! is `Failed` with the receipt's error. Only when neither holds is a message signed — and it is
//! recorded in the sector's record **before** it is pushed ([`Messenger::send_recorded`]), so a
//! crash between the two leads to the same signed message being pushed again, never to a second
//! message (and never to a second deposit: the chain also refuses a second pre-commit of a
//! number). A recorded message not executed [`RESEND_AFTER`] epochs after it was signed (dropped
//! from the pool, or its nonce taken by another message) is replaced by a fresh one, and only
//! while the chain still lacks what it was for.
//!
//! The seal ticket is drawn [`PipelineConfig::ticket_depth`] below the head and recorded before
//! PreCommit1 runs (a restarted PreCommit1 reuses its layers); the interactive seed is used once it
//! is [`PipelineConfig::seed_confidence`] epochs deep.
//!
//! New sectors are sealed into `preseal::sector_path(store, miner, n)`, the directory the prover
//! scans, so `Finalize` only deletes what proving does not need.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use lode_chain::Policy;
use lode_chain::actors::miner::{MinerMethod, PreCommitInfo};
use lode_chain::message::{Method, SignedMessage};
use lode_chain::types::{ActorId, Epoch};
use lode_node::rpc::types::MessageLookupInfo;
use lode_proofs::sector::{SectorSize, randomness_node};
use lode_sealing::seal::{self, SectorId, no_progress};
use lode_sealing::sector_dir::SectorDir;

use super::params::PorepParams;
use super::state::{Event, RetryPolicy, SectorState};
use super::store::{
    PipelineError, PipelineStore, SectorChain, SectorKind, SectorRecord, SentMessage,
};
use crate::api::NodeApi;
use crate::error::{ProviderError, ProviderResult};
use crate::metrics::ProviderMetrics;
use crate::poster::Messenger;
use crate::preseal::sector_path;
use crate::tasks::{Claim, Scheduler, SchedulerConfig, SectorOutcome, TaskKind};

/// The default [`PipelineConfig::seed_confidence`].
pub const SEED_CONFIDENCE: Epoch = 6;

/// Epochs after a message was signed before, still not executed, it is replaced by a new one.
pub const RESEND_AFTER: Epoch = 10;

/// What the pipeline needs to know about the miner and its disks.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// The miner actor.
    pub miner: ActorId,
    /// Its sector size.
    pub size: SectorSize,
    /// The sector store (where the prover looks for sealed sectors).
    pub store_dir: PathBuf,
    /// The SDR parent cache's directory.
    pub cache_dir: PathBuf,
    /// How many epochs below the head the seal ticket is drawn (deeper is safer from
    /// reorganisations; it must stay well inside the chain's randomness lookback).
    pub ticket_depth: Epoch,
    /// Epochs the seed's epoch must be below the head before Commit1 uses it (a reorganisation
    /// of shallower epochs could change the seed and void the proof).
    pub seed_confidence: Epoch,
    /// Epochs of margin added to the shortest expiration the chain accepts (the pre-commit may
    /// land a few epochs after it is signed).
    pub expiration_margin: Epoch,
    /// Retries and back-off of failed phases.
    pub retry: RetryPolicy,
}

impl PipelineConfig {
    /// The configuration a daemon uses under `policy`: the ticket drawn a finality below the head
    /// (a reorganisation cannot change it), the seed [`SEED_CONFIDENCE`] epochs deep, expirations [`RESEND_AFTER`] × 2 epochs past the
    /// shortest the chain accepts, the default retry policy.
    pub fn new(
        miner: ActorId,
        size: SectorSize,
        store_dir: PathBuf,
        cache_dir: PathBuf,
        policy: &Policy,
    ) -> Self {
        PipelineConfig {
            miner,
            size,
            store_dir,
            cache_dir,
            ticket_depth: policy.chain_finality,
            seed_confidence: SEED_CONFIDENCE,
            expiration_margin: RESEND_AFTER.saturating_mul(2),
            retry: RetryPolicy::default(),
        }
    }
}

/// The outcome of one step of a sector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Apply this event (with this chain bookkeeping, when it changed).
    Apply(Event, Option<Box<SectorChain>>),
    /// Nothing to apply yet: the chain has not moved far enough (why, for the log).
    Wait(String),
}

/// One transition the pipeline made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The sector.
    pub number: u64,
    /// From.
    pub from: SectorState,
    /// To.
    pub to: SectorState,
}

/// The sealing pipeline of one miner: its records, the node, the worker's messenger and the
/// PoRep parameters.
pub struct Pipeline<A: NodeApi> {
    api: Arc<A>,
    store: PipelineStore,
    messenger: Arc<Messenger>,
    porep: Arc<PorepParams>,
    policy: Policy,
    config: PipelineConfig,
    tasks: Scheduler,
    finished_tx: tokio::sync::mpsc::UnboundedSender<Finished>,
    finished_rx: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Finished>>,
    /// Woken when a background phase finished (its result waits in `finished_rx`).
    finished: Arc<tokio::sync::Notify>,
    /// Phases started and not applied yet.
    in_flight: AtomicUsize,
    metrics: Option<ProviderMetrics>,
    /// Where sealing phases run their parallel work ([`sealing_pool`]).
    pool: Option<Arc<rayon::ThreadPool>>,
}

/// A background phase's result, waiting to be applied.
struct Finished {
    claim: Claim,
    from: SectorState,
    result: Result<Option<SectorChain>, String>,
    /// How long the phase ran.
    seconds: f64,
}

/// A sealing phase's work, ready to run on a blocking thread: the sector's new chain
/// bookkeeping when the phase changed it.
type PhaseWork = Box<dyn FnOnce() -> ProviderResult<Option<SectorChain>> + Send + 'static>;

impl<A: NodeApi> std::fmt::Debug for Pipeline<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    lode_node::genesis::unix_now()
}

fn pipeline_err(e: PipelineError) -> ProviderError {
    ProviderError::Pipeline(e.to_string())
}

fn task_err(e: crate::tasks::TaskError) -> ProviderError {
    ProviderError::Pipeline(e.to_string())
}

fn failed(reason: impl Into<String>, retry: bool) -> Step {
    Step::Apply(
        Event::Failed {
            reason: reason.into(),
            retry,
        },
        None,
    )
}

fn done() -> Step {
    Step::Apply(Event::Done, None)
}

fn done_with(chain: SectorChain) -> Step {
    Step::Apply(Event::Done, Some(Box::new(chain)))
}

/// The thread pool sealing phases run their parallel work in: `cores` threads (the scheduler's
/// sealing capacity, the machine less the PoSt reserve), apart from rayon's global pool that
/// Winning and Window PoSt prove in — so a long Commit2 never queues a PoSt behind its jobs (a
/// Winning PoSt late by one Commit2 loses the block; on a one-miner network, the chain). `None`
/// when the pool cannot be built: phases then share the global pool.
fn sealing_pool(cores: u32) -> Option<Arc<rayon::ThreadPool>> {
    let threads = usize::try_from(cores.max(1)).unwrap_or(1);
    match rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("lode-sealing-{i}"))
        .build()
    {
        Ok(pool) => Some(Arc::new(pool)),
        Err(e) => {
            tracing::warn!(error = %e, "no separate thread pool for sealing: phases share PoSt's");
            None
        }
    }
}

/// Runs a CPU-bound sealing phase on a blocking thread; its error becomes a retryable failure.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> ProviderResult<T> + Send + 'static,
) -> ProviderResult<Result<T, String>> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(v)) => Ok(Ok(v)),
        Ok(Err(e)) => Ok(Err(e.to_string())),
        Err(_) => Err(ProviderError::Stopped),
    }
}

/// What the chain says of a recorded message.
enum Lookup {
    /// Executed successfully.
    Ok,
    /// Executed and failed: the receipt's error.
    Failed(String),
    /// Not executed yet (pushed again); replace it from this epoch on.
    Pending,
    /// Not executed after [`RESEND_AFTER`] epochs: send a new one.
    Stale,
}

impl<A: NodeApi> Pipeline<A> {
    /// A pipeline over `store`, talking to `api`, signing with `messenger`, proving with the
    /// PoRep parameters `porep` (in memory, or [`PorepParams::lazy`]: loaded by the first
    /// Commit2).
    pub fn new(
        api: Arc<A>,
        store: PipelineStore,
        messenger: Arc<Messenger>,
        porep: impl Into<PorepParams>,
        policy: Policy,
        config: PipelineConfig,
    ) -> Self {
        let tasks = Scheduler::new(
            &store,
            &SchedulerConfig::default(),
            config.size,
            config.retry,
        );
        let (finished_tx, finished_rx) = tokio::sync::mpsc::unbounded_channel();
        let pool = sealing_pool(tasks.capacity().sealing.cores);
        Pipeline {
            api,
            store,
            messenger,
            porep: Arc::new(porep.into()),
            policy,
            config,
            tasks,
            finished_tx,
            finished_rx: tokio::sync::Mutex::new(finished_rx),
            finished: Arc::new(tokio::sync::Notify::new()),
            in_flight: AtomicUsize::new(0),
            metrics: None,
            pool,
        }
    }

    /// The same pipeline with its task scheduler configured by `tasks` (`[tasks]` of the
    /// provider's `config.toml`; [`Pipeline::new`] uses the defaults).
    pub fn with_tasks(mut self, tasks: &SchedulerConfig) -> Self {
        self.tasks = Scheduler::new(&self.store, tasks, self.config.size, self.config.retry);
        self.pool = sealing_pool(self.tasks.capacity().sealing.cores);
        self
    }

    /// The same pipeline, recording how long each sealing phase takes in `metrics`
    /// ([`ProviderMetrics::observe_phase`]).
    pub fn with_metrics(mut self, metrics: ProviderMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The pipeline's records.
    pub fn store(&self) -> &PipelineStore {
        &self.store
    }

    /// Its configuration.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// The task scheduler the sealing phases run through (the poster registers its PoSt with
    /// it; the API lists its tasks).
    pub fn scheduler(&self) -> &Scheduler {
        &self.tasks
    }

    /// Pledges a committed-capacity sector: a new record with a number above every number the
    /// chain or the store already used.
    ///
    /// # Errors
    /// [`ProviderError::Node`] when the chain cannot be read; [`ProviderError::Pipeline`] when the
    /// store cannot be written.
    pub async fn pledge(&self) -> ProviderResult<SectorRecord> {
        let miner = self.config.miner;
        let sectors = self.api.miner_sectors(miner).await?;
        let pre = self.api.miner_precommits(miner).await?;
        let min = sectors
            .iter()
            .map(|s| s.sector_number)
            .chain(pre.iter().map(|p| p.sector_number))
            .max()
            .map_or(0, |n| n.saturating_add(1));
        let r = self
            .store
            .create(SectorKind::CommittedCapacity, min, unix_now())
            .map_err(pipeline_err)?;
        tracing::info!(sector = r.number, "committed-capacity sector pledged");
        Ok(r)
    }

    fn sector_id(&self, number: u64) -> SectorId {
        SectorId {
            size: self.config.size,
            miner_id: self.config.miner.0,
            sector_number: number,
        }
    }

    fn dir(&self, number: u64) -> PathBuf {
        sector_path(&self.config.store_dir, self.config.miner, number)
    }

    /// Does the work of `record`'s state once, at chain head `head`, and says what to apply.
    ///
    /// # Errors
    /// [`ProviderError::Node`] when the node cannot be reached (nothing is decided: try again
    /// next epoch); [`ProviderError::Stopped`] when a blocking phase could not run.
    pub async fn step(&self, record: &SectorRecord, head: Epoch) -> ProviderResult<Step> {
        use SectorState::*;
        let n = record.number;
        let path = self.dir(n);
        let chain = &record.chain;
        Ok(match record.state() {
            WaitDeals => match record.kind {
                SectorKind::CommittedCapacity => done(),
                SectorKind::Deals => Step::Wait("deal sectors are not packed yet".into()),
            },
            Packing => {
                // Committed capacity: no pieces (PreCommit1 seals zeros).
                match SectorDir::create(&path) {
                    Ok(_) => done(),
                    Err(e) => failed(e.to_string(), true),
                }
            }
            PreCommit1 if !self.ticket_fresh(record, head) => {
                self.choose_ticket(record, head).await?
            }
            PreCommit1 | PreCommit2 | Commit1 | Commit2 | Finalize => {
                self.run_inline(record).await?
            }
            SubmitPreCommit => self.submit_pre_commit(record, head).await?,
            PreCommitLanded => done(),
            WaitSeed => {
                let pre = self.api.miner_precommits(self.config.miner).await?;
                match pre.iter().find(|p| p.sector_number == n) {
                    Some(p) => match p.seed {
                        Some(_)
                            if head < p.seed_epoch.saturating_add(self.config.seed_confidence) =>
                        {
                            Step::Wait(format!(
                                "seed of epoch {} not {} epochs deep yet",
                                p.seed_epoch, self.config.seed_confidence
                            ))
                        }
                        Some(seed) => done_with(SectorChain {
                            seed: Some(seed),
                            ..chain.clone()
                        }),
                        None if head > p.prove_by => failed(
                            format!("the pre-commit expired at epoch {}", p.prove_by),
                            false,
                        ),
                        None => Step::Wait(format!("seed at epoch {}", p.seed_epoch)),
                    },
                    None => failed(
                        "the pre-commit is no longer on chain (expired: its deposit is gone); remove the sector",
                        false,
                    ),
                }
            }
            SubmitProveCommit => self.submit_prove_commit(record, head).await?,
            ProveCommitLanded => done(),
            Removing => match std::fs::remove_dir_all(&path) {
                Ok(()) => done(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => done(),
                Err(e) => Step::Wait(format!("cannot delete {}: {e}", path.display())),
            },
            Terminating => Step::Wait("terminations are not sent by the pipeline yet".into()),
            s if s.is_retryable_failure() => {
                let due = record.progress.retry_at.unwrap_or(0);
                if unix_now() >= due {
                    Step::Apply(Event::Retry, None)
                } else {
                    Step::Wait(format!("retry at unix time {due}"))
                }
            }
            _ => Step::Wait("nothing to do".into()),
        })
    }

    /// Whether `record` has a seal ticket a pre-commit can still use at `head` (half the
    /// lookback is kept for the rest of sealing), so that a PreCommit1 interrupted by a crash
    /// resumes over the layers it wrote. Otherwise a new one is drawn first.
    fn ticket_fresh(&self, record: &SectorRecord, head: Epoch) -> bool {
        let lookback = self.policy.max_pre_commit_randomness_lookback;
        match (record.chain.seal_rand_epoch, record.chain.ticket) {
            (Some(epoch), Some(_)) => {
                head.saturating_sub(epoch) < lookback.checked_div(2).unwrap_or(0)
            }
            _ => false,
        }
    }

    /// The work of `record`'s sealing phase, ready to run; or, when it cannot run, what to
    /// apply instead (a failure) or why it waits.
    fn phase_work(&self, record: &SectorRecord) -> Result<PhaseWork, Step> {
        use SectorState::*;
        let n = record.number;
        let id = self.sector_id(n);
        let path = self.dir(n);
        let chain = record.chain.clone();
        Ok(match record.state() {
            PreCommit1 => {
                let Some(ticket) = chain.ticket else {
                    return Err(Step::Wait("no seal ticket drawn yet".into()));
                };
                let cache_dir = self.config.cache_dir.clone();
                Box::new(move || {
                    let dir = SectorDir::create(&path)?;
                    let pc1 = seal::pre_commit1(
                        &dir,
                        &id,
                        randomness_node(ticket),
                        &cache_dir,
                        None,
                        &mut no_progress,
                    )?;
                    Ok(Some(SectorChain {
                        comm_d: Some(pc1.comm_d.0.0),
                        comm_r: None,
                        ..chain
                    }))
                })
            }
            PreCommit2 => Box::new(move || {
                let dir = SectorDir::open(&path)?;
                let pc2 = seal::pre_commit2(&dir, &id, &mut no_progress)?;
                Ok(Some(SectorChain {
                    comm_r: Some(pc2.comm_r.0.0),
                    ..chain
                }))
            }),
            Commit1 => {
                let Some(seed) = chain.seed else {
                    return Err(failed("no seed recorded: wait for it again", true));
                };
                Box::new(move || {
                    let dir = SectorDir::open(&path)?;
                    seal::commit1(&dir, &id, randomness_node(seed))?;
                    Ok(None)
                })
            }
            Commit2 => {
                let params = self.porep.clone();
                Box::new(move || {
                    let dir = SectorDir::open(&path)?;
                    let params = params.get()?;
                    let mut rng = crate::prover::os_rng()?;
                    seal::commit2(&dir, &id, &params, &mut rng, &mut no_progress)?;
                    Ok(None)
                })
            }
            Finalize => Box::new(move || {
                let dir = SectorDir::open(&path)?;
                seal::finalize(&dir, &id, false)?;
                Ok(None)
            }),
            s => return Err(Step::Wait(format!("{s} is not a sealing phase"))),
        })
    }

    /// Runs `record`'s sealing phase here, on a blocking thread (what [`Pipeline::step`] does;
    /// [`Pipeline::tick`] runs phases as scheduled tasks instead).
    async fn run_inline(&self, record: &SectorRecord) -> ProviderResult<Step> {
        let work = match self.phase_work(record) {
            Ok(work) => work,
            Err(step) => return Ok(step),
        };
        Ok(match blocking(work).await? {
            Ok(chain) => Step::Apply(Event::Done, chain.map(Box::new)),
            Err(e) => failed(e, true),
        })
    }

    /// Draws a new seal ticket `ticket_depth` below `head` and records it (the state stays
    /// `PreCommit1`: the next tick seals with it).
    async fn choose_ticket(&self, record: &SectorRecord, head: Epoch) -> ProviderResult<Step> {
        let epoch = head.saturating_sub(self.config.ticket_depth);
        let ticket = self.api.seal_ticket(self.config.miner, epoch).await?;
        let chain = SectorChain {
            seal_rand_epoch: Some(epoch),
            ticket: Some(ticket),
            comm_d: None,
            comm_r: None,
            ..record.chain.clone()
        };
        self.store
            .record_chain(record.number, record.version, chain, unix_now())
            .map_err(pipeline_err)?;
        Ok(Step::Wait(format!("seal ticket drawn from epoch {epoch}")))
    }

    /// What the chain says of `sent`; pushes it again while it is pending.
    async fn lookup(&self, sent: &SentMessage, head: Epoch) -> ProviderResult<Lookup> {
        let found: Option<MessageLookupInfo> = self.api.search_message(sent.id).await?;
        Ok(match found {
            Some(info) if info.receipt.ok() => Lookup::Ok,
            Some(info) => Lookup::Failed(format!(
                "the message was executed at epoch {} and failed: {} ({})",
                info.epoch, info.receipt.exit, info.receipt.error
            )),
            None if head >= sent.sent_at.saturating_add(RESEND_AFTER) => Lookup::Stale,
            None => {
                // Lost by a crash before the push, or dropped by a restarted node: the same
                // message again (the pool refuses a duplicate, which is fine).
                if let Ok(signed) = postcard::from_bytes::<SignedMessage>(&sent.signed)
                    && let Err(e) = self.messenger.push_again(&*self.api, signed).await
                {
                    tracing::debug!(error = %e, "pushing a recorded message again");
                }
                Lookup::Pending
            }
        })
    }

    /// Signs `method`, records it in the sector's record (`slot` picks which message), then
    /// pushes it. A refused push leaves the recorded message to be looked up (and replaced once
    /// stale) like any other.
    /// Follows the message recorded in `slot` (a `what` message): `Some` step when the chain
    /// executed it (done, or failed — the record then forgets it, so the retry sends a new one)
    /// or it is still pending; `None` when there is none, or it is stale and a new one is due.
    async fn follow(
        &self,
        record: &SectorRecord,
        head: Epoch,
        what: &str,
        slot: fn(&mut SectorChain) -> &mut Option<SentMessage>,
    ) -> ProviderResult<Option<Step>> {
        let mut chain = record.chain.clone();
        let Some(sent) = slot(&mut chain).clone() else {
            return Ok(None);
        };
        Ok(match self.lookup(&sent, head).await? {
            Lookup::Ok => Some(done()),
            Lookup::Failed(reason) => {
                *slot(&mut chain) = None;
                Some(Step::Apply(
                    Event::Failed {
                        reason,
                        retry: true,
                    },
                    Some(Box::new(chain)),
                ))
            }
            Lookup::Pending => Some(Step::Wait(format!(
                "{what} message {} not executed yet",
                hex::encode(sent.id)
            ))),
            Lookup::Stale => {
                tracing::warn!(
                    sector = record.number,
                    "{what} message not executed after {RESEND_AFTER} epochs: sending a new one"
                );
                None
            }
        })
    }

    async fn send(
        &self,
        record: &SectorRecord,
        head: Epoch,
        method: Method,
        proofs: usize,
        slot: fn(&mut SectorChain) -> &mut Option<SentMessage>,
    ) -> ProviderResult<Step> {
        let view = self.api.proving_view(self.config.miner).await?;
        let store = &self.store;
        let pushed = self
            .messenger
            .send_recorded(&*self.api, view.worker, method, proofs, 1, |signed| {
                let mut chain = record.chain.clone();
                *slot(&mut chain) = Some(SentMessage {
                    id: signed.id(),
                    sent_at: head,
                    signed: lode_chain::codec::encode(signed),
                });
                store
                    .record_chain(record.number, record.version, chain, unix_now())
                    .map(|_| ())
                    .map_err(pipeline_err)
            })
            .await;
        Ok(match pushed {
            Ok(id) => Step::Wait(format!("message {} sent", hex::encode(id))),
            // Recorded but refused: looked up next epoch like a message lost by a crash.
            Err(ProviderError::Node(e)) => Step::Wait(format!("the node refused the message: {e}")),
            Err(e) => return Err(e),
        })
    }

    async fn submit_pre_commit(&self, record: &SectorRecord, head: Epoch) -> ProviderResult<Step> {
        let n = record.number;
        let miner = self.config.miner;
        let chain = &record.chain;
        let (Some(comm_r), Some(comm_d), Some(seal_rand_epoch)) =
            (chain.comm_r, chain.comm_d, chain.seal_rand_epoch)
        else {
            return Ok(failed(
                "the sector has no recorded commitments: seal it again",
                false,
            ));
        };
        let pre = self.api.miner_precommits(miner).await?;
        if let Some(p) = pre.iter().find(|p| p.sector_number == n) {
            return Ok(if p.comm_r == comm_r {
                done()
            } else {
                failed(
                    format!("the chain holds another pre-commit for sector {n}: remove this one"),
                    false,
                )
            });
        }
        let sectors = self.api.miner_sectors(miner).await?;
        if sectors.iter().any(|s| s.sector_number == n) {
            return Ok(done());
        }
        if let Some(step) = self
            .follow(record, head, "pre-commit", |c| &mut c.pre_commit)
            .await?
        {
            return Ok(step);
        }
        let p = &self.policy;
        let landing = head.saturating_add(1);
        if landing.saturating_sub(seal_rand_epoch) >= p.max_pre_commit_randomness_lookback {
            return Ok(failed(
                format!(
                    "the seal ticket (epoch {seal_rand_epoch}) is too old for a pre-commit: remove the sector and pledge a new one"
                ),
                false,
            ));
        }
        let expiration = landing
            .saturating_add(p.max_prove_commit_duration)
            .saturating_add(p.min_sector_expiration)
            .saturating_add(self.config.expiration_margin);
        let method = Method::Miner(MinerMethod::PreCommitSectors(vec![PreCommitInfo {
            sector_number: n,
            comm_r,
            comm_d,
            seal_rand_epoch,
            deal_ids: Vec::new(),
            expiration,
        }]));
        self.send(record, head, method, 0, |c| &mut c.pre_commit)
            .await
    }

    async fn submit_prove_commit(
        &self,
        record: &SectorRecord,
        head: Epoch,
    ) -> ProviderResult<Step> {
        let n = record.number;
        let miner = self.config.miner;
        let sectors = self.api.miner_sectors(miner).await?;
        if sectors.iter().any(|s| s.sector_number == n) {
            return Ok(done());
        }
        if let Some(step) = self
            .follow(record, head, "prove-commit", |c| &mut c.prove_commit)
            .await?
        {
            return Ok(step);
        }
        let pre = self.api.miner_precommits(miner).await?;
        let Some(p) = pre.iter().find(|p| p.sector_number == n) else {
            return Ok(failed(
                "the pre-commit is no longer on chain (expired: its deposit is gone); remove the sector",
                false,
            ));
        };
        if head > p.prove_by {
            return Ok(failed(
                format!("the pre-commit expired at epoch {}", p.prove_by),
                false,
            ));
        }
        let path = self.dir(n);
        let read = SectorDir::open(&path)
            .map_err(|e| e.to_string())
            .and_then(|dir| std::fs::read(dir.commit2()).map_err(|e| e.to_string()));
        let proofs = match read {
            Ok(bytes) => bytes
                .chunks(lode_proofs::snark::PROOF_LEN)
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>(),
            Err(e) => {
                return Ok(failed(
                    format!("the PoRep proof cannot be read ({e}): prove again"),
                    true,
                ));
            }
        };
        let count = proofs.len();
        let method = Method::Miner(MinerMethod::ProveCommitSector {
            sector_number: n,
            proofs,
        });
        self.send(record, head, method, count, |c| &mut c.prove_commit)
            .await
    }

    /// Advances every sector that has work by one step at the current head and applies what
    /// came of it, logging each transition:
    ///
    /// 1. the results of sealing phases that finished since the last tick are applied (each with
    ///    its task's fencing token, in one transaction with the task's record);
    /// 2. a sector in a sealing phase gets a queued task (PreCommit1 once its seal ticket is
    ///    drawn); any other sector's step runs here (chain steps: one look at the chain, at most
    ///    one message);
    /// 3. the scheduler admits what the machine and the limits allow, and the admitted phases
    ///    start in the background (several sectors at once).
    ///
    /// A sector whose step fails (the node unreachable) or whose record moved on meanwhile is
    /// left for the next tick. [`Pipeline::wait_tasks`] waits for the started phases.
    ///
    /// # Errors
    /// [`ProviderError::Node`] when the head cannot be read; [`ProviderError::Pipeline`] when the
    /// records cannot be read.
    pub async fn tick(&self) -> ProviderResult<Vec<Transition>> {
        let head = self.api.chain_head().await?.epoch;
        let mut out = self.apply_finished(false, head).await;
        let records = self.store.list().map_err(pipeline_err)?;
        let now = unix_now();
        for record in records {
            let state = record.state();
            if self
                .tasks
                .running_on(record.number)
                .map_err(task_err)?
                .is_some()
            {
                // Its phase runs: its result decides what comes next.
                continue;
            }
            let wanted = TaskKind::for_state(state)
                .filter(|_| state != SectorState::PreCommit1 || self.ticket_fresh(&record, head));
            if let Err(e) = self
                .tasks
                .want(record.number, wanted.map(|k| (k, record.version)), now)
            {
                tracing::warn!(sector = record.number, error = %e, "cannot queue the sector's task");
                continue;
            }
            if wanted.is_some() || state.is_final() || state == SectorState::Proving {
                continue;
            }
            let started = std::time::Instant::now();
            let step = match self.step(&record, head).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(sector = record.number, state = %state, error = %e, "sector step failed; trying again next epoch");
                    continue;
                }
            };
            let Step::Apply(event, chain) = step else {
                continue;
            };
            // The version read before the step fences it: a step that recorded a message
            // returns `Wait`, so a moved version means someone else changed the sector.
            match self.store.update(
                record.number,
                record.version,
                Some(&event),
                chain.map(|c| *c),
                unix_now(),
                &self.config.retry,
            ) {
                Ok(new) => {
                    self.observe(&event, state, started.elapsed().as_secs_f64());
                    out.push(self.moved(record.number, state, &event, &new, head));
                }
                Err(e) => {
                    tracing::warn!(sector = record.number, error = %e, "sector change refused");
                }
            }
        }
        for claim in self.tasks.admit(now).map_err(task_err)? {
            if let Some(t) = self.start(claim, head) {
                out.push(t);
            }
        }
        if let Err(e) = self.tasks.prune(now) {
            tracing::warn!(error = %e, "cannot prune the task history");
        }
        Ok(out)
    }

    /// Logs a transition and returns it.
    fn moved(
        &self,
        number: u64,
        from: SectorState,
        event: &Event,
        new: &SectorRecord,
        head: Epoch,
    ) -> Transition {
        match event {
            Event::Failed { reason, .. } => tracing::warn!(
                sector = number,
                from = %from,
                to = %new.state(),
                %reason,
                "sector failed"
            ),
            _ => tracing::info!(
                sector = number,
                from = %from,
                to = %new.state(),
                epoch = head,
                "sector moved"
            ),
        }
        Transition {
            number,
            from,
            to: new.state(),
        }
    }

    /// Starts an admitted phase in the background, after checking that its sector is still
    /// where the task was queued (otherwise the task is dropped). A phase that cannot run
    /// (Commit1 without a seed) is applied at once: its transition is returned.
    fn start(&self, claim: Claim, head: Epoch) -> Option<Transition> {
        let now = unix_now();
        let cancel = |why: &str| {
            if let Err(e) = self.tasks.cancel(&claim, why, now) {
                tracing::warn!(task = claim.id, error = %e, "cannot drop a task");
            }
        };
        let record = match self.store.get(claim.sector) {
            Ok(Some(r)) => r,
            Ok(None) => {
                cancel("the sector is gone");
                return None;
            }
            Err(e) => {
                cancel(&e.to_string());
                return None;
            }
        };
        if record.version != claim.sector_version
            || TaskKind::for_state(record.state()) != Some(claim.kind)
        {
            cancel("the sector moved on");
            return None;
        }
        if claim.kind == TaskKind::PreCommit1 && !self.ticket_fresh(&record, head) {
            cancel("the seal ticket is too old: a new one is drawn first");
            return None;
        }
        let from = record.state();
        let work = match self.phase_work(&record) {
            Ok(work) => work,
            Err(Step::Apply(event, chain)) => {
                return self.apply_result(
                    Finished {
                        claim,
                        from,
                        result: match event {
                            Event::Failed { reason, .. } => Err(reason),
                            _ => Ok(chain.map(|c| *c)),
                        },
                        seconds: 0.0,
                    },
                    head,
                );
            }
            Err(Step::Wait(why)) => {
                cancel(&why);
                return None;
            }
        };
        tracing::info!(sector = claim.sector, task = claim.id, kind = %claim.kind, "phase started");
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let tx = self.finished_tx.clone();
        let finished = self.finished.clone();
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let run = move || match pool {
                Some(pool) => pool.install(work),
                None => work(),
            };
            let result = match tokio::task::spawn_blocking(run).await {
                Ok(Ok(chain)) => Ok(chain),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("the phase did not finish: {e}")),
            };
            // The receiver lives as long as the pipeline; once it is gone the task is
            // re-queued by the next start.
            let _ = tx.send(Finished {
                claim,
                from,
                result,
                seconds: started.elapsed().as_secs_f64(),
            });
            finished.notify_one();
        });
        None
    }

    /// The metrics hook: a completed step's duration, kept for the sealing phases
    /// (`observe_phase` ignores the chain steps).
    fn observe(&self, event: &Event, from: SectorState, seconds: f64) {
        if let (Event::Done, Some(m)) = (event, &self.metrics) {
            m.observe_phase(from, seconds);
        }
    }

    /// Applies a finished phase's result through the scheduler: the task and the sector in one
    /// transaction, fenced by the task's token and the sector's version.
    fn apply_result(&self, f: Finished, head: Epoch) -> Option<Transition> {
        let kind = f.claim.kind;
        let policy = self.tasks.details(kind).retry.unwrap_or(self.config.retry);
        let outcome = match f.result {
            Ok(chain) => SectorOutcome {
                event: Event::Done,
                chain,
                policy,
            },
            Err(reason) => SectorOutcome {
                event: Event::Failed {
                    reason,
                    retry: true,
                },
                chain: None,
                policy,
            },
        };
        match self.tasks.complete_sector(&f.claim, &outcome, unix_now()) {
            Ok(new) => {
                self.observe(&outcome.event, f.from, f.seconds);
                Some(self.moved(f.claim.sector, f.from, &outcome.event, &new, head))
            }
            Err(e) => {
                tracing::warn!(sector = f.claim.sector, task = f.claim.id, error = %e, "phase result refused");
                None
            }
        }
    }

    /// Applies the results that are in; with `wait`, first waits for one when phases run.
    /// `head` is for the log.
    async fn apply_finished(&self, wait: bool, head: Epoch) -> Vec<Transition> {
        let mut rx = self.finished_rx.lock().await;
        let mut got = Vec::new();
        if wait
            && self.in_flight.load(Ordering::SeqCst) > 0
            && let Some(f) = rx.recv().await
        {
            got.push(f);
        }
        while let Ok(f) = rx.try_recv() {
            got.push(f);
        }
        drop(rx);
        let mut out = Vec::new();
        for f in got {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if let Some(t) = self.apply_result(f, head) {
                out.push(t);
            }
        }
        out
    }

    /// Waits until every phase this pipeline started has finished, and applies their results
    /// (what a test, or an orderly stop, does before the pipeline is dropped).
    pub async fn wait_tasks(&self) -> Vec<Transition> {
        let mut out = Vec::new();
        while self.in_flight.load(Ordering::SeqCst) > 0 {
            let head = self.api.chain_head().await.map_or(0, |h| h.epoch);
            out.extend(self.apply_finished(true, head).await);
        }
        out
    }
}

/// The most ticks [`run_pipeline`] makes in one epoch.
pub const TICKS_PER_EPOCH: usize = 16;

/// Runs `pipeline` every epoch of the network's clock, ticking again at once while sectors move
/// (at most [`TICKS_PER_EPOCH`] times), until `stop` turns true (or its sender is dropped).
///
/// # Errors
/// None: a tick's error is logged and the next epoch tried again.
pub async fn run_pipeline<A: NodeApi>(
    pipeline: Arc<Pipeline<A>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> ProviderResult<()> {
    let epoch = std::time::Duration::from_secs(pipeline.policy.epoch_duration_seconds.max(1));
    let mut interval = tokio::time::interval(epoch);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            // A sealing phase finished: apply it (and start what waits) without waiting for
            // the next epoch.
            _ = pipeline.finished.notified() => {}
            changed = stop.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
        }
        if *stop.borrow() {
            return Ok(());
        }
        // Sealing phases do not wait for the chain: tick again while sectors move, a bounded
        // number of times an epoch.
        for _ in 0..TICKS_PER_EPOCH {
            match pipeline.tick().await {
                Ok(moved) if moved.is_empty() => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "pipeline tick failed; trying again next epoch");
                    break;
                }
            }
            if *stop.borrow() {
                return Ok(());
            }
        }
    }
}
