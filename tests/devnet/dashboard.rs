//! The provider's dashboard in a real browser: a one-node, one-miner `lode devnet`, a sector
//! pledged, then Debian's headless Chromium loads the miner's `http` address (`GET /`), and the
//! DOM it rendered must show what the CLI shows — the miner's raw and QA power
//! (`lode state miner-power --json`), its sectors (`lode sectors list --json`), its pipeline's
//! sectors and its deadlines (`lode proving deadlines --json`) — and a screenshot is saved.
//!
//! Chromium is required where `LODE_REQUIRE_CHROMIUM` is set (CI); elsewhere a machine without
//! it skips the test with a note.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Devnet, http_get, lode, ok, params_dir};

/// Whether Chromium can be run; panics when it cannot and `LODE_REQUIRE_CHROMIUM` is set.
fn chromium_present() -> bool {
    let found = Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("LODE_REQUIRE_CHROMIUM").is_none(),
            "chromium is required (LODE_REQUIRE_CHROMIUM is set) but could not be run: apt-get install chromium"
        );
        eprintln!(
            "SKIPPED: chromium is not installed (apt-get install chromium); the dashboard was not checked in a browser"
        );
    }
    found
}

/// Runs headless Chromium with `args` on `url` (its own profile under `profile`), killed after
/// 90 s; returns its stdout and how long it took.
fn chromium(profile: &Path, args: &[&str], url: &str) -> (String, Duration) {
    let started = Instant::now();
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("chromium {args:?} {url} ran for over 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "chromium {args:?} {url}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (String::from_utf8(out.stdout).unwrap(), took)
}

/// The `data-value` of the element with id `id` in the DOM.
fn data_value(dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the DOM:\n{dom}"));
    let rest = &dom[at..];
    let v = rest.split("data-value=\"").nth(1).unwrap();
    v[..v.find('"').unwrap()].to_string()
}

/// The text of the table with id `id` in the DOM.
fn table<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("<table id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table #{id} in the DOM:\n{dom}"));
    let rest = &dom[at..];
    &rest[..rest.find("</table>").unwrap()]
}

/// A JSON number or decimal string as a u128.
fn number(v: &serde_json::Value) -> u128 {
    match v {
        serde_json::Value::String(s) => s.parse().unwrap(),
        v => u128::from(v.as_u64().unwrap()),
    }
}

/// What the CLI shows: raw and QA power, every sector number, the pipeline's sector count, the
/// deadlines holding partitions.
#[derive(Debug, PartialEq, Eq)]
struct CliView {
    raw: u128,
    qa: u128,
    sectors: BTreeSet<u64>,
    pipeline: usize,
    deadlines: usize,
}

fn cli_view(d: &str, actor: &str) -> CliView {
    let power = ok(&lode(&[
        "state",
        "miner-power",
        actor,
        "--devnet",
        d,
        "--json",
    ]));
    let list = ok(&lode(&["sectors", "list", "--devnet", d, "--json"]));
    let deadlines = ok(&lode(&["proving", "deadlines", "--devnet", d, "--json"]));
    let pipeline = list["pipeline"]["sectors"].as_array().unwrap();
    let numbers = |v: &serde_json::Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s["sector_number"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    let mut sectors: BTreeSet<u64> = numbers(&list["pipeline"]["sectors"]).into_iter().collect();
    sectors.extend(numbers(&list["sectors"]["sectors"]));
    CliView {
        raw: number(&power["power"]["raw"]),
        qa: number(&power["power"]["qa"]),
        sectors,
        pipeline: pipeline.len(),
        deadlines: deadlines.as_array().unwrap().len(),
    }
}

fn dom_view(dom: &str) -> CliView {
    let sectors_table = table(dom, "sectors");
    let sectors: BTreeSet<u64> = sectors_table
        .split("<tr><td>")
        .skip(1)
        .map(|row| row[..row.find('<').unwrap()].parse().unwrap())
        .collect();
    assert_eq!(
        data_value(dom, "sector-count"),
        sectors.len().to_string(),
        "the card counts the table's rows"
    );
    let pipeline: usize = table(dom, "states")
        .split("data-state=\"")
        .skip(1)
        .map(|s| {
            let v = &s[s.find('>').unwrap() + 1..];
            v[..v.find('<').unwrap()].parse::<usize>().unwrap()
        })
        .sum();
    CliView {
        raw: data_value(dom, "power-raw").parse().unwrap(),
        qa: data_value(dom, "power-qa").parse().unwrap(),
        sectors,
        pipeline,
        deadlines: table(dom, "deadlines").matches("<tr><td>").count(),
    }
}

#[test]
#[ignore = "a devnet and a headless browser: about a minute"]
fn the_dashboard_shows_in_a_browser_what_the_cli_shows() {
    let _one = crate::one_at_a_time();
    if !chromium_present() {
        return;
    }
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let d = dir.to_str().unwrap().to_string();
    let params = params_dir();
    let j = ok(&lode(&[
        "devnet",
        "--dir",
        &d,
        "--detach",
        "--json",
        "--nodes",
        "1",
        "--miners",
        "1",
        "--epoch-seconds",
        &crate::common::epoch_seconds(1).to_string(),
        "--params-dir",
        params.to_str().unwrap(),
    ]));
    let _guard = Devnet(dir.clone());
    let miner = &j["miners"][0];
    let actor = miner["actor"].as_str().unwrap().to_string();
    let http = miner["http"]
        .as_str()
        .unwrap()
        .trim_end_matches('/')
        .to_string();

    // The genesis sectors' power, and the poster's first look at the deadlines.
    let wait_start = Instant::now();
    loop {
        let power = lode(&["state", "miner-power", &actor, "--devnet", &d, "--json"]);
        let deadlines = lode(&["proving", "deadlines", "--devnet", &d, "--json"]);
        let powered = power.status.success()
            && number(
                &serde_json::from_slice::<serde_json::Value>(&power.stdout).unwrap()["power"]["raw"],
            ) > 0;
        let seen = deadlines.status.success()
            && !serde_json::from_slice::<serde_json::Value>(&deadlines.stdout)
                .unwrap()
                .as_array()
                .unwrap()
                .is_empty();
        if powered && seen {
            break;
        }
        assert!(
            wait_start.elapsed() < Duration::from_secs(120),
            "no power or no deadline after 120 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // A sector in the pipeline, so the page has pipeline states to show.
    let pledged = ok(&lode(&[
        "sectors", "pledge", "--count", "1", "--devnet", &d, "--json",
    ]));
    assert_eq!(pledged["sectors"].as_array().unwrap().len(), 1, "{pledged}");
    eprintln!(
        "devnet up and a sector pledged in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The server's side: the page and its JSON, and how long the page takes to build.
    let t = Instant::now();
    let (status, html) = http_get(&format!("{http}/"));
    let served_ms = t.elapsed().as_secs_f64() * 1000.0;
    assert!(status.contains(" 200"), "{status}");
    assert!(
        html.contains(&format!("<title>lode provider {actor}</title>")),
        "{html}"
    );
    let (status, json) = http_get(&format!("{http}/api/dashboard.json"));
    assert!(status.contains(" 200"), "{status}");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["info"]["actor"], actor.as_str(), "{json}");
    let build_ms = json["build_seconds"].as_f64().unwrap() * 1000.0;
    let (status, _) = http_get(&format!("{http}/metrics"));
    assert!(status.contains(" 200"), "/metrics still served: {status}");

    // The browser's side: the DOM Chromium rendered shows what the CLI shows. A power or sector
    // change between the two reads is retried (the CLI is read before and after the browser).
    let profile = tmp.path().join("chromium");
    let mut dump_secs = 0.0;
    let mut matched = None;
    for attempt in 0..5 {
        let before = cli_view(&d, &actor);
        let (dom, took) = chromium(&profile, &["--dump-dom"], &format!("{http}/"));
        dump_secs = took.as_secs_f64();
        let after = cli_view(&d, &actor);
        let shown = dom_view(&dom);
        if before == after {
            assert_eq!(shown, before, "the page and the CLI disagree:\n{dom}");
            assert!(shown.raw > 0 && !shown.sectors.is_empty() && shown.pipeline >= 1);
            assert!(dom.contains(&format!("<span id=\"actor\">{actor}</span>")));
            assert!(table(&dom, "balances").contains("LODE"), "{dom}");
            assert!(
                table(&dom, "current-next").contains("<td>current</td>"),
                "{dom}"
            );
            matched = Some(shown);
            break;
        }
        eprintln!("attempt {attempt}: the chain moved during the read ({before:?} → {after:?})");
    }
    let shown = matched.expect("the chain never held still for one read");

    let shot_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let shot = shot_dir.join("lode-dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let (_, shot_took) = chromium(
        &profile,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1000",
        ],
        &format!("{http}/"),
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        png.len() > 10_000,
        "a blank screenshot? {} bytes",
        png.len()
    );
    eprintln!("screenshot: {} ({} bytes)", shot.display(), png.len());
    eprintln!(
        "BENCH dashboard build_ms={build_ms:.1} served_ms={served_ms:.1} chromium_dump_s={dump_secs:.2} screenshot_s={:.2} sectors={} raw={} test_s={:.1}",
        shot_took.as_secs_f64(),
        shown.sectors.len(),
        shown.raw,
        started.elapsed().as_secs_f64()
    );
}
