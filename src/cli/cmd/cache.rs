//! `mvault cache ls|prune|clear`.

use anyhow::Result;

use crate::cache::PruneReport;
use crate::cli::context::Context;
use crate::cli::{CacheAction, UsageError, exit, output};
use crate::util::{human_bytes, parse_duration_secs, parse_size};

/// `mvault cache ls|prune|clear`.
pub fn cache(ctx: &Context, action: &CacheAction) -> Result<i32> {
    let cache = ctx.cache()?;
    let defaults = &ctx.config.cache;
    match action {
        CacheAction::Ls => {
            let versions = cache.versions();
            if ctx.json {
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
                    UsageError::err(format!("invalid --max-size {s:?}: expected e.g. 20G"))
                })?),
                None => defaults.max_size_bytes,
            };
            let age = match older_than {
                Some(s) => Some(parse_duration_secs(s).ok_or_else(|| {
                    UsageError::err(format!("invalid --older-than {s:?}: expected e.g. 7d, 12h"))
                })?),
                None => defaults.ttl_secs,
            };
            if max.is_none() && age.is_none() {
                return Err(UsageError::err(
                    "cache prune: give --max-size or --older-than (or set cache.max_size / cache.ttl in the config)",
                ));
            }
            let report = cache.prune(max, age.map(std::time::Duration::from_secs))?;
            print_prune(ctx, &report)?;
        }
        CacheAction::Clear => {
            let report = cache.clear()?;
            print_prune(ctx, &report)?;
        }
    }
    Ok(exit::OK)
}

fn print_prune(ctx: &Context, r: &PruneReport) -> Result<()> {
    if ctx.json {
        output::json(r)?;
    } else {
        ctx.info(&format!(
            "removed {} versions, {} files ({}); {} in use kept; cache now {}",
            r.versions_removed.len(),
            r.blobs_removed,
            human_bytes(r.bytes_removed),
            r.in_use.len(),
            human_bytes(r.bytes_after)
        ));
    }
    Ok(())
}
