//! A compiled first-byte-latency proxy for the transfer benchmark (`bench/transfer.sh`).
//!
//! ```text
//! mvault-latency-proxy --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT2 --delay-ms N
//! ```
//!
//! Every client connection gets its own upstream connection; bytes are copied both ways as
//! they come (no HTTP parsing of bodies, no buffering beyond one 256 KiB read). Latency model,
//! the same as `bench/proxy.py --delay-ms`: the first bytes of each response are held until
//! N ms after the upstream sent them. A response begins with the first upstream bytes after
//! the client sent a request; an interim `HTTP/1.1 100 Continue` is passed on at once (the
//! final response that follows it is held). Clients in this benchmark do not pipeline
//! requests, so "client bytes, then upstream bytes" delimits one exchange.
//!
//! Written because the Python proxy costs a core's worth of CPU at a few hundred MB/s on a
//! 2-core machine, which the tools being measured then compete for. It counts nothing:
//! request counts come from `bench/proxy.py` (STEPS=requests in `bench/format2.sh`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const READ_BYTES: usize = 256 * 1024;

struct Args {
    listen: String,
    upstream: String,
    delay: Duration,
    /// `--log FILE`: one line per request (ms since start, connection, request line).
    log: Option<String>,
}

type Log = Option<Arc<std::sync::Mutex<std::fs::File>>>;

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut listen, mut upstream, mut delay, mut log) = (None, None, 20u64, None);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = Some(value()?),
            "--upstream" => {
                let v = value()?;
                let v = v
                    .strip_prefix("http://")
                    .unwrap_or(&v)
                    .trim_end_matches('/');
                upstream = Some(v.to_string());
            }
            "--delay-ms" => {
                let v = value()?;
                delay = v
                    .parse()
                    .map_err(|_| format!("--delay-ms: not a number: {v}"))?;
            }
            "--log" => log = Some(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        listen: listen.ok_or("--listen IP:PORT is required")?,
        upstream: upstream.ok_or("--upstream IP:PORT is required")?,
        delay: Duration::from_millis(delay),
        log,
    })
}

#[tokio::main]
async fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mvault-latency-proxy: {e}");
            std::process::exit(2);
        }
    };
    let listener = match TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "mvault-latency-proxy: cannot listen on {}: {e}",
                args.listen
            );
            std::process::exit(1);
        }
    };
    println!(
        "listening on {}, upstream {}, first byte held {} ms",
        args.listen,
        args.upstream,
        args.delay.as_millis()
    );
    let (upstream, delay) = (Arc::new(args.upstream), args.delay);
    let log: Log = match &args.log {
        Some(p) => match std::fs::File::create(p) {
            Ok(f) => Some(Arc::new(std::sync::Mutex::new(f))),
            Err(e) => {
                eprintln!("mvault-latency-proxy: cannot create {p}: {e}");
                std::process::exit(1);
            }
        },
        None => None,
    };
    let (start, mut conn) = (Instant::now(), 0u64);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                let (upstream, log) = (upstream.clone(), log.clone());
                conn += 1;
                let tag = (start, conn);
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream.as_str()).await {
                        relay(client, server, delay, log, tag).await;
                    }
                });
            }
            _ = tokio::signal::ctrl_c() => return,
        }
    }
}

/// Copies both ways until either side closes.
async fn relay(
    client: TcpStream,
    server: TcpStream,
    delay: Duration,
    log: Log,
    (start, conn): (Instant, u64),
) {
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    // Set when the client sent bytes since the last response began: the next upstream bytes
    // start a response.
    let asked = Arc::new(AtomicBool::new(false));
    let up = {
        let asked = asked.clone();
        async move {
            let mut buf = vec![0u8; READ_BYTES];
            loop {
                let n = match cr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if !asked.swap(true, Ordering::AcqRel)
                    && let Some(log) = &log
                {
                    use std::io::Write;
                    let line = buf[..n].split(|&b| b == b'\r').next().unwrap_or_default();
                    let ms = start.elapsed().as_secs_f64() * 1e3;
                    let text = String::from_utf8_lossy(&line[..line.len().min(200)]);
                    let _ = writeln!(log.lock().expect("log"), "{ms:.1}\t{conn}\t{text}");
                }
                if sw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = sw.shutdown().await;
        }
    };
    let down = async move {
        let mut buf = vec![0u8; READ_BYTES];
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let interim = buf[..n].starts_with(b"HTTP/1.1 100 ");
            if !interim && asked.swap(false, Ordering::AcqRel) {
                tokio::time::sleep_until(Instant::now() + delay).await;
            }
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = cw.shutdown().await;
    };
    tokio::join!(up, down);
}
