//! `${VAR}`, `${VAR:-default}` and `$$` in config string values. Errors quote only the file's
//! own text, never a variable's value.

/// A string value split into literal text and `${...}` references.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Piece {
    Text(String),
    Var {
        name: String,
        default: Option<String>,
    },
}

/// Splits `raw` at `${VAR}` / `${VAR:-default}`, turning `$$` into `$`. The error says what is
/// wrong, quoting only the file's own text.
pub(super) fn template(raw: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = raw;
    while let Some(pos) = rest.find('$') {
        text.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(r) = after.strip_prefix('$') {
            text.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or("unterminated ${ (write $$ for a literal $)")?;
            let (name, default) = match body[..end].split_once(":-") {
                Some((n, d)) => (n, Some(d.to_string())),
                None => (&body[..end], None),
            };
            if !valid_var(name) {
                return Err(format!(
                    "invalid variable name {name:?} (use ${{NAME}} or ${{NAME:-default}})"
                ));
            }
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Var {
                name: name.to_string(),
                default,
            });
            rest = &body[end + 1..];
        } else {
            text.push('$');
            rest = after;
        }
    }
    text.push_str(rest);
    if !text.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

fn valid_var(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Substitutes variables; `Err(name)` for the first unset one without a default. `${VAR}` set
/// to the empty string gives the empty string.
pub(super) fn resolve(
    pieces: &[Piece],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Var { name, default } => match (env(name), default) {
                (Some(v), None) => out.push_str(&v),
                (Some(v), Some(_)) if !v.is_empty() => out.push_str(&v),
                (_, Some(d)) => out.push_str(d),
                (None, None) => return Err(name.clone()),
            },
        }
    }
    Ok(out)
}
