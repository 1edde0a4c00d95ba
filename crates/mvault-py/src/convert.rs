//! Errors and values between the library and Python.

use pyo3::IntoPyObjectExt;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyMapping, PyString, PyTuple};
use serde_json::{Map, Value};

use mvault::error::Category;

create_exception!(
    mvault,
    Error,
    PyException,
    "Base class of every mvault error. `exit_code` is the CLI's exit code for the same failure."
);
create_exception!(
    mvault,
    NotFound,
    Error,
    "A model, version, alias or object does not exist (CLI exit code 3)."
);
create_exception!(
    mvault,
    Conflict,
    Error,
    "Someone else won: the version exists, an alias changed, a target file would be \
     overwritten (CLI exit code 4)."
);
create_exception!(
    mvault,
    IntegrityError,
    Error,
    "A damaged or hostile object, manifest or file: a checksum or structure check failed \
     (CLI exit code 5)."
);
create_exception!(
    mvault,
    ConfigError,
    Error,
    "Bad arguments, names, versions, remote URLs, push inputs or config files (CLI exit code 2)."
);
create_exception!(
    mvault,
    RemoteError,
    Error,
    "Anything else: the store is unreachable or refuses credentials, local I/O failed (CLI \
     exit code 1)."
);

/// The exception of a category, with `message`.
pub fn exception(category: Option<Category>, message: String) -> PyErr {
    match category {
        Some(Category::Usage) => ConfigError::new_err(message),
        Some(Category::NotFound) => NotFound::new_err(message),
        Some(Category::Conflict) => Conflict::new_err(message),
        Some(Category::Integrity) => IntegrityError::new_err(message),
        Some(Category::Failure) | None => RemoteError::new_err(message),
    }
}

/// A library error as its exception: class by category, the CLI's one-line message with its
/// remedy in this API's terms ([`for_python`]).
pub fn to_py_err<E: std::error::Error + 'static>(e: E) -> PyErr {
    let e: &(dyn std::error::Error + 'static) = &e;
    exception(mvault::category_of(e), for_python(mvault::one_line(e)))
}

/// The library's remedies name the CLI's flags and commands; in Python they are keyword
/// arguments and methods. Most specific first: each is replaced where it occurs.
const PYTHON_TERMS: &[(&str, &str)] = &[
    (
        "mvault alias set NAME@VERSION ALIAS --force (or rollback --force)",
        "Vault.alias_set(ref, alias, force=True) (or Vault.rollback(name, alias, force=True))",
    ),
    ("`mvault alias set`", "`Vault.alias_set`"),
    ("`mvault rollback`", "`Vault.rollback`"),
    (
        "use --grace 1h or more, or add --force",
        "use grace=\"1h\" or more, or pass force=True",
    ),
    ("push it with --sign-key", "push it with sign_key=PATH"),
    ("pull without --trusted-key", "pass trusted_keys=[]"),
    (
        "give its key with --encryption-key-file FILE",
        "give its key with Vault(..., encryption_key_file=FILE)",
    ),
    ("with --trusted-key", "to trusted_keys"),
    ("push without --sign-key", "push without sign_key"),
    ("--sign-key", "sign_key"),
    ("pass --force", "pass force=True"),
];

/// `message` with the CLI's terms replaced by this API's ([`PYTHON_TERMS`]).
pub fn for_python(message: String) -> String {
    if !message.contains("--") && !message.contains("`mvault ") {
        return message;
    }
    PYTHON_TERMS
        .iter()
        .fold(message, |m, (cli, py)| m.replace(cli, py))
}

/// Registers the exception classes, each with its `exit_code`.
pub fn add_exceptions(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    for (name, ty, code) in [
        ("Error", py.get_type::<Error>(), 1),
        ("NotFound", py.get_type::<NotFound>(), 3),
        ("Conflict", py.get_type::<Conflict>(), 4),
        ("IntegrityError", py.get_type::<IntegrityError>(), 5),
        ("ConfigError", py.get_type::<ConfigError>(), 2),
        ("RemoteError", py.get_type::<RemoteError>(), 1),
    ] {
        ty.setattr("exit_code", code)?;
        m.add(name, ty)?;
    }
    // Only `verify` sets it on the instance; everywhere else `e.report` is None.
    py.get_type::<IntegrityError>()
        .setattr("report", py.None())?;
    Ok(())
}

pub fn parse<T: std::str::FromStr>(s: &str) -> PyResult<T>
where
    T::Err: std::error::Error + 'static,
{
    s.parse::<T>().map_err(to_py_err)
}

pub fn json_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
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

pub fn map_to_py<'py>(py: Python<'py>, o: &Map<String, Value>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in o {
        d.set_item(k, json_to_py(py, v)?)?;
    }
    Ok(d)
}

/// A serializable library value as plain Python objects (dicts, lists, numbers, strings).
pub fn to_py<'py, T: serde::Serialize>(py: Python<'py>, v: &T) -> PyResult<Bound<'py, PyAny>> {
    let v = serde_json::to_value(v).map_err(|e| PyTypeError::new_err(e.to_string()))?;
    json_to_py(py, &v)
}

/// A metadata value as JSON: None, bool, int, float, str, lists and tuples, dicts and other
/// mappings (str keys), and numpy's scalars and arrays (as their `tolist()`: `np.float32(0.5)`
/// is 0.5, an array a nested list). NaN and infinity are refused: JSON has neither.
pub fn py_to_json(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
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
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut out = Vec::new();
        for x in obj.try_iter()? {
            out.push(py_to_json(&x?)?);
        }
        return Ok(Value::Array(out));
    }
    if obj.cast::<PyMapping>().is_ok() {
        return Ok(Value::Object(mapping_to_map(obj)?));
    }
    if from_numpy(obj)? && obj.hasattr("tolist")? {
        // Python scalars and (nested) lists of them: never numpy objects again.
        return py_to_json(&obj.call_method0("tolist")?);
    }
    Err(PyTypeError::new_err(format!(
        "metadata values must be None, bool, int, float, str, list, dict (or another mapping) \
         or a numpy scalar or array, not {}",
        obj.get_type().name()?
    )))
}

/// Whether `obj`'s type is numpy's (`numpy.float32`, `numpy.ndarray`, ...).
fn from_numpy(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    let module = obj.get_type().module()?;
    let module = module.to_cow()?;
    Ok(module == "numpy" || module.starts_with("numpy."))
}

/// A dict or any other mapping (`collections.abc.Mapping`) of str keys, as a JSON object.
pub fn mapping_to_map(obj: &Bound<'_, PyAny>) -> PyResult<Map<String, Value>> {
    let key = |k: &Bound<'_, PyAny>| -> PyResult<String> {
        Ok(k.cast::<PyString>()
            .map_err(|_| PyTypeError::new_err("metadata keys must be str"))?
            .to_cow()?
            .into_owned())
    };
    let mut m = Map::new();
    if let Ok(d) = obj.cast::<PyDict>() {
        for (k, v) in d.iter() {
            m.insert(key(&k)?, py_to_json(&v)?);
        }
        return Ok(m);
    }
    let mapping = obj.cast::<PyMapping>().map_err(|_| {
        PyTypeError::new_err("metadata must be a dict (or another mapping of str keys)")
    })?;
    for item in mapping.items()?.iter() {
        let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
        m.insert(key(&k)?, py_to_json(&v)?);
    }
    Ok(m)
}

/// [`mapping_to_map`] of an optional argument (`None`: empty).
pub fn opt_map(d: Option<&Bound<'_, PyAny>>) -> PyResult<Map<String, Value>> {
    d.filter(|d| !d.is_none())
        .map(mapping_to_map)
        .transpose()
        .map(Option::unwrap_or_default)
}

/// An RFC 3339 time as an aware `datetime.datetime` in UTC.
pub fn datetime<'py>(py: Python<'py>, rfc3339: &str) -> PyResult<Bound<'py, PyAny>> {
    use chrono::{Datelike, Timelike};
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map_err(|e| IntegrityError::new_err(format!("time {rfc3339:?}: {e}")))?
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

pub fn path_obj<'py>(py: Python<'py>, p: &std::path::Path) -> PyResult<Bound<'py, PyAny>> {
    py.import("pathlib")?
        .getattr("Path")?
        .call1((p.as_os_str(),))
}
