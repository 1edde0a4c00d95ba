//! Layout parser tests: the tiny fixtures of tests/golden/layouts (tables written by
//! bench/checkpoints.py, the writer, not by this parser) and hostile inputs.

use std::io::Write;
use std::os::unix::fs::FileExt;

use super::*;

const ST: &[u8] = include_bytes!("../../tests/golden/layouts/tiny.safetensors");
const PT: &[u8] = include_bytes!("../../tests/golden/layouts/tiny.pt");
const PT64: &[u8] = include_bytes!("../../tests/golden/layouts/tiny-zip64.pt");
const GGUF: &[u8] = include_bytes!("../../tests/golden/layouts/tiny.gguf");
const NPY: &[u8] = include_bytes!("../../tests/golden/layouts/tiny.npy");
const NPZ: &[u8] = include_bytes!("../../tests/golden/layouts/tiny.npz");

const FIXTURES: [(&str, &[u8], Kind, &str); 6] = [
    (
        "tiny.safetensors",
        ST,
        Kind::Safetensors,
        include_str!("../../tests/golden/layouts/tiny.safetensors.json"),
    ),
    (
        "tiny.pt",
        PT,
        Kind::TorchZip,
        include_str!("../../tests/golden/layouts/tiny.pt.json"),
    ),
    (
        "tiny-zip64.pt",
        PT64,
        Kind::TorchZip,
        include_str!("../../tests/golden/layouts/tiny-zip64.pt.json"),
    ),
    (
        "tiny.gguf",
        GGUF,
        Kind::Gguf,
        include_str!("../../tests/golden/layouts/tiny.gguf.json"),
    ),
    (
        "tiny.npy",
        NPY,
        Kind::Npy,
        include_str!("../../tests/golden/layouts/tiny.npy.json"),
    ),
    (
        "tiny.npz",
        NPZ,
        Kind::Npz,
        include_str!("../../tests/golden/layouts/tiny.npz.json"),
    ),
];

fn tmp(bytes: &[u8]) -> std::fs::File {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(bytes).unwrap();
    f
}

fn layout_of(bytes: &[u8]) -> Option<Layout> {
    detect(&tmp(bytes), bytes.len() as u64)
}

fn table(json: &str) -> Vec<Tensor> {
    serde_json::from_str(json).unwrap()
}

fn t(name: &str, dtype: &str, shape: &[u64], offset: u64, len: u64) -> Tensor {
    Tensor {
        name: name.into(),
        dtype: dtype.into(),
        shape: shape.into(),
        offset,
        len,
    }
}

/// The Layout invariants, checked independently of `finish`.
fn check_invariants(l: &Layout, file_len: u64) {
    for w in l.tensors.windows(2) {
        assert!(w[0].offset + w[0].len <= w[1].offset, "{l:?}");
    }
    for t in &l.tensors {
        assert!(t.offset.checked_add(t.len).unwrap() <= file_len, "{l:?}");
    }
}

#[test]
fn fixtures_match_the_writers_tables() {
    for (name, bytes, kind, json) in FIXTURES {
        let l = layout_of(bytes).unwrap_or_else(|| panic!("{name}: not detected"));
        assert_eq!(l.kind, kind, "{name}");
        assert_eq!(l.tensors, table(json), "{name}");
        check_invariants(&l, bytes.len() as u64);
    }
}

#[test]
fn fixture_tables_spelled_out() {
    // The safetensors fixture, spelled out: the header, then the tensors in
    // writer order with no gaps.
    let l = layout_of(ST).unwrap();
    let base = 8 + u64::from_le_bytes(ST[..8].try_into().unwrap());
    let want = [
        ("embed.weight", "BF16", vec![32, 16], 1024),
        ("layers.0.norm.weight", "F32", vec![16], 64),
        ("layers.0.attn.weight", "F16", vec![16, 16], 512),
        ("layers.0.mlp.weight", "F32", vec![24, 32], 3072),
        ("position_ids", "I64", vec![1, 8], 64),
    ];
    let mut off = base;
    let mut expect = Vec::new();
    for (n, d, s, len) in want {
        expect.push(t(n, d, &s, off, len));
        off += len;
    }
    assert_eq!(off, ST.len() as u64);
    assert_eq!(l.tensors, expect);

    // torch: 5 storages (lm_head.weight shares embed.weight's), each 64-byte aligned
    let l = layout_of(PT).unwrap();
    let names: Vec<_> = l.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "embed.weight",
            "layers.0.norm.weight",
            "layers.0.attn.weight",
            "layers.0.mlp.weight",
            "position_ids"
        ]
    );
    let dtypes: Vec<_> = l.tensors.iter().map(|t| t.dtype.as_str()).collect();
    assert_eq!(
        dtypes,
        ["bfloat16", "float32", "float16", "float32", "int64"]
    );
    assert!(l.tensors.iter().all(|t| t.offset % 64 == 0));
    assert_eq!(l.tensors[0].len, 32 * 16 * 2);
    // the data really is there: data/0 holds bf16 embed values (not the 'Z' padding)
    let at = l.tensors[0].offset as usize;
    assert_ne!(&PT[at..at + 4], b"ZZZZ");
    assert_eq!(&PT[at - 4..at], b"ZZZZ");

    // GGUF: the quantized tensor: 24 rows of 32 = 24 Q8_0 blocks of 34 bytes
    let l = layout_of(GGUF).unwrap();
    let q = l.tensors.iter().find(|t| t.dtype == "Q8_0").unwrap();
    assert_eq!((q.shape.clone(), q.len), (vec![24, 32], 24 * 34));
    assert!(l.tensors.iter().all(|t| t.offset % 32 == 0));

    // npy: one '<f4' [24, 32] array at the end of a 64-byte aligned header
    let l = layout_of(NPY).unwrap();
    assert_eq!(l.tensors, [t("", "<f4", &[24, 32], 128, 3072)]);
}

#[test]
fn float_widths() {
    let w = |d: &str| t("x", d, &[1], 0, 0).float_width();
    for (d, want) in [
        ("BF16", Some(2)),
        ("F16", Some(2)),
        ("F32", Some(4)),
        ("F64", Some(8)),
        ("bfloat16", Some(2)),
        ("float16", Some(2)),
        ("float32", Some(4)),
        ("float64", Some(8)),
        ("<f2", Some(2)),
        ("<f4", Some(4)),
        ("<f8", Some(8)),
        (">f4", None),
        (">float32", None),
        ("I64", None),
        ("int64", None),
        ("Q8_0", None),
        ("<u2", None),
        ("<c8", None),
        ("complex64", None),
        ("unknown", None),
        ("BOOL", None),
    ] {
        assert_eq!(w(d), want, "{d}");
    }
}

#[test]
fn every_truncation_is_none() {
    for (name, bytes, _, _) in FIXTURES {
        let f = tmp(bytes);
        for n in (0..bytes.len()).rev() {
            f.set_len(n as u64).unwrap();
            assert_eq!(detect(&f, n as u64), None, "{name} cut to {n} bytes");
        }
    }
}

#[test]
fn flipped_bytes_never_panic() {
    for (name, bytes, _, _) in FIXTURES {
        let f = tmp(bytes);
        let len = bytes.len() as u64;
        for i in 0..bytes.len() {
            for x in [0xFFu8, 0x01, 0x80] {
                f.write_all_at(&[bytes[i] ^ x], i as u64).unwrap();
                if let Some(l) = detect(&f, len) {
                    check_invariants(&l, len);
                }
            }
            f.write_all_at(&bytes[i..i + 1], i as u64).unwrap();
        }
        assert!(detect(&f, len).is_some(), "{name} restored");
    }
}

/// A safetensors file from a JSON header and `data` bytes.
fn safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

#[test]
fn safetensors_hostile_headers() {
    let ok = safetensors(
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"k":"v"}}"#,
        &[0; 8],
    );
    assert_eq!(layout_of(&ok).unwrap().tensors.len(), 1);
    // a zero-length tensor is kept (sorted before the tensor at the same offset)
    let h = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"e":{"dtype":"F16","shape":[0,3],"data_offsets":[0,0]}}"#;
    let l = layout_of(&safetensors(h, &[0; 8])).unwrap();
    assert_eq!(l.tensors[0], t("e", "F16", &[0, 3], 8 + h.len() as u64, 0));
    assert_eq!(l.tensors[1].name, "a");
    // header length u64::MAX, and just past the file
    let mut huge = ok.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(layout_of(&huge), None);
    let mut past = ok.clone();
    past[..8].copy_from_slice(&(ok.len() as u64 - 7).to_le_bytes());
    assert_eq!(layout_of(&past), None);
    for bad in [
        // overlapping
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
        // past EOF
        r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
        // begin > end
        r#"{"a":{"dtype":"U8","shape":[0],"data_offsets":[8,0]}}"#,
        // size mismatch
        r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
        // shape product overflow
        r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}}"#,
        // offsets near u64::MAX
        r#"{"a":{"dtype":"X","shape":[2],"data_offsets":[18446744073709551615,18446744073709551615]}}"#,
        // not an entry / not an object
        r#"{"a":{"dtype":"F32","shape":[2]}}"#,
        r#"{"a":[1,2]}"#,
        r#"{"#,
    ] {
        assert_eq!(layout_of(&safetensors(bad, &[0; 8])), None, "{bad}");
    }
    // an unknown dtype is kept, without the size check
    let u = safetensors(
        r#"{"a":{"dtype":"F3_NEW","shape":[3],"data_offsets":[0,8]}}"#,
        &[0; 8],
    );
    assert_eq!(layout_of(&u).unwrap().tensors[0].dtype, "F3_NEW");
}

/// Offset of the GGUF fixture's tensor count and kv count fields.
const GGUF_COUNTS: usize = 8;

#[test]
fn gguf_hostile_counts_and_offsets() {
    for (at, v) in [
        (GGUF_COUNTS, 1u64 << 40),
        (GGUF_COUNTS + 8, 1u64 << 40),
        (GGUF_COUNTS, u64::MAX),
        (GGUF_COUNTS + 8, u64::MAX),
        // the first key's length
        (GGUF_COUNTS + 16, u64::MAX),
        (GGUF_COUNTS + 16, 1u64 << 40),
    ] {
        let mut b = GGUF.to_vec();
        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        assert_eq!(layout_of(&b), None, "u64 {v:#x} at {at}");
    }
    // version 1 and a byte-swapped (big-endian) version
    for v in [1u32, 3u32.swap_bytes()] {
        let mut b = GGUF.to_vec();
        b[4..8].copy_from_slice(&v.to_le_bytes());
        assert_eq!(layout_of(&b), None);
    }
    // the last tensor's offset moved past EOF, or misaligned
    let l = layout_of(GGUF).unwrap();
    let last = l.tensors.last().unwrap();
    let name_at = GGUF
        .windows(last.name.len())
        .rposition(|w| w == last.name.as_bytes())
        .unwrap();
    // name, n_dims (4), dims (8 each), type (4), offset (8)
    let off_at = name_at + last.name.len() + 4 + 8 * last.shape.len() + 4;
    let rel = u64::from_le_bytes(GGUF[off_at..off_at + 8].try_into().unwrap());
    for v in [rel + 4096, rel + 1, u64::MAX - 31] {
        let mut b = GGUF.to_vec();
        b[off_at..off_at + 8].copy_from_slice(&v.to_le_bytes());
        assert_eq!(layout_of(&b), None, "offset {v}");
    }
    // a nested array with a huge element count
    let nested = GGUF
        .windows(18)
        .position(|w| w == b"mvault.test.nested")
        .unwrap();
    let count_at = nested + 18 + 4 + 4;
    let mut b = GGUF.to_vec();
    b[count_at..count_at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert_eq!(layout_of(&b), None);
    // a deeply nested array: kv "k" = array of array of ... (100 levels)
    let mut h = b"GGUF".to_vec();
    h.extend_from_slice(&3u32.to_le_bytes());
    h.extend_from_slice(&0u64.to_le_bytes());
    h.extend_from_slice(&1u64.to_le_bytes());
    h.extend_from_slice(&1u64.to_le_bytes());
    h.push(b'k');
    h.extend_from_slice(&9u32.to_le_bytes());
    for _ in 0..100 {
        h.extend_from_slice(&9u32.to_le_bytes());
        h.extend_from_slice(&1u64.to_le_bytes());
    }
    h.extend_from_slice(&[0; 64]);
    assert_eq!(layout_of(&h), None);
}

/// Offsets of the central directory and the EOCD of a zip (no comment, no ZIP64).
fn eocd(b: &[u8]) -> usize {
    b.len() - 22
}

#[test]
fn zip_hostile_directories() {
    let e = eocd(PT);
    assert_eq!(&PT[e..e + 4], b"PK\x05\x06");
    // the central directory offset outside the file, or its size
    for (field, v) in [(16usize, u32::MAX), (16, PT.len() as u32), (12, u32::MAX)] {
        let mut b = PT.to_vec();
        b[e + field..e + field + 4].copy_from_slice(&v.to_le_bytes());
        assert_eq!(layout_of(&b), None, "field {field} = {v}");
    }
    // 0xFFFF entries in a small directory
    let mut b = PT.to_vec();
    b[e + 8..e + 12].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
    assert_eq!(layout_of(&b), None);
    // a data entry's local header offset past the file
    let cd = u32::from_le_bytes(PT[e + 16..e + 20].try_into().unwrap()) as usize;
    let mut at = cd;
    let mut b = PT.to_vec();
    while &PT[at..at + 4] == b"PK\x01\x02" {
        let nlen = u16::from_le_bytes([PT[at + 28], PT[at + 29]]) as usize;
        let xlen = u16::from_le_bytes([PT[at + 30], PT[at + 31]]) as usize;
        let clen = u16::from_le_bytes([PT[at + 32], PT[at + 33]]) as usize;
        if PT[at + 46..at + 46 + nlen].ends_with(b"data/3") {
            b[at + 42..at + 46].copy_from_slice(&(PT.len() as u32 - 10).to_le_bytes());
        }
        at += 46 + nlen + xlen + clen;
    }
    assert_eq!(layout_of(&b), None);
}

#[test]
fn zip64_eocd_is_followed() {
    // the ZIP64 fixture's 32-bit EOCD fields are all 0xFF..: only the ZIP64 record tells
    let e = eocd(PT64);
    assert_eq!(&PT64[e + 8..e + 20], &[0xFF; 12]);
    let l = layout_of(PT64).unwrap();
    assert_eq!(l.tensors.len(), 5);
    // a ZIP64 record pointing past the file
    let loc = e - 20;
    let mut b = PT64.to_vec();
    b[loc + 8..loc + 16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(layout_of(&b), None);
}

/// Replaces the first occurrence of `from` in `b` (same length).
fn patch(b: &mut [u8], from: &[u8], to: &[u8]) {
    let at = b.windows(from.len()).position(|w| w == from).unwrap();
    b[at..at + to.len()].copy_from_slice(to);
}

#[test]
fn torch_without_a_readable_pickle_still_lists_the_storages() {
    let want = table(FIXTURES[1].3);
    // an unknown opcode right after PROTO 2
    let mut b = PT.to_vec();
    patch(&mut b, b"\x80\x02ccollections", b"\x80\x02\xffcollections");
    let l = layout_of(&b).unwrap();
    assert_eq!(l.kind, Kind::TorchZip);
    let got: Vec<_> = l
        .tensors
        .iter()
        .map(|t| {
            (
                t.name.as_str(),
                t.dtype.as_str(),
                t.shape.len(),
                t.offset,
                t.len,
            )
        })
        .collect();
    let expect: Vec<_> = want
        .iter()
        .enumerate()
        .map(|(i, t)| {
            // the entry names, in the writer's storage order
            (format!("archive/data/{i}"), t.offset, t.len)
        })
        .collect();
    assert_eq!(got.len(), expect.len());
    for (g, (n, off, len)) in got.iter().zip(&expect) {
        assert_eq!(
            (g.0, g.1, g.2, g.3, g.4),
            (n.as_str(), "unknown", 0, *off, *len)
        );
    }
    // a pickle whose rebuild calls are missing: dtypes known, names fall back
    let mut b = PT.to_vec();
    patch(&mut b, b"_rebuild_tensor_v2", b"_rebuild_tensor_v9");
    let l = layout_of(&b).unwrap();
    assert_eq!(l.tensors[0].dtype, "bfloat16");
    assert_eq!(l.tensors[0].name, "archive/data/0");
    assert_eq!(l.tensors[0].shape, [512]);
}

#[test]
fn zips_that_are_not_checkpoints() {
    // a plain zip with one stored file: not a checkpoint
    let mut z = Vec::new();
    let name = b"hello.txt";
    let data = b"hello";
    z.extend_from_slice(b"PK\x03\x04");
    z.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
    z.extend_from_slice(&[0; 4]); // crc (unchecked)
    z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    z.extend_from_slice(&(name.len() as u16).to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z.extend_from_slice(name);
    z.extend_from_slice(data);
    let cd = z.len();
    z.extend_from_slice(b"PK\x01\x02");
    z.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
    z.extend_from_slice(&[0; 4]);
    z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    z.extend_from_slice(&(name.len() as u16).to_le_bytes());
    z.extend_from_slice(&[0; 12]);
    z.extend_from_slice(&0u32.to_le_bytes());
    z.extend_from_slice(name);
    let cd_size = z.len() - cd;
    z.extend_from_slice(b"PK\x05\x06\0\0\0\0\x01\0\x01\0");
    z.extend_from_slice(&(cd_size as u32).to_le_bytes());
    z.extend_from_slice(&(cd as u32).to_le_bytes());
    z.extend_from_slice(&[0, 0]);
    assert_eq!(layout_of(&z), None);
    // the same zip with the entry renamed x.npy is an npz whose entry is not npy: None
    let mut n = z.clone();
    for _ in 0..2 {
        patch(&mut n, b"hello.txt", b"hello.npy");
    }
    assert_eq!(layout_of(&n), None);
}

#[test]
fn npz_skips_compressed_entries() {
    // mark the first entry DEFLATED in the central directory: it is skipped, the rest stay
    let e = eocd(NPZ);
    let cd = u32::from_le_bytes(NPZ[e + 16..e + 20].try_into().unwrap()) as usize;
    let cd = if cd == 0xFFFF_FFFF {
        NPZ.windows(4).position(|w| w == b"PK\x01\x02").unwrap()
    } else {
        cd
    };
    let mut b = NPZ.to_vec();
    b[cd + 10] = 8;
    let l = layout_of(&b).unwrap();
    let want = table(FIXTURES[5].3);
    assert_eq!(l.tensors, want[1..]);
}

/// An npy v1 file with `header` (padded like numpy) and `data_len` zero bytes.
fn npy(header: &str, data_len: usize) -> Vec<u8> {
    let mut h = header.to_owned();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend_from_slice(&(h.len() as u16).to_le_bytes());
    v.extend_from_slice(h.as_bytes());
    v.extend(std::iter::repeat_n(0u8, data_len));
    v
}

#[test]
fn npy_headers() {
    let f = npy(
        "{'descr': '<f2', 'fortran_order': True, 'shape': (3, 2), }",
        12,
    );
    let l = layout_of(&f).unwrap();
    assert_eq!(l.tensors, [t("", "<f2", &[3, 2], f.len() as u64 - 12, 12)]);
    assert_eq!(l.tensors[0].offset % 64, 0);
    // a scalar, a 1-d shape, unicode, datetime
    let cases = [
        (
            "{'descr': '<i8', 'fortran_order': False, 'shape': (), }",
            8,
            vec![],
        ),
        (
            "{'descr': '|b1', 'fortran_order': False, 'shape': (5,), }",
            5,
            vec![5],
        ),
        (
            "{'descr': '<U3', 'fortran_order': False, 'shape': (2,), }",
            24,
            vec![2],
        ),
        (
            "{\"descr\": \"<M8[ns]\", \"fortran_order\": False, \"shape\": (1,)}",
            8,
            vec![1],
        ),
    ];
    for (h, n, shape) in cases {
        let l = layout_of(&npy(h, n)).unwrap_or_else(|| panic!("{h}"));
        assert_eq!(
            (l.tensors[0].len, l.tensors[0].shape.clone()),
            (n as u64, shape)
        );
    }
    for bad in [
        // structured and object dtypes
        "{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (2,), }",
        "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }",
        // data past EOF, overflowing shape, missing and unknown keys, bad literals
        "{'descr': '<f4', 'fortran_order': False, 'shape': (100,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551615, 2), }",
        "{'descr': '<f4', 'shape': (2,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}",
        "{'descr': 'f4', 'fortran_order': False, 'shape': (2,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), ",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    ] {
        assert_eq!(layout_of(&npy(bad, 8)), None, "{bad}");
    }
    // a v2 header length of u32::MAX
    let mut v = npy(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
        8,
    );
    v[6] = 2;
    v.splice(8..10, u32::MAX.to_le_bytes());
    assert_eq!(layout_of(&v), None);
}

#[test]
fn unknown_files_are_none() {
    let mut rng = fastrand::Rng::with_seed(13);
    for n in [0usize, 1, 8, 9, 100, 4096] {
        let b: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
        assert_eq!(layout_of(&b), None, "{n} random bytes");
    }
    assert_eq!(layout_of(b"GGUF"), None);
    assert_eq!(layout_of(b"PK\x05\x06"), None);
    assert_eq!(layout_of(b"\x93NUMPY\x01\x00"), None);
}
