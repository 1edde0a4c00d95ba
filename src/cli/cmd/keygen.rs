//! `mvault keygen` (key pairs) and `mvault signature` (export a version's signature bundle).

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;

use super::exact_ref;
use crate::cli::context::Context;
use crate::cli::json::{KeyPair, SignatureExported};
use crate::cli::{TrustArgs, exit, output};
use crate::vault::Lookup;

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Make a vault encryption key (for --encryption-key-file) instead of a signing key pair.
    #[arg(long)]
    pub encryption: bool,
    /// Private key file to create (PKCS#8 PEM, mode 0600); the public key goes to FILE.pub.
    /// Existing files are never overwritten.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct SignatureArgs {
    /// NAME@VERSION.
    pub model: String,
    /// File to write the bundle to (the `--signature` of `model_signing verify key`).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// `mvault keygen --out FILE`: an ECDSA P-256 signing key pair.
pub fn keygen(ctx: &Context, a: &KeygenArgs) -> Result<i32> {
    if a.encryption {
        return super::crypt::keygen_encryption(ctx, &a.out);
    }
    let key = crate::trust::write_key_pair(&a.out)?;
    let mut public = a.out.clone().into_os_string();
    public.push(".pub");
    let pair = KeyPair {
        private_key: a.out.clone(),
        public_key: public.into(),
        fingerprint: key.public().fingerprint().to_string(),
    };
    if ctx.json {
        output::json(&pair)?;
    } else {
        ctx.info(&format!(
            "wrote signing key {} (private, mode 0600) and {} (public); fingerprint {}",
            pair.private_key.display(),
            pair.public_key.display(),
            pair.fingerprint
        ));
    }
    Ok(exit::OK)
}

/// `mvault signature NAME@VERSION --out FILE`. With trusted keys the signature is verified
/// first (exit 5 if it fails); an unsigned version is not found (exit 3).
pub async fn signature(ctx: &Context, a: &SignatureArgs) -> Result<i32> {
    let (name, version) = exact_ref(&a.model)?;
    let vault = ctx.vault()?.with_trusted_keys(ctx.trusted_keys(&a.trust)?);
    ctx.note_model(name.as_str(), Some(&version.to_string()));
    let verified = vault.check_signature(&name, &version).await?;
    let Some(bytes) = vault.signature(&name, &version, Lookup::Remote).await? else {
        return Err(crate::vault::Error::NotFound(format!(
            "{name}@{version} on {} has no signature (it was pushed without --sign-key)",
            vault.remote().name()
        ))
        .into());
    };
    let key_fingerprint = match &verified {
        Some(v) => Some(v.fingerprint.clone()),
        None => crate::trust::bundle_hint(&bytes, &a.model)?,
    };
    std::fs::write(&a.out, &bytes).with_context(|| format!("cannot write {}", a.out.display()))?;
    let done = SignatureExported {
        model_name: name.to_string(),
        version: version.to_string(),
        path: a.out.clone(),
        key_fingerprint,
        verified: verified.is_some(),
    };
    if ctx.json {
        output::json(&done)?;
    } else {
        ctx.info(&format!(
            "wrote the signature of {name}@{version} to {} (key {}{})",
            a.out.display(),
            done.key_fingerprint.as_deref().unwrap_or("unnamed"),
            if done.verified {
                ", verified"
            } else {
                ", not verified: no trusted keys"
            }
        ));
    }
    Ok(exit::OK)
}
