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
];

/// Option keys whose values are secrets.
pub const SECRET_KEYS: &[&str] = &[
    "secret_key",
    "session_token",
    "credential",
    "account_key",
    "sas_token",
    "connection_string",
];

/// Option keys whose value is `true` or `false`.
const BOOL_KEYS: &[&str] = &["virtual_host_style", "anonymous"];

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
}

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
        }
    }
}

/// Checks remote option `key` = `value` and returns the value in its normal form: booleans
/// (`true`/`false`, any case) in lower case, `timeout` and `stall_timeout` (`120`, `90s`,
/// `2m`, ...) in whole
/// seconds, `retries` as a plain number; `endpoint` must carry no user-info; other values are
/// kept as given.
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
        _ => Ok(value.to_string()),
    }
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
        ] {
            let got = check_option(key, value);
            assert_eq!(got.as_deref().map_err(Clone::clone), want, "{key}={value}");
        }
        let e = check_option("endpoint", "http://u:hunter2@h").unwrap_err();
        assert!(matches!(&e, OptionError::Endpoint(_)));
        assert!(!e.message("***").contains("hunter2"));
    }
}
