//! GGUF v2/v3 (little-endian): magic `GGUF`, u32 version, u64 tensor count, u64 kv count,
//! the kv metadata (`gguf_string` key, u32 value type, value; strings are u64 length +
//! bytes; arrays are u32 element type + u64 count + elements, possibly nested), the tensor
//! infos (name, u32 n_dims, n_dims u64 dims innermost first, u32 ggml type, u64 offset
//! relative to the data section), then the data section at the next multiple of
//! `general.alignment` (default 32).
//!
//! Validated: version 2 or 3 (v1 and big-endian files are refused); the whole header (kv
//! region and tensor infos) within the first 64 MiB and within the file; counts checked
//! against the bytes left before looping; array nesting at most 8 deep; UTF-8 names;
//! `general.alignment` an unsigned int that is a power of two; 1..=4 dims; a known ggml
//! type whose block size divides `dims[0]`; offsets multiples of the alignment; lengths
//! from the type's (block size, block bytes) without overflow.

use std::fs::File;

use super::{FileReader, Kind, Layout, Tensor, product};

/// The most header bytes read (kv metadata and tensor infos).
const MAX_HEADER: u64 = 64 * 1024 * 1024;

/// Array nesting limit while skipping kv values.
const MAX_NESTING: u32 = 8;

/// ggml's GGML_MAX_DIMS.
const MAX_DIMS: u32 = 4;

/// The ggml type table: (name, elements per block, bytes per block), from ggml.h and
/// gguf-py's GGML_QUANT_SIZES. Removed ids (4, 5, 31-33, 36-38) are None.
fn ggml_type(t: u32) -> Option<(&'static str, u64, u64)> {
    const QK_K: u64 = 256;
    Some(match t {
        0 => ("F32", 1, 4),
        1 => ("F16", 1, 2),
        2 => ("Q4_0", 32, 2 + 16),
        3 => ("Q4_1", 32, 2 + 2 + 16),
        6 => ("Q5_0", 32, 2 + 4 + 16),
        7 => ("Q5_1", 32, 2 + 2 + 4 + 16),
        8 => ("Q8_0", 32, 2 + 32),
        9 => ("Q8_1", 32, 4 + 4 + 32),
        10 => ("Q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4),
        11 => ("Q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12),
        12 => ("Q4_K", QK_K, 2 + 2 + QK_K / 2 + 12),
        13 => ("Q5_K", QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12),
        14 => ("Q6_K", QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16),
        15 => ("Q8_K", QK_K, 4 + QK_K + QK_K / 8),
        16 => ("IQ2_XXS", QK_K, 2 + QK_K / 4),
        17 => ("IQ2_XS", QK_K, 2 + QK_K / 4 + QK_K / 32),
        18 => ("IQ3_XXS", QK_K, 2 + QK_K / 4 + QK_K / 8),
        19 => ("IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16),
        20 => ("IQ4_NL", 32, 2 + 16),
        21 => ("IQ3_S", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4),
        22 => ("IQ2_S", QK_K, 2 + QK_K / 4 + QK_K / 16),
        23 => ("IQ4_XS", QK_K, 2 + 2 + QK_K / 2 + QK_K / 64),
        24 => ("I8", 1, 1),
        25 => ("I16", 1, 2),
        26 => ("I32", 1, 4),
        27 => ("I64", 1, 8),
        28 => ("F64", 1, 8),
        29 => ("IQ1_M", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32),
        30 => ("BF16", 1, 2),
        34 => ("TQ1_0", QK_K, 2 + 4 * 13),
        35 => ("TQ2_0", QK_K, 2 + 64),
        39 => ("MXFP4", 32, 1 + 16),
        40 => ("NVFP4", 64, 4 + 32),
        41 => ("Q1_0", 128, 2 + 16),
        42 => ("Q2_0", 64, 2 + 16),
        _ => return None,
    })
}

/// Bytes of one fixed-size kv value type; None for string (8), array (9) and unknown types.
fn fixed_size(t: u32) -> Option<u64> {
    Some(match t {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        _ => return None,
    })
}

/// Smallest encoding of one value of type `t` (for count checks before loops).
fn min_size(t: u32) -> Option<u64> {
    match t {
        8 => Some(8),
        9 => Some(12),
        _ => fixed_size(t),
    }
}

fn string<'r>(r: &'r mut FileReader<'_>) -> Option<&'r [u8]> {
    let n = r.u64()?;
    r.take(n)
}

fn skip_value(r: &mut FileReader<'_>, t: u32, depth: u32) -> Option<()> {
    if let Some(n) = fixed_size(t) {
        return r.skip(n);
    }
    match t {
        8 => {
            let n = r.u64()?;
            r.skip(n)
        }
        9 => {
            if depth >= MAX_NESTING {
                return None;
            }
            let et = r.u32()?;
            let count = r.u64()?;
            if let Some(n) = fixed_size(et) {
                return r.skip(n.checked_mul(count)?);
            }
            if count.checked_mul(min_size(et)?)? > r.remaining() {
                return None;
            }
            for _ in 0..count {
                skip_value(r, et, depth + 1)?;
            }
            Some(())
        }
        _ => None,
    }
}

/// An unsigned integer kv value (for `general.alignment`).
fn uint_value(r: &mut FileReader<'_>, t: u32) -> Option<u64> {
    Some(match t {
        0 => u64::from(r.array::<1>()?[0]),
        2 => u64::from(u16::from_le_bytes(r.array()?)),
        4 => u64::from(r.u32()?),
        10 => r.u64()?,
        _ => return None,
    })
}

pub(super) fn parse(file: &File, len: u64) -> Option<Layout> {
    let mut r = FileReader::new(file, 0, len.min(MAX_HEADER));
    if r.array::<4>()? != *b"GGUF" {
        return None;
    }
    if !matches!(r.u32()?, 2 | 3) {
        return None;
    }
    let n_tensors = r.u64()?;
    let n_kv = r.u64()?;
    // key (8+) + type (4) + value (1+)
    if n_kv.checked_mul(13)? > r.remaining() {
        return None;
    }
    let mut alignment = 32u64;
    for _ in 0..n_kv {
        let is_alignment = string(&mut r)? == b"general.alignment";
        let t = r.u32()?;
        if is_alignment {
            alignment = uint_value(&mut r, t)?;
            if alignment == 0 || !alignment.is_power_of_two() {
                return None;
            }
        } else {
            skip_value(&mut r, t, 0)?;
        }
    }
    // name (8+) + n_dims (4) + a dim (8) + type (4) + offset (8)
    if n_tensors.checked_mul(32)? > r.remaining() {
        return None;
    }
    let mut infos = Vec::new();
    for _ in 0..n_tensors {
        let name = String::from_utf8(string(&mut r)?.to_vec()).ok()?;
        let n_dims = r.u32()?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return None;
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(r.u64()?);
        }
        let (dtype, block, block_bytes) = ggml_type(r.u32()?)?;
        let rel = r.u64()?;
        if dims[0] % block != 0 || rel % alignment != 0 {
            return None;
        }
        let bytes = (product(&dims)? / block).checked_mul(block_bytes)?;
        dims.reverse();
        infos.push((name, dtype, dims, rel, bytes));
    }
    let data_start = r.pos.checked_next_multiple_of(alignment)?;
    let tensors = infos
        .into_iter()
        .map(|(name, dtype, shape, rel, len)| {
            Some(Tensor {
                name,
                dtype: dtype.to_owned(),
                shape,
                offset: data_start.checked_add(rel)?,
                len,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Layout {
        kind: Kind::Gguf,
        tensors,
    })
}
