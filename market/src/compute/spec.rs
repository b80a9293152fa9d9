//! Job specs (what a user writes) and the canonical job (what the chain and providers agree on).
//!
//! A [`JobSpec`] is a YAML or JSON file shaped like a Bacalhau job (`engine`, `inputs`, `outputs`,
//! `resources`, `verification`, `payment`), parsed with `serde_norway` (a maintained fork of the
//! deprecated `serde_yaml`; YAML is a superset of JSON, so one parser reads both) with unknown
//! fields refused at every level. [`JobSpec::to_job`] validates it and turns it into a [`Job`]: a
//! plain struct of chain types and integers, with a canonical binary form ([`Job::encode`],
//! postcard) and an id ([`Job::id`]) that the compute actor keys jobs by. [`Job::decode`] checks a
//! job from untrusted bytes with the same rules, so a provider or the chain never trusts a spec
//! check it did not run itself.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cid::Cid;
use lode_chain::types::{ActorId, Address, Epoch, TokenAmount};
use serde::{Deserialize, Serialize};

use crate::cid::{cid_to_piece, parse_cid, piece_to_cid};
use crate::error::{MarketError, MarketResult};

/// The canonical job format's version (the first field of [`Job`]).
pub const JOB_VERSION: u32 = 1;
/// WebAssembly page size.
pub const WASM_PAGE: u64 = 64 << 10;
/// Most fuel a job may ask for (about an hour of plain wasm at a few 10⁹ instructions a second).
pub const MAX_FUEL: u64 = 10_000_000_000_000;
/// Most memory pages a job may ask for: 4 GiB, all of a 32-bit memory.
pub const MAX_MEMORY_PAGES: u32 = 65_536;
/// Shortest wall-time limit: 1 s.
pub const MIN_TIMEOUT_MS: u64 = 1_000;
/// Longest wall-time limit: 24 h.
pub const MAX_TIMEOUT_MS: u64 = 24 * 3_600 * 1_000;
/// Most bytes a job may write under `/outputs`: 16 GiB.
pub const MAX_OUTPUT_BYTES: u64 = 16 << 30;
/// Most files and directories a job may create under `/outputs`.
pub const MAX_OUTPUT_ENTRIES: u32 = 100_000;
/// Most input pieces of one job.
pub const MAX_INPUTS: usize = 16;
/// Most arguments (after `argv[0]`).
pub const MAX_ARGS: usize = 256;
/// Most environment variables.
pub const MAX_ENV: usize = 256;
/// Longest argument or environment value, in bytes.
pub const MAX_ARG_BYTES: usize = 4_096;
/// Most bytes of all arguments and environment variables together.
pub const MAX_ARGS_TOTAL: usize = 64 << 10;
/// Most replicas of a `replicated` job.
pub const MAX_REPLICAS: u8 = 15;
/// Longest mount path below `/inputs` or output path below `/outputs`, in bytes.
pub const MAX_PATH_BYTES: usize = 1_024;
/// Deepest mount or output path, in components.
pub const MAX_PATH_DEPTH: usize = 8;
/// Longest job name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest entrypoint name, in bytes.
pub const MAX_ENTRYPOINT_BYTES: usize = 128;
/// Most `outputs` entries.
pub const MAX_OUTPUT_PATHS: usize = 64;
/// Suffix of the directory (or file) an input CAR payload is unpacked to, beside the payload.
pub const UNPACKED_SUFFIX: &str = ".unpacked";

/// Default fuel: 10¹⁰ (a few seconds of plain wasm).
pub const DEFAULT_FUEL: u64 = 10_000_000_000;
/// Default memory: 256 MiB.
pub const DEFAULT_MEMORY_PAGES: u32 = 4_096;
/// Default wall-time limit: 10 minutes.
pub const DEFAULT_TIMEOUT_MS: u64 = 600_000;
/// Default output bytes: 64 MiB.
pub const DEFAULT_OUTPUT_BYTES: u64 = 64 << 20;
/// Default output entries.
pub const DEFAULT_OUTPUT_ENTRIES: u32 = 10_000;

fn spec_err(why: impl Into<String>) -> MarketError {
    MarketError::JobSpec(why.into())
}

// ---------------------------------------------------------------------------------------------
// Hashes and ids.

/// A BLAKE3 hash of a module's bytes (the binary `.wasm`, never WAT text).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ModuleHash(pub [u8; 32]);

impl ModuleHash {
    /// The hash of `wasm`.
    pub fn of(wasm: &[u8]) -> Self {
        ModuleHash(*blake3::hash(wasm).as_bytes())
    }
}

impl fmt::Display for ModuleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blake3:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for ModuleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for ModuleHash {
    type Err = MarketError;
    /// `blake3:<64 hex>` or the 64 hex characters alone.
    fn from_str(s: &str) -> MarketResult<Self> {
        let hex_part = s.trim().strip_prefix("blake3:").unwrap_or(s.trim());
        parse_hex32(hex_part).map(ModuleHash).ok_or_else(|| {
            spec_err(format!(
                "{s:?} is not a module hash (blake3:<64 hex digits>)"
            ))
        })
    }
}

/// A job's id: `BLAKE3_derive_key("lode/compute/job-id", Job::encode())`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobId(pub [u8; 32]);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({self})")
    }
}

impl FromStr for JobId {
    type Err = MarketError;
    fn from_str(s: &str) -> MarketResult<Self> {
        parse_hex32(s.trim())
            .map(JobId)
            .ok_or_else(|| spec_err(format!("{s:?} is not a job id (64 hex digits)")))
    }
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(s).ok()?;
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

// ---------------------------------------------------------------------------------------------
// The canonical job.

/// One input piece of a [`Job`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInput {
    /// CommP of the piece (the 32 bytes a piece CID carries).
    pub comm_p: [u8; 32],
    /// The piece's payload length in bytes (the unpadded data the client stored, without the
    /// zero padding up to the piece size): exactly these bytes are mounted.
    pub payload_size: u64,
    /// Where it is mounted, relative to `/inputs` (`data` for `/inputs/data`), `/`-separated.
    pub path: String,
}

impl JobInput {
    /// The piece CID.
    pub fn piece_cid(&self) -> MarketResult<Cid> {
        lode_proofs::cid::PieceCid::new(lode_proofs::node::Node(self.comm_p))
            .map(|p| piece_to_cid(&p))
            .ok_or_else(|| spec_err("an input's CommP is not a valid field element"))
    }
}

/// The limits a job runs under; every one is part of the job, so every provider runs it the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLimits {
    /// Fuel: one unit per wasm operator, as wasmtime 48 counts it.
    pub fuel: u64,
    /// Linear memory, in 64 KiB pages.
    pub memory_pages: u32,
    /// Wall time, in milliseconds (the only limit that depends on the machine: see the module docs).
    pub timeout_ms: u64,
    /// Most bytes the files under `/outputs` may hold at any moment.
    pub output_bytes: u64,
    /// Most files and directories the job may create under `/outputs`.
    pub output_entries: u32,
}

impl Default for JobLimits {
    fn default() -> Self {
        JobLimits {
            fuel: DEFAULT_FUEL,
            memory_pages: DEFAULT_MEMORY_PAGES,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            output_bytes: DEFAULT_OUTPUT_BYTES,
            output_entries: DEFAULT_OUTPUT_ENTRIES,
        }
    }
}

impl JobLimits {
    /// Memory in bytes.
    pub fn memory_bytes(&self) -> u64 {
        u64::from(self.memory_pages).saturating_mul(WASM_PAGE)
    }

    /// Checks every limit against its bounds.
    pub fn check(&self) -> MarketResult<()> {
        if self.fuel == 0 || self.fuel > MAX_FUEL {
            return Err(spec_err(format!(
                "resources.fuel {} is outside 1..={MAX_FUEL}",
                self.fuel
            )));
        }
        if self.memory_pages == 0 || self.memory_pages > MAX_MEMORY_PAGES {
            return Err(spec_err(format!(
                "resources.memory is {} pages, outside 1..={MAX_MEMORY_PAGES} (64 KiB to 4 GiB)",
                self.memory_pages
            )));
        }
        if !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&self.timeout_ms) {
            return Err(spec_err(format!(
                "resources.timeout {} ms is outside 1 s..=24 h",
                self.timeout_ms
            )));
        }
        if self.output_bytes > MAX_OUTPUT_BYTES {
            return Err(spec_err(format!(
                "resources.output {} bytes is over the {MAX_OUTPUT_BYTES} allowed",
                self.output_bytes
            )));
        }
        if self.output_entries == 0 || self.output_entries > MAX_OUTPUT_ENTRIES {
            return Err(spec_err(format!(
                "resources.output_entries {} is outside 1..={MAX_OUTPUT_ENTRIES}",
                self.output_entries
            )));
        }
        Ok(())
    }
}

/// How a job's result is checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verification {
    /// `k` providers run the job and commit-reveal their results; a strict majority decides.
    Replicated {
        /// Replicas.
        k: u8,
        /// Providers the client names (at most `k`, distinct); the rest are the first to accept.
        providers: Vec<ActorId>,
    },
    /// One provider runs the job; the named verifier attests or disputes.
    Verifier {
        /// The verifier the client trusts.
        verifier: Address,
        /// The provider the client names, if any (else the first to accept).
        provider: Option<ActorId>,
    },
}

impl Verification {
    /// Providers that run the job: `k`, or 1 with a verifier.
    pub fn providers_needed(&self) -> u8 {
        match self {
            Verification::Replicated { k, .. } => *k,
            Verification::Verifier { .. } => 1,
        }
    }
}

/// What the job pays and locks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobPayment {
    /// Paid to each provider whose result is final.
    pub per_provider: TokenAmount,
    /// Each provider locks this when it accepts the job.
    pub collateral: TokenAmount,
    /// Paid to the verifier (verifier mode; zero otherwise).
    pub verifier_fee: TokenAmount,
    /// The epoch by which the job must have settled; after it the client may cancel.
    pub deadline: Epoch,
}

/// A job as the chain and providers see it: plain data, no executor types.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// [`JOB_VERSION`].
    pub version: u32,
    /// The user's name for the job (may be empty).
    pub name: String,
    /// Any number: two otherwise identical jobs with different nonces have different ids.
    pub nonce: u64,
    /// BLAKE3 of the module's wasm bytes (shipped with the job and checked against this).
    pub module: ModuleHash,
    /// The exported function run, `() -> ()` (`_start` by default).
    pub entrypoint: String,
    /// Arguments after `argv[0]` (which is always `job`).
    pub args: Vec<String>,
    /// Environment variables, sorted by name, names unique.
    pub env: Vec<(String, String)>,
    /// Input pieces, sorted by mount path.
    pub inputs: Vec<JobInput>,
    /// Result paths below `/outputs` the client downloads (empty: all of `/outputs`); they do not
    /// change the result, which covers all of `/outputs`.
    pub outputs: Vec<String>,
    /// Limits.
    pub limits: JobLimits,
    /// How the result is checked.
    pub verification: Verification,
    /// Payment, collateral and deadline.
    pub payment: JobPayment,
}

impl Job {
    /// The canonical bytes: postcard of this struct (field order as declared; integers as
    /// varints, `u128` amounts as varints, strings and vectors length-prefixed).
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain owned data into a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// A job from its canonical bytes: strict (trailing bytes refused) and validated as
    /// [`Job::validate`] does, so decoded jobs need no further checks.
    pub fn decode(bytes: &[u8]) -> MarketResult<Job> {
        let (job, rest): (Job, &[u8]) = postcard::take_from_bytes(bytes)
            .map_err(|e| spec_err(format!("the job's bytes do not decode: {e}")))?;
        if !rest.is_empty() {
            return Err(spec_err(format!(
                "the job's bytes have {} trailing bytes",
                rest.len()
            )));
        }
        job.validate()?;
        if job.encode() != bytes {
            return Err(spec_err("the job's bytes are not in canonical form"));
        }
        Ok(job)
    }

    /// The job's id.
    pub fn id(&self) -> JobId {
        let mut h = blake3::Hasher::new_derive_key("lode/compute/job-id");
        h.update(&self.encode());
        JobId(*h.finalize().as_bytes())
    }

    /// What the client escrows: `k × per_provider + verifier_fee` (`None` on overflow).
    pub fn escrow(&self) -> Option<TokenAmount> {
        let k = u128::from(self.verification.providers_needed());
        self.payment
            .per_provider
            .0
            .checked_mul(k)
            .and_then(|p| p.checked_add(self.payment.verifier_fee.0))
            .map(TokenAmount)
    }

    /// Checks every rule a spec is checked against (bounds, paths, sorting, uniqueness).
    pub fn validate(&self) -> MarketResult<()> {
        if self.version != JOB_VERSION {
            return Err(spec_err(format!(
                "job version {} is not {JOB_VERSION}, the version this lode runs",
                self.version
            )));
        }
        check_name(&self.name)?;
        check_entrypoint(&self.entrypoint)?;
        check_args_env(&self.args, &self.env)?;
        if !self
            .env
            .windows(2)
            .all(|w| matches!(w, [a, b] if a.0 < b.0))
        {
            return Err(spec_err(
                "environment variables must be sorted by name and unique",
            ));
        }
        if self.inputs.is_empty() || self.inputs.len() > MAX_INPUTS {
            return Err(spec_err(format!(
                "a job has 1..={MAX_INPUTS} inputs, not {}",
                self.inputs.len()
            )));
        }
        let mut mounts = Vec::with_capacity(self.inputs.len());
        for input in &self.inputs {
            input.piece_cid()?;
            if input.payload_size == 0 {
                return Err(spec_err(format!(
                    "input /inputs/{}: a payload size of 0 bytes",
                    input.path
                )));
            }
            check_rel_path(&input.path, "/inputs")?;
            mounts.push(input.path.as_str());
        }
        if !self
            .inputs
            .windows(2)
            .all(|w| matches!(w, [a, b] if a.path < b.path))
        {
            return Err(spec_err("inputs must be sorted by mount path"));
        }
        check_mounts(&mounts)?;
        if self.outputs.len() > MAX_OUTPUT_PATHS {
            return Err(spec_err(format!(
                "at most {MAX_OUTPUT_PATHS} outputs, not {}",
                self.outputs.len()
            )));
        }
        for out in &self.outputs {
            if !out.is_empty() {
                check_rel_path(out, "/outputs")?;
            }
        }
        self.limits.check()?;
        match &self.verification {
            Verification::Replicated { k, providers } => {
                if *k == 0 || *k > MAX_REPLICAS {
                    return Err(spec_err(format!(
                        "verification.replicated.k {k} is outside 1..={MAX_REPLICAS}"
                    )));
                }
                if providers.len() > usize::from(*k) {
                    return Err(spec_err(format!(
                        "verification.replicated names {} providers for k = {k}",
                        providers.len()
                    )));
                }
                let distinct: BTreeSet<_> = providers.iter().collect();
                if distinct.len() != providers.len() {
                    return Err(spec_err("verification.replicated names a provider twice"));
                }
                if !self.payment.verifier_fee.is_zero() {
                    return Err(spec_err(
                        "payment.verifier_fee is only for jobs with a verifier",
                    ));
                }
            }
            Verification::Verifier { .. } => {}
        }
        if self.payment.deadline == 0 {
            return Err(spec_err("payment.deadline must be a future epoch, not 0"));
        }
        if self.escrow().is_none() {
            return Err(spec_err(
                "k × payment.per_provider + verifier_fee overflows",
            ));
        }
        Ok(())
    }
}

fn check_name(name: &str) -> MarketResult<()> {
    if name.len() > MAX_NAME_BYTES
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(spec_err(format!(
            "name {name:?}: at most {MAX_NAME_BYTES} letters, digits, '-', '_' or '.'"
        )));
    }
    Ok(())
}

fn check_entrypoint(entry: &str) -> MarketResult<()> {
    if entry.is_empty() || entry.len() > MAX_ENTRYPOINT_BYTES || entry.contains('\0') {
        return Err(spec_err(format!(
            "engine.entrypoint {entry:?}: 1..={MAX_ENTRYPOINT_BYTES} bytes, no NUL"
        )));
    }
    Ok(())
}

fn check_args_env(args: &[String], env: &[(String, String)]) -> MarketResult<()> {
    if args.len() > MAX_ARGS {
        return Err(spec_err(format!(
            "engine.args: {} arguments, at most {MAX_ARGS}",
            args.len()
        )));
    }
    if env.len() > MAX_ENV {
        return Err(spec_err(format!(
            "engine.env: {} variables, at most {MAX_ENV}",
            env.len()
        )));
    }
    let mut total = 0usize;
    for a in args {
        if a.len() > MAX_ARG_BYTES || a.contains('\0') {
            return Err(spec_err(format!(
                "engine.args: an argument of {} bytes or with NUL (at most {MAX_ARG_BYTES}, no NUL)",
                a.len()
            )));
        }
        total = total.saturating_add(a.len()).saturating_add(1);
    }
    for (k, v) in env {
        let valid_name = !k.is_empty()
            && k.len() <= MAX_ENTRYPOINT_BYTES
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !k.as_bytes().first().is_some_and(u8::is_ascii_digit);
        if !valid_name {
            return Err(spec_err(format!(
                "engine.env: {k:?} is not a variable name (letters, digits and '_', not starting with a digit)"
            )));
        }
        if v.len() > MAX_ARG_BYTES || v.contains('\0') {
            return Err(spec_err(format!(
                "engine.env.{k}: at most {MAX_ARG_BYTES} bytes, no NUL"
            )));
        }
        total = total
            .saturating_add(k.len())
            .saturating_add(v.len())
            .saturating_add(2);
    }
    if total > MAX_ARGS_TOTAL {
        return Err(spec_err(format!(
            "engine.args and engine.env hold {total} bytes, at most {MAX_ARGS_TOTAL}"
        )));
    }
    Ok(())
}

/// Checks a `/`-separated path relative to `root` (`/inputs` or `/outputs`).
fn check_rel_path(rel: &str, root: &str) -> MarketResult<()> {
    let bad = |why: &str| spec_err(format!("path {root}/{rel}: {why}"));
    if rel.is_empty() {
        return Err(bad(&format!("name a file below {root}")));
    }
    if rel.len() > MAX_PATH_BYTES {
        return Err(bad(&format!("longer than {MAX_PATH_BYTES} bytes")));
    }
    let mut depth = 0usize;
    for comp in rel.split('/') {
        depth = depth.saturating_add(1);
        if comp.is_empty() || comp == "." || comp == ".." {
            return Err(bad("empty, '.' and '..' components are not allowed"));
        }
        if comp.len() > 255 || comp.contains('\0') || comp.contains('\\') {
            return Err(bad("a component over 255 bytes or with NUL or '\\'"));
        }
    }
    if depth > MAX_PATH_DEPTH {
        return Err(bad(&format!("deeper than {MAX_PATH_DEPTH} components")));
    }
    Ok(())
}

/// No mount may be another's directory or its unpacked tree (`<mount>.unpacked`).
fn check_mounts(mounts: &[&str]) -> MarketResult<()> {
    for (i, a) in mounts.iter().enumerate() {
        for b in mounts.iter().skip(i.saturating_add(1)) {
            let unpacked_a = format!("{a}{UNPACKED_SUFFIX}");
            let unpacked_b = format!("{b}{UNPACKED_SUFFIX}");
            let nested = |x: &str, y: &str| {
                y == x || y.strip_prefix(x).is_some_and(|rest| rest.starts_with('/'))
            };
            if nested(a, b) || nested(b, a) || nested(&unpacked_a, b) || nested(&unpacked_b, a) {
                return Err(spec_err(format!(
                    "inputs /inputs/{a} and /inputs/{b} overlap (a mount cannot hold another, \
                     nor sit in another's {UNPACKED_SUFFIX} tree)"
                )));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The spec file.

/// A job spec as written in YAML or JSON. Unknown fields are refused at every level.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// A name (letters, digits, `-`, `_`, `.`).
    #[serde(default)]
    pub name: String,
    /// Any number, to tell otherwise identical jobs apart.
    #[serde(default)]
    pub nonce: u64,
    /// What runs.
    pub engine: EngineSpec,
    /// The input pieces.
    pub inputs: Vec<InputSpec>,
    /// Result paths (Bacalhau's `ResultPaths`), below `/outputs`.
    #[serde(default)]
    pub outputs: Vec<OutputSpec>,
    /// Limits.
    #[serde(default)]
    pub resources: ResourcesSpec,
    /// How the result is checked.
    pub verification: VerificationSpec,
    /// Payment.
    pub payment: PaymentSpec,
}

/// `engine`: a WebAssembly module.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSpec {
    /// Always `wasm`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A path to a `.wasm` or `.wat` file (relative to the spec file), or `blake3:<hex>`.
    pub module: String,
    /// The exported function to run (default `_start`).
    #[serde(default = "default_entrypoint")]
    pub entrypoint: String,
    /// Arguments after `argv[0]`.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn default_entrypoint() -> String {
    "_start".into()
}

/// One input piece.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// The piece CID.
    pub piece: String,
    /// Where it is mounted: `/inputs/<name>` (default `/inputs/<piece CID>`).
    #[serde(default)]
    pub path: Option<String>,
    /// The payload's length in bytes; when absent, [`JobSpec::to_job`] asks its caller (who knows
    /// it from the client's imports or deals).
    #[serde(default)]
    pub payload_size: Option<u64>,
}

/// One result path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// A label (informative).
    #[serde(default)]
    pub name: String,
    /// `/outputs` or a path below it.
    pub path: String,
}

/// `resources`: every field optional, defaults as [`JobLimits::default`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesSpec {
    /// Fuel (wasm operators).
    #[serde(default)]
    pub fuel: Option<u64>,
    /// Memory: bytes as a number, or a size (`64MiB`, `1GiB`, `512KB`); rounded up to 64 KiB pages.
    #[serde(default)]
    pub memory: Option<SizeSpec>,
    /// Wall time: seconds as a number, or a duration (`500ms`, `30s`, `5m`, `1h`).
    #[serde(default)]
    pub timeout: Option<DurationSpec>,
    /// Most bytes under `/outputs`: a number or a size.
    #[serde(default)]
    pub output: Option<SizeSpec>,
    /// Most files and directories created under `/outputs`.
    #[serde(default)]
    pub output_entries: Option<u32>,
}

/// A size: a number of bytes or a string with a unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SizeSpec {
    /// Bytes.
    Bytes(u64),
    /// `64MiB`, `1 GiB`, `512KB`, `100` (bytes).
    Text(String),
}

impl SizeSpec {
    /// The size in bytes.
    pub fn bytes(&self) -> MarketResult<u64> {
        match self {
            SizeSpec::Bytes(n) => Ok(*n),
            SizeSpec::Text(t) => parse_size(t),
        }
    }
}

/// A duration: seconds as a number, or a string with a unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DurationSpec {
    /// Seconds.
    Seconds(u64),
    /// `500ms`, `30s`, `5m`, `1h`.
    Text(String),
}

impl DurationSpec {
    /// The duration in milliseconds.
    pub fn millis(&self) -> MarketResult<u64> {
        match self {
            DurationSpec::Seconds(s) => s
                .checked_mul(1_000)
                .ok_or_else(|| spec_err(format!("resources.timeout {s} s is too long"))),
            DurationSpec::Text(t) => parse_duration_ms(t),
        }
    }
}

fn split_number(text: &str) -> Option<(u64, String)> {
    let t = text.trim();
    let digits_end = t
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit())
        .map_or(t.len(), |(i, _)| i);
    let (num, unit) = t.split_at(digits_end);
    let n: u64 = num.parse().ok()?;
    Some((n, unit.trim().to_ascii_lowercase()))
}

/// Parses `64MiB`, `1 GiB`, `512KB`, `2Gb`, `100`: binary units (`KiB`, `MiB`, `GiB`, `TiB`) and
/// decimal ones (`KB`/`K`, `MB`/`M`, `GB`/`G`, `TB`/`T`; a trailing `b` is read as bytes).
pub fn parse_size(text: &str) -> MarketResult<u64> {
    let bad = || {
        spec_err(format!(
            "{text:?} is not a size (write e.g. 65536, 64MiB, 1GiB or 500MB)"
        ))
    };
    let (n, unit) = split_number(text).ok_or_else(bad)?;
    let mult: u64 = match unit.as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(mult)
        .ok_or_else(|| spec_err(format!("{text:?} is too large")))
}

/// Parses `500ms`, `30s`, `5m`, `1h` (a bare number is seconds) into milliseconds.
pub fn parse_duration_ms(text: &str) -> MarketResult<u64> {
    let bad = || {
        spec_err(format!(
            "{text:?} is not a duration (write e.g. 500ms, 30s, 5m or 1h)"
        ))
    };
    let (n, unit) = split_number(text).ok_or_else(bad)?;
    let mult: u64 = match unit.as_str() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    n.checked_mul(mult)
        .ok_or_else(|| spec_err(format!("{text:?} is too long")))
}

/// `verification`: exactly one of `replicated` or `verifier`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationSpec {
    /// `replicated: { k: 3, providers: [l01000] }`.
    #[serde(default)]
    pub replicated: Option<ReplicatedSpec>,
    /// `verifier: { address: l0123, provider: l01000 }`.
    #[serde(default)]
    pub verifier: Option<VerifierSpec>,
}

/// `verification.replicated`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicatedSpec {
    /// Replicas.
    pub k: u8,
    /// Providers named by the client (`l0<id>`).
    #[serde(default)]
    pub providers: Vec<String>,
}

/// `verification.verifier`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifierSpec {
    /// The verifier's address (`l0<id>` or `l3<key>`).
    pub address: String,
    /// The provider the client names (`l0<id>`).
    #[serde(default)]
    pub provider: Option<String>,
    /// What the verifier locks when it accepts the role (`"1 LODE"`; default: the provider
    /// collateral). The chain's terms carry it; the executor's job does not need it.
    #[serde(default)]
    pub bond: Option<String>,
}

/// `payment`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentSpec {
    /// Paid to each provider whose result is final (`"1.5 LODE"`, `"1500atto"`).
    pub per_provider: String,
    /// Locked by each provider.
    pub collateral: String,
    /// Paid to the verifier (verifier mode only).
    #[serde(default)]
    pub verifier_fee: Option<String>,
    /// The epoch by which the job must settle.
    pub deadline: Epoch,
}

/// Where a spec's module comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModuleSource {
    /// A file (`.wasm`, or `.wat` text compiled to wasm when loaded).
    Path(PathBuf),
    /// Only the hash: the bytes must come from elsewhere (a cache, the provider's store).
    Hash(ModuleHash),
}

impl JobSpec {
    /// Parses a spec from YAML or JSON text.
    pub fn parse(text: &str) -> MarketResult<JobSpec> {
        serde_norway::from_str(text).map_err(|e| spec_err(e.to_string()))
    }

    /// Reads and parses a spec file.
    pub fn load(path: &Path) -> MarketResult<JobSpec> {
        let text = std::fs::read_to_string(path).map_err(crate::error::io_at(path))?;
        Self::parse(&text).map_err(|e| match e {
            MarketError::JobSpec(why) => MarketError::JobSpec(format!("{}: {why}", path.display())),
            other => other,
        })
    }

    /// Where the module comes from; a relative path is taken relative to `base` (the spec's
    /// directory).
    pub fn module_source(&self, base: &Path) -> MarketResult<ModuleSource> {
        let m = self.engine.module.trim();
        if m.is_empty() {
            return Err(spec_err(
                "engine.module is empty: give a .wasm/.wat path or blake3:<hex>",
            ));
        }
        if m.starts_with("blake3:") {
            return m.parse().map(ModuleSource::Hash);
        }
        Ok(ModuleSource::Path(base.join(m)))
    }

    /// Validates the spec into a [`Job`] for the module `module`; `payload_size` answers the
    /// payload size of an input whose spec does not give it (`None`: unknown, an error).
    pub fn to_job(
        &self,
        module: ModuleHash,
        payload_size: &mut dyn FnMut(&Cid) -> Option<u64>,
    ) -> MarketResult<Job> {
        if self.engine.kind != "wasm" {
            return Err(spec_err(format!(
                "engine.type {:?}: only \"wasm\" is supported",
                self.engine.kind
            )));
        }
        let mut inputs = Vec::with_capacity(self.inputs.len());
        for (i, input) in self.inputs.iter().enumerate() {
            let cid =
                parse_cid(&input.piece).map_err(|e| spec_err(format!("inputs[{i}].piece: {e}")))?;
            let piece =
                cid_to_piece(&cid).map_err(|e| spec_err(format!("inputs[{i}].piece: {e}")))?;
            let path = match &input.path {
                None => cid.to_string(),
                Some(p) => match p.strip_prefix("/inputs/") {
                    Some(rel) => rel.trim_end_matches('/').to_string(),
                    None => {
                        return Err(spec_err(format!(
                            "inputs[{i}].path {p:?} must be below /inputs/ (e.g. /inputs/data)"
                        )));
                    }
                },
            };
            let size = match input.payload_size {
                Some(s) => s,
                None => payload_size(&cid).ok_or_else(|| {
                    spec_err(format!(
                        "inputs[{i}]: the payload size of {cid} is unknown: add payload_size \
                         (the payload bytes `lode client import` reported)"
                    ))
                })?,
            };
            inputs.push(JobInput {
                comm_p: piece.comm_p().0,
                payload_size: size,
                path,
            });
        }
        inputs.sort_by(|a, b| a.path.cmp(&b.path));
        if let Some(w) = inputs
            .windows(2)
            .find(|w| matches!(w, [a, b] if a.path == b.path))
        {
            let p = w.first().map(|x| x.path.clone()).unwrap_or_default();
            return Err(spec_err(format!("two inputs are mounted at /inputs/{p}")));
        }
        let mut outputs = Vec::with_capacity(self.outputs.len());
        for (i, out) in self.outputs.iter().enumerate() {
            let p = out.path.trim_end_matches('/');
            let rel = if p == "/outputs" {
                String::new()
            } else if let Some(rel) = p.strip_prefix("/outputs/") {
                rel.to_string()
            } else {
                return Err(spec_err(format!(
                    "outputs[{i}].path {:?} must be /outputs or below it",
                    out.path
                )));
            };
            outputs.push(rel);
        }
        let r = &self.resources;
        let defaults = JobLimits::default();
        let memory_pages = match &r.memory {
            None => defaults.memory_pages,
            Some(m) => {
                let bytes = m.bytes()?;
                let pages = bytes.div_ceil(WASM_PAGE);
                u32::try_from(pages).map_err(|_| {
                    spec_err(format!("resources.memory {bytes} bytes is over 4 GiB"))
                })?
            }
        };
        let limits = JobLimits {
            fuel: r.fuel.unwrap_or(defaults.fuel),
            memory_pages,
            timeout_ms: match &r.timeout {
                None => defaults.timeout_ms,
                Some(t) => t.millis()?,
            },
            output_bytes: match &r.output {
                None => defaults.output_bytes,
                Some(o) => o.bytes()?,
            },
            output_entries: r.output_entries.unwrap_or(defaults.output_entries),
        };
        let parse_id = |what: &str, s: &str| {
            lode_node::rpc::types::parse_actor_id(s.trim())
                .map_err(|e| spec_err(format!("{what}: {e} (write l0<id>)")))
        };
        let verification = match (&self.verification.replicated, &self.verification.verifier) {
            (Some(rep), None) => Verification::Replicated {
                k: rep.k,
                providers: rep
                    .providers
                    .iter()
                    .map(|p| parse_id("verification.replicated.providers", p))
                    .collect::<MarketResult<_>>()?,
            },
            (None, Some(v)) => Verification::Verifier {
                verifier: lode_node::rpc::types::parse_address(v.address.trim())
                    .map_err(|e| spec_err(format!("verification.verifier.address: {e}")))?,
                provider: v
                    .provider
                    .as_deref()
                    .map(|p| parse_id("verification.verifier.provider", p))
                    .transpose()?,
            },
            _ => {
                return Err(spec_err(
                    "verification: give exactly one of `replicated: {k: N}` or `verifier: {address: l0..}`",
                ));
            }
        };
        let amount = |what: &str, s: &str| {
            s.parse::<TokenAmount>()
                .map_err(|e| spec_err(format!("payment.{what}: {e}")))
        };
        let payment = JobPayment {
            per_provider: amount("per_provider", &self.payment.per_provider)?,
            collateral: amount("collateral", &self.payment.collateral)?,
            verifier_fee: match &self.payment.verifier_fee {
                None => TokenAmount::ZERO,
                Some(f) => amount("verifier_fee", f)?,
            },
            deadline: self.payment.deadline,
        };
        let job = Job {
            version: JOB_VERSION,
            name: self.name.clone(),
            nonce: self.nonce,
            module,
            entrypoint: self.engine.entrypoint.clone(),
            args: self.engine.args.clone(),
            env: self
                .engine
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            inputs,
            outputs,
            limits,
            verification,
            payment,
        };
        job.validate()?;
        Ok(job)
    }
}

/// Reads a module file: binary wasm as it is, WAT text compiled to binary wasm (the module hash
/// is always of the binary). Validation happens when the executor compiles it.
pub fn load_module(path: &Path) -> MarketResult<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(crate::error::io_at(path))?;
    module_bytes(&bytes).map_err(|e| match e {
        MarketError::JobModule(why) => MarketError::JobModule(format!("{}: {why}", path.display())),
        other => other,
    })
}

/// Binary wasm from binary wasm or WAT text.
pub fn module_bytes(bytes: &[u8]) -> MarketResult<Vec<u8>> {
    if bytes.starts_with(b"\0asm") {
        return Ok(bytes.to_vec());
    }
    wat::parse_bytes(bytes)
        .map(|b| b.into_owned())
        .map_err(|e| MarketError::JobModule(format!("neither binary wasm nor valid WAT: {e}")))
}

#[cfg(test)]
mod tests;
