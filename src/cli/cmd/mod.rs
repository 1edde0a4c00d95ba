//! One file per command group; each handler turns parsed arguments into library calls and
//! prints the result (human text, or with `--json` the documented document of [`super::json`]).

mod alias;
mod cache;
mod crypt;
mod keygen;
pub(super) mod maintain;
mod models;
mod pull;
mod push;
mod remotes;
mod serve;
mod stats;
mod sync;

use anyhow::Result;

pub use alias::AliasAction;
pub use keygen::{KeygenArgs, SignatureArgs};
pub use pull::{PullArgs, RunArgs};
pub use push::PushArgs;
pub use serve::ServeArgs;
pub use stats::StatsArgs;
pub use sync::SyncArgs;

use super::context::Context;
use super::{Command, UsageError};
use crate::version::{ModelName, ModelRef, Selector, Version};

/// Runs a parsed command; `Ok(code)` for commands that decide their own exit code.
pub async fn run(ctx: &Context, command: &Command) -> Result<i32> {
    match command {
        Command::Push(a) => push::push(ctx, a).await,
        Command::Pull(a) => pull::pull(ctx, a).await,
        Command::Run(a) => pull::run(ctx, a).await,
        Command::List => models::list(ctx).await,
        Command::Versions { name } => models::versions(ctx, name).await,
        Command::Info { model } => models::info(ctx, model).await,
        Command::Rm { model, force } => models::rm(ctx, model, *force).await,
        Command::Cache { action } => cache::cache(ctx, action),
        Command::Remotes => remotes::remotes(ctx),
        Command::Sync(a) => sync::sync(ctx, a).await,
        Command::Alias { action } => alias::alias(ctx, action).await,
        Command::Rollback { name, alias, force } => alias::rollback(ctx, name, alias, *force).await,
        Command::Verify(a) => maintain::verify(ctx, a).await,
        Command::Gc(a) => maintain::gc(ctx, a).await,
        Command::Prune(a) => maintain::prune(ctx, a).await,
        Command::Usage(t) => maintain::usage(ctx, t).await,
        Command::Stats(a) => stats::stats(ctx, a),
        Command::Serve(a) => serve::serve(ctx, a).await,
        Command::Keygen(a) => keygen::keygen(ctx, a),
        Command::Signature(a) => keygen::signature(ctx, a).await,
    }
}

/// Parses `NAME@VERSION` with an exact version (for commands that must not guess).
fn exact_ref(s: &str) -> Result<(ModelName, Version)> {
    let r: ModelRef = s.parse()?;
    match r.selector {
        Selector::Exact(v) if s.contains('@') => Ok((r.name, v)),
        _ => Err(UsageError::err(format!(
            "{s:?}: expected NAME@VERSION with an exact version"
        ))),
    }
}
