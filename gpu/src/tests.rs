//! The kernels against a CPU definition written here with the `blake3` crate, on whatever
//! OpenCL device the machine has (PoCL in CI: `LODE_REQUIRE_OPENCL=1` makes its absence a
//! failure) and on CUDA where a device is present.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use super::*;

/// A deterministic generator (xorshift) for test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 16) as u32
    }
}

fn words_to_bytes(w: &[u32]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// SPEC §4.3 labelling of interleaved layers, node by node, with the `blake3` crate.
fn cpu_layer(job: &LabelJob<'_>, parents: &[u32], prev: Option<&[u32]>) -> Vec<u32> {
    let sectors = job.replica_ids.len();
    let mut out = vec![0u32; job.layer_words().unwrap()];
    let key: [u8; 32] = words_to_bytes(&job.key).try_into().unwrap();
    let mask = job.nodes as usize - 1;
    for v in 0..job.nodes as usize {
        for s in 0..sectors {
            let mut input = vec![0u8; 512];
            input[..32].copy_from_slice(&words_to_bytes(&job.replica_ids[s]));
            input[32..36].copy_from_slice(&job.layer.to_le_bytes());
            input[36..44].copy_from_slice(&(v as u64).to_le_bytes());
            if v != 0 {
                for k in 0..DEGREE {
                    let p = parents[v * DEGREE + k] as usize & mask;
                    let src = if k < 6 { Some(&out[..]) } else { prev };
                    if let Some(src) = src {
                        let at = (p * sectors + s) * 8;
                        input[64 + k * 32..96 + k * 32]
                            .copy_from_slice(&words_to_bytes(&src[at..at + 8]));
                    }
                }
            }
            let mut h = *blake3::keyed_hash(&key, &input).as_bytes();
            h[31] &= 0x3F;
            for w in 0..8 {
                out[(v * sectors + s) * 8 + w] =
                    u32::from_le_bytes(h[w * 4..w * 4 + 4].try_into().unwrap());
            }
        }
    }
    out
}

/// Random parents: base parents before the node, expander parents anywhere.
fn random_parents(nodes: usize, rng: &mut Rng) -> Vec<u32> {
    let mut p = vec![0u32; nodes * DEGREE];
    for v in 1..nodes {
        for k in 0..DEGREE {
            p[v * DEGREE + k] = if k < 6 {
                rng.next() % v as u32
            } else {
                rng.next() % nodes as u32
            };
        }
    }
    p
}

/// Two layers of `sectors` sectors of `nodes` nodes on `gpu`, each compared with the CPU.
fn labels_match(gpu: &Gpu, sectors: usize, nodes: u32) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(nodes) ^ sectors as u64);
    let ids: Vec<[u32; 8]> = (0..sectors)
        .map(|_| std::array::from_fn(|_| rng.next()))
        .collect();
    let key = std::array::from_fn(|_| rng.next());
    let parents = random_parents(nodes as usize, &mut rng);
    let mut prev: Option<Vec<u32>> = None;
    for layer in 1..=2 {
        let job = LabelJob {
            key,
            replica_ids: &ids,
            layer,
            nodes,
        };
        let want = cpu_layer(&job, &parents, prev.as_deref());
        let mut got = vec![0u32; want.len()];
        let mut seen = Vec::new();
        gpu.label_layer(
            &job,
            &mut |start, out| {
                let at = start as usize * DEGREE;
                out.copy_from_slice(&parents[at..at + out.len()]);
            },
            prev.as_deref(),
            &mut got,
            &mut |done| {
                seen.push(done);
                ControlFlow::Continue(())
            },
        )
        .unwrap();
        assert!(
            got == want,
            "layer {layer} of {sectors}×{nodes} differs from the CPU"
        );
        assert_eq!(seen.last(), Some(&u64::from(nodes)));
        prev = Some(got);
    }
}

/// The OpenCL device, or `None` (skipped) where there is none and none is required.
fn opencl() -> Option<Gpu> {
    match Gpu::opencl() {
        Ok(g) => Some(g),
        Err(e) if std::env::var_os("LODE_REQUIRE_OPENCL").is_some() => {
            panic!("LODE_REQUIRE_OPENCL is set but {e}")
        }
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

#[test]
fn opencl_labels_equal_the_cpu_definition() {
    let Some(gpu) = opencl() else { return };
    assert_eq!(gpu.backend(), Backend::OpenCl);
    for (sectors, nodes) in [(1, 64), (3, 64), (5, 1024)] {
        labels_match(&gpu, sectors, nodes);
    }
    // More than one launch per layer: the walk goes on where the last launch stopped.
    labels_match(&gpu, 2, 2 * LABEL_CHUNK);
}

#[test]
fn cuda_labels_equal_the_cpu_definition_where_there_is_a_device() {
    match Gpu::cuda() {
        Ok(gpu) => {
            labels_match(&gpu, 3, 64);
            labels_match(&gpu, 2, 2 * LABEL_CHUNK);
        }
        Err(GpuError::NoDevice { why, .. }) => eprintln!("skipped: {why}"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn jobs_that_do_not_fit_are_refused_and_cancellation_stops() {
    let ids = [[1u32; 8]; 2];
    let job = |layer, nodes| LabelJob {
        key: [0; 8],
        replica_ids: &ids,
        layer,
        nodes,
    };
    let mut out = vec![0u32; 2 * 64 * 8];
    assert!(job(1, 64).check(None, &out).is_ok());
    assert!(matches!(
        job(1, 48).check(None, &out),
        Err(GpuError::Invalid(_))
    ));
    assert!(matches!(
        job(2, 64).check(None, &out),
        Err(GpuError::Invalid(_))
    ));
    assert!(matches!(
        job(0, 64).check(None, &out),
        Err(GpuError::Invalid(_))
    ));
    assert!(matches!(
        job(1, 64).check(None, &out[1..]),
        Err(GpuError::Invalid(_))
    ));
    assert_eq!(
        label_chunks(2 * LABEL_CHUNK + 3).collect::<Vec<_>>(),
        [
            (0, LABEL_CHUNK),
            (LABEL_CHUNK, LABEL_CHUNK),
            (2 * LABEL_CHUNK, 3)
        ]
    );
    let Some(gpu) = opencl() else { return };
    let r = gpu.label_layer(
        &job(1, 64),
        &mut |_, p| p.fill(0),
        None,
        &mut out,
        &mut |_| ControlFlow::Break(()),
    );
    assert!(matches!(r, Err(GpuError::Cancelled)), "{r:?}");
}

/// Every MSM plan covers all 255 scalar bits, keeps its buckets within the memory bound, gives
/// each group at least one point, and grows its windows with the number of points per work item.
#[test]
fn msm_plans_cover_the_scalar_and_bound_their_buckets() {
    for parallel in [1u32, 8, 64, 1 << 15] {
        let mut last_c = 0;
        for n in [1u32, 2, 100, 10_000, 1 << 20, 1 << 24, u32::MAX] {
            let p = MsmPlan::new(n, parallel);
            assert!(p.c >= 1 && p.c <= MSM_MAX_WINDOW, "{p:?}");
            assert!(p.c * p.windows >= SCALAR_BITS, "{p:?}");
            assert!(p.c * (p.windows - 1) < SCALAR_BITS, "{p:?}");
            assert!(p.groups >= 1 && p.groups <= n, "{p:?}");
            assert!((p.bucket_words() as u64) * 8 <= MSM_BUCKET_BYTES, "{p:?}");
            if parallel == 8 {
                assert!(p.c >= last_c, "n {n}: {p:?}");
                last_c = p.c;
            }
        }
    }
    // A GPU-sized device cuts a large sum into many work items.
    let p = MsmPlan::new(1 << 22, 1 << 15);
    assert!(p.items() >= 1 << 13, "{p:?}");
}

/// Refusals before any launch: lengths that differ; an empty sum is the identity.
#[test]
fn msm_refuses_mismatched_lengths() {
    let Some(gpu) = opencl() else { return };
    assert!(matches!(
        gpu.msm_g1(&[[0; 12]; 2], &[[0; 4]; 1]),
        Err(GpuError::Invalid(_))
    ));
    assert_eq!(gpu.msm_g1(&[], &[]).unwrap(), [0; 24]);
}
