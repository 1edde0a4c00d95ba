//! The local cache, end to end with the real binary: warm pulls that cost no transfer (and no
//! request at all for a pinned version), `--offline`, repair of damaged targets (`--verify` for
//! same-size same-mtime edits), next-version pulls that fetch only changed chunks, many
//! concurrent pullers sharing one cache and one target, `kill -9` in the middle of a pull,
//! `cache ls|prune|clear` (LRU, in-use versions, age) and `mvault run` (container entrypoint).
//!
//! Tests named `s3_*` need moto (run them through `scripts/test.sh --test e2e -- cache::`); the
//! others use the fs backend only.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::common::{Backend, Env, assert_same_tree, noise, s, walk, write_file};
use serde_json::Value;

const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Helpers

/// Writes a model's files under `env.path(dir)` and returns that directory.
fn make_model(env: &Env, dir: &str, files: &[(&str, Vec<u8>)]) -> PathBuf {
    let root = env.path(dir);
    for (rel, data) in files {
        write_file(&root.join(rel), data);
    }
    root
}

/// `mvault push DIR --name NAME --version VERSION`.
fn push(env: &Env, dir: &Path, name: &str, version: &str) {
    env.ok(&[
        "push",
        dir.to_str().unwrap(),
        "--name",
        name,
        "--version",
        version,
    ]);
}

/// `mvault --json pull ARGS...` parsed.
fn pull_json(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["pull"];
    all.extend_from_slice(args);
    env.json(&all)
}

/// `summary.KEY` of a pull's JSON output.
fn sum(v: &Value, key: &str) -> u64 {
    v["summary"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("summary.{key} missing or not a number in {v}"))
}

/// Total chunks of a version according to `info --json` (per-file counts, summed).
fn chunk_count(env: &Env, model: &str) -> u64 {
    let info = env.json(&["info", model]);
    info["files"]
        .as_array()
        .expect("info files")
        .iter()
        .map(|f| f["chunks"].as_u64().expect("files[].chunks"))
        .sum()
}

/// The cached manifest file of `name@version` (unique in this test's cache).
fn cached_manifest(env: &Env, name: &str, version: &str) -> PathBuf {
    let tail = Path::new(name).join(format!("{version}.json"));
    let found: Vec<PathBuf> = walk(&env.cache_dir().join("manifests"))
        .into_iter()
        .filter(|p| p.ends_with(&tail))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "cached manifest of {name}@{version}: {found:?}"
    );
    found.into_iter().next().unwrap()
}

/// The pin file of `name@version` (created by the first pull of that version).
fn pin_file(env: &Env, name: &str, version: &str) -> Option<PathBuf> {
    let suffix = format!("-{name}-{version}.lock");
    walk(&env.cache_dir().join("locks").join("pins"))
        .into_iter()
        .find(|p| p.file_name().unwrap().to_str().unwrap().ends_with(&suffix))
}

/// Every file under the cache's `blobs/` hashes to its name (nothing partial is trusted).
fn assert_blobs_intact(env: &Env) {
    for p in walk(&env.cache_dir().join("blobs")) {
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        let got = blake3::hash(&fs::read(&p).unwrap()).to_hex().to_string();
        assert_eq!(got, name, "blob {} does not hash to its name", p.display());
    }
}

/// No temporary file of a pull (`.NAME.mvault-XXXXXXXX`) is left in a target directory.
fn assert_no_litter(dir: &Path) {
    let litter: Vec<PathBuf> = walk(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .contains(".mvault-")
        })
        .collect();
    assert!(
        litter.is_empty(),
        "temporary files left in the target: {litter:?}"
    );
}

fn blob_files(env: &Env) -> Vec<PathBuf> {
    walk(&env.cache_dir().join("blobs"))
}

fn blob_bytes(env: &Env) -> u64 {
    blob_files(env)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum()
}

/// Makes a file writable (targets are hard links to read-only blobs) and returns it opened
/// for writing, without truncation: the edit hits the very inode the pull placed.
fn open_in_place(p: &Path) -> File {
    let mut perm = fs::metadata(p).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    fs::set_permissions(p, perm).unwrap();
    File::options().write(true).open(p).unwrap()
}

fn mtime(p: &Path) -> SystemTime {
    fs::metadata(p).unwrap().modified().unwrap()
}

fn set_mtime(p: &Path, t: SystemTime) {
    File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn wait_output(child: Child, what: &str) -> Output {
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn versions_of(ls: &Value) -> Vec<String> {
    ls.as_array()
        .expect("cache ls --json is an array")
        .iter()
        .map(|v| {
            format!(
                "{}@{}",
                v["model_name"].as_str().unwrap(),
                v["version"].as_str().unwrap()
            )
        })
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// A TCP forwarder in front of the S3 emulator that counts the connections it accepts: a
/// fresh `mvault` process that makes any request at all opens at least one.
struct CountingProxy {
    addr: String,
    accepted: Arc<AtomicUsize>,
}

impl CountingProxy {
    fn start(upstream: &str) -> CountingProxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pipe(client, server));
                std::thread::spawn(move || pipe(s2, c2));
            }
        });
        CountingProxy { addr, accepted }
    }

    fn count(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

// ---------------------------------------------------------------------------------------------
// 1. Warm pulls

#[test]
fn warm_pull_transfers_nothing_and_needs_no_remote() {
    let env = Env::new(Backend::Fs);
    let src = make_model(
        &env,
        "src",
        &[
            ("weights.bin", noise(101, 6 * MIB)),
            ("sub/config.json", b"{\"layers\": 12}".to_vec()),
        ],
    );
    push(&env, &src, "warm", "1.0.0");
    let dir = env.path("out");

    let cold = pull_json(&env, &["warm@1.0.0", "--to", s(&dir)]);
    assert!(
        sum(&cold, "bytes_remote") > 0,
        "cold pull fetched nothing: {cold}"
    );
    assert_eq!(sum(&cold, "files_done"), 2, "{cold}");
    assert_same_tree(&src, &dir);

    let warm = pull_json(&env, &["warm@1.0.0", "--to", s(&dir)]);
    assert_eq!(
        sum(&warm, "bytes_remote"),
        0,
        "warm pull transferred bytes: {warm}"
    );
    assert_eq!(
        sum(&warm, "files_done"),
        0,
        "warm pull rewrote files: {warm}"
    );
    assert_eq!(sum(&warm, "chunks_new"), 0, "{warm}");
    assert_eq!(sum(&warm, "files_skipped"), 2, "{warm}");

    // Zero requests: the vault disappears, a pinned version still pulls from the cache alone.
    fs::rename(env.path("vault"), env.path("vault-away")).unwrap();
    let gone = pull_json(&env, &["warm@1.0.0", "--to", s(&dir)]);
    assert_eq!(sum(&gone, "bytes_remote"), 0, "{gone}");
    assert_eq!(sum(&gone, "files_done"), 0, "{gone}");
    assert_same_tree(&src, &dir);
    // Even into a fresh directory: files come from cached blobs.
    let fresh = env.path("fresh");
    let v = pull_json(&env, &["warm@1.0.0", "--to", s(&fresh)]);
    assert_eq!(sum(&v, "bytes_remote"), 0, "{v}");
    assert_eq!(sum(&v, "files_done"), 2, "{v}");
    assert_same_tree(&src, &fresh);
    // The vault really is unreachable for anything that needs it.
    let err = env.fails(3, &["pull", "warm@2.0.0", "--to", s(&env.path("nope"))]);
    assert!(err.contains("warm@2.0.0"), "unclear error: {err}");
}

#[test]
fn s3_warm_pull_transfers_nothing_and_makes_no_request() {
    let env = Env::new(Backend::S3);
    let src = make_model(
        &env,
        "src",
        &[
            ("a.bin", noise(111, 5 * MIB)),
            ("b/c.txt", b"hello".to_vec()),
        ],
    );
    push(&env, &src, "warm", "1.0.0");
    let endpoint = std::env::var("MVAULT_TEST_S3_ENDPOINT").unwrap();
    let proxy = CountingProxy::start(&endpoint);
    let via_proxy = env
        .remote
        .replace(&endpoint, &format!("http://{}", proxy.addr));
    assert_ne!(
        via_proxy, env.remote,
        "endpoint not found in {}",
        env.remote
    );
    let pull = |to: &Path| -> Value {
        let out = env
            .cmd()
            .env("MVAULT_REMOTE", &via_proxy)
            .args(["--json", "pull", "warm@1.0.0", "--to", s(to)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pull failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let dir = env.path("out");
    let cold = pull(&dir);
    assert!(sum(&cold, "bytes_remote") > 0, "{cold}");
    assert!(
        proxy.count() > 0,
        "the cold pull did not go through the proxy"
    );
    assert_same_tree(&src, &dir);

    let before = proxy.count();
    let warm = pull(&dir);
    assert_eq!(
        sum(&warm, "bytes_remote"),
        0,
        "warm pull transferred bytes: {warm}"
    );
    assert_eq!(sum(&warm, "files_done"), 0, "{warm}");
    let fresh = env.path("fresh");
    let v = pull(&fresh);
    assert_eq!(sum(&v, "bytes_remote"), 0, "{v}");
    assert_same_tree(&src, &fresh);
    assert_eq!(
        proxy.count(),
        before,
        "warm pulls of a pinned version opened connections to the store"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. --offline

#[test]
fn offline_pulls_from_cache_and_refuses_unknown_versions() {
    let env = Env::new(Backend::Fs);
    let v1 = make_model(
        &env,
        "v1",
        &[("m.bin", noise(201, 3 * MIB)), ("t.txt", b"one".to_vec())],
    );
    let v2 = make_model(
        &env,
        "v2",
        &[("m.bin", noise(202, 3 * MIB)), ("t.txt", b"two".to_vec())],
    );
    push(&env, &v1, "off", "1.0.0");
    push(&env, &v2, "off", "2.0.0");
    let dir = env.path("out");
    pull_json(&env, &["off@1.0.0", "--to", s(&dir)]);

    // Remote reachable: --offline still never asks it (2.0.0 exists there, not in the cache).
    let err = env.fails(
        3,
        &["pull", "off@2.0.0", "--offline", "--to", s(&env.path("x"))],
    );
    assert!(
        err.contains("off@2.0.0") && err.contains("offline"),
        "unclear error for a version never pulled: {err}"
    );

    fs::rename(env.path("vault"), env.path("vault-away")).unwrap();
    let same = pull_json(&env, &["off@1.0.0", "--offline", "--to", s(&dir)]);
    assert_eq!(sum(&same, "files_done"), 0, "{same}");
    assert_same_tree(&v1, &dir);
    let fresh = env.path("fresh");
    let v = pull_json(&env, &["off@1.0.0", "--offline", "--to", s(&fresh)]);
    assert_eq!(sum(&v, "files_done"), 2, "{v}");
    assert_eq!(sum(&v, "bytes_remote"), 0, "{v}");
    assert_same_tree(&v1, &fresh);
    // `latest` offline: the highest cached version.
    let latest = pull_json(
        &env,
        &["off@latest", "--offline", "--to", s(&env.path("l"))],
    );
    assert_eq!(latest["version"], "1.0.0", "{latest}");
    assert_same_tree(&v1, &env.path("l"));

    let err = env.fails(
        3,
        &["pull", "off@2.0.0", "--offline", "--to", s(&env.path("y"))],
    );
    assert!(
        err.contains("off@2.0.0") && err.contains("offline"),
        "unclear error for a version never pulled: {err}"
    );
    env.fails(
        3,
        &[
            "pull",
            "never@1.0.0",
            "--offline",
            "--to",
            s(&env.path("z")),
        ],
    );
    assert!(!env.path("y").join("m.bin").exists());

    // The manifest is cached but the blobs are gone: offline fails, places nothing.
    fs::remove_dir_all(env.cache_dir().join("blobs")).unwrap();
    let out = env.run(&["pull", "off@1.0.0", "--offline", "--to", s(&env.path("w"))]);
    assert!(
        !out.status.success(),
        "offline pull without blobs succeeded"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("offline"), "unclear error: {err}");
    assert!(!env.path("w").join("m.bin").exists());
}

// ---------------------------------------------------------------------------------------------
// 3. Repair

#[test]
fn damaged_target_files_are_restored() {
    let env = Env::new(Backend::Fs);
    let src = make_model(
        &env,
        "src",
        &[
            ("a.bin", noise(301, 3 * MIB)),
            ("b.bin", noise(302, MIB)),
            ("d/c.txt", b"some config text".to_vec()),
        ],
    );
    push(&env, &src, "rep", "1.0.0");
    let dir = env.path("out");
    pull_json(&env, &["rep@1.0.0", "--to", s(&dir)]);
    let pull = || pull_json(&env, &["rep@1.0.0", "--to", s(&dir)]);

    // Changed in place (other content, other size): the shared inode means the cached blob
    // got damaged too; both must be noticed.
    {
        let mut f = open_in_place(&dir.join("a.bin"));
        f.set_len(0).unwrap();
        f.write_all(b"not the model").unwrap();
    }
    let v = pull();
    assert_eq!(sum(&v, "files_done"), 1, "changed file not restored: {v}");
    assert_same_tree(&src, &dir);
    assert_blobs_intact(&env);

    // Truncated.
    open_in_place(&dir.join("b.bin")).set_len(1000).unwrap();
    let v = pull();
    assert_eq!(sum(&v, "files_done"), 1, "truncated file not restored: {v}");
    assert_same_tree(&src, &dir);
    assert_blobs_intact(&env);

    // Deleted: restored from the cache, no transfer.
    fs::remove_file(dir.join("d/c.txt")).unwrap();
    fs::remove_file(dir.join("a.bin")).unwrap();
    let v = pull();
    assert_eq!(sum(&v, "files_done"), 2, "deleted files not restored: {v}");
    assert_eq!(
        sum(&v, "bytes_remote"),
        0,
        "restoring from an intact cache fetched: {v}"
    );
    assert_same_tree(&src, &dir);

    let v = pull();
    assert_eq!(sum(&v, "files_done"), 0, "not warm after repair: {v}");
}

#[test]
fn verify_detects_same_size_same_mtime_edits() {
    let env = Env::new(Backend::Fs);
    let src = make_model(
        &env,
        "src",
        &[("a.bin", noise(311, 2 * MIB)), ("b.bin", noise(312, MIB))],
    );
    push(&env, &src, "ver", "1.0.0");
    let dir = env.path("out");
    pull_json(&env, &["ver@1.0.0", "--to", s(&dir)]);

    // a.bin: different bytes of the same size written in place, mtime put back.
    let a = dir.join("a.bin");
    let t = mtime(&a);
    {
        let mut f = open_in_place(&a);
        f.write_all(&noise(313, 4096)).unwrap();
    }
    set_mtime(&a, t);
    // b.bin: replaced by a new file (new inode), same size, same mtime.
    let b = dir.join("b.bin");
    let tb = mtime(&b);
    fs::remove_file(&b).unwrap();
    fs::write(&b, noise(314, MIB)).unwrap();
    set_mtime(&b, tb);
    assert_eq!(fs::metadata(&a).unwrap().len(), 2 * MIB as u64);
    assert_ne!(fs::read(&a).unwrap(), fs::read(src.join("a.bin")).unwrap());

    // The plain warm path trusts size and mtime (that is why --verify exists).
    let plain = pull_json(&env, &["ver@1.0.0", "--to", s(&dir)]);
    assert_eq!(sum(&plain, "files_done"), 0, "{plain}");

    let v = pull_json(&env, &["ver@1.0.0", "--to", s(&dir), "--verify"]);
    assert_eq!(sum(&v, "files_done"), 2, "--verify missed the edits: {v}");
    assert_same_tree(&src, &dir);
    assert_blobs_intact(&env);
    let v = pull_json(&env, &["ver@1.0.0", "--to", s(&dir), "--verify"]);
    assert_eq!(sum(&v, "files_done"), 0, "{v}");
    assert_eq!(sum(&v, "bytes_remote"), 0, "{v}");
    // The cache is sound again: an offline pull elsewhere is byte-exact.
    fs::rename(env.path("vault"), env.path("vault-away")).unwrap();
    pull_json(
        &env,
        &["ver@1.0.0", "--offline", "--to", s(&env.path("again"))],
    );
    assert_same_tree(&src, &env.path("again"));
}

#[test]
fn lost_state_record_repull_leaves_no_temp_files() {
    // The target holds the right files (hard links to the cached blobs) but its state record
    // is gone, as after a `kill -9` between placing files and writing the record.
    let env = Env::new(Backend::Fs);
    let src = make_model(
        &env,
        "src",
        &[("a.bin", noise(321, MIB)), ("d/b.txt", b"bee".to_vec())],
    );
    push(&env, &src, "lost", "1.0.0");
    let dir = env.path("out");
    pull_json(&env, &["lost@1.0.0", "--to", s(&dir)]);
    fs::remove_dir_all(dir.join(".mvault")).unwrap();
    let v = pull_json(&env, &["lost@1.0.0", "--to", s(&dir)]);
    assert_eq!(sum(&v, "bytes_remote"), 0, "{v}");
    assert_no_litter(&dir);
    assert_same_tree(&src, &dir);
    let v = pull_json(&env, &["lost@1.0.0", "--to", s(&dir)]);
    assert_eq!(sum(&v, "files_done"), 0, "not warm after the re-pull: {v}");
}

// ---------------------------------------------------------------------------------------------
// 4. Next version

#[test]
fn next_version_fetches_only_changed_chunks() {
    let env = Env::new(Backend::Fs);
    let size = 20 * MIB;
    let v1 = noise(401, size);
    let mut v2 = v1.clone();
    v2[9 * MIB..11 * MIB].copy_from_slice(&noise(402, 2 * MIB));
    let s1 = make_model(&env, "v1", &[("model.bin", v1)]);
    let s2 = make_model(&env, "v2", &[("model.bin", v2)]);
    push(&env, &s1, "nxt", "1.0.0");
    push(&env, &s2, "nxt", "2.0.0");
    pull_json(&env, &["nxt@1.0.0", "--to", s(&env.path("d1"))]);

    let d2 = env.path("d2");
    let v = pull_json(&env, &["nxt@2.0.0", "--to", s(&d2)]);
    assert_same_tree(&s2, &d2);
    let remote = sum(&v, "bytes_remote");
    assert!(
        (remote as f64) < 0.3 * size as f64,
        "pulling v2 after v1 fetched {remote} bytes of a {size}-byte file: {v}"
    );
    assert!(
        sum(&v, "chunks_reused") > 0,
        "no chunk reused from the cached v1: {v}"
    );
    assert_eq!(
        sum(&v, "chunks_new") + sum(&v, "chunks_reused"),
        chunk_count(&env, "nxt@2.0.0"),
        "{v}"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Concurrent pullers

fn concurrent_pullers(backend: Backend) {
    let env = Env::new(backend);
    let src = make_model(
        &env,
        "src",
        &[
            ("a.bin", noise(501, 14 * MIB)),
            ("b.bin", noise(502, 10 * MIB)),
            ("c/d.bin", noise(503, 6 * MIB)),
        ],
    );
    push(&env, &src, "conc", "1.0.0");
    let chunks = chunk_count(&env, "conc@1.0.0");
    let dir = env.path("out");
    let children: Vec<Child> = (0..8)
        .map(|_| {
            env.cmd()
                .args(["--json", "pull", "conc@1.0.0", "--to", s(&dir), "-j", "4"])
                .args(["--limit-rate", "60M"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut new = 0;
    for (i, c) in children.into_iter().enumerate() {
        let out = wait_output(c, &format!("puller {i}"));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        new += sum(&v, "chunks_new");
    }
    assert_blobs_intact(&env);
    assert_eq!(
        new, chunks,
        "8 concurrent pullers downloaded {new} chunks in all; the version has {chunks}"
    );
    let leftovers: Vec<PathBuf> = walk(&env.cache_dir().join("tmp"));
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    assert_no_litter(&dir);
    assert_same_tree(&src, &dir);
    let warm = pull_json(&env, &["conc@1.0.0", "--to", s(&dir)]);
    assert_eq!(sum(&warm, "files_done"), 0, "{warm}");
}

#[test]
fn concurrent_pullers_share_downloads() {
    concurrent_pullers(Backend::Fs)
}

#[test]
fn s3_concurrent_pullers_share_downloads() {
    concurrent_pullers(Backend::S3)
}

// ---------------------------------------------------------------------------------------------
// 6. kill -9

#[test]
fn killed_pull_leaves_nothing_partial() {
    let env = Env::new(Backend::Fs);
    let files: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| (format!("part{i}.bin"), noise(600 + i, 16 * MIB)))
        .collect();
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    let src = make_model(&env, "src", &refs);
    push(&env, &src, "kill", "1.0.0");
    let dir = env.path("out");
    // 64 MiB at 20 MiB/s: about 3 s; killed well before the end.
    let mut child = env
        .cmd()
        .args([
            "pull",
            "kill@1.0.0",
            "--to",
            s(&dir),
            "--limit-rate",
            "20M",
            "-q",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    assert!(
        !dir.join(".mvault").join("kill.json").exists(),
        "the pull finished before it was killed; the test proves nothing"
    );
    for p in walk(&dir) {
        let rel = p.strip_prefix(&dir).unwrap();
        if rel.starts_with(".mvault") {
            continue;
        }
        let want = src.join(rel);
        assert!(
            want.exists(),
            "unexpected file in the target after kill: {}",
            rel.display()
        );
        assert!(
            fs::read(&p).unwrap() == fs::read(&want).unwrap(),
            "partial file in the target after kill: {}",
            rel.display()
        );
    }
    assert_blobs_intact(&env);

    let v = pull_json(&env, &["kill@1.0.0", "--to", s(&dir)]);
    assert!(sum(&v, "files_done") > 0, "{v}");
    assert_same_tree(&src, &dir);
    assert_blobs_intact(&env);
    let v = pull_json(&env, &["kill@1.0.0", "--to", s(&dir), "--verify"]);
    assert_eq!(sum(&v, "files_done"), 0, "{v}");
}

// ---------------------------------------------------------------------------------------------
// 7. Cache ls / prune / clear

#[test]
fn cache_prune_evicts_least_recently_used() {
    let env = Env::new(Backend::Fs);
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        let src = make_model(&env, name, &[("w.bin", noise(700 + i as u64, 4 * MIB))]);
        push(&env, &src, name, "1.0.0");
    }
    // Used in order a, b, c, then a again (a warm pull counts as a use).
    for name in ["a", "b", "c", "a"] {
        pull_json(&env, &[&format!("{name}@1.0.0")]);
        std::thread::sleep(Duration::from_millis(30));
    }
    let ls = env.json(&["cache", "ls"]);
    assert_eq!(
        versions_of(&ls),
        ["b@1.0.0", "c@1.0.0", "a@1.0.0"],
        "not LRU first: {ls}"
    );
    for v in ls.as_array().unwrap() {
        assert_eq!(v["cached_bytes"].as_u64(), Some(4 * MIB as u64), "{v}");
        let t = v["last_used"].as_str().expect("last_used");
        let t = chrono::DateTime::parse_from_rfc3339(t).expect("last_used is RFC 3339");
        let age = chrono::Utc::now().signed_duration_since(t);
        assert!(age.num_seconds().abs() < 300, "last_used {t} is not recent");
    }
    assert_eq!(blob_bytes(&env), 12 * MIB as u64);

    let r = env.json(&["cache", "prune", "--max-size", "9M"]);
    assert_eq!(strings(&r["versions_removed"]), ["b@1.0.0"], "{r}");
    assert!(strings(&r["in_use"]).is_empty(), "{r}");
    assert!(r["bytes_after"].as_u64().unwrap() <= 9 * MIB as u64, "{r}");
    assert!(blob_bytes(&env) <= 9 * MIB as u64);
    assert_eq!(
        versions_of(&env.json(&["cache", "ls"])),
        ["c@1.0.0", "a@1.0.0"]
    );

    // Kept versions still pull without a transfer; the evicted one is fetched again.
    let a = pull_json(&env, &["a@1.0.0", "--to", s(&env.path("a-out"))]);
    assert_eq!(sum(&a, "bytes_remote"), 0, "{a}");
    let b = pull_json(&env, &["b@1.0.0", "--to", s(&env.path("b-out"))]);
    assert!(sum(&b, "bytes_remote") > 0, "{b}");
    assert_same_tree(&env.path("b"), &env.path("b-out"));
}

#[test]
fn cache_prune_spares_versions_in_use() {
    let env = Env::new(Backend::Fs);
    // big has a small file (done early) and a large one (slow): while the pull runs, big
    // already holds bytes in the cache, so a size-driven prune must consider evicting it.
    let big = make_model(
        &env,
        "big",
        &[
            ("head.bin", noise(710, 512 * 1024)),
            ("w.bin", noise(711, 10 * MIB)),
        ],
    );
    let small = make_model(&env, "small", &[("w.bin", noise(712, 2 * MIB))]);
    push(&env, &big, "big", "1.0.0");
    push(&env, &small, "small", "1.0.0");
    pull_json(&env, &["small@1.0.0"]);
    let head_blob = {
        let hex = blake3::hash(&fs::read(big.join("head.bin")).unwrap())
            .to_hex()
            .to_string();
        env.cache_dir().join("blobs").join(&hex[..2]).join(&hex)
    };

    // A slow pull of big (10.5 MiB at 3 MiB/s, 2 requests at a time): about 3.5 s.
    let dir = env.path("big-out");
    let mut child = env
        .cmd()
        .args(["--json", "pull", "big@1.0.0", "--to", s(&dir)])
        .args(["--limit-rate", "3M", "-j", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let held = pin_file(&env, "big", "1.0.0").is_some_and(|p| {
            let f = File::options().write(true).open(p).unwrap();
            f.try_lock().is_err()
        });
        if held && head_blob.exists() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the pull never pinned big@1.0.0 with head.bin cached"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = env.json(&["cache", "prune", "--max-size", "0"]);
    let r2 = env.json(&["cache", "clear"]);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the slow pull ended before the prune; the test proves nothing"
    );
    assert_eq!(strings(&r["in_use"]), ["big@1.0.0"], "prune: {r}");
    assert_eq!(
        strings(&r["versions_removed"]),
        ["small@1.0.0"],
        "prune: {r}"
    );
    assert_eq!(strings(&r2["in_use"]), ["big@1.0.0"], "clear: {r2}");
    assert!(strings(&r2["versions_removed"]).is_empty(), "clear: {r2}");
    assert!(
        head_blob.exists(),
        "a blob of the version in use was deleted"
    );
    let out = wait_output(child, "slow pull");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(sum(&v, "bytes_remote") > 0, "{v}");
    assert_same_tree(&big, &dir);
    let ls = env.json(&["cache", "ls"]);
    assert_eq!(versions_of(&ls), ["big@1.0.0"], "{ls}");
    let big_bytes = (10 * MIB + 512 * 1024) as u64;
    assert_eq!(ls[0]["cached_bytes"].as_u64(), Some(big_bytes), "{ls}");

    // A pin held by hand (a shared lock, as pulls take it) protects too.
    pull_json(&env, &["small@1.0.0"]);
    let pin = File::options()
        .write(true)
        .open(pin_file(&env, "small", "1.0.0").expect("pin file of small"))
        .unwrap();
    pin.lock_shared().unwrap();
    let r = env.json(&["cache", "prune", "--max-size", "0"]);
    assert_eq!(strings(&r["in_use"]), ["small@1.0.0"], "{r}");
    assert_eq!(strings(&r["versions_removed"]), ["big@1.0.0"], "{r}");
    assert_eq!(blob_bytes(&env), 2 * MIB as u64);
    drop(pin);
    let r = env.json(&["cache", "prune", "--max-size", "0"]);
    assert_eq!(strings(&r["versions_removed"]), ["small@1.0.0"], "{r}");
    assert!(strings(&r["in_use"]).is_empty(), "{r}");
    assert_eq!(blob_bytes(&env), 0);
}

#[test]
fn cache_prune_older_than_and_clear() {
    let env = Env::new(Backend::Fs);
    for (i, name) in ["old", "new"].iter().enumerate() {
        let src = make_model(&env, name, &[("w.bin", noise(720 + i as u64, 2 * MIB))]);
        push(&env, &src, name, "1.0.0");
        pull_json(
            &env,
            &[
                &format!("{name}@1.0.0"),
                "--to",
                s(&env.path(&format!("{name}-out"))),
            ],
        );
    }
    let ten_days = Duration::from_secs(10 * 24 * 3600);
    set_mtime(
        &cached_manifest(&env, "old", "1.0.0"),
        SystemTime::now() - ten_days,
    );
    let ls = env.json(&["cache", "ls"]);
    assert_eq!(versions_of(&ls), ["old@1.0.0", "new@1.0.0"], "{ls}");
    let t = chrono::DateTime::parse_from_rfc3339(ls[0]["last_used"].as_str().unwrap()).unwrap();
    let days = chrono::Utc::now().signed_duration_since(t).num_hours() as f64 / 24.0;
    assert!((days - 10.0).abs() < 0.1, "last_used of old is {t}");

    let r = env.json(&["cache", "prune", "--older-than", "7d"]);
    assert_eq!(strings(&r["versions_removed"]), ["old@1.0.0"], "{r}");
    assert_eq!(versions_of(&env.json(&["cache", "ls"])), ["new@1.0.0"]);
    assert_eq!(blob_bytes(&env), 2 * MIB as u64);

    let r = env.json(&["cache", "clear"]);
    assert_eq!(strings(&r["versions_removed"]), ["new@1.0.0"], "{r}");
    assert!(
        blob_files(&env).is_empty(),
        "blobs left after clear: {:?}",
        blob_files(&env)
    );
    assert_eq!(r["bytes_after"].as_u64(), Some(0), "{r}");
    assert!(env.json(&["cache", "ls"]).as_array().unwrap().is_empty());
    // Targets outside the cache are untouched; pulling again fetches.
    assert_same_tree(&env.path("new"), &env.path("new-out"));
    let v = pull_json(&env, &["new@1.0.0", "--to", s(&env.path("again"))]);
    assert!(sum(&v, "bytes_remote") > 0, "{v}");
    assert_same_tree(&env.path("new"), &env.path("again"));
}

// ---------------------------------------------------------------------------------------------
// 8. mvault run

#[test]
fn run_places_models_then_execs() {
    let env = Env::new(Backend::Fs);
    let a = make_model(
        &env,
        "src-a",
        &[("w.bin", noise(801, MIB)), ("cfg/x.json", b"{}".to_vec())],
    );
    let b = make_model(&env, "src-b", &[("tok.txt", b"tokens".to_vec())]);
    push(&env, &a, "a", "1.0.0");
    push(&env, &b, "b", "2.0.0");
    let dir = env.path("models");
    let out = env.path("ls.txt");
    let pidfile = env.path("pid.txt");
    let script = format!(
        "ls {d}/a {d}/b > {o} && echo $$ > {p}",
        d = s(&dir),
        o = s(&out),
        p = s(&pidfile)
    );
    let child = env
        .cmd()
        .env("MVAULT_MODELS", "a@1.0.0,b@2.0.0")
        .env("MVAULT_MODELS_DIR", &dir)
        .args(["run", "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_output(child, "mvault run");
    assert_same_tree(&a, &dir.join("a"));
    assert_same_tree(&b, &dir.join("b"));
    let listing = fs::read_to_string(&out).expect("the command ran");
    assert!(
        listing.contains("w.bin") && listing.contains("tok.txt"),
        "{listing}"
    );
    let ran_as: u32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(ran_as, pid, "the command did not replace mvault (no exec)");

    // The command's exit code is mvault's.
    let st = env
        .cmd()
        .env("MVAULT_MODELS", "a@1.0.0,b@2.0.0")
        .env("MVAULT_MODELS_DIR", &dir)
        .args(["run", "--", "sh", "-c", "exit 7"])
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(7));

    // MODEL_PATH when MVAULT_MODELS_DIR is unset.
    let legacy = env.path("legacy");
    let st = env
        .cmd()
        .env("MVAULT_MODELS", "a@1.0.0")
        .env("MODEL_PATH", &legacy)
        .args(["run", "--", "true"])
        .status()
        .unwrap();
    assert!(st.success());
    assert_same_tree(&a, &legacy.join("a"));
    // MVAULT_MODELS_DIR wins over MODEL_PATH.
    let both = env.path("both");
    let st = env
        .cmd()
        .env("MVAULT_MODELS", "b@2.0.0")
        .env("MVAULT_MODELS_DIR", &both)
        .env("MODEL_PATH", env.path("ignored"))
        .args(["run", "--", "true"])
        .status()
        .unwrap();
    assert!(st.success());
    assert_same_tree(&b, &both.join("b"));
    assert!(!env.path("ignored").exists());

    // A missing model: exit 3 and the command never runs.
    let mark = env.path("mark");
    let o = env
        .cmd()
        .env("MVAULT_MODELS", "a@1.0.0,b@9.9.9")
        .env("MVAULT_MODELS_DIR", &dir)
        .args(["run", "--", "touch", s(&mark)])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !mark.exists(),
        "the command ran although a model is missing"
    );
}

#[test]
fn s3_run_uses_models_s3_bucket() {
    let env = Env::new(Backend::S3);
    let a = make_model(&env, "src-a", &[("w.bin", noise(811, MIB))]);
    push(&env, &a, "a", "1.0.0");
    let endpoint = std::env::var("MVAULT_TEST_S3_ENDPOINT").unwrap();
    // s3://BUCKET/PREFIX?endpoint=... → BUCKET/PREFIX
    let bucket_prefix = env
        .remote
        .trim_start_matches("s3://")
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let dir = env.path("models");
    let mark = env.path("ran");
    let o = env
        .cmd()
        .env_remove("MVAULT_REMOTE")
        .env("MODELS_S3_BUCKET", &bucket_prefix)
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("MVAULT_MODELS", "a@1.0.0")
        .env("MVAULT_MODELS_DIR", &dir)
        .args(["run", "--", "touch", s(&mark)])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "mvault run with MODELS_S3_BUCKET failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(mark.exists(), "the command did not run");
    assert_same_tree(&a, &dir.join("a"));
}
