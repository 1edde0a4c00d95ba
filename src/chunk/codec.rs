//! The stored chunk encoding: a 16-byte header, then the plaintext, one zstd frame, or (format
//! 2) the bytes of each float element split into planes, each plane stored raw or as zstd.
//! See `docs/FORMAT.md`, "Chunk object". Pure CPU work; lengths are validated before any
//! allocation, and every decode ends with the BLAKE3 check against the chunk's name.

use bytes::Bytes;

use zstd::zstd_safe::{InBuffer, OutBuffer};

use super::Digest;
use crate::buffers;

/// Magic bytes opening every stored chunk object.
pub const CHUNK_MAGIC: [u8; 4] = *b"MVK1";
/// Length of the stored chunk header in bytes.
pub const HEADER_BYTES: usize = 16;
/// Largest plaintext a chunk object may declare; protects decoders from hostile headers.
pub const MAX_CHUNK_BYTES: u64 = 16 * 1024 * 1024;
/// Largest legal chunk object in bytes: the header plus zstd's worst-case frame for
/// [`MAX_CHUNK_BYTES`] of input (`ZSTD_COMPRESSBOUND(n)` = `n + n / 256` for `n` >= 128 KiB),
/// which also covers a raw payload and a byte-plane payload (writers store a plane raw unless
/// zstd makes it smaller, so that payload is at most the plaintext plus 5 bytes per plane).
/// Readers never hold more than this of a chunk object.
pub const MAX_OBJECT_BYTES: u64 = HEADER_BYTES as u64 + MAX_CHUNK_BYTES + MAX_CHUNK_BYTES / 256;

/// How a stored chunk's payload is encoded (header byte 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Codec {
    Raw = 0,
    Zstd = 1,
    /// Format 2: float elements split into byte planes, each plane raw or zstd.
    Planes = 2,
}

/// zstd level used when compressing whole chunks: fast, and most of the gain on model files.
const ZSTD_LEVEL: i32 = 3;
/// zstd level for byte planes: level 1 gave the best ratio *and* speed on Gaussian weights
/// (`bench/codecs.sh`: bf16 0.684 at level 1 vs 0.712 at level 3); see [`with_plane_zstd`]
/// for the acceleration on top of it.
const PLANE_LEVEL: i32 = 1;
/// Bytes sampled to decide whether a chunk (or a plane) is worth compressing.
const PROBE_BYTES: usize = 64 * 1024;

/// Where the float elements of a chunk are, for the byte-plane codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planes {
    /// Element width in bytes: 2 (f16, bf16), 4 (f32) or 8 (f64).
    pub width: u8,
    /// Bytes before the first whole element (stored as they are), at most `u16::MAX`.
    pub lead: usize,
}

/// Why a stored chunk could not be decoded. Every variant means the object is corrupt.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("chunk object too short ({0} bytes)")]
    Truncated(usize),
    #[error("chunk object has a bad magic number")]
    BadMagic,
    #[error("chunk object has unknown codec {0}")]
    UnknownCodec(u8),
    #[error("chunk object declares {0} bytes, more than the {MAX_CHUNK_BYTES} allowed")]
    TooLarge(u64),
    #[error("chunk object decompression failed: {0}")]
    Decompress(String),
    #[error("chunk object has a malformed byte-plane payload: {0}")]
    BadPlanes(&'static str),
    #[error("chunk object holds {actual} bytes of plaintext, header says {declared}")]
    LengthMismatch { declared: u64, actual: u64 },
    #[error("chunk content hashes to {actual}, expected {expected}")]
    HashMismatch { expected: Digest, actual: Digest },
}

/// Saves at least 1/32 of the bytes.
fn worth(plain_len: usize, packed_len: usize) -> bool {
    packed_len + plain_len / 32 < plain_len
}

/// Whether zstd at level 1 saves a worthwhile share of the first [`PROBE_BYTES`] of `data`;
/// always true for shorter inputs, which are compressed whole without a probe.
fn probe_pays(data: &[u8]) -> bool {
    if data.len() <= PROBE_BYTES {
        return true;
    }
    zstd::bulk::compress(&data[..PROBE_BYTES], 1).is_ok_and(|p| worth(PROBE_BYTES, p.len()))
}

/// Appends `data` compressed by `c` to `out` if that is `worth` it (and the probe said it
/// might be) and returns the compressed length; else leaves `out` as it was and returns
/// `None`. The frame is written in place into `out`'s spare capacity (reserved here up to
/// zstd's bound), so a reused `out` costs no allocation.
fn compress_onto(
    c: &mut zstd::bulk::Compressor<'static>,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Option<usize> {
    let start = out.len();
    out.reserve(zstd::zstd_safe::compress_bound(data.len()));
    let mut at = std::io::Cursor::new(&mut *out);
    at.set_position(start as u64);
    match c.compress_to_buffer(data, &mut at) {
        Ok(n) if worth(data.len(), n) => Some(n),
        _ => {
            out.truncate(start);
            None
        }
    }
}

/// Encodes a plaintext chunk for storage (format 1's rule): zstd when it saves at least 1/32
/// of the bytes, raw otherwise.
pub fn encode(plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(plain, &mut out);
    out
}

/// [`encode`] into `out` (cleared first; its allocation is reused).
pub fn encode_into(plain: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(HEADER_BYTES + zstd::zstd_safe::compress_bound(plain.len()));
    out.extend_from_slice(&CHUNK_MAGIC);
    out.extend_from_slice(&[Codec::Zstd as u8, 0, 0, 0]);
    out.extend_from_slice(&(plain.len() as u64).to_le_bytes());
    let packed = probe_pays(plain)
        && WHOLE_ZSTD
            .with_borrow_mut(|c| {
                let c = match c {
                    Some(c) => c,
                    None => c.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL).ok()?),
                };
                compress_onto(c, plain, out)
            })
            .is_some();
    if !packed {
        out[4] = Codec::Raw as u8;
        out.extend_from_slice(plain);
    }
}

/// Encodes a chunk holding float elements laid out as `planes` says: byte planes when the
/// planes payload saves at least 1/32 of the bytes, else as [`encode`] does. A `lead` beyond
/// the chunk or `u16::MAX`, or a chunk without a whole element, is encoded as [`encode`] does.
pub fn encode_planes(plain: &[u8], planes: Planes) -> Vec<u8> {
    let mut out = Vec::new();
    encode_planes_into(plain, planes, &mut out);
    out
}

/// [`encode_planes`] into `out` (cleared first; its allocation is reused). A probe of each
/// plane's first [`PROBE_BYTES`] decides first which planes stay raw. The raw planes ahead of
/// the first compressed one are split straight into `out` when every plane is raw; else each
/// later plane takes one pass over the body, split [`PIECE_ELEMS`] elements at a time into a
/// small per-thread scratch, its pieces streamed through the plane compressor into `out` (or
/// copied, when raw), and the first such pass also copies the leading raw planes' pieces to
/// their places. So no plane is ever held whole outside `out`: memory beyond the object is
/// `w` pieces, at most 512 KiB.
pub fn encode_planes_into(plain: &[u8], planes: Planes, out: &mut Vec<u8>) {
    let w = planes.width as usize;
    let lead = planes.lead;
    if !matches!(w, 2 | 4 | 8) || lead > u16::MAX as usize || lead + w > plain.len() {
        return encode_into(plain, out);
    }
    let n = (plain.len() - lead) / w;
    let (body, tail) = plain[lead..].split_at(n * w);
    let lead16 = (lead as u16).to_le_bytes();
    out.clear();
    // Room for every plane compressed at zstd's bound, so the compressor never reallocates.
    out.reserve(HEADER_BYTES + lead + tail.len() + w * (5 + zstd::zstd_safe::compress_bound(n)));
    out.extend_from_slice(&CHUNK_MAGIC);
    out.extend_from_slice(&[Codec::Planes as u8, planes.width, lead16[0], lead16[1]]);
    out.extend_from_slice(&(plain.len() as u64).to_le_bytes());
    out.extend_from_slice(&plain[..lead]);
    PLANES.with_borrow_mut(|scratch| {
        // Per plane: whether the probe says to store it raw. Planes of at most PROBE_BYTES are
        // compressed whole without a probe.
        let mut raw = [false; 8];
        if n > PROBE_BYTES {
            for_each_piece(
                &body[..w * PROBE_BYTES],
                w,
                PROBE_BYTES,
                scratch,
                |_, probes| {
                    for (k, probe) in probes.iter().enumerate() {
                        raw[k] = !plane_probe_pays(probe);
                    }
                },
            );
        }
        let direct = raw[..w].iter().take_while(|r| **r).count();
        let start = out.len();
        out.resize(start + direct * (5 + n), 0);
        for k in 0..direct {
            let head = start + k * (5 + n);
            out[head] = 0;
            out[head + 1..head + 5].copy_from_slice(&(n as u32).to_le_bytes());
        }
        if direct == w {
            let mut dsts: Vec<&mut [u8]> = out[start..]
                .chunks_exact_mut(5 + n)
                .map(|p| &mut p[5..])
                .collect();
            split(body, &mut dsts);
        }
        for k in direct..w {
            let head = out.len();
            out.extend_from_slice(&[0; 5]);
            // The first pass (plane `direct`, never raw) also places the leading raw planes.
            let fill = if k == direct { direct } else { 0 };
            let packed = match raw[k] {
                true => None,
                false => stream_plane(body, (w, k), (fill, start), scratch, out),
            };
            let (mode, stored) = match packed {
                Some(len) => (1u8, len),
                None => {
                    out.truncate(head + 5);
                    for_each_piece(body, w, PIECE_ELEMS, scratch, |at, pieces| {
                        place_pieces(out, pieces, (fill, start, n), at);
                        out.extend_from_slice(pieces[k]);
                    });
                    (0u8, n)
                }
            };
            out[head] = mode;
            out[head + 1..head + 5].copy_from_slice(&(stored as u32).to_le_bytes());
        }
    });
    out.extend_from_slice(tail);
    if !worth(plain.len(), out.len() - HEADER_BYTES) {
        encode_into(plain, out);
    }
}

/// Elements of a chunk's body split at a time when its planes are encoded: one piece of each
/// plane (at most 8 x 64 KiB) stays in the core's cache between the split and its use.
const PIECE_ELEMS: usize = 64 * 1024;

/// Splits `body` (elements of `w` bytes) into planes `piece` elements at a time, into
/// `scratch`, and calls `f` with each piece's first element index and its `w` plane pieces.
fn for_each_piece(
    body: &[u8],
    w: usize,
    piece: usize,
    scratch: &mut Vec<u8>,
    mut f: impl FnMut(usize, &[&[u8]]),
) {
    let n = body.len() / w;
    scratch.resize(w * piece.min(n), 0);
    for at in (0..n).step_by(piece) {
        let len = piece.min(n - at);
        let planes = &mut scratch[..w * len];
        split(
            &body[at * w..(at + len) * w],
            &mut planes.chunks_exact_mut(len).collect::<Vec<_>>(),
        );
        f(at, &planes.chunks_exact(len).collect::<Vec<_>>());
    }
}

/// Copies the pieces of planes `..count` (starting at element `at`) to their places in
/// `out`, whose raw planes of `n` bytes start at `start`, each after its 5-byte header.
fn place_pieces(
    out: &mut [u8],
    pieces: &[&[u8]],
    (count, start, n): (usize, usize, usize),
    at: usize,
) {
    for (j, p) in pieces[..count].iter().enumerate() {
        let to = start + j * (5 + n) + 5 + at;
        out[to..to + p.len()].copy_from_slice(p);
    }
}

/// Appends plane `k` of `body` (`w`-byte elements) to `out` as one zstd frame of the plane
/// compressor, fed piece by piece, and returns its length if that is `worth` it; else `None`
/// (`out` may then hold part of a frame: the caller truncates). Places the leading raw planes
/// (`fill` of them, from `start`; see [`place_pieces`]) on the way, unless the compressor
/// cannot be made.
fn stream_plane(
    body: &[u8],
    (w, k): (usize, usize),
    (fill, start): (usize, usize),
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Option<usize> {
    use zstd::zstd_safe::zstd_sys::ZSTD_EndDirective::{ZSTD_e_continue, ZSTD_e_end};
    use zstd::zstd_safe::{InBuffer, OutBuffer, ResetDirective};
    let n = body.len() / w;
    let from = out.len();
    with_plane_zstd(|c| {
        let cx = c.context_mut();
        let mut ok = cx.reset(ResetDirective::SessionOnly).is_ok()
            && cx.set_pledged_src_size(Some(n as u64)).is_ok();
        // One call per piece, then one to end the frame. The room reserved for the plane
        // (zstd's bound) suffices; should it not, zstd stops with `out` full and gets more.
        let mut feed = |out: &mut Vec<u8>, data: &[u8], end| {
            let mut input = InBuffer::around(data);
            loop {
                if out.len() == out.capacity() {
                    out.reserve(1 << 16);
                }
                let pos = out.len();
                let left =
                    cx.compress_stream2(&mut OutBuffer::around_pos(out, pos), &mut input, end);
                match left {
                    Err(_) => return false,
                    Ok(left)
                        if input.pos == data.len() && (end == ZSTD_e_continue || left == 0) =>
                    {
                        return true;
                    }
                    Ok(_) => {}
                }
            }
        };
        for_each_piece(body, w, PIECE_ELEMS, scratch, |at, pieces| {
            place_pieces(out, pieces, (fill, start, n), at);
            ok = ok && feed(out, pieces[k], ZSTD_e_continue);
        });
        ok = ok && feed(out, &[], ZSTD_e_end);
        let len = out.len() - from;
        (ok && worth(n, len)).then_some(len)
    })
}

thread_local! {
    /// One piece of each plane of the chunk being encoded ([`PIECE_ELEMS`] elements), kept
    /// per thread between chunks (a push has one long-lived worker per core).
    static PLANES: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The whole-chunk compressor (zstd at [`ZSTD_LEVEL`]), kept per thread: a reused context
    /// writes the same frame as a fresh one.
    static WHOLE_ZSTD: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    /// The plane compressor, kept per thread: zstd level 1 at the largest acceleration
    /// (`targetLength` 131072) with Huffman-coded literals, in effect an order-0 entropy coder.
    /// On bf16 exponent planes it stored 0.339 of the plane at 0.86 ns/byte, against 0.368 at
    /// 3.4 ns/byte for plain level 1 (`bench/README.md`, end of the codecs.sh section).
    static PLANE_ZSTD: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` with this thread's plane compressor, made on first use; `None` if zstd could not
/// make one.
fn with_plane_zstd<T>(
    f: impl FnOnce(&mut zstd::bulk::Compressor<'static>) -> Option<T>,
) -> Option<T> {
    use zstd::zstd_safe::{CParameter, ParamSwitch};
    PLANE_ZSTD.with_borrow_mut(|c| {
        let c = match c {
            Some(c) => c,
            None => {
                let mut z = zstd::bulk::Compressor::new(PLANE_LEVEL).ok()?;
                z.set_parameter(CParameter::TargetLength(131_072)).ok()?;
                z.set_parameter(CParameter::LiteralCompressionMode(ParamSwitch::Enable))
                    .ok()?;
                c.insert(z)
            }
        };
        f(c)
    })
}

/// Whether the plane compressor saves a worthwhile share of `probe`, the first
/// [`PROBE_BYTES`] of a longer plane.
fn plane_probe_pays(probe: &[u8]) -> bool {
    with_plane_zstd(|c| c.compress(probe).ok()).is_some_and(|p| worth(probe.len(), p.len()))
}

/// Splits `body` (elements of `w = planes.len()` bytes) into the `w` planes, each of
/// `body.len() / w` bytes: `planes[k][i] = body[i * w + k]`. On x86-64 CPUs with AVX2 (the
/// baseline target has only SSE2, where the compiler finds no shuffle for this) the same
/// loops are compiled for AVX2: 0.08 against 0.38 ns/byte for bf16 (`bench/README.md`).
fn split(body: &[u8], planes: &mut [&mut [u8]]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { split_avx2(body, planes) };
    }
    split_elements(body, planes)
}

/// [`split`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn split_avx2(body: &[u8], planes: &mut [&mut [u8]]) {
    split_elements(body, planes)
}

/// [`split`] as element-wise loops over fixed-size elements, which the compiler turns into
/// vector shuffles where the target has them.
#[inline(always)]
fn split_elements(body: &[u8], planes: &mut [&mut [u8]]) {
    match planes {
        [p0, p1] => {
            let (e, _) = body.as_chunks::<2>();
            for ((a, b), [x, y]) in p0.iter_mut().zip(p1.iter_mut()).zip(e) {
                (*a, *b) = (*x, *y);
            }
        }
        [p0, p1, p2, p3] => {
            let (e, _) = body.as_chunks::<4>();
            let outs = p0
                .iter_mut()
                .zip(p1.iter_mut())
                .zip(p2.iter_mut().zip(p3.iter_mut()));
            for (((a, b), (c, d)), [x, y, z, t]) in outs.zip(e) {
                (*a, *b, *c, *d) = (*x, *y, *z, *t);
            }
        }
        _ => {
            let (e, _) = body.as_chunks::<8>();
            for (k, plane) in planes.iter_mut().enumerate() {
                for (a, x) in plane.iter_mut().zip(e) {
                    *a = x[k];
                }
            }
        }
    }
}

/// The inverse of [`split`]: `body[i * w + k] = planes[k][i]`, with `w = planes.len()` planes
/// of `body.len() / w` bytes each.
fn join(planes: &[&[u8]], body: &mut [u8]) {
    match *planes {
        [p0, p1] => {
            let (e, _) = body.as_chunks_mut::<2>();
            for ([x, y], (a, b)) in e.iter_mut().zip(p0.iter().zip(p1)) {
                (*x, *y) = (*a, *b);
            }
        }
        [p0, p1, p2, p3] => {
            let (e, _) = body.as_chunks_mut::<4>();
            let ins = p0.iter().zip(p1).zip(p2.iter().zip(p3));
            for ([x, y, z, t], ((a, b), (c, d))) in e.iter_mut().zip(ins) {
                (*x, *y, *z, *t) = (*a, *b, *c, *d);
            }
        }
        _ => {
            let (e, _) = body.as_chunks_mut::<8>();
            for (k, plane) in planes.iter().enumerate() {
                for (x, a) in e.iter_mut().zip(*plane) {
                    x[k] = *a;
                }
            }
        }
    }
}

/// Decodes a stored chunk object and checks that its plaintext hashes to `expected`.
/// Lengths are validated before any allocation.
pub fn decode(expected: &Digest, stored: &[u8]) -> Result<Bytes, DecodeError> {
    decode_with(Some(expected), stored, Bytes::copy_from_slice)
}

/// [`decode`] of an object the caller owns: a raw chunk's plaintext is a slice of `stored`
/// (no copy), which keeps `stored` alive for as long as the plaintext is.
pub fn decode_owned(expected: &Digest, stored: Bytes) -> Result<Bytes, DecodeError> {
    decode_with(Some(expected), &stored, |_| stored.slice(HEADER_BYTES..))
}

/// [`decode_owned`] without the hash check, for a caller that proves the plaintext another
/// way before using it (a pull hashes the whole assembled file, [`crate::chunk::tree`], and
/// checks each chunk on its own only to name one that fails). Every structural check stays,
/// and a plaintext whose length is not `size` (the manifest's) is a
/// [`DecodeError::LengthMismatch`], so that it cannot overwrite its neighbours.
pub fn decode_owned_unverified(stored: Bytes, size: u64) -> Result<Bytes, DecodeError> {
    let plain = decode_with(None, &stored, |_| stored.slice(HEADER_BYTES..))?;
    if plain.len() as u64 != size {
        return Err(DecodeError::LengthMismatch {
            declared: size,
            actual: plain.len() as u64,
        });
    }
    Ok(plain)
}

/// Checks and decodes `stored` (its hash too, given `expected`); `raw` makes a raw chunk's
/// plaintext from its payload.
fn decode_with(
    expected: Option<&Digest>,
    stored: &[u8],
    raw: impl FnOnce(&[u8]) -> Bytes,
) -> Result<Bytes, DecodeError> {
    if stored.len() < HEADER_BYTES {
        return Err(DecodeError::Truncated(stored.len()));
    }
    if stored[..4] != CHUNK_MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let declared = u64::from_le_bytes(stored[8..16].try_into().expect("8 bytes"));
    if declared > MAX_CHUNK_BYTES {
        return Err(DecodeError::TooLarge(declared));
    }
    let payload = &stored[HEADER_BYTES..];
    let plain: Bytes = match stored[4] {
        0 => raw(payload),
        1 => buffers::into_bytes(unzstd(payload, declared as usize)?),
        2 => {
            let lead = u16::from_le_bytes([stored[6], stored[7]]) as usize;
            buffers::into_bytes(decode_planes(
                payload,
                stored[5] as usize,
                lead,
                declared as usize,
            )?)
        }
        other => return Err(DecodeError::UnknownCodec(other)),
    };
    if plain.len() as u64 != declared {
        return Err(DecodeError::LengthMismatch {
            declared,
            actual: plain.len() as u64,
        });
    }
    if let Some(expected) = expected {
        let actual = Digest::of(&plain);
        if actual != *expected {
            return Err(DecodeError::HashMismatch {
                expected: *expected,
                actual,
            });
        }
    }
    Ok(plain)
}

/// Decompresses `payload` (at most `capacity` bytes) into a recycled buffer
/// ([`crate::buffers`]).
fn unzstd(payload: &[u8], capacity: usize) -> Result<Vec<u8>, DecodeError> {
    let bad = |e: std::io::Error| DecodeError::Decompress(e.to_string());
    let mut out = buffers::take(capacity);
    zstd::bulk::Decompressor::new()
        .and_then(|mut d| d.decompress_to_buffer(payload, &mut out))
        .map_err(bad)?;
    Ok(out)
}

/// Codec 2's payload: `lead` bytes, `w` planes of `n = (plain_len - lead) / w` bytes each as
/// `[mode u8][stored_len u32 LE][stored]` (mode 0 raw, 1 zstd), then the tail bytes.
fn decode_planes(
    payload: &[u8],
    w: usize,
    lead: usize,
    plain_len: usize,
) -> Result<Vec<u8>, DecodeError> {
    if !matches!(w, 2 | 4 | 8) {
        return Err(DecodeError::BadPlanes("element width is not 2, 4 or 8"));
    }
    if lead + w > plain_len {
        return Err(DecodeError::BadPlanes("lead leaves no whole element"));
    }
    let n = (plain_len - lead) / w;
    let tail = plain_len - lead - n * w;
    // The smallest payload that could hold the planes' headers, before allocating anything.
    if payload.len() < lead + 5 * w + tail {
        return Err(DecodeError::BadPlanes("payload ends early"));
    }
    let mut rest = payload
        .get(lead..)
        .ok_or(DecodeError::BadPlanes("payload ends early"))?;
    // Each plane's mode and stored bytes, checked before allocating anything.
    let mut stored = Vec::with_capacity(w);
    for _ in 0..w {
        let (head, after) = rest
            .split_at_checked(5)
            .ok_or(DecodeError::BadPlanes("payload ends early"))?;
        let len = u32::from_le_bytes(head[1..5].try_into().expect("4 bytes")) as usize;
        let (bytes, after) = after
            .split_at_checked(len)
            .ok_or(DecodeError::BadPlanes("plane runs past the object"))?;
        match head[0] {
            0 if bytes.len() == n => {}
            0 => return Err(DecodeError::BadPlanes("plane has the wrong length")),
            1 => {}
            _ => return Err(DecodeError::BadPlanes("unknown plane mode")),
        }
        stored.push((head[0], bytes));
        rest = after;
    }
    if rest.len() != tail {
        return Err(DecodeError::BadPlanes(
            "tail length differs from the header",
        ));
    }
    // The planes are joined PIECE_ELEMS elements at a time, raw ones straight from the
    // payload, compressed ones decompressed in lockstep (one streaming context each) into a
    // piece of scratch: no plane is ever held whole, so beyond the plaintext a decode holds
    // `w` pieces (at most 512 KiB) and its contexts' windows, each at most the plane's length
    // rounded up to a power of two or 512 KiB (a frame asking for more is refused).
    let mut out = buffers::take(plain_len);
    out.resize(plain_len, 0);
    out[..lead].copy_from_slice(&payload[..lead]);
    out[lead + n * w..].copy_from_slice(rest);
    let window_log = (n.max(1).next_power_of_two().trailing_zeros()).max(19);
    let mut streams = Vec::with_capacity(w);
    for (mode, bytes) in &stored {
        streams.push(match mode {
            0 => None,
            _ => Some((plane_dctx(window_log)?, InBuffer::around(bytes), false)),
        });
    }
    let piece = PIECE_ELEMS.min(n);
    let mut scratch = vec![0u8; piece * streams.iter().flatten().count()];
    let result = (|| {
        let mut at = 0;
        while at < n {
            let m = piece.min(n - at);
            let mut free = &mut scratch[..];
            let mut planes: Vec<&[u8]> = Vec::with_capacity(w);
            for ((_, bytes), stream) in stored.iter().zip(&mut streams) {
                let Some((dctx, input, ended)) = stream else {
                    planes.push(&bytes[at..at + m]);
                    continue;
                };
                let (part, after) = std::mem::take(&mut free).split_at_mut(m);
                *ended = fill_piece(dctx, input, part)?;
                planes.push(part);
                free = after;
            }
            join(&planes, &mut out[lead + at * w..lead + (at + m) * w]);
            at += m;
        }
        for (dctx, input, ended) in streams.iter_mut().flatten() {
            end_plane(dctx, input, *ended)?;
        }
        Ok(())
    })();
    let mut kept = DCTXS.lock().unwrap_or_else(|e| e.into_inner());
    for (dctx, _, _) in streams.into_iter().flatten() {
        if kept.len() < DCTXS_KEPT {
            kept.push(dctx);
        }
    }
    drop(kept);
    result.map(|()| out)
}

/// Streaming decompression contexts of plane decodes, reused across decodes (they hold their
/// window buffer). At most [`DCTXS_KEPT`] wait here: the planes of one 8-byte-float decode,
/// or of four 2-byte ones.
static DCTXS: std::sync::Mutex<Vec<zstd::zstd_safe::DCtx<'static>>> =
    std::sync::Mutex::new(Vec::new());
const DCTXS_KEPT: usize = 8;

fn zstd_error(code: usize) -> DecodeError {
    DecodeError::Decompress(zstd::zstd_safe::get_error_name(code).to_string())
}

/// A context for one plane's frame, accepting windows up to `2^window_log` bytes.
fn plane_dctx(window_log: u32) -> Result<zstd::zstd_safe::DCtx<'static>, DecodeError> {
    use zstd::zstd_safe::{DCtx, DParameter, ResetDirective};
    let pooled = DCTXS.lock().unwrap_or_else(|e| e.into_inner()).pop();
    let mut dctx = pooled.unwrap_or_else(DCtx::create);
    dctx.reset(ResetDirective::SessionAndParameters)
        .map_err(zstd_error)?;
    dctx.set_parameter(DParameter::WindowLogMax(window_log))
        .map_err(zstd_error)?;
    Ok(dctx)
}

/// Decompresses exactly `part.len()` bytes of a plane's frame into `part`; true if the frame
/// ended with them. A frame that ends early, or input that runs out, is an error.
fn fill_piece(
    dctx: &mut zstd::zstd_safe::DCtx<'static>,
    input: &mut InBuffer<'_>,
    part: &mut [u8],
) -> Result<bool, DecodeError> {
    let short = DecodeError::BadPlanes("plane has the wrong length");
    let want = part.len();
    let mut output = OutBuffer::around(part);
    loop {
        let before = (input.pos, output.pos());
        let hint = dctx
            .decompress_stream(&mut output, input)
            .map_err(zstd_error)?;
        match (hint, output.pos() == want) {
            (0, true) => return Ok(true),
            (0, false) => return Err(short),
            (_, true) => return Ok(false),
            _ if (input.pos, output.pos()) == before => return Err(short),
            _ => {}
        }
    }
}

/// Checks that a plane's frame ends after its `n` bytes (`ended`: it already did) and that no
/// input follows it.
fn end_plane(
    dctx: &mut zstd::zstd_safe::DCtx<'static>,
    input: &mut InBuffer<'_>,
    mut ended: bool,
) -> Result<(), DecodeError> {
    let long = DecodeError::BadPlanes("plane has the wrong length");
    let mut extra = [0u8; 1];
    while !ended {
        let mut output = OutBuffer::around(&mut extra[..]);
        let before = input.pos;
        let hint = dctx
            .decompress_stream(&mut output, input)
            .map_err(zstd_error)?;
        if output.pos() > 0 || (hint != 0 && input.pos == before) {
            return Err(long);
        }
        ended = hint == 0;
    }
    match input.pos == input.src.len() {
        true => Ok(()),
        false => Err(DecodeError::BadPlanes("plane runs past its frame")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::tests::noise;

    #[test]
    fn decode_owned_matches_decode_for_every_codec_and_slices_raw_chunks() {
        let raw = noise(5, 4096);
        let text = b"weights ".repeat(512);
        let floats: Vec<u8> = (0..4096u32)
            .flat_map(|i| ((i % 7) as u16).to_le_bytes())
            .collect();
        let planes = Planes { width: 2, lead: 0 };
        for (plain, stored) in [
            (&raw[..], encode(&raw)),
            (&text[..], encode(&text)),
            (&floats[..], encode_planes(&floats, planes)),
        ] {
            let id = Digest::of(plain);
            let stored = Bytes::from(stored);
            let owned = decode_owned(&id, stored.clone()).unwrap();
            assert_eq!(owned, decode(&id, &stored).unwrap());
            assert_eq!(&owned[..], plain);
            if stored[4] == Codec::Raw as u8 {
                assert_eq!(owned.as_ptr(), stored[HEADER_BYTES..].as_ptr(), "no copy");
            }
            let unverified = decode_owned_unverified(stored.clone(), plain.len() as u64);
            assert_eq!(&unverified.unwrap()[..], plain);
            let short = decode_owned_unverified(stored.clone(), plain.len() as u64 - 1);
            assert!(matches!(short, Err(DecodeError::LengthMismatch { .. })));
            let wrong = Digest::of(b"other");
            assert!(decode_owned(&wrong, stored).is_err());
        }
    }

    #[test]
    fn encode_decode_round_trip_raw_and_zstd() {
        let random = noise(5, 300 * 1024);
        let enc = encode(&random);
        assert_eq!(enc[4], Codec::Raw as u8, "random data must be stored raw");
        assert_eq!(
            decode(&Digest::of(&random), &enc).unwrap(),
            Bytes::from(random)
        );

        let text = b"layer.weight: 0.0\n".repeat(20_000);
        let enc = encode(&text);
        assert_eq!(enc[4], Codec::Zstd as u8);
        assert!(enc.len() < text.len() / 10);
        assert_eq!(decode(&Digest::of(&text), &enc).unwrap(), &text[..]);
    }

    #[test]
    fn object_bound_covers_the_largest_zstd_frame() {
        let bound = zstd::zstd_safe::compress_bound(MAX_CHUNK_BYTES as usize) as u64;
        assert_eq!(MAX_OBJECT_BYTES, HEADER_BYTES as u64 + bound);
    }

    #[test]
    fn decode_rejects_corruption() {
        let data = noise(9, 10_000);
        let id = Digest::of(&data);
        let mut enc = encode(&data);
        let last = enc.len() - 1;
        enc[last] ^= 1;
        assert!(matches!(
            decode(&id, &enc),
            Err(DecodeError::HashMismatch { .. })
        ));
        assert!(matches!(
            decode(&id, &enc[..10]),
            Err(DecodeError::Truncated(10))
        ));
        let mut huge = encode(&data);
        huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(decode(&id, &huge), Err(DecodeError::TooLarge(_))));
        let mut short = encode(&data);
        short.truncate(short.len() - 5);
        assert!(matches!(
            decode(&id, &short),
            Err(DecodeError::LengthMismatch { .. })
        ));
    }

    /// Gaussian-like float data (sum of uniforms), std about 0.02, as f32 little-endian.
    fn weights_f32(seed: u64, n: usize) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut out = Vec::with_capacity(n * 4);
        for _ in 0..n {
            let s: f32 = (0..4).map(|_| rng.f32() - 0.5).sum::<f32>() * 0.035;
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }

    #[test]
    fn planes_round_trip_and_pay_on_floats() {
        let f32s = weights_f32(1, 200_000);
        // bf16: the top two bytes of each f32.
        let bf16: Vec<u8> = f32s.chunks_exact(4).flat_map(|e| [e[2], e[3]]).collect();
        for (data, w) in [(&f32s, 4u8), (&bf16, 2u8)] {
            for lead in [0usize, 1, 3, 7] {
                let mut plain = noise(2, lead);
                plain.extend_from_slice(data);
                plain.extend_from_slice(b"xyz"); // a tail that is no whole element
                let enc = encode_planes(&plain, Planes { width: w, lead });
                assert_eq!(enc[4], Codec::Planes as u8, "width {w} lead {lead}");
                let plain_zstd = encode(&plain).len();
                assert!(
                    enc.len() < plain_zstd,
                    "planes {} vs zstd {plain_zstd}",
                    enc.len()
                );
                let back = decode(&Digest::of(&plain), &enc).unwrap();
                assert_eq!(&back[..], &plain[..], "width {w} lead {lead}");
            }
        }
    }

    #[test]
    fn split_and_join_follow_the_plane_layout() {
        // planes[k * n + i] = body[i * w + k], for lengths around the vector widths.
        for w in [2usize, 4, 8] {
            for n in [1usize, 15, 16, 17, 31, 32, 33, 64, 1000, 4099] {
                let body = noise((w * 10_000 + n) as u64, n * w);
                let mut planes = vec![0u8; n * w];
                split(&body, &mut planes.chunks_exact_mut(n).collect::<Vec<_>>());
                let mut portable = vec![0u8; n * w];
                split_elements(&body, &mut portable.chunks_exact_mut(n).collect::<Vec<_>>());
                assert_eq!(
                    portable, planes,
                    "w {w} n {n}: portable and dispatched split"
                );
                for i in 0..n {
                    for k in 0..w {
                        assert_eq!(
                            planes[k * n + i],
                            body[i * w + k],
                            "w {w} n {n} i {i} k {k}"
                        );
                    }
                }
                let refs: Vec<&[u8]> = planes.chunks_exact(n).collect();
                let mut back = vec![0u8; n * w];
                join(&refs, &mut back);
                assert_eq!(back, body, "w {w} n {n}");
            }
        }
    }

    /// Codec 2's definition written plainly: every plane split, then each compressed if its
    /// probe (planes over [`PROBE_BYTES`]) and the whole plane pay, else stored raw.
    fn encode_planes_plainly(plain: &[u8], w: usize, lead: usize) -> Vec<u8> {
        let n = (plain.len() - lead) / w;
        let mut planes = vec![0u8; n * w];
        split_elements(
            &plain[lead..lead + n * w],
            &mut planes.chunks_exact_mut(n).collect::<Vec<_>>(),
        );
        let mut out = CHUNK_MAGIC.to_vec();
        out.extend_from_slice(&[Codec::Planes as u8, w as u8]);
        out.extend_from_slice(&(lead as u16).to_le_bytes());
        out.extend_from_slice(&(plain.len() as u64).to_le_bytes());
        out.extend_from_slice(&plain[..lead]);
        for plane in planes.chunks_exact(n) {
            let head = out.len();
            out.extend_from_slice(&[0; 5]);
            let pays = n <= PROBE_BYTES || plane_probe_pays(&plane[..PROBE_BYTES]);
            let packed = pays.then(|| with_plane_zstd(|c| compress_onto(c, plane, &mut out)));
            let stored = match packed.flatten() {
                Some(len) => {
                    out[head] = 1;
                    len
                }
                None => {
                    out.extend_from_slice(plane);
                    n
                }
            };
            out[head + 1..head + 5].copy_from_slice(&(stored as u32).to_le_bytes());
        }
        out.extend_from_slice(&plain[lead + n * w..]);
        out
    }

    #[test]
    fn planes_split_straight_into_the_object_give_the_plain_encoding() {
        let f32s = weights_f32(11, 150_000);
        let bf16: Vec<u8> = f32s.chunks_exact(4).flat_map(|e| [e[2], e[3]]).collect();
        // Low bytes constant, high bytes random: the raw plane comes after a compressed one.
        let high_random: Vec<u8> = noise(12, 200_000).iter().flat_map(|&b| [7u8, b]).collect();
        let short = weights_f32(13, 1000);
        // Low bytes random (split straight into the object), high bytes constant for the
        // probe, random after it: the high plane is streamed, does not pay, and is stored raw.
        let probe_lies: Vec<u8> = noise(14, 2 * 200_000)
            .chunks_exact(2)
            .enumerate()
            .flat_map(|(i, e)| [e[0], if i < PROBE_BYTES { 9 } else { e[1] }])
            .collect();
        let cases = [
            (&probe_lies, 2, 0),
            (&f32s, 4, 0),
            (&f32s, 4, 3),
            (&bf16, 2, 0),
            (&bf16, 2, 1),
            (&high_random, 2, 0),
            (&short, 4, 2),
        ];
        for (plain, w, lead) in cases {
            let mut out = Vec::new();
            encode_planes_into(
                plain,
                Planes {
                    width: w as u8,
                    lead,
                },
                &mut out,
            );
            assert_eq!(out[4], Codec::Planes as u8, "width {w} lead {lead}");
            assert_eq!(
                out,
                encode_planes_plainly(plain, w, lead),
                "width {w} lead {lead}"
            );
            assert_eq!(&decode(&Digest::of(plain), &out).unwrap()[..], &plain[..]);
        }
    }

    #[test]
    fn encoding_into_a_used_buffer_gives_the_same_object() {
        let f32s = weights_f32(6, 100_000);
        let planes = Planes { width: 4, lead: 3 };
        let mut out = b"left over from another chunk".repeat(1000);
        encode_planes_into(&f32s, planes, &mut out);
        assert_eq!(out, encode_planes(&f32s, planes));
        assert_eq!(out[4], Codec::Planes as u8);
        let text = b"layer.weight: 0.0\n".repeat(20_000);
        encode_into(&text, &mut out);
        assert_eq!(out, encode(&text));
        assert_eq!(out[4], Codec::Zstd as u8);
        let random = noise(8, 70_000);
        encode_into(&random, &mut out);
        assert_eq!(&out[HEADER_BYTES..], &random[..], "stored raw");
    }

    #[test]
    fn planes_fall_back_when_they_do_not_pay_or_do_not_fit() {
        let random = noise(4, 100_000);
        let enc = encode_planes(&random, Planes { width: 4, lead: 0 });
        assert_eq!(enc[4], Codec::Raw as u8);
        let tiny = weights_f32(2, 1);
        let enc = encode_planes(&tiny, Planes { width: 4, lead: 2 });
        assert_ne!(enc[4], Codec::Planes as u8);
        assert_eq!(decode(&Digest::of(&tiny), &enc).unwrap(), &tiny[..]);
    }

    #[test]
    fn planes_decoder_refuses_malformed_payloads() {
        let plain = weights_f32(3, 50_000);
        let id = Digest::of(&plain);
        let good = encode_planes(&plain, Planes { width: 4, lead: 0 });
        assert_eq!(good[4], Codec::Planes as u8);
        let bad = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut v = good.clone();
            edit(&mut v);
            decode(&id, &v).unwrap_err()
        };
        assert!(matches!(bad(&|v| v[5] = 3), DecodeError::BadPlanes(_)));
        assert!(matches!(
            bad(&|v| v[6..8].copy_from_slice(&u16::MAX.to_le_bytes())),
            DecodeError::BadPlanes(_)
        ));
        assert!(matches!(
            bad(&|v| v.truncate(v.len() - 1)),
            DecodeError::BadPlanes(_)
        ));
        assert!(matches!(bad(&|v| v.push(0)), DecodeError::BadPlanes(_)));
        // The first plane's length field claims more than the object holds.
        assert!(matches!(
            bad(&|v| v[17..21].copy_from_slice(&u32::MAX.to_le_bytes())),
            DecodeError::BadPlanes(_)
        ));
        assert!(matches!(bad(&|v| v[16] = 9), DecodeError::BadPlanes(_)));
    }

    /// A compressed plane must be one zstd frame of exactly its `n` bytes, nothing after it,
    /// with a window within max(512 KiB, n rounded up to a power of two).
    #[test]
    fn planes_decoder_refuses_frames_of_the_wrong_length_or_window() {
        use std::io::Write;
        let n = 100_000;
        let low: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let high = vec![0x3c_u8; n];
        let plain: Vec<u8> = low.iter().zip(&high).flat_map(|(a, b)| [*a, *b]).collect();
        let object = |frame: &[u8]| {
            let mut v = CHUNK_MAGIC.to_vec();
            v.extend_from_slice(&[Codec::Planes as u8, 2, 0, 0]);
            v.extend_from_slice(&(plain.len() as u64).to_le_bytes());
            v.push(1);
            v.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            v.extend_from_slice(frame);
            v.push(0);
            v.extend_from_slice(&(n as u32).to_le_bytes());
            v.extend_from_slice(&high);
            v
        };
        let zstd = |data: &[u8]| zstd::bulk::compress(data, 1).unwrap();
        let id = Digest::of(&plain);
        assert_eq!(decode(&id, &object(&zstd(&low))).unwrap(), &plain[..]);
        let mut trailing = zstd(&low);
        trailing.push(0);
        let two_frames = [zstd(&low[..n / 2]), zstd(&low[n / 2..])].concat();
        let mut truncated = zstd(&low);
        truncated.truncate(truncated.len() - 3);
        let mut big_window = Vec::new();
        let mut e = zstd::stream::Encoder::new(&mut big_window, 1).unwrap();
        e.set_parameter(zstd::zstd_safe::CParameter::WindowLog(27))
            .unwrap();
        e.include_contentsize(false).unwrap();
        e.write_all(&low).unwrap();
        e.finish().unwrap();
        for (what, frame) in [
            ("short", zstd(&low[..n - 1])),
            ("long", zstd(&[&low[..], &[1]].concat())),
            ("trailing", trailing),
            ("two frames", two_frames),
            ("truncated", truncated),
            ("window", big_window),
        ] {
            let e = decode(&id, &object(&frame)).unwrap_err();
            let refused = matches!(e, DecodeError::BadPlanes(_) | DecodeError::Decompress(_));
            assert!(refused, "{what}: {e:?}");
        }
    }

    /// FORMAT.md's codec 2 vector: the object's bytes decode to the plaintext, and the id in
    /// the document is the plaintext's BLAKE3.
    #[test]
    fn golden_planes_vector() {
        let doc = include_str!("../../docs/FORMAT.md");
        let start = doc
            .find("is stored by\nthe 36-byte object")
            .expect("vector in FORMAT.md");
        let block = &doc[start..];
        let block = &block[block.find("```\n").unwrap() + 4..];
        let block = &block[..block.find("```").unwrap()];
        let hex: String = block
            .lines()
            .flat_map(|l| l.split("  ").next())
            .collect::<String>()
            .split_whitespace()
            .collect();
        let object = hex::decode(&hex).expect("hex");
        assert_eq!(object.len(), 36);
        let plain = hex::decode("aa0102030405060708bb").unwrap();
        let id = Digest::of(&plain);
        assert_eq!(&decode(&id, &object).unwrap()[..], &plain[..]);
        let named = &doc[doc.find("its id is the BLAKE3 of the plaintext,").unwrap()..];
        let named = &named[named.find('`').unwrap() + 1..];
        assert_eq!(&named[..64], id.to_hex(), "id in FORMAT.md");
    }
}
