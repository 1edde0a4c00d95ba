//! The audit log file: appends under an exclusive lock, rotation by size, reading back under
//! a shared lock (see the module doc of [`crate::audit`]).

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, Utc};

use super::{DEFAULT_MAX_BYTES, KEEP, Record};
use crate::config::AuditConfig;

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::audit::{format_time, rec};

    #[test]
    fn append_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(AuditLog::default_path(dir.path()), DEFAULT_MAX_BYTES);
        let mut a = Record::new("push", "s3://b/p");
        (a.model, a.version) = (Some("bert".into()), Some("v1.0.0".into()));
        a.set_transfer(5_000_000, Duration::from_secs(2));
        let mut b = Record::new("pull", "prod");
        b.set_error("not found: \"bert\"\nline two");
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
                        let mut r = Record::new("push", "s3://b/p");
                        r.model = Some(format!("m{t}"));
                        r.version = Some(format!("{i}.0.0"));
                        r.set_error("x".repeat(i));
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
    fn since_filters_records() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.jsonl"), 0);
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        for days_ago in [10u32, 8, 3, 1, 0] {
            let mut r = rec("push", "s3://b", true, 1, 1);
            r.model = Some(format!("d{days_ago}"));
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
        assert_eq!(models(Some(now - day * 7)), ["d3", "d1", "d0"]);
        assert_eq!(
            models(Some(now - day * 8 - Duration::from_secs(1))),
            ["d8", "d3", "d1", "d0"]
        );
        assert!(models(Some(now + day)).is_empty());
    }
}
