//! Push: local files → chunks on the remote → manifest, written last and create-only.
//!
//! Pipeline: each file's layout is read and planned into segments (`chunk::plan`); blocking
//! workers (one per core) cut, hash and encode them (`super::cut`), so one large model file is
//! chunked on every core. Encoded chunks go over a channel bounded by a byte budget
//! ([`in_flight_bytes`]); the async side uploads them, as many at once as the
//! [`super::engine::Limiter`] allows, skipping chunks the remote already has (one listing of
//! `chunks/` when the vault is small beside the push, else a stat of each). The manifest is
//! written only after every chunk upload has succeeded.
//!
//! Packs (`crate::pack`, manifest format 3): new chunk objects of at most
//! [`pack::MAX_PACKED_OBJECT`] bytes are appended to an open pack (one per chunk worker, up to
//! [`OPEN_PACKS`]), sent (pack, then index) once it reaches [`pack::TARGET_BYTES`]; at most
//! [`packs_in_flight`] full packs are being sent at once, and a task that fills a pack waits
//! for a slot while holding the open pack, which holds back the other uploads and so the
//! chunk workers; packed chunks keep their share of the byte budget until their pack's bytes
//! are sent. Chunks already in a pack the vault lists (one listing of `packs/` and a read of
//! each index, when the vault is small beside the push) are referenced there. Encrypted
//! vaults store loose chunks only.
//!
//! gc safety (`docs/FORMAT.md`, "Deletion and gc"): chunks listed in a gc pending record
//! when the push starts are uploaded again whatever the remote has, and after the manifest
//! is written they are checked once more and re-uploaded if a racing gc deleted them.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::cut::{Encoded, Prepared, Sha256, Work, chunk_worker, prepare_all};
use super::engine::Limiter;
use super::publish::{self, Rewrites};
use super::{Error, FileProgress, Progress, Result, Stats, Summary, TransferOptions};
use crate::chunk::plan;
use crate::chunk::{self, ChunkParams, Digest};
use crate::manifest::{self, Chunking, FileEntry, Manifest, Origin};
use crate::pack::{self, PackRef};
use crate::remote::{ErrorKind, Pending, Remote, Sealing, manifest_key};
use crate::version::{ModelName, Version};

/// What to push.
#[derive(Debug, Clone)]
pub struct PushRequest {
    pub name: ModelName,
    pub version: Version,
    /// Files and directories; a directory contributes its contents (relative to itself),
    /// a file contributes itself under its file name.
    pub paths: Vec<PathBuf>,
    pub description: String,
    pub metrics: Map<String, Value>,
    pub params: Map<String, Value>,
    pub tags: std::collections::BTreeMap<String, String>,
    pub extra: Map<String, Value>,
    pub chunking: ChunkParams,
    /// Chunk, hash and check what the remote has, but upload nothing and write no manifest:
    /// the summary says what a push would send (`chunks_new`, `bytes_remote`).
    pub dry_run: bool,
    /// Pack new chunk objects of at most [`pack::MAX_PACKED_OBJECT`] bytes (module text);
    /// `false` stores every chunk loose (format 2). Encrypted vaults never pack.
    pub pack: bool,
    /// Sign the version with this key: each file's SHA-256 is computed in the read that
    /// computes its BLAKE3, and the signature object (`crate::trust`) is written after the
    /// manifest (see `super::publish`).
    pub sign_key: Option<Arc<crate::trust::SignKey>>,
}

/// A local file to push: where it is, and its manifest path.
#[derive(Debug, Clone)]
pub(super) struct Source {
    pub(super) local: PathBuf,
    pub(super) rel: String,
    pub(super) size: u64,
}

/// Memory a push's chunk pipeline may hold (68 MiB): the chunk workers' read buffers plus the
/// encoded chunks between them and the remote ([`in_flight_bytes`]). This bounds a push's
/// memory, however large the model.
pub const PIPELINE_BYTES: usize = 68 * 1024 * 1024;

/// The least byte budget for encoded chunks (32 MiB): at least [`OPEN_PACKS`] x
/// [`pack::TARGET_BYTES`] + [`chunk::MAX_CHUNK_BYTES`], so that a worker's largest chunk always
/// fits beside the open packs, which wait for more chunks while under [`pack::TARGET_BYTES`] (a
/// full one is sent, which needs no budget). Before packs counted in the budget, a push of
/// 1.5 GiB of checkpoints held four packs of 12 MiB beside a 24 MiB budget: 146-154 MiB peak
/// RSS.
pub const MIN_IN_FLIGHT_BYTES: usize = 32 * 1024 * 1024;
const _: () = assert!(
    MIN_IN_FLIGHT_BYTES as u64
        >= (OPEN_PACKS * pack::TARGET_BYTES) as u64 + crate::chunk::MAX_CHUNK_BYTES
);

/// Bytes of encoded chunks held between the chunk workers and the remote, across all
/// workers: in the channel, being uploaded, or in a pack, open or being sent (each chunk's
/// share is taken at its plaintext length before it is encoded, then cut to its encoded
/// length). What [`PIPELINE_BYTES`] leaves beside `workers` read buffers of `read_buffer`
/// bytes each, and at least [`MIN_IN_FLIGHT_BYTES`]: a model of big tensors (16 MiB chunks,
/// 20 MiB read buffers) gets 32 MiB on two cores, a set cut into 512 KiB chunks (6 MiB
/// buffers) 56 MiB, so more packs are in flight while their responses are awaited. Measured
/// with 20 ms added to every request (420 MB set, 2 cores, by hand): 32 MiB pushed in
/// 1.28-1.34 s at 79 MiB peak RSS, 56 MiB in 1.09-1.13 s at 108-113 MiB.
pub fn in_flight_bytes(workers: usize, read_buffer: usize) -> usize {
    PIPELINE_BYTES
        .saturating_sub(workers.saturating_mul(read_buffer))
        .max(MIN_IN_FLIGHT_BYTES)
}

/// Packs being filled at once: chunk worker `w` appends to open pack `w % OPEN_PACKS`. A
/// worker cuts its units in file order, so a file's consecutive chunks lie side by side in
/// one pack and a pull reads them with one ranged request; with one pack shared by two
/// workers their chunks alternated, and the 420 MB set took 373 ranged reads (median 1.1 MB).
pub const OPEN_PACKS: usize = 2;

/// Full packs being sent at once (each at most [`pack::MAX_PACK_BYTES`], 12 MiB; their bytes
/// count in the byte budget): as many as the budget holds beside the [`OPEN_PACKS`] being
/// filled, at least 3 and at most 5. Measured with 20 ms added to every request (420 MB set,
/// `bench/transfer.sh`): two packs in flight pushed in 1.66 s, three in 1.36-1.45 s (s5cmd
/// 1.54 s); by hand, three with a 32 MiB budget in 1.28-1.34 s, five with 56 MiB in
/// 1.09-1.13 s.
pub fn packs_in_flight(budget: usize) -> usize {
    (budget.saturating_sub(OPEN_PACKS * pack::TARGET_BYTES) / pack::TARGET_BYTES).clamp(3, 5)
}

/// A push's last, partly filled pack is sent as a pack only if it holds at least this many
/// bytes (4 MiB, half of [`pack::TARGET_BYTES`]); the smaller ones are merged, and what is
/// still smaller is stored loose. So a push stores at most 4 MiB loose beside its packs, and
/// a small push (a config, a tokenizer) stays in loose chunks, which gc reclaims one by one
/// (a pack is reclaimed only once no version references any chunk in it).
const MIN_LAST_PACK: usize = pack::TARGET_BYTES / 2;

/// ... or at least this many chunk objects (many small files: loose, each would be a request).
const MIN_LAST_PACK_CHUNKS: usize = 256;

/// Pushes a version. Returns its manifest and run figures (with [`PushRequest::dry_run`], the
/// manifest that would be written and what would be sent).
///
/// Fails with [`Error::VersionExists`] before uploading anything if the version exists, and
/// also if another writer creates it while we upload (the create-only write loses).
pub async fn push(
    remote: &Remote,
    req: &PushRequest,
    opts: &TransferOptions,
) -> Result<(Manifest, Summary)> {
    let started = Instant::now();
    if req.sign_key.is_some() && remote.key_check().is_some() {
        // The bundle lists file paths and SHA-256s in the clear: on an encrypted vault that
        // would tell the bucket what encryption hides.
        return Err(Error::Input(
            "--sign-key on an encrypted vault: a signature lists file names and SHA-256s in \
             plaintext, which the bucket must not learn; push without --sign-key (signatures \
             of encrypted vaults are not supported yet)"
                .to_string(),
        ));
    }
    let sources = collect_sources(&req.paths)?;
    let pending = publish::begin(remote, (&req.name, &req.version), opts.jobs, req.dry_run).await?;
    let total: u64 = sources.iter().map(|s| s.size).sum();
    let budget = listing_budget(total);
    // The listings go out after the records are read, as a stat would (FORMAT.md, push step
    // 3). Without packing nothing is referenced in a pack either: the version stays format 2.
    // The files are read and planned meanwhile (local reads, off the runtime), and the
    // listings are awaited only once the chunk workers have started (`upload_all`), so the
    // first chunks are cut, hashed and encoded during their round trips.
    let listings = async {
        let (listed, packed) = tokio::join!(remote.list_chunks_upto(budget), async {
            match req.pack {
                true => known_packed(remote, &req.name, budget, &pending, opts).await,
                false => Ok(None),
            }
        });
        Ok::<_, Error>(Listings {
            listed: listed?,
            packed: packed?,
        })
    };
    let mut listings = std::pin::pin!(futures::future::maybe_done(listings));
    let prepare = {
        let (sources, params) = (sources.clone(), req.chunking);
        super::cpu(move || prepare_all(sources, params))
    };
    let prepared = match futures::future::select(std::pin::pin!(prepare), listings.as_mut()).await {
        futures::future::Either::Left((prepared, _)) => prepared?,
        futures::future::Either::Right(((), prepare)) => prepare.await?,
    };
    let known = async {
        listings.as_mut().await;
        listings
            .as_mut()
            .take_output()
            .expect("the listings are awaited once")
    };
    opts.progress
        .start(format!("push {}@{}", req.name, req.version), total);

    let locals: Vec<PathBuf> = sources.iter().map(|s| s.local.clone()).collect();
    let stats = Arc::new(Stats::default());
    let (files, sha256s, rewrites) = upload_all(
        remote,
        (&sources, prepared),
        (
            req.chunking,
            req.dry_run,
            req.sign_key.is_some() && !req.dry_run,
            req.pack,
        ),
        (&pending, known),
        opts,
        &stats,
    )
    .await?;
    Stats::add(&stats.files_done, files.len() as u64);

    let m = build_manifest(req, files);
    // What readers will check, checked before publishing: a manifest they refuse would make
    // an immutable version nobody can pull.
    m.validate()
        .map_err(|e| Error::Integrity(format!("push built an invalid manifest: {e}")))?;
    if req.dry_run {
        opts.progress.finish();
        return Ok((m, stats.summary(started, remote.retries())));
    }
    let json = m.to_json();
    let signature = req.sign_key.as_ref().map(|sign_key| {
        let files: Vec<crate::trust::FileSha256> = m
            .files
            .iter()
            .zip(sha256s)
            .map(|(f, sha256)| crate::trust::FileSha256 {
                path: f.path.clone(),
                sha256: sha256.expect("hashed: signing was asked for"),
            })
            .collect();
        Bytes::from(crate::trust::sign(sign_key, &json, &m, &files))
    });
    let at = locations(&m, &locals, &rewrites.ids);
    let version = format!("{}@{}", m.model_name, m.version);
    let write_again = |id: Digest| {
        let (path, offset, len) = at[&id].clone(); // every rewritten chunk is the manifest's
        let (version, stats) = (version.clone(), &stats);
        async move {
            let data = super::cpu(move || read_chunk_at(&path, offset, len, &id, &version)).await?;
            if let Some(rate) = &opts.rate {
                rate.acquire(data.len() as u64).await;
            }
            Stats::add(&stats.bytes_remote, data.len() as u64);
            Stats::add(&stats.chunks_new, 1);
            Ok(remote.write_chunk(&id, data).await?)
        }
    };
    publish::publish(
        remote,
        (&req.name, &req.version),
        (Bytes::from(json), signature),
        rewrites,
        opts.jobs,
        write_again,
    )
    .await?;
    opts.progress.finish();
    Ok((m, stats.summary(started, remote.retries())))
}

/// Runs the chunk-and-upload pipeline over all files; returns manifest entries in path order,
/// with `sha256` each file's SHA-256 (else `None`s), and which chunks of `pending` (listed in
/// gc records) it uploaded again. With `dry_run`, chunks the remote lacks are counted as sent
/// but not uploaded.
async fn upload_all(
    remote: &Remote,
    (sources, files): (&[Source], Vec<Prepared>),
    (params, dry_run, sha256, packing): (ChunkParams, bool, bool, bool),
    (pending, known): (&Pending, impl Future<Output = Result<Listings>>),
    opts: &TransferOptions,
    stats: &Arc<Stats>,
) -> Result<(Vec<FileEntry>, Vec<Sha256>, Rewrites)> {
    // Packs only where readers can read them: not in an encrypted vault.
    let packing = packing && !dry_run && remote.sealing().await? == Sealing::Plain;
    let bars = FileBars::new(&opts.progress, sources);
    let work = Arc::new(Work::new(files, params, sha256));
    let (tx, rx) = mpsc::channel::<std::result::Result<Encoded, Error>>(opts.jobs.max(1) * 2);
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(work.units.lock().expect("units").len().max(1));
    let budget_bytes = in_flight_bytes(workers, work.read_buffer_bytes());
    let budget = Arc::new(Semaphore::new(budget_bytes));
    let mut handles = Vec::new();
    for stream in 0..workers {
        let (work, tx, budget) = (work.clone(), tx.clone(), budget.clone());
        handles.push(tokio::task::spawn_blocking(move || {
            chunk_worker(&work, (&tx, stream), &budget)
        }));
    }
    drop(tx);
    let Listings { listed, packed } = match known.await {
        Ok(k) => k,
        Err(e) => {
            // The workers stop at their next send (the channel is closed) or budget wait.
            drop(rx);
            budget.close();
            for h in handles {
                let _ = h.await.expect("chunk worker panicked");
            }
            return Err(e);
        }
    };
    let packer = Packer {
        enabled: packing,
        open: std::array::from_fn(|_| tokio::sync::Mutex::new((pack::Builder::new(), None))),
        slots: Semaphore::new(packs_in_flight(budget_bytes)),
        known: packed.unwrap_or_default(),
        placed: Mutex::new(HashMap::new()),
    };
    let pending = &pending.chunks;
    let seen = Mutex::new(HashSet::new());
    let rewrites = Mutex::new(Rewrites::default());
    let limiter = Limiter::new(opts.jobs, Some(remote.throttles()));
    // Boxed, not pinned on the stack, so that dropping it really drops the receiver: that
    // closes the channel, which stops the chunk workers when an upload failed.
    let mut uploads = Box::pin(
        tokio_stream_of(rx)
            .map(|item| async {
                let enc = item?;
                let seen = (&seen, dry_run);
                let sets = (pending, listed.as_ref(), &rewrites);
                let to = (remote, &limiter, &packer);
                upload_chunk(to, (enc, &bars), seen, sets, opts, stats).await
            })
            .buffer_unordered(opts.jobs.max(1)),
    );
    let mut failure = None;
    while let Some(r) = uploads.next().await {
        if let Err(e) = r {
            failure = Some(e);
            break;
        }
    }
    drop(uploads);
    // Workers waiting for budget must not wait for uploads that will never happen.
    budget.close();
    // A worker's own error is the cause; what it sent down the channel only stopped the
    // uploads (and lost the error's type, so its exit code).
    let mut worker_failure = None;
    for h in handles {
        if let Err(e) = h.await.expect("chunk worker panicked") {
            worker_failure = worker_failure.or(Some(e));
        }
    }
    if let Some(e) = worker_failure.or(failure) {
        return Err(e);
    }
    let written = packer.flush(remote, stats, opts.jobs).await?;
    // A packed chunk gets a new place, but one stored loose in the end is written at the very
    // key a gc record may name: it is checked again after the manifest, as any rewrite is.
    let recorded = written.into_iter();
    Rewrites::note(
        &rewrites,
        recorded.filter(|id| pending.contains(&remote.stored_id(id))),
    );
    let work = Arc::into_inner(work).expect("workers are done");
    let (mut entries, sha256s) = super::cpu(move || work.finish()).await?;
    let placed = packer.placed.into_inner().expect("placed");
    for c in entries.iter_mut().flat_map(|f| &mut f.chunks) {
        c.pack = placed.get(&c.id).copied();
    }
    Ok((entries, sha256s, rewrites.into_inner().expect("rewrites")))
}

/// What a push learns of the remote's chunks from its listings (read after the gc records,
/// FORMAT.md push step 3), before uploading.
struct Listings {
    /// Loose chunks and their stored sizes, when `chunks/` was listed (else a stat each).
    listed: Option<HashMap<Digest, u64>>,
    /// Packed chunks it may reference (`None`: no packs here).
    packed: Option<HashMap<Digest, PackRef>>,
}

/// The packing side of a push (see the module text).
struct Packer {
    enabled: bool,
    /// The packs being filled (one per stream of chunks, see [`OPEN_PACKS`]), and their
    /// chunks' shares of [`in_flight_bytes`] (`None` while empty).
    open: [tokio::sync::Mutex<(pack::Builder, Option<OwnedSemaphorePermit>)>; OPEN_PACKS],
    /// One permit per full pack being sent ([`packs_in_flight`]).
    slots: Semaphore,
    /// Chunks found in the vault's packs (none recorded by gc), by id.
    known: HashMap<Digest, PackRef>,
    /// Where this push's packed chunks are: in a pack it wrote, or one it found.
    placed: Mutex<HashMap<Digest, PackRef>>,
}

impl Packer {
    /// Notes that chunk `id` is already stored in a pack, if it is.
    fn reuse(&self, id: &Digest) -> bool {
        let Some(r) = self.known.get(id) else {
            return false;
        };
        self.placed.lock().expect("placed").insert(*id, *r);
        true
    }

    /// Whether a new chunk object of `len` bytes goes into a pack.
    fn takes(&self, len: usize) -> bool {
        self.enabled && len <= pack::MAX_PACKED_OBJECT
    }

    /// Appends a chunk object of chunk stream `stream` to its open pack, which takes over its
    /// share of the budget (`budget`), and, if that filled the pack, sends it.
    async fn add(
        &self,
        remote: &Remote,
        (id, object, stream): (Digest, Bytes, usize),
        budget: OwnedSemaphorePermit,
        stats: &Stats,
    ) -> Result<()> {
        let full = {
            let mut open = self.open[stream % OPEN_PACKS].lock().await;
            let r = open.0.push(id, object);
            self.placed.lock().expect("placed").insert(id, r);
            match &mut open.1 {
                Some(held) => held.merge(budget),
                None => open.1 = Some(budget),
            }
            if open.0.is_full() {
                // Waiting for a slot with the open pack held: back-pressure (module text).
                let slot = self.slots.acquire().await.expect("never closed");
                Some((std::mem::take(&mut *open), slot))
            } else {
                None
            }
        };
        if let Some(((full, budget), slot)) = full {
            send_pack(remote, full, stats, (Some(slot), budget)).await?;
        }
        Ok(())
    }

    /// Sends the last, partly filled packs, merged into one where that fits a pack: each
    /// result that holds at least [`MIN_LAST_PACK`] bytes or [`MIN_LAST_PACK_CHUNKS`] chunks
    /// as a pack, else its chunks stored loose, `jobs` at once. Returns the chunks stored
    /// loose.
    async fn flush(&self, remote: &Remote, stats: &Stats, jobs: usize) -> Result<Vec<Digest>> {
        let big = |b: &pack::Builder| b.bytes() >= MIN_LAST_PACK || b.len() >= MIN_LAST_PACK_CHUNKS;
        // The open packs merged while the merge fits one pack (with two open packs under
        // half-full each, it always does unless both are big).
        let mut merged: Vec<(pack::Builder, Option<OwnedSemaphorePermit>)> = Vec::new();
        for open in &self.open {
            let (b, budget) = std::mem::take(&mut *open.lock().await);
            if b.is_empty() {
                continue;
            }
            let fits = |l: &pack::Builder| {
                (l.bytes() + b.bytes()) as u64 <= pack::MAX_PACK_BYTES
                    && l.len() + b.len() <= pack::MAX_PACKED_CHUNKS
            };
            let Some((last, held)) = merged.last_mut().filter(|(l, _)| fits(l)) else {
                merged.push((b, budget));
                continue;
            };
            for (id, object) in b.into_objects() {
                let r = last.push(id, object);
                self.placed.lock().expect("placed").insert(id, r);
            }
            match (held, budget) {
                (Some(h), Some(b)) => OwnedSemaphorePermit::merge(h, b),
                (h @ None, b) => *h = b,
                (Some(_), None) => {}
            }
        }
        let (mut packs, mut loose) = (Vec::new(), Vec::new());
        for (last, held) in merged {
            if big(&last) {
                packs.push((last, held));
                continue;
            }
            for (id, object) in last.into_objects() {
                self.placed.lock().expect("placed").remove(&id);
                loose.push((id, object));
            }
        }
        // All at once: one after the other, a small push's up to 255 loose chunks cost as
        // many round trips (5 s at 20 ms each), and each last pack two more.
        let packs = futures::stream::iter(packs)
            .map(|(b, budget)| send_pack(remote, b, stats, (None, budget)))
            .buffer_unordered(OPEN_PACKS);
        let ids: Vec<Digest> = loose.iter().map(|(id, _)| *id).collect();
        let loose = futures::stream::iter(loose)
            .map(|(id, object)| async move { Ok(remote.write_chunk(&id, object).await?) })
            .buffer_unordered(jobs.max(1));
        futures::stream::select(packs, loose)
            .try_collect::<()>()
            .await?;
        Ok(ids)
    }
}

/// Uploads a pack, then its index. The pack's slot (of [`packs_in_flight`]) and its share of
/// [`in_flight_bytes`] bound the memory its bytes hold, so they are given back once the bytes
/// are sent: the small index that follows does not hold up the next pack (at 20 ms per
/// request, holding it meant two round trips per pack with two packs in flight).
async fn send_pack(
    remote: &Remote,
    b: pack::Builder,
    stats: &Stats,
    held: (
        Option<tokio::sync::SemaphorePermit<'_>>,
        Option<OwnedSemaphorePermit>,
    ),
) -> Result<()> {
    let (id, data, index) = b.finish();
    Stats::add(&stats.packs_new, 1);
    remote.write_pack(&id, data).await?;
    drop(held);
    remote.write_pack_index(&id, &index).await?;
    Ok(())
}

fn tokio_stream_of<T: Send + 'static>(mut rx: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Chunk objects a push lists instead of stat'ing each chunk: one listing page (1,000 keys on
/// S3) per 100 chunks the push may have at the fallback's 512 KiB average, at least one page.
/// A vault that holds more is asked per chunk.
fn listing_budget(push_bytes: u64) -> usize {
    let chunks = push_bytes / (512 * 1024) + 1;
    (chunks.saturating_mul(10)).clamp(1000, 10_000_000) as usize
}

/// Chunks already stored in packs that this push may reference (FORMAT.md, push step 3): in
/// a vault with at most `budget` objects under `packs/`, every listed pack's (checked) index;
/// in a larger one, the packed chunks of the model's newest version whose pack a stat finds.
/// Packs a gc record lists are left out. `None` in an encrypted vault (no packs).
async fn known_packed(
    remote: &Remote,
    name: &ModelName,
    budget: usize,
    pending: &Pending,
    opts: &TransferOptions,
) -> Result<Option<HashMap<Digest, PackRef>>> {
    if remote.sealing().await? != Sealing::Plain {
        return Ok(None);
    }
    let mut known = match remote.list_packs_upto(budget).await? {
        Some(mut packs) => {
            packs.retain(|id, _| !pending.packs.contains(id));
            remote.read_pack_indexes(&packs, opts.jobs).await?
        }
        None => newest_version_packed(remote, name, opts).await?,
    };
    known.retain(|_, p| !pending.packs.contains(&p.id));
    Ok(Some(known))
}

/// The packed chunks of `name`'s newest version whose pack is stored (one stat per pack):
/// a new version of a model mostly repeats its previous one. A newest manifest that cannot
/// be read is no hint (a warning), never a failure.
async fn newest_version_packed(
    remote: &Remote,
    name: &ModelName,
    opts: &TransferOptions,
) -> Result<HashMap<Digest, PackRef>> {
    let Some(newest) = remote.list_versions(name).await?.pop() else {
        return Ok(HashMap::new());
    };
    let key = manifest_key(name, &newest);
    let m = match remote
        .read_manifest(&key)
        .await
        .map(|b| Manifest::from_json(&b))
    {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            tracing::warn!("{key}: {e}; not used to find packed chunks");
            return Ok(HashMap::new());
        }
        Err(e) if e.kind == ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(e.into()),
    };
    let refs: HashMap<Digest, PackRef> = m
        .files
        .iter()
        .flat_map(|f| &f.chunks)
        .filter_map(|c| Some((c.id, c.pack?)))
        .collect();
    let packs: HashSet<Digest> = refs.values().map(|p| p.id).collect();
    let sizes: HashMap<Digest, u64> = futures::stream::iter(packs)
        .map(|id| async move {
            let size = remote.size_of(&pack::pack_key(&id)).await?;
            Ok::<_, Error>(size.map(|s| (id, s)))
        })
        .buffer_unordered(opts.jobs.max(1))
        .try_filter_map(|x| async move { Ok(x) })
        .try_collect()
        .await?;
    Ok(refs
        .into_iter()
        .filter(|(_, p)| sizes.get(&p.id).is_some_and(|s| p.offset + p.len <= *s))
        .collect())
}

/// Per-file progress of a push: a file's bar appears with its first settled chunk and goes
/// once all its bytes are settled.
struct FileBars<'a> {
    progress: &'a Progress,
    files: Vec<(String, u64)>,
    open: Mutex<HashMap<usize, (FileProgress, u64)>>,
}

impl<'a> FileBars<'a> {
    fn new(progress: &'a Progress, sources: &[Source]) -> FileBars<'a> {
        FileBars {
            progress,
            files: sources.iter().map(|s| (s.rel.clone(), s.size)).collect(),
            open: Mutex::new(HashMap::new()),
        }
    }

    fn inc(&self, file: usize, bytes: u64) {
        let mut open = self.open.lock().expect("file bars");
        let (path, size) = &self.files[file];
        let (bar, done) = open
            .entry(file)
            .or_insert_with(|| (self.progress.file(path, *size), 0));
        bar.inc(bytes);
        *done += bytes;
        if *done >= *size
            && let Some((bar, _)) = open.remove(&file)
        {
            bar.finish();
        }
    }
}

/// Uploads one chunk unless another task of this push sent it, or a stat finds it stored
/// with its encoded size and no gc record (`pending`) lists it; a listed chunk is uploaded
/// whatever the remote has and noted in `rewrites`. With `dry_run` it is only counted.
async fn upload_chunk(
    (remote, limiter, packer): (&Remote, &Limiter, &Packer),
    (enc, bars): (Encoded, &FileBars<'_>),
    (seen, dry_run): (&Mutex<HashSet<Digest>>, bool),
    (pending, listed, rewrites): (
        &HashSet<Digest>,
        Option<&HashMap<Digest, u64>>,
        &Mutex<Rewrites>,
    ),
    opts: &TransferOptions,
    stats: &Stats,
) -> Result<()> {
    Stats::add(&stats.bytes_local, enc.plain_len);
    // Progress counts a chunk's plaintext once it is settled (found, counted or uploaded), so
    // a throttled or slow upload shows as such rather than as 100% from the start.
    let done = || bars.inc(enc.file, enc.plain_len);
    let fresh = seen.lock().expect("seen").insert(enc.id);
    let recorded = pending.contains(&remote.stored_id(&enc.id));
    // A stored chunk of another size than this push's encoding is rewritten: it is damaged
    // (e.g. cut off by a crash on a store without atomic writes), or encoded another way (by
    // an older mvault, or by `heal` below), which costs one upload and is harmless.
    let len = enc.data.len() as u64;
    let _request = limiter.acquire().await;
    let stored = |len| async move {
        Ok::<_, Error>(match listed {
            Some(l) => l.get(&enc.id) == Some(&len),
            None => remote.chunk_size(&enc.id).await? == Some(len),
        })
    };
    if !fresh || packer.reuse(&enc.id) || (!recorded && stored(len).await?) {
        Stats::add(&stats.chunks_reused, 1);
        done();
        return Ok(());
    }
    if dry_run {
        Stats::add(&stats.chunks_new, 1);
        Stats::add(&stats.bytes_remote, len);
        done();
        return Ok(());
    }
    if packer.takes(enc.data.len()) {
        // `--limit-rate` admits a packed chunk as it joins its pack (so progress and the
        // throttle advance chunk by chunk, not in 8 MiB steps); its pack is then sent as is.
        if let Some(rate) = &opts.rate {
            rate.acquire(len).await;
        }
        // A chunk that stays in a pack gets a new place, never the recorded object: nothing to
        // heal (one stored loose at the end is checked again, see `upload_all`).
        packer
            .add(
                remote,
                (enc.id, enc.data.clone(), enc.stream),
                enc.budget,
                stats,
            )
            .await?;
        limiter.record(len);
        Stats::add(&stats.chunks_new, 1);
        Stats::add(&stats.bytes_remote, len);
        done();
        return Ok(());
    }
    if let Some(rate) = &opts.rate {
        rate.acquire(len).await;
    }
    remote.write_chunk(&enc.id, enc.data.clone()).await?;
    limiter.record(len);
    if recorded {
        Rewrites::note(rewrites, [enc.id]);
    }
    Stats::add(&stats.chunks_new, 1);
    Stats::add(&stats.bytes_remote, len);
    done();
    Ok(())
}

/// Where each chunk of `ids` (all of them chunks of `m`) is, to be read again: (local file,
/// byte offset, plaintext length), from `m`'s files and their local paths `locals`.
fn locations(
    m: &Manifest,
    locals: &[PathBuf],
    ids: &[Digest],
) -> HashMap<Digest, (PathBuf, u64, u64)> {
    let wanted: HashSet<&Digest> = ids.iter().collect();
    let mut at = HashMap::new();
    for (f, local) in m.files.iter().zip(locals) {
        let mut offset = 0;
        for c in &f.chunks {
            if wanted.contains(&c.id) {
                at.entry(c.id).or_insert((local.clone(), offset, c.size));
            }
            offset += c.size;
        }
    }
    at
}

/// Encodes the `len` bytes at `offset` of `path`, which must hash to `id`.
fn read_chunk_at(path: &Path, offset: u64, len: u64, id: &Digest, version: &str) -> Result<Bytes> {
    use std::io::{Read, Seek, SeekFrom};
    let mut buf = vec![0u8; len as usize];
    File::open(path)
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(offset))?;
            f.read_exact(&mut buf)
        })
        .map_err(|e| Error::io(path.display(), e))?;
    if Digest::of(&buf) != *id {
        return Err(Error::Integrity(format!(
            "{version} is missing chunk {id} (deleted by a concurrent gc) and {} no longer \
             holds it; push the same content again to repair the version",
            path.display()
        )));
    }
    Ok(Bytes::from(chunk::encode(&buf)))
}

fn build_manifest(req: &PushRequest, files: Vec<FileEntry>) -> Manifest {
    let (p, t) = (req.chunking, plan::TENSOR);
    let packed = files
        .iter()
        .flat_map(|f| &f.chunks)
        .any(|c| c.pack.is_some());
    Manifest {
        format: if packed {
            manifest::PACKED_FORMAT
        } else {
            manifest::FORMAT
        },
        model_name: req.name.to_string(),
        version: req.version.to_string(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        created_by: origin(),
        description: req.description.clone(),
        performance_metrics: req.metrics.clone(),
        training_config: req.params.clone(),
        tags: req.tags.clone(),
        extra: req.extra.clone(),
        file_size: files.iter().map(|f| f.size).sum(),
        checksum: manifest::version_checksum(&files),
        chunking: Chunking {
            algorithm: "mvault-layout-1".into(),
            min_bytes: p.min_bytes,
            avg_bytes: p.avg_bytes,
            max_bytes: p.max_bytes,
            tensor: Some(manifest::TensorChunking {
                min_bytes: t.min_bytes,
                avg_bytes: t.avg_bytes,
                max_bytes: t.max_bytes,
                group_bytes: plan::GROUP_BYTES,
            }),
        },
        files,
    }
}

/// `user`, `host` and tool version of this process.
pub fn origin() -> Origin {
    Origin {
        user: crate::util::user_name(),
        host: gethostname::gethostname().to_string_lossy().into_owned(),
        tool: format!("mvault {}", env!("CARGO_PKG_VERSION")),
    }
}

/// A push input that cannot be read as given: the user's mistake (exit 2) when it does not
/// exist, else the I/O error it is.
fn input_error(p: &Path, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => Error::Input(format!(
            "push input {} does not exist (give the model's files or directory)",
            p.display()
        )),
        _ => Error::io(p.display(), e),
    }
}

/// Expands the push arguments into files with their manifest paths, sorted by path.
/// Symlinks to files are followed; symlinked directories and special files (FIFOs, sockets,
/// devices) are refused, as are names a manifest may not hold (`.mvault` first, `..`, ...).
/// A `.mvault` directory at the top of a pushed directory holds an earlier pull's records
/// and is skipped.
fn collect_sources(paths: &[PathBuf]) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| input_error(p, e))?;
        if meta.is_dir() {
            walk_dir(p, p, &mut out)?;
        } else if meta.is_file() {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| Error::Input(format!("{}: file name is not UTF-8", p.display())))?;
            out.push(Source {
                local: p.clone(),
                rel: name.to_string(),
                size: meta.len(),
            });
        } else {
            return Err(Error::Input(format!(
                "{}: not a regular file or directory",
                p.display()
            )));
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    for w in out.windows(2) {
        if w[0].rel == w[1].rel {
            return Err(Error::Input(format!(
                "two inputs map to the same path {:?}: {} and {}",
                w[0].rel,
                w[0].local.display(),
                w[1].local.display()
            )));
        }
    }
    for s in &out {
        // A bad local name is the user's input, not damage: a usage error naming the file.
        manifest::validate_path(&s.rel).map_err(|e| {
            Error::Input(format!(
                "{}: cannot be pushed: {e}; rename it or leave it out",
                s.local.display()
            ))
        })?;
    }
    if out.is_empty() {
        return Err(Error::Input("nothing to push: no files found".into()));
    }
    Ok(out)
}

fn walk_dir(root: &Path, dir: &Path, out: &mut Vec<Source>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir.display(), e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(dir.display(), e))?;
        let path = entry.path();
        let lmeta = entry
            .file_type()
            .map_err(|e| Error::io(path.display(), e))?;
        let meta = std::fs::metadata(&path).map_err(|e| Error::io(path.display(), e))?;
        if meta.is_dir() && dir == root && entry.file_name() == manifest::RESERVED_SEGMENT {
            // The records of an earlier pull into this directory, not part of the model.
            tracing::info!("skipping {}: mvault's own pull records", path.display());
            continue;
        }
        if lmeta.is_file() && super::target::is_temp_name(entry.file_name().as_encoded_bytes()) {
            // A pull killed while placing left it: never part of a model.
            tracing::info!(
                "skipping {}: a temporary file of an interrupted pull",
                path.display()
            );
            continue;
        }
        if meta.is_dir() {
            if lmeta.is_symlink() {
                return Err(Error::Input(format!(
                    "{}: symlinked directories are not supported; push the target directly",
                    path.display()
                )));
            }
            walk_dir(root, &path, out)?;
        } else if !meta.is_file() {
            return Err(Error::Input(format!(
                "{}: is a FIFO, socket or device, not a regular file; remove it from the \
                 directory or push the files one by one",
                path.display()
            )));
        } else {
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .to_str()
                .ok_or_else(|| Error::Input(format!("{}: path is not UTF-8", path.display())))?
                .replace(std::path::MAIN_SEPARATOR, "/");
            out.push(Source {
                local: path,
                rel,
                size: meta.len(),
            });
        }
    }
    Ok(())
}
