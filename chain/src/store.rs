//! The state store: every record of the chain state, its authenticated root, and durable commits.
//!
//! The state is a sorted map from byte keys (laid out in [`crate::keys`]) to postcard-encoded
//! records. It lives in memory, mirrored by a [`SparseMerkleTree`] whose root is the *state root*,
//! and is persisted by a [`Backend`]:
//!
//! - [`SledBackend`] keeps the records in one sled tree, under `s/`, beside the head record `h`
//!   (epoch and root). A block's writes and the new head go in one `apply_batch`, which sled applies
//!   atomically, followed by `flush()`, which syncs sled's log to the file system before returning
//!   (on Linux with `sync_file_range`): once [`StateStore::commit`] returns, killing the process
//!   (`kill -9`) loses nothing, and an interrupted commit leaves the previous epoch intact (both
//!   tested in `chain/tests/integration/durability.rs`). Surviving power loss rests on sled's log
//!   and the disk.
//! - [`MemBackend`] keeps nothing, for tests and simulations.
//!
//! Writes go through an [`Overlay`]: a stack of layers over the committed map. A block opens one
//! layer; each message opens another, merged into the block's on success and dropped on failure,
//! so a failed message changes nothing. Opening the store re-reads every record, rebuilds the tree
//! and checks its root against the head.
//!
//! **Undo and revert.** Each commit also stores, in the same atomic batch, its *undo record*
//! (`u/<epoch>`, keyed by the epoch it commits): the head before it and the previous value (or
//! absence) of every key it wrote. A commit usually moves the state one epoch forward, but it
//! may move it several: the chain commits a tipset together with the null rounds before it as
//! one commit, whose record's `head_before` is the state those null rounds started from, so no
//! epoch inside such a *span* has a state, a head or an undo record of its own.
//! [`StateStore::revert_to`] therefore walks the records from the head by `head_before`, never
//! by `epoch − 1`: it applies them newest first until it reaches the target, checks the root it
//! reaches against the recorded head, and commits the result (and the deletion of the used
//! records) as one batch. A target inside a span is refused ([`StoreError::InsideSpan`]): no
//! state was ever committed there.
//!
//! The store keeps the undo records of the last [`StateStore::undo_retention`] epochs (the chain
//! sets it to `chain_finality`): every commit at epoch `e` deletes, in its batch, every record at
//! or below `e − retention` — a range, since records do not sit at every epoch — so a record is
//! kept exactly while its epoch is within the window, whatever gap lies before it. A revert that
//! needs a record past the window is refused ([`StoreError::UndoMissing`]). A caller can also
//! *stage* opaque metadata ([`StateStore::stage_meta`]) that the next commit or revert writes in
//! the same batch: the node records there which tipset the state belongs to, so the state and
//! its label never disagree after a crash.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::encode;
use crate::error::{ChainError, ChainResult, StoreError, StoreResult};
use crate::smt::SparseMerkleTree;
use crate::types::Epoch;

/// The head of the committed chain: the last applied epoch and its state root.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Head {
    /// The epoch of the last applied block.
    pub epoch: Epoch,
    /// The state root after it.
    pub root: [u8; 32],
}

/// A write set: `None` deletes the key.
pub type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Every committed record and the head, as a backend loads them.
pub type Loaded = (Vec<(Vec<u8>, Vec<u8>)>, Option<Head>);

/// What reverting one commit needs: the head before it and the previous value of every key it
/// wrote (`None`: the key did not exist).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Undo {
    /// The head before the commit (`None` before genesis). Its epoch is the commit's minus one,
    /// or earlier when the commit spans null rounds: [`StateStore::revert_to`] goes on from it.
    pub head_before: Option<Head>,
    /// Previous values of the keys the commit wrote.
    pub writes: Writes,
}

/// One atomic, durable write to a [`Backend`].
#[derive(Debug)]
pub struct CommitBatch<'a> {
    /// Records to write (`None` deletes).
    pub writes: &'a Writes,
    /// The new head.
    pub head: Head,
    /// The undo record of `head.epoch`, stored with it (absent for a revert).
    pub undo: Option<&'a Undo>,
    /// Undo records to delete: the reverted commits'.
    pub forget_undo: &'a [Epoch],
    /// Every undo record at or below this epoch is deleted too (those past the retention window).
    pub prune_undo_through: Option<Epoch>,
    /// Opaque metadata written in the same batch.
    pub meta: &'a [(Vec<u8>, Vec<u8>)],
}

/// Where committed state is kept.
pub trait Backend: Send {
    /// Every committed record, and the head (if anything was committed).
    fn load(&self) -> StoreResult<Loaded>;
    /// Applies the batch atomically and durably.
    fn commit(&mut self, batch: &CommitBatch<'_>) -> StoreResult<()>;
    /// The undo record of `epoch`, if kept.
    fn undo(&self, epoch: Epoch) -> StoreResult<Option<Undo>>;
    /// Metadata stored with [`StateStore::stage_meta`].
    fn meta(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>>;
}

/// A backend that keeps its undo records and metadata in memory and nothing else (tests,
/// simulations).
#[derive(Debug, Default)]
pub struct MemBackend {
    undo: BTreeMap<Epoch, Undo>,
    meta: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Backend for MemBackend {
    fn load(&self) -> StoreResult<Loaded> {
        Ok((Vec::new(), None))
    }

    fn commit(&mut self, batch: &CommitBatch<'_>) -> StoreResult<()> {
        for e in batch.forget_undo {
            self.undo.remove(e);
        }
        if let Some(through) = batch.prune_undo_through {
            self.undo.retain(|e, _| *e > through);
        }
        if let Some(u) = batch.undo {
            self.undo.insert(batch.head.epoch, u.clone());
        }
        for (k, v) in batch.meta {
            self.meta.insert(k.clone(), v.clone());
        }
        Ok(())
    }

    fn undo(&self, epoch: Epoch) -> StoreResult<Option<Undo>> {
        Ok(self.undo.get(&epoch).cloned())
    }

    fn meta(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.meta.get(key).cloned())
    }
}

/// The sled backend: one tree, records under `s/`, the head under `h`, undo records under
/// `u/<epoch, big-endian>`, metadata under `m/`.
#[derive(Debug)]
pub struct SledBackend {
    db: sled::Db,
    tree: sled::Tree,
}

const RECORD_PREFIX: &[u8] = b"s/";
const HEAD_KEY: &[u8] = b"h";
const UNDO_PREFIX: &[u8] = b"u/";
const META_PREFIX: &[u8] = b"m/";

fn prefixed(prefix: &[u8], key: &[u8]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(key);
    k
}

impl SledBackend {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> StoreResult<Self> {
        let db = sled::open(dir)?;
        let tree = db.open_tree("state")?;
        Ok(SledBackend { db, tree })
    }
}

impl Backend for SledBackend {
    fn load(&self) -> StoreResult<Loaded> {
        let mut records = Vec::new();
        for item in self.tree.scan_prefix(RECORD_PREFIX) {
            let (k, v) = item?;
            let key = k.strip_prefix(RECORD_PREFIX).ok_or(StoreError::Corrupt(
                "a record key outside the record prefix",
            ))?;
            records.push((key.to_vec(), v.to_vec()));
        }
        let head = match self.tree.get(HEAD_KEY)? {
            Some(bytes) => {
                Some(postcard::from_bytes(&bytes).map_err(|_| StoreError::Corrupt("head record"))?)
            }
            None => None,
        };
        Ok((records, head))
    }

    fn commit(&mut self, c: &CommitBatch<'_>) -> StoreResult<()> {
        let mut batch = sled::Batch::default();
        for (k, v) in c.writes {
            let key = prefixed(RECORD_PREFIX, k);
            match v {
                Some(v) => batch.insert(key, v.as_slice()),
                None => batch.remove(key),
            }
        }
        for e in c.forget_undo {
            batch.remove(prefixed(UNDO_PREFIX, &e.to_be_bytes()));
        }
        if let Some(through) = c.prune_undo_through {
            // Undo keys are the prefix and a fixed-width big-endian epoch: key order is epoch
            // order, and the range holds undo records only.
            let first = prefixed(UNDO_PREFIX, &0u64.to_be_bytes());
            let last = prefixed(UNDO_PREFIX, &through.to_be_bytes());
            for item in self.tree.range(first..=last) {
                let (k, _) = item?;
                batch.remove(k);
            }
        }
        if let Some(u) = c.undo {
            batch.insert(
                prefixed(UNDO_PREFIX, &c.head.epoch.to_be_bytes()),
                encode(u),
            );
        }
        for (k, v) in c.meta {
            batch.insert(prefixed(META_PREFIX, k), v.as_slice());
        }
        batch.insert(HEAD_KEY, encode(&c.head));
        self.tree.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    fn undo(&self, epoch: Epoch) -> StoreResult<Option<Undo>> {
        match self.tree.get(prefixed(UNDO_PREFIX, &epoch.to_be_bytes()))? {
            Some(bytes) => Ok(Some(
                postcard::from_bytes(&bytes).map_err(|_| StoreError::Corrupt("an undo record"))?,
            )),
            None => Ok(None),
        }
    }

    fn meta(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .tree
            .get(prefixed(META_PREFIX, key))?
            .map(|v| v.to_vec()))
    }
}

/// The committed state, its authenticated tree and its backend.
pub struct StateStore {
    records: BTreeMap<Vec<u8>, Vec<u8>>,
    tree: SparseMerkleTree,
    backend: Box<dyn Backend>,
    head: Option<Head>,
    undo_retention: u64,
    staged_meta: Vec<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("records", &self.records.len())
            .field("head", &self.head)
            .finish()
    }
}

impl StateStore {
    /// An empty in-memory store.
    pub fn memory() -> Self {
        StateStore {
            records: BTreeMap::new(),
            tree: SparseMerkleTree::new(),
            backend: Box::new(MemBackend::default()),
            head: None,
            undo_retention: 0,
            staged_meta: Vec::new(),
        }
    }

    /// Opens a store on `backend`, checking the rebuilt state root against the committed head.
    pub fn open(backend: Box<dyn Backend>) -> StoreResult<Self> {
        let (records, head) = backend.load()?;
        let tree =
            SparseMerkleTree::build(records.iter().map(|(k, v)| (k.as_slice(), v.as_slice())));
        if let Some(h) = &head {
            if tree.root() != h.root {
                return Err(StoreError::RootMismatch {
                    epoch: h.epoch,
                    expected: hex::encode(h.root),
                    found: hex::encode(tree.root()),
                });
            }
        } else if !records.is_empty() {
            return Err(StoreError::Corrupt("records without a head"));
        }
        Ok(StateStore {
            records: records.into_iter().collect(),
            tree,
            backend,
            head,
            undo_retention: 0,
            staged_meta: Vec::new(),
        })
    }

    /// Opens (or creates) a sled-backed store in `dir`.
    pub fn open_sled(dir: &Path) -> StoreResult<Self> {
        Self::open(Box::new(SledBackend::open(dir)?))
    }

    /// The last committed head, if any block was committed.
    pub fn head(&self) -> Option<Head> {
        self.head
    }

    /// The current state root.
    pub fn root(&self) -> [u8; 32] {
        self.tree.root()
    }

    /// The committed record at `key`.
    pub fn get_raw(&self, key: &[u8]) -> Option<&[u8]> {
        self.records.get(key).map(Vec::as_slice)
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the state is empty.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// A proof that `key` holds its current value (or is absent) under [`StateStore::root`].
    pub fn prove(&self, key: &[u8]) -> crate::smt::Proof {
        self.tree.prove(key)
    }

    /// How many epochs of undo records are kept (0: none): a commit at epoch `e` deletes every
    /// record at or below `e − retention`.
    pub fn undo_retention(&self) -> u64 {
        self.undo_retention
    }

    /// Keeps undo records for the last `epochs` epochs (from the next commit on).
    pub fn set_undo_retention(&mut self, epochs: u64) {
        self.undo_retention = epochs;
    }

    /// Stages `(key, value)` to be written with the next commit or revert, atomically with it.
    pub fn stage_meta(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.staged_meta.push((key, value));
    }

    /// Drops staged metadata (after an apply that failed).
    pub fn clear_staged_meta(&mut self) {
        self.staged_meta.clear();
    }

    /// Metadata written by an earlier commit (see [`StateStore::stage_meta`]).
    pub fn meta(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        self.backend.meta(key)
    }

    /// Applies `writes` as the state after `epoch`, durably, with the commit's undo record, the
    /// pruning of undo records past the retention window and any staged metadata; returns the new
    /// root. `epoch` must be after the head, by one or by more (a commit that spans null rounds:
    /// its undo record's `head_before` is the head before them). On any error nothing changes,
    /// in memory either (the staged metadata stays staged).
    pub fn commit(&mut self, mut writes: Writes, epoch: Epoch) -> StoreResult<[u8; 32]> {
        if let Some(head) = self.head
            && epoch <= head.epoch
        {
            return Err(StoreError::NotAfterHead {
                epoch,
                head: head.epoch,
            });
        }
        // Deleting a key that is not committed changes nothing (a record written and deleted
        // again within one commit, such as a span's short-lived randomness): keep it out of the
        // batch and of the undo record.
        writes.retain(|k, v| v.is_some() || self.records.contains_key(k));
        let undo = (self.undo_retention > 0).then(|| Undo {
            head_before: self.head,
            writes: writes
                .keys()
                .map(|k| (k.clone(), self.records.get(k).cloned()))
                .collect(),
        });
        let prune = epoch.checked_sub(self.undo_retention);
        self.apply(writes, epoch, undo.as_ref(), &[], prune)
    }

    /// The state root the committed state would have with `writes` on top, computed without
    /// committing or changing anything (the tree is updated in place, read and restored).
    pub fn root_with(&mut self, writes: &Writes) -> [u8; 32] {
        self.update_tree(writes);
        let root = self.tree.root();
        self.restore_tree(writes);
        root
    }

    /// Rolls the state back to what it was after `epoch`, in one durable batch (with any staged
    /// metadata). The undo records are walked from the head by their `head_before`, so a commit
    /// that spans null rounds is undone in one step. Fails, changing nothing, when a commit on
    /// the way has no undo record (it is older than the retention window), when `epoch` lies
    /// inside a span of null rounds (no state was committed at it: [`StoreError::InsideSpan`]),
    /// or when the root reached differs from the one recorded for `epoch`. A target at or after
    /// the head changes nothing and returns the head.
    pub fn revert_to(&mut self, epoch: Epoch) -> StoreResult<Head> {
        let (merged, at, forget) = self.undo_back_to(epoch)?;
        if Some(at) == self.head {
            return Ok(at);
        }
        // Check the root before touching the backend: `apply` restores the tree on failure only
        // for backend errors, so verify on a scratch copy of the changed paths.
        self.apply_checked(merged, at, &forget)?;
        Ok(at)
    }

    /// The writes that would take the committed state back to what it was after `epoch`, and
    /// the head there, changing nothing: what [`StateStore::revert_to`] applies, read without
    /// applying it (a read-only view of a recent past state, laid over the committed one). Fails
    /// like `revert_to`; the root is not checked here (the caller can, with
    /// [`StateStore::root_with`]).
    pub fn writes_back_to(&self, epoch: Epoch) -> StoreResult<(Writes, Head)> {
        let (merged, at, _) = self.undo_back_to(epoch)?;
        Ok((merged, at))
    }

    /// The merged undo writes from the head back to `epoch`, the head reached, and the undo
    /// records used.
    fn undo_back_to(&self, epoch: Epoch) -> StoreResult<(Writes, Head, Vec<Epoch>)> {
        let Some(head) = self.head else {
            return Err(StoreError::NothingToRevert);
        };
        // Newest first: an older commit's undo overrides a newer one's for the same key.
        let mut merged = Writes::new();
        let mut forget = Vec::new();
        let mut at = head;
        while at.epoch > epoch {
            let undo = self
                .backend
                .undo(at.epoch)?
                .ok_or(StoreError::UndoMissing { epoch: at.epoch })?;
            // Only the genesis commit has no head before it, and nothing is before genesis.
            let Some(before) = undo.head_before else {
                return Err(StoreError::Corrupt("an undo record's head"));
            };
            // Strictly decreasing epochs: the walk ends.
            if before.epoch >= at.epoch {
                return Err(StoreError::Corrupt(
                    "an undo record's head is not before it",
                ));
            }
            if before.epoch < epoch {
                return Err(StoreError::InsideSpan {
                    epoch,
                    span_start: before.epoch,
                    span_end: at.epoch,
                });
            }
            merged.extend(undo.writes);
            forget.push(at.epoch);
            at = before;
        }
        Ok((merged, at, forget))
    }

    fn apply_checked(&mut self, writes: Writes, head: Head, forget: &[Epoch]) -> StoreResult<()> {
        let found = self.root_with(&writes);
        if found != head.root {
            return Err(StoreError::RootMismatch {
                epoch: head.epoch,
                expected: hex::encode(head.root),
                found: hex::encode(found),
            });
        }
        self.apply(writes, head.epoch, None, forget, None)
            .map(|_| ())
    }

    fn update_tree(&mut self, writes: &Writes) {
        for (k, v) in writes {
            match v {
                Some(v) => self.tree.insert(k, v),
                None => {
                    self.tree.remove(k);
                }
            }
        }
    }

    fn restore_tree(&mut self, writes: &Writes) {
        for k in writes.keys() {
            match self.records.get(k) {
                Some(old) => self.tree.insert(k, old),
                None => {
                    self.tree.remove(k);
                }
            }
        }
    }

    fn apply(
        &mut self,
        writes: Writes,
        epoch: Epoch,
        undo: Option<&Undo>,
        forget: &[Epoch],
        prune_undo_through: Option<Epoch>,
    ) -> StoreResult<[u8; 32]> {
        // Update the tree in place (O(changes × depth)); undo from the old records if the backend
        // fails, so memory and disk never disagree.
        self.update_tree(&writes);
        let head = Head {
            epoch,
            root: self.tree.root(),
        };
        let batch = CommitBatch {
            writes: &writes,
            head,
            undo,
            forget_undo: forget,
            prune_undo_through,
            meta: &self.staged_meta,
        };
        if let Err(e) = self.backend.commit(&batch) {
            self.restore_tree(&writes);
            return Err(e);
        }
        self.staged_meta.clear();
        for (k, v) in writes {
            match v {
                Some(v) => {
                    self.records.insert(k, v);
                }
                None => {
                    self.records.remove(&k);
                }
            }
        }
        self.head = Some(head);
        Ok(head.root)
    }
}

/// Layered uncommitted writes over a [`StateStore`].
#[derive(Debug)]
pub struct Overlay<'a> {
    base: &'a StateStore,
    layers: Vec<Writes>,
}

impl<'a> Overlay<'a> {
    /// One (block) layer over `base`.
    pub fn new(base: &'a StateStore) -> Self {
        Self::with_writes(base, Writes::new())
    }

    /// One (block) layer over `base` that already holds `writes`: uncommitted work carried on,
    /// such as the null rounds before a tipset.
    pub fn with_writes(base: &'a StateStore, writes: Writes) -> Self {
        Overlay {
            base,
            layers: vec![writes],
        }
    }

    /// Opens a nested layer (a message).
    pub fn begin(&mut self) {
        self.layers.push(Writes::new());
    }

    /// Drops the innermost layer's writes.
    pub fn rollback(&mut self) {
        if self.layers.len() > 1 {
            self.layers.pop();
        } else if let Some(l) = self.layers.last_mut() {
            l.clear();
        }
    }

    /// Merges the innermost layer into the one below.
    pub fn commit_layer(&mut self) {
        if self.layers.len() > 1
            && let Some(top) = self.layers.pop()
            && let Some(below) = self.layers.last_mut()
        {
            below.extend(top);
        }
    }

    /// All writes, merged (what a block commits).
    pub fn into_writes(mut self) -> Writes {
        while self.layers.len() > 1 {
            self.commit_layer();
        }
        self.layers.pop().unwrap_or_default()
    }

    /// The raw value at `key`, seen through the layers.
    pub fn get_raw(&self, key: &[u8]) -> Option<Vec<u8>> {
        for layer in self.layers.iter().rev() {
            if let Some(v) = layer.get(key) {
                return v.clone();
            }
        }
        self.base.get_raw(key).map(<[u8]>::to_vec)
    }

    /// Sets a raw value.
    pub fn put_raw(&mut self, key: Vec<u8>, value: Vec<u8>) {
        if let Some(l) = self.layers.last_mut() {
            l.insert(key, Some(value));
        }
    }

    /// Deletes a key.
    pub fn delete(&mut self, key: &[u8]) {
        if let Some(l) = self.layers.last_mut() {
            l.insert(key.to_vec(), None);
        }
    }

    /// Decodes the record at `key`.
    pub fn get<T: DeserializeOwned>(&self, key: &[u8]) -> ChainResult<Option<T>> {
        match self.get_raw(key) {
            Some(bytes) => postcard::from_bytes(&bytes)
                .map(Some)
                .map_err(|_| ChainError::Corrupt(crate::keys::describe(key))),
            None => Ok(None),
        }
    }

    /// Encodes and stores a record.
    pub fn put<T: Serialize>(&mut self, key: Vec<u8>, value: &T) -> ChainResult<()> {
        self.put_raw(key, encode(value));
        Ok(())
    }

    /// Every live `(key, value)` whose key starts with `prefix`, in key order.
    pub fn scan_raw(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> = self
            .base
            .records
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        for layer in &self.layers {
            for (k, v) in layer
                .range(prefix.to_vec()..)
                .take_while(|(k, _)| k.starts_with(prefix))
            {
                merged.insert(k.clone(), v.clone());
            }
        }
        merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect()
    }

    /// Every live record under `prefix`, decoded.
    pub fn scan<T: DeserializeOwned>(&self, prefix: &[u8]) -> ChainResult<Vec<(Vec<u8>, T)>> {
        self.scan_raw(prefix)
            .into_iter()
            .map(|(k, v)| {
                postcard::from_bytes(&v)
                    .map(|t| (k.clone(), t))
                    .map_err(|_| ChainError::Corrupt(crate::keys::describe(&k)))
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn layers_roll_back_and_merge() {
        let store = StateStore::memory();
        let mut o = Overlay::new(&store);
        o.put(b"a".to_vec(), &1u64).unwrap();
        o.begin();
        o.put(b"a".to_vec(), &2u64).unwrap();
        o.put(b"b".to_vec(), &3u64).unwrap();
        assert_eq!(o.get::<u64>(b"a").unwrap(), Some(2));
        o.rollback();
        assert_eq!(o.get::<u64>(b"a").unwrap(), Some(1));
        assert_eq!(o.get::<u64>(b"b").unwrap(), None);
        o.begin();
        o.delete(b"a");
        o.put(b"ab".to_vec(), &4u64).unwrap();
        o.commit_layer();
        assert_eq!(o.get::<u64>(b"a").unwrap(), None);
        assert_eq!(o.scan::<u64>(b"a").unwrap().len(), 1);
    }

    #[test]
    fn sled_commit_reopens_with_same_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = {
            let mut s = StateStore::open_sled(dir.path()).unwrap();
            let mut o = Overlay::new(&s);
            o.put(b"x".to_vec(), &7u32).unwrap();
            o.put(b"y".to_vec(), &8u32).unwrap();
            let w = o.into_writes();
            s.commit(w, 1).unwrap()
        };
        let s = StateStore::open_sled(dir.path()).unwrap();
        assert_eq!(s.root(), root);
        assert_eq!(s.head().unwrap().epoch, 1);
        assert_ne!(root, [0; 32]);
        // Any record, or its absence, can be proven against the root.
        let x = postcard::to_allocvec(&7u32).unwrap();
        s.prove(b"x").verify(&root, b"x", Some(&x)).unwrap();
        assert!(s.prove(b"x").verify(&root, b"x", Some(&[8])).is_err());
        s.prove(b"z").verify(&root, b"z", None).unwrap();
        assert!(s.prove(b"y").verify(&root, b"y", None).is_err());
    }

    struct FailingBackend;

    impl Backend for FailingBackend {
        fn load(&self) -> StoreResult<Loaded> {
            Ok((Vec::new(), None))
        }
        fn commit(&mut self, _: &CommitBatch<'_>) -> StoreResult<()> {
            Err(StoreError::Database(sled::Error::Io(
                std::io::Error::other("disk full"),
            )))
        }
        fn undo(&self, _: Epoch) -> StoreResult<Option<Undo>> {
            Ok(None)
        }
        fn meta(&self, _: &[u8]) -> StoreResult<Option<Vec<u8>>> {
            Ok(None)
        }
    }

    fn step(s: &mut StateStore, epoch: Epoch) -> [u8; 32] {
        let mut o = Overlay::new(s);
        o.put(b"counter".to_vec(), &epoch).unwrap();
        o.put(format!("e{epoch}").into_bytes(), &epoch).unwrap();
        if epoch > 1 {
            o.delete(format!("e{}", epoch - 1).as_bytes());
        }
        let w = o.into_writes();
        s.commit(w, epoch).unwrap()
    }

    fn reverts_within_the_window(mut s: StateStore) -> StateStore {
        s.set_undo_retention(3);
        let roots: Vec<[u8; 32]> = (1..=5).map(|e| step(&mut s, e)).collect();
        // Back to 3: the state and root of epoch 3, and the metadata staged with it.
        s.stage_meta(b"tipset".to_vec(), b"three".to_vec());
        let h = s.revert_to(3).unwrap();
        assert_eq!(
            h,
            Head {
                epoch: 3,
                root: roots[2]
            }
        );
        assert_eq!(s.root(), roots[2]);
        assert_eq!(s.head(), Some(h));
        assert_eq!(s.meta(b"tipset").unwrap().as_deref(), Some(&b"three"[..]));
        assert!(s.get_raw(b"e4").is_none() && s.get_raw(b"e3").is_some());
        // Epoch 2's undo record is past the window (retention 3 at epoch 5): refused, unchanged.
        assert!(matches!(
            s.revert_to(1),
            Err(StoreError::UndoMissing { epoch: 2 })
        ));
        assert_eq!(s.root(), roots[2]);
        // Forward again on another branch, and back onto it.
        let mut o = Overlay::new(&s);
        o.put(b"fork".to_vec(), &1u8).unwrap();
        let w = o.into_writes();
        let fork4 = s.commit(w, 4).unwrap();
        assert_ne!(fork4, roots[3]);
        step(&mut s, 5);
        assert_eq!(s.revert_to(4).unwrap().root, fork4);
        s
    }

    #[test]
    fn revert_in_memory_and_in_sled() {
        reverts_within_the_window(StateStore::memory());
        let dir = tempfile::tempdir().unwrap();
        let root = reverts_within_the_window(StateStore::open_sled(dir.path()).unwrap()).root();
        // The revert was durable: reopening finds the reverted head, its root and its records.
        let s = StateStore::open_sled(dir.path()).unwrap();
        assert_eq!(s.root(), root);
        assert_eq!(s.head().unwrap().epoch, 4);
        assert_eq!(s.meta(b"tipset").unwrap().as_deref(), Some(&b"three"[..]));
    }

    /// One commit at `to` holding what epochs `from..=to` would each have written with [`step`]
    /// (a tipset after null rounds): `counter`, `e<to>`, and `e<n>` written and deleted again
    /// for the epochs between, which must not reach the batch.
    fn span(s: &mut StateStore, from: Epoch, to: Epoch) -> [u8; 32] {
        let mut o = Overlay::new(s);
        for epoch in from..=to {
            o.put(b"counter".to_vec(), &epoch).unwrap();
            o.put(format!("e{epoch}").into_bytes(), &epoch).unwrap();
            if epoch > 1 {
                o.delete(format!("e{}", epoch - 1).as_bytes());
            }
        }
        let w = o.into_writes();
        s.commit(w, to).unwrap()
    }

    fn spans_revert_and_prune(mut s: StateStore) -> StateStore {
        s.set_undo_retention(10);
        let mut roots = BTreeMap::new();
        for e in 1..=3 {
            roots.insert(e, step(&mut s, e));
        }
        // 4..=8 in one commit (a tipset at 8 after four null rounds), then 9.
        roots.insert(8, span(&mut s, 4, 8));
        let undo = s.backend.undo(8).unwrap().unwrap();
        assert_eq!(undo.head_before.map(|h| h.epoch), Some(3));
        // The null rounds' short-lived records never reached the undo record.
        assert!(undo.writes.keys().all(|k| !k.starts_with(b"e5")));
        assert!((4..8).all(|e| s.backend.undo(e).unwrap().is_none()));
        roots.insert(9, step(&mut s, 9));
        // The same epochs one by one give the same states.
        let mut twin = StateStore::memory();
        for e in 1..=9 {
            let r = step(&mut twin, e);
            if let Some(root) = roots.get(&e) {
                assert_eq!(r, *root, "epoch {e}");
            }
        }

        // A target inside a span is refused, and nothing changes.
        s.stage_meta(b"tipset".to_vec(), b"five".to_vec());
        assert!(matches!(
            s.revert_to(5),
            Err(StoreError::InsideSpan {
                epoch: 5,
                span_start: 3,
                span_end: 8
            })
        ));
        assert_eq!(s.head().map(|h| (h.epoch, h.root)), Some((9, roots[&9])));
        assert_eq!(s.root(), roots[&9]);
        assert!(s.backend.undo(9).unwrap().is_some() && s.backend.undo(8).unwrap().is_some());
        s.clear_staged_meta();

        // Back across the span in one walk: 9, then 8 (to 3).
        s.stage_meta(b"tipset".to_vec(), b"three".to_vec());
        let h = s.revert_to(3).unwrap();
        assert_eq!((h.epoch, h.root), (3, roots[&3]));
        assert_eq!(s.root(), roots[&3]);
        assert_eq!(s.meta(b"tipset").unwrap().as_deref(), Some(&b"three"[..]));
        assert!(s.get_raw(b"e3").is_some() && s.get_raw(b"e8").is_none());
        assert!(s.backend.undo(8).unwrap().is_none() && s.backend.undo(9).unwrap().is_none());
        assert!((1..=3).all(|e| s.backend.undo(e).unwrap().is_some()));

        // Forward again with a span longer than the window: every record at or below 30 − 10
        // goes (1, 2 and 3), although none sits at exactly 20.
        roots.insert(30, span(&mut s, 4, 30));
        assert!((1..=29).all(|e| s.backend.undo(e).unwrap().is_none()));
        assert!(s.backend.undo(30).unwrap().is_some());
        // The span's own record stays while 30 is in the window, however far back it reaches.
        for e in 31..=39 {
            roots.insert(e, step(&mut s, e));
        }
        assert_eq!(s.revert_to(3).unwrap().root, roots[&3]);
        roots.insert(30, span(&mut s, 4, 30));
        for e in 31..=40 {
            roots.insert(e, step(&mut s, e));
        }
        // At 40, 30 left the window: its record is gone, and so is any revert across it.
        assert!(s.backend.undo(30).unwrap().is_none());
        assert!(matches!(
            s.revert_to(29),
            Err(StoreError::UndoMissing { epoch: 30 })
        ));
        assert_eq!(s.head().unwrap().epoch, 40);
        assert_eq!(s.revert_to(30).unwrap().root, roots[&30]);
        s
    }

    #[test]
    fn spans_revert_and_prune_in_memory_and_in_sled() {
        spans_revert_and_prune(StateStore::memory());
        let dir = tempfile::tempdir().unwrap();
        let root = spans_revert_and_prune(StateStore::open_sled(dir.path()).unwrap()).root();
        let mut s = reopen(|| StateStore::open_sled(dir.path())).unwrap();
        assert_eq!((s.head().unwrap().epoch, s.root()), (30, root));
        // What survives a reopen: the records of 31..=40 are gone with the revert, none below
        // the window is left, and a span commit's record still walks back over its null rounds.
        assert!((1..=40).all(|e| s.backend.undo(e).unwrap().is_none()));
        s.set_undo_retention(10);
        let before = s.root();
        span(&mut s, 31, 36);
        drop(s);
        let mut s = reopen(|| StateStore::open_sled(dir.path())).unwrap();
        assert_eq!(s.head().unwrap().epoch, 36);
        assert_eq!(s.revert_to(30).unwrap().root, before);
    }

    #[test]
    fn commits_only_move_forward() {
        let mut s = StateStore::memory();
        s.set_undo_retention(5);
        step(&mut s, 1);
        step(&mut s, 2);
        let root = s.root();
        let mut o = Overlay::new(&s);
        o.put(b"x".to_vec(), &1u8).unwrap();
        let w = o.into_writes();
        assert!(matches!(
            s.commit(w.clone(), 2),
            Err(StoreError::NotAfterHead { epoch: 2, head: 2 })
        ));
        assert!(matches!(
            s.commit(w, 1),
            Err(StoreError::NotAfterHead { epoch: 1, head: 2 })
        ));
        assert_eq!(s.root(), root);
    }

    /// A memory backend whose commits fail while `fail` is set.
    struct Flaky {
        inner: MemBackend,
        fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }

    impl Backend for Flaky {
        fn load(&self) -> StoreResult<Loaded> {
            self.inner.load()
        }
        fn commit(&mut self, batch: &CommitBatch<'_>) -> StoreResult<()> {
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StoreError::Database(sled::Error::Io(
                    std::io::Error::other("disk full"),
                )));
            }
            self.inner.commit(batch)
        }
        fn undo(&self, epoch: Epoch) -> StoreResult<Option<Undo>> {
            self.inner.undo(epoch)
        }
        fn meta(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
            self.inner.meta(key)
        }
    }

    #[test]
    fn a_failed_span_commit_changes_nothing() {
        let fail = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let backend = Flaky {
            inner: MemBackend::default(),
            fail: fail.clone(),
        };
        let mut s = StateStore::open(Box::new(backend)).unwrap();
        s.set_undo_retention(4);
        for e in 1..=3 {
            step(&mut s, e);
        }
        let (head, root, len) = (s.head(), s.root(), s.len());
        fail.store(true, std::sync::atomic::Ordering::SeqCst);
        s.stage_meta(b"tipset".to_vec(), b"nine".to_vec());
        let mut o = Overlay::new(&s);
        o.put(b"counter".to_vec(), &9u64).unwrap();
        o.delete(b"e3");
        let w = o.into_writes();
        assert!(s.commit(w.clone(), 9).is_err());
        // Nothing moved: head, root, records, undo records (none pruned), metadata still staged.
        assert_eq!((s.head(), s.root(), s.len()), (head, root, len));
        assert!((1..=3).all(|e| s.backend.undo(e).unwrap().is_some()));
        assert_eq!(s.meta(b"tipset").unwrap(), None);
        fail.store(false, std::sync::atomic::Ordering::SeqCst);
        s.commit(w, 9).unwrap();
        assert_eq!(s.meta(b"tipset").unwrap().as_deref(), Some(&b"nine"[..]));
        assert_eq!(s.revert_to(3).unwrap().root, root);
    }

    #[test]
    fn a_failed_commit_changes_nothing_in_memory() {
        let mut s = StateStore::open(Box::new(FailingBackend)).unwrap();
        let before = s.root();
        let mut o = Overlay::new(&s);
        o.put(b"x".to_vec(), &7u32).unwrap();
        let w = o.into_writes();
        assert!(s.commit(w, 1).is_err());
        assert_eq!(s.root(), before);
        assert!(s.is_empty());
        assert_eq!(s.head(), None);
    }

    /// Sled releases its file lock from a background thread after the last handle is dropped, so
    /// reopening a database at once in the same process can find the lock still held: retry.
    fn reopen<T, E: std::fmt::Display>(mut open: impl FnMut() -> Result<T, E>) -> Result<T, E> {
        for _ in 0..200 {
            match open() {
                Err(e) if e.to_string().contains("could not acquire lock") => {
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                done => return done,
            }
        }
        open()
    }

    #[test]
    fn a_damaged_record_is_caught_by_the_root_check() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = StateStore::open_sled(dir.path()).unwrap();
            let mut o = Overlay::new(&s);
            o.put(b"x".to_vec(), &7u32).unwrap();
            let w = o.into_writes();
            s.commit(w, 1).unwrap();
        }
        {
            let db = reopen(|| sled::open(dir.path())).unwrap();
            let tree = db.open_tree("state").unwrap();
            tree.insert(b"s/x", &[9u8][..]).unwrap();
            db.flush().unwrap();
        }
        let err = reopen(|| StateStore::open_sled(dir.path())).unwrap_err();
        assert!(
            matches!(err, StoreError::RootMismatch { epoch: 1, .. }),
            "{err}"
        );
    }
}
