//! What every command needs, built once from the global options before any I/O: the config
//! file (parsed once), the cache directory, output mode, and the audit notes the command
//! leaves as it goes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Result;

use super::output;
use super::{Global, TransferArgs, TrustArgs, UsageError};
use crate::audit::AuditLog;
use crate::cache::Cache;
use crate::config::Config;
use crate::crypt::Keys;
use crate::remote::{Remote, RemoteSpec};
use crate::transfer::{self, Progress, RateLimiter, TransferOptions};
use crate::trust::{SignKey, TrustedKeys};
use crate::vault::{self, Vault};

/// The resolved global options of one invocation.
pub struct Context {
    pub config: Config,
    pub cache_dir: PathBuf,
    /// The `--remote` option (a URL, path, provider or comma-separated providers).
    pub remote: Option<String>,
    pub json: bool,
    pub quiet: bool,
    /// `--encryption-key-file` (or its variable), else `encryption.key_file` of the config.
    pub encryption_key_file: Option<PathBuf>,
    /// What the audit record of this command will say.
    pub notes: Mutex<Notes>,
}

/// What a command handled, for its audit record.
#[derive(Debug, Default)]
pub struct Notes {
    /// The remote's display name (no secrets); the first one noted wins.
    pub remote: Option<String>,
    pub model: Option<String>,
    pub version: Option<String>,
    /// Local (logical) bytes moved, over the whole command.
    pub bytes: u64,
    /// What the command did, for the record's `detail` (see [`crate::audit::Record`]).
    pub detail: Option<String>,
}

impl Context {
    /// Reads the config file; fails (exit 2) on any config error.
    pub fn new(g: &Global) -> Result<Context> {
        let config = Config::load(g.config.as_deref())?;
        Ok(Context {
            encryption_key_file: g
                .encryption_key_file
                .clone()
                .or_else(|| config.encryption_key_file.clone()),
            config,
            cache_dir: g.cache_dir.clone().unwrap_or_else(crate::util::cache_dir),
            remote: g.remote.clone().filter(|r| !r.is_empty()),
            json: g.json,
            quiet: g.quiet,
            notes: Mutex::new(Notes::default()),
        })
    }

    /// The audit log this invocation appends to.
    pub fn audit_log(&self) -> AuditLog {
        AuditLog::from_config(&self.config.audit, &crate::util::data_dir())
    }

    /// The remote `remote` names (a URL, path or provider; `None`: the default). Its secrets
    /// are registered with the output scrubber before anything can print them.
    pub fn spec(&self, remote: Option<&str>) -> Result<RemoteSpec> {
        let spec = vault::resolve_spec(remote, &self.config)?;
        output::register_secrets(spec.secrets());
        Ok(spec)
    }

    /// Opens the vault of `--remote` (or the default).
    pub fn vault(&self) -> Result<Vault> {
        self.vault_at(self.remote.as_deref())
    }

    /// Opens the vault at `remote`, with the cache, the config's cache limits and the
    /// encryption key of the global options (if any).
    pub fn vault_at(&self, remote: Option<&str>) -> Result<Vault> {
        self.vault_keyed(remote, self.encryption_key_file.as_deref())
    }

    /// [`Context::vault_at`] with the encryption key in `key_file` (`None`: no key).
    pub fn vault_keyed(&self, remote: Option<&str>, key_file: Option<&Path>) -> Result<Vault> {
        let spec = self.spec(remote)?;
        self.note(|n| {
            n.remote.get_or_insert_with(|| spec.display_name());
        });
        let keys = key_file.map(Keys::load).transpose()?.map(Arc::new);
        // Never printed anyway; the scrubber makes sure of it.
        output::register_secrets(
            keys.iter()
                .flat_map(|k| k.to_key_file().lines().nth(1).map(str::to_string)),
        );
        let cache = self.cache()?;
        let remote = Remote::open(&spec)?.with_keys(keys);
        Ok(Vault::new(remote, &vault::cache_identity(&spec), cache)
            .with_cache_limits(self.config.cache.clone()))
    }

    pub fn cache(&self) -> Result<Cache> {
        Ok(Cache::open(&self.cache_dir)?)
    }

    /// `--jobs`, else `transfer.jobs` of the config, else the default; 1 to 1024.
    pub fn jobs(&self, jobs: Option<usize>) -> Result<usize> {
        let jobs = jobs
            .or(self.config.jobs)
            .unwrap_or_else(transfer::default_jobs);
        if jobs == 0 || jobs > 1024 {
            return Err(UsageError::err("--jobs must be between 1 and 1024"));
        }
        Ok(jobs)
    }

    /// The transfer options of `t` over the config's defaults.
    pub fn transfer_options(&self, t: &TransferArgs) -> Result<TransferOptions> {
        let rate = match &t.limit_rate {
            Some(r) => Some(transfer::ratelimit::parse_rate(r).ok_or_else(|| {
                UsageError::err(format!(
                    "invalid --limit-rate {r:?}: expected e.g. 50M, 800K"
                ))
            })?),
            None => self.config.rate_limit_bytes_per_sec,
        };
        Ok(TransferOptions {
            jobs: self.jobs(t.jobs)?,
            rate: rate.map(|r| Arc::new(RateLimiter::new(r))),
            progress: Progress::for_stderr(self.quiet, self.json),
        })
    }

    /// The trusted keys: `--trusted-key` files, else `MVAULT_TRUSTED_KEYS` (paths separated
    /// by ':'; empty = none), else `signing.trusted_keys` of the config. A key file that cannot
    /// be read or is no P-256 public key is a usage error (exit 2).
    pub fn trusted_keys(&self, t: &TrustArgs) -> Result<TrustedKeys> {
        let paths = if t.trusted_keys.is_empty() {
            vault::default_trusted_key_paths(&self.config)
        } else {
            t.trusted_keys.clone()
        };
        Ok(TrustedKeys::load(&paths)?)
    }

    /// The key `push` signs with: `--sign-key`, else `signing.key` of the config; read before
    /// anything is uploaded (a bad key is exit 2).
    pub fn sign_key(&self, flag: Option<&std::path::Path>) -> Result<Option<Arc<SignKey>>> {
        let path = flag.or(self.config.sign_key.as_deref());
        Ok(path.map(SignKey::load).transpose()?.map(Arc::new))
    }

    /// Updates the audit notes.
    pub fn note(&self, f: impl FnOnce(&mut Notes)) {
        f(&mut self.notes.lock().expect("audit notes"));
    }

    /// Notes the model and version the command is about.
    pub fn note_model(&self, model: &str, version: Option<&str>) {
        self.note(|n| {
            n.model = Some(model.to_string());
            n.version = version.map(str::to_string);
        });
    }

    /// Notes what the command did (the last note wins).
    pub fn note_detail(&self, detail: impl Into<String>) {
        let detail = detail.into();
        self.note(|n| n.detail = Some(detail));
    }

    /// Adds local bytes moved.
    pub fn note_bytes(&self, bytes: u64) {
        self.note(|n| n.bytes += bytes);
    }

    /// An informational line on stderr, unless `--quiet` or `--json`.
    pub fn info(&self, text: &str) {
        output::note(self.quiet || self.json, text);
    }
}
