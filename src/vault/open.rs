//! Which remote a name means, and opening it: the policy every front end (CLI, Python) shares.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Result, Vault};
use crate::cache::Cache;
use crate::config::Config;
use crate::remote::RemoteSpec;

/// Whether `remote` names a URL or path rather than a config provider. A `:` or `?` counts
/// too, so that a mistyped URL (`s3:bucket?secret_key=...`) is refused as one (with its secrets
/// redacted) rather than looked up, and echoed, as a provider name.
pub fn is_url_or_path(remote: &str) -> bool {
    remote.contains("://") || remote.contains(['/', ':', '?']) || remote.starts_with('.')
}

/// Resolves a remote: a URL or path, a provider of `config`, else the config's default
/// provider, else the local vault `<data dir>/vault` ([`crate::util::data_dir`]).
pub fn resolve_spec(remote: Option<&str>, config: &Config) -> Result<RemoteSpec> {
    Ok(match remote.filter(|r| !r.is_empty()) {
        Some(r) if is_url_or_path(r) => RemoteSpec::parse_url(r)?,
        Some(name) => config.spec(name)?,
        None => match config.default_spec() {
            Some(spec) => spec?,
            None => RemoteSpec::local(&crate::util::data_dir().join("vault")),
        },
    })
}

/// The secret-free identity of a remote that keys its cached manifests: the URL without
/// query, plus the endpoint when one is set (two S3-compatible servers holding a bucket of the
/// same name are two remotes). `docs/FORMAT.md`, "Local cache".
pub fn cache_identity(spec: &RemoteSpec) -> String {
    match spec.options.get("endpoint") {
        Some(ep) => format!("{}?endpoint={ep}", spec.url()),
        None => spec.url(),
    }
}

/// Opens the vault `remote` names (see [`resolve_spec`]) with the cache at `cache_dir`, the
/// config's cache limits applied after pulls, and the encryption key in `key_file` (`None`:
/// none; [`default_encryption_key_file`] is what a front end passes when not told). What the
/// Python package's `Vault()` does; the CLI resolves the spec itself first, to register its
/// secrets with the output scrubber.
pub fn open(
    remote: Option<&str>,
    config: &Config,
    cache_dir: &Path,
    key_file: Option<&Path>,
) -> Result<Vault> {
    let spec = resolve_spec(remote, config)?;
    let keys = key_file.map(crate::crypt::Keys::load).transpose()?;
    let remote = crate::remote::Remote::open(&spec)?.with_keys(keys.map(Arc::new));
    Ok(
        Vault::new(remote, &cache_identity(&spec), Cache::open(cache_dir)?)
            .with_cache_limits(config.cache.clone()),
    )
}

/// The encryption key file when none is given explicitly: `$MVAULT_ENCRYPTION_KEY_FILE` (if
/// set and not empty), else `encryption.key_file` of `config`.
pub fn default_encryption_key_file(config: &Config) -> Option<PathBuf> {
    std::env::var_os("MVAULT_ENCRYPTION_KEY_FILE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| config.encryption_key_file.clone())
}

/// The trusted public keys when none are given explicitly: `$MVAULT_TRUSTED_KEYS` (paths
/// separated by `:`; set but empty means none), else `signing.trusted_keys` of `config`.
/// Pulls, `run`/`ensure`, `verify` and `sync` then require a signature by one of them.
pub fn default_trusted_key_paths(config: &Config) -> Vec<PathBuf> {
    match std::env::var_os("MVAULT_TRUSTED_KEYS") {
        Some(v) => std::env::split_paths(&v)
            .filter(|p| !p.as_os_str().is_empty())
            .collect(),
        None => config.trusted_keys.clone(),
    }
}
