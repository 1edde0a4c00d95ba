//! The cutting side of a push: files planned (`chunk::plan`), then cut, hashed and encoded by
//! one blocking worker per core, which send the encoded chunks to the uploads (`push`).
//!
//! Units of work come from a shared queue: a file of one segment (cut, hash, encode, and its
//! digest from the same bytes); or one segment of a larger file, whose bytes are read once
//! and give its chunks, their ids, their encodings and the parts of the file's digest tree
//! (`chunk::tree`, 64 KiB blocks) that lie inside the segment; the few blocks across segment
//! boundaries are read again by one small unit per file. So one large model file is read
//! once and chunked on every core. When signing, a file's SHA-256 (no tree hash) and BLAKE3
//! come from one more, sequential read instead. Encoded chunks are written into reused
//! buffers ([`BufPool`]).

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::push::{MIN_IN_FLIGHT_BYTES, Source};
use super::{Error, Result};
use crate::chunk::plan::{self, Cut, Segment, TensorRange};
use crate::chunk::{self, ChunkParams, Chunker, Digest, tree};
use crate::manifest::{self, ChunkRef, FileEntry, FileLayout};

/// One encoded chunk on its way to the remote.
pub(super) struct Encoded {
    pub(super) id: Digest,
    /// Index of the file it belongs to.
    pub(super) file: usize,
    /// Index of the chunk worker that cut it: chunks of one worker come in file order, so
    /// packing each worker's chunks apart keeps a file's chunks side by side in its pack.
    pub(super) stream: usize,
    /// Plaintext length in bytes.
    pub(super) plain_len: u64,
    pub(super) data: Bytes,
    /// Its share of the byte budget ([`super::push::in_flight_bytes`]): its encoded length in
    /// bytes (at least 1). Returned when the chunk is dropped (uploaded), or passed on to the
    /// pack that holds its bytes.
    pub(super) budget: OwnedSemaphorePermit,
}

/// A file to push, read and planned: its segments and tensor index.
pub(super) struct Prepared {
    src: Source,
    /// The file as planned. Every unit checks the file it opens against it, and the push
    /// checks the path again at the end: the units read the file separately (the digest and
    /// the chunks of a file of several segments come from different reads), so a file that
    /// changed in between (another inode, size, modification or status-change time) fails
    /// the push instead of publishing a digest its chunks do not add up to.
    identity: Identity,
    segments: Vec<Segment>,
    layout: Option<FileLayout>,
}

/// What identifies a file's content between reads, short of reading it: device, inode, size,
/// modification and status-change times (nanoseconds where the file system keeps them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: Option<SystemTime>,
    ctime: (i64, i64),
}

impl Identity {
    fn of(meta: &std::fs::Metadata) -> Identity {
        use std::os::unix::fs::MetadataExt;
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime: meta.modified().ok(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// The error of a file that changed while it was being pushed.
fn changed(src: &Source) -> Error {
    Error::Input(format!(
        "{} changed while being pushed ({} bytes when it was read first); push again",
        src.local.display(),
        src.size
    ))
}

/// Opens each file, reads its layout (`crate::layout`) and plans its segments.
pub(super) fn prepare_all(sources: Vec<Source>, fallback: ChunkParams) -> Result<Vec<Prepared>> {
    let mut out = Vec::with_capacity(sources.len());
    for src in sources {
        let file = File::open(&src.local).map_err(|e| Error::io(src.local.display(), e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io(src.local.display(), e))?;
        let layout = crate::layout::detect(&file, meta.len()).filter(|l| !l.tensors.is_empty());
        // The index must fit the manifest's limits; the cuts stand without it.
        let indexable = |l: &crate::layout::Layout| {
            l.tensors.len() <= manifest::MAX_TENSORS
                && l.tensors.iter().all(|t| t.name.len() <= 4096)
        };
        let ranges: Vec<TensorRange> = layout
            .iter()
            .flat_map(|l| &l.tensors)
            .map(|t| TensorRange {
                offset: t.offset,
                len: t.len,
                float_width: t.float_width(),
            })
            .collect();
        let segments = plan::plan(meta.len(), &ranges, fallback);
        if let Some(l) = &layout {
            tracing::debug!(
                "{}: {:?}, {} tensors, {} segments",
                src.local.display(),
                l.kind,
                l.tensors.len(),
                segments.len()
            );
        }
        out.push(Prepared {
            identity: Identity::of(&meta),
            layout: layout.filter(indexable).map(|l| FileLayout {
                kind: l.kind,
                tensors: l.tensors,
            }),
            segments,
            src,
        });
    }
    Ok(out)
}

/// A unit of chunking work.
#[derive(Debug, Clone, Copy)]
pub(super) enum Unit {
    /// A file of at most one segment: cut, hash and encode it, and compute its digest.
    Whole { file: usize },
    /// One segment of a file of several; also hashes the digest blocks inside the segment.
    Segment { file: usize, seg: usize },
    /// The digest blocks of a file of several segments that no one segment holds whole.
    Edges { file: usize },
    /// The BLAKE3 and SHA-256 of a whole file of several segments, in one sequential read
    /// (when signing: SHA-256 is no tree hash).
    Digest { file: usize },
}

/// Block length of a file's digest tree ([`crate::chunk::tree`]) as a push computes it:
/// 64 KiB, so that the blocks a segment holds whole are hashed from the bytes read to cut
/// it, and those across a segment boundary (read again, by [`Unit::Edges`]) cost at most
/// 128 KiB per segment.
const DIGEST_BLOCK: u64 = 64 * 1024;

/// Shared state of the chunk workers.
pub(super) struct Work {
    files: Vec<Prepared>,
    /// Chunking of files without a tensor table.
    fallback: ChunkParams,
    pub(super) units: Mutex<VecDeque<Unit>>,
    /// Per file: its digest, and the chunks of each segment once cut.
    results: Mutex<Vec<FileResult>>,
    /// Per file its SHA-256, computed by the unit that computes its BLAKE3 when `sha256`
    /// (for signing; one more hash over bytes already read, no extra read).
    sha256: bool,
    sha256s: Mutex<Vec<Sha256>>,
    /// Buffers of encoded chunks, reused once their upload is done.
    pool: BufPool,
}

/// A file's SHA-256, when the push computes it (signing).
pub(super) type Sha256 = Option<[u8; 32]>;

/// What the units of one file found: its digest (or the parts of its digest tree, one per
/// [`DIGEST_BLOCK`], when the segments hash it), and the chunks of each segment.
struct FileResult {
    digest: Option<Digest>,
    parts: Vec<Option<tree::Part>>,
    segments: Vec<Option<Vec<ChunkRef>>>,
}

/// Whether block `j` of a file of `len` bytes lies inside `seg` (so the segment's unit hashes
/// it). A file of one block has none inside: its one part is its digest, not a chaining
/// value.
fn block_inside(len: u64, j: usize, seg: &Segment) -> bool {
    let r = tree::block_range(len, DIGEST_BLOCK, j);
    tree::blocks(len, DIGEST_BLOCK) > 1 && r.start >= seg.offset && r.end <= seg.offset + seg.len
}

/// The digest blocks of a file of `len` bytes cut into `segments` that no segment holds
/// whole, in order.
fn edges(len: u64, segments: &[Segment]) -> Vec<usize> {
    let mut inside = vec![false; tree::blocks(len, DIGEST_BLOCK)];
    for seg in segments {
        let first = seg.offset.div_ceil(DIGEST_BLOCK) as usize;
        for (j, slot) in inside.iter_mut().enumerate().skip(first) {
            if !block_inside(len, j, seg) {
                break;
            }
            *slot = true;
        }
    }
    (0..inside.len()).filter(|&j| !inside[j]).collect()
}

impl Work {
    /// Units in file order; a file's digest first, so the longest unit starts early.
    pub(super) fn new(files: Vec<Prepared>, fallback: ChunkParams, sha256: bool) -> Work {
        let mut units = VecDeque::new();
        let mut results = Vec::new();
        for (file, p) in files.iter().enumerate() {
            // A file of one segment or none (empty, or of a size the system does not report)
            // is read whole by one unit, into one slot.
            let mut r = FileResult {
                digest: None,
                parts: Vec::new(),
                segments: vec![None; p.segments.len().max(1)],
            };
            if p.segments.len() <= 1 {
                units.push_back(Unit::Whole { file });
            } else if sha256 {
                units.push_back(Unit::Digest { file });
            } else {
                r.parts = vec![None; tree::blocks(p.src.size, DIGEST_BLOCK)];
                units.push_back(Unit::Edges { file });
            }
            if p.segments.len() > 1 {
                units.extend((0..p.segments.len()).map(|seg| Unit::Segment { file, seg }));
            }
            results.push(r);
        }
        Work {
            sha256s: Mutex::new(vec![None; files.len()]),
            files,
            fallback,
            units: Mutex::new(units),
            results: Mutex::new(results),
            sha256,
            pool: BufPool::default(),
        }
    }

    /// The most bytes a worker's read buffer grows to while running these units: a CDC
    /// segment's chunker buffer ([`ChunkParams::read_buffer_bytes`]), a whole segment's
    /// length, 1 MiB for a file's digest, 64 KiB for digest blocks.
    pub(super) fn read_buffer_bytes(&self) -> usize {
        let mut most = 1024 * 1024;
        for p in &self.files {
            if p.segments.len() <= 1 {
                most = most.max(self.fallback.read_buffer_bytes());
                continue;
            }
            for seg in &p.segments {
                most = most.max(match seg.cut {
                    Cut::Whole => seg.len as usize,
                    Cut::Cdc(params) => params.read_buffer_bytes(),
                });
            }
        }
        most
    }

    /// Records parts of file `i`'s digest tree.
    fn add_parts(&self, i: usize, parts: Vec<(usize, tree::Part)>) {
        let mut r = self.results.lock().expect("results");
        for (j, part) in parts {
            r[i].parts[j] = Some(part);
        }
    }

    /// The manifest entries, in path order, and their SHA-256s, after every unit is done.
    /// Fails if a file changed (length or modification time) while it was being pushed.
    pub(super) fn finish(self) -> Result<(Vec<FileEntry>, Vec<Sha256>)> {
        let results = self.results.into_inner().expect("results");
        let mut out = Vec::with_capacity(self.files.len());
        for (p, r) in self.files.into_iter().zip(results) {
            let chunks: Vec<ChunkRef> = r.segments.into_iter().flatten().flatten().collect();
            let size: u64 = chunks.iter().map(|c| c.size).sum();
            let now = std::fs::metadata(&p.src.local)
                .ok()
                .map(|m| Identity::of(&m));
            if size != p.src.size || now != Some(p.identity) {
                return Err(changed(&p.src));
            }
            let digest = match r.digest {
                Some(d) => d,
                None => {
                    let parts: Vec<tree::Part> = r
                        .parts
                        .into_iter()
                        .map(|x| x.expect("every digest block hashed"))
                        .collect();
                    tree::root(size, DIGEST_BLOCK, &parts)
                }
            };
            out.push(FileEntry {
                path: p.src.rel,
                size,
                digest,
                chunks,
                layout: p.layout,
            });
        }
        Ok((out, self.sha256s.into_inner().expect("sha256s")))
    }
}

/// Blocking worker: runs units from the queue until it is empty or the push is failing.
pub(super) fn chunk_worker(
    work: &Work,
    (tx, stream): (&mpsc::Sender<std::result::Result<Encoded, Error>>, usize),
    budget: &Arc<Semaphore>,
) -> Result<()> {
    // One read buffer per worker, reused by every unit it runs.
    let mut buf = Vec::new();
    loop {
        let Some(unit) = work.units.lock().expect("units").pop_front() else {
            return Ok(());
        };
        match run_unit(work, unit, (tx, stream), budget, &mut buf) {
            Ok(true) => {}
            Ok(false) => return Ok(()), // receiver gone: the push is failing elsewhere
            Err(e) => {
                let _ = tx.blocking_send(Err(Error::Input(e.to_string())));
                return Err(e);
            }
        }
    }
}

/// Runs one unit; `false` if the push is failing elsewhere (channel or budget closed).
fn run_unit(
    work: &Work,
    unit: Unit,
    (tx, stream): (&mpsc::Sender<std::result::Result<Encoded, Error>>, usize),
    budget: &Arc<Semaphore>,
    buf: &mut Vec<u8>,
) -> Result<bool> {
    let (Unit::Whole { file: i }
    | Unit::Segment { file: i, .. }
    | Unit::Edges { file: i }
    | Unit::Digest { file: i }) = unit;
    let p = &work.files[i];
    // A read that ends early means the file shrank since it was planned.
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => changed(&p.src),
        _ => Error::io(p.src.local.display(), e),
    };
    let file = File::open(&p.src.local).map_err(io)?;
    if Identity::of(&file.metadata().map_err(io)?) != p.identity {
        return Err(changed(&p.src));
    }
    let out = Out {
        tx,
        budget,
        pool: &work.pool,
        file: i,
        stream,
    };
    match unit {
        Unit::Digest { .. } => {
            let mut hasher = FileHasher::new(work.sha256);
            if buf.len() < 1024 * 1024 {
                buf.resize(1024 * 1024, 0);
            }
            let mut at = 0u64;
            while at < p.src.size {
                let n = (p.src.size - at).min(buf.len() as u64) as usize;
                file.read_exact_at(&mut buf[..n], at).map_err(io)?;
                hasher.update(&buf[..n]);
                at += n as u64;
            }
            hasher.finish(work, i);
            Ok(true)
        }
        Unit::Edges { .. } => {
            let len = p.src.size;
            let mut parts = Vec::new();
            for j in edges(len, &p.segments) {
                let r = tree::block_range(len, DIGEST_BLOCK, j);
                let n = (r.end - r.start) as usize;
                if buf.len() < n {
                    buf.resize(n, 0);
                }
                file.read_exact_at(&mut buf[..n], r.start).map_err(io)?;
                parts.push((j, tree::hash_block(len, DIGEST_BLOCK, j, &buf[..n])));
            }
            work.add_parts(i, parts);
            Ok(true)
        }
        Unit::Whole { .. } => {
            // A file of one segment has no tensor table (`plan`): it is cut by the fallback
            // FastCDC, read to EOF rather than to the planned length, so that a file that
            // grew (or one whose size the system does not report, as under /proc) is caught.
            let seg = Segment {
                offset: 0,
                len: u64::MAX,
                cut: Cut::Cdc(work.fallback),
                floats: None,
            };
            let mut hasher = FileHasher::new(work.sha256);
            let mut refs = Vec::new();
            let go = cut_segment(&file, &seg, (out, buf), &mut refs, Feed::File(&mut hasher));
            if !go.map_err(io)? {
                return Ok(false);
            }
            hasher.finish(work, i);
            let mut r = work.results.lock().expect("results");
            if let Some(slot) = r[i].segments.first_mut() {
                *slot = Some(refs);
            }
            Ok(true)
        }
        Unit::Segment { seg, .. } => {
            let mut refs = Vec::new();
            let segment = &p.segments[seg];
            let mut blocks = Blocks::new(p.src.size, segment);
            let feed = if work.sha256 {
                Feed::None
            } else {
                Feed::Blocks(&mut blocks)
            };
            let go = cut_segment(&file, segment, (out, buf), &mut refs, feed);
            if !go.map_err(io)? {
                return Ok(false);
            }
            work.add_parts(i, blocks.parts);
            work.results.lock().expect("results")[i].segments[seg] = Some(refs);
            Ok(true)
        }
    }
}

/// Where a worker sends the chunks of file `file`.
#[derive(Clone, Copy)]
struct Out<'a> {
    tx: &'a mpsc::Sender<std::result::Result<Encoded, Error>>,
    budget: &'a Arc<Semaphore>,
    pool: &'a BufPool,
    file: usize,
    stream: usize,
}

/// Which whole-file hash a segment's bytes feed, in order.
enum Feed<'a> {
    None,
    /// The sequential hashers of a file of one segment.
    File(&'a mut FileHasher),
    /// The digest blocks the segment holds whole.
    Blocks(&'a mut Blocks),
}

/// Cuts one segment of `file` into chunks (as its plan says), hashing and encoding each and
/// sending it on; appends their references to `refs` and feeds `feed` the bytes in order.
/// `false` if the push is failing elsewhere. Memory: the worker's read buffer `buf`, plus the
/// chunks waiting in the budget.
fn cut_segment(
    file: &File,
    seg: &Segment,
    (out, buf): (Out<'_>, &mut Vec<u8>),
    refs: &mut Vec<ChunkRef>,
    mut feed: Feed<'_>,
) -> std::io::Result<bool> {
    let mut send = |offset: u64, data: &[u8]| -> bool {
        match &mut feed {
            Feed::None => {}
            Feed::File(h) => h.update(data),
            Feed::Blocks(b) => b.update(offset, data),
        }
        // The plaintext's length first (the encoding is at most that, or raw), then only the
        // encoding's, so the budget bounds the bytes held, not the bytes cut.
        let permits = data.len().clamp(1, MIN_IN_FLIGHT_BYTES) as u32;
        let Ok(mut permit) =
            futures::executor::block_on(out.budget.clone().acquire_many_owned(permits))
        else {
            return false;
        };
        let id = Digest::of(data);
        let mut encoded = out.pool.take();
        match seg.floats {
            Some(f) => chunk::encode_planes_into(data, f.planes_at(offset), &mut encoded),
            None => chunk::encode_into(data, &mut encoded),
        }
        refs.push(ChunkRef {
            id,
            size: data.len() as u64,
            pack: None,
        });
        drop(permit.split(permit.num_permits().saturating_sub(encoded.len().max(1))));
        let enc = Encoded {
            id,
            file: out.file,
            stream: out.stream,
            plain_len: data.len() as u64,
            data: out.pool.bytes(encoded),
            budget: permit,
        };
        out.tx.blocking_send(Ok(enc)).is_ok()
    };
    match seg.cut {
        Cut::Whole => {
            // The plan keeps whole segments far below this; a chunk above it could be stored
            // but never read.
            if seg.len > chunk::MAX_CHUNK_BYTES {
                return Err(std::io::Error::other("cut plan made a chunk above 16 MiB"));
            }
            let len = seg.len as usize;
            if buf.len() < len {
                buf.resize(len, 0);
            }
            file.read_exact_at(&mut buf[..len], seg.offset)?;
            Ok(send(seg.offset, &buf[..len]))
        }
        Cut::Cdc(params) => {
            let reader = RangeReader {
                file,
                at: seg.offset,
                end: seg.offset.saturating_add(seg.len),
            };
            let mut chunker = Chunker::with_buffer(reader, params, std::mem::take(buf));
            let mut go = true;
            while let Some((offset, data)) = chunker.next_slice()? {
                if !send(seg.offset + offset, data) {
                    go = false;
                    break;
                }
            }
            *buf = chunker.into_buffer();
            Ok(go)
        }
    }
}

/// The digest blocks ([`DIGEST_BLOCK`]) one segment holds whole, hashed from its bytes as
/// they are cut (fed in order, from the segment's start).
struct Blocks {
    /// File length in bytes.
    len: u64,
    seg: Segment,
    /// The block being hashed: its index and hasher.
    open: Option<(usize, blake3::Hasher)>,
    /// Finished blocks: index and chaining value.
    parts: Vec<(usize, tree::Part)>,
}

impl Blocks {
    fn new(len: u64, seg: &Segment) -> Blocks {
        Blocks {
            len,
            seg: *seg,
            open: None,
            parts: Vec::new(),
        }
    }

    /// Feeds the bytes at file offset `offset` (the next ones of the segment).
    fn update(&mut self, mut offset: u64, mut data: &[u8]) {
        use blake3::hazmat::HasherExt;
        while !data.is_empty() {
            let j = (offset / DIGEST_BLOCK) as usize;
            let r = tree::block_range(self.len, DIGEST_BLOCK, j);
            let n = ((r.end - offset) as usize).min(data.len());
            if block_inside(self.len, j, &self.seg) {
                let (_, h) = self.open.get_or_insert_with(|| {
                    let mut h = blake3::Hasher::new();
                    h.set_input_offset(r.start);
                    (j, h)
                });
                h.update(&data[..n]);
                if offset + n as u64 == r.end
                    && let Some((j, h)) = self.open.take()
                {
                    self.parts.push((j, h.finalize_non_root()));
                }
            }
            offset += n as u64;
            data = &data[n..];
        }
    }
}

/// The whole-file hashes of one file, fed its bytes in order: BLAKE3 (the manifest digest)
/// and, when signing, SHA-256 (the signature's resource digest).
struct FileHasher {
    blake3: blake3::Hasher,
    sha256: Option<sha2::Sha256>,
}

impl FileHasher {
    fn new(sha256: bool) -> FileHasher {
        FileHasher {
            blake3: blake3::Hasher::new(),
            sha256: sha256.then(<sha2::Sha256 as sha2::Digest>::new),
        }
    }

    fn update(&mut self, data: &[u8]) {
        self.blake3.update(data);
        if let Some(s) = &mut self.sha256 {
            sha2::Digest::update(s, data);
        }
    }

    /// Records the digests as file `i`'s.
    fn finish(self, work: &Work, i: usize) {
        work.results.lock().expect("results")[i].digest = Some(self.blake3.finalize().into());
        if let Some(s) = self.sha256 {
            work.sha256s.lock().expect("sha256s")[i] = Some(sha2::Digest::finalize(s).into());
        }
    }
}

/// Reads `at..end` of a file with positioned reads (no shared cursor), ending early at EOF.
struct RangeReader<'a> {
    file: &'a File,
    at: u64,
    end: u64,
}

impl std::io::Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = (self.end - self.at).min(buf.len() as u64) as usize;
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// Buffers for encoded chunks, reused: a chunk is encoded into a buffer taken from the pool,
/// and the buffer comes back when the last [`Bytes`] of it is dropped (its upload is done),
/// so a push encodes into memory it already touched instead of fresh pages for every chunk.
/// At most [`POOL_KEPT`] buffers wait in the pool, one per chunk worker: each takes back
/// pages it already touched. With one kept, a 5 GiB bf16 `push --dry-run` spent twice the
/// system time in page faults (2.0 against 1.0 s) and took 7.0-7.5 s instead of 6.3-6.7.
#[derive(Clone, Default)]
struct BufPool(Arc<Mutex<Vec<Vec<u8>>>>);

impl BufPool {
    /// A buffer from the pool (the largest), or a new one.
    fn take(&self) -> Vec<u8> {
        self.0.lock().expect("pool").pop().unwrap_or_default()
    }

    /// `buf` as bytes that return it to the pool when dropped. A chunk object small enough
    /// to go into a pack ([`crate::pack::MAX_PACKED_OBJECT`]) may wait there for a while: its
    /// buffer is first cut to its length if it has more than 1/8 spare (a pooled buffer of a
    /// larger chunk, or zstd's bound around compressed bytes), so that the memory it holds is
    /// what its share of the byte budget counts.
    fn bytes(&self, mut buf: Vec<u8>) -> Bytes {
        if buf.len() <= crate::pack::MAX_PACKED_OBJECT && buf.capacity() > buf.len() + buf.len() / 8
        {
            buf.shrink_to_fit();
            return Bytes::from(buf);
        }
        Bytes::from_owner(Pooled {
            buf,
            pool: self.clone(),
        })
    }

    /// Keeps `buf` for [`BufPool::take`], if the pool has room.
    fn give(&self, buf: Vec<u8>) {
        let mut free = self.0.lock().expect("pool");
        if free.len() < POOL_KEPT && buf.capacity() <= MIN_IN_FLIGHT_BYTES {
            // Smallest first: `take` pops the largest.
            let at = free.partition_point(|b| b.capacity() < buf.capacity());
            free.insert(at, buf);
        }
    }
}

/// Free buffers kept by a [`BufPool`].
const POOL_KEPT: usize = 2;

/// A pooled buffer lent out as [`Bytes`].
struct Pooled {
    buf: Vec<u8>,
    pool: BufPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The digest as a push of a file cut into `segments` computes it: each segment's
    /// [`Blocks`] fed its bytes in pieces as chunks come, plus the [`edges`] read again.
    fn digest_by_segments(data: &[u8], segments: &[Segment], piece: usize) -> Digest {
        let len = data.len() as u64;
        let mut parts = vec![None; tree::blocks(len, DIGEST_BLOCK)];
        for seg in segments {
            let mut b = Blocks::new(len, seg);
            let bytes = &data[seg.offset as usize..(seg.offset + seg.len) as usize];
            for (k, p) in bytes.chunks(piece).enumerate() {
                b.update(seg.offset + (k * piece) as u64, p);
            }
            for (j, part) in b.parts {
                assert!(parts[j].replace(part).is_none(), "block {j} hashed twice");
            }
        }
        for j in edges(len, segments) {
            let r = tree::block_range(len, DIGEST_BLOCK, j);
            let block = &data[r.start as usize..r.end as usize];
            assert!(parts[j].is_none(), "edge block {j} also inside a segment");
            parts[j] = Some(tree::hash_block(len, DIGEST_BLOCK, j, block));
        }
        let parts: Vec<tree::Part> = parts.into_iter().map(|p| p.expect("hashed")).collect();
        tree::root(len, DIGEST_BLOCK, &parts)
    }

    fn segments_at(len: u64, cuts: &[u64]) -> Vec<Segment> {
        let mut bounds = vec![0];
        bounds.extend(cuts.iter().copied().filter(|&c| c > 0 && c < len));
        bounds.push(len);
        bounds
            .windows(2)
            .map(|w| Segment {
                offset: w[0],
                len: w[1] - w[0],
                cut: Cut::Whole,
                floats: None,
            })
            .collect()
    }

    #[test]
    fn segment_blocks_and_edges_give_the_file_digest() {
        let b = DIGEST_BLOCK;
        let data = crate::chunk::tests::noise(21, (9 * b + 4321) as usize);
        let full = data.len() as u64;
        let cases: Vec<(u64, Vec<u64>)> = vec![
            (full, vec![b, 2 * b]),                  // aligned boundaries
            (full, vec![100, 3 * b + 7, 3 * b + 9]), // tiny segments inside one block
            (full, vec![b / 2, 5 * b + 1, 8 * b]),   // long segments, ragged ends
            (full, vec![9 * b]),                     // last block short, alone
            (b + 1, vec![1]),                        // two blocks, the second of one byte
            (b, vec![10, 20]),                       // one block: its part is the digest
            (b - 3, vec![b / 3]),
        ];
        for (len, cuts) in cases {
            let d = &data[..len as usize];
            let segs = segments_at(len, &cuts);
            for piece in [4096, 65_537, 1 << 20] {
                assert_eq!(
                    digest_by_segments(d, &segs, piece),
                    Digest::of(d),
                    "len {len}, cuts {cuts:?}, pieces of {piece}"
                );
            }
        }
    }

    #[test]
    fn pooled_buffers_come_back_and_the_pool_is_bounded() {
        let pool = BufPool::default();
        let mut buf = pool.take();
        // Longer than a packed object: lent out as it is.
        let big = vec![7u8; crate::pack::MAX_PACKED_OBJECT + 1];
        buf.extend_from_slice(&big);
        let cap = buf.capacity();
        let bytes = pool.bytes(buf);
        assert_eq!(&bytes[..], &big[..]);
        let clone = bytes.clone();
        drop(bytes);
        assert!(pool.0.lock().unwrap().is_empty(), "still lent out");
        drop(clone);
        assert_eq!(pool.take().capacity(), cap, "the buffer came back");
        let mut huge = Vec::with_capacity(MIN_IN_FLIGHT_BYTES + 1);
        huge.extend_from_slice(&big);
        drop(pool.bytes(huge));
        assert!(pool.0.lock().unwrap().is_empty(), "too large to keep");
    }

    #[test]
    fn a_packable_chunk_holds_little_more_than_its_length() {
        let pool = BufPool::default();
        // A small chunk encoded into a large (pooled) buffer: cut to its length.
        let mut buf = Vec::with_capacity(8 * 1024 * 1024);
        buf.extend_from_slice(&[1u8; 100_000]);
        let bytes = pool.bytes(buf);
        assert_eq!(&bytes[..], &[1u8; 100_000][..]);
        drop(bytes);
        assert!(pool.0.lock().unwrap().is_empty(), "not pooled once cut");
        // One with less than 1/8 spare is lent out as it is, and comes back.
        let mut buf = Vec::with_capacity(1_100_000);
        buf.extend_from_slice(&[2u8; 1_000_000]);
        let cap = buf.capacity();
        drop(pool.bytes(buf));
        assert_eq!(pool.take().capacity(), cap);
    }

    #[test]
    fn the_budget_is_what_the_read_buffers_leave() {
        use super::super::push::{PIPELINE_BYTES, in_flight_bytes};
        const MIB: usize = 1024 * 1024;
        // 512 KiB chunks (6 MiB buffers) on two cores; 16 MiB tensor chunks (20 MiB buffers).
        assert_eq!(in_flight_bytes(2, 6 * MIB), PIPELINE_BYTES - 12 * MIB);
        assert_eq!(in_flight_bytes(2, 20 * MIB), MIN_IN_FLIGHT_BYTES);
        assert_eq!(in_flight_bytes(64, 20 * MIB), MIN_IN_FLIGHT_BYTES);
        assert_eq!(in_flight_bytes(1, 0), PIPELINE_BYTES);
        use super::super::push::packs_in_flight;
        assert_eq!(packs_in_flight(MIN_IN_FLIGHT_BYTES), 3);
        assert_eq!(packs_in_flight(PIPELINE_BYTES - 12 * MIB), 5);
        assert_eq!(packs_in_flight(PIPELINE_BYTES), 5);
    }
}
