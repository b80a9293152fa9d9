//! The provider's dashboard: `GET /` (an HTML page, rendered on the server, reloading itself
//! every [`REFRESH_SECONDS`]) and `GET /api/dashboard.json` (the same [`Dashboard`] as JSON), on
//! the provider's HTTP address beside `GET /metrics` (`metrics` in `config.toml`, `http` of each
//! miner in `devnet.json`).
//!
//! [`dashboard`] builds one [`Dashboard`] from the functions the API's methods run
//! (`provider_info`, `provider_sectors`, `provider_pipeline`, `provider_proving`,
//! `provider_mining`) and from the node (`state_minerPower`, `state_minerInfo`), so the page
//! shows what `lode provider info`, `lode sectors list` and `lode proving deadlines` print;
//! [`render`] writes it as HTML, every string escaped ([`escape`]). No script, no build step.
//! Like the API, the page reads what the loops publish and never waits on them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::Html;
use axum::routing::get;
use lode_chain::types::{Epoch, TokenAmount};
use lode_node::rpc::types::{MinerInfoView, MinerPowerInfo};
use serde::{Deserialize, Serialize};

use crate::api::NodeApi;
use crate::pipeline::SectorState;
use crate::pipeline::state::ALL_STATES;
use crate::rpc::{
    MiningInfo, PipelineSector, PipelineSectors, ProviderInfo, ProviderRpc, ProviderSectors,
};
use crate::status::{DeadlineStatus, ProvingStatus};

/// Seconds between two reloads of the page.
pub const REFRESH_SECONDS: u64 = 5;

/// The path of the JSON form.
pub const JSON_PATH: &str = "/api/dashboard.json";

/// Finished cluster tasks the dashboard lists (the newest).
pub const CLUSTER_HISTORY: usize = 20;

/// Cluster tasks the page shows (the JSON has them all).
pub const CLUSTER_TASK_ROWS: usize = 100;

/// How long the dashboard waits for the cluster's database before it shows the page without it.
pub const CLUSTER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Sectors in one pipeline state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCount {
    /// The state.
    pub state: SectorState,
    /// Its sectors.
    pub count: u64,
}

/// One row of the sector table: `lode sectors list`'s row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorRow {
    /// Sector number.
    pub sector_number: u64,
    /// Its pipeline state (`null`: sealed outside the pipeline, e.g. at genesis).
    pub state: Option<SectorState>,
    /// Its status on chain (`active`, `unproven`, `faulty`, `recovering`; `null`: not live on
    /// chain, or the node did not answer).
    pub chain_status: Option<String>,
    /// Declared faulty by the operator.
    pub held_faulty: bool,
    /// Its deadline.
    pub deadline: Option<u64>,
    /// Its partition in that deadline.
    pub partition: Option<u64>,
    /// Activation epoch.
    pub activation: Option<Epoch>,
    /// Expiration epoch.
    pub expiration: Option<Epoch>,
    /// Whether its replica and tree R can be opened.
    pub readable: bool,
    /// The cluster's worker holding it, when the store does not.
    #[serde(default)]
    pub worker: Option<String>,
    /// Failures of the phase being retried.
    pub failures: Option<u32>,
    /// The pipeline's last error.
    pub last_error: Option<String>,
}

/// A sector the pipeline is working on (neither `Proving` nor final).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkingSector {
    /// Sector number.
    pub sector_number: u64,
    /// Its state.
    pub state: SectorState,
    /// Unix time it entered the state.
    pub since: u64,
    /// Failures of the phase being retried.
    pub failures: u32,
    /// Unix time before which a failed phase is not retried.
    pub retry_at: Option<u64>,
    /// The last failure's reason.
    pub last_error: Option<String>,
    /// Why it waits, as the pipeline's last look at it said (the disk space or memory a new
    /// sector needs, with the figures; a seed's epoch; a batch forming).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

/// A deadline's window and, when it holds the miner's partitions, the poster's view of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlineSlot {
    /// The deadline's index.
    pub index: u64,
    /// Its window's first epoch.
    pub open: Epoch,
    /// The first epoch after it.
    pub close: Epoch,
    /// The poster's view (`null`: no partition of the miner in it).
    pub status: Option<DeadlineStatus>,
}

/// A sector faulty or recovering on chain, or whose last proving check failed: `lode proving
/// faults`' row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRow {
    /// Sector number.
    pub sector_number: u64,
    /// Its deadline.
    pub deadline: Option<u64>,
    /// Its partition.
    pub partition: Option<u64>,
    /// Its chain status (`active` when only the check failed).
    pub status: Option<String>,
    /// Declared faulty by the operator.
    pub held_faulty: bool,
    /// Why its last proving check failed.
    pub check_failure: Option<String>,
}

/// The miner's money on chain (`state_minerInfo`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balances {
    /// The actor's balance.
    pub balance: TokenAmount,
    /// Not locked: what deposits and pledges are paid from (before fee debt).
    pub available: TokenAmount,
    /// Rewards still vesting.
    pub locked_funds: TokenAmount,
    /// Initial pledge of its live sectors.
    pub initial_pledge: TokenAmount,
    /// Pre-commit deposits.
    pub pre_commit_deposits: TokenAmount,
    /// Penalties not yet paid.
    pub fee_debt: TokenAmount,
}

impl From<&MinerInfoView> for Balances {
    fn from(i: &MinerInfoView) -> Self {
        Balances {
            balance: i.balance,
            available: i.available,
            locked_funds: i.locked_funds,
            initial_pledge: i.initial_pledge,
            pre_commit_deposits: i.pre_commit_deposits,
            fee_debt: i.fee_debt,
        }
    }
}

/// Everything the dashboard shows (`GET /api/dashboard.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dashboard {
    /// Unix time it was built.
    pub generated_at: u64,
    /// `provider_info`.
    pub info: ProviderInfo,
    /// `provider_mining`.
    pub mining: MiningInfo,
    /// Why the sealing pipeline does not run (`null` when it does).
    pub pipeline_disabled: Option<String>,
    /// Pipeline sectors per state, in pipeline order, states holding sectors only.
    pub states: Vec<StateCount>,
    /// Every sector in the pipeline, the store or on chain, by number.
    pub sectors: Vec<SectorRow>,
    /// The pipeline's sectors in working or failed states, by number.
    pub working: Vec<WorkingSector>,
    /// `provider_proving`: the poster's view of every deadline holding partitions.
    pub proving: ProvingStatus,
    /// The deadline whose window holds the next epoch.
    pub current_deadline: Option<DeadlineSlot>,
    /// The deadline after it.
    pub next_deadline: Option<DeadlineSlot>,
    /// Faulty and recovering sectors, and those whose check failed.
    pub faults: Vec<FaultRow>,
    /// `state_minerPower` (`null`: the node did not answer; see `errors`).
    pub power: Option<MinerPowerInfo>,
    /// From `state_minerInfo` (`null`: the node did not answer).
    pub balances: Option<Balances>,
    /// The cluster sealing for this provider (`[cluster]`): its workers, its unfinished tasks
    /// and the newest finished ones ([`CLUSTER_HISTORY`]), its storage paths (`null`: no
    /// cluster, or its database did not answer; see `errors`).
    #[serde(default)]
    pub cluster: Option<crate::cluster::ClusterStatus>,
    /// What could not be read, and why.
    pub errors: Vec<String>,
    /// Seconds it took to build.
    pub build_seconds: f64,
}

impl SectorRow {
    /// Where its sealed files are, as the sector tables show it: `store` (readable in this
    /// provider's store), `store (unreadable)`, `worker <name>` (kept by a worker of the
    /// cluster), or `-`.
    pub fn files(&self) -> String {
        match (&self.worker, self.readable) {
            (_, true) => "store".to_string(),
            (Some(w), false) => format!("worker {w}"),
            (None, false) => "-".to_string(),
        }
    }
}

/// The sector table: the pipeline's records joined with the store's and the chain's rows
/// (`lode sectors list`).
pub fn sector_rows(pipeline: &PipelineSectors, sectors: &ProviderSectors) -> Vec<SectorRow> {
    let records: BTreeMap<u64, &PipelineSector> = pipeline
        .sectors
        .iter()
        .map(|s| (s.sector_number, s))
        .collect();
    let stored: BTreeMap<u64, &crate::rpc::ProviderSector> = sectors
        .sectors
        .iter()
        .map(|s| (s.sector_number, s))
        .collect();
    let mut numbers: Vec<u64> = records.keys().chain(stored.keys()).copied().collect();
    numbers.sort_unstable();
    numbers.dedup();
    numbers
        .into_iter()
        .map(|n| {
            let r = records.get(&n);
            let s = stored.get(&n);
            let chain = s.and_then(|s| s.chain.as_ref());
            SectorRow {
                sector_number: n,
                state: r.map(|r| r.state),
                chain_status: chain.map(|c| c.status.clone()),
                held_faulty: s.is_some_and(|s| s.held_faulty),
                deadline: chain.map(|c| c.deadline),
                partition: chain.map(|c| c.partition),
                activation: chain.map(|c| c.activation),
                expiration: chain.map(|c| c.expiration),
                readable: s.is_some_and(|s| s.readable),
                worker: s.and_then(|s| s.worker.clone()),
                failures: r.map(|r| r.failures),
                last_error: r.and_then(|r| r.last_error.clone()),
            }
        })
        .collect()
}

/// Faulty or recovering sectors on chain, and those whose last check failed (`lode proving
/// faults`).
pub fn fault_rows(st: &ProvingStatus, sectors: &ProviderSectors) -> Vec<FaultRow> {
    let failures: BTreeMap<u64, &str> = st
        .check_failures
        .iter()
        .map(|f| (f.sector_number, f.reason.as_str()))
        .collect();
    sectors
        .sectors
        .iter()
        .filter(|s| {
            s.chain.as_ref().is_some_and(|c| c.status != "active")
                || failures.contains_key(&s.sector_number)
        })
        .map(|s| FaultRow {
            sector_number: s.sector_number,
            deadline: s.chain.as_ref().map(|c| c.deadline),
            partition: s.chain.as_ref().map(|c| c.partition),
            status: s.chain.as_ref().map(|c| c.status.clone()),
            held_faulty: s.held_faulty,
            check_failure: failures.get(&s.sector_number).map(|r| (*r).to_string()),
        })
        .collect()
}

/// The current deadline and the next from the poster's proving period (`None` before the
/// miner's first period).
pub fn deadline_slots(st: &ProvingStatus) -> (Option<DeadlineSlot>, Option<DeadlineSlot>) {
    let Some(p) = &st.period else {
        return (None, None);
    };
    let (Some(index), Some(open), Some(close)) =
        (p.current_deadline, p.current_open, p.current_close)
    else {
        return (None, None);
    };
    let status = |i: u64| st.deadlines.iter().find(|d| d.index == i).cloned();
    let next_index = index
        .checked_add(1)
        .and_then(|n| n.checked_rem(p.deadlines))
        .unwrap_or(0);
    let current = DeadlineSlot {
        index,
        open,
        close,
        status: status(index),
    };
    let next = DeadlineSlot {
        index: next_index,
        open: close,
        close: close.saturating_add(p.challenge_window),
        status: status(next_index),
    };
    (Some(current), Some(next))
}

/// Builds the dashboard of `ctx`'s provider now.
pub async fn dashboard<A: NodeApi>(ctx: &ProviderRpc<A>) -> Dashboard {
    let started = std::time::Instant::now();
    let actor = ctx.identity.actor;
    let (info, sectors, power, miner) = tokio::join!(
        crate::rpc::info(ctx),
        crate::rpc::sectors(ctx),
        ctx.api.miner_power(actor),
        ctx.api.miner_info(actor),
    );
    let mut errors = Vec::new();
    if let Some(e) = &info.node_error {
        errors.push(format!("chain_head: {e}"));
    }
    let sectors = sectors.unwrap_or_else(|e| {
        errors.push(format!("sectors: {e}"));
        ProviderSectors {
            sectors: Vec::new(),
            node_error: None,
            cluster_error: None,
        }
    });
    if let Some(e) = &sectors.node_error {
        errors.push(format!("state_minerSectors: {e}"));
    }
    if let Some(e) = &sectors.cluster_error {
        errors.push(format!("sector locations: {e}"));
    }
    let pipeline = crate::rpc::pipeline(ctx).unwrap_or_else(|e| {
        errors.push(format!("pipeline: {}", e.message()));
        PipelineSectors {
            disabled: None,
            sectors: Vec::new(),
        }
    });
    let power = power
        .map_err(|e| errors.push(format!("state_minerPower: {e}")))
        .ok();
    let balances = miner
        .map(|m| Balances::from(&m))
        .map_err(|e| errors.push(format!("state_minerInfo: {e}")))
        .ok();
    let proving = ctx.poster.status();
    let now = lode_node::genesis::unix_now();
    let mut counts = BTreeMap::<SectorState, u64>::new();
    for s in &pipeline.sectors {
        let n = counts.entry(s.state).or_default();
        *n = n.saturating_add(1);
    }
    let states = ALL_STATES
        .iter()
        .filter_map(|s| counts.get(s).map(|&count| StateCount { state: *s, count }))
        .collect();
    let working = pipeline
        .sectors
        .iter()
        .filter(|s| !s.state.is_final() && s.state != SectorState::Proving)
        .map(|s| WorkingSector {
            sector_number: s.sector_number,
            state: s.state,
            since: s
                .history
                .iter()
                .rev()
                .find(|h| h.to == s.state)
                .map_or(s.created_at, |h| h.at),
            failures: s.failures,
            retry_at: s.retry_at,
            last_error: s.last_error.clone(),
            waiting: s.waiting.clone(),
        })
        .collect();
    let (current_deadline, next_deadline) = deadline_slots(&proving);
    let cluster = match ctx.pipeline.as_ref().ok().and_then(|p| p.cluster()) {
        Some(link) => {
            match tokio::time::timeout(
                CLUSTER_TIMEOUT,
                crate::cluster::status(link.engine(), CLUSTER_HISTORY),
            )
            .await
            {
                Ok(Ok(status)) => Some(status),
                Ok(Err(e)) => {
                    errors.push(format!("cluster: {e}"));
                    None
                }
                Err(_) => {
                    errors.push(format!(
                        "cluster: the database did not answer within {} s",
                        CLUSTER_TIMEOUT.as_secs()
                    ));
                    None
                }
            }
        }
        None => None,
    };
    Dashboard {
        cluster,
        generated_at: now,
        mining: crate::rpc::mining(ctx),
        pipeline_disabled: pipeline.disabled.clone(),
        states,
        sectors: sector_rows(&pipeline, &sectors),
        working,
        faults: fault_rows(&proving, &sectors),
        current_deadline,
        next_deadline,
        proving,
        power,
        balances,
        errors,
        info,
        build_seconds: started.elapsed().as_secs_f64(),
    }
}

/// `s` with the five characters that HTML gives a meaning (`& < > " '`) written as entities:
/// safe in element text and in quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Any displayable value, escaped.
fn e(v: impl std::fmt::Display) -> String {
    escape(&v.to_string())
}

fn opt(v: Option<impl std::fmt::Display>) -> String {
    v.map_or_else(|| "-".to_string(), e)
}

/// Bytes with a binary unit (`8 KiB`, `1.5 GiB`).
fn bytes(n: u128) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = n;
    let mut unit = 0usize;
    while value >= 1024 && value.is_multiple_of(1024) && unit.saturating_add(1) < UNITS.len() {
        value /= 1024;
        unit = unit.saturating_add(1);
    }
    format!("{value} {}", UNITS.get(unit).copied().unwrap_or("B"))
}

/// Bytes rounded to one decimal in the largest binary unit below them (`1.5 GiB`), or
/// `unlimited` for the figure a worker gives when it sets no limit.
fn approx_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n == u64::MAX {
        return "unlimited".into();
    }
    let mut unit = 0usize;
    let mut scaled = n;
    while scaled >= 1024 && unit.saturating_add(1) < UNITS.len() {
        scaled /= 1024;
        unit = unit.saturating_add(1);
    }
    let divisor = 1u64.checked_shl(u32::try_from(unit.saturating_mul(10)).unwrap_or(0));
    let value = divisor.map_or(0.0, |d| n as f64 / d as f64);
    let name = UNITS.get(unit).copied().unwrap_or("B");
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {name}")
    }
}

/// `n s`, `n min`, `n h` ago (or ahead).
fn ago(now: u64, then: u64) -> String {
    let (d, suffix) = if now >= then {
        (now.saturating_sub(then), "ago")
    } else {
        (then.saturating_sub(now), "ahead")
    };
    if d < 120 {
        format!("{d} s {suffix}")
    } else if d < 7200 {
        format!("{} min {suffix}", d / 60)
    } else {
        format!("{} h {suffix}", d / 3600)
    }
}

/// A table: the header cells (escaped here) and rows of cells already escaped.
fn table(out: &mut String, id: &str, headers: &[&str], rows: &[Vec<String>]) {
    let _ = write!(out, "<table id=\"{}\"><thead><tr>", escape(id));
    for h in headers {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>\n");
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}\
table{border-collapse:collapse;margin:.3em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}\
th{background:#f2f2f2}.cards{display:flex;flex-wrap:wrap;gap:.8em}\
.card{border:1px solid #ccc;border-radius:6px;padding:.5em 1em;min-width:9em}\
.card b{display:block;font-size:1.3em}.err{color:#b00}.muted{color:#777}";

/// The dashboard as an HTML page (no script; it reloads itself every [`REFRESH_SECONDS`]).
/// Every string from the provider, the node or the chain is escaped.
pub fn render(d: &Dashboard) -> String {
    let mut o = String::with_capacity(16 * 1024);
    let i = &d.info;
    let head = i.head.as_ref().map(|h| h.epoch);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
<title>lode provider {actor}</title><style>{STYLE}</style></head><body>\n\
<h1>lode provider <span id=\"actor\">{actor}</span></h1>\n\
<p class=\"muted\">network {network} · sector size {size} · worker {worker} · owner {owner} · \
node {node} · head epoch <span id=\"head-epoch\">{head}</span> · lode {version}</p>\n",
        actor = e(i.actor),
        network = e(&i.network),
        size = e(i.sector_size),
        worker = e(i.worker),
        owner = e(i.owner),
        node = e(&i.node_api),
        head = opt(head),
        version = e(&i.version),
    );
    for err in &d.errors {
        let _ = writeln!(o, "<p class=\"err\">{}</p>", e(err));
    }

    // The cards: what an operator looks at first.
    let faulty: u64 = d
        .proving
        .deadlines
        .iter()
        .fold(0, |a, x| a.saturating_add(x.faults));
    let (raw, qa) = d
        .power
        .as_ref()
        .map_or((None, None), |p| (Some(p.power.raw), Some(p.power.qa)));
    o.push_str("<div class=\"cards\">");
    let mut card = |id: &str, label: &str, value: String, data: String| {
        let _ = write!(
            o,
            "<div class=\"card\">{}<b id=\"{}\" data-value=\"{}\">{}</b></div>",
            escape(label),
            escape(id),
            data,
            value
        );
    };
    card(
        "power-raw",
        "Raw power",
        raw.map_or_else(|| "-".into(), |r| e(bytes(r))),
        opt(raw),
    );
    card(
        "power-qa",
        "QA power",
        qa.map_or_else(|| "-".into(), |q| e(bytes(q))),
        opt(qa),
    );
    card(
        "sector-count",
        "Sectors",
        e(d.sectors.len()),
        e(d.sectors.len()),
    );
    card("faulty-count", "Faulty", e(faulty), e(faulty));
    card(
        "missed-count",
        "Windows missed",
        e(d.proving.missed),
        e(d.proving.missed),
    );
    let available = d.balances.as_ref().map(|b| b.available);
    card(
        "available",
        "Available balance",
        opt(available),
        opt(available.map(|a| a.0)),
    );
    card(
        "blocks",
        "Blocks won",
        e(d.mining.blocks_produced),
        e(d.mining.blocks_produced),
    );
    o.push_str("</div>\n");

    // The pipeline.
    o.push_str("<h2>Sealing pipeline</h2>\n");
    if let Some(why) = &d.pipeline_disabled {
        let _ = writeln!(
            o,
            "<p class=\"err\">the pipeline does not run: {}</p>",
            e(why)
        );
    }
    let rows: Vec<Vec<String>> = d
        .states
        .iter()
        .map(|s| {
            vec![
                e(s.state),
                format!("<span data-state=\"{}\">{}</span>", e(s.state), e(s.count)),
            ]
        })
        .collect();
    table(&mut o, "states", &["State", "Sectors"], &rows);
    if d.states.is_empty() {
        o.push_str("<p class=\"muted\">no sector in the pipeline: pledge one with <code>lode sectors pledge</code></p>\n");
    }
    o.push_str("<h2>Working</h2>\n");
    let rows: Vec<Vec<String>> = d
        .working
        .iter()
        .map(|w| {
            vec![
                e(w.sector_number),
                e(w.state),
                e(ago(d.generated_at, w.since)),
                e(w.failures),
                w.retry_at
                    .map_or_else(|| "-".into(), |r| e(ago(d.generated_at, r))),
                opt(w.last_error.as_deref()),
                opt(w.waiting.as_deref()),
            ]
        })
        .collect();
    table(
        &mut o,
        "working",
        &[
            "Sector",
            "State",
            "Since",
            "Retries",
            "Next retry",
            "Last error",
            "Waiting for",
        ],
        &rows,
    );

    // Proving.
    o.push_str("<h2>Deadlines</h2>\n");
    let slot = |s: &Option<DeadlineSlot>| -> Vec<String> {
        match s {
            Some(s) => vec![
                e(s.index),
                e(format!("{}-{}", s.open, s.close)),
                s.status
                    .as_ref()
                    .map_or_else(|| "no partitions".into(), |st| e(st.state.as_str())),
                s.status
                    .as_ref()
                    .map_or_else(|| "0".into(), |st| e(st.sectors)),
                s.status
                    .as_ref()
                    .map_or_else(|| "0".into(), |st| e(st.faults)),
                opt(s
                    .status
                    .as_ref()
                    .and_then(|st| st.last_result.map(|r| r.as_str()))),
            ],
            None => vec!["-".into(); 6],
        }
    };
    let mut current = slot(&d.current_deadline);
    current.insert(0, "current".into());
    let mut next = slot(&d.next_deadline);
    next.insert(0, "next".into());
    table(
        &mut o,
        "current-next",
        &[
            "", "Deadline", "Window", "State", "Sectors", "Faults", "Previous",
        ],
        &[current, next],
    );
    let rows: Vec<Vec<String>> = d
        .proving
        .deadlines
        .iter()
        .map(|dl| {
            vec![
                e(format!(
                    "{}{}",
                    dl.index,
                    if dl.current { " (current)" } else { "" }
                )),
                e(format!("{}-{}", dl.open, dl.close)),
                e(dl.fault_cutoff),
                e(dl.submit_by),
                e(dl.partitions),
                e(dl.sectors),
                e(dl.faults),
                e(dl.recoveries),
                e(format!("{}/{}", dl.posted, dl.partitions)),
                e(dl.state.as_str()),
                opt(dl.last_result.map(|r| r.as_str())),
                e(dl.missed),
            ]
        })
        .collect();
    table(
        &mut o,
        "deadlines",
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
    );
    if let Some(err) = &d.proving.last_error {
        let _ = writeln!(o, "<p class=\"err\">last proving round: {}</p>", e(err));
    }

    o.push_str("<h2>Faults</h2>\n");
    let rows: Vec<Vec<String>> = d
        .faults
        .iter()
        .map(|f| {
            vec![
                e(f.sector_number),
                opt(f.deadline),
                opt(f.partition),
                opt(f.status.as_deref()),
                e(if f.held_faulty { "yes" } else { "no" }),
                opt(f.check_failure.as_deref()),
            ]
        })
        .collect();
    table(
        &mut o,
        "faults",
        &[
            "Sector",
            "Deadline",
            "Partition",
            "Status",
            "Held",
            "Check failure",
        ],
        &rows,
    );

    o.push_str("<h2>Balances</h2>\n");
    let rows: Vec<Vec<String>> = match &d.balances {
        Some(b) => [
            ("Balance", b.balance),
            ("Available", b.available),
            ("Locked (vesting)", b.locked_funds),
            ("Initial pledge", b.initial_pledge),
            ("Pre-commit deposits", b.pre_commit_deposits),
            ("Fee debt", b.fee_debt),
        ]
        .iter()
        .map(|(k, v)| vec![e(k), e(v)])
        .collect(),
        None => Vec::new(),
    };
    table(&mut o, "balances", &["", "Amount"], &rows);

    o.push_str("<h2>Sectors</h2>\n");
    let rows: Vec<Vec<String>> = d
        .sectors
        .iter()
        .map(|s| {
            vec![
                e(s.sector_number),
                opt(s.state),
                opt(s.chain_status.as_deref().map(|c| {
                    if s.held_faulty {
                        format!("{c} (held)")
                    } else {
                        c.to_string()
                    }
                })),
                match (s.deadline, s.partition) {
                    (Some(dl), Some(p)) => e(format!("{dl}/{p}")),
                    _ => "-".into(),
                },
                opt(s.activation),
                opt(s.expiration),
                e(s.files()),
                opt(s.failures),
                opt(s.last_error.as_deref()),
            ]
        })
        .collect();
    table(
        &mut o,
        "sectors",
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

    if let Some(c) = &d.cluster {
        render_cluster(&mut o, c, d.generated_at);
    }

    let _ = write!(
        o,
        "<p class=\"muted\">built in {:.1} ms at unix time {} · reloads every {REFRESH_SECONDS} s · \
<a href=\"{JSON_PATH}\">JSON</a> · <a href=\"/metrics\">metrics</a></p>\n</body></html>\n",
        d.build_seconds * 1000.0,
        d.generated_at
    );
    o
}

/// The cluster's section: its workers, its tasks (unfinished, then the newest finished) and its
/// storage paths, as `lode cluster status` prints them.
fn render_cluster(o: &mut String, c: &crate::cluster::ClusterStatus, now: u64) {
    use crate::engine::TaskPhase;
    let running = c
        .tasks
        .iter()
        .filter(|t| t.phase == TaskPhase::Running)
        .count();
    let queued = c
        .tasks
        .iter()
        .filter(|t| t.phase == TaskPhase::Queued)
        .count();
    let _ = write!(
        o,
        "<h2>Cluster</h2>\n<p><span id=\"cluster-workers\">{}</span> workers · \
<span id=\"cluster-running\">{running}</span> tasks running · \
<span id=\"cluster-queued\">{queued}</span> queued</p>\n",
        c.workers.len()
    );
    let rows: Vec<Vec<String>> = c
        .workers
        .iter()
        .map(|w| {
            let r = &w.info.resources;
            let busy = c
                .tasks
                .iter()
                .filter(|t| {
                    t.phase == TaskPhase::Running && t.worker.as_deref() == Some(&w.info.name)
                })
                .map(|t| format!("{} {}", t.spec.kind, t.spec.subject))
                .collect::<Vec<_>>()
                .join(", ");
            vec![
                e(&w.info.name),
                e(w.info
                    .kinds
                    .iter()
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(", ")),
                e(if r.cores == u32::MAX {
                    "unlimited".to_string()
                } else {
                    r.cores.to_string()
                }),
                e(approx_bytes(r.memory)),
                e(r.gpus),
                opt(w.info.url.as_deref()),
                e(c.held_by(&w.info.name)),
                if busy.is_empty() { "-".into() } else { e(busy) },
                e(ago(now, now.saturating_sub(w.silent_ms / 1000))),
            ]
        })
        .collect();
    table(
        o,
        "cluster-worker-table",
        &[
            "Worker",
            "Tasks",
            "Cores",
            "Memory",
            "GPUs",
            "Files at",
            "Sectors",
            "Running",
            "Heartbeat",
        ],
        &rows,
    );
    let rows: Vec<Vec<String>> = c
        .tasks
        .iter()
        .take(CLUSTER_TASK_ROWS)
        .map(|t| {
            vec![
                e(t.id),
                e(t.spec.kind),
                e(t.spec.subject),
                e(match t.phase {
                    TaskPhase::Queued => "queued",
                    TaskPhase::Running => "running",
                    TaskPhase::Done => "done",
                    TaskPhase::Failed => "failed",
                }),
                opt(t.worker.as_deref().or(t.spec.at.as_deref())),
                e(t.attempts),
                opt(t.error.as_deref()),
            ]
        })
        .collect();
    table(
        o,
        "cluster-task-table",
        &[
            "Task", "Kind", "Sector", "State", "Worker", "Claims", "Error",
        ],
        &rows,
    );
    if c.tasks.len() > CLUSTER_TASK_ROWS {
        let _ = writeln!(
            o,
            "<p class=\"muted\">and {} more tasks (<code>lode cluster status</code> and the JSON list them all)</p>",
            c.tasks.len().saturating_sub(CLUSTER_TASK_ROWS)
        );
    }
    let rows: Vec<Vec<String>> = c
        .storage
        .iter()
        .map(|p| {
            vec![
                e(&p.worker),
                e(&p.path),
                p.available
                    .map_or_else(|| "unknown".into(), |a| e(approx_bytes(a))),
            ]
        })
        .collect();
    table(
        o,
        "cluster-storage-table",
        &["Worker", "Path", "Free"],
        &rows,
    );
}

/// The dashboard's routes for `ctx`'s provider: `GET /` and `GET /api/dashboard.json`, to be
/// mounted beside `/metrics` ([`lode_node::rpc::serve_http`]).
pub fn routes<A: NodeApi>(ctx: Arc<ProviderRpc<A>>) -> Router {
    let json_ctx = ctx.clone();
    Router::new()
        .route(
            "/",
            get(move || {
                let ctx = ctx.clone();
                async move { Html(render(&dashboard(&ctx).await)) }
            }),
        )
        .route(
            JSON_PATH,
            get(move || {
                let ctx = json_ctx.clone();
                async move {
                    let d = dashboard(&ctx).await;
                    let body = serde_json::to_string(&d)
                        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
                    ([(header::CONTENT_TYPE, "application/json")], body)
                }
            }),
        )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::rpc::{ChainSector, ProviderSector};
    use crate::status::{CheckFailureStatus, PostState, ProvingPeriod};
    use lode_chain::types::ActorId;
    use lode_node::rpc::types::Power;
    use lode_proofs::sector::SectorSize;

    #[test]
    fn escape_writes_the_five_special_characters_as_entities() {
        assert_eq!(
            escape(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape("plain 42 é"), "plain 42 é");
    }

    fn pipeline_sector(n: u64, state: SectorState, error: Option<&str>) -> PipelineSector {
        PipelineSector {
            sector_number: n,
            kind: crate::pipeline::SectorKind::CommittedCapacity,
            state,
            failures: u32::from(error.is_some()),
            last_error: error.map(str::to_string),
            retry_at: None,
            created_at: 1000,
            updated_at: 1000,
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

    fn chain(status: &str, deadline: u64) -> Option<ChainSector> {
        Some(ChainSector {
            status: status.into(),
            deadline,
            partition: 0,
            activation: 5,
            expiration: 900,
        })
    }

    fn sample() -> Dashboard {
        let pipeline = PipelineSectors {
            disabled: None,
            sectors: vec![
                pipeline_sector(2, SectorState::Proving, None),
                pipeline_sector(
                    3,
                    SectorState::SealPreCommit1Failed,
                    Some("<img src=x onerror=alert(1)>"),
                ),
                pipeline_sector(4, SectorState::PreCommit1, None),
            ],
        };
        let sectors = ProviderSectors {
            sectors: vec![
                ProviderSector {
                    sector_number: 0,
                    dir: Some("/s/0".into()),
                    readable: true,
                    chain: chain("active", 1),
                    held_faulty: false,
                    worker: None,
                },
                ProviderSector {
                    sector_number: 1,
                    dir: Some("/s/1".into()),
                    readable: false,
                    chain: chain("faulty", 1),
                    held_faulty: true,
                    worker: None,
                },
                ProviderSector {
                    sector_number: 2,
                    dir: Some("/s/2".into()),
                    readable: true,
                    chain: chain("active", 2),
                    held_faulty: false,
                    worker: None,
                },
            ],
            node_error: None,
            cluster_error: None,
        };
        let proving = ProvingStatus {
            actor: ActorId(1000),
            head_epoch: Some(50),
            deadlines: vec![DeadlineStatus {
                index: 1,
                open: 40,
                close: 60,
                sectors: 2,
                faults: 1,
                partitions: 1,
                current: true,
                state: PostState::Submitted,
                ..DeadlineStatus::default()
            }],
            period: Some(ProvingPeriod {
                start: 20,
                deadlines: 4,
                challenge_window: 20,
                current_deadline: Some(1),
                current_open: Some(40),
                current_close: Some(60),
            }),
            check_failures: vec![CheckFailureStatus {
                sector_number: 0,
                deadline: 1,
                partition: 0,
                epoch: 49,
                reason: "leaf 3 \"bad\"".into(),
            }],
            ..ProvingStatus::default()
        };
        let (current_deadline, next_deadline) = deadline_slots(&proving);
        Dashboard {
            generated_at: 2000,
            info: ProviderInfo {
                actor: ActorId(1000),
                owner: ActorId(100),
                worker: ActorId(101),
                sector_size: SectorSize::S2KiB,
                network: "devnet<b>".into(),
                node_api: "http://127.0.0.1:1234".into(),
                version: "0.1.0".into(),
                api_version: 1,
                started_at: 1,
                sectors_in_store: 3,
                head: None,
                node_error: None,
            },
            mining: MiningInfo {
                elections_won: 0,
                blocks_produced: 7,
                blocks_refused: 0,
                winning_posts: 0,
                winning_post_average_seconds: None,
                window_post_partitions: 0,
                window_post_average_seconds: None,
                events: Default::default(),
            },
            pipeline_disabled: None,
            states: vec![
                StateCount {
                    state: SectorState::PreCommit1,
                    count: 1,
                },
                StateCount {
                    state: SectorState::Proving,
                    count: 1,
                },
            ],
            sectors: sector_rows(&pipeline, &sectors),
            working: vec![WorkingSector {
                sector_number: 9,
                state: SectorState::Packing,
                since: 1_000,
                failures: 0,
                retry_at: None,
                last_error: None,
                waiting: Some("waiting for disk space: <scratch> needs 9 KiB".into()),
            }],
            faults: fault_rows(&proving, &sectors),
            current_deadline,
            next_deadline,
            proving,
            power: Some(MinerPowerInfo {
                miner: ActorId(1000),
                power: Power {
                    raw: 4096,
                    qa: 4096,
                },
                network: Power {
                    raw: 8192,
                    qa: 8192,
                },
                meets_consensus_minimum: true,
            }),
            balances: None,
            cluster: None,
            errors: vec!["state_minerInfo: <down>".into()],
            build_seconds: 0.001,
        }
    }

    #[test]
    fn rows_join_the_pipeline_the_store_and_the_chain() {
        let d = sample();
        let numbers: Vec<u64> = d.sectors.iter().map(|s| s.sector_number).collect();
        assert_eq!(numbers, [0, 1, 2, 3, 4]);
        assert_eq!(d.sectors[0].state, None, "genesis sector: no record");
        assert_eq!(d.sectors[1].chain_status.as_deref(), Some("faulty"));
        assert!(d.sectors[1].held_faulty);
        assert_eq!(d.sectors[2].state, Some(SectorState::Proving));
        assert_eq!(d.sectors[2].deadline, Some(2));
        assert_eq!(d.sectors[3].chain_status, None);
        assert_eq!(d.sectors[3].failures, Some(1));
        // Faults: the faulty sector, and the active one whose check failed.
        let faults: Vec<(u64, Option<&str>)> = d
            .faults
            .iter()
            .map(|f| (f.sector_number, f.check_failure.as_deref()))
            .collect();
        assert_eq!(faults, [(0, Some("leaf 3 \"bad\"")), (1, None)]);
        // Current deadline 1 (its poster state), next 2 (no partitions), after its window.
        let cur = d.current_deadline.as_ref().unwrap();
        assert_eq!((cur.index, cur.open, cur.close), (1, 40, 60));
        assert_eq!(cur.status.as_ref().unwrap().state, PostState::Submitted);
        let next = d.next_deadline.as_ref().unwrap();
        assert_eq!((next.index, next.open, next.close), (2, 60, 80));
        assert!(next.status.is_none());
    }

    #[test]
    fn the_cluster_section_lists_workers_tasks_and_storage_escaped() {
        use crate::engine::{StoragePath, TaskPhase, TaskRow, TaskSpec, WorkerInfo, WorkerRow};
        use crate::tasks::{Resources, TaskKind};
        let mut d = sample();
        assert!(
            !render(&d).contains("<h2>Cluster</h2>"),
            "a cluster shown without one"
        );
        let spec = |kind, subject| TaskSpec::new(1000, kind, subject, Resources::ZERO);
        d.cluster = Some(crate::cluster::ClusterStatus {
            workers: vec![WorkerRow {
                info: WorkerInfo {
                    name: "pc1-<box>".into(),
                    resources: Resources {
                        cores: 64,
                        memory: 3 << 39,
                        gpus: 1,
                        scratch: 0,
                    },
                    kinds: vec![TaskKind::PreCommit1, TaskKind::PreCommit2],
                    url: Some("http://10.0.0.7:7070".into()),
                },
                silent_ms: 1500,
            }],
            tasks: vec![
                TaskRow {
                    id: 7,
                    spec: spec(TaskKind::PreCommit1, 12),
                    phase: TaskPhase::Running,
                    worker: Some("pc1-<box>".into()),
                    attempts: 1,
                    error: None,
                    output: None,
                },
                TaskRow {
                    id: 8,
                    spec: TaskSpec {
                        at: Some("pc1-<box>".into()),
                        ..spec(TaskKind::PreCommit2, 11)
                    },
                    phase: TaskPhase::Queued,
                    worker: None,
                    attempts: 0,
                    error: Some("fetch: \"refused\"".into()),
                    output: None,
                },
            ],
            storage: vec![StoragePath {
                worker: "pc1-<box>".into(),
                path: "/srv/lode".into(),
                available: Some(1_610_612_736),
            }],
            held: [("pc1-<box>".to_string(), 4321)].into_iter().collect(),
        });
        let html = render(&d);
        assert!(html.contains("<h2>Cluster</h2>"));
        assert!(html.contains("<span id=\"cluster-workers\">1</span> workers"));
        assert!(html.contains("<span id=\"cluster-running\">1</span> tasks running"));
        assert!(html.contains("<span id=\"cluster-queued\">1</span> queued"));
        assert!(html.contains("pc1-&lt;box&gt;") && !html.contains("pc1-<box>"));
        assert!(html.contains("PreCommit1, PreCommit2"));
        assert!(html.contains("1.5 TiB"), "memory");
        assert!(html.contains("PreCommit1 12"), "the worker's running task");
        assert!(html.contains("fetch: &quot;refused&quot;"));
        assert!(html.contains("1.5 GiB"), "free space");
        assert!(html.contains("1 s ago"));
        assert!(html.contains("<td>4321</td>"), "the sectors it holds");
        let json = serde_json::to_string(&d).unwrap();
        let back: Dashboard = serde_json::from_str(&json).unwrap();
        assert_eq!(back.cluster, d.cluster);
        // A long queue: the page shows the first rows and says how many more there are.
        if let Some(c) = d.cluster.as_mut() {
            let row = c.tasks[1].clone();
            c.tasks = (0..CLUSTER_TASK_ROWS as u64 + 7)
                .map(|id| TaskRow { id, ..row.clone() })
                .collect();
        }
        let html = render(&d);
        assert!(html.contains("and 7 more tasks"), "no overflow line");
        assert_eq!(
            html.matches("<td>PreCommit2</td>").count(),
            CLUSTER_TASK_ROWS
        );
    }

    #[test]
    fn approximate_bytes_round_to_one_decimal() {
        assert_eq!(approx_bytes(0), "0 B");
        assert_eq!(approx_bytes(1023), "1023 B");
        assert_eq!(approx_bytes(1536), "1.5 KiB");
        assert_eq!(approx_bytes(5 << 30), "5.0 GiB");
        assert_eq!(approx_bytes(u64::MAX), "unlimited");
        assert_eq!(approx_bytes(u64::MAX - 1), "16.0 EiB");
    }

    #[test]
    fn the_next_deadline_wraps_to_the_period_start() {
        let mut st = sample().proving;
        if let Some(p) = st.period.as_mut() {
            p.current_deadline = Some(3);
        }
        let (_, next) = deadline_slots(&st);
        assert_eq!(next.unwrap().index, 0);
        st.period = None;
        assert_eq!(deadline_slots(&st), (None, None));
    }

    #[test]
    fn the_page_shows_the_figures_and_escapes_every_string() {
        let d = sample();
        let html = render(&d);
        assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert!(html.contains("id=\"power-raw\" data-value=\"4096\">4 KiB</b>"));
        assert!(html.contains("id=\"sector-count\" data-value=\"5\">5</b>"));
        assert!(html.contains("id=\"faulty-count\" data-value=\"1\">1</b>"));
        assert!(html.contains("<span data-state=\"PreCommit1\">1</span>"));
        assert!(html.contains("<td>1 (current)</td>"));
        assert!(html.contains("<td>faulty (held)</td>"));
        // Nothing the chain, the node or the pipeline says reaches the page unescaped.
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<down>"));
        assert!(!html.contains("devnet<b>"));
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(html.contains("state_minerInfo: &lt;down&gt;"));
        assert!(html.contains("leaf 3 &quot;bad&quot;"));
        // Why a working sector waits.
        assert!(html.contains("<td>waiting for disk space: &lt;scratch&gt; needs 9 KiB</td>"));
        // The JSON form round-trips.
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Dashboard>(&json).unwrap(), d);
    }

    #[test]
    fn bytes_use_the_largest_exact_binary_unit() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(2048), "2 KiB");
        assert_eq!(bytes(3000), "3000 B");
        assert_eq!(bytes(34_359_738_368), "32 GiB");
    }
}
