//! The result types of the provider's API (the server builds them, [`super::client`] decodes
//! them). The poster's snapshot, `provider_proving`'s result, is [`crate::status::ProvingStatus`];
//! a declaration's result is [`crate::poster::Declared`].

use lode_chain::types::{ActorId, Epoch};
use lode_node::rpc::types::{HeadInfo, serde_hex};
use lode_proofs::sector::SectorSize;
use serde::{Deserialize, Serialize};

use crate::status::MiningEvents;

/// `provider_info`: who the provider is, what it runs on, and the chain as its node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderInfo {
    /// The miner actor.
    #[serde(with = "serde_hex::actor")]
    pub actor: ActorId,
    /// Its owner account.
    #[serde(with = "serde_hex::actor")]
    pub owner: ActorId,
    /// Its worker account (signs blocks, proofs and declarations).
    #[serde(with = "serde_hex::actor")]
    pub worker: ActorId,
    /// Its sector size.
    pub sector_size: SectorSize,
    /// The network's name.
    pub network: String,
    /// The node API the provider uses.
    pub node_api: String,
    /// lode's version.
    pub version: String,
    /// This API's version (raised when a method changes incompatibly).
    pub api_version: u32,
    /// Unix time the provider started.
    pub started_at: u64,
    /// Sectors of this miner in the sector store.
    pub sectors_in_store: u64,
    /// The node's head (`null` when the node did not answer: see `node_error`).
    pub head: Option<HeadInfo>,
    /// Why the node did not answer.
    pub node_error: Option<String>,
}

/// A sector's record on chain, as the node reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainSector {
    /// `active`, `unproven`, `faulty` or `recovering`.
    pub status: String,
    /// The deadline it is proven in.
    pub deadline: u64,
    /// Its partition in that deadline.
    pub partition: u64,
    /// Activation epoch.
    pub activation: Epoch,
    /// Expiration epoch.
    pub expiration: Epoch,
}

/// One sector: on disk, on chain, or both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderSector {
    /// Sector number.
    pub sector_number: u64,
    /// Its directory in the sector store (`null`: not in the store).
    pub dir: Option<String>,
    /// Whether its replica and tree R can be opened (what proving needs).
    pub readable: bool,
    /// Its record on chain (`null`: not live on chain, or the node did not answer).
    pub chain: Option<ChainSector>,
    /// Declared faulty by the operator: the poster will not declare it recovered.
    pub held_faulty: bool,
}

/// `provider_sectors`: the sector store beside the chain's view of the miner's sectors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderSectors {
    /// Every sector in the store or live on chain, by number.
    pub sectors: Vec<ProviderSector>,
    /// Why the node did not answer (then no sector has a chain record).
    pub node_error: Option<String>,
}

/// `provider_mining`: elections and blocks since the provider started.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MiningInfo {
    /// Elections won (win count above zero).
    pub elections_won: u64,
    /// Blocks the node accepted.
    pub blocks_produced: u64,
    /// Blocks the node refused.
    pub blocks_refused: u64,
    /// Winning PoSts made.
    pub winning_posts: u64,
    /// Their mean duration in seconds (`null` before the first).
    pub winning_post_average_seconds: Option<f64>,
    /// Window PoSt partition proofs made.
    pub window_post_partitions: u64,
    /// Their mean duration in seconds (`null` before the first).
    pub window_post_average_seconds: Option<f64>,
    /// The mining loop's last events.
    #[serde(flatten)]
    pub events: MiningEvents,
}
