//! `lode seal`: a storage miner's sealing pipeline, phase by phase or all at once.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use lode_proofs::node::Node;
use lode_proofs::porep::{self, PorepProof, PorepPublic};
use lode_proofs::sector::SectorSize;
use lode_sealing::seal::{self, Progress, SectorId};
use lode_sealing::sector_dir::{HexNode, SectorDir};
use serde::{Deserialize, Serialize};

#[derive(Debug, Subcommand)]
pub(crate) enum SealCommand {
    /// Seal one sector end to end: AddPiece, PreCommit1, PreCommit2, Commit1 (and Finalize with --finalize).
    ///
    /// Example: lode seal run --sector-size 8MiB --sector-dir /data/s-7 --sector-number 7 movie.mp4
    Run(RunArgs),
    /// AddPiece: place piece files into the sector's unsealed data (aligned, fr32-padded).
    AddPiece(AddPieceArgs),
    /// PreCommit1: CommD, tree D and the SDR layers for a ticket. Resumes from the last complete layer.
    Pc1(Pc1Args),
    /// PreCommit2: columns, tree C, the replica, tree R and comm_r.
    Pc2(SectorArgs),
    /// Commit1: the vanilla PoRep proof for a seed (written to commit1.bin, public inputs to commit1.json).
    Commit1(Commit1Args),
    /// Commit2: the Groth16 PoRep proof (192 bytes per partition) from the Commit1 output (commit2.bin).
    Commit2(Commit2Args),
    /// Finalize: delete what Window PoSt and unsealing do not need.
    Finalize(FinalizeArgs),
    /// Check a vanilla PoRep proof from its public inputs only. Exit 0 and "valid", or exit 1 and the reason.
    VerifyCommit1(VerifyArgs),
    /// Recover a piece (or a byte range) of the original data from the sealed replica.
    Unseal(UnsealArgs),
}

/// Which sector, and where its files live.
#[derive(Debug, Args, Clone)]
pub(crate) struct SectorArgs {
    /// Sector size: 2KiB, 8MiB, 512MiB, 32GiB or 64GiB.
    #[arg(long, value_parser = parse_size)]
    sector_size: SectorSize,
    /// The sector's directory (created if missing).
    #[arg(long)]
    sector_dir: PathBuf,
    /// The miner that seals the sector.
    #[arg(long, default_value_t = 1000)]
    miner_id: u64,
    /// The sector's number.
    #[arg(long, default_value_t = 0)]
    sector_number: u64,
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
    /// The ticket: 32 bytes of chain randomness as 64 hex digits (default: zero, for tests).
    #[arg(long, value_parser = parse_node)]
    ticket: Option<Node>,
    /// The seed: 32 bytes of chain randomness as 64 hex digits (default: zero, for tests).
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
    /// The ticket: 64 hex digits (default: zero, for tests).
    #[arg(long, value_parser = parse_node)]
    ticket: Option<Node>,
}

#[derive(Debug, Args)]
pub(crate) struct Commit1Args {
    #[command(flatten)]
    sector: SectorArgs,
    /// The seed: 64 hex digits (default: zero, for tests).
    #[arg(long, value_parser = parse_node)]
    seed: Option<Node>,
}

#[derive(Debug, Args)]
pub(crate) struct Commit2Args {
    /// The sector's directory (holding commit1.json and commit1.bin).
    #[arg(long)]
    sector_dir: PathBuf,
    #[command(flatten)]
    params: super::snark::ParamsDir,
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

pub(crate) fn parse_size(s: &str) -> Result<SectorSize, String> {
    s.parse()
        .map_err(|e: lode_proofs::sector::UnsupportedSectorSize| e.to_string())
}

pub(crate) fn parse_node(s: &str) -> Result<Node, String> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    Node::from_hex(s)
        .map(|n| lode_proofs::node::trunc254(n.0))
        .ok_or_else(|| "expected 64 hex digits".to_string())
}

impl SectorArgs {
    fn id(&self) -> SectorId {
        SectorId {
            size: self.sector_size,
            miner_id: self.miner_id,
            sector_number: self.sector_number,
        }
    }

    fn dir(&self) -> anyhow::Result<SectorDir> {
        SectorDir::create(&self.sector_dir).with_context(|| {
            format!(
                "cannot use {} as the sector directory",
                self.sector_dir.display()
            )
        })
    }

    fn cache_dir(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(default_cache_dir)
    }
}

/// `$XDG_CACHE_HOME/lode`, `$HOME/.cache/lode`, or `.lode-cache` in the working directory.
pub(crate) fn default_cache_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("lode");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".cache").join("lode");
    }
    PathBuf::from(".lode-cache")
}

/// Progress bars for the phases: one per layer, with nodes/s and ETA; a spinner line per step.
struct Bars {
    multi: MultiProgress,
    bar: Option<ProgressBar>,
    layer: usize,
}

impl Bars {
    fn new() -> Self {
        let multi = MultiProgress::new();
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        Bars {
            multi,
            bar: None,
            layer: 0,
        }
    }

    fn update(&mut self, p: Progress) -> ControlFlow<()> {
        match p {
            Progress::Layer {
                layer,
                layers,
                done,
                nodes,
            } => {
                if self.layer != layer {
                    if let Some(b) = self.bar.take() {
                        b.finish();
                    }
                    let bar = self.multi.add(ProgressBar::new(nodes)).with_style(
                        ProgressStyle::with_template(
                            "layer {msg} [{bar:40}] {pos}/{len} nodes ({per_sec}, {eta} left)",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar.set_message(format!("{layer} of {layers}"));
                    self.bar = Some(bar);
                    self.layer = layer;
                }
                if let Some(b) = &self.bar {
                    b.set_position(done);
                }
            }
            Progress::LayerResumed { layer } => {
                let _ = self
                    .multi
                    .println(format!("layer {layer} complete on disk: resumed"));
            }
            Progress::Step(step) => {
                if let Some(b) = self.bar.take() {
                    b.finish();
                }
                let _ = self.multi.println(format!("{step}…"));
            }
        }
        ControlFlow::Continue(())
    }
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
    /// Seconds per phase, in order.
    timings: Vec<(String, f64)>,
}

#[derive(Serialize)]
struct PieceReport {
    file: String,
    comm_p: String,
    padded_size: u64,
    payload_size: u64,
    offset: u64,
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

    fn print(&self, json: bool) -> anyhow::Result<()> {
        let mut out = io::stdout().lock();
        if json {
            serde_json::to_writer_pretty(&mut out, self)?;
            writeln!(out)?;
            return Ok(());
        }
        writeln!(
            out,
            "sector        {} of miner {} ({})",
            self.sector_number, self.miner_id, self.sector_size
        )?;
        for p in &self.pieces {
            writeln!(
                out,
                "piece         {} at {} ({} bytes, CommP {})",
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
        for (phase, secs) in &self.timings {
            writeln!(out, "time          {phase:<11} {secs:.3} s")?;
        }
        Ok(())
    }
}

fn timed<T>(
    report: &mut SealReport,
    phase: &str,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    let out = f()?;
    report
        .timings
        .push((phase.to_string(), start.elapsed().as_secs_f64()));
    Ok(out)
}

fn add_pieces(
    sector: &SectorArgs,
    dir: &SectorDir,
    pieces: &[PathBuf],
    report: &mut SealReport,
) -> anyhow::Result<()> {
    let id = sector.id();
    for path in pieces {
        let file =
            File::open(path).with_context(|| format!("cannot open piece {}", path.display()))?;
        let len = file
            .metadata()
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        let rec = seal::add_piece(dir, &id, io::BufReader::with_capacity(1 << 20, file), len)
            .with_context(|| format!("cannot add {} to {id}", path.display()))?;
        report.pieces.push(PieceReport {
            file: path.display().to_string(),
            comm_p: rec.comm_p.0.to_hex(),
            padded_size: rec.padded_size,
            payload_size: rec.payload_len,
            offset: rec.offset,
        });
    }
    Ok(())
}

fn run_pc1(
    sector: &SectorArgs,
    dir: &SectorDir,
    ticket: Node,
    report: &mut SealReport,
) -> anyhow::Result<()> {
    let mut bars = Bars::new();
    let out = timed(report, "precommit1", || {
        Ok(seal::pre_commit1(
            dir,
            &sector.id(),
            ticket,
            &sector.cache_dir(),
            None,
            &mut |p| bars.update(p),
        )?)
    })?;
    report.comm_d = Some(out.comm_d.0.to_hex());
    report.replica_id = Some(out.replica_id.0.to_hex());
    Ok(())
}

fn run_pc2(sector: &SectorArgs, dir: &SectorDir, report: &mut SealReport) -> anyhow::Result<()> {
    let mut bars = Bars::new();
    let out = timed(report, "precommit2", || {
        Ok(seal::pre_commit2(dir, &sector.id(), &mut |p| {
            bars.update(p)
        })?)
    })?;
    report.comm_c = Some(out.comm_c.0.to_hex());
    report.comm_r_last = Some(out.comm_r_last.0.to_hex());
    report.comm_r = Some(out.comm_r.0.to_hex());
    Ok(())
}

/// The public inputs of a PoRep as JSON (commit1.json).
#[derive(Serialize, Deserialize)]
pub(crate) struct PublicJson {
    sector_size: String,
    miner_id: u64,
    sector_number: u64,
    ticket: HexNode,
    seed: HexNode,
    comm_d: HexNode,
    comm_r: HexNode,
}

impl PublicJson {
    fn from_public(p: &PorepPublic) -> Self {
        PublicJson {
            sector_size: p.size.name().into(),
            miner_id: p.miner_id,
            sector_number: p.sector_number,
            ticket: HexNode(p.ticket),
            seed: HexNode(p.seed),
            comm_d: HexNode(p.comm_d),
            comm_r: HexNode(p.comm_r),
        }
    }

    pub(crate) fn to_public(&self) -> anyhow::Result<PorepPublic> {
        Ok(PorepPublic {
            size: parse_size(&self.sector_size).map_err(anyhow::Error::msg)?,
            miner_id: self.miner_id,
            sector_number: self.sector_number,
            ticket: self.ticket.0,
            seed: self.seed.0,
            comm_d: self.comm_d.0,
            comm_r: self.comm_r.0,
        })
    }
}

fn run_commit1(
    sector: &SectorArgs,
    dir: &SectorDir,
    seed: Node,
    report: &mut SealReport,
) -> anyhow::Result<()> {
    let (public, proof) = timed(report, "commit1", || {
        Ok(seal::commit1(dir, &sector.id(), seed)?)
    })?;
    let json = serde_json::to_vec_pretty(&PublicJson::from_public(&public))?;
    let path = dir.root().join("commit1.json");
    std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))?;
    report.commit1_proof_bytes = Some(proof.to_bytes().len());
    Ok(())
}

pub(crate) fn run(cmd: SealCommand) -> anyhow::Result<()> {
    match cmd {
        SealCommand::Run(a) => {
            let dir = a.sector.dir()?;
            let mut report = SealReport::new(&a.sector.id());
            let mut added = SealReport::new(&a.sector.id());
            timed(&mut report, "addpiece", || {
                add_pieces(&a.sector, &dir, &a.pieces, &mut added)
            })?;
            // Report every piece from the sector's own record (pieces added earlier included).
            let meta: seal::SectorMeta = match std::fs::read(dir.sector_meta()) {
                Ok(b) => serde_json::from_slice(&b)?,
                Err(_) => seal::SectorMeta {
                    size: String::new(),
                    miner_id: 0,
                    sector_number: 0,
                    pieces: vec![],
                },
            };
            for (i, p) in meta.pieces.iter().enumerate() {
                report.pieces.push(PieceReport {
                    file: a
                        .pieces
                        .get(i)
                        .map_or_else(|| format!("piece {i}"), |f| f.display().to_string()),
                    comm_p: p.comm_p.0.to_hex(),
                    padded_size: p.padded_size,
                    payload_size: p.payload_len,
                    offset: p.offset,
                });
            }
            run_pc1(&a.sector, &dir, a.ticket.unwrap_or(Node::ZERO), &mut report)?;
            run_pc2(&a.sector, &dir, &mut report)?;
            run_commit1(&a.sector, &dir, a.seed.unwrap_or(Node::ZERO), &mut report)?;
            if a.finalize {
                let freed = timed(&mut report, "finalize", || {
                    Ok(seal::finalize(&dir, &a.sector.id(), !a.drop_unsealed)?)
                })?;
                report.finalize_freed_bytes = Some(freed);
            }
            report.print(a.sector.json)
        }
        SealCommand::AddPiece(a) => {
            let dir = a.sector.dir()?;
            let mut report = SealReport::new(&a.sector.id());
            let start = Instant::now();
            add_pieces(&a.sector, &dir, &a.pieces, &mut report)?;
            report
                .timings
                .push(("addpiece".into(), start.elapsed().as_secs_f64()));
            report.print(a.sector.json)
        }
        SealCommand::Pc1(a) => {
            let dir = a.sector.dir()?;
            let mut report = SealReport::new(&a.sector.id());
            run_pc1(&a.sector, &dir, a.ticket.unwrap_or(Node::ZERO), &mut report)?;
            report.print(a.sector.json)
        }
        SealCommand::Pc2(s) => {
            let dir = s.dir()?;
            let mut report = SealReport::new(&s.id());
            run_pc2(&s, &dir, &mut report)?;
            report.print(s.json)
        }
        SealCommand::Commit1(a) => {
            let dir = a.sector.dir()?;
            let mut report = SealReport::new(&a.sector.id());
            run_commit1(&a.sector, &dir, a.seed.unwrap_or(Node::ZERO), &mut report)?;
            report.print(a.sector.json)
        }
        SealCommand::Commit2(a) => super::snark::commit2(&a.sector_dir, &a.params, a.json),
        SealCommand::Finalize(a) => {
            let dir = a.sector.dir()?;
            let mut report = SealReport::new(&a.sector.id());
            let freed = timed(&mut report, "finalize", || {
                Ok(seal::finalize(&dir, &a.sector.id(), a.keep_unsealed)?)
            })?;
            report.finalize_freed_bytes = Some(freed);
            report.print(a.sector.json)
        }
        SealCommand::VerifyCommit1(a) => verify_commit1(&a),
        SealCommand::Unseal(a) => unseal(&a),
    }
}

#[derive(Serialize)]
struct VerifyReport {
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

fn verify_commit1(a: &VerifyArgs) -> anyhow::Result<()> {
    let public: PublicJson = serde_json::from_slice(
        &std::fs::read(&a.public).with_context(|| format!("cannot read {}", a.public.display()))?,
    )
    .with_context(|| format!("{} is not a public-inputs JSON file", a.public.display()))?;
    let public = public.to_public()?;
    let bytes =
        std::fs::read(&a.proof).with_context(|| format!("cannot read {}", a.proof.display()))?;
    let result = PorepProof::from_bytes(&bytes).and_then(|p| porep::verify(&public, &p));
    let report = VerifyReport {
        valid: result.is_ok(),
        reason: result.as_ref().err().map(|e| e.to_string()),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if let Some(r) = &report.reason {
        println!("invalid: {r}");
    } else {
        println!("valid");
    }
    if !report.valid {
        std::process::exit(1);
    }
    Ok(())
}

fn unseal(a: &UnsealArgs) -> anyhow::Result<()> {
    let dir = a.sector.dir()?;
    let id = a.sector.id();
    let out =
        File::create(&a.output).with_context(|| format!("cannot create {}", a.output.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let mut bars = Bars::new();
    let start = Instant::now();
    let written = match (a.piece, a.offset, a.len) {
        (Some(i), _, _) => {
            seal::unseal_piece(&dir, &id, &a.sector.cache_dir(), i, &mut out, &mut |p| {
                bars.update(p)
            })?
            .payload_len
        }
        (None, Some(o), Some(l)) => {
            seal::unseal_range(&dir, &id, &a.sector.cache_dir(), o, l, &mut out, &mut |p| {
                bars.update(p)
            })?;
            l
        }
        _ => bail!("give --piece N, or --offset and --len"),
    };
    finish(out, &a.output)?;
    let secs = start.elapsed().as_secs_f64();
    if a.sector.json {
        println!(
            "{}",
            serde_json::json!({ "output": a.output.display().to_string(), "bytes": written, "seconds": secs })
        );
    } else {
        println!(
            "unsealed {written} bytes into {} in {secs:.3} s",
            a.output.display()
        );
    }
    Ok(())
}

fn finish(out: BufWriter<File>, path: &Path) -> anyhow::Result<()> {
    let f = out
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("cannot sync {}", path.display()))
}
