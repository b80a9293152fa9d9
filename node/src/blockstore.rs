//! The block store: headers, their messages and tipset records, by hash, in sled; and the
//! receipts of every applied tipset, with an index from message id to the tipsets that carried it.
//!
//! Blocks are content-addressed and written before they are applied (a write that a crash
//! interrupts leaves a block nobody points at, which is harmless); which tipset is the head is
//! not stored here but in the state store's metadata, atomically with the state it belongs to
//! (see [`crate::core`]). **Invariant:** a tipset record and its blocks are durable (the
//! database flushed by [`BlockStore::flush`]) before any state commit names that tipset as the
//! head, so a node killed at any point reopens at a head whose tipset it has. A tipset's receipts
//! are written right after its state commit, and so are durable before the next commit: only the
//! head's can be missing after a crash, and the node re-applies the head then ([`crate::core`]).

use std::path::Path;

use lode_chain::block::BlockHeader;
use lode_chain::consensus::TipsetKey;
use lode_chain::message::{Message, Receipt};
use lode_chain::types::Epoch;
use serde::{Deserialize, Serialize};

use crate::error::{NodeError, NodeResult};
use crate::wire::FullBlock;

/// What the node knows of a tipset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TipsetMeta {
    /// Its key (sorted block ids).
    pub key: TipsetKey,
    /// Its epoch.
    pub epoch: Epoch,
    /// The parent tipset's key.
    pub parents: TipsetKey,
    /// The smallest ticket digest of its blocks (the genesis beacon for genesis).
    pub min_ticket: [u8; 32],
    /// Total win count of its blocks.
    pub wins: u64,
    /// The parent weight its headers claim.
    pub claimed_parent_weight: u128,
    /// Its weight, once computed from the parent state (when it is applied).
    pub weight: Option<u128>,
    /// The state root after it, once applied.
    pub post_root: Option<[u8; 32]>,
    /// Why it is invalid, if applying it failed.
    pub invalid: Option<String>,
}

impl TipsetMeta {
    /// The record of a tipset made of these headers (same epoch and parents, checked by the
    /// caller), not yet validated.
    pub fn of_headers(headers: &[&BlockHeader]) -> Option<Self> {
        let first = headers.first()?;
        let key = TipsetKey::new(headers.iter().map(|h| h.id()).collect());
        let min_ticket = headers.iter().map(|h| h.ticket_digest()).min()?;
        let wins = headers
            .iter()
            .fold(0u64, |a, h| a.saturating_add(h.win_count));
        Some(TipsetMeta {
            key,
            epoch: first.epoch,
            parents: TipsetKey(first.parents.clone()),
            min_ticket,
            wins,
            claimed_parent_weight: first.parent_weight,
            weight: None,
            post_root: None,
            invalid: None,
        })
    }

    /// The key's hash (how tipsets are named in the store).
    pub fn hash(&self) -> [u8; 32] {
        self.key.hash()
    }
}

/// The block database.
#[derive(Debug)]
pub struct BlockStore {
    db: sled::Db,
    headers: sled::Tree,
    messages: sled::Tree,
    tipsets: sled::Tree,
    /// Tipset hash → its receipts, one per distinct message in order, with the message ids.
    receipts: sled::Tree,
    /// Message id ‖ tipset hash → nothing: the tipsets whose receipts name the message.
    carried_by: sled::Tree,
}

/// The receipts of a tipset: `(message id, receipt)` per distinct message, in execution order.
pub type TipsetReceipts = Vec<([u8; 32], Receipt)>;

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &'static str) -> NodeResult<T> {
    postcard::from_bytes(bytes).map_err(|_| NodeError::Corrupt(what))
}

impl BlockStore {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> NodeResult<Self> {
        let db = sled::open(dir)?;
        Ok(BlockStore {
            headers: db.open_tree("headers")?,
            messages: db.open_tree("messages")?,
            tipsets: db.open_tree("tipsets")?,
            receipts: db.open_tree("receipts")?,
            carried_by: db.open_tree("carried_by")?,
            db,
        })
    }

    /// Stores a block (idempotent).
    pub fn put_block(&self, block: &FullBlock) -> NodeResult<()> {
        let id = block.id();
        self.messages
            .insert(id, lode_chain::codec::encode(&block.messages))?;
        self.headers
            .insert(id, lode_chain::codec::encode(&block.header))?;
        Ok(())
    }

    /// Whether a block is stored.
    pub fn has_block(&self, id: &[u8; 32]) -> NodeResult<bool> {
        Ok(self.headers.contains_key(id)?)
    }

    /// A stored header.
    pub fn header(&self, id: &[u8; 32]) -> NodeResult<Option<BlockHeader>> {
        self.headers
            .get(id)?
            .map(|b| decode(&b, "a block header"))
            .transpose()
    }

    /// A stored block with its messages.
    pub fn block(&self, id: &[u8; 32]) -> NodeResult<Option<FullBlock>> {
        let Some(header) = self.header(id)? else {
            return Ok(None);
        };
        let messages: Vec<Message> = match self.messages.get(id)? {
            Some(b) => decode(&b, "a block's messages")?,
            None => return Ok(None),
        };
        Ok(Some(FullBlock { header, messages }))
    }

    /// Stores a tipset record.
    pub fn put_tipset(&self, meta: &TipsetMeta) -> NodeResult<()> {
        self.tipsets
            .insert(meta.hash(), lode_chain::codec::encode(meta))?;
        Ok(())
    }

    /// Stores the receipts of applied tipset `tipset` (idempotent: a tipset applied again after a
    /// reorganisation has the same receipts). The index entries go first, so a receipts record
    /// always has its index.
    pub fn put_receipts(&self, tipset: &[u8; 32], receipts: &TipsetReceipts) -> NodeResult<()> {
        for (id, _) in receipts {
            let mut key = id.to_vec();
            key.extend_from_slice(tipset);
            self.carried_by.insert(key, &[])?;
        }
        self.receipts
            .insert(tipset, lode_chain::codec::encode(receipts))?;
        Ok(())
    }

    /// The receipts of tipset `tipset`, if it was applied and they were written.
    pub fn receipts(&self, tipset: &[u8; 32]) -> NodeResult<Option<TipsetReceipts>> {
        self.receipts
            .get(tipset)?
            .map(|b| decode(&b, "a tipset's receipts"))
            .transpose()
    }

    /// The tipsets (by hash) whose receipts name message `id`, on any fork.
    pub fn tipsets_with_message(&self, id: &[u8; 32]) -> NodeResult<Vec<[u8; 32]>> {
        let mut out = Vec::new();
        for r in self.carried_by.scan_prefix(id) {
            let (key, _) = r?;
            let hash: [u8; 32] = key
                .get(32..)
                .and_then(|t| t.try_into().ok())
                .ok_or(NodeError::Corrupt("a message index entry"))?;
            out.push(hash);
        }
        Ok(out)
    }

    /// Makes every record written so far durable. sled otherwise writes its buffers out in the
    /// background, and a killed process loses what was still buffered: the node calls this before
    /// a state commit names a tipset as its head.
    pub fn flush(&self) -> NodeResult<()> {
        self.db.flush()?;
        Ok(())
    }

    /// Every stored tipset record.
    pub fn tipsets(&self) -> NodeResult<Vec<TipsetMeta>> {
        self.tipsets
            .iter()
            .map(|r| {
                let (_, v) = r?;
                decode(&v, "a tipset record")
            })
            .collect()
    }
}
