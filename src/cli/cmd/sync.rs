//! `mvault sync`: copy versions between remotes.

use anyhow::Result;
use clap::Args;

use crate::cli::context::Context;
use crate::cli::{TransferArgs, TrustArgs, exit, output};
use crate::transfer;
use crate::util::human_bytes;
use crate::version::ModelRef;

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
    /// With trusted keys, each version's signature on the source is checked before any of
    /// its chunks is copied.
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// `mvault sync --from A --to B [NAME[@VERSION]]`.
pub async fn sync(ctx: &Context, a: &SyncArgs) -> Result<i32> {
    let from = ctx.vault_at(Some(&a.from))?;
    let to = ctx.vault_at(Some(&a.to))?;
    let r: Option<ModelRef> = a.model.as_deref().map(str::parse).transpose()?;
    let selector = a
        .model
        .as_deref()
        .filter(|m| m.contains('@'))
        .and(r.as_ref().map(|r| &r.selector));
    let opts = ctx.transfer_options(&a.transfer)?;
    let trusted = ctx.trusted_keys(&a.trust)?;
    let report = transfer::sync(
        from.remote(),
        to.remote(),
        r.as_ref().map(|r| &r.name),
        selector,
        &opts,
        (!trusted.is_empty()).then_some(&trusted),
    )
    .await?;
    ctx.note_bytes(report.summary.bytes_local);
    if ctx.json {
        output::json(&report)?;
    } else {
        ctx.info(&format!(
            "synced {} → {}: {} versions copied, {} already there; {} in {} chunks ({} present)",
            from.remote().name(),
            to.remote().name(),
            report.copied.len(),
            report.present.len(),
            human_bytes(report.summary.bytes_remote),
            report.summary.chunks_new,
            report.summary.chunks_reused
        ));
    }
    Ok(exit::OK)
}
