//! What the CLI records in the audit log: one line per command, written when it ends, from
//! the notes the command left in its [`Context`](super::context::Context). A failure to write
//! the audit log is a warning, never a failed command.

use std::time::Instant;

use super::context::Notes;
use super::output;
use crate::audit::{AuditLog, Record};

/// Writes the command's record. `error` must be the already scrubbed message.
pub fn finish(log: &AuditLog, command: &str, started: Instant, notes: Notes, error: Option<&str>) {
    let mut r = Record::new(command, notes.remote.as_deref().unwrap_or("-"))
        .with_transfer(notes.bytes, started.elapsed());
    if let Some(m) = notes.model {
        r = r.with_model(m);
    }
    if let Some(v) = notes.version {
        r = r.with_version(v);
    }
    if let Some(e) = error {
        r = r.with_error(output::scrub_message(e));
    }
    log.append_or_warn(&r);
}
