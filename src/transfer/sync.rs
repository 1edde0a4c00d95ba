//! Sync: copy versions from one remote to another (backup to another region or cloud).
//!
//! For each selected version the destination lacks: every chunk the destination lacks is read
//! from the source, verified against its name, and written as is; then the manifest is
//! created create-only. Versions already on the destination are skipped without reading
//! their chunks, so re-running a finished sync copies nothing.

use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::{Error, Result, Stats, Summary, TransferOptions, cpu};
use crate::chunk;
use crate::manifest::{ChunkRef, Manifest};
use crate::remote::{ErrorKind, Remote, chunk_key, manifest_key};
use crate::version::{ModelName, Selector, Version};

/// What a sync did.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// `name@version` created on the destination.
    pub copied: Vec<String>,
    /// `name@version` already present on the destination.
    pub present: Vec<String>,
    pub summary: Summary,
}

/// Copies `name[@selector]` (or every model when `name` is `None`) from `src` to `dst`.
pub async fn sync(
    src: &Remote,
    dst: &Remote,
    name: Option<&ModelName>,
    selector: Option<&Selector>,
    opts: &TransferOptions,
) -> Result<SyncReport> {
    let started = Instant::now();
    let stats = Stats::default();
    let models = match name {
        Some(n) => vec![n.clone()],
        None => src.list_models().await?,
    };
    let (mut copied, mut present) = (Vec::new(), Vec::new());
    for model in &models {
        for v in select_versions(src, model, selector).await? {
            let label = format!("{model}@{v}");
            if dst.size_of(&manifest_key(model, &v)).await?.is_some() {
                present.push(label);
                continue;
            }
            copy_version(src, dst, model, &v, opts, &stats).await?;
            copied.push(label);
        }
    }
    Ok(SyncReport {
        copied,
        present,
        summary: stats.summary(started, src.retries() + dst.retries()),
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

async fn copy_version(
    src: &Remote,
    dst: &Remote,
    model: &ModelName,
    v: &Version,
    opts: &TransferOptions,
    stats: &Stats,
) -> Result<()> {
    let key = manifest_key(model, v);
    let raw = src.read(&key).await?;
    let m = Manifest::from_json(&raw)
        .map_err(|e| Error::Integrity(format!("{key} on {}: {e}", src.name())))?;
    m.expect_identity(model, v)?;
    futures::stream::iter(m.unique_chunks())
        .map(|c| copy_chunk(src, dst, c, opts, stats))
        .buffer_unordered(opts.jobs.max(1))
        .try_collect::<()>()
        .await?;
    match dst.create_only(&key, raw).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind == ErrorKind::Conflict => Err(Error::VersionExists {
            version: format!("{model}@{v}"),
            remote: dst.name().to_string(),
        }),
        Err(e) => Err(e.into()),
    }
}

async fn copy_chunk(
    src: &Remote,
    dst: &Remote,
    c: ChunkRef,
    opts: &TransferOptions,
    stats: &Stats,
) -> Result<()> {
    let key = chunk_key(&c.id);
    if let Some(have) = dst.size_of(&key).await?
        && src.size_of(&key).await? == Some(have)
    {
        Stats::add(&stats.chunks_reused, 1);
        return Ok(());
    }
    let stored = src.read(&key).await.map_err(|e| match e.kind {
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
    dst.write(&key, Bytes::clone(&stored)).await?;
    Stats::add(&stats.chunks_new, 1);
    Stats::add(&stats.bytes_remote, len);
    Stats::add(&stats.bytes_local, c.size);
    Ok(())
}
