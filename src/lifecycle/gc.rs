//! `gc` (delete chunks no manifest refers to) and `prune` (delete old versions).
//!
//! gc is mark and sweep, in this order:
//! 1. list `chunks/` with sizes and modification times (the sweep set);
//! 2. mark: read every manifest of every model from the remote; any manifest that cannot be
//!    listed, read or parsed ABORTS gc, since deleting on a partial mark would destroy data;
//! 3. doomed = listed chunks that are unmarked and older than the grace period;
//! 4. re-list manifests and read the ones that appeared since step 2 (pushes that finished
//!    meanwhile), unmarking their chunks; then delete the rest.
//!
//! Why the grace period makes gc safe with concurrent pushes: a push uploads its chunks
//! first and writes its manifest last, so while it runs its new chunks are referenced by no
//! manifest. Those chunks are younger than the push itself; gc keeps every unreferenced chunk
//! younger than `grace` (default 24 h), so a push is safe unless it has been running longer
//! than that, in which case it is presumed dead. Listing before marking (steps 1-2) means a
//! push that completes during gc is either seen by the mark or its chunks were not listed.
//! A chunk whose store reports no modification time (the memory store) is treated as young.
//!
//! Known limit: a push reuses chunks that already exist without rewriting them. If the only
//! versions referencing such a chunk are removed (`rm`, `prune`) while that push runs, and gc
//! runs before the push writes its manifest, the chunk is old and unmarked and can be deleted
//! under the push. Step 4 narrows this window to the final deletes; `verify` detects it.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::{JOBS, aliased_versions, all_versions, chunk_id, each_manifest, present};
use crate::chunk::Digest;
use crate::remote::{ObjectInfo, manifest_key};
use crate::transfer::{Error, Result};
use crate::vault::Vault;
use crate::version::{ModelName, Version};

/// Default grace period: unreferenced chunks younger than this are kept.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 60 * 60);

/// Outcome of [`gc`] (`gc --json` prints it). Counts are of chunk objects; bytes are stored
/// (encoded) bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Chunk objects listed (keys `chunks/<2 hex>/<64 hex>`; other keys are ignored).
    pub scanned_chunks: u64,
    /// Distinct chunks referenced by at least one manifest.
    pub referenced: u64,
    /// Chunks deleted (with `dry_run`: that would be deleted).
    pub deleted: u64,
    pub bytes_deleted: u64,
    /// Unreferenced chunks kept because they are younger than the grace period, or their age
    /// is unknown.
    pub kept_young: u64,
    /// Manifests read for the mark.
    pub manifests: u64,
    pub dry_run: bool,
    pub grace_seconds: u64,
}

/// Deletes chunks that no manifest references and that are older than `grace`. With
/// `dry_run`, deletes nothing and reports what it would delete. Aborts, deleting nothing, if
/// any manifest cannot be read or parsed.
pub async fn gc(vault: &Vault, grace: Duration, dry_run: bool) -> Result<GcReport> {
    gc_at(vault, grace, dry_run, SystemTime::now()).await
}

/// [`gc`] with an explicit "now", for tests.
pub(crate) async fn gc_at(
    vault: &Vault,
    grace: Duration,
    dry_run: bool,
    now: SystemTime,
) -> Result<GcReport> {
    let listed = vault.remote().list_objects("chunks/").await?;
    let mut seen = HashSet::new();
    let marked = mark(vault, &mut seen).await?;
    let mut report = GcReport {
        referenced: marked.len() as u64,
        manifests: seen.len() as u64,
        dry_run,
        grace_seconds: grace.as_secs(),
        ..Default::default()
    };
    let mut doomed = Vec::new();
    for obj in listed {
        let Some(id) = chunk_id(&obj.key) else {
            continue;
        };
        report.scanned_chunks += 1;
        if marked.contains(&id) {
            continue;
        }
        if is_old(&obj, grace, now) {
            doomed.push((id, obj));
        } else {
            report.kept_young += 1;
        }
    }
    if !dry_run && !doomed.is_empty() {
        let late = mark(vault, &mut seen).await?;
        doomed.retain(|(id, _)| !late.contains(id));
        delete_all(vault, &doomed).await?;
    }
    report.deleted = doomed.len() as u64;
    report.bytes_deleted = doomed.iter().map(|(_, o)| o.size).sum();
    Ok(report)
}

/// True when `obj` was last written at least `grace` before `now`; false if unknown.
fn is_old(obj: &ObjectInfo, grace: Duration, now: SystemTime) -> bool {
    obj.last_modified
        .and_then(|t| now.duration_since(t).ok())
        .is_some_and(|age| age >= grace)
}

/// Chunks referenced by every manifest not yet in `seen` (manifest keys), adding them to
/// `seen`. Fails on any manifest that cannot be read or parsed; one removed since the
/// listing is skipped (its chunks are garbage anyway).
async fn mark(vault: &Vault, seen: &mut HashSet<String>) -> Result<HashSet<Digest>> {
    let fresh: Vec<(ModelName, Version)> = all_versions(vault.remote())
        .await?
        .into_iter()
        .filter(|(n, v)| !seen.contains(&manifest_key(n, v)))
        .collect();
    let mut marked = HashSet::new();
    each_manifest(vault, fresh, |n, v, r| {
        if let Some(m) = present(r)? {
            marked.extend(m.files.iter().flat_map(|f| f.chunks.iter().map(|c| c.id)));
            seen.insert(manifest_key(&n, &v));
        }
        Ok(())
    })
    .await?;
    Ok(marked)
}

async fn delete_all(vault: &Vault, doomed: &[(Digest, ObjectInfo)]) -> Result<()> {
    let remote = vault.remote();
    futures::stream::iter(doomed)
        .map(|(_, o)| async move { remote.delete(&o.key).await.map_err(Error::from) })
        .buffer_unordered(JOBS)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Removes all but the newest `keep` versions of `name` (semver order), never a version an
/// alias currently points at. Returns the versions removed (with `dry_run`: that would be),
/// ascending. Chunks are reclaimed by a later [`gc`]. Aliases are read again just before
/// deleting, so a version aliased meanwhile is spared.
pub async fn prune(
    vault: &Vault,
    name: &ModelName,
    keep: usize,
    dry_run: bool,
) -> Result<Vec<Version>> {
    let versions = vault.versions(name).await?;
    let old = versions.len().saturating_sub(keep);
    let aliased = aliased_versions(vault, name).await?;
    let mut doomed: Vec<Version> = versions[..old]
        .iter()
        .filter(|v| !aliased.contains(v))
        .cloned()
        .collect();
    if dry_run || doomed.is_empty() {
        return Ok(doomed);
    }
    let aliased = aliased_versions(vault, name).await?;
    doomed.retain(|v| !aliased.contains(v));
    for v in &doomed {
        match vault.rm(name, v).await {
            Ok(()) | Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(doomed)
}
