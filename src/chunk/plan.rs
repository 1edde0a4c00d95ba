//! Format 2's cut plan: where a file is split before content-defined chunking, from the tensor
//! table of a recognized model file (`crate::layout`). See `docs/FORMAT.md`, "Chunking
//! (format 2)".
//!
//! A plan is a list of [`Segment`]s that cover the file in order, with no gap or overlap. Each
//! segment is cut on its own, so the chunks of one tensor never depend on the bytes of another,
//! and segments are independent units of work (a large file is chunked on every core):
//! - the bytes before the first tensor (the header) are one segment, and so are the bytes after
//!   the last one (a zip's central directory);
//! - a tensor of at least [`GROUP_BYTES`] is a segment of its own: one chunk, or, from
//!   [`TENSOR`]`.min_bytes` on, cut inside by FastCDC with [`TENSOR`], so a tensor whose rows
//!   are appended or partly rewritten still dedupes;
//! - smaller tensors, and the bytes between tensors (a zip entry's local header, alignment
//!   padding), are grouped in file order into one chunk until the group holds at least
//!   [`GROUP_BYTES`] or a large tensor follows;
//! - a header or trailer longer than [`TENSOR`]`.max_bytes` is cut by FastCDC with the file's
//!   fallback parameters, as is a file without a tensor table (format 1's chunking).
//!
//! Pure: no I/O.

use super::{ChunkParams, Planes};

/// FastCDC parameters inside a large tensor: tensor boundaries already give dedupe precision,
/// so chunks can be large. At 8 MiB average a push makes about 2 requests (a stat and a PUT)
/// per 8 MiB stored instead of per 512 KiB (issue 13's target: at most 500 per GB, where a
/// 1 GiB bf16 checkpoint cut at 4 MiB average took 670); `bench/README.md` has the table.
pub const TENSOR: ChunkParams = ChunkParams {
    min_bytes: 2 * 1024 * 1024,
    avg_bytes: 8 * 1024 * 1024,
    max_bytes: 16 * 1024 * 1024,
};

/// Small consecutive tensors are grouped into chunks of at least this many bytes (256 KiB),
/// unless a large tensor or the end of the tensors comes first.
pub const GROUP_BYTES: u64 = 256 * 1024;

/// One tensor's bytes, as the planner needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorRange {
    /// Absolute offset of the first data byte.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Float element width (2, 4 or 8) when the data is little-endian floats.
    pub float_width: Option<u8>,
}

/// How a segment is cut into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The whole segment is one chunk (at most [`TENSOR`]`.max_bytes`; a group at most
    /// 3 × [`GROUP_BYTES`]).
    Whole,
    /// FastCDC with these parameters over the segment's bytes alone.
    Cdc(ChunkParams),
}

/// Where a segment's float elements start, for the byte-plane codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Floats {
    /// Element width in bytes.
    pub width: u8,
    /// Absolute file offset of the first element.
    pub start: u64,
}

impl Floats {
    /// The plane layout of a chunk starting at file offset `chunk_offset`: the bytes before
    /// the first whole element are its lead.
    pub fn planes_at(&self, chunk_offset: u64) -> Planes {
        let w = self.width as u64;
        let lead = if chunk_offset <= self.start {
            self.start - chunk_offset
        } else {
            (w - (chunk_offset - self.start) % w) % w
        };
        Planes {
            width: self.width,
            lead: usize::try_from(lead).unwrap_or(usize::MAX),
        }
    }
}

/// A byte range of a file that is cut on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Absolute offset of the first byte.
    pub offset: u64,
    /// Length in bytes, at least 1.
    pub len: u64,
    pub cut: Cut,
    /// Float elements of the first float tensor in the segment, if any.
    pub floats: Option<Floats>,
}

/// Appends `len` bytes at `offset` to the running group (starting one if there is none); the
/// group's floats are those of the first tensor in it.
fn add(group: &mut Option<Segment>, offset: u64, len: u64, floats: Option<Floats>) -> &Segment {
    let g = group.get_or_insert(Segment {
        offset,
        len: 0,
        cut: Cut::Whole,
        floats: None,
    });
    g.len += len;
    g.floats = g.floats.or(floats);
    g
}

/// The segments of a file of `len` bytes. `tensors` must be sorted by offset,
/// non-overlapping and within the file (as `crate::layout` guarantees); empty tensors are
/// ignored. Without tensors the file is one segment cut with `fallback`; an empty file has
/// no segments.
pub fn plan(len: u64, tensors: &[TensorRange], fallback: ChunkParams) -> Vec<Segment> {
    let mut out = Vec::new();
    let region = |out: &mut Vec<Segment>, offset: u64, end: u64| {
        if end > offset {
            let whole = end - offset <= TENSOR.max_bytes as u64;
            out.push(Segment {
                offset,
                len: end - offset,
                cut: if whole {
                    Cut::Whole
                } else {
                    Cut::Cdc(fallback)
                },
                floats: None,
            });
        }
    };
    let mut tensors = tensors.iter().filter(|t| t.len > 0).peekable();
    let Some(first) = tensors.peek() else {
        if len > 0 {
            out.push(Segment {
                offset: 0,
                len,
                cut: Cut::Cdc(fallback),
                floats: None,
            });
        }
        return out;
    };
    region(&mut out, 0, first.offset);
    let mut prev_end = first.offset;
    let mut group: Option<Segment> = None;
    for t in tensors {
        let end = t.offset + t.len;
        let floats = t.float_width.map(|width| Floats {
            width,
            start: t.offset,
        });
        let gap = t.offset - prev_end;
        let large = t.len >= GROUP_BYTES;
        if gap >= GROUP_BYTES {
            // Bytes that are no tensor (a skipped zip entry, a hole in the data): cut as the
            // header is, never inside a group, so no chunk exceeds the largest allowed.
            out.extend(group.take());
            region(&mut out, prev_end, t.offset);
        } else if gap > 0 && large {
            // The bytes before a large tensor (a zip entry's local header, which names the
            // entry and changes when entries are renumbered) close the group before it, so
            // the tensor's own chunks depend on its bytes alone.
            add(&mut group, prev_end, gap, None);
        }
        if large {
            out.extend(group.take());
            let cut = if t.len >= TENSOR.min_bytes as u64 {
                Cut::Cdc(TENSOR)
            } else {
                Cut::Whole
            };
            out.push(Segment {
                offset: t.offset,
                len: t.len,
                cut,
                floats,
            });
        } else {
            let start = if gap >= GROUP_BYTES {
                t.offset
            } else {
                prev_end
            };
            if add(&mut group, start, end - start, floats).len >= GROUP_BYTES {
                out.extend(group.take());
            }
        }
        prev_end = end;
    }
    out.extend(group);
    region(&mut out, prev_end, len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;
    const KIB: u64 = 1024;

    fn t(offset: u64, len: u64) -> TensorRange {
        TensorRange {
            offset,
            len,
            float_width: Some(2),
        }
    }

    fn shape(segs: &[Segment]) -> Vec<(u64, u64, bool)> {
        segs.iter()
            .map(|s| (s.offset, s.len, matches!(s.cut, Cut::Whole)))
            .collect()
    }

    #[test]
    fn segments_cover_the_file_in_order() {
        // Header 100 B, two norms of 4 KiB, a 3 MiB matrix, a 300 KiB group, a trailer.
        let ts = [
            t(100, 4 * KIB),
            t(100 + 4 * KIB, 4 * KIB),
            t(100 + 8 * KIB + 64, 3 * MIB),
            t(100 + 8 * KIB + 64 + 3 * MIB, 300 * KIB),
        ];
        let end = 100 + 8 * KIB + 64 + 3 * MIB + 300 * KIB;
        let segs = plan(end + 22, &ts, ChunkParams::DEFAULT);
        assert_eq!(
            shape(&segs),
            vec![
                (0, 100, true),
                (100, 8 * KIB + 64, true),
                (100 + 8 * KIB + 64, 3 * MIB, false),
                (100 + 8 * KIB + 64 + 3 * MIB, 300 * KIB, true),
                (end, 22, true),
            ]
        );
        // The 64 bytes before the matrix close the group of norms; the matrix starts its own.
        assert_eq!(
            segs[2].floats,
            Some(Floats {
                width: 2,
                start: 100 + 8 * KIB + 64
            })
        );
        assert_eq!(segs[2].cut, Cut::Cdc(TENSOR));
    }

    #[test]
    fn groups_close_at_the_group_size() {
        let ts: Vec<_> = (0..10).map(|i| t(i * 100 * KIB, 100 * KIB)).collect();
        let segs = plan(MIB, &ts, ChunkParams::DEFAULT);
        let lens: Vec<u64> = segs.iter().map(|s| s.len).collect();
        assert_eq!(
            lens,
            vec![300 * KIB, 300 * KIB, 300 * KIB, 100 * KIB, 24 * KIB]
        );
    }

    #[test]
    fn without_tensors_the_file_is_one_fallback_segment() {
        let segs = plan(5 * MIB, &[], ChunkParams::DEFAULT);
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].cut, Cut::Cdc(ChunkParams::DEFAULT));
        assert!(plan(0, &[], ChunkParams::DEFAULT).is_empty());
        // Empty tensors are ignored; a header longer than the largest chunk is cut by CDC.
        let segs = plan(
            40 * MIB,
            &[t(20 * MIB, 0), t(20 * MIB, 20 * MIB)],
            ChunkParams::DEFAULT,
        );
        assert_eq!(segs[0].cut, Cut::Cdc(ChunkParams::DEFAULT));
        assert_eq!(shape(&segs)[1], (20 * MIB, 20 * MIB, false));
    }

    #[test]
    fn planes_start_at_the_first_whole_element() {
        let f = Floats {
            width: 4,
            start: 1000,
        };
        assert_eq!(f.planes_at(990).lead, 10);
        assert_eq!(f.planes_at(1000).lead, 0);
        assert_eq!(f.planes_at(1001).lead, 3);
        assert_eq!(f.planes_at(1004).lead, 0);
    }

    #[test]
    fn large_gaps_are_cut_like_the_header_and_groups_stay_small() {
        // A 20 MiB hole between two small tensors, and 100 small tensors with 200 KiB gaps.
        let mut ts = vec![t(0, 4 * KIB), t(20 * MIB, 4 * KIB)];
        let mut at = 21 * MIB;
        for _ in 0..100 {
            ts.push(t(at, 100 * KIB));
            at += 300 * KIB;
        }
        let segs = plan(at + MIB, &ts, ChunkParams::DEFAULT);
        assert_eq!(segs[1].offset, 4 * KIB);
        assert_eq!(segs[1].cut, Cut::Cdc(ChunkParams::DEFAULT));
        let mut next = 0;
        for (i, s) in segs.iter().enumerate() {
            assert_eq!(s.offset, next, "segments cover the file");
            next += s.len;
            if s.cut == Cut::Whole {
                assert!(
                    s.len <= TENSOR.max_bytes as u64,
                    "segment {i}: {} bytes",
                    s.len
                );
            }
        }
        assert_eq!(next, at + MIB);
        // After the hole, the first tensor (100 KiB) and the next span (300 KiB) make a group
        // of 400 KiB; every later small tensor with the 200 KiB before it one of 300 KiB.
        let groups = segs.iter().filter(|s| s.len == 300 * KIB).count();
        assert_eq!(groups, 98);
    }
}
