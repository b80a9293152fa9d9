//! Test support for lode's chain: a devnet chain harness ([`harness`]) and the economic scenarios
//! ([`scenarios`]) that run both with the test verifier and with real 2 KiB sealing and Groth16
//! proofs.
//!
//! This crate is for tests only (`publish = false`): its `FakeVerifier` accepts hashes of the
//! statement, so nothing outside dev-dependencies may depend on it. `lode-chain` takes it as a
//! dev-dependency, so the integration tests under `chain/tests/` and this crate share one
//! `lode-chain` and its types.
//!
//! The `node` feature adds [`mining`], block production on a `lode-node` core, for the tests and
//! benchmarks of the crates above the chain; `lode-chain`'s tests do without it (and without
//! building the node). [`metrics`] checks a `/metrics` exposition with promtool; [`postgres`]
//! starts a real PostgreSQL server for the cluster's tests.

#![allow(clippy::unwrap_used)]

pub mod harness;
pub mod metrics;
#[cfg(feature = "node")]
pub mod mining;
pub mod postgres;
pub mod scenarios;

/// Opens a sled-backed store again, as a restarted daemon would, with `open`. Sled releases its
/// file lock from a background thread after the last handle is dropped, so a store reopened at
/// once in the same process can still find the lock held for a moment: this retries (for up to
/// ten seconds) while that is the error, and panics with any other.
pub fn reopen_sled<T, E: std::fmt::Display>(
    path: &std::path::Path,
    mut open: impl FnMut() -> Result<T, E>,
) -> T {
    for _ in 0..400 {
        match open() {
            Ok(store) => return store,
            Err(e) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            Err(e) => panic!("reopening {}: {e}", path.display()),
        }
    }
    match open() {
        Ok(store) => store,
        Err(e) => panic!("reopening {}: {e}", path.display()),
    }
}
