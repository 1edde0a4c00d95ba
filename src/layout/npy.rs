//! numpy `.npy` v1/v2/v3: magic `\x93NUMPY`, major and minor version bytes, the header
//! length (u16 LE in v1, u32 LE in v2/v3), then a Python dict literal
//! `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }` padded with spaces and a
//! newline; the array data follows the header.
//!
//! Validated: the version (1, 2 or 3), a header of at most 1 MiB inside the file, a dict
//! literal with exactly the keys `descr` (a simple type string), `fortran_order` (a bool)
//! and `shape` (a tuple of non-negative ints), and `itemsize * product(shape)` (no
//! overflow) fitting in the bytes after the header. Structured (list) and object (`O`)
//! dtypes are unsupported.

use std::fs::File;

use super::{Kind, Layout, Tensor, product, read_at, read_vec};

/// The npy magic string.
pub(super) const MAGIC: &[u8] = b"\x93NUMPY";

/// The largest header accepted (numpy itself refuses more than 10000 bytes by default).
const MAX_HEADER: u64 = 1024 * 1024;

/// Nesting limit of the dict-literal parser.
const MAX_DEPTH: u32 = 16;

/// One parsed npy array (absolute offsets).
pub(super) struct Array {
    pub descr: String,
    pub shape: Vec<u64>,
    pub data_offset: u64,
    pub data_len: u64,
}

/// What an npy header says.
pub(super) enum Parsed {
    Array(Array),
    /// A well-formed header with a dtype this code does not lay out (structured, object).
    Unsupported,
}

/// Reads the npy header at `start`; the array must end by `end` (absolute). None when the
/// header is malformed.
pub(super) fn parse_at(file: &File, start: u64, end: u64) -> Option<Parsed> {
    let mut pre = [0u8; 12];
    let avail = end.checked_sub(start)?;
    let n = pre.len().min(usize::try_from(avail).unwrap_or(usize::MAX));
    read_at(file, start, &mut pre[..n])?;
    if n < 10 || &pre[..6] != MAGIC {
        return None;
    }
    let (hlen, prefix) = match pre[6] {
        1 => (u64::from(u16::from_le_bytes([pre[8], pre[9]])), 10u64),
        2 | 3 if n == 12 => (
            u64::from(u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]])),
            12,
        ),
        _ => return None,
    };
    let header = read_vec(file, start + prefix, hlen, MAX_HEADER, end)?;
    let data_offset = start + prefix + hlen;
    let dict = match Lit::parse(&header)? {
        Lit::Dict(d) => d,
        _ => return None,
    };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    for (k, v) in dict {
        let Lit::Str(k) = k else { return None };
        match (k.as_str(), v) {
            ("descr", v) if descr.is_none() => descr = Some(v),
            ("fortran_order", Lit::Bool(b)) if fortran.is_none() => fortran = Some(b),
            ("shape", Lit::Tuple(items)) if shape.is_none() => {
                let dims = items
                    .into_iter()
                    .map(|d| match d {
                        Lit::Int(i) => Some(i),
                        _ => None,
                    })
                    .collect::<Option<Vec<u64>>>()?;
                shape = Some(dims);
            }
            _ => return None,
        }
    }
    let (descr, _fortran, shape) = (descr?, fortran?, shape?);
    let descr = match descr {
        Lit::Str(s) => s,
        Lit::List => return Some(Parsed::Unsupported),
        _ => return None,
    };
    let Some(itemsize) = itemsize(&descr)? else {
        return Some(Parsed::Unsupported);
    };
    let data_len = itemsize.checked_mul(product(&shape)?)?;
    if data_offset.checked_add(data_len)? > end {
        return None;
    }
    Some(Parsed::Array(Array {
        descr,
        shape,
        data_offset,
        data_len,
    }))
}

/// A whole `.npy` file: one tensor named "".
pub(super) fn parse_file(file: &File, len: u64) -> Option<Layout> {
    match parse_at(file, 0, len)? {
        Parsed::Array(a) => Some(Layout {
            kind: Kind::Npy,
            tensors: vec![Tensor {
                name: String::new(),
                dtype: a.descr,
                shape: a.shape,
                offset: a.data_offset,
                len: a.data_len,
            }],
        }),
        Parsed::Unsupported => None,
    }
}

/// The element size of a simple descr (`<f4`, `|b1`, `<U10`, `<M8[ns]`, ...): Some(None)
/// for the object dtype, None when malformed.
fn itemsize(descr: &str) -> Option<Option<u64>> {
    let b = descr.as_bytes();
    if b.len() < 2 || !matches!(b[0], b'<' | b'>' | b'|' | b'=') {
        return None;
    }
    let kind = b[1];
    let rest = &descr[2..];
    let (digits, unit) = match rest.find('[') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    if kind == b'O' {
        return Some(None);
    }
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) || digits.len() > 12 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    if let Some(u) = unit
        && (!matches!(kind, b'M' | b'm') || !u.ends_with(']'))
    {
        return None;
    }
    Some(Some(match kind {
        b'b' | b'i' | b'u' | b'f' | b'c' | b'S' | b'V' | b'M' | b'm' => n,
        b'U' => n.checked_mul(4)?,
        _ => return None,
    }))
}

/// A Python literal, as far as npy headers use them.
enum Lit {
    Str(String),
    Int(u64),
    Bool(bool),
    None,
    Tuple(Vec<Lit>),
    /// A list (structured dtypes); its items are not kept.
    List,
    Dict(Vec<(Lit, Lit)>),
}

impl Lit {
    /// Parses the whole header (trailing spaces and newline allowed).
    fn parse(src: &[u8]) -> Option<Lit> {
        let mut p = LitParser { s: src, i: 0 };
        let v = p.value(0)?;
        p.ws();
        (p.i == src.len()).then_some(v)
    }
}

struct LitParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl LitParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: u32) -> Option<Lit> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            q @ (b'\'' | b'"') => {
                self.i += 1;
                let start = self.i;
                while *self.s.get(self.i)? != q {
                    if self.s[self.i] == b'\\' {
                        return None; // npy headers never need escapes
                    }
                    self.i += 1;
                }
                let s = std::str::from_utf8(&self.s[start..self.i]).ok()?.to_owned();
                self.i += 1;
                Some(Lit::Str(s))
            }
            b'0'..=b'9' => {
                let start = self.i;
                while self.s.get(self.i).is_some_and(|c| c.is_ascii_digit()) {
                    self.i += 1;
                }
                let digits = std::str::from_utf8(&self.s[start..self.i]).ok()?;
                // `3L` (Python 2 headers)
                if self.s.get(self.i) == Some(&b'L') {
                    self.i += 1;
                }
                Some(Lit::Int(digits.parse().ok()?))
            }
            b'(' | b'[' => {
                let close = if self.s[self.i] == b'(' { b')' } else { b']' };
                let tuple = close == b')';
                self.i += 1;
                let mut items = Vec::new();
                let mut one = false;
                loop {
                    if self.eat(close) {
                        break;
                    }
                    items.push(self.value(depth + 1)?);
                    if self.eat(b',') {
                        one = true;
                        continue;
                    }
                    if !self.eat(close) {
                        return None;
                    }
                    one = false;
                    break;
                }
                // `(3)` is an int, `(3,)` a tuple
                if tuple && items.len() == 1 && !one {
                    return items.pop();
                }
                Some(if tuple { Lit::Tuple(items) } else { Lit::List })
            }
            b'{' => {
                self.i += 1;
                let mut entries = Vec::new();
                loop {
                    if self.eat(b'}') {
                        break;
                    }
                    let k = self.value(depth + 1)?;
                    if !self.eat(b':') {
                        return None;
                    }
                    let v = self.value(depth + 1)?;
                    entries.push((k, v));
                    if self.eat(b',') {
                        continue;
                    }
                    if !self.eat(b'}') {
                        return None;
                    }
                    break;
                }
                Some(Lit::Dict(entries))
            }
            _ => {
                for (word, lit) in [
                    (&b"True"[..], Lit::Bool(true)),
                    (b"False", Lit::Bool(false)),
                    (b"None", Lit::None),
                ] {
                    if self.s[self.i..].starts_with(word) {
                        self.i += word.len();
                        return Some(lit);
                    }
                }
                None
            }
        }
    }
}
