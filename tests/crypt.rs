//! Client-side encryption (issue 16): `keygen --encryption`, `--encryption-key-file`, what the
//! bucket holds, refusals that write nothing, damage and swaps detected, sync re-encrypting,
//! gc and verify on encrypted vaults, and the golden vector of FORMAT.md's "Encryption".

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use mvault::chunk::{self, Digest};
use mvault::crypt::{Keys, Kind};
use serde_json::Value;

use crate::common::{Backend, Env, assert_same_tree, noise, s, write_file};

const FORMAT_MD: &str = include_str!("../docs/FORMAT.md");

/// A string planted in the model's files: the bucket must never hold it.
const MARKER: &[u8] = b"PLAINTEXT-MARKER-7f3a9c";

/// Makes a key file at `env.path(name)` with `keygen --encryption`.
fn keygen(env: &Env, name: &str) -> PathBuf {
    let path = env.path(name);
    env.ok(&["keygen", "--encryption", "--out", s(&path)]);
    path
}

/// A model directory: a config file and a weights file that both hold [`MARKER`], plus noise.
fn model(env: &Env, rel: &str, seed: u64, len: usize) -> PathBuf {
    let dir = env.path(rel);
    let mut config = b"{\"note\": \"".to_vec();
    config.extend_from_slice(MARKER);
    config.extend_from_slice(b"\"}\n");
    write_file(&dir.join("config.json"), &config);
    let mut weights = noise(seed, len);
    weights[len / 2..len / 2 + MARKER.len()].copy_from_slice(MARKER);
    write_file(&dir.join("weights.bin"), &weights);
    dir
}

/// `--encryption-key-file KEY` then `args`.
fn with_key<'a>(key: &'a Path, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--encryption-key-file", s(key)];
    all.extend_from_slice(args);
    all
}

/// `push --json` with the key; returns its summary.
fn push(env: &Env, key: &Path, dir: &Path, name: &str, version: &str) -> Value {
    let args = with_key(
        key,
        &[
            "--json",
            "push",
            s(dir),
            "--name",
            name,
            "--version",
            version,
        ],
    );
    let out: Value = serde_json::from_str(&env.ok(&args)).expect("push --json");
    out["summary"].clone()
}

/// Pulls with `pre` (key options) into a fresh directory and cache; asserts it equals `src`.
fn pull_same(env: &Env, pre: &[&str], model: &str, src: &Path, tag: &str) {
    let to = env.path(&format!("pull-{tag}"));
    let cache = format!("cache-{tag}");
    let mut args = pre.to_vec();
    args.extend_from_slice(&["pull", model, "--to", s(&to)]);
    env.ok_in(&cache, &args);
    assert_same_tree(src, &to);
}

/// Every object of the vault: key → bytes.
fn objects(env: &Env) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for dir in ["chunks/", "models/", "gc/"] {
        for (k, _) in env.list_objects(dir) {
            let bytes = env.read_object(&k);
            out.insert(k, bytes);
        }
    }
    if env
        .list_objects("")
        .iter()
        .any(|(k, _)| k == "encryption.json")
    {
        out.insert("encryption.json".into(), env.read_object("encryption.json"));
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Plaintext chunk ids of `dir`'s files as a push cuts them (the names a plaintext vault
/// would use), found through a plaintext push to a scratch vault.
fn plaintext_chunk_ids(env: &Env, dir: &Path) -> Vec<String> {
    let scratch = env.path("scratch-vault");
    env.ok(&[
        "-r",
        s(&scratch),
        "push",
        s(dir),
        "--name",
        "x",
        "--version",
        "1.0.0",
    ]);
    let m: Value = serde_json::from_slice(
        &std::fs::read(scratch.join("models/x/versions/1.0.0.json")).unwrap(),
    )
    .unwrap();
    // The control: a plaintext vault does hold the marker, so the checks below can fail.
    let chunks = std::fs::read_dir(scratch.join("chunks")).unwrap();
    let held = chunks.flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap());
    assert!(
        held.into_iter()
            .any(|f| contains(&std::fs::read(f.unwrap().path()).unwrap(), MARKER))
    );
    let ids: Vec<String> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["chunks"].as_array().unwrap().clone())
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!ids.is_empty());
    ids
}

/// The round trip on one backend: the bucket holds no plaintext and no plaintext chunk name,
/// the second push of the same data sends nothing, a pull with the key gives the files back.
fn round_trip(backend: Backend) {
    let env = Env::new(backend);
    let key = keygen(&env, "vault.key");
    let dir = model(&env, "m1", 16, 3 << 20);
    let first = push(&env, &key, &dir, "bert", "1.0.0");
    assert!(first["chunks_new"].as_u64().unwrap() > 0);

    let stored = objects(&env);
    assert!(stored.contains_key("encryption.json"), "marker written");
    let plain_ids = plaintext_chunk_ids(&env, &dir);
    for (k, bytes) in &stored {
        assert!(!contains(bytes, MARKER), "{k} holds the plaintext marker");
        assert!(!contains(bytes, b"weights.bin"), "{k} holds a file name");
        for id in &plain_ids {
            assert!(
                !k.contains(id.as_str()),
                "{k} is named by a plaintext chunk id"
            );
            assert!(
                !contains(bytes, id.as_bytes()),
                "{k} holds a plaintext chunk id"
            );
        }
    }
    let chunks = stored.keys().filter(|k| k.starts_with("chunks/")).count();
    assert!(chunks > 0);

    // Dedupe inside the vault: the same files again send no chunk.
    let again = push(&env, &key, &dir, "bert", "1.0.1");
    assert_eq!(again["chunks_new"].as_u64(), Some(0), "{again}");
    assert_eq!(
        objects(&env)
            .keys()
            .filter(|k| k.starts_with("chunks/"))
            .count(),
        chunks
    );
    pull_same(&env, &with_key(&key, &[]), "bert@1.0.1", &dir, "a");
    // Verify with the key reads every chunk.
    env.ok(&with_key(&key, &["verify", "bert"]));
}

#[test]
fn fs_encrypted_round_trip_hides_data_and_names_and_dedupes() {
    round_trip(Backend::Fs);
}

#[test]
fn s3_encrypted_round_trip_hides_data_and_names_and_dedupes() {
    round_trip(Backend::S3);
}

#[test]
fn fs_keygen_writes_a_private_key_once() {
    let env = Env::new(Backend::Fs);
    let key = keygen(&env, "k");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(text.starts_with("mvault-encryption-key v1\n"), "{text}");
    let before = text.clone();
    let err = env.fails(2, &["keygen", "--encryption", "--out", s(&key)]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), before);
    // The key never shows in any output, even with -vv and --json.
    let dir = model(&env, "m", 1, 300_000);
    let out = env
        .cmd()
        .args(with_key(
            &key,
            &[
                "-vv",
                "--json",
                "push",
                s(&dir),
                "--name",
                "m",
                "--version",
                "1.0.0",
            ],
        ))
        .output()
        .unwrap();
    assert!(out.status.success());
    let secret = text.lines().nth(1).unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains(secret));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(secret));
    // A file that is not a key file: exit 2, naming the file, never echoing its content.
    let bad = env.path("bad.key");
    write_file(&bad, b"hunter2-not-a-key\n");
    let err = env.fails(2, &with_key(&bad, &["pull", "m@1.0.0"]));
    assert!(err.contains("bad.key") && !err.contains("hunter2"), "{err}");
}

#[test]
fn fs_missing_wrong_key_and_plaintext_push_refused_writing_nothing() {
    let env = Env::new(Backend::Fs);
    let key = keygen(&env, "right.key");
    let wrong = keygen(&env, "wrong.key");
    let dir = model(&env, "m", 2, 1 << 20);
    push(&env, &key, &dir, "m", "1.0.0");
    let before = objects(&env);

    let err = env.fails(2, &["pull", "m@1.0.0", "--to", s(&env.path("t1"))]);
    assert!(
        err.contains("encrypted") && err.contains("--encryption-key-file"),
        "{err}"
    );
    let err = env.fails(
        2,
        &with_key(&wrong, &["pull", "m@1.0.0", "--to", s(&env.path("t2"))]),
    );
    assert!(err.contains("wrong encryption key"), "{err}");
    assert!(!env.path("t1").exists() && !env.path("t2").exists());
    let err = env.fails(2, &["push", s(&dir), "--name", "m", "--version", "2.0.0"]);
    assert!(err.contains("encrypted"), "{err}");
    env.fails(
        2,
        &with_key(
            &wrong,
            &["push", s(&dir), "--name", "m", "--version", "2.0.0"],
        ),
    );
    let sign = env.path("release.key");
    env.ok(&["keygen", "--out", s(&sign)]);
    let err = env.fails(
        2,
        &with_key(
            &key,
            &[
                "push",
                s(&dir),
                "--name",
                "m",
                "--version",
                "3.0.0",
                "--sign-key",
                s(&sign),
            ],
        ),
    );
    assert!(err.contains("--sign-key on an encrypted vault"), "{err}");
    env.fails(2, &["verify"]);
    env.fails(2, &["gc", "--force", "--grace", "0s"]);
    env.fails(2, &["versions", "m"]);
    // Keys only: no key needed.
    assert!(env.ok(&["list"]).contains('m'));
    assert_eq!(objects(&env), before, "a refused command changed the vault");
    // Through the config file and the environment variable too.
    let cfg = env.path("mvault.yaml");
    write_file(
        &cfg,
        format!("cloud_storage:\n  encryption:\n    key_file: {}\n", s(&key)).as_bytes(),
    );
    pull_same(&env, &["-c", s(&cfg)], "m@1.0.0", &dir, "cfg");
    let mut c = env.cmd_in("cache-env");
    let out = c
        .env("MVAULT_ENCRYPTION_KEY_FILE", &key)
        .args(["pull", "m@1.0.0", "--to", s(&env.path("t3"))])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_tree(&dir, &env.path("t3"));
}

#[test]
fn fs_plaintext_vault_is_not_turned_encrypted_and_reads_unchanged() {
    let env = Env::new(Backend::Fs);
    let key = keygen(&env, "k");
    let dir = model(&env, "m", 3, 1 << 20);
    env.ok(&["push", s(&dir), "--name", "m", "--version", "1.0.0"]);
    let before = objects(&env);
    let err = env.fails(
        2,
        &with_key(
            &key,
            &["push", s(&dir), "--name", "m", "--version", "1.0.1"],
        ),
    );
    assert!(err.contains("plaintext versions"), "{err}");
    assert_eq!(objects(&env), before, "nothing written, no marker");
    // Plaintext reads are unaffected, with or without a key given.
    pull_same(&env, &[], "m@1.0.0", &dir, "plain");
    pull_same(&env, &with_key(&key, &[]), "m@1.0.0", &dir, "keyed");
    env.ok(&["verify", "m"]);
}

/// Object keys of chunks, in listing order.
fn chunk_keys(env: &Env) -> Vec<String> {
    env.list_objects("chunks/")
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

#[test]
fn fs_swapped_or_damaged_objects_are_integrity_errors() {
    let env = Env::new(Backend::Fs);
    let key = keygen(&env, "k");
    let dir = model(&env, "m", 4, 3 << 20);
    push(&env, &key, &dir, "m", "1.0.0");
    push(&env, &key, &model(&env, "m2", 5, 1 << 20), "m", "2.0.0");
    let keys = chunk_keys(&env);
    assert!(keys.len() >= 2);

    // Two chunk objects swapped: each is whole and authentic, but bound to its own name.
    let (a, b) = (env.read_object(&keys[0]), env.read_object(&keys[1]));
    env.write_object(&keys[0], b.clone());
    env.write_object(&keys[1], a.clone());
    env.fails(5, &with_key(&key, &["verify"]));
    env.write_object(&keys[0], a);
    env.write_object(&keys[1], b);
    env.ok(&with_key(&key, &["verify"]));

    // One flipped byte in a chunk: verify names it (exit 5).
    let mut c = env.read_object(&keys[0]);
    let mid = c.len() / 2;
    c[mid] ^= 1;
    env.write_object(&keys[0], c);
    env.fails(5, &with_key(&key, &["verify"]));
    // Manifests swapped between versions: refused (exit 5), not served as the other version.
    let (m1, m2) = (
        "models/m/versions/1.0.0.json",
        "models/m/versions/2.0.0.json",
    );
    let (x, y) = (env.read_object(m1), env.read_object(m2));
    env.write_object(m1, y);
    env.write_object(m2, x);
    let err = env.fails_in("cache-s", 5, &with_key(&key, &["info", "m@1.0.0"]));
    assert!(err.contains("fails authentication"), "{err}");
}

/// Every chunk of a version damaged: its pull fails with exit 5 and places no file.
#[test]
fn fs_damaged_chunk_fails_the_pull_of_its_version() {
    let env = Env::new(Backend::Fs);
    let key = keygen(&env, "k");
    let dir = model(&env, "m", 6, 1 << 20);
    push(&env, &key, &dir, "m", "1.0.0");
    for k in chunk_keys(&env) {
        let mut c = env.read_object(&k);
        let last = c.len() - 1;
        c[last] ^= 0x80;
        env.write_object(&k, c);
    }
    let to = env.path("t");
    let err = env.fails(5, &with_key(&key, &["pull", "m@1.0.0", "--to", s(&to)]));
    assert!(err.contains("fails authentication"), "{err}");
    assert!(!to.join("weights.bin").exists() && !to.join("config.json").exists());
}

#[test]
fn fs_sync_re_encrypts_to_another_key_and_from_plaintext() {
    let (a, b, p) = (
        Env::new(Backend::Fs),
        Env::new(Backend::Fs),
        Env::new(Backend::Fs),
    );
    let old = keygen(&a, "old.key");
    let new = keygen(&a, "new.key");
    let dir = model(&a, "m", 7, 2 << 20);
    push(&a, &old, &dir, "m", "1.0.0");
    let args = [
        "sync",
        "--from",
        &a.remote,
        "--to",
        &b.remote,
        "--from-encryption-key-file",
        s(&old),
        "--to-encryption-key-file",
        s(&new),
    ];
    b.ok(&args);
    // The destination pulls with the new key only.
    pull_same(&b, &with_key(&new, &[]), "m@1.0.0", &dir, "new");
    b.fails_in(
        "cache-old",
        2,
        &with_key(&old, &["pull", "m@1.0.0", "--to", s(&b.path("x"))]),
    );
    // Nothing of the source's objects is on the destination: other names, other ciphertexts.
    let (sa, sb) = (objects(&a), objects(&b));
    let chunks_a: Vec<_> = sa.keys().filter(|k| k.starts_with("chunks/")).collect();
    let chunks_b: Vec<_> = sb.keys().filter(|k| k.starts_with("chunks/")).collect();
    assert_eq!(chunks_a.len(), chunks_b.len());
    assert!(chunks_a.iter().all(|k| !sb.contains_key(*k)));
    assert_ne!(sa["encryption.json"], sb["encryption.json"]);
    // Re-running copies nothing.
    let again: Value = serde_json::from_str(&b.ok(&[&["--json"], &args[..]].concat())).unwrap();
    assert_eq!(again["copied"].as_array().unwrap().len(), 0, "{again}");

    // From plaintext into a new encrypted vault, and back out to plaintext.
    let c = Env::new(Backend::Fs);
    c.ok(&["push", s(&dir), "--name", "m", "--version", "1.0.0"]);
    p.ok(&[
        "sync",
        "--from",
        &c.remote,
        "--to",
        &p.remote,
        "--to-encryption-key-file",
        s(&new),
    ]);
    assert!(objects(&p).values().all(|v| !contains(v, MARKER)));
    pull_same(&p, &with_key(&new, &[]), "m@1.0.0", &dir, "p");
    let q = Env::new(Backend::Fs);
    q.ok(&[
        "sync",
        "--from",
        &p.remote,
        "--to",
        &q.remote,
        "--from-encryption-key-file",
        s(&new),
    ]);
    pull_same(&q, &[], "m@1.0.0", &dir, "q");
    assert!(!objects(&q).contains_key("encryption.json"));
}

#[test]
fn fs_gc_on_an_encrypted_vault_keeps_what_versions_use() {
    let env = Env::new(Backend::Fs);
    let key = keygen(&env, "k");
    let keep = model(&env, "keep", 8, 1 << 20);
    push(&env, &key, &keep, "m", "1.0.0");
    let kept = chunk_keys(&env);
    push(&env, &key, &model(&env, "gone", 9, 1 << 20), "m", "2.0.0");
    env.ok(&with_key(&key, &["rm", "m@2.0.0"]));
    let gc = |_: ()| -> Value {
        serde_json::from_str(&env.ok(&with_key(
            &key,
            &["--json", "gc", "--force", "--grace", "0s"],
        )))
        .unwrap()
    };
    let report = gc(());
    assert!(report["deleted"].as_u64().unwrap() > 0, "{report}");
    let mut left = chunk_keys(&env);
    left.sort();
    let mut want = kept.clone();
    want.sort();
    assert_eq!(
        left, want,
        "gc deleted exactly the removed version's chunks"
    );
    pull_same(&env, &with_key(&key, &[]), "m@1.0.0", &keep, "after-gc");
    let usage: Value =
        serde_json::from_str(&env.ok(&with_key(&key, &["--json", "usage"]))).unwrap();
    assert_eq!(usage["versions"].as_u64(), Some(1), "{usage}");
}

/// The cache of a pull with one key is not served to a pull with another key (or none).
#[test]
fn fs_cache_is_keyed_by_the_vault_key() {
    let env = Env::new(Backend::Fs);
    let key = keygen(&env, "k");
    let wrong = keygen(&env, "w");
    let dir = model(&env, "m", 10, 1 << 20);
    push(&env, &key, &dir, "m", "1.0.0");
    env.ok(&with_key(
        &key,
        &["pull", "m@1.0.0", "--to", s(&env.path("a"))],
    ));
    // Same cache, pinned version already cached: still refused without the right key.
    env.fails(
        2,
        &with_key(&wrong, &["pull", "m@1.0.0", "--to", s(&env.path("b"))]),
    );
    env.fails(2, &["pull", "m@1.0.0", "--to", s(&env.path("c"))]);
    assert!(!env.path("b").exists() && !env.path("c").exists());
}

/// `label value` lines of the golden vector block in FORMAT.md's "Encryption" section.
fn vector() -> BTreeMap<String, String> {
    let start = FORMAT_MD
        .find("**Encryption golden vector**")
        .expect("FORMAT.md: encryption golden vector");
    let block = &FORMAT_MD[start..];
    let from = block.find("```text\n").expect("vector block") + 8;
    let len = block[from..].find("```").expect("vector end");
    // `label: value`; a line without a label continues the value above it.
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut last = None;
    for line in block[from..from + len]
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let (label, value) = match line.split_once(':') {
            Some((k, v)) if !k.starts_with(' ') => (k.trim().to_string(), v),
            _ => (last.clone().expect("a value before a continuation"), line),
        };
        out.entry(label.clone())
            .or_default()
            .extend(value.split_whitespace());
        last = Some(label);
    }
    out
}

fn unhex(v: &BTreeMap<String, String>, label: &str) -> Vec<u8> {
    hex::decode(
        v.get(label)
            .unwrap_or_else(|| panic!("FORMAT.md vector lacks {label:?}")),
    )
    .unwrap_or_else(|e| panic!("FORMAT.md vector {label:?}: {e}"))
}

#[test]
fn encryption_golden_vector_of_format_md() {
    let v = vector();
    let master: [u8; 32] = unhex(&v, "master key").try_into().expect("32 bytes");
    let keys = Keys::from_master(master);
    assert_eq!(keys.key_check(), v["key check"], "key check");
    let chunk = unhex(&v, "chunk plaintext");
    let id = Digest::of(&chunk);
    assert_eq!(id.to_hex(), v["chunk id"], "chunk id");
    let name = keys.stored_id(&id).to_hex();
    assert_eq!(name, v["stored name"], "stored name");
    let object_key = format!("chunks/{}/{}", &name[..2], name);
    assert_eq!(object_key, v["chunk object key"]);
    let encoded = chunk::encode(&chunk);
    assert_eq!(hex::encode(&encoded), v["chunk object"], "chunk object");
    let nonce: [u8; 24] = unhex(&v, "nonce").try_into().expect("24 bytes");
    let sealed = keys.seal_with_nonce(Kind::Chunk, &object_key, &encoded, nonce);
    assert_eq!(hex::encode(&sealed), v["sealed chunk"], "sealed chunk");
    assert_eq!(
        keys.open(Kind::Chunk, &object_key, &sealed).unwrap(),
        encoded
    );

    let mkey = &v["manifest key"];
    let manifest = unhex(&v, "manifest plaintext");
    let sealed = keys.seal_with_nonce(Kind::Manifest, mkey, &manifest, nonce);
    assert_eq!(
        hex::encode(&sealed),
        v["sealed manifest"],
        "sealed manifest"
    );
    assert_eq!(keys.open(Kind::Manifest, mkey, &sealed).unwrap(), manifest);
    // The key file of the vector's key parses back to it.
    let file = format!("mvault-encryption-key v1\n{}\n", v["master key"]);
    assert_eq!(keys.to_key_file(), file);
}
