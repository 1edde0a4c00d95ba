//! HTTP transports that add to OpenDAL's requests what its services have no option for. They
//! wrap the process-wide default transport (reqwest) and see each request after OpenDAL built
//! and signed it. GCS authenticates with a bearer token, which covers no query parameter, so
//! [`GcsKmsKey`] only adds one. S3's SigV4 must cover every `x-amz-*` header, so
//! [`S3BucketKey`] adds its header and then signs the request again, with the credentials
//! OpenDAL's S3 service would use; [`AzEncryptionScope`] does the same for Azure's Shared Key,
//! which covers every `x-ms-*` header (a SAS token or bearer token covers no header). See
//! docs/FORMAT.md, "Backend notes".

use http::Uri;
use http::header::{AUTHORIZATION, HOST, HeaderName, HeaderValue};
use opendal::{Buffer, HttpBody, HttpTransport, HttpTransporter};
use reqsign_aws_v4::{Credential, DefaultCredentialProvider, StaticCredentialProvider};
use reqsign_core::{Context, OsEnv, ProvideCredentialChain, Signer};

/// Path prefix of GCS JSON API object uploads (simple, multipart and resumable-initiation
/// requests alike: `POST /upload/storage/v1/b/<bucket>/o?uploadType=...`).
const GCS_UPLOAD_PATH: &str = "/upload/storage/v1/b/";

/// Names a Cloud KMS key (customer-managed encryption key, CMEK) on every GCS object upload
/// by adding `kmsKeyName=<resource name>` to its query, as the JSON API's `objects.insert`
/// documents. Reads need nothing: GCS decrypts CMEK objects for any caller allowed to use
/// the key. OpenDAL 0.59's `services::Gcs` has no such option.
#[derive(Debug)]
pub struct GcsKmsKey {
    inner: HttpTransporter,
    /// `&kmsKeyName=...`, percent-encoded.
    query_pair: String,
}

impl GcsKmsKey {
    /// `key_name`: `projects/P/locations/L/keyRings/R/cryptoKeys/K`.
    pub fn new(key_name: &str) -> GcsKmsKey {
        let encoded: String = url::form_urlencoded::byte_serialize(key_name.as_bytes()).collect();
        GcsKmsKey {
            inner: HttpTransporter::default(),
            query_pair: format!("kmsKeyName={encoded}"),
        }
    }

    /// `uri` with the key name added if it is an object upload; other requests unchanged.
    fn with_key(&self, method: &http::Method, uri: &Uri) -> Option<Uri> {
        if method != http::Method::POST || !uri.path().starts_with(GCS_UPLOAD_PATH) {
            return None;
        }
        let text = uri.to_string();
        let sep = if uri.query().is_some() { '&' } else { '?' };
        format!("{text}{sep}{}", self.query_pair).parse().ok()
    }
}

impl HttpTransport for GcsKmsKey {
    async fn fetch(
        &self,
        mut req: http::Request<Buffer>,
    ) -> opendal::Result<http::Response<HttpBody>> {
        if let Some(uri) = self.with_key(req.method(), req.uri()) {
            *req.uri_mut() = uri;
        }
        self.inner.fetch(req).await
    }
}

/// The S3 header that makes an SSE-KMS object use (or not use) the bucket's S3 Bucket Key.
const BUCKET_KEY_HEADER: HeaderName =
    HeaderName::from_static("x-amz-server-side-encryption-bucket-key-enabled");

/// Sets `x-amz-server-side-encryption-bucket-key-enabled` on every S3 request that asks for
/// server-side encryption (PutObject, CreateMultipartUpload: the requests OpenDAL gives
/// `x-amz-server-side-encryption`), then signs it again so that the signature covers the
/// header. Other requests pass untouched. OpenDAL 0.59's `services::S3` has no such option.
#[derive(Debug)]
pub struct S3BucketKey {
    inner: HttpTransporter,
    value: HeaderValue,
    /// `None` for unsigned (anonymous) remotes.
    signer: Option<Signer<Credential>>,
}

/// AWS credentials as mvault's S3 options give them: the static keys (`access_key`,
/// `secret_key`, `session_token`) if any, else `profile`, else the default chain.
#[derive(Debug, Default)]
pub struct S3Credentials<'a> {
    pub access_key: Option<&'a str>,
    pub secret_key: Option<&'a str>,
    pub session_token: Option<&'a str>,
    pub profile: Option<&'a str>,
}

impl S3BucketKey {
    /// `enabled`: the header's value. `credentials`: `None` for an unsigned remote.
    pub fn new(enabled: bool, region: &str, credentials: Option<S3Credentials<'_>>) -> S3BucketKey {
        S3BucketKey {
            inner: HttpTransporter::default(),
            value: HeaderValue::from_static(if enabled { "true" } else { "false" }),
            signer: credentials.map(|c| s3_signer(region, &c)),
        }
    }
}

/// A SigV4 signer for service `s3` in `region` with the credential chain OpenDAL 0.59's S3
/// builder makes from the same options (static keys first, then the environment, the
/// profile, SSO, web identity, ECS and instance metadata).
fn s3_signer(region: &str, c: &S3Credentials<'_>) -> Signer<Credential> {
    let ctx = Context::new()
        .with_file_read(reqsign_file_read_tokio::TokioFileRead)
        .with_env(OsEnv)
        .with_http_send(HttpTransporter::default());
    let mut default = DefaultCredentialProvider::builder();
    if let Some(p) = c.profile.filter(|p| !p.is_empty()) {
        default = default.with_profile(p);
    }
    let mut chain = ProvideCredentialChain::new().push(default.build());
    if let (Some(ak), Some(sk)) = (c.access_key, c.secret_key) {
        let fixed = StaticCredentialProvider::new(ak, sk);
        chain = chain.push_front(match c.session_token {
            Some(t) => fixed.with_session_token(t),
            None => fixed,
        });
    }
    Signer::new(ctx, chain, reqsign_aws_v4::RequestSigner::new("s3", region))
}

impl HttpTransport for S3BucketKey {
    async fn fetch(
        &self,
        mut req: http::Request<Buffer>,
    ) -> opendal::Result<http::Response<HttpBody>> {
        if !req.headers().contains_key("x-amz-server-side-encryption") {
            return self.inner.fetch(req).await;
        }
        req.headers_mut()
            .insert(BUCKET_KEY_HEADER, self.value.clone());
        let Some(signer) = &self.signer else {
            return self.inner.fetch(req).await;
        };
        let (mut parts, body) = req.into_parts();
        // Signed again from scratch: the old signature must not become a signed header.
        parts.headers.remove(AUTHORIZATION);
        signer
            .sign(&mut parts, None)
            .await
            .map_err(|e| sign_error("S3", e))?;
        // As OpenDAL does after signing: the HTTP client sets Host for its HTTP version.
        parts.headers.remove(HOST);
        self.inner
            .fetch(http::Request::from_parts(parts, body))
            .await
    }
}

/// Azure's header naming the encryption scope a blob is written under.
const ENCRYPTION_SCOPE_HEADER: HeaderName = HeaderName::from_static("x-ms-encryption-scope");

/// Sets `x-ms-encryption-scope` on every Azure Blob write (`PUT`: Put Blob, Put Block, Put
/// Block List; mvault sends no other PUT) and signs a Shared Key request again so that the
/// signature covers it. Reads need nothing: Azure decrypts for any authorized caller. OpenDAL
/// 0.59's `services::Azblob` has no such option.
#[derive(Debug)]
pub struct AzEncryptionScope {
    inner: HttpTransporter,
    scope: HeaderValue,
    /// The account's Shared Key signer, if the remote has an account key.
    signer: Option<Signer<reqsign_azure_storage::Credential>>,
}

impl AzEncryptionScope {
    /// `None` when `scope` cannot be a header value. `shared_key`: (account name, account key)
    /// when the remote authenticates with one.
    pub fn new(scope: &str, shared_key: Option<(&str, &str)>) -> Option<AzEncryptionScope> {
        Some(AzEncryptionScope {
            inner: HttpTransporter::default(),
            scope: HeaderValue::from_str(scope).ok()?,
            signer: shared_key.map(|(name, key)| {
                Signer::new(
                    Context::new(),
                    reqsign_azure_storage::StaticCredentialProvider::new_shared_key(name, key),
                    reqsign_azure_storage::RequestSigner::new(),
                )
            }),
        })
    }
}

impl HttpTransport for AzEncryptionScope {
    async fn fetch(
        &self,
        mut req: http::Request<Buffer>,
    ) -> opendal::Result<http::Response<HttpBody>> {
        if req.method() != http::Method::PUT {
            return self.inner.fetch(req).await;
        }
        req.headers_mut()
            .insert(ENCRYPTION_SCOPE_HEADER, self.scope.clone());
        let shared_key = req
            .headers()
            .get(AUTHORIZATION)
            .is_some_and(|v| v.as_bytes().starts_with(b"SharedKey "));
        let Some(signer) = self.signer.as_ref().filter(|_| shared_key) else {
            return self.inner.fetch(req).await;
        };
        let (mut parts, body) = req.into_parts();
        parts.headers.remove(AUTHORIZATION);
        signer
            .sign(&mut parts, None)
            .await
            .map_err(|e| sign_error("Azure Blob", e))?;
        self.inner
            .fetch(http::Request::from_parts(parts, body))
            .await
    }
}

/// A signing failure as OpenDAL reports one (retryable if reqsign says so).
fn sign_error(service: &str, e: reqsign_core::Error) -> opendal::Error {
    let temporary = e.is_retryable();
    opendal::Error::new(
        opendal::ErrorKind::Unexpected,
        format!("failed to sign {service} request"),
    )
    .set_source(e)
    .with_temporary(temporary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_key_on_uploads_only() {
        let t = GcsKmsKey::new("projects/p/locations/eu/keyRings/r/cryptoKeys/k");
        let up: Uri = "http://h/upload/storage/v1/b/bk/o?uploadType=media&name=a%2Fb"
            .parse()
            .unwrap();
        let got = t.with_key(&http::Method::POST, &up).unwrap().to_string();
        assert_eq!(
            got,
            "http://h/upload/storage/v1/b/bk/o?uploadType=media&name=a%2Fb\
             &kmsKeyName=projects%2Fp%2Flocations%2Feu%2FkeyRings%2Fr%2FcryptoKeys%2Fk"
        );
        let get: Uri = "http://h/storage/v1/b/bk/o/a?alt=media".parse().unwrap();
        assert_eq!(t.with_key(&http::Method::GET, &get), None);
        assert_eq!(t.with_key(&http::Method::POST, &get), None);
    }
}
