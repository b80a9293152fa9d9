//! SNARK commands: parameters, circuit sizes, PoSt proving, and verification from public data.
//!
//! Verification uses only keys that exist: a `--vk` file, or the parameter store's verifying key or
//! parameters. A missing key is an error with exit status 2 that says what to run; keys are never
//! generated on the verifying path.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use lode_proofs::circuit::post::PostKind;
use lode_proofs::files::PostFile;
use lode_proofs::node::Node;
use lode_proofs::params::{Origin, ParamStore, ParamsError};
use lode_proofs::sector::SectorSize;
use lode_proofs::verifier::{ProofVerifier, SnarkVerifier};
use lode_sealing::accel::{self, GpuChoice};
use lode_sealing::post::{SealedSector, prove_post_on};
use serde::Serialize;

use super::common::{
    CircuitArg, ParamsDir, fresh_rng, params_for, parse_node, parse_size, read_public,
    report_validity, warn_insecure,
};
use super::progress::Bars;

/// A verifier holding the verifying key of one circuit: from `--vk`, else the store's verifying-key
/// file, else the store's parameters. Never generated: a missing key stops with what to run.
fn verifier_for(
    vk: Option<&Path>,
    store: &ParamStore,
    circuit: CircuitArg,
    size: SectorSize,
) -> anyhow::Result<(SnarkVerifier, Origin)> {
    let id = circuit.id(size);
    let loaded = match vk {
        Some(path) => ParamStore::load_vk(path, &id)
            .with_context(|| format!("cannot load the verifying key {}", path.display())),
        None if store.vk_path(&id).exists() => ParamStore::load_vk(&store.vk_path(&id), &id)
            .with_context(|| format!("cannot load {}", store.vk_path(&id).display())),
        None => match store.load(&id) {
            Ok((params, origin)) => Ok((params.vk, origin)),
            Err(ParamsError::NotFound { .. }) => Err(anyhow::anyhow!(
                "no verifying key for {} in {}: a verifier only uses keys that exist. Import the \
                 ceremony's parameters there, pass --vk FILE, or (devnets and tests only) generate \
                 insecure ones on purpose with `lode params generate --sector-size {} --circuit {} \
                 --params-dir {}`",
                id.canonical(),
                store.dir().display(),
                size.name(),
                circuit.name(),
                store.dir().display(),
            )),
            Err(e) => Err(anyhow::Error::new(e).context("cannot load the verifying key")),
        },
    };
    let (key, origin) = loaded.map_err(super::cannot_check)?;
    warn_insecure(origin, &id);
    let verifier = SnarkVerifier::new(store.clone());
    verifier.insert_key(&id, &key);
    Ok((verifier, origin))
}

fn origin_name(origin: Origin) -> &'static str {
    match origin {
        Origin::InsecureTest => "insecure-test",
        Origin::Ceremony => "ceremony",
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum ParamsCommand {
    /// Generate (or find) the parameters of circuits: deterministic and INSECURE, for tests and devnets.
    ///
    /// Every machine derives the same parameters from the circuit's identifier, so a devnet needs no
    /// file exchange. Real networks import ceremony parameters instead.
    #[command(after_help = "Examples:
  lode params generate --sector-size 2KiB
  lode params generate --sector-size 8MiB --circuit window-post --params-dir /srv/params --json")]
    Generate(ParamsArgs),
    /// Check that parameter files are present, intact and for the right circuits.
    #[command(after_help = "Example:
  lode params check --sector-size 2KiB --json")]
    Check(ParamsArgs),
    /// Write a circuit's verifying key alone (what a verifier needs; no proving key).
    #[command(after_help = "Example:
  lode params export-vk --sector-size 2KiB --circuit porep -o porep-2kib.vk")]
    ExportVk(ExportVkArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ParamsArgs {
    /// Sector size.
    #[arg(long, value_parser = parse_size, default_value = "2KiB")]
    sector_size: SectorSize,
    /// Circuit (default: all three).
    #[arg(long, value_enum)]
    circuit: Option<CircuitArg>,
    #[command(flatten)]
    dir: ParamsDir,
    /// Print a JSON report instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ExportVkArgs {
    /// Sector size.
    #[arg(long, value_parser = parse_size)]
    sector_size: SectorSize,
    /// Circuit.
    #[arg(long, value_enum)]
    circuit: CircuitArg,
    /// Output file.
    #[arg(long, short)]
    out: PathBuf,
    #[command(flatten)]
    dir: ParamsDir,
    /// Print a JSON report instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct ParamsRow {
    circuit: &'static str,
    sector_size: &'static str,
    identifier: String,
    path: String,
    bytes: u64,
    seconds: f64,
    status: String,
}

pub(crate) fn params(cmd: ParamsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ParamsCommand::Generate(a) => params_rows(&a, true),
        ParamsCommand::Check(a) => params_rows(&a, false),
        ParamsCommand::ExportVk(a) => {
            let store = a.dir.store();
            let id = a.circuit.id(a.sector_size);
            let (params, origin) = store
                .load(&id)
                .with_context(|| format!("cannot load the {} parameters", a.circuit.name()))?;
            warn_insecure(origin, &id);
            store.export_vk(&id, &params, origin, &a.out)?;
            if a.json {
                outln!(
                    "{}",
                    serde_json::json!({
                        "circuit": a.circuit.name(),
                        "sector_size": a.sector_size.name(),
                        "identifier": id.canonical(),
                        "origin": origin_name(origin),
                        "output": a.out.display().to_string(),
                        "bytes": std::fs::metadata(&a.out).map_or(0, |m| m.len()),
                    })
                );
            } else {
                outln!(
                    "wrote the verifying key of {} to {}",
                    id.canonical(),
                    a.out.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn params_rows(a: &ParamsArgs, generate: bool) -> anyhow::Result<ExitCode> {
    let store = a.dir.store();
    let circuits = a.circuit.map_or(CircuitArg::ALL.to_vec(), |c| vec![c]);
    let mut rows = Vec::new();
    let mut failed = false;
    for c in circuits {
        let id = c.id(a.sector_size);
        let start = Instant::now();
        let status = if generate {
            params_for(&store, c, a.sector_size).map(|_| "ok".to_string())
        } else {
            store
                .load(&id)
                .map(|(_, o)| {
                    if o == Origin::InsecureTest {
                        "ok (insecure test parameters)".into()
                    } else {
                        "ok".into()
                    }
                })
                .map_err(anyhow::Error::from)
        };
        let status = status.unwrap_or_else(|e| {
            failed = true;
            format!("error: {e:#}")
        });
        let path = store.params_path(&id);
        rows.push(ParamsRow {
            circuit: c.name(),
            sector_size: a.sector_size.name(),
            identifier: id.canonical().to_string(),
            bytes: std::fs::metadata(&path).map_or(0, |m| m.len()),
            path: path.display().to_string(),
            seconds: start.elapsed().as_secs_f64(),
            status,
        });
    }
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for r in &rows {
            outln!(
                "{:<13} {} ({} bytes, {:.1} s): {}",
                r.circuit,
                r.path,
                r.bytes,
                r.seconds,
                r.status
            );
        }
    }
    if failed {
        bail!("some parameter sets are missing or damaged");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub(crate) struct CircuitInfoArgs {
    /// Sector sizes to report (default: the three test sizes).
    #[arg(long, value_parser = parse_size)]
    sector_size: Vec<SectorSize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct InfoRow {
    circuit: &'static str,
    sector_size: &'static str,
    constraints: usize,
    public_inputs: usize,
    private_variables: usize,
}

pub(crate) fn circuit_info_cmd(a: CircuitInfoArgs) -> anyhow::Result<ExitCode> {
    let sizes = if a.sector_size.is_empty() {
        vec![SectorSize::S2KiB, SectorSize::S8MiB, SectorSize::S512MiB]
    } else {
        a.sector_size.clone()
    };
    let mut rows = Vec::new();
    for size in sizes {
        for c in CircuitArg::ALL {
            let info = c.info(size)?;
            rows.push(InfoRow {
                circuit: c.name(),
                sector_size: size.name(),
                constraints: info.constraints,
                public_inputs: info.public_inputs,
                private_variables: info.private_variables,
            });
        }
    }
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        outln!(
            "{:<13} {:>7} {:>12} {:>8} {:>10}",
            "circuit",
            "size",
            "constraints",
            "inputs",
            "private"
        );
        for r in rows {
            outln!(
                "{:<13} {:>7} {:>12} {:>8} {:>10}",
                r.circuit,
                r.sector_size,
                r.constraints,
                r.public_inputs,
                r.private_variables
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Subcommand)]
pub(crate) enum PostCommand {
    /// Winning PoSt: the sector the randomness selects among the given sectors, 66 challenges.
    #[command(after_help = "Example:
  lode post winning --randomness <64 hex> -o winning.json /data/s-4 /data/s-5 /data/s-6")]
    Winning(PostArgs),
    /// Window PoSt: 10 challenges per sector, one proof per partition; faulty sectors are reported
    /// in the file and skipped.
    #[command(after_help = "Example:
  lode post window --randomness <64 hex> -o deadline-3.json /data/s-*
  lode post window --randomness <64 hex> -o deadline-3.json --gpu cuda /data/s-*")]
    Window(PostArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PostArgs {
    /// Chain randomness: 64 hex digits.
    #[arg(long, value_parser = parse_node)]
    randomness: Node,
    /// The miner (default: the one the sectors' records name; when given, every sector must be its).
    #[arg(long)]
    miner_id: Option<u64>,
    /// Where to write the proof file (public inputs and proofs), for `lode verify post`.
    #[arg(long, short)]
    out: PathBuf,
    #[command(flatten)]
    dir: ParamsDir,
    /// Where to compute the proof's G1 sums: auto (a GPU if there is one, else the CPU), off
    /// (the CPU), opencl (the first OpenCL device, PoCL included) or cuda. The proof is the same.
    #[arg(long, env = "LODE_GPU", default_value_t = GpuChoice::Auto)]
    gpu: GpuChoice,
    /// Print a JSON report instead of text.
    #[arg(long)]
    json: bool,
    /// Sealed sector directories (one miner, one sector size, each sector once).
    #[arg(required = true)]
    sectors: Vec<PathBuf>,
}

pub(crate) fn post(cmd: PostCommand) -> anyhow::Result<ExitCode> {
    let (kind, a) = match cmd {
        PostCommand::Winning(a) => (PostKind::Winning, a),
        PostCommand::Window(a) => (PostKind::Window, a),
    };
    // The same directory under two spellings is one sector given twice.
    let mut seen: Vec<(PathBuf, &Path)> = Vec::new();
    let mut sectors = Vec::with_capacity(a.sectors.len());
    for p in &a.sectors {
        let sector =
            SealedSector::open(p).with_context(|| format!("cannot open sector {}", p.display()))?;
        let real =
            std::fs::canonicalize(p).with_context(|| format!("cannot read {}", p.display()))?;
        if let Some((_, first)) = seen.iter().find(|(r, _)| *r == real) {
            bail!(
                "{} and {} are the same sector directory; name each sector once",
                first.display(),
                p.display()
            );
        }
        seen.push((real, p));
        sectors.push(sector);
    }
    let checked = lode_sealing::post::check_post_sectors(&sectors, a.miner_id)?;
    let size = checked.first().map(|s| s.id.size).context("no sectors")?;
    let params = params_for(&a.dir.store(), CircuitArg::of_post(kind), size)?;
    let gpu = accel::open(a.gpu)?.map(Arc::new);
    let device_name = gpu
        .as_ref()
        .map_or_else(|| "cpu".to_string(), |g| g.to_string());
    let device = gpu.map(accel::prover_device);
    let mut rng = fresh_rng()?;
    let mut bars = Bars::new();
    let start = Instant::now();
    let file = prove_post_on(
        kind,
        &checked,
        a.miner_id,
        &a.randomness,
        &params,
        &mut rng,
        device.as_ref(),
        &mut |p| bars.update(p),
    )?;
    let secs = start.elapsed().as_secs_f64();
    let mut out = lode_proofs::durable::AtomicFile::create(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    serde_json::to_writer_pretty(&mut out, &file)?;
    out.commit()
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    if a.json {
        outln!(
            "{}",
            serde_json::json!({
                "output": a.out.display().to_string(),
                "kind": kind.name(),
                "sector_size": size.name(),
                "miner_id": file.miner_id,
                "sectors": file.sectors.len(),
                "proofs": file.proofs.len(),
                "faulty": file.faulty,
                "seconds": secs,
                "device": device_name,
            })
        );
    } else {
        outln!(
            "{}: {} proof(s) over {} sector(s) in {secs:.2} s -> {}",
            kind.name(),
            file.proofs.len(),
            file.sectors.len(),
            a.out.display()
        );
        for (n, why) in &file.faulty {
            outln!("faulty sector {n}: {why}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Subcommand)]
pub(crate) enum VerifyCommand {
    /// Verify a PoRep (Commit2 output) from its public inputs.
    ///
    /// Exit status: 0 valid, 1 invalid (with the reason), 2 not checkable (a missing verifying key or
    /// an unreadable file).
    #[command(after_help = "Examples:
  lode verify porep --public /data/s-7/commit1.json --proof /data/s-7/commit2.bin
  lode verify porep --public commit1.json --proof commit2.bin --vk porep-2kib.vk --json")]
    Porep(VerifyPorepArgs),
    /// Verify a PoSt file written by `lode post`.
    ///
    /// Exit status: 0 valid, 1 invalid (with the reason), 2 not checkable (a missing verifying key or
    /// an unreadable file).
    #[command(after_help = "Example:
  lode verify post deadline-3.json --vk window-post-2kib.vk")]
    Post(VerifyPostArgs),
}

#[derive(Debug, Args)]
pub(crate) struct VerifyPorepArgs {
    /// Public inputs as JSON (commit1.json).
    #[arg(long)]
    public: PathBuf,
    /// The proof file (commit2.bin: 192 bytes per partition).
    #[arg(long)]
    proof: PathBuf,
    /// A verifying key file (default: the parameter store's).
    #[arg(long)]
    vk: Option<PathBuf>,
    #[command(flatten)]
    dir: ParamsDir,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyPostArgs {
    /// The PoSt file.
    input: PathBuf,
    /// A verifying key file (default: the parameter store's).
    #[arg(long)]
    vk: Option<PathBuf>,
    #[command(flatten)]
    dir: ParamsDir,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn verify(cmd: VerifyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        VerifyCommand::Porep(a) => {
            let public = read_public(&a.public)?;
            let bytes = std::fs::read(&a.proof)
                .with_context(|| format!("cannot read {}", a.proof.display()))
                .map_err(super::cannot_check)?;
            let (verifier, origin) = verifier_for(
                a.vk.as_deref(),
                &a.dir.store(),
                CircuitArg::Porep,
                public.size,
            )?;
            let proofs: Vec<Vec<u8>> = bytes
                .chunks(lode_proofs::snark::PROOF_LEN)
                .map(<[u8]>::to_vec)
                .collect();
            report_validity(
                verifier
                    .verify_seal(&public, &proofs)
                    .map_err(|e| e.to_string()),
                a.json,
                serde_json::json!({ "parameters": origin_name(origin) }),
            )
        }
        VerifyCommand::Post(a) => {
            let text = std::fs::read(&a.input)
                .with_context(|| format!("cannot read {}", a.input.display()))
                .map_err(super::cannot_check)?;
            let file: PostFile = serde_json::from_slice(&text)
                .with_context(|| format!("{} is not a PoSt file", a.input.display()))
                .map_err(super::cannot_check)?;
            // A file that cannot be a statement is invalid whatever the keys.
            if let Err(e) = file.statements() {
                return report_validity(Err(e.to_string()), a.json, serde_json::Value::Null);
            }
            let (verifier, origin) = verifier_for(
                a.vk.as_deref(),
                &a.dir.store(),
                CircuitArg::of_post(file.kind),
                file.sector_size,
            )?;
            let result = file.verify(&verifier).map_err(|e| e.to_string());
            if result.is_ok() && file.kind == PostKind::Window && !a.json {
                eprintln!(
                    "note: a Window PoSt does not bind the miner id ({}); the chain binds it through the randomness it draws for that miner",
                    file.miner_id
                );
            }
            report_validity(
                result,
                a.json,
                serde_json::json!({
                    "kind": file.kind.name(),
                    "sector_size": file.sector_size.name(),
                    "miner_id": file.miner_id,
                    "miner_bound": file.kind == PostKind::Winning,
                    "sectors": file.sectors.iter().map(|s| s.0).collect::<Vec<_>>(),
                    "faulty": file.faulty.iter().map(|f| f.0).collect::<Vec<_>>(),
                    "parameters": origin_name(origin),
                }),
            )
        }
    }
}
