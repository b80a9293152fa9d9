//! The libp2p push transfer (`/lode/transfer/1`), for clients that cannot serve HTTP.
//!
//! The client sends the payload in order as [`PushRequest`]s of at most [`MAX_PUSH_CHUNK`]
//! bytes, each answered by [`PushResponse::Have`]: how many bytes the provider holds. A request
//! with no data asks only that, so a client that lost its connection (or whose provider
//! restarted) resumes from there. The provider takes a chunk only from the peer that proposed the
//! deal, only at the offset it holds, and never past the payload size; it syncs the file and
//! records its progress (atomically) every [`SYNC_EVERY`] bytes and at the end, so after a crash
//! it answers with what it is sure of and drops anything after it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::deal::DealUuid;
use crate::error::{MarketError, MarketResult};

/// The protocol's id.
pub const TRANSFER_PROTOCOL: &str = "/lode/transfer/1";
/// The most payload bytes in one request.
pub const MAX_PUSH_CHUNK: usize = 1 << 20;
/// Bound on a request's frame: a chunk and its header.
pub const MAX_PUSH_REQUEST: usize = MAX_PUSH_CHUNK + 1024;
/// Bound on a response's frame.
pub const MAX_PUSH_RESPONSE: usize = 1024;
/// The provider syncs a pushed payload and records its progress at least this often (bytes).
pub const SYNC_EVERY: u64 = 16 << 20;

/// A piece of a deal's payload, pushed by its client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRequest {
    /// The deal.
    pub uuid: DealUuid,
    /// Where `data` goes in the payload.
    pub offset: u64,
    /// The bytes (empty: only asks how many the provider holds).
    pub data: Vec<u8>,
}

/// The provider's answer to a [`PushRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PushResponse {
    /// The provider holds this many bytes of the payload: send from there.
    Have(u64),
    /// The push is refused (no such deal, not a push deal, another peer, a wrong offset, …).
    Refused(String),
}

/// The provider's progress file for a pushed payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PushProgress {
    /// Bytes synced to disk.
    pub(crate) have: u64,
}

/// The bytes of a pushed payload the provider is sure of (its progress file; 0 without one).
pub(crate) fn synced(progress: &Path) -> u64 {
    std::fs::read(progress)
        .ok()
        .and_then(|b| serde_json::from_slice::<PushProgress>(&b).ok())
        .map_or(0, |p| p.have)
}

/// Records that `have` bytes are synced.
pub(crate) fn record_synced(progress: &Path, have: u64) -> MarketResult<()> {
    let bytes = serde_json::to_vec(&PushProgress { have }).map_err(|e| MarketError::Malformed {
        what: "push progress",
        why: e.to_string(),
    })?;
    lode_proofs::durable::write_atomic(progress, &bytes)?;
    Ok(())
}

/// Writes a chunk at `offset` of `payload` (the file is cut to `offset` first, dropping what a
/// crash may have left after the synced part); syncs it and records the progress when
/// `sync` is set.
pub(crate) fn write_chunk(
    payload: &Path,
    progress: &Path,
    offset: u64,
    data: &[u8],
    sync: bool,
) -> MarketResult<u64> {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(payload)
        .map_err(MarketError::io(payload))?;
    file.set_len(offset).map_err(MarketError::io(payload))?;
    file.seek(SeekFrom::Start(offset))
        .map_err(MarketError::io(payload))?;
    file.write_all(data).map_err(MarketError::io(payload))?;
    let have = offset.saturating_add(data.len() as u64);
    if sync {
        file.sync_data().map_err(MarketError::io(payload))?;
        record_synced(progress, have)?;
    }
    Ok(have)
}
