//! The routes, the access check in front of them, and how failures become responses.
//!
//! Only `GET` (and `HEAD`) routes exist: nothing here writes. Every response carries a
//! content security policy that forbids scripts and any request beyond this server.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::auth::{self, Token};
use super::data::{Gatherer, MAX_DAYS, VersionView};
use super::{Error, Options, PAGE_SIZE, html, metrics};
use crate::error::Category;
use crate::vault::{Info, Vault};
use crate::version::{ModelName, Version};

/// What every handler shares.
pub struct App {
    data: Gatherer,
    token: Option<Token>,
}

impl App {
    pub fn new(vault: Vault, opts: Options) -> App {
        App {
            token: opts.token.as_deref().map(Token::new),
            data: Gatherer::new(vault, opts),
        }
    }

    fn remote(&self) -> &str {
        &self.data.opts().remote_display
    }
}

type Shared = Arc<App>;

pub fn router(app: Shared) -> Router {
    Router::new()
        .route("/", get(models_page))
        .route("/models/{name}", get(model_page))
        .route("/models/{name}/{version}", get(version_page))
        .route("/storage", get(storage_page))
        .route("/transfers", get(transfers_page))
        .route("/metrics", get(metrics_text))
        .route("/api/models", get(models_api))
        .route("/api/models/{name}", get(model_api))
        .route("/api/models/{name}/{version}", get(version_api))
        .route("/api/storage", get(storage_api))
        .route("/api/transfers", get(transfers_api))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

/// Content security policy of every response: no script, no request to anyone else.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                   form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Access rule, then the security headers. With a token: `401` unless the request presents
/// it (a valid `?token=` sets the cookie and redirects to the address without it). Without
/// a token (loopback only): `403` unless the `Host` header names loopback.
async fn guard(State(app): State<Shared>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let query = req.uri().query();
    let mut resp = match &app.token {
        Some(token) => {
            let given = auth::presented(text(header::AUTHORIZATION), text(header::COOKIE), query);
            match given {
                Some(g) if token.matches(&g) => {
                    if auth::query_token(query).is_some() {
                        let rest = auth::query_without_token(query.unwrap_or(""));
                        let to = match rest.is_empty() {
                            true => req.uri().path().to_string(),
                            false => format!("{}?{rest}", req.uri().path()),
                        };
                        login(&g, &to)
                    } else {
                        next.run(req).await
                    }
                }
                _ => {
                    let mut r = failure(
                        "",
                        wants_json(req.uri().path()),
                        StatusCode::UNAUTHORIZED,
                        "a token is required: send Authorization: Bearer TOKEN, or open the page \
                         once with ?token=TOKEN",
                    );
                    r.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer realm=\"mvault\""),
                    );
                    r
                }
            }
        }
        None if !text(header::HOST).is_some_and(auth::is_loopback_host) => failure(
            "",
            wants_json(req.uri().path()),
            StatusCode::FORBIDDEN,
            "this server answers only requests to localhost (start it with --token to serve \
             other names)",
        ),
        None => next.run(req).await,
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Sets the token cookie and sends the browser to `to`.
fn login(token: &str, to: &str) -> Response {
    let mut r = Redirect::to(to).into_response();
    let cookie = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict",
        auth::COOKIE,
        url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

fn wants_json(path: &str) -> bool {
    path.starts_with("/api/")
}

/// `{"error": {"status", "message"}}` under `/api`, else an HTML page naming `remote` (empty
/// for requests refused by [`guard`], which learn nothing about the vault).
fn failure(remote: &str, json: bool, status: StatusCode, message: &str) -> Response {
    #[derive(Serialize)]
    struct Body<'a> {
        error: Inner<'a>,
    }
    #[derive(Serialize)]
    struct Inner<'a> {
        status: u16,
        message: &'a str,
    }
    if json {
        let body = Body {
            error: Inner {
                status: status.as_u16(),
                message,
            },
        };
        return (status, axum::Json(body)).into_response();
    }
    let reason = status.canonical_reason().unwrap_or("Error");
    let page = html::error_page(remote, status.as_u16(), reason, message);
    (status, Html(page)).into_response()
}

/// A failed request: its status by category, its one-line message scrubbed.
struct Failed {
    app: Shared,
    json: bool,
    error: Box<Error>,
}

impl IntoResponse for Failed {
    fn into_response(self) -> Response {
        let status = match self.error.category() {
            Category::NotFound => StatusCode::NOT_FOUND,
            Category::Usage => StatusCode::BAD_REQUEST,
            Category::Integrity | Category::Conflict | Category::Failure => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let message = (self.app.data.opts().scrub)(&crate::one_line(&*self.error));
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::warn!("serve: {message}");
        }
        failure(self.app.remote(), self.json, status, &message)
    }
}

type Answer<T> = std::result::Result<T, Failed>;

fn fail(app: &Shared, json: bool) -> impl Fn(Error) -> Failed + '_ {
    move |error| Failed {
        app: app.clone(),
        json,
        error: Box::new(error),
    }
}

/// A name and version from the path; bad ones are `400`.
fn parse_name(app: &Shared, json: bool, name: &str) -> Answer<ModelName> {
    name.parse().map_err(|e: crate::version::Error| {
        fail(app, json)(Error::Vault(crate::vault::Error::from(e)))
    })
}

fn parse_version(app: &Shared, json: bool, v: &str) -> Answer<Version> {
    v.parse().map_err(|e: crate::version::Error| {
        fail(app, json)(Error::Vault(crate::vault::Error::from(e)))
    })
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: Option<usize>,
}

#[derive(Deserialize)]
struct PageQuery {
    #[serde(default)]
    page: Option<usize>,
}

#[derive(Deserialize)]
struct DaysQuery {
    #[serde(default)]
    days: Option<u32>,
}

/// The default window of the transfers page, days.
const DEFAULT_DAYS: u32 = 30;

async fn models_page(
    State(app): State<Shared>,
    Query(l): Query<ListQuery>,
) -> Answer<Html<String>> {
    let p = app
        .data
        .models(&l.q, l.page.unwrap_or(1))
        .await
        .map_err(fail(&app, false))?;
    Ok(Html(html::models(&p)))
}

async fn models_api(State(app): State<Shared>, Query(l): Query<ListQuery>) -> Answer<Response> {
    let p = app
        .data
        .models(&l.q, l.page.unwrap_or(1))
        .await
        .map_err(fail(&app, true))?;
    Ok(axum::Json(p).into_response())
}

async fn model_page(
    State(app): State<Shared>,
    Path(name): Path<String>,
    Query(p): Query<PageQuery>,
) -> Answer<Html<String>> {
    let name = parse_name(&app, false, &name)?;
    let d = app.data.model(&name).await.map_err(fail(&app, false))?;
    Ok(Html(html::model(
        app.remote(),
        &d,
        p.page.unwrap_or(1),
        PAGE_SIZE,
    )))
}

async fn model_api(State(app): State<Shared>, Path(name): Path<String>) -> Answer<Response> {
    let name = parse_name(&app, true, &name)?;
    let d = app.data.model(&name).await.map_err(fail(&app, true))?;
    Ok(axum::Json(&*d).into_response())
}

async fn version_view(app: &Shared, json: bool, name: &str, version: &str) -> Answer<VersionView> {
    let name = parse_name(app, json, name)?;
    let version = parse_version(app, json, version)?;
    app.data
        .version(&name, &version)
        .await
        .map_err(fail(app, json))
}

async fn version_page(
    State(app): State<Shared>,
    Path((name, version)): Path<(String, String)>,
) -> Answer<Html<String>> {
    let v = version_view(&app, false, &name, &version).await?;
    Ok(Html(html::version(app.remote(), &v)))
}

/// `/api/models/{name}/{version}`: `info --json`'s document plus the page's figures.
#[derive(Serialize)]
struct VersionDoc<'a> {
    #[serde(flatten)]
    info: Info<'a>,
    chunk_figures: &'a super::data::ChunkFigures,
    aliases: &'a [String],
    pull_command: &'a str,
    python_snippet: &'a str,
}

async fn version_api(
    State(app): State<Shared>,
    Path((name, version)): Path<(String, String)>,
) -> Answer<Response> {
    let v = version_view(&app, true, &name, &version).await?;
    let doc = VersionDoc {
        info: Info::from(&*v.manifest),
        chunk_figures: &v.figures,
        aliases: &v.aliases,
        pull_command: &v.pull_command,
        python_snippet: &v.python_snippet,
    };
    Ok(axum::Json(doc).into_response())
}

async fn storage_page(State(app): State<Shared>) -> Answer<Html<String>> {
    let s = app.data.storage().await.map_err(fail(&app, false))?;
    Ok(Html(html::storage(&s)))
}

async fn storage_api(State(app): State<Shared>) -> Answer<Response> {
    let s = app.data.storage().await.map_err(fail(&app, true))?;
    Ok(axum::Json(s).into_response())
}

async fn transfers_page(
    State(app): State<Shared>,
    Query(d): Query<DaysQuery>,
) -> Answer<Html<String>> {
    let days = d.days.unwrap_or(DEFAULT_DAYS);
    let t = app.data.transfers(days).await.map_err(fail(&app, false))?;
    Ok(Html(html::transfers(app.remote(), &t)))
}

async fn transfers_api(State(app): State<Shared>, Query(d): Query<DaysQuery>) -> Answer<Response> {
    let days = d.days.unwrap_or(DEFAULT_DAYS);
    let t = app.data.transfers(days).await.map_err(fail(&app, true))?;
    Ok(axum::Json(t).into_response())
}

/// The audit counters cover the longest window ([`MAX_DAYS`]); the gauges, the vault now.
async fn metrics_text(State(app): State<Shared>) -> Answer<Response> {
    let storage = app.data.storage().await.map_err(fail(&app, false))?;
    let transfers = app
        .data
        .transfers(MAX_DAYS)
        .await
        .map_err(fail(&app, false))?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok((headers, metrics::render(&storage, &transfers)).into_response())
}

async fn not_found(State(app): State<Shared>, req: Request) -> Response {
    failure(
        app.remote(),
        wants_json(req.uri().path()),
        StatusCode::NOT_FOUND,
        "no such page",
    )
}
