#!/usr/bin/env python3
"""Counting HTTP reverse proxy for the S3 benchmarks (Python standard library only).

    python3 bench/proxy.py --listen 127.0.0.1:PORT --upstream http://127.0.0.1:PORT2 \
        [--delay-ms N] [--stats FILE]

Forwards every request to the upstream server unchanged: method, path and query, headers
(the Host header too, so signatures made for the proxy's address stay as they were signed)
and body, streamed both ways in 1 MiB pieces, with keep-alive on both sides (one upstream
connection per client connection). Only the hop-by-hop headers (Connection, Keep-Alive,
Proxy-*, TE, Trailer, Upgrade) and `Expect: 100-continue` (the proxy answers the 100 itself)
are not passed on; a chunked body is passed on chunked.

It counts requests by kind: HEAD, GET, PUT, POST, DELETE, LIST (a GET whose query has
`list-type`, or a GET with a query on a bucket, i.e. a path with no key) and OTHER, plus
status classes, bytes up (request bodies) and down (response bodies). The counts are
written as JSON to --stats FILE after every request (atomically: write + rename), and
printed to stdout on SIGTERM or SIGINT, after which the proxy exits.

--delay-ms N holds each response's first byte (the status line) N ms after the upstream
answered, to model a remote store's first-byte latency (default 0: no delay).
"""

import argparse
import http.client
import json
import os
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PIECE = 1 << 20
HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
       "proxy-authorization", "te", "trailer", "trailers", "upgrade", "transfer-encoding"}
KINDS = ("HEAD", "GET", "PUT", "POST", "DELETE", "LIST", "OTHER")


class Stats:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.requests = {k: 0 for k in KINDS}
        self.status = {}
        self.bytes_up = 0
        self.bytes_down = 0
        self.errors = 0
        self.started = time.time()

    def doc(self):
        return {
            "requests": dict(self.requests),
            "total": sum(self.requests.values()),
            "status": dict(sorted(self.status.items())),
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "proxy_errors": self.errors,
            "seconds": round(time.time() - self.started, 3),
        }

    def record(self, kind, status, up, down, error=False):
        with self.lock:
            self.requests[kind] += 1
            cls = "%dxx" % (status // 100) if status else "none"
            self.status[cls] = self.status.get(cls, 0) + 1
            self.bytes_up += up
            self.bytes_down += down
            self.errors += bool(error)
            if self.path:
                tmp = "%s.tmp.%d" % (self.path, threading.get_ident())
                with open(tmp, "w") as f:
                    json.dump(self.doc(), f)
                    f.write("\n")
                os.replace(tmp, self.path)


def kind_of(method, target):
    if method != "GET":
        return method if method in KINDS else "OTHER"
    u = urllib.parse.urlsplit(target)
    query = urllib.parse.parse_qs(u.query, keep_blank_values=True)
    if "list-type" in query:
        return "LIST"
    # Path style: /bucket or /bucket/ has no key.
    parts = [p for p in u.path.split("/") if p]
    if u.query and len(parts) <= 1:
        return "LIST"
    return "GET"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mvault-bench-proxy"
    upstream = None  # (host, port)
    delay = 0.0
    stats = None

    def log_message(self, *args):  # quiet
        pass

    def setup(self):
        super().setup()
        self.conn = None

    def finish(self):
        super().finish()
        if self.conn is not None:
            self.conn.close()

    def _upstream(self, fresh=False):
        if fresh and self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.conn is None:
            self.conn = http.client.HTTPConnection(*self.upstream, timeout=600)
        return self.conn

    def _body_reader(self):
        """Yields the request body in pieces (Content-Length or chunked); counts bytes."""
        te = self.headers.get("Transfer-Encoding", "").lower()
        if "chunked" in te:
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left:
                    b = self.rfile.read(min(left, PIECE))
                    if not b:
                        raise ConnectionError("client closed mid-body")
                    left -= len(b)
                    self.up += len(b)
                    yield b
                self.rfile.readline(3)
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                b = self.rfile.read(min(left, PIECE))
                if not b:
                    raise ConnectionError("client closed mid-body")
                left -= len(b)
                self.up += len(b)
                yield b

    def _forward(self):
        method, target = self.command, self.path
        kind = kind_of(method, target)
        self.up = 0
        down, status = 0, 0
        chunked_in = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        has_body = chunked_in or int(self.headers.get("Content-Length") or 0) > 0
        # Buffer small bodies so a stale keep-alive connection can be retried.
        body = None
        if not chunked_in and int(self.headers.get("Content-Length") or 0) <= PIECE:
            body = b"".join(self._body_reader())
        try:
            for attempt in (0, 1):
                conn = self._upstream(fresh=attempt == 1)
                try:
                    conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                    for k, v in self.headers.items():
                        lk = k.lower()
                        if lk in HOP or (lk == "expect" and "100" in v):
                            continue
                        conn.putheader(k, v)
                    if chunked_in:
                        conn.putheader("Transfer-Encoding", "chunked")
                    conn.endheaders()
                    if body is not None:
                        if body:
                            conn.send(body)
                    elif has_body:
                        for piece in self._body_reader():
                            if chunked_in:
                                conn.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
                            else:
                                conn.send(piece)
                        if chunked_in:
                            conn.send(b"0\r\n\r\n")
                    resp = conn.getresponse()
                    break
                except (ConnectionError, http.client.RemoteDisconnected,
                        http.client.BadStatusLine, BrokenPipeError):
                    if attempt == 1 or body is None:
                        raise
            status = resp.status
            if self.delay:
                time.sleep(self.delay)
            self.send_response_only(resp.status, resp.reason)
            length = resp.getheader("Content-Length")
            chunked_out = False
            for k, v in resp.getheaders():
                if k.lower() in HOP:
                    continue
                self.send_header(k, v)
            if method != "HEAD" and length is None and resp.status not in (204, 304) \
                    and resp.status >= 200:
                chunked_out = True
                self.send_header("Transfer-Encoding", "chunked")
            if resp.will_close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if method != "HEAD":
                while True:
                    b = resp.read(PIECE) if not chunked_out else resp.read1(PIECE)
                    if not b:
                        break
                    down += len(b)
                    if chunked_out:
                        self.wfile.write(b"%x\r\n" % len(b) + b + b"\r\n")
                    else:
                        self.wfile.write(b)
                if chunked_out:
                    self.wfile.write(b"0\r\n\r\n")
            else:
                resp.read()
            self.wfile.flush()
            if resp.will_close:
                self.conn.close()
                self.conn = None
            self.stats.record(kind, status, self.up, down)
        except Exception as e:  # upstream failure: 502, once nothing was sent yet
            if self.conn is not None:
                self.conn.close()
                self.conn = None
            self.stats.record(kind, status, self.up, down, error=True)
            if not status:
                msg = ("proxy: upstream error: %s\n" % e).encode()
                try:
                    self.send_response_only(502)
                    self.send_header("Content-Length", str(len(msg)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(msg)
                except OSError:
                    pass
            self.close_connection = True

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _forward


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def hostport(s, what):
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit("%s: want HOST:PORT, got %r" % (what, s))
    return host, int(port)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", required=True, help="HOST:PORT to listen on")
    ap.add_argument("--upstream", required=True, help="http://HOST:PORT of the S3 server")
    ap.add_argument("--delay-ms", type=float, default=0.0,
                    help="hold each response's first byte this long (default 0)")
    ap.add_argument("--stats", default=None, help="write the counts here after every request")
    a = ap.parse_args(argv)
    u = urllib.parse.urlsplit(a.upstream)
    if u.scheme != "http" or not u.hostname:
        raise SystemExit("--upstream: want http://HOST:PORT, got %r" % a.upstream)
    Handler.upstream = (u.hostname, u.port or 80)
    Handler.delay = a.delay_ms / 1000.0
    Handler.stats = Stats(a.stats)
    if a.stats:
        with open(a.stats, "w") as f:
            json.dump(Handler.stats.doc(), f)
            f.write("\n")
    srv = Server(hostport(a.listen, "--listen"), Handler)

    def stop(signum, frame):
        sys.stdout.write(json.dumps(Handler.stats.doc()) + "\n")
        sys.stdout.flush()
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("proxy: %s:%d -> %s (delay %g ms)" % (*srv.server_address, a.upstream, a.delay_ms),
          file=sys.stderr, flush=True)
    srv.serve_forever(poll_interval=0.2)
    srv.server_close()


if __name__ == "__main__":
    sys.exit(main())
