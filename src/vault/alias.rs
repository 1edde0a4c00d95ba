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
//!
//! Damage (a highest revision that does not read or validate, a stray entry numbered like a
//! revision, a revision number at u64's limit) is an integrity error naming the object; with
//! `force`, writers skip damaged revisions, report what they skipped, and write above every
//! numbered entry, so an administrator can always move an alias again. Revision arithmetic is
//! checked: nothing wraps.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Error, Result, Vault};
use crate::remote::{ErrorKind, Remote};
use crate::version::{Alias, ModelName, Version};

/// The alias document format this release writes and reads.
pub const ALIAS_FORMAT: u32 = 1;

/// How an alias got a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AliasKind {
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
    pub action: AliasKind,
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

/// Result of [`alias_set`] and [`rollback`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasChange {
    /// Previous target; `None` when the alias is new (or, with `force`, had no valid revision).
    pub from: Option<Version>,
    pub to: Version,
    /// The alias's revision after the call.
    pub revision: u64,
    /// False when the alias already pointed at `to` (nothing was written).
    pub changed: bool,
    /// With `force`: the damaged entries written past, each `key: why`, highest first.
    pub skipped: Vec<String>,
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
            if e.action == AliasKind::Rollback {
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

/// The number in an alias directory entry named like a revision (20 digits + `.json`, a
/// file or, when damaged, a directory: `/` at the end). u128, because 20 digits can exceed
/// u64; such a name is damage too.
fn parse_revision(entry: &str) -> Option<u128> {
    let digits = entry.trim_end_matches('/').strip_suffix(".json")?;
    let ok = digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| digits.parse().ok()).flatten()
}

/// The remedy named by every alias damage error.
const FORCE_HINT: &str = "to write past damaged revisions: mvault alias set NAME@VERSION ALIAS --force (or rollback --force)";

/// True for errors that mean a revision object is damaged (not a failure to reach the store).
fn is_damage(e: &Error) -> bool {
    match e {
        Error::Integrity(_) | Error::BadManifest { .. } => true,
        Error::Remote(r) => r.kind == ErrorKind::Integrity,
        _ => false,
    }
}

/// Reads and validates revision `revision` of the alias. A bad document is an integrity error
/// naming the key and [`FORCE_HINT`].
async fn read_revision(
    remote: &Remote,
    name: &ModelName,
    alias: &Alias,
    revision: u64,
) -> Result<AliasDoc> {
    let key = revision_key(name, alias, revision);
    let bad = |why: String| Error::Integrity(format!("alias document {key}: {why}; {FORCE_HINT}"));
    let bytes = match remote.read(&key).await {
        Ok(b) => b,
        Err(e) if e.kind == ErrorKind::Integrity => return Err(bad(e.message)),
        Err(e) => return Err(e.into()),
    };
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
    Ok(doc)
}

/// An alias directory: its revision objects and the highest revision-like name in it.
struct Listing {
    /// Revision numbers of the entries that can be revision objects (files), highest first.
    revisions: Vec<u64>,
    /// The highest 20-digit entry name (files and directories) and the entry itself; a new
    /// revision must be created above it.
    highest: Option<(u128, String)>,
}

async fn listing(remote: &Remote, name: &ModelName, alias: &Alias) -> Result<Listing> {
    let mut revisions = Vec::new();
    let mut highest: Option<(u128, String)> = None;
    for entry in remote.list_dir(&alias_dir(name, alias)).await? {
        let Some(n) = parse_revision(&entry) else {
            continue;
        };
        if !entry.ends_with('/')
            && let Ok(r) = u64::try_from(n)
        {
            revisions.push(r);
        }
        if highest.as_ref().is_none_or(|(h, _)| n > *h) {
            highest = Some((n, entry));
        }
    }
    revisions.sort_unstable_by(|a, b| b.cmp(a));
    Ok(Listing { revisions, highest })
}

/// The alias's current document, `None` if it was never set. Strict: a damaged highest
/// revision is an error.
pub(crate) async fn current(
    remote: &Remote,
    name: &ModelName,
    alias: &Alias,
) -> Result<Option<AliasDoc>> {
    match listing(remote, name, alias).await?.revisions.first() {
        Some(&r) => Ok(Some(read_revision(remote, name, alias, r).await?)),
        None => Ok(None),
    }
}

/// What a writer starts from.
struct Head {
    /// The current document (with `force`: the highest valid one).
    doc: Option<AliasDoc>,
    /// The revision to create.
    next: u64,
    /// With `force`: the damaged entries skipped, each `key: why`.
    skipped: Vec<String>,
}

/// The alias's state for a writer. Without `force`, any damage is an integrity error naming
/// the object and `--force`; with it, damaged revisions are skipped (reported in
/// [`Head::skipped`]) and the next revision goes above every 20-digit entry. A next revision
/// beyond u64 is an integrity error either way (only deleting the object by hand helps).
async fn head(remote: &Remote, name: &ModelName, alias: &Alias, force: bool) -> Result<Head> {
    let dir = alias_dir(name, alias);
    let listing = listing(remote, name, alias).await?;
    let mut skipped = Vec::new();
    let mut doc = None;
    for &r in &listing.revisions {
        match read_revision(remote, name, alias, r).await {
            Ok(d) => {
                doc = Some(d);
                break;
            }
            Err(e) if force && is_damage(&e) => skipped.push(e.to_string()),
            Err(e) => return Err(e),
        }
    }
    let top = doc
        .as_ref()
        .map_or(0, |d: &AliasDoc| u128::from(d.revision));
    let mut next = 1;
    if let Some((n, entry)) = listing.highest {
        let is_revision = u64::try_from(n).is_ok_and(|r| listing.revisions.contains(&r));
        if n > top && !is_revision {
            let why = format!("{dir}{entry} is numbered like a revision but is none");
            if !force {
                return Err(Error::Integrity(format!("{why}; {FORCE_HINT}")));
            }
            skipped.push(why);
        }
        next = u64::try_from(n + 1).map_err(|_| {
            Error::Integrity(format!(
                "alias {alias} of {name}: {dir}{entry} has the highest revision number possible, so the alias cannot change; mvault never writes it: delete it by hand"
            ))
        })?;
    }
    Ok(Head { doc, next, skipped })
}

/// Revision `revision`, continuing `prev`'s history, pointing at `to` (displayed form).
pub(crate) fn advance(
    prev: Option<&AliasDoc>,
    revision: u64,
    name: &ModelName,
    alias: &Alias,
    to: &str,
    action: AliasKind,
) -> AliasDoc {
    let mut history = prev.map(|d| d.history.clone()).unwrap_or_default();
    history.push(AliasEvent {
        version: to.to_string(),
        set_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        set_by: crate::util::user_at_host(),
        action,
    });
    AliasDoc {
        format: ALIAS_FORMAT,
        alias: alias.to_string(),
        model_name: name.to_string(),
        version: to.to_string(),
        history,
        revision,
    }
}

/// Creates `doc`'s revision object, create-only. Losing the race is a conflict error.
pub(crate) async fn commit(
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
        Err(e) if e.kind == ErrorKind::Conflict => Err(Error::Conflict(format!(
            "write {key} on {}: alias {alias} of {name} was changed concurrently; retry",
            remote.name()
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Points `alias` of `name` at `version`, which must exist (`NotFound` otherwise). Setting
/// the alias to its current target writes nothing. A concurrent change of the same alias
/// makes exactly one writer fail with a conflict ([`Error::is_conflict`]). `force` writes past
/// damaged revisions (see [`head`]); they are listed in [`AliasChange::skipped`].
pub async fn alias_set(
    vault: &Vault,
    name: &ModelName,
    version: &Version,
    alias: &Alias,
    force: bool,
) -> Result<AliasChange> {
    let manifest = vault.fetch_manifest(name, version).await?;
    let to: Version = parse_version(&manifest.version, alias.as_str())?;
    let remote = vault.remote();
    let Head {
        doc: prev,
        next,
        skipped,
    } = head(remote, name, alias, force).await?;
    let from = prev.as_ref().map(AliasDoc::target).transpose()?;
    if from.as_ref() == Some(&to) && skipped.is_empty() {
        let revision = prev.map_or(0, |d| d.revision);
        return Ok(AliasChange {
            from,
            to,
            revision,
            changed: false,
            skipped,
        });
    }
    let doc = advance(
        prev.as_ref(),
        next,
        name,
        alias,
        &manifest.version,
        AliasKind::Set,
    );
    commit(remote, name, alias, &doc).await?;
    Ok(AliasChange {
        from,
        to,
        revision: doc.revision,
        changed: true,
        skipped,
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
        "alias {alias} of {name} not found on {}",
        vault.remote().name()
    ))
}

/// Every alias of `name`, sorted by alias. `NotFound` when the model has neither aliases nor
/// versions. A directory under `aliases/` that is not a valid alias name, or a damaged alias,
/// is an integrity error (prune relies on seeing every alias).
pub async fn alias_list(vault: &Vault, name: &ModelName) -> Result<Vec<AliasInfo>> {
    let (out, _) = scan(vault, name, false).await?;
    if out.is_empty() {
        vault.versions(name).await?;
    }
    Ok(out)
}

/// Every readable alias of `name`, sorted by alias, and a message for each entry skipped as
/// damaged (an invalid alias directory, an alias whose current revision is damaged): for
/// displays that must keep working on a damaged vault (`versions`). Failures to reach the
/// store are still errors.
pub async fn alias_list_lenient(
    vault: &Vault,
    name: &ModelName,
) -> Result<(Vec<AliasInfo>, Vec<String>)> {
    scan(vault, name, true).await
}

/// The aliases of `name`; `lenient` turns damage into messages (see [`alias_list_lenient`]).
async fn scan(
    vault: &Vault,
    name: &ModelName,
    lenient: bool,
) -> Result<(Vec<AliasInfo>, Vec<String>)> {
    let remote = vault.remote();
    let (mut aliases, mut damaged) = (Vec::new(), Vec::new());
    for entry in remote.list_dir(&format!("models/{name}/aliases/")).await? {
        let Some(dir) = entry.strip_suffix('/') else {
            continue;
        };
        match dir.parse::<Alias>() {
            Ok(alias) => aliases.push(alias),
            Err(_) => {
                let why = format!(
                    "models/{name}/aliases/{entry} is not a valid alias (not written by mvault: remove it)"
                );
                if !lenient {
                    return Err(Error::Integrity(why));
                }
                damaged.push(why);
            }
        }
    }
    aliases.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let mut out = Vec::new();
    for alias in aliases {
        match current(remote, name, &alias).await {
            Ok(Some(doc)) => out.push(doc.into()),
            Ok(None) => {}
            Err(e) if lenient && is_damage(&e) => damaged.push(e.to_string()),
            Err(e) => return Err(e),
        }
    }
    Ok((out, damaged))
}

/// The current targets of all aliases of `name`, ascending, without duplicates (the versions
/// `prune` must keep). Empty for a model without aliases.
pub async fn aliased_versions(vault: &Vault, name: &ModelName) -> Result<Vec<Version>> {
    let mut out = Vec::new();
    for info in scan(vault, name, false).await?.0 {
        out.push(parse_version(&info.version, &info.alias)?);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Moves `alias` back to its previous target. `NotFound` when the alias was never set, has no
/// previous target, or that target's version has been removed. `force` as in [`alias_set`].
pub async fn rollback(
    vault: &Vault,
    name: &ModelName,
    alias: &Alias,
    force: bool,
) -> Result<AliasChange> {
    let remote = vault.remote();
    let Head { doc, next, skipped } = head(remote, name, alias, force).await?;
    let doc = doc.ok_or_else(|| not_set(vault, name, alias))?;
    let from = doc.target()?;
    let stack = doc.stack()?;
    let Some(to) = stack.len().checked_sub(2).map(|i| stack[i].clone()) else {
        return Err(Error::NotFound(format!(
            "alias {alias} of {name} has had no earlier target to roll back to"
        )));
    };
    let manifest = match vault.fetch_manifest(name, &to).await {
        Err(e) if e.is_not_found() => {
            return Err(Error::NotFound(format!(
                "{name}@{to}, the previous target of alias {alias}, was removed: set the alias with `mvault alias set`"
            )));
        }
        r => r?,
    };
    let doc = advance(
        Some(&doc),
        next,
        name,
        alias,
        &manifest.version,
        AliasKind::Rollback,
    );
    commit(remote, name, alias, &doc).await?;
    Ok(AliasChange {
        from: Some(from),
        to,
        revision: doc.revision,
        changed: true,
        skipped,
    })
}
