//! Everything the CLI prints goes through here: human and `--json` output, and the secret
//! scrubber that guarantees no registered credential reaches stdout, stderr or logs.

use std::borrow::Cow;
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
    crate::remote::SSE_CUSTOMER_KEY_ENV,
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

/// `text` with every registered secret and every URL's user-info (`scheme://user:pw@host`)
/// replaced by `***`: applied to everything mvault prints.
pub fn scrub(text: &str) -> String {
    let s = secrets().lock().expect("secrets");
    let mut out = text.to_string();
    for secret in s.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
    }
    drop(s);
    if out.contains("://") {
        out = map_words(&out, redact_userinfo);
    }
    out
}

/// [`scrub`], and also every URL query value in any word (`?key=value&...` becomes
/// `?key=***&...`, up to a quote, bracket or comma): for messages (errors, notes, log lines,
/// audit records), which never need a query value. Data on stdout (a description that quotes
/// a URL) keeps its own.
pub fn scrub_message(text: &str) -> String {
    let out = scrub(text);
    if out.contains('?') {
        map_words(&out, redact_query_values)
    } else {
        out
    }
}

/// `text` with `f` applied to every maximal run of non-whitespace characters.
fn map_words(text: &str, f: fn(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut start = None;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if let Some(st) = start.take() {
                out.push_str(&f(&text[st..i]));
            }
            out.push(c);
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(st) = start {
        out.push_str(&f(&text[st..]));
    }
    out
}

/// Characters that end a URL component inside a message (quotes, brackets, commas).
fn ends_url_part(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | '<' | '>' | '(' | ')' | '[' | ']' | '{' | '}' | ',' | '\\'
    )
}

/// One word with the user-info of each `scheme://user@host` in it replaced by `***`.
fn redact_userinfo(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || ends_url_part(c))
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// One word with the values of a `?key=value&...` query in it replaced by `***`.
fn redact_query_values(word: &str) -> String {
    let Some(q) = word.find('?') else {
        return word.to_string();
    };
    let (head, tail) = word.split_at(q + 1);
    let end = tail.find(ends_url_part).unwrap_or(tail.len());
    // Punctuation ending the word ends the sentence, not the value (`URL?x=y: reason`).
    let end = tail[..end].trim_end_matches([':', ';', '.']).len();
    let (query, after) = tail.split_at(end);
    if !query.contains('=') {
        return word.to_string();
    }
    format!("{head}{}{after}", crate::remote::redact_query(query))
}

/// Characters that must not reach a terminal raw: Unicode Cc (C0 controls such as ESC, BEL,
/// CR, and DEL and the C1 controls U+0080..U+009F, e.g. the one-byte CSI U+009B) and the
/// bidirectional overrides and isolates, which reorder what a terminal displays.
fn is_hazard(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every [`is_hazard`] character not kept by `keep` written as an escape: `\n`,
/// `\r`, `\t`, `\x1b` (other ASCII), `\u{9b}` (others).
fn escape(s: &str, keep: fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(|c| is_hazard(c) && !keep(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            c if !is_hazard(c) || keep(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// One user- or bucket-supplied value (description, tag, metric key, created_by, path,
/// alias history) for human output: every control character escaped, newlines and tabs too,
/// so a value can neither drive the terminal nor fake extra lines. Always applied, not only on
/// a terminal (the output may be shown on one later).
pub fn clean(value: &str) -> Cow<'_, str> {
    escape(value, |_| false)
}

/// A whole human-readable text (lines joined by `\n`): the same escaping as [`clean`] except
/// for newlines and tabs. Everything [`line`], [`note`] and the error line print goes through
/// it, as a safety net under [`clean`].
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    escape(text, |c| c == '\n' || c == '\t')
}

/// Prints a value as pretty JSON on stdout (scrubbed). serde escapes C0 controls inside
/// strings; the non-ASCII [`is_hazard`] characters (C1 controls, bidirectional marks), which it
/// emits raw, are written as `\uXXXX` escapes too (they only occur inside strings, so the
/// document means exactly the same).
/// Writing the command's output to stdout failed (e.g. `mvault list | head` closed the pipe:
/// then the command ends quietly with exit 0).
#[derive(Debug, thiserror::Error)]
#[error("cannot write to stdout: {0}")]
pub struct StdoutError(#[source] pub std::io::Error);

pub fn json<T: Serialize>(value: &T) -> Result<(), StdoutError> {
    print_json(&serde_json::to_string_pretty(value).expect("serializable"))
}

/// Prints a value as one line of JSON on stdout (a JSON-lines stream), as [`json`] does.
pub fn json_line<T: Serialize>(value: &T) -> Result<(), StdoutError> {
    print_json(&serde_json::to_string(value).expect("serializable"))
}

fn print_json(text: &str) -> Result<(), StdoutError> {
    let text = scrub(text);
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if is_hazard(c) && !c.is_ascii() {
            escaped.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            escaped.push(c);
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{escaped}").map_err(StdoutError)
}

/// Prints human-readable text on stdout (scrubbed, [`terminal_safe`]).
pub fn line(text: &str) -> Result<(), StdoutError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", terminal_safe(&scrub(text))).map_err(StdoutError)
}

/// Prints an informational message on stderr unless quiet ([`scrub_message`],
/// [`terminal_safe`]).
pub fn note(quiet: bool, text: &str) {
    if !quiet {
        eprintln!("{}", terminal_safe(&scrub_message(text)));
    }
}

/// Prints why a command that did its work exits non-zero, even when quiet: `mvault: TEXT`
/// on stderr, as a failure's line is.
pub fn error_line(text: &str) {
    eprintln!("mvault: {}", terminal_safe(&scrub_message(text)));
}

/// Prints a warning on stderr, even when quiet: `mvault: warning: TEXT`.
pub fn warn(text: &str) {
    eprintln!("mvault: warning: {}", terminal_safe(&scrub_message(text)));
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
        let text = scrub_message(&text);
        let _ = std::io::stderr().write_all(terminal_safe(&text).as_bytes());
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

    #[test]
    fn scrubs_userinfo_everywhere_and_query_values_in_messages() {
        assert_eq!(
            scrub("at s3://AK:pw@b/p and \"http://u:p@h:9/x\""),
            "at s3://***@b/p and \"http://***@h:9/x\""
        );
        assert_eq!(scrub("see http://h/p?id=5"), "see http://h/p?id=5");
        assert_eq!(
            scrub_message("remote \"s3:/b/p?secret_key=X&region=r\": bad, what?"),
            "remote \"s3:/b/p?secret_key=***&region=***\": bad, what?"
        );
        // A word's closing punctuation belongs to the sentence, not to the last value.
        assert_eq!(
            scrub_message("remote ./dir?x=y: a local path; s3://b?k=v; end s3://b?k=v."),
            "remote ./dir?x=***: a local path; s3://b?k=***; end s3://b?k=***."
        );
    }

    #[test]
    fn escapes_control_characters() {
        assert_eq!(
            clean("a\x1b]0;x\x07\r\n\u{9b}b\u{202e}"),
            "a\\x1b]0;x\\x07\\r\\n\\u{9b}b\\u{202e}"
        );
        assert_eq!(terminal_safe("l1\n\tl2\x1b"), "l1\n\tl2\\x1b");
        assert!(matches!(clean("plain"), Cow::Borrowed("plain")));
    }
}
