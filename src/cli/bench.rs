//! `lode bench`: reproducible benchmark runs (`seal`, `labels`, `trees`, `commp`, `commit2`,
//! `post`) recorded as JSON and CSV with the machine's description, and `plot` to chart result
//! files beside the reference figures. The measuring is `lode_benches::run`'s; this module parses, calls and prints.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use lode_benches::run::plot::{References, plot};
use lode_benches::run::{BenchRun, Kind, RunOptions, run};
use lode_proofs::sector::SectorSize;
use lode_sealing::accel::GpuChoice;

use super::common::{ParamsDir, default_cache_dir, parse_size, print_json};
use super::progress::spinner;

/// `lode bench` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Committed-capacity sectors through PreCommit1 (one batch when --sectors > 1), PreCommit2
    /// and Commit1, on disk under --work.
    #[command(after_help = "Examples:
  lode bench seal --size 8MiB --sectors 16
  lode bench labels --size 8MiB --sectors 8 --gpu opencl
  lode bench seal --size 512MiB --sectors 4 --repeat 3 --work /fast/scratch --out pc-512
  lode bench seal --size 512MiB --arithmetic mulx-adx --out pc-512-mulx")]
    Seal(RunArgs),
    /// SDR labelling alone, layers 1 and 2 in memory (the multi-sector labeller when
    /// --sectors > 1).
    #[command(after_help = "Examples:
  lode bench labels --size 8MiB --sectors 16
  lode bench labels --size 512MiB --repeat 3 --json")]
    Labels(RunArgs),
    /// Tree D (binary BLAKE3) and tree C/R (arity-8 Poseidon) over a sector's worth of leaves.
    #[command(after_help = "Examples:
  lode bench trees --size 8MiB --repeat 5")]
    Trees(RunArgs),
    /// CommP of a sector's worth of bytes, in memory.
    #[command(after_help = "Examples:
  lode bench commp --size 512MiB --repeat 3")]
    Commp(RunArgs),
    /// Commit2: the Groth16 PoRep proofs of committed-capacity sectors sealed through Commit1
    /// before the measured phase. Parameters missing from --params-dir are generated first
    /// (insecure test parameters).
    #[command(after_help = "Examples:
  lode bench commit2 --size 2KiB --repeat 3
  lode bench commit2 --size 2KiB --gpu cuda
  lode bench commit2 --size 8MiB --params-dir /var/lode/params --json")]
    Commit2(RunArgs),
    /// Winning PoSt and Window PoSt over --sectors sealed sectors (sealed before the measured
    /// phases). Parameters missing from --params-dir are generated first (insecure test
    /// parameters).
    #[command(after_help = "Examples:
  lode bench post --size 2KiB --sectors 4 --repeat 5
  lode bench post --size 8MiB --out post-8m")]
    Post(RunArgs),
    /// Chart result files (the JSON a run writes) as an SVG: each phase's wall seconds per sector,
    /// runs side by side, beside the reference figures of the same sector size.
    #[command(after_help = "Examples:
  lode bench plot bench-seal-8MiB.json -o seal.svg
  lode bench plot a.json b.json --reference my-figures.json -o compare.svg
  lode bench plot run.json --no-reference -o run.svg --json")]
    Plot(PlotArgs),
}

/// Arguments of a measured run.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Sector size: 2KiB, 8MiB, 512MiB, 32GiB or 64GiB.
    #[arg(long, value_parser = parse_size, default_value = "8MiB")]
    size: SectorSize,
    /// Sectors per repetition (1 to 64; several are labelled as one batch).
    #[arg(long, default_value_t = 1)]
    sectors: u64,
    /// Repetitions.
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// Scratch directory for sector files and trees [default: a temporary directory].
    #[arg(long, value_name = "DIR")]
    work: Option<PathBuf>,
    /// Where the parent cache lives (built once per sector size, outside the measured phases).
    #[arg(long, env = "LODE_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    #[command(flatten)]
    params: ParamsDir,
    /// Where `seal` and `labels` label and `commit2` and `post` compute the proofs' G1 sums: auto
    /// (a GPU if there is one), off (the CPU), opencl or cuda; a device labels every run as a
    /// batch. Recorded as the run's `gpu`.
    #[arg(long, env = "LODE_GPU", default_value_t = GpuChoice::Off)]
    gpu: GpuChoice,
    /// The CPU's field arithmetic (Poseidon, the proofs' sums and transforms): auto (the fastest
    /// this processor has), or a slower one to compare on the same machine: mulx-adx (no AVX-512
    /// IFMA lanes) or portable. Recorded in the run's machine description.
    #[arg(long, env = "LODE_ARITHMETIC", value_enum, default_value_t = ArithmeticChoice::Auto)]
    arithmetic: ArithmeticChoice,
    /// Where to write the results: `<OUT>.json` and `<OUT>.csv` [default:
    /// bench-<kind>-<size>-x<sectors>].
    #[arg(long, value_name = "OUT")]
    out: Option<PathBuf>,
    /// Print the run as JSON too.
    #[arg(long)]
    json: bool,
}

/// `--arithmetic`: the fastest the processor has, or a cap below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ArithmeticChoice {
    /// The fastest this processor runs.
    Auto,
    /// AVX-512 IFMA lanes (fails where the processor lacks them).
    #[value(name = "avx512-ifma")]
    Avx512Ifma,
    /// MULX/ADX products, no IFMA lanes.
    #[value(name = "mulx-adx")]
    MulxAdx,
    /// 64-bit Rust arithmetic only.
    Portable,
}

impl ArithmeticChoice {
    /// Applies the choice to this process, or says why the processor cannot run it.
    fn apply(self) -> anyhow::Result<()> {
        use lode_proofs::prover::{Arithmetic, arithmetic, limit_arithmetic};
        let wanted = match self {
            ArithmeticChoice::Auto => return Ok(()),
            ArithmeticChoice::Avx512Ifma => Arithmetic::Vector,
            ArithmeticChoice::MulxAdx => Arithmetic::Mulx,
            ArithmeticChoice::Portable => Arithmetic::Portable,
        };
        limit_arithmetic(wanted);
        let got = arithmetic();
        anyhow::ensure!(
            got == wanted,
            "this processor cannot run the {wanted} arithmetic; the fastest it has is {got} \
             (run with --arithmetic auto or a slower one)"
        );
        Ok(())
    }
}

/// Arguments of `lode bench plot`.
#[derive(Debug, Args)]
pub(crate) struct PlotArgs {
    /// Result files (`.json`) written by `lode bench`.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The SVG to write.
    #[arg(short, long, value_name = "SVG")]
    out: PathBuf,
    /// Reference figures to show beside the runs [default: those shipped with lode, the anchor's
    /// figures on a 2-core machine].
    #[arg(long, value_name = "FILE", conflicts_with = "no_reference")]
    reference: Option<PathBuf>,
    /// Show the runs alone.
    #[arg(long)]
    no_reference: bool,
    /// Print what was drawn as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs a `lode bench` command.
pub(crate) fn run_cmd(cmd: BenchCommand) -> anyhow::Result<()> {
    let (kind, a) = match cmd {
        BenchCommand::Seal(a) => (Kind::Seal, a),
        BenchCommand::Labels(a) => (Kind::Labels, a),
        BenchCommand::Trees(a) => (Kind::Trees, a),
        BenchCommand::Commp(a) => (Kind::Commp, a),
        BenchCommand::Commit2(a) => (Kind::Commit2, a),
        BenchCommand::Post(a) => (Kind::Post, a),
        BenchCommand::Plot(p) => return plot_cmd(&p),
    };
    a.arithmetic.apply()?;
    let tmp;
    let work = match &a.work {
        Some(w) => w.clone(),
        None => {
            tmp = tempfile_dir()?;
            tmp.clone()
        }
    };
    let options = RunOptions {
        kind,
        size: a.size,
        sectors: a.sectors,
        repeat: a.repeat,
        work: work.clone(),
        cache_dir: a.cache_dir.clone().unwrap_or_else(default_cache_dir),
        params_dir: a.params.store().dir().to_path_buf(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        gpu: a.gpu,
    };
    let mut bar: Option<indicatif::ProgressBar> = None;
    let result = run(&options, &mut |phase, r| {
        if let Some(b) = bar.take() {
            b.finish_and_clear();
        }
        bar = Some(spinner(format!(
            "repetition {} of {}: {phase}",
            r + 1,
            a.repeat
        )));
    });
    if let Some(b) = bar.take() {
        b.finish_and_clear();
    }
    if a.work.is_none() {
        // Best effort: the temporary scratch is empty after a run.
        let _ = std::fs::remove_dir_all(&work);
    }
    let result = result?;
    let stem = a.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "bench-{}-{}-x{}",
            kind.name(),
            a.size.name(),
            a.sectors
        ))
    });
    let (json, csv) = result.write(&stem)?;
    if a.json {
        return print_json(&result);
    }
    print_run(&result);
    outln!("written      {} and {}", json.display(), csv.display());
    Ok(())
}

/// A fresh scratch directory under the system's temporary directory.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("lode-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

fn print_run(r: &BenchRun) {
    outln!(
        "run          lode bench {} --size {} --sectors {} --repeat {}",
        r.kind,
        r.size,
        r.sectors,
        r.repeat
    );
    outln!(
        "machine      {} [{}], {} GiB, prover arithmetic {}",
        r.machine.label(),
        r.machine.cpu_flags.join(" "),
        r.machine.memory_bytes >> 30,
        r.machine.arithmetic
    );
    outln!(
        "{:<14} {:>6} {:>10} {:>10} {:>12} {:>10}",
        "PHASE",
        "REPEAT",
        "WALL s",
        "CPU s",
        "PER SECTOR s",
        "PEAK MiB"
    );
    for s in &r.samples {
        outln!(
            "{:<14} {:>6} {:>10.3} {:>10.3} {:>12.3} {:>10}",
            s.phase,
            s.repeat,
            s.wall_s,
            s.cpu_s,
            s.wall_per_sector(),
            s.peak_rss_bytes >> 20
        );
    }
}

#[derive(serde::Serialize)]
struct PlotReport {
    out: PathBuf,
    runs: Vec<String>,
    reference: Option<String>,
}

fn plot_cmd(p: &PlotArgs) -> anyhow::Result<()> {
    let runs = p
        .files
        .iter()
        .map(|f| BenchRun::load(f))
        .collect::<Result<Vec<_>, _>>()?;
    let refs = match (&p.reference, p.no_reference) {
        (_, true) => None,
        (Some(f), false) => Some(References::load(f)?),
        (None, false) => Some(References::shipped()?),
    };
    plot(&runs, refs.as_ref(), &p.out)?;
    let report = PlotReport {
        out: p.out.clone(),
        runs: runs.iter().map(BenchRun::label).collect(),
        reference: refs.map(|r| r.source),
    };
    if p.json {
        return print_json(&report);
    }
    outln!("chart        {}", report.out.display());
    for r in &report.runs {
        outln!("run          {r}");
    }
    if let Some(s) = &report.reference {
        outln!("reference    {s}");
    }
    Ok(())
}
