//! Backend-independent command-line behaviour: help, usage errors, unreachable remotes.

use assert_cmd::prelude::*;

use crate::common::{Backend, Env, dead_port, noise, write_file};

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
    let out = env.json(&[
        "push",
        "--models-dir",
        dir.to_str().unwrap(),
        "--version",
        "1.0.0",
    ]);
    assert_eq!(out.as_array().unwrap().len(), 3, "{out}");
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
