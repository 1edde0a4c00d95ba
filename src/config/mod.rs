//! The config file: named storage providers (for `--remote NAME`) and defaults for the cache,
//! transfers, the audit log, usage alerts, signing and encryption; README.md ("Config file")
//! shows an example.
//!
//! `cloud_storage` holds `default_provider` (used when no `--remote` is given), `providers`
//! and the sections that fill [`Config`]'s other fields (paths relative to the file's
//! directory). A provider has a `name` (`[A-Za-z0-9][A-Za-z0-9._-]*`, unique), a `type` (s3 |
//! gcs | azblob | oss | fs; may be omitted when the name is aws_s3, google_cloud, azure_blob or
//! aliyun_oss), `enabled` (default true) and `config`: `bucket` (`container` also accepted for
//! azblob; for fs `path` or `root`), `prefix`, and the remote options
//! ([`crate::remote::OPTION_KEYS`], checked as in URLs; also named as in [`KEY_ALIASES`]).
//!
//! Rules:
//! - String values may use `${VAR}`, `${VAR:-default}` (the default applies when `VAR` is unset
//!   or empty) and `$$` for a literal `$`; any other `$` is literal.
//! - Every key is checked: an unknown key, a value of the wrong kind, bad YAML, an unknown
//!   provider type or a duplicate provider name fails the load, naming the file, line and key.
//! - Problems in one provider's values (an unset variable, a missing bucket, a bad `timeout`)
//!   are reported only when that provider is used ([`Provider::spec`]), so a file describing four
//!   clouds works with the credentials of one. A disabled provider is refused by name, its
//!   problems unreported.
//! - Error messages never contain the values of environment variables or of secret keys.

mod env;
mod file;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::remote::{Backend, RemoteSpec};

/// Config file names looked for in the working directory, in this order.
pub const LOCAL_FILES: &[&str] = &["mvault.yaml", "cloud_storage_config.yaml"];

/// Keys accepted in a provider's `config` for files written for the seed scripts, and the key
/// each one stands for.
pub const KEY_ALIASES: &[(&str, &str)] = &[
    ("access_key_id", "access_key"),
    ("secret_access_key", "secret_key"),
    ("access_key_secret", "secret_key"),
    ("credentials_path", "credential_path"),
];

/// Why the config file could not be used. `Display` is one line naming the file (and for a
/// problem in it the line, 1-based, and the key), and never contains secret or environment
/// values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("config file {} does not exist", path.display())]
    Missing { path: PathBuf },
    #[error("cannot read config file {}: {message}", path.display())]
    Read { path: PathBuf, message: String },
    #[error("{}:{line}: {msg}", path.display())]
    At {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    /// `detail` says where the name was looked for (" in FILE (known: ...)"), or why nowhere.
    #[error("provider {name:?} is not defined{detail}")]
    UnknownProvider { name: String, detail: String },
}

/// The parsed config file; [`Config::default`] when there is none. Paths are absolute (a
/// relative path in the file is taken from the file's directory).
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub path: Option<PathBuf>,
    /// `cloud_storage.default_provider`; always names one of `providers`.
    pub default_provider: Option<String>,
    /// In file order, names unique.
    pub providers: Vec<Provider>,
    pub cache: CacheConfig,
    pub audit: AuditConfig,
    /// `transfer.jobs`, the default for `--jobs`: 1 to 1024.
    pub jobs: Option<usize>,
    /// `transfer.rate_limit`, the default for `--limit-rate`: bytes per second, above 0.
    pub rate_limit_bytes_per_sec: Option<u64>,
    /// `usage.alert_monthly_cost`: `mvault usage` exits 6 (and `mvault serve` shows an alert)
    /// when the estimated monthly cost is above it; USD per month, at least 0.
    pub alert_monthly_cost_usd: Option<f64>,
    /// `signing.key`: the private key `push` signs with (as `--sign-key`).
    pub sign_key: Option<PathBuf>,
    /// `signing.trusted_keys`: a path or a list of paths of public keys (as `--trusted-key`).
    pub trusted_keys: Vec<PathBuf>,
    /// `encryption.key_file`: the vault encryption key file, used when neither
    /// `--encryption-key-file` nor `MVAULT_ENCRYPTION_KEY_FILE` is given.
    pub encryption_key_file: Option<PathBuf>,
}

/// One entry of `cloud_storage.providers`.
#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub backend: Backend,
    pub enabled: bool,
    /// 1-based line of the entry in the file.
    pub line: usize,
    /// Variables substituted, `label` = the name. Incomplete when `problem` is set.
    spec: RemoteSpec,
    /// The first problem in the provider's values, reported when it is used.
    problem: Option<Error>,
}

/// `cloud_storage.cache`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheConfig {
    pub max_size_bytes: Option<u64>,
    pub ttl_secs: Option<u64>,
}

/// `cloud_storage.audit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditConfig {
    pub path: Option<PathBuf>,
    pub max_size_bytes: Option<u64>,
}

impl Config {
    /// Finds the config file in the process's working directory and environment (see
    /// [`Config::load_from`]) and parses it; no file gives the empty config.
    pub fn load(explicit: Option<&Path>) -> Result<Config, Error> {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        Config::load_from(explicit, &cwd, |name| std::env::var(name).ok())
    }

    /// [`Config::load`] with the working directory and environment given. The file read is
    /// `explicit` (from `-c/--config`), else `MVAULT_CONFIG`, either of which must exist
    /// (relative paths are taken from `cwd`); else the first of [`LOCAL_FILES`] in `cwd`; else
    /// `$XDG_CONFIG_HOME/mvault/config.yaml` (`XDG_CONFIG_HOME` defaulting to `$HOME/.config`).
    pub fn load_from(
        explicit: Option<&Path>,
        cwd: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, Error> {
        let set = |name: &str| env(name).filter(|v| !v.is_empty());
        let from_env = || set("MVAULT_CONFIG").map(|p| cwd.join(p));
        let explicit = explicit.map(|p| cwd.join(p)).or_else(from_env);
        if let Some(path) = explicit.as_ref().filter(|p| !p.exists()) {
            return Err(Error::Missing { path: path.clone() });
        }
        let xdg = set("XDG_CONFIG_HOME").map(PathBuf::from);
        let xdg = xdg.or_else(|| set("HOME").map(|h| Path::new(&h).join(".config")));
        let xdg = xdg.map(|d| d.join("mvault").join("config.yaml"));
        let mut local = LOCAL_FILES.iter().map(|f| cwd.join(f)).chain(xdg);
        let Some(path) = explicit.or_else(|| local.find(|p| p.is_file())) else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Read {
            message: e.to_string(),
            path: path.clone(),
        })?;
        Config::parse(&text, &path, env)
    }

    /// The remote of the enabled provider called `name`, with its problem if it has one.
    pub fn spec(&self, name: &str) -> Result<RemoteSpec, Error> {
        let Some(p) = self.providers.iter().find(|p| p.name == name) else {
            let known = Vec::from_iter(self.providers.iter().map(|p| p.name.as_str()));
            let detail = match (&self.path, known.is_empty()) {
                (None, _) => format!(
                    ": no config file found (looked for ./{}, $XDG_CONFIG_HOME/mvault/config.yaml; \
                     use -c FILE)",
                    LOCAL_FILES.join(", ./")
                ),
                (Some(p), true) => format!(" in {} (it defines no providers)", p.display()),
                (Some(p), false) => format!(" in {} (known: {})", p.display(), known.join(", ")),
            };
            let detail = if name.contains(',') {
                format!("{detail}; only push takes several providers (-r a,b)")
            } else {
                detail
            };
            let name = name.to_string();
            return Err(Error::UnknownProvider { name, detail });
        };
        if !p.enabled {
            let (path, line) = (self.path.clone().unwrap_or_default(), p.line);
            let msg = format!("provider {} is disabled; set enabled: true", p.name);
            return Err(Error::At { path, line, msg });
        }
        p.spec().cloned()
    }

    /// The remote of `default_provider`, if the file sets one.
    pub fn default_spec(&self) -> Option<Result<RemoteSpec, Error>> {
        self.default_provider.as_deref().map(|n| self.spec(n))
    }

    /// Providers with `enabled: true`, in file order (for `--all-providers`).
    pub fn enabled_providers(&self) -> Vec<&Provider> {
        self.providers.iter().filter(|p| p.enabled).collect()
    }
}

impl Provider {
    /// The remote, or the first problem in the provider's values (unset variable, missing
    /// bucket, bad option value).
    pub fn spec(&self) -> Result<&RemoteSpec, Error> {
        self.problem.clone().map_or(Ok(&self.spec), Err)
    }

    /// The problem [`Provider::spec`] would report (for listings).
    pub fn problem(&self) -> Option<&Error> {
        self.problem.as_ref()
    }

    /// The options resolved so far, masked for display ([`RemoteSpec::masked_options`]).
    pub fn masked_options(&self) -> BTreeMap<String, String> {
        self.spec.masked_options()
    }
}

#[cfg(test)]
mod tests;
