//! Encrypted vaults on a store (`docs/FORMAT.md`, "Encryption"): the remote's chunk and
//! manifest methods seal, open and rename objects here, so the transfer and lifecycle code
//! call the same methods for both kinds of vault and never see ciphertext.
//!
//! The vault says whether it is encrypted by its marker object ([`MARKER_KEY`], written
//! create-only by the first encrypted write, never deleted). What the marker and the key say
//! is resolved once per remote ([`Remote::sealing`]), with one read of the marker:
//! - marker and matching key: [`Sealing::Sealed`]; chunk objects and manifests are sealed,
//!   chunks stored under keyed names ([`Keys::stored_id`]);
//! - no marker, no key: [`Sealing::Plain`] (reads without a key skip the marker read: an
//!   encrypted manifest is recognized by its magic);
//! - no marker, a key: [`Sealing::Unmarked`]; reads are plaintext (with a warning), and the
//!   first write turns the vault into an encrypted one if it holds no versions yet, else is
//!   refused;
//! - a marker without a key, or with another key's check value: refused
//!   ([`ErrorKind::Encryption`], exit 2) before anything is read or written.

use std::sync::Arc;

use bytes::Bytes;

use super::{Created, Error, ErrorKind, MAX_DOCUMENT_BYTES, Remote, Result, chunk_key};
use crate::chunk::{self, Digest};
use crate::crypt::{self, Keys, Kind, MARKER_KEY, SEAL_OVERHEAD};

/// Whether a vault's objects are sealed, as resolved for one remote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealing {
    /// No marker and no key: a plaintext vault.
    Plain,
    /// A key but no marker yet: plaintext so far; the first write seals (see the module text).
    Unmarked,
    /// The marker matches the key: every chunk object and manifest is sealed.
    Sealed,
}

/// What a remote knows about its vault's encryption (shared by its clones).
#[derive(Default)]
pub(super) struct SealState {
    /// Resolved state; `None` until the marker was read (or without a key, until a write).
    state: std::sync::Mutex<Option<Sealing>>,
    /// Serializes resolving and sealing an unmarked vault (one marker read, one create).
    gate: tokio::sync::Mutex<()>,
}

/// A marker is a few hundred bytes; anything longer is damage.
const MARKER_LIMIT: u64 = 4096;

impl SealState {
    fn get(&self) -> Option<Sealing> {
        *self.state.lock().expect("sealing state")
    }

    fn set(&self, s: Sealing) {
        *self.state.lock().expect("sealing state") = Some(s);
    }
}

impl Remote {
    /// The remote with the vault key `keys` (`None`: no key), its encryption state unknown.
    pub fn with_keys(mut self, keys: Option<Arc<Keys>>) -> Remote {
        self.keys = keys;
        self.sealing = Arc::default();
        self
    }

    /// The key check value of the remote's key, if it has one (part of its cache identity).
    pub fn key_check(&self) -> Option<String> {
        self.keys.as_ref().map(|k| k.key_check())
    }

    fn encryption(&self, op: &'static str, message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Encryption, op, MARKER_KEY, &self.name, message)
    }

    fn unsealable(&self, op: &'static str, key: &str, e: crypt::Error) -> Error {
        let kind = match e.category() {
            crate::error::Category::Integrity => ErrorKind::Integrity,
            _ => ErrorKind::Other,
        };
        Error::new(kind, op, key, &self.name, e.to_string())
    }

    fn key_required(&self, op: &'static str) -> Error {
        self.encryption(
            op,
            "the vault is encrypted: give its key with --encryption-key-file FILE (or MVAULT_ENCRYPTION_KEY_FILE, or encryption.key_file in the config)",
        )
    }

    /// Whether the vault is encrypted, reading its marker once (later calls answer from
    /// memory). Fails with [`ErrorKind::Encryption`] on an encrypted vault without its key or
    /// with another key. gc calls it before marking, so that it never acts on a vault it
    /// cannot read.
    pub async fn sealing(&self) -> Result<Sealing> {
        if let Some(s) = self.sealing.get() {
            return Ok(s);
        }
        let _gate = self.sealing.gate.lock().await;
        if let Some(s) = self.sealing.get() {
            return Ok(s);
        }
        let marker = match self.read_limited(MARKER_KEY, MARKER_LIMIT).await {
            Ok(b) => Some(b),
            Err(e) if e.kind == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let s = match (marker, &self.keys) {
            (None, None) => Sealing::Plain,
            (None, Some(_)) => Sealing::Unmarked,
            (Some(_), None) => return Err(self.key_required("read")),
            (Some(m), Some(k)) => {
                if !k
                    .matches_marker(&m)
                    .map_err(|e| self.unsealable("read", MARKER_KEY, e))?
                {
                    return Err(self.encryption(
                        "read",
                        "wrong encryption key: the vault was encrypted with another key; give the key file it was created with",
                    ));
                }
                Sealing::Sealed
            }
        };
        self.sealing.set(s);
        Ok(s)
    }

    /// The state for a read: without a key no request (an encrypted manifest is recognized
    /// by its magic), unless a write resolved it already.
    async fn sealing_for_read(&self) -> Result<Sealing> {
        match (&self.keys, self.sealing.get()) {
            (_, Some(s)) => Ok(s),
            (None, None) => Ok(Sealing::Plain),
            (Some(_), None) => self.sealing().await,
        }
    }

    /// The state for a write: [`Sealing::Plain`] or [`Sealing::Sealed`]. An unmarked vault
    /// with a key becomes encrypted here (its marker is created) if it holds no model, else
    /// the write is refused; a plaintext write to an encrypted vault is refused by
    /// [`Remote::sealing`].
    async fn sealing_for_write(&self) -> Result<Sealing> {
        let s = self.sealing().await?;
        if s != Sealing::Unmarked {
            return Ok(s);
        }
        let _gate = self.sealing.gate.lock().await;
        if let Some(s @ Sealing::Sealed) = self.sealing.get() {
            return Ok(s);
        }
        let keys = self.keys.clone().expect("unmarked means a key");
        if !self.list_models().await?.is_empty() {
            return Err(self.encryption(
                "create",
                "the vault holds plaintext versions and an encrypted vault must start empty: push without the key, or copy the vault into a new one with `mvault sync --from A --to B --to-encryption-key-file FILE`",
            ));
        }
        let marker = keys.marker();
        let check = keys.clone();
        let created = self
            .create_only_as(MARKER_KEY, Bytes::from(marker), MARKER_LIMIT, move |b| {
                check.matches_marker(b).unwrap_or(false)
            })
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.kind == ErrorKind::Conflict => {
                return Err(self.encryption(
                    "create",
                    "wrong encryption key: another writer made this an encrypted vault with another key just now",
                ));
            }
            Err(e) => return Err(e),
        }
        tracing::info!("{} is now an encrypted vault", self.name);
        self.sealing.set(Sealing::Sealed);
        Ok(Sealing::Sealed)
    }

    fn sealed_keys(&self) -> &Keys {
        self.keys.as_deref().expect("a sealed vault has a key")
    }

    /// The digest in the object key of the chunk with plaintext id `id`: the id itself, or in
    /// an encrypted vault its keyed hash. Reflects the state resolved so far: callers that
    /// compare it with listed keys (gc, usage, pending records) resolve it first (any chunk,
    /// manifest or record read does, and [`Remote::sealing`]).
    pub fn stored_id(&self, id: &Digest) -> Digest {
        match self.sealing.get() {
            Some(Sealing::Sealed) => self.sealed_keys().stored_id(id),
            _ => *id,
        }
    }

    /// The object key of the chunk with plaintext id `id` (see [`Remote::stored_id`]).
    pub fn chunk_object_key(&self, id: &Digest) -> String {
        chunk_key(&self.stored_id(id))
    }

    /// Size of a chunk's encoding (the stored chunk object, without the seal in an encrypted
    /// vault) in bytes, `None` if absent: what a writer compares with its own encoding. In an
    /// unmarked vault with a key every chunk is absent (none is sealed yet).
    pub async fn chunk_size(&self, id: &Digest) -> Result<Option<u64>> {
        Ok(match self.sealing().await? {
            Sealing::Plain => self.size_of(&chunk_key(id)).await?,
            Sealing::Unmarked => None,
            Sealing::Sealed => self
                .size_of(&self.chunk_object_key(id))
                .await?
                .map(|n| n.saturating_sub(SEAL_OVERHEAD)),
        })
    }

    /// The encoded bytes of a chunk (opened, in an encrypted vault: a sealed object that fails
    /// to open is an [`ErrorKind::Integrity`] error). Decode them with [`chunk::decode`].
    pub async fn read_chunk(&self, id: &Digest) -> Result<Bytes> {
        if self.sealing_for_read().await? != Sealing::Sealed {
            return self.read(&chunk_key(id)).await;
        }
        let key = self.chunk_object_key(id);
        let object = self
            .read_limited(&key, chunk::MAX_OBJECT_BYTES + SEAL_OVERHEAD)
            .await?;
        let keys = self.keys.clone().expect("sealed");
        let k = key.clone();
        tokio::task::spawn_blocking(move || keys.open(Kind::Chunk, &k, &object))
            .await
            .expect("open task panicked")
            .map(Bytes::from)
            .map_err(|e| self.unsealable("read", &key, e))
    }

    /// The encoded bytes of the chunk a manifest entry names: from its pack range when it
    /// names one (format 3) and the vault is not encrypted (encrypted vaults hold loose chunks
    /// only), else, or when that pack is absent (a vault filled by `sync`, which copies
    /// chunks loose), the loose object. The bytes are unverified: decode them with
    /// [`chunk::decode`], which checks them against the id.
    pub async fn read_chunk_ref(&self, c: &crate::manifest::ChunkRef) -> Result<Bytes> {
        if let Some(p) = &c.pack
            && self.sealing_for_read().await? != Sealing::Sealed
            && !self
                .missing_packs
                .lock()
                .expect("missing packs")
                .contains(&p.id)
        {
            match self
                .read_range(&crate::pack::pack_key(&p.id), p.offset, p.len)
                .await
            {
                Err(e) if e.kind == ErrorKind::NotFound => {
                    self.missing_packs
                        .lock()
                        .expect("missing packs")
                        .insert(p.id);
                }
                r => return r,
            }
        }
        self.read_chunk(&c.id).await
    }

    /// `len` bytes at `offset` of pack `id` (several neighbouring chunk objects at once), or
    /// `None` when the caller should read chunk by chunk instead: the vault is encrypted (no
    /// packs) or the pack is absent (then remembered, as [`Remote::read_chunk_ref`] does).
    /// The bytes are unverified.
    pub async fn read_pack_span(
        &self,
        id: &crate::chunk::Digest,
        offset: u64,
        len: u64,
    ) -> Result<Option<Bytes>> {
        if self.sealing_for_read().await? == Sealing::Sealed
            || self
                .missing_packs
                .lock()
                .expect("missing packs")
                .contains(id)
        {
            return Ok(None);
        }
        match self
            .read_range(&crate::pack::pack_key(id), offset, len)
            .await
        {
            Err(e) if e.kind == ErrorKind::NotFound => {
                self.missing_packs
                    .lock()
                    .expect("missing packs")
                    .insert(*id);
                Ok(None)
            }
            r => r.map(Some),
        }
    }

    /// Stores a pack object (`docs/FORMAT.md`, "Packs"); its index follows with
    /// [`Remote::write_pack_index`], never before, so that an index never names a pack that is
    /// not stored. Plaintext vaults only.
    /// `parts` are the pack's bytes in order ([`crate::pack::Builder::finish`]), sent as one
    /// body without being copied into one buffer.
    pub async fn write_pack(&self, id: &crate::chunk::Digest, parts: Vec<Bytes>) -> Result<()> {
        debug_assert!(self.keys.is_none());
        self.write(&crate::pack::pack_key(id), parts).await
    }

    /// Stores the index of pack `id`, once the pack itself is stored (FORMAT.md, "Packs": a
    /// reader that finds an index may rely on its pack).
    pub async fn write_pack_index(
        &self,
        id: &crate::chunk::Digest,
        index: &crate::pack::Index,
    ) -> Result<()> {
        self.write(&crate::pack::index_key(id), Bytes::from(index.to_json()))
            .await
    }

    /// Stores a chunk's encoding (sealed, in an encrypted vault).
    pub async fn write_chunk(&self, id: &Digest, encoded: Bytes) -> Result<()> {
        if self.sealing_for_write().await? != Sealing::Sealed {
            return self.write(&chunk_key(id), encoded).await;
        }
        let key = self.chunk_object_key(id);
        let keys = self.keys.clone().expect("sealed");
        let k = key.clone();
        let sealed =
            tokio::task::spawn_blocking(move || Bytes::from(keys.seal(Kind::Chunk, &k, &encoded)))
                .await
                .expect("seal task panicked");
        self.write(&key, sealed).await
    }

    /// Reads the manifest at `key` (from [`super::manifest_key`]): its JSON, opened in an
    /// encrypted vault. An encrypted manifest read without the key is an
    /// [`ErrorKind::Encryption`] error.
    pub async fn read_manifest(&self, key: &str) -> Result<Bytes> {
        let sealing = self.sealing_for_read().await?;
        if sealing != Sealing::Sealed {
            let bytes = self.read(key).await?;
            if sealing == Sealing::Unmarked && !crypt::is_sealed(&bytes) {
                tracing::warn!(
                    "{} is not encrypted: {key} is read as plaintext and the encryption key is not used",
                    self.name
                );
            }
            if crypt::is_sealed(&bytes) {
                return Err(match self.keys {
                    None => self.key_required("read"),
                    Some(_) => Error::new(
                        ErrorKind::Integrity,
                        "read",
                        key,
                        &self.name,
                        format!(
                            "an encrypted manifest in a vault without its {MARKER_KEY} marker: the marker was deleted; restore it"
                        ),
                    ),
                });
            }
            return Ok(bytes);
        }
        let object = self
            .read_limited(key, MAX_DOCUMENT_BYTES + SEAL_OVERHEAD)
            .await?;
        self.sealed_keys()
            .open(Kind::Manifest, key, &object)
            .map(Bytes::from)
            .map_err(|e| self.unsealable("read", key, e))
    }

    /// Creates the manifest at `key` create-only (see [`Remote::create_only`]), sealed in an
    /// encrypted vault; an existing object counts as ours when it opens to `json`.
    pub async fn create_manifest(&self, key: &str, json: Bytes) -> Result<Created> {
        if self.sealing_for_write().await? != Sealing::Sealed {
            return self.create_only(key, json).await;
        }
        if json.len() as u64 > MAX_DOCUMENT_BYTES {
            // The plaintext bound, reported as create_only reports it.
            return self.create_only(key, json).await;
        }
        let keys = self.keys.clone().expect("sealed");
        let sealed = Bytes::from(keys.seal(Kind::Manifest, key, &json));
        let k = key.to_string();
        self.create_only_as(
            key,
            sealed,
            MAX_DOCUMENT_BYTES + SEAL_OVERHEAD,
            move |existing| {
                keys.open(Kind::Manifest, &k, existing)
                    .is_ok_and(|p| p == json)
            },
        )
        .await
    }
}
