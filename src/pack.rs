//! Pack objects (`docs/FORMAT.md`, "Packs", manifest format 3): small chunk objects stored back
//! to back in one object and read with ranged GETs, so a push of files cut into 512 KiB
//! chunks sends one PUT per ~8 MiB instead of one per chunk (S3 charges per request, and each
//! request waits ~20-50 ms for its first byte on a real cloud).
//!
//! Invariants:
//! - a pack's key holds a random id and is written once, never rewritten: a gc can delete it
//!   without racing a writer that re-uploads it (a push never reuses a pack a gc recorded; it
//!   packs those chunks again into a new pack);
//! - a pack's index object is written only after the pack itself, so an index whose pack is
//!   listed names bytes that are stored;
//! - each entry's bytes are exactly a chunk object (`src/chunk/codec.rs`), checked against the
//!   chunk id by the reader as for a loose chunk: neither the pack nor its index is trusted.

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::chunk::{self, Digest};

/// A pack is sent once it holds at least this many bytes (8 MiB): ~125 pack objects per GB
/// (plus as many indexes), against ~2,000 loose objects per GB at the 512 KiB average.
pub const TARGET_BYTES: usize = 8 * 1024 * 1024;

/// Chunk objects longer than this (4 MiB) are stored loose: they are large enough to be worth a
/// request of their own (the 8 MiB average inside big tensors).
pub const MAX_PACKED_OBJECT: usize = 4 * 1024 * 1024;

/// Readers refuse a pack range or index beyond these bounds (a hostile store cannot make them
/// allocate more): a pack holds less than [`TARGET_BYTES`] before its last chunk object.
pub const MAX_PACK_BYTES: u64 = (TARGET_BYTES + MAX_PACKED_OBJECT) as u64;
/// At most this many entries in an index (a pack of the smallest chunks, 1 byte each, is cut
/// far earlier by chunking; this only bounds what a reader parses).
pub const MAX_INDEX_ENTRIES: usize = 65_536;
/// Chunk objects a writer puts in one pack at most: its index stays far below
/// [`MAX_INDEX_ENTRIES`] and [`MAX_INDEX_BYTES`] (an entry is about 110 bytes of JSON).
pub const MAX_PACKED_CHUNKS: usize = 16_384;
/// Bytes of an index object readers read at most (4 MiB).
pub const MAX_INDEX_BYTES: u64 = 4 * 1024 * 1024;

/// Where a packed chunk's object is: `len` bytes at `offset` of pack `pack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PackRef {
    /// The pack's id (random, 32 bytes as 64 hex), naming `packs/<hh>/<id>`.
    pub id: Digest,
    /// Byte offset of the chunk object in the pack.
    pub offset: u64,
    /// Length of the chunk object in bytes (at most [`chunk::MAX_OBJECT_BYTES`]).
    pub len: u64,
}

impl PackRef {
    /// Whether the range is one a reader may fetch: non-empty, at most a chunk object's
    /// bound, inside [`MAX_PACK_BYTES`] without overflow.
    pub fn is_sane(&self) -> bool {
        self.len >= 16
            && self.len <= chunk::MAX_OBJECT_BYTES
            && self
                .offset
                .checked_add(self.len)
                .is_some_and(|end| end <= MAX_PACK_BYTES)
    }
}

/// One chunk object in a pack, as its index lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The chunk id (BLAKE3 of its plaintext).
    pub id: Digest,
    pub offset: u64,
    pub len: u64,
}

/// A pack's index object: `packs/<hh>/<id>.index`, JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// Index format, `1`.
    pub format: u32,
    /// Entries in pack order: each starts where the previous one ends, the first at 0.
    pub chunks: Vec<IndexEntry>,
}

/// Why an index object is refused.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("pack index does not parse: {0}")]
    Json(#[from] serde_json::Error),
    #[error("pack index format {0} is not supported by this mvault (reads 1); upgrade mvault")]
    Format(u32),
    #[error("pack index entry {0} is not contiguous, empty, or out of bounds")]
    Entry(usize),
    #[error("pack index lists more than {MAX_INDEX_ENTRIES} chunks")]
    TooMany,
}

impl Index {
    /// Parses an index and checks that its entries tile the pack from 0 within the bounds.
    pub fn from_json(bytes: &[u8]) -> Result<Index, IndexError> {
        let index: Index = serde_json::from_slice(bytes)?;
        if index.format != 1 {
            return Err(IndexError::Format(index.format));
        }
        if index.chunks.len() > MAX_INDEX_ENTRIES {
            return Err(IndexError::TooMany);
        }
        let mut end = 0u64;
        for (i, e) in index.chunks.iter().enumerate() {
            let r = PackRef {
                id: e.id,
                offset: e.offset,
                len: e.len,
            };
            if e.offset != end || !r.is_sane() {
                return Err(IndexError::Entry(i));
            }
            end = e.offset + e.len;
        }
        Ok(index)
    }

    /// Compact JSON plus a final `\n`, as stored.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("index serializes");
        v.push(b'\n');
        v
    }

    /// Total bytes of the pack the index describes.
    pub fn pack_len(&self) -> u64 {
        self.chunks.last().map_or(0, |e| e.offset + e.len)
    }
}

/// Objects shorter than this (64 KiB) are copied into a shared buffer as they join a pack;
/// longer ones are kept as they are, as their own part of the pack's body (no copy).
const COALESCE_BELOW: usize = 64 * 1024;
/// Size of the shared buffers small objects are copied into (1 MiB).
const COALESCE_BUFFER: usize = 1024 * 1024;

/// A pack being filled by a push. Its bytes are kept as parts, sent one after the other as
/// the pack's body: a chunk object of [`COALESCE_BELOW`] or more is a part of its own (the
/// buffer it was encoded into, not copied), smaller ones share parts of about
/// [`COALESCE_BUFFER`]. An object never spans two parts. So a pack holds its bytes once, plus
/// at most one partly filled shared buffer.
pub struct Builder {
    id: Digest,
    parts: Vec<Bytes>,
    /// The shared buffer small objects are being copied into (not yet in `parts`).
    tail: BytesMut,
    /// Bytes in `parts` and `tail`.
    len: usize,
    index: Vec<IndexEntry>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// An empty pack with a fresh random id.
    pub fn new() -> Builder {
        let mut id = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
        Builder {
            id: Digest(id),
            parts: Vec::new(),
            tail: BytesMut::new(),
            len: 0,
            index: Vec::new(),
        }
    }

    /// Appends a chunk object (`object.len()` at most [`MAX_PACKED_OBJECT`]); returns where it
    /// will be. The pack keeps `object` itself (a reference) unless it is small.
    pub fn push(&mut self, id: Digest, object: Bytes) -> PackRef {
        debug_assert!(object.len() <= MAX_PACKED_OBJECT);
        let r = PackRef {
            id: self.id,
            offset: self.len as u64,
            len: object.len() as u64,
        };
        if object.len() < COALESCE_BELOW {
            if self.tail.len() + object.len() > COALESCE_BUFFER {
                self.seal_tail();
            }
            if self.tail.capacity() == 0 {
                self.tail.reserve(COALESCE_BUFFER);
            }
            self.tail.extend_from_slice(&object);
        } else {
            self.seal_tail();
            self.parts.push(object);
        }
        self.len += r.len as usize;
        self.index.push(IndexEntry {
            id,
            offset: r.offset,
            len: r.len,
        });
        r
    }

    /// Moves the shared buffer, if it holds anything, to the parts.
    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            self.parts.push(std::mem::take(&mut self.tail).freeze());
        }
    }

    /// Whether the pack has reached [`TARGET_BYTES`], or [`MAX_PACKED_CHUNKS`] chunk objects
    /// (many tiny files), and should be sent.
    pub fn is_full(&self) -> bool {
        self.len >= TARGET_BYTES || self.index.len() >= MAX_PACKED_CHUNKS
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Chunk objects in the pack so far.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Bytes in the pack so far.
    pub fn bytes(&self) -> usize {
        self.len
    }

    /// The pack's id, its bytes as parts to send in order, and its index.
    pub fn finish(mut self) -> (Digest, Vec<Bytes>, Index) {
        self.seal_tail();
        (
            self.id,
            self.parts,
            Index {
                format: 1,
                chunks: self.index,
            },
        )
    }

    /// The pack's chunk objects in order, each as its id and bytes (slices of the parts,
    /// not copies): to move them to another pack, or to store them loose.
    pub fn into_objects(self) -> Vec<(Digest, Bytes)> {
        let (_, parts, index) = self.finish();
        let mut objects = Vec::with_capacity(index.chunks.len());
        let mut entries = index.chunks.into_iter().peekable();
        let mut start = 0u64; // pack offset of the current part
        for part in parts {
            let end = start + part.len() as u64;
            while let Some(e) = entries.next_if(|e| e.offset + e.len <= end) {
                let at = (e.offset - start) as usize;
                objects.push((e.id, part.slice(at..at + e.len as usize)));
            }
            start = end;
        }
        debug_assert!(entries.next().is_none(), "every object lies in one part");
        objects
    }
}

/// Object key of a pack.
pub fn pack_key(id: &Digest) -> String {
    let hex = id.to_hex();
    format!("packs/{}/{}", &hex[..2], hex)
}

/// Object key of a pack's index.
pub fn index_key(id: &Digest) -> String {
    format!("{}.index", pack_key(id))
}

/// The pack id a key under `packs/` names, and whether it is the index: `None` for any other
/// key (ignored by readers and gc).
pub fn parse_key(key: &str) -> Option<(Digest, bool)> {
    let (base, is_index) = match key.strip_suffix(".index") {
        Some(b) => (b, true),
        None => (key, false),
    };
    let id: Digest = base.rsplit('/').next()?.parse().ok()?;
    (pack_key(&id) == base).then_some((id, is_index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_tiles_the_pack_and_the_index_round_trips() {
        let mut b = Builder::new();
        let one = chunk::encode(b"first chunk");
        let two = chunk::encode(&[7u8; 5000]);
        let r1 = b.push(Digest::of(b"first chunk"), Bytes::from(one.clone()));
        let r2 = b.push(Digest::of(&[7u8; 5000]), Bytes::from(two));
        assert_eq!((r1.offset, r1.len), (0, one.len() as u64));
        assert_eq!(r2.offset, one.len() as u64);
        let (id, parts, index) = b.finish();
        let data = parts.concat();
        assert_eq!(r1.id, id);
        let back = Index::from_json(&index.to_json()).unwrap();
        assert_eq!(back, index);
        assert_eq!(back.pack_len(), data.len() as u64);
        let slice = &data[r2.offset as usize..(r2.offset + r2.len) as usize];
        assert_eq!(
            chunk::decode(&Digest::of(&[7u8; 5000]), slice).unwrap(),
            vec![7u8; 5000]
        );
    }

    #[test]
    fn large_objects_are_kept_small_ones_shared_and_every_object_comes_back() {
        let mut b = Builder::new();
        let mut objects = Vec::new();
        // Small ones filling more than one shared buffer, then large ones between small ones.
        let sizes = (0..40)
            .map(|i| 30_000 + i)
            .chain([200_000, 10, 70_000, 65_536, 5]);
        for (i, n) in sizes.enumerate() {
            let object = Bytes::from(vec![i as u8; n]);
            let id = Digest::of(&object);
            let r = b.push(id, object.clone());
            assert_eq!((r.offset, r.len), (b.bytes() as u64 - n as u64, n as u64));
            objects.push((id, object));
        }
        let large = objects[40].1.clone();
        let (_, parts, index) = {
            let mut copy = Builder::new();
            for (id, o) in &objects {
                copy.push(*id, o.clone());
            }
            copy.finish()
        };
        // The large object is the very buffer pushed, not a copy.
        assert!(parts.iter().any(|p| p.as_ptr() == large.as_ptr()));
        assert!(parts.iter().all(|p| p.len() <= 1024 * 1024));
        let data = parts.concat();
        assert_eq!(index.pack_len(), data.len() as u64);
        for (e, (id, o)) in index.chunks.iter().zip(&objects) {
            assert_eq!(
                (&e.id, &data[e.offset as usize..(e.offset + e.len) as usize]),
                (id, &o[..])
            );
        }
        assert_eq!(b.into_objects(), objects);
    }

    #[test]
    fn a_pack_of_tiny_chunks_is_full_before_its_index_is_too_long() {
        let mut b = Builder::new();
        let object = chunk::encode(b"x");
        while !b.is_full() {
            b.push(Digest::of(b"x"), Bytes::from(object.clone()));
        }
        let (_, _, index) = b.finish();
        assert_eq!(index.chunks.len(), MAX_PACKED_CHUNKS);
        assert!((index.to_json().len() as u64) < MAX_INDEX_BYTES);
        assert!(Index::from_json(&index.to_json()).is_ok());
    }

    #[test]
    fn hostile_indexes_are_refused() {
        let id = Digest::of(b"x");
        let entry = |offset, len| IndexEntry { id, offset, len };
        for (chunks, what) in [
            (vec![entry(1, 100)], "gap at start"),
            (vec![entry(0, 100), entry(50, 100)], "overlap"),
            (vec![entry(0, 3)], "shorter than a chunk header"),
            (vec![entry(0, u64::MAX)], "huge"),
            (vec![entry(0, 100), entry(100, u64::MAX - 50)], "overflow"),
        ] {
            let json = Index { format: 1, chunks }.to_json();
            assert!(Index::from_json(&json).is_err(), "{what}");
        }
        let json = br#"{"format": 2, "chunks": []}"#;
        assert!(matches!(Index::from_json(json), Err(IndexError::Format(2))));
    }

    #[test]
    fn keys_parse_back_and_others_are_ignored() {
        let id = Builder::new().id;
        assert_eq!(parse_key(&pack_key(&id)), Some((id, false)));
        assert_eq!(parse_key(&index_key(&id)), Some((id, true)));
        let hex = id.to_hex();
        assert_eq!(parse_key(&format!("packs/zz/{hex}")), None);
        assert_eq!(parse_key(&format!("packs/{}/{hex}.tmp", &hex[..2])), None);
    }
}
