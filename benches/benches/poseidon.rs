//! Throughput of the native Poseidon hash, in hashes per second, for every
//! supported arity.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lode_proofs::poseidon::{SUPPORTED_ARITIES, constants};

fn poseidon_hash(c: &mut Criterion) {
    let mut group = c.benchmark_group("poseidon_hash");
    group.throughput(Throughput::Elements(1));
    for arity in SUPPORTED_ARITIES {
        let Ok(params) = constants(arity) else {
            panic!("no Poseidon parameters for arity {arity}");
        };
        // Any full-size field elements will do (timing does not depend on
        // the values); the round constants are at hand without naming the
        // field type, which this crate does not depend on.
        let inputs = params.round_constants()[..arity].to_vec();
        group.bench_with_input(BenchmarkId::from_parameter(arity), &inputs, |b, inputs| {
            b.iter(|| params.hash(black_box(inputs)))
        });
    }
    group.finish();
}

/// Many hashes of one arity at once (`hash_many`: eight at a time in AVX-512 IFMA lanes where the
/// processor has them), per hash, against the same hashes one by one.
fn poseidon_hash_many(c: &mut Criterion) {
    const COUNT: usize = 1024;
    let mut group = c.benchmark_group("poseidon_hash_many");
    group.throughput(Throughput::Elements(COUNT as u64));
    for arity in SUPPORTED_ARITIES {
        let Ok(params) = constants(arity) else {
            panic!("no Poseidon parameters for arity {arity}");
        };
        let inputs: Vec<_> = params
            .round_constants()
            .iter()
            .cycle()
            .take(COUNT * arity)
            .copied()
            .collect();
        let mut out = vec![inputs[0]; COUNT];
        group.bench_function(BenchmarkId::new("many", arity), |b| {
            b.iter(|| params.hash_many(black_box(&inputs), &mut out))
        });
        group.bench_function(BenchmarkId::new("one_by_one", arity), |b| {
            b.iter(|| {
                for (o, x) in out.iter_mut().zip(inputs.chunks_exact(arity)) {
                    if let Ok(h) = params.hash(black_box(x)) {
                        *o = h;
                    }
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, poseidon_hash, poseidon_hash_many);
criterion_main!(benches);
