use super::*;

fn env_of<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |k| Some(vars.iter().find(|(n, _)| *n == k)?.1.to_string())
}

/// Parses `text` as /etc/mv/mvault.yaml.
fn parse(text: &str, vars: &[(&str, &str)]) -> Result<Config, Error> {
    Config::parse(text, Path::new("/etc/mv/mvault.yaml"), env_of(vars))
}

/// The load error, else the first provider's deferred problem.
fn fail(text: &str, vars: &[(&str, &str)]) -> String {
    let first = |c: Config| c.providers.into_iter().find_map(|p| p.problem).expect(text);
    parse(text, vars).map_or_else(|e| e, first).to_string()
}

/// One line per provider: name, type, line, enabled, bucket, [prefix], masked options, and
/// its deferred problem if any.
fn rows(c: &Config) -> Vec<String> {
    let row = |p: &Provider| {
        let problem = p.problem().map_or(String::new(), |e| format!(" | {e}"));
        let (name, kind, line, on) = (&p.name, p.backend, p.line, p.enabled);
        let (bucket, prefix, options) = (&p.spec.bucket, &p.spec.prefix, p.masked_options());
        format!("{name} {kind:?} {line} {on} {bucket} [{prefix}] {options:?}{problem}")
    };
    c.providers.iter().map(row).collect()
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
  cache: { max_size: 20G, ttl: 30d }
  transfer: { jobs: 16, rate_limit: 50M }
  audit: { path: /var/log/mvault/audit.jsonl, max_size: 10M }
";

#[test]
fn parses_the_seed_shape() {
    let secret = ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMIsecretKEYab");
    let c = parse(SEED, &[("AWS_ACCESS_KEY_ID", "AK"), secret]).unwrap();
    let want = [
        r#"aws_s3 S3 4 true eitp-models [models] {"access_key": "***", "region": "us-east-1", "secret_key": "****ab"}"#,
        r#"google_cloud Gcs 8 false eitp-gcs [] {} | /etc/mv/mvault.yaml:12: cloud_storage.providers[google_cloud].config.credentials_path: environment variable GOOGLE_APPLICATION_CREDENTIALS is not set (set it, or write ${GOOGLE_APPLICATION_CREDENTIALS:-default})"#,
        r#"azure_blob Azblob 13 true models [] {"timeout": "120"} | /etc/mv/mvault.yaml:16: cloud_storage.providers[azure_blob].config.connection_string: environment variable AZURE_STORAGE_CONNECTION_STRING is not set (set it, or write ${AZURE_STORAGE_CONNECTION_STRING:-default})"#,
        r#"local Fs 18 true /etc/mv/vault/team [] {}"#,
    ];
    assert_eq!(rows(&c), want);
    // A provider's problem is reported when it is used.
    let e = c.spec("azure_blob").err();
    assert_eq!(e.as_ref(), c.providers[2].problem());
    let s3 = c.default_spec().unwrap().unwrap();
    assert_eq!(s3.label.as_deref(), Some("aws_s3"));
    assert_eq!(s3, c.providers[0].spec);
    assert_eq!(s3.options["secret_key"], secret.1);
    let names = Vec::from_iter(c.enabled_providers().iter().map(|p| p.name.as_str()));
    assert_eq!(names, ["aws_s3", "azure_blob", "local"]);
    // A disabled provider is refused by name, its problem unreported.
    let e = c.spec("google_cloud").unwrap_err();
    let want = "/etc/mv/mvault.yaml:8: provider google_cloud is disabled; set enabled: true";
    assert_eq!(e.to_string(), want);
    let want = "provider \"other\" is not defined in /etc/mv/mvault.yaml (known: aws_s3, google_cloud, azure_blob, local)";
    assert_eq!(c.spec("other").unwrap_err().to_string(), want);
    let e = Config::default().spec("x").unwrap_err().to_string();
    let want = "provider \"x\" is not defined: no config file found (looked for ./mvault.yaml, ";
    assert!(e.starts_with(want), "{e}");
    let cache = (c.cache.max_size_bytes, c.cache.ttl_secs);
    assert_eq!(cache, (Some(20 << 30), Some(30 * 86400)));
    let transfer = (c.jobs, c.rate_limit_bytes_per_sec);
    assert_eq!(transfer, (Some(16), Some(50 << 20)));
    assert_eq!(c.audit.path, Some("/var/log/mvault/audit.jsonl".into()));
    assert_eq!(c.audit.max_size_bytes, Some(10 << 20));
}

/// Files that load, and the providers they give.
#[test]
fn providers_as_loaded() {
    let text = "cloud_storage:\n  providers:\n    - {name: google_cloud, config: {bucket: g}}\n    - {name: aliyun_oss, config: {bucket: o, region: cn-hangzhou}}\n    - {name: x, type: azblob, config: {bucket: c, anonymous: TRUE, virtual_host_style: false}}\n    - &p {name: a, type: s3, config: {bucket: b}}\n    - <<: *p\n      name: b\n    - name: s\n      type: s3\n      config:\n        bucket: b\n        region: eu\n        access_key: ${AK}\n        secret_access_key: ${SK}\n        session_token: short\n";
    let secret = ("SK", "wJalrXUtnFEMIsecretKEYab");
    let c = parse(text, &[("AK", "AKIAEXAMPLEKEY01"), secret]).unwrap();
    assert!(!format!("{c:?}").contains(secret.1));
    let want = [
        // The type may follow from the name; option values are normalised.
        "google_cloud Gcs 3 true g [] {}",
        r#"aliyun_oss Oss 4 true o [] {"region": "cn-hangzhou"}"#,
        r#"x Azblob 5 true c [] {"anonymous": "true", "virtual_host_style": "false"}"#,
        // A merged entry is at the line of its `<<`.
        "a S3 6 true b [] {}",
        "b S3 7 true b [] {}",
        // Aliases land on the canonical key; secrets and the access key id are masked.
        r#"s S3 9 true b [] {"access_key": "****01", "region": "eu", "secret_key": "****ab", "session_token": "***"}"#,
    ];
    assert_eq!(rows(&c), want);
    // Empty, a comment, an empty section, an empty list.
    for text in "|# nothing\n|cloud_storage:\n|cloud_storage:\n  providers:\n".split('|') {
        let c = parse(text, &[]).unwrap();
        let empty = c.providers.is_empty() && c.cache == CacheConfig::default();
        assert!(empty && c.default_spec().is_none(), "{text:?}");
    }
    let text = "cloud_storage:\n  audit:\n    path: ${LOGS:-/tmp}/audit.jsonl\n  cache:\n    max_size: ${CACHE_SIZE}\n  usage: {alert_monthly_cost: 12.5}\n  encryption: {key_file: k}\n  signing: {key: s.pem, trusted_keys: [t.pub, /u.pub]}\n";
    let c = parse(text, &[("CACHE_SIZE", "1G")]).unwrap();
    assert_eq!(c.audit.path.as_deref(), Some(Path::new("/tmp/audit.jsonl")));
    assert_eq!(c.cache.max_size_bytes, Some(1 << 30));
    assert_eq!(c.alert_monthly_cost_usd, Some(12.5));
    let (k, s, t) = (&c.encryption_key_file, &c.sign_key, &c.trusted_keys);
    let want = r#"Some("/etc/mv/k") Some("/etc/mv/s.pem") ["/etc/mv/t.pub", "/u.pub"]"#;
    assert_eq!(format!("{k:?} {s:?} {t:?}"), want);
    let c = parse("cloud_storage:\n  signing: {trusted_keys: t.pub}\n", &[]).unwrap();
    assert_eq!(c.trusted_keys, [Path::new("/etc/mv/t.pub")]);
}

#[test]
fn interpolation() {
    let env = env_of(&[("SET", "v"), ("EMPTY", "")]);
    for (raw, want) in [
        ("a-${SET}-b", r#"Ok("a-v-b")"#),
        ("${UNSET:-d}", r#"Ok("d")"#),
        ("${SET:-d}", r#"Ok("v")"#),
        ("${EMPTY:-d}", r#"Ok("d")"#),
        ("${EMPTY}", r#"Ok("")"#),
        ("${UNSET:-}", r#"Ok("")"#),
        ("$${SET} costs $5 $", r#"Ok("${SET} costs $5 $")"#),
        ("plain", r#"Ok("plain")"#),
        ("", r#"Ok("")"#),
        ("${SET}${UNSET}${UNSET2}", r#"Err(Unset("UNSET"))"#),
        // The full messages are in `errors_name_line_and_key`; a syntax error wins.
        ("${UNSET}${SET", r#"Err(Syntax("unterminated ${"#),
        ("${1X}", r#"Err(Syntax("invalid variable name \"1X\""#),
        ("${A B}", r#"Err(Syntax("invalid variable name \"A B\""#),
        ("${-x}", r#"Err(Syntax("invalid variable name \"-x\""#),
    ] {
        let got = format!("{:?}", env::expand(raw, &env));
        assert!(got.starts_with(want), "{raw}: {got}");
    }
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
        ("cloud_storage:\n  providers:\n  - {name: z, type: fs}\n  - name: a\n    type: s3\n    bucket: b\n".into(), ":6: unknown key \"bucket\" in a cloud_storage.providers entry (known: name, type, enabled, config)"),
        ("defaults: &d\n  type: s3\ncloud_storage: {}\n".into(), ":1: unknown key \"defaults\" in the top level"),
        // Values of the wrong kind or out of range.
        ("cloud_storage: [1]\n".into(), "/etc/mv/mvault.yaml:1: invalid YAML: expected mapping start"),
        ("cloud_storage:\n  providers: 3\n".into(), ":2: invalid YAML: "),
        ("cloud_storage:\n  audit: {path: \"${EMPTY}\"}\n".into(), ":2: cloud_storage.audit.path: \"${EMPTY}\" is not a path"),
        ("cloud_storage:\n  transfer:\n    jobs: 0\n".into(), ":3: cloud_storage.transfer.jobs: \"0\" is not a number from 1 to 1024"),
        ("cloud_storage:\n  transfer:\n    rate_limit: fast\n".into(), ":3: cloud_storage.transfer.rate_limit: \"fast\" is not a rate"),
        ("cloud_storage:\n  cache:\n    ttl: 3 days\n".into(), ":3: cloud_storage.cache.ttl: \"3 days\" is not a duration"),
        ("cloud_storage:\n  cache: {max_size: lots}\n".into(), ":2: cloud_storage.cache.max_size: \"lots\" is not a size"),
        ("cloud_storage:\n  usage: {alert_monthly_cost: -1}\n".into(), ":2: cloud_storage.usage.alert_monthly_cost: \"-1\" is not an amount in USD"),
        ("cloud_storage:\n  signing:\n    trusted_keys: [a, {b: c}]\n".into(), ":3: cloud_storage.signing.trusted_keys: expected a single value, found a mapping"),
        ("cloud_storage:\n  signing: {keys: x}\n".into(), ":2: unknown key \"keys\" in cloud_storage.signing (known: key, trusted_keys)"),
        // Variables: named with the file, line and key, never their values.
        ("cloud_storage:\n  cache:\n    max_size: ${CACHE_SIZE}\n".into(), "/etc/mv/mvault.yaml:3: cloud_storage.cache.max_size: environment variable CACHE_SIZE is not set (set it, or write ${CACHE_SIZE:-default})"),
        ("cloud_storage:\n  cache: {max_size: \"${HUNTER}\"}\n".into(), ":2: cloud_storage.cache.max_size: \"${HUNTER}\" is not a size"),
        (s3("bucket: b, secret_access_key: \"${PROD_SECRET}\""), "/etc/mv/mvault.yaml:5: cloud_storage.providers[a].config.secret_access_key: environment variable PROD_SECRET is not set"),
        (p("      type: fs\n      enabled: maybe\n"), ":5: cloud_storage.providers[a].enabled: expected true or false"),
        ("cloud_storage:\n  providers:\n    - type: s3\n".into(), ":3: cloud_storage.providers[0]: every provider needs a name"),
        ("cloud_storage:\n  providers:\n    - name: s3://x\n".into(), ":3: cloud_storage.providers[s3://x].name: provider names are"),
        (p("      type: s3\n      config:\n        bucket: [x]\n"), ":6: cloud_storage.providers[a].config.bucket: expected a single value, found a list"),
        (p("      type: s3\n      config:\n        bucket: ${X\n"), ":6: cloud_storage.providers[a].config.bucket: unterminated ${ (write $$ for a literal $)"),
        ("cloud_storage:\n  cache: {ttl: \"${}\"}\n".into(), ":2: cloud_storage.cache.ttl: invalid variable name \"\" (use ${NAME} or ${NAME:-default})"),
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
        let e = fail(&text, &[("EMPTY", ""), ("HUNTER", "lots-of-hunter2")]);
        assert!(e.contains(want) && !e.contains("hunter2"), "{text:?}\n got: {e}\nwant: {want}");
    }
}

/// What the CLI test of the search order (tests/ops.rs) does not reach: `$HOME/.config` when
/// `XDG_CONFIG_HOME` is unset, names taken from `cwd`, and the exact errors.
#[test]
fn search_order() {
    let dir = tempfile::tempdir().unwrap();
    let [cwd, xdg, home] = ["work", "xdg", "home"].map(|d| dir.path().join(d));
    for d in [&cwd, &xdg.join("mvault"), &home.join(".config/mvault")] {
        std::fs::create_dir_all(d).unwrap();
    }
    let (xdg_s, home_s) = (xdg.to_str().unwrap(), home.to_str().unwrap());
    let env_all = [("XDG_CONFIG_HOME", xdg_s), ("HOME", home_s)];
    let load = |explicit: Option<&str>, env: &[(&str, &str)]| {
        Config::load_from(explicit.map(Path::new), &cwd, env_of(env))
    };
    let found = |explicit: Option<&str>, env: &[(&str, &str)]| load(explicit, env).unwrap().path;
    assert_eq!(found(None, &env_all), None);
    let write = |p: PathBuf, text: &str| std::fs::write(&p, text).map(|()| Some(p)).unwrap();
    let home_file = write(home.join(".config/mvault/config.yaml"), "");
    assert_eq!(found(None, &[("HOME", home_s)]), home_file);
    assert_eq!(found(None, &env_all), None);
    let jobs = "cloud_storage:\n  transfer: {jobs: 3}\n";
    let xdg_file = write(xdg.join("mvault/config.yaml"), jobs);
    assert_eq!(found(None, &env_all), xdg_file);
    assert_eq!(load(None, &env_all).unwrap().jobs, Some(3));
    let other = write(cwd.join("other.yaml"), "");
    assert_eq!(found(Some("other.yaml"), &env_all), other);
    let env_var = [("MVAULT_CONFIG", "other.yaml")];
    assert_eq!(found(None, &env_var), other);
    let e = |explicit| load(Some(explicit), &env_var).unwrap_err().to_string();
    let absent = cwd.join("absent.yaml");
    let want = format!("config file {} does not exist", absent.display());
    assert_eq!(e("absent.yaml"), want);
    let bad = write(cwd.join("bad.yaml"), "cloud_storage: {\n").unwrap();
    let want = format!("{}:1: invalid YAML: ", bad.display());
    assert!(e("bad.yaml").starts_with(&want), "{}", e("bad.yaml"));
}
