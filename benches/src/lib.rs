//! Shared helpers for lode's criterion benchmarks (the benches themselves live in `benches/benches/`),
//! and [`run`]: what `lode bench` measures, records and charts for researchers.

pub mod run;

/// Deterministic pseudo-random bytes for benchmark inputs (xorshift64*; fast, not cryptographic).
pub fn bench_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `n` random field nodes (trunc254 of pseudo-random bytes), valid leaves for any tree.
pub fn field_leaves(n: usize, seed: u64) -> Vec<lode_proofs::node::Node> {
    bench_bytes(n * 32, seed)
        .chunks_exact(32)
        .map(|c| {
            let mut b = [0u8; 32];
            b.copy_from_slice(c);
            lode_proofs::node::trunc254(b)
        })
        .collect()
}
