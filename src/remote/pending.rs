//! gc's pending records on a store: `gc/pending/<UTC time>-<16 hex>.json`, each listing chunks a
//! gc found unreferenced, which a later gc deletes if they still are (the protocol is in
//! `docs/FORMAT.md`, "Deletion and gc"). Written by gc; read by gc and by every push, which
//! uploads the chunks they list again. They live here, in the layout layer, so that the
//! push pipeline and gc both depend on them without depending on each other.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::{ErrorKind, ObjectInfo, Remote};
use crate::chunk::Digest;
use crate::error::Category;

/// Why the pending records could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PendingError {
    #[error(transparent)]
    Remote(#[from] super::Error),
    /// A record of a format this build does not know: a newer gc may sweep what it lists.
    #[error(
        "gc record {key} has format {format}, but this mvault reads format {RECORD_FORMAT}: \
         upgrade mvault"
    )]
    NewerFormat { key: String, format: u32 },
}

impl PendingError {
    pub fn category(&self) -> Category {
        match self {
            PendingError::Remote(e) => e.category(),
            PendingError::NewerFormat { .. } => Category::Usage,
        }
    }
}

type Result<T> = std::result::Result<T, PendingError>;

/// How long the stat of a doomed chunk may precede the end of its delete: the sweep sends no
/// delete more than half of this after the stat answered, and warns when a delete finishes
/// later than this after the stat was sent. A push re-checks the chunks it rewrote at least
/// this long after the last rewrite.
pub const SWEEP_BOUND: Duration = Duration::from_secs(10);

/// Where pending records live (relative to the remote's root).
pub const PENDING_DIR: &str = "gc/pending/";

/// Most chunk ids in one pending record (about 0.7 MiB of JSON).
pub const RECORD_MAX_CHUNKS: usize = 10_000;

/// The `format` of pending records this build reads and writes.
const RECORD_FORMAT: u32 = 1;

/// A pending record `gc/pending/<UTC time>-<16 hex>.json`: chunks a gc found unreferenced
/// and at least `grace_seconds` old, which a later gc deletes if they still are.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RecordDoc {
    format: u32,
    /// RFC 3339 UTC, the recording gc's clock (information only: ripeness is measured by the
    /// store's modification time of the record).
    created_at: String,
    /// Grace period of the run that wrote it, in seconds (information only).
    grace_seconds: u64,
    /// Ids of the recorded chunks, sorted.
    pub chunks: Vec<Digest>,
    /// Ids of the recorded packs, sorted (omitted when none; older gcs ignore it, and older
    /// pushes never reference packs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packs: Vec<Digest>,
}

/// A record as found on the remote (or, in a dry run, the one it would have written).
pub struct Record {
    /// `None` for a dry run's would-be record.
    pub key: Option<String>,
    /// When the store says the record was written; `None` if it does not say (never ripe).
    pub written: Option<SystemTime>,
    pub chunks: Vec<Digest>,
    pub packs: Vec<Digest>,
}

/// What the pending records list, as a push reads them when it starts.
#[derive(Debug, Default)]
pub struct Pending {
    /// Chunks a push must upload again rather than trust present.
    pub chunks: HashSet<Digest>,
    /// Packs a push must not reference: it packs their chunks again into a new pack.
    pub packs: HashSet<Digest>,
}

/// Writes a new record of `chunks` and `packs` (create-only) and returns it with the store's
/// time of it.
pub async fn write_record(
    remote: &Remote,
    (chunks, packs): (Vec<Digest>, Vec<Digest>),
    grace: Duration,
) -> Result<Record> {
    let at = chrono::Utc::now();
    let key = format!(
        "{PENDING_DIR}{}-{:016x}.json",
        at.format("%Y%m%dT%H%M%S%.3fZ"),
        fastrand::u64(..)
    );
    let doc = RecordDoc {
        format: RECORD_FORMAT,
        created_at: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        grace_seconds: grace.as_secs(),
        chunks,
        packs,
    };
    let mut json = serde_json::to_vec_pretty(&doc).expect("serializable");
    json.push(b'\n');
    remote.create_only(&key, Bytes::from(json)).await?;
    let written = remote.stat(&key).await?.and_then(|o| o.last_modified);
    Ok(Record {
        key: Some(key),
        written,
        chunks: doc.chunks,
        packs: doc.packs,
    })
}

/// Every pending record on the remote. A record deleted after the listing is skipped; one
/// that does not parse is ignored with a warning (by gc and push alike, so it never causes
/// a delete); one of another `format` is an error ("upgrade mvault"), since a newer gc may
/// sweep what it lists; any other failure is an error.
pub async fn read_records(remote: &Remote, jobs: usize) -> Result<Vec<Record>> {
    let listed: Vec<ObjectInfo> = remote
        .list_objects(PENDING_DIR)
        .await?
        .into_iter()
        .filter(|o| {
            o.key
                .strip_prefix(PENDING_DIR)
                .is_some_and(|n| !n.contains('/') && !n.starts_with('.') && n.ends_with(".json"))
        })
        .collect();
    let read: Vec<Option<Record>> = futures::stream::iter(listed)
        .map(|o| async move {
            let bytes = match remote.read(&o.key).await {
                Ok(b) => b,
                Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            // The format alone first: a record of another format may list chunks a newer gc
            // will delete, so ignoring it could publish a broken version; refuse instead.
            #[derive(Deserialize)]
            struct Probe {
                format: u32,
            }
            if let Ok(p) = serde_json::from_slice::<Probe>(&bytes)
                && p.format != RECORD_FORMAT
            {
                return Err(PendingError::NewerFormat {
                    key: o.key,
                    format: p.format,
                });
            }
            match serde_json::from_slice::<RecordDoc>(&bytes) {
                Ok(doc) => Ok(Some(Record {
                    key: Some(o.key),
                    written: o.last_modified,
                    chunks: doc.chunks,
                    packs: doc.packs,
                })),
                Err(e) => {
                    tracing::warn!("ignoring damaged gc record {}: {e}", o.key);
                    Ok(None)
                }
            }
        })
        .buffer_unordered(jobs)
        .try_collect()
        .await?;
    Ok(read.into_iter().flatten().collect())
}

/// Every chunk and pack some pending record lists: a push must not rely on these being
/// present; it uploads such chunks again (which also makes a sweep keep them) and never
/// references such packs. Read when the push starts.
pub async fn pending_chunks(remote: &Remote, jobs: usize) -> Result<Pending> {
    // Records list stored chunk names: the writer compares them with `Remote::stored_id`,
    // which needs the vault's encryption resolved (and a refused key fails here, first). The
    // two reads go out at once: the records do not depend on it, and each is a round trip.
    let (sealing, records) = tokio::join!(remote.sealing(), read_records(remote, jobs));
    sealing?;
    let mut pending = Pending::default();
    for r in records? {
        pending.chunks.extend(r.chunks);
        pending.packs.extend(r.packs);
    }
    Ok(pending)
}
