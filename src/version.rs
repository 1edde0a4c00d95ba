//! Model names, versions and version selectors (`name@1.2.0`, `name@latest`, `name@^1.2`,
//! `name@production`).
//!
//! Invariants: a [`ModelName`] matches `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`; a [`Version`] is a
//! semantic version whose optional leading `v` is kept for display only (`v1.0.0 == 1.0.0`).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Why a name, version or selector was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error(
        "invalid model name {0:?}: use 1-128 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit"
    )]
    Name(String),
    #[error("invalid version {0:?}: expected a semantic version such as 1.2.0 or v1.2.0-rc.1")]
    Version(String),
    #[error("invalid alias {0:?}: use 1-64 characters from a-z 0-9 . _ -, starting with a letter")]
    Alias(String),
    #[error(
        "invalid version selector {0:?}: expected a version, a range like ^1.2, latest or an alias"
    )]
    Selector(String),
}

/// A validated model name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelName(String);

impl ModelName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ModelName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(ModelName(s.to_string()))
        } else {
            Err(Error::Name(s.to_string()))
        }
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// A semantic version, remembering whether the user wrote a leading `v`.
#[derive(Debug, Clone)]
pub struct Version {
    semver: semver::Version,
    v_prefix: bool,
}

impl Version {
    /// The canonical form (no `v`), used in object keys.
    pub fn canonical(&self) -> String {
        self.semver.to_string()
    }

    pub fn semver(&self) -> &semver::Version {
        &self.semver
    }

    pub fn is_prerelease(&self) -> bool {
        !self.semver.pre.is_empty()
    }
}

impl FromStr for Version {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let (body, v_prefix) = match s.strip_prefix('v').or_else(|| s.strip_prefix('V')) {
            Some(rest) => (rest, true),
            None => (s, false),
        };
        let semver = semver::Version::parse(body).map_err(|_| Error::Version(s.to_string()))?;
        Ok(Version { semver, v_prefix })
    }
}

impl fmt::Display for Version {
    /// The version as the user wrote it (`v1.0.0` keeps its `v`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.v_prefix {
            f.pad(&format!("v{}", self.semver))
        } else {
            f.pad(&self.semver.to_string())
        }
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.semver == other.semver
    }
}
impl Eq for Version {}
impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.semver.cmp(&other.semver)
    }
}

/// A validated alias name (`production`, `staging`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Alias(String);

impl Alias {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Alias {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.as_bytes()[0].is_ascii_lowercase()
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
            && s != "latest";
        if ok {
            Ok(Alias(s.to_string()))
        } else {
            Err(Error::Alias(s.to_string()))
        }
    }
}

impl fmt::Display for Alias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What follows the `@` in `name@...`.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    /// Highest release version (pre-releases only if no release exists).
    Latest,
    Exact(Version),
    /// A semver range such as `^1.2` or `~1.2.3`: the highest match.
    Range(semver::VersionReq),
    Alias(Alias),
}

impl Selector {
    /// Picks the version this selector means among `available` (aliases are resolved by the
    /// caller). Returns `None` when nothing matches.
    pub fn pick<'a>(&self, available: &'a [Version]) -> Option<&'a Version> {
        match self {
            Selector::Latest => available
                .iter()
                .filter(|v| !v.is_prerelease())
                .max()
                .or_else(|| available.iter().max()),
            Selector::Exact(want) => available.iter().find(|v| *v == want),
            Selector::Range(req) => available.iter().filter(|v| req.matches(&v.semver)).max(),
            Selector::Alias(_) => None,
        }
    }
}

impl FromStr for Selector {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if s == "latest" {
            return Ok(Selector::Latest);
        }
        if let Ok(v) = s.parse::<Version>() {
            return Ok(Selector::Exact(v));
        }
        if s.starts_with(['^', '~', '=', '>', '<']) || s.contains('*') {
            return semver::VersionReq::parse(s)
                .map(Selector::Range)
                .map_err(|_| Error::Selector(s.to_string()));
        }
        if s.starts_with(|c: char| c.is_ascii_digit() || c == 'v') && s.contains('.') {
            return Err(Error::Version(s.to_string()));
        }
        s.parse::<Alias>()
            .map(Selector::Alias)
            .map_err(|_| Error::Selector(s.to_string()))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Latest => f.write_str("latest"),
            Selector::Exact(v) => write!(f, "{v}"),
            Selector::Range(r) => write!(f, "{r}"),
            Selector::Alias(a) => write!(f, "{a}"),
        }
    }
}

/// `name` or `name@selector`; a bare name means `latest`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRef {
    pub name: ModelName,
    pub selector: Selector,
}

impl FromStr for ModelRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let (name, sel) = match s.split_once('@') {
            Some((n, v)) => (n, v.parse()?),
            None => (s, Selector::Latest),
        };
        Ok(ModelRef {
            name: name.parse()?,
            selector: sel,
        })
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.selector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn names() {
        for ok in ["bert", "eitp_gpt2", "SEG_M2F_1.x", "a", &"x".repeat(128)] {
            assert!(ok.parse::<ModelName>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-x",
            ".hidden",
            "a/b",
            "a b",
            "..",
            "é",
            &"x".repeat(129),
        ] {
            assert!(bad.parse::<ModelName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn v_prefix_is_the_same_version_but_kept_for_display() {
        assert_eq!(v("v1.0.0"), v("1.0.0"));
        assert_eq!(v("v1.0.0").to_string(), "v1.0.0");
        assert_eq!(v("v1.0.0").canonical(), "1.0.0");
        assert!("1.0".parse::<Version>().is_err());
        assert!("v1.0.0.0".parse::<Version>().is_err());
        assert!("latest".parse::<Version>().is_err());
    }

    #[test]
    fn ordering_follows_semver_with_prereleases() {
        let mut vs = [
            v("1.0.0"),
            v("v1.0.0-rc.1"),
            v("0.9.12"),
            v("1.0.0-alpha"),
            v("v1.10.0"),
            v("1.2.0"),
        ];
        vs.sort();
        let shown: Vec<String> = vs.iter().map(|x| x.to_string()).collect();
        assert_eq!(
            shown,
            [
                "0.9.12",
                "1.0.0-alpha",
                "v1.0.0-rc.1",
                "1.0.0",
                "1.2.0",
                "v1.10.0"
            ]
        );
    }

    #[test]
    fn latest_skips_prereleases_unless_only_prereleases() {
        let vs = vec![v("1.0.0"), v("2.0.0-rc.1")];
        assert_eq!(Selector::Latest.pick(&vs), Some(&v("1.0.0")));
        let pre = vec![v("2.0.0-rc.1"), v("2.0.0-rc.2")];
        assert_eq!(Selector::Latest.pick(&pre), Some(&v("2.0.0-rc.2")));
        assert_eq!(Selector::Latest.pick(&[]), None);
    }

    #[test]
    fn ranges_pick_highest_match() {
        let vs = vec![v("1.2.0"), v("1.2.7"), v("1.3.1"), v("2.0.0")];
        let caret: Selector = "^1.2".parse().unwrap();
        assert_eq!(caret.pick(&vs), Some(&v("1.3.1")));
        let tilde: Selector = "~1.2.3".parse().unwrap();
        assert_eq!(tilde.pick(&vs), Some(&v("1.2.7")));
        let none: Selector = "^3".parse().unwrap();
        assert_eq!(none.pick(&vs), None);
    }

    #[test]
    fn model_refs() {
        let r: ModelRef = "bert@v1.2.0".parse().unwrap();
        assert_eq!(r.name.as_str(), "bert");
        assert_eq!(r.selector, Selector::Exact(v("1.2.0")));
        assert_eq!(
            "bert".parse::<ModelRef>().unwrap().selector,
            Selector::Latest
        );
        assert!(matches!(
            "bert@production".parse::<ModelRef>().unwrap().selector,
            Selector::Alias(_)
        ));
        assert_eq!(
            "bert@1.2".parse::<ModelRef>(),
            Err(Error::Version("1.2".into()))
        );
        assert!("bad name@1.0.0".parse::<ModelRef>().is_err());
        assert!("bert@Prod!".parse::<ModelRef>().is_err());
    }
}
