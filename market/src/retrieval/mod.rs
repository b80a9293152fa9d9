//! Retrieval over HTTP: the provider's `GET|HEAD /piece/<piece CID>`, and the trustless gateway
//! `GET|HEAD /ipfs/<cid>` (module `gateway`) over the [`BlockIndex`] of its CAR payloads.
//!
//! A piece is answered from a [`PieceSource`] (the provider's unsealed copies, unsealing on
//! demand, or the payloads it holds before sealing): the whole payload (`200`), one range
//! (`206` with `Content-Range`) or several (`206 multipart/byteranges`), `HEAD` with the same
//! headers and no body, a strong `ETag` (the piece CID: the content never changes) honoured by
//! `If-None-Match` (`304`) and `If-Range`, `Cache-Control: public, max-age=29030400, immutable`,
//! `404` for a piece this provider does not hold, `400` for a malformed CID and `416` for ranges
//! outside the payload.
//!
//! **Bounded resources.** [`serve`] reads request headers within [`RetrievalConfig::header_timeout`]
//! (a slow-loris client is dropped), holds at most [`RetrievalConfig::max_connections`]
//! connections (the next wait in the kernel's backlog), reads each body in chunks of
//! [`CHUNK`] through a channel of [`QUEUED_CHUNKS`] (memory per response is bounded whatever its
//! length) and drops a response whose client has not taken a chunk for
//! [`RetrievalConfig::stall_timeout`]. A request may name at most [`MAX_RANGES`] ranges and ask
//! for at most twice the payload's length in all.

mod gateway;
mod index;
mod server;
mod source;

use std::ops::RangeInclusive;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lode_proofs::cid::PieceCid;

pub use gateway::{CAR_TYPE, DAG_CBOR_CODEC, DagScope, RAW_TYPE};
pub use index::{BlockIndex, BlockLocation, IndexedPayload, MAX_LOCATIONS};
pub use server::{RetrievalConfig, RetrievalServer, serve, serve_with_index, serve_with_routes};
pub use source::{DirPieces, FileReader, PieceReader, PieceSource};

/// Bytes read from a piece per step of a response body.
pub const CHUNK: usize = 256 * 1024;
/// Chunks a response may have read ahead of its client.
pub const QUEUED_CHUNKS: usize = 4;
/// The most ranges one request may name.
pub const MAX_RANGES: usize = 64;
/// `Cache-Control` of content-addressed answers: they never change.
pub const IMMUTABLE: &str = "public, max-age=29030400, immutable";

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) pieces: Arc<dyn PieceSource>,
    pub(crate) stall_timeout: Duration,
    /// The block index of the trustless gateway (`/ipfs/`); `None`: the gateway answers `501`.
    pub(crate) blocks: Option<BlockIndex>,
    pub(crate) car_limits: gateway::CarLimits,
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut r = (status, format!("{}\n", msg.into())).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// `GET|HEAD /piece/<piece CID>`.
pub(crate) async fn piece(
    State(shared): State<Shared>,
    Path(cid): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let piece = match PieceCid::from_str(&cid) {
        Ok(p) => p,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("{cid:?} is not a piece CID: {e}"),
            );
        }
    };
    let pieces = shared.pieces.clone();
    let opened = tokio::task::spawn_blocking(move || pieces.open(&piece)).await;
    let reader = match opened {
        Ok(Ok(Some(r))) => r,
        Ok(Ok(None)) => {
            return text(
                StatusCode::NOT_FOUND,
                format!("this provider does not hold piece {piece}"),
            );
        }
        Ok(Err(e)) => {
            tracing::warn!(%piece, error = %e, "a piece could not be opened for retrieval");
            return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let etag = format!("\"{piece}\"");
    let plan = plan(&headers, &etag, reader.len());
    respond(
        plan,
        reader,
        method == Method::HEAD,
        &etag,
        shared.stall_timeout,
    )
}

/// What a request for a payload of `len` bytes gets.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// `304`: the client has it.
    NotModified,
    /// `200`: all of it.
    Full,
    /// `206`: these ranges (one: a plain partial body; several: multipart).
    Ranges(Vec<RangeInclusive<u64>>),
    /// `416`: the ranges are outside the payload, too many, or too much in all.
    Unsatisfiable,
}

fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag))
}

/// Decides the answer from the request's conditional and range headers (RFC 9110 §13, §14).
pub(crate) fn plan(headers: &HeaderMap, etag: &str, len: u64) -> Plan {
    if let Some(v) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        && etag_matches(v, etag)
    {
        return Plan::NotModified;
    }
    let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Plan::Full;
    };
    // If-Range with another validator: the client's copy is stale, send everything.
    if let Some(v) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok())
        && v.trim() != etag
    {
        return Plan::Full;
    }
    let parsed = match http_range_header::parse_range_header(range) {
        Ok(p) => p,
        // A Range header that does not parse is ignored (RFC 9110 §14.2).
        Err(_) => return Plan::Full,
    };
    let Ok(ranges) = parsed.validate(len) else {
        return Plan::Unsatisfiable;
    };
    let total = ranges.iter().fold(0u64, |acc, r| {
        acc.saturating_add(r.end().saturating_sub(*r.start()).saturating_add(1))
    });
    if ranges.is_empty() || ranges.len() > MAX_RANGES || total > len.saturating_mul(2) {
        return Plan::Unsatisfiable;
    }
    Plan::Ranges(ranges)
}

fn base_headers(h: &mut HeaderMap, etag: &str) {
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
}

fn header_value(s: String) -> HeaderValue {
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// One part of a body: literal bytes, or a range of the payload.
#[derive(Clone, Debug)]
enum Part {
    Literal(Bytes),
    Payload(RangeInclusive<u64>),
}

fn part_len(p: &Part) -> u64 {
    match p {
        Part::Literal(b) => b.len() as u64,
        Part::Payload(r) => r.end().saturating_sub(*r.start()).saturating_add(1),
    }
}

fn respond(
    plan: Plan,
    reader: Box<dyn PieceReader>,
    head: bool,
    etag: &str,
    stall: Duration,
) -> Response {
    let len = reader.len();
    let mut headers = HeaderMap::new();
    base_headers(&mut headers, etag);
    let octets = HeaderValue::from_static("application/octet-stream");
    let (status, parts) = match plan {
        Plan::NotModified => {
            let mut r = StatusCode::NOT_MODIFIED.into_response();
            r.headers_mut().extend(headers);
            return r;
        }
        Plan::Unsatisfiable => {
            let mut r = text(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the ranges asked for are outside the payload of {len} bytes, or too many"),
            );
            r.headers_mut().extend(headers);
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                header_value(format!("bytes */{len}")),
            );
            return r;
        }
        Plan::Full => {
            headers.insert(header::CONTENT_TYPE, octets);
            let parts = if len == 0 {
                Vec::new()
            } else {
                vec![Part::Payload(0..=len.saturating_sub(1))]
            };
            (StatusCode::OK, parts)
        }
        Plan::Ranges(ranges) => match ranges.as_slice() {
            [one] => {
                headers.insert(header::CONTENT_TYPE, octets);
                headers.insert(
                    header::CONTENT_RANGE,
                    header_value(format!("bytes {}-{}/{len}", one.start(), one.end())),
                );
                (
                    StatusCode::PARTIAL_CONTENT,
                    vec![Part::Payload(one.clone())],
                )
            }
            many => {
                let boundary = boundary();
                headers.insert(
                    header::CONTENT_TYPE,
                    header_value(format!("multipart/byteranges; boundary={boundary}")),
                );
                let mut parts = Vec::with_capacity(many.len().saturating_mul(2).saturating_add(1));
                for r in many {
                    parts.push(Part::Literal(Bytes::from(format!(
                        "\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {}-{}/{len}\r\n\r\n",
                        r.start(),
                        r.end()
                    ))));
                    parts.push(Part::Payload(r.clone()));
                }
                parts.push(Part::Literal(Bytes::from(format!(
                    "\r\n--{boundary}--\r\n"
                ))));
                (StatusCode::PARTIAL_CONTENT, parts)
            }
        },
    };
    let length = parts
        .iter()
        .fold(0u64, |a, p| a.saturating_add(part_len(p)));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    let body = if head || length == 0 {
        Body::empty()
    } else {
        stream_parts(parts, reader, stall)
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// A multipart boundary unlikely to occur in any payload.
fn boundary() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // Without randomness, a time-derived boundary is still unique enough per response.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = t.to_le_bytes();
    }
    format!("lode-{}", hex::encode(b))
}

/// The body: literal parts as they are, payload ranges read [`CHUNK`] at a time on the blocking
/// pool, at most [`QUEUED_CHUNKS`] ahead of the client; dropped when the client takes nothing for
/// `stall`.
fn stream_parts(parts: Vec<Part>, reader: Box<dyn PieceReader>, stall: Duration) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(QUEUED_CHUNKS);
    tokio::spawn(async move {
        let mut reader = Some(reader);
        for part in parts {
            let range = match part {
                Part::Literal(b) => {
                    if !send(&tx, Ok(b), stall).await {
                        return;
                    }
                    continue;
                }
                Part::Payload(r) => r,
            };
            let mut at = *range.start();
            let end = range.end().saturating_add(1);
            while at < end {
                let want = usize::try_from(end.saturating_sub(at))
                    .unwrap_or(CHUNK)
                    .min(CHUNK);
                let Some(mut r) = reader.take() else { return };
                let read = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; want];
                    let mut filled = 0usize;
                    while filled < want {
                        let Some(rest) = buf.get_mut(filled..) else {
                            break;
                        };
                        match r.read_at(at.saturating_add(filled as u64), rest) {
                            Ok(0) => break,
                            Ok(n) => filled = filled.saturating_add(n),
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(e) => return (r, Err(e)),
                        }
                    }
                    buf.truncate(filled);
                    (r, Ok(buf))
                })
                .await;
                let (r, buf) = match read {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = send(&tx, Err(std::io::Error::other(e)), stall).await;
                        return;
                    }
                };
                reader = Some(r);
                let buf = match buf {
                    Ok(b) if b.len() == want => b,
                    Ok(b) => {
                        let e = std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!(
                                "the piece ended {} bytes early",
                                want.saturating_sub(b.len())
                            ),
                        );
                        tracing::warn!(error = %e, "a retrieval stopped");
                        let _ = send(&tx, Err(e), stall).await;
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "a retrieval could not read the piece");
                        let _ = send(&tx, Err(e), stall).await;
                        return;
                    }
                };
                at = at.saturating_add(buf.len() as u64);
                if !send(&tx, Ok(Bytes::from(buf)), stall).await {
                    return;
                }
            }
        }
    });
    Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Sends one item; `false` when the client went away or took nothing for `stall`.
async fn send(
    tx: &tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    item: std::io::Result<Bytes>,
    stall: Duration,
) -> bool {
    match tokio::time::timeout(stall, tx.send(item)).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            tracing::debug!(?stall, "a retrieval client stalled: response dropped");
            false
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn h(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn plans_follow_the_conditional_and_range_headers() {
        let e = "\"bafk\"";
        assert_eq!(plan(&h(&[]), e, 100), Plan::Full);
        assert_eq!(
            plan(&h(&[(header::IF_NONE_MATCH, e)]), e, 100),
            Plan::NotModified
        );
        assert_eq!(
            plan(&h(&[(header::IF_NONE_MATCH, "\"x\", *")]), e, 100),
            Plan::NotModified
        );
        assert_eq!(
            plan(&h(&[(header::IF_NONE_MATCH, "\"x\"")]), e, 100),
            Plan::Full
        );
        assert_eq!(
            plan(&h(&[(header::RANGE, "bytes=0-9")]), e, 100),
            Plan::Ranges(vec![0..=9])
        );
        assert_eq!(
            plan(&h(&[(header::RANGE, "bytes=-10")]), e, 100),
            Plan::Ranges(vec![90..=99])
        );
        assert_eq!(
            plan(&h(&[(header::RANGE, "bytes=95-")]), e, 100),
            Plan::Ranges(vec![95..=99])
        );
        assert_eq!(
            plan(&h(&[(header::RANGE, "bytes=0-0,50-59")]), e, 100),
            Plan::Ranges(vec![0..=0, 50..=59])
        );
        // Outside the payload: 416; a Range header that does not parse is ignored.
        assert_eq!(
            plan(&h(&[(header::RANGE, "bytes=100-")]), e, 100),
            Plan::Unsatisfiable
        );
        assert_eq!(
            plan(&h(&[(header::RANGE, "bytes=0-0")]), e, 0),
            Plan::Unsatisfiable
        );
        assert_eq!(
            plan(&h(&[(header::RANGE, "pages=1-2")]), e, 100),
            Plan::Full
        );
        // If-Range with a stale validator: everything.
        assert_eq!(
            plan(
                &h(&[(header::RANGE, "bytes=0-9"), (header::IF_RANGE, "\"old\"")]),
                e,
                100
            ),
            Plan::Full
        );
        assert_eq!(
            plan(
                &h(&[(header::RANGE, "bytes=0-9"), (header::IF_RANGE, e)]),
                e,
                100
            ),
            Plan::Ranges(vec![0..=9])
        );
        // Too many ranges, or asking for the payload many times over.
        let many = (0..=MAX_RANGES)
            .map(|i| format!("{i}-{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            plan(&h(&[(header::RANGE, &format!("bytes={many}"))]), e, 1000),
            Plan::Unsatisfiable
        );
    }
}
