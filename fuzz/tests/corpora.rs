//! Every fuzz target on stable, as CI runs them: over its seeds, its committed corpus
//! (`fuzz/fuzz/corpus/<target>`, the regression inputs of every finding among them), and
//! deterministic mutations of both (bit flips, cut and spliced bytes, inserted boundary values).
//! A target panics only on a finding, so this test fails on any.
//!
//! `LODE_FUZZ_MUTATIONS` sets the mutations per target (default 300); `LODE_FUZZ_TARGET` runs one
//! target.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Instant;

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// One mutation of `input`, `other` supplying spliced bytes.
fn mutate(rng: &mut ChaCha8Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    let rounds = 1 + rng.next_u32() % 4;
    for _ in 0..rounds {
        let len = v.len().max(1);
        let at = rng.next_u32() as usize % len;
        match rng.next_u32() % 6 {
            0 if !v.is_empty() => v[at] ^= 1 << (rng.next_u32() % 8),
            1 if !v.is_empty() => v[at] = [0, 1, 0x7f, 0x80, 0xff][rng.next_u32() as usize % 5],
            2 => v.truncate(at),
            3 => {
                let n = 1 + rng.next_u32() as usize % 8;
                v.splice(
                    at.min(v.len())..at.min(v.len()),
                    (0..n).map(|_| rng.next_u32() as u8),
                );
            }
            4 if !other.is_empty() => {
                let from = rng.next_u32() as usize % other.len();
                let n = (rng.next_u32() as usize % 64).min(other.len() - from);
                let at = at.min(v.len());
                v.splice(at..at, other[from..from + n].iter().copied());
            }
            _ if v.len() >= 2 => {
                let end = (at + 1 + rng.next_u32() as usize % 16).min(v.len());
                v.drain(at..end);
            }
            _ => v.push(rng.next_u32() as u8),
        }
    }
    v
}

#[test]
fn every_target_survives_its_corpus_and_mutations() {
    let mutations: usize = std::env::var("LODE_FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let only = std::env::var("LODE_FUZZ_TARGET").ok();
    for t in lode_fuzz::TARGETS {
        if only.as_deref().is_some_and(|o| o != t.name) {
            continue;
        }
        let start = Instant::now();
        // The CAR parser lode uses panics on some malformed framing and lode catches it
        // (FUZZING.md, finding 3): keep those caught panics out of the test's output.
        let quiet = t.name == "car";
        let hook = quiet.then(|| {
            let hook = std::panic::take_hook();
            std::panic::set_hook(Box::new(|_| {}));
            hook
        });
        let seeds = lode_fuzz::seeds::seeds(t.name);
        assert!(!seeds.is_empty(), "{}: no seeds", t.name);
        let mut inputs = seeds;
        inputs.extend(corpus(t.name));
        for input in &inputs {
            (t.run)(input);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(0x10de);
        for i in 0..mutations {
            let a = &inputs[i % inputs.len()];
            let b = &inputs[rng.next_u32() as usize % inputs.len()];
            let m = mutate(&mut rng, a, b);
            (t.run)(&m);
        }
        (t.run)(&[]);
        if let Some(hook) = hook {
            std::panic::set_hook(hook);
        }
        eprintln!(
            "{}: {} inputs and {mutations} mutations in {:.1?}",
            t.name,
            inputs.len(),
            start.elapsed()
        );
    }
}

/// The seeds are honest inputs that reach the checks behind the decoders, so mutations of them
/// start deep in each target.
#[test]
fn seeds_reach_the_verifiers() {
    use lode_fuzz::fixture;
    let s = fixture::sector();
    lode_proofs::porep::verify(&s.public, &s.porep).unwrap();
    let r = fixture::rpc();
    for call in lode_fuzz::seeds::seeds("rpc_request") {
        let (answer, _) = r
            .runtime
            .block_on(
                r.module
                    .raw_json_request(std::str::from_utf8(&call).unwrap(), 1),
            )
            .unwrap();
        // The other test may have pushed the seed message first: then the pool has it already.
        let answer = answer.get();
        assert!(
            answer.contains("\"result\"") || answer.contains("already pending"),
            "{answer}"
        );
    }
}
