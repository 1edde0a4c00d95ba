//! Who may read: the token check (constant time) and, without a token, the loopback `Host`
//! rule that keeps a web page on another origin from reading the view through DNS rebinding.

use subtle::ConstantTimeEq;

/// Name of the cookie a browser keeps the token in after `?token=T`.
pub const COOKIE: &str = "mvault_token";

/// The token the server expects; compared in constant time.
#[derive(Clone)]
pub struct Token {
    /// BLAKE3 of the token: comparing digests of equal length hides the token's length too.
    digest: [u8; 32],
}

impl Token {
    pub fn new(token: &str) -> Token {
        Token {
            digest: *blake3::hash(token.as_bytes()).as_bytes(),
        }
    }

    /// True when `given` is the token. Takes the same time whatever `given` is (up to
    /// hashing it, which depends only on its length).
    pub fn matches(&self, given: &str) -> bool {
        let d = blake3::hash(given.as_bytes());
        d.as_bytes().ct_eq(&self.digest).into()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

/// The token a request presents: `Authorization: Bearer T`, else the [`COOKIE`], else the
/// `token` query parameter.
pub fn presented<'a>(
    authorization: Option<&'a str>,
    cookie: Option<&'a str>,
    query: Option<&'a str>,
) -> Option<String> {
    if let Some(t) = authorization.and_then(|a| a.strip_prefix("Bearer ")) {
        return Some(t.trim().to_string());
    }
    if let Some(c) = cookie {
        for part in c.split(';') {
            if let Some(t) = part
                .trim()
                .strip_prefix(COOKIE)
                .and_then(|r| r.strip_prefix('='))
            {
                return Some(t.to_string());
            }
        }
    }
    query_token(query)
}

/// The `token` parameter of a query string, decoded.
pub fn query_token(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

/// The query string without its `token` parameter (where a browser is sent once the cookie
/// is set, so the token leaves the address bar and history).
pub fn query_without_token(query: &str) -> String {
    let kept: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k != "token")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(kept)
        .finish()
}

/// True when a `Host` header names this machine's loopback: `localhost`, `127.0.0.1` (any
/// 127/8 address) or `[::1]`, with any port. Without a token, only such requests are served.
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, _)) => ip,
            None => return false,
        },
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_matches_only_itself() {
        let t = Token::new("s3cret-token");
        assert!(t.matches("s3cret-token"));
        for wrong in ["", "s3cret-toke", "s3cret-tokenX", "S3cret-token", "x"] {
            assert!(!t.matches(wrong), "{wrong:?} accepted");
        }
        assert_eq!(format!("{t:?}"), "Token(***)");
    }

    #[test]
    fn token_sources() {
        assert_eq!(
            presented(
                Some("Bearer abc"),
                Some("mvault_token=zzz"),
                Some("token=q")
            ),
            Some("abc".into())
        );
        assert_eq!(
            presented(None, Some("a=1; mvault_token=zzz; b=2"), Some("token=q")),
            Some("zzz".into())
        );
        assert_eq!(
            presented(None, None, Some("page=2&token=a%2Bb")),
            Some("a+b".into())
        );
        assert_eq!(presented(Some("Basic eA=="), None, None), None);
        assert_eq!(
            query_without_token("q=bert&token=x&page=2"),
            "q=bert&page=2"
        );
    }

    #[test]
    fn loopback_hosts() {
        for ok in [
            "localhost",
            "localhost:8080",
            "LOCALHOST:1",
            "127.0.0.1:8080",
            "127.1.2.3",
            "[::1]:8080",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "localhost.evil.example",
            "10.0.0.1:8080",
            "[::1",
            "",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }
}
