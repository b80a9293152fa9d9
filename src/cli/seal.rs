//! `lode seal`: a storage miner's sealing pipeline, phase by phase or all at once.
//!
//! Every command on a sector directory takes the sector's lock, reads which sector it holds from its
//! `sector.json`, and lets the sealing engine skip what is already done, so any command can be run
//! again after an interruption.
//!
//! Before anything is written, each command asks `lode_sealing::capacity` whether the disk and memory
//! its phases still need are there, and refuses with the figures if not. For tests only,
//! `LODE_TEST_AVAILABLE_DISK` and `LODE_TEST_AVAILABLE_MEMORY` (bytes) stand in for what the
//! filesystems and the kernel report.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use lode_proofs::node::Node;
use lode_proofs::porep::{self, PorepProof};
use lode_proofs::sector::SectorSize;
use lode_sealing::SealError;
use lode_sealing::accel::{self, GpuChoice};
use lode_sealing::capacity::{self, FixedSpace, Phase, Work};
use lode_sealing::seal::{self, Placement, SectorId, SectorSpec};
use lode_sealing::sector_dir::{SectorDir, SectorLock};
use serde::Serialize;

use super::common::{
    CircuitArg, ParamsDir, default_cache_dir, fresh_rng, params_for, parse_node, parse_size,
    read_public, report_validity,
};
use super::progress::Bars;

#[derive(Debug, Subcommand)]
pub(crate) enum SealCommand {
    /// Seal one sector end to end: AddPiece, PreCommit1, PreCommit2, Commit1 (and Finalize with --finalize).
    ///
    /// Safe to run again with the same arguments after an interruption: pieces already placed are
    /// recognised by their CommP and phases already done are skipped.
    #[command(after_help = "Examples:
  lode seal run --sector-size 8MiB --sector-dir /data/s-7 --sector-number 7 movie.mp4
  lode seal run --sector-size 2KiB --sector-dir /tmp/cc --ticket <64 hex> --seed <64 hex> --json")]
    Run(RunArgs),
    /// AddPiece: place piece files into the sector's unsealed data (aligned, fr32-padded).
    ///
    /// A piece the sector already holds (same CommP and size) is not added again.
    #[command(after_help = "Example:
  lode seal add-piece --sector-size 8MiB --sector-dir /data/s-7 --sector-number 7 a.car b.car")]
    AddPiece(AddPieceArgs),
    /// PreCommit1: CommD, tree D and the SDR layers for a ticket. Resumes from the last complete layer.
    #[command(after_help = "Example:
  lode seal pc1 --sector-dir /data/s-7 --ticket 0102…1f20")]
    Pc1(Pc1Args),
    /// PreCommit1 of several sectors together: one walk of the graph labels all of them, their
    /// label inputs hashed across the CPU's SIMD lanes (16 with AVX-512, 8 with AVX2).
    ///
    /// Sectors `--first-number` … `+ count − 1` of the miner live in `<dir>/s-<number>` (created as
    /// committed-capacity sectors when missing; pieces added beforehand with `lode seal add-piece`
    /// are kept). Each sector's layers, tree D and records are exactly what `lode seal pc1` writes
    /// for it alone; an interrupted batch resumes from the first layer one of its sectors lacks.
    /// Memory: two layers of every sector plus one (the figure is checked before starting). With
    /// `--pc2`, PreCommit2 follows for each sector in turn.
    #[command(after_help = "Examples:
  lode seal batch --sector-size 8MiB --count 16 --dir /data/batch
  lode seal batch --sector-size 512MiB --count 4 --dir /data/b --first-number 100 --pc2 --json
  lode seal batch --sector-size 8MiB --count 8 --dir /data/g --gpu cuda")]
    Batch(BatchArgs),
    /// PreCommit2: columns, tree C, the replica, tree R and comm_r.
    #[command(after_help = "Example:
  lode seal pc2 --sector-dir /data/s-7")]
    Pc2(Pc2Args),
    /// Commit1: the vanilla PoRep proof for a seed (commit1.bin, public inputs in commit1.json).
    #[command(after_help = "Example:
  lode seal commit1 --sector-dir /data/s-7 --seed 2122…3f00")]
    Commit1(Commit1Args),
    /// Commit2: the Groth16 PoRep proof (192 bytes per partition) from the Commit1 output (commit2.bin).
    ///
    /// The Commit1 output is checked first and the new proof is verified before it is written.
    #[command(after_help = "Example:
  lode seal commit2 --sector-dir /data/s-7 --params-dir ~/.cache/lode/params
  lode seal commit2 --sector-dir /data/s-7 --gpu cuda")]
    Commit2(Commit2Args),
    /// Finalize: delete what Window PoSt and unsealing do not need.
    #[command(after_help = "Example:
  lode seal finalize --sector-dir /data/s-7 --keep-unsealed")]
    Finalize(FinalizeArgs),
    /// Check a vanilla PoRep proof from its public inputs only.
    ///
    /// Exit status: 0 and "valid"; 1 and "invalid: <which public input or check failed>"; 2 when the
    /// files cannot be read.
    #[command(after_help = "Example:
  lode seal verify-commit1 --public /data/s-7/commit1.json --proof /data/s-7/commit1.bin")]
    VerifyCommit1(VerifyArgs),
    /// Recover a piece (or a byte range) of the original data from the sealed replica.
    ///
    /// The output is written under a temporary name and renamed only when complete and checked.
    #[command(after_help = "Examples:
  lode seal unseal --sector-dir /data/s-7 --piece 0 -o movie.mp4
  lode seal unseal --sector-dir /data/s-7 --offset 0 --len 1024 -o head.bin")]
    Unseal(UnsealArgs),
}

/// Which sector, and where its files live.
#[derive(Debug, Args, Clone)]
pub(crate) struct SectorArgs {
    /// The sector's directory.
    #[arg(long)]
    sector_dir: PathBuf,
    /// Sector size: 2KiB, 8MiB, 512MiB, 32GiB or 64GiB. Needed to start a sector; afterwards read from
    /// the directory's sector.json (and checked when given).
    #[arg(long, value_parser = parse_size)]
    sector_size: Option<SectorSize>,
    /// The miner that seals the sector (a new sector: 1000; afterwards read from sector.json).
    #[arg(long)]
    miner_id: Option<u64>,
    /// The sector's number (a new sector: 0; afterwards read from sector.json).
    #[arg(long)]
    sector_number: Option<u64>,
    /// Where the parent cache lives (built once per sector size).
    #[arg(long, env = "LODE_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Print a JSON report instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    sector: SectorArgs,
    /// The ticket: 32 bytes of chain randomness as 64 hex digits (default: the one PreCommit1 already
    /// used, else zero, for tests).
    #[arg(long, value_parser = parse_node)]
    ticket: Option<Node>,
    /// The seed: 32 bytes of chain randomness as 64 hex digits (default: the one Commit1 already used,
    /// else zero, for tests).
    #[arg(long, value_parser = parse_node)]
    seed: Option<Node>,
    /// Delete layers and trees once proven (keeps the unsealed copy unless --drop-unsealed).
    #[arg(long)]
    finalize: bool,
    /// With --finalize, also delete the unsealed copy.
    #[arg(long)]
    drop_unsealed: bool,
    /// Piece files, placed in order. None: a committed-capacity (all-zero) sector.
    pieces: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct AddPieceArgs {
    #[command(flatten)]
    sector: SectorArgs,
    /// Piece files, placed in order.
    #[arg(required = true)]
    pieces: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct Pc1Args {
    #[command(flatten)]
    sector: SectorArgs,
    /// The ticket: 64 hex digits (default: the one PreCommit1 already used, else zero, for tests).
    #[arg(long, value_parser = parse_node)]
    ticket: Option<Node>,
}

#[derive(Debug, Args)]
pub(crate) struct BatchArgs {
    /// The directory holding the sectors' directories (`s-<number>`).
    #[arg(long)]
    dir: PathBuf,
    /// Sector size: 2KiB, 8MiB, 512MiB, 32GiB or 64GiB.
    #[arg(long, value_parser = parse_size)]
    sector_size: SectorSize,
    /// How many sectors (1 to 64).
    #[arg(long, default_value_t = 16)]
    count: u64,
    /// The first sector's number; the others follow it.
    #[arg(long, default_value_t = 0)]
    first_number: u64,
    /// The miner that seals the sectors.
    #[arg(long, default_value_t = SectorSpec::DEFAULT_MINER_ID)]
    miner_id: u64,
    /// The ticket of every sector: 64 hex digits (default: each sector's recorded one, else zero,
    /// for tests).
    #[arg(long, value_parser = parse_node)]
    ticket: Option<Node>,
    /// Run PreCommit2 for each sector afterwards.
    #[arg(long)]
    pc2: bool,
    /// Where the parent cache lives (built once per sector size).
    #[arg(long, env = "LODE_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Where to label: auto (a GPU if there is one, else the CPU), off (the CPU), opencl (the
    /// first OpenCL device, PoCL included) or cuda.
    #[arg(long, env = "LODE_GPU", default_value_t = GpuChoice::Auto)]
    gpu: GpuChoice,
    /// Print a JSON report instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct Pc2Args {
    #[command(flatten)]
    sector: SectorArgs,
    /// Where to hash the columns and trees C and R: auto (a GPU if there is one, else the CPU),
    /// off (the CPU), opencl (the first OpenCL device, PoCL included) or cuda.
    #[arg(long, env = "LODE_GPU", default_value_t = GpuChoice::Auto)]
    gpu: GpuChoice,
}

#[derive(Debug, Args)]
pub(crate) struct Commit1Args {
    #[command(flatten)]
    sector: SectorArgs,
    /// The seed: 64 hex digits (default: the one Commit1 already used, else zero, for tests).
    #[arg(long, value_parser = parse_node)]
    seed: Option<Node>,
}

#[derive(Debug, Args)]
pub(crate) struct Commit2Args {
    /// The sector's directory (holding commit1.json and commit1.bin).
    #[arg(long)]
    sector_dir: PathBuf,
    #[command(flatten)]
    params: ParamsDir,
    /// Where to compute the proof's G1 sums: auto (a GPU if there is one, else the CPU), off
    /// (the CPU), opencl (the first OpenCL device, PoCL included) or cuda. The proof is the same.
    #[arg(long, env = "LODE_GPU", default_value_t = GpuChoice::Auto)]
    gpu: GpuChoice,
    /// Print a JSON report instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct FinalizeArgs {
    #[command(flatten)]
    sector: SectorArgs,
    /// Keep the unsealed copy (fast retrieval without unsealing).
    #[arg(long)]
    keep_unsealed: bool,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Public inputs as JSON (what `lode seal commit1` writes to commit1.json).
    #[arg(long)]
    public: PathBuf,
    /// The proof (commit1.bin).
    #[arg(long)]
    proof: PathBuf,
    /// Print a JSON report instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct UnsealArgs {
    #[command(flatten)]
    sector: SectorArgs,
    /// Where to write the recovered bytes.
    #[arg(long, short)]
    output: PathBuf,
    /// The piece to recover (0-based, in the order pieces were added): exactly its payload.
    #[arg(long, conflicts_with_all = ["offset", "len"])]
    piece: Option<usize>,
    /// Start of a byte range, in unpadded sector bytes.
    #[arg(long, requires = "len")]
    offset: Option<u64>,
    /// Length of the byte range.
    #[arg(long, requires = "offset")]
    len: Option<u64>,
}

/// A sector directory opened by a command: locked for as long as the command runs.
struct OpenSector {
    dir: SectorDir,
    id: SectorId,
    _lock: SectorLock,
}

impl SectorArgs {
    fn spec(&self) -> SectorSpec {
        SectorSpec {
            size: self.sector_size,
            miner_id: self.miner_id,
            sector_number: self.sector_number,
        }
    }

    /// Opens (with `create`, starts) the sector: lock first, then its identity.
    fn open(&self, create: bool) -> anyhow::Result<OpenSector> {
        open_sector(&self.sector_dir, &self.spec(), create)
    }

    fn cache_dir(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(default_cache_dir)
    }

    /// Opens the sector like [`SectorArgs::open`], after checking that `phases` (with `pieces` to place)
    /// fit on its disks and in memory. A new directory is checked before it is created, an existing one
    /// once locked, so a refused command leaves nothing behind but what was already there.
    fn open_checked(
        &self,
        create: bool,
        phases: &[Phase],
        pieces: Option<(&[PathBuf], Placement)>,
    ) -> anyhow::Result<OpenSector> {
        let cache = self.cache_dir();
        let check = |size: SectorSize| -> anyhow::Result<()> {
            let piece_bytes = match pieces {
                Some((files, placement)) => {
                    capacity::pending_piece_bytes(&self.sector_dir, size, files, placement)?
                }
                None => 0,
            };
            let work = Work {
                phases: phases.to_vec(),
                piece_bytes,
            };
            capacity::check(&self.sector_dir, &cache, size, &work, &space_probe()?)?;
            Ok(())
        };
        if create && !self.sector_dir.exists() {
            check(self.sector_size.ok_or(SealError::SizeNeeded)?)?;
            return self.open(true);
        }
        let s = self.open(create)?;
        check(s.id.size)?;
        Ok(s)
    }
}

/// Where the capacity check reads free disk and memory: the system, unless a test sets
/// `LODE_TEST_AVAILABLE_DISK` or `LODE_TEST_AVAILABLE_MEMORY` (bytes; for tests only).
fn space_probe() -> anyhow::Result<FixedSpace> {
    let var = |name: &str| -> anyhow::Result<Option<u64>> {
        match std::env::var(name) {
            Ok(v) => v
                .trim()
                .parse()
                .map(Some)
                .with_context(|| format!("{name}={v:?} is not a byte count; unset it")),
            Err(_) => Ok(None),
        }
    };
    Ok(FixedSpace {
        disk: var("LODE_TEST_AVAILABLE_DISK")?,
        memory: var("LODE_TEST_AVAILABLE_MEMORY")?,
    })
}

fn open_sector(
    root: &std::path::Path,
    spec: &SectorSpec,
    create: bool,
) -> anyhow::Result<OpenSector> {
    let context = || format!("cannot use {} as a sector directory", root.display());
    let dir = if create {
        SectorDir::create(root)
    } else {
        SectorDir::open(root)
    }
    .with_context(context)?;
    let lock = dir.lock()?;
    let id = seal::sector_identity(&dir, spec, create)?;
    Ok(OpenSector {
        dir,
        id,
        _lock: lock,
    })
}

/// The JSON report of a sealing run.
#[derive(Serialize, Default)]
struct SealReport {
    sector_size: String,
    miner_id: u64,
    sector_number: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pieces: Vec<PieceReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comm_d: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replica_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comm_c: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comm_r_last: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comm_r: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    commit1_proof_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finalize_freed_bytes: Option<u64>,
    /// Seconds per phase run now, in order.
    timings: Vec<(String, f64)>,
    /// Phases found done on disk and skipped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    skipped: Vec<String>,
}

#[derive(Serialize)]
struct PieceReport {
    file: String,
    comm_p: String,
    padded_size: u64,
    payload_size: u64,
    offset: u64,
    /// False when the sector already held the piece (a re-run).
    added: bool,
}

impl SealReport {
    fn new(id: &SectorId) -> Self {
        SealReport {
            sector_size: id.size.name().into(),
            miner_id: id.miner_id,
            sector_number: id.sector_number,
            ..Default::default()
        }
    }

    fn print(&self, json: bool) -> anyhow::Result<ExitCode> {
        let mut out = super::stdout::Stdout;
        if json {
            serde_json::to_writer_pretty(&mut out, self)?;
            writeln!(out)?;
            return Ok(ExitCode::SUCCESS);
        }
        writeln!(
            out,
            "sector        {} of miner {} ({})",
            self.sector_number, self.miner_id, self.sector_size
        )?;
        for p in &self.pieces {
            let how = if p.added { "" } else { ", placed earlier" };
            writeln!(
                out,
                "piece         {} at {} ({} bytes, CommP {}{how})",
                p.file, p.offset, p.payload_size, p.comm_p
            )?;
        }
        let rows = [
            ("comm_d", &self.comm_d),
            ("replica_id", &self.replica_id),
            ("comm_c", &self.comm_c),
            ("comm_r_last", &self.comm_r_last),
            ("comm_r", &self.comm_r),
        ];
        for (name, value) in rows {
            if let Some(v) = value {
                writeln!(out, "{name:<13} {v}")?;
            }
        }
        if let Some(b) = self.commit1_proof_bytes {
            writeln!(out, "commit1       vanilla proof of {b} bytes, verified")?;
        }
        if let Some(b) = self.finalize_freed_bytes {
            writeln!(out, "finalize      freed {b} bytes")?;
        }
        for phase in &self.skipped {
            writeln!(out, "skipped       {phase} (done earlier)")?;
        }
        for (phase, secs) in &self.timings {
            writeln!(out, "time          {phase:<11} {secs:.3} s")?;
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Runs one phase: timed when it runs, listed as skipped when the engine found it done.
    fn phase<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Bars) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let mut bars = Bars::new();
        let start = Instant::now();
        let out = f(&mut bars)?;
        if bars.skipped() {
            self.skipped.push(name.to_string());
        } else {
            self.timings
                .push((name.to_string(), start.elapsed().as_secs_f64()));
        }
        Ok(out)
    }
}

fn add_pieces(
    s: &OpenSector,
    pieces: &[PathBuf],
    placement: Placement,
    report: &mut SealReport,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let placed = seal::place_pieces(&s.dir, &s.id, pieces, placement)
        .with_context(|| format!("cannot add pieces to {}", s.id))?;
    let added = placed.iter().any(|p| p.added);
    for p in placed {
        report.pieces.push(PieceReport {
            file: p.file.display().to_string(),
            comm_p: p.record.comm_p.0.to_hex(),
            padded_size: p.record.padded_size,
            payload_size: p.record.payload_size,
            offset: p.record.offset,
            added: p.added,
        });
    }
    if added || pieces.is_empty() {
        report
            .timings
            .push(("addpiece".into(), start.elapsed().as_secs_f64()));
    } else {
        report.skipped.push("addpiece".into());
    }
    Ok(())
}

fn run_pc1(
    s: &OpenSector,
    ticket: Option<Node>,
    cache_dir: &std::path::Path,
    report: &mut SealReport,
) -> anyhow::Result<()> {
    let ticket = match ticket {
        Some(t) => t,
        None => seal::recorded_ticket(&s.dir)?.unwrap_or(Node::ZERO),
    };
    let out = report.phase("precommit1", |bars| {
        Ok(seal::pre_commit1(
            &s.dir,
            &s.id,
            ticket,
            cache_dir,
            None,
            &mut |p| bars.update(p),
        )?)
    })?;
    report.comm_d = Some(out.comm_d.0.to_hex());
    report.replica_id = Some(out.replica_id.0.to_hex());
    Ok(())
}

fn run_pc2(
    s: &OpenSector,
    gpu: Option<&accel::Gpu>,
    report: &mut SealReport,
) -> anyhow::Result<()> {
    let out = report.phase("precommit2", |bars| {
        Ok(seal::pre_commit2_on(&s.dir, &s.id, gpu, &mut |p| {
            bars.update(p)
        })?)
    })?;
    report.comm_c = Some(out.comm_c.0.to_hex());
    report.comm_r_last = Some(out.comm_r_last.0.to_hex());
    report.comm_r = Some(out.comm_r.0.to_hex());
    Ok(())
}

fn run_commit1(s: &OpenSector, seed: Option<Node>, report: &mut SealReport) -> anyhow::Result<()> {
    let seed = match seed {
        Some(seed) => seed,
        None => seal::recorded_seed(&s.dir)?.unwrap_or(Node::ZERO),
    };
    let start = Instant::now();
    let recorded = seal::recorded_seed(&s.dir)?;
    if seal::finalized(&s.dir) && recorded == Some(lode_proofs::node::trunc254(seed.0)) {
        // Finalize deleted the vanilla proof after Commit1 ran with this seed: nothing to redo.
        report.skipped.push("commit1".into());
        return Ok(());
    }
    let already = recorded == Some(lode_proofs::node::trunc254(seed.0)) && s.dir.commit1().exists();
    let (_, proof) = seal::commit1(&s.dir, &s.id, seed)?;
    if already {
        report.skipped.push("commit1".into());
    } else {
        report
            .timings
            .push(("commit1".into(), start.elapsed().as_secs_f64()));
    }
    report.commit1_proof_bytes = Some(proof.to_bytes().len());
    Ok(())
}

pub(crate) fn run(cmd: SealCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SealCommand::Run(a) => {
            let phases = [
                Phase::AddPiece,
                Phase::PreCommit1,
                Phase::PreCommit2,
                Phase::Commit1,
            ];
            let pieces = Some((a.pieces.as_slice(), Placement::AllInOrder));
            let s = a.sector.open_checked(true, &phases, pieces)?;
            let mut report = SealReport::new(&s.id);
            add_pieces(&s, &a.pieces, Placement::AllInOrder, &mut report)?;
            run_pc1(&s, a.ticket, &a.sector.cache_dir(), &mut report)?;
            run_pc2(&s, None, &mut report)?;
            run_commit1(&s, a.seed, &mut report)?;
            if a.finalize {
                let freed = report.phase("finalize", |_| {
                    Ok(seal::finalize(&s.dir, &s.id, !a.drop_unsealed)?)
                })?;
                report.finalize_freed_bytes = Some(freed);
            }
            report.print(a.sector.json)
        }
        SealCommand::AddPiece(a) => {
            let pieces = Some((a.pieces.as_slice(), Placement::Append));
            let s = a.sector.open_checked(true, &[Phase::AddPiece], pieces)?;
            let mut report = SealReport::new(&s.id);
            add_pieces(&s, &a.pieces, Placement::Append, &mut report)?;
            report.print(a.sector.json)
        }
        SealCommand::Pc1(a) => {
            let s = a.sector.open_checked(true, &[Phase::PreCommit1], None)?;
            let mut report = SealReport::new(&s.id);
            run_pc1(&s, a.ticket, &a.sector.cache_dir(), &mut report)?;
            report.print(a.sector.json)
        }
        SealCommand::Batch(a) => batch(&a),
        SealCommand::Pc2(a) => {
            let s = a.sector.open_checked(false, &[Phase::PreCommit2], None)?;
            let gpu = accel::open(a.gpu)?;
            let mut report = SealReport::new(&s.id);
            run_pc2(&s, gpu.as_ref(), &mut report)?;
            report.print(a.sector.json)
        }
        SealCommand::Commit1(a) => {
            let s = a.sector.open_checked(false, &[Phase::Commit1], None)?;
            let mut report = SealReport::new(&s.id);
            run_commit1(&s, a.seed, &mut report)?;
            report.print(a.sector.json)
        }
        SealCommand::Commit2(a) => commit2(&a),
        SealCommand::Finalize(a) => {
            let s = a.sector.open(false)?;
            let mut report = SealReport::new(&s.id);
            let freed = report.phase("finalize", |_| {
                Ok(seal::finalize(&s.dir, &s.id, a.keep_unsealed)?)
            })?;
            report.finalize_freed_bytes = Some(freed);
            report.print(a.sector.json)
        }
        SealCommand::VerifyCommit1(a) => verify_commit1(&a),
        SealCommand::Unseal(a) => unseal(&a),
    }
}

/// `lode seal commit2`: proves a sector's Commit1 output.
fn commit2(a: &Commit2Args) -> anyhow::Result<ExitCode> {
    let s = open_sector(&a.sector_dir, &SectorSpec::default(), false)?;
    // Refuse damaged or mismatched inputs before loading (or generating) any parameters.
    seal::commit1_output(&s.dir, &s.id)?;
    // No parent cache is involved: the cache directory is the sector's own.
    let work = Work::phase(Phase::Commit2);
    capacity::check(
        &a.sector_dir,
        &a.sector_dir,
        s.id.size,
        &work,
        &space_probe()?,
    )?;
    let params = params_for(&a.params.store(), CircuitArg::Porep, s.id.size)?;
    let gpu = accel::open(a.gpu)?.map(std::sync::Arc::new);
    let device_name = gpu
        .as_ref()
        .map_or_else(|| "cpu".to_string(), |g| g.to_string());
    let device = gpu.map(accel::prover_device);
    let mut rng = fresh_rng()?;
    let mut bars = Bars::new();
    let start = Instant::now();
    let (_, proofs) = seal::commit2_on(
        &s.dir,
        &s.id,
        &params,
        &mut rng,
        device.as_ref(),
        &mut |p| bars.update(p),
    )?;
    let secs = start.elapsed().as_secs_f64();
    let out = s.dir.commit2();
    let bytes = proofs.iter().map(Vec::len).sum::<usize>();
    if a.json {
        outln!(
            "{}",
            serde_json::json!({
                "output": out.display().to_string(),
                "partitions": proofs.len(),
                "bytes": bytes,
                "skipped": bars.skipped(),
                "seconds": secs,
                "device": device_name,
            })
        );
    } else {
        let how = if bars.skipped() {
            " (done earlier)"
        } else {
            ""
        };
        outln!(
            "commit2       {} partition proof(s), {bytes} bytes, in {secs:.1} s -> {}{how}",
            proofs.len(),
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn verify_commit1(a: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let public = read_public(&a.public)?;
    let bytes = std::fs::read(&a.proof)
        .with_context(|| format!("cannot read {}", a.proof.display()))
        .map_err(super::cannot_check)?;
    let result = PorepProof::from_bytes(&bytes).and_then(|p| porep::verify(&public, &p));
    report_validity(
        result.map_err(|e| e.to_string()),
        a.json,
        serde_json::Value::Null,
    )
}

fn unseal(a: &UnsealArgs) -> anyhow::Result<ExitCode> {
    let s = a.sector.open_checked(false, &[Phase::Unseal], None)?;
    let cache_dir = a.sector.cache_dir();
    let out = lode_proofs::durable::AtomicFile::create(&a.output)
        .with_context(|| format!("cannot create {}", a.output.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let mut bars = Bars::new();
    let start = Instant::now();
    let written = match (a.piece, a.offset, a.len) {
        (Some(i), _, _) => {
            seal::unseal_piece(&s.dir, &s.id, &cache_dir, i, &mut out, &mut |p| {
                bars.update(p)
            })?
            .payload_size
        }
        (None, Some(o), Some(l)) => {
            seal::unseal_range(&s.dir, &s.id, &cache_dir, o, l, &mut out, &mut |p| {
                bars.update(p)
            })?;
            l
        }
        _ => bail!("give --piece N, or --offset and --len"),
    };
    // Only a complete, checked output replaces the file at `--output`.
    out.into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("cannot write {}", a.output.display()))?
        .commit()
        .with_context(|| format!("cannot write {}", a.output.display()))?;
    let secs = start.elapsed().as_secs_f64();
    if a.sector.json {
        outln!(
            "{}",
            serde_json::json!({ "output": a.output.display().to_string(), "bytes": written, "seconds": secs })
        );
    } else {
        outln!(
            "unsealed {written} bytes into {} in {secs:.3} s",
            a.output.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The JSON report of `lode seal batch`.
#[derive(Serialize)]
struct BatchReport {
    sector_size: String,
    sectors: Vec<SealReport>,
    /// Where the layers were labelled: `cpu`, or the device's back end and name.
    device: String,
    /// Wall seconds of the batched PreCommit1.
    precommit1_seconds: f64,
    /// Sector bytes labelled per second by the batch (every layer of every sector it labelled).
    precommit1_mib_per_second: f64,
    /// The memory the batch labelled in, bytes.
    memory_bytes: u64,
}

fn batch(a: &BatchArgs) -> anyhow::Result<ExitCode> {
    if a.count == 0 || a.count > lode_sealing::labels::MAX_BATCH as u64 {
        bail!(
            "--count {} is outside 1..={}",
            a.count,
            lode_sealing::labels::MAX_BATCH
        );
    }
    let cache_dir = a.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let memory = seal::batch_memory(a.sector_size, a.count);
    if let Some(available) = capacity::SpaceProbe::available_memory(&space_probe()?)?
        && memory > available
    {
        bail!(
            "a batch of {} {} sectors labels in {} MiB of memory; {} MiB are available: use a smaller --count",
            a.count,
            a.sector_size,
            memory >> 20,
            available >> 20
        );
    }
    std::fs::create_dir_all(&a.dir)
        .with_context(|| format!("cannot create {}", a.dir.display()))?;
    let mut open = Vec::new();
    for k in 0..a.count {
        let number = a
            .first_number
            .checked_add(k)
            .context("sector numbers overflow")?;
        let spec = SectorSpec {
            size: Some(a.sector_size),
            miner_id: Some(a.miner_id),
            sector_number: Some(number),
        };
        let root = a.dir.join(format!("s-{number}"));
        let work = Work {
            phases: if a.pc2 {
                vec![Phase::PreCommit1, Phase::PreCommit2]
            } else {
                vec![Phase::PreCommit1]
            },
            piece_bytes: 0,
        };
        if !root.exists() {
            capacity::check(&root, &cache_dir, a.sector_size, &work, &space_probe()?)?;
        }
        let s = open_sector(&root, &spec, true)?;
        if s.id.size != a.sector_size {
            bail!(
                "{} holds a {} sector, not {}",
                root.display(),
                s.id.size,
                a.sector_size
            );
        }
        open.push(s);
    }
    let mut sectors = Vec::with_capacity(open.len());
    for s in &open {
        let ticket = match a.ticket {
            Some(t) => t,
            None => seal::recorded_ticket(&s.dir)?.unwrap_or(Node::ZERO),
        };
        sectors.push(seal::BatchSector {
            dir: &s.dir,
            id: s.id,
            ticket,
        });
    }
    let mut bars = Bars::new();
    let start = Instant::now();
    let gpu = accel::open(a.gpu)?;
    let outs =
        seal::pre_commit1_batch(&sectors, &cache_dir, gpu.as_ref(), &mut |p| bars.update(p))?;
    let seconds = start.elapsed().as_secs_f64();
    let labelled = if bars.skipped() { 0 } else { a.count };
    let bytes =
        (labelled as f64) * (a.sector_size.bytes() as f64) * (a.sector_size.layers() as f64);
    let mut reports = Vec::with_capacity(open.len());
    for (s, out) in open.iter().zip(&outs) {
        let mut r = SealReport::new(&s.id);
        r.comm_d = Some(out.comm_d.0.to_hex());
        r.replica_id = Some(out.replica_id.0.to_hex());
        if a.pc2 {
            run_pc2(s, gpu.as_ref(), &mut r)?;
        }
        reports.push(r);
    }
    let report = BatchReport {
        sector_size: a.sector_size.name().into(),
        sectors: reports,
        device: gpu
            .as_ref()
            .map_or_else(|| "cpu".to_string(), ToString::to_string),
        precommit1_seconds: seconds,
        precommit1_mib_per_second: bytes / seconds.max(1e-9) / f64::from(1u32 << 20),
        memory_bytes: memory,
    };
    let mut out = super::stdout::Stdout;
    if a.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    for r in &report.sectors {
        writeln!(
            out,
            "sector {:<6} replica_id {}{}",
            r.sector_number,
            r.replica_id.as_deref().unwrap_or("-"),
            r.comm_r
                .as_deref()
                .map(|c| format!("  comm_r {c}"))
                .unwrap_or_default()
        )?;
    }
    writeln!(
        out,
        "precommit1    {} sectors of {} on {} in {:.3} s ({:.1} MiB/s of layers), {} MiB of memory",
        a.count,
        report.sector_size,
        report.device,
        report.precommit1_seconds,
        report.precommit1_mib_per_second,
        report.memory_bytes >> 20
    )?;
    Ok(ExitCode::SUCCESS)
}
