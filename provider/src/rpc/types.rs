//! The result types of the provider's API (the server builds them, [`super::client`] decodes
//! them). The poster's snapshot, `provider_proving`'s result, is [`crate::status::ProvingStatus`];
//! a declaration's result is [`crate::poster::Declared`].

use lode_chain::types::{ActorId, Epoch};
use lode_node::rpc::types::{HeadInfo, serde_hex};
use lode_proofs::sector::SectorSize;
use serde::{Deserialize, Serialize};

use crate::pipeline::state::HistoryEntry;
use crate::pipeline::{SectorKind, SectorRecord, SectorState};
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
    /// The cluster's worker holding the sector, when this store does not (the newest holder in
    /// the cluster's location index: where it is proven from); `null` without a cluster.
    #[serde(default)]
    pub worker: Option<String>,
}

/// `provider_sectors`: the sector store beside the chain's view of the miner's sectors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderSectors {
    /// Every sector in the store or live on chain, by number.
    pub sectors: Vec<ProviderSector>,
    /// Why the node did not answer (then no sector has a chain record).
    pub node_error: Option<String>,
    /// Why the cluster's location index could not be read (then no sector names its worker).
    #[serde(default)]
    pub cluster_error: Option<String>,
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

/// A sector in the sealing pipeline (`provider_pipeline`, `provider_sectorStatus`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineSector {
    /// Sector number.
    pub sector_number: u64,
    /// `CommittedCapacity` or `Deals`.
    pub kind: SectorKind,
    /// Its state (`PreCommit1`, `WaitSeed`, `Proving`, `CommitFailed`, …).
    pub state: SectorState,
    /// Failures of the phase being retried.
    pub failures: u32,
    /// The last failure's reason.
    pub last_error: Option<String>,
    /// Unix time before which a failed phase is not retried.
    pub retry_at: Option<u64>,
    /// Unix time it was pledged.
    pub created_at: u64,
    /// Unix time of its last change.
    pub updated_at: u64,
    /// The epoch of its seal ticket (once PreCommit1 drew it).
    pub ticket_epoch: Option<u64>,
    /// Its `comm_r` (once PreCommit2 computed it), hex.
    pub comm_r: Option<String>,
    /// The pre-commit message's id, hex.
    pub pre_commit: Option<String>,
    /// The prove-commit message's id, hex.
    pub prove_commit: Option<String>,
    /// The termination message's id, hex (`Terminating`, `Terminated`).
    #[serde(default)]
    pub terminate: Option<String>,
    /// Its last transitions, oldest first.
    pub history: Vec<HistoryEntry>,
    /// Why it waits, as the pipeline's last look at it said (e.g. a new sector held in
    /// `Packing` until the scratch and the store have room for it, with the figures); `null`
    /// when it does not wait or the daemon has not looked at it since it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// Where its files are now: its scratch directory while it is sealed, its sector store
    /// directory once finalized (`null`: nowhere yet, or deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
}

impl PipelineSector {
    /// The view of a pipeline record.
    pub fn from_record(r: &SectorRecord) -> Self {
        let c = &r.chain;
        PipelineSector {
            sector_number: r.number,
            kind: r.kind,
            state: r.state(),
            failures: r.progress.failures,
            last_error: r.progress.last_error.clone(),
            retry_at: r.progress.retry_at,
            created_at: r.created_at,
            updated_at: r.progress.updated_at,
            ticket_epoch: c.seal_rand_epoch,
            comm_r: c.comm_r.map(hex::encode),
            pre_commit: c.pre_commit.as_ref().map(|m| hex::encode(m.id)),
            prove_commit: c.prove_commit.as_ref().map(|m| hex::encode(m.id)),
            terminate: c.terminate.as_ref().map(|m| hex::encode(m.id)),
            history: r.progress.history.clone(),
            waiting: None,
            dir: None,
        }
    }

    /// The view of a record, with what the running pipeline knows of it besides (why it waits,
    /// where its files are).
    pub fn live<A: crate::NodeApi>(
        r: &SectorRecord,
        p: &crate::pipeline::runner::Pipeline<A>,
    ) -> Self {
        PipelineSector {
            waiting: p.waiting(r.number),
            dir: p.sector_dir(r.number).map(|d| d.display().to_string()),
            ..PipelineSector::from_record(r)
        }
    }
}

/// `provider_pipeline`: the sealing pipeline's sectors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineSectors {
    /// Why the pipeline does not run (`null` when it does): then no sector can be pledged.
    pub disabled: Option<String>,
    /// Its sectors, by number.
    pub sectors: Vec<PipelineSector>,
}

/// `provider_sectorStatus`: everything the provider knows of one sector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorStatus {
    /// Sector number.
    pub sector_number: u64,
    /// Its pipeline record (`null`: not sealed by the pipeline, e.g. pre-sealed at genesis).
    pub pipeline: Option<PipelineSector>,
    /// Its directory in the sector store and whether it is readable, and its chain record.
    pub sector: Option<ProviderSector>,
    /// Its termination message, once the pipeline sent one, and what the chain made of it.
    #[serde(default)]
    pub termination: Option<Termination>,
}

/// A sector's termination message (in `provider_sectorStatus`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Termination {
    /// The message's id, hex.
    pub message: String,
    /// The epoch that executed it (`null`: not yet).
    pub executed_at: Option<lode_chain::types::Epoch>,
    /// The termination fee charged (`null` until executed, or when it failed).
    pub fee: Option<lode_chain::types::TokenAmount>,
    /// The chain's error, when it refused it (the pipeline then sends another).
    pub error: Option<String>,
}

/// `provider_pledge`: the committed-capacity sectors created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pledged {
    /// Their numbers.
    pub sectors: Vec<u64>,
}

/// One sector's proving check, in `provider_check`'s result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorCheck {
    /// Sector number.
    pub sector_number: u64,
    /// Its deadline.
    pub deadline: u64,
    /// Its partition in that deadline.
    pub partition: u64,
    /// Whether the chain holds it faulty now.
    pub faulty: bool,
    /// Whether it passed: its files readable and the challenged leaves opening against its
    /// `comm_r`.
    pub ok: bool,
    /// Why it failed (`null` when it passed).
    pub reason: Option<String>,
}

/// `provider_check`: the proving check of the live sectors of every deadline, or of one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProvingCheck {
    /// The head epoch the check ran at (its leaves are drawn from it).
    pub head_epoch: Epoch,
    /// The deadline asked for (`null`: every deadline).
    pub deadline: Option<u64>,
    /// Every live sector checked, by deadline, partition and number.
    pub sectors: Vec<SectorCheck>,
    /// How long the check took, in seconds.
    pub seconds: f64,
}

/// `provider_tasks`: the scheduler's tasks — running, then queued, then (with history) finished.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderTasks {
    /// Why the pipeline (and its scheduler) does not run (`null` when it does).
    pub disabled: Option<String>,
    /// The tasks.
    pub tasks: Vec<crate::tasks::TaskView>,
}

/// `provider_market`: how clients reach the hosted market.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketInfo {
    /// The market host's libp2p peer id.
    pub peer_id: String,
    /// The addresses announced on chain (libp2p ones, then the retrieval server's `…/http`).
    pub addrs: Vec<String>,
    /// The retrieval server's base URL (`GET /piece/<piece CID>`).
    pub retrieval_url: String,
}
