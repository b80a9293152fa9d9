//! What the daemon's loops publish for the provider's API: the poster's view of each deadline and
//! the mining loop's last events.
//!
//! The loops own their state; after each round they publish a snapshot through a
//! [`tokio::sync::watch`] channel (cheap to clone, never blocking the loop: a reader clones the
//! latest value). [`ProvingStatus`] is the result of `provider_proving` as it stands;
//! [`MiningEvents`] is the part of `provider_mining` that is not a counter of the metrics.

use lode_chain::types::Epoch;
use lode_node::rpc::types::serde_hex;
use serde::{Deserialize, Serialize};

/// The poster's task for a deadline's current window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostState {
    /// Nothing done yet: the challenge is not drawn or not deep enough, or nothing to prove.
    #[default]
    Waiting,
    /// The Window PoSt is being proven now.
    Proving,
    /// Proven, waiting for the window to open to be submitted.
    Proved,
    /// Submitted; not yet seen on chain.
    Submitted,
    /// Every partition with sectors to prove is posted on chain in this window.
    Confirmed,
}

impl PostState {
    /// The state's name as the API writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            PostState::Waiting => "waiting",
            PostState::Proving => "proving",
            PostState::Proved => "proved",
            PostState::Submitted => "submitted",
            PostState::Confirmed => "confirmed",
        }
    }
}

/// How a deadline's previous window ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowResult {
    /// The proof was on chain when the window closed.
    Confirmed,
    /// The window closed without this provider's proof on chain.
    Missed,
}

impl WindowResult {
    /// The result's name as the API writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            WindowResult::Confirmed => "confirmed",
            WindowResult::Missed => "missed",
        }
    }
}

/// One deadline as the poster sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlineStatus {
    /// The deadline's index in the proving period.
    pub index: u64,
    /// First epoch of its next window not yet closed.
    pub open: Epoch,
    /// First epoch after that window.
    pub close: Epoch,
    /// The epoch whose randomness challenges the window's proof.
    pub challenge: Epoch,
    /// Faults and recoveries for this window must land before this epoch.
    pub fault_cutoff: Epoch,
    /// The poster proves and first submits only before this epoch: the window's close less the
    /// safety margin.
    #[serde(default)]
    pub submit_by: Epoch,
    /// Whether the window is open at the next epoch.
    pub current: bool,
    /// Partitions in the deadline.
    pub partitions: u64,
    /// Live sectors in them.
    pub sectors: u64,
    /// Of those, faulty.
    pub faults: u64,
    /// Of the faulty, declared recovered.
    pub recoveries: u64,
    /// Partitions posted in the current window.
    pub posted: u64,
    /// The poster's task for this window.
    pub state: PostState,
    /// The last epoch the poster submitted a Window PoSt for this deadline.
    pub last_submitted: Option<Epoch>,
    /// How the deadline's previous window ended (`null`: none seen since the provider started).
    pub last_result: Option<WindowResult>,
    /// Windows of this deadline missed since the provider started.
    pub missed: u64,
}

/// The poster's snapshot: `provider_proving`'s result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvingStatus {
    /// The miner.
    #[serde(with = "serde_hex::actor")]
    pub actor: lode_chain::types::ActorId,
    /// The head epoch of the poster's last view (`null` before its first round).
    pub head_epoch: Option<Epoch>,
    /// Unix time of that view.
    pub updated_at: Option<u64>,
    /// Every deadline holding the miner's partitions, by index.
    pub deadlines: Vec<DeadlineStatus>,
    /// Windows missed since the provider started, all deadlines together.
    pub missed: u64,
    /// Sectors declared faulty through the API: the poster does not declare them recovered
    /// (`provider_declareRecoveries` does), until the provider restarts.
    pub held_faults: Vec<u64>,
    /// What the last round failed with (`null` when it succeeded).
    pub last_error: Option<String>,
    /// The safety margin: epochs before a window's close by which its proof must be submitted.
    #[serde(default)]
    pub margin_epochs: u64,
    /// The proving period at the next epoch (`null` before the first view, or while the miner
    /// has no partition).
    #[serde(default)]
    pub period: Option<ProvingPeriod>,
    /// Sectors whose last proving check failed, and why (those of deadlines whose fault cutoff
    /// was near are checked; a sector that passes again is removed).
    #[serde(default)]
    pub check_failures: Vec<CheckFailureStatus>,
}

/// The miner's proving period at the next epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvingPeriod {
    /// Its first epoch.
    pub start: Epoch,
    /// Deadlines per period.
    pub deadlines: u64,
    /// Epochs per deadline's challenge window.
    pub challenge_window: u64,
    /// The deadline whose window holds the next epoch (`null` before the miner's first period).
    pub current_deadline: Option<u64>,
    /// Its window's first epoch.
    pub current_open: Option<Epoch>,
    /// The first epoch after its window.
    pub current_close: Option<Epoch>,
}

/// A sector that failed its last proving check.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckFailureStatus {
    /// The sector.
    pub sector_number: u64,
    /// Its deadline.
    pub deadline: u64,
    /// Its partition.
    pub partition: u64,
    /// The head epoch of the check.
    pub epoch: Epoch,
    /// Why it failed.
    pub reason: String,
}

/// A block this provider made and the node accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRecord {
    /// Its epoch.
    pub epoch: Epoch,
    /// Its id.
    #[serde(with = "serde_hex::hash")]
    pub id: [u8; 32],
    /// Its win count.
    pub wins: u64,
}

/// Something at an epoch, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochNote {
    /// The epoch.
    pub epoch: Epoch,
    /// What happened.
    pub why: String,
}

/// The mining loop's last events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MiningEvents {
    /// The last epoch whose election ran.
    pub last_election: Option<Epoch>,
    /// The last block the node accepted.
    pub last_block: Option<BlockRecord>,
    /// The last won election whose block the node refused.
    pub last_refused: Option<EpochNote>,
    /// Why the miner could not take part in the last election (`null` when it could).
    pub ineligible: Option<EpochNote>,
    /// The last election that failed (a node error, a proof that could not be made).
    pub last_error: Option<EpochNote>,
}
