//! The compute executor on the example jobs in `examples/jobs/`: each ends with its defined
//! outcome in bounded time and memory, the honest jobs' outputs are right, and the same job gives
//! the same result hash in separate engines and work directories.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lode_chain::types::TokenAmount;
use lode_market::compute::spec::{JOB_VERSION, parse_size};
use lode_market::compute::{
    Executor, ExecutorConfig, Job, JobInput, JobLimits, JobPayment, JobReport, JobSpec, ModuleHash,
    ModuleSource, Outcome, OutputBounds, TrapKind, Verification, hash_outputs, load_module,
    module_bytes,
};

fn jobs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/jobs")
}

fn example(name: &str) -> Vec<u8> {
    load_module(&jobs_dir().join(name)).unwrap()
}

fn comm_p(data: &[u8]) -> [u8; 32] {
    lode_proofs::piece::commp_of_bytes(data).unwrap().comm_p.0
}

/// A job over `inputs` (mount path, payload) with `args` and `limits`.
fn job_for(wasm: &[u8], inputs: &[(&str, &[u8])], args: &[&str], limits: JobLimits) -> Job {
    let mut inputs: Vec<JobInput> = inputs
        .iter()
        .map(|(path, data)| JobInput {
            comm_p: comm_p(data),
            payload_size: data.len() as u64,
            path: path.to_string(),
        })
        .collect();
    inputs.sort_by(|a, b| a.path.cmp(&b.path));
    let job = Job {
        version: JOB_VERSION,
        name: "test".into(),
        nonce: 0,
        module: ModuleHash::of(wasm),
        entrypoint: "_start".into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec![],
        inputs,
        outputs: vec![],
        limits,
        verification: Verification::Replicated {
            k: 1,
            providers: vec![],
        },
        payment: JobPayment {
            per_provider: TokenAmount(1),
            collateral: TokenAmount(1),
            verifier_fee: TokenAmount::ZERO,
            deadline: 100,
        },
    };
    job.validate().unwrap();
    job
}

fn small_limits() -> JobLimits {
    JobLimits {
        fuel: 2_000_000_000,
        memory_pages: 256,
        timeout_ms: 20_000,
        output_bytes: 1 << 20,
        output_entries: 100,
    }
}

/// Runs `job` with its payloads written into `dir`; the report.
fn run_in(
    exec: &Executor,
    dir: &Path,
    job: &Job,
    wasm: &[u8],
    data: &[(&str, &[u8])],
) -> JobReport {
    fs::create_dir_all(dir).unwrap();
    let mut payloads = Vec::new();
    // Payload files in job input order (sorted by mount path).
    for input in &job.inputs {
        let (_, bytes) = data.iter().find(|(p, _)| *p == input.path).unwrap();
        let file = dir.join(format!("payload-{}", input.path.replace('/', "_")));
        fs::write(&file, bytes).unwrap();
        payloads.push(file);
    }
    let refs: Vec<&Path> = payloads.iter().map(PathBuf::as_path).collect();
    exec.run(job, wasm, &refs, &dir.join("work")).unwrap()
}

fn text() -> Vec<u8> {
    let mut t = Vec::new();
    for i in 0..5000u32 {
        t.extend_from_slice(format!("line {i}\tword{}  x\x0bv\x0cw\r\n", i % 7).as_bytes());
        if i % 100 == 0 {
            t.extend_from_slice(b"\n\n   \n");
        }
    }
    t.extend_from_slice(b"no newline at the end");
    t
}

/// `wc` by the same definition: words are runs of bytes other than space and \t \n \v \f \r.
fn rust_wc(data: &[u8]) -> String {
    let lines = data.iter().filter(|&&b| b == b'\n').count();
    let words = data
        .split(|b| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
        .filter(|w| !w.is_empty())
        .count();
    format!("{lines} {words} {}\n", data.len())
}

fn fnv1a64(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}\n")
}

#[test]
fn word_count_matches_a_rust_count_and_is_the_same_in_two_engines() {
    let tmp = tempfile::tempdir().unwrap();
    let wasm = example("wc.wat");
    let data = text();
    let inputs: &[(&str, &[u8])] = &[("data", &data)];
    let job = job_for(&wasm, inputs, &["data"], small_limits());
    let a = Executor::new().unwrap();
    let ra = run_in(&a, &tmp.path().join("a"), &job, &wasm, inputs);
    assert_eq!(ra.outcome, Outcome::Exited(0), "{:?}", ra.detail);
    let counts = fs::read_to_string(ra.outputs.join("counts.txt")).unwrap();
    assert_eq!(counts, rust_wc(&data));
    assert!(
        ra.fuel_consumed > data.len() as u64,
        "fuel {}",
        ra.fuel_consumed
    );
    assert_eq!(ra.outputs_summary.files, 1);
    assert!(!ra.cached_module);
    // A second engine, another directory: the same result, the same fuel.
    let b = Executor::new().unwrap();
    let rb = run_in(&b, &tmp.path().join("b"), &job, &wasm, inputs);
    assert_eq!(rb.result, ra.result);
    assert_eq!(rb.fuel_consumed, ra.fuel_consumed);
    // The result hash is the documented encoding of the outputs.
    let bounds = OutputBounds {
        max_bytes: 1 << 20,
        max_entries: 100,
    };
    let (recomputed, _) = hash_outputs(Outcome::Exited(0), Some(&rb.outputs), bounds).unwrap();
    assert_eq!(recomputed, ra.result);
    let mut enc = vec![0u8];
    enc.extend_from_slice(&0i32.to_le_bytes());
    enc.extend_from_slice(&1u64.to_le_bytes());
    enc.extend_from_slice(&10u64.to_le_bytes());
    enc.extend_from_slice(b"counts.txt");
    enc.extend_from_slice(&(counts.len() as u64).to_le_bytes());
    enc.extend_from_slice(counts.as_bytes());
    let mut h = blake3::Hasher::new_derive_key("lode/compute/result");
    h.update(&enc);
    assert_eq!(ra.result.0, *h.finalize().as_bytes());
    // The same engine again: the module comes from the cache.
    let rc = run_in(&a, &tmp.path().join("c"), &job, &wasm, inputs);
    assert!(rc.cached_module);
    assert_eq!(rc.result, ra.result);
    // Other data, another result.
    let other = b"just two words".to_vec();
    let other_inputs: &[(&str, &[u8])] = &[("data", &other)];
    let job2 = job_for(&wasm, other_inputs, &["data"], small_limits());
    let rd = run_in(&a, &tmp.path().join("d"), &job2, &wasm, other_inputs);
    assert_eq!(
        fs::read_to_string(rd.outputs.join("counts.txt")).unwrap(),
        "0 3 14\n"
    );
    assert_ne!(rd.result, ra.result);
}

#[test]
fn fnv_hash_of_a_piece_matches_rust() {
    let tmp = tempfile::tempdir().unwrap();
    let wasm = example("fnv.wat");
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let inputs: &[(&str, &[u8])] = &[("sub/dir/piece.bin", &data)];
    let job = job_for(&wasm, inputs, &["sub/dir/piece.bin"], small_limits());
    let exec = Executor::new().unwrap();
    let r = run_in(&exec, tmp.path(), &job, &wasm, inputs);
    assert_eq!(r.outcome, Outcome::Exited(0), "{:?}", r.detail);
    assert_eq!(
        fs::read_to_string(r.outputs.join("fnv1a64.txt")).unwrap(),
        fnv1a64(&data)
    );
}

#[test]
fn a_car_input_is_also_unpacked() {
    use lode_market::car::CarFileWriter;
    use lode_market::unixfs::{DagParams, pack_path};
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("docs")).unwrap();
    let data = text();
    fs::write(src.join("docs/a.txt"), &data).unwrap();
    fs::write(src.join("b.txt"), b"b").unwrap();
    let car = tmp.path().join("in.car");
    let mut w = CarFileWriter::new(fs::File::create(&car).unwrap(), &car).unwrap();
    let packed = pack_path(&src, &mut w, &DagParams::default(), &mut |_| {}).unwrap();
    w.finish(&packed.root.cid).unwrap();
    let car_bytes = fs::read(&car).unwrap();
    let wasm = example("wc.wat");
    let inputs: &[(&str, &[u8])] = &[("set", &car_bytes)];
    let job = job_for(&wasm, inputs, &["set.unpacked/docs/a.txt"], small_limits());
    let exec = Executor::new().unwrap();
    let r = run_in(&exec, &tmp.path().join("run"), &job, &wasm, inputs);
    assert_eq!(r.outcome, Outcome::Exited(0), "{:?}", r.detail);
    assert_eq!(
        fs::read_to_string(r.outputs.join("counts.txt")).unwrap(),
        rust_wc(&data)
    );
    // Not a CAR: mounted as it is, nothing unpacked (wc exits 3: the path does not exist).
    let plain: &[(&str, &[u8])] = &[("set", b"plain bytes")];
    let job = job_for(&wasm, plain, &["set.unpacked/docs/a.txt"], small_limits());
    let r = run_in(&exec, &tmp.path().join("plain"), &job, &wasm, plain);
    assert_eq!(r.outcome, Outcome::Exited(3));
}

#[test]
fn an_infinite_loop_runs_out_of_fuel() {
    let tmp = tempfile::tempdir().unwrap();
    let wasm = example("loop.wat");
    let inputs: &[(&str, &[u8])] = &[("data", b"x")];
    let limits = JobLimits {
        fuel: 50_000_000,
        ..small_limits()
    };
    let job = job_for(&wasm, inputs, &[], limits);
    let exec = Executor::new().unwrap();
    let start = Instant::now();
    let r = run_in(&exec, tmp.path(), &job, &wasm, inputs);
    assert_eq!(r.outcome, Outcome::OutOfFuel);
    assert_eq!(r.fuel_consumed, 50_000_000);
    assert!(start.elapsed() < Duration::from_secs(10));
    let again = run_in(
        &Executor::new().unwrap(),
        &tmp.path().join("2"),
        &job,
        &wasm,
        inputs,
    );
    assert_eq!(again.result, r.result);
}

#[test]
fn wall_time_is_bounded_by_the_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let wasm = example("loop.wat");
    let inputs: &[(&str, &[u8])] = &[("data", b"x")];
    let limits = JobLimits {
        fuel: 10_000_000_000_000,
        timeout_ms: 1_000,
        ..small_limits()
    };
    let job = job_for(&wasm, inputs, &[], limits);
    let start = Instant::now();
    let r = run_in(&Executor::new().unwrap(), tmp.path(), &job, &wasm, inputs);
    assert_eq!(r.outcome, Outcome::Timeout);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1_000) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn an_output_bomb_ends_at_the_output_limit_with_nothing_beyond_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let wasm = example("output_bomb.wat");
    let inputs: &[(&str, &[u8])] = &[("data", b"x")];
    let limits = JobLimits {
        output_bytes: 1_000_000,
        ..small_limits()
    };
    let job = job_for(&wasm, inputs, &[], limits);
    let r = run_in(&Executor::new().unwrap(), tmp.path(), &job, &wasm, inputs);
    assert_eq!(r.outcome, Outcome::OutputLimit, "{:?}", r.detail);
    let big = fs::metadata(r.outputs.join("big")).unwrap().len();
    assert!(big <= 1_000_000, "{big} bytes written");
    assert_eq!(big, 15 * 65536, "every write that fitted was made");
    assert_eq!(
        r.outputs_summary.files, 0,
        "a trapped job's result covers no files"
    );
}

#[test]
fn a_memory_bomb_ends_at_the_memory_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let wasm = example("memory_bomb.wat");
    let inputs: &[(&str, &[u8])] = &[("data", b"x")];
    let job = job_for(&wasm, inputs, &[], small_limits());
    let r = run_in(&Executor::new().unwrap(), tmp.path(), &job, &wasm, inputs);
    assert_eq!(r.outcome, Outcome::MemoryLimit, "{:?}", r.detail);
    // A module that declares more memory than the limit fails at instantiation, the same way.
    let big = module_bytes(b"(module (memory (export \"memory\") 300) (func (export \"_start\")))")
        .unwrap();
    let job = job_for(&big, inputs, &[], small_limits());
    let r = run_in(
        &Executor::new().unwrap(),
        &tmp.path().join("2"),
        &job,
        &big,
        inputs,
    );
    assert_eq!(r.outcome, Outcome::MemoryLimit, "{:?}", r.detail);
}

#[test]
fn escapes_from_the_mounts_and_sockets_fail() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("secret"), b"do not read").unwrap();
    let wasm = example("escape.wat");
    let inputs: &[(&str, &[u8])] = &[("data", b"input")];
    let job = job_for(&wasm, inputs, &[], small_limits());
    let r = run_in(&Executor::new().unwrap(), tmp.path(), &job, &wasm, inputs);
    assert_eq!(r.outcome, Outcome::Exited(0), "{:?}", r.detail);
    let raw = fs::read(r.outputs.join("errnos.bin")).unwrap();
    let errnos: Vec<i32> = raw
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(errnos.len(), 9);
    assert!(errnos.iter().all(|&e| e != 0), "{errnos:?}");
    assert_eq!(errnos[5], 57, "sock_accept: ENOTSOCK");
    assert_eq!(errnos[6], 57, "sock_send: ENOTSOCK");
    assert_eq!(errnos[7], 58, "symlink: ENOTSUP");
    assert_eq!(errnos[8], 58, "link: ENOTSUP");
    // Nothing was created outside /outputs, the input is intact.
    let listing: Vec<_> = fs::read_dir(r.outputs.parent().unwrap().join("inputs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(listing, vec!["data"]);
    assert_eq!(
        fs::read(r.outputs.parent().unwrap().join("inputs/data")).unwrap(),
        b"input"
    );
    let outs: Vec<_> = fs::read_dir(&r.outputs)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outs, vec!["errnos.bin"]);
}

#[test]
fn missing_imports_and_invalid_modules_have_defined_outcomes() {
    let tmp = tempfile::tempdir().unwrap();
    let exec = Executor::new().unwrap();
    let inputs: &[(&str, &[u8])] = &[("data", b"x")];
    let wasm = example("missing_import.wat");
    let job = job_for(&wasm, inputs, &[], small_limits());
    let r = run_in(&exec, &tmp.path().join("1"), &job, &wasm, inputs);
    assert_eq!(r.outcome, Outcome::MissingImport);
    assert!(r.detail.unwrap().contains("env::launch"));

    let wasm = example("invalid.wat");
    let job = job_for(&wasm, inputs, &[], small_limits());
    let r = run_in(&exec, &tmp.path().join("2"), &job, &wasm, inputs);
    assert_eq!(r.outcome, Outcome::InvalidModule);
    assert!(exec.compile(&wasm).is_err());

    // Malformed bytes: a magic number, then garbage.
    let garbage = b"\0asm\x01\0\0\0\x01\xff\xff\xff\xff\x0fjunk".to_vec();
    let job = job_for(&garbage, inputs, &[], small_limits());
    let r = run_in(&exec, &tmp.path().join("3"), &job, &garbage, inputs);
    assert_eq!(r.outcome, Outcome::InvalidModule);
    assert!(
        exec.compile(&garbage)
            .unwrap_err()
            .to_string()
            .contains("job module")
    );

    // No such entrypoint.
    let wasm = example("empty.wat");
    let mut job = job_for(&wasm, inputs, &[], small_limits());
    job.entrypoint = "main".into();
    let r = run_in(&exec, &tmp.path().join("4"), &job, &wasm, inputs);
    assert_eq!(r.outcome, Outcome::InvalidModule);

    // Bytes that do not match the job's module hash are refused before anything runs.
    let job = job_for(&wasm, inputs, &[], small_limits());
    let err = exec
        .run(
            &job,
            &example("loop.wat"),
            &[Path::new("/nonexistent")],
            &tmp.path().join("5"),
        )
        .unwrap_err();
    assert!(err.to_string().contains("hash"), "{err}");
    // A payload of the wrong size is refused.
    fs::write(tmp.path().join("short"), b"").unwrap();
    let err = exec
        .run(
            &job,
            &wasm,
            &[&tmp.path().join("short")],
            &tmp.path().join("6"),
        )
        .unwrap_err();
    assert!(err.to_string().contains("payload size"), "{err}");
}

#[test]
fn wasm_traps_are_classified() {
    let tmp = tempfile::tempdir().unwrap();
    let exec = Executor::new().unwrap();
    let inputs: &[(&str, &[u8])] = &[("data", b"x")];
    for (i, (wat, outcome)) in [
        (
            "(module (func (export \"_start\") unreachable))",
            Outcome::Trap(TrapKind::Unreachable),
        ),
        (
            "(module (func (export \"_start\") (drop (i32.div_u (i32.const 1) (i32.const 0)))))",
            Outcome::Trap(TrapKind::IntegerDivisionByZero),
        ),
        (
            "(module (func $f (export \"_start\") (call $f)))",
            Outcome::Trap(TrapKind::StackOverflow),
        ),
        (
            "(module (memory 1) (func (export \"_start\") (drop (i32.load (i32.const 70000)))))",
            Outcome::Trap(TrapKind::MemoryOutOfBounds),
        ),
        (
            "(module (import \"wasi_snapshot_preview1\" \"proc_exit\" (func $e (param i32)))
               (memory (export \"memory\") 1) (func (export \"_start\") (call $e (i32.const 42))))",
            Outcome::Exited(42),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let wasm = module_bytes(wat.as_bytes()).unwrap();
        let job = job_for(&wasm, inputs, &[], small_limits());
        let r = run_in(&exec, &tmp.path().join(i.to_string()), &job, &wasm, inputs);
        assert_eq!(r.outcome, outcome, "{wat}: {:?}", r.detail);
    }
}

/// WAT that opens /outputs/<name> (create, truncate, write) into fd at address 28, then runs `body`.
fn writer(body: &str) -> Vec<u8> {
    let wat = format!(
        r#"(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pwrite" (func $pwrite (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_seek" (func $seek (param i32 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_size" (func $set_size (param i32 i64) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory" (func $mkdir (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "out")
  (func (export "_start") (local $i i32)
    (if (call $open (i32.const 4) (i32.const 0) (i32.const 100) (i32.const 3) (i32.const 9)
          (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 28))
      (then (call $exit (i32.const 1))))
    (i32.store (i32.const 16) (i32.const 200))
    (i32.store (i32.const 20) (i32.const 1))
    {body}))"#
    );
    module_bytes(wat.as_bytes()).unwrap()
}

#[test]
fn sparse_writes_truncation_and_entries_count_against_the_output_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let exec = Executor::new().unwrap();
    let inputs: &[(&str, &[u8])] = &[("data", b"x")];
    let limits = JobLimits {
        output_bytes: 4096,
        output_entries: 5,
        ..small_limits()
    };
    let cases = [
        // One byte at offset 1 TiB.
        (
            "(drop (call $pwrite (i32.load (i32.const 28)) (i32.const 16) (i32.const 1) (i64.const 1099511627776) (i32.const 24)))",
            Outcome::OutputLimit,
        ),
        // Seek far, then write.
        (
            "(drop (call $seek (i32.load (i32.const 28)) (i64.const 1000000) (i32.const 0) (i32.const 40)))
             (drop (call $write (i32.load (i32.const 28)) (i32.const 16) (i32.const 1) (i32.const 24)))",
            Outcome::OutputLimit,
        ),
        // Grow by truncation.
        (
            "(drop (call $set_size (i32.load (i32.const 28)) (i64.const 5000)))",
            Outcome::OutputLimit,
        ),
        // Within the limit: exactly 4096 bytes by truncation, then rewriting in place.
        (
            "(if (call $set_size (i32.load (i32.const 28)) (i64.const 4096)) (then (call $exit (i32.const 2))))
             (if (call $pwrite (i32.load (i32.const 28)) (i32.const 16) (i32.const 1) (i64.const 4095) (i32.const 24)) (then (call $exit (i32.const 3))))",
            Outcome::Exited(0),
        ),
        // Creating directories: four fit beside the file (five entries), the fifth does not.
        (
            "(loop $more
               (i32.store8 (i32.const 300) (i32.add (i32.const 97) (local.get $i)))
               (if (call $mkdir (i32.const 4) (i32.const 300) (i32.const 1)) (then (call $exit (i32.const 4))))
               (local.set $i (i32.add (local.get $i) (i32.const 1)))
               (br $more))",
            Outcome::OutputLimit,
        ),
    ];
    for (i, (body, outcome)) in cases.into_iter().enumerate() {
        let wasm = writer(body);
        let job = job_for(&wasm, inputs, &[], limits);
        let r = run_in(&exec, &tmp.path().join(i.to_string()), &job, &wasm, inputs);
        assert_eq!(r.outcome, outcome, "case {i}: {:?}", r.detail);
        let size = fs::metadata(r.outputs.join("out")).unwrap().len();
        assert!(size <= 4096, "case {i}: {size} bytes on disk");
        if i == 4 {
            assert_eq!(fs::read_dir(&r.outputs).unwrap().count(), 5);
        }
    }
}

#[test]
fn stdout_is_captured_and_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let exec = Executor::new().unwrap();
    let inputs: &[(&str, &[u8])] = &[("data", b"x")];
    let hello = module_bytes(
        br#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "hello\n")
  (func (export "_start")
    (i32.store (i32.const 16) (i32.const 100))
    (i32.store (i32.const 20) (i32.const 6))
    (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))))"#,
    )
    .unwrap();
    let job = job_for(&hello, inputs, &[], small_limits());
    let r = run_in(&exec, &tmp.path().join("hello"), &job, &hello, inputs);
    assert_eq!(r.outcome, Outcome::Exited(0));
    assert_eq!(r.stdout, b"hello\n");
    let flood = module_bytes(
        br#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 2)
  (func (export "_start")
    (i32.store (i32.const 16) (i32.const 0))
    (i32.store (i32.const 20) (i32.const 65536))
    (loop $more
      (if (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24))
        (then (call $exit (i32.const 9))))
      (br $more))))"#,
    )
    .unwrap();
    let job = job_for(&flood, inputs, &[], small_limits());
    let r = run_in(&exec, &tmp.path().join("flood"), &job, &flood, inputs);
    assert!(
        matches!(r.outcome, Outcome::OutputLimit | Outcome::Exited(9)),
        "{:?} {:?}",
        r.outcome,
        r.detail
    );
    assert!(r.stdout.len() <= 1 << 20);
    let again = run_in(&exec, &tmp.path().join("flood2"), &job, &flood, inputs);
    assert_eq!(again.result, r.result);
}

#[test]
fn what_a_job_observes_is_the_same_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let wasm = example("probe.wat");
    let inputs: &[(&str, &[u8])] = &[("data", b"some input"), ("zz/more", b"more"), ("aa", b"a")];
    let job = job_for(&wasm, inputs, &[], small_limits());
    let a = run_in(
        &Executor::new().unwrap(),
        &tmp.path().join("a"),
        &job,
        &wasm,
        inputs,
    );
    assert_eq!(a.outcome, Outcome::Exited(0), "{:?}", a.detail);
    // Different host inodes and times: the files of the second run are made a little later.
    std::thread::sleep(Duration::from_millis(20));
    let b = run_in(
        &Executor::new().unwrap(),
        &tmp.path().join("b"),
        &job,
        &wasm,
        inputs,
    );
    assert_eq!(a.result, b.result);
    let probe = fs::read(a.outputs.join("probe.bin")).unwrap();
    assert_eq!(probe, fs::read(b.outputs.join("probe.bin")).unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(probe[at..at + 8].try_into().unwrap());
    let i32_at = |at: usize| i32::from_le_bytes(probe[at..at + 4].try_into().unwrap());
    assert_eq!(u64_at(0), 1_577_836_800 * 1_000_000_000, "fixed wall clock");
    assert_eq!(u64_at(8), 0, "fixed monotonic clock");
    assert_ne!(&probe[16..48], &[0u8; 32], "random bytes");
    // filestat of /inputs/data: no device, a small inode, regular file, one link, size, no times.
    assert_eq!(u64_at(48), 0);
    assert!(u64_at(56) >= 1 && u64_at(56) < 10);
    assert_eq!(probe[64], 4);
    assert_eq!(u64_at(72), 1);
    assert_eq!(u64_at(80), 10);
    assert_eq!(&probe[88..112], &[0u8; 24]);
    // The one-hour sleep returned at once with its event.
    assert_eq!((i32_at(112), i32_at(116)), (0, 1));
    // The listing is sorted: ., .., aa, data, zz.
    let len = u32::from_le_bytes(probe[120..124].try_into().unwrap()) as usize;
    let mut names = Vec::new();
    let mut at = 124;
    while at + 24 <= 124 + len {
        let namlen = u32::from_le_bytes(probe[at + 16..at + 20].try_into().unwrap()) as usize;
        names.push(String::from_utf8(probe[at + 24..at + 24 + namlen].to_vec()).unwrap());
        at += 24 + namlen;
    }
    assert_eq!(names, vec![".", "..", "aa", "data", "zz"]);
    // Another job id, other random bytes.
    let mut job2 = job.clone();
    job2.nonce = 1;
    let c = run_in(
        &Executor::new().unwrap(),
        &tmp.path().join("c"),
        &job2,
        &wasm,
        inputs,
    );
    let probe_c = fs::read(c.outputs.join("probe.bin")).unwrap();
    assert_ne!(&probe_c[16..48], &probe[16..48]);
    assert_ne!(c.result, a.result);
}

#[test]
fn example_specs_run_to_their_stated_outcomes() {
    let tmp = tempfile::tempdir().unwrap();
    let exec = Executor::new().unwrap();
    let input = fs::read(jobs_dir().join("input.txt")).unwrap();
    let mut seen = 0;
    for entry in fs::read_dir(jobs_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let spec = JobSpec::load(&path).unwrap();
        let ModuleSource::Path(module) = spec.module_source(&jobs_dir()).unwrap() else {
            panic!("{} names its module by hash", path.display());
        };
        let wasm = load_module(&module).unwrap();
        let job = spec.to_job(ModuleHash::of(&wasm), &mut |_| None).unwrap();
        assert_eq!(Job::decode(&job.encode()).unwrap(), job);
        // Each example runs over input.txt (its piece CID is the spec's) to its stated outcome.
        assert_eq!(job.inputs[0].comm_p, comm_p(&input));
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        let r = exec
            .run(
                &job,
                &wasm,
                &[&jobs_dir().join("input.txt")],
                &tmp.path().join(&name),
            )
            .unwrap();
        let expected = match name.as_str() {
            "wc" | "fnv" | "escape" | "probe" => Outcome::Exited(0),
            "loop" => Outcome::OutOfFuel,
            "output_bomb" => Outcome::OutputLimit,
            "memory_bomb" => Outcome::MemoryLimit,
            "missing_import" => Outcome::MissingImport,
            "invalid" => Outcome::InvalidModule,
            other => panic!("no expected outcome for the example {other}"),
        };
        assert_eq!(r.outcome, expected, "{name}: {:?}", r.detail);
        if name == "wc" {
            let counts = fs::read_to_string(r.outputs.join("counts.txt")).unwrap();
            assert_eq!(counts, rust_wc(&input));
        }
        seen += 1;
    }
    assert!(seen >= 9, "{seen} specs");
    assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
}

#[test]
fn a_job_limits_the_executor_threads_not_the_process() {
    // Ten jobs that each hit a limit, one after another on one executor: the process carries on
    // and the executor still runs an honest job afterwards.
    let tmp = tempfile::tempdir().unwrap();
    let exec = Executor::with_config(ExecutorConfig { cache_modules: 2 }).unwrap();
    let inputs: &[(&str, &[u8])] = &[("data", b"a b c\n")];
    for (i, name) in [
        "loop.wat",
        "memory_bomb.wat",
        "output_bomb.wat",
        "missing_import.wat",
    ]
    .iter()
    .cycle()
    .take(10)
    .enumerate()
    {
        let wasm = example(name);
        let limits = JobLimits {
            fuel: 10_000_000,
            ..small_limits()
        };
        let job = job_for(&wasm, inputs, &[], limits);
        let r = run_in(&exec, &tmp.path().join(i.to_string()), &job, &wasm, inputs);
        assert!(!r.outcome.exited(), "{name}: {:?}", r.outcome);
    }
    let wasm = example("wc.wat");
    let job = job_for(&wasm, inputs, &[], small_limits());
    let r = run_in(&exec, &tmp.path().join("wc"), &job, &wasm, inputs);
    assert_eq!(
        fs::read_to_string(r.outputs.join("counts.txt")).unwrap(),
        "1 3 6\n"
    );
}
