//! What the provider's integration tests share: `scripted` — a fake node whose every answer the
//! test scripts, for the pipeline's chain steps one at a time; `world` — a real in-process node
//! and a pipeline sealing for real over a directory of the test's own.
//!
//! Each test binary uses part of it.
#![allow(dead_code, unreachable_pub)]

mod scripted;
mod world;

// Each test binary uses one side or the other.
#[allow(unused_imports)]
pub use scripted::*;
#[allow(unused_imports)]
pub(crate) use world::*;
