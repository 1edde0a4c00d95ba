//! Cloud-side encryption and least privilege (issue 16), checked on the wire.
//!
//! - Server-side encryption options (`sse`, `sse_kms_key_id`, `sse_customer_key[_file]`): the
//!   headers (or, for GCS, the query parameter) reach the store on every write (and, for
//!   customer-provided keys, on every read), the store records the setting where it can
//!   (moto: `x-amz-server-side-encryption*` on HEAD; Azurite: a blob written with a key
//!   cannot be read without it), and a pull through a fresh cache still works.
//! - Least privilege: `pull` (cold, warm, resumed), `run`, `verify`, `list`, `versions` and
//!   `info` send only GET and HEAD, recorded by [`Recorder`] in front of moto; the S3 actions
//!   every command needs are derived from the log and checked against the policies README.md
//!   publishes (pusher, puller, admin).

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::record::{Recorder, Seen};
use crate::common::{Backend, Env, assert_same_tree, noise, required, s, write_file};

/// 32 bytes, base64: the customer-provided key of these tests.
const CUSTOMER_KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// Base64 MD5 of the key above's 32 raw bytes (S3's `...-customer-key-md5`).
const CUSTOMER_KEY_MD5: &str = "tP/LI3N87DFaSk0aoqYgzg==";

/// A model of a few chunks, and some files that dedupe.
fn make_model(dir: &Path, seed: u64) {
    write_file(&dir.join("weights.bin"), &noise(seed, 3_000_000));
    write_file(&dir.join("config.json"), br#"{"layers": 4}"#);
    write_file(&dir.join("sub/vocab.txt"), &b"token\n".repeat(10_000));
}

/// `env.remote` with its endpoint replaced by `endpoint` and `extra` options appended.
fn remote_via(env: &Env, direct: &str, endpoint: &str, extra: &str) -> String {
    let base = if env.remote.contains(direct) {
        env.remote.replace(direct, endpoint)
    } else {
        let sep = if env.remote.contains('?') { '&' } else { '?' };
        format!("{}{sep}endpoint={endpoint}", env.remote)
    };
    match extra {
        "" => base,
        e => format!("{base}&{e}"),
    }
}

/// Pushes `model@1.0.0` from a fresh directory through `remote` and returns the source dir.
fn push(env: &Env, remote: &str, seed: u64) -> std::path::PathBuf {
    let src = env.path(&format!("src{seed}"));
    make_model(&src, seed);
    env.ok(&[
        "-r",
        remote,
        "-q",
        "push",
        s(&src),
        "--name",
        "model",
        "--version",
        "1.0.0",
    ]);
    src
}

/// Pulls `model@1.0.0` through `remote` into a fresh cache and directory; checks the files.
fn pull_fresh(env: &Env, remote: &str, src: &Path, tag: &str) {
    let out = env.path(&format!("out-{tag}"));
    env.ok_in(
        &format!("cache-{tag}"),
        &["-r", remote, "-q", "pull", "model@1.0.0", "--to", s(&out)],
    );
    assert_same_tree(src, &out);
}

fn puts(log: &[Seen]) -> Vec<&Seen> {
    log.iter().filter(|r| r.method == "PUT").collect()
}

/// A GET or HEAD of one object that the store answered 200 (not a listing).
fn is_object_read(r: &Seen) -> bool {
    let listing = r.target.contains("list-type=") || r.target.contains("comp=list");
    matches!(r.method.as_str(), "GET" | "HEAD") && !listing && r.status == Some(200)
}

// ---------------------------------------------------------------------------------------------
// S3 (moto)

#[test]
fn s3_sse_s3_and_kms_headers_reach_moto_and_pull_works() {
    let arn = "arn:aws:kms:us-east-1:123456789012:key/0b6c3c2e-mvault-test";
    for (i, (option, want, want_key)) in [
        ("sse=aes256", "AES256", None),
        ("sse=kms", "aws:kms", None),
        // A key id alone means sse=kms.
        (&*format!("sse_kms_key_id={arn}"), "aws:kms", Some(arn)),
    ]
    .into_iter()
    .enumerate()
    {
        let env = Env::new(Backend::S3);
        let ep = required("MVAULT_TEST_S3_ENDPOINT");
        let rec = Recorder::start(&ep);
        let remote = remote_via(&env, &ep, &rec.endpoint(), option);
        let src = push(&env, &remote, 10 + i as u64);
        let log = rec.take();
        assert!(!puts(&log).is_empty(), "{option}: no PUT recorded");
        for r in &log {
            assert_amz_headers_signed(r);
            let sse = r.header("x-amz-server-side-encryption");
            let key = r.header("x-amz-server-side-encryption-aws-kms-key-id");
            match r.method.as_str() {
                "PUT" => {
                    assert_eq!(sse, Some(want), "{option}: {}", r.line());
                    assert_eq!(key, want_key, "{option}: {}", r.line());
                }
                // OpenDAL sends SSE-S3/KMS headers on writes only, as S3 requires.
                _ => assert_eq!((sse, key), (None, None), "{option}: {}", r.line()),
            }
        }
        // What moto recorded per object: its answers to the pull's reads carry the setting.
        pull_fresh(&env, &remote, &src, "sse");
        let log = rec.take();
        let reads: Vec<&Seen> = log.iter().filter(|r| is_object_read(r)).collect();
        assert!(
            reads.iter().any(|r| r.target.contains("/chunks/")),
            "{option}: no chunk read"
        );
        assert!(
            reads.iter().any(|r| r.target.contains("/versions/")),
            "{option}: no manifest read"
        );
        for r in reads {
            assert_eq!(
                r.response_header("x-amz-server-side-encryption"),
                Some(want),
                "{option}: {} answered {:?}",
                r.line(),
                r.response_headers
            );
            if let Some(k) = want_key {
                assert_eq!(
                    r.response_header("x-amz-server-side-encryption-aws-kms-key-id"),
                    Some(k),
                    "{option}: {}",
                    r.line()
                );
            }
        }
    }
}

/// Asserts that recorded request `r` is SigV4-signed once and that its signature covers every
/// `x-amz-*` header it carries, as S3 requires (moto does not check signatures; the
/// signature's arithmetic is reqsign's, as for every other request OpenDAL signs).
fn assert_amz_headers_signed(r: &Seen) {
    let auth = r.header("authorization").unwrap_or_default();
    assert_eq!(
        auth.matches("AWS4-HMAC-SHA256").count(),
        1,
        "{}: {auth:?}",
        r.line()
    );
    let signed = auth
        .split("SignedHeaders=")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("{}: not SigV4-signed: {auth:?}", r.line()));
    let signed: Vec<&str> = signed.split(';').collect();
    for (name, _) in r.headers.iter().filter(|(n, _)| n.starts_with("x-amz-")) {
        assert!(
            signed.contains(&name.as_str()),
            "{}: {name} not signed ({signed:?})",
            r.line()
        );
    }
}

#[test]
fn s3_bucket_key_header_is_added_and_signed_on_writes() {
    let env = Env::new(Backend::S3);
    let ep = required("MVAULT_TEST_S3_ENDPOINT");
    let rec = Recorder::start(&ep);
    let remote = remote_via(&env, &ep, &rec.endpoint(), "sse=kms&sse_bucket_key=true");
    let src = push(&env, &remote, 12);
    let log = rec.take();
    let header = "x-amz-server-side-encryption-bucket-key-enabled";
    assert!(!puts(&log).is_empty(), "no PUT recorded");
    for r in &log {
        // Signed again after the header was added: the signature covers it.
        assert_amz_headers_signed(r);
        let want = (r.method == "PUT").then_some("true");
        assert_eq!(r.header(header), want, "{}", r.line());
        assert!(
            r.status.is_some_and(|c| c < 300 || c == 404),
            "{} -> {:?}",
            r.line(),
            r.status
        );
    }
    pull_fresh(&env, &remote, &src, "bk");
    let log = rec.take();
    for r in log.iter().filter(|r| is_object_read(r)) {
        assert_eq!(
            r.response_header("x-amz-server-side-encryption"),
            Some("aws:kms")
        );
        assert_eq!(
            r.response_header(header),
            Some("true"),
            "{}: {:?}",
            r.line(),
            r.response_headers
        );
    }
    let err = env.fails(
        2,
        &["-r", &format!("{}&sse_bucket_key=true", env.remote), "list"],
    );
    assert!(err.contains("sse_bucket_key needs sse=kms"), "{err}");
}

#[test]
fn s3_customer_key_from_file_is_sent_on_every_object_request_and_never_printed() {
    let env = Env::new(Backend::S3);
    let ep = required("MVAULT_TEST_S3_ENDPOINT");
    let rec = Recorder::start(&ep);
    let keyfile = env.path("sse.key");
    write_file(&keyfile, format!("{CUSTOMER_KEY_B64}\n").as_bytes());
    let remote = remote_via(
        &env,
        &ep,
        &rec.endpoint(),
        &format!("sse_customer_key_file={}", s(&keyfile)),
    );
    let src = env.path("src");
    make_model(&src, 3);
    let out = env.run(&[
        "-r",
        &remote,
        "-vv",
        "push",
        s(&src),
        "--name",
        "model",
        "--version",
        "1.0.0",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!printed.contains(CUSTOMER_KEY_B64), "the key was printed");
    pull_fresh(&env, &remote, &src, "ssec");
    let log = rec.take();
    let objects: Vec<&Seen> = log
        .iter()
        .filter(|r| r.method != "GET" || !r.target.contains("list-type"))
        .collect();
    assert!(
        objects.iter().any(|r| r.method == "GET"),
        "no GetObject recorded"
    );
    for r in objects {
        assert_eq!(
            r.header("x-amz-server-side-encryption-customer-algorithm"),
            Some("AES256"),
            "{}",
            r.line()
        );
        assert_eq!(
            r.header("x-amz-server-side-encryption-customer-key"),
            Some(CUSTOMER_KEY_B64),
            "{}",
            r.line()
        );
        assert_eq!(
            r.header("x-amz-server-side-encryption-customer-key-md5"),
            Some(CUSTOMER_KEY_MD5),
            "{}",
            r.line()
        );
    }
    // The same key from the environment works too; a wrong key file is refused up front.
    let mut env2 = Env::new(Backend::S3);
    env2.set_var("MVAULT_SSE_CUSTOMER_KEY", CUSTOMER_KEY_B64);
    let remote2 = format!("{}&sse=customer", env2.remote);
    let src2 = push(&env2, &remote2, 4);
    pull_fresh(&env2, &remote2, &src2, "env");
    let bad = env.path("bad.key");
    write_file(&bad, b"too short");
    let err = env.fails(
        2,
        &[
            "-r",
            &format!("{}&sse_customer_key_file={}", env.remote, s(&bad)),
            "list",
        ],
    );
    assert!(err.contains("does not hold a 256-bit key"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Azure Blob (Azurite)

/// A recorder in front of Azurite, and the blob endpoint (`http://127.0.0.1:PORT/account`)
/// that reaches Azurite through it.
fn azurite_recorder() -> (Recorder, String) {
    let conn = required("MVAULT_TEST_AZBLOB_CONNECTION_STRING");
    let blob_ep = conn
        .split(';')
        .find_map(|p| p.strip_prefix("BlobEndpoint="))
        .expect("BlobEndpoint in the connection string")
        .trim_end_matches('/')
        .to_string();
    let (origin, account_path) = blob_ep.split_at(blob_ep[7..].find('/').unwrap() + 7);
    let rec = Recorder::start(origin);
    let endpoint = format!("{}{account_path}", rec.endpoint());
    (rec, endpoint)
}

#[test]
fn azblob_customer_key_is_sent_on_every_object_request_and_pull_works() {
    let env = Env::new(Backend::Azblob);
    let (rec, endpoint) = azurite_recorder();
    let keyfile = env.path("cpk.key");
    write_file(&keyfile, &(0u8..32).collect::<Vec<u8>>());
    let remote = format!(
        "{}?endpoint={endpoint}&sse_customer_key_file={}",
        env.remote,
        s(&keyfile)
    );
    let src = push(&env, &remote, 5);
    pull_fresh(&env, &remote, &src, "cpk");
    let log = rec.take();
    // SHA-256 of the key's 32 raw bytes, base64.
    let sha = "Yw3NKWbEM2aRElRIu7JbT/QSpJxzLbLIq8G4WBvXEN0=";
    let objects: Vec<&Seen> = log
        .iter()
        .filter(|r| !r.target.contains("comp=list"))
        .collect();
    assert!(
        objects.iter().any(|r| r.method == "PUT"),
        "no upload recorded"
    );
    assert!(
        objects.iter().any(|r| r.method == "GET"),
        "no read recorded"
    );
    for r in objects {
        assert_eq!(
            r.header("x-ms-encryption-key"),
            Some(CUSTOMER_KEY_B64),
            "{}",
            r.line()
        );
        assert_eq!(
            r.header("x-ms-encryption-key-sha256"),
            Some(sha),
            "{}",
            r.line()
        );
        assert_eq!(
            r.header("x-ms-encryption-algorithm"),
            Some("AES256"),
            "{}",
            r.line()
        );
    }
}

#[test]
fn azblob_encryption_scope_is_sent_signed_on_writes() {
    let env = Env::new(Backend::Azblob);
    let (rec, endpoint) = azurite_recorder();
    let remote = format!(
        "{}?endpoint={endpoint}&encryption_scope=models-cmk",
        env.remote
    );
    let src = push(&env, &remote, 13);
    pull_fresh(&env, &remote, &src, "scope");
    let log = rec.take();
    assert!(log.iter().any(|r| r.method == "PUT"), "no upload recorded");
    for r in &log {
        let want = (r.method == "PUT").then_some("models-cmk");
        assert_eq!(r.header("x-ms-encryption-scope"), want, "{}", r.line());
        // Azurite checks Shared Key signatures: the re-signed writes were accepted.
        assert!(
            r.header("authorization")
                .is_some_and(|a| a.starts_with("SharedKey "))
        );
        assert!(
            r.status.is_some_and(|c| c < 300 || c == 404),
            "{} -> {:?}",
            r.line(),
            r.status
        );
    }
}

// ---------------------------------------------------------------------------------------------
// OSS (the fake)

#[test]
fn oss_sse_headers_are_sent_signed_on_writes_only() {
    for (option, want, want_key) in [
        ("sse=aes256", "AES256", None),
        ("sse=kms&sse_kms_key_id=kms-key-1", "KMS", Some("kms-key-1")),
        ("sse=sm4", "SM4", None),
    ] {
        let env = Env::new(Backend::Oss);
        let remote = format!("{}&{option}", env.remote);
        let src = push(&env, &remote, 6);
        pull_fresh(&env, &remote, &src, "oss");
        let reqs = env.fake().requests();
        // Every request, these headers included, passed the fake's V1 signature check.
        env.assert_requests_well_formed();
        let mut put = 0;
        for r in &reqs {
            let sse = r.header("x-oss-server-side-encryption");
            let key = r.header("x-oss-server-side-encryption-key-id");
            if r.operation() == "PutObject" {
                put += 1;
                assert_eq!((sse, key), (Some(want), want_key), "{option}: {}", r.target);
            } else {
                assert_eq!((sse, key), (None, None), "{option}: {}", r.target);
            }
        }
        assert!(put > 0, "{option}: no PutObject");
    }
}

// ---------------------------------------------------------------------------------------------
// GCS (emulator)

#[test]
fn gcs_kms_key_name_reaches_every_upload() {
    let env = Env::new(Backend::Gcs);
    let ep = required("MVAULT_TEST_GCS_ENDPOINT");
    let rec = Recorder::start(&ep);
    let name = "projects/p/locations/europe-west1/keyRings/r/cryptoKeys/models";
    let remote = remote_via(
        &env,
        &ep,
        &rec.endpoint(),
        &format!("anonymous=true&sse_kms_key_id={name}"),
    );
    let src = push(&env, &remote, 7);
    pull_fresh(&env, &remote, &src, "gcs");
    let log = rec.take();
    let encoded =
        "kmsKeyName=projects%2Fp%2Flocations%2Feurope-west1%2FkeyRings%2Fr%2FcryptoKeys%2Fmodels";
    let uploads: Vec<&Seen> = log
        .iter()
        .filter(|r| r.method == "POST" && r.target.starts_with("/upload/storage/v1/"))
        .collect();
    // Simple and multipart uploads, and the start of resumable ones (manifests), which is
    // where GCS takes the key; the session's PUTs go to the URI GCS answered.
    assert!(!uploads.is_empty(), "no upload recorded");
    assert!(
        uploads
            .iter()
            .any(|r| r.target.contains("uploadType=resumable")),
        "no resumable upload (manifest) recorded"
    );
    for r in &uploads {
        assert!(r.target.contains(encoded), "{}", r.line());
        assert!(
            r.status.is_some_and(|c| c < 300),
            "{} -> {:?}",
            r.line(),
            r.status
        );
    }
    for r in log.iter().filter(|r| !r.target.starts_with("/upload/")) {
        assert!(!r.target.contains("kmsKeyName"), "{}", r.line());
    }
}

// ---------------------------------------------------------------------------------------------
// Options: one validator for URL and config, backends refuse what they cannot do

#[test]
fn sse_options_are_checked_and_key_material_is_never_shown() {
    let env = Env::new(Backend::Fs);
    // A customer key is refused in a URL, without echoing it.
    let url = format!("s3://b/p?sse_customer_key={CUSTOMER_KEY_B64}");
    let err = env.fails(2, &["-r", &url, "list"]);
    assert!(err.contains("not accepted in a URL"), "{err}");
    assert!(!err.contains(CUSTOMER_KEY_B64), "{err}");
    let err = env.fails(2, &["-r", "s3://b/p?sse=des", "list"]);
    assert!(
        err.contains("sse: \"des\" is not one of aes256, kms, sm4, customer"),
        "{err}"
    );
    for (url, says) in [
        (
            "s3://b/p?sse=sm4",
            "sse=sm4 is not available here: S3 takes",
        ),
        (
            "oss://b/p?region=cn-hangzhou&sse=customer&sse_customer_key_file=/nonexistent",
            "sse_customer_key_file /nonexistent",
        ),
        (
            "gs://b/p?sse=aes256",
            "GCS encrypts with Google-managed keys",
        ),
        (
            "az://c/p?sse=kms",
            "or encryption_scope=NAME for a scope's (customer-managed) key",
        ),
        (
            "s3://b/p?encryption_scope=s",
            "encryption_scope applies to az:// remotes only",
        ),
        (
            "s3://b/p?sse=aes256&sse_kms_key_id=k",
            "sse_kms_key_id needs sse=kms",
        ),
        ("s3://b/p?sse=customer", "sse=customer needs a key"),
    ] {
        let err = env.fails(2, &["-r", url, "list"]);
        assert!(err.contains(says), "{url}: {err}");
    }
    // The config file: the same validator, the key masked in `remotes`.
    let cfg = env.path("mvault.yaml");
    std::fs::write(
        &cfg,
        "cloud_storage:\n  providers:\n    - name: enc\n      type: s3\n      config:\n        \
         bucket: b\n        sse: customer\n        sse_customer_key: \"${THE_KEY}\"\n    \
         - name: bad\n      type: s3\n      config:\n        bucket: b\n        sse: rot13\n",
    )
    .unwrap();
    let out = env
        .cmd()
        .env("THE_KEY", CUSTOMER_KEY_B64)
        .args(["-c", s(&cfg), "--json", "remotes"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains(CUSTOMER_KEY_B64), "{text}");
    assert!(text.contains("sse_customer_key"), "{text}");
    let out = env
        .cmd()
        .args(["-c", s(&cfg), "-r", "bad", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(":13:") && err.contains("\"rot13\" is not one of"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Least privilege

/// The S3 action (IAM name) a request needs.
fn s3_action(r: &Seen) -> String {
    let query = r.target.split_once('?').map_or("", |(_, q)| q);
    let has = |p: &str| query.split('&').any(|kv| kv.split('=').next() == Some(p));
    match r.method.as_str() {
        "GET" if has("list-type") || (!has("x-id") && r.target.matches('/').count() <= 1) => {
            "s3:ListBucket"
        }
        "GET" | "HEAD" => "s3:GetObject",
        "PUT" if has("partNumber") || has("uploadId") => "s3:PutObject",
        "PUT" => "s3:PutObject",
        "POST" if has("delete") => "s3:DeleteObject",
        "POST" => "s3:PutObject",
        "DELETE" => "s3:DeleteObject",
        m => panic!("unexpected method {m}"),
    }
    .to_string()
}

/// The `Action`s of the IAM policy README.md publishes under `<!-- policy:NAME -->`.
fn readme_policy(name: &str) -> BTreeSet<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let marker = format!("<!-- policy:{name} -->");
    let at = readme
        .find(&marker)
        .unwrap_or_else(|| panic!("README.md has no {marker}"));
    let rest = &readme[at..];
    let start = rest.find("```json\n").expect("json block") + 8;
    let end = start + rest[start..].find("```").expect("block end");
    let doc: serde_json::Value = serde_json::from_str(&rest[start..end]).expect("policy JSON");
    let mut actions = BTreeSet::new();
    for st in doc["Statement"].as_array().expect("Statement") {
        match &st["Action"] {
            serde_json::Value::String(a) => drop(actions.insert(a.clone())),
            serde_json::Value::Array(v) => {
                actions.extend(v.iter().map(|a| a.as_str().unwrap().to_string()))
            }
            a => panic!("Action {a}"),
        }
    }
    actions
}

/// Runs `args` through `remote` (on cache `cache`) and returns the requests it sent.
fn traced(env: &Env, rec: &Recorder, remote: &str, cache: &str, args: &[&str]) -> Vec<Seen> {
    let mut all = vec!["-r", remote, "-q"];
    all.extend_from_slice(args);
    env.ok_in(cache, &all);
    rec.take()
}

fn actions(log: &[Seen]) -> BTreeSet<String> {
    log.iter().map(s3_action).collect()
}

/// Asserts every listing in `log` is confined to the vault's prefix (`prefix=<vault>/...`),
/// so that the policies' `s3:prefix` condition `prod/*` admits them all.
fn assert_listings_under(log: &[Seen], vault_prefix: &str) {
    for r in log.iter().filter(|r| s3_action(r) == "s3:ListBucket") {
        let query = r.target.split_once('?').map_or("", |(_, q)| q);
        let prefix = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("prefix="))
            .unwrap_or_else(|| panic!("{}: listing without a prefix", r.line()));
        let prefix = prefix.replace("%2F", "/");
        assert!(
            prefix.starts_with(&format!("{vault_prefix}/")),
            "{}",
            r.line()
        );
    }
}

fn assert_read_only(what: &str, log: &[Seen]) {
    for r in log {
        assert!(
            r.method == "GET" || r.method == "HEAD",
            "{what} sent a write: {}",
            r.line()
        );
    }
}

#[test]
fn serving_commands_send_only_reads_and_readme_policies_suffice() {
    let env = Env::new(Backend::S3);
    let ep = required("MVAULT_TEST_S3_ENDPOINT");
    let rec = Recorder::start(&ep);
    let remote = remote_via(&env, &ep, &rec.endpoint(), "");
    let src = env.path("src");
    make_model(&src, 8);
    write_file(&src.join("more.bin"), &noise(9, 6_000_000));
    let mut used = std::collections::BTreeMap::<&str, BTreeSet<String>>::new();
    let vault_prefix = env.remote["s3://".len()..].split('?').next().unwrap();
    let vault_prefix = vault_prefix.split_once('/').unwrap().1.to_string();
    let mut all: Vec<Seen> = Vec::new();

    let log = traced(
        &env,
        &rec,
        &remote,
        "c0",
        &["push", s(&src), "--name", "model", "--version", "1.0.0"],
    );
    used.entry("pusher").or_default().extend(actions(&log));
    all.extend(log);
    // 1.1.0 changes a file, so that removing 1.0.0 leaves chunks for gc to record.
    write_file(&src.join("more.bin"), &noise(10, 6_000_000));
    let log = traced(
        &env,
        &rec,
        &remote,
        "c0",
        &["push", s(&src), "--name", "model", "--version", "1.1.0"],
    );
    used.entry("pusher").or_default().extend(actions(&log));
    all.extend(log);
    let log = traced(
        &env,
        &rec,
        &remote,
        "c0",
        &["alias", "set", "model@1.1.0", "prod"],
    );
    used.entry("pusher").or_default().extend(actions(&log));
    all.extend(log);
    // Moving an alias and rolling it back (prod ends on 1.1.0 again).
    for args in [
        vec!["alias", "set", "model@1.0.0", "prod"],
        vec!["rollback", "model", "prod"],
    ] {
        let log = traced(&env, &rec, &remote, "c0", &args);
        assert!(
            log.iter().any(|r| r.method == "PUT"),
            "{args:?} wrote nothing"
        );
        used.entry("pusher").or_default().extend(actions(&log));
        all.extend(log);
    }

    let mut reads: Vec<(String, Vec<Seen>)> = Vec::new();
    for args in [
        vec!["list"],
        vec!["versions", "model"],
        vec!["info", "model@1.0.0"],
        vec!["info", "model@prod"],
        vec!["verify", "model@1.0.0"],
        vec!["verify"],
    ] {
        let log = traced(&env, &rec, &remote, "c1", &args);
        reads.push((args.join(" "), log));
    }
    // A cold pull fills an empty cache; a warm one, a pull into a new directory, and a pull
    // that resumes after part of the cache is gone.
    let out = env.path("out");
    let log = traced(
        &env,
        &rec,
        &remote,
        "c2",
        &["pull", "model@1.1.0", "--to", s(&out)],
    );
    assert!(
        log.iter().any(|r| r.method == "GET"),
        "cold pull fetched nothing"
    );
    reads.push(("cold pull".into(), log));
    assert_same_tree(&src, &out);
    let log = traced(
        &env,
        &rec,
        &remote,
        "c2",
        &["pull", "model@1.1.0", "--to", s(&out)],
    );
    reads.push(("warm pull".into(), log));
    let blobs = crate::common::walk(&env.path("c2"))
        .into_iter()
        .filter(|p| p.is_file() && std::fs::metadata(p).is_ok_and(|m| m.len() > 1_000_000))
        .collect::<Vec<_>>();
    assert!(
        !blobs.is_empty(),
        "no large cached blob found under the cache"
    );
    for b in &blobs {
        std::fs::remove_file(b).unwrap();
    }
    let out2 = env.path("out2");
    let log = traced(
        &env,
        &rec,
        &remote,
        "c2",
        &["pull", "model@prod", "--to", s(&out2)],
    );
    assert!(
        log.iter().any(|r| r.method == "GET"),
        "resumed pull fetched nothing"
    );
    reads.push(("pull after part of the cache is gone".into(), log));
    assert_same_tree(&src, &out2);
    // A pull killed (SIGKILL) half-way, then run again: it completes from where it stopped.
    let out3 = env.path("out3");
    let mut child = env
        .cmd_in("c5")
        .args(["-r", &remote, "-q", "pull", "model@1.1.0", "--to", s(&out3)])
        .args(["--limit-rate", "2M", "-j", "1"])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let chunk_gets = rec.peek(|r| {
            r.method == "GET" && (r.target.contains("/chunks/") || r.target.contains("/packs/"))
        });
        if chunk_gets >= 3 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the pull ended before the kill"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the pull fetched no chunk in 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    reads.push(("killed pull".into(), rec.take()));
    let log = traced(
        &env,
        &rec,
        &remote,
        "c5",
        &["pull", "model@1.1.0", "--to", s(&out3)],
    );
    reads.push(("resumed pull".into(), log));
    assert_same_tree(&src, &out3);
    let log = traced(&env, &rec, &remote, "c3", &["pull", "model"]);
    reads.push(("pull latest to the cache".into(), log));
    let run_dir = env.path("run");
    let out = env
        .cmd_in("c4")
        .env("MVAULT_REMOTE", &remote)
        .env("MVAULT_MODELS", "model@1.1.0")
        .env("MVAULT_MODELS_DIR", &run_dir)
        .args(["-q", "run", "--", "true"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    reads.push(("run".into(), rec.take()));
    for (what, log) in &reads {
        assert!(
            !log.is_empty() || what == "warm pull",
            "{what}: nothing recorded (is the proxy in the path?)"
        );
        assert_read_only(what, log);
        used.entry("puller").or_default().extend(actions(log));
        all.extend(log.iter().cloned());
    }
    // A version of its own chunks (packs no other version shares), so that gc has garbage.
    let other = env.path("other");
    write_file(&other.join("w.bin"), &noise(0x0dd, 12 << 20));
    let log = traced(
        &env,
        &rec,
        &remote,
        "c0",
        &["push", s(&other), "--name", "model", "--version", "0.9.0"],
    );
    used.entry("pusher").or_default().extend(actions(&log));
    all.extend(log);
    for args in [
        vec!["rm", "model@0.9.0"],
        vec!["rm", "model@1.0.0"],
        vec!["prune", "model", "--keep", "1"],
        // A zero grace records the unreferenced chunks and deletes them in one run.
        vec!["gc", "--grace", "0", "--force"],
    ] {
        let log = traced(&env, &rec, &remote, "c0", &args);
        used.entry("admin").or_default().extend(actions(&log));
        all.extend(log);
    }
    assert_listings_under(&all, &vault_prefix);
    // Each README policy allows exactly what the role used: enough, and nothing more.
    for (role, acts) in &used {
        eprintln!("{role}: {acts:?}");
        let policy = readme_policy(&format!("s3-{role}"));
        assert_eq!(acts, &policy, "{role}: used vs README's policy");
    }
    assert_eq!(used.len(), 3);
}

#[test]
fn serving_commands_send_only_reads_on_oss() {
    let env = Env::new(Backend::Oss);
    let src = push(&env, &env.remote, 11);
    env.fake().take_requests();
    let out = env.path("out");
    for args in [
        vec!["list"],
        vec!["versions", "model"],
        vec!["info", "model@1.0.0"],
        vec!["verify", "model@1.0.0"],
        vec!["pull", "model@1.0.0", "--to", s(&out)],
    ] {
        env.ok(&args);
        let reqs = env.fake().take_requests();
        assert!(!reqs.is_empty(), "{args:?}: nothing sent");
        for r in &reqs {
            assert!(
                matches!(r.operation(), "GetObject" | "HeadObject" | "ListObjectsV2"),
                "{args:?} sent {} {}",
                r.operation(),
                r.target
            );
        }
    }
    assert_same_tree(&src, &out);
}
