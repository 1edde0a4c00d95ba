//! `mvault sync`: copy versions between remotes.

use std::path::PathBuf;

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
    /// The source's encryption key file [default: --encryption-key-file].
    #[arg(long, value_name = "FILE")]
    pub from_encryption_key_file: Option<PathBuf>,
    /// The destination's encryption key file [default: --encryption-key-file]: with another
    /// key than the source's, every chunk and manifest is sealed again (key rotation).
    #[arg(long, value_name = "FILE")]
    pub to_encryption_key_file: Option<PathBuf>,
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
    let global = ctx.encryption_key_file.as_deref();
    let from = ctx.vault_keyed(
        Some(&a.from),
        a.from_encryption_key_file.as_deref().or(global),
    )?;
    let to = ctx.vault_keyed(Some(&a.to), a.to_encryption_key_file.as_deref().or(global))?;
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
    if let Some(r) = &r {
        ctx.note_model(r.name.as_str(), None);
    }
    ctx.note_detail(format!(
        "to {}: copied {}",
        to.remote().name(),
        if report.copied.is_empty() {
            "nothing".to_string()
        } else {
            report.copied.join(", ")
        }
    ));
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
    if report.differs.is_empty() {
        return Ok(exit::OK);
    }
    output::error_line(&format!(
        "{} on {} with other content than on {}: versions are immutable; rm them there to copy \
         them again, or leave them out of the sync",
        report.differs.join(", "),
        to.remote().name(),
        from.remote().name()
    ));
    Ok(exit::CONFLICT)
}
