//! Content-defined chunking, chunk naming and the stored chunk encoding.
//!
//! This module owns the bytes-in, bytes-out rules of the format and does no I/O beyond reading
//! the `Read` it is given:
//! - files are cut with FastCDC (2020, normalization level 1, gear seed 0) using [`ChunkParams`];
//! - a chunk is named by the plain (unkeyed) BLAKE3 hash of its plaintext, so `b3sum` over the
//!   decoded bytes reproduces the name;
//! - a chunk is stored as a 16-byte header followed by either the plaintext or one zstd frame,
//!   whichever is smaller by a worthwhile margin (see `docs/FORMAT.md`, "Chunk object").
//!
//! Everything here is synchronous CPU work: callers in async code run it on a blocking thread.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use bytes::Bytes;
use fastcdc::v2020::{MASKS, cut, logarithm2};

/// Chunking parameters, all in bytes. `min <= avg <= max`, within FastCDC's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkParams {
    /// No chunk is shorter than this, except the last chunk of a file.
    pub min_bytes: u32,
    /// Target average chunk length.
    pub avg_bytes: u32,
    /// No chunk is longer than this.
    pub max_bytes: u32,
}

impl ChunkParams {
    /// The parameters of format 1: 512 KiB average (128 KiB min, 2 MiB max).
    ///
    /// Why 512 KiB: fine-tuned checkpoints change whole tensors of a few MiB. A changed region
    /// also dirties the chunks it straddles (on average one chunk on each side), so the bytes
    /// sent for a change of `c` bytes are roughly `c + avg`. Measured on 200 MiB files with 2 MiB
    /// tensors rewritten (see `bench/dedupe.sh`): 4 MiB average stores ~63% of the file for a
    /// 10% change, 1 MiB ~22%, 512 KiB ~12-15%. Smaller chunks dedupe better still but mean
    /// more objects and requests per GiB (2,048 per GiB here), which costs on cold transfers.
    pub const DEFAULT: ChunkParams = ChunkParams {
        min_bytes: 128 * 1024,
        avg_bytes: 512 * 1024,
        max_bytes: 2 * 1024 * 1024,
    };
}

impl Default for ChunkParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The BLAKE3 hash of a chunk's (or a file's) plaintext: its name on every store.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Hashes `data` with plain BLAKE3 (no key, no derivation context).
    pub fn of(data: &[u8]) -> Digest {
        Digest(*blake3::hash(data).as_bytes())
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl From<blake3::Hash> for Digest {
    fn from(h: blake3::Hash) -> Self {
        Digest(*h.as_bytes())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", &self.to_hex()[..12])
    }
}

/// Error parsing a hex digest.
#[derive(Debug, thiserror::Error)]
#[error("invalid digest {0:?}: expected 64 lower-case hex characters")]
pub struct ParseDigestError(String);

impl FromStr for Digest {
    type Err = ParseDigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseDigestError(s.chars().take(80).collect());
        if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| bad())?;
        Ok(Digest(out))
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One chunk cut from a stream.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Byte offset of the chunk in its file.
    pub offset: u64,
    /// The plaintext bytes.
    pub data: Bytes,
}

/// Size of the read buffer of [`Chunker`], in bytes (a multiple of the largest chunk).
const READ_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// Streams a reader into content-defined chunks. Memory: one buffer of
/// `max(8 MiB, 2 * max_bytes)` bytes, whatever the input length.
pub struct Chunker<R> {
    reader: R,
    params: ChunkParams,
    masks: (u64, u64),
    buf: Vec<u8>,
    /// Start of unconsumed data in `buf`.
    pos: usize,
    /// End of valid data in `buf`.
    len: usize,
    eof: bool,
    /// File offset of `buf[pos]`.
    offset: u64,
}

impl<R: Read> Chunker<R> {
    pub fn new(reader: R, params: ChunkParams) -> Self {
        let bits = logarithm2(params.avg_bytes);
        // Normalization level 1, as `fastcdc::v2020::FastCDC::new` uses.
        let masks = (MASKS[(bits + 1) as usize], MASKS[(bits - 1) as usize]);
        let cap = READ_BUFFER_BYTES.max(2 * params.max_bytes as usize);
        Chunker {
            reader,
            params,
            masks,
            buf: vec![0; cap],
            pos: 0,
            len: 0,
            eof: false,
            offset: 0,
        }
    }

    /// Moves the unconsumed tail to the front and reads until the buffer is full or EOF.
    fn refill(&mut self) -> io::Result<()> {
        self.buf.copy_within(self.pos..self.len, 0);
        self.len -= self.pos;
        self.pos = 0;
        while !self.eof && self.len < self.buf.len() {
            match self.reader.read(&mut self.buf[self.len..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        if self.len - self.pos < self.params.max_bytes as usize && !self.eof {
            self.refill()?;
        }
        let avail = &self.buf[self.pos..self.len];
        if avail.is_empty() {
            return Ok(None);
        }
        let p = self.params;
        let (ms, ml) = self.masks;
        let (_, n) = cut(
            avail,
            p.min_bytes as usize,
            p.avg_bytes as usize,
            p.max_bytes as usize,
            ms,
            ml,
            ms << 1,
            ml << 1,
        );
        let chunk = Chunk {
            offset: self.offset,
            data: Bytes::copy_from_slice(&avail[..n]),
        };
        self.pos += n;
        self.offset += n as u64;
        Ok(Some(chunk))
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = io::Result<Chunk>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk().transpose()
    }
}

/// Magic bytes opening every stored chunk object.
pub const CHUNK_MAGIC: [u8; 4] = *b"MVK1";
/// Length of the stored chunk header in bytes.
pub const HEADER_BYTES: usize = 16;
/// Largest plaintext a chunk object may declare; protects decoders from hostile headers.
pub const MAX_CHUNK_BYTES: u64 = 16 * 1024 * 1024;
/// Largest legal chunk object in bytes: the header plus zstd's worst-case frame for
/// [`MAX_CHUNK_BYTES`] of input (`ZSTD_COMPRESSBOUND(n)` = `n + n / 256` for `n` >= 128 KiB),
/// which also covers a raw payload. Readers never hold more than this of a chunk object.
pub const MAX_OBJECT_BYTES: u64 = HEADER_BYTES as u64 + MAX_CHUNK_BYTES + MAX_CHUNK_BYTES / 256;

/// How a stored chunk's payload is encoded (header byte 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Codec {
    Raw = 0,
    Zstd = 1,
}

/// zstd level used when compressing chunks: fast, and most of the gain on model files.
const ZSTD_LEVEL: i32 = 3;
/// Bytes sampled to decide whether a chunk is worth compressing.
const PROBE_BYTES: usize = 64 * 1024;

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
    #[error("chunk object holds {actual} bytes of plaintext, header says {declared}")]
    LengthMismatch { declared: u64, actual: u64 },
    #[error("chunk content hashes to {actual}, expected {expected}")]
    HashMismatch { expected: Digest, actual: Digest },
}

/// Encodes a plaintext chunk for storage: zstd when it saves at least 1/32 of the bytes,
/// raw otherwise. Incompressible data (most float weights) is detected from a 64 KiB probe
/// so it costs almost no CPU.
pub fn encode(plain: &[u8]) -> Vec<u8> {
    let worth = |plain_len: usize, packed_len: usize| packed_len + plain_len / 32 < plain_len;
    let compressed = if plain.len() > PROBE_BYTES {
        let probe = &plain[..PROBE_BYTES];
        let packed = zstd::bulk::compress(probe, 1).ok();
        match packed {
            Some(p) if worth(probe.len(), p.len()) => zstd::bulk::compress(plain, ZSTD_LEVEL).ok(),
            _ => None,
        }
    } else {
        zstd::bulk::compress(plain, ZSTD_LEVEL).ok()
    };
    match compressed {
        Some(z) if worth(plain.len(), z.len()) => frame(Codec::Zstd, plain.len(), &z),
        _ => frame(Codec::Raw, plain.len(), plain),
    }
}

fn frame(codec: Codec, plain_len: usize, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    out.extend_from_slice(&CHUNK_MAGIC);
    out.push(codec as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(plain_len as u64).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Decodes a stored chunk object and checks that its plaintext hashes to `expected`.
/// Lengths are validated before any allocation.
pub fn decode(expected: &Digest, stored: &[u8]) -> Result<Bytes, DecodeError> {
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
        0 => Bytes::copy_from_slice(payload),
        1 => zstd::bulk::decompress(payload, declared as usize)
            .map_err(|e| DecodeError::Decompress(e.to_string()))?
            .into(),
        other => return Err(DecodeError::UnknownCodec(other)),
    };
    if plain.len() as u64 != declared {
        return Err(DecodeError::LengthMismatch {
            declared,
            actual: plain.len() as u64,
        });
    }
    let actual = Digest::of(&plain);
    if actual != *expected {
        return Err(DecodeError::HashMismatch {
            expected: *expected,
            actual,
        });
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random bytes (seeded), so failures reproduce.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut v = vec![0u8; len];
        rng.fill(&mut v);
        v
    }

    fn cuts(data: &[u8], p: ChunkParams) -> Vec<(u64, Digest)> {
        Chunker::new(data, p)
            .map(|c| c.unwrap())
            .map(|c| (c.offset, Digest::of(&c.data)))
            .collect()
    }

    const SMALL: ChunkParams = ChunkParams {
        min_bytes: 2 * 1024,
        avg_bytes: 8 * 1024,
        max_bytes: 32 * 1024,
    };

    #[test]
    fn same_bytes_same_chunks_and_lengths_add_up() {
        let data = noise(7, 3 * 1024 * 1024 + 17);
        let a = cuts(&data, SMALL);
        let b = cuts(&data, SMALL);
        assert_eq!(a, b, "seed 7");
        let total: usize = Chunker::new(&data[..], SMALL)
            .map(|c| c.unwrap().data.len())
            .sum();
        assert_eq!(total, data.len());
        assert!(a.len() > 100, "expected many chunks, got {}", a.len());
    }

    #[test]
    fn chunks_respect_bounds_across_buffer_refills() {
        // Larger than the 8 MiB read buffer, so cuts span refills.
        let data = noise(11, 20 * 1024 * 1024);
        let p = ChunkParams::DEFAULT;
        let chunks: Vec<Chunk> = Chunker::new(&data[..], p).map(|c| c.unwrap()).collect();
        let n = chunks.len();
        for (i, c) in chunks.iter().enumerate() {
            assert!(c.data.len() <= p.max_bytes as usize);
            if i + 1 < n {
                assert!(c.data.len() >= p.min_bytes as usize);
            }
        }
        // Same cuts whatever the reader's read sizes are.
        struct Dribble<'a>(&'a [u8]);
        impl Read for Dribble<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(100_003);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let a: Vec<u64> = chunks.iter().map(|c| c.offset).collect();
        let b: Vec<u64> = Chunker::new(Dribble(&data), p)
            .map(|c| c.unwrap().offset)
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn early_insertion_changes_only_a_few_chunks() {
        let data = noise(3, 4 * 1024 * 1024);
        let mut edited = data.clone();
        edited.insert(1000, 0xAB);
        let a: std::collections::HashSet<Digest> =
            cuts(&data, SMALL).into_iter().map(|c| c.1).collect();
        let b = cuts(&edited, SMALL);
        let new = b.iter().filter(|c| !a.contains(&c.1)).count();
        assert!(new <= 3, "{new} of {} chunks changed (seed 3)", b.len());
    }

    #[test]
    fn empty_input_has_no_chunks() {
        assert!(cuts(&[], SMALL).is_empty());
    }

    #[test]
    fn golden_cut_points_and_names() {
        // A diff here is a format change: cut points and names must stay stable.
        let data = noise(42, 256 * 1024);
        let got = cuts(&data, SMALL);
        let offsets: Vec<u64> = got.iter().map(|c| c.0).take(6).collect();
        let golden = include_str!("../tests/golden/chunk_cuts.txt");
        let mut lines = golden.lines();
        let want_offsets: Vec<u64> = lines
            .next()
            .unwrap()
            .split(',')
            .map(|s| s.trim().parse().unwrap())
            .collect();
        assert_eq!(offsets, want_offsets);
        assert_eq!(got[0].1.to_hex(), lines.next().unwrap().trim());
        assert_eq!(
            Digest::of(b"mvault").to_hex(),
            lines.next().unwrap().trim(),
            "plain BLAKE3 of b\"mvault\""
        );
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

    #[test]
    fn digest_parse_round_trip() {
        let d = Digest::of(b"x");
        assert_eq!(d.to_hex().parse::<Digest>().unwrap(), d);
        assert!("abc".parse::<Digest>().is_err());
        assert!(d.to_hex().to_uppercase().parse::<Digest>().is_err());
    }
}
