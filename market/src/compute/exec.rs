//! The deterministic executor: wasmtime 48 with WASI preview 1, under a job's limits.
//!
//! # How the WASI layer is made deterministic and bounded
//!
//! `wasmtime-wasi`'s preview 1 implementation (`p1::add_to_linker_sync`) does the real work
//! (argv, env, files, stdio). It runs with a fixed wall and monotonic clock, a ChaCha20 random
//! stream seeded from the job id, no sockets, `/inputs` preopened read-only and `/outputs`
//! read-write. A few of its functions are then *shadowed* in the guest's linker by functions
//! of this module, which:
//!
//! - **bound `/outputs` as the guest writes** (`fd_write`, `fd_pwrite`, `fd_filestat_set_size`,
//!   `path_open`, `path_create_directory`, `path_unlink_file`, `path_rename`): before a write
//!   reaches the disk, the file's size after it is computed from its current size and the write's
//!   offset and length, and the sum of all writable files' sizes is checked against the output
//!   limit; files and directories created are counted against the entry limit. A job that would go
//!   over ends with [`Outcome::OutputLimit`] before the write happens, so a bomb cannot fill the
//!   provider's disk (a size check after the run would come too late, and a sparse file written at
//!   a huge offset is caught because the offset counts). Writes are cut at 1 MiB a call (a short
//!   write, which every libc loops over).
//! - **hide what differs between machines**: `fd_filestat_get` and `path_filestat_get` report
//!   zero timestamps and device, one link, directories of size 0 and inode numbers numbered in
//!   the order the job first sees them; `fd_readdir` lists entries sorted by name bytes (after
//!   `.` and `..`) with the same inode numbering; `poll_oneoff` fires clock subscriptions at once
//!   (the clock is fixed, so a sleep returns immediately instead of blocking a provider's thread)
//!   and reports file descriptors ready.
//! - **refuse what lode does not offer**: `path_link`, `path_symlink` (`ENOTSUP`: outputs are
//!   regular files and directories only) and the socket calls (`ENOTSOCK`); `fd_sync` and
//!   `fd_datasync` do nothing (the outputs are read in the same process).
//!
//! The shadowing functions reach the original preview 1 functions through a small helper module
//! (WAT below) instantiated in the job's store, which imports them and has a memory of its own:
//! the host copies arguments into the helper's memory, calls the helper's export, and copies
//! results back. Calls into the helper run with fuel of their own (the job's fuel is set aside and
//! restored), so the job's fuel counts only its own instructions.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use wasmtime::{
    Caller, Config, Engine, Extern, Linker, Memory, Module, OptLevel, ResourceLimiter, Store,
    TypedFunc,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, HostMonotonicClock, HostWallClock, I32Exit, WasiCtxBuilder};

use super::result::{Outcome, OutputBounds, OutputSummary, ResultHash, TrapKind, hash_outputs};
use super::spec::{Job, JobId, JobLimits, ModuleHash, UNPACKED_SUFFIX};
use crate::error::{MarketError, MarketResult, io_at};
use crate::unixfs::UnpackLimits;

/// The wall clock every job reads: 2020-01-01T00:00:00Z.
pub const FIXED_WALL_CLOCK_SECS: u64 = 1_577_836_800;
/// Bytes of stdout and of stderr kept for the report (writing more ends the job with
/// [`Outcome::OutputLimit`]); they are diagnostics, not part of the result.
pub const STDIO_CAPTURE: usize = 1 << 20;
/// How often the engine's epoch advances: the wall-time limit's resolution.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// The wasm stack (native bytes): part of what makes stack exhaustion the same everywhere.
pub const MAX_WASM_STACK: usize = 512 << 10;
/// Most elements of one table.
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Most bytes one `fd_write`/`fd_pwrite` writes (a short write beyond).
pub const MAX_WRITE_CHUNK: usize = 1 << 20;
/// Most entries an input CAR may unpack to.
pub const UNPACK_MAX_ENTRIES: u64 = 1_000_000;
/// Native stack of the thread a job runs on.
const JOB_THREAD_STACK: usize = 8 << 20;
/// Fuel the helper runs with (a handful of instructions a call).
const HELPER_FUEL: u64 = 1_000_000;
/// Most compiled modules kept in memory.
const DEFAULT_CACHE_MODULES: usize = 64;

const WASI: &str = "wasi_snapshot_preview1";

// WASI errno values.
const E_SUCCESS: i32 = 0;
const E_FAULT: i32 = 21;
const E_INVAL: i32 = 28;
const E_NAMETOOLONG: i32 = 37;
const E_NOTSOCK: i32 = 57;
const E_NOTSUP: i32 = 58;

// WASI file types and flags.
const FILETYPE_DIRECTORY: u8 = 3;
const FILETYPE_REGULAR: u8 = 4;
const RIGHT_FD_WRITE: u64 = 1 << 6;
const FDFLAG_APPEND: u16 = 1;
const OFLAG_CREAT: i32 = 1;

// The helper's memory layout.
const H_STAT: i32 = 0; // 64-byte filestat
const H_U64: i32 = 64; // a returned size, fd or count
const H_FDSTAT: i32 = 80; // 24-byte fdstat
const H_IOV: i32 = 112; // one ciovec
const H_PATH1: i32 = 4_096;
const H_PATH2: i32 = 8_192;
const PATH_MAX: usize = 4_096;
const H_DATA: i32 = 16_384;

/// The helper module: thin wasm functions over the original preview 1 imports, so the host can
/// call them with the helper's memory as the callee's memory.
const HELPER_WAT: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pwrite" (func $fd_pwrite (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_size" (func $set_size (param i32 i64) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_get" (func $fstat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fdstat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_tell" (func $tell (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_get" (func $pstat (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory" (func $mkdir (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_unlink_file" (func $unlink (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_rename" (func $rename (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_readdir" (func $readdir (param i32 i32 i32 i64 i32) (result i32)))
  (memory (export "memory") 18 18)
  (func (export "fd_write") (param i32 i32 i32 i32) (result i32)
    local.get 0 local.get 1 local.get 2 local.get 3 call $fd_write)
  (func (export "fd_pwrite") (param i32 i32 i32 i64 i32) (result i32)
    local.get 0 local.get 1 local.get 2 local.get 3 local.get 4 call $fd_pwrite)
  (func (export "set_size") (param i32 i64) (result i32)
    local.get 0 local.get 1 call $set_size)
  (func (export "fstat") (param i32 i32) (result i32)
    local.get 0 local.get 1 call $fstat)
  (func (export "fdstat") (param i32 i32) (result i32)
    local.get 0 local.get 1 call $fdstat)
  (func (export "tell") (param i32 i32) (result i32)
    local.get 0 local.get 1 call $tell)
  (func (export "pstat") (param i32 i32 i32 i32 i32) (result i32)
    local.get 0 local.get 1 local.get 2 local.get 3 local.get 4 call $pstat)
  (func (export "open") (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)
    local.get 0 local.get 1 local.get 2 local.get 3 local.get 4
    local.get 5 local.get 6 local.get 7 local.get 8 call $open)
  (func (export "mkdir") (param i32 i32 i32) (result i32)
    local.get 0 local.get 1 local.get 2 call $mkdir)
  (func (export "unlink") (param i32 i32 i32) (result i32)
    local.get 0 local.get 1 local.get 2 call $unlink)
  (func (export "rename") (param i32 i32 i32 i32 i32 i32) (result i32)
    local.get 0 local.get 1 local.get 2 local.get 3 local.get 4 local.get 5 call $rename)
  (func (export "readdir") (param i32 i32 i32 i64 i32) (result i32)
    local.get 0 local.get 1 local.get 2 local.get 3 local.get 4 call $readdir)
)
"#;

/// Options of an [`Executor`].
#[derive(Clone, Copy, Debug)]
pub struct ExecutorConfig {
    /// Compiled modules kept in memory (by module hash); the oldest is dropped beyond.
    pub cache_modules: usize,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            cache_modules: DEFAULT_CACHE_MODULES,
        }
    }
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct JobReport {
    /// The job's id.
    pub job: JobId,
    /// How it ended.
    pub outcome: Outcome,
    /// The result hash ([`hash_outputs`] of the outcome and `/outputs`).
    pub result: ResultHash,
    /// What the result covers under `/outputs` (zero unless the job exited).
    pub outputs_summary: OutputSummary,
    /// The host directory that was `/outputs` (kept for the caller; its content is the result's
    /// only when the job exited).
    pub outputs: PathBuf,
    /// Fuel used.
    pub fuel_consumed: u64,
    /// Captured stdout (at most [`STDIO_CAPTURE`] bytes): diagnostics, not part of the result.
    pub stdout: Vec<u8>,
    /// Captured stderr, likewise.
    pub stderr: Vec<u8>,
    /// Why the module was refused or the job trapped, for people (not part of the result).
    pub detail: Option<String>,
    /// Whether the compiled module came from the cache.
    pub cached_module: bool,
    /// Time spent compiling (zero when cached).
    pub compile_time: Duration,
    /// Time spent instantiating and running.
    pub run_time: Duration,
}

/// Runs jobs. One per process is enough: it holds the engine, the compiled-module cache and the
/// thread that advances the epoch. [`Executor::run`] blocks; call it from a blocking thread
/// (`tokio::task::spawn_blocking`), never from an async task.
pub struct Executor {
    engine: Engine,
    base: Linker<JobState>,
    guest: Linker<JobState>,
    helper: Module,
    cache: Mutex<ModuleCache>,
    config: ExecutorConfig,
    ticker: Option<thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

#[derive(Default)]
struct ModuleCache {
    modules: HashMap<ModuleHash, Module>,
    order: Vec<ModuleHash>,
}

fn exec_err(why: impl std::fmt::Display) -> MarketError {
    MarketError::Executor(why.to_string())
}

/// The engine configuration every provider runs (wasmtime's deterministic-execution settings).
pub fn engine_config() -> Config {
    let mut c = Config::new();
    c.consume_fuel(true)
        .epoch_interruption(true)
        .cranelift_nan_canonicalization(true)
        .relaxed_simd_deterministic(true)
        .cranelift_opt_level(OptLevel::Speed)
        .max_wasm_stack(MAX_WASM_STACK)
        .wasm_multi_memory(false)
        .wasm_memory64(false)
        .wasm_shared_everything_threads(false)
        .wasm_custom_page_sizes(false)
        .parallel_compilation(true);
    // Threads: wasmtime is built without its `threads` feature, so shared memories and atomics
    // waits cannot be enabled at all.
    c
}

impl Executor {
    /// An executor with the default options.
    pub fn new() -> MarketResult<Self> {
        Self::with_config(ExecutorConfig::default())
    }

    /// An executor with `config`.
    pub fn with_config(config: ExecutorConfig) -> MarketResult<Self> {
        let engine = Engine::new(&engine_config()).map_err(exec_err)?;
        let mut base: Linker<JobState> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut base, |s: &mut JobState| &mut s.wasi)
            .map_err(exec_err)?;
        let mut guest = base.clone();
        shadow(&mut guest)?;
        let helper_wasm = wat::parse_str(HELPER_WAT).map_err(exec_err)?;
        let helper = Module::from_binary(&engine, &helper_wasm).map_err(exec_err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = stop.clone();
            thread::Builder::new()
                .name("lode-job-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(exec_err)?
        };
        Ok(Executor {
            engine,
            base,
            guest,
            helper,
            cache: Mutex::new(ModuleCache::default()),
            config,
            ticker: Some(ticker),
            stop,
        })
    }

    /// The engine (for tools that want its precompile compatibility hash).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Validates and compiles `wasm` (kept in the cache): `Ok(hash)` for a module this executor
    /// can run, [`MarketError::JobModule`] naming why not. Imports are not checked here.
    pub fn compile(&self, wasm: &[u8]) -> MarketResult<ModuleHash> {
        let hash = ModuleHash::of(wasm);
        self.module(wasm, hash)
            .map(|_| hash)
            .map_err(|why| MarketError::JobModule(format!("{hash}: {why}")))
    }

    /// Whether the module is in the cache.
    pub fn is_cached(&self, hash: &ModuleHash) -> bool {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .modules
            .contains_key(hash)
    }

    /// Compiled module: from the cache, or compiled now. `Err` is why the module is invalid.
    fn module(&self, wasm: &[u8], hash: ModuleHash) -> Result<(Module, bool, Duration), String> {
        if let Some(m) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .modules
            .get(&hash)
        {
            return Ok((m.clone(), true, Duration::ZERO));
        }
        if !wasm.starts_with(b"\0asm") {
            return Err("not binary wasm (no \\0asm magic)".into());
        }
        let start = Instant::now();
        let module = Module::from_binary(&self.engine, wasm).map_err(|e| format!("{e:#}"))?;
        let took = start.elapsed();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.modules.insert(hash, module.clone()).is_none() {
            cache.order.push(hash);
        }
        while cache.order.len() > self.config.cache_modules.max(1) {
            let old = cache.order.remove(0);
            cache.modules.remove(&old);
        }
        Ok((module, false, took))
    }

    /// Runs `job` with the module `wasm` (whose BLAKE3 must be the job's module hash) over the
    /// payload files `payloads` (one per `job.inputs`, in order, each exactly the input's payload
    /// size), in the work directory `work` (which must not exist or be empty; `work/inputs` and
    /// `work/outputs` are made there and left for the caller, who removes `work` when done).
    ///
    /// The job's own faults are outcomes in the report; an `Err` is the executor's or the host's
    /// failure (a module that does not match the job, a payload of the wrong size, I/O).
    pub fn run(
        &self,
        job: &Job,
        wasm: &[u8],
        payloads: &[&Path],
        work: &Path,
    ) -> MarketResult<JobReport> {
        job.validate()?;
        let hash = ModuleHash::of(wasm);
        if hash != job.module {
            return Err(MarketError::JobModule(format!(
                "the module's bytes hash to {hash}, the job names {}",
                job.module
            )));
        }
        if payloads.len() != job.inputs.len() {
            return Err(exec_err(format!(
                "{} payload files for {} inputs",
                payloads.len(),
                job.inputs.len()
            )));
        }
        prepare_work(work)?;
        let inputs = work.join("inputs");
        let outputs = work.join("outputs");
        stage_inputs(job, payloads, &inputs)?;
        fs::create_dir(&outputs).map_err(io_at(&outputs))?;
        let id = job.id();
        let bounds = OutputBounds {
            max_bytes: job.limits.output_bytes,
            max_entries: u64::from(job.limits.output_entries),
        };
        let (module, cached, compile_time) = match self.module(wasm, hash) {
            Ok(m) => m,
            Err(why) => {
                let (result, summary) = hash_outputs(Outcome::InvalidModule, None, bounds)?;
                return Ok(JobReport {
                    job: id,
                    outcome: Outcome::InvalidModule,
                    result,
                    outputs_summary: summary,
                    outputs,
                    fuel_consumed: 0,
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                    detail: Some(why),
                    cached_module: false,
                    compile_time: Duration::ZERO,
                    run_time: Duration::ZERO,
                });
            }
        };
        let start = Instant::now();
        let ran = thread::scope(|s| {
            thread::Builder::new()
                .name("lode-job".into())
                .stack_size(JOB_THREAD_STACK)
                .spawn_scoped(s, || self.execute(id, job, &module, &inputs, &outputs))
                .map_err(exec_err)?
                .join()
                .map_err(|_| exec_err("the job's thread panicked"))?
        })?;
        let run_time = start.elapsed();
        let (result, summary) = hash_outputs(ran.outcome, Some(&outputs), bounds)?;
        Ok(JobReport {
            job: id,
            outcome: ran.outcome,
            result,
            outputs_summary: summary,
            outputs,
            fuel_consumed: ran.fuel_consumed,
            stdout: ran.stdout,
            stderr: ran.stderr,
            detail: ran.detail,
            cached_module: cached,
            compile_time,
            run_time,
        })
    }

    /// Instantiates and runs the module on the current thread.
    fn execute(
        &self,
        id: JobId,
        job: &Job,
        module: &Module,
        inputs: &Path,
        outputs: &Path,
    ) -> MarketResult<Ran> {
        let stdout = MemoryOutputPipe::new(STDIO_CAPTURE);
        let stderr = MemoryOutputPipe::new(STDIO_CAPTURE);
        let mut argv = Vec::with_capacity(job.args.len().saturating_add(1));
        argv.push("job".to_string());
        argv.extend(job.args.iter().cloned());
        let mut b = WasiCtxBuilder::new();
        b.args(&argv)
            .envs(&job.env)
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_blocking_current_thread(true)
            .wall_clock(FixedWallClock)
            .monotonic_clock(FixedMonotonicClock)
            .secure_random(ChaCha20Rng::from_seed(derive_seed(
                "lode/compute/random",
                id,
            )))
            .insecure_random(ChaCha20Rng::from_seed(derive_seed(
                "lode/compute/insecure-random",
                id,
            )))
            .insecure_random_seed(u128::from_le_bytes(
                derive_seed("lode/compute/insecure-seed", id)
                    .get(..16)
                    .and_then(|s| <[u8; 16]>::try_from(s).ok())
                    .unwrap_or_default(),
            ))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        b.preopened_dir(inputs, "/inputs", FsPerms::ReadOnly)
            .map_err(exec_err)?;
        b.preopened_dir(outputs, "/outputs", FsPerms::ReadWrite)
            .map_err(exec_err)?;
        let state = JobState {
            wasi: b.build_p1(),
            limiter: Limiter {
                max_memory: usize::try_from(job.limits.memory_bytes()).unwrap_or(usize::MAX),
                memory_exceeded: false,
                helper_phase: true,
            },
            helper: None,
            acct: OutputAccount::new(&job.limits),
            inos: HashMap::new(),
            listing: None,
            stdout: stdout.clone(),
            stderr: stderr.clone(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_fuel(job.limits.fuel).map_err(exec_err)?;
        let ticks = job
            .limits
            .timeout_ms
            .div_ceil(EPOCH_TICK.as_millis().max(1) as u64)
            .saturating_add(1);
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();

        let helper = self
            .base
            .instantiate(&mut store, &self.helper)
            .map_err(|e| exec_err(format!("the WASI helper: {e:#}")))?;
        store.data_mut().helper = Some(Helper::new(&mut store, &helper)?);
        store.data_mut().limiter.helper_phase = false;

        let outcome = self.instantiate_and_call(&mut store, job, module);
        let fuel_left = store.get_fuel().unwrap_or(0);
        drop(store);
        let (outcome, detail) = outcome;
        Ok(Ran {
            outcome,
            detail,
            fuel_consumed: job.limits.fuel.saturating_sub(fuel_left),
            stdout: stdout.contents().to_vec(),
            stderr: stderr.contents().to_vec(),
        })
    }

    fn instantiate_and_call(
        &self,
        store: &mut Store<JobState>,
        job: &Job,
        module: &Module,
    ) -> (Outcome, Option<String>) {
        for import in module.imports() {
            let provided = import.module() == WASI
                && self
                    .guest
                    .get(&mut *store, import.module(), import.name())
                    .is_ok();
            if !provided {
                return (
                    Outcome::MissingImport,
                    Some(format!(
                        "the module imports {}::{}, which the executor does not provide",
                        import.module(),
                        import.name()
                    )),
                );
            }
        }
        let instance = match self.guest.instantiate(&mut *store, module) {
            Ok(i) => i,
            Err(e) => return classify(store.data(), &e, Outcome::MissingImport),
        };
        if job.entrypoint != "_initialize"
            && let Ok(init) = instance.get_typed_func::<(), ()>(&mut *store, "_initialize")
            && let Err(e) = init.call(&mut *store, ())
        {
            return classify(store.data(), &e, Outcome::Trap(TrapKind::Other));
        }
        let entry = match instance.get_typed_func::<(), ()>(&mut *store, &job.entrypoint) {
            Ok(f) => f,
            Err(e) => {
                return (
                    Outcome::InvalidModule,
                    Some(format!(
                        "no exported function {:?} of type () -> (): {e:#}",
                        job.entrypoint
                    )),
                );
            }
        };
        match entry.call(&mut *store, ()) {
            Ok(()) => (Outcome::Exited(0), None),
            Err(e) => classify(store.data(), &e, Outcome::Trap(TrapKind::Other)),
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

/// What [`Executor::execute`] returns.
struct Ran {
    outcome: Outcome,
    detail: Option<String>,
    fuel_consumed: u64,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// The outcome of a failed call: the executor's own limit flags first (their errors are ours),
/// then `proc_exit`, then wasm traps; anything else is `other`.
fn classify(state: &JobState, e: &wasmtime::Error, other: Outcome) -> (Outcome, Option<String>) {
    let detail = Some(format!("{e:#}"));
    if state.acct.exceeded {
        return (Outcome::OutputLimit, detail);
    }
    if state.limiter.memory_exceeded {
        return (Outcome::MemoryLimit, detail);
    }
    if let Some(exit) = e.downcast_ref::<I32Exit>() {
        return (Outcome::Exited(exit.0), None);
    }
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        let outcome = match trap {
            wasmtime::Trap::OutOfFuel => Outcome::OutOfFuel,
            wasmtime::Trap::Interrupt => Outcome::Timeout,
            t => Outcome::Trap(TrapKind::from_wasmtime(*t)),
        };
        return (outcome, detail);
    }
    (other, detail)
}

/// A 32-byte seed: `BLAKE3_derive_key(context, job id)`.
fn derive_seed(context: &str, id: JobId) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(context);
    h.update(&id.0);
    *h.finalize().as_bytes()
}

struct FixedWallClock;

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        Duration::from_secs(FIXED_WALL_CLOCK_SECS)
    }
}

struct FixedMonotonicClock;

impl HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        0
    }
}

// ---------------------------------------------------------------------------------------------
// The work directory and inputs.

fn prepare_work(work: &Path) -> MarketResult<()> {
    match fs::read_dir(work) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(exec_err(format!(
                    "the work directory {} is not empty",
                    work.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(work).map_err(io_at(work))
        }
        Err(e) => Err(io_at(work)(e)),
    }
}

/// Lays out `/inputs`: each payload at its mount path (hard-linked, or copied across file
/// systems), and a CAR payload's UnixFS tree at `<mount>.unpacked` when it unpacks within
/// `4 × payload + 1 MiB` bytes and [`UNPACK_MAX_ENTRIES`] entries.
fn stage_inputs(job: &Job, payloads: &[&Path], dir: &Path) -> MarketResult<()> {
    fs::create_dir(dir).map_err(io_at(dir))?;
    for (input, payload) in job.inputs.iter().zip(payloads) {
        let meta = fs::metadata(payload).map_err(io_at(payload))?;
        if !meta.is_file() || meta.len() != input.payload_size {
            return Err(exec_err(format!(
                "{} is not a file of {} bytes, the payload size the job gives for /inputs/{}",
                payload.display(),
                input.payload_size,
                input.path
            )));
        }
        let mut target = dir.to_path_buf();
        for comp in input.path.split('/') {
            target.push(comp);
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io_at(parent))?;
        }
        if fs::hard_link(payload, &target).is_err() {
            fs::copy(payload, &target).map_err(io_at(&target))?;
        }
        if crate::car::looks_like_car(&target)? {
            let unpacked = PathBuf::from(format!("{}{UNPACKED_SUFFIX}", target.display()));
            let limits = UnpackLimits {
                max_bytes: input.payload_size.saturating_mul(4).saturating_add(1 << 20),
                max_entries: UNPACK_MAX_ENTRIES,
                ..UnpackLimits::default()
            };
            match crate::car::unpack_car(&target, None, &unpacked, &limits, &mut |_| {}) {
                Ok(_) => {}
                Err(e @ MarketError::Io { .. }) => return Err(e),
                Err(e) => {
                    tracing::debug!(input = %input.path, error = %e, "input CAR not unpacked");
                    if unpacked.is_dir() {
                        fs::remove_dir_all(&unpacked).map_err(io_at(&unpacked))?;
                    } else if unpacked.exists() {
                        fs::remove_file(&unpacked).map_err(io_at(&unpacked))?;
                    }
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The store's state.

struct JobState {
    wasi: WasiP1Ctx,
    limiter: Limiter,
    helper: Option<Helper>,
    acct: OutputAccount,
    /// Host inode → the inode number the job sees (1, 2, … in the order it first sees them).
    inos: HashMap<u64, u64>,
    /// The last full directory listing served, for `fd_readdir` calls that continue it.
    listing: Option<Listing>,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl JobState {
    fn virtual_ino(&mut self, real: u64) -> u64 {
        let next = (self.inos.len() as u64).saturating_add(1);
        *self.inos.entry(real).or_insert(next)
    }
}

/// Directory entries: (name, host inode, file type).
type DirEntries = Vec<(Vec<u8>, u64, u8)>;

struct Listing {
    fd: i32,
    dir_ino: u64,
    /// `.`, `..`, then the entries sorted by name: (name, host inode, file type).
    entries: Vec<(Vec<u8>, u64, u8)>,
}

struct Limiter {
    max_memory: usize,
    memory_exceeded: bool,
    /// While the helper is instantiated its fixed memory is allowed whatever the job's limit.
    helper_phase: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if self.helper_phase || desired <= self.max_memory {
            return Ok(true);
        }
        self.memory_exceeded = true;
        Err(wasmtime::Error::msg(format!(
            "the job's memory limit of {} bytes is exceeded ({desired} bytes asked)",
            self.max_memory
        )))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired <= MAX_TABLE_ELEMENTS {
            return Ok(true);
        }
        self.memory_exceeded = true;
        Err(wasmtime::Error::msg(format!(
            "a table of {desired} elements is over the {MAX_TABLE_ELEMENTS} allowed"
        )))
    }

    fn instances(&self) -> usize {
        2
    }

    fn tables(&self) -> usize {
        16
    }

    fn memories(&self) -> usize {
        2
    }
}

/// The bytes and entries the job holds under `/outputs`.
struct OutputAccount {
    max_bytes: u64,
    max_entries: u64,
    /// Host inode of each writable regular file the job opened → its size.
    sizes: HashMap<u64, u64>,
    total: u64,
    /// Host inodes of files created with `O_CREAT`.
    created: HashSet<u64>,
    /// Files and directories created.
    entries: u64,
    exceeded: bool,
}

impl OutputAccount {
    fn new(limits: &JobLimits) -> Self {
        OutputAccount {
            max_bytes: limits.output_bytes,
            max_entries: u64::from(limits.output_entries),
            sizes: HashMap::new(),
            total: 0,
            created: HashSet::new(),
            entries: 0,
            exceeded: false,
        }
    }

    /// Whether the file `ino` may become `size` bytes long.
    fn allows(&self, ino: u64, size: u64) -> bool {
        let current = self.sizes.get(&ino).copied().unwrap_or(0);
        self.total.saturating_sub(current).saturating_add(size) <= self.max_bytes
    }

    fn record(&mut self, ino: u64, size: u64) {
        let current = self.sizes.insert(ino, size).unwrap_or(0);
        self.total = self.total.saturating_sub(current).saturating_add(size);
    }

    fn forget(&mut self, ino: u64) {
        if let Some(size) = self.sizes.remove(&ino) {
            self.total = self.total.saturating_sub(size);
        }
    }

    fn exceed(&mut self, what: &str) -> wasmtime::Error {
        self.exceeded = true;
        wasmtime::Error::msg(format!(
            "the job's output limit is exceeded ({what}; at most {} bytes and {} entries)",
            self.max_bytes, self.max_entries
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// The helper instance.

#[derive(Clone)]
struct Helper {
    memory: Memory,
    fd_write: TypedFunc<(i32, i32, i32, i32), i32>,
    fd_pwrite: TypedFunc<(i32, i32, i32, i64, i32), i32>,
    set_size: TypedFunc<(i32, i64), i32>,
    fstat: TypedFunc<(i32, i32), i32>,
    fdstat: TypedFunc<(i32, i32), i32>,
    tell: TypedFunc<(i32, i32), i32>,
    pstat: TypedFunc<(i32, i32, i32, i32, i32), i32>,
    #[allow(clippy::type_complexity)]
    open: TypedFunc<(i32, i32, i32, i32, i32, i64, i64, i32, i32), i32>,
    mkdir: TypedFunc<(i32, i32, i32), i32>,
    unlink: TypedFunc<(i32, i32, i32), i32>,
    rename: TypedFunc<(i32, i32, i32, i32, i32, i32), i32>,
    readdir: TypedFunc<(i32, i32, i32, i64, i32), i32>,
}

impl Helper {
    fn new(store: &mut Store<JobState>, i: &wasmtime::Instance) -> MarketResult<Helper> {
        let e = |e: wasmtime::Error| exec_err(format!("the WASI helper: {e:#}"));
        Ok(Helper {
            memory: i
                .get_memory(&mut *store, "memory")
                .ok_or_else(|| exec_err("the WASI helper has no memory"))?,
            fd_write: i.get_typed_func(&mut *store, "fd_write").map_err(e)?,
            fd_pwrite: i.get_typed_func(&mut *store, "fd_pwrite").map_err(e)?,
            set_size: i.get_typed_func(&mut *store, "set_size").map_err(e)?,
            fstat: i.get_typed_func(&mut *store, "fstat").map_err(e)?,
            fdstat: i.get_typed_func(&mut *store, "fdstat").map_err(e)?,
            tell: i.get_typed_func(&mut *store, "tell").map_err(e)?,
            pstat: i.get_typed_func(&mut *store, "pstat").map_err(e)?,
            open: i.get_typed_func(&mut *store, "open").map_err(e)?,
            mkdir: i.get_typed_func(&mut *store, "mkdir").map_err(e)?,
            unlink: i.get_typed_func(&mut *store, "unlink").map_err(e)?,
            rename: i.get_typed_func(&mut *store, "rename").map_err(e)?,
            readdir: i.get_typed_func(&mut *store, "readdir").map_err(e)?,
        })
    }
}

type Cx<'a> = Caller<'a, JobState>;
type Res = wasmtime::Result<i32>;

/// Runs `f` with the helper, the job's fuel set aside for the duration.
fn hosted(caller: &mut Cx<'_>, f: impl FnOnce(&mut Cx<'_>, &Helper) -> Res) -> Res {
    let Some(h) = caller.data().helper.clone() else {
        return Err(wasmtime::Error::msg("the WASI helper is missing"));
    };
    let fuel = caller.get_fuel()?;
    caller.set_fuel(HELPER_FUEL)?;
    let r = f(caller, &h);
    caller.set_fuel(fuel)?;
    r
}

fn guest_memory(caller: &mut Cx<'_>) -> Option<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

fn range(ptr: i32, len: usize) -> Option<std::ops::Range<usize>> {
    let start = usize::try_from(ptr as u32).ok()?;
    Some(start..start.checked_add(len)?)
}

fn read_mem(caller: &Cx<'_>, mem: Memory, ptr: i32, len: usize) -> Option<Vec<u8>> {
    mem.data(caller).get(range(ptr, len)?).map(<[u8]>::to_vec)
}

fn write_mem(caller: &mut Cx<'_>, mem: Memory, ptr: i32, bytes: &[u8]) -> bool {
    match range(ptr, bytes.len()).and_then(|r| mem.data_mut(caller).get_mut(r)) {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

fn in_bounds(caller: &Cx<'_>, mem: Memory, ptr: i32, len: usize) -> bool {
    range(ptr, len).is_some_and(|r| r.end <= mem.data_size(caller))
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    b.get(at..at.saturating_add(8))
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_le_bytes)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at.saturating_add(4))
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, u32::from_le_bytes)
}

/// A file's host identity as preview 1 reports it.
#[derive(Clone, Copy)]
struct Stat {
    ino: u64,
    size: u64,
    filetype: u8,
}

fn parse_stat(b: &[u8]) -> Stat {
    Stat {
        ino: le_u64(b, 8),
        size: le_u64(b, 32),
        filetype: b.get(16).copied().unwrap_or(0),
    }
}

/// `fd_filestat_get` through the helper: the raw 64 bytes, or the errno.
fn raw_fstat(caller: &mut Cx<'_>, h: &Helper, fd: i32) -> wasmtime::Result<Result<Vec<u8>, i32>> {
    let e = h.fstat.call(&mut *caller, (fd, H_STAT))?;
    if e != E_SUCCESS {
        return Ok(Err(e));
    }
    Ok(Ok(
        read_mem(caller, h.memory, H_STAT, 64).unwrap_or_default()
    ))
}

/// `path_filestat_get` through the helper for a path already at `H_PATH1`.
fn raw_pstat(
    caller: &mut Cx<'_>,
    h: &Helper,
    fd: i32,
    flags: i32,
    at: i32,
    len: usize,
) -> wasmtime::Result<Result<Vec<u8>, i32>> {
    let len = i32::try_from(len).unwrap_or(i32::MAX);
    let e = h.pstat.call(&mut *caller, (fd, flags, at, len, H_STAT))?;
    if e != E_SUCCESS {
        return Ok(Err(e));
    }
    Ok(Ok(
        read_mem(caller, h.memory, H_STAT, 64).unwrap_or_default()
    ))
}

/// A writable regular file behind `fd`: its stat and whether it appends.
fn writable_file(
    caller: &mut Cx<'_>,
    h: &Helper,
    fd: i32,
) -> wasmtime::Result<Option<(Stat, bool)>> {
    let Ok(raw) = raw_fstat(caller, h, fd)? else {
        return Ok(None);
    };
    let st = parse_stat(&raw);
    if st.filetype != FILETYPE_REGULAR {
        return Ok(None);
    }
    if h.fdstat.call(&mut *caller, (fd, H_FDSTAT))? != E_SUCCESS {
        return Ok(None);
    }
    let fdstat = read_mem(caller, h.memory, H_FDSTAT, 24).unwrap_or_default();
    let flags = u16::from_le_bytes([
        fdstat.get(2).copied().unwrap_or(0),
        fdstat.get(3).copied().unwrap_or(0),
    ]);
    if le_u64(&fdstat, 8) & RIGHT_FD_WRITE == 0 {
        return Ok(None);
    }
    Ok(Some((st, flags & FDFLAG_APPEND != 0)))
}

/// Copies a guest path into the helper at `at`; `Err(errno)` when it cannot.
fn copy_path(
    caller: &mut Cx<'_>,
    h: &Helper,
    mem: Memory,
    ptr: i32,
    len: i32,
    at: i32,
) -> Result<usize, i32> {
    let len = usize::try_from(len as u32).map_err(|_| E_INVAL)?;
    if len > PATH_MAX {
        return Err(E_NAMETOOLONG);
    }
    let bytes = read_mem(caller, mem, ptr, len).ok_or(E_FAULT)?;
    if !write_mem(caller, h.memory, at, &bytes) {
        return Err(E_FAULT);
    }
    Ok(len)
}

// ---------------------------------------------------------------------------------------------
// The shadowing functions.

fn shadow(linker: &mut Linker<JobState>) -> MarketResult<()> {
    linker.allow_shadowing(true);
    let e = |e: wasmtime::Error| exec_err(format!("the WASI layer: {e:#}"));
    linker
        .func_wrap(
            WASI,
            "fd_write",
            |mut c: Cx<'_>, fd: i32, iovs: i32, n: i32, nw: i32| {
                hosted(&mut c, |c, h| write_impl(c, h, fd, iovs, n, None, nw))
            },
        )
        .map_err(e)?;
    linker
        .func_wrap(
            WASI,
            "fd_pwrite",
            |mut c: Cx<'_>, fd: i32, iovs: i32, n: i32, off: i64, nw: i32| {
                hosted(&mut c, |c, h| {
                    write_impl(c, h, fd, iovs, n, Some(off as u64), nw)
                })
            },
        )
        .map_err(e)?;
    linker
        .func_wrap(
            WASI,
            "fd_filestat_set_size",
            |mut c: Cx<'_>, fd: i32, size: i64| {
                hosted(&mut c, |c, h| set_size_impl(c, h, fd, size))
            },
        )
        .map_err(e)?;
    linker
        .func_wrap(
            WASI,
            "path_open",
            |mut c: Cx<'_>,
             dirfd: i32,
             dirflags: i32,
             path: i32,
             len: i32,
             oflags: i32,
             rights: i64,
             inheriting: i64,
             fdflags: i32,
             fd_out: i32| {
                let args = OpenArgs {
                    dirfd,
                    dirflags,
                    path,
                    len,
                    oflags,
                    rights,
                    inheriting,
                    fdflags,
                    fd_out,
                };
                hosted(&mut c, |c, h| open_impl(c, h, args))
            },
        )
        .map_err(e)?;
    linker
        .func_wrap(
            WASI,
            "path_create_directory",
            |mut c: Cx<'_>, fd: i32, p: i32, l: i32| {
                hosted(&mut c, |c, h| mkdir_impl(c, h, fd, p, l))
            },
        )
        .map_err(e)?;
    linker
        .func_wrap(
            WASI,
            "path_unlink_file",
            |mut c: Cx<'_>, fd: i32, p: i32, l: i32| {
                hosted(&mut c, |c, h| unlink_impl(c, h, fd, p, l))
            },
        )
        .map_err(e)?;
    linker
        .func_wrap(
            WASI,
            "path_rename",
            |mut c: Cx<'_>, fd: i32, op: i32, ol: i32, nfd: i32, np: i32, nl: i32| {
                hosted(&mut c, |c, h| rename_impl(c, h, fd, op, ol, nfd, np, nl))
            },
        )
        .map_err(e)?;
    linker
        .func_wrap(
            WASI,
            "fd_filestat_get",
            |mut c: Cx<'_>, fd: i32, buf: i32| hosted(&mut c, |c, h| fstat_impl(c, h, fd, buf)),
        )
        .map_err(e)?;
    linker
        .func_wrap(
            WASI,
            "path_filestat_get",
            |mut c: Cx<'_>, fd: i32, flags: i32, p: i32, l: i32, buf: i32| {
                hosted(&mut c, |c, h| pstat_impl(c, h, fd, flags, p, l, buf))
            },
        )
        .map_err(e)?;
    linker
        .func_wrap(
            WASI,
            "fd_readdir",
            |mut c: Cx<'_>, fd: i32, buf: i32, len: i32, cookie: i64, used: i32| {
                hosted(&mut c, |c, h| {
                    readdir_impl(c, h, fd, buf, len, cookie as u64, used)
                })
            },
        )
        .map_err(e)?;
    linker
        .func_wrap(
            WASI,
            "poll_oneoff",
            |mut c: Cx<'_>, subs: i32, events: i32, n: i32, nevents: i32| {
                poll_impl(&mut c, subs, events, n, nevents)
            },
        )
        .map_err(e)?;
    linker
        .func_wrap(WASI, "fd_sync", |mut c: Cx<'_>, fd: i32| {
            hosted(&mut c, |c, h| {
                Ok(raw_fstat(c, h, fd)?.err().unwrap_or(E_SUCCESS))
            })
        })
        .map_err(e)?;
    linker
        .func_wrap(WASI, "fd_datasync", |mut c: Cx<'_>, fd: i32| {
            hosted(&mut c, |c, h| {
                Ok(raw_fstat(c, h, fd)?.err().unwrap_or(E_SUCCESS))
            })
        })
        .map_err(e)?;
    linker
        .func_wrap(
            WASI,
            "path_link",
            |_: Cx<'_>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| -> Res {
                Ok(E_NOTSUP)
            },
        )
        .map_err(e)?;
    linker
        .func_wrap(
            WASI,
            "path_symlink",
            |_: Cx<'_>, _: i32, _: i32, _: i32, _: i32, _: i32| -> Res { Ok(E_NOTSUP) },
        )
        .map_err(e)?;
    linker
        .func_wrap(
            WASI,
            "sock_accept",
            |_: Cx<'_>, _: i32, _: i32, _: i32| -> Res { Ok(E_NOTSOCK) },
        )
        .map_err(e)?;
    linker
        .func_wrap(
            WASI,
            "sock_recv",
            |_: Cx<'_>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| -> Res { Ok(E_NOTSOCK) },
        )
        .map_err(e)?;
    linker
        .func_wrap(
            WASI,
            "sock_send",
            |_: Cx<'_>, _: i32, _: i32, _: i32, _: i32, _: i32| -> Res { Ok(E_NOTSOCK) },
        )
        .map_err(e)?;
    linker
        .func_wrap(WASI, "sock_shutdown", |_: Cx<'_>, _: i32, _: i32| -> Res {
            Ok(E_NOTSOCK)
        })
        .map_err(e)?;
    Ok(())
}

/// `fd_write` (`at: None`) and `fd_pwrite` (`at: Some(offset)`), bounded by the output limit.
fn write_impl(
    c: &mut Cx<'_>,
    h: &Helper,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    at: Option<u64>,
    nwritten: i32,
) -> Res {
    let Some(mem) = guest_memory(c) else {
        return Ok(E_FAULT);
    };
    if !in_bounds(c, mem, nwritten, 4) {
        return Ok(E_FAULT);
    }
    let count = iovs_len as u32;
    if count > 1024 {
        return Ok(E_INVAL);
    }
    let Some(iov_bytes) = read_mem(c, mem, iovs, (count as usize).saturating_mul(8)) else {
        return Ok(E_FAULT);
    };
    // Like preview 1 itself: the first non-empty buffer is written.
    let (buf, len) = iov_bytes
        .chunks_exact(8)
        .map(|iov| (le_u32(iov, 0), le_u32(iov, 4)))
        .find(|&(_, len)| len != 0)
        .unwrap_or((0, 0));
    let n = (len as usize).min(MAX_WRITE_CHUNK);
    let Some(data) = read_mem(c, mem, buf as i32, n) else {
        return Ok(E_FAULT);
    };
    let file = writable_file(c, h, fd)?;
    let mut start = None;
    if let Some((st, append)) = file {
        let from = match (append, at) {
            (true, _) => st.size,
            (false, Some(off)) => off,
            (false, None) => {
                if h.tell.call(&mut *c, (fd, H_U64))? != E_SUCCESS {
                    return Ok(E_INVAL);
                }
                le_u64(&read_mem(c, h.memory, H_U64, 8).unwrap_or_default(), 0)
            }
        };
        let end = from.saturating_add(n as u64).max(st.size);
        if !c.data().acct.allows(st.ino, end) {
            return Err(c.data_mut().acct.exceed("a write"));
        }
        start = Some((st, from));
    }
    if !write_mem(c, h.memory, H_DATA, &data) {
        return Ok(E_FAULT);
    }
    let mut iov = Vec::with_capacity(8);
    iov.extend_from_slice(&H_DATA.to_le_bytes());
    iov.extend_from_slice(&(n as u32).to_le_bytes());
    write_mem(c, h.memory, H_IOV, &iov);
    let called = match at {
        None => h.fd_write.call(&mut *c, (fd, H_IOV, 1, H_U64)),
        Some(off) => h.fd_pwrite.call(&mut *c, (fd, H_IOV, 1, off as i64, H_U64)),
    };
    let errno = match called {
        Ok(e) => e,
        Err(err) => {
            // A full stdout or stderr capture traps inside preview 1: that is the output limit.
            let full = |p: &MemoryOutputPipe| p.contents().len().saturating_add(n) > STDIO_CAPTURE;
            if file.is_none() && (full(&c.data().stdout) || full(&c.data().stderr)) {
                return Err(c.data_mut().acct.exceed("stdout or stderr"));
            }
            return Err(err);
        }
    };
    if errno == E_SUCCESS {
        let written = le_u32(&read_mem(c, h.memory, H_U64, 4).unwrap_or_default(), 0);
        write_mem(c, mem, nwritten, &written.to_le_bytes());
        if let Some((st, from)) = start {
            let end = from.saturating_add(u64::from(written)).max(st.size);
            c.data_mut().acct.record(st.ino, end);
        }
        c.data_mut().listing = None;
    }
    Ok(errno)
}

fn set_size_impl(c: &mut Cx<'_>, h: &Helper, fd: i32, size: i64) -> Res {
    let file = writable_file(c, h, fd)?;
    if let Some((st, _)) = file
        && !c.data().acct.allows(st.ino, size as u64)
    {
        return Err(c.data_mut().acct.exceed("a file's new size"));
    }
    let errno = h.set_size.call(&mut *c, (fd, size))?;
    if errno == E_SUCCESS
        && let Some((st, _)) = file
    {
        c.data_mut().acct.record(st.ino, size as u64);
    }
    Ok(errno)
}

#[derive(Clone, Copy)]
struct OpenArgs {
    dirfd: i32,
    dirflags: i32,
    path: i32,
    len: i32,
    oflags: i32,
    rights: i64,
    inheriting: i64,
    fdflags: i32,
    fd_out: i32,
}

fn open_impl(c: &mut Cx<'_>, h: &Helper, a: OpenArgs) -> Res {
    let Some(mem) = guest_memory(c) else {
        return Ok(E_FAULT);
    };
    if !in_bounds(c, mem, a.fd_out, 4) {
        return Ok(E_FAULT);
    }
    let len = match copy_path(c, h, mem, a.path, a.len, H_PATH1) {
        Ok(l) => l,
        Err(e) => return Ok(e),
    };
    let creat = a.oflags & OFLAG_CREAT != 0;
    if creat && c.data().acct.entries >= c.data().acct.max_entries {
        return Err(c.data_mut().acct.exceed("a file created"));
    }
    let errno = h.open.call(
        &mut *c,
        (
            a.dirfd,
            a.dirflags,
            H_PATH1,
            i32::try_from(len).unwrap_or(i32::MAX),
            a.oflags,
            a.rights,
            a.inheriting,
            a.fdflags,
            H_U64,
        ),
    )?;
    if errno != E_SUCCESS {
        return Ok(errno);
    }
    let fd = le_u32(&read_mem(c, h.memory, H_U64, 4).unwrap_or_default(), 0);
    write_mem(c, mem, a.fd_out, &fd.to_le_bytes());
    let fd = fd as i32;
    c.data_mut().listing = None;
    if let Some((st, _)) = writable_file(c, h, fd)? {
        c.data_mut().acct.record(st.ino, st.size);
    }
    if creat && let Ok(raw) = raw_fstat(c, h, fd)? {
        let ino = parse_stat(&raw).ino;
        let acct = &mut c.data_mut().acct;
        if acct.created.insert(ino) {
            acct.entries = acct.entries.saturating_add(1);
        }
    }
    Ok(E_SUCCESS)
}

fn mkdir_impl(c: &mut Cx<'_>, h: &Helper, fd: i32, path: i32, len: i32) -> Res {
    let Some(mem) = guest_memory(c) else {
        return Ok(E_FAULT);
    };
    let len = match copy_path(c, h, mem, path, len, H_PATH1) {
        Ok(l) => l,
        Err(e) => return Ok(e),
    };
    if c.data().acct.entries >= c.data().acct.max_entries {
        return Err(c.data_mut().acct.exceed("a directory created"));
    }
    let errno = h.mkdir.call(&mut *c, (fd, H_PATH1, len as i32))?;
    if errno == E_SUCCESS {
        let acct = &mut c.data_mut().acct;
        acct.entries = acct.entries.saturating_add(1);
        c.data_mut().listing = None;
    }
    Ok(errno)
}

fn regular_ino(raw: Result<Vec<u8>, i32>) -> Option<u64> {
    let st = parse_stat(&raw.ok()?);
    (st.filetype == FILETYPE_REGULAR).then_some(st.ino)
}

fn unlink_impl(c: &mut Cx<'_>, h: &Helper, fd: i32, path: i32, len: i32) -> Res {
    let Some(mem) = guest_memory(c) else {
        return Ok(E_FAULT);
    };
    let len = match copy_path(c, h, mem, path, len, H_PATH1) {
        Ok(l) => l,
        Err(e) => return Ok(e),
    };
    let ino = regular_ino(raw_pstat(c, h, fd, 0, H_PATH1, len)?);
    let errno = h.unlink.call(&mut *c, (fd, H_PATH1, len as i32))?;
    if errno == E_SUCCESS {
        if let Some(ino) = ino {
            c.data_mut().acct.forget(ino);
        }
        c.data_mut().listing = None;
    }
    Ok(errno)
}

#[allow(clippy::too_many_arguments)]
fn rename_impl(
    c: &mut Cx<'_>,
    h: &Helper,
    fd: i32,
    old: i32,
    old_len: i32,
    new_fd: i32,
    new: i32,
    new_len: i32,
) -> Res {
    let Some(mem) = guest_memory(c) else {
        return Ok(E_FAULT);
    };
    let old_len = match copy_path(c, h, mem, old, old_len, H_PATH1) {
        Ok(l) => l,
        Err(e) => return Ok(e),
    };
    let new_len = match copy_path(c, h, mem, new, new_len, H_PATH2) {
        Ok(l) => l,
        Err(e) => return Ok(e),
    };
    let replaced = regular_ino(raw_pstat(c, h, new_fd, 0, H_PATH2, new_len)?);
    let moved = regular_ino(raw_pstat(c, h, fd, 0, H_PATH1, old_len)?);
    let errno = h.rename.call(
        &mut *c,
        (fd, H_PATH1, old_len as i32, new_fd, H_PATH2, new_len as i32),
    )?;
    if errno == E_SUCCESS {
        if let Some(ino) = replaced.filter(|i| Some(*i) != moved) {
            c.data_mut().acct.forget(ino);
        }
        c.data_mut().listing = None;
    }
    Ok(errno)
}

/// The stat the job sees: no device, inode renumbered, one link, directories of size 0, no times.
fn masked_stat(c: &mut Cx<'_>, raw: &[u8]) -> Vec<u8> {
    let st = parse_stat(raw);
    let ino = c.data_mut().virtual_ino(st.ino);
    let mut out = vec![0u8; 64];
    if let Some(d) = out.get_mut(8..16) {
        d.copy_from_slice(&ino.to_le_bytes());
    }
    if let Some(d) = out.get_mut(16) {
        *d = st.filetype;
    }
    if let Some(d) = out.get_mut(24..32) {
        d.copy_from_slice(&1u64.to_le_bytes());
    }
    let size = if st.filetype == FILETYPE_DIRECTORY {
        0
    } else {
        st.size
    };
    if let Some(d) = out.get_mut(32..40) {
        d.copy_from_slice(&size.to_le_bytes());
    }
    out
}

fn fstat_impl(c: &mut Cx<'_>, h: &Helper, fd: i32, buf: i32) -> Res {
    let Some(mem) = guest_memory(c) else {
        return Ok(E_FAULT);
    };
    if !in_bounds(c, mem, buf, 64) {
        return Ok(E_FAULT);
    }
    match raw_fstat(c, h, fd)? {
        Err(e) => Ok(e),
        Ok(raw) => {
            let masked = masked_stat(c, &raw);
            write_mem(c, mem, buf, &masked);
            Ok(E_SUCCESS)
        }
    }
}

fn pstat_impl(
    c: &mut Cx<'_>,
    h: &Helper,
    fd: i32,
    flags: i32,
    path: i32,
    len: i32,
    buf: i32,
) -> Res {
    let Some(mem) = guest_memory(c) else {
        return Ok(E_FAULT);
    };
    if !in_bounds(c, mem, buf, 64) {
        return Ok(E_FAULT);
    }
    let len = match copy_path(c, h, mem, path, len, H_PATH1) {
        Ok(l) => l,
        Err(e) => return Ok(e),
    };
    match raw_pstat(c, h, fd, flags, H_PATH1, len)? {
        Err(e) => Ok(e),
        Ok(raw) => {
            let masked = masked_stat(c, &raw);
            write_mem(c, mem, buf, &masked);
            Ok(E_SUCCESS)
        }
    }
}

/// The whole listing of the directory `fd` through the helper: `.`, `..`, then entries sorted
/// by name bytes.
fn list_dir(c: &mut Cx<'_>, h: &Helper, fd: i32) -> wasmtime::Result<Result<DirEntries, i32>> {
    let chunk = i32::try_from(MAX_WRITE_CHUNK).unwrap_or(i32::MAX);
    let mut entries: DirEntries = Vec::new();
    let mut cookie = 0u64;
    loop {
        let e = h
            .readdir
            .call(&mut *c, (fd, H_DATA, chunk, cookie as i64, H_U64))?;
        if e != E_SUCCESS {
            return Ok(Err(e));
        }
        let used = le_u32(&read_mem(c, h.memory, H_U64, 4).unwrap_or_default(), 0) as usize;
        let data = read_mem(c, h.memory, H_DATA, used).unwrap_or_default();
        let mut off = 0usize;
        let mut progressed = false;
        while let Some(head) = data.get(off..off.saturating_add(24)) {
            let next = le_u64(head, 0);
            let ino = le_u64(head, 8);
            let namlen = le_u32(head, 16) as usize;
            let kind = head.get(20).copied().unwrap_or(0);
            let name_at = off.saturating_add(24);
            let Some(name) = data.get(name_at..name_at.saturating_add(namlen)) else {
                break;
            };
            entries.push((name.to_vec(), ino, kind));
            cookie = next;
            progressed = true;
            off = name_at.saturating_add(namlen);
        }
        if used < MAX_WRITE_CHUNK || !progressed {
            break;
        }
    }
    let mut dots: Vec<_> = Vec::with_capacity(2);
    let mut rest: Vec<_> = Vec::with_capacity(entries.len());
    for e in entries {
        if e.0 == b"." || e.0 == b".." {
            dots.push(e);
        } else {
            rest.push(e);
        }
    }
    rest.sort_by(|a, b| a.0.cmp(&b.0));
    dots.extend(rest);
    Ok(Ok(dots))
}

#[allow(clippy::too_many_arguments)]
fn readdir_impl(
    c: &mut Cx<'_>,
    h: &Helper,
    fd: i32,
    buf: i32,
    buf_len: i32,
    cookie: u64,
    used_ptr: i32,
) -> Res {
    let Some(mem) = guest_memory(c) else {
        return Ok(E_FAULT);
    };
    let cap = buf_len as u32 as usize;
    if !in_bounds(c, mem, buf, cap) || !in_bounds(c, mem, used_ptr, 4) {
        return Ok(E_FAULT);
    }
    let dir_ino = match raw_fstat(c, h, fd)? {
        Ok(raw) => parse_stat(&raw).ino,
        Err(e) => return Ok(e),
    };
    let cached = cookie > 0
        && c.data()
            .listing
            .as_ref()
            .is_some_and(|l| l.fd == fd && l.dir_ino == dir_ino);
    if !cached {
        let entries = match list_dir(c, h, fd)? {
            Ok(e) => e,
            Err(e) => return Ok(e),
        };
        c.data_mut().listing = Some(Listing {
            fd,
            dir_ino,
            entries,
        });
    }
    let Some(listing) = c.data_mut().listing.take() else {
        return Ok(E_INVAL);
    };
    let mut out = Vec::with_capacity(cap.min(1 << 16));
    let skip = usize::try_from(cookie).unwrap_or(usize::MAX);
    for (i, (name, ino, kind)) in listing.entries.iter().enumerate().skip(skip) {
        if out.len() >= cap {
            break;
        }
        let ino = if name.as_slice() == b"." || name.as_slice() == b".." {
            c.data_mut().virtual_ino(dir_ino)
        } else {
            c.data_mut().virtual_ino(*ino)
        };
        let mut dirent = Vec::with_capacity(24);
        dirent.extend_from_slice(&(i as u64).saturating_add(1).to_le_bytes());
        dirent.extend_from_slice(&ino.to_le_bytes());
        dirent.extend_from_slice(&(name.len() as u32).to_le_bytes());
        dirent.extend_from_slice(&[*kind, 0, 0, 0]);
        dirent.extend_from_slice(name);
        out.extend_from_slice(&dirent);
    }
    out.truncate(cap);
    c.data_mut().listing = Some(listing);
    write_mem(c, mem, buf, &out);
    write_mem(c, mem, used_ptr, &(out.len() as u32).to_le_bytes());
    Ok(E_SUCCESS)
}

/// `poll_oneoff` with a fixed clock: clock subscriptions fire at once; without any, every file
/// descriptor subscription is reported ready.
fn poll_impl(c: &mut Cx<'_>, subs: i32, events: i32, n: i32, nevents: i32) -> Res {
    let Some(mem) = guest_memory(c) else {
        return Ok(E_FAULT);
    };
    let count = n as u32 as usize;
    if count == 0 {
        return Ok(E_INVAL);
    }
    let Some(sub_bytes) = read_mem(c, mem, subs, count.saturating_mul(48)) else {
        return Ok(E_FAULT);
    };
    if !in_bounds(c, mem, events, count.saturating_mul(32)) || !in_bounds(c, mem, nevents, 4) {
        return Ok(E_FAULT);
    }
    let all: Vec<(u64, u8)> = sub_bytes
        .chunks_exact(48)
        .map(|s| (le_u64(s, 0), s.get(8).copied().unwrap_or(0)))
        .collect();
    let any_clock = all.iter().any(|&(_, tag)| tag == 0);
    let mut out = Vec::with_capacity(count.saturating_mul(32));
    let mut fired = 0u32;
    for &(userdata, tag) in &all {
        if any_clock && tag != 0 {
            continue;
        }
        let mut ev = [0u8; 32];
        if let Some(d) = ev.get_mut(0..8) {
            d.copy_from_slice(&userdata.to_le_bytes());
        }
        if let Some(d) = ev.get_mut(10) {
            *d = tag;
        }
        out.extend_from_slice(&ev);
        fired = fired.saturating_add(1);
    }
    write_mem(c, mem, events, &out);
    write_mem(c, mem, nevents, &fired.to_le_bytes());
    Ok(E_SUCCESS)
}

#[cfg(test)]
mod tests;
