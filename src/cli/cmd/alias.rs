//! `mvault alias set|ls` and `mvault rollback`.

use anyhow::Result;
use clap::Subcommand;

use super::exact_ref;
use crate::cli::context::Context;
use crate::cli::json::AliasMoved;
use crate::cli::{exit, output};
use crate::vault;
use crate::version::{Alias, ModelName};

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

/// `mvault alias set|ls`.
pub async fn alias(ctx: &Context, action: &AliasAction) -> Result<i32> {
    let vault = ctx.vault()?;
    match action {
        AliasAction::Set {
            model,
            alias,
            force,
        } => {
            let (name, version) = exact_ref(model)?;
            let alias: Alias = alias.parse()?;
            ctx.note_model(name.as_str(), Some(&version.to_string()));
            let change = vault::alias_set(&vault, &name, &version, &alias, *force).await?;
            ctx.note_detail(alias_detail(&alias, &change));
            warn_skipped(&change.skipped);
            if ctx.json {
                output::json(&moved(&name, &alias, change))?;
            } else {
                let from = change
                    .from
                    .map(|v| format!(" (was {v})"))
                    .unwrap_or_default();
                ctx.info(&format!("{name}@{alias} -> {}{from}", change.to));
            }
        }
        AliasAction::Ls { name } => {
            let name: ModelName = name.parse()?;
            let list = vault::alias_list(&vault, &name).await?;
            if ctx.json {
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

/// An alias move for the audit record: `alias prod -> 1.2.0 (was 1.1.0)`.
fn alias_detail(alias: &Alias, change: &vault::AliasChange) -> String {
    match &change.from {
        Some(from) => format!("alias {alias} -> {} (was {from})", change.to),
        None => format!("alias {alias} -> {}", change.to),
    }
}

/// Warns on stderr about damaged alias revisions a `--force` wrote past.
fn warn_skipped(skipped: &[String]) {
    for s in skipped {
        output::warn(&format!("skipped damaged alias revision: {s}"));
    }
}

/// `mvault rollback NAME ALIAS [--force]`.
pub async fn rollback(ctx: &Context, name: &str, alias: &str, force: bool) -> Result<i32> {
    let vault = ctx.vault()?;
    let name: ModelName = name.parse()?;
    let alias: Alias = alias.parse()?;
    ctx.note_model(name.as_str(), None);
    let change = vault::rollback(&vault, &name, &alias, force).await?;
    ctx.note_model(name.as_str(), Some(&change.to.to_string()));
    ctx.note_detail(alias_detail(&alias, &change));
    warn_skipped(&change.skipped);
    if ctx.json {
        output::json(&moved(&name, &alias, change))?;
    } else {
        let from = change.from.map(|v| v.to_string()).unwrap_or_default();
        ctx.info(&format!("{name}@{alias}: {from} -> {}", change.to));
    }
    Ok(exit::OK)
}

fn moved(name: &ModelName, alias: &Alias, change: vault::AliasChange) -> AliasMoved {
    AliasMoved {
        model_name: name.to_string(),
        alias: alias.to_string(),
        from: change.from.map(|v| v.to_string()),
        to: change.to.to_string(),
        revision: change.revision,
        changed: change.changed,
        skipped: change.skipped,
    }
}
