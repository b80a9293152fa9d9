//! Circuits for Groth16 over BLS12-381 (bellman): gadgets for the protocol's hashes and Merkle trees.
//!
//! Each gadget mirrors a native function of this crate and is tested against it on random inputs; the
//! native code stays the definition, the gadget only enforces it.
pub mod blake3;
pub mod porep;
pub mod poseidon;
pub mod post;
