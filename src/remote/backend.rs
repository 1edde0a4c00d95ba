//! Remote specs (`s3://bucket/prefix?endpoint=...`, config providers) and the OpenDAL
//! operator each one builds. Adding a cloud means one [`Backend`] variant, one arm in
//! [`RemoteSpec::parse_url`] and one builder function below.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use opendal::layers::TimeoutLayer;
use opendal::services;
use opendal::{HttpTransporter, OperationContext, Operator};

/// The kinds of store mvault can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Fs,
    S3,
    Gcs,
    Azblob,
    Oss,
}

impl Backend {
    /// URL scheme (`s3`, `gs`, ...).
    pub fn scheme(self) -> &'static str {
        match self {
            Backend::Fs => "file",
            Backend::S3 => "s3",
            Backend::Gcs => "gs",
            Backend::Azblob => "az",
            Backend::Oss => "oss",
        }
    }

    /// The config-file `type` (`fs`, `s3`, `gcs`, `azblob`, `oss`).
    pub fn type_name(self) -> &'static str {
        match self {
            Backend::Fs => "fs",
            Backend::S3 => "s3",
            Backend::Gcs => "gcs",
            Backend::Azblob => "azblob",
            Backend::Oss => "oss",
        }
    }

    /// Parses a config-file `type` (`s3 | gcs | azblob | oss | fs`, plus common synonyms).
    pub fn from_type(t: &str) -> Option<Backend> {
        Some(match t {
            "fs" | "file" | "local" => Backend::Fs,
            "s3" | "aws_s3" | "minio" => Backend::S3,
            "gcs" | "gs" | "google_cloud" => Backend::Gcs,
            "azblob" | "az" | "azure" | "azure_blob" => Backend::Azblob,
            "oss" | "aliyun_oss" => Backend::Oss,
            _ => return None,
        })
    }
}

/// How a create-only write (manifests, alias revisions, signatures, gc records) makes sure it
/// creates: the `create_only` option, else a default per store ([`RemoteSpec::create_only`];
/// docs/FORMAT.md, "Backend notes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOnly {
    /// Stat the key first and write (with the precondition) only if it is absent: also holds
    /// on a store that accepts the precondition and ignores it, except for a true race.
    Checked,
    /// The store honours the precondition: the conditional write alone decides, one round
    /// trip less per create.
    Enforced,
}

impl CreateOnly {
    /// The default for `backend` reached at `endpoint` (`None`: the provider's own; for GCS
    /// the emulator host counts as an endpoint): see [`RemoteSpec::create_only`]. Only hosts
    /// of the provider's storage service count as its own (an S3-compatible server on EC2
    /// or behind an AWS load balancer is under `amazonaws.com` too); an endpoint that does
    /// not parse as a URL is not.
    fn default_for(backend: Backend, endpoint: Option<&str>) -> CreateOnly {
        let host = endpoint.map(|e| {
            url::Url::parse(e)
                .ok()
                .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
                .unwrap_or_default()
        });
        let under = |host: &str, domains: &[&str]| {
            domains
                .iter()
                .any(|d| host.strip_suffix(d).is_some_and(|rest| rest.ends_with('.')))
        };
        let own = match (backend, host.as_deref()) {
            (Backend::Oss | Backend::Fs, _) => false,
            (_, None) => true,
            // `s3.eu-west-1...`, `bucket.s3...`, `s3-fips...`, `s3-accesspoint...`,
            // `s3express-...`, `...vpce-....s3.<region>.vpce...`: a label naming S3.
            (Backend::S3, Some(h)) => {
                let s3 = |l: &str| l == "s3" || l.starts_with("s3-") || l.starts_with("s3express-");
                under(h, &["amazonaws.com", "amazonaws.com.cn"]) && h.split('.').any(s3)
            }
            (Backend::Gcs, Some(h)) => h == "storage.googleapis.com",
            (Backend::Azblob, Some(h)) => under(
                h,
                &[
                    "blob.core.windows.net",
                    "blob.core.chinacloudapi.cn",
                    "blob.core.usgovcloudapi.net",
                ],
            ),
        };
        if own {
            CreateOnly::Enforced
        } else {
            CreateOnly::Checked
        }
    }
}

use super::options::{CUSTOMER_KEY_BYTES, OptionError, check_option, parse_customer_key};
pub use super::options::{OPTION_KEYS, SECRET_KEYS};
use super::transport::{AzEncryptionScope, GcsKmsKey, S3BucketKey, S3Credentials};

/// Environment variable holding a customer-provided key (base64 of 32 bytes) for remotes
/// with `sse=customer` and neither `sse_customer_key` nor `sse_customer_key_file`.
pub const SSE_CUSTOMER_KEY_ENV: &str = "MVAULT_SSE_CUSTOMER_KEY";

/// The server-side encryption a remote asks for, resolved from its `sse*` options
/// ([`RemoteSpec::sse`]). Which variant each backend can carry out is decided in
/// [`RemoteSpec::operator`]; see `docs/FORMAT.md`, "Backend notes", for the headers sent.
#[derive(Clone, PartialEq, Eq)]
pub enum Sse {
    /// Nothing asked: the bucket's own default applies.
    None,
    /// Store-managed keys (`sse=aes256`).
    Aes256,
    /// A KMS key (`sse=kms`, or `sse_kms_key_id` alone): `key_id`, else the store's default
    /// KMS key.
    Kms { key_id: Option<String> },
    /// OSS's SM4 (`sse=sm4`).
    Sm4,
    /// A 256-bit AES key sent with every request that touches object data (`sse=customer`,
    /// or a customer key given alone). Never displayed.
    Customer { key: [u8; CUSTOMER_KEY_BYTES] },
}

impl fmt::Debug for Sse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sse::None => f.write_str("None"),
            Sse::Aes256 => f.write_str("Aes256"),
            Sse::Kms { key_id } => f.debug_struct("Kms").field("key_id", key_id).finish(),
            Sse::Sm4 => f.write_str("Sm4"),
            Sse::Customer { .. } => f.write_str("Customer { key: *** }"),
        }
    }
}

/// Default `timeout`: seconds a request without a body (stat, list, delete) may take.
pub const DEFAULT_TIMEOUT_SECS: u64 = 120;
/// Default `stall_timeout`: seconds a transfer may go without any progress (no response
/// headers, no piece of the body) before it is cancelled and retried.
pub const DEFAULT_STALL_SECS: u64 = 30;

/// Why a remote spec could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("unsupported remote {0:?}: use s3://, gs://, az://, oss://, file:// or a local path")]
    Scheme(String),
    #[error("remote {0:?} has no bucket or container name")]
    NoBucket(String),
    #[error("remote {url:?}: unknown option {key:?} (known: {known})", known = OPTION_KEYS.join(", "))]
    UnknownOption { url: String, key: String },
    #[error("remote {url}: {message}")]
    Invalid { url: String, message: String },
}

/// A parsed remote: which backend, which bucket and prefix, and options.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteSpec {
    pub backend: Backend,
    /// Bucket or container; for `fs`, the absolute root directory.
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// Keys from [`OPTION_KEYS`].
    pub options: BTreeMap<String, String>,
    /// Provider name from the config file, if the spec came from there.
    pub label: Option<String>,
}

impl fmt::Debug for RemoteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_name())
    }
}

impl RemoteSpec {
    /// A local directory vault.
    pub fn local(dir: &Path) -> RemoteSpec {
        RemoteSpec {
            backend: Backend::Fs,
            bucket: dir.to_string_lossy().into_owned(),
            prefix: String::new(),
            options: BTreeMap::new(),
            label: None,
        }
    }

    /// Parses `s3://bucket/prefix?endpoint=..&region=..`, `gs://`, `az://`, `oss://`,
    /// `file:///abs/path` or a plain path (relative paths are made absolute). Schemes are
    /// case-insensitive. Refused, so that a typo never becomes a local vault named after a URL
    /// and never shows a secret: a plain path that looks like a URL (`s3:/b/p`) or carries a
    /// `?` query, and user-info in the URL or its `endpoint`. Errors show the URL redacted
    /// ([`redact_url`]).
    pub fn parse_url(s: &str) -> Result<RemoteSpec, SpecError> {
        let Some((scheme, rest)) = s.split_once("://") else {
            return RemoteSpec::parse_path(s);
        };
        let backend = match scheme.to_ascii_lowercase().as_str() {
            "file" => Backend::Fs,
            "s3" | "s3a" => Backend::S3,
            "gs" | "gcs" => Backend::Gcs,
            "az" | "azblob" => Backend::Azblob,
            "oss" => Backend::Oss,
            _ => return Err(SpecError::Scheme(redact_url(s))),
        };
        let invalid = |message: &str| SpecError::Invalid {
            url: redact_url(s),
            message: message.into(),
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut options = BTreeMap::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (decode(k), decode(v));
            if k == "sse_customer_key" {
                return Err(invalid(&format!(
                    "sse_customer_key is not accepted in a URL (it would show in process lists \
                     and shell history); use sse_customer_key_file=PATH, {SSE_CUSTOMER_KEY_ENV} \
                     or the config file"
                )));
            }
            let v = match check_option(&k, &v) {
                Ok(v) => v,
                Err(OptionError::Unknown) => {
                    return Err(SpecError::UnknownOption {
                        url: redact_url(s),
                        key: k,
                    });
                }
                // Only secret values are hidden; the others help find the mistake.
                Err(e) if SECRET_KEYS.contains(&k.as_str()) => {
                    return Err(invalid(&format!("{k}: {}", e.message("the value"))));
                }
                Err(e) => return Err(invalid(&format!("{k}: {}", e.message(&format!("{v:?}"))))),
            };
            options.insert(k, v);
        }
        if backend == Backend::Fs {
            if !path.starts_with('/') {
                return Err(invalid(
                    "file:// URLs need an absolute path (file:///abs/path)",
                ));
            }
            let mut spec = RemoteSpec::local(Path::new(path));
            spec.options = options;
            return Ok(spec);
        }
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.contains('@') {
            return Err(invalid(CREDENTIALS_IN_URL));
        }
        if bucket.is_empty() {
            return Err(SpecError::NoBucket(redact_url(s)));
        }
        Ok(RemoteSpec {
            backend,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            options,
            label: None,
        })
    }

    /// A plain local path (no `://`), made absolute. Refuses `word:...` (a URL missing its
    /// `//`) and `?`, which a local directory name would only carry by a typo.
    fn parse_path(s: &str) -> Result<RemoteSpec, SpecError> {
        let invalid = |message: &str| SpecError::Invalid {
            url: redact_url(s),
            message: message.into(),
        };
        if let Some((word, _)) = s.split_once(':')
            && is_scheme(word)
        {
            return Err(invalid(&format!(
                "looks like a URL but is not one (write {word}://...); for a local directory of that name, write ./{word}:..."
            )));
        }
        if s.contains('?') {
            return Err(invalid(
                "a local path cannot carry options; give them in a file:///abs/path URL's query",
            ));
        }
        let abs = std::path::absolute(Path::new(s)).map_err(|e| invalid(&e.to_string()))?;
        Ok(RemoteSpec::local(&abs))
    }

    /// The spec without secrets: the provider name if any, else the URL without its query.
    pub fn display_name(&self) -> String {
        if let Some(l) = &self.label {
            return l.clone();
        }
        self.url()
    }

    /// `scheme://bucket/prefix` (no options, so no secrets).
    pub fn url(&self) -> String {
        match self.backend {
            Backend::Fs => format!("file://{}", self.bucket),
            b if self.prefix.is_empty() => format!("{}://{}", b.scheme(), self.bucket),
            b => format!("{}://{}/{}", b.scheme(), self.bucket, self.prefix),
        }
    }

    /// How this remote's create-only writes check: the `create_only` option if given, else
    /// [`CreateOnly::Enforced`] where the store is the provider's own service, which honours
    /// the precondition (AWS S3 with no endpoint or an S3 host under `amazonaws.com`, Google
    /// Cloud Storage with no endpoint or emulator, or `storage.googleapis.com`, Azure Blob
    /// under `blob.core.windows.net` and the sovereign clouds' domains), and
    /// [`CreateOnly::Checked`] elsewhere: other endpoints (compatible servers and emulators
    /// that may ignore it; Azurite honours it but is checked too), OSS (whose precondition has
    /// no effect on versioned buckets) and local vaults (which create with `link(2)`, never
    /// stat, and ignore the option). The endpoint is found as the operator finds it: the
    /// `endpoint` option, else (S3) `AWS_ENDPOINT_URL`, `AWS_ENDPOINT` or `AWS_S3_ENDPOINT`,
    /// (GCS) `STORAGE_EMULATOR_HOST`, (Azure) the connection string's.
    pub fn create_only(&self) -> CreateOnly {
        self.create_only_in(&|k| std::env::var(k).ok())
    }

    /// [`RemoteSpec::create_only`] with the environment read through `env`.
    fn create_only_in(&self, env: &dyn Fn(&str) -> Option<String>) -> CreateOnly {
        match self.opt("create_only") {
            Some("enforced") => return CreateOnly::Enforced,
            // Values are checked when a spec is parsed; one set by hand otherwise gets the
            // safe choice.
            Some(_) => return CreateOnly::Checked,
            None => {}
        }
        let set = |k: &str| env(k).filter(|v| !v.is_empty());
        let endpoint = self.opt("endpoint").map(str::to_string).or_else(|| {
            match self.backend {
                // OpenDAL's S3 service reads these, in this order, when no endpoint is set.
                Backend::S3 => env("AWS_ENDPOINT_URL")
                    .or_else(|| env("AWS_ENDPOINT"))
                    .or_else(|| env("AWS_S3_ENDPOINT")),
                Backend::Gcs => set("STORAGE_EMULATOR_HOST"),
                Backend::Azblob => self.azure_endpoint(&set),
                Backend::Oss | Backend::Fs => None,
            }
        });
        CreateOnly::default_for(self.backend, endpoint.as_deref())
    }

    /// The Blob endpoint an Azure remote without an `endpoint` option reaches, as
    /// `azblob_operator` builds it: the connection string's (option or
    /// `AZURE_STORAGE_CONNECTION_STRING`: `BlobEndpoint`, else the account under
    /// `EndpointSuffix`, `core.windows.net` by default, or the local emulator's for
    /// `UseDevelopmentStorage=true`; `""`, which is no one's, if it names none of these),
    /// else the named account's.
    fn azure_endpoint(&self, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        let conn = self
            .opt("connection_string")
            .map(str::to_string)
            .or_else(|| env("AZURE_STORAGE_CONNECTION_STRING"));
        let account =
            |named: Option<&str>, suffix: &str| named.map(|a| format!("https://{a}.blob.{suffix}"));
        let Some(conn) = conn else {
            let named = self
                .opt("account_name")
                .map(str::to_string)
                .or_else(|| env("AZURE_STORAGE_ACCOUNT"))
                .or_else(|| env("AZURE_STORAGE_ACCOUNT_NAME"));
            return account(named.as_deref(), "core.windows.net");
        };
        let pairs: std::collections::HashMap<&str, &str> = conn
            .split(';')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        if let Some(e) = pairs.get("BlobEndpoint") {
            return Some(e.to_string());
        }
        if pairs.get("UseDevelopmentStorage") == Some(&"true") {
            return Some("http://127.0.0.1:10000/devstoreaccount1".into());
        }
        let suffix = pairs.get("EndpointSuffix").unwrap_or(&"core.windows.net");
        Some(account(pairs.get("AccountName").copied(), suffix).unwrap_or_default())
    }

    fn opt(&self, key: &str) -> Option<&str> {
        self.options
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Values of secret options, for output scrubbing.
    /// Includes the customer-provided key however it is given (option, key file, or
    /// [`SSE_CUSTOMER_KEY_ENV`]), in the base64 form it takes in request headers.
    pub fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = SECRET_KEYS
            .iter()
            .filter_map(|k| self.opt(k).map(str::to_string))
            .collect();
        if let Ok(Sse::Customer { key }) = self.sse() {
            use base64::Engine;
            out.push(base64::engine::general_purpose::STANDARD.encode(key));
        }
        out
    }

    /// The options for display: secrets and the access key id become `****` plus their last
    /// two characters, or `***` when shorter than 12 characters; other values are shown as
    /// [`redact_url`] shows URLs. (`mvault remotes` lists config providers this way.)
    pub fn masked_options(&self) -> BTreeMap<String, String> {
        let mut options = self.options.clone();
        for (k, v) in &mut options {
            let tail = v.char_indices().nth_back(1).map_or(0, |(i, _)| i);
            *v = match SECRET_KEYS.contains(&k.as_str()) || k == "access_key" {
                true if v.chars().count() < 12 => "***".to_string(),
                true => format!("****{}", &v[tail..]),
                false => redact_url(v),
            };
        }
        options
    }

    /// The server-side encryption the spec's `sse`, `sse_kms_key_id`, `sse_customer_key` and
    /// `sse_customer_key_file` options ask for (the key file is read here). Refused: a KMS key
    /// id beside another mode, a customer key beside another mode, both a customer key and a
    /// key file, `sse=customer` with no key anywhere, a key file that cannot be read or does
    /// not hold a key. Messages never show key material.
    pub fn sse(&self) -> Result<Sse, SpecError> {
        let mode = self.opt("sse");
        let key_id = self.opt("sse_kms_key_id");
        let (inline, file) = (
            self.opt("sse_customer_key"),
            self.opt("sse_customer_key_file"),
        );
        if key_id.is_some() && !matches!(mode, None | Some("kms")) {
            return Err(self.invalid("sse_kms_key_id needs sse=kms (or no sse option)"));
        }
        let customer = inline.is_some() || file.is_some();
        if customer && !matches!(mode, None | Some("customer")) {
            return Err(self.invalid(
                "sse_customer_key/sse_customer_key_file need sse=customer (or no sse option)",
            ));
        }
        if inline.is_some() && file.is_some() {
            return Err(self.invalid("give only one of sse_customer_key and sse_customer_key_file"));
        }
        Ok(match mode {
            Some("aes256") => Sse::Aes256,
            Some("sm4") => Sse::Sm4,
            Some("kms") => Sse::Kms {
                key_id: key_id.map(str::to_string),
            },
            None if key_id.is_some() => Sse::Kms {
                key_id: key_id.map(str::to_string),
            },
            Some("customer") => Sse::Customer {
                key: self.customer_key(inline, file)?,
            },
            None if customer => Sse::Customer {
                key: self.customer_key(inline, file)?,
            },
            _ => Sse::None,
        })
    }

    /// The customer-provided key: the option's value, else the key file's, else
    /// [`SSE_CUSTOMER_KEY_ENV`].
    fn customer_key(
        &self,
        inline: Option<&str>,
        file: Option<&str>,
    ) -> Result<[u8; CUSTOMER_KEY_BYTES], SpecError> {
        let not_a_key = |from: &str| {
            self.invalid(format!(
                "{from} does not hold a 256-bit key (32 raw bytes, or their base64 form: \
                 `openssl rand -base64 32`)"
            ))
        };
        if let Some(v) = inline {
            return parse_customer_key(v.as_bytes()).ok_or_else(|| not_a_key("sse_customer_key"));
        }
        if let Some(path) = file {
            // Bounded: a key file is 32 or 44 bytes (plus whitespace); never read a huge file.
            let mut stored = Vec::new();
            std::fs::File::open(path)
                .and_then(|f| {
                    std::io::Read::read_to_end(&mut std::io::Read::take(f, 4096), &mut stored)
                })
                .map_err(|e| self.invalid(format!("sse_customer_key_file {path}: {e}")))?;
            return parse_customer_key(&stored)
                .ok_or_else(|| not_a_key(&format!("sse_customer_key_file {path}")));
        }
        match std::env::var(SSE_CUSTOMER_KEY_ENV)
            .ok()
            .filter(|v| !v.is_empty())
        {
            Some(v) => {
                parse_customer_key(v.as_bytes()).ok_or_else(|| not_a_key(SSE_CUSTOMER_KEY_ENV))
            }
            None => Err(self.invalid(format!(
                "sse=customer needs a key: sse_customer_key_file=PATH, the config key \
                 sse_customer_key, or {SSE_CUSTOMER_KEY_ENV} (base64 of 32 bytes)"
            ))),
        }
    }

    /// Refuses an [`Sse`] this spec's backend cannot carry out, saying what it can do.
    fn unsupported_sse(&self, sse: &Sse) -> SpecError {
        let what = match sse {
            Sse::None => "none",
            Sse::Aes256 => "sse=aes256",
            Sse::Kms { key_id: None } => "sse=kms without sse_kms_key_id",
            Sse::Kms { .. } => "sse_kms_key_id",
            Sse::Sm4 => "sse=sm4",
            Sse::Customer { .. } => "a customer-provided key",
        };
        let can = match self.backend {
            Backend::Fs => "a local vault has no server-side encryption (remove the sse options)",
            Backend::S3 => {
                "S3 takes sse=aes256, sse=kms [sse_kms_key_id, sse_bucket_key], sse=customer"
            }
            Backend::Gcs => {
                "GCS encrypts with Google-managed keys by default and takes \
                 sse_kms_key_id=projects/P/locations/L/keyRings/R/cryptoKeys/K"
            }
            Backend::Azblob => {
                "Azure Blob encrypts with Microsoft-managed keys by default and takes \
                 sse=customer, or encryption_scope=NAME for a scope's (customer-managed) key"
            }
            Backend::Oss => "OSS takes sse=aes256, sse=kms [sse_kms_key_id], sse=sm4",
        };
        self.invalid(format!("{what} is not available here: {can}"))
    }

    fn invalid(&self, message: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            url: self.display_name(),
            message: message.into(),
        }
    }

    /// Root inside the bucket, as OpenDAL wants it (`/prefix/`).
    fn root(&self) -> String {
        if self.prefix.is_empty() {
            "/".into()
        } else {
            format!("/{}/", self.prefix)
        }
    }

    /// Builds the OpenDAL operator for this spec, with timeouts. Reads each cloud's standard
    /// environment variables for whatever the spec leaves unset.
    pub fn operator(&self) -> Result<Operator, SpecError> {
        if self.backend != Backend::S3 && self.opt("sse_bucket_key").is_some() {
            return Err(self.invalid("sse_bucket_key applies to s3:// remotes only"));
        }
        if self.backend != Backend::Azblob && self.opt("encryption_scope").is_some() {
            return Err(self.invalid("encryption_scope applies to az:// remotes only"));
        }
        let op = match self.backend {
            Backend::Fs => self.fs_operator(),
            Backend::S3 => self.s3_operator(),
            Backend::Gcs => self.gcs_operator(),
            Backend::Azblob => self.azblob_operator(),
            Backend::Oss => self.oss_operator(),
        }?;
        let secs = |key: &str, default: u64| match self.opt(key) {
            Some(t) => t
                .parse()
                .map(std::time::Duration::from_secs)
                .map_err(|_| self.invalid(format!("{key} {t:?} is not a number of seconds"))),
            None => Ok(std::time::Duration::from_secs(default)),
        };
        // `timeout` bounds a whole request without a body (stat, list, delete); a request
        // moving a body is bounded by `stall_timeout` for each step (opening it, every piece of
        // it), however long the whole transfer takes: a stalled transfer is cancelled and
        // retried, a slow one is not.
        Ok(op.layer(
            TimeoutLayer::new()
                .with_timeout(secs("timeout", DEFAULT_TIMEOUT_SECS)?)
                .with_io_timeout(secs("stall_timeout", DEFAULT_STALL_SECS)?),
        ))
    }

    fn finish<B: opendal::Builder>(&self, b: B) -> Result<Operator, SpecError> {
        // Installs the HTTP transport once per process (idempotent); needed because mvault
        // builds OpenDAL without its auto-registration feature.
        opendal::install_default();
        Operator::new(b).map_err(|e| self.invalid(e.message().to_string()))
    }

    fn fs_operator(&self) -> Result<Operator, SpecError> {
        match self.sse()? {
            Sse::None => {}
            sse => return Err(self.unsupported_sse(&sse)),
        }
        std::fs::create_dir_all(&self.bucket)
            .map_err(|e| self.invalid(format!("cannot create vault directory: {e}")))?;
        self.finish(services::Fs::default().root(&self.bucket))
    }

    fn s3_operator(&self) -> Result<Operator, SpecError> {
        let mut b = services::S3::default()
            .bucket(&self.bucket)
            .root(&self.root());
        if let Some(e) = self.opt("endpoint") {
            b = b.endpoint(e);
        }
        let region = self
            .opt("region")
            .map(str::to_string)
            .or_else(|| env_any(&["AWS_REGION", "AWS_DEFAULT_REGION"]))
            .unwrap_or_else(|| "us-east-1".into());
        b = b.region(&region);
        if let Some(v) = self.opt("access_key") {
            b = b.access_key_id(v);
        }
        if let Some(v) = self.opt("secret_key") {
            b = b.secret_access_key(v);
        }
        if let Some(v) = self.opt("session_token") {
            b = b.session_token(v);
        }
        if let Some(v) = self.opt("profile") {
            b = b.profile(v);
        }
        if self.opt("virtual_host_style") == Some("true") {
            b = b.enable_virtual_host_style();
        }
        if self.opt("anonymous") == Some("true") {
            b = b.skip_signature();
        }
        let sse = self.sse()?;
        b = match &sse {
            Sse::None => b,
            Sse::Aes256 => b.server_side_encryption_with_s3_key(),
            Sse::Kms { key_id: None } => b.server_side_encryption_with_aws_managed_kms_key(),
            Sse::Kms { key_id: Some(id) } => {
                b.server_side_encryption_with_customer_managed_kms_key(id)
            }
            Sse::Customer { key } => b.server_side_encryption_with_customer_key("AES256", key),
            Sse::Sm4 => return Err(self.unsupported_sse(&sse)),
        };
        let op = self.finish(b)?;
        let Some(bucket_key) = self.opt("sse_bucket_key") else {
            return Ok(op);
        };
        if !matches!(sse, Sse::Kms { .. }) {
            return Err(self.invalid("sse_bucket_key needs sse=kms or sse_kms_key_id"));
        }
        let credentials = (self.opt("anonymous") != Some("true")).then(|| S3Credentials {
            access_key: self.opt("access_key"),
            secret_key: self.opt("secret_key"),
            session_token: self.opt("session_token"),
            profile: self.opt("profile"),
        });
        let wrapper = S3BucketKey::new(bucket_key == "true", &region, credentials);
        let ctx = OperationContext::new().with_http_transport(HttpTransporter::new(wrapper));
        Ok(op.with_context(ctx))
    }

    fn gcs_operator(&self) -> Result<Operator, SpecError> {
        let mut b = services::Gcs::default()
            .bucket(&self.bucket)
            .root(&self.root());
        let emulator = std::env::var("STORAGE_EMULATOR_HOST")
            .ok()
            .filter(|v| !v.is_empty());
        match (self.opt("endpoint"), &emulator) {
            (Some(e), _) => b = b.endpoint(e),
            (None, Some(host)) => {
                let url = if host.contains("://") {
                    host.clone()
                } else {
                    format!("http://{host}")
                };
                // Emulators take no credentials, like Google's own client libraries assume.
                b = b.endpoint(&url).skip_signature().disable_vm_metadata();
            }
            (None, None) => {}
        }
        if self.opt("anonymous") == Some("true") {
            b = b.skip_signature();
        }
        if let Some(v) = self.opt("credential") {
            b = b.credential(v);
        }
        if let Some(v) = self.opt("credential_path") {
            b = b.credential_path(v);
        }
        // A key file that cannot be read is named here: OpenDAL's signer only says that it
        // found no credential, and the remedy it leads to is the setting already made.
        let key_file = match self.opt("credential_path") {
            Some(v) => Some((v.to_string(), "the credential_path option")),
            None if self.opt("credential").is_none()
                && emulator.is_none()
                && self.opt("anonymous") != Some("true") =>
            {
                env_any(&["GOOGLE_APPLICATION_CREDENTIALS"])
                    .map(|v| (v, "GOOGLE_APPLICATION_CREDENTIALS"))
            }
            None => None,
        };
        if let Some((path, from)) = key_file
            && let Err(e) = std::fs::File::open(&path)
        {
            return Err(self.invalid(format!(
                "the GCS key file {path} ({from}) cannot be read: {e}"
            )));
        }
        let op = self.finish(b)?;
        match self.sse()? {
            Sse::None => Ok(op),
            Sse::Kms { key_id: Some(name) } => {
                let transport = HttpTransporter::new(GcsKmsKey::new(&name));
                Ok(op.with_context(OperationContext::new().with_http_transport(transport)))
            }
            sse => Err(self.unsupported_sse(&sse)),
        }
    }

    fn azblob_operator(&self) -> Result<Operator, SpecError> {
        let conn = self
            .opt("connection_string")
            .map(str::to_string)
            .or_else(|| env_any(&["AZURE_STORAGE_CONNECTION_STRING"]));
        let mut b = match &conn {
            Some(c) => services::Azblob::from_connection_string(c).map_err(|_| {
                self.invalid("the Azure connection string is malformed (value not shown)")
            })?,
            None => services::Azblob::default(),
        };
        b = b.container(&self.bucket).root(&self.root());
        let account = self
            .opt("account_name")
            .map(str::to_string)
            .or_else(|| env_any(&["AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_ACCOUNT_NAME"]));
        if let Some(a) = &account {
            b = b.account_name(a);
        }
        if let Some(e) = self.opt("endpoint") {
            b = b.endpoint(e);
        } else if let Some(a) = &account
            && self.opt("connection_string").is_none()
            && std::env::var("AZURE_STORAGE_CONNECTION_STRING").is_err()
        {
            b = b.endpoint(&format!("https://{a}.blob.core.windows.net"));
        }
        let key = self
            .opt("account_key")
            .map(str::to_string)
            .or_else(|| env_any(&["AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT_KEY"]));
        if let Some(k) = &key {
            b = b.account_key(k);
        }
        let key_for_scope = key;
        let sas = self
            .opt("sas_token")
            .map(str::to_string)
            .or_else(|| env_any(&["AZURE_STORAGE_SAS_TOKEN"]));
        if let Some(s) = sas {
            b = b.sas_token(&s);
        }
        let sse = self.sse()?;
        b = match &sse {
            Sse::None => b,
            Sse::Customer { key } => b.server_side_encryption_with_customer_key(key),
            sse => return Err(self.unsupported_sse(sse)),
        };
        let op = self.finish(b)?;
        let Some(scope) = self.opt("encryption_scope") else {
            return Ok(op);
        };
        if sse != Sse::None {
            return Err(self.invalid(
                "give either encryption_scope or a customer-provided key (Azure takes one)",
            ));
        }
        // The account key OpenDAL signs with: the option, else the connection string's,
        // else the environment's (as above).
        let conn_key = conn.as_deref().and_then(|c| {
            c.split(';')
                .find_map(|p| p.strip_prefix("AccountKey="))
                .map(str::to_string)
        });
        let conn_name = conn.as_deref().and_then(|c| {
            c.split(';')
                .find_map(|p| p.strip_prefix("AccountName="))
                .map(str::to_string)
        });
        let name = account.or(conn_name);
        let key = key_for_scope.or(conn_key);
        let shared_key = name.as_deref().zip(key.as_deref());
        let wrapper = AzEncryptionScope::new(scope, shared_key)
            .ok_or_else(|| self.invalid("encryption_scope is not a valid scope name"))?;
        let ctx = OperationContext::new().with_http_transport(HttpTransporter::new(wrapper));
        Ok(op.with_context(ctx))
    }

    fn oss_operator(&self) -> Result<Operator, SpecError> {
        let mut b = services::Oss::default()
            .bucket(&self.bucket)
            .root(&self.root());
        let endpoint = self
            .opt("endpoint")
            .map(str::to_string)
            .or_else(|| env_any(&["ALIYUN_OSS_ENDPOINT", "OSS_ENDPOINT"]))
            .or_else(|| {
                let region = self
                    .opt("region")
                    .map(str::to_string)
                    .or_else(|| env_any(&["ALIYUN_OSS_REGION", "ALIBABA_CLOUD_REGION_ID"]))?;
                let region = region.strip_prefix("oss-").unwrap_or(&region).to_string();
                Some(format!("https://oss-{region}.aliyuncs.com"))
            })
            .ok_or_else(|| {
                self.invalid(
                    "OSS needs an endpoint or region: add ?region=cn-hangzhou, ?endpoint=URL or set ALIYUN_OSS_ENDPOINT",
                )
            })?;
        b = b.endpoint(&endpoint);
        let key_id = self.opt("access_key").map(str::to_string).or_else(|| {
            env_any(&[
                "ALIYUN_ACCESS_KEY_ID",
                "ALIBABA_CLOUD_ACCESS_KEY_ID",
                "OSS_ACCESS_KEY_ID",
            ])
        });
        let secret = self.opt("secret_key").map(str::to_string).or_else(|| {
            env_any(&[
                "ALIYUN_ACCESS_KEY_SECRET",
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                "OSS_ACCESS_KEY_SECRET",
            ])
        });
        if let Some(v) = key_id {
            b = b.access_key_id(&v);
        }
        if let Some(v) = secret {
            b = b.access_key_secret(&v);
        }
        let token = self
            .opt("session_token")
            .map(str::to_string)
            .or_else(|| env_any(&["ALIYUN_SECURITY_TOKEN", "ALIBABA_CLOUD_SECURITY_TOKEN"]));
        if let Some(v) = token {
            b = b.security_token(&v);
        }
        b = match self.sse()? {
            Sse::None => b,
            Sse::Aes256 => b.server_side_encryption("AES256"),
            Sse::Sm4 => b.server_side_encryption("SM4"),
            Sse::Kms { key_id } => {
                b = b.server_side_encryption("KMS");
                match key_id {
                    Some(id) => b.server_side_encryption_key_id(&id),
                    None => b,
                }
            }
            sse @ Sse::Customer { .. } => return Err(self.unsupported_sse(&sse)),
        };
        self.finish(b)
    }
}

/// The first of `names` that is set and non-empty.
fn env_any(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

/// Percent-decodes a query key or value. A `+` stays a `+` (it is not the space of HTML
/// forms): base64 secrets and keys carry `+`, and turning it into a space made a valid key
/// read as malformed.
fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Why credentials are refused in a remote URL.
const CREDENTIALS_IN_URL: &str = "credentials in the URL are not accepted (they would show in logs and process lists); put them in the environment (e.g. AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or the config file's access_key/secret_key";

/// True for a URL scheme: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(word: &str) -> bool {
    let mut chars = word.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Refuses an endpoint URL with user-info (`http://user:pw@host`): credentials go elsewhere.
/// The error message never contains the endpoint.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let authority = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    let authority = authority.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        Err(CREDENTIALS_IN_URL.to_string())
    } else {
        Ok(())
    }
}

/// A URL query (without its `?`) with every non-empty value replaced by `***`.
pub fn redact_query(query: &str) -> String {
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !v.is_empty() => format!("{k}=***"),
            _ => pair.to_string(),
        })
        .collect();
    pairs.join("&")
}

/// `url` with its user-info (`scheme://user:pw@host`) and every query value replaced by
/// `***`: the one form in which mvault shows a URL that may carry secrets (errors, logs,
/// listings). Keys stay visible so that a message can still name the option.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '#']).unwrap_or(rest.len());
            match rest[..end].rfind('@') {
                Some(at) => format!("{scheme}://***{}", &rest[at..]),
                None => base.to_string(),
            }
        }
        None => base.to_string(),
    };
    if let Some(q) = query {
        out.push('?');
        out.push_str(&redact_query(q));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_option_values_keep_their_plus_signs() {
        let spec =
            RemoteSpec::parse_url("s3://b/p?secret_key=ab%2Fc+d%2B&region=us-east-1").unwrap();
        assert_eq!(spec.options["secret_key"], "ab/c+d+");
        let e = RemoteSpec::parse_url("s3://b/p?sse=customer&sse_customer_key=bad")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not accepted in a URL"), "{e}");
    }

    #[test]
    fn create_only_defaults_to_enforced_on_the_providers_own_service() {
        use CreateOnly::{Checked, Enforced};
        let cases: &[(Backend, Option<&str>, CreateOnly)] = &[
            (Backend::S3, None, Enforced),
            (
                Backend::S3,
                Some("https://s3.eu-west-1.amazonaws.com"),
                Enforced,
            ),
            (
                Backend::S3,
                Some("https://S3.cn-north-1.amazonaws.com.cn"),
                Enforced,
            ),
            (
                Backend::S3,
                Some("https://b.s3.dualstack.eu-west-1.amazonaws.com"),
                Enforced,
            ),
            (
                Backend::S3,
                Some("https://s3-fips.us-east-1.amazonaws.com"),
                Enforced,
            ),
            (
                Backend::S3,
                Some("https://s3express-control.us-east-1.amazonaws.com"),
                Enforced,
            ),
            (
                Backend::S3,
                Some("https://b.vpce-1a.s3.us-east-1.vpce.amazonaws.com"),
                Enforced,
            ),
            (Backend::S3, Some("http://127.0.0.1:9000"), Checked),
            (Backend::S3, Some("https://minio.example.com"), Checked),
            (
                Backend::S3,
                Some("https://s3.amazonaws.com.evil.example"),
                Checked,
            ),
            (Backend::S3, Some("https://s3.notamazonaws.com"), Checked),
            // An S3-compatible server on EC2, or behind an AWS load balancer.
            (
                Backend::S3,
                Some("http://ec2-1-2-3-4.compute-1.amazonaws.com:9000"),
                Checked,
            ),
            (
                Backend::S3,
                Some("https://minio.elb.amazonaws.com"),
                Checked,
            ),
            (Backend::S3, Some("not a url"), Checked),
            (Backend::S3, Some(""), Checked),
            (Backend::Gcs, None, Enforced),
            (
                Backend::Gcs,
                Some("https://storage.googleapis.com"),
                Enforced,
            ),
            (Backend::Gcs, Some("http://127.0.0.1:4443"), Checked),
            (Backend::Gcs, Some("127.0.0.1:4443"), Checked),
            (Backend::Azblob, None, Enforced),
            (
                Backend::Azblob,
                Some("https://acct.blob.core.windows.net"),
                Enforced,
            ),
            (
                Backend::Azblob,
                Some("https://acct.blob.core.chinacloudapi.cn/"),
                Enforced,
            ),
            (
                Backend::Azblob,
                Some("http://127.0.0.1:10000/devstoreaccount1"),
                Checked,
            ),
            (Backend::Azblob, Some("https://blob.example.com"), Checked),
            (Backend::Azblob, Some(""), Checked),
            (Backend::Oss, None, Checked),
            (
                Backend::Oss,
                Some("https://oss-cn-hangzhou.aliyuncs.com"),
                Checked,
            ),
            (Backend::Fs, None, Checked),
        ];
        for &(backend, endpoint, want) in cases {
            let got = CreateOnly::default_for(backend, endpoint);
            assert_eq!(got, want, "{backend:?} at {endpoint:?}");
        }
        // The option overrides the default either way, whatever the environment says.
        let minio = "s3://b/p?endpoint=http://127.0.0.1:9000&create_only=enforced";
        let s = RemoteSpec::parse_url(minio).unwrap();
        assert_eq!(s.create_only(), Enforced);
        let aws = "s3://b/p?endpoint=https://s3.amazonaws.com&create_only=Checked";
        assert_eq!(RemoteSpec::parse_url(aws).unwrap().create_only(), Checked);
        let e = RemoteSpec::parse_url("s3://b/p?create_only=trusted").unwrap_err();
        assert!(e.to_string().contains("checked, enforced"), "{e}");
    }

    #[test]
    fn create_only_finds_the_endpoint_where_the_operator_does() {
        use CreateOnly::{Checked, Enforced};
        let spec = |url: &str| RemoteSpec::parse_url(url).unwrap();
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let none = vars(&[]);
        let s3 = spec("s3://b/p");
        assert_eq!(s3.create_only_in(&none), Enforced);
        // OpenDAL's S3 service falls back to these, in this order.
        for var in ["AWS_ENDPOINT_URL", "AWS_ENDPOINT", "AWS_S3_ENDPOINT"] {
            let env = move |k: &str| (k == var).then(|| "http://ceph:7480".to_string());
            assert_eq!(s3.create_only_in(&env), Checked, "{var}");
        }
        let first = vars(&[
            ("AWS_ENDPOINT_URL", "https://s3.eu-west-1.amazonaws.com"),
            ("AWS_S3_ENDPOINT", "http://ceph:7480"),
        ]);
        assert_eq!(s3.create_only_in(&first), Enforced);
        let option = spec("s3://b/p?endpoint=http://127.0.0.1:9000");
        let aws = vars(&[("AWS_ENDPOINT_URL", "https://s3.amazonaws.com")]);
        assert_eq!(
            option.create_only_in(&aws),
            Checked,
            "the option comes first"
        );

        let gcs = spec("gs://b/p");
        assert_eq!(gcs.create_only_in(&none), Enforced);
        let emulator = vars(&[("STORAGE_EMULATOR_HOST", "http://127.0.0.1:4443")]);
        assert_eq!(gcs.create_only_in(&emulator), Checked);

        let az = spec("az://c/p");
        for (conn, want) in [
            (
                "AccountName=a;AccountKey=k;EndpointSuffix=core.windows.net",
                Enforced,
            ),
            (
                "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=k",
                Enforced,
            ),
            (
                "AccountName=a;AccountKey=k;EndpointSuffix=core.chinacloudapi.cn",
                Enforced,
            ),
            (
                "AccountName=a;BlobEndpoint=https://a.blob.core.windows.net/;",
                Enforced,
            ),
            (
                "AccountName=a;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1",
                Checked,
            ),
            (
                "BlobEndpoint=https://blob.example.com;AccountName=a",
                Checked,
            ),
            ("UseDevelopmentStorage=true", Checked),
            ("AccountKey=k", Checked),
        ] {
            let env = move |k: &str| (k == "AZURE_STORAGE_CONNECTION_STRING").then(|| conn.into());
            assert_eq!(az.create_only_in(&env), want, "{conn}");
        }
        let account = vars(&[("AZURE_STORAGE_ACCOUNT", "a")]);
        assert_eq!(az.create_only_in(&account), Enforced);
        assert_eq!(az.create_only_in(&none), Enforced);
        let custom = spec("az://c/p?endpoint=http://127.0.0.1:10000/devstoreaccount1");
        assert_eq!(custom.create_only_in(&account), Checked);
    }

    #[test]
    fn parses_cloud_urls() {
        let s = RemoteSpec::parse_url(
            "s3://models/team/a?endpoint=http://127.0.0.1:9000&region=eu-west-1",
        )
        .unwrap();
        assert_eq!(s.backend, Backend::S3);
        assert_eq!(s.bucket, "models");
        assert_eq!(s.prefix, "team/a");
        assert_eq!(s.opt("endpoint"), Some("http://127.0.0.1:9000"));
        assert_eq!(s.opt("region"), Some("eu-west-1"));
        assert_eq!(s.url(), "s3://models/team/a");

        for (u, b) in [
            ("gs://b", Backend::Gcs),
            ("az://c/p", Backend::Azblob),
            ("oss://b/p/", Backend::Oss),
        ] {
            assert_eq!(RemoteSpec::parse_url(u).unwrap().backend, b, "{u}");
        }
        let local = RemoteSpec::parse_url("file:///tmp/vault").unwrap();
        assert_eq!(
            (local.backend, local.bucket.as_str()),
            (Backend::Fs, "/tmp/vault")
        );
        let rel = RemoteSpec::parse_url("some/dir").unwrap();
        assert!(Path::new(&rel.bucket).is_absolute());
    }

    #[test]
    fn rejects_bad_urls_without_echoing_secrets() {
        assert!(matches!(
            RemoteSpec::parse_url("ftp://x"),
            Err(SpecError::Scheme(_))
        ));
        assert!(matches!(
            RemoteSpec::parse_url("s3:///prefix"),
            Err(SpecError::NoBucket(_))
        ));
        let e = RemoteSpec::parse_url("s3://b?secret_key=hunter2&bogus=1").unwrap_err();
        assert!(matches!(e, SpecError::UnknownOption { .. }));
        assert!(!e.to_string().contains("hunter2"));
        assert!(RemoteSpec::parse_url("file://relative").is_err());
    }

    #[test]
    fn scheme_is_case_insensitive() {
        let s = RemoteSpec::parse_url("S3://b/p?secret_key=hunter2").unwrap();
        assert_eq!((s.backend, s.url()), (Backend::S3, "s3://b/p".to_string()));
        assert_eq!(
            RemoteSpec::parse_url("File:///tmp/v").unwrap().backend,
            Backend::Fs
        );
    }

    #[test]
    fn refuses_url_like_paths_and_credentials_redacted() {
        for bad in [
            "s3:/b/p?secret_key=hunter2",
            "gs:b?credential=hunter2",
            "./dir?secret_key=hunter2",
            "s3://AKID:hunter2@bucket/p",
            "s3://b/p?endpoint=http://u:hunter2@127.0.0.1:9",
            "file://u:hunter2@host/x",
            "ftp://b?secret_key=hunter2",
        ] {
            let e = RemoteSpec::parse_url(bad).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{bad}: {e}");
        }
        for ok in ["./s3:/b/p", "/abs/a:b", "dir/a:b"] {
            assert_eq!(
                RemoteSpec::parse_url(ok).unwrap().backend,
                Backend::Fs,
                "{ok}"
            );
        }
    }

    #[test]
    fn redact_url_hides_userinfo_and_query_values() {
        assert_eq!(
            redact_url("s3://AK:pw@b/p?secret_key=x&endpoint=http://u:p@h&flag"),
            "s3://***@b/p?secret_key=***&endpoint=***&flag"
        );
        assert_eq!(redact_url("http://host:9000/x"), "http://host:9000/x");
        assert_eq!(redact_url("s3:/b?k=v"), "s3:/b?k=***");
    }

    #[test]
    fn options_are_checked_as_in_the_config_file() {
        // Both used to differ from the config file: `90s` was refused, `TRUE` ignored.
        let s = RemoteSpec::parse_url("s3://b?timeout=90s&anonymous=TRUE").unwrap();
        assert_eq!(
            (s.opt("timeout"), s.opt("anonymous")),
            (Some("90"), Some("true"))
        );
        let e = RemoteSpec::parse_url("s3://b?anonymous=yes")
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("anonymous: \"yes\" is not true or false"),
            "{e}"
        );
        let e = RemoteSpec::parse_url("s3://b?timeout=soon")
            .unwrap_err()
            .to_string();
        assert!(e.contains("timeout: \"soon\" is not a duration"), "{e}");
    }

    #[test]
    fn sse_options_resolve_and_never_show_the_key() {
        let spec = |q: &str| RemoteSpec::parse_url(&format!("s3://b/p?{q}")).unwrap();
        assert_eq!(spec("").sse().unwrap(), Sse::None);
        assert_eq!(spec("sse=AES256").sse().unwrap(), Sse::Aes256);
        assert_eq!(
            spec("sse=aws:kms").sse().unwrap(),
            Sse::Kms { key_id: None }
        );
        let by_id = spec("sse_kms_key_id=k1").sse().unwrap();
        assert_eq!(
            by_id,
            Sse::Kms {
                key_id: Some("k1".into())
            }
        );
        for bad in [
            "sse=aes256&sse_kms_key_id=k1",
            "sse=kms&sse_customer_key_file=/x",
            "sse_customer_key_file=/nonexistent/key",
        ] {
            assert!(spec(bad).sse().is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k");
        std::fs::write(&file, (0u8..32).collect::<Vec<u8>>()).unwrap();
        let s = spec(&format!("sse_customer_key_file={}", file.display()));
        let sse = s.sse().unwrap();
        assert!(matches!(sse, Sse::Customer { key } if key[31] == 31));
        assert_eq!(format!("{sse:?}"), "Customer { key: *** }");
        let b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        assert!(s.secrets().contains(&b64.to_string()));
        assert!(!format!("{s:?} {}", s.display_name()).contains(b64));
    }

    #[test]
    fn display_hides_secrets() {
        let s = RemoteSpec::parse_url("s3://b/p?secret_key=hunter2&access_key=AK").unwrap();
        assert!(!format!("{} {:?}", s.display_name(), s).contains("hunter2"));
        assert_eq!(s.secrets(), vec!["hunter2".to_string()]);
    }
}
