#!/usr/bin/env python3
"""Deterministic model-checkpoint generator (numpy only) for mvault's layout parsers and
the model-aware chunking benchmarks (issue 13).

CLI:
    python3 bench/checkpoints.py FORMAT OUT [--tensors N] [--seed S] [--dtype bf16|fp16|f32]
                                 [--mib M] [--edit rewrite10|insert|append] [--tiny]
                                 [--force-zip64] [--layout-json PATH]

FORMAT is one of safetensors, torch-zip, gguf, npy, npz. The same (FORMAT, N, seed, dtype,
mib) always gives the same bytes. `--edit` writes the *edited* second version of that same
model: `rewrite10` rewrites every tenth tensor with new values (same shapes), `insert` adds
one 57 KiB tensor in the middle (later offsets shift), `append` appends 256 rows to the
embedding (new vocabulary). `--tiny` writes the small mixed-dtype fixture model used by the
Rust tests (tests/golden/layouts/). `--layout-json` writes the tensor table as the *writer*
laid it out (name, dtype, shape, offset, len: absolute byte offsets), which the Rust tests
compare with what the parser reads back.

Library: `model_spec(...)`, `apply_edit(spec, edit)`, `write(fmt, path, spec, seed)` (returns
the layout table). Values: Gaussian, std 0.02 (norm weights 1 + N(0, 0.02)); bf16 is
rounded to nearest even from f32 by bit manipulation.

Full size (`--mib` not given) is a 2048-wide, 24-layer decoder: a 32000 x 2048 embedding
(125 MiB in bf16), 8 MiB attention and 22 MiB MLP matrices, 4 KiB norms; `--mib M` scales
the widths so that the total is about M MiB while keeping the tensor count.

Formats, as written by the real tools:
- safetensors: u64 LE header length, JSON header padded with spaces to 8 bytes, data.
- torch-zip: what `torch.save` (>= 1.6, zip serialization) writes: entries
  `archive/data.pkl`, `archive/.format_version`, `archive/.storage_alignment`,
  `archive/byteorder`, `archive/data/<key>`, `archive/version`,
  `archive/.data/serialization_id`, all STORED, each record's data aligned to 64 bytes by an
  "FB" padding field in the LOCAL header only (as caffe2/serialize/inline_container.cc's
  getPadding does), ZIP64 records only when needed (or always with --force-zip64). data.pkl
  is protocol 2: an OrderedDict of tensors, each `torch._utils._rebuild_tensor_v2(
  storage, offset, size, stride, requires_grad, OrderedDict())` with the storage as the
  persistent id ('storage', torch.<X>Storage, key, 'cpu', numel), and the state-dict
  `_metadata` set by BUILD. A tensor spec with `tie` shares the storage of another (tied
  embeddings), which only torch can express.
- gguf: v3, little-endian, kv metadata (strings, u32, a string array, a nested array), tensor
  infos (dims innermost first), data section and every tensor aligned to general.alignment
  (32).
- npy: format 1.0 via numpy.lib.format (one array: the largest tensor).
- npz: like numpy.savez (STORED entries `<name>.npy`, force_zip64 local headers), with a
  fixed timestamp so the bytes are deterministic.
npy has no bfloat16: bf16 tensors are stored there as '<u2' (the raw bf16 bits).
"""

import argparse
import io
import json
import pickle
import struct
import sys
import zipfile
import zlib
from collections import OrderedDict

import numpy as np

FORMATS = ("safetensors", "torch-zip", "gguf", "npy", "npz")
STD = 0.02

# dtype name -> (bytes per element, safetensors, torch storage class, ggml type id)
DTYPES = {
    "bf16": (2, "BF16", "BFloat16Storage", 30),
    "fp16": (2, "F16", "HalfStorage", 1),
    "f32": (4, "F32", "FloatStorage", 0),
    "i64": (8, "I64", "LongStorage", 27),
    "i32": (4, "I32", "IntStorage", 26),
    "q8_0": (None, None, None, 8),  # GGUF only: 34 bytes per block of 32
}
TORCH_DTYPE_NAME = {"bf16": "bfloat16", "fp16": "float16", "f32": "float32",
                    "i64": "int64", "i32": "int32"}
GGML_NAME = {0: "F32", 1: "F16", 8: "Q8_0", 26: "I32", 27: "I64", 30: "BF16"}


class T:
    """One tensor of the model: name, dtype key (DTYPES), shape, value stream, tie."""

    def __init__(self, name, dtype, shape, kind="matrix", stream=0, tie=None):
        self.name, self.dtype, self.shape = name, dtype, tuple(shape)
        self.kind, self.stream, self.tie = kind, stream, tie

    def numel(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    def nbytes(self):
        if self.dtype == "q8_0":
            return self.numel() // 32 * 34
        return self.numel() * DTYPES[self.dtype][0]


def _round(x, m):
    return max(m, int(round(x / m)) * m)


def model_spec(n_tensors=218, dtype="bf16", mib=None):
    """The tensor list of a decoder model with about `n_tensors` tensors (at least 11)."""
    hidden, ffn, vocab = 2048, 5632, 32000
    layers = max(1, (n_tensors - 2) // 9)
    extra = max(0, n_tensors - 2 - 9 * layers)
    if mib is not None:
        width = DTYPES[dtype][0]
        full = (vocab * hidden + layers * (4 * hidden * hidden + 3 * ffn * hidden)) * width
        s = (mib * 2**20 / full) ** 0.5
        hidden, ffn, vocab = _round(hidden * s, 32), _round(ffn * s, 32), _round(vocab * s, 32)
    spec = [T("model.embed_tokens.weight", dtype, (vocab, hidden), "embed")]
    for i in range(layers):
        p = f"model.layers.{i}."
        spec += [
            T(p + "input_layernorm.weight", dtype, (hidden,), "norm"),
            T(p + "self_attn.q_proj.weight", dtype, (hidden, hidden)),
            T(p + "self_attn.k_proj.weight", dtype, (hidden, hidden)),
            T(p + "self_attn.v_proj.weight", dtype, (hidden, hidden)),
            T(p + "self_attn.o_proj.weight", dtype, (hidden, hidden)),
            T(p + "post_attention_layernorm.weight", dtype, (hidden,), "norm"),
            T(p + "mlp.gate_proj.weight", dtype, (ffn, hidden)),
            T(p + "mlp.up_proj.weight", dtype, (ffn, hidden)),
            T(p + "mlp.down_proj.weight", dtype, (hidden, ffn)),
        ]
    for i in range(extra):
        spec.append(T(f"model.layers.{i % layers}.self_attn.q_proj.bias", dtype, (hidden,), "norm"))
    spec.append(T("model.norm.weight", dtype, (hidden,), "norm"))
    return spec


def tiny_spec():
    """The mixed-dtype fixture model (a few KiB)."""
    return [
        T("embed.weight", "bf16", (32, 16), "embed"),
        T("layers.0.norm.weight", "f32", (16,), "norm"),
        T("layers.0.attn.weight", "fp16", (16, 16)),
        T("layers.0.mlp.weight", "f32", (24, 32)),
        T("position_ids", "i64", (1, 8), "arange"),
        T("lm_head.weight", "bf16", (32, 16), "embed", tie="embed.weight"),
    ]


def apply_edit(spec, edit):
    """The second version of `spec` under `edit` (see the module doc)."""
    out = [T(t.name, t.dtype, t.shape, t.kind, t.stream, t.tie) for t in spec]
    if edit == "rewrite10":
        for i, t in enumerate(out):
            if i % 10 == 5:
                t.stream = 1
    elif edit == "insert":
        mid = len(out) // 2
        dt = out[mid].dtype if out[mid].dtype in ("bf16", "fp16", "f32") else "f32"
        width = DTYPES[dt][0]
        out.insert(mid, T("model.extra_adapter.weight", dt, (57, 1024 // width)))
    elif edit == "append":
        e = out[0]
        assert e.kind == "embed"
        e.shape = (e.shape[0] + 256,) + e.shape[1:]
    elif edit:
        raise SystemExit(f"unknown edit {edit!r}")
    return out


def _bf16_bits(x32):
    u = x32.view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def values(t, seed):
    """The tensor's data as an array of its storage type (bf16 as uint16 bits)."""
    h = zlib.crc32(t.name.encode())
    rng = np.random.Generator(np.random.PCG64([seed, h, t.stream]))
    if t.dtype in ("i64", "i32"):
        a = np.arange(t.numel(), dtype=np.int64 if t.dtype == "i64" else np.int32)
        return a.reshape(t.shape)
    if t.dtype == "q8_0":
        return rng.integers(0, 256, size=t.nbytes(), dtype=np.uint8)
    x = rng.standard_normal(t.numel(), dtype=np.float32) * np.float32(STD)
    if t.kind == "norm":
        x += np.float32(1.0)
    x = x.reshape(t.shape)
    if t.dtype == "bf16":
        return _bf16_bits(x)
    if t.dtype == "fp16":
        return x.astype(np.float16)
    return x


def _data(t, seed):
    a = values(t, seed)
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()


def _untied(spec):
    return [t for t in spec if t.tie is None]


def _entry(name, dtype, shape, offset, length):
    return {"name": name, "dtype": dtype, "shape": list(shape), "offset": offset, "len": length}


# ---------------------------------------------------------------- safetensors
def write_safetensors(path, spec, seed):
    spec = _untied(spec)
    header, off = OrderedDict(), 0
    for t in spec:
        header[t.name] = {"dtype": DTYPES[t.dtype][1], "shape": list(t.shape),
                          "data_offsets": [off, off + t.nbytes()]}
        off += t.nbytes()
    header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    base = 8 + len(hb)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb)
        for t in spec:
            f.write(_data(t, seed))
    return [_entry(t.name, header[t.name]["dtype"], t.shape, base + header[t.name]["data_offsets"][0],
                   t.nbytes()) for t in spec]


# ---------------------------------------------------------------- torch zip
class _Global:
    """A `module name` global written as GLOBAL (torch is not imported)."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *a):  # save_reduce wants a callable
        raise TypeError("stand-in")


class _Storage:
    def __init__(self, key, cls, numel):
        self.key, self.cls, self.numel = key, cls, numel


class _Tensor:
    def __init__(self, storage, shape, globals_):
        self.storage, self.shape, self.g = storage, shape, globals_

    def __reduce_ex__(self, proto):
        stride, acc = [], 1
        for d in reversed(self.shape):
            stride.append(acc)
            acc *= d
        args = (self.storage, 0, tuple(self.shape), tuple(reversed(stride)), False, OrderedDict())
        return (self.g("torch._utils", "_rebuild_tensor_v2"), args)


class _StateDict(OrderedDict):
    pass


class _TorchPickler(pickle._Pickler):
    """Protocol-2 pickler that writes torch's globals and storage persistent ids."""

    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, f):
        super().__init__(f, protocol=2)
        self._globals = {}

    def g(self, module, name):
        return self._globals.setdefault((module, name), _Global(module, name))

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", self.g("torch", obj.cls), obj.key, "cpu", obj.numel)
        return None

    def save_torch_global(self, obj):
        self.write(pickle.GLOBAL + obj.module.encode() + b"\n" + obj.name.encode() + b"\n")
        self.memoize(obj)

    dispatch[_Global] = save_torch_global

    def save_state_dict(self, obj):
        # What the C pickler does for an OrderedDict subclass whose class is
        # collections.OrderedDict in torch (state_dict() returns an OrderedDict with a
        # `_metadata` attribute): REDUCE of collections.OrderedDict(), SETITEMS, BUILD.
        self.save_reduce(OrderedDict, (), state=obj.__dict__, dictitems=iter(obj.items()), obj=obj)

    dispatch[_StateDict] = save_state_dict


def _zip_record(f, name, data, force64):
    """One STORED record with torch's 64-byte data alignment; returns central-dir info."""
    full = name.encode()
    off, size = f.tell(), len(data)
    big_size, big_off = force64 or size >= 0xFFFFFFFF, force64 or off >= 0xFFFFFFFF
    z64 = b""
    if big_size or big_off:
        body = (struct.pack("<QQ", size, size) if big_size else b"") + (
            struct.pack("<Q", off) if big_off else b"")
        z64 = struct.pack("<HH", 1, len(body)) + body
    start = off + 30 + len(full) + len(z64) + 4
    pad = -start % 64
    extra = z64 + b"FB" + struct.pack("<H", pad) + b"Z" * pad
    crc = zlib.crc32(data)
    s32 = 0xFFFFFFFF if big_size else size
    f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45 if z64 else 20, 0, 0, 0, 0x21,
                        crc, s32, s32, len(full), len(extra)))
    f.write(full + extra)
    f.write(data)
    return (full, crc, size, off, big_size, big_off)


def _zip_finish(f, central, force64):
    cd_off = f.tell()
    for full, crc, size, off, big_size, big_off in central:
        body = (struct.pack("<QQ", size, size) if big_size else b"") + (
            struct.pack("<Q", off) if big_off else b"")
        extra = struct.pack("<HH", 1, len(body)) + body if body else b""
        s32 = 0xFFFFFFFF if big_size else size
        f.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45 if extra else 20,
                            45 if extra else 20, 0, 0, 0, 0x21, crc, s32, s32, len(full),
                            len(extra), 0, 0, 0, 0, 0xFFFFFFFF if big_off else off))
        f.write(full + extra)
    cd_size = f.tell() - cd_off
    n = len(central)
    if force64 or n >= 0xFFFF or cd_off >= 0xFFFFFFFF or cd_size >= 0xFFFFFFFF:
        e64 = f.tell()
        f.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, cd_size, cd_off))
        f.write(struct.pack("<IIQI", 0x07064B50, 0, e64, 1))
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF,
                            0xFFFFFFFF, 0))
    else:
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, cd_size, cd_off, 0))


def write_torch_zip(path, spec, seed, force64=False):
    pickler_buf = io.BytesIO()
    p = _TorchPickler(pickler_buf)
    storages, by_name, sd = [], {}, _StateDict()
    for t in spec:
        if t.tie is not None:
            st = by_name[t.tie]
        else:
            st = _Storage(str(len(storages)), DTYPES[t.dtype][2], t.numel())
            storages.append((st, t))
            by_name[t.name] = st
        sd[t.name] = _Tensor(st, t.shape, p.g)
    sd._metadata = OrderedDict([("", {"version": 1}), ("layers.0", {"version": 1})])
    p.dump(sd)
    pkl = pickler_buf.getvalue()
    table = []
    with open(path, "wb") as f:
        central = [_zip_record(f, "archive/data.pkl", pkl, force64)]
        central.append(_zip_record(f, "archive/.format_version", b"1", force64))
        central.append(_zip_record(f, "archive/.storage_alignment", b"64", force64))
        central.append(_zip_record(f, "archive/byteorder", b"little", force64))
        for st, t in storages:
            data = _data(t, seed)
            rec = _zip_record(f, f"archive/data/{st.key}", data, force64)
            central.append(rec)
            table.append(_entry(t.name, TORCH_DTYPE_NAME[t.dtype], t.shape,
                                f.tell() - len(data), len(data)))
        central.append(_zip_record(f, "archive/version", b"3\n", force64))
        sid = "%040d" % (zlib.crc32(pkl) * 7919 + seed)
        central.append(_zip_record(f, "archive/.data/serialization_id", sid.encode(), force64))
        _zip_finish(f, central, force64)
    return table


# ---------------------------------------------------------------- gguf
def _gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def _gkv_str(k, v):
    return _gstr(k) + struct.pack("<I", 8) + _gstr(v)


def write_gguf(path, spec, seed, alignment=32):
    spec = _untied(spec)
    kvs = [
        _gkv_str("general.architecture", "llama"),
        _gkv_str("general.name", "mvault-synthetic"),
        _gstr("general.alignment") + struct.pack("<II", 4, alignment),
        _gstr("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3)
        + _gstr("<s>") + _gstr("</s>") + _gstr("hello"),
        # a nested array: 2 arrays of u32 (kv readers must skip it element by element)
        _gstr("mvault.test.nested") + struct.pack("<IIQ", 9, 9, 2)
        + struct.pack("<IQ", 4, 2) + struct.pack("<II", 1, 2)
        + struct.pack("<IQ", 4, 1) + struct.pack("<I", 3),
        _gstr("general.file_type") + struct.pack("<IB", 0, 1),
    ]
    infos, rel = [], 0
    for t in spec:
        dims = list(reversed(t.shape))
        infos.append(_gstr(t.name) + struct.pack("<I", len(dims))
                     + b"".join(struct.pack("<Q", d) for d in dims)
                     + struct.pack("<IQ", DTYPES[t.dtype][3], rel))
        t._rel = rel
        rel += t.nbytes()
        rel += -rel % alignment
    head = b"GGUF" + struct.pack("<IQQ", 3, len(spec), len(kvs)) + b"".join(kvs) + b"".join(infos)
    base = len(head) + (-len(head) % alignment)
    with open(path, "wb") as f:
        f.write(head + b"\0" * (base - len(head)))
        for t in spec:
            f.write(b"\0" * (base + t._rel - f.tell()))
            f.write(_data(t, seed))
    return [_entry(t.name, GGML_NAME[DTYPES[t.dtype][3]], t.shape, base + t._rel, t.nbytes())
            for t in spec]


# ---------------------------------------------------------------- npy / npz
def _npy_array(t, seed):
    return np.ascontiguousarray(values(t, seed))  # bf16 -> uint16 bits


def write_npy(path, spec, seed):
    t = max(_untied(spec), key=lambda t: t.nbytes())
    a = _npy_array(t, seed)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=False)
    data = buf.getvalue()
    with open(path, "wb") as f:
        f.write(data)
    return [_entry("", a.dtype.str, a.shape, len(data) - a.nbytes, a.nbytes)]


def write_npz(path, spec, seed):
    table = []
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for t in _untied(spec):
            a = _npy_array(t, seed)
            info = zipfile.ZipInfo(t.name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            buf = io.BytesIO()
            np.lib.format.write_array(buf, a, allow_pickle=False)
            with z.open(info, "w", force_zip64=True) as fid:
                fid.write(buf.getvalue())
            # data start: local header + name + local extra (zip64) + npy header
            start = info.header_offset + 30 + len(info.filename.encode()) + 20
            table.append(_entry(t.name, a.dtype.str, a.shape,
                                start + len(buf.getvalue()) - a.nbytes, a.nbytes))
    return table


def check(path, table, spec, seed):
    """Asserts that each table entry's first and last bytes are that tensor's data."""
    by_name = {t.name: t for t in spec}
    with open(path, "rb") as f:
        for e in table:
            t = by_name[e["name"]] if e["name"] else max(_untied(spec), key=lambda t: t.nbytes())
            want = _data(t, seed)
            assert len(want) == e["len"], (e, len(want))
            for lo in (0, max(0, e["len"] - 64)):
                f.seek(e["offset"] + lo)
                assert f.read(64) == want[lo:lo + 64], ("data mismatch", path, e)


def write(fmt, path, spec, seed, force_zip64=False):
    """Writes `spec` in `fmt` to `path`; returns the tensor table sorted by offset."""
    if fmt == "safetensors":
        table = write_safetensors(path, spec, seed)
    elif fmt == "torch-zip":
        table = write_torch_zip(path, spec, seed, force_zip64)
    elif fmt == "gguf":
        table = write_gguf(path, spec, seed)
    elif fmt == "npy":
        table = write_npy(path, spec, seed)
    elif fmt == "npz":
        table = write_npz(path, spec, seed)
    else:
        raise SystemExit(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    return sorted(table, key=lambda e: e["offset"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("format", choices=FORMATS)
    ap.add_argument("out")
    ap.add_argument("--tensors", type=int, default=218)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=("bf16", "fp16", "f32"), default="bf16")
    ap.add_argument("--mib", type=float, default=None, help="scale the total to about M MiB")
    ap.add_argument("--edit", choices=("rewrite10", "insert", "append"), default=None)
    ap.add_argument("--tiny", action="store_true", help="the small mixed-dtype fixture model")
    ap.add_argument("--force-zip64", action="store_true", help="torch-zip: ZIP64 records always")
    ap.add_argument("--layout-json", default=None, help="write the tensor table here")
    a = ap.parse_args(argv)
    spec = tiny_spec() if a.tiny else model_spec(a.tensors, a.dtype, a.mib)
    if a.tiny and a.format == "gguf":
        spec[3].dtype = "q8_0"  # GGUF's tiny model has one quantized tensor
    if a.edit:
        spec = apply_edit(spec, a.edit)
    table = write(a.format, a.out, spec, a.seed, a.force_zip64)
    check(a.out, table, spec, a.seed)
    if a.layout_json:
        with open(a.layout_json, "w") as f:
            json.dump(table, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
