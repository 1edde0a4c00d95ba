//! `verify`: re-read remote chunks and check them against their names.
//!
//! Every distinct chunk referenced by the selected versions is read once (at most
//! [`Vault::jobs`] at a time), decoded and hashed on the blocking pool. A chunk that is
//! absent is *missing*; one whose header, length, payload or BLAKE3 hash is wrong is
//! *damaged*. For each, the report names the versions and files it breaks. Manifests that
//! cannot be parsed are reported too. Only remote failures (unreachable, denied) are errors.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::{Error, Result, all_versions, each_manifest};
use crate::chunk::{self, DecodeError, Digest};
use crate::error::Category;
use crate::manifest::ChunkRef;
use crate::remote::{ErrorKind, Remote};
use crate::transfer::cpu;
use crate::transfer::pull::INFLIGHT_KIB;
use crate::vault::Vault;
use crate::version::{ModelName, Version};

/// What is wrong with a chunk object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Damage {
    /// No object at the chunk's key.
    Missing,
    /// The plaintext does not hash to the chunk's name.
    HashMismatch,
    /// The object is shorter than its header says (or shorter than a header).
    Truncated,
    /// Bad magic number, unknown codec or an impossible declared length.
    BadHeader,
    /// The compressed payload does not decompress.
    CorruptPayload,
    /// The object could not be read as a chunk at all: larger than any legal chunk
    /// object, or (local vaults) a symlink, FIFO, device or directory.
    Unreadable,
}

impl Damage {
    fn of(e: &DecodeError) -> Damage {
        match e {
            DecodeError::Truncated(_) | DecodeError::LengthMismatch { .. } => Damage::Truncated,
            DecodeError::BadMagic | DecodeError::UnknownCodec(_) | DecodeError::TooLarge(_) => {
                Damage::BadHeader
            }
            DecodeError::Decompress(_) | DecodeError::BadPlanes(_) => Damage::CorruptPayload,
            DecodeError::HashMismatch { .. } => Damage::HashMismatch,
        }
    }
}

/// A version that needs a bad chunk, and which of its files do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChunkUse {
    /// `name@version`.
    pub version: String,
    /// Paths of the files that contain the chunk.
    pub files: Vec<String>,
}

/// A missing or damaged chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChunkProblem {
    pub chunk: Digest,
    pub key: String,
    pub damage: Damage,
    /// Human-readable detail (the decoder's message).
    pub detail: String,
    /// Selected versions that need the chunk, sorted.
    pub used_by: Vec<ChunkUse>,
}

/// A manifest that could not be read as a valid manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestProblem {
    /// `name@version`.
    pub version: String,
    pub detail: String,
}

/// Outcome of [`verify`] (`verify --json` prints it).
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Versions whose manifest was read and parsed.
    pub versions_checked: u64,
    /// Distinct chunks those versions reference.
    pub chunks_referenced: u64,
    /// Chunks actually read (fewer than referenced when sampling).
    pub chunks_checked: u64,
    /// Stored bytes read.
    pub bytes_read: u64,
    /// The sampled fraction, if sampling.
    pub sample: Option<f64>,
    /// The seed of the sample: the same seed over the same chunks checks the same ones.
    pub seed: Option<u64>,
    pub missing: Vec<ChunkProblem>,
    pub damaged: Vec<ChunkProblem>,
    pub bad_manifests: Vec<ManifestProblem>,
    /// `name@version` of every version found broken, sorted.
    pub broken_versions: Vec<String>,
}

impl VerifyReport {
    /// True when nothing is missing or damaged (exit 0 rather than 5).
    pub fn is_ok(&self) -> bool {
        self.missing.is_empty() && self.damaged.is_empty() && self.bad_manifests.is_empty()
    }
}

/// A random part of the chunks to check (`verify --sample P --seed N`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Each distinct chunk is checked with this probability, in (0, 1].
    pub fraction: f64,
    /// Seeds the choice: the same seed over the same set of chunks picks the same chunks, so
    /// a finding can be reproduced.
    pub seed: u64,
}

/// Verifies one version (`name` and `version`), all versions of `name` (`version` = None), or
/// every version in the vault (both None), or a [`Sample`] of their chunks. `NotFound` if an
/// explicitly named model or version does not exist.
pub async fn verify(
    vault: &Vault,
    name: Option<&ModelName>,
    version: Option<&Version>,
    sample: Option<Sample>,
) -> Result<VerifyReport> {
    if let Some(Sample { fraction: p, .. }) = sample
        && !(p > 0.0 && p <= 1.0)
    {
        return Err(Error::Options(format!(
            "sample fraction {p} must be in (0, 1]"
        )));
    }
    let explicit = version.is_some();
    let selected = select(vault, name, version).await?;
    let mut report = VerifyReport {
        sample: sample.map(|s| s.fraction),
        seed: sample.map(|s| s.seed),
        ..Default::default()
    };
    let mut chunks = HashSet::new();
    let mut good = Vec::new();
    each_manifest(vault, selected, |n, v, r| {
        match r {
            Ok(m) => {
                chunks.extend(m.files.into_iter().flat_map(|f| f.chunks));
                good.push((n, v));
            }
            Err(e) if e.category() == Category::Integrity => {
                report.bad_manifests.push(ManifestProblem {
                    version: format!("{n}@{v}"),
                    detail: e.to_string(),
                })
            }
            Err(e) if e.is_not_found() && !explicit => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    })
    .await?;
    report.versions_checked = good.len() as u64;
    // Each distinct place a chunk is stored (loose, or a pack range) is checked.
    report.chunks_referenced = chunks.iter().map(|c| c.id).collect::<HashSet<_>>().len() as u64;
    let mut ids: Vec<ChunkRef> = chunks.into_iter().collect();
    ids.sort_by_key(|c| (c.id, c.pack.map(|p| (p.id, p.offset))));
    if let Some(Sample { fraction, seed }) = sample {
        let mut rng = fastrand::Rng::with_seed(seed);
        ids.retain(|_| rng.f64() < fraction);
    }
    report.chunks_checked = ids.len() as u64;
    check_chunks(vault.remote(), ids, vault.jobs(), &mut report).await?;
    attribute(vault, good, &mut report).await?;
    Ok(report)
}

/// The versions to verify, sorted.
async fn select(
    vault: &Vault,
    name: Option<&ModelName>,
    version: Option<&Version>,
) -> Result<Vec<(ModelName, Version)>> {
    match (name, version) {
        (Some(n), Some(v)) => Ok(vec![(n.clone(), v.clone())]),
        (Some(n), None) => Ok(vault
            .versions(n)
            .await?
            .into_iter()
            .map(|v| (n.clone(), v))
            .collect()),
        (None, None) => all_versions(vault.remote()).await,
        (None, Some(v)) => Err(Error::Options(format!(
            "verify: version {v} needs a model name"
        ))),
    }
}

/// Reads and decodes `ids`, `jobs` at a time and within a pull's plaintext budget
/// ([`INFLIGHT_KIB`], 48 MiB), recording problems in `report`: without it, 16 reads of 16 MiB
/// chunks and their decodings held 640 MiB.
async fn check_chunks(
    remote: &Remote,
    ids: Vec<ChunkRef>,
    jobs: usize,
    report: &mut VerifyReport,
) -> Result<()> {
    let budget = tokio::sync::Semaphore::new(INFLIGHT_KIB as usize);
    let results: Vec<(u64, Option<ChunkProblem>)> = futures::stream::iter(ids)
        .map(|id| {
            let kib = id.size.div_ceil(1024).clamp(1, INFLIGHT_KIB as u64) as u32;
            let budget = &budget;
            async move {
                let _held = budget.acquire_many(kib).await.expect("never closed");
                check_chunk(remote, id).await
            }
        })
        .buffer_unordered(jobs)
        .try_collect()
        .await?;
    for (bytes, problem) in results {
        report.bytes_read += bytes;
        match problem {
            Some(p) if p.damage == Damage::Missing => report.missing.push(p),
            Some(p) => report.damaged.push(p),
            None => {}
        }
    }
    report.missing.sort_by_key(|p| p.chunk);
    report.damaged.sort_by_key(|p| p.chunk);
    Ok(())
}

/// Reads one chunk and checks it: (stored bytes read, problem if any).
async fn check_chunk(remote: &Remote, c: ChunkRef) -> Result<(u64, Option<ChunkProblem>)> {
    let id = c.id;
    let key = match &c.pack {
        Some(p) => format!(
            "{} bytes {}..{}",
            crate::pack::pack_key(&p.id),
            p.offset,
            p.offset + p.len
        ),
        None => remote.chunk_object_key(&id),
    };
    let problem = |damage, detail: String| ChunkProblem {
        chunk: id,
        key: key.clone(),
        damage,
        detail,
        used_by: Vec::new(),
    };
    let stored = match remote.read_chunk_ref(&c).await {
        Ok(b) => b,
        Err(e) if e.kind == ErrorKind::NotFound => {
            return Ok((0, Some(problem(Damage::Missing, "not found".into()))));
        }
        Err(e) if e.kind == ErrorKind::Integrity => {
            return Ok((0, Some(problem(Damage::Unreadable, e.message.clone()))));
        }
        Err(e) => return Err(e.into()),
    };
    let n = stored.len() as u64;
    let bad = cpu(move || chunk::decode(&id, &stored).err()).await;
    Ok((n, bad.map(|e| problem(Damage::of(&e), e.to_string()))))
}

/// Fills `used_by` and `broken_versions`, re-reading the manifests of `versions` only when
/// something is wrong (so a clean run holds no manifest in memory).
async fn attribute(
    vault: &Vault,
    versions: Vec<(ModelName, Version)>,
    report: &mut VerifyReport,
) -> Result<()> {
    let mut broken: BTreeSet<String> = report
        .bad_manifests
        .iter()
        .map(|p| p.version.clone())
        .collect();
    let bad: HashSet<Digest> = report
        .missing
        .iter()
        .chain(&report.damaged)
        .map(|p| p.chunk)
        .collect();
    if !bad.is_empty() {
        let mut uses: BTreeMap<Digest, Vec<ChunkUse>> = BTreeMap::new();
        each_manifest(vault, versions, |n, v, r| {
            let Some(m) = super::present(r)? else {
                return Ok(());
            };
            let mut files: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
            for f in &m.files {
                for c in f.chunks.iter().filter(|c| bad.contains(&c.id)) {
                    let paths = files.entry(c.id).or_default();
                    if paths.last() != Some(&f.path) {
                        paths.push(f.path.clone());
                    }
                }
            }
            for (id, files) in files {
                uses.entry(id).or_default().push(ChunkUse {
                    version: format!("{n}@{v}"),
                    files,
                });
            }
            Ok(())
        })
        .await?;
        for p in report.missing.iter_mut().chain(report.damaged.iter_mut()) {
            p.used_by = uses.remove(&p.chunk).unwrap_or_default();
            p.used_by.sort_by(|a, b| a.version.cmp(&b.version));
            broken.extend(p.used_by.iter().map(|u| u.version.clone()));
        }
    }
    report.broken_versions = broken.into_iter().collect();
    Ok(())
}
