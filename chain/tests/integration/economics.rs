//! The economic scenarios of `lode_testkit::scenarios`, each run twice: with the test verifier
//! (`fast::…`, in the quick suite) and with real 2 KiB sectors sealed by the harness and real Groth16
//! PoRep, Window PoSt and Winning PoSt proofs checked by the chain's `SnarkVerifier` (`real::…`,
//! ignored unless `--include-ignored` is passed, as CI does).

/// The scenarios with the test verifier, which accepts hashes of the statement.
mod fast {
    lode_testkit::scenario_tests!(lode_testkit::harness::Harness::new());
}

/// The scenarios with real sealing and Groth16 proofs.
mod real {
    lode_testkit::scenario_tests!(
        lode_testkit::harness::Harness::real();
        #[ignore = "real Groth16 proofs: run with --include-ignored"]
    );
}
