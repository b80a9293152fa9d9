//! Where a sector's files live: sealing scratch while it is sealed, long-term storage once it is
//! finalized; the move between the two; and the room a new sector needs on both before it starts.
//!
//! - **Scratch** (`[sealing] scratch`, `scratch/` by default): the phases Packing … Commit2 work
//!   in `<scratch>/s-<miner>-<n>`. The prover does not scan it, except for a number its store
//!   lacks, among sectors whose PreCommit2 is done (`SectorStore::with_sealing`: a sector is on
//!   chain from its prove-commit, before Finalize moves it).
//! - **Long-term storage** (`sectors`, the sector store): `<store>/s-<miner>-<n>`, what the prover
//!   scans ([`crate::preseal::sector_path`]).
//!
//! [`finalize_to_store`] is Finalize: `seal::finalize` in scratch (layers, trees C and D, the
//! vanilla proof deleted; the unsealed copy kept when configured), then the rest moved into the
//! store — one `rename` when both are on one filesystem; otherwise copied into
//! `<store>/.s-<miner>-<n>.moving` (every file fsynced, then the directory), renamed into place,
//! the store fsynced, and only then the scratch directory deleted. A kill at any instant followed
//! by Finalize again ends with one complete sector in the store and no scratch: a partial
//! temporary copy is deleted and made again, a store copy found complete beside the scratch
//! (killed after the rename) only lets the scratch be deleted.
//!
//! A sector sealed in place in the store (by an earlier version, or pre-sealed) has no scratch
//! directory: [`work_dir`] gives its store directory, and Finalize finalizes it there.
//!
//! [`room_for_new_sector`] is the admission of a new sector: its phases' writes in scratch (and
//! the parent cache, when it is not built yet) on top of what the sectors already started will
//! still write there, and its finalized files in the store on top of those of the started
//! sectors not moved yet, against what the filesystems have free — figures from
//! [`lode_sealing::capacity`].

use std::path::{Path, PathBuf};

use lode_chain::types::ActorId;
use lode_proofs::sector::SectorSize;
use lode_sealing::capacity::{self, Location, Phase, Plan, SpaceProbe, Work, human_bytes};
use lode_sealing::seal::{self, SectorId};
use lode_sealing::sector_dir::SectorDir;

use crate::error::ProviderResult;
use crate::preseal::sector_path;

/// Errors of moving a sector between scratch and long-term storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file operation failed.
    #[error(
        "cannot {op} {path}: {source} (check that the path exists, is a writable directory and has free space)"
    )]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The store already holds a copy of the sector that differs from its scratch.
    #[error(
        "both {scratch} and {store} hold the sector and differ ({why}): keep the complete one and delete the other"
    )]
    Conflict {
        /// The scratch directory.
        scratch: PathBuf,
        /// The store directory.
        store: PathBuf,
        /// The first difference.
        why: String,
    },
    /// Neither place holds the sector.
    #[error("the sector is neither in {scratch} nor in {store}: it must be sealed again")]
    Missing {
        /// The scratch directory.
        scratch: PathBuf,
        /// The store directory.
        store: PathBuf,
    },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + use<> {
    let path = path.to_path_buf();
    move |source| StorageError::Io { op, path, source }
}

/// The directory the sealing phases of sector `n` work in: its scratch directory, unless only the
/// store holds the sector (sealed in place by an earlier version, or already moved).
pub fn work_dir(scratch: &Path, store: &Path, miner: ActorId, n: u64) -> PathBuf {
    let s = sector_path(scratch, miner, n);
    let t = sector_path(store, miner, n);
    if !s.exists() && t.is_dir() { t } else { s }
}

/// The temporary directory a sector is copied into before it is renamed to `dest`.
pub fn moving_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.moving"))
}

/// How Finalize left the sector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finalized {
    /// Finalized in the store, where it was sealed (no scratch directory).
    InPlace,
    /// Moved by one rename (scratch and store on one filesystem).
    Renamed,
    /// Copied across filesystems, then renamed into place.
    Copied,
    /// The store already held it complete (a Finalize killed after its rename): scratch deleted.
    AlreadyMoved,
}

/// Finalize: deletes in `scratch` what proving does not need (the unsealed copy kept when
/// `keep_unsealed`), then moves the sector to `dest` in the store (see the module docs).
/// Idempotent, and safe to run again after a kill at any point.
///
/// # Errors
/// [`crate::ProviderError::Seal`] when the sector's records do not allow finalizing it;
/// [`crate::ProviderError::Storage`] when a file cannot be read, written or deleted (a full disk,
/// an unwritable path), or the two copies disagree.
pub fn finalize_to_store(
    scratch: &Path,
    dest: &Path,
    id: &SectorId,
    keep_unsealed: bool,
) -> ProviderResult<Finalized> {
    if !scratch.exists() {
        if !dest.is_dir() {
            return Err(StorageError::Missing {
                scratch: scratch.to_path_buf(),
                store: dest.to_path_buf(),
            }
            .into());
        }
        // Sealed in place, or moved already: finalizing again deletes nothing more.
        seal::finalize(&SectorDir::open(dest)?, id, keep_unsealed)?;
        return Ok(Finalized::InPlace);
    }
    let dir = SectorDir::open(scratch)?;
    seal::finalize(&dir, id, keep_unsealed)?;
    let files = kept_files(scratch)?;
    if dest.exists() {
        // Killed after the rename: the store's copy is complete (checked), scratch goes.
        same_files(scratch, dest, &files)?;
        remove_dir(scratch)?;
        return Ok(Finalized::AlreadyMoved);
    }
    let store = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(store).map_err(io("create", store))?;
    let tmp = moving_path(dest);
    if tmp.exists() {
        // A copy a kill interrupted: made again from the start.
        std::fs::remove_dir_all(&tmp).map_err(io("delete", &tmp))?;
    }
    let moved = match std::fs::rename(scratch, dest) {
        Ok(()) => Finalized::Renamed,
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
            if let Err(e) = copy_dir(scratch, &tmp, &files) {
                // Nothing half-copied is left behind (a kill leaves it for the next run).
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e.into());
            }
            std::fs::rename(&tmp, dest).map_err(io("rename into place", dest))?;
            Finalized::Copied
        }
        Err(e) => return Err(io("move into the store", dest)(e).into()),
    };
    sync_dir(store)?;
    if moved == Finalized::Copied {
        remove_dir(scratch)?;
    } else if let Some(parent) = scratch.parent() {
        sync_dir(parent)?;
    }
    Ok(moved)
}

/// The files of a finalized sector directory that go to the store: every regular file but the
/// lock and temporary files.
fn kept_files(dir: &Path) -> Result<Vec<String>, StorageError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io("read", dir))? {
        let e = e.map_err(io("read", dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let is_file = e.file_type().map_err(io("read", &e.path()))?.is_file();
        if is_file && name != "lock" && !name.ends_with(".tmp") {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// Checks that `dest` holds each of `files` of `scratch` with the same length.
fn same_files(scratch: &Path, dest: &Path, files: &[String]) -> Result<(), StorageError> {
    for name in files {
        let a = scratch.join(name);
        let b = dest.join(name);
        let la = std::fs::metadata(&a).map_err(io("read", &a))?.len();
        let lb = match std::fs::metadata(&b) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::Conflict {
                    scratch: scratch.to_path_buf(),
                    store: dest.to_path_buf(),
                    why: format!("{name} is missing from the store"),
                });
            }
            Err(e) => return Err(io("read", &b)(e)),
        };
        if la != lb {
            return Err(StorageError::Conflict {
                scratch: scratch.to_path_buf(),
                store: dest.to_path_buf(),
                why: format!("{name} has {la} bytes in scratch and {lb} in the store"),
            });
        }
    }
    Ok(())
}

/// Copies `files` of `from` into a new directory `to`, each fsynced, then the directory.
fn copy_dir(from: &Path, to: &Path, files: &[String]) -> Result<(), StorageError> {
    std::fs::create_dir(to).map_err(io("create", to))?;
    for name in files {
        let src = from.join(name);
        let dst = to.join(name);
        std::fs::copy(&src, &dst).map_err(io("copy into", &dst))?;
        std::fs::File::open(&dst)
            .and_then(|f| f.sync_all())
            .map_err(io("sync", &dst))?;
    }
    sync_dir(to)
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io("sync", dir))
}

/// Deletes a directory and its files (gone already is fine), then syncs its parent.
fn remove_dir(dir: &Path) -> Result<(), StorageError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("delete", dir)(e)),
    }
    match dir.parent() {
        Some(p) => sync_dir(p),
        None => Ok(()),
    }
}

/// Deletes every copy of a sector: its scratch directory, its store directory and a temporary
/// copy (what removing a sector does).
///
/// # Errors
/// [`StorageError::Io`] naming the directory that could not be deleted.
pub fn remove_sector(scratch: &Path, dest: &Path) -> Result<(), StorageError> {
    for dir in [scratch.to_path_buf(), moving_path(dest), dest.to_path_buf()] {
        // Whatever is in the way there (a file where the directory belongs included).
        let removed = match std::fs::symlink_metadata(&dir) {
            Ok(m) if !m.is_dir() => std::fs::remove_file(&dir),
            _ => std::fs::remove_dir_all(&dir),
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("delete", &dir)(e)),
        }
    }
    Ok(())
}

/// The phases a sector's scratch sees, for [`room_for_new_sector`].
pub const SCRATCH_PHASES: [Phase; 4] = [
    Phase::PreCommit1,
    Phase::PreCommit2,
    Phase::Commit1,
    Phase::Commit2,
];

/// Where sectors are sealed and kept, as the admission of a new sector sees it.
#[derive(Clone, Copy, Debug)]
pub struct Places<'a> {
    /// The scratch root.
    pub scratch: &'a Path,
    /// The long-term store.
    pub store: &'a Path,
    /// The parent cache's directory.
    pub cache: &'a Path,
    /// The sector size.
    pub size: SectorSize,
    /// Whether finalized sectors keep their unsealed copy.
    pub keep_unsealed: bool,
}

/// Why a new sector does not start now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not enough disk space or memory: it waits (the reason, with the figures and the path).
    Wait(String),
    /// A path cannot be read (not a directory, no permission): a failure of the phase, with the
    /// reason, retried like any other.
    Fail(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Wait(why) | Refusal::Fail(why) => f.write_str(why),
        }
    }
}

/// The nearest existing directory at or above `path`.
fn existing(path: &Path) -> PathBuf {
    path.ancestors()
        .find(|p| !p.as_os_str().is_empty() && p.exists())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Whether a new sector at `new` (its scratch directory) may start: the scratch filesystem must
/// have room for its phases ([`SCRATCH_PHASES`], less what is written already) and, when not
/// built yet, the parent cache, on top of what `started` (the scratch directories of the sectors
/// already started and not finalized yet) will still write; the store's filesystem room for its
/// finalized files ([`capacity::finalized_bytes`]) on top of those of `started`; and the memory
/// its phases hold must be available.
///
/// # Errors
/// [`Refusal::Wait`] with what is short, the figures and the path; [`Refusal::Fail`] when a
/// path cannot be looked at.
pub fn room_for_new_sector(
    at: &Places<'_>,
    new: &Path,
    started: &[PathBuf],
    probe: &dyn SpaceProbe,
) -> Result<(), Refusal> {
    let work = Work {
        phases: SCRATCH_PHASES.to_vec(),
        piece_bytes: 0,
    };
    let plan = |dir: &Path| {
        Plan::new(dir, at.cache, at.size, &work)
            .map_err(|e| Refusal::Fail(format!("{}: {e}", dir.display())))
    };
    let fs = |path: &Path| {
        let p = existing(path);
        probe.filesystem(&p).map_err(|e| {
            Refusal::Fail(format!(
                "cannot read the free space of {}: {e}",
                p.display()
            ))
        })
    };
    let own = plan(new)?;
    let mut reserved = 0u64;
    for dir in started {
        reserved = reserved.saturating_add(plan(dir)?.peak(|l| l == Location::SectorDir));
    }
    let scratch_fs = fs(at.scratch)?;
    let cache_fs = fs(at.cache)?;
    let store_fs = fs(at.store)?;
    let sector_need = own.peak(|l| l == Location::SectorDir);
    let cache_need = own.peak(|l| l == Location::CacheDir);
    let finalized = capacity::finalized_bytes(at.size, at.keep_unsealed);
    // (filesystem, what for, bytes for this sector, bytes reserved for the started ones)
    let mut needs: Vec<(capacity::FsSpace, String, u64, u64)> = vec![(
        scratch_fs,
        format!("the scratch path {}", at.scratch.display()),
        sector_need,
        reserved,
    )];
    let mut add = |fs: capacity::FsSpace, what: String, need: u64, reserve: u64| match needs
        .iter_mut()
        .find(|n| n.0.id == fs.id)
    {
        Some(n) => {
            n.1 = format!("{} and {what}", n.1);
            n.2 = n.2.saturating_add(need);
            n.3 = n.3.saturating_add(reserve);
        }
        None => needs.push((fs, what, need, reserve)),
    };
    if cache_need > 0 {
        add(
            cache_fs,
            format!("the parent cache {}", at.cache.display()),
            cache_need,
            0,
        );
    }
    // On the scratch's filesystem the move is a rename: nothing more.
    if store_fs.id != scratch_fs.id {
        let count = u64::try_from(started.len()).unwrap_or(u64::MAX);
        add(
            store_fs,
            format!("the sector store {}", at.store.display()),
            finalized,
            finalized.saturating_mul(count),
        );
    }
    for (fs, what, need, reserve) in &needs {
        let Some(free) = fs.available else {
            tracing::warn!(%what, "the filesystem reports no free space: not checked");
            continue;
        };
        if need.saturating_add(*reserve) > free {
            return Err(Refusal::Wait(format!(
                "waiting for disk space: a new {} sector needs {} on {what} ({} more are held for the {} sectors already sealing), and {} are free; free some space or configure a larger path",
                at.size,
                human_bytes(*need),
                human_bytes(*reserve),
                started.len(),
                human_bytes(free),
            )));
        }
    }
    if let Some((phase, memory)) = own.memory
        && memory.bytes > 0
    {
        match probe.available_memory() {
            Ok(Some(free)) if memory.bytes > free => {
                return Err(Refusal::Wait(format!(
                    "waiting for memory: {phase} of a {} sector holds {} ({}), and {} are available",
                    at.size,
                    human_bytes(memory.bytes),
                    memory.what,
                    human_bytes(free),
                )));
            }
            Ok(_) => {}
            Err(e) => {
                return Err(Refusal::Fail(format!(
                    "cannot read the available memory: {e}"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use lode_sealing::capacity::FixedSpace;

    #[test]
    fn a_new_sector_waits_with_the_figures_when_scratch_is_short() {
        let d = tempfile::tempdir().unwrap();
        let (scratch, store, cache) = (d.path().join("a"), d.path().join("b"), d.path().join("c"));
        let at = Places {
            scratch: &scratch,
            store: &store,
            cache: &cache,
            size: SectorSize::S2KiB,
            keep_unsealed: false,
        };
        let new = sector_path(&scratch, ActorId(1000), 5);
        let tiny = FixedSpace {
            disk: Some(4096),
            memory: None,
        };
        let Err(Refusal::Wait(why)) = room_for_new_sector(&at, &new, &[], &tiny) else {
            panic!("a short scratch makes the sector wait");
        };
        assert!(
            why.contains("the scratch path") && why.contains("4.0 KiB are free"),
            "{why}"
        );
        let plenty = FixedSpace {
            disk: Some(1 << 30),
            memory: None,
        };
        room_for_new_sector(&at, &new, &[], &plenty).unwrap();
        // Each started sector holds its own share.
        let started: Vec<PathBuf> = (0..3)
            .map(|n| sector_path(&scratch, ActorId(1000), n))
            .collect();
        let own = Plan::new(
            &new,
            &cache,
            SectorSize::S2KiB,
            &Work {
                phases: SCRATCH_PHASES.to_vec(),
                piece_bytes: 0,
            },
        )
        .unwrap()
        .peak(|_| true);
        let just = FixedSpace {
            disk: Some(own * 3),
            memory: None,
        };
        let Err(Refusal::Wait(why)) = room_for_new_sector(&at, &new, &started, &just) else {
            panic!("the started sectors hold their share");
        };
        assert!(why.contains("3 sectors already sealing"), "{why}");
    }

    #[test]
    fn work_dir_prefers_scratch_and_falls_back_to_a_sector_sealed_in_place() {
        let d = tempfile::tempdir().unwrap();
        let (scratch, store) = (d.path().join("scratch"), d.path().join("store"));
        let m = ActorId(1000);
        assert_eq!(
            work_dir(&scratch, &store, m, 1),
            sector_path(&scratch, m, 1)
        );
        std::fs::create_dir_all(sector_path(&store, m, 1)).unwrap();
        assert_eq!(work_dir(&scratch, &store, m, 1), sector_path(&store, m, 1));
        std::fs::create_dir_all(sector_path(&scratch, m, 1)).unwrap();
        assert_eq!(
            work_dir(&scratch, &store, m, 1),
            sector_path(&scratch, m, 1)
        );
        assert_eq!(
            moving_path(&sector_path(&store, m, 1)),
            store.join(".s-1000-1.moving")
        );
    }
}
