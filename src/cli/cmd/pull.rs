//! `mvault pull` and `mvault run` (the container entrypoint).

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;

use crate::cli::context::Context;
use crate::cli::json::{Pulled, Ran};
use crate::cli::{TransferArgs, TrustArgs, UsageError, exit, output};
use crate::transfer::PullRequest;
use crate::transfer::pull::LinkMode;
use crate::util::human_bytes;
use crate::vault::{self, Lookup};
use crate::version::ModelRef;

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
    #[command(flatten)]
    pub trust: TrustArgs,
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
    #[command(flatten)]
    pub trust: TrustArgs,
}

fn parse_link(s: &str) -> std::result::Result<LinkMode, String> {
    match s {
        "auto" => Ok(LinkMode::Auto),
        "hard" => Ok(LinkMode::Hard),
        "copy" => Ok(LinkMode::Copy),
        _ => Err("expected auto, hard or copy".into()),
    }
}

pub async fn pull(ctx: &Context, a: &PullArgs) -> Result<i32> {
    let r: ModelRef = a.model.parse()?;
    let opts = ctx.transfer_options(&a.transfer)?;
    let trusted = ctx.trusted_keys(&a.trust)?;
    let vault = ctx.vault()?.with_trusted_keys(trusted);
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
    let m = &req.manifest;
    ctx.note_model(&m.model_name, Some(&m.version));
    let out = vault.pull(&req, &opts, a.offline).await?;
    ctx.note_bytes(out.summary.bytes_local);
    if ctx.json {
        output::json(&Pulled {
            model_name: m.model_name.clone(),
            version: m.version.clone(),
            path: out.target,
            summary: out.summary,
        })?;
        return Ok(exit::OK);
    }
    let s = &out.summary;
    if s.files_done > 0 {
        ctx.info(&format!(
            "pulled {}@{}: {} files placed, {} already in place; fetched {} in {} chunks ({} \
             local), {:.2}s",
            m.model_name,
            m.version,
            s.files_done,
            s.files_skipped,
            human_bytes(s.bytes_remote),
            s.chunks_new,
            s.chunks_reused,
            s.seconds
        ));
    } else {
        ctx.info(&format!("{}@{} is up to date", m.model_name, m.version));
    }
    output::line(&out.target.display().to_string())?;
    Ok(exit::OK)
}

/// `mvault run`: ensure every model under DIR/<name>, then exec the command.
pub async fn run(ctx: &Context, a: &RunArgs) -> Result<i32> {
    let models: Vec<String> = if a.models.is_empty() {
        vault::models_from_env()
    } else {
        a.models.clone()
    };
    if models.is_empty() && a.command.is_empty() {
        return Err(UsageError::err(
            "mvault run: no models given (arguments or MVAULT_MODELS) and no command",
        ));
    }
    let refs: Vec<ModelRef> = models.iter().map(|m| m.parse()).collect::<Result<_, _>>()?;
    let dir = vault::models_dir(a.to.clone());
    // Deployments written for the seed scripts name only a bucket.
    let remote = vault::startup_remote(ctx.remote.as_deref());
    let trusted = ctx.trusted_keys(&a.trust)?;
    let vault = ctx.vault_at(remote.as_deref())?.with_trusted_keys(trusted);
    let opts = ctx.transfer_options(&a.transfer)?;
    let started = std::time::Instant::now();
    let pulled = vault
        .pull_into(&refs, &dir, &opts, a.offline, a.force)
        .await?;
    let fetched: u64 = pulled.iter().map(|(_, o)| o.summary.bytes_remote).sum();
    ctx.note_bytes(pulled.iter().map(|(_, o)| o.summary.bytes_local).sum());
    if ctx.json && a.command.is_empty() {
        let models = pulled
            .into_iter()
            .map(|(m, o)| Pulled {
                model_name: m.model_name,
                version: m.version,
                path: o.target,
                summary: o.summary,
            })
            .collect();
        output::json(&Ran { dir, models })?;
        return Ok(exit::OK);
    }
    output::note(
        ctx.quiet || ctx.json || !a.command.is_empty(),
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
