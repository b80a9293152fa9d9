//! The node's libp2p identity: an ed25519 key kept in a file of the node's directory.
//!
//! The file holds the key's protobuf encoding (libp2p's `Keypair::to_protobuf_encoding`), is
//! written through [`lode_proofs::durable`] (complete under its final name) and is readable by its
//! owner only (mode `0600`, set before the secret is written). A key file that others may read is
//! narrowed to `0600` when it is loaded.

use std::io::Write;
use std::path::Path;

use libp2p::identity::{KeyType, Keypair};
use lode_proofs::durable::AtomicFile;

use super::error::{NetError, NetResult};

/// The longest key file read (an ed25519 key encodes in 68 bytes).
const MAX_KEY_FILE: u64 = 4096;

/// A fresh ed25519 keypair.
pub fn generate_keypair() -> Keypair {
    Keypair::generate_ed25519()
}

/// Loads the ed25519 keypair at `path`, or creates one there when the file does not exist.
///
/// # Errors
/// [`NetError::Key`] when the file cannot be read or written, is not a protobuf-encoded ed25519
/// key, or is implausibly large.
pub fn load_or_create_keypair(path: &Path) -> NetResult<Keypair> {
    match std::fs::metadata(path) {
        Ok(_) => load_keypair(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keypair = generate_keypair();
            save_keypair(path, &keypair)?;
            Ok(keypair)
        }
        Err(e) => Err(key_error(path, e)),
    }
}

/// Loads the ed25519 keypair at `path`.
///
/// # Errors
/// [`NetError::Key`] when the file cannot be read, is not a protobuf-encoded ed25519 key, or is
/// implausibly large.
pub fn load_keypair(path: &Path) -> NetResult<Keypair> {
    let metadata = std::fs::metadata(path).map_err(|e| key_error(path, e))?;
    if metadata.len() > MAX_KEY_FILE {
        return Err(key_error(
            path,
            format!("{} bytes is too large for a key", metadata.len()),
        ));
    }
    restrict_permissions(path, &metadata)?;
    let bytes = std::fs::read(path).map_err(|e| key_error(path, e))?;
    let keypair = Keypair::from_protobuf_encoding(&bytes).map_err(|e| key_error(path, e))?;
    if keypair.key_type() != KeyType::Ed25519 {
        return Err(key_error(
            path,
            format!("a {:?} key; lode node keys are ed25519", keypair.key_type()),
        ));
    }
    Ok(keypair)
}

/// Writes `keypair` to `path` durably, readable by its owner only. An existing file is replaced.
///
/// # Errors
/// [`NetError::Key`] when the key cannot be encoded or the file cannot be written.
pub fn save_keypair(path: &Path, keypair: &Keypair) -> NetResult<()> {
    let bytes = keypair
        .to_protobuf_encoding()
        .map_err(|e| key_error(path, e))?;
    let mut file = AtomicFile::create(path).map_err(|e| key_error(path, e))?;
    set_owner_only(file.file().map_err(|e| key_error(path, e))?).map_err(|e| key_error(path, e))?;
    file.write_all(&bytes).map_err(|e| key_error(path, e))?;
    file.commit().map_err(|e| key_error(path, e))
}

fn key_error(path: &Path, reason: impl std::fmt::Display) -> NetError {
    NetError::Key {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

#[cfg(unix)]
fn set_owner_only(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_owner_only(_: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn restrict_permissions(path: &Path, metadata: &std::fs::Metadata) -> NetResult<()> {
    use std::os::unix::fs::PermissionsExt;
    if metadata.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "node key file was readable by others; narrowing it to 0600");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| key_error(path, e))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict_permissions(_: &Path, _: &std::fs::Metadata) -> NetResult<()> {
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn created_once_then_loaded_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let created = load_or_create_keypair(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = load_or_create_keypair(&path).unwrap();
        assert_eq!(created.public().to_peer_id(), loaded.public().to_peer_id());
        assert_eq!(loaded.key_type(), KeyType::Ed25519);
    }

    #[test]
    fn damaged_or_exposed_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        std::fs::write(&path, b"not a key").unwrap();
        assert!(matches!(load_keypair(&path), Err(NetError::Key { .. })));
        std::fs::write(&path, vec![0u8; 5000]).unwrap();
        assert!(matches!(load_keypair(&path), Err(NetError::Key { .. })));

        let keypair = generate_keypair();
        save_keypair(&path, &keypair).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let loaded = load_keypair(&path).unwrap();
        assert_eq!(loaded.public(), keypair.public());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
