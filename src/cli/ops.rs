//! Remote-side operations beyond push and pull: providers, sync, aliases, verify, gc,
//! prune and usage.

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::json;

use super::commands::{
    exact_ref, load_config, open_vault, remote_spec, transfer_options, usage, vault_for,
};
use super::output::{self, note};
use super::{Global, TransferArgs, exit};
use crate::config::Config;
use crate::lifecycle;
use crate::transfer;
use crate::util::{human_bytes, parse_duration_secs};
use crate::version::{Alias, ModelName, ModelRef, Selector};

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Source remote (URL, path or provider).
    #[arg(long)]
    pub from: String,
    /// Destination remote (URL, path or provider).
    #[arg(long)]
    pub to: String,
    /// NAME or NAME@VERSION (default: every model).
    pub model: Option<String>,
    #[command(flatten)]
    pub transfer: TransferArgs,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only operations newer than this: 7d, 24h, an RFC 3339 time or YYYY-MM-DD.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Also write the counters in Prometheus text format to this file.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<std::path::PathBuf>,
}

/// `mvault stats [--since 7d] [--metrics-file PATH]`.
pub fn stats(g: &Global, a: &StatsArgs) -> Result<i32> {
    let config = load_config(g)?;
    let log = crate::audit::AuditLog::from_config(&config.audit, &super::commands::data_dir());
    let since = match &a.since {
        Some(s) => Some(super::audit_table::parse_since(s).ok_or_else(|| {
            usage(format!(
                "invalid --since {s:?}: expected e.g. 7d, 24h, 2026-01-31"
            ))
        })?),
        None => None,
    };
    let records = log.read_since(since)?;
    let stats = crate::audit::summarize(&records);
    if let Some(path) = &a.metrics_file {
        crate::audit::write_metrics_file(path, &stats)?;
    }
    if g.json {
        output::json(&stats)?;
    } else if stats.is_empty() {
        note(
            g.quiet,
            &format!("no operations recorded in {}", log.path().display()),
        );
    } else {
        output::line(super::audit_table::table(&stats).trim_end())?;
    }
    Ok(exit::OK)
}

#[derive(Debug, Subcommand)]
pub enum AliasAction {
    /// Point ALIAS at NAME@VERSION (history is kept).
    Set {
        /// NAME@VERSION.
        model: String,
        /// Alias name, e.g. production.
        alias: String,
        /// Write past damaged alias revisions (an administrator's repair), with a warning
        /// naming each one skipped.
        #[arg(long)]
        force: bool,
    },
    /// List a model's aliases with their history.
    Ls {
        /// Model name.
        name: String,
    },
}

/// `mvault remotes`: providers from the config file, secrets masked.
pub fn remotes(g: &Global, config: &Config) -> Result<i32> {
    let rows: Vec<serde_json::Value> = config
        .providers
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "type": p.backend.scheme(),
                "enabled": p.enabled,
                "default": config.default_provider.as_deref() == Some(p.name.as_str()),
                "url": p.spec().map(|s| s.url()).ok(),
                "options": p.masked_options(),
                "problem": p.problem().map(|e| e.to_string()),
            })
        })
        .collect();
    if g.json {
        output::json(&json!({"config": config.path, "providers": rows}))?;
        return Ok(exit::OK);
    }
    match &config.path {
        Some(p) => output::line(&format!("config: {}", p.display()))?,
        None => output::line("no config file found; the default remote is the local vault")?,
    }
    for r in rows {
        let opts: Vec<String> = r["options"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default();
        output::line(&format!(
            "{}{:<16} {:<5} {:<8} {:<40} {}",
            if r["default"] == true { "*" } else { " " },
            r["name"].as_str().unwrap_or(""),
            r["type"].as_str().unwrap_or(""),
            if r["enabled"] == true {
                "enabled"
            } else {
                "disabled"
            },
            r["url"].as_str().unwrap_or("(incomplete)"),
            opts.join(" ")
        ))?;
    }
    Ok(exit::OK)
}

/// `mvault sync --from A --to B [NAME[@VERSION]]`.
pub async fn sync(g: &Global, a: &SyncArgs) -> Result<i32> {
    let config = load_config(g)?;
    let from = vault_for(g, &remote_spec(Some(&a.from), &config)?)?;
    let to = vault_for(g, &remote_spec(Some(&a.to), &config)?)?;
    let r: Option<ModelRef> = a.model.as_deref().map(str::parse).transpose()?;
    let selector = a
        .model
        .as_deref()
        .filter(|m| m.contains('@'))
        .and(r.as_ref().map(|r| &r.selector));
    let opts = transfer_options(g, &a.transfer)?;
    let report = transfer::sync(
        from.remote(),
        to.remote(),
        r.as_ref().map(|r| &r.name),
        selector,
        &opts,
    )
    .await?;
    super::audit_trail::note_bytes(report.summary.bytes_local);
    if g.json {
        output::json(&report)?;
    } else {
        note(
            g.quiet,
            &format!(
                "synced {} → {}: {} versions copied, {} already there; {} in {} chunks ({} present)",
                from.remote().name(),
                to.remote().name(),
                report.copied.len(),
                report.present.len(),
                human_bytes(report.summary.bytes_remote),
                report.summary.chunks_new,
                report.summary.chunks_reused
            ),
        );
    }
    Ok(exit::OK)
}

/// `mvault alias set|ls`.
pub async fn alias(g: &Global, action: &AliasAction) -> Result<i32> {
    let vault = open_vault(g)?;
    match action {
        AliasAction::Set {
            model,
            alias,
            force,
        } => {
            let (name, version) = exact_ref(model)?;
            let alias: Alias = alias.parse()?;
            let change = lifecycle::alias_set(&vault, &name, &version, &alias, *force).await?;
            warn_skipped(&change.skipped);
            if g.json {
                output::json(&json!({
                    "model_name": name.as_str(), "alias": alias.as_str(),
                    "from": change.from.as_ref().map(|v| v.to_string()),
                    "to": change.to.to_string(), "revision": change.revision,
                    "changed": change.changed, "skipped": change.skipped,
                }))?;
            } else {
                let from = change
                    .from
                    .map(|v| format!(" (was {v})"))
                    .unwrap_or_default();
                note(g.quiet, &format!("{name}@{alias} -> {}{from}", change.to));
            }
        }
        AliasAction::Ls { name } => {
            let name: ModelName = name.parse()?;
            let list = lifecycle::alias_list(&vault, &name).await?;
            if g.json {
                output::json(&list)?;
            } else {
                for a in list {
                    let hist: Vec<String> = a
                        .history
                        .iter()
                        .map(|h| output::clean(&h.version).into_owned())
                        .collect();
                    output::line(&format!(
                        "{:<16} {:<16} history: {}",
                        a.alias,
                        output::clean(&a.version),
                        hist.join(" <- ")
                    ))?;
                }
            }
        }
    }
    Ok(exit::OK)
}

/// Warns on stderr about damaged alias revisions a `--force` wrote past.
fn warn_skipped(skipped: &[String]) {
    for s in skipped {
        output::warn(&format!("skipped damaged alias revision: {s}"));
    }
}

/// `mvault rollback NAME ALIAS [--force]`.
pub async fn rollback(g: &Global, name: &str, alias: &str, force: bool) -> Result<i32> {
    let vault = open_vault(g)?;
    let name: ModelName = name.parse()?;
    let alias: Alias = alias.parse()?;
    let change = lifecycle::rollback(&vault, &name, &alias, force).await?;
    warn_skipped(&change.skipped);
    let from = change.from.map(|v| v.to_string()).unwrap_or_default();
    let to = change.to;
    if g.json {
        output::json(&json!({
            "model_name": name.as_str(), "alias": alias.as_str(), "from": from,
            "to": to.to_string(), "revision": change.revision, "skipped": change.skipped,
        }))?;
    } else {
        note(g.quiet, &format!("{name}@{alias}: {from} -> {to}"));
    }
    Ok(exit::OK)
}

/// `mvault verify [NAME[@VERSION]] [--sample P]`: exit 5 on any damage.
pub async fn verify(g: &Global, model: Option<&str>, sample: Option<f64>) -> Result<i32> {
    let vault = open_vault(g)?;
    let r: Option<ModelRef> = model.map(str::parse).transpose()?;
    let version = match &r {
        Some(ModelRef {
            selector: Selector::Exact(v),
            ..
        }) => Some(v.clone()),
        Some(r) if model.is_some_and(|m| m.contains('@')) => Some(
            vault
                .resolve(r, crate::vault::Lookup::Remote)
                .await?
                .version
                .parse()?,
        ),
        _ => None,
    };
    let report = lifecycle::verify(
        &vault,
        r.as_ref().map(|r| &r.name),
        version.as_ref(),
        sample,
    )
    .await?;
    if g.json {
        output::json(&report)?;
    } else {
        for p in report.missing.iter().chain(report.damaged.iter()) {
            let users: Vec<String> = p.used_by.iter().map(|u| u.version.clone()).collect();
            eprintln!(
                "{}: {:?} {} (breaks {})",
                p.key,
                p.damage,
                p.detail,
                users.join(", ")
            );
        }
        note(
            g.quiet,
            &format!(
                "verified {} versions: {} of {} chunks checked ({}), {} missing, {} damaged",
                report.versions_checked,
                report.chunks_checked,
                report.chunks_referenced,
                human_bytes(report.bytes_read),
                report.missing.len(),
                report.damaged.len()
            ),
        );
    }
    Ok(if report.is_ok() {
        exit::OK
    } else {
        exit::INTEGRITY
    })
}

/// Parses `--grace AGE` into gc options.
fn gc_options(grace: &str, dry_run: bool, force: bool) -> Result<lifecycle::GcOptions> {
    let grace = parse_duration_secs(grace)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| usage(format!("invalid --grace {grace:?}: expected e.g. 24h, 30m")))?;
    Ok(lifecycle::GcOptions {
        grace,
        dry_run,
        force,
    })
}

/// `mvault gc [--dry-run] [--grace AGE] [--force]`.
pub async fn gc(g: &Global, dry_run: bool, grace: &str, force: bool) -> Result<i32> {
    let vault = open_vault(g)?;
    let report = lifecycle::gc(&vault, &gc_options(grace, dry_run, force)?).await?;
    if g.json {
        output::json(&report)?;
    } else {
        let (deleted, recorded) = if dry_run {
            ("would delete", "would record")
        } else {
            ("deleted", "recorded")
        };
        note(
            g.quiet,
            &format!(
                "{deleted} {} unreferenced chunks ({}); {recorded} {} for a gc at least {} \
                 later, {} pending in {} records; {} referenced, {} too young, {} scanned",
                report.deleted,
                human_bytes(report.bytes_deleted),
                report.chunks_recorded,
                grace,
                report.kept_pending,
                report.records_pending,
                report.referenced,
                report.kept_young,
                report.scanned_chunks
            ),
        );
    }
    Ok(exit::OK)
}

/// `mvault prune NAME --keep N`, then gc.
pub async fn prune(
    g: &Global,
    name: &str,
    keep: usize,
    dry_run: bool,
    grace: &str,
    force: bool,
) -> Result<i32> {
    let vault = open_vault(g)?;
    let name: ModelName = name.parse()?;
    let opts = gc_options(grace, dry_run, force)?;
    opts.validate()?;
    let removed = lifecycle::prune(&vault, &name, keep, dry_run).await?;
    let gc = lifecycle::gc(&vault, &opts).await?;
    let removed: Vec<String> = removed.iter().map(|v| v.to_string()).collect();
    if g.json {
        output::json(&json!({"removed": removed, "gc": gc}))?;
    } else {
        note(
            g.quiet,
            &format!(
                "{} {} versions of {name} ({}); gc {} {} chunks ({}), {} {}",
                if dry_run { "would remove" } else { "removed" },
                removed.len(),
                removed.join(", "),
                if dry_run { "would delete" } else { "deleted" },
                gc.deleted,
                human_bytes(gc.bytes_deleted),
                if dry_run { "would record" } else { "recorded" },
                gc.chunks_recorded
            ),
        );
    }
    Ok(exit::OK)
}

/// `mvault usage`.
pub async fn usage_cmd(g: &Global) -> Result<i32> {
    let vault = open_vault(g)?;
    let report = lifecycle::usage(&vault, lifecycle::PRICES).await?;
    if g.json {
        output::json(&report)?;
        return Ok(exit::OK);
    }
    output::line(&format!(
        "{:<32} {:>8} {:>12} {:>12}",
        "MODEL", "VERSIONS", "LOGICAL", "STORED"
    ))?;
    for m in &report.models {
        output::line(&format!(
            "{:<32} {:>8} {:>12} {:>12}",
            m.model,
            m.versions,
            human_bytes(m.logical_bytes),
            human_bytes(m.stored_bytes)
        ))?;
    }
    output::line(&format!(
        "total: {} logical, {} stored in {} objects, dedupe ratio {}",
        human_bytes(report.logical_bytes),
        human_bytes(report.stored_bytes),
        report.objects,
        report
            .dedupe_ratio
            .map(|r| format!("{r:.2}x"))
            .unwrap_or_else(|| "-".into())
    ))?;
    for c in &report.monthly_cost {
        output::line(&format!(
            "  {:<6} {:<28} ${:.4}/month",
            c.provider, c.tier, c.usd_per_month
        ))?;
    }
    Ok(exit::OK)
}
