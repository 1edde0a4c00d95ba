//! `mvault serve`: the read-only web view ([`crate::serve`]) over the `-r` remote.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;

use crate::cli::context::Context;
use crate::cli::{UsageError, exit, output};
use crate::serve::{Options, Server};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, IP:PORT (port 0: any free port). Anything but loopback needs
    /// --token.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: String,
    /// Require this token on every request (Authorization: Bearer TOKEN). Prefer the
    /// environment variable, which other users cannot read in the process list.
    #[arg(long, env = "MVAULT_SERVE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Requests in flight at once when reading many manifests [default: transfer.jobs, else 64].
    #[arg(short, long)]
    pub jobs: Option<usize>,
    #[command(flatten)]
    pub trust: super::super::TrustArgs,
}

/// Serves until Ctrl-C or SIGTERM. Prints `listening on http://ADDR/` on stdout once bound.
pub async fn serve(ctx: &Context, a: &ServeArgs) -> Result<i32> {
    let listen: SocketAddr = a.listen.parse().map_err(|_| {
        UsageError::err(format!(
            "invalid --listen {:?}: expected IP:PORT, e.g. 127.0.0.1:8080",
            a.listen
        ))
    })?;
    if let Some(t) = &a.token {
        output::register_secrets([t.clone()]);
    }
    let spec = ctx.spec(ctx.remote.as_deref())?;
    // With trusted keys the version page shows whether each signature verifies.
    let vault = ctx
        .vault()?
        .with_jobs(ctx.jobs(a.jobs)?)
        .with_trusted_keys(ctx.trusted_keys(&a.trust)?);
    let opts = Options {
        listen,
        token: a.token.clone(),
        remote_display: spec.display_name(),
        remote_scheme: spec.backend.scheme().to_string(),
        alert_monthly_cost_usd: ctx.config.alert_monthly_cost_usd,
        prices: crate::lifecycle::PRICES.to_vec(),
        audit: ctx.audit_log(),
        scrub: Arc::new(|m: &str| output::scrub_message(m)),
    };
    let server = Server::bind(vault, opts).await?;
    output::line(&format!("listening on http://{}/", server.local_addr()?))?;
    ctx.info(&format!(
        "serving {} read-only; Ctrl-C stops",
        spec.display_name()
    ));
    server.run(shutdown_signal()).await?;
    Ok(exit::OK)
}

/// Completes on Ctrl-C or SIGTERM (a container's stop).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
