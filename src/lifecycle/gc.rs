//! `gc` (delete chunks no manifest refers to) and `prune` (delete old versions).
//!
//! gc is two-phase, without remote locks (the protocol and its proof sketch are in
//! `docs/FORMAT.md`, "Deletion and gc"). One run, in this order:
//! 1. list `chunks/` and `packs/` with sizes and modification times;
//! 2. mark: read every manifest of every model; any manifest that cannot be listed, read or
//!    parsed ABORTS gc, since deleting on a partial mark would destroy data;
//! 3. read the pending records `gc/pending/*.json`;
//! 4. record: the listed chunks that are unmarked, at least `grace` old and in no record yet
//!    are written as one new record, create-only. Nothing is deleted on their account now;
//! 5. sweep the *ripe* records (written at least `grace` ago, by the store's clock): a chunk
//!    they list is deleted only if it is unmarked (also by a second mark of the manifests that
//!    appeared meanwhile), was last written before the record (by the listing of step 1 and
//!    again by a stat right before its delete), and that stat answered less than
//!    [`SWEEP_BOUND`]` / 2` ago. Then the ripe records are deleted.
//!
//! A push reads the records when it starts and uploads every chunk they list again (see
//! [`pending_chunks`]), so a chunk it relies on is written after the record: the sweep's
//! time check keeps it. A push that started within `grace` of a sweep started after the
//! record the sweep uses was written, so it saw it. The one remaining race (a sweep's stat
//! before the push's rewrite, its delete after) is bounded by [`SWEEP_BOUND`] and healed by
//! the push, which re-checks the chunks it rewrote at least that long after rewriting them.
//!
//! Packs (`src/pack.rs`) are objects like chunks here: a pack is marked by every manifest
//! entry that names it, recorded and swept as chunks are (its index deleted first, then the
//! pack). A push never reuses a recorded pack and never rewrites a pack's key, so the
//! sweep's rewrite check always finds a pack as listed.
//!
//! A chunk whose store reports no modification time (the memory store) is never recorded.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::{Error, Result, all_versions, chunk_id, each_manifest, present};
use crate::chunk::Digest;
use crate::error::Category;
use crate::remote::{
    ObjectInfo, RECORD_MAX_CHUNKS, Record, Remote, SWEEP_BOUND, manifest_key, read_records,
    write_record,
};
use crate::vault::{Vault, aliased_versions};
use crate::version::{ModelName, Version};

/// Default grace period: unreferenced chunks younger than this are not recorded, and a
/// record is swept once it is at least this old.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 60 * 60);

/// The smallest grace period gc accepts without `force`: pushes that take longer than the
/// grace period are not protected.
pub const MIN_SAFE_GRACE: Duration = Duration::from_secs(60 * 60);

/// An object gc accounts for: a loose chunk (by its stored id) or a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Obj {
    Chunk(Digest),
    Pack(Digest),
}

/// The objects a record lists.
fn recorded(r: &Record) -> impl Iterator<Item = Obj> + '_ {
    let chunks = r.chunks.iter().map(|c| Obj::Chunk(*c));
    chunks.chain(r.packs.iter().map(|p| Obj::Pack(*p)))
}

/// What [`gc`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcOptions {
    /// Unreferenced chunks younger than this are not recorded; records younger than this
    /// are not swept.
    pub grace: Duration,
    /// Report what would be recorded and swept, write and delete nothing.
    pub dry_run: bool,
    /// Accept a grace below [`MIN_SAFE_GRACE`] (with a warning). With a zero grace one run
    /// records and sweeps, which is unsafe while pushes run.
    pub force: bool,
}

impl GcOptions {
    /// Refuses (an input error, exit 2) a grace below [`MIN_SAFE_GRACE`] without `force`.
    pub fn validate(&self) -> Result<()> {
        if self.grace < MIN_SAFE_GRACE && !self.force {
            return Err(Error::Options(format!(
                "{}; use --grace 1h or more, or add --force if no push can run meanwhile",
                self.below_minimum()
            )));
        }
        Ok(())
    }

    fn below_minimum(&self) -> String {
        format!(
            "gc grace period {}s is below the safe minimum of {}s: pushes running longer than \
             the grace period could lose chunks",
            self.grace.as_secs(),
            MIN_SAFE_GRACE.as_secs()
        )
    }
}

/// Outcome of [`gc`] (`gc --json` prints it). Counts are of chunk objects unless they say
/// records; bytes are stored (encoded) bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Chunk objects listed (keys `chunks/<2 hex>/<64 hex>`; other keys are ignored).
    pub scanned_chunks: u64,
    /// Pack objects listed (keys `packs/<2 hex>/<64 hex>`, see `docs/FORMAT.md`, "Packs").
    /// The counts below count a pack (with its index) as one object.
    pub scanned_packs: u64,
    /// Distinct chunks referenced by at least one manifest.
    pub referenced: u64,
    /// Chunks deleted by the sweep (with `dry_run`: that would be deleted).
    pub deleted: u64,
    pub bytes_deleted: u64,
    /// Unreferenced chunks not recorded because they are younger than the grace period, or
    /// their age is unknown.
    pub kept_young: u64,
    /// Unreferenced chunks waiting in a record that is not ripe yet.
    pub kept_pending: u64,
    /// Chunks of a ripe record kept because they were written again after it.
    pub kept_rewritten: u64,
    /// Chunks of a ripe record kept because their stat answered too slowly to delete them
    /// safely; a later run records them again.
    pub kept_slow: u64,
    /// Deletes that finished more than [`SWEEP_BOUND`] after their chunk's stat: a push
    /// racing them may have lost that chunk (`verify` tells).
    pub late_deletes: u64,
    /// Chunks written into the new record (with `dry_run`: that would be).
    pub chunks_recorded: u64,
    /// Records written by this run: 0 or 1.
    pub records_written: u64,
    /// Ripe records swept and deleted.
    pub records_swept: u64,
    /// Records left for a later run (not ripe yet), including this run's new one.
    pub records_pending: u64,
    /// Manifests read for the mark.
    pub manifests: u64,
    pub dry_run: bool,
    pub grace_seconds: u64,
}

/// Runs one gc: records the unreferenced chunks older than the grace period that no record
/// lists yet, then sweeps the ripe records (see the module text). Aborts, deleting nothing, if any manifest cannot
/// be read or parsed. A grace below [`MIN_SAFE_GRACE`] without `force` is an input error.
pub async fn gc(vault: &Vault, opts: &GcOptions) -> Result<GcReport> {
    opts.validate()?;
    if opts.grace < MIN_SAFE_GRACE {
        tracing::warn!("{} (--force given)", opts.below_minimum());
    }
    gc_at(vault, opts, Duration::ZERO).await
}

/// [`gc`] without the grace check, on a clock running `skew` ahead of the system's, for
/// tests.
pub(crate) async fn gc_at(vault: &Vault, opts: &GcOptions, skew: Duration) -> Result<GcReport> {
    let now = || SystemTime::now() + skew;
    let (grace, dry_run) = (opts.grace, opts.dry_run);
    let remote = vault.remote();
    // An encrypted vault without its key (or with another) is refused before anything else.
    remote.sealing().await?;
    let mut listed = remote.list_objects("chunks/").await?;
    listed.extend(remote.list_objects("packs/").await?);
    let mut seen = HashSet::new();
    let marked = mark(vault, &mut seen).await?;
    let records = read_records(remote, vault.jobs()).await?;
    let mut report = GcReport {
        referenced: marked.iter().filter(|o| matches!(o, Obj::Chunk(_))).count() as u64,
        manifests: seen.len() as u64,
        dry_run,
        grace_seconds: grace.as_secs(),
        ..Default::default()
    };
    // Unreferenced objects. A pack's index goes with its pack (and an index without one
    // is left alone: readers ignore it).
    let mut unmarked: HashMap<Obj, ObjectInfo> = HashMap::new();
    for obj in listed {
        let id = if let Some(id) = chunk_id(&obj.key) {
            report.scanned_chunks += 1;
            Obj::Chunk(id)
        } else if let Some((id, false)) = crate::pack::parse_key(&obj.key) {
            report.scanned_packs += 1;
            Obj::Pack(id)
        } else {
            continue;
        };
        if !marked.contains(&id) {
            unmarked.insert(id, obj);
        }
    }

    // Record: old unreferenced objects no record lists yet.
    let pending: HashSet<Obj> = records.iter().flat_map(recorded).collect();
    let mut fresh = Vec::new();
    for (id, obj) in &unmarked {
        if !is_old(obj, grace, now()) {
            report.kept_young += 1;
        } else if !pending.contains(id) {
            fresh.push(*id);
        }
    }
    fresh.sort();
    // Ripe: written at least `grace` ago. With a zero grace every record is, whatever the
    // clocks, including the one this run writes; otherwise that one is not.
    let (mut ripe, mut waiting): (Vec<Record>, Vec<Record>) = records.into_iter().partition(|r| {
        r.written.is_some_and(|w| {
            grace.is_zero() || now().duration_since(w).is_ok_and(|age| age >= grace)
        })
    });
    report.chunks_recorded = fresh.len() as u64;
    // Several records of at most RECORD_MAX_CHUNKS ids each, so every record stays far
    // below the read bound of documents however much garbage there is.
    for part in fresh.chunks(RECORD_MAX_CHUNKS) {
        report.records_written += 1;
        let (mut chunks, mut packs) = (Vec::new(), Vec::new());
        for o in part {
            match o {
                Obj::Chunk(id) => chunks.push(*id),
                Obj::Pack(id) => packs.push(*id),
            }
        }
        let new = if dry_run {
            Record {
                key: None,
                written: Some(now()),
                chunks,
                packs,
            }
        } else {
            write_record(remote, (chunks, packs), grace).await?
        };
        if grace.is_zero() && new.written.is_some() {
            ripe.push(new);
        } else {
            waiting.push(new);
        }
    }

    // Sweep the ripe records.
    report.records_pending = waiting.len() as u64;
    // For each doomed chunk, its listing and the earliest ripe record listing it that it
    // predates.
    let mut doomed: HashMap<Obj, (ObjectInfo, SystemTime)> = HashMap::new();
    let mut rewritten = HashSet::new();
    for r in &ripe {
        let written = r.written.expect("ripe records have a time");
        for id in recorded(r) {
            let Some(obj) = unmarked.get(&id) else {
                continue; // referenced again, or gone
            };
            if obj.last_modified.is_some_and(|m| older(m, written)) {
                let e = doomed.entry(id).or_insert((obj.clone(), written));
                e.1 = e.1.min(written);
            } else {
                rewritten.insert(id);
            }
        }
    }
    rewritten.retain(|id| !doomed.contains_key(id));
    report.kept_rewritten = rewritten.len() as u64;
    let waiting_ids: HashSet<Obj> = waiting.iter().flat_map(recorded).collect();
    report.kept_pending = waiting_ids
        .iter()
        .filter(|id| unmarked.contains_key(id) && !doomed.contains_key(id))
        .count() as u64;
    if dry_run {
        report.deleted = doomed.len() as u64;
        report.bytes_deleted = doomed.values().map(|(o, _)| o.size).sum();
        report.records_swept = ripe.len() as u64;
        return Ok(report);
    }
    if !doomed.is_empty() {
        let late = mark(vault, &mut seen).await?;
        doomed.retain(|id, _| !late.contains(id));
        sweep(
            remote,
            doomed.into_values().collect(),
            vault.jobs(),
            &mut report,
        )
        .await?;
    }
    for key in ripe.iter().filter_map(|r| r.key.as_deref()) {
        remote.delete(key).await?;
        report.records_swept += 1;
    }
    Ok(report)
}

/// True when `obj` was last written at least `grace` before `now`; false if unknown.
fn is_old(obj: &ObjectInfo, grace: Duration, now: SystemTime) -> bool {
    obj.last_modified
        .and_then(|t| now.duration_since(t).ok())
        .is_some_and(|age| age >= grace)
}

/// True when time `a` is surely before time `b` on the store's clock. Stores that report
/// whole seconds (a time without a fraction) are compared in whole seconds, so an object
/// written in the same second as `b` is never taken as older.
fn older(a: SystemTime, b: SystemTime) -> bool {
    let (Ok(a), Ok(b)) = (
        a.duration_since(SystemTime::UNIX_EPOCH),
        b.duration_since(SystemTime::UNIX_EPOCH),
    ) else {
        return false;
    };
    if a.subsec_nanos() == 0 || b.subsec_nanos() == 0 {
        a.as_secs() < b.as_secs()
    } else {
        a < b
    }
}

/// Deletes the doomed chunks, `jobs` at a time, each `(listing, record time)` only if a
/// stat right before its delete still finds it written before the record, and answered less
/// than `SWEEP_BOUND / 2` ago.
async fn sweep(
    remote: &Remote,
    doomed: Vec<(ObjectInfo, SystemTime)>,
    jobs: usize,
    report: &mut GcReport,
) -> Result<()> {
    let outcomes: Vec<Swept> = futures::stream::iter(doomed)
        .map(|(obj, written)| async move {
            let sent = Instant::now();
            let Some(cur) = remote.stat(&obj.key).await? else {
                return Ok(Swept::Gone);
            };
            if !cur.last_modified.is_some_and(|m| older(m, written)) {
                return Ok(Swept::Rewritten);
            }
            if sent.elapsed() >= SWEEP_BOUND / 2 {
                return Ok(Swept::Slow);
            }
            // Never let a delete (with its retries) land later than the bound: past it, a
            // push that rewrote the chunk after our stat may already have checked it.
            let left = SWEEP_BOUND.saturating_sub(sent.elapsed());
            // A pack's index first: an index is never left naming a deleted pack.
            let delete = async {
                if let Some((id, false)) = crate::pack::parse_key(&obj.key) {
                    remote.delete(&crate::pack::index_key(&id)).await?;
                }
                remote.delete(&obj.key).await
            };
            match tokio::time::timeout(left, delete).await {
                Ok(r) => r?,
                Err(_) => {
                    tracing::warn!(
                        "deleting {} did not finish within {SWEEP_BOUND:?} of its check; \
                         abandoned (run `mvault verify` if pushes were running)",
                        obj.key
                    );
                    return Ok(Swept::Slow);
                }
            }
            let took = sent.elapsed();
            if took > SWEEP_BOUND {
                tracing::warn!(
                    "deleting {} took {took:?} after its check (more than {SWEEP_BOUND:?}): a \
                     push racing this gc may have lost it; run `mvault verify`",
                    obj.key
                );
            }
            Ok::<_, Error>(Swept::Deleted {
                bytes: cur.size,
                late: took > SWEEP_BOUND,
            })
        })
        .buffer_unordered(jobs)
        .try_collect()
        .await?;
    for o in outcomes {
        match o {
            Swept::Deleted { bytes, late } => {
                report.deleted += 1;
                report.bytes_deleted += bytes;
                report.late_deletes += u64::from(late);
            }
            Swept::Rewritten => report.kept_rewritten += 1,
            Swept::Slow => report.kept_slow += 1,
            Swept::Gone => {}
        }
    }
    Ok(())
}

/// What the sweep did with one doomed chunk.
enum Swept {
    Deleted {
        bytes: u64,
        late: bool,
    },
    /// Written again after the record (a push needs it).
    Rewritten,
    /// The stat answered too late to delete safely.
    Slow,
    /// Already gone.
    Gone,
}

/// Objects referenced by every manifest not yet in `seen` (manifest keys), adding them to
/// `seen`. Fails on any manifest that cannot be read or parsed; one removed since the
/// listing is skipped (its chunks are garbage anyway).
async fn mark(vault: &Vault, seen: &mut HashSet<String>) -> Result<HashSet<Obj>> {
    let fresh: Vec<(ModelName, Version)> = all_versions(vault.remote())
        .await?
        .into_iter()
        .filter(|(n, v)| !seen.contains(&manifest_key(n, v)))
        .collect();
    let mut marked = HashSet::new();
    each_manifest(vault, fresh, |n, v, r| {
        if let Some(m) = present(r)? {
            // A packed chunk marks its pack and its loose object too: `sync` copies chunks
            // loose, and readers fall back to the loose object when the pack is absent.
            for c in m.files.iter().flat_map(|f| &f.chunks) {
                marked.insert(Obj::Chunk(vault.remote().stored_id(&c.id)));
                if let Some(p) = &c.pack {
                    marked.insert(Obj::Pack(p.id));
                }
            }
            seen.insert(manifest_key(&n, &v));
        }
        Ok(())
    })
    .await?;
    Ok(marked)
}

/// Removes the versions of `name` older than its newest `keep` releases (semver order),
/// never a version an alias currently points at. Pre-releases are not counted: one newer than
/// the oldest release kept stays (a `2.0.0-rc.1` never pushes out the `1.4.0` that `latest`
/// means), one older goes. A model with no release counts its pre-releases instead. Returns
/// the versions removed (with `dry_run`: that would be), ascending. Chunks are reclaimed by a
/// later [`gc`]. Aliases are read again just before deleting, so a version aliased meanwhile
/// is spared.
pub async fn prune(
    vault: &Vault,
    name: &ModelName,
    keep: usize,
    dry_run: bool,
) -> Result<Vec<Version>> {
    let versions = vault.versions(name).await?;
    let old = prune_cut(&versions, keep);
    let aliased = aliased_versions(vault, name).await?;
    let mut doomed: Vec<Version> = versions[..old]
        .iter()
        .filter(|v| !aliased.contains(v))
        .cloned()
        .collect();
    if dry_run || doomed.is_empty() {
        return Ok(doomed);
    }
    let aliased = aliased_versions(vault, name).await?;
    doomed.retain(|v| !aliased.contains(v));
    for v in &doomed {
        match vault.rm(name, v, false).await {
            Ok(()) => {}
            // Removed meanwhile, or aliased meanwhile (spared).
            Err(e) if e.is_not_found() || e.category() == Category::Conflict => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(doomed)
}

/// How many of `versions` (ascending) are older than the newest `keep` releases: the index
/// of the oldest release kept (0 when there are at most `keep` releases). Without releases,
/// pre-releases are counted as releases would be.
fn prune_cut(versions: &[Version], keep: usize) -> usize {
    let releases: Vec<usize> = (0..versions.len())
        .filter(|&i| !versions[i].is_prerelease())
        .collect();
    if releases.is_empty() {
        return versions.len().saturating_sub(keep);
    }
    match keep {
        0 => versions.len(),
        k if k >= releases.len() => 0,
        k => releases[releases.len() - k],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_counts_releases_and_keeps_newer_prereleases() {
        let vs = |l: &[&str]| -> Vec<Version> { l.iter().map(|s| s.parse().unwrap()).collect() };
        let v = vs(&[
            "1.0.0",
            "1.1.0-rc.1",
            "1.1.0",
            "1.2.0",
            "2.0.0-rc.1",
            "2.0.0-rc.2",
        ]);
        assert_eq!(prune_cut(&v, 1), 3, "1.2.0 and the rcs after it stay");
        assert_eq!(prune_cut(&v, 2), 2, "1.1.0 is the oldest kept");
        assert_eq!(prune_cut(&v, 3), 0);
        assert_eq!(prune_cut(&v, 9), 0);
        assert_eq!(prune_cut(&v, 0), v.len());
        let pre = vs(&["1.0.0-a", "1.0.0-b", "1.0.0-c"]);
        assert_eq!(prune_cut(&pre, 2), 1);
        assert_eq!(prune_cut(&pre, 5), 0);
        assert_eq!(prune_cut(&[], 1), 0);
    }

    #[test]
    fn times_without_a_fraction_compare_in_whole_seconds() {
        let t = |s: u64, ns: u32| SystemTime::UNIX_EPOCH + Duration::new(s, ns);
        assert!(older(t(10, 5), t(10, 6)));
        assert!(!older(t(10, 6), t(10, 6)));
        // A store reporting whole seconds: 10 s may be 10.9 s, not before 10.5 s.
        assert!(!older(t(10, 0), t(10, 500_000_000)));
        assert!(!older(t(10, 700_000_000), t(10, 0)));
        assert!(older(t(9, 0), t(10, 500_000_000)));
    }
}
