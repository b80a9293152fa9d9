//! The wallet: a directory of BLS secret keys (a *keystore*), and the transfers they sign.
//!
//! # Layout
//!
//! ```text
//! <wallet dir>/            mode 0700
//!   l3<public key hex>     one file per key, mode 0600: {"type":"bls","secret":"<hex>"}
//!   default                the default address (`l3…`), one line
//! ```
//!
//! A key file is named by the account address its key controls ([`Address::Bls`]); its secret is
//! the 32-byte little-endian scalar of [`SecretKey::to_bytes`], in hex. Every file is written
//! under a temporary name created with mode `0600`, fsynced, then renamed into place and the
//! directory fsynced (the [`lode_proofs::durable`] rule), so a key file under its final name is
//! whole and was never readable by others. A key file or directory that others may read is
//! refused, with the `chmod` that fixes it; a file whose key does not match its name is refused
//! too.
//!
//! The directory is `--wallet DIR`, else `$LODE_WALLET`, else `<data dir>/lode/wallet`
//! ([`resolve_dir`]). Secrets never reach a log or an error message: [`SecretKey`]'s `Debug`
//! prints no key material, and nothing here displays one.
//!
//! # Transfers
//!
//! [`sign_transfer`] builds a plain transfer (`Method::Send`) with the network's minimum gas
//! price and [`transfer_gas_limit`] unless told otherwise, and signs it for the network;
//! [`wait_for_inclusion`] follows a node's chain until a pushed message is in a block.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lode_chain::Policy;
use lode_chain::crypto::{SECRET_KEY_LEN, SecretKey};
use lode_chain::message::{Message, Method, SignedMessage};
use lode_chain::types::{Address, Epoch, TokenAmount};
use serde::{Deserialize, Serialize};

use crate::rpc::client::{ClientError, NodeClient};
use crate::rpc::types::{parse_address, serde_hex};

/// The environment variable naming the wallet directory.
pub const ENV_WALLET: &str = "LODE_WALLET";
/// The file naming the default address.
pub const DEFAULT_FILE: &str = "default";
/// The key type written in key files.
pub const KEY_TYPE_BLS: &str = "bls";
/// Largest key or default file read (a key file is about 100 bytes).
const MAX_FILE_BYTES: u64 = 4096;

/// What the wallet can fail with; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A key file or the wallet directory may be read by other users.
    #[error(
        "{path} may be read by other users (mode {mode:03o}): run `chmod {fix:03o} {path}` and retry"
    )]
    Insecure {
        /// The file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// The mode it must have: `0600` for a key file, `0700` for the directory.
        fix: u32,
    },
    /// A key or default file does not hold what it should.
    #[error("{path} is not a lode wallet file: {why}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Text given as a secret key is not one.
    #[error(
        "not a BLS secret key: {0}; expected 64 hex digits or a key file ({{\"type\":\"bls\",\"secret\":\"<hex>\"}})"
    )]
    InvalidSecret(String),
    /// No key for this address in the wallet.
    #[error(
        "the wallet {dir} has no key for {address}: `lode wallet list` shows its keys, `lode wallet import` adds one"
    )]
    UnknownAddress {
        /// The wallet directory.
        dir: PathBuf,
        /// The address asked for.
        address: String,
    },
    /// An id address where a key address is needed.
    #[error(
        "{0} is an id address; wallet keys are named by their key address (l3…): see `lode wallet list`"
    )]
    NotKeyAddress(String),
    /// No default address is set.
    #[error(
        "no default wallet in {dir}: run `lode wallet new --default` or `lode wallet default <address>`"
    )]
    NoDefault {
        /// The wallet directory.
        dir: PathBuf,
    },
    /// No directory for the wallet could be found.
    #[error("cannot find a data directory for the wallet: pass --wallet DIR or set {ENV_WALLET}")]
    NoDataDir,
    /// The operating system gave no randomness for a new key.
    #[error("the operating system gave no randomness for a new key: {0}")]
    Randomness(String),
    /// A transfer cannot be built.
    #[error("{0}")]
    Transfer(String),
    /// A call to the node failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A message was not seen in a block in time.
    #[error(
        "message {id} was not included in a block within {waited:?} (up to epoch {epoch}): it may still be pending (`lode mpool pending`)"
    )]
    NotIncluded {
        /// The message id (hex).
        id: String,
        /// How long it was waited for.
        waited: Duration,
        /// The last epoch looked at.
        epoch: Epoch,
    },
}

/// The wallet's result type.
pub type WalletResult<T> = Result<T, WalletError>;

impl WalletError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalletError + '_ {
        move |source| WalletError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn malformed(path: &Path, why: impl Into<String>) -> WalletError {
        WalletError::Malformed {
            path: path.to_path_buf(),
            why: why.into(),
        }
    }
}

/// A key file's content.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    /// Always [`KEY_TYPE_BLS`].
    #[serde(rename = "type")]
    kind: String,
    /// Hex of the 32-byte little-endian secret scalar.
    secret: String,
}

/// Parses a secret key from text: 64 hex digits (optionally `0x`-prefixed), or a key file's JSON
/// (`{"type":"bls","secret":"<hex>"}`, what [`Keystore`] writes); surrounding whitespace is
/// ignored.
///
/// # Errors
/// [`WalletError::InvalidSecret`] saying what is wrong (never echoing the text).
pub fn parse_secret(text: &str) -> WalletResult<SecretKey> {
    let text = text.trim();
    let hex_text = if text.starts_with('{') {
        let file: KeyFile = serde_json::from_str(text)
            .map_err(|e| WalletError::InvalidSecret(format!("malformed key file JSON ({e})")))?;
        if file.kind != KEY_TYPE_BLS {
            return Err(WalletError::InvalidSecret(format!(
                "key type {:?} is not {KEY_TYPE_BLS:?}",
                file.kind
            )));
        }
        file.secret
    } else {
        text.to_string()
    };
    let hex_text = hex_text.strip_prefix("0x").unwrap_or(&hex_text);
    let mut bytes = [0u8; SECRET_KEY_LEN];
    hex::decode_to_slice(hex_text, &mut bytes).map_err(|_| {
        WalletError::InvalidSecret(format!(
            "{} characters that are not {} hex bytes",
            hex_text.len(),
            SECRET_KEY_LEN
        ))
    })?;
    SecretKey::from_bytes(&bytes).map_err(|e| WalletError::InvalidSecret(e.to_string()))
}

/// The key file content for `key` (JSON, with a trailing newline).
fn key_file_text(key: &SecretKey) -> String {
    let file = KeyFile {
        kind: KEY_TYPE_BLS.to_string(),
        secret: hex::encode(key.to_bytes()),
    };
    // A struct of two strings always serialises.
    let json = serde_json::to_string(&file).unwrap_or_default();
    format!("{json}\n")
}

/// The wallet directory: `flag` (`--wallet DIR`) if given, else the environment's
/// [`ENV_WALLET`] (looked up through `env`), else [`default_dir`].
///
/// # Errors
/// [`WalletError::NoDataDir`] when none of them gives a directory.
pub fn resolve_dir(
    flag: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
) -> WalletResult<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir.to_path_buf());
    }
    if let Some(dir) = env(ENV_WALLET).filter(|v| !v.trim().is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    default_dir()
}

/// `<data dir>/lode/wallet`, the data directory being the platform's
/// (`$XDG_DATA_HOME` or `~/.local/share` on Linux).
///
/// # Errors
/// [`WalletError::NoDataDir`] when the platform has none (no home directory).
pub fn default_dir() -> WalletResult<PathBuf> {
    dirs::data_dir()
        .map(|d| d.join("lode").join("wallet"))
        .ok_or(WalletError::NoDataDir)
}

/// A directory of secret keys, one file per key address, and a default address.
#[derive(Debug, Clone)]
pub struct Keystore {
    dir: PathBuf,
}

impl Keystore {
    /// Opens the keystore in `dir`, creating it (mode `0700`, parents as needed) when missing.
    ///
    /// # Errors
    /// [`WalletError::Io`] when it cannot be created or read, or is not a directory;
    /// [`WalletError::Insecure`] when other users may read it.
    pub fn open(dir: impl AsRef<Path>) -> WalletResult<Keystore> {
        let dir = dir.as_ref().to_path_buf();
        match std::fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => check_mode(&dir, &meta, 0o700)?,
            Ok(_) => {
                return Err(WalletError::Io {
                    path: dir,
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotADirectory,
                        "not a directory: a wallet is a directory of key files",
                    ),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(WalletError::io(parent))?;
                }
                create_private_dir(&dir)?;
            }
            Err(e) => return Err(WalletError::io(&dir)(e)),
        }
        Ok(Keystore { dir })
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the key of `address` is kept.
    ///
    /// # Errors
    /// [`WalletError::NotKeyAddress`] for an id address.
    pub fn key_path(&self, address: &Address) -> WalletResult<PathBuf> {
        match address {
            Address::Bls(_) => Ok(self.dir.join(address.to_string())),
            Address::Id(_) => Err(WalletError::NotKeyAddress(address.to_string())),
        }
    }

    /// Generates a key from the operating system's randomness and stores it; returns its address.
    ///
    /// # Errors
    /// [`WalletError::Randomness`], or [`WalletError::Io`] when the file cannot be written.
    pub fn new_key(&self) -> WalletResult<Address> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| WalletError::Randomness(e.to_string()))?;
        let key = SecretKey::from_seed(&seed);
        self.import(&key)
    }

    /// Stores `key` (nothing changes when it is already there); returns its address.
    ///
    /// # Errors
    /// [`WalletError::Io`] when the file cannot be written; the errors of [`Keystore::get`] when
    /// a file for the address exists and cannot be read.
    pub fn import(&self, key: &SecretKey) -> WalletResult<Address> {
        let address = Address::Bls(key.public_key());
        let path = self.key_path(&address)?;
        match std::fs::symlink_metadata(&path) {
            // Already kept: read it back, so a damaged or loosely permitted file is reported.
            Ok(_) => {
                self.get(&address)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_private(&path, key_file_text(key).as_bytes())?;
            }
            Err(e) => return Err(WalletError::io(&path)(e)),
        }
        Ok(address)
    }

    /// The addresses with a key here, sorted. Files that do not name a key address (temporary
    /// files, [`DEFAULT_FILE`], anything else) are skipped.
    ///
    /// # Errors
    /// [`WalletError::Io`] when the directory cannot be read.
    pub fn list(&self) -> WalletResult<Vec<Address>> {
        let entries = std::fs::read_dir(&self.dir).map_err(WalletError::io(&self.dir))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(WalletError::io(&self.dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with("l3") {
                continue;
            }
            if let Ok(address @ Address::Bls(_)) = parse_address(name) {
                out.push(address);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Whether a key for `address` is kept here (without reading it).
    pub fn contains(&self, address: &Address) -> bool {
        self.key_path(address).is_ok_and(|p| p.is_file())
    }

    /// The secret key of `address`.
    ///
    /// # Errors
    /// [`WalletError::UnknownAddress`] when there is none; [`WalletError::Insecure`] when its
    /// file may be read by others; [`WalletError::Malformed`] when the file holds no key, or the
    /// key of another address.
    pub fn get(&self, address: &Address) -> WalletResult<SecretKey> {
        let path = self.key_path(address)?;
        let text = match read_private(&path)? {
            Some(t) => t,
            None => {
                return Err(WalletError::UnknownAddress {
                    dir: self.dir.clone(),
                    address: address.to_string(),
                });
            }
        };
        let key = parse_secret(&text).map_err(|e| match e {
            WalletError::InvalidSecret(why) => WalletError::malformed(&path, why),
            other => other,
        })?;
        if Address::Bls(key.public_key()) != *address {
            return Err(WalletError::malformed(
                &path,
                "it holds the key of another address (renamed?): name it after its key's address",
            ));
        }
        Ok(key)
    }

    /// The default address, if one is set.
    ///
    /// # Errors
    /// [`WalletError::Io`] or [`WalletError::Malformed`] when the default file cannot be read or
    /// names no key address.
    pub fn default_address_opt(&self) -> WalletResult<Option<Address>> {
        let path = self.dir.join(DEFAULT_FILE);
        let text = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(WalletError::io(&path)(e)),
        };
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(WalletError::malformed(&path, "too large"));
        }
        let text = String::from_utf8_lossy(&text);
        match parse_address(text.trim()) {
            Ok(address @ Address::Bls(_)) => Ok(Some(address)),
            Ok(_) => Err(WalletError::malformed(&path, "it names an id address")),
            Err(e) => Err(WalletError::malformed(&path, e.to_string())),
        }
    }

    /// The default address.
    ///
    /// # Errors
    /// [`WalletError::NoDefault`] when none is set; [`WalletError::UnknownAddress`] when its key
    /// is gone; as [`Keystore::default_address_opt`].
    pub fn default_address(&self) -> WalletResult<Address> {
        let address = self.default_address_opt()?.ok_or(WalletError::NoDefault {
            dir: self.dir.clone(),
        })?;
        if !self.contains(&address) {
            return Err(WalletError::UnknownAddress {
                dir: self.dir.clone(),
                address: address.to_string(),
            });
        }
        Ok(address)
    }

    /// Makes `address`, whose key must be kept here, the default.
    ///
    /// # Errors
    /// [`WalletError::UnknownAddress`] when its key is not here; [`WalletError::Io`] when the
    /// default file cannot be written.
    pub fn set_default(&self, address: &Address) -> WalletResult<()> {
        // Only a key that can be used becomes the default.
        self.get(address)?;
        let path = self.dir.join(DEFAULT_FILE);
        write_private(&path, format!("{address}\n").as_bytes())
    }
}

/// What a transfer sends; [`sign_transfer`] fills in the gas terms left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// The sender (its key signs).
    pub from: Address,
    /// The receiver (a new key address gets an account).
    pub to: Address,
    /// How much.
    pub value: TokenAmount,
    /// The sender's next nonce (`mpool_nonce`).
    pub nonce: u64,
    /// Gas limit; `None` for [`transfer_gas_limit`].
    pub gas_limit: Option<u64>,
    /// Atto per gas unit; `None` for the policy's minimum.
    pub gas_price: Option<TokenAmount>,
}

/// The gas limit a plain transfer is given by default: twice what the chain charges to include
/// it (`gas_base + gas_per_byte × size`, sized with the largest nonce and gas terms). Only the
/// gas used is paid; the limit bounds it and must be covered by the balance.
pub fn transfer_gas_limit(policy: &Policy, from: &Address, to: &Address) -> u64 {
    let draft = Message {
        from: *from,
        to: *to,
        nonce: u64::MAX,
        value: TokenAmount(u128::MAX),
        method: Method::Send,
        gas_limit: u64::MAX,
        gas_price: TokenAmount(u128::MAX),
    };
    // The signature is fixed-size: any key gives the size.
    let size = draft
        .sign(&policy.network, &SecretKey::from_seed(&[1; 32]))
        .encoded_len() as u64;
    policy
        .gas_base
        .saturating_add(policy.gas_per_byte.saturating_mul(size))
        .saturating_mul(2)
}

/// Builds the plain transfer (`Method::Send`) `t` and signs it with `key` for `policy`'s network.
///
/// # Errors
/// [`WalletError::Transfer`] when `key` does not control `t.from`, the gas price is below the
/// policy's minimum, or the gas limit is below what including the message costs.
pub fn sign_transfer(
    policy: &Policy,
    t: &Transfer,
    key: &SecretKey,
) -> WalletResult<SignedMessage> {
    if Address::Bls(key.public_key()) != t.from {
        return Err(WalletError::Transfer(format!(
            "the key given does not control the sender {}",
            t.from
        )));
    }
    let gas_price = t.gas_price.unwrap_or(policy.min_gas_price);
    if gas_price < policy.min_gas_price {
        return Err(WalletError::Transfer(format!(
            "gas price {} atto is below the network's minimum {} atto",
            gas_price.0, policy.min_gas_price.0
        )));
    }
    let gas_limit = t
        .gas_limit
        .unwrap_or_else(|| transfer_gas_limit(policy, &t.from, &t.to));
    let message = Message {
        from: t.from,
        to: t.to,
        nonce: t.nonce,
        value: t.value,
        method: Method::Send,
        gas_limit,
        gas_price,
    };
    let signed = message.sign(&policy.network, key);
    let needed = policy.gas_base.saturating_add(
        policy
            .gas_per_byte
            .saturating_mul(signed.encoded_len() as u64),
    );
    if gas_limit < needed {
        return Err(WalletError::Transfer(format!(
            "gas limit {gas_limit} is below the {needed} this message needs to be included"
        )));
    }
    Ok(signed)
}

/// Where a message was included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inclusion {
    /// The epoch of the tipset holding it.
    pub epoch: Epoch,
    /// The block holding it.
    #[serde(with = "serde_hex::hash")]
    pub block: [u8; 32],
    /// Whether the sender's nonce has passed the message's, i.e. the chain applied it rather than
    /// rejecting it at its system checks (nonce, funds, signature).
    pub applied: bool,
}

/// Waits until the message `id` (sent by `from` with `nonce`) is in a block of the node's
/// canonical chain after epoch `since` (the head's epoch when it was pushed), looking at each
/// new tipset as the head advances, every `poll`, for at most `timeout`.
///
/// # Errors
/// [`WalletError::NotIncluded`] after `timeout`; [`WalletError::Client`] when a call fails.
pub async fn wait_for_inclusion(
    client: &NodeClient,
    id: [u8; 32],
    from: &Address,
    nonce: u64,
    since: Epoch,
    timeout: Duration,
    poll: Duration,
) -> WalletResult<Inclusion> {
    let started = tokio::time::Instant::now();
    let not_included = |epoch: Epoch| WalletError::NotIncluded {
        id: hex::encode(id),
        waited: started.elapsed(),
        epoch,
    };
    let mut next = since.saturating_add(1);
    loop {
        let head = client.chain_head().await?;
        while next <= head.epoch {
            if started.elapsed() >= timeout {
                return Err(not_included(next.saturating_sub(1)));
            }
            if let Some(tipset) = client.chain_tipset_by_height(next).await? {
                for header in &tipset.blocks {
                    let Some(block) = client.chain_get_block(&header.id).await? else {
                        continue;
                    };
                    if block.messages.contains(&id) {
                        let applied = client
                            .state_actor(from)
                            .await?
                            .is_some_and(|a| a.nonce > nonce);
                        return Ok(Inclusion {
                            epoch: next,
                            block: header.id,
                            applied,
                        });
                    }
                }
            }
            match next.checked_add(1) {
                Some(n) => next = n,
                None => break,
            }
        }
        let waited = started.elapsed();
        if waited >= timeout {
            return Err(not_included(head.epoch));
        }
        tokio::time::sleep(poll.min(timeout.saturating_sub(waited))).await;
    }
}

/// Creates `dir` with mode `0700`.
fn create_private_dir(dir: &Path) -> WalletResult<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(dir) {
        Ok(()) => Ok(()),
        // Created by someone else meanwhile: check it like an existing one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let meta = std::fs::metadata(dir).map_err(WalletError::io(dir))?;
            check_mode(dir, &meta, 0o700)
        }
        Err(e) => Err(WalletError::io(dir)(e)),
    }
}

/// Refuses `path` when its mode grants anything to the group or others.
#[cfg(unix)]
fn check_mode(path: &Path, meta: &std::fs::Metadata, fix: u32) -> WalletResult<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(WalletError::Insecure {
            path: path.to_path_buf(),
            mode,
            fix,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_: &Path, _: &std::fs::Metadata, _: u32) -> WalletResult<()> {
    Ok(())
}

/// Reads a private file: `None` when it does not exist; refused when it is not a regular file,
/// is too large, or others may read it.
fn read_private(path: &Path) -> WalletResult<Option<String>> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(WalletError::io(path)(e)),
    };
    if !meta.is_file() {
        return Err(WalletError::malformed(path, "not a regular file"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(WalletError::malformed(path, "too large for a key file"));
    }
    check_mode(path, &meta, 0o600)?;
    let bytes = std::fs::read(path).map_err(WalletError::io(path))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| WalletError::malformed(path, "not text"))
}

/// Writes `bytes` to `path` durably through a temporary file created with mode `0600`: write,
/// fsync, rename into place, fsync the directory. The temporary file is removed on failure.
fn write_private(path: &Path, bytes: &[u8]) -> WalletResult<()> {
    let tmp = lode_proofs::durable::tmp_path(path);
    let result = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(WalletError::io(&tmp))?;
        file.write_all(bytes).map_err(WalletError::io(&tmp))?;
        file.sync_all().map_err(WalletError::io(&tmp))?;
        drop(file);
        lode_proofs::durable::rename_durable(&tmp, path).map_err(|e| WalletError::Io {
            path: e.path.clone(),
            source: e.source,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The gas limit a method message is given: twice what the chain charges for it — including
/// `msg` (`gas_base + gas_per_byte × size`, with room for the signature), `proofs` SNARKs,
/// `sectors` sectors and two signature checks. Only the gas used is paid.
pub fn method_gas_limit(policy: &Policy, msg: &Message, proofs: u64, sectors: u64) -> u64 {
    let len = lode_chain::codec::encode(msg).len() as u64;
    policy
        .gas_base
        .saturating_add(policy.gas_per_byte.saturating_mul(len.saturating_add(256)))
        .saturating_add(policy.gas_per_proof.saturating_mul(proofs))
        .saturating_add(policy.gas_per_sector.saturating_mul(sectors))
        .saturating_add(policy.gas_per_signature.saturating_mul(2))
        .saturating_mul(2)
}

/// Signs `method` from `key`'s account to `to` with `value` at `nonce`, at the network's minimum
/// gas price and [`method_gas_limit`] for `proofs` and `sectors`.
#[allow(clippy::too_many_arguments)]
pub fn sign_method(
    policy: &Policy,
    key: &SecretKey,
    to: Address,
    value: TokenAmount,
    method: Method,
    nonce: u64,
    proofs: u64,
    sectors: u64,
) -> SignedMessage {
    let mut msg = Message {
        from: Address::Bls(key.public_key()),
        to,
        nonce,
        value,
        method,
        gas_limit: 0,
        gas_price: policy.min_gas_price,
    };
    msg.gas_limit = method_gas_limit(policy, &msg, proofs, sectors);
    msg.sign(&policy.network, key)
}

/// Waits until the node has executed message `id` (its receipt, through `state_searchMsg`),
/// asking every `poll`, for at most `timeout`.
///
/// # Errors
/// [`WalletError::NotIncluded`] after `timeout`; [`WalletError::Client`] when a call fails.
pub async fn wait_for_receipt(
    client: &NodeClient,
    id: [u8; 32],
    timeout: Duration,
    poll: Duration,
) -> WalletResult<crate::rpc::types::MessageLookupInfo> {
    let started = tokio::time::Instant::now();
    loop {
        if let Some(found) = client.state_search_msg(id).await? {
            return Ok(found);
        }
        let waited = started.elapsed();
        if waited >= timeout {
            let epoch = client.chain_head().await.map(|h| h.epoch).unwrap_or(0);
            return Err(WalletError::NotIncluded {
                id: hex::encode(id),
                waited,
                epoch,
            });
        }
        tokio::time::sleep(poll.min(timeout.saturating_sub(waited))).await;
    }
}

/// What [`call_and_wait`] returns: the message and the receipt of its execution.
#[derive(Clone, Debug)]
pub struct Executed {
    /// The message id.
    pub id: [u8; 32],
    /// Where and how it was executed.
    pub found: crate::rpc::types::MessageLookupInfo,
}

/// Signs `method` from `key`'s account to `to` with `value` (the next nonce, the network's
/// minimum gas price, [`method_gas_limit`] without proofs or sectors), pushes it and waits for
/// its receipt, which must be a success.
///
/// # Errors
/// [`WalletError::Transfer`] when the sender has no account on chain or the chain refused the
/// method (its exit code and reason); [`WalletError::NotIncluded`] after `timeout`;
/// [`WalletError::Client`] when a call fails.
pub async fn call_and_wait(
    client: &NodeClient,
    key: &SecretKey,
    to: Address,
    value: TokenAmount,
    method: Method,
    timeout: Duration,
) -> WalletResult<Executed> {
    let genesis = client.chain_genesis().await?;
    let from = Address::Bls(key.public_key());
    let Some(nonce) = client.mpool_nonce(&from).await? else {
        return Err(WalletError::Transfer(format!(
            "{from} has no account on chain yet: it must receive funds before it can send"
        )));
    };
    let msg = sign_method(&genesis.policy, key, to, value, method, nonce, 0, 0);
    let id = client.mpool_push(&msg).await?;
    let found = wait_for_receipt(client, id, timeout, Duration::from_millis(500)).await?;
    if !found.receipt.ok() {
        return Err(WalletError::Transfer(format!(
            "message {} failed at epoch {}: {} ({})",
            hex::encode(id),
            found.epoch,
            found.receipt.exit,
            found.receipt.error
        )));
    }
    Ok(Executed { id, found })
}

/// The key in `keystore` that controls account `account` (an id address looked up on chain, or a
/// key address).
///
/// # Errors
/// [`WalletError::UnknownAddress`] when the keystore lacks it; [`WalletError::Transfer`] when the
/// chain has no such account; [`WalletError::Client`] when the node cannot be asked.
pub async fn key_for_account(
    client: &NodeClient,
    keystore: &Keystore,
    account: &Address,
) -> WalletResult<SecretKey> {
    let key_address = match account {
        Address::Bls(_) => *account,
        Address::Id(_) => {
            let actor = client.state_actor(account).await?.ok_or_else(|| {
                WalletError::Transfer(format!("{account} is not an actor on chain"))
            })?;
            let key = actor.key.ok_or_else(|| {
                WalletError::Transfer(format!(
                    "{account} is a {} actor, not an account",
                    actor.kind
                ))
            })?;
            hex::decode(&key)
                .ok()
                .and_then(|b| lode_chain::crypto::PublicKey::from_bytes(&b).ok())
                .map(Address::Bls)
                .ok_or_else(|| {
                    WalletError::Transfer(format!("{account}'s key {key} is not a BLS public key"))
                })?
        }
    };
    keystore.get(&key_address)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_keys_are_private_files_named_by_their_address() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a").join("wallet");
        let ks = Keystore::open(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert!(ks.list().unwrap().is_empty());
        let a = ks.new_key().unwrap();
        let b = ks.new_key().unwrap();
        assert_ne!(a, b);
        let path = ks.key_path(&a).unwrap();
        assert_eq!(path.file_name().unwrap().to_str().unwrap(), a.to_string());
        assert_eq!(mode(&path), 0o600);
        let mut both = vec![a, b];
        both.sort();
        assert_eq!(ks.list().unwrap(), both);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        let key = ks.get(&a).unwrap();
        assert_eq!(Address::Bls(key.public_key()), a);
        // The file holds the JSON form, which parses back to the same key.
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "bls");
        assert_eq!(parse_secret(&text).unwrap().to_bytes(), key.to_bytes());
        // Reopening finds the same keys.
        assert_eq!(Keystore::open(&dir).unwrap().list().unwrap(), both);
    }

    #[test]
    fn import_is_idempotent_and_accepts_hex_or_key_files() {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::open(dir.path().join("w")).unwrap();
        let key = SecretKey::from_seed(&[9; 32]);
        let hex_text = hex::encode(key.to_bytes());
        let from_hex = parse_secret(&format!("  0x{hex_text}\n")).unwrap();
        let a = ks.import(&from_hex).unwrap();
        assert_eq!(a, Address::Bls(key.public_key()));
        assert_eq!(ks.import(&key).unwrap(), a);
        assert_eq!(ks.list().unwrap(), vec![a]);
        let json = format!(r#"{{"type":"bls","secret":"{hex_text}"}}"#);
        assert_eq!(parse_secret(&json).unwrap().to_bytes(), key.to_bytes());
        for bad in [
            "",
            "zz",
            &hex_text[2..],
            &format!("{hex_text}00"),
            &"00".repeat(32),
            &"ff".repeat(32),
            r#"{"type":"secp256k1","secret":"00"}"#,
            r#"{"type":"bls"}"#,
            r#"{"type":"bls","secret":"00","extra":1}"#,
        ] {
            let e = parse_secret(bad).unwrap_err();
            assert!(matches!(e, WalletError::InvalidSecret(_)), "{bad}: {e}");
            // The text given is never echoed back.
            if bad.len() > 8 && !bad.starts_with('{') {
                assert!(!e.to_string().contains(bad), "{e}");
            }
        }
    }

    #[test]
    fn the_default_is_set_read_and_explained_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::open(dir.path().join("w")).unwrap();
        let e = ks.default_address().unwrap_err();
        assert!(matches!(e, WalletError::NoDefault { .. }));
        assert!(e.to_string().contains("lode wallet new"), "{e}");
        assert!(e.to_string().contains("lode wallet default"), "{e}");
        assert_eq!(ks.default_address_opt().unwrap(), None);
        let a = ks.new_key().unwrap();
        ks.set_default(&a).unwrap();
        assert_eq!(ks.default_address().unwrap(), a);
        assert_eq!(mode(&ks.dir().join(DEFAULT_FILE)), 0o600);
        // Only a key kept here can be the default.
        let stranger = Address::Bls(SecretKey::from_seed(&[4; 32]).public_key());
        assert!(matches!(
            ks.set_default(&stranger),
            Err(WalletError::UnknownAddress { .. })
        ));
        let id = Address::Id(lode_chain::types::ActorId(100));
        assert!(matches!(
            ks.set_default(&id),
            Err(WalletError::NotKeyAddress(_))
        ));
        assert_eq!(ks.default_address().unwrap(), a);
        // A default whose key is gone is reported, and a damaged default file too.
        std::fs::remove_file(ks.key_path(&a).unwrap()).unwrap();
        assert!(matches!(
            ks.default_address(),
            Err(WalletError::UnknownAddress { .. })
        ));
        std::fs::write(ks.dir().join(DEFAULT_FILE), "l0100\n").unwrap();
        assert!(matches!(
            ks.default_address(),
            Err(WalletError::Malformed { .. })
        ));
    }

    #[test]
    fn broad_modes_are_refused_with_the_chmod_that_fixes_them() {
        let dir = tempfile::tempdir().unwrap();
        let wdir = dir.path().join("w");
        let ks = Keystore::open(&wdir).unwrap();
        let key = SecretKey::from_seed(&[8; 32]);
        let a = ks.import(&key).unwrap();
        let path = ks.key_path(&a).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = ks.get(&a).unwrap_err();
        assert!(
            matches!(e, WalletError::Insecure { mode: 0o644, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("chmod 600"), "{e}");
        // Importing the same key again does not paper over it.
        assert!(matches!(ks.import(&key), Err(WalletError::Insecure { .. })));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(ks.get(&a).is_ok());
        std::fs::set_permissions(&wdir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = Keystore::open(&wdir).unwrap_err();
        assert!(e.to_string().contains("chmod 700"), "{e}");
        std::fs::set_permissions(&wdir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(Keystore::open(&wdir).is_ok());
        // A file, not a directory.
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        assert!(matches!(Keystore::open(&file), Err(WalletError::Io { .. })));
    }

    #[test]
    fn damaged_or_misnamed_key_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ks = Keystore::open(dir.path().join("w")).unwrap();
        let a = ks.new_key().unwrap();
        let b = ks.new_key().unwrap();
        let (pa, pb) = (ks.key_path(&a).unwrap(), ks.key_path(&b).unwrap());
        // b's file holding a's key.
        std::fs::copy(&pa, &pb).unwrap();
        let e = ks.get(&b).unwrap_err();
        assert!(matches!(e, WalletError::Malformed { .. }), "{e}");
        std::fs::write(&pb, "not a key").unwrap();
        assert!(matches!(ks.get(&b), Err(WalletError::Malformed { .. })));
        std::fs::remove_file(&pb).unwrap();
        assert!(matches!(
            ks.get(&b),
            Err(WalletError::UnknownAddress { .. })
        ));
        // Stray files are not keys.
        std::fs::write(ks.dir().join("notes.txt"), "x").unwrap();
        std::fs::write(ks.dir().join("l3zz"), "x").unwrap();
        assert_eq!(ks.list().unwrap(), vec![a]);
    }

    #[test]
    fn the_directory_comes_from_the_flag_then_the_environment() {
        let flag = PathBuf::from("/x/flag");
        let env = |k: &str| (k == ENV_WALLET).then(|| "/x/env".to_string());
        assert_eq!(resolve_dir(Some(&flag), env).unwrap(), flag);
        assert_eq!(resolve_dir(None, env).unwrap(), PathBuf::from("/x/env"));
        let blank = |_: &str| Some(" ".to_string());
        if let Ok(d) = resolve_dir(None, blank) {
            assert!(d.ends_with("lode/wallet"), "{}", d.display());
        }
    }

    #[test]
    fn transfers_are_signed_sends_with_sufficient_gas() {
        let policy = Policy::devnet();
        let key = SecretKey::from_seed(&[5; 32]);
        let from = Address::Bls(key.public_key());
        let to = Address::Bls(SecretKey::from_seed(&[6; 32]).public_key());
        let t = Transfer {
            from,
            to,
            value: TokenAmount::tokens(2),
            nonce: 7,
            gas_limit: None,
            gas_price: None,
        };
        let m = sign_transfer(&policy, &t, &key).unwrap();
        assert!(m.verify(&policy.network, &key.public_key()));
        assert!(!m.verify("another-network", &key.public_key()));
        assert_eq!(m.message.method, Method::Send);
        assert_eq!(
            (m.message.nonce, m.message.value),
            (7, TokenAmount::tokens(2))
        );
        assert_eq!(m.message.gas_price, policy.min_gas_price);
        let needed = policy.gas_base + policy.gas_per_byte * m.encoded_len() as u64;
        assert!(m.message.gas_limit >= needed);
        assert_eq!(m.message.gas_limit, transfer_gas_limit(&policy, &from, &to));
        // Refusals: another key, a price below the minimum, a limit below inclusion.
        let other = SecretKey::from_seed(&[6; 32]);
        assert!(sign_transfer(&policy, &t, &other).is_err());
        let cheap = Transfer {
            gas_price: Some(TokenAmount(policy.min_gas_price.0 - 1)),
            ..t.clone()
        };
        assert!(sign_transfer(&policy, &cheap, &key).is_err());
        let tight = Transfer {
            gas_limit: Some(needed - 1),
            ..t.clone()
        };
        assert!(sign_transfer(&policy, &tight, &key).is_err());
        // The limit and price given are used as they are.
        let exact = Transfer {
            gas_limit: Some(needed),
            gas_price: Some(TokenAmount(policy.min_gas_price.0 + 1)),
            ..t
        };
        let m = sign_transfer(&policy, &exact, &key).unwrap();
        assert_eq!(
            (m.message.gas_limit, m.message.gas_price),
            (needed, TokenAmount(policy.min_gas_price.0 + 1))
        );
    }
}
