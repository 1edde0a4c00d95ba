//! Operations end to end, with the real binary: the config file and several providers
//! (issue 3: `--provider a,b`, `--all-providers`, disabled providers, per-remote failures,
//! config errors with file and line, secrets never printed, `sync`), and the model lifecycle
//! (issue 6: aliases with history and rollback, concurrent alias writers, `verify`, `gc` with
//! its grace period, `prune`, `usage`), plus version ranges.
//!
//! Tests named `fs_*` need nothing but the binary; `s3_*` tests need moto (run them through
//! `scripts/test.sh --test e2e -- ops::`, which exports `MVAULT_TEST_*`; without it they fail).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::{Backend, Env, assert_same_tree, dead_port, noise, required, s, write_file};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Helpers

fn stdout_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs a prepared command with `args`.
fn exec(mut c: Command, args: &[&str]) -> Output {
    c.args(args).output().expect("mvault runs")
}

/// Asserts the exit code of an output.
fn expect_code(o: &Output, args: &[&str], code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "mvault {args:?}: expected exit {code}\nstdout: {}\nstderr: {}",
        stdout_of(o),
        stderr_of(o)
    );
}

/// Runs `c args`, asserts exit `code`, returns the output.
fn exec_code(c: Command, args: &[&str], code: i32) -> Output {
    let o = exec(c, args);
    expect_code(&o, args, code);
    o
}

/// Parses stdout as one JSON document.
fn json_of(o: &Output, args: &[&str]) -> Value {
    serde_json::from_str(&stdout_of(o)).unwrap_or_else(|e| {
        panic!(
            "mvault {args:?}: stdout is not JSON ({e}):\n{}\nstderr: {}",
            stdout_of(o),
            stderr_of(o)
        )
    })
}

/// A JSON-lines stdout (`push --json`: one object per version pushed), as an array.
fn json_lines_of(o: &Output, args: &[&str]) -> Value {
    stdout_of(o)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("mvault {args:?}: a stdout line is not JSON ({e}): {l}"))
        })
        .collect()
}

/// `mvault --json ARGS` with the given exit code, stdout parsed.
fn json_code(env: &Env, args: &[&str], code: i32) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let o = exec_code(env.cmd(), &all, code);
    json_of(&o, &all)
}

/// A command without `MVAULT_REMOTE` (so the config file decides), with extra variables.
fn cfg_cmd(env: &Env, vars: &[(&str, &str)]) -> Command {
    let mut c = env.cmd();
    c.env_remove("MVAULT_REMOTE");
    for (k, v) in vars {
        c.env(k, v);
    }
    c
}

/// A fresh, not yet existing directory under the test's temp dir.
fn fresh(env: &Env, tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    env.path(&format!(
        "fresh/{tag}-{}",
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Writes a source directory of seeded files `(relative path, seed, length)`.
fn seed_dir(env: &Env, rel: &str, files: &[(&str, u64, usize)]) -> PathBuf {
    let dir = env.path(rel);
    for (name, seed, len) in files {
        write_file(&dir.join(name), &noise(*seed, *len));
    }
    dir
}

/// `push DIR --name NAME --version VERSION` on the env's remote.
fn push(env: &Env, dir: &Path, name: &str, version: &str) {
    env.ok(&["push", s(dir), "--name", name, "--version", version]);
}

/// Pulls `model` into a fresh directory with a fresh cache (so the remote is really read),
/// asserts the files equal `src`, returns the `--json` output.
fn pull_same(env: &Env, c: Command, pre: &[&str], model: &str, src: &Path) -> Value {
    let to = fresh(env, "pull");
    let cache = fresh(env, "cache");
    let mut args: Vec<&str> = vec!["--json", "--cache-dir", s(&cache)];
    args.extend_from_slice(pre);
    args.extend_from_slice(&["pull", model, "--to", s(&to)]);
    let o = exec_code(c, &args, 0);
    assert_same_tree(src, &to);
    json_of(&o, &args)
}

/// Pulls `model` with the env's own cache (as a user would), asserts the files equal `src`.
fn pull_cached(env: &Env, model: &str, src: &Path) -> Value {
    let to = fresh(env, "pull");
    let v = env.json(&["pull", model, "--to", s(&to)]);
    assert_same_tree(src, &to);
    v
}

/// Chunk objects on the remote: key → stored size.
fn chunks(env: &Env) -> BTreeMap<String, u64> {
    env.list_objects("chunks/").into_iter().collect()
}

/// Keys in `after` and not in `before`.
fn added(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeSet<String> {
    after
        .keys()
        .filter(|k| !before.contains_key(*k))
        .cloned()
        .collect()
}

/// Versions of `name` per `versions --json`.
fn versions_of(env: &Env, name: &str) -> Vec<String> {
    env.json(&["versions", name])
        .as_array()
        .expect("versions --json is an array")
        .iter()
        .map(|v| v["version"].as_str().expect("version").to_string())
        .collect()
}

/// moto's endpoint, bucket, and a prefix of our own.
fn moto() -> (String, String, String) {
    (
        required("MVAULT_TEST_S3_ENDPOINT"),
        required("MVAULT_TEST_S3_BUCKET"),
        format!("ops{:016x}", fastrand::u64(..)),
    )
}

/// Stores with whole-second modification times may report a just-written object as written
/// slightly in the future; wait so `--grace 0s` sees it as old.
fn settle(b: Backend) {
    if b != Backend::Fs {
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
}

// ---------------------------------------------------------------------------------------------
// Config file and several providers (issue 3)

/// Config with two fs providers, one s3 provider on moto (credentials interpolated), a
/// disabled one, and optionally one whose endpoint is dead.
fn multi_config(env: &Env, ep: &str, bucket: &str, prefix: &str, dead: Option<u16>) -> String {
    let mut y = format!(
        "cloud_storage:
  default_provider: fsb
  providers:
    - name: fsa
      type: fs
      config:
        path: {a}
    - name: fsb
      type: fs
      config: {{ path: \"{b}\" }}
    - name: s3
      type: s3
      config:
        bucket: {bucket}
        prefix: {prefix}
        endpoint: {ep}
        region: us-east-1
        access_key: \"${{MY_KEY}}\"
        secret_key: \"${{MY_SECRET}}\"
    - name: off
      type: fs
      enabled: false
      config:
        path: {off}
",
        a = env.path("va").display(),
        b = env.path("vb").display(),
        off = env.path("voff").display(),
    );
    if let Some(port) = dead {
        y.push_str(&format!(
            "    - name: dead
      type: s3
      config:
        bucket: {bucket}
        prefix: {prefix}
        endpoint: http://127.0.0.1:{port}
        access_key: \"${{MY_KEY}}\"
        secret_key: \"${{MY_SECRET}}\"
"
        ));
    }
    y
}

const MY_VARS: &[(&str, &str)] = &[
    ("MY_KEY", "AKIAMYKEY0000042"),
    ("MY_SECRET", "S3CR3T-do-not-print-12345"),
];

/// Item 1: `--provider a,b`, `--all-providers`, `default_provider`, disabled providers, and one
/// failing remote among several.
#[test]
fn s3_config_multi_provider_push() {
    let env = Env::new(Backend::Fs);
    let (ep, bucket, prefix) = moto();
    std::fs::write(
        env.path("mvault.yaml"),
        multi_config(&env, &ep, &bucket, &prefix, None),
    )
    .unwrap();
    let c = || cfg_cmd(&env, MY_VARS);
    let src1 = seed_dir(
        &env,
        "src1",
        &[("w.bin", 11, 1_500_000), ("cfg/a.json", 12, 900)],
    );
    let src2 = seed_dir(&env, "src2", &[("w.bin", 21, 1_200_000)]);
    let src3 = seed_dir(&env, "src3", &[("w.bin", 31, 700_000)]);

    // --provider a,b: both get it, the others do not.
    let args = [
        "--json",
        "push",
        s(&src1),
        "--name",
        "m",
        "--version",
        "1.0.0",
        "--provider",
        "fsa,fsb",
    ];
    let o = exec_code(c(), &args, 0);
    let j = json_lines_of(&o, &args);
    let remotes: BTreeSet<&str> = j
        .as_array()
        .unwrap_or_else(|| panic!("push to two remotes --json: a line per remote: {j}"))
        .iter()
        .map(|r| r["remote"].as_str().unwrap())
        .collect();
    assert_eq!(remotes, BTreeSet::from(["fsa", "fsb"]), "{j}");
    for r in ["fsa", "fsb"] {
        let v = pull_same(&env, c(), &["--remote", r], "m@1.0.0", &src1);
        assert_eq!(v["version"], "1.0.0");
    }
    exec_code(c(), &["versions", "m", "--remote", "s3"], 3);
    assert!(
        !env.path("voff/models").exists(),
        "disabled provider was written to"
    );

    // Exactly one named: only that one; without --remote the default provider (fsb) is used.
    exec_code(
        c(),
        &[
            "push",
            s(&src3),
            "--name",
            "m",
            "--version",
            "1.5.0",
            "--remote",
            "fsb",
        ],
        0,
    );
    let o = exec_code(c(), &["--json", "versions", "m"], 0);
    assert!(
        stdout_of(&o).contains("1.5.0"),
        "default provider fsb: {}",
        stdout_of(&o)
    );
    let o = exec_code(c(), &["--json", "versions", "m", "--remote", "fsa"], 0);
    assert!(
        !stdout_of(&o).contains("1.5.0"),
        "fsa got a push for fsb: {}",
        stdout_of(&o)
    );

    // --all-providers: every enabled provider, never the disabled one.
    let args = [
        "--json",
        "push",
        s(&src2),
        "--name",
        "m",
        "--version",
        "2.0.0",
        "--all-providers",
    ];
    let o = exec_code(c(), &args, 0);
    let j = json_lines_of(&o, &args);
    let remotes: BTreeSet<&str> = j
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["remote"].as_str().unwrap())
        .collect();
    assert_eq!(remotes, BTreeSet::from(["fsa", "fsb", "s3"]), "{j}");
    for r in ["fsa", "fsb", "s3"] {
        pull_same(&env, c(), &["--remote", r], "m@2.0.0", &src2);
    }
    assert!(
        !env.path("voff/models").exists(),
        "--all-providers wrote to a disabled provider"
    );
    // The s3 provider really is moto under our prefix.
    let direct = format!("s3://{bucket}/{prefix}?endpoint={ep}&region=us-east-1");
    let mut d = cfg_cmd(
        &env,
        &[("AWS_ACCESS_KEY_ID", "x"), ("AWS_SECRET_ACCESS_KEY", "y")],
    );
    d.env("MVAULT_REMOTE", &direct);
    let o = exec_code(d, &["--json", "versions", "m"], 0);
    assert!(
        stdout_of(&o).contains("2.0.0") && !stdout_of(&o).contains("1.0.0"),
        "{}",
        stdout_of(&o)
    );

    // A disabled provider selected by name: a clear error naming it; nothing pushed anywhere.
    for sel in ["off", "fsa,off"] {
        let args = [
            "push",
            s(&src3),
            "--name",
            "m",
            "--version",
            "3.0.0",
            "--provider",
            sel,
        ];
        let o = exec(c(), &args);
        assert_ne!(o.status.code(), Some(0), "{sel}: {}", stderr_of(&o));
        let e = stderr_of(&o);
        assert!(e.contains("off") && e.contains("disabled"), "{sel}: {e}");
    }
    exec_code(c(), &["info", "m@3.0.0", "--remote", "fsa"], 3);
    exec_code(c(), &["list", "--remote", "off"], 2);

    // One remote failing (dead endpoint): reported for it, non-zero exit, the others complete.
    let port = dead_port();
    let other = env.path("other.yaml");
    std::fs::write(
        &other,
        multi_config(&env, &ep, &bucket, &prefix, Some(port)),
    )
    .unwrap();
    let args = [
        "--json",
        "-c",
        s(&other),
        "push",
        s(&src3),
        "--name",
        "m",
        "--version",
        "3.0.0",
        "--provider",
        "fsa,dead,fsb",
    ];
    let o = exec(c(), &args);
    assert!(
        matches!(o.status.code(), Some(c) if c != 0),
        "a failed remote must fail the push: {:?}\n{}",
        o.status.code(),
        stderr_of(&o)
    );
    let e = stderr_of(&o);
    assert!(e.contains("dead"), "the failing remote is named: {e}");
    assert!(
        !e.contains("on fsa") && !e.contains("on fsb"),
        "only dead failed: {e}"
    );
    let j = json_lines_of(&o, &args);
    let rows = j.as_array().unwrap_or_else(|| panic!("{j}"));
    assert_eq!(rows.len(), 3, "{j}");
    for r in rows {
        let failed = r.get("error").is_some_and(|e| !e.is_null());
        assert_eq!(failed, r["remote"] == "dead", "{j}");
    }
    for r in ["fsa", "fsb"] {
        pull_same(&env, c(), &["--remote", r], "m@3.0.0", &src3);
    }
    // --all-providers with the dead one: the same, for all of them.
    let args = [
        "-c",
        s(&other),
        "push",
        s(&src1),
        "--name",
        "m",
        "--version",
        "4.0.0",
        "--all-providers",
    ];
    let o = exec(c(), &args);
    assert_ne!(o.status.code(), Some(0), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("dead"), "{}", stderr_of(&o));
    for r in ["fsa", "fsb", "s3"] {
        pull_same(&env, c(), &["--remote", r], "m@4.0.0", &src1);
    }

    // sync between providers by name: fsa has 1.0.0 and 3.0.0 that s3 lacks.
    let args = ["--json", "sync", "--from", "fsa", "--to", "s3", "m"];
    let j = json_of(&exec_code(c(), &args, 0), &args);
    let copied: BTreeSet<&str> = j["copied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(copied, BTreeSet::from(["m@1.0.0", "m@3.0.0"]), "{j}");
    pull_same(&env, c(), &["--remote", "s3"], "m@3.0.0", &src3);
}

/// Item 2: Config errors name the file, the line and the key; unknown providers exit 2 and list
/// the known ones. Also the search order of the config file.
#[test]
fn fs_config_errors_and_search_order() {
    let env = Env::new(Backend::Fs);
    let file = env.path("mvault.yaml");
    let fails = |yaml: &str, args: &[&str], vars: &[(&str, &str)]| -> (Option<i32>, String) {
        std::fs::write(&file, yaml).unwrap();
        let o = exec(cfg_cmd(&env, vars), args);
        let e = stderr_of(&o);
        assert!(
            matches!(o.status.code(), Some(1 | 2)),
            "{args:?} with {yaml:?}: expected a clean failure, got {:?}\n{e}",
            o.status.code()
        );
        assert!(e.contains(s(&file)), "error names the file: {e}");
        (o.status.code(), e)
    };

    // Bad YAML, line 4 (even when the remote is a URL: the file is read anyway).
    let (_, e) = fails(
        "cloud_storage:\n  providers:\n    - name: a\n   type: s3\n",
        &["list", "--remote", "file:///nonexistent/v"],
        &[],
    );
    assert!(e.contains("mvault.yaml:4"), "line of the bad YAML: {e}");

    // Unknown key, line 7.
    let (_, e) = fails(
        "cloud_storage:\n  providers:\n    - name: a\n      type: s3\n      config:\n        bucket: b\n        regoin: x\n",
        &["list"],
        &[],
    );
    assert!(e.contains("regoin") && e.contains("mvault.yaml:7"), "{e}");

    // Missing ${VAR}: named with its key and line when the provider is used, while another
    // provider of the same file works; ${VAR:-default} and a set variable work.
    let yaml = format!(
        "cloud_storage:
  providers:
    - name: p
      type: s3
      config:
        bucket: b
        secret_key: \"${{MVT_UNSET_SECRET}}\"
    - name: q
      type: fs
      config:
        path: \"${{MVT_UNSET_BASE:-{tmp}}}/vq\"
    - name: r
      type: fs
      config:
        path: \"${{MVT_BASE}}/vr\"
",
        tmp = env.path("").display()
    );
    let (_, e) = fails(
        &yaml,
        &["list", "--remote", "p"],
        &[("MVT_BASE", s(env.tmp.path()))],
    );
    assert!(
        e.contains("MVT_UNSET_SECRET") && e.contains("secret_key") && e.contains("mvault.yaml:7"),
        "{e}"
    );
    let src = seed_dir(&env, "src", &[("x.bin", 1, 20_000)]);
    let vars = [("MVT_BASE", s(env.tmp.path()))];
    for (remote, dir) in [("q", "vq"), ("r", "vr")] {
        let args = [
            "push",
            s(&src),
            "--name",
            "m",
            "--version",
            "1.0.0",
            "--remote",
            remote,
        ];
        exec_code(cfg_cmd(&env, &vars), &args, 0);
        assert!(
            env.path(dir).join("models/m/versions/1.0.0.json").is_file(),
            "{remote} → {dir}"
        );
    }

    // Unknown provider: exit 2, the known names listed.
    let (code, e) = fails(&yaml, &["list", "--remote", "nosuch"], &vars);
    assert_eq!(code, Some(2), "{e}");
    assert!(e.contains("nosuch") && e.contains("p, q, r"), "{e}");
    // A default_provider naming nothing is refused at load.
    let (_, e) = fails(
        "cloud_storage:\n  default_provider: nope\n  providers:\n    - name: a\n      type: fs\n      config: {path: /tmp/x}\n",
        &["list"],
        &[],
    );
    assert!(e.contains("nope") && e.contains("mvault.yaml:2"), "{e}");

    // Search order: $XDG_CONFIG_HOME/mvault/config.yaml < ./cloud_storage_config.yaml <
    // ./mvault.yaml < MVAULT_CONFIG < -c.
    std::fs::remove_file(&file).unwrap();
    let prov = |name: &str| {
        format!(
            "cloud_storage:\n  providers:\n    - name: {name}\n      type: fs\n      config: {{path: {}}}\n",
            env.path(&format!("v{name}")).display()
        )
    };
    let works = |name: &str, extra: &[&str], vars: &[(&str, &str)]| {
        let mut args: Vec<&str> = extra.to_vec();
        args.extend_from_slice(&["list", "--remote", name]);
        exec_code(cfg_cmd(&env, vars), &args, 0);
    };
    let unknown = |name: &str| exec_code(cfg_cmd(&env, &[]), &["list", "--remote", name], 2);
    unknown("x");
    write_file(&env.path("config/mvault/config.yaml"), prov("x").as_bytes());
    works("x", &[], &[]);
    write_file(&env.path("cloud_storage_config.yaml"), prov("y").as_bytes());
    works("y", &[], &[]);
    unknown("x");
    write_file(&file, prov("z").as_bytes());
    works("z", &[], &[]);
    unknown("y");
    write_file(&env.path("other.yaml"), prov("o").as_bytes());
    works("o", &[], &[("MVAULT_CONFIG", "other.yaml")]);
    works("o", &["-c", s(&env.path("other.yaml"))], &[]);
    // A named file that does not exist is an error, not a silent fallback.
    let o = exec(
        cfg_cmd(&env, &[]),
        &["-c", "absent.yaml", "list", "--remote", "z"],
    );
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr_of(&o).contains("absent.yaml"), "{}", stderr_of(&o));
}

/// Item 3: No secret value reaches stdout or stderr, whatever the verbosity or format, in
/// successful and failing commands; `remotes --json` masks them.
#[test]
fn s3_secrets_never_printed() {
    let env = Env::new(Backend::Fs);
    let (ep, bucket, prefix) = moto();
    let port = dead_port();
    let az_key_plain = "S3CR3T-Azure-do-not-print-67890";
    let az_key = "UzNDUjNULUF6dXJlLWRvLW5vdC1wcmludC02Nzg5MA=="; // base64 of the above
    let conn = format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={az_key};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    );
    let literal = "S3CR3T-literal-dead-777777";
    let url_secret = "S3CR3T-url-query-424242";
    let env_secret = "S3CR3T-env-var-31337";
    let session = "S3CR3T-session-token-5555";
    let yaml = format!(
        "cloud_storage:
  default_provider: s3
  providers:
    - name: s3
      type: s3
      config:
        bucket: {bucket}
        prefix: {prefix}
        endpoint: {ep}
        region: us-east-1
        access_key: \"${{MY_KEY}}\"
        secret_key: \"${{MY_SECRET}}\"
    - name: dead
      type: s3
      config:
        bucket: {bucket}
        endpoint: http://127.0.0.1:{port}
        access_key: AKIADEAD
        secret_key: {literal}
        session_token: {session}
    - name: azdead
      type: azblob
      config:
        container: models
        connection_string: \"{conn}\"
"
    );
    std::fs::write(env.path("mvault.yaml"), yaml).unwrap();
    let secrets = [
        MY_VARS[1].1,
        literal,
        session,
        az_key,
        az_key_plain,
        conn.as_str(),
        url_secret,
        env_secret,
    ];
    let src = seed_dir(&env, "src", &[("w.bin", 3, 900_000), ("tok.txt", 4, 100)]);
    let to = |t: &str| env.path(&format!("out-{t}")).display().to_string();
    let dead_url =
        format!("s3://{bucket}/p?endpoint=http://127.0.0.1:{port}&secret_key={url_secret}");
    let (t1, t2, t3) = (to("1"), to("2"), to("3"));
    let ok: Vec<Vec<&str>> = vec![
        vec!["-vv", "push", s(&src), "--name", "m", "--version", "1.0.0"],
        vec![
            "-vv",
            "--json",
            "push",
            s(&src),
            "--name",
            "m",
            "--version",
            "1.1.0",
        ],
        vec!["-vv", "pull", "m@1.0.0", "--to", &t1],
        vec!["--json", "-vv", "pull", "m@1.1.0", "--to", &t2],
        vec!["-vv", "list"],
        vec!["--json", "-vv", "list"],
        vec!["-vv", "info", "m@1.0.0"],
        vec!["--json", "-vv", "info", "m@1.0.0"],
        vec!["-vv", "versions", "m"],
        vec!["--json", "-vv", "versions", "m"],
        vec!["-vv", "remotes"],
        vec!["--json", "-vv", "remotes"],
        vec!["-vv", "alias", "set", "m@1.0.0", "prod"],
        vec!["--json", "-vv", "alias", "ls", "m"],
        vec!["--json", "-vv", "verify"],
        vec!["-vv", "usage"],
        vec!["-vv", "pull", "m@prod", "--to", &t3],
    ];
    let failing: Vec<Vec<&str>> = vec![
        vec!["-vv", "list", "--remote", "dead"],
        vec![
            "--json", "-vv", "pull", "m@1.0.0", "--remote", "dead", "--to", &t3,
        ],
        vec!["-vv", "info", "m@1.0.0", "--remote", "dead"],
        vec!["-vv", "list", "--remote", "azdead"],
        vec![
            "--json",
            "-vv",
            "push",
            s(&src),
            "--name",
            "m",
            "--version",
            "2.0.0",
            "--remote",
            "azdead",
        ],
        vec![
            "-vv",
            "push",
            s(&src),
            "--name",
            "m",
            "--version",
            "2.0.0",
            "--all-providers",
        ],
        vec!["--json", "-vv", "sync", "--from", "s3", "--to", "dead"],
        vec!["-vv", "sync", "--from", "azdead", "--to", "s3"],
        vec!["-vv", "list", "--remote", &dead_url],
        vec!["--json", "list", "--remote", &dead_url],
        vec!["-vv", "pull", "m@9.9.9"],
    ];
    let mut seen_debug = false;
    let check = |args: &[&str], o: &Output| {
        let all = format!("{}\n{}", stdout_of(o), stderr_of(o));
        for secret in &secrets {
            assert!(
                !all.contains(secret),
                "mvault {args:?} printed the secret {secret:?}:\n{all}"
            );
        }
    };
    for args in &ok {
        let o = exec_code(cfg_cmd(&env, MY_VARS), args, 0);
        check(args, &o);
        seen_debug |= stderr_of(&o).contains("DEBUG");
    }
    assert!(
        seen_debug,
        "-vv shows debug logs (else this test checks little)"
    );
    assert_same_tree(&src, Path::new(&t1));
    assert_same_tree(&src, Path::new(&t3));
    for args in &failing {
        let o = exec(cfg_cmd(&env, MY_VARS), args);
        assert!(
            matches!(o.status.code(), Some(c) if c != 0),
            "mvault {args:?} should fail: {:?}\n{}",
            o.status.code(),
            stderr_of(&o)
        );
        assert!(
            !stderr_of(&o).is_empty(),
            "mvault {args:?}: failure without a message"
        );
        check(args, &o);
    }
    // A secret from the cloud's own environment variable, on a failing remote.
    let vars = [
        MY_VARS[0],
        MY_VARS[1],
        ("AWS_ACCESS_KEY_ID", "AKIAENV"),
        ("AWS_SECRET_ACCESS_KEY", env_secret),
    ];
    let url = format!("s3://{bucket}/p?endpoint=http://127.0.0.1:{port}");
    for args in [
        vec!["-vv", "list", "--remote", &url],
        vec!["--json", "-vv", "versions", "m", "--remote", &url],
    ] {
        let o = exec(cfg_cmd(&env, &vars), &args);
        assert_ne!(o.status.code(), Some(0), "{args:?}");
        check(&args, &o);
    }

    // remotes --json: secrets and the access key id masked, other values shown.
    let args = ["--json", "remotes"];
    let j = json_of(&exec_code(cfg_cmd(&env, MY_VARS), &args, 0), &args);
    let provider = |n: &str| {
        j["providers"]
            .as_array()
            .expect("providers")
            .iter()
            .find(|p| p["name"] == n)
            .unwrap_or_else(|| panic!("{n} in {j}"))
            .clone()
    };
    let s3 = provider("s3");
    assert_eq!(s3["options"]["endpoint"], ep.as_str(), "{j}");
    assert_eq!(s3["default"], true, "{j}");
    for (p, k) in [
        ("s3", "secret_key"),
        ("s3", "access_key"),
        ("dead", "secret_key"),
        ("dead", "session_token"),
        ("azdead", "connection_string"),
    ] {
        let v = provider(p)["options"][k]
            .as_str()
            .unwrap_or_else(|| panic!("{p}.{k} in {j}"))
            .to_string();
        assert!(v.starts_with("***"), "{p}.{k} not masked: {v}");
    }
    assert!(
        !j.to_string().contains("AKIAMYKEY0000042"),
        "access key id shown: {j}"
    );
}

/// Item 4: sync copies what the destination lacks, byte-exact, and a re-run copies nothing.
fn sync_between(src_env: &Env, dst_env: &Env, dst_vars: &[(&str, &str)]) {
    let env = src_env;
    let a = seed_dir(env, "a", &[("w.bin", 41, 1_800_000), ("c.json", 42, 500)]);
    let b = seed_dir(
        env,
        "b",
        &[("w.bin", 41, 1_800_000), ("x.bin", 43, 600_000)],
    );
    let n = seed_dir(env, "n", &[("y.bin", 44, 800_000)]);
    push(env, &a, "m", "1.0.0");
    push(env, &b, "m", "1.1.0");
    push(env, &n, "n", "0.1.0");
    let (from, to) = (src_env.remote.as_str(), dst_env.remote.as_str());
    let sync = |extra: &[&str]| {
        let mut args = vec!["--json", "sync", "--from", from, "--to", to];
        args.extend_from_slice(extra);
        let mut c = env.cmd();
        for (k, v) in dst_vars {
            c.env(k, v);
        }
        json_of(&exec_code(c, &args, 0), &args)
    };
    let list = |j: &Value, k: &str| -> Vec<String> {
        let mut v: Vec<String> = j[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };

    // One version first.
    let j = sync(&["m@1.0.0"]);
    assert_eq!(list(&j, "copied"), ["m@1.0.0"], "{j}");
    assert_eq!(
        chunks(dst_env).len() as u64,
        j["summary"]["chunks_new"].as_u64().unwrap(),
        "{j}"
    );
    // Then everything: only what is missing is copied.
    let (src_chunks, dst_before) = (chunks(src_env), chunks(dst_env));
    let missing = added(&dst_before, &src_chunks);
    let j = sync(&[]);
    assert_eq!(list(&j, "copied"), ["m@1.1.0", "n@0.1.0"], "{j}");
    assert_eq!(list(&j, "present"), ["m@1.0.0"], "{j}");
    assert_eq!(
        j["summary"]["chunks_new"].as_u64(),
        Some(missing.len() as u64),
        "{j}"
    );
    let dst_keys: BTreeSet<String> = chunks(dst_env).into_keys().collect();
    let src_keys: BTreeSet<String> = src_chunks.into_keys().collect();
    assert_eq!(
        dst_keys, src_keys,
        "destination has exactly the source's chunks"
    );
    for (model, dir) in [("m@1.0.0", &a), ("m@1.1.0", &b), ("n@0.1.0", &n)] {
        pull_same(dst_env, dst_env.cmd(), &[], model, dir);
    }
    assert_eq!(
        dst_env.json(&["verify"])["broken_versions"],
        serde_json::json!([])
    );
    // Re-run: nothing copied.
    let j = sync(&[]);
    assert_eq!(j["copied"], serde_json::json!([]), "{j}");
    assert_eq!(j["summary"]["chunks_new"].as_u64(), Some(0), "{j}");
    assert_eq!(j["summary"]["bytes_remote"].as_u64(), Some(0), "{j}");
    assert_eq!(
        list(&j, "present"),
        ["m@1.0.0", "m@1.1.0", "n@0.1.0"],
        "{j}"
    );
    // A version the source lacks: not found.
    let mut c = env.cmd();
    for (k, v) in dst_vars {
        c.env(k, v);
    }
    exec_code(c, &["sync", "--from", from, "--to", to, "m@7.0.0"], 3);
}

#[test]
fn fs_sync_fs_to_fs() {
    let (a, b) = (Env::new(Backend::Fs), Env::new(Backend::Fs));
    sync_between(&a, &b, &[]);
}

/// A destination version with other content than the source's is left as it is and
/// reported (exit 4 once the rest is copied, naming it), never counted "already there" (until
/// 2026-12-07 it was, and sync exited 0); one pushed to both separately with the same files
/// (another `created_at`) is present.
#[test]
fn fs_sync_reports_a_destination_version_that_differs() {
    let (a, b) = (Env::new(Backend::Fs), Env::new(Backend::Fs));
    let one = seed_dir(&a, "one", &[("w.bin", 51, 300_000)]);
    let two = seed_dir(&b, "two", &[("w.bin", 52, 300_000)]);
    let three = seed_dir(&a, "three", &[("w.bin", 53, 300_000)]);
    let four = seed_dir(&a, "four", &[("w.bin", 54, 300_000)]);
    push(&a, &one, "s", "1.0.0");
    push(&b, &two, "s", "1.0.0");
    push(&a, &three, "s", "2.0.0");
    std::thread::sleep(std::time::Duration::from_millis(1100)); // another created_at
    push(&b, &three, "s", "2.0.0");
    push(&a, &four, "s", "3.0.0");
    let args = [
        "sync",
        "--from",
        a.remote.as_str(),
        "--to",
        b.remote.as_str(),
    ];
    let j = json_code(&a, &args, 4);
    assert_eq!(j["copied"], serde_json::json!(["s@3.0.0"]), "{j}");
    assert_eq!(j["present"], serde_json::json!(["s@2.0.0"]), "{j}");
    assert_eq!(j["differs"], serde_json::json!(["s@1.0.0"]), "{j}");
    let e = a.fails(4, &args);
    assert!(
        e.contains("s@1.0.0 on") && e.contains("other content") && e.contains("rm"),
        "{e}"
    );
    pull_same(&b, b.cmd(), &[], "s@1.0.0", &two);
    pull_same(&b, b.cmd(), &[], "s@3.0.0", &four);

    b.ok(&["rm", "s@1.0.0"]);
    let j = a.json(&args);
    assert_eq!(j["copied"], serde_json::json!(["s@1.0.0"]), "{j}");
    let j = a.json(&args);
    assert_eq!(
        j["present"],
        serde_json::json!(["s@1.0.0", "s@2.0.0", "s@3.0.0"]),
        "{j}"
    );
    pull_same(&b, b.cmd(), &[], "s@1.0.0", &one);
}

#[test]
fn s3_sync_local_to_s3() {
    let (a, b) = (Env::new(Backend::Fs), Env::new(Backend::S3));
    let vars: Vec<(&str, &str)> = b
        .vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    sync_between(&a, &b, &vars);
}

// ---------------------------------------------------------------------------------------------
// Lifecycle (issue 6)

/// Item 5: alias set / ls / pull NAME@ALIAS / rollback.
fn alias_lifecycle(b: Backend) {
    let env = Env::new(b);
    let srcs: Vec<PathBuf> = (1..=3u64)
        .map(|i| {
            seed_dir(
                &env,
                &format!("src{i}"),
                &[("w.bin", 50 + i, 300_000 + i as usize * 1000)],
            )
        })
        .collect();
    for (i, src) in srcs.iter().enumerate() {
        push(&env, src, "m", &format!("{}.0.0", i + 1));
    }
    let pull_to = fresh(&env, "x");
    env.fails(3, &["pull", "m@production", "--to", s(&pull_to)]);
    env.fails(3, &["alias", "set", "m@9.0.0", "production"]);
    env.fails(3, &["alias", "set", "nosuch@1.0.0", "production"]);
    env.fails(3, &["rollback", "m", "production"]);
    env.fails(2, &["alias", "set", "m@1.0.0", "latest"]);

    let j = env.json(&["alias", "set", "m@1.0.0", "production"]);
    assert_eq!(
        (
            j["to"].as_str(),
            j["from"].is_null(),
            j["changed"].as_bool()
        ),
        (Some("1.0.0"), true, Some(true)),
        "{j}"
    );
    pull_cached(&env, "m@production", &srcs[0]);
    let j = env.json(&["alias", "set", "m@2.0.0", "production"]);
    assert_eq!(
        (j["from"].as_str(), j["to"].as_str()),
        (Some("1.0.0"), Some("2.0.0")),
        "{j}"
    );
    // The cached resolution must not go stale.
    pull_cached(&env, "m@production", &srcs[1]);
    let j = env.json(&["alias", "set", "m@2.0.0", "production"]);
    assert_eq!(
        j["changed"], false,
        "setting the same target is a no-op: {j}"
    );
    env.ok(&["alias", "set", "m@3.0.0", "production"]);
    pull_cached(&env, "m@production", &srcs[2]);
    env.ok(&["alias", "set", "m@1.0.0", "staging"]);

    let ls = env.json(&["alias", "ls", "m"]);
    let names: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["alias"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["production", "staging"], "{ls}");
    let hist = |ls: &Value| -> Vec<String> {
        ls[0]["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["version"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(hist(&ls), ["1.0.0", "2.0.0", "3.0.0"], "{ls}");
    assert_eq!(ls[0]["version"], "3.0.0");

    // Rollback walks back through earlier targets.
    let j = env.json(&["rollback", "m", "production"]);
    assert_eq!(
        (j["from"].as_str(), j["to"].as_str()),
        (Some("3.0.0"), Some("2.0.0")),
        "{j}"
    );
    pull_cached(&env, "m@production", &srcs[1]);
    let j = env.json(&["rollback", "m", "production"]);
    assert_eq!(j["to"], "1.0.0", "{j}");
    pull_cached(&env, "m@production", &srcs[0]);
    pull_same(&env, env.cmd(), &[], "m@production", &srcs[0]);
    env.fails(3, &["rollback", "m", "production"]);
    let ls = env.json(&["alias", "ls", "m"]);
    assert_eq!(
        hist(&ls),
        ["1.0.0", "2.0.0", "3.0.0", "2.0.0", "1.0.0"],
        "history keeps every change: {ls}"
    );
    let actions: Vec<&str> = ls[0]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        actions,
        ["set", "set", "set", "rollback", "rollback"],
        "{ls}"
    );
    assert_eq!(env.json(&["info", "m@production"])["version"], "1.0.0");
    let human = env.ok(&["alias", "ls", "m"]);
    assert!(
        human.contains("production") && human.contains("staging"),
        "{human}"
    );

    // versions lists them all; aliases beside versions are optional, but if shown, right.
    assert_eq!(versions_of(&env, "m"), ["1.0.0", "2.0.0", "3.0.0"]);
    let human = env.ok(&["versions", "m"]);
    for line in human.lines() {
        if line.contains("production") {
            assert!(
                line.contains("1.0.0"),
                "production shown beside the wrong version: {line}"
            );
        }
    }
    // A removed target cannot be rolled back to.
    env.ok(&["alias", "set", "m@3.0.0", "staging"]);
    // rm refuses a version an alias points at (production: 1.0.0) unless forced.
    env.fails(4, &["rm", "m@1.0.0"]);
    env.ok(&["rm", "m@1.0.0", "--force"]);
    env.fails(3, &["rollback", "m", "staging"]);
}

#[test]
fn fs_alias_lifecycle() {
    alias_lifecycle(Backend::Fs);
}

#[test]
fn s3_alias_lifecycle() {
    alias_lifecycle(Backend::S3);
}

/// Item 6: Concurrent writers of one alias: each succeeds or gets a conflict (exit 4, "retry");
/// no update is lost.
fn concurrent_aliases(b: Backend) {
    let env = Env::new(b);
    let src = seed_dir(&env, "src", &[("w.bin", 60, 10_000)]);
    const N: usize = 8;
    for i in 0..N {
        push(&env, &src, "m", &format!("1.0.{i}"));
    }
    // Versions set by writers that changed the alias (exit 0 with "changed": true).
    let j = env.json(&["alias", "set", "m@1.0.0", "prod"]);
    let mut changed: Vec<String> = vec![j["to"].as_str().unwrap().to_string()];
    // Several rounds of N writers, each setting its own version, plus readers of the alias
    // (which exists throughout, so they must always succeed).
    let rounds = if b == Backend::Fs { 25 } else { 3 };
    let spawn = |args: &[&str]| {
        env.cmd()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    for round in 0..rounds {
        // (Some(i) for writer i, None for a reader, child)
        let mut children = Vec::new();
        for i in 0..N {
            let set = ["--json", "alias", "set", &format!("m@1.0.{i}"), "prod"];
            children.push((Some(i), spawn(&set)));
            if i % 2 == 0 {
                children.push((None, spawn(&["--json", "info", "m@prod"])));
                children.push((None, spawn(&["--json", "alias", "ls", "m"])));
            }
        }
        for (writer, c) in children {
            let o = c.wait_with_output().unwrap();
            let j: Option<Value> = serde_json::from_slice(&o.stdout).ok();
            let Some(i) = writer else {
                assert_eq!(
                    o.status.code(),
                    Some(0),
                    "round {round}: a reader of the alias failed while it was being set:\n{}",
                    stderr_of(&o)
                );
                continue;
            };
            match o.status.code() {
                Some(0) => {
                    let j = j.expect("alias set --json");
                    assert_eq!(j["to"], format!("1.0.{i}"), "{j}");
                    if j["changed"] == true {
                        changed.push(format!("1.0.{i}"));
                    } else {
                        // Only possible when the alias already pointed there.
                        assert_eq!(j["from"], j["to"], "round {round}, writer {i}: {j}");
                    }
                }
                Some(4) => assert!(
                    stderr_of(&o).contains("retry"),
                    "round {round}, writer {i}: a conflict says to retry: {}",
                    stderr_of(&o)
                ),
                c => panic!("round {round}, writer {i}: exit {c:?}\n{}", stderr_of(&o)),
            }
        }
    }
    assert!(!changed.is_empty(), "some writer must win");
    let ls = env.json(&["alias", "ls", "m"]);
    let history: Vec<String> = ls[0]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["version"].as_str().unwrap().to_string())
        .collect();
    let (mut got, mut want) = (history.clone(), changed.clone());
    got.sort();
    want.sort();
    assert_eq!(
        got, want,
        "lost or phantom update: successful changes {changed:?}, history {history:?}"
    );
    assert_eq!(
        ls[0]["revision"].as_u64(),
        Some(history.len() as u64),
        "{ls}"
    );
    assert_eq!(
        ls[0]["version"].as_str(),
        history.last().map(String::as_str),
        "{ls}"
    );
}

#[test]
fn fs_concurrent_alias_writers() {
    concurrent_aliases(Backend::Fs);
}

#[test]
fn s3_concurrent_alias_writers() {
    concurrent_aliases(Backend::S3);
}

/// Item 7: verify finds a flipped byte, a missing chunk and a truncated chunk, and names the
/// versions they break.
fn verify_damage(b: Backend) {
    let env = Env::new(b);
    let mut own: Vec<BTreeSet<String>> = Vec::new();
    let mut srcs = Vec::new();
    for (i, f) in ["x.bin", "y.bin", "z.bin", "w.bin"].iter().enumerate() {
        let before = chunks(&env);
        let src = seed_dir(&env, &format!("src{i}"), &[(f, 70 + i as u64, 1_300_000)]);
        push(&env, &src, "m", &format!("{}.0.0", i + 1));
        own.push(added(&before, &chunks(&env)));
        srcs.push(src);
    }
    assert!(own.iter().all(|c| !c.is_empty()));
    let total: usize = own.iter().map(BTreeSet::len).sum();

    let j = json_code(&env, &["verify"], 0);
    assert_eq!(j["versions_checked"].as_u64(), Some(4), "{j}");
    assert_eq!(j["chunks_referenced"].as_u64(), Some(total as u64), "{j}");
    assert_eq!(j["chunks_checked"].as_u64(), Some(total as u64), "{j}");
    let j = json_code(&env, &["verify", "--sample", "0.5"], 0);
    assert_eq!(j["sample"].as_f64(), Some(0.5), "{j}");
    assert!(j["chunks_checked"].as_u64().unwrap() <= total as u64, "{j}");
    env.fails(2, &["verify", "--sample", "0"]);
    env.fails(2, &["verify", "--sample", "1.5"]);
    env.fails(3, &["verify", "nosuch"]);
    env.fails(3, &["verify", "m@9.0.0"]);

    let first = |i: usize| own[i].iter().next().unwrap().clone();
    let (flipped, gone, cut) = (first(0), first(1), first(2));
    let mut data = env.read_object(&flipped);
    let at = data.len() / 2;
    data[at] ^= 0x01;
    env.write_object(&flipped, data);
    env.delete_object(&gone);
    let mut data = env.read_object(&cut);
    data.truncate(data.len() - 100);
    env.write_object(&cut, data);

    let j = json_code(&env, &["verify"], 5);
    assert_eq!(
        j["broken_versions"],
        serde_json::json!(["m@1.0.0", "m@2.0.0", "m@3.0.0"]),
        "{j}"
    );
    let missing = j["missing"].as_array().unwrap();
    assert_eq!(missing.len(), 1, "{j}");
    assert_eq!(missing[0]["key"], gone.as_str(), "{j}");
    assert_eq!(missing[0]["used_by"][0]["version"], "m@2.0.0", "{j}");
    let damaged = j["damaged"].as_array().unwrap();
    assert_eq!(damaged.len(), 2, "{j}");
    let by_key = |k: &str| {
        damaged
            .iter()
            .find(|d| d["key"] == k)
            .unwrap_or_else(|| panic!("{k} in {j}"))
    };
    assert_eq!(by_key(&flipped)["damage"], "hash_mismatch", "{j}");
    assert_eq!(by_key(&flipped)["used_by"][0]["version"], "m@1.0.0", "{j}");
    assert_eq!(
        by_key(&flipped)["used_by"][0]["files"],
        serde_json::json!(["x.bin"]),
        "{j}"
    );
    assert_eq!(by_key(&cut)["damage"], "truncated", "{j}");
    assert_eq!(by_key(&cut)["used_by"][0]["version"], "m@3.0.0", "{j}");

    // Per version: the healthy one passes, each broken one fails.
    json_code(&env, &["verify", "m@4.0.0"], 0);
    for v in ["m@1.0.0", "m@2.0.0", "m@3.0.0"] {
        let j = json_code(&env, &["verify", v], 5);
        assert_eq!(j["broken_versions"], serde_json::json!([v]), "{j}");
    }
    let j = json_code(&env, &["verify", "m"], 5);
    assert_eq!(j["versions_checked"].as_u64(), Some(4), "{j}");
    // Human output names the damage on stderr.
    let e = env.fails(5, &["verify"]);
    assert!(
        e.contains(&gone) && e.contains(&flipped) && e.contains(&cut),
        "{e}"
    );
    // A pull with a cold cache refuses the damaged version, and the healthy one still works.
    let cache = fresh(&env, "cache");
    env.fails(
        5,
        &[
            "--cache-dir",
            s(&cache),
            "pull",
            "m@1.0.0",
            "--to",
            s(&fresh(&env, "p")),
        ],
    );
    pull_same(&env, env.cmd(), &[], "m@4.0.0", &srcs[3]);
}

#[test]
fn fs_verify_detects_damage() {
    verify_damage(Backend::Fs);
}

#[test]
fn s3_verify_detects_damage() {
    verify_damage(Backend::S3);
}

/// Item 8: gc deletes exactly the unreferenced chunks, after the grace period only.
fn gc_reclaims(b: Backend) {
    let env = Env::new(b);
    let keep = seed_dir(
        &env,
        "keep",
        &[("shared.bin", 80, 1_100_000), ("own.bin", 81, 900_000)],
    );
    let gone = seed_dir(
        &env,
        "gone",
        &[("shared.bin", 80, 1_100_000), ("gone.bin", 82, 1_000_000)],
    );
    push(&env, &keep, "m", "2.0.0");
    let kept = chunks(&env);
    push(&env, &gone, "m", "1.0.0");
    let all = chunks(&env);
    let doomed = added(&kept, &all);
    assert!(!doomed.is_empty());
    let doomed_bytes: u64 = doomed.iter().map(|k| all[k]).sum();
    settle(b);

    let j = json_code(&env, &["gc", "--grace", "0s", "--force"], 0);
    assert_eq!(
        j["deleted"].as_u64(),
        Some(0),
        "everything is referenced: {j}"
    );
    env.ok(&["rm", "m@1.0.0"]);
    env.fails(3, &["info", "m@1.0.0"]);

    // Default grace (24h): fresh chunks are kept.
    let j = json_code(&env, &["gc"], 0);
    assert_eq!(j["deleted"].as_u64(), Some(0), "{j}");
    assert_eq!(j["kept_young"].as_u64(), Some(doomed.len() as u64), "{j}");
    assert_eq!(chunks(&env), all, "default gc deleted fresh chunks");
    // Dry run: reports, deletes nothing.
    let j = json_code(&env, &["gc", "--grace", "0s", "--force", "--dry-run"], 0);
    assert_eq!(j["deleted"].as_u64(), Some(doomed.len() as u64), "{j}");
    assert_eq!(j["bytes_deleted"].as_u64(), Some(doomed_bytes), "{j}");
    assert_eq!(j["referenced"].as_u64(), Some(kept.len() as u64), "{j}");
    assert_eq!(j["scanned_chunks"].as_u64(), Some(all.len() as u64), "{j}");
    assert_eq!(j["dry_run"], true);
    assert_eq!(chunks(&env), all, "dry run deleted something");
    let human = env.run(&["gc", "--grace", "0s", "--force", "--dry-run"]);
    assert!(
        stderr_of(&human).contains(&doomed.len().to_string()),
        "{}",
        stderr_of(&human)
    );
    // For real: exactly the doomed chunks go.
    let j = json_code(&env, &["gc", "--grace", "0s", "--force"], 0);
    assert_eq!(j["deleted"].as_u64(), Some(doomed.len() as u64), "{j}");
    assert_eq!(j["bytes_deleted"].as_u64(), Some(doomed_bytes), "{j}");
    assert_eq!(
        chunks(&env),
        kept,
        "gc must leave exactly the remaining versions' chunks"
    );
    json_code(&env, &["verify"], 0);
    pull_same(&env, env.cmd(), &[], "m@2.0.0", &keep);
    let j = json_code(&env, &["gc", "--grace", "0s", "--force"], 0);
    assert_eq!(j["deleted"].as_u64(), Some(0), "{j}");
    env.fails(2, &["gc", "--grace", "soon"]);
}

#[test]
fn fs_gc_reclaims_unreferenced_chunks() {
    gc_reclaims(Backend::Fs);
}

#[test]
fn s3_gc_reclaims_unreferenced_chunks() {
    gc_reclaims(Backend::S3);
}

/// Item 9: prune keeps the newest N and every aliased version, then gc reclaims the rest.
fn prune_keeps_aliased(b: Backend) {
    let env = Env::new(b);
    let mut own = Vec::new();
    let mut srcs = Vec::new();
    for i in 1..=4u64 {
        let before = chunks(&env);
        let src = seed_dir(&env, &format!("src{i}"), &[("w.bin", 90 + i, 400_000)]);
        push(&env, &src, "m", &format!("{i}.0.0"));
        own.push(added(&before, &chunks(&env)));
        srcs.push(src);
    }
    env.ok(&["alias", "set", "m@2.0.0", "prod"]);
    settle(b);

    let j = json_code(
        &env,
        &[
            "prune",
            "m",
            "--keep",
            "1",
            "--dry-run",
            "--grace",
            "0s",
            "--force",
        ],
        0,
    );
    assert_eq!(j["removed"], serde_json::json!(["1.0.0", "3.0.0"]), "{j}");
    assert_eq!(
        versions_of(&env, "m"),
        ["1.0.0", "2.0.0", "3.0.0", "4.0.0"],
        "dry run removed versions"
    );
    let j = json_code(
        &env,
        &["prune", "m", "--keep", "1", "--grace", "0s", "--force"],
        0,
    );
    assert_eq!(j["removed"], serde_json::json!(["1.0.0", "3.0.0"]), "{j}");
    assert_eq!(
        j["gc"]["deleted"].as_u64(),
        Some((own[0].len() + own[2].len()) as u64),
        "{j}"
    );
    assert_eq!(versions_of(&env, "m"), ["2.0.0", "4.0.0"]);
    let left: BTreeSet<String> = chunks(&env).into_keys().collect();
    let want: BTreeSet<String> = own[1].union(&own[3]).cloned().collect();
    assert_eq!(left, want, "chunks left after prune");
    pull_same(&env, env.cmd(), &[], "m@prod", &srcs[1]);
    json_code(&env, &["verify"], 0);
    // Keeping none still keeps the aliased one.
    let j = json_code(
        &env,
        &["prune", "m", "--keep", "0", "--grace", "0s", "--force"],
        0,
    );
    assert_eq!(j["removed"], serde_json::json!(["4.0.0"]), "{j}");
    assert_eq!(versions_of(&env, "m"), ["2.0.0"]);
    env.fails(3, &["prune", "nosuch", "--keep", "1"]);
}

#[test]
fn fs_prune_keeps_aliased_versions() {
    prune_keeps_aliased(Backend::Fs);
}

#[test]
fn s3_prune_keeps_aliased_versions() {
    prune_keeps_aliased(Backend::S3);
}

/// Item 10: usage: two versions sharing every chunk of one file: logical 2x, stored 1x.
fn usage_numbers(b: Backend) {
    let env = Env::new(b);
    const LEN: usize = 2_500_000;
    let src = seed_dir(&env, "src", &[("w.bin", 100, LEN)]);
    push(&env, &src, "u", "1.0.0");
    push(&env, &src, "u", "2.0.0");
    let listed = chunks(&env);
    let n = listed.len() as u64;
    let stored: u64 = listed.values().sum();
    // Random data is stored raw: a 16-byte header per chunk.
    assert_eq!(stored, LEN as u64 + 16 * n, "hand-computed stored bytes");
    let meta = env.list_objects("models/");
    let meta_bytes: u64 = meta.iter().map(|(_, s)| s).sum();

    let j = env.json(&["usage"]);
    assert_eq!(j["versions"].as_u64(), Some(2), "{j}");
    assert_eq!(j["logical_bytes"].as_u64(), Some(2 * LEN as u64), "{j}");
    assert_eq!(j["stored_bytes"].as_u64(), Some(stored), "{j}");
    assert_eq!(j["chunk_objects"].as_u64(), Some(n), "{j}");
    assert_eq!(
        j["metadata_objects"].as_u64(),
        Some(meta.len() as u64),
        "{j}"
    );
    assert_eq!(j["metadata_bytes"].as_u64(), Some(meta_bytes), "{j}");
    assert_eq!(j["objects"].as_u64(), Some(n + meta.len() as u64), "{j}");
    assert_eq!(j["billed_bytes"].as_u64(), Some(stored + meta_bytes), "{j}");
    let ratio = j["dedupe_ratio"].as_f64().unwrap();
    assert!(
        (ratio - 2.0 * LEN as f64 / stored as f64).abs() < 1e-9 && ratio > 1.99,
        "{j}"
    );
    let m = &j["models"][0];
    assert_eq!(
        (m["model"].as_str(), m["versions"].as_u64()),
        (Some("u"), Some(2)),
        "{j}"
    );
    assert_eq!(m["logical_bytes"].as_u64(), Some(2 * LEN as u64), "{j}");
    assert_eq!(m["stored_bytes"].as_u64(), Some(stored), "{j}");
    assert_eq!(m["unique_chunks"].as_u64(), Some(n), "{j}");
    assert_eq!(m["missing_chunks"].as_u64(), Some(0), "{j}");
    let s3 = j["monthly_cost"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["provider"] == "s3")
        .unwrap();
    let want = (stored + meta_bytes) as f64 / 1e9 * s3["usd_per_gb_month"].as_f64().unwrap();
    assert!(
        (s3["usd_per_month"].as_f64().unwrap() - want).abs() < 1e-12,
        "{j}"
    );

    // A second model with the same file: logical grows, stored does not; each model counts
    // the shared chunks.
    push(&env, &src, "v", "1.0.0");
    let j = env.json(&["usage"]);
    assert_eq!(j["logical_bytes"].as_u64(), Some(3 * LEN as u64), "{j}");
    assert_eq!(j["stored_bytes"].as_u64(), Some(stored), "{j}");
    let names: Vec<&str> = j["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["u", "v"], "{j}");
    assert_eq!(j["models"][1]["stored_bytes"].as_u64(), Some(stored), "{j}");
    assert_eq!(
        j["models"][1]["logical_bytes"].as_u64(),
        Some(LEN as u64),
        "{j}"
    );
    // A missing chunk is counted, not hidden.
    env.delete_object(listed.keys().next().unwrap());
    let j = env.json(&["usage"]);
    assert_eq!(j["models"][0]["missing_chunks"].as_u64(), Some(1), "{j}");
    assert_eq!(j["chunk_objects"].as_u64(), Some(n - 1), "{j}");
    let human = env.ok(&["usage"]);
    assert!(human.contains("dedupe ratio"), "{human}");
}

#[test]
fn fs_usage_numbers() {
    usage_numbers(Backend::Fs);
}

#[test]
fn s3_usage_numbers() {
    usage_numbers(Backend::S3);
}

/// Version ranges pick the highest match; pre-releases only when asked.
#[test]
fn fs_version_ranges() {
    let env = Env::new(Backend::Fs);
    let versions = [
        "1.2.0",
        "1.2.3",
        "1.2.7",
        "1.3.0",
        "1.10.0",
        "1.11.0-rc.1",
        "2.0.0",
        "v2.1.0-beta.1",
    ];
    let mut srcs = BTreeMap::new();
    for (i, v) in versions.iter().enumerate() {
        let src = seed_dir(
            &env,
            &format!("src-{v}"),
            &[("w.bin", 200 + i as u64, 5_000 + i)],
        );
        push(&env, &src, "r", v);
        srcs.insert(*v, src);
    }
    for (sel, want) in [
        ("r@^1.2", "1.10.0"),
        ("r@^1.2.4", "1.10.0"),
        ("r@~1.2.3", "1.2.7"),
        ("r@~1.2", "1.2.7"),
        ("r@latest", "2.0.0"),
        ("r", "2.0.0"),
        ("r@1.2.3", "1.2.3"),
        ("r@v1.2.3", "1.2.3"),
    ] {
        let j = pull_cached(&env, sel, &srcs[want]);
        assert_eq!(j["version"], want, "{sel}: {j}");
        assert_eq!(env.json(&["info", sel])["version"], want, "info {sel}");
    }
    let j = pull_cached(&env, "r@~1.11.0-rc.0", &srcs["1.11.0-rc.1"]);
    assert_eq!(j["version"], "1.11.0-rc.1", "{j}");
    for sel in ["r@~1.2.8", "r@^3", "r@1.2.4"] {
        env.fails(3, &["pull", sel, "--to", s(&fresh(&env, "none"))]);
    }
}
