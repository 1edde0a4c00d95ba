//! HTTP transports that add to OpenDAL's requests what its services have no option for. They
//! wrap the process-wide default transport (reqwest) and see each request after OpenDAL built
//! and signed it, so they may only add what no signature covers: GCS authenticates with a
//! bearer token over the whole request, so a query parameter added here is honoured. (S3's
//! SigV4, Azure's Shared Key and OSS's V1 signatures cover `x-amz-*`, `x-ms-*` and `x-oss-*`
//! headers, so a header added after signing would be refused by the real services; such
//! options are not offered: see docs/FORMAT.md, "Backend notes".)

use http::Uri;
use opendal::{Buffer, HttpBody, HttpTransport, HttpTransporter};

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
