//! Checks of a Prometheus `/metrics` exposition.

use std::io::Write;
use std::process::{Command, Stdio};

/// Checks the exposition `body` with Prometheus' `promtool check metrics` where promtool is
/// installed, and fails the test when promtool cannot parse it.
///
/// CI installs promtool and sets `LODE_REQUIRE_PROMTOOL`: there a missing promtool fails the test;
/// elsewhere the check is skipped with a note on stderr.
pub fn promtool_check(body: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        assert!(
            std::env::var_os("LODE_REQUIRE_PROMTOOL").is_none(),
            "promtool is required (LODE_REQUIRE_PROMTOOL is set) but could not be run"
        );
        eprintln!("note: promtool is not installed; the exposition format was not checked by it");
        return;
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(body.as_bytes())
            .unwrap_or_else(|e| panic!("writing to promtool: {e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("promtool check metrics: {e}"));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool reads the exposition with the Prometheus text parser and exits non-zero for lint
    // findings too ("no help text": OpenMetrics names a counter's HELP without `_total`); only a
    // parse error fails the test.
    assert!(
        out.status.success() || !report.contains("error while linting"),
        "promtool could not parse the exposition:\n{report}"
    );
    eprintln!("promtool check metrics: {}", report.trim());
}

/// Runs `promtool ARGS…` (e.g. `check rules FILE`, `test rules FILE`) and fails the test when it
/// exits non-zero, with its report. Skipped like [`promtool_check`] where promtool is missing
/// and `LODE_REQUIRE_PROMTOOL` is unset; returns whether it ran.
pub fn promtool(args: &[&str]) -> bool {
    let out = Command::new("promtool").args(args).output();
    let Ok(out) = out else {
        assert!(
            std::env::var_os("LODE_REQUIRE_PROMTOOL").is_none(),
            "promtool is required (LODE_REQUIRE_PROMTOOL is set) but could not be run"
        );
        eprintln!(
            "note: promtool is not installed; `promtool {}` was not run",
            args.join(" ")
        );
        return false;
    };
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed:\n{report}",
        args.join(" ")
    );
    eprintln!("promtool {}: {}", args.join(" "), report.trim());
    true
}
