//! Publishing one version on a vault: the steps push and sync share (`docs/FORMAT.md`, "Read
//! and write ordering" and "Deletion and gc").
//!
//! A writer calls [`begin`] before it sends any chunk of the version: it fails if the version
//! exists, deletes a stale signature object of the version, and returns what the vault's gc
//! pending records list. The writer then sends every chunk the vault lacks, and every chunk a
//! record lists whatever the vault has, noting the latter in [`Rewrites`]. [`publish`] then
//! creates the manifest (create-only), writes the version's signature object if it has one,
//! and heals: once [`SWEEP_BOUND`] has passed after the last rewrite, each rewritten chunk
//! that a racing sweep deleted is written again.
//!
//! Signature objects: only the writer that created a version's manifest writes its signature
//! (after the manifest), so a signature object of a version whose manifest does not exist is
//! garbage (left by an `rm` interrupted between its two deletes, by an older mvault's `rm`, or
//! planted). [`begin`] deletes it, so that a version is never published beside a signature of
//! other content, and [`publish`] then creates the new signature create-only.
//!
//! Invariant (the gc guarantee of FORMAT.md): a version whose manifest is created less than
//! one grace period after its own [`begin`] has every chunk stored when [`publish`] returns
//! `Ok`. The guarantee is per version: a writer of several versions (sync) calls [`begin`]
//! for each, so that every version's records are at most one version's copy old.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::{Error, Result};
use crate::chunk::Digest;
use crate::remote::{
    Created, ErrorKind, Pending, Remote, SWEEP_BOUND, manifest_key, signature_key,
};
use crate::version::{ModelName, Version};

/// Chunks a writer of one version wrote again because a gc pending record listed them.
#[derive(Debug, Default)]
pub(super) struct Rewrites {
    pub(super) ids: Vec<Digest>,
    /// When the last of those writes finished.
    last: Option<Instant>,
}

impl Rewrites {
    /// Notes `ids` as written again just now (nothing, if there are none).
    pub(super) fn note(rewrites: &Mutex<Rewrites>, ids: impl IntoIterator<Item = Digest>) {
        let mut ids = ids.into_iter().peekable();
        if ids.peek().is_some() {
            let mut r = rewrites.lock().expect("rewrites");
            r.ids.extend(ids);
            r.last = Some(Instant::now());
        }
    }
}

/// The error of a version that exists (or that another writer created first).
fn exists(remote: &Remote, name: &ModelName, version: &Version) -> Error {
    Error::VersionExists {
        version: format!("{name}@{version}"),
        remote: remote.name().to_string(),
    }
}

/// Before any chunk of `name@version` is sent (push steps 1 and 2): fails with
/// [`Error::VersionExists`] if its manifest exists; deletes its signature object if one
/// exists without the manifest (module text); returns what the gc pending records list now.
/// The three reads go out at once.
///
/// With `dry_run` (a push that sends nothing) the stale signature is only reported.
pub(super) async fn begin(
    remote: &Remote,
    (name, version): (&ModelName, &Version),
    jobs: usize,
    dry_run: bool,
) -> Result<Pending> {
    let key = manifest_key(name, version);
    let sig_key = signature_key(name, version);
    let (manifest, signature, pending) = tokio::join!(
        remote.size_of(&key),
        remote.size_of(&sig_key),
        crate::remote::pending_chunks(remote, jobs)
    );
    if manifest?.is_some() {
        return Err(exists(remote, name, version));
    }
    // The manifest is stat'ed again after the signature was seen: the first stat may have
    // been answered before another writer created the manifest and then its signature.
    if signature?.is_some() {
        if remote.size_of(&key).await?.is_some() {
            return Err(exists(remote, name, version));
        }
        let what = "a signature object without its version's manifest (left by an \
                    interrupted or older rm)";
        if dry_run {
            tracing::warn!("would delete {sig_key} on {}: {what}", remote.name());
            return Ok(pending?);
        }
        tracing::warn!("deleting {sig_key} on {}: {what}", remote.name());
        remote.delete(&sig_key).await.map_err(|mut e| {
            if e.kind == ErrorKind::PermissionDenied {
                e.message = format!(
                    "{}; it is {what}: have it deleted by an identity allowed to delete (the \
                     admin policy), then push {name}@{version} again",
                    e.message
                );
            }
            e
        })?;
    }
    Ok(pending?)
}

/// After every chunk of `name@version` is stored (push steps 4 to 6): creates its manifest
/// `json` create-only ([`Error::VersionExists`] if another writer created it first), then
/// creates its signature object `signature`, if any (create-only: [`begin`] deleted a stale
/// one), then heals: once [`SWEEP_BOUND`] (plus
/// a second for the two hosts' clock rates, assumption A3) has passed since the last
/// rewrite, stats each rewritten chunk and calls `write_again` for each one a racing sweep
/// deleted (its stat came before our rewrite, its delete after). A sweep deletes nothing
/// more than `SWEEP_BOUND` after a stat that saw the chunk older than its record, so one
/// check suffices. A failed signature write is returned after the heal, which it must not
/// skip: the version is published either way.
pub(super) async fn publish<Fut>(
    remote: &Remote,
    (name, version): (&ModelName, &Version),
    (json, signature): (Bytes, Option<Bytes>),
    rewrites: Rewrites,
    jobs: usize,
    write_again: impl Fn(Digest) -> Fut,
) -> Result<()>
where
    Fut: Future<Output = Result<()>>,
{
    match remote
        .create_manifest(&manifest_key(name, version), json)
        .await
    {
        Ok(Created::New | Created::AlreadyIdentical) => {}
        Err(e) if e.kind == ErrorKind::Conflict => return Err(exists(remote, name, version)),
        Err(e) => return Err(e.into()),
    }
    let signed = match signature {
        Some(sig) => remote
            .create_only(&signature_key(name, version), sig)
            .await
            .map(drop),
        None => Ok(()),
    };
    heal(
        remote,
        &format!("{name}@{version}"),
        rewrites,
        jobs,
        write_again,
    )
    .await?;
    Ok(signed?)
}

async fn heal<Fut>(
    remote: &Remote,
    label: &str,
    rewrites: Rewrites,
    jobs: usize,
    write_again: impl Fn(Digest) -> Fut,
) -> Result<()>
where
    Fut: Future<Output = Result<()>>,
{
    let Some(last) = rewrites.last else {
        return Ok(());
    };
    let wait = SWEEP_BOUND + Duration::from_secs(1);
    tokio::time::sleep((last + wait).saturating_duration_since(Instant::now())).await;
    let write_again = &write_again;
    let ids: HashSet<Digest> = rewrites.ids.into_iter().collect();
    let healed: Vec<bool> = futures::stream::iter(ids)
        .map(|id| async move {
            if remote.chunk_size(&id).await?.is_some() {
                return Ok(false);
            }
            write_again(id).await?;
            Ok::<_, Error>(true)
        })
        .buffer_unordered(jobs.max(1))
        .try_collect()
        .await?;
    let n = healed.iter().filter(|h| **h).count();
    if n > 0 {
        tracing::warn!("{label}: wrote again {n} chunks that a concurrent gc deleted");
    }
    Ok(())
}
