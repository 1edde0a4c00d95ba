//! Running library futures from Python: on the module's tokio runtime, with the GIL released,
//! interruptible by Ctrl-C, and with progress forwarded to a Python callable.
//!
//! The calling thread blocks on the future; every [`TICK`] it re-acquires the GIL for a moment
//! to run Python's signal handlers (`Python::check_signals`) and to report progress. When a
//! handler raises (`KeyboardInterrupt` from SIGINT), the future is dropped, which cancels the
//! operation: a push then never writes its manifest (the manifest is written last), and a pull
//! never leaves a partial file in its target (files appear there only by renaming complete
//! temporary files; see `mvault::transfer::pull`).

use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use indicatif::ProgressBar;
use pyo3::prelude::*;
use pyo3::types::PyBool;

use mvault::transfer::Progress;

/// How often a blocked call checks for signals and reports progress.
pub const TICK: Duration = Duration::from_millis(100);

/// The module's runtime: every call blocks on it with the GIL released.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("mvault")
            .build()
            .expect("tokio runtime")
    })
}

/// Runs the future `make` returns to completion with the GIL released; Python signal handlers
/// run every [`TICK`], and an exception they raise cancels the future (it is dropped) and is
/// returned. `sink` gets the progress every tick and once at the end.
pub fn run<T, M, F>(py: Python<'_>, sink: Option<&Sink>, make: M) -> PyResult<T>
where
    T: Send,
    M: FnOnce() -> F + Send,
    F: Future<Output = PyResult<T>>,
{
    let out = py.detach(|| {
        runtime().block_on(async {
            let mut fut = std::pin::pin!(make());
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    r = &mut fut => return r,
                    _ = tick.tick() => Python::attach(|py| -> PyResult<()> {
                        py.check_signals()?;
                        if let Some(s) = sink {
                            s.report(py, false)?;
                        }
                        Ok(())
                    })?,
                }
            }
        })
    });
    if let Some(s) = sink {
        let end = if out.is_ok() {
            s.report(py, true)
        } else {
            Ok(())
        };
        s.close(py);
        end?;
    }
    out
}

/// Forwards a transfer's progress (bytes done of total) to a Python callable, at most once
/// per [`TICK`] and only when it changed. The transfer updates a hidden `indicatif` bar; the
/// sink reads it while holding the GIL briefly, never during I/O.
pub struct Sink {
    bar: ProgressBar,
    callback: Py<PyAny>,
    /// The callable is our tqdm adapter: close it when done.
    owned: bool,
    last: Mutex<Option<(u64, u64)>>,
}

impl Sink {
    /// The sink `progress=` asks for: `None`/`False` none; `True` a tqdm bar (none when tqdm is
    /// not installed); a callable `f(done, total)`.
    pub fn from_arg(
        py: Python<'_>,
        progress: Option<&Bound<'_, PyAny>>,
        desc: &str,
    ) -> PyResult<Option<Sink>> {
        let Some(p) = progress.filter(|p| !p.is_none()) else {
            return Ok(None);
        };
        let (callback, owned) = if let Ok(b) = p.cast::<PyBool>() {
            if !b.is_true() {
                return Ok(None);
            }
            let bar = py
                .import("mvault._progress")?
                .getattr("tqdm_bar")?
                .call1((desc,))?;
            if bar.is_none() {
                return Ok(None);
            }
            (bar.unbind(), true)
        } else if p.is_callable() {
            (p.clone().unbind(), false)
        } else {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "progress must be None, a bool or a callable f(done, total)",
            ));
        };
        Ok(Some(Sink {
            bar: ProgressBar::hidden(),
            callback,
            owned,
            last: Mutex::new(None),
        }))
    }

    /// The transfer-side handle updating this sink.
    pub fn progress(&self) -> Progress {
        Progress::from_bar(self.bar.clone())
    }

    /// Calls the callable if the figures changed; before the transfer knows its total (or
    /// when there is nothing to transfer) only at the `end`.
    fn report(&self, py: Python<'_>, end: bool) -> PyResult<()> {
        let now = (self.bar.position(), self.bar.length().unwrap_or(0));
        if now == (0, 0) && !end {
            return Ok(());
        }
        {
            let mut last = self.last.lock().expect("progress state");
            if *last == Some(now) {
                return Ok(());
            }
            *last = Some(now);
        }
        self.callback.call1(py, now)?;
        Ok(())
    }

    fn close(&self, py: Python<'_>) {
        if self.owned
            && let Err(e) = self.callback.call_method0(py, "close")
        {
            e.write_unraisable(py, None);
        }
    }
}
