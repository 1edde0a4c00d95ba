//! The file's shape as serde types (parsed by serde-saphyr, with spans), and their checking
//! into a [`Config`]. Leaves accept any YAML value, so a list where a single value belongs, or
//! a value that is not valid once its variables are substituted, is reported with its dotted
//! key; a section of the wrong kind is reported by serde-saphyr, with its line.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::{MessageFormatter, Spanned, UserMessageFormatter};

use super::env::{Bad, expand};
use super::{Config, Error, KEY_ALIASES, Provider};
use crate::remote::{Backend, OPTION_KEYS, RemoteSpec, check_option};
use crate::util::{parse_duration_secs, parse_size};

/// Provider `config` keys that are not remote options; the first four name the bucket.
const LOCATION_KEYS: &[&str] = &["bucket", "container", "path", "root", "prefix"];
/// The `type` names, as [`Backend::from_type`] reads them.
const TYPES: &[&str] = &["s3", "gcs", "azblob", "oss", "fs"];
/// Largest `transfer.jobs`, as for `--jobs`.
const MAX_JOBS: usize = 1024;
const SIZE: &str = "a size (e.g. 20G, 512M)";

/// A scalar (or, wrongly, a list or mapping), with where it is.
type Leaf = Option<Spanned<Value>>;
type Map = Spanned<BTreeMap<String, Spanned<Value>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (cloud_storage: ...)")]
struct Root {
    cloud_storage: Option<Cloud>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(expecting = "a mapping (default_provider, providers, ...)")]
struct Cloud {
    default_provider: Leaf,
    providers: Option<Vec<Spanned<Entry>>>,
    cache: Option<Cache>,
    transfer: Option<Transfer>,
    audit: Option<Audit>,
    encryption: Option<Encryption>,
    usage: Option<Usage>,
    signing: Option<Signing>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(expecting = "a provider mapping (name, type, enabled, config)")]
struct Entry {
    name: Leaf,
    #[serde(rename = "type")]
    kind: Leaf,
    enabled: Leaf,
    config: Option<Map>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (max_size, ttl)")]
struct Cache {
    max_size: Leaf,
    ttl: Leaf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (jobs, rate_limit)")]
struct Transfer {
    jobs: Leaf,
    rate_limit: Leaf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (path, max_size)")]
struct Audit {
    path: Leaf,
    max_size: Leaf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (key_file)")]
struct Encryption {
    key_file: Leaf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (alert_monthly_cost)")]
struct Usage {
    alert_monthly_cost: Leaf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (key, trusted_keys)")]
struct Signing {
    key: Leaf,
    /// A path, or a list of paths.
    trusted_keys: Leaf,
}

/// 1-based line of a node (a merged value: of its `<<` entry).
fn line<T>(s: &Spanned<T>) -> usize {
    (s.referenced.line() as usize).max(1)
}

/// A scalar found in the file: its text as written, where it is, and its dotted key.
struct Val {
    raw: String,
    line: usize,
    key: String,
}

impl Config {
    /// Parses `text`, read from `path` (used in messages and for relative paths), taking
    /// `${VAR}` values from `env`.
    pub fn parse(
        text: &str,
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, Error> {
        let cx = Cx { path, env: &env };
        // Strict booleans: `yes`/`on` stay strings, so `anonymous: yes` is refused, not `true`.
        let options = serde_saphyr::options! { strict_booleans: true };
        let root: Root =
            serde_saphyr::from_str_with_options(text, options).map_err(|e| cx.yaml(&e))?;
        let mut config = Config {
            path: Some(path.to_path_buf()),
            ..Config::default()
        };
        let Some(cloud) = root.cloud_storage else {
            return Ok(config);
        };
        for (i, item) in cloud.providers.iter().flatten().enumerate() {
            let p = cx.provider(item, i, &config.providers)?;
            config.providers.push(p);
        }
        if let Some(c) = cloud.cache {
            config.cache.max_size_bytes =
                cx.get(&c.max_size, "cache.max_size", parse_size, SIZE)?;
            let what = "a duration (e.g. 30d, 12h, 3600)";
            config.cache.ttl_secs = cx.get(&c.ttl, "cache.ttl", parse_duration_secs, what)?;
        }
        if let Some(t) = cloud.transfer {
            let jobs = |v: &str| v.trim().parse().ok().filter(|j| (1..=MAX_JOBS).contains(j));
            let what = format!("a number from 1 to {MAX_JOBS}");
            config.transfer.jobs = cx.get(&t.jobs, "transfer.jobs", jobs, &what)?;
            let rate = |v: &str| parse_size(v).filter(|&n| n > 0);
            let what = "a rate (e.g. 50M = 50 MiB/s)";
            config.transfer.rate_limit_bytes_per_sec =
                cx.get(&t.rate_limit, "transfer.rate_limit", rate, what)?;
        }
        if let Some(a) = cloud.audit {
            let path = |v: &str| (!v.is_empty()).then(|| cx.relative_to_file(Path::new(v)));
            config.audit.path = cx.get(&a.path, "audit.path", path, "a path")?;
            config.audit.max_size_bytes =
                cx.get(&a.max_size, "audit.max_size", parse_size, SIZE)?;
        }
        if let Some(e) = cloud.encryption {
            let path = |v: &str| (!v.is_empty()).then(|| cx.relative_to_file(Path::new(v)));
            config.encryption.key_file =
                cx.get(&e.key_file, "encryption.key_file", path, "a path")?;
        }
        if let Some(u) = cloud.usage {
            let usd = |v: &str| {
                v.trim()
                    .parse()
                    .ok()
                    .filter(|c: &f64| c.is_finite() && *c >= 0.0)
            };
            let what = "an amount in USD per month (e.g. 50 or 12.5)";
            config.usage.alert_monthly_cost_usd =
                cx.get(&u.alert_monthly_cost, "usage.alert_monthly_cost", usd, what)?;
        }
        if let Some(sg) = cloud.signing {
            let path = |v: &str| (!v.is_empty()).then(|| cx.relative_to_file(Path::new(v)));
            config.signing.key = cx.get(&sg.key, "signing.key", path, "a path")?;
            config.signing.trusted_keys = cx.paths(&sg.trusted_keys, "signing.trusted_keys")?;
        }
        let names: Vec<_> = config.providers.iter().map(|p| p.name.as_str()).collect();
        let known = |n: &str| names.contains(&n).then(|| n.to_string());
        let what = format!("the name of a provider (known: {})", names.join(", "));
        let default = cx.get(&cloud.default_provider, "default_provider", known, &what)?;
        config.default_provider = default;
        Ok(config)
    }
}

/// One parse of one file.
struct Cx<'a> {
    path: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Cx<'_> {
    /// The `i`th entry of `providers`, coming after `before`.
    fn provider(
        &self,
        item: &Spanned<Entry>,
        i: usize,
        before: &[Provider],
    ) -> Result<Provider, Error> {
        let (pline, e) = (line(item), &item.value);
        let unnamed = format!("cloud_storage.providers[{i}]");
        let name = self
            .leaf(e.name.as_ref(), &format!("{unnamed}.name"))?
            .ok_or_else(|| self.bad(pline, &unnamed, "every provider needs a name"))?;
        let at = format!("cloud_storage.providers[{}]", name.raw);
        let name_key = format!("{at}.name");
        let mut chars = name.raw.chars();
        if !chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            let msg = "provider names are letters, digits, '.', '_' and '-', starting with a letter or digit";
            return Err(self.bad(name.line, &name_key, msg));
        }
        if let Some(first) = before.iter().find(|p| p.name == name.raw) {
            let msg = format!(
                "duplicate provider name {:?} (first defined at line {})",
                name.raw, first.line
            );
            return Err(self.bad(name.line, &name_key, msg));
        }
        let backend = match self.leaf(e.kind.as_ref(), &format!("{at}.type"))? {
            Some(t) => Backend::from_type(&t.raw).ok_or_else(|| {
                let msg = format!("unknown type {:?} (known: {})", t.raw, TYPES.join(", "));
                self.bad(t.line, &t.key, msg)
            })?,
            None => Backend::from_type(&name.raw).ok_or_else(|| {
                self.bad(pline, &at, "type is required (s3, gcs, azblob, oss or fs)")
            })?,
        };
        let enabled = match self.leaf(e.enabled.as_ref(), &format!("{at}.enabled"))? {
            None => true,
            Some(v) => match v.raw.to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(self.bad(v.line, &v.key, "expected true or false")),
            },
        };
        let (spec, problem) = self.remote(&name.raw, backend, &e.config, &at, pline)?;
        Ok(Provider {
            name: name.raw,
            backend,
            enabled,
            line: pline,
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
        config: &Option<Map>,
        at: &str,
        pline: usize,
    ) -> Result<(RemoteSpec, Option<Error>), Error> {
        let at = format!("{at}.config");
        let aliases = KEY_ALIASES.iter().map(|(alias, _)| alias);
        let known: Vec<&str> = LOCATION_KEYS
            .iter()
            .chain(OPTION_KEYS)
            .chain(aliases)
            .copied()
            .collect();
        let mut pairs: Vec<_> = config.iter().flat_map(|c| &c.value).collect();
        pairs.sort_by_key(|(_, v)| (v.referenced.line(), v.referenced.column()));
        let mut problem = None;
        // Canonical key -> (the value as found, its value; None if a variable is unset).
        let mut values: BTreeMap<&str, (Val, Option<String>)> = BTreeMap::new();
        for (key, v) in pairs {
            if !known.contains(&key.as_str()) {
                let msg = format!("unknown key {key:?} in {at} (known: {})", known.join(", "));
                return Err(self.at(line(v), msg));
            }
            let Some(val) = self.leaf(Some(v), &format!("{at}.{key}"))? else {
                continue;
            };
            let alias = KEY_ALIASES.iter().find(|(alias, _)| alias == key);
            let canonical = alias.map_or(key.as_str(), |(_, k)| k);
            if let Some((first, _)) = values.get(canonical) {
                let msg = format!("same setting as {}", first.key);
                return Err(self.bad(val.line, &val.key, msg));
            }
            let value = match expand(&val.raw, self.env) {
                Ok(value) => Some(value),
                Err(b @ Bad::Unset(_)) => {
                    problem.get_or_insert(self.bad(val.line, &val.key, b));
                    None
                }
                Err(b) => return Err(self.bad(val.line, &val.key, b)),
            };
            values.insert(canonical, (val, value));
        }

        let given = |k: &str| values.get(k).map(|(v, value)| (v, value.as_deref()));
        let prefix = given("prefix").and_then(|(_, v)| v).unwrap_or("");
        let mut spec = RemoteSpec {
            backend,
            bucket: String::new(),
            prefix: prefix.trim_matches('/').to_string(),
            options: BTreeMap::new(),
            label: Some(name.to_string()),
        };
        // The whole `config` mapping, for a problem with no single key.
        let (raw, line, key) = (String::new(), config.as_ref().map_or(pline, line), at);
        let whole = Val { raw, line, key };
        let mut defer = |v: &Val, msg: String| {
            problem.get_or_insert(self.bad(v.line, &v.key, msg));
        };
        let bucket_keys: &[&str] = match backend {
            Backend::Fs => &["path", "root"],
            Backend::Azblob => &["container", "bucket"],
            _ => &["bucket"],
        };
        let ty = TYPES
            .iter()
            .find(|t| Backend::from_type(t) == Some(backend));
        let ty = ty.copied().unwrap_or_default();
        for (key, (v, _)) in &values {
            if LOCATION_KEYS[..4].contains(key) && !bucket_keys.contains(key) {
                defer(v, format!("not used by type {ty}; use {}", bucket_keys[0]));
            }
        }
        let mut bucket = bucket_keys.iter().filter_map(|k| given(k));
        match (bucket.next(), bucket.next()) {
            (None, _) => {
                let msg = format!("{} is required for type {ty}", bucket_keys[0]);
                defer(&whole, msg);
            }
            (Some(_), Some((v, _))) => {
                defer(v, format!("give only one of {}", bucket_keys.join(", ")))
            }
            (Some((_, None)), None) => {}
            (Some((v, Some(""))), None) => defer(v, "must not be empty".into()),
            (Some((_, Some(b))), None) if backend == Backend::Fs => {
                let mut root = self.relative_to_file(Path::new(b));
                if !spec.prefix.is_empty() {
                    root = root.join(std::mem::take(&mut spec.prefix));
                }
                spec.bucket = root.to_string_lossy().into_owned();
            }
            (Some((v, Some(b))), None) if b.contains('/') => {
                defer(v, "must not contain '/' (put the rest in prefix)".into());
            }
            (Some((_, Some(b))), None) => spec.bucket = b.to_string(),
        }
        for key in OPTION_KEYS {
            if let Some((v, Some(value))) = given(key) {
                match check_option(key, value) {
                    Ok(value) => drop(spec.options.insert(key.to_string(), value)),
                    Err(e) => defer(v, e.message(&format!("{:?}", v.raw))),
                }
            }
        }
        Ok((spec, problem))
    }

    /// The scalar at `key` (`None` when absent or null); a list or mapping is an error.
    fn leaf(&self, s: Option<&Spanned<Value>>, key: &str) -> Result<Option<Val>, Error> {
        let Some(s) = s else { return Ok(None) };
        let raw = match &s.value {
            Value::Null => return Ok(None),
            Value::String(t) => t.clone(),
            Value::Array(_) | Value::Object(_) => {
                let found = if s.value.is_array() {
                    "a list"
                } else {
                    "a mapping"
                };
                let msg = format!("expected a single value, found {found}");
                return Err(self.bad(line(s), key, msg));
            }
            v => v.to_string(),
        };
        let (line, key) = (line(s), key.to_string());
        Ok(Some(Val { raw, line, key }))
    }

    /// The leaf at `cloud_storage.{key}`, its variables substituted now (an unset one is an
    /// error) and read by `read`; `None` from `read` is reported as not being `what`.
    fn get<T>(
        &self,
        s: &Leaf,
        key: &str,
        read: impl FnOnce(&str) -> Option<T>,
        what: &str,
    ) -> Result<Option<T>, Error> {
        let Some(v) = self.leaf(s.as_ref(), &format!("cloud_storage.{key}"))? else {
            return Ok(None);
        };
        let value = expand(&v.raw, self.env).map_err(|b| self.bad(v.line, &v.key, b))?;
        match read(&value) {
            Some(value) => Ok(Some(value)),
            None => Err(self.bad(v.line, &v.key, format!("{:?} is not {what}", v.raw))),
        }
    }

    /// The leaf at `cloud_storage.{key}` as a list of paths: one path, or a list of them,
    /// each substituted and taken relative to the file.
    fn paths(&self, s: &Leaf, key: &str) -> Result<Vec<PathBuf>, Error> {
        let Some(spanned) = s else {
            return Ok(Vec::new());
        };
        let items: Vec<Leaf> = match &spanned.value {
            Value::Array(items) => items
                .iter()
                .map(|v| {
                    Some(Spanned {
                        value: v.clone(),
                        referenced: spanned.referenced,
                        defined: spanned.defined,
                    })
                })
                .collect(),
            _ => vec![s.clone()],
        };
        let path = |v: &str| (!v.is_empty()).then(|| self.relative_to_file(Path::new(v)));
        let mut out = Vec::new();
        for item in &items {
            out.extend(self.get(item, key, path, "a path")?);
        }
        Ok(out)
    }

    fn relative_to_file(&self, p: &Path) -> PathBuf {
        let joined = self.path.parent().unwrap_or(Path::new("")).join(p);
        std::path::absolute(&joined).unwrap_or(joined)
    }

    /// A problem at `line`.
    fn at(&self, line: usize, message: String) -> Error {
        let path = self.path.to_path_buf();
        Error::At {
            path,
            line,
            message,
        }
    }

    /// A problem with the value at `key`.
    fn bad(&self, line: usize, key: &str, message: impl Display) -> Error {
        self.at(line, format!("{key}: {message}"))
    }

    /// A serde-saphyr error: an unknown key of a fixed section, else a syntax error or a
    /// section of the wrong kind (e.g. "expected mapping start"), in serde-saphyr's words.
    fn yaml(&self, e: &serde_saphyr::Error) -> Error {
        let e = e.without_snippet();
        let line = e.location().map_or(1, |l| l.line() as usize).max(1);
        let serde_saphyr::Error::SerdeUnknownField {
            field, expected, ..
        } = e
        else {
            let message = UserMessageFormatter.format_message(e);
            let message = message.replace(char::is_control, " ");
            return self.at(line, format!("invalid YAML: {message}"));
        };
        // serde names no section, so it is told by the first key known in it.
        let section = match expected.first().copied() {
            Some("cloud_storage") => "the top level",
            Some("default_provider") => "cloud_storage",
            Some("name") => "a cloud_storage.providers entry",
            Some("jobs") => "cloud_storage.transfer",
            Some("path") => "cloud_storage.audit",
            Some("key_file") => "cloud_storage.encryption",
            Some("alert_monthly_cost") => "cloud_storage.usage",
            Some("key") => "cloud_storage.signing",
            _ => "cloud_storage.cache",
        };
        let known = expected.join(", ");
        self.at(
            line,
            format!("unknown key {field:?} in {section} (known: {known})"),
        )
    }
}
