//! Signed versions on a vault: the signature object beside each manifest
//! (`models/<name>/signatures/<canonical version>.sig`, see `docs/FORMAT.md`, "Signatures"),
//! cached beside the cached manifest, and the trust check pulls, `run`, `verify` and `sync`
//! make when trusted keys are configured.
//!
//! Policy: with trusted keys, a version that is unsigned, whose signature does not verify or
//! binds another manifest, or whose signer is not trusted is refused (integrity, exit 5)
//! before anything is placed. A selector (`latest`, a range, an alias) resolves first and the
//! version it names is then checked: a failing version is refused, never skipped for an
//! older one, so a deployment never silently runs something other than what it asked for.

use serde::Serialize;

use super::{Lookup, Result, Vault};
use crate::manifest::Manifest;
use crate::remote::{ErrorKind, signature_key};
use crate::trust::{self, TrustedKeys};
use crate::version::{ModelName, Version};

/// Who signed a version, as `info` shows it (`info --json`: the `signature` field).
#[derive(Debug, Clone, Serialize)]
pub struct SignatureInfo {
    /// Fingerprint (hex SHA-256 of the public key PEM) of the signer: the trusted key that
    /// verified it when `verified`, else the key the signature names (unverified).
    pub key_fingerprint: Option<String>,
    /// True when the signature was checked against a trusted key and holds.
    pub verified: bool,
    /// Why the check failed (trusted keys configured), or why the object is unreadable.
    pub problem: Option<String>,
    /// The signature object's key on the remote.
    pub object: String,
}

impl Vault {
    /// Requires signatures by one of `keys` for pulls, `run`, `verify` and `sync` from this
    /// vault; empty `keys` require none.
    pub fn with_trusted_keys(mut self, keys: TrustedKeys) -> Vault {
        self.trust = (!keys.is_empty()).then(|| std::sync::Arc::new(keys));
        self
    }

    /// The trusted keys, if signatures are required.
    pub fn trusted_keys(&self) -> Option<&TrustedKeys> {
        self.trust.as_deref()
    }

    /// Reads the signature object of `name@version` from the remote (`None`: unsigned) and
    /// caches it beside the manifest.
    pub(super) async fn fetch_signature(
        &self,
        name: &ModelName,
        version: &Version,
    ) -> Result<Option<Vec<u8>>> {
        let sig = self.read_signature(name, version).await?;
        if let Some(b) = &sig {
            self.cache
                .save_signature(&self.remote_id, name, version, b)?;
        }
        Ok(sig)
    }

    /// Reads the signature object of `name@version` from the remote (`None`: unsigned),
    /// without caching it.
    pub(super) async fn read_signature(
        &self,
        name: &ModelName,
        version: &Version,
    ) -> Result<Option<Vec<u8>>> {
        match self.remote.read(&signature_key(name, version)).await {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The signature object of `name@version`: from the cache unless `lookup` is
    /// [`Lookup::Remote`], else (unless [`Lookup::Offline`]) from the remote; `None` if the
    /// version is unsigned.
    pub async fn signature(
        &self,
        name: &ModelName,
        version: &Version,
        lookup: Lookup,
    ) -> Result<Option<Vec<u8>>> {
        if lookup != Lookup::Remote
            && let Some(b) = self.cache.load_signature(&self.remote_id, name, version)
        {
            return Ok(Some(b));
        }
        if lookup == Lookup::Offline {
            return Ok(None);
        }
        self.fetch_signature(name, version).await
    }

    /// The signature to place beside a pulled version: with trusted keys, verified (a
    /// failure is the error); without, the cached one if any (no request, no check).
    pub(super) async fn checked_signature(
        &self,
        m: &Manifest,
        offline: bool,
    ) -> Result<Option<Vec<u8>>> {
        let (name, version) = super::identity(m)?;
        let Some(keys) = self.trust.as_deref() else {
            return Ok(self.cache.load_signature(&self.remote_id, &name, &version));
        };
        let lookup = if offline {
            Lookup::Offline
        } else {
            Lookup::CacheFirst
        };
        let label = format!("{name}@{}", m.version);
        let Some(sig) = self.signature(&name, &version, lookup).await? else {
            return Err(trust::Error::Unsigned(label).into());
        };
        trust::verify(&sig, &m.to_json(), m, keys, &label)?;
        Ok(Some(sig))
    }

    /// Checks the signature of `name@version` as read from the remote now (for `verify`):
    /// `Ok(None)` when no trusted keys are configured, else the signer or the refusal.
    pub async fn check_signature(
        &self,
        name: &ModelName,
        version: &Version,
    ) -> Result<Option<trust::Verified>> {
        let Some(keys) = self.trust.as_deref() else {
            return Ok(None);
        };
        let m = self.fetch_manifest(name, version).await?;
        let label = format!("{name}@{}", m.version);
        let Some(sig) = self.signature(name, version, Lookup::Remote).await? else {
            return Err(trust::Error::Unsigned(label).into());
        };
        Ok(Some(trust::verify(&sig, &m.to_json(), &m, keys, &label)?))
    }

    /// With trusted keys, checks the signature of each version a `verify` selected (`version`
    /// of `name`, every version of `name`, or every version of every model): the first that
    /// is unsigned or fails is the error. Without trusted keys: nothing to check.
    pub async fn check_signatures(
        &self,
        name: Option<&ModelName>,
        version: Option<&Version>,
    ) -> Result<()> {
        if self.trust.is_none() {
            return Ok(());
        }
        let names = match name {
            Some(n) => vec![n.clone()],
            None => self.list().await?,
        };
        for n in &names {
            let versions = match version {
                Some(v) => vec![v.clone()],
                None => self.versions(n).await?,
            };
            for v in &versions {
                self.check_signature(n, v).await?;
            }
        }
        Ok(())
    }

    /// Who signed `m` (for `info`), its signature read as `lookup` says: `None` if unsigned.
    /// With trusted keys the signature is verified and a failure is reported in
    /// [`SignatureInfo::problem`], not as an error.
    pub async fn signature_info(
        &self,
        m: &Manifest,
        lookup: Lookup,
    ) -> Result<Option<SignatureInfo>> {
        let (name, version) = super::identity(m)?;
        let Some(sig) = self.signature(&name, &version, lookup).await? else {
            return Ok(None);
        };
        let label = format!("{name}@{}", m.version);
        let object = signature_key(&name, &version);
        let info = match self.trust.as_deref() {
            Some(keys) => match trust::verify(&sig, &m.to_json(), m, keys, &label) {
                Ok(v) => SignatureInfo {
                    key_fingerprint: Some(v.fingerprint),
                    verified: true,
                    problem: None,
                    object,
                },
                Err(e) => SignatureInfo {
                    key_fingerprint: trust::bundle_hint(&sig, &label).ok().flatten(),
                    verified: false,
                    problem: Some(e.to_string()),
                    object,
                },
            },
            None => match trust::bundle_hint(&sig, &label) {
                Ok(hint) => SignatureInfo {
                    key_fingerprint: hint,
                    verified: false,
                    problem: None,
                    object,
                },
                Err(e) => SignatureInfo {
                    key_fingerprint: None,
                    verified: false,
                    problem: Some(e.to_string()),
                    object,
                },
            },
        };
        Ok(Some(info))
    }
}
