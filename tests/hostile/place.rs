//! Pull targets and the local cache as attack surface: state records planted by a hostile
//! manifest, file modes of copies, damaged cache blobs, symlinks swapped in mid-pull, cache
//! prune racing pulls, and the odd names and layouts of issue 11 item 10.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Backend, Env, assert_same_tree, noise, write_file};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Pushes directory `src` as `name@version`.
fn push(env: &Env, src: &Path, name: &str, version: &str) {
    env.ok(&["push", s(src), "--name", name, "--version", version]);
}

/// Writes a manifest for `name@version` into the vault with `files[0].path` replaced (the
/// checksum kept consistent, so only path rules can refuse it).
fn plant_manifest(env: &Env, from: &str, name: &str, version: &str, path: &str) {
    let key = format!("models/{name}/versions/{from}.json");
    let mut m: Value = serde_json::from_slice(&env.read_object(&key)).unwrap();
    m["files"][0]["path"] = Value::from(path);
    m["version"] = Value::from(version);
    let files: Vec<mvault::manifest::FileEntry> =
        serde_json::from_value(m["files"].clone()).unwrap();
    m["checksum"] = Value::from(mvault::manifest::version_checksum(&files).to_hex());
    env.write_object(
        &format!("models/{name}/versions/{version}.json"),
        serde_json::to_vec(&m).unwrap(),
    );
}

fn mtime_ns(p: &Path) -> i128 {
    let m = fs::symlink_metadata(p).unwrap();
    m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128
}

/// Item 1: a state record listing `../victim` (planted, as a hostile manifest could before
/// `.mvault` was reserved) must not make a pull delete a file outside the target.
#[test]
fn state_record_cannot_delete_outside_target() {
    let env = Env::new(Backend::Fs);
    let src = env.path("src");
    write_file(&src.join("a.bin"), &noise(1, 10_000));
    push(&env, &src, "m", "1.0.0");
    write_file(&src.join("a.bin"), &noise(2, 10_000));
    push(&env, &src, "m", "2.0.0");
    let target = env.path("work/target");
    env.ok(&["pull", "m@1.0.0", "--to", s(&target)]);

    let victim = env.path("work/victim.txt");
    write_file(&victim, b"precious");
    let abs_victim = env.path("abs-victim.txt");
    write_file(&abs_victim, b"precious too");
    let record = target.join(".mvault/m.json");
    let mut state: Value = serde_json::from_slice(&fs::read(&record).unwrap()).unwrap();
    for (p, file) in [("../victim.txt", &victim), (s(&abs_victim), &abs_victim)] {
        state["files"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "path": p, "size": fs::metadata(file).unwrap().len(),
                "mtime_ns": mtime_ns(file) as i64,
                "digest": "00".repeat(32),
            }));
    }
    fs::write(&record, serde_json::to_vec(&state).unwrap()).unwrap();
    env.ok(&["pull", "m@2.0.0", "--to", s(&target)]);
    assert_eq!(
        fs::read(&victim).unwrap(),
        b"precious",
        "file outside the target deleted"
    );
    assert_eq!(fs::read(&abs_victim).unwrap(), b"precious too");
    assert_eq!(fs::read(target.join("a.bin")).unwrap(), noise(2, 10_000));
}

/// Item 1: `.mvault` is reserved: an integrity error in a manifest (nothing is written),
/// refused at push as a file name (exit 2).
#[test]
fn mvault_segment_is_reserved() {
    let env = Env::new(Backend::Fs);
    let src = env.path("src");
    write_file(&src.join("a.bin"), &noise(3, 1000));
    push(&env, &src, "m", "1.0.0");
    plant_manifest(&env, "1.0.0", "m", "1.0.1", ".mvault/m.json");
    let target = env.path("t");
    let err = env.fails(5, &["pull", "m@1.0.1", "--to", s(&target)]);
    assert!(err.contains(".mvault"), "{err}");
    assert!(!target.join(".mvault").exists(), "record planted");

    // Item 10: a top-level file named `.mvault` cannot be pushed (it could never be pulled).
    let odd = env.path("odd");
    write_file(&odd.join(".mvault"), b"x");
    let err = env.fails(2, &["push", s(&odd), "--name", "odd", "--version", "1.0.0"]);
    assert!(err.contains("reserved"), "{err}");
    let lone = env.path("lone/.mvault");
    write_file(&lone, b"x");
    env.fails(
        2,
        &["push", s(&lone), "--name", "odd", "--version", "1.0.0"],
    );

    // A directory that was itself a pull target pushes without its `.mvault` records.
    let pulled = env.path("pulled");
    env.ok(&["pull", "m@1.0.0", "--to", s(&pulled)]);
    push(&env, &pulled, "again", "1.0.0");
    let info = env.json(&["info", "again@1.0.0"]);
    let paths: Vec<&str> = info["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["a.bin"]);
}

/// Runs `mvault ARGS` under `sh` with the given umask.
fn run_with_umask(env: &Env, umask: &str, args: &[&str]) -> std::process::Output {
    let inner = env.cmd();
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(inner.get_program())
        .args(args)
        .env_clear()
        .current_dir(inner.get_current_dir().unwrap());
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c.output().unwrap()
}

/// Item 2: copies get the process umask (like `cp`), never world-writable.
#[test]
fn copies_honour_the_umask() {
    let env = Env::new(Backend::Fs);
    let src = env.path("src");
    write_file(&src.join("w/a.bin"), &noise(4, 300_000));
    push(&env, &src, "m", "1.0.0");
    for (umask, want) in [("027", 0o640), ("022", 0o644)] {
        let target = env.path(&format!("t{umask}"));
        let out = run_with_umask(
            &env,
            umask,
            &["pull", "m@1.0.0", "--to", s(&target), "--link", "copy"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mode = fs::metadata(target.join("w/a.bin"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, want, "umask {umask}: mode {mode:o}");
        assert_eq!(fs::read(target.join("w/a.bin")).unwrap(), noise(4, 300_000));
    }
}

/// The single cached blob of the file `name` pulled into `target` (hard links share it).
fn blob_of(env: &Env, target: &Path, name: &str) -> PathBuf {
    let ino = fs::metadata(target.join(name)).unwrap().ino();
    crate::common::walk(&env.cache_dir().join("blobs"))
        .into_iter()
        .find(|p| fs::metadata(p).unwrap().ino() == ino)
        .expect("target is a hard link of a cached blob")
}

/// Edits a hard-linked target in place, as root or an in-place tool would.
fn damage_in_place(file: &Path) {
    let mut perm = fs::metadata(file).unwrap().permissions();
    perm.set_mode(0o644);
    fs::set_permissions(file, perm).unwrap();
    let mut data = fs::read(file).unwrap();
    data[100] ^= 0xff;
    let mut f = fs::OpenOptions::new().write(true).open(file).unwrap();
    std::io::Write::write_all(&mut f, &data).unwrap();
}

/// Item 3: a cache blob damaged through a hard-linked target is never placed into a new
/// target (with or without `--verify`): it is re-hashed on placement and fetched again.
#[test]
fn damaged_cache_blob_is_not_placed() {
    let env = Env::new(Backend::Fs);
    let src = env.path("src");
    let data = noise(5, 3_000_000);
    write_file(&src.join("weights.bin"), &data);
    push(&env, &src, "m", "1.0.0");
    let first = env.path("first");
    env.ok(&["pull", "m@1.0.0", "--to", s(&first)]);
    let blob = blob_of(&env, &first, "weights.bin");
    damage_in_place(&first.join("weights.bin"));
    assert_ne!(fs::read(&blob).unwrap(), data, "the edit reached the cache");

    // Offline, the damage cannot be repaired: refused, nothing placed.
    let off = env.path("offline");
    let out = env.run(&["pull", "m@1.0.0", "--to", s(&off), "--offline"]);
    assert!(!out.status.success(), "damaged blob placed offline");
    assert!(!off.join("weights.bin").exists());

    for (dir, extra) in [("second", None), ("third", Some("--verify"))] {
        let t = env.path(dir);
        let mut args = vec!["pull", "m@1.0.0", "--to", s(&t)];
        args.extend(extra);
        let out = env.run(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            fs::read(t.join("weights.bin")).unwrap() == data,
            "{dir}: damaged copy"
        );
    }
    // The cache was repaired, so the next fresh pull is right offline too.
    let again = env.path("again");
    env.ok(&["pull", "m@1.0.0", "--to", s(&again), "--offline"]);
    assert!(fs::read(again.join("weights.bin")).unwrap() == data);

    // `--verify` into the damaged target itself repairs it (and not through the cache).
    env.ok(&["pull", "m@1.0.0", "--to", s(&first), "--verify"]);
    assert!(fs::read(first.join("weights.bin")).unwrap() == data);
}

/// Item 8: `cache prune` never deletes a blob a running pull holds (shared lock taken from
/// finding the blob until it is placed), even when that pull's manifest is not cached yet.
#[test]
fn cache_prune_spares_blobs_held_by_pulls() {
    let env = Env::new(Backend::Fs);
    let src = env.path("src");
    write_file(&src.join("a.bin"), &noise(6, 500_000));
    push(&env, &src, "m", "1.0.0");
    let t = env.path("t");
    env.ok(&["pull", "m@1.0.0", "--to", s(&t)]);
    let blob = blob_of(&env, &t, "a.bin");
    // Forget the version (as if its manifest were not cached yet), then hold the blob the
    // way a pull placing it does.
    for p in crate::common::walk(&env.cache_dir().join("manifests")) {
        fs::remove_file(p).unwrap();
    }
    let hex = blob.file_name().unwrap().to_str().unwrap().to_string();
    let lock_path = env
        .cache_dir()
        .join(format!("locks/{}/{hex}.lock", &hex[..2]));
    fs::create_dir_all(lock_path.parent().unwrap()).unwrap();
    let lock = fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap();
    lock.lock_shared().unwrap();
    env.ok(&["cache", "prune", "--max-size", "0"]);
    assert!(blob.exists(), "prune deleted a blob a pull holds");
    drop(lock);
    env.ok(&["cache", "prune", "--max-size", "0"]);
    assert!(!blob.exists(), "an unheld, unreferenced blob is pruned");
}

/// Item 8: pulls racing `cache clear` in a loop all succeed with the right bytes.
#[test]
fn pulls_survive_concurrent_cache_clear() {
    let env = Env::new(Backend::Fs);
    let src = env.path("src");
    for i in 0..6 {
        write_file(&src.join(format!("f{i}.bin")), &noise(10 + i, 400_000));
    }
    push(&env, &src, "m", "1.0.0");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clearer = {
        let stop = stop.clone();
        let mut cmd = env.cmd();
        cmd.args(["cache", "clear"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = cmd.status();
            }
        })
    };
    for round in 0..8 {
        let t = env.path(&format!("t{round}"));
        let out = env.run(&["pull", "m@1.0.0", "--to", s(&t)]);
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_same_tree(&src, &t);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    clearer.join().unwrap();
}

/// Waits until the pull of `child` is downloading (a temporary file in the cache).
fn wait_for_download(env: &Env, child: &mut std::process::Child) {
    let started = Instant::now();
    while crate::common::walk(&env.cache_dir().join("tmp")).is_empty() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "pull ended before downloading"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "pull never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Item 9: a symlink planted in the target while the pull downloads is not followed.
#[test]
fn symlink_swapped_in_mid_pull_is_not_followed() {
    let env = Env::new(Backend::Fs);
    let src = env.path("src");
    write_file(&src.join("weights/model.bin"), &noise(7, 3 << 20));
    push(&env, &src, "m", "1.0.0");
    let target = env.path("target");
    let elsewhere = env.path("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    let mut child = env
        .cmd()
        .args(["pull", "m@1.0.0", "--to", s(&target), "--limit-rate", "1M"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_download(&env, &mut child);
    std::os::unix::fs::symlink(&elsewhere, target.join("weights")).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "a file was written through the symlink"
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("symlink"));
    // Once the symlink is gone, the same pull completes.
    fs::remove_file(target.join("weights")).unwrap();
    env.ok(&["pull", "m@1.0.0", "--to", s(&target), "--offline"]);
    assert_same_tree(&src, &target);
}

/// Item 9: a `.mvault` that is a symlink is refused (records never land elsewhere).
#[test]
fn symlinked_records_dir_is_refused() {
    let env = Env::new(Backend::Fs);
    let src = env.path("src");
    write_file(&src.join("a.bin"), &noise(8, 1000));
    push(&env, &src, "m", "1.0.0");
    let target = env.path("target");
    let elsewhere = env.path("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    fs::create_dir_all(&target).unwrap();
    std::os::unix::fs::symlink(&elsewhere, target.join(".mvault")).unwrap();
    let err = env.fails(2, &["pull", "m@1.0.0", "--to", s(&target)]);
    assert!(err.contains("symlink"), "{err}");
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
}

/// Item 10: names of 239-255 bytes round-trip (the temporary name is short).
#[test]
fn long_file_names_pull() {
    let env = Env::new(Backend::Fs);
    let src = env.path("src");
    for len in [239, 250, 255] {
        write_file(&src.join("n".repeat(len)), &noise(len as u64, 2000));
    }
    push(&env, &src, "m", "1.0.0");
    let t = env.path("t");
    env.ok(&["pull", "m@1.0.0", "--to", s(&t)]);
    assert_same_tree(&src, &t);
    let c = env.path("c");
    env.ok(&["pull", "m@1.0.0", "--to", s(&c), "--link", "copy"]);
    assert_same_tree(&src, &c);
}

/// Item 10: FIFOs (and other special files) inside a pushed directory are refused.
#[test]
fn special_files_in_pushed_directory_are_refused() {
    let env = Env::new(Backend::Fs);
    let src = env.path("src");
    write_file(&src.join("a.bin"), b"data");
    let fifo = src.join("pipe");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    let err = env.fails(2, &["push", s(&src), "--name", "m", "--version", "1.0.0"]);
    assert!(err.contains("pipe") && err.contains("FIFO"), "{err}");
    env.fails(3, &["versions", "m"]);
}

/// Item 10: a target switches between versions where `a` becomes `a/b` and back.
#[test]
fn file_becomes_directory_between_versions() {
    let env = Env::new(Backend::Fs);
    let v1 = env.path("v1");
    write_file(&v1.join("a"), b"file a");
    push(&env, &v1, "m", "1.0.0");
    let v2 = env.path("v2");
    write_file(&v2.join("a/b"), b"file a/b");
    push(&env, &v2, "m", "2.0.0");
    let t = env.path("t");
    for (v, src) in [("1.0.0", &v1), ("2.0.0", &v2), ("1.0.0", &v1)] {
        env.ok(&["pull", &format!("m@{v}"), "--to", s(&t)]);
        assert_same_tree(src, &t);
    }
}

/// Item 10: a user's own file of the same name is not overwritten silently: refused with
/// exit 4 before anything is downloaded, unless `--force`; an identical one is adopted.
#[test]
fn users_own_file_is_not_overwritten() {
    let env = Env::new(Backend::Fs);
    let src = env.path("src");
    write_file(&src.join("model.bin"), &noise(9, 100_000));
    write_file(&src.join("config.json"), b"{}");
    push(&env, &src, "m", "1.0.0");
    let t = env.path("t");
    write_file(&t.join("model.bin"), b"my own notes");
    fs::copy(src.join("config.json"), t.join("config.json")).unwrap();
    let err = env.fails(4, &["pull", "m@1.0.0", "--to", s(&t)]);
    assert!(
        err.contains("model.bin") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(fs::read(t.join("model.bin")).unwrap(), b"my own notes");
    assert!(!t.join(".mvault/m.json").exists(), "nothing recorded");
    // A symlink of the user's is not replaced either.
    let link_t = env.path("lt");
    fs::create_dir_all(&link_t).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", link_t.join("model.bin")).unwrap();
    env.fails(2, &["pull", "m@1.0.0", "--to", s(&link_t)]);
    assert!(
        fs::symlink_metadata(link_t.join("model.bin"))
            .unwrap()
            .is_symlink()
    );

    env.ok(&["pull", "m@1.0.0", "--to", s(&t), "--force"]);
    assert_same_tree(&src, &t);
    // Files mvault wrote and the user changed are repaired without --force (documented).
    fs::remove_file(t.join("config.json")).unwrap();
    write_file(&t.join("config.json"), b"{\"edited\": true}");
    env.ok(&["pull", "m@1.0.0", "--to", s(&t)]);
    assert_same_tree(&src, &t);
}

/// The 0.1.0 fixture vault (format 1) still pulls byte-exact, and its records read.
#[test]
fn format1_fixture_vault_reads() {
    let env = Env::new(Backend::Fs);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    crate::common::unpack_format1_vault(&env);
    let vault = env.path("vault");
    let out = env.path("out");
    fn with<'a>(vault: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
        [&["-r", vault][..], rest].concat()
    }
    let v = s(&vault);
    env.ok(&with(v, &["pull", "fixture@1.1.0", "--to", s(&out)]));
    let b3 = fs::read_to_string(fixtures.join("format1-v1.1.0.b3")).unwrap();
    for line in b3.lines().filter(|l| !l.trim().is_empty()) {
        let (hex, name) = line.split_once("  ").unwrap();
        let data = fs::read(out.join(name.trim())).unwrap();
        assert_eq!(blake3::hash(&data).to_hex().as_str(), hex, "{name}");
    }
    env.ok(&with(v, &["verify", "fixture"]));
    env.ok(&with(v, &["versions", "fixture"]));
    env.ok(&with(v, &["info", "fixture@1.0.0"]));
    env.ok(&with(v, &["alias", "ls", "fixture"]));
    env.ok(&with(v, &["gc", "--dry-run"]));
}

/// Pushes v1 (`config.json`, `readme.txt`, `sub/w.bin`) and v2 (`config.json`, and `sub` a
/// file) of model `m`; returns their source directories.
fn push_sub_versions(env: &Env) -> (PathBuf, PathBuf) {
    let v1 = env.path("v1");
    write_file(&v1.join("config.json"), b"{\"a\":1}");
    write_file(&v1.join("readme.txt"), b"hello");
    write_file(&v1.join("sub/w.bin"), &noise(20, 300_000));
    push(env, &v1, "m", "1.0.0");
    let v2 = env.path("v2");
    write_file(&v2.join("config.json"), b"{\"a\":1}");
    write_file(&v2.join("sub"), &noise(21, 1000));
    push(env, &v2, "m", "2.0.0");
    (v1, v2)
}

/// The version a target's state record of `m` names.
fn recorded_version(target: &Path) -> String {
    let rec: Value =
        serde_json::from_slice(&fs::read(target.join(".mvault/m.json")).unwrap()).unwrap();
    rec["version"].as_str().unwrap().to_string()
}

/// Review finding 1: a directory of the previous version that holds a foreign entry (a
/// user's file, an empty directory, a changed file) where the new version has a file is
/// refused in the plan (exit 2, naming it) before anything is deleted or placed; so is an
/// old file the user replaced where the new version needs a directory.
#[test]
fn version_switch_refuses_foreign_entries_before_touching_the_target() {
    let env = Env::new(Backend::Fs);
    let (v1, v2) = push_sub_versions(&env);
    let t = env.path("t");
    env.ok(&["pull", "m@1.0.0", "--to", s(&t)]);
    let user = t.join("sub/user.txt");
    write_file(&user, b"user");
    let err = env.fails(2, &["pull", "m@2.0.0", "--to", s(&t)]);
    assert!(
        err.contains("sub/user.txt") && err.contains("move"),
        "{err}"
    );
    assert!(
        t.join("readme.txt").exists() && t.join("sub/w.bin").exists(),
        "deleted"
    );
    assert_eq!(recorded_version(&t), "1.0.0");
    fs::remove_file(&user).unwrap();
    fs::create_dir(t.join("sub/empty")).unwrap();
    let err = env.fails(2, &["pull", "m@2.0.0", "--to", s(&t)]);
    assert!(err.contains("sub/empty"), "{err}");
    fs::remove_dir(t.join("sub/empty")).unwrap();
    env.ok(&["pull", "m@2.0.0", "--to", s(&t)]);
    assert_same_tree(&v2, &t);

    // Back to v1, with the old file `sub` replaced by the user's own.
    fs::remove_file(t.join("sub")).unwrap();
    write_file(&t.join("sub"), b"mine");
    let err = env.fails(2, &["pull", "m@1.0.0", "--to", s(&t)]);
    assert!(err.contains("/sub:") && !err.contains("--force"), "{err}");
    assert!(!t.join("readme.txt").exists(), "placed before refusing");
    assert_eq!(fs::read(t.join("sub")).unwrap(), b"mine");
    fs::remove_file(t.join("sub")).unwrap();
    env.ok(&["pull", "m@1.0.0", "--to", s(&t)]);
    assert_same_tree(&v1, &t);
}

/// Review finding 7: a symlink where the model needs a directory is named and refused in
/// the plan, `--force` or not (it cannot help), before anything is placed.
#[test]
fn symlinked_ancestor_is_refused_in_the_plan() {
    let env = Env::new(Backend::Fs);
    let (v1, _) = push_sub_versions(&env);
    let t = env.path("t");
    let outside = env.path("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::create_dir_all(&t).unwrap();
    std::os::unix::fs::symlink(&outside, t.join("sub")).unwrap();
    for force in [false, true] {
        let mut args = vec!["pull", "m@1.0.0", "--to", s(&t)];
        if force {
            args.push("--force");
        }
        let err = env.fails(2, &args);
        assert!(
            err.contains("/sub:") && err.contains("symlink") && !err.contains("--force"),
            "{err}"
        );
        assert!(!t.join("readme.txt").exists(), "placed before refusing");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    }
    fs::remove_file(t.join("sub")).unwrap();
    env.ok(&["pull", "m@1.0.0", "--to", s(&t)]);
    assert_same_tree(&v1, &t);
}

/// Review finding 2: a second pull into the same target waits for the first (and says
/// so), so the target ends as exactly the version pulled last; `run` refuses two selectors
/// of one model.
#[test]
fn pulls_into_one_target_take_turns() {
    let env = Env::new(Backend::Fs);
    let v1 = env.path("v1");
    write_file(&v1.join("a.bin"), &noise(30, 3 << 20));
    write_file(&v1.join("small.txt"), b"x");
    push(&env, &v1, "m", "1.0.0");
    let v2 = env.path("v2");
    write_file(&v2.join("a.bin"), &noise(31, 3 << 20));
    write_file(&v2.join("other.txt"), b"y");
    push(&env, &v2, "m", "2.0.0");
    let t = env.path("t");
    let spawn = |v: &str| {
        env.cmd()
            .args(["pull", v, "--to", s(&t), "--limit-rate", "2M"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = spawn("m@1.0.0");
    wait_for_download(&env, &mut first);
    let second = spawn("m@2.0.0");
    let (a, b) = (
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    );
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let waited = String::from_utf8_lossy(&b.stderr);
    assert!(b.status.success(), "{waited}");
    assert!(waited.contains("waiting for another pull"), "{waited}");
    assert_same_tree(&v2, &t);
    assert_eq!(recorded_version(&t), "2.0.0");

    let runs = env.path("runs");
    let err = env.fails(2, &["run", "--to", s(&runs), "m@1.0.0", "m@2.0.0"]);
    assert!(err.contains("m@1.0.0") && err.contains("m@2.0.0"), "{err}");
    assert!(!runs.join("m").exists());
}

/// The cached manifest of `m@1.0.0` (the only one).
fn cached_manifest(env: &Env) -> PathBuf {
    crate::common::walk(&env.cache_dir().join("manifests"))
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a cached manifest")
}

/// Runs `mvault ARGS`, killing it (and failing) if it takes longer than 30 s.
fn run_bounded(env: &Env, args: &[&str]) -> std::process::Output {
    let mut child = env
        .cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("mvault {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Review finding 3: a cached manifest that is a FIFO or a symlink to `/dev/zero` neither
/// hangs a pull nor eats memory: it counts as absent and is fetched again.
#[test]
fn special_cached_manifest_is_fetched_again() {
    let env = Env::new(Backend::Fs);
    let src = env.path("src");
    write_file(&src.join("a.bin"), &noise(40, 10_000));
    push(&env, &src, "m", "1.0.0");
    env.ok(&["pull", "m@1.0.0", "--to", s(&env.path("t0"))]);
    let cm = cached_manifest(&env);
    for (i, plant) in ["fifo", "zero"].into_iter().enumerate() {
        fs::remove_file(&cm).unwrap();
        if plant == "fifo" {
            assert!(Command::new("mkfifo").arg(&cm).status().unwrap().success());
        } else {
            std::os::unix::fs::symlink("/dev/zero", &cm).unwrap();
        }
        let t = env.path(&format!("t{}", i + 1));
        let out = run_bounded(&env, &["pull", "m@1.0.0", "--to", s(&t)]);
        assert!(
            out.status.success(),
            "{plant}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_same_tree(&src, &t);
        assert!(fs::symlink_metadata(&cm).unwrap().is_file(), "{plant} kept");
    }
}

/// Review finding 4: a cached blob replaced by a symlink (to a file of the right size) is
/// not trusted: the pull fetches the blob again and places the right bytes.
#[test]
fn symlinked_cache_blob_is_fetched_again() {
    let env = Env::new(Backend::Fs);
    let src = env.path("src");
    let data = noise(41, 300_000);
    write_file(&src.join("w.bin"), &data);
    push(&env, &src, "m", "1.0.0");
    let first = env.path("first");
    env.ok(&["pull", "m@1.0.0", "--to", s(&first)]);
    let blob = blob_of(&env, &first, "w.bin");
    let fake = env.path("fake.bin");
    write_file(&fake, &noise(42, 300_000));
    for link in ["auto", "copy"] {
        fs::remove_file(&blob).unwrap();
        std::os::unix::fs::symlink(&fake, &blob).unwrap();
        let t = env.path(link);
        env.ok(&["pull", "m@1.0.0", "--to", s(&t), "--link", link]);
        assert!(fs::read(t.join("w.bin")).unwrap() == data, "{link}");
    }
    assert!(fs::symlink_metadata(&blob).unwrap().is_file(), "not healed");
    assert_eq!(fs::read(&fake).unwrap(), noise(42, 300_000));
}

/// Review finding 5: placement temporaries a killed pull left (exact name pattern, regular
/// files) are removed by the next pull into the target, and a push of the directory skips
/// them; a user's file of a similar name is left alone.
#[test]
fn stale_placement_temps_are_swept_and_not_pushed() {
    let env = Env::new(Backend::Fs);
    let src = env.path("src");
    write_file(&src.join("a.bin"), &noise(43, 10_000));
    write_file(&src.join("d/b.bin"), &noise(44, 10_000));
    push(&env, &src, "m", "1.0.0");
    let t = env.path("t");
    let stale = [
        t.join(".mvault-0123abcd.tmp"),
        t.join("d/.mvault-deadbeef.tmp"),
    ];
    for p in &stale {
        write_file(p, &noise(45, 5000));
    }
    let similar = t.join(".mvault-0123ABCD.tmp");
    write_file(&similar, b"mine");
    let pushed = env.path("pushed");
    fs::create_dir_all(&pushed).unwrap();
    fs::copy(src.join("a.bin"), pushed.join("a.bin")).unwrap();
    fs::copy(&stale[0], pushed.join(".mvault-0123abcd.tmp")).unwrap();
    push(&env, &pushed, "p", "1.0.0");
    let info = env.json(&["info", "p@1.0.0"]);
    assert_eq!(info["files"].as_array().unwrap().len(), 1, "{info}");

    env.ok(&["pull", "m@1.0.0", "--to", s(&t)]);
    for p in &stale {
        assert!(!p.exists(), "{} kept", p.display());
    }
    assert_eq!(fs::read(&similar).unwrap(), b"mine");
}

/// Review finding 6: a state record that is a symlink is ignored with a warning (files are
/// checked by content, the record rewritten by rename); what it points to is untouched.
#[test]
fn symlinked_state_record_is_ignored() {
    let env = Env::new(Backend::Fs);
    let src = env.path("src");
    write_file(&src.join("a.bin"), &noise(46, 10_000));
    push(&env, &src, "m", "1.0.0");
    let outside = env.path("outside.txt");
    write_file(&outside, b"secret");
    let t = env.path("t");
    fs::create_dir_all(t.join(".mvault")).unwrap();
    std::os::unix::fs::symlink(&outside, t.join(".mvault/m.json")).unwrap();
    let out = env.run(&["pull", "m@1.0.0", "--to", s(&t)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("damaged"), "{err}");
    assert_same_tree(&src, &t);
    assert_eq!(fs::read(&outside).unwrap(), b"secret");
    assert!(
        fs::symlink_metadata(t.join(".mvault/m.json"))
            .unwrap()
            .is_file()
    );
}

/// Review finding: `pull --to FILE` names the file and the remedy (exit 2), and leaves it.
#[test]
fn pull_to_a_file_is_refused_naming_it() {
    let env = Env::new(Backend::Fs);
    let src = env.path("src");
    write_file(&src.join("a.bin"), &noise(47, 1000));
    push(&env, &src, "m", "1.0.0");
    let file = env.path("taken");
    write_file(&file, b"mine");
    let err = env.fails(2, &["pull", "m@1.0.0", "--to", s(&file)]);
    assert!(
        err.contains("taken: exists and is not a directory"),
        "{err}"
    );
    assert_eq!(fs::read(&file).unwrap(), b"mine");
}

/// A directory that the new version has as a file is cleared even when a pull killed while
/// placing into it left a temporary there: the temp is swept, not taken for a user's file.
#[test]
fn a_killed_pulls_temp_does_not_block_a_directory_becoming_a_file() {
    let env = Env::new(Backend::Fs);
    let v1 = env.path("v1");
    write_file(&v1.join("d/b.bin"), &noise(48, 10_000));
    push(&env, &v1, "m", "1.0.0");
    let v2 = env.path("v2");
    write_file(&v2.join("d"), &noise(49, 10_000));
    push(&env, &v2, "m", "2.0.0");
    let t = env.path("t");
    env.ok(&["pull", "m@1.0.0", "--to", s(&t)]);
    write_file(&t.join("d/.mvault-0123abcd.tmp"), &noise(50, 5000));
    env.ok(&["pull", "m@2.0.0", "--to", s(&t)]);
    assert_same_tree(&v2, &t);

    // A temp in a directory no file of the previous version is in (one the sweep does not
    // reach) is refused in the plan, before anything is deleted.
    let t3 = env.path("t3");
    env.ok(&["pull", "m@1.0.0", "--to", s(&t3)]);
    write_file(&t3.join("d/sub/.mvault-0123abcd.tmp"), &noise(51, 5000));
    let err = env.fails(2, &["pull", "m@2.0.0", "--to", s(&t3)]);
    assert!(err.contains(".mvault-0123abcd.tmp"), "{err}");
    assert_eq!(fs::read(t3.join("d/b.bin")).unwrap(), noise(48, 10_000));

    // A user's file there still refuses the pull, naming it (exit 2).
    let t2 = env.path("t2");
    env.ok(&["pull", "m@1.0.0", "--to", s(&t2)]);
    write_file(&t2.join("d/notes.txt"), b"mine");
    let err = env.fails(2, &["pull", "m@2.0.0", "--to", s(&t2)]);
    assert!(err.contains("notes.txt"), "{err}");
    assert_eq!(fs::read(t2.join("d/notes.txt")).unwrap(), b"mine");
}
