//! `mvault remotes`: the providers of the config file.

use anyhow::Result;

use crate::cli::context::Context;
use crate::cli::json::{ProviderRow, Remotes};
use crate::cli::{exit, output};

/// `mvault remotes`: providers from the config file, secrets masked.
pub fn remotes(ctx: &Context) -> Result<i32> {
    let config = &ctx.config;
    let providers: Vec<ProviderRow> = config
        .providers
        .iter()
        .map(|p| ProviderRow {
            name: p.name.clone(),
            kind: p.backend.scheme().to_string(),
            enabled: p.enabled,
            default: config.default_provider.as_deref() == Some(p.name.as_str()),
            url: p.spec().map(|s| s.url()).ok(),
            options: p.masked_options(),
            problem: p.problem().map(|e| e.to_string()),
        })
        .collect();
    if ctx.json {
        output::json(&Remotes {
            config: config.path.clone(),
            providers,
        })?;
        return Ok(exit::OK);
    }
    match &config.path {
        Some(p) => output::line(&format!("config: {}", p.display()))?,
        None => output::line("no config file found; the default remote is the local vault")?,
    }
    for p in providers {
        let opts: Vec<String> = p.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
        output::line(&format!(
            "{}{:<16} {:<5} {:<8} {:<40} {}",
            if p.default { "*" } else { " " },
            p.name,
            p.kind,
            if p.enabled { "enabled" } else { "disabled" },
            p.url.as_deref().unwrap_or("(incomplete)"),
            opts.join(" ")
        ))?;
    }
    Ok(exit::OK)
}
