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
//! **Batches.** A sector's first try of `SubmitPreCommit` or `SubmitProveCommit` does not send
//! its own message from [`Pipeline::tick`]: its entry waits, at most
//! [`PipelineConfig::batch_wait_epochs`], for others, and one `PreCommitSectors` or
//! `ProveCommitSectors` message carries up to [`PipelineConfig::max_batch`] of them. The message
//! is recorded in every one of their records in one transaction before it is pushed, and each
//! sector follows it as its own. A retried sector (a failed batch, or a sector a prove-commit
//! batch skipped) goes alone. No deposit is locked twice: every sector asks the chain first, and
//! the chain refuses a second pre-commit of a number.
//!
//! **Terminations** (`Terminating`) follow the same rules with `TerminateSectors`, sent only while
//! the sector's deadline is mutable.
//!
//! The seal ticket is drawn [`PipelineConfig::ticket_depth`] below the head and recorded before
//! PreCommit1 runs (a restarted PreCommit1 reuses its layers); the interactive seed is used once it
//! is [`PipelineConfig::seed_confidence`] epochs deep.
//!
//! New sectors are sealed in the sealing scratch (`<scratch>/s-<miner>-<n>`), where the prover
//! looks only for a sector on chain that is not moved yet; `Finalize` deletes there what proving does not need and moves the rest into
//! `preseal::sector_path(store, miner, n)`, where the prover looks ([`super::storage`]: a kill at
//! any instant and Finalize again end with one complete sector in the store). A sector starts
//! (Packing) only once the scratch and the store have room for it: until then it waits in
//! Packing, and [`Pipeline::waiting`] says why, with the figures.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use lode_chain::Policy;
use lode_chain::actors::miner::{MinerMethod, PreCommitInfo, ProveCommitInfo, SectorLocation};
use lode_chain::error::ExitCode;
use lode_chain::message::{Method, SignedMessage};
use lode_chain::types::{ActorId, Epoch};
use lode_node::rpc::types::MessageLookupInfo;
use lode_proofs::sector::{SectorSize, randomness_node};
use lode_sealing::seal::{self, SectorId, no_progress};
use lode_sealing::sector_dir::SectorDir;

use super::params::PorepParams;
use super::state::{Event, RetryPolicy, SectorState};
use super::storage::{self, Places};
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

/// The default [`PipelineConfig::batch_wait_epochs`].
pub const BATCH_WAIT_EPOCHS: Epoch = 2;

/// The default [`PipelineConfig::max_batch`].
pub const MAX_BATCH: usize = 16;

/// What the pipeline needs to know about the miner and its disks.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// The miner actor.
    pub miner: ActorId,
    /// Its sector size.
    pub size: SectorSize,
    /// The sector store, long-term storage (where the prover looks for sealed sectors; Finalize
    /// moves sectors there).
    pub store_dir: PathBuf,
    /// The sealing scratch: the phases Packing … Commit2 work in `<scratch>/s-<miner>-<n>`.
    pub scratch_dir: PathBuf,
    /// Whether Finalize keeps the unsealed copy of committed-capacity sectors (moved to the
    /// store with the replica).
    pub keep_unsealed: bool,
    /// Whether Finalize keeps the unsealed copy of deal sectors (default: yes, so retrievals
    /// read it without unsealing; without it the first retrieval unseals the sector).
    pub keep_unsealed_deals: bool,
    /// Epochs a deal sector waits in `WaitDeals` for more deals after its first piece was
    /// placed, unless it is full or a deal's start epoch comes close first.
    pub wait_deals_epochs: Epoch,
    /// A deal sector starts sealing once its earliest deal's start epoch is this close: the
    /// epochs sealing, pre-commit, the seed's wait and the prove-commit are expected to take.
    pub deal_start_margin_epochs: Epoch,
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
    /// How long (epochs of the network's clock) a sector ready for a new pre-commit or
    /// prove-commit waits for others to share its message; 0: only the sectors ready in the
    /// same tick share one.
    pub batch_wait_epochs: Epoch,
    /// The most sectors one pre-commit or prove-commit message carries (1: no batching).
    pub max_batch: usize,
}

impl PipelineConfig {
    /// The configuration a daemon uses under `policy`: the ticket drawn a finality below the head
    /// (a reorganisation cannot change it), the seed [`SEED_CONFIDENCE`] epochs deep, expirations [`RESEND_AFTER`] × 2 epochs past the
    /// shortest the chain accepts, the default retry policy, the unsealed copy kept for deal
    /// sectors only, batches of at most [`MAX_BATCH`] sectors waiting at most
    /// [`BATCH_WAIT_EPOCHS`], deal sectors waiting for deals a quarter of a proving period, and
    /// starting to seal [`default_deal_start_margin`] epochs before their first deal starts.
    pub fn new(
        miner: ActorId,
        size: SectorSize,
        store_dir: PathBuf,
        scratch_dir: PathBuf,
        cache_dir: PathBuf,
        policy: &Policy,
    ) -> Self {
        let mut config = PipelineConfig {
            miner,
            size,
            store_dir,
            scratch_dir,
            keep_unsealed: false,
            keep_unsealed_deals: true,
            wait_deals_epochs: policy.wpost_proving_period().checked_div(4).unwrap_or(0),
            deal_start_margin_epochs: 0,
            cache_dir,
            ticket_depth: policy.chain_finality,
            seed_confidence: SEED_CONFIDENCE,
            expiration_margin: RESEND_AFTER.saturating_mul(2),
            retry: RetryPolicy::default(),
            batch_wait_epochs: BATCH_WAIT_EPOCHS,
            max_batch: MAX_BATCH,
        };
        config.deal_start_margin_epochs = default_deal_start_margin(policy, &config);
        config
    }

    /// Epochs from a sector's pre-commit to its prove-commit on chain, at the least: the seed's
    /// delay, its confidence, and each message's batch wait and landing. A deal whose start
    /// epoch is nearer than this when its sector is pre-committed cannot be activated in time.
    pub fn prove_commit_epochs(&self, policy: &Policy) -> Epoch {
        policy
            .pre_commit_challenge_delay
            .saturating_add(self.seed_confidence)
            .saturating_add(self.batch_wait_epochs.saturating_add(2).saturating_mul(2))
    }

    /// Whether Finalize keeps the unsealed copy of a sector of `kind`.
    pub fn keeps_unsealed(&self, kind: SectorKind) -> bool {
        match kind {
            SectorKind::CommittedCapacity => self.keep_unsealed,
            SectorKind::Deals => self.keep_unsealed_deals,
        }
    }
}

/// The default [`PipelineConfig::deal_start_margin_epochs`]: the epochs from pre-commit to
/// prove-commit ([`PipelineConfig::prove_commit_epochs`]) plus three seed delays for the sealing
/// phases before them (about 5 hours on mainnet's 30-second epochs, a minute on the devnet's).
pub fn default_deal_start_margin(policy: &Policy, config: &PipelineConfig) -> Epoch {
    config
        .prove_commit_epochs(policy)
        .saturating_add(policy.pre_commit_challenge_delay.saturating_mul(3))
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
    pub(super) api: Arc<A>,
    pub(super) store: PipelineStore,
    messenger: Arc<Messenger>,
    porep: Arc<PorepParams>,
    pub(super) policy: Policy,
    pub(super) config: PipelineConfig,
    tasks: Scheduler,
    finished_tx: tokio::sync::mpsc::UnboundedSender<Finished>,
    finished_rx: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Finished>>,
    /// Woken when a background phase finished (its result waits in `finished_rx`).
    finished: Arc<tokio::sync::Notify>,
    /// Phases started and not applied yet.
    in_flight: AtomicUsize,
    /// PreCommit1 batches run, and the sectors they labelled ([`Pipeline::pre_commit1_batches`]).
    pc1_batches: AtomicU64,
    pc1_batched_sectors: AtomicU64,
    /// The device batched PreCommit1 and PreCommit2 run on ([`Pipeline::with_gpu`]).
    gpu: Option<Arc<lode_sealing::accel::Gpu>>,
    /// The same device as Commit2's G1 sums (made once: the prover keeps its converted
    /// parameters per device).
    prover_device: Option<Arc<dyn lode_proofs::prover::G1Msm>>,
    metrics: Option<ProviderMetrics>,
    /// Where sealing phases run their parallel work ([`sealing_pool`]), built when the first
    /// phase starts (sized by the scheduler's configuration then).
    pool: std::sync::OnceLock<Option<Arc<rayon::ThreadPool>>>,
    /// The last head the node reported ([`NO_HEAD`] before the first), what a tick goes on with
    /// while the node does not answer.
    last_head: AtomicU64,
    /// Why each sector waits, as its last step said (cleared when it moves).
    waiting: Mutex<HashMap<u64, String>>,
    /// Held while deal pieces are placed or moved between sectors (one at a time: the placement
    /// is computed from the sectors' pieces read under it).
    pub(super) placing: tokio::sync::Mutex<()>,
    /// The cluster committed-capacity sectors are sealed on ([`Pipeline::with_cluster`]).
    pub(super) cluster: Option<Arc<super::remote::ClusterLink>>,
    /// Terminated sectors whose files this process deleted ([`Pipeline::drop_terminated`]), not
    /// looked at again until a restart.
    dropped: Mutex<std::collections::HashSet<u64>>,
}

/// [`Pipeline::last_head`] before the node first answered.
const NO_HEAD: u64 = u64::MAX;

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

/// A chain step up to its message: what to apply, or the sector's entry of a new message.
enum Planned {
    /// Apply this, or wait.
    Step(Step),
    /// A new pre-commit is due, with this entry.
    PreCommit(PreCommitInfo),
    /// A new prove-commit is due, with this entry.
    ProveCommit(ProveCommitInfo),
}

/// How many sectors the recorded message `sent` serves (1 when it does not decode).
fn batch_size(sent: &SentMessage) -> usize {
    match postcard::from_bytes::<SignedMessage>(&sent.signed) {
        Ok(m) => match m.message.method {
            Method::Miner(MinerMethod::PreCommitSectors(v)) => v.len().max(1),
            Method::Miner(MinerMethod::ProveCommitSectors(v)) => v.len().max(1),
            _ => 1,
        },
        Err(_) => 1,
    }
}

/// What following a recorded message gave.
enum Followed {
    /// Apply this, or wait.
    Step(Step),
    /// Executed and failed; `chain` is the bookkeeping without the message.
    Failed {
        /// The receipt's exit code.
        exit_code: u32,
        /// The receipt's error.
        reason: String,
        /// The sector's chain bookkeeping, the message forgotten.
        chain: Box<SectorChain>,
    },
    /// No message, or a stale one: a new one is due.
    Send,
}

/// What the chain says of a recorded message.
enum Lookup {
    /// Executed successfully.
    Ok,
    /// Executed and failed: the receipt's exit code and error.
    Failed {
        /// The exit code's number.
        exit_code: u32,
        /// The receipt's error, for the operator.
        reason: String,
    },
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
            pc1_batches: AtomicU64::new(0),
            pc1_batched_sectors: AtomicU64::new(0),
            gpu: None,
            prover_device: None,
            metrics: None,
            pool: std::sync::OnceLock::new(),
            last_head: AtomicU64::new(NO_HEAD),
            waiting: Mutex::new(HashMap::new()),
            placing: tokio::sync::Mutex::new(()),
            cluster: None,
            dropped: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// The same pipeline with batched PreCommit1 labelled, PreCommit2's columns and trees hashed
    /// and Commit2's G1 sums computed on `gpu` (`None`: the CPU). A PreCommit1 alone stays on
    /// the CPU.
    pub fn with_gpu(mut self, gpu: Option<Arc<lode_sealing::accel::Gpu>>) -> Self {
        self.prover_device = gpu.clone().map(lode_sealing::accel::prover_device);
        self.gpu = gpu;
        self
    }

    /// The same pipeline with Commit2's G1 sums on `device` (`None`: the CPU), whatever
    /// [`Pipeline::with_gpu`] chose.
    pub fn with_prover_device(
        mut self,
        device: Option<Arc<dyn lode_proofs::prover::G1Msm>>,
    ) -> Self {
        self.prover_device = device;
        self
    }

    /// The same pipeline with its task scheduler configured by `tasks` (`[tasks]` of the
    /// provider's `config.toml`; [`Pipeline::new`] uses the defaults).
    pub fn with_tasks(mut self, tasks: &SchedulerConfig) -> Self {
        self.tasks = Scheduler::new(&self.store, tasks, self.config.size, self.config.retry);
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
        let min = self.min_sector_number().await?;
        let r = self
            .store
            .create(SectorKind::CommittedCapacity, min, unix_now())
            .map_err(pipeline_err)?;
        tracing::info!(sector = r.number, "committed-capacity sector pledged");
        Ok(r)
    }

    /// The lowest number a new sector may take: above every number the chain has seen of this
    /// miner (its sectors and pre-commits).
    ///
    /// # Errors
    /// [`ProviderError::Node`] when the chain cannot be read.
    pub(super) async fn min_sector_number(&self) -> ProviderResult<u64> {
        let miner = self.config.miner;
        let sectors = self.api.miner_sectors(miner).await?;
        let pre = self.api.miner_precommits(miner).await?;
        Ok(sectors
            .iter()
            .map(|s| s.sector_number)
            .chain(pre.iter().map(|p| p.sector_number))
            .max()
            .map_or(0, |n| n.saturating_add(1)))
    }

    pub(super) fn sector_id(&self, number: u64) -> SectorId {
        SectorId {
            size: self.config.size,
            miner_id: self.config.miner.0,
            sector_number: number,
        }
    }

    /// Where sector `number`'s phases work: its scratch directory, or its store directory for a
    /// sector sealed in place ([`storage::work_dir`]).
    pub(super) fn dir(&self, number: u64) -> PathBuf {
        storage::work_dir(
            &self.config.scratch_dir,
            &self.config.store_dir,
            self.config.miner,
            number,
        )
    }

    /// Sector `number`'s scratch directory.
    pub fn scratch_path(&self, number: u64) -> PathBuf {
        sector_path(&self.config.scratch_dir, self.config.miner, number)
    }

    /// Sector `number`'s directory in the sector store (where Finalize moves it).
    pub fn store_path(&self, number: u64) -> PathBuf {
        sector_path(&self.config.store_dir, self.config.miner, number)
    }

    /// Where sector `number`'s files are now (its scratch directory while it is sealed, its store
    /// directory once finalized), if anywhere.
    pub fn sector_dir(&self, number: u64) -> Option<PathBuf> {
        Some(self.dir(number)).filter(|d| d.is_dir())
    }

    /// Why sector `number` waits, as its last step said (`None` once it moved on, or before a
    /// step of this process looked at it): e.g. the disk space a new sector needs, with the
    /// figures.
    pub fn waiting(&self, number: u64) -> Option<String> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&number)
            .cloned()
    }

    fn set_waiting(&self, number: u64, why: Option<String>) {
        let mut w = self
            .waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match why {
            Some(why) => {
                if w.get(&number) != Some(&why) {
                    // The admission's waits (disk, memory) are the operator's to act on.
                    if why.starts_with("waiting for") {
                        tracing::info!(sector = number, %why, "sector waits");
                    } else {
                        tracing::debug!(sector = number, %why, "sector waits");
                    }
                }
                w.insert(number, why);
            }
            None => {
                w.remove(&number);
            }
        }
    }

    /// Whether a new sector `n` may start now ([`storage::room_for_new_sector`]), against the
    /// sectors already started in scratch.
    fn room_for(&self, n: u64, kind: SectorKind) -> Result<(), storage::Refusal> {
        let c = &self.config;
        let records = self
            .store
            .list()
            .map_err(|e| storage::Refusal::Wait(e.to_string()))?;
        let started: Vec<PathBuf> = records
            .iter()
            // A sector failed for good writes nothing more (its files stay until it is removed).
            .filter(|r| {
                r.number != n
                    && !r.state().is_final()
                    && r.state() != SectorState::FailedUnrecoverable
            })
            .map(|r| self.scratch_path(r.number))
            .filter(|d| d.is_dir())
            .collect();
        let at = Places {
            scratch: &c.scratch_dir,
            store: &c.store_dir,
            cache: &c.cache_dir,
            size: c.size,
            keep_unsealed: c.keeps_unsealed(kind),
        };
        storage::room_for_new_sector(
            &at,
            &self.scratch_path(n),
            &started,
            &lode_sealing::capacity::SystemProbe,
        )
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
                SectorKind::Deals => self.wait_deals(record, head).await?,
            },
            Packing => {
                // A new sector starts only where its phases and its finalized files fit.
                match self.room_for(n, record.kind) {
                    Ok(()) => {}
                    Err(storage::Refusal::Wait(why)) => return Ok(Step::Wait(why)),
                    Err(storage::Refusal::Fail(why)) => return Ok(failed(why, true)),
                }
                if record.kind == SectorKind::Deals {
                    return self.pack_deals(record).await;
                }
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
            Removing => {
                // A sector sealed on the cluster: the workers holding copies delete them first.
                self.remove_remote_copies(record).await;
                match storage::remove_sector(&self.scratch_path(n), &self.store_path(n)) {
                    Ok(()) => done(),
                    Err(e) => Step::Wait(e.to_string()),
                }
            }
            Terminating => self.submit_terminate(record, head).await?,
            s if s.is_retryable_failure() => {
                let due = record.progress.retry_at.unwrap_or(0);
                if unix_now() >= due {
                    // A failed prove-commit without a proof to send goes back to Commit1; a
                    // PreCommit2 whose layers were lost with a cluster's worker, to PreCommit1.
                    let redo = match s {
                        CommitFailed => !self.has_proof(n),
                        SealPreCommit2Failed => self.layers_lost(record).await?,
                        _ => false,
                    };
                    if redo {
                        Step::Apply(Event::Redo, None)
                    } else {
                        Step::Apply(Event::Retry, None)
                    }
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
    fn phase_work(
        &self,
        record: &SectorRecord,
        batch: Option<&Arc<Pc1Batch>>,
    ) -> Result<PhaseWork, Step> {
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
                if let Some((batch, at)) =
                    batch.and_then(|b| b.position(n).map(|at| (Arc::clone(b), at)))
                {
                    return Ok(Box::new(move || {
                        let pc1 = batch.run(at)?;
                        Ok(Some(SectorChain {
                            comm_d: Some(pc1.comm_d.0.0),
                            comm_r: None,
                            ..chain
                        }))
                    }));
                }
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
            PreCommit2 => {
                let gpu = self.gpu.clone();
                Box::new(move || {
                    let dir = SectorDir::open(&path)?;
                    let pc2 = seal::pre_commit2_on(&dir, &id, gpu.as_deref(), &mut no_progress)?;
                    Ok(Some(SectorChain {
                        comm_r: Some(pc2.comm_r.0.0),
                        ..chain
                    }))
                })
            }
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
                let device = self.prover_device.clone();
                Box::new(move || {
                    let dir = SectorDir::open(&path)?;
                    let params = params.get()?;
                    let mut rng = crate::prover::os_rng()?;
                    seal::commit2_on(
                        &dir,
                        &id,
                        &params,
                        &mut rng,
                        device.as_ref(),
                        &mut no_progress,
                    )?;
                    Ok(None)
                })
            }
            Finalize => {
                let scratch = self.scratch_path(n);
                let dest = self.store_path(n);
                let keep = self.config.keeps_unsealed(record.kind);
                // The payload copies of its pieces are no longer needed once the sector is in
                // the store (its unsealed copy, or its replica, holds them).
                let staged = match record.kind {
                    SectorKind::Deals => match self.store.sector_pieces(n) {
                        Ok(pieces) => pieces
                            .iter()
                            .map(|p| super::deals::staged_path(&self.config.scratch_dir, p.deal_id))
                            .collect(),
                        Err(e) => return Err(Step::Wait(e.to_string())),
                    },
                    SectorKind::CommittedCapacity => Vec::new(),
                };
                // A sector sealed on the cluster: its files come from its worker first.
                let remote = self
                    .sealed_remotely(record)
                    .then(|| self.cluster.clone())
                    .flatten()
                    .map(|link| (link, tokio::runtime::Handle::current()));
                let miner = self.config.miner.0;
                Box::new(move || {
                    let fetched = match &remote {
                        Some((link, handle)) if !dest.is_dir() => {
                            Self::fetch_finalized(link, handle, miner, n, &scratch, keep)?
                        }
                        _ => None,
                    };
                    let how = storage::finalize_to_store(&scratch, &dest, &id, keep)?;
                    if let (Some((link, handle)), Some(copies)) = (&remote, &fetched) {
                        Self::drop_remote_copies(link, handle, miner, n, copies);
                    }
                    tracing::info!(sector = n, store = %dest.display(), ?how, "sector finalized into the store");
                    for path in staged {
                        match std::fs::remove_file(&path) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => {
                                tracing::warn!(path = %path.display(), error = %e, "cannot delete a piece's payload copy");
                            }
                        }
                    }
                    Ok(None)
                })
            }
            s => return Err(Step::Wait(format!("{s} is not a sealing phase"))),
        })
    }

    /// Runs `record`'s sealing phase here, on a blocking thread (what [`Pipeline::step`] does;
    /// [`Pipeline::tick`] runs phases as scheduled tasks instead).
    async fn run_inline(&self, record: &SectorRecord) -> ProviderResult<Step> {
        let work = match self.phase_work(record, None) {
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
            Some(info) => Lookup::Failed {
                exit_code: info.receipt.exit_code,
                reason: format!(
                    "the message was executed at epoch {} and failed: {} ({})",
                    info.epoch, info.receipt.exit, info.receipt.error
                ),
            },
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
        Ok(match self.follow_receipt(record, head, what, slot).await? {
            Followed::Step(step) => Some(step),
            Followed::Failed { reason, chain, .. } => Some(Step::Apply(
                Event::Failed {
                    reason,
                    retry: true,
                },
                Some(chain),
            )),
            Followed::Send => None,
        })
    }

    /// [`Self::follow`], with a failed message's exit code and the bookkeeping without it
    /// handed back for the caller to judge.
    async fn follow_receipt(
        &self,
        record: &SectorRecord,
        head: Epoch,
        what: &str,
        slot: fn(&mut SectorChain) -> &mut Option<SentMessage>,
    ) -> ProviderResult<Followed> {
        let mut chain = record.chain.clone();
        let Some(sent) = slot(&mut chain).clone() else {
            return Ok(Followed::Send);
        };
        Ok(match self.lookup(&sent, head).await? {
            Lookup::Ok => Followed::Step(done()),
            Lookup::Failed { exit_code, reason } => {
                *slot(&mut chain) = None;
                Followed::Failed {
                    exit_code,
                    reason,
                    chain: Box::new(chain),
                }
            }
            Lookup::Pending => Followed::Step(Step::Wait(format!(
                "{what} message {} not executed yet",
                hex::encode(sent.id)
            ))),
            Lookup::Stale => {
                tracing::warn!(
                    sector = record.number,
                    "{what} message not executed after {RESEND_AFTER} epochs: sending a new one"
                );
                Followed::Send
            }
        })
    }

    /// Signs `method`, records it in the sector's record (`slot` picks which message), then
    /// pushes it. A refused push leaves the recorded message to be looked up (and replaced once
    /// stale) like any other.
    async fn send(
        &self,
        record: &SectorRecord,
        head: Epoch,
        method: Method,
        proofs: usize,
        slot: fn(&mut SectorChain) -> &mut Option<SentMessage>,
    ) -> ProviderResult<Step> {
        self.send_batch(std::slice::from_ref(record), head, method, proofs, slot)
            .await
    }

    /// [`Self::send`] for a message that serves several sectors: it is recorded in every one of
    /// their records, in one transaction ([`PipelineStore::record_chains`]: all or none),
    /// before it is pushed, so after a crash each sector finds it and pushes the same message
    /// again.
    async fn send_batch(
        &self,
        records: &[SectorRecord],
        head: Epoch,
        method: Method,
        proofs: usize,
        slot: fn(&mut SectorChain) -> &mut Option<SentMessage>,
    ) -> ProviderResult<Step> {
        let view = self.api.proving_view(self.config.miner).await?;
        let store = &self.store;
        let pushed = self
            .messenger
            .send_recorded(
                &*self.api,
                view.worker,
                method,
                proofs,
                records.len().max(1),
                |signed| {
                    let sent = SentMessage {
                        id: signed.id(),
                        sent_at: head,
                        signed: lode_chain::codec::encode(signed),
                    };
                    let changes: Vec<(u64, u64, SectorChain)> = records
                        .iter()
                        .map(|r| {
                            let mut chain = r.chain.clone();
                            *slot(&mut chain) = Some(sent.clone());
                            (r.number, r.version, chain)
                        })
                        .collect();
                    store
                        .record_chains(&changes, unix_now())
                        .map(|_| ())
                        .map_err(pipeline_err)
                },
            )
            .await;
        Ok(match pushed {
            Ok(id) => Step::Wait(format!("message {} sent", hex::encode(id))),
            // Recorded but refused: looked up next epoch like a message lost by a crash.
            Err(ProviderError::Node(e)) => Step::Wait(format!("the node refused the message: {e}")),
            Err(e) => return Err(e),
        })
    }

    async fn submit_pre_commit(&self, record: &SectorRecord, head: Epoch) -> ProviderResult<Step> {
        Ok(match self.plan_pre_commit(record, head).await? {
            Planned::Step(step) => step,
            Planned::PreCommit(info) => {
                let method = Method::Miner(MinerMethod::PreCommitSectors(vec![info]));
                self.send(record, head, method, 0, |c| &mut c.pre_commit)
                    .await?
            }
            Planned::ProveCommit(_) => Step::Wait("not a pre-commit".into()),
        })
    }

    /// `SubmitPreCommit` up to the message: what the chain and the recorded message say, or
    /// the sector's entry of a new pre-commit.
    async fn plan_pre_commit(&self, record: &SectorRecord, head: Epoch) -> ProviderResult<Planned> {
        let n = record.number;
        let miner = self.config.miner;
        let chain = &record.chain;
        let (Some(comm_r), Some(comm_d), Some(seal_rand_epoch)) =
            (chain.comm_r, chain.comm_d, chain.seal_rand_epoch)
        else {
            return Ok(Planned::Step(failed(
                "the sector has no recorded commitments: seal it again",
                false,
            )));
        };
        let pre = self.api.miner_precommits(miner).await?;
        if let Some(p) = pre.iter().find(|p| p.sector_number == n) {
            return Ok(Planned::Step(if p.comm_r == comm_r {
                done()
            } else {
                failed(
                    format!("the chain holds another pre-commit for sector {n}: remove this one"),
                    false,
                )
            }));
        }
        let sectors = self.api.miner_sectors(miner).await?;
        if sectors.iter().any(|s| s.sector_number == n) {
            return Ok(Planned::Step(done()));
        }
        if let Some(step) = self
            .follow(record, head, "pre-commit", |c| &mut c.pre_commit)
            .await?
        {
            return Ok(Planned::Step(step));
        }
        // A deal sector's deals are checked again before each new pre-commit: one the chain
        // would refuse, or whose start comes too soon, is dropped and the sector packed again.
        let deals = match record.kind {
            SectorKind::Deals => match self.deals_for_pre_commit(record, head).await? {
                Ok(deals) => Some(deals),
                Err(step) => return Ok(Planned::Step(step)),
            },
            SectorKind::CommittedCapacity => None,
        };
        let p = &self.policy;
        let landing = head.saturating_add(1);
        if landing.saturating_sub(seal_rand_epoch) >= p.max_pre_commit_randomness_lookback {
            let why =
                format!("the seal ticket (epoch {seal_rand_epoch}) is too old for a pre-commit");
            return Ok(Planned::Step(if deals.is_some() {
                // The deals are kept: the sector is packed and sealed again with a new ticket.
                Step::Apply(
                    Event::Repack { reason: why },
                    Some(Box::new(SectorChain::default())),
                )
            } else {
                failed(
                    format!("{why}: remove the sector and pledge a new one"),
                    false,
                )
            }));
        }
        let mut expiration = landing
            .saturating_add(p.max_prove_commit_duration)
            .saturating_add(p.min_sector_expiration)
            .saturating_add(self.config.expiration_margin);
        let mut deal_ids = Vec::new();
        if let Some(deals) = deals {
            // The sector lives at least as long as its longest deal.
            expiration = expiration.max(deals.last_end);
            deal_ids = deals.ids;
        }
        Ok(Planned::PreCommit(PreCommitInfo {
            sector_number: n,
            comm_r,
            comm_d,
            seal_rand_epoch,
            deal_ids,
            expiration,
        }))
    }

    async fn submit_prove_commit(
        &self,
        record: &SectorRecord,
        head: Epoch,
    ) -> ProviderResult<Step> {
        Ok(match self.plan_prove_commit(record, head).await? {
            Planned::Step(step) => step,
            Planned::ProveCommit(info) => {
                let count = info.proofs.len();
                let method = Method::Miner(MinerMethod::ProveCommitSector {
                    sector_number: info.sector_number,
                    proofs: info.proofs,
                });
                self.send(record, head, method, count, |c| &mut c.prove_commit)
                    .await?
            }
            Planned::PreCommit(_) => Step::Wait("not a prove-commit".into()),
        })
    }

    /// `SubmitProveCommit` up to the message: what the chain and the recorded message say, or
    /// the sector's entry (its proofs) of a new prove-commit.
    async fn plan_prove_commit(
        &self,
        record: &SectorRecord,
        head: Epoch,
    ) -> ProviderResult<Planned> {
        let n = record.number;
        let miner = self.config.miner;
        let sectors = self.api.miner_sectors(miner).await?;
        if sectors.iter().any(|s| s.sector_number == n) {
            return Ok(Planned::Step(done()));
        }
        let batch = record.chain.prove_commit.as_ref().map_or(1, batch_size);
        match self
            .follow_receipt(record, head, "prove-commit", |c| &mut c.prove_commit)
            .await?
        {
            // Executed, yet the sector is not on chain: the batch skipped it (its own check
            // failed, or the message named it twice by mistake): retried, alone.
            Followed::Step(Step::Apply(Event::Done, _)) => {
                let mut chain = record.chain.clone();
                chain.prove_commit = None;
                return Ok(Planned::Step(Step::Apply(
                    Event::Failed {
                        reason: format!(
                            "the prove-commit of {batch} sectors was executed without proving sector {n}: it is sent again, alone"
                        ),
                        retry: true,
                    },
                    Some(Box::new(chain)),
                )));
            }
            Followed::Step(step) => return Ok(Planned::Step(step)),
            Followed::Failed {
                exit_code,
                reason,
                chain,
            } => {
                return Ok(Planned::Step(
                    self.prove_commit_failed(n, exit_code, reason, chain, batch),
                ));
            }
            Followed::Send => {}
        }
        if record.kind == SectorKind::Deals
            && let Some(step) = self.deals_for_prove_commit(record, head).await?
        {
            return Ok(Planned::Step(step));
        }
        let pre = self.api.miner_precommits(miner).await?;
        let Some(p) = pre.iter().find(|p| p.sector_number == n) else {
            return Ok(Planned::Step(failed(
                "the pre-commit is no longer on chain (expired: its deposit is gone); remove the sector",
                false,
            )));
        };
        if head > p.prove_by {
            return Ok(Planned::Step(failed(
                format!("the pre-commit expired at epoch {}", p.prove_by),
                false,
            )));
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
                return Ok(Planned::Step(failed(
                    format!("the PoRep proof cannot be read ({e}): prove again"),
                    true,
                )));
            }
        };
        Ok(Planned::ProveCommit(ProveCommitInfo {
            sector_number: n,
            proofs,
        }))
    }

    /// `Terminating`: ends the sector on chain with `TerminateSectors`, as idempotently as the
    /// other chain steps. The chain first: a sector no longer live there (terminated by an
    /// earlier message, or expired) is `Done` without a message. Then the recorded termination
    /// message's receipt: executed, it is `Done`; refused, it is forgotten (logged, the record
    /// keeps its state: `Terminating` has no failure state) and a new one is sent once the
    /// chain allows it. A message is sent only while the sector's deadline is mutable (neither
    /// open nor about to open: the chain refuses a termination then), recorded before it is
    /// pushed, and pushed again until executed or stale.
    async fn submit_terminate(&self, record: &SectorRecord, head: Epoch) -> ProviderResult<Step> {
        let n = record.number;
        let miner = self.config.miner;
        let sectors = self.api.miner_sectors(miner).await?;
        let Some(sector) = sectors.iter().find(|s| s.sector_number == n) else {
            return Ok(done());
        };
        match self
            .follow_receipt(record, head, "termination", |c| &mut c.terminate)
            .await?
        {
            Followed::Step(step) => return Ok(step),
            Followed::Failed { reason, chain, .. } => {
                tracing::warn!(sector = n, %reason, "the termination was refused; sending another once the chain allows it");
                self.store
                    .record_chain(n, record.version, *chain, unix_now())
                    .map_err(pipeline_err)?;
                return Ok(Step::Wait(format!("the termination was refused: {reason}")));
            }
            Followed::Send => {}
        }
        let view = self.api.proving_view(miner).await?;
        // The message lands at `head + 1` at the earliest, a few epochs later when the pool is
        // busy: the deadline must stay mutable (more than a challenge window before it opens)
        // until then.
        let margin = self.policy.wpost_challenge_window.saturating_add(2);
        if let Some(dl) = view.deadlines.iter().find(|d| d.index == sector.deadline)
            && head.saturating_add(1).saturating_add(margin) >= dl.open
        {
            return Ok(Step::Wait(format!(
                "deadline {} opens at epoch {} and closes at {}: the termination is sent after it",
                dl.index, dl.open, dl.close
            )));
        }
        let method = Method::Miner(MinerMethod::TerminateSectors(vec![SectorLocation {
            deadline: sector.deadline,
            partition: sector.partition,
            sectors: [n].into(),
        }]));
        self.send(record, head, method, 0, |c| &mut c.terminate)
            .await
    }

    /// A `Terminated` sector's files — its scratch and store directories, and the copies the
    /// cluster's workers hold — deleted once the chain cannot bring it back: `chain_finality`
    /// epochs after the termination message executed (its receipt's epoch), or, for a sector
    /// that left the chain without one (it expired, or an earlier message ended it), once it is
    /// not on chain at the head and that many epochs' time has passed since the sector became
    /// `Terminated`. Returns whether they are gone (each sector is then not looked at again by
    /// this process). `on_chain` is the tick's view of the miner's sectors, asked of the node
    /// once, by the first sector that needs it.
    ///
    /// # Errors
    /// [`ProviderError::Node`] when the chain cannot be asked; [`ProviderError::Pipeline`] when
    /// a directory cannot be deleted (tried again next tick).
    pub async fn drop_terminated(
        &self,
        record: &SectorRecord,
        head: Epoch,
        on_chain: &mut OnChain,
    ) -> ProviderResult<bool> {
        let n = record.number;
        if self.dropped_lock().contains(&n) {
            return Ok(true);
        }
        let finality = self.policy.chain_finality;
        let settled = match &record.chain.terminate {
            Some(sent) => match self.api.search_message(sent.id).await? {
                Some(info) if info.receipt.ok() => head >= info.epoch.saturating_add(finality),
                // Not found (yet, or any more): the chain is asked again next tick.
                _ => false,
            },
            None => {
                let wait = finality.saturating_mul(self.policy.epoch_duration_seconds);
                unix_now() >= record.state_since().saturating_add(wait)
                    && !on_chain
                        .contains(self.api.as_ref(), self.config.miner, n)
                        .await?
            }
        };
        if !settled {
            return Ok(false);
        }
        self.remove_remote_copies(record).await;
        let (scratch, store) = (self.scratch_path(n), self.store_path(n));
        let had = scratch.exists() || store.exists();
        storage::remove_sector(&scratch, &store)
            .map_err(|e| ProviderError::Pipeline(e.to_string()))?;
        if had {
            tracing::info!(sector = n, "the terminated sector's files are deleted");
        }
        self.dropped_lock().insert(n);
        Ok(true)
    }

    fn dropped_lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<u64>> {
        self.dropped.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A prove-commit the chain executed and refused: a retryable failure. When the chain refused
    /// the proof itself (`ExitCode::InvalidProof`: decided on the receipt's code, not its text),
    /// the stale Commit1 and Commit2 outputs are deleted first, so the retry finds no proof to
    /// send and goes back to Commit1 ([`Event::Redo`]) instead of resending the same bad proof;
    /// other refusals (out of gas, funds, nonce) keep the proof and resend it. A refused batch
    /// (`batch` sectors) says nothing of which proof was bad: every sector keeps its proof and
    /// is sent again alone.
    fn prove_commit_failed(
        &self,
        n: u64,
        exit_code: u32,
        reason: String,
        chain: Box<SectorChain>,
        batch: usize,
    ) -> Step {
        let mut reason = reason;
        if batch > 1 {
            // Which sector's proof the chain refused is not known: each is retried alone,
            // its proof kept; a single message then says whether that proof is invalid.
            reason.push_str(&format!(
                " (a prove-commit of {batch} sectors: this one is sent again, alone)"
            ));
        } else if exit_code == ExitCode::InvalidProof.value() {
            if let Ok(dir) = SectorDir::open(&self.dir(n)) {
                for file in [dir.commit2(), dir.commit1_public(), dir.commit1()] {
                    match std::fs::remove_file(&file) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            // Nothing decided: the receipt is read again next tick.
                            return Step::Wait(format!(
                                "the chain refused the proof, and the stale {} cannot be deleted: {e}",
                                file.display()
                            ));
                        }
                    }
                }
            }
            reason.push_str(": the proof is computed again from Commit1");
        }
        Step::Apply(
            Event::Failed {
                reason,
                retry: true,
            },
            Some(chain),
        )
    }

    /// Whether sector `n` has a proof to send (`commit2.bin` under its final name).
    fn has_proof(&self, n: u64) -> bool {
        SectorDir::open(&self.dir(n)).is_ok_and(|dir| dir.commit2().is_file())
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
        // A node that does not answer stops the chain steps, not the sealing: phases go on
        // with the last head seen (a PreCommit1 starts when its ticket was fresh then; drawing
        // a ticket waits for the node), and chain steps wait for the node without counting as
        // the sector's failures — a node restarting for an upgrade must not fail every sector.
        let (head, node_away) = match self.api.chain_head().await {
            Ok(h) => {
                self.last_head.store(h.epoch, Ordering::SeqCst);
                (h.epoch, false)
            }
            Err(e) => match self.last_head.load(Ordering::SeqCst) {
                NO_HEAD => return Err(e),
                last => {
                    tracing::warn!(error = %e, last_head = last, "the node does not answer: sealing phases go on, chain steps wait for it");
                    (last, true)
                }
            },
        };
        let mut out = self.apply_finished(false, head).await;
        let records = self.store.list().map_err(pipeline_err)?;
        let now = unix_now();
        // The pieces of deal sectors that will never be proven are placed again, or fail.
        if !node_away {
            for r in records.iter().filter(|r| {
                r.kind == SectorKind::Deals
                    && matches!(
                        r.state(),
                        SectorState::FailedUnrecoverable
                            | SectorState::Removed
                            | SectorState::Terminated
                    )
            }) {
                if let Err(e) = self.release_pieces(r, head).await {
                    tracing::warn!(sector = r.number, error = %e, "cannot release the sector's deal pieces; trying again next tick");
                }
            }
        }
        // Terminated sectors' files go once the chain cannot bring the sectors back.
        if !node_away {
            let mut on_chain = OnChain::default();
            for r in records
                .iter()
                .filter(|r| r.state() == SectorState::Terminated)
            {
                if let Err(e) = self.drop_terminated(r, head, &mut on_chain).await {
                    tracing::warn!(sector = r.number, error = %e, "cannot delete the terminated sector's files; trying again next tick");
                }
            }
        }
        let mut pre_commits: Vec<(SectorRecord, PreCommitInfo)> = Vec::new();
        let mut prove_commits: Vec<(SectorRecord, ProveCommitInfo)> = Vec::new();
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
            let fresh = state != SectorState::PreCommit1 || self.ticket_fresh(&record, head);
            // A committed-capacity sector's sealing phases run on the cluster, when there is one.
            let remote = self.remote_kind(&record, fresh);
            let wanted = TaskKind::for_state(state).filter(|_| fresh && remote.is_none());
            if let Err(e) = self
                .tasks
                .want(record.number, wanted.map(|k| (k, record.version)), now)
            {
                tracing::warn!(sector = record.number, error = %e, "cannot queue the sector's task");
                continue;
            }
            if remote.is_none()
                && (wanted.is_some()
                    || state.is_final()
                    || state == SectorState::Proving
                    || node_away)
            {
                continue;
            }
            let started = std::time::Instant::now();
            // A chain step's first try may share its message with other sectors': its entry
            // waits for the batch below. A retried one goes alone (one bad sector cannot block
            // the others twice).
            let batching = self.config.max_batch > 1
                && record.progress.failures == 0
                && matches!(
                    state,
                    SectorState::SubmitPreCommit | SectorState::SubmitProveCommit
                );
            let step = if let Some(kind) = remote {
                self.remote_step(&record, kind).await
            } else if batching {
                let planned = if state == SectorState::SubmitPreCommit {
                    self.plan_pre_commit(&record, head).await
                } else {
                    self.plan_prove_commit(&record, head).await
                };
                match planned {
                    Ok(Planned::Step(s)) => Ok(s),
                    Ok(Planned::PreCommit(info)) => {
                        pre_commits.push((record, info));
                        continue;
                    }
                    Ok(Planned::ProveCommit(info)) => {
                        prove_commits.push((record, info));
                        continue;
                    }
                    Err(e) => Err(e),
                }
            } else {
                self.step(&record, head).await
            };
            let step = match step {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(sector = record.number, state = %state, error = %e, "sector step failed; trying again next epoch");
                    continue;
                }
            };
            let (event, chain) = match step {
                Step::Apply(event, chain) => (event, chain),
                Step::Wait(why) => {
                    self.set_waiting(record.number, Some(why));
                    continue;
                }
            };
            self.set_waiting(record.number, None);
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
                    if remote.is_none() {
                        self.observe(&event, state, started.elapsed().as_secs_f64());
                    }
                    out.push(self.moved(record.number, state, &event, &new, head));
                }
                Err(e) => {
                    tracing::warn!(sector = record.number, error = %e, "sector change refused");
                }
            }
        }
        if self.batch_due(&pre_commits, now) {
            for chunk in pre_commits.chunks(self.config.max_batch.max(1)) {
                let (records, infos): (Vec<SectorRecord>, Vec<PreCommitInfo>) =
                    chunk.iter().cloned().unzip();
                let method = Method::Miner(MinerMethod::PreCommitSectors(infos));
                self.send_logged(&records, head, method, 0, |c| &mut c.pre_commit)
                    .await;
            }
        }
        if self.batch_due(&prove_commits, now) {
            for chunk in prove_commits.chunks(self.config.max_batch.max(1)) {
                let (records, infos): (Vec<SectorRecord>, Vec<ProveCommitInfo>) =
                    chunk.iter().cloned().unzip();
                let proofs = infos.iter().map(|i| i.proofs.len()).sum();
                let method = if let [one] = infos.as_slice() {
                    Method::Miner(MinerMethod::ProveCommitSector {
                        sector_number: one.sector_number,
                        proofs: one.proofs.clone(),
                    })
                } else {
                    Method::Miner(MinerMethod::ProveCommitSectors(infos))
                };
                self.send_logged(&records, head, method, proofs, |c| &mut c.prove_commit)
                    .await;
            }
        }
        let admitted = self.tasks.admit(now).map_err(task_err)?;
        let batch = self.pre_commit1_batch(&admitted, head);
        for claim in admitted {
            if let Some(t) = self.start(claim, head, batch.as_ref()) {
                out.push(t);
            }
        }
        if let Err(e) = self.tasks.prune(now) {
            tracing::warn!(error = %e, "cannot prune the task history");
        }
        Ok(out)
    }

    /// The PreCommit1 tasks admitted together, as one batch when there are two or more
    /// ([`seal::pre_commit1_batch`]: one walk of the graph for all of them, each sector's files
    /// those of its own PreCommit1). Only claims that [`Pipeline::start`] will start join.
    fn pre_commit1_batch(&self, admitted: &[Claim], head: Epoch) -> Option<Arc<Pc1Batch>> {
        let mut sectors = Vec::new();
        for claim in admitted.iter().filter(|c| c.kind == TaskKind::PreCommit1) {
            let Ok(Some(record)) = self.store.get(claim.sector) else {
                continue;
            };
            let Some(ticket) = record.chain.ticket else {
                continue;
            };
            if record.version == claim.sector_version
                && record.state() == SectorState::PreCommit1
                && self.ticket_fresh(&record, head)
                && sectors.len() < lode_sealing::labels::MAX_BATCH
            {
                sectors.push(BatchMember {
                    number: record.number,
                    path: self.dir(record.number),
                    id: self.sector_id(record.number),
                    ticket: randomness_node(ticket),
                });
            }
        }
        if sectors.len() < 2 {
            return None;
        }
        self.pc1_batches.fetch_add(1, Ordering::Relaxed);
        self.pc1_batched_sectors
            .fetch_add(sectors.len() as u64, Ordering::Relaxed);
        tracing::info!(
            sectors = ?sectors.iter().map(|m| m.number).collect::<Vec<_>>(),
            "PreCommit1 of these sectors runs as one batch"
        );
        Some(Arc::new(Pc1Batch {
            sectors,
            cache_dir: self.config.cache_dir.clone(),
            gpu: self.gpu.clone(),
            outcome: std::sync::OnceLock::new(),
        }))
    }

    /// PreCommit1 batches started since this pipeline was made, and the sectors in them.
    pub fn pre_commit1_batches(&self) -> (u64, u64) {
        (
            self.pc1_batches.load(Ordering::Relaxed),
            self.pc1_batched_sectors.load(Ordering::Relaxed),
        )
    }

    /// Whether the sectors waiting to share a message send it now: one has waited
    /// [`PipelineConfig::batch_wait_epochs`] in its state, or they fill a message.
    fn batch_due<T>(&self, waiting: &[(SectorRecord, T)], now: u64) -> bool {
        let wait = self
            .config
            .batch_wait_epochs
            .saturating_mul(self.policy.epoch_duration_seconds.max(1));
        !waiting.is_empty()
            && (waiting.len() >= self.config.max_batch
                || waiting
                    .iter()
                    .any(|(r, _)| now >= r.state_since().saturating_add(wait)))
    }

    /// [`Self::send_batch`] from a tick: the outcome logged (the sectors are looked at again
    /// next tick whatever happened).
    async fn send_logged(
        &self,
        records: &[SectorRecord],
        head: Epoch,
        method: Method,
        proofs: usize,
        slot: fn(&mut SectorChain) -> &mut Option<SentMessage>,
    ) {
        let numbers: Vec<u64> = records.iter().map(|r| r.number).collect();
        match self.send_batch(records, head, method, proofs, slot).await {
            Ok(Step::Wait(why)) => {
                tracing::info!(sectors = ?numbers, %why, "one message for the sectors")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(sectors = ?numbers, error = %e, "cannot send the sectors' message; trying again next tick")
            }
        }
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
    fn start(
        &self,
        claim: Claim,
        head: Epoch,
        batch: Option<&Arc<Pc1Batch>>,
    ) -> Option<Transition> {
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
        let work = match self.phase_work(&record, batch) {
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
        let pool = self
            .pool
            .get_or_init(|| sealing_pool(self.tasks.capacity().sealing.cores))
            .clone();
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

/// One sector of a [`Pc1Batch`].
struct BatchMember {
    number: u64,
    path: PathBuf,
    id: SectorId,
    ticket: lode_proofs::node::Node,
}

/// The PreCommit1 tasks of one tick run as one batch: each task's phase asks the batch for its
/// sector's output; the first to ask runs [`seal::pre_commit1_batch`] for all of them while the
/// others wait for it, and a failure fails every task of the batch (each is retried as its own
/// task, and batched again with those admitted beside it).
struct Pc1Batch {
    sectors: Vec<BatchMember>,
    cache_dir: PathBuf,
    gpu: Option<Arc<lode_sealing::accel::Gpu>>,
    outcome: std::sync::OnceLock<Result<Vec<seal::PreCommit1Output>, String>>,
}

impl Pc1Batch {
    /// Where sector `number` is in the batch.
    fn position(&self, number: u64) -> Option<usize> {
        self.sectors.iter().position(|m| m.number == number)
    }

    /// The output of the batch's sector `at`, running the batch if no task has yet.
    fn run(&self, at: usize) -> ProviderResult<seal::PreCommit1Output> {
        let outcome = self.outcome.get_or_init(|| {
            let dirs = self
                .sectors
                .iter()
                .map(|m| SectorDir::create(&m.path))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            let members: Vec<seal::BatchSector<'_>> = dirs
                .iter()
                .zip(&self.sectors)
                .map(|(dir, m)| seal::BatchSector {
                    dir,
                    id: m.id,
                    ticket: m.ticket,
                })
                .collect();
            seal::pre_commit1_batch(
                &members,
                &self.cache_dir,
                self.gpu.as_deref(),
                &mut no_progress,
            )
            .map_err(|e| e.to_string())
        });
        match outcome {
            Ok(outs) => outs.get(at).cloned().ok_or_else(|| {
                ProviderError::Pipeline("a batched PreCommit1 lost a sector's output".into())
            }),
            Err(e) => Err(ProviderError::Pipeline(format!("batched PreCommit1: {e}"))),
        }
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

/// The miner's sector numbers on chain at the head, asked of the node at most once per tick, by
/// the first terminated sector that needs them ([`Pipeline::drop_terminated`]).
#[derive(Debug, Default)]
pub struct OnChain(Option<std::collections::HashSet<u64>>);

impl OnChain {
    /// Whether sector `n` of `miner` is on chain (asking the node the first time).
    async fn contains<A: NodeApi>(
        &mut self,
        api: &A,
        miner: ActorId,
        n: u64,
    ) -> ProviderResult<bool> {
        if self.0.is_none() {
            let numbers = api
                .miner_sectors(miner)
                .await?
                .iter()
                .map(|s| s.sector_number)
                .collect();
            self.0 = Some(numbers);
        }
        Ok(self.0.as_ref().is_some_and(|s| s.contains(&n)))
    }
}
