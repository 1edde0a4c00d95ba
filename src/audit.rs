//! The audit log: one JSON line per operation, appended to `<data dir>/logs/audit.jsonl`
//! (configurable), rotated by size, and summarised by `mvault stats`.
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
//! scrub them before** calling [`Record::with_error`] (e.g. with the CLI's output scrubber).
//! The log, its rotations and its lock file are mode 0600 (an existing log is tightened).
//!
//! Failing to write the audit log must never fail an operation: [`AuditLog::append`] returns a
//! `Result` that callers log as a warning (or use [`AuditLog::append_or_warn`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::config::AuditConfig;
use crate::transfer::Summary;

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
    /// Bytes moved (for transfers: local, logical bytes, as in [`Summary::bytes_local`]).
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
}

impl Record {
    /// A successful record for `command` on `remote`, stamped now with `user@host`.
    /// `remote` loses any URL query (`?...`), fragment and user-info.
    pub fn new(command: &str, remote: &str) -> Record {
        Record {
            time: format_time(SystemTime::now()),
            user: user_at_host(),
            command: command.to_string(),
            remote: redact_remote(remote),
            model: None,
            version: None,
            bytes: 0,
            duration_ms: 0,
            mb_per_s: 0.0,
            result: RESULT_OK.to_string(),
            error: None,
        }
    }

    pub fn with_model(mut self, model: impl Into<String>) -> Record {
        self.model = Some(model.into());
        self
    }

    pub fn with_version(mut self, version: impl Into<String>) -> Record {
        self.version = Some(version.into());
        self
    }

    /// Sets bytes, duration and throughput (MB = 10^6 bytes).
    pub fn with_transfer(mut self, bytes: u64, duration: Duration) -> Record {
        let secs = duration.as_secs_f64();
        self.bytes = bytes;
        self.duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        self.mb_per_s = if bytes > 0 && secs > 0.0 {
            bytes as f64 / 1e6 / secs
        } else {
            0.0
        };
        self
    }

    /// Sets the duration only (operations that move no data).
    pub fn with_duration(self, duration: Duration) -> Record {
        let bytes = self.bytes;
        self.with_transfer(bytes, duration)
    }

    /// Bytes, duration and throughput from a transfer's summary (local, logical bytes,
    /// the same figures the run reports).
    pub fn with_summary(mut self, s: &Summary) -> Record {
        self.bytes = s.bytes_local;
        self.duration_ms = (s.seconds.max(0.0) * 1000.0) as u64;
        self.mb_per_s = if s.mb_per_s.is_finite() {
            s.mb_per_s
        } else {
            0.0
        };
        self
    }

    /// Marks the record failed. `message` must already be free of secrets; it is cut to
    /// [`MAX_ERROR_LEN`] bytes.
    pub fn with_error(mut self, message: impl std::fmt::Display) -> Record {
        let mut m = message.to_string();
        if m.len() > MAX_ERROR_LEN {
            let mut cut = MAX_ERROR_LEN;
            while !m.is_char_boundary(cut) {
                cut -= 1;
            }
            m.truncate(cut);
            m.push('…');
        }
        self.result = RESULT_ERROR.to_string();
        self.error = Some(m);
        self
    }

    /// Ok, or [`Record::with_error`] with the error's message (which must be secret-free).
    pub fn with_result<T, E: std::fmt::Display>(self, r: &Result<T, E>) -> Record {
        match r {
            Ok(_) => self,
            Err(e) => self.with_error(e),
        }
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

/// `$USER` (else `$LOGNAME`, `$USERNAME`, else `unknown`) `@` the host name.
pub fn user_at_host() -> String {
    let user = ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let host = if host.is_empty() {
        "unknown".to_string()
    } else {
        host
    };
    format!("{user}@{host}")
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

/// Parses `--since`: a duration back from now (`30m`, `24h`, `7d`, `2w`), an RFC 3339 time,
/// or a date `YYYY-MM-DD` (midnight UTC).
pub fn parse_since(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    if let Some(secs) = crate::util::parse_duration_secs(s) {
        return SystemTime::now().checked_sub(Duration::from_secs(secs));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc).into());
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().into())
}

/// An audit log file with its rotation policy.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
    max_bytes: u64,
}

impl AuditLog {
    /// A log at `path`, rotated when an append would take it beyond `max_bytes`
    /// (0: never rotate).
    pub fn new(path: PathBuf, max_bytes: u64) -> Self {
        AuditLog { path, max_bytes }
    }

    /// The default location: `<data_dir>/logs/audit.jsonl`.
    pub fn default_path(data_dir: &Path) -> PathBuf {
        data_dir.join("logs").join("audit.jsonl")
    }

    /// From the config's `audit` section; unset values take the defaults
    /// (`<data_dir>/logs/audit.jsonl`, [`DEFAULT_MAX_BYTES`]).
    pub fn from_config(cfg: &AuditConfig, data_dir: &Path) -> Self {
        AuditLog::new(
            cfg.path
                .clone()
                .unwrap_or_else(|| AuditLog::default_path(data_dir)),
            cfg.max_size_bytes.unwrap_or(DEFAULT_MAX_BYTES),
        )
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The sidecar lock file: `audit.lock` for `audit.jsonl`.
    pub fn lock_path(&self) -> PathBuf {
        let p = self.path.with_extension("lock");
        if p == self.path {
            let mut s = self.path.clone().into_os_string();
            s.push(".lock");
            PathBuf::from(s)
        } else {
            p
        }
    }

    /// The `n`-th rotated file (`audit.jsonl.n`); 0 is the live file.
    pub fn rotated_path(&self, n: usize) -> PathBuf {
        if n == 0 {
            return self.path.clone();
        }
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    /// Appends one line, rotating first if needed. Safe across threads and processes.
    /// Errors are for the caller to log as warnings, never to fail the operation.
    pub fn append(&self, r: &Record) -> io::Result<()> {
        let mut line = serde_json::to_vec(r).map_err(io::Error::other)?;
        line.push(b'\n');
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(PRIVATE_MODE)
            .open(self.lock_path())?;
        lock.lock()?;
        let result = self.append_locked(&line);
        let _ = lock.unlock();
        result
    }

    /// [`AuditLog::append`], logging a failure as a warning.
    pub fn append_or_warn(&self, r: &Record) {
        if let Err(e) = self.append(r) {
            tracing::warn!("could not write the audit log {}: {e}", self.path.display());
        }
    }

    fn append_locked(&self, line: &[u8]) -> io::Result<()> {
        let len = match std::fs::metadata(&self.path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        if self.max_bytes > 0 && len > 0 && len.saturating_add(line.len() as u64) > self.max_bytes {
            self.rotate()?;
        }
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(PRIVATE_MODE)
            .open(&self.path)?;
        make_private(&f)?;
        // A writer that died mid-line left no newline: start ours on a fresh line, so only
        // the torn line is lost (readers skip it).
        let end = f.seek(SeekFrom::End(0))?;
        let mut buf = Vec::with_capacity(line.len() + 1);
        if end > 0 {
            let mut last = [0u8; 1];
            f.seek(SeekFrom::End(-1))?;
            f.read_exact(&mut last)?;
            if last[0] != b'\n' {
                buf.push(b'\n');
            }
        }
        buf.extend_from_slice(line);
        f.write_all(&buf)
    }

    /// Shifts `.4` → `.5`, …, `.1` → `.2`, live → `.1`. Caller holds the lock. Rotated files
    /// keep the live file's mode, which every append makes [`PRIVATE_MODE`].
    fn rotate(&self) -> io::Result<()> {
        for n in (1..KEEP).rev() {
            match std::fs::rename(self.rotated_path(n), self.rotated_path(n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.path, self.rotated_path(1))
    }

    /// All records, oldest first, from the rotated files and the live one; with `since`, only
    /// records at or after it. Malformed or torn lines are skipped. No log: no records.
    pub fn read_since(&self, since: Option<SystemTime>) -> io::Result<Vec<Record>> {
        let since: Option<DateTime<Utc>> = since.map(DateTime::<Utc>::from);
        // Shared lock so a concurrent rotation does not make us miss or repeat a file.
        // Without a lock file (read-only place, no log yet), read anyway.
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(PRIVATE_MODE)
            .open(self.lock_path())
            .or_else(|_| File::open(self.lock_path()))
            .ok();
        if let Some(l) = &lock {
            let _ = l.lock_shared();
        }
        let mut out = Vec::new();
        let mut result = Ok(());
        for n in (0..=KEEP).rev() {
            if let Err(e) = read_file(&self.rotated_path(n), since, &mut out) {
                result = Err(e);
                break;
            }
        }
        if let Some(l) = &lock {
            let _ = l.unlock();
        }
        result.map(|()| out)
    }
}

fn read_file(path: &Path, since: Option<DateTime<Utc>>, out: &mut Vec<Record>) -> io::Result<()> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    // Every record in the file was stamped before the file's last write.
    if let (Some(since), Ok(modified)) = (since, f.metadata().and_then(|m| m.modified()))
        && DateTime::<Utc>::from(modified) < since
    {
        return Ok(());
    }
    let mut reader = BufReader::new(f);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let Ok(r) = serde_json::from_slice::<Record>(&line) else {
            continue;
        };
        match since {
            None => out.push(r),
            Some(since) => {
                if r.timestamp().is_some_and(|t| t >= since) {
                    out.push(r);
                }
            }
        }
    }
}

/// Figures for one (command, remote) pair.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct OpStats {
    pub command: String,
    pub remote: String,
    pub count: u64,
    pub ok: u64,
    pub errors: u64,
    /// ok / count, in 0..=1.
    pub success_rate: f64,
    /// errors / count, in 0..=1.
    pub error_rate: f64,
    /// Over the records (ok or not) with bytes > 0 and duration > 0; None without any.
    pub median_mb_per_s: Option<f64>,
    /// Nearest-rank 95th percentile over the same records.
    pub p95_mb_per_s: Option<f64>,
    /// How many records the throughput figures are computed from.
    pub throughput_samples: u64,
    /// Bytes moved, over all records.
    pub bytes: u64,
}

/// Groups records by (command, remote); sorted by command, then remote.
pub fn summarize(records: &[Record]) -> Vec<OpStats> {
    #[derive(Default)]
    struct Acc {
        count: u64,
        ok: u64,
        bytes: u64,
        rates: Vec<f64>,
    }
    let mut groups: BTreeMap<(&str, &str), Acc> = BTreeMap::new();
    for r in records {
        let a = groups
            .entry((r.command.as_str(), r.remote.as_str()))
            .or_default();
        a.count += 1;
        if r.is_ok() {
            a.ok += 1;
        }
        a.bytes = a.bytes.saturating_add(r.bytes);
        if r.bytes > 0 && r.duration_ms > 0 {
            let rate = if r.mb_per_s.is_finite() && r.mb_per_s > 0.0 {
                r.mb_per_s
            } else {
                r.bytes as f64 / 1e6 / (r.duration_ms as f64 / 1000.0)
            };
            a.rates.push(rate);
        }
    }
    groups
        .into_iter()
        .map(|((command, remote), mut a)| {
            a.rates.sort_by(f64::total_cmp);
            let errors = a.count - a.ok;
            OpStats {
                command: command.to_string(),
                remote: remote.to_string(),
                count: a.count,
                ok: a.ok,
                errors,
                success_rate: a.ok as f64 / a.count as f64,
                error_rate: errors as f64 / a.count as f64,
                median_mb_per_s: median(&a.rates),
                p95_mb_per_s: nearest_rank(&a.rates, 95.0),
                throughput_samples: a.rates.len() as u64,
                bytes: a.bytes,
            }
        })
        .collect()
}

/// Median of sorted values (mean of the two middle ones for an even count).
fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// Nearest-rank percentile of sorted values: the value at rank ⌈p/100 · n⌉ (1-based).
fn nearest_rank(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Escapes a label value per the Prometheus text format: `\` → `\\`, `"` → `\"`,
/// newline → `\n`.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn prom_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// The stats in the Prometheus text exposition format (version 0.0.4):
/// `mvault_operations_total{command,remote,result}`, `mvault_bytes_total{command,remote}`,
/// `mvault_throughput_mb_per_s{command,remote,quantile="0.5"|"0.95"}` (only where there are
/// samples).
pub fn prometheus(stats: &[OpStats]) -> String {
    let labels = |s: &OpStats| {
        format!(
            "command=\"{}\",remote=\"{}\"",
            escape_label(&s.command),
            escape_label(&s.remote)
        )
    };
    let mut out = String::new();
    out.push_str("# HELP mvault_operations_total Operations recorded in the audit log.\n");
    out.push_str("# TYPE mvault_operations_total counter\n");
    for s in stats {
        let l = labels(s);
        let _ = writeln!(out, "mvault_operations_total{{{l},result=\"ok\"}} {}", s.ok);
        let _ = writeln!(
            out,
            "mvault_operations_total{{{l},result=\"error\"}} {}",
            s.errors
        );
    }
    out.push_str("# HELP mvault_bytes_total Bytes moved by recorded operations.\n");
    out.push_str("# TYPE mvault_bytes_total counter\n");
    for s in stats {
        let _ = writeln!(out, "mvault_bytes_total{{{}}} {}", labels(s), s.bytes);
    }
    out.push_str(
        "# HELP mvault_throughput_mb_per_s Throughput of recorded operations in MB (10^6 bytes) per second.\n",
    );
    out.push_str("# TYPE mvault_throughput_mb_per_s gauge\n");
    for s in stats {
        let l = labels(s);
        for (q, v) in [("0.5", s.median_mb_per_s), ("0.95", s.p95_mb_per_s)] {
            if let Some(v) = v {
                let _ = writeln!(
                    out,
                    "mvault_throughput_mb_per_s{{{l},quantile=\"{q}\"}} {}",
                    prom_float(v)
                );
            }
        }
    }
    out
}

/// Mode of the audit log, its rotations and its lock file: owner read/write only. Records name
/// users, hosts, remotes and models, which other users of the machine need not see.
const PRIVATE_MODE: u32 = 0o600;

/// Tightens an open audit file to [`PRIVATE_MODE`] if it allows more (a log created by an
/// older release, or copied in, was world-readable).
fn make_private(f: &File) -> io::Result<()> {
    if f.metadata()?.permissions().mode() & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(PRIVATE_MODE))?;
    }
    Ok(())
}

/// Writes [`prometheus`] output to `path` atomically (a temporary file in the same directory,
/// flushed, then renamed over `path`), e.g. for node_exporter's textfile collector.
pub fn write_metrics_file(path: &Path, stats: &[OpStats]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "metrics path has no file name")
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}.{}",
        name.to_string_lossy(),
        std::process::id(),
        fastrand::u64(..)
    ));
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(prometheus(stats).as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    };
    let r = write();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// A plain-text table of the stats for humans.
pub fn table(stats: &[OpStats]) -> String {
    let rate = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    let rows: Vec<[String; 8]> = stats
        .iter()
        .map(|s| {
            [
                s.command.clone(),
                s.remote.clone(),
                s.count.to_string(),
                format!("{:.1}%", s.success_rate * 100.0),
                format!("{:.1}%", s.error_rate * 100.0),
                rate(s.median_mb_per_s),
                rate(s.p95_mb_per_s),
                crate::util::human_bytes(s.bytes),
            ]
        })
        .collect();
    let header = [
        "COMMAND",
        "REMOTE",
        "COUNT",
        "OK",
        "ERRORS",
        "MEDIAN MB/s",
        "P95 MB/s",
        "BYTES",
    ];
    let mut widths: [usize; 8] = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            // Text columns left-aligned, numbers right-aligned.
            if i < 2 {
                let _ = write!(l, "{c:<w$}  ");
            } else {
                let _ = write!(l, "{c:>w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(command: &str, remote: &str, ok: bool, bytes: u64, ms: u64) -> Record {
        let r = Record::new(command, remote).with_transfer(bytes, Duration::from_millis(ms));
        if ok { r } else { r.with_error("boom") }
    }

    #[test]
    fn append_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(AuditLog::default_path(dir.path()), DEFAULT_MAX_BYTES);
        let a = Record::new("push", "s3://b/p")
            .with_model("bert")
            .with_version("v1.0.0")
            .with_transfer(5_000_000, Duration::from_secs(2));
        let b = Record::new("pull", "prod").with_error("not found: \"bert\"\nline two");
        log.append(&a).unwrap();
        log.append(&b).unwrap();
        assert_eq!(a.mb_per_s, 2.5);
        assert_eq!(a.duration_ms, 2000);
        let text = std::fs::read_to_string(log.path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        for l in &lines {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(v["time"].as_str().unwrap().ends_with('Z'));
            assert!(v["user"].as_str().unwrap().contains('@'));
        }
        assert!(dir.path().join("logs/audit.lock").exists());
        let back = log.read_since(None).unwrap();
        assert_eq!(back, vec![a, b]);
        assert!(back[0].timestamp().is_some());
    }

    #[test]
    fn missing_log_reads_empty_and_malformed_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("nope/audit.jsonl"), 0);
        assert!(log.read_since(None).unwrap().is_empty());

        let log = AuditLog::new(dir.path().join("audit.jsonl"), 0);
        let good = rec("gc", "file:///v", true, 0, 10);
        std::fs::write(log.path(), "not json\n{\"time\":1}\n{\"command\":\"torn").unwrap();
        // The next append starts on a fresh line despite the torn one.
        log.append(&good).unwrap();
        assert_eq!(log.read_since(None).unwrap(), vec![good]);
    }

    #[test]
    fn rotation_keeps_at_most_five_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let line_len = serde_json::to_vec(&rec("push", "s3://b/p", true, 1, 1))
            .unwrap()
            .len() as u64
            + 1;
        let max = line_len * 3; // about three lines per file
        let log = AuditLog::new(dir.path().join("audit.jsonl"), max);
        let mut all = Vec::new();
        for i in 0..40u64 {
            let r = rec("push", "s3://b/p", true, 1 + i % 9, 1);
            log.append(&r).unwrap();
            all.push(r);
        }
        for n in 0..=KEEP {
            let p = log.rotated_path(n);
            let len = std::fs::metadata(&p).unwrap().len();
            assert!(len > 0 && len <= max, "{}: {len} > {max}", p.display());
        }
        assert!(!log.rotated_path(KEEP + 1).exists());
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), KEEP + 2, "{names:?}"); // live + 5 rotated + lock
        // What is left is the most recent records, oldest first.
        let back = log.read_since(None).unwrap();
        assert!(back.len() >= KEEP * 2 && back.len() < all.len());
        assert_eq!(back[..], all[all.len() - back.len()..]);
    }

    #[test]
    fn concurrent_appends_are_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/audit.jsonl");
        const THREADS: usize = 8;
        const PER: usize = 100;
        // Big enough that nothing is dropped, small enough to rotate under contention.
        let max = 64 << 10;
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let log = AuditLog::new(path, max);
                    for i in 0..PER {
                        let r = Record::new("push", "s3://b/p")
                            .with_model(format!("m{t}"))
                            .with_version(format!("{i}.0.0"))
                            .with_error("x".repeat(i));
                        log.append(&r).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let log = AuditLog::new(path, max);
        let mut lines = 0;
        for n in 0..=KEEP {
            if let Ok(text) = std::fs::read_to_string(log.rotated_path(n)) {
                for l in text.lines() {
                    serde_json::from_str::<Record>(l).unwrap();
                    lines += 1;
                }
            }
        }
        assert_eq!(lines, THREADS * PER);
        let back = log.read_since(None).unwrap();
        assert_eq!(back.len(), THREADS * PER);
        for t in 0..THREADS {
            let mine: Vec<_> = back
                .iter()
                .filter(|r| r.model.as_deref() == Some(&format!("m{t}")))
                .map(|r| r.version.clone().unwrap())
                .collect();
            let want: Vec<_> = (0..PER).map(|i| format!("{i}.0.0")).collect();
            assert_eq!(mine, want, "per-thread order kept");
        }
    }

    #[test]
    fn summarize_rates_and_percentiles() {
        let mut records = Vec::new();
        // push to A: 20 runs, 1..=20 MB in 1 s each → 1..=20 MB/s; runs 3, 6, 9, 12 fail.
        for i in 1..=20u64 {
            records.push(rec(
                "push",
                "s3://a",
                i % 3 != 0 || i > 12,
                i * 1_000_000,
                1000,
            ));
        }
        // pull from A: 4 runs, one failing with no bytes (excluded from throughput).
        records.push(rec("pull", "s3://a", true, 2_000_000, 1000));
        records.push(rec("pull", "s3://a", true, 8_000_000, 1000));
        records.push(rec("pull", "s3://a", true, 4_000_000, 1000));
        records.push(rec("pull", "s3://a", false, 0, 5));
        // gc: no bytes at all.
        records.push(rec("gc", "prod", true, 0, 30));

        let s = summarize(&records);
        let keys: Vec<_> = s.iter().map(|s| (&*s.command, &*s.remote)).collect();
        assert_eq!(
            keys,
            [("gc", "prod"), ("pull", "s3://a"), ("push", "s3://a")]
        );

        let gc = &s[0];
        assert_eq!((gc.count, gc.ok, gc.errors), (1, 1, 0));
        assert_eq!(gc.median_mb_per_s, None);
        assert_eq!(gc.p95_mb_per_s, None);
        assert_eq!(gc.throughput_samples, 0);

        let pull = &s[1];
        assert_eq!((pull.count, pull.ok, pull.errors), (4, 3, 1));
        assert_eq!(pull.success_rate, 0.75);
        assert_eq!(pull.error_rate, 0.25);
        assert_eq!(pull.median_mb_per_s, Some(4.0));
        assert_eq!(pull.p95_mb_per_s, Some(8.0));
        assert_eq!(pull.throughput_samples, 3);
        assert_eq!(pull.bytes, 14_000_000);

        let push = &s[2];
        assert_eq!((push.count, push.ok, push.errors), (20, 16, 4));
        assert_eq!(push.success_rate, 0.8);
        assert!((push.error_rate - 0.2).abs() < 1e-12);
        assert_eq!(push.median_mb_per_s, Some(10.5));
        // Nearest rank: ⌈0.95 · 20⌉ = 19th value.
        assert_eq!(push.p95_mb_per_s, Some(19.0));
        assert_eq!(push.bytes, 210_000_000);

        assert_eq!(nearest_rank(&[1.0], 95.0), Some(1.0));
        assert_eq!(nearest_rank(&[1.0, 2.0, 3.0, 4.0, 5.0], 95.0), Some(5.0));
        assert_eq!(median(&[1.0, 2.0, 3.0]), Some(2.0));
        assert!(summarize(&[]).is_empty());
    }

    #[test]
    fn since_filters_records() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.jsonl"), 0);
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        for days_ago in [10u32, 8, 3, 1, 0] {
            let mut r = rec("push", "s3://b", true, 1, 1).with_model(format!("d{days_ago}"));
            r.time = format_time(now - day * days_ago);
            log.append(&r).unwrap();
        }
        let models = |since| -> Vec<String> {
            log.read_since(since)
                .unwrap()
                .into_iter()
                .map(|r| r.model.unwrap())
                .collect()
        };
        assert_eq!(models(None).len(), 5);
        assert_eq!(models(parse_since("7d")), ["d3", "d1", "d0"]);
        assert_eq!(
            models(Some(now - day * 8 - Duration::from_secs(1))),
            ["d8", "d3", "d1", "d0"]
        );
        assert!(models(Some(now + day)).is_empty());

        assert!(parse_since("2024-01-01").is_some());
        assert!(parse_since("2024-01-01T10:00:00+02:00").is_some());
        assert!(parse_since("yesterday").is_none());
    }

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
        let long = Record::new("push", "x").with_error("é".repeat(MAX_ERROR_LEN));
        assert!(long.error.unwrap().len() <= MAX_ERROR_LEN + '…'.len_utf8());
    }

    #[test]
    fn prometheus_output() {
        let records = vec![
            rec("push", "s3://b/p", true, 3_000_000, 1000),
            rec("push", "s3://b/p", true, 1_000_000, 1000),
            rec("push", "s3://b/p", false, 0, 10),
            rec("pull", "we\"ird\\name\nx", true, 0, 10),
        ];
        let text = prometheus(&summarize(&records));
        for want in [
            "# TYPE mvault_operations_total counter",
            "mvault_operations_total{command=\"push\",remote=\"s3://b/p\",result=\"ok\"} 2",
            "mvault_operations_total{command=\"push\",remote=\"s3://b/p\",result=\"error\"} 1",
            "mvault_bytes_total{command=\"push\",remote=\"s3://b/p\"} 4000000",
            "mvault_throughput_mb_per_s{command=\"push\",remote=\"s3://b/p\",quantile=\"0.5\"} 2",
            "mvault_throughput_mb_per_s{command=\"push\",remote=\"s3://b/p\",quantile=\"0.95\"} 3",
            "mvault_operations_total{command=\"pull\",remote=\"we\\\"ird\\\\name\\nx\",result=\"ok\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == want),
                "missing {want:?} in\n{text}"
            );
        }
        assert!(!text.contains("quantile=\"0.5\"} NaN"));
        assert!(
            !text.contains("command=\"pull\",remote=\"we\\\"ird\\\\name\\nx\",quantile"),
            "no throughput line without samples"
        );
        // Every sample line is name{labels} value.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = l.rsplit_once("} ").unwrap();
            value.parse::<f64>().unwrap();
        }

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics/mvault.prom");
        write_metrics_file(&path, &summarize(&records)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        write_metrics_file(&path, &[]).unwrap();
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary files left");
    }

    #[test]
    fn table_lists_every_pair() {
        let s = summarize(&[rec("push", "s3://b/p", true, 1_500_000, 1000)]);
        let t = table(&s);
        assert!(t.starts_with("COMMAND"));
        assert!(t.contains("s3://b/p") && t.contains("100.0%") && t.contains("1.5"));
    }
}
