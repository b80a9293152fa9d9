//! `lode client`: the client side of the deal market. Data preparation lives here (`import`,
//! `list-imports`); deals, asks, retrieval and escrow join this group as their own subcommands.
//!
//! Each subcommand is one variant of [`ClientCommand`] with its own `Args` struct and handler;
//! what several of them share (the client directory, opening the import store) is in
//! [`ClientDirArgs`].

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use lode_market::import::{
    ENV_CLIENT_DIR, ImportOptions, ImportPhase, ImportProgress, ImportRecord, ImportStore,
};
use lode_market::unixfs::DagParams;

use super::common::{default_data_dir, human_bytes, print_json, table};
use super::progress::bytes_bar;

/// `lode client` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ClientCommand {
    /// Prepare a file, a directory or a CAR file for a storage deal.
    ///
    /// A file or directory is packed into a CAR (UnixFS: 1 MiB raw chunks, balanced DAG of up to
    /// 1024 links per node, directories with sorted links; the same root CID as `ipfs-car`). A
    /// CAR file is taken as it is, after checking every block and that its one root is inside.
    /// The CAR is kept in the client directory; the import prints its payload root CID, piece CID
    /// (CommP of the CAR), padded piece size and payload size (the CAR's bytes): what a deal names.
    /// Symbolic links and special files inside a directory are refused.
    #[command(after_help = "Examples:
  lode client import movie.mp4
  lode client import photos/ --json
  lode client import dataset.car
  lode client import backup.car --as-file --client-dir ./client")]
    Import(ImportArgs),
    /// List the imports in the client directory: id, payload root, piece CID, sizes, source.
    #[command(after_help = "Examples:
  lode client list-imports
  lode client list-imports --json")]
    ListImports(ListImportsArgs),
}

/// The client directory flag every `lode client` command takes.
#[derive(Debug, Args)]
pub(crate) struct ClientDirArgs {
    /// The client's directory (imports and their CARs) [default: ~/.local/share/lode/client].
    #[arg(long, env = ENV_CLIENT_DIR, value_name = "DIR")]
    client_dir: Option<PathBuf>,
}

impl ClientDirArgs {
    /// The directory given, or the default one.
    pub(crate) fn dir(&self) -> PathBuf {
        self.client_dir
            .clone()
            .unwrap_or_else(|| default_data_dir().join("client"))
    }

    /// Opens (creating it if needed) the import store.
    pub(crate) fn store(&self) -> anyhow::Result<ImportStore> {
        let dir = self.dir();
        ImportStore::open(&dir)
            .with_context(|| format!("cannot open the client directory {}", dir.display()))
    }
}

/// Arguments of `lode client import`.
#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The file, directory or CAR file to import.
    path: PathBuf,
    /// Pack a CAR file as an ordinary file instead of taking it as it is.
    #[arg(long)]
    as_file: bool,
    #[command(flatten)]
    dir: ClientDirArgs,
    /// Print the import record as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lode client list-imports`.
#[derive(Debug, Args)]
pub(crate) struct ListImportsArgs {
    #[command(flatten)]
    dir: ClientDirArgs,
    /// Print the import records as a JSON array.
    #[arg(long)]
    json: bool,
}

/// Runs a `lode client` command.
pub(crate) fn run(cmd: ClientCommand) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Import(args) => import(args),
        ClientCommand::ListImports(args) => list_imports(args),
    }
}

/// One progress bar per import phase, replaced when the phase changes.
#[derive(Default)]
struct PhaseBars {
    current: Option<(ImportPhase, ProgressBar)>,
}

impl PhaseBars {
    fn update(&mut self, p: ImportProgress) {
        let same = matches!(&self.current, Some((phase, _)) if *phase == p.phase);
        if !same {
            self.finish();
            let message = match p.phase {
                ImportPhase::Packing => "packing",
                ImportPhase::Copying => "checking and copying",
                ImportPhase::Hashing => "piece commitment",
            };
            self.current = Some((p.phase, bytes_bar(p.total, message)));
        }
        if let Some((_, bar)) = &self.current {
            bar.set_position(p.done);
        }
    }

    fn finish(&mut self) {
        if let Some((_, bar)) = self.current.take() {
            bar.finish_and_clear();
        }
    }
}

fn import(args: ImportArgs) -> anyhow::Result<()> {
    let store = args.dir.store()?;
    let options = ImportOptions {
        params: DagParams::default(),
        as_file: args.as_file,
    };
    let mut bars = PhaseBars::default();
    let record = store
        .import(&args.path, &options, &mut |p| bars.update(p))
        .with_context(|| format!("cannot import {}", args.path.display()));
    bars.finish();
    let record = record?;
    if args.json {
        return print_json(&record);
    }
    println!("import        {} ({})", record.id, record.kind);
    println!("payload root  {}", record.payload_root);
    println!("piece CID     {}", record.piece_cid);
    println!(
        "padded size   {} ({})",
        record.padded_piece_size,
        human_bytes(record.padded_piece_size)
    );
    println!("payload size  {} (CAR bytes)", record.payload_size);
    println!("CAR           {}", store.car_path(&record).display());
    Ok(())
}

fn list_imports(args: ListImportsArgs) -> anyhow::Result<()> {
    let store = args.dir.store()?;
    let records: Vec<ImportRecord> = store.list()?;
    if args.json {
        return print_json(&records);
    }
    if records.is_empty() {
        println!(
            "no imports in {}; `lode client import FILE` adds one",
            store.dir().display()
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.kind.to_string(),
                r.payload_root.to_string(),
                r.piece_cid.to_string(),
                human_bytes(r.padded_piece_size),
                r.payload_size.to_string(),
                r.created_at.clone(),
                r.source.display().to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "ID",
                "KIND",
                "PAYLOAD ROOT",
                "PIECE CID",
                "PADDED",
                "PAYLOAD BYTES",
                "CREATED",
                "SOURCE"
            ],
            &rows
        )
    );
    Ok(())
}
