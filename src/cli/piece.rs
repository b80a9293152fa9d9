//! `lode piece`: what a client runs on its data before making a deal.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use lode_proofs::cid::PieceCid;
use lode_proofs::fr32::{PadWriter, UnpadReader};
use lode_proofs::piece::{CommPHasher, PaddedPieceSize};
use serde::Serialize;

use super::common::human_bytes;
use super::progress::{ProgressReader, bytes_bar};

#[derive(Debug, Subcommand)]
pub(crate) enum PieceCommand {
    /// Compute the piece commitment (CommP) and piece CID of a file.
    ///
    /// The file is the payload of one piece: it is zero-filled to the smallest piece (a power of two of
    /// at least 128 padded bytes) that holds it, fr32-padded, and the root of its data tree is CommP. The
    /// file is streamed, so its size is not limited by memory. Use `-` to read standard input.
    ///
    #[command(after_help = "Examples:
  lode piece commp movie.mp4 --json
  tar c photos/ | lode piece commp -")]
    Commp(CommpArgs),
    /// Write the fr32 padding of a file (127 raw bytes → 128 padded bytes).
    ///
    /// The output is what a sector holds for this data. The input is zero-extended to a whole 127-byte
    /// block; with --piece it is zero-filled to the full piece size, exactly the bytes CommP is taken over.
    #[command(after_help = "Examples:
  lode piece pad movie.mp4 movie.padded
  lode piece pad movie.mp4 movie.piece --piece --json")]
    Pad(PadArgs),
    /// Recover raw bytes from an fr32-padded file (128 padded bytes → 127 raw bytes).
    ///
    /// Fails on data that was never padded (a node with its two top bits set). Give --payload-size to
    /// drop the zero fill and get back exactly the original bytes.
    #[command(after_help = "Example:
  lode piece unpad movie.piece movie.mp4 --payload-size 7340032")]
    Unpad(UnpadArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CommpArgs {
    /// The payload file, or `-` for standard input.
    file: PathBuf,
    /// Print a JSON object {piece_cid, comm_p, padded_size, payload_size} instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PadArgs {
    /// Raw input file, or `-` for standard input.
    input: PathBuf,
    /// Padded output file (created or replaced).
    output: PathBuf,
    /// Zero-fill the output to the full padded piece size.
    #[arg(long)]
    piece: bool,
    /// Print a JSON report instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct UnpadArgs {
    /// Padded input file, or `-` for standard input.
    input: PathBuf,
    /// Raw output file (created or replaced).
    output: PathBuf,
    /// Write exactly this many raw bytes (the original payload size, as `commp` reports it), dropping
    /// the zero fill.
    #[arg(long, alias = "payload-len", value_name = "BYTES")]
    payload_size: Option<u64>,
    /// Print a JSON report instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(cmd: PieceCommand) -> anyhow::Result<()> {
    match cmd {
        PieceCommand::Commp(args) => commp(args),
        PieceCommand::Pad(args) => pad(args),
        PieceCommand::Unpad(args) => unpad(args),
    }
}

/// Opens an input file (or stdin for `-`) and returns it with its length when known.
fn open_input(path: &Path) -> anyhow::Result<(Box<dyn Read>, Option<u64>)> {
    if path.as_os_str() == "-" {
        return Ok((Box::new(io::stdin().lock()), None));
    }
    let file = File::open(path).with_context(|| {
        format!(
            "cannot open {}: check the path and its permissions",
            path.display()
        )
    })?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read the metadata of {}", path.display()))?;
    if meta.is_dir() {
        bail!("{} is a directory; give a file", path.display());
    }
    Ok((Box::new(file), Some(meta.len())))
}

fn create_output(input: &Path, output: &Path) -> anyhow::Result<BufWriter<File>> {
    if input != Path::new("-") && same_file(input, output) {
        bail!(
            "the output {} is the input file; write to another path",
            output.display()
        );
    }
    let file =
        File::create(output).with_context(|| format!("cannot create {}", output.display()))?;
    Ok(BufWriter::with_capacity(1 << 20, file))
}

/// Flushes and fsyncs an output file, so that a reported success means the bytes are on disk.
fn finish_output(output: BufWriter<File>, path: &Path) -> anyhow::Result<()> {
    let file = output
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("cannot sync {}", path.display()))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[derive(Serialize)]
struct CommpReport {
    piece_cid: String,
    comm_p: String,
    padded_size: u64,
    payload_size: u64,
}

fn commp(args: CommpArgs) -> anyhow::Result<()> {
    let (input, len) = open_input(&args.file)?;
    let started = Instant::now();
    let mut reader = ProgressReader::new(input, bytes_bar(len, "hashing"));
    let mut hasher = CommPHasher::new();
    io::copy(&mut reader, &mut hasher)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    reader.finish();
    let c = hasher
        .finish()
        .context("cannot compute the piece commitment")?;
    let cid = PieceCid::new(c.comm_p).context("CommP is not a field node")?;
    tracing::debug!(
        bytes = c.payload_len,
        seconds = started.elapsed().as_secs_f64(),
        "piece commitment computed"
    );
    let report = CommpReport {
        piece_cid: cid.to_string(),
        comm_p: c.comm_p.to_hex(),
        padded_size: c.padded_size.bytes(),
        payload_size: c.payload_len,
    };
    let mut out = super::stdout::Stdout;
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(out, "piece CID     {}", report.piece_cid)?;
        writeln!(out, "CommP         {}", report.comm_p)?;
        writeln!(
            out,
            "padded size   {} ({})",
            report.padded_size,
            human_bytes(report.padded_size)
        )?;
        writeln!(out, "payload size  {}", report.payload_size)?;
    }
    Ok(())
}

#[derive(Serialize)]
struct ConvertReport {
    input_bytes: u64,
    output_bytes: u64,
}

fn print_convert(report: &ConvertReport, json: bool, what: &str) -> anyhow::Result<()> {
    let mut out = super::stdout::Stdout;
    if json {
        serde_json::to_writer_pretty(&mut out, report)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{what} {} bytes into {} bytes",
            report.input_bytes, report.output_bytes
        )?;
    }
    Ok(())
}

/// Counts bytes passing through a writer.
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn pad(args: PadArgs) -> anyhow::Result<()> {
    let (input, len) = open_input(&args.input)?;
    let output = create_output(&args.input, &args.output)?;
    let mut reader = ProgressReader::new(input, bytes_bar(len, "padding"));
    let mut writer = PadWriter::new(Counting {
        inner: output,
        count: 0,
    });
    let raw = io::copy(&mut reader, &mut writer).with_context(|| {
        format!(
            "cannot pad {} into {}",
            args.input.display(),
            args.output.display()
        )
    })?;
    reader.finish();
    let mut counting = writer
        .finish()
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    if args.piece {
        let piece = PaddedPieceSize::for_payload(raw)?;
        let fill = piece.bytes() - counting.count;
        io::copy(&mut io::repeat(0).take(fill), &mut counting)
            .with_context(|| format!("cannot write {}", args.output.display()))?;
    }
    let output_bytes = counting.count;
    finish_output(counting.inner, &args.output)?;
    print_convert(
        &ConvertReport {
            input_bytes: raw,
            output_bytes,
        },
        args.json,
        "padded",
    )
}

fn unpad(args: UnpadArgs) -> anyhow::Result<()> {
    let (input, len) = open_input(&args.input)?;
    if let (Some(len), Some(want)) = (len, args.payload_size) {
        let capacity = len / 128 * 127;
        if want > capacity {
            bail!(
                "--payload-size {want} is larger than the {capacity} raw bytes that {} bytes of padded data hold",
                len
            );
        }
    }
    let mut output = create_output(&args.input, &args.output)?;
    let reader = ProgressReader::new(input, bytes_bar(len, "unpadding"));
    let mut unpadder = match args.payload_size {
        Some(n) => UnpadReader::with_limit(reader, n),
        None => UnpadReader::new(reader),
    };
    let written = io::copy(&mut unpadder, &mut output)
        .with_context(|| format!("cannot unpad {}", args.input.display()))?;
    finish_output(output, &args.output)?;
    print_convert(
        &ConvertReport {
            input_bytes: len.unwrap_or(0),
            output_bytes: written,
        },
        args.json,
        "unpadded",
    )
}
