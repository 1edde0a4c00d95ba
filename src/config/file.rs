//! The file's shape as serde types (parsed by serde-saphyr, with spans), and their checking
//! into a [`Config`]. Leaves and sections accept any YAML value and record the kind found, so
//! a value of the wrong kind is reported here with its dotted key, not as a bare serde error.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::{MessageFormatter, Spanned, UserMessageFormatter};

use super::env::{resolve, template};
use super::{Config, Error, KEY_ALIASES, Provider};
use crate::remote::{Backend, OPTION_KEYS, RemoteSpec, check_option};
use crate::util::{parse_duration_secs, parse_size};

/// Provider `config` keys that are not remote options.
const LOCATION_KEYS: &[&str] = &["bucket", "container", "path", "root", "prefix"];
/// Largest `transfer.jobs`, as for `--jobs`.
const MAX_JOBS: usize = 1024;

type S<T> = Option<Spanned<T>>;
/// A scalar (or, wrongly, a list or mapping), with where it is.
type Leaf = Spanned<Value>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Root {
    cloud_storage: S<Sect<Cloud>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cloud {
    default_provider: Option<Leaf>,
    providers: S<Sect<Vec<Spanned<Sect<Entry>>>, true>>,
    cache: S<Sect<Cache>>,
    transfer: S<Sect<Transfer>>,
    audit: S<Sect<Audit>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: Option<Leaf>,
    #[serde(rename = "type")]
    kind: Option<Leaf>,
    enabled: Option<Leaf>,
    config: S<Sect<BTreeMap<String, Leaf>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cache {
    max_size: Option<Leaf>,
    ttl: Option<Leaf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Transfer {
    jobs: Option<Leaf>,
    rate_limit: Option<Leaf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Audit {
    path: Option<Leaf>,
    max_size: Option<Leaf>,
}

/// A mapping read as `T` (with `LIST`, a sequence), or the kind of value found instead.
struct Sect<T, const LIST: bool = false>(Result<T, &'static str>);

impl<'de, T: Deserialize<'de>, const LIST: bool> Deserialize<'de> for Sect<T, LIST> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T, const LIST: bool>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const LIST: bool> Visitor<'de> for V<T, LIST> {
            type Value = Sect<T, LIST>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(if LIST { "a list" } else { "a mapping" })
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Sect(Err("a boolean")))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Sect(Err("a number")))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Sect(Err("a number")))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Sect(Err("a number")))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Sect(Err("a string")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Sect(Err("nothing")))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                if LIST {
                    while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                    return Ok(Sect(Err("a mapping")));
                }
                T::deserialize(MapAccessDeserializer::new(m)).map(|t| Sect(Ok(t)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                if !LIST {
                    while s.next_element::<IgnoredAny>()?.is_some() {}
                    return Ok(Sect(Err("a list")));
                }
                T::deserialize(SeqAccessDeserializer::new(s)).map(|t| Sect(Ok(t)))
            }
        }
        d.deserialize_any(V::<T, LIST>(PhantomData))
    }
}

/// 1-based line of a node (a merged value: of its `<<` entry).
fn line<T>(s: &Spanned<T>) -> usize {
    (s.referenced.line() as usize).max(1)
}

/// A scalar found in the file: its text as written, where it is, and its dotted key.
struct Val {
    raw: String,
    string: bool,
    line: usize,
    key: String,
}

impl Val {
    /// The value for messages about non-secret keys: strings quoted, as written.
    fn shown(&self) -> String {
        if self.string {
            format!("{:?}", self.raw)
        } else {
            self.raw.to_string()
        }
    }
}

/// Parses `text` read from `path` into a [`Config`], taking `${VAR}` values from `env`.
pub(super) fn parse(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Error> {
    let cx = Cx { path, env };
    // Strict booleans: `yes`/`on` stay strings, so `anonymous: yes` is refused, not `true`.
    let options = serde_saphyr::options! { strict_booleans: true };
    let root: Root =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| cx.yaml(text, &e))?;
    let mut config = Config {
        path: Some(path.to_path_buf()),
        ..Config::default()
    };
    let Some(cloud) = cx.sect(&root.cloud_storage, "cloud_storage")? else {
        return Ok(config);
    };
    if let Some(list) = cx.sect(&cloud.providers, "cloud_storage.providers")? {
        for (i, item) in list.iter().enumerate() {
            let p = cx.provider(item, i)?;
            if let Some(first) = config.providers.iter().find(|q| q.name == p.name) {
                return Err(cx.invalid(
                    p.name_line,
                    &format!("cloud_storage.providers[{}].name", p.name),
                    format!(
                        "duplicate provider name {:?} (first defined at line {})",
                        p.name, first.line
                    ),
                ));
            }
            config.providers.push(p);
        }
    }
    if let Some(c) = cx.sect(&cloud.cache, "cloud_storage.cache")? {
        if let Some((v, value)) = cx.value(c.max_size.as_ref(), "cloud_storage.cache.max_size")? {
            config.cache.max_size_bytes = Some(cx.size(&v, &value)?);
        }
        if let Some((v, value)) = cx.value(c.ttl.as_ref(), "cloud_storage.cache.ttl")? {
            let ttl = parse_duration_secs(&value);
            let msg = format!("{:?} is not a duration (e.g. 30d, 12h, 3600)", v.raw);
            config.cache.ttl_secs = Some(ttl.ok_or_else(|| cx.invalid(v.line, &v.key, msg))?);
        }
    }
    if let Some(t) = cx.sect(&cloud.transfer, "cloud_storage.transfer")? {
        if let Some((v, value)) = cx.value(t.jobs.as_ref(), "cloud_storage.transfer.jobs")? {
            let jobs = value.trim().parse::<usize>().ok();
            let msg = format!("{:?} is not a number from 1 to {MAX_JOBS}", v.raw);
            let jobs = jobs.filter(|j| (1..=MAX_JOBS).contains(j));
            config.transfer.jobs = Some(jobs.ok_or_else(|| cx.invalid(v.line, &v.key, msg))?);
        }
        if let Some((v, value)) =
            cx.value(t.rate_limit.as_ref(), "cloud_storage.transfer.rate_limit")?
        {
            let rate = parse_size(&value).filter(|&n| n > 0);
            let msg = format!("{:?} is not a rate (e.g. 50M = 50 MiB/s)", v.raw);
            let rate = rate.ok_or_else(|| cx.invalid(v.line, &v.key, msg))?;
            config.transfer.rate_limit_bytes_per_sec = Some(rate);
        }
    }
    if let Some(a) = cx.sect(&cloud.audit, "cloud_storage.audit")? {
        if let Some((v, value)) = cx.value(a.path.as_ref(), "cloud_storage.audit.path")? {
            if value.is_empty() {
                return Err(cx.invalid(v.line, &v.key, "must not be empty"));
            }
            config.audit.path = Some(cx.relative_to_file(Path::new(&value)));
        }
        if let Some((v, value)) = cx.value(a.max_size.as_ref(), "cloud_storage.audit.max_size")? {
            config.audit.max_size_bytes = Some(cx.size(&v, &value)?);
        }
    }
    if let Some((v, name)) = cx.value(
        cloud.default_provider.as_ref(),
        "cloud_storage.default_provider",
    )? {
        if !config.providers.iter().any(|p| p.name == name) {
            let known: Vec<_> = config.providers.iter().map(|p| p.name.as_str()).collect();
            let msg = format!(
                "no provider is named {name:?} (known: {})",
                known.join(", ")
            );
            return Err(cx.invalid(v.line, &v.key, msg));
        }
        config.default_provider = Some(name);
    }
    Ok(config)
}

/// One parse of one file.
struct Cx<'a> {
    path: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Cx<'_> {
    fn provider(&self, item: &Spanned<Sect<Entry>>, i: usize) -> Result<Provider, Error> {
        let (pline, unnamed) = (line(item), format!("cloud_storage.providers[{i}]"));
        let e = item.value.0.as_ref().map_err(|kind| {
            self.invalid(pline, &unnamed, format!("expected a mapping, found {kind}"))
        })?;
        let name = self
            .leaf(e.name.as_ref(), &format!("{unnamed}.name"))?
            .ok_or_else(|| self.invalid(pline, &unnamed, "every provider needs a name"))?;
        let at = format!("cloud_storage.providers[{}]", name.raw);
        if !valid_name(&name.raw) {
            return Err(self.invalid(
                name.line,
                &format!("{at}.name"),
                "provider names are letters, digits, '.', '_' and '-', starting with a letter or digit",
            ));
        }
        let backend = match self.leaf(e.kind.as_ref(), &format!("{at}.type"))? {
            Some(t) => Backend::from_type(&t.raw).ok_or_else(|| {
                let msg = format!("unknown type {:?} (known: s3, gcs, azblob, oss, fs)", t.raw);
                self.invalid(t.line, &t.key, msg)
            })?,
            None => Backend::from_type(&name.raw).ok_or_else(|| {
                self.invalid(pline, &at, "type is required (s3, gcs, azblob, oss or fs)")
            })?,
        };
        let enabled = match self.leaf(e.enabled.as_ref(), &format!("{at}.enabled"))? {
            Some(v) if v.raw.eq_ignore_ascii_case("true") => true,
            Some(v) if v.raw.eq_ignore_ascii_case("false") => false,
            Some(v) => return Err(self.invalid(v.line, &v.key, "expected true or false")),
            None => true,
        };
        let (spec, problem) = self.remote(&name.raw, backend, &e.config, &at, pline)?;
        Ok(Provider {
            name: name.raw.clone(),
            backend,
            enabled,
            line: pline,
            name_line: name.line,
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
        config: &S<Sect<BTreeMap<String, Leaf>>>,
        at: &str,
        pline: usize,
    ) -> Result<(RemoteSpec, Option<Error>), Error> {
        let at = format!("{at}.config");
        let known: Vec<&str> = LOCATION_KEYS
            .iter()
            .chain(OPTION_KEYS)
            .chain(KEY_ALIASES.iter().map(|(alias, _)| alias))
            .copied()
            .collect();
        let mut pairs: Vec<_> = self.sect(config, &at)?.into_iter().flatten().collect();
        pairs.sort_by_key(|(_, v)| (v.referenced.line(), v.referenced.column()));
        let cline = config.as_ref().map_or(pline, line);
        let mut problem = None;
        // Canonical key -> (the value as found, its value; None if a variable is unset).
        let mut values: BTreeMap<&str, (Val, Option<String>)> = BTreeMap::new();
        for (key, v) in pairs {
            let key = key.as_str();
            if !known.contains(&key) {
                return Err(Error::UnknownKey {
                    path: self.path.to_path_buf(),
                    line: line(v),
                    section: at.clone(),
                    key: key.to_string(),
                    known: known.join(", "),
                });
            }
            let Some(val) = self.leaf(Some(v), &format!("{at}.{key}"))? else {
                continue;
            };
            let pieces = template(&val.raw).map_err(|m| self.invalid(val.line, &val.key, m))?;
            let canonical = KEY_ALIASES
                .iter()
                .find(|(alias, _)| *alias == key)
                .map_or(key, |(_, k)| k);
            if let Some((first, _)) = values.get(canonical) {
                let msg = format!("same setting as {}", first.key);
                return Err(self.invalid(val.line, &val.key, msg));
            }
            let value = resolve(&pieces, self.env)
                .map_err(|var| {
                    problem.get_or_insert_with(|| self.missing(&val, var));
                })
                .ok();
            values.insert(canonical, (val, value));
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
        let given = |k: &str| values.get(k).map(|(v, value)| (v, value.as_deref()));
        let prefix = given("prefix").and_then(|(_, v)| v).unwrap_or("");
        spec.prefix = prefix.trim_matches('/').to_string();

        let (bucket_keys, other_keys): (&[&str], &[&str]) = match backend {
            Backend::Fs => (&["path", "root"], &["bucket", "container"]),
            Backend::Azblob => (&["container", "bucket"], &["path", "root"]),
            _ => (&["bucket"], &["container", "path", "root"]),
        };
        let ty = type_name(backend);
        for (v, _) in other_keys.iter().filter_map(|k| given(k)) {
            let msg = format!("not used by type {ty}; use {}", bucket_keys[0]);
            defer(self.invalid(v.line, &v.key, msg));
        }
        let mut bucket = bucket_keys.iter().filter_map(|k| given(k));
        match (bucket.next(), bucket.next()) {
            (None, _) => {
                let msg = format!("{} is required for type {ty}", bucket_keys[0]);
                defer(self.invalid(cline, &at, msg))
            }
            (Some(_), Some((v, _))) => {
                let msg = format!("give only one of {}", bucket_keys.join(", "));
                defer(self.invalid(v.line, &v.key, msg))
            }
            (Some((_, None)), None) => {}
            (Some((v, Some(b))), None) => {
                if b.is_empty() {
                    defer(self.invalid(v.line, &v.key, "must not be empty"));
                } else if backend == Backend::Fs {
                    let mut root = self.relative_to_file(Path::new(b));
                    if !spec.prefix.is_empty() {
                        root = root.join(&spec.prefix);
                        spec.prefix.clear();
                    }
                    spec.bucket = root.to_string_lossy().into_owned();
                } else if b.contains('/') {
                    let msg = "must not contain '/' (put the rest in prefix)";
                    defer(self.invalid(v.line, &v.key, msg));
                } else {
                    spec.bucket = b.to_string();
                }
            }
        }
        for key in OPTION_KEYS {
            if let Some((v, Some(value))) = given(key) {
                match check_option(key, value) {
                    Ok(value) => {
                        spec.options.insert(key.to_string(), value);
                    }
                    Err(e) => defer(self.invalid(v.line, &v.key, e.message(&v.shown()))),
                }
            }
        }
        Ok((spec, problem))
    }

    /// The section at `key` (`None` when absent or null); another kind of value is an error.
    fn sect<'s, T, const LIST: bool>(
        &self,
        s: &'s S<Sect<T, LIST>>,
        key: &str,
    ) -> Result<Option<&'s T>, Error> {
        let Some(s) = s else { return Ok(None) };
        s.value.0.as_ref().map(Some).map_err(|kind| {
            let msg = match LIST {
                true => "expected a list of providers (- name: ...)".to_string(),
                false => format!("expected a mapping, found {kind}"),
            };
            self.invalid(line(s), key, msg)
        })
    }

    /// The scalar at `key` (`None` when absent or null); a list or mapping is an error.
    fn leaf(&self, s: Option<&Leaf>, key: &str) -> Result<Option<Val>, Error> {
        let Some(s) = s else { return Ok(None) };
        let (raw, string) = match &s.value {
            Value::Null => return Ok(None),
            Value::String(t) => (t.clone(), true),
            Value::Bool(b) => (b.to_string(), false),
            Value::Number(n) => (n.to_string(), false),
            v => {
                let kind = if v.is_array() { "a list" } else { "a mapping" };
                let msg = format!("expected a single value, found {kind}");
                return Err(self.invalid(line(s), key, msg));
            }
        };
        let (line, key) = (line(s), key.to_string());
        Ok(Some(Val {
            raw,
            string,
            line,
            key,
        }))
    }

    /// [`Cx::leaf`] with its variables substituted now (an unset one is an error).
    fn value(&self, s: Option<&Leaf>, key: &str) -> Result<Option<(Val, String)>, Error> {
        let Some(v) = self.leaf(s, key)? else {
            return Ok(None);
        };
        let expanded = self.expand(&v)?;
        Ok(Some((v, expanded)))
    }

    /// Substitutes variables now; an unset one is an error.
    fn expand(&self, v: &Val) -> Result<String, Error> {
        let pieces = template(&v.raw).map_err(|m| self.invalid(v.line, &v.key, m))?;
        resolve(&pieces, self.env).map_err(|var| self.missing(v, var))
    }

    fn missing(&self, v: &Val, var: String) -> Error {
        Error::MissingVar {
            path: self.path.to_path_buf(),
            line: v.line,
            key: v.key.clone(),
            var,
        }
    }

    fn size(&self, v: &Val, value: &str) -> Result<u64, Error> {
        let msg = || format!("{:?} is not a size (e.g. 20G, 512M)", v.raw);
        parse_size(value).ok_or_else(|| self.invalid(v.line, &v.key, msg()))
    }

    fn relative_to_file(&self, p: &Path) -> PathBuf {
        let joined = self.path.parent().unwrap_or(Path::new("")).join(p);
        std::path::absolute(&joined).unwrap_or(joined)
    }

    fn invalid(&self, line: usize, key: &str, message: impl Into<String>) -> Error {
        Error::Invalid {
            path: self.path.to_path_buf(),
            line,
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// A serde-saphyr error: an unknown key of a fixed section, or a syntax error.
    fn yaml(&self, text: &str, e: &serde_saphyr::Error) -> Error {
        let e = e.without_snippet();
        let line = e.location().map_or(1, |l| (l.line() as usize).max(1));
        if let serde_saphyr::Error::SerdeUnknownField {
            field, expected, ..
        } = e
        {
            let section = match expected.first().copied() {
                Some("cloud_storage") => "the top level".to_string(),
                Some("default_provider") => "cloud_storage".to_string(),
                Some("name") => format!("cloud_storage.providers[{}]", item_at(text, line)),
                Some("jobs") => "cloud_storage.transfer".to_string(),
                Some("path") => "cloud_storage.audit".to_string(),
                _ => "cloud_storage.cache".to_string(),
            };
            return Error::UnknownKey {
                path: self.path.to_path_buf(),
                line,
                section,
                key: field.clone(),
                known: expected.join(", "),
            };
        }
        let message = UserMessageFormatter.format_message(e);
        Error::Syntax {
            path: self.path.to_path_buf(),
            line,
            message: message.replace(char::is_control, " "),
        }
    }
}

/// Index of the provider entry holding `line` (for an unknown key found by serde, which does
/// not know the index): the last entry starting at or before it. Read only on that error.
fn item_at(text: &str, line: usize) -> usize {
    #[derive(Deserialize)]
    struct Loose {
        cloud_storage: Option<LooseCloud>,
    }
    #[derive(Deserialize)]
    struct LooseCloud {
        providers: Option<Vec<Spanned<IgnoredAny>>>,
    }
    let items = serde_saphyr::from_str::<Loose>(text)
        .ok()
        .and_then(|l| l.cloud_storage?.providers)
        .unwrap_or_default();
    let before = items.iter().filter(|s| self::line(s) <= line).count();
    before.saturating_sub(1)
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

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
