//! The `mvault` command line: argument definitions, the command context, exit codes.
//!
//! `main` parses arguments into plain clap structs (no I/O), builds one `Context` from the
//! global options (config file read once, cache directory, output mode), and runs the
//! command's handler (`cmd/`, one file per command group) over the library. Errors reach the
//! user as one line (`mvault: ...`; with `--json` also a [`json::Failure`] on stdout) and an
//! exit code from the contract: 0 ok, 1 runtime failure, 2 usage, 3 not found, 4 conflict,
//! 5 integrity.

mod audit_table;
mod audit_trail;
mod cmd;
mod context;
pub mod json;
mod output;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::error::Category;
use cmd::maintain::{GcArgs, PruneArgs, ScanArgs, VerifyArgs};
use context::Context;

/// Exit codes of the contract.
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const NOT_FOUND: i32 = 3;
    pub const CONFLICT: i32 = 4;
    pub const INTEGRITY: i32 = 5;
    /// `usage`: the estimated monthly cost is above `usage.alert_monthly_cost`.
    pub const COST_ALERT: i32 = 6;
}

/// mvault: versioned ML models in S3, GCS, Azure Blob, Aliyun OSS or a local directory,
/// chunk-deduplicated, verified end to end.
///
/// With no configuration, models live in a local vault under the user's data directory.
/// Point `--remote` (or MVAULT_REMOTE) at s3://bucket/prefix, gs://..., az://..., oss://...,
/// a local path, or a provider name from the config file.
#[derive(Debug, Parser)]
#[command(
    name = "mvault",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Debug, Args)]
pub struct Global {
    /// Where the vault lives: a URL (s3://bucket/prefix?endpoint=URL&region=R, gs://, az://,
    /// oss://, file:///path), a local path, or a provider name from the config file.
    /// `push` also takes a comma-separated list (`-r a,b`) of providers to push to.
    //
    // Environment values are never shown in help: a URL may carry a secret option.
    #[arg(
        short,
        long,
        global = true,
        env = "MVAULT_REMOTE",
        hide_env_values = true,
        visible_alias = "provider"
    )]
    pub remote: Option<String>,

    /// Config file (default: ./mvault.yaml, then ./cloud_storage_config.yaml, then
    /// $XDG_CONFIG_HOME/mvault/config.yaml).
    #[arg(
        short,
        long,
        global = true,
        env = "MVAULT_CONFIG",
        hide_env_values = true
    )]
    pub config: Option<PathBuf>,

    /// Local cache directory (default: $XDG_CACHE_HOME/mvault).
    #[arg(long, global = true, env = "MVAULT_CACHE_DIR", hide_env_values = true)]
    pub cache_dir: Option<PathBuf>,

    /// Machine-readable output on stdout; transfers report progress as JSON lines on stderr.
    #[arg(long, global = true)]
    pub json: bool,

    /// No progress bars or informational messages.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// The vault's encryption key file (made by `mvault keygen --encryption`): chunks and
    /// manifests are sealed with it [default: encryption.key_file of the config].
    #[arg(
        long,
        global = true,
        env = "MVAULT_ENCRYPTION_KEY_FILE",
        hide_env_values = true,
        value_name = "FILE"
    )]
    pub encryption_key_file: Option<PathBuf>,

    /// More logging on stderr (-v info, -vv debug); RUST_LOG also works.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Transfer tuning shared by push, pull and sync.
#[derive(Debug, Args, Clone)]
pub struct TransferArgs {
    /// Most requests in flight at once, across all files [default: transfer.jobs, else 64].
    /// Transfers start at 16 and grow while throughput grows, backing off when the store
    /// throttles; this is only the cap.
    #[arg(short, long)]
    pub jobs: Option<usize>,

    /// Cap on combined transfer speed, e.g. 50M (MiB/s), 800K.
    #[arg(long, value_name = "RATE")]
    pub limit_rate: Option<String>,
}

/// Signature checks shared by pull, run, verify and sync.
#[derive(Debug, Args, Clone, Default)]
pub struct TrustArgs {
    /// Require a signature by this public key (PEM, FILE.pub of `mvault keygen`); repeatable,
    /// any one suffices. Unsigned, tampered or unknown-signer versions fail with exit 5 before
    /// anything is placed [default: MVAULT_TRUSTED_KEYS (':'-separated), else
    /// signing.trusted_keys of the config].
    #[arg(long = "trusted-key", value_name = "FILE")]
    pub trusted_keys: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upload files and directories as one immutable version NAME@VERSION.
    // `--version` (`-V`) is the pushed version here, not mvault's.
    #[command(disable_version_flag = true)]
    Push(cmd::PushArgs),
    /// Download, verify and materialize a version (NAME, NAME@VERSION, NAME@latest, NAME@^1.2).
    Pull(cmd::PullArgs),
    /// List models in the vault.
    List,
    /// List the versions of a model.
    Versions {
        /// Model name.
        name: String,
    },
    /// Show a version's metadata and files.
    Info {
        /// NAME@VERSION (or NAME for the latest).
        model: String,
    },
    /// Delete a version (its chunks are reclaimed by gc).
    Rm {
        /// NAME@VERSION.
        model: String,
        /// Remove it even if an alias points at it (the alias then points at nothing).
        #[arg(long)]
        force: bool,
    },
    /// Ensure models are present under a directory, then run a command (container entrypoint).
    ///
    /// Each model is placed in DIR/<name>/. Without arguments, models come from MVAULT_MODELS
    /// (comma-separated NAME@VERSION list) and DIR from MVAULT_MODELS_DIR; for existing
    /// deployments, MODEL_PATH and MODELS_S3_BUCKET (as s3://$MODELS_S3_BUCKET) are used when
    /// the mvault variables are unset. The command replaces mvault (exec), so signals reach it.
    Run(cmd::RunArgs),
    /// Inspect and trim the local cache.
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
    /// List the providers of the config file (secrets masked).
    Remotes,
    /// Copy versions another remote lacks: chunks first, manifests last (create-only).
    Sync(cmd::SyncArgs),
    /// Set or list aliases (production, staging...): `alias set NAME@VERSION ALIAS`.
    Alias {
        #[command(subcommand)]
        action: cmd::AliasAction,
    },
    /// Move an alias back to its previous target.
    Rollback {
        /// Model name.
        name: String,
        /// Alias to move back.
        alias: String,
        /// Write past damaged alias revisions (an administrator's repair), with a warning
        /// naming each one skipped.
        #[arg(long)]
        force: bool,
    },
    /// Re-read remote chunks and check their hashes (exit 5 on damage).
    Verify(VerifyArgs),
    /// Delete chunks no version refers to, in two phases: a run records the unreferenced
    /// chunks older than the grace period; a run at least the grace period later deletes those
    /// still unreferenced (run it daily).
    Gc(GcArgs),
    /// Remove all but the newest N versions of a model (never an aliased one), then gc.
    Prune(PruneArgs),
    /// Logical vs stored bytes, dedupe ratio and estimated monthly cost.
    ///
    /// With `usage.alert_monthly_cost` (USD per month) in the config, exits 6 when the
    /// estimate for the vault's provider is above it (for cron and CI alerts).
    Usage(ScanArgs),
    /// Summarise the audit log: counts, success rate, throughput per operation and remote.
    Stats(cmd::StatsArgs),
    /// Serve a read-only web view of the vault: models, versions, storage, transfers, with
    /// `/api/...` JSON and `/metrics` (Prometheus).
    ///
    /// Listens on 127.0.0.1:8080 by default. Any other address needs --token; with a token
    /// every request must send `Authorization: Bearer TOKEN` (a browser opens a page once
    /// with ?token=TOKEN, which sets a cookie).
    Serve(cmd::ServeArgs),
    /// Make a key pair: `--out FILE` writes an ECDSA P-256 signing key (FILE, PKCS#8 PEM, mode
    /// 0600) and its public key (FILE.pub) for `push --sign-key` and `--trusted-key`;
    /// `--encryption --out FILE` writes a vault encryption key (mode 0600).
    Keygen(cmd::KeygenArgs),
    /// Export a version's signature (an OpenSSF model-signing bundle) to a file.
    Signature(cmd::SignatureArgs),
}

#[derive(Debug, Subcommand)]
pub enum CacheAction {
    /// Cached versions: model, version, size, last use.
    Ls,
    /// Evict least recently used versions beyond a size, or unused for longer than an age.
    Prune {
        /// Keep at most this much, e.g. 20G (default: cache.max_size from the config).
        #[arg(long, value_name = "SIZE")]
        max_size: Option<String>,
        /// Evict versions unused for longer than this, e.g. 7d, 12h (default: cache.ttl).
        #[arg(long, value_name = "AGE")]
        older_than: Option<String>,
    },
    /// Remove everything from the cache (except what running pulls hold).
    Clear,
}

/// A usage error found after parsing (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl UsageError {
    /// The error (for `return Err(UsageError::err(...))`).
    pub fn err(msg: impl Into<String>) -> anyhow::Error {
        UsageError(msg.into()).into()
    }
}

/// Keeps memory bounded under glibc's allocator: at most two malloc arenas, so a chunk buffer
/// freed by one thread is reused by the next instead of staying in that thread's own arena.
/// With one arena per thread (glibc's default, up to 8 per core) a cold pull of a 1 GiB
/// checkpoint at `-j 16` peaked at 334 MiB; with two, 125 MiB, and faster than with every
/// large buffer mapped afresh (`bench/format2.sh`). The process's own choice, so the library
/// (and the Python package) leave it to their host.
fn bound_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Parses arguments, runs the command, returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            // Scripts that parse stdout get the documented failure document for usage
            // errors found by the parser too (`--help` and `--version` are not errors).
            if e.use_stderr() && std::env::args_os().any(|a| a == "--json") {
                let _ = output::json(&json::Failure {
                    error: json::FailureBody {
                        category: Some(Category::Usage),
                        exit_code: code,
                        message: parse_error_line(&e),
                    },
                });
            }
            return code;
        }
    };
    init_logging(&cli.global);
    bound_allocator();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let command = cli.command.name();
    let started = std::time::Instant::now();
    // The context is built once, before any I/O; without it (a bad config file) there is
    // no audit log to write to, and the error is the command's.
    let (ctx, result) = match Context::new(&cli.global) {
        Ok(ctx) => {
            let r = runtime.block_on(cmd::run(&ctx, &cli.command));
            (Some(ctx), r)
        }
        Err(e) => (None, Err(e)),
    };
    let message = result
        .as_ref()
        .err()
        .map(|e| output::scrub_message(&one_line(e)));
    if let Some(ctx) = ctx.as_ref().filter(|_| command != "stats") {
        let notes = std::mem::take(&mut *ctx.notes.lock().expect("audit notes"));
        let end = match &result {
            Ok(code) => audit_trail::Outcome::Exited(*code),
            Err(_) => audit_trail::Outcome::Failed(message.as_deref().unwrap_or_default()),
        };
        audit_trail::finish(&ctx.audit_log(), command, started, notes, end);
    }
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => exit::OK,
        Err(e) => {
            let message = message.unwrap_or_default();
            eprintln!("mvault: {}", output::terminal_safe(&message));
            let code = exit_code(&e);
            if cli.global.json {
                let _ = output::json(&json::Failure {
                    error: json::FailureBody {
                        category: category(&e),
                        exit_code: code,
                        message,
                    },
                });
            }
            code
        }
    }
}

impl Command {
    /// The command's name as typed (for the audit log).
    fn name(&self) -> &'static str {
        match self {
            Command::Push(_) => "push",
            Command::Pull(_) => "pull",
            Command::List => "list",
            Command::Versions { .. } => "versions",
            Command::Info { .. } => "info",
            Command::Rm { .. } => "rm",
            Command::Run(_) => "run",
            Command::Cache { .. } => "cache",
            Command::Remotes => "remotes",
            Command::Sync(_) => "sync",
            Command::Alias { .. } => "alias",
            Command::Rollback { .. } => "rollback",
            Command::Verify(_) => "verify",
            Command::Gc(_) => "gc",
            Command::Prune(_) => "prune",
            Command::Usage(_) => "usage",
            Command::Stats(_) => "stats",
            Command::Serve(_) => "serve",
            Command::Keygen(_) => "keygen",
            Command::Signature(_) => "signature",
        }
    }
}

fn init_logging(g: &Global) {
    let default = match (g.quiet, g.verbose) {
        // Libraries' own warnings (OpenDAL's credential loaders dump their state) only with -v.
        (true, _) => "error",
        (_, 0) => "mvault=warn",
        (_, 1) => "warn,mvault=info",
        _ => "mvault=debug,opendal=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(output::ScrubbedStderr::default)
        // Plain text: the scrubber escapes control characters, colour codes included.
        .with_ansi(false)
        .with_target(false)
        .try_init();
}

/// The parser's error as one line: its text up to the usage, without clap's `error: `
/// prefix, lines joined (`the following required arguments were not provided: --name <NAME>`).
fn parse_error_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let text: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = text.join(" ");
    let line = line.strip_prefix("error: ").unwrap_or(&line);
    if line.is_empty() {
        "invalid arguments; see --help".to_owned()
    } else {
        line.to_owned()
    }
}

/// The message of an error chain as the user sees it (see [`crate::one_line`]).
fn one_line(e: &anyhow::Error) -> String {
    crate::one_line(e.as_ref())
}

/// True when the command failed only because stdout was closed (a broken pipe on a store
/// connection is a failure like any other).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<output::StdoutError>()
            .is_some_and(|s| s.0.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The category of the first library error in the chain; usage errors of the CLI itself
/// ([`UsageError`]) count as [`Category::Usage`].
fn category(e: &anyhow::Error) -> Option<Category> {
    e.chain().find_map(|cause| {
        if cause.is::<UsageError>() {
            Some(Category::Usage)
        } else {
            crate::category_of(cause)
        }
    })
}

/// Maps an error chain to the contract's exit codes by category, never by message text
/// (see [`crate::error::Category`]): 2 usage, 3 not found, 4 conflict, 5 integrity, 1
/// everything else (the store is unreachable or refuses credentials, local I/O errors).
pub fn exit_code(e: &anyhow::Error) -> i32 {
    code_of(category(e))
}

/// The exit code of a category: the one place that maps them.
pub fn code_of(c: Option<Category>) -> i32 {
    match c {
        Some(Category::Usage) => exit::USAGE,
        Some(Category::NotFound) => exit::NOT_FOUND,
        Some(Category::Conflict) => exit::CONFLICT,
        Some(Category::Integrity) => exit::INTEGRITY,
        Some(Category::Failure) | None => exit::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
