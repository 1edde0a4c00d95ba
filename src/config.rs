//! The config file: named storage providers (for `--remote NAME`) and defaults for the cache,
//! transfers and the audit log.
//!
//! ```yaml
//! cloud_storage:
//!   default_provider: aws_s3        # optional; used when no --remote is given
//!   providers:
//!     - name: aws_s3                # [A-Za-z0-9][A-Za-z0-9._-]*, unique
//!       type: s3                    # s3 | gcs | azblob | oss | fs; may be omitted when the
//!                                   # name is aws_s3, google_cloud, azure_blob or aliyun_oss
//!       enabled: true               # optional, default true
//!       config:
//!         bucket: eitp-models       # `container` also accepted for azblob
//!         prefix: models
//!         region: us-east-1
//!         access_key: "${AWS_ACCESS_KEY_ID}"
//!         secret_key: "${AWS_SECRET_ACCESS_KEY}"
//!     - name: scratch
//!       type: fs
//!       config: { path: ./vault }   # or `root`; relative to the config file's directory
//!   cache:    { max_size: 20G, ttl: 30d }          # optional
//!   transfer: { jobs: 16, rate_limit: 50M }        # optional; rate in bytes per second
//!   audit:    { path: audit.jsonl, max_size: 10M } # optional; path as for fs
//! ```
//!
//! Provider `config` keys: `bucket`/`container` (clouds), `path`/`root` (fs), `prefix`, and the
//! remote option keys (`endpoint`, `region`, `access_key`, `secret_key`, `session_token`,
//! `profile`, `credential`, `credential_path`, `account_name`, `account_key`, `sas_token`,
//! `connection_string`, `virtual_host_style`, `anonymous`, `timeout`). For files written for the
//! seed scripts, [`KEY_ALIASES`] maps `access_key_id`, `secret_access_key`, `access_key_secret`
//! and `credentials_path` onto them.
//!
//! Rules:
//! - String values may use `${VAR}`, `${VAR:-default}` (the default applies when `VAR` is unset
//!   or empty) and `$$` for a literal `$`; any other `$` is literal.
//! - Every key is checked: an unknown key, a value of the wrong kind, bad YAML, an unknown
//!   provider type or a duplicate provider name fails the load, naming the file, line and key.
//! - Problems in one provider's values (an unset variable, a missing bucket, a bad `timeout`)
//!   are reported only when that provider is used ([`Provider::spec`]), so a file describing four
//!   clouds works with the credentials of one. Disabled providers are never resolved.
//! - Error messages never contain the values of environment variables or of secret keys.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_yaml::Value;

use crate::remote::{Backend, OPTION_KEYS, RemoteSpec, SECRET_KEYS};
use crate::util::{parse_duration_secs, parse_size};

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

/// Option keys masked by [`Provider::masked_options`]: the secrets, plus the access key id.
const MASKED_KEYS: &[&str] = &["access_key"];
/// Option keys whose value is `true` or `false`.
const BOOL_KEYS: &[&str] = &["virtual_host_style", "anonymous"];
/// Provider `config` keys that are not remote options.
const LOCATION_KEYS: &[&str] = &["bucket", "container", "path", "root", "prefix"];

const TOP_KEYS: &[&str] = &["cloud_storage"];
const CLOUD_KEYS: &[&str] = &[
    "default_provider",
    "providers",
    "cache",
    "transfer",
    "audit",
];
const PROVIDER_KEYS: &[&str] = &["name", "type", "enabled", "config"];
const CACHE_KEYS: &[&str] = &["max_size", "ttl"];
const TRANSFER_KEYS: &[&str] = &["jobs", "rate_limit"];
const AUDIT_KEYS: &[&str] = &["path", "max_size"];
/// Largest `transfer.jobs`, as for `--jobs`.
const MAX_JOBS: usize = 1024;

/// Why the config file could not be used. `Display` is one line naming the file, the line
/// (1-based) and the key, and never contains secret or environment values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The file named by `-c/--config` or `MVAULT_CONFIG` does not exist.
    #[error("config file {} does not exist", path.display())]
    Missing { path: PathBuf },
    /// The file exists but could not be read.
    #[error("cannot read config file {}: {message}", path.display())]
    Read { path: PathBuf, message: String },
    /// The file is not valid YAML.
    #[error("{}:{line}: invalid YAML: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A key the format does not define; `section` is the dotted path of its mapping.
    #[error("{}:{line}: unknown key {key:?} in {section} (known: {known})", path.display())]
    UnknownKey {
        path: PathBuf,
        line: usize,
        section: String,
        key: String,
        known: String,
    },
    /// `${VAR}` without a default while `VAR` is not set.
    #[error(
        "{}:{line}: {key}: environment variable {var} is not set (set it, or write ${{{var}:-default}})",
        path.display()
    )]
    MissingVar {
        path: PathBuf,
        line: usize,
        key: String,
        var: String,
    },
    /// A value of the wrong kind, out of range, or missing; `key` is its dotted path.
    #[error("{}:{line}: {key}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    /// No provider has this name.
    #[error("{}", unknown_provider_message(name, path.as_deref(), known))]
    UnknownProvider {
        name: String,
        path: Option<PathBuf>,
        known: Vec<String>,
    },
    /// The provider has `enabled: false`.
    #[error("provider {name} is disabled in {}:{line}; set enabled: true", path.display())]
    Disabled {
        name: String,
        path: PathBuf,
        line: usize,
    },
}

fn unknown_provider_message(name: &str, path: Option<&Path>, known: &[String]) -> String {
    match (path, known.is_empty()) {
        (None, _) => format!(
            "provider {name:?} is not defined: no config file found (looked for ./{}, \
             $XDG_CONFIG_HOME/mvault/config.yaml; use -c FILE)",
            LOCAL_FILES.join(", ./")
        ),
        (Some(p), true) => format!(
            "provider {name:?} is not defined in {} (it defines no providers)",
            p.display()
        ),
        (Some(p), false) => format!(
            "provider {name:?} is not defined in {} (known: {})",
            p.display(),
            known.join(", ")
        ),
    }
}

/// The parsed config file; [`Config::default`] when there is none.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The file read, if any.
    pub path: Option<PathBuf>,
    /// `cloud_storage.default_provider`; always names one of `providers`.
    pub default_provider: Option<String>,
    /// In file order, names unique.
    pub providers: Vec<Provider>,
    pub cache: CacheConfig,
    pub transfer: TransferConfig,
    pub audit: AuditConfig,
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

/// `cloud_storage.transfer`: defaults for `--jobs` and `--limit-rate`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferConfig {
    /// 1 to 1024.
    pub jobs: Option<usize>,
    /// Greater than 0.
    pub rate_limit_bytes_per_sec: Option<u64>,
}

/// `cloud_storage.audit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditConfig {
    /// Absolute (a relative path in the file is taken from the file's directory).
    pub path: Option<PathBuf>,
    pub max_size_bytes: Option<u64>,
}

fn std_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Config {
    /// Finds the config file (see [`Config::find`]) in the process's working directory and
    /// environment, and parses it; no file gives the empty config.
    pub fn load(explicit: Option<&Path>) -> Result<Config, Error> {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        Config::load_from(explicit, &cwd, std_env)
    }

    /// [`Config::load`] with the working directory and environment given.
    pub fn load_from(
        explicit: Option<&Path>,
        cwd: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, Error> {
        let Some(path) = Config::find(explicit, cwd, &env)? else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Read {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Config::parse_with_env(&text, &path, env)
    }

    /// Which file to read: `explicit` (from `-c/--config`), else `MVAULT_CONFIG`, either of
    /// which must exist (relative paths are taken from `cwd`); else the first of
    /// [`LOCAL_FILES`] in `cwd`; else `$XDG_CONFIG_HOME/mvault/config.yaml` (`XDG_CONFIG_HOME`
    /// defaulting to `$HOME/.config`). `Ok(None)` when there is none.
    pub fn find(
        explicit: Option<&Path>,
        cwd: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<PathBuf>, Error> {
        let set = |name: &str| env(name).filter(|v| !v.is_empty());
        let named = explicit
            .map(Path::to_path_buf)
            .or_else(|| set("MVAULT_CONFIG").map(PathBuf::from));
        if let Some(p) = named {
            let p = cwd.join(p);
            return if p.exists() {
                Ok(Some(p))
            } else {
                Err(Error::Missing { path: p })
            };
        }
        if let Some(p) = LOCAL_FILES
            .iter()
            .map(|f| cwd.join(f))
            .find(|p| p.is_file())
        {
            return Ok(Some(p));
        }
        let dir = set("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| set("HOME").map(|h| Path::new(&h).join(".config")));
        Ok(dir
            .map(|d| d.join("mvault").join("config.yaml"))
            .filter(|p| p.is_file()))
    }

    /// Parses `text`, read from `path` (used in messages and for relative paths), taking
    /// `${VAR}` values from the process environment.
    pub fn parse(text: &str, path: &Path) -> Result<Config, Error> {
        Config::parse_with_env(text, path, std_env)
    }

    /// [`Config::parse`] with `${VAR}` values from `env`.
    pub fn parse_with_env(
        text: &str,
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, Error> {
        Parser {
            text,
            path,
            env: &env,
        }
        .config()
    }

    /// The enabled provider called `name`.
    pub fn provider(&self, name: &str) -> Result<&Provider, Error> {
        let p = self
            .providers
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| Error::UnknownProvider {
                name: name.to_string(),
                path: self.path.clone(),
                known: self.providers.iter().map(|p| p.name.clone()).collect(),
            })?;
        if !p.enabled {
            return Err(Error::Disabled {
                name: p.name.clone(),
                path: self.path.clone().unwrap_or_default(),
                line: p.line,
            });
        }
        Ok(p)
    }

    /// The remote of the enabled provider called `name`, with its problem if it has one.
    pub fn spec(&self, name: &str) -> Result<RemoteSpec, Error> {
        self.provider(name)?.spec().cloned()
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
        match &self.problem {
            Some(e) => Err(e.clone()),
            None => Ok(&self.spec),
        }
    }

    /// The problem [`Provider::spec`] would report, if any (for listings).
    pub fn problem(&self) -> Option<&Error> {
        self.problem.as_ref()
    }

    /// The resolved options for display: secrets and the access key id become `****` plus
    /// their last two characters, or `***` when shorter than 12 characters; other values are
    /// shown as [`crate::remote::redact_url`] shows URLs.
    pub fn masked_options(&self) -> BTreeMap<String, String> {
        self.spec
            .options
            .iter()
            .map(|(k, v)| {
                let secret = SECRET_KEYS.contains(&k.as_str()) || MASKED_KEYS.contains(&k.as_str());
                let shown = if secret {
                    mask(v)
                } else {
                    crate::remote::redact_url(v)
                };
                (k.clone(), shown)
            })
            .collect()
    }
}

fn mask(v: &str) -> String {
    let chars: Vec<char> = v.chars().collect();
    if chars.len() < 12 {
        "***".to_string()
    } else {
        format!(
            "****{}",
            chars[chars.len() - 2..].iter().collect::<String>()
        )
    }
}

/// A place in the document: keys and sequence indexes from the root (to find its line) and
/// the dotted form shown in messages (`cloud_storage.providers[aws_s3].config.bucket`).
#[derive(Debug, Clone, Default)]
struct At {
    segs: Vec<Seg>,
    shown: String,
}

#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

impl At {
    fn key(&self, k: &str) -> At {
        let mut segs = self.segs.clone();
        segs.push(Seg::Key(k.to_string()));
        let shown = if self.shown.is_empty() {
            k.to_string()
        } else {
            format!("{}.{k}", self.shown)
        };
        At { segs, shown }
    }

    /// Element `i` of a sequence, shown by `label` (a provider name) when known.
    fn item(&self, i: usize, label: Option<&str>) -> At {
        let mut segs = self.segs.clone();
        segs.push(Seg::Index(i));
        let shown = match label {
            Some(l) => format!("{}[{l}]", self.shown),
            None => format!("{}[{i}]", self.shown),
        };
        At { segs, shown }
    }
}

/// One parse of one file.
struct Parser<'a> {
    text: &'a str,
    path: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Parser<'_> {
    fn config(&self) -> Result<Config, Error> {
        let mut root: Value = serde_yaml::from_str(self.text).map_err(|e| self.syntax(&e))?;
        root.apply_merge().map_err(|e| self.syntax(&e))?;
        let mut config = Config {
            path: Some(self.path.to_path_buf()),
            ..Config::default()
        };
        let top = At::default();
        let Some(cloud) = self
            .mapping(&root, &top, TOP_KEYS)?
            .into_iter()
            .find_map(|(k, v)| (k == "cloud_storage").then_some(v))
        else {
            return Ok(config);
        };
        let at = top.key("cloud_storage");
        let mut default = None;
        for (key, v) in self.mapping(cloud, &at, CLOUD_KEYS)? {
            let kat = at.key(&key);
            match key.as_str() {
                "default_provider" => {
                    if let Some(raw) = self.scalar(v, &kat)? {
                        default = Some((self.expand(&raw, &kat)?, kat));
                    }
                }
                "providers" => config.providers = self.providers(v, &kat)?,
                "cache" => config.cache = self.cache(v, &kat)?,
                "transfer" => config.transfer = self.transfer(v, &kat)?,
                _ => config.audit = self.audit(v, &kat)?,
            }
        }
        if let Some((name, kat)) = default {
            if !config.providers.iter().any(|p| p.name == name) {
                let known: Vec<_> = config.providers.iter().map(|p| p.name.as_str()).collect();
                return Err(self.invalid(
                    &kat,
                    format!(
                        "no provider is named {name:?} (known: {})",
                        known.join(", ")
                    ),
                ));
            }
            config.default_provider = Some(name);
        }
        Ok(config)
    }

    fn providers(&self, v: &Value, at: &At) -> Result<Vec<Provider>, Error> {
        let items = match v {
            Value::Null => return Ok(Vec::new()),
            Value::Sequence(items) => items,
            _ => return Err(self.invalid(at, "expected a list of providers (- name: ...)")),
        };
        let mut out: Vec<Provider> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let p = self.provider(item, at, i)?;
            if let Some(first) = out.iter().find(|q| q.name == p.name) {
                return Err(self.invalid(
                    &at.item(i, Some(&p.name)).key("name"),
                    format!(
                        "duplicate provider name {:?} (first defined at line {})",
                        p.name, first.line
                    ),
                ));
            }
            out.push(p);
        }
        Ok(out)
    }

    fn provider(&self, v: &Value, list: &At, i: usize) -> Result<Provider, Error> {
        let entries = self.mapping(v, &list.item(i, None), PROVIDER_KEYS)?;
        let get = |k: &str| entries.iter().find(|(key, _)| key == k).map(|(_, v)| *v);
        let unnamed = list.item(i, None);
        let name = match get("name") {
            Some(n) => self.scalar(n, &unnamed.key("name"))?,
            None => None,
        }
        .ok_or_else(|| self.invalid(&unnamed, "every provider needs a name"))?;
        let at = list.item(i, Some(&name));
        if !valid_name(&name) {
            return Err(self.invalid(
                &at.key("name"),
                "provider names are letters, digits, '.', '_' and '-', starting with a letter or digit",
            ));
        }
        let backend = match get("type") {
            Some(t) => {
                let tat = at.key("type");
                let t = self.scalar(t, &tat)?.unwrap_or_default();
                Backend::from_type(&t).ok_or_else(|| {
                    self.invalid(
                        &tat,
                        format!("unknown type {t:?} (known: s3, gcs, azblob, oss, fs)"),
                    )
                })?
            }
            None => Backend::from_type(&name).ok_or_else(|| {
                self.invalid(&at, "type is required (s3, gcs, azblob, oss or fs)")
            })?,
        };
        let enabled = match get("enabled") {
            Some(e) => self.boolean(e, &at.key("enabled"))?,
            None => true,
        };
        let (spec, problem) = self.remote(&name, backend, get("config"), &at.key("config"))?;
        Ok(Provider {
            name,
            backend,
            enabled,
            line: self.line(&at),
            spec,
            problem,
        })
    }

    /// The provider's remote. Errors in the file's shape are returned; problems in its values
    /// come back beside a partial spec, to be reported when the provider is used.
    fn remote(
        &self,
        name: &str,
        backend: Backend,
        config: Option<&Value>,
        at: &At,
    ) -> Result<(RemoteSpec, Option<Error>), Error> {
        let known: Vec<&str> = LOCATION_KEYS
            .iter()
            .chain(OPTION_KEYS)
            .chain(KEY_ALIASES.iter().map(|(alias, _)| alias))
            .copied()
            .collect();
        let entries = match config {
            Some(v) => self.mapping(v, at, &known)?,
            None => Vec::new(),
        };
        let mut problem = None;
        // Canonical key -> (where it was written, value; None if a variable is unset).
        let mut values: BTreeMap<&str, (At, Option<String>)> = BTreeMap::new();
        for (key, v) in &entries {
            let kat = at.key(key);
            let Some(raw) = self.scalar(v, &kat)? else {
                continue;
            };
            let pieces = template(&raw).map_err(|m| self.invalid(&kat, m))?;
            let canonical = KEY_ALIASES
                .iter()
                .find(|(alias, _)| alias == key)
                .map_or(key.as_str(), |(_, k)| k);
            if let Some((first, _)) = values.get(canonical) {
                return Err(self.invalid(&kat, format!("same setting as {}", first.shown)));
            }
            let value = match resolve(&pieces, self.env) {
                Ok(s) => Some(s),
                Err(var) => {
                    problem.get_or_insert_with(|| Error::MissingVar {
                        path: self.path.to_path_buf(),
                        line: self.line(&kat),
                        key: kat.shown.clone(),
                        var,
                    });
                    None
                }
            };
            values.insert(canonical, (kat, value));
        }

        let mut spec = RemoteSpec {
            backend,
            bucket: String::new(),
            prefix: String::new(),
            options: BTreeMap::new(),
            label: Some(name.to_string()),
        };
        let mut defer = |e: Error| {
            problem.get_or_insert(e);
        };
        let given = |k: &str| values.get(k).map(|(kat, v)| (kat, v.as_deref()));
        let prefix = given("prefix").and_then(|(_, v)| v).unwrap_or("");
        spec.prefix = prefix.trim_matches('/').to_string();

        let (bucket_keys, other_keys): (&[&str], &[&str]) = match backend {
            Backend::Fs => (&["path", "root"], &["bucket", "container"]),
            Backend::Azblob => (&["container", "bucket"], &["path", "root"]),
            _ => (&["bucket"], &["container", "path", "root"]),
        };
        for k in other_keys {
            if let Some((kat, _)) = given(k) {
                let use_ = bucket_keys[0];
                defer(self.invalid(
                    kat,
                    format!("not used by type {}; use {use_}", type_name(backend)),
                ));
            }
        }
        let mut bucket = bucket_keys.iter().filter_map(|k| given(k));
        match (bucket.next(), bucket.next()) {
            (None, _) => defer(self.invalid(
                at,
                format!(
                    "{} is required for type {}",
                    bucket_keys[0],
                    type_name(backend)
                ),
            )),
            (Some(_), Some((kat, _))) => {
                defer(self.invalid(kat, format!("give only one of {}", bucket_keys.join(", "))))
            }
            (Some((_, None)), None) => {}
            (Some((kat, Some(b))), None) => {
                if b.is_empty() {
                    defer(self.invalid(kat, "must not be empty"));
                } else if backend == Backend::Fs {
                    let mut root = self.relative_to_file(Path::new(b));
                    if !spec.prefix.is_empty() {
                        root = root.join(&spec.prefix);
                        spec.prefix.clear();
                    }
                    spec.bucket = root.to_string_lossy().into_owned();
                } else if b.contains('/') {
                    defer(self.invalid(kat, "must not contain '/' (put the rest in prefix)"));
                } else {
                    spec.bucket = b.to_string();
                }
            }
        }

        for key in OPTION_KEYS {
            let Some((kat, Some(v))) = given(key) else {
                continue;
            };
            let raw_hint = || raw_of(&entries, kat);
            let v = if BOOL_KEYS.contains(key) {
                match v.to_ascii_lowercase().as_str() {
                    "true" | "false" => v.to_ascii_lowercase(),
                    _ => {
                        defer(self.invalid(kat, format!("{} is not true or false", raw_hint())));
                        continue;
                    }
                }
            } else if *key == "timeout" {
                match parse_duration_secs(v) {
                    Some(secs) => secs.to_string(),
                    None => {
                        defer(self.invalid(
                            kat,
                            format!("{} is not a duration (e.g. 120, 90s, 5m)", raw_hint()),
                        ));
                        continue;
                    }
                }
            } else if *key == "endpoint"
                && let Err(message) = crate::remote::check_endpoint(v)
            {
                defer(self.invalid(kat, message));
                continue;
            } else {
                v.to_string()
            };
            spec.options.insert(key.to_string(), v);
        }
        Ok((spec, problem))
    }

    fn cache(&self, v: &Value, at: &At) -> Result<CacheConfig, Error> {
        let mut c = CacheConfig::default();
        for (key, raw, value, kat) in self.values(v, at, CACHE_KEYS)? {
            match key.as_str() {
                "max_size" => c.max_size_bytes = Some(self.size(&raw, &value, &kat)?),
                _ => {
                    c.ttl_secs = Some(parse_duration_secs(&value).ok_or_else(|| {
                        self.invalid(
                            &kat,
                            format!("{raw:?} is not a duration (e.g. 30d, 12h, 3600)"),
                        )
                    })?)
                }
            }
        }
        Ok(c)
    }

    fn transfer(&self, v: &Value, at: &At) -> Result<TransferConfig, Error> {
        let mut t = TransferConfig::default();
        for (key, raw, value, kat) in self.values(v, at, TRANSFER_KEYS)? {
            match key.as_str() {
                "jobs" => {
                    let jobs = value
                        .trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|j| (1..=MAX_JOBS).contains(j))
                        .ok_or_else(|| {
                            self.invalid(
                                &kat,
                                format!("{raw:?} is not a number from 1 to {MAX_JOBS}"),
                            )
                        })?;
                    t.jobs = Some(jobs);
                }
                _ => {
                    let rate = parse_size(&value).filter(|&n| n > 0).ok_or_else(|| {
                        self.invalid(&kat, format!("{raw:?} is not a rate (e.g. 50M = 50 MiB/s)"))
                    })?;
                    t.rate_limit_bytes_per_sec = Some(rate);
                }
            }
        }
        Ok(t)
    }

    fn audit(&self, v: &Value, at: &At) -> Result<AuditConfig, Error> {
        let mut a = AuditConfig::default();
        for (key, raw, value, kat) in self.values(v, at, AUDIT_KEYS)? {
            match key.as_str() {
                "path" if value.is_empty() => return Err(self.invalid(&kat, "must not be empty")),
                "path" => a.path = Some(self.relative_to_file(Path::new(&value))),
                _ => a.max_size_bytes = Some(self.size(&raw, &value, &kat)?),
            }
        }
        Ok(a)
    }

    /// The entries of a mapping of scalars, checked against `known`: (key, text as written,
    /// text with variables substituted, place). Null values are left out.
    fn values(
        &self,
        v: &Value,
        at: &At,
        known: &[&str],
    ) -> Result<Vec<(String, String, String, At)>, Error> {
        let mut out = Vec::new();
        for (key, v) in self.mapping(v, at, known)? {
            let kat = at.key(&key);
            if let Some(raw) = self.scalar(v, &kat)? {
                let value = self.expand(&raw, &kat)?;
                out.push((key, raw, value, kat));
            }
        }
        Ok(out)
    }

    /// The entries of a mapping (null counts as empty), with every key in `known`.
    fn mapping<'v>(
        &self,
        v: &'v Value,
        at: &At,
        known: &[&str],
    ) -> Result<Vec<(String, &'v Value)>, Error> {
        let map = match v {
            Value::Null => return Ok(Vec::new()),
            Value::Mapping(m) => m,
            _ => return Err(self.invalid(at, format!("expected a mapping, found {}", kind(v)))),
        };
        let mut out = Vec::with_capacity(map.len());
        for (k, v) in map {
            let key = match k {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(
                        self.invalid(at, format!("keys must be strings, found {}", kind(k)))
                    );
                }
            };
            if !known.contains(&key.as_str()) {
                return Err(Error::UnknownKey {
                    path: self.path.to_path_buf(),
                    line: self.line(&at.key(&key)),
                    section: if at.shown.is_empty() {
                        "the top level".to_string()
                    } else {
                        at.shown.clone()
                    },
                    key,
                    known: known.join(", "),
                });
            }
            out.push((key, v));
        }
        Ok(out)
    }

    /// A scalar as text (`None` for null); lists and mappings are errors.
    fn scalar(&self, v: &Value, at: &At) -> Result<Option<String>, Error> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            Value::Number(n) => Ok(Some(n.to_string())),
            Value::Bool(b) => Ok(Some(b.to_string())),
            _ => Err(self.invalid(at, format!("expected a single value, found {}", kind(v)))),
        }
    }

    fn boolean(&self, v: &Value, at: &At) -> Result<bool, Error> {
        match v {
            Value::Bool(b) => Ok(*b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
            _ => Err(self.invalid(at, "expected true or false")),
        }
    }

    fn size(&self, raw: &str, value: &str, at: &At) -> Result<u64, Error> {
        parse_size(value)
            .ok_or_else(|| self.invalid(at, format!("{raw:?} is not a size (e.g. 20G, 512M)")))
    }

    /// Substitutes variables now; an unset one is an error.
    fn expand(&self, raw: &str, at: &At) -> Result<String, Error> {
        let pieces = template(raw).map_err(|m| self.invalid(at, m))?;
        resolve(&pieces, self.env).map_err(|var| Error::MissingVar {
            path: self.path.to_path_buf(),
            line: self.line(at),
            key: at.shown.clone(),
            var,
        })
    }

    fn relative_to_file(&self, p: &Path) -> PathBuf {
        let dir = self.path.parent().unwrap_or(Path::new(""));
        let joined = dir.join(p);
        std::path::absolute(&joined).unwrap_or(joined)
    }

    fn invalid(&self, at: &At, message: impl Into<String>) -> Error {
        Error::Invalid {
            path: self.path.to_path_buf(),
            line: self.line(at),
            key: if at.shown.is_empty() {
                "(top level)".to_string()
            } else {
                at.shown.clone()
            },
            message: message.into(),
        }
    }

    fn syntax(&self, e: &serde_yaml::Error) -> Error {
        Error::Syntax {
            path: self.path.to_path_buf(),
            line: e.location().map_or(1, |l| l.line()),
            message: e.to_string(),
        }
    }

    /// The line of `at`, or of its nearest ancestor that can be found (keys brought in by a
    /// `<<` merge live elsewhere).
    fn line(&self, at: &At) -> usize {
        (0..=at.segs.len())
            .rev()
            .find_map(|n| locate(self.text, &at.segs[..n]))
            .unwrap_or(1)
    }
}

/// The text as written for the entry that became `at` (for messages about non-secret keys).
fn raw_of(entries: &[(String, &Value)], at: &At) -> String {
    let Some(Seg::Key(k)) = at.segs.last() else {
        return String::new();
    };
    match entries.iter().find(|(key, _)| key == k).map(|(_, v)| *v) {
        Some(Value::String(s)) => format!("{s:?}"),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn type_name(b: Backend) -> &'static str {
    match b {
        Backend::Fs => "fs",
        Backend::S3 => "s3",
        Backend::Gcs => "gcs",
        Backend::Azblob => "azblob",
        Backend::Oss => "oss",
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A string value split into literal text and `${...}` references.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var {
        name: String,
        default: Option<String>,
    },
}

/// Splits `raw` at `${VAR}` / `${VAR:-default}`, turning `$$` into `$`. The error says what is
/// wrong, quoting only the file's own text.
fn template(raw: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = raw;
    while let Some(pos) = rest.find('$') {
        text.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(r) = after.strip_prefix('$') {
            text.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or("unterminated ${ (write $$ for a literal $)")?;
            let (name, default) = match body[..end].split_once(":-") {
                Some((n, d)) => (n, Some(d.to_string())),
                None => (&body[..end], None),
            };
            if !valid_var(name) {
                return Err(format!(
                    "invalid variable name {name:?} (use ${{NAME}} or ${{NAME:-default}})"
                ));
            }
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Var {
                name: name.to_string(),
                default,
            });
            rest = &body[end + 1..];
        } else {
            text.push('$');
            rest = after;
        }
    }
    text.push_str(rest);
    if !text.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

fn valid_var(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Substitutes variables; `Err(name)` for the first unset one without a default. `${VAR}` set
/// to the empty string gives the empty string.
fn resolve(pieces: &[Piece], env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Var { name, default } => match (env(name), default) {
                (Some(v), None) => out.push_str(&v),
                (Some(v), Some(_)) if !v.is_empty() => out.push_str(&v),
                (_, Some(d)) => out.push_str(d),
                (None, None) => return Err(name.clone()),
            },
        }
    }
    Ok(out)
}

// Line lookup. serde_yaml's `Value` has no positions, but errors raised while deserializing
// carry the position of the YAML node being read. `locate` walks the document to `segs` and
// raises an error at the key (or element) found there, then reads the error's line.

/// Message of the error `locate` raises; any other error means "not found".
const FOUND: &str = "mvault-config-locate-found";

/// 1-based line of the key or sequence element at `segs` (the whole document for `[]`).
fn locate(text: &str, segs: &[Seg]) -> Option<usize> {
    match Locate(segs).deserialize(serde_yaml::Deserializer::from_str(text)) {
        Err(e) if e.to_string().contains(FOUND) => e.location().map(|l| l.line()),
        _ => None,
    }
}

/// Walks to `.0`, raising [`FOUND`] there; otherwise reads everything and returns `Ok`.
struct Locate<'p>(&'p [Seg]);

impl<'de> DeserializeSeed<'de> for Locate<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Locate<'_> {
    fn scalar<E: de::Error>(self) -> Result<(), E> {
        if self.0.is_empty() {
            Err(E::custom(FOUND))
        } else {
            Ok(())
        }
    }
}

impl<'de> Visitor<'de> for Locate<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (key, rest) = match self.0.split_first() {
            None => return Err(de::Error::custom(FOUND)),
            Some((Seg::Key(k), rest)) => (Some(k.as_str()), rest),
            Some((Seg::Index(_), rest)) => (None, rest),
        };
        let seed = KeyIs {
            key,
            here: rest.is_empty(),
        };
        while let Some(hit) = map.next_key_seed(seed)? {
            if hit {
                map.next_value_seed(Locate(rest))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (index, rest) = match self.0.split_first() {
            None => return Err(de::Error::custom(FOUND)),
            Some((Seg::Index(i), rest)) => (Some(*i), rest),
            Some((Seg::Key(_), rest)) => (None, rest),
        };
        let mut i = 0;
        loop {
            let more = if Some(i) == index {
                seq.next_element_seed(Locate(rest))?.is_some()
            } else {
                seq.next_element::<IgnoredAny>()?.is_some()
            };
            if !more {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.scalar()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
}

/// Reads a mapping key: `Ok(true)` if it is `key`, or raises [`FOUND`] at it when `here`.
#[derive(Clone, Copy)]
struct KeyIs<'k> {
    key: Option<&'k str>,
    here: bool,
}

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl KeyIs<'_> {
    fn check<E: de::Error>(self, k: &str) -> Result<bool, E> {
        match (self.key == Some(k), self.here) {
            (true, true) => Err(E::custom(FOUND)),
            (hit, _) => Ok(hit),
        }
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, k: &str) -> Result<bool, E> {
        self.check(k)
    }
    fn visit_bool<E: de::Error>(self, k: bool) -> Result<bool, E> {
        self.check(&k.to_string())
    }
    fn visit_i64<E: de::Error>(self, k: i64) -> Result<bool, E> {
        self.check(&k.to_string())
    }
    fn visit_i128<E: de::Error>(self, k: i128) -> Result<bool, E> {
        self.check(&k.to_string())
    }
    fn visit_u64<E: de::Error>(self, k: u64) -> Result<bool, E> {
        self.check(&k.to_string())
    }
    fn visit_u128<E: de::Error>(self, k: u128) -> Result<bool, E> {
        self.check(&k.to_string())
    }
    fn visit_f64<E: de::Error>(self, k: f64) -> Result<bool, E> {
        self.check(&k.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn parse(text: &str, vars: &[(&str, &str)]) -> Result<Config, Error> {
        Config::parse_with_env(text, Path::new("/etc/mv/mvault.yaml"), env_of(vars))
    }

    fn err(text: &str, vars: &[(&str, &str)]) -> String {
        parse(text, vars).unwrap_err().to_string()
    }

    const SEED: &str = "\
cloud_storage:
  default_provider: aws_s3
  providers:
    - name: aws_s3
      type: s3
      enabled: true
      config: { bucket: eitp-models, region: us-east-1, prefix: /models/, access_key: \"${AWS_ACCESS_KEY_ID}\", secret_key: \"${AWS_SECRET_ACCESS_KEY}\" }
    - name: google_cloud
      enabled: false
      config:
        bucket: eitp-gcs
        credentials_path: \"${GOOGLE_APPLICATION_CREDENTIALS}\"
    - name: azure_blob
      config:
        container: models
        connection_string: \"${AZURE_STORAGE_CONNECTION_STRING}\"
        timeout: 2m
    - name: local
      config:
        path: vault
        prefix: team
  cache:
    max_size: 20G
    ttl: 30d
  transfer:
    jobs: 16
    rate_limit: 50M
  audit:
    path: /var/log/mvault/audit.jsonl
    max_size: 10M
";

    const AWS: &[(&str, &str)] = &[
        ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEY01"),
        ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMIsecretKEYab"),
    ];

    #[test]
    fn parses_the_seed_shape() {
        let c = parse(SEED, AWS).unwrap();
        assert_eq!(c.default_provider.as_deref(), Some("aws_s3"));
        let s3 = c.default_spec().unwrap().unwrap();
        assert_eq!(s3.backend, Backend::S3);
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str()),
            ("eitp-models", "models")
        );
        assert_eq!(s3.label.as_deref(), Some("aws_s3"));
        assert_eq!(s3.options["region"], "us-east-1");
        assert_eq!(s3.options["secret_key"], "wJalrXUtnFEMIsecretKEYab");

        let names: Vec<_> = c
            .enabled_providers()
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["aws_s3", "azure_blob", "local"]);
        assert_eq!(c.providers[1].backend, Backend::Gcs);
        assert_eq!(c.providers[0].line, 4);
        assert_eq!(c.providers[3].line, 18);

        // azure_blob's variable is unset: reported only when it is used.
        let az = c.spec("azure_blob").unwrap_err().to_string();
        assert_eq!(
            az,
            "/etc/mv/mvault.yaml:16: cloud_storage.providers[azure_blob].config.connection_string: \
             environment variable AZURE_STORAGE_CONNECTION_STRING is not set \
             (set it, or write ${AZURE_STORAGE_CONNECTION_STRING:-default})"
        );
        let p = &c.providers[2];
        assert_eq!(
            (p.spec.bucket.as_str(), p.spec.options["timeout"].as_str()),
            ("models", "120")
        );

        let local = c.spec("local").unwrap();
        assert_eq!(local.backend, Backend::Fs);
        assert_eq!(local.bucket, "/etc/mv/vault/team");
        assert_eq!(local.prefix, "");

        assert_eq!(
            c.cache,
            CacheConfig {
                max_size_bytes: Some(20 << 30),
                ttl_secs: Some(30 * 86_400)
            }
        );
        assert_eq!(
            c.transfer,
            TransferConfig {
                jobs: Some(16),
                rate_limit_bytes_per_sec: Some(50 << 20)
            }
        );
        assert_eq!(
            c.audit.path.as_deref(),
            Some(Path::new("/var/log/mvault/audit.jsonl"))
        );
        assert_eq!(c.audit.max_size_bytes, Some(10 << 20));
    }

    #[test]
    fn empty_and_missing_sections_give_defaults() {
        for text in [
            "",
            "# nothing\n",
            "cloud_storage:\n",
            "cloud_storage:\n  providers:\n",
        ] {
            let c = parse(text, &[]).unwrap();
            assert!(
                c.providers.is_empty() && c.default_provider.is_none(),
                "{text:?}"
            );
            assert_eq!(c.cache, CacheConfig::default());
            assert!(c.default_spec().is_none());
        }
    }

    #[test]
    fn interpolation() {
        let env = env_of(&[("SET", "v"), ("EMPTY", "")]);
        let x = |raw: &str| resolve(&template(raw).unwrap(), &env);
        assert_eq!(x("a-${SET}-b").unwrap(), "a-v-b");
        assert_eq!(x("${UNSET:-d}").unwrap(), "d");
        assert_eq!(x("${SET:-d}").unwrap(), "v");
        assert_eq!(x("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(x("${EMPTY}").unwrap(), "");
        assert_eq!(x("${UNSET:-}").unwrap(), "");
        assert_eq!(x("$${SET} costs $5 $").unwrap(), "${SET} costs $5 $");
        assert_eq!(x("plain").unwrap(), "plain");
        assert_eq!(x("").unwrap(), "");
        assert_eq!(x("${SET}${UNSET}").unwrap_err(), "UNSET");
        assert!(template("${SET").unwrap_err().contains("unterminated"));
        assert!(template("${}").is_err());
        assert!(template("${1X}").is_err());
        assert!(template("${A B}").is_err());
    }

    #[test]
    fn interpolates_top_level_sections_eagerly() {
        let text = "cloud_storage:\n  audit:\n    path: ${LOGS:-/tmp}/audit.jsonl\n  cache:\n    max_size: ${CACHE_SIZE}\n";
        let c = parse(text, &[("CACHE_SIZE", "1G")]).unwrap();
        assert_eq!(c.audit.path.as_deref(), Some(Path::new("/tmp/audit.jsonl")));
        assert_eq!(c.cache.max_size_bytes, Some(1 << 30));
        assert_eq!(
            err(text, &[]),
            "/etc/mv/mvault.yaml:5: cloud_storage.cache.max_size: environment variable CACHE_SIZE \
             is not set (set it, or write ${CACHE_SIZE:-default})"
        );
        let e = err(text, &[("CACHE_SIZE", "lots-of-hunter2")]);
        assert!(e.contains(":5:") && e.contains("${CACHE_SIZE}"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn missing_variable_names_file_line_and_key() {
        let text = "\
cloud_storage:
  providers:
    - name: prod
      type: s3
      config:
        bucket: b
        secret_access_key: ${PROD_SECRET}
";
        let c = parse(text, &[]).unwrap();
        let e = c.spec("prod").unwrap_err();
        assert!(matches!(&e, Error::MissingVar { line: 7, var, .. } if var == "PROD_SECRET"));
        let msg = e.to_string();
        assert!(
            msg.starts_with(
                "/etc/mv/mvault.yaml:7: cloud_storage.providers[prod].config.secret_access_key:"
            ),
            "{msg}"
        );
        assert_eq!(c.providers[0].problem(), Some(&e));
        // Set, the alias lands on the canonical key.
        let c = parse(text, &[("PROD_SECRET", "s3cr3t")]).unwrap();
        assert_eq!(c.spec("prod").unwrap().options["secret_key"], "s3cr3t");
    }

    #[test]
    fn unknown_keys_are_refused_with_line_and_known_keys() {
        let e = err(
            "cloud_storage:\n  providers:\n    - name: a\n      type: s3\n      config:\n        bucket: b\n        regoin: x\n",
            &[],
        );
        assert!(e.starts_with("/etc/mv/mvault.yaml:7: unknown key \"regoin\" in cloud_storage.providers[a].config (known: bucket, container,"), "{e}");
        assert!(e.contains("region") && e.contains("access_key_id"), "{e}");

        let e = err("cloud_storage: {}\nstorage: {}\n", &[]);
        assert!(e.starts_with("/etc/mv/mvault.yaml:2: unknown key \"storage\" in the top level (known: cloud_storage)"), "{e}");
        let e = err(
            "cloud_storage:\n  cache:\n    max_size: 1G\n    ttl_days: 3\n",
            &[],
        );
        assert!(
            e.contains(
                ":4: unknown key \"ttl_days\" in cloud_storage.cache (known: max_size, ttl)"
            ),
            "{e}"
        );
        let e = err(
            "cloud_storage:\n  providers:\n  - name: a\n    type: s3\n    bucket: b\n",
            &[],
        );
        assert!(e.contains(":5: unknown key \"bucket\" in cloud_storage.providers[0] (known: name, type, enabled, config)"), "{e}");
    }

    #[test]
    fn bad_yaml_names_the_line() {
        let e = parse(
            "cloud_storage:\n  providers:\n    - name: a\n   type: s3\n",
            &[],
        )
        .unwrap_err();
        assert!(matches!(e, Error::Syntax { line: 4, .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("/etc/mv/mvault.yaml:4: invalid YAML: "),
            "{e}"
        );
        let e = parse("cloud_storage:\n  cache: {}\n  cache: {}\n", &[]).unwrap_err();
        // serde_yaml reports a duplicate key at the start of its mapping.
        assert!(matches!(e, Error::Syntax { line: 2, .. }), "{e}");
        assert!(
            e.to_string().contains("duplicate entry with key \"cache\""),
            "{e}"
        );
    }

    #[test]
    fn wrong_kinds_and_values_are_refused() {
        for (text, want) in [
            (
                "cloud_storage: [1]\n",
                "/etc/mv/mvault.yaml:1: cloud_storage: expected a mapping, found a list",
            ),
            (
                "cloud_storage:\n  transfer:\n    jobs: 0\n",
                ":3: cloud_storage.transfer.jobs: \"0\" is not a number from 1 to 1024",
            ),
            (
                "cloud_storage:\n  transfer:\n    rate_limit: fast\n",
                ":3: cloud_storage.transfer.rate_limit: \"fast\" is not a rate",
            ),
            (
                "cloud_storage:\n  cache:\n    ttl: 3 days\n",
                ":3: cloud_storage.cache.ttl: \"3 days\" is not a duration",
            ),
            (
                "cloud_storage:\n  providers:\n    - name: a\n      type: fs\n      enabled: maybe\n",
                ":5: cloud_storage.providers[a].enabled: expected true or false",
            ),
            (
                "cloud_storage:\n  providers:\n    - type: s3\n",
                ":3: cloud_storage.providers[0]: every provider needs a name",
            ),
            (
                "cloud_storage:\n  providers:\n    - name: s3://x\n",
                ":3: cloud_storage.providers[s3://x].name: provider names are",
            ),
            (
                "cloud_storage:\n  providers:\n    - name: a\n      type: s3\n      config:\n        bucket: [x]\n",
                ":6: cloud_storage.providers[a].config.bucket: expected a single value, found a list",
            ),
            (
                "cloud_storage:\n  providers:\n    - name: a\n      type: s3\n      config:\n        bucket: ${X\n",
                ":6: cloud_storage.providers[a].config.bucket: unterminated ${",
            ),
            (
                "cloud_storage:\n  default_provider: nope\n  providers:\n    - name: a\n      type: fs\n",
                ":2: cloud_storage.default_provider: no provider is named \"nope\" (known: a)",
            ),
            (
                "cloud_storage:\n  providers:\n    - name: a\n      type: s3\n      config: {bucket: b, access_key: x, access_key_id: y}\n",
                ":5: cloud_storage.providers[a].config.access_key_id: same setting as cloud_storage.providers[a].config.access_key",
            ),
        ] {
            let e = err(text, &[]);
            assert!(e.contains(want), "{text:?}\n got: {e}\nwant: {want}");
        }
    }

    #[test]
    fn provider_types() {
        let e = err(
            "cloud_storage:\n  providers:\n    - name: a\n      type: ftp\n",
            &[],
        );
        assert_eq!(
            e,
            "/etc/mv/mvault.yaml:4: cloud_storage.providers[a].type: unknown type \"ftp\" (known: s3, gcs, azblob, oss, fs)"
        );
        let e = err("cloud_storage:\n  providers:\n    - name: mine\n", &[]);
        assert!(
            e.contains(":3: cloud_storage.providers[mine]: type is required"),
            "{e}"
        );
        let text = "cloud_storage:\n  providers:\n    - {name: google_cloud, config: {bucket: g}}\n    - {name: aliyun_oss, config: {bucket: o, region: cn-hangzhou}}\n    - {name: x, type: azblob, config: {bucket: c}}\n";
        let c = parse(text, &[]).unwrap();
        let backends: Vec<_> = c.providers.iter().map(|p| p.backend).collect();
        assert_eq!(backends, [Backend::Gcs, Backend::Oss, Backend::Azblob]);
        assert_eq!(c.spec("x").unwrap().bucket, "c");
    }

    #[test]
    fn provider_value_problems_are_deferred() {
        let text = "\
cloud_storage:
  providers:
    - name: nobucket
      type: s3
      config:
        region: x
    - name: both
      type: azblob
      config: {container: a, bucket: b}
    - name: wrongkey
      type: gcs
      config: {bucket: a, path: /x}
    - name: badtimeout
      type: s3
      config: {bucket: a, timeout: soon}
    - name: slash
      type: oss
      config: {bucket: a/b}
    - name: fsnopath
      type: fs
    - name: badbool
      type: s3
      config: {bucket: a, anonymous: yes}
";
        let c = parse(text, &[]).unwrap();
        let e = |n: &str| c.spec(n).unwrap_err().to_string();
        assert!(
            e("nobucket").contains(
                ":5: cloud_storage.providers[nobucket].config: bucket is required for type s3"
            ),
            "{}",
            e("nobucket")
        );
        assert!(e("both").contains(":9: cloud_storage.providers[both].config.bucket: give only one of container, bucket"), "{}", e("both"));
        assert!(e("wrongkey").contains(":12: cloud_storage.providers[wrongkey].config.path: not used by type gcs; use bucket"), "{}", e("wrongkey"));
        assert!(e("badtimeout").contains(":15: cloud_storage.providers[badtimeout].config.timeout: \"soon\" is not a duration"), "{}", e("badtimeout"));
        assert!(
            e("slash").contains("must not contain '/'"),
            "{}",
            e("slash")
        );
        assert!(
            e("fsnopath").contains(
                ":19: cloud_storage.providers[fsnopath].config: path is required for type fs"
            ),
            "{}",
            e("fsnopath")
        );
        assert!(e("badbool").contains(":23: cloud_storage.providers[badbool].config.anonymous: \"yes\" is not true or false"), "{}", e("badbool"));
        let c = parse("cloud_storage:\n  providers:\n    - {name: a, type: s3, config: {bucket: b, anonymous: TRUE, virtual_host_style: false}}\n", &[]).unwrap();
        let s = c.spec("a").unwrap();
        assert_eq!(
            (
                s.options["anonymous"].as_str(),
                s.options["virtual_host_style"].as_str()
            ),
            ("true", "false")
        );
    }

    #[test]
    fn disabled_and_unknown_providers_are_refused_by_name() {
        let text = "cloud_storage:\n  default_provider: old\n  providers:\n    - name: live\n      type: fs\n      config: {path: /v}\n    - name: old\n      type: s3\n      enabled: false\n      config: {bucket: \"${NEVER_SET}\"}\n";
        let c = parse(text, &[]).unwrap();
        let e = c.provider("old").unwrap_err();
        assert_eq!(
            e.to_string(),
            "provider old is disabled in /etc/mv/mvault.yaml:7; set enabled: true"
        );
        assert!(matches!(
            c.default_spec(),
            Some(Err(Error::Disabled { .. }))
        ));
        assert!(c.provider("live").is_ok());
        let e = c.provider("other").unwrap_err().to_string();
        assert_eq!(
            e,
            "provider \"other\" is not defined in /etc/mv/mvault.yaml (known: live, old)"
        );
        let e = Config::default().provider("x").unwrap_err().to_string();
        assert!(e.contains("no config file found"), "{e}");

        let e = err(
            "cloud_storage:\n  providers:\n    - {name: a, type: fs}\n    - name: b\n      type: fs\n    - name: a\n      type: s3\n",
            &[],
        );
        assert_eq!(
            e,
            "/etc/mv/mvault.yaml:6: cloud_storage.providers[a].name: duplicate provider name \"a\" (first defined at line 3)"
        );
    }

    #[test]
    fn masks_secrets() {
        let text = "cloud_storage:\n  providers:\n    - name: a\n      type: s3\n      config:\n        bucket: b\n        region: eu\n        access_key: ${AK}\n        secret_key: ${SK}\n        session_token: short\n";
        let c = parse(
            text,
            &[
                ("AK", "AKIAEXAMPLEKEY01"),
                ("SK", "wJalrXUtnFEMIsecretKEYab"),
            ],
        )
        .unwrap();
        let m = c.providers[0].masked_options();
        assert_eq!(m["region"], "eu");
        assert_eq!(m["access_key"], "****01");
        assert_eq!(m["secret_key"], "****ab");
        assert_eq!(m["session_token"], "***");
        assert!(!format!("{:?}", c).contains("wJalrXUtnFEMIsecretKEY"));
    }

    #[test]
    fn search_order() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().join("work");
        let xdg = dir.path().join("xdg");
        let home = dir.path().join("home");
        for d in [&cwd, &xdg.join("mvault"), &home.join(".config/mvault")] {
            std::fs::create_dir_all(d).unwrap();
        }
        let xdg_s = xdg.to_str().unwrap();
        let home_s = home.to_str().unwrap();
        let env_all = [("XDG_CONFIG_HOME", xdg_s), ("HOME", home_s)];
        let find = |explicit: Option<&Path>, env: &[(&str, &str)]| {
            Config::find(explicit, &cwd, env_of(env))
        };

        assert_eq!(find(None, &env_all).unwrap(), None);
        assert!(
            Config::load_from(None, &cwd, env_of(&env_all))
                .unwrap()
                .path
                .is_none()
        );

        std::fs::write(home.join(".config/mvault/config.yaml"), "").unwrap();
        assert_eq!(
            find(None, &[("HOME", home_s)]).unwrap(),
            Some(home.join(".config/mvault/config.yaml"))
        );
        assert_eq!(find(None, &env_all).unwrap(), None);
        std::fs::write(xdg.join("mvault/config.yaml"), "").unwrap();
        assert_eq!(
            find(None, &env_all).unwrap(),
            Some(xdg.join("mvault/config.yaml"))
        );
        std::fs::write(cwd.join("cloud_storage_config.yaml"), "").unwrap();
        assert_eq!(
            find(None, &env_all).unwrap(),
            Some(cwd.join("cloud_storage_config.yaml"))
        );
        std::fs::write(
            cwd.join("mvault.yaml"),
            "cloud_storage:\n  transfer: {jobs: 3}\n",
        )
        .unwrap();
        assert_eq!(find(None, &env_all).unwrap(), Some(cwd.join("mvault.yaml")));
        let c = Config::load_from(None, &cwd, env_of(&env_all)).unwrap();
        assert_eq!(c.transfer.jobs, Some(3));

        // An explicit file wins, and must exist; relative names are taken from the cwd.
        std::fs::write(cwd.join("other.yaml"), "").unwrap();
        assert_eq!(
            find(Some(Path::new("other.yaml")), &env_all).unwrap(),
            Some(cwd.join("other.yaml"))
        );
        let env_var = [("MVAULT_CONFIG", "other.yaml")];
        assert_eq!(find(None, &env_var).unwrap(), Some(cwd.join("other.yaml")));
        let e = find(Some(Path::new("absent.yaml")), &env_var).unwrap_err();
        assert_eq!(
            e,
            Error::Missing {
                path: cwd.join("absent.yaml")
            }
        );
        assert!(e.to_string().ends_with("absent.yaml does not exist"));

        std::fs::write(cwd.join("bad.yaml"), "a: [\n").unwrap();
        let e = Config::load_from(Some(Path::new("bad.yaml")), &cwd, env_of(&[])).unwrap_err();
        assert!(
            matches!(&e, Error::Syntax { path, .. } if path == &cwd.join("bad.yaml")),
            "{e}"
        );
    }

    #[test]
    fn merges_and_lines_in_flow_style() {
        let text = "\
defaults: &d
  type: s3
cloud_storage:
  providers:
    - name: a
      <<: *d
      config: {bucket: b, endpoint: \"http://127.0.0.1:9000\"}
";
        // `defaults` is not a known key, even as an anchor holder.
        assert!(err(text, &[]).contains(":1: unknown key \"defaults\""));
        let text = "cloud_storage:\n  providers:\n    - &p {name: a, type: s3, config: {bucket: b}}\n    - <<: *p\n      name: b\n";
        let c = parse(text, &[]).unwrap();
        assert_eq!(c.spec("b").unwrap().bucket, "b");
        assert_eq!(locate(text, &[]), Some(1));
        let at = At::default()
            .key("cloud_storage")
            .key("providers")
            .item(1, None)
            .key("type");
        assert_eq!(
            Parser {
                text,
                path: Path::new("x"),
                env: &|_: &str| None::<String>
            }
            .line(&at),
            4,
            "a merged key falls back to its mapping"
        );
    }
}
