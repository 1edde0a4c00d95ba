//! `mvault.Vault` and the module functions `ensure` and `models_in_dir`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use serde_json::Map;

use mvault::chunk::ChunkParams;
use mvault::config::Config;
use mvault::lifecycle::{self, Sample};
use mvault::transfer::pull::LinkMode;
use mvault::transfer::{self, Progress, PullRequest, PushRequest, RateLimiter, TransferOptions};
use mvault::vault::{self, Lookup};
use mvault::version::{Alias, ModelName, ModelRef, Selector, Version};

use crate::convert::{
    ConfigError, IntegrityError, mapping_to_map, opt_map, parse, path_obj, to_py_err,
};
use crate::run::{Sink, run};
use crate::types::{
    AliasChange, AliasInfo, GcReport, Info, PruneResult, PushResult, UsageReport, VerifyReport,
};

/// A vault: one remote plus the local cache.
///
/// `remote`: a URL (`s3://bucket/prefix`, `gs://`, `az://`, `oss://`, `file://`), a local
/// path, or a provider of the config file; `None`: `$MVAULT_REMOTE` (as the CLI's `-r`), else
/// the config's default provider, else the local vault under `$XDG_DATA_HOME/mvault/vault`. `config`: the config file (default: the
/// CLI's search order, `./cloud_storage_config.yaml` included). `cache_dir`: default
/// `$MVAULT_CACHE_DIR`, else `$XDG_CACHE_HOME/mvault`. `encryption_key_file`: the vault's
/// encryption key (`mvault keygen --encryption`); default `$MVAULT_ENCRYPTION_KEY_FILE`, else
/// the config's `encryption.key_file`.
#[pyclass(module = "mvault", frozen)]
pub struct Vault {
    inner: vault::Vault,
    settings: Settings,
    name: String,
}

/// Settings of the config file and the environment, as the CLI applies them.
#[derive(Clone)]
struct Settings {
    /// `transfer.jobs`.
    jobs: Option<usize>,
    rate: Option<Arc<RateLimiter>>,
    /// Keys a pull requires a signature by when the call names none: `$MVAULT_TRUSTED_KEYS`,
    /// else `signing.trusted_keys` ([`vault::default_trusted_key_paths`]).
    trusted_keys: Vec<PathBuf>,
    /// `signing.key`: what a push signs with when the call names no key.
    sign_key: Option<PathBuf>,
}

impl Settings {
    fn of(config: &Config) -> Settings {
        Settings {
            jobs: config.jobs,
            rate: config
                .rate_limit_bytes_per_sec
                .map(|r| Arc::new(RateLimiter::new(r))),
            trusted_keys: vault::default_trusted_key_paths(config),
            sign_key: config.sign_key.clone(),
        }
    }

    /// The trusted keys of a call: `given` (an empty list: none), else the default.
    fn trusted(&self, given: Option<Vec<PathBuf>>) -> PyResult<mvault::trust::TrustedKeys> {
        let paths = given.unwrap_or_else(|| self.trusted_keys.clone());
        mvault::trust::TrustedKeys::load(&paths).map_err(to_py_err)
    }

    fn options(&self, jobs: Option<usize>, progress: Progress) -> PyResult<TransferOptions> {
        let jobs = jobs.or(self.jobs).unwrap_or_else(transfer::default_jobs);
        if jobs == 0 || jobs > 1024 {
            return Err(ConfigError::new_err("jobs must be between 1 and 1024"));
        }
        Ok(TransferOptions {
            jobs,
            rate: self.rate.clone(),
            progress,
        })
    }
}

fn default_cache_dir() -> PathBuf {
    std::env::var_os("MVAULT_CACHE_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(mvault::util::cache_dir)
}

/// Opens a vault as the CLI does (the encryption key: `key_file`, else
/// `$MVAULT_ENCRYPTION_KEY_FILE`, else `encryption.key_file`); blocking, call with the GIL
/// released.
fn open(
    remote: Option<&str>,
    config: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    key_file: Option<PathBuf>,
) -> PyResult<(vault::Vault, Settings)> {
    let _rt = crate::run::runtime().enter();
    let config = Config::load(config.as_deref()).map_err(to_py_err)?;
    let cache_dir = cache_dir.unwrap_or_else(default_cache_dir);
    let key_file = key_file.or_else(|| vault::default_encryption_key_file(&config));
    let inner = vault::open(remote, &config, &cache_dir, key_file.as_deref()).map_err(to_py_err)?;
    Ok((inner, Settings::of(&config)))
}

/// `paths` of `push`: one path (str or os.PathLike) or a sequence of them.
fn paths_arg(paths: &Bound<'_, PyAny>) -> PyResult<Vec<PathBuf>> {
    if paths.is_instance_of::<PyString>() || paths.hasattr("__fspath__")? {
        return Ok(vec![paths.extract()?]);
    }
    paths
        .extract::<Vec<PathBuf>>()
        .map_err(|_| PyTypeError::new_err("paths must be a path or a list of paths"))
}

fn link_arg(link: &str) -> PyResult<LinkMode> {
    match link {
        "auto" => Ok(LinkMode::Auto),
        "hard" => Ok(LinkMode::Hard),
        "copy" => Ok(LinkMode::Copy),
        _ => Err(ConfigError::new_err(format!(
            "link {link:?}: expected \"auto\", \"hard\" or \"copy\""
        ))),
    }
}

/// `NAME@VERSION` with an exact version.
fn exact(r: &str) -> PyResult<(ModelName, Version)> {
    let parsed: ModelRef = parse(r)?;
    match parsed.selector {
        Selector::Exact(v) if r.contains('@') => Ok((parsed.name, v)),
        _ => Err(ConfigError::new_err(format!(
            "{r:?}: expected NAME@VERSION with an exact version"
        ))),
    }
}

fn hidden(sink: &Option<Sink>) -> Progress {
    sink.as_ref().map_or_else(Progress::hidden, Sink::progress)
}

#[pymethods]
impl Vault {
    #[new]
    #[pyo3(signature = (remote=None, *, config=None, cache_dir=None, encryption_key_file=None))]
    fn new(
        py: Python<'_>,
        remote: Option<PathBuf>,
        config: Option<PathBuf>,
        cache_dir: Option<PathBuf>,
        encryption_key_file: Option<PathBuf>,
    ) -> PyResult<Vault> {
        // A str (URL, path, provider) or an os.PathLike.
        let remote = remote.map(|r| r.to_string_lossy().into_owned());
        let remote = remote.or_else(|| {
            std::env::var("MVAULT_REMOTE")
                .ok()
                .filter(|r| !r.trim().is_empty())
        });
        let (inner, settings) =
            py.detach(|| open(remote.as_deref(), config, cache_dir, encryption_key_file))?;
        let name = inner.remote().name().to_string();
        Ok(Vault {
            inner,
            settings,
            name,
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

    /// Pushes `paths` (a path or a list of files and directories; a directory contributes its
    /// contents) as `name@version` and returns a PushResult. `metadata` is a dict with the
    /// seed's keys, or the path of a JSON file of one (as `mvault push --metadata-file`):
    /// description, performance_metrics, training_config and tags merge under the explicit
    /// arguments (which win); other keys are kept as extra metadata. `jobs`: requests in
    /// flight. `progress`: a callable `f(done_bytes, total_bytes)`, or True for a tqdm bar.
    /// Raises Conflict if the version exists (nothing is changed); Ctrl-C cancels the push
    /// before its manifest is written, so the version does not appear. `sign_key`: path of a
    /// private key (PEM, `mvault keygen`) to sign the version with; default the config's
    /// `signing.key`.
    #[pyo3(signature = (paths, name, version, *, description="", metrics=None, params=None, tags=None, metadata=None, jobs=None, progress=None, sign_key=None))]
    #[allow(clippy::too_many_arguments)]
    fn push(
        &self,
        py: Python<'_>,
        paths: &Bound<'_, PyAny>,
        name: &str,
        version: &str,
        description: &str,
        metrics: Option<&Bound<'_, PyAny>>,
        params: Option<&Bound<'_, PyAny>>,
        tags: Option<BTreeMap<String, String>>,
        metadata: Option<&Bound<'_, PyAny>>,
        jobs: Option<usize>,
        progress: Option<&Bound<'_, PyAny>>,
        sign_key: Option<PathBuf>,
    ) -> PyResult<PushResult> {
        let sign_key = sign_key
            .or_else(|| self.settings.sign_key.clone())
            .map(|p| mvault::trust::SignKey::load(&p).map(Arc::new))
            .transpose()
            .map_err(to_py_err)?;
        let mut req = PushRequest {
            name: parse::<ModelName>(name)?,
            version: parse::<Version>(version)?,
            paths: paths_arg(paths)?,
            description: description.to_string(),
            metrics: opt_map(metrics)?,
            params: opt_map(params)?,
            tags: tags.unwrap_or_default(),
            extra: Map::new(),
            chunking: ChunkParams::DEFAULT,
            dry_run: false,
            pack: true,
            sign_key,
        };
        match metadata.filter(|m| !m.is_none()) {
            None => {}
            Some(m) => {
                let obj = if m.cast::<pyo3::types::PyMapping>().is_ok() {
                    mapping_to_map(m)?
                } else if let Ok(path) = m.extract::<PathBuf>() {
                    vault::read_metadata_file(&path).map_err(to_py_err)?
                } else {
                    return Err(PyTypeError::new_err(
                        "metadata must be a dict (or another mapping) or the path of a JSON file",
                    ));
                };
                vault::merge_metadata(&mut req, obj).map_err(to_py_err)?;
            }
        }
        let sink = Sink::from_arg(py, progress, &format!("push {name}@{version}"))?;
        let opts = self.settings.options(jobs, hidden(&sink))?;
        let v = &self.inner;
        let (m, s) = run(py, sink.as_ref(), move || async move {
            v.push(&req, &opts).await.map_err(to_py_err)
        })?;
        Ok(PushResult::new(&m, &s))
    }

    /// Pulls `ref` (NAME, NAME@VERSION, NAME@latest, NAME@^1.2, NAME@ALIAS) into the directory
    /// `to` (default: its snapshot directory in the cache) and returns that directory as a
    /// pathlib.Path. Again with everything in place: no transfer. `verify` re-hashes every
    /// file; `offline` uses the local cache only; `force` replaces files in `to` that mvault
    /// did not write (Conflict otherwise); `link`: "auto" (hard link, else copy), "hard",
    /// "copy". `progress` as in push. Ctrl-C cancels it and leaves no partial file in `to`.
    /// `trusted_keys`: paths of public keys (PEM, `mvault keygen`'s FILE.pub); the version
    /// must then be signed by one of them (IntegrityError before anything is placed). Default:
    /// `$MVAULT_TRUSTED_KEYS` (paths separated by ':'), else the config's
    /// `signing.trusted_keys`, as the CLI; `[]` requires no signature.
    #[pyo3(signature = (r#ref, to=None, *, verify=false, offline=false, force=false, link="auto", jobs=None, progress=None, trusted_keys=None))]
    #[allow(clippy::too_many_arguments)]
    fn pull<'py>(
        &self,
        py: Python<'py>,
        r#ref: &str,
        to: Option<PathBuf>,
        verify: bool,
        offline: bool,
        force: bool,
        link: &str,
        jobs: Option<usize>,
        progress: Option<&Bound<'py, PyAny>>,
        trusted_keys: Option<Vec<PathBuf>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let r: ModelRef = parse(r#ref)?;
        let link = link_arg(link)?;
        let keys = self.settings.trusted(trusted_keys)?;
        let sink = Sink::from_arg(py, progress, &format!("pull {ref}"))?;
        let opts = self.settings.options(jobs, hidden(&sink))?;
        let trusting = self.inner.clone().with_trusted_keys(keys);
        let v = &trusting;
        let target = run(py, sink.as_ref(), move || async move {
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
                link,
                force,
            };
            let out = v.pull(&req, &opts, offline).await.map_err(to_py_err)?;
            Ok(out.target)
        })?;
        path_obj(py, &target)
    }

    /// Model names, sorted.
    fn list(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let v = &self.inner;
        run(py, None, move || async move {
            let names = v.list().await.map_err(to_py_err)?;
            Ok(names.iter().map(|n| n.to_string()).collect())
        })
    }

    /// Versions of a model, ascending, as the store names them (`1.0.0` for a version pushed
    /// as `v1.0.0`; `info` has the version as written); raises NotFound if it has none.
    fn versions(&self, py: Python<'_>, name: &str) -> PyResult<Vec<String>> {
        let name: ModelName = parse(name)?;
        let v = &self.inner;
        run(py, None, move || async move {
            let vs = v.versions(&name).await.map_err(to_py_err)?;
            Ok(vs.iter().map(|v| v.to_string()).collect())
        })
    }

    /// The next patch version after the model's latest release (`1.2.4` after `1.2.3`), or
    /// `1.0.0` for a model without versions: what the upload script pushes when no version is
    /// given.
    fn next_version(&self, py: Python<'_>, name: &str) -> PyResult<String> {
        let name: ModelName = parse(name)?;
        let v = &self.inner;
        run(py, None, move || async move {
            let vs = match v.versions(&name).await {
                Ok(vs) => vs,
                Err(e) if e.is_not_found() => Vec::new(),
                Err(e) => return Err(to_py_err(e)),
            };
            Ok(match Selector::Latest.pick(&vs) {
                None => "1.0.0".to_string(),
                Some(latest) => {
                    let s = latest.semver();
                    let bump = if s.pre.is_empty() { 1 } else { 0 };
                    format!("{}.{}.{}", s.major, s.minor, s.patch + bump)
                }
            })
        })
    }

    /// The metadata of `ref` (resolved on the remote, so a removed version is noticed), with
    /// the aliases pointing at it.
    fn info(&self, py: Python<'_>, r#ref: &str) -> PyResult<Info> {
        let r: ModelRef = parse(r#ref)?;
        let v = &self.inner;
        let (m, aliases) = run(py, None, move || async move {
            let m = v.resolve(&r, Lookup::Remote).await.map_err(to_py_err)?;
            let this: Version = parse(&m.version)?;
            let (all, _damaged) = vault::alias_list_lenient(v, &r.name)
                .await
                .map_err(to_py_err)?;
            let aliases = all
                .into_iter()
                .filter(|a| a.version.parse::<Version>().is_ok_and(|t| t == this))
                .map(|a| a.alias)
                .collect::<Vec<_>>();
            Ok((m, aliases))
        })?;
        Info::new(py, &m, aliases)
    }

    /// Deletes `NAME@VERSION` (an exact version). Its chunks stay until `mvault gc`. Raises
    /// Conflict if an alias points at it, unless `force`.
    #[pyo3(signature = (r#ref, *, force=false))]
    fn rm(&self, py: Python<'_>, r#ref: &str, force: bool) -> PyResult<()> {
        let (name, version) = exact(r#ref)?;
        let v = &self.inner;
        run(py, None, move || async move {
            v.rm(&name, &version, force).await.map_err(to_py_err)
        })
    }

    /// Points `alias` (e.g. "production") of the model at `ref` (NAME@VERSION, which must
    /// exist); history is kept. Returns an AliasChange. A concurrent change of the same alias
    /// makes one writer fail with Conflict. `force` writes past damaged alias revisions.
    #[pyo3(signature = (r#ref, alias, *, force=false))]
    fn alias_set(
        &self,
        py: Python<'_>,
        r#ref: &str,
        alias: &str,
        force: bool,
    ) -> PyResult<AliasChange> {
        let (name, version) = exact(r#ref)?;
        let a: Alias = parse(alias)?;
        let v = &self.inner;
        let n = name.to_string();
        let change = run(py, None, move || async move {
            vault::alias_set(v, &name, &version, &a, force)
                .await
                .map_err(to_py_err)
        })?;
        Ok(AliasChange::new(&n, alias, change))
    }

    /// The aliases of a model with their history (list of AliasInfo, sorted by alias);
    /// NotFound when the model has neither aliases nor versions.
    fn aliases(&self, py: Python<'_>, name: &str) -> PyResult<Vec<AliasInfo>> {
        let name: ModelName = parse(name)?;
        let v = &self.inner;
        let list = run(py, None, move || async move {
            vault::alias_list(v, &name).await.map_err(to_py_err)
        })?;
        list.iter().map(|a| AliasInfo::new(py, a)).collect()
    }

    /// Moves `alias` of model `name` back to its previous target and returns the
    /// AliasChange; NotFound when it has none (or that version was removed).
    #[pyo3(signature = (name, alias, *, force=false))]
    fn rollback(
        &self,
        py: Python<'_>,
        name: &str,
        alias: &str,
        force: bool,
    ) -> PyResult<AliasChange> {
        let n: ModelName = parse(name)?;
        let a: Alias = parse(alias)?;
        let v = &self.inner;
        let change = run(py, None, move || async move {
            vault::rollback(v, &n, &a, force).await.map_err(to_py_err)
        })?;
        Ok(AliasChange::new(name, alias, change))
    }

    /// Re-reads and checks remote chunks of every version (`ref=None`), of a model (`NAME`)
    /// or of one version (`NAME@VERSION`, `NAME@latest`, `NAME@ALIAS`); `sample` (0 < p <= 1)
    /// checks a random part of the chunks, `seed` makes the choice repeatable. Returns a
    /// VerifyReport; with `check=True` (the default) damage raises IntegrityError instead,
    /// with the report as its `report` attribute (as `mvault verify` exits 5). With trusted
    /// keys (`trusted_keys`, default as in `pull`) every selected version's signature is
    /// checked first: an unsigned or badly signed one raises IntegrityError.
    #[pyo3(signature = (r#ref=None, *, sample=None, seed=None, jobs=None, check=true, trusted_keys=None))]
    #[allow(clippy::too_many_arguments)]
    fn verify(
        &self,
        py: Python<'_>,
        r#ref: Option<String>,
        sample: Option<f64>,
        seed: Option<u64>,
        jobs: Option<usize>,
        check: bool,
        trusted_keys: Option<Vec<PathBuf>>,
    ) -> PyResult<VerifyReport> {
        let keys = self.settings.trusted(trusted_keys)?;
        let v = with_jobs(&self.inner, jobs)?.with_trusted_keys(keys);
        let sample = sample.map(|fraction| Sample {
            fraction,
            seed: seed.unwrap_or_else(random_seed),
        });
        let report = run(py, None, move || async move {
            let (name, version) = v
                .verify_selection(r#ref.as_deref())
                .await
                .map_err(to_py_err)?;
            v.check_signatures(name.as_ref(), version.as_ref())
                .await
                .map_err(to_py_err)?;
            lifecycle::verify(&v, name.as_ref(), version.as_ref(), sample)
                .await
                .map_err(to_py_err)
        })?;
        let out = VerifyReport::new(py, &report)?;
        if check && !report.is_ok() {
            let mut broken = report.broken_versions.join(", ");
            if broken.is_empty() {
                broken = "no complete version".into();
            }
            let err = IntegrityError::new_err(format!(
                "integrity check failed: {} missing and {} damaged chunks, {} bad manifests; \
                 broken: {broken}",
                report.missing.len(),
                report.damaged.len(),
                report.bad_manifests.len()
            ));
            err.value(py).setattr("report", Py::new(py, out)?)?;
            return Err(err);
        }
        Ok(out)
    }

    /// Logical vs stored bytes of the whole vault, dedupe ratio and monthly cost estimates
    /// (a UsageReport).
    fn usage(&self, py: Python<'_>) -> PyResult<UsageReport> {
        let v = &self.inner;
        let report = run(py, None, move || async move {
            lifecycle::usage(v, lifecycle::PRICES)
                .await
                .map_err(to_py_err)
        })?;
        UsageReport::new(py, &report)
    }

    /// Reclaims chunks no version references, in two runs at least `grace` apart (as
    /// `mvault gc`): this run records the unreferenced chunks older than `grace` and deletes
    /// those recorded by a run at least `grace` ago that are still unreferenced. `grace`: "24h",
    /// "30m", seconds, or a datetime.timedelta; below 1h only with `force` (unsafe while pushes
    /// run). `dry_run` writes and deletes nothing. Returns a GcReport.
    #[pyo3(signature = (*, grace=None, dry_run=false, force=false, jobs=None))]
    fn gc(
        &self,
        py: Python<'_>,
        grace: Option<&Bound<'_, PyAny>>,
        dry_run: bool,
        force: bool,
        jobs: Option<usize>,
    ) -> PyResult<GcReport> {
        let opts = gc_options(grace, dry_run, force)?;
        let v = with_jobs(&self.inner, jobs)?;
        let report = run(py, None, move || async move {
            lifecycle::gc(&v, &opts).await.map_err(to_py_err)
        })?;
        Ok(GcReport::new(&report))
    }

    /// Removes the versions of `name` older than its newest `keep` releases, never one an
    /// alias points at (pre-releases newer than the oldest release kept stay), then runs
    /// `gc` with `grace` and `force` (as `mvault prune NAME --keep N`). Returns a PruneResult.
    #[pyo3(signature = (name, keep, *, dry_run=false, grace=None, force=false, jobs=None))]
    #[allow(clippy::too_many_arguments)]
    fn prune(
        &self,
        py: Python<'_>,
        name: &str,
        keep: usize,
        dry_run: bool,
        grace: Option<&Bound<'_, PyAny>>,
        force: bool,
        jobs: Option<usize>,
    ) -> PyResult<PruneResult> {
        let name = parse::<ModelName>(name)?;
        let opts = gc_options(grace, dry_run, force)?;
        opts.validate().map_err(to_py_err)?;
        let v = with_jobs(&self.inner, jobs)?;
        let (removed, report) = run(py, None, move || async move {
            let removed = lifecycle::prune(&v, &name, keep, dry_run)
                .await
                .map_err(to_py_err)?;
            let report = lifecycle::gc(&v, &opts).await.map_err(to_py_err)?;
            Ok((removed, report))
        })?;
        Ok(PruneResult {
            removed: removed.iter().map(|v| v.to_string()).collect(),
            gc: GcReport::new(&report),
        })
    }
}

/// The vault with `jobs` requests at once, if given (at least 1).
fn with_jobs(v: &vault::Vault, jobs: Option<usize>) -> PyResult<vault::Vault> {
    match jobs {
        Some(0) => Err(ConfigError::new_err("jobs must be at least 1")),
        Some(j) => Ok(v.clone().with_jobs(j)),
        None => Ok(v.clone()),
    }
}

/// gc options from Python arguments: `grace` as "24h"-style text, seconds (int or float) or
/// a `datetime.timedelta` (default 24 hours, as the CLI's `--grace`).
fn gc_options(
    grace: Option<&Bound<'_, PyAny>>,
    dry_run: bool,
    force: bool,
) -> PyResult<lifecycle::GcOptions> {
    let bad = || {
        ConfigError::new_err(
            "grace must be a duration such as \"24h\" or \"30m\", seconds, or a datetime.timedelta",
        )
    };
    let secs: f64 = match grace.filter(|g| !g.is_none()) {
        None => 24.0 * 3600.0,
        Some(g) if g.is_instance_of::<PyString>() => {
            mvault::util::parse_duration_secs(&g.extract::<String>()?).ok_or_else(bad)? as f64
        }
        Some(g) if g.hasattr("total_seconds")? => g.call_method0("total_seconds")?.extract()?,
        Some(g) if g.is_instance_of::<pyo3::types::PyBool>() => return Err(bad()),
        Some(g) => g.extract::<f64>().map_err(|_| bad())?,
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(bad());
    }
    Ok(lifecycle::GcOptions {
        grace: std::time::Duration::from_secs_f64(secs),
        dry_run,
        force,
    })
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// Makes every model of `models` present under `dir/<name>/`, as `mvault run` does at a
/// container's start-up, and returns {name: pathlib.Path}. `models`: a list of NAME@VERSION
/// (or one comma-separated str); default `$MVAULT_MODELS`. `dir`: default `$MVAULT_MODELS_DIR`,
/// then `$MODEL_PATH`, then `./models`. `remote`: default `$MVAULT_REMOTE`, then
/// `s3://$MODELS_S3_BUCKET`, then the config's default provider. A pinned version already in
/// place costs no request; `offline` never touches the network. `trusted_keys` and
/// `encryption_key_file` as for `Vault.pull` and `Vault()`.
#[pyfunction]
#[pyo3(signature = (models=None, dir=None, *, remote=None, config=None, cache_dir=None, offline=false, force=false, jobs=None, trusted_keys=None, encryption_key_file=None))]
#[allow(clippy::too_many_arguments)]
pub fn ensure<'py>(
    py: Python<'py>,
    models: Option<&Bound<'py, PyAny>>,
    dir: Option<PathBuf>,
    remote: Option<String>,
    config: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    offline: bool,
    force: bool,
    jobs: Option<usize>,
    trusted_keys: Option<Vec<PathBuf>>,
    encryption_key_file: Option<PathBuf>,
) -> PyResult<Bound<'py, PyDict>> {
    let models: Vec<String> = match models.filter(|m| !m.is_none()) {
        None => vault::models_from_env(),
        Some(m) if m.is_instance_of::<PyString>() => m
            .extract::<String>()?
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        Some(m) => m.extract()?,
    };
    if models.is_empty() {
        return Err(ConfigError::new_err(
            "mvault.ensure: no models given (argument or MVAULT_MODELS)",
        ));
    }
    let refs: Vec<ModelRef> = models.iter().map(|m| parse(m)).collect::<PyResult<_>>()?;
    let dir = vault::models_dir(dir);
    let remote = vault::startup_remote(remote.as_deref());
    let (v, settings) =
        py.detach(|| open(remote.as_deref(), config, cache_dir, encryption_key_file))?;
    let opts = settings.options(jobs, Progress::hidden())?;
    let v = v.with_trusted_keys(settings.trusted(trusted_keys)?);
    let d = &dir;
    let pulled = run(py, None, move || async move {
        v.pull_into(&refs, d, &opts, offline, force)
            .await
            .map_err(to_py_err)
    })?;
    let out = PyDict::new(py);
    for (m, o) in pulled {
        out.set_item(m.model_name, path_obj(py, &o.target)?)?;
    }
    Ok(out)
}

/// The models a directory stands for (`mvault push --models-dir`): [(name, pathlib.Path)],
/// sorted by name; each entry not starting with `.` is one model, a sub-directory named after
/// itself, a file after its name up to the first `.`. An empty or missing directory is a
/// ConfigError.
#[pyfunction]
pub fn models_in_dir<'py>(py: Python<'py>, dir: PathBuf) -> PyResult<Bound<'py, PyList>> {
    let models = vault::models_in_dir(&dir).map_err(to_py_err)?;
    let out = PyList::empty(py);
    for (name, path) in models {
        out.append((name.to_string(), path_obj(py, &path)?))?;
    }
    Ok(out)
}
