//! Command-line definitions and dispatch.

mod chain;
mod piece;
mod progress;
mod seal;
mod snark;

use clap::{Parser, Subcommand};

/// lode — a decentralized storage provider with proof-of-spacetime.
///
/// Clients prepare data with `lode piece`: compute the piece commitment (CommP) and piece CID that a
/// storage deal names, and convert between raw bytes and the fr32-padded form that sectors hold.
/// Storage miners seal sectors with `lode seal`, phase by phase or end to end, and unseal them.
#[derive(Debug, Parser)]
#[command(name = "lode", version, about, long_about, propagate_version = true)]
pub(crate) struct Cli {
    /// More log output on stderr (-v: debug, -vv: trace). `LODE_LOG` takes a tracing filter instead.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prepare client data: piece commitments, piece CIDs, fr32 padding.
    #[command(subcommand)]
    Piece(piece::PieceCommand),
    /// Seal sectors: AddPiece, PreCommit1/2, Commit1, Finalize, unsealing, proof checks.
    #[command(subcommand)]
    Seal(seal::SealCommand),
    /// Prove Proof-of-Spacetime over sealed sectors: Winning PoSt (block production) or Window PoSt.
    #[command(subcommand)]
    Post(snark::PostCommand),
    /// Verify PoRep and PoSt proofs from public data only (what an auditor or a chain node runs).
    #[command(subcommand)]
    Verify(snark::VerifyCommand),
    /// Groth16 parameters: generate insecure test parameters, check files, export verifying keys.
    #[command(subcommand)]
    Params(snark::ParamsCommand),
    /// Constraints and public inputs of every circuit, per sector size.
    CircuitInfo(snark::CircuitInfoArgs),
    /// The chain: the rules a network runs on.
    #[command(subcommand)]
    Chain(chain::ChainCommand),
}

/// Runs the parsed command.
pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Piece(cmd) => piece::run(cmd),
        Command::Seal(cmd) => seal::run(cmd),
        Command::Post(cmd) => snark::post(cmd),
        Command::Verify(cmd) => snark::verify(cmd),
        Command::Params(cmd) => snark::params(cmd),
        Command::CircuitInfo(a) => snark::circuit_info_cmd(a),
        Command::Chain(cmd) => chain::run(cmd),
    }
}

/// Logs go to stderr so that stdout stays clean for results and `--json`.
pub(crate) fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LODE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
