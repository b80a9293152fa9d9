//! Measuring one phase: wall time, CPU time and peak resident memory.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// One measured phase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The phase (`precommit1`, `tree_r`, …).
    pub phase: String,
    /// Which repetition (0-based).
    pub repeat: u32,
    /// Sectors the phase worked on (a batch counts all of them).
    pub sectors: u64,
    /// Wall seconds.
    pub wall_s: f64,
    /// CPU seconds, user and system, every thread of the process.
    pub cpu_s: f64,
    /// The process's peak resident memory during the phase, bytes (0 when the system does not
    /// say).
    pub peak_rss_bytes: u64,
}

impl Sample {
    /// Wall seconds per sector.
    pub fn wall_per_sector(&self) -> f64 {
        self.wall_s / (self.sectors.max(1) as f64)
    }
}

/// CPU seconds (user + system) the process has used so far.
fn cpu_seconds() -> f64 {
    match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 * 1e-6;
            secs(u.user_time()) + secs(u.system_time())
        }
        Err(_) => 0.0,
    }
}

/// Resets the process's peak resident memory to the current (Linux: `5` to
/// `/proc/self/clear_refs`), so the next reading covers one phase only.
fn reset_peak() {
    // Best effort: without it the peak is the process's so far, still an upper bound.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident memory since the last reset (`VmHWM`), bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib.saturating_mul(1024))
}

/// Runs `f` as phase `phase` of repetition `repeat` over `sectors` sectors and measures it.
///
/// # Errors
/// What `f` returns.
pub fn measure<T, E>(
    phase: &str,
    repeat: u32,
    sectors: u64,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<(T, Sample), E> {
    reset_peak();
    let cpu = cpu_seconds();
    let start = Instant::now();
    let out = f()?;
    let wall_s = start.elapsed().as_secs_f64();
    let sample = Sample {
        phase: phase.into(),
        repeat,
        sectors,
        wall_s,
        cpu_s: (cpu_seconds() - cpu).max(0.0),
        peak_rss_bytes: peak_rss(),
    };
    Ok((out, sample))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_is_timed_and_its_memory_seen() {
        // The buffer lives until after the reading: other tests in this process reset the
        // process-wide peak concurrently, and a reset after the buffer was freed would forget it.
        let ((sum, buffer), s) = measure("spin", 0, 1, || {
            let v = vec![1u8; 64 << 20];
            let mut x = 0u64;
            for b in v.iter().step_by(4096) {
                x += u64::from(*b);
            }
            Ok::<_, ()>((x, v))
        })
        .unwrap();
        assert_eq!(sum, (64 << 20) / 4096);
        assert!(s.wall_s > 0.0 && s.cpu_s >= 0.0);
        if cfg!(target_os = "linux") {
            assert!(s.peak_rss_bytes >= 64 << 20, "{s:?}");
        }
        drop(buffer);
    }
}
