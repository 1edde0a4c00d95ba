//! What the pages and `/api/...` show, gathered over the library's typed outputs (the vault's
//! listings and manifests, aliases, [`crate::lifecycle::usage`], the audit log's records and
//! [`crate::audit::summarize`]), cached for [`super::LISTING_TTL`]. Every type here is the
//! JSON document of its `/api` route. Bytes are bytes, times RFC 3339 UTC.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use serde::Serialize;

use super::cache::TtlMap;
use super::{Error, LISTING_TTL, Options, PAGE_SIZE, Result};
use crate::audit::{self, OpStats, Record};
use crate::chunk::Digest;
use crate::lifecycle::{self, CostAlert, UsageReport};
use crate::manifest::Manifest;
use crate::vault::{AliasInfo, Lookup, Vault, alias_list_lenient};
use crate::version::{ModelName, Selector, Version};

/// Most versions a metric chart plots (the newest ones).
pub const CHART_POINTS: usize = 500;
/// Longest window of the transfers page, in days.
pub const MAX_DAYS: u32 = 366;
/// Rows of the slowest and failed operation tables.
const TOP_ROWS: usize = 15;

/// `/api/models`: one page of the models list.
#[derive(Debug, Clone, Serialize)]
pub struct ModelsPage {
    pub remote: String,
    /// The search text (a case-insensitive substring of the name); empty: every model.
    pub query: String,
    /// 1-based.
    pub page: usize,
    pub pages: usize,
    /// Models matching the query (all pages).
    pub matching: usize,
    pub models: Vec<ModelRow>,
}

/// One model of the models list.
#[derive(Debug, Clone, Serialize)]
pub struct ModelRow {
    pub name: String,
    pub versions: usize,
    /// The highest release (else the highest version).
    pub latest: Option<String>,
    /// `file_size` of `latest`.
    pub latest_file_size: Option<u64>,
    /// Current alias targets, sorted by alias.
    pub aliases: Vec<AliasTarget>,
    /// When a manifest of the model was last written (from the listing; else the latest
    /// version's `created_at`).
    pub last_push: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AliasTarget {
    pub alias: String,
    pub version: String,
}

/// `/api/models/{name}`: a model's versions and aliases.
#[derive(Debug, Clone, Serialize)]
pub struct ModelDetail {
    pub name: String,
    /// Ascending by version.
    pub versions: Vec<VersionSummary>,
    pub aliases: Vec<AliasInfo>,
    /// Alias entries left out as damaged, each with why.
    pub damaged_aliases: Vec<String>,
    /// Names of the numeric metrics any version has, sorted.
    pub metrics: Vec<String>,
}

/// One row of a model's versions table.
#[derive(Debug, Clone, Serialize)]
pub struct VersionSummary {
    pub version: String,
    pub created_at: String,
    /// `user@host`.
    pub created_by: String,
    pub description: String,
    pub file_size: u64,
    pub files: usize,
    /// Distinct chunks the version references.
    pub chunks: u64,
    /// Of those, chunks no lower version of the model references.
    pub new_chunks: u64,
    /// Stored bytes of the new chunks: what pushing this version added to the store (a chunk
    /// also used by another model counts here too).
    pub new_bytes_stored: u64,
    /// The numeric `performance_metrics`.
    pub metrics: BTreeMap<String, f64>,
    /// Aliases currently pointing at this version.
    pub aliases: Vec<String>,
}

/// Chunk and dedupe figures of one version.
#[derive(Debug, Clone, Serialize)]
pub struct ChunkFigures {
    /// Chunk references over all files (a repeated chunk counts each time).
    pub chunk_refs: u64,
    pub distinct_chunks: u64,
    /// Plaintext bytes of the distinct chunks.
    pub distinct_bytes: u64,
    /// Stored bytes of the distinct chunks found in the store's listing.
    pub stored_bytes: u64,
    /// Referenced chunks absent from the listing (run `mvault verify`).
    pub missing_chunks: u64,
    /// `file_size / stored_bytes` (dedupe inside the version and compression); `None` when
    /// nothing is stored.
    pub ratio: Option<f64>,
    /// Chunks and their stored bytes that no lower version of the model has.
    pub new_chunks: u64,
    pub new_bytes_stored: u64,
}

/// `/api/models/{name}/{version}` (besides the manifest's metadata).
#[derive(Debug, Clone)]
pub struct VersionView {
    pub manifest: Arc<Manifest>,
    pub figures: ChunkFigures,
    pub aliases: Vec<String>,
    /// `mvault -r REMOTE pull NAME@VERSION --to ./NAME`.
    pub pull_command: String,
    /// The same with the Python package.
    pub python_snippet: String,
    /// Who signed it (verified only when the server runs with trusted keys); `None`: unsigned.
    pub signature: Option<crate::vault::SignatureInfo>,
}

/// `/api/storage`.
#[derive(Debug, Clone, Serialize)]
pub struct StorageView {
    pub remote: String,
    pub usage: UsageReport,
    /// The cost alert of `usage.alert_monthly_cost`; `None` when it is not set.
    pub alert: Option<CostAlert>,
}

/// `/api/transfers`: the audit log over a window.
#[derive(Debug, Clone, Serialize)]
pub struct TransfersView {
    /// Where the records come from (this machine's audit log).
    pub audit_log: String,
    pub days: u32,
    pub since: String,
    pub records: usize,
    /// Per operation and remote.
    pub operations: Vec<OpStats>,
    /// Length of each time bucket, seconds (an hour up to two days, else a day).
    pub bucket_secs: u64,
    /// Oldest first, covering the window.
    pub buckets: Vec<Bucket>,
    /// Longest first.
    pub slowest: Vec<Record>,
    /// Newest first.
    pub failed: Vec<Record>,
}

/// Operations that started in one time bucket.
#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    pub start: String,
    pub count: u64,
    pub errors: u64,
    /// ok / count; `None` for an empty bucket.
    pub success_rate: Option<f64>,
    /// Median over the bucket's operations that moved bytes, MB (10^6 bytes) per second.
    pub median_mb_per_s: Option<f64>,
    pub bytes: u64,
}

/// The data source of every page: the vault, the audit log, and their caches.
pub struct Gatherer {
    vault: Vault,
    opts: Options,
    names: TtlMap<(), Vec<ModelName>>,
    rows: TtlMap<ModelName, ModelRow>,
    details: TtlMap<ModelName, ModelDetail>,
    chunk_sizes: TtlMap<(), HashMap<Digest, u64>>,
    usage: TtlMap<(), UsageReport>,
    records: TtlMap<u32, Vec<Record>>,
}

impl Gatherer {
    pub fn new(vault: Vault, opts: Options) -> Gatherer {
        Gatherer {
            vault,
            opts,
            names: TtlMap::new(LISTING_TTL),
            rows: TtlMap::new(LISTING_TTL),
            details: TtlMap::new(LISTING_TTL),
            chunk_sizes: TtlMap::new(LISTING_TTL),
            usage: TtlMap::new(LISTING_TTL),
            records: TtlMap::new(LISTING_TTL),
        }
    }

    pub fn opts(&self) -> &Options {
        &self.opts
    }

    /// Page `page` (1-based; past the end: the last) of the models whose name contains
    /// `query` (case-insensitive). Only that page's rows are read.
    pub async fn models(&self, query: &str, page: usize) -> Result<ModelsPage> {
        let names = self
            .names
            .get_or_try(&(), async { Ok::<_, Error>(self.vault.list().await?) })
            .await?;
        let needle = query.trim().to_ascii_lowercase();
        let matching: Vec<&ModelName> = names
            .iter()
            .filter(|n| n.as_str().to_ascii_lowercase().contains(&needle))
            .collect();
        let pages = matching.len().div_ceil(PAGE_SIZE).max(1);
        let page = page.clamp(1, pages);
        let shown: Vec<ModelName> = matching
            .iter()
            .skip((page - 1) * PAGE_SIZE)
            .take(PAGE_SIZE)
            .map(|n| (*n).clone())
            .collect();
        let models = futures::stream::iter(shown)
            .map(|n| async move {
                let row = self.rows.get_or_try(&n, self.model_row(&n)).await?;
                Ok(ModelRow::clone(&row))
            })
            .buffered(self.vault.jobs())
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        Ok(ModelsPage {
            remote: self.opts.remote_display.clone(),
            query: query.trim().to_string(),
            page,
            pages,
            matching: matching.len(),
            models,
        })
    }

    /// One listing of the model's manifests, its latest manifest, its aliases.
    async fn model_row(&self, name: &ModelName) -> Result<ModelRow> {
        let dir = format!("models/{name}/versions/");
        let listed = self.vault.remote().list_objects(&dir).await?;
        let mut versions: Vec<Version> = listed
            .iter()
            .filter_map(|o| {
                o.key
                    .strip_prefix(&dir)?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()
            })
            .collect();
        versions.sort();
        let latest = Selector::Latest
            .pick(&versions)
            .or(versions.last())
            .cloned();
        let manifest = match &latest {
            Some(v) => Some(self.vault.manifest(name, v, Lookup::CacheFirst).await?),
            None => None,
        };
        let (aliases, _) = alias_list_lenient(&self.vault, name).await?;
        let last_written = listed.iter().filter_map(|o| o.last_modified).max();
        Ok(ModelRow {
            name: name.to_string(),
            versions: versions.len(),
            latest: manifest.as_ref().map(|m| m.version.clone()),
            latest_file_size: manifest.as_ref().map(|m| m.file_size),
            aliases: aliases
                .into_iter()
                .map(|a| AliasTarget {
                    alias: a.alias,
                    version: a.version,
                })
                .collect(),
            last_push: last_written
                .map(rfc3339)
                .or_else(|| manifest.map(|m| m.created_at)),
        })
    }

    /// A model's versions (with chunk figures), aliases and metric names.
    pub async fn model(&self, name: &ModelName) -> Result<Arc<ModelDetail>> {
        self.details.get_or_try(name, self.model_detail(name)).await
    }

    async fn model_detail(&self, name: &ModelName) -> Result<ModelDetail> {
        let versions = self.vault.versions(name).await?;
        let sizes = self.chunk_sizes().await?;
        let (aliases, damaged_aliases) = alias_list_lenient(&self.vault, name).await?;
        let mut manifests = futures::stream::iter(versions.iter().cloned())
            .map(|v| async move { self.vault.manifest(name, &v, Lookup::CacheFirst).await })
            .buffered(self.vault.jobs());
        let mut seen: HashSet<Digest> = HashSet::new();
        let mut out = Vec::with_capacity(versions.len());
        let mut metric_names = std::collections::BTreeSet::new();
        while let Some(m) = manifests.next().await {
            let m = m?;
            let (mut chunks, mut new_chunks, mut new_bytes) = (0, 0, 0);
            for (id, packed) in distinct_chunks(&m) {
                chunks += 1;
                if seen.insert(id) {
                    new_chunks += 1;
                    new_bytes += sizes.get(&id).copied().or(packed).unwrap_or(0);
                }
            }
            let metrics = numeric_metrics(&m);
            metric_names.extend(metrics.keys().cloned());
            let version: Option<Version> = m.version.parse().ok();
            out.push(VersionSummary {
                aliases: aliases
                    .iter()
                    .filter(|a| a.version.parse::<Version>().ok() == version)
                    .map(|a| a.alias.clone())
                    .collect(),
                version: m.version,
                created_at: m.created_at,
                created_by: format!("{}@{}", m.created_by.user, m.created_by.host),
                description: m.description,
                file_size: m.file_size,
                files: m.files.len(),
                chunks,
                new_chunks,
                new_bytes_stored: new_bytes,
                metrics,
            });
        }
        Ok(ModelDetail {
            name: name.to_string(),
            versions: out,
            aliases,
            damaged_aliases,
            metrics: metric_names.into_iter().collect(),
        })
    }

    /// One version: its manifest, chunk and dedupe figures, aliases and pull snippets.
    pub async fn version(&self, name: &ModelName, version: &Version) -> Result<VersionView> {
        let manifest = Arc::new(
            self.vault
                .manifest(name, version, Lookup::CacheFirst)
                .await?,
        );
        let sizes = self.chunk_sizes().await?;
        let detail = self.model(name).await?;
        let summary = detail
            .versions
            .iter()
            .find(|s| s.version.parse::<Version>().ok().as_ref() == Some(version));
        let distinct: HashMap<Digest, u64> = manifest
            .files
            .iter()
            .flat_map(|f| f.chunks.iter().map(|c| (c.id, c.size)))
            .collect();
        let packed = distinct_chunks(&manifest);
        let stored: Vec<u64> = distinct
            .keys()
            .filter_map(|id| sizes.get(id).copied().or(packed[id]))
            .collect();
        let stored_bytes: u64 = stored.iter().sum();
        let figures = ChunkFigures {
            chunk_refs: manifest.files.iter().map(|f| f.chunks.len() as u64).sum(),
            distinct_chunks: distinct.len() as u64,
            distinct_bytes: distinct.values().sum(),
            stored_bytes,
            missing_chunks: (distinct.len() - stored.len()) as u64,
            ratio: (stored_bytes > 0).then(|| manifest.file_size as f64 / stored_bytes as f64),
            new_chunks: summary.map_or(0, |s| s.new_chunks),
            new_bytes_stored: summary.map_or(0, |s| s.new_bytes_stored),
        };
        let signature = self
            .vault
            .signature_info(&manifest, Lookup::CacheFirst)
            .await?;
        let remote = shell_quote(&self.opts.remote_display);
        let target = format!("./{}", manifest.model_name);
        let spec = format!("{}@{}", manifest.model_name, manifest.version);
        Ok(VersionView {
            pull_command: format!("mvault -r {remote} pull {spec} --to {target}"),
            python_snippet: format!(
                "import mvault\n\nvault = mvault.Vault({})\npath = vault.pull({}, to={})\n",
                py_str(&self.opts.remote_display),
                py_str(&spec),
                py_str(&target)
            ),
            aliases: summary.map(|s| s.aliases.clone()).unwrap_or_default(),
            figures,
            manifest,
            signature,
        })
    }

    /// Usage figures, cost estimates and the cost alert.
    pub async fn storage(&self) -> Result<StorageView> {
        let usage = self
            .usage
            .get_or_try(&(), async {
                Ok::<_, Error>(lifecycle::usage(&self.vault, &self.opts.prices).await?)
            })
            .await?;
        let alert = self
            .opts
            .alert_monthly_cost_usd
            .and_then(|t| usage.cost_alert(&self.opts.remote_scheme, t));
        Ok(StorageView {
            remote: self.opts.remote_display.clone(),
            usage: UsageReport::clone(&usage),
            alert,
        })
    }

    /// The audit log of the last `days` days (1 to [`MAX_DAYS`]).
    pub async fn transfers(&self, days: u32) -> Result<TransfersView> {
        let days = days.clamp(1, MAX_DAYS);
        let now = SystemTime::now();
        let since = now - Duration::from_secs(u64::from(days) * 86_400);
        let log = self.opts.audit.clone();
        let records = self
            .records
            .get_or_try(&days, async move {
                let path = log.path().display().to_string();
                tokio::task::spawn_blocking(move || log.read_since(Some(since)))
                    .await
                    .expect("audit read task")
                    .map_err(|source| Error::Audit { path, source })
            })
            .await?;
        let bucket_secs = if days <= 2 { 3600 } else { 86_400 };
        Ok(TransfersView {
            audit_log: self.opts.audit.path().display().to_string(),
            days,
            since: rfc3339(since),
            records: records.len(),
            operations: audit::summarize(&records),
            bucket_secs,
            buckets: buckets(&records, since, now, bucket_secs),
            slowest: longest(&records),
            failed: {
                let mut f: Vec<Record> = records.iter().filter(|r| !r.is_ok()).cloned().collect();
                f.reverse();
                f.truncate(TOP_ROWS);
                f
            },
        })
    }

    /// The stored size of every chunk object, by digest (one listing of `chunks/`).
    async fn chunk_sizes(&self) -> Result<Arc<HashMap<Digest, u64>>> {
        self.chunk_sizes
            .get_or_try(&(), async {
                let listed = self.vault.remote().list_objects("chunks/").await?;
                Ok::<_, Error>(
                    listed
                        .into_iter()
                        .filter_map(|o| Some((chunk_digest(&o.key)?, o.size)))
                        .collect(),
                )
            })
            .await
    }
}

/// The digest named by a chunk key `chunks/<2 hex>/<64 hex>`.
fn chunk_digest(key: &str) -> Option<Digest> {
    let (prefix, hex) = key.strip_prefix("chunks/")?.split_once('/')?;
    (prefix.len() == 2 && hex.starts_with(prefix))
        .then(|| hex.parse().ok())
        .flatten()
}

/// Each distinct chunk of `m`, with its stored size when packed (the pack range's length).
fn distinct_chunks(m: &Manifest) -> HashMap<Digest, Option<u64>> {
    let mut out = HashMap::new();
    for c in m.files.iter().flat_map(|f| &f.chunks) {
        let slot = out.entry(c.id).or_insert(None);
        *slot = slot.or(c.pack.map(|p| p.len));
    }
    out
}

/// The metrics that are numbers (others are shown as text, not charted).
fn numeric_metrics(m: &Manifest) -> BTreeMap<String, f64> {
    m.performance_metrics
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_f64().filter(|x| x.is_finite())?)))
        .collect()
}

/// The `TOP_ROWS` records that took longest, longest first.
fn longest(records: &[Record]) -> Vec<Record> {
    let mut v: Vec<&Record> = records.iter().collect();
    v.sort_by_key(|r| std::cmp::Reverse(r.duration_ms));
    v.into_iter().take(TOP_ROWS).cloned().collect()
}

/// Records grouped into `bucket_secs` buckets from `since` to `now`.
fn buckets(
    records: &[Record],
    since: SystemTime,
    now: SystemTime,
    bucket_secs: u64,
) -> Vec<Bucket> {
    let start = DateTime::<Utc>::from(since).timestamp();
    let start = start - start.rem_euclid(bucket_secs as i64);
    let end = DateTime::<Utc>::from(now).timestamp();
    let n = ((end - start) / bucket_secs as i64 + 1).max(1) as usize;
    let mut acc: Vec<(u64, u64, u64, Vec<f64>)> = vec![(0, 0, 0, Vec::new()); n];
    for r in records {
        let Some(t) = r.timestamp() else { continue };
        let i = (t.timestamp() - start).div_euclid(bucket_secs as i64);
        let Some(a) = usize::try_from(i).ok().and_then(|i| acc.get_mut(i)) else {
            continue;
        };
        a.0 += 1;
        if !r.is_ok() {
            a.1 += 1;
        }
        a.2 = a.2.saturating_add(r.bytes);
        if r.bytes > 0 && r.duration_ms > 0 {
            a.3.push(r.bytes as f64 / 1e6 / (r.duration_ms as f64 / 1000.0));
        }
    }
    acc.into_iter()
        .enumerate()
        .map(|(i, (count, errors, bytes, mut rates))| {
            rates.sort_by(f64::total_cmp);
            let at = start + (i as u64 * bucket_secs) as i64;
            Bucket {
                start: DateTime::<Utc>::from_timestamp(at, 0)
                    .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
                    .unwrap_or_default(),
                count,
                errors,
                success_rate: (count > 0).then(|| (count - errors) as f64 / count as f64),
                median_mb_per_s: crate::audit::stats::median(&rates),
                bytes,
            }
        })
        .collect()
}

fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `s` as one POSIX shell word (single-quoted unless it is plainly safe).
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/:._-@+=,".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `s` as a Python string literal.
fn py_str(s: &str) -> String {
    // JSON string escapes are valid Python string escapes.
    serde_json::to_string(s).expect("a string serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("s3://b/p"), "s3://b/p");
        assert_eq!(shell_quote("/my vault/it's"), r"'/my vault/it'\''s'");
        assert_eq!(py_str("a\"b\\c"), r#""a\"b\\c""#);
    }

    #[test]
    fn buckets_cover_the_window() {
        let now = SystemTime::now();
        let since = now - Duration::from_secs(2 * 3600);
        let mut ok = audit::Record::new("push", "s3://b");
        ok.set_transfer(4_000_000, Duration::from_secs(2));
        let mut bad = audit::Record::new("pull", "s3://b");
        bad.set_error("boom");
        let b = buckets(&[ok, bad], since, now, 3600);
        assert!((3..=4).contains(&b.len()), "{}", b.len());
        let last = b.last().unwrap();
        assert_eq!((last.count, last.errors, last.bytes), (2, 1, 4_000_000));
        assert_eq!(last.success_rate, Some(0.5));
        assert_eq!(last.median_mb_per_s, Some(2.0));
        assert!(b[0].success_rate.is_none());
    }
}
