//! Zip containers: `torch.save` checkpoints ([`Kind::TorchZip`]) and numpy `.npz` files
//! ([`Kind::Npz`]).
//!
//! Zip: the end-of-central-directory record is searched in the last 64 KiB + 22 bytes (its
//! comment must end exactly at the end of the file); a ZIP64 locator right before it
//! switches to the ZIP64 record's counts and offsets. Validated: single-disk archives only; a
//! central directory of at most 64 MiB inside the file and before the EOCD; an entry count
//! that fits in it; each used entry's LOCAL header (signature, and its own name and extra
//! lengths, which differ from the central ones in torch files) and data inside the file.
//! Only STORED (method 0), unencrypted entries are laid out; others are skipped.
//!
//! torch: one entry `<archive>/data.pkl` (the archive directory is one path component) makes
//! the file a torch checkpoint; each STORED `<archive>/data/<key>` entry is one tensor (one
//! storage). Its dtype comes from the storage class in data.pkl's persistent ids
//! `('storage', torch.<X>Storage, key, location, numel)`, its name and shape from the first
//! `torch._utils._rebuild_tensor_v2` (or `_rebuild_tensor`) call on that storage, named by
//! its dotted path of dict keys / list indices from the pickled root. data.pkl must be STORED
//! and at most 64 MiB; if it cannot be understood the entries are still listed, with
//! name = entry name, dtype "unknown", shape [].
//!
//! npz: every entry is `<name>.npy`; each STORED one with a supported npy header is a tensor
//! at local data start + npy header length (a malformed npy header makes the file None).

use std::collections::HashMap;
use std::fs::File;

use super::{Bytes, Kind, Layout, Tensor, product, read_at, read_vec};

/// The largest central directory read.
const MAX_CD: u64 = 64 * 1024 * 1024;

/// The largest data.pkl read.
const MAX_PICKLE: u64 = 64 * 1024 * 1024;

/// One central-directory entry.
struct Entry {
    name: String,
    /// Compression method (0 = STORED).
    method: u16,
    flags: u16,
    /// Compressed size (= uncompressed for STORED).
    size: u64,
    local_offset: u64,
}

impl Entry {
    fn stored(&self) -> bool {
        self.method == 0 && self.flags & 1 == 0
    }
}

/// The central directory of the zip file, None if it is not a readable zip.
fn central_directory(file: &File, len: u64) -> Option<Vec<Entry>> {
    const EOCD: u64 = 22;
    if len < EOCD {
        return None;
    }
    let tail_len = len.min(EOCD + 0xFFFF);
    let tail = read_vec(file, len - tail_len, tail_len, tail_len, len)?;
    let tail_start = len - tail_len;
    let mut eocd_at = None;
    for i in (0..=tail.len() - EOCD as usize).rev() {
        if tail[i..i + 4] == [0x50, 0x4b, 0x05, 0x06] {
            let comment = u16::from_le_bytes([tail[i + 20], tail[i + 21]]) as usize;
            if i + EOCD as usize + comment == tail.len() {
                eocd_at = Some(i);
                break;
            }
        }
    }
    let i = eocd_at?;
    let mut e = Bytes::new(&tail[i + 4..i + EOCD as usize]);
    let (disk, cd_disk) = (e.u16()?, e.u16()?);
    let (on_disk, mut count) = (e.u16()?, u64::from(e.u16()?));
    let mut cd_size = u64::from(e.u32()?);
    let mut cd_offset = u64::from(e.u32()?);
    let eocd_pos = tail_start + i as u64;
    if disk != 0 || cd_disk != 0 || u64::from(on_disk) != count {
        return None;
    }
    let mut cd_end_limit = eocd_pos;
    // ZIP64: a locator right before the EOCD
    if eocd_pos >= 20 {
        let mut loc = [0u8; 20];
        read_at(file, eocd_pos - 20, &mut loc)?;
        let mut l = Bytes::new(&loc);
        if l.u32()? == 0x0706_4b50 {
            let (_disk, rec_at, _disks) = (l.u32()?, l.u64()?, l.u32()?);
            let mut rec = [0u8; 56];
            if rec_at.checked_add(56)? > eocd_pos - 20 {
                return None;
            }
            read_at(file, rec_at, &mut rec)?;
            let mut r = Bytes::new(&rec);
            if r.u32()? != 0x0606_4b50 {
                return None;
            }
            let _size = r.u64()?;
            let _versions = r.u32()?;
            let (disk, cd_disk) = (r.u32()?, r.u32()?);
            let (on_disk, total) = (r.u64()?, r.u64()?);
            if disk != 0 || cd_disk != 0 || on_disk != total {
                return None;
            }
            count = total;
            cd_size = r.u64()?;
            cd_offset = r.u64()?;
            cd_end_limit = rec_at;
        }
    }
    if cd_size > MAX_CD || cd_offset.checked_add(cd_size)? > cd_end_limit {
        return None;
    }
    // fixed part of a central entry: 46 bytes
    if count.checked_mul(46)? > cd_size {
        return None;
    }
    let cd = read_vec(file, cd_offset, cd_size, MAX_CD, len)?;
    let mut c = Bytes::new(&cd);
    let mut entries = Vec::with_capacity(count as usize);
    for _ in 0..count {
        if c.u32()? != 0x0201_4b50 {
            return None;
        }
        c.take(4)?; // versions
        let flags = c.u16()?;
        let method = c.u16()?;
        c.take(8)?; // time, date, crc
        let mut csize = u64::from(c.u32()?);
        let mut usize_ = u64::from(c.u32()?);
        let (nlen, xlen, clen) = (c.u16()?, c.u16()?, c.u16()?);
        let disk = c.u16()?;
        c.take(6)?; // attributes
        let mut local_offset = u64::from(c.u32()?);
        let name = String::from_utf8(c.take(nlen.into())?.to_vec()).ok()?;
        let mut x = Bytes::new(c.take(xlen.into())?);
        c.take(clen.into())?;
        while x.remaining() >= 4 {
            let (id, n) = (x.u16()?, x.u16()?);
            let body = x.take(n.into())?;
            if id == 1 {
                let mut z = Bytes::new(body);
                if usize_ == 0xFFFF_FFFF {
                    usize_ = z.u64()?;
                }
                if csize == 0xFFFF_FFFF {
                    csize = z.u64()?;
                }
                if local_offset == 0xFFFF_FFFF {
                    local_offset = z.u64()?;
                }
            }
        }
        if disk != 0 && disk != 0xFFFF {
            return None;
        }
        if method == 0 && csize != usize_ {
            return None;
        }
        entries.push(Entry {
            name,
            method,
            flags,
            size: csize,
            local_offset,
        });
    }
    Some(entries)
}

/// The absolute offset of an entry's data, from its LOCAL header; checks that the data lies
/// inside the file.
fn data_offset(file: &File, len: u64, e: &Entry) -> Option<u64> {
    let mut h = [0u8; 30];
    if e.local_offset.checked_add(30)? > len {
        return None;
    }
    read_at(file, e.local_offset, &mut h)?;
    let mut b = Bytes::new(&h);
    if b.u32()? != 0x0403_4b50 {
        return None;
    }
    let n = u64::from(u16::from_le_bytes([h[26], h[27]]));
    let x = u64::from(u16::from_le_bytes([h[28], h[29]]));
    let start = e.local_offset + 30 + n + x;
    if start.checked_add(e.size)? > len {
        return None;
    }
    Some(start)
}

pub(super) fn parse(file: &File, len: u64) -> Option<Layout> {
    let entries = central_directory(file, len)?;
    let pkl: Vec<&Entry> = entries
        .iter()
        .filter(|e| {
            e.name
                .split_once('/')
                .is_some_and(|(dir, rest)| !dir.is_empty() && rest == "data.pkl")
        })
        .collect();
    if let [pkl] = pkl[..] {
        let prefix = &pkl.name[..pkl.name.len() - "data.pkl".len()];
        return torch(file, len, &entries, pkl, prefix);
    }
    if !entries.is_empty() && entries.iter().all(|e| e.name.ends_with(".npy")) {
        return npz(file, len, &entries);
    }
    None
}

fn torch(file: &File, len: u64, entries: &[Entry], pkl: &Entry, prefix: &str) -> Option<Layout> {
    let data_dir = format!("{prefix}data/");
    let big_endian = entries
        .iter()
        .find(|e| e.name.len() == prefix.len() + 9 && e.name.ends_with("/byteorder"))
        .filter(|e| e.stored() && e.size <= 16)
        .and_then(|e| read_vec(file, data_offset(file, len, e)?, e.size, 16, len))
        .is_some_and(|b| b == b"big");
    let storages = if pkl.stored() {
        data_offset(file, len, pkl)
            .and_then(|at| read_vec(file, at, pkl.size, MAX_PICKLE, len))
            .and_then(|bytes| pickle::storages(&bytes))
    } else {
        None
    };
    let mut tensors = Vec::new();
    for e in entries {
        let Some(key) = e.name.strip_prefix(&data_dir) else {
            continue;
        };
        if key.is_empty() || key.contains('/') || !e.stored() {
            continue;
        }
        let offset = data_offset(file, len, e)?;
        let (name, dtype, shape) = match storages.as_ref().and_then(|s| s.get(key)) {
            Some(s) => {
                let dtype = if big_endian {
                    format!(">{}", s.dtype)
                } else {
                    s.dtype.clone()
                };
                let name = s.name.clone().unwrap_or_else(|| e.name.clone());
                let shape = match &s.shape {
                    Some(shape) if product(shape) == Some(s.numel) => shape.clone(),
                    _ => vec![s.numel],
                };
                (name, dtype, shape)
            }
            None => (e.name.clone(), "unknown".to_owned(), Vec::new()),
        };
        tensors.push(Tensor {
            name,
            dtype,
            shape,
            offset,
            len: e.size,
        });
    }
    Some(Layout {
        kind: Kind::TorchZip,
        tensors,
    })
}

fn npz(file: &File, len: u64, entries: &[Entry]) -> Option<Layout> {
    let mut tensors = Vec::new();
    for e in entries.iter().filter(|e| e.stored()) {
        let start = data_offset(file, len, e)?;
        match super::npy::parse_at(file, start, start + e.size)? {
            super::npy::Parsed::Array(a) => tensors.push(Tensor {
                name: e.name[..e.name.len() - 4].to_owned(),
                dtype: a.descr,
                shape: a.shape,
                offset: a.data_offset,
                len: a.data_len,
            }),
            super::npy::Parsed::Unsupported => {}
        }
    }
    Some(Layout {
        kind: Kind::Npz,
        tensors,
    })
}

/// A minimal pickle reader (protocols 0-5, the opcodes `torch.save`'s pickler emits and
/// then some), enough to find the storages and the tensors rebuilt from them.
mod pickle {
    use super::*;
    use std::rc::Rc;

    /// What data.pkl says about one storage.
    pub(super) struct Storage {
        /// "float32", "bfloat16", ... (from the storage class).
        pub dtype: String,
        /// Elements, as the persistent id says.
        pub numel: u64,
        /// The dotted path of the first tensor rebuilt from it, if it has one.
        pub name: Option<String>,
        /// That tensor's shape.
        pub shape: Option<Vec<u64>>,
    }

    /// Most values on the stack, in the memo and in containers together.
    const MAX_VALUES: usize = 1 << 22;
    /// Most nodes visited when naming tensors, and the deepest nesting followed.
    const MAX_VISITS: usize = 1 << 22;
    const MAX_PATH_DEPTH: usize = 64;

    #[derive(Clone)]
    enum V {
        None,
        Int(i64),
        Str(Rc<str>),
        /// A container in the arena.
        Obj(usize),
        Global(Rc<(String, String)>),
        /// Index into the storages found.
        Storage(usize),
        /// Index into the tensors rebuilt.
        Tensor(usize),
        /// Anything else (floats, bytes, bools, unknown objects).
        Other,
    }

    /// A container: tuple/list items (or reduce arguments) and dict entries.
    #[derive(Default)]
    struct Obj {
        items: Vec<V>,
        entries: Vec<(V, V)>,
    }

    struct TensorRef {
        storage: usize,
        shape: Vec<u64>,
    }

    struct Vm {
        stack: Vec<V>,
        marks: Vec<usize>,
        memo: HashMap<u64, V>,
        arena: Vec<Obj>,
        values: usize,
        storages: Vec<(String, String, u64)>, // key, dtype, numel
        storage_by_key: HashMap<String, usize>,
        tensors: Vec<TensorRef>,
    }

    fn dtype_of(class: &str) -> String {
        let d = match class {
            "FloatStorage" => "float32",
            "DoubleStorage" => "float64",
            "HalfStorage" => "float16",
            "BFloat16Storage" => "bfloat16",
            "LongStorage" => "int64",
            "IntStorage" => "int32",
            "ShortStorage" => "int16",
            "CharStorage" => "int8",
            "ByteStorage" | "UntypedStorage" => "uint8",
            "BoolStorage" => "bool",
            "ComplexHalfStorage" => "complex32",
            "ComplexFloatStorage" => "complex64",
            "ComplexDoubleStorage" => "complex128",
            "QInt8Storage" => "qint8",
            "QUInt8Storage" => "quint8",
            "QInt32Storage" => "qint32",
            "QUInt4x2Storage" => "quint4x2",
            "QUInt2x4Storage" => "quint2x4",
            other => {
                return match other.strip_suffix("Storage") {
                    Some(s) if !s.is_empty() => s.to_ascii_lowercase(),
                    _ => "unknown".to_owned(),
                };
            }
        };
        d.to_owned()
    }

    impl Vm {
        fn count(&mut self, n: usize) -> Option<()> {
            self.values = self.values.checked_add(n)?;
            (self.values <= MAX_VALUES).then_some(())
        }

        fn push(&mut self, v: V) -> Option<()> {
            self.count(1)?;
            self.stack.push(v);
            Some(())
        }

        fn pop(&mut self) -> Option<V> {
            if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
                return None; // popping through a mark
            }
            self.stack.pop()
        }

        fn top(&self) -> Option<&V> {
            self.stack.last()
        }

        fn pop_mark(&mut self) -> Option<Vec<V>> {
            let m = self.marks.pop()?;
            if m > self.stack.len() {
                return None;
            }
            Some(self.stack.split_off(m))
        }

        fn new_obj(&mut self, items: Vec<V>, entries: Vec<(V, V)>) -> Option<V> {
            self.count(1)?;
            self.arena.push(Obj { items, entries });
            Some(V::Obj(self.arena.len() - 1))
        }

        fn items(&self, v: &V) -> Option<&[V]> {
            match v {
                V::Obj(i) => Some(&self.arena[*i].items),
                _ => None,
            }
        }

        fn persistent(&mut self, pid: V) -> V {
            let Some(items) = self.items(&pid) else {
                return V::Other;
            };
            let [
                V::Str(tag),
                V::Global(g),
                V::Str(key),
                _location,
                V::Int(numel),
            ] = items
            else {
                return V::Other;
            };
            if &**tag != "storage" || g.0 != "torch" || *numel < 0 {
                return V::Other;
            }
            let (dtype, key, numel) = (dtype_of(&g.1), key.to_string(), *numel as u64);
            if let Some(&i) = self.storage_by_key.get(&key) {
                return V::Storage(i);
            }
            self.storages.push((key.clone(), dtype, numel));
            self.storage_by_key.insert(key, self.storages.len() - 1);
            V::Storage(self.storages.len() - 1)
        }

        fn reduce(&mut self, func: V, args: V) -> Option<V> {
            self.reduce_at(func, args, 0)
        }

        /// `depth`: nesting of `_rebuild_from_type_v2` calls (bounded: a hostile pickle can
        /// make its arguments contain themselves).
        fn reduce_at(&mut self, func: V, args: V, depth: u32) -> Option<V> {
            if let V::Global(g) = &func
                && g.0 == "torch._utils"
                && depth < 4
            {
                let a = self.items(&args).unwrap_or(&[]);
                match g.1.as_str() {
                    "_rebuild_tensor_v2" | "_rebuild_tensor" => {
                        if let [V::Storage(s), _, shape, ..] = a {
                            let shape = self
                                .items(shape)?
                                .iter()
                                .map(|d| match d {
                                    V::Int(i) if *i >= 0 => Some(*i as u64),
                                    _ => None,
                                })
                                .collect::<Option<Vec<u64>>>()?;
                            self.tensors.push(TensorRef { storage: *s, shape });
                            return Some(V::Tensor(self.tensors.len() - 1));
                        }
                    }
                    "_rebuild_from_type_v2" => {
                        // (func, new_type, args, state): a tensor subclass or attributes
                        if let [f @ V::Global(_), _, inner, ..] = a {
                            let (f, inner) = (f.clone(), inner.clone());
                            return self.reduce_at(f, inner, depth + 1);
                        }
                    }
                    "_rebuild_parameter" | "_rebuild_parameter_with_state" => {
                        if let [t @ V::Tensor(_), ..] = a {
                            return Some(t.clone());
                        }
                    }
                    _ => {}
                }
            }
            // anything else: an object that may later get items or entries, and that
            // keeps its arguments (they may hold tensors)
            self.new_obj(vec![args], Vec::new())
        }

        fn run(&mut self, data: &[u8]) -> Option<()> {
            let mut b = Bytes::new(data);
            loop {
                let op = b.u8()?;
                match op {
                    0x80 => {
                        b.u8()?; // PROTO
                    }
                    0x95 => {
                        b.u64()?; // FRAME
                    }
                    b'.' => return Some(()),
                    b'(' => {
                        self.count(1)?;
                        self.marks.push(self.stack.len());
                    }
                    b')' => {
                        let v = self.new_obj(Vec::new(), Vec::new())?;
                        self.push(v)?;
                    }
                    b']' | b'}' | 0x8f => {
                        let v = self.new_obj(Vec::new(), Vec::new())?;
                        self.push(v)?;
                    }
                    b't' | b'l' | 0x91 => {
                        let items = self.pop_mark()?;
                        let v = self.new_obj(items, Vec::new())?;
                        self.push(v)?;
                    }
                    b'd' => {
                        let items = self.pop_mark()?;
                        if items.len() % 2 != 0 {
                            return None;
                        }
                        let mut it = items.into_iter();
                        let mut entries = Vec::new();
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            entries.push((k, v));
                        }
                        let v = self.new_obj(Vec::new(), entries)?;
                        self.push(v)?;
                    }
                    0x85..=0x87 => {
                        let n = usize::from(op - 0x84);
                        if self.stack.len() < n + self.marks.last().copied().unwrap_or(0) {
                            return None;
                        }
                        let items = self.stack.split_off(self.stack.len() - n);
                        let v = self.new_obj(items, Vec::new())?;
                        self.push(v)?;
                    }
                    b'a' => {
                        let v = self.pop()?;
                        let V::Obj(i) = *self.top()? else { return None };
                        self.arena[i].items.push(v);
                    }
                    b'e' | 0x90 => {
                        let items = self.pop_mark()?;
                        let V::Obj(i) = *self.top()? else { return None };
                        self.arena[i].items.extend(items);
                    }
                    b's' => {
                        let v = self.pop()?;
                        let k = self.pop()?;
                        let V::Obj(i) = *self.top()? else { return None };
                        self.arena[i].entries.push((k, v));
                    }
                    b'u' => {
                        let items = self.pop_mark()?;
                        if items.len() % 2 != 0 {
                            return None;
                        }
                        let V::Obj(i) = *self.top()? else { return None };
                        let mut it = items.into_iter();
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            self.arena[i].entries.push((k, v));
                        }
                    }
                    b'N' => self.push(V::None)?,
                    0x88 | 0x89 => self.push(V::Other)?,
                    b'J' => {
                        let v = i32::from_le_bytes(b.array()?);
                        self.push(V::Int(v.into()))?;
                    }
                    b'K' => {
                        let v = b.u8()?;
                        self.push(V::Int(v.into()))?;
                    }
                    b'M' => {
                        let v = b.u16()?;
                        self.push(V::Int(v.into()))?;
                    }
                    0x8a | 0x8b => {
                        let n = if op == 0x8a {
                            u64::from(b.u8()?)
                        } else {
                            u64::from(b.u32()?)
                        };
                        let bytes = b.take_u64(n)?;
                        let v = if bytes.len() <= 8 {
                            let neg = bytes.last().is_some_and(|&x| x & 0x80 != 0);
                            let mut buf = [if neg { 0xff } else { 0 }; 8];
                            buf[..bytes.len()].copy_from_slice(bytes);
                            V::Int(i64::from_le_bytes(buf))
                        } else {
                            V::Other
                        };
                        self.push(v)?;
                    }
                    b'G' => {
                        b.take(8)?;
                        self.push(V::Other)?;
                    }
                    b'X' | 0x8c | 0x8d | b'T' | b'U' => {
                        let n = match op {
                            b'X' | b'T' => u64::from(b.u32()?),
                            0x8d => b.u64()?,
                            _ => u64::from(b.u8()?),
                        };
                        let s = b.take_u64(n)?;
                        let s: Rc<str> = String::from_utf8_lossy(s).into();
                        self.push(V::Str(s))?;
                    }
                    b'B' | b'C' | 0x8e | 0x96 => {
                        let n = match op {
                            b'B' => u64::from(b.u32()?),
                            b'C' => u64::from(b.u8()?),
                            _ => b.u64()?,
                        };
                        b.take_u64(n)?;
                        self.push(V::Other)?;
                    }
                    b'c' => {
                        let module = line(&mut b)?;
                        let name = line(&mut b)?;
                        self.push(V::Global(Rc::new((module, name))))?;
                    }
                    0x93 => {
                        let name = self.pop()?;
                        let module = self.pop()?;
                        let (V::Str(m), V::Str(n)) = (module, name) else {
                            return None;
                        };
                        self.push(V::Global(Rc::new((m.to_string(), n.to_string()))))?;
                    }
                    b'q' | b'r' | 0x94 | b'p' => {
                        let idx = match op {
                            b'q' => u64::from(b.u8()?),
                            b'r' => u64::from(b.u32()?),
                            b'p' => line(&mut b)?.trim().parse().ok()?,
                            _ => self.memo.len() as u64,
                        };
                        let v = self.top()?.clone();
                        self.count(1)?;
                        self.memo.insert(idx, v);
                    }
                    b'h' | b'j' | b'g' => {
                        let idx = match op {
                            b'h' => u64::from(b.u8()?),
                            b'j' => u64::from(b.u32()?),
                            _ => line(&mut b)?.trim().parse().ok()?,
                        };
                        let v = self.memo.get(&idx)?.clone();
                        self.push(v)?;
                    }
                    b'Q' => {
                        let pid = self.pop()?;
                        let v = self.persistent(pid);
                        self.push(v)?;
                    }
                    b'P' => {
                        line(&mut b)?;
                        self.push(V::Other)?;
                    }
                    b'R' => {
                        let args = self.pop()?;
                        let func = self.pop()?;
                        let v = self.reduce(func, args)?;
                        self.push(v)?;
                    }
                    0x81 => {
                        let args = self.pop()?;
                        let _cls = self.pop()?;
                        let v = self.new_obj(vec![args], Vec::new())?;
                        self.push(v)?;
                    }
                    0x92 => {
                        let kwargs = self.pop()?;
                        let args = self.pop()?;
                        let _cls = self.pop()?;
                        let v = self.new_obj(vec![args, kwargs], Vec::new())?;
                        self.push(v)?;
                    }
                    b'b' => {
                        // BUILD: keep the state with the object (it may hold tensors)
                        let state = self.pop()?;
                        if let V::Obj(i) = *self.top()? {
                            self.arena[i].items.push(state);
                        }
                    }
                    b'i' => {
                        line(&mut b)?;
                        line(&mut b)?;
                        let items = self.pop_mark()?;
                        let v = self.new_obj(items, Vec::new())?;
                        self.push(v)?;
                    }
                    b'o' => {
                        let items = self.pop_mark()?;
                        let v = self.new_obj(items, Vec::new())?;
                        self.push(v)?;
                    }
                    b'0' => {
                        self.pop()?;
                    }
                    b'1' => {
                        self.pop_mark()?;
                    }
                    b'2' => {
                        let v = self.top()?.clone();
                        self.push(v)?;
                    }
                    0x82 => {
                        b.u8()?;
                        self.push(V::Other)?;
                    }
                    0x83 => {
                        b.u16()?;
                        self.push(V::Other)?;
                    }
                    0x84 => {
                        b.u32()?;
                        self.push(V::Other)?;
                    }
                    b'I' | b'L' => {
                        let s = line(&mut b)?;
                        let s = s.trim().trim_end_matches('L');
                        let v = match s {
                            "00" => V::Other,
                            "01" => V::Other,
                            _ => s.parse().map(V::Int).unwrap_or(V::Other),
                        };
                        self.push(v)?;
                    }
                    b'F' | b'S' | b'V' => {
                        let s = line(&mut b)?;
                        let v = if op == b'V' {
                            V::Str(s.into())
                        } else {
                            V::Other
                        };
                        self.push(v)?;
                    }
                    0x97 => self.push(V::Other)?,
                    0x98 => {}
                    _ => return None,
                }
            }
        }

        /// Names each tensor by the first path from the root that reaches it.
        fn name_tensors(&self, root: &V) -> Vec<Option<String>> {
            let mut names = vec![None; self.tensors.len()];
            let mut visits = 0usize;
            let mut path = Vec::new();
            self.walk(root, &mut path, &mut names, &mut visits, 0);
            names
        }

        fn walk(
            &self,
            v: &V,
            path: &mut Vec<String>,
            names: &mut Vec<Option<String>>,
            visits: &mut usize,
            depth: usize,
        ) {
            *visits += 1;
            if *visits > MAX_VISITS || depth > MAX_PATH_DEPTH {
                return;
            }
            match v {
                V::Tensor(t) if names[*t].is_none() && !path.is_empty() => {
                    names[*t] = Some(path.join("."));
                }
                V::Obj(i) => {
                    let o = &self.arena[*i];
                    for (k, val) in &o.entries {
                        let comp = match k {
                            V::Str(s) => s.to_string(),
                            V::Int(n) => n.to_string(),
                            _ => continue,
                        };
                        path.push(comp);
                        self.walk(val, path, names, visits, depth + 1);
                        path.pop();
                    }
                    // items: list elements, reduce arguments, BUILD state; list indices
                    // are named, the rest is transparent
                    for (n, val) in o.items.iter().enumerate() {
                        if o.entries.is_empty() && o.items.len() > 1 {
                            path.push(n.to_string());
                            self.walk(val, path, names, visits, depth + 1);
                            path.pop();
                        } else {
                            self.walk(val, path, names, visits, depth + 1);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn line(b: &mut Bytes<'_>) -> Option<String> {
        let rest = &b.data[b.pos..];
        let n = rest.iter().position(|&c| c == b'\n')?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        b.take(n + 1)?;
        Some(s)
    }

    /// The storages of a data.pkl by key, None if the pickle is not understood.
    pub(super) fn storages(data: &[u8]) -> Option<HashMap<String, Storage>> {
        let mut vm = Vm {
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            arena: Vec::new(),
            values: 0,
            storages: Vec::new(),
            storage_by_key: HashMap::new(),
            tensors: Vec::new(),
        };
        vm.run(data)?;
        let root = vm.stack.pop()?;
        let names = vm.name_tensors(&root);
        let mut out: HashMap<String, Storage> = HashMap::new();
        for (key, dtype, numel) in &vm.storages {
            out.insert(
                key.clone(),
                Storage {
                    dtype: dtype.clone(),
                    numel: *numel,
                    name: None,
                    shape: None,
                },
            );
        }
        // the first tensor rebuilt from each storage that has a name gives name and shape
        for (t, name) in vm.tensors.iter().zip(names) {
            let s = out.get_mut(&vm.storages[t.storage].0)?;
            if s.name.is_none()
                && let Some(name) = name
            {
                s.name = Some(name);
                s.shape = Some(t.shape.clone());
            }
        }
        Some(out)
    }
}
