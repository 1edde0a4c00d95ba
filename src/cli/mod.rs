//! The `mvault` command line: argument definitions, remote and cache resolution, exit codes.
//!
//! Arguments are parsed into plain clap structs (no I/O); [`run`] resolves them into a
//! [`Vault`](crate::vault::Vault) and calls the command. Errors reach the user as one line
//! (`mvault: ...`) and an exit code from the contract: 0 ok, 1 runtime failure, 2 usage,
//! 3 not found, 4 conflict, 5 integrity.

mod audit_table;
mod audit_trail;
mod commands;
mod local;
mod ops;
mod output;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::remote::{self, ErrorKind};
use crate::transfer;

/// Exit codes of the contract.
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const NOT_FOUND: i32 = 3;
    pub const CONFLICT: i32 = 4;
    pub const INTEGRITY: i32 = 5;
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
    #[arg(short, long, global = true, env = "MVAULT_REMOTE", alias = "provider")]
    pub remote: Option<String>,

    /// Config file (default: ./mvault.yaml, then $XDG_CONFIG_HOME/mvault/config.yaml).
    #[arg(short, long, global = true, env = "MVAULT_CONFIG")]
    pub config: Option<PathBuf>,

    /// Local cache directory (default: $XDG_CACHE_HOME/mvault).
    #[arg(long, global = true, env = "MVAULT_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Machine-readable output on stdout.
    #[arg(long, global = true)]
    pub json: bool,

    /// No progress bars or informational messages.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// More logging on stderr (-v info, -vv debug); RUST_LOG also works.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Transfer tuning shared by push, pull and sync.
#[derive(Debug, Args, Clone)]
pub struct TransferArgs {
    /// Requests in flight at once, across all files [default: transfer.jobs, else 16].
    #[arg(short, long)]
    pub jobs: Option<usize>,

    /// Cap on combined transfer speed, e.g. 50M (MiB/s), 800K.
    #[arg(long, value_name = "RATE")]
    pub limit_rate: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upload files and directories as one immutable version NAME@VERSION.
    Push(commands::PushArgs),
    /// Download, verify and materialize a version (NAME, NAME@VERSION, NAME@latest, NAME@^1.2).
    Pull(commands::PullArgs),
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
    },
    /// Ensure models are present under a directory, then run a command (container entrypoint).
    ///
    /// Each model is placed in DIR/<name>/. Without arguments, models come from MVAULT_MODELS
    /// (comma-separated NAME@VERSION list) and DIR from MVAULT_MODELS_DIR; for existing
    /// deployments, MODEL_PATH and MODELS_S3_BUCKET (as s3://$MODELS_S3_BUCKET) are used when
    /// the mvault variables are unset. The command replaces mvault (exec), so signals reach it.
    Run(commands::RunArgs),
    /// Inspect and trim the local cache.
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
    /// List the providers of the config file (secrets masked).
    Remotes,
    /// Copy versions another remote lacks: chunks first, manifests last (create-only).
    Sync(ops::SyncArgs),
    /// Set or list aliases (production, staging...): `alias set NAME@VERSION ALIAS`.
    Alias {
        #[command(subcommand)]
        action: ops::AliasAction,
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
    Verify {
        /// NAME or NAME@VERSION (default: every version of every model).
        model: Option<String>,
        /// Check only this fraction of the chunks (0 < P <= 1).
        #[arg(long, value_name = "P")]
        sample: Option<f64>,
    },
    /// Delete chunks no version refers to, in two phases: a run records the unreferenced
    /// chunks older than the grace period; a run at least the grace period later deletes those
    /// still unreferenced (run it daily).
    Gc {
        /// Show what would be recorded and deleted; write and delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Protects pushes running shorter than this, e.g. 24h (at least 1h without --force).
        #[arg(long, default_value = "24h", value_name = "AGE")]
        grace: String,
        /// Accept a --grace below 1h (unsafe while pushes run; 0s records and deletes at once).
        #[arg(long)]
        force: bool,
    },
    /// Remove all but the newest N versions of a model (never an aliased one), then gc.
    Prune {
        /// Model name.
        name: String,
        /// Versions to keep.
        #[arg(long)]
        keep: usize,
        #[arg(long)]
        dry_run: bool,
        /// Grace period of the gc that follows.
        #[arg(long, default_value = "24h", value_name = "AGE")]
        grace: String,
        /// Accept a --grace below 1h for the gc that follows.
        #[arg(long)]
        force: bool,
    },
    /// Logical vs stored bytes, dedupe ratio and estimated monthly cost.
    Usage,
    /// Summarise the audit log: counts, success rate, throughput per operation and remote.
    Stats(ops::StatsArgs),
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
            return code;
        }
    };
    init_logging(&cli.global);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let command = cli.command.name();
    let audit = audit_log(&cli.global);
    let started = std::time::Instant::now();
    let result = runtime.block_on(commands::run(cli));
    let message = result
        .as_ref()
        .err()
        .map(|e| output::scrub_message(&format!("{e:#}")));
    if let Some(log) = audit.filter(|_| command != "stats") {
        audit_trail::finish(&log, command, started, message.as_deref());
    }
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => exit::OK,
        Err(e) => {
            let message = message.unwrap_or_default();
            eprintln!("mvault: {}", output::terminal_safe(&message));
            exit_code(&e)
        }
    }
}

/// The audit log of this invocation (`audit.path` in the config, else
/// `<data dir>/logs/audit.jsonl`); `None` if the config cannot be read (that error is
/// reported by the command itself).
fn audit_log(g: &Global) -> Option<crate::audit::AuditLog> {
    let config = crate::config::Config::load(g.config.as_deref()).ok()?;
    Some(crate::audit::AuditLog::from_config(
        &config.audit,
        &commands::data_dir(),
    ))
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
            Command::Verify { .. } => "verify",
            Command::Gc { .. } => "gc",
            Command::Prune { .. } => "prune",
            Command::Usage => "usage",
            Command::Stats(_) => "stats",
        }
    }
}

fn init_logging(g: &Global) {
    let default = match (g.quiet, g.verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "mvault=info",
        _ => "mvault=debug,opendal=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(output::ScrubbedStderr::default)
        .with_target(false)
        .try_init();
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Maps an error chain to the contract's exit codes by kind, never by message text: the one
/// place that does. The first cause in the chain with a known type decides:
/// - 2 usage: bad arguments ([`commands::UsageError`], names and versions), bad remote URLs
///   ([`remote::SpecError`]), every config file error ([`crate::config::Error`]: missing
///   file, bad YAML, unknown key, unset `${VAR}`, disabled or unknown provider, bad value),
///   bad push inputs ([`transfer::Error::Input`]);
/// - 3 not found: a model, version, alias or object that does not exist;
/// - 4 conflict: the version exists, an alias changed concurrently;
/// - 5 integrity: a damaged or hostile object or manifest, a checksum mismatch;
/// - 1 runtime failure: everything else, e.g. the store is unreachable or refuses
///   credentials, local I/O errors (permission denied, disk full), cache errors.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    for cause in e.chain() {
        if let Some(t) = cause.downcast_ref::<transfer::Error>() {
            return match t {
                transfer::Error::NotFound(_) => exit::NOT_FOUND,
                transfer::Error::VersionExists(..) | transfer::Error::WouldOverwrite(_) => {
                    exit::CONFLICT
                }
                transfer::Error::Integrity(_) | transfer::Error::Manifest(_) => exit::INTEGRITY,
                transfer::Error::Input(_) => exit::USAGE,
                transfer::Error::Remote(r) => remote_code(r),
                transfer::Error::Cache(_) | transfer::Error::Io { .. } => exit::FAILURE,
            };
        }
        if let Some(r) = cause.downcast_ref::<remote::Error>() {
            return remote_code(r);
        }
        if cause.downcast_ref::<crate::version::Error>().is_some()
            || cause.downcast_ref::<remote::SpecError>().is_some()
            || cause.downcast_ref::<crate::config::Error>().is_some()
            || cause.downcast_ref::<commands::UsageError>().is_some()
        {
            return exit::USAGE;
        }
    }
    exit::FAILURE
}

fn remote_code(r: &remote::Error) -> i32 {
    match r.kind {
        ErrorKind::NotFound => exit::NOT_FOUND,
        ErrorKind::Conflict => exit::CONFLICT,
        ErrorKind::Integrity => exit::INTEGRITY,
        ErrorKind::PermissionDenied
        | ErrorKind::Config
        | ErrorKind::Unavailable
        | ErrorKind::Other => exit::FAILURE,
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
