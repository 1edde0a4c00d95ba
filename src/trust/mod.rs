//! Signed versions: ECDSA P-256 signing keys, the trusted public keys a reader accepts, and the
//! OpenSSF model-signing (OMS) bundle that binds a version's manifest and files to a signer.
//!
//! Pure data and cryptography: no store I/O (the vault layer reads and writes the signature
//! object `models/<name>/signatures/<canonical version>.sig`), only key files are read here.
//! The bundle format, what is signed and the verification order are specified in
//! `docs/FORMAT.md`, "Signatures". Invariants:
//! - a bundle [`verify`] accepts was signed by one of the trusted keys, over a statement whose
//!   `predicate.mvault.manifest_sha256` is the SHA-256 of the exact manifest bytes given, and
//!   whose file list is exactly the manifest's: so a verified signature proves the chunk list;
//! - a bundle mvault writes is accepted by `model_signing verify key` (model-signing 1.1.1)
//!   on a directory holding the version's files.

mod bundle;
mod keys;

pub use bundle::{FileSha256, Verified, bundle_hint, sign, verify};
pub use keys::{PublicKey, SignKey, TrustedKeys, write_key_pair};

use crate::error::Category;

/// Why a key could not be used or a signature was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key file that cannot be read or is not the expected PEM key (exit 2).
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("key file {path}: {source}")]
    KeyIo {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// `keygen` could not write a key file (local I/O: exit 1).
    #[error("cannot write key file {path}: {source}")]
    KeyWrite {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// `keygen` would replace an existing file.
    #[error("{0} exists; refusing to overwrite a key (choose another --out or remove it)")]
    KeyExists(String),
    /// Trusted keys are configured and the version has no signature object.
    #[error(
        "integrity check failed: {0} is not signed, and trusted keys are configured \
         (push it with --sign-key, or pull without --trusted-key)"
    )]
    Unsigned(String),
    /// The signature names a key that is not among the trusted ones.
    #[error(
        "integrity check failed: {version} is signed by key {fingerprint}, which is not a \
         trusted key (add its public key with --trusted-key if you trust it)"
    )]
    UnknownSigner {
        version: String,
        /// SHA-256 (hex) of the signer's public key PEM, as the bundle names it.
        fingerprint: String,
    },
    /// A damaged or forged signature object, or one over other content.
    #[error("integrity check failed: signature of {version}: {reason}")]
    BadSignature { version: String, reason: String },
}

impl Error {
    /// The category of this failure (exit code, exception class).
    pub fn category(&self) -> Category {
        match self {
            Error::KeyFile { .. } | Error::KeyIo { .. } => Category::Usage,
            Error::KeyExists(_) => Category::Conflict,
            Error::KeyWrite { .. } => Category::Failure,
            Error::Unsigned(_) | Error::UnknownSigner { .. } | Error::BadSignature { .. } => {
                Category::Integrity
            }
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
