//! Push policy above the pipeline: metadata files, a directory of models, fan-out of one push
//! to several remotes.

use std::path::{Path, PathBuf};

use futures::{Stream, StreamExt};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{Error, Result, Vault};
use crate::chunk::Digest;
use crate::error::Category;
use crate::transfer::{PushRequest, Summary, TransferOptions};
use crate::version::ModelName;

/// Pushes running at once in [`push_many`] (each has its own `jobs` requests in flight).
const PARALLEL_PUSHES: usize = 4;

/// What one push of [`push_many`] did: the version written, or why not (`--json` prints it,
/// one object per pushed version).
#[derive(Debug, Serialize)]
pub struct PushOutcome {
    pub model_name: String,
    /// The remote's display name (no secrets).
    pub remote: String,
    #[serde(flatten)]
    pub result: PushResult,
}

/// The success or failure part of a [`PushOutcome`].
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum PushResult {
    Pushed {
        version: String,
        /// The version's checksum (see `docs/FORMAT.md`).
        checksum: Digest,
        /// Bytes of all files.
        file_size: u64,
        files: usize,
        summary: Summary,
        /// True for `push --dry-run`: nothing was uploaded and the version was not written;
        /// `summary` says what a push would send.
        dry_run: bool,
    },
    Failed {
        /// The error's one-line message.
        error: String,
        category: Category,
        #[serde(skip)]
        cause: Box<Error>,
    },
}

/// Reads a `--metadata-file`: a JSON object (see [`merge_metadata`]).
pub fn read_metadata_file(path: &Path) -> Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => {
            Error::Input(format!("metadata file {} does not exist", path.display()))
        }
        std::io::ErrorKind::InvalidData => Error::Input(format!(
            "metadata file {}: not UTF-8 text (expected a JSON object)",
            path.display()
        )),
        _ => Error::Io {
            path: format!("metadata file {}", path.display()),
            source,
        },
    })?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(_) => Err(Error::Input(format!(
            "metadata file {}: expected a JSON object",
            path.display()
        ))),
        Err(e) => Err(Error::Input(format!(
            "metadata file {}: invalid JSON: {e}",
            path.display()
        ))),
    }
}

/// Merges a metadata object into `req`; values already in `req` (from the command line) win.
/// `description` (a string) fills an empty description; `performance_metrics` and
/// `training_config` (objects) merge under the metrics and params; `tags` (an object) under
/// the tags, non-string values as their JSON text; fields mvault computes itself
/// (`model_name`, `version`, `created_at`, `file_size`, `checksum`, `files`) are ignored;
/// every other key is kept as extra metadata. One of the four known keys with a value of
/// another type is refused ([`Error::Input`], naming it), nothing merged.
pub fn merge_metadata(req: &mut PushRequest, obj: Map<String, Value>) -> Result<()> {
    let expect = |key: &str, kind: &str| {
        Err(Error::Input(format!(
            "metadata: {key} must be {kind}; fix the metadata (file) and push again"
        )))
    };
    for (k, v) in &obj {
        match (k.as_str(), v) {
            ("description", v) if !v.is_string() => return expect(k, "a string"),
            ("performance_metrics" | "training_config" | "tags", v) if !v.is_object() => {
                return expect(k, "an object");
            }
            _ => {}
        }
    }
    for (k, v) in obj {
        match (k.as_str(), v) {
            ("description", Value::String(s)) => {
                if req.description.is_empty() {
                    req.description = s;
                }
            }
            ("performance_metrics", Value::Object(o)) => merge_under(&mut req.metrics, o),
            ("training_config", Value::Object(o)) => merge_under(&mut req.params, o),
            ("tags", Value::Object(o)) => {
                for (tk, tv) in o {
                    let s = tv
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| tv.to_string());
                    req.tags.entry(tk).or_insert(s);
                }
            }
            ("model_name" | "version" | "created_at" | "file_size" | "checksum" | "files", _) => {}
            (_, v) => {
                req.extra.insert(k, v);
            }
        }
    }
    Ok(())
}

fn merge_under(dst: &mut Map<String, Value>, src: Map<String, Value>) {
    for (k, v) in src {
        dst.entry(k).or_insert(v);
    }
}

/// The models a directory stands for (`push --models-dir`): each entry not starting with `.`
/// is one model, a sub-directory named after itself, a file after its name up to the first
/// `.` (`bert.onnx` is `bert`). Sorted by name; an empty directory is an input error.
pub fn models_in_dir(dir: &Path) -> Result<Vec<(ModelName, PathBuf)>> {
    let io = |source| Error::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => Error::Input(format!(
            "models directory {} does not exist or is not a directory",
            dir.display()
        )),
        _ => io(e),
    })?;
    for e in entries {
        let e = e.map_err(io)?;
        let file_name = e.file_name();
        let Some(n) = file_name.to_str().filter(|n| !n.starts_with('.')) else {
            continue;
        };
        let stem = if e.path().is_file() {
            n.split('.').next().unwrap_or(n)
        } else {
            n
        };
        out.push((stem.parse::<ModelName>()?, e.path()));
    }
    out.sort();
    if out.is_empty() {
        return Err(Error::Input(format!("{}: no models found", dir.display())));
    }
    Ok(out)
}

/// Pushes every model of `models` (name, paths) to every vault of `vaults`, with `template`'s
/// version and metadata, [`PARALLEL_PUSHES`] at a time. One push failing does not stop the
/// others; each outcome is yielded as its push ends (completion order).
pub fn push_many<'a>(
    vaults: &'a [Vault],
    models: &'a [(ModelName, Vec<PathBuf>)],
    template: &'a PushRequest,
    opts: &'a TransferOptions,
) -> impl Stream<Item = PushOutcome> + 'a {
    let jobs = vaults
        .iter()
        .flat_map(|v| models.iter().map(move |(n, p)| (v, n, p)));
    futures::stream::iter(jobs)
        .map(move |(vault, name, paths)| async move {
            let req = PushRequest {
                name: name.clone(),
                paths: paths.clone(),
                ..template.clone()
            };
            let result = match vault.push(&req, opts).await {
                Ok((m, summary)) => PushResult::Pushed {
                    version: m.version,
                    checksum: m.checksum,
                    file_size: m.file_size,
                    files: m.files.len(),
                    summary,
                    dry_run: req.dry_run,
                },
                Err(e) => PushResult::Failed {
                    error: e.to_string(),
                    category: e.category(),
                    cause: Box::new(e),
                },
            };
            PushOutcome {
                model_name: name.to_string(),
                remote: vault.remote().name().to_string(),
                result,
            }
        })
        .buffer_unordered(PARALLEL_PUSHES)
}
