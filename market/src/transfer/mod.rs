//! Moving a deal's payload from the client to the provider, and checking it.
//!
//! - [`http`]: the provider's HTTP pull (`HEAD`, parallel `Range` chunks, resumption from a
//!   progress file, back-off, no redirects, public addresses only unless allowed, timeouts);
//! - [`commp`]: CommP of what arrived, zero-filled to the proposal's piece size (SPEC §3.2);
//! - [`push`]: the libp2p push (`/lode/transfer/1`) for clients that cannot serve HTTP;
//! - [`serve`]: the client's side: a file served on an ephemeral HTTP port for the provider to
//!   pull;
//! - [`Scratch`]: where a provider keeps a deal's payload while it is fetched and until the
//!   sealing pipeline has taken it.

pub mod commp;
pub mod http;
pub mod push;
pub mod serve;

use std::path::{Path, PathBuf};

use crate::deal::DealUuid;
use crate::error::{MarketError, MarketResult};

/// A provider's deal scratch directory: `<uuid>.payload` (the payload, written in place as
/// chunks arrive) and `<uuid>.progress` (the chunks on disk, JSON, written atomically).
#[derive(Clone, Debug)]
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// The scratch directory `dir` (created when missing).
    ///
    /// # Errors
    /// [`MarketError::Io`] when it cannot be created.
    pub fn open(dir: impl Into<PathBuf>) -> MarketResult<Scratch> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(MarketError::io(&dir))?;
        Ok(Scratch { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where a deal's payload is kept.
    pub fn payload(&self, uuid: &DealUuid) -> PathBuf {
        self.dir.join(format!("{uuid}.payload"))
    }

    /// A deal's transfer progress file.
    pub fn progress(&self, uuid: &DealUuid) -> PathBuf {
        self.dir.join(format!("{uuid}.progress"))
    }

    /// Removes a deal's scratch files (those that exist).
    ///
    /// # Errors
    /// [`MarketError::Io`] when one exists and cannot be removed.
    pub fn remove(&self, uuid: &DealUuid) -> MarketResult<()> {
        for path in [self.payload(uuid), self.progress(uuid)] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(MarketError::Io { path, source: e }),
            }
        }
        Ok(())
    }

    /// Removes only the progress file (the payload is complete and checked).
    ///
    /// # Errors
    /// [`MarketError::Io`].
    pub fn remove_progress(&self, uuid: &DealUuid) -> MarketResult<()> {
        let path = self.progress(uuid);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(MarketError::Io { path, source: e }),
        }
    }
}
