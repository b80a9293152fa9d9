//! Storage faults of the sealing pipeline, on real files with real 2 KiB sealing against a real
//! in-process node (the helpers of `common`):
//!
//! - an unwritable sealing scratch path: the sector moves to its phase's failure state with a
//!   reason naming the path, is retried with back-off, and reaches `Proving` once the path is
//!   fixed, while another sector of the same pipeline seals on untouched;
//! - a full disk: the sector store on a small tmpfs filled up under a sealing sector, so that
//!   Finalize's move fails (`FinalizeFailed`, the reason naming the store and the full disk,
//!   nothing half-copied left), and completes once space is freed; and a new sector held in
//!   `Packing`, with the figures, while the scratch is too small for it;
//! - Finalize interrupted at each point of its move (a partial temporary copy, both copies
//!   around, the scratch finalized but not moved), then run again: one complete sector in the
//!   store, byte for byte, and no scratch.
//!
//! The full-disk tests mount tmpfs filesystems, which needs root (CI runs as root). Where
//! mounting is refused they fail, saying why, unless `LODE_SKIP_TMPFS_TESTS` is set: then they
//! print that they were skipped.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use lode_chain::types::ActorId;
use lode_proofs::sector::SectorSize;
use lode_provider::pipeline::runner::Pipeline;
use lode_provider::pipeline::storage::{self, Finalized};
use lode_provider::pipeline::{RetryPolicy, SectorState};
use lode_provider::preseal::sector_path;
use lode_provider::prover::SectorStore;
use lode_sealing::seal::{self, SectorId, no_progress};
use lode_sealing::sector_dir::SectorDir;

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A tmpfs mounted for a test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount`'s syntax: `1m`) at `path`; `None` (said on stderr)
    /// when it cannot and `LODE_SKIP_TMPFS_TESTS` is set; otherwise the test fails, saying why.
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output();
        let why = match out {
            Ok(o) if o.status.success() => return Some(Tmpfs(path.to_path_buf())),
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => e.to_string(),
        };
        if std::env::var_os("LODE_SKIP_TMPFS_TESTS").is_some() {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs at {} ({why})",
                path.display()
            );
            return None;
        }
        panic!(
            "cannot mount a tmpfs at {} ({why}): this test needs root to make a small real \
             filesystem (CI runs as root); set LODE_SKIP_TMPFS_TESTS=1 to skip it knowingly",
            path.display()
        );
    }

    fn resize(&self, size: &str) {
        let st = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success(), "remount {}", self.0.display());
    }

    /// Writes a file until the filesystem is full; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0xa5u8; 4096];
        loop {
            if let Err(e) = f.write_all(&chunk).and_then(|()| f.sync_all()) {
                assert_eq!(e.raw_os_error(), Some(28), "ENOSPC expected: {e}");
                return path;
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Ticks `p` (and waits for the phases it started) until `done` holds, mining a block whenever
/// nothing moved; `each` sees every transition. Panics after `rounds` rounds.
async fn drive(
    w: &World,
    p: &Pipeline<Node>,
    rounds: usize,
    mut each: impl FnMut(&lode_provider::pipeline::runner::Transition),
    mut done: impl FnMut(&Pipeline<Node>) -> bool,
) {
    for _ in 0..rounds {
        if done(p) {
            return;
        }
        let mut moved = p.tick().await.unwrap();
        moved.extend(p.wait_tasks().await);
        for t in &moved {
            each(t);
        }
        if moved.is_empty() {
            w.mine().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    panic!(
        "not done after {rounds} rounds: {:?}",
        p.store().list().unwrap()
    );
}

fn state(p: &Pipeline<Node>, n: u64) -> SectorState {
    p.store().get(n).unwrap().unwrap().state()
}

/// Back-off of a second: a retry is recorded for later, not made at once.
fn slow_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 50,
        base_seconds: 1,
        max_seconds: 2,
    }
}

/// An unwritable scratch directory for one sector: its phase fails with the path in the reason,
/// is retried with back-off, and the sector reaches `Proving` once the path is fixed; the other
/// sector of the pipeline is not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_scratch_path_fails_the_phase_retries_and_spares_other_sectors() {
    bounded(async {
        let w = world().await;
        for _ in 0..3 {
            w.mine().await;
        }
        let mut config = w.config();
        config.retry = slow_retries();
        let p = w.pipeline_with(&w.root.join("pipeline"), config);
        let a = p.pledge().await.unwrap().number;
        let b = p.pledge().await.unwrap().number;
        let bad = p.scratch_path(a);
        std::fs::create_dir_all(w.scratch_dir()).unwrap();
        // As root, permissions do not stop writes: a regular file where the sector's directory
        // belongs makes the path unwritable for anyone (Packing cannot create it). Otherwise the
        // directory is made read-only (PreCommit1 cannot write in it).
        let root = is_root();
        let expected = if root {
            std::fs::write(&bad, b"in the way").unwrap();
            SectorState::AddPieceFailed
        } else {
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir(&bad).unwrap();
            std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o555)).unwrap();
            SectorState::SealPreCommit1Failed
        };
        let mut a_failures = Vec::new();
        let mut fixed = false;
        drive(
            &w,
            &p,
            1200,
            |t| {
                if t.number == b {
                    assert_eq!(
                        Some(t.to),
                        t.from.next(),
                        "sector {b} is not affected: {t:?}"
                    );
                }
            },
            |p| {
                let r = p.store().get(a).unwrap().unwrap();
                if r.state() == expected && !fixed {
                    let reason = r.progress.last_error.clone().unwrap_or_default();
                    assert!(
                        reason.contains(&bad.display().to_string()),
                        "the reason names the path: {reason}"
                    );
                    let retry_at = r.progress.retry_at.expect("a retry is scheduled");
                    assert!(
                        retry_at > r.progress.updated_at,
                        "backed off: retry at {retry_at}, failed at {}",
                        r.progress.updated_at
                    );
                    if a_failures.last() != Some(&r.progress.failures) {
                        a_failures.push(r.progress.failures);
                    }
                    // Retried (and failed again) before the path is fixed.
                    if r.progress.failures >= 2 {
                        if root {
                            std::fs::remove_file(&bad).unwrap();
                        } else {
                            use std::os::unix::fs::PermissionsExt;
                            std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o755))
                                .unwrap();
                        }
                        fixed = true;
                    }
                }
                state(p, a) == SectorState::Proving && state(p, b) == SectorState::Proving
            },
        )
        .await;
        assert!(fixed, "the fault was seen and fixed");
        assert_eq!(
            a_failures[..2],
            [1, 2],
            "each retry is counted: {a_failures:?}"
        );
        let ra = p.store().get(a).unwrap().unwrap();
        assert!(ra.progress.history.iter().any(|h| h.to == expected));
        assert_eq!(ra.progress.failures, 0, "reset once the phase completed");
        let rb = p.store().get(b).unwrap().unwrap();
        assert!(
            rb.progress
                .history
                .iter()
                .all(|h| !h.to.is_retryable_failure()),
            "{:?}",
            rb.progress.history
        );
        w.check_proving(a).await;
        w.check_proving(b).await;
    })
    .await;
}

/// The sector store on a small tmpfs, filled up while a sector seals: Finalize fails with the
/// full disk in its reason (nothing half-copied left, the scratch intact), and the sector
/// reaches `Proving`, moved into the store, once space is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_fails_finalize_and_it_completes_once_space_is_freed() {
    bounded(async {
        let w = world().await;
        let Some(fs) = Tmpfs::mount(&w.root.join("store-fs"), "1m") else {
            return;
        };
        for _ in 0..3 {
            w.mine().await;
        }
        let store = fs.0.join("sectors");
        let mut config = w.config();
        config.retry = slow_retries();
        config.store_dir = store.clone();
        let p = w.pipeline_with(&w.root.join("pipeline"), config);
        let n = p.pledge().await.unwrap().number;
        let mut filler = None;
        let mut seen_failure = false;
        drive(
            &w,
            &p,
            1200,
            |_| {},
            |p| {
                let r = p.store().get(n).unwrap().unwrap();
                let sealing = matches!(
                    r.state(),
                    SectorState::PreCommit1
                        | SectorState::PreCommit2
                        | SectorState::SubmitPreCommit
                        | SectorState::PreCommitLanded
                        | SectorState::WaitSeed
                        | SectorState::Commit1
                        | SectorState::Commit2
                );
                if filler.is_none() && sealing {
                    // Admitted with room to spare; now the store's disk fills up.
                    filler = Some(fs.fill());
                }
                if r.state() == SectorState::FinalizeFailed && !seen_failure {
                    seen_failure = true;
                    let reason = r.progress.last_error.clone().unwrap_or_default();
                    assert!(
                        reason.contains(&store.display().to_string())
                            && reason.contains("No space left on device"),
                        "{reason}"
                    );
                    assert!(r.progress.retry_at.is_some());
                    // The scratch is intact; nothing half-copied is left in the store.
                    assert!(
                        SectorDir::open(&p.scratch_path(n))
                            .unwrap()
                            .sealed()
                            .is_file()
                    );
                    assert!(!p.store_path(n).exists());
                    assert!(!storage::moving_path(&p.store_path(n)).exists());
                    // On chain and not moved yet: the daemon's prover finds it in scratch (a
                    // store made `with_sealing`), so it is not declared faulty meanwhile.
                    let plain = SectorStore::new(&store, w.miner.0, SectorSize::S2KiB);
                    assert!(!plain.scan().contains_key(&n));
                    let daemon = plain.with_sealing(w.scratch_dir());
                    let index = daemon.scan();
                    assert_eq!(index.get(&n), Some(&p.scratch_path(n)));
                    assert!(daemon.open(n, &index).is_some());
                    std::fs::remove_file(filler.as_ref().unwrap()).unwrap();
                }
                r.state() == SectorState::Proving
            },
        )
        .await;
        assert!(seen_failure, "Finalize ran into the full disk");
        let index = SectorStore::new(&store, w.miner.0, SectorSize::S2KiB);
        let found = index.scan();
        assert!(index.open(n, &found).is_some(), "the prover finds it");
        assert!(!p.scratch_path(n).exists());
    })
    .await;
}

/// A new sector waits in `Packing`, the figures in its waiting reason, while the scratch is too
/// small for its phases; once there is room it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_sector_waits_for_scratch_space_with_the_figures() {
    bounded(async {
        let w = world().await;
        let Some(fs) = Tmpfs::mount(&w.scratch_dir(), "64k") else {
            return;
        };
        for _ in 0..3 {
            w.mine().await;
        }
        let p = w.pipeline(&w.root.join("pipeline"));
        let n = p.pledge().await.unwrap().number;
        for _ in 0..3 {
            p.tick().await.unwrap();
        }
        assert_eq!(state(&p, n), SectorState::Packing);
        let why = p.waiting(n).expect("a waiting reason");
        assert!(
            why.contains("waiting for disk space")
                && why.contains(&format!("the scratch path {}", w.scratch_dir().display()))
                && why.contains("64.0 KiB are free"),
            "{why}"
        );
        assert!(!p.scratch_path(n).exists(), "nothing written");
        fs.resize("16m");
        p.tick().await.unwrap();
        assert_eq!(state(&p, n), SectorState::PreCommit1);
        assert_eq!(p.waiting(n), None);
    })
    .await;
}

const MINER: ActorId = ActorId(1000);

/// A sector sealed through PreCommit2 in `dir` (what Finalize needs).
fn seal_into(dir: &Path, cache: &Path, n: u64) -> SectorId {
    let id = SectorId {
        size: SectorSize::S2KiB,
        miner_id: MINER.0,
        sector_number: n,
    };
    let d = SectorDir::create(dir).unwrap();
    let ticket = lode_proofs::sector::randomness_node([3u8; 32]);
    seal::pre_commit1(&d, &id, ticket, cache, None, &mut no_progress).unwrap();
    seal::pre_commit2(&d, &id, &mut no_progress).unwrap();
    id
}

/// Every file of a directory with its bytes (the lock left out).
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "lock")
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// Finalize killed mid-move, at each point, then run again; and the old layout (sealed in place
/// in the store) finalized where it is.
fn interrupted_moves(store: &Path, scratch_root: &Path, cache: &Path, copy: bool) {
    let fresh = |n: u64| {
        let s = sector_path(scratch_root, MINER, n);
        let id = seal_into(&s, cache, n);
        seal::finalize(&SectorDir::open(&s).unwrap(), &id, false).unwrap();
        let expected = contents(&s);
        (s, sector_path(store, MINER, n), id, expected)
    };
    let prover = SectorStore::new(store, MINER.0, SectorSize::S2KiB);
    let complete = |dest: &Path, expected: &BTreeMap<String, Vec<u8>>, n: u64| {
        assert_eq!(&contents(dest), expected, "the store copy is complete");
        let index = prover.scan();
        assert_eq!(index.get(&n).map(PathBuf::as_path), Some(dest));
        assert!(prover.open(n, &index).is_some());
        assert!(!storage::moving_path(dest).exists());
    };
    // 1. Killed while copying: a partial temporary copy in the store (hidden from the prover).
    let (s, dest, id, expected) = fresh(1);
    let tmp = storage::moving_path(&dest);
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("sector.json"), &expected["sector.json"]).unwrap();
    std::fs::write(tmp.join("sealed"), &expected["sealed"][..100]).unwrap();
    assert!(
        !prover.scan().contains_key(&1),
        "a partial copy is not scanned"
    );
    let how = storage::finalize_to_store(&s, &dest, &id, false).unwrap();
    assert_eq!(
        how,
        if copy {
            Finalized::Copied
        } else {
            Finalized::Renamed
        }
    );
    complete(&dest, &expected, 1);
    assert!(!s.exists(), "no scratch left");
    // Again: the sector is in the store, nothing in scratch: nothing more to do.
    assert_eq!(
        storage::finalize_to_store(&s, &dest, &id, false).unwrap(),
        Finalized::InPlace
    );
    complete(&dest, &expected, 1);

    // 2. Killed after the rename into place, before the scratch was deleted: both copies.
    let (s, dest, id, expected) = fresh(2);
    std::fs::create_dir_all(&dest).unwrap();
    for (name, bytes) in &expected {
        std::fs::write(dest.join(name), bytes).unwrap();
    }
    assert_eq!(
        storage::finalize_to_store(&s, &dest, &id, false).unwrap(),
        Finalized::AlreadyMoved
    );
    complete(&dest, &expected, 2);
    assert!(!s.exists());

    // 3. Killed before the move (layers deleted or not): the whole Finalize again.
    let s = sector_path(scratch_root, MINER, 3);
    let id = seal_into(&s, cache, 3);
    let dest = sector_path(store, MINER, 3);
    assert_eq!(
        storage::finalize_to_store(&s, &dest, &id, false).unwrap(),
        if copy {
            Finalized::Copied
        } else {
            Finalized::Renamed
        }
    );
    assert!(!SectorDir::open(&dest).unwrap().layer(1).exists());
    assert!(!SectorDir::open(&dest).unwrap().unsealed().exists());
    assert!(prover.open(3, &prover.scan()).is_some());
    assert!(!s.exists());

    // 4. Both copies, the store's incomplete (not something a kill leaves, but a disk can):
    //    refused, nothing deleted.
    let (s, dest, id, expected) = fresh(4);
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(dest.join("sector.json"), &expected["sector.json"]).unwrap();
    let e = storage::finalize_to_store(&s, &dest, &id, false).unwrap_err();
    assert!(e.to_string().contains("differ"), "{e}");
    assert_eq!(contents(&s), expected);

    // 5. The old layout: sealed in place in the store, no scratch; the unsealed copy kept.
    let dest = sector_path(store, MINER, 5);
    let id = seal_into(&dest, cache, 5);
    let s = sector_path(scratch_root, MINER, 5);
    assert_eq!(
        storage::finalize_to_store(&s, &dest, &id, true).unwrap(),
        Finalized::InPlace
    );
    let d = SectorDir::open(&dest).unwrap();
    assert!(!d.layer(1).exists() && d.unsealed().is_file() && d.sealed().is_file());
    assert!(!s.exists());

    // 6. Removing a sector deletes every copy.
    let (s, dest, _, _) = fresh(6);
    std::fs::create_dir_all(storage::moving_path(&dest)).unwrap();
    storage::remove_sector(&s, &dest).unwrap();
    assert!(!s.exists() && !dest.exists() && !storage::moving_path(&dest).exists());
    let (s, dest, id, _) = fresh(7);
    storage::finalize_to_store(&s, &dest, &id, false).unwrap();
    storage::remove_sector(&s, &dest).unwrap();
    assert!(!dest.exists());
}

/// Finalize interrupted mid-move, scratch and store on one filesystem (the move is a rename).
#[test]
fn finalize_interrupted_mid_move_completes_on_one_filesystem() {
    let d = tempfile::tempdir().unwrap();
    interrupted_moves(
        &d.path().join("sectors"),
        &d.path().join("scratch"),
        &d.path().join("cache"),
        false,
    );
}

/// Finalize interrupted mid-move, the store on another filesystem (the move is a copy, fsynced,
/// then a rename into place).
#[test]
fn finalize_interrupted_mid_copy_completes_across_filesystems() {
    let d = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&d.path().join("store-fs"), "8m") else {
        return;
    };
    interrupted_moves(
        &fs.0.join("sectors"),
        &d.path().join("scratch"),
        &d.path().join("cache"),
        true,
    );
}
