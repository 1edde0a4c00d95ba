//! Model lifecycle: `verify`, `gc`, `prune` and `usage`, over a [`Vault`] (aliases belong to
//! the vault: resolving a selector needs them).
//!
//! Every operation reads manifests from the remote (never the cache), so it sees removals.
//! Errors are [`Error`]: the vault's (`NotFound` exit 3, `Integrity` exit 5), bad options
//! (exit 2), damage in the layout (exit 5). Damage found by `verify` is a report, not an error.
//! Requests in flight are bounded by [`Vault::jobs`].
//!
//! Operations that delete (`gc`, `prune`) never act on a partial view: any manifest or alias
//! that cannot be listed, read or parsed aborts them before anything is deleted.

mod gc;
mod usage;
mod verify;

#[cfg(test)]
mod tests;

use futures::StreamExt;

pub use gc::{DEFAULT_GRACE, GcOptions, GcReport, MIN_SAFE_GRACE, gc, prune};
pub use usage::{CostAlert, CostEstimate, ModelUsage, PRICES, Price, UsageReport, usage};
pub use verify::{ChunkProblem, ChunkUse, Damage, ManifestProblem, Sample, VerifyReport, verify};

use crate::chunk::Digest;
use crate::error::Category;
use crate::manifest::Manifest;
use crate::remote::{self, Remote};
use crate::vault::{self, Vault};
use crate::version::{ModelName, Version};

/// Why a lifecycle operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Vault(#[from] vault::Error),
    #[error(transparent)]
    Remote(#[from] remote::Error),
    #[error(transparent)]
    Pending(#[from] remote::PendingError),
    /// The vault's layout holds something mvault never writes (the text names it).
    #[error("integrity check failed: {0}")]
    Integrity(String),
    /// Options that make no sense or are unsafe (the text names the remedy).
    #[error("{0}")]
    Options(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The category of this failure (exit code, exception class).
    pub fn category(&self) -> Category {
        match self {
            Error::Vault(e) => e.category(),
            Error::Remote(e) => e.category(),
            Error::Pending(e) => e.category(),
            Error::Integrity(_) => Category::Integrity,
            Error::Options(_) => Category::Usage,
        }
    }
}

/// The digest named by a chunk key `chunks/<2 hex>/<64 hex>`; `None` for any other key.
fn chunk_id(key: &str) -> Option<Digest> {
    let (prefix, hex) = key.strip_prefix("chunks/")?.split_once('/')?;
    let id: Digest = hex.parse().ok()?;
    (prefix.len() == 2 && hex.starts_with(prefix)).then_some(id)
}

/// Every `(model, version)` that has a manifest, sorted. A key under some
/// `models/<name>/versions/` that is not `<semver>.json` under a valid model name is an
/// error, not skipped: callers that delete must see every manifest.
async fn all_versions(remote: &Remote) -> Result<Vec<(ModelName, Version)>> {
    let mut out = Vec::new();
    for (key, _) in remote.list_recursive("models/").await? {
        let parts: Vec<&str> = key.trim_start_matches("models/").split('/').collect();
        let [name, "versions", file] = parts[..] else {
            continue;
        };
        let parsed = file
            .strip_suffix(".json")
            .and_then(|v| Some((name.parse().ok()?, v.parse().ok()?)));
        out.push(parsed.ok_or_else(|| {
            Error::Integrity(format!(
                "unrecognized manifest key {key} on {}",
                remote.name()
            ))
        })?);
    }
    out.sort();
    Ok(out)
}

/// Reads the manifests of `versions` from the remote, [`Vault::jobs`] at a time, and hands each
/// result to `f` as it arrives (in no particular order). Stops at the first error `f` returns.
async fn each_manifest<F>(
    vault: &Vault,
    versions: Vec<(ModelName, Version)>,
    mut f: F,
) -> Result<()>
where
    F: FnMut(ModelName, Version, vault::Result<Manifest>) -> Result<()>,
{
    let reads = futures::stream::iter(versions)
        .map(|(n, v)| async move {
            let r = vault.fetch_manifest(&n, &v).await;
            (n, v, r)
        })
        .buffer_unordered(vault.jobs());
    let mut reads = std::pin::pin!(reads);
    while let Some((n, v, r)) = reads.next().await {
        f(n, v, r)?;
    }
    Ok(())
}

/// A manifest passed to [`each_manifest`], or `None` if it was removed after being listed;
/// any other failure (unreadable, corrupt) is returned as the error.
fn present(r: vault::Result<Manifest>) -> Result<Option<Manifest>> {
    match r {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}
