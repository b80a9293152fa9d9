//! `lode sectors`: the storage provider's sectors through its API — pledge committed capacity,
//! list every sector with its pipeline state and chain record, one sector's status and history,
//! remove a sector that never reached the chain, terminate one that did, extend sectors'
//! expiration.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use lode_provider::dashboard::sector_rows;
use lode_provider::pipeline::SectorState;
use lode_provider::rpc::{PipelineSector, PipelineSectors, ProviderSectors, SectorStatus};

use super::common::{ProviderApiArgs, block_on, print_json, provider_client_error, table};

/// Sector subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum SectorsCommand {
    /// Pledge committed-capacity sectors (protected: needs the provider's token). The provider's
    /// pipeline seals each one (PreCommit1/2), pre-commits it, waits for the seed, proves it
    /// (Commit1/2), prove-commits it and proves it every proving period from then on.
    #[command(after_help = "Examples:
  lode sectors pledge --devnet ~/.local/share/lode/devnet
  lode sectors pledge --count 4 --wait --dir mynet/miner-0
  lode sectors pledge --count 2 --api 127.0.0.1:2345 --token $(cat mynet/miner-0/token) --json")]
    Pledge(PledgeArgs),
    /// Every sector: its pipeline state (or `-` for a sector sealed outside the pipeline), its
    /// status on chain, deadline, partition and expiration, retries and the last error.
    #[command(after_help = "Examples:
  lode sectors list --devnet ~/.local/share/lode/devnet
  lode sectors list --dir mynet/miner-0 --json")]
    List(SectorsClientArgs),
    /// One sector: its pipeline record (state, retries, ticket, comm_r, messages), its files and
    /// chain record, and its last transitions.
    #[command(after_help = "Examples:
  lode sectors status 4 --devnet ~/.local/share/lode/devnet
  lode sectors status 4 --dir mynet/miner-0 --json")]
    Status(SectorArgs),
    /// Remove a sector that is not on chain (protected): its files are deleted and its record
    /// ends `Removed`. A sector on chain is terminated instead.
    #[command(after_help = "Examples:
  lode sectors remove 7 --dir mynet/miner-0")]
    Remove(SectorArgs),
    /// Terminate a sector on chain early (protected, destructive: needs `--really-do-it`). The
    /// chain charges the termination fee (as fee debt, paid from vesting rewards, then the
    /// balance), releases the sector's pledge and removes its power. The pipeline sends
    /// `TerminateSectors` once the sector's deadline is neither open nor about to open; this
    /// waits until the sector is `Terminated` and prints the message and the fee.
    #[command(after_help = "Examples:
  lode sectors terminate 7 --really-do-it --dir mynet/miner-0
  lode sectors terminate 7 --really-do-it --no-wait --devnet ~/.local/share/lode/devnet
  lode sectors terminate 7 --really-do-it --json --dir mynet/miner-0")]
    Terminate(TerminateArgs),
    /// Extend sectors' expiration on chain (protected): one `ExtendSectorExpiration` message,
    /// sent once every sector is checked (live and active, expiring before the new epoch,
    /// within the chain's extension and lifetime bounds); waits until it is executed and prints
    /// the message, the new expiration and each sector's old one.
    #[command(after_help = "Examples:
  lode sectors extend 3 4 --expiration 500000 --dir mynet/miner-0
  lode sectors extend 3 --by 2880 --devnet ~/.local/share/lode/devnet
  lode sectors extend 3 4 --by 2880 --json --dir mynet/miner-0")]
    Extend(ExtendArgs),
}

/// Arguments of `lode sectors terminate`.
#[derive(Debug, Args)]
pub(crate) struct TerminateArgs {
    /// The sector number.
    #[arg(value_name = "SECTOR")]
    sector: u64,
    /// Confirm: terminating is irreversible and costs the termination fee.
    #[arg(long)]
    really_do_it: bool,
    /// Return once the sector is `Terminating` (the pipeline sends the message later).
    #[arg(long)]
    no_wait: bool,
    /// The longest wait for `Terminated`, in seconds.
    #[arg(long, default_value_t = 1800, value_name = "SECONDS")]
    timeout: u64,
    #[command(flatten)]
    client: SectorsClientArgs,
}

/// Arguments of `lode sectors extend`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("new").required(true).args(["expiration", "by"])))]
pub(crate) struct ExtendArgs {
    /// The sector numbers.
    #[arg(value_name = "SECTOR", required = true)]
    sectors: Vec<u64>,
    /// The new expiration epoch.
    #[arg(long, value_name = "EPOCH")]
    expiration: Option<u64>,
    /// Extend by this many epochs past the latest current expiration among the sectors.
    #[arg(long, value_name = "EPOCHS")]
    by: Option<u64>,
    #[command(flatten)]
    client: SectorsClientArgs,
}

/// The provider flags and the output flag.
#[derive(Debug, Args)]
pub(crate) struct SectorsClientArgs {
    #[command(flatten)]
    api: ProviderApiArgs,
    /// Print JSON (the API's result as the provider returns it).
    #[arg(long)]
    json: bool,
}

/// Arguments of `lode sectors pledge`.
#[derive(Debug, Args)]
pub(crate) struct PledgeArgs {
    /// How many sectors.
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Wait until every pledged sector is `Proving` (a progress bar on a terminal; fails when one
    /// fails for good or `--timeout` passes).
    #[arg(long)]
    wait: bool,
    /// With `--wait`: the longest wait, in seconds.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    timeout: u64,
    #[command(flatten)]
    client: SectorsClientArgs,
}

/// A sector number and the client flags.
#[derive(Debug, Args)]
pub(crate) struct SectorArgs {
    /// The sector number.
    #[arg(value_name = "SECTOR")]
    sector: u64,
    #[command(flatten)]
    client: SectorsClientArgs,
}

/// Runs a sectors subcommand.
pub(crate) fn run(cmd: SectorsCommand) -> anyhow::Result<()> {
    match cmd {
        SectorsCommand::Pledge(a) => pledge(&a),
        SectorsCommand::List(c) => list(&c),
        SectorsCommand::Status(a) => status(&a),
        SectorsCommand::Remove(a) => remove(&a),
        SectorsCommand::Terminate(a) => terminate(&a),
        SectorsCommand::Extend(a) => extend(&a),
    }
}

fn pledge(a: &PledgeArgs) -> anyhow::Result<()> {
    let client = a.client.api.client()?;
    let pledged = block_on(client.pledge(a.count))?.map_err(provider_client_error)?;
    if !a.wait {
        if a.client.json {
            return print_json(&pledged);
        }
        let numbers: Vec<String> = pledged.sectors.iter().map(u64::to_string).collect();
        outln!("pledged sectors: {}", numbers.join(", "));
        outln!("watch them with `lode sectors list`");
        return Ok(());
    }
    if !a.client.json {
        let numbers: Vec<String> = pledged.sectors.iter().map(u64::to_string).collect();
        eprintln!("pledged sectors: {}", numbers.join(", "));
    }
    let bar = if a.client.json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(pledged.sectors.len() as u64);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {pos}/{len} sectors proving  {wide_msg}",
        ) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    };
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    let done = block_on(async {
        loop {
            let listed = client.pipeline().await.map_err(provider_client_error)?;
            let mine: Vec<&PipelineSector> = listed
                .sectors
                .iter()
                .filter(|s| pledged.sectors.contains(&s.sector_number))
                .collect();
            let proving = mine
                .iter()
                .filter(|s| s.state == SectorState::Proving)
                .count();
            bar.set_position(proving as u64);
            let mut states: BTreeMap<&str, usize> = BTreeMap::new();
            for s in &mine {
                *states.entry(s.state.name()).or_default() += 1;
            }
            let summary: Vec<String> = states.iter().map(|(k, v)| format!("{k} {v}")).collect();
            bar.set_message(summary.join(", "));
            if let Some(dead) = mine.iter().find(|s| s.state.is_final()) {
                anyhow::bail!(
                    "sector {} ended {}: {}",
                    dead.sector_number,
                    dead.state,
                    dead.last_error.as_deref().unwrap_or("no reason recorded")
                );
            }
            if proving == pledged.sectors.len() {
                return Ok(listed);
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "{} of {} sectors proving after {} s ({}); they keep going: `lode sectors list`",
                    proving,
                    pledged.sectors.len(),
                    a.timeout,
                    summary.join(", ")
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })??;
    bar.finish_and_clear();
    if a.client.json {
        let sectors: Vec<&PipelineSector> = done
            .sectors
            .iter()
            .filter(|s| pledged.sectors.contains(&s.sector_number))
            .collect();
        return print_json(&sectors);
    }
    outln!("{} sectors proving", pledged.sectors.len());
    Ok(())
}

fn list(c: &SectorsClientArgs) -> anyhow::Result<()> {
    let client = c.api.client()?;
    let (pipeline, sectors) =
        block_on(async { (client.pipeline().await, client.sectors().await) })?;
    let pipeline = pipeline.map_err(provider_client_error)?;
    let sectors = sectors.map_err(provider_client_error)?;
    if c.json {
        return print_json(&serde_json::json!({ "pipeline": pipeline, "sectors": sectors }));
    }
    out!("{}", list_text(&pipeline, &sectors));
    Ok(())
}

/// `lode sectors list`'s text: one row per sector in the pipeline, the store or on chain (the
/// rows of the provider's dashboard).
fn list_text(pipeline: &PipelineSectors, sectors: &ProviderSectors) -> String {
    let joined = sector_rows(pipeline, sectors);
    let dash = || "-".to_string();
    let rows: Vec<Vec<String>> = joined
        .iter()
        .map(|r| {
            vec![
                r.sector_number.to_string(),
                r.state.map_or_else(dash, |s| s.name().to_string()),
                r.chain_status.as_ref().map_or_else(dash, |c| {
                    if r.held_faulty {
                        format!("{c} (held)")
                    } else {
                        c.clone()
                    }
                }),
                match (r.deadline, r.partition) {
                    (Some(d), Some(p)) => format!("{d}/{p}"),
                    _ => dash(),
                },
                r.activation.map_or_else(dash, |a| a.to_string()),
                r.expiration.map_or_else(dash, |e| e.to_string()),
                r.files(),
                r.failures.map_or_else(dash, |f| f.to_string()),
                r.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "ID",
            "State",
            "OnChain",
            "Deadline/Partition",
            "Activation",
            "Expiration",
            "Files",
            "Retries",
            "Last error",
        ],
        &rows,
    );
    if joined.is_empty() {
        out.push_str("no sectors: pledge one with `lode sectors pledge`\n");
    }
    if let Some(why) = &pipeline.disabled {
        out.push_str(&format!("the sealing pipeline does not run: {why}\n"));
    }
    if let Some(e) = &sectors.node_error {
        out.push_str(&format!("the node did not answer: {e}\n"));
    }
    if let Some(e) = &sectors.cluster_error {
        out.push_str(&format!(
            "the cluster's location index could not be read: {e}\n"
        ));
    }
    out
}

fn status(a: &SectorArgs) -> anyhow::Result<()> {
    let client = a.client.api.client()?;
    let st = block_on(client.sector_status(a.sector))?.map_err(provider_client_error)?;
    if a.client.json {
        return print_json(&st);
    }
    out!("{}", status_text(&st));
    Ok(())
}

/// `lode sectors status`'s text.
fn status_text(st: &SectorStatus) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<14}{v}\n"));
    line("Sector:", st.sector_number.to_string());
    match &st.pipeline {
        Some(p) => {
            line("State:", p.state.name().to_string());
            line("Kind:", format!("{:?}", p.kind));
            line("Retries:", p.failures.to_string());
            if let Some(e) = &p.last_error {
                line("Last error:", e.clone());
            }
            if let Some(t) = p.retry_at {
                line("Retry at:", format!("unix {t}"));
            }
            if let Some(w) = &p.waiting {
                line("Waiting:", w.clone());
            }
            if let Some(d) = &p.dir {
                line("Directory:", d.clone());
            }
            if let Some(e) = p.ticket_epoch {
                line("Ticket epoch:", e.to_string());
            }
            if let Some(c) = &p.comm_r {
                line("CommR:", c.clone());
            }
            if let Some(m) = &p.pre_commit {
                line("PreCommit:", m.clone());
            }
            if let Some(m) = &p.prove_commit {
                line("ProveCommit:", m.clone());
            }
            if let Some(m) = &p.terminate {
                line("Terminate:", m.clone());
            }
        }
        None => line("State:", "- (not sealed by the pipeline)".to_string()),
    }
    if let Some(s) = &st.sector {
        line(
            "Files:",
            match (&s.dir, s.readable) {
                (Some(d), true) => format!("{d} (readable)"),
                (Some(d), false) => format!("{d} (NOT readable)"),
                (None, _) => match &s.worker {
                    Some(w) => format!("on worker {w} of the cluster (not in this store)"),
                    None => "not in the store".to_string(),
                },
            },
        );
        if let Some(c) = &s.chain {
            line(
                "OnChain:",
                format!(
                    "{}{}, deadline {} partition {}, activation {}, expiration {}",
                    c.status,
                    if s.held_faulty { " (held)" } else { "" },
                    c.deadline,
                    c.partition,
                    c.activation,
                    c.expiration
                ),
            );
        }
    }
    if let Some(t) = &st.termination {
        line(
            "Termination:",
            match (t.executed_at, &t.fee, &t.error) {
                (None, _, _) => format!("{} (not executed yet)", t.message),
                (Some(e), _, Some(err)) => format!("{} refused at epoch {e}: {err}", t.message),
                (Some(e), Some(fee), None) => format!("{} at epoch {e}, fee {fee}", t.message),
                (Some(e), None, None) => format!("{} at epoch {e}", t.message),
            },
        );
    }
    if let Some(p) = &st.pipeline
        && !p.history.is_empty()
    {
        out.push_str("History:\n");
        for h in &p.history {
            out.push_str(&format!(
                "  unix {}  {} -> {}  {}\n",
                h.at,
                h.from.name(),
                h.to.name(),
                h.note
            ));
        }
    }
    out
}

fn remove(a: &SectorArgs) -> anyhow::Result<()> {
    let client = a.client.api.client()?;
    let r = block_on(client.remove_sector(a.sector))?.map_err(provider_client_error)?;
    if a.client.json {
        return print_json(&r);
    }
    outln!(
        "sector {} is {}: its files are deleted next",
        r.sector_number,
        r.state
    );
    Ok(())
}

fn terminate(a: &TerminateArgs) -> anyhow::Result<()> {
    if !a.really_do_it {
        anyhow::bail!(
            "terminating sector {} ends it on chain for good: the chain charges the termination fee, releases its pledge and removes its power. Pass --really-do-it to go ahead",
            a.sector
        );
    }
    let client = a.client.api.client()?;
    let r = block_on(client.terminate_sector(a.sector))?.map_err(provider_client_error)?;
    if a.no_wait {
        if a.client.json {
            return print_json(&r);
        }
        outln!(
            "sector {} is {}: the pipeline sends the termination once its deadline allows (`lode sectors status {}`)",
            r.sector_number,
            r.state,
            r.sector_number
        );
        return Ok(());
    }
    if !a.client.json {
        eprintln!(
            "sector {} is {}: waiting for the chain to terminate it",
            r.sector_number, r.state
        );
    }
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    let st = block_on(async {
        loop {
            let st = client
                .sector_status(a.sector)
                .await
                .map_err(provider_client_error)?;
            if st
                .pipeline
                .as_ref()
                .is_some_and(|p| p.state == SectorState::Terminated)
            {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "sector {} is not terminated after {} s{}; the pipeline keeps trying: `lode sectors status {}`",
                    a.sector,
                    a.timeout,
                    st.termination
                        .as_ref()
                        .map(|t| format!(" (message {})", t.message))
                        .unwrap_or_default(),
                    a.sector
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })??;
    if a.client.json {
        return print_json(&st);
    }
    out!("{}", terminated_text(&st));
    Ok(())
}

/// `lode sectors terminate`'s text once the sector is terminated.
fn terminated_text(st: &SectorStatus) -> String {
    let mut out = format!(
        "sector {} terminated
",
        st.sector_number
    );
    match &st.termination {
        Some(t) => {
            out.push_str(&format!(
                "message:  {}
",
                t.message
            ));
            if let Some(e) = t.executed_at {
                out.push_str(&format!(
                    "executed: epoch {e}
"
                ));
            }
            out.push_str(&format!(
                "fee:      {}
",
                t.fee
                    .map_or_else(|| "unknown".to_string(), |f| f.to_string())
            ));
        }
        None => out.push_str(
            "no termination message: the sector had already left the chain (expired or terminated)
",
        ),
    }
    out
}

fn extend(a: &ExtendArgs) -> anyhow::Result<()> {
    let client = a
        .client
        .api
        .client_with_timeout(Duration::from_secs(15 * 60))?;
    let expiration = match (a.expiration, a.by) {
        (Some(e), _) => e,
        (None, Some(by)) => {
            let mut latest = 0u64;
            for &n in &a.sectors {
                let st = block_on(client.sector_status(n))?.map_err(provider_client_error)?;
                let Some(chain) = st.sector.as_ref().and_then(|s| s.chain.as_ref()) else {
                    anyhow::bail!(
                        "sector {n} is not live on chain: only live sectors are extended"
                    );
                };
                latest = latest.max(chain.expiration);
            }
            latest.saturating_add(by)
        }
        (None, None) => anyhow::bail!("give --expiration EPOCH or --by EPOCHS"),
    };
    let e =
        block_on(client.extend_sectors(&a.sectors, expiration))?.map_err(provider_client_error)?;
    if a.client.json {
        return print_json(&e);
    }
    outln!(
        "extended {} sector(s) to epoch {} (message {}, executed at epoch {})",
        e.sectors.len(),
        e.new_expiration,
        hex::encode(e.message),
        e.executed_at
    );
    for s in &e.sectors {
        outln!(
            "  sector {}: {} -> {}",
            s.sector_number,
            s.old_expiration,
            e.new_expiration
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use lode_provider::pipeline::SectorKind;
    use lode_provider::rpc::{ChainSector, ProviderSector};

    use super::*;

    fn record(n: u64, state: SectorState, error: Option<&str>) -> PipelineSector {
        PipelineSector {
            sector_number: n,
            kind: SectorKind::CommittedCapacity,
            state,
            failures: u32::from(error.is_some()),
            last_error: error.map(str::to_string),
            retry_at: None,
            created_at: 1,
            updated_at: 2,
            ticket_epoch: None,
            comm_r: None,
            pre_commit: None,
            prove_commit: None,
            terminate: None,
            history: Vec::new(),
            waiting: None,
            dir: None,
        }
    }

    #[test]
    fn list_joins_the_pipeline_and_the_chain() {
        let pipeline = PipelineSectors {
            disabled: None,
            sectors: vec![
                record(4, SectorState::Proving, None),
                record(5, SectorState::PreCommit1, Some("disk full")),
            ],
        };
        let sectors = ProviderSectors {
            sectors: vec![
                ProviderSector {
                    sector_number: 0,
                    dir: Some("/s/0".into()),
                    readable: true,
                    chain: Some(ChainSector {
                        status: "active".into(),
                        deadline: 3,
                        partition: 0,
                        activation: 10,
                        expiration: 5000,
                    }),
                    held_faulty: false,
                    worker: None,
                },
                ProviderSector {
                    sector_number: 4,
                    dir: Some("/s/4".into()),
                    readable: true,
                    chain: Some(ChainSector {
                        status: "faulty".into(),
                        deadline: 7,
                        partition: 1,
                        activation: 90,
                        expiration: 6000,
                    }),
                    held_faulty: true,
                    worker: None,
                },
                ProviderSector {
                    sector_number: 6,
                    dir: None,
                    readable: false,
                    chain: Some(ChainSector {
                        status: "active".into(),
                        deadline: 2,
                        partition: 0,
                        activation: 120,
                        expiration: 7000,
                    }),
                    held_faulty: false,
                    worker: Some("wB".into()),
                },
            ],
            node_error: None,
            cluster_error: None,
        };
        let text = list_text(&pipeline, &sectors);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("ID  State"), "{text}");
        assert!(lines[0].contains("Files"), "{text}");
        for (line, cells) in [
            (lines[1], vec!["0", "-", "active", "3/0", "5000", "store"]),
            (
                lines[2],
                vec!["4", "Proving", "faulty (held)", "7/1", "6000", "store"],
            ),
            (lines[3], vec!["5", "PreCommit1", "disk full"]),
            (lines[4], vec!["6", "active", "2/0", "7000", "worker wB"]),
        ] {
            for c in cells {
                assert!(line.contains(c), "{c:?} in {line:?}");
            }
        }
        let off = PipelineSectors {
            disabled: Some("PoRep parameters missing".into()),
            sectors: Vec::new(),
        };
        let empty = ProviderSectors {
            sectors: Vec::new(),
            node_error: Some("refused".into()),
            cluster_error: Some("connection refused".into()),
        };
        let text = list_text(&off, &empty);
        assert!(text.contains("no sectors: pledge one"), "{text}");
        assert!(
            text.contains("does not run: PoRep parameters missing"),
            "{text}"
        );
        assert!(text.contains("the node did not answer: refused"), "{text}");
        assert!(
            text.contains("location index could not be read: connection refused"),
            "{text}"
        );
    }

    #[test]
    fn status_shows_the_record_and_its_history() {
        let mut r = record(6, SectorState::WaitSeed, None);
        r.comm_r = Some("ab".repeat(32));
        r.history
            .push(lode_provider::pipeline::state::HistoryEntry {
                at: 100,
                from: SectorState::PreCommitLanded,
                to: SectorState::WaitSeed,
                note: "Done".into(),
            });
        let text = status_text(&SectorStatus {
            sector_number: 6,
            pipeline: Some(r),
            sector: None,
            termination: None,
        });
        assert!(text.contains("State:        WaitSeed"), "{text}");
        assert!(
            text.contains(&format!("CommR:        {}", "ab".repeat(32))),
            "{text}"
        );
        assert!(text.contains("PreCommitLanded -> WaitSeed  Done"), "{text}");
    }
}
