//! The on-disk layout of one sector and the metadata each phase records.
//!
//! One directory per sector:
//!
//! | file | written by | kept after Finalize | content |
//! |---|---|---|---|
//! | `lock` | every command that writes | yes | empty; an exclusive `flock` while a process works on the sector |
//! | `sector.json` | the first command | yes | sector size, miner id, sector number, the pieces and their offsets |
//! | `unsealed` | AddPiece, PreCommit1 | with `keep_unsealed` | the fr32-padded data, zero-filled to the sector size |
//! | `layer-1` … `layer-L` | PreCommit1 | no | the labels of each layer (32 bytes per node) |
//! | `tree-d` | PreCommit1 | no | tree D over `unsealed` (leaves stay in `unsealed`) |
//! | `pc1-progress.json` | PreCommit1 | no | the layers done so far (for resuming after a crash) |
//! | `pc1.json` | PreCommit1 | yes | ticket, `comm_d`, `replica_id`, a BLAKE3 checksum per layer and of `unsealed` |
//! | `columns` | PreCommit2 | no | the column hash of every node (the leaves of tree C) |
//! | `tree-c` | PreCommit2 | no | tree C over `columns` |
//! | `sealed` | PreCommit2 | yes | the replica |
//! | `tree-r` | PreCommit2 | yes | tree R over `sealed`, without the two rows above the leaves |
//! | `pc2.json` | PreCommit2 | yes | `replica_id`, `comm_c`, `comm_r_last`, `comm_r` |
//! | `commit1.bin` | Commit1 | no | the vanilla PoRep proof for the seed |
//! | `commit1.json` | Commit1 | yes | the PoRep's public inputs (what a verifier needs) |
//! | `commit2.bin` | Commit2 | yes | the Groth16 PoRep proof, 192 bytes per partition |
//!
//! Every file is written under a temporary name, fsynced and renamed, so a file that exists under its
//! real name is complete. The JSON files are the record of what has run, and each phase checks what
//! it consumes against the records of the phases before it. A process that writes holds the `lock`
//! ([`SectorDir::lock`]) for as long as it works, so two processes never interleave on one sector.

use std::path::{Path, PathBuf};

use lode_proofs::node::Node;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{SealError, SealResult, io_at};

/// Paths of one sector's files.
#[derive(Clone, Debug)]
pub struct SectorDir {
    root: PathBuf,
}

impl SectorDir {
    /// The sector directory at `root`, created if missing.
    pub fn create(root: &Path) -> SealResult<Self> {
        std::fs::create_dir_all(root).map_err(io_at(root))?;
        Ok(SectorDir {
            root: root.to_path_buf(),
        })
    }

    /// The paths of a sector directory at `root`, which need not exist: nothing is created or checked
    /// (what [`crate::capacity`] looks at before a sector is started).
    pub(crate) fn at(root: &Path) -> Self {
        SectorDir {
            root: root.to_path_buf(),
        }
    }

    /// The existing sector directory at `root`; a missing one is an error, never created.
    pub fn open(root: &Path) -> SealResult<Self> {
        match std::fs::metadata(root) {
            Ok(m) if m.is_dir() => Ok(SectorDir {
                root: root.to_path_buf(),
            }),
            Ok(_) => Err(SealError::NotASectorDir {
                path: root.to_path_buf(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(SealError::NotASectorDir {
                path: root.to_path_buf(),
            }),
            Err(e) => Err(SealError::Io {
                path: root.to_path_buf(),
                source: e,
            }),
        }
    }

    /// Takes the sector's exclusive lock (an `flock` on `lock`), held until the guard is dropped. A
    /// sector another process is working on is refused at once rather than waited for.
    pub fn lock(&self) -> SealResult<SectorLock> {
        let path = self.lock_file();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_at(&path))?;
        match file.try_lock() {
            Ok(()) => {
                self.remove_stale_tmp();
                Ok(SectorLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(SealError::Locked {
                path: self.root.clone(),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(SealError::Io { path, source: e }),
        }
    }

    /// Removes temporary files another process left behind (killed while writing: every writer
    /// holds the lock, so once it is ours nobody else is writing them). Best effort: a file that
    /// cannot be removed is logged and left.
    fn remove_stale_tmp(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        let ours = format!(".{}-", std::process::id());
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".tmp") && !name.contains(&ours) {
                let path = entry.path();
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "removed a stale temporary file")
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "could not remove a stale temporary file")
                    }
                }
            }
        }
    }

    /// `lock`.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `sector.json`.
    pub fn sector_meta(&self) -> PathBuf {
        self.root.join("sector.json")
    }
    /// `unsealed`.
    pub fn unsealed(&self) -> PathBuf {
        self.root.join("unsealed")
    }
    /// `layer-<l>` (1-based).
    pub fn layer(&self, layer: usize) -> PathBuf {
        self.root.join(format!("layer-{layer}"))
    }
    /// `tree-d`.
    pub fn tree_d(&self) -> PathBuf {
        self.root.join("tree-d")
    }
    /// `pc1.json`.
    pub fn pc1(&self) -> PathBuf {
        self.root.join("pc1.json")
    }
    /// `columns`.
    pub fn columns(&self) -> PathBuf {
        self.root.join("columns")
    }
    /// `tree-c`.
    pub fn tree_c(&self) -> PathBuf {
        self.root.join("tree-c")
    }
    /// `sealed`.
    pub fn sealed(&self) -> PathBuf {
        self.root.join("sealed")
    }
    /// `tree-r`.
    pub fn tree_r(&self) -> PathBuf {
        self.root.join("tree-r")
    }
    /// `pc2.json`.
    pub fn pc2(&self) -> PathBuf {
        self.root.join("pc2.json")
    }
    /// `commit1.bin`.
    pub fn commit1(&self) -> PathBuf {
        self.root.join("commit1.bin")
    }
    /// `pc1-progress.json`.
    pub fn pc1_progress(&self) -> PathBuf {
        self.root.join("pc1-progress.json")
    }
    /// `commit1.json`.
    pub fn commit1_public(&self) -> PathBuf {
        self.root.join("commit1.json")
    }
    /// `commit2.bin`.
    pub fn commit2(&self) -> PathBuf {
        self.root.join("commit2.bin")
    }
}

/// The exclusive lock of a sector directory; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct SectorLock {
    _file: std::fs::File,
}

/// A node as lower-case hex in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HexNode(pub Node);

impl TryFrom<String> for HexNode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Node::from_hex(&s)
            .map(HexNode)
            .ok_or_else(|| format!("not 64 hex digits: {s:?}"))
    }
}

impl From<HexNode> for String {
    fn from(h: HexNode) -> String {
        h.0.to_hex()
    }
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename, directory fsync).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> SealResult<()> {
    lode_proofs::durable::write_atomic(path, bytes).map_err(|e| SealError::Io {
        path: e.path,
        source: e.source,
    })
}

/// Writes a JSON record atomically.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> SealResult<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| SealError::Metadata {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, &bytes)
}

/// Reads a JSON record; a missing file means `phase` needs `missing` to run first.
pub(crate) fn read_json<T: DeserializeOwned>(
    path: &Path,
    phase: &'static str,
    missing: &'static str,
) -> SealResult<T> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SealError::MissingPhase {
                phase,
                missing,
                path: path.to_path_buf(),
            });
        }
        Err(e) => {
            return Err(SealError::Io {
                path: path.to_path_buf(),
                source: e,
            });
        }
    };
    serde_json::from_slice(&bytes).map_err(|source| SealError::Metadata {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn taking_the_lock_removes_temporary_files_other_processes_left() {
        let root = tempfile::tempdir().unwrap();
        let dir = SectorDir::create(root.path()).unwrap();
        let stale = root.path().join("layer-2.4294967295-7.tmp");
        let ours = lode_proofs::durable::tmp_path(&dir.layer(1));
        for p in [&stale, &ours, &dir.sealed()] {
            std::fs::write(p, b"x").unwrap();
        }
        let _lock = dir.lock().unwrap();
        assert!(!stale.exists(), "a killed writer's file is removed");
        assert!(ours.exists(), "this process's own temporary files are left");
        assert!(dir.sealed().exists());
    }
}
