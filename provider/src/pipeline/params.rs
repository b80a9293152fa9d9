//! The PoRep parameters the pipeline's Commit2 proves with, loaded the first time a proof needs
//! them rather than when the provider starts.
//!
//! They are by far the largest parameters a provider uses (362 MB for 2 KiB sectors, gigabytes
//! for large ones) and only Commit2 needs them: loaded at start, they held the provider's mining,
//! Window PoSt and API back for seconds after every restart (the start took 1.5–4 s, 87 % of it
//! this load, on the 2-core machine), so a provider restarted by a crash missed blocks and Window
//! PoSts it could have made, and one restarted often enough never reached its loops at all.
//! **Invariant:** a provider's start reads no more than that the file is there; a damaged file is
//! a failed Commit2 (retried, then the sector fails for good with the reason), never a start that
//! does not finish.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use bls12_381::Bls12;
use lode_proofs::params::{ParamStore, ParamsId};

use crate::error::ProviderResult;

/// The PoRep parameters: given, or loaded once from a parameter store on first use (the load runs
/// on the caller's thread: call [`PorepParams::get`] from a blocking one).
pub struct PorepParams {
    from: Option<(ParamStore, ParamsId)>,
    loaded: Mutex<Option<Arc<groth16::Parameters<Bls12>>>>,
}

impl std::fmt::Debug for PorepParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PorepParams")
            .field("file", &self.file())
            .field("loaded", &self.is_loaded())
            .finish()
    }
}

impl From<Arc<groth16::Parameters<Bls12>>> for PorepParams {
    fn from(params: Arc<groth16::Parameters<Bls12>>) -> Self {
        PorepParams {
            from: None,
            loaded: Mutex::new(Some(params)),
        }
    }
}

impl PorepParams {
    /// The parameters `id` of `store`, loaded by the first [`PorepParams::get`].
    pub fn lazy(store: ParamStore, id: ParamsId) -> Self {
        PorepParams {
            from: Some((store, id)),
            loaded: Mutex::new(None),
        }
    }

    /// The parameter file a lazy load reads (`None` for parameters given in memory).
    pub fn file(&self) -> Option<PathBuf> {
        self.from.as_ref().map(|(s, id)| s.params_path(id))
    }

    /// Whether the parameters are in memory.
    pub fn is_loaded(&self) -> bool {
        self.loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// The parameters, loaded now if they are not yet (blocking: seconds for large sectors).
    /// Callers wait for one another's load; a failed load is tried again by the next call.
    ///
    /// # Errors
    /// [`crate::error::ProviderError::Params`] when the file is missing or damaged.
    pub fn get(&self) -> ProviderResult<Arc<groth16::Parameters<Bls12>>> {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = &*loaded {
            return Ok(p.clone());
        }
        let Some((store, id)) = &self.from else {
            // Unreachable: `from` is `None` only for parameters given in memory.
            return Err(crate::error::ProviderError::Pipeline(
                "no PoRep parameters".into(),
            ));
        };
        let started = std::time::Instant::now();
        let (params, _) = store.load(id)?;
        tracing::info!(
            seconds = started.elapsed().as_secs_f64(),
            file = %store.params_path(id).display(),
            "PoRep parameters loaded"
        );
        let params = Arc::new(params);
        *loaded = Some(params.clone());
        Ok(params)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bellman::{Circuit, ConstraintSystem, SynthesisError};
    use bls12_381::Scalar;

    /// x · y = z: the smallest circuit with parameters.
    struct Product;

    impl Circuit<Scalar> for Product {
        fn synthesize<CS: ConstraintSystem<Scalar>>(
            self,
            cs: &mut CS,
        ) -> Result<(), SynthesisError> {
            let x = cs.alloc(|| "x", || Ok(Scalar::from(3)))?;
            let y = cs.alloc(|| "y", || Ok(Scalar::from(5)))?;
            let z = cs.alloc_input(|| "z", || Ok(Scalar::from(15)))?;
            cs.enforce(|| "x*y=z", |lc| lc + x, |lc| lc + y, |lc| lc + z);
            Ok(())
        }
    }

    #[test]
    fn lazy_parameters_are_read_on_first_use_once_and_a_missing_file_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let store = ParamStore::new(d.path());
        let id = ParamsId::new("lazy-test", &[]);
        let lazy = PorepParams::lazy(store.clone(), id.clone());
        assert_eq!(lazy.file(), Some(store.params_path(&id)));
        // Nothing is read before the first use: the file may even appear later.
        assert!(!lazy.is_loaded());
        assert!(lazy.get().is_err(), "no file yet");
        assert!(!lazy.is_loaded());
        store.get_or_generate_insecure(&id, || Product).unwrap();
        let a = lazy.get().unwrap();
        assert!(lazy.is_loaded());
        // Loaded once: removing the file changes nothing any more.
        std::fs::remove_file(store.params_path(&id)).unwrap();
        assert!(Arc::ptr_eq(&a, &lazy.get().unwrap()));
        let given = PorepParams::from(a.clone());
        assert!(given.is_loaded() && given.file().is_none());
        assert!(Arc::ptr_eq(&a, &given.get().unwrap()));
    }
}
