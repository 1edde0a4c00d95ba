//! Model file layouts (issue 13, format 2): where each tensor's bytes are in a model file,
//! read from the file's own header. Pure parsing, no chunking: the chunk planner puts chunk
//! boundaries at the offsets found here.
//!
//! Detection is by content (magic numbers and headers), never by file name. Every parser
//! treats its input as hostile: a truncated, malformed or unsupported header gives `None`
//! (the caller falls back to content-defined chunking), never a panic, and every read and
//! allocation is bounded by a fixed limit or by the file length before it happens.
//!
//! Formats: [`Kind::Safetensors`], [`Kind::TorchZip`] (`torch.save` zip checkpoints),
//! [`Kind::Gguf`] (v2, v3), [`Kind::Npy`] (v1-v3) and [`Kind::Npz`] (numpy `savez` zips).

use std::fs::File;
use std::os::unix::fs::FileExt;

mod gguf;
mod npy;
mod safetensors;
mod torchzip;

#[cfg(test)]
mod tests;

/// The recognized model file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Hugging Face safetensors: u64 LE header length, JSON header, data.
    Safetensors,
    /// A `torch.save` zip checkpoint (PyTorch >= 1.6): one tensor per storage.
    TorchZip,
    /// GGUF v2 or v3 (llama.cpp / ggml), little-endian.
    Gguf,
    /// A single numpy `.npy` array.
    Npy,
    /// A numpy `.npz` zip of `.npy` entries (only STORED entries are listed).
    Npz,
    /// A kind named by a newer mvault's manifest (readers keep reading it; [`detect`] never
    /// returns it).
    #[serde(other)]
    Unknown,
}

/// One tensor's bytes in the file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tensor {
    /// The tensor's name: the safetensors/GGUF key, the npz entry name without `.npy`, the
    /// dotted state-dict path of the first tensor rebuilt from a torch storage (the zip entry
    /// name when the pickle was not understood), `""` for a `.npy` file.
    pub name: String,
    /// The dtype as the file spells it: safetensors "BF16"/"F32"/..., torch
    /// "bfloat16"/"float32"/... (from the storage type; "unknown" when the pickle was not
    /// understood, a `>` prefix for a big-endian archive), GGUF "F16"/"Q4_K"/..., npy descr
    /// like "<f4".
    pub dtype: String,
    /// The shape, outermost dimension first (GGUF's innermost-first dims are reversed);
    /// empty for a scalar, and for a torch storage whose pickle was not understood. A torch
    /// storage shows the shape of its first tensor when that covers the whole storage, else
    /// `[numel]`.
    pub shape: Vec<u64>,
    /// Absolute byte offset of the first data byte in the file.
    pub offset: u64,
    /// Data length in bytes.
    pub len: u64,
}

impl Tensor {
    /// Element width in bytes when the data is IEEE/bfloat floats stored little-endian (f16,
    /// bf16: 2; f32: 4; f64: 8); None otherwise (ints, bool, quantized, big-endian,
    /// complex...).
    pub fn float_width(&self) -> Option<u8> {
        match self.dtype.as_str() {
            // safetensors and GGUF (both little-endian only)
            "F16" | "BF16" => Some(2),
            "F32" => Some(4),
            "F64" => Some(8),
            // torch storages (little-endian archives; big-endian ones carry a '>' prefix)
            "float16" | "bfloat16" => Some(2),
            "float32" => Some(4),
            "float64" => Some(8),
            // npy descr
            "<f2" => Some(2),
            "<f4" => Some(4),
            "<f8" => Some(8),
            _ => None,
        }
    }

    /// One past the last data byte (`offset + len`), or None on overflow.
    fn end(&self) -> Option<u64> {
        self.offset.checked_add(self.len)
    }
}

/// A file's tensor table.
///
/// Invariants (checked by [`detect`]): `tensors` is sorted by `offset` (ties: shorter
/// first), `tensors[i].offset + tensors[i].len <= tensors[i + 1].offset`, and every
/// `offset + len` is at most the file length. Zero-length tensors are kept. The bytes between
/// and around tensors (headers, padding, zip records) are not described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The detected format.
    pub kind: Kind,
    /// The tensors, sorted by offset, non-overlapping.
    pub tensors: Vec<Tensor>,
}

/// Reads the file's structure. `len` = file length in bytes. Returns None for unknown or
/// malformed files.
///
/// Invariants of Some: tensors sorted by offset, non-overlapping, every offset+len <= len
/// (checked, no overflow), zero-length tensors allowed (kept). A recognized container whose
/// tensors are all unusable (e.g. an npz of deflated entries) gives Some with no tensors.
///
/// Reads with positioned reads only (`read_exact_at`), so the caller may read the same file
/// concurrently. At most about 100 MiB (safetensors header) or 64 MiB (other headers) is
/// read, whatever the headers declare.
pub fn detect(file: &File, len: u64) -> Option<Layout> {
    let mut magic = [0u8; 9];
    let n = magic.len().min(usize::try_from(len).unwrap_or(usize::MAX));
    read_at(file, 0, &mut magic[..n])?;
    let magic = &magic[..n];
    let layout = if magic.starts_with(b"GGUF") {
        gguf::parse(file, len)?
    } else if magic.starts_with(npy::MAGIC) {
        npy::parse_file(file, len)?
    } else if magic.starts_with(b"PK") {
        torchzip::parse(file, len)?
    } else if magic.len() == 9 && magic[8] == b'{' {
        safetensors::parse(file, len)?
    } else {
        return None;
    };
    finish(layout, len)
}

/// Sorts the tensors and checks the [`Layout`] invariants against the file length.
fn finish(mut layout: Layout, file_len: u64) -> Option<Layout> {
    layout.tensors.sort_by_key(|t| (t.offset, t.len));
    let mut prev_end = 0u64;
    for t in &layout.tensors {
        let end = t.end()?;
        if end > file_len || t.offset < prev_end {
            return None;
        }
        prev_end = end;
    }
    Some(layout)
}

/// `read_exact_at`, None on any error (including a short file).
fn read_at(file: &File, offset: u64, buf: &mut [u8]) -> Option<()> {
    file.read_exact_at(buf, offset).ok()
}

/// Reads `len` bytes at `offset` into a new buffer, after checking `len <= limit` and that
/// the range lies inside a file of `file_len` bytes.
fn read_vec(file: &File, offset: u64, len: u64, limit: u64, file_len: u64) -> Option<Vec<u8>> {
    if len > limit || offset.checked_add(len)? > file_len {
        return None;
    }
    let mut buf = vec![0u8; usize::try_from(len).ok()?];
    read_at(file, offset, &mut buf)?;
    Some(buf)
}

/// A little-endian cursor over a byte slice; every read is bounds-checked.
struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bytes { data, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    /// Like [`Bytes::take`] with a u64 count (as headers declare them).
    fn take_u64(&mut self, n: u64) -> Option<&'a [u8]> {
        self.take(usize::try_from(n).ok()?)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array()?))
    }
}

/// A little-endian reader over a file region `[pos, end)` with positioned reads through a
/// small window buffer (for headers whose size is only known while parsing them).
struct FileReader<'a> {
    file: &'a File,
    /// Next byte to read (absolute file offset).
    pos: u64,
    /// One past the last byte that may be read.
    end: u64,
    /// Absolute offset of `buf[0]`.
    buf_start: u64,
    buf: Vec<u8>,
}

/// Window size of [`FileReader`].
const WINDOW: u64 = 64 * 1024;

impl<'a> FileReader<'a> {
    fn new(file: &'a File, pos: u64, end: u64) -> Self {
        FileReader {
            file,
            pos,
            end,
            buf_start: pos,
            buf: Vec::new(),
        }
    }

    fn remaining(&self) -> u64 {
        self.end.saturating_sub(self.pos)
    }

    /// Makes `[pos, pos + n)` available in `buf`; `n` is at most the region left.
    fn fill(&mut self, n: u64) -> Option<()> {
        if n > self.remaining() {
            return None;
        }
        let have_end = self.buf_start + self.buf.len() as u64;
        if self.pos >= self.buf_start && self.pos + n <= have_end {
            return Some(());
        }
        let want = n.max(WINDOW).min(self.remaining());
        self.buf.clear();
        self.buf.resize(usize::try_from(want).ok()?, 0);
        read_at(self.file, self.pos, &mut self.buf)?;
        self.buf_start = self.pos;
        Some(())
    }

    fn take(&mut self, n: u64) -> Option<&[u8]> {
        self.fill(n)?;
        let from = usize::try_from(self.pos - self.buf_start).ok()?;
        self.pos += n;
        self.buf.get(from..from + usize::try_from(n).ok()?)
    }

    fn skip(&mut self, n: u64) -> Option<()> {
        if n > self.remaining() {
            return None;
        }
        self.pos += n;
        Some(())
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N as u64)?.try_into().ok()
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array()?))
    }
}

/// The product of `dims`, None on overflow.
fn product(dims: &[u64]) -> Option<u64> {
    dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))
}
