//! `mvault stats`: a summary of the audit log.

use anyhow::{Context as _, Result};
use clap::Args;

use crate::cli::audit_table;
use crate::cli::context::Context;
use crate::cli::{UsageError, exit, output};

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
pub fn stats(ctx: &Context, a: &StatsArgs) -> Result<i32> {
    let log = ctx.audit_log();
    let since = match &a.since {
        Some(s) => Some(audit_table::parse_since(s).ok_or_else(|| {
            UsageError::err(format!(
                "invalid --since {s:?}: expected e.g. 7d, 24h, 2026-01-31"
            ))
        })?),
        None => None,
    };
    let records = log.read_since(since)?;
    let stats = crate::audit::summarize(&records);
    if let Some(path) = &a.metrics_file {
        crate::audit::write_metrics_file(path, &stats)
            .with_context(|| format!("metrics file {}", path.display()))?;
    }
    if ctx.json {
        output::json(&stats)?;
    } else if stats.is_empty() {
        ctx.info(&format!(
            "no operations recorded in {}",
            log.path().display()
        ));
    } else {
        output::line(audit_table::table(&stats).trim_end())?;
    }
    Ok(exit::OK)
}
