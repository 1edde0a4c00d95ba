//! One behaviour suite for every backend: each case is a function of a fresh [`Env`], and the
//! `backends!` macro instantiates every case once per backend (`fs::round_trip`,
//! `oss::round_trip`, ...), in the spirit of OpenDAL's behaviour tests. A case that needs a
//! [`Capability`] is registered only for the backends that have it (skipped by construction,
//! never a silent pass), and each backend's declared capabilities are checked at compile time
//! against [`Backend::capability`]. After every case the store's recorded requests are checked
//! ([`Env::assert_requests_well_formed`]: on the fake OSS, signature, addressing, operations
//! and key layout of every request).

use serde_json::Value;

use crate::common::{Backend, Capability, Env, assert_same_tree, noise, write_file};

/// A model directory with nested paths, an empty file, a JSON config and one large file.
fn make_model(env: &Env, dir: &str, large: usize, seed: u64) -> std::path::PathBuf {
    let root = env.path(dir);
    write_file(&root.join("model.safetensors"), &noise(seed, large));
    write_file(&root.join("config.json"), br#"{"hidden": 768}"#);
    write_file(
        &root.join("tokenizer/vocab.txt"),
        &b"hello world\n".repeat(5000),
    );
    write_file(&root.join("tokenizer/deep/nested/empty.bin"), b"");
    root
}

pub fn round_trip(env: &Env) {
    let src = make_model(env, "src", env.backend.large_file_bytes(), 1);
    env.ok(&[
        "push",
        src.to_str().unwrap(),
        "--name",
        "bert",
        "--version",
        "v1.0.0",
    ]);
    let out = env.path("out");
    let printed = env.ok(&["pull", "bert@1.0.0", "--to", out.to_str().unwrap()]);
    assert_eq!(printed.trim(), out.to_str().unwrap());
    assert_same_tree(&src, &out);

    // Without --to, the snapshot path is printed and holds the same files.
    let snap = env.ok(&["pull", "bert"]);
    assert_same_tree(&src, std::path::Path::new(snap.trim()));
}

pub fn metadata_and_listing(env: &Env) {
    let src = env.path("m");
    write_file(&src.join("w.bin"), &noise(2, 100_000));
    env.ok(&[
        "push",
        src.to_str().unwrap(),
        "--name",
        "gpt",
        "--version",
        "v1.0.0",
        "--description",
        "first",
        "--metric",
        "accuracy=0.95",
        "--metric",
        "note=good",
        "--param",
        "epochs=100",
        "--tag",
        "team=nlp",
    ]);
    env.ok(&[
        "push",
        src.to_str().unwrap(),
        "--name",
        "gpt",
        "--version",
        "1.1.0",
    ]);
    env.ok(&[
        "push",
        src.to_str().unwrap(),
        "--name",
        "gpt",
        "--version",
        "2.0.0-rc.1",
    ]);
    env.ok(&[
        "push",
        src.to_str().unwrap(),
        "--name",
        "other",
        "--version",
        "0.1.0",
    ]);

    let list = env.json(&["list"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gpt", "other"]);
    assert_eq!(list[0]["latest"], "1.1.0", "latest skips pre-releases");

    let versions = env.json(&["versions", "gpt"]);
    let vs: Vec<&str> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(vs, ["v1.0.0", "1.1.0", "2.0.0-rc.1"]);

    let info = env.json(&["info", "gpt@1.0.0"]);
    for key in [
        "model_name",
        "version",
        "created_at",
        "file_size",
        "checksum",
        "description",
        "performance_metrics",
        "training_config",
        "tags",
        "files",
        "created_by",
    ] {
        assert!(info.get(key).is_some(), "info --json lacks {key}: {info}");
    }
    assert_eq!(info["version"], "v1.0.0");
    assert_eq!(info["performance_metrics"]["accuracy"], Value::from(0.95));
    assert_eq!(info["performance_metrics"]["note"], "good");
    assert_eq!(info["training_config"]["epochs"], Value::from(100));
    assert_eq!(info["tags"]["team"], "nlp");
    assert_eq!(info["file_size"], 100_000);
    assert_eq!(info["created_by"]["user"], "tester");
    assert!(info["created_at"].as_str().unwrap().ends_with('Z'));

    env.ok(&["rm", "gpt@1.1.0"]);
    env.fails(3, &["info", "gpt@1.1.0"]);
    env.fails(3, &["rm", "gpt@1.1.0"]);
    let info = env.json(&["info", "gpt"]);
    assert_eq!(info["version"], "v1.0.0");
}

pub fn same_version_refused(env: &Env) {
    let a = env.path("a");
    write_file(&a.join("w.bin"), &noise(3, 300_000));
    env.ok(&[
        "push",
        a.to_str().unwrap(),
        "--name",
        "m",
        "--version",
        "1.0.0",
    ]);
    let before = env.json(&["info", "m@1.0.0"])["checksum"].clone();
    let b2 = env.path("b");
    write_file(&b2.join("w.bin"), &noise(4, 300_000));
    let err = env.fails(
        4,
        &[
            "push",
            b2.to_str().unwrap(),
            "--name",
            "m",
            "--version",
            "v1.0.0",
        ],
    );
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
    assert_eq!(env.json(&["info", "m@1.0.0"])["checksum"], before);
}

/// Two writers race for the same version: exactly one wins, the other exits 4.
pub fn concurrent_push_one_wins(env: &Env) {
    let dirs: Vec<_> = (0..4)
        .map(|i| {
            let d = env.path(&format!("d{i}"));
            write_file(&d.join("w.bin"), &noise(10 + i, 2_000_000));
            d
        })
        .collect();
    let children: Vec<_> = dirs
        .iter()
        .map(|d| {
            let mut c = env.cmd();
            c.args([
                "push",
                d.to_str().unwrap(),
                "--name",
                "race",
                "--version",
                "1.0.0",
            ]);
            c.stderr(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect();
    let codes: Vec<i32> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code().unwrap())
        .collect();
    assert_eq!(
        codes.iter().filter(|&&c| c == 0).count(),
        1,
        "codes {codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|&&c| c == 4).count(),
        3,
        "codes {codes:?}"
    );
    // The stored version is whole: it pulls and verifies.
    env.ok(&[
        "pull",
        "race@1.0.0",
        "--to",
        env.path("out").to_str().unwrap(),
    ]);
}

/// Four pushes of the same bytes under different names at once (they write the same chunks
/// at the same time): all succeed, and each version pulls byte-exact and verifies (on a local
/// vault, until 2026-12-07, half of such pushes failed with "writer got too much data").
pub fn concurrent_pushes_sharing_chunks(env: &Env) {
    let d = env.path("shared");
    write_file(&d.join("w.bin"), &noise(20, 6_000_000));
    let children: Vec<_> = (0..4)
        .map(|i| {
            let mut c = env.cmd();
            c.args(["push", d.to_str().unwrap(), "--name", &format!("twin{i}")]);
            c.args(["--version", "1.0.0", "--no-pack"]);
            c.stderr(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "a concurrent push failed: {err}");
    }
    for i in 0..4 {
        let out = env.path(&format!("twin{i}"));
        env.ok(&[
            "pull",
            &format!("twin{i}@1.0.0"),
            "--to",
            out.to_str().unwrap(),
        ]);
        assert_same_tree(&d, &out);
    }
    env.ok(&["verify"]);
}

/// A second version with ~10% of a large file rewritten in place (2 MiB tensors) stores at
/// most 20% new bytes.
pub fn dedupe_ten_percent(env: &Env) {
    let size = env.backend.large_file_bytes();
    let mut data = noise(5, size);
    let v1 = env.path("v1/model.bin");
    write_file(&v1, &data);
    env.ok(&[
        "push",
        v1.to_str().unwrap(),
        "--name",
        "ft",
        "--version",
        "1.0.0",
    ]);
    let after_v1 = env.stored_chunk_bytes();

    // Rewrite evenly spaced 2 MiB tensors, about 10% of the file.
    let tensor = 2 << 20;
    let count = (size / 10 / tensor).max(1);
    for i in 0..count {
        let at = i * size / count + size / count / 2;
        data[at..at + tensor].copy_from_slice(&noise(100 + i as u64, tensor));
    }
    let v2 = env.path("v2/model.bin");
    write_file(&v2, &data);
    let summary = env.json(&[
        "push",
        v2.to_str().unwrap(),
        "--name",
        "ft",
        "--version",
        "1.1.0",
    ]);
    let new_bytes = env.stored_chunk_bytes() - after_v1;
    let ratio = new_bytes as f64 / size as f64;
    eprintln!(
        "dedupe: {new_bytes} new bytes stored for a 10% change = {:.1}%",
        ratio * 100.0
    );
    assert!(
        ratio <= 0.20,
        "stored {:.1}% new bytes (seed 5)",
        ratio * 100.0
    );
    assert_eq!(
        summary["summary"]["bytes_remote"].as_u64().unwrap(),
        new_bytes
    );

    // Both versions still come back byte-exact.
    let out = env.path("out2");
    env.ok(&["pull", "ft@1.1.0", "--to", out.to_str().unwrap()]);
    assert!(
        std::fs::read(out.join("model.bin")).unwrap() == data,
        "v2 differs"
    );
}

/// A manifest with a path escaping the target is refused before anything is written.
pub fn hostile_manifest_refused(env: &Env) {
    let src = env.path("src");
    write_file(&src.join("ok.bin"), &noise(6, 50_000));
    env.ok(&[
        "push",
        src.to_str().unwrap(),
        "--name",
        "evil",
        "--version",
        "1.0.0",
    ]);
    let key = "models/evil/versions/1.0.0.json";
    let good: Value = serde_json::from_slice(&env.read_object(key)).unwrap();

    for bad_path in ["../escape.bin", "/tmp/abs.bin", "a//b", "a/./b"] {
        let mut m = good.clone();
        m["files"][0]["path"] = Value::from(bad_path);
        // Keep the checksum consistent so only the path check can refuse it.
        let files: Vec<mvault::manifest::FileEntry> =
            serde_json::from_value(m["files"].clone()).unwrap();
        m["checksum"] = Value::from(mvault::manifest::version_checksum(&files).to_hex());
        let v = format!("1.0.{}", bad_path.len());
        m["version"] = Value::from(v.clone());
        env.write_object(
            &format!("models/evil/versions/{v}.json"),
            serde_json::to_vec(&m).unwrap(),
        );
        let target = env.path(&format!("t{}/inner", bad_path.len()));
        let err = env.fails(
            5,
            &[
                "pull",
                &format!("evil@{v}"),
                "--to",
                target.to_str().unwrap(),
            ],
        );
        assert!(err.contains("unsafe file path"), "{bad_path}: {err}");
        assert!(!target.exists(), "{bad_path}: target was created");
        assert!(
            !env.path(&format!("t{}/escape.bin", bad_path.len()))
                .exists()
        );
    }
}

/// A flipped byte in a stored chunk fails the pull with exit 5, naming the file, and leaves
/// no file (partial or whole) in the target.
pub fn corrupted_chunk_detected(env: &Env) {
    let src = env.path("src");
    write_file(&src.join("weights.bin"), &noise(7, 3_000_000));
    env.ok(&[
        "push",
        src.to_str().unwrap(),
        "--name",
        "c",
        "--version",
        "1.0.0",
    ]);
    let chunks = env.list_objects("chunks/");
    let (key, _) = &chunks[chunks.len() / 2];
    let mut obj = env.read_object(key);
    let last = obj.len() - 1;
    obj[last] ^= 0x01;
    env.write_object(key, obj);

    let target = env.path("out");
    let err = env.fails(5, &["pull", "c@1.0.0", "--to", target.to_str().unwrap()]);
    assert!(err.contains("weights.bin"), "{err}");
    assert!(!target.join("weights.bin").exists());
    let leftovers: Vec<_> = crate::common::walk(&target)
        .into_iter()
        .filter(|p| !p.starts_with(target.join(".mvault")))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A missing chunk is an integrity failure of the version too.
    env.delete_object(key);
    let err = env.fails(5, &["pull", "c@1.0.0", "--to", target.to_str().unwrap()]);
    assert!(err.contains("missing"), "{err}");
    assert!(!target.join("weights.bin").exists());
}

pub fn not_found_and_bad_input(env: &Env) {
    env.fails(
        3,
        &[
            "pull",
            "nope@1.0.0",
            "--to",
            env.path("x").to_str().unwrap(),
        ],
    );
    env.fails(3, &["versions", "nope"]);
    let err = env.fails(2, &["pull", "bad name@1.0.0"]);
    assert!(err.contains("invalid model name"), "{err}");
    let err = env.fails(2, &["push", ".", "--name", "m", "--version", "1.0"]);
    assert!(err.contains("invalid version"), "{err}");
}

/// The cases every backend runs.
macro_rules! common_cases {
    () => {
        case!(round_trip);
        case!(metadata_and_listing);
        case!(same_version_refused);
        case!(dedupe_ten_percent);
        case!(hostile_manifest_refused);
        case!(corrupted_chunk_detected);
        case!(not_found_and_bad_input);
        case!(concurrent_pushes_sharing_chunks);
    };
}

/// The cases registered for a backend per capability it declares.
macro_rules! capability_cases {
    (create_only) => {
        case!(concurrent_push_one_wins);
    };
}

/// One module per backend: `name => Backend::X { capabilities }`. The declared capabilities
/// must equal `Backend::X.capability()` (a compile error otherwise), so a case cannot be
/// registered for a backend that cannot honour it, nor silently dropped from one that can.
macro_rules! backends {
    ($($backend:ident => $variant:expr, { $($cap:ident),* $(,)? }),* $(,)?) => {$(
        mod $backend {
            use super::*;
            const B: Backend = $variant;
            const DECLARED: Capability = {
                #[allow(unused_mut)]
                let mut c = Capability::NONE;
                $(c.$cap = true;)*
                c
            };
            const _: () = assert!(
                DECLARED.same(B.capability()),
                concat!("capabilities declared for ", stringify!($backend), " differ from Backend::capability()")
            );
            macro_rules! case {
                ($case:ident) => {
                    #[test]
                    fn $case() {
                        let env = Env::new(B);
                        super::$case(&env);
                        env.assert_requests_well_formed();
                    }
                };
            }
            common_cases!();
            $(capability_cases!($cap);)*
        }
    )*};
}

backends! {
    fs => Backend::Fs, { create_only },
    s3 => Backend::S3, { create_only },
    // gcp-storage-emulator ignores preconditions (real GCS enforces them; see README).
    gcs => Backend::Gcs, {},
    azblob => Backend::Azblob, { create_only },
    oss => Backend::Oss, { create_only },
}

/// `create_only` (FORMAT.md, "Backend notes"): `checked`, the default on a custom S3
/// endpoint, stats the manifest key twice (push step 1, then right before the create);
/// `enforced`, the default on the providers' own services, only once (step 1), the create
/// left to the store's precondition. Racing pushes through an `enforced` remote still end
/// with exactly one winner and a whole version (losers stopped at step 1 or by the store's
/// 412, whichever comes first; the next test stages the 412 itself).
#[test]
fn s3_create_only_modes_stat_as_documented_and_keep_one_winner() {
    use crate::common::record::Recorder;
    use crate::common::{required, s};
    let ep = required("MVAULT_TEST_S3_ENDPOINT");
    for (mode, heads) in [
        ("", 2),
        ("&create_only=checked", 2),
        ("&create_only=enforced", 1),
    ] {
        let env = Env::new(Backend::S3);
        let rec = Recorder::start(&ep);
        let remote = format!("{}{mode}", env.remote.replace(&ep, &rec.endpoint()));
        let src = env.path("src");
        write_file(&src.join("w.bin"), &noise(3, 1_500_000));
        env.ok(&[
            "-r",
            &remote,
            "-q",
            "push",
            s(&src),
            "-n",
            "m",
            "--version",
            "1.0.0",
        ]);
        let log = rec.take();
        let manifest = |method: &str| {
            log.iter()
                .filter(|r| r.method == method && r.target.contains("/versions/1.0.0.json"))
                .count()
        };
        assert_eq!(manifest("PUT"), 1, "mode {mode:?}");
        assert_eq!(manifest("HEAD"), heads, "mode {mode:?}");
        let put = log.iter().rposition(|r| r.method == "PUT").unwrap();
        assert!(
            log[put].target.contains("/versions/1.0.0.json"),
            "the manifest is written last: {}",
            log[put].line()
        );
    }
    let mut env = Env::new(Backend::S3);
    env.remote.push_str("&create_only=enforced");
    concurrent_push_one_wins(&env);
}

/// An `enforced` create-only write where the object already exists, staged through the
/// library (a push cannot be stopped between its checks): no stat is sent, moto's 412
/// decides, identical bytes (a retried write that hit its own success) are
/// `AlreadyIdentical` and different bytes a conflict, the stored object unchanged.
#[test]
fn s3_enforced_create_only_leaves_it_to_the_precondition() {
    use crate::common::record::Recorder;
    use crate::common::required;
    use mvault::remote::{Created, ErrorKind, Remote, RemoteSpec};
    let env = Env::new(Backend::S3);
    let ep = required("MVAULT_TEST_S3_ENDPOINT");
    let rec = Recorder::start(&ep);
    let url = env.remote.replace(&ep, &rec.endpoint()) + "&create_only=enforced";
    let mut spec = RemoteSpec::parse_url(&url).unwrap();
    for (k, var) in [
        ("access_key", "MVAULT_TEST_S3_ACCESS_KEY"),
        ("secret_key", "MVAULT_TEST_S3_SECRET_KEY"),
    ] {
        spec.options.insert(k.into(), required(var));
    }
    let remote = Remote::open(&spec).unwrap();
    let key = "models/m/versions/1.0.0.json";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (first, same, other) = rt.block_on(async {
        let first = remote.create_only(key, "first\n".into()).await;
        let same = remote.create_only(key, "first\n".into()).await;
        let other = remote.create_only(key, "second\n".into()).await;
        (first, same, other)
    });
    assert_eq!(first.unwrap(), Created::New);
    assert_eq!(same.unwrap(), Created::AlreadyIdentical);
    assert_eq!(other.unwrap_err().kind, ErrorKind::Conflict);
    assert_eq!(env.read_object(key), b"first\n");
    let log = rec.take();
    let on_key: Vec<_> = log
        .iter()
        .filter(|r| r.target.contains("/versions/1.0.0.json"))
        .collect();
    let lines: Vec<String> = on_key
        .iter()
        .map(|r| format!("{} {:?}", r.line(), r.status))
        .collect();
    assert!(
        on_key.iter().all(|r| r.method != "HEAD"),
        "no stat: {lines:?}"
    );
    let puts: Vec<Option<u16>> = on_key
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.status)
        .collect();
    assert_eq!(puts, [Some(200), Some(412), Some(412)], "{lines:?}");
}
