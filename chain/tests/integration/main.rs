//! lode-chain's integration tests, one test binary for all of them (each further binary would link
//! the whole dependency graph again): the chain driven through `lode_testkit`'s harness.
//!
//! - [`blocks`]: blocks with one aggregate signature, honest and refused;
//! - [`compute`]: compute jobs, replicated and verified, settled and slashed to the atto;
//! - [`economics`]: every economic scenario, with the test verifier and with real proofs;
//! - [`first_window`]: a new sector's first proving period, committed around a challenge;
//! - [`genesis`]: genesis miners with pre-sealed sectors, proving and mining from epoch 1;
//! - [`lifecycle`]: one sector through the chain with real 2 KiB Groth16 proofs;
//! - [`messages`]: rejections against a lockstep twin chain, random operation sequences;
//! - [`durability`]: the sled-backed chain killed mid-commit and reopened, damaged databases;
//! - [`nulls`]: null rounds committed with the tipset after them, equal to one by one; reverts.
//!
//! Tests that need real Groth16 proofs are ignored unless `--include-ignored` is passed.

mod blocks;
mod compute;
mod durability;
mod economics;
mod first_window;
mod genesis;
mod lifecycle;
mod messages;
mod nulls;
