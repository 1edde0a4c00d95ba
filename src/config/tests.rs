use super::*;

fn env_of<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

fn parse(text: &str, vars: &[(&str, &str)]) -> Result<Config, Error> {
    Config::parse_with_env(text, Path::new("/etc/mv/mvault.yaml"), env_of(vars))
}

/// The load error, else the first provider's deferred problem.
fn fail(text: &str, vars: &[(&str, &str)]) -> String {
    match parse(text, vars) {
        Err(e) => e.to_string(),
        Ok(c) => c
            .providers
            .iter()
            .find_map(Provider::problem)
            .expect(text)
            .to_string(),
    }
}

const SEED: &str = "\
cloud_storage:
  default_provider: aws_s3
  providers:
    - name: aws_s3
      type: s3
      enabled: true
      config: { bucket: eitp-models, region: us-east-1, prefix: /models/, access_key: \"${AWS_ACCESS_KEY_ID}\", secret_key: \"${AWS_SECRET_ACCESS_KEY}\" }
    - name: google_cloud
      enabled: false
      config:
        bucket: eitp-gcs
        credentials_path: \"${GOOGLE_APPLICATION_CREDENTIALS}\"
    - name: azure_blob
      config:
        container: models
        connection_string: \"${AZURE_STORAGE_CONNECTION_STRING}\"
        timeout: 2m
    - name: local
      config:
        path: vault
        prefix: team
  cache:
    max_size: 20G
    ttl: 30d
  transfer:
    jobs: 16
    rate_limit: 50M
  audit:
    path: /var/log/mvault/audit.jsonl
    max_size: 10M
";

#[test]
fn parses_the_seed_shape() {
    let aws = [
        ("AWS_ACCESS_KEY_ID", "AK"),
        ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMIsecretKEYab"),
    ];
    let c = parse(SEED, &aws).unwrap();
    let s3 = c.default_spec().unwrap().unwrap();
    let (az, local, p) = (&c.providers[2].spec, c.spec("local").unwrap(), &c.providers);
    let names: Vec<_> = c
        .enabled_providers()
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    for (got, want) in [
        (
            format!("{:?} {} {}", s3.backend, s3.bucket, s3.prefix),
            "S3 eitp-models models",
        ),
        (
            format!("{:?} {:?}", c.default_provider, s3.label),
            r#"Some("aws_s3") Some("aws_s3")"#,
        ),
        (
            format!("{:?}", s3.options),
            r#"{"access_key": "AK", "region": "us-east-1", "secret_key": "wJalrXUtnFEMIsecretKEYab"}"#,
        ),
        (
            format!("{} {}", az.bucket, az.options["timeout"]),
            "models 120",
        ),
        (
            format!("{:?} {} [{}]", local.backend, local.bucket, local.prefix),
            "Fs /etc/mv/vault/team []",
        ),
        (
            format!("{:?} {} {} {names:?}", p[1].backend, p[0].line, p[3].line),
            r#"Gcs 4 18 ["aws_s3", "azure_blob", "local"]"#,
        ),
        // azure_blob's variable is unset: reported only when it is used.
        (
            c.spec("azure_blob").unwrap_err().to_string(),
            "/etc/mv/mvault.yaml:16: cloud_storage.providers[azure_blob].config.connection_string: environment variable AZURE_STORAGE_CONNECTION_STRING is not set (set it, or write ${AZURE_STORAGE_CONNECTION_STRING:-default})",
        ),
    ] {
        assert_eq!(got, want);
    }
    assert_eq!(
        c.cache,
        CacheConfig {
            max_size_bytes: Some(20 << 30),
            ttl_secs: Some(30 * 86_400)
        }
    );
    let transfer = TransferConfig {
        jobs: Some(16),
        rate_limit_bytes_per_sec: Some(50 << 20),
    };
    let audit = AuditConfig {
        path: Some("/var/log/mvault/audit.jsonl".into()),
        max_size_bytes: Some(10 << 20),
    };
    assert_eq!((c.transfer, c.audit), (transfer, audit));
}

#[test]
fn empty_and_missing_sections_give_defaults() {
    for text in [
        "",
        "# nothing\n",
        "cloud_storage:\n",
        "cloud_storage:\n  providers:\n",
    ] {
        let c = parse(text, &[]).unwrap();
        assert!(
            c.providers.is_empty() && c.default_provider.is_none(),
            "{text:?}"
        );
        assert_eq!(c.cache, CacheConfig::default());
        assert!(c.default_spec().is_none());
    }
}

#[test]
fn interpolation() {
    use env::{Bad, expand};
    let env = env_of(&[("SET", "v"), ("EMPTY", "")]);
    let syntax = |m: &str| Err(Bad::Syntax(m.to_string()));
    for (raw, want) in [
        ("a-${SET}-b", Ok("a-v-b".to_string())),
        ("${UNSET:-d}", Ok("d".into())),
        ("${SET:-d}", Ok("v".into())),
        ("${EMPTY:-d}", Ok("d".into())),
        ("${EMPTY}", Ok("".into())),
        ("${UNSET:-}", Ok("".into())),
        ("$${SET} costs $5 $", Ok("${SET} costs $5 $".into())),
        ("plain", Ok("plain".into())),
        ("", Ok("".into())),
        ("${SET}${UNSET}${UNSET2}", Err(Bad::Unset("UNSET".into()))),
        (
            "${UNSET}${SET",
            syntax("unterminated ${ (write $$ for a literal $)"),
        ),
        (
            "${}",
            syntax("invalid variable name \"\" (use ${NAME} or ${NAME:-default})"),
        ),
    ] {
        assert_eq!(expand(raw, &env), want, "{raw}");
    }
    for bad in ["${1X}", "${A B}", "${-x}"] {
        assert!(matches!(expand(bad, &env), Err(Bad::Syntax(_))), "{bad}");
    }
}

#[test]
fn variables_name_file_line_and_key_never_values() {
    let text = "cloud_storage:\n  audit:\n    path: ${LOGS:-/tmp}/audit.jsonl\n  cache:\n    max_size: ${CACHE_SIZE}\n";
    let c = parse(text, &[("CACHE_SIZE", "1G")]).unwrap();
    assert_eq!(
        (c.audit.path.as_deref(), c.cache.max_size_bytes),
        (Some(Path::new("/tmp/audit.jsonl")), Some(1 << 30))
    );
    assert_eq!(
        fail(text, &[]),
        "/etc/mv/mvault.yaml:5: cloud_storage.cache.max_size: environment variable CACHE_SIZE \
         is not set (set it, or write ${CACHE_SIZE:-default})"
    );
    let e = fail(text, &[("CACHE_SIZE", "lots-of-hunter2")]);
    assert!(
        e.contains(":5:") && e.contains("${CACHE_SIZE}") && !e.contains("hunter2"),
        "{e}"
    );

    let text = "cloud_storage:\n  providers:\n    - name: prod\n      type: s3\n      config:\n        bucket: b\n        secret_access_key: ${PROD_SECRET}\n";
    let c = parse(text, &[]).unwrap();
    let e = c.spec("prod").unwrap_err();
    assert!(matches!(&e, Error::MissingVar { line: 7, var, .. } if var == "PROD_SECRET"));
    let want = "/etc/mv/mvault.yaml:7: cloud_storage.providers[prod].config.secret_access_key:";
    assert!(e.to_string().starts_with(want), "{e}");
    assert_eq!(c.providers[0].problem(), Some(&e));
    // Set, the alias lands on the canonical key.
    let c = parse(text, &[("PROD_SECRET", "s3cr3t")]).unwrap();
    assert_eq!(c.spec("prod").unwrap().options["secret_key"], "s3cr3t");
}

/// Every error names the file, the line and the key: at load for the file's shape, when the
/// provider is used for its values (`fail` reads both).
#[test]
fn errors_name_line_and_key() {
    let p = |rest: &str| format!("cloud_storage:\n  providers:\n    - name: a\n{rest}");
    let s3 = |config: &str| p(&format!("      type: s3\n      config: {{{config}}}\n"));
    for (text, want) in [
        // Unknown keys, with the known ones.
        (p("      type: s3\n      config:\n        bucket: b\n        regoin: x\n"), "/etc/mv/mvault.yaml:7: unknown key \"regoin\" in cloud_storage.providers[a].config (known: bucket, container,"),
        (s3("bucket: b, regoin: x"), "access_key_id, secret_access_key, access_key_secret, credentials_path)"),
        ("cloud_storage: {}\nstorage: {}\n".into(), "/etc/mv/mvault.yaml:2: unknown key \"storage\" in the top level (known: cloud_storage)"),
        ("cloud_storage:\n  cache:\n    max_size: 1G\n    ttl_days: 3\n".into(), ":4: unknown key \"ttl_days\" in cloud_storage.cache (known: max_size, ttl)"),
        ("cloud_storage:\n  providers:\n  - {name: z, type: fs}\n  - name: a\n    type: s3\n    bucket: b\n".into(), ":6: unknown key \"bucket\" in cloud_storage.providers[1] (known: name, type, enabled, config)"),
        ("defaults: &d\n  type: s3\ncloud_storage: {}\n".into(), ":1: unknown key \"defaults\" in the top level"),
        // Values of the wrong kind or out of range.
        ("cloud_storage: [1]\n".into(), "/etc/mv/mvault.yaml:1: invalid YAML: expected mapping start"),
        ("cloud_storage:\n  providers: 3\n".into(), ":2: invalid YAML: "),
        ("cloud_storage:\n  audit: {path: \"${EMPTY}\"}\n".into(), ":2: cloud_storage.audit.path: \"${EMPTY}\" is not a path"),
        ("cloud_storage:\n  transfer:\n    jobs: 0\n".into(), ":3: cloud_storage.transfer.jobs: \"0\" is not a number from 1 to 1024"),
        ("cloud_storage:\n  transfer:\n    rate_limit: fast\n".into(), ":3: cloud_storage.transfer.rate_limit: \"fast\" is not a rate"),
        ("cloud_storage:\n  cache:\n    ttl: 3 days\n".into(), ":3: cloud_storage.cache.ttl: \"3 days\" is not a duration"),
        ("cloud_storage:\n  cache: {max_size: lots}\n".into(), ":2: cloud_storage.cache.max_size: \"lots\" is not a size"),
        (p("      type: fs\n      enabled: maybe\n"), ":5: cloud_storage.providers[a].enabled: expected true or false"),
        ("cloud_storage:\n  providers:\n    - type: s3\n".into(), ":3: cloud_storage.providers[0]: every provider needs a name"),
        ("cloud_storage:\n  providers:\n    - name: s3://x\n".into(), ":3: cloud_storage.providers[s3://x].name: provider names are"),
        (p("      type: s3\n      config:\n        bucket: [x]\n"), ":6: cloud_storage.providers[a].config.bucket: expected a single value, found a list"),
        (p("      type: s3\n      config:\n        bucket: ${X\n"), ":6: cloud_storage.providers[a].config.bucket: unterminated ${"),
        ("cloud_storage:\n  default_provider: nope\n  providers:\n    - name: a\n      type: fs\n".into(), ":2: cloud_storage.default_provider: \"nope\" is not the name of a provider (known: a)"),
        (s3("bucket: b, access_key: x, access_key_id: y"), ":5: cloud_storage.providers[a].config.access_key_id: same setting as cloud_storage.providers[a].config.access_key"),
        (p("      type: ftp\n"), ":4: cloud_storage.providers[a].type: unknown type \"ftp\" (known: s3, gcs, azblob, oss, fs)"),
        (p(""), ":3: cloud_storage.providers[a]: type is required"),
        ("cloud_storage:\n  providers:\n    - {name: a, type: fs}\n    - name: b\n      type: fs\n    - name: a\n      type: s3\n".into(), "/etc/mv/mvault.yaml:6: cloud_storage.providers[a].name: duplicate provider name \"a\" (first defined at line 3)"),
        // Deferred: problems in a provider's values. A whole mapping is reported at its start.
        (p("      type: s3\n      config:\n        region: x\n"), ":6: cloud_storage.providers[a].config: bucket is required for type s3"),
        (p("      type: azblob\n      config: {container: a, bucket: b}\n"), ":5: cloud_storage.providers[a].config.bucket: give only one of container, bucket"),
        (p("      type: gcs\n      config: {bucket: a, path: /x}\n"), ":5: cloud_storage.providers[a].config.path: not used by type gcs; use bucket"),
        (s3("bucket: a, timeout: soon"), ":5: cloud_storage.providers[a].config.timeout: \"soon\" is not a duration"),
        (s3("bucket: a, anonymous: yes"), ":5: cloud_storage.providers[a].config.anonymous: \"yes\" is not true or false"),
        (s3("bucket: a/b"), ":5: cloud_storage.providers[a].config.bucket: must not contain '/'"),
        (p("      type: fs\n"), ":3: cloud_storage.providers[a].config: path is required for type fs"),
        // serde-saphyr's own errors (syntax, duplicate keys) carry their line.
        ("cloud_storage:\n  providers:\n    - name: a\n   type: s3\n".into(), "/etc/mv/mvault.yaml:4: invalid YAML: "),
        ("cloud_storage:\n  cache: {}\n  cache: {}\n".into(), "/etc/mv/mvault.yaml:3: invalid YAML: "),
    ] {
        let e = fail(&text, &[("EMPTY", "")]);
        assert!(e.contains(want), "{text:?}\n got: {e}\nwant: {want}");
    }
}

#[test]
fn types_and_option_values() {
    let text = "cloud_storage:\n  providers:\n    - {name: google_cloud, config: {bucket: g}}\n    - {name: aliyun_oss, config: {bucket: o, region: cn-hangzhou}}\n    - {name: x, type: azblob, config: {bucket: c, anonymous: TRUE, virtual_host_style: false}}\n";
    let c = parse(text, &[]).unwrap();
    let backends: Vec<_> = c.providers.iter().map(|p| p.backend).collect();
    assert_eq!(backends, [Backend::Gcs, Backend::Oss, Backend::Azblob]);
    let s = c.spec("x").unwrap();
    let opts = (
        s.bucket.as_str(),
        &s.options["anonymous"],
        &s.options["virtual_host_style"],
    );
    assert_eq!(opts, ("c", &"true".into(), &"false".into()));
}

#[test]
fn disabled_and_unknown_providers_are_refused_by_name() {
    let text = "cloud_storage:\n  default_provider: old\n  providers:\n    - name: live\n      type: fs\n      config: {path: /v}\n    - name: old\n      type: s3\n      enabled: false\n      config: {bucket: \"${NEVER_SET}\"}\n";
    let c = parse(text, &[]).unwrap();
    let e = c.provider("old").unwrap_err().to_string();
    assert_eq!(
        e,
        "provider old is disabled in /etc/mv/mvault.yaml:7; set enabled: true"
    );
    assert!(matches!(
        c.default_spec(),
        Some(Err(Error::Disabled { .. }))
    ));
    assert!(c.provider("live").is_ok());
    let e = c.provider("other").unwrap_err().to_string();
    assert_eq!(
        e,
        "provider \"other\" is not defined in /etc/mv/mvault.yaml (known: live, old)"
    );
    let e = Config::default().provider("x").unwrap_err().to_string();
    assert!(e.contains("no config file found"), "{e}");
}

#[test]
fn masks_secrets() {
    let text = "cloud_storage:\n  providers:\n    - name: a\n      type: s3\n      config:\n        bucket: b\n        region: eu\n        access_key: ${AK}\n        secret_key: ${SK}\n        session_token: short\n";
    let c = parse(
        text,
        &[
            ("AK", "AKIAEXAMPLEKEY01"),
            ("SK", "wJalrXUtnFEMIsecretKEYab"),
        ],
    );
    let c = c.unwrap();
    let m = c.providers[0].masked_options();
    let keys = ["region", "access_key", "secret_key", "session_token"];
    assert_eq!(
        keys.map(|k| m[k].as_str()),
        ["eu", "****01", "****ab", "***"]
    );
    assert!(!format!("{c:?}").contains("wJalrXUtnFEMIsecretKEY"));
}

#[test]
fn search_order() {
    let dir = tempfile::tempdir().unwrap();
    let [cwd, xdg, home] = ["work", "xdg", "home"].map(|d| dir.path().join(d));
    for d in [&cwd, &xdg.join("mvault"), &home.join(".config/mvault")] {
        std::fs::create_dir_all(d).unwrap();
    }
    let (xdg_s, home_s) = (xdg.to_str().unwrap(), home.to_str().unwrap());
    let env_all = [("XDG_CONFIG_HOME", xdg_s), ("HOME", home_s)];
    let find = |explicit: Option<&str>, env: &[(&str, &str)]| {
        Config::find(explicit.map(Path::new), &cwd, env_of(env))
    };
    let load =
        |explicit: Option<&str>| Config::load_from(explicit.map(Path::new), &cwd, env_of(&env_all));
    assert_eq!(find(None, &env_all).unwrap(), None);
    assert!(load(None).unwrap().path.is_none());
    let write = |p: PathBuf, text: &str| std::fs::write(&p, text).map(|()| Some(p)).unwrap();
    let home_file = write(home.join(".config/mvault/config.yaml"), "");
    assert_eq!(find(None, &[("HOME", home_s)]).unwrap(), home_file);
    assert_eq!(find(None, &env_all).unwrap(), None);
    let jobs = "cloud_storage:\n  transfer: {jobs: 3}\n";
    let files = [
        ("xdg", "mvault/config.yaml", ""),
        ("cwd", "cloud_storage_config.yaml", ""),
        ("cwd", "mvault.yaml", jobs),
    ];
    for (base, file, text) in files {
        let want = write(if base == "xdg" { &xdg } else { &cwd }.join(file), text);
        assert_eq!(find(None, &env_all).unwrap(), want);
    }
    assert_eq!(load(None).unwrap().transfer.jobs, Some(3));

    // An explicit file wins, and must exist; relative names are taken from the cwd.
    let other = write(cwd.join("other.yaml"), "");
    assert_eq!(find(Some("other.yaml"), &env_all).unwrap(), other);
    let env_var = [("MVAULT_CONFIG", "other.yaml")];
    assert_eq!(find(None, &env_var).unwrap(), other);
    let e = find(Some("absent.yaml"), &env_var).unwrap_err();
    assert_eq!(
        e,
        Error::Missing {
            path: cwd.join("absent.yaml")
        }
    );
    assert!(e.to_string().ends_with("absent.yaml does not exist"));
    let bad = write(cwd.join("bad.yaml"), "cloud_storage: {\n");
    let e = load(Some("bad.yaml")).unwrap_err();
    assert!(
        matches!(&e, Error::Syntax { path, .. } if Some(path) == bad.as_ref()),
        "{e}"
    );
}

#[test]
fn merge_keys() {
    let text = "cloud_storage:\n  providers:\n    - &p {name: a, type: s3, config: {bucket: b}}\n    - <<: *p\n      name: b\n";
    let c = parse(text, &[]).unwrap();
    assert_eq!(
        (c.spec("b").unwrap().bucket.as_str(), c.providers[1].line),
        ("b", 4)
    );
}
