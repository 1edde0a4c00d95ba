//! Test helpers, in one place: a fresh vault per test on a chosen backend, the real `mvault`
//! binary run with a clean environment, seeded data, and direct access to the remote's
//! objects (to corrupt or plant them).
//!
//! Backends other than `fs` need a local server whose address comes from the environment
//! (`scripts/emulators.sh` starts them and exports `MVAULT_TEST_*`). A missing server makes
//! the test fail, never skip.

#![allow(dead_code)] // each test binary module uses a different subset

use std::path::{Path, PathBuf};
use std::process::Output;

use mvault::remote::RemoteSpec;
use opendal::Operator;
use std::process::Command;
use tempfile::TempDir;

/// The stores the behaviour suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Fs,
    S3,
    Gcs,
    Azblob,
}

impl Backend {
    /// Size of the "large file" used in round-trip and dedupe tests, in bytes. Emulators that
    /// are slow or keep everything in memory get a smaller one.
    pub fn large_file_bytes(self) -> usize {
        match self {
            Backend::Fs => 200 << 20,
            Backend::S3 => 200 << 20,
            Backend::Gcs | Backend::Azblob => 64 << 20,
        }
    }
}

fn required(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: this test needs a local server; run it through scripts/test.sh \
             (which starts the emulators), not bare `cargo test`"
        )
    })
}

/// One isolated vault, cache and home directory.
pub struct Env {
    pub tmp: TempDir,
    pub backend: Backend,
    /// The `--remote` URL for the CLI.
    pub remote: String,
    /// Extra environment variables for the CLI (credentials, emulator hosts).
    pub vars: Vec<(String, String)>,
    /// A spec the test process itself uses to reach the remote's objects.
    pub spec: RemoteSpec,
}

impl Env {
    pub fn new(backend: Backend) -> Env {
        let tmp = tempfile::tempdir().expect("tempdir");
        let prefix = format!("t{:016x}", fastrand::u64(..));
        let (remote, vars, mut spec) = match backend {
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
            spec,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.path("cache")
    }

    /// The real binary with a clean, isolated environment.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mvault"));
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .env("XDG_DATA_HOME", self.path("data"))
            .env("XDG_CACHE_HOME", self.path("xdg-cache"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("MVAULT_REMOTE", &self.remote)
            .env("MVAULT_CACHE_DIR", self.cache_dir())
            .env("USER", "tester")
            .current_dir(self.tmp.path());
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c
    }

    /// Runs `mvault ARGS` and returns its output whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("mvault runs")
    }

    /// Runs `mvault ARGS`, asserts exit 0, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
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
        let out = self.run(args);
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

    /// An operator on the remote for direct object access.
    pub fn op(&self) -> Operator {
        self.spec.operator().expect("operator")
    }

    /// Blocking helpers over [`Env::op`] (tests are synchronous).
    pub fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    pub fn read_object(&self, key: &str) -> Vec<u8> {
        let op = self.op();
        Self::rt().block_on(async { op.read(key).await.unwrap().to_vec() })
    }

    pub fn write_object(&self, key: &str, data: Vec<u8>) {
        let op = self.op();
        // A content type, as mvault sends: the GCS emulator fails uploads without one.
        Self::rt().block_on(async {
            op.write_with(key, data)
                .content_type("application/octet-stream")
                .await
                .unwrap()
        });
    }

    pub fn delete_object(&self, key: &str) {
        let op = self.op();
        Self::rt().block_on(async { op.delete(key).await.unwrap() });
    }

    /// Every object key under `dir` with its size.
    pub fn list_objects(&self, dir: &str) -> Vec<(String, u64)> {
        let op = self.op();
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

    /// Total stored bytes of chunk objects.
    pub fn stored_chunk_bytes(&self) -> u64 {
        self.list_objects("chunks/").iter().map(|(_, s)| s).sum()
    }
}

/// Seeded pseudo-random bytes; the seed is in every assertion message that uses them.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v
}

pub fn write_file(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// Asserts two directory trees hold the same regular files with the same bytes (ignoring
/// mvault's `.mvault` state directory).
pub fn assert_same_tree(a: &Path, b: &Path) {
    let list = |root: &Path| {
        let mut v: Vec<PathBuf> = walk(root)
            .into_iter()
            .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
            .filter(|p| !p.starts_with(".mvault"))
            .collect();
        v.sort();
        v
    };
    let (la, lb) = (list(a), list(b));
    assert_eq!(la, lb, "file lists differ");
    for rel in la {
        let (x, y) = (
            std::fs::read(a.join(&rel)).unwrap(),
            std::fs::read(b.join(&rel)).unwrap(),
        );
        assert!(x == y, "{} differs", rel.display());
    }
}

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
