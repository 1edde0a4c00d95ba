//! The audit log: one JSON line per operation, appended to `<data dir>/logs/audit.jsonl`
//! (configurable), rotated by size ([`AuditLog`], in `log.rs`), and summarised for
//! `mvault stats` ([`summarize`], [`prometheus`], in `stats.rs`).
//!
//! # Format
//! Each line is one [`Record`] as a JSON object:
//!
//! ```json
//! {"time":"2024-05-01T12:00:00.123Z","user":"ana@gpu-01","command":"push","remote":"s3://b/p",
//!  "model":"bert","version":"1.2.0","bytes":1048576,"duration_ms":850,"mb_per_s":1.23,
//!  "result":"ok","error":null}
//! ```
//!
//! # Concurrency and rotation
//! Many processes may append at once. Every append takes an exclusive lock
//! ([`std::fs::File::lock`]) on a sidecar lock file (`audit.lock` next to `audit.jsonl`), rotates
//! if needed, opens the log with `O_APPEND` and writes the whole line with one `write_all`.
//! Rotation happens before an append that would make the file grow beyond `max_bytes`:
//! `audit.jsonl.4` → `.5`, …, `.1` → `.2`, `audit.jsonl` → `.1` (at most [`KEEP`] old files;
//! the oldest is dropped). Readers take a shared lock, so they never see a rotation half done.
//!
//! # Secrets
//! Records must not carry secrets. The `remote` should be a display name
//! ([`crate::remote::RemoteSpec::display_name`]); [`Record::new`] additionally drops any URL
//! query and user-info as a safety net. Error messages are stored as given: **the caller must
//! scrub them before** calling [`Record::set_error`] (e.g. with the CLI's output scrubber).
//! The log, its rotations and its lock file are mode 0600 (an existing log is tightened).
//!
//! Failing to write the audit log must never fail an operation: [`AuditLog::append`] returns a
//! `Result` that callers log as a warning (or use [`AuditLog::append_or_warn`]).

mod log;
pub(crate) mod stats;

use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

pub use log::AuditLog;
pub use stats::{OpStats, prometheus, register, summarize, write_metrics_file};

/// Default size at which the log is rotated: 10 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 10 << 20;
/// Rotated files kept (`audit.jsonl.1` … `audit.jsonl.5`).
pub const KEEP: usize = 5;
/// Error messages longer than this (in bytes) are cut, so lines stay small.
pub const MAX_ERROR_LEN: usize = 2048;
/// `result` of a successful operation.
pub const RESULT_OK: &str = "ok";
/// `result` of a failed operation.
pub const RESULT_ERROR: &str = "error";

/// One operation, one line of the audit log.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Record {
    /// When the operation started, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// `user@host`.
    pub user: String,
    /// Sub-command (`push`, `pull`, `sync`, `gc`, ...).
    pub command: String,
    /// Remote display name: a provider name or a URL without query or credentials.
    pub remote: String,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    /// Bytes moved (for transfers: local, logical bytes, as in
    /// [`crate::transfer::Summary::bytes_local`]).
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub duration_ms: u64,
    /// Megabytes (10^6 bytes) per second; 0 when nothing was moved.
    #[serde(default)]
    pub mb_per_s: f64,
    /// [`RESULT_OK`] or [`RESULT_ERROR`].
    pub result: String,
    /// Error message, already scrubbed of secrets by the caller.
    #[serde(default)]
    pub error: Option<String>,
    /// What the command did beyond model and version, in a few words (`alias prod -> 1.2.0
    /// (was 1.1.0)`, `removed 1.0.0, 1.1.0`, `2 missing, 0 damaged`); absent when nothing
    /// to add. Already scrubbed of secrets by the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `m` cut to at most [`MAX_ERROR_LEN`] bytes (on a character boundary, `…` appended).
fn cut(mut m: String) -> String {
    if m.len() > MAX_ERROR_LEN {
        let mut at = MAX_ERROR_LEN;
        while !m.is_char_boundary(at) {
            at -= 1;
        }
        m.truncate(at);
        m.push('…');
    }
    m
}

impl Record {
    /// A successful record for `command` on `remote`, stamped now with `user@host`.
    /// `remote` loses any URL query (`?...`), fragment and user-info.
    pub fn new(command: &str, remote: &str) -> Record {
        Record {
            time: format_time(SystemTime::now()),
            user: crate::util::user_at_host(),
            command: command.to_string(),
            remote: redact_remote(remote),
            model: None,
            version: None,
            bytes: 0,
            duration_ms: 0,
            mb_per_s: 0.0,
            result: RESULT_OK.to_string(),
            error: None,
            detail: None,
        }
    }

    /// Sets bytes, duration and throughput (MB = 10^6 bytes).
    pub fn set_transfer(&mut self, bytes: u64, duration: Duration) {
        let secs = duration.as_secs_f64();
        self.bytes = bytes;
        self.duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        self.mb_per_s = if bytes > 0 && secs > 0.0 {
            bytes as f64 / 1e6 / secs
        } else {
            0.0
        };
    }

    /// Marks the record failed. `message` must already be free of secrets; it is cut to
    /// [`MAX_ERROR_LEN`] bytes.
    pub fn set_error(&mut self, message: impl std::fmt::Display) {
        self.result = RESULT_ERROR.to_string();
        self.error = Some(cut(message.to_string()));
    }

    /// Sets [`Record::detail`], cut to [`MAX_ERROR_LEN`] bytes like an error message.
    pub fn set_detail(&mut self, detail: impl std::fmt::Display) {
        self.detail = Some(cut(detail.to_string()));
    }

    pub fn is_ok(&self) -> bool {
        self.result == RESULT_OK
    }

    /// The record's time, if it parses.
    pub fn timestamp(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.time)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// RFC 3339 UTC with milliseconds (`2024-05-01T12:00:00.123Z`).
pub fn format_time(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A remote for the log: URLs lose their query, fragment and user-info; names and paths are
/// kept as they are.
pub fn redact_remote(remote: &str) -> String {
    let Some((scheme, rest)) = remote.split_once("://") else {
        return remote.to_string();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
pub(crate) fn rec(command: &str, remote: &str, ok: bool, bytes: u64, ms: u64) -> Record {
    let mut r = Record::new(command, remote);
    r.set_transfer(bytes, Duration::from_millis(ms));
    if !ok {
        r.set_error("boom");
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_lose_secrets() {
        assert_eq!(
            redact_remote("s3://b/p?endpoint=http://x&secret_access_key=k"),
            "s3://b/p"
        );
        assert_eq!(redact_remote("s3://AKIA:secret@bucket/p"), "s3://bucket/p");
        assert_eq!(redact_remote("file:///data/vault"), "file:///data/vault");
        assert_eq!(redact_remote("prod"), "prod");
        assert_eq!(Record::new("push", "gs://b?token=t").remote, "gs://b");
        let mut long = Record::new("push", "x");
        long.set_error("é".repeat(MAX_ERROR_LEN));
        assert!(long.error.unwrap().len() <= MAX_ERROR_LEN + '…'.len_utf8());
    }
}
