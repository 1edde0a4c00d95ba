//! The vault facade: one remote plus the local cache, and the operations users run on them
//! (resolve a `name@selector`, aliases included; push, pull, list, versions, info, rm), with
//! the policies around them: which remote a name means ([`open`]), the cache identity of a
//! remote, push fan-out over several remotes and `--metadata-file` merging ([`push`]), and
//! cache limits applied after a pull. The CLI is a thin layer over this; the Python package
//! and other programs get the same behaviour.

pub mod alias;
mod error;
mod info;
pub mod open;
pub mod push;
mod signature;
pub mod startup;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use alias::{
    AliasChange, AliasDoc, AliasEvent, AliasInfo, AliasKind, alias_get, alias_list,
    alias_list_lenient, alias_set, alias_target, aliased_versions, rollback,
};
pub use error::{Error, Result};
pub use info::{Info, InfoFile};
pub use open::{
    cache_identity, default_encryption_key_file, default_trusted_key_paths, open, resolve_spec,
};
pub use push::{
    PushOutcome, PushResult, merge_metadata, models_in_dir, push_many, read_metadata_file,
};
pub use signature::SignatureInfo;
pub use startup::{models_dir, models_from_env, startup_remote};

use crate::cache::{self, Cache, PruneReport};
use crate::config::CacheConfig;
use crate::manifest::Manifest;
use crate::remote::{ErrorKind, Remote, RemoteSpec, manifest_key};
use crate::transfer::{self, PullOutcome, PullRequest, PushRequest, Summary, TransferOptions};
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
    /// Applied after every pull (LRU eviction); none by default.
    cache_limits: CacheConfig,
    /// Requests in flight at once for operations over many objects (gc, verify, usage).
    jobs: usize,
    /// Signers whose signatures pulls, `run`, `verify` and `sync` require (`None`: no
    /// signature is required).
    trust: Option<std::sync::Arc<crate::trust::TrustedKeys>>,
}

impl Vault {
    /// `identity` identifies the remote in the cache (see [`cache_identity`]); it must not
    /// contain secrets.
    /// With an encryption key, the identity also names the key's check value, so that the
    /// cache never answers for a vault read with another key (or none).
    pub fn new(remote: Remote, identity: &str, cache: Cache) -> Vault {
        let remote_id = match remote.key_check() {
            Some(check) => cache::remote_id(&format!("{identity}#key={check}")),
            None => cache::remote_id(identity),
        };
        Vault {
            remote,
            remote_id,
            cache,
            cache_limits: CacheConfig::default(),
            jobs: transfer::default_jobs(),
            trust: None,
        }
    }

    /// Opens the remote `spec` describes, with `cache`.
    pub fn open_spec(spec: &RemoteSpec, cache: Cache) -> Result<Vault> {
        Ok(Vault::new(
            Remote::open(spec)?,
            &cache_identity(spec),
            cache,
        ))
    }

    /// Limits applied to the cache after each pull (`cache.max_size`, `cache.ttl`).
    pub fn with_cache_limits(mut self, limits: CacheConfig) -> Vault {
        self.cache_limits = limits;
        self
    }

    /// Requests in flight at once for gc, verify and usage (at least 1).
    pub fn with_jobs(mut self, jobs: usize) -> Vault {
        self.jobs = jobs.max(1);
        self
    }

    /// Requests in flight at once for operations over many objects.
    pub fn jobs(&self) -> usize {
        self.jobs
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
                "model {name} not found on {}",
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
                let v = alias_target(self, &r.name, a).await?;
                return match self.manifest(&r.name, &v, lookup).await {
                    Err(e) if e.is_not_found() => Err(Error::NotFound(format!(
                        "alias {a} of {} points at {v}, which was removed from {}: set the \
                         alias again (`mvault alias set` or `mvault rollback`)",
                        r.name,
                        self.remote.name()
                    ))),
                    r => r,
                };
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
                        "no version of {} matches {} in {place}",
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
                "{name}@{version} is not in the local cache (offline): pull it once online first"
            )));
        }
        // With the manifest, its signature (one small read, at the same time): later pulls
        // of the cached version then check it, or place it in the target, without a
        // request. The signature is cached only after the manifest it belongs to.
        let (m, sig) = tokio::join!(
            self.fetch_manifest(name, version),
            self.read_signature(name, version)
        );
        let m = m?;
        self.cache.save_manifest(&self.remote_id, &m, version)?;
        if let Some(b) = sig? {
            self.cache
                .save_signature(&self.remote_id, name, version, &b)?;
        }
        Ok(m)
    }

    /// Reads and validates a manifest from the remote, bypassing the cache.
    pub async fn fetch_manifest(&self, name: &ModelName, version: &Version) -> Result<Manifest> {
        let key = manifest_key(name, version);
        let bytes = match self.remote.read_manifest(&key).await {
            Ok(b) => b,
            Err(e) if e.kind == ErrorKind::NotFound => {
                return Err(Error::NotFound(format!(
                    "{name}@{version} not found on {}",
                    self.remote.name()
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let m = Manifest::from_json(&bytes).map_err(|source| Error::BadManifest {
            context: format!("manifest of {name}@{version} ({key})"),
            source,
        })?;
        m.expect_identity(name, version)
            .map_err(|source| Error::BadManifest {
                context: key.clone(),
                source,
            })?;
        Ok(m)
    }

    /// Pushes a version (see [`transfer::push`]).
    pub async fn push(
        &self,
        req: &PushRequest,
        opts: &TransferOptions,
    ) -> Result<(Manifest, Summary)> {
        Ok(transfer::push(&self.remote, req, opts).await?)
    }

    /// Pulls a resolved version into `req.target`; `offline` uses the cache only.
    /// The version is pinned in the cache for the duration, so `cache prune` leaves it alone.
    /// Afterwards the cache limits ([`Vault::with_cache_limits`]) are applied; a failure to
    /// apply them is a warning, since the pull itself succeeded.
    pub async fn pull(
        &self,
        req: &PullRequest,
        opts: &TransferOptions,
        offline: bool,
    ) -> Result<PullOutcome> {
        let out = self.pull_pinned(req, opts, offline).await?;
        self.apply_cache_limits();
        Ok(out)
    }

    /// The pull itself, holding the version's pin for the duration; no cache limits.
    async fn pull_pinned(
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
        // Before anything is placed: with trusted keys, a version failing the check stops here.
        let signature = self.checked_signature(m, offline).await?;
        let remote = (!offline).then_some(&self.remote);
        Ok(transfer::pull(remote, &self.cache, req, opts, signature.as_deref()).await?)
    }

    /// [`Vault::enforce_cache_limits`] after a successful pull: problems are warnings.
    fn apply_cache_limits(&self) {
        match self.enforce_cache_limits() {
            Ok(Some(r)) if !r.versions_removed.is_empty() => tracing::info!(
                "cache limits: evicted {} ({})",
                r.versions_removed.join(", "),
                crate::util::human_bytes(r.bytes_removed)
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("cache limits not applied: {e}"),
        }
    }

    /// Applies the cache limits now (LRU eviction that skips versions running pulls hold);
    /// `None` when no limit is set.
    pub fn enforce_cache_limits(&self) -> Result<Option<PruneReport>> {
        let CacheConfig {
            max_size_bytes,
            ttl_secs,
        } = self.cache_limits;
        if max_size_bytes.is_none() && ttl_secs.is_none() {
            return Ok(None);
        }
        let ttl = ttl_secs.map(std::time::Duration::from_secs);
        Ok(Some(self.cache.prune(max_size_bytes, ttl)?))
    }

    /// Makes every model of `refs` present under `dir/<name>/` (a container's start-up),
    /// four at a time: resolves each (from the cache when pinned), then pulls it; the cache
    /// limits are applied once, after all of them. Returns each version's outcome in the
    /// order of `refs`; a failure is the error. Two refs of one model name (they would share
    /// `dir/<name>/`) are refused before anything is resolved.
    pub async fn pull_into(
        &self,
        refs: &[ModelRef],
        dir: &Path,
        opts: &TransferOptions,
        offline: bool,
        force: bool,
    ) -> Result<Vec<(Manifest, PullOutcome)>> {
        use futures::StreamExt;
        let mut seen: HashMap<&ModelName, &ModelRef> = HashMap::new();
        for r in refs {
            if let Some(first) = seen.insert(&r.name, r) {
                return Err(Error::Input(format!(
                    "{first} and {r} both go to {}: one directory holds one version of a \
                     model; name {} once",
                    dir.join(r.name.as_str()).display(),
                    r.name
                )));
            }
        }
        let lookup = if offline {
            Lookup::Offline
        } else {
            Lookup::CacheFirst
        };
        let pulls = futures::stream::iter(refs.iter().enumerate())
            .map(|(i, r)| async move {
                if !matches!(r.selector, Selector::Exact(_)) {
                    tracing::info!("{r} is not pinned: resolving it needs the remote");
                }
                let manifest = self.resolve(r, lookup).await?;
                let req = PullRequest {
                    target: dir.join(&manifest.model_name),
                    manifest,
                    verify: false,
                    link: Default::default(),
                    force,
                };
                let out = self.pull_pinned(&req, opts, offline).await?;
                tracing::info!("{}@{} ready", req.manifest.model_name, req.manifest.version);
                Ok::<_, Error>((i, req.manifest, out))
            })
            .buffer_unordered(4)
            .collect::<Vec<_>>()
            .await;
        let mut done = pulls.into_iter().collect::<Result<Vec<_>>>()?;
        self.apply_cache_limits();
        done.sort_by_key(|(i, ..)| *i);
        Ok(done.into_iter().map(|(_, m, o)| (m, o)).collect())
    }

    /// What `verify [NAME[@SELECTOR]]` checks: every version (`None`), every version of a model
    /// (`NAME`), or the one version `NAME@SELECTOR` resolves to on the remote (`NAME@latest`,
    /// `NAME@^1.2`, `NAME@ALIAS`).
    pub async fn verify_selection(
        &self,
        model: Option<&str>,
    ) -> Result<(Option<ModelName>, Option<Version>)> {
        let Some(model) = model else {
            return Ok((None, None));
        };
        let r: ModelRef = model.parse()?;
        let version = match &r.selector {
            Selector::Exact(v) => Some(v.clone()),
            _ if model.contains('@') => Some(identity(&self.resolve(&r, Lookup::Remote).await?)?.1),
            _ => None,
        };
        Ok((Some(r.name), version))
    }

    /// Default pull target of a version: its snapshot directory in the cache.
    pub fn snapshot_dir(&self, m: &Manifest) -> Result<PathBuf> {
        let (name, v) = identity(m)?;
        Ok(self.cache.snapshot_dir(&self.remote_id, &name, &v))
    }

    /// Deletes a version's manifest. Its chunks stay until `gc` finds them unreferenced. A
    /// version an alias points at is refused ([`Error::Conflict`], naming the aliases) unless
    /// `force`: removing it would leave the alias pointing at nothing.
    pub async fn rm(&self, name: &ModelName, version: &Version, force: bool) -> Result<()> {
        let key = manifest_key(name, version);
        if self.remote.size_of(&key).await?.is_none() {
            return Err(Error::NotFound(format!(
                "{name}@{version} not found on {}",
                self.remote.name()
            )));
        }
        if !force {
            let aliases: Vec<String> = alias_list(self, name)
                .await?
                .into_iter()
                .filter(|a| a.version.parse::<Version>().is_ok_and(|v| v == *version))
                .map(|a| a.alias)
                .collect();
            if !aliases.is_empty() {
                return Err(Error::Conflict(format!(
                    "{name}@{version} is the target of alias {}: move the alias first \
                     (`mvault alias set`) or pass --force to remove it anyway",
                    aliases.join(", ")
                )));
            }
        }
        self.remote.delete(&key).await?;
        // After the manifest, so a version never appears unsigned while it still exists; a
        // version pushed again later must be able to create its signature.
        self.remote
            .delete(&crate::remote::signature_key(name, version))
            .await?;
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
