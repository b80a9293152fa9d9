//! Results on stdout, for readers that may stop reading.
//!
//! `lode sectors list --json | head -1` closes the pipe after one line. `println!` would panic on
//! the next write; [`outln!`] and [`out!`] (defined in `main.rs`, used everywhere instead) write
//! through [`write`], which remembers that stdout is gone and drops the rest of the output, so the
//! command still finishes its work (and its databases are closed as usual) and exits as it would
//! have. Any other write failure (a full disk behind `> file`) is reported once and fails the
//! command.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU8, Ordering};

/// Stdout works.
const OPEN: u8 = 0;
/// The reader went away (`EPIPE`): quietly drop what is left.
const CLOSED: u8 = 1;
/// A write failed otherwise: reported, and the command fails.
const FAILED: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(OPEN);

/// Writes `args` (and a newline when `newline`) to stdout through [`Stdout`], unless an earlier
/// write found it closed or failing.
pub(crate) fn write(args: std::fmt::Arguments<'_>, newline: bool) {
    // `Stdout` never returns an error: it records it.
    let mut out = Stdout;
    let _ = out.write_fmt(args);
    if newline {
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
}

/// Records a failed write to stdout: a closed pipe is dropped quietly, anything else is said on
/// stderr (once).
fn failed(e: &io::Error) {
    if e.kind() == io::ErrorKind::BrokenPipe {
        STATE.store(CLOSED, Ordering::Relaxed);
    } else if STATE.swap(FAILED, Ordering::Relaxed) != FAILED {
        eprintln!("error: cannot write to stdout: {e}");
    }
}

/// Whether a write to stdout failed for another reason than a closed pipe (the command then
/// exits with a failure status).
pub(crate) fn write_failed() -> bool {
    STATE.load(Ordering::Relaxed) == FAILED
}

/// Stdout as an [`io::Write`] with the same rules as [`write`]: once the reader is gone, writes
/// succeed without effect; another failure is reported and remembered, never returned. For
/// writers such as `serde_json::to_writer_pretty`.
pub(crate) struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if STATE.load(Ordering::Relaxed) == OPEN
            && let Err(e) = io::stdout().lock().write_all(buf)
        {
            failed(&e);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if STATE.load(Ordering::Relaxed) == OPEN
            && let Err(e) = io::stdout().lock().flush()
        {
            failed(&e);
        }
        Ok(())
    }
}
