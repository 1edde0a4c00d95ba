//! What kind of failure an error is, across layers: the one classification the CLI maps to
//! exit codes and the Python package maps to exception classes.
//!
//! Every layer has its own error enum (`remote::Error`, `cache::Error`, `transfer::Error`,
//! `vault::Error`, `lifecycle::Error`, `config::Error`, ...) that keeps its cause as a
//! `source`; each says which [`Category`] it belongs to. [`crate::category_of`] finds the
//! category of any error in a chain. This module depends on nothing, so every layer can use
//! it.

/// The kind of failure, as a caller acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Bad arguments, names, versions, URLs, config files or push inputs: fix the input.
    Usage,
    /// A model, version, alias or object that does not exist.
    NotFound,
    /// Someone else won: the version exists, an alias changed, a file in the target would be
    /// overwritten.
    Conflict,
    /// A damaged or hostile object, manifest or file: a checksum or structure check failed.
    Integrity,
    /// Anything else: the store is unreachable or refuses credentials, local I/O failed.
    Failure,
}
