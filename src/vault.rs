//! The vault facade: one remote plus the local cache, and the operations users run on them
//! (resolve a `name@selector`, push, pull, list, versions, info, rm). The CLI is a thin layer
//! over this; other programs can use it directly.

use crate::cache::{self, Cache};
use crate::manifest::Manifest;
use crate::remote::{ErrorKind, Remote, manifest_key};
use crate::transfer::{
    self, Error, PullOutcome, PullRequest, PushRequest, Result, Summary, TransferOptions,
};
use crate::version::{ModelName, ModelRef, Selector, Version};

/// Where [`Vault::resolve`] may look for manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The cache for pinned versions, the remote otherwise (pull).
    CacheFirst,
    /// Always the remote, so removed versions are noticed (info, alias).
    Remote,
    /// Only the cache; never a request.
    Offline,
}

/// A remote vault with its local cache.
#[derive(Clone)]
pub struct Vault {
    remote: Remote,
    /// Secret-free identity of the remote, keying its cached manifests.
    remote_id: String,
    cache: Cache,
}

impl Vault {
    /// `remote_url` identifies the remote in the cache; it must not contain secrets.
    pub fn new(remote: Remote, remote_url: &str, cache: Cache) -> Vault {
        Vault {
            remote,
            remote_id: cache::remote_id(remote_url),
            cache,
        }
    }

    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    pub fn remote_id(&self) -> &str {
        &self.remote_id
    }

    /// Model names, sorted.
    pub async fn list(&self) -> Result<Vec<ModelName>> {
        Ok(self.remote.list_models().await?)
    }

    /// Versions of a model, ascending; `NotFound` if it has none.
    pub async fn versions(&self, name: &ModelName) -> Result<Vec<Version>> {
        let vs = self.remote.list_versions(name).await?;
        if vs.is_empty() {
            return Err(Error::NotFound(format!(
                "model {name} on {}",
                self.remote.name()
            )));
        }
        Ok(vs)
    }

    /// Resolves `name@selector` to a manifest. With [`Lookup::CacheFirst`] a pinned version
    /// already in the cache costs no request at all (versions are immutable).
    pub async fn resolve(&self, r: &ModelRef, lookup: Lookup) -> Result<Manifest> {
        let offline = lookup == Lookup::Offline;
        let version = match &r.selector {
            Selector::Exact(v) => v.clone(),
            Selector::Alias(a) if !offline => {
                crate::lifecycle::alias_target(self, &r.name, a).await?
            }
            sel => {
                let available = if offline {
                    self.cache.cached_versions(&self.remote_id, &r.name)
                } else {
                    self.versions(&r.name).await?
                };
                sel.pick(&available).cloned().ok_or_else(|| {
                    let place = if offline {
                        "the local cache (offline)"
                    } else {
                        self.remote.name()
                    };
                    Error::NotFound(format!(
                        "no version of {} matching {} in {place}",
                        r.name, sel
                    ))
                })?
            }
        };
        self.manifest(&r.name, &version, lookup).await
    }

    /// The manifest of an exact version, from the cache when `lookup` allows.
    pub async fn manifest(
        &self,
        name: &ModelName,
        version: &Version,
        lookup: Lookup,
    ) -> Result<Manifest> {
        if lookup != Lookup::Remote
            && let Some(m) = self.cache.load_manifest(&self.remote_id, name, version)
        {
            return Ok(m);
        }
        if lookup == Lookup::Offline {
            return Err(Error::NotFound(format!(
                "{name}@{version} in the local cache (offline); pull it once online first"
            )));
        }
        let m = self.fetch_manifest(name, version).await?;
        self.cache.save_manifest(&self.remote_id, &m, version)?;
        Ok(m)
    }

    /// Reads and validates a manifest from the remote, bypassing the cache.
    pub async fn fetch_manifest(&self, name: &ModelName, version: &Version) -> Result<Manifest> {
        let key = manifest_key(name, version);
        let bytes = match self.remote.read(&key).await {
            Ok(b) => b,
            Err(e) if e.kind == ErrorKind::NotFound => {
                return Err(Error::NotFound(format!(
                    "{name}@{version} on {}",
                    self.remote.name()
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let m = Manifest::from_json(&bytes)
            .map_err(|e| Error::Integrity(format!("manifest of {name}@{version} ({key}): {e}")))?;
        m.expect_identity(name, version)
            .map_err(|e| Error::Integrity(format!("{key}: {e}")))?;
        Ok(m)
    }

    /// Pushes a version (see [`transfer::push`]).
    pub async fn push(
        &self,
        req: &PushRequest,
        opts: &TransferOptions,
    ) -> Result<(Manifest, Summary)> {
        transfer::push(&self.remote, req, opts).await
    }

    /// Pulls a resolved version into `req.target`; `offline` uses the cache only.
    /// The version is pinned in the cache for the duration, so `cache prune` leaves it alone.
    pub async fn pull(
        &self,
        req: &PullRequest,
        opts: &TransferOptions,
        offline: bool,
    ) -> Result<PullOutcome> {
        let m = &req.manifest;
        let (name, v) = identity(m)?;
        let _pin = self.cache.pin(&self.remote_id, &name, &v)?;
        // A prune between resolving and pinning may have evicted the cached manifest; while
        // pinned it cannot be evicted again, and the blobs this pull uses are locked.
        self.cache.ensure_manifest(&self.remote_id, m, &v)?;
        let remote = (!offline).then_some(&self.remote);
        transfer::pull(remote, &self.cache, req, opts).await
    }

    /// Default pull target of a version: its snapshot directory in the cache.
    pub fn snapshot_dir(&self, m: &Manifest) -> Result<std::path::PathBuf> {
        let (name, v) = identity(m)?;
        Ok(self.cache.snapshot_dir(&self.remote_id, &name, &v))
    }

    /// Deletes a version's manifest. Its chunks stay until `gc` finds them unreferenced.
    pub async fn rm(&self, name: &ModelName, version: &Version) -> Result<()> {
        let key = manifest_key(name, version);
        if self.remote.size_of(&key).await?.is_none() {
            return Err(Error::NotFound(format!(
                "{name}@{version} on {}",
                self.remote.name()
            )));
        }
        self.remote.delete(&key).await?;
        Ok(())
    }
}

/// The validated name and version a manifest claims.
fn identity(m: &Manifest) -> Result<(ModelName, Version)> {
    let bad = |e: crate::version::Error| Error::Integrity(format!("manifest: {e}"));
    Ok((
        m.model_name.parse().map_err(bad)?,
        m.version.parse().map_err(bad)?,
    ))
}
