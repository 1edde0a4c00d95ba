//! Sync: copy versions from one remote to another (backup to another region or cloud).
//!
//! For each selected version the destination lacks: every chunk the destination lacks is read
//! from the source, verified against its name, and written as is (re-sealed with the
//! destination's key when either vault is encrypted: the key-rotation path); then the manifest
//! is created create-only, then its signature object if it has one. Versions already on the
//! destination with the source's content (version checksum) are skipped without reading their
//! chunks, so re-running a finished sync copies nothing; one there with other content is left
//! as it is and reported ([`SyncReport::differs`]).
//! With trusted keys, a version whose signature on the source fails the check (`crate::trust`)
//! stops the sync before any of its chunks is copied.
//!
//! gc safety on the destination, as for a push (`docs/FORMAT.md`, "Deletion and gc"), through
//! the same steps ([`super::publish`]), once per version: the destination's pending gc records
//! are read when the version's copy starts, a chunk they list is copied again even if
//! present, and once [`crate::remote::SWEEP_BOUND`] has passed after the last such copy, each
//! is checked and copied once more if a racing sweep deleted it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::publish::{self, Rewrites};
use super::{Error, Result, Stats, Summary, TransferOptions, cpu};
use crate::chunk;
use crate::manifest::{ChunkRef, Manifest};
use crate::remote::{ErrorKind, Pending, Remote, manifest_key, signature_key};
use crate::trust::TrustedKeys;
use crate::version::{ModelName, Selector, Version};

/// What a sync did.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// `name@version` created on the destination.
    pub copied: Vec<String>,
    /// `name@version` already present on the destination, with the source's content.
    pub present: Vec<String>,
    /// `name@version` the destination holds with other content (another version checksum,
    /// or a manifest it cannot read): left as they are, since versions are immutable; the
    /// CLI exits 4 when there are any.
    pub differs: Vec<String>,
    pub summary: Summary,
}

/// What the destination holds of a version ([`presence`]).
enum Presence {
    Absent,
    /// Its manifest, with the source's version checksum.
    Same,
    /// Its manifest, with other content (or unreadable there): the reason.
    Differs(String),
}

/// Copies `name[@selector]` (or every model when `name` is `None`) from `src` to `dst`.
pub async fn sync(
    src: &Remote,
    dst: &Remote,
    name: Option<&ModelName>,
    selector: Option<&Selector>,
    opts: &TransferOptions,
    trusted: Option<&TrustedKeys>,
) -> Result<SyncReport> {
    let started = Instant::now();
    let stats = Stats::default();
    let models = match name {
        Some(n) => vec![n.clone()],
        None => src.list_models().await?,
    };
    let cx = SyncCx {
        src,
        dst,
        opts,
        stats: &stats,
        inflight: tokio::sync::Semaphore::new(INFLIGHT_KIB),
        trusted,
    };
    let (mut copied, mut present, mut differs) = (Vec::new(), Vec::new(), Vec::new());
    for model in &models {
        for v in select_versions(src, model, selector).await? {
            let label = format!("{model}@{v}");
            match presence(src, dst, model, &v).await? {
                Presence::Absent => {
                    copy_version(&cx, model, &v).await?;
                    copied.push(label);
                }
                Presence::Same => present.push(label),
                Presence::Differs(why) => {
                    tracing::warn!(
                        "{label} exists on {} with other content than on {} ({why}); \
                         versions are immutable, so it is left as it is: rm it there to copy \
                         it again",
                        dst.name(),
                        src.name()
                    );
                    differs.push(label);
                }
            }
        }
    }
    Ok(SyncReport {
        copied,
        present,
        differs,
        summary: stats.summary(started, src.retries() + dst.retries()),
    })
}

/// What `dst` holds of `model@v`: one read that finds nothing when it lacks the version (the
/// common case of a sync); else the source's manifest is read too and their version checksums
/// compared (the files' paths, sizes and digests: a version pushed to both vaults separately,
/// say with `push --all-providers`, is the same version though its `created_at` differs).
async fn presence(src: &Remote, dst: &Remote, model: &ModelName, v: &Version) -> Result<Presence> {
    let key = manifest_key(model, v);
    let theirs = match dst.read_manifest(&key).await {
        Ok(b) => b,
        Err(e) if e.kind == ErrorKind::NotFound => return Ok(Presence::Absent),
        Err(e) => return Err(e.into()),
    };
    let ours = Manifest::from_json(&src.read_manifest(&key).await?)
        .map_err(|e| Error::Integrity(format!("{key} on {}: {e}", src.name())))?;
    Ok(match Manifest::from_json(&theirs) {
        Ok(m) if m.checksum == ours.checksum => Presence::Same,
        Ok(_) => Presence::Differs("another version checksum".into()),
        Err(e) => Presence::Differs(format!("its manifest there does not read: {e}")),
    })
}

async fn select_versions(
    src: &Remote,
    model: &ModelName,
    selector: Option<&Selector>,
) -> Result<Vec<Version>> {
    let all = src.list_versions(model).await?;
    if all.is_empty() {
        return Err(Error::NotFound(format!("model {model} on {}", src.name())));
    }
    match selector {
        None => Ok(all),
        Some(sel) => sel
            .pick(&all)
            .map(|v| vec![v.clone()])
            .ok_or_else(|| Error::NotFound(format!("{model}@{sel} on {}", src.name()))),
    }
}

/// What every copy of one sync shares.
struct SyncCx<'a> {
    src: &'a Remote,
    dst: &'a Remote,
    opts: &'a TransferOptions,
    stats: &'a Stats,
    /// Chunk bytes being copied (stored object and its decoded check), in KiB permits.
    inflight: tokio::sync::Semaphore,
    /// Signers required of every copied version (`None`: signatures are copied unchecked).
    trusted: Option<&'a TrustedKeys>,
}

/// Bytes of chunks being copied at once (64 MiB: a chunk object and its decoded plaintext
/// each count), whatever `jobs` allows: up to 16 MiB chunks, 64 at once, would be 2 GiB.
const INFLIGHT_KIB: usize = 64 * 1024;

async fn copy_version(cx: &SyncCx<'_>, model: &ModelName, v: &Version) -> Result<()> {
    let (src, dst) = (cx.src, cx.dst);
    let key = manifest_key(model, v);
    let raw = src.read_manifest(&key).await?;
    let m = Manifest::from_json(&raw)
        .map_err(|e| Error::Integrity(format!("{key} on {}: {e}", src.name())))?;
    m.expect_identity(model, v)?;
    let sig_key = signature_key(model, v);
    let signature = match src.read(&sig_key).await {
        Ok(b) => Some(b),
        Err(e) if e.kind == ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(keys) = cx.trusted {
        let label = format!("{model}@{}", m.version);
        let Some(sig) = &signature else {
            return Err(Error::Trust(crate::trust::Error::Unsigned(label)));
        };
        crate::trust::verify(sig, &m.to_json(), &m, keys, &label)?;
    }
    // The destination's records as of now: read again for every version (module text).
    let pending = publish::begin(dst, (model, v), cx.opts.jobs, false).await?;
    let rewrites = Mutex::new(Rewrites::default());
    let chunks = m.unique_chunks();
    futures::stream::iter(chunks.iter().cloned())
        .map(|c| copy_chunk(cx, c, &pending, &rewrites))
        .buffer_unordered(cx.opts.jobs.max(1))
        .try_collect::<()>()
        .await?;
    let refs: HashMap<_, _> = chunks.into_iter().map(|c| (c.id, c)).collect();
    let write_again = |id| transfer_chunk(cx, refs[&id].clone()); // rewrites are the manifest's
    publish::publish(
        dst,
        (model, v),
        (raw, signature),
        rewrites.into_inner().expect("rewrites"),
        cx.opts.jobs,
        write_again,
    )
    .await
}

/// Copies `c` unless the destination has it with the source's size and no pending gc record
/// (`pending`) lists it; a listed chunk is copied whatever the destination has, and noted in
/// `rewrites`.
async fn copy_chunk(
    cx: &SyncCx<'_>,
    c: ChunkRef,
    pending: &Pending,
    rewrites: &Mutex<Rewrites>,
) -> Result<()> {
    let (src, dst) = (cx.src, cx.dst);
    let recorded = pending.chunks.contains(&dst.stored_id(&c.id));
    // The destination always gets loose chunks (readers fall back to them when a manifest's
    // pack is absent); one it has with the source's encoded size is kept.
    let src_len = || async {
        match c.pack {
            Some(p) if src.key_check().is_none() => Ok::<_, Error>(Some(p.len)),
            _ => Ok(src.chunk_size(&c.id).await?),
        }
    };
    if !recorded
        && let Some(have) = dst.chunk_size(&c.id).await?
        && src_len().await? == Some(have)
    {
        Stats::add(&cx.stats.chunks_reused, 1);
        return Ok(());
    }
    transfer_chunk(cx, c.clone()).await?;
    if recorded {
        Rewrites::note(rewrites, [c.id]);
    }
    Ok(())
}

/// Reads chunk `c` from the source, verifies it against its name and writes it as is.
async fn transfer_chunk(cx: &SyncCx<'_>, c: ChunkRef) -> Result<()> {
    let (src, dst, opts, stats) = (cx.src, cx.dst, cx.opts, cx.stats);
    let kib = (2 * c.size).div_ceil(1024).min(INFLIGHT_KIB as u64) as u32;
    let _budget = cx.inflight.acquire_many(kib).await.expect("never closed");
    let stored = src.read_chunk_ref(&c).await.map_err(|e| match e.kind {
        ErrorKind::NotFound => {
            Error::Integrity(format!("chunk {} is missing on {}", c.id, src.name()))
        }
        _ => e.into(),
    })?;
    let (id, check) = (c.id, stored.clone());
    cpu(move || chunk::decode(&id, &check))
        .await
        .map_err(|e| Error::Integrity(format!("chunk {} on {}: {e}", c.id, src.name())))?;
    if let Some(rate) = &opts.rate {
        rate.acquire(stored.len() as u64).await;
    }
    let len = stored.len() as u64;
    dst.write_chunk(&c.id, Bytes::clone(&stored)).await?;
    Stats::add(&stats.chunks_new, 1);
    Stats::add(&stats.bytes_remote, len);
    Stats::add(&stats.bytes_local, c.size);
    Ok(())
}
