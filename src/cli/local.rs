//! Commands about the local side: `run` (container entrypoint) and `cache ls|prune|clear`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use futures::StreamExt;
use serde_json::json;

use super::commands::{open_vault_at, transfer_options, usage};
use super::output::{self, note};
use super::{CacheAction, Global, exit};
use crate::cache::Cache;
use crate::transfer::PullRequest;
use crate::util::{human_bytes, parse_duration_secs, parse_size};
use crate::vault::Lookup;
use crate::version::{ModelRef, Selector};

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `mvault run`: ensure every model under DIR/<name>, then exec the command.
pub async fn run_models(g: &Global, a: &super::commands::RunArgs) -> Result<i32> {
    let models: Vec<String> = if a.models.is_empty() {
        env_nonempty("MVAULT_MODELS")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    } else {
        a.models.clone()
    };
    if models.is_empty() && a.command.is_empty() {
        return Err(usage(
            "mvault run: no models given (arguments or MVAULT_MODELS) and no command",
        ));
    }
    let refs: Vec<ModelRef> = models.iter().map(|m| m.parse()).collect::<Result<_, _>>()?;
    let dir =
        a.to.clone()
            .or_else(|| env_nonempty("MVAULT_MODELS_DIR").map(PathBuf::from))
            .or_else(|| env_nonempty("MODEL_PATH").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("models"));
    let remote = g
        .remote
        .clone()
        .or_else(|| env_nonempty("MODELS_S3_BUCKET").map(|b| format!("s3://{b}")));
    let vault = open_vault_at(g, remote.as_deref())?;
    let opts = transfer_options(g, &a.transfer)?;
    let lookup = if a.offline {
        Lookup::Offline
    } else {
        Lookup::CacheFirst
    };
    let started = std::time::Instant::now();
    let results: Vec<Result<(String, u64)>> = futures::stream::iter(refs)
        .map(|r| {
            let (vault, opts, dir) = (&vault, &opts, &dir);
            async move {
                if !matches!(r.selector, Selector::Exact(_)) {
                    tracing::info!("{r} is not pinned: resolving it needs the remote");
                }
                let manifest = vault.resolve(&r, lookup).await?;
                let label = format!("{}@{}", manifest.model_name, manifest.version);
                let req = PullRequest {
                    target: dir.join(&manifest.model_name),
                    manifest,
                    verify: false,
                    link: Default::default(),
                    force: a.force,
                };
                let out = vault.pull(&req, opts, a.offline).await?;
                Ok::<_, anyhow::Error>((label, out.summary.bytes_remote))
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let mut fetched = 0;
    for r in results {
        let (label, bytes) = r?;
        fetched += bytes;
        tracing::info!("{label} ready");
    }
    super::commands::enforce_cache_limits(g, vault.cache());
    note(
        g.quiet || !a.command.is_empty(),
        &format!(
            "{} models ready in {} ({} fetched, {:.0} ms)",
            models.len(),
            dir.display(),
            human_bytes(fetched),
            started.elapsed().as_secs_f64() * 1000.0
        ),
    );
    if a.command.is_empty() {
        return Ok(exit::OK);
    }
    exec(&a.command)
}

/// Replaces this process with `command` (so it gets signals and the exit code directly).
fn exec(command: &[String]) -> Result<i32> {
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(&command[0])
        .args(&command[1..])
        .exec();
    Err(err).with_context(|| format!("cannot run {:?}", command[0]))
}

/// `mvault cache ls|prune|clear`.
pub fn cache_cmd(
    g: &Global,
    action: &CacheAction,
    cache: &Cache,
    defaults: CacheDefaults,
) -> Result<i32> {
    match action {
        CacheAction::Ls => {
            let versions = cache.versions();
            if g.json {
                output::json(&versions)?;
                return Ok(exit::OK);
            }
            output::line(&format!(
                "{:<32} {:<16} {:>10}  {:<20}  REMOTE",
                "MODEL", "VERSION", "SIZE", "LAST USED"
            ))?;
            for v in &versions {
                output::line(&format!(
                    "{:<32} {:<16} {:>10}  {:<20}  {}",
                    v.model_name,
                    v.version,
                    human_bytes(v.cached_bytes),
                    v.last_used,
                    v.remote_id
                ))?;
            }
            output::line(&format!("total blobs: {}", human_bytes(cache.blob_bytes())))?;
        }
        CacheAction::Prune {
            max_size,
            older_than,
        } => {
            let max = match max_size {
                Some(s) => Some(parse_size(s).ok_or_else(|| {
                    usage(format!("invalid --max-size {s:?}: expected e.g. 20G"))
                })?),
                None => defaults.max_size_bytes,
            };
            let age = match older_than {
                Some(s) => Some(parse_duration_secs(s).ok_or_else(|| {
                    usage(format!("invalid --older-than {s:?}: expected e.g. 7d, 12h"))
                })?),
                None => defaults.ttl_secs,
            };
            if max.is_none() && age.is_none() {
                return Err(usage(
                    "cache prune: give --max-size or --older-than (or set cache.max_size / cache.ttl in the config)",
                ));
            }
            let report = cache.prune(max, age.map(std::time::Duration::from_secs))?;
            print_prune(g, &report)?;
        }
        CacheAction::Clear => {
            let report = cache.clear()?;
            print_prune(g, &report)?;
        }
    }
    Ok(exit::OK)
}

/// Cache limits from the config file.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheDefaults {
    pub max_size_bytes: Option<u64>,
    pub ttl_secs: Option<u64>,
}

fn print_prune(g: &Global, r: &crate::cache::PruneReport) -> Result<()> {
    if g.json {
        output::json(&json!(r))?;
    } else {
        note(
            g.quiet,
            &format!(
                "removed {} versions, {} files ({}); {} in use kept; cache now {}",
                r.versions_removed.len(),
                r.blobs_removed,
                human_bytes(r.bytes_removed),
                r.in_use.len(),
                human_bytes(r.bytes_after)
            ),
        );
    }
    Ok(())
}
