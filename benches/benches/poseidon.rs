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

criterion_group!(benches, poseidon_hash);
criterion_main!(benches);
