//! indicatif progress bars, drawn only when stderr is a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use cairn_store::Progress;

/// A bar of bytes with a count of files (or packs) in its message.
pub struct Bar {
    bar: Option<ProgressBar>,
    unit: &'static str,
    files: std::sync::atomic::AtomicU64,
    total_files: std::sync::atomic::AtomicU64,
}

impl Bar {
    /// A bar, hidden when `quiet` or stderr is not a terminal.
    pub fn new(quiet: bool, verb: &'static str) -> Self {
        Self::counting(quiet, verb, "files")
    }

    /// A bar whose message counts `unit` (`packs`).
    pub fn counting(quiet: bool, verb: &'static str, unit: &'static str) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b.set_prefix(verb);
            b
        });
        Self {
            bar,
            unit,
            files: 0.into(),
            total_files: 0.into(),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn start(&self, files: u64, bytes: u64) {
        self.total_files
            .store(files, std::sync::atomic::Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.set_length(bytes);
            b.set_message(format!("0/{files} {}", self.unit));
        }
    }

    fn bytes(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    fn file_done(&self) {
        let done = self
            .files
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if let Some(b) = &self.bar {
            let total = self.total_files.load(std::sync::atomic::Ordering::Relaxed);
            b.set_message(format!("{done}/{total} {}", self.unit));
        }
    }
}

impl cairn_store::replicate::ReplicateProgress for Bar {
    fn start(&self, packs: u64, bytes: u64) {
        Progress::start(self, packs, bytes);
    }

    fn pack_sent(&self, bytes: u64) {
        self.bytes(bytes);
        self.file_done();
    }
}
