//! The compute-over-data actor: jobs that run next to stored pieces, paid through escrow, with
//! results checked by replication or by a named verifier, and collateral that makes a wrong answer
//! cost the provider money.
//!
//! # The rules
//!
//! A **job** ([`JobTerms`]) names a WASM module by its BLAKE3 hash, its entrypoint, arguments and
//! environment, the input pieces (CommP and padded size, each mounted under `/inputs`), the
//! execution limits, a payment per provider, the collateral each provider locks, the named
//! providers (or none: the first that accept), a verification mode and a **deadline** epoch. What
//! the module computes is off chain; the chain sees a 32-byte **result** (the executor's BLAKE3 hash
//! of the job's canonical outputs and exit status).
//!
//! - [`ComputeMethod::SubmitJob`]: the client escrows `k × payment` (plus the verifier's fee in
//!   verifier mode) with the message's value; the job gets the next [`JobId`].
//! - [`ComputeMethod::AcceptJob`]: a provider (a miner; sent by its owner or worker) takes one of
//!   the `k` slots before the deadline, locking the collateral with the message's value and naming,
//!   for each input, an active deal of its own for that piece that lasts past the job's settlement.
//! - **`replicated(k)`**: each provider commits `H(result ‖ provider ‖ salt)` ([`commitment`]) by
//!   the deadline ([`ComputeMethod::CommitResult`]) and, after it, within
//!   [`ComputePolicy::reveal_epochs`], reveals `result` and `salt`
//!   ([`ComputeMethod::RevealResult`]). At settlement: if strictly more than `k / 2` providers
//!   revealed the same result, it is final; each of them is paid and gets its collateral back; every
//!   other provider that accepted (another result, or no reveal) loses its collateral, half burnt
//!   and half to the client. Without a majority the job fails: the client is refunded, the
//!   collateral of every provider that revealed is returned, and those that did not reveal are
//!   slashed the same way. Payments of slots never filled or not earned go back to the client.
//! - **`verifier(address)`**: the named verifier accepts the role first, locking its bond
//!   ([`ComputeMethod::AcceptVerifier`]); then one provider accepts and posts its result in clear
//!   by the deadline ([`ComputeMethod::PostResult`]). Until [`ComputePolicy::dispute_epochs`]
//!   after the deadline the verifier either attests ([`ComputeMethod::Attest`]) or disputes with
//!   its own result ([`ComputeMethod::Dispute`]). Attested: the provider is paid, the verifier
//!   earns its fee. Undisputed (the verifier did nothing): the provider is paid, the verifier's
//!   bond is forfeited (half burnt, half to the client) and its fee refunded to the client.
//!   Disputed: the verifier's result is final (the client chose to trust it), the provider loses
//!   its collateral (half burnt, half to the client), the client gets the payment back and the
//!   verifier earns its fee. A provider that accepted and posted nothing is slashed likewise and
//!   the client refunded.
//! - **Settlement** happens in cron at the end of the job's window ([`Job::settle_epoch`]), or
//!   earlier by anyone's [`ComputeMethod::SettleJob`] once the outcome is known (every replica
//!   revealed; the verifier attested or disputed). [`ComputeMethod::CancelJob`]: the client takes
//!   back a job no provider has accepted.
//!
//! "Half" is `floor(amount / 2)` to the client and the rest burnt, so every atto is accounted for.
//!
//! # Custody
//!
//! Every token of a job is the compute actor's balance until settlement: the client's escrow,
//! each provider's collateral and the verifier's bond. [`Job::held`] is what a job holds; the
//! actor's balance always equals the sum over jobs ([`crate::invariants`] checks it). Payments go
//! to the provider (the miner actor: its free balance, withdrawn by its owner); collateral and bonds
//! go back to the account that locked them.

use serde::{Deserialize, Serialize};

use crate::actors::{ActorKind, BURNT_FUNDS, COMPUTE, market, miner};
use crate::error::{ActorResult, ChainError, ChainResult, OutOfRange, abort};
use crate::keys;
use crate::policy::ComputePolicy;
use crate::runtime::Runtime;
use crate::types::{ActorId, Address, DealId, Epoch, TokenAmount};

/// A job's id: its number in submission order.
pub type JobId = u64;

/// An input piece of a job, mounted read-only under `/inputs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInput {
    /// CommP of the piece (trunc254 node bytes).
    pub piece_cid: [u8; 32],
    /// Padded piece size.
    pub piece_size: u64,
    /// The payload's length: exactly these first bytes of the unpadded piece are mounted.
    pub payload_size: u64,
    /// Its path under `/inputs` (relative, `/`-separated, no `.` or `..` component).
    pub mount: String,
}

/// What the executor may spend on a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLimits {
    /// Fuel (one unit per WASM operator).
    pub fuel: u64,
    /// Linear memory, in 64 KiB pages.
    pub memory_pages: u32,
    /// Wall time, milliseconds.
    pub timeout_ms: u64,
    /// Bytes the job may hold under `/outputs`.
    pub output_bytes: u64,
    /// Files and directories the job may create under `/outputs`.
    pub output_entries: u32,
}

/// How a job's result is checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verification {
    /// `k` providers run the job; a strict majority decides.
    Replicated {
        /// Replicas.
        k: u64,
    },
    /// One provider runs it; the named verifier attests or disputes.
    Verifier {
        /// The verifier (an account).
        verifier: ActorId,
        /// What the verifier earns for attesting or disputing (from the client's escrow).
        fee: TokenAmount,
        /// What the verifier locks when it accepts the role.
        bond: TokenAmount,
    },
}

/// What a client asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTerms {
    /// BLAKE3 hash of the WASM module's bytes.
    pub module: [u8; 32],
    /// The exported function to run (`_start` for a WASI command).
    pub entrypoint: String,
    /// Arguments (`argv[1..]`).
    pub args: Vec<String>,
    /// Environment variables, in order.
    pub env: Vec<(String, String)>,
    /// Input pieces.
    pub inputs: Vec<JobInput>,
    /// Execution limits.
    pub limits: JobLimits,
    /// Paid to each provider whose result is final.
    pub payment: TokenAmount,
    /// What each provider locks.
    pub provider_collateral: TokenAmount,
    /// Providers (miners) the client names; empty: the first that accept.
    pub providers: Vec<ActorId>,
    /// How the result is checked.
    pub verification: Verification,
    /// Last epoch for accepting, committing (replicated) or posting (verifier) a result.
    pub deadline: Epoch,
}

impl JobTerms {
    /// How many providers run the job: `k`, or 1 in verifier mode.
    pub fn replicas(&self) -> u64 {
        match self.verification {
            Verification::Replicated { k } => k,
            Verification::Verifier { .. } => 1,
        }
    }

    /// What the client escrows: `replicas × payment`, plus the verifier's fee.
    pub fn escrow(&self) -> Option<TokenAmount> {
        let pay = TokenAmount(self.payment.0.checked_mul(u128::from(self.replicas()))?);
        match &self.verification {
            Verification::Replicated { .. } => Some(pay),
            Verification::Verifier { fee, .. } => pay.checked_add(*fee),
        }
    }

    fn text_bytes(&self) -> u64 {
        let strings = std::iter::once(&self.entrypoint)
            .chain(&self.args)
            .chain(self.env.iter().flat_map(|(k, v)| [k, v]))
            .chain(self.inputs.iter().map(|i| &i.mount));
        strings.fold(0u64, |n, s| n.saturating_add(s.len() as u64))
    }
}

/// A provider's place in a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// The provider (miner).
    pub provider: ActorId,
    /// The account that locked the collateral (and gets it back).
    pub payer: ActorId,
    /// Collateral still held.
    pub collateral: TokenAmount,
    /// The deals that hold the inputs, one per input.
    pub deals: Vec<DealId>,
    /// `H(result ‖ provider ‖ salt)`, once committed (replicated).
    pub commitment: Option<[u8; 32]>,
    /// The result, once revealed (replicated) or posted (verifier mode).
    pub result: Option<[u8; 32]>,
}

/// What the verifier said.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The posted result is right.
    Attested,
    /// The posted result is wrong; this is the right one.
    Disputed([u8; 32]),
}

/// The verifier's place in a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifierSlot {
    /// The verifier account (also where its bond returns).
    pub verifier: ActorId,
    /// Bond still held.
    pub bond: TokenAmount,
    /// Its verdict, once given.
    pub verdict: Option<Verdict>,
}

/// Why a job ended without a final result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    /// No provider accepted it by the deadline.
    NoProvider,
    /// No strict majority of the replicas revealed one result.
    NoMajority,
    /// The provider posted no result by the deadline (verifier mode).
    NoResult,
    /// The client cancelled it before any provider accepted.
    Cancelled,
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A result is final.
    Final {
        /// The final result.
        result: [u8; 32],
        /// Whether it came from a dispute (the verifier's result, the provider slashed).
        disputed: bool,
    },
    /// No result.
    Failed(Failure),
}

/// Who got what at settlement (every atto the job held).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// The epoch it settled.
    pub epoch: Epoch,
    /// Payments to providers (and the verifier's fee), by recipient.
    pub paid: Vec<(ActorId, TokenAmount)>,
    /// Collateral and bonds returned, by recipient.
    pub returned: Vec<(ActorId, TokenAmount)>,
    /// Collateral and bonds slashed, by the party that lost them.
    pub slashed: Vec<(ActorId, TokenAmount)>,
    /// The client's own escrow refunded.
    pub refunded: TokenAmount,
    /// The client's half of what was slashed.
    pub to_client: TokenAmount,
    /// What was burnt.
    pub burnt: TokenAmount,
}

/// A job on chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The client.
    pub client: ActorId,
    /// What it asked for.
    pub terms: JobTerms,
    /// When it was submitted.
    pub submitted: Epoch,
    /// The client's escrow still held.
    pub escrow: TokenAmount,
    /// Providers that accepted, in order.
    pub slots: Vec<Slot>,
    /// The verifier, once it accepted (verifier mode).
    pub verifier: Option<VerifierSlot>,
    /// How it ended, once settled.
    pub outcome: Option<Outcome>,
    /// Who got what, once settled.
    pub settlement: Option<Settlement>,
}

impl Job {
    /// What the job holds of the compute actor's balance.
    pub fn held(&self) -> Option<TokenAmount> {
        let mut sum = self.escrow;
        for s in &self.slots {
            sum = sum.checked_add(s.collateral)?;
        }
        if let Some(v) = &self.verifier {
            sum = sum.checked_add(v.bond)?;
        }
        Some(sum)
    }

    /// The epoch whose cron settles the job: the end of its reveal or dispute window.
    pub fn settle_epoch(&self, p: &ComputePolicy) -> Epoch {
        let window = match self.terms.verification {
            Verification::Replicated { .. } => p.reveal_epochs,
            Verification::Verifier { .. } => p.dispute_epochs,
        };
        self.terms.deadline.saturating_add(window)
    }

    /// Whether the outcome is known before the window ends: every replica revealed, or the
    /// verifier gave its verdict.
    pub fn decided(&self) -> bool {
        match self.terms.verification {
            Verification::Replicated { k } => {
                self.slots.len() as u64 == k && self.slots.iter().all(|s| s.result.is_some())
            }
            Verification::Verifier { .. } => {
                self.verifier.as_ref().is_some_and(|v| v.verdict.is_some())
            }
        }
    }
}

/// The actor's totals.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputeState {
    /// The next job id.
    pub next_job_id: JobId,
}

/// Compute methods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ComputeMethod {
    /// Submits a job; the message's value must be [`JobTerms::escrow`]. Returns the [`JobId`].
    SubmitJob(JobTerms),
    /// A provider takes a slot; the value must be the job's provider collateral.
    AcceptJob {
        /// The job.
        job: JobId,
        /// The provider (a miner whose owner or worker sends this).
        provider: Address,
        /// For each input, in order, the provider's active deal holding that piece.
        deals: Vec<DealId>,
    },
    /// The named verifier takes its role; the value must be the job's bond.
    AcceptVerifier {
        /// The job.
        job: JobId,
    },
    /// A replica commits `H(result ‖ provider ‖ salt)` by the deadline.
    CommitResult {
        /// The job.
        job: JobId,
        /// The provider.
        provider: Address,
        /// [`commitment`] of its result.
        commitment: [u8; 32],
    },
    /// A replica reveals its committed result after the deadline.
    RevealResult {
        /// The job.
        job: JobId,
        /// The provider.
        provider: Address,
        /// The result.
        result: [u8; 32],
        /// The salt of the commitment.
        salt: [u8; 32],
    },
    /// The provider of a verifier-mode job posts its result by the deadline.
    PostResult {
        /// The job.
        job: JobId,
        /// The provider.
        provider: Address,
        /// The result.
        result: [u8; 32],
    },
    /// The verifier agrees with the posted result.
    Attest {
        /// The job.
        job: JobId,
    },
    /// The verifier disputes the posted result with its own.
    Dispute {
        /// The job.
        job: JobId,
        /// The verifier's result.
        result: [u8; 32],
    },
    /// Settles a job whose outcome is known (or whose window has passed).
    SettleJob {
        /// The job.
        job: JobId,
    },
    /// The client withdraws a job no provider has accepted.
    CancelJob {
        /// The job.
        job: JobId,
    },
}

impl ComputeMethod {
    /// Whether the method takes the message's value (into the job's books).
    pub fn takes_value(&self) -> bool {
        matches!(
            self,
            ComputeMethod::SubmitJob(_)
                | ComputeMethod::AcceptJob { .. }
                | ComputeMethod::AcceptVerifier { .. }
        )
    }
}

/// `H(result ‖ provider ‖ salt)`: what a replica commits (BLAKE3 keyed by the context
/// `lode/compute/commitment`, over the 32-byte result, the provider id as 8 big-endian bytes and
/// the 32-byte salt).
pub fn commitment(result: &[u8; 32], provider: ActorId, salt: &[u8; 32]) -> [u8; 32] {
    *blake3::Hasher::new_derive_key("lode/compute/commitment")
        .update(result)
        .update(&provider.0.to_be_bytes())
        .update(salt)
        .finalize()
        .as_bytes()
}

/// Genesis state.
pub fn genesis() -> ComputeState {
    ComputeState::default()
}

/// Loads the totals (the default before the first job).
pub fn load(rt: &Runtime<'_, '_>) -> ChainResult<ComputeState> {
    Ok(rt.state.get(keys::COMPUTE)?.unwrap_or_default())
}

/// A job.
pub fn job(rt: &Runtime<'_, '_>, id: JobId) -> ChainResult<Option<Job>> {
    rt.state.get(&keys::job(id))
}

fn expect_job(rt: &Runtime<'_, '_>, id: JobId) -> ActorResult<Job> {
    match job(rt, id)? {
        Some(j) => Ok(j),
        None => abort!(NotFound, "no compute job {id}"),
    }
}

fn save_job(rt: &mut Runtime<'_, '_>, id: JobId, j: &Job) -> ChainResult<()> {
    rt.state.put(keys::job(id), j)
}

fn open_job(rt: &Runtime<'_, '_>, id: JobId) -> ActorResult<Job> {
    let j = expect_job(rt, id)?;
    if j.outcome.is_some() {
        abort!(IllegalState, "compute job {id} is already settled");
    }
    Ok(j)
}

/// Resolves `provider` to a miner that `caller` (its owner or worker) may act for.
fn provider_for(rt: &Runtime<'_, '_>, caller: ActorId, provider: &Address) -> ActorResult<ActorId> {
    let Some(id) = rt.resolve(provider)? else {
        abort!(NotFound, "no actor {provider}")
    };
    if rt.expect_actor(id)?.kind != ActorKind::Miner {
        abort!(IllegalArgument, "{id} is not a miner");
    }
    let info = miner::info(rt, id)?;
    if caller != info.owner && caller != info.worker {
        abort!(
            Forbidden,
            "only the owner or worker of {id} may act for it in compute jobs"
        );
    }
    Ok(id)
}

fn slot_index(j: &Job, id: JobId, provider: ActorId) -> ActorResult<usize> {
    match j.slots.iter().position(|s| s.provider == provider) {
        Some(i) => Ok(i),
        None => abort!(NotFound, "{provider} has not accepted compute job {id}"),
    }
}

fn slot_mut(j: &mut Job, index: usize) -> ActorResult<&mut Slot> {
    match j.slots.get_mut(index) {
        Some(s) => Ok(s),
        None => abort!(IllegalState, "slot {index} vanished"),
    }
}

/// Runs a compute method.
pub fn invoke(
    rt: &mut Runtime<'_, '_>,
    caller: ActorId,
    value: TokenAmount,
    method: ComputeMethod,
) -> ActorResult<Vec<u8>> {
    match method {
        ComputeMethod::SubmitJob(terms) => submit(rt, caller, value, terms),
        ComputeMethod::AcceptJob {
            job,
            provider,
            deals,
        } => {
            let provider = provider_for(rt, caller, &provider)?;
            accept(rt, caller, value, job, provider, deals)
        }
        ComputeMethod::AcceptVerifier { job } => accept_verifier(rt, caller, value, job),
        ComputeMethod::CommitResult {
            job,
            provider,
            commitment,
        } => {
            let provider = provider_for(rt, caller, &provider)?;
            commit(rt, job, provider, commitment)
        }
        ComputeMethod::RevealResult {
            job,
            provider,
            result,
            salt,
        } => {
            let provider = provider_for(rt, caller, &provider)?;
            reveal(rt, job, provider, result, salt)
        }
        ComputeMethod::PostResult {
            job,
            provider,
            result,
        } => {
            let provider = provider_for(rt, caller, &provider)?;
            post(rt, job, provider, result)
        }
        ComputeMethod::Attest { job } => verdict(rt, caller, job, Verdict::Attested),
        ComputeMethod::Dispute { job, result } => {
            verdict(rt, caller, job, Verdict::Disputed(result))
        }
        ComputeMethod::SettleJob { job } => {
            let j = open_job(rt, job)?;
            let due = j.settle_epoch(&rt.policy.compute);
            if !j.decided() && rt.epoch < due {
                abort!(
                    IllegalState,
                    "compute job {job} is not decided yet: it settles at epoch {due}"
                );
            }
            rt.state.delete(&keys::job_settle(due, job));
            settle(rt, job, j)?;
            Ok(Vec::new())
        }
        ComputeMethod::CancelJob { job } => {
            let j = open_job(rt, job)?;
            if caller != j.client {
                abort!(
                    Forbidden,
                    "only the client {} may cancel job {job}",
                    j.client
                );
            }
            if !j.slots.is_empty() {
                abort!(
                    IllegalState,
                    "compute job {job} has been accepted by a provider; it settles at epoch {}",
                    j.settle_epoch(&rt.policy.compute)
                );
            }
            let due = j.settle_epoch(&rt.policy.compute);
            rt.state.delete(&keys::job_settle(due, job));
            settle_with(rt, job, j, Some(Failure::Cancelled))?;
            Ok(Vec::new())
        }
    }
}

fn check_terms(rt: &Runtime<'_, '_>, client: ActorId, t: &JobTerms) -> ActorResult<()> {
    let p = &rt.policy.compute;
    let k = t.replicas();
    if k == 0 || k > p.max_replicas {
        abort!(
            IllegalArgument,
            "a job asks for 1 to {} replicas, not {k}",
            p.max_replicas
        );
    }
    if t.inputs.is_empty() || t.inputs.len() as u64 > p.max_inputs {
        abort!(
            IllegalArgument,
            "a job has 1 to {} input pieces, not {}",
            p.max_inputs,
            t.inputs.len()
        );
    }
    if t.text_bytes() > p.max_terms_bytes {
        abort!(
            IllegalArgument,
            "the job's entrypoint, arguments, environment and mounts take {} bytes; at most {}",
            t.text_bytes(),
            p.max_terms_bytes
        );
    }
    if t.entrypoint.is_empty() {
        abort!(IllegalArgument, "the job names no entrypoint");
    }
    let mut mounts = std::collections::BTreeSet::new();
    for input in &t.inputs {
        if !valid_mount(&input.mount) {
            abort!(
                IllegalArgument,
                "mount {:?} is not a relative path without `.` or `..` components",
                input.mount
            );
        }
        if !mounts.insert(input.mount.as_str()) {
            abort!(IllegalArgument, "mount {:?} is used twice", input.mount);
        }
        if !input.piece_size.is_power_of_two() || input.piece_size < 128 {
            abort!(
                IllegalArgument,
                "piece size {} is not a padded piece size",
                input.piece_size
            );
        }
        // The unpadded capacity of a padded piece: 127 of every 128 bytes.
        let capacity = (input.piece_size / 128).saturating_mul(127);
        if input.payload_size == 0 || input.payload_size > capacity {
            abort!(
                IllegalArgument,
                "a payload of {} bytes does not fit a {}-byte piece",
                input.payload_size,
                input.piece_size
            );
        }
    }
    let l = &t.limits;
    if l.fuel == 0 || l.memory_pages == 0 || l.timeout_ms == 0 {
        abort!(
            IllegalArgument,
            "a job's fuel, memory and timeout must be positive"
        );
    }
    if t.deadline <= rt.epoch {
        abort!(
            IllegalArgument,
            "the deadline {} has passed (epoch {})",
            t.deadline,
            rt.epoch
        );
    }
    if t.deadline.saturating_sub(rt.epoch) > p.max_deadline_epochs {
        abort!(
            IllegalArgument,
            "the deadline {} is more than {} epochs ahead",
            t.deadline,
            p.max_deadline_epochs
        );
    }
    let named: std::collections::BTreeSet<_> = t.providers.iter().collect();
    if named.len() != t.providers.len() {
        abort!(IllegalArgument, "a provider is named twice");
    }
    if !t.providers.is_empty() && t.providers.len() as u64 != k {
        abort!(
            IllegalArgument,
            "name {k} providers or none (the first {k} that accept), not {}",
            t.providers.len()
        );
    }
    for &m in &t.providers {
        if rt.actor(m)?.map(|a| a.kind) != Some(ActorKind::Miner) {
            abort!(IllegalArgument, "{m} is not a miner");
        }
    }
    if let Verification::Verifier { verifier, .. } = &t.verification {
        match rt.actor(*verifier)?.map(|a| a.kind) {
            Some(ActorKind::Account { .. }) => {}
            _ => abort!(IllegalArgument, "the verifier {verifier} is not an account"),
        }
        if *verifier == client {
            abort!(IllegalArgument, "a client cannot verify its own job");
        }
    }
    Ok(())
}

/// A mount path: relative, `/`-separated, no empty, `.` or `..` component, at most 255 bytes.
pub fn valid_mount(m: &str) -> bool {
    !m.is_empty()
        && m.len() <= 255
        && !m.contains('\0')
        && !m.contains('\\')
        && m.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

fn submit(
    rt: &mut Runtime<'_, '_>,
    client: ActorId,
    value: TokenAmount,
    terms: JobTerms,
) -> ActorResult<Vec<u8>> {
    match rt.expect_actor(client)?.kind {
        ActorKind::Account { .. } => {}
        _ => abort!(Forbidden, "only an account submits compute jobs"),
    }
    check_terms(rt, client, &terms)?;
    let Some(escrow) = terms.escrow() else {
        abort!(Overflow, "the job's escrow overflows")
    };
    if value != escrow {
        abort!(
            IllegalArgument,
            "a job escrows replicas × payment{} = {escrow}; the message carries {value}",
            match terms.verification {
                Verification::Verifier { .. } => " + the verifier's fee",
                Verification::Replicated { .. } => "",
            }
        );
    }
    let mut st = load(rt)?;
    let id = st.next_job_id;
    st.next_job_id = id.checked_add(1).ok_or(OutOfRange("job ids"))?;
    rt.state.put(keys::COMPUTE.to_vec(), &st)?;
    let j = Job {
        client,
        terms,
        submitted: rt.epoch,
        escrow,
        slots: Vec::new(),
        verifier: None,
        outcome: None,
        settlement: None,
    };
    rt.state.put(
        keys::job_settle(j.settle_epoch(&rt.policy.compute), id),
        &(),
    )?;
    save_job(rt, id, &j)?;
    Ok(crate::codec::encode(&id))
}

fn accept(
    rt: &mut Runtime<'_, '_>,
    payer: ActorId,
    value: TokenAmount,
    id: JobId,
    provider: ActorId,
    deals: Vec<DealId>,
) -> ActorResult<Vec<u8>> {
    let mut j = open_job(rt, id)?;
    if rt.epoch >= j.terms.deadline {
        abort!(
            IllegalState,
            "compute job {id} stopped taking providers at epoch {}",
            j.terms.deadline
        );
    }
    if j.slots.len() as u64 >= j.terms.replicas() {
        abort!(IllegalState, "compute job {id} has all its providers");
    }
    if !j.terms.providers.is_empty() && !j.terms.providers.contains(&provider) {
        abort!(Forbidden, "compute job {id} does not name {provider}");
    }
    if j.slots.iter().any(|s| s.provider == provider) {
        abort!(IllegalState, "{provider} already accepted compute job {id}");
    }
    if let Verification::Verifier { verifier, .. } = j.terms.verification
        && j.verifier.is_none()
    {
        abort!(
            IllegalState,
            "the verifier {verifier} has not accepted compute job {id} yet"
        );
    }
    if value != j.terms.provider_collateral {
        abort!(
            IllegalArgument,
            "compute job {id} takes {} of provider collateral; the message carries {value}",
            j.terms.provider_collateral
        );
    }
    if deals.len() != j.terms.inputs.len() {
        abort!(
            IllegalArgument,
            "name one deal per input: {} inputs, {} deals",
            j.terms.inputs.len(),
            deals.len()
        );
    }
    let until = j.settle_epoch(&rt.policy.compute);
    for (input, &deal_id) in j.terms.inputs.iter().zip(&deals) {
        rt.charge_gas(rt.policy.gas_per_sector)?;
        let Some(d) = market::deal(rt, deal_id)? else {
            abort!(NotFound, "no deal {deal_id}")
        };
        let p = &d.proposal;
        if p.provider != provider
            || p.piece_cid != input.piece_cid
            || p.piece_size != input.piece_size
        {
            abort!(
                IllegalArgument,
                "deal {deal_id} is not {provider}'s deal for the piece mounted at {:?}",
                input.mount
            );
        }
        if d.state.activation_epoch.is_none() {
            abort!(
                IllegalState,
                "deal {deal_id} is not active yet: its sector must be proven first"
            );
        }
        if p.end_epoch <= until {
            abort!(
                IllegalState,
                "deal {deal_id} ends at epoch {}, before job {id} settles at {until}",
                p.end_epoch
            );
        }
    }
    j.escrow_check()?;
    j.slots.push(Slot {
        provider,
        payer,
        collateral: value,
        deals,
        commitment: None,
        result: None,
    });
    save_job(rt, id, &j)?;
    Ok(Vec::new())
}

impl Job {
    fn escrow_check(&self) -> ActorResult<()> {
        match self.held() {
            Some(_) => Ok(()),
            None => abort!(Overflow, "the job's holdings overflow"),
        }
    }
}

fn accept_verifier(
    rt: &mut Runtime<'_, '_>,
    caller: ActorId,
    value: TokenAmount,
    id: JobId,
) -> ActorResult<Vec<u8>> {
    let mut j = open_job(rt, id)?;
    let Verification::Verifier { verifier, bond, .. } = j.terms.verification else {
        abort!(IllegalArgument, "compute job {id} has no verifier")
    };
    if caller != verifier {
        abort!(
            Forbidden,
            "compute job {id} names {verifier} as its verifier"
        );
    }
    if j.verifier.is_some() {
        abort!(
            IllegalState,
            "the verifier already accepted compute job {id}"
        );
    }
    if rt.epoch >= j.terms.deadline {
        abort!(IllegalState, "compute job {id} is past its deadline");
    }
    if value != bond {
        abort!(
            IllegalArgument,
            "compute job {id} takes a verifier bond of {bond}; the message carries {value}"
        );
    }
    j.verifier = Some(VerifierSlot {
        verifier,
        bond,
        verdict: None,
    });
    j.escrow_check()?;
    save_job(rt, id, &j)?;
    Ok(Vec::new())
}

fn commit(
    rt: &mut Runtime<'_, '_>,
    id: JobId,
    provider: ActorId,
    c: [u8; 32],
) -> ActorResult<Vec<u8>> {
    let mut j = open_job(rt, id)?;
    if !matches!(j.terms.verification, Verification::Replicated { .. }) {
        abort!(
            IllegalArgument,
            "compute job {id} has a verifier: post the result in clear (PostResult)"
        );
    }
    if rt.epoch > j.terms.deadline {
        abort!(
            IllegalState,
            "compute job {id} took commitments until epoch {}",
            j.terms.deadline
        );
    }
    let i = slot_index(&j, id, provider)?;
    let s = slot_mut(&mut j, i)?;
    if s.commitment.is_some() {
        abort!(
            IllegalState,
            "{provider} already committed to compute job {id}"
        );
    }
    s.commitment = Some(c);
    save_job(rt, id, &j)?;
    Ok(Vec::new())
}

fn reveal(
    rt: &mut Runtime<'_, '_>,
    id: JobId,
    provider: ActorId,
    result: [u8; 32],
    salt: [u8; 32],
) -> ActorResult<Vec<u8>> {
    let mut j = open_job(rt, id)?;
    let end = j.settle_epoch(&rt.policy.compute);
    if rt.epoch <= j.terms.deadline || rt.epoch > end {
        abort!(
            IllegalState,
            "compute job {id} takes reveals in epochs {} to {end}",
            j.terms.deadline.saturating_add(1)
        );
    }
    let i = slot_index(&j, id, provider)?;
    let s = slot_mut(&mut j, i)?;
    let Some(c) = s.commitment else {
        abort!(
            IllegalState,
            "{provider} committed nothing to compute job {id}"
        )
    };
    if s.result.is_some() {
        abort!(
            IllegalState,
            "{provider} already revealed its result of job {id}"
        );
    }
    if commitment(&result, provider, &salt) != c {
        abort!(
            IllegalArgument,
            "the result and salt do not match {provider}'s commitment to job {id}"
        );
    }
    s.result = Some(result);
    save_job(rt, id, &j)?;
    Ok(Vec::new())
}

fn post(
    rt: &mut Runtime<'_, '_>,
    id: JobId,
    provider: ActorId,
    result: [u8; 32],
) -> ActorResult<Vec<u8>> {
    let mut j = open_job(rt, id)?;
    if !matches!(j.terms.verification, Verification::Verifier { .. }) {
        abort!(
            IllegalArgument,
            "compute job {id} is replicated: commit, then reveal"
        );
    }
    if rt.epoch > j.terms.deadline {
        abort!(
            IllegalState,
            "compute job {id} took results until epoch {}",
            j.terms.deadline
        );
    }
    let i = slot_index(&j, id, provider)?;
    let s = slot_mut(&mut j, i)?;
    if s.result.is_some() {
        abort!(
            IllegalState,
            "{provider} already posted its result of job {id}"
        );
    }
    s.result = Some(result);
    save_job(rt, id, &j)?;
    Ok(Vec::new())
}

fn verdict(
    rt: &mut Runtime<'_, '_>,
    caller: ActorId,
    id: JobId,
    v: Verdict,
) -> ActorResult<Vec<u8>> {
    let mut j = open_job(rt, id)?;
    let end = j.settle_epoch(&rt.policy.compute);
    let posted = j.slots.first().and_then(|s| s.result);
    let Some(slot) = j.verifier.as_mut() else {
        abort!(
            IllegalState,
            "compute job {id} has no verifier that accepted"
        )
    };
    if caller != slot.verifier {
        abort!(
            Forbidden,
            "only the verifier {} may judge job {id}",
            slot.verifier
        );
    }
    if slot.verdict.is_some() {
        abort!(IllegalState, "the verifier already judged job {id}");
    }
    if rt.epoch > end {
        abort!(
            IllegalState,
            "compute job {id} took verdicts until epoch {end}"
        );
    }
    let Some(posted) = posted else {
        abort!(IllegalState, "no result of job {id} has been posted")
    };
    if v == Verdict::Disputed(posted) {
        abort!(
            IllegalArgument,
            "the disputed result equals the posted one: attest instead"
        );
    }
    slot.verdict = Some(v);
    save_job(rt, id, &j)?;
    Ok(Vec::new())
}

/// Settles every job whose window ends at this epoch (the compute actor's cron).
pub fn end_epoch(rt: &mut Runtime<'_, '_>) -> ActorResult<()> {
    for (key, ()) in rt.state.scan::<()>(&keys::job_settle_prefix(rt.epoch))? {
        rt.state.delete(&key);
        let Some(id) = keys::last_u64(&key) else {
            continue;
        };
        let j = expect_job(rt, id)?;
        if j.outcome.is_none() {
            settle(rt, id, j)?;
        }
    }
    Ok(())
}

/// The books of one settlement, moved at the end.
struct Books {
    client: ActorId,
    s: Settlement,
}

impl Books {
    fn pay(&mut self, to: ActorId, amount: TokenAmount) {
        if !amount.is_zero() {
            self.s.paid.push((to, amount));
        }
    }
    fn give_back(&mut self, to: ActorId, amount: TokenAmount) {
        if !amount.is_zero() {
            self.s.returned.push((to, amount));
        }
    }
    fn refund(&mut self, amount: TokenAmount) -> ActorResult<()> {
        self.s.refunded = self
            .s
            .refunded
            .checked_add(amount)
            .ok_or(OutOfRange("a compute refund"))?;
        Ok(())
    }
    /// Half (floored) to the client, the rest burnt.
    fn slash(&mut self, party: ActorId, amount: TokenAmount) -> ActorResult<()> {
        if amount.is_zero() {
            return Ok(());
        }
        let half = TokenAmount(amount.0.checked_div(2).ok_or(OutOfRange("a slash"))?);
        let burnt = amount.checked_sub(half).ok_or(OutOfRange("a slash"))?;
        self.s.slashed.push((party, amount));
        self.s.to_client = self
            .s
            .to_client
            .checked_add(half)
            .ok_or(OutOfRange("a slash"))?;
        self.s.burnt = self
            .s
            .burnt
            .checked_add(burnt)
            .ok_or(OutOfRange("a slash"))?;
        Ok(())
    }
    fn transfer(&self, rt: &mut Runtime<'_, '_>) -> ActorResult<()> {
        for &(to, amount) in self.s.paid.iter().chain(&self.s.returned) {
            rt.transfer(COMPUTE, to, amount)?;
        }
        let to_client = self
            .s
            .refunded
            .checked_add(self.s.to_client)
            .ok_or(OutOfRange("a compute refund"))?;
        rt.transfer(COMPUTE, self.client, to_client)?;
        rt.transfer(COMPUTE, BURNT_FUNDS, self.s.burnt)
    }
}

fn settle(rt: &mut Runtime<'_, '_>, id: JobId, j: Job) -> ActorResult<()> {
    settle_with(rt, id, j, None)
}

/// Applies the rules of the module docs, pays everyone out of what the job holds, and records the
/// outcome. `forced` ends the job with that failure whatever its state (a cancellation).
fn settle_with(
    rt: &mut Runtime<'_, '_>,
    id: JobId,
    mut j: Job,
    forced: Option<Failure>,
) -> ActorResult<()> {
    let Some(held) = j.held() else {
        abort!(Overflow, "compute job {id} holds more than fits")
    };
    let mut b = Books {
        client: j.client,
        s: Settlement {
            epoch: rt.epoch,
            ..Settlement::default()
        },
    };
    let payment = j.terms.payment;
    let outcome = if let Some(f) = forced {
        for s in &j.slots {
            b.give_back(s.payer, s.collateral);
        }
        if let Some(v) = &j.verifier {
            b.give_back(v.verifier, v.bond);
        }
        b.refund(j.escrow)?;
        Outcome::Failed(f)
    } else {
        match j.terms.verification.clone() {
            Verification::Replicated { k } => settle_replicated(&j, k, payment, &mut b)?,
            Verification::Verifier { fee, .. } => settle_verified(&j, fee, payment, &mut b)?,
        }
    };
    // Whatever of the client's escrow was not paid out goes back to it.
    let paid =
        b.s.paid
            .iter()
            .try_fold(TokenAmount::ZERO, |acc, (_, a)| acc.checked_add(*a))
            .ok_or(OutOfRange("compute payments"))?;
    if forced.is_none() {
        let rest = match j.escrow.checked_sub(paid) {
            Some(r) => r,
            None => abort!(IllegalState, "compute job {id} pays more than its escrow"),
        };
        b.refund(rest)?;
    }
    let out = [&b.s.paid, &b.s.returned]
        .into_iter()
        .flatten()
        .try_fold(TokenAmount::ZERO, |acc, (_, a)| acc.checked_add(*a))
        .and_then(|x| x.checked_add(b.s.refunded))
        .and_then(|x| x.checked_add(b.s.to_client))
        .and_then(|x| x.checked_add(b.s.burnt))
        .ok_or(OutOfRange("a compute settlement"))?;
    if out != held {
        return Err(ChainError::Corrupt(format!(
            "compute job {id} settles {out} of the {held} it holds"
        ))
        .into());
    }
    b.transfer(rt)?;
    j.escrow = TokenAmount::ZERO;
    for s in &mut j.slots {
        s.collateral = TokenAmount::ZERO;
    }
    if let Some(v) = &mut j.verifier {
        v.bond = TokenAmount::ZERO;
    }
    j.outcome = Some(outcome);
    j.settlement = Some(b.s);
    save_job(rt, id, &j)?;
    Ok(())
}

fn settle_replicated(j: &Job, k: u64, payment: TokenAmount, b: &mut Books) -> ActorResult<Outcome> {
    // Count each revealed result; a strict majority of k is final.
    let mut counts: std::collections::BTreeMap<[u8; 32], u64> = Default::default();
    for r in j.slots.iter().filter_map(|s| s.result) {
        let c = counts.entry(r).or_insert(0);
        *c = c.saturating_add(1);
    }
    let majority = counts
        .iter()
        .find(|&(_, &n)| n > k.checked_div(2).unwrap_or(0))
        .map(|(r, _)| *r);
    match majority {
        Some(result) => {
            for s in &j.slots {
                if s.result == Some(result) {
                    b.pay(s.provider, payment);
                    b.give_back(s.payer, s.collateral);
                } else {
                    b.slash(s.provider, s.collateral)?;
                }
            }
            Ok(Outcome::Final {
                result,
                disputed: false,
            })
        }
        None => {
            for s in &j.slots {
                if s.result.is_some() {
                    b.give_back(s.payer, s.collateral);
                } else {
                    b.slash(s.provider, s.collateral)?;
                }
            }
            Ok(Outcome::Failed(if j.slots.is_empty() {
                Failure::NoProvider
            } else {
                Failure::NoMajority
            }))
        }
    }
}

fn settle_verified(
    j: &Job,
    fee: TokenAmount,
    payment: TokenAmount,
    b: &mut Books,
) -> ActorResult<Outcome> {
    let Some(s) = j.slots.first() else {
        if let Some(v) = &j.verifier {
            b.give_back(v.verifier, v.bond);
        }
        return Ok(Outcome::Failed(Failure::NoProvider));
    };
    // A provider accepts only after the verifier did, so it is there.
    let Some(v) = &j.verifier else {
        abort!(
            IllegalState,
            "a provider accepted a job whose verifier did not"
        )
    };
    let Some(result) = s.result else {
        b.slash(s.provider, s.collateral)?;
        b.give_back(v.verifier, v.bond);
        return Ok(Outcome::Failed(Failure::NoResult));
    };
    match v.verdict {
        Some(Verdict::Attested) => {
            b.pay(s.provider, payment);
            b.give_back(s.payer, s.collateral);
            b.pay(v.verifier, fee);
            b.give_back(v.verifier, v.bond);
            Ok(Outcome::Final {
                result,
                disputed: false,
            })
        }
        None => {
            b.pay(s.provider, payment);
            b.give_back(s.payer, s.collateral);
            b.slash(v.verifier, v.bond)?;
            Ok(Outcome::Final {
                result,
                disputed: false,
            })
        }
        Some(Verdict::Disputed(theirs)) => {
            b.slash(s.provider, s.collateral)?;
            b.pay(v.verifier, fee);
            b.give_back(v.verifier, v.bond);
            Ok(Outcome::Final {
                result: theirs,
                disputed: true,
            })
        }
    }
}
