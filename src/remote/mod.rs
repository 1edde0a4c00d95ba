//! The vault on a store: the object layout and every request mvault makes, over one OpenDAL
//! [`Operator`] per remote.
//!
//! Layout (relative to the remote's root; see `docs/FORMAT.md`):
//! - `chunks/<first 2 hex>/<64 hex>`: immutable chunk objects, named by BLAKE3 of plaintext;
//! - `models/<name>/versions/<canonical semver>.json`: manifests, written create-only, last;
//! - `models/<name>/aliases/<alias>/<20-digit revision>.json`: alias revisions, create-only;
//! - `models/<name>/signatures/<canonical semver>.sig`: signature bundles, written by the
//!   manifest's creator right after it.
//!
//! Errors are mapped once, here, into [`Error`] with a [`ErrorKind`] callers can match and a
//! retryable flag; transient failures are retried with exponential backoff and jitter.

mod backend;
mod options;
mod pending;
mod sealed;
mod transport;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use opendal::Operator;

pub use pending::{
    PENDING_DIR, Pending, PendingError, RECORD_MAX_CHUNKS, Record, SWEEP_BOUND, pending_chunks,
    read_records, write_record,
};

pub use backend::{
    Backend, CreateOnly, OPTION_KEYS, RemoteSpec, SECRET_KEYS, SSE_CUSTOMER_KEY_ENV, SpecError,
    Sse, check_endpoint, redact_query, redact_url,
};
pub use options::{OptionError, check_option};
pub use sealed::Sealing;

use crate::chunk::{self, Digest};
use crate::error::Category;
use crate::version::{ModelName, Version};

/// Largest manifest or alias revision document, in bytes (256 MiB: a manifest lists each chunk
/// in about 120 bytes, so this holds ~2 million chunks, ~1 TiB of files at the default chunk
/// size). [`Remote::read`] refuses longer objects and [`Remote::create_only`] refuses to write
/// them, so every document a writer creates stays readable.
pub const MAX_DOCUMENT_BYTES: u64 = 256 * 1024 * 1024;

/// The most bytes a read of `key` may return: [`chunk::MAX_OBJECT_BYTES`] for a chunk object
/// (`chunks/...`), [`crate::pack::MAX_INDEX_BYTES`] for a pack index (packs themselves are
/// only read by range), [`MAX_DOCUMENT_BYTES`] for anything else (manifests, alias revisions).
pub fn read_limit(key: &str) -> u64 {
    if key.starts_with("chunks/") {
        chunk::MAX_OBJECT_BYTES
    } else if key.starts_with("packs/") {
        crate::pack::MAX_INDEX_BYTES
    } else {
        MAX_DOCUMENT_BYTES
    }
}

/// What went wrong, for callers to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The object does not exist.
    NotFound,
    /// A create-only or conditional write lost: someone else wrote first.
    Conflict,
    /// Credentials were refused or lack permission.
    PermissionDenied,
    /// The remote is misconfigured (bad URL, missing bucket, bad endpoint).
    Config,
    /// A network or server failure that persisted after retries.
    Unavailable,
    /// The object cannot be what mvault stored: longer than [`read_limit`] allows, or on a
    /// local vault not a regular file. The store is damaged or hostile (exit 5).
    Integrity,
    /// The vault's encryption and the key given disagree: an encrypted vault without its
    /// key or with another one, an encrypted write to a vault of plaintext versions (exit 2).
    Encryption,
    /// Anything else.
    Other,
}

/// A failed request: which operation on which object, and why. `Display` is one line and
/// never contains credentials (OpenDAL's own message is used, not its request context); the
/// full cause, OpenDAL's error with its kind, status and context, is kept as the `source`
/// (shown with `-v`, and by programs that walk the chain).
#[derive(Debug, thiserror::Error)]
#[error("{op} {path} on {remote}: {message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub op: &'static str,
    pub path: String,
    pub remote: String,
    pub message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    /// An error of `op` on `path` with no underlying cause.
    pub fn new(
        kind: ErrorKind,
        op: &'static str,
        path: &str,
        remote: &str,
        message: impl Into<String>,
    ) -> Error {
        Error {
            kind,
            op,
            path: path.to_string(),
            remote: remote.to_string(),
            message: message.into(),
            source: None,
        }
    }

    fn with_source(mut self, e: impl std::error::Error + Send + Sync + 'static) -> Error {
        self.source = Some(Box::new(e));
        self
    }

    /// The category of this failure (exit code, exception class).
    pub fn category(&self) -> Category {
        match self.kind {
            ErrorKind::NotFound => Category::NotFound,
            ErrorKind::Conflict => Category::Conflict,
            ErrorKind::Integrity => Category::Integrity,
            ErrorKind::Encryption => Category::Usage,
            ErrorKind::PermissionDenied
            | ErrorKind::Config
            | ErrorKind::Unavailable
            | ErrorKind::Other => Category::Failure,
        }
    }

    fn from_dal(remote: (&str, &str), op: &'static str, path: &str, e: opendal::Error) -> Error {
        let (remote, service) = remote;
        use opendal::ErrorKind as K;
        let kind = match e.kind() {
            K::NotFound => ErrorKind::NotFound,
            K::ConditionNotMatch | K::AlreadyExists => ErrorKind::Conflict,
            K::PermissionDenied => ErrorKind::PermissionDenied,
            K::ConfigInvalid | K::Unsupported => ErrorKind::Config,
            _ if e.is_temporary() => ErrorKind::Unavailable,
            K::RateLimited => ErrorKind::Unavailable,
            _ => ErrorKind::Other,
        };
        if let Some(hint) = missing_credentials(service, &e) {
            return Error::new(ErrorKind::PermissionDenied, op, path, remote, hint).with_source(e);
        }
        let mut message = match kind {
            ErrorKind::PermissionDenied => {
                "access denied: check the credentials and their permissions".to_string()
            }
            // OpenDAL's timeout layer: the request made no progress within the stall timeout.
            _ if e.message().contains("io operation timeout") => {
                "stalled: no progress within the stall timeout (remote option stall_timeout, \
                 default 30s)"
                    .to_string()
            }
            _ => store_reason(&e),
        };
        if kind == ErrorKind::Unavailable || kind == ErrorKind::Other {
            // The root of the transport error chain says *why* a connection failed
            // (refused, DNS, TLS).
            let mut root = std::error::Error::source(&e);
            while let Some(next) = root.and_then(std::error::Error::source) {
                root = Some(next);
            }
            if let Some(src) = root {
                message = format!("{message}: {}", first_line(&src.to_string()));
            }
        }
        Error::new(kind, op, path, remote, message).with_source(e)
    }

    /// True when retrying the same request may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Unavailable
    }
}

/// When OpenDAL found no credential to sign with: one line naming the sources its signer
/// tried for the remote's service (OpenDAL's scheme: `s3`, `gcs`, `azblob`, `oss`) and how to
/// provide one.
fn missing_credentials(service: &str, e: &opendal::Error) -> Option<String> {
    let text = e.to_string();
    if !text.contains("failed to load signing credential") && !text.contains("no valid credential")
    {
        return None;
    }
    Some(match service {
        "s3" => "no S3 credentials found (tried AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the \
                 AWS_PROFILE profile in ~/.aws, web identity, and instance metadata unless \
                 AWS_EC2_METADATA_DISABLED=true): export those variables, set the profile option, \
                 or for a local server give the endpoint, access_key and secret_key options"
            .to_string(),
        "gcs" => "no GCS credentials found (tried the credential and credential_path options, \
                 GOOGLE_APPLICATION_CREDENTIALS, gcloud's application default credentials and \
                 the metadata server): set GOOGLE_APPLICATION_CREDENTIALS to a service account \
                 key file, or set the anonymous option for a public bucket or a local server"
            .to_string(),
        "azblob" => "no Azure credentials found (tried the account_key, sas_token and \
                 connection_string options and AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN, \
                 AZURE_STORAGE_CONNECTION_STRING): set one of them"
            .to_string(),
        "oss" => "no OSS credentials found (tried the access_key and secret_key options, \
                  ALIYUN_ACCESS_KEY_ID/ALIYUN_ACCESS_KEY_SECRET and \
                  ALIBABA_CLOUD_ACCESS_KEY_ID/ALIBABA_CLOUD_ACCESS_KEY_SECRET): export one pair"
            .to_string(),
        _ => format!("no credentials found: {}", first_line(e.message())),
    })
}

/// Why a local vault's object could not be read.
#[derive(Debug)]
enum FsReadError {
    /// Not a regular file (what it is instead).
    Irregular(&'static str),
    Io(std::io::Error),
}

impl From<std::io::Error> for FsReadError {
    fn from(e: std::io::Error) -> Self {
        FsReadError::Io(e)
    }
}

/// Reads the regular file at `path` if it holds at most `limit` bytes (`Ok(None)` if longer).
///
/// Opened with `O_NOFOLLOW | O_NONBLOCK` and checked with `fstat` before any byte is read, so a
/// symlink in the last component is refused, a FIFO neither blocks the open nor is read, and a
/// device is never read. Symlinked parent directories are followed: they can only lead to
/// another regular file, which is bounded and checked like any object. At most `limit + 1`
/// bytes are read even if the file grows meanwhile.
fn read_regular_file(
    path: &std::path::Path,
    limit: u64,
) -> std::result::Result<Option<Bytes>, FsReadError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => FsReadError::Irregular("a symbolic link"),
            _ => FsReadError::Io(e),
        })?;
    let meta = file.metadata()?;
    let t = meta.file_type();
    if !t.is_file() {
        return Err(FsReadError::Irregular(if t.is_dir() {
            "a directory"
        } else if t.is_fifo() {
            "a FIFO"
        } else if t.is_socket() {
            "a socket"
        } else {
            "a device"
        }));
    }
    if meta.len() > limit {
        return Ok(None);
    }
    let mut buf = crate::buffers::take(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut buf)?;
    Ok((buf.len() as u64 <= limit).then(|| crate::buffers::into_bytes(buf)))
}

/// `len` bytes at `offset` of a regular file (fewer if it is shorter), opened as
/// [`read_regular_file`] opens it.
fn read_regular_range(
    path: &std::path::Path,
    offset: u64,
    len: u64,
) -> std::result::Result<Bytes, FsReadError> {
    use std::io::Read;
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => FsReadError::Irregular("a symbolic link"),
            _ => FsReadError::Io(e),
        })?;
    if !file.metadata()?.file_type().is_file() {
        return Err(FsReadError::Irregular("not a regular file"));
    }
    let mut buf = crate::buffers::take(len as usize);
    // `take` over a positioned reader: stops at end of file or `len` bytes.
    struct At<'a>(&'a std::fs::File, u64);
    impl Read for At<'_> {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.read_at(b, self.1)?;
            self.1 += n as u64;
            Ok(n)
        }
    }
    At(&file, offset).take(len).read_to_end(&mut buf)?;
    Ok(crate::buffers::into_bytes(buf))
}

/// Streams `key` from the store, keeping at most `limit` bytes: `Ok(None)` as soon as the
/// object turns out longer (by the size the response declares, or by the bytes received).
async fn read_at_most(op: &Operator, key: &str, limit: u64) -> opendal::Result<Option<Bytes>> {
    use futures::TryStreamExt;
    let mut stream = op.reader(key).await?.into_stream(..).await?;
    let declared = match stream.metadata().await {
        Ok(meta) if meta.content_length() > limit => return Ok(None),
        Ok(meta) => meta.content_length(),
        Err(e) if e.kind() != opendal::ErrorKind::Unsupported => return Err(e),
        Err(_) => 0,
    };
    // Copied into one buffer as the body arrives, so a chunk is held once, not as its
    // network pieces and their concatenation (a pull holds several chunks at once).
    let mut out = crate::buffers::take(declared as usize);
    while let Some(buf) = stream.try_next().await? {
        if (out.len() + buf.len()) as u64 > limit {
            return Ok(None);
        }
        for piece in buf {
            out.extend_from_slice(&piece);
        }
    }
    Ok(Some(crate::buffers::into_bytes(out)))
}

/// Bytes `range` of `key`, copied into one buffer as they arrive (as [`read_at_most`]). A
/// store that answers more than asked is cut off one piece past the range (the caller finds
/// the length wrong), so memory stays bounded by the range.
async fn read_range_of(
    op: &Operator,
    key: &str,
    range: std::ops::Range<u64>,
) -> opendal::Result<Bytes> {
    use futures::TryStreamExt;
    let len = (range.end - range.start) as usize;
    let mut stream = op.reader(key).await?.into_stream(range).await?;
    let mut out = crate::buffers::take(len);
    while out.len() <= len
        && let Some(buf) = stream.try_next().await?
    {
        for piece in buf {
            out.extend_from_slice(&piece);
        }
    }
    Ok(crate::buffers::into_bytes(out))
}

/// What the store said, as one line: OpenDAL's message, with a service's error document
/// shown as `Code: message` rather than its Rust form (`S3Error { code: "InternalError",
/// message: "boom", .. }`), and the HTTP status when there is no message (an error answer to
/// a HEAD has no body).
fn store_reason(e: &opendal::Error) -> String {
    let message = e.message();
    let field = |name: &str| {
        let start = message.find(&format!("{name}: \""))? + name.len() + 3;
        let len = message[start..].find('"')?;
        Some(&message[start..start + len]).filter(|v| !v.is_empty())
    };
    if message.contains("Error {") {
        match (field("code"), field("message")) {
            (Some(code), Some(text)) => return first_line(&format!("{code}: {text}")),
            (Some(one), None) | (None, Some(one)) => return first_line(one),
            (None, None) => {}
        }
    }
    if message.trim().is_empty() {
        let text = e.to_string();
        if let Some(at) = text.find("status: ") {
            let code: String = text[at + 8..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if !code.is_empty() {
                return format!("HTTP {code} with no error message");
            }
        }
        return "the store answered with an error and no message".to_string();
    }
    first_line(message)
}

/// The first line of an error text, at most 300 characters, with URL query strings removed
/// (they may carry signatures or SAS tokens).
fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    let mut out = String::new();
    let mut in_query = false;
    for c in line.chars().take(300) {
        match c {
            '?' => in_query = true,
            c if c.is_whitespace() || c == ')' || c == ',' => {
                in_query = false;
                out.push(c)
            }
            c if !in_query => out.push(c),
            _ => {}
        }
    }
    out
}

pub type Result<T> = std::result::Result<T, Error>;

/// Retry policy for transient failures.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, including the first.
    pub max_attempts: u32,
    /// Delay before the first retry; doubles each time, with full jitter.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// Outcome of a create-only manifest write.
#[derive(Debug, PartialEq, Eq)]
pub enum Created {
    /// This call created the object.
    New,
    /// The object already held exactly these bytes (e.g. our own earlier, retried write).
    AlreadyIdentical,
}

/// One object found by [`Remote::list_objects`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the remote's root (`chunks/ab/ab12...`).
    pub key: String,
    /// Stored size in bytes.
    pub size: u64,
    /// When the object was last written, if the store reports it (the memory store does not).
    pub last_modified: Option<std::time::SystemTime>,
}

/// One vault on one store.
#[derive(Clone)]
pub struct Remote {
    op: Operator,
    /// Human name without secrets (`s3://bucket/prefix`, or the provider name).
    name: Arc<str>,
    retry: RetryPolicy,
    retries: Arc<AtomicU64>,
    /// Throttling answers (HTTP 429, S3 `SlowDown`) seen, retried or not.
    throttles: Arc<AtomicU64>,
    conditional_writes: bool,
    /// Whether a create-only write stats its key first ([`CreateOnly::Checked`], or a store
    /// without conditional writes) rather than leaving it to the precondition alone.
    stat_before_create: bool,
    /// For local-directory vaults, the root directory: create-only writes there bypass
    /// OpenDAL so that readers never see a half-written file (see [`Remote::create_only`]).
    fs_root: Option<Arc<std::path::Path>>,
    /// The vault's encryption key, if one was given ([`Remote::with_keys`]).
    keys: Option<Arc<crate::crypt::Keys>>,
    /// Whether the vault is encrypted, once known (shared by clones).
    sealing: Arc<sealed::SealState>,
    /// Packs found absent by a read (shared by clones): their chunks are read loose instead,
    /// without asking for the pack again (see [`Remote::read_chunk_ref`]).
    missing_packs: Arc<std::sync::Mutex<std::collections::HashSet<Digest>>>,
}

/// A new temporary file `.mvault-*.tmp` in the directory of local object `path` (made if
/// needed), readable as an object written by `std::fs::write` would be (0666 less umask): what
/// a local vault's writes fill, then rename into place. Chunk listings skip the name.
fn temp_beside(path: &std::path::Path) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = path.parent().expect("key has a directory");
    std::fs::create_dir_all(dir)?;
    tempfile::Builder::new()
        .prefix(".mvault-")
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
}

/// Content type stored with an object (some stores and emulators require one).
fn content_type(key: &str) -> &'static str {
    if key.ends_with(".json") {
        "application/json"
    } else {
        "application/octet-stream"
    }
}

/// Object key of a chunk.
pub fn chunk_key(id: &Digest) -> String {
    let hex = id.to_hex();
    format!("chunks/{}/{}", &hex[..2], hex)
}

/// Object key of a version's manifest.
pub fn manifest_key(name: &ModelName, version: &Version) -> String {
    format!("models/{}/versions/{}.json", name, version.canonical())
}

/// Key of a version's signature object (`docs/FORMAT.md`, "Signatures"), written by the
/// manifest's creator after the manifest; garbage while no manifest exists.
pub fn signature_key(name: &ModelName, version: &Version) -> String {
    format!("models/{}/signatures/{}.sig", name, version.canonical())
}

impl Remote {
    /// Wraps an operator. `name` must not contain secrets.
    pub fn new(op: Operator, name: impl Into<Arc<str>>) -> Remote {
        let conditional_writes = op.info().capability().write_with_if_not_exists;
        Remote {
            op,
            name: name.into(),
            retry: RetryPolicy::default(),
            retries: Arc::new(AtomicU64::new(0)),
            throttles: Arc::new(AtomicU64::new(0)),
            conditional_writes,
            stat_before_create: true,
            fs_root: None,
            keys: None,
            sealing: Arc::default(),
            missing_packs: Arc::default(),
        }
    }

    /// Opens a remote from a parsed spec.
    pub fn open(spec: &RemoteSpec) -> std::result::Result<Remote, SpecError> {
        let op = spec.operator()?;
        let mut remote = Remote::new(op, spec.display_name());
        if let Some(r) = spec.options.get("retries") {
            let retries: u32 = r.parse().map_err(|_| SpecError::Invalid {
                url: spec.display_name(),
                message: format!("retries {r:?} is not a number"),
            })?;
            remote.retry.max_attempts = retries + 1;
        }
        remote.stat_before_create =
            spec.create_only() == CreateOnly::Checked || !remote.conditional_writes;
        if spec.backend == Backend::Fs {
            remote.fs_root = Some(std::path::Path::new(&spec.bucket).into());
        }
        Ok(remote)
    }

    /// The remote's display name (no secrets).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Retries performed so far by this remote (all clones share the counter).
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// The counter of throttling answers this remote (and its clones) received: the
    /// transfer engine backs off when it moves.
    pub fn throttles(&self) -> Arc<AtomicU64> {
        self.throttles.clone()
    }

    /// Runs `f` until it succeeds, fails permanently, or attempts run out.
    async fn retrying<T, F, Fut>(&self, op: &'static str, path: &str, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = opendal::Result<T>>,
    {
        let mut attempt = 1;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    if e.kind() == opendal::ErrorKind::RateLimited {
                        self.throttles.fetch_add(1, Ordering::Relaxed);
                    }
                    let mut err =
                        Error::from_dal((&self.name, self.op.info().scheme()), op, path, e);
                    if !err.is_retryable() || attempt >= self.retry.max_attempts {
                        if err.is_retryable() && attempt > 1 {
                            err.message = format!("{} (after {attempt} attempts)", err.message);
                        }
                        return Err(err);
                    }
                    let cap = self
                        .retry
                        .base_delay
                        .saturating_mul(1 << (attempt - 1).min(16))
                        .min(self.retry.max_delay);
                    let delay = cap.mul_f64(0.5 + fastrand::f64() * 0.5);
                    tracing::debug!(
                        "{op} {path}: {} (retry {attempt} in {delay:?})",
                        err.message
                    );
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Reads a whole object of at most [`read_limit`]`(key)` bytes. Memory never exceeds that
    /// bound (plus one network buffer) whatever size the store claims: the body is streamed
    /// and abandoned once it passes the bound, which is an [`ErrorKind::Integrity`] error, as
    /// is (on a local vault) an object that is not a regular file (see [`read_regular_file`]).
    pub async fn read(&self, key: &str) -> Result<Bytes> {
        self.read_limited(key, read_limit(key)).await
    }

    /// Reads exactly `len` bytes at `offset` of `key` (a pack range; `len` is bounded by the
    /// caller). A shorter answer is an [`ErrorKind::Integrity`] error, as is (on a local
    /// vault) an object that is not a regular file.
    pub async fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes> {
        let read = match &self.fs_root {
            Some(root) => {
                let path = root.join(key);
                tokio::task::spawn_blocking(move || read_regular_range(&path, offset, len))
                    .await
                    .expect("read task panicked")
                    .map_err(|e| self.fs_error("read", key, e))?
            }
            None => {
                self.retrying("read", key, || {
                    read_range_of(&self.op, key, offset..offset + len)
                })
                .await?
            }
        };
        if read.len() as u64 != len {
            return Err(self.integrity(
                "read",
                key,
                format!(
                    "bytes {offset}..{} answered {} bytes: the pack is shorter than a manifest says; the store is damaged or hostile",
                    offset + len,
                    read.len()
                ),
            ));
        }
        Ok(read)
    }

    /// [`Remote::read`] with another bound (sealed objects are longer by their overhead).
    async fn read_limited(&self, key: &str, limit: u64) -> Result<Bytes> {
        let read = match &self.fs_root {
            Some(root) => {
                let path = root.join(key);
                tokio::task::spawn_blocking(move || read_regular_file(&path, limit))
                    .await
                    .expect("read task panicked")
                    .map_err(|e| self.fs_error("read", key, e))?
            }
            None => {
                self.retrying("read", key, || read_at_most(&self.op, key, limit))
                    .await?
            }
        };
        read.ok_or_else(|| {
            self.integrity(
                "read",
                key,
                format!(
                    "object is longer than the {limit} bytes {} may be: the store is damaged or hostile; delete the object (and push its version again)",
                    if key.starts_with("chunks/") {
                        "a chunk object"
                    } else {
                        "a manifest or alias document"
                    }
                ),
            )
        })
    }

    fn integrity(&self, op: &'static str, key: &str, message: String) -> Error {
        Error::new(ErrorKind::Integrity, op, key, &self.name, message)
    }

    /// An error of a local vault's file system, by kind.
    fn fs_error(&self, op: &'static str, key: &str, e: FsReadError) -> Error {
        let (kind, message, source) = match e {
            FsReadError::Irregular(what) => (
                ErrorKind::Integrity,
                format!(
                    "not a regular file ({what}): a local vault holds only regular files; the vault is damaged or hostile, remove it"
                ),
                None,
            ),
            FsReadError::Io(e) => (
                match e.kind() {
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => {
                        ErrorKind::NotFound
                    }
                    std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                    _ => ErrorKind::Other,
                },
                e.to_string(),
                Some(e),
            ),
        };
        let err = Error::new(kind, op, key, &self.name, message);
        match source {
            Some(e) => err.with_source(e),
            None => err,
        }
    }

    /// Size of an object in bytes, or `None` if it does not exist.
    pub async fn size_of(&self, key: &str) -> Result<Option<u64>> {
        let r = self.retrying("stat", key, || self.op.stat(key)).await;
        match r {
            Ok(m) => Ok(Some(m.content_length())),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Size and modification time of an object, or `None` if it does not exist (what `gc`
    /// checks right before deleting a chunk).
    pub async fn stat(&self, key: &str) -> Result<Option<ObjectInfo>> {
        match self.retrying("stat", key, || self.op.stat(key)).await {
            Ok(m) => Ok(Some(ObjectInfo {
                key: key.to_string(),
                size: m.content_length(),
                last_modified: m.last_modified().map(std::time::SystemTime::from),
            })),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes an object unconditionally (chunks: content-addressed, so rewriting is harmless).
    /// On a local vault the object appears whole: written to a temporary file beside it, then
    /// renamed over it, so concurrent writers of one chunk (two pushes sharing content) never
    /// see or leave each other's partial bytes. `data` may be in parts ([`opendal::Buffer`]
    /// of several [`Bytes`]): they are sent one after the other, never copied into one.
    pub async fn write(&self, key: &str, data: impl Into<opendal::Buffer>) -> Result<()> {
        let data: opendal::Buffer = data.into();
        if let Some(root) = &self.fs_root {
            return self.write_fs(root.clone(), key, data).await;
        }
        self.retrying("write", key, || {
            let w = self.op.write_with(key, data.clone());
            async move { w.content_type(content_type(key)).await.map(|_| ()) }
        })
        .await
    }

    /// [`Remote::write`] on a local vault: a `.mvault-*.tmp` file in the object's directory
    /// (which listings of chunks skip, its name being no chunk id), written in pieces of at
    /// most [`crate::util::WRITE_PIECE_BYTES`] (large writes cost the page cache several times
    /// more system time), then renamed over `key`.
    async fn write_fs(
        &self,
        root: Arc<std::path::Path>,
        key: &str,
        data: opendal::Buffer,
    ) -> Result<()> {
        use crate::util::WRITE_PIECE_BYTES as PIECE;
        let path = root.join(key);
        let written = tokio::task::spawn_blocking(move || {
            let mut tmp = temp_beside(&path)?;
            for piece in data.flat_map(|part| {
                let n = part.len();
                (0..n)
                    .step_by(PIECE)
                    .map(move |at| part.slice(at..n.min(at + PIECE)))
            }) {
                std::io::Write::write_all(&mut tmp, &piece)?;
            }
            tmp.persist(&path).map(drop).map_err(|e| e.error)
        })
        .await
        .expect("write task panicked");
        written.map_err(|e| {
            let kind = match e.kind() {
                std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                _ => ErrorKind::Other,
            };
            Error::new(kind, "write", key, &self.name, e.to_string()).with_source(e)
        })
    }

    /// Writes `data` at `key` only if nothing is there yet.
    ///
    /// Uses the store's create-only write (`If-None-Match: *` or equivalent) where it has one,
    /// after a cheap existence check unless the remote is [`CreateOnly::Enforced`] (the check
    /// also covers stores that accept but ignore the precondition). If the object exists, it
    /// is read back: identical bytes mean an earlier attempt of ours succeeded
    /// ([`Created::AlreadyIdentical`]); anything else is a [`ErrorKind::Conflict`].
    ///
    /// Refuses (kind [`ErrorKind::Other`]) data longer than [`read_limit`]`(key)`: no reader
    /// would accept it.
    pub async fn create_only(&self, key: &str, data: Bytes) -> Result<Created> {
        let same = data.clone();
        self.create_only_as(key, data, read_limit(key), move |b| b == same)
            .await
    }

    /// [`Remote::create_only`] with a bound and a test of whether an object found at `key`
    /// is what this write would have created (sealed objects differ in their nonce).
    async fn create_only_as(
        &self,
        key: &str,
        data: Bytes,
        limit: u64,
        same: impl Fn(&[u8]) -> bool,
    ) -> Result<Created> {
        if data.len() as u64 > limit {
            return Err(Error::new(
                ErrorKind::Other,
                "create",
                key,
                &self.name,
                format!(
                    "document of {} bytes exceeds the {limit} bytes readers accept; split the model into several versions or models",
                    data.len()
                ),
            ));
        }
        if let Some(root) = &self.fs_root {
            return self
                .create_only_fs(root.clone(), key, (data, limit), same)
                .await;
        }
        if !self.stat_before_create || self.size_of(key).await?.is_none() {
            let r = self
                .retrying("create", key, || async {
                    let w = self.op.write_with(key, data.clone());
                    w.if_not_exists(self.conditional_writes)
                        .content_type(content_type(key))
                        .await
                        .map(|_| ())
                })
                .await;
            match r {
                Ok(()) => return Ok(Created::New),
                Err(e) if e.kind == ErrorKind::Conflict => {}
                Err(e) => return Err(e),
            }
        }
        let existing = self.read_limited(key, limit).await?;
        if same(&existing) {
            Ok(Created::AlreadyIdentical)
        } else {
            Err(self.conflict(key))
        }
    }

    /// Create-only write on a local directory: the bytes go to a temporary file in the same
    /// directory, which is then hard-linked to `key`. `link` fails if `key` exists, so the
    /// create is atomic and readers only ever see whole files (OpenDAL's fs `if_not_exists`
    /// creates the file first and fills it afterwards).
    async fn create_only_fs(
        &self,
        root: Arc<std::path::Path>,
        key: &str,
        (data, limit): (Bytes, u64),
        same: impl Fn(&[u8]) -> bool,
    ) -> Result<Created> {
        let path = root.join(key);
        let bytes = data.clone();
        let linked = tokio::task::spawn_blocking(move || {
            // Linked into place only if nothing is there (create-only).
            let mut tmp = temp_beside(&path)?;
            std::io::Write::write_all(&mut tmp, &bytes)?;
            tmp.persist_noclobber(&path).map(drop).map_err(|e| e.error)
        })
        .await
        .expect("create task panicked");
        match linked {
            Ok(()) => Ok(Created::New),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if same(&self.read_limited(key, limit).await?) {
                    Ok(Created::AlreadyIdentical)
                } else {
                    Err(self.conflict(key))
                }
            }
            Err(e) => Err(
                Error::new(ErrorKind::Other, "create", key, &self.name, e.to_string())
                    .with_source(e),
            ),
        }
    }

    fn conflict(&self, key: &str) -> Error {
        Error::new(
            ErrorKind::Conflict,
            "create",
            key,
            &self.name,
            "already exists with different content",
        )
    }

    /// Deletes an object; deleting a missing object succeeds.
    pub async fn delete(&self, key: &str) -> Result<()> {
        self.retrying("delete", key, || self.op.delete(key)).await
    }

    /// Names of the entries directly under `dir` (which ends with `/`), without the prefix;
    /// sub-directories end with `/`. A missing directory lists as empty.
    pub async fn list_dir(&self, dir: &str) -> Result<Vec<String>> {
        let r = self.retrying("list", dir, || self.op.list(dir)).await;
        let entries = match r {
            Ok(e) => e,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(entries
            .into_iter()
            .filter_map(|e| e.path().strip_prefix(dir).map(str::to_string))
            .filter(|n| !n.is_empty())
            .collect())
    }

    /// Every object under `dir`, recursively: (key, size in bytes).
    pub async fn list_recursive(&self, dir: &str) -> Result<Vec<(String, u64)>> {
        let r = self
            .retrying("list", dir, || async {
                self.op.list_with(dir).recursive(true).await
            })
            .await;
        let entries = match r {
            Ok(e) => e,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(entries
            .into_iter()
            .filter(|e| !e.metadata().is_dir())
            .map(|e| (e.path().to_string(), e.metadata().content_length()))
            .collect())
    }

    /// Every object under `dir`, recursively, with its size and modification time (what `gc`
    /// and `usage` need). Listings of S3, GCS, Azure Blob, OSS and fs carry both; for entries
    /// of unknown kind (the memory store lists bare keys) each object is stat'ed instead, and
    /// one deleted meanwhile is left out.
    pub async fn list_objects(&self, dir: &str) -> Result<Vec<ObjectInfo>> {
        let r = self
            .retrying("list", dir, || async {
                self.op.list_with(dir).recursive(true).await
            })
            .await;
        let entries = match r {
            Ok(e) => e,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::with_capacity(entries.len());
        for (key, meta) in entries.into_iter().map(opendal::Entry::into_parts) {
            let meta = match meta.mode() {
                opendal::EntryMode::DIR => continue,
                opendal::EntryMode::FILE => meta,
                opendal::EntryMode::Unknown => {
                    match self.retrying("stat", &key, || self.op.stat(&key)).await {
                        Ok(m) => m,
                        Err(e) if e.kind == ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    }
                }
            };
            out.push(ObjectInfo {
                key,
                size: meta.content_length(),
                last_modified: meta.last_modified().map(std::time::SystemTime::from),
            });
        }
        Ok(out)
    }

    // --- vault-level helpers -------------------------------------------------------------

    /// Every object under `dir`, recursively, as (key, size), from one listing, if there are
    /// at most `max`; `None` (the listing abandoned) if more. An absent `dir` is empty.
    async fn list_upto(&self, dir: &str, max: usize) -> Result<Option<Vec<(String, u64)>>> {
        use futures::TryStreamExt;
        let r = self
            .retrying("list", dir, || async {
                let mut lister = self.op.lister_with(dir).recursive(true).await?;
                let mut found = Vec::new();
                while let Some(entry) = lister.try_next().await? {
                    if entry.metadata().is_dir() {
                        continue;
                    }
                    if found.len() == max {
                        return Ok(None);
                    }
                    found.push((entry.path().to_string(), entry.metadata().content_length()));
                }
                Ok(Some(found))
            })
            .await;
        match r {
            Err(e) if e.kind == ErrorKind::NotFound => Ok(Some(Vec::new())),
            r => r,
        }
    }

    /// The chunks stored, with their stored sizes, from one recursive listing of `chunks/`,
    /// if there are at most `max` objects there; `None` (the listing abandoned) if more. A
    /// push uses it instead of one stat per chunk when the vault is small beside the push.
    /// Keys that are not chunk names are ignored.
    pub async fn list_chunks_upto(&self, max: usize) -> Result<Option<HashMap<Digest, u64>>> {
        // Listed keys are stored names and sizes: comparable with a push's ids and encodings
        // only in a plaintext vault (an encrypted one is asked chunk by chunk).
        if self.sealing().await? != Sealing::Plain {
            return Ok(None);
        }
        Ok(self.list_upto("chunks/", max).await?.map(|listed| {
            listed
                .into_iter()
                .filter_map(|(key, size)| {
                    let id = key.rsplit('/').next()?.parse::<Digest>().ok()?;
                    (chunk_key(&id) == key).then_some((id, size))
                })
                .collect()
        }))
    }

    /// The packs stored whose index is stored too, with each pack's size in bytes, from one
    /// recursive listing of `packs/`, if it holds at most `max` objects; `None` (the listing
    /// abandoned) if more, or in a vault that is not plaintext (encrypted vaults hold no
    /// packs). Keys that are not pack names are ignored.
    pub async fn list_packs_upto(&self, max: usize) -> Result<Option<HashMap<Digest, u64>>> {
        if self.sealing().await? != Sealing::Plain {
            return Ok(None);
        }
        let Some(listed) = self.list_upto("packs/", max).await? else {
            return Ok(None);
        };
        let (mut sizes, mut indexed) = (HashMap::new(), std::collections::HashSet::new());
        for (key, size) in listed {
            match crate::pack::parse_key(&key) {
                Some((id, false)) => {
                    sizes.insert(id, size);
                }
                Some((id, true)) => {
                    indexed.insert(id);
                }
                None => {}
            }
        }
        sizes.retain(|id, _| indexed.contains(id));
        Ok(Some(sizes))
    }

    /// The chunks in `packs` (pack id → listed size), from a read of each pack's index, at
    /// most `jobs` at once. An index that does not parse, or names bytes past its pack's
    /// listed end, is skipped with a warning: packs are only a way to find chunks, never
    /// trusted (readers check every chunk against its id).
    pub async fn read_pack_indexes(
        &self,
        packs: &HashMap<Digest, u64>,
        jobs: usize,
    ) -> Result<HashMap<Digest, crate::pack::PackRef>> {
        use futures::{StreamExt, TryStreamExt};
        let indexes: Vec<(Digest, Option<crate::pack::Index>)> = futures::stream::iter(
            packs.keys().copied(),
        )
        .map(|id| async move {
            let key = crate::pack::index_key(&id);
            let bytes = match self.read(&key).await {
                Err(e) if e.kind == ErrorKind::NotFound => return Ok((id, None)),
                r => r?,
            };
            match crate::pack::Index::from_json(&bytes) {
                Ok(index) if index.pack_len() <= packs[&id] => Ok((id, Some(index))),
                Ok(_) => {
                    tracing::warn!(
                        "{key} on {}: names bytes past the pack's end; its chunks are not reused",
                        self.name
                    );
                    Ok((id, None))
                }
                Err(e) => {
                    tracing::warn!("{key} on {}: {e}; its chunks are not reused", self.name);
                    Ok((id, None))
                }
            }
        })
        .buffer_unordered(jobs.max(1))
        .try_collect()
        .await?;
        let mut found = HashMap::new();
        for (id, index) in indexes {
            for e in index.into_iter().flat_map(|i| i.chunks) {
                let r = crate::pack::PackRef {
                    id,
                    offset: e.offset,
                    len: e.len,
                };
                found.entry(e.id).or_insert(r);
            }
        }
        Ok(found)
    }

    /// Model names in the vault, sorted.
    pub async fn list_models(&self) -> Result<Vec<ModelName>> {
        let mut names: Vec<ModelName> = self
            .list_dir("models/")
            .await?
            .into_iter()
            .filter_map(|n| n.strip_suffix('/').and_then(|n| n.parse().ok()))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Versions of a model, ascending by semver.
    pub async fn list_versions(&self, name: &ModelName) -> Result<Vec<Version>> {
        let dir = format!("models/{name}/versions/");
        let mut vs: Vec<Version> = self
            .list_dir(&dir)
            .await?
            .into_iter()
            .filter_map(|n| n.strip_suffix(".json").and_then(|v| v.parse().ok()))
            .collect();
        vs.sort();
        Ok(vs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_reasons_read_as_sentences() {
        let e = |m: &str| opendal::Error::new(opendal::ErrorKind::Unexpected, m);
        let s3 =
            r#"S3Error { code: "InternalError", message: "boom", resource: "", request_id: "" }"#;
        assert_eq!(store_reason(&e(s3)), "InternalError: boom");
        assert_eq!(
            store_reason(&e(
                r#"S3Error { code: "SlowDown", message: "", resource: "" }"#
            )),
            "SlowDown"
        );
        let head = e("").with_context("response", "Parts { status: 500, version: HTTP/1.1 }");
        assert_eq!(store_reason(&head), "HTTP 500 with no error message");
        assert_eq!(store_reason(&e("plain text\nmore")), "plain text");
    }
}
