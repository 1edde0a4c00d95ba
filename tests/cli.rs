//! Backend-independent command-line behaviour: help, usage errors, unreachable remotes.

use assert_cmd::prelude::*;

use crate::common::{Backend, Env, dead_port, noise, s, write_file};

#[test]
fn help_describes_every_command() {
    let env = Env::new(Backend::Fs);
    let help = env.ok(&["--help"]);
    for cmd in ["push", "pull", "list", "versions", "info", "rm"] {
        assert!(help.contains(cmd), "--help lacks {cmd}");
    }
    assert!(env.ok(&["push", "--help"]).contains("--metadata-file"));
}

#[test]
fn default_remote_is_the_local_data_dir() {
    let env = Env::new(Backend::Fs);
    let src = env.path("m.bin");
    write_file(&src, &noise(1, 10_000));
    let mut c = env.cmd();
    c.env_remove("MVAULT_REMOTE");
    c.args([
        "push",
        src.to_str().unwrap(),
        "--name",
        "m",
        "--version",
        "1.0.0",
    ]);
    c.assert().success();
    assert!(
        env.path("data/mvault/vault/models/m/versions/1.0.0.json")
            .exists()
    );
}

#[test]
fn unreachable_endpoint_is_one_clear_line() {
    let env = Env::new(Backend::Fs);
    let port = dead_port();
    let mut c = env.cmd();
    c.env(
        "MVAULT_REMOTE",
        format!("s3://b/p?endpoint=http://127.0.0.1:{port}"),
    )
    .env("AWS_ACCESS_KEY_ID", "k")
    .env("AWS_SECRET_ACCESS_KEY", "s")
    .args(["list"]);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("list"), "{err}");
}

#[test]
fn bad_remote_urls_are_usage_errors() {
    let env = Env::new(Backend::Fs);
    let mut c = env.cmd();
    c.env("MVAULT_REMOTE", "ftp://x/y").arg("list");
    c.assert().code(2);
    let mut c = env.cmd();
    c.env("MVAULT_REMOTE", "s3://b?bogus=1").arg("list");
    c.assert().code(2);
}

#[test]
fn warm_pull_is_a_no_op_and_repairs_damage() {
    let env = Env::new(Backend::Fs);
    let src = env.path("src");
    write_file(&src.join("a.bin"), &noise(1, 1_000_000));
    write_file(&src.join("b/c.bin"), &noise(2, 10_000));
    env.ok(&[
        "push",
        src.to_str().unwrap(),
        "--name",
        "w",
        "--version",
        "1.0.0",
    ]);
    let out = env.path("out");
    let to = out.to_str().unwrap();
    env.ok(&["pull", "w@1.0.0", "--to", to]);
    let warm = env.json(&["pull", "w@1.0.0", "--to", to]);
    assert_eq!(warm["summary"]["files_done"], 0);
    assert_eq!(warm["summary"]["bytes_remote"], 0);

    // Deleted and modified files are detected and restored.
    std::fs::remove_file(out.join("b/c.bin")).unwrap();
    let a = out.join("a.bin");
    let mut p = std::fs::metadata(&a).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    p.set_readonly(false);
    std::fs::set_permissions(&a, p).unwrap();
    std::fs::write(&a, b"tampered").unwrap();
    let fixed = env.json(&["pull", "w@1.0.0", "--to", to]);
    assert_eq!(fixed["summary"]["files_done"], 2);
    crate::common::assert_same_tree(&src, &out);
}

#[test]
fn models_dir_pushes_each_entry_as_a_model_and_versions_show_aliases() {
    let env = Env::new(Backend::Fs);
    let dir = env.path("models");
    write_file(&dir.join("SEG_M2F_a/model.pth"), &noise(1, 200_000));
    write_file(&dir.join("SEG_M2F_a/config.yaml"), b"a: 1\n");
    write_file(&dir.join("CLS_AMM_b/weights.bin"), &noise(2, 100_000));
    write_file(&dir.join("single.onnx"), &noise(3, 50_000));
    // One JSON line per model pushed.
    let out = env.ok(&[
        "--json",
        "push",
        "--models-dir",
        dir.to_str().unwrap(),
        "--version",
        "1.0.0",
    ]);
    let pushed: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(pushed.len(), 3, "{out}");
    assert!(pushed.iter().all(|p| p["version"] == "1.0.0"), "{out}");
    let list = env.json(&["list"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["CLS_AMM_b", "SEG_M2F_a", "single"]);
    let info = env.json(&["info", "SEG_M2F_a@1.0.0"]);
    assert_eq!(info["files"].as_array().unwrap().len(), 2);

    env.ok(&["alias", "set", "single@1.0.0", "production"]);
    let versions = env.json(&["versions", "single"]);
    assert_eq!(versions[0]["aliases"][0], "production");
    assert!(env.ok(&["versions", "single"]).contains("production"));
}

/// One `--help` page, split into what the checks below need.
struct HelpPage {
    /// Text before the `Usage:` line (clap's about / long about).
    description: String,
    usage: Option<String>,
    /// Sub-command names listed under `Commands:` (without `help`).
    commands: Vec<String>,
    /// `Options:` and `Arguments:` entries: (spec such as `-n, --name <NAME>`, help text).
    entries: Vec<(String, String)>,
}

fn parse_help(page: &str) -> HelpPage {
    let mut help = HelpPage {
        description: String::new(),
        usage: None,
        commands: Vec::new(),
        entries: Vec::new(),
    };
    let mut section = "";
    for line in page.lines() {
        if let Some(u) = line.strip_prefix("Usage: ") {
            help.usage = Some(u.to_string());
            section = "Usage";
            continue;
        }
        if help.usage.is_none() {
            help.description.push_str(line);
            help.description.push('\n');
            continue;
        }
        if !line.starts_with(' ') && line.ends_with(':') {
            section = line.trim_end_matches(':');
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        match section {
            "Commands" if indent == 2 => {
                let name = text.split_whitespace().next().unwrap();
                if name != "help" {
                    help.commands.push(name.to_string());
                }
            }
            "Options" | "Arguments" if indent <= 6 => {
                // The spec has single spaces; two or more start its help on the same line.
                let (spec, inline) = text.split_once("  ").unwrap_or((text, ""));
                help.entries
                    .push((spec.to_string(), inline.trim().to_string()));
            }
            "Options" | "Arguments" => {
                let entry = help.entries.last_mut().expect("help text before any entry");
                entry.1.push(' ');
                entry.1.push_str(text);
            }
            _ => {}
        }
    }
    help
}

/// Help text without clap's annotations (`[env: ...]`, `[default: ...]`, ...).
fn without_annotations(help: &str) -> String {
    let mut out = help.to_string();
    for tag in ["[env:", "[default:", "[possible values:", "[aliases:"] {
        while let Some(at) = out.find(tag) {
            let end = out[at..].find(']').map_or(out.len(), |e| at + e + 1);
            out.replace_range(at..end, "");
        }
    }
    out
}

/// Every command and nested sub-command of the real binary, discovered from the help pages
/// themselves (so a new command is covered without editing this test): `--help` exits 0 and
/// prints a description, a `Usage:` line and a help text for every option and argument, and
/// `mvault help <command>` prints the same page.
#[test]
fn help_of_every_command() {
    let env = Env::new(Backend::Fs);
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    let mut seen = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    while let Some(path) = todo.pop() {
        let name = format!("mvault {}", path.join(" "));
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let page = env.ok(&args);
        let mut via_help = vec!["help"];
        via_help.extend(path.iter().map(String::as_str));
        assert_eq!(env.ok(&via_help), page, "`mvault help` vs `{name} --help`");

        let help = parse_help(&page);
        assert!(
            !help.description.trim().is_empty(),
            "{name}: no description:\n{page}"
        );
        let usage = help
            .usage
            .unwrap_or_else(|| panic!("{name}: no Usage: line:\n{page}"));
        assert!(
            usage.starts_with(name.trim_end()),
            "{name}: usage {usage:?}"
        );
        assert!(
            help.entries.iter().any(|(spec, _)| spec.contains("--help")),
            "{name}: options not found:\n{page}"
        );
        for (spec, text) in &help.entries {
            if !without_annotations(text).chars().any(char::is_alphanumeric) {
                let flag = spec.split([',', ' ']).find(|w| w.starts_with("--"));
                missing.push(format!("{} {}", path.join(" "), flag.unwrap_or(spec)));
            }
        }
        for sub in help.commands {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p);
        }
        seen.push(path.join(" "));
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "options without a help text: {missing:?}"
    );
    eprintln!("help checked for {} commands: {seen:?}", seen.len());
    // The discovery really walked the tree, nested commands included.
    for cmd in [
        "push",
        "pull",
        "cache",
        "cache ls",
        "cache prune",
        "alias set",
        "alias ls",
    ] {
        assert!(seen.iter().any(|s| s == cmd), "{cmd} not reached: {seen:?}");
    }
}

/// `push --dry-run` says what a push would send, checking the remote for each chunk, and
/// uploads nothing: no chunk object, no version. The real push then sends exactly that.
#[test]
fn push_dry_run_predicts_the_push_and_writes_nothing() {
    let env = Env::new(Backend::Fs);
    let src = env.path("m");
    write_file(&src.join("a.bin"), &noise(1, 3_000_000));
    write_file(&src.join("b.bin"), &noise(2, 1_000_000));
    let push = |version: &str, extra: &[&str]| {
        let mut args = vec![
            "push",
            src.to_str().unwrap(),
            "--name",
            "m",
            "--version",
            version,
        ];
        args.extend_from_slice(extra);
        env.json(&args)
    };
    push("1.0.0", &[]);
    // A new version that rewrites one of the two files.
    write_file(&src.join("b.bin"), &noise(3, 1_000_000));
    let chunks_before = env.list_objects("chunks/");
    let dry = push("1.1.0", &["--dry-run"]);
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(dry["version"], "1.1.0", "{dry}");
    let (new, sent) = (
        &dry["summary"]["chunks_new"],
        &dry["summary"]["bytes_remote"],
    );
    assert!(new.as_u64().unwrap() > 0, "{dry}");
    assert!(
        dry["summary"]["chunks_reused"].as_u64().unwrap() > 0,
        "a.bin is stored: {dry}"
    );
    assert_eq!(
        env.list_objects("chunks/"),
        chunks_before,
        "nothing uploaded"
    );
    env.fails(3, &["info", "m@1.1.0"]);

    let real = push("1.1.0", &[]);
    assert_eq!(real["dry_run"], false, "{real}");
    assert_eq!(&real["summary"]["chunks_new"], new, "{real} vs {dry}");
    assert_eq!(&real["summary"]["bytes_remote"], sent, "{real} vs {dry}");
    assert_eq!(real["checksum"], dry["checksum"], "the same version");
    // An existing version is a conflict, as the real push would be.
    env.fails(
        4,
        &[
            "push",
            src.to_str().unwrap(),
            "--name",
            "m",
            "--version",
            "1.1.0",
            "--dry-run",
        ],
    );
}

/// Progress off a terminal (issue 14): a status line on stderr every
/// `MVAULT_PROGRESS_INTERVAL` seconds (percent never going back, no ETA before the first
/// second), `--json` progress as JSON lines whose figures add up (one `start`, `file_done`
/// once per file with its size, `progress` bytes never going back, `finish` with every byte),
/// and nothing at all with `-q`.
#[test]
fn progress_is_readable_off_a_terminal_and_as_json_lines() {
    use std::collections::BTreeMap;
    let env = Env::new(Backend::Fs);
    let src = env.path("model");
    let sizes = [
        ("a.bin", 1_500_000usize),
        ("sub/b.bin", 1_000_000),
        ("c.json", 500),
    ];
    for (p, n) in sizes {
        write_file(&src.join(p), &noise(n as u64, n));
    }
    let total: u64 = sizes.iter().map(|(_, n)| *n as u64).sum();
    // 2.5 MB at 1 MiB/s: over a second even after the limiter's first second of burst, so
    // several reports at 0.2 s.
    let stderr_of = |args: &[&str]| {
        let o = env
            .cmd()
            .env("MVAULT_PROGRESS_INTERVAL", "0.2")
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8(o.stderr).unwrap();
        assert!(o.status.success(), "{args:?}: {err}");
        err
    };
    let push = [
        "push",
        s(&src),
        "-n",
        "m",
        "--version",
        "1.0.0",
        "--limit-rate",
        "1M",
    ];
    let err = stderr_of(&push);
    let status: Vec<&str> = err
        .lines()
        .filter_map(|l| l.strip_prefix("mvault: push m@1.0.0: "))
        .collect();
    assert!(status.len() >= 3, "status lines every 0.2 s: {err}");
    let mut last = 0;
    for (i, l) in status.iter().enumerate() {
        // `1.29 MiB of 2.38 MiB (53%), 1.90 MiB/s, ETA 1s, 1 file active`
        assert!(
            l.contains(" of 2.38 MiB (") && l.contains("/s, ETA "),
            "{l}"
        );
        let pct: u64 = l
            .split('(')
            .nth(1)
            .unwrap()
            .split('%')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(last <= pct && pct <= 100, "percent goes back: {err}");
        last = pct;
        if i == 0 {
            assert!(l.contains("ETA ?"), "no ETA in the first second: {l}");
        }
    }
    assert!(
        err.lines()
            .last()
            .unwrap()
            .starts_with("pushed m@1.0.0 to "),
        "the summary comes last: {err}"
    );

    let out = env.path("out");
    let pull = [
        "--json",
        "pull",
        "m@1.0.0",
        "--to",
        s(&out),
        "--limit-rate",
        "1M",
    ];
    let err = stderr_of(&pull);
    let events: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let kind = |e: &serde_json::Value| e["event"].as_str().unwrap().to_string();
    assert_eq!(kind(&events[0]), "start", "{err}");
    assert_eq!(events[0]["total_bytes"], total, "{err}");
    assert_eq!(kind(events.last().unwrap()), "finish", "{err}");
    assert_eq!(events.last().unwrap()["bytes"], total, "{err}");
    let mut done = BTreeMap::new();
    let mut last = 0;
    for e in &events[1..events.len() - 1] {
        match kind(e).as_str() {
            "file_done" => {
                let size = e["size"].as_u64().unwrap();
                let path = e["path"].as_str().unwrap().to_string();
                assert!(
                    done.insert(path, size).is_none(),
                    "a file done twice: {err}"
                );
            }
            "progress" => {
                let bytes = e["bytes"].as_u64().unwrap();
                assert!(last <= bytes && bytes <= total, "{err}");
                assert_eq!(e["total_bytes"], total, "{err}");
                assert_eq!(e["operation"], "pull m@1.0.0", "{err}");
                last = bytes;
            }
            other => panic!("unexpected event {other}: {err}"),
        }
    }
    assert!(last > 0, "progress events while the pull ran: {err}");
    let want: BTreeMap<String, u64> = sizes
        .iter()
        .map(|(p, n)| (p.to_string(), *n as u64))
        .collect();
    assert_eq!(done, want, "{err}");

    let out2 = env.path("out2");
    let quiet = ["-q", "pull", "m@1.0.0", "--to", s(&out2)];
    assert_eq!(stderr_of(&quiet), "", "-q prints nothing on stderr");
}

/// Review fixes of 2026-12-07: usage errors are exit 2 with `--json`'s failure document even
/// when the parser finds them; a missing push input is a usage error naming it; `rm` refuses
/// an aliased version unless `--force`, and a pull through the then dangling alias says so;
/// the audit log records what alias and verify did, and a verify that exits 5 as a failure;
/// `--help` never shows a secret from the environment, and logs carry no colour codes.
#[test]
fn review_fixes_usage_errors_aliased_rm_and_audit_details() {
    let env = Env::new(Backend::Fs);
    let src = env.path("src");
    write_file(&src.join("w.bin"), &noise(7, 100_000));
    let dir = src.to_str().unwrap();

    let out = env.run(&["--json", "push", dir, "--version", "1.0.0"]);
    assert_eq!(out.status.code(), Some(2));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("failure document");
    assert_eq!(j["error"]["category"], "usage", "{j}");
    assert!(
        j["error"]["message"].as_str().unwrap().contains("--name"),
        "{j}"
    );
    let missing = env.path("nope");
    let e = env.fails(
        2,
        &[
            "push",
            missing.to_str().unwrap(),
            "--name",
            "a",
            "--version",
            "1.0.0",
        ],
    );
    assert!(e.contains("does not exist"), "{e}");

    env.ok(&["push", dir, "--name", "a", "--version", "1.0.0", "-q"]);
    env.ok(&["alias", "set", "a@1.0.0", "prod"]);
    let e = env.fails(4, &["rm", "a@1.0.0"]);
    assert!(e.contains("alias prod") && e.contains("--force"), "{e}");
    env.ok(&["info", "a@1.0.0"]);
    env.ok(&["rm", "a@1.0.0", "--force"]);
    // (From a cache that never held it: a cached manifest is still that version's.)
    let out = env.path("out");
    let e = env.fails_in("c2", 3, &["pull", "a@prod", "--to", out.to_str().unwrap()]);
    assert!(e.contains("points at 1.0.0, which was removed"), "{e}");

    env.ok(&["push", dir, "--name", "a", "--version", "2.0.0", "-q"]);
    env.ok(&["alias", "set", "a@2.0.0", "prod"]);
    let manifest = env.path("vault/models/a/versions/3.0.0.json");
    write_file(&manifest, b"{\"format\": 2}");
    let e = env.fails(5, &["verify"]);
    assert!(
        e.contains("a@3.0.0: manifest unreadable") && e.contains("1 manifests unreadable"),
        "{e}"
    );
    let log = std::fs::read_to_string(env.path("data/mvault/logs/audit.jsonl")).expect("audit");
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON record"))
        .collect();
    let alias = records
        .iter()
        .rev()
        .find(|r| r["command"] == "alias")
        .expect("alias record");
    assert_eq!(alias["model"], "a", "{alias}");
    assert_eq!(alias["version"], "2.0.0", "{alias}");
    assert_eq!(
        alias["detail"], "alias prod -> 2.0.0 (was 1.0.0)",
        "{alias}"
    );
    let verify = records.last().unwrap();
    assert_eq!(verify["command"], "verify", "{verify}");
    assert_eq!(verify["result"], "error", "{verify}");

    let mut c = env.cmd();
    c.env("MVAULT_REMOTE", "s3://b/p?secret_key=HELPLEAKSECRET")
        .args(["list", "--help"]);
    let help = c.output().unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains("HELPLEAK"));
    let out = env.run(&["-vv", "list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DEBUG") && !stderr.contains("\\x1b"),
        "{stderr}"
    );
}

/// A metadata file's `description` yields to `--description` and never lands in the extra
/// metadata (until 2026-12-07 it did); a known key of the wrong type is exit 2, nothing pushed.
#[test]
fn metadata_file_merges_under_the_flags_and_refuses_wrong_types() {
    let env = Env::new(Backend::Fs);
    let dir = env.path("m");
    write_file(&dir.join("w.bin"), &noise(5, 10_000));
    let meta = env.path("meta.json");
    write_file(
        &meta,
        br#"{"description": "from file", "owner": "me", "tags": {"team": "nlp"}}"#,
    );
    let push = |version: &str, extra: &[&str]| {
        let mut args = vec!["push", s(&dir), "--name", "m", "--version", version];
        args.extend_from_slice(&["--metadata-file", s(&meta)]);
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let args = push("1.0.0", &["--description", "explicit"]);
    env.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let info = env.json(&["info", "m@1.0.0"]);
    assert_eq!(info["description"], "explicit", "{info}");
    assert_eq!(info["extra"], serde_json::json!({"owner": "me"}), "{info}");
    assert_eq!(info["tags"]["team"], "nlp", "{info}");

    write_file(&meta, br#"{"tags": "nlp"}"#);
    let args = push("2.0.0", &[]);
    let e = env.fails(2, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(e.contains("tags must be an object"), "{e}");
    env.fails(3, &["info", "m@2.0.0"]);
}
