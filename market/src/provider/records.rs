//! The provider's deal records: one per accepted deal, keyed by its UUID, in the market's records
//! (tree `deals` of [`MarketTree`]: the provider's embedded database, or the cluster's PostgreSQL
//! database), JSON-encoded, every write durable (flushed or committed) before it returns, so a
//! record read after a `kill -9` is one that was written whole.
//!
//! A deal moves through [`DealStatus`]:
//! `accepted → transferring → transferred (CommP checked) → publishing (the message recorded
//! before it is pushed) → published (deal id) → handed_off (to sealing: a sector) → sealing →
//! active → expired | slashed`, or `failed` with the reason from any state before `active`; a
//! `publishing` deal whose message can never be executed (another message took its nonce) goes
//! back to `transferred`.
//! `proposed` is the state of a request under evaluation: a rejected proposal is never written.

use std::path::Path;

use lode_records::{Abort, KvError};

use lode_chain::actors::market::ClientDealProposal;
use lode_chain::message::SignedMessage;
use lode_chain::types::{DealId, Epoch, SectorNumber};
use serde::{Deserialize, Serialize};

use crate::deal::{DealUuid, TransferSpec};
use crate::error::{MarketError, MarketResult};
use crate::retrieval::BlockIndex;

/// Where a provider's deal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DealStatus {
    /// Being evaluated (never persisted).
    Proposed,
    /// Accepted; its data not yet asked for.
    Accepted,
    /// Its data is being fetched.
    Transferring,
    /// Its data is on disk and its CommP matches the proposal.
    Transferred,
    /// Its publication message was signed and recorded (and pushed).
    Publishing,
    /// Published on chain: it has a deal id.
    Published,
    /// Handed to the sealing pipeline: it has a sector.
    HandedOff,
    /// Its sector is being sealed.
    Sealing,
    /// Activated on chain (its sector proven).
    Active,
    /// Ended at its end epoch.
    Expired,
    /// Terminated early (its sector lost), the provider's collateral burnt.
    Slashed,
    /// Failed: the reason is in the record.
    Failed,
}

impl DealStatus {
    /// Whether the deal has reached an end.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DealStatus::Expired | DealStatus::Slashed | DealStatus::Failed
        )
    }

    /// Whether the deal has been accepted and not yet published (its client's escrow will be
    /// locked by its publication).
    pub fn before_publication(self) -> bool {
        matches!(
            self,
            DealStatus::Accepted
                | DealStatus::Transferring
                | DealStatus::Transferred
                | DealStatus::Publishing
        )
    }

    /// Whether the deal's piece is accepted and not yet in the sealing pipeline (it takes
    /// capacity the pipeline does not know of yet).
    pub fn before_sealing(self) -> bool {
        self.before_publication() || self == DealStatus::Published
    }
}

impl std::fmt::Display for DealStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        f.write_str(&s)
    }
}

/// The publication message of a deal (shared by the deals of its batch).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRecord {
    /// The signed message, as pushed (pushed again, never re-signed).
    pub message: SignedMessage,
    /// Its id.
    #[serde(with = "lode_node::rpc::types::serde_hex::hash")]
    pub id: [u8; 32],
    /// This deal's position in the message's deals (its deal id is at that position of the
    /// receipt's ids).
    pub index: usize,
    /// The head epoch when it was signed (or last pushed).
    pub pushed_epoch: Epoch,
}

/// A provider's deal record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderDeal {
    /// The deal's UUID.
    pub uuid: DealUuid,
    /// The client's libp2p peer id.
    pub client_peer: String,
    /// The signed proposal.
    pub proposal: ClientDealProposal,
    /// How the data travels.
    pub transfer: TransferSpec,
    /// Where it is.
    pub status: DealStatus,
    /// The head epoch when it was accepted.
    pub accepted_epoch: Epoch,
    /// The head epoch when its data was checked.
    #[serde(default)]
    pub transferred_epoch: Option<Epoch>,
    /// Its publication.
    #[serde(default)]
    pub publish: Option<PublishRecord>,
    /// Its deal id on chain.
    #[serde(default)]
    pub deal_id: Option<DealId>,
    /// Its sector.
    #[serde(default)]
    pub sector: Option<SectorNumber>,
    /// Why it failed (status `failed`), or the last error of a step that will be retried.
    #[serde(default)]
    pub error: Option<String>,
    /// Unix seconds of the last change.
    pub updated_at: u64,
}

impl ProviderDeal {
    /// Moves to `status`, stamping the time and clearing a retried step's error.
    pub fn set_status(&mut self, status: DealStatus) {
        self.status = status;
        self.updated_at = now();
        if status != DealStatus::Failed {
            self.error = None;
        }
    }

    /// Fails the deal with `reason`.
    pub fn fail(&mut self, reason: impl Into<String>) {
        self.status = DealStatus::Failed;
        self.error = Some(reason.into());
        self.updated_at = now();
    }
}

/// Unix seconds now.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The trees of the market's records: its deals, its compute jobs and its block index, in one
/// database ([`lode_records`]: the provider's embedded `market` database, or the cluster's
/// PostgreSQL database, rows `market/<tree>`, fenced by the leader lease).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MarketTree {
    /// Deal records by UUID ([`DealRecords`]).
    Deals,
    /// Compute-job records by job id ([`crate::jobs::records::JobRecords`]).
    Jobs,
    /// Block locations ([`BlockIndex`]).
    BlockIndex,
    /// CAR roots by piece ([`BlockIndex`]).
    BlockRoots,
    /// The pieces indexed completely ([`BlockIndex`]).
    BlockPieces,
}

impl lode_records::Trees for MarketTree {
    const ALL: &'static [MarketTree] = &[
        MarketTree::Deals,
        MarketTree::Jobs,
        MarketTree::BlockIndex,
        MarketTree::BlockRoots,
        MarketTree::BlockPieces,
    ];

    /// The sled tree's name (what the embedded database has always called it).
    fn name(self) -> &'static str {
        match self {
            MarketTree::Deals => "deals",
            MarketTree::Jobs => "jobs",
            MarketTree::BlockIndex => "block_index",
            MarketTree::BlockRoots => "block_roots",
            MarketTree::BlockPieces => "block_pieces",
        }
    }

    fn column(self) -> &'static str {
        match self {
            MarketTree::Deals => "market/deals",
            MarketTree::Jobs => "market/jobs",
            MarketTree::BlockIndex => "market/block_index",
            MarketTree::BlockRoots => "market/block_roots",
            MarketTree::BlockPieces => "market/block_pieces",
        }
    }
}

/// The market's records.
pub type MarketRecords = lode_records::Records<MarketTree>;

/// The trees a provider in a cluster keeps in memory (`Records::postgres_cached`): those the
/// market's ticks read whole (the deals, the jobs); not the block index, which is read by key.
pub const CACHED: &[MarketTree] = &[MarketTree::Deals, MarketTree::Jobs];

/// A records error, said with where the records are.
pub(crate) fn records_error(
    records: &MarketRecords,
) -> impl Fn(lode_records::KvError) -> MarketError + '_ {
    move |e| MarketError::Records {
        at: records.location(),
        why: e.to_string(),
    }
}

/// The deal records (tree `deals`). Cheap to clone: clones share the records.
#[derive(Clone, Debug)]
pub struct DealRecords {
    records: MarketRecords,
}

impl DealRecords {
    /// Opens (or creates) the records at `path` (the provider's embedded market database, a
    /// sled directory).
    ///
    /// # Errors
    /// [`MarketError::Records`] when it cannot be opened (another process holds it, …).
    pub fn open(path: impl AsRef<Path>) -> MarketResult<DealRecords> {
        let path = path.as_ref();
        let records = MarketRecords::open(path).map_err(|e| MarketError::Records {
            at: path.display().to_string(),
            why: e.to_string(),
        })?;
        Ok(DealRecords::new(records))
    }

    /// The deal records in `records` (the cluster's database, or an embedded one).
    pub fn new(records: MarketRecords) -> DealRecords {
        DealRecords { records }
    }

    /// The market's records these deal records are in.
    pub fn records(&self) -> &MarketRecords {
        &self.records
    }

    /// The block index of the provider's CAR payloads, in the same records (what the retrieval
    /// server's trustless gateway reads: [`crate::retrieval::serve_with_index`]).
    pub fn block_index(&self) -> BlockIndex {
        BlockIndex::new(self.records.clone())
    }

    /// The provider's compute-job records, in the same records.
    pub fn job_records(&self) -> crate::jobs::records::JobRecords {
        crate::jobs::records::JobRecords::new(self.records.clone())
    }

    fn error(&self, why: impl std::fmt::Display) -> MarketError {
        MarketError::Records {
            at: self.records.location(),
            why: why.to_string(),
        }
    }

    fn encode(&self, deal: &ProviderDeal) -> MarketResult<Vec<u8>> {
        serde_json::to_vec(deal)
            .map_err(|e| self.error(format!("cannot encode deal {}: {e}", deal.uuid)))
    }

    fn decode(&self, bytes: &[u8]) -> MarketResult<ProviderDeal> {
        serde_json::from_slice(bytes)
            .map_err(|e| self.error(format!("a deal record does not decode: {e}")))
    }

    /// Writes a new record, durably; `false` (nothing written) when one with its UUID exists.
    ///
    /// # Errors
    /// [`MarketError::Records`].
    pub fn insert_new(&self, deal: &ProviderDeal) -> MarketResult<bool> {
        let bytes = self.encode(deal)?;
        let key = deal.uuid.as_bytes();
        self.records
            .transaction(|tx| -> Result<bool, Abort<KvError>> {
                if tx.get(MarketTree::Deals, key)?.is_some() {
                    return Ok(false);
                }
                tx.insert(MarketTree::Deals, key, &bytes)?;
                Ok(true)
            })
            .map_err(records_error(&self.records))
    }

    /// Writes (replaces) a record, durably.
    ///
    /// # Errors
    /// [`MarketError::Records`].
    pub fn put(&self, deal: &ProviderDeal) -> MarketResult<()> {
        self.put_all(std::slice::from_ref(deal))
    }

    /// Writes several records, all or none, durably.
    ///
    /// # Errors
    /// [`MarketError::Records`].
    pub fn put_all(&self, deals: &[ProviderDeal]) -> MarketResult<()> {
        let encoded = deals
            .iter()
            .map(|d| Ok((d.uuid.as_bytes(), self.encode(d)?)))
            .collect::<MarketResult<Vec<_>>>()?;
        self.records
            .transaction(|tx| -> Result<(), Abort<KvError>> {
                for (key, bytes) in &encoded {
                    tx.insert(MarketTree::Deals, key.as_slice(), bytes)?;
                }
                Ok(())
            })
            .map_err(records_error(&self.records))
    }

    /// A record.
    ///
    /// # Errors
    /// [`MarketError::Records`].
    pub fn get(&self, uuid: &DealUuid) -> MarketResult<Option<ProviderDeal>> {
        match self
            .records
            .get(MarketTree::Deals, uuid.as_bytes())
            .map_err(records_error(&self.records))?
        {
            Some(bytes) => Ok(Some(self.decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Every record, by UUID.
    ///
    /// # Errors
    /// [`MarketError::Records`].
    pub fn list(&self) -> MarketResult<Vec<ProviderDeal>> {
        self.records
            .scan(MarketTree::Deals, &[])
            .map_err(records_error(&self.records))?
            .iter()
            .map(|(_, bytes)| self.decode(bytes))
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::deal::tests::{key, request};

    pub(crate) fn record() -> ProviderDeal {
        let req = request("devnet", &key(3));
        ProviderDeal {
            uuid: req.uuid,
            client_peer: "peer".into(),
            proposal: req.proposal,
            transfer: req.transfer,
            status: DealStatus::Accepted,
            accepted_epoch: 7,
            transferred_epoch: None,
            publish: None,
            deal_id: None,
            sector: None,
            error: None,
            updated_at: now(),
        }
    }

    #[test]
    fn records_persist_and_insert_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deals");
        let mut deal = record();
        {
            let records = DealRecords::open(&path).unwrap();
            assert!(records.insert_new(&deal).unwrap());
            let mut other = deal.clone();
            other.client_peer = "someone else".into();
            assert!(!records.insert_new(&other).unwrap());
            deal.set_status(DealStatus::Transferring);
            records.put(&deal).unwrap();
        }
        let records = lode_testkit::reopen_sled(&path, || DealRecords::open(&path));
        assert_eq!(records.get(&deal.uuid).unwrap(), Some(deal.clone()));
        assert_eq!(records.list().unwrap(), vec![deal.clone()]);
        assert_eq!(records.get(&DealUuid::new_random()).unwrap(), None);
    }

    #[test]
    fn status_names() {
        assert_eq!(DealStatus::HandedOff.to_string(), "handed_off");
        assert!(DealStatus::Failed.is_final());
        assert!(DealStatus::Publishing.before_publication());
        assert!(!DealStatus::Published.before_publication());
        assert!(DealStatus::Published.before_sealing());
    }
}
