//! The machine a run was measured on, as a researcher needs it to compare figures.

use serde::{Deserialize, Serialize};

/// The instruction-set extensions lode's fast paths use, reported when the CPU has them.
const FLAGS: [&str; 9] = [
    "sse4_1",
    "avx2",
    "avx512f",
    "avx512vl",
    "avx512ifma",
    "bmi2",
    "adx",
    "sha_ni",
    "asimd",
];

/// A machine's description.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// The CPU model (`/proc/cpuinfo`'s `model name`, or the architecture).
    pub cpu: String,
    /// Which of the extensions lode uses the CPU has.
    pub cpu_flags: Vec<String>,
    /// Logical cores this process may use.
    pub cores: usize,
    /// Physical memory, bytes (0 when unknown).
    pub memory_bytes: u64,
    /// Accelerators used by the run (`none` on the CPU paths).
    pub gpu: String,
    /// The prover's field arithmetic on this CPU (`avx512-ifma`, `mulx-adx` or `portable`,
    /// [`lode_proofs::prover::arithmetic`]); empty in records made before it was reported.
    #[serde(default)]
    pub arithmetic: String,
    /// Operating system and architecture.
    pub os: String,
    /// The lode version that measured.
    pub lode_version: String,
}

impl Machine {
    /// This machine.
    pub fn this() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        let flags_line = cpuinfo
            .lines()
            .find(|l| l.starts_with("flags") || l.starts_with("Features"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        let have: Vec<&str> = flags_line.split_whitespace().collect();
        let cpu_flags = FLAGS
            .iter()
            .filter(|f| have.contains(f))
            .map(|f| f.to_string())
            .collect();
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib.saturating_mul(1024));
        Machine {
            cpu,
            cpu_flags,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes,
            gpu: "none".into(),
            arithmetic: lode_proofs::prover::arithmetic().name().into(),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            lode_version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// A short label: the CPU and its cores.
    pub fn label(&self) -> String {
        format!("{}, {} cores", self.cpu, self.cores)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_is_described() {
        let m = Machine::this();
        assert!(m.cores >= 1);
        assert!(!m.cpu.is_empty());
        assert!(m.cpu_flags.iter().all(|f| FLAGS.contains(&f.as_str())));
        assert!(
            ["avx512-ifma", "mulx-adx", "portable"].contains(&m.arithmetic.as_str()),
            "{}",
            m.arithmetic
        );
        // The vector arithmetic needs IFMA, MULX/ADX needs both flags.
        let has = |f: &str| m.cpu_flags.iter().any(|g| g == f);
        match m.arithmetic.as_str() {
            "avx512-ifma" => assert!(has("avx512ifma")),
            "mulx-adx" => assert!(has("bmi2") && has("adx")),
            _ => {}
        }
    }

    #[test]
    fn records_without_the_arithmetic_still_parse() {
        let mut v = serde_json::to_value(Machine::this()).unwrap();
        v.as_object_mut().unwrap().remove("arithmetic");
        let m: Machine = serde_json::from_value(v).unwrap();
        assert_eq!(m.arithmetic, "");
    }
}
