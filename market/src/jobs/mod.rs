//! The provider's side of compute-over-data jobs: which jobs it takes, running them next to its
//! pieces, and committing, revealing or posting their results on chain in time.
//!
//! A client uploads the job's WASM module to the provider (`PUT /modules/<blake3 hex>`, checked
//! against its hash: [`modules::ModuleStore`]) and submits the job on chain. [`JobService`] ticks
//! through the chain's open jobs: one that its [`JobSettings`] allow, whose module it holds and
//! whose every input is a piece of one of its active deals, it accepts (locking the collateral).
//! Then it materialises the inputs from its unsealed copies ([`crate::retrieval::PieceSource`],
//! unsealing on demand), runs the job through a [`JobRunner`] (the executor), and follows the rules
//! of `lode_chain::actors::compute`: a replica commits `H(result ‖ provider ‖ salt)` by the
//! deadline and reveals after it; the provider of a verifier job posts its result. The outputs
//! stay at `<jobs dir>/<id>/outputs.tar`, served at `GET /job/<id>/outputs` ([`http`]) so the
//! client and verifiers can fetch and check them.
//!
//! Every step is recorded before its message is pushed ([`records::JobRecords`], in the market's
//! database), so a provider that crashes resumes each job where it stopped and never sends a step
//! twice; a message that does not land is pushed again.

pub mod http;
pub mod modules;
pub mod records;
pub mod runner;
pub mod service;

use std::future::Future;
use std::path::PathBuf;

use lode_chain::actors::compute::{ComputeMethod, JobTerms};
use lode_chain::message::SignedMessage;
use lode_chain::types::{ActorId, Epoch, TokenAmount};
use lode_node::rpc::types::{DealView, JobView, MessageLookupInfo};
use serde::{Deserialize, Serialize};

use crate::error::MarketResult;
use crate::provider::RecordMessage;

pub use runner::{ExecutorRunner, executor_job};
pub use service::JobService;

/// Which jobs the provider takes (`[market.compute]` of its configuration).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobSettings {
    /// Whether the provider takes compute jobs at all.
    pub enabled: bool,
    /// Whether it takes jobs that name no provider (the first that accept run them).
    pub accept_unnamed: bool,
    /// The least payment per job it runs for.
    pub min_payment: TokenAmount,
    /// The most collateral it locks for one job.
    pub max_collateral: TokenAmount,
    /// The most fuel a job may ask for.
    pub max_fuel: u64,
    /// The most linear memory a job may ask for, in 64 KiB pages.
    pub max_memory_pages: u32,
    /// The most output a job may ask for, bytes.
    pub max_output_bytes: u64,
    /// The longest wall time a job may ask for, milliseconds.
    pub max_timeout_ms: u64,
    /// The largest module it stores, bytes.
    pub max_module_bytes: u64,
    /// Verifiers (`l0…`) whose jobs it takes; empty: any verifier.
    pub trusted_verifiers: Vec<String>,
    /// Epochs it wants between accepting and the deadline (to fetch inputs, run and commit).
    pub min_lead_epochs: u64,
    /// Epochs after which a step's message that has not landed is pushed again.
    pub resend_after_epochs: u64,
    /// Where job inputs, work files and outputs live (relative to the provider's directory).
    pub dir: PathBuf,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            enabled: true,
            accept_unnamed: true,
            min_payment: TokenAmount::ZERO,
            max_collateral: TokenAmount::tokens(10),
            max_fuel: 10_000_000_000,
            max_memory_pages: 16_384,
            max_output_bytes: 256 << 20,
            max_timeout_ms: 10 * 60 * 1000,
            max_module_bytes: 64 << 20,
            trusted_verifiers: Vec::new(),
            min_lead_epochs: 3,
            resend_after_epochs: 5,
            dir: PathBuf::from("jobs"),
        }
    }
}

/// What the job service needs from the chain: the node's view and the worker's messages.
pub trait JobChain: Send + Sync + 'static {
    /// The head epoch.
    fn head(&self) -> impl Future<Output = MarketResult<Epoch>> + Send;
    /// Every open job from id `from`.
    fn open_jobs(&self, from: u64) -> impl Future<Output = MarketResult<Vec<JobView>>> + Send;
    /// One job.
    fn job(&self, id: u64) -> impl Future<Output = MarketResult<Option<JobView>>> + Send;
    /// The provider's deals (published or active).
    fn provider_deals(
        &self,
        provider: ActorId,
    ) -> impl Future<Output = MarketResult<Vec<DealView>>> + Send;
    /// Signs, records (through `record`, before pushing) and pushes a compute message with
    /// `value`, its gas covering `checks` more checks (one per input deal); returns its id.
    fn send(
        &self,
        method: ComputeMethod,
        value: TokenAmount,
        checks: usize,
        record: RecordMessage,
    ) -> impl Future<Output = MarketResult<[u8; 32]>> + Send;
    /// Pushes a recorded message again (a node that has it may refuse it: not an error to act on).
    fn push_again(&self, message: SignedMessage) -> impl Future<Output = MarketResult<()>> + Send;
    /// Where a message was executed, with its receipt.
    fn search(
        &self,
        id: [u8; 32],
    ) -> impl Future<Output = MarketResult<Option<MessageLookupInfo>>> + Send;
}

/// A job to run, everything on local disk.
#[derive(Clone, Debug)]
pub struct RunRequest {
    /// The job id (the executor's random seed derives from it).
    pub job_id: u64,
    /// Its terms on chain.
    pub terms: JobTerms,
    /// The module's bytes (their BLAKE3 hash is `terms.module`).
    pub module: Vec<u8>,
    /// Each input's mount path and the file holding its unpadded payload.
    pub inputs: Vec<(String, PathBuf)>,
    /// A directory of the job's own, empty but for `inputs/`; the runner leaves the outputs
    /// archive at `<work>/outputs.tar`.
    pub work: PathBuf,
}

/// What running a job gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutput {
    /// The result the chain sees: the executor's hash of the outputs and exit status.
    pub result: [u8; 32],
    /// A line for people: the exit code or the trap.
    pub summary: String,
}

/// Runs jobs (the deterministic executor). Blocking: the service calls it off the async runtime.
pub trait JobRunner: Send + Sync + 'static {
    /// Runs `request`; a job that traps or exits non-zero still has a result.
    ///
    /// # Errors
    /// Only what stops the provider from running the job at all (a disk error, an invalid
    /// module it should not have accepted): the job is then left to the chain's rules.
    fn run(&self, request: &RunRequest) -> MarketResult<RunOutput>;
}
