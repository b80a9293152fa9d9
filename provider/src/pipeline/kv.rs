//! Where the pipeline's records live: ordered key-value trees (sectors, their counters, the task
//! records, the deal pieces and their indexes) in one of two back ends.
//!
//! - **Embedded** ([`Records::open`]): a sled database in the provider's directory, one sled tree
//!   per [`Tree`] — one machine, the default.
//! - **PostgreSQL** ([`Records::postgres`]): the cluster's database (`[cluster] db`), table
//!   `lode_pipeline` (migration 6 of the task engine), one row per key, keyed by the miner actor —
//!   so that a standby provider on another machine takes over the records the leader wrote.
//!
//! Both give the same operations: reads of one key or of a key range in key order, and
//! transactions ([`Records::transaction`]) whose reads and writes across every tree are all or
//! none and durable before they return (sled: flushed; PostgreSQL: committed).
//!
//! **Fencing** (PostgreSQL): a provider opens its records with the leader lease it holds
//! ([`Fence`]). Every transaction first reads that lease's row `FOR SHARE` and is refused
//! ([`KvError::Deposed`]) when the lease has another epoch: a provider that lost its lease (a
//! standby took over while this one was cut off) cannot write after the new leader took the lease,
//! since taking it updates that row and so waits for any transaction holding the share lock.
//! Writers of one process are serialised by the connection's lock, so transactions never race
//! each other at `READ COMMITTED`.
//!
//! **The PostgreSQL connection** is a synchronous client on a thread of its own (the pipeline's
//! stores are synchronous, like sled, and are called from async tasks and from threads alike): a
//! call sends its statement to that thread and waits for the answer. A connection that broke is
//! dropped and opened again by the next call, so the pipeline resumes when the server is back.

use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sled::Transactional;
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};

/// The trees of the pipeline's records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tree {
    /// Sector records by number.
    Sectors,
    /// The sector counter.
    Meta,
    /// Task records by id.
    Tasks,
    /// The task id and token counters.
    TaskMeta,
    /// Deal pieces by deal id.
    Deals,
    /// `sector ‖ deal id` → nothing: the live pieces of each sector.
    DealSectors,
    /// `CommP ‖ deal id` → nothing: the pieces by piece CID.
    PieceCids,
}

impl Tree {
    /// Every tree, in [`Tree::index`] order.
    pub const ALL: [Tree; 7] = [
        Tree::Sectors,
        Tree::Meta,
        Tree::Tasks,
        Tree::TaskMeta,
        Tree::Deals,
        Tree::DealSectors,
        Tree::PieceCids,
    ];

    /// The sled tree's name (what the embedded database has always called it).
    pub fn name(self) -> &'static str {
        match self {
            Tree::Sectors => "sectors",
            Tree::Meta => "meta",
            Tree::Tasks => "tasks",
            Tree::TaskMeta => "task_meta",
            Tree::Deals => "deals",
            Tree::DealSectors => "deal_sectors",
            Tree::PieceCids => "piece_cids",
        }
    }

    /// Its position in [`Tree::ALL`]; its code in PostgreSQL's `tree` column.
    pub fn index(self) -> usize {
        match self {
            Tree::Sectors => 0,
            Tree::Meta => 1,
            Tree::Tasks => 2,
            Tree::TaskMeta => 3,
            Tree::Deals => 4,
            Tree::DealSectors => 5,
            Tree::PieceCids => 6,
        }
    }

    fn code(self) -> i16 {
        i16::try_from(self.index()).unwrap_or(i16::MAX)
    }
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
    #[error("the pipeline's PostgreSQL connection thread stopped")]
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

/// The reads and writes of one transaction.
pub trait Tx {
    /// The value of `key` in `tree`, as this transaction sees it.
    fn get(&mut self, tree: Tree, key: &[u8]) -> KvResult<Option<Vec<u8>>>;
    /// Sets `key` in `tree` to `value`.
    fn insert(&mut self, tree: Tree, key: &[u8], value: &[u8]) -> KvResult<()>;
    /// Removes `key` from `tree` (nothing when it is absent).
    fn remove(&mut self, tree: Tree, key: &[u8]) -> KvResult<()>;
}

/// The leader lease a provider's writes are fenced by: the lease's name and the epoch it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The lease (`provider/<actor>`).
    pub lease: String,
    /// The epoch acquired.
    pub epoch: u64,
}

/// The pipeline's records: a handle shared by the pipeline, its task store and the market.
#[derive(Clone)]
pub struct Records {
    inner: Arc<Backend>,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.inner {
            Backend::Sled { .. } => f.write_str("Records(sled)"),
            Backend::Postgres(pg) => write!(f, "Records(postgres, miner {})", pg.miner),
        }
    }
}

enum Backend {
    Sled {
        db: sled::Db,
        trees: Vec<sled::Tree>,
    },
    Postgres(PgRecords),
}

impl Records {
    /// Opens (or creates) the embedded database in `dir`.
    pub fn open(dir: &std::path::Path) -> KvResult<Self> {
        let db = sled::open(dir)?;
        let trees = Tree::ALL
            .iter()
            .map(|t| db.open_tree(t.name()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Records {
            inner: Arc::new(Backend::Sled { db, trees }),
        })
    }

    /// The records of miner `miner` in the PostgreSQL database at `url` (whose schema the task
    /// engine has migrated: [`crate::engine::postgres::PgEngine::connect`]), writes fenced by
    /// `fence` when given. Connects before it returns, so that a wrong address is reported here.
    pub fn postgres(url: &str, miner: u64, fence: Option<Fence>) -> KvResult<Self> {
        let mut config: postgres::Config = url.parse()?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let miner = i64::try_from(miner).unwrap_or(i64::MAX);
        let (requests, rx) = channel::<Request>();
        let thread_config = config.clone();
        std::thread::Builder::new()
            .name("lode-pipeline-db".into())
            .spawn(move || serve(&thread_config, miner, fence.as_ref(), &rx))
            .map_err(|_| KvError::Closed)?;
        let pg = PgRecords {
            miner,
            requests: Mutex::new(requests),
        };
        // Connect now: an unreachable database is an error of the start, not of the first tick.
        pg.call(|reply| Request::Ping { reply })?;
        Ok(Records {
            inner: Arc::new(Backend::Postgres(pg)),
        })
    }

    /// Whether the records are in PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(&*self.inner, Backend::Postgres(_))
    }

    /// The value of `key` in `tree`.
    pub fn get(&self, tree: Tree, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        match &*self.inner {
            Backend::Sled { trees, .. } => {
                Ok(sled_tree(trees, tree)?.get(key)?.map(|v| v.to_vec()))
            }
            Backend::Postgres(pg) => pg.call(|reply| Request::Get {
                tree: tree.code(),
                key: key.to_vec(),
                reply,
            }),
        }
    }

    /// The entries of `tree` whose keys start with `prefix` (every entry for an empty one), in
    /// key order.
    pub fn scan(&self, tree: Tree, prefix: &[u8]) -> KvResult<Entries> {
        match &*self.inner {
            Backend::Sled { trees, .. } => sled_tree(trees, tree)?
                .scan_prefix(prefix)
                .map(|r| {
                    let (k, v) = r?;
                    Ok((k.to_vec(), v.to_vec()))
                })
                .collect(),
            Backend::Postgres(pg) => pg.call(|reply| Request::Scan {
                tree: tree.code(),
                prefix: prefix.to_vec(),
                reply,
            }),
        }
    }

    /// Whether no tree holds anything.
    pub fn is_empty(&self) -> KvResult<bool> {
        match &*self.inner {
            Backend::Sled { trees, .. } => {
                for t in Tree::ALL {
                    if !sled_tree(trees, t)?.is_empty() {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Backend::Postgres(pg) => pg.call(|reply| Request::Any { reply }).map(|any| !any),
        }
    }

    /// Runs `f` as one transaction over every tree: its writes are all made, durably, or none
    /// is (when `f` aborts or the back end fails). `f` may run more than once (sled retries it
    /// after a conflict with a concurrent transaction), so it must not have other effects.
    ///
    /// # Errors
    /// The closure's own error, or the back end's ([`KvError`], converted).
    pub fn transaction<T, E: From<KvError>>(
        &self,
        f: impl Fn(&mut dyn Tx) -> Result<T, Abort<E>>,
    ) -> Result<T, E> {
        match &*self.inner {
            Backend::Sled { db, trees } => {
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

    /// Sets `key` in `tree` to `value`, alone (what a test writes over a record).
    #[cfg(test)]
    pub(crate) fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> KvResult<()> {
        self.transaction(|tx| -> Result<(), Abort<KvError>> {
            tx.insert(tree, key, value)?;
            Ok(())
        })
    }

    /// Copies every entry of `from` into these records, in one transaction (a provider that
    /// joins a cluster brings its embedded records into the database). Returns how many.
    pub fn import(&self, from: &Records) -> KvResult<usize> {
        let mut entries = Vec::new();
        for t in Tree::ALL {
            for (k, v) in from.scan(t, &[])? {
                entries.push((t, k, v));
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

fn sled_tree(trees: &[sled::Tree], tree: Tree) -> KvResult<&sled::Tree> {
    trees
        .get(tree.index())
        .ok_or_else(|| KvError::Sled(sled::Error::Unsupported(format!("no tree {}", tree.name()))))
}

/// A sled transaction's view of every tree.
struct SledTx<'a>(&'a Vec<TransactionalTree>);

impl SledTx<'_> {
    fn tree(&self, tree: Tree) -> KvResult<&TransactionalTree> {
        self.0.get(tree.index()).ok_or_else(|| {
            KvError::Sled(sled::Error::Unsupported(format!("no tree {}", tree.name())))
        })
    }
}

impl Tx for SledTx<'_> {
    fn get(&mut self, tree: Tree, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        Ok(self.tree(tree)?.get(key)?.map(|v| v.to_vec()))
    }

    fn insert(&mut self, tree: Tree, key: &[u8], value: &[u8]) -> KvResult<()> {
        self.tree(tree)?.insert(key, value)?;
        Ok(())
    }

    fn remove(&mut self, tree: Tree, key: &[u8]) -> KvResult<()> {
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
    /// Whether the miner has any record.
    Any {
        reply: SyncSender<KvResult<bool>>,
    },
    Get {
        tree: i16,
        key: Vec<u8>,
        reply: SyncSender<KvResult<Option<Vec<u8>>>>,
    },
    Scan {
        tree: i16,
        prefix: Vec<u8>,
        reply: SyncSender<KvResult<Entries>>,
    },
    Begin {
        reply: SyncSender<KvResult<()>>,
    },
    Insert {
        tree: i16,
        key: Vec<u8>,
        value: Vec<u8>,
        reply: SyncSender<KvResult<()>>,
    },
    Remove {
        tree: i16,
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
    requests: Mutex<Sender<Request>>,
}

impl PgRecords {
    /// Sends one request and waits for its answer.
    fn call<T>(&self, make: impl FnOnce(SyncSender<KvResult<T>>) -> Request) -> KvResult<T> {
        let requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        ask(&requests, make)
    }

    fn transaction<T, E: From<KvError>>(
        &self,
        f: impl Fn(&mut dyn Tx) -> Result<T, Abort<E>>,
    ) -> Result<T, E> {
        let requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        ask(&requests, |reply| Request::Begin { reply }).map_err(E::from)?;
        let mut tx = PgTx {
            requests: &requests,
            open: true,
        };
        let result = f(&mut tx);
        let commit = result.is_ok();
        tx.open = false;
        let ended = ask(&requests, |reply| Request::End { commit, reply });
        match result {
            Ok(v) => ended.map(|()| v).map_err(E::from),
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

impl Tx for PgTx<'_> {
    fn get(&mut self, tree: Tree, key: &[u8]) -> KvResult<Option<Vec<u8>>> {
        ask(self.requests, |reply| Request::Get {
            tree: tree.code(),
            key: key.to_vec(),
            reply,
        })
    }

    fn insert(&mut self, tree: Tree, key: &[u8], value: &[u8]) -> KvResult<()> {
        ask(self.requests, |reply| Request::Insert {
            tree: tree.code(),
            key: key.to_vec(),
            value: value.to_vec(),
            reply,
        })
    }

    fn remove(&mut self, tree: Tree, key: &[u8]) -> KvResult<()> {
        ask(self.requests, |reply| Request::Remove {
            tree: tree.code(),
            key: key.to_vec(),
            reply,
        })
    }
}

const GET: &str = "SELECT value FROM lode_pipeline WHERE miner = $1 AND tree = $2 AND key = $3";
const SCAN: &str = "SELECT key, value FROM lode_pipeline
     WHERE miner = $1 AND tree = $2 AND key >= $3 AND ($4::bytea IS NULL OR key < $4)
     ORDER BY key";
const INSERT: &str = "INSERT INTO lode_pipeline (miner, tree, key, value) VALUES ($1, $2, $3, $4)
     ON CONFLICT (miner, tree, key) DO UPDATE SET value = EXCLUDED.value";
const REMOVE: &str = "DELETE FROM lode_pipeline WHERE miner = $1 AND tree = $2 AND key = $3";
const ANY: &str = "SELECT EXISTS (SELECT 1 FROM lode_pipeline WHERE miner = $1)";
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
        Request::Any { reply } => {
            let _ = reply.send(any(client, miner));
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

fn any(client: &mut impl postgres::GenericClient, miner: i64) -> KvResult<bool> {
    let row = client.query_one(ANY, &[&miner])?;
    Ok(row.try_get(0)?)
}

fn get(
    client: &mut impl postgres::GenericClient,
    statement: &postgres::Statement,
    miner: i64,
    tree: i16,
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
    tree: i16,
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
        Request::Any { reply } => {
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
        let r = Records::open(d.path()).unwrap();
        assert!(r.is_empty().unwrap());
        r.transaction(|tx| -> Result<(), Abort<KvError>> {
            tx.insert(Tree::Sectors, &[2, 0], b"b")?;
            tx.insert(Tree::Sectors, &[1, 9], b"a")?;
            tx.insert(Tree::Sectors, &[2, 1], b"c")?;
            tx.insert(Tree::Meta, b"n", b"3")?;
            Ok(())
        })
        .unwrap();
        // An aborted transaction leaves nothing, in any tree.
        let err = r
            .transaction(|tx| -> Result<(), Abort<KvError>> {
                tx.insert(Tree::Meta, b"n", b"4")?;
                tx.remove(Tree::Sectors, &[1, 9])?;
                abort(KvError::Closed)
            })
            .unwrap_err();
        assert!(matches!(err, KvError::Closed));
        assert_eq!(r.get(Tree::Meta, b"n").unwrap(), Some(b"3".to_vec()));
        let keys = |p: &[u8]| -> Vec<Vec<u8>> {
            r.scan(Tree::Sectors, p)
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
                tx.insert(Tree::Tasks, &[1, 9], b"t")?;
                Ok((tx.get(Tree::Tasks, &[1, 9])?, tx.get(Tree::Deals, &[1, 9])?))
            })
            .unwrap();
        assert_eq!(seen, (Some(b"t".to_vec()), None));
        // Copied into other records, everything is there.
        let e = tempfile::tempdir().unwrap();
        let copy = Records::open(e.path()).unwrap();
        assert_eq!(copy.import(&r).unwrap(), 5);
        for t in Tree::ALL {
            assert_eq!(copy.scan(t, &[]).unwrap(), r.scan(t, &[]).unwrap());
        }
    }
}
