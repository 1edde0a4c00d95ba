//! Keeping a vault healthy: `verify`, `gc`, `prune` and `usage`.

use anyhow::Result;
use clap::Args;

use crate::cli::context::Context;
use crate::cli::json::{Pruned, UsageOut};
use crate::cli::{UsageError, exit, output};
use crate::lifecycle::{self, Sample};
use crate::util::{human_bytes, parse_duration_secs};
use crate::version::ModelName;

/// Concurrency of commands that scan the whole vault.
#[derive(Debug, Args, Clone)]
pub struct ScanArgs {
    /// Requests in flight at once [default: transfer.jobs, else 16].
    #[arg(short, long)]
    pub jobs: Option<usize>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// NAME or NAME@VERSION (default: every version of every model).
    pub model: Option<String>,
    /// Check only this fraction of the chunks (0 < P <= 1).
    #[arg(long, value_name = "P")]
    pub sample: Option<f64>,
    /// Seed of --sample: the same seed checks the same chunks again [default: random,
    /// reported in the output].
    #[arg(long, value_name = "N", requires = "sample")]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub scan: ScanArgs,
    /// With trusted keys, every selected version's signature is checked first.
    #[command(flatten)]
    pub trust: crate::cli::TrustArgs,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Show what would be recorded and deleted; write and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Protects pushes running shorter than this, e.g. 24h (at least 1h without --force).
    #[arg(long, default_value = "24h", value_name = "AGE")]
    pub grace: String,
    /// Accept a --grace below 1h (unsafe while pushes run; 0s records and deletes at once).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub scan: ScanArgs,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Model name.
    pub name: String,
    /// Releases to keep (newest first); pre-releases newer than the oldest one kept stay too.
    #[arg(long)]
    pub keep: usize,
    /// Show what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Grace period of the gc that follows.
    #[arg(long, default_value = "24h", value_name = "AGE")]
    pub grace: String,
    /// Accept a --grace below 1h for the gc that follows.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub scan: ScanArgs,
}

/// `mvault verify [NAME[@VERSION]] [--sample P [--seed N]]`: exit 5 on any damage.
pub async fn verify(ctx: &Context, a: &VerifyArgs) -> Result<i32> {
    let vault = ctx.vault()?.with_jobs(ctx.jobs(a.scan.jobs)?);
    let model = a.model.as_deref();
    let sample = a.sample.map(|fraction| Sample {
        fraction,
        seed: a.seed.unwrap_or_else(|| fastrand::u64(..)),
    });
    let (name, version) = vault.verify_selection(model).await?;
    if let Some(n) = &name {
        ctx.note_model(
            n.as_str(),
            version.as_ref().map(|v| v.to_string()).as_deref(),
        );
    }
    let vault = vault.with_trusted_keys(ctx.trusted_keys(&a.trust)?);
    vault
        .check_signatures(name.as_ref(), version.as_ref())
        .await?;
    let report = lifecycle::verify(&vault, name.as_ref(), version.as_ref(), sample).await?;
    let manifests = match report.bad_manifests.len() {
        0 => String::new(),
        n => format!(", {n} manifests unreadable"),
    };
    ctx.note_detail(format!(
        "{} versions, {} chunks checked: {} missing, {} damaged{manifests}",
        report.versions_checked,
        report.chunks_checked,
        report.missing.len(),
        report.damaged.len()
    ));
    if ctx.json {
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
        for p in &report.bad_manifests {
            eprintln!("{}: manifest unreadable: {}", p.version, p.detail);
        }
        let seed = report
            .seed
            .map(|s| format!(" (sample seed {s})"))
            .unwrap_or_default();
        ctx.info(&format!(
            "verified {} versions: {} of {} chunks checked ({}){seed}, {} missing, {} \
             damaged{manifests}",
            report.versions_checked,
            report.chunks_checked,
            report.chunks_referenced,
            human_bytes(report.bytes_read),
            report.missing.len(),
            report.damaged.len()
        ));
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
        .ok_or_else(|| {
            UsageError::err(format!("invalid --grace {grace:?}: expected e.g. 24h, 30m"))
        })?;
    Ok(lifecycle::GcOptions {
        grace,
        dry_run,
        force,
    })
}

/// `mvault gc [--dry-run] [--grace AGE] [--force]`.
pub async fn gc(ctx: &Context, a: &GcArgs) -> Result<i32> {
    let vault = ctx.vault()?.with_jobs(ctx.jobs(a.scan.jobs)?);
    let (dry_run, grace) = (a.dry_run, &a.grace);
    let report = lifecycle::gc(&vault, &gc_options(grace, dry_run, a.force)?).await?;
    ctx.note_detail(format!(
        "{} {} chunks, recorded {}{}",
        if dry_run { "would delete" } else { "deleted" },
        report.deleted,
        report.chunks_recorded,
        if dry_run { " (dry run)" } else { "" }
    ));
    if ctx.json {
        output::json(&report)?;
    } else {
        let (deleted, recorded) = if dry_run {
            ("would delete", "would record")
        } else {
            ("deleted", "recorded")
        };
        ctx.info(&format!(
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
        ));
    }
    Ok(exit::OK)
}

/// `mvault prune NAME --keep N`, then gc.
pub async fn prune(ctx: &Context, a: &PruneArgs) -> Result<i32> {
    let vault = ctx.vault()?.with_jobs(ctx.jobs(a.scan.jobs)?);
    let (keep, dry_run) = (a.keep, a.dry_run);
    let name: ModelName = a.name.parse()?;
    let opts = gc_options(&a.grace, dry_run, a.force)?;
    opts.validate()?;
    ctx.note_model(name.as_str(), None);
    let removed = lifecycle::prune(&vault, &name, keep, dry_run).await?;
    let removed: Vec<String> = removed.iter().map(|v| v.to_string()).collect();
    let verb = if dry_run { "would remove" } else { "removed" };
    ctx.note_detail(format!("{verb} {}", removed.join(", ")));
    let gc = lifecycle::gc(&vault, &opts).await?;
    if ctx.json {
        output::json(&Pruned { removed, gc })?;
    } else {
        ctx.info(&format!(
            "{} {} versions of {name} ({}); gc {} {} chunks ({}), {} {}",
            if dry_run { "would remove" } else { "removed" },
            removed.len(),
            removed.join(", "),
            if dry_run { "would delete" } else { "deleted" },
            gc.deleted,
            human_bytes(gc.bytes_deleted),
            if dry_run { "would record" } else { "recorded" },
            gc.chunks_recorded
        ));
    }
    Ok(exit::OK)
}

/// `mvault usage`.
pub async fn usage(ctx: &Context, a: &ScanArgs) -> Result<i32> {
    let scheme = ctx.spec(ctx.remote.as_deref())?.backend.scheme();
    let vault = ctx.vault()?.with_jobs(ctx.jobs(a.jobs)?);
    let report = lifecycle::usage(&vault, lifecycle::PRICES).await?;
    let alert = ctx
        .config
        .alert_monthly_cost_usd
        .and_then(|t| report.cost_alert(scheme, t));
    let code = match &alert {
        Some(a) if a.exceeded => exit::COST_ALERT,
        _ => exit::OK,
    };
    if let Some(a) = alert.as_ref().filter(|a| a.exceeded) {
        output::warn(&format!(
            "cost alert: estimated ${:.2}/month on {} is above usage.alert_monthly_cost ${:.2}",
            a.usd_per_month, a.provider, a.threshold_usd_per_month
        ));
    }
    if ctx.json {
        output::json(&UsageOut {
            report: &report,
            alert: alert.as_ref(),
        })?;
        return Ok(code);
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
    Ok(code)
}
