//! Remote options: the keys a spec may carry and the one validator that URL queries
//! (`s3://b?timeout=90s`) and config-file provider `config:` keys both go through, so that a
//! value means the same wherever it is written.

use crate::util::parse_duration_secs;

/// Option keys a spec may carry (URL query or config file). Values of [`SECRET_KEYS`] are
/// never displayed.
pub const OPTION_KEYS: &[&str] = &[
    "endpoint",
    "region",
    "access_key",
    "secret_key",
    "session_token",
    "profile",
    "credential",
    "credential_path",
    "account_name",
    "account_key",
    "sas_token",
    "connection_string",
    "virtual_host_style",
    "anonymous",
    "timeout",
    "stall_timeout",
    "retries",
    "sse",
    "sse_kms_key_id",
    "sse_customer_key",
    "sse_customer_key_file",
    "sse_bucket_key",
    "encryption_scope",
    "create_only",
];

/// Option keys whose values are secrets.
pub const SECRET_KEYS: &[&str] = &[
    "secret_key",
    "session_token",
    "credential",
    "account_key",
    "sas_token",
    "connection_string",
    "sse_customer_key",
];

/// Option keys whose value is `true` or `false`.
const BOOL_KEYS: &[&str] = &["virtual_host_style", "anonymous", "sse_bucket_key"];

/// Why an option was refused. The variants hold no option value, so a message built from one
/// shows only what the caller chooses to show ([`OptionError::message`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionError {
    /// Not one of [`OPTION_KEYS`].
    Unknown,
    /// A boolean key with a value other than `true`/`false` (any case).
    NotBool,
    /// `timeout` or `stall_timeout` that is not a number of seconds or `N[smhdw]`.
    NotDuration,
    /// `retries` that is not a whole number.
    NotCount,
    /// `endpoint` refused by [`super::check_endpoint`]; the message names no value.
    Endpoint(String),
    /// `sse` that is not one of [`SSE_MODES`].
    NotSse,
    /// `sse_kms_key_id` that is empty or holds characters no HTTP header can carry.
    NotKeyId,
    /// `sse_customer_key` that is not the base64 form of 32 bytes (the value is never shown).
    NotCustomerKey,
    /// `sse_customer_key_file` that is empty.
    EmptyPath,
    /// `create_only` that is not one of [`CREATE_ONLY_MODES`].
    NotCreateOnly,
}

/// Values of the `sse` option, in normal form (input is case-insensitive, `aws:kms` is read
/// as `kms`): `aes256` (store-managed keys: S3 SSE-S3, OSS AES256), `kms` (a KMS key: S3
/// SSE-KMS, OSS KMS; the key from `sse_kms_key_id`, else the store's default key), `sm4`
/// (OSS only) and `customer` (a 256-bit key the client sends with every request: S3 SSE-C,
/// Azure Blob customer-provided keys). Which backend takes which is checked when the
/// operator is built (`RemoteSpec::operator`).
pub const SSE_MODES: &[&str] = &["aes256", "kms", "sm4", "customer"];

/// Values of the `create_only` option (any case): how a create-only write (manifests, alias
/// revisions, signatures) makes sure it creates. `checked`: stat the key first, then write with
/// the store's precondition, which also covers stores that accept the precondition and ignore
/// it; `enforced`: the store honours the precondition, the write alone decides (one round trip
/// less). The default depends on the store (`RemoteSpec::create_only`).
pub const CREATE_ONLY_MODES: &[&str] = &["checked", "enforced"];

impl OptionError {
    /// The problem as one sentence, with the value shown as `shown` (e.g. `"soon"`, or the
    /// text written in the file before `${VAR}` substitution).
    pub fn message(&self, shown: &str) -> String {
        match self {
            OptionError::Unknown => format!("unknown option (known: {})", OPTION_KEYS.join(", ")),
            OptionError::NotBool => format!("{shown} is not true or false"),
            OptionError::NotDuration => format!("{shown} is not a duration (e.g. 120, 90s, 5m)"),
            OptionError::NotCount => format!("{shown} is not a whole number"),
            OptionError::Endpoint(m) => m.clone(),
            OptionError::NotSse => format!("{shown} is not one of {}", SSE_MODES.join(", ")),
            OptionError::NotKeyId => {
                format!("{shown} is not a KMS key id (printable ASCII, no spaces)")
            }
            OptionError::NotCustomerKey => "the value is not a base64 256-bit key (44 characters, \
                e.g. from `openssl rand -base64 32`)"
                .to_string(),
            OptionError::EmptyPath => "must name a file".to_string(),
            OptionError::NotCreateOnly => {
                format!("{shown} is not one of {}", CREATE_ONLY_MODES.join(", "))
            }
        }
    }
}

/// Checks remote option `key` = `value` and returns the value in its normal form: booleans
/// (`true`/`false`, any case) in lower case, `timeout` and `stall_timeout` (`120`, `90s`,
/// `2m`, ...) in whole seconds, `retries` as a plain number; `endpoint` must carry no
/// user-info; `sse` in lower case ([`SSE_MODES`]); `sse_kms_key_id` printable ASCII;
/// `sse_customer_key` the base64 form of 32 bytes; `create_only` in lower case
/// ([`CREATE_ONLY_MODES`]); other values are kept as given.
pub fn check_option(key: &str, value: &str) -> Result<String, OptionError> {
    if !OPTION_KEYS.contains(&key) {
        return Err(OptionError::Unknown);
    }
    if BOOL_KEYS.contains(&key) {
        let v = value.to_ascii_lowercase();
        return match v.as_str() {
            "true" | "false" => Ok(v),
            _ => Err(OptionError::NotBool),
        };
    }
    match key {
        "timeout" | "stall_timeout" => parse_duration_secs(value)
            .map(|s| s.to_string())
            .ok_or(OptionError::NotDuration),
        "retries" => value
            .trim()
            .parse::<u32>()
            .map(|n| n.to_string())
            .map_err(|_| OptionError::NotCount),
        "endpoint" => super::check_endpoint(value)
            .map(|()| value.to_string())
            .map_err(OptionError::Endpoint),
        "sse" => match value.to_ascii_lowercase().as_str() {
            "aws:kms" => Ok("kms".into()),
            v if SSE_MODES.contains(&v) => Ok(v.to_string()),
            _ => Err(OptionError::NotSse),
        },
        "sse_kms_key_id" => {
            let printable = value.bytes().all(|b| b.is_ascii_graphic());
            match !value.is_empty() && printable {
                true => Ok(value.to_string()),
                false => Err(OptionError::NotKeyId),
            }
        }
        "sse_customer_key" => parse_customer_key(value.as_bytes())
            .map(|_| value.trim().to_string())
            .ok_or(OptionError::NotCustomerKey),
        "sse_customer_key_file" if value.is_empty() => Err(OptionError::EmptyPath),
        "create_only" => match value.to_ascii_lowercase() {
            v if CREATE_ONLY_MODES.contains(&v.as_str()) => Ok(v),
            _ => Err(OptionError::NotCreateOnly),
        },
        _ => Ok(value.to_string()),
    }
}

/// Length of a customer-provided encryption key in bytes (AES-256, the only algorithm S3
/// SSE-C and Azure Blob customer-provided keys accept).
pub const CUSTOMER_KEY_BYTES: usize = 32;

/// A customer-provided key from its stored form: exactly [`CUSTOMER_KEY_BYTES`] raw bytes (a
/// key file made with `head -c 32 /dev/urandom`), or their standard base64 form with optional
/// surrounding whitespace (`openssl rand -base64 32`).
pub fn parse_customer_key(stored: &[u8]) -> Option<[u8; CUSTOMER_KEY_BYTES]> {
    use base64::Engine;
    if let Ok(raw) = <[u8; CUSTOMER_KEY_BYTES]>::try_from(stored) {
        return Some(raw);
    }
    let text = std::str::from_utf8(stored).ok()?.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    decoded.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_refuses() {
        for (key, value, want) in [
            ("anonymous", "TRUE", Ok("true")),
            ("virtual_host_style", "False", Ok("false")),
            ("anonymous", "yes", Err(OptionError::NotBool)),
            ("anonymous", "", Err(OptionError::NotBool)),
            ("timeout", "90", Ok("90")),
            ("timeout", "90s", Ok("90")),
            ("timeout", "2m", Ok("120")),
            ("timeout", "soon", Err(OptionError::NotDuration)),
            ("retries", "3", Ok("3")),
            ("retries", "-1", Err(OptionError::NotCount)),
            ("region", "eu-west-1", Ok("eu-west-1")),
            (
                "endpoint",
                "http://127.0.0.1:9000",
                Ok("http://127.0.0.1:9000"),
            ),
            ("regoin", "x", Err(OptionError::Unknown)),
            ("sse", "AES256", Ok("aes256")),
            ("sse", "aws:kms", Ok("kms")),
            ("sse", "Customer", Ok("customer")),
            ("sse", "des", Err(OptionError::NotSse)),
            (
                "sse_kms_key_id",
                "arn:aws:kms:eu-west-1:1:key/k",
                Ok("arn:aws:kms:eu-west-1:1:key/k"),
            ),
            ("sse_kms_key_id", "a b", Err(OptionError::NotKeyId)),
            ("sse_kms_key_id", "", Err(OptionError::NotKeyId)),
            (
                "sse_customer_key",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8= ",
                Ok("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
            ),
            (
                "sse_customer_key",
                "c2hvcnQ=",
                Err(OptionError::NotCustomerKey),
            ),
            ("sse_customer_key_file", "", Err(OptionError::EmptyPath)),
            ("sse_bucket_key", "TRUE", Ok("true")),
            ("sse_bucket_key", "1", Err(OptionError::NotBool)),
            ("create_only", "Enforced", Ok("enforced")),
            ("create_only", "checked", Ok("checked")),
            ("create_only", "trust", Err(OptionError::NotCreateOnly)),
        ] {
            let got = check_option(key, value);
            assert_eq!(got.as_deref().map_err(Clone::clone), want, "{key}={value}");
        }
        let e = check_option("endpoint", "http://u:hunter2@h").unwrap_err();
        assert!(matches!(&e, OptionError::Endpoint(_)));
        assert!(!e.message("***").contains("hunter2"));
        let e = check_option("sse_customer_key", "hunter2hunter2").unwrap_err();
        assert!(!e.message("***").contains("hunter2"));
    }

    #[test]
    fn customer_keys_raw_or_base64() {
        let raw: Vec<u8> = (0u8..32).collect();
        assert_eq!(parse_customer_key(&raw).unwrap().to_vec(), raw);
        let b64 = b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n";
        assert_eq!(parse_customer_key(b64).unwrap().to_vec(), raw);
        assert_eq!(parse_customer_key(&raw[..31]), None);
        assert_eq!(parse_customer_key(b"AAEC"), None);
    }
}
