//! `mvault push`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use futures::StreamExt;
use serde_json::{Map, Value};

use crate::chunk::ChunkParams;
use crate::cli::context::Context;
use crate::cli::{TransferArgs, UsageError, code_of, exit};
use crate::cli::{json, output};
use crate::transfer::PushRequest;
use crate::util::human_bytes;
use crate::vault::{self, PushOutcome, PushResult, Vault};
use crate::version::{ModelName, Version};

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
    /// Show what would be sent (new chunks and bytes, chunks already stored) without
    /// uploading anything or writing the version.
    #[arg(long)]
    pub dry_run: bool,
    /// Store every chunk as an object of its own instead of packing chunk objects of at most
    /// 4 MiB into 8 MiB packs (more requests; the version stays format 2, readable by mvault
    /// releases before packs).
    #[arg(long)]
    pub no_pack: bool,
    /// Sign the version with this private key (PEM, from `mvault keygen`): an OpenSSF
    /// model-signing bundle is stored beside the manifest [default: signing.key of the
    /// config].
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
    #[command(flatten)]
    pub transfer: TransferArgs,
}

/// Pushes each model to each remote; with several, a failure of one is reported and the others
/// go on (the exit code is the first failure's).
pub async fn push(ctx: &Context, a: &PushArgs) -> Result<i32> {
    let version: Version = a.version.parse()?;
    let models = match (&a.models_dir, &a.name) {
        (Some(dir), _) => vault::models_in_dir(dir)?
            .into_iter()
            .map(|(n, p)| (n, vec![p]))
            .collect(),
        (None, Some(n)) => vec![(n.parse::<ModelName>()?, a.paths.clone())],
        (None, None) => {
            return Err(UsageError::err(
                "--name is required unless --models-dir is given",
            ));
        }
    };
    let mut template = request(a, models[0].0.clone(), version)?;
    template.sign_key = ctx.sign_key(a.sign_key.as_deref())?;
    let opts = ctx.transfer_options(&a.transfer)?;
    let vaults = vaults(ctx, a.all_providers)?;
    if let [(name, _)] = &models[..] {
        ctx.note_model(name.as_str(), Some(&template.version.to_string()));
    }
    let bulk = vaults.len() * models.len() > 1;
    let outcomes = vault::push_many(&vaults, &models, &template, &opts);
    let mut outcomes = std::pin::pin!(outcomes);
    let mut failure = None;
    while let Some(o) = outcomes.next().await {
        let mut o = match o {
            PushOutcome {
                result: PushResult::Failed { cause, .. },
                ..
            } if !bulk => return Err((*cause).into()),
            o => o,
        };
        match &o.result {
            PushResult::Pushed {
                version,
                file_size,
                files,
                summary,
                dry_run,
                ..
            } => {
                if !*dry_run {
                    ctx.note_bytes(summary.bytes_local);
                }
                let (pushed, sent, reused) = if *dry_run {
                    ("would push", "would send", "already stored")
                } else {
                    ("pushed", "sent", "reused")
                };
                ctx.info(&format!(
                    "{pushed} {}@{version} to {}: {files} files, {}; {sent} {} in {} new chunks \
                     ({} {reused}), {:.1}s, {:.0} MB/s",
                    o.model_name,
                    o.remote,
                    human_bytes(*file_size),
                    human_bytes(summary.bytes_remote),
                    summary.chunks_new,
                    summary.chunks_reused,
                    summary.seconds,
                    summary.mb_per_s
                ));
            }
            PushResult::Failed { .. } => {}
        }
        if let PushResult::Failed {
            error, category, ..
        } = &mut o.result
        {
            let message = output::scrub_message(error);
            eprintln!(
                "mvault: {} on {}: {}",
                o.model_name,
                o.remote,
                output::terminal_safe(&message)
            );
            let exit_code = code_of(Some(*category));
            failure = failure.or(Some(exit_code));
            if ctx.json {
                // The documented failure document, beside the model and remote it is for.
                output::json_line(&json::PushFailed {
                    model_name: &o.model_name,
                    remote: &o.remote,
                    error: json::FailureBody {
                        category: Some(*category),
                        exit_code,
                        message,
                    },
                })?;
            }
        } else if ctx.json {
            output::json_line(&o)?;
        }
    }
    Ok(failure.unwrap_or(exit::OK))
}

/// The request for every model of the push: version and metadata; name and paths are
/// filled in per model.
fn request(a: &PushArgs, name: ModelName, version: Version) -> Result<PushRequest> {
    let tags = a
        .tags
        .iter()
        .map(|s| parse_kv("--tag", s, false).map(|(k, v)| (k, v.as_str().unwrap_or("").into())))
        .collect::<Result<BTreeMap<_, _>>>()?;
    let mut req = PushRequest {
        name,
        version,
        paths: Vec::new(),
        description: a.description.clone(),
        metrics: kv_map("--metric", &a.metrics)?,
        params: kv_map("--param", &a.params)?,
        tags,
        extra: Map::new(),
        chunking: ChunkParams::DEFAULT,
        dry_run: a.dry_run,
        pack: !a.no_pack,
        sign_key: None,
    };
    if let Some(path) = &a.metadata_file {
        vault::merge_metadata(&mut req, vault::read_metadata_file(path)?)?;
    }
    Ok(req)
}

/// The vaults a push goes to: `--all-providers`, a comma-separated `--remote/--provider`
/// list, or the one remote.
fn vaults(ctx: &Context, all: bool) -> Result<Vec<Vault>> {
    let names: Vec<String> = match (all, ctx.remote.as_deref()) {
        (true, _) => {
            let enabled = ctx.config.enabled_providers();
            if enabled.is_empty() {
                return Err(UsageError::err(
                    "--all-providers: the config file has no enabled provider",
                ));
            }
            enabled.iter().map(|p| p.name.clone()).collect()
        }
        (false, Some(r)) if r.contains(',') && !vault::open::is_url_or_path(r) => r
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        (false, r) => return Ok(vec![ctx.vault_at(r)?]),
    };
    names.iter().map(|n| ctx.vault_at(Some(n))).collect()
}

/// Parses `key=value`; with `typed`, the value becomes a JSON number or bool when it parses
/// as one.
fn parse_kv(flag: &str, s: &str, typed: bool) -> Result<(String, Value)> {
    let (k, v) = s
        .split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| UsageError::err(format!("{flag} {s:?}: expected KEY=VALUE")))?;
    let value = match serde_json::from_str::<Value>(v) {
        Ok(n @ (Value::Number(_) | Value::Bool(_))) if typed => n,
        _ => Value::String(v.to_string()),
    };
    Ok((k.to_string(), value))
}

fn kv_map(flag: &str, items: &[String]) -> Result<Map<String, Value>> {
    items.iter().map(|s| parse_kv(flag, s, true)).collect()
}
