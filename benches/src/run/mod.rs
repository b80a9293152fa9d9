//! `lode bench`: reproducible benchmark runs for researchers.
//!
//! A run measures the phases of one kind of work ([`Kind`]: sealing, labelling, trees, CommP) on
//! sectors of one size, `repeat` times, each phase's wall time, CPU time (user + system, every
//! thread) and peak resident memory ([`measure`]), and records them beside a description of the
//! machine ([`machine::Machine`]: CPU model and the instruction sets lode uses, cores, memory,
//! accelerators) as a [`report::BenchRun`], written as JSON and CSV. [`plot::plot`] draws one or
//! more runs as an SVG chart of phases side by side, with the reference figures of
//! `benches/reference.json` (the anchor's measured numbers) beside them.
//!
//! Everything here runs the same library code the daemons run (`lode_sealing`, `lode_proofs`);
//! only the measuring is added.

pub mod machine;
pub mod measure;
pub mod phases;
pub mod plot;
pub mod report;

pub use measure::{Sample, measure};
pub use phases::{Kind, RunOptions, run};
pub use report::BenchRun;

/// What can go wrong in a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Sealing failed.
    #[error("sealing: {0}")]
    Seal(#[from] lode_sealing::SealError),
    /// A proof-stack step failed.
    #[error("{0}")]
    Proofs(String),
    /// A result or reference file does not parse.
    #[error("{path}: not a benchmark result: {why}")]
    BadFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        why: String,
    },
    /// The arguments do not make a run.
    #[error("{0}")]
    Invalid(String),
    /// Drawing the chart failed.
    #[error("drawing the chart: {0}")]
    Plot(String),
}

/// Results of benchmark runs.
pub type BenchResult<T> = Result<T, BenchError>;

/// An I/O error at `path`.
pub(crate) fn io_at(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |source| BenchError::Io {
        path: path.to_path_buf(),
        source,
    }
}
