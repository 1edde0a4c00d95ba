//! What the CLI records in the audit log: one line per command, written when it ends, from
//! the notes the command left in its [`Context`](super::context::Context). A failure to write
//! the audit log is a warning, never a failed command.

use std::time::Instant;

use super::context::Notes;
use super::output;
use crate::audit::{AuditLog, Record};

/// How a command ended, for its record.
pub enum Outcome<'a> {
    /// It failed with this (already scrubbed) message.
    Failed(&'a str),
    /// It ran to its end and exits with this code: a code other than 0 (`verify` found
    /// damage, `usage` passed its cost alert) is recorded as a failure too.
    Exited(i32),
}

/// Writes the command's record.
pub fn finish(log: &AuditLog, command: &str, started: Instant, notes: Notes, end: Outcome<'_>) {
    let mut r = Record::new(command, notes.remote.as_deref().unwrap_or("-"));
    r.set_transfer(notes.bytes, started.elapsed());
    (r.model, r.version) = (notes.model, notes.version);
    if let Some(d) = notes.detail {
        r.set_detail(output::scrub_message(&d));
    }
    match end {
        Outcome::Failed(e) => r.set_error(output::scrub_message(e)),
        Outcome::Exited(0) => {}
        Outcome::Exited(code) => r.set_error(format!("exit code {code}")),
    }
    log.append_or_warn(&r);
}
