//! `mvault._mvault`: the Python package's native module, on the `mvault` library (not the
//! CLI). A [`vault::Vault`] is opened exactly as the CLI opens one (config file search,
//! provider names, URLs, the default local vault); every call runs on a tokio runtime owned by
//! the module, with the GIL released and Ctrl-C honoured ([`run`]). Errors become
//! `mvault.Error` subclasses chosen by [`mvault::category_of`], with the CLI's one-line message
//! ([`mvault::one_line`]).

mod convert;
mod run;
mod types;
mod vault;

use pyo3::prelude::*;

#[pymodule]
fn _mvault(m: &Bound<'_, PyModule>) -> PyResult<()> {
    convert::add_exceptions(m)?;
    m.add_class::<vault::Vault>()?;
    m.add_class::<types::PushResult>()?;
    m.add_class::<types::Info>()?;
    m.add_class::<types::FileInfo>()?;
    m.add_class::<types::AliasChange>()?;
    m.add_class::<types::AliasInfo>()?;
    m.add_class::<types::VerifyReport>()?;
    m.add_class::<types::UsageReport>()?;
    m.add_class::<types::GcReport>()?;
    m.add_class::<types::PruneResult>()?;
    m.add_function(wrap_pyfunction!(types::restore, m)?)?;
    m.add_function(wrap_pyfunction!(vault::ensure, m)?)?;
    m.add_function(wrap_pyfunction!(vault::models_in_dir, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
