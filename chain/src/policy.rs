//! Every constant of the chain rules, in one value.
//!
//! The economics and the actors read a [`Policy`]; no rule constant is written anywhere else. Time is
//! measured in epochs and derived from two units: the *day* (one proving period: `deadlines ×
//! challenge_window` epochs) and the *year* (365 days). [`Policy::mainnet`] is SPEC §8 (30-second
//! epochs, 2880-epoch days); [`Policy::devnet`] keeps every ratio but shrinks the day to 240 one-second
//! epochs, so a proving period takes 4 minutes and a 42-day fault 2.8 hours.

use lode_proofs::sector::SectorSize;
use serde::{Deserialize, Serialize};

use crate::types::{StoragePower, TokenAmount};

/// The chain rules' constants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Network name; part of every signed message, so signatures do not replay across networks.
    pub network: String,
    /// Seconds per epoch (used by nodes for block timing only).
    pub epoch_duration_seconds: u64,

    // --- Window PoSt geometry ---
    /// Deadlines per proving period (48).
    pub wpost_period_deadlines: u64,
    /// Epochs per deadline (60 mainnet).
    pub wpost_challenge_window: u64,
    /// How many epochs before a deadline opens its challenge is drawn (20 mainnet).
    pub wpost_challenge_lookback: u64,
    /// Faults and recoveries for a deadline must be declared this many epochs before it opens (70).
    pub fault_declaration_cutoff: u64,
    /// Sectors in one Window PoSt partition are given by the proof's sector size; at most this many
    /// partitions per PoSt message.
    pub posted_partitions_max: u64,
    /// Epochs after which the chain is final (900 mainnet).
    pub chain_finality: u64,

    // --- Sector lifecycle ---
    /// Sector sizes this network accepts.
    pub sector_sizes: Vec<SectorSize>,
    /// Epochs between pre-commit and the interactive seed (150 mainnet).
    pub pre_commit_challenge_delay: u64,
    /// How old a pre-commit's ticket may be (one day + finality).
    pub max_pre_commit_randomness_lookback: u64,
    /// Epochs a pre-commit has to be proven (30 days + the challenge delay).
    pub max_prove_commit_duration: u64,
    /// Extra epochs before an expired pre-commit's deposit is burnt (8 hours).
    pub expired_pre_commit_clean_up_delay: u64,
    /// Shortest sector commitment (180 days).
    pub min_sector_expiration: u64,
    /// Furthest expiration from now (1278 days).
    pub max_sector_expiration_extension: u64,
    /// Longest sector lifetime (5 years).
    pub max_sector_lifetime: u64,
    /// A sector faulty this long is terminated (42 days).
    pub fault_max_age: u64,
    /// Most deals in one sector.
    pub max_deals_per_sector: u64,
    /// Most sectors in one pre-commit message.
    pub pre_commit_sector_batch_max: u64,

    // --- Money ---
    /// Tokens in existence at genesis (all of them: the reward actor holds what is not yet minted).
    pub total_supply: TokenAmount,
    /// Tokens minted by the simple exponential schedule over all time.
    pub simple_total: TokenAmount,
    /// Tokens minted by baseline minting over all time.
    pub baseline_total: TokenAmount,
    /// Baseline power at genesis, in bytes.
    pub baseline_initial_power: StoragePower,
    /// Half-life of both minting curves, in years (6).
    pub minting_half_life_years: u64,
    /// Position gain of the alpha-beta filters smoothing the epoch reward and the network's
    /// QA power (9.25 × 10^-4, as a ratio).
    pub smoothing_alpha: (u128, u128),
    /// Velocity gain of the same filters (2.84 × 10^-7, as a ratio).
    pub smoothing_beta: (u128, u128),
    /// Expected blocks per epoch (5).
    pub expected_leaders_per_epoch: u64,
    /// Highest win count a single election can yield (15).
    pub max_win_count: u64,
    /// Initial estimate of the network's quality-adjusted power (bytes) for the smoothed filter.
    pub initial_qa_power_estimate: StoragePower,
    /// Pre-commit deposit projection period (20 days).
    pub pre_commit_deposit_projection: u64,
    /// Initial pledge projection period (20 days).
    pub initial_pledge_projection: u64,
    /// Fraction of the circulating supply targeted by the consensus pledge (3/10).
    pub lock_target: (u128, u128),
    /// Initial pledge cap in atto per QA byte, as a ratio (1 token per 32 GiB).
    pub initial_pledge_max_per_byte: (u128, u128),
    /// Continued fault fee projection period (3.51 days).
    pub continued_fault_projection: u64,
    /// Termination fee: fraction of the initial pledge (85/1000).
    pub termination_fee_factor: (u128, u128),
    /// Termination fee: the age at which the full fraction applies (140 days).
    pub termination_lifetime_cap: u64,
    /// Termination fee floor: fraction of the initial pledge (2/100).
    pub termination_fee_min_factor: (u128, u128),
    /// Termination fee floor: multiple of the fault fee (105/100).
    pub termination_fault_fee_factor: (u128, u128),
    /// Locked fraction of each block reward (3/4).
    pub locked_reward_factor: (u128, u128),
    /// Reward vesting: total duration (180 days).
    pub reward_vesting_period: u64,
    /// Reward vesting: step (1 day).
    pub reward_vesting_step: u64,
    /// Consensus fault: epochs during which the miner may not mine, pre-commit or recover.
    pub consensus_fault_ineligibility: u64,
    /// Consensus fault reporter's share of the penalty (1/4 of a block reward = 1/20 of the epoch
    /// reward).
    pub consensus_fault_reporter_share: (u128, u128),

    // --- Power ---
    /// Raw power a miner needs to count in the consensus totals (10 TiB mainnet).
    pub minimum_consensus_power: StoragePower,
    /// While fewer miners than this meet the minimum, every miner with power counts.
    pub consensus_miner_min_miners: u64,
    /// Quality of unverified space, in units of the quality base (10: quality 1×).
    pub quality_base_multiplier: u128,
    /// Quality of verified space, in the same units (100: quality 10×).
    pub verified_deal_weight_multiplier: u128,

    // --- Market ---
    /// Shortest deal (180 days).
    pub deal_min_duration: u64,
    /// Longest deal (1278 days).
    pub deal_max_duration: u64,
    /// Longest deal label, bytes.
    pub deal_max_label_size: u64,
    /// Provider collateral floor: this fraction of the circulating supply, pro rata of the piece
    /// size over `max(network raw power, baseline, piece size)` (1/100).
    pub provider_collateral_supply_fraction: (u128, u128),
    /// Cap on price per epoch and on collaterals of one deal.
    pub deal_max_amount: TokenAmount,

    // --- Verified registry ---
    /// Smallest DataCap grant or verified deal, bytes.
    pub minimum_verified_allocation_size: u64,
    /// Shortest verified allocation term (180 days).
    pub minimum_verified_allocation_term: u64,
    /// Longest verified allocation term (5 years).
    pub maximum_verified_allocation_term: u64,
    /// Longest time an allocation waits for its sector (60 days).
    pub maximum_verified_allocation_expiration: u64,
    /// How much longer than the deal a verified claim may live (90 days).
    pub market_default_allocation_term_buffer: u64,

    // --- Messages ---
    /// Lowest gas price a message may offer (atto per gas unit).
    pub min_gas_price: TokenAmount,
    /// Gas charged for every message.
    pub gas_base: u64,
    /// Gas per byte of the signed message.
    pub gas_per_byte: u64,
    /// Gas per signature checked inside a method (deal proposals).
    pub gas_per_signature: u64,
    /// Gas per SNARK proof verified (one partition).
    pub gas_per_proof: u64,
    /// Gas per sector a method touches.
    pub gas_per_sector: u64,
    /// Largest encoded message, bytes.
    pub max_message_size: u64,
    /// Most gas one block's messages may ask for: the sum of their gas limits (not of the gas
    /// they use, which is known only once they run). A consensus rule: a block above it is
    /// invalid; the mempool refuses a message whose own limit is above it, and a producer stops
    /// adding messages at it.
    ///
    /// 1,000,000,000 for both networks. Window PoSt is what must fit: one `SubmitWindowPost`
    /// carries at most [`Policy::posted_partitions_max`] (3) partitions, and its gas limit (as
    /// `lode_node::wallet::method_gas_limit` sizes it: twice the charged gas, counting every
    /// sector of its partitions) is about 77 million for three full mainnet partitions of 2,349
    /// 32 GiB sectors (3 SNARKs, 7,047 sectors, under a kilobyte of message), about 6.3 million
    /// on the devnet (2-sector partitions). A block thus takes about 13 full mainnet PoSt
    /// messages (39 partitions, some 90,000 sectors) or about 150 devnet ones (450 partitions),
    /// and ten times the largest message any rule allows (a 64 KiB message is under 14 million
    /// of byte gas; a 32 GiB prove-commit's ten SNARKs about 21 million). The cap bounds the
    /// work of validating a block: the charged gas of a full block is at most half its limit,
    /// some 500 SNARK verifications' worth. A deadline with more partitions than one block takes
    /// is sent as several messages over several blocks (the poster splits it).
    #[serde(default = "default_block_gas_limit")]
    pub block_gas_limit: u64,
    /// The compute-over-data rules ([`crate::actors::compute`]).
    #[serde(default)]
    pub compute: ComputePolicy,
}

/// The compute rules of a network (a part of [`Policy`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputePolicy {
    /// Epochs after the deadline in which replicas reveal their results.
    pub reveal_epochs: u64,
    /// Epochs after the deadline in which a verifier attests or disputes.
    pub dispute_epochs: u64,
    /// Most replicas a job may ask for.
    pub max_replicas: u64,
    /// Most input pieces of a job.
    pub max_inputs: u64,
    /// Most bytes of a job's entrypoint, arguments, environment and mount paths together.
    pub max_terms_bytes: u64,
    /// Furthest a deadline may lie ahead of submission, in epochs.
    pub max_deadline_epochs: u64,
}

impl ComputePolicy {
    /// Windows of `reveal_epochs` and `dispute_epochs`; the rest as on every network.
    pub fn with_windows(reveal_epochs: u64, dispute_epochs: u64, max_deadline_epochs: u64) -> Self {
        ComputePolicy {
            reveal_epochs,
            dispute_epochs,
            max_replicas: 15,
            max_inputs: 16,
            max_terms_bytes: 16 << 10,
            max_deadline_epochs,
        }
    }
}

impl Default for ComputePolicy {
    /// The devnet's rules (what a `genesis.json` written before compute jobs existed gets).
    fn default() -> Self {
        ComputePolicy::with_windows(20, 20, 2880)
    }
}

/// [`Policy::block_gas_limit`] of a policy written before the field existed (a `genesis.json`).
fn default_block_gas_limit() -> u64 {
    BLOCK_GAS_LIMIT
}

/// The block gas limit of [`Policy::mainnet`] and [`Policy::devnet`] (see
/// [`Policy::block_gas_limit`]).
const BLOCK_GAS_LIMIT: u64 = 1_000_000_000;

const DAYS_IN_YEAR: u64 = 365;

impl Policy {
    /// The rules of SPEC §8: 30-second epochs, 2880-epoch days, 32 and 64 GiB sectors.
    pub fn mainnet() -> Self {
        let mut p = Self::scaled("mainnet", 30, 60, 20, 70, 900, 150);
        // An hour to reveal, a day to re-execute and dispute, jobs due within 30 days.
        p.compute = ComputePolicy::with_windows(120, 2880, 30 * 2880);
        p
    }

    /// A development network: one-second epochs, 5-epoch deadlines (a 240-epoch day, so a proving
    /// period lasts 4 minutes), 2 KiB and 8 MiB sectors, and thresholds sized for them.
    pub fn devnet() -> Self {
        let mut p = Self::scaled("devnet", 1, 5, 2, 6, 75, 12);
        p.sector_sizes = vec![SectorSize::S2KiB, SectorSize::S8MiB];
        p.minimum_consensus_power = 2048;
        p.minimum_verified_allocation_size = 256;
        p
    }

    #[allow(clippy::too_many_arguments)]
    fn scaled(
        network: &str,
        epoch_seconds: u64,
        window: u64,
        lookback: u64,
        cutoff: u64,
        finality: u64,
        challenge_delay: u64,
    ) -> Self {
        // The arguments are the fixed values of `mainnet()` and `devnet()`: no duration below comes
        // anywhere near u64::MAX (the longest, five mainnet years, is about 5.3 million epochs), so
        // the saturating operations are exact.
        let deadlines = 48;
        let day = window.saturating_mul(deadlines);
        let days = |n: u64| day.saturating_mul(n);
        let years = |n: u64| days(DAYS_IN_YEAR).saturating_mul(n);
        let token = TokenAmount::tokens;
        Policy {
            network: network.to_string(),
            epoch_duration_seconds: epoch_seconds,
            wpost_period_deadlines: deadlines,
            wpost_challenge_window: window,
            wpost_challenge_lookback: lookback,
            fault_declaration_cutoff: cutoff,
            posted_partitions_max: 3,
            chain_finality: finality,
            sector_sizes: vec![SectorSize::S32GiB, SectorSize::S64GiB],
            pre_commit_challenge_delay: challenge_delay,
            max_pre_commit_randomness_lookback: day.saturating_add(finality),
            max_prove_commit_duration: days(30).saturating_add(challenge_delay),
            expired_pre_commit_clean_up_delay: day / 3,
            min_sector_expiration: days(180),
            max_sector_expiration_extension: days(1278),
            max_sector_lifetime: years(5),
            fault_max_age: days(42),
            max_deals_per_sector: 256,
            pre_commit_sector_batch_max: 256,
            total_supply: token(2_000_000_000),
            simple_total: token(330_000_000),
            baseline_total: token(770_000_000),
            baseline_initial_power: 2_888_888_880_000_000_000,
            minting_half_life_years: 6,
            smoothing_alpha: (925, 1_000_000),
            smoothing_beta: (284, 1_000_000_000),
            expected_leaders_per_epoch: 5,
            max_win_count: 15,
            initial_qa_power_estimate: 750_000 << 30,
            pre_commit_deposit_projection: days(20),
            initial_pledge_projection: days(20),
            lock_target: (3, 10),
            initial_pledge_max_per_byte: (crate::types::ATTO_PER_TOKEN, 32 << 30),
            continued_fault_projection: days(351) / 100,
            termination_fee_factor: (85, 1000),
            termination_lifetime_cap: days(140),
            termination_fee_min_factor: (2, 100),
            termination_fault_fee_factor: (105, 100),
            locked_reward_factor: (3, 4),
            reward_vesting_period: days(180),
            reward_vesting_step: day,
            consensus_fault_ineligibility: finality,
            consensus_fault_reporter_share: (1, 20),
            minimum_consensus_power: 10 << 40,
            consensus_miner_min_miners: 4,
            quality_base_multiplier: 10,
            verified_deal_weight_multiplier: 100,
            deal_min_duration: days(180),
            deal_max_duration: days(1278),
            deal_max_label_size: 256,
            provider_collateral_supply_fraction: (1, 100),
            deal_max_amount: token(2_000_000_000),
            minimum_verified_allocation_size: 1 << 20,
            minimum_verified_allocation_term: days(180),
            maximum_verified_allocation_term: years(5),
            maximum_verified_allocation_expiration: days(60),
            market_default_allocation_term_buffer: days(90),
            min_gas_price: TokenAmount::atto(100),
            gas_base: 10_000,
            gas_per_byte: 100,
            gas_per_signature: 50_000,
            gas_per_proof: 1_000_000,
            gas_per_sector: 5_000,
            max_message_size: 64 << 10,
            block_gas_limit: BLOCK_GAS_LIMIT,
            compute: ComputePolicy::default(),
        }
    }

    /// Epochs per day (one proving period).
    ///
    /// Saturating, like every sum of epochs (see [`Epoch`](crate::types::Epoch)): only a policy
    /// written by hand with absurd values could get near `u64::MAX`.
    pub fn epochs_in_day(&self) -> u64 {
        self.wpost_period_deadlines
            .saturating_mul(self.wpost_challenge_window)
    }

    /// Epochs per proving period.
    pub fn wpost_proving_period(&self) -> u64 {
        self.epochs_in_day()
    }

    /// Epochs per year (365 days): the unit of the minting half-life and baseline growth.
    pub fn epochs_in_year(&self) -> u64 {
        self.epochs_in_day().saturating_mul(DAYS_IN_YEAR)
    }

    /// Whether `size` is accepted on this network.
    pub fn accepts(&self, size: SectorSize) -> bool {
        self.sector_sizes.contains(&size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mainnet_constants_match_spec() {
        let p = Policy::mainnet();
        assert_eq!(p.wpost_proving_period(), 2880);
        assert_eq!(p.wpost_challenge_window, 60);
        assert_eq!(p.max_pre_commit_randomness_lookback, 3780);
        assert_eq!(p.continued_fault_projection, 10_108);
        assert_eq!(p.fault_max_age, 120_960);
        assert_eq!(p.max_prove_commit_duration, 30 * 2880 + 150);
    }

    #[test]
    fn devnet_keeps_the_ratios() {
        let (m, d) = (Policy::mainnet(), Policy::devnet());
        let scale = m.epochs_in_day() / d.epochs_in_day();
        assert_eq!(scale, 12);
        assert_eq!(
            m.fault_max_age / m.epochs_in_day(),
            d.fault_max_age / d.epochs_in_day()
        );
        assert_eq!(m.chain_finality, d.chain_finality * scale);
        assert!(d.fault_declaration_cutoff > d.wpost_challenge_lookback);
        assert!(d.wpost_proving_period() * d.epoch_duration_seconds <= 5 * 60);
    }

    #[test]
    fn a_challenge_is_drawn_after_its_deadline_stops_taking_sectors() {
        // A deadline takes no new sector once it is the next to open (`window` epochs before it
        // opens); its challenge comes `lookback` epochs before it opens, so later.
        for p in [Policy::mainnet(), Policy::devnet()] {
            assert!(p.wpost_challenge_lookback < p.wpost_challenge_window);
        }
    }

    #[test]
    fn a_block_takes_several_full_window_posts_and_the_largest_message() {
        for p in [Policy::mainnet(), Policy::devnet()] {
            let size = p.sector_sizes[0];
            let sectors = p.posted_partitions_max * size.window_post_sectors_per_partition() as u64;
            // Twice the charged gas of a full PoSt message (a kilobyte), as wallets size it.
            let post = 2
                * (p.gas_base
                    + p.gas_per_byte * 1024
                    + p.gas_per_proof * p.posted_partitions_max
                    + p.gas_per_sector * sectors
                    + 2 * p.gas_per_signature);
            assert!(p.block_gas_limit / post >= 10, "{}: {post}", p.network);
            let largest = 2 * (p.gas_base + p.gas_per_byte * p.max_message_size);
            assert!(p.block_gas_limit >= 10 * largest);
        }
    }
}
