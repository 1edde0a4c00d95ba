//! Signed versions (issue 16): `keygen`, `push --sign-key`, `--trusted-key` on pull, run,
//! verify and sync (and their config and environment forms), `info`'s signer, `signature`
//! export, and every refusal (unsigned, unknown signer, altered signature or manifest, a
//! selector naming a failing version) happening before anything is placed. The OpenSSF tool
//! itself is run against mvault's bundles by `scripts/signing-interop.sh`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::{Backend, Env, noise, s, write_file};

/// A model directory with two files; returns its path.
fn model(env: &Env, seed: u64) -> std::path::PathBuf {
    let dir = env.path(&format!("model-{seed}"));
    write_file(&dir.join("config.json"), b"{\"hidden_size\": 768}\n");
    write_file(&dir.join("weights/model.bin"), &noise(seed, 300_000));
    dir
}

/// `keygen --out NAME` in the env's directory; returns the private key path.
fn keygen(env: &Env, name: &str) -> std::path::PathBuf {
    let out = env.path(name);
    env.ok(&["keygen", "--out", s(&out)]);
    out
}

fn public(key: &Path) -> String {
    format!("{}.pub", key.display())
}

/// Hex SHA-256 of a file's bytes, with `sha256sum`.
fn sha256_hex(path: &str) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum runs");
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// Files below `dir`, `.mvault` records excluded.
fn placed(dir: &Path) -> Vec<std::path::PathBuf> {
    crate::common::files(dir)
        .into_iter()
        .filter(|p| !p.starts_with(dir.join(".mvault")))
        .collect()
}

#[test]
fn keygen_writes_a_private_key_0600_and_refuses_to_overwrite() {
    let env = Env::new(Backend::Fs);
    let out = env.path("k");
    let j = env.json(&["keygen", "--out", s(&out)]);
    let private = std::fs::read_to_string(&out).unwrap();
    let pub_text = std::fs::read_to_string(public(&out)).unwrap();
    assert!(
        private.starts_with("-----BEGIN PRIVATE KEY-----\n"),
        "{private}"
    );
    assert!(
        pub_text.starts_with("-----BEGIN PUBLIC KEY-----\n"),
        "{pub_text}"
    );
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "private key mode {mode:o}");
    assert_eq!(j["fingerprint"], sha256_hex(&public(&out)));
    assert_eq!(j["public_key"], public(&out));

    // Again: refused (exit 4), both files unchanged.
    let e = env.fails(4, &["keygen", "--out", s(&out)]);
    assert!(e.contains("refusing to overwrite"), "{e}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), private);
    assert_eq!(std::fs::read_to_string(public(&out)).unwrap(), pub_text);

    // A directory that does not exist: a local I/O failure (exit 1) naming the file.
    let e = env.fails(1, &["keygen", "--out", s(&env.path("no/such/dir/k"))]);
    assert!(e.contains("cannot write key file"), "{e}");
    // Only FILE.pub exists: refused as well, and FILE is not created.
    let other = env.path("k2");
    write_file(Path::new(&public(&other)), b"mine");
    env.fails(4, &["keygen", "--out", s(&other)]);
    assert!(!other.exists());
    assert_eq!(std::fs::read(public(&other)).unwrap(), b"mine");
}

/// Signed push, trusted pull, the bundle in the target and exported, `info`'s signer.
fn signed_push_and_trusted_pull(backend: Backend) {
    let env = Env::new(backend);
    let key = keygen(&env, "release.key");
    let src = model(&env, 1);
    env.ok(&[
        "push",
        s(&src),
        "-n",
        "m",
        "-V",
        "1.0.0",
        "--sign-key",
        s(&key),
    ]);
    let to = env.path("out");
    env.ok(&[
        "pull",
        "m@1.0.0",
        "--to",
        s(&to),
        "--trusted-key",
        &public(&key),
    ]);
    crate::common::assert_same_tree(&src, &to);
    let placed_sig = std::fs::read(to.join(".mvault/m.sig")).unwrap();

    // The exported bundle is the stored object and the one placed in the target.
    let export = env.path("m.sig");
    let j = env.json(&["signature", "m@1.0.0", "--out", s(&export)]);
    assert_eq!(std::fs::read(&export).unwrap(), placed_sig);
    assert_eq!(env.read_object("models/m/signatures/1.0.0.sig"), placed_sig);
    let fingerprint = sha256_hex(&public(&key));
    assert_eq!(j["key_fingerprint"], fingerprint.as_str());
    assert_eq!(j["verified"], false);

    // info: the signer, verified only with trusted keys (from the environment here).
    let text = env.ok(&["info", "m@1.0.0"]);
    assert!(
        text.contains(&format!("signed:      by key {fingerprint} (not verified")),
        "{text}"
    );
    let info = env.json(&["info", "m@1.0.0"]);
    assert_eq!(info["signature"]["key_fingerprint"], fingerprint.as_str());
    assert_eq!(info["signature"]["verified"], false);
    let mut trusting = env;
    trusting.set_var("MVAULT_TRUSTED_KEYS", &public(&key));
    let info = trusting.json(&["info", "m@1.0.0"]);
    assert_eq!(info["signature"]["verified"], true, "{info}");
    assert_eq!(info["signature"]["problem"], serde_json::Value::Null);

    // A warm pull into the same target, and into a new one from the cache: checked again,
    // from the cached signature.
    trusting.ok(&["pull", "m@1.0.0", "--to", s(&to)]);
    let again = trusting.path("again");
    trusting.ok(&["pull", "m@1.0.0", "--to", s(&again), "--offline"]);
    crate::common::assert_same_tree(&src, &again);
    assert_eq!(
        std::fs::read(again.join(".mvault/m.sig")).unwrap(),
        placed_sig
    );
}

#[test]
fn signed_push_and_trusted_pull_fs() {
    signed_push_and_trusted_pull(Backend::Fs);
}

#[test]
fn s3_signed_push_and_trusted_pull() {
    signed_push_and_trusted_pull(Backend::S3);
}

#[test]
fn unsigned_version_is_refused_before_anything_is_placed() {
    let env = Env::new(Backend::Fs);
    let key = keygen(&env, "k");
    let src = model(&env, 2);
    env.ok(&["push", s(&src), "-n", "m", "-V", "1.0.0"]);
    assert!(env.list_objects("models/m/signatures/").is_empty());
    let to = env.path("out");
    let e = env.fails(
        5,
        &[
            "pull",
            "m@1.0.0",
            "--to",
            s(&to),
            "--trusted-key",
            &public(&key),
        ],
    );
    assert!(e.contains("m@1.0.0 is not signed"), "{e}");
    assert!(!to.exists() || placed(&to).is_empty(), "nothing placed");
    let e = env.fails(3, &["signature", "m@1.0.0", "--out", s(&env.path("m.sig"))]);
    assert!(e.contains("pushed without --sign-key"), "{e}");

    // Warm cache: the version is cached (pulled without trusted keys), the check still runs.
    env.ok(&["pull", "m@1.0.0"]);
    let warm = env.path("warm");
    env.fails(
        5,
        &[
            "pull",
            "m@1.0.0",
            "--to",
            s(&warm),
            "--trusted-key",
            &public(&key),
        ],
    );
    assert!(!warm.exists() || placed(&warm).is_empty(), "nothing placed");

    // `run` too, before exec'ing anything.
    let dir = env.path("models");
    let marker = env.path("ran");
    let e = env.fails(
        5,
        &[
            "run",
            "m@1.0.0",
            "--to",
            s(&dir),
            "--trusted-key",
            &public(&key),
            "--",
            "touch",
            s(&marker),
        ],
    );
    assert!(e.contains("not signed"), "{e}");
    assert!(!marker.exists() && (!dir.exists() || placed(&dir).is_empty()));
}

#[test]
fn a_signature_by_an_untrusted_key_is_refused() {
    let env = Env::new(Backend::Fs);
    let (signer, other) = (keygen(&env, "a"), keygen(&env, "b"));
    env.ok(&[
        "push",
        s(&model(&env, 3)),
        "-n",
        "m",
        "-V",
        "1.0.0",
        "--sign-key",
        s(&signer),
    ]);
    let to = env.path("out");
    let e = env.fails(
        5,
        &[
            "pull",
            "m@1.0.0",
            "--to",
            s(&to),
            "--trusted-key",
            &public(&other),
        ],
    );
    assert!(e.contains("which is not a trusted key"), "{e}");
    assert!(
        e.contains(&sha256_hex(&public(&signer))),
        "names the signer: {e}"
    );
    assert!(!to.exists() || placed(&to).is_empty());
    // Either of several trusted keys suffices.
    env.ok(&[
        "pull",
        "m@1.0.0",
        "--to",
        s(&to),
        "--trusted-key",
        &public(&other),
        "--trusted-key",
        &public(&signer),
    ]);
}

/// Pushes a signed m@1.0.0; returns (env, public key path).
fn signed(backend: Backend, seed: u64) -> (Env, String) {
    let env = Env::new(backend);
    let key = keygen(&env, "k");
    env.ok(&[
        "push",
        s(&model(&env, seed)),
        "-n",
        "m",
        "-V",
        "1.0.0",
        "--sign-key",
        s(&key),
    ]);
    (env, public(&key))
}

fn tampered_signature_object_is_refused(backend: Backend) {
    let (env, key) = signed(backend, 4);
    let sig_key = "models/m/signatures/1.0.0.sig";
    let mut b: serde_json::Value = serde_json::from_slice(&env.read_object(sig_key)).unwrap();
    // Another valid-looking signature: the first base64 character changed.
    let sig = b["dsseEnvelope"]["signatures"][0]["sig"]
        .as_str()
        .unwrap()
        .to_string();
    let flipped = if sig.starts_with('M') { "N" } else { "M" };
    b["dsseEnvelope"]["signatures"][0]["sig"] = format!("{flipped}{}", &sig[1..]).into();
    env.write_object(sig_key, serde_json::to_vec(&b).unwrap());
    let to = env.path("out");
    let e = env.fails(
        5,
        &["pull", "m@1.0.0", "--to", s(&to), "--trusted-key", &key],
    );
    assert!(e.contains("signature of m@1.0.0"), "{e}");
    assert!(!to.exists() || placed(&to).is_empty());
    // Garbage in the object: refused too.
    env.write_object(sig_key, b"not a bundle".to_vec());
    let e = env.fails_in("cache2", 5, &["pull", "m@1.0.0", "--trusted-key", &key]);
    assert!(e.contains("not a sigstore bundle"), "{e}");
}

#[test]
fn tampered_signature_object_is_refused_fs() {
    tampered_signature_object_is_refused(Backend::Fs);
}

#[test]
fn s3_tampered_signature_object_is_refused() {
    tampered_signature_object_is_refused(Backend::S3);
}

#[test]
fn a_manifest_changed_after_signing_is_refused() {
    let (env, key) = signed(Backend::Fs, 5);
    let mkey = "models/m/versions/1.0.0.json";
    let text = String::from_utf8(env.read_object(mkey)).unwrap();
    // Still a valid manifest: only the description changed.
    let changed = text.replacen("\"description\": \"\"", "\"description\": \"evil\"", 1);
    assert_ne!(changed, text);
    env.write_object(mkey, changed.into_bytes());
    let to = env.path("out");
    let e = env.fails(
        5,
        &["pull", "m@1.0.0", "--to", s(&to), "--trusted-key", &key],
    );
    assert!(e.contains("manifest was altered after signing"), "{e}");
    assert!(!to.exists() || placed(&to).is_empty());
    // verify --trusted-key reports it as well.
    env.fails(5, &["verify", "m@1.0.0", "--trusted-key", &key]);
}

#[test]
fn latest_and_aliases_refuse_a_failing_version_instead_of_skipping_it() {
    let (env, key) = signed(Backend::Fs, 6);
    env.ok(&["push", s(&model(&env, 7)), "-n", "m", "-V", "1.1.0"]);
    let e = env.fails(5, &["pull", "m", "--trusted-key", &key]);
    assert!(
        e.contains("m@1.1.0 is not signed"),
        "latest is 1.1.0, not 1.0.0: {e}"
    );
    env.ok(&["alias", "set", "m@1.1.0", "prod"]);
    let e = env.fails(5, &["pull", "m@prod", "--trusted-key", &key]);
    assert!(e.contains("m@1.1.0 is not signed"), "{e}");
    env.ok(&["alias", "set", "m@1.0.0", "prod"]);
    env.ok(&["pull", "m@prod", "--trusted-key", &key]);
    env.ok(&["pull", "m@1.0.0", "--trusted-key", &key]);
}

#[test]
fn config_and_environment_forms() {
    let mut env = Env::new(Backend::Fs);
    let key = keygen(&env, "k");
    let other = keygen(&env, "other");
    let config = env.path("mvault.yaml");
    write_file(
        &config,
        b"cloud_storage:\n  signing:\n    key: k\n    trusted_keys: [other.pub, k.pub]\n",
    );
    // signing.key signs without a flag; signing.trusted_keys (relative to the file) checks.
    env.ok(&["push", s(&model(&env, 8)), "-n", "m", "-V", "1.0.0"]);
    assert_eq!(env.list_objects("models/m/signatures/").len(), 1);
    env.ok(&["pull", "m@1.0.0"]);
    // An unsigned version (pushed with another config: none) is refused by the config's keys.
    let plain = env.path("plain.yaml");
    write_file(&plain, b"cloud_storage: {}\n");
    env.ok(&[
        "-c",
        s(&plain),
        "push",
        s(&model(&env, 9)),
        "-n",
        "m",
        "-V",
        "2.0.0",
    ]);
    env.fails(5, &["pull", "m@2.0.0"]);
    // The environment wins over the config: only `other` trusted, so 1.0.0 is refused.
    env.set_var("MVAULT_TRUSTED_KEYS", &public(&other));
    let e = env.fails_in("cache2", 5, &["pull", "m@1.0.0"]);
    assert!(e.contains("not a trusted key"), "{e}");
    // A ':'-separated list; and the flag wins over both.
    env.set_var(
        "MVAULT_TRUSTED_KEYS",
        &format!("{}:{}", public(&other), public(&key)),
    );
    env.ok_in("cache3", &["pull", "m@1.0.0"]);
    env.fails_in(
        "cache4",
        5,
        &["pull", "m@1.0.0", "--trusted-key", &public(&other)],
    );
    // A bad key file is a usage error naming it.
    env.set_var("MVAULT_TRUSTED_KEYS", s(&key));
    let e = env.fails(2, &["pull", "m@1.0.0"]);
    assert!(e.contains("not a PEM ECDSA P-256 public key"), "{e}");
    env.unset_var("MVAULT_TRUSTED_KEYS");
    let e = env.fails(
        2,
        &[
            "push",
            s(&model(&env, 10)),
            "-n",
            "m",
            "-V",
            "3.0.0",
            "--sign-key",
            &public(&key),
        ],
    );
    assert!(
        e.contains("not an unencrypted PEM ECDSA P-256 private key"),
        "{e}"
    );
    assert!(
        env.list_objects("models/m/versions/").len() == 2,
        "nothing pushed"
    );
}

#[test]
fn verify_sync_and_rm_keep_signatures_with_their_versions() {
    let (a, key) = signed(Backend::Fs, 11);
    a.ok(&["verify", "m@1.0.0", "--trusted-key", &key]);
    a.ok(&["verify", "--trusted-key", &key]);
    let b = Env::new(Backend::Fs);
    a.ok(&[
        "sync",
        "--from",
        &a.remote,
        "--to",
        &b.remote,
        "--trusted-key",
        &key,
    ]);
    assert_eq!(
        b.read_object("models/m/signatures/1.0.0.sig"),
        a.read_object("models/m/signatures/1.0.0.sig")
    );
    b.ok(&["pull", "m@1.0.0", "--trusted-key", &key]);

    // An unsigned version: sync with trusted keys refuses it and copies nothing of it.
    a.ok(&["push", s(&model(&a, 12)), "-n", "m", "-V", "1.1.0"]);
    let e = a.fails(
        5,
        &[
            "sync",
            "--from",
            &a.remote,
            "--to",
            &b.remote,
            "--trusted-key",
            &key,
        ],
    );
    assert!(e.contains("m@1.1.0 is not signed"), "{e}");
    assert_eq!(b.list_objects("models/m/versions/").len(), 1);
    a.fails(5, &["verify", "m", "--trusted-key", &key]);

    // rm removes the signature with the manifest: the version can be pushed and signed again.
    a.ok(&["rm", "m@1.0.0"]);
    assert!(a.list_objects("models/m/signatures/").is_empty());
    let k = a.path("k");
    a.ok(&[
        "push",
        s(&model(&a, 13)),
        "-n",
        "m",
        "-V",
        "1.0.0",
        "--sign-key",
        s(&k),
    ]);
    a.ok_in("cache2", &["pull", "m@1.0.0", "--trusted-key", &key]);
}

/// A signature object without its manifest (left by an interrupted or older `rm`, or planted)
/// is garbage: a push of that version deletes it before uploading anything, so a signed push
/// publishes its own signature (until 2026-12-07 it exited 4 after publishing the version) and
/// an unsigned push an unsigned version (it looked signed); sync does the same on its
/// destination.
#[test]
fn a_stale_signature_object_never_stands_beside_a_new_version() {
    let (env, key) = signed(Backend::Fs, 14);
    let sig = |v: &str| format!("models/m/signatures/{v}.sig");
    let has_sig = |e: &Env, v: &str| {
        e.list_objects("models/m/signatures/")
            .iter()
            .any(|(k, _)| k.ends_with(&format!("/{v}.sig")))
    };
    let stale = env.read_object(&sig("1.0.0"));
    env.delete_object("models/m/versions/1.0.0.json");

    let k = env.path("k");
    let src = model(&env, 15);
    // A dry run only says so.
    let out = env.run(&["push", s(&src), "-n", "m", "-V", "1.0.0", "--dry-run"]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{e}");
    assert!(
        e.contains("would delete models/m/signatures/1.0.0.sig"),
        "{e}"
    );
    assert_eq!(env.read_object(&sig("1.0.0")), stale);
    let out = env.run(&[
        "push",
        s(&src),
        "-n",
        "m",
        "-V",
        "1.0.0",
        "--sign-key",
        s(&k),
    ]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{e}");
    assert!(e.contains("deleting models/m/signatures/1.0.0.sig"), "{e}");
    assert_ne!(env.read_object(&sig("1.0.0")), stale);
    let to = env.path("out");
    env.ok_in(
        "c2",
        &["pull", "m@1.0.0", "--to", s(&to), "--trusted-key", &key],
    );
    crate::common::assert_same_tree(&src, &to);

    env.write_object(&sig("1.1.0"), stale.clone());
    env.ok(&["push", s(&model(&env, 16)), "-n", "m", "-V", "1.1.0"]);
    assert!(!has_sig(&env, "1.1.0"));
    let info = env.json(&["info", "m@1.1.0"]);
    assert_eq!(info["signature"], serde_json::Value::Null, "{info}");

    // Sync: the destination's stale objects are replaced by the source's, or deleted.
    let b = Env::new(Backend::Fs);
    b.write_object(&sig("1.0.0"), b"garbage".to_vec());
    b.write_object(&sig("1.1.0"), stale);
    env.ok(&["sync", "--from", &env.remote, "--to", &b.remote]);
    assert_eq!(b.read_object(&sig("1.0.0")), env.read_object(&sig("1.0.0")));
    assert!(!has_sig(&b, "1.1.0"));
    b.ok(&["pull", "m@1.0.0", "--trusted-key", &key]);
}

/// The "Signatures" golden vector of `docs/FORMAT.md` states the fixture's values: the
/// manifest's SHA-256, each file's, and the subject digest R of the statement.
#[test]
fn format_md_states_the_signature_vector() {
    let doc = include_str!("../docs/FORMAT.md");
    let section = &doc[doc.find("## Signatures").expect("section")..];
    let section = &section[..section.find("\n## ").expect("next section")];
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/signing");
    let manifest_sha = sha256_hex(&format!("{dir}/manifest.json"));
    assert!(
        section.contains(&format!("(SHA-256 `{manifest_sha}`)")),
        "manifest SHA-256"
    );
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{dir}/statement.json")).unwrap()).unwrap();
    assert_eq!(
        st["predicate"]["mvault"]["manifest_sha256"],
        manifest_sha.as_str()
    );
    let r = st["subject"][0]["digest"]["sha256"].as_str().unwrap();
    assert!(
        section.contains(&format!("so R = `{r}`")),
        "subject digest {r}"
    );
    for res in st["predicate"]["resources"].as_array().unwrap() {
        let (name, digest) = (
            res["name"].as_str().unwrap(),
            res["digest"].as_str().unwrap(),
        );
        assert!(
            section.contains(&format!("`{digest}` (`{name}`)")),
            "{name} {digest}"
        );
    }
}
