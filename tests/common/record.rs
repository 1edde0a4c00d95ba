//! A recording reverse proxy for HTTP stores (moto, the GCS emulator, Azurite): every request
//! the `mvault` binary sends is forwarded untouched to the store and logged with its method,
//! target, headers and answer status, so a test can assert what really went over the wire
//! (least privilege: only GET/HEAD; server-side encryption: the headers and parameters sent,
//! and what the store answers about the objects).
//!
//! One request per connection: the proxy answers with `Connection: close`, which every HTTP/1.1
//! client honours by opening a new connection for the next request. Plain HTTP only.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the proxy received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, as sent (`/bucket/key?x-id=GetObject`).
    pub target: String,
    /// Header names in lower case, values as sent.
    pub headers: Vec<(String, String)>,
    /// The store's status code (`None` if it never answered).
    pub status: Option<u16>,
    /// The store's response headers, names in lower case.
    pub response_headers: Vec<(String, String)>,
}

impl Seen {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of response header `name` (case-insensitive).
    pub fn response_header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.response_headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `METHOD target`, for messages.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.target)
    }
}

/// The requests recorded and not yet taken, each with its sequence number (so that a request
/// answered after [`Recorder::take`] completes nothing it should not).
#[derive(Default)]
struct Log {
    next: u64,
    entries: Vec<(u64, Seen)>,
}

/// The proxy; it stops accepting when dropped.
pub struct Recorder {
    port: u16,
    log: Arc<Mutex<Log>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Recorder {
    /// Starts a proxy on 127.0.0.1 (random port) in front of `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> Recorder {
        let up = upstream
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("the recorder needs a plain http:// store, got {upstream}"))
            .trim_end_matches('/')
            .to_string();
        assert!(!up.contains('/'), "upstream {upstream} has a path");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind recorder");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (l, s) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        let (l, up) = (l.clone(), up.clone());
                        std::thread::spawn(move || serve(sock, &up, &l));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Recorder { port, log, stop }
    }

    /// `http://127.0.0.1:PORT`, to give mvault as the store's endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How many requests recorded so far match `pred` (the log is kept).
    pub fn peek(&self, pred: impl Fn(&Seen) -> bool) -> usize {
        let log = self.log.lock().unwrap();
        log.entries.iter().filter(|(_, r)| pred(r)).count()
    }

    /// Returns the requests recorded so far and forgets them.
    pub fn take(&self) -> Vec<Seen> {
        let entries = std::mem::take(&mut self.log.lock().unwrap().entries);
        entries.into_iter().map(|(_, r)| r).collect()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn serve(sock: TcpStream, upstream: &str, log: &Mutex<Log>) {
    let _ = sock.set_read_timeout(Some(Duration::from_secs(120)));
    let mut client = BufReader::new(sock);
    let Ok(Some((method, target, headers, body))) = read_request(&mut client) else {
        return;
    };
    let id = {
        let mut l = log.lock().unwrap();
        let id = l.next;
        l.next += 1;
        let seen = Seen {
            method: method.clone(),
            target: target.clone(),
            headers: headers.clone(),
            status: None,
            response_headers: Vec::new(),
        };
        l.entries.push((id, seen));
        id
    };
    let Ok(resp) = forward(upstream, &method, &target, &headers, &body) else {
        return;
    };
    let (out, status, response_headers) = close_response(&resp);
    if let Some((_, seen)) = log
        .lock()
        .unwrap()
        .entries
        .iter_mut()
        .find(|(i, _)| *i == id)
    {
        seen.status = status;
        seen.response_headers = response_headers;
    }
    let mut sock = client.into_inner();
    let _ = sock.write_all(&out);
    let _ = sock.flush();
}

type Request = (String, String, Vec<(String, String)>, Vec<u8>);

/// Reads one request: head, then a `Content-Length` or chunked body (de-chunked).
fn read_request(r: &mut BufReader<TcpStream>) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut first = line.split_whitespace();
    let (Some(method), Some(target)) = (first.next(), first.next()) else {
        return Err(io::Error::other("bad request line"));
    };
    let (method, target) = (method.to_string(), target.to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if let Some(n) = get("content-length") {
        let n: usize = n.parse().map_err(|_| io::Error::other("content-length"))?;
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| io::Error::other("chunk size"))?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        headers.retain(|(k, _)| k != "transfer-encoding");
        headers.push(("content-length".into(), body.len().to_string()));
    }
    Ok(Some((method, target, headers, body)))
}

fn is_hop(name: &str) -> bool {
    matches!(name, "connection" | "keep-alive" | "proxy-connection")
}

fn forward(
    upstream: &str,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(upstream)?;
    up.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut out = format!("{method} {target} HTTP/1.1\r\n").into_bytes();
    for (k, v) in headers.iter().filter(|(k, _)| !is_hop(k)) {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out.extend_from_slice(body);
    up.write_all(&out)?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    Ok(resp)
}

/// The store's response with hop-by-hop headers replaced by `Connection: close`, its status
/// code and its headers.
fn close_response(resp: &[u8]) -> (Vec<u8>, Option<u16>, Vec<(String, String)>) {
    let Some(end) = resp.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (resp.to_vec(), None, Vec::new());
    };
    let head = String::from_utf8_lossy(&resp[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("").to_string();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok());
    let mut out = format!("{status_line}\r\n").into_bytes();
    let mut headers = Vec::new();
    for l in lines {
        let (name, value) = l.split_once(':').unwrap_or((l, ""));
        let name = name.trim().to_ascii_lowercase();
        if !is_hop(&name) {
            out.extend_from_slice(format!("{l}\r\n").as_bytes());
        }
        headers.push((name, value.trim().to_string()));
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(&resp[end + 4..]);
    (out, status, headers)
}
