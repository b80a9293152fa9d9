//! Proof verification as a service: the [`ProofVerifier`] trait the chain calls, and
//! [`SnarkVerifier`], which checks real Groth16 proofs with verifying keys from a [`ParamStore`].
//!
//! The chain knows sectors only by their public data (numbers, commitments, randomness); this module
//! turns that into each circuit's public inputs. A verifier is stateless apart from a cache of
//! prepared verifying keys, so one instance serves every block.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bls12_381::Bls12;
use groth16::PreparedVerifyingKey;

use crate::circuit::porep as porep_circuit;
use crate::circuit::post::{self as post_circuit, PostKind};
use crate::node::Node;
use crate::params::{ParamStore, ParamsError, ParamsId};
use crate::porep::PorepPublic;
use crate::post::{PublicSector, window_partitions};
use crate::sector::SectorSize;
use crate::snark::SnarkError;

/// Why a proof was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The proof is malformed or does not verify.
    #[error(transparent)]
    Proof(#[from] SnarkError),
    /// The verifying key is missing or unreadable.
    #[error("no verifying key: {0}")]
    Key(#[from] ParamsError),
    /// The public data cannot form a proof statement (e.g. no sectors, too many sectors).
    #[error("invalid public data: {0}")]
    Statement(&'static str),
}

/// A Window PoSt statement: one partition's proven sectors (sorted by number, unpadded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowPostStatement {
    /// Sector size of the miner.
    pub size: SectorSize,
    /// The challenge randomness (trunc254 applied by the verifier).
    pub randomness: [u8; 32],
    /// The sectors proven.
    pub sectors: Vec<PublicSector>,
}

/// A Winning PoSt statement: the miner's eligible sectors; the randomness selects one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WinningPostStatement {
    /// Sector size of the miner.
    pub size: SectorSize,
    /// The miner id.
    pub miner_id: u64,
    /// The challenge randomness (trunc254 applied by the verifier).
    pub randomness: [u8; 32],
    /// Every sector the challenge may select from.
    pub sectors: Vec<PublicSector>,
}

/// What the chain needs verified.
pub trait ProofVerifier: Send + Sync {
    /// A PoRep: one proof per partition.
    fn verify_seal(&self, public: &PorepPublic, proofs: &[Vec<u8>]) -> Result<(), VerifyError>;
    /// A Window PoSt over one partition.
    fn verify_window_post(
        &self,
        statement: &WindowPostStatement,
        proof: &[u8],
    ) -> Result<(), VerifyError>;
    /// A Winning PoSt.
    fn verify_winning_post(
        &self,
        statement: &WinningPostStatement,
        proof: &[u8],
    ) -> Result<(), VerifyError>;
}

/// Verifies Groth16 proofs with keys from a parameter store (a verifying-key file when one was
/// exported, otherwise the full parameters). Keys are prepared once and cached.
pub struct SnarkVerifier {
    store: ParamStore,
    keys: Mutex<HashMap<String, Arc<PreparedVerifyingKey<Bls12>>>>,
}

impl std::fmt::Debug for SnarkVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnarkVerifier")
            .field("store", &self.store.dir())
            .finish()
    }
}

impl SnarkVerifier {
    /// A verifier reading keys from `store`.
    pub fn new(store: ParamStore) -> Self {
        SnarkVerifier {
            store,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Uses `vk` as the verifying key of `id` (a key file the caller chose) instead of the store's.
    pub fn insert_key(&self, id: &ParamsId, vk: &groth16::VerifyingKey<Bls12>) {
        let pvk = Arc::new(groth16::prepare_verifying_key(vk));
        if let Ok(mut m) = self.keys.lock() {
            m.insert(id.canonical().to_string(), pvk);
        }
    }

    fn key(&self, id: &ParamsId) -> Result<Arc<PreparedVerifyingKey<Bls12>>, VerifyError> {
        let name = id.canonical().to_string();
        if let Some(k) = self.keys.lock().ok().and_then(|m| m.get(&name).cloned()) {
            return Ok(k);
        }
        let vk_path = self.store.vk_path(id);
        let vk = if vk_path.exists() {
            ParamStore::load_vk(&vk_path, id)?.0
        } else {
            self.store.load(id)?.0.vk
        };
        let pvk = Arc::new(groth16::prepare_verifying_key(&vk));
        if let Ok(mut m) = self.keys.lock() {
            m.insert(name, pvk.clone());
        }
        Ok(pvk)
    }
}

impl ProofVerifier for SnarkVerifier {
    fn verify_seal(&self, public: &PorepPublic, proofs: &[Vec<u8>]) -> Result<(), VerifyError> {
        let pvk = self.key(&porep_circuit::params_id(public.size))?;
        porep_circuit::verify(&pvk, public, proofs)?;
        Ok(())
    }

    fn verify_window_post(
        &self,
        statement: &WindowPostStatement,
        proof: &[u8],
    ) -> Result<(), VerifyError> {
        let size = statement.size;
        let mut parts = window_partitions(size, &statement.sectors);
        if parts.len() != 1 {
            return Err(VerifyError::Statement(
                "a Window PoSt proof covers one non-empty partition",
            ));
        }
        let sectors = parts.pop().unwrap_or_default();
        let pvk = self.key(&PostKind::Window.params_id(size))?;
        let randomness = crate::sector::randomness_node(statement.randomness);
        post_circuit::verify(&pvk, PostKind::Window, size, &randomness, &sectors, proof)?;
        Ok(())
    }

    fn verify_winning_post(
        &self,
        statement: &WinningPostStatement,
        proof: &[u8],
    ) -> Result<(), VerifyError> {
        if statement.sectors.is_empty() {
            return Err(VerifyError::Statement("no sectors to select from"));
        }
        let pvk = self.key(&PostKind::Winning.params_id(statement.size))?;
        let randomness: Node = crate::sector::randomness_node(statement.randomness);
        post_circuit::verify_winning(
            &pvk,
            statement.size,
            statement.miner_id,
            &randomness,
            &statement.sectors,
            proof,
        )?;
        Ok(())
    }
}
