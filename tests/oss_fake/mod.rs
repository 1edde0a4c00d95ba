//! A recorded-protocol fake of Aliyun OSS for `tests/oss.rs` and the behaviour suite's
//! `Backend::Oss`: one bucket in memory, served over plain HTTP/1.1 on 127.0.0.1, answering the requests OpenDAL 0.59's `services::Oss`
//! sends for mvault (PutObject, GetObject, HeadObject, DeleteObject, ListObjectsV2) the way
//! OSS documents them, and refusing every request whose V1 signature (`Authorization: OSS
//! <AccessKeyId>:<Signature>`) does not match what this file recomputes with the known secret.
//!
//! Addressing: OSS (and OpenDAL's default) is virtual-host style, `http://<bucket>.<endpoint>/
//! <object>`. Such a host cannot resolve to 127.0.0.1, so the client is pointed at this server
//! as its HTTP proxy (`HTTP_PROXY`, honoured by reqwest's default client). The request then
//! arrives in absolute form (`GET http://<bucket>.<endpoint>/<object> HTTP/1.1`) with the same
//! `Host` header real OSS would see; the server checks the host names the bucket, refuses
//! path-style requests (`SecondLevelDomainForbidden`, as OSS does) and computes the signed
//! resource `/<bucket>/<object>` from the host, as OSS does.
//!
//! Everything here (SHA-1, HMAC-SHA1, base64, the HTTP parser) is written for this test with no
//! extra dependency, and checked against published vectors and the official `oss2` SDK in
//! `oss.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------------------------------------
// Crypto and encodings (FIPS 180-4 SHA-1, RFC 2104 HMAC, RFC 4648 base64)
// ---------------------------------------------------------------------------------------------

/// SHA-1 of `data`.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64).wrapping_mul(8)).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, &wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

/// HMAC-SHA1 (block size 64).
pub fn hmac_sha1(key: &[u8], msg: &[u8]) -> [u8; 20] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..20].copy_from_slice(&sha1(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(msg);
    let mut outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(&sha1(&inner));
    sha1(&outer)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Inverse of [`base64`]; `None` on malformed input.
pub fn unbase64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for ch in s.bytes() {
        let v = B64.iter().position(|&b| b == ch)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Percent-decoding (`%XX`; `+` stays `+`, as in URL paths and OSS query values).
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes everything but unreserved characters (`A-Z a-z 0-9 - _ . ~`).
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

// ---------------------------------------------------------------------------------------------
// The OSS V1 signature, as Alibaba documents it
// ---------------------------------------------------------------------------------------------

/// Query parameters that are "sub-resources" and so part of the signed resource (the ones
/// listed in Alibaba's V1 signature documentation and SDKs, for the operations an object
/// store client can send).
pub const SUB_RESOURCES: &[&str] = &[
    "acl",
    "append",
    "bucketInfo",
    "callback",
    "callback-var",
    "cname",
    "comp",
    "continuation-token",
    "cors",
    "delete",
    "encryption",
    "endTime",
    "img",
    "inventory",
    "inventoryId",
    "lifecycle",
    "live",
    "location",
    "logging",
    "objectMeta",
    "partNumber",
    "policy",
    "position",
    "qos",
    "referer",
    "replication",
    "replicationLocation",
    "replicationProgress",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "security-token",
    "sequential",
    "startTime",
    "stat",
    "status",
    "style",
    "styleName",
    "symlink",
    "tagging",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "vod",
    "website",
    "worm",
    "wormExtend",
    "wormId",
    "x-oss-process",
    "x-oss-request-payer",
    "x-oss-traffic-limit",
];

/// The V1 string to sign:
/// `VERB \n Content-MD5 \n Content-Type \n Date \n CanonicalizedOSSHeaders CanonicalizedResource`,
/// where CanonicalizedOSSHeaders is every `x-oss-*` header, name lower-cased, sorted by name,
/// as `name:value\n` (repeated headers joined with `,`), and CanonicalizedResource is
/// `/<bucket>/<object key, decoded>` followed by the sub-resources present in the query,
/// sorted, as `?k=v&k2` (decoded values; `k` alone when the value is empty).
pub fn string_to_sign(
    method: &str,
    headers: &[(String, String)],
    bucket: &str,
    key: &str,
    query: &[(String, String)],
) -> String {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let mut oss: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in headers {
        if k.starts_with("x-oss-") {
            oss.entry(k.as_str()).or_default().push(v.trim());
        }
    }
    let mut s = format!(
        "{method}\n{}\n{}\n{}\n",
        get("content-md5"),
        get("content-type"),
        get("date")
    );
    for (k, vs) in oss {
        s.push_str(&format!("{k}:{}\n", vs.join(",")));
    }
    s.push_str(&format!("/{bucket}/{key}"));
    let mut subs: Vec<&(String, String)> = query
        .iter()
        .filter(|(k, _)| SUB_RESOURCES.contains(&k.as_str()))
        .collect();
    subs.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, (k, v)) in subs.iter().enumerate() {
        s.push(if i == 0 { '?' } else { '&' });
        s.push_str(k);
        if !v.is_empty() {
            s.push('=');
            s.push_str(v);
        }
    }
    s
}

/// `base64(hmac-sha1(secret, string_to_sign))`.
pub fn sign_v1(secret: &str, string_to_sign: &str) -> String {
    base64(&hmac_sha1(secret.as_bytes(), string_to_sign.as_bytes()))
}

// ---------------------------------------------------------------------------------------------
// Server state and recording
// ---------------------------------------------------------------------------------------------

/// One stored object.
#[derive(Clone, Debug)]
pub struct Object {
    pub data: Vec<u8>,
    pub modified: DateTime<Utc>,
}

impl Object {
    /// Not MD5 (as OSS uses for simple uploads): nothing in mvault reads ETags, and this fake
    /// does not carry an MD5 implementation. Same shape: 32 upper-case hex characters, quoted.
    fn etag(&self) -> String {
        let h = blake3::hash(&self.data);
        format!("\"{}\"", hex::encode_upper(&h.as_bytes()[..16]))
    }
}

/// What the server saw and answered, for one request.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// The request target as sent (absolute form through the proxy:
    /// `http://<bucket>.<endpoint>/<path>?<query>`).
    pub target: String,
    pub host: String,
    /// Raw (still percent-encoded) path.
    pub path: String,
    /// Decoded object key (empty for bucket-level requests).
    pub key: String,
    /// Decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// All request headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
    pub status: u16,
    /// The OSS error code answered, if any.
    pub error_code: Option<String>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The OSS API operation this request is.
    pub fn operation(&self) -> &'static str {
        match (self.method.as_str(), self.key.is_empty()) {
            ("GET", true) if self.param("list-type") == Some("2") => "ListObjectsV2",
            ("GET", true) => "ListObjects",
            ("POST", true) if self.param("delete").is_some() => "DeleteMultipleObjects",
            ("PUT", false) if self.header("x-oss-copy-source").is_some() => "CopyObject",
            ("PUT", false) if self.param("partNumber").is_some() => "UploadPart",
            ("PUT", false) => "PutObject",
            ("POST", false) if self.param("uploads").is_some() => "InitiateMultipartUpload",
            ("POST", false) if self.param("uploadId").is_some() => "CompleteMultipartUpload",
            ("POST", false) if self.param("append").is_some() => "AppendObject",
            ("GET", false) => "GetObject",
            ("HEAD", false) => "HeadObject",
            ("DELETE", false) => "DeleteObject",
            _ => "Unknown",
        }
    }
}

/// Fixed identity of the fake.
#[derive(Clone, Debug)]
pub struct Config {
    pub bucket: String,
    /// Host part of the endpoint URL the client is given (never resolved: requests reach the
    /// fake as a proxy).
    pub endpoint_host: String,
    pub access_key_id: String,
    pub access_key_secret: String,
    /// Listing page size (OSS default 100, at most 1000); smaller values force continuation.
    pub page_size: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            bucket: "mvault-test".into(),
            endpoint_host: "oss-mvault-test.invalid".into(),
            access_key_id: "LTAI5tMvaultTestKeyId".into(),
            access_key_secret: "mvault-test-secret-0123456789abcdef".into(),
            page_size: 100,
        }
    }
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Object>,
    log: Vec<Recorded>,
    /// Rival content planted at a key just before the next `x-oss-forbid-overwrite` PUT of it
    /// is processed: another writer winning the race between mvault's stat and its PUT.
    ambush: HashMap<String, Vec<u8>>,
    /// Keys whose next PUT is stored but answered 503: a lost response.
    lose_response: HashMap<String, u32>,
}

struct Shared {
    cfg: Config,
    state: Mutex<State>,
    request_ids: AtomicU64,
}

/// A running fake; stops when dropped.
pub struct FakeOss {
    pub cfg: Config,
    pub port: u16,
    shared: Arc<Shared>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for FakeOss {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl FakeOss {
    pub fn start(cfg: Config) -> FakeOss {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("fake OSS runtime");
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            state: Mutex::new(State::default()),
            request_ids: AtomicU64::new(1),
        });
        let s = shared.clone();
        rt.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = serve_connection(stream, s).await;
                });
            }
        });
        FakeOss {
            cfg,
            port,
            shared,
            rt: Some(rt),
        }
    }

    /// What the client uses as `HTTP_PROXY`.
    pub fn proxy_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The endpoint URL the client is configured with.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.cfg.endpoint_host)
    }

    /// The `Host` every request must carry (virtual-host style).
    pub fn virtual_host(&self) -> String {
        format!("{}.{}", self.cfg.bucket, self.cfg.endpoint_host)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state().log.clone()
    }

    /// Returns the requests recorded so far and forgets them.
    pub fn take_requests(&self) -> Vec<Recorded> {
        std::mem::take(&mut self.state().log)
    }

    pub fn keys(&self) -> Vec<String> {
        self.state().objects.keys().cloned().collect()
    }

    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        self.state().objects.get(key).map(|o| o.data.clone())
    }

    pub fn put_object(&self, key: &str, data: Vec<u8>) {
        let o = Object {
            data,
            modified: Utc::now(),
        };
        self.state().objects.insert(key.to_string(), o);
    }

    pub fn remove_object(&self, key: &str) {
        self.state().objects.remove(key);
    }

    pub fn ambush(&self, key: &str, rival: Vec<u8>) {
        self.state().ambush.insert(key.to_string(), rival);
    }

    pub fn lose_next_put_response(&self, key: &str) {
        *self
            .state()
            .lose_response
            .entry(key.to_string())
            .or_default() += 1;
    }

    /// Handles one already-parsed request, as the network path does (used by unit tests).
    pub fn handle_raw(&self, req: RawRequest) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let r = handle(&self.shared, req);
        (r.status, r.headers, r.body)
    }
}

// ---------------------------------------------------------------------------------------------
// What mvault must send (checked by the oss tests and by the behaviour suite on `Backend::Oss`)
// ---------------------------------------------------------------------------------------------

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Every request: virtual-host addressed, V1-signed with the test key and accepted by the
/// verifier, and an operation this fake implements.
pub fn assert_protocol(fake: &FakeOss, reqs: &[Recorded]) {
    let vhost = fake.virtual_host();
    let auth = format!("OSS {}:", fake.cfg.access_key_id);
    assert!(!reqs.is_empty(), "no request reached the fake");
    for r in reqs {
        let what = format!(
            "{} {} -> {} {:?}",
            r.method, r.target, r.status, r.error_code
        );
        assert_eq!(r.host, vhost, "{what}");
        assert!(r.target.starts_with(&format!("http://{vhost}/")), "{what}");
        let a = r.header("authorization").unwrap_or("");
        assert!(
            a.starts_with(&auth) && a.len() == auth.len() + 28,
            "{what}: {a:?}"
        );
        assert!(r.header("date").is_some(), "{what}");
        assert!(
            ![400, 403, 411, 416, 501].contains(&r.status),
            "refused request: {what}"
        );
        assert!(
            [
                "PutObject",
                "GetObject",
                "HeadObject",
                "DeleteObject",
                "ListObjectsV2"
            ]
            .contains(&r.operation()),
            "{what}: {}",
            r.operation()
        );
    }
}

/// Object keys follow docs/FORMAT.md; listings stay under the vault's `prefix`.
pub fn assert_layout(prefix: &str, reqs: &[Recorded]) {
    for r in reqs {
        if r.operation() == "ListObjectsV2" {
            let p = r.param("prefix").unwrap_or("");
            assert!(
                p.starts_with(&format!("{prefix}/")),
                "list outside the prefix: {p}"
            );
            assert!(
                matches!(r.param("delimiter"), None | Some("/")),
                "{:?}",
                r.query
            );
            continue;
        }
        let rel = r
            .key
            .strip_prefix(&format!("{prefix}/"))
            .unwrap_or_else(|| panic!("key outside the prefix: {}", r.key));
        let parts: Vec<&str> = rel.split('/').collect();
        match parts.as_slice() {
            ["chunks", hh, id] => {
                assert!(
                    is_lower_hex(id, 64) && id.starts_with(hh) && hh.len() == 2,
                    "{rel}"
                )
            }
            ["packs", hh, id] => {
                let hex = id.strip_suffix(".index").unwrap_or(id);
                assert!(
                    is_lower_hex(hex, 64) && hex.starts_with(hh) && hh.len() == 2,
                    "{rel}"
                )
            }
            ["models", name, "versions", file] => {
                assert!(!name.is_empty(), "{rel}");
                let v = file
                    .strip_suffix(".json")
                    .unwrap_or_else(|| panic!("{rel}"));
                assert!(semver::Version::parse(v).is_ok(), "{rel}");
            }
            ["models", name, "signatures", file] => {
                assert!(!name.is_empty(), "{rel}");
                let v = file.strip_suffix(".sig").unwrap_or_else(|| panic!("{rel}"));
                assert!(semver::Version::parse(v).is_ok(), "{rel}");
            }
            ["gc", "pending", file] => {
                assert!(file.ends_with(".json") && !file.starts_with('.'), "{rel}")
            }
            ["encryption.json"] => {}
            _ => panic!("key not in the FORMAT.md layout: {rel}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1
// ---------------------------------------------------------------------------------------------

/// A parsed request.
#[derive(Clone, Debug)]
pub struct RawRequest {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// HEAD: send headers (Content-Length of the object) but no body.
    head: bool,
    error_code: Option<String>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut tmp = [0u8; 64 * 1024];
    let n = stream.read(&mut tmp).await?;
    buf.extend_from_slice(&tmp[..n]);
    Ok(n > 0)
}

async fn read_line(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<String> {
    loop {
        if let Some(i) = find(buf, b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..i]).into_owned();
            buf.drain(..i + 2);
            return Ok(line);
        }
        if !fill(stream, buf).await? {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

async fn read_exact_buf(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    n: usize,
) -> std::io::Result<Vec<u8>> {
    while buf.len() < n {
        if !fill(stream, buf).await? {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(buf.drain(..n).collect())
}

/// Reads one request; `None` at a clean end of the connection.
async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<RawRequest>> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        if !fill(stream, buf).await? {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            };
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let target = first.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    if get("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    let body = if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut body = Vec::new();
        loop {
            let line = read_line(stream, buf).await?;
            let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
            if size == 0 {
                // Trailers, then the blank line.
                while !read_line(stream, buf).await?.is_empty() {}
                break body;
            }
            body.extend(read_exact_buf(stream, buf, size).await?);
            read_exact_buf(stream, buf, 2).await?;
        }
    } else {
        let len = match get("content-length") {
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?,
            None => 0,
        };
        read_exact_buf(stream, buf, len).await?
    };
    Ok(Some(RawRequest {
        method,
        target,
        headers,
        body,
    }))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        411 => "Length Required",
        416 => "Requested Range Not Satisfiable",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

async fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut stream, &mut buf).await? {
        let close = req
            .headers
            .iter()
            .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
        let resp = handle(&shared, req);
        let mut out = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
        for (k, v) in &resp.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        stream.write_all(out.as_bytes()).await?;
        if !resp.head {
            stream.write_all(&resp.body).await?;
        }
        stream.flush().await?;
        if close {
            break;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// OSS semantics
// ---------------------------------------------------------------------------------------------

fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn handle(shared: &Shared, req: RawRequest) -> Response {
    let request_id = format!(
        "{:024X}",
        shared.request_ids.fetch_add(1, Ordering::Relaxed)
    );
    // Absolute form (through the proxy) or origin form.
    let (target_authority, path_and_query) = match req.target.strip_prefix("http://") {
        Some(rest) => match rest.find('/') {
            Some(i) => (Some(rest[..i].to_string()), rest[i..].to_string()),
            None => (Some(rest.to_string()), "/".to_string()),
        },
        None => (None, req.target.clone()),
    };
    let (raw_path, raw_query) = path_and_query
        .split_once('?')
        .map(|(p, q)| (p.to_string(), q.to_string()))
        .unwrap_or((path_and_query.clone(), String::new()));
    let host = req
        .headers
        .iter()
        .find(|(k, _)| k == "host")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let key = percent_decode(raw_path.strip_prefix('/').unwrap_or(&raw_path));
    let query: Option<Vec<(String, String)>> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect();

    let mut rec = Recorded {
        method: req.method.clone(),
        target: req.target.clone(),
        host: host.clone(),
        path: raw_path.clone(),
        key: key.clone().unwrap_or_default(),
        query: query.clone().unwrap_or_default(),
        headers: req.headers.clone(),
        body_len: req.body.len(),
        status: 0,
        error_code: None,
    };

    let resp = match (key, query) {
        (Some(key), Some(query)) => {
            let ctx = Ctx {
                shared,
                request_id: &request_id,
                req: &req,
                host: &host,
                target_authority: target_authority.as_deref(),
                key: &key,
                query: &query,
            };
            ctx.dispatch()
        }
        _ => error(
            &shared.cfg,
            &request_id,
            400,
            "InvalidURI",
            "Couldn't parse the specified URI.",
            &[],
        ),
    };
    let mut resp = resp;
    // A HEAD answer never has a body, errors included (the client would not read it).
    let head_len = resp.head;
    if req.method == "HEAD" {
        resp.head = true;
    }
    resp.headers.push(("Server".into(), "AliyunOSS".into()));
    resp.headers.push(("Date".into(), http_date(Utc::now())));
    resp.headers.push(("x-oss-request-id".into(), request_id));
    resp.headers
        .push(("Connection".into(), "keep-alive".into()));
    if !head_len {
        resp.headers
            .push(("Content-Length".into(), resp.body.len().to_string()));
    }
    rec.status = resp.status;
    rec.error_code = resp.error_code.clone();
    shared.state.lock().unwrap().log.push(rec);
    resp
}

fn error(
    cfg: &Config,
    request_id: &str,
    status: u16,
    code: &str,
    message: &str,
    extra: &[(&str, String)],
) -> Response {
    let mut body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\n  <Code>{code}</Code>\n  \
         <Message>{}</Message>\n  <RequestId>{request_id}</RequestId>\n  \
         <HostId>{}.{}</HostId>\n",
        xml_escape(message),
        cfg.bucket,
        cfg.endpoint_host
    );
    for (k, v) in extra {
        body.push_str(&format!("  <{k}>{}</{k}>\n", xml_escape(v)));
    }
    body.push_str("</Error>\n");
    Response {
        status,
        headers: vec![("Content-Type".into(), "application/xml".into())],
        body: body.into_bytes(),
        head: false,
        error_code: Some(code.to_string()),
    }
}

struct Ctx<'a> {
    shared: &'a Shared,
    request_id: &'a str,
    req: &'a RawRequest,
    host: &'a str,
    target_authority: Option<&'a str>,
    key: &'a str,
    query: &'a [(String, String)],
}

impl Ctx<'_> {
    fn cfg(&self) -> &Config {
        &self.shared.cfg
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.req
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn err(&self, status: u16, code: &str, message: &str) -> Response {
        error(self.cfg(), self.request_id, status, code, message, &[])
    }

    fn ok(&self, status: u16, headers: Vec<(String, String)>, body: Vec<u8>) -> Response {
        Response {
            status,
            headers,
            body,
            head: false,
            error_code: None,
        }
    }

    fn dispatch(&self) -> Response {
        if let Some(r) = self.check_addressing() {
            return r;
        }
        if let Some(r) = self.check_signature() {
            return r;
        }
        let m = self.req.method.as_str();
        let unsupported = [
            "uploads",
            "uploadId",
            "partNumber",
            "append",
            "delete",
            "acl",
            "tagging",
            "symlink",
            "restore",
            "versions",
            "versionId",
        ];
        if self
            .query
            .iter()
            .any(|(k, _)| unsupported.contains(&k.as_str()))
            || self.header("x-oss-copy-source").is_some()
        {
            return self.err(
                501,
                "NotImplemented",
                "this fake OSS implements PutObject, GetObject, HeadObject, DeleteObject and ListObjectsV2 only",
            );
        }
        match (m, self.key.is_empty()) {
            ("GET", true) if self.param("list-type") == Some("2") => self.list_objects_v2(),
            ("PUT", false) => self.put_object(),
            ("GET", false) => self.get_object(false),
            ("HEAD", false) => self.get_object(true),
            ("DELETE", false) => {
                self.shared.state.lock().unwrap().objects.remove(self.key);
                self.ok(204, vec![], vec![])
            }
            _ => self.err(
                501,
                "NotImplemented",
                "this fake OSS implements PutObject, GetObject, HeadObject, DeleteObject and ListObjectsV2 only",
            ),
        }
    }

    /// Virtual-host style only: `Host: <bucket>.<endpoint>`, and through the proxy the absolute
    /// target names the same authority.
    fn check_addressing(&self) -> Option<Response> {
        let cfg = self.cfg();
        let host = self.host.split(':').next().unwrap_or("");
        if let Some(auth) = self.target_authority
            && auth != self.host
        {
            return Some(self.err(400, "InvalidArgument", "request target and Host differ"));
        }
        if host == cfg.endpoint_host {
            return Some(self.err(
                403,
                "SecondLevelDomainForbidden",
                "Please use virtual hosted style to access.",
            ));
        }
        match host.strip_suffix(&format!(".{}", cfg.endpoint_host)) {
            Some(b) if b == cfg.bucket => None,
            Some(_) => Some(self.err(404, "NoSuchBucket", "The specified bucket does not exist.")),
            None => Some(self.err(400, "InvalidArgument", "unknown endpoint in Host")),
        }
    }

    fn check_signature(&self) -> Option<Response> {
        let cfg = self.cfg();
        let Some(auth) = self.header("authorization") else {
            return Some(self.err(
                403,
                "AccessDenied",
                "You have no right to access this object because of bucket acl.",
            ));
        };
        let Some((ak, sig)) = auth.strip_prefix("OSS ").and_then(|r| r.split_once(':')) else {
            return Some(self.err(400, "InvalidArgument", "Authorization header is invalid."));
        };
        if ak != cfg.access_key_id {
            return Some(self.err(
                403,
                "InvalidAccessKeyId",
                "The OSS Access Key Id you provided does not exist in our records.",
            ));
        }
        let Some(date) = self.header("date") else {
            return Some(self.err(403, "AccessDenied", "Date header is missing."));
        };
        match DateTime::parse_from_rfc2822(date) {
            Ok(t) if (Utc::now() - t.with_timezone(&Utc)).num_seconds().abs() <= 15 * 60 => {}
            Ok(_) => {
                return Some(self.err(
                    403,
                    "RequestTimeTooSkewed",
                    "The difference between the request time and the current time is too large.",
                ));
            }
            Err(_) => return Some(self.err(403, "AccessDenied", "Invalid date format.")),
        }
        let sts = string_to_sign(
            &self.req.method,
            &self.req.headers,
            &cfg.bucket,
            self.key,
            self.query,
        );
        let expected = sign_v1(&cfg.access_key_secret, &sts);
        if expected != sig {
            return Some(error(
                cfg,
                self.request_id,
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. \
                 Check your key and signing method.",
                &[
                    ("OSSAccessKeyId", ak.to_string()),
                    ("SignatureProvided", sig.to_string()),
                    ("StringToSign", sts),
                ],
            ));
        }
        None
    }

    fn put_object(&self) -> Response {
        if self.header("content-length").is_none() && self.header("transfer-encoding").is_none() {
            return self.err(
                411,
                "MissingContentLength",
                "You must provide the Content-Length HTTP header.",
            );
        }
        let forbid = self
            .header("x-oss-forbid-overwrite")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let mut st = self.shared.state.lock().unwrap();
        if forbid && let Some(rival) = st.ambush.remove(self.key) {
            st.objects.entry(self.key.to_string()).or_insert(Object {
                data: rival,
                modified: Utc::now(),
            });
        }
        if forbid && st.objects.contains_key(self.key) {
            return self.err(
                409,
                "FileAlreadyExists",
                "The object you specified already exists and can not be overwritten.",
            );
        }
        let obj = Object {
            data: self.req.body.clone(),
            modified: Utc::now(),
        };
        let etag = obj.etag();
        st.objects.insert(self.key.to_string(), obj);
        if let Some(n) = st.lose_response.get_mut(self.key)
            && *n > 0
        {
            *n -= 1;
            return self.err(
                503,
                "ServiceUnavailable",
                "Please reduce your request rate.",
            );
        }
        self.ok(200, vec![("ETag".into(), etag)], vec![])
    }

    fn get_object(&self, head: bool) -> Response {
        let obj = self
            .shared
            .state
            .lock()
            .unwrap()
            .objects
            .get(self.key)
            .cloned();
        let Some(obj) = obj else {
            return self.err(404, "NoSuchKey", "The specified key does not exist.");
        };
        let total = obj.data.len();
        let mut headers = vec![
            ("Content-Type".into(), "application/octet-stream".into()),
            ("ETag".into(), obj.etag()),
            ("Last-Modified".into(), http_date(obj.modified)),
            ("x-oss-object-type".into(), "Normal".into()),
            ("x-oss-storage-class".into(), "Standard".into()),
            ("Accept-Ranges".into(), "bytes".into()),
        ];
        let mut status = 200;
        let mut body = obj.data;
        if !head && let Some(range) = self.header("range") {
            match parse_range(range, total) {
                Some((start, end)) => {
                    status = 206;
                    headers.push((
                        "Content-Range".into(),
                        format!("bytes {start}-{end}/{total}"),
                    ));
                    body = body[start..=end].to_vec();
                }
                None => {
                    return self.err(
                        416,
                        "InvalidRange",
                        "The requested range cannot be satisfied.",
                    );
                }
            }
        }
        if head {
            headers.push(("Content-Length".into(), total.to_string()));
            return Response {
                status,
                headers,
                body: vec![],
                head: true,
                error_code: None,
            };
        }
        self.ok(status, headers, body)
    }

    fn list_objects_v2(&self) -> Response {
        let cfg = self.cfg();
        let prefix = self.param("prefix").unwrap_or("").to_string();
        let delimiter = self.param("delimiter").unwrap_or("").to_string();
        let max_keys = self
            .param("max-keys")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(100)
            .min(1000)
            .min(cfg.page_size)
            .max(1);
        let after = match self.param("continuation-token") {
            Some(t) => match unbase64(t).and_then(|b| String::from_utf8(b).ok()) {
                Some(s) => Some(s),
                None => {
                    return self.err(400, "InvalidArgument", "The continuation token is invalid.");
                }
            },
            None => self.param("start-after").map(str::to_string),
        };
        // `encoding-type=url`: names in the answer are percent-encoded (OpenDAL does not ask
        // for it; Alibaba's SDKs do).
        let url_encoded = match self.param("encoding-type") {
            None => false,
            Some("url") => true,
            Some(_) => return self.err(400, "InvalidArgument", "The encoding-type is invalid."),
        };
        let enc = |s: &str| {
            xml_escape(&if url_encoded {
                url_encode(s)
            } else {
                s.to_string()
            })
        };
        // Objects and common prefixes, merged in key order.
        let mut items: Vec<(String, Option<Object>)> = Vec::new();
        {
            let st = self.shared.state.lock().unwrap();
            for (k, o) in st.objects.range(prefix.clone()..) {
                if !k.starts_with(&prefix) {
                    break;
                }
                let rest = &k[prefix.len()..];
                match (!delimiter.is_empty())
                    .then(|| rest.find(&delimiter))
                    .flatten()
                {
                    Some(i) => {
                        let cp = format!("{prefix}{}", &rest[..i + delimiter.len()]);
                        if items.last().map(|(n, _)| n) != Some(&cp) {
                            items.push((cp, None));
                        }
                    }
                    None => items.push((k.clone(), Some(o.clone()))),
                }
            }
        }
        if let Some(a) = &after {
            items.retain(|(n, _)| n > a);
        }
        let truncated = items.len() > max_keys;
        items.truncate(max_keys);
        let mut xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult>\n  <Name>{}</Name>\n  \
             <Prefix>{}</Prefix>\n  <MaxKeys>{max_keys}</MaxKeys>\n  <Delimiter>{}</Delimiter>\n  \
             <IsTruncated>{truncated}</IsTruncated>\n",
            xml_escape(&cfg.bucket),
            enc(&prefix),
            enc(&delimiter)
        );
        if url_encoded {
            xml.push_str("  <EncodingType>url</EncodingType>\n");
        }
        if let Some(t) = self.param("continuation-token") {
            xml.push_str(&format!(
                "  <ContinuationToken>{}</ContinuationToken>\n",
                xml_escape(t)
            ));
        }
        if truncated && let Some((last, _)) = items.last() {
            xml.push_str(&format!(
                "  <NextContinuationToken>{}</NextContinuationToken>\n",
                xml_escape(&base64(last.as_bytes()))
            ));
        }
        for (name, obj) in &items {
            match obj {
                Some(o) => xml.push_str(&format!(
                    "  <Contents>\n    <Key>{}</Key>\n    <LastModified>{}</LastModified>\n    \
                     <ETag>{}</ETag>\n    <Type>Normal</Type>\n    <Size>{}</Size>\n    \
                     <StorageClass>Standard</StorageClass>\n  </Contents>\n",
                    enc(name),
                    o.modified.format("%Y-%m-%dT%H:%M:%S.000Z"),
                    xml_escape(&o.etag()),
                    o.data.len()
                )),
                None => xml.push_str(&format!(
                    "  <CommonPrefixes>\n    <Prefix>{}</Prefix>\n  </CommonPrefixes>\n",
                    enc(name)
                )),
            }
        }
        xml.push_str(&format!(
            "  <KeyCount>{}</KeyCount>\n</ListBucketResult>\n",
            items.len()
        ));
        self.ok(
            200,
            vec![("Content-Type".into(), "application/xml".into())],
            xml.into_bytes(),
        )
    }
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` → inclusive (start, end); `None` if unsatisfiable.
fn parse_range(v: &str, total: usize) -> Option<(usize, usize)> {
    let spec = v.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    if total == 0 {
        return None;
    }
    let (start, end) = if a.is_empty() {
        let n: usize = b.parse().ok()?;
        (total.saturating_sub(n), total - 1)
    } else {
        let s: usize = a.parse().ok()?;
        let e = if b.is_empty() {
            total - 1
        } else {
            b.parse::<usize>().ok()?.min(total - 1)
        };
        (s, e)
    };
    (start <= end && start < total).then_some((start, end))
}
