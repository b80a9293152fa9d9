//! Durable, atomic file writes: the one way lode puts a file under its final name.
//!
//! Every file lode writes (trees, parameter files, parent caches, sector files, command outputs) goes
//! through the same five steps:
//!
//! 1. create a temporary file beside the target, under a name no other writer uses ([`tmp_path`]:
//!    `<name>.<pid>-<n>.tmp`, unique per process by the pid and within it by a counter, created with
//!    `create_new` so a leftover of a crashed process is never reused; `*.tmp` names are ignored by git);
//! 2. write it, streaming through [`AtomicFile`]'s [`Write`] or through a memory map
//!    ([`AtomicFile::map_mut`]) for files too large for RAM;
//! 3. fsync the file;
//! 4. rename it over the target;
//! 5. fsync the directory, so that the rename itself survives a power cut.
//!
//! Hence the rule the rest of lode relies on: **a file that exists under its final name is complete**
//! ([`is_complete`]). A crash leaves at most a `*.tmp` file behind, never a partial file under the
//! real name; an [`AtomicFile`] dropped without [`AtomicFile::commit`] (an error, a panic unwinding)
//! removes its temporary file and leaves any previous file under the target name untouched.
//!
//! ```
//! use std::io::Write;
//! use lode_proofs::durable::{AtomicFile, write_atomic};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let path = dir.path().join("out.bin");
//! let mut f = AtomicFile::create(&path)?;
//! f.write_all(b"streamed ")?;
//! f.write_all(b"content")?;
//! f.commit()?;
//! assert_eq!(std::fs::read(&path)?, b"streamed content");
//! write_atomic(&path, b"replaced")?;
//! assert_eq!(std::fs::read(&path)?, b"replaced");
//! # Ok(()) }
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::MmapMut;

/// Bytes buffered by an [`AtomicFile`] before they reach the file (larger writes bypass the buffer).
const BUFFER: usize = 1 << 16;
/// Fresh temporary names tried when one already exists (a leftover of a crashed process).
const NAME_ATTEMPTS: u32 = 64;

/// An I/O error while writing a file durably, with the file or directory it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct DurableError {
    /// The file or directory.
    pub path: PathBuf,
    /// The error.
    #[source]
    pub source: io::Error,
}

impl DurableError {
    fn at(path: &Path) -> impl FnOnce(io::Error) -> DurableError + '_ {
        move |source| DurableError {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<DurableError> for io::Error {
    /// Keeps the error kind; the message names the path.
    fn from(e: DurableError) -> io::Error {
        io::Error::new(e.source.kind(), e)
    }
}

/// A fresh temporary name beside `path`: `<file name>.<pid>-<n>.tmp`, where `n` counts the names this
/// process has handed out, so two writers (threads or processes) never get the same name.
pub fn tmp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{}-{n}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Fsyncs the directory holding `path`, so that a rename or creation of `path` is durable. A no-op
/// where directories cannot be opened as files (not Unix).
pub fn sync_dir(path: &Path) -> Result<(), DurableError> {
    let dir = parent_dir(path);
    if cfg!(unix) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(DurableError::at(dir))?;
    }
    Ok(())
}

/// Renames the finished, already fsynced file `tmp` over `path` and fsyncs the directory (steps 4 and
/// 5, for writers that manage their own temporary file).
pub fn rename_durable(tmp: &Path, path: &Path) -> Result<(), DurableError> {
    std::fs::rename(tmp, path).map_err(DurableError::at(path))?;
    sync_dir(path)
}

/// Whether a complete file exists under `path`: by lode's write rule (see the [module docs](self)),
/// a regular file under its final name is complete. `Ok(false)` when nothing is there; an error for
/// anything else in the way (a directory, an unreadable directory entry).
pub fn is_complete(path: &Path) -> Result<bool, DurableError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(true),
        Ok(_) => Err(DurableError {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(DurableError {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Writes `bytes` to `path` atomically and durably: after a crash, `path` holds either its previous
/// content (or nothing) or all of `bytes`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DurableError> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes).map_err(DurableError::at(&f.tmp))?;
    f.commit()
}

/// A file being written under a temporary name, put under its final name by [`AtomicFile::commit`].
///
/// Write it through [`Write`] (buffered; [`Seek`] flushes the buffer first, so headers may be
/// rewritten at the end) or through [`AtomicFile::map_mut`]. Dropped without a commit, it removes its
/// temporary file: the target is untouched.
#[derive(Debug)]
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    /// `None` only once committed or dropped.
    out: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Creates the temporary file for `path` (empty; its directory must exist).
    pub fn create(path: impl AsRef<Path>) -> Result<AtomicFile, DurableError> {
        let path = path.as_ref();
        if path.file_name().is_none() {
            return Err(DurableError {
                path: path.to_path_buf(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
            });
        }
        let mut attempts = 0;
        loop {
            let tmp = tmp_path(path);
            let opened = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&tmp);
            match opened {
                Ok(file) => {
                    return Ok(AtomicFile {
                        path: path.to_path_buf(),
                        tmp,
                        out: Some(BufWriter::with_capacity(BUFFER, file)),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < NAME_ATTEMPTS => {
                    attempts += 1;
                }
                Err(e) => {
                    return Err(DurableError {
                        path: tmp,
                        source: e,
                    });
                }
            }
        }
    }

    /// The final name.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary name being written (for error messages about writes).
    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    fn writer(&mut self) -> io::Result<&mut BufWriter<File>> {
        self.out
            .as_mut()
            .ok_or_else(|| io::Error::other("atomic file already closed"))
    }

    /// Flushes the buffer and gives the temporary file itself (for `set_len`, positioned writes).
    pub fn file(&mut self) -> Result<&mut File, DurableError> {
        let tmp = self.tmp.clone();
        let out = self.writer().map_err(DurableError::at(&tmp))?;
        out.flush().map_err(DurableError::at(&tmp))?;
        Ok(out.get_mut())
    }

    /// Sets the temporary file's length to `len` bytes (zero-filled) and maps it for writing. Flush
    /// the map ([`TmpMap::flush`]) and drop it before [`AtomicFile::commit`] (the borrow enforces the
    /// drop); commit fsyncs the file either way.
    pub fn map_mut(&mut self, len: u64) -> Result<TmpMap<'_>, DurableError> {
        let tmp = self.tmp.clone();
        let file = self.file()?;
        file.set_len(len).map_err(DurableError::at(&tmp))?;
        // SAFETY: the temporary file was created by this writer with `create_new` under a name unique to
        // this process and call, so no one else maps, truncates or writes it while the map lives; the
        // map borrows the writer, so it is gone before the file is renamed into place.
        let map = unsafe { MmapMut::map_mut(&*file) }.map_err(DurableError::at(&tmp))?;
        Ok(TmpMap {
            map,
            tmp,
            _file: PhantomData,
        })
    }

    /// Fsyncs the file, renames it over the target and fsyncs the directory. When this fails before the
    /// rename, the temporary file is removed and the target untouched.
    pub fn commit(mut self) -> Result<(), DurableError> {
        let tmp = self.tmp.clone();
        let out = self
            .out
            .take()
            .ok_or_else(|| io::Error::other("atomic file already closed"))
            .map_err(DurableError::at(&tmp))?;
        let file = match out.into_inner() {
            Ok(file) => file,
            Err(e) => {
                // Put the writer back so that `drop` removes the temporary file.
                let (error, out) = e.into_parts();
                self.out = Some(out);
                return Err(DurableError {
                    path: tmp,
                    source: error,
                });
            }
        };
        let synced = file.sync_all();
        drop(file);
        synced.map_err(DurableError::at(&tmp))?;
        // Once renamed there is nothing left for `drop` to remove.
        std::fs::rename(&tmp, &self.path).map_err(DurableError::at(&self.path))?;
        self.tmp = PathBuf::new();
        sync_dir(&self.path)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer()?.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer()?.write_all(buf)
    }

    /// Flushes the buffer to the file (not to the disk: [`AtomicFile::commit`] does that).
    fn flush(&mut self) -> io::Result<()> {
        self.writer()?.flush()
    }
}

impl Seek for AtomicFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.writer()?.seek(pos)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.tmp.as_os_str().is_empty() {
            return;
        }
        if let Some(out) = self.out.take() {
            // Close without flushing: the content is being thrown away.
            drop(out.into_parts());
        }
        // Best effort: the write already failed or was abandoned, and that is what the caller reports.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// A writable memory map of an [`AtomicFile`]'s temporary file.
#[derive(Debug)]
pub struct TmpMap<'a> {
    map: MmapMut,
    tmp: PathBuf,
    _file: PhantomData<&'a mut AtomicFile>,
}

impl TmpMap<'_> {
    /// Writes the mapped pages back to the file (synchronously).
    pub fn flush(&self) -> Result<(), DurableError> {
        self.map.flush().map_err(DurableError::at(&self.tmp))
    }
}

impl Deref for TmpMap<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map
    }
}

impl DerefMut for TmpMap<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.map
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn write_atomic_writes_and_overwrites_leaving_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert!(!is_complete(&path).unwrap());
        write_atomic(&path, b"first").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert!(is_complete(&path).unwrap());
        write_atomic(&path, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        write_atomic(&path, b"").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"");
        assert_eq!(names(dir.path()), ["f"]);
    }

    #[test]
    fn streaming_seeking_and_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let mut f = AtomicFile::create(&path).unwrap();
        assert_eq!(f.path(), path);
        assert!(f.tmp_path().to_string_lossy().ends_with(".tmp"));
        f.write_all(&[0; 4]).unwrap();
        let big = vec![7u8; 3 * BUFFER + 5];
        f.write_all(&big).unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.write_all(b"HEAD").unwrap();
        assert!(
            !is_complete(&path).unwrap(),
            "nothing under the final name yet"
        );
        f.commit().unwrap();
        let got = std::fs::read(&path).unwrap();
        assert_eq!(&got[..4], b"HEAD");
        assert_eq!(&got[4..], &big[..]);

        let mut f = AtomicFile::create(&path).unwrap();
        let mut map = f.map_mut(1000).unwrap();
        map[999] = 9;
        map[..3].copy_from_slice(b"abc");
        map.flush().unwrap();
        drop(map);
        f.commit().unwrap();
        let got = std::fs::read(&path).unwrap();
        assert_eq!(got.len(), 1000);
        assert_eq!((&got[..3], got[3], got[999]), (&b"abc"[..], 0, 9));
        assert_eq!(names(dir.path()), ["s"]);
    }

    #[test]
    fn an_abandoned_write_leaves_the_old_file_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keep");
        write_atomic(&path, b"old").unwrap();
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"new content that is never committed").unwrap();
        f.flush().unwrap();
        assert_eq!(names(dir.path()).len(), 2);
        drop(f);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["keep"]);
    }

    #[test]
    fn a_failed_commit_leaves_the_target_intact_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty directory under the target name: the rename fails.
        let path = dir.path().join("taken");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), b"x").unwrap();
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"data").unwrap();
        let err = f.commit().unwrap_err();
        assert_eq!(err.path, path);
        assert!(
            is_complete(&path).is_err(),
            "a directory is not a complete file"
        );
        assert_eq!(names(dir.path()), ["taken"]);
        assert_eq!(names(&path), ["inside"]);
        // A missing directory fails at creation, naming the temporary file.
        let err = write_atomic(&dir.path().join("no/such"), b"x").unwrap_err();
        assert!(err.path.to_string_lossy().ends_with(".tmp"), "{err}");
        assert_eq!(err.source.kind(), io::ErrorKind::NotFound);
        assert_eq!(io::Error::from(err).kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn temporary_names_are_unique() {
        let path = Path::new("dir/name.json");
        let (a, b) = (tmp_path(path), tmp_path(path));
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(Path::new("dir")));
        let a = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(a.starts_with("name.json.") && a.ends_with(".tmp"), "{a}");

        // Two writers of one target at once: both write their own file; the last commit wins whole.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let mut x = AtomicFile::create(&path).unwrap();
        let mut y = AtomicFile::create(&path).unwrap();
        assert_ne!(x.tmp_path(), y.tmp_path());
        x.write_all(b"x").unwrap();
        y.write_all(b"y").unwrap();
        x.commit().unwrap();
        y.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"y");
        assert_eq!(names(dir.path()), ["t"]);
    }

    #[test]
    fn relative_paths_sync_the_current_directory() {
        sync_dir(Path::new("bare-name")).unwrap();
        assert_eq!(parent_dir(Path::new("bare-name")), Path::new("."));
        assert_eq!(parent_dir(Path::new("a/b")), Path::new("a"));
    }
}
