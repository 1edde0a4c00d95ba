//! Client-side encryption of a vault (`docs/FORMAT.md`, "Encryption"): the key file, the
//! subkeys derived from it, chunk names as keyed hashes, and sealed objects (XChaCha20-Poly1305
//! with the object's key as associated data). Pure CPU work and one file read; the remote
//! layer ([`crate::remote::Remote`]) decides when to seal, open and rename.
//!
//! Invariants:
//! - the master key never leaves [`Keys`]: no `Debug`, `Display` or accessor shows it, and its
//!   bytes are zeroed when the keys are dropped;
//! - every sealed object has a fresh random 192-bit nonce, so one key may seal any number of
//!   objects (the birthday bound of 2^96 objects is out of reach);
//! - an object opens only under the key it was stored at (`chunks/..`, `models/..`), so a
//!   store cannot swap two objects, nor pass a chunk off as a manifest.

use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroize;

use crate::chunk::Digest;
use crate::error::Category;

/// First line of a key file.
pub const KEY_FILE_HEADER: &str = "mvault-encryption-key v1";
/// Master key length in bytes.
pub const KEY_BYTES: usize = 32;
/// Magic bytes opening every sealed object.
pub const SEAL_MAGIC: [u8; 4] = *b"MVE1";
/// Nonce length in bytes (XChaCha20).
pub const NONCE_BYTES: usize = 24;
/// Poly1305 tag length in bytes.
pub const TAG_BYTES: usize = 16;
/// Bytes a sealed object adds to its plaintext: magic, nonce and tag (44).
pub const SEAL_OVERHEAD: u64 = (SEAL_MAGIC.len() + NONCE_BYTES + TAG_BYTES) as u64;
/// Key of the marker object at the vault root that says the vault is encrypted.
pub const MARKER_KEY: &str = "encryption.json";
/// The marker's `format`.
pub const MARKER_FORMAT: u32 = 1;

/// BLAKE3 `derive_key` contexts of the subkeys (exact strings; a change is a format change).
pub const CONTEXT_CHUNK_NAME: &str = "mvault 2026-12-02 chunk name v1";
pub const CONTEXT_CHUNK_DATA: &str = "mvault 2026-12-02 chunk data v1";
pub const CONTEXT_MANIFEST: &str = "mvault 2026-12-02 manifest v1";
pub const CONTEXT_KEY_CHECK: &str = "mvault 2026-12-02 key check v1";

/// What went wrong with a key or a sealed object.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key file cannot be read or is not a key file (never shows its content).
    #[error("encryption key file {path}: {problem}")]
    KeyFile { path: PathBuf, problem: String },
    /// `keygen` found the file already there.
    #[error(
        "encryption key file {0} already exists: mvault never overwrites a key; choose another path"
    )]
    KeyExists(PathBuf),
    #[error("writing encryption key file {path}: {source}")]
    KeyWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A sealed object failed to open: damaged, swapped, or sealed under another key.
    #[error(
        "{key}: sealed object {problem}: the object is damaged, was moved from another key, or was written with another encryption key"
    )]
    Open { key: String, problem: &'static str },
    /// The marker object is not one this reader understands.
    #[error("{MARKER_KEY}: {0}")]
    Marker(String),
}

impl Error {
    /// Key file problems are usage errors (exit 2); objects that fail to open are integrity
    /// failures (exit 5).
    pub fn category(&self) -> Category {
        match self {
            Error::KeyFile { .. } | Error::KeyExists(_) => Category::Usage,
            Error::KeyWrite { .. } => Category::Failure,
            Error::Open { .. } | Error::Marker(_) => Category::Integrity,
        }
    }
}

/// Which subkey seals an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A chunk object (`chunks/..`): the stored chunk encoding, sealed.
    Chunk,
    /// A manifest (`models/<name>/versions/..`): its JSON, sealed.
    Manifest,
}

/// The keys of one encrypted vault, derived from its 32-byte master key.
pub struct Keys {
    master: [u8; KEY_BYTES],
    name: [u8; 32],
    chunk: XChaCha20Poly1305,
    manifest: XChaCha20Poly1305,
    check: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys {{ check: {} }}", self.key_check())
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.master.zeroize();
        self.name.zeroize();
    }
}

impl Keys {
    /// The keys derived from `master` (BLAKE3 `derive_key` with the `CONTEXT_*` strings).
    pub fn from_master(master: [u8; KEY_BYTES]) -> Keys {
        let derive = |context: &str| blake3::derive_key(context, &master);
        let (mut data, mut manifest) = (derive(CONTEXT_CHUNK_DATA), derive(CONTEXT_MANIFEST));
        let keys = Keys {
            name: derive(CONTEXT_CHUNK_NAME),
            chunk: XChaCha20Poly1305::new(&data.into()),
            manifest: XChaCha20Poly1305::new(&manifest.into()),
            check: derive(CONTEXT_KEY_CHECK),
            master,
        };
        data.zeroize();
        manifest.zeroize();
        keys
    }

    /// A new random key (from the operating system's generator).
    pub fn generate() -> Keys {
        let mut master = [0u8; KEY_BYTES];
        master.copy_from_slice(&XChaCha20Poly1305::generate_key(&mut OsRng));
        Keys::from_master(master)
    }

    /// Reads a key file: the line [`KEY_FILE_HEADER`], then the key as 64 lower-case hex
    /// characters, each line ending in `\n` (the last one may not). Errors name the file and
    /// the problem, never its content. A file others may read is accepted with a warning
    /// (secrets mounted into containers are often 0644).
    pub fn load(path: &Path) -> Result<Keys, Error> {
        let bad = |problem: &str| Error::KeyFile {
            path: path.to_path_buf(),
            problem: problem.to_string(),
        };
        let meta = std::fs::metadata(path).map_err(|e| bad(&e.to_string()))?;
        if !meta.is_file() {
            return Err(bad("not a regular file"));
        }
        if meta.len() > 256 {
            return Err(bad("too long to be an mvault encryption key file"));
        }
        let mut text = std::fs::read_to_string(path)
            .map_err(|_| bad("not text: not an mvault encryption key file"))?;
        if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077 != 0 {
            tracing::warn!(
                "encryption key file {} is readable by others; chmod 600 it",
                path.display()
            );
        }
        let parsed = parse_key_file(&text);
        text.zeroize();
        parsed.map(Keys::from_master).map_err(bad)
    }

    /// The key file text of these keys (see [`Keys::load`]).
    pub fn to_key_file(&self) -> String {
        format!("{KEY_FILE_HEADER}\n{}\n", hex::encode(self.master))
    }

    /// Writes a new key file at `path`, mode 0600, refusing to replace anything there.
    pub fn write_new(&self, path: &Path) -> Result<(), Error> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Error::KeyExists(path.to_path_buf()),
                _ => Error::KeyWrite {
                    path: path.to_path_buf(),
                    source: e,
                },
            })?;
        let mut text = self.to_key_file();
        let r = f.write_all(text.as_bytes()).and_then(|()| f.sync_all());
        text.zeroize();
        r.map_err(|source| {
            let _ = std::fs::remove_file(path);
            Error::KeyWrite {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// The key check value, 64 hex: BLAKE3 `derive_key(CONTEXT_KEY_CHECK, master)`. Stored in
    /// the vault's marker; reveals nothing about the key but lets a reader tell a wrong key
    /// from a damaged object.
    pub fn key_check(&self) -> String {
        hex::encode(self.check)
    }

    /// The name a chunk with plaintext id `id` is stored under: keyed BLAKE3 of the id's 32
    /// bytes with the chunk-name subkey. Deterministic (so dedupe works inside the vault) and,
    /// without the key, unlinkable to the plaintext or its BLAKE3.
    pub fn stored_id(&self, id: &Digest) -> Digest {
        Digest(*blake3::keyed_hash(&self.name, &id.0).as_bytes())
    }

    fn cipher(&self, kind: Kind) -> &XChaCha20Poly1305 {
        match kind {
            Kind::Chunk => &self.chunk,
            Kind::Manifest => &self.manifest,
        }
    }

    /// Seals `plain` for storage at object key `key`, with a fresh random nonce.
    pub fn seal(&self, kind: Kind, key: &str, plain: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        self.seal_with_nonce(kind, key, plain, nonce.into())
    }

    /// Seals with a given nonce: `MVE1`, the nonce, then ciphertext and tag, with associated
    /// data `MVE1` followed by the key's UTF-8 bytes. For test vectors only: a nonce MUST NOT
    /// be used twice under one key ([`Keys::seal`] draws a fresh one).
    pub fn seal_with_nonce(
        &self,
        kind: Kind,
        key: &str,
        plain: &[u8],
        nonce: [u8; NONCE_BYTES],
    ) -> Vec<u8> {
        let aad = associated_data(key);
        let sealed = self
            .cipher(kind)
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any length mvault stores");
        let mut out = Vec::with_capacity(plain.len() + SEAL_OVERHEAD as usize);
        out.extend_from_slice(&SEAL_MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens an object read from `key`: checks the magic and the tag (which covers the key),
    /// returns the plaintext.
    pub fn open(&self, kind: Kind, key: &str, object: &[u8]) -> Result<Vec<u8>, Error> {
        let fail = |problem| Error::Open {
            key: key.to_string(),
            problem,
        };
        if (object.len() as u64) < SEAL_OVERHEAD {
            return Err(fail("is too short"));
        }
        if !is_sealed(object) {
            return Err(fail(
                "lacks the MVE1 magic (a plaintext object in an encrypted vault)",
            ));
        }
        let nonce = XNonce::from_slice(&object[4..4 + NONCE_BYTES]);
        let aad = associated_data(key);
        self.cipher(kind)
            .decrypt(
                nonce,
                Payload {
                    msg: &object[4 + NONCE_BYTES..],
                    aad: &aad,
                },
            )
            .map_err(|_| fail("fails authentication"))
    }

    /// The marker document of a vault encrypted with these keys (pretty JSON and `\n`).
    pub fn marker(&self) -> Vec<u8> {
        let doc = Marker {
            format: MARKER_FORMAT,
            cipher: CIPHER.to_string(),
            kdf: KDF.to_string(),
            key_check: self.key_check(),
        };
        let mut out = serde_json::to_vec_pretty(&doc).expect("marker serializes");
        out.push(b'\n');
        out
    }

    /// Whether a marker read from a vault was written with these keys. Fails on a marker this
    /// reader does not understand (another format, cipher or derivation).
    pub fn matches_marker(&self, bytes: &[u8]) -> Result<bool, Error> {
        Ok(parse_marker(bytes)?.key_check == self.key_check())
    }
}

/// Whether `object` starts with [`SEAL_MAGIC`] (a sealed object; plaintext manifests are JSON
/// and start with `{`).
pub fn is_sealed(object: &[u8]) -> bool {
    object.starts_with(&SEAL_MAGIC)
}

const CIPHER: &str = "xchacha20-poly1305";
const KDF: &str = "blake3-derive-key";

/// The marker object (`encryption.json`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Marker {
    format: u32,
    cipher: String,
    kdf: String,
    key_check: String,
}

/// Parses and checks a marker document.
fn parse_marker(bytes: &[u8]) -> Result<Marker, Error> {
    #[derive(serde::Deserialize)]
    struct Format {
        format: u32,
    }
    let f: Format = serde_json::from_slice(bytes)
        .map_err(|e| Error::Marker(format!("not a marker document ({e})")))?;
    if f.format != MARKER_FORMAT {
        return Err(Error::Marker(format!(
            "encryption format {} is newer than this mvault: upgrade mvault",
            f.format
        )));
    }
    let m: Marker = serde_json::from_slice(bytes)
        .map_err(|e| Error::Marker(format!("not a marker document ({e})")))?;
    if m.cipher != CIPHER || m.kdf != KDF {
        return Err(Error::Marker(format!(
            "cipher {:?} with {:?} is not one this mvault knows: upgrade mvault",
            m.cipher, m.kdf
        )));
    }
    Ok(m)
}

fn associated_data(key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(4 + key.len());
    aad.extend_from_slice(&SEAL_MAGIC);
    aad.extend_from_slice(key.as_bytes());
    aad
}

/// The master key of a key file's text, or what is wrong with it.
fn parse_key_file(text: &str) -> Result<[u8; KEY_BYTES], &'static str> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut lines = body.split('\n');
    if lines.next() != Some(KEY_FILE_HEADER) {
        return Err(
            "first line is not \"mvault-encryption-key v1\": not an mvault encryption key file (make one with `mvault keygen --encryption --out FILE`)",
        );
    }
    let key = lines.next().ok_or("no key line after the header")?;
    if lines.next().is_some() {
        return Err("more than two lines: not an mvault encryption key file");
    }
    if key.len() != 2 * KEY_BYTES
        || !key
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err("the key line is not 64 lower-case hex characters");
    }
    let mut master = [0u8; KEY_BYTES];
    hex::decode_to_slice(key, &mut master).map_err(|_| "the key line is not hex")?;
    Ok(master)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::from_master([7u8; 32])
    }

    #[test]
    fn seal_open_round_trip_and_key_binding() {
        let k = keys();
        let sealed = k.seal(Kind::Chunk, "chunks/ab/ab00", b"hello");
        assert_eq!(sealed.len() as u64, 5 + SEAL_OVERHEAD);
        assert_eq!(
            k.open(Kind::Chunk, "chunks/ab/ab00", &sealed).unwrap(),
            b"hello"
        );
        // Another key, another subkey, another object key: all refused.
        assert!(k.open(Kind::Chunk, "chunks/ab/ab01", &sealed).is_err());
        assert!(k.open(Kind::Manifest, "chunks/ab/ab00", &sealed).is_err());
        let other = Keys::from_master([8u8; 32]);
        assert!(other.open(Kind::Chunk, "chunks/ab/ab00", &sealed).is_err());
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(k.open(Kind::Chunk, "chunks/ab/ab00", &flipped).is_err());
        assert!(
            k.open(Kind::Chunk, "chunks/ab/ab00", &sealed[..20])
                .is_err()
        );
    }

    #[test]
    fn nonces_are_fresh() {
        let k = keys();
        assert_ne!(
            k.seal(Kind::Chunk, "k", b"x"),
            k.seal(Kind::Chunk, "k", b"x")
        );
    }

    #[test]
    fn key_file_round_trip_and_refusals() {
        let k = keys();
        let text = k.to_key_file();
        assert_eq!(parse_key_file(&text).unwrap(), [7u8; 32]);
        assert_eq!(parse_key_file(text.trim_end()).unwrap(), [7u8; 32]);
        assert!(parse_key_file(&text.to_uppercase()).is_err());
        assert!(parse_key_file(&format!("{text}extra\n")).is_err());
        assert!(parse_key_file("mvault-encryption-key v1\nabcd\n").is_err());
        assert!(parse_key_file("-----BEGIN PRIVATE KEY-----\n").is_err());
    }

    #[test]
    fn marker_matches_only_its_key_and_format() {
        let k = keys();
        assert!(k.matches_marker(&k.marker()).unwrap());
        assert!(
            !Keys::from_master([9; 32])
                .matches_marker(&k.marker())
                .unwrap()
        );
        let newer = String::from_utf8(k.marker())
            .unwrap()
            .replace("\"format\": 1", "\"format\": 2");
        assert!(k.matches_marker(newer.as_bytes()).is_err());
        assert!(k.matches_marker(b"not json").is_err());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let k = keys();
        let shown = format!("{k:?}");
        assert!(!shown.contains(&hex::encode([7u8; 32])));
        assert!(shown.contains(&k.key_check()));
    }
}
