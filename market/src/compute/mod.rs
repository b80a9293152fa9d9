//! Compute over data: deterministic, metered WebAssembly jobs run next to stored pieces.
//!
//! - [`spec`]: the job spec users write (YAML or JSON, Bacalhau-shaped) and the canonical
//!   [`Job`] with its binary form and [`JobId`];
//! - [`exec`]: the [`Executor`] (wasmtime 48, WASI preview 1) that runs a job under its limits;
//! - [`result`]: the [`Outcome`] and the [`ResultHash`] of a run.
//!
//! # Compute jobs: the protocol (v1)
//!
//! This section is the normative description of what every provider computes for a job; the
//! chain's compute actor, the provider and the client rely on it.
//!
//! ## The job and its id
//!
//! A job is a [`Job`]: version `1`, name, nonce, the module's hash (BLAKE3 of its binary wasm
//! bytes: WAT is compiled to binary before hashing and shipping), the entrypoint (default
//! `_start`), the arguments, the environment (sorted by name, names unique), the input pieces
//! (CommP, payload size in bytes, mount path below `/inputs`; sorted by mount path), the output
//! paths the client downloads, the limits (fuel, memory pages, timeout in ms, output bytes, output
//! entries), the verification mode (`replicated(k, named providers)` or `verifier(address,
//! named provider)`) and the payment (per provider, provider collateral, verifier fee, deadline
//! epoch). Its canonical bytes are postcard of that struct in field order ([`Job::encode`]); a job
//! decoded from bytes that do not re-encode to the same bytes is refused. Its id is
//! `BLAKE3_derive_key("lode/compute/job-id", canonical bytes)`. The client escrows
//! `k × per_provider + verifier_fee` ([`Job::escrow`]). Bounds (all checked by
//! [`Job::validate`]): 1–16 inputs, fuel 1–10¹³, memory 1–65,536 pages, timeout 1 s–24 h, output
//! ≤ 16 GiB and 1–100,000 entries, k 1–15, at most 256 arguments and 256 variables of ≤ 4 KiB each
//! (64 KiB in all), paths ≤ 1 KiB and 8 components with no empty, `.` or `..` component.
//!
//! ## The machine
//!
//! wasmtime 48.0.8 with cranelift ([`exec::engine_config`]): fuel metering, epoch interruption,
//! NaN canonicalisation, deterministic relaxed SIMD, no threads (the feature is not built), no
//! multi-memory, no memory64, a 512 KiB wasm stack. The module must import only
//! `wasi_snapshot_preview1` functions and export the entrypoint `() -> ()` (a reactor's
//! `_initialize` is called first when exported). The guest sees:
//!
//! - `argv = ["job", args…]` and the job's environment;
//! - two preopened directories, always fd 3 `/inputs` and fd 4 `/outputs`;
//! - `/inputs`, read-only: each input's payload (exactly `payload_size` bytes, the piece's data
//!   without its padding) as a file at its mount path; when the payload is a CAR whose single
//!   root's UnixFS DAG unpacks within `4 × payload_size + 1 MiB` bytes and 1,000,000 entries,
//!   its tree also at `<mount>.unpacked` (a directory, or a file when the root is a file);
//! - `/outputs`, read-write, bounded: the sizes of the regular files there may never sum to more
//!   than the output-bytes limit, counted before each write with the write's offset (so sparse
//!   writes count their gap), and at most the output-entries limit of files and directories may
//!   be created (ever, deletions do not give entries back); no links or symlinks can be made;
//! - stdin empty; stdout and stderr captured up to 1 MiB each (diagnostics only);
//! - a wall clock fixed at 2020-01-01T00:00:00Z and a monotonic clock fixed at 0; sleeps and
//!   clock subscriptions return at once;
//! - random bytes from ChaCha20 seeded with `BLAKE3_derive_key("lode/compute/random", job id)`;
//! - file metadata without times, devices or link counts, inode numbers assigned 1, 2, … in the
//!   order the job first sees files, directory sizes 0, and directory listings sorted by name;
//! - no sockets (every socket call answers `ENOTSOCK`).
//!
//! ## The outcome and the result
//!
//! A run ends with an [`Outcome`]: `Exited(code)` (the entrypoint returned: 0, or `proc_exit`),
//! `OutOfFuel`, `MemoryLimit` (a memory or table grew or was declared beyond the limit),
//! `Timeout` (wall time, checked every 10 ms), `OutputLimit`, `InvalidModule` (does not decode,
//! validate or compile, or has no such entrypoint), `MissingImport`, or `Trap(kind)`. The result
//! hash is `BLAKE3_derive_key("lode/compute/result", encoding)` where the encoding is
//!
//! ```text
//! kind: u8 ‖ value: i32 LE ‖ n: u64 LE ‖ n × ( len(path): u64 LE ‖ path ‖ len(data): u64 LE ‖ data )
//! ```
//!
//! with `(kind, value)` = `(0, exit code)`, `(1, 0)` out of fuel, `(2, 0)` memory, `(3, 0)`
//! timeout, `(4, 0)` output limit, `(5, 0)` invalid module, `(6, 0)` missing import, `(7, trap
//! code)` for a trap (1 stack overflow, 2 memory out of bounds, 3 table out of bounds, 4 indirect
//! call to null, 5 bad signature, 6 integer overflow, 7 division by zero, 8 bad conversion to
//! integer, 9 unreachable, 255 other). The files are every regular file under `/outputs` when the
//! outcome is `Exited`, and none otherwise (partial outputs of a trapped job are not part of its
//! result); `path` is relative to `/outputs`, `/`-separated, and files are in bytewise order of it.
//!
//! Everything but `Timeout` is a function of the job and its inputs: the same job gives the same
//! outcome and result hash on any machine with the same wasmtime version and target architecture
//! (stack exhaustion depends on native frame sizes, so it is only the same per architecture).
//! Jobs should make fuel their binding limit and give the timeout room: a job near its timeout
//! may time out on a slow provider and not on a fast one, and the verification decides.

pub mod exec;
pub mod result;
pub mod spec;

pub use exec::{Executor, ExecutorConfig, JobReport};
pub use result::{Outcome, OutputBounds, OutputSummary, ResultHash, TrapKind, hash_outputs};
pub use spec::{
    Job, JobId, JobInput, JobLimits, JobPayment, JobSpec, ModuleHash, ModuleSource, Verification,
    load_module, module_bytes,
};
