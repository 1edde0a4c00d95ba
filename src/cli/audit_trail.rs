//! What the CLI records in the audit log: one line per command, written when it ends.
//!
//! Commands note the remote, model, version and bytes they handled as they go
//! ([`note_remote`], [`note_model`], [`note_bytes`]); [`finish`] writes the record with the
//! outcome. A failure to write the audit log is a warning, never a failed command.

use std::sync::Mutex;
use std::time::Instant;

use super::output;
use crate::audit::{AuditLog, Record};

#[derive(Default)]
struct Notes {
    remote: Option<String>,
    model: Option<String>,
    version: Option<String>,
    bytes: u64,
}

static NOTES: Mutex<Option<Notes>> = Mutex::new(None);

fn with_notes(f: impl FnOnce(&mut Notes)) {
    let mut guard = NOTES.lock().expect("audit notes");
    f(guard.get_or_insert_with(Notes::default));
}

/// The remote the command talks to (display name, no secrets).
pub fn note_remote(name: &str) {
    with_notes(|n| {
        n.remote.get_or_insert_with(|| name.to_string());
    });
}

/// The model and version the command is about.
pub fn note_model(model: &str, version: Option<&str>) {
    with_notes(|n| {
        n.model = Some(model.to_string());
        n.version = version.map(str::to_string);
    });
}

/// Bytes moved (local/logical bytes), added up over the command.
pub fn note_bytes(bytes: u64) {
    with_notes(|n| n.bytes += bytes);
}

/// Writes the command's record. `error` must be the already scrubbed message.
pub fn finish(log: &AuditLog, command: &str, started: Instant, error: Option<&str>) {
    let notes = NOTES
        .lock()
        .expect("audit notes")
        .take()
        .unwrap_or_default();
    let mut r = Record::new(command, notes.remote.as_deref().unwrap_or("-"));
    r.set_transfer(notes.bytes, started.elapsed());
    (r.model, r.version) = (notes.model, notes.version);
    if let Some(e) = error {
        r.set_error(output::scrub_message(e));
    }
    log.append_or_warn(&r);
}
