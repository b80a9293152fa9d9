//! `lode proving`: a running provider's proving, through its API — the proving period and the
//! current deadline (`info`), every deadline (`deadlines`), one deadline's partitions and sectors
//! (`deadline N`), the faulty sectors (`faults`) and the proving check run now (`check [N]`).

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use lode_provider::dashboard::{FaultRow, fault_rows};
use lode_provider::rpc::{ProviderSector, ProviderSectors, ProvingCheck};
use lode_provider::status::{CheckFailureStatus, DeadlineStatus, ProvingStatus};
use serde_json::json;

use super::common::{ProviderApiArgs, block_on, print_json, provider_client_error, table};

/// `lode proving` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ProvingCommand {
    /// The proving period and the current deadline, with the miner's sectors, faults and
    /// recoveries, windows missed and the safety margin (like `lotus-miner proving info`).
    #[command(after_help = "Examples:
  lode proving info --devnet ~/.local/share/lode/devnet
  lode proving info --dir mynet/miner-0 --json")]
    Info(ProvingArgs),
    /// Every deadline holding the miner's partitions: window, fault cutoff, the epoch the proof
    /// must be submitted by, sectors, faults, recoveries, and what the prover did in the window.
    #[command(after_help = "Examples:
  lode proving deadlines --devnet ~/.local/share/lode/devnet
  lode proving deadlines --api 127.0.0.1:2345 --json")]
    Deadlines(ProvingArgs),
    /// One deadline: its window and, per partition, its sectors with their status on chain,
    /// whether they are readable and why their last proving check failed.
    #[command(after_help = "Examples:
  lode proving deadline 3 --devnet ~/.local/share/lode/devnet
  lode proving deadline 3 --dir mynet/miner-0 --json")]
    Deadline(DeadlineArgs),
    /// The faulty sectors (faulty or recovering on chain), with their deadline and partition,
    /// and the sectors whose last proving check failed, with the reason.
    #[command(after_help = "Examples:
  lode proving faults --devnet ~/.local/share/lode/devnet
  lode proving faults --dir mynet/miner-0 --json")]
    Faults(ProvingArgs),
    /// Runs the proving check now on the live sectors of every deadline (or of deadline N):
    /// each sector's files must be readable and a few challenged leaves must open against its
    /// comm_r. Exit status 1 when a sector fails.
    #[command(after_help = "Examples:
  lode proving check --devnet ~/.local/share/lode/devnet
  lode proving check 3 --dir mynet/miner-0 --json")]
    Check(CheckArgs),
}

/// The provider flags and the output flag of every `lode proving` command.
#[derive(Debug, Args)]
pub(crate) struct ProvingArgs {
    #[command(flatten)]
    api: ProviderApiArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lode proving deadline`.
#[derive(Debug, Args)]
pub(crate) struct DeadlineArgs {
    /// The deadline's index in the proving period.
    #[arg(value_name = "N")]
    index: u64,
    #[command(flatten)]
    common: ProvingArgs,
}

/// Arguments of `lode proving check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// Only this deadline's sectors (default: every deadline's).
    #[arg(value_name = "N")]
    index: Option<u64>,
    #[command(flatten)]
    common: ProvingArgs,
}

/// Runs a `lode proving` subcommand.
pub(crate) fn run(cmd: ProvingCommand) -> anyhow::Result<std::process::ExitCode> {
    let ok = std::process::ExitCode::SUCCESS;
    match cmd {
        ProvingCommand::Info(a) => info(&a).map(|()| ok),
        ProvingCommand::Deadlines(a) => deadlines(&a).map(|()| ok),
        ProvingCommand::Deadline(a) => deadline(&a).map(|()| ok),
        ProvingCommand::Faults(a) => faults(&a).map(|()| ok),
        ProvingCommand::Check(a) => check(&a),
    }
}

fn status(a: &ProvingArgs) -> anyhow::Result<ProvingStatus> {
    let client = a.api.client()?;
    block_on(client.proving())?.map_err(provider_client_error)
}

fn status_and_sectors(a: &ProvingArgs) -> anyhow::Result<(ProvingStatus, ProviderSectors)> {
    let client = a.api.client()?;
    let (st, sectors) = block_on(async { (client.proving().await, client.sectors().await) })?;
    Ok((
        st.map_err(provider_client_error)?,
        sectors.map_err(provider_client_error)?,
    ))
}

/// Live, faulty and recovering sectors over every deadline.
fn totals(st: &ProvingStatus) -> (u64, u64, u64) {
    st.deadlines.iter().fold((0, 0, 0), |(s, f, r), d| {
        (
            s.saturating_add(d.sectors),
            f.saturating_add(d.faults),
            r.saturating_add(d.recoveries),
        )
    })
}

fn info(a: &ProvingArgs) -> anyhow::Result<()> {
    let st = status(a)?;
    if a.json {
        let (sectors, faults, recoveries) = totals(&st);
        return print_json(&json!({
            "actor": st.actor.to_string(),
            "head_epoch": st.head_epoch,
            "period": st.period,
            "deadlines_with_sectors": st.deadlines.len(),
            "sectors": sectors,
            "faults": faults,
            "recoveries": recoveries,
            "held_faults": st.held_faults,
            "failed_checks": st.check_failures.len(),
            "missed": st.missed,
            "margin_epochs": st.margin_epochs,
            "last_error": st.last_error,
        }));
    }
    out!("{}", info_text(&st));
    Ok(())
}

/// `lode proving info`'s text.
fn info_text(st: &ProvingStatus) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<23}{v}\n"));
    line("Miner:", st.actor.to_string());
    let Some(head) = st.head_epoch else {
        line(
            "Head epoch:",
            "the prover has not looked at the chain yet".into(),
        );
        return out;
    };
    line("Head epoch:", head.to_string());
    match &st.period {
        Some(p) => {
            let length = p.deadlines.saturating_mul(p.challenge_window);
            line(
                "Proving period start:",
                format!(
                    "{} ({} deadlines of {} epochs; the next period starts at {})",
                    p.start,
                    p.deadlines,
                    p.challenge_window,
                    p.start.saturating_add(length)
                ),
            );
            let current = match (p.current_deadline, p.current_open, p.current_close) {
                (Some(i), Some(open), Some(close)) => {
                    let here = st.deadlines.iter().find(|d| d.index == i);
                    let sectors = here.map_or(0, |d| d.sectors);
                    format!("{i} (window {open}-{close}, {sectors} sectors)")
                }
                _ => "none yet (the miner's first proving period has not started)".into(),
            };
            line("Current deadline:", current);
        }
        None => line(
            "Proving period:",
            "unknown (no deadline holds a partition of this miner)".into(),
        ),
    }
    let (sectors, faults, recoveries) = totals(st);
    line("Deadlines with sectors:", st.deadlines.len().to_string());
    line(
        "Sectors:",
        format!("{sectors} live, {faults} faulty, {recoveries} recovering"),
    );
    if !st.held_faults.is_empty() {
        let held: Vec<String> = st.held_faults.iter().map(u64::to_string).collect();
        line("Held faulty:", held.join(", "));
    }
    line(
        "Failed checks:",
        if st.check_failures.is_empty() {
            "none".into()
        } else {
            format!(
                "{} (`lode proving faults` says why)",
                st.check_failures.len()
            )
        },
    );
    line("Windows missed:", st.missed.to_string());
    line(
        "Safety margin:",
        format!(
            "{} epochs: each proof is submitted before its window's last {} epochs",
            st.margin_epochs, st.margin_epochs
        ),
    );
    if let Some(e) = &st.last_error {
        line("Last round failed:", e.clone());
    }
    out
}

fn deadlines(a: &ProvingArgs) -> anyhow::Result<()> {
    let st = status(a)?;
    if a.json {
        return print_json(&st.deadlines);
    }
    out!("{}", deadlines_text(&st));
    Ok(())
}

/// `lode proving deadlines`' text: one row per deadline holding partitions.
fn deadlines_text(st: &ProvingStatus) -> String {
    let mut out = match st.head_epoch {
        Some(h) => format!(
            "Miner: {}  head epoch {h}  margin {} epochs  windows missed: {}\n",
            st.actor, st.margin_epochs, st.missed
        ),
        None => format!(
            "Miner: {}  the prover has not looked at the chain yet\n",
            st.actor
        ),
    };
    let rows: Vec<Vec<String>> = st
        .deadlines
        .iter()
        .map(|d| {
            vec![
                format!("{}{}", d.index, if d.current { " (current)" } else { "" }),
                format!("{}-{}", d.open, d.close),
                d.fault_cutoff.to_string(),
                d.submit_by.to_string(),
                d.partitions.to_string(),
                d.sectors.to_string(),
                d.faults.to_string(),
                d.recoveries.to_string(),
                format!("{}/{}", d.posted, d.partitions),
                d.state.as_str().to_string(),
                d.last_result
                    .map_or("-".to_string(), |r| r.as_str().to_string()),
                d.missed.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "Deadline",
            "Window",
            "Fault cutoff",
            "Submit by",
            "Partitions",
            "Sectors",
            "Faults",
            "Recovering",
            "Posted",
            "State",
            "Previous",
            "Missed",
        ],
        &rows,
    ));
    if st.deadlines.is_empty() && st.head_epoch.is_some() {
        out.push_str("no deadline holds a partition of this miner\n");
    }
    out
}

fn deadline(a: &DeadlineArgs) -> anyhow::Result<()> {
    let (st, sectors) = status_and_sectors(&a.common)?;
    if let Some(p) = &st.period
        && a.index >= p.deadlines
    {
        anyhow::bail!(
            "no deadline {}: a proving period has deadlines 0 to {}",
            a.index,
            p.deadlines.saturating_sub(1)
        );
    }
    let view = DeadlineReport::new(a.index, &st, &sectors);
    if a.common.json {
        return print_json(&view.json());
    }
    out!("{}", view.text());
    Ok(())
}

/// One deadline as `lode proving deadline` shows it.
struct DeadlineReport<'a> {
    index: u64,
    status: Option<&'a DeadlineStatus>,
    /// Per partition, its sectors (number order).
    partitions: BTreeMap<u64, Vec<&'a ProviderSector>>,
    failures: BTreeMap<u64, &'a CheckFailureStatus>,
    node_error: Option<&'a str>,
}

impl<'a> DeadlineReport<'a> {
    fn new(index: u64, st: &'a ProvingStatus, sectors: &'a ProviderSectors) -> Self {
        let mut partitions: BTreeMap<u64, Vec<&ProviderSector>> = BTreeMap::new();
        for s in &sectors.sectors {
            if let Some(c) = s.chain.as_ref().filter(|c| c.deadline == index) {
                partitions.entry(c.partition).or_default().push(s);
            }
        }
        DeadlineReport {
            index,
            status: st.deadlines.iter().find(|d| d.index == index),
            partitions,
            failures: st
                .check_failures
                .iter()
                .map(|f| (f.sector_number, f))
                .collect(),
            node_error: sectors.node_error.as_deref(),
        }
    }

    fn json(&self) -> serde_json::Value {
        let partitions: Vec<serde_json::Value> = self
            .partitions
            .iter()
            .map(|(index, sectors)| {
                let sectors: Vec<serde_json::Value> = sectors
                    .iter()
                    .map(|s| {
                        json!({
                            "sector_number": s.sector_number,
                            "status": s.chain.as_ref().map(|c| c.status.clone()),
                            "readable": s.readable,
                            "held_faulty": s.held_faulty,
                            "check_failure": self.failures.get(&s.sector_number).map(|f| f.reason.clone()),
                        })
                    })
                    .collect();
                json!({ "index": index, "sectors": sectors })
            })
            .collect();
        json!({
            "index": self.index,
            "deadline": self.status,
            "partitions": partitions,
            "node_error": self.node_error,
        })
    }

    fn text(&self) -> String {
        let mut out = match self.status {
            Some(d) => format!(
                "Deadline {}{}: window {}-{}, challenge {}, fault cutoff {}, submit by {}; {}, {}/{} partitions posted\n",
                d.index,
                if d.current { " (current)" } else { "" },
                d.open,
                d.close,
                d.challenge,
                d.fault_cutoff,
                d.submit_by,
                d.state.as_str(),
                d.posted,
                d.partitions
            ),
            None => format!("Deadline {}\n", self.index),
        };
        if self.partitions.is_empty() {
            out.push_str(&format!(
                "deadline {} holds no partition of this miner\n",
                self.index
            ));
        }
        for (index, sectors) in &self.partitions {
            let faulty = sectors
                .iter()
                .filter(|s| s.chain.as_ref().is_some_and(|c| c.status != "active"))
                .count();
            out.push_str(&format!(
                "Partition {index}: {} sectors, {faulty} not active\n",
                sectors.len()
            ));
            let rows: Vec<Vec<String>> = sectors
                .iter()
                .map(|s| {
                    let status = s.chain.as_ref().map_or("-".into(), |c| c.status.clone());
                    vec![
                        format!("  {}", s.sector_number),
                        if s.held_faulty {
                            format!("{status} (held)")
                        } else {
                            status
                        },
                        if s.readable { "yes" } else { "no" }.to_string(),
                        self.failures
                            .get(&s.sector_number)
                            .map_or("-".into(), |f| f.reason.clone()),
                    ]
                })
                .collect();
            out.push_str(&table(
                &["  Sector", "Status", "Readable", "Last check failure"],
                &rows,
            ));
        }
        if let Some(e) = self.node_error {
            out.push_str(&format!("the node did not answer: {e}\n"));
        }
        out
    }
}

fn faults(a: &ProvingArgs) -> anyhow::Result<()> {
    let (st, sectors) = status_and_sectors(a)?;
    let rows = fault_rows(&st, &sectors);
    if a.json {
        return print_json(&rows);
    }
    out!("{}", faults_text(&rows, sectors.node_error.as_deref()));
    Ok(())
}

/// `lode proving faults`' text.
fn faults_text(rows: &[FaultRow], node_error: Option<&str>) -> String {
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.sector_number.to_string(),
                opt(r.deadline),
                opt(r.partition),
                r.status.clone().unwrap_or_else(|| "-".into()),
                if r.held_faulty { "yes" } else { "no" }.to_string(),
                r.check_failure.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "Sector",
            "Deadline",
            "Partition",
            "Status",
            "Held",
            "Last check failure",
        ],
        &cells,
    );
    if rows.is_empty() {
        out.push_str("no faulty sectors\n");
    }
    if let Some(e) = node_error {
        out.push_str(&format!("the node did not answer: {e}\n"));
    }
    out
}

fn check(a: &CheckArgs) -> anyhow::Result<std::process::ExitCode> {
    let client = a.common.api.client()?;
    let result = block_on(client.check(a.index))?.map_err(provider_client_error)?;
    if a.common.json {
        print_json(&result)?;
    } else {
        out!("{}", check_text(&result));
    }
    Ok(if result.sectors.iter().all(|s| s.ok) {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// `lode proving check`'s text.
fn check_text(c: &ProvingCheck) -> String {
    let rows: Vec<Vec<String>> = c
        .sectors
        .iter()
        .map(|s| {
            vec![
                s.sector_number.to_string(),
                s.deadline.to_string(),
                s.partition.to_string(),
                if s.faulty { "yes" } else { "no" }.to_string(),
                if s.ok { "ok" } else { "FAILED" }.to_string(),
                s.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "Sector",
            "Deadline",
            "Partition",
            "Faulty",
            "Check",
            "Reason",
        ],
        &rows,
    );
    let failed = c.sectors.iter().filter(|s| !s.ok).count();
    let which = c
        .deadline
        .map_or("every deadline".to_string(), |d| format!("deadline {d}"));
    out.push_str(&format!(
        "{} sectors of {which} checked at epoch {} in {:.3} s: {}\n",
        c.sectors.len(),
        c.head_epoch,
        c.seconds,
        if failed == 0 {
            "all passed".to_string()
        } else {
            format!("{failed} failed")
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use lode_chain::types::ActorId;
    use lode_provider::rpc::{ChainSector, SectorCheck};
    use lode_provider::status::{PostState, ProvingPeriod};

    use super::*;

    fn chain(status: &str, deadline: u64, partition: u64) -> Option<ChainSector> {
        Some(ChainSector {
            status: status.into(),
            deadline,
            partition,
            activation: 0,
            expiration: 5000,
        })
    }

    fn sector(n: u64, chain: Option<ChainSector>, readable: bool) -> ProviderSector {
        ProviderSector {
            sector_number: n,
            dir: readable.then(|| format!("/s/{n}")),
            readable,
            chain,
            held_faulty: false,
            worker: None,
        }
    }

    fn status() -> ProvingStatus {
        ProvingStatus {
            actor: ActorId(1000),
            head_epoch: Some(57),
            updated_at: Some(1),
            deadlines: vec![DeadlineStatus {
                index: 3,
                open: 55,
                close: 60,
                challenge: 53,
                fault_cutoff: 49,
                submit_by: 58,
                current: true,
                partitions: 1,
                sectors: 2,
                faults: 1,
                state: PostState::Submitted,
                ..DeadlineStatus::default()
            }],
            margin_epochs: 2,
            period: Some(ProvingPeriod {
                start: 40,
                deadlines: 48,
                challenge_window: 5,
                current_deadline: Some(3),
                current_open: Some(55),
                current_close: Some(60),
            }),
            check_failures: vec![CheckFailureStatus {
                sector_number: 1,
                deadline: 3,
                partition: 0,
                epoch: 45,
                reason: "challenged leaves do not open: bad".into(),
            }],
            ..ProvingStatus::default()
        }
    }

    #[test]
    fn info_names_the_period_the_current_deadline_and_the_counts() {
        let text = info_text(&status());
        for want in [
            "Proving period start:  40 (48 deadlines of 5 epochs; the next period starts at 280)",
            "Current deadline:      3 (window 55-60, 2 sectors)",
            "Sectors:               2 live, 1 faulty, 0 recovering",
            "Failed checks:         1",
            "Safety margin:         2 epochs",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
    }

    #[test]
    fn deadlines_show_the_cutoff_and_the_submission_limit() {
        let text = deadlines_text(&status());
        let row = text.lines().nth(2).unwrap_or_default();
        for cell in ["3 (current)", "55-60", "49", "58", "submitted"] {
            assert!(row.contains(cell), "{row}");
        }
    }

    #[test]
    fn a_deadline_lists_its_partitions_and_faults_carry_their_reasons() {
        let st = status();
        let sectors = ProviderSectors {
            sectors: vec![
                sector(0, chain("active", 3, 0), true),
                sector(1, chain("faulty", 3, 0), true),
                sector(2, chain("active", 4, 0), true),
            ],
            node_error: None,
            cluster_error: None,
        };
        let report = DeadlineReport::new(3, &st, &sectors);
        let text = report.text();
        assert!(
            text.starts_with("Deadline 3 (current): window 55-60"),
            "{text}"
        );
        assert!(
            text.contains("Partition 0: 2 sectors, 1 not active"),
            "{text}"
        );
        assert!(
            !text.contains("\n  2 "),
            "sector 2 is in deadline 4:\n{text}"
        );
        assert_eq!(
            report.json()["partitions"][0]["sectors"][1]["check_failure"],
            "challenged leaves do not open: bad"
        );
        let rows = fault_rows(&st, &sectors);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].sector_number, rows[0].deadline, rows[0].partition),
            (1, Some(3), Some(0))
        );
        assert!(faults_text(&rows, None).contains("challenged leaves do not open"));
        assert!(faults_text(&[], None).contains("no faulty sectors"));
    }

    #[test]
    fn check_counts_failures() {
        let c = ProvingCheck {
            head_epoch: 57,
            deadline: Some(3),
            sectors: vec![
                SectorCheck {
                    sector_number: 0,
                    deadline: 3,
                    partition: 0,
                    faulty: false,
                    ok: true,
                    reason: None,
                },
                SectorCheck {
                    sector_number: 1,
                    deadline: 3,
                    partition: 0,
                    faulty: false,
                    ok: false,
                    reason: Some("its replica is missing".into()),
                },
            ],
            seconds: 0.004,
        };
        let text = check_text(&c);
        assert!(text.contains("FAILED  its replica is missing"), "{text}");
        assert!(
            text.ends_with("2 sectors of deadline 3 checked at epoch 57 in 0.004 s: 1 failed\n"),
            "{text}"
        );
    }
}
