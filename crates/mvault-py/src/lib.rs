//! `mvault._mvault`: the Python package's native module, on the `mvault` library (not the
//! CLI). A [`Vault`] is opened exactly as the CLI opens one (config file search, provider
//! names, URLs, the default local vault); every call runs on a tokio runtime owned by the
//! module, with the GIL released. Errors become `mvault.Error` subclasses chosen by
//! [`mvault::category_of`], with the CLI's one-line message ([`mvault::one_line`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use pyo3::IntoPyObjectExt;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Value};

use mvault::chunk::ChunkParams;
use mvault::config::Config;
use mvault::error::Category;
use mvault::manifest::Manifest;
use mvault::transfer::pull::LinkMode;
use mvault::transfer::{self, Progress, PullRequest, PushRequest, RateLimiter, TransferOptions};
use mvault::vault::{self, Lookup};
use mvault::version::{ModelName, ModelRef, Selector, Version};

create_exception!(
    mvault,
    Error,
    PyException,
    "Base class of every mvault error."
);
create_exception!(
    mvault,
    NotFound,
    Error,
    "A model, version, alias or object does not exist."
);
create_exception!(
    mvault,
    Conflict,
    Error,
    "Someone else won: the version exists, an alias changed, a target file would be overwritten."
);
create_exception!(
    mvault,
    IntegrityError,
    Error,
    "A damaged or hostile object, manifest or file: a checksum or structure check failed."
);
create_exception!(
    mvault,
    ConfigError,
    Error,
    "Bad arguments, names, versions, remote URLs, push inputs or config files."
);
create_exception!(
    mvault,
    RemoteError,
    Error,
    "Anything else: the store is unreachable or refuses credentials, local I/O failed."
);

/// The module's runtime: every call blocks on it with the GIL released.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("mvault")
            .build()
            .expect("tokio runtime")
    })
}

/// The exception of a category, with `message`.
fn exception(category: Option<Category>, message: String) -> PyErr {
    match category {
        Some(Category::Usage) => ConfigError::new_err(message),
        Some(Category::NotFound) => NotFound::new_err(message),
        Some(Category::Conflict) => Conflict::new_err(message),
        Some(Category::Integrity) => IntegrityError::new_err(message),
        Some(Category::Failure) | None => RemoteError::new_err(message),
    }
}

/// A library error as its exception: class by category, the CLI's one-line message.
fn to_py_err<E: std::error::Error + 'static>(e: E) -> PyErr {
    let e: &(dyn std::error::Error + 'static) = &e;
    exception(mvault::category_of(e), mvault::one_line(e))
}

/// Runs `f` (which blocks on the runtime) with the GIL released.
fn blocking<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> PyResult<T> + Send,
{
    py.detach(f)
}

fn json_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_bound_py_any(py)?,
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_bound_py_any(py)?,
            (None, Some(u)) => u.into_bound_py_any(py)?,
            _ => n.as_f64().unwrap_or(f64::NAN).into_bound_py_any(py)?,
        },
        Value::String(s) => s.into_bound_py_any(py)?,
        Value::Array(a) => {
            let list = PyList::empty(py);
            for x in a {
                list.append(json_to_py(py, x)?)?;
            }
            list.into_any()
        }
        Value::Object(o) => map_to_py(py, o)?.into_any(),
    })
}

fn map_to_py<'py>(py: Python<'py>, o: &Map<String, Value>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in o {
        d.set_item(k, json_to_py(py, v)?)?;
    }
    Ok(d)
}

fn py_to_json(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::from(i));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Value::from(u));
        }
        return Err(PyTypeError::new_err(
            "integer out of range for JSON metadata",
        ));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return serde_json::Number::from_f64(f.value())
            .map(Value::Number)
            .ok_or_else(|| PyTypeError::new_err("NaN and infinity are not valid metadata"));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        return Ok(Value::Object(dict_to_map(d)?));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut out = Vec::new();
        for x in obj.try_iter()? {
            out.push(py_to_json(&x?)?);
        }
        return Ok(Value::Array(out));
    }
    Err(PyTypeError::new_err(format!(
        "metadata values must be None, bool, int, float, str, list or dict, not {}",
        obj.get_type().name()?
    )))
}

fn dict_to_map(d: &Bound<'_, PyDict>) -> PyResult<Map<String, Value>> {
    let mut m = Map::new();
    for (k, v) in d.iter() {
        let k = k
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err("metadata keys must be str"))?
            .to_cow()?
            .into_owned();
        m.insert(k, py_to_json(&v)?);
    }
    Ok(m)
}

fn opt_map(d: Option<&Bound<'_, PyDict>>) -> PyResult<Map<String, Value>> {
    d.map(dict_to_map)
        .transpose()
        .map(Option::unwrap_or_default)
}

/// `created_at` (RFC 3339) as an aware `datetime.datetime` in UTC.
fn datetime<'py>(py: Python<'py>, rfc3339: &str) -> PyResult<Bound<'py, PyAny>> {
    use chrono::{Datelike, Timelike};
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map_err(|e| IntegrityError::new_err(format!("created_at {rfc3339:?}: {e}")))?
        .with_timezone(&chrono::Utc);
    let dt = py.import("datetime")?;
    let utc = dt.getattr("timezone")?.getattr("utc")?;
    dt.getattr("datetime")?.call1((
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond().min(999_999_999) / 1000,
        utc,
    ))
}

fn path_obj<'py>(py: Python<'py>, p: &std::path::Path) -> PyResult<Bound<'py, PyAny>> {
    py.import("pathlib")?
        .getattr("Path")?
        .call1((p.as_os_str(),))
}

/// What a push wrote.
#[pyclass(module = "mvault", frozen, get_all)]
pub struct PushResult {
    model_name: String,
    version: String,
    /// The version's checksum, hex.
    checksum: String,
    /// Bytes of all files.
    file_size: u64,
    /// Number of files.
    files: usize,
    /// Bytes uploaded (compressed, new chunks only).
    bytes_sent: u64,
    chunks_new: u64,
    chunks_reused: u64,
    seconds: f64,
}

#[pymethods]
impl PushResult {
    fn __repr__(&self) -> String {
        format!(
            "PushResult(model_name={:?}, version={:?}, files={}, file_size={}, bytes_sent={})",
            self.model_name, self.version, self.files, self.file_size, self.bytes_sent
        )
    }
}

/// One file of a version.
#[pyclass(module = "mvault", frozen, get_all)]
pub struct FileInfo {
    /// Relative, `/`-separated.
    path: String,
    size: u64,
    /// BLAKE3 of the whole file, hex (what `b3sum` prints).
    digest: String,
}

#[pymethods]
impl FileInfo {
    fn __repr__(&self) -> String {
        format!("FileInfo(path={:?}, size={})", self.path, self.size)
    }
}

/// A version's metadata.
#[pyclass(module = "mvault", frozen, get_all)]
pub struct Info {
    model_name: String,
    version: String,
    /// `datetime.datetime`, UTC.
    created_at: Py<PyAny>,
    file_size: u64,
    checksum: String,
    description: String,
    /// dict
    performance_metrics: Py<PyAny>,
    /// dict
    training_config: Py<PyAny>,
    /// dict[str, str]
    tags: BTreeMap<String, String>,
    /// list[FileInfo]
    files: Py<PyAny>,
}

impl Info {
    fn new(py: Python<'_>, m: &Manifest) -> PyResult<Info> {
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
        })
    }
}

#[pymethods]
impl Info {
    fn __repr__(&self) -> String {
        format!(
            "Info(model_name={:?}, version={:?}, file_size={}, checksum={:?})",
            self.model_name, self.version, self.file_size, self.checksum
        )
    }
}

/// A vault: one remote plus the local cache.
///
/// `remote`: a URL (`s3://bucket/prefix`, `gs://`, `az://`, `oss://`, `file://`), a local
/// path, or a provider of the config file; `None`: the config's default provider, else the
/// local vault under `$XDG_DATA_HOME/mvault/vault`. `config`: the config file (default: the
/// CLI's search order). `cache_dir`: default `$XDG_CACHE_HOME/mvault`.
#[pyclass(module = "mvault", frozen)]
pub struct Vault {
    inner: vault::Vault,
    /// `transfer.jobs` of the config.
    jobs: Option<usize>,
    rate: Option<Arc<RateLimiter>>,
    name: String,
}

impl Vault {
    fn options(&self, jobs: Option<usize>) -> PyResult<TransferOptions> {
        let jobs = jobs.or(self.jobs).unwrap_or_else(transfer::default_jobs);
        if jobs == 0 || jobs > 1024 {
            return Err(ConfigError::new_err("jobs must be between 1 and 1024"));
        }
        Ok(TransferOptions {
            jobs,
            rate: self.rate.clone(),
            progress: Progress::hidden(),
        })
    }
}

fn parse<T: std::str::FromStr>(s: &str) -> PyResult<T>
where
    T::Err: std::error::Error + 'static,
{
    s.parse::<T>().map_err(to_py_err)
}

#[pymethods]
impl Vault {
    #[new]
    #[pyo3(signature = (remote=None, *, config=None, cache_dir=None))]
    fn new(
        py: Python<'_>,
        remote: Option<String>,
        config: Option<PathBuf>,
        cache_dir: Option<PathBuf>,
    ) -> PyResult<Vault> {
        blocking(py, move || {
            let _rt = runtime().enter();
            let config = Config::load(config.as_deref()).map_err(to_py_err)?;
            let cache_dir = cache_dir.unwrap_or_else(mvault::util::cache_dir);
            let inner = vault::open(remote.as_deref(), &config, &cache_dir).map_err(to_py_err)?;
            let name = inner.remote().name().to_string();
            Ok(Vault {
                inner,
                jobs: config.transfer.jobs,
                rate: config
                    .transfer
                    .rate_limit_bytes_per_sec
                    .map(|r| Arc::new(RateLimiter::new(r))),
                name,
            })
        })
    }

    fn __repr__(&self) -> String {
        format!("Vault({:?})", self.name)
    }

    /// The remote's display name (no secrets).
    #[getter]
    fn remote(&self) -> String {
        self.name.clone()
    }

    /// Pushes `paths` (files and directories; a directory contributes its contents) as
    /// `name@version`. Raises Conflict if the version exists.
    #[pyo3(signature = (paths, name, version, *, description="", metrics=None, params=None, tags=None, jobs=None))]
    #[allow(clippy::too_many_arguments)]
    fn push(
        &self,
        py: Python<'_>,
        paths: Vec<PathBuf>,
        name: &str,
        version: &str,
        description: &str,
        metrics: Option<&Bound<'_, PyDict>>,
        params: Option<&Bound<'_, PyDict>>,
        tags: Option<BTreeMap<String, String>>,
        jobs: Option<usize>,
    ) -> PyResult<PushResult> {
        let req = PushRequest {
            name: parse::<ModelName>(name)?,
            version: parse::<Version>(version)?,
            paths,
            description: description.to_string(),
            metrics: opt_map(metrics)?,
            params: opt_map(params)?,
            tags: tags.unwrap_or_default(),
            extra: Map::new(),
            chunking: ChunkParams::DEFAULT,
            dry_run: false,
        };
        let opts = self.options(jobs)?;
        let v = self.inner.clone();
        let (m, s) = blocking(py, move || {
            runtime().block_on(v.push(&req, &opts)).map_err(to_py_err)
        })?;
        Ok(PushResult {
            model_name: m.model_name,
            version: m.version,
            checksum: m.checksum.to_hex(),
            file_size: m.file_size,
            files: m.files.len(),
            bytes_sent: s.bytes_remote,
            chunks_new: s.chunks_new,
            chunks_reused: s.chunks_reused,
            seconds: s.seconds,
        })
    }

    /// Pulls `ref` (NAME, NAME@VERSION, NAME@latest, NAME@^1.2, NAME@ALIAS) into `to`
    /// (default: its snapshot directory in the cache) and returns that directory.
    /// `verify` re-hashes every file; `offline` uses the local cache only.
    #[pyo3(signature = (r#ref, to=None, *, verify=false, offline=false, jobs=None))]
    fn pull<'py>(
        &self,
        py: Python<'py>,
        r#ref: &str,
        to: Option<PathBuf>,
        verify: bool,
        offline: bool,
        jobs: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let r: ModelRef = parse(r#ref)?;
        let opts = self.options(jobs)?;
        let v = self.inner.clone();
        let target = blocking(py, move || {
            runtime().block_on(async move {
                let lookup = if offline {
                    Lookup::Offline
                } else {
                    Lookup::CacheFirst
                };
                let manifest = v.resolve(&r, lookup).await.map_err(to_py_err)?;
                let target = match to {
                    Some(t) => t,
                    None => v.snapshot_dir(&manifest).map_err(to_py_err)?,
                };
                let req = PullRequest {
                    manifest,
                    target,
                    verify,
                    link: LinkMode::Auto,
                    force: false,
                };
                let out = v.pull(&req, &opts, offline).await.map_err(to_py_err)?;
                Ok(out.target)
            })
        })?;
        path_obj(py, &target)
    }

    /// Model names, sorted.
    fn list(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let v = self.inner.clone();
        blocking(py, move || {
            let names = runtime().block_on(v.list()).map_err(to_py_err)?;
            Ok(names.iter().map(|n| n.to_string()).collect())
        })
    }

    /// Versions of a model, ascending, as the store names them (`1.0.0` for a version pushed
    /// as `v1.0.0`; `info` has the version as written); raises NotFound if it has none.
    fn versions(&self, py: Python<'_>, name: &str) -> PyResult<Vec<String>> {
        let name: ModelName = parse(name)?;
        let v = self.inner.clone();
        blocking(py, move || {
            let vs = runtime().block_on(v.versions(&name)).map_err(to_py_err)?;
            Ok(vs.iter().map(|v| v.to_string()).collect())
        })
    }

    /// The metadata of `ref` (resolved on the remote, so a removed version is noticed).
    fn info(&self, py: Python<'_>, r#ref: &str) -> PyResult<Info> {
        let r: ModelRef = parse(r#ref)?;
        let v = self.inner.clone();
        let m = blocking(py, move || {
            runtime()
                .block_on(v.resolve(&r, Lookup::Remote))
                .map_err(to_py_err)
        })?;
        Info::new(py, &m)
    }

    /// Deletes `NAME@VERSION` (an exact version). Its chunks stay until `mvault gc`.
    fn rm(&self, py: Python<'_>, r#ref: &str) -> PyResult<()> {
        let r: ModelRef = parse(r#ref)?;
        let version = match r.selector {
            Selector::Exact(v) if r#ref.contains('@') => v,
            _ => {
                return Err(ConfigError::new_err(format!(
                    "{:?}: expected NAME@VERSION with an exact version",
                    r#ref
                )));
            }
        };
        let v = self.inner.clone();
        blocking(py, move || {
            runtime()
                .block_on(v.rm(&r.name, &version))
                .map_err(to_py_err)
        })
    }
}

#[pymodule]
fn _mvault(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("NotFound", py.get_type::<NotFound>())?;
    m.add("Conflict", py.get_type::<Conflict>())?;
    m.add("IntegrityError", py.get_type::<IntegrityError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("RemoteError", py.get_type::<RemoteError>())?;
    m.add_class::<Vault>()?;
    m.add_class::<PushResult>()?;
    m.add_class::<Info>()?;
    m.add_class::<FileInfo>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
