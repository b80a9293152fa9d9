//! A run's record: what was measured, where, and when; JSON and CSV.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::machine::Machine;
use super::measure::Sample;
use super::{BenchError, BenchResult, io_at};

/// One `lode bench` run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchRun {
    /// What was measured (`seal`, `labels`, `trees`, `commp`).
    pub kind: String,
    /// Sector size (`8MiB`).
    pub size: String,
    /// Sectors per run.
    pub sectors: u64,
    /// Repetitions.
    pub repeat: u32,
    /// When it started (RFC 3339, UTC).
    pub started: String,
    /// The command line, for whoever reproduces it.
    pub command: String,
    /// The machine.
    pub machine: Machine,
    /// Every phase of every repetition, in order.
    pub samples: Vec<Sample>,
}

/// The longest time a result or reference file may state, seconds (about 31 years): charts
/// refuse what no run measured rather than draw it.
pub const MAX_SECONDS: f64 = 1e9;

/// Whether `s` is a time a run could have measured: finite, 0 to [`MAX_SECONDS`].
pub fn seconds_ok(s: f64) -> bool {
    s.is_finite() && (0.0..=MAX_SECONDS).contains(&s)
}

/// The CSV header of [`BenchRun::csv`].
pub const CSV_HEADER: &str =
    "kind,size,sectors,repeat,phase,wall_s,cpu_s,peak_rss_bytes,cpu,cores,memory_bytes,gpu,started";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl BenchRun {
    /// The run as CSV: a header and a row per sample.
    pub fn csv(&self) -> String {
        let mut out = String::from(CSV_HEADER);
        out.push('\n');
        let m = &self.machine;
        for s in &self.samples {
            // Writing to a String cannot fail.
            let _ = writeln!(
                out,
                "{},{},{},{},{},{:.6},{:.6},{},{},{},{},{},{}",
                csv_field(&self.kind),
                csv_field(&self.size),
                s.sectors,
                s.repeat,
                csv_field(&s.phase),
                s.wall_s,
                s.cpu_s,
                s.peak_rss_bytes,
                csv_field(&m.cpu),
                m.cores,
                m.memory_bytes,
                csv_field(&m.gpu),
                csv_field(&self.started)
            );
        }
        out
    }

    /// Writes `<stem>.json` and `<stem>.csv`.
    ///
    /// # Errors
    /// [`BenchError::Io`].
    pub fn write(&self, stem: &Path) -> BenchResult<(std::path::PathBuf, std::path::PathBuf)> {
        let json = stem.with_extension("json");
        let csv = stem.with_extension("csv");
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| BenchError::Invalid(format!("encoding the run: {e}")))?;
        std::fs::write(&json, text + "\n").map_err(io_at(&json))?;
        std::fs::write(&csv, self.csv()).map_err(io_at(&csv))?;
        Ok((json, csv))
    }

    /// Reads a run written by [`BenchRun::write`].
    ///
    /// # Errors
    /// [`BenchError::Io`], [`BenchError::BadFile`].
    pub fn load(path: &Path) -> BenchResult<BenchRun> {
        let text = std::fs::read_to_string(path).map_err(io_at(path))?;
        let run: BenchRun = serde_json::from_str(&text).map_err(|e| BenchError::BadFile {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        if let Some(s) = run
            .samples
            .iter()
            .find(|s| !seconds_ok(s.wall_s) || !seconds_ok(s.cpu_s))
        {
            return Err(BenchError::BadFile {
                path: path.to_path_buf(),
                why: format!(
                    "phase {:?} has a time outside 0 to {MAX_SECONDS} seconds",
                    s.phase
                ),
            });
        }
        Ok(run)
    }

    /// The mean wall seconds per sector of each phase, in the order phases first appear.
    pub fn phase_means(&self) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64, u32)> = Vec::new();
        for s in &self.samples {
            match out.iter_mut().find(|(p, _, _)| *p == s.phase) {
                Some(e) => {
                    e.1 += s.wall_per_sector();
                    e.2 += 1;
                }
                None => out.push((s.phase.clone(), s.wall_per_sector(), 1)),
            }
        }
        out.into_iter()
            .map(|(p, sum, n)| (p, sum / f64::from(n.max(1))))
            .collect()
    }

    /// A label for charts: kind, size, sectors and the machine.
    pub fn label(&self) -> String {
        format!(
            "lode {} {} ×{} ({})",
            self.kind,
            self.size,
            self.sectors,
            self.machine.label()
        )
    }
}

pub use lode_market::import::now_rfc3339;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    pub(crate) fn run() -> BenchRun {
        let sample = |phase: &str, repeat, wall_s| Sample {
            phase: phase.into(),
            repeat,
            sectors: 2,
            wall_s,
            cpu_s: 1.5,
            peak_rss_bytes: 1 << 20,
        };
        BenchRun {
            kind: "seal".into(),
            size: "2KiB".into(),
            sectors: 2,
            repeat: 2,
            started: "2026-12-05T10:00:00Z".into(),
            command: "lode bench seal --size 2KiB --sectors 2".into(),
            machine: Machine::this(),
            samples: vec![
                sample("precommit1", 0, 2.0),
                sample("precommit2", 0, 4.0),
                sample("precommit1", 1, 4.0),
                sample("precommit2", 1, 8.0),
            ],
        }
    }

    #[test]
    fn runs_round_trip_and_average_per_sector() {
        let r = run();
        let tmp = tempfile::tempdir().unwrap();
        let (json, csv) = r.write(&tmp.path().join("run")).unwrap();
        assert_eq!(BenchRun::load(&json).unwrap(), r);
        let text = std::fs::read_to_string(csv).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(lines.len(), 5);
        assert!(lines[1].starts_with("seal,2KiB,2,0,precommit1,2.000000,1.500000,1048576,"));
        assert_eq!(
            r.phase_means(),
            vec![("precommit1".into(), 1.5), ("precommit2".into(), 3.0)]
        );
        assert!(BenchRun::load(&tmp.path().join("run.csv")).is_err());
        // Times no run could have measured are refused.
        for bad in [-1.0, 1e308] {
            let mut r = run();
            r.samples[1].wall_s = bad;
            std::fs::write(
                tmp.path().join("bad.json"),
                serde_json::to_string(&r).unwrap(),
            )
            .unwrap();
            let err = BenchRun::load(&tmp.path().join("bad.json")).unwrap_err();
            assert!(err.to_string().contains("outside 0 to"), "{bad}: {err}");
        }
        assert!(!seconds_ok(f64::INFINITY) && !seconds_ok(f64::NAN));
        assert!(seconds_ok(0.0) && seconds_ok(MAX_SECONDS));
    }

    #[test]
    fn csv_fields_with_commas_are_quoted() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\", y"), "\"say \"\"x\"\", y\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
