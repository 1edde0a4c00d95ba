//! Everything the CLI prints goes through here: human and `--json` output, and the secret
//! scrubber that guarantees no registered credential reaches stdout, stderr or logs.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use serde::Serialize;

/// Environment variables whose values are secrets, scrubbed from all output.
const SECRET_ENV: &[&str] = &[
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
    "ALIYUN_ACCESS_KEY_SECRET",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    "OSS_ACCESS_KEY_SECRET",
    "ALIYUN_SECURITY_TOKEN",
    "ALIBABA_CLOUD_SECURITY_TOKEN",
];

fn secrets() -> &'static Mutex<Vec<String>> {
    static SECRETS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| {
        let mut v = Vec::new();
        for name in SECRET_ENV {
            if let Ok(val) = std::env::var(name) {
                add_secret_parts(&mut v, &val);
            }
        }
        Mutex::new(v)
    })
}

/// Adds a secret, and for connection strings each `Key=value` value too.
fn add_secret_parts(v: &mut Vec<String>, secret: &str) {
    if secret.len() >= 4 {
        v.push(secret.to_string());
    }
    for part in secret.split(';') {
        if let Some((k, val)) = part.split_once('=') {
            let k = k.to_ascii_lowercase();
            if (k.contains("key") || k.contains("signature") || k.contains("token"))
                && val.len() >= 4
            {
                v.push(val.to_string());
            }
        }
    }
}

/// Registers secret values (from config or URL) to be scrubbed from every output.
pub fn register_secrets<I: IntoIterator<Item = String>>(values: I) {
    let mut s = secrets().lock().expect("secrets");
    for v in values {
        add_secret_parts(&mut s, &v);
    }
    s.sort_by_key(|x| std::cmp::Reverse(x.len()));
    s.dedup();
}

/// `text` with every registered secret replaced by `***`.
pub fn scrub(text: &str) -> String {
    let s = secrets().lock().expect("secrets");
    let mut out = text.to_string();
    for secret in s.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
    }
    out
}

/// Prints a value as pretty JSON on stdout (scrubbed).
pub fn json<T: Serialize>(value: &T) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).expect("serializable");
    line(&text)
}

/// Prints one line on stdout (scrubbed).
pub fn line(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", scrub(text))
}

/// Prints an informational message on stderr unless quiet (scrubbed).
pub fn note(quiet: bool, text: &str) {
    if !quiet {
        eprintln!("{}", scrub(text));
    }
}

/// A stderr writer for log events: buffers one event, scrubs it, writes it on drop.
#[derive(Default)]
pub struct ScrubbedStderr {
    buf: Vec<u8>,
}

impl Write for ScrubbedStderr {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ScrubbedStderr {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let _ = std::io::stderr().write_all(scrub(&text).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_registered_secrets_and_connection_string_parts() {
        register_secrets(["s3cr3t-value".to_string()]);
        register_secrets(["AccountName=a;AccountKey=k3yk3yk3y==;BlobEndpoint=x".to_string()]);
        let s = scrub("auth s3cr3t-value and k3yk3yk3y== here");
        assert_eq!(s, "auth *** and *** here");
    }
}
