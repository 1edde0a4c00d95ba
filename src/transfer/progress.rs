//! Progress display: one byte bar per run, drawn only on a terminal and never with `--quiet`.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A cheap, cloneable handle; every method is a no-op when hidden.
#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A progress bar on stderr if stderr is a terminal, hidden otherwise.
    pub fn stderr_if_terminal(quiet: bool) -> Progress {
        if quiet || !std::io::stderr().is_terminal() {
            return Progress::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:20!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        Progress { bar }
    }

    /// Reports into `bar`, which the caller owns and may draw or read (the Python package
    /// reads a hidden bar's position to call its `progress=` callback).
    pub fn from_bar(bar: ProgressBar) -> Progress {
        Progress { bar }
    }

    pub fn hidden() -> Progress {
        Progress {
            bar: ProgressBar::hidden(),
        }
    }

    /// Starts a phase (`pushing bert@1.0.0`) of `total_bytes`.
    pub fn start(&self, message: String, total_bytes: u64) {
        self.bar.set_message(message);
        self.bar.set_length(total_bytes);
        self.bar.set_position(0);
    }

    pub fn inc(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
