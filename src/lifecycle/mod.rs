//! Model lifecycle: aliases with history and rollback, `verify`, `gc`, `prune` and `usage`.
//!
//! Every operation works on the remote through a [`Vault`] and reads manifests from the remote
//! (never the cache), so it sees removals. Errors are [`transfer::Error`]: `NotFound` (exit 3),
//! `Integrity` (exit 5) and, for a lost race, a [`remote::Error`] of kind
//! [`ErrorKind::Conflict`](crate::remote::ErrorKind::Conflict) (exit 4; test with
//! [`is_conflict`]). Damage found by `verify` is a report, not an error.
//!
//! Operations that delete (`gc`, `prune`) never act on a partial view: any manifest or alias
//! that cannot be listed, read or parsed aborts them before anything is deleted.

mod alias;
mod gc;
mod usage;
mod verify;

#[cfg(test)]
mod tests;

use futures::StreamExt;

pub use alias::{
    AliasAction, AliasChange, AliasDoc, AliasEvent, AliasInfo, alias_get, alias_list,
    alias_list_lenient, alias_set, alias_target, aliased_versions, rollback,
};
pub use gc::{
    DEFAULT_GRACE, GcOptions, GcReport, MIN_SAFE_GRACE, PENDING_DIR, SWEEP_BOUND, gc,
    pending_chunks, prune,
};
pub use usage::{CostEstimate, ModelUsage, PRICES, Price, UsageReport, usage};
pub use verify::{ChunkProblem, ChunkUse, Damage, ManifestProblem, VerifyReport, verify};

use crate::chunk::Digest;
use crate::manifest::Manifest;
use crate::remote::{self, ErrorKind, Remote};
use crate::transfer::{Error, Result};
use crate::vault::Vault;
use crate::version::{ModelName, Version};

/// Requests in flight at once for manifest and chunk reads.
const JOBS: usize = 16;

/// True when `e` means another writer won a race (an alias changed concurrently); retrying
/// the operation may succeed.
pub fn is_conflict(e: &Error) -> bool {
    matches!(e, Error::Remote(r) if r.kind == ErrorKind::Conflict)
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

/// Reads the manifests of `versions` from the remote, [`JOBS`] at a time, and hands each
/// result to `f` as it arrives (in no particular order). Stops at the first error `f` returns.
async fn each_manifest<F>(
    vault: &Vault,
    versions: Vec<(ModelName, Version)>,
    mut f: F,
) -> Result<()>
where
    F: FnMut(ModelName, Version, Result<Manifest>) -> Result<()>,
{
    let reads = futures::stream::iter(versions)
        .map(|(n, v)| async move {
            let r = vault.fetch_manifest(&n, &v).await;
            (n, v, r)
        })
        .buffer_unordered(JOBS);
    let mut reads = std::pin::pin!(reads);
    while let Some((n, v, r)) = reads.next().await {
        f(n, v, r)?;
    }
    Ok(())
}

/// A manifest passed to [`each_manifest`], or `None` if it was removed after being listed;
/// any other failure (unreadable, corrupt) is returned as the error.
fn present(r: Result<Manifest>) -> Result<Option<Manifest>> {
    match r {
        Ok(m) => Ok(Some(m)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `user@host` of this process, for alias history.
fn who() -> String {
    let user = ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok())
        .unwrap_or_else(|| "unknown".into());
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    format!("{user}@{host}")
}

/// A conflict error for `key` (exit 4).
fn conflict(remote: &Remote, key: &str, message: String) -> Error {
    Error::Remote(remote::Error {
        kind: ErrorKind::Conflict,
        op: "write",
        path: key.to_string(),
        remote: remote.name().to_string(),
        message,
    })
}
