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

/// A spinner on stderr with a message, for a wait of unknown length (a deal's publication, a
/// message's execution); hidden when stderr is not a terminal.
pub(crate) fn spinner(message: impl Into<std::borrow::Cow<'static, str>>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
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

/// Progress of the sealing engine's phases on stderr: one bar per layer (nodes/s and ETA), one for
/// SNARK partitions, a line per step. Hidden when stderr is not a terminal.
pub(crate) struct Bars {
    multi: indicatif::MultiProgress,
    bar: Option<ProgressBar>,
    layer: usize,
    skipped: bool,
}

impl Bars {
    pub(crate) fn new() -> Self {
        let multi = indicatif::MultiProgress::new();
        if !std::io::stderr().is_terminal() {
            multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        Bars {
            multi,
            bar: None,
            layer: 0,
            skipped: false,
        }
    }

    /// Whether the engine reported the phase as done earlier (and so skipped it).
    pub(crate) fn skipped(&self) -> bool {
        self.skipped
    }

    fn bar(&mut self, len: u64, template: &str) -> &ProgressBar {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
        let bar = self.multi.add(ProgressBar::new(len)).with_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(250));
        self.bar.insert(bar)
    }

    /// The callback the sealing engine calls.
    pub(crate) fn update(&mut self, p: lode_sealing::seal::Progress) -> std::ops::ControlFlow<()> {
        use lode_sealing::seal::Progress;
        match p {
            Progress::Layer {
                layer,
                layers,
                done,
                nodes,
            } => {
                if self.layer != layer {
                    self.layer = layer;
                    let bar = self.bar(
                        nodes,
                        "layer {msg} [{bar:40}] {pos}/{len} nodes ({per_sec}, {eta} left)",
                    );
                    bar.set_message(format!("{layer} of {layers}"));
                }
                if let Some(b) = &self.bar {
                    b.set_position(done);
                }
            }
            Progress::LayerResumed { layer } => {
                let _ = self
                    .multi
                    .println(format!("layer {layer} complete on disk: resumed"));
            }
            Progress::Step(step) => {
                if let Some(b) = self.bar.take() {
                    b.finish();
                }
                let _ = self.multi.println(format!("{step}…"));
            }
            Progress::PhaseDone(phase) => {
                self.skipped = true;
                let _ = self.multi.println(format!("{phase} done earlier: skipped"));
            }
            Progress::Partition { done, total } => {
                if done == 0 || self.bar.is_none() {
                    self.bar(
                        total as u64,
                        "proving [{bar:40}] partition {pos}/{len} ({elapsed} elapsed, {eta} left)",
                    );
                }
                if let Some(b) = &self.bar {
                    b.set_position(done as u64);
                    if done == total {
                        b.finish();
                    }
                }
            }
        }
        std::ops::ControlFlow::Continue(())
    }
}
