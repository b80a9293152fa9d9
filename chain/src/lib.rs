//! `lode-chain`: lode's deterministic state machine and consensus.
//!
//! This crate will own the chain rules of the protocol: accounts, signed messages, the miner, power,
//! market, verified-registry and reward actors, deadlines, faults and slashing, the state root, and
//! Expected Consensus. Only this crate decides consensus.
