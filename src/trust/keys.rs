//! ECDSA P-256 keys as PEM: a signing key (PKCS#8 `PRIVATE KEY`, or SEC1 `EC PRIVATE KEY` as
//! `openssl ecparam` writes it), public keys (SPKI `PUBLIC KEY`), and their fingerprint.
//!
//! The **fingerprint** of a public key is the lower-case hex SHA-256 of its canonical PEM
//! (`-----BEGIN PUBLIC KEY-----`, base64 in 64-character lines, LF line ends, final LF), which
//! is what model-signing puts in a bundle's `verificationMaterial.publicKey.hint`.

use std::io::Write;
use std::path::Path;

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use sha2::Digest as _;

use super::{Error, Result};

/// Largest key file read, in bytes (a P-256 PEM key is about 250).
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// A public key and its fingerprint.
#[derive(Clone)]
pub struct PublicKey {
    key: VerifyingKey,
    pem: String,
    fingerprint: String,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint)
    }
}

impl PublicKey {
    fn of(key: VerifyingKey) -> PublicKey {
        let pem = key
            .to_public_key_pem(LineEnding::LF)
            .expect("a P-256 public key encodes as SPKI PEM");
        let fingerprint = hex::encode(sha2::Sha256::digest(pem.as_bytes()));
        PublicKey {
            key,
            pem,
            fingerprint,
        }
    }

    /// Reads a PEM SPKI public key (`-----BEGIN PUBLIC KEY-----`) of curve P-256.
    pub fn load(path: &Path) -> Result<PublicKey> {
        let text = read_key_file(path)?;
        let key = VerifyingKey::from_public_key_pem(text.trim()).map_err(|e| Error::KeyFile {
            path: path.display().to_string(),
            reason: format!(
                "not a PEM ECDSA P-256 public key (\"BEGIN PUBLIC KEY\", as `mvault keygen` \
                 writes FILE.pub): {e}"
            ),
        })?;
        Ok(PublicKey::of(key))
    }

    /// Lower-case hex SHA-256 of the canonical PEM (see the module docs).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The canonical PEM (SPKI, LF line ends).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// True when `der` is a valid ASN.1 DER ECDSA signature by this key over SHA-256 of `msg`.
    pub(super) fn verifies(&self, msg: &[u8], der: &[u8]) -> bool {
        Signature::from_der(der).is_ok_and(|sig| self.key.verify(msg, &sig).is_ok())
    }
}

/// A private signing key and its public key.
pub struct SignKey {
    key: SigningKey,
    public: PublicKey,
}

impl std::fmt::Debug for SignKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignKey({})", self.public.fingerprint)
    }
}

impl SignKey {
    /// A new random key (from the operating system's generator).
    pub fn generate() -> SignKey {
        SignKey::of(SigningKey::random(&mut rand_core::OsRng))
    }

    fn of(key: SigningKey) -> SignKey {
        let public = PublicKey::of(*key.verifying_key());
        SignKey { key, public }
    }

    /// Reads an unencrypted PEM P-256 private key: PKCS#8 (`BEGIN PRIVATE KEY`, what
    /// `mvault keygen` writes) or SEC1 (`BEGIN EC PRIVATE KEY`).
    pub fn load(path: &Path) -> Result<SignKey> {
        let text = read_key_file(path)?;
        let text = text.trim();
        let key = SigningKey::from_pkcs8_pem(text)
            .or_else(|_| p256::SecretKey::from_sec1_pem(text).map(SigningKey::from))
            .map_err(|_| Error::KeyFile {
                path: path.display().to_string(),
                reason: "not an unencrypted PEM ECDSA P-256 private key (\"BEGIN PRIVATE KEY\" \
                         as `mvault keygen` writes, or \"BEGIN EC PRIVATE KEY\")"
                    .into(),
            })?;
        Ok(SignKey::of(key))
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// ASN.1 DER ECDSA signature over SHA-256 of `msg` (RFC 6979 nonces, low S).
    pub(super) fn sign_der(&self, msg: &[u8]) -> Vec<u8> {
        let sig: DerSignature = self.key.sign(msg);
        sig.as_bytes().to_vec()
    }
}

/// The public keys a reader accepts signatures from (`--trusted-key`, `signing.trusted_keys`,
/// `MVAULT_TRUSTED_KEYS`). Empty: signatures are not required.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys(Vec<PublicKey>);

impl TrustedKeys {
    /// Reads every key file; the first unreadable or malformed one is the error.
    pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<TrustedKeys> {
        let keys = paths
            .iter()
            .map(|p| PublicKey::load(p.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Ok(TrustedKeys(keys))
    }

    pub fn from_keys(keys: Vec<PublicKey>) -> TrustedKeys {
        TrustedKeys(keys)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn keys(&self) -> &[PublicKey] {
        &self.0
    }
}

fn read_key_file(path: &Path) -> Result<String> {
    let io = |source| Error::KeyIo {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(file, MAX_KEY_FILE_BYTES),
        &mut text,
    )
    .map_err(io)?;
    Ok(text)
}

/// Writes a new key pair: `out` (PKCS#8 PEM private key, created with mode 0600) and
/// `out.pub` (SPKI PEM public key, mode 0644 under the umask). Refuses, writing nothing, if
/// either exists; a failure after the private key was written removes it. Returns the key.
pub fn write_key_pair(out: &Path) -> Result<SignKey> {
    let public_path = pub_path(out);
    for p in [out, public_path.as_path()] {
        if std::fs::symlink_metadata(p).is_ok() {
            return Err(Error::KeyExists(p.display().to_string()));
        }
    }
    let key = SignKey::generate();
    let private = key
        .key
        .to_pkcs8_pem(LineEnding::LF)
        .expect("a P-256 key encodes as PKCS#8 PEM");
    create_new(out, private.as_bytes(), 0o600)?;
    if let Err(e) = create_new(&public_path, key.public.pem.as_bytes(), 0o644) {
        let _ = std::fs::remove_file(out);
        return Err(e);
    }
    Ok(key)
}

/// `FILE.pub` beside `FILE`.
pub(crate) fn pub_path(out: &Path) -> std::path::PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".pub");
    s.into()
}

fn create_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let shown = path.display().to_string();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::KeyExists(shown.clone()),
            _ => Error::KeyWrite {
                path: shown.clone(),
                source: e,
            },
        })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|source| Error::KeyWrite {
            path: shown,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_files_load_back_with_the_same_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("k");
        let key = write_key_pair(&out).unwrap();
        let signer = SignKey::load(&out).unwrap();
        let public = PublicKey::load(&dir.path().join("k.pub")).unwrap();
        assert_eq!(signer.public().fingerprint(), key.public().fingerprint());
        assert_eq!(public.fingerprint(), key.public().fingerprint());
        let sig = signer.sign_der(b"msg");
        assert!(public.verifies(b"msg", &sig));
        assert!(!public.verifies(b"other", &sig));
        assert!(matches!(write_key_pair(&out), Err(Error::KeyExists(_))));
    }

    /// Other signers (Python `cryptography`, OpenSSL) do not normalize S: both halves verify.
    #[test]
    fn high_s_signatures_verify() {
        let key = SignKey::generate();
        let sig = Signature::from_der(&key.sign_der(b"msg")).unwrap();
        // Whichever half the signer produced, start from the low one.
        let sig = sig.normalize_s().unwrap_or(sig);
        let low = sig.to_der();
        assert!(key.public().verifies(b"msg", low.as_bytes()));
        let (r, s) = sig.split_scalars();
        let high = Signature::from_scalars(r, -*s).unwrap();
        assert!(
            high.normalize_s().is_some(),
            "the flipped signature is high-S"
        );
        let der = high.to_der();
        assert!(key.public().verifies(b"msg", der.as_bytes()));
    }

    #[test]
    fn a_public_key_is_not_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("k");
        write_key_pair(&out).unwrap();
        let err = SignKey::load(&pub_path(&out)).unwrap_err();
        assert!(matches!(err, Error::KeyFile { .. }), "{err}");
        let err = PublicKey::load(&out).unwrap_err();
        assert!(matches!(err, Error::KeyFile { .. }), "{err}");
    }
}
