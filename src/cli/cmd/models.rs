//! Reading the vault: `list`, `versions`, `info`, and `rm`.

use anyhow::Result;

use super::exact_ref;
use crate::cli::context::Context;
use crate::cli::exit;
use crate::cli::json::{Info, Listed, Removed, VersionRow};
use crate::cli::output::{self, clean};
use crate::manifest::Manifest;
use crate::util::human_bytes;
use crate::vault::{Lookup, alias_list_lenient};
use crate::version::{ModelName, ModelRef, Selector, Version};

pub async fn list(ctx: &Context) -> Result<i32> {
    let vault = ctx.vault()?;
    let names = vault.list().await?;
    let mut rows = Vec::new();
    for n in &names {
        let vs = vault.remote().list_versions(n).await?;
        if vs.is_empty() {
            continue; // only aliases left (its versions removed with `rm --force`)
        }
        let latest = Selector::Latest.pick(&vs).map(|v| v.to_string());
        rows.push((n, vs.len(), latest));
    }
    if ctx.json {
        let v: Vec<Listed> = rows
            .into_iter()
            .map(|(n, versions, latest)| Listed {
                name: n.to_string(),
                versions,
                latest,
            })
            .collect();
        output::json(&v)?;
    } else if rows.is_empty() {
        ctx.info(&format!("no models on {}", vault.remote().name()));
    } else {
        output::line(&format!("{:<40} {:>8}  LATEST", "NAME", "VERSIONS"))?;
        for (n, c, l) in rows {
            output::line(&format!("{:<40} {:>8}  {}", n, c, l.unwrap_or_default()))?;
        }
    }
    Ok(exit::OK)
}

pub async fn versions(ctx: &Context, name: &str) -> Result<i32> {
    let name: ModelName = name.parse()?;
    let vault = ctx.vault()?;
    let vs = vault.versions(&name).await?;
    let mut manifests = Vec::new();
    for v in &vs {
        manifests.push(vault.manifest(&name, v, Lookup::CacheFirst).await?);
    }
    // Aliases pointing at each version, shown beside it; a damaged alias is left out with a
    // warning rather than hiding every version.
    let (aliases, damaged) = alias_list_lenient(&vault, &name).await?;
    for d in &damaged {
        output::warn(&format!("alias not shown: {d}"));
    }
    let aliases_of = |m: &Manifest| -> Vec<String> {
        let v: Option<Version> = m.version.parse().ok();
        aliases
            .iter()
            .filter(|a| a.version.parse::<Version>().ok() == v)
            .map(|a| a.alias.clone())
            .collect()
    };
    if ctx.json {
        let v: Vec<VersionRow> = manifests
            .iter()
            .map(|m| VersionRow {
                version: m.version.clone(),
                created_at: m.created_at.clone(),
                file_size: m.file_size,
                files: m.files.len(),
                description: m.description.clone(),
                aliases: aliases_of(m),
            })
            .collect();
        output::json(&v)?;
    } else {
        output::line(&format!(
            "{:<20} {:<26} {:>10}  {:<20} DESCRIPTION",
            "VERSION", "CREATED", "SIZE", "ALIASES"
        ))?;
        for m in &manifests {
            output::line(&format!(
                "{:<20} {:<26} {:>10}  {:<20} {}",
                m.version,
                clean(&m.created_at),
                human_bytes(m.file_size),
                aliases_of(m).join(","),
                clean(&m.description)
            ))?;
        }
    }
    Ok(exit::OK)
}

pub async fn info(ctx: &Context, model: &str) -> Result<i32> {
    let r: ModelRef = model.parse()?;
    let vault = ctx.vault()?;
    let vault = vault.with_trusted_keys(ctx.trusted_keys(&Default::default())?);
    let m = vault.resolve(&r, Lookup::Remote).await?;
    // Resolving on the remote just read (and cached) the signature with the manifest.
    let signature = vault.signature_info(&m, Lookup::Offline).await?;
    if ctx.json {
        let mut info = Info::from(&m);
        info.signature = signature;
        output::json(&info)?;
        return Ok(exit::OK);
    }
    let by = &m.created_by;
    let mut lines = vec![
        format!("model:       {}", m.model_name),
        format!("version:     {}", m.version),
        format!(
            "created:     {} by {}@{} ({})",
            clean(&m.created_at),
            clean(&by.user),
            clean(&by.host),
            clean(&by.tool)
        ),
        format!(
            "size:        {} ({} bytes) in {} files",
            human_bytes(m.file_size),
            m.file_size,
            m.files.len()
        ),
        format!("checksum:    {}", m.checksum),
        format!("signed:      {}", signed_line(signature.as_ref())),
    ];
    if !m.description.is_empty() {
        lines.push(format!("description: {}", clean(&m.description)));
    }
    for (title, map) in [
        ("metrics", &m.performance_metrics),
        ("training", &m.training_config),
    ] {
        if !map.is_empty() {
            let s: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}={}", clean(k), clean(&v.to_string())))
                .collect();
            lines.push(format!("{title:<12} {}", s.join(", ")));
        }
    }
    if !m.tags.is_empty() {
        let s: Vec<String> = m
            .tags
            .iter()
            .map(|(k, v)| format!("{}={}", clean(k), clean(v)))
            .collect();
        lines.push(format!("tags:        {}", s.join(", ")));
    }
    lines.push("files:".into());
    for f in &m.files {
        let layout = f.layout.as_ref().map_or(String::new(), |l| {
            let kind = serde_json::to_value(l.kind).unwrap_or_default();
            format!(
                "  ({}, {} tensors)",
                kind.as_str().unwrap_or("?"),
                l.tensors.len()
            )
        });
        lines.push(format!(
            "  {:>10}  {}  {}{layout}",
            human_bytes(f.size),
            &f.digest.to_hex()[..16],
            clean(&f.path)
        ));
    }
    output::line(&lines.join("\n"))?;
    Ok(exit::OK)
}

/// The `signed:` line of `info`.
fn signed_line(s: Option<&crate::vault::SignatureInfo>) -> String {
    let Some(s) = s else {
        return "no".into();
    };
    let key = s.key_fingerprint.as_deref().unwrap_or("an unnamed key");
    match (&s.problem, s.verified) {
        (Some(p), _) => format!("by key {key}, REFUSED: {}", clean(p)),
        (None, true) => format!("by key {key} (verified: a trusted key)"),
        (None, false) => format!("by key {key} (not verified: no trusted keys configured)"),
    }
}

pub async fn rm(ctx: &Context, model: &str, force: bool) -> Result<i32> {
    let (name, version) = exact_ref(model)?;
    let vault = ctx.vault()?;
    ctx.note_model(name.as_str(), Some(&version.to_string()));
    vault.rm(&name, &version, force).await?;
    if ctx.json {
        output::json(&Removed {
            removed: format!("{name}@{version}"),
        })?;
    } else {
        ctx.info(&format!(
            "removed {name}@{version} (run `mvault gc` to reclaim its chunks)"
        ));
    }
    Ok(exit::OK)
}
