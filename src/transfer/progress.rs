//! Progress of a transfer, shown one of four ways:
//!
//! - **bars** (stderr is a terminal): a total bar and one bar per active file (indicatif's
//!   multi-progress), with bytes, rate and ETA;
//! - **log** (stderr is not a terminal: CI logs, Kubernetes): one status line on stderr every
//!   [`Progress::interval`] (5 s unless `MVAULT_PROGRESS_INTERVAL` says otherwise, in seconds),
//!   `mvault: pull bert@1.0.0: 512.00 MiB of 1.30 GiB (38%), 210.40 MiB/s, ETA 4s, 3 files active`
//!   (ETA `4m05s`, `2h03m` when longer, `?` during the first [`ETA_AFTER`]);
//! - **json** (`--json`): the same as JSON lines on stderr, for tools: `start`, `progress`
//!   (every interval), `file_done` (each file, once verified or all its chunks stored),
//!   `finish` (see [`Event`]);
//! - **hidden** (`--quiet`, library default), or a caller's own bar ([`Progress::from_bar`],
//!   which the Python package reads for its `progress=` callback).
//!
//! A cheap, cloneable handle; counting is a relaxed atomic add whatever the display.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    Hidden,
    Bars,
    Log,
    Json,
}

/// A progress record of the `json` display: one JSON object per line on stderr.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event<'a> {
    /// A transfer phase begins (`operation` as `pull bert@1.0.0`).
    Start {
        operation: &'a str,
        total_bytes: u64,
    },
    /// Every interval while it runs.
    Progress {
        operation: &'a str,
        bytes: u64,
        total_bytes: u64,
        bytes_per_sec: u64,
        /// Seconds left at the current rate; absent (`null`) during the phase's first
        /// [`ETA_AFTER`] and while no byte has moved, when a rate means nothing yet.
        eta_secs: Option<u64>,
        active_files: usize,
    },
    /// A file is complete (pull: assembled and verified; push: all its chunks stored).
    FileDone { path: &'a str, size: u64 },
    /// The phase ended.
    Finish {
        operation: &'a str,
        bytes: u64,
        elapsed_secs: f64,
    },
}

/// A phase shows no ETA before it has run this long: bytes are counted as whole chunks are
/// done, so the first moments' rate can be a thousandth of the real one (a 1 s pull showed
/// `ETA 32110s` at 0.2 s).
pub const ETA_AFTER: Duration = Duration::from_secs(1);

/// `secs` as people read a time left: `45s`, `4m05s`, `2h03m`.
fn eta_text(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A cheap, cloneable handle; every method is a no-op when hidden.
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

struct Inner {
    display: Display,
    /// Counts bytes in every display; drawn only for bars (or by the caller's own bar).
    total: ProgressBar,
    multi: Option<MultiProgress>,
    active: AtomicUsize,
    state: Mutex<Phase>,
    interval: Duration,
}

#[derive(Default)]
struct Phase {
    operation: String,
    started: Option<Instant>,
    /// Stops the log/json reporter thread when dropped or sent to.
    stop: Option<mpsc::Sender<()>>,
    reporter: Option<std::thread::JoinHandle<()>>,
}

/// One file's share of the progress, for as long as it is transferred.
pub struct FileProgress {
    progress: Progress,
    bar: Option<ProgressBar>,
    path: String,
    size: u64,
}

impl FileProgress {
    /// Counts `bytes` of this file (and of the total).
    pub fn inc(&self, bytes: u64) {
        self.progress.inner.total.inc(bytes);
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
    }

    /// The file is complete.
    pub fn finish(self) {
        if self.progress.inner.display == Display::Json {
            emit(&Event::FileDone {
                path: &self.path,
                size: self.size,
            });
        }
    }
}

impl Drop for FileProgress {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
            if let Some(m) = &self.progress.inner.multi {
                m.remove(b);
            }
        }
        self.progress.inner.active.fetch_sub(1, Ordering::Relaxed);
    }
}

fn total_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{msg:24!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
    )
    .expect("valid template")
    .progress_chars("=> ")
}

fn file_style() -> ProgressStyle {
    ProgressStyle::with_template("  {msg:22!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
        .expect("valid template")
        .progress_chars("-> ")
}

impl Progress {
    /// The display a command line wants on stderr: nothing with `quiet`, JSON lines with
    /// `json`, bars on a terminal, status lines otherwise.
    pub fn for_stderr(quiet: bool, json: bool) -> Progress {
        let display = if quiet {
            Display::Hidden
        } else if json {
            Display::Json
        } else if std::io::stderr().is_terminal() {
            Display::Bars
        } else {
            Display::Log
        };
        Progress::new(display)
    }

    /// Progress shown as `display` (bars go to stderr).
    pub fn new(display: Display) -> Progress {
        let (total, multi) = match display {
            Display::Bars => {
                let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
                let bar = multi.add(ProgressBar::new(0));
                bar.set_style(total_style());
                (bar, Some(multi))
            }
            _ => (ProgressBar::hidden(), None),
        };
        Progress::with(display, total, multi)
    }

    fn with(display: Display, total: ProgressBar, multi: Option<MultiProgress>) -> Progress {
        let interval = std::env::var("MVAULT_PROGRESS_INTERVAL")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|s| *s > 0.0 && *s < 86_400.0)
            .map_or(Duration::from_secs(5), Duration::from_secs_f64);
        Progress {
            inner: Arc::new(Inner {
                display,
                total,
                multi,
                active: AtomicUsize::new(0),
                state: Mutex::new(Phase::default()),
                interval,
            }),
        }
    }

    /// Reports into `bar`, which the caller owns and may draw or read (the Python package
    /// reads a hidden bar's position to call its `progress=` callback).
    pub fn from_bar(bar: ProgressBar) -> Progress {
        Progress::with(Display::Hidden, bar, None)
    }

    pub fn hidden() -> Progress {
        Progress::new(Display::Hidden)
    }

    /// How often the log and json displays report.
    pub fn interval(&self) -> Duration {
        self.inner.interval
    }

    /// Starts a phase (`push bert@1.0.0`) of `total_bytes`.
    pub fn start(&self, operation: String, total_bytes: u64) {
        let inner = &self.inner;
        inner.total.set_message(operation.clone());
        inner.total.set_length(total_bytes);
        inner.total.set_position(0);
        inner.total.reset_eta();
        self.stop_reporter();
        let mut phase = inner.state.lock().expect("progress lock");
        phase.operation = operation;
        phase.started = Some(Instant::now());
        if !matches!(inner.display, Display::Log | Display::Json) {
            return;
        }
        if inner.display == Display::Json {
            emit(&Event::Start {
                operation: &phase.operation,
                total_bytes,
            });
        }
        let (tx, rx) = mpsc::channel::<()>();
        // Weak: a handle dropped without `finish` drops the sender, which ends the thread.
        let weak = Arc::downgrade(&self.inner);
        let interval = inner.interval;
        phase.stop = Some(tx);
        phase.reporter = Some(std::thread::spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(interval) {
                match weak.upgrade() {
                    Some(inner) => Progress { inner }.report(),
                    None => return,
                }
            }
        }));
    }

    /// One status line (log) or `progress` event (json) of the running phase.
    fn report(&self) {
        let inner = &self.inner;
        let (operation, started) = {
            let phase = inner.state.lock().expect("progress lock");
            (phase.operation.clone(), phase.started)
        };
        let (bytes, total) = (inner.total.position(), inner.total.length().unwrap_or(0));
        let rate = inner.total.per_sec();
        let settled = started.is_some_and(|t| t.elapsed() >= ETA_AFTER);
        let eta = (settled && rate > 0.0 && bytes > 0)
            .then(|| (total.saturating_sub(bytes) as f64 / rate).ceil() as u64);
        let active = inner.active.load(Ordering::Relaxed);
        match inner.display {
            Display::Json => emit(&Event::Progress {
                operation: &operation,
                bytes,
                total_bytes: total,
                bytes_per_sec: rate as u64,
                eta_secs: eta,
                active_files: active,
            }),
            _ => {
                let pct = (bytes * 100).checked_div(total).unwrap_or(100);
                let eta =
                    eta.map_or_else(|| "ETA ?".to_string(), |s| format!("ETA {}", eta_text(s)));
                let files = match active {
                    1 => ", 1 file active".to_string(),
                    n if n > 1 => format!(", {n} files active"),
                    _ => String::new(),
                };
                line(&format!(
                    "mvault: {operation}: {} of {} ({pct}%), {}/s, {eta}{files}",
                    HumanBytes(bytes),
                    HumanBytes(total),
                    HumanBytes(rate as u64),
                ));
            }
        }
    }

    /// Stops the reporter thread, if any, and waits for it (without holding the state lock,
    /// which its report takes).
    fn stop_reporter(&self) {
        let handle = {
            let mut phase = self.inner.state.lock().expect("progress lock");
            phase.stop = None; // disconnects: the reporter's wait ends
            phase.reporter.take()
        };
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// Counts `bytes` done that belong to no file bar.
    pub fn inc(&self, bytes: u64) {
        self.inner.total.inc(bytes);
    }

    /// A bar for `path` (of `size` bytes) while it is transferred; count its bytes through it.
    pub fn file(&self, path: &str, size: u64) -> FileProgress {
        self.inner.active.fetch_add(1, Ordering::Relaxed);
        let bar = self.inner.multi.as_ref().map(|m| {
            let b = m.add(ProgressBar::new(size));
            b.set_style(file_style());
            b.set_message(path.to_string());
            b
        });
        FileProgress {
            progress: self.clone(),
            bar,
            path: path.to_string(),
            size,
        }
    }

    /// Ends the phase: clears bars, stops status lines (json: a `finish` event).
    pub fn finish(&self) {
        let inner = &self.inner;
        self.stop_reporter();
        let mut phase = inner.state.lock().expect("progress lock");
        if inner.display == Display::Json
            && let Some(started) = phase.started
        {
            emit(&Event::Finish {
                operation: &phase.operation,
                bytes: inner.total.position(),
                elapsed_secs: started.elapsed().as_secs_f64(),
            });
        }
        phase.started = None;
        inner.total.finish_and_clear();
    }
}

/// Writes one line to stderr at once (lines of concurrent threads never interleave).
fn line(s: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{s}");
}

fn emit(event: &Event<'_>) {
    line(&serde_json::to_string(event).expect("event serializes"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_json_lines() {
        let e = Event::Progress {
            operation: "pull m@1.0.0",
            bytes: 5,
            total_bytes: 10,
            bytes_per_sec: 2,
            eta_secs: Some(3),
            active_files: 1,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"progress","operation":"pull m@1.0.0","bytes":5,"total_bytes":10,"bytes_per_sec":2,"eta_secs":3,"active_files":1}"#
        );
        let e = Event::FileDone {
            path: "a/b",
            size: 7,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"file_done","path":"a/b","size":7}"#
        );
    }

    #[test]
    fn eta_reads_as_minutes_and_hours() {
        let cases = [(0, "0s"), (45, "45s"), (60, "1m00s"), (245, "4m05s")];
        for (secs, want) in cases.into_iter().chain([(3600, "1h00m"), (7380, "2h03m")]) {
            assert_eq!(eta_text(secs), want, "{secs}");
        }
    }

    #[test]
    fn file_bars_count_into_the_total() {
        let p = Progress::hidden();
        p.start("pull m@1".into(), 10);
        let f = p.file("a", 6);
        f.inc(4);
        p.inc(3);
        assert_eq!(p.inner.total.position(), 7);
        assert_eq!(p.inner.active.load(Ordering::Relaxed), 1);
        f.finish();
        assert_eq!(p.inner.active.load(Ordering::Relaxed), 0);
        p.finish();
    }
}
