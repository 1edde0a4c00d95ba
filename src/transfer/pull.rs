//! Pull: manifest → verified blobs in the cache → plain files under the target directory.
//!
//! A pull runs in two phases, so that a failed download leaves the target untouched:
//! 1. **Blobs.** For each file the target does not provably hold (state record match, or
//!    same size and digest when re-hashed), a whole-file blob is made present in the cache:
//!    under the blob's exclusive lock, chunks come from other cached blobs when present
//!    (each re-hashed) or from the remote (requests in flight adapted up to `jobs` by the
//!    [`Limiter`], and at most [`INFLIGHT_KIB`] KiB of chunk data in flight), each checked
//!    against its BLAKE3 name and written at its offset in a
//!    partial file as it arrives, in any order; a hasher thread follows the written prefix,
//!    so the whole file is checked against its digest as the last chunk lands, and only then
//!    renamed into `blobs/`. The partial file and a journal of its written chunks survive an
//!    interrupted pull (error, Ctrl-C, `kill -9`): the next pull fetches only the rest.
//! 2. **Placement.** Files of the previous pull that the new version lacks are deleted if
//!    still exactly as mvault wrote them; then each blob is linked (or copied) to a
//!    temporary name beside its target path and renamed over it, through directory handles
//!    that never follow a symlink ([`super::target`]). A blob this pull did not just
//!    assemble is re-hashed as placed (the cache is shared with every hard-linked target, so
//!    an in-place edit of a target damages it); a damaged blob is discarded and fetched
//!    again. While placing, the pull holds the blob's shared lock, so `cache prune` cannot
//!    delete it underneath.
//!
//! A file in the target that no earlier pull of this model wrote (a user's file) is never
//! overwritten unless its content already matches or the caller passes `force`. Whatever
//! would keep the new version from being placed (a foreign entry in a directory that must
//! become a file, a symlink or foreign file where a directory must be) is refused in the
//! plan, before anything is downloaded, deleted or placed.
//!
//! The whole pull, from reading the state record to writing it and the signature, holds the
//! target's exclusive lock ([`TargetDir::lock`]): a second pull into the same target waits.
//! Holding it, the pull removes the temporary files a killed pull left in the directories it
//! places into.
//!
//! A state record in `<target>/.mvault/<name>.json` (sizes and mtimes of what was
//! materialized) makes the next warm pull a handful of `stat` calls. The record is
//! untrusted input: its paths are validated like manifest paths before use.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::engine::Limiter;
pub use super::target::LinkMode;
use super::target::{self, Entry, Record, TargetDir};
use super::{Error, FileProgress, Result, Stats, Summary, TransferOptions, cpu};
use crate::cache::{Cache, LocalChunk};
use crate::chunk::{self, Digest, tree};
use crate::manifest::{self, ChunkRef, FileEntry, Manifest};
use crate::remote::Remote;
use crate::util::WRITE_PIECE_BYTES;

/// What to pull, and where.
#[derive(Debug, Clone)]
pub struct PullRequest {
    pub manifest: Manifest,
    pub target: PathBuf,
    /// Re-hash every target file and blob instead of trusting size and mtime.
    pub verify: bool,
    pub link: LinkMode,
    /// Overwrite files in the target that no earlier pull of this model wrote.
    pub force: bool,
}

/// Result of a pull.
#[derive(Debug, Clone)]
pub struct PullOutcome {
    pub target: PathBuf,
    pub summary: Summary,
}

/// Chunk bytes allowed in flight (downloaded, not yet written), in KiB permits (48 MiB: six
/// chunks of the 8 MiB tensor average). Measured on a pull of 1.5 GiB of checkpoints from a
/// local S3 server (large buffers returned when freed, see `main`): 32 MiB (four large
/// chunks in flight) 4.9 s, 48 MiB 4.0 s at 110-120 MiB peak RSS, 56 MiB 3.3-3.7 s at
/// 128-134 MiB, 64 MiB 3.7 s at 138-144 MiB. 48 keeps a pull within 128 MiB.
pub(crate) const INFLIGHT_KIB: u32 = 48 * 1024;
/// Files assembled or placed concurrently.
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

impl From<target::Error> for Error {
    fn from(e: target::Error) -> Error {
        match e {
            target::Error::Io { path, source } => Error::Io { path, source },
            e => Error::Input(e.to_string()),
        }
    }
}

fn record_name(model: &str) -> String {
    format!("{model}.json")
}

/// The state record of `model` in the target, if present. The record is untrusted: one
/// that does not parse or names another model is ignored, and entries with a path a
/// manifest could not hold (`../x`, absolute, under `.mvault`, repeated) are dropped, with a
/// warning; files are then checked by content.
fn read_state(dir: &TargetDir, model: &str) -> Result<Option<TargetState>> {
    let warn = |what: &str| {
        tracing::warn!(
            "{}: state record .mvault/{} {what} (files are checked by content)",
            dir.root().display(),
            record_name(model)
        )
    };
    let bytes = match dir.read_record(&record_name(model))? {
        Record::Absent => return Ok(None),
        Record::Unusable => Vec::new(), // a symlink or special file: damaged
        Record::Bytes(b) => b,
    };
    let Some(mut state) = serde_json::from_slice::<TargetState>(&bytes)
        .ok()
        .filter(|s| s.model_name == model)
    else {
        warn("is damaged; ignoring it");
        return Ok(None);
    };
    let mut seen = HashSet::new();
    let before = state.files.len();
    state
        .files
        .retain(|f| manifest::validate_path(&f.path).is_ok() && seen.insert(f.path.clone()));
    if state.files.len() != before {
        warn("lists unsafe or repeated paths; ignoring those entries");
    }
    Ok(Some(state))
}

/// True when the target still holds `f` exactly as recorded (regular file, size, mtime).
fn unchanged(dir: &TargetDir, f: &FileState) -> Result<bool> {
    Ok(dir.entry(&f.path)?
        == Entry::File {
            size: f.size,
            mtime_ns: f.mtime_ns,
        })
}

/// Shared state of one pull.
struct Ctx<'a> {
    remote: Option<&'a Remote>,
    cache: &'a Cache,
    opts: &'a TransferOptions,
    stats: Stats,
    requests: Limiter,
    inflight: Semaphore,
    /// Chunk decodes running (one per core).
    decoders: Semaphore,
    /// Cores of the machine: chunk decodes and block hashes running at once.
    cores: usize,
    local: HashMap<Digest, LocalChunk>,
    dir: Arc<TargetDir>,
    link: LinkMode,
}

/// Outcome of [`Ctx::assemble_locked`].
#[derive(Debug, PartialEq, Eq)]
enum Assembly {
    /// This call assembled the blob, or re-hashed it and found it good.
    Assembled,
    /// A blob was already there (not re-hashed).
    Present,
    /// Another process holds the blob's lock; try again.
    Busy,
}

/// What the target holds at a file's path, decided before anything is downloaded.
enum Plan {
    /// Already right (recorded, or same content): keep it.
    Keep(FileState),
    /// Needs its blob placed.
    Place,
}

/// Pulls a version into `req.target`, and writes its signature object there as
/// `.mvault/<model>.sig` (or removes a stale one when `signature` is `None`), all under the
/// target's lock. `remote` is `None` offline: everything must then come from the cache.
pub async fn pull(
    remote: Option<&Remote>,
    cache: &Cache,
    req: &PullRequest,
    opts: &TransferOptions,
    signature: Option<&[u8]>,
) -> Result<PullOutcome> {
    let started = Instant::now();
    let m = &req.manifest;
    m.validate()?;
    let target = &req.target;
    let dir = Arc::new(TargetDir::open(target)?);
    let d = dir.clone();
    let locked = cpu(move || d.lock()).await?;
    let previous = read_state(&dir, &m.model_name)?;
    let recorded: HashMap<&str, &FileState> = previous
        .iter()
        .flat_map(|s| s.files.iter())
        .map(|f| (f.path.as_str(), f))
        .collect();

    let plans: Vec<Plan> = futures::stream::iter(&m.files)
        .map(|f| plan_file(&dir, f, &recorded, req, locked))
        .buffered(FILES_AT_ONCE)
        .try_collect()
        .await?;
    let mut states = Vec::new();
    let mut todo = Vec::new();
    for (f, plan) in m.files.iter().zip(plans) {
        match plan {
            Plan::Keep(s) => states.push(s),
            Plan::Place => todo.push(f),
        }
    }
    let stats = Stats::default();
    Stats::add(&stats.files_skipped, states.len() as u64);

    let missing: HashSet<Digest> = todo
        .iter()
        .filter(|f| !f.chunks.is_empty() && !cache.has_blob(&f.digest, f.size))
        .flat_map(|f| f.chunks.iter().map(|c| c.id))
        .collect();
    let local = if missing.is_empty() {
        HashMap::new()
    } else {
        cache.chunk_index(&missing)
    };
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let ctx = Ctx {
        remote,
        cache,
        opts,
        stats,
        requests: Limiter::new(opts.jobs, remote.map(Remote::throttles)),
        inflight: Semaphore::new(INFLIGHT_KIB as usize),
        decoders: Semaphore::new(cores),
        cores,
        local,
        dir: dir.clone(),
        link: req.link,
    };
    let total: u64 = todo.iter().map(|f| f.size).sum();
    opts.progress
        .start(format!("pull {}@{}", m.model_name, m.version), total);

    // Phase 1: every blob present and verified in the cache; the target is not touched.
    let fresh: HashSet<Digest> = futures::stream::iter(todo.iter().copied())
        .map(|f| ctx.ensure_blob(f))
        .buffer_unordered(FILES_AT_ONCE)
        .try_collect::<Vec<Option<Digest>>>()
        .await?
        .into_iter()
        .flatten()
        .collect();

    // Phase 2: sweep what a killed pull left, clear what the previous version had and this
    // one lacks, then place.
    let warm = todo.is_empty() && previous.as_ref().is_some_and(|p| p.checksum == m.checksum);
    if !todo.is_empty() && locked {
        // The directories placed into, and those of the previous version's files (cleared
        // next: a directory that must become a file is emptied of a killed pull's temps).
        let dirs: HashSet<Option<&str>> = [None, Some(manifest::RESERVED_SEGMENT)]
            .into_iter()
            .chain(
                m.files
                    .iter()
                    .map(|f| f.path.as_str())
                    .chain(
                        previous
                            .iter()
                            .flat_map(|p| p.files.iter().map(|f| f.path.as_str())),
                    )
                    .map(|p| p.rsplit_once('/').map(|(d, _)| d)),
            )
            .collect();
        for d in dirs {
            dir.remove_stale_temps(d)?;
        }
    }
    if let Some(prev) = &previous {
        let keep: HashSet<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
        for f in prev
            .files
            .iter()
            .filter(|f| !keep.contains(f.path.as_str()))
        {
            if unchanged(&dir, f)? {
                dir.remove_file(&f.path)?;
            }
        }
    }
    let done: Vec<FileState> = futures::stream::iter(todo)
        .map(|f| ctx.place_file(f, fresh.contains(&f.digest)))
        .buffer_unordered(FILES_AT_ONCE)
        .try_collect()
        .await?;
    states.extend(done);
    states.sort_by(|a, b| a.path.cmp(&b.path));
    opts.progress.finish();
    if !warm {
        let state = TargetState {
            model_name: m.model_name.clone(),
            version: m.version.clone(),
            checksum: m.checksum,
            files: states,
        };
        let json = serde_json::to_vec_pretty(&state).expect("state serializes");
        let d = dir.clone();
        let name = record_name(&m.model_name);
        cpu(move || d.write_record(&name, &json)).await?;
    }
    place_signature(&dir, &m.model_name, signature)?;
    let retries = remote.map_or(0, Remote::retries);
    Ok(PullOutcome {
        target: target.clone(),
        summary: ctx.stats.summary(started, retries),
    })
}

/// Writes a version's signature object into the target as `.mvault/<model>.sig` (what
/// `model_signing verify key DIR --signature DIR/.mvault/<model>.sig` reads), or removes a
/// stale one of an earlier pull when the version has none. `.mvault` is reached as the state
/// record is (never through a symlink).
fn place_signature(dir: &TargetDir, model: &str, signature: Option<&[u8]>) -> Result<()> {
    let file = format!("{model}.sig");
    match signature {
        Some(bytes) => dir.write_record(&file, bytes)?,
        None => dir.remove_record(&file)?,
    }
    Ok(())
}

/// Decides what to do with `f`'s path in the target: keep what is there when it provably
/// is `f` (recorded size and mtime, or, with `verify` or without a record, the same
/// content), else place the blob. `recorded` is the previous pull's record by path.
/// Refuses, before anything is downloaded, deleted or placed, whatever placing `f` would
/// then fail on or destroy: a file or symlink that no earlier pull of this model wrote
/// (unless `force`: exit 4, or 2 for a symlink or special file); a directory unless it
/// holds only unchanged files of the previous version (phase 2 deletes those and so the
/// directory); a symlink or non-directory where `f` needs a directory, unless it is an
/// unchanged file of the previous version (exit 2, `force` or not: it names the blocker).
async fn plan_file(
    dir: &Arc<TargetDir>,
    f: &FileEntry,
    recorded: &HashMap<&str, &FileState>,
    req: &PullRequest,
    locked: bool,
) -> Result<Plan> {
    let shown = |rel: &str| dir.root().join(rel).display().to_string();
    // An unchanged file of the previous version: phase 2 deletes it if this one lacks it.
    let previous_file = |rel: &str, entry: &Entry| {
        recorded.get(rel).is_some_and(|s| {
            *entry
                == Entry::File {
                    size: s.size,
                    mtime_ns: s.mtime_ns,
                }
        })
    };
    // A few `fstatat`s: cheap enough for the reactor (the warm path is only this).
    let entry = dir.entry(&f.path)?;
    let recorded_here = recorded.get(f.path.as_str()).copied();
    match entry {
        Entry::Missing => Ok(Plan::Place),
        Entry::File { size, mtime_ns } => {
            if let Some(s) = recorded_here
                && !req.verify
                && s.digest == f.digest
                && s.size == size
                && s.mtime_ns == mtime_ns
            {
                return Ok(Plan::Keep(s.clone()));
            }
            if size == f.size {
                let d = dir.clone();
                let path = f.path.clone();
                if cpu(move || d.hash(&path)).await? == f.digest {
                    return Ok(Plan::Keep(FileState {
                        path: f.path.clone(),
                        size,
                        mtime_ns,
                        digest: f.digest,
                    }));
                }
            }
            if recorded_here.is_some() || req.force {
                Ok(Plan::Place) // repair mvault's own file, or overwrite as asked
            } else {
                Err(Error::WouldOverwrite(shown(&f.path)))
            }
        }
        Entry::Dir => {
            let d = dir.clone();
            let rel = f.path.clone();
            let under = format!("{rel}/");
            let owned: HashMap<String, (u64, i128)> = recorded
                .iter()
                .filter(|(p, _)| p.starts_with(&under))
                .map(|(p, s)| (p.to_string(), (s.size, s.mtime_ns)))
                .collect();
            // Besides the previous pull's unchanged files, what a killed pull left while
            // placing beside them: a temp in the directory of one of those files (phase 2
            // sweeps it there, while the lock is held, before the directory is emptied).
            let owned_dirs: HashSet<String> = owned
                .keys()
                .filter_map(|p| p.rsplit_once('/').map(|(d, _)| d.to_string()))
                .collect();
            let stale_temp = move |p: &str, e: &Entry| {
                locked
                    && matches!(e, Entry::File { .. })
                    && p.rsplit_once('/').is_some_and(|(d, name)| {
                        owned_dirs.contains(d) && target::is_temp_name(name.as_bytes())
                    })
            };
            let foreign = cpu(move || {
                d.foreign_below(&rel, |p, e| {
                    stale_temp(p, e)
                        || owned
                            .get(p)
                            .is_some_and(|&(size, mtime_ns)| *e == Entry::File { size, mtime_ns })
                })
            })
            .await?;
            match foreign {
                None => Ok(Plan::Place), // the previous version's directory, cleared first
                Some(p) if p == f.path => Err(Error::Input(format!(
                    "{}: is a directory, the model has a file there; remove it or pull elsewhere",
                    shown(&f.path)
                ))),
                Some(p) => Err(Error::Input(format!(
                    "{}: is a directory, the model has a file there, and {} in it is not an \
                     unchanged file of the previous pull; move that away or pull elsewhere",
                    shown(&f.path),
                    shown(&p)
                ))),
            }
        }
        Entry::Blocked { ancestor, .. }
            if dir
                .entry(&ancestor)
                .is_ok_and(|e| previous_file(&ancestor, &e)) =>
        {
            Ok(Plan::Place) // `a` becoming `a/b`: phase 2 deletes the old file `a` first
        }
        Entry::Blocked {
            ancestor,
            symlink: true,
        } => Err(Error::Input(format!(
            "{}: is a symlink, the model has a directory there; refusing to follow it \
             (remove it, or pull elsewhere)",
            shown(&ancestor)
        ))),
        Entry::Blocked { ancestor, .. } => Err(Error::Input(format!(
            "{}: is not a directory (or was changed since mvault wrote it), the model has a \
             directory there; remove it or pull elsewhere",
            shown(&ancestor)
        ))),
        Entry::Other if req.force => Ok(Plan::Place),
        Entry::Other => Err(Error::Input(format!(
            "{}: is a symlink or special file; refusing to replace or follow it (remove it, \
             or pass --force to replace it)",
            shown(&f.path)
        ))),
    }
}

impl Ctx<'_> {
    /// Makes blob `f.digest` present in the cache. Returns the digest when this call
    /// assembled (and so verified) it, `None` when it was already there (unproven).
    async fn ensure_blob(&self, f: &FileEntry) -> Result<Option<Digest>> {
        loop {
            let (c, d) = (self.cache.clone(), f.digest);
            let shared = cpu(move || c.lock_blob_shared(&d)).await?;
            if self.cache.has_blob(&f.digest, f.size) {
                self.opts.progress.inc(f.size);
                return Ok(None);
            }
            drop(shared);
            match self.assemble_locked(f, false).await? {
                Assembly::Assembled => return Ok(Some(f.digest)),
                Assembly::Present => return Ok(None),
                Assembly::Busy => {}
            }
        }
    }

    /// Under the blob's exclusive lock, assembles `f` unless a good blob is there: with
    /// `damaged`, a present blob is re-hashed and replaced if wrong (another pull may have
    /// repaired it meanwhile).
    async fn assemble_locked(&self, f: &FileEntry, damaged: bool) -> Result<Assembly> {
        let (c, d) = (self.cache.clone(), f.digest);
        let Some(lock) = cpu(move || c.try_lock_blob(&d)).await? else {
            // Held by an assembler or by pulls placing it: wait a little, then look again.
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Ok(Assembly::Busy);
        };
        let blob = self.cache.blob_path(&f.digest);
        let present = self.cache.has_blob(&f.digest, f.size);
        if present && !damaged {
            self.opts.progress.inc(f.size);
            return Ok(Assembly::Present);
        }
        if present && hash_path(blob).await? == f.digest {
            return Ok(Assembly::Assembled); // just proven good
        }
        // Whatever is at the blob's path is not a good blob (absent, damaged, the wrong
        // size, or not a regular file at all): out of the way of the commit.
        self.cache.discard_blob(&f.digest);
        let partial = self.assemble(f).await?;
        self.cache.commit_blob(&partial, &f.digest)?;
        let _ = fs::remove_file(self.cache.partial_paths(&f.digest).1);
        drop(lock);
        Ok(Assembly::Assembled)
    }

    /// Places `f` from its blob, under the blob's shared lock; `fresh` blobs (assembled by
    /// this pull) are trusted, others are re-hashed as placed and re-fetched if damaged.
    async fn place_file(&self, f: &FileEntry, mut fresh: bool) -> Result<FileState> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (c, d) = (self.cache.clone(), f.digest);
            let lock = cpu(move || c.lock_blob_shared(&d)).await?;
            let placed = if !self.cache.has_blob(&f.digest, f.size) {
                Ok(false) // pruned since phase 1
            } else {
                let (dir, path, link) = (self.dir.clone(), f.path.clone(), self.link);
                let blob = self.cache.blob_path(&f.digest);
                let expect = (!fresh).then_some(f.digest);
                cpu(move || dir.place(&path, &blob, link, expect.as_ref())).await
            };
            drop(lock);
            if placed? {
                break;
            }
            if attempts >= 3 {
                return Err(Error::Integrity(format!(
                    "{}: the cached copy keeps changing while being placed; is another \
                     program writing into the cache?",
                    f.path
                )));
            }
            if self.cache.has_blob(&f.digest, f.size) {
                tracing::warn!(
                    "cached copy of {} was damaged (a hard-linked target edited in place?); \
                     fetching it again",
                    f.path
                );
            }
            while self.assemble_locked(f, true).await? == Assembly::Busy {}
            fresh = true;
        }
        Stats::add(&self.stats.files_done, 1);
        match self.dir.entry(&f.path)? {
            Entry::File { size, mtime_ns } => Ok(FileState {
                path: f.path.clone(),
                size,
                mtime_ns,
                digest: f.digest,
            }),
            _ => Err(Error::Input(format!(
                "{}: replaced by something else while being pulled",
                self.dir.root().join(&f.path).display()
            ))),
        }
    }

    /// Assembles `f` in its partial file (see [`Cache::partial_paths`]) and returns that
    /// file's path once its BLAKE3 is `f.digest`. A partial left by an interrupted pull is
    /// resumed: the chunks its journal lists are not fetched again. The whole-file hash covers
    /// them too, and a resumed partial that fails it is discarded and assembled once more
    /// from nothing (the cache is untrusted; a crash may also lose written pages).
    async fn assemble(&self, f: &FileEntry) -> Result<PathBuf> {
        let (path, journal) = self.cache.partial_paths(&f.digest);
        let bar = self.opts.progress.file(&f.path, f.size);
        let mut fresh = false;
        loop {
            let (got, resumed) = self
                .assemble_once(f, (&path, &journal), fresh, &bar)
                .await?;
            if got == f.digest {
                bar.finish();
                return Ok(path);
            }
            if resumed == 0 || fresh {
                // Every chunk came from this pass, unchecked: find the damaged ones.
                let repaired = self.repair(f, &path).await;
                if let Ok(true) = repaired {
                    bar.finish();
                    return Ok(path);
                }
                let _ = fs::remove_file(&journal);
                let _ = fs::remove_file(&path);
                repaired?;
                return Err(Error::Integrity(format!(
                    "{}: assembled file hashes to {got}, manifest says {}",
                    f.path, f.digest
                )));
            }
            let _ = fs::remove_file(&journal);
            let _ = fs::remove_file(&path);
            tracing::warn!(
                "{}: the interrupted download kept in the cache was damaged; starting it again",
                f.path
            );
            fresh = true;
        }
    }

    /// After a pass whose file failed its hash: checks each chunk of the partial file against
    /// its id and fetches each one that fails again, checked this time, so that a chunk damaged
    /// in the store is named ([`Ctx::decode`] with `verify`). `Ok(true)` once the repaired
    /// file hashes to `f.digest`; `Ok(false)` if no chunk was damaged (the file changed
    /// while being assembled) or it still does not.
    async fn repair(&self, f: &FileEntry, path: &Path) -> Result<bool> {
        let io = |e| Error::io(path.display(), e);
        let mut o = fs::File::options();
        o.read(true).write(true).custom_flags(libc::O_NOFOLLOW);
        let file = Arc::new(o.open(path).map_err(io)?);
        let mut offset = 0u64;
        let mut damaged = 0;
        for c in &f.chunks {
            let (file2, at, len) = (file.clone(), offset, c.size as usize);
            let id = cpu(move || {
                let mut buf = vec![0u8; len];
                file2.read_exact_at(&mut buf, at).map(|()| Digest::of(&buf))
            })
            .await
            .map_err(io)?;
            if id != c.id {
                damaged += 1;
                let data = self.chunk_data(f, c, true).await?;
                let file2 = file.clone();
                cpu(move || write_at(&file2, &data, at)).await.map_err(io)?;
            }
            offset += c.size;
        }
        Ok(damaged > 0 && hash_path(path.to_path_buf()).await? == f.digest)
    }

    /// One assembly pass: fetches the chunks not yet written, up to `jobs` at once, and
    /// writes each at its offset in `path` (preallocated to the file's size) as it arrives,
    /// appending its index to `journal` once written. Each [`HASH_BLOCK`] of the file is
    /// hashed as soon as its last byte is written, in the task that wrote it (from the chunk
    /// just written when it holds the whole block, else read back from the page cache), and
    /// the file's BLAKE3 is merged from the blocks' ([`chunk::tree`]), so verification ends
    /// with the last write, however large the file. Returns that digest and how many chunks
    /// were resumed from an earlier pass. On error or cancellation the partial and its
    /// journal stay for the next pull.
    async fn assemble_once(
        &self,
        f: &FileEntry,
        (path, journal): (&Path, &Path),
        fresh: bool,
        bar: &FileProgress,
    ) -> Result<(Digest, usize)> {
        let n = f.chunks.len();
        let (p, j, size) = (path.to_path_buf(), journal.to_path_buf(), f.size);
        let (file, log, written) = cpu(move || open_partial(&p, &j, size, n, fresh))
            .await
            .map_err(|e| Error::io(path.display(), e))?;
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0u64);
        for c in &f.chunks {
            offsets.push(offsets.last().expect("one") + c.size);
        }
        let blocks = Arc::new(Blocks::new(size));
        let resumed: Vec<usize> = (0..n).filter(|&i| written[i]).collect();
        let mut ready = Vec::new();
        for &i in &resumed {
            ready.extend(blocks.written(offsets[i]..offsets[i + 1]));
        }
        bar.inc(resumed.iter().map(|&i| f.chunks[i].size).sum());
        if size == 0 {
            ready.extend(blocks.written(0..0));
        }
        // Blocks complete from the start (resumed): read back and hashed, 64 at a time,
        // alongside the first downloads.
        let batches: Vec<Vec<usize>> = ready.chunks(64).map(<[usize]>::to_vec).collect();
        let head = futures::stream::iter(batches)
            .map(|list| self.hash_blocks(&file, &blocks, list, path))
            .buffer_unordered(self.cores);
        let todo: Vec<usize> = (0..n).filter(|&i| !written[i]).collect();
        let runs = pack_runs(&f.chunks, &todo, |id| self.local.contains_key(id));
        let window = self.opts.jobs.max(1);
        let offsets = &offsets;
        // One write into the file at a time: concurrent positioned writes into one file
        // contend for its inode lock in the kernel, which spins (measured on ext4, a 1.4 GB
        // pull: 1.8-3.4 s of system time with up to 16 writers, against 1 s for s5cmd). The
        // lock is taken on the runtime, before the blocking task starts, so that no thread
        // of the blocking pool sleeps on it.
        let writer = Arc::new(tokio::sync::Mutex::new(()));
        let fetched = futures::stream::iter(runs)
            .map(|run| {
                let (file, log, blocks, writer) = (&file, &log, &blocks, &writer);
                async move {
                    let (pieces, permit) = self.fetch_run(f, run).await?;
                    // The run's chunks (side by side in the file) written, journaled and the
                    // blocks they complete hashed in one blocking task: one hand-off to the
                    // pool per run rather than per chunk or per step.
                    let one = writer.clone().lock_owned().await;
                    let (file, log, blocks) = (file.clone(), log.clone(), blocks.clone());
                    let ranges: Vec<std::ops::Range<u64>> = pieces
                        .iter()
                        .map(|(i, _)| offsets[*i]..offsets[*i + 1])
                        .collect();
                    let bytes = ranges.iter().map(|r| r.end - r.start).sum();
                    cpu(move || {
                        let mut entries = Vec::with_capacity(4 * pieces.len());
                        for ((i, data), r) in pieces.iter().zip(&ranges) {
                            write_at(&file, data, r.start)?;
                            entries.extend_from_slice(&(*i as u32).to_le_bytes());
                        }
                        // Journaled once written (a torn entry is cut on resume).
                        (&*log).write_all(&entries)?;
                        drop(one);
                        let mut done = Vec::new();
                        let mut held = Vec::with_capacity(pieces.len());
                        for ((_, data), r) in pieces.into_iter().zip(ranges) {
                            held.push((r.start, data));
                            done.extend(blocks.written(r));
                        }
                        blocks.hash(&file, done, &held)
                    })
                    .await
                    .map_err(|e| Error::io(path.display(), e))?;
                    drop(permit);
                    Stats::add(&self.stats.bytes_local, bytes);
                    bar.inc(bytes);
                    Ok::<_, Error>(())
                }
            })
            .buffer_unordered(window);
        futures::stream::select(head, fetched)
            .try_collect::<()>()
            .await?;
        Ok((blocks.root(), resumed.len()))
    }

    /// Hashes blocks `list` of the partial file (blocks complete from a resumed pass) in one
    /// task on the blocking pool, at most one per core at once (sharing the decoders' slots).
    async fn hash_blocks(
        &self,
        file: &Arc<fs::File>,
        blocks: &Arc<Blocks>,
        list: Vec<usize>,
        path: &Path,
    ) -> Result<()> {
        if list.is_empty() {
            return Ok(());
        }
        let _core = self.decoders.acquire().await.expect("open");
        let (file, blocks) = (file.clone(), blocks.clone());
        cpu(move || blocks.hash(&file, list, &[]))
            .await
            .map_err(|e| Error::io(path.display(), e))
    }

    /// The plaintexts of chunks `run` of `f` (indexes, with each chunk's), verified, with the
    /// in-flight byte permit that covers them: one ranged read when the run is several chunk
    /// objects side by side in one pack (see [`pack_runs`]), else chunk by chunk.
    async fn fetch_run(
        &self,
        f: &FileEntry,
        run: std::ops::Range<usize>,
    ) -> Result<(Vec<(usize, Bytes)>, tokio::sync::SemaphorePermit<'_>)> {
        let chunks = &f.chunks[run.clone()];
        if let [c] = chunks {
            let (data, permit) = self.fetch_chunk(f, c).await?;
            return Ok((vec![(run.start, data)], permit));
        }
        let plain: u64 = chunks.iter().map(|c| c.size).sum();
        let kib = plain.div_ceil(1024).min(INFLIGHT_KIB as u64) as u32;
        let permit = self.inflight.acquire_many(kib).await.expect("open");
        let (first, last) = (chunks[0].pack, chunks[chunks.len() - 1].pack);
        if let (Some(remote), Some(first), Some(last)) = (self.remote, first, last) {
            let span = last.offset + last.len - first.offset;
            let stored = {
                let _req = self.requests.acquire().await;
                if let Some(rate) = &self.opts.rate {
                    rate.acquire(span).await;
                }
                let r = remote.read_pack_span(&first.id, first.offset, span).await?;
                if let Some(b) = &r {
                    self.requests.record(b.len() as u64);
                }
                r
            };
            if let Some(stored) = stored {
                Stats::add(&self.stats.bytes_remote, span);
                Stats::add(&self.stats.chunks_new, chunks.len() as u64);
                let mut out = Vec::with_capacity(chunks.len());
                for (i, c) in run.zip(chunks) {
                    let p = c.pack.expect("a run of several is packed");
                    let from = (p.offset - first.offset) as usize;
                    out.push((
                        i,
                        self.decode(f, c, stored.slice(from..from + p.len as usize), false)
                            .await?,
                    ));
                }
                return Ok((out, permit));
            }
        }
        // The pack is absent (or we are offline): chunk by chunk, under the run's permit.
        let mut out = Vec::with_capacity(chunks.len());
        for (i, c) in run.zip(chunks) {
            out.push((i, self.chunk_data(f, c, false).await?));
        }
        Ok((out, permit))
    }

    /// Decodes one stored chunk object, at most one per core at once: each holds its object,
    /// its planes and its plaintext, which the in-flight budget does not count. The plaintext's
    /// hash is checked only with `verify`; otherwise the caller proves it with the whole
    /// file's ([`Ctx::assemble`]), and a raw object is decoded in place (a slice).
    async fn decode(
        &self,
        f: &FileEntry,
        c: &ChunkRef,
        stored: Bytes,
        verify: bool,
    ) -> Result<Bytes> {
        let (id, size) = (c.id, c.size);
        let raw = stored.get(4) == Some(&(chunk::Codec::Raw as u8));
        let plain = if raw && !verify {
            chunk::decode_owned_unverified(stored, size)
        } else {
            let _core = self.decoders.acquire().await.expect("open");
            cpu(move || match verify {
                true => chunk::decode_owned(&id, stored),
                false => chunk::decode_owned_unverified(stored, size),
            })
            .await
        };
        plain.map_err(|e| Error::Integrity(format!("{}: chunk {}: {e}", f.path, c.id)))
    }

    /// One chunk's plaintext, verified, with the in-flight byte permit that covers it.
    async fn fetch_chunk(
        &self,
        f: &FileEntry,
        c: &ChunkRef,
    ) -> Result<(Bytes, tokio::sync::SemaphorePermit<'_>)> {
        let kib = c.size.div_ceil(1024).min(INFLIGHT_KIB as u64) as u32;
        let permit = self.inflight.acquire_many(kib).await.expect("open");
        Ok((self.chunk_data(f, c, false).await?, permit))
    }

    /// One chunk's plaintext: from a cached blob holding it (checked: the cache is
    /// untrusted, and a damaged blob is passed over for the remote), else from the remote (its
    /// pack range, or its loose object), its hash checked only if `verify` (see
    /// [`Ctx::decode`]).
    async fn chunk_data(&self, f: &FileEntry, c: &ChunkRef, verify: bool) -> Result<Bytes> {
        if let Some(lc) = self.local.get(&c.id)
            && let Ok(data) = read_local(lc.clone(), c.id).await
        {
            Stats::add(&self.stats.chunks_reused, 1);
            return Ok(data);
        }
        let Some(remote) = self.remote else {
            return Err(Error::NotFound(format!(
                "chunk {} of {} in the local cache (offline)",
                c.id, f.path
            )));
        };
        let stored = {
            let _req = self.requests.acquire().await;
            if let Some(rate) = &self.opts.rate {
                rate.acquire(c.size).await;
            }
            match remote.read_chunk_ref(c).await {
                Ok(b) => {
                    self.requests.record(b.len() as u64);
                    b
                }
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
        self.decode(f, c, stored, verify).await
    }
}

/// Most plaintext bytes one run of [`pack_runs`] covers (2 MiB): what one ranged read
/// fetches and the in-flight budget holds for it until written. Larger runs save requests
/// but hold more of the budget each: measured on a 2 GiB file against a local S3 server
/// (with a 32 MiB budget then), 16 MiB runs (two reads in flight) pulled in 12.6 s, 4 MiB
/// runs in 8.7 s, 2 MiB in 8.0 s, one request per chunk about as fast as 2 MiB runs.
const RUN_BYTES: u64 = 2 * 1024 * 1024;

/// Splits the chunk indexes `todo` (ascending) into runs fetched by one request each: a run
/// is consecutive chunks whose objects lie side by side in one pack (each starting where the
/// previous one ends), at most [`RUN_BYTES`] of plaintext, none held locally (`local`);
/// every other chunk is a run of its own.
fn pack_runs(
    chunks: &[ChunkRef],
    todo: &[usize],
    local: impl Fn(&Digest) -> bool,
) -> Vec<std::ops::Range<usize>> {
    let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
    let mut plain = 0u64;
    for &i in todo {
        let c = &chunks[i];
        if let Some(last) = runs.last_mut()
            && last.end == i
            && !local(&c.id)
            && plain + c.size <= RUN_BYTES
            && let (Some(prev), Some(p)) = (chunks[i - 1].pack, c.pack)
            && !local(&chunks[i - 1].id)
            && prev.id == p.id
            && prev.offset + prev.len == p.offset
        {
            last.end = i + 1;
            plain += c.size;
            continue;
        }
        runs.push(i..i + 1);
        plain = c.size;
    }
    runs
}

/// Writes `data` at `offset` of `file`, in pieces of at most [`WRITE_PIECE_BYTES`] bytes.
fn write_at(file: &fs::File, data: &[u8], offset: u64) -> std::io::Result<()> {
    let mut at = offset;
    for piece in data.chunks(WRITE_PIECE_BYTES) {
        file.write_all_at(piece, at)?;
        at += piece.len() as u64;
    }
    Ok(())
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

/// BLAKE3 of a whole (cache) file, off the runtime.
async fn hash_path(path: PathBuf) -> Result<Digest> {
    let p = path.clone();
    cpu(move || {
        let mut h = blake3::Hasher::new();
        h.update_reader(fs::File::open(&p)?)?;
        Ok::<_, std::io::Error>(Digest::from(h.finalize()))
    })
    .await
    .map_err(|e| Error::io(path.display(), e))
}

/// Block length of a file's digest tree ([`crate::chunk::tree`]) as a pull computes it:
/// 64 KiB, so that nearly every block lies inside one chunk and is hashed from the plaintext
/// as it is written; only blocks across chunk boundaries (at most one per chunk) are read back
/// from the file. (With 4 MiB blocks every block crossed a 2 MiB run and the whole file was
/// read again.)
const HASH_BLOCK: u64 = 64 * 1024;

/// The [`HASH_BLOCK`]s of a file being assembled: bytes still to be written in each, and each
/// finished block's hash.
struct Blocks {
    len: u64,
    missing: Mutex<Vec<u64>>,
    parts: Mutex<Vec<Option<tree::Part>>>,
}

impl Blocks {
    fn new(len: u64) -> Blocks {
        let n = tree::blocks(len, HASH_BLOCK);
        Blocks {
            len,
            missing: Mutex::new(
                (0..n)
                    .map(|b| {
                        let r = tree::block_range(len, HASH_BLOCK, b);
                        r.end - r.start
                    })
                    .collect(),
            ),
            parts: Mutex::new(vec![None; n]),
        }
    }

    /// Records `range` as written; returns the blocks it completed. An empty file's one block
    /// is complete once `0..0` is recorded.
    fn written(&self, range: std::ops::Range<u64>) -> Vec<usize> {
        let mut missing = self.missing.lock().expect("blocks");
        if self.len == 0 {
            return vec![0];
        }
        let first = (range.start / HASH_BLOCK) as usize;
        let mut done = Vec::new();
        let mut at = range.start;
        for (b, m) in missing.iter_mut().enumerate().skip(first) {
            if at >= range.end {
                break;
            }
            let end = tree::block_range(self.len, HASH_BLOCK, b)
                .end
                .min(range.end);
            *m -= end - at;
            if *m == 0 {
                done.push(b);
            }
            at = end;
        }
        done
    }

    /// Hashes blocks `list` of `file` and records their parts: each from `held` (plaintexts
    /// just written, with their file offsets) when one holds the whole block, else read back
    /// from the file. With [`HASH_BLOCK`]s of 64 KiB most blocks of a run lie inside one of
    /// its chunks, so the file is not read again.
    fn hash(
        &self,
        file: &fs::File,
        list: Vec<usize>,
        held: &[(u64, Bytes)],
    ) -> std::io::Result<()> {
        let mut buf = Vec::new();
        let mut parts = Vec::with_capacity(list.len());
        for b in list {
            let r = tree::block_range(self.len, HASH_BLOCK, b);
            let inside = held
                .iter()
                .find(|(at, d)| r.start >= *at && r.end <= at + d.len() as u64);
            let part = match inside {
                Some((at, d)) => {
                    let from = (r.start - at) as usize;
                    let block = &d[from..from + (r.end - r.start) as usize];
                    tree::hash_block(self.len, HASH_BLOCK, b, block)
                }
                None => {
                    buf.resize((r.end - r.start) as usize, 0);
                    file.read_exact_at(&mut buf, r.start)?;
                    tree::hash_block(self.len, HASH_BLOCK, b, &buf)
                }
            };
            parts.push((b, part));
        }
        let mut slots = self.parts.lock().expect("parts");
        for (b, part) in parts {
            slots[b] = Some(part);
        }
        Ok(())
    }

    /// The file's BLAKE3, once every block is hashed.
    fn root(&self) -> Digest {
        let parts: Vec<tree::Part> = self
            .parts
            .lock()
            .expect("parts")
            .iter()
            .map(|p| p.expect("every block hashed once written"))
            .collect();
        tree::root(self.len, HASH_BLOCK, &parts)
    }
}

/// Opens (creating it if needed) the partial file of a blob of `size` bytes and `n` chunks,
/// and its journal for appending; returns which chunks the journal says are written. With
/// `fresh`, or when the partial is not a regular file of exactly `size` bytes, or its journal
/// is unreadable, everything starts over. Entries out of range and a torn last entry (a
/// process killed mid-append) are ignored.
fn open_partial(
    path: &Path,
    journal: &Path,
    size: u64,
    n: usize,
    fresh: bool,
) -> std::io::Result<(Arc<fs::File>, Arc<fs::File>, Vec<bool>)> {
    let mut written = vec![false; n];
    let nofollow = |o: &mut fs::OpenOptions| {
        o.custom_flags(libc::O_NOFOLLOW);
    };
    let existing = (!fresh)
        .then(|| {
            let mut o = fs::OpenOptions::new();
            o.read(true).write(true);
            nofollow(&mut o);
            o.open(path).ok()
        })
        .flatten()
        .filter(|f| f.metadata().is_ok_and(|m| m.is_file() && m.len() == size));
    let resumable = existing.is_some();
    let file = match existing {
        Some(f) => f,
        None => {
            let _ = fs::remove_file(path);
            let _ = fs::remove_file(journal);
            let mut o = fs::OpenOptions::new();
            o.read(true).write(true).create_new(true);
            nofollow(&mut o);
            let f = o.open(path)?;
            f.set_len(size)?;
            f
        }
    };
    if resumable {
        let mut o = fs::OpenOptions::new();
        o.read(true).write(true);
        nofollow(&mut o);
        if let Ok(mut j) = o.open(journal) {
            let mut bytes = Vec::new();
            if j.read_to_end(&mut bytes).is_ok() {
                // Cut a torn last entry so that appends stay aligned.
                j.set_len((bytes.len() - bytes.len() % 4) as u64)?;
                for rec in bytes.chunks_exact(4) {
                    let i = u32::from_le_bytes(rec.try_into().expect("4 bytes")) as usize;
                    if let Some(w) = written.get_mut(i) {
                        *w = true;
                    }
                }
            }
        }
    }
    let mut o = fs::OpenOptions::new();
    o.append(true).create(true);
    nofollow(&mut o);
    let log = o.open(journal)?;
    Ok((Arc::new(file), Arc::new(log), written))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_resumes_from_its_journal_and_a_torn_entry_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (path, journal) = (dir.path().join("p"), dir.path().join("p.journal"));
        let (file, log, written) = open_partial(&path, &journal, 10, 3, false).unwrap();
        assert_eq!(written, [false; 3]);
        assert_eq!(file.metadata().unwrap().len(), 10, "preallocated");
        (&*log).write_all(&2u32.to_le_bytes()).unwrap();
        (&*log).write_all(&7u32.to_le_bytes()).unwrap(); // out of range: ignored
        (&*log).write_all(&[0, 0]).unwrap(); // torn by a kill
        drop((file, log));
        let (_, log, written) = open_partial(&path, &journal, 10, 3, false).unwrap();
        assert_eq!(written, [false, false, true]);
        assert_eq!(fs::metadata(&journal).unwrap().len(), 8, "torn entry cut");
        (&*log).write_all(&0u32.to_le_bytes()).unwrap();
        drop(log);
        let (_, _, written) = open_partial(&path, &journal, 10, 3, false).unwrap();
        assert_eq!(written, [true, false, true], "appends stay aligned");
    }

    #[test]
    fn a_partial_of_another_size_or_a_fresh_start_forgets_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let (path, journal) = (dir.path().join("p"), dir.path().join("p.journal"));
        fs::write(&path, b"12345").unwrap();
        fs::write(&journal, 0u32.to_le_bytes()).unwrap();
        let (_, _, written) = open_partial(&path, &journal, 10, 2, false).unwrap();
        assert_eq!(written, [false, false], "size differs: start over");
        assert_eq!(fs::metadata(&path).unwrap().len(), 10);
        fs::write(&journal, 1u32.to_le_bytes()).unwrap();
        let (_, _, written) = open_partial(&path, &journal, 10, 2, true).unwrap();
        assert_eq!(written, [false, false], "fresh");
        assert_eq!(fs::metadata(&journal).unwrap().len(), 0);
    }

    #[test]
    fn a_partial_behind_a_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, b"keep me").unwrap();
        let (path, journal) = (dir.path().join("p"), dir.path().join("p.journal"));
        std::os::unix::fs::symlink(&outside, &path).unwrap();
        let (file, _, _) = open_partial(&path, &journal, 4, 1, false).unwrap();
        file.write_all_at(b"abcd", 0).unwrap();
        assert_eq!(fs::read(&outside).unwrap(), b"keep me");
        assert!(!fs::symlink_metadata(&path).unwrap().is_symlink());
    }

    #[test]
    fn blocks_complete_as_their_last_byte_is_written_in_any_order() {
        let len = 2 * HASH_BLOCK + 10;
        let blocks = Blocks::new(len);
        let b = HASH_BLOCK;
        assert_eq!(blocks.written(b - 5..b + 5), Vec::<usize>::new());
        assert_eq!(blocks.written(2 * b..len), vec![2]);
        assert_eq!(blocks.written(b + 5..2 * b), vec![1]);
        assert_eq!(blocks.written(0..b - 5), vec![0]);
        let empty = Blocks::new(0);
        assert_eq!(empty.written(0..0), vec![0]);
    }
}
