//! A job's outcome and its result hash (the canonical encoding of `/outputs`).

use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{MarketError, MarketResult, io_at};

/// How a job ended. Every variant is a defined result: each has a code in the result hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "code")]
pub enum Outcome {
    /// The entrypoint returned (`0`) or the job called `proc_exit(code)`.
    Exited(i32),
    /// The fuel ran out.
    OutOfFuel,
    /// A memory or table grew (or was declared) beyond the job's memory limit.
    MemoryLimit,
    /// The wall-time limit passed (the one outcome that depends on the machine).
    Timeout,
    /// The job tried to hold more bytes or create more entries under `/outputs` than its limits
    /// allow, or to write more than the captured stdout/stderr hold.
    OutputLimit,
    /// The module does not decode, validate or compile, or lacks the entrypoint `() -> ()`.
    InvalidModule,
    /// The module imports something the executor does not provide (only
    /// `wasi_snapshot_preview1` functions are provided).
    MissingImport,
    /// Any other trap.
    Trap(TrapKind),
}

/// The wasm trap behind [`Outcome::Trap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrapKind {
    /// The wasm call stack is exhausted (512 KiB of native stack).
    StackOverflow,
    /// A load or store out of the linear memory's bounds.
    MemoryOutOfBounds,
    /// A table access out of bounds.
    TableOutOfBounds,
    /// An indirect call through a null table element.
    IndirectCallToNull,
    /// An indirect call with the wrong signature.
    BadSignature,
    /// Integer overflow (`i32.div_s` of `MIN / -1`, ...).
    IntegerOverflow,
    /// Integer division by zero.
    IntegerDivisionByZero,
    /// A float-to-int conversion out of range.
    BadConversionToInteger,
    /// `unreachable` executed.
    Unreachable,
    /// Anything else (a host function that failed the call, an unlisted trap).
    Other,
}

impl TrapKind {
    /// The code in the result encoding.
    pub fn code(self) -> u8 {
        match self {
            TrapKind::StackOverflow => 1,
            TrapKind::MemoryOutOfBounds => 2,
            TrapKind::TableOutOfBounds => 3,
            TrapKind::IndirectCallToNull => 4,
            TrapKind::BadSignature => 5,
            TrapKind::IntegerOverflow => 6,
            TrapKind::IntegerDivisionByZero => 7,
            TrapKind::BadConversionToInteger => 8,
            TrapKind::Unreachable => 9,
            TrapKind::Other => 255,
        }
    }

    pub(crate) fn from_wasmtime(trap: wasmtime::Trap) -> TrapKind {
        use wasmtime::Trap as T;
        match trap {
            T::StackOverflow => TrapKind::StackOverflow,
            T::MemoryOutOfBounds => TrapKind::MemoryOutOfBounds,
            T::TableOutOfBounds => TrapKind::TableOutOfBounds,
            T::IndirectCallToNull => TrapKind::IndirectCallToNull,
            T::BadSignature => TrapKind::BadSignature,
            T::IntegerOverflow => TrapKind::IntegerOverflow,
            T::IntegerDivisionByZero => TrapKind::IntegerDivisionByZero,
            T::BadConversionToInteger => TrapKind::BadConversionToInteger,
            T::UnreachableCodeReached => TrapKind::Unreachable,
            _ => TrapKind::Other,
        }
    }
}

impl Outcome {
    /// The outcome's kind code and value in the result encoding: `(0, exit code)` for
    /// [`Outcome::Exited`], `(1..=6, 0)` for the limits and module faults, `(7, trap code)` for
    /// [`Outcome::Trap`].
    pub fn code(self) -> (u8, i32) {
        match self {
            Outcome::Exited(c) => (0, c),
            Outcome::OutOfFuel => (1, 0),
            Outcome::MemoryLimit => (2, 0),
            Outcome::Timeout => (3, 0),
            Outcome::OutputLimit => (4, 0),
            Outcome::InvalidModule => (5, 0),
            Outcome::MissingImport => (6, 0),
            Outcome::Trap(t) => (7, i32::from(t.code())),
        }
    }

    /// Whether the job ran to an exit (its outputs are part of its result).
    pub fn exited(self) -> bool {
        matches!(self, Outcome::Exited(_))
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Exited(c) => write!(f, "exited with code {c}"),
            Outcome::OutOfFuel => f.write_str("out of fuel"),
            Outcome::MemoryLimit => f.write_str("over its memory limit"),
            Outcome::Timeout => f.write_str("over its wall-time limit"),
            Outcome::OutputLimit => f.write_str("over its output limit"),
            Outcome::InvalidModule => f.write_str("invalid module"),
            Outcome::MissingImport => {
                f.write_str("imports something the executor does not provide")
            }
            Outcome::Trap(t) => write!(f, "trapped ({t:?})"),
        }
    }
}

/// The result hash: what providers commit and reveal, and what a client checks downloaded
/// outputs against.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResultHash(pub [u8; 32]);

impl fmt::Display for ResultHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ResultHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResultHash({self})")
    }
}

impl std::str::FromStr for ResultHash {
    type Err = MarketError;
    fn from_str(s: &str) -> MarketResult<Self> {
        hex::decode(s.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .map(ResultHash)
            .ok_or_else(|| {
                MarketError::JobSpec(format!("{s:?} is not a result hash (64 hex digits)"))
            })
    }
}

/// What [`hash_outputs`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputSummary {
    /// Regular files hashed.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Bounds on what [`hash_outputs`] reads (a downloaded directory is untrusted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputBounds {
    /// Most file bytes in all.
    pub max_bytes: u64,
    /// Most files and directories in all.
    pub max_entries: u64,
}

/// The result hash of `outcome` with the outputs in `outputs` (read only when the outcome is
/// [`Outcome::Exited`]; `None` hashes no files, as for every other outcome).
///
/// The encoding, hashed with `BLAKE3_derive_key("lode/compute/result", ·)`:
///
/// ```text
/// kind: u8 ‖ value: i32 LE                    (Outcome::code)
/// n: u64 LE                                   (the number of files; 0 unless Exited)
/// n × ( len(path): u64 LE ‖ path ‖ len(content): u64 LE ‖ content )
/// ```
///
/// `path` is the file's path relative to `/outputs`, components joined with `/` (UTF-8 bytes);
/// files are in bytewise order of `path`. Only regular files count: directories (empty ones
/// included) contribute only through their files' paths. Anything else (a symlink, a device) is an
/// error: the executor never lets a job make one.
pub fn hash_outputs(
    outcome: Outcome,
    outputs: Option<&Path>,
    bounds: OutputBounds,
) -> MarketResult<(ResultHash, OutputSummary)> {
    let mut files = Vec::new();
    if let (true, Some(dir)) = (outcome.exited(), outputs) {
        collect_files(dir, bounds, &mut files)?;
    }
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut h = blake3::Hasher::new_derive_key("lode/compute/result");
    let (kind, value) = outcome.code();
    h.update(&[kind]);
    h.update(&value.to_le_bytes());
    h.update(&(files.len() as u64).to_le_bytes());
    let mut summary = OutputSummary::default();
    let mut buf = vec![0u8; 1 << 16];
    for (rel, path, len) in &files {
        h.update(&(rel.len() as u64).to_le_bytes());
        h.update(rel.as_bytes());
        h.update(&len.to_le_bytes());
        let mut f = fs::File::open(path).map_err(io_at(path))?;
        let mut left = *len;
        while left > 0 {
            let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(0);
            let chunk = buf.get_mut(..want).unwrap_or_default();
            f.read_exact(chunk).map_err(io_at(path))?;
            h.update(chunk);
            left = left.saturating_sub(want as u64);
        }
        // The file must not have grown since it was listed.
        let mut probe = [0u8; 1];
        if f.read(&mut probe).map_err(io_at(path))? != 0 {
            return Err(MarketError::Executor(format!(
                "{} changed while it was hashed",
                path.display()
            )));
        }
        summary.files = summary.files.saturating_add(1);
        summary.bytes = summary.bytes.saturating_add(*len);
    }
    Ok((ResultHash(*h.finalize().as_bytes()), summary))
}

/// Every regular file below `root` as (relative path, host path, length), iteratively.
fn collect_files(
    root: &Path,
    bounds: OutputBounds,
    out: &mut Vec<(String, PathBuf, u64)>,
) -> MarketResult<()> {
    let mut stack: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    let mut entries = 0u64;
    let mut bytes = 0u64;
    while let Some((dir, prefix)) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(io_at(&dir))? {
            let entry = entry.map_err(io_at(&dir))?;
            let path = entry.path();
            let name = entry.file_name().into_string().map_err(|n| {
                MarketError::Executor(format!("{}: the name {n:?} is not UTF-8", dir.display()))
            })?;
            entries = entries.saturating_add(1);
            if entries > bounds.max_entries {
                return Err(MarketError::LimitExceeded(format!(
                    "outputs at {} hold over {} entries",
                    root.display(),
                    bounds.max_entries
                )));
            }
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let meta = fs::symlink_metadata(&path).map_err(io_at(&path))?;
            if meta.is_dir() {
                stack.push((path, rel));
            } else if meta.is_file() {
                bytes = bytes.saturating_add(meta.len());
                if bytes > bounds.max_bytes {
                    return Err(MarketError::LimitExceeded(format!(
                        "outputs at {} hold over {} bytes",
                        root.display(),
                        bounds.max_bytes
                    )));
                }
                out.push((rel, path, meta.len()));
            } else {
                return Err(MarketError::Executor(format!(
                    "{} is neither a file nor a directory",
                    path.display()
                )));
            }
        }
    }
    Ok(())
}
