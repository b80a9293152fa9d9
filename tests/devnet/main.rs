//! `lode devnet` scenarios: separate node and provider processes on loopback, real proofs over
//! 2 KiB sectors, and the faults a network must survive. Each scenario is `#[ignore]`d (minutes
//! each); `cargo test --release --test devnet -- --include-ignored [NAME]` runs them.
//!
//! One test binary for all of them (each integration-test binary links the whole stack again),
//! and one scenario at a time ([`one_at_a_time`]): each starts its own devnet, whose epochs and
//! sealing phases must keep their pace on a small machine.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::sync::{Mutex, MutexGuard, PoisonError};

mod basic;
mod cluster;
#[path = "../common/mod.rs"]
mod common;
mod dashboard;
mod deals_kill;
mod faults;
mod market;
mod node_away;
mod pledge;
mod pledge_kill;

/// Held for the whole of a scenario: the test harness runs tests on several threads, and two
/// devnets at once would slow each other's epochs. A scenario that failed does not stop the next.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(PoisonError::into_inner)
}
