//! Pull: manifest → verified blobs in the cache → plain files under the target directory.
//!
//! For each file of the version:
//! 1. if the target already holds it (size and mtime match the state record of the last pull,
//!    or with `verify` its digest matches), nothing happens;
//! 2. else, if the cache lacks its blob, the blob is assembled under the blob's lock: chunks
//!    come from other cached blobs when present, else from the remote (at most `jobs`
//!    requests and 64 MiB of chunk data in flight), each one checked against its BLAKE3
//!    name, then the whole file against its digest, and only then renamed into `blobs/`;
//! 3. the blob is linked (or copied) to a temporary name beside the target file, then renamed
//!    over it, so the target never holds a partial file.
//!
//! A state record in `<target>/.mvault/<name>.json` (sizes and mtimes of what was
//! materialized) makes the next warm pull a handful of `stat` calls.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::{Error, Result, Stats, Summary, TransferOptions, cpu};
use crate::cache::{Cache, LocalChunk};
use crate::chunk::{self, Digest};
use crate::manifest::{ChunkRef, FileEntry, Manifest};
use crate::remote::Remote;

/// How files get from the cache into the target directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinkMode {
    /// Hard link when the cache is on the same filesystem, copy otherwise.
    #[default]
    Auto,
    /// Hard links only (fails across filesystems).
    Hard,
    /// Independent copies.
    Copy,
}

/// What to pull, and where.
#[derive(Debug, Clone)]
pub struct PullRequest {
    pub manifest: Manifest,
    pub target: PathBuf,
    /// Re-hash every target file and blob instead of trusting size and mtime.
    pub verify: bool,
    pub link: LinkMode,
}

/// Result of a pull.
#[derive(Debug, Clone)]
pub struct PullOutcome {
    pub target: PathBuf,
    pub summary: Summary,
}

/// Chunk bytes allowed in flight (downloaded, not yet written), in KiB permits.
const INFLIGHT_KIB: u32 = 64 * 1024;
/// Files materialized concurrently.
const FILES_AT_ONCE: usize = 8;

/// Record of one materialized file, for the warm path.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct FileState {
    path: String,
    size: u64,
    mtime_ns: i128,
    digest: Digest,
}

/// Record of a pulled version in a target directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TargetState {
    model_name: String,
    version: String,
    checksum: Digest,
    files: Vec<FileState>,
}

fn state_path(target: &Path, model: &str) -> PathBuf {
    target.join(".mvault").join(format!("{model}.json"))
}

fn mtime_ns(m: &fs::Metadata) -> i128 {
    m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128
}

fn read_state(target: &Path, model: &str) -> Option<TargetState> {
    let bytes = fs::read(state_path(target, model)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn unchanged(target: &Path, f: &FileState) -> bool {
    fs::symlink_metadata(target.join(&f.path))
        .is_ok_and(|m| m.is_file() && m.len() == f.size && mtime_ns(&m) == f.mtime_ns)
}

/// Shared state of one pull.
struct Ctx<'a> {
    remote: Option<&'a Remote>,
    cache: &'a Cache,
    opts: &'a TransferOptions,
    stats: Stats,
    requests: Semaphore,
    inflight: Semaphore,
    local: HashMap<Digest, LocalChunk>,
}

/// Pulls a version into `req.target`. `remote` is `None` offline: everything must then come
/// from the cache.
pub async fn pull(
    remote: Option<&Remote>,
    cache: &Cache,
    req: &PullRequest,
    opts: &TransferOptions,
) -> Result<PullOutcome> {
    let started = Instant::now();
    let m = &req.manifest;
    m.validate()?;
    let target = &req.target;
    fs::create_dir_all(target).map_err(|e| Error::io(target.display(), e))?;
    let previous = read_state(target, &m.model_name);
    let recorded: HashMap<&str, &FileState> = previous
        .iter()
        .flat_map(|s| s.files.iter())
        .map(|f| (f.path.as_str(), f))
        .collect();

    // Files whose target copy is not provably right.
    let mut todo = Vec::new();
    let mut states = Vec::new();
    for f in &m.files {
        match recorded.get(f.path.as_str()) {
            Some(s) if !req.verify && s.digest == f.digest && unchanged(target, s) => {
                states.push((*s).clone())
            }
            _ => todo.push(f),
        }
    }
    let stats = Stats::default();
    Stats::add(&stats.files_skipped, states.len() as u64);

    let missing: std::collections::HashSet<Digest> = todo
        .iter()
        .filter(|f| !f.chunks.is_empty() && !cache.has_blob(&f.digest, f.size))
        .flat_map(|f| f.chunks.iter().map(|c| c.id))
        .collect();
    let local = if missing.is_empty() {
        HashMap::new()
    } else {
        cache.chunk_index(&missing)
    };
    let ctx = Ctx {
        remote,
        cache,
        opts,
        stats,
        requests: Semaphore::new(opts.jobs.max(1)),
        inflight: Semaphore::new(INFLIGHT_KIB as usize),
        local,
    };
    let total: u64 = todo.iter().map(|f| f.size).sum();
    opts.progress
        .start(format!("pull {}@{}", m.model_name, m.version), total);

    let verify = req.verify;
    let done: Vec<FileState> = futures::stream::iter(todo)
        .map(|f| ctx.place_file(f, target, verify, req.link))
        .buffer_unordered(FILES_AT_ONCE)
        .try_collect()
        .await?;
    let warm = done.is_empty() && previous.as_ref().is_some_and(|p| p.checksum == m.checksum);
    states.extend(done);
    states.sort_by(|a, b| a.path.cmp(&b.path));
    if warm {
        // Nothing changed: skip rewriting the state record.
        opts.progress.finish();
        return Ok(PullOutcome {
            target: target.clone(),
            summary: ctx.stats.summary(started, 0),
        });
    }
    remove_stale(target, previous.as_ref(), m);
    write_state(
        target,
        &TargetState {
            model_name: m.model_name.clone(),
            version: m.version.clone(),
            checksum: m.checksum,
            files: states,
        },
    )?;
    opts.progress.finish();
    let retries = remote.map_or(0, Remote::retries);
    Ok(PullOutcome {
        target: target.clone(),
        summary: ctx.stats.summary(started, retries),
    })
}

impl Ctx<'_> {
    /// Makes `target/f.path` hold exactly file `f`; returns its new state record.
    async fn place_file(
        &self,
        f: &FileEntry,
        target: &Path,
        verify: bool,
        link: LinkMode,
    ) -> Result<FileState> {
        let dest = safe_join(target, &f.path)?;
        if verify && fs::metadata(&dest).is_ok_and(|m| m.is_file() && m.len() == f.size) {
            let digest = hash_file(dest.clone()).await?;
            if digest == f.digest {
                Stats::add(&self.stats.files_skipped, 1);
                return file_state(&dest, f);
            }
        }
        // A wrong file in the target may share its inode with the blob: check the blob too.
        let blob = self.ensure_blob(f, dest.exists()).await?;
        materialize(&blob, &dest, link)?;
        Stats::add(&self.stats.files_done, 1);
        file_state(&dest, f)
    }

    /// Returns the path of a verified blob for `f`, assembling it if needed.
    async fn ensure_blob(&self, f: &FileEntry, recheck: bool) -> Result<PathBuf> {
        let cache = self.cache;
        if cache.has_blob(&f.digest, f.size) {
            if !recheck || hash_file(cache.blob_path(&f.digest)).await? == f.digest {
                self.opts.progress.inc(f.size);
                return Ok(cache.blob_path(&f.digest));
            }
            tracing::warn!("cached copy of {} was damaged; fetching it again", f.path);
            cache.discard_blob(&f.digest);
        }
        let c2 = cache.clone();
        let digest = f.digest;
        let _lock = cpu(move || c2.lock_blob(&digest)).await?;
        // Another process may have assembled it while we waited for the lock.
        if cache.has_blob(&f.digest, f.size) {
            self.opts.progress.inc(f.size);
            return Ok(cache.blob_path(&f.digest));
        }
        let tmp = cache.temp_path();
        let r = self.assemble(f, &tmp).await;
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        r?;
        Ok(cache.commit_blob(&tmp, &f.digest)?)
    }

    /// Writes `f`'s chunks in order into `tmp` and checks the file digest.
    async fn assemble(&self, f: &FileEntry, tmp: &Path) -> Result<()> {
        let file = fs::File::create(tmp).map_err(|e| Error::io(tmp.display(), e))?;
        let mut state = Some((file, blake3::Hasher::new()));
        let window = self.opts.jobs.max(1);
        let mut chunks = futures::stream::iter(f.chunks.iter())
            .map(|c| self.fetch_chunk(f, c))
            .buffered(window);
        while let Some(item) = chunks.next().await {
            let (data, _permit) = item?;
            let (mut file, mut hasher) = state.take().expect("state returned");
            let len = data.len() as u64;
            let tmp_s = tmp.display().to_string();
            let back = cpu(move || {
                hasher.update(&data);
                file.write_all(&data).map(|_| (file, hasher))
            })
            .await
            .map_err(|e| Error::io(tmp_s, e))?;
            state = Some(back);
            Stats::add(&self.stats.bytes_local, len);
            self.opts.progress.inc(len);
        }
        let (file, hasher) = state.expect("state");
        drop(file);
        let got: Digest = hasher.finalize().into();
        if got != f.digest {
            return Err(Error::Integrity(format!(
                "{}: assembled file hashes to {got}, manifest says {}",
                f.path, f.digest
            )));
        }
        Ok(())
    }

    /// One chunk's plaintext, verified, with the in-flight byte permit that covers it.
    async fn fetch_chunk(
        &self,
        f: &FileEntry,
        c: &ChunkRef,
    ) -> Result<(Bytes, tokio::sync::SemaphorePermit<'_>)> {
        let kib = c.size.div_ceil(1024).min(INFLIGHT_KIB as u64) as u32;
        let permit = self.inflight.acquire_many(kib).await.expect("open");
        if let Some(lc) = self.local.get(&c.id)
            && let Ok(data) = read_local(lc.clone(), c.id).await
        {
            Stats::add(&self.stats.chunks_reused, 1);
            return Ok((data, permit));
        }
        let Some(remote) = self.remote else {
            return Err(Error::NotFound(format!(
                "chunk {} of {} in the local cache (offline)",
                c.id, f.path
            )));
        };
        let stored = {
            let _req = self.requests.acquire().await.expect("open");
            if let Some(rate) = &self.opts.rate {
                rate.acquire(c.size).await;
            }
            match remote.read_chunk(&c.id).await {
                Ok(b) => b,
                Err(e) if e.kind == crate::remote::ErrorKind::NotFound => {
                    return Err(Error::Integrity(format!(
                        "{}: chunk {} is missing on {}",
                        f.path,
                        c.id,
                        remote.name()
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        };
        Stats::add(&self.stats.bytes_remote, stored.len() as u64);
        Stats::add(&self.stats.chunks_new, 1);
        let id = c.id;
        let data = cpu(move || chunk::decode(&id, &stored))
            .await
            .map_err(|e| Error::Integrity(format!("{}: chunk {}: {e}", f.path, c.id)))?;
        Ok((data, permit))
    }
}

/// Reads a chunk out of a cached blob and checks its hash.
async fn read_local(lc: LocalChunk, id: Digest) -> std::io::Result<Bytes> {
    cpu(move || {
        let mut file = fs::File::open(&lc.blob)?;
        file.seek(SeekFrom::Start(lc.offset))?;
        let mut buf = vec![0; lc.size as usize];
        file.read_exact(&mut buf)?;
        if Digest::of(&buf) != id {
            return Err(std::io::Error::other(
                "cached chunk does not match its hash",
            ));
        }
        Ok(Bytes::from(buf))
    })
    .await
}

/// BLAKE3 of a whole file, off the runtime.
async fn hash_file(path: PathBuf) -> Result<Digest> {
    let p = path.clone();
    cpu(move || {
        let mut h = blake3::Hasher::new();
        h.update_reader(fs::File::open(&p)?)?;
        Ok::<_, std::io::Error>(Digest::from(h.finalize()))
    })
    .await
    .map_err(|e| Error::io(path.display(), e))
}

fn file_state(dest: &Path, f: &FileEntry) -> Result<FileState> {
    let m = fs::metadata(dest).map_err(|e| Error::io(dest.display(), e))?;
    Ok(FileState {
        path: f.path.clone(),
        size: m.len(),
        mtime_ns: mtime_ns(&m),
        digest: f.digest,
    })
}

/// `target/rel`, refusing to pass through a symlink or a non-directory on the way.
fn safe_join(target: &Path, rel: &str) -> Result<PathBuf> {
    let mut p = target.to_path_buf();
    let segments: Vec<&str> = rel.split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        p.push(seg);
        let last = i + 1 == segments.len();
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::Input(format!(
                    "{}: is a symlink; refusing to write through it",
                    p.display()
                )));
            }
            Ok(m) if !last && !m.is_dir() => {
                return Err(Error::Input(format!(
                    "{}: exists and is not a directory",
                    p.display()
                )));
            }
            Ok(m) if last && m.is_dir() => {
                return Err(Error::Input(format!(
                    "{}: is a directory, the model has a file there",
                    p.display()
                )));
            }
            _ => {}
        }
    }
    Ok(p)
}

/// Places `blob` at `dest` atomically: link or copy to a temporary name beside it, rename.
fn materialize(blob: &Path, dest: &Path, mode: LinkMode) -> Result<()> {
    if mode != LinkMode::Copy && same_file(blob, dest) {
        return Ok(()); // already a hard link to the verified blob
    }
    let parent = dest.parent().expect("dest has a parent");
    fs::create_dir_all(parent).map_err(|e| Error::io(parent.display(), e))?;
    let tmp = parent.join(format!(
        ".{}.mvault-{:08x}",
        dest.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        fastrand::u32(..)
    ));
    let linked = match mode {
        LinkMode::Copy => Err(std::io::Error::other("copy requested")),
        LinkMode::Auto | LinkMode::Hard => fs::hard_link(blob, &tmp),
    };
    let placed = match (linked, mode) {
        (Ok(()), _) => Ok(()),
        (Err(e), LinkMode::Hard) => Err(e),
        (Err(_), _) => copy_writable(blob, &tmp),
    };
    let renamed = placed.and_then(|_| fs::rename(&tmp, dest));
    // Renaming a link onto another link of the same file succeeds without removing the
    // source name, so remove it in every case.
    let _ = fs::remove_file(&tmp);
    renamed.map_err(|e| Error::io(dest.display(), e))
}

/// True when both paths name the same inode.
fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Copies a (read-only) blob to a new, writable file.
fn copy_writable(blob: &Path, dest: &Path) -> std::io::Result<()> {
    fs::copy(blob, dest)?;
    let mut perm = fs::metadata(dest)?.permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    fs::set_permissions(dest, perm)
}

/// Deletes files a previous pull of this model wrote that the new version no longer has,
/// if they are still exactly as written (never user-modified files).
fn remove_stale(target: &Path, previous: Option<&TargetState>, m: &Manifest) {
    let Some(prev) = previous else { return };
    let keep: std::collections::HashSet<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
    for f in prev
        .files
        .iter()
        .filter(|f| !keep.contains(f.path.as_str()))
    {
        if unchanged(target, f) {
            let _ = fs::remove_file(target.join(&f.path));
        }
    }
}

fn write_state(target: &Path, state: &TargetState) -> Result<()> {
    let path = state_path(target, &state.model_name);
    let dir = path.parent().expect("has parent");
    fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
    let tmp = dir.join(format!(".state-{:08x}", fastrand::u32(..)));
    let json = serde_json::to_vec_pretty(state).expect("state serializes");
    fs::write(&tmp, json)
        .and_then(|_| fs::rename(&tmp, &path))
        .map_err(|e| Error::io(path.display(), e))
}
