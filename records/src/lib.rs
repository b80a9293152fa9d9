//! Ordered key-value records with all-or-none, durable transactions, in one of two back ends —
//! what the provider's sealing pipeline and its market keep their state in.
//!
//! - **Embedded** ([`Records::open`]): a sled database in the provider's directory, one sled tree
//!   per tree of the set — one machine, the default.
//! - **PostgreSQL** ([`Records::postgres`]): the cluster's database, table `lode_records`, one row
//!   per key, keyed by the miner actor and the tree's [`Trees::column`] — so that a standby
//!   provider on another machine takes over what the leader wrote. The table (and `lode_leases`,
//!   read for fencing) belong to the cluster schema that the provider's task engine migrates at
//!   start (`provider/src/engine/migrations/`); this crate only reads and writes rows.
//!
//! A user names its trees with a type implementing [`Trees`] (the pipeline's sectors, tasks and
//! deal pieces; the market's deals, jobs and block index): a [`Records`] handle is typed by its
//! set, so one set's code cannot touch another's trees, while several sets share one database.
//!
//! Both back ends give the same operations: reads of one key or of a key range in key order, and
//! transactions ([`Records::transaction`]) whose reads and writes across every tree of the set are
//! all or none and durable before they return (sled: flushed; PostgreSQL: committed).
//!
//! **Fencing** (PostgreSQL): a provider opens its records with the leader lease it holds
//! ([`Fence`]). Every transaction first reads that lease's row `FOR SHARE` and is refused
//! ([`KvError::Deposed`]) when the lease has another epoch: a provider that lost its lease (a
//! standby took over while this one was cut off) cannot write after the new leader took the lease,
//! since taking it updates that row and so waits for any transaction holding the share lock.
//! Writers of one handle are serialised by its connection's lock, so its transactions never race
//! each other at `READ COMMITTED`.
//!
//! **Cached trees** (PostgreSQL, [`Records::postgres_cached`]): a handle that is its records'
//! only writer (a leader, fenced) keeps the trees it reads whole in memory, read once and then
//! changed by its own transactions once they commit, in commit order (the connection's lock is
//! held from the first statement to the cache's update); a commit whose outcome is unknown (the
//! connection broke during it) drops them, so they are read again.
//!
//! **The PostgreSQL connection** is a synchronous client on a thread of its own (the stores above
//! are synchronous, like sled, and are called from async tasks and from threads alike): a call
//! sends its statement to that thread and waits for the answer. A connection that broke is dropped
//! and opened again by the next call, so its users resume when the server is back.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sled::Transactional;
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};

/// A set of trees: the records of one user (the pipeline, the market), one value per tree.
pub trait Trees: Copy + Eq + std::fmt::Debug + Send + Sync + 'static {
    /// Every tree of the set.
    const ALL: &'static [Self];
    /// The tree's name in the embedded database (a sled tree of that name).
    fn name(self) -> &'static str;
    /// Its name in PostgreSQL's `tree` column, unique among every set that shares the database
    /// (`pipeline/sectors`, `market/deals`).
    fn column(self) -> &'static str;
}

/// Errors of the records' back end.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The embedded database failed.
    #[error("{0}")]
    Sled(#[from] sled::Error),
    /// A sled transaction met a conflict or a storage error (a conflict is retried by sled).
    #[error("{0}")]
    SledTx(#[from] UnabortableTransactionError),
    /// PostgreSQL failed or could not be reached (the next call connects again).
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] postgres::Error),
    /// This provider no longer holds its miner's leader lease: its write was refused.
    #[error(
        "lease {lease}: this provider holds epoch {ours}, the database says {found}: another provider leads this miner now, and this one's write was refused"
    )]
    Deposed {
        /// The lease.
        lease: String,
        /// The epoch this provider acquired.
        ours: u64,
        /// What the database holds (`none` when the row is gone).
        found: String,
    },
    /// The connection's thread is gone (it panicked).
    #[error("the records' PostgreSQL connection thread stopped")]
    Closed,
}

/// The back end's result type.
pub type KvResult<T> = Result<T, KvError>;

/// Keys and their values, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Why a transaction's closure stopped: the back end failed, or the caller aborted with its own
/// error (nothing is written either way).
#[derive(Debug)]
pub enum Abort<E> {
    /// The back end failed.
    Kv(KvError),
    /// The caller's error.
    With(E),
}

impl<E> From<KvError> for Abort<E> {
    fn from(e: KvError) -> Self {
        Abort::Kv(e)
    }
}

impl<E> From<UnabortableTransactionError> for Abort<E> {
    fn from(e: UnabortableTransactionError) -> Self {
        Abort::Kv(KvError::SledTx(e))
    }
}

/// Aborts a transaction with the caller's error.
pub fn abort<T, E>(e: E) -> Result<T, Abort<E>> {
    Err(Abort::With(e))
}

/// The reads and writes of one transaction over the trees of `T`.
pub trait Tx<T: Trees> {
    /// The value of `key` in `tree`, as this transaction sees it.
    fn get(&mut self, tree: T, key: &[u8]) -> KvResult<Option<Vec<u8>>>;
    /// Sets `key` in `tree` to `value`.
    fn insert(&mut self, tree: T, key: &[u8], value: &[u8]) -> KvResult<()>;
    /// Removes `key` from `tree` (nothing when it is absent).
    fn remove(&mut self, tree: T, key: &[u8]) -> KvResult<()>;
}

/// The leader lease a provider's writes are fenced by: the lease's name and the epoch it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The lease (`provider/<actor>`).
    pub lease: String,
    /// The epoch acquired.
    pub epoch: u64,
}

/// Records of the trees of `T`: a handle its clones share.
pub struct Records<T: Trees> {
    inner: Arc<Backend>,
    trees: PhantomData<fn() -> T>,
}

impl<T: Trees> Clone for Records<T> {
    fn clone(&self) -> Self {
        Records {
            inner: Arc::clone(&self.inner),
            trees: PhantomData,
        }
    }
}

impl<T: Trees> std::fmt::Debug for Records<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Records({})", self.location())
    }
}

enum Backend {
    Sled {
        path: PathBuf,
        db: sled::Db,
        trees: Vec<sled::Tree>,
    },
    Postgres(PgRecords),
}

impl<T: Trees> Records<T> {
    /// Opens (or creates) the embedded database in `dir`.
    ///
    /// # Errors
    /// [`KvError::Sled`] when it cannot be opened (another process holds it, it is damaged).
    pub fn open(dir: &Path) -> KvResult<Self> {
        let db = sled::open(dir)?;
        Records::in_sled(db, dir)
    }

    /// The trees of `T` in an open sled database, whose directory is `dir` (several sets of
    /// trees in one embedded database: sled opens a directory once per process).
    ///
    /// # Errors
    /// [`KvError::Sled`] when a tree cannot be opened.
    pub fn in_sled(db: sled::Db, dir: &Path) -> KvResult<Self> {
        let trees = T::ALL
            .iter()
            .map(|t| db.open_tree(t.name()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Records {
            inner: Arc::new(Backend::Sled {
                path: dir.to_path_buf(),
                db,
                trees,
            }),
            trees: PhantomData,
        })
    }

    /// The records of miner `miner` in the PostgreSQL database at `url` (whose schema the
    /// provider's task engine has migrated), writes fenced by `fence` when given. Connects before
    /// it returns, so that a wrong address is reported here.
    ///
    /// # Errors
    /// [`KvError::Postgres`] when the address does not parse or the server cannot be reached.
    pub fn postgres(url: &str, miner: u64, fence: Option<Fence>) -> KvResult<Self> {
        Records::postgres_cached(url, miner, fence, &[])
    }

    /// [`Records::postgres`], keeping the trees `cached` in memory: each is read whole the first
    /// time it is read, then served from memory, its entries kept up to date by this handle's
    /// committed transactions (and read again after a commit whose outcome is unknown). For a
    /// handle that is the only writer of its miner's records — a provider's own records, fenced
    /// by its lease — and for trees read whole often (the pipeline's sectors, every tick): a
    /// write by another handle would not be seen.
    ///
    /// # Errors
    /// [`KvError::Postgres`] when the address does not parse or the server cannot be reached.
    pub fn postgres_cached(
        url: &str,
        miner: u64,
        fence: Option<Fence>,
        cached: &[T],
    ) -> KvResult<Self> {
        let mut config: postgres::Config = url.parse()?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let miner = i64::try_from(miner).unwrap_or(i64::MAX);
        let (requests, rx) = channel::<Request>();
        let thread_config = config.clone();
        std::thread::Builder::new()
            .name("lode-records-db".into())
            .spawn(move || serve(&thread_config, miner, fence.as_ref(), &rx))
            .map_err(|_| KvError::Closed)?;
        let pg = PgRecords {
            miner,
            state: Mutex::new(PgState {
                requests,
                cache: cached.iter().map(|t| (t.column(), None)).collect(),
            }),
        };
        // Connect now: an unreachable database is an error of the start, not of the first use.
        pg.call(|reply| Request::Ping { reply })?;
        Ok(Records {
            inner: Arc::new(Backend::Postgres(pg)),
            trees: PhantomData,
        })
    }

    /// Whether the records are in PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(&*self.inner, Backend::Postgres(_))
    }

    /// Where the records are, for messages: the embedded database's directory, or the cluster
    /// database and the miner.
    pub fn location(&self) -> String {
        match &*self.inner {
            Backend::Sled { path, .. } => path.display().to_string(),
            Backend::Postgres(pg) => format!("the cluster database (miner {})", pg.miner),
        }
    }

    /// The value of `key` in `tree`.
    ///
    /// # Errors
    /// The back end's.
    pub fn get(&self, tree: T, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        match &*self.inner {
            Backend::Sled { trees, .. } => {
                Ok(sled_tree(trees, tree)?.get(key)?.map(|v| v.to_vec()))
            }
            Backend::Postgres(pg) => pg.get(tree.column(), key),
        }
    }

    /// The entries of `tree` whose keys start with `prefix` (every entry for an empty one), in
    /// key order.
    ///
    /// # Errors
    /// The back end's.
    pub fn scan(&self, tree: T, prefix: &[u8]) -> KvResult<Entries> {
        match &*self.inner {
            Backend::Sled { trees, .. } => sled_tree(trees, tree)?
                .scan_prefix(prefix)
                .map(|r| {
                    let (k, v) = r?;
                    Ok((k.to_vec(), v.to_vec()))
                })
                .collect(),
            Backend::Postgres(pg) => pg.scan(tree.column(), prefix),
        }
    }

    /// Whether no tree of the set holds anything.
    ///
    /// # Errors
    /// The back end's.
    pub fn is_empty(&self) -> KvResult<bool> {
        match &*self.inner {
            Backend::Sled { trees, .. } => {
                for t in T::ALL {
                    if !sled_tree(trees, *t)?.is_empty() {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Backend::Postgres(pg) => pg
                .call(|reply| Request::Any {
                    trees: T::ALL.iter().map(|t| t.column()).collect(),
                    reply,
                })
                .map(|any| !any),
        }
    }

    /// Runs `f` as one transaction over every tree of the set: its writes are all made, durably,
    /// or none is (when `f` aborts or the back end fails). `f` may run more than once (sled
    /// retries it after a conflict with a concurrent transaction), so it must not have other
    /// effects.
    ///
    /// # Errors
    /// The closure's own error, or the back end's ([`KvError`], converted).
    pub fn transaction<V, E: From<KvError>>(
        &self,
        f: impl Fn(&mut dyn Tx<T>) -> Result<V, Abort<E>>,
    ) -> Result<V, E> {
        match &*self.inner {
            Backend::Sled { db, trees, .. } => {
                let refs: Vec<&sled::Tree> = trees.iter().collect();
                let result = refs
                    .as_slice()
                    .transaction(|view: &Vec<TransactionalTree>| {
                        let mut tx = SledTx(view);
                        match f(&mut tx) {
                            Ok(v) => Ok(v),
                            Err(Abort::With(e)) => Err(ConflictableTransactionError::Abort(e)),
                            Err(Abort::Kv(KvError::SledTx(
                                UnabortableTransactionError::Conflict,
                            ))) => Err(ConflictableTransactionError::Conflict),
                            Err(Abort::Kv(KvError::SledTx(
                                UnabortableTransactionError::Storage(e),
                            ))) => Err(ConflictableTransactionError::Storage(e)),
                            Err(Abort::Kv(e)) => {
                                Err(ConflictableTransactionError::Abort(E::from(e)))
                            }
                        }
                    });
                let value = match result {
                    Ok(v) => v,
                    Err(TransactionError::Abort(e)) => return Err(e),
                    Err(TransactionError::Storage(e)) => return Err(E::from(KvError::Sled(e))),
                };
                db.flush().map_err(|e| E::from(KvError::Sled(e)))?;
                Ok(value)
            }
            Backend::Postgres(pg) => pg.transaction(f),
        }
    }

    /// Sets `key` in `tree` to `value`, alone, durably.
    ///
    /// # Errors
    /// The back end's.
    pub fn put(&self, tree: T, key: &[u8], value: &[u8]) -> KvResult<()> {
        self.transaction(|tx| -> Result<(), Abort<KvError>> {
            tx.insert(tree, key, value)?;
            Ok(())
        })
    }

    /// Copies every entry of `from` into these records, in one transaction (a provider that
    /// joins a cluster brings its embedded records into the database). Returns how many.
    ///
    /// # Errors
    /// Either back end's.
    pub fn import(&self, from: &Records<T>) -> KvResult<usize> {
        let mut entries = Vec::new();
        for t in T::ALL {
            for (k, v) in from.scan(*t, &[])? {
                entries.push((*t, k, v));
            }
        }
        self.transaction(|tx| -> Result<usize, Abort<KvError>> {
            for (t, k, v) in &entries {
                tx.insert(*t, k, v)?;
            }
            Ok(entries.len())
        })
    }
}

/// `tree`'s position in [`Trees::ALL`], which is its sled tree's.
fn index<T: Trees>(tree: T) -> KvResult<usize> {
    T::ALL.iter().position(|t| *t == tree).ok_or_else(|| {
        KvError::Sled(sled::Error::Unsupported(format!(
            "tree {} is not in its set",
            tree.name()
        )))
    })
}

fn sled_tree<T: Trees>(trees: &[sled::Tree], tree: T) -> KvResult<&sled::Tree> {
    trees
        .get(index(tree)?)
        .ok_or_else(|| KvError::Sled(sled::Error::Unsupported(format!("no tree {}", tree.name()))))
}

/// A sled transaction's view of every tree.
struct SledTx<'a>(&'a Vec<TransactionalTree>);

impl SledTx<'_> {
    fn tree<T: Trees>(&self, tree: T) -> KvResult<&TransactionalTree> {
        self.0.get(index(tree)?).ok_or_else(|| {
            KvError::Sled(sled::Error::Unsupported(format!("no tree {}", tree.name())))
        })
    }
}

impl<T: Trees> Tx<T> for SledTx<'_> {
    fn get(&mut self, tree: T, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        Ok(self.tree(tree)?.get(key)?.map(|v| v.to_vec()))
    }

    fn insert(&mut self, tree: T, key: &[u8], value: &[u8]) -> KvResult<()> {
        self.tree(tree)?.insert(key, value)?;
        Ok(())
    }

    fn remove(&mut self, tree: T, key: &[u8]) -> KvResult<()> {
        self.tree(tree)?.remove(key)?;
        Ok(())
    }
}

/// What the connection's thread is asked. A transaction is `Begin`, then its operations, then
/// `End`; the caller holds [`PgRecords::requests`] for all of it, so nothing else interleaves.
enum Request {
    Ping {
        reply: SyncSender<KvResult<()>>,
    },
    /// Whether the miner has any record in these trees.
    Any {
        trees: Vec<&'static str>,
        reply: SyncSender<KvResult<bool>>,
    },
    Get {
        tree: &'static str,
        key: Vec<u8>,
        reply: SyncSender<KvResult<Option<Vec<u8>>>>,
    },
    Scan {
        tree: &'static str,
        prefix: Vec<u8>,
        reply: SyncSender<KvResult<Entries>>,
    },
    Begin {
        reply: SyncSender<KvResult<()>>,
    },
    Insert {
        tree: &'static str,
        key: Vec<u8>,
        value: Vec<u8>,
        reply: SyncSender<KvResult<()>>,
    },
    Remove {
        tree: &'static str,
        key: Vec<u8>,
        reply: SyncSender<KvResult<()>>,
    },
    /// Commits (`true`) or rolls back the transaction.
    End {
        commit: bool,
        reply: SyncSender<KvResult<()>>,
    },
}

struct PgRecords {
    miner: i64,
    /// Held for each call, and for the whole of a transaction: nothing else interleaves, and the
    /// cache changes in the order the transactions commit.
    state: Mutex<PgState>,
}

/// A write to a cached tree: the tree's column, the key, the value (`None`: removed).
type Write = (&'static str, Vec<u8>, Option<Vec<u8>>);

/// A tree's entries, in key order.
type TreeEntries = std::collections::BTreeMap<Vec<u8>, Vec<u8>>;

struct PgState {
    requests: Sender<Request>,
    /// The cached trees by column, and their entries once read.
    cache: std::collections::HashMap<&'static str, Option<TreeEntries>>,
}

impl PgState {
    /// `tree`'s entries, read whole the first time; `None` when `tree` is not cached.
    fn loaded(&mut self, tree: &'static str) -> KvResult<Option<&TreeEntries>> {
        let Some(slot) = self.cache.get_mut(tree) else {
            return Ok(None);
        };
        if slot.is_none() {
            let all = ask(&self.requests, |reply| Request::Scan {
                tree,
                prefix: Vec::new(),
                reply,
            })?;
            *slot = Some(all.into_iter().collect());
        }
        Ok(slot.as_ref())
    }
}

impl PgRecords {
    fn lock(&self) -> std::sync::MutexGuard<'_, PgState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends one request and waits for its answer.
    fn call<T>(&self, make: impl FnOnce(SyncSender<KvResult<T>>) -> Request) -> KvResult<T> {
        ask(&self.lock().requests, make)
    }

    fn get(&self, tree: &'static str, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        let mut state = self.lock();
        if let Some(entries) = state.loaded(tree)? {
            return Ok(entries.get(key).cloned());
        }
        ask(&state.requests, |reply| Request::Get {
            tree,
            key: key.to_vec(),
            reply,
        })
    }

    fn scan(&self, tree: &'static str, prefix: &[u8]) -> KvResult<Entries> {
        let mut state = self.lock();
        if let Some(entries) = state.loaded(tree)? {
            return Ok(entries
                .range(prefix.to_vec()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect());
        }
        ask(&state.requests, |reply| Request::Scan {
            tree,
            prefix: prefix.to_vec(),
            reply,
        })
    }

    fn transaction<T: Trees, V, E: From<KvError>>(
        &self,
        f: impl Fn(&mut dyn Tx<T>) -> Result<V, Abort<E>>,
    ) -> Result<V, E> {
        let mut state = self.lock();
        ask(&state.requests, |reply| Request::Begin { reply }).map_err(E::from)?;
        let mut tx = PgTx {
            requests: &state.requests,
            cached: &state.cache,
            writes: Vec::new(),
            open: true,
        };
        let result = f(&mut tx);
        let commit = result.is_ok();
        tx.open = false;
        let writes = std::mem::take(&mut tx.writes);
        drop(tx);
        let ended = ask(&state.requests, |reply| Request::End { commit, reply });
        match result {
            Ok(v) => match ended {
                Ok(()) => {
                    for (tree, key, value) in writes {
                        if let Some(Some(entries)) = state.cache.get_mut(tree) {
                            match value {
                                Some(value) => entries.insert(key, value),
                                None => entries.remove(&key),
                            };
                        }
                    }
                    Ok(v)
                }
                Err(e) => {
                    // The commit may or may not have happened: read the cached trees again.
                    for slot in state.cache.values_mut() {
                        *slot = None;
                    }
                    Err(E::from(e))
                }
            },
            // Rolled back (or the connection is gone, and the transaction with it).
            Err(Abort::With(e)) => Err(e),
            Err(Abort::Kv(e)) => Err(E::from(e)),
        }
    }
}

fn ask<T>(
    requests: &Sender<Request>,
    make: impl FnOnce(SyncSender<KvResult<T>>) -> Request,
) -> KvResult<T> {
    let (reply, answer) = sync_channel(1);
    requests.send(make(reply)).map_err(|_| KvError::Closed)?;
    answer.recv().map_err(|_| KvError::Closed)?
}

/// A transaction in progress on the connection's thread.
struct PgTx<'a> {
    requests: &'a Sender<Request>,
    /// The cached trees ([`PgState::cache`]), whose writes are kept for the cache.
    cached: &'a std::collections::HashMap<&'static str, Option<TreeEntries>>,
    /// The writes to cached trees, in order (`None`: a removal), applied once committed.
    writes: Vec<Write>,
    /// Whether `End` is still to be sent (by [`Drop`] when the closure panicked).
    open: bool,
}

impl Drop for PgTx<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = ask(self.requests, |reply| Request::End {
                commit: false,
                reply,
            });
        }
    }
}

impl<T: Trees> Tx<T> for PgTx<'_> {
    fn get(&mut self, tree: T, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        ask(self.requests, |reply| Request::Get {
            tree: tree.column(),
            key: key.to_vec(),
            reply,
        })
    }

    fn insert(&mut self, tree: T, key: &[u8], value: &[u8]) -> KvResult<()> {
        ask(self.requests, |reply| Request::Insert {
            tree: tree.column(),
            key: key.to_vec(),
            value: value.to_vec(),
            reply,
        })?;
        self.wrote(tree.column(), key, Some(value));
        Ok(())
    }

    fn remove(&mut self, tree: T, key: &[u8]) -> KvResult<()> {
        ask(self.requests, |reply| Request::Remove {
            tree: tree.column(),
            key: key.to_vec(),
            reply,
        })?;
        self.wrote(tree.column(), key, None);
        Ok(())
    }
}

impl PgTx<'_> {
    /// Keeps a write to a cached tree, for the cache once committed.
    fn wrote(&mut self, tree: &'static str, key: &[u8], value: Option<&[u8]>) {
        if self.cached.contains_key(tree) {
            self.writes
                .push((tree, key.to_vec(), value.map(<[u8]>::to_vec)));
        }
    }
}

const GET: &str = "SELECT value FROM lode_records WHERE miner = $1 AND tree = $2 AND key = $3";
const SCAN: &str = "SELECT key, value FROM lode_records
     WHERE miner = $1 AND tree = $2 AND key >= $3 AND ($4::bytea IS NULL OR key < $4)
     ORDER BY key";
const INSERT: &str = "INSERT INTO lode_records (miner, tree, key, value) VALUES ($1, $2, $3, $4)
     ON CONFLICT (miner, tree, key) DO UPDATE SET value = EXCLUDED.value";
const REMOVE: &str = "DELETE FROM lode_records WHERE miner = $1 AND tree = $2 AND key = $3";
const ANY: &str = "SELECT EXISTS (SELECT 1 FROM lode_records WHERE miner = $1 AND tree = ANY($2))";
const FENCE: &str = "SELECT epoch FROM lode_leases WHERE name = $1 FOR SHARE";

/// The smallest key above every key that starts with `prefix` (`None`: no bound).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last.saturating_add(1));
            return Some(end);
        }
    }
    None
}

/// A connection and its prepared statements.
struct Conn {
    client: postgres::Client,
    st: Statements,
}

/// The data operations' statements, prepared once per connection.
struct Statements {
    get: postgres::Statement,
    scan: postgres::Statement,
    insert: postgres::Statement,
    remove: postgres::Statement,
}

impl Conn {
    fn open(config: &postgres::Config) -> KvResult<Conn> {
        let mut client = config.connect(postgres::NoTls)?;
        let st = Statements {
            get: client.prepare(GET)?,
            scan: client.prepare(SCAN)?,
            insert: client.prepare(INSERT)?,
            remove: client.prepare(REMOVE)?,
        };
        Ok(Conn { client, st })
    }
}

/// The connection's thread: answers requests until every sender is gone.
fn serve(config: &postgres::Config, miner: i64, fence: Option<&Fence>, rx: &Receiver<Request>) {
    let mut conn: Option<Conn> = None;
    while let Ok(request) = rx.recv() {
        let c = match &mut conn {
            Some(c) if !c.client.is_closed() => c,
            _ => match Conn::open(config) {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    conn = None;
                    fail(request, e);
                    continue;
                }
            },
        };
        match request {
            Request::Begin { reply } => run_transaction(c, miner, fence, rx, &reply),
            other => answer_plain(c, miner, other),
        }
    }
}

/// Answers a request outside a transaction (an operation arriving out of one runs alone).
fn answer_plain(c: &mut Conn, miner: i64, request: Request) {
    match answer_op(&mut c.client, &c.st, miner, request) {
        Some(Request::Ping { reply }) => {
            let _ = reply.send(
                c.client
                    .simple_query("SELECT 1")
                    .map(|_| ())
                    .map_err(Into::into),
            );
        }
        Some(Request::End { reply, .. } | Request::Begin { reply }) => {
            let _ = reply.send(Ok(()));
        }
        _ => {}
    }
}

/// Answers a data operation (`Any`, `Get`, `Scan`, `Insert`, `Remove`) on `client`: the
/// connection itself, or the transaction open on it. Any other request is handed back.
fn answer_op(
    client: &mut impl postgres::GenericClient,
    st: &Statements,
    miner: i64,
    request: Request,
) -> Option<Request> {
    match request {
        Request::Any { trees, reply } => {
            let _ = reply.send(any(client, miner, &trees));
        }
        Request::Get { tree, key, reply } => {
            let _ = reply.send(get(client, &st.get, miner, tree, &key));
        }
        Request::Scan {
            tree,
            prefix,
            reply,
        } => {
            let _ = reply.send(scan(client, &st.scan, miner, tree, &prefix));
        }
        Request::Insert {
            tree,
            key,
            value,
            reply,
        } => {
            let r = client.execute(&st.insert, &[&miner, &tree, &key, &value]);
            let _ = reply.send(r.map(|_| ()).map_err(Into::into));
        }
        Request::Remove { tree, key, reply } => {
            let r = client.execute(&st.remove, &[&miner, &tree, &key]);
            let _ = reply.send(r.map(|_| ()).map_err(Into::into));
        }
        other => return Some(other),
    }
    None
}

fn any(
    client: &mut impl postgres::GenericClient,
    miner: i64,
    trees: &[&'static str],
) -> KvResult<bool> {
    let row = client.query_one(ANY, &[&miner, &trees])?;
    Ok(row.try_get(0)?)
}

fn get(
    client: &mut impl postgres::GenericClient,
    statement: &postgres::Statement,
    miner: i64,
    tree: &'static str,
    key: &[u8],
) -> KvResult<Option<Vec<u8>>> {
    let row = client.query_opt(statement, &[&miner, &tree, &key])?;
    Ok(match row {
        Some(row) => Some(row.try_get::<_, Vec<u8>>(0)?),
        None => None,
    })
}

fn scan(
    client: &mut impl postgres::GenericClient,
    statement: &postgres::Statement,
    miner: i64,
    tree: &'static str,
    prefix: &[u8],
) -> KvResult<Entries> {
    let end = prefix_end(prefix);
    client
        .query(statement, &[&miner, &tree, &prefix, &end])?
        .into_iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

/// Runs one transaction: checks the fence, then answers its operations until `End`.
fn run_transaction(
    c: &mut Conn,
    miner: i64,
    fence: Option<&Fence>,
    rx: &Receiver<Request>,
    begun: &SyncSender<KvResult<()>>,
) {
    let mut tx = match c.client.transaction() {
        Ok(tx) => tx,
        Err(e) => {
            let _ = begun.send(Err(e.into()));
            return;
        }
    };
    if let Some(fence) = fence {
        let checked = match tx.query_opt(FENCE, &[&fence.lease]) {
            Err(e) => Err(KvError::from(e)),
            Ok(row) => {
                let found = row.map(|r| r.try_get::<_, i64>(0)).transpose();
                match found {
                    Err(e) => Err(e.into()),
                    Ok(Some(e)) if u64::try_from(e).ok() == Some(fence.epoch) => Ok(()),
                    Ok(other) => Err(KvError::Deposed {
                        lease: fence.lease.clone(),
                        ours: fence.epoch,
                        found: other.map_or_else(|| "none".to_string(), |e| e.to_string()),
                    }),
                }
            }
        };
        if let Err(e) = checked {
            // The caller stops at a failed `Begin`; dropping `tx` rolls it back.
            let _ = begun.send(Err(e));
            return;
        }
    }
    if begun.send(Ok(())).is_err() {
        return;
    }
    while let Ok(request) = rx.recv() {
        match answer_op(&mut tx, &c.st, miner, request) {
            Some(Request::End { commit, reply }) => {
                let r = if commit { tx.commit() } else { tx.rollback() };
                let _ = reply.send(r.map_err(Into::into));
                return;
            }
            Some(Request::Ping { reply } | Request::Begin { reply }) => {
                let _ = reply.send(Ok(()));
            }
            _ => {}
        }
    }
}

/// Answers `request` with `e` (the connection could not be opened).
fn fail(request: Request, e: KvError) {
    match request {
        Request::Ping { reply }
        | Request::Begin { reply }
        | Request::Insert { reply, .. }
        | Request::Remove { reply, .. }
        | Request::End { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Request::Get { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Request::Any { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Request::Scan { reply, .. } => {
            let _ = reply.send(Err(e));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Two {
        A,
        B,
    }

    impl Trees for Two {
        const ALL: &'static [Two] = &[Two::A, Two::B];
        fn name(self) -> &'static str {
            match self {
                Two::A => "a",
                Two::B => "b",
            }
        }
        fn column(self) -> &'static str {
            match self {
                Two::A => "test/a",
                Two::B => "test/b",
            }
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Other;

    impl Trees for Other {
        const ALL: &'static [Other] = &[Other];
        fn name(self) -> &'static str {
            "other"
        }
        fn column(self) -> &'static str {
            "test/other"
        }
    }

    #[test]
    fn prefix_ends_bound_exactly_the_keys_that_start_with_the_prefix() {
        assert_eq!(prefix_end(&[]), None);
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }

    #[test]
    fn a_transaction_writes_all_or_nothing_and_scans_go_in_key_order() {
        let d = tempfile::tempdir().unwrap();
        let r = Records::<Two>::open(d.path()).unwrap();
        assert!(r.is_empty().unwrap());
        assert_eq!(r.location(), d.path().display().to_string());
        r.transaction(|tx| -> Result<(), Abort<KvError>> {
            tx.insert(Two::A, &[2, 0], b"b")?;
            tx.insert(Two::A, &[1, 9], b"a")?;
            tx.insert(Two::A, &[2, 1], b"c")?;
            tx.insert(Two::B, b"n", b"3")?;
            Ok(())
        })
        .unwrap();
        // An aborted transaction leaves nothing, in any tree.
        let err = r
            .transaction(|tx| -> Result<(), Abort<KvError>> {
                tx.insert(Two::B, b"n", b"4")?;
                tx.remove(Two::A, &[1, 9])?;
                abort(KvError::Closed)
            })
            .unwrap_err();
        assert!(matches!(err, KvError::Closed));
        assert_eq!(r.get(Two::B, b"n").unwrap(), Some(b"3".to_vec()));
        let keys = |p: &[u8]| -> Vec<Vec<u8>> {
            r.scan(Two::A, p)
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(keys(&[]), [vec![1, 9], vec![2, 0], vec![2, 1]]);
        assert_eq!(keys(&[2]), [vec![2, 0], vec![2, 1]]);
        assert!(keys(&[3]).is_empty());
        // A transaction reads its own writes; the trees are apart.
        let seen = r
            .transaction(|tx| -> Result<_, Abort<KvError>> {
                tx.insert(Two::B, &[1, 9], b"t")?;
                Ok((tx.get(Two::B, &[1, 9])?, tx.get(Two::A, &[7])?))
            })
            .unwrap();
        assert_eq!(seen, (Some(b"t".to_vec()), None));
        r.put(Two::A, &[7], b"p").unwrap();
        assert_eq!(r.get(Two::A, &[7]).unwrap(), Some(b"p".to_vec()));
        // Copied into other records, everything is there.
        let e = tempfile::tempdir().unwrap();
        let copy = Records::<Two>::open(e.path()).unwrap();
        assert_eq!(copy.import(&r).unwrap(), 6);
        for t in Two::ALL {
            assert_eq!(copy.scan(*t, &[]).unwrap(), r.scan(*t, &[]).unwrap());
        }
    }

    #[test]
    fn two_sets_share_one_embedded_database_without_seeing_each_other() {
        let d = tempfile::tempdir().unwrap();
        let db = sled::open(d.path()).unwrap();
        let two = Records::<Two>::in_sled(db.clone(), d.path()).unwrap();
        let other = Records::<Other>::in_sled(db, d.path()).unwrap();
        two.put(Two::A, b"k", b"v").unwrap();
        assert!(other.is_empty().unwrap());
        other.put(Other, b"k", b"w").unwrap();
        assert_eq!(two.get(Two::A, b"k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(other.get(Other, b"k").unwrap(), Some(b"w".to_vec()));
        drop((two, other));
        // Both are durable, and the same trees open again by name.
        let two = Records::<Two>::open(d.path()).unwrap();
        assert_eq!(two.get(Two::A, b"k").unwrap(), Some(b"v".to_vec()));
    }
}
