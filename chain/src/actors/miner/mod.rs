//! The storage miner actor: sectors from pre-commit to termination, Window PoSt deadlines, faults
//! and recoveries, pledge, vesting rewards, fee debt and consensus-fault slashing.
//!
//! Lifecycle of a sector: **pre-commit** (deposit locked) → **prove-commit** after the interactive
//! delay (PoRep verified, deals activated, verified allocations claimed, initial pledge locked,
//! deposit released, the sector assigned to a mutable deadline as *unproven*) → the first
//! successful **Window PoSt** of its partition gives it power → each proving period it must be
//! proven again in its deadline. A missed deadline makes its sectors *faulty* (power removed, no
//! fee that period); faults still present at a deadline end pay the continued-fault fee; declared
//! recoveries regain power at the next PoSt; a sector faulty for `fault_max_age` is terminated
//! with the termination fee. Pre-commits not proven in time lose their deposit.
//!
//! Every penalty becomes fee debt, paid from vesting rewards first, then the free balance, and
//! burnt; a miner with fee debt cannot win blocks.

pub mod state;

use std::collections::BTreeSet;

use lode_proofs::node::Node;
use lode_proofs::porep::PorepPublic;
use lode_proofs::post::PublicSector;
use lode_proofs::sector::{SectorSize, randomness_node};
use lode_proofs::verifier::WindowPostStatement;
use serde::{Deserialize, Serialize};

use crate::actors::{ActorKind, economics, market, power, verifreg};
use crate::codec::encode;
use crate::error::{ActorError, ChainError, OutOfRange, abort};
use crate::header::BlockHeader;
use crate::keys;
use crate::math::wide_mul;
use crate::monies;
use crate::runtime::{RandomnessTag, Runtime};
use crate::types::{ActorId, Address, Epoch, PowerPair, SectorNumber, TokenAmount};

pub use state::{
    Deadline, DeadlineInfo, MinerInfo, MinerState, Partition, PreCommit, PreCommitInfo,
    SectorOnChain, VestingEntry,
};

/// Sectors named by deadline and partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorLocation {
    /// Deadline index.
    pub deadline: u64,
    /// Partition index within the deadline.
    pub partition: u64,
    /// Sector numbers.
    pub sectors: BTreeSet<SectorNumber>,
}

/// One partition of a Window PoSt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostPartition {
    /// Partition index.
    pub index: u64,
    /// Sectors the miner cannot prove (they become faulty).
    pub skipped: BTreeSet<SectorNumber>,
}

/// A Window PoSt submission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowPostParams {
    /// The deadline (must be the open one).
    pub deadline: u64,
    /// Partitions proven.
    pub partitions: Vec<PostPartition>,
    /// One proof per partition, in the same order.
    pub proofs: Vec<Vec<u8>>,
}

/// Miner methods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MinerMethod {
    /// Pre-commits sectors, locking their deposits.
    PreCommitSectors(Vec<PreCommitInfo>),
    /// Proves a pre-committed sector (one Groth16 proof per PoRep partition).
    ProveCommitSector {
        /// The sector.
        sector_number: SectorNumber,
        /// Proofs.
        proofs: Vec<Vec<u8>>,
    },
    /// Window PoSt for the open deadline.
    SubmitWindowPost(WindowPostParams),
    /// Declares sectors faulty before their deadline's cutoff.
    DeclareFaults(Vec<SectorLocation>),
    /// Declares faulty sectors recovered (power returns with the next PoSt).
    DeclareRecoveries(Vec<SectorLocation>),
    /// Terminates sectors early (termination fee).
    TerminateSectors(Vec<SectorLocation>),
    /// Extends sectors' expiration.
    ExtendSectorExpiration {
        /// The sectors.
        sectors: Vec<SectorLocation>,
        /// New expiration epoch.
        new_expiration: Epoch,
    },
    /// Withdraws available balance to the owner; returns the amount.
    WithdrawBalance {
        /// Most to withdraw.
        amount: TokenAmount,
    },
    /// Pays fee debt from vesting rewards and balance.
    RepayDebt,
    /// Reports two different blocks the miner signed at one epoch.
    ReportConsensusFault {
        /// One block.
        first: Box<BlockHeader>,
        /// Another block at the same epoch.
        second: Box<BlockHeader>,
    },
}

/// Loads a miner's info.
pub fn info(rt: &Runtime<'_, '_>, miner: ActorId) -> Result<MinerInfo, ActorError> {
    match rt.state.get::<MinerInfo>(&keys::miner_info(miner))? {
        Some(i) => Ok(i),
        None => abort!(NotFound, "{miner} is not a miner"),
    }
}

/// Loads a miner's state.
pub fn load_state(rt: &Runtime<'_, '_>, miner: ActorId) -> Result<MinerState, ActorError> {
    match rt.state.get::<MinerState>(&keys::miner_state(miner))? {
        Some(s) => Ok(s),
        None => abort!(NotFound, "{miner} is not a miner"),
    }
}

/// Stores a miner's state, keeping the power actor's total of locked tokens.
fn save_state(rt: &mut Runtime<'_, '_>, miner: ActorId, st: &MinerState) -> Result<(), ChainError> {
    let before = rt
        .state
        .get::<MinerState>(&keys::miner_state(miner))?
        .map(|s| s.total_locked())
        .unwrap_or_default();
    power::update_locked(rt, before, st.total_locked())?;
    rt.state.put(keys::miner_state(miner), st)
}

fn load_deadline(rt: &Runtime<'_, '_>, miner: ActorId, index: u64) -> Result<Deadline, ChainError> {
    Ok(rt
        .state
        .get(&keys::deadline(miner, index))?
        .unwrap_or_default())
}

fn save_deadline(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    index: u64,
    dl: &Deadline,
) -> Result<(), ChainError> {
    if dl.partitions.is_empty() && dl.posted.is_empty() {
        rt.state.delete(&keys::deadline(miner, index));
        Ok(())
    } else {
        rt.state.put(keys::deadline(miner, index), dl)
    }
}

fn balance(rt: &Runtime<'_, '_>, miner: ActorId) -> Result<TokenAmount, ActorError> {
    Ok(rt.expect_actor(miner)?.balance)
}

fn require_control(info: &MinerInfo, caller: ActorId) -> Result<(), ActorError> {
    if caller != info.owner && caller != info.worker {
        abort!(
            Forbidden,
            "{caller} is neither the owner nor the worker of this miner"
        );
    }
    Ok(())
}

/// Creates a miner owned by `owner`, with `worker` (an account) signing its blocks.
pub fn create(
    rt: &mut Runtime<'_, '_>,
    owner: ActorId,
    worker: &Address,
    sector_size: SectorSize,
) -> Result<ActorId, ActorError> {
    if !rt.policy.accepts(sector_size) {
        abort!(
            IllegalArgument,
            "sector size {} is not accepted on {}",
            sector_size.name(),
            rt.policy.network
        );
    }
    let Some(worker) = rt.resolve(worker)? else {
        abort!(
            NotFound,
            "worker {worker} does not exist: send it funds first"
        )
    };
    let worker_key = rt.account_key(worker)?;
    rt.account_key(owner)?;
    let id = rt.create_actor(ActorKind::Miner)?;
    let offset = state::proving_period_offset(rt.policy, id, rt.epoch);
    let info = MinerInfo {
        owner,
        worker,
        worker_key,
        sector_size,
        partition_sectors: sector_size.window_post_sectors_per_partition() as u64,
    };
    rt.state.put(keys::miner_info(id), &info)?;
    let st = MinerState {
        proving_period_start: state::current_proving_period_start(rt.policy, rt.epoch, offset),
        ..MinerState::default()
    };
    let pps = st.proving_period_start;
    let mut st = st;
    st.current_deadline = current_deadline_index(rt.policy, pps, rt.epoch);
    rt.state.put(keys::miner_state(id), &st)?;
    power::register_miner(rt, id, sector_size)?;
    Ok(id)
}

/// Runs a miner method.
pub fn invoke(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    caller: ActorId,
    method: MinerMethod,
) -> Result<Vec<u8>, ActorError> {
    let ret = match method {
        MinerMethod::PreCommitSectors(infos) => {
            pre_commit_sectors(rt, miner, caller, infos)?;
            Vec::new()
        }
        MinerMethod::ProveCommitSector {
            sector_number,
            proofs,
        } => {
            prove_commit_sector(rt, miner, caller, sector_number, &proofs)?;
            Vec::new()
        }
        MinerMethod::SubmitWindowPost(p) => {
            submit_window_post(rt, miner, caller, &p)?;
            Vec::new()
        }
        MinerMethod::DeclareFaults(locs) => {
            declare_faults(rt, miner, caller, &locs)?;
            Vec::new()
        }
        MinerMethod::DeclareRecoveries(locs) => {
            declare_recoveries(rt, miner, caller, &locs)?;
            Vec::new()
        }
        MinerMethod::TerminateSectors(locs) => {
            encode(&terminate_sectors(rt, miner, caller, &locs)?)
        }
        MinerMethod::ExtendSectorExpiration {
            sectors,
            new_expiration,
        } => {
            extend_sector_expiration(rt, miner, caller, &sectors, new_expiration)?;
            Vec::new()
        }
        MinerMethod::WithdrawBalance { amount } => {
            encode(&withdraw_balance(rt, miner, caller, amount)?)
        }
        MinerMethod::RepayDebt => {
            let info = info(rt, miner)?;
            require_control(&info, caller)?;
            let mut st = load_state(rt, miner)?;
            let burnt = repay_partial_debt(rt, miner, &mut st)?;
            save_state(rt, miner, &st)?;
            encode(&burnt)
        }
        MinerMethod::ReportConsensusFault { first, second } => {
            encode(&report_consensus_fault(rt, miner, caller, &first, &second)?)
        }
    };
    Ok(ret)
}

/// The index of the deadline open at `now` in the period starting at `period_start` (0 before the
/// period starts).
fn current_deadline_index(policy: &crate::policy::Policy, period_start: Epoch, now: Epoch) -> u64 {
    now.saturating_sub(period_start)
        .checked_div(policy.wpost_challenge_window)
        .unwrap_or(0)
}

/// Schedules the deadline cron if none is pending, starting at the deadline that contains now.
fn ensure_cron(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    st: &mut MinerState,
) -> Result<(), ChainError> {
    if st.cron_epoch.is_some() {
        return Ok(());
    }
    let p = rt.policy;
    let now = rt.epoch;
    // Catch the proving period up to now (it stood still while no cron ran).
    let pp = p.wpost_proving_period();
    while pp > 0 && st.proving_period_start.saturating_add(pp) <= now {
        st.proving_period_start = st.proving_period_start.saturating_add(pp);
    }
    st.current_deadline = current_deadline_index(p, st.proving_period_start, now);
    let dl = DeadlineInfo::new(p, st.proving_period_start, st.current_deadline);
    schedule_cron(rt, miner, st, dl.last())
}

fn schedule_cron(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    st: &mut MinerState,
    at: Epoch,
) -> Result<(), ChainError> {
    st.cron_epoch = Some(at);
    rt.state.put(keys::cron(at, miner), &())
}

fn check_node(bytes: &[u8; 32], what: &str) -> Result<(), ActorError> {
    if Node(*bytes).to_fr().is_none() {
        abort!(
            IllegalArgument,
            "{what} is not a valid commitment (not a canonical BLS12-381 scalar)"
        );
    }
    Ok(())
}

fn pre_commit_sectors(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    caller: ActorId,
    infos: Vec<PreCommitInfo>,
) -> Result<(), ActorError> {
    let info = info(rt, miner)?;
    require_control(&info, caller)?;
    if infos.is_empty() || infos.len() as u64 > rt.policy.pre_commit_sector_batch_max {
        abort!(
            IllegalArgument,
            "a pre-commit carries 1 to {} sectors, not {}",
            rt.policy.pre_commit_sector_batch_max,
            infos.len()
        );
    }
    let mut st = load_state(rt, miner)?;
    let now = rt.epoch;
    if st.consensus_fault_elapsed.is_some_and(|e| now <= e) {
        abort!(
            Forbidden,
            "pre-commit forbidden until epoch {} after a consensus fault",
            st.consensus_fault_elapsed.unwrap_or(0)
        );
    }
    repay_debts_or_abort(rt, miner, &mut st)?;
    let p = rt.policy;
    let size = info.sector_size;
    let econ = economics::current(rt)?;
    let deposit = monies::pre_commit_deposit(p, &econ, size.bytes());
    let mut total = TokenAmount::ZERO;
    let mut seen = BTreeSet::new();
    for pc in &infos {
        rt.charge_gas(p.gas_per_sector)?;
        let n = pc.sector_number;
        if st.allocated_sectors.contains(&n) || !seen.insert(n) {
            abort!(IllegalArgument, "sector number {n} is already used");
        }
        if pc.seal_rand_epoch >= now
            || now.saturating_sub(pc.seal_rand_epoch) > p.max_pre_commit_randomness_lookback
        {
            abort!(
                IllegalArgument,
                "sector {n}: seal randomness epoch {} must be before {now} and at most {} epochs old",
                pc.seal_rand_epoch,
                p.max_pre_commit_randomness_lookback
            );
        }
        let max_activation = now.saturating_add(p.max_prove_commit_duration);
        let min_expiration = max_activation.saturating_add(p.min_sector_expiration);
        if pc.expiration < min_expiration {
            abort!(
                IllegalArgument,
                "sector {n}: expiration {} is too soon: it must be at least {min_expiration}",
                pc.expiration,
            );
        }
        // `pc.expiration ≥ max_activation` from here on.
        if pc.expiration > now.saturating_add(p.max_sector_expiration_extension)
            || pc.expiration.saturating_sub(max_activation) > p.max_sector_lifetime
        {
            abort!(
                IllegalArgument,
                "sector {n}: expiration {} is too far",
                pc.expiration
            );
        }
        if pc.deal_ids.len() as u64 > p.max_deals_per_sector {
            abort!(IllegalArgument, "sector {n}: too many deals");
        }
        check_node(&pc.comm_r, "comm_r")?;
        check_node(&pc.comm_d, "comm_d")?;
        let comm_d = market::comm_d_for_deals(rt, miner, size, pc.expiration, &pc.deal_ids)?;
        if comm_d != pc.comm_d {
            abort!(
                IllegalArgument,
                "sector {n}: comm_d does not match its deals' pieces (expected {})",
                hex::encode(comm_d)
            );
        }
        total = match total.checked_add(deposit) {
            Some(t) => t,
            None => abort!(Overflow, "deposit overflow"),
        };
    }
    let bal = balance(rt, miner)?;
    if st.available(bal) < total {
        abort!(
            InsufficientFunds,
            "pre-commit deposits need {total}, but only {} is available: send funds to {miner}",
            st.available(bal)
        );
    }
    for pc in infos {
        st.allocated_sectors.insert(pc.sector_number);
        rt.state.put(
            keys::precommit(miner, pc.sector_number),
            &PreCommit {
                info: pc,
                deposit,
                epoch: now,
            },
        )?;
    }
    st.pre_commit_deposits = st
        .pre_commit_deposits
        .checked_add(total)
        .ok_or(OutOfRange("pre-commit deposits"))?;
    ensure_cron(rt, miner, &mut st)?;
    save_state(rt, miner, &st)?;
    Ok(())
}

/// The ticket and seed of a pre-commit (what the sealer needs, and what the verifier checks).
pub fn seal_randomness(
    rt: &Runtime<'_, '_>,
    miner: ActorId,
    pc: &PreCommit,
) -> Result<([u8; 32], [u8; 32]), ActorError> {
    let entropy = miner.0.to_le_bytes();
    let ticket = rt.randomness(RandomnessTag::SealTicket, pc.info.seal_rand_epoch, &entropy)?;
    let seed = rt.randomness(
        RandomnessTag::InteractiveSeed,
        pc.epoch
            .saturating_add(rt.policy.pre_commit_challenge_delay),
        &entropy,
    )?;
    Ok((ticket, seed))
}

fn prove_commit_sector(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    caller: ActorId,
    n: SectorNumber,
    proofs: &[Vec<u8>],
) -> Result<(), ActorError> {
    let info = info(rt, miner)?;
    require_control(&info, caller)?;
    let Some(pc) = rt.state.get::<PreCommit>(&keys::precommit(miner, n))? else {
        abort!(NotFound, "sector {n} is not pre-committed");
    };
    let p = rt.policy;
    let now = rt.epoch;
    let seed_epoch = pc.epoch.saturating_add(p.pre_commit_challenge_delay);
    if now <= seed_epoch {
        abort!(
            Forbidden,
            "sector {n} cannot be proven before epoch {}",
            seed_epoch.saturating_add(1)
        );
    }
    let expired = pc.epoch.saturating_add(p.max_prove_commit_duration);
    if now > expired {
        abort!(
            IllegalState,
            "sector {n}'s pre-commit expired at epoch {expired}"
        );
    }
    let size = info.sector_size;
    rt.charge_gas(
        p.gas_per_proof
            .saturating_mul(size.porep_partitions() as u64),
    )?;
    let (ticket, seed) = seal_randomness(rt, miner, &pc)?;
    let public = PorepPublic {
        size,
        miner_id: miner.0,
        sector_number: n,
        ticket: randomness_node(ticket),
        seed: randomness_node(seed),
        comm_d: Node(pc.info.comm_d),
        comm_r: Node(pc.info.comm_r),
    };
    if let Err(e) = rt.verifier.verify_seal(&public, proofs) {
        abort!(InvalidProof, "sector {n}: PoRep rejected: {e}");
    }
    let spaces = market::activate_deals(rt, miner, n, pc.info.expiration, &pc.info.deal_ids)?;
    // Pre-commit checked `expiration ≥ max activation ≥ now`, so this is exact.
    let duration = pc.info.expiration.saturating_sub(now);
    let mut sector = SectorOnChain {
        sector_number: n,
        comm_r: pc.info.comm_r,
        activation: now,
        expiration: pc.info.expiration,
        power_base_epoch: now,
        deal_ids: pc.info.deal_ids.clone(),
        deal_weight: wide_mul(spaces.unverified, duration),
        verified_deal_weight: wide_mul(spaces.verified, duration),
        initial_pledge: TokenAmount::ZERO,
        deadline: 0,
        partition: 0,
    };
    let econ = economics::current(rt)?;
    let qa = sector.power(p, size).qa;
    sector.initial_pledge = monies::initial_pledge(p, &econ, qa);
    let mut st = load_state(rt, miner)?;
    st.pre_commit_deposits = st.pre_commit_deposits.saturating_sub(pc.deposit);
    let bal = balance(rt, miner)?;
    if st.available(bal) < sector.initial_pledge {
        abort!(
            InsufficientFunds,
            "sector {n} needs an initial pledge of {}, but only {} is available: send funds to {miner}",
            sector.initial_pledge,
            st.available(bal)
        );
    }
    st.initial_pledge = st
        .initial_pledge
        .checked_add(sector.initial_pledge)
        .ok_or(OutOfRange("initial pledge"))?;
    let (dl_index, part_index) = assign_deadline(rt, miner, &info, &st)?;
    sector.deadline = dl_index;
    sector.partition = part_index;
    let mut dl = load_deadline(rt, miner, dl_index)?;
    if part_index as usize == dl.partitions.len() {
        dl.partitions.push(Partition::default());
    }
    let Some(part) = dl.partitions.get_mut(part_index as usize) else {
        abort!(
            IllegalState,
            "deadline {dl_index} has no partition {part_index}"
        );
    };
    part.sectors.insert(n);
    part.unproven.insert(n);
    save_deadline(rt, miner, dl_index, &dl)?;
    rt.state.put(keys::sector(miner, n), &sector)?;
    rt.state.delete(&keys::precommit(miner, n));
    ensure_cron(rt, miner, &mut st)?;
    save_state(rt, miner, &st)?;
    Ok(())
}

/// Whether deadline `index` may change now: it is neither open nor the next to open.
fn deadline_is_mutable(rt: &Runtime<'_, '_>, st: &MinerState, index: u64) -> bool {
    let dl = DeadlineInfo::new(rt.policy, st.proving_period_start, index)
        .next_not_elapsed(rt.policy, rt.epoch);
    rt.epoch.saturating_add(rt.policy.wpost_challenge_window) < dl.open
}

/// Picks the deadline and partition of a new sector: among mutable deadlines, prefer one whose last
/// partition has room, then fewer partitions, then fewer sectors, then the lowest index.
fn assign_deadline(
    rt: &Runtime<'_, '_>,
    miner: ActorId,
    info: &MinerInfo,
    st: &MinerState,
) -> Result<(u64, u64), ActorError> {
    let mut best: Option<((bool, usize, usize, u64), u64)> = None;
    for i in 0..rt.policy.wpost_period_deadlines {
        if !deadline_is_mutable(rt, st, i) {
            continue;
        }
        let dl = load_deadline(rt, miner, i)?;
        let open_partition = dl
            .partitions
            .last()
            .filter(|p| (p.sectors.len() as u64) < info.partition_sectors);
        let part = match open_partition {
            // There is a last partition, so this is exact.
            Some(_) => (dl.partitions.len() as u64).saturating_sub(1),
            None => dl.partitions.len() as u64,
        };
        let key = (
            open_partition.is_none(),
            dl.partitions.len(),
            dl.live_sectors(),
            i,
        );
        if best.as_ref().is_none_or(|(k, _)| key < *k) {
            best = Some((key, part));
        }
    }
    match best {
        Some((key, part)) => Ok((key.3, part)),
        None => abort!(IllegalState, "no mutable deadline"),
    }
}

fn submit_window_post(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    caller: ActorId,
    params: &WindowPostParams,
) -> Result<(), ActorError> {
    let info = info(rt, miner)?;
    require_control(&info, caller)?;
    let st = load_state(rt, miner)?;
    let p = rt.policy;
    let now = rt.epoch;
    let dl_info = DeadlineInfo::new(p, st.proving_period_start, st.current_deadline);
    if params.deadline != st.current_deadline || !dl_info.is_open(now) {
        abort!(
            IllegalArgument,
            "deadline {} is not open at epoch {now} (the open deadline is {} from {} to {})",
            params.deadline,
            st.current_deadline,
            dl_info.open,
            dl_info.last()
        );
    }
    if params.partitions.is_empty() || params.partitions.len() as u64 > p.posted_partitions_max {
        abort!(
            IllegalArgument,
            "a PoSt proves 1 to {} partitions",
            p.posted_partitions_max
        );
    }
    if params.proofs.len() != params.partitions.len() {
        abort!(
            IllegalArgument,
            "one proof per partition: {} proofs for {} partitions",
            params.proofs.len(),
            params.partitions.len()
        );
    }
    let mut dl = load_deadline(rt, miner, params.deadline)?;
    let randomness = rt.randomness(
        RandomnessTag::WindowPost,
        dl_info.challenge,
        &miner.0.to_le_bytes(),
    )?;
    let size = info.sector_size;
    let mut add = PowerPair::ZERO;
    let mut sub = PowerPair::ZERO;
    let mut seen = BTreeSet::new();
    for (part_post, proof) in params.partitions.iter().zip(&params.proofs) {
        rt.charge_gas(p.gas_per_proof)?;
        let idx = part_post.index;
        if !seen.insert(idx) {
            abort!(IllegalArgument, "partition {idx} listed twice");
        }
        if dl.posted.contains(&idx) {
            abort!(
                IllegalArgument,
                "partition {idx} was already proven in this window"
            );
        }
        let Some(part) = dl.partitions.get_mut(idx as usize) else {
            abort!(
                NotFound,
                "deadline {} has no partition {idx}",
                params.deadline
            );
        };
        if let Some(s) = part_post.skipped.iter().find(|s| !part.sectors.contains(s)) {
            abort!(
                IllegalArgument,
                "skipped sector {s} is not in partition {idx}"
            );
        }
        let recovering: BTreeSet<_> = part
            .recoveries
            .difference(&part_post.skipped)
            .copied()
            .collect();
        let proven: Vec<SectorNumber> = part
            .sectors
            .iter()
            .filter(|s| {
                !part_post.skipped.contains(s)
                    && (!part.faults.contains(s) || recovering.contains(s))
            })
            .copied()
            .collect();
        if proven.is_empty() {
            abort!(
                IllegalArgument,
                "partition {idx}: nothing left to prove (declare the faults instead)"
            );
        }
        let mut public = Vec::with_capacity(proven.len());
        for &n in &proven {
            let s: SectorOnChain = match rt.state.get(&keys::sector(miner, n))? {
                Some(s) => s,
                None => {
                    return Err(ChainError::Internal(format!(
                        "partition lists missing sector {n}"
                    ))
                    .into());
                }
            };
            public.push(PublicSector {
                sector_number: n,
                comm_r: Node(s.comm_r),
            });
        }
        let statement = WindowPostStatement {
            size,
            randomness,
            sectors: public,
        };
        if let Err(e) = rt.verifier.verify_window_post(&statement, proof) {
            abort!(InvalidProof, "partition {idx}: Window PoSt rejected: {e}");
        }
        // Skipped sectors become faults; skipped recoveries are retracted.
        for &s in &part_post.skipped {
            if mark_faulty(part, s, dl_info.last().saturating_add(p.fault_max_age)) {
                sub = sub.plus(load_sector_raw(rt, miner, s)?.power(p, size));
            }
        }
        // Proven sectors: recoveries and first proofs gain power.
        for &s in &proven {
            let gained = part.faults.remove(&s) | part.unproven.remove(&s);
            part.recoveries.remove(&s);
            part.fault_expirations.remove(&s);
            if gained {
                let sector: SectorOnChain = load_sector_raw(rt, miner, s)?;
                add = add.plus(sector.power(p, size));
            }
        }
        dl.posted.insert(idx);
    }
    save_deadline(rt, miner, params.deadline, &dl)?;
    power::update_claim(rt, miner, add, sub)?;
    Ok(())
}

fn load_sector_raw(
    rt: &Runtime<'_, '_>,
    miner: ActorId,
    n: SectorNumber,
) -> Result<SectorOnChain, ActorError> {
    match rt.state.get(&keys::sector(miner, n))? {
        Some(s) => Ok(s),
        None => Err(
            ChainError::Internal(format!("partition lists missing sector {n} of {miner}")).into(),
        ),
    }
}

/// The instance of deadline `index` that faults/recoveries declared now apply to, checked against
/// its cutoff.
fn declaration_target(
    rt: &Runtime<'_, '_>,
    st: &MinerState,
    index: u64,
) -> Result<DeadlineInfo, ActorError> {
    let p = rt.policy;
    if index >= p.wpost_period_deadlines {
        abort!(IllegalArgument, "no deadline {index}");
    }
    let dl = DeadlineInfo::new(p, st.proving_period_start, index).next_not_elapsed(p, rt.epoch);
    if rt.epoch >= dl.fault_cutoff {
        abort!(
            IllegalState,
            "too late to declare for deadline {index}: its cutoff was epoch {} (it opens at {})",
            dl.fault_cutoff,
            dl.open
        );
    }
    Ok(dl)
}

fn declare_faults(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    caller: ActorId,
    locs: &[SectorLocation],
) -> Result<(), ActorError> {
    let info = info(rt, miner)?;
    require_control(&info, caller)?;
    let st = load_state(rt, miner)?;
    let mut sub = PowerPair::ZERO;
    for loc in locs {
        let target = declaration_target(rt, &st, loc.deadline)?;
        let mut dl = load_deadline(rt, miner, loc.deadline)?;
        let part = located(&mut dl, loc)?;
        for &s in &loc.sectors {
            rt.charge_gas(rt.policy.gas_per_sector)?;
            require_live(part, loc, s)?;
            if mark_faulty(
                part,
                s,
                target.last().saturating_add(rt.policy.fault_max_age),
            ) {
                sub = sub.plus(load_sector_raw(rt, miner, s)?.power(rt.policy, info.sector_size));
            }
        }
        save_deadline(rt, miner, loc.deadline, &dl)?;
    }
    power::update_claim(rt, miner, PowerPair::ZERO, sub)?;
    Ok(())
}

fn declare_recoveries(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    caller: ActorId,
    locs: &[SectorLocation],
) -> Result<(), ActorError> {
    let info = info(rt, miner)?;
    require_control(&info, caller)?;
    let mut st = load_state(rt, miner)?;
    if st.consensus_fault_elapsed.is_some_and(|e| rt.epoch <= e) {
        abort!(
            Forbidden,
            "recoveries are forbidden during a consensus fault"
        );
    }
    repay_debts_or_abort(rt, miner, &mut st)?;
    for loc in locs {
        declaration_target(rt, &st, loc.deadline)?;
        let mut dl = load_deadline(rt, miner, loc.deadline)?;
        let part = located(&mut dl, loc)?;
        for &s in &loc.sectors {
            rt.charge_gas(rt.policy.gas_per_sector)?;
            if !part.faults.contains(&s) {
                abort!(IllegalArgument, "sector {s} is not faulty");
            }
            part.recoveries.insert(s);
        }
        save_deadline(rt, miner, loc.deadline, &dl)?;
    }
    save_state(rt, miner, &st)?;
    Ok(())
}

/// Terminates one sector now: releases its pledge, charges the termination fee as debt, and
/// terminates its deals. The caller removes it from its partition and fixes power.
fn terminate_sector(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    st: &mut MinerState,
    sector: &SectorOnChain,
    size: SectorSize,
) -> Result<TokenAmount, ActorError> {
    let econ = economics::current(rt)?;
    let age = rt.epoch.saturating_sub(sector.activation);
    let fee = monies::termination_fee(
        rt.policy,
        &econ,
        sector.initial_pledge,
        sector.power(rt.policy, size).qa,
        age,
    );
    st.initial_pledge = st.initial_pledge.saturating_sub(sector.initial_pledge);
    st.fee_debt = st.fee_debt.checked_add(fee).ok_or(OutOfRange("fee debt"))?;
    market::on_sector_terminated(rt, miner, &sector.deal_ids)?;
    rt.state.delete(&keys::sector(miner, sector.sector_number));
    Ok(fee)
}

fn terminate_sectors(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    caller: ActorId,
    locs: &[SectorLocation],
) -> Result<TokenAmount, ActorError> {
    let info = info(rt, miner)?;
    require_control(&info, caller)?;
    let mut st = load_state(rt, miner)?;
    let mut sub = PowerPair::ZERO;
    let mut fees = TokenAmount::ZERO;
    for loc in locs {
        if loc.deadline >= rt.policy.wpost_period_deadlines
            || !deadline_is_mutable(rt, &st, loc.deadline)
        {
            abort!(
                Forbidden,
                "deadline {} is open or about to open: terminate its sectors later",
                loc.deadline
            );
        }
        let mut dl = load_deadline(rt, miner, loc.deadline)?;
        let part = located(&mut dl, loc)?;
        for &s in &loc.sectors {
            rt.charge_gas(rt.policy.gas_per_sector)?;
            require_live(part, loc, s)?;
            let sector = load_sector_raw(rt, miner, s)?;
            if part.active().any(|&a| a == s) {
                sub = sub.plus(sector.power(rt.policy, info.sector_size));
            }
            remove_from_partition(part, s);
            let fee = terminate_sector(rt, miner, &mut st, &sector, info.sector_size)?;
            fees = fees
                .checked_add(fee)
                .ok_or(OutOfRange("termination fees"))?;
        }
        save_deadline(rt, miner, loc.deadline, &dl)?;
    }
    power::update_claim(rt, miner, PowerPair::ZERO, sub)?;
    repay_partial_debt(rt, miner, &mut st)?;
    save_state(rt, miner, &st)?;
    Ok(fees)
}

/// The partition a [`SectorLocation`] names.
fn located<'d>(
    dl: &'d mut Deadline,
    loc: &SectorLocation,
) -> Result<&'d mut Partition, ActorError> {
    match dl.partitions.get_mut(loc.partition as usize) {
        Some(p) => Ok(p),
        None => abort!(
            NotFound,
            "deadline {} has no partition {}",
            loc.deadline,
            loc.partition
        ),
    }
}

/// Fails unless sector `s` is live in the located partition.
fn require_live(part: &Partition, loc: &SectorLocation, s: SectorNumber) -> Result<(), ActorError> {
    if !part.sectors.contains(&s) {
        abort!(
            NotFound,
            "sector {s} is not live in deadline {} partition {}",
            loc.deadline,
            loc.partition
        );
    }
    Ok(())
}

/// Marks sector `s` faulty (terminated at `expiration` if still faulty then) and retracts its
/// recovery. Returns whether it was active, so that the caller removes its power; an unproven sector
/// never had power, and an already faulty one is left as it is.
fn mark_faulty(part: &mut Partition, s: SectorNumber, expiration: Epoch) -> bool {
    part.recoveries.remove(&s);
    if !part.faults.insert(s) {
        return false;
    }
    part.fault_expirations.insert(s, expiration);
    !part.unproven.remove(&s)
}

fn remove_from_partition(part: &mut Partition, s: SectorNumber) {
    part.sectors.remove(&s);
    part.unproven.remove(&s);
    part.faults.remove(&s);
    part.recoveries.remove(&s);
    part.fault_expirations.remove(&s);
}

fn extend_sector_expiration(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    caller: ActorId,
    locs: &[SectorLocation],
    new_expiration: Epoch,
) -> Result<(), ActorError> {
    let info = info(rt, miner)?;
    require_control(&info, caller)?;
    let p = rt.policy;
    let now = rt.epoch;
    let size = info.sector_size;
    let mut add = PowerPair::ZERO;
    let mut sub = PowerPair::ZERO;
    if new_expiration > now.saturating_add(p.max_sector_expiration_extension) {
        abort!(
            IllegalArgument,
            "expiration {new_expiration} is more than {} epochs away",
            p.max_sector_expiration_extension
        );
    }
    for loc in locs {
        let mut dl = load_deadline(rt, miner, loc.deadline)?;
        let part = located(&mut dl, loc)?;
        for &s in &loc.sectors {
            rt.charge_gas(p.gas_per_sector)?;
            if !part.active().any(|&a| a == s) {
                abort!(
                    IllegalArgument,
                    "sector {s} is not active (faulty, unproven or gone): only active sectors can be extended"
                );
            }
            let mut sector = load_sector_raw(rt, miner, s)?;
            if new_expiration <= sector.expiration {
                abort!(
                    IllegalArgument,
                    "sector {s}: new expiration {new_expiration} is not after {}",
                    sector.expiration
                );
            }
            // `new_expiration > expiration > activation`: exact.
            if new_expiration.saturating_sub(sector.activation) > p.max_sector_lifetime {
                abort!(
                    IllegalArgument,
                    "sector {s}: lifetime would exceed {} epochs",
                    p.max_sector_lifetime
                );
            }
            verifreg::check_claims_allow_expiration(rt, miner, s, new_expiration)?;
            let old_duration =
                u128::from(sector.expiration.saturating_sub(sector.power_base_epoch)).max(1);
            let new_duration = u128::from(new_expiration.saturating_sub(now));
            let before = sector.power(p, size);
            // `old_duration ≥ 1`, so the divisions cannot fail.
            let verified_space = sector
                .verified_deal_weight
                .checked_div(old_duration)
                .unwrap_or(0);
            let deal_space = sector.deal_weight.checked_div(old_duration).unwrap_or(0);
            sector.verified_deal_weight = verified_space
                .checked_mul(new_duration)
                .ok_or(OutOfRange("verified deal weight"))?;
            sector.deal_weight = deal_space
                .checked_mul(new_duration)
                .ok_or(OutOfRange("deal weight"))?;
            sector.power_base_epoch = now;
            sector.expiration = new_expiration;
            let after = sector.power(p, size);
            sub = sub.plus(before);
            add = add.plus(after);
            rt.state.put(keys::sector(miner, s), &sector)?;
        }
    }
    power::update_claim(rt, miner, add, sub)?;
    Ok(())
}

fn withdraw_balance(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    caller: ActorId,
    amount: TokenAmount,
) -> Result<TokenAmount, ActorError> {
    let info = info(rt, miner)?;
    if caller != info.owner {
        abort!(Forbidden, "only the owner {} may withdraw", info.owner);
    }
    let mut st = load_state(rt, miner)?;
    st.unlock_vested(rt.epoch)?;
    repay_debts_or_abort(rt, miner, &mut st)?;
    let bal = balance(rt, miner)?;
    let amount = amount.min(st.available(bal));
    rt.transfer(miner, info.owner, amount)?;
    save_state(rt, miner, &st)?;
    Ok(amount)
}

/// Pays all fee debt from the unlocked balance, or aborts.
fn repay_debts_or_abort(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    st: &mut MinerState,
) -> Result<(), ActorError> {
    if st.fee_debt.is_zero() {
        return Ok(());
    }
    st.unlock_vested(rt.epoch)?;
    let bal = balance(rt, miner)?;
    let unlocked = st.unlocked(bal).unwrap_or(TokenAmount::ZERO);
    if unlocked < st.fee_debt {
        abort!(
            InsufficientFunds,
            "fee debt of {} exceeds the unlocked balance {unlocked}: send funds to {miner} first",
            st.fee_debt
        );
    }
    rt.burn(miner, st.fee_debt)?;
    st.fee_debt = TokenAmount::ZERO;
    Ok(())
}

/// Pays as much fee debt as possible: vested rewards, then unvested rewards (soonest first), then
/// the unlocked balance. Returns the amount burnt.
fn repay_partial_debt(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    st: &mut MinerState,
) -> Result<TokenAmount, ActorError> {
    st.unlock_vested(rt.epoch)?;
    if st.fee_debt.is_zero() {
        return Ok(TokenAmount::ZERO);
    }
    st.unlock_unvested(st.fee_debt);
    let bal = balance(rt, miner)?;
    let unlocked = st.unlocked(bal).unwrap_or(TokenAmount::ZERO);
    let pay = unlocked.min(st.fee_debt);
    rt.burn(miner, pay)?;
    st.fee_debt = st.fee_debt.saturating_sub(pay);
    Ok(pay)
}

/// Locks 75% of a block reward in the vesting table and pays debt from it.
pub fn apply_rewards(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    reward: TokenAmount,
) -> Result<(), ActorError> {
    let mut st = load_state(rt, miner)?;
    let p = rt.policy;
    let (n, d) = p.locked_reward_factor;
    let locked = reward.mul_div(n, d).unwrap_or(reward);
    st.add_locked_funds(
        rt.epoch,
        locked,
        p.reward_vesting_period,
        p.reward_vesting_step,
    )?;
    repay_partial_debt(rt, miner, &mut st)?;
    ensure_cron(rt, miner, &mut st)?;
    save_state(rt, miner, &st)?;
    Ok(())
}

fn report_consensus_fault(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    reporter: ActorId,
    a: &BlockHeader,
    b: &BlockHeader,
) -> Result<TokenAmount, ActorError> {
    let info = info(rt, miner)?;
    let p = rt.policy;
    if a.miner != miner || b.miner != miner {
        abort!(IllegalArgument, "both blocks must be produced by {miner}");
    }
    if a.epoch != b.epoch {
        abort!(
            IllegalArgument,
            "the blocks are at different epochs ({} and {})",
            a.epoch,
            b.epoch
        );
    }
    if a.signing_bytes(&p.network) == b.signing_bytes(&p.network) {
        abort!(IllegalArgument, "the two blocks are the same block");
    }
    // Gas saturates: a charge past u64::MAX exceeds every limit anyway.
    rt.charge_gas(p.gas_per_signature.saturating_mul(2))?;
    for h in [a, b] {
        if info
            .worker_key
            .verify(&h.signing_bytes(&p.network), &h.signature)
            .is_err()
        {
            abort!(IllegalArgument, "a block's signature is not the worker's");
        }
    }
    if a.epoch > rt.epoch || rt.epoch.saturating_sub(a.epoch) > p.chain_finality {
        abort!(
            IllegalArgument,
            "the fault at epoch {} is too old or in the future",
            a.epoch
        );
    }
    let mut st = load_state(rt, miner)?;
    if st.consensus_fault_elapsed.is_some_and(|e| a.epoch <= e) {
        abort!(
            IllegalArgument,
            "a fault before epoch {} was already punished",
            st.consensus_fault_elapsed.unwrap_or(0)
        );
    }
    let econ = economics::current(rt)?;
    let penalty = monies::consensus_fault_penalty(&econ);
    let reward = monies::consensus_fault_reporter_reward(p, &econ);
    st.fee_debt = st
        .fee_debt
        .checked_add(penalty)
        .ok_or(OutOfRange("fee debt"))?;
    // Collect what can be collected now, pay the reporter out of it, burn the rest.
    st.unlock_vested(rt.epoch)?;
    st.unlock_unvested(st.fee_debt);
    let bal = balance(rt, miner)?;
    let collected = st
        .unlocked(bal)
        .unwrap_or(TokenAmount::ZERO)
        .min(st.fee_debt);
    let to_reporter = reward.min(collected);
    rt.transfer(miner, reporter, to_reporter)?;
    rt.burn(miner, collected.saturating_sub(to_reporter))?;
    st.fee_debt = st.fee_debt.saturating_sub(collected);
    st.consensus_fault_elapsed = Some(rt.epoch.saturating_add(p.consensus_fault_ineligibility));
    save_state(rt, miner, &st)?;
    Ok(to_reporter)
}

/// Why a miner may not win a block now, if it may not.
pub fn ineligibility(rt: &Runtime<'_, '_>, miner: ActorId) -> Result<Option<String>, ActorError> {
    let st = load_state(rt, miner)?;
    if !st.fee_debt.is_zero() {
        return Ok(Some(format!("{miner} has fee debt of {}", st.fee_debt)));
    }
    if st.consensus_fault_elapsed.is_some_and(|e| rt.epoch <= e) {
        return Ok(Some(format!(
            "{miner} is ineligible after a consensus fault"
        )));
    }
    if !power::meets_consensus_minimum(rt, miner)? {
        return Ok(Some(format!(
            "{miner} does not meet the minimum consensus power"
        )));
    }
    Ok(None)
}

/// The miner's active sectors (for Winning PoSt), sorted by number.
pub fn active_sectors(
    rt: &Runtime<'_, '_>,
    miner: ActorId,
) -> Result<Vec<PublicSector>, ActorError> {
    let mut out = Vec::new();
    for (_, dl) in rt.state.scan::<Deadline>(&keys::deadline_prefix(miner))? {
        for part in &dl.partitions {
            for &n in part.active() {
                let s = load_sector_raw(rt, miner, n)?;
                out.push(PublicSector {
                    sector_number: n,
                    comm_r: Node(s.comm_r),
                });
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Deadline cron: runs at the last epoch of the miner's current deadline.
pub fn on_deadline_cron(rt: &mut Runtime<'_, '_>, miner: ActorId) -> Result<(), ActorError> {
    let info = info(rt, miner)?;
    let mut st = load_state(rt, miner)?;
    let p = rt.policy;
    let now = rt.epoch;
    let size = info.sector_size;
    rt.state.delete(&keys::cron(now, miner));
    if st.cron_epoch != Some(now) {
        return Ok(());
    }
    st.cron_epoch = None;
    let dl_info = DeadlineInfo::new(p, st.proving_period_start, st.current_deadline);

    // 1. Pre-commits never proven: their deposits are burnt.
    for (_, pc) in rt.state.scan::<PreCommit>(&keys::precommit_prefix(miner))? {
        let clean_up = pc
            .epoch
            .saturating_add(p.max_prove_commit_duration)
            .saturating_add(p.expired_pre_commit_clean_up_delay);
        if now >= clean_up {
            rt.state
                .delete(&keys::precommit(miner, pc.info.sector_number));
            st.pre_commit_deposits = st.pre_commit_deposits.saturating_sub(pc.deposit);
            st.fee_debt = st
                .fee_debt
                .checked_add(pc.deposit)
                .ok_or(OutOfRange("fee debt"))?;
        }
    }

    // 2. Missed PoSt: every partition not proven this window becomes faulty. The fault fee is charged
    //    on the power that was faulty *before* this detection (no fee for newly detected faults).
    let mut dl = load_deadline(rt, miner, st.current_deadline)?;
    let mut previously_faulty = PowerPair::ZERO;
    let mut sub = PowerPair::ZERO;
    for part in &dl.partitions {
        for &s in &part.faults {
            previously_faulty =
                previously_faulty.plus(load_sector_raw(rt, miner, s)?.power(p, size));
        }
    }
    for (i, part) in dl.partitions.iter_mut().enumerate() {
        if dl.posted.contains(&(i as u64)) {
            continue;
        }
        let newly: Vec<_> = part.sectors.difference(&part.faults).copied().collect();
        for s in newly {
            if mark_faulty(part, s, dl_info.last().saturating_add(p.fault_max_age)) {
                sub = sub.plus(load_sector_raw(rt, miner, s)?.power(p, size));
            }
        }
        part.recoveries.clear();
    }
    dl.posted.clear();

    // 3. Expirations: on time (pledge released, no fee) or after the longest fault (terminated).
    for part in &mut dl.partitions {
        let sectors: Vec<_> = part.sectors.iter().copied().collect();
        for s in sectors {
            let sector = load_sector_raw(rt, miner, s)?;
            let active = !part.faults.contains(&s) && !part.unproven.contains(&s);
            if sector.expiration <= dl_info.last() {
                if active {
                    sub = sub.plus(sector.power(p, size));
                }
                st.initial_pledge = st.initial_pledge.saturating_sub(sector.initial_pledge);
                market::on_sector_expired(rt, miner, &sector.deal_ids)?;
                rt.state.delete(&keys::sector(miner, s));
                remove_from_partition(part, s);
            } else if part
                .fault_expirations
                .get(&s)
                .is_some_and(|&e| e <= dl_info.last())
            {
                terminate_sector(rt, miner, &mut st, &sector, size)?;
                remove_from_partition(part, s);
            }
        }
    }
    dl.partitions.retain(|_| true);
    save_deadline(rt, miner, st.current_deadline, &dl)?;
    power::update_claim(rt, miner, PowerPair::ZERO, sub)?;

    // 4. Continued-fault fee, then pay debts.
    if previously_faulty.qa > 0 {
        let econ = economics::current(rt)?;
        let fee = monies::fault_fee(p, &econ, previously_faulty.qa);
        st.fee_debt = st.fee_debt.checked_add(fee).ok_or(OutOfRange("fee debt"))?;
    }
    repay_partial_debt(rt, miner, &mut st)?;

    // 5. Next deadline.
    st.current_deadline = st
        .current_deadline
        .checked_add(1)
        .ok_or(OutOfRange("the deadline index"))?;
    if st.current_deadline == p.wpost_period_deadlines {
        st.current_deadline = 0;
        st.proving_period_start = st
            .proving_period_start
            .saturating_add(p.wpost_proving_period());
    }
    let has_records = !rt.state.scan_raw(&keys::precommit_prefix(miner)).is_empty()
        || !rt.state.scan_raw(&keys::deadline_prefix(miner)).is_empty();
    if !st.total_locked().is_zero() || has_records {
        let next = DeadlineInfo::new(p, st.proving_period_start, st.current_deadline);
        schedule_cron(rt, miner, &mut st, next.last())?;
    }
    save_state(rt, miner, &st)?;
    Ok(())
}
