//! Command handlers: turn parsed arguments into library calls and print the results.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use futures::StreamExt;
use serde_json::{Map, Value, json};

use super::local::{CacheDefaults, cache_cmd, run_models};
use super::output::{self, clean, note};
use super::{Cli, Command, Global, TransferArgs, exit};
use crate::cache::Cache;
use crate::chunk::ChunkParams;
use crate::config::Config;
use crate::manifest::Manifest;
use crate::remote::{Remote, RemoteSpec};
use crate::transfer::pull::LinkMode;
use crate::transfer::{self, Progress, PullRequest, PushRequest, RateLimiter, TransferOptions};
use crate::util::human_bytes;
use crate::vault::{Lookup, Vault};
use crate::version::{ModelName, ModelRef, Selector, Version};

/// A usage error found after parsing (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub(super) fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError(msg.into()).into()
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Files and directories to upload (a directory contributes its contents).
    #[arg(required_unless_present = "models_dir", conflicts_with = "models_dir")]
    pub paths: Vec<PathBuf>,
    /// Model name: letters, digits, '.', '_', '-'.
    #[arg(
        short,
        long,
        required_unless_present = "models_dir",
        conflicts_with = "models_dir"
    )]
    pub name: Option<String>,
    /// Push every immediate sub-directory or file of DIR as its own model, named after it.
    #[arg(long, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    /// Push to every enabled provider of the config file (see also --provider a,b).
    #[arg(long)]
    pub all_providers: bool,
    /// Semantic version, e.g. 1.0.0 or v1.0.0.
    #[arg(long = "version", short = 'V', value_name = "VERSION")]
    pub version: String,
    /// Free-text description.
    #[arg(short, long, default_value = "")]
    pub description: String,
    /// Performance metric key=value (repeatable; numbers stay numbers).
    #[arg(long = "metric", value_name = "KEY=VALUE")]
    pub metrics: Vec<String>,
    /// Training parameter key=value (repeatable).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Tag key=value (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// JSON object merged into the metadata (description, performance_metrics,
    /// training_config, tags; other keys are kept as extra metadata).
    #[arg(long, value_name = "JSON_FILE")]
    pub metadata_file: Option<PathBuf>,
    #[command(flatten)]
    pub transfer: TransferArgs,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// NAME, NAME@VERSION, NAME@latest, NAME@^1.2 or NAME@ALIAS.
    pub model: String,
    /// Directory to materialize the files in (default: print the cached snapshot path).
    #[arg(long, short = 't', value_name = "DIR")]
    pub to: Option<PathBuf>,
    /// Re-hash every file instead of trusting sizes and modification times.
    #[arg(long)]
    pub verify: bool,
    /// Resolve and materialize from the local cache only; fail if something is missing.
    #[arg(long)]
    pub offline: bool,
    /// How to place files: auto (hard link, else copy), hard, copy.
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = parse_link)]
    pub link: LinkMode,
    /// Replace files in the target that mvault did not write (refused by default).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub transfer: TransferArgs,
}

fn parse_link(s: &str) -> std::result::Result<LinkMode, String> {
    match s {
        "auto" => Ok(LinkMode::Auto),
        "hard" => Ok(LinkMode::Hard),
        "copy" => Ok(LinkMode::Copy),
        _ => Err("expected auto, hard or copy".into()),
    }
}

/// Runs a parsed command line; `Ok(code)` for commands that decide their own exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    let g = &cli.global;
    match &cli.command {
        Command::Push(a) => push(g, a).await,
        Command::Pull(a) => pull(g, a).await,
        Command::List => list(g).await,
        Command::Versions { name } => versions(g, name).await,
        Command::Info { model } => info(g, model).await,
        Command::Rm { model } => rm(g, model).await,
        Command::Run(a) => run_models(g, a).await,
        Command::Cache { action } => {
            let cache = Cache::open(&cache_root(g))?;
            let c = load_config(g)?;
            let defaults = CacheDefaults {
                max_size_bytes: c.cache.max_size_bytes,
                ttl_secs: c.cache.ttl_secs,
            };
            cache_cmd(g, action, &cache, defaults)
        }
        Command::Remotes => super::ops::remotes(g, &load_config(g)?),
        Command::Sync(a) => super::ops::sync(g, a).await,
        Command::Alias { action } => super::ops::alias(g, action).await,
        Command::Rollback { name, alias, force } => {
            super::ops::rollback(g, name, alias, *force).await
        }
        Command::Verify { model, sample } => super::ops::verify(g, model.as_deref(), *sample).await,
        Command::Gc {
            dry_run,
            grace,
            force,
        } => super::ops::gc(g, *dry_run, grace, *force).await,
        Command::Prune {
            name,
            keep,
            dry_run,
            grace,
            force,
        } => super::ops::prune(g, name, *keep, *dry_run, grace, *force).await,
        Command::Usage => super::ops::usage_cmd(g).await,
        Command::Stats(a) => super::ops::stats(g, a),
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Models to ensure, NAME@VERSION (default: $MVAULT_MODELS).
    pub models: Vec<String>,
    /// Directory holding one sub-directory per model (default: $MVAULT_MODELS_DIR,
    /// then $MODEL_PATH, then ./models).
    #[arg(long, short = 't', value_name = "DIR")]
    pub to: Option<PathBuf>,
    /// Use the local cache only.
    #[arg(long)]
    pub offline: bool,
    /// Replace files in the model directories that mvault did not write.
    #[arg(long)]
    pub force: bool,
    /// Command to exec once the models are in place (after `--`).
    #[arg(last = true)]
    pub command: Vec<String>,
    #[command(flatten)]
    pub transfer: TransferArgs,
}

/// `$XDG_DATA_HOME/mvault`, else `~/.local/share/mvault`.
pub(crate) fn data_dir() -> PathBuf {
    xdg_dir("XDG_DATA_HOME", ".local/share").join("mvault")
}

fn xdg_dir(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(v) => PathBuf::from(v),
        None => home().join(fallback),
    }
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Loads the config file (`-c`, `MVAULT_CONFIG`, or the search order of the contract).
pub(super) fn load_config(g: &Global) -> Result<Config> {
    Ok(Config::load(g.config.as_deref())?)
}

/// Whether `--remote` names a URL or path rather than a config provider. A `:` or `?` counts
/// too, so that a mistyped URL (`s3:bucket?secret_key=...`) is refused as one (with its secrets
/// redacted) rather than looked up, and echoed, as a provider name.
fn is_url_or_path(r: &str) -> bool {
    r.contains("://") || r.contains(['/', ':', '?']) || r.starts_with('.')
}

/// Resolves a remote: a URL or path, a provider of the config file, the config's default
/// provider, or the default local vault.
pub(super) fn remote_spec(remote: Option<&str>, config: &Config) -> Result<RemoteSpec> {
    let spec = match remote.filter(|r| !r.is_empty()) {
        Some(r) if is_url_or_path(r) => RemoteSpec::parse_url(r)?,
        Some(name) => config.spec(name).map_err(|e| usage(e.to_string()))?,
        None => match config.default_spec() {
            Some(spec) => spec.map_err(|e| usage(e.to_string()))?,
            None => RemoteSpec::local(&data_dir().join("vault")),
        },
    };
    output::register_secrets(spec.secrets());
    Ok(spec)
}

fn cache_root(g: &Global) -> PathBuf {
    g.cache_dir
        .clone()
        .unwrap_or_else(|| xdg_dir("XDG_CACHE_HOME", ".cache").join("mvault"))
}

pub(super) fn open_vault(g: &Global) -> Result<Vault> {
    open_vault_at(g, g.remote.as_deref())
}

/// Opens the vault at `remote` (a URL, path or provider; None: the default).
pub(super) fn open_vault_at(g: &Global, remote: Option<&str>) -> Result<Vault> {
    let config = load_config(g)?;
    let spec = remote_spec(remote, &config)?;
    vault_for(g, &spec)
}

/// Opens a vault for a resolved spec, with the cache.
pub(super) fn vault_for(g: &Global, spec: &RemoteSpec) -> Result<Vault> {
    super::audit_trail::note_remote(&spec.display_name());
    let remote = Remote::open(spec)?;
    let cache = Cache::open(&cache_root(g))?;
    // The cache keys manifests by remote identity: the URL plus any custom endpoint.
    let identity = match spec.options.get("endpoint") {
        Some(ep) => format!("{}?endpoint={ep}", spec.url()),
        None => spec.url(),
    };
    Ok(Vault::new(remote, &identity, cache))
}

pub(super) fn transfer_options(g: &Global, t: &TransferArgs) -> Result<TransferOptions> {
    let config = load_config(g)?;
    let jobs = t
        .jobs
        .or(config.transfer.jobs)
        .unwrap_or_else(transfer::default_jobs);
    if jobs == 0 || jobs > 1024 {
        return Err(usage("--jobs must be between 1 and 1024"));
    }
    let rate = match &t.limit_rate {
        Some(r) => Some(transfer::ratelimit::parse_rate(r).ok_or_else(|| {
            usage(format!(
                "invalid --limit-rate {r:?}: expected e.g. 50M, 800K"
            ))
        })?),
        None => config.transfer.rate_limit_bytes_per_sec,
    };
    Ok(TransferOptions {
        jobs,
        rate: rate.map(|r| Arc::new(RateLimiter::new(r))),
        progress: Progress::stderr_if_terminal(g.quiet || g.json),
    })
}

/// Applies `cache.max_size` / `cache.ttl` from the config after a pull (LRU eviction that
/// skips versions running pulls hold). Problems are warnings: the pull itself succeeded.
pub(super) fn enforce_cache_limits(g: &Global, cache: &Cache) {
    let Ok(config) = load_config(g) else { return };
    let (max, ttl) = (config.cache.max_size_bytes, config.cache.ttl_secs);
    if max.is_none() && ttl.is_none() {
        return;
    }
    match cache.prune(max, ttl.map(std::time::Duration::from_secs)) {
        Ok(r) if !r.versions_removed.is_empty() => tracing::info!(
            "cache limits: evicted {} ({})",
            r.versions_removed.join(", "),
            human_bytes(r.bytes_removed)
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("cache limits not applied: {e}"),
    }
}

/// Parses `key=value`; the value becomes a JSON number/bool when it parses as one.
fn parse_kv(flag: &str, s: &str, typed: bool) -> Result<(String, Value)> {
    let (k, v) = s
        .split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| usage(format!("{flag} {s:?}: expected KEY=VALUE")))?;
    let value = if typed {
        match serde_json::from_str::<Value>(v) {
            Ok(n @ (Value::Number(_) | Value::Bool(_))) => n,
            _ => Value::String(v.to_string()),
        }
    } else {
        Value::String(v.to_string())
    };
    Ok((k.to_string(), value))
}

fn kv_map(flag: &str, items: &[String]) -> Result<Map<String, Value>> {
    items.iter().map(|s| parse_kv(flag, s, true)).collect()
}

/// The models `--models-dir DIR` stands for: (name, path) of each entry, sorted.
fn models_in(dir: &Path) -> Result<Vec<(ModelName, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let e = e?;
        let file_name = e.file_name();
        let Some(n) = file_name.to_str().filter(|n| !n.starts_with('.')) else {
            continue;
        };
        let stem = if e.path().is_file() {
            n.split('.').next().unwrap_or(n)
        } else {
            n
        };
        out.push((stem.parse::<ModelName>()?, e.path()));
    }
    out.sort();
    if out.is_empty() {
        return Err(usage(format!("{}: no models found", dir.display())));
    }
    Ok(out)
}

/// The vaults a push goes to: `--all-providers`, a comma-separated `--remote/--provider`
/// list, or the one remote.
fn push_vaults(g: &Global, all: bool) -> Result<Vec<Vault>> {
    let config = load_config(g)?;
    let names: Vec<String> = match (all, g.remote.as_deref()) {
        (true, _) => {
            let enabled = config.enabled_providers();
            if enabled.is_empty() {
                return Err(usage(
                    "--all-providers: the config file has no enabled provider",
                ));
            }
            enabled.iter().map(|p| p.name.clone()).collect()
        }
        (false, Some(r)) if r.contains(',') && !is_url_or_path(r) => r
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        (false, r) => return Ok(vec![vault_for(g, &remote_spec(r, &config)?)?]),
    };
    names
        .iter()
        .map(|n| vault_for(g, &remote_spec(Some(n), &config)?))
        .collect()
}

async fn push(g: &Global, a: &PushArgs) -> Result<i32> {
    let version: Version = a.version.parse()?;
    let models = match (&a.models_dir, &a.name) {
        (Some(dir), _) => models_in(dir)?
            .into_iter()
            .map(|(n, p)| (n, vec![p]))
            .collect(),
        (None, Some(n)) => vec![(n.parse::<ModelName>()?, a.paths.clone())],
        (None, None) => return Err(usage("--name is required unless --models-dir is given")),
    };
    let opts = transfer_options(g, &a.transfer)?;
    let vaults = push_vaults(g, a.all_providers)?;
    let jobs: Vec<(&Vault, ModelName, Vec<PathBuf>)> = vaults
        .iter()
        .flat_map(|v| models.iter().map(move |(n, p)| (v, n.clone(), p.clone())))
        .collect();
    let bulk = jobs.len() > 1;
    let runs = futures::stream::iter(jobs)
        .map(|(vault, name, paths)| {
            let (opts, version) = (&opts, &version);
            async move {
                let r = push_one(g, a, vault, opts, name.clone(), version.clone(), paths).await;
                (vault.remote().name().to_string(), name, r)
            }
        })
        .buffer_unordered(4);
    let mut runs = std::pin::pin!(runs);
    let (mut results, mut failure) = (Vec::new(), None);
    while let Some((remote, name, r)) = runs.next().await {
        match r {
            Ok(v) => results.push(v),
            Err(e) if bulk => {
                let msg = output::scrub_message(&format!("{e:#}"));
                eprintln!(
                    "mvault: {name} on {remote}: {}",
                    output::terminal_safe(&msg)
                );
                results.push(json!({"model_name": name.as_str(), "remote": remote, "error": msg}));
                failure = failure.or(Some(super::exit_code(&e)));
            }
            Err(e) => return Err(e),
        }
    }
    if g.json {
        if bulk {
            output::json(&results)?;
        } else {
            output::json(&results[0])?;
        }
    }
    Ok(failure.unwrap_or(exit::OK))
}

/// Pushes one model; returns its JSON summary (and prints the human one).
async fn push_one(
    g: &Global,
    a: &PushArgs,
    vault: &Vault,
    opts: &TransferOptions,
    name: ModelName,
    version: Version,
    paths: Vec<PathBuf>,
) -> Result<Value> {
    let mut req = PushRequest {
        name,
        version,
        paths,
        description: a.description.clone(),
        metrics: kv_map("--metric", &a.metrics)?,
        params: kv_map("--param", &a.params)?,
        tags: a
            .tags
            .iter()
            .map(|s| {
                parse_kv("--tag", s, false).map(|(k, v)| (k, v.as_str().unwrap_or("").to_string()))
            })
            .collect::<Result<BTreeMap<_, _>>>()?,
        extra: Map::new(),
        chunking: ChunkParams::DEFAULT,
    };
    if let Some(path) = &a.metadata_file {
        merge_metadata_file(&mut req, path)?;
    }
    super::audit_trail::note_model(req.name.as_str(), Some(&req.version.to_string()));
    let (m, summary) = vault.push(&req, opts).await?;
    super::audit_trail::note_bytes(summary.bytes_local);
    let result = json!({
        "model_name": m.model_name,
        "version": m.version,
        "remote": vault.remote().name(),
        "checksum": m.checksum,
        "file_size": m.file_size,
        "files": m.files.len(),
        "summary": summary,
    });
    if !g.json {
        note(
            g.quiet,
            &format!(
                "pushed {}@{} to {}: {} files, {}; sent {} in {} new chunks ({} reused), {:.1}s, {:.0} MB/s",
                m.model_name,
                m.version,
                vault.remote().name(),
                m.files.len(),
                human_bytes(m.file_size),
                human_bytes(summary.bytes_remote),
                summary.chunks_new,
                summary.chunks_reused,
                summary.seconds,
                summary.mb_per_s
            ),
        );
    }
    Ok(result)
}

/// Merges a `--metadata-file` JSON object into the request.
fn merge_metadata_file(req: &mut PushRequest, path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read metadata file {}", path.display()))?;
    let Value::Object(obj) = serde_json::from_str::<Value>(&text).map_err(|e| {
        usage(format!(
            "metadata file {}: invalid JSON: {e}",
            path.display()
        ))
    })?
    else {
        return Err(usage(format!(
            "metadata file {}: expected a JSON object",
            path.display()
        )));
    };
    for (k, v) in obj {
        match (k.as_str(), v) {
            ("description", Value::String(s)) if req.description.is_empty() => req.description = s,
            ("performance_metrics", Value::Object(o)) => merge_under(&mut req.metrics, o),
            ("training_config", Value::Object(o)) => merge_under(&mut req.params, o),
            ("tags", Value::Object(o)) => {
                for (tk, tv) in o {
                    let s = tv
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| tv.to_string());
                    req.tags.entry(tk).or_insert(s);
                }
            }
            // Fields mvault computes itself are not taken from the file.
            ("model_name" | "version" | "created_at" | "file_size" | "checksum" | "files", _) => {}
            (_, v) => {
                req.extra.insert(k, v);
            }
        }
    }
    Ok(())
}

/// Command-line values win over the file's.
fn merge_under(dst: &mut Map<String, Value>, src: Map<String, Value>) {
    for (k, v) in src {
        dst.entry(k).or_insert(v);
    }
}

async fn pull(g: &Global, a: &PullArgs) -> Result<i32> {
    let r: ModelRef = a.model.parse()?;
    let opts = transfer_options(g, &a.transfer)?;
    let vault = open_vault(g)?;
    let lookup = if a.offline {
        Lookup::Offline
    } else {
        Lookup::CacheFirst
    };
    let manifest = vault.resolve(&r, lookup).await?;
    let target = match &a.to {
        Some(t) => t.clone(),
        None => vault.snapshot_dir(&manifest)?,
    };
    let req = PullRequest {
        manifest,
        target,
        verify: a.verify,
        link: a.link,
        force: a.force,
    };
    super::audit_trail::note_model(&req.manifest.model_name, Some(&req.manifest.version));
    let out = vault.pull(&req, &opts, a.offline).await?;
    super::audit_trail::note_bytes(out.summary.bytes_local);
    enforce_cache_limits(g, vault.cache());
    let m = &req.manifest;
    if g.json {
        output::json(&json!({
            "model_name": m.model_name,
            "version": m.version,
            "path": out.target,
            "summary": out.summary,
        }))?;
    } else {
        let s = &out.summary;
        if s.files_done > 0 {
            note(
                g.quiet,
                &format!(
                    "pulled {}@{}: {} files placed, {} already in place; fetched {} in {} chunks ({} local), {:.2}s",
                    m.model_name,
                    m.version,
                    s.files_done,
                    s.files_skipped,
                    human_bytes(s.bytes_remote),
                    s.chunks_new,
                    s.chunks_reused,
                    s.seconds
                ),
            );
        } else {
            note(
                g.quiet,
                &format!("{}@{} is up to date", m.model_name, m.version),
            );
        }
        output::line(&out.target.display().to_string())?;
    }
    Ok(exit::OK)
}

async fn list(g: &Global) -> Result<i32> {
    let vault = open_vault(g)?;
    let names = vault.list().await?;
    let mut rows = Vec::new();
    for n in &names {
        let vs = vault.remote().list_versions(n).await?;
        let latest = Selector::Latest.pick(&vs).map(|v| v.to_string());
        rows.push((n, vs.len(), latest));
    }
    if g.json {
        let v: Vec<Value> = rows
            .iter()
            .map(|(n, c, l)| json!({"name": n.as_str(), "versions": c, "latest": l}))
            .collect();
        output::json(&v)?;
    } else if rows.is_empty() {
        note(g.quiet, &format!("no models on {}", vault.remote().name()));
    } else {
        output::line(&format!("{:<40} {:>8}  LATEST", "NAME", "VERSIONS"))?;
        for (n, c, l) in rows {
            output::line(&format!("{:<40} {:>8}  {}", n, c, l.unwrap_or_default()))?;
        }
    }
    Ok(exit::OK)
}

async fn versions(g: &Global, name: &str) -> Result<i32> {
    let name: ModelName = name.parse()?;
    let vault = open_vault(g)?;
    let vs = vault.versions(&name).await?;
    let mut manifests = Vec::new();
    for v in &vs {
        manifests.push(vault.manifest(&name, v, Lookup::CacheFirst).await?);
    }
    // Aliases pointing at each version, shown beside it; a damaged alias is left out with a
    // warning rather than hiding every version.
    let (aliases, damaged) = crate::lifecycle::alias_list_lenient(&vault, &name).await?;
    for d in &damaged {
        output::warn(&format!("alias not shown: {d}"));
    }
    let aliases_of = |m: &Manifest| -> Vec<String> {
        let v: Option<Version> = m.version.parse().ok();
        aliases
            .iter()
            .filter(|a| a.version.parse::<Version>().ok() == v)
            .map(|a| a.alias.clone())
            .collect()
    };
    if g.json {
        let v: Vec<Value> = manifests
            .iter()
            .map(|m| {
                json!({"version": m.version, "created_at": m.created_at,
                       "file_size": m.file_size, "files": m.files.len(),
                       "description": m.description, "aliases": aliases_of(m)})
            })
            .collect();
        output::json(&v)?;
    } else {
        output::line(&format!(
            "{:<20} {:<26} {:>10}  {:<20} DESCRIPTION",
            "VERSION", "CREATED", "SIZE", "ALIASES"
        ))?;
        for m in &manifests {
            output::line(&format!(
                "{:<20} {:<26} {:>10}  {:<20} {}",
                m.version,
                clean(&m.created_at),
                human_bytes(m.file_size),
                aliases_of(m).join(","),
                clean(&m.description)
            ))?;
        }
    }
    Ok(exit::OK)
}

/// The metadata object `info --json` prints (fields named in the contract).
pub fn metadata_json(m: &Manifest) -> Value {
    let files: Vec<Value> = m
        .files
        .iter()
        .map(|f| json!({"path": f.path, "size": f.size, "digest": f.digest, "chunks": f.chunks.len()}))
        .collect();
    json!({
        "model_name": m.model_name,
        "version": m.version,
        "created_at": m.created_at,
        "created_by": m.created_by,
        "file_size": m.file_size,
        "checksum": m.checksum,
        "description": m.description,
        "performance_metrics": m.performance_metrics,
        "training_config": m.training_config,
        "tags": m.tags,
        "extra": m.extra,
        "files": files,
    })
}

async fn info(g: &Global, model: &str) -> Result<i32> {
    let r: ModelRef = model.parse()?;
    let vault = open_vault(g)?;
    let m = vault.resolve(&r, Lookup::Remote).await?;
    if g.json {
        output::json(&metadata_json(&m))?;
        return Ok(exit::OK);
    }
    let by = &m.created_by;
    let mut lines = vec![
        format!("model:       {}", m.model_name),
        format!("version:     {}", m.version),
        format!(
            "created:     {} by {}@{} ({})",
            clean(&m.created_at),
            clean(&by.user),
            clean(&by.host),
            clean(&by.tool)
        ),
        format!(
            "size:        {} ({} bytes) in {} files",
            human_bytes(m.file_size),
            m.file_size,
            m.files.len()
        ),
        format!("checksum:    {}", m.checksum),
    ];
    if !m.description.is_empty() {
        lines.push(format!("description: {}", clean(&m.description)));
    }
    for (title, map) in [
        ("metrics", &m.performance_metrics),
        ("training", &m.training_config),
    ] {
        if !map.is_empty() {
            let s: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}={}", clean(k), clean(&v.to_string())))
                .collect();
            lines.push(format!("{title:<12} {}", s.join(", ")));
        }
    }
    if !m.tags.is_empty() {
        let s: Vec<String> = m
            .tags
            .iter()
            .map(|(k, v)| format!("{}={}", clean(k), clean(v)))
            .collect();
        lines.push(format!("tags:        {}", s.join(", ")));
    }
    lines.push("files:".into());
    for f in &m.files {
        lines.push(format!(
            "  {:>10}  {}  {}",
            human_bytes(f.size),
            &f.digest.to_hex()[..16],
            clean(&f.path)
        ));
    }
    output::line(&lines.join("\n"))?;
    Ok(exit::OK)
}

async fn rm(g: &Global, model: &str) -> Result<i32> {
    let (name, version) = exact_ref(model)?;
    let vault = open_vault(g)?;
    super::audit_trail::note_model(name.as_str(), Some(&version.to_string()));
    vault.rm(&name, &version).await?;
    if g.json {
        output::json(&json!({"removed": format!("{name}@{version}")}))?;
    } else {
        note(
            g.quiet,
            &format!("removed {name}@{version} (run `mvault gc` to reclaim its chunks)"),
        );
    }
    Ok(exit::OK)
}

/// Parses `NAME@VERSION` with an exact version (for commands that must not guess).
pub(super) fn exact_ref(s: &str) -> Result<(ModelName, Version)> {
    let r: ModelRef = s.parse()?;
    match r.selector {
        Selector::Exact(v) if s.contains('@') => Ok((r.name, v)),
        _ => Err(usage(format!(
            "{s:?}: expected NAME@VERSION with an exact version"
        ))),
    }
}
