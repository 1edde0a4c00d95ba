//! The pages, rendered on the server as strings. Every value that comes from the vault, the
//! audit log or the request goes through [`esc`] (text and attribute values alike); links
//! are built from validated model names and versions and are escaped as well. Pages carry
//! no script; the CSS is inlined.

use std::fmt::Write;

use serde_json::{Map, Value};

use super::data::{
    CHART_POINTS, ModelDetail, ModelsPage, StorageView, TransfersView, VersionSummary, VersionView,
};
use super::svg;
use crate::audit::Record;
use crate::util::human_bytes;

/// `s` safe as HTML text and as a quoted attribute value: `& < > " '` become entities and
/// control characters (terminal escapes in hostile metadata) become U+FFFD.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// `s` as one query-string value.
fn q(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A path segment: names and versions are validated (`[A-Za-z0-9._+-]`), anything else is
/// percent-encoded all the same.
fn seg(s: &str) -> String {
    q(s)
}

const CSS: &str = r#"
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#f6f8fa;--accent:#0969da;--ok:#1a7f37;--bad:#cf222e}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI","Noto Sans",Helvetica,Arial,sans-serif;color:var(--fg);background:#fff}
header{display:flex;align-items:center;gap:24px;padding:10px 32px;background:#24292f;color:#fff}
header a{color:#fff;text-decoration:none}
header .brand{font-weight:700;font-size:17px;letter-spacing:.3px}
header nav{display:flex;gap:16px}
header nav a{opacity:.85}header nav a:hover,header nav a.on{opacity:1;text-decoration:underline;text-underline-offset:6px}
header .remote{margin-left:auto;font:12px ui-monospace,SFMono-Regular,Menlo,monospace;opacity:.8}
main{max-width:1140px;margin:0 auto;padding:20px 32px 40px}
h1{font-size:24px;margin:8px 0 4px}h2{font-size:17px;margin:28px 0 8px;padding-bottom:4px;border-bottom:1px solid var(--line)}
.sub{color:var(--muted);margin:0 0 16px}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
table{border-collapse:collapse;width:100%;margin:6px 0 4px}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--bg);font-weight:600;font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.3px}
tbody tr:hover{background:#f6f8fa}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code,pre{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:10px 12px;overflow:auto;white-space:pre-wrap;word-break:break-all}
.chip{display:inline-block;padding:0 8px;margin:1px 2px;border-radius:10px;background:#ddf4ff;color:#0550ae;font-size:12px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:12px;margin:12px 0}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 14px;background:#fff}
.card .k{color:var(--muted);font-size:12px}.card .v{font-size:20px;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:16px}
.chartbox{border:1px solid var(--line);border-radius:8px;padding:8px 10px}
.chartbox h3{margin:0 0 4px;font-size:13px}
svg.chart{max-width:100%;height:auto;display:block}
form.search{display:flex;gap:8px;margin:8px 0 12px}
form.search input{flex:1;max-width:420px;padding:6px 10px;border:1px solid var(--line);border-radius:6px;font-size:14px}
form.search button{padding:6px 14px;border:1px solid var(--line);border-radius:6px;background:var(--bg);cursor:pointer}
.pager{display:flex;gap:12px;align-items:center;margin:10px 0;color:var(--muted)}
.alert{padding:10px 14px;border-radius:6px;margin:12px 0;border:1px solid}
.alert.bad{background:#ffebe9;border-color:#ff818266;color:#82071e}.alert.ok{background:#dafbe1;border-color:#4ac26b66;color:#116329}
.note{color:var(--muted);font-size:12.5px}
.err{color:var(--bad)}.okc{color:var(--ok)}
dl.meta{display:grid;grid-template-columns:160px 1fr;gap:4px 16px;margin:8px 0}dl.meta dt{color:var(--muted)}dl.meta dd{margin:0;word-break:break-word}
footer{max-width:1140px;margin:0 auto;padding:12px 32px 24px;color:var(--muted);font-size:12px;border-top:1px solid var(--line)}
"#;

/// Which navigation entry a page belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Models,
    Storage,
    Transfers,
    None,
}

/// A whole document around `body`.
pub fn page(title: &str, remote: &str, nav: Nav, api: &str, body: &str) -> String {
    let on = |n: Nav| if n == nav { r#" class="on""# } else { "" };
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{t} · mvault</title><link rel="icon" href="data:,"><style>{CSS}</style></head><body><header><a class="brand" href="/">mvault</a><nav><a href="/"{m}>Models</a><a href="/storage"{s}>Storage</a><a href="/transfers"{x}>Transfers</a></nav>{r}</header><main>{body}</main><footer>mvault {v} · read-only view · <a href="{api}">this page as JSON</a> · <a href="/metrics">/metrics</a></footer></body></html>"#,
        t = esc(title),
        m = on(Nav::Models),
        s = on(Nav::Storage),
        x = on(Nav::Transfers),
        r = match remote {
            "" => String::new(),
            r => format!(r#"<span class="remote" title="remote">{}</span>"#, esc(r)),
        },
        v = env!("CARGO_PKG_VERSION"),
        api = esc(api),
    )
}

/// A page for a failed request: the status and the (scrubbed) one-line message.
pub fn error_page(remote: &str, status: u16, reason: &str, message: &str) -> String {
    let body = format!(
        r#"<h1>{status} {}</h1><p class="err">{}</p><p><a href="/">Back to the models</a></p>"#,
        esc(reason),
        esc(message)
    );
    page(
        &format!("{status} {reason}"),
        remote,
        Nav::None,
        "/api/models",
        &body,
    )
}

/// A number for display: integers without a fraction, others with up to 4 decimals.
pub fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 1000.0 {
        format!("{v:.1}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn ratio(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.2}×"))
}

/// A JSON value as text: strings as they are, anything else as JSON.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn card(s: &mut String, k: &str, v: &str) {
    let _ = write!(
        s,
        r#"<div class="card"><div class="k">{}</div><div class="v">{}</div></div>"#,
        esc(k),
        esc(v)
    );
}

fn chips(items: impl IntoIterator<Item = String>) -> String {
    items
        .into_iter()
        .map(|a| format!(r#"<span class="chip">{}</span>"#, esc(&a)))
        .collect()
}

/// Previous/next links of a paginated list; `link(n)` is the address of page `n`.
fn pager(page: usize, pages: usize, link: &dyn Fn(usize) -> String) -> String {
    if pages <= 1 {
        return String::new();
    }
    let mut s = String::from(r#"<div class="pager">"#);
    if page > 1 {
        let _ = write!(s, r#"<a href="{}">← previous</a>"#, esc(&link(page - 1)));
    }
    let _ = write!(s, "<span>page {page} of {pages}</span>");
    if page < pages {
        let _ = write!(s, r#"<a href="{}">next →</a>"#, esc(&link(page + 1)));
    }
    s.push_str("</div>");
    s
}

/// `/`: the models list.
pub fn models(p: &ModelsPage) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<h1>Models</h1><p class="sub">{} models{} on {}</p><form class="search" method="get" action="/"><input type="search" name="q" value="{}" placeholder="Search models by name" aria-label="Search models"><button type="submit">Search</button></form>"#,
        p.matching,
        if p.query.is_empty() {
            String::new()
        } else {
            format!(" matching “{}”", esc(&p.query))
        },
        esc(&p.remote),
        esc(&p.query)
    );
    if p.models.is_empty() {
        s.push_str(r#"<p class="note">No models. Push one with <code>mvault push PATH --name NAME --version 1.0.0</code>.</p>"#);
    } else {
        s.push_str(r#"<table id="models"><thead><tr><th>Model</th><th>Latest</th><th class="n">Versions</th><th class="n">Size (latest)</th><th>Aliases</th><th>Last push</th></tr></thead><tbody>"#);
        for m in &p.models {
            let latest = match &m.latest {
                Some(v) => format!(
                    r#"<a href="/models/{}/{}">{}</a>"#,
                    esc(&seg(&m.name)),
                    esc(&seg(v)),
                    esc(v)
                ),
                None => "-".into(),
            };
            let _ = write!(
                s,
                r#"<tr><td><a href="/models/{}">{}</a></td><td>{latest}</td><td class="n">{}</td><td class="n">{}</td><td>{}</td><td>{}</td></tr>"#,
                esc(&seg(&m.name)),
                esc(&m.name),
                m.versions,
                m.latest_file_size.map_or("-".into(), human_bytes),
                chips(
                    m.aliases
                        .iter()
                        .map(|a| format!("{} → {}", a.alias, a.version))
                ),
                esc(m.last_push.as_deref().unwrap_or("-")),
            );
        }
        s.push_str("</tbody></table>");
    }
    s.push_str(&pager(p.page, p.pages, &|n| {
        format!("/?q={}&page={n}", q(&p.query))
    }));
    page(
        "Models",
        &p.remote,
        Nav::Models,
        &format!("/api/models?q={}&page={}", q(&p.query), p.page),
        &s,
    )
}

/// `/models/{name}`: versions table (page `page`, newest first), metric charts, aliases.
pub fn model(remote: &str, d: &ModelDetail, page_no: usize, page_size: usize) -> String {
    let mut s = String::new();
    let latest = d.versions.last();
    let _ = write!(
        s,
        r#"<h1>{}</h1><p class="sub">{} versions on {}</p><div class="cards">"#,
        esc(&d.name),
        d.versions.len(),
        esc(remote)
    );
    card(&mut s, "versions", &d.versions.len().to_string());
    card(
        &mut s,
        "highest version",
        latest.map_or("-", |v| v.version.as_str()),
    );
    card(
        &mut s,
        "stored by all versions",
        &human_bytes(d.versions.iter().map(|v| v.new_bytes_stored).sum()),
    );
    card(&mut s, "aliases", &d.aliases.len().to_string());
    s.push_str("</div>");

    if !d.metrics.is_empty() {
        let shown = &d.versions[d.versions.len().saturating_sub(CHART_POINTS)..];
        let _ = write!(s, r#"<h2>Metrics across versions</h2>"#);
        if shown.len() < d.versions.len() {
            let _ = write!(
                s,
                r#"<p class="note">The newest {} of {} versions.</p>"#,
                shown.len(),
                d.versions.len()
            );
        }
        s.push_str(r#"<div class="charts">"#);
        for metric in &d.metrics {
            let pts: Vec<(String, Option<f64>)> = shown
                .iter()
                .map(|v| (v.version.clone(), v.metrics.get(metric).copied()))
                .collect();
            let _ = write!(
                s,
                r#"<div class="chartbox"><h3>{}</h3>{}</div>"#,
                esc(metric),
                svg::line_chart(metric, &pts, &|v| num(v))
            );
        }
        s.push_str("</div>");
    }

    let pages = d.versions.len().div_ceil(page_size).max(1);
    let page_no = page_no.clamp(1, pages);
    let key_metrics: Vec<&String> = d.metrics.iter().take(4).collect();
    s.push_str(r#"<h2>Versions</h2><table id="versions"><thead><tr><th>Version</th><th>Created</th><th>By</th><th class="n">Size</th><th class="n">New bytes stored</th>"#);
    for k in &key_metrics {
        let _ = write!(s, r#"<th class="n">{}</th>"#, esc(k));
    }
    s.push_str("<th>Aliases</th></tr></thead><tbody>");
    let newest_first = d.versions.iter().rev();
    for v in newest_first.skip((page_no - 1) * page_size).take(page_size) {
        version_row(&mut s, &d.name, v, &key_metrics);
    }
    s.push_str("</tbody></table>");
    s.push_str(&pager(page_no, pages, &|n| {
        format!("/models/{}?page={n}", seg(&d.name))
    }));

    s.push_str("<h2>Aliases</h2>");
    if d.aliases.is_empty() {
        s.push_str(r#"<p class="note">No aliases. Set one with <code>mvault alias set NAME@VERSION production</code>.</p>"#);
    }
    for a in &d.aliases {
        let _ = write!(
            s,
            r#"<h3><span class="chip">{}</span> → <a href="/models/{}/{}">{}</a> <span class="note">revision {}</span></h3><table class="alias-history"><thead><tr><th>When</th><th>Action</th><th>Target</th><th>By</th></tr></thead><tbody>"#,
            esc(&a.alias),
            esc(&seg(&d.name)),
            esc(&seg(&a.version)),
            esc(&a.version),
            a.revision
        );
        for e in a.history.iter().rev() {
            let action = match e.action {
                crate::vault::AliasKind::Set => "set",
                crate::vault::AliasKind::Rollback => "rollback",
            };
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{action}</td><td>{}</td><td>{}</td></tr>",
                esc(&e.set_at),
                esc(&e.version),
                esc(&e.set_by)
            );
        }
        s.push_str("</tbody></table>");
    }
    for why in &d.damaged_aliases {
        let _ = write!(s, r#"<p class="err">Alias not shown: {}</p>"#, esc(why));
    }
    page(
        &d.name,
        remote,
        Nav::Models,
        &format!("/api/models/{}", seg(&d.name)),
        &s,
    )
}

fn version_row(s: &mut String, name: &str, v: &VersionSummary, key_metrics: &[&String]) {
    let _ = write!(
        s,
        r#"<tr><td><a href="/models/{}/{}">{}</a></td><td>{}</td><td>{}</td><td class="n">{}</td><td class="n">{}</td>"#,
        esc(&seg(name)),
        esc(&seg(&v.version)),
        esc(&v.version),
        esc(&v.created_at),
        esc(&v.created_by),
        human_bytes(v.file_size),
        human_bytes(v.new_bytes_stored),
    );
    for k in key_metrics {
        let _ = write!(
            s,
            r#"<td class="n">{}</td>"#,
            v.metrics.get(*k).map_or("-".into(), |x| num(*x))
        );
    }
    let _ = write!(s, "<td>{}</td></tr>", chips(v.aliases.iter().cloned()));
}

fn map_table(s: &mut String, id: &str, title: &str, map: &Map<String, Value>) {
    let _ = write!(s, "<h2>{}</h2>", esc(title));
    if map.is_empty() {
        s.push_str(r#"<p class="note">None recorded.</p>"#);
        return;
    }
    let _ = write!(
        s,
        r#"<table id="{id}"><thead><tr><th>Key</th><th>Value</th></tr></thead><tbody>"#
    );
    for (k, v) in map {
        let _ = write!(
            s,
            "<tr><td><code>{}</code></td><td>{}</td></tr>",
            esc(k),
            esc(&value_text(v))
        );
    }
    s.push_str("</tbody></table>");
}

/// `/models/{name}/{version}`.
pub fn version(remote: &str, v: &VersionView) -> String {
    let m = &v.manifest;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<h1><a href="/models/{}">{}</a>@{}</h1><p class="sub">{}</p><dl class="meta">"#,
        esc(&seg(&m.model_name)),
        esc(&m.model_name),
        esc(&m.version),
        esc(if m.description.is_empty() {
            "No description."
        } else {
            &m.description
        })
    );
    let by = &m.created_by;
    for (k, val) in [
        ("created", m.created_at.clone()),
        (
            "pushed by",
            format!("{}@{} ({})", by.user, by.host, by.tool),
        ),
        (
            "size",
            format!(
                "{} ({} bytes) in {} files",
                human_bytes(m.file_size),
                m.file_size,
                m.files.len()
            ),
        ),
        ("checksum", m.checksum.to_hex()),
        ("manifest format", m.format.to_string()),
    ] {
        let _ = write!(s, "<dt>{k}</dt><dd>{}</dd>", esc(&val));
    }
    let _ = write!(
        s,
        "<dt>aliases</dt><dd>{}</dd></dl>",
        if v.aliases.is_empty() {
            "-".to_string()
        } else {
            chips(v.aliases.iter().cloned())
        }
    );
    // Signature status: verified only when the server has trusted keys (as `info` does).
    s.push_str(r#"<h2>Signature</h2><p class="note" id="signature">"#);
    match &v.signature {
        None => s.push_str("Unsigned."),
        Some(sig) => {
            let fp = esc(sig.key_fingerprint.as_deref().unwrap_or("an unnamed key"));
            let _ = match (&sig.problem, sig.verified) {
                (Some(p), _) => write!(s, "Signature check FAILED: {}", esc(p)),
                (None, true) => write!(
                    s,
                    "Signed by <code>{fp}</code>, verified against a trusted key."
                ),
                (None, false) => write!(
                    s,
                    "Signed; the signature names key <code>{fp}</code> (not verified: configure \
                     trusted keys, <code>signing.trusted_keys</code> or MVAULT_TRUSTED_KEYS, to \
                     check it)."
                ),
            };
        }
    }
    s.push_str("</p>");

    map_table(&mut s, "metrics", "Metrics", &m.performance_metrics);
    map_table(&mut s, "training", "Training config", &m.training_config);
    let tags: Map<String, Value> = m
        .tags
        .iter()
        .map(|(k, t)| (k.clone(), Value::String(t.clone())))
        .collect();
    map_table(&mut s, "tags", "Tags", &tags);
    if !m.extra.is_empty() {
        map_table(&mut s, "extra", "Other metadata", &m.extra);
    }

    let f = &v.figures;
    s.push_str(r#"<h2>Chunks and dedupe</h2><div class="cards">"#);
    card(&mut s, "chunk references", &f.chunk_refs.to_string());
    card(&mut s, "distinct chunks", &f.distinct_chunks.to_string());
    card(&mut s, "stored (its chunks)", &human_bytes(f.stored_bytes));
    card(&mut s, "size / stored", &ratio(f.ratio));
    card(&mut s, "new chunks", &f.new_chunks.to_string());
    card(&mut s, "new bytes stored", &human_bytes(f.new_bytes_stored));
    s.push_str("</div>");
    let _ = write!(
        s,
        r#"<p class="note">New: chunks no lower version of {} uses, i.e. what pushing this version added. {}</p>"#,
        esc(&m.model_name),
        if f.missing_chunks > 0 {
            format!(
                r#"<span class="err">{} referenced chunks are missing from the store: run <code>mvault verify</code>.</span>"#,
                f.missing_chunks
            )
        } else {
            String::new()
        }
    );

    s.push_str(r#"<h2>Files</h2><table id="files"><thead><tr><th>Path</th><th class="n">Size</th><th>Digest (BLAKE3)</th><th class="n">Chunks</th><th>Layout</th></tr></thead><tbody>"#);
    for file in &m.files {
        let layout = file.layout.as_ref().map_or("-".to_string(), |l| {
            let kind = serde_json::to_value(l.kind).unwrap_or_default();
            format!(
                "{}, {} tensors",
                kind.as_str().unwrap_or("?"),
                l.tensors.len()
            )
        });
        let _ = write!(
            s,
            r#"<tr><td><code>{}</code></td><td class="n">{}</td><td><code>{}</code></td><td class="n">{}</td><td>{}</td></tr>"#,
            esc(&file.path),
            human_bytes(file.size),
            file.digest.to_hex(),
            file.chunks.len(),
            esc(&layout)
        );
    }
    s.push_str("</tbody></table>");
    let _ = write!(
        s,
        r#"<h2>Fetch it</h2><p class="note">Command line:</p><pre id="pull">{}</pre><p class="note">Python (<code>import mvault</code>, the wheel of crates/mvault-py):</p><pre id="python">{}</pre>"#,
        esc(&v.pull_command),
        esc(&v.python_snippet)
    );
    page(
        &format!("{}@{}", m.model_name, m.version),
        remote,
        Nav::Models,
        &format!("/api/models/{}/{}", seg(&m.model_name), seg(&m.version)),
        &s,
    )
}

/// `/storage`.
pub fn storage(v: &StorageView) -> String {
    let u = &v.usage;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<h1>Storage</h1><p class="sub">{} versions of {} models on {}</p><div class="cards">"#,
        u.versions,
        u.models.len(),
        esc(&v.remote)
    );
    card(&mut s, "logical (pushed)", &human_bytes(u.logical_bytes));
    card(&mut s, "stored (chunks)", &human_bytes(u.stored_bytes));
    card(&mut s, "dedupe ratio", &ratio(u.dedupe_ratio));
    card(
        &mut s,
        "billed (with metadata)",
        &human_bytes(u.billed_bytes),
    );
    card(&mut s, "objects", &u.objects.to_string());
    s.push_str("</div>");
    match &v.alert {
        Some(a) if a.exceeded => {
            let _ = write!(
                s,
                r#"<div class="alert bad" id="cost-alert">Cost alert: the estimate for {} is ${:.2}/month, above the threshold of ${:.2}/month (<code>usage.alert_monthly_cost</code>); <code>mvault usage</code> exits 6.</div>"#,
                esc(&a.provider),
                a.usd_per_month,
                a.threshold_usd_per_month
            );
        }
        Some(a) => {
            let _ = write!(
                s,
                r#"<div class="alert ok" id="cost-alert">Within budget: the estimate for {} is ${:.2}/month, threshold ${:.2}/month (<code>usage.alert_monthly_cost</code>).</div>"#,
                esc(&a.provider),
                a.usd_per_month,
                a.threshold_usd_per_month
            );
        }
        None => s.push_str(r#"<p class="note" id="cost-alert">No cost alert: set <code>cloud_storage.usage.alert_monthly_cost</code> (USD per month) in the config to get one; <code>mvault usage</code> then exits 6 above it.</p>"#),
    }
    s.push_str(r#"<h2>Estimated monthly cost</h2><table id="cost"><thead><tr><th>Provider</th><th>Tier</th><th class="n">USD per GB-month</th><th class="n">USD per month</th></tr></thead><tbody>"#);
    for c in &u.monthly_cost {
        let _ = write!(
            s,
            r#"<tr><td>{}</td><td>{}</td><td class="n">{:.3}</td><td class="n">${:.4}</td></tr>"#,
            esc(&c.provider),
            esc(&c.tier),
            c.usd_per_gb_month,
            c.usd_per_month
        );
    }
    s.push_str(r#"</tbody></table><p class="note">List prices of standard storage for the billed bytes; requests and egress are not included.</p>"#);
    let mut by_size: Vec<_> = u.models.iter().collect();
    by_size.sort_by_key(|m| std::cmp::Reverse(m.logical_bytes));
    let rows: Vec<(String, Vec<u64>)> = by_size
        .iter()
        .take(20)
        .map(|m| (m.model.clone(), vec![m.logical_bytes, m.stored_bytes]))
        .collect();
    if !rows.is_empty() {
        let _ = write!(
            s,
            r#"<h2>Logical vs stored, by model</h2><div class="chartbox">{}</div>"#,
            svg::bar_chart(
                "logical vs stored bytes by model",
                &[("logical", "#0969da"), ("stored", "#1a7f37")],
                &rows,
                &human_bytes
            )
        );
    }
    s.push_str(r#"<h2>Models</h2><table id="usage"><thead><tr><th>Model</th><th class="n">Versions</th><th class="n">Logical</th><th class="n">Stored</th><th class="n">Ratio</th><th class="n">Missing chunks</th></tr></thead><tbody>"#);
    for m in &u.models {
        let r = (m.stored_bytes > 0).then(|| m.logical_bytes as f64 / m.stored_bytes as f64);
        let _ = write!(
            s,
            r#"<tr><td><a href="/models/{}">{}</a></td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
            esc(&seg(&m.model)),
            esc(&m.model),
            m.versions,
            human_bytes(m.logical_bytes),
            human_bytes(m.stored_bytes),
            ratio(r),
            m.missing_chunks
        );
    }
    s.push_str(r#"</tbody></table><p class="note">A chunk shared by several models counts for each, so the stored column does not add up to the total.</p>"#);
    page("Storage", &v.remote, Nav::Storage, "/api/storage", &s)
}

fn record_row(s: &mut String, r: &Record, error: bool) {
    let what = match (&r.model, &r.version) {
        (Some(m), Some(v)) => format!("{m}@{v}"),
        (Some(m), None) => m.clone(),
        _ => "-".into(),
    };
    let _ = write!(
        s,
        r#"<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="n">{}</td><td class="n">{:.1}</td><td class="n">{}</td>"#,
        esc(&r.time),
        esc(&r.command),
        esc(&crate::audit::redact_remote(&r.remote)),
        esc(&what),
        human_bytes(r.bytes),
        r.duration_ms as f64 / 1000.0,
        if r.bytes > 0 {
            format!("{:.1}", r.mb_per_s)
        } else {
            "-".into()
        }
    );
    if error {
        let _ = write!(
            s,
            r#"<td class="err">{}</td>"#,
            esc(r.error.as_deref().unwrap_or(""))
        );
    }
    s.push_str("</tr>");
}

fn records_table(s: &mut String, id: &str, records: &[Record], error: bool) {
    let _ = write!(
        s,
        r#"<table id="{id}"><thead><tr><th>Started</th><th>Operation</th><th>Remote</th><th>Model</th><th class="n">Bytes</th><th class="n">Seconds</th><th class="n">MB/s</th>{}</tr></thead><tbody>"#,
        if error { "<th>Error</th>" } else { "" }
    );
    for r in records {
        record_row(s, r, error);
    }
    s.push_str("</tbody></table>");
}

/// `/transfers`.
pub fn transfers(remote: &str, t: &TransfersView) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<h1>Transfers</h1><p class="sub">{} operations in the last {} days, from the audit log <code>{}</code> of this machine · window: "#,
        t.records,
        t.days,
        esc(&t.audit_log)
    );
    for d in [1, 7, 30, 90] {
        if d == t.days {
            let _ = write!(s, "<b>{d}d</b> ");
        } else {
            let _ = write!(s, r#"<a href="/transfers?days={d}">{d}d</a> "#);
        }
    }
    s.push_str("</p>");
    let total: u64 = t.operations.iter().map(|o| o.count).sum();
    let errors: u64 = t.operations.iter().map(|o| o.errors).sum();
    s.push_str(r#"<div class="cards">"#);
    card(&mut s, "operations", &total.to_string());
    card(
        &mut s,
        "success rate",
        &if total > 0 {
            format!("{:.1}%", (total - errors) as f64 * 100.0 / total as f64)
        } else {
            "-".into()
        },
    );
    card(&mut s, "errors", &errors.to_string());
    card(
        &mut s,
        "bytes moved",
        &human_bytes(t.operations.iter().map(|o| o.bytes).sum()),
    );
    s.push_str("</div>");
    let label = |b: &super::data::Bucket| {
        if t.bucket_secs < 86_400 {
            b.start.get(5..16).unwrap_or(&b.start).replace('T', " ")
        } else {
            b.start.get(..10).unwrap_or(&b.start).to_string()
        }
    };
    let per = if t.bucket_secs < 86_400 {
        "hour"
    } else {
        "day"
    };
    let speed: Vec<(String, Option<f64>)> = t
        .buckets
        .iter()
        .map(|b| (label(b), b.median_mb_per_s))
        .collect();
    let success: Vec<(String, Option<f64>)> = t
        .buckets
        .iter()
        .map(|b| (label(b), b.success_rate.map(|r| r * 100.0)))
        .collect();
    let count: Vec<(String, Option<f64>)> = t
        .buckets
        .iter()
        .map(|b| (label(b), Some(b.count as f64)))
        .collect();
    let _ = write!(s, r#"<h2>Over time (per {per})</h2><div class="charts">"#);
    for (id, title, pts, fmt) in [
        (
            "chart-throughput",
            "Throughput, median MB/s",
            &speed,
            &(|v: f64| format!("{v:.1}")) as &dyn Fn(f64) -> String,
        ),
        ("chart-success", "Success rate, %", &success, &|v: f64| {
            format!("{v:.0}%")
        }),
        (
            "chart-count",
            "Operations",
            &count,
            &|v: f64| num(v.round()),
        ),
    ] {
        let chart = svg::line_chart(title, pts, fmt);
        let _ = write!(
            s,
            r#"<div class="chartbox" id="{id}"><h3>{}</h3>{}</div>"#,
            esc(title),
            if chart.is_empty() {
                r#"<p class="note">No data in this window.</p>"#.to_string()
            } else {
                chart
            }
        );
    }
    s.push_str("</div>");
    s.push_str(r#"<h2>By operation and remote</h2><table id="operations"><thead><tr><th>Operation</th><th>Remote</th><th class="n">Count</th><th class="n">Success</th><th class="n">Errors</th><th class="n">Median MB/s</th><th class="n">p95 MB/s</th><th class="n">Bytes</th></tr></thead><tbody>"#);
    for o in &t.operations {
        let mbs = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
        let _ = write!(
            s,
            r#"<tr><td>{}</td><td>{}</td><td class="n">{}</td><td class="n">{:.1}%</td><td class="n{}">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
            esc(&o.command),
            esc(&crate::audit::redact_remote(&o.remote)),
            o.count,
            o.success_rate * 100.0,
            if o.errors > 0 { " err" } else { "" },
            o.errors,
            mbs(o.median_mb_per_s),
            mbs(o.p95_mb_per_s),
            human_bytes(o.bytes)
        );
    }
    s.push_str("</tbody></table>");
    s.push_str("<h2>Slowest operations</h2>");
    records_table(&mut s, "slowest", &t.slowest, false);
    s.push_str("<h2>Failed operations</h2>");
    if t.failed.is_empty() {
        s.push_str(r#"<p class="note okc">None in this window.</p>"#);
    } else {
        records_table(&mut s, "failed", &t.failed, true);
    }
    page(
        "Transfers",
        remote,
        Nav::Transfers,
        &format!("/api/transfers?days={}", t.days),
        &s,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(esc("a\x1b[31mb\u{9b}c"), "a\u{fffd}[31mb\u{fffd}c");
        assert_eq!(q("a b&c=d"), "a+b%26c%3Dd");
    }

    #[test]
    fn numbers() {
        assert_eq!(num(3.0), "3");
        assert_eq!(num(0.95), "0.95");
        assert_eq!(num(0.123456), "0.1235");
        assert_eq!(num(12345.678), "12345.7");
    }
}
