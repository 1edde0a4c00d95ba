//! The `--json` documents, one type per command, so the shape is written down once.
//!
//! The envelope: with `--json` a command prints exactly one JSON document on stdout, the
//! command's own type below (or a library report: [`crate::transfer::SyncReport`],
//! [`crate::lifecycle::VerifyReport`], [`crate::lifecycle::GcReport`],
//! [`crate::lifecycle::UsageReport`], [`crate::cache::PruneReport`], [`crate::audit::OpStats`]
//! list). `push` is a stream: one [`crate::vault::PushOutcome`] line per version pushed (one
//! line for a plain push). A failed command prints [`Failure`] on stdout instead (and its
//! one-line message on stderr), with the exit code of the contract.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Category;
use crate::lifecycle::{CostAlert, GcReport, UsageReport};
use crate::transfer::Summary;
pub use crate::vault::{Info, InfoFile};

/// A failed command: `{"error": {"category": "not_found", "exit_code": 3, "message": "..."}}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Failure {
    pub error: FailureBody,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FailureBody {
    /// `usage`, `not_found`, `conflict`, `integrity` or `failure`.
    pub category: Option<Category>,
    pub exit_code: i32,
    /// The scrubbed one-line message (as printed on stderr).
    pub message: String,
}

/// One failed push of several (`push --json` to several providers or models), a line beside
/// the pushed ones: `{"model_name": ..., "remote": ..., "error": {...}}` as in [`Failure`].
#[derive(Debug, Serialize)]
pub struct PushFailed<'a> {
    pub model_name: &'a str,
    pub remote: &'a str,
    pub error: FailureBody,
}

/// `pull --json`.
#[derive(Debug, Serialize)]
pub struct Pulled {
    pub model_name: String,
    pub version: String,
    /// Where the files are.
    pub path: PathBuf,
    pub summary: Summary,
}

/// `run --json`: the models made present.
#[derive(Debug, Serialize)]
pub struct Ran {
    pub dir: PathBuf,
    pub models: Vec<Pulled>,
}

/// One model of `list --json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Listed {
    pub name: String,
    pub versions: usize,
    pub latest: Option<String>,
}

/// One version of `versions --json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct VersionRow {
    pub version: String,
    pub created_at: String,
    pub file_size: u64,
    pub files: usize,
    pub description: String,
    /// Aliases pointing at this version.
    pub aliases: Vec<String>,
}

/// `rm --json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Removed {
    /// `name@version`.
    pub removed: String,
}

/// `alias set --json` and `rollback --json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct AliasMoved {
    pub model_name: String,
    pub alias: String,
    /// The previous target (`None`: the alias is new).
    pub from: Option<String>,
    pub to: String,
    pub revision: u64,
    /// False when the alias already pointed at `to` (nothing written).
    pub changed: bool,
    /// Damaged revisions `--force` wrote past, each `key: why`.
    pub skipped: Vec<String>,
}

/// `prune --json`.
#[derive(Debug, Serialize)]
pub struct Pruned {
    /// Versions removed (or, with `--dry-run`, that would be).
    pub removed: Vec<String>,
    pub gc: GcReport,
}

/// `remotes --json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Remotes {
    /// The config file read, if any.
    pub config: Option<PathBuf>,
    pub providers: Vec<ProviderRow>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ProviderRow {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub enabled: bool,
    pub default: bool,
    /// `None` when the provider's values are incomplete (see `problem`).
    pub url: Option<String>,
    /// Options with secrets masked.
    pub options: BTreeMap<String, String>,
    pub problem: Option<String>,
}

/// `usage --json`: the [`UsageReport`], and with `usage.alert_monthly_cost` set, `alert`.
#[derive(Debug, Serialize)]
pub struct UsageOut<'a> {
    #[serde(flatten)]
    pub report: &'a UsageReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<&'a CostAlert>,
}

/// `keygen --json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct KeyPair {
    /// The private key file (mode 0600).
    pub private_key: PathBuf,
    pub public_key: PathBuf,
    /// Hex SHA-256 of the public key PEM: what `info` shows as the signer.
    pub fingerprint: String,
}

/// `signature --json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SignatureExported {
    pub model_name: String,
    pub version: String,
    pub path: PathBuf,
    /// The signer the bundle names (verified when trusted keys are configured).
    pub key_fingerprint: Option<String>,
    pub verified: bool,
}
