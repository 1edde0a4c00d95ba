//! See the parent module. Issue 11, items 5 (bounded object reads), 6 (secrets in remote URLs),
//! 7 (alias revisions), 10 (control characters in human output) and 11 (exit codes by cause).

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Backend, Env, noise, write_file};

// --- helpers ---------------------------------------------------------------------------------

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Pushes `files` (relative path, bytes) as `name@version`.
fn push(env: &Env, name: &str, version: &str, files: &[(&str, &[u8])]) {
    let dir = env.path(&format!("src-{name}-{version}"));
    for (rel, data) in files {
        write_file(&dir.join(rel), data);
    }
    env.ok(&["push", s(&dir), "--name", name, "--version", version]);
}

/// The local path of a key of the env's fs vault.
fn object_path(env: &Env, key: &str) -> PathBuf {
    env.path("vault").join(key)
}

/// The key of the first chunk of the first file of `name@version`.
fn first_chunk_key(env: &Env, name: &str, version: &str) -> String {
    let raw = env.read_object(&format!("models/{name}/versions/{version}.json"));
    let m: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let id = m["files"][0]["chunks"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    format!("chunks/{}/{id}", &id[..2])
}

/// How a run of the binary under [`run_bounded`] ended.
struct Bounded {
    /// Exit code; `None` when killed.
    code: Option<i32>,
    stderr: String,
    /// Peak resident set size of the child in bytes: the highest `VmHWM` seen while it ran.
    peak_rss: u64,
    /// Why the child was killed, if it was.
    killed: Option<&'static str>,
    elapsed: Duration,
}

/// A `/proc/<pid>/status` field in bytes (0 once the process is gone).
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Runs `cmd` (stdout discarded, stderr kept) and polls its memory every 2 ms until it exits.
/// The peak is the child's own high-water mark (`VmHWM`; `wait4`'s `ru_maxrss` would include
/// the test process's memory, shared until the exec). The child is killed after `timeout`, or
/// as soon as its RSS passes `rss_cap` bytes, so a regression fails the test instead of
/// hanging CI or exhausting the machine's memory.
fn run_bounded(env: &Env, mut cmd: Command, timeout: Duration, rss_cap: u64) -> Bounded {
    let err_path = env.path(&format!("stderr-{:08x}", fastrand::u32(..)));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&err_path).unwrap());
    let started = Instant::now();
    let mut child = cmd.spawn().expect("mvault starts");
    let (mut peak_rss, mut killed) = (0, None);
    let status = loop {
        peak_rss = peak_rss.max(status_bytes(child.id(), "VmHWM:"));
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        let why = if started.elapsed() > timeout {
            Some("timeout")
        } else if status_bytes(child.id(), "VmRSS:") > rss_cap {
            Some("memory")
        } else {
            None
        };
        if why.is_some() {
            killed = why;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    Bounded {
        code: killed.is_none().then(|| status.code()).flatten(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        peak_rss,
        killed,
        elapsed: started.elapsed(),
    }
}

const MIB: u64 = 1 << 20;

// --- item 5: chunk, manifest and alias objects are read with a bound -------------------------

/// A chunk object of 160 MiB whose header claims 10 bytes: refused as damaged (exit 5), naming
/// the chunk, with the pull's peak memory far below the object's size (0.1.0 read it whole,
/// then copied it: ~3x its size).
#[test]
fn oversized_chunk_object_is_refused_with_bounded_memory() {
    let env = Env::new(Backend::Fs);
    push(&env, "m", "1.0.0", &[("w.bin", b"ten bytes!")]);
    let key = first_chunk_key(&env, "m", "1.0.0");
    let mut obj = Vec::with_capacity((160 * MIB) as usize + 16);
    obj.extend_from_slice(b"MVK1\0\0\0\0");
    obj.extend_from_slice(&10u64.to_le_bytes());
    obj.extend_from_slice(&noise(5, (160 * MIB) as usize));
    std::fs::write(object_path(&env, &key), &obj).unwrap();
    drop(obj);

    for args in [
        vec!["pull", "m@1.0.0", "--to", "out"],
        vec!["verify", "m@1.0.0"],
    ] {
        let mut cmd = env.cmd();
        cmd.args(&args);
        let r = run_bounded(&env, cmd, Duration::from_secs(120), 1024 * MIB);
        assert_eq!(r.killed, None, "{args:?} was killed; stderr: {}", r.stderr);
        assert_eq!(r.code, Some(5), "{args:?}: {}", r.stderr);
        let id = key.rsplit('/').next().unwrap();
        assert!(
            r.stderr.contains(id),
            "{args:?} names the chunk: {}",
            r.stderr
        );
        assert!(
            r.peak_rss < 256 * MIB,
            "{args:?}: peak RSS {} MiB for a 160 MiB hostile object",
            r.peak_rss / MIB
        );
    }
    assert!(!env.path("out/w.bin").exists(), "nothing placed");
}

/// A zstd bomb: a small chunk object whose payload decompresses to 1 GiB while its header
/// claims 200,000 bytes. Decoding stops at the claimed length (exit 5, nothing placed) and
/// memory stays bounded. (Already held by 0.1.0; kept here so it stays held.)
#[test]
fn zstd_bomb_chunk_is_refused_with_bounded_memory() {
    let env = Env::new(Backend::Fs);
    push(&env, "m", "1.0.0", &[("w.bin", &noise(6, 200_000))]);
    let key = first_chunk_key(&env, "m", "1.0.0");
    let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
    let zeros = vec![0u8; MIB as usize];
    for _ in 0..1024 {
        std::io::Write::write_all(&mut enc, &zeros).unwrap();
    }
    let payload = enc.finish().unwrap();
    assert!(payload.len() < 2 * MIB as usize, "a bomb is small");
    let mut obj = b"MVK1\x01\0\0\0".to_vec();
    obj.extend_from_slice(&200_000u64.to_le_bytes());
    obj.extend_from_slice(&payload);
    std::fs::write(object_path(&env, &key), &obj).unwrap();
    for args in [
        vec!["pull", "m@1.0.0", "--to", "out"],
        vec!["verify", "m@1.0.0"],
    ] {
        let mut cmd = env.cmd();
        cmd.args(&args);
        let r = run_bounded(&env, cmd, Duration::from_secs(60), 1024 * MIB);
        assert_eq!(r.killed, None, "{args:?} was killed; stderr: {}", r.stderr);
        assert_eq!(r.code, Some(5), "{args:?}: {}", r.stderr);
        assert!(
            r.peak_rss < 128 * MIB,
            "{args:?}: peak RSS {} MiB",
            r.peak_rss / MIB
        );
    }
    assert!(!env.path("out/w.bin").exists(), "nothing placed");
}

/// On a local vault a chunk that is a symlink to `/dev/zero` (0.1.0: read forever, memory
/// without bound) or a FIFO (0.1.0: hangs) is refused promptly as damaged.
#[test]
fn irregular_chunk_objects_are_refused_promptly() {
    for kind in ["symlink to /dev/zero", "fifo"] {
        let env = Env::new(Backend::Fs);
        push(&env, "m", "1.0.0", &[("w.bin", &noise(7, 50_000))]);
        let key = first_chunk_key(&env, "m", "1.0.0");
        let path = object_path(&env, &key);
        std::fs::remove_file(&path).unwrap();
        if kind == "fifo" {
            let c = std::ffi::CString::new(s(&path)).unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        } else {
            std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        }
        for args in [
            vec!["pull", "m@1.0.0", "--to", "out"],
            vec!["verify", "m@1.0.0"],
        ] {
            let mut cmd = env.cmd();
            cmd.args(&args);
            let r = run_bounded(&env, cmd, Duration::from_secs(20), 512 * MIB);
            assert_eq!(
                r.killed,
                None,
                "{kind}: {args:?} was killed after {:?} (peak {} MiB)",
                r.elapsed,
                r.peak_rss / MIB
            );
            assert_eq!(r.code, Some(5), "{kind}: {args:?}: {}", r.stderr);
            assert!(
                r.stderr.contains(&key) && r.stderr.contains("regular file"),
                "{kind}: names the object and the problem: {}",
                r.stderr
            );
        }
    }
}

/// Manifests and alias documents have a size bound too (documented in FORMAT.md): a huge
/// (sparse) manifest is refused at once, without reading it.
#[test]
fn oversized_manifest_is_refused_without_reading_it() {
    let env = Env::new(Backend::Fs);
    push(&env, "m", "1.0.0", &[("w.bin", b"x")]);
    let f = File::options()
        .write(true)
        .open(object_path(&env, "models/m/versions/1.0.0.json"))
        .unwrap();
    f.set_len(300 * MIB).unwrap(); // sparse: costs no disk
    drop(f);
    let mut cmd = env.cmd();
    cmd.args(["info", "m@1.0.0"]);
    let r = run_bounded(&env, cmd, Duration::from_secs(60), 1024 * MIB);
    assert_eq!(r.code, Some(5), "{}", r.stderr);
    assert!(
        r.stderr.contains("models/m/versions/1.0.0.json"),
        "{}",
        r.stderr
    );
    assert!(r.peak_rss < 128 * MIB, "peak {} MiB", r.peak_rss / MIB);
}

// --- item 6: secrets in remote URLs ----------------------------------------------------------

const SECRET: &str = "Sup3rS3cretValue42";

fn audit_text(env: &Env) -> String {
    std::fs::read_to_string(env.path("data/mvault/logs/audit.jsonl")).unwrap_or_default()
}

/// Runs `mvault -vv -r REMOTE list` with AWS credentials that are not the planted secret and
/// instance metadata disabled; asserts the exit code and that the secret is nowhere: stdout,
/// stderr, audit log.
fn leaks_nothing(env: &Env, remote: &str, code: i32) -> String {
    let mut c = env.cmd();
    c.env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "envsecretvalue")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["-vv", "-r", remote, "list"]);
    let o: Output = c.output().unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert_eq!(o.status.code(), Some(code), "{remote}: {err}");
    for (what, text) in [
        ("stdout", &out),
        ("stderr", &err),
        ("audit", &audit_text(env)),
    ] {
        assert!(!text.contains(SECRET), "{remote}: secret in {what}: {text}");
        assert!(!text.contains("envsecretvalue"), "{remote}: {what}: {text}");
    }
    err
}

/// A port nothing listens on (bound, then released).
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Typos in a remote URL never print or log a secret it carries: an upper-case scheme is
/// accepted (schemes are case-insensitive), an unknown scheme is refused with the URL redacted,
/// `word:/...` and `?` on a plain path are refused instead of creating a local vault named
/// after the URL, and user-info (in the URL or its endpoint) is refused, redacted.
#[test]
fn remote_url_typos_never_leak_secrets() {
    let env = Env::new(Backend::Fs);
    let port = dead_port();
    let ep = format!("endpoint=http://127.0.0.1:{port}&retries=0&timeout=5");

    // Upper-case scheme: an S3 remote like s3:// (the list fails: nothing listens there).
    let err = leaks_nothing(
        &env,
        &format!("S3://b/p?secret_key={SECRET}&access_key=AKIDEXAMPLE&{ep}"),
        1,
    );
    assert!(err.contains("s3://b/p"), "treated as s3://: {err}");

    // Unknown scheme.
    let err = leaks_nothing(&env, &format!("ftp://b/p?secret_key={SECRET}"), 2);
    assert!(err.contains("ftp://b/p"), "{err}");

    // URL-looking local paths: refused, and no directory is created.
    for typo in [
        format!("s3:/b/p?secret_key={SECRET}"),
        format!("gs:b/p?credential={SECRET}"),
        format!("./vault-dir?secret_key={SECRET}"),
    ] {
        let err = leaks_nothing(&env, &typo, 2);
        assert!(err.contains("remote"), "{typo}: {err}");
    }
    let entries: Vec<String> = std::fs::read_dir(env.tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !entries
            .iter()
            .any(|n| n.starts_with("s3:") || n.starts_with("gs:") || n.starts_with("vault-dir")),
        "a typo created a local vault: {entries:?}"
    );

    // Credentials in the URL or in the endpoint.
    for url in [
        format!("s3://AKIDEXAMPLE:{SECRET}@bucket/p?{ep}"),
        format!("s3://b/p?endpoint=http://user:{SECRET}@127.0.0.1:{port}&retries=0"),
    ] {
        let err = leaks_nothing(&env, &url, 2);
        assert!(err.contains("credentials"), "{url}: {err}");
    }
}

/// A config provider whose endpoint carries user-info: `remotes` shows it redacted, using it
/// is refused (exit 2), and nothing prints the password.
#[test]
fn endpoint_credentials_in_config_are_refused_and_redacted() {
    let env = Env::new(Backend::Fs);
    let yaml = format!(
        "cloud_storage:\n  providers:\n    - name: p\n      type: s3\n      config:\n        bucket: b\n        endpoint: \"http://user:{SECRET}@127.0.0.1:{}\"\n",
        dead_port()
    );
    write_file(&env.path("mvault.yaml"), yaml.as_bytes());
    for args in [
        vec!["remotes"],
        vec!["--json", "remotes"],
        vec!["-vv", "-r", "p", "list"],
    ] {
        let o = env.cmd().args(&args).output().unwrap();
        let all = format!(
            "{}{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            audit_text(&env)
        );
        assert!(!all.contains(SECRET), "{args:?}: {all}");
        if args.contains(&"list") {
            assert_eq!(o.status.code(), Some(2), "{all}");
            assert!(all.contains("credentials"), "{all}");
        }
    }
}

/// The audit log and its lock are created mode 0600, and an existing log's mode is tightened.
#[test]
fn audit_log_is_private() {
    let env = Env::new(Backend::Fs);
    let log = env.path("data/mvault/logs/audit.jsonl");
    env.ok(&["list"]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&log), 0o600, "new audit log");
    assert_eq!(mode(&log.with_extension("lock")), 0o600, "lock file");
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o644)).unwrap();
    env.ok(&["list"]);
    assert_eq!(mode(&log), 0o600, "existing audit log tightened");
}

// --- item 7: alias revisions -----------------------------------------------------------------

fn alias_dir(env: &Env, alias: &str) -> PathBuf {
    object_path(env, &format!("models/m/aliases/{alias}"))
}

/// A well-formed revision document of alias `prod` of `m` pointing at `version`.
fn revision_doc(revision: u64, version: &str) -> String {
    serde_json::json!({
        "format": 1, "alias": "prod", "model_name": "m", "version": version,
        "history": [{"version": version, "set_at": "2026-01-01T00:00:00Z",
                     "set_by": "x@y", "action": "set"}],
        "revision": revision,
    })
    .to_string()
}

fn two_versions(env: &Env) {
    push(env, "m", "1.0.0", &[("a", b"one")]);
    push(env, "m", "2.0.0", &[("a", b"two")]);
}

/// A revision numbered u64::MAX: the next `alias set` must not wrap to revision 0 and report
/// success (0.1.0 did, and nothing changed); it is refused as damage naming the object.
#[test]
fn alias_revision_overflow_is_refused() {
    let env = Env::new(Backend::Fs);
    two_versions(&env);
    env.ok(&["alias", "set", "m@1.0.0", "prod"]);
    let max = u64::MAX;
    write_file(
        &alias_dir(&env, "prod").join(format!("{max}.json")),
        revision_doc(max, "1.0.0").as_bytes(),
    );
    for force in [false, true] {
        let mut args = vec!["alias", "set", "m@2.0.0", "prod"];
        if force {
            args.push("--force");
        }
        let e = env.fails(5, &args);
        assert!(e.contains(&max.to_string()), "names the revision: {e}");
    }
    assert!(
        !alias_dir(&env, "prod")
            .join(format!("{:020}.json", 0))
            .exists()
    );
    let a = env.json(&["alias", "ls", "m"]);
    assert_eq!(a[0]["version"], "1.0.0");
}

/// An unparsable revision bricked `alias set`, `rollback` and `versions` forever in 0.1.0.
/// Now: `versions` lists the versions (warning), `alias set`/`rollback` refuse and point at
/// `--force`, which writes past the damaged revision with a warning naming it.
#[test]
fn damaged_alias_revision_has_a_way_out() {
    let env = Env::new(Backend::Fs);
    two_versions(&env);
    env.ok(&["alias", "set", "m@1.0.0", "prod"]);
    let bad = format!("{:020}.json", 2);
    write_file(&alias_dir(&env, "prod").join(&bad), b"{not json");

    let out = env.cmd().args(["versions", "m"]).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "versions: {stderr}");
    assert!(
        stdout.contains("1.0.0") && stdout.contains("2.0.0"),
        "{stdout}"
    );
    assert!(stderr.contains(&bad), "versions warns: {stderr}");

    let e = env.fails(5, &["alias", "set", "m@2.0.0", "prod"]);
    assert!(e.contains(&bad) && e.contains("--force"), "{e}");
    env.fails(5, &["rollback", "m", "prod"]);

    let out = env
        .cmd()
        .args(["alias", "set", "m@2.0.0", "prod", "--force"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains(&bad),
        "{stderr}"
    );
    let a = env.json(&["alias", "ls", "m"]);
    assert_eq!(a[0]["version"], "2.0.0");
    assert_eq!(a[0]["revision"], 3);
    assert_eq!(a[0]["history"].as_array().unwrap().len(), 2, "{a}");

    // rollback --force likewise, past a damaged revision 4.
    write_file(
        &alias_dir(&env, "prod").join(format!("{:020}.json", 4)),
        b"[]",
    );
    env.fails(5, &["rollback", "m", "prod"]);
    env.ok(&["rollback", "m", "prod", "--force"]);
    let a = env.json(&["alias", "ls", "m"]);
    assert_eq!(
        (a[0]["version"].as_str(), a[0]["revision"].as_u64()),
        (Some("1.0.0"), Some(5))
    );
}

/// Stray entries under `aliases/` (a directory that is no valid alias name, a directory where
/// the next revision would go) do not brick the model: `versions` works with a warning,
/// `alias set --force` writes past the stray revision number.
#[test]
fn stray_alias_entries_do_not_brick_the_model() {
    let env = Env::new(Backend::Fs);
    two_versions(&env);
    env.ok(&["alias", "set", "m@1.0.0", "prod"]);
    write_file(&object_path(&env, "models/m/aliases/Not Valid/x"), b"x");
    write_file(
        &alias_dir(&env, "prod").join(format!("{:020}.json/x", 2)),
        b"x",
    );

    let out = env.cmd().args(["versions", "m"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "versions: {stderr}");
    assert!(stderr.contains("Not Valid"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("2.0.0"));

    let e = env.fails(5, &["alias", "set", "m@2.0.0", "prod"]);
    assert!(e.contains("--force"), "{e}");
    env.ok(&["alias", "set", "m@2.0.0", "prod", "--force"]);
    assert!(
        alias_dir(&env, "prod")
            .join(format!("{:020}.json", 3))
            .is_file()
    );
    // `alias ls` and `prune` must see every alias: they still refuse the invalid name.
    let e = env.fails(5, &["alias", "ls", "m"]);
    assert!(e.contains("Not Valid"), "{e}");
}

// --- item 10: control characters in human output ---------------------------------------------

/// Terminal escape sequences and other control characters in bucket- or user-supplied strings
/// (description, tags, metric keys, created_by, alias set_by) are printed escaped by `info`,
/// `versions` and `alias ls` (always, not only on a terminal); `--json` keeps them exact.
#[test]
fn control_characters_are_escaped_in_human_output() {
    let env = Env::new(Backend::Fs);
    let desc = "title\x1b]0;pwn\x07\x1b[31mred\u{9b}2J\nfake: line";
    let src = env.path("src");
    write_file(&src.join("a.bin"), b"data");
    let mut c = env.cmd();
    c.env("USER", "ev\x1b[2Jil").args([
        "push",
        s(&src),
        "--name",
        "m",
        "--version",
        "1.0.0",
        "--description",
        desc,
        "--tag",
        "team=nlp\rOWNED",
        "--metric",
        "ac\x1bc=1",
    ]);
    assert!(c.output().unwrap().status.success());
    let mut c = env.cmd();
    c.env("USER", "ad\x07min")
        .args(["alias", "set", "m@1.0.0", "prod"]);
    assert!(c.output().unwrap().status.success());

    for args in [
        vec!["info", "m@1.0.0"],
        vec!["versions", "m"],
        vec!["alias", "ls", "m"],
    ] {
        let out = env.ok(&args);
        for bad in ['\x1b', '\x07', '\r', '\u{9b}'] {
            assert!(!out.contains(bad), "{args:?} prints {bad:?} raw: {out:?}");
        }
        assert!(
            !out.contains("\nfake: line"),
            "{args:?}: a newline in a value: {out:?}"
        );
        if args[0] != "alias" {
            assert!(
                out.contains("\\x1b]0;pwn\\x07"),
                "{args:?} escapes: {out:?}"
            );
        }
    }
    assert!(env.ok(&["info", "m@1.0.0"]).contains("team=nlp\\rOWNED"));
    let j = env.json(&["info", "m@1.0.0"]);
    assert_eq!(j["description"], desc, "--json is exact");
    assert_eq!(j["tags"]["team"], "nlp\rOWNED");
}

// --- item 11: exit codes by cause ------------------------------------------------------------

/// Every exit code of the contract, each by a typical cause: 0 ok, 1 runtime failure (remote
/// unreachable, local I/O error), 2 usage, 3 not found, 4 conflict, 5 integrity.
#[test]
fn exit_codes_by_cause() {
    let env = Env::new(Backend::Fs);
    push(&env, "m", "1.0.0", &[("a.bin", &noise(11, 30_000))]);
    // 0
    env.ok(&["list"]);
    // 1: remote unreachable
    let mut c = env.cmd();
    c.env("AWS_ACCESS_KEY_ID", "k")
        .env("AWS_SECRET_ACCESS_KEY", "s")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args([
            "-r",
            &format!(
                "s3://b/p?endpoint=http://127.0.0.1:{}&retries=0",
                dead_port()
            ),
            "list",
        ]);
    assert_eq!(c.output().unwrap().status.code(), Some(1));
    // 1: the cache directory cannot be created (a regular file is in the way)
    write_file(&env.path("not-a-dir"), b"x");
    env.fails(
        1,
        &[
            "--cache-dir",
            s(&env.path("not-a-dir/cache")),
            "pull",
            "m@1.0.0",
            "--to",
            "o1",
        ],
    );
    // 2
    env.fails(2, &["push", "x", "--name", "m", "--version", "one"]);
    env.fails(2, &["list", "--no-such-flag"]);
    env.fails(2, &["-r", "file:///tmp/v?bogus=1", "list"]);
    // 3
    env.fails(3, &["pull", "nosuch@1.0.0"]);
    env.fails(3, &["info", "m@9.9.9"]);
    // 4
    let e = env.fails(
        4,
        &[
            "push",
            s(&env.path("src-m-1.0.0")),
            "--name",
            "m",
            "--version",
            "1.0.0",
        ],
    );
    assert!(e.contains("already exists"), "{e}");
    // 5
    let key = first_chunk_key(&env, "m", "1.0.0");
    let mut obj = std::fs::read(object_path(&env, &key)).unwrap();
    let last = obj.len() - 1;
    obj[last] ^= 1;
    std::fs::write(object_path(&env, &key), obj).unwrap();
    env.fails(5, &["pull", "m@1.0.0", "--to", "o2"]);
}

/// Every config error is a usage error (exit 2), whatever the path that finds it: missing
/// file, bad YAML, unknown key, missing `${VAR}`, disabled provider, bad remote option.
#[test]
fn every_config_error_exits_2() {
    let env = Env::new(Backend::Fs);
    let file = env.path("cfg.yaml");
    let cases = [
        ("missing file", None, vec!["list"]),
        ("bad YAML", Some("cloud_storage: [unclosed\n"), vec!["list"]),
        (
            "unknown key",
            Some("cloud_storage:\n  bogus: 1\n"),
            vec!["list"],
        ),
        (
            "unknown key in a provider",
            Some(
                "cloud_storage:\n  providers:\n    - name: p\n      type: fs\n      config: {path: /tmp/x, regoin: y}\n",
            ),
            vec!["list"],
        ),
        (
            "missing variable",
            Some(
                "cloud_storage:\n  providers:\n    - name: p\n      type: s3\n      config: {bucket: \"${MVT_SURELY_UNSET}\"}\n",
            ),
            vec!["-r", "p", "list"],
        ),
        (
            "disabled provider",
            Some(
                "cloud_storage:\n  providers:\n    - name: p\n      type: fs\n      enabled: false\n      config: {path: /tmp/x}\n",
            ),
            vec!["-r", "p", "list"],
        ),
        (
            "bad remote option",
            Some(
                "cloud_storage:\n  providers:\n    - name: p\n      type: s3\n      config: {bucket: b, timeout: soon}\n",
            ),
            vec!["-r", "p", "list"],
        ),
        (
            "bad cache size",
            Some("cloud_storage:\n  cache: {max_size: lots}\n"),
            vec!["cache", "ls"],
        ),
    ];
    for (cause, yaml, args) in cases {
        match yaml {
            Some(y) => std::fs::write(&file, y).unwrap(),
            None => {
                let _ = std::fs::remove_file(&file);
            }
        }
        let mut all = vec!["-c", s(&file)];
        all.extend(args.iter());
        let o = env.cmd().args(&all).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{cause}: {err}");
        assert!(err.contains("cfg.yaml"), "{cause}: names the file: {err}");
    }
}

/// A local I/O error reading a push input (permission denied; as root, which reads anything,
/// an input that fails with EIO) is a runtime failure (exit 1), not a usage error: 0.1.0
/// exited 2. Needs push's worker to keep the error's kind (see the report of this change).
#[test]
fn local_read_error_at_push_exits_1() {
    let env = Env::new(Backend::Fs);
    // SAFETY: geteuid has no preconditions.
    let input = if unsafe { libc::geteuid() } == 0 {
        // Reading a process's own memory at offset 0 (unmapped) fails with EIO.
        PathBuf::from("/proc/self/mem")
    } else {
        let p = env.path("secret.bin");
        write_file(&p, b"data");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
        p
    };
    let e = env.fails(1, &["push", s(&input), "--name", "m", "--version", "1.0.0"]);
    assert!(e.contains(s(&input)), "names the file: {e}");
}

/// A local file whose name cannot be a manifest path (a backslash) is a usage error at push
/// (exit 2; 0.1.0 exited 5, as if the vault were damaged). Passes once push validates its
/// inputs as `transfer::Error::Input` (the lead's part of issue 11).
#[test]
fn bad_local_file_name_at_push_exits_2() {
    let env = Env::new(Backend::Fs);
    let dir = env.path("src");
    write_file(&dir.join("ok.bin"), b"ok");
    write_file(&dir.join("back\\slash.bin"), b"bad");
    let e = env.fails(2, &["push", s(&dir), "--name", "m", "--version", "1.0.0"]);
    assert!(e.contains("back\\slash.bin"), "{e}");
}

/// A newcomer with no credentials gets one line naming the sources tried and how to give
/// one, not a dump of the credential loader's state (that is logged with `-v` only); with
/// `--json` the same failure is a typed document on stdout. Instance metadata is disabled,
/// so nothing leaves the machine.
#[test]
fn missing_credentials_are_one_actionable_line() {
    let env = Env::new(Backend::Fs);
    let remote = format!(
        "s3://bucket/p?endpoint=http://127.0.0.1:{}&region=us-east-1",
        dead_port()
    );
    let run = |args: &[&str]| {
        env.cmd()
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args(["-r", &remote])
            .args(args)
            .output()
            .expect("mvault runs")
    };
    let out = run(&["list"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("no S3 credentials found"), "{err}");
    assert!(
        err.contains("AWS_ACCESS_KEY_ID"),
        "names the sources: {err}"
    );
    assert!(
        !err.contains("WARN") && !err.contains('{'),
        "no debug dump: {err}"
    );

    // The same for a provider of the config file (its display name is only "prod").
    let config = env.path("mvault.yaml");
    let port = dead_port();
    std::fs::write(
        &config,
        format!(
            "cloud_storage:\n  providers:\n    - name: prod\n      type: s3\n      config:\n        \
             bucket: b\n        region: us-east-1\n        endpoint: http://127.0.0.1:{port}\n"
        ),
    )
    .unwrap();
    let out = env
        .cmd()
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["-c", s(&config), "-r", "prod", "list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no S3 credentials found"), "{err}");

    let verbose = run(&["-v", "list"]);
    let err = String::from_utf8_lossy(&verbose.stderr);
    assert!(err.contains("failed to load signing credential"), "{err}");

    let json = run(&["--json", "list"]);
    assert_eq!(json.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON on stdout");
    assert_eq!(doc["error"]["category"], "failure", "{doc}");
    assert_eq!(doc["error"]["exit_code"], 1, "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no S3 credentials found")),
        "{doc}"
    );
}

/// In a container with no `$USER`, `created_by` names the uid's passwd entry (or the uid).
#[test]
fn created_by_without_user_variables() {
    let env = Env::new(Backend::Fs);
    let src = env.path("m");
    write_file(&src.join("w.bin"), b"weights");
    let out = env
        .cmd()
        .env_remove("USER")
        .args(["push", s(&src), "--name", "m", "--version", "1.0.0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let info = env.json(&["info", "m@1.0.0"]);
    let user = info["created_by"]["user"].as_str().unwrap().to_string();
    let uid = rustix::process::getuid().as_raw();
    let expected = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| uid.to_string());
    assert_eq!(user, expected);
    assert_ne!(user, "unknown");
}

/// A file whose size the system reports as 0 but that has content (under /proc) is refused as
/// changed while being pushed (exit 2), never published as an empty file with the digest of
/// its content.
#[test]
fn file_of_unreported_size_is_refused_not_published() {
    let env = Env::new(Backend::Fs);
    let e = env.fails(
        2,
        &[
            "push",
            "/proc/self/status",
            "--name",
            "m",
            "--version",
            "1.0.0",
        ],
    );
    assert!(e.contains("changed while being pushed"), "{e}");
    env.fails(3, &["info", "m@1.0.0"]);
}
