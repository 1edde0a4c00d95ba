//! Moving versions between a directory, the local cache and a remote: the push and pull
//! pipelines, shared transfer options, the rate limiter and the statistics every run reports.
//!
//! CPU work (chunking, hashing, compression, verification) runs on blocking threads; requests
//! run on the async runtime, at most `jobs` at a time; every queue between stages is bounded,
//! so memory stays proportional to `jobs` × the largest chunk, whatever the model size.

mod cut;
pub mod engine;
mod progress;
mod publish;
pub mod pull;
mod push;
pub mod ratelimit;
mod sync;
mod target;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

pub use progress::{Display as ProgressDisplay, Event as ProgressEvent, FileProgress, Progress};
pub use pull::{PullOutcome, PullRequest, pull};
pub use push::{PushRequest, push};
pub use ratelimit::RateLimiter;
pub use sync::{SyncReport, sync};

use crate::error::Category;
use crate::manifest;
use crate::remote;

/// Errors of a push or pull.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Remote(#[from] remote::Error),
    /// gc's pending records could not be read (a push reads them first).
    #[error(transparent)]
    Pending(#[from] remote::PendingError),
    #[error(transparent)]
    Manifest(#[from] manifest::Error),
    #[error(transparent)]
    Cache(#[from] crate::cache::Error),
    /// A version refused by the signature check (sync with trusted keys).
    #[error(transparent)]
    Trust(#[from] crate::trust::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The version exists (or another writer created it first): versions are immutable.
    #[error("{version} already exists on {remote}; versions are immutable, push a new version")]
    VersionExists {
        /// `name@version`.
        version: String,
        /// The remote's display name.
        remote: String,
    },
    #[error("{0} not found")]
    NotFound(String),
    #[error("integrity check failed: {0}")]
    Integrity(String),
    #[error("{0}")]
    Input(String),
    /// A pull would replace a file in the target that no earlier pull of this model wrote.
    #[error(
        "{0}: exists and was not written by mvault; refusing to overwrite it (move it away, \
         or pass --force to replace it)"
    )]
    WouldOverwrite(String),
}

impl Error {
    /// The category of this failure (exit code, exception class).
    pub fn category(&self) -> Category {
        match self {
            Error::Remote(e) => e.category(),
            Error::Pending(e) => e.category(),
            Error::Trust(e) => e.category(),
            Error::NotFound(_) => Category::NotFound,
            Error::VersionExists { .. } | Error::WouldOverwrite(_) => Category::Conflict,
            Error::Integrity(_) | Error::Manifest(_) => Category::Integrity,
            Error::Input(_) => Category::Usage,
            Error::Cache(_) | Error::Io { .. } => Category::Failure,
        }
    }

    pub(crate) fn io(path: impl std::fmt::Display, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_string(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Knobs shared by push, pull and sync.
#[derive(Clone)]
pub struct TransferOptions {
    /// Most requests in flight at once, across all files: the cap below which the
    /// [`engine::Limiter`] adapts.
    pub jobs: usize,
    /// Shared byte budget for all transfers (None: unlimited).
    pub rate: Option<Arc<RateLimiter>>,
    /// Progress display ([`Progress`]; hidden by default).
    pub progress: Progress,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            jobs: default_jobs(),
            rate: None,
            progress: Progress::hidden(),
        }
    }
}

/// Default cap on requests in flight: enough to hide ~50 ms of first-byte latency per
/// request at cloud bandwidths; transfers start lower and grow only while it pays
/// ([`engine`]).
pub fn default_jobs() -> usize {
    64
}

/// Counters of one run. Cheap to share; read with [`Stats::summary`].
#[derive(Debug, Default)]
pub struct Stats {
    /// Plaintext bytes read from local files (push) or written to them (pull).
    pub bytes_local: AtomicU64,
    /// Bytes sent to or received from the remote, as stored (after compression).
    pub bytes_remote: AtomicU64,
    /// Chunks transferred.
    pub chunks_new: AtomicU64,
    /// Chunks not transferred because the other side already had them.
    pub chunks_reused: AtomicU64,
    /// Pack objects written (push); each holds several of `chunks_new`.
    pub packs_new: AtomicU64,
    /// Files materialized or uploaded; and files skipped as already in place.
    pub files_done: AtomicU64,
    pub files_skipped: AtomicU64,
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A snapshot for humans and `--json`.
    pub fn summary(&self, started: Instant, retries: u64) -> Summary {
        let seconds = started.elapsed().as_secs_f64();
        let local = self.bytes_local.load(Ordering::Relaxed);
        let remote = self.bytes_remote.load(Ordering::Relaxed);
        Summary {
            bytes_local: local,
            bytes_remote: remote,
            chunks_new: self.chunks_new.load(Ordering::Relaxed),
            chunks_reused: self.chunks_reused.load(Ordering::Relaxed),
            packs_new: self.packs_new.load(Ordering::Relaxed),
            files_done: self.files_done.load(Ordering::Relaxed),
            files_skipped: self.files_skipped.load(Ordering::Relaxed),
            retries,
            seconds,
            mb_per_s: if seconds > 0.0 {
                local as f64 / 1e6 / seconds
            } else {
                0.0
            },
        }
    }
}

/// Final figures of a run (`--json` prints this object).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub bytes_local: u64,
    pub bytes_remote: u64,
    pub chunks_new: u64,
    pub chunks_reused: u64,
    /// Pack objects written (each with its index): a push's chunk objects of at most 4 MiB
    /// are sent in packs (`docs/FORMAT.md`, "Packs").
    pub packs_new: u64,
    pub files_done: u64,
    pub files_skipped: u64,
    pub retries: u64,
    pub seconds: f64,
    /// Local (logical) megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
}

/// Runs CPU-bound `f` on the blocking pool.
pub(crate) async fn cpu<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking task panicked")
}
