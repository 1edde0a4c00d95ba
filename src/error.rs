//! What kind of failure an error is, across layers: the one classification the CLI maps to
//! exit codes and the Python package maps to exception classes.
//!
//! Every layer has its own error enum (`remote::Error`, `cache::Error`, `transfer::Error`,
//! `vault::Error`, `lifecycle::Error`, `config::Error`, ...) that keeps its cause as a
//! `source`; each says which [`Category`] it belongs to. [`category_of`] finds the category of
//! any error in a chain.

/// The kind of failure, as a caller acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Bad arguments, names, versions, URLs, config files or push inputs: fix the input.
    Usage,
    /// A model, version, alias or object that does not exist.
    NotFound,
    /// Someone else won: the version exists, an alias changed, a file in the target would be
    /// overwritten.
    Conflict,
    /// A damaged or hostile object, manifest or file: a checksum or structure check failed.
    Integrity,
    /// Anything else: the store is unreachable or refuses credentials, local I/O failed.
    Failure,
}

/// The category of the first error in `e`'s source chain that belongs to this library;
/// `None` if none does.
pub fn category_of(e: &(dyn std::error::Error + 'static)) -> Option<Category> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(c) = own_category(err) {
            return Some(c);
        }
        cur = err.source();
    }
    None
}

fn own_category(e: &(dyn std::error::Error + 'static)) -> Option<Category> {
    if let Some(e) = e.downcast_ref::<crate::lifecycle::Error>() {
        return Some(e.category());
    }
    if let Some(e) = e.downcast_ref::<crate::vault::Error>() {
        return Some(e.category());
    }
    if let Some(e) = e.downcast_ref::<crate::transfer::Error>() {
        return Some(e.category());
    }
    if let Some(e) = e.downcast_ref::<crate::remote::Error>() {
        return Some(e.category());
    }
    if let Some(e) = e.downcast_ref::<crate::remote::PendingError>() {
        return Some(e.category());
    }
    if e.is::<crate::manifest::Error>() {
        return Some(Category::Integrity);
    }
    if e.is::<crate::cache::Error>() {
        return Some(Category::Failure);
    }
    if e.is::<crate::version::Error>()
        || e.is::<crate::remote::SpecError>()
        || e.is::<crate::config::Error>()
    {
        return Some(Category::Usage);
    }
    None
}
