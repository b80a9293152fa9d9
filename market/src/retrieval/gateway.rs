//! The trustless gateway: `GET|HEAD /ipfs/<cid>` as the IPFS trustless gateway specification
//! describes it, over the [`BlockIndex`] and the provider's [`PieceSource`].
//!
//! **Formats.** `Accept: application/vnd.ipld.raw` or `?format=raw`: the block's bytes.
//! `Accept: application/vnd.ipld.car` or `?format=car`: a CARv1 stream whose header's root is the
//! requested CID, blocks in depth-first order (`order=dfs`), each block once (`dups=n`, the
//! default) or every time the walk meets it (`dups=y`, asked through the `Accept` parameter or
//! `?car-dups=y`). `format` takes precedence over `Accept`; `car-version`, `car-order` and
//! `car-dups` over the `Accept` parameters. Only CAR version 1 is written. A request without
//! `Accept` nor `format` is answered `400` (the gateway serves no deserialized responses); one
//! whose `Accept` names neither type (`*/*` included), or a CAR variant that is not served
//! (version 2, an order other than `dfs`/`unk`), `406`.
//!
//! **`dag-scope`** (CAR only; default `all`): `block` — the requested block alone; `all` — the
//! block and every block it links to, recursively; `entity` — for a UnixFS file (a raw block, or
//! a dag-pb node whose UnixFS type is `File` or `Raw`) the whole file, like `all`; for anything
//! else (a UnixFS directory, a non-UnixFS block) the block alone (a directory is enumerated by its
//! one node: lode does not write HAMT-sharded directories, and a sharded one is answered with its
//! root node only). Links are followed in dag-pb blocks (in link order) and dag-cbor blocks (in
//! the order of the decoded map keys and list items); blocks of other codecs (raw among them) are
//! leaves. Blocks with identity CIDs are never written into a CAR (their bytes are in the CID),
//! though their links are followed. `entity-bytes` and content paths (`/ipfs/<cid>/<path>`) are
//! not served (`400`).
//!
//! **Headers.** `Content-Type` (`application/vnd.ipld.raw`, or
//! `application/vnd.ipld.car; version=1; order=dfs; dups=n|y`), `Content-Disposition: attachment;
//! filename="<cid>.bin"` or `".car"`, a strong `ETag` (`"<cid>.raw"`, or
//! `"<cid>.car.<scope>.dfs.<dups>"`: the CAR this gateway writes for a request is always the same
//! bytes) honoured by `If-None-Match` (`304`), `Cache-Control: public, max-age=29030400,
//! immutable`, `X-Content-Type-Options: nosniff`, `Vary: Accept`, `X-Ipfs-Path`, and
//! `Content-Location` (the URL with `format`) when the format came from `Accept`. A raw block
//! has a `Content-Length`; a CAR is streamed without one.
//!
//! **Status codes.** `400` for a malformed CID, an unknown `format` or `dag-scope`, a content
//! path or `entity-bytes`; `404` when the requested block is not in the index, or no piece that
//! holds it is available (`412` instead when the request says `Cache-Control: only-if-cached`);
//! `500` when every copy of the requested block failed its hash check or could not be read;
//! `501` when the server was started without a block index. Once a CAR's first block is out, the
//! status is sent: a block found missing, corrupted or unreadable later, or a DAG past the limits,
//! ends the stream with an error (the connection is closed without the body's end), so a client
//! never takes a truncated CAR for a whole one.
//!
//! **Integrity.** Every block is read through the [`PieceSource`] at the index's offset and
//! length and hashed against its CID before a byte of it is sent; a block that does not match is
//! logged (the stored copy is corrupted) and the next copy in another piece is tried.
//!
//! **Bounds.** A block over [`MAX_BLOCK_READ`] is not served. A CAR holds at most
//! [`super::RetrievalConfig::car_max_blocks`] blocks (the walk's pending links count towards it,
//! so its memory is bounded too) and the walk goes at most
//! [`super::RetrievalConfig::car_max_depth`] links deep; the stream is produced one block at a
//! time, at most [`super::QUEUED_CHUNKS`] blocks ahead of the client, and dropped when the client
//! takes nothing for the stall timeout, like `/piece/` responses.

use std::collections::HashSet;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cid::Cid;
use ipld_dagpb::PbNode;
use iroh_car::{CarHeader, CarWriter};
use lode_proofs::cid::PieceCid;
use prost::Message;

use super::index::BlockIndex;
use super::{IMMUTABLE, PieceReader, PieceSource, QUEUED_CHUNKS, Shared, send, text};
use crate::car::MAX_BLOCK_READ;
use crate::cid::{DAG_PB_CODEC, IDENTITY, RAW_CODEC, parse_cid, verify_block};
use crate::unixfs::{DataType, UnixFsData};

/// Media type of a raw block.
pub const RAW_TYPE: &str = "application/vnd.ipld.raw";
/// Media type of a CAR.
pub const CAR_TYPE: &str = "application/vnd.ipld.car";
/// Multicodec of dag-cbor.
pub const DAG_CBOR_CODEC: u64 = 0x71;
/// Piece readers a CAR walk keeps open at once.
const OPEN_READERS: usize = 4;

/// Which blocks of the DAG a CAR holds (`dag-scope`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DagScope {
    /// The requested block alone.
    Block,
    /// The UnixFS file it is, whole; otherwise the block alone.
    Entity,
    /// The block and everything it links to.
    All,
}

impl DagScope {
    fn name(self) -> &'static str {
        match self {
            DagScope::Block => "block",
            DagScope::Entity => "entity",
            DagScope::All => "all",
        }
    }
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// The block's bytes.
    Raw,
    /// A CAR of `scope`, with duplicates or not.
    Car {
        /// `dag-scope`.
        scope: DagScope,
        /// `dups=y`.
        dups: bool,
    },
}

/// A refusal: its status and why.
type Refusal = (StatusCode, String);

/// The CAR variant parameters of an `Accept` entry or the query: `(version, order, dups)`.
fn car_variant(
    version: Option<&str>,
    order: Option<&str>,
    dups: Option<&str>,
    dups_default: bool,
) -> Result<bool, String> {
    match version {
        None | Some("1") => {}
        Some(v) => return Err(format!("CAR version {v} (this gateway writes version 1)")),
    }
    match order {
        None | Some("dfs") | Some("unk") => {}
        Some(o) => return Err(format!("CAR order {o:?} (this gateway writes order=dfs)")),
    }
    match dups {
        None => Ok(dups_default),
        Some("y") => Ok(true),
        Some("n") => Ok(false),
        Some(d) => Err(format!("CAR dups={d:?} (y or n)")),
    }
}

/// One entry of `Accept`: its media type (lower case), its parameters and its quality.
struct AcceptEntry {
    essence: String,
    version: Option<String>,
    order: Option<String>,
    dups: Option<String>,
    q: f32,
}

fn parse_accept(value: &str) -> Vec<AcceptEntry> {
    let mut out: Vec<AcceptEntry> = value
        .split(',')
        .filter_map(|part| part.trim().parse::<mime::Mime>().ok())
        .map(|m| {
            let param = |name: &str| m.get_param(name).map(|v| v.as_str().to_ascii_lowercase());
            AcceptEntry {
                essence: m.essence_str().to_ascii_lowercase(),
                version: param("version"),
                order: param("order"),
                dups: param("dups"),
                q: param("q")
                    .and_then(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0),
            }
        })
        .filter(|e| e.q > 0.0)
        .collect();
    // Highest quality first; equal qualities keep the client's order.
    out.sort_by(|a, b| b.q.partial_cmp(&a.q).unwrap_or(std::cmp::Ordering::Equal));
    out
}

/// Decides what a request asks for from its `Accept` header and query parameters.
pub(crate) fn negotiate(
    accept: Option<&str>,
    query: &[(String, String)],
) -> Result<Wanted, Refusal> {
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let entries = accept.map(parse_accept).unwrap_or_default();
    let bad = |why: String| (StatusCode::BAD_REQUEST, why);
    let not_acceptable = |why: String| (StatusCode::NOT_ACCEPTABLE, why);
    // The CAR variant: the query's parameters over the first CAR entry of Accept.
    let car = |entry: Option<&AcceptEntry>| -> Result<bool, String> {
        let dups_default = car_variant(
            entry.and_then(|e| e.version.as_deref()),
            entry.and_then(|e| e.order.as_deref()),
            entry.and_then(|e| e.dups.as_deref()),
            false,
        )?;
        car_variant(
            get("car-version"),
            get("car-order"),
            get("car-dups"),
            dups_default,
        )
    };
    let wanted_car = |dups: bool| -> Result<Wanted, Refusal> {
        if get("entity-bytes").is_some() {
            return Err(bad(
                "entity-bytes is not served by this gateway: ask for the whole entity \
                 (dag-scope=entity), or for byte ranges of the piece at /piece/<piece CID>"
                    .into(),
            ));
        }
        let scope = match get("dag-scope") {
            None | Some("all") => DagScope::All,
            Some("entity") => DagScope::Entity,
            Some("block") => DagScope::Block,
            Some(s) => {
                return Err(bad(format!(
                    "dag-scope={s:?} is not one of block, entity, all"
                )));
            }
        };
        Ok(Wanted::Car { scope, dups })
    };
    match get("format") {
        Some("raw") => return Ok(Wanted::Raw),
        Some("car") => {
            let entry = entries.iter().find(|e| e.essence == CAR_TYPE);
            let dups = car(entry).map_err(|why| not_acceptable(format!("{why} is not served")))?;
            return wanted_car(dups);
        }
        Some(other) => {
            return Err(bad(format!(
                "format={other:?} is not served here: format=raw (a block) or format=car (a CAR)"
            )));
        }
        None => {}
    }
    let mut refused = Vec::new();
    for e in &entries {
        if e.essence == RAW_TYPE {
            return Ok(Wanted::Raw);
        }
        if e.essence == CAR_TYPE {
            match car(Some(e)) {
                Ok(dups) => return wanted_car(dups),
                Err(why) => refused.push(why),
            }
        }
    }
    let missing = accept.is_none_or(|a| a.trim().is_empty());
    if missing {
        return Err(bad(format!(
            "say which response you want: Accept: {RAW_TYPE} (a block) or {CAR_TYPE} (a CAR), \
             or ?format=raw|car; this gateway serves only verifiable responses"
        )));
    }
    let why = if refused.is_empty() {
        format!(
            "this gateway serves {RAW_TYPE} (a block) and {CAR_TYPE} (a CAR) only; \
             ask for one with Accept or ?format=raw|car"
        )
    } else {
        format!("{} is not served", refused.join("; "))
    };
    Err(not_acceptable(why))
}

/// What reading a block gave.
pub(crate) enum Fetch {
    /// Its bytes (checked against its CID).
    Found(Bytes),
    /// No available piece holds it.
    Missing,
    /// Every copy failed (the reasons).
    Failed(String),
}

/// Reads blocks by CID through the index and the piece source, keeping a few piece readers open.
pub(crate) struct Fetcher {
    index: BlockIndex,
    pieces: Arc<dyn PieceSource>,
    readers: Vec<(PieceCid, Box<dyn PieceReader>)>,
}

fn read_exact_at(r: &mut dyn PieceReader, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0usize;
    while let Some(rest) = buf.get_mut(filled..) {
        if rest.is_empty() {
            return Ok(());
        }
        match r.read_at(offset.saturating_add(filled as u64), rest) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the piece ends inside the block",
                ));
            }
            Ok(n) => filled = filled.saturating_add(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Fetcher {
    pub(crate) fn new(index: BlockIndex, pieces: Arc<dyn PieceSource>) -> Fetcher {
        Fetcher {
            index,
            pieces,
            readers: Vec::new(),
        }
    }

    fn reader(&mut self, piece: &PieceCid) -> crate::MarketResult<Option<&mut dyn PieceReader>> {
        let at = match self.readers.iter().position(|(p, _)| p == piece) {
            Some(at) => at,
            None => {
                let Some(r) = self.pieces.open(piece)? else {
                    return Ok(None);
                };
                if self.readers.len() >= OPEN_READERS {
                    self.readers.remove(0);
                }
                self.readers.push((*piece, r));
                self.readers.len().saturating_sub(1)
            }
        };
        Ok(self
            .readers
            .get_mut(at)
            .map(|(_, r)| &mut **r as &mut dyn PieceReader))
    }

    /// The block `cid`, from the first copy that reads and hashes right.
    pub(crate) fn fetch(&mut self, cid: &Cid) -> Fetch {
        let mh = cid.hash();
        if mh.code() == IDENTITY {
            return Fetch::Found(Bytes::copy_from_slice(mh.digest()));
        }
        let locations = match self.index.locate(cid) {
            Ok(l) => l,
            Err(e) => return Fetch::Failed(e.to_string()),
        };
        let mut failures = Vec::new();
        for l in locations {
            if l.length > MAX_BLOCK_READ {
                failures.push(format!(
                    "block {cid} is {} bytes, over the {MAX_BLOCK_READ} this gateway serves",
                    l.length
                ));
                continue;
            }
            let reader = match self.reader(&l.piece) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    failures.push(format!("piece {}: {e}", l.piece));
                    continue;
                }
            };
            let mut data = vec![0u8; usize::try_from(l.length).unwrap_or(0)];
            if let Err(e) = read_exact_at(reader, l.offset, &mut data) {
                failures.push(format!("piece {} at byte {}: {e}", l.piece, l.offset));
                continue;
            }
            match verify_block(cid, &data) {
                Ok(true) => return Fetch::Found(Bytes::from(data)),
                Ok(false) => {
                    tracing::warn!(%cid, piece = %l.piece, offset = l.offset, "a stored block does not hash to its CID: the piece's copy is corrupted");
                    failures.push(format!(
                        "the copy of block {cid} in piece {} does not hash to its CID (the stored copy is corrupted)",
                        l.piece
                    ));
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
        if failures.is_empty() {
            Fetch::Missing
        } else {
            Fetch::Failed(failures.join("; "))
        }
    }
}

/// Whether a block is a UnixFS file (a raw leaf, or a dag-pb `File`/`Raw` node).
fn is_unixfs_file(cid: &Cid, data: &Bytes) -> bool {
    match cid.codec() {
        RAW_CODEC => true,
        DAG_PB_CODEC => PbNode::from_bytes(data.clone())
            .ok()
            .and_then(|n| n.data)
            .and_then(|d| UnixFsData::decode(d.as_ref()).ok())
            .is_some_and(|u| {
                u.data_type == DataType::File as i32 || u.data_type == DataType::Raw as i32
            }),
        _ => false,
    }
}

/// The blocks a block links to, in order; an error for a dag-pb or dag-cbor block that does not
/// decode.
fn links(cid: &Cid, data: &Bytes) -> Result<Vec<Cid>, String> {
    match cid.codec() {
        DAG_PB_CODEC => PbNode::from_bytes(data.clone())
            .map(|n| n.links.into_iter().map(|l| l.cid).collect())
            .map_err(|e| format!("block {cid} is not a valid dag-pb node: {e}")),
        DAG_CBOR_CODEC => {
            let ipld: ipld_core::ipld::Ipld = serde_ipld_dagcbor::from_slice(data)
                .map_err(|e| format!("block {cid} is not valid dag-cbor: {e}"))?;
            Ok(ipld
                .iter()
                .filter_map(|i| match i {
                    ipld_core::ipld::Ipld::Link(c) => Some(*c),
                    _ => None,
                })
                .collect())
        }
        _ => Ok(Vec::new()),
    }
}

/// A fetch on the blocking pool, with the block's links when `follow`.
async fn fetch_blocking(
    mut fetcher: Fetcher,
    cid: Cid,
    follow: bool,
) -> Result<(Fetcher, Fetch, Vec<Cid>), String> {
    tokio::task::spawn_blocking(move || {
        let got = fetcher.fetch(&cid);
        let linked = match (&got, follow) {
            (Fetch::Found(data), true) => links(&cid, data)?,
            _ => Vec::new(),
        };
        Ok((fetcher, got, linked))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// What the CAR walk may do.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CarLimits {
    pub(crate) max_blocks: u64,
    pub(crate) max_depth: usize,
}

/// `iroh-car`'s output: a buffer the stream drains after each block.
#[derive(Clone, Default)]
struct FrameBuf(Arc<StdMutex<Vec<u8>>>);

impl FrameBuf {
    fn take(&self) -> Bytes {
        Bytes::from(std::mem::take(
            &mut *self.0.lock().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

impl tokio::io::AsyncWrite for FrameBuf {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The CAR walk, on its own task: the header, the root, then (when `follow`) the DAG depth first.
#[allow(clippy::too_many_arguments)]
fn car_body(
    root: Cid,
    root_data: Bytes,
    root_links: Vec<Cid>,
    follow: bool,
    dups: bool,
    fetcher: Fetcher,
    limits: CarLimits,
    stall: Duration,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(QUEUED_CHUNKS);
    tokio::spawn(async move {
        let out = FrameBuf::default();
        let mut car = CarWriter::new(CarHeader::new_v1(vec![root]), out.clone());
        let fail = |why: String| {
            tracing::warn!(%root, %why, "a gateway CAR stream stopped");
            Err(io::Error::other(why))
        };
        if let Err(e) = car.write_header().await {
            let _ = send(&tx, fail(e.to_string()), stall).await;
            return;
        }
        let mut emitted = 0u64;
        if root.hash().code() != IDENTITY {
            if let Err(e) = car.write(root, &root_data).await {
                let _ = send(&tx, fail(e.to_string()), stall).await;
                return;
            }
            emitted = 1;
        }
        if !send(&tx, Ok(out.take()), stall).await {
            return;
        }
        if !follow {
            return;
        }
        let mut seen: HashSet<Cid> = HashSet::new();
        seen.insert(root);
        let mut pending = root_links.len() as u64;
        let mut stack = vec![root_links.into_iter()];
        let mut fetcher = Some(fetcher);
        while let Some(top) = stack.last_mut() {
            let Some(child) = top.next() else {
                stack.pop();
                continue;
            };
            pending = pending.saturating_sub(1);
            if !dups && seen.contains(&child) {
                continue;
            }
            let Some(f) = fetcher.take() else { return };
            let (f, got, linked) = match fetch_blocking(f, child, true).await {
                Ok(x) => x,
                Err(why) => {
                    let _ = send(&tx, fail(why), stall).await;
                    return;
                }
            };
            fetcher = Some(f);
            let data = match got {
                Fetch::Found(d) => d,
                Fetch::Missing => {
                    let _ = send(
                        &tx,
                        fail(format!(
                            "block {child} of the DAG is not held by this provider"
                        )),
                        stall,
                    )
                    .await;
                    return;
                }
                Fetch::Failed(why) => {
                    let _ = send(&tx, fail(why), stall).await;
                    return;
                }
            };
            if !dups {
                seen.insert(child);
            }
            pending = pending.saturating_add(linked.len() as u64);
            if child.hash().code() != IDENTITY {
                emitted = emitted.saturating_add(1);
            }
            if emitted.saturating_add(pending) > limits.max_blocks {
                let why = format!(
                    "the DAG has more than {} blocks, the most one CAR from this gateway holds",
                    limits.max_blocks
                );
                let _ = send(&tx, fail(why), stall).await;
                return;
            }
            if !linked.is_empty() {
                if stack.len() >= limits.max_depth {
                    let why = format!(
                        "the DAG is deeper than {} links, the deepest this gateway walks",
                        limits.max_depth
                    );
                    let _ = send(&tx, fail(why), stall).await;
                    return;
                }
                stack.push(linked.into_iter());
            }
            if child.hash().code() == IDENTITY {
                continue;
            }
            if let Err(e) = car.write(child, &data).await {
                let _ = send(&tx, fail(e.to_string()), stall).await;
                return;
            }
            if !send(&tx, Ok(out.take()), stall).await {
                return;
            }
        }
    });
    Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|list| {
            list.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag))
        })
}

/// `GET|HEAD /ipfs/<cid>/<path>`: content paths are not served.
pub(crate) async fn ipfs_path(Path((cid, _path)): Path<(String, String)>) -> Response {
    text(
        StatusCode::BAD_REQUEST,
        format!(
            "content paths are not served by this gateway: request the CID of the block itself \
             (/ipfs/{cid} names the root of the DAG)"
        ),
    )
}

/// `GET|HEAD /ipfs/<cid>`.
pub(crate) async fn ipfs(
    State(shared): State<Shared>,
    Path(cid_text): Path<String>,
    RawQuery(raw_query): RawQuery,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let cid = match parse_cid(&cid_text) {
        Ok(c) => c,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let query: Vec<(String, String)> = raw_query
        .as_deref()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let accept = headers
        .contains_key(header::ACCEPT)
        .then_some(accept.as_str());
    let wanted = match negotiate(accept, &query) {
        Ok(w) => w,
        Err((status, why)) => return text(status, why),
    };
    let Some(index) = shared.blocks.clone() else {
        return text(
            StatusCode::NOT_IMPLEMENTED,
            "this provider serves whole pieces only (/piece/<piece CID>): it keeps no block index",
        );
    };
    let format_given = query.iter().any(|(k, _)| k == "format");
    let (etag, content_type, filename, location) = match wanted {
        Wanted::Raw => (
            format!("\"{cid}.raw\""),
            RAW_TYPE.to_string(),
            format!("{cid}.bin"),
            format!("/ipfs/{cid}?format=raw"),
        ),
        Wanted::Car { scope, dups } => {
            let d = if dups { "y" } else { "n" };
            (
                format!("\"{cid}.car.{}.dfs.{d}\"", scope.name()),
                format!("{CAR_TYPE}; version=1; order=dfs; dups={d}"),
                format!("{cid}.car"),
                format!(
                    "/ipfs/{cid}?format=car&dag-scope={}&car-dups={d}",
                    scope.name()
                ),
            )
        }
    };
    let mut h = HeaderMap::new();
    h.insert(header::ETAG, header_value(&etag));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    h.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        HeaderName::from_static("x-ipfs-path"),
        header_value(&format!("/ipfs/{cid}")),
    );
    if !format_given {
        h.insert(header::CONTENT_LOCATION, header_value(&location));
    }
    if etag_matches(&headers, &etag) {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        *r.headers_mut() = h;
        return r;
    }
    h.insert(header::CONTENT_TYPE, header_value(&content_type));
    h.insert(
        header::CONTENT_DISPOSITION,
        header_value(&format!("attachment; filename=\"{filename}\"")),
    );

    let follow_root = matches!(wanted, Wanted::Car { scope, .. } if scope != DagScope::Block);
    let fetcher = Fetcher::new(index, shared.pieces.clone());
    let (fetcher, got, root_links) = match fetch_blocking(fetcher, cid, follow_root).await {
        Ok(x) => x,
        Err(why) => {
            tracing::warn!(%cid, %why, "a gateway request failed");
            return text(StatusCode::INTERNAL_SERVER_ERROR, why);
        }
    };
    let data = match got {
        Fetch::Found(d) => d,
        Fetch::Missing => {
            let only_cached = headers
                .get_all(header::CACHE_CONTROL)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.to_ascii_lowercase().contains("only-if-cached"));
            let status = if only_cached {
                StatusCode::PRECONDITION_FAILED
            } else {
                StatusCode::NOT_FOUND
            };
            return text(status, format!("this provider does not hold block {cid}"));
        }
        Fetch::Failed(why) => {
            tracing::warn!(%cid, %why, "a gateway block could not be served");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("block {cid} cannot be served: {why}"),
            );
        }
    };
    let head = method == Method::HEAD;
    let body = match wanted {
        Wanted::Raw => {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(data.len()));
            if head {
                Body::empty()
            } else {
                Body::from(data)
            }
        }
        Wanted::Car { scope, dups } => {
            if head {
                // No length: a GET streams the CAR (chunked); so does this empty HEAD.
                Body::from_stream(futures::stream::empty::<io::Result<Bytes>>())
            } else {
                let follow = match scope {
                    DagScope::Block => false,
                    DagScope::All => true,
                    DagScope::Entity => is_unixfs_file(&cid, &data),
                };
                car_body(
                    cid,
                    data,
                    if follow { root_links } else { Vec::new() },
                    follow,
                    dups,
                    fetcher,
                    shared.car_limits,
                    shared.stall_timeout,
                )
            }
        }
    };
    let mut r = Response::new(body);
    *r.headers_mut() = h;
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn car(scope: DagScope, dups: bool) -> Result<Wanted, Refusal> {
        Ok(Wanted::Car { scope, dups })
    }

    fn status(r: Result<Wanted, Refusal>) -> Option<u16> {
        r.err().map(|(s, _)| s.as_u16())
    }

    #[test]
    fn negotiation_follows_accept_and_format() {
        assert_eq!(negotiate(Some(RAW_TYPE), &[]), Ok(Wanted::Raw));
        assert_eq!(negotiate(None, &q(&[("format", "raw")])), Ok(Wanted::Raw));
        assert_eq!(negotiate(Some(CAR_TYPE), &[]), car(DagScope::All, false));
        assert_eq!(
            negotiate(
                Some("application/vnd.ipld.car; version=1; order=dfs; dups=y"),
                &q(&[("dag-scope", "entity")])
            ),
            car(DagScope::Entity, true)
        );
        // format wins over Accept; car-dups over the Accept parameter.
        assert_eq!(
            negotiate(
                Some(RAW_TYPE),
                &q(&[("format", "car"), ("dag-scope", "block")])
            ),
            car(DagScope::Block, false)
        );
        assert_eq!(
            negotiate(
                Some("application/vnd.ipld.car;dups=y"),
                &q(&[("car-dups", "n")])
            ),
            car(DagScope::All, false)
        );
        // Quality order; a refused variant falls through to the next acceptable type.
        assert_eq!(
            negotiate(
                Some("application/vnd.ipld.raw;q=0.5, application/vnd.ipld.car"),
                &[]
            ),
            car(DagScope::All, false)
        );
        assert_eq!(
            negotiate(
                Some("application/vnd.ipld.car;version=2, application/vnd.ipld.raw;q=0.1"),
                &[]
            ),
            Ok(Wanted::Raw)
        );
        assert_eq!(
            negotiate(Some("application/vnd.ipld.raw;q=0"), &[])
                .err()
                .map(|e| e.0),
            Some(StatusCode::NOT_ACCEPTABLE)
        );
        // Nothing asked: 400; nothing acceptable: 406; bad parameters: 400 or 406.
        assert_eq!(status(negotiate(None, &[])), Some(400));
        assert_eq!(status(negotiate(Some(""), &[])), Some(400));
        assert_eq!(status(negotiate(Some("*/*"), &[])), Some(406));
        assert_eq!(status(negotiate(Some("text/html"), &[])), Some(406));
        assert_eq!(
            status(negotiate(Some("application/vnd.ipld.car;version=2"), &[])),
            Some(406)
        );
        assert_eq!(
            status(negotiate(
                None,
                &q(&[("format", "car"), ("car-order", "foo")])
            )),
            Some(406)
        );
        assert_eq!(status(negotiate(None, &q(&[("format", "tar")]))), Some(400));
        assert_eq!(
            status(negotiate(
                None,
                &q(&[("format", "car"), ("dag-scope", "x")])
            )),
            Some(400)
        );
        assert_eq!(
            status(negotiate(
                None,
                &q(&[("format", "car"), ("entity-bytes", "0:*")])
            )),
            Some(400)
        );
        assert_eq!(status(negotiate(Some("garbage;;;,"), &[])), Some(406));
    }

    #[test]
    fn links_of_dag_pb_and_dag_cbor_blocks() {
        let leaf = crate::cid::block_cid(RAW_CODEC, b"leaf");
        let node = PbNode {
            links: vec![ipld_dagpb::PbLink {
                cid: leaf,
                name: Some("x".into()),
                size: Some(4),
            }],
            data: None,
        }
        .into_bytes();
        let pb = crate::cid::block_cid(DAG_PB_CODEC, &node);
        assert_eq!(links(&pb, &Bytes::from(node)).unwrap(), vec![leaf]);
        let cbor = serde_ipld_dagcbor::to_vec(&ipld_core::ipld::Ipld::List(vec![
            ipld_core::ipld::Ipld::Link(leaf),
            ipld_core::ipld::Ipld::Integer(3),
            ipld_core::ipld::Ipld::Link(pb),
        ]))
        .unwrap();
        let cb = crate::cid::block_cid(DAG_CBOR_CODEC, &cbor);
        assert_eq!(links(&cb, &Bytes::from(cbor)).unwrap(), vec![leaf, pb]);
        assert!(links(&pb, &Bytes::from_static(b"\xff\xff")).is_err());
        assert!(
            links(&leaf, &Bytes::from_static(b"anything"))
                .unwrap()
                .is_empty()
        );
        assert!(is_unixfs_file(&leaf, &Bytes::from_static(b"leaf")));
    }
}
