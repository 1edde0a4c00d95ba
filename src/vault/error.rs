//! Errors of the vault layer: resolving names, versions and aliases, and the operations on a
//! vault. Lower layers' errors are kept whole as sources.

use crate::error::Category;
use crate::{cache, config, crypt, manifest, remote, transfer, trust, version};

/// Why a vault operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Remote(#[from] remote::Error),
    #[error(transparent)]
    Transfer(#[from] transfer::Error),
    #[error(transparent)]
    Cache(#[from] cache::Error),
    #[error(transparent)]
    Spec(#[from] remote::SpecError),
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error(transparent)]
    Name(#[from] version::Error),
    /// A signing or trusted key that cannot be used, or a version refused by the signature
    /// check.
    #[error(transparent)]
    Trust(#[from] trust::Error),
    /// An encryption key file that cannot be used.
    #[error(transparent)]
    Crypt(#[from] crypt::Error),
    /// A model, version or alias that does not exist: the text is a whole sentence naming
    /// it, where it was looked for and, where there is one, the remedy.
    #[error("{0}")]
    NotFound(String),
    /// A manifest that does not parse or validate.
    #[error("integrity check failed: {context}: {source}")]
    BadManifest {
        context: String,
        #[source]
        source: manifest::Error,
    },
    /// A damaged alias document or layout (the text names the object and the remedy).
    #[error("integrity check failed: {0}")]
    Integrity(String),
    /// Another writer won a race (an alias changed concurrently); retrying may succeed.
    #[error("{0}")]
    Conflict(String),
    /// Bad input to an operation (a metadata file, a models directory).
    #[error("{0}")]
    Input(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The category of this failure (exit code, exception class).
    pub fn category(&self) -> Category {
        match self {
            Error::Remote(e) => e.category(),
            Error::Transfer(e) => e.category(),
            Error::Trust(e) => e.category(),
            Error::Crypt(e) => e.category(),
            Error::Cache(_) | Error::Io { .. } => Category::Failure,
            Error::Spec(_) | Error::Config(_) | Error::Name(_) | Error::Input(_) => Category::Usage,
            Error::NotFound(_) => Category::NotFound,
            Error::BadManifest { .. } | Error::Integrity(_) => Category::Integrity,
            Error::Conflict(_) => Category::Conflict,
        }
    }

    /// True when the thing asked for does not exist (a missing model, version or alias).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_))
    }

    /// True when another writer won a race; retrying the operation may succeed.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict(_))
    }
}
