//! SNARK commands: parameters, circuit sizes, Commit2, PoSt proving, and verification from public data.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use bls12_381::Bls12;
use clap::{Args, Subcommand, ValueEnum};
use groth16::{Parameters, VerifyingKey};
use lode_proofs::circuit::porep::{self as porep_circuit, PorepCircuit};
use lode_proofs::circuit::post::{self as post_circuit, PostCircuit, PostKind};
use lode_proofs::circuit::{CircuitInfo, circuit_info};
use lode_proofs::node::Node;
use lode_proofs::params::{Origin, ParamStore, ParamsId};
use lode_proofs::porep::{PorepProof, PorepPublic};
use lode_proofs::post::{PublicSector, window_partitions};
use lode_proofs::sector::SectorSize;
use lode_sealing::post::{SealedSector, prove_window, prove_winning};
use serde::{Deserialize, Serialize};

use super::seal::{PublicJson, default_cache_dir, parse_node, parse_size};

/// Which circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum CircuitArg {
    /// The PoRep circuit (one proof per partition).
    Porep,
    /// Winning PoSt.
    WinningPost,
    /// Window PoSt (one proof per partition).
    WindowPost,
}

impl CircuitArg {
    const ALL: [CircuitArg; 3] = [
        CircuitArg::Porep,
        CircuitArg::WinningPost,
        CircuitArg::WindowPost,
    ];

    fn id(self, size: SectorSize) -> ParamsId {
        match self {
            CircuitArg::Porep => porep_circuit::params_id(size),
            CircuitArg::WinningPost => PostKind::Winning.params_id(size),
            CircuitArg::WindowPost => PostKind::Window.params_id(size),
        }
    }

    fn name(self) -> &'static str {
        match self {
            CircuitArg::Porep => "porep",
            CircuitArg::WinningPost => "winning-post",
            CircuitArg::WindowPost => "window-post",
        }
    }

    fn info(self, size: SectorSize) -> anyhow::Result<CircuitInfo> {
        Ok(match self {
            CircuitArg::Porep => circuit_info(PorepCircuit {
                size,
                witness: None,
            })?,
            CircuitArg::WinningPost => circuit_info(PostCircuit {
                kind: PostKind::Winning,
                size,
                witness: None,
            })?,
            CircuitArg::WindowPost => circuit_info(PostCircuit {
                kind: PostKind::Window,
                size,
                witness: None,
            })?,
        })
    }
}

/// Where parameters live.
#[derive(Debug, Args, Clone)]
pub(crate) struct ParamsDir {
    /// Directory of Groth16 parameter files (default: the cache directory's `params/`).
    #[arg(long, env = "LODE_PARAMS_DIR")]
    params_dir: Option<PathBuf>,
}

impl ParamsDir {
    fn store(&self) -> ParamStore {
        ParamStore::new(
            self.params_dir
                .clone()
                .unwrap_or_else(|| default_cache_dir().join("params")),
        )
    }
}

/// A cryptographic RNG seeded from the operating system, for the zero-knowledge blinding of proofs.
fn fresh_rng() -> anyhow::Result<rand_chacha::ChaCha20Rng> {
    use std::io::Read;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .context("cannot read /dev/urandom for proof randomness")?;
    Ok(<rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::from_seed(seed))
}

fn warn_insecure(origin: Origin, id: &ParamsId) {
    if origin == Origin::InsecureTest {
        eprintln!(
            "warning: INSECURE test parameters ({}): anyone can forge proofs with them; for tests and devnets only",
            id.canonical()
        );
    }
}

/// Parameters for a circuit: loaded, or generated (insecure, deterministic) when missing.
fn params_for(
    store: &ParamStore,
    circuit: CircuitArg,
    size: SectorSize,
) -> anyhow::Result<Parameters<Bls12>> {
    let id = circuit.id(size);
    let (params, origin, fresh) = match circuit {
        CircuitArg::Porep => store.get_or_generate_insecure(&id, || PorepCircuit {
            size,
            witness: None,
        }),
        CircuitArg::WinningPost => store.get_or_generate_insecure(&id, || PostCircuit {
            kind: PostKind::Winning,
            size,
            witness: None,
        }),
        CircuitArg::WindowPost => store.get_or_generate_insecure(&id, || PostCircuit {
            kind: PostKind::Window,
            size,
            witness: None,
        }),
    }
    .with_context(|| {
        format!(
            "cannot load or generate the {} parameters for {size}",
            circuit.name()
        )
    })?;
    if fresh {
        tracing::info!(path = %store.params_path(&id).display(), "generated parameters");
    }
    warn_insecure(origin, &id);
    Ok(params)
}

/// A verifying key: from a `--vk` file, or from the parameter store.
fn vk_for(
    vk: &Option<PathBuf>,
    store: &ParamStore,
    circuit: CircuitArg,
    size: SectorSize,
) -> anyhow::Result<VerifyingKey<Bls12>> {
    let id = circuit.id(size);
    let path = vk.clone().unwrap_or_else(|| store.vk_path(&id));
    let (vk, origin) = match ParamStore::load_vk(&path, &id) {
        Ok(v) => v,
        Err(lode_proofs::params::ParamsError::NotFound { .. }) if vk.is_none() => {
            let params = params_for(store, circuit, size)?;
            (params.vk, Origin::InsecureTest)
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot load the verifying key {}", path.display()));
        }
    };
    warn_insecure(origin, &id);
    Ok(vk)
}

#[derive(Debug, Subcommand)]
pub(crate) enum ParamsCommand {
    /// Generate (or find) the parameters of circuits: deterministic and INSECURE, for tests and devnets.
    ///
    /// Every machine derives the same parameters from the circuit's identifier, so a devnet needs no
    /// file exchange. Real networks import ceremony parameters instead.
    Generate(ParamsArgs),
    /// Check that parameter files are present, intact and for the right circuits.
    Check(ParamsArgs),
    /// Write a circuit's verifying key alone (what a verifier needs; no proving key).
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
}

#[derive(Serialize)]
struct ParamsRow {
    circuit: &'static str,
    identifier: String,
    path: String,
    bytes: u64,
    seconds: f64,
    status: String,
}

pub(crate) fn params(cmd: ParamsCommand) -> anyhow::Result<()> {
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
            println!(
                "wrote the verifying key of {} to {}",
                id.canonical(),
                a.out.display()
            );
            Ok(())
        }
    }
}

fn params_rows(a: &ParamsArgs, generate: bool) -> anyhow::Result<()> {
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
            identifier: id.canonical().to_string(),
            bytes: std::fs::metadata(&path).map_or(0, |m| m.len()),
            path: path.display().to_string(),
            seconds: start.elapsed().as_secs_f64(),
            status,
        });
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for r in &rows {
            println!(
                "{:<13} {} ({} bytes, {:.1} s): {}",
                r.circuit, r.path, r.bytes, r.seconds, r.status
            );
        }
    }
    if failed {
        bail!("some parameter sets are missing or damaged");
    }
    Ok(())
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

pub(crate) fn circuit_info_cmd(a: CircuitInfoArgs) -> anyhow::Result<()> {
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
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:<13} {:>7} {:>12} {:>8} {:>10}",
            "circuit", "size", "constraints", "inputs", "private"
        );
        for r in rows {
            println!(
                "{:<13} {:>7} {:>12} {:>8} {:>10}",
                r.circuit, r.sector_size, r.constraints, r.public_inputs, r.private_variables
            );
        }
    }
    Ok(())
}

/// `lode seal commit2`: proves a sector's Commit1 output.
pub(crate) fn commit2(sector_dir: &Path, dir: &ParamsDir, json: bool) -> anyhow::Result<()> {
    let public_path = sector_dir.join("commit1.json");
    let public: PublicJson =
        serde_json::from_slice(&std::fs::read(&public_path).with_context(|| {
            format!(
                "cannot read {}; run `lode seal commit1` first",
                public_path.display()
            )
        })?)?;
    let public = public.to_public()?;
    let vanilla_path = sector_dir.join("commit1.bin");
    let vanilla = PorepProof::from_bytes(
        &std::fs::read(&vanilla_path)
            .with_context(|| format!("cannot read {}", vanilla_path.display()))?,
    )
    .with_context(|| format!("{} is not a vanilla PoRep proof", vanilla_path.display()))?;
    let params = params_for(&dir.store(), CircuitArg::Porep, public.size)?;
    let start = Instant::now();
    let mut rng = fresh_rng()?;
    let proofs = porep_circuit::prove(&params, &public, &vanilla, &mut rng)?;
    let secs = start.elapsed().as_secs_f64();
    let out = sector_dir.join("commit2.bin");
    std::fs::write(&out, proofs.concat())
        .with_context(|| format!("cannot write {}", out.display()))?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "proof": out.display().to_string(), "partitions": proofs.len(), "bytes": proofs.concat().len(), "seconds": secs })
        );
    } else {
        println!(
            "commit2       {} partition proof(s), {} bytes, in {secs:.1} s -> {}",
            proofs.len(),
            proofs.concat().len(),
            out.display()
        );
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub(crate) enum PostCommand {
    /// Winning PoSt: the sector the randomness selects among the given sectors, 66 challenges.
    Winning(PostArgs),
    /// Window PoSt: 10 challenges per sector, one proof per partition; faulty sectors are reported.
    Window(PostArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PostArgs {
    /// Chain randomness: 64 hex digits.
    #[arg(long, value_parser = parse_node)]
    randomness: Node,
    /// The miner (Winning PoSt selection uses it).
    #[arg(long, default_value_t = 1000)]
    miner_id: u64,
    /// Where to write the proof file (public inputs and proofs), for `lode verify post`.
    #[arg(long, short)]
    out: PathBuf,
    #[command(flatten)]
    dir: ParamsDir,
    /// Print a JSON report instead of text.
    #[arg(long)]
    json: bool,
    /// Sealed sector directories (all of one sector size).
    #[arg(required = true)]
    sectors: Vec<PathBuf>,
}

/// What `lode post` writes and `lode verify post` reads.
#[derive(Serialize, Deserialize)]
pub(crate) struct PostFile {
    kind: String,
    sector_size: String,
    miner_id: u64,
    randomness: String,
    /// The sectors proven (Winning: all candidate sectors; Window: the proven sectors, by partition).
    sectors: Vec<(u64, String)>,
    /// Sectors reported faulty (Window PoSt), with the reason.
    faulty: Vec<(u64, String)>,
    /// One hex proof per partition (one for Winning PoSt).
    proofs: Vec<String>,
}

pub(crate) fn post(cmd: PostCommand) -> anyhow::Result<()> {
    let (kind, a) = match cmd {
        PostCommand::Winning(a) => (PostKind::Winning, a),
        PostCommand::Window(a) => (PostKind::Window, a),
    };
    let sectors = a
        .sectors
        .iter()
        .map(|p| {
            SealedSector::open(p).with_context(|| format!("cannot open sector {}", p.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let size = sectors[0].id.size;
    if sectors.iter().any(|s| s.id.size != size) {
        bail!("all sectors of a PoSt must have one size");
    }
    let circuit = if kind == PostKind::Winning {
        CircuitArg::WinningPost
    } else {
        CircuitArg::WindowPost
    };
    let params = params_for(&a.dir.store(), circuit, size)?;
    let mut rng = fresh_rng()?;
    let start = Instant::now();
    let (publics, faulty, proofs) = match kind {
        PostKind::Winning => {
            let vanilla = prove_winning(&sectors, a.miner_id, &a.randomness)
                .context("the selected sector is faulty: Winning PoSt is not possible")?;
            let publics = sectors
                .iter()
                .map(SealedSector::public)
                .collect::<Result<Vec<_>, _>>()?;
            let proof = post_circuit::prove(&params, kind, size, &[vanilla], &mut rng)?;
            (publics, Vec::new(), vec![proof])
        }
        PostKind::Window => {
            let outcome = prove_window(&sectors, &a.randomness);
            let good: Vec<&SealedSector> = sectors
                .iter()
                .filter(|s| {
                    !outcome
                        .faulty
                        .iter()
                        .any(|f| f.sector_number == s.id.sector_number)
                })
                .collect();
            let publics = good
                .iter()
                .map(|s| s.public())
                .collect::<Result<Vec<_>, _>>()?;
            let mut proofs = Vec::new();
            for part in window_partitions(size, &outcome.proofs) {
                proofs.push(post_circuit::prove(&params, kind, size, &part, &mut rng)?);
            }
            let faulty = outcome
                .faulty
                .iter()
                .map(|f| (f.sector_number, f.error.to_string()))
                .collect();
            (publics, faulty, proofs)
        }
    };
    let secs = start.elapsed().as_secs_f64();
    let file = PostFile {
        kind: kind.name().into(),
        sector_size: size.name().into(),
        miner_id: a.miner_id,
        randomness: a.randomness.to_hex(),
        sectors: publics
            .iter()
            .map(|s| (s.sector_number, s.comm_r.to_hex()))
            .collect(),
        faulty,
        proofs: proofs.iter().map(hex::encode).collect(),
    };
    std::fs::write(&a.out, serde_json::to_vec_pretty(&file)?)
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({ "out": a.out.display().to_string(), "proofs": file.proofs.len(), "faulty": file.faulty, "seconds": secs })
        );
    } else {
        println!(
            "{}: {} proof(s) over {} sector(s) in {secs:.2} s -> {}",
            kind.name(),
            file.proofs.len(),
            file.sectors.len(),
            a.out.display()
        );
        for (n, why) in &file.faulty {
            println!("faulty sector {n}: {why}");
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub(crate) enum VerifyCommand {
    /// Verify a PoRep (Commit2 output) from its public inputs.
    Porep(VerifyPorepArgs),
    /// Verify a PoSt file written by `lode post`.
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

fn report(valid: Result<(), String>, json: bool) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::json!({ "valid": valid.is_ok(), "reason": valid.as_ref().err() })
        );
    } else {
        match &valid {
            Ok(()) => println!("valid"),
            Err(r) => println!("invalid: {r}"),
        }
    }
    if valid.is_err() {
        std::process::exit(1);
    }
    Ok(())
}

pub(crate) fn verify(cmd: VerifyCommand) -> anyhow::Result<()> {
    match cmd {
        VerifyCommand::Porep(a) => {
            let public: PublicJson = serde_json::from_slice(
                &std::fs::read(&a.public)
                    .with_context(|| format!("cannot read {}", a.public.display()))?,
            )
            .with_context(|| format!("{} is not a public-inputs file", a.public.display()))?;
            let public: PorepPublic = public.to_public()?;
            let bytes = std::fs::read(&a.proof)
                .with_context(|| format!("cannot read {}", a.proof.display()))?;
            let vk = vk_for(&a.vk, &a.dir.store(), CircuitArg::Porep, public.size)?;
            let pvk = groth16::prepare_verifying_key(&vk);
            let proofs: Vec<Vec<u8>> = bytes
                .chunks(lode_proofs::snark::PROOF_LEN)
                .map(<[u8]>::to_vec)
                .collect();
            report(
                porep_circuit::verify(&pvk, &public, &proofs).map_err(|e| e.to_string()),
                a.json,
            )
        }
        VerifyCommand::Post(a) => {
            let file: PostFile = serde_json::from_slice(
                &std::fs::read(&a.input)
                    .with_context(|| format!("cannot read {}", a.input.display()))?,
            )
            .with_context(|| format!("{} is not a PoSt file", a.input.display()))?;
            let size = parse_size(&file.sector_size).map_err(anyhow::Error::msg)?;
            let randomness = parse_node(&file.randomness).map_err(anyhow::Error::msg)?;
            let sectors = file
                .sectors
                .iter()
                .map(|(n, c)| {
                    // comm_r is a field element, not chain randomness: parsed strictly, never truncated.
                    let comm_r = Node::from_hex(c).filter(|n| n.to_fr().is_some());
                    let comm_r = comm_r.with_context(|| {
                        format!("sector {n}: comm_r {c:?} is not a field element")
                    })?;
                    Ok(PublicSector {
                        sector_number: *n,
                        comm_r,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let proofs = file
                .proofs
                .iter()
                .map(hex::decode)
                .collect::<Result<Vec<_>, _>>()
                .context("proofs must be hex")?;
            let result = match file.kind.as_str() {
                "winning-post" => {
                    let vk = vk_for(&a.vk, &a.dir.store(), CircuitArg::WinningPost, size)?;
                    let pvk = groth16::prepare_verifying_key(&vk);
                    match proofs.as_slice() {
                        [p] => post_circuit::verify_winning(
                            &pvk,
                            size,
                            file.miner_id,
                            &randomness,
                            &sectors,
                            p,
                        )
                        .map_err(|e| e.to_string()),
                        _ => Err("a Winning PoSt has exactly one proof".to_string()),
                    }
                }
                "window-post" => {
                    let vk = vk_for(&a.vk, &a.dir.store(), CircuitArg::WindowPost, size)?;
                    let pvk = groth16::prepare_verifying_key(&vk);
                    let parts = window_partitions(size, &sectors);
                    if parts.len() != proofs.len() {
                        Err(format!(
                            "{} partitions but {} proofs",
                            parts.len(),
                            proofs.len()
                        ))
                    } else {
                        parts
                            .iter()
                            .zip(&proofs)
                            .try_for_each(|(part, p)| {
                                post_circuit::verify(
                                    &pvk,
                                    PostKind::Window,
                                    size,
                                    &randomness,
                                    part,
                                    p,
                                )
                            })
                            .map_err(|e| e.to_string())
                    }
                }
                other => Err(format!("unknown PoSt kind {other:?}")),
            };
            report(result, a.json)
        }
    }
}
