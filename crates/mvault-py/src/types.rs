//! The typed results of `mvault.Vault`'s methods.

use std::collections::BTreeMap;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use mvault::lifecycle;
use mvault::manifest::Manifest;
use mvault::transfer::Summary;
use mvault::vault::{AliasChange as LibAliasChange, AliasInfo as LibAliasInfo};

use crate::convert::{datetime, map_to_py, to_py};

/// For each result type: `FIELDS`, its attributes (what `to_dict`, `__eq__` and pickling
/// read), and `from_state`, the type built back from them (what [`restore`] calls).
macro_rules! state {
    ($t:ident { $($f:ident),* $(,)? }) => {
        impl $t {
            const FIELDS: &'static [&'static str] = &[$(stringify!($f)),*];

            fn from_state(d: &Bound<'_, PyDict>) -> PyResult<$t> {
                Ok($t { $($f: field(d, stringify!($f))?),* })
            }
        }
    };
}

/// A result type's `#[pymethods]`: its own (`__repr__`, and `to_dict` when it has a shape of
/// its own), then `__eq__` and `__reduce__` over its `FIELDS`, and, when named, `to_dict`
/// (every attribute) and, after a `;`, `__hash__` (types whose attributes are all plain values).
macro_rules! result_methods {
    ($t:ident $(, $to_dict:ident)? $(; $hash:ident)? { $($own:tt)* }) => {
        #[pymethods]
        impl $t {
            $($own)*

            fn __eq__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
                same(slf.as_any(), other, Self::FIELDS)
            }

            fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py>> {
                reduce(slf.as_any(), stringify!($t), Self::FIELDS)
            }

            $(
                /// Every attribute as a dict (nested results as dicts too).
                fn $to_dict<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyDict>> {
                    fields_dict(slf.as_any(), Self::FIELDS)
                }
            )?

            $(
                fn $hash(slf: &Bound<'_, Self>) -> PyResult<isize> {
                    hash_fields(slf.as_any(), Self::FIELDS)
                }
            )?
        }
    };
}

fn field<'py, T: pyo3::conversion::FromPyObjectOwned<'py>>(
    d: &Bound<'py, PyDict>,
    key: &str,
) -> PyResult<T> {
    d.get_item(key)?
        .ok_or_else(|| PyTypeError::new_err(format!("missing field {key:?}")))?
        .extract::<T>()
        .map_err(Into::into)
}

/// What `__reduce__` returns: [`restore`] and its arguments.
type Reduced<'py> = (Bound<'py, PyAny>, (&'static str, Bound<'py, PyDict>));

/// Pickles a result as `_restore(name, {field: value})`; nested results pickle themselves.
fn reduce<'py>(
    obj: &Bound<'py, PyAny>,
    name: &'static str,
    fields: &[&str],
) -> PyResult<Reduced<'py>> {
    let state = PyDict::new(obj.py());
    for f in fields {
        state.set_item(f, obj.getattr(*f)?)?;
    }
    let restore = obj.py().import("mvault._mvault")?.getattr("_restore")?;
    Ok((restore, (name, state)))
}

/// Builds a pickled result back (`__reduce__`'s callable; not public API).
#[pyfunction]
#[pyo3(name = "_restore")]
pub fn restore(py: Python<'_>, name: &str, state: &Bound<'_, PyDict>) -> PyResult<Py<PyAny>> {
    fn new<T: pyo3::PyClass + Into<pyo3::PyClassInitializer<T>>>(
        py: Python<'_>,
        v: PyResult<T>,
    ) -> PyResult<Py<PyAny>> {
        Ok(Py::new(py, v?)?.into_any())
    }
    match name {
        "PushResult" => new(py, PushResult::from_state(state)),
        "FileInfo" => new(py, FileInfo::from_state(state)),
        "Info" => new(py, Info::from_state(state)),
        "AliasChange" => new(py, AliasChange::from_state(state)),
        "AliasInfo" => new(py, AliasInfo::from_state(state)),
        "VerifyReport" => new(py, VerifyReport::from_state(state)),
        "UsageReport" => new(py, UsageReport::from_state(state)),
        "GcReport" => new(py, GcReport::from_state(state)),
        "PruneResult" => new(py, PruneResult::from_state(state)),
        _ => Err(PyTypeError::new_err(format!(
            "not an mvault result type: {name:?}"
        ))),
    }
}

/// The attributes `fields` of a result as a dict; a nested result (alone or in a list) as its
/// own `to_dict()`.
/// A deep copy: changing it leaves the (frozen) result as it was.
fn fields_dict<'py>(obj: &Bound<'py, PyAny>, fields: &[&str]) -> PyResult<Bound<'py, PyDict>> {
    let py = obj.py();
    let d = PyDict::new(py);
    for f in fields {
        d.set_item(f, plain(obj.getattr(*f)?)?)?;
    }
    Ok(py
        .import("copy")?
        .call_method1("deepcopy", (d,))?
        .cast_into::<PyDict>()?)
}

/// The hash of a result whose attributes `fields` are all hashable once lists are tuples;
/// equal results hash equal. (Results holding dicts define no hash.)
fn hash_fields(obj: &Bound<'_, PyAny>, fields: &[&str]) -> PyResult<isize> {
    let py = obj.py();
    let mut items = Vec::with_capacity(fields.len());
    for f in fields {
        let v = obj.getattr(*f)?;
        items.push(match v.cast::<PyList>() {
            Ok(list) => list.to_tuple().into_any(),
            Err(_) => v,
        });
    }
    pyo3::types::PyTuple::new(py, items)?.hash()
}

fn plain(v: Bound<'_, PyAny>) -> PyResult<Bound<'_, PyAny>> {
    if let Ok(list) = v.cast::<PyList>() {
        let out = PyList::empty(v.py());
        for item in list.iter() {
            out.append(plain(item)?)?;
        }
        return Ok(out.into_any());
    }
    if !v.is_instance_of::<PyDict>() && v.hasattr("to_dict")? {
        return v.call_method0("to_dict");
    }
    Ok(v)
}

/// `a == b` for results: equal when `b` is of `a`'s type and every attribute of `fields` is
/// equal; `NotImplemented` for another type (so Python tries the reflected comparison).
fn same(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>, fields: &[&str]) -> PyResult<Py<PyAny>> {
    let py = a.py();
    if !b.get_type().is(a.get_type()) {
        return Ok(py.NotImplemented());
    }
    let equal = fields_dict(a, fields)?.eq(fields_dict(b, fields)?)?;
    Ok(pyo3::types::PyBool::new(py, equal)
        .to_owned()
        .into_any()
        .unbind())
}

/// What a push wrote.
#[pyclass(module = "mvault", frozen, get_all)]
pub struct PushResult {
    pub model_name: String,
    /// As written (`v1.0.0` keeps its `v`).
    pub version: String,
    /// The version's checksum, hex.
    pub checksum: String,
    /// Bytes of all files.
    pub file_size: u64,
    /// Number of files.
    pub files: usize,
    /// Bytes uploaded (compressed, new chunks only).
    pub bytes_sent: u64,
    pub chunks_new: u64,
    pub chunks_reused: u64,
    pub seconds: f64,
}

state!(PushResult {
    model_name,
    version,
    checksum,
    file_size,
    files,
    bytes_sent,
    chunks_new,
    chunks_reused,
    seconds
});

impl PushResult {
    pub fn new(m: &Manifest, s: &Summary) -> PushResult {
        PushResult {
            model_name: m.model_name.clone(),
            version: m.version.clone(),
            checksum: m.checksum.to_hex(),
            file_size: m.file_size,
            files: m.files.len(),
            bytes_sent: s.bytes_remote,
            chunks_new: s.chunks_new,
            chunks_reused: s.chunks_reused,
            seconds: s.seconds,
        }
    }
}

result_methods!(PushResult, to_dict; __hash__ {
    fn __repr__(&self) -> String {
        format!(
            "PushResult(model_name={:?}, version={:?}, files={}, file_size={}, bytes_sent={})",
            self.model_name, self.version, self.files, self.file_size, self.bytes_sent
        )
    }
});

/// One file of a version.
#[pyclass(module = "mvault", frozen, get_all)]
pub struct FileInfo {
    /// Relative, `/`-separated.
    pub path: String,
    pub size: u64,
    /// BLAKE3 of the whole file, hex (what `b3sum` prints).
    pub digest: String,
}

state!(FileInfo { path, size, digest });

result_methods!(FileInfo, to_dict; __hash__ {
    fn __repr__(&self) -> String {
        format!("FileInfo(path={:?}, size={})", self.path, self.size)
    }
});

/// A version's metadata (what `mvault info --json` shows).
#[pyclass(module = "mvault", frozen, get_all)]
pub struct Info {
    pub model_name: String,
    /// As written at push (`v1.0.0` keeps its `v`).
    pub version: String,
    /// `datetime.datetime`, UTC.
    pub created_at: Py<PyAny>,
    /// Bytes of all files.
    pub file_size: u64,
    /// The version's checksum, hex.
    pub checksum: String,
    pub description: String,
    /// dict
    pub performance_metrics: Py<PyAny>,
    /// dict
    pub training_config: Py<PyAny>,
    /// dict[str, str]
    pub tags: BTreeMap<String, String>,
    /// list[FileInfo]
    pub files: Py<PyAny>,
    /// Aliases currently pointing at this version, sorted (list[str]).
    pub aliases: Vec<String>,
    /// Other metadata keys given at push (dict).
    pub extra: Py<PyAny>,
    /// `user@host` of the pusher.
    pub pushed_by: String,
}

state!(Info {
    model_name,
    version,
    created_at,
    file_size,
    checksum,
    description,
    performance_metrics,
    training_config,
    tags,
    files,
    aliases,
    extra,
    pushed_by
});

impl Info {
    pub fn new(py: Python<'_>, m: &Manifest, aliases: Vec<String>) -> PyResult<Info> {
        let files = PyList::empty(py);
        for f in &m.files {
            files.append(Py::new(
                py,
                FileInfo {
                    path: f.path.clone(),
                    size: f.size,
                    digest: f.digest.to_hex(),
                },
            )?)?;
        }
        Ok(Info {
            model_name: m.model_name.clone(),
            version: m.version.clone(),
            created_at: datetime(py, &m.created_at)?.unbind(),
            file_size: m.file_size,
            checksum: m.checksum.to_hex(),
            description: m.description.clone(),
            performance_metrics: map_to_py(py, &m.performance_metrics)?.into_any().unbind(),
            training_config: map_to_py(py, &m.training_config)?.into_any().unbind(),
            tags: m.tags.clone(),
            files: files.into_any().unbind(),
            aliases,
            extra: map_to_py(py, &m.extra)?.into_any().unbind(),
            pushed_by: format!("{}@{}", m.created_by.user, m.created_by.host),
        })
    }
}

result_methods!(Info {
    /// Everything as one dict with the seed's metadata keys (`created_at` as RFC 3339 text).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("model_name", &self.model_name)?;
        d.set_item("version", &self.version)?;
        d.set_item(
            "created_at",
            self.created_at.bind(py).call_method0("isoformat")?,
        )?;
        d.set_item("file_size", self.file_size)?;
        d.set_item("checksum", &self.checksum)?;
        d.set_item("description", &self.description)?;
        d.set_item("performance_metrics", self.performance_metrics.bind(py))?;
        d.set_item("training_config", self.training_config.bind(py))?;
        d.set_item("tags", self.tags.clone())?;
        let files = PyList::empty(py);
        for f in self.files.bind(py).try_iter()? {
            let f = f?;
            let fd = PyDict::new(py);
            for k in ["path", "size", "digest"] {
                fd.set_item(k, f.getattr(k)?)?;
            }
            files.append(fd)?;
        }
        d.set_item("files", files)?;
        d.set_item("aliases", self.aliases.clone())?;
        for (k, v) in self.extra.bind(py).cast::<PyDict>()?.iter() {
            if !d.contains(&k)? {
                d.set_item(k, v)?;
            }
        }
        // A copy: changing it leaves the (frozen) result as it was.
        Ok(py
            .import("copy")?
            .call_method1("deepcopy", (d,))?
            .cast_into::<PyDict>()?)
    }

    fn __repr__(&self) -> String {
        format!(
            "Info(model_name={:?}, version={:?}, file_size={}, checksum={:?})",
            self.model_name, self.version, self.file_size, self.checksum
        )
    }
});

/// What `alias_set` or `rollback` did.
#[pyclass(module = "mvault", frozen, get_all)]
pub struct AliasChange {
    pub model_name: String,
    pub alias: String,
    /// The previous target, None if the alias was new.
    pub previous: Option<String>,
    /// The target now.
    pub version: String,
    /// The alias document's revision now.
    pub revision: u64,
    /// False when the alias already pointed there (nothing written).
    pub changed: bool,
    /// Damaged revisions a `force=True` wrote past.
    pub skipped: Vec<String>,
}

state!(AliasChange {
    model_name,
    alias,
    previous,
    version,
    revision,
    changed,
    skipped
});

impl AliasChange {
    pub fn new(name: &str, alias: &str, c: LibAliasChange) -> AliasChange {
        AliasChange {
            model_name: name.to_string(),
            alias: alias.to_string(),
            previous: c.from.map(|v| v.to_string()),
            version: c.to.to_string(),
            revision: c.revision,
            changed: c.changed,
            skipped: c.skipped,
        }
    }
}

result_methods!(AliasChange, to_dict; __hash__ {
    fn __repr__(&self) -> String {
        let previous = self
            .previous
            .as_ref()
            .map_or_else(|| "None".to_string(), |p| format!("{p:?}"));
        format!(
            "AliasChange({}@{}: {previous} -> {:?})",
            self.model_name, self.alias, self.version
        )
    }
});

/// One alias of a model, with its history.
#[pyclass(module = "mvault", frozen, get_all)]
pub struct AliasInfo {
    pub alias: String,
    /// The current target.
    pub version: String,
    pub revision: u64,
    /// Oldest first: list of dicts with version, set_at (datetime), set_by, action.
    pub history: Py<PyAny>,
}

state!(AliasInfo {
    alias,
    version,
    revision,
    history
});

impl AliasInfo {
    pub fn new(py: Python<'_>, a: &LibAliasInfo) -> PyResult<AliasInfo> {
        let history = PyList::empty(py);
        for h in &a.history {
            let d = PyDict::new(py);
            d.set_item("version", &h.version)?;
            d.set_item("set_at", datetime(py, &h.set_at)?)?;
            d.set_item("set_by", &h.set_by)?;
            d.set_item("action", to_py(py, &h.action)?)?;
            history.append(d)?;
        }
        Ok(AliasInfo {
            alias: a.alias.clone(),
            version: a.version.clone(),
            revision: a.revision,
            history: history.into_any().unbind(),
        })
    }
}

result_methods!(AliasInfo, to_dict {
    fn __repr__(&self) -> String {
        format!("AliasInfo({:?} -> {:?})", self.alias, self.version)
    }
});

/// What `verify` checked and found (`mvault verify --json`).
#[pyclass(module = "mvault", frozen, get_all)]
pub struct VerifyReport {
    /// True when nothing is missing or damaged.
    pub ok: bool,
    pub versions_checked: u64,
    pub chunks_referenced: u64,
    pub chunks_checked: u64,
    pub bytes_read: u64,
    /// list[dict]: chunk, key, damage, detail, used_by.
    pub missing: Py<PyAny>,
    /// list[dict], as `missing`.
    pub damaged: Py<PyAny>,
    /// list[dict]: version, detail.
    pub bad_manifests: Py<PyAny>,
    /// `name@version` of every broken version.
    pub broken_versions: Vec<String>,
}

state!(VerifyReport {
    ok,
    versions_checked,
    chunks_referenced,
    chunks_checked,
    bytes_read,
    missing,
    damaged,
    bad_manifests,
    broken_versions
});

impl VerifyReport {
    pub fn new(py: Python<'_>, r: &lifecycle::VerifyReport) -> PyResult<VerifyReport> {
        Ok(VerifyReport {
            ok: r.is_ok(),
            versions_checked: r.versions_checked,
            chunks_referenced: r.chunks_referenced,
            chunks_checked: r.chunks_checked,
            bytes_read: r.bytes_read,
            missing: to_py(py, &r.missing)?.unbind(),
            damaged: to_py(py, &r.damaged)?.unbind(),
            bad_manifests: to_py(py, &r.bad_manifests)?.unbind(),
            broken_versions: r.broken_versions.clone(),
        })
    }
}

result_methods!(VerifyReport, to_dict {
    fn __repr__(&self) -> String {
        format!(
            "VerifyReport(ok={}, versions_checked={}, chunks_checked={}, broken_versions={:?})",
            if self.ok { "True" } else { "False" },
            self.versions_checked,
            self.chunks_checked,
            self.broken_versions
        )
    }
});

/// Logical vs stored bytes of a vault (`mvault usage --json`).
#[pyclass(module = "mvault", frozen, get_all)]
pub struct UsageReport {
    /// list[dict]: model, versions, logical_bytes, unique_chunks, stored_bytes, missing_chunks.
    pub models: Py<PyAny>,
    pub versions: u64,
    /// Bytes of all files of all versions.
    pub logical_bytes: u64,
    /// Bytes of the chunk objects they need.
    pub stored_bytes: u64,
    pub chunk_objects: u64,
    pub metadata_objects: u64,
    pub metadata_bytes: u64,
    pub objects: u64,
    pub billed_bytes: u64,
    /// logical / stored; None when nothing is stored.
    pub dedupe_ratio: Option<f64>,
    /// list[dict]: provider, tier, usd_per_gb_month, usd_per_month.
    pub monthly_cost: Py<PyAny>,
}

state!(UsageReport {
    models,
    versions,
    logical_bytes,
    stored_bytes,
    chunk_objects,
    metadata_objects,
    metadata_bytes,
    objects,
    billed_bytes,
    dedupe_ratio,
    monthly_cost
});

impl UsageReport {
    pub fn new(py: Python<'_>, r: &lifecycle::UsageReport) -> PyResult<UsageReport> {
        Ok(UsageReport {
            models: to_py(py, &r.models)?.unbind(),
            versions: r.versions,
            logical_bytes: r.logical_bytes,
            stored_bytes: r.stored_bytes,
            chunk_objects: r.chunk_objects,
            metadata_objects: r.metadata_objects,
            metadata_bytes: r.metadata_bytes,
            objects: r.objects,
            billed_bytes: r.billed_bytes,
            dedupe_ratio: r.dedupe_ratio,
            monthly_cost: to_py(py, &r.monthly_cost)?.unbind(),
        })
    }
}

result_methods!(UsageReport, to_dict {
    fn __repr__(&self) -> String {
        format!(
            "UsageReport(versions={}, logical_bytes={}, stored_bytes={}, dedupe_ratio={})",
            self.versions,
            self.logical_bytes,
            self.stored_bytes,
            self.dedupe_ratio
                .map_or_else(|| "None".to_string(), |r| format!("{r:.4}"))
        )
    }
});

/// What `Vault.gc` did (`mvault gc --json`). Counts are of chunk objects unless they say
/// records (a pack with its index counts as one object); bytes are stored bytes.
#[pyclass(module = "mvault", frozen, get_all, from_py_object)]
#[derive(Clone)]
pub struct GcReport {
    pub scanned_chunks: u64,
    pub scanned_packs: u64,
    /// Distinct chunks referenced by at least one version.
    pub referenced: u64,
    /// Chunks deleted (with dry_run: that would be).
    pub deleted: u64,
    pub bytes_deleted: u64,
    /// Unreferenced, but younger than the grace period (or of unknown age): kept.
    pub kept_young: u64,
    /// Unreferenced, waiting in a record that is not ripe yet.
    pub kept_pending: u64,
    /// In a ripe record, but written again since: kept.
    pub kept_rewritten: u64,
    /// In a ripe record, but their stat answered too slowly to delete them safely.
    pub kept_slow: u64,
    /// Deletes that finished late (a racing push may have lost the chunk: verify tells).
    pub late_deletes: u64,
    /// Chunks written into this run's record, for a gc at least the grace period later.
    pub chunks_recorded: u64,
    pub records_written: u64,
    pub records_swept: u64,
    pub records_pending: u64,
    /// Manifests read for the mark.
    pub manifests: u64,
    pub dry_run: bool,
    pub grace_seconds: u64,
}

state!(GcReport {
    scanned_chunks,
    scanned_packs,
    referenced,
    deleted,
    bytes_deleted,
    kept_young,
    kept_pending,
    kept_rewritten,
    kept_slow,
    late_deletes,
    chunks_recorded,
    records_written,
    records_swept,
    records_pending,
    manifests,
    dry_run,
    grace_seconds
});

impl GcReport {
    pub fn new(r: &lifecycle::GcReport) -> GcReport {
        GcReport {
            scanned_chunks: r.scanned_chunks,
            scanned_packs: r.scanned_packs,
            referenced: r.referenced,
            deleted: r.deleted,
            bytes_deleted: r.bytes_deleted,
            kept_young: r.kept_young,
            kept_pending: r.kept_pending,
            kept_rewritten: r.kept_rewritten,
            kept_slow: r.kept_slow,
            late_deletes: r.late_deletes,
            chunks_recorded: r.chunks_recorded,
            records_written: r.records_written,
            records_swept: r.records_swept,
            records_pending: r.records_pending,
            manifests: r.manifests,
            dry_run: r.dry_run,
            grace_seconds: r.grace_seconds,
        }
    }
}

result_methods!(GcReport, to_dict; __hash__ {
    fn __repr__(&self) -> String {
        format!(
            "GcReport(deleted={}, bytes_deleted={}, chunks_recorded={}, kept_pending={}, \
             referenced={}, dry_run={})",
            self.deleted,
            self.bytes_deleted,
            self.chunks_recorded,
            self.kept_pending,
            self.referenced,
            if self.dry_run { "True" } else { "False" }
        )
    }
});

/// What `Vault.prune` did: the versions removed (with dry_run: that would be), ascending, and
/// the gc that followed.
#[pyclass(module = "mvault", frozen, get_all)]
pub struct PruneResult {
    pub removed: Vec<String>,
    pub gc: GcReport,
}

state!(PruneResult { removed, gc });

result_methods!(PruneResult, to_dict {
    fn __repr__(&self) -> String {
        format!(
            "PruneResult(removed={:?}, gc={})",
            self.removed,
            self.gc.__repr__()
        )
    }
});
