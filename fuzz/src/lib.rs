//! lode's fuzz targets: every decoder and verifier that untrusted input reaches — gossip, sync,
//! RPC bodies, signed messages, proofs, files on disk, CAR files, deal messages, job specs and
//! modules — as plain functions of a byte slice ([`TARGETS`]).
//!
//! - `fuzz/fuzz` is the cargo-fuzz project that drives each target with libFuzzer
//!   (`cd fuzz && cargo +nightly fuzz run <target>`); its corpora are committed under
//!   `fuzz/fuzz/corpus/<target>`.
//! - `tests/corpora.rs` runs every target on stable over its seeds ([`seeds`]), its committed
//!   corpus and deterministic mutations of both: what CI runs.
//! - `lode-fuzz-seeds <corpus dir>` writes the seeds, made from lode's own honest outputs (a
//!   sealed sector's proofs, a node's blocks and sync answers, signed deal messages, the example
//!   job specs and modules).
//!
//! A target panics only on a finding (see [`targets`]); every finding is fixed and kept as a
//! regression input in the corpus.

// Test support: setting up the fixtures may unwrap, and a target's assertion is its finding.
#![allow(clippy::unwrap_used)]

pub mod fixture;
pub mod seeds;
pub mod targets;

/// One fuzz target.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// Its name: the cargo-fuzz target and corpus directory.
    pub name: &'static str,
    /// Runs one input.
    pub run: fn(&[u8]),
}

/// Every target, by name.
pub const TARGETS: &[Target] = &[
    Target {
        name: "piece_cid",
        run: targets::piece_cid,
    },
    Target {
        name: "merkle_proof",
        run: targets::merkle_proof,
    },
    Target {
        name: "porep_vanilla",
        run: targets::porep_vanilla,
    },
    Target {
        name: "post_vanilla",
        run: targets::post_vanilla,
    },
    Target {
        name: "snark",
        run: targets::snark,
    },
    Target {
        name: "tree_file",
        run: targets::tree_file,
    },
    Target {
        name: "param_file",
        run: targets::param_file,
    },
    Target {
        name: "signed_message",
        run: targets::signed_message,
    },
    Target {
        name: "block",
        run: targets::block,
    },
    Target {
        name: "sync_request",
        run: targets::sync_request,
    },
    Target {
        name: "sync_response",
        run: targets::sync_response,
    },
    Target {
        name: "rpc_request",
        run: targets::rpc_request,
    },
    Target {
        name: "chain_apply",
        run: targets::chain_apply,
    },
    Target {
        name: "car",
        run: targets::car,
    },
    Target {
        name: "deal_messages",
        run: targets::deal_messages,
    },
    Target {
        name: "job_spec",
        run: targets::job_spec,
    },
    Target {
        name: "wasm_module",
        run: targets::wasm_module,
    },
];

/// The target named `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
