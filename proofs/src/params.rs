//! Groth16 parameters (SPEC §7): identifiers, deterministic insecure test parameters, an on-disk cache
//! that never regenerates what it has, and verifying keys exported on their own.
//!
//! A parameter set is named by a canonical string of its circuit's public parameters; its identifier is
//! the BLAKE3 of that string. Test and devnet parameters are those of `groth16::generate_random_parameters`
//! with a ChaCha20 RNG seeded by `blake3("lode insecure test parameters" || identifier string)`, so every
//! machine derives the same keys without exchanging files (computed by the parallel generator of
//! [`setup`], byte for byte the same) — and anyone can forge proofs with them: they
//! are marked [`Origin::InsecureTest`] in their file and callers must say so to users.
//!
//! File format (version 1): magic `LODEPARM` (or `LODEVKEY` for a verifying key), `u32le` version,
//! `u32le` origin, the identifier (32 bytes), BLAKE3 of the body (32 bytes), `u32le` length and bytes of the
//! canonical string, then the body as `groth16` writes it. Loading checks every field and the body hash.
//! Files are written atomically and durably ([`crate::durable`]: temporary name, fsync, rename, directory
//! fsync), so a parameter file under its final name is complete, even after a power cut.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use bellman::{Circuit, SynthesisError};
use bls12_381::{Bls12, Scalar};
use groth16::{Parameters, VerifyingKey};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::durable::{AtomicFile, DurableError};

pub mod setup;

/// Version of the parameter file format.
pub const FORMAT_VERSION: u32 = 1;
const PARAMS_MAGIC: &[u8; 8] = b"LODEPARM";
const VK_MAGIC: &[u8; 8] = b"LODEVKEY";

/// Errors of parameter generation, storage and loading.
#[derive(Debug, thiserror::Error)]
pub enum ParamsError {
    /// No parameter file for this identifier.
    #[error("no parameters for {canonical} at {path}; generate them with `lode params generate`")]
    NotFound {
        /// Where they were looked for.
        path: PathBuf,
        /// The parameter set.
        canonical: String,
    },
    /// A file for another parameter set (or another format version).
    #[error("{path} holds parameters for {found}, not {expected}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The set asked for.
        expected: String,
        /// The set in the file.
        found: String,
    },
    /// A damaged file: wrong magic, truncated, or a body that does not match its hash.
    #[error(
        "{path}: corrupted parameter file ({reason}); delete it and generate or download it again"
    )]
    Corrupted {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// Circuit synthesis failed while generating.
    #[error("generating parameters failed: {0}")]
    Synthesis(#[from] SynthesisError),
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Where a parameter set came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Deterministic parameters anyone can regenerate — and forge proofs with. Tests and devnets only.
    InsecureTest,
    /// Imported from a multi-party ceremony.
    Ceremony,
}

impl Origin {
    fn code(self) -> u32 {
        match self {
            Origin::InsecureTest => 0,
            Origin::Ceremony => 1,
        }
    }

    fn from_code(code: u32) -> Option<Self> {
        match code {
            0 => Some(Origin::InsecureTest),
            1 => Some(Origin::Ceremony),
            _ => None,
        }
    }
}

/// The identity of a parameter set: a canonical string of its circuit's public parameters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ParamsId {
    kind: String,
    canonical: String,
}

impl ParamsId {
    /// An identifier for circuit `kind` (e.g. `porep`, `winning-post`) with its public parameters as
    /// `(name, value)` pairs, in a fixed order chosen by the circuit.
    pub fn new(kind: &str, fields: &[(&str, String)]) -> Self {
        let mut canonical = format!("lode-v{FORMAT_VERSION};kind={kind}");
        for (name, value) in fields {
            canonical.push(';');
            canonical.push_str(name);
            canonical.push('=');
            canonical.push_str(value);
        }
        ParamsId {
            kind: kind.to_string(),
            canonical,
        }
    }

    /// The canonical string.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// The identifier: BLAKE3 of the canonical string.
    pub fn digest(&self) -> [u8; 32] {
        *blake3::hash(self.canonical.as_bytes()).as_bytes()
    }

    /// The file stem: format version, kind, and the first 8 bytes of the identifier in hex.
    pub fn file_stem(&self) -> String {
        let d = self.digest();
        let short: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("v{FORMAT_VERSION}-{}-{short}", self.kind)
    }

    /// The deterministic RNG of the insecure test parameters of this set.
    pub fn insecure_rng(&self) -> ChaCha20Rng {
        let mut h = blake3::Hasher::new();
        h.update(b"lode insecure test parameters");
        h.update(self.canonical.as_bytes());
        ChaCha20Rng::from_seed(*h.finalize().as_bytes())
    }
}

/// Generates the insecure, deterministic parameters of `id` for `circuit` (a blank instance: no
/// witness values are needed), with the parallel generator of [`setup`]: the same bytes as
/// `groth16::generate_random_parameters` seeded by [`ParamsId::insecure_rng`].
pub fn generate_insecure<C: Circuit<Scalar>>(
    id: &ParamsId,
    circuit: C,
) -> Result<Parameters<Bls12>, ParamsError> {
    let mut rng = id.insecure_rng();
    Ok(setup::generate_random_parameters(circuit, &mut rng)?)
}

/// Parameter files in one directory, named by identifier.
#[derive(Clone, Debug)]
pub struct ParamStore {
    dir: PathBuf,
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> ParamsError + '_ {
    move |source| ParamsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn durable_err(e: DurableError) -> ParamsError {
    ParamsError::Io {
        path: e.path,
        source: e.source,
    }
}

/// What a checked file header tells beyond what was checked against the identifier.
struct Header {
    origin: Origin,
}

fn write_file(
    path: &Path,
    magic: &[u8; 8],
    id: &ParamsId,
    origin: Origin,
    body: &[u8],
) -> Result<(), ParamsError> {
    let mut f = AtomicFile::create(path).map_err(durable_err)?;
    let mut header = Vec::new();
    header.extend_from_slice(magic);
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&origin.code().to_le_bytes());
    header.extend_from_slice(&id.digest());
    header.extend_from_slice(blake3::hash(body).as_bytes());
    header.extend_from_slice(&(id.canonical.len() as u32).to_le_bytes());
    header.extend_from_slice(id.canonical.as_bytes());
    f.write_all(&header)
        .and_then(|()| f.write_all(body))
        .map_err(io_at(f.tmp_path()))?;
    // Fsync, rename, and fsync the directory: a stored parameter file survives a power cut.
    f.commit().map_err(durable_err)
}

/// Reads a file's header and body, checking magic, version, identifier and body hash.
fn read_file(
    path: &Path,
    magic: &[u8; 8],
    id: &ParamsId,
) -> Result<(Header, Vec<u8>), ParamsError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ParamsError::NotFound {
                path: path.to_path_buf(),
                canonical: id.canonical.clone(),
            });
        }
        Err(e) => {
            return Err(ParamsError::Io {
                path: path.to_path_buf(),
                source: e,
            });
        }
    };
    let mut bytes = Vec::new();
    BufReader::new(file)
        .read_to_end(&mut bytes)
        .map_err(io_at(path))?;
    let corrupted = |reason| ParamsError::Corrupted {
        path: path.to_path_buf(),
        reason,
    };
    let fixed = 8 + 4 + 4 + 32 + 32 + 4;
    if bytes.len() < fixed || &bytes[..8] != magic {
        return Err(corrupted("not a lode parameter file"));
    }
    let u32_at =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = u32_at(8);
    let origin = Origin::from_code(u32_at(12)).ok_or_else(|| corrupted("unknown origin"))?;
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&bytes[16..48]);
    let mut body_hash = [0u8; 32];
    body_hash.copy_from_slice(&bytes[48..80]);
    let len = u32_at(80) as usize;
    let body_at = fixed
        .checked_add(len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| corrupted("truncated header"))?;
    let canonical = String::from_utf8(bytes[fixed..body_at].to_vec())
        .map_err(|_| corrupted("bad identifier"))?;
    if version != FORMAT_VERSION || digest != id.digest() || canonical != id.canonical {
        return Err(ParamsError::Mismatch {
            path: path.to_path_buf(),
            expected: id.canonical.clone(),
            found: format!("{canonical} (format {version})"),
        });
    }
    let body = bytes.split_off(body_at);
    if *blake3::hash(&body).as_bytes() != body_hash {
        return Err(corrupted("content does not match its checksum"));
    }
    Ok((Header { origin }, body))
}

impl ParamStore {
    /// A store in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ParamStore { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The parameter file of `id`.
    pub fn params_path(&self, id: &ParamsId) -> PathBuf {
        self.dir.join(format!("{}.params", id.file_stem()))
    }

    /// The verifying-key file of `id`.
    pub fn vk_path(&self, id: &ParamsId) -> PathBuf {
        self.dir.join(format!("{}.vk", id.file_stem()))
    }

    /// Loads the parameters of `id`, checking the file; never generates.
    pub fn load(&self, id: &ParamsId) -> Result<(Parameters<Bls12>, Origin), ParamsError> {
        let path = self.params_path(id);
        let (header, body) = read_file(&path, PARAMS_MAGIC, id)?;
        // The body hash matched, so these are the bytes written for this identifier: skip the slow
        // point-validity checks (they are for files of unknown provenance; see `import`).
        let params = Parameters::read(&body[..], false).map_err(|_| ParamsError::Corrupted {
            path,
            reason: "unreadable parameters",
        })?;
        Ok((params, header.origin))
    }

    /// The parameters of `id`: loaded when present (a damaged or mismatched file is an error, never
    /// silently replaced), otherwise generated as insecure test parameters and stored. The flag says
    /// whether they were generated now.
    pub fn get_or_generate_insecure<C: Circuit<Scalar>>(
        &self,
        id: &ParamsId,
        blank: impl FnOnce() -> C,
    ) -> Result<(Parameters<Bls12>, Origin, bool), ParamsError> {
        match self.load(id) {
            Ok((p, origin)) => Ok((p, origin, false)),
            Err(ParamsError::NotFound { .. }) => {
                let params = generate_insecure(id, blank())?;
                self.store(id, &params, Origin::InsecureTest)?;
                Ok((params, Origin::InsecureTest, true))
            }
            Err(e) => Err(e),
        }
    }

    /// Writes parameters for `id` (atomically) and their verifying key beside them.
    pub fn store(
        &self,
        id: &ParamsId,
        params: &Parameters<Bls12>,
        origin: Origin,
    ) -> Result<(), ParamsError> {
        std::fs::create_dir_all(&self.dir).map_err(io_at(&self.dir))?;
        let mut body = Vec::new();
        params.write(&mut body).map_err(io_at(&self.dir))?;
        write_file(&self.params_path(id), PARAMS_MAGIC, id, origin, &body)?;
        self.export_vk(id, params, origin, &self.vk_path(id))
    }

    /// Imports parameters from a ceremony file (a raw `groth16` parameter body), validating every point.
    pub fn import(&self, id: &ParamsId, raw: &Path) -> Result<(), ParamsError> {
        let f = File::open(raw).map_err(io_at(raw))?;
        let params = Parameters::<Bls12>::read(BufReader::new(f), true).map_err(|_| {
            ParamsError::Corrupted {
                path: raw.to_path_buf(),
                reason: "invalid parameters",
            }
        })?;
        self.store(id, &params, Origin::Ceremony)
    }

    /// Writes the verifying key alone, so verifiers need not download proving keys.
    pub fn export_vk(
        &self,
        id: &ParamsId,
        params: &Parameters<Bls12>,
        origin: Origin,
        out: &Path,
    ) -> Result<(), ParamsError> {
        let mut body = Vec::new();
        params.vk.write(&mut body).map_err(io_at(out))?;
        write_file(out, VK_MAGIC, id, origin, &body)
    }

    /// Loads a verifying key file written by [`ParamStore::export_vk`] for `id`.
    pub fn load_vk(
        path: &Path,
        id: &ParamsId,
    ) -> Result<(VerifyingKey<Bls12>, Origin), ParamsError> {
        let (header, body) = read_file(path, VK_MAGIC, id)?;
        let vk = VerifyingKey::read(&body[..]).map_err(|_| ParamsError::Corrupted {
            path: path.to_path_buf(),
            reason: "unreadable verifying key",
        })?;
        Ok((vk, header.origin))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bellman::ConstraintSystem;

    /// x · y = z with z public: the smallest circuit that exercises the whole path.
    struct Product {
        x: Option<Scalar>,
        y: Option<Scalar>,
    }

    impl Circuit<Scalar> for Product {
        fn synthesize<CS: ConstraintSystem<Scalar>>(
            self,
            cs: &mut CS,
        ) -> Result<(), SynthesisError> {
            let x = cs.alloc(|| "x", || self.x.ok_or(SynthesisError::AssignmentMissing))?;
            let y = cs.alloc(|| "y", || self.y.ok_or(SynthesisError::AssignmentMissing))?;
            let z = cs.alloc_input(
                || "z",
                || {
                    Ok(self.x.ok_or(SynthesisError::AssignmentMissing)?
                        * self.y.ok_or(SynthesisError::AssignmentMissing)?)
                },
            )?;
            cs.enforce(|| "x*y=z", |lc| lc + x, |lc| lc + y, |lc| lc + z);
            Ok(())
        }
    }

    fn id(n: u32) -> ParamsId {
        ParamsId::new("test-product", &[("n", n.to_string())])
    }

    #[test]
    fn identifiers_are_canonical() {
        assert_eq!(id(1).canonical(), "lode-v1;kind=test-product;n=1");
        assert_ne!(id(1).digest(), id(2).digest());
        assert!(id(1).file_stem().starts_with("v1-test-product-"));
    }

    #[test]
    fn generate_store_reload_prove_verify_and_reject_damage() {
        let dir = tempfile::tempdir().unwrap();
        let store = ParamStore::new(dir.path());
        let blank = || Product { x: None, y: None };
        let (params, origin, fresh) = store.get_or_generate_insecure(&id(1), blank).unwrap();
        assert!(fresh);
        assert_eq!(origin, Origin::InsecureTest);
        let (again, _, fresh) = store.get_or_generate_insecure(&id(1), blank).unwrap();
        assert!(!fresh, "present parameters are never regenerated");
        assert!(params.vk == again.vk);

        // Deterministic: another machine derives the same file.
        let other = tempfile::tempdir().unwrap();
        ParamStore::new(other.path())
            .get_or_generate_insecure(&id(1), blank)
            .unwrap();
        assert_eq!(
            std::fs::read(store.params_path(&id(1))).unwrap(),
            std::fs::read(ParamStore::new(other.path()).params_path(&id(1))).unwrap()
        );

        // Prove with the stored parameters, verify with the exported key alone.
        let (x, y) = (Scalar::from(3u64), Scalar::from(11u64));
        let proof = groth16::create_random_proof(
            Product {
                x: Some(x),
                y: Some(y),
            },
            &params,
            &mut id(9).insecure_rng(),
        )
        .unwrap();
        let (vk, _) = ParamStore::load_vk(&store.vk_path(&id(1)), &id(1)).unwrap();
        let pvk = groth16::prepare_verifying_key(&vk);
        groth16::verify_proof(&pvk, &proof, &[x * y]).unwrap();
        assert!(groth16::verify_proof(&pvk, &proof, &[x * y + Scalar::one()]).is_err());
        // Parameters of another set do not verify this proof.
        let (p2, _, _) = store.get_or_generate_insecure(&id(2), blank).unwrap();
        assert!(
            groth16::verify_proof(&groth16::prepare_verifying_key(&p2.vk), &proof, &[x * y])
                .is_err()
        );

        // A flipped byte in the body, a truncated file, another set's file under this name: all rejected.
        let path = store.params_path(&id(1));
        let good = std::fs::read(&path).unwrap();
        let mut bad = good.clone();
        let last = bad.len() - 10;
        bad[last] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(matches!(
            store.load(&id(1)),
            Err(ParamsError::Corrupted { .. })
        ));
        assert!(matches!(
            store.get_or_generate_insecure(&id(1), blank),
            Err(ParamsError::Corrupted { .. })
        ));
        std::fs::write(&path, &good[..50]).unwrap();
        assert!(matches!(
            store.load(&id(1)),
            Err(ParamsError::Corrupted { .. })
        ));
        std::fs::copy(store.params_path(&id(2)), &path).unwrap();
        assert!(matches!(
            store.load(&id(1)),
            Err(ParamsError::Mismatch { .. })
        ));
        assert!(matches!(
            ParamStore::load_vk(&store.vk_path(&id(2)), &id(1)),
            Err(ParamsError::Mismatch { .. })
        ));
        assert!(matches!(
            store.load(&id(3)),
            Err(ParamsError::NotFound { .. })
        ));
    }
}
