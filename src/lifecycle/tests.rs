//! Lifecycle tests on in-memory and local-directory vaults, with versions pushed through the
//! real push pipeline using small chunks (2/8/32 KiB).

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use opendal::Operator;
use tempfile::TempDir;

use super::gc::gc_at;
use super::*;
use crate::cache::Cache;
use crate::category_of;
use crate::chunk::{ChunkParams, Digest};
use crate::error::Category;
use crate::manifest::Manifest;
use crate::remote::{PENDING_DIR, chunk_key, manifest_key};
use crate::transfer::{PushRequest, TransferOptions};
use crate::vault::alias::{advance, commit, current};
use crate::vault::{
    AliasInfo, AliasKind, alias_get, alias_list, alias_set, alias_target, aliased_versions,
    rollback,
};
use crate::version::Alias;

const SMALL: ChunkParams = ChunkParams {
    min_bytes: 2 * 1024,
    avg_bytes: 8 * 1024,
    max_bytes: 32 * 1024,
};

/// Deterministic pseudo-random bytes (seeded, incompressible: stored raw).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// The category of a result's error, `None` for a success.
fn cat<T, E: std::error::Error + 'static>(r: &std::result::Result<T, E>) -> Option<Category> {
    r.as_ref().err().and_then(|e| category_of(e))
}

/// gc options with `force` (tests use grace periods below the safe minimum).
fn opts(grace: Duration, dry_run: bool) -> GcOptions {
    GcOptions {
        grace,
        dry_run,
        force: true,
    }
}

fn n(s: &str) -> ModelName {
    s.parse().unwrap()
}
fn v(s: &str) -> Version {
    s.parse().unwrap()
}
fn a(s: &str) -> Alias {
    s.parse().unwrap()
}

struct Env {
    vault: Vault,
    /// Holds the cache, the pushed sources and (fs) the store.
    dir: TempDir,
}

impl Env {
    fn new(op: Operator, dir: TempDir) -> Env {
        let remote = crate::remote::Remote::new(op, "test");
        let cache = Cache::open(&dir.path().join("cache")).unwrap();
        Env {
            vault: Vault::new(remote, "memory://test", cache),
            dir,
        }
    }

    fn memory() -> Env {
        let op = Operator::new(opendal::services::Memory::default()).unwrap();
        Env::new(op, tempfile::tempdir().unwrap())
    }

    fn fs() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let op =
            Operator::new(opendal::services::Fs::default().root(root.to_str().unwrap())).unwrap();
        Env::new(op, dir)
    }

    fn remote(&self) -> &crate::remote::Remote {
        self.vault.remote()
    }

    async fn push(&self, name: &str, version: &str, files: &[(&str, Vec<u8>)]) -> Manifest {
        let src = self
            .dir
            .path()
            .join("src")
            .join(format!("{name}@{version}"));
        std::fs::create_dir_all(&src).unwrap();
        for (path, data) in files {
            std::fs::write(src.join(path), data).unwrap();
        }
        let req = PushRequest {
            name: n(name),
            version: v(version),
            paths: vec![src],
            description: String::new(),
            metrics: Default::default(),
            params: Default::default(),
            tags: Default::default(),
            extra: Default::default(),
            chunking: SMALL,
            dry_run: false,
            pack: true,
            sign_key: None,
        };
        self.vault
            .push(&req, &TransferOptions::default())
            .await
            .unwrap()
            .0
    }

    /// Digests of every chunk object on the store.
    async fn chunk_ids(&self) -> HashSet<Digest> {
        let listed = self.remote().list_objects("chunks/").await.unwrap();
        listed.iter().filter_map(|o| chunk_id(&o.key)).collect()
    }
}

fn ids(m: &Manifest) -> HashSet<Digest> {
    m.unique_chunks().into_iter().map(|c| c.id).collect()
}

fn file_chunk(m: &Manifest, path: &str, i: usize) -> Digest {
    m.files.iter().find(|f| f.path == path).unwrap().chunks[i].id
}

fn history(info: &AliasInfo) -> Vec<&str> {
    info.history.iter().map(|e| e.version.as_str()).collect()
}

#[tokio::test]
async fn alias_history_and_rollback() {
    let env = Env::memory();
    let vault = &env.vault;
    for (i, ver) in ["1.0.0", "v1.1.0", "1.2.0"].iter().enumerate() {
        env.push("bert", ver, &[("w.bin", noise(i as u64, 3000))])
            .await;
    }
    let (bert, prod) = (n("bert"), a("prod"));
    assert_eq!(alias_get(vault, &bert, &prod).await.unwrap(), None);
    assert_eq!(
        cat(&alias_target(vault, &bert, &prod).await),
        Some(Category::NotFound)
    );
    assert_eq!(
        cat(&rollback(vault, &bert, &prod, false).await),
        Some(Category::NotFound)
    );
    assert!(alias_list(vault, &bert).await.unwrap().is_empty());

    let c = alias_set(vault, &bert, &v("1.0.0"), &prod, false)
        .await
        .unwrap();
    assert_eq!((c.from, c.revision, c.changed), (None, 1, true));
    alias_set(vault, &bert, &v("1.1.0"), &prod, false)
        .await
        .unwrap();
    let c = alias_set(vault, &bert, &v("1.2.0"), &prod, false)
        .await
        .unwrap();
    assert_eq!(
        (c.from, c.to.clone(), c.revision),
        (Some(v("1.1.0")), v("1.2.0"), 3)
    );
    let same = alias_set(vault, &bert, &v("1.2.0"), &prod, false)
        .await
        .unwrap();
    assert_eq!((same.revision, same.changed), (3, false));
    assert_eq!(
        cat(&alias_set(vault, &bert, &v("9.9.9"), &prod, false).await),
        Some(Category::NotFound)
    );

    let list = alias_list(vault, &bert).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        history(&list[0]),
        ["1.0.0", "v1.1.0", "1.2.0"],
        "as pushed, v kept"
    );
    assert!(
        list[0]
            .history
            .iter()
            .all(|e| e.set_by.contains('@') && e.set_at.ends_with('Z'))
    );

    // Rollbacks walk back through earlier targets, then refuse.
    let back = rollback(vault, &bert, &prod, false).await.unwrap();
    assert_eq!((back.from, back.to), (Some(v("1.2.0")), v("1.1.0")));
    let back = rollback(vault, &bert, &prod, false).await.unwrap();
    assert_eq!((back.from, back.to), (Some(v("1.1.0")), v("1.0.0")));
    assert_eq!(
        cat(&rollback(vault, &bert, &prod, false).await),
        Some(Category::NotFound)
    );
    assert_eq!(alias_target(vault, &bert, &prod).await.unwrap(), v("1.0.0"));

    let info = &alias_list(vault, &bert).await.unwrap()[0];
    assert_eq!(
        history(info),
        ["1.0.0", "v1.1.0", "1.2.0", "v1.1.0", "1.0.0"]
    );
    assert_eq!(info.history[4].action, AliasKind::Rollback);
    assert_eq!(info.revision, 5);
    let revisions = env
        .remote()
        .list_dir("models/bert/aliases/prod/")
        .await
        .unwrap();
    assert_eq!(revisions.len(), 5, "{revisions:?}");
    assert!(revisions.contains(&"00000000000000000005.json".to_string()));

    // After a new set, rollback returns to the target before it.
    alias_set(vault, &bert, &v("1.2.0"), &prod, false)
        .await
        .unwrap();
    let back = rollback(vault, &bert, &prod, false).await.unwrap();
    assert_eq!((back.from, back.to), (Some(v("1.2.0")), v("1.0.0")));

    alias_set(vault, &bert, &v("1.2.0"), &a("staging"), false)
        .await
        .unwrap();
    assert_eq!(
        aliased_versions(vault, &bert).await.unwrap(),
        [v("1.0.0"), v("1.2.0")]
    );
}

#[tokio::test]
async fn rollback_to_a_removed_version_is_not_found() {
    let env = Env::memory();
    let vault = &env.vault;
    env.push("m", "1.0.0", &[("w", noise(1, 100))]).await;
    env.push("m", "2.0.0", &[("w", noise(2, 100))]).await;
    alias_set(vault, &n("m"), &v("1.0.0"), &a("prod"), false)
        .await
        .unwrap();
    alias_set(vault, &n("m"), &v("2.0.0"), &a("prod"), false)
        .await
        .unwrap();
    vault.rm(&n("m"), &v("1.0.0"), false).await.unwrap();
    let e = rollback(vault, &n("m"), &a("prod"), false)
        .await
        .unwrap_err();
    assert_eq!(category_of(&e), Some(Category::NotFound), "{e}");
    assert_eq!(
        alias_target(vault, &n("m"), &a("prod")).await.unwrap(),
        v("2.0.0")
    );
}

#[tokio::test]
async fn racing_alias_writers_one_wins_the_other_conflicts() {
    let env = Env::memory();
    let vault = &env.vault;
    for (i, ver) in ["1.0.0", "1.1.0", "1.2.0"].iter().enumerate() {
        env.push("m", ver, &[("w", noise(i as u64, 100))]).await;
    }
    let (m, prod) = (n("m"), a("prod"));
    alias_set(vault, &m, &v("1.0.0"), &prod, false)
        .await
        .unwrap();

    // Both writers read revision 1, then both try to create revision 2.
    let prev = current(env.remote(), &m, &prod).await.unwrap().unwrap();
    let doc_a = advance(Some(&prev), 2, &m, &prod, "1.1.0", AliasKind::Set);
    let doc_b = advance(Some(&prev), 2, &m, &prod, "1.2.0", AliasKind::Set);
    commit(env.remote(), &m, &prod, &doc_a).await.unwrap();
    let lost = commit(env.remote(), &m, &prod, &doc_b).await.unwrap_err();
    assert!(lost.is_conflict(), "{lost}");
    assert!(
        lost.to_string()
            .contains("alias prod of m was changed concurrently; retry"),
        "{lost}"
    );
    assert_eq!(alias_target(vault, &m, &prod).await.unwrap(), v("1.1.0"));

    // The loser retries from the new state: both updates are in the history.
    alias_set(vault, &m, &v("1.2.0"), &prod, false)
        .await
        .unwrap();
    let info = &alias_list(vault, &m).await.unwrap()[0];
    assert_eq!(history(info), ["1.0.0", "1.1.0", "1.2.0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_alias_sets_lose_no_update() {
    let env = Env::memory();
    let versions: Vec<String> = (0..8).map(|i| format!("1.{i}.0")).collect();
    for (i, ver) in versions.iter().enumerate() {
        env.push("m", ver, &[("w", noise(i as u64, 100))]).await;
    }
    let tasks: Vec<_> = versions
        .iter()
        .map(|ver| {
            let (vault, ver) = (env.vault.clone(), v(ver));
            tokio::spawn(async move { alias_set(&vault, &n("m"), &ver, &a("prod"), false).await })
        })
        .collect();
    let mut won = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(c) => won.push(c),
            Err(e) => assert!(e.is_conflict(), "unexpected error: {e}"),
        }
    }
    assert!(!won.is_empty());
    let info = &alias_list(&env.vault, &n("m")).await.unwrap()[0];
    assert_eq!(
        info.revision as usize,
        won.len(),
        "one revision per successful writer"
    );
    for c in &won {
        let event = &info.history[c.revision as usize - 1];
        assert_eq!(
            v(&event.version),
            c.to,
            "update of revision {} kept",
            c.revision
        );
    }
}

#[tokio::test]
async fn verify_finds_flipped_missing_and_truncated_chunks() {
    let env = Env::memory();
    let vault = &env.vault;
    let shared = noise(1, 200_000);
    let m1 = env
        .push(
            "m",
            "1.0.0",
            &[("a.bin", shared.clone()), ("b.bin", noise(2, 50_000))],
        )
        .await;
    let m2 = env
        .push(
            "m",
            "1.1.0",
            &[("a.bin", shared), ("c.bin", noise(3, 60_000))],
        )
        .await;
    let clean = verify(vault, None, None, None).await.unwrap();
    assert!(clean.is_ok(), "{clean:?}");
    assert_eq!(clean.versions_checked, 2);
    assert_eq!(clean.chunks_checked, clean.chunks_referenced);
    assert_eq!(
        clean.chunks_referenced as usize,
        ids(&m1).union(&ids(&m2)).count()
    );

    let flipped = file_chunk(&m1, "a.bin", 0);
    let missing = file_chunk(&m2, "c.bin", 0);
    let truncated = file_chunk(&m1, "b.bin", 1);
    let r = env.remote();
    let mut bytes = r.read_chunk(&flipped).await.unwrap().to_vec();
    *bytes.last_mut().unwrap() ^= 1;
    r.write_chunk(&flipped, Bytes::from(bytes)).await.unwrap();
    r.delete(&chunk_key(&missing)).await.unwrap();
    let bytes = r.read_chunk(&truncated).await.unwrap();
    r.write_chunk(&truncated, bytes.slice(..bytes.len() / 2))
        .await
        .unwrap();

    let rep = verify(vault, None, None, None).await.unwrap();
    assert!(!rep.is_ok());
    assert_eq!(rep.broken_versions, ["m@1.0.0", "m@1.1.0"]);
    assert_eq!(rep.missing.len(), 1);
    assert_eq!(rep.missing[0].chunk, missing);
    assert_eq!(rep.missing[0].damage, Damage::Missing);
    assert_eq!(
        rep.missing[0].used_by,
        [ChunkUse {
            version: "m@1.1.0".into(),
            files: vec!["c.bin".into()]
        }]
    );
    let damage = |id| rep.damaged.iter().find(|p| p.chunk == id).unwrap();
    assert_eq!(rep.damaged.len(), 2);
    assert_eq!(damage(flipped).damage, Damage::HashMismatch);
    let users: Vec<(&str, &[String])> = damage(flipped)
        .used_by
        .iter()
        .map(|u| (u.version.as_str(), &u.files[..]))
        .collect();
    assert_eq!(
        users,
        [
            ("m@1.0.0", &["a.bin".to_string()][..]),
            ("m@1.1.0", &["a.bin".to_string()][..])
        ]
    );
    assert_eq!(damage(truncated).damage, Damage::Truncated);
    assert_eq!(damage(truncated).used_by[0].version, "m@1.0.0");

    // One version: only its own problems.
    let one = verify(vault, Some(&n("m")), Some(&v("1.1.0")), None)
        .await
        .unwrap();
    assert_eq!(one.broken_versions, ["m@1.1.0"]);
    assert_eq!((one.missing.len(), one.damaged.len()), (1, 1));

    // JSON shape for --json.
    let json = serde_json::to_value(&rep).unwrap();
    assert!(json["damaged"][0]["damage"].is_string());
    assert_eq!(json["missing"][0]["chunk"], missing.to_hex());
}

#[tokio::test]
async fn verify_selection_sampling_and_bad_manifests() {
    let env = Env::memory();
    let vault = &env.vault;
    env.push("m", "1.0.0", &[("a.bin", noise(1, 300_000))])
        .await;
    env.push("m", "1.1.0", &[("a.bin", noise(2, 10_000))]).await;
    let missing = verify(vault, Some(&n("m")), Some(&v("9.0.0")), None).await;
    assert_eq!(cat(&missing), Some(Category::NotFound));
    assert_eq!(
        cat(&verify(vault, Some(&n("nope")), None, None).await),
        Some(Category::NotFound)
    );
    assert_eq!(
        cat(&verify(
            vault,
            None,
            None,
            Some(Sample {
                fraction: 0.0,
                seed: 7
            })
        )
        .await),
        Some(Category::Usage)
    );
    assert_eq!(
        cat(&verify(
            vault,
            None,
            None,
            Some(Sample {
                fraction: 1.5,
                seed: 7
            })
        )
        .await),
        Some(Category::Usage)
    );

    let half = verify(
        vault,
        Some(&n("m")),
        None,
        Some(Sample {
            fraction: 0.5,
            seed: 7,
        }),
    )
    .await
    .unwrap();
    assert!(half.is_ok());
    assert!(half.chunks_referenced > 30, "{half:?}");
    assert!(half.chunks_checked < half.chunks_referenced, "{half:?}");
    assert_eq!(half.seed, Some(7));
    // Seeded: the same seed checks the same chunks (same count and bytes), another seed
    // (almost surely) others.
    let sample = |seed| {
        Some(Sample {
            fraction: 0.5,
            seed,
        })
    };
    let again = verify(vault, Some(&n("m")), None, sample(7)).await.unwrap();
    assert_eq!(
        (again.chunks_checked, again.bytes_read),
        (half.chunks_checked, half.bytes_read)
    );
    let mut differs = false;
    for seed in 8..16 {
        let other = verify(vault, Some(&n("m")), None, sample(seed))
            .await
            .unwrap();
        differs |=
            (other.chunks_checked, other.bytes_read) != (half.chunks_checked, half.bytes_read);
    }
    assert!(differs, "other seeds pick other chunks");

    let key = manifest_key(&n("m"), &v("1.1.0"));
    env.remote()
        .write(&key, Bytes::from_static(b"{not json"))
        .await
        .unwrap();
    let rep = verify(vault, None, None, None).await.unwrap();
    assert!(!rep.is_ok());
    assert_eq!(rep.bad_manifests.len(), 1);
    assert_eq!(rep.bad_manifests[0].version, "m@1.1.0");
    assert_eq!(rep.broken_versions, ["m@1.1.0"]);
    assert_eq!(rep.versions_checked, 1);
}

/// `m@1.0.0` (one file) and `m@2.0.0` (that file plus one more): the chunks of 1.0.0, and
/// those only 2.0.0 has (garbage once 2.0.0 is removed).
async fn two_versions_sharing_a_file() -> (Env, HashSet<Digest>, HashSet<Digest>) {
    let env = Env::fs();
    let base = noise(1, 100_000);
    let m1 = env.push("m", "1.0.0", &[("a.bin", base.clone())]).await;
    let m2 = env
        .push(
            "m",
            "2.0.0",
            &[("a.bin", base), ("b.bin", noise(2, 80_000))],
        )
        .await;
    let keep = ids(&m1);
    let garbage: HashSet<Digest> = ids(&m2).difference(&keep).copied().collect();
    (env, keep, garbage)
}

#[tokio::test]
async fn gc_deletes_exactly_unreferenced_old_chunks() {
    let (env, keep, garbage) = two_versions_sharing_a_file().await;
    let vault = &env.vault;
    assert!(!garbage.is_empty());
    env.remote()
        .write("chunks/README", Bytes::from_static(b"not a chunk"))
        .await
        .unwrap();
    vault.rm(&n("m"), &v("2.0.0"), false).await.unwrap();
    let later = Duration::from_secs(1);

    // Within the grace period nothing goes.
    let young = gc_at(vault, &opts(DEFAULT_GRACE, false), later)
        .await
        .unwrap();
    assert_eq!((young.deleted, young.kept_young), (0, garbage.len() as u64));
    assert_eq!(young.referenced, keep.len() as u64);
    assert_eq!(young.scanned_chunks, (keep.len() + garbage.len()) as u64);
    assert_eq!(young.manifests, 1);

    let dry = gc_at(vault, &opts(Duration::ZERO, true), later)
        .await
        .unwrap();
    assert_eq!(dry.deleted, garbage.len() as u64);
    assert!(dry.bytes_deleted > 80_000, "{dry:?}");
    assert_eq!(
        env.chunk_ids().await.len(),
        keep.len() + garbage.len(),
        "dry run deletes nothing"
    );

    let real = gc_at(vault, &opts(Duration::ZERO, false), later)
        .await
        .unwrap();
    assert_eq!(
        (real.deleted, real.bytes_deleted),
        (dry.deleted, dry.bytes_deleted)
    );
    assert_eq!(env.chunk_ids().await, keep);
    assert!(
        env.remote()
            .size_of("chunks/README")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        verify(vault, Some(&n("m")), None, None)
            .await
            .unwrap()
            .is_ok()
    );
    assert_eq!(
        gc_at(vault, &opts(Duration::ZERO, false), later)
            .await
            .unwrap()
            .deleted,
        0
    );
}

#[tokio::test]
async fn gc_records_first_and_sweeps_a_ripe_record_later() {
    let (env, keep, garbage) = two_versions_sharing_a_file().await;
    let vault = &env.vault;
    vault.rm(&n("m"), &v("2.0.0"), false).await.unwrap();
    let hour = Duration::from_secs(3600);
    let records = || async { env.remote().list_objects(PENDING_DIR).await.unwrap().len() };

    // Seen two hours from now, the garbage is old: recorded, not deleted.
    let first = gc_at(vault, &opts(hour, false), 2 * hour).await.unwrap();
    assert_eq!((first.deleted, first.records_written), (0, 1), "{first:?}");
    assert_eq!(first.chunks_recorded, garbage.len() as u64);
    assert_eq!((first.records_pending, records().await), (1, 1));
    // Now, the record is young: nothing is deleted, nothing recorded twice.
    let now = gc_at(vault, &opts(hour, false), Duration::ZERO)
        .await
        .unwrap();
    assert_eq!((now.deleted, now.records_written), (0, 0), "{now:?}");
    assert_eq!(env.chunk_ids().await.len(), keep.len() + garbage.len());

    // One garbage chunk is written again (as a push relying on it would): it stays.
    let again = *garbage.iter().next().unwrap();
    let bytes = env.remote().read_chunk(&again).await.unwrap();
    env.remote().write_chunk(&again, bytes).await.unwrap();
    let dry = gc_at(vault, &opts(hour, true), 2 * hour).await.unwrap();
    assert_eq!(dry.deleted, garbage.len() as u64 - 1, "{dry:?}");
    assert_eq!(records().await, 1, "a dry run deletes no record");
    let swept = gc_at(vault, &opts(hour, false), 2 * hour).await.unwrap();
    assert_eq!(swept.deleted, garbage.len() as u64 - 1, "{swept:?}");
    assert_eq!((swept.kept_rewritten, swept.records_swept), (1, 1));
    let mut left = keep.clone();
    left.insert(again);
    assert_eq!(env.chunk_ids().await, left);
    assert_eq!(records().await, 0, "the swept record is deleted");
    // Still garbage, it is recorded afresh, and goes one grace period later.
    let next = gc_at(vault, &opts(hour, false), 2 * hour).await.unwrap();
    assert_eq!((next.chunks_recorded, next.deleted), (1, 0), "{next:?}");
    assert!(
        verify(vault, Some(&n("m")), None, None)
            .await
            .unwrap()
            .is_ok()
    );
}

#[tokio::test]
async fn gc_refuses_a_short_grace_without_force() {
    let env = Env::memory();
    let unsafe_grace = GcOptions {
        grace: Duration::from_secs(10),
        dry_run: true,
        force: false,
    };
    let e = gc(&env.vault, &unsafe_grace).await.unwrap_err();
    assert!(
        matches!(&e, Error::Options(m) if m.contains("--force")),
        "{e}"
    );
    let forced = GcOptions {
        force: true,
        ..unsafe_grace
    };
    gc(&env.vault, &forced).await.unwrap();
}

#[tokio::test]
async fn gc_aborts_on_unreadable_manifests() {
    let env = Env::fs();
    let vault = &env.vault;
    env.push("m", "1.0.0", &[("a.bin", noise(1, 40_000))]).await;
    env.push("m", "2.0.0", &[("a.bin", noise(2, 40_000))]).await;
    vault.rm(&n("m"), &v("2.0.0"), false).await.unwrap();
    let before = env.chunk_ids().await;
    let later = Duration::from_secs(1);

    let key = manifest_key(&n("x"), &v("1.0.0"));
    env.remote()
        .write(&key, Bytes::from_static(b"{not json"))
        .await
        .unwrap();
    let e = gc_at(vault, &opts(Duration::ZERO, false), later)
        .await
        .unwrap_err();
    assert_eq!(category_of(&e), Some(Category::Integrity), "{e}");
    env.remote().delete(&key).await.unwrap();

    let odd = "models/m/versions/not-a-version.json";
    env.remote()
        .write(odd, Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let e = gc_at(vault, &opts(Duration::ZERO, false), later)
        .await
        .unwrap_err();
    assert_eq!(category_of(&e), Some(Category::Integrity), "{e}");
    assert_eq!(env.chunk_ids().await, before, "nothing deleted");
}

#[tokio::test]
async fn gc_keeps_chunks_of_unknown_age() {
    // The memory store reports no modification time: unreferenced chunks are kept.
    let env = Env::memory();
    env.push("m", "1.0.0", &[("a.bin", noise(1, 40_000))]).await;
    env.vault.rm(&n("m"), &v("1.0.0"), false).await.unwrap();
    let before = env.chunk_ids().await;
    let r = gc(&env.vault, &opts(Duration::ZERO, false)).await.unwrap();
    assert_eq!((r.deleted, r.kept_young), (0, before.len() as u64));
    assert_eq!(env.chunk_ids().await, before);
}

#[tokio::test]
async fn prune_keeps_newest_and_aliased_versions() {
    let env = Env::memory();
    let vault = &env.vault;
    for (i, ver) in ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "v1.4.0"]
        .iter()
        .enumerate()
    {
        env.push("m", ver, &[("w", noise(i as u64, 100))]).await;
    }
    alias_set(vault, &n("m"), &v("1.0.0"), &a("prod"), false)
        .await
        .unwrap();
    let dry = prune(vault, &n("m"), 2, true).await.unwrap();
    assert_eq!(dry, [v("1.1.0"), v("1.2.0")]);
    assert_eq!(vault.versions(&n("m")).await.unwrap().len(), 5);
    let gone = prune(vault, &n("m"), 2, false).await.unwrap();
    assert_eq!(gone, dry);
    assert_eq!(
        vault.versions(&n("m")).await.unwrap(),
        [v("1.0.0"), v("1.3.0"), v("1.4.0")]
    );
    assert!(prune(vault, &n("m"), 10, false).await.unwrap().is_empty());
    assert_eq!(
        prune(vault, &n("m"), 0, true).await.unwrap(),
        [v("1.3.0"), v("1.4.0")]
    );
    assert_eq!(
        cat(&prune(vault, &n("nope"), 1, false).await),
        Some(Category::NotFound)
    );
}

#[tokio::test]
async fn usage_matches_a_hand_computed_case() {
    let env = Env::memory();
    let (r1, r2) = (noise(1, 1000), noise(2, 500));
    // One chunk per file (smaller than the 2 KiB minimum), stored raw: 16-byte header.
    env.push("a", "1.0.0", &[("x.bin", r1.clone())]).await;
    env.push("a", "2.0.0", &[("x.bin", r1.clone()), ("y.bin", r2)])
        .await;
    env.push("b", "1.0.0", &[("z.bin", r1)]).await;
    alias_set(&env.vault, &n("a"), &v("2.0.0"), &a("prod"), false)
        .await
        .unwrap();
    let rep = usage(&env.vault, PRICES).await.unwrap();

    let (c1, c2) = (1000 + 16, 500 + 16);
    assert_eq!((rep.versions, rep.logical_bytes), (3, 1000 + 1500 + 1000));
    assert_eq!((rep.chunk_objects, rep.stored_bytes), (2, c1 + c2));
    let per: Vec<(&str, u64, u64, u64, u64)> = rep
        .models
        .iter()
        .map(|m| {
            (
                m.model.as_str(),
                m.versions,
                m.logical_bytes,
                m.unique_chunks,
                m.stored_bytes,
            )
        })
        .collect();
    assert_eq!(per, [("a", 2, 2500, 2, c1 + c2), ("b", 1, 1000, 1, c1)]);
    assert_eq!(rep.dedupe_ratio, Some(3500.0 / (c1 + c2) as f64));

    let mut meta = 0;
    for (m, ver) in [("a", "1.0.0"), ("a", "2.0.0"), ("b", "1.0.0")] {
        meta += env
            .remote()
            .size_of(&manifest_key(&n(m), &v(ver)))
            .await
            .unwrap()
            .unwrap();
    }
    meta += env
        .remote()
        .size_of("models/a/aliases/prod/00000000000000000001.json")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((rep.metadata_objects, rep.metadata_bytes), (4, meta));
    assert_eq!((rep.objects, rep.billed_bytes), (6, c1 + c2 + meta));
    let s3 = rep
        .monthly_cost
        .iter()
        .find(|c| c.provider == "s3")
        .unwrap();
    assert!((s3.usd_per_month - (c1 + c2 + meta) as f64 / 1e9 * 0.023).abs() < 1e-15);
    assert_eq!(rep.monthly_cost.len(), PRICES.len());
}

#[tokio::test]
async fn list_objects_reports_age_on_fs_and_sizes_on_memory() {
    for (env, has_time) in [(Env::fs(), true), (Env::memory(), false)] {
        env.remote()
            .write("chunks/aa/x", Bytes::from_static(b"12345"))
            .await
            .unwrap();
        let listed = env.remote().list_objects("chunks/").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].key.as_str(), listed[0].size), ("chunks/aa/x", 5));
        assert_eq!(listed[0].last_modified.is_some(), has_time);
    }
}

/// Pack ids a manifest references.
fn packs(m: &Manifest) -> HashSet<Digest> {
    m.files
        .iter()
        .flat_map(|f| &f.chunks)
        .filter_map(|c| c.pack.map(|p| p.id))
        .collect()
}

/// Pack ids stored, and whether every one has its index.
async fn stored_packs(env: &Env) -> (HashSet<Digest>, bool) {
    let listed = env.remote().list_objects("packs/").await.unwrap();
    let keys: Vec<_> = listed
        .iter()
        .filter_map(|o| crate::pack::parse_key(&o.key))
        .collect();
    let packs: HashSet<Digest> = keys.iter().filter(|k| !k.1).map(|k| k.0).collect();
    let indexes: HashSet<Digest> = keys.iter().filter(|k| k.1).map(|k| k.0).collect();
    let whole = packs == indexes;
    (packs, whole)
}

/// Packs (format 3) through push, dedupe, gc and verify: a second version references the
/// first one's packed chunks in place; gc reclaims a pack (with its index) only once no
/// version references it; a push never references a pack a gc record lists (it packs those
/// chunks again), so the sweep of that record breaks nothing.
#[tokio::test]
async fn packs_are_reused_reclaimed_whole_and_never_reused_once_recorded() {
    let env = Env::fs();
    let vault = &env.vault;
    let (a, b) = (noise(11, 12 << 20), noise(12, 12 << 20));
    let m1 = env.push("m", "1.0.0", &[("a.bin", a.clone())]).await;
    assert_eq!(m1.format, crate::manifest::PACKED_FORMAT);
    assert!(
        m1.files[0].chunks.iter().all(|c| c.pack.is_some()),
        "12 MiB of 8 KiB chunks fill two packs, the last one over half full"
    );
    assert_eq!(packs(&m1).len(), 2);
    assert!(env.chunk_ids().await.is_empty(), "nothing loose");

    let m2 = env
        .push("m", "2.0.0", &[("a.bin", a.clone()), ("b.bin", b.clone())])
        .await;
    let a2 = m2.files.iter().find(|f| f.path == "a.bin").unwrap();
    assert_eq!(a2.chunks, m1.files[0].chunks, "a.bin referenced in place");
    let new: HashSet<Digest> = packs(&m2).difference(&packs(&m1)).copied().collect();
    assert_eq!(new.len(), 2, "b.bin in two new packs");
    assert_eq!(stored_packs(&env).await, (packs(&m2), true));

    vault.rm(&n("m"), &v("2.0.0"), false).await.unwrap();
    let later = Duration::from_secs(1);
    let swept = gc_at(vault, &opts(Duration::ZERO, false), later)
        .await
        .unwrap();
    assert_eq!((swept.scanned_packs, swept.deleted), (4, 2), "{swept:?}");
    assert_eq!(stored_packs(&env).await, (packs(&m1), true));
    assert!(verify(vault, None, None, None).await.unwrap().is_ok());

    // b.bin pushed, removed, and its packs recorded by a gc (seen two hours from now).
    let m3 = env.push("m", "3.0.0", &[("b.bin", b.clone())]).await;
    vault.rm(&n("m"), &v("3.0.0"), false).await.unwrap();
    let hour = Duration::from_secs(3600);
    let recorded = gc_at(vault, &opts(hour, false), 2 * hour).await.unwrap();
    assert_eq!((recorded.chunks_recorded, recorded.deleted), (2, 0));
    // The same content again: the recorded packs are not referenced.
    let m4 = env.push("m", "4.0.0", &[("b.bin", b)]).await;
    assert!(
        packs(&m4).is_disjoint(&packs(&m3)),
        "recorded packs are not reused"
    );
    assert_eq!(packs(&m4).len(), 2);
    let swept = gc_at(vault, &opts(hour, false), 2 * hour).await.unwrap();
    assert_eq!((swept.deleted, swept.records_swept), (2, 1), "{swept:?}");
    let mut live = packs(&m1);
    live.extend(packs(&m4));
    assert_eq!(stored_packs(&env).await, (live, true));
    let report = verify(vault, None, None, None).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
}

/// A damaged pack range is found by verify, named by its pack and range, and attributed to
/// the version.
#[tokio::test]
async fn verify_names_a_damaged_pack_range() {
    let env = Env::fs();
    let m = env
        .push("m", "1.0.0", &[("a.bin", noise(13, 12 << 20))])
        .await;
    let c = m.files[0].chunks[5].clone();
    let p = c.pack.unwrap();
    let path = env
        .dir
        .path()
        .join("store")
        .join(crate::pack::pack_key(&p.id));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(p.offset + p.len - 1) as usize] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let report = verify(&env.vault, None, None, None).await.unwrap();
    assert_eq!(report.damaged.len(), 1, "{report:?}");
    assert_eq!(report.damaged[0].chunk, c.id);
    assert!(report.damaged[0].key.starts_with("packs/"), "{report:?}");
    assert_eq!(report.broken_versions, ["m@1.0.0"]);
}

/// Many small files make a pack even though their bytes are few (each loose chunk would be a
/// request); a single small file stays loose.
#[tokio::test]
async fn many_small_files_are_packed_a_few_stay_loose() {
    let env = Env::fs();
    let many: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| (format!("shard-{i:03}.txt"), noise(1000 + i, 100)))
        .collect();
    let files: Vec<(&str, Vec<u8>)> = many.iter().map(|(p, d)| (p.as_str(), d.clone())).collect();
    let m = env.push("tok", "1.0.0", &files).await;
    assert_eq!(m.format, crate::manifest::PACKED_FORMAT);
    assert_eq!(packs(&m).len(), 1);
    assert!(env.chunk_ids().await.is_empty());
    let few = env
        .push("cfg", "1.0.0", &[("c.txt", noise(2000, 100))])
        .await;
    assert_eq!(few.format, crate::manifest::FORMAT);
    assert!(packs(&few).is_empty());
    assert!(verify(&env.vault, None, None, None).await.unwrap().is_ok());
}
