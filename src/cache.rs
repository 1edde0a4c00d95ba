//! The local cache: whole files stored once by BLAKE3 digest, manifests of pulled versions,
//! and the locks that make it safe for many processes at once.
//!
//! Layout under the cache root (default `$XDG_CACHE_HOME/mvault`):
//! - `blobs/<2 hex>/<64 hex>`: complete, verified files, read-only, named by their digest;
//! - `manifests/<remote id>/<name>/<canonical version>.json`: manifests as read from a remote
//!   (versions are immutable, so a cached manifest proves the version without a request);
//! - `manifests/<remote id>/<name>/<canonical version>.sig`: the version's signature object,
//!   if signed, as read with the manifest (untrusted: verified on every use, evicted with it);
//! - `snapshots/<remote id>/<name>/<canonical version>/`: default pull target;
//! - `locks/<2 hex>/<64 hex>.lock`: one advisory lock per blob being assembled;
//! - `tmp/`: files being written; never trusted; `cache clear`/`prune` remove those older
//!   than an hour (younger ones may belong to a running pull).
//!
//! Invariants: a file appears under `blobs/` only by an atomic rename after its digest was
//! checked, so a killed process leaves at most garbage in `tmp/`; whoever assembles a blob
//! holds its lock, so concurrent pullers download each file once.
//!
//! The cache is untrusted like the remote: blobs, manifests and signatures are read without
//! following symlinks, only when regular files, and documents at most
//! [`crate::remote::MAX_DOCUMENT_BYTES`] long ([`read_document`]); anything else counts as
//! absent.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::chunk::Digest;
use crate::manifest::Manifest;
use crate::version::{ModelName, Version};

/// Cache failures: which path, and the I/O error.
#[derive(Debug, thiserror::Error)]
#[error("cache {path}: {source}")]
pub struct Error {
    pub path: String,
    #[source]
    pub source: io::Error,
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error {
        path: path.display().to_string(),
        source,
    }
}

/// Where a chunk's plaintext can be read locally: inside a cached blob.
#[derive(Debug, Clone)]
pub struct LocalChunk {
    pub blob: PathBuf,
    /// Byte offset of the chunk in the blob.
    pub offset: u64,
    pub size: u64,
}

/// A handle on a cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// An advisory lock on a blob (shared or exclusive), released on drop.
pub struct Lock {
    file: File,
}

impl Lock {
    /// Turns an exclusive lock into a shared one (after assembling the blob), so other
    /// pulls can use the blob while this one still holds it. `flock` converts by releasing
    /// and re-taking, so a `prune` may slip in between: users of the blob treat a blob that
    /// vanished as absent and assemble it again.
    pub fn downgrade(&self) -> io::Result<()> {
        self.file.lock_shared()
    }
}

impl Cache {
    /// Opens (creating if needed) the cache at `root`.
    pub fn open(root: &Path) -> Result<Cache> {
        for sub in ["blobs", "manifests", "tmp", "locks", "snapshots"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(at(&p))?;
        }
        Ok(Cache {
            root: root.to_path_buf(),
        })
    }

    fn sharded(&self, dir: &str, d: &Digest, ext: &str) -> PathBuf {
        let hex = d.to_hex();
        self.root
            .join(dir)
            .join(&hex[..2])
            .join(format!("{hex}{ext}"))
    }

    /// Path of the blob with digest `d` (it may not exist).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.sharded("blobs", d, "")
    }

    /// True when a blob of that digest and size is present: a regular file (not a symlink
    /// to one) of that size.
    pub fn has_blob(&self, d: &Digest, size: u64) -> bool {
        fs::symlink_metadata(self.blob_path(d)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// A fresh temporary path under `tmp/`, unique to this process and call.
    pub fn temp_path(&self) -> PathBuf {
        self.root
            .join("tmp")
            .join(format!("{}-{:016x}", std::process::id(), fastrand::u64(..)))
    }

    /// The partial file a blob is assembled in, and its journal of chunks written, both under
    /// `tmp/` and named by the blob's digest, so that a pull killed half-way resumes where it
    /// stopped instead of starting over. Only the holder of the blob's exclusive lock writes
    /// them; like everything under `tmp/` they are untrusted: the assembled file is hashed
    /// whole before it becomes a blob.
    pub fn partial_paths(&self, d: &Digest) -> (PathBuf, PathBuf) {
        let tmp = self.root.join("tmp");
        let hex = d.to_hex();
        (
            tmp.join(format!("partial-{hex}")),
            tmp.join(format!("partial-{hex}.journal")),
        )
    }

    /// Moves a verified temporary file into place as blob `d`, read-only.
    pub fn commit_blob(&self, tmp: &Path, d: &Digest) -> Result<PathBuf> {
        let dest = self.blob_path(d);
        let parent = dest.parent().expect("sharded path");
        fs::create_dir_all(parent).map_err(at(parent))?;
        let mut perm = fs::metadata(tmp).map_err(at(tmp))?.permissions();
        perm.set_readonly(true);
        fs::set_permissions(tmp, perm).map_err(at(tmp))?;
        fs::rename(tmp, &dest).map_err(at(&dest))?;
        Ok(dest)
    }

    /// Removes whatever is at a blob's path (a damaged blob, a symlink, a directory: never
    /// followed). Call only while holding the blob's exclusive lock.
    pub fn discard_blob(&self, d: &Digest) {
        let path = self.blob_path(d);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {
                let _ = fs::remove_dir_all(&path);
            }
            Ok(_) => {
                let _ = fs::remove_file(&path);
            }
            Err(_) => {}
        }
    }

    /// Blocks until this process holds a shared lock on blob `d`: while held, `prune` does
    /// not delete the blob. Waits only for an assembler (exclusive holders never wait on
    /// other locks), so holding several shared locks cannot deadlock.
    pub fn lock_blob_shared(&self, d: &Digest) -> Result<Lock> {
        let path = self.sharded("locks", d, ".lock");
        let file = open_lock_file(&path).map_err(at(&path))?;
        file.lock_shared().map_err(at(&path))?;
        Ok(Lock { file })
    }

    /// The exclusive (assembly or deletion) lock of blob `d` if nobody holds any lock on it.
    pub fn try_lock_blob(&self, d: &Digest) -> Result<Option<Lock>> {
        let path = self.sharded("locks", d, ".lock");
        let file = open_lock_file(&path).map_err(at(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Lock { file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(at(&path)(e)),
        }
    }

    fn manifest_path(&self, remote_id: &str, name: &ModelName, version: &Version) -> PathBuf {
        self.root
            .join("manifests")
            .join(remote_id)
            .join(name.as_str())
            .join(format!("{}.json", version.canonical()))
    }

    /// Default materialization directory of a version.
    pub fn snapshot_dir(&self, remote_id: &str, name: &ModelName, version: &Version) -> PathBuf {
        self.root
            .join("snapshots")
            .join(remote_id)
            .join(name.as_str())
            .join(version.canonical())
    }

    /// The cached manifest of `name@version` from remote `remote_id`, if any and valid.
    pub fn load_manifest(
        &self,
        remote_id: &str,
        name: &ModelName,
        version: &Version,
    ) -> Option<Manifest> {
        let bytes = read_document(&self.manifest_path(remote_id, name, version))?;
        let m = Manifest::from_json(&bytes).ok()?;
        m.expect_identity(name, version).ok()?;
        Some(m)
    }

    /// The cached signature object of `name@version` from remote `remote_id`, if any. As
    /// untrusted as the remote's: it is verified on every use.
    pub fn load_signature(
        &self,
        remote_id: &str,
        name: &ModelName,
        version: &Version,
    ) -> Option<Vec<u8>> {
        let path = self
            .manifest_path(remote_id, name, version)
            .with_extension("sig");
        read_document(&path)
    }

    /// Stores a version's signature object beside its cached manifest (atomically).
    pub fn save_signature(
        &self,
        remote_id: &str,
        name: &ModelName,
        version: &Version,
        bytes: &[u8],
    ) -> Result<()> {
        let path = self
            .manifest_path(remote_id, name, version)
            .with_extension("sig");
        let parent = path.parent().expect("has parent");
        fs::create_dir_all(parent).map_err(at(parent))?;
        let tmp_dir = self.root.join("tmp");
        fs::create_dir_all(&tmp_dir).map_err(at(&tmp_dir))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(at(&tmp_dir))?;
        io::Write::write_all(&mut tmp, bytes).map_err(at(tmp.path()))?;
        tmp.persist(&path).map_err(|e| at(&path)(e.error))?;
        Ok(())
    }

    /// Cached versions of a model from a remote (for `--offline` resolution).
    pub fn cached_versions(&self, remote_id: &str, name: &ModelName) -> Vec<Version> {
        let dir = self
            .root
            .join("manifests")
            .join(remote_id)
            .join(name.as_str());
        let Ok(rd) = fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut vs: Vec<Version> = rd
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().into_string().ok()?;
                n.strip_suffix(".json")?.parse().ok()
            })
            .collect();
        vs.sort();
        vs
    }

    /// Makes sure the manifest of a version being pulled is cached (call while holding its
    /// [`Pin`]): a `prune` that ran between resolving and pinning may have evicted it.
    pub fn ensure_manifest(&self, remote_id: &str, m: &Manifest, version: &Version) -> Result<()> {
        let Ok(name) = m.model_name.parse::<ModelName>() else {
            return Ok(()); // save_manifest reports it
        };
        if fs::symlink_metadata(self.manifest_path(remote_id, &name, version))
            .is_ok_and(|m| m.is_file())
        {
            return Ok(());
        }
        self.save_manifest(remote_id, m, version)
    }

    /// Stores a manifest read from a remote (atomically).
    pub fn save_manifest(&self, remote_id: &str, m: &Manifest, version: &Version) -> Result<()> {
        let name: ModelName = m.model_name.parse().map_err(|e| Error {
            path: m.model_name.clone(),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })?;
        let path = self.manifest_path(remote_id, &name, version);
        let parent = path.parent().expect("has parent");
        fs::create_dir_all(parent).map_err(at(parent))?;
        // Manifests hold metadata (descriptions, metrics, who pushed): readable by the owner
        // only (the temporary file's 0600), like the audit log.
        let tmp_dir = self.root.join("tmp");
        fs::create_dir_all(&tmp_dir).map_err(at(&tmp_dir))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(at(&tmp_dir))?;
        io::Write::write_all(&mut tmp, &m.to_json()).map_err(at(tmp.path()))?;
        tmp.persist(&path).map_err(|e| at(&path)(e.error))?;
        Ok(())
    }

    /// Finds, among all cached manifests, cached blobs holding any of `wanted` chunks.
    /// Cost: reads every cached manifest once; called only when something must be fetched.
    pub fn chunk_index(&self, wanted: &HashSet<Digest>) -> HashMap<Digest, LocalChunk> {
        let mut found = HashMap::new();
        for path in walk_files(&self.root.join("manifests")) {
            let Some(m) = read_document(&path).and_then(|b| Manifest::from_json(&b).ok()) else {
                continue;
            };
            for f in &m.files {
                if !f.chunks.iter().any(|c| wanted.contains(&c.id))
                    || !self.has_blob(&f.digest, f.size)
                {
                    continue;
                }
                let mut offset = 0;
                for c in &f.chunks {
                    if wanted.contains(&c.id) {
                        found.entry(c.id).or_insert_with(|| LocalChunk {
                            blob: self.blob_path(&f.digest),
                            offset,
                            size: c.size,
                        });
                    }
                    offset += c.size;
                }
            }
        }
        found
    }
}

/// The regular file at `path` in the cache, read whole if at most
/// [`crate::remote::MAX_DOCUMENT_BYTES`] long: opened with `O_NOFOLLOW | O_NONBLOCK` (a
/// symlink or FIFO never hangs the read or leads out of the cache) and checked with `fstat`.
/// Anything else is absent (`None`), and an entry that is not a regular file is discarded so
/// that a fresh copy can take its place.
fn read_document(path: &Path) -> Option<Vec<u8>> {
    let limit = crate::remote::MAX_DOCUMENT_BYTES;
    let discard = || {
        if fs::symlink_metadata(path).is_ok_and(|m| !m.is_dir()) {
            let _ = fs::remove_file(path);
        }
    };
    let file = match File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            discard(); // a symlink
            return None;
        }
        Err(_) => return None,
    };
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        discard();
        return None;
    }
    if meta.len() > limit {
        return None;
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    io::Read::read_to_end(&mut io::Read::take(file, limit + 1), &mut buf).ok()?;
    (buf.len() as u64 <= limit).then_some(buf)
}

/// Opens (creating it and its directory if needed) a file used only for advisory locks.
fn open_lock_file(path: &Path) -> io::Result<File> {
    fs::create_dir_all(path.parent().expect("lock files live in a directory"))?;
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

/// Every regular file under `dir`, recursively (missing directory: none).
pub(crate) fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => out.push(e.path()),
                _ => {}
            }
        }
    }
    out
}

/// A stable, secret-free identifier of a remote, used to key cached manifests.
pub fn remote_id(url: &str) -> String {
    Digest::of(url.as_bytes()).to_hex()[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_commit_atomically_and_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let d = Digest::of(b"hello");
        assert!(!cache.has_blob(&d, 5));
        let tmp = cache.temp_path();
        fs::write(&tmp, b"hello").unwrap();
        let p = cache.commit_blob(&tmp, &d).unwrap();
        assert!(cache.has_blob(&d, 5));
        assert!(!cache.has_blob(&d, 6));
        assert!(fs::metadata(p).unwrap().permissions().readonly());
        assert!(!tmp.exists());
    }

    #[test]
    fn lock_is_exclusive_between_handles() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let d = Digest::of(b"x");
        let held = cache.try_lock_blob(&d).unwrap().expect("free");
        assert!(cache.try_lock_blob(&d).unwrap().is_none());
        drop(held);
        let shared = cache.lock_blob_shared(&d).unwrap();
        let other = cache.lock_blob_shared(&d).unwrap();
        assert!(
            cache.try_lock_blob(&d).unwrap().is_none(),
            "shared holders block prune"
        );
        drop((shared, other));
        assert!(cache.try_lock_blob(&d).unwrap().is_some());
    }
}

/// One cached version, for `cache ls` and eviction.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CachedVersion {
    pub remote_id: String,
    pub model_name: String,
    pub version: String,
    /// Bytes of this version's files present as blobs.
    pub cached_bytes: u64,
    /// Last time a pull used this version (mtime of its cached manifest), RFC 3339.
    pub last_used: String,
    #[serde(skip)]
    last_used_at: std::time::SystemTime,
    #[serde(skip)]
    manifest_path: PathBuf,
    #[serde(skip)]
    manifest: Manifest,
}

/// What a prune removed.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PruneReport {
    pub versions_removed: Vec<String>,
    pub blobs_removed: u64,
    pub bytes_removed: u64,
    /// Versions kept because a running pull holds them.
    pub in_use: Vec<String>,
    pub bytes_after: u64,
}

/// An in-use marker: a shared lock on a version, held for the duration of a pull, so prune
/// never evicts it.
pub struct Pin {
    _file: File,
}

impl Cache {
    fn pin_path(&self, remote_id: &str, name: &str, version: &str) -> PathBuf {
        self.root
            .join("locks")
            .join("pins")
            .join(format!("{remote_id}-{name}-{version}.lock"))
    }

    /// Marks a version in use (shared lock) and records the use for LRU.
    pub fn pin(&self, remote_id: &str, name: &ModelName, version: &Version) -> Result<Pin> {
        let path = self.pin_path(remote_id, name.as_str(), &version.canonical());
        let file = open_lock_file(&path).map_err(at(&path))?;
        file.lock_shared().map_err(at(&path))?;
        // Touched through the fd of what is checked to be a regular file: a FIFO does not
        // block the open, a symlink is not followed out of the cache.
        let manifest = self.manifest_path(remote_id, name, version);
        if let Ok(f) = File::options()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&manifest)
            && f.metadata().is_ok_and(|m| m.is_file())
        {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
        Ok(Pin { _file: file })
    }

    /// Every cached version, least recently used first.
    pub fn versions(&self) -> Vec<CachedVersion> {
        let mut out: Vec<CachedVersion> = walk_files(&self.root.join("manifests"))
            .into_iter()
            .filter_map(|path| {
                let meta = fs::symlink_metadata(&path).ok()?;
                let m = Manifest::from_json(&read_document(&path)?).ok()?;
                let remote_id = path.parent()?.parent()?.file_name()?.to_str()?.to_string();
                let cached_bytes = m
                    .files
                    .iter()
                    .filter(|f| self.has_blob(&f.digest, f.size))
                    .map(|f| f.size)
                    .sum();
                let at = meta.modified().ok()?;
                Some(CachedVersion {
                    remote_id,
                    model_name: m.model_name.clone(),
                    version: m.version.clone(),
                    cached_bytes,
                    last_used: chrono::DateTime::<chrono::Utc>::from(at)
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    last_used_at: at,
                    manifest_path: path,
                    manifest: m,
                })
            })
            .collect();
        out.sort_by_key(|v| v.last_used_at);
        out
    }

    /// Total bytes of blobs in the cache.
    pub fn blob_bytes(&self) -> u64 {
        walk_files(&self.root.join("blobs"))
            .iter()
            .filter_map(|p| fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Evicts least recently used versions until blobs take at most `max_bytes`, and every
    /// version unused for longer than `max_age`. A version pinned by a running pull is never
    /// evicted; a blob still referenced by a kept version is never deleted. Also removes
    /// blobs no cached manifest references and stale temporary files.
    pub fn prune(
        &self,
        max_bytes: Option<u64>,
        max_age: Option<std::time::Duration>,
    ) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        let now = std::time::SystemTime::now();
        let versions = self.versions();
        let mut total = self.blob_bytes();
        let mut evict = Vec::new();
        let mut keep: Vec<&CachedVersion> = Vec::new();
        for v in &versions {
            let too_old = max_age
                .is_some_and(|age| now.duration_since(v.last_used_at).unwrap_or_default() > age);
            let too_big = max_bytes.is_some_and(|max| total > max);
            if too_old || too_big {
                match self.try_unpinned(v) {
                    Some(lock) => {
                        evict.push((v, lock));
                        total = total.saturating_sub(v.cached_bytes);
                        continue;
                    }
                    None => report
                        .in_use
                        .push(format!("{}@{}", v.model_name, v.version)),
                }
            }
            keep.push(v);
        }
        let kept: HashSet<Digest> = keep
            .iter()
            .flat_map(|v| v.manifest.files.iter().map(|f| f.digest))
            .collect();
        for (v, _lock) in &evict {
            let _ = fs::remove_file(&v.manifest_path);
            let _ = fs::remove_file(v.manifest_path.with_extension("sig"));
            if let (Ok(name), Ok(ver)) = (
                v.model_name.parse::<ModelName>(),
                v.version.parse::<Version>(),
            ) {
                let _ = fs::remove_dir_all(self.snapshot_dir(&v.remote_id, &name, &ver));
            }
            report
                .versions_removed
                .push(format!("{}@{}", v.model_name, v.version));
        }
        self.sweep_blobs(&kept, &mut report);
        self.clear_tmp(std::time::Duration::from_secs(3600));
        report.bytes_after = self.blob_bytes();
        Ok(report)
    }

    /// An exclusive lock on a version's pin if no pull holds it.
    fn try_unpinned(&self, v: &CachedVersion) -> Option<File> {
        let canonical = v.version.parse::<Version>().ok()?.canonical();
        let path = self.pin_path(&v.remote_id, &v.model_name, &canonical);
        let f = open_lock_file(&path).ok()?;
        f.try_lock().ok()?;
        Some(f)
    }

    /// Deletes blobs not in `kept`, each under its exclusive lock: a blob a running pull
    /// holds (it takes a shared lock from finding the blob until the file is placed) is
    /// left alone, even if that pull's manifest was cached after `kept` was computed.
    fn sweep_blobs(&self, kept: &HashSet<Digest>, report: &mut PruneReport) {
        for path in walk_files(&self.root.join("blobs")) {
            let Some(d) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<Digest>().ok())
            else {
                continue;
            };
            if kept.contains(&d) {
                continue;
            }
            let Ok(Some(_lock)) = self.try_lock_blob(&d) else {
                continue; // in use by a pull (or the lock file is unusable: keep the blob)
            };
            let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if fs::remove_file(&path).is_ok() {
                report.blobs_removed += 1;
                report.bytes_removed += size;
            }
        }
    }

    /// Removes temporary files older than `older_than` (left by killed processes).
    fn clear_tmp(&self, older_than: std::time::Duration) {
        let now = std::time::SystemTime::now();
        for p in walk_files(&self.root.join("tmp")) {
            let old = fs::metadata(&p)
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > older_than);
            if old {
                let _ = fs::remove_file(p);
            }
        }
    }

    /// Removes everything in the cache except what running pulls hold.
    pub fn clear(&self) -> Result<PruneReport> {
        self.prune(Some(0), Some(std::time::Duration::ZERO))
    }
}
