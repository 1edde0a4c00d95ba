//! Fault tolerance, end to end on S3 (moto), with the real binary:
//! - a fault-injecting HTTP proxy between mvault and the store (resets, truncated responses,
//!   500/503, delays): push and pull still end byte-exact, and the retries show in the summary;
//! - stalled transfers (a download that stops mid-body, an upload never answered): cancelled
//!   after `stall_timeout` and retried, or, if they keep stalling, an error naming the stall;
//! - `kill -9` in the middle of a push or a pull: the version never shows half-written, and
//!   the rerun sends or fetches only what is missing;
//! - `--limit-rate` really slows transfers down (lower bounds only, never an upper timing bound);
//! - permanent errors (403) fail at once, without retries, with a one-line message.
//!
//! The proxy speaks just enough HTTP/1.1: it reads one request (head, then a `Content-Length`
//! or chunked body), forwards it over a fresh upstream connection with `Connection: close`,
//! reads the whole response until the store closes, and hands it back on the client's
//! keep-alive connection. Faults are decided per request from a seeded RNG
//! (`MVAULT_FAULT_SEED` overrides the seed; every assertion message names it).

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{Backend, Env, assert_same_tree, noise, required, s, walk, write_file};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const MIB: u64 = 1 << 20;
/// Largest chunk of the default chunking parameters (format 1).
const MAX_CHUNK: u64 = 2 * MIB;
/// Default `--jobs`.
const DEFAULT_JOBS: u64 = 16;

// ---------------------------------------------------------------------------------------------
// The fault-injecting proxy

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Forward everything untouched (used to count what a client sends).
    Pass,
    /// Inject one of [`FAULTS`] into each request with probability `p`.
    Faults { p: f64 },
    /// Answer `403 AccessDenied` to every request; forward nothing.
    Deny,
    /// Stall the first `first` chunk GETs ([`Fault::Stall`]); forward everything else.
    StallChunkGets { first: usize },
    /// Flip a byte in the body of the first `first` chunk GETs ([`Fault::Flip`]).
    FlipChunkGets { first: usize },
    /// Leave the first `first` chunk PUTs (loose chunks and packs) unanswered
    /// ([`Fault::Hang`]); forward everything else.
    HangChunkPuts { first: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fault {
    /// Reset the connection (RST) after reading the request; the store never sees it.
    ResetBefore,
    /// Forward the request, then reset instead of answering: the store applied it, the client
    /// does not know.
    ResetAfter,
    /// Forward, deliver the first half of the response, then close the connection.
    Truncate,
    /// `500 InternalError` without forwarding.
    Status500,
    /// `503 SlowDown` without forwarding.
    Status503,
    /// Wait 200 ms, then forward normally.
    Delay,
    /// Forward, deliver the head and half the body, then send nothing more, holding the
    /// connection open until the client gives up (a hung transfer, as on a broken link).
    Stall,
    /// Forward, and answer with the last byte of the body flipped (damage in transit that
    /// no transport checksum caught).
    Flip,
    /// Read the whole request, forward nothing and answer nothing, holding the connection
    /// open until the client gives up (an upload whose answer never comes).
    Hang,
}

const FAULTS: [Fault; 6] = [
    Fault::ResetBefore,
    Fault::ResetAfter,
    Fault::Truncate,
    Fault::Status500,
    Fault::Status503,
    Fault::Delay,
];

impl Fault {
    /// True when the client sees a failed attempt (everything but a delay).
    fn fails_attempt(self) -> bool {
        self != Fault::Delay
    }
}

/// One request the proxy handled.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    /// Request body bytes received from the client.
    body_len: u64,
    /// Status of the response the client got whole (`None`: no complete response).
    status: Option<u16>,
    fault: Option<Fault>,
    /// The store could not be reached or did not answer (the client got a reset).
    upstream_error: bool,
}

impl Seen {
    /// A PUT of a chunk object, loose or a pack (not a pack's index).
    fn is_chunk_put(&self) -> bool {
        self.method == "PUT" && is_chunk_target(&self.target)
    }
}

/// Whether a request target names chunk data: a loose chunk object or a pack (whose ranges
/// are chunk objects), not a pack's index.
fn is_chunk_target(target: &str) -> bool {
    let path = target.split('?').next().unwrap_or(target);
    path.contains("/chunks/") || (path.contains("/packs/") && !path.ends_with(".index"))
}

struct Shared {
    /// `host:port` of the store.
    upstream: String,
    mode: Mode,
    rng: Mutex<fastrand::Rng>,
    log: Mutex<Vec<Seen>>,
    /// Requests read but not yet finished.
    inflight: AtomicI64,
    /// Chunk requests stalled, flipped or left hanging so far ([`Mode::StallChunkGets`],
    /// [`Mode::FlipChunkGets`], [`Mode::HangChunkPuts`]).
    stalled: std::sync::atomic::AtomicUsize,
}

impl Shared {
    fn pick(&self, head: &Head) -> Option<Fault> {
        let chunk_get = head.method == "GET" && is_chunk_target(&head.target);
        let chunk_put = head.method == "PUT" && is_chunk_target(&head.target);
        if let Mode::StallChunkGets { first }
        | Mode::FlipChunkGets { first }
        | Mode::HangChunkPuts { first } = self.mode
        {
            let (fault, chosen) = match self.mode {
                Mode::StallChunkGets { .. } => (Fault::Stall, chunk_get),
                Mode::FlipChunkGets { .. } => (Fault::Flip, chunk_get),
                _ => (Fault::Hang, chunk_put),
            };
            return (chosen && self.stalled.fetch_add(1, Ordering::SeqCst) < first)
                .then_some(fault);
        }
        let Mode::Faults { p } = self.mode else {
            return None;
        };
        let mut rng = self.rng.lock().unwrap();
        if rng.f64() < p {
            Some(FAULTS[rng.usize(..FAULTS.len())])
        } else {
            None
        }
    }
}

/// Counts a request as in flight until dropped.
struct Busy<'a>(&'a AtomicI64);

impl<'a> Busy<'a> {
    fn new(c: &'a AtomicI64) -> Busy<'a> {
        c.fetch_add(1, Ordering::SeqCst);
        Busy(c)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Proxy {
    rt: Option<tokio::runtime::Runtime>,
    port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Starts a proxy on 127.0.0.1 (random port) in front of the moto endpoint.
    fn start(mode: Mode, seed: u64) -> Proxy {
        let ep = required("MVAULT_TEST_S3_ENDPOINT");
        let upstream = ep
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        assert!(
            !upstream.contains('/') && !ep.starts_with("https"),
            "the proxy needs a plain http://host:port endpoint, got {ep}"
        );
        let shared = Arc::new(Shared {
            upstream,
            mode,
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            log: Mutex::new(Vec::new()),
            inflight: AtomicI64::new(0),
            stalled: std::sync::atomic::AtomicUsize::new(0),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sh = shared.clone();
        rt.spawn(async move {
            let listener = TcpListener::from_std(listener).expect("tokio listener");
            loop {
                match listener.accept().await {
                    Ok((sock, _)) => {
                        let _ = sock.set_nodelay(true);
                        tokio::spawn(serve(sock, sh.clone()));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        });
        Proxy {
            rt: Some(rt),
            port,
            shared,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `env.remote` with the proxy as its endpoint.
    fn remote_for(&self, env: &Env) -> String {
        let direct = format!("endpoint={}", required("MVAULT_TEST_S3_ENDPOINT"));
        assert!(
            env.remote.contains(&direct),
            "{} lacks {direct}",
            env.remote
        );
        env.remote
            .replace(&direct, &format!("endpoint={}", self.endpoint()))
    }

    fn log(&self) -> Vec<Seen> {
        self.shared.log.lock().unwrap().clone()
    }

    fn log_len(&self) -> usize {
        self.shared.log.lock().unwrap().len()
    }

    /// Chunk uploads that got a 2xx answer, among requests logged from index `from` on.
    fn chunk_puts_ok_since(&self, from: usize) -> usize {
        self.shared.log.lock().unwrap()[from..]
            .iter()
            .filter(|s| s.is_chunk_put() && s.status.is_some_and(|c| (200..300).contains(&c)))
            .count()
    }

    /// Body bytes of every chunk upload received whole (answered or not), from index `from` on.
    fn chunk_put_bytes_since(&self, from: usize) -> u64 {
        self.shared.log.lock().unwrap()[from..]
            .iter()
            .filter(|s| s.is_chunk_put())
            .map(|s| s.body_len)
            .sum()
    }

    /// Waits until no request is being handled (e.g. after its client was killed).
    fn wait_idle(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.shared.inflight.load(Ordering::SeqCst) > 0 {
            assert!(Instant::now() < deadline, "proxy still busy after 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Let the store finish whatever it just received.
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// A parsed request head.
struct Head {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn parse(raw: &[u8]) -> Option<Head> {
        let text = std::str::from_utf8(raw).ok()?;
        let mut lines = text.split("\r\n");
        let mut first = lines.next()?.split_whitespace();
        let (method, target, version) = (first.next()?, first.next()?, first.next()?);
        let headers = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Some(Head {
            method: method.to_string(),
            target: target.to_string(),
            version: version.to_string(),
            headers,
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn is_hop_header(name: &str) -> bool {
    ["connection", "keep-alive", "proxy-connection"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

/// Reads a request or response head up to and including the blank line; `None` on a clean EOF
/// before the first byte.
async fn read_head(r: &mut BufReader<TcpStream>) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let n = r.read_until(b'\n', &mut head).await?;
        if n == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        if head == b"\r\n" {
            head.clear(); // stray CRLF between requests
        } else if head.ends_with(b"\r\n\r\n") {
            return Ok(Some(head));
        } else if head.len() > 1 << 20 {
            return Err(io::Error::other("request head too large"));
        }
    }
}

/// Reads the request body as sent (a chunked body is kept in its chunked framing).
async fn read_body(r: &mut BufReader<TcpStream>, h: &Head) -> io::Result<Vec<u8>> {
    if let Some(cl) = h.header("content-length") {
        let n: usize = cl
            .parse()
            .map_err(|_| io::Error::other("bad content-length"))?;
        let mut body = vec![0; n];
        r.read_exact(&mut body).await?;
        return Ok(body);
    }
    let chunked = h
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if !chunked {
        return Ok(Vec::new());
    }
    let mut raw = Vec::new();
    loop {
        let start = raw.len();
        if r.read_until(b'\n', &mut raw).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = String::from_utf8_lossy(&raw[start..]).to_string();
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| io::Error::other(format!("bad chunk size line {line:?}")))?;
        if size == 0 {
            loop {
                let s = raw.len();
                if r.read_until(b'\n', &mut raw).await? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                if &raw[s..] == b"\r\n" {
                    return Ok(raw);
                }
            }
        }
        let s = raw.len();
        raw.resize(s + size + 2, 0);
        r.read_exact(&mut raw[s..]).await?;
    }
}

/// One client connection: requests one after the other (keep-alive).
async fn serve(sock: TcpStream, sh: Arc<Shared>) {
    let mut client = BufReader::new(sock);
    loop {
        let raw = match read_head(&mut client).await {
            Ok(Some(h)) => h,
            _ => return,
        };
        let _busy = Busy::new(&sh.inflight);
        let Some(head) = Head::parse(&raw) else {
            return;
        };
        let Ok(body) = read_body(&mut client, &head).await else {
            return;
        };
        let fault = sh.pick(&head);
        let mut seen = Seen {
            method: head.method.clone(),
            target: head.target.clone(),
            body_len: body.len() as u64,
            status: None,
            fault,
            upstream_error: false,
        };
        // Logged on receipt (the client may act on the answer before we log again), completed
        // once answered.
        let idx = {
            let mut log = sh.log.lock().unwrap();
            log.push(seen.clone());
            log.len() - 1
        };
        let keep = handle(&mut client, &sh, &head, &body, &mut seen).await;
        sh.log.lock().unwrap()[idx] = seen;
        if !keep {
            return;
        }
    }
}

/// Answers one request; returns whether the client connection stays usable.
async fn handle(
    client: &mut BufReader<TcpStream>,
    sh: &Shared,
    head: &Head,
    body: &[u8],
    seen: &mut Seen,
) -> bool {
    let is_head = head.method == "HEAD";
    if sh.mode == Mode::Deny {
        return reply_error(client, 403, "AccessDenied", is_head, seen).await;
    }
    match seen.fault {
        Some(Fault::Status500) => {
            return reply_error(client, 500, "InternalError", is_head, seen).await;
        }
        Some(Fault::Status503) => {
            return reply_error(client, 503, "SlowDown", is_head, seen).await;
        }
        Some(Fault::ResetBefore) => {
            reset(client);
            return false;
        }
        Some(Fault::Delay) => tokio::time::sleep(Duration::from_millis(200)).await,
        Some(Fault::Hang) => {
            hold_until_client_leaves(client).await;
            return false;
        }
        _ => {}
    }
    let resp = match forward(&sh.upstream, head, body).await {
        Ok(r) => r,
        Err(_) => {
            seen.upstream_error = true;
            reset(client);
            return false;
        }
    };
    match seen.fault {
        Some(Fault::ResetAfter) => {
            reset(client);
            false
        }
        Some(Fault::Stall) => {
            let cut = resp.len() / 2;
            let _ = client.write_all(&resp[..cut]).await;
            let _ = client.flush().await;
            hold_until_client_leaves(client).await;
            false
        }
        Some(Fault::Truncate) => {
            let cut = resp.len() / 2;
            let _ = client.write_all(&resp[..cut]).await;
            let _ = client.flush().await;
            let _ = client.shutdown().await;
            false
        }
        fault => {
            let (mut out, keep, status) = rewrite_response(&resp, is_head);
            if fault == Some(Fault::Flip)
                && let Some(last) = out.last_mut()
            {
                *last ^= 0x01;
            }
            if client.write_all(&out).await.is_err() || client.flush().await.is_err() {
                return false;
            }
            seen.status = status;
            keep
        }
    }
}

/// Sends nothing more until the client hangs up (or two minutes, a test's bound).
async fn hold_until_client_leaves(client: &mut BufReader<TcpStream>) {
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(120), async {
        while let Ok(n) = client.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Drops the connection with a TCP reset (SO_LINGER 0).
fn reset(client: &mut BufReader<TcpStream>) {
    let _ = client.get_ref().set_zero_linger();
}

/// An S3-style error answer; the connection stays open.
async fn reply_error(
    client: &mut BufReader<TcpStream>,
    code: u16,
    s3_code: &str,
    is_head: bool,
    seen: &mut Seen,
) -> bool {
    let reason = match code {
        403 => "Forbidden",
        500 => "Internal Server Error",
        _ => "Service Unavailable",
    };
    let body = if is_head {
        String::new()
    } else {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{s3_code}</Code>\
             <Message>injected by the faults proxy</Message>\
             <RequestId>faults-e2e</RequestId></Error>"
        )
    };
    let msg = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         x-amz-request-id: faults-e2e\r\n\r\n{body}",
        body.len()
    );
    if client.write_all(msg.as_bytes()).await.is_err() || client.flush().await.is_err() {
        return false;
    }
    seen.status = Some(code);
    true
}

/// Sends the request to the store over a fresh connection and returns the raw response.
async fn forward(upstream: &str, head: &Head, body: &[u8]) -> io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    let mut out = Vec::with_capacity(body.len() + 2048);
    out.extend_from_slice(
        format!("{} {} {}\r\n", head.method, head.target, head.version).as_bytes(),
    );
    for (k, v) in head.headers.iter().filter(|(k, _)| !is_hop_header(k)) {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(body);
    up.write_all(&out).await?;
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), up.read_to_end(&mut resp))
        .await
        .map_err(|_| io::Error::other("store did not answer"))??;
    if resp.is_empty() {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(resp)
}

/// Makes the store's `Connection: close` response fit the client's keep-alive connection:
/// drops hop-by-hop headers, and closes the client connection only when the body is
/// delimited by the end of the connection. Returns (bytes, keep-alive, status).
fn rewrite_response(resp: &[u8], is_head: bool) -> (Vec<u8>, bool, Option<u16>) {
    let Some(end) = resp.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (resp.to_vec(), false, None);
    };
    let text = String::from_utf8_lossy(&resp[..end]).to_string();
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: Option<u16> = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok());
    let headers: Vec<(&str, &str)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    let code = status.unwrap_or(0);
    let delimited = is_head
        || (100..200).contains(&code)
        || code == 204
        || code == 304
        || has("content-length")
        || chunked;
    let mut out = Vec::with_capacity(resp.len() + 64);
    let rest_of_status = status_line.split_once(' ').map_or("", |x| x.1);
    out.extend_from_slice(format!("HTTP/1.1 {rest_of_status}\r\n").as_bytes());
    for (k, v) in headers.iter().filter(|(k, _)| !is_hop_header(k)) {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    if !delimited {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&resp[end + 4..]);
    (out, delimited, status)
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn seed() -> u64 {
    std::env::var("MVAULT_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x005e_edf4_u64)
}

/// Runs `mvault ARGS` against `remote` (e.g. through a proxy).
fn run_via(env: &Env, remote: &str, args: &[&str]) -> Output {
    env.cmd()
        .env("MVAULT_REMOTE", remote)
        .args(args)
        .output()
        .expect("mvault runs")
}

/// `mvault --json ARGS` against `remote`, asserting success.
fn json_via(env: &Env, remote: &str, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = run_via(env, remote, &all);
    assert!(
        out.status.success(),
        "mvault {all:?} failed ({:?}):\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON on stdout")
}

fn spawn_via(env: &Env, remote: &str, args: &[&str]) -> Child {
    env.cmd()
        .env("MVAULT_REMOTE", remote)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mvault")
}

/// Polls `cond` until true; panics if the child ends first (the kill point was never reached)
/// or after a minute.
fn wait_for(child: &mut Child, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if cond() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("mvault ended ({status}) before {what}: the kill point was never reached");
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// `kill -9`, asserting the process was still running.
fn kill9(child: &mut Child, what: &str) {
    if let Some(status) = child.try_wait().unwrap() {
        panic!("mvault already ended ({status}) at kill point {what}");
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        None,
        "{what}: expected death by signal, got {status}"
    );
}

fn u64_at(v: &Value, ptr: &str) -> u64 {
    v.pointer(ptr)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no integer at {ptr} in {v}"))
}

/// Complete blobs in the cache: (digest hex, size).
fn cached_blobs(cache: &Path) -> Vec<(String, u64)> {
    walk(&cache.join("blobs"))
        .into_iter()
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            let size = std::fs::metadata(&p).ok()?.len();
            Some((name, size))
        })
        .collect()
}

/// Stored size of every chunk object, by chunk id.
fn stored_chunks(env: &Env) -> HashMap<String, u64> {
    env.list_objects("chunks/")
        .into_iter()
        .map(|(k, s)| (k.rsplit('/').next().unwrap().to_string(), s))
        .collect()
}

/// Placement temporaries (`.NAME.mvault-XXXXXXXX`) under a pull target.
fn placement_temps(target: &Path) -> HashSet<String> {
    walk(target)
        .into_iter()
        .map(|f| {
            f.strip_prefix(target)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|rel| !rel.starts_with(".mvault/") && rel.contains(".mvault-"))
        .collect()
}

fn elapsed_s(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// 1. Transient faults: push and pull through 5% injected faults end byte-exact.

#[test]
fn push_and_pull_survive_injected_faults() {
    let env = Env::new(Backend::S3);
    let seed = seed();
    let proxy = Proxy::start(Mode::Faults { p: 0.05 }, seed);
    let remote = proxy.remote_for(&env);

    // 256 MiB in all: one large file, four shards in a sub-directory, a small config.
    let src = env.path("model");
    write_file(&src.join("weights.bin"), &noise(seed, (224 * MIB) as usize));
    for i in 0..4u64 {
        let f = src.join(format!("shards/part-{i}.bin"));
        write_file(&f, &noise(seed + 1 + i, (8 * MIB) as usize));
    }
    let config = b"{\"layers\": 24, \"hidden\": 1024}\n";
    write_file(&src.join("config.json"), config);
    let total = 256 * MIB + config.len() as u64;

    let push = json_via(
        &env,
        &remote,
        &[
            "push",
            s(&src),
            "--name",
            "faulty",
            "--version",
            "1.0.0",
            "--no-pack",
        ],
    );
    proxy.wait_idle();
    let push_log = proxy.log();
    let injected = |log: &[Seen]| -> (usize, usize, HashSet<Fault>) {
        let failing = log
            .iter()
            .filter(|s| s.fault.is_some_and(Fault::fails_attempt) || s.upstream_error)
            .count();
        let all = log.iter().filter(|s| s.fault.is_some()).count();
        let kinds = log.iter().filter_map(|s| s.fault).collect();
        (failing, all, kinds)
    };
    let (failing, all, kinds) = injected(&push_log);
    let retries = u64_at(&push, "/summary/retries");
    eprintln!(
        "seed {seed}: push made {} requests, {all} faults ({failing} failing), kinds {kinds:?}, \
         {retries} retries",
        push_log.len()
    );
    assert!(
        failing >= 10,
        "seed {seed}: the proxy injected only {failing} failing faults into {} requests",
        push_log.len()
    );
    assert!(
        retries > 0,
        "seed {seed}: push went through {failing} injected failures but reports no retries: {push}"
    );
    assert!(
        retries as usize <= failing,
        "seed {seed}: push reports {retries} retries for only {failing} failed attempts"
    );
    assert_eq!(u64_at(&push, "/file_size"), total, "seed {seed}");
    assert_eq!(
        u64_at(&push, "/summary/bytes_local"),
        total,
        "seed {seed}: {push}"
    );

    // The version is whole: info works directly against the store.
    let info = env.json(&["info", "faulty@1.0.0"]);
    assert_eq!(u64_at(&info, "/file_size"), total, "seed {seed}");

    let before_pull = proxy.log_len();
    let out = env.path("out");
    let pull = json_via(&env, &remote, &["pull", "faulty@1.0.0", "--to", s(&out)]);
    proxy.wait_idle();
    let pull_log = proxy.log()[before_pull..].to_vec();
    let (failing, _, _) = injected(&pull_log);
    let retries = u64_at(&pull, "/summary/retries");
    eprintln!(
        "seed {seed}: pull made {} requests, {failing} failing faults, {retries} retries",
        pull_log.len()
    );
    assert!(
        retries > 0 && retries as usize <= failing,
        "seed {seed}: pull went through {failing} injected failures, reports {retries} retries"
    );
    assert!(
        u64_at(&pull, "/summary/bytes_remote") >= 256 * MIB,
        "seed {seed}: a cold pull must fetch every chunk: {pull}"
    );
    assert_same_tree(&src, &out);
}

// ---------------------------------------------------------------------------------------------
// 2. kill -9 in the middle of a push, then of a pull.

#[test]
fn killed_push_never_shows_the_version_and_the_rerun_sends_only_what_is_missing() {
    let env = Env::new(Backend::S3);
    // Counting proxy: what each (killed) run really sent.
    let proxy = Proxy::start(Mode::Pass, 0);
    let remote = proxy.remote_for(&env);
    let seed = seed() ^ 0xc0ffee;
    // 96 MiB, so that enough is stored before the last kill to exceed the in-flight allowance
    // (16 jobs x 2 MiB) by a wide margin.
    let src = env.path("model");
    write_file(&src.join("weights.bin"), &noise(seed, (88 * MIB) as usize));
    write_file(
        &src.join("extra/head.bin"),
        &noise(seed + 1, (8 * MIB) as usize),
    );
    let total_plain = 96 * MIB;

    let slow = [
        "-q",
        "push",
        s(&src),
        "--name",
        "resumable",
        "--version",
        "1.0.0",
        // Counts loose chunk objects (the packed resume is `killed_packed_push_...`).
        "--no-pack",
        "--limit-rate",
        "8M",
    ];
    enum KillAt {
        Time(Duration),
        /// After this many more chunk uploads were answered.
        Chunks(usize),
    }
    let points = [
        KillAt::Time(Duration::from_millis(500)),
        KillAt::Chunks(16),
        KillAt::Chunks(72),
    ];
    let mut uploaded = 0u64;
    for (i, point) in points.iter().enumerate() {
        let start = proxy.log_len();
        let mut child = spawn_via(&env, &remote, &slow);
        let what = match point {
            KillAt::Time(d) => {
                std::thread::sleep(*d);
                format!("#{i}: {d:?} after start")
            }
            KillAt::Chunks(n) => {
                let what = format!("#{i}: {n} chunks uploaded");
                wait_for(&mut child, &what, || proxy.chunk_puts_ok_since(start) >= *n);
                what
            }
        };
        kill9(&mut child, &what);
        proxy.wait_idle();

        // The version does not exist, whole or in part.
        env.fails(3, &["versions", "resumable"]);
        env.fails(3, &["info", "resumable@1.0.0"]);
        let manifests = env.list_objects("models/");
        assert!(
            manifests.is_empty(),
            "kill {what}: manifest objects {manifests:?}"
        );

        // This run sent only chunks that were not stored yet.
        let now: u64 = stored_chunks(&env).values().sum();
        let sent = proxy.chunk_put_bytes_since(start);
        eprintln!("kill {what}: stored {uploaded} -> {now} bytes, this run sent {sent}");
        assert!(
            now >= uploaded,
            "kill {what}: stored chunks shrank: {uploaded} -> {now}"
        );
        assert!(
            sent <= now - uploaded,
            "kill {what}: the run sent {sent} chunk bytes but only {} new bytes were stored: \
             it re-sent chunks the store already had",
            now - uploaded
        );
        uploaded = now;
    }
    // Otherwise the bound below proves nothing.
    assert!(
        uploaded > DEFAULT_JOBS * MAX_CHUNK + 8 * MIB,
        "only {uploaded} bytes stored before the rerun"
    );

    let start = proxy.log_len();
    let rerun = json_via(
        &env,
        &remote,
        &[
            "push",
            s(&src),
            "--name",
            "resumable",
            "--version",
            "1.0.0",
            "--no-pack",
        ],
    );
    let total: u64 = stored_chunks(&env).values().sum();
    let resent = u64_at(&rerun, "/summary/bytes_remote");
    eprintln!("rerun: {resent} bytes sent, {total} stored in all, {uploaded} before");
    assert!(
        resent <= total - uploaded + DEFAULT_JOBS * MAX_CHUNK,
        "rerun sent {resent} bytes; total {total}, already stored {uploaded}: \
         it re-sent chunks that were there"
    );
    assert!(
        proxy.chunk_put_bytes_since(start) <= total - uploaded + DEFAULT_JOBS * MAX_CHUNK,
        "rerun put {} chunk bytes on the wire",
        proxy.chunk_put_bytes_since(start)
    );
    assert_eq!(u64_at(&rerun, "/file_size"), total_plain);

    // Now the version exists and is intact.
    let versions = env.json(&["versions", "resumable"]);
    assert_eq!(versions.as_array().map(Vec::len), Some(1), "{versions}");
    let out = env.path("out");
    env.ok(&["-q", "pull", "resumable@1.0.0", "--to", s(&out)]);
    assert_same_tree(&src, &out);
}

#[test]
fn killed_pull_keeps_complete_files_and_the_rerun_fetches_only_the_rest() {
    let env = Env::new(Backend::S3);
    let seed = seed() ^ 0xfeed;
    // 32 files of 1 MiB: a pull assembles each file whole, so progress is counted in files.
    let src = env.path("model");
    let n_files = 32usize;
    for i in 0..n_files {
        let f = src.join(format!("layers/layer-{i:02}.bin"));
        write_file(&f, &noise(seed + i as u64, MIB as usize));
    }
    env.ok(&[
        "-q",
        "push",
        s(&src),
        "--name",
        "big",
        "--version",
        "1.0.0",
        "--no-pack",
    ]);
    let stored = stored_chunks(&env);
    let total: u64 = stored.values().sum();
    let manifest: Value =
        serde_json::from_slice(&env.read_object("models/big/versions/1.0.0.json")).unwrap();
    let files = manifest["files"].as_array().expect("files").clone();
    assert_eq!(files.len(), n_files);

    // Pull at 4 MiB/s (about 8 s in all); kill once 8 files are complete in the cache.
    let out = env.path("out");
    let cache = env.cache_dir();
    let mut child = spawn_via(
        &env,
        &env.remote,
        &[
            "-q",
            "pull",
            "big@1.0.0",
            "--to",
            s(&out),
            "--limit-rate",
            "4M",
        ],
    );
    wait_for(&mut child, "8 files cached", || {
        cached_blobs(&cache).len() >= 8
    });
    kill9(&mut child, "8 files cached");

    // Only complete, verified files are in blobs/; anything partial stayed under tmp/.
    let blobs = cached_blobs(&cache);
    assert!(
        blobs.len() < n_files,
        "the pull finished before the kill: {}",
        blobs.len()
    );
    for (name, _) in &blobs {
        let path = cache.join("blobs").join(&name[..2]).join(name);
        let digest = blake3::hash(&std::fs::read(&path).unwrap())
            .to_hex()
            .to_string();
        assert_eq!(
            &digest,
            name,
            "cached blob {} is not what its name says",
            path.display()
        );
    }
    // The target never holds a partial file.
    for f in walk(&out) {
        let rel = f.strip_prefix(&out).unwrap();
        if rel.starts_with(".mvault") || rel.file_name().unwrap().to_string_lossy().starts_with('.')
        {
            continue;
        }
        let want = std::fs::read(src.join(rel)).unwrap();
        assert!(
            std::fs::read(&f).unwrap() == want,
            "{} is partial",
            rel.display()
        );
    }
    let tmp_left = walk(&cache.join("tmp")).len();
    let temps_after_kill = placement_temps(&out);

    // Stored bytes of the files complete in the cache: the rerun must not fetch them again.
    let cached: HashSet<&str> = blobs.iter().map(|(n, _)| n.as_str()).collect();
    let cached_stored: u64 = files
        .iter()
        .filter(|f| cached.contains(f["digest"].as_str().unwrap()))
        .flat_map(|f| f["chunks"].as_array().unwrap().iter())
        .map(|c| stored[c["id"].as_str().unwrap()])
        .sum();
    assert!(cached_stored > 0);

    let rerun = env.json(&["pull", "big@1.0.0", "--to", s(&out)]);
    let fetched = u64_at(&rerun, "/summary/bytes_remote");
    eprintln!(
        "killed pull left {} blobs ({cached_stored} stored bytes) and {tmp_left} tmp files; \
         rerun fetched {fetched} of {total}",
        blobs.len()
    );
    assert!(
        fetched <= total - cached_stored,
        "rerun fetched {fetched} bytes; total {total}, {cached_stored} already complete in cache"
    );
    // The rerun places every file by link-or-copy to a temporary name, then rename; it must
    // not leave its temporaries behind (those of the killed run may remain: it had no chance).
    let left: Vec<_> = placement_temps(&out)
        .into_iter()
        .filter(|t| !temps_after_kill.contains(t))
        .collect();
    assert!(
        left.is_empty(),
        "the rerun left temporary files in the target directory: {left:?} (files already \
         materialized as hard links of their cached blob were placed again: rename(2) of one \
         hard link onto another of the same inode is a no-op that leaves the source name)"
    );
    assert_same_tree(&src, &out);
}

// ---------------------------------------------------------------------------------------------
// 3. --limit-rate (lower bounds only).

#[test]
fn limit_rate_slows_push_and_pull() {
    let env = Env::new(Backend::S3);
    let src = env.path("model");
    write_file(
        &src.join("w.bin"),
        &noise(seed() ^ 0x4a7e, (16 * MIB) as usize),
    );

    // 16 MiB at 4 MiB/s: at least (16 / 4 - 1) s.
    let t = Instant::now();
    let push = env.json(&[
        "push",
        s(&src),
        "--name",
        "slow",
        "--version",
        "1.0.0",
        "--limit-rate",
        "4M",
    ]);
    let wall = elapsed_s(t);
    let reported = push["summary"]["seconds"].as_f64().unwrap();
    assert!(wall >= 3.0, "push of 16 MiB at 4M took {wall:.2}s");
    assert!(
        reported >= 3.0,
        "push of 16 MiB at 4M reports {reported:.2}s: {push}"
    );

    let out = env.path("out");
    let t = Instant::now();
    let pull = env.json(&["pull", "slow@1.0.0", "--to", s(&out), "--limit-rate", "4M"]);
    let wall = elapsed_s(t);
    let reported = pull["summary"]["seconds"].as_f64().unwrap();
    assert!(u64_at(&pull, "/summary/bytes_remote") >= 16 * MIB, "{pull}");
    assert!(wall >= 3.0, "pull of 16 MiB at 4M took {wall:.2}s");
    assert!(
        reported >= 3.0,
        "pull of 16 MiB at 4M reports {reported:.2}s: {pull}"
    );
    assert_same_tree(&src, &out);
}

// ---------------------------------------------------------------------------------------------
// 4. Permanent errors fail fast.

#[test]
fn access_denied_fails_at_once_without_retries() {
    let env = Env::new(Backend::S3);
    let proxy = Proxy::start(Mode::Deny, 0);
    let remote = proxy.remote_for(&env);
    let src = env.path("model");
    write_file(&src.join("w.bin"), b"weights");
    let out_dir = env.path("out");

    let cases: [(&str, Vec<&str>); 3] = [
        ("list", vec!["list"]),
        (
            "push",
            vec!["push", s(&src), "--name", "denied", "--version", "1.0.0"],
        ),
        ("pull", vec!["pull", "denied@1.0.0", "--to", s(&out_dir)]),
    ];
    for (what, args) in cases {
        let start = proxy.log_len();
        let out = run_via(&env, &remote, &args);
        proxy.wait_idle();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{what} against a store answering 403: stderr:\n{stderr}"
        );
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "{what}: expected a one-line message, got:\n{stderr}"
        );
        assert!(
            lines[0].to_lowercase().contains("access denied"),
            "{what}: message does not say access denied: {stderr}"
        );
        let seen: Vec<String> = proxy.log()[start..]
            .iter()
            .map(|s| format!("{} {}", s.method, s.target))
            .collect();
        // A command may start with up to four independent reads at once (push: the version
        // check, its stale signature check, the vault's encryption record and the gc records'
        // listing; pull: the manifest and its signature); none may be sent again.
        let distinct: std::collections::HashSet<&String> = seen.iter().collect();
        assert!(
            (1..=4).contains(&seen.len()) && distinct.len() == seen.len(),
            "{what}: a permanent error must not be retried; requests: {seen:#?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Stalled transfers and resumed pulls.

/// A model directory holding `weights.bin` (`len` seeded noise bytes, `salt` mixed into the
/// seed), pushed directly (no proxy) as `name@1.0.0` with `extra` push flags.
fn pushed_noise(env: &Env, name: &str, salt: u64, len: u64, extra: &[&str]) -> std::path::PathBuf {
    let src = env.path("model");
    write_file(
        &src.join("weights.bin"),
        &noise(seed() ^ salt, len as usize),
    );
    let mut args = vec!["-q", "push", s(&src), "--name", name, "--version", "1.0.0"];
    args.extend_from_slice(extra);
    env.ok(&args);
    src
}

#[test]
fn stalled_downloads_are_cancelled_and_retried() {
    let env = Env::new(Backend::S3);
    let src = pushed_noise(&env, "hang", 0x57a1, 6 * MIB, &[]);

    let proxy = Proxy::start(Mode::StallChunkGets { first: 3 }, seed());
    let remote = format!("{}&stall_timeout=1", proxy.remote_for(&env));
    let out = env.path("out");
    let pull = json_via(&env, &remote, &["pull", "hang@1.0.0", "--to", s(&out)]);
    proxy.wait_idle();
    let stalls = proxy
        .log()
        .iter()
        .filter(|r| r.fault == Some(Fault::Stall))
        .count();
    assert_eq!(stalls, 3, "the proxy stalled three chunk downloads");
    assert!(
        u64_at(&pull, "/summary/retries") >= 3,
        "every stalled download was retried: {pull}"
    );
    assert_same_tree(&src, &out);
}

/// A pull checks each chunk against its name only when the assembled file fails its hash
/// (FORMAT.md, pull step 3): chunks damaged in transit are then found, fetched again, checked
/// on their own, and the pull ends byte-exact; damage that stays fails with exit 5, naming
/// the chunk.
#[test]
fn chunks_damaged_in_transit_are_found_and_fetched_again() {
    let env = Env::new(Backend::S3);
    let src = pushed_noise(&env, "flip", 0xf11b, 6 * MIB, &["--no-pack"]);

    let proxy = Proxy::start(Mode::FlipChunkGets { first: 2 }, seed());
    let remote = proxy.remote_for(&env);
    let out = env.path("out");
    let pull = json_via(&env, &remote, &["pull", "flip@1.0.0", "--to", s(&out)]);
    proxy.wait_idle();
    let log = proxy.log();
    let flips = log.iter().filter(|r| r.fault == Some(Fault::Flip)).count();
    assert_eq!(flips, 2, "the proxy damaged two chunk downloads");
    let chunk_gets = log
        .iter()
        .filter(|r| r.method == "GET" && is_chunk_target(&r.target))
        .count() as u64;
    let chunks = env.list_objects("chunks/").len() as u64;
    assert_eq!(
        chunk_gets,
        chunks + 2,
        "only the two damaged chunks were fetched again"
    );
    assert_eq!(u64_at(&pull, "/summary/chunks_new"), chunks + 2, "{pull}");
    assert_same_tree(&src, &out);

    let proxy = Proxy::start(Mode::FlipChunkGets { first: usize::MAX }, seed());
    let remote = proxy.remote_for(&env);
    let (out, cache) = (env.path("out2"), env.path("cache2"));
    let args = [
        "--cache-dir",
        s(&cache),
        "pull",
        "flip@1.0.0",
        "--to",
        s(&out),
    ];
    let run = run_via(&env, &remote, &args);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(5), "{err}");
    assert!(
        err.contains("weights.bin: chunk ") && err.contains("hashes to"),
        "{err}"
    );
    assert!(!out.join("weights.bin").exists());
}

#[test]
fn a_pull_that_keeps_stalling_ends_with_an_error_naming_the_stall() {
    let env = Env::new(Backend::S3);
    pushed_noise(&env, "hang", 0x57a2, 2 * MIB, &[]);

    let proxy = Proxy::start(Mode::StallChunkGets { first: usize::MAX }, seed());
    let remote = format!("{}&stall_timeout=1&retries=1", proxy.remote_for(&env));
    let out = env.path("out");
    let run = run_via(&env, &remote, &["pull", "hang@1.0.0", "--to", s(&out)]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "a stalled pull fails: {err}");
    assert!(
        err.contains("stalled") && err.contains("chunks/") && err.contains("stall_timeout"),
        "the error names what stalled and the bound: {err}"
    );
    assert!(
        !out.join("weights.bin").exists(),
        "nothing is placed by a failed pull"
    );
}

/// An upload whose answer never comes (the store hung after the body) is cancelled after
/// `stall_timeout` and sent again: the push completes, the retries show in its summary, and
/// the version pulls byte-exact (the model's chunks go into packs; the next test's 2 MiB file
/// stays in loose chunks).
#[test]
fn stalled_uploads_are_cancelled_and_retried() {
    let env = Env::new(Backend::S3);
    let src = env.path("model");
    write_file(
        &src.join("weights.bin"),
        &noise(seed() ^ 0x0b10, 6 * MIB as usize),
    );
    for i in 0..40 {
        let name = format!("shard{i:02}.bin");
        write_file(&src.join(name), &noise(seed() ^ i, 200_000));
    }
    let proxy = Proxy::start(Mode::HangChunkPuts { first: 3 }, seed());
    let remote = format!("{}&stall_timeout=1", proxy.remote_for(&env));
    let args = ["push", s(&src), "--name", "up", "--version", "1.0.0"];
    let push = json_via(&env, &remote, &args);
    proxy.wait_idle();
    let log = proxy.log();
    let hung: Vec<&Seen> = log
        .iter()
        .filter(|r| r.fault == Some(Fault::Hang))
        .collect();
    assert_eq!(
        hung.len(),
        3,
        "the proxy left three chunk uploads unanswered"
    );
    assert!(
        hung.iter().all(|r| r.is_chunk_put() && r.body_len > 0),
        "{hung:?}"
    );
    assert!(
        u64_at(&push, "/summary/retries") >= 3,
        "every unanswered upload was sent again: {push}"
    );
    assert!(
        u64_at(&push, "/summary/packs_new") >= 1,
        "the model has packed chunks: {push}"
    );
    let out = env.path("out");
    env.ok(&["pull", "up@1.0.0", "--to", s(&out)]);
    assert_same_tree(&src, &out);
}

/// An upload that is never answered, however often it is sent, ends the push with exit 1 and
/// an error naming the stall and its bound; no version is published.
#[test]
fn a_push_that_keeps_stalling_ends_with_an_error_naming_the_stall() {
    let env = Env::new(Backend::S3);
    let src = env.path("model");
    write_file(
        &src.join("weights.bin"),
        &noise(seed() ^ 0x0b11, 2 * MIB as usize),
    );
    let proxy = Proxy::start(Mode::HangChunkPuts { first: usize::MAX }, seed());
    let remote = format!("{}&stall_timeout=1&retries=1", proxy.remote_for(&env));
    let args = ["push", s(&src), "--name", "up", "--version", "1.0.0"];
    let run = run_via(&env, &remote, &args);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "a stalled push fails: {err}");
    assert!(
        err.contains("stalled") && err.contains("stall_timeout"),
        "the error names the stall and the bound: {err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
    env.fails(3, &["info", "up@1.0.0"]); // not found: no version was published
}

/// Journal of a partial download in the cache: chunk indexes written, 4 bytes each.
fn journaled_chunks(cache: &Path) -> Vec<usize> {
    walk(&cache.join("tmp"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".journal"))
        .flat_map(|p| {
            let bytes = std::fs::read(p).unwrap();
            bytes
                .chunks_exact(4)
                .map(|r| u32::from_le_bytes(r.try_into().unwrap()) as usize)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn killed_pull_of_one_large_file_resumes_where_it_stopped() {
    let env = Env::new(Backend::S3);
    let src = env.path("model");
    write_file(
        &src.join("weights.bin"),
        &noise(seed() ^ 0x7e5e, (24 * MIB) as usize),
    );
    env.ok(&[
        "-q",
        "push",
        s(&src),
        "--name",
        "one",
        "--version",
        "1.0.0",
        "--no-pack",
    ]);
    let stored = stored_chunks(&env);
    let total: u64 = stored.values().sum();
    let manifest: Value =
        serde_json::from_slice(&env.read_object("models/one/versions/1.0.0.json")).unwrap();
    let chunks = manifest["files"][0]["chunks"].as_array().unwrap().clone();
    assert!(chunks.len() >= 12, "enough chunks to kill in the middle");

    // At 4 MiB/s, about 6 s in all: kill once a third of the chunks are written.
    let out = env.path("out");
    let cache = env.cache_dir();
    let args = [
        "-q",
        "pull",
        "one@1.0.0",
        "--to",
        s(&out),
        "--limit-rate",
        "4M",
    ];
    let mut child = spawn_via(&env, &env.remote, &args);
    wait_for(&mut child, "a third of the chunks written", || {
        journaled_chunks(&cache).len() >= chunks.len() / 3
    });
    kill9(&mut child, "a third of the chunks written");
    let written: HashSet<usize> = journaled_chunks(&cache).into_iter().collect();
    assert!(
        written.len() < chunks.len(),
        "the pull finished before the kill"
    );
    let kept: u64 = written
        .iter()
        .map(|&i| stored[chunks[i]["id"].as_str().unwrap()])
        .sum();

    let rerun = env.json(&["pull", "one@1.0.0", "--to", s(&out)]);
    let fetched = u64_at(&rerun, "/summary/bytes_remote");
    eprintln!(
        "killed pull had written {} of {} chunks ({kept} stored bytes); rerun fetched {fetched} \
         of {total}",
        written.len(),
        chunks.len()
    );
    assert!(
        fetched <= total - kept,
        "the rerun fetched {fetched} bytes again; {kept} of {total} were already written"
    );
    assert_same_tree(&src, &out);
    assert!(
        journaled_chunks(&cache).is_empty(),
        "the partial file's journal is gone once the blob is complete"
    );
}

/// A push ends with one partly filled pack per chunk worker. Each under half a pack would be
/// stored loose; together they are merged first: two 3 MiB files (one unit each, so on either
/// worker) end as one pack and nothing loose, and two of 1 MiB (2 MiB together) stay loose.
#[test]
fn last_partial_packs_are_merged_before_going_loose() {
    let env = Env::new(Backend::Fs);
    for (version, mib, packs_want) in [("1.0.0", 3, 1), ("2.0.0", 1, 0)] {
        let src = env.path(&format!("model-{version}"));
        for (i, name) in ["a.bin", "b.bin"].into_iter().enumerate() {
            let data = noise(seed() ^ (mib << 8) ^ i as u64, (mib * MIB) as usize);
            write_file(&src.join(name), &data);
        }
        // Objects stored: (packs without their indexes, loose chunks).
        let count = || {
            let packs = env.list_objects("packs/");
            let packs = packs.iter().filter(|(k, _)| !k.ends_with(".index")).count();
            (packs, env.list_objects("chunks/").len())
        };
        let (packs0, loose0) = count();
        env.ok(&["push", s(&src), "--name", "m", "--version", version]);
        let (packs, loose) = count();
        let (packs, loose) = (packs - packs0, loose - loose0);
        assert_eq!(packs, packs_want, "{version}: packs written");
        match packs_want {
            1 => assert_eq!(loose, 0, "{version}: nothing loose beside the merged pack"),
            _ => assert!(
                loose >= 2,
                "{version}: 2 MiB of chunks stored loose, {loose} objects"
            ),
        }
        let out = env.path(&format!("out-{version}"));
        env.ok(&["pull", &format!("m@{version}"), "--to", s(&out)]);
        assert_same_tree(&src, &out);
    }
}

#[test]
fn a_push_into_a_small_vault_lists_chunks_once_instead_of_a_stat_each() {
    let env = Env::new(Backend::S3);
    let proxy = Proxy::start(Mode::Pass, seed());
    let remote = proxy.remote_for(&env);
    let src = env.path("model");
    write_file(
        &src.join("weights.bin"),
        &noise(seed() ^ 0x1157, (8 * MIB) as usize),
    );
    let count = |log: &[Seen], method: &str| {
        log.iter()
            .filter(|r| r.method == method && r.target.contains("/chunks/"))
            .count()
    };
    let first = json_via(
        &env,
        &remote,
        &[
            "push",
            s(&src),
            "--name",
            "l",
            "--version",
            "1.0.0",
            "--no-pack",
        ],
    );
    proxy.wait_idle();
    let log = proxy.log();
    let chunks = u64_at(&first, "/summary/chunks_new") as usize;
    assert!(chunks > 4, "several chunks: {first}");
    assert_eq!(count(&log, "HEAD"), 0, "no stat per chunk: {log:?}");
    assert_eq!(count(&log, "PUT"), chunks, "each new chunk uploaded once");

    let from = proxy.log_len();
    let again = json_via(
        &env,
        &remote,
        &[
            "push",
            s(&src),
            "--name",
            "l",
            "--version",
            "1.0.1",
            "--no-pack",
        ],
    );
    proxy.wait_idle();
    let log = proxy.log()[from..].to_vec();
    assert_eq!(u64_at(&again, "/summary/chunks_new"), 0, "{again}");
    assert_eq!(
        (count(&log, "HEAD"), count(&log, "PUT")),
        (0, 0),
        "the listing found every chunk: {log:?}"
    );
    let out = env.path("out");
    env.ok(&["pull", "l@1.0.1", "--to", s(&out)]);
    assert_same_tree(&src, &out);
}

/// Packs (format 3) on the wire: a 40 MiB push of 512 KiB-chunked data sends a handful of
/// requests (a pack and its index per 8 MiB); a push killed after two packs were stored
/// reuses them when run again (found through their indexes), sending only the rest; a pull
/// reads neighbouring chunks in a pack with one ranged GET per run of up to 2 MiB.
#[test]
fn killed_packed_push_resumes_from_its_packs_and_pulls_read_whole_runs() {
    let env = Env::new(Backend::S3);
    let proxy = Proxy::start(Mode::Pass, 0);
    let remote = proxy.remote_for(&env);
    let src = env.path("model");
    write_file(
        &src.join("weights.bin"),
        &noise(seed() ^ 0x9ac5, (40 * MIB) as usize),
    );
    let is_index_put = |s: &Seen| {
        s.method == "PUT" && s.target.contains(".index") && s.status.is_some_and(|c| c < 300)
    };
    let slow = [
        "-q",
        "push",
        s(&src),
        "--name",
        "p",
        "--version",
        "1.0.0",
        "--limit-rate",
        "6M",
    ];
    let start = proxy.log_len();
    let mut child = spawn_via(&env, &remote, &slow);
    wait_for(&mut child, "two packs stored", || {
        proxy.log()[start..]
            .iter()
            .filter(|s| is_index_put(s))
            .count()
            >= 2
    });
    kill9(&mut child, "two packs stored");
    proxy.wait_idle();
    env.fails(3, &["versions", "p"]);
    let packed_before = env
        .list_objects("packs/")
        .iter()
        .filter(|(k, _)| k.ends_with(".index"))
        .count();
    assert!(packed_before >= 2);

    let start = proxy.log_len();
    let rerun = json_via(
        &env,
        &remote,
        &["push", s(&src), "--name", "p", "--version", "1.0.0"],
    );
    let log = proxy.log()[start..].to_vec();
    let reused = u64_at(&rerun, "/summary/chunks_reused");
    let new = u64_at(&rerun, "/summary/chunks_new");
    assert!(
        reused >= 2 * (8 * MIB / (2 * MIB)),
        "the rerun reused only {reused} chunks of the {packed_before} stored packs: {rerun}"
    );
    let sent = u64_at(&rerun, "/summary/bytes_remote");
    assert!(
        sent < 40 * MIB - 16 * MIB + MIB,
        "the rerun sent {sent} bytes: {rerun}"
    );
    let puts = log.iter().filter(|s| s.method == "PUT").count() as u64;
    let packs = u64_at(&rerun, "/summary/packs_new");
    assert!(
        packs >= 1 && puts <= 2 * packs + 8 + 1,
        "{puts} PUTs for {new} chunks: {rerun}"
    );
    eprintln!(
        "rerun: {} requests ({puts} PUTs) for {new} new chunks in {packs} packs, {reused} reused",
        log.len()
    );

    let start = proxy.log_len();
    let out = env.path("out");
    env.ok(&["-r", &remote, "-q", "pull", "p@1.0.0", "--to", s(&out)]);
    assert_same_tree(&src, &out);
    let log = proxy.log()[start..].to_vec();
    let pack_gets = log
        .iter()
        .filter(|s| s.method == "GET" && is_chunk_target(&s.target))
        .count();
    let stored_packs = env
        .list_objects("packs/")
        .iter()
        .filter(|(k, _)| !k.ends_with(".index"))
        .count();
    let loose = env.list_objects("chunks/").len();
    // A run of neighbours in one pack is read at once, up to 2 MiB of plaintext: with chunks
    // of 128 KiB..2 MiB (512 KiB average) that is about a third of the chunks' requests.
    let chunks = (reused + new) as usize;
    assert!(
        pack_gets <= chunks / 2 + stored_packs + loose,
        "{pack_gets} chunk GETs for {chunks} chunks in {stored_packs} packs and {loose} loose: \
         {log:?}"
    );
    eprintln!(
        "pull: {} requests, {pack_gets} chunk GETs for {chunks} chunks ({stored_packs} packs, \
         {loose} loose)",
        log.len()
    );
}
