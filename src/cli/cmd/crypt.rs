//! `mvault keygen --encryption --out FILE`: a new vault encryption key (see `crate::crypt`).

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::cli::context::Context;
use crate::cli::{exit, output};
use crate::crypt::Keys;

/// What `keygen --encryption --json` prints.
#[derive(Debug, Serialize)]
struct KeyWritten<'a> {
    path: &'a Path,
    /// The key check value, as the vault's marker will hold it (not secret).
    key_check: String,
}

/// Writes a new random encryption key to `out` and says where (never the key itself).
pub fn keygen_encryption(ctx: &Context, out: &Path) -> Result<i32> {
    let keys = Keys::generate();
    keys.write_new(out)?;
    let key_check = keys.key_check();
    if ctx.json {
        output::json(&KeyWritten {
            path: out,
            key_check,
        })?;
    } else {
        ctx.info(&format!(
            "wrote encryption key {} (key check {}); keep a copy in a safe place: an encrypted vault cannot be read without it",
            out.display(),
            &key_check[..16]
        ));
    }
    Ok(exit::OK)
}
