//! `mvault serve` end to end (issue 17): the real binary serving a local vault and a moto S3
//! vault; every page and API route fetched and checked (content, status codes, JSON), the
//! token rule, HTML escaping of hostile metadata, no secret in any response, the cost alert
//! (and `mvault usage`'s exit 6), pagination, and that serving writes nothing to the vault.
//!
//! `fs_*` tests need only the binary; `s3_*` need moto (`scripts/test.sh --test e2e --
//! serve::`).

use crate::common::{Backend, Env, HttpResponse, get, http, required, s, write_file};

/// Every object of the vault with its size: compared before and after serving.
fn snapshot(env: &Env) -> Vec<(String, u64)> {
    let mut all = env.list_objects("chunks/");
    all.extend(env.list_objects("models/"));
    all.sort();
    all
}

fn ok(addr: &str, path: &str) -> HttpResponse {
    let r = get(addr, path);
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    r
}

/// bert 1.0.0, 1.1.0, 2.0.0-rc.1 (metrics, params, tags, aliases moved and rolled back) and
/// gpt2 1.0.0; one pull and one failed pull in the audit log.
fn populate(env: &Env) {
    for (i, v) in ["1.0.0", "1.1.0", "2.0.0-rc.1"].iter().enumerate() {
        let dir = env.path(&format!("bert-{v}"));
        write_file(
            &dir.join("weights.bin"),
            &crate::common::noise(i as u64, 300_000),
        );
        write_file(&dir.join("config.json"), b"{\"layers\": 12}");
        let acc = format!("accuracy={}", ["0.8", "0.85", "0.9"][i]);
        let loss = format!("loss={}", ["0.5", "0.4", "0.3"][i]);
        env.ok(&[
            "push",
            s(&dir),
            "--name",
            "bert",
            "--version",
            v,
            "--description",
            "fine-tuned bert",
            "--metric",
            &acc,
            "--metric",
            &loss,
            "--param",
            "epochs=3",
            "--tag",
            "team=nlp",
        ]);
    }
    let g = env.path("gpt2");
    write_file(&g.join("model.bin"), &crate::common::noise(9, 100_000));
    env.ok(&["push", s(&g), "--name", "gpt2", "--version", "1.0.0"]);
    env.ok(&["alias", "set", "bert@1.0.0", "production"]);
    env.ok(&["alias", "set", "bert@1.1.0", "production"]);
    env.ok(&["rollback", "bert", "production"]);
    env.ok(&["alias", "set", "bert@1.1.0", "staging"]);
    env.ok(&["pull", "bert@1.1.0", "--to", s(&env.path("out"))]);
    env.fails(3, &["pull", "bert@9.9.9"]);
}

/// Fetches every page and API route of a populated vault and checks what they show.
fn pages_and_api(env: &Env, secrets: &[&str]) {
    populate(env);
    let before = snapshot(env);
    let server = env.serve(&[]);
    let a = server.addr.as_str();
    let mut bodies = Vec::new();

    let models = ok(a, "/");
    assert!(
        models
            .header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let csp = models.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(!models.body.contains("<script"), "pages carry no script");
    for want in [
        r#"<table id="models">"#,
        r#"<a href="/models/bert">bert</a>"#,
        r#"<a href="/models/bert/1.1.0">1.1.0</a>"#,
        r#"<a href="/models/gpt2">gpt2</a>"#,
        "production → 1.0.0",
        "staging → 1.1.0",
    ] {
        assert!(models.body.contains(want), "models page lacks {want}");
    }
    let search = ok(a, "/?q=GPT");
    assert!(search.body.contains("/models/gpt2"));
    assert!(
        !search.body.contains(r#"href="/models/bert""#),
        "search filters"
    );
    bodies.push(models.body);

    let model = ok(a, "/models/bert");
    for want in [
        r#"<table id="versions">"#,
        "<svg",
        "<h3>accuracy</h3>",
        "<h3>loss</h3>",
        r#"<a href="/models/bert/2.0.0-rc.1">2.0.0-rc.1</a>"#,
        "tester@",
        "<td>rollback</td>",
        r#"class="alias-history""#,
    ] {
        assert!(model.body.contains(want), "model page lacks {want}");
    }
    // accuracy 0.8, 0.85, 0.9 plotted as three points in the accuracy chart.
    let acc_chart = model.body.split("<h3>accuracy</h3>").nth(1).unwrap();
    let acc_chart = &acc_chart[..acc_chart.find("</svg>").unwrap()];
    assert_eq!(acc_chart.matches("<circle").count(), 3);
    assert!(acc_chart.contains("1.1.0: 0.85"));
    bodies.push(model.body);

    let info = env.json(&["info", "bert@1.1.0"]);
    let digest = info["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "weights.bin")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let version = ok(a, "/models/bert/1.1.0");
    let pull = format!(
        "mvault -r {} pull bert@1.1.0 --to ./bert",
        remote_shown(env)
    );
    for want in [
        r#"<table id="files">"#,
        "<code>weights.bin</code>",
        digest.as_str(),
        r#"<table id="metrics">"#,
        "<code>accuracy</code>",
        r#"<table id="training">"#,
        "<code>epochs</code>",
        r#"<table id="tags">"#,
        "<code>team</code></td><td>nlp",
        "fine-tuned bert",
        "Chunks and dedupe",
        "new bytes stored",
        r#"id="signature""#,
        pull.as_str(),
        "vault = mvault.Vault(",
        "path = vault.pull(&quot;bert@1.1.0&quot;, to=&quot;./bert&quot;)",
        "staging",
    ] {
        assert!(version.body.contains(want), "version page lacks {want}");
    }
    bodies.push(version.body);

    let storage = ok(a, "/storage");
    for want in [
        r#"<table id="cost">"#,
        r#"<table id="usage">"#,
        "dedupe ratio",
        "<svg",
        "S3 Standard",
        r#"id="cost-alert""#,
    ] {
        assert!(storage.body.contains(want), "storage page lacks {want}");
    }
    bodies.push(storage.body);

    let transfers = ok(a, "/transfers");
    for want in [
        r#"<table id="operations">"#,
        r#"<table id="slowest">"#,
        r#"<table id="failed">"#,
        r#"id="chart-throughput""#,
        "<svg",
        "<td>pull</td>",
        "<td>push</td>",
        "bert@9.9.9 not found on ",
    ] {
        assert!(transfers.body.contains(want), "transfers page lacks {want}");
    }
    assert_eq!(ok(a, "/transfers?days=1").status, 200);
    bodies.push(transfers.body);

    let metrics = ok(a, "/metrics");
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    for want in [
        "# TYPE mvault_operations_total counter",
        "mvault_operations_total{command=\"pull\"",
        "result=\"error\"} 1",
        "# TYPE mvault_vault_versions gauge",
        "mvault_vault_versions{remote=",
        "} 4",
        "mvault_vault_monthly_cost_usd{remote=",
        "provider=\"s3\"",
    ] {
        assert!(
            metrics.body.contains(want),
            "/metrics lacks {want}:\n{}",
            metrics.body
        );
    }
    bodies.push(metrics.body);

    let api = ok(a, "/api/models").json();
    assert_eq!(api["matching"], 2);
    assert_eq!(api["models"][0]["name"], "bert");
    assert_eq!(api["models"][0]["versions"], 3);
    assert_eq!(
        api["models"][0]["latest"], "1.1.0",
        "latest is the highest release"
    );
    assert_eq!(api["models"][0]["aliases"][0]["alias"], "production");
    assert!(
        api["models"][0]["last_push"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let detail = ok(a, "/api/models/bert").json();
    assert_eq!(detail["versions"].as_array().unwrap().len(), 3);
    assert_eq!(detail["metrics"], serde_json::json!(["accuracy", "loss"]));
    assert_eq!(detail["versions"][1]["metrics"]["accuracy"], 0.85);
    let history = detail["aliases"][0]["history"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["action"], "rollback");
    let first_new = detail["versions"][0]["new_bytes_stored"].as_u64().unwrap();
    assert!(first_new > 0);
    let v = ok(a, "/api/models/bert/1.1.0").json();
    assert_eq!(v["model_name"], "bert");
    assert_eq!(v["version"], "1.1.0");
    assert_eq!(v["performance_metrics"]["accuracy"], 0.85);
    assert!(v["chunk_figures"]["distinct_chunks"].as_u64().unwrap() >= 2);
    assert_eq!(v["pull_command"], pull);
    let st = ok(a, "/api/storage").json();
    assert_eq!(st["usage"]["versions"], 4);
    assert!(st["usage"]["stored_bytes"].as_u64().unwrap() > 0);
    assert!(st["alert"].is_null());
    let tr = ok(a, "/api/transfers?days=7").json();
    assert_eq!(tr["days"], 7);
    let ops = tr["operations"].as_array().unwrap();
    let pulls = ops.iter().find(|o| o["command"] == "pull").unwrap();
    assert_eq!(
        (pulls["count"].as_u64(), pulls["errors"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(tr["failed"][0]["command"], "pull");
    assert_eq!(
        tr["buckets"].as_array().unwrap().len(),
        8,
        "a day per bucket, 7 days"
    );
    bodies.push(st.to_string());
    bodies.push(tr.to_string());

    // Not found, bad input, wrong method.
    for (path, code) in [
        ("/models/nope", 404),
        ("/models/bert/9.9.9", 404),
        ("/models/bad%20name", 400),
        ("/models/bert/not-a-version", 400),
        ("/no/such/page", 404),
    ] {
        let r = get(a, path);
        assert_eq!(r.status, code, "GET {path}: {}", r.body);
        assert!(r.body.contains("<h1>"), "an HTML error page");
        bodies.push(r.body);
    }
    let r = get(a, "/api/models/nope");
    assert_eq!(r.status, 404);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nope")
    );
    assert_eq!(http(a, "POST", "/", &[("Content-Length", "0")]).status, 405);
    assert_eq!(http(a, "DELETE", "/models/bert/1.0.0", &[]).status, 405);

    for secret in secrets {
        for b in &bodies {
            assert!(
                !b.contains(secret),
                "a response shows the secret {secret:?}"
            );
        }
    }
    drop(server);
    assert_eq!(snapshot(env), before, "serving wrote to the vault");
}

/// The remote as pages show it (display name: no query, no credentials).
fn remote_shown(env: &Env) -> String {
    env.remote.split('?').next().unwrap().to_string()
}

#[test]
fn fs_pages_and_api() {
    pages_and_api(&Env::new(Backend::Fs), &[]);
}

#[test]
fn s3_pages_and_api() {
    let mut env = Env::new(Backend::S3);
    // Secrets in the remote URL as well as in the environment: neither may be shown.
    let (key, secret) = (
        required("MVAULT_TEST_S3_ACCESS_KEY"),
        required("MVAULT_TEST_S3_SECRET_KEY"),
    );
    env.remote = format!("{}&access_key={key}&secret_key={secret}", env.remote);
    let endpoint = required("MVAULT_TEST_S3_ENDPOINT");
    pages_and_api(&env, &[&secret, &key, &endpoint]);
}

#[test]
fn fs_loopback_only_without_token() {
    let env = Env::new(Backend::Fs);
    let err = env.fails(2, &["serve", "--listen", "0.0.0.0:0"]);
    assert!(err.contains("--token"), "{err}");
    let err = env.fails(2, &["serve", "--listen", "localhost"]);
    assert!(err.contains("IP:PORT"), "{err}");
    let server = env.serve(&[]);
    // DNS rebinding: a page of another origin reaching the loopback port is refused.
    let r = http(&server.addr, "GET", "/", &[("Host", "evil.example:8080")]);
    assert_eq!(r.status, 403);
    let port = server.addr.rsplit_once(':').unwrap().1;
    let host = format!("localhost:{port}");
    let r = http(&server.addr, "GET", "/", &[("Host", host.as_str())]);
    assert_eq!(r.status, 200);
}

#[test]
fn fs_token_rule() {
    let mut env = Env::new(Backend::Fs);
    let token = "tok-3f9a1c";
    env.set_var("MVAULT_SERVE_TOKEN", token);
    let server = env.serve(&["--listen", "0.0.0.0:0"]);
    let port = server.addr.rsplit_once(':').unwrap().1;
    let a = format!("127.0.0.1:{port}");
    let bearer = format!("Bearer {token}");
    for path in ["/", "/storage", "/metrics", "/api/models", "/api/transfers"] {
        let none = get(&a, path);
        assert_eq!(none.status, 401, "{path} without token");
        assert!(!none.body.contains(token));
        assert!(
            !none.body.contains(env.remote.as_str()),
            "a refused request learns nothing of the vault"
        );
        let wrong = http(&a, "GET", path, &[("Authorization", "Bearer tok-3f9a1d")]);
        assert_eq!(wrong.status, 401, "{path} with a wrong token");
        let short = http(&a, "GET", path, &[("Authorization", "Bearer tok")]);
        assert_eq!(short.status, 401, "{path} with a prefix of the token");
        let right = http(&a, "GET", path, &[("Authorization", bearer.as_str())]);
        assert_eq!(right.status, 200, "{path} with the token: {}", right.body);
        assert!(!right.body.contains(token), "{path} shows the token");
    }
    assert_eq!(get(&a, "/api/models").json()["error"]["status"], 401);
    // A browser: ?token= sets the cookie and drops the token from the address.
    let login = get(&a, &format!("/?q=x&token={token}"));
    assert_eq!(login.status, 303);
    assert_eq!(login.header("location"), Some("/?q=x"));
    let cookie = login.header("set-cookie").unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let pair = cookie.split(';').next().unwrap();
    assert_eq!(http(&a, "GET", "/", &[("Cookie", pair)]).status, 200);
    assert_eq!(
        http(&a, "GET", "/", &[("Cookie", "mvault_token=wrong")]).status,
        401
    );
    // Any Host is fine with a token.
    let r = http(
        &a,
        "GET",
        "/",
        &[
            ("Host", "models.example:80"),
            ("Authorization", bearer.as_str()),
        ],
    );
    assert_eq!(r.status, 200);
}

#[test]
fn fs_hostile_metadata_is_escaped() {
    let env = Env::new(Backend::Fs);
    let dir = env.path("evil");
    write_file(&dir.join("a<b>&\"c'.bin"), b"payload");
    env.ok(&[
        "push",
        s(&dir),
        "--name",
        "evil",
        "--version",
        "1.0.0",
        "--description",
        "<script>alert(1)</script>\u{1b}[31m",
        "--metric",
        "<i>bold</i>=1",
        "--param",
        "lr=</td><script>alert(3)</script>",
        "--tag",
        "x\"onmouseover=\"alert(4)=y'><svg onload=alert(5)>",
    ]);
    let server = env.serve(&[]);
    for path in ["/", "/models/evil", "/models/evil/1.0.0", "/storage"] {
        let b = ok(&server.addr, path).body;
        for raw in [
            "<script>",
            "<i>",
            "<svg onload",
            "x\"onmouseover",
            "a<b>",
            "\u{1b}",
        ] {
            assert!(!b.contains(raw), "{path} renders {raw:?} unescaped");
        }
        if path == "/models/evil/1.0.0" {
            for escaped in [
                "&lt;script&gt;alert(1)&lt;/script&gt;",
                "&lt;i&gt;bold&lt;/i&gt;",
                "a&lt;b&gt;&amp;&quot;c&#39;.bin",
                "<code>x&quot;onmouseover</code>",
                "&quot;alert(4)=y&#39;&gt;&lt;svg onload=alert(5)&gt;",
            ] {
                assert!(b.contains(escaped), "{path} lacks {escaped}");
            }
        }
    }
    // The JSON keeps the exact values.
    let v = ok(&server.addr, "/api/models/evil/1.0.0").json();
    assert_eq!(v["description"], "<script>alert(1)</script>\u{1b}[31m");
    assert_eq!(v["performance_metrics"]["<i>bold</i>"], 1);
}

#[test]
fn fs_models_are_paginated() {
    let env = Env::new(Backend::Fs);
    let dir = env.path("many");
    for i in 0..53 {
        write_file(
            &dir.join(format!("m{i:02}/w.bin")),
            format!("{i}").as_bytes(),
        );
    }
    env.ok(&["push", "--models-dir", s(&dir), "--version", "1.0.0"]);
    let server = env.serve(&[]);
    let p1 = ok(&server.addr, "/");
    assert_eq!(p1.body.matches("<tr><td><a href=\"/models/").count(), 50);
    assert!(p1.body.contains("page 1 of 2") && p1.body.contains("next →"));
    assert!(p1.body.contains("/models/m49") && !p1.body.contains("/models/m50"));
    let p2 = ok(&server.addr, "/?page=2");
    assert_eq!(p2.body.matches("<tr><td><a href=\"/models/").count(), 3);
    assert!(p2.body.contains("/models/m52"));
    let api = ok(&server.addr, "/api/models?page=9").json();
    assert_eq!(
        (api["page"].as_u64(), api["pages"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(api["matching"], 53);
    let q = ok(&server.addr, "/api/models?q=m5").json();
    assert_eq!(q["matching"], 3);
}

#[test]
fn fs_cost_alert_page_and_usage_exit_code() {
    let env = Env::new(Backend::Fs);
    let dir = env.path("m");
    write_file(&dir.join("w.bin"), &crate::common::noise(1, 50_000));
    env.ok(&["push", s(&dir), "--name", "m", "--version", "1.0.0"]);
    let config = env.path("mvault.yaml");
    std::fs::write(
        &config,
        "cloud_storage:\n  usage: { alert_monthly_cost: 0 }\n",
    )
    .unwrap();
    let out = env.run(&["-c", s(&config), "usage"]);
    assert_eq!(out.status.code(), Some(6), "above the threshold: exit 6");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cost alert"));
    let out = env.run(&["-c", s(&config), "--json", "usage"]);
    assert_eq!(out.status.code(), Some(6));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["alert"]["exceeded"], true);
    assert_eq!(
        v["alert"]["provider"], "s3",
        "a local vault compares the priciest"
    );
    let server = env.serve(&["-c", s(&config)]);
    let page = ok(&server.addr, "/storage");
    assert!(
        page.body
            .contains(r#"<div class="alert bad" id="cost-alert">Cost alert"#)
    );
    let metrics = ok(&server.addr, "/metrics").body;
    assert!(metrics.contains("mvault_vault_cost_alert{"), "{metrics}");
    drop(server);

    std::fs::write(
        &config,
        "cloud_storage:\n  usage: { alert_monthly_cost: 1000 }\n",
    )
    .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["-c", s(&config), "--json", "usage"])).unwrap();
    assert_eq!(v["alert"]["exceeded"], false);
    assert_eq!(v["alert"]["threshold_usd_per_month"], 1000.0);
    std::fs::write(
        &config,
        "cloud_storage:\n  usage:\n    alert_monthly_cost: cheap\n",
    )
    .unwrap();
    let err = env.fails(2, &["-c", s(&config), "usage"]);
    assert!(
        err.contains("usage.alert_monthly_cost") && err.contains(":3"),
        "{err}"
    );
    std::fs::write(&config, "cloud_storage:\n  usage: { alert: 1 }\n").unwrap();
    let err = env.fails(2, &["-c", s(&config), "usage"]);
    assert!(err.contains("cloud_storage.usage"), "{err}");
}

#[test]
fn fs_version_page_shows_the_signature_status() {
    let env = Env::new(Backend::Fs);
    let key = env.path("release.key");
    env.ok(&["keygen", "--out", s(&key)]);
    let public = format!("{}.pub", key.display());
    let other = env.path("other.key");
    env.ok(&["keygen", "--out", s(&other)]);
    let dir = env.path("m");
    write_file(&dir.join("w.bin"), b"weights");
    let push = |v: &str, sign: bool| {
        let mut args = vec!["push", s(&dir), "--name", "m", "--version", v];
        if sign {
            args.extend(["--sign-key", s(&key)]);
        }
        env.ok(&args);
    };
    push("1.0.0", true);
    push("1.1.0", false);
    let page = |server: &crate::common::Served, v: &str| {
        let body = ok(&server.addr, &format!("/models/m/{v}")).body;
        let at = body.find(r#"id="signature""#).expect("signature section");
        body[at..at + body[at..].find("</p>").unwrap()].to_string()
    };
    let trusted = env.serve(&["--trusted-key", &public]);
    assert!(
        page(&trusted, "1.0.0").contains("verified against a trusted key"),
        "{}",
        page(&trusted, "1.0.0")
    );
    assert!(page(&trusted, "1.1.0").contains("Unsigned."));
    drop(trusted);
    let untrusting = env.serve(&[]);
    assert!(page(&untrusting, "1.0.0").contains("not verified"));
    drop(untrusting);
    let wrong = env.serve(&["--trusted-key", &format!("{}.pub", other.display())]);
    assert!(
        page(&wrong, "1.0.0").contains("FAILED"),
        "{}",
        page(&wrong, "1.0.0")
    );
}
