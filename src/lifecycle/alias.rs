//! Aliases (`production`, `staging`, ...) with history and rollback.
//!
//! Layout: each change of an alias is a new, immutable *revision* object
//! `models/<name>/aliases/<alias>/<revision>.json`, where `<revision>` is 1, 2, 3, ... written
//! as 20 zero-padded decimal digits (so names sort in revision order). Each revision is a full
//! [`AliasDoc`]: the current target plus the whole history, oldest first, whose last event is
//! that target. The alias's state is its highest revision.
//!
//! Why revisions rather than one document replaced with `If-Match`: GCS and OSS have no
//! etag-conditional write in OpenDAL 0.59 and the memory store has none at all, but every
//! supported store has a create-only write (`If-None-Match: *` or equivalent), which mvault
//! already requires for manifests. A writer reads the highest revision N and creates N+1
//! create-only; of two writers that read the same N, exactly one creates N+1 and the other
//! gets a conflict ("alias X was changed concurrently; retry"), so no update is ever lost. A
//! stale listing only makes the writer pick an existing N+1 and lose the same way.
//!
//! Rollback replays the history as a stack (a `set` pushes its target, a `rollback` pops),
//! so repeated rollbacks walk back through earlier targets rather than toggling between two.
//! A rollback is itself a revision, so the history keeps every change.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{conflict, who};
use crate::remote::{ErrorKind, Remote};
use crate::transfer::{Error, Result};
use crate::vault::Vault;
use crate::version::{Alias, ModelName, Version};

/// The alias document format this release writes and reads.
pub const ALIAS_FORMAT: u32 = 1;

/// How an alias got a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AliasAction {
    #[default]
    Set,
    Rollback,
}

/// One change of an alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasEvent {
    /// The target, as the version was pushed (a leading `v` is kept).
    pub version: String,
    /// RFC 3339, UTC, seconds.
    pub set_at: String,
    /// `user@host`.
    pub set_by: String,
    #[serde(default)]
    pub action: AliasAction,
}

/// One stored revision of an alias. Invariants (checked on read): `revision` is the number in
/// the object's name, `history` is non-empty and its last event's version is `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasDoc {
    pub format: u32,
    pub alias: String,
    pub model_name: String,
    /// Current target, as displayed.
    pub version: String,
    /// Every change, oldest first.
    pub history: Vec<AliasEvent>,
    /// 1 for the first revision, +1 per change.
    pub revision: u64,
}

/// What `alias ls` shows for one alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AliasInfo {
    pub alias: String,
    /// Current target, as displayed.
    pub version: String,
    pub revision: u64,
    /// Every change, oldest first.
    pub history: Vec<AliasEvent>,
}

/// Result of [`alias_set`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasChange {
    /// Previous target; `None` when the alias is new.
    pub from: Option<Version>,
    pub to: Version,
    /// The alias's revision after the call.
    pub revision: u64,
    /// False when the alias already pointed at `to` (nothing was written).
    pub changed: bool,
}

impl AliasDoc {
    /// The current target.
    pub fn target(&self) -> Result<Version> {
        parse_version(&self.version, &self.alias)
    }

    /// Targets a rollback can return to, bottom first; the last is the current target.
    fn stack(&self) -> Result<Vec<Version>> {
        let mut stack: Vec<Version> = Vec::new();
        for e in &self.history {
            let v = parse_version(&e.version, &self.alias)?;
            if e.action == AliasAction::Rollback {
                stack.pop();
            }
            if stack.last() != Some(&v) {
                stack.push(v);
            }
        }
        Ok(stack)
    }
}

impl From<AliasDoc> for AliasInfo {
    fn from(d: AliasDoc) -> Self {
        AliasInfo {
            alias: d.alias,
            version: d.version,
            revision: d.revision,
            history: d.history,
        }
    }
}

fn parse_version(s: &str, alias: &str) -> Result<Version> {
    s.parse()
        .map_err(|_| Error::Integrity(format!("alias {alias} names an invalid version {s:?}")))
}

fn alias_dir(name: &ModelName, alias: &Alias) -> String {
    format!("models/{name}/aliases/{alias}/")
}

fn revision_key(name: &ModelName, alias: &Alias, revision: u64) -> String {
    format!("{}{revision:020}.json", alias_dir(name, alias))
}

/// The revision number of a revision object's file name (`00000000000000000003.json`).
fn parse_revision(file: &str) -> Option<u64> {
    let digits = file.strip_suffix(".json")?;
    let ok = digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| digits.parse().ok()).flatten()
}

/// The alias's current document, `None` if it was never set.
pub(super) async fn current(
    remote: &Remote,
    name: &ModelName,
    alias: &Alias,
) -> Result<Option<AliasDoc>> {
    let files = remote.list_dir(&alias_dir(name, alias)).await?;
    let Some(revision) = files.iter().filter_map(|f| parse_revision(f)).max() else {
        return Ok(None);
    };
    let key = revision_key(name, alias, revision);
    let bytes = remote.read(&key).await?;
    let bad = |why: String| Error::Integrity(format!("alias document {key}: {why}"));
    let doc: AliasDoc = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if doc.format != ALIAS_FORMAT {
        return Err(bad(format!(
            "format {} is not supported; upgrade mvault",
            doc.format
        )));
    }
    let consistent = doc.alias == alias.as_str()
        && doc.model_name == name.as_str()
        && doc.revision == revision
        && doc.history.last().is_some_and(|e| e.version == doc.version);
    if !consistent {
        return Err(bad("does not match its key or its own history".into()));
    }
    Ok(Some(doc))
}

/// The next revision after `prev`, pointing at `to` (displayed form).
pub(super) fn advance(
    prev: Option<&AliasDoc>,
    name: &ModelName,
    alias: &Alias,
    to: &str,
    action: AliasAction,
) -> AliasDoc {
    let mut history = prev.map(|d| d.history.clone()).unwrap_or_default();
    history.push(AliasEvent {
        version: to.to_string(),
        set_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        set_by: who(),
        action,
    });
    AliasDoc {
        format: ALIAS_FORMAT,
        alias: alias.to_string(),
        model_name: name.to_string(),
        version: to.to_string(),
        history,
        revision: prev.map_or(1, |d| d.revision + 1),
    }
}

/// Creates `doc`'s revision object, create-only. Losing the race is a conflict error.
pub(super) async fn commit(
    remote: &Remote,
    name: &ModelName,
    alias: &Alias,
    doc: &AliasDoc,
) -> Result<()> {
    let key = revision_key(name, alias, doc.revision);
    let mut body = serde_json::to_vec_pretty(doc).expect("alias document serializes");
    body.push(b'\n');
    match remote.create_only(&key, Bytes::from(body)).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind == ErrorKind::Conflict => Err(conflict(
            remote,
            &key,
            format!("alias {alias} of {name} was changed concurrently; retry"),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Points `alias` of `name` at `version`, which must exist (`NotFound` otherwise). Setting
/// the alias to its current target writes nothing. A concurrent change of the same alias
/// makes exactly one writer fail with a conflict ([`super::is_conflict`]).
pub async fn alias_set(
    vault: &Vault,
    name: &ModelName,
    version: &Version,
    alias: &Alias,
) -> Result<AliasChange> {
    let manifest = vault.fetch_manifest(name, version).await?;
    let to: Version = parse_version(&manifest.version, alias.as_str())?;
    let remote = vault.remote();
    let prev = current(remote, name, alias).await?;
    let from = prev.as_ref().map(AliasDoc::target).transpose()?;
    if from.as_ref() == Some(&to) {
        let revision = prev.map_or(0, |d| d.revision);
        return Ok(AliasChange {
            from,
            to,
            revision,
            changed: false,
        });
    }
    let doc = advance(
        prev.as_ref(),
        name,
        alias,
        &manifest.version,
        AliasAction::Set,
    );
    commit(remote, name, alias, &doc).await?;
    Ok(AliasChange {
        from,
        to,
        revision: doc.revision,
        changed: true,
    })
}

/// The alias's target, `None` if the alias was never set.
pub async fn alias_get(vault: &Vault, name: &ModelName, alias: &Alias) -> Result<Option<Version>> {
    current(vault.remote(), name, alias)
        .await?
        .map(|d| d.target())
        .transpose()
}

/// The alias's target; `NotFound` if the alias was never set.
pub async fn alias_target(vault: &Vault, name: &ModelName, alias: &Alias) -> Result<Version> {
    alias_get(vault, name, alias)
        .await?
        .ok_or_else(|| not_set(vault, name, alias))
}

fn not_set(vault: &Vault, name: &ModelName, alias: &Alias) -> Error {
    Error::NotFound(format!(
        "alias {alias} of {name} on {}",
        vault.remote().name()
    ))
}

/// Every alias of `name`, sorted by alias. `NotFound` when the model has neither aliases nor
/// versions. A directory under `aliases/` that is not a valid alias name is an integrity
/// error (prune relies on seeing every alias).
pub async fn alias_list(vault: &Vault, name: &ModelName) -> Result<Vec<AliasInfo>> {
    let remote = vault.remote();
    let mut aliases = Vec::new();
    for entry in remote.list_dir(&format!("models/{name}/aliases/")).await? {
        let Some(dir) = entry.strip_suffix('/') else {
            continue;
        };
        let alias: Alias = dir.parse().map_err(|_| {
            Error::Integrity(format!(
                "models/{name}/aliases/{entry} is not a valid alias"
            ))
        })?;
        aliases.push(alias);
    }
    aliases.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let mut out = Vec::new();
    for alias in aliases {
        if let Some(doc) = current(remote, name, &alias).await? {
            out.push(doc.into());
        }
    }
    if out.is_empty() {
        vault.versions(name).await?;
    }
    Ok(out)
}

/// The current targets of all aliases of `name`, ascending, without duplicates (the versions
/// `prune` must keep). Empty for a model without aliases.
pub async fn aliased_versions(vault: &Vault, name: &ModelName) -> Result<Vec<Version>> {
    let mut out = Vec::new();
    for info in alias_list_raw(vault, name).await? {
        out.push(parse_version(&info.version, &info.alias)?);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// [`alias_list`] without the `NotFound` for a model that has no versions.
async fn alias_list_raw(vault: &Vault, name: &ModelName) -> Result<Vec<AliasInfo>> {
    match alias_list(vault, name).await {
        Err(Error::NotFound(_)) => Ok(Vec::new()),
        r => r,
    }
}

/// Moves `alias` back to its previous target; returns `(from, to)`. `NotFound` when the alias
/// was never set, has no previous target, or that target's version has been removed.
pub async fn rollback(
    vault: &Vault,
    name: &ModelName,
    alias: &Alias,
) -> Result<(Version, Version)> {
    let remote = vault.remote();
    let doc = current(remote, name, alias)
        .await?
        .ok_or_else(|| not_set(vault, name, alias))?;
    let from = doc.target()?;
    let stack = doc.stack()?;
    let Some(to) = stack.len().checked_sub(2).map(|i| stack[i].clone()) else {
        return Err(Error::NotFound(format!(
            "previous target of alias {alias} of {name} (it has had no earlier target to roll back to)"
        )));
    };
    let manifest = match vault.fetch_manifest(name, &to).await {
        Err(Error::NotFound(_)) => {
            return Err(Error::NotFound(format!(
                "{name}@{to}, the previous target of alias {alias} (it was removed)"
            )));
        }
        r => r?,
    };
    let next = advance(
        Some(&doc),
        name,
        alias,
        &manifest.version,
        AliasAction::Rollback,
    );
    commit(remote, name, alias, &next).await?;
    Ok((from, to))
}
