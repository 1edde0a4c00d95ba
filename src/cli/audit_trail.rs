//! What the CLI records in the audit log: one line per command, written when it ends, from
//! the notes the command left in its [`Context`](super::context::Context). A failure to write
//! the audit log is a warning, never a failed command.

use std::time::Instant;

use super::context::Notes;
use super::output;
use crate::audit::{AuditLog, Record};

/// Writes the command's record. `error` must be the already scrubbed message.
pub fn finish(log: &AuditLog, command: &str, started: Instant, notes: Notes, error: Option<&str>) {
    let mut r = Record::new(command, notes.remote.as_deref().unwrap_or("-"));
    r.set_transfer(notes.bytes, started.elapsed());
    (r.model, r.version) = (notes.model, notes.version);
    if let Some(e) = error {
        r.set_error(output::scrub_message(e));
    }
    log.append_or_warn(&r);
}
