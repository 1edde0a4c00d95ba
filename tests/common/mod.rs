//! Test helpers, in one place: a fresh vault per test on a chosen backend, the real `mvault`
//! binary run with a clean environment, seeded data, and direct access to the remote's
//! objects (to corrupt or plant them).
//!
//! Backends other than `fs` and `oss` need a local server whose address comes from the
//! environment (`scripts/emulators.sh` starts them and exports `MVAULT_TEST_*`). A missing
//! server makes the test fail, never skip. The `oss` backend is the in-process fake of
//! [`crate::oss_fake`], one per [`Env`].

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mvault::remote::RemoteSpec;
use opendal::Operator;
use tempfile::TempDir;

use crate::oss_fake::{self, FakeOss};

pub mod record;

/// The stores the behaviour suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Fs,
    S3,
    Gcs,
    Azblob,
    /// The fake OSS server of `tests/oss_fake/`, started in-process for each [`Env`].
    Oss,
}

/// What a store honours, in the spirit of OpenDAL's `Capability`: a behaviour case that needs
/// a capability is only registered for the backends that have it (see `tests/behaviour.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    /// A create-only write (`If-None-Match: *`, `ifGenerationMatch=0`, `x-oss-forbid-overwrite`,
    /// `O_EXCL`) fails when the object exists, even when two writers race. The GCS emulator
    /// ignores preconditions, so it lacks this (real GCS has it; see README).
    pub create_only: bool,
}

impl Capability {
    /// No capability at all; the starting point of a declaration.
    pub const NONE: Capability = Capability { create_only: false };

    /// Field-wise equality, usable in `const` assertions.
    pub const fn same(self, other: Capability) -> bool {
        self.create_only == other.create_only
    }
}

impl Backend {
    /// What this backend's server honours.
    pub const fn capability(self) -> Capability {
        match self {
            Backend::Fs | Backend::S3 | Backend::Azblob | Backend::Oss => {
                Capability { create_only: true }
            }
            Backend::Gcs => Capability { create_only: false },
        }
    }

    /// Size of the "large file" used in round-trip and dedupe tests, in bytes. Emulators that
    /// are slow or keep everything in memory get a smaller one.
    pub fn large_file_bytes(self) -> usize {
        match self {
            Backend::Fs => 200 << 20,
            Backend::S3 => 200 << 20,
            Backend::Gcs | Backend::Azblob => 64 << 20,
            Backend::Oss => 32 << 20,
        }
    }
}

/// Key prefix of the vault on the fake OSS (two segments, so nested prefixes are exercised).
pub const OSS_PREFIX: &str = "ml/vault";

pub fn required(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: this test needs a local server; run it through scripts/test.sh \
             (which starts the emulators), not bare `cargo test`"
        )
    })
}

/// Where the test process itself reaches the remote's objects.
enum Store {
    /// Through OpenDAL, as mvault does.
    Opendal(RemoteSpec),
    /// In the fake OSS's memory (the test process is not behind the fake's proxy); keys are
    /// relative to the vault root and get `prefix/` prepended.
    FakeOss { fake: FakeOss, prefix: String },
}

/// One isolated vault, cache and home directory.
pub struct Env {
    pub tmp: TempDir,
    pub backend: Backend,
    /// The `--remote` URL for the CLI.
    pub remote: String,
    /// Extra environment variables for the CLI (credentials, emulator hosts, proxy).
    pub vars: Vec<(String, String)>,
    store: Store,
}

impl Env {
    pub fn new(backend: Backend) -> Env {
        let tmp = tempfile::tempdir().expect("tempdir");
        let prefix = format!("t{:016x}", fastrand::u64(..));
        let (remote, vars, mut spec) = match backend {
            Backend::Oss => return Env::fake_oss(tmp),
            Backend::Fs => {
                let dir = tmp.path().join("vault");
                let url = format!("file://{}", dir.display());
                let spec = RemoteSpec::parse_url(&url).unwrap();
                (url, vec![], spec)
            }
            Backend::S3 => {
                let ep = required("MVAULT_TEST_S3_ENDPOINT");
                let bucket = required("MVAULT_TEST_S3_BUCKET");
                let key = required("MVAULT_TEST_S3_ACCESS_KEY");
                let secret = required("MVAULT_TEST_S3_SECRET_KEY");
                let url = format!("s3://{bucket}/{prefix}?endpoint={ep}&region=us-east-1");
                let mut spec = RemoteSpec::parse_url(&url).unwrap();
                spec.options.insert("access_key".into(), key.clone());
                spec.options.insert("secret_key".into(), secret.clone());
                let vars = vec![
                    ("AWS_ACCESS_KEY_ID".into(), key),
                    ("AWS_SECRET_ACCESS_KEY".into(), secret),
                ];
                (url, vars, spec)
            }
            Backend::Gcs => {
                let ep = required("MVAULT_TEST_GCS_ENDPOINT");
                let bucket = required("MVAULT_TEST_GCS_BUCKET");
                let url = format!("gs://{bucket}/{prefix}");
                let mut spec = RemoteSpec::parse_url(&url).unwrap();
                spec.options.insert("endpoint".into(), ep.clone());
                spec.options.insert("anonymous".into(), "true".into());
                (url, vec![("STORAGE_EMULATOR_HOST".into(), ep)], spec)
            }
            Backend::Azblob => {
                let conn = required("MVAULT_TEST_AZBLOB_CONNECTION_STRING");
                let container = required("MVAULT_TEST_AZBLOB_CONTAINER");
                let url = format!("az://{container}/{prefix}");
                let mut spec = RemoteSpec::parse_url(&url).unwrap();
                spec.options
                    .insert("connection_string".into(), conn.clone());
                (
                    url,
                    vec![("AZURE_STORAGE_CONNECTION_STRING".into(), conn)],
                    spec,
                )
            }
        };
        spec.label = None;
        Env {
            tmp,
            backend,
            remote,
            vars,
            store: Store::Opendal(spec),
        }
    }

    /// A fresh fake OSS (listing pages of 3 entries, so continuation is exercised), reached as
    /// the CLI's HTTP proxy with the fake's credentials.
    fn fake_oss(tmp: TempDir) -> Env {
        let fake = FakeOss::start(oss_fake::Config {
            page_size: 3,
            ..oss_fake::Config::default()
        });
        let remote = format!(
            "oss://{}/{OSS_PREFIX}?endpoint={}",
            fake.cfg.bucket,
            fake.endpoint()
        );
        let vars = vec![
            ("HTTP_PROXY".to_string(), fake.proxy_url()),
            (
                "ALIYUN_ACCESS_KEY_ID".to_string(),
                fake.cfg.access_key_id.clone(),
            ),
            (
                "ALIYUN_ACCESS_KEY_SECRET".to_string(),
                fake.cfg.access_key_secret.clone(),
            ),
        ];
        Env {
            tmp,
            backend: Backend::Oss,
            remote,
            vars,
            store: Store::FakeOss {
                fake,
                prefix: OSS_PREFIX.to_string(),
            },
        }
    }

    /// The fake OSS behind this env; panics for other backends.
    pub fn fake(&self) -> &FakeOss {
        match &self.store {
            Store::FakeOss { fake, .. } => fake,
            Store::Opendal(_) => panic!("{:?} has no fake OSS", self.backend),
        }
    }

    /// The full key on the fake OSS of `rel` (a key relative to the vault root).
    pub fn key(&self, rel: &str) -> String {
        match &self.store {
            Store::FakeOss { prefix, .. } => format!("{prefix}/{rel}"),
            Store::Opendal(_) => panic!("{:?} has no fake OSS", self.backend),
        }
    }

    /// Sets (or replaces) an environment variable of every later run.
    pub fn set_var(&mut self, k: &str, v: &str) {
        self.unset_var(k);
        self.vars.push((k.to_string(), v.to_string()));
    }

    /// Removes an environment variable from every later run.
    pub fn unset_var(&mut self, k: &str) {
        self.vars.retain(|(n, _)| n != k);
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.path("cache")
    }

    /// The real binary with a clean, isolated environment and the env's cache.
    pub fn cmd(&self) -> Command {
        self.cmd_in("cache")
    }

    /// [`Env::cmd`] with the cache in `env.path(cache)` instead: a second cache is a second
    /// machine.
    pub fn cmd_in(&self, cache: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mvault"));
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .env("XDG_DATA_HOME", self.path("data"))
            .env("XDG_CACHE_HOME", self.path("xdg-cache"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("MVAULT_REMOTE", &self.remote)
            .env("MVAULT_CACHE_DIR", self.path(cache))
            .env("USER", "tester")
            // Credentials may be missing: never wait for an instance metadata service.
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .current_dir(self.tmp.path());
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c
    }

    /// Runs `mvault ARGS` and returns its output whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_in("cache", args)
    }

    /// [`Env::run`] with the cache in `env.path(cache)`.
    pub fn run_in(&self, cache: &str, args: &[&str]) -> Output {
        self.cmd_in(cache).args(args).output().expect("mvault runs")
    }

    /// Runs `mvault ARGS`, asserts exit 0, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_in("cache", args)
    }

    /// [`Env::ok`] with the cache in `env.path(cache)`.
    pub fn ok_in(&self, cache: &str, args: &[&str]) -> String {
        let out = self.run_in(cache, args);
        assert!(
            out.status.success(),
            "mvault {args:?} failed ({:?}):\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Runs `mvault ARGS`, asserts the exit code, returns stderr.
    pub fn fails(&self, code: i32, args: &[&str]) -> String {
        self.fails_in("cache", code, args)
    }

    /// [`Env::fails`] with the cache in `env.path(cache)`.
    pub fn fails_in(&self, cache: &str, code: i32, args: &[&str]) -> String {
        let out = self.run_in(cache, args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "mvault {args:?}: expected exit {code}\nstdout: {}\nstderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        stderr
    }

    /// `mvault --json ARGS` parsed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).expect("valid JSON on stdout")
    }

    /// Checks every request the store recorded since the last check and forgets them: on the
    /// fake OSS, each must be virtual-host addressed, V1-signed, one of the five operations
    /// mvault uses and on a key of the FORMAT.md layout. Stores that record nothing pass.
    pub fn assert_requests_well_formed(&self) {
        if let Store::FakeOss { fake, prefix } = &self.store {
            let reqs = fake.take_requests();
            oss_fake::assert_protocol(fake, &reqs);
            oss_fake::assert_layout(prefix, &reqs);
        }
    }

    /// An operator on the remote for direct object access.
    fn op(spec: &RemoteSpec) -> Operator {
        spec.operator().expect("operator")
    }

    /// A runtime for the blocking helpers below (tests are synchronous).
    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    pub fn read_object(&self, key: &str) -> Vec<u8> {
        match &self.store {
            Store::Opendal(spec) => {
                let op = Self::op(spec);
                Self::rt().block_on(async { op.read(key).await.unwrap().to_vec() })
            }
            Store::FakeOss { fake, prefix } => fake
                .object(&format!("{prefix}/{key}"))
                .unwrap_or_else(|| panic!("no object {key}")),
        }
    }

    pub fn write_object(&self, key: &str, data: Vec<u8>) {
        match &self.store {
            Store::Opendal(spec) => {
                let op = Self::op(spec);
                // A content type, as mvault sends: the GCS emulator fails uploads without one.
                Self::rt().block_on(async {
                    op.write_with(key, data)
                        .content_type("application/octet-stream")
                        .await
                        .unwrap()
                });
            }
            Store::FakeOss { fake, prefix } => fake.put_object(&format!("{prefix}/{key}"), data),
        }
    }

    pub fn delete_object(&self, key: &str) {
        match &self.store {
            Store::Opendal(spec) => {
                let op = Self::op(spec);
                Self::rt().block_on(async { op.delete(key).await.unwrap() });
            }
            Store::FakeOss { fake, prefix } => fake.remove_object(&format!("{prefix}/{key}")),
        }
    }

    /// Every object key under `dir` (relative to the vault root) with its size.
    pub fn list_objects(&self, dir: &str) -> Vec<(String, u64)> {
        match &self.store {
            Store::Opendal(spec) => {
                let op = Self::op(spec);
                Self::rt().block_on(async {
                    let mut out = Vec::new();
                    for e in op.list_with(dir).recursive(true).await.unwrap_or_default() {
                        if !e.metadata().is_dir() {
                            let size = match e.metadata().content_length() {
                                0 => op.stat(e.path()).await.unwrap().content_length(),
                                n => n,
                            };
                            out.push((e.path().to_string(), size));
                        }
                    }
                    out
                })
            }
            Store::FakeOss { fake, prefix } => {
                let under = format!("{prefix}/{dir}");
                fake.keys()
                    .into_iter()
                    .filter(|k| k.starts_with(&under))
                    .map(|k| {
                        let size = fake.object(&k).map_or(0, |o| o.len() as u64);
                        (k[prefix.len() + 1..].to_string(), size)
                    })
                    .collect()
            }
        }
    }

    /// Total stored bytes of chunk objects, loose and in packs (with the packs' indexes).
    pub fn stored_chunk_bytes(&self) -> u64 {
        let packs = self.list_objects("packs/");
        let packed: u64 = packs
            .iter()
            .filter(|(k, _)| !k.ends_with(".index"))
            .map(|(_, s)| s)
            .sum();
        self.list_objects("chunks/")
            .iter()
            .map(|(_, s)| s)
            .sum::<u64>()
            + packed
    }
}

/// Seeded pseudo-random bytes; the seed is in every assertion message that uses them.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v
}

/// A path as the `&str` argument of a command (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A 127.0.0.1 port nothing listens on (bound, then released).
pub fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub fn write_file(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// Regular files under `root` (relative paths, sorted), skipping mvault's `.mvault` state
/// directory of a pull target.
pub fn files(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walk(root)
        .into_iter()
        .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
        .filter(|p| !p.starts_with(".mvault"))
        .collect();
    v.sort();
    v
}

/// Asserts two directory trees hold the same regular files with the same bytes (ignoring
/// mvault's `.mvault` state directory).
pub fn assert_same_tree(a: &Path, b: &Path) {
    let (la, lb) = (files(a), files(b));
    assert_eq!(la, lb, "file lists differ");
    for rel in la {
        let (x, y) = (
            std::fs::read(a.join(&rel)).unwrap(),
            std::fs::read(b.join(&rel)).unwrap(),
        );
        assert!(x == y, "{} differs", rel.display());
    }
}

/// Every regular file (and symlink, FIFO, ...) under `root`, as full paths, in no order.
pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// Unpacks `tests/fixtures/format1-vault.tar.gz` (the vault mvault 0.1.0 wrote) into the
/// test's directory, as `vault/` (`env.path("vault")`, the Fs backend's remote).
pub fn unpack_format1_vault(env: &Env) {
    let tar = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/format1-vault.tar.gz"
    );
    let st = std::process::Command::new("tar")
        .args(["-xzf", tar, "-C", s(env.tmp.path())])
        .status()
        .unwrap();
    assert!(st.success(), "tar -xzf {tar}");
}

/// A running `mvault serve`, killed when dropped.
pub struct Served {
    child: std::process::Child,
    /// `127.0.0.1:PORT` (or the address given) as the server printed it.
    pub addr: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Env {
    /// Starts `mvault serve ARGS` (with `--listen 127.0.0.1:0` unless `args` has a
    /// `--listen`) and waits for its `listening on http://ADDR/` line.
    pub fn serve(&self, args: &[&str]) -> Served {
        use std::io::BufRead;
        let listen: &[&str] = match args.contains(&"--listen") {
            true => &[],
            false => &["--listen", "127.0.0.1:0"],
        };
        let mut child = self
            .cmd()
            .arg("serve")
            .args(listen)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("mvault serve starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("serve prints its address");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .and_then(|a| a.strip_suffix('/'))
            .unwrap_or_else(|| panic!("unexpected first line of serve: {line:?}"))
            .to_string();
        Served { child, addr }
    }
}

/// An HTTP response as read by [`http`].
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `METHOD path` over HTTP/1.1 to `addr` (one connection, `Connection: close`), with
/// `Host: addr` unless `headers` has one.
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).expect("connect to serve");
    conn.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    conn.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body: String::from_utf8(body).expect("utf-8 body"),
    }
}

/// `GET path` (see [`http`]).
pub fn get(addr: &str, path: &str) -> HttpResponse {
    http(addr, "GET", path, &[])
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..eol])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .expect("chunk size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 4 + size..];
    }
}
