//! Command-line definitions and dispatch.

mod actor;
mod bench;
mod chain;
mod client;
mod cluster;
mod common;
mod daemons;
mod devnet;
mod job;
mod market_client;
mod piece;
mod progress;
mod provider;
mod proving;
mod seal;
mod sectors;
mod snark;
pub(crate) mod stdout;
mod verifreg;
mod wallet;

use std::process::ExitCode;

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
    /// The client side of the deal market: import files, directories and CARs for deals, and
    /// list the imports.
    #[command(subcommand)]
    Client(market_client::ClientCommand),
    /// Compute over stored data: submit WASM jobs that run where your pieces are stored, follow
    /// them, download and check their outputs, and verify them as a job's named verifier.
    #[command(subcommand)]
    Job(job::JobCommand),
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
    /// Benchmark runs for researchers: sealing, labelling, trees, CommP, Commit2 and PoSt phase by
    /// phase (wall, CPU, peak memory) with the machine's description, as JSON and CSV; `plot`
    /// charts them beside the reference figures as SVG.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Constraints and public inputs of every circuit, per sector size.
    #[command(after_help = "Examples:
  lode circuit-info
  lode circuit-info --sector-size 32GiB --json")]
    CircuitInfo(snark::CircuitInfoArgs),
    /// The chain: the rules a network runs on.
    #[command(subcommand)]
    Chain(chain::ChainCommand),
    /// Keys in a local wallet, balances, and sending tokens through a node.
    #[command(subcommand)]
    Wallet(wallet::WalletCommand),
    /// A node's network: peers, identity, connecting to a peer.
    #[command(subcommand)]
    Net(client::NetCommand),
    /// A node's chain state: actors, miner and network power.
    #[command(subcommand)]
    State(client::StateCommand),
    /// A node's message pool.
    #[command(subcommand)]
    Mpool(client::MpoolCommand),
    /// A node's sync progress.
    #[command(subcommand)]
    Sync(client::SyncCommand),
    /// Run a node: chain, libp2p, sync, mempool, JSON-RPC, metrics.
    #[command(subcommand)]
    Node(daemons::NodeCommand),
    /// A storage provider: run it (block production with Winning PoSt, Window PoSt, its own API),
    /// or read and drive a running one through its API.
    #[command(subcommand)]
    Provider(provider::ProviderCommand),
    /// A storage provider's sectors: pledge committed capacity, list them with their pipeline
    /// state and chain record, one sector's status, remove one.
    #[command(subcommand)]
    Sectors(sectors::SectorsCommand),
    /// A running provider's proving: the proving period, its deadlines, faults, and the proving
    /// check of its sectors, through the provider's API.
    #[command(subcommand)]
    Proving(proving::ProvingCommand),
    /// A miner actor on chain: owner, worker, power and balances; withdrawing to the owner.
    #[command(subcommand)]
    Actor(actor::ActorCommand),
    /// The verified registry: appoint verifiers, grant DataCap to clients, read DataCap.
    #[command(subcommand)]
    Verifreg(verifreg::VerifRegCommand),
    /// A cluster worker: claims sealing tasks from the cluster's PostgreSQL database and runs
    /// them on this machine.
    #[command(subcommand)]
    Worker(cluster::WorkerCommand),
    /// The cluster of workers sharing a PostgreSQL database: its status, and sealing a sector
    /// across it.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Create a genesis with miners whose sectors are sealed for real.
    #[command(subcommand)]
    Genesis(devnet::GenesisCommand),
    /// Start a local network of nodes and miners on loopback (or stop it, or show its status).
    #[command(after_help = "Examples:
  lode devnet                        # 2 nodes, 2 miners, 2 KiB sectors; Ctrl-C stops it
  lode devnet --nodes 3 --miners 3 --dir /tmp/net --detach
  lode devnet --detach --publish-wait-epochs 30   # deals wait 30 epochs to share a PublishDeals
  lode devnet status --dir /tmp/net
  lode devnet stop --dir /tmp/net")]
    Devnet(devnet::DevnetArgs),
}

/// Runs the parsed command; the exit code says how it ended (see [`exit_code`] for errors).
pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Piece(cmd) => piece::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::Client(cmd) => market_client::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::Job(cmd) => job::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::Seal(cmd) => seal::run(cmd),
        Command::Post(cmd) => snark::post(cmd),
        Command::Verify(cmd) => snark::verify(cmd),
        Command::Params(cmd) => snark::params(cmd),
        Command::CircuitInfo(a) => snark::circuit_info_cmd(a),
        Command::Bench(cmd) => bench::run_cmd(cmd).map(|()| ExitCode::SUCCESS),
        Command::Chain(cmd) => chain::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::Wallet(cmd) => wallet::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::Net(cmd) => client::net(cmd).map(|()| ExitCode::SUCCESS),
        Command::State(cmd) => client::state(cmd).map(|()| ExitCode::SUCCESS),
        Command::Mpool(cmd) => client::mpool(cmd).map(|()| ExitCode::SUCCESS),
        Command::Sync(cmd) => client::sync(cmd).map(|()| ExitCode::SUCCESS),
        Command::Node(cmd) => daemons::node(cmd).map(|()| ExitCode::SUCCESS),
        Command::Provider(cmd) => provider::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::Sectors(cmd) => sectors::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::Proving(cmd) => proving::run(cmd),
        Command::Actor(cmd) => actor::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::Verifreg(cmd) => verifreg::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::Worker(cmd) => cluster::worker(cmd).map(|()| ExitCode::SUCCESS),
        Command::Cluster(cmd) => cluster::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::Genesis(cmd) => devnet::genesis(cmd).map(|()| ExitCode::SUCCESS),
        Command::Devnet(a) => devnet::run(a).map(|()| ExitCode::SUCCESS),
    }
}

/// A verifier could not check at all (a missing verifying key, an unreadable input): exit status 2,
/// distinct from 1, "checked and invalid".
#[derive(Debug)]
pub(crate) struct CannotCheck(anyhow::Error);

impl std::fmt::Display for CannotCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for CannotCheck {}

/// Marks an error as "could not check" (exit status 2).
pub(crate) fn cannot_check(e: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(CannotCheck(e))
}

/// The exit status of a failed command: 2 when a verifier could not check, 1 otherwise.
pub(crate) fn exit_code(e: &anyhow::Error) -> ExitCode {
    if e.chain().any(|c| c.is::<CannotCheck>()) {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

/// Logs go to stderr so that stdout stays clean for results and `--json`; colour only on a terminal.
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
