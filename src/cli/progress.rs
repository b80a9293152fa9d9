//! Progress bars for long-running work, shown only on a terminal.

use std::io::{self, IsTerminal, Read};

use indicatif::{ProgressBar, ProgressStyle};

/// Inputs smaller than this finish in well under a second: no bar.
const MIN_BYTES_FOR_BAR: u64 = 256 << 20;

/// A byte-count progress bar on stderr, or a hidden one when stderr is not a terminal or the job is small.
pub(crate) fn bytes_bar(total: Option<u64>, message: &'static str) -> ProgressBar {
    let visible = std::io::stderr().is_terminal() && total.is_none_or(|t| t >= MIN_BYTES_FOR_BAR);
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(t) => ProgressBar::new(t).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} ({binary_bytes_per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{msg} {bytes} ({binary_bytes_per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.with_message(message)
}

/// A reader that advances a progress bar.
pub(crate) struct ProgressReader<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R> ProgressReader<R> {
    pub(crate) fn new(inner: R, bar: ProgressBar) -> Self {
        ProgressReader { inner, bar }
    }

    pub(crate) fn finish(self) {
        self.bar.finish_and_clear();
    }
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}
