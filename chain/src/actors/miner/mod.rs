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
//!
//! This module holds the method enum, creation, dispatch ([`invoke`]) and the record helpers; the
//! methods live by family: `commit` (pre-commit, prove-commit, deadline assignment), `post`
//! (Window PoSt), `faults` (declarations and partition bookkeeping), `termination`, `extension`,
//! `funds` (withdrawal, debt, rewards), `consensus_fault`, and `cron` (deadline ends). The records
//! are in [`state`].

mod commit;
mod consensus_fault;
mod cron;
mod extension;
mod faults;
mod funds;
mod post;
pub mod state;
mod termination;

use std::collections::BTreeSet;

use lode_proofs::sector::SectorSize;
use serde::{Deserialize, Serialize};

use crate::actors::{ActorKind, power};
use crate::codec::encode;
use crate::error::{ActorResult, ChainError, ChainResult, abort};
use crate::header::BlockHeader;
use crate::keys;
use crate::runtime::Runtime;
use crate::types::{ActorId, Address, Epoch, SectorNumber, TokenAmount};

use commit::{pre_commit_sectors, prove_commit_sector, prove_commit_sectors};
use consensus_fault::report_consensus_fault;
use cron::current_deadline_index;
use extension::extend_sector_expiration;
use faults::{declare_faults, declare_recoveries};
use funds::{repay_partial_debt, withdraw_balance};
use post::submit_window_post;
use termination::terminate_sectors;

pub(crate) use commit::activate_genesis_sector;
pub use commit::{ProveCommitInfo, seal_randomness};
pub use consensus_fault::ineligibility;
pub use cron::on_deadline_cron;
pub use funds::apply_rewards;
pub use post::active_sectors;
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
    /// Proves a batch of pre-committed sectors; returns the sectors activated. Each sector's
    /// own failure (not pre-committed, too early, expired, an invalid proof) skips it; the
    /// message fails only when none passes, or when the batch is malformed (empty, too large,
    /// a sector twice) or activating the ones that passed fails. (Appended last: the variants
    /// before it keep their encoding.)
    ProveCommitSectors(Vec<ProveCommitInfo>),
    /// Announces where the miner's services answer (its market's libp2p peer id and addresses),
    /// replacing what was announced before; owner or worker only. The chain keeps the bytes and
    /// checks only their sizes. (Appended last.)
    ChangePeerInfo {
        /// The libp2p peer id, in its binary form (empty: none).
        peer_id: Vec<u8>,
        /// Multiaddresses, each in its binary form.
        multiaddrs: Vec<Vec<u8>>,
    },
}

/// The longest peer id [`MinerMethod::ChangePeerInfo`] accepts, in bytes.
pub const MAX_PEER_ID_BYTES: usize = 128;
/// The most multiaddresses [`MinerMethod::ChangePeerInfo`] accepts.
pub const MAX_MULTIADDRS: usize = 16;
/// The longest multiaddress [`MinerMethod::ChangePeerInfo`] accepts, in bytes.
pub const MAX_MULTIADDR_BYTES: usize = 256;

/// Loads a miner's info.
pub fn info(rt: &Runtime<'_, '_>, miner: ActorId) -> ActorResult<MinerInfo> {
    match rt.state.get::<MinerInfo>(&keys::miner_info(miner))? {
        Some(i) => Ok(i),
        None => abort!(NotFound, "{miner} is not a miner"),
    }
}

/// Loads a miner's state.
pub fn load_state(rt: &Runtime<'_, '_>, miner: ActorId) -> ActorResult<MinerState> {
    match rt.state.get::<MinerState>(&keys::miner_state(miner))? {
        Some(s) => Ok(s),
        None => abort!(NotFound, "{miner} is not a miner"),
    }
}

/// Stores a miner's state, keeping the power actor's total of locked tokens.
fn save_state(rt: &mut Runtime<'_, '_>, miner: ActorId, st: &MinerState) -> ChainResult<()> {
    let before = rt
        .state
        .get::<MinerState>(&keys::miner_state(miner))?
        .map(|s| s.total_locked())
        .unwrap_or_default();
    power::update_locked(rt, before, st.total_locked())?;
    rt.state.put(keys::miner_state(miner), st)
}

fn load_deadline(rt: &Runtime<'_, '_>, miner: ActorId, index: u64) -> ChainResult<Deadline> {
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
) -> ChainResult<()> {
    if dl.partitions.is_empty() && dl.posted.is_empty() {
        rt.state.delete(&keys::deadline(miner, index));
        Ok(())
    } else {
        rt.state.put(keys::deadline(miner, index), dl)
    }
}

fn balance(rt: &Runtime<'_, '_>, miner: ActorId) -> ActorResult<TokenAmount> {
    Ok(rt.expect_actor(miner)?.balance)
}

fn require_control(info: &MinerInfo, caller: ActorId) -> ActorResult<()> {
    if caller != info.owner && caller != info.worker {
        abort!(
            Forbidden,
            "{caller} is neither the owner nor the worker of this miner"
        );
    }
    Ok(())
}

/// Creates a miner owned by `owner`, with `worker` (an account) signing its blocks, announcing
/// its node's `peer_id` and `multiaddrs` (empty for a miner created by message).
pub fn create(
    rt: &mut Runtime<'_, '_>,
    owner: ActorId,
    worker: &Address,
    sector_size: SectorSize,
    peer_id: Vec<u8>,
    multiaddrs: Vec<Vec<u8>>,
) -> ActorResult<ActorId> {
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
        peer_id,
        multiaddrs,
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
) -> ActorResult<Vec<u8>> {
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
        MinerMethod::ProveCommitSectors(batch) => {
            encode(&prove_commit_sectors(rt, miner, caller, &batch)?)
        }
        MinerMethod::ChangePeerInfo {
            peer_id,
            multiaddrs,
        } => {
            change_peer_info(rt, miner, caller, peer_id, multiaddrs)?;
            Vec::new()
        }
    };
    Ok(ret)
}

fn change_peer_info(
    rt: &mut Runtime<'_, '_>,
    miner: ActorId,
    caller: ActorId,
    peer_id: Vec<u8>,
    multiaddrs: Vec<Vec<u8>>,
) -> ActorResult<()> {
    let mut info = info(rt, miner)?;
    require_control(&info, caller)?;
    if peer_id.len() > MAX_PEER_ID_BYTES {
        abort!(
            IllegalArgument,
            "the peer id has {} bytes, more than {MAX_PEER_ID_BYTES}",
            peer_id.len()
        );
    }
    if multiaddrs.len() > MAX_MULTIADDRS {
        abort!(
            IllegalArgument,
            "{} multiaddresses, more than {MAX_MULTIADDRS}",
            multiaddrs.len()
        );
    }
    if let Some(a) = multiaddrs
        .iter()
        .find(|a| a.is_empty() || a.len() > MAX_MULTIADDR_BYTES)
    {
        abort!(
            IllegalArgument,
            "a multiaddress has {} bytes (1 to {MAX_MULTIADDR_BYTES} accepted)",
            a.len()
        );
    }
    info.peer_id = peer_id;
    info.multiaddrs = multiaddrs;
    rt.state.put(keys::miner_info(miner), &info)?;
    Ok(())
}

fn load_sector_raw(
    rt: &Runtime<'_, '_>,
    miner: ActorId,
    n: SectorNumber,
) -> ActorResult<SectorOnChain> {
    match rt.state.get(&keys::sector(miner, n))? {
        Some(s) => Ok(s),
        None => Err(ChainError::MissingSector { miner, sector: n }.into()),
    }
}
