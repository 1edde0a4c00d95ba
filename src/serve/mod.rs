//! `mvault serve`: a small, read-only web view of one vault, with the monitoring figures.
//!
//! One axum server, HTML rendered here (no script at all, charts as inline SVG, CSS inlined
//! in each page), so it works offline and in a container:
//! - pages: `/` (models, searchable, paginated), `/models/{name}` (versions, a chart per
//!   metric, aliases with history), `/models/{name}/{version}` (metadata, files, chunk and
//!   dedupe figures, pull snippets), `/storage` (logical vs stored bytes, cost estimates and
//!   the cost alert), `/transfers` (the audit log over time);
//! - the same data as JSON under `/api/...` ([`data`] types), and `/metrics` in the
//!   Prometheus text format ([`metrics`]).
//!
//! Invariants:
//! - read-only against the remote: only listings and reads (manifests are cached in the
//!   local cache, as pulls do);
//! - safe by default: [`check_exposure`] refuses a non-loopback address without a token;
//!   with a token every request must present it (checked in constant time, [`auth`]);
//!   without one, requests must name a loopback host (no DNS rebinding);
//! - no secret is rendered: the remote appears by its display name, audit records are
//!   redacted when written and again when shown, and error messages go through the
//!   caller's scrubber ([`Options::scrub`]);
//! - bounded: listings and figures are cached for [`LISTING_TTL`], pages list at most
//!   [`PAGE_SIZE`] rows, charts at most [`data::CHART_POINTS`] versions.

pub mod auth;
mod cache;
pub mod data;
mod html;
pub mod metrics;
mod routes;
mod svg;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::AuditLog;
use crate::error::Category;
use crate::lifecycle::Price;
use crate::vault::Vault;

/// How long listings, summaries and figures are reused before being read again.
pub const LISTING_TTL: Duration = Duration::from_secs(30);
/// Rows per page of the models list and of a model's versions table.
pub const PAGE_SIZE: usize = 50;

/// Why the server could not start or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A non-loopback address without `--token`.
    #[error(
        "refusing to serve on {0} without a token: anyone who can reach it could read the vault; \
         pass --token (or MVAULT_SERVE_TOKEN), or listen on 127.0.0.1"
    )]
    Exposed(SocketAddr),
    #[error("--token must not be empty")]
    EmptyToken,
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error(transparent)]
    Vault(#[from] crate::vault::Error),
    #[error(transparent)]
    Lifecycle(#[from] crate::lifecycle::Error),
    #[error(transparent)]
    Remote(#[from] crate::remote::Error),
    #[error("cannot read the audit log {path}: {source}")]
    Audit {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The category of this failure (exit code; HTTP status in [`routes`]).
    pub fn category(&self) -> Category {
        match self {
            Error::Exposed(_) | Error::EmptyToken => Category::Usage,
            Error::Bind { .. } | Error::Serve(_) | Error::Audit { .. } => Category::Failure,
            Error::Vault(e) => e.category(),
            Error::Lifecycle(e) => e.category(),
            Error::Remote(e) => e.category(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Turns a message into one safe to show (the CLI passes its output scrubber).
pub type Scrub = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// What the server shows and how it is protected.
#[derive(Clone)]
pub struct Options {
    /// The address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// Every request must present it when set (`Authorization: Bearer T`, the `mvault_token`
    /// cookie, or once `?token=T`, which sets the cookie).
    pub token: Option<String>,
    /// The remote as shown and as used in the pull snippets: its display name, no secrets.
    pub remote_display: String,
    /// The remote's URL scheme (`s3`, `gs`, `az`, `oss`, `file`): which price the cost
    /// alert compares.
    pub remote_scheme: String,
    /// `usage.alert_monthly_cost` of the config, USD per month.
    pub alert_monthly_cost_usd: Option<f64>,
    /// Storage prices of the cost estimates (usually [`crate::lifecycle::PRICES`]).
    pub prices: Vec<Price>,
    /// The audit log the transfers page and `/metrics` read (this machine's).
    pub audit: AuditLog,
    /// Applied to every error message before it is shown.
    pub scrub: Scrub,
}

/// Refuses to listen beyond loopback without a token (the rule of `--listen`).
pub fn check_exposure(addr: SocketAddr, token: Option<&str>) -> Result<()> {
    match token {
        Some("") => Err(Error::EmptyToken),
        None if !addr.ip().is_loopback() => Err(Error::Exposed(addr)),
        _ => Ok(()),
    }
}

/// A bound server, ready to run.
pub struct Server {
    listener: tokio::net::TcpListener,
    app: axum::Router,
}

impl Server {
    /// Checks the exposure rule, then binds `opts.listen`.
    pub async fn bind(vault: Vault, opts: Options) -> Result<Server> {
        check_exposure(opts.listen, opts.token.as_deref())?;
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: opts.listen,
                source,
            })?;
        let app = routes::router(Arc::new(routes::App::new(vault, opts)));
        Ok(Server { listener, app })
    }

    /// The address actually bound (the port chosen for port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(Error::Serve)
    }

    /// Serves until `shutdown` completes, then lets requests in flight finish.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        axum::serve(self.listener, self.app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(Error::Serve)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposure_rule() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let lo6: SocketAddr = "[::1]:0".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let lan: SocketAddr = "192.168.1.5:80".parse().unwrap();
        assert!(check_exposure(lo, None).is_ok());
        assert!(check_exposure(lo6, None).is_ok());
        assert!(matches!(check_exposure(any, None), Err(Error::Exposed(_))));
        assert!(matches!(check_exposure(lan, None), Err(Error::Exposed(_))));
        assert!(check_exposure(any, Some("t0ken")).is_ok());
        assert!(matches!(
            check_exposure(lo, Some("")),
            Err(Error::EmptyToken)
        ));
        assert_eq!(
            Error::Exposed(any).category(),
            Category::Usage,
            "exit 2 for the refused address"
        );
    }
}
