//! Miner records: info, balances and vesting, pre-commits, sectors, deadlines and partitions, and
//! the proving-period geometry.

use std::collections::{BTreeMap, BTreeSet};

use lode_proofs::sector::SectorSize;
use serde::{Deserialize, Serialize};

use crate::crypto::PublicKey;
use crate::error::OutOfRange;
use crate::policy::Policy;
use crate::types::{ActorId, DealId, Epoch, PowerPair, SectorNumber, TokenAmount};

/// Who controls a miner and what it seals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinerInfo {
    /// The owner: receives withdrawals, may do everything the worker does.
    pub owner: ActorId,
    /// The worker: signs blocks and proofs.
    pub worker: ActorId,
    /// The worker's BLS key (election proofs and block signatures).
    pub worker_key: PublicKey,
    /// Sector size.
    pub sector_size: SectorSize,
    /// Sectors per Window PoSt partition.
    pub partition_sectors: u64,
    /// The libp2p peer id of the miner's node (empty when not announced); the chain only keeps it.
    pub peer_id: Vec<u8>,
    /// The multiaddresses of the miner's node, each in its binary form; the chain only keeps them.
    pub multiaddrs: Vec<Vec<u8>>,
}

/// One tranche of locked rewards and when it unlocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VestingEntry {
    /// The epoch from which it is free.
    pub epoch: Epoch,
    /// Amount.
    pub amount: TokenAmount,
}

/// A miner's money and proving position.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinerState {
    /// Deposits of pre-committed sectors.
    pub pre_commit_deposits: TokenAmount,
    /// Rewards not yet vested (sum of `vesting`).
    pub locked_funds: TokenAmount,
    /// Vesting schedule, by epoch.
    pub vesting: Vec<VestingEntry>,
    /// Initial pledge of all live sectors.
    pub initial_pledge: TokenAmount,
    /// Penalties not yet paid.
    pub fee_debt: TokenAmount,
    /// Start of the current proving period.
    pub proving_period_start: Epoch,
    /// The deadline whose end is processed next.
    pub current_deadline: u64,
    /// The epoch of the scheduled deadline cron, if one is scheduled.
    pub cron_epoch: Option<Epoch>,
    /// Until this epoch the miner is ineligible after a consensus fault.
    pub consensus_fault_elapsed: Option<Epoch>,
    /// Every sector number ever used (never reused).
    pub allocated_sectors: BTreeSet<SectorNumber>,
}

impl MinerState {
    /// Tokens the miner has locked: deposits, pledge and vesting rewards.
    ///
    /// Saturating: each part was added with checked arithmetic and the miner's balance covers
    /// their sum (an invariant), so the sum stays below the supply; a broken state shows up as a
    /// locked total its balance does not cover.
    pub fn total_locked(&self) -> TokenAmount {
        TokenAmount(
            self.pre_commit_deposits
                .0
                .saturating_add(self.initial_pledge.0)
                .saturating_add(self.locked_funds.0),
        )
    }

    /// Balance not locked: `balance − deposits − pledge − locked` (`None` if the balance does not
    /// cover them, which [`crate::invariants`] reports).
    pub fn unlocked(&self, balance: TokenAmount) -> Option<TokenAmount> {
        balance.checked_sub(self.total_locked())
    }

    /// Unlocked balance minus fee debt (what may be withdrawn).
    pub fn available(&self, balance: TokenAmount) -> TokenAmount {
        self.unlocked(balance)
            .unwrap_or(TokenAmount::ZERO)
            .saturating_sub(self.fee_debt)
    }

    /// Adds `amount` vesting linearly over `period` in `step`s from `now` (entries quantized up to
    /// half-steps so that rewards of nearby epochs share entries).
    pub fn add_locked_funds(
        &mut self,
        now: Epoch,
        amount: TokenAmount,
        period: u64,
        step: u64,
    ) -> Result<(), OutOfRange> {
        if amount.is_zero() {
            return Ok(());
        }
        let step = step.max(1);
        // `step ≥ 1`: the division cannot fail.
        let steps = period.checked_div(step).unwrap_or(0).max(1);
        let quant = (step / 2).max(1);
        let locked_funds = self
            .locked_funds
            .checked_add(amount)
            .ok_or(OutOfRange("locked funds"))?;
        let mut vested = 0u128;
        let mut by_epoch: BTreeMap<Epoch, u128> =
            self.vesting.iter().map(|e| (e.epoch, e.amount.0)).collect();
        for k in 1..=steps {
            let target = crate::math::mul_div(amount.0, u128::from(k), u128::from(steps))
                .unwrap_or(amount.0);
            // `target` grows with `k`, so this is exact.
            let part = target.saturating_sub(vested);
            vested = target;
            if part == 0 {
                continue;
            }
            let at = now.saturating_add(k.saturating_mul(step));
            let at = at.div_ceil(quant).saturating_mul(quant);
            let entry = by_epoch.entry(at).or_default();
            *entry = entry
                .checked_add(part)
                .ok_or(OutOfRange("a vesting entry"))?;
        }
        self.vesting = by_epoch
            .into_iter()
            .map(|(epoch, a)| VestingEntry {
                epoch,
                amount: TokenAmount(a),
            })
            .collect();
        self.locked_funds = locked_funds;
        Ok(())
    }

    /// Unlocks every entry due at or before `now`; returns the amount.
    pub fn unlock_vested(&mut self, now: Epoch) -> Result<TokenAmount, OutOfRange> {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.vesting)
            .into_iter()
            .partition(|e| e.epoch <= now);
        self.vesting = later;
        let freed = due
            .iter()
            .try_fold(TokenAmount::ZERO, |acc, e| acc.checked_add(e.amount))
            .ok_or(OutOfRange("vested funds"))?;
        self.locked_funds = self.locked_funds.saturating_sub(freed);
        Ok(freed)
    }

    /// Takes up to `target` from unvested entries, soonest first; returns the amount taken.
    pub fn unlock_unvested(&mut self, target: TokenAmount) -> TokenAmount {
        let mut taken = 0u128;
        for e in &mut self.vesting {
            if taken >= target.0 {
                break;
            }
            // `taken < target` and `t ≤ e.amount`, so these three are exact.
            let t = e.amount.0.min(target.0.saturating_sub(taken));
            e.amount.0 = e.amount.0.saturating_sub(t);
            taken = taken.saturating_add(t);
        }
        self.vesting.retain(|e| !e.amount.is_zero());
        self.locked_funds = self.locked_funds.saturating_sub(TokenAmount(taken));
        TokenAmount(taken)
    }
}

/// A sector's on-chain pre-commitment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreCommitInfo {
    /// Sector number.
    pub sector_number: SectorNumber,
    /// `comm_r` (trunc254 node bytes).
    pub comm_r: [u8; 32],
    /// `comm_d` (trunc254 node bytes): must match the deals' pieces.
    pub comm_d: [u8; 32],
    /// The epoch whose randomness is the ticket.
    pub seal_rand_epoch: Epoch,
    /// Deals stored in the sector, in piece order.
    pub deal_ids: Vec<DealId>,
    /// Requested expiration.
    pub expiration: Epoch,
}

/// A pre-committed sector awaiting its proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreCommit {
    /// What was pre-committed.
    pub info: PreCommitInfo,
    /// Its deposit.
    pub deposit: TokenAmount,
    /// When.
    pub epoch: Epoch,
}

/// A committed sector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorOnChain {
    /// Sector number.
    pub sector_number: SectorNumber,
    /// `comm_r`.
    pub comm_r: [u8; 32],
    /// Activation epoch.
    pub activation: Epoch,
    /// Expiration epoch.
    pub expiration: Epoch,
    /// Epoch from which the weights count (activation, or the last extension).
    pub power_base_epoch: Epoch,
    /// Deals in the sector.
    pub deal_ids: Vec<DealId>,
    /// Unverified deal bytes × duration.
    pub deal_weight: u128,
    /// Verified deal bytes × duration.
    pub verified_deal_weight: u128,
    /// Its initial pledge.
    pub initial_pledge: TokenAmount,
    /// Deadline it is proven in.
    pub deadline: u64,
    /// Partition within the deadline.
    pub partition: u64,
}

impl SectorOnChain {
    /// Its power: raw = size, QA by SPEC §8 with the policy's quality multipliers.
    pub fn power(&self, policy: &Policy, size: SectorSize) -> PowerPair {
        let duration = self.expiration.saturating_sub(self.power_base_epoch);
        PowerPair {
            raw: u128::from(size.bytes()),
            qa: crate::monies::qa_power_for_weight(
                policy,
                size.bytes(),
                duration,
                self.verified_deal_weight,
            ),
        }
    }
}

/// A Window PoSt partition: up to `partition_sectors` sectors proven together.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    /// Live sectors (terminated and expired ones are removed).
    pub sectors: BTreeSet<SectorNumber>,
    /// Sectors not yet proven by a Window PoSt (no power yet).
    pub unproven: BTreeSet<SectorNumber>,
    /// Faulty sectors (no power).
    pub faults: BTreeSet<SectorNumber>,
    /// Faulty sectors declared recovered (power returns at the next PoSt).
    pub recoveries: BTreeSet<SectorNumber>,
    /// For each faulty sector, the epoch at which it is terminated if still faulty.
    pub fault_expirations: BTreeMap<SectorNumber, Epoch>,
}

impl Partition {
    /// Sectors with power: live, proven, not faulty.
    pub fn active(&self) -> impl Iterator<Item = &SectorNumber> {
        self.sectors
            .iter()
            .filter(|s| !self.faults.contains(s) && !self.unproven.contains(s))
    }
}

/// A deadline: its partitions and which were proven in the current window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    /// Partitions in index order.
    pub partitions: Vec<Partition>,
    /// Partitions proven in the current challenge window.
    pub posted: BTreeSet<u64>,
}

impl Deadline {
    /// Number of live sectors.
    pub fn live_sectors(&self) -> usize {
        self.partitions.iter().map(|p| p.sectors.len()).sum()
    }
}

/// The timing of one deadline instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeadlineInfo {
    /// Start of the proving period this instance belongs to.
    pub period_start: Epoch,
    /// Deadline index.
    pub index: u64,
    /// First epoch of the challenge window.
    pub open: Epoch,
    /// First epoch after the window.
    pub close: Epoch,
    /// Epoch whose randomness is the challenge.
    pub challenge: Epoch,
    /// Faults and recoveries must be declared before this epoch.
    pub fault_cutoff: Epoch,
}

impl DeadlineInfo {
    /// Deadline `index` of the period starting at `period_start`.
    pub fn new(policy: &Policy, period_start: Epoch, index: u64) -> Self {
        let open = period_start.saturating_add(index.saturating_mul(policy.wpost_challenge_window));
        DeadlineInfo {
            period_start,
            index,
            open,
            close: open.saturating_add(policy.wpost_challenge_window),
            challenge: open.saturating_sub(policy.wpost_challenge_lookback),
            fault_cutoff: open.saturating_sub(policy.fault_declaration_cutoff),
        }
    }

    /// The last epoch of the window.
    pub fn last(&self) -> Epoch {
        self.close.saturating_sub(1)
    }

    /// Whether `now` is inside the window.
    pub fn is_open(&self, now: Epoch) -> bool {
        self.open <= now && now < self.close
    }

    /// Whether the window has passed.
    pub fn has_elapsed(&self, now: Epoch) -> bool {
        now >= self.close
    }

    /// The next instance of this deadline that has not closed at `now`.
    pub fn next_not_elapsed(self, policy: &Policy, now: Epoch) -> Self {
        if !self.has_elapsed(now) {
            return self;
        }
        let pp = policy.wpost_proving_period();
        // A zero-length period (an invalid policy) cannot advance: the deadline stays put.
        let periods = now
            .saturating_sub(self.close)
            .checked_div(pp)
            .unwrap_or(0)
            .saturating_add(1);
        DeadlineInfo::new(
            policy,
            self.period_start.saturating_add(periods.saturating_mul(pp)),
            self.index,
        )
    }
}

/// The proving-period offset of a miner created at `epoch`: `first_u64(H(tag, id || epoch)) mod PP`.
pub fn proving_period_offset(policy: &Policy, miner: ActorId, epoch: Epoch) -> u64 {
    let mut h = blake3::Hasher::new_derive_key("lode/chain/proving-period-offset");
    h.update(&miner.0.to_le_bytes());
    h.update(&epoch.to_le_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.finalize().as_bytes()[..8]);
    // A zero-length period (an invalid policy) gives offset 0.
    u64::from_le_bytes(first)
        .checked_rem(policy.wpost_proving_period())
        .unwrap_or(0)
}

/// The start of the proving period containing `now` for a miner with `offset`: the latest epoch
/// `≤ now` congruent to `offset` modulo the period (may be before genesis-relative zero, so it is
/// clamped by starting at the next one when `now < offset`).
pub fn current_proving_period_start(policy: &Policy, now: Epoch, offset: u64) -> Epoch {
    let pp = policy.wpost_proving_period();
    if now >= offset {
        // `(now − offset) mod pp ≤ now`, so the outer subtraction is exact.
        now.saturating_sub(now.saturating_sub(offset).checked_rem(pp).unwrap_or(0))
    } else {
        offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vesting_is_linear_and_exact() {
        let mut st = MinerState::default();
        assert_eq!(
            st.add_locked_funds(0, TokenAmount(1_000_003), 180 * 240, 240),
            Ok(())
        );
        assert_eq!(st.locked_funds, TokenAmount(1_000_003));
        assert_eq!(st.vesting.len(), 180);
        let total: u128 = st.vesting.iter().map(|e| e.amount.0).sum();
        assert_eq!(total, 1_000_003);
        assert_eq!(st.unlock_vested(240), Ok(TokenAmount(1_000_003 / 180)));
        assert_eq!(st.unlock_unvested(TokenAmount(10)), TokenAmount(10));
        assert_eq!(st.locked_funds.0, 1_000_003 - 1_000_003 / 180 - 10);
    }

    #[test]
    fn deadline_geometry() {
        let p = Policy::devnet();
        let d = DeadlineInfo::new(&p, 1000, 3);
        assert_eq!((d.open, d.close, d.last()), (1015, 1020, 1019));
        assert_eq!(d.challenge, 1013);
        assert_eq!(d.fault_cutoff, 1009);
        let n = d.next_not_elapsed(&p, 1020);
        assert_eq!(n.open, 1015 + 240);
        assert_eq!(current_proving_period_start(&p, 1000, 17), 977);
        assert_eq!(current_proving_period_start(&p, 5, 17), 17);
    }
}
