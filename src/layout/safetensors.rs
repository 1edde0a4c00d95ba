//! safetensors: `u64` LE header length N, N bytes of JSON
//! (`{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//! "__metadata__": {..}}`), then the data; `data_offsets` are relative to byte `8 + N`.
//!
//! Validated: N <= 100 MiB (the safetensors crate's limit) and `8 + N <= len`; the header
//! is a JSON object of well-formed entries; `begin <= end`, the data inside the file; for
//! known dtypes, `bits(dtype) * product(shape) == 8 * (end - begin)` (no overflow). Overlaps
//! are rejected by [`super::finish`]. Gaps between tensors are allowed (the crate itself
//! rejects them; they are harmless for chunking).

use std::collections::BTreeMap;
use std::fs::File;

use super::{Kind, Layout, Tensor, product, read_at, read_vec};

/// The largest header accepted (the safetensors crate's `MAX_HEADER_SIZE`).
const MAX_HEADER: u64 = 100 * 1024 * 1024;

#[derive(serde::Deserialize)]
struct Info {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

/// Bits per element of the safetensors dtypes; None for a dtype this code does not know.
fn dtype_bits(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 8,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" => 32,
        "I64" | "U64" | "F64" | "C64" => 64,
        "F4" => 4,
        "F6_E2M3" | "F6_E3M2" => 6,
        _ => return None,
    })
}

pub(super) fn parse(file: &File, len: u64) -> Option<Layout> {
    let mut n = [0u8; 8];
    read_at(file, 0, &mut n)?;
    let n = u64::from_le_bytes(n);
    let header = read_vec(file, 8, n, MAX_HEADER, len)?;
    let data_start = 8 + n;
    let data_len = len - data_start;
    let map: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&header).ok()?;
    let mut tensors = Vec::with_capacity(map.len());
    for (name, value) in map {
        if name == "__metadata__" {
            continue;
        }
        let info: Info = serde_json::from_value(value).ok()?;
        let (begin, end) = info.data_offsets;
        if begin > end || end > data_len {
            return None;
        }
        let bytes = end - begin;
        if let Some(bits) = dtype_bits(&info.dtype) {
            let numel = product(&info.shape)?;
            if numel.checked_mul(bits)? != bytes.checked_mul(8)? {
                return None;
            }
        }
        tensors.push(Tensor {
            name,
            dtype: info.dtype,
            shape: info.shape,
            offset: data_start + begin,
            len: bytes,
        });
    }
    Some(Layout {
        kind: Kind::Safetensors,
        tensors,
    })
}
