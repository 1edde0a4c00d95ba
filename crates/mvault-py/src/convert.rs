//! Errors and values between the library and Python.

use pyo3::IntoPyObjectExt;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
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

/// A library error as its exception: class by category, the CLI's one-line message.
pub fn to_py_err<E: std::error::Error + 'static>(e: E) -> PyErr {
    let e: &(dyn std::error::Error + 'static) = &e;
    exception(mvault::category_of(e), mvault::one_line(e))
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

pub fn dict_to_map(d: &Bound<'_, PyDict>) -> PyResult<Map<String, Value>> {
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

pub fn opt_map(d: Option<&Bound<'_, PyDict>>) -> PyResult<Map<String, Value>> {
    d.map(dict_to_map)
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
