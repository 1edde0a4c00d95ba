//! Reading the file into a [`Config`]. serde-saphyr checks the YAML and the kind of each part
//! (reporting its line); sections and provider `config` mappings are spanned maps whose keys
//! and values are checked here, each problem named by its line and dotted key.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::{MessageFormatter, Spanned, UserMessageFormatter};

use super::env::{Bad, expand};
use super::{Config, Error, KEY_ALIASES, Provider};
use crate::remote::{Backend, OPTION_KEYS, RemoteSpec, check_option};
use crate::transfer::ratelimit::parse_rate;
use crate::util::{parse_duration_secs, parse_size};

/// Provider `config` keys that are not remote options; the first four name the bucket.
const LOCATION_KEYS: &[&str] = &["bucket", "container", "path", "root", "prefix"];
/// Largest `transfer.jobs`, as for `--jobs`.
const MAX_JOBS: usize = 1024;
const SIZE: &str = "a size (e.g. 20G, 512M)";
const SINGLE: &str = "expected a single value, found ";

/// A scalar (or, wrongly, a list or mapping), with where it is.
type Leaf = Spanned<Value>;
/// A section or a provider's `config`: its values by key, with where the mapping starts.
type Map = Spanned<BTreeMap<String, Leaf>>;
/// A mapping's entries in file order.
type Pairs<'m> = Vec<(&'m str, &'m Leaf)>;
type Result<T> = std::result::Result<T, Error>;

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
    pub fn parse(text: &str, path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Config> {
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
        // The sections' values by dotted key (`cache.ttl`), their keys checked.
        let mut settings = BTreeMap::new();
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
        for item in c.providers.iter().flatten() {
            let p = cx.provider(item, &config.providers)?;
            config.providers.push(p);
        }
        let at = |key: &'static str| (settings.get(key).copied(), key);
        let path = |v: &str| (!v.is_empty()).then(|| cx.relative_to_file(Path::new(v)));
        let duration = "a duration (e.g. 30d, 12h, 3600)";
        config.cache.max_size_bytes = cx.value(at("cache.max_size"), parse_size, SIZE)?;
        config.cache.ttl_secs = cx.value(at("cache.ttl"), parse_duration_secs, duration)?;
        config.audit.path = cx.value(at("audit.path"), path, "a path")?;
        config.audit.max_size_bytes = cx.value(at("audit.max_size"), parse_size, SIZE)?;
        let what = format!("a number from 1 to {MAX_JOBS}");
        config.jobs = cx.value(at("transfer.jobs"), |v| number(v, 1..=MAX_JOBS), &what)?;
        let what = "a rate (e.g. 50M = 50 MiB/s)";
        config.rate_limit_bytes_per_sec = cx.value(at("transfer.rate_limit"), parse_rate, what)?;
        // Finite and at least 0.
        let usd = |v: &str| number(v, 0.0..=f64::MAX);
        let what = "an amount in USD per month (e.g. 50 or 12.5)";
        config.alert_monthly_cost_usd = cx.value(at("usage.alert_monthly_cost"), usd, what)?;
        config.encryption_key_file = cx.value(at("encryption.key_file"), path, "a path")?;
        config.sign_key = cx.value(at("signing.key"), path, "a path")?;
        // `trusted_keys`: one path, or a list of them (each at the line of the key).
        if let Some(k) = settings.get("signing.trusted_keys") {
            let one = || vec![k.value.clone()];
            for value in k.value.as_array().cloned().unwrap_or_else(one) {
                let item = Spanned { value, ..**k };
                let v = cx.value((Some(&item), "signing.trusted_keys"), path, "a path")?;
                config.trusted_keys.extend(v);
            }
        }
        let names: Vec<_> = config.providers.iter().map(|p| p.name.as_str()).collect();
        let known = |n: &str| names.contains(&n).then(|| n.to_string());
        let what = format!("the name of a provider (known: {})", names.join(", "));
        let key = (c.default_provider.as_ref(), "default_provider");
        config.default_provider = cx.value(key, known, &what)?;
        Ok(config)
    }
}

/// `v` (spaces trimmed) as a number in `range`.
fn number<T: std::str::FromStr + PartialOrd>(v: &str, range: impl RangeBounds<T>) -> Option<T> {
    v.trim().parse().ok().filter(|n| range.contains(n))
}

/// One parse of one file.
struct Cx<'a> {
    path: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Cx<'_> {
    /// The entry of `providers` that comes after `before`.
    fn provider(&self, item: &Spanned<Entry>, before: &[Provider]) -> Result<Provider> {
        let (pline, e) = (line(item), &item.value);
        let unnamed = format!("cloud_storage.providers[{}]", before.len());
        let name = self
            .leaf(e.name.as_ref(), &format!("{unnamed}.name"))?
            .ok_or_else(|| self.bad(pline, &unnamed, "every provider needs a name"))?;
        let at = format!("cloud_storage.providers[{}]", name.raw);
        let name_key = format!("{at}.name");
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if !name.raw.starts_with(|c: char| c.is_ascii_alphanumeric()) || !name.raw.chars().all(ok) {
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
                let msg = format!("unknown type {:?} (known: s3, gcs, azblob, oss, fs)", t.raw);
                self.bad(t.line, &t.key, msg)
            })?,
            None => Backend::from_type(&name.raw).ok_or_else(|| {
                self.bad(pline, &at, "type is required (s3, gcs, azblob, oss or fs)")
            })?,
        };
        let enabled = self.leaf(e.enabled.as_ref(), &format!("{at}.enabled"))?;
        let enabled = enabled.map_or(Ok(true), |v| {
            let bad = |_| self.bad(v.line, &v.key, "expected true or false");
            v.raw.to_ascii_lowercase().parse().map_err(bad)
        })?;
        let mut spec = RemoteSpec::local(Path::new(""));
        (spec.backend, spec.label) = (backend, Some(name.raw.clone()));
        let mut p = Provider {
            name: name.raw,
            backend,
            enabled,
            line: pline,
            spec,
            problem: None,
        };
        self.remote(&mut p, &e.config)?;
        Ok(p)
    }

    /// Fills in `p.spec` from its `config`. Errors in the file's shape are returned; the first
    /// problem in its values goes to `p.problem`, to be reported when the provider is used.
    fn remote(&self, p: &mut Provider, config: &Option<Map>) -> Result<()> {
        let at = format!("cloud_storage.providers[{}].config", p.name);
        let aliases: Vec<_> = KEY_ALIASES.iter().map(|(alias, _)| *alias).collect();
        let known = [LOCATION_KEYS, OPTION_KEYS, &aliases].concat();
        // `None`: the whole `config` mapping, for a problem with no single key.
        let cline = config.as_ref().map_or(p.line, line);
        let mut defer = |v: Option<&Val>, msg: &str| {
            let (l, key) = v.map_or((cline, at.as_str()), |v| (v.line, &v.key));
            _ = p.problem.get_or_insert(self.bad(l, key, msg));
        };
        // Canonical key -> (the value as found, its value; None if a variable is unset).
        let mut values: BTreeMap<&str, (Val, Option<String>)> = BTreeMap::new();
        for (key, v) in self.entries(config, &at, &known)? {
            let Some(val) = self.leaf(Some(v), &format!("{at}.{key}"))? else {
                continue;
            };
            let alias = KEY_ALIASES.iter().find(|(alias, _)| *alias == key);
            let canonical = alias.map_or(key, |(_, k)| k);
            if let Some((first, _)) = values.get(canonical) {
                return Err(self.bad(val.line, &val.key, format!("same setting as {}", first.key)));
            }
            let value = match expand(&val.raw, self.env) {
                Err(b @ Bad::Syntax(_)) => return Err(self.bad(val.line, &val.key, b)),
                unset => unset.map_err(|b| defer(Some(&val), &b.to_string())).ok(),
            };
            values.insert(canonical, (val, value));
        }
        let given = |k: &str| values.get(k).map(|(v, value)| (v, value.as_deref()));
        let prefix = given("prefix").and_then(|(_, v)| v).unwrap_or("");
        p.spec.prefix = prefix.trim_matches('/').to_string();
        let bucket_keys: &[&str] = match p.backend {
            Backend::Fs => &["path", "root"],
            Backend::Azblob => &["container", "bucket"],
            _ => &["bucket"],
        };
        let ty = p.backend.type_name();
        let (first, only_one) = (bucket_keys[0], bucket_keys.join(", "));
        for (key, (v, _)) in &values {
            if LOCATION_KEYS[..4].contains(key) && !bucket_keys.contains(key) {
                defer(Some(v), &format!("not used by type {ty}; use {first}"));
            }
        }
        let mut bucket = bucket_keys.iter().filter_map(|k| given(k));
        match (bucket.next(), bucket.next()) {
            (None, _) => defer(None, &format!("{first} is required for type {ty}")),
            (Some(_), Some((v, _))) => defer(Some(v), &format!("give only one of {only_one}")),
            (Some((_, None)), None) => {}
            (Some((v, Some(""))), None) => defer(Some(v), "must not be empty"),
            (Some((_, Some(b))), None) if p.backend == Backend::Fs => {
                let mut root = self.relative_to_file(Path::new(b));
                if !p.spec.prefix.is_empty() {
                    root = root.join(std::mem::take(&mut p.spec.prefix));
                }
                p.spec.bucket = root.to_string_lossy().into_owned();
            }
            (Some((v, Some(b))), None) if b.contains('/') => {
                defer(Some(v), "must not contain '/' (put the rest in prefix)");
            }
            (Some((_, Some(b))), None) => p.spec.bucket = b.to_string(),
        }
        for key in OPTION_KEYS {
            if let Some((v, Some(value))) = given(key) {
                match check_option(key, value) {
                    Ok(value) => drop(p.spec.options.insert(key.to_string(), value)),
                    Err(e) => defer(Some(v), &e.message(&format!("{:?}", v.raw))),
                }
            }
        }
        Ok(())
    }

    /// The entries of mapping `m` (at key `at`) in file order; a key not in `known` is refused.
    fn entries<'m>(&self, m: &'m Option<Map>, at: &str, known: &[&str]) -> Result<Pairs<'m>> {
        let mut pairs: Vec<_> = m.iter().flat_map(|m| &m.value).collect();
        pairs.sort_by_key(|(_, v)| (v.referenced.line(), v.referenced.column()));
        if let Some((key, v)) = pairs.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            let msg = format!("unknown key {key:?} in {at} (known: {})", known.join(", "));
            return Err(self.at(line(v), msg));
        }
        Ok(pairs.into_iter().map(|(k, v)| (k.as_str(), v)).collect())
    }

    /// The scalar at `key` (`None` when absent or null); a list or mapping is an error.
    fn leaf(&self, s: Option<&Leaf>, key: &str) -> Result<Option<Val>> {
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

    /// The setting at `cloud_storage.{key}`, its variables substituted now (an unset one is an
    /// error) and read by `read`; `None` from `read` is reported as not being `what`.
    fn value<T>(
        &self,
        (s, key): (Option<&Leaf>, &str),
        read: impl FnOnce(&str) -> Option<T>,
        what: &str,
    ) -> Result<Option<T>> {
        let Some(v) = self.leaf(s, &format!("cloud_storage.{key}"))? else {
            return Ok(None);
        };
        let value = expand(&v.raw, self.env).map_err(|b| self.bad(v.line, &v.key, b))?;
        let not = || self.bad(v.line, &v.key, format!("{:?} is not {what}", v.raw));
        read(&value).map(Some).ok_or_else(not)
    }

    fn relative_to_file(&self, p: &Path) -> PathBuf {
        let joined = self.path.parent().unwrap_or(Path::new("")).join(p);
        std::path::absolute(&joined).unwrap_or(joined)
    }

    fn at(&self, line: usize, msg: String) -> Error {
        let path = self.path.to_path_buf();
        Error::At { path, line, msg }
    }

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
        let message = format!("unknown key {field:?} in {part} (known: {known})");
        self.at(line, message)
    }
}
