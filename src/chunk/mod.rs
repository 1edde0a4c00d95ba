//! Chunking, chunk naming and the stored chunk encoding.
//!
//! This module owns the bytes-in, bytes-out rules of the format and does no I/O beyond reading
//! the `Read` it is given:
//! - files are cut with FastCDC (2020, normalization level 1, gear seed 0) using [`ChunkParams`];
//!   format 2 first splits recognized model files at tensor boundaries ([`plan`]);
//! - a chunk is named by the plain (unkeyed) BLAKE3 hash of its plaintext, so `b3sum` over the
//!   decoded bytes reproduces the name;
//! - a chunk is stored as a 16-byte header followed by the plaintext, one zstd frame, or byte
//!   planes of float elements, whichever is smaller by a worthwhile margin ([`codec`];
//!   `docs/FORMAT.md`, "Chunk object").
//!
//! Everything here is synchronous CPU work: callers in async code run it on a blocking thread.

mod codec;
pub mod plan;
pub mod tree;

pub use codec::{
    CHUNK_MAGIC, Codec, DecodeError, HEADER_BYTES, MAX_CHUNK_BYTES, MAX_OBJECT_BYTES, Planes,
    decode, decode_owned, decode_owned_unverified, encode, encode_into, encode_planes,
    encode_planes_into,
};

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use bytes::Bytes;
use fastcdc::v2020::{MASKS, logarithm2};

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
    /// Bytes of the read buffer a [`Chunker`] with these parameters uses: `max_bytes` + 4 MiB.
    pub fn read_buffer_bytes(&self) -> usize {
        READ_BUFFER_BYTES.max(self.max_bytes as usize + READ_BUFFER_BYTES)
    }

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

/// Bytes the read buffer of [`Chunker`] holds beyond the largest chunk: what a refill reads at
/// least when a chunk of MAX is under way. On a 5 GiB checkpoint push, 8 MiB gave the same
/// speed at 5-8 MiB more peak RSS (`bench/README.md`).
const READ_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Streams a reader into content-defined chunks. Memory: one buffer of
/// `max_bytes + 4 MiB` bytes (at least 4 MiB), whatever the input length.
///
/// The cut search (FastCDC 2020, as `fastcdc::v2020::cut` and `docs/FORMAT.md`) runs over the
/// bytes buffered and, when it reaches their end before a cut and before MAX bytes, stops and
/// goes on from where it stopped once the buffer is refilled: each byte is hashed once, and
/// the buffer is refilled (its unconsumed tail moved to the front) only when a chunk needs
/// more bytes than it holds, not after every chunk. The cuts are those of the whole input.
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
    /// Where the cut search of the chunk at `pos` stopped.
    scan: Scan,
}

/// A cut search under way: the next byte pair to hash (pair `i` is bytes `2i` and `2i + 1`
/// from the chunk's start) and the gear hash of the bytes before it.
#[derive(Debug, Clone, Copy)]
struct Scan {
    pair: usize,
    hash: u64,
}

impl Scan {
    /// The search of a new chunk: hashing starts at MIN (rounded down to a pair).
    fn start(p: &ChunkParams) -> Scan {
        Scan {
            pair: p.min_bytes as usize / 2,
            hash: 0,
        }
    }
}

/// A gear table: one 64-bit value per byte value.
type Gear = Box<[u64; 256]>;

/// FastCDC's gear tables (seed 0) for bytes at odd and even positions of a pair (the second
/// is the first shifted left by one).
fn gear_tables() -> &'static (Gear, Gear) {
    static TABLES: std::sync::OnceLock<(Gear, Gear)> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| fastcdc::v2020::get_gear_with_seed(0))
}

/// Hashes the pairs of `data` (a chunk's bytes from its start) from `scan.pair` up to, not
/// including, pair `end`, with the harder mask before pair `center`; returns the first cut
/// position found, else leaves `scan` where it stopped.
///
/// Whole blocks of [`LANES`] x [`LANE_PAIRS`] pairs go through [`lanes_clear`] first; the
/// block where it sees a cut candidate, and what is left before a mask's end, are hashed
/// pair by pair. Both give the same hashes, so the cuts are those of the plain loop.
fn gear_scan(
    data: &[u8],
    scan: &mut Scan,
    (center, end): (usize, usize),
    masks: (u64, u64),
) -> Option<usize> {
    let (gear, gear_ls) = gear_tables();
    for (stop, mask) in [(center.min(end), masks.0), (end, masks.1)] {
        while scan.pair + LANES * LANE_PAIRS <= stop {
            match lanes_clear(data, *scan, mask) {
                Some(hash) => {
                    *scan = Scan {
                        pair: scan.pair + LANES * LANE_PAIRS,
                        hash,
                    }
                }
                None => break,
            }
        }
        let mask_ls = mask << 1;
        let mut hash = scan.hash;
        let mut i = scan.pair;
        while i < stop {
            let a = 2 * i;
            hash = (hash << 2).wrapping_add(gear_ls[data[a] as usize]);
            if hash & mask_ls == 0 {
                return Some(a);
            }
            hash = hash.wrapping_add(gear[data[a + 1] as usize]);
            if hash & mask == 0 {
                return Some(a + 1);
            }
            i += 1;
        }
        *scan = Scan { pair: i, hash };
    }
    None
}

/// Independent hash chains [`lanes_clear`] runs side by side. One chain is bound by the
/// latency of its shift-and-add (about a byte per cycle); four fill the core's ALUs.
const LANES: usize = 4;
/// Pairs per lane in one block: 2,048 (4 KiB per lane, 16 KiB per block).
const LANE_PAIRS: usize = 2048;

/// The gear hash after the block of [`LANES`] x [`LANE_PAIRS`] pairs from `scan.pair`, or
/// `None` if some byte of it is a cut candidate under `mask`.
///
/// Lane `k` hashes pairs `k * LANE_PAIRS..` of the block. Lane 0 goes on from `scan.hash`;
/// the others start from the 32 pairs before their first, because a gear hash keeps only its
/// last 64 bytes (older ones are shifted out of the 64 bits), and those 32 pairs lie at or
/// after `scan.pair`, so inside the bytes this chunk's search hashes anyway.
#[inline(never)]
fn lanes_clear(data: &[u8], scan: Scan, mask: u64) -> Option<u64> {
    const WARM: usize = 32;
    const { assert!(LANE_PAIRS >= WARM) };
    let (gear, gear_ls) = gear_tables();
    let mask_ls = mask << 1;
    let block = &data[2 * scan.pair..2 * (scan.pair + LANES * LANE_PAIRS)];
    let (pairs, _) = block.as_chunks::<2>();
    let (lane, _) = pairs.as_chunks::<LANE_PAIRS>();
    let mut hash = [scan.hash; LANES];
    for k in 1..LANES {
        hash[k] = lane[k - 1][LANE_PAIRS - WARM..]
            .iter()
            .fold(0u64, |h, &[a, b]| {
                (h << 2)
                    .wrapping_add(gear_ls[a as usize])
                    .wrapping_add(gear[b as usize])
            });
    }
    for t in 0..LANE_PAIRS {
        for (k, lane) in lane.iter().enumerate() {
            let [a, b] = lane[t];
            let h = (hash[k] << 2).wrapping_add(gear_ls[a as usize]);
            if h & mask_ls == 0 {
                return None;
            }
            let h2 = h.wrapping_add(gear[b as usize]);
            if h2 & mask == 0 {
                return None;
            }
            hash[k] = h2;
        }
    }
    Some(hash[LANES - 1])
}

impl<R: Read> Chunker<R> {
    pub fn new(reader: R, params: ChunkParams) -> Self {
        Chunker::with_buffer(reader, params, Vec::new())
    }

    /// A chunker reading into `buf` (grown to the buffer size if shorter), so that a worker
    /// chunking many segments reuses one buffer; [`Chunker::into_buffer`] gives it back.
    pub fn with_buffer(reader: R, params: ChunkParams, mut buf: Vec<u8>) -> Self {
        let bits = logarithm2(params.avg_bytes);
        // Normalization level 1, as `fastcdc::v2020::FastCDC::new` uses.
        let masks = (MASKS[(bits + 1) as usize], MASKS[(bits - 1) as usize]);
        let cap = params.read_buffer_bytes();
        if buf.len() < cap {
            buf.resize(cap, 0);
        }
        Chunker {
            reader,
            scan: Scan::start(&params),
            params,
            masks,
            buf,
            pos: 0,
            len: 0,
            eof: false,
            offset: 0,
        }
    }

    /// The read buffer, for the next [`Chunker::with_buffer`].
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
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

    /// The length of the chunk at `pos`, or `None` if it needs more bytes than are buffered.
    /// As `fastcdc::v2020::cut` over the rest of the input (`docs/FORMAT.md`, "Chunking"):
    /// all of it if at most MIN bytes remain; else the first cut position in
    /// `MIN..min(MAX, rest)`, pairs before AVG / 2 with the harder mask; else that bound.
    fn cut(&mut self) -> Option<usize> {
        let p = self.params;
        let (min, avg, max) = (
            p.min_bytes as usize,
            p.avg_bytes as usize,
            p.max_bytes as usize,
        );
        let have = self.len - self.pos;
        // Whether the rest of the input is known to be `have` bytes, or at least MAX.
        let known = self.eof || have >= max;
        if known && have <= min {
            return Some(have);
        }
        let end = have.min(max);
        let data = &self.buf[self.pos..self.pos + end];
        match gear_scan(data, &mut self.scan, (avg / 2, end / 2), self.masks) {
            Some(at) => Some(at),
            None => known.then_some(end),
        }
    }

    /// The next chunk as its file offset and a slice of the read buffer (no copy); the
    /// slice is valid until the next call.
    pub fn next_slice(&mut self) -> io::Result<Option<(u64, &[u8])>> {
        let n = loop {
            if let Some(n) = self.cut() {
                break n;
            }
            self.refill()?;
        };
        if n == 0 {
            return Ok(None);
        }
        let (start, offset) = (self.pos, self.offset);
        self.pos += n;
        self.offset += n as u64;
        self.scan = Scan::start(&self.params);
        Ok(Some((offset, &self.buf[start..start + n])))
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = io::Result<Chunk>;
    fn next(&mut self) -> Option<Self::Item> {
        let next = self.next_slice().transpose()?;
        Some(next.map(|(offset, data)| Chunk {
            offset,
            data: Bytes::copy_from_slice(data),
        }))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Deterministic pseudo-random bytes (seeded), so failures reproduce.
    pub(crate) fn noise(seed: u64, len: usize) -> Vec<u8> {
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
        // Larger than the read buffer (2 MiB + 4 MiB), so cuts span refills.
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
        let a: Vec<u64> = chunks.iter().map(|c| c.offset).collect();
        let b: Vec<u64> = Chunker::new(Dribble(&data, 100_003), p)
            .map(|c| c.unwrap().offset)
            .collect();
        assert_eq!(a, b);
    }

    /// The cuts of `fastcdc::v2020::cut` over the whole input in memory (`docs/FORMAT.md`).
    fn reference_cuts(data: &[u8], p: ChunkParams) -> Vec<u64> {
        let bits = logarithm2(p.avg_bytes);
        let (ms, ml) = (MASKS[(bits + 1) as usize], MASKS[(bits - 1) as usize]);
        let (mut at, mut out) = (0, Vec::new());
        while at < data.len() {
            out.push(at as u64);
            let (min, avg, max) = (p.min_bytes, p.avg_bytes, p.max_bytes);
            let rest = &data[at..];
            let (_, n) = fastcdc::v2020::cut(
                rest,
                min as usize,
                avg as usize,
                max as usize,
                ms,
                ml,
                ms << 1,
                ml << 1,
            );
            at += n;
        }
        out
    }

    /// A reader handing out at most `step` bytes per read.
    struct Dribble<'a>(&'a [u8], usize);
    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(self.1);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn resumed_cut_search_finds_the_cuts_of_the_whole_input() {
        let odd = ChunkParams {
            min_bytes: 3 * 1024 + 1,
            avg_bytes: 16 * 1024,
            max_bytes: 48 * 1024 + 3,
        };
        let big = ChunkParams {
            min_bytes: 2 * 1024 * 1024,
            avg_bytes: 8 * 1024 * 1024,
            max_bytes: 16 * 1024 * 1024,
        };
        // Long searches with frequent cuts: many fall inside lane blocks (`lanes_clear`).
        let wide = ChunkParams {
            min_bytes: 4 * 1024,
            avg_bytes: 128 * 1024,
            max_bytes: 1024 * 1024,
        };
        let random = noise(5, 9 * 1024 * 1024 + 333);
        // Runs of one byte give no cut: chunks of MAX, and a search that spans refills.
        let mut runs = noise(6, 3 * 1024 * 1024);
        runs.extend(std::iter::repeat_n(0u8, 7 * 1024 * 1024 + 5));
        runs.extend(noise(7, 1024 * 1024));
        for (name, data) in [("random", &random), ("runs", &runs)] {
            for p in [SMALL, ChunkParams::DEFAULT, odd, big, wide] {
                let want = reference_cuts(data, p);
                for step in [usize::MAX, 1 << 20, 65_537, 4095] {
                    let got: Vec<u64> = Chunker::new(Dribble(data, step), p)
                        .map(|c| c.unwrap().offset)
                        .collect();
                    assert_eq!(got, want, "{name}, {p:?}, reads of {step}");
                }
            }
        }
    }

    /// [`lanes_clear`] agrees with the pair-by-pair loop on every block: the same hash after
    /// it, and `None` exactly when the loop finds a cut candidate in it. Random blocks, and
    /// blocks of one repeated byte (no candidate) but for 64 random bytes right before a lane:
    /// the bytes that lane's warm-up has to get right.
    #[test]
    fn lane_blocks_hash_as_the_plain_loop() {
        let (gear, gear_ls) = gear_tables();
        let plain = |data: &[u8], start: Scan, mask: u64| {
            let (mut hash, mut candidate) = (start.hash, false);
            for i in start.pair..start.pair + LANES * LANE_PAIRS {
                hash = (hash << 2).wrapping_add(gear_ls[data[2 * i] as usize]);
                candidate |= hash & (mask << 1) == 0;
                hash = hash.wrapping_add(gear[data[2 * i + 1] as usize]);
                candidate |= hash & mask == 0;
            }
            (!candidate).then_some(hash)
        };
        let block = 2 * LANES * LANE_PAIRS;
        let noisy = noise(9, 4 * block);
        let mut rng = fastrand::Rng::with_seed(9);
        let (mut clear, mut found) = (0, 0);
        for round in 0..1200 {
            let (data, start, mask) = if round % 3 == 0 {
                // From no mask bits (a candidate at once) to 25 (rarely one in a block).
                let pair = rng.usize(..3 * LANES * LANE_PAIRS);
                let start = Scan {
                    pair,
                    hash: rng.u64(..),
                };
                (noisy.clone(), start, MASKS[round % MASKS.len()])
            } else {
                let mask = MASKS[rng.usize(8..=12)];
                let mut data = vec![rng.u8(..); block];
                let Some(steady) = plain(&data, Scan { pair: 0, hash: 0 }, mask) else {
                    continue;
                };
                let lane = 2 * LANE_PAIRS * rng.usize(1..LANES);
                rng.fill(&mut data[lane - 64..lane]);
                (
                    data,
                    Scan {
                        pair: 0,
                        hash: steady,
                    },
                    mask,
                )
            };
            let want = plain(&data, start, mask);
            assert_eq!(lanes_clear(&data, start, mask), want, "round {round}");
            *if want.is_some() {
                &mut clear
            } else {
                &mut found
            } += 1;
        }
        assert!(
            clear > 200 && found > 200,
            "{clear} clear, {found} with a candidate"
        );
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
        let golden = include_str!("../../tests/golden/chunk_cuts.txt");
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
    fn digest_parse_round_trip() {
        let d = Digest::of(b"x");
        assert_eq!(d.to_hex().parse::<Digest>().unwrap(), d);
        assert!("abc".parse::<Digest>().is_err());
        assert!(d.to_hex().to_uppercase().parse::<Digest>().is_err());
    }
}
