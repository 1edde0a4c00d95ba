//! gc as a hazard to a shared bucket (issue 11 item 4): gc racing pushes must never publish a
//! broken version, a lost chunk must be healable by pushing the same content again, gc is
//! two-phase (record, then sweep one grace period later), and a grace below the safe minimum
//! needs `--force`. Ages are simulated by backdating the vault's files (fs backend).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::common::{Backend, Env, noise, walk, write_file};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The chunk object files of the vault.
fn chunk_files(env: &Env) -> Vec<PathBuf> {
    walk(&env.path("vault/chunks"))
}

/// The pending gc records of the vault.
fn records(env: &Env) -> Vec<PathBuf> {
    walk(&env.path("vault/gc/pending"))
}

/// Sets the modification time of `files` to `age` ago.
fn backdate(files: &[PathBuf], age: Duration) {
    let t = SystemTime::now() - age;
    for f in files {
        fs::File::open(f).unwrap().set_modified(t).unwrap();
    }
}

fn count(j: &Value, field: &str) -> u64 {
    j[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in {j}"))
}

/// Starts `mvault push SRC --name m --version VERSION --limit-rate 1M` in the background.
fn slow_push(env: &Env, src: &Path, version: &str) -> Child {
    env.cmd()
        .args([
            "push",
            s(src),
            "--name",
            "m",
            "--version",
            version,
            "--limit-rate",
            "1M",
            // The loose-chunk protocol (rewrite, then heal) is what these races exercise.
            "--no-pack",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// True once some chunk object was written within the last day (the seeded ones are two days
/// old). Files may vanish under the listing (temporary names), so a failed stat is no match.
fn has_fresh_chunk(env: &Env) -> bool {
    let cutoff = SystemTime::now() - DAY;
    chunk_files(env).iter().any(|f| {
        fs::metadata(f)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t > cutoff)
    })
}

/// Waits (at most 30 s) until `cond` holds.
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts the background push is still running (else the race did not happen), then that
/// it succeeds.
fn finish(mut push: Child) {
    assert!(
        push.try_wait().unwrap().is_none(),
        "the push ended before gc ran; the test proves nothing"
    );
    let out = push.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "push failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// v1 (`a.bin`) pushed with its chunks two days old; `v2/` holds the same `a.bin` plus new
/// `b.bin` of `new_bytes`.
fn seed_v1_and_v2(env: &Env, a_bytes: usize, new_bytes: usize) -> PathBuf {
    let a = noise(41, a_bytes);
    let v1 = env.path("v1");
    write_file(&v1.join("a.bin"), &a);
    env.ok(&[
        "push",
        s(&v1),
        "--name",
        "m",
        "--version",
        "1.0.0",
        "--no-pack",
    ]);
    backdate(&chunk_files(env), 2 * DAY);
    let v2 = env.path("v2");
    write_file(&v2.join("a.bin"), &a);
    write_file(&v2.join("b.bin"), &noise(42, new_bytes));
    v2
}

/// The issue's scenario: while a push of v2 (mostly v1's content) runs, v1 is removed and gc
/// runs with the default grace. Today gc deletes v1's old chunks under the push, which then
/// publishes a version with chunks missing and exits 0.
#[test]
fn gc_racing_a_push_does_not_break_the_published_version() {
    let env = Env::new(Backend::Fs);
    let v2 = seed_v1_and_v2(&env, 6 << 20, 4 << 20);
    let before = chunk_files(&env).len();
    let push = slow_push(&env, &v2, "2.0.0");
    // The push has decided which chunks the vault has once it uploads its first new one.
    wait_for("the push uploads a chunk", || {
        chunk_files(&env).len() > before
    });
    env.ok(&["rm", "m@1.0.0"]);
    let j = env.json(&["gc"]);
    assert_eq!(
        count(&j, "deleted"),
        0,
        "a first gc run deletes nothing: {j}"
    );
    assert_eq!(count(&j, "records_written"), 1, "{j}");
    assert!(count(&j, "chunks_recorded") > 0, "{j}");
    finish(push);
    env.ok(&["verify", "m@2.0.0"]);

    // One grace period later the record is ripe, but v2 references its chunks: all kept.
    backdate(&records(&env), 2 * DAY);
    let all = chunk_files(&env).len();
    let j = env.json(&["gc"]);
    assert_eq!(count(&j, "deleted"), 0, "{j}");
    assert_eq!(count(&j, "records_swept"), 1, "{j}");
    assert_eq!(chunk_files(&env).len(), all);
    assert!(records(&env).is_empty(), "the swept record is deleted");
    env.ok(&["verify"]);
    let out = env.path("out");
    env.ok(&["pull", "m@2.0.0", "--to", s(&out)]);
    crate::common::assert_same_tree(&v2, &out);
}

/// The ripe-record case: v1's chunks are recorded and the record is a grace period old when
/// a push of v2 reusing them starts; a gc sweeping meanwhile must not leave v2 broken. The
/// push uploads recorded chunks again (so the sweep keeps them, or they come back after it).
#[test]
fn gc_sweeping_while_a_push_reuses_recorded_chunks() {
    let env = Env::new(Backend::Fs);
    let v2 = seed_v1_and_v2(&env, 3 << 20, 2 << 20);
    env.ok(&["rm", "m@1.0.0"]);
    let j = env.json(&["gc"]);
    assert_eq!(
        count(&j, "deleted"),
        0,
        "a first gc run deletes nothing: {j}"
    );
    assert_eq!(records(&env).len(), 1, "{j}");
    backdate(&records(&env), 2 * DAY);

    let push = slow_push(&env, &v2, "2.0.0");
    wait_for("the push uploads a chunk", || has_fresh_chunk(&env));
    let j = env.json(&["gc"]);
    assert_eq!(count(&j, "records_swept"), 1, "{j}");
    finish(push);
    env.ok(&["verify", "m@2.0.0"]);
    let out = env.path("out");
    env.ok(&["pull", "m@2.0.0", "--to", s(&out)]);
    crate::common::assert_same_tree(&v2, &out);
}

/// The residual race: a sweep that checked a recorded chunk before a push rewrote it deletes
/// it after. Played by deleting a rewritten chunk once the manifest is written: the push
/// checks its rewritten chunks `SWEEP_BOUND` after rewriting them and uploads it again.
#[test]
fn a_recorded_chunk_deleted_after_the_push_rewrote_it_is_uploaded_again() {
    recorded_chunk_deleted_after_rewrite(3 << 20, &["--no-pack"]);
}

/// The same race when the push packs: its chunks join packs, but a push this small (3 MiB, under
/// half a pack) stores them loose in the end, at the keys the gc record names, so they are
/// rewrites like any other (until 2026-12-04 the last-pack path left them out of the check).
#[test]
fn a_recorded_chunk_the_last_pack_stored_loose_is_uploaded_again() {
    recorded_chunk_deleted_after_rewrite(2 << 20, &[]);
}

fn recorded_chunk_deleted_after_rewrite(a_bytes: usize, extra: &[&str]) {
    let env = Env::new(Backend::Fs);
    let v2 = seed_v1_and_v2(&env, a_bytes, 1 << 20);
    let victim = chunk_files(&env)[0].clone();
    env.ok(&["rm", "m@1.0.0"]);
    let j = env.json(&["gc"]);
    assert_eq!(
        count(&j, "deleted"),
        0,
        "a first gc run deletes nothing: {j}"
    );

    let mut args = vec!["push", s(&v2), "--name", "m", "--version", "2.0.0"];
    args.extend(extra);
    let push = env
        .cmd()
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let manifest = env.path("vault/models/m/versions/2.0.0.json");
    wait_for("the manifest is written", || manifest.exists());
    fs::remove_file(&victim).unwrap();
    finish(push);
    assert!(
        victim.exists(),
        "the push did not upload the deleted chunk again"
    );
    env.ok(&["verify", "m@2.0.0"]);
}

/// A chunk lost from the vault comes back when the same content is pushed again (today the
/// push trusts the latest manifest's chunk list and the vault stays broken).
#[test]
fn pushing_the_same_content_again_heals_a_lost_chunk() {
    let env = Env::new(Backend::Fs);
    let src = env.path("src");
    write_file(&src.join("w.bin"), &noise(43, 3 << 20));
    env.ok(&[
        "push",
        s(&src),
        "--name",
        "m",
        "--version",
        "1.0.0",
        "--no-pack",
    ]);
    let lost = chunk_files(&env)[0].clone();
    fs::remove_file(&lost).unwrap();
    env.fails(5, &["verify", "m@1.0.0"]);

    env.ok(&[
        "push",
        s(&src),
        "--name",
        "m",
        "--version",
        "2.0.0",
        "--no-pack",
    ]);
    assert!(lost.exists(), "the lost chunk was not uploaded again");
    env.ok(&["verify", "m@1.0.0"]);
    env.ok(&["verify", "m@2.0.0"]);
}

/// A grace below the safe minimum (1 h) is refused without `--force` (for gc and for the gc
/// of prune, before prune removes anything), and warned about with it.
#[test]
fn a_short_grace_needs_force_and_warns() {
    let env = Env::new(Backend::Fs);
    let src = env.path("src");
    write_file(&src.join("w.bin"), &noise(44, 100_000));
    env.ok(&[
        "push",
        s(&src),
        "--name",
        "m",
        "--version",
        "1.0.0",
        "--no-pack",
    ]);
    env.ok(&[
        "push",
        s(&src),
        "--name",
        "m",
        "--version",
        "2.0.0",
        "--no-pack",
    ]);

    let err = env.fails(2, &["gc", "--grace", "10s"]);
    assert!(
        err.contains("safe minimum") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
    let err = env.fails(2, &["prune", "m", "--keep", "1", "--grace", "0s"]);
    assert!(err.contains("--force"), "{err}");
    env.ok(&["info", "m@1.0.0"]);

    let out = env.run(&["gc", "--grace", "10s", "--force"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("below the safe minimum"), "no warning: {err}");
    env.ok(&["gc", "--grace", "1h"]);
}

/// Two phases: the first run deletes nothing and writes a record; a run once the record is a
/// grace period old deletes the recorded chunks still unreferenced, except one written again
/// since (as a push relying on it does).
#[test]
fn gc_records_first_and_deletes_a_grace_period_later() {
    let env = Env::new(Backend::Fs);
    let (v1, v2) = (env.path("v1"), env.path("v2"));
    write_file(&v1.join("a.bin"), &noise(45, 2 << 20));
    write_file(&v2.join("c.bin"), &noise(46, 1 << 20));
    env.ok(&[
        "push",
        s(&v2),
        "--name",
        "m",
        "--version",
        "2.0.0",
        "--no-pack",
    ]);
    let kept = chunk_files(&env);
    env.ok(&[
        "push",
        s(&v1),
        "--name",
        "m",
        "--version",
        "1.0.0",
        "--no-pack",
    ]);
    let garbage: Vec<PathBuf> = chunk_files(&env)
        .into_iter()
        .filter(|f| !kept.contains(f))
        .collect();
    assert!(garbage.len() > 2);
    env.ok(&["rm", "m@1.0.0"]);
    backdate(&chunk_files(&env), 2 * DAY);

    let j = env.json(&["gc"]);
    assert_eq!(count(&j, "deleted"), 0, "{j}");
    assert_eq!(count(&j, "records_written"), 1, "{j}");
    assert_eq!(count(&j, "chunks_recorded"), garbage.len() as u64, "{j}");
    assert_eq!(records(&env).len(), 1);
    let record: Value = serde_json::from_slice(&fs::read(&records(&env)[0]).unwrap()).unwrap();
    assert_eq!(record["format"], 1, "{record}");
    assert_eq!(record["chunks"].as_array().unwrap().len(), garbage.len());
    // Again at once: the record is young; nothing deleted, nothing recorded twice.
    let j = env.json(&["gc"]);
    assert_eq!((count(&j, "deleted"), count(&j, "records_written")), (0, 0));
    assert_eq!(count(&j, "kept_pending"), garbage.len() as u64, "{j}");
    let j = env.json(&["gc", "--dry-run"]);
    assert_eq!(count(&j, "deleted"), 0, "{j}");

    backdate(&records(&env), 2 * DAY);
    let rewritten = &garbage[0];
    fs::write(rewritten, fs::read(rewritten).unwrap()).unwrap();
    let j = env.json(&["gc", "--dry-run"]);
    assert_eq!(count(&j, "deleted"), garbage.len() as u64 - 1, "{j}");
    assert_eq!(records(&env).len(), 1, "a dry run deletes nothing");
    let j = env.json(&["gc"]);
    assert_eq!(count(&j, "deleted"), garbage.len() as u64 - 1, "{j}");
    assert_eq!(count(&j, "kept_rewritten"), 1, "{j}");
    assert_eq!(count(&j, "records_swept"), 1, "{j}");
    let mut left = kept.clone();
    left.push(rewritten.clone());
    left.sort();
    let mut now = chunk_files(&env);
    now.sort();
    assert_eq!(now, left, "exactly the unreferenced, unrewritten chunks go");
    assert!(records(&env).is_empty());
    env.ok(&["verify"]);
}

/// A vault written by 0.1.0 (no `gc/` records) works with the two-phase gc.
#[test]
fn gc_works_on_a_format1_vault() {
    let env = Env::new(Backend::Fs);
    crate::common::unpack_format1_vault(&env);
    let j = env.json(&["gc", "--dry-run"]);
    assert_eq!(count(&j, "deleted"), 0, "{j}");
    assert!(count(&j, "referenced") > 0, "{j}");
    env.json(&["gc"]);
    env.ok(&["verify"]);
}

/// Sync honours the destination's gc records as a push does: v1's chunks are recorded on the
/// destination and the record is ripe when a sync of v2 (v1's content plus new bytes) from
/// another vault starts; a gc sweeping meanwhile must not leave the synced v2 broken. The
/// sync copies recorded chunks again even though the destination has them.
#[test]
fn gc_sweeping_while_a_sync_reuses_recorded_chunks() {
    let env = Env::new(Backend::Fs);
    let v2 = seed_v1_and_v2(&env, 3 << 20, 2 << 20);
    let other = env.path("other-vault");
    env.ok(&[
        "-r",
        s(&other),
        "push",
        s(&v2),
        "--name",
        "m",
        "--version",
        "2.0.0",
        "--no-pack",
    ]);
    env.ok(&["rm", "m@1.0.0"]);
    let j = env.json(&["gc"]);
    assert_eq!(records(&env).len(), 1, "{j}");
    backdate(&records(&env), 2 * DAY);

    let sync = env
        .cmd()
        .args(["sync", "--from", s(&other), "--to", s(&env.path("vault"))])
        .args(["m@2.0.0", "--limit-rate", "1M"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the sync copies a chunk", || has_fresh_chunk(&env));
    let j = env.json(&["gc"]);
    assert_eq!(count(&j, "records_swept"), 1, "{j}");
    finish(sync);
    env.ok(&["verify", "m@2.0.0"]);
    let out = env.path("out");
    env.ok(&["pull", "m@2.0.0", "--to", s(&out)]);
    crate::common::assert_same_tree(&v2, &out);
}

/// A sync reads the destination's gc records again for every version it copies (until
/// 2026-12-07 it read them once per run): v1's chunks are recorded on the destination while
/// the sync copies an unrelated version, and the record is ripe when the sync moves on to v2
/// (v1's content plus new bytes); a sweep then, after v2's copy has looked at v1's chunks and
/// before its manifest, must not leave the synced v2 broken.
#[test]
fn gc_recording_during_a_long_sync_is_seen_by_its_later_versions() {
    let env = Env::new(Backend::Fs);
    let v2 = seed_v1_and_v2(&env, 3 << 20, 2 << 20);
    env.ok(&["rm", "m@1.0.0"]);
    let other = env.path("other-vault");
    let first = env.path("first");
    write_file(&first.join("c.bin"), &noise(45, 3 << 20));
    for (dir, version) in [(&first, "1.5.0"), (&v2, "2.0.0")] {
        let to = ["-r", s(&other), "push", s(dir), "--name", "m", "--no-pack"];
        env.ok(&[&to[..], &["--version", version]].concat());
    }
    let sync = env
        .cmd()
        .args(["sync", "--from", s(&other), "--to", s(&env.path("vault"))])
        .args(["m", "--limit-rate", "1M"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // During the copy of 1.5.0: v1's old chunks are recorded, and the record made ripe.
    wait_for("the sync copies a chunk", || has_fresh_chunk(&env));
    let j = env.json(&["gc"]);
    assert_eq!(count(&j, "records_written"), 1, "{j}");
    backdate(&records(&env), 2 * DAY);
    let first_manifest = env.path("vault/models/m/versions/1.5.0.json");
    assert!(!first_manifest.exists(), "1.5.0 was copied before gc ran");
    // During the copy of 2.0.0 (its 2 MiB of new bytes take 2 s at 1M): a sweep.
    wait_for("1.5.0 is published", || first_manifest.exists());
    std::thread::sleep(Duration::from_millis(500));
    let j = env.json(&["gc"]);
    assert_eq!(count(&j, "records_swept"), 1, "{j}");
    finish(sync);
    env.ok(&["verify", "m@2.0.0"]);
    let out = env.path("out");
    env.ok(&["pull", "m@2.0.0", "--to", s(&out)]);
    crate::common::assert_same_tree(&v2, &out);
}
