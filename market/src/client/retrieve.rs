//! Retrieval of a whole piece from a provider's HTTP server, as `lode client retrieve` does:
//! `GET <base>/piece/<piece CID>` streamed to a temporary file beside the output, the CommP of
//! what arrived (zero-filled to the piece's size, SPEC §3.2) checked against the piece CID,
//! then the payload written: a CAR of a UnixFS import unpacked to the files and directories it
//! was made from (every block's hash checked, [`crate::car::unpack_car`]), or the CAR itself
//! (`as_car`), or the bytes as they are when the payload is not a CAR.
//!
//! **Nothing is written at the output unless everything checked out**: the download is a
//! temporary file removed on any failure, unpacking builds under a temporary name and renames
//! when complete, and an output that exists is refused before anything is fetched.
//!
//! Without the piece size (retrieval by piece CID alone), the commitment of the payload's own
//! piece is folded up with zero subtrees, one size after another, until it matches: a CommP
//! binds its tree's height, so a match at any size proves the bytes.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cid::Cid;
use futures::StreamExt;
use lode_proofs::cid::PieceCid;
use lode_proofs::piece::{PaddedPieceSize, PieceCommitment};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::records::{ClientDealState, ClientDealStore};
use crate::car::{looks_like_car, unpack_car};
use crate::error::{MarketError, MarketResult, io_at};
use crate::import::ImportStore;
use crate::transfer::commp::{commp_in_piece, commp_of_file};
use crate::unixfs::UnpackLimits;

/// The largest piece a retrieval accepts when the piece size is not known (64 GiB, the largest
/// sector).
pub const MAX_PIECE_SIZE: u64 = 64 << 30;

/// What to fetch, and where to write it.
#[derive(Clone, Debug)]
pub struct RetrieveRequest {
    /// The retrieval server's base URL (`http://host:port`).
    pub base_url: String,
    /// The piece.
    pub piece_cid: PieceCid,
    /// Its padded size, when known (a deal's); else found from the data (at most
    /// [`MAX_PIECE_SIZE`]).
    pub piece_size: Option<u64>,
    /// The payload's length, when known: a longer answer (the piece's zero padding) is cut to
    /// it, a shorter one refused.
    pub payload_size: Option<u64>,
    /// The payload root to unpack from (else the CAR header's only root).
    pub payload_root: Option<Cid>,
    /// Where to write (must not exist).
    pub out: PathBuf,
    /// Write the CAR itself instead of unpacking it.
    pub as_car: bool,
    /// Bounds on what unpacking may write.
    pub limits: UnpackLimits,
    /// The download fails when no byte arrives for this long.
    pub stall_timeout: Duration,
}

impl RetrieveRequest {
    /// A request for `piece_cid` from `base_url` into `out`, nothing else known.
    pub fn new(base_url: impl Into<String>, piece_cid: PieceCid, out: impl Into<PathBuf>) -> Self {
        RetrieveRequest {
            base_url: base_url.into(),
            piece_cid,
            piece_size: None,
            payload_size: None,
            payload_root: None,
            out: out.into(),
            as_car: false,
            limits: UnpackLimits::default(),
            stall_timeout: Duration::from_secs(60),
        }
    }
}

/// What was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RetrievedOutput {
    /// The CAR's UnixFS DAG unpacked.
    Unpacked {
        /// The root unpacked (`None`: the CAR header's only root).
        root: Option<String>,
        /// Whether it is a directory.
        is_directory: bool,
        /// Files written.
        files: u64,
        /// Directories created.
        directories: u64,
        /// File bytes written.
        bytes: u64,
    },
    /// The CAR written as it is.
    Car,
    /// The payload written as it is (not a CAR).
    Raw,
}

/// A finished retrieval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Retrieved {
    /// The piece CID.
    pub piece_cid: String,
    /// The piece's padded size (the one its commitment matched).
    pub piece_size: u64,
    /// The payload's bytes.
    pub payload_size: u64,
    /// Where it was written.
    pub out: PathBuf,
    /// How.
    pub output: RetrievedOutput,
}

/// Removes a temporary file when dropped, unless kept.
struct TmpFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        if !self.keep {
            // Best effort: a leftover `.tmp` file is all a failure here leaves.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Fetches, checks and writes a piece (see the module's documentation); `progress` gets the
/// bytes received and the length the server announced.
///
/// # Errors
/// [`MarketError::OutputExists`]; [`MarketError::Retrieval`] for an answer that is not the
/// piece (a status other than 200, a body longer than the piece, a stalled or cut download, data
/// whose commitment does not match); what checking and unpacking a CAR return.
pub async fn retrieve(
    req: &RetrieveRequest,
    progress: &mut (dyn FnMut(u64, Option<u64>) + Send),
) -> MarketResult<Retrieved> {
    if fs::symlink_metadata(&req.out).is_ok() {
        return Err(MarketError::OutputExists(req.out.clone()));
    }
    let max_payload = match req.piece_size {
        Some(s) => PaddedPieceSize::new(s)?.unpadded(),
        None => PaddedPieceSize::new(MAX_PIECE_SIZE)?.unpadded(),
    };
    let url = format!(
        "{}/piece/{}",
        req.base_url.trim_end_matches('/'),
        req.piece_cid
    );
    let tmp = TmpFile {
        path: lode_proofs::durable::tmp_path(&req.out),
        keep: false,
    };
    let got = download(&url, &tmp.path, max_payload, req.stall_timeout, progress).await?;

    let path = tmp.path.clone();
    let piece_cid = req.piece_cid;
    let piece_size = req.piece_size;
    let payload_size = req.payload_size;
    let url_for_check = url.clone();
    let matched = tokio::task::spawn_blocking(move || {
        check_piece(
            &path,
            got,
            &piece_cid,
            piece_size,
            payload_size,
            &url_for_check,
        )
    })
    .await
    .map_err(|e| MarketError::Retrieval(e.to_string()))??;
    let payload = payload_size.unwrap_or(got);

    let out = req.out.clone();
    let root = req.payload_root;
    let as_car = req.as_car;
    let limits = req.limits;
    let path = tmp.path.clone();
    let output =
        tokio::task::spawn_blocking(move || write_output(&path, &out, root, as_car, &limits))
            .await
            .map_err(|e| MarketError::Retrieval(e.to_string()))??;
    drop(tmp);
    Ok(Retrieved {
        piece_cid: req.piece_cid.to_string(),
        piece_size: matched,
        payload_size: payload,
        out: req.out.clone(),
        output,
    })
}

/// Streams `url` into `path`; the bytes received.
async fn download(
    url: &str,
    path: &Path,
    max: u64,
    stall: Duration,
    progress: &mut (dyn FnMut(u64, Option<u64>) + Send),
) -> MarketResult<u64> {
    let fail = |why: String| MarketError::Retrieval(format!("GET {url}: {why}"));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let response = tokio::time::timeout(stall, client.get(url).send())
        .await
        .map_err(|_| fail(format!("no answer in {} s", stall.as_secs())))?
        .map_err(|e| fail(e.to_string()))?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(fail(
            "404: the provider does not hold this piece (is the deal active? `lode client deals`)"
                .into(),
        ));
    }
    if status != reqwest::StatusCode::OK {
        let body = tokio::time::timeout(Duration::from_secs(5), response.text())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let body: String = body.trim().chars().take(300).collect();
        return Err(fail(format!("{status}: {body}")));
    }
    let announced = response.content_length();
    if let Some(len) = announced
        && len > max
    {
        return Err(fail(format!(
            "the server announces {len} bytes, more than the piece can hold ({max})"
        )));
    }
    let mut file = tokio::fs::File::create(path).await.map_err(io_at(path))?;
    let mut stream = response.bytes_stream();
    let mut got: u64 = 0;
    loop {
        let next = tokio::time::timeout(stall, stream.next())
            .await
            .map_err(|_| {
                fail(format!(
                    "no data for {} s after {got} bytes",
                    stall.as_secs()
                ))
            })?;
        let Some(chunk) = next else { break };
        let chunk =
            chunk.map_err(|e| fail(format!("the download broke after {got} bytes: {e}")))?;
        got = got.saturating_add(chunk.len() as u64);
        if got > max {
            return Err(fail(format!(
                "the server sent more than the piece can hold ({max} bytes)"
            )));
        }
        file.write_all(&chunk).await.map_err(io_at(path))?;
        progress(got, announced);
    }
    if let Some(len) = announced
        && got != len
    {
        return Err(fail(format!("the body ended after {got} of {len} bytes")));
    }
    file.sync_all().await.map_err(io_at(path))?;
    Ok(got)
}

/// Checks that the `got` bytes in `path` are piece `piece_cid` (of `piece_size` when known) and
/// cuts them to `payload_size` when known; the piece size that matched.
fn check_piece(
    path: &Path,
    got: u64,
    piece_cid: &PieceCid,
    piece_size: Option<u64>,
    payload_size: Option<u64>,
    url: &str,
) -> MarketResult<u64> {
    if got == 0 {
        return Err(MarketError::Retrieval(format!(
            "GET {url}: the server sent no data"
        )));
    }
    if let Some(p) = payload_size
        && got < p
    {
        return Err(MarketError::Retrieval(format!(
            "GET {url}: the server sent {got} bytes; the payload is {p}"
        )));
    }
    let c = commp_of_file(path, got)?;
    let matched = match piece_size {
        Some(s) => {
            let piece = PaddedPieceSize::new(s)?;
            (commp_in_piece(&c, piece) == Some(piece_cid.comm_p())).then_some(s)
        }
        None => size_matching(&c, piece_cid),
    };
    let Some(matched) = matched else {
        return Err(MarketError::Retrieval(format!(
            "the data from {url} does not match piece {piece_cid}: its own piece commitment is {} ({} bytes); nothing was written",
            PieceCid::new(c.comm_p).map_or_else(|| hex::encode(c.comm_p.0), |p| p.to_string()),
            c.padded_size
        )));
    };
    if let Some(p) = payload_size
        && got > p
    {
        // The rest is the piece's zero padding (the commitment binds it): cut it off.
        let file = fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_at(path))?;
        file.set_len(p).map_err(io_at(path))?;
        file.sync_all().map_err(io_at(path))?;
    }
    Ok(matched)
}

/// The piece size, from the payload's own up to [`MAX_PIECE_SIZE`], whose commitment is
/// `piece_cid`'s.
fn size_matching(c: &PieceCommitment, piece_cid: &PieceCid) -> Option<u64> {
    let mut size = c.padded_size.bytes();
    while size <= MAX_PIECE_SIZE {
        let piece = PaddedPieceSize::new(size).ok()?;
        if commp_in_piece(c, piece) == Some(piece_cid.comm_p()) {
            return Some(size);
        }
        size = size.checked_mul(2)?;
    }
    None
}

fn write_output(
    tmp: &Path,
    out: &Path,
    root: Option<Cid>,
    as_car: bool,
    limits: &UnpackLimits,
) -> MarketResult<RetrievedOutput> {
    if !as_car && looks_like_car(tmp)? {
        let unpacked = unpack_car(tmp, root.as_ref(), out, limits, &mut |_| {})?;
        return Ok(RetrievedOutput::Unpacked {
            root: root.map(|r| r.to_string()),
            is_directory: unpacked.is_directory,
            files: unpacked.files,
            directories: unpacked.directories,
            bytes: unpacked.bytes,
        });
    }
    if fs::symlink_metadata(out).is_ok() {
        return Err(MarketError::OutputExists(out.to_path_buf()));
    }
    lode_proofs::durable::rename_durable(tmp, out)?;
    Ok(if as_car {
        RetrievedOutput::Car
    } else {
        RetrievedOutput::Raw
    })
}

/// What the client knows locally about a CID it wants back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrievalTarget {
    /// The piece.
    pub piece_cid: PieceCid,
    /// Its padded size, when known.
    pub piece_size: Option<u64>,
    /// The payload's length, when known.
    pub payload_size: Option<u64>,
    /// The payload root, when known.
    pub payload_root: Option<Cid>,
    /// Providers that hold it by the client's deal records: active deals first, then sealing and
    /// published ones.
    pub providers: Vec<lode_chain::types::ActorId>,
}

impl RetrievalTarget {
    /// Resolves `cid` (a piece CID or a payload root) through the client's deal records, then its
    /// imports; a piece CID unknown to both is still a target (its size found from the data).
    ///
    /// # Errors
    /// [`MarketError::WrongCid`] for a payload root the client has no record of (only a piece
    /// CID can be fetched without one); what the stores return.
    pub fn resolve(
        deals: &ClientDealStore,
        imports: Option<&ImportStore>,
        cid: &Cid,
    ) -> MarketResult<RetrievalTarget> {
        let found = deals.find(cid)?;
        if let Some(first) = found.first() {
            let rank = |s: ClientDealState| match s {
                ClientDealState::Active => 0,
                ClientDealState::Sealing | ClientDealState::Published => 1,
                _ => 2,
            };
            let mut holders: Vec<_> = found
                .iter()
                .filter(|d| rank(d.state) < 2)
                .map(|d| (rank(d.state), d.provider))
                .collect();
            holders.sort_by_key(|(r, _)| *r);
            let mut providers = Vec::new();
            for (_, p) in holders {
                if !providers.contains(&p) {
                    providers.push(p);
                }
            }
            return Ok(RetrievalTarget {
                piece_cid: first.piece_cid,
                piece_size: Some(first.piece_size),
                payload_size: Some(first.payload_size),
                payload_root: first.payload_root,
                providers,
            });
        }
        if let Some(store) = imports
            && let Ok(record) = store.resolve(&cid.to_string())
        {
            return Ok(RetrievalTarget {
                piece_cid: record.piece_cid,
                piece_size: Some(record.padded_piece_size),
                payload_size: Some(record.payload_size),
                payload_root: Some(record.payload_root),
                providers: Vec::new(),
            });
        }
        match crate::cid::cid_to_piece(cid) {
            Ok(piece_cid) => Ok(RetrievalTarget {
                piece_cid,
                piece_size: None,
                payload_size: None,
                payload_root: None,
                providers: Vec::new(),
            }),
            Err(_) => Err(MarketError::WrongCid(format!(
                "{cid} is neither a piece CID nor the payload root of one of your deals or imports: give the piece CID to retrieve it"
            ))),
        }
    }

    /// The request for this target from `base_url` into `out`.
    pub fn request(&self, base_url: impl Into<String>, out: impl Into<PathBuf>) -> RetrieveRequest {
        RetrieveRequest {
            piece_size: self.piece_size,
            payload_size: self.payload_size,
            payload_root: self.payload_root,
            ..RetrieveRequest::new(base_url, self.piece_cid, out)
        }
    }
}
