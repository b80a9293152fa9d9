//! Sector files between the machines of a cluster: every worker serves its sector directories
//! over HTTP, and a task that needs a sector's files from another worker fetches them.
//!
//! - `GET /sectors/{miner}/{number}/{file}` — the file, from the byte a `Range: bytes=N-` header
//!   names (`206 Partial Content`), so an interrupted fetch resumes where it stopped;
//!   `GET /sectors/{miner}/{number}/{file}/blake3` — its BLAKE3, hex;
//!   `DELETE /sectors/{miner}/{number}` — removes the sector's directory (once the provider has
//!   moved the finalized sector into its own store), under the sector's lock;
//!   `POST /vanilla/{miner}/{number}` with `{"randomness": hex, "challenges": n}` — the sector's
//!   vanilla PoSt proof for `n` (at most [`MAX_VANILLA_CHALLENGES`]) leaves drawn from the
//!   randomness, as `SectorProof` bytes: how a provider proves, and checks, a sector that lives on
//!   this worker ([`vanilla`]). The provider verifies every proof it gets against the chain's
//!   `comm_r` before using it.
//! - Every request carries `Authorization: Bearer <cluster secret>` (compared in constant time);
//!   only the sector files of [`SECTOR_FILES`] and `layer-<n>` are served, never a path.
//! - [`fetch`] writes `<file>.part` (appending after a resume), checks the whole file against the
//!   serving worker's BLAKE3, then fsyncs it and renames it into place: a file under its final
//!   name is complete and checked; a mismatch deletes the part and is an error.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use futures::StreamExt;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::error::{ProviderError, ProviderResult};
use crate::preseal::sector_path;
use lode_chain::types::ActorId;

/// The sector files a worker serves (besides `layer-<n>`).
pub const SECTOR_FILES: &[&str] = &[
    "sector.json",
    "pc1.json",
    "pc2.json",
    "commit1.json",
    "commit1.bin",
    "commit2.bin",
    "unsealed",
    "sealed",
    "tree-d",
    "tree-c",
    "tree-r",
    "columns",
];

/// Whether `name` is a sector file this server hands out.
pub fn servable(name: &str) -> bool {
    SECTOR_FILES.contains(&name)
        || name
            .strip_prefix("layer-")
            .is_some_and(|n| !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()))
}

struct Served {
    dir: PathBuf,
    secret: String,
}

/// The read-only routes (a file, its BLAKE3) serving the sector directories under `dir` to
/// holders of `secret`: what a provider serves of its sealing scratch, so that workers seal its
/// deal sectors from the data it packed (`[cluster] files_listen`).
pub fn read_only_router(dir: PathBuf, secret: String) -> Router {
    Router::new()
        .route("/sectors/{miner}/{number}/{file}", get(serve_file))
        .route("/sectors/{miner}/{number}/{file}/blake3", get(serve_hash))
        .with_state(Arc::new(Served { dir, secret }))
}

/// Serves `app` on `addr` in the background; returns the URL others reach it at: `url` when
/// given, else `http://` and the bound address (this machine's host name for an unspecified
/// one, such as `0.0.0.0:0`).
///
/// # Errors
/// [`ProviderError::Task`] when the address cannot be bound.
pub async fn serve(
    addr: std::net::SocketAddr,
    app: Router,
    url: Option<String>,
) -> ProviderResult<String> {
    let cannot = |e: std::io::Error| ProviderError::Task(format!("cannot listen on {addr}: {e}"));
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(cannot)?;
    let bound = listener.local_addr().map_err(cannot)?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the sector file server stopped");
        }
    });
    Ok(url.unwrap_or_else(|| {
        if bound.ip().is_unspecified() {
            format!("http://{}:{}", crate::worker::hostname(), bound.port())
        } else {
            format!("http://{bound}")
        }
    }))
}

/// The routes serving the sector directories under `dir` to holders of `secret`.
pub fn router(dir: PathBuf, secret: String) -> Router {
    Router::new()
        .route("/sectors/{miner}/{number}/{file}", get(serve_file))
        .route("/sectors/{miner}/{number}/{file}/blake3", get(serve_hash))
        .route("/sectors/{miner}/{number}", delete(remove_sector))
        .route("/vanilla/{miner}/{number}", post(serve_vanilla))
        .with_state(Arc::new(Served { dir, secret }))
}

fn authorised(served: &Served, headers: &HeaderMap) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    !served.secret.is_empty() && bool::from(given.as_bytes().ct_eq(served.secret.as_bytes()))
}

/// The refusal of a request without the cluster secret (`None` when it carries it).
fn unauthorised(served: &Served, headers: &HeaderMap) -> Option<Response> {
    (!authorised(served, headers)).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            "a valid cluster secret is required\n",
        )
            .into_response()
    })
}

/// The file a request names, or the status and message refusing it.
fn requested(
    served: &Served,
    headers: &HeaderMap,
    miner: u64,
    number: u64,
    file: &str,
) -> Result<PathBuf, (StatusCode, &'static str)> {
    if !authorised(served, headers) {
        return Err((
            StatusCode::UNAUTHORIZED,
            "a valid cluster secret is required\n",
        ));
    }
    if !servable(file) {
        return Err((StatusCode::NOT_FOUND, "not a sector file\n"));
    }
    Ok(sector_path(&served.dir, ActorId(miner), number).join(file))
}

/// The first byte of `Range: bytes=N-` (0 without one); `None` for a range this server does not
/// serve (several ranges, or a suffix).
fn range_start(headers: &HeaderMap) -> Option<u64> {
    let Some(v) = headers.get(header::RANGE) else {
        return Some(0);
    };
    let spec = v.to_str().ok()?.strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    if !end.is_empty() || spec.contains(',') {
        return None;
    }
    start.parse().ok()
}

async fn serve_file(
    State(served): State<Arc<Served>>,
    UrlPath((miner, number, file)): UrlPath<(u64, u64, String)>,
    headers: HeaderMap,
) -> Response {
    let path = match requested(&served, &headers, miner, number, &file) {
        Ok(p) => p,
        Err(refused) => return refused.into_response(),
    };
    let Some(start) = range_start(&headers) else {
        return (
            StatusCode::RANGE_NOT_SATISFIABLE,
            "only `bytes=N-` ranges\n",
        )
            .into_response();
    };
    let mut f = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (StatusCode::NOT_FOUND, "no such file in this sector\n").into_response();
        }
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    };
    let len = match f.metadata().await {
        Ok(m) => m.len(),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    };
    if start > len {
        return (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{len}"))],
        )
            .into_response();
    }
    if let Err(e) = f.seek(std::io::SeekFrom::Start(start)).await {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response();
    }
    let rest = len.saturating_sub(start);
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(f.take(rest)));
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, rest.into());
    h.insert(
        header::ACCEPT_RANGES,
        header::HeaderValue::from_static("bytes"),
    );
    if headers.contains_key(header::RANGE) {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let last = len.saturating_sub(1);
        if let Ok(v) = format!("bytes {start}-{last}/{len}").parse() {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    response
}

async fn serve_hash(
    State(served): State<Arc<Served>>,
    UrlPath((miner, number, file)): UrlPath<(u64, u64, String)>,
    headers: HeaderMap,
) -> Response {
    let path = match requested(&served, &headers, miner, number, &file) {
        Ok(p) => p,
        Err(refused) => return refused.into_response(),
    };
    match tokio::task::spawn_blocking(move || file_blake3(&path)).await {
        Ok(Ok(hash)) => hash.into_response(),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            (StatusCode::NOT_FOUND, "no such file in this sector\n").into_response()
        }
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn remove_sector(
    State(served): State<Arc<Served>>,
    UrlPath((miner, number)): UrlPath<(u64, u64)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = unauthorised(&served, &headers) {
        return refused;
    }
    let path = sector_path(&served.dir, ActorId(miner), number);
    let removed = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
        let dir = match lode_sealing::sector_dir::SectorDir::open(&path) {
            Ok(d) => d,
            Err(_) if !path.exists() => return Ok(false),
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        };
        // No phase of this worker runs on it while it goes.
        let lock = dir
            .lock()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        std::fs::remove_dir_all(&path)?;
        drop(lock);
        if let Some(parent) = path.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(true)
    })
    .await;
    match removed {
        Ok(Ok(true)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Ok(false)) => (StatusCode::NOT_FOUND, "no such sector here\n").into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// The most leaves one vanilla proof request may ask for (a Winning PoSt's).
pub const MAX_VANILLA_CHALLENGES: usize = lode_proofs::post::WINNING_CHALLENGES;

/// What a provider asks a worker to prove of a sector it holds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VanillaRequest {
    /// The randomness the leaves are drawn from, hex (32 bytes).
    pub randomness: String,
    /// How many leaves.
    pub challenges: usize,
}

async fn serve_vanilla(
    State(served): State<Arc<Served>>,
    UrlPath((miner, number)): UrlPath<(u64, u64)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refused) = unauthorised(&served, &headers) {
        return refused;
    }
    let request: VanillaRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("the request: {e}\n")).into_response();
        }
    };
    let randomness = match hex::decode(&request.randomness)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
    {
        Some(r) => lode_proofs::node::Node(r),
        None => {
            return (StatusCode::BAD_REQUEST, "randomness: 32 bytes of hex\n").into_response();
        }
    };
    if request.challenges == 0 || request.challenges > MAX_VANILLA_CHALLENGES {
        return (
            StatusCode::BAD_REQUEST,
            format!("challenges: 1 to {MAX_VANILLA_CHALLENGES}\n"),
        )
            .into_response();
    }
    let path = sector_path(&served.dir, ActorId(miner), number);
    if !path.is_dir() {
        return (StatusCode::NOT_FOUND, "no such sector here\n").into_response();
    }
    let proved = tokio::task::spawn_blocking(move || {
        let sector = lode_sealing::post::SealedSector::open(&path)?;
        if sector.id.miner_id != miner || sector.id.sector_number != number {
            return Err(lode_sealing::error::SealError::Inconsistent(
                "the directory holds another sector",
            ));
        }
        lode_sealing::post::prove_sector(&sector, &randomness, request.challenges)
    })
    .await;
    match proved {
        Ok(Ok(proof)) => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            proof.to_bytes(),
        )
            .into_response(),
        Ok(Err(e)) => (StatusCode::UNPROCESSABLE_ENTITY, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// Asks the worker serving at `base` for the vanilla proof of sector `number` of `miner`,
/// `challenges` leaves drawn from `randomness` (the caller verifies it).
///
/// # Errors
/// [`ProviderError::Fetch`] when the worker cannot be reached, refuses, cannot prove the sector
/// (its reason), or answers bytes that do not decode.
pub async fn vanilla(
    client: &reqwest::Client,
    base: &str,
    secret: &str,
    miner: u64,
    number: u64,
    randomness: &lode_proofs::node::Node,
    challenges: usize,
) -> ProviderResult<lode_proofs::post::SectorProof> {
    let url = format!("{}/vanilla/{miner}/{number}", base.trim_end_matches('/'));
    let response = client
        .post(&url)
        .bearer_auth(secret)
        .header(header::CONTENT_TYPE.as_str(), "application/json")
        .body(
            serde_json::to_vec(&VanillaRequest {
                randomness: hex::encode(randomness.0),
                challenges,
            })
            .map_err(|e| fetch_err(&url, e))?,
        )
        .send()
        .await
        .map_err(|e| fetch_err(&url, e))?;
    let status = response.status().as_u16();
    // A proof of 66 openings of a 32 GiB sector is under 100 KiB.
    let body = read_bounded(response, 1 << 20)
        .await
        .map_err(|e| fetch_err(&url, e))?;
    match status {
        200 => lode_proofs::post::SectorProof::from_bytes(&body)
            .map_err(|e| fetch_err(&url, format!("the worker's proof does not decode: {e}"))),
        401 => Err(fetch_err(&url, "refused: the cluster secrets differ")),
        code => Err(fetch_err(
            &url,
            format!("HTTP {code}: {}", String::from_utf8_lossy(&body).trim_end()),
        )),
    }
}

/// A response's body, refused past `limit` bytes.
async fn read_bounded(response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(format!("the answer is over {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Asks the worker serving at `base` to remove its copy of sector `number` of `miner` (a copy
/// already gone is fine).
pub async fn remove(
    client: &reqwest::Client,
    base: &str,
    secret: &str,
    miner: u64,
    number: u64,
) -> ProviderResult<()> {
    let url = format!("{}/sectors/{miner}/{number}", base.trim_end_matches('/'));
    let response = client
        .delete(&url)
        .bearer_auth(secret)
        .send()
        .await
        .map_err(|e| fetch_err(&url, e))?;
    match response.status().as_u16() {
        200..=299 | 404 => Ok(()),
        401 => Err(fetch_err(&url, "refused: the cluster secrets differ")),
        code => Err(fetch_err(&url, format!("HTTP {code}"))),
    }
}

/// The BLAKE3 of a file, hex.
pub fn file_blake3(path: &Path) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    let mut f = std::fs::File::open(path)?;
    std::io::copy(&mut f, &mut hasher)?;
    Ok(hasher.finalize().to_hex().to_string())
}

fn fetch_err(what: &str, why: impl std::fmt::Display) -> ProviderError {
    ProviderError::Fetch(format!("{what}: {why}"))
}

/// Fetches `file` of sector `number` of `miner` from the worker serving at `base` into
/// `dest_dir`, resuming a `<file>.part` left there, checking its BLAKE3, and renaming it into
/// place. A file already under its final name is kept. Returns the bytes transferred.
pub async fn fetch(
    client: &reqwest::Client,
    base: &str,
    secret: &str,
    miner: u64,
    number: u64,
    file: &str,
    dest_dir: &Path,
) -> ProviderResult<u64> {
    let dest = dest_dir.join(file);
    if dest.is_file() {
        return Ok(0);
    }
    let url = format!(
        "{}/sectors/{miner}/{number}/{file}",
        base.trim_end_matches('/')
    );
    let part = dest_dir.join(format!("{file}.part"));
    let have = std::fs::metadata(&part).map_or(0, |m| m.len());
    let mut request = client.get(&url).bearer_auth(secret);
    if have > 0 {
        request = request.header(header::RANGE.as_str(), format!("bytes={have}-"));
    }
    let response = request.send().await.map_err(|e| fetch_err(&url, e))?;
    let status = response.status();
    let append = match status.as_u16() {
        206 => true,
        200 => false,
        // The part is already the whole file (a fetch stopped between its last byte and the check).
        416 if have > 0 => true,
        401 => {
            return Err(fetch_err(
                &url,
                "refused: the cluster secrets differ (check --secret-file on both workers)",
            ));
        }
        code => return Err(fetch_err(&url, format!("HTTP {code}"))),
    };
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(&part)
        .map_err(|e| fetch_err(&part.display().to_string(), e))?;
    let mut got = 0u64;
    if status.as_u16() != 416 {
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| fetch_err(&url, e))?;
            out.write_all(&chunk)
                .map_err(|e| fetch_err(&part.display().to_string(), e))?;
            got = got.saturating_add(chunk.len() as u64);
        }
    }
    out.sync_all()
        .map_err(|e| fetch_err(&part.display().to_string(), e))?;
    drop(out);
    let want = client
        .get(format!("{url}/blake3"))
        .bearer_auth(secret)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| fetch_err(&url, e))?
        .text()
        .await
        .map_err(|e| fetch_err(&url, e))?;
    let check = part.clone();
    let have_hash = tokio::task::spawn_blocking(move || file_blake3(&check))
        .await
        .map_err(|e| fetch_err(&url, e))?
        .map_err(|e| fetch_err(&part.display().to_string(), e))?;
    if have_hash != want.trim() {
        let _ = std::fs::remove_file(&part);
        return Err(fetch_err(
            &url,
            "the fetched file does not match the serving worker's checksum (deleted; it is fetched again on the next try)",
        ));
    }
    lode_proofs::durable::rename_durable(&part, &dest)
        .map_err(|e| fetch_err(&dest.display().to_string(), e))?;
    Ok(got)
}
