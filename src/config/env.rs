//! `${VAR}`, `${VAR:-default}` and `$$` in config string values.

/// Why a value could not be expanded.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum Bad {
    /// Bad `${...}` syntax; the message quotes only the file's own text.
    #[error("{0}")]
    Syntax(String),
    /// The first variable without a default that `env` does not set.
    #[error("environment variable {0} is not set (set it, or write ${{{0}:-default}})")]
    Unset(String),
}

/// Substitutes variables as the module doc of [`super`] says. A syntax error anywhere wins
/// over an unset variable, so it is reported at load even in a provider that is never used.
pub(super) fn expand(raw: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, Bad> {
    let (mut out, mut unset, mut rest) = (String::new(), None, raw);
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after.strip_prefix('$').unwrap_or(after);
            continue;
        };
        let end = body
            .find('}')
            .ok_or_else(|| Bad::Syntax("unterminated ${ (write $$ for a literal $)".to_string()))?;
        let inner = &body[..end];
        let (name, default) = inner
            .split_once(":-")
            .map_or((inner, None), |(n, d)| (n, Some(d)));
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(Bad::Syntax(format!(
                "invalid variable name {name:?} (use ${{NAME}} or ${{NAME:-default}})"
            )));
        }
        // A default also stands for an empty value.
        let value = env(name).filter(|v| default.is_none() || !v.is_empty());
        match value.or(default.map(str::to_string)) {
            Some(v) => out.push_str(&v),
            None => unset = unset.or_else(|| Some(name.to_string())),
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    unset.map_or(Ok(out), |v| Err(Bad::Unset(v)))
}
