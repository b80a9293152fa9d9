//! Where the retrieval server reads pieces from: a [`PieceSource`] finds a piece's payload by its
//! piece CID and opens a [`PieceReader`] on it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use lode_proofs::cid::PieceCid;

use crate::error::MarketResult;

/// A piece's payload, read at any offset.
pub trait PieceReader: Send {
    /// The payload's length in bytes (what `GET /piece/<cid>` returns in full).
    fn len(&self) -> u64;

    /// Whether the payload is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads up to `buf.len()` bytes at `offset`; `Ok(0)` only at the end.
    ///
    /// # Errors
    /// The storage's I/O error.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
}

/// Finds pieces by their CID.
pub trait PieceSource: Send + Sync + 'static {
    /// Opens `piece`'s payload; `None` when this provider does not hold it.
    ///
    /// # Errors
    /// A storage failure (an unreadable index, an unseal that failed).
    fn open(&self, piece: &PieceCid) -> MarketResult<Option<Box<dyn PieceReader>>>;
}

/// A payload in a plain file (the whole file).
#[derive(Debug)]
pub struct FileReader {
    file: File,
    len: u64,
}

impl FileReader {
    /// Opens `path`.
    ///
    /// # Errors
    /// The I/O error of opening it or reading its length.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(FileReader { file, len })
    }
}

impl PieceReader for FileReader {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let left = usize::try_from(self.len.saturating_sub(offset)).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        let Some(buf) = buf.get_mut(..want) else {
            return Ok(0);
        };
        self.file.read_at(buf, offset)
    }
}

/// Pieces kept as files named by their piece CID in one directory (`<dir>/<piece CID>`): the
/// payloads a provider received before they are sealed, and tests.
#[derive(Clone, Debug)]
pub struct DirPieces {
    dir: PathBuf,
}

impl DirPieces {
    /// Pieces under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirPieces { dir: dir.into() }
    }

    /// Where `piece`'s payload lives.
    pub fn path(&self, piece: &PieceCid) -> PathBuf {
        self.dir.join(piece.to_string())
    }
}

impl PieceSource for DirPieces {
    fn open(&self, piece: &PieceCid) -> MarketResult<Option<Box<dyn PieceReader>>> {
        match FileReader::open(&self.path(piece)) {
            Ok(r) => Ok(Some(Box::new(r))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(crate::error::MarketError::Io {
                path: self.path(piece),
                source: e,
            }),
        }
    }
}
