//! The manifest: one JSON document per model version, listing its files and their chunks.
//!
//! Invariants checked by [`Manifest::validate`] before anything is written from a manifest:
//! - `format` is one this release understands ([`READ_FORMATS`]);
//! - every path is relative and normalized: `/`-separated, no empty, `.` or `..` segment, no
//!   backslash, NUL or control character, at most 4096 bytes, first segment not `.mvault`
//!   (reserved for pull targets' records); no path is repeated, and no path is a directory
//!   prefix of another (`a` and `a/b`);
//! - each file's chunk sizes add up to its size, and no chunk exceeds the format's maximum;
//! - packed chunks appear only in format 3, each with a range a reader may fetch;
//! - a file's tensor index (format 2) lists byte ranges inside the file, sorted and disjoint;
//! - `file_size` is the sum of file sizes and `checksum` matches [`version_checksum`].
//!
//! No I/O happens here.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::chunk::{Digest, MAX_CHUNK_BYTES};
use crate::layout;
use crate::pack::PackRef;
use crate::version::{ModelName, Version};

/// The manifest format this release writes when no chunk is packed: 2, model-aware chunking
/// with a tensor index.
pub const FORMAT: u32 = 2;
/// The format of a manifest with at least one packed chunk ([`ChunkRef::pack`]): 3. A reader
/// of format 2 would look for such a chunk under `chunks/` and fail, hence the new number.
pub const PACKED_FORMAT: u32 = 3;
/// The formats this release reads; readers refuse any other number. Format 1 (mvault 0.1.0)
/// stays readable forever.
pub const READ_FORMATS: [u32; 3] = [1, 2, 3];
/// Most tensors a file's index may list (a GGUF file has a few thousand).
pub const MAX_TENSORS: usize = 1 << 20;

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("manifest is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "manifest format {0} is not supported by this mvault (reads 1, 2 and 3); upgrade mvault"
    )]
    UnsupportedFormat(u32),
    #[error("manifest has an unsafe file path {path:?}: {reason}")]
    UnsafePath { path: String, reason: &'static str },
    #[error("manifest lists {path:?} twice, or as both a file and a directory")]
    PathClash { path: String },
    #[error("manifest entry {path:?} is inconsistent: {reason}")]
    Inconsistent { path: String, reason: String },
    #[error("manifest is for {found}, expected {expected}")]
    WrongVersion { expected: String, found: String },
}

/// A chunk reference inside a file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkRef {
    /// BLAKE3 of the chunk plaintext; also its object name.
    pub id: Digest,
    /// Plaintext length in bytes.
    pub size: u64,
    /// Format 3: the chunk's object is this range of a pack (`docs/FORMAT.md`, "Packs"),
    /// else (`None`) the loose object `chunks/<hh>/<id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack: Option<PackRef>,
}

/// One file of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative, normalized, `/`-separated path.
    pub path: String,
    /// Length in bytes.
    pub size: u64,
    /// BLAKE3 of the whole file (what `b3sum` prints).
    pub digest: Digest,
    /// Chunks in file order; their sizes add up to `size`.
    pub chunks: Vec<ChunkRef>,
    /// Format 2: the tensor index of a recognized model file (information for readers; pulls
    /// do not need it). Absent for other files and in format 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<FileLayout>,
}

/// The tensor index of one model file, as read from its header at push time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileLayout {
    /// The file format recognized.
    pub kind: layout::Kind,
    /// Sorted by offset, disjoint, inside the file.
    pub tensors: Vec<layout::Tensor>,
}

/// Who pushed a version, from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Origin {
    pub user: String,
    pub host: String,
    /// `mvault <semver>`.
    pub tool: String,
}

/// Chunking parameters recorded for information (readers never need them). `algorithm` is
/// `fastcdc-2020` (format 1) or `mvault-layout-1` (format 2: tensor boundaries, then FastCDC;
/// the `min/avg/max` fields are then the parameters for files without a tensor table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunking {
    pub algorithm: String,
    pub min_bytes: u32,
    pub avg_bytes: u32,
    pub max_bytes: u32,
    /// Format 2: FastCDC parameters inside large tensors, and the group size of small ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensor: Option<TensorChunking>,
}

/// Format 2's tensor chunking parameters, in bytes (information only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorChunking {
    pub min_bytes: u32,
    pub avg_bytes: u32,
    pub max_bytes: u32,
    pub group_bytes: u64,
}

/// A model version. Field names follow the metadata users already have (`model_name`,
/// `performance_metrics`, `training_config`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub model_name: String,
    /// As the user wrote it (a leading `v` is kept).
    pub version: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub created_by: Origin,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub performance_metrics: Map<String, Value>,
    #[serde(default)]
    pub training_config: Map<String, Value>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Other metadata merged from `--metadata-file`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
    /// Total bytes over all files.
    pub file_size: u64,
    /// [`version_checksum`] of `files`.
    pub checksum: Digest,
    pub chunking: Chunking,
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Parses and validates a manifest read from a store.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, Error> {
        #[derive(Deserialize)]
        struct Probe {
            format: u32,
        }
        let probe: Probe = serde_json::from_slice(bytes)?;
        if !READ_FORMATS.contains(&probe.format) {
            return Err(Error::UnsupportedFormat(probe.format));
        }
        let m: Manifest = serde_json::from_slice(bytes)?;
        m.validate()?;
        Ok(m)
    }

    /// Pretty JSON, as stored.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("manifest serializes");
        v.push(b'\n');
        v
    }

    /// Checks every invariant listed in the module docs.
    pub fn validate(&self) -> Result<(), Error> {
        if !READ_FORMATS.contains(&self.format) {
            return Err(Error::UnsupportedFormat(self.format));
        }
        let inconsistent = |path: &str, reason: String| Error::Inconsistent {
            path: path.to_string(),
            reason,
        };
        let mut seen = HashSet::new();
        let mut total = 0u64;
        for f in &self.files {
            validate_path(&f.path)?;
            if !seen.insert(f.path.as_str()) {
                return Err(Error::PathClash {
                    path: f.path.clone(),
                });
            }
            let mut sum = 0u64;
            for c in &f.chunks {
                if c.size == 0 || c.size > MAX_CHUNK_BYTES {
                    return Err(inconsistent(&f.path, format!("chunk size {}", c.size)));
                }
                if let Some(p) = &c.pack
                    && (self.format < PACKED_FORMAT || !p.is_sane())
                {
                    return Err(inconsistent(
                        &f.path,
                        format!("chunk {} has a bad pack range", c.id),
                    ));
                }
                sum = sum.saturating_add(c.size);
            }
            if sum != f.size {
                return Err(inconsistent(
                    &f.path,
                    format!("chunks add up to {sum} bytes, file size is {}", f.size),
                ));
            }
            if let Some(l) = &f.layout {
                check_tensors(&l.tensors, f.size).map_err(|r| inconsistent(&f.path, r))?;
            }
            total = total.saturating_add(f.size);
        }
        for f in &self.files {
            let mut dir = f.path.as_str();
            while let Some((parent, _)) = dir.rsplit_once('/') {
                if seen.contains(parent) {
                    return Err(Error::PathClash {
                        path: parent.to_string(),
                    });
                }
                dir = parent;
            }
        }
        if total != self.file_size {
            return Err(inconsistent(
                "(version)",
                format!("file_size {} but files add up to {total}", self.file_size),
            ));
        }
        if version_checksum(&self.files) != self.checksum {
            return Err(inconsistent(
                "(version)",
                "checksum does not match the file list".into(),
            ));
        }
        Ok(())
    }

    /// Checks that this manifest is the one stored for `name@version`.
    pub fn expect_identity(&self, name: &ModelName, version: &Version) -> Result<(), Error> {
        let found_v: Result<Version, _> = self.version.parse();
        if self.model_name != name.as_str() || found_v.as_ref().ok() != Some(version) {
            return Err(Error::WrongVersion {
                expected: format!("{name}@{version}"),
                found: format!("{}@{}", self.model_name, self.version),
            });
        }
        Ok(())
    }

    /// Every distinct chunk the version needs, with its plaintext size.
    pub fn unique_chunks(&self) -> Vec<ChunkRef> {
        let mut seen = HashSet::new();
        self.files
            .iter()
            .flat_map(|f| f.chunks.iter())
            .filter(|c| seen.insert(c.id))
            .cloned()
            .collect()
    }
}

/// Tensor ranges must lie inside the file, sorted by offset and disjoint; names at most 4096
/// bytes; at most [`MAX_TENSORS`].
fn check_tensors(tensors: &[layout::Tensor], file_size: u64) -> Result<(), String> {
    if tensors.len() > MAX_TENSORS {
        return Err(format!(
            "{} tensors, more than {MAX_TENSORS}",
            tensors.len()
        ));
    }
    let mut prev_end = 0u64;
    for t in tensors {
        let end = t.offset.checked_add(t.len).filter(|&e| e <= file_size);
        match end {
            Some(end) if t.offset >= prev_end && t.name.len() <= 4096 => prev_end = end,
            _ => return Err(format!("tensor {:?} has a bad byte range or name", t.name)),
        }
    }
    Ok(())
}

/// The digest of a whole version: BLAKE3 over, for each file in byte order of its path,
/// `path \0 size-in-decimal \0 digest-hex \n`.
pub fn version_checksum(files: &[FileEntry]) -> Digest {
    let mut sorted: Vec<&FileEntry> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    let mut h = blake3::Hasher::new();
    for f in sorted {
        h.update(f.path.as_bytes());
        h.update(b"\0");
        h.update(f.size.to_string().as_bytes());
        h.update(b"\0");
        h.update(f.digest.to_hex().as_bytes());
        h.update(b"\n");
    }
    h.finalize().into()
}

/// First path segment reserved for mvault's bookkeeping inside a pull target
/// (`<target>/.mvault/<model>.json`): no file of a version may live under it.
pub const RESERVED_SEGMENT: &str = ".mvault";

/// Refuses any path that could escape the target directory, is not in normal form, or lies
/// under the reserved [`RESERVED_SEGMENT`].
pub fn validate_path(path: &str) -> Result<(), Error> {
    let bad = |reason| {
        Err(Error::UnsafePath {
            path: path.chars().take(200).collect(),
            reason,
        })
    };
    if path.is_empty() {
        return bad("empty path");
    }
    if path.len() > 4096 {
        return bad("longer than 4096 bytes");
    }
    if path.starts_with('/') {
        return bad("absolute path");
    }
    if path.contains('\\') {
        return bad("backslash in path");
    }
    if path.chars().any(|c| c.is_control()) {
        return bad("control character in path");
    }
    if path.len() >= 2 && path.as_bytes()[1] == b':' {
        return bad("drive-letter path");
    }
    if path.split('/').next() == Some(RESERVED_SEGMENT) {
        return bad("'.mvault' is reserved for mvault's own records in a pull target");
    }
    for seg in path.split('/') {
        match seg {
            "" => return bad("empty path segment"),
            "." | ".." => return bad("'.' or '..' segment"),
            _ if seg.len() > 255 => return bad("segment longer than 255 bytes"),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: &[u8]) -> FileEntry {
        FileEntry {
            path: path.into(),
            size: data.len() as u64,
            digest: Digest::of(data),
            chunks: if data.is_empty() {
                vec![]
            } else {
                vec![ChunkRef {
                    id: Digest::of(data),
                    size: data.len() as u64,
                    pack: None,
                }]
            },
            layout: None,
        }
    }

    pub(crate) fn sample(files: Vec<FileEntry>) -> Manifest {
        Manifest {
            format: FORMAT,
            model_name: "bert".into(),
            version: "v1.0.0".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            created_by: Origin::default(),
            description: String::new(),
            performance_metrics: Map::new(),
            training_config: Map::new(),
            tags: BTreeMap::new(),
            extra: Map::new(),
            file_size: files.iter().map(|f| f.size).sum(),
            checksum: version_checksum(&files),
            chunking: Chunking {
                algorithm: "fastcdc-2020".into(),
                min_bytes: 1,
                avg_bytes: 2,
                max_bytes: 3,
                tensor: None,
            },
            files,
        }
    }

    #[test]
    fn accepts_normal_paths() {
        for p in [
            "model.pt",
            "a/b/c.bin",
            "weird name.json",
            "..x",
            "x..",
            "a/.hidden",
            "a/.mvault/x",
            ".mvaultx",
        ] {
            validate_path(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        }
    }

    #[test]
    fn rejects_hostile_paths() {
        for p in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            "C:evil",
            "a\nb",
            "a\0b",
            ".",
            ".mvault",
            ".mvault/x.json",
        ] {
            assert!(validate_path(p).is_err(), "{p:?} accepted");
        }
    }

    #[test]
    fn round_trip_and_validation() {
        let m = sample(vec![file("a.bin", b"hello"), file("d/e.txt", b"")]);
        let back = Manifest::from_json(&m.to_json()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn rejects_clashes_and_inconsistency() {
        let m = sample(vec![file("a", b"x"), file("a/b", b"y")]);
        assert!(matches!(m.validate(), Err(Error::PathClash { .. })));
        let m = sample(vec![file("a", b"x"), file("a", b"x")]);
        assert!(matches!(m.validate(), Err(Error::PathClash { .. })));

        let mut m = sample(vec![file("a", b"xyz")]);
        m.files[0].size = 4;
        m.file_size = 4;
        assert!(matches!(m.validate(), Err(Error::Inconsistent { .. })));

        let mut m = sample(vec![file("a", b"xyz")]);
        m.checksum = Digest::of(b"other");
        assert!(m.validate().is_err());

        let mut m = sample(vec![file("ok", b"1")]);
        m.files[0].path = "../../escape".into();
        m.checksum = version_checksum(&m.files);
        assert!(matches!(
            Manifest::from_json(&m.to_json()),
            Err(Error::UnsafePath { .. })
        ));
    }

    #[test]
    fn refuses_unknown_format() {
        let mut m = sample(vec![]);
        m.format = 99;
        assert!(matches!(
            Manifest::from_json(&m.to_json()),
            Err(Error::UnsupportedFormat(99))
        ));
    }

    #[test]
    fn checksum_is_order_independent() {
        let a = file("a", b"1");
        let b = file("b", b"2");
        assert_eq!(
            version_checksum(&[a.clone(), b.clone()]),
            version_checksum(&[b, a])
        );
    }
}
