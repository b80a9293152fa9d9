//! The provider's store of job modules: WASM bytes by their BLAKE3 hash, as clients upload them.

use std::path::{Path, PathBuf};

use crate::error::{MarketError, MarketResult};

/// Modules on disk, `<dir>/<blake3 hex>.wasm`, each written atomically and checked on the way in
/// and on the way out.
#[derive(Clone, Debug)]
pub struct ModuleStore {
    dir: PathBuf,
    max_bytes: u64,
}

impl ModuleStore {
    /// Opens (creating) the store at `dir`, taking modules of at most `max_bytes`.
    ///
    /// # Errors
    /// [`MarketError::Io`] when the directory cannot be created.
    pub fn open(dir: impl AsRef<Path>, max_bytes: u64) -> MarketResult<ModuleStore> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|source| MarketError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(ModuleStore { dir, max_bytes })
    }

    /// The largest module it takes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn path(&self, hash: &[u8; 32]) -> PathBuf {
        self.dir.join(format!("{}.wasm", hex::encode(hash)))
    }

    /// Stores `bytes` if they hash to `expected`.
    ///
    /// # Errors
    /// [`MarketError::Config`] naming the mismatch or the size; [`MarketError::Io`].
    pub fn put(&self, expected: &[u8; 32], bytes: &[u8]) -> MarketResult<()> {
        if bytes.len() as u64 > self.max_bytes {
            return Err(MarketError::Config(format!(
                "a module of {} bytes is over this provider's {} byte limit",
                bytes.len(),
                self.max_bytes
            )));
        }
        let got = blake3::hash(bytes);
        if got.as_bytes() != expected {
            return Err(MarketError::Config(format!(
                "the module's bytes hash to {}, not {}",
                got.to_hex(),
                hex::encode(expected)
            )));
        }
        let path = self.path(expected);
        lode_proofs::durable::write_atomic(&path, bytes).map_err(|e| MarketError::Io {
            path,
            source: std::io::Error::other(e.to_string()),
        })
    }

    /// The module with this hash, checked; `None` when absent.
    ///
    /// # Errors
    /// [`MarketError::Io`]; [`MarketError::Config`] when the file on disk no longer matches.
    pub fn get(&self, hash: &[u8; 32]) -> MarketResult<Option<Vec<u8>>> {
        let path = self.path(hash);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(MarketError::Io { path, source }),
        };
        if blake3::hash(&bytes).as_bytes() != hash {
            return Err(MarketError::Config(format!(
                "{} is damaged: its bytes no longer hash to its name",
                path.display()
            )));
        }
        Ok(Some(bytes))
    }

    /// Whether the store holds the module.
    pub fn has(&self, hash: &[u8; 32]) -> bool {
        self.path(hash).is_file()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn modules_are_stored_by_hash_and_checked_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModuleStore::open(dir.path(), 16).unwrap();
        let bytes = b"\0asm\x01\0\0\0";
        let hash = *blake3::hash(bytes).as_bytes();
        assert!(store.get(&hash).unwrap().is_none());
        let wrong = store.put(&[7; 32], bytes).unwrap_err().to_string();
        assert!(wrong.contains("hash to"), "{wrong}");
        let big = store.put(&hash, &[0; 17]).unwrap_err().to_string();
        assert!(big.contains("limit"), "{big}");
        store.put(&hash, bytes).unwrap();
        assert!(store.has(&hash));
        assert_eq!(store.get(&hash).unwrap().unwrap(), bytes);
        std::fs::write(
            dir.path().join(format!("{}.wasm", hex::encode(hash))),
            b"evil",
        )
        .unwrap();
        assert!(
            store
                .get(&hash)
                .unwrap_err()
                .to_string()
                .contains("damaged")
        );
    }
}
