//! The file's shape as serde types (parsed by serde-saphyr, with spans), and their checking
//! into a [`Config`]. Sections and provider `config` mappings are read as spanned YAML values
//! and checked here, so an unknown key, a list where a single value belongs, or a value that
//! is not valid once its variables are substituted, is reported with its line and dotted key;
//! bad YAML and a part of the wrong kind are reported by serde-saphyr, with their line.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::{MessageFormatter, Spanned, UserMessageFormatter};

use super::env::{Bad, expand};
use super::{AuditConfig, CacheConfig, Config, Error, KEY_ALIASES, Provider};
use crate::remote::{Backend, OPTION_KEYS, RemoteSpec, check_option};
use crate::util::{parse_duration_secs, parse_size};

/// Provider `config` keys that are not remote options; the first four name the bucket.
const LOCATION_KEYS: &[&str] = &["bucket", "container", "path", "root", "prefix"];
/// The `type` names, as [`Backend::from_type`] reads them.
const TYPES: &[&str] = &["s3", "gcs", "azblob", "oss", "fs"];
/// Largest `transfer.jobs`, as for `--jobs`.
const MAX_JOBS: usize = 1024;
const SIZE: &str = "a size (e.g. 20G, 512M)";
const SINGLE: &str = "expected a single value, found ";

/// A scalar (or, wrongly, a list or mapping), with where it is.
type Leaf = Spanned<Value>;
/// A section or a provider's `config`: its values by key, with where the mapping starts.
type Map = Spanned<BTreeMap<String, Leaf>>;
/// A mapping's entries in file order, the keys checked.
type Entries<'m> = Vec<(&'m str, &'m Leaf)>;
/// The sections' values by dotted key (`cache.ttl`).
type Settings<'m> = BTreeMap<String, &'m Leaf>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping (cloud_storage: ...)")]
struct Root {
    cloud_storage: Option<Cloud>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(expecting = "a mapping (default_provider, providers, ...)")]
struct Cloud {
    default_provider: Option<Leaf>,
    providers: Option<Vec<Spanned<Entry>>>,
    cache: Option<Map>,
    transfer: Option<Map>,
    audit: Option<Map>,
    encryption: Option<Map>,
    usage: Option<Map>,
    signing: Option<Map>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(expecting = "a provider mapping (name, type, enabled, config)")]
struct Entry {
    name: Option<Leaf>,
    #[serde(rename = "type")]
    kind: Option<Leaf>,
    enabled: Option<Leaf>,
    config: Option<Map>,
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
        let Some(c) = root.cloud_storage else {
            return Ok(config);
        };
        // The sections, their keys checked.
        let mut settings = Settings::new();
        for (m, name, known) in [
            (&c.cache, "cache", &["max_size", "ttl"][..]),
            (&c.transfer, "transfer", &["jobs", "rate_limit"]),
            (&c.audit, "audit", &["path", "max_size"]),
            (&c.encryption, "encryption", &["key_file"]),
            (&c.usage, "usage", &["alert_monthly_cost"]),
            (&c.signing, "signing", &["key", "trusted_keys"]),
        ] {
            for (key, v) in cx.entries(m, &format!("cloud_storage.{name}"), known)? {
                settings.insert(format!("{name}.{key}"), v);
            }
        }
        for (i, item) in c.providers.iter().flatten().enumerate() {
            let p = cx.provider(item, i, &config.providers)?;
            config.providers.push(p);
        }
        let path = |v: &str| (!v.is_empty()).then(|| cx.relative_to_file(Path::new(v)));
        let jobs = |v: &str| v.trim().parse().ok().filter(|j| (1..=MAX_JOBS).contains(j));
        let rate = |v: &str| parse_size(v).filter(|&n| n > 0);
        let usd = |v: &str| {
            v.trim()
                .parse()
                .ok()
                .filter(|c: &f64| c.is_finite() && *c >= 0.0)
        };
        let duration = "a duration (e.g. 30d, 12h, 3600)";
        config.cache = CacheConfig {
            max_size_bytes: cx.get(&settings, "cache.max_size", parse_size, SIZE)?,
            ttl_secs: cx.get(&settings, "cache.ttl", parse_duration_secs, duration)?,
        };
        config.audit = AuditConfig {
            path: cx.get(&settings, "audit.path", path, "a path")?,
            max_size_bytes: cx.get(&settings, "audit.max_size", parse_size, SIZE)?,
        };
        let what = format!("a number from 1 to {MAX_JOBS}");
        config.jobs = cx.get(&settings, "transfer.jobs", jobs, &what)?;
        let what = "a rate (e.g. 50M = 50 MiB/s)";
        config.rate_limit_bytes_per_sec = cx.get(&settings, "transfer.rate_limit", rate, what)?;
        let what = "an amount in USD per month (e.g. 50 or 12.5)";
        config.alert_monthly_cost_usd = cx.get(&settings, "usage.alert_monthly_cost", usd, what)?;
        config.encryption_key_file = cx.get(&settings, "encryption.key_file", path, "a path")?;
        config.sign_key = cx.get(&settings, "signing.key", path, "a path")?;
        // `trusted_keys`: one path, or a list of them (each at the line of the key).
        if let Some(k) = settings.get("signing.trusted_keys") {
            let items = match &k.value {
                Value::Array(items) => items.clone(),
                v => vec![v.clone()],
            };
            let key = "cloud_storage.signing.trusted_keys";
            for value in items {
                let item = Spanned { value, ..**k };
                let path = cx.value(Some(&item), key, path, "a path")?;
                config.trusted_keys.extend(path);
            }
        }
        let names: Vec<_> = config.providers.iter().map(|p| p.name.as_str()).collect();
        let known = |n: &str| names.contains(&n).then(|| n.to_string());
        let what = format!("the name of a provider (known: {})", names.join(", "));
        let key = "cloud_storage.default_provider";
        config.default_provider = cx.value(c.default_provider.as_ref(), key, known, &what)?;
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
            let (n, l) = (&name.raw, first.line);
            let msg = format!("duplicate provider name {n:?} (first defined at line {l})");
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
            Some(v) if v.raw.eq_ignore_ascii_case("true") => true,
            Some(v) if v.raw.eq_ignore_ascii_case("false") => false,
            Some(v) => return Err(self.bad(v.line, &v.key, "expected true or false")),
        };
        let at = format!("{at}.config");
        let line = e.config.as_ref().map_or(pline, line);
        let (spec, problem) = self.remote(&name.raw, backend, &e.config, &at, line)?;
        Ok(Provider {
            name: name.raw,
            backend,
            enabled,
            line: pline,
            spec,
            problem,
        })
    }

    /// The remote of provider `name`, whose `config` (at key `at`, line `cline`) is `config`.
    /// Errors in the file's shape are returned; the first problem in its values comes back
    /// beside a partial spec, to be reported when the provider is used.
    fn remote(
        &self,
        name: &str,
        backend: Backend,
        config: &Option<Map>,
        at: &str,
        cline: usize,
    ) -> Result<(RemoteSpec, Option<Error>), Error> {
        let aliases = KEY_ALIASES.iter().map(|(alias, _)| alias);
        let known: Vec<&str> = LOCATION_KEYS
            .iter()
            .chain(OPTION_KEYS)
            .chain(aliases)
            .copied()
            .collect();
        let mut problem = None;
        // Canonical key -> (the value as found, its value; None if a variable is unset).
        let mut values: BTreeMap<&str, (Val, Option<String>)> = BTreeMap::new();
        for (key, v) in self.entries(config, at, &known)? {
            let Some(val) = self.leaf(Some(v), &format!("{at}.{key}"))? else {
                continue;
            };
            let alias = KEY_ALIASES.iter().find(|(alias, _)| *alias == key);
            let canonical = alias.map_or(key, |(_, k)| k);
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
        let whole = Val {
            raw: String::new(),
            line: cline,
            key: at.to_string(),
        };
        let mut defer = |v: &Val, msg: String| {
            problem.get_or_insert(self.bad(v.line, &v.key, msg));
        };
        let (ty, bucket_keys): (&str, &[&str]) = match backend {
            Backend::Fs => ("fs", &["path", "root"]),
            Backend::Azblob => ("azblob", &["container", "bucket"]),
            Backend::S3 => ("s3", &["bucket"]),
            Backend::Gcs => ("gcs", &["bucket"]),
            Backend::Oss => ("oss", &["bucket"]),
        };
        for (key, (v, _)) in &values {
            if LOCATION_KEYS[..4].contains(key) && !bucket_keys.contains(key) {
                defer(v, format!("not used by type {ty}; use {}", bucket_keys[0]));
            }
        }
        let mut bucket = bucket_keys.iter().filter_map(|k| given(k));
        match (bucket.next(), bucket.next()) {
            (None, _) => defer(
                &whole,
                format!("{} is required for type {ty}", bucket_keys[0]),
            ),
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

    /// The entries of mapping `m` (at key `at`) in file order; a key not in `known` is an
    /// error.
    fn entries<'m>(
        &self,
        m: &'m Option<Map>,
        at: &str,
        known: &[&str],
    ) -> Result<Entries<'m>, Error> {
        let mut pairs: Vec<_> = m.iter().flat_map(|m| &m.value).collect();
        pairs.sort_by_key(|(_, v)| (v.referenced.line(), v.referenced.column()));
        if let Some((key, v)) = pairs.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            let msg = format!("unknown key {key:?} in {at} (known: {})", known.join(", "));
            return Err(self.at(line(v), msg));
        }
        Ok(pairs.into_iter().map(|(k, v)| (k.as_str(), v)).collect())
    }

    /// The scalar at `key` (`None` when absent or null); a list or mapping is an error.
    fn leaf(&self, s: Option<&Leaf>, key: &str) -> Result<Option<Val>, Error> {
        let Some(s) = s else { return Ok(None) };
        let (line, key) = (line(s), key.to_string());
        let raw = match &s.value {
            Value::Null => return Ok(None),
            Value::String(t) => t.clone(),
            Value::Array(_) => return Err(self.bad(line, &key, SINGLE.to_owned() + "a list")),
            Value::Object(_) => return Err(self.bad(line, &key, SINGLE.to_owned() + "a mapping")),
            v => v.to_string(),
        };
        Ok(Some(Val { raw, line, key }))
    }

    /// The setting at `cloud_storage.{key}`; see [`Cx::value`].
    fn get<T>(
        &self,
        settings: &Settings,
        key: &str,
        read: impl FnOnce(&str) -> Option<T>,
        what: &str,
    ) -> Result<Option<T>, Error> {
        let leaf = settings.get(key).copied();
        self.value(leaf, &format!("cloud_storage.{key}"), read, what)
    }

    /// The leaf at `key`, its variables substituted now (an unset one is an error) and read
    /// by `read`; `None` from `read` is reported as not being `what`.
    fn value<T>(
        &self,
        s: Option<&Leaf>,
        key: &str,
        read: impl FnOnce(&str) -> Option<T>,
        what: &str,
    ) -> Result<Option<T>, Error> {
        let Some(v) = self.leaf(s, key)? else {
            return Ok(None);
        };
        let value = expand(&v.raw, self.env).map_err(|b| self.bad(v.line, &v.key, b))?;
        match read(&value) {
            Some(value) => Ok(Some(value)),
            None => Err(self.bad(v.line, &v.key, format!("{:?} is not {what}", v.raw))),
        }
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

    /// A serde-saphyr error: an unknown key of the top level, of `cloud_storage` or of a
    /// provider entry, else a syntax error or a part of the wrong kind (e.g. "expected mapping
    /// start"), in serde-saphyr's words.
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
        // serde names no part, so it is told by the first key known in it.
        let part = match expected.first().copied() {
            Some("cloud_storage") => "the top level",
            Some("name") => "a cloud_storage.providers entry",
            _ => "cloud_storage",
        };
        let known = expected.join(", ");
        self.at(
            line,
            format!("unknown key {field:?} in {part} (known: {known})"),
        )
    }
}
