//! mvault: a model vault. Versioned machine-learning models in object storage (S3, GCS,
//! Azure Blob, Aliyun OSS, local disk), split into content-defined chunks named by BLAKE3,
//! stored once, and brought back verified.
//!
//! Layers, from pure data to I/O:
//! - [`chunk`], [`manifest`], [`version`]: formats and rules, no I/O;
//! - [`remote`]: the vault layout on a store, over OpenDAL; [`cache`]: the local cache;
//! - [`transfer`]: push and pull pipelines;
//! - [`trust`]: signing keys, trusted keys and the signature bundle of a version;
//! - [`vault`]: the operations users run and their policies (which remote a name means,
//!   aliases, push fan-out, metadata files, cache limits);
//! - [`lifecycle`]: verify, gc, prune, usage (over a [`vault::Vault`]);
//! - [`crypt`]: client-side encryption (keys, sealed objects; used by [`remote`]);
//! - [`config`] (the config file), [`audit`] (the audit log and its statistics), [`error`]
//!   (the categories every layer's error maps to), [`buffers`] (large buffers recycled);
//! - [`serve`]: `mvault serve`, the read-only web view (pages, `/api`, `/metrics`);
//! - [`cli`]: the command line (nothing else depends on it).

pub mod audit;
pub mod buffers;
pub mod cache;
pub mod chunk;
pub mod cli;
pub mod config;
pub mod crypt;
pub mod error;
pub mod layout;
pub mod lifecycle;
pub mod manifest;
pub mod pack;
pub mod remote;
pub mod serve;
pub mod transfer;
pub mod trust;
pub mod util;
pub mod vault;
pub mod version;

/// The [`error::Category`] of the first error in `e`'s source chain that belongs to this
/// library; `None` if none does. (Here, at the root, because it knows every layer's type.)
pub fn category_of(e: &(dyn std::error::Error + 'static)) -> Option<error::Category> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(c) = own_category(err) {
            return Some(c);
        }
        cur = err.source();
    }
    None
}

/// The message of an error chain as the user sees it (the CLI's `mvault: ...` line, the
/// Python exceptions' message): each cause's text, joined by `: `, skipping a cause whose
/// text the previous one already ends with, and stopping at OpenDAL's error:
/// [`remote::Error`] above it says what failed in one line; OpenDAL's error, with its request
/// context, and its causes are logged (at info level, `-v`) only.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut chain = std::iter::successors(Some(e), |c| c.source()).peekable();
    while let Some(cause) = chain.next_if(|c| !c.is::<opendal::Error>()) {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    for detail in chain {
        tracing::info!("caused by: {detail}");
    }
    out
}

fn own_category(e: &(dyn std::error::Error + 'static)) -> Option<error::Category> {
    if let Some(e) = e.downcast_ref::<crate::serve::Error>() {
        return Some(e.category());
    }
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
    if let Some(e) = e.downcast_ref::<crate::crypt::Error>() {
        return Some(e.category());
    }
    if let Some(e) = e.downcast_ref::<crate::trust::Error>() {
        return Some(e.category());
    }
    if e.is::<crate::manifest::Error>() {
        return Some(error::Category::Integrity);
    }
    if e.is::<crate::cache::Error>() {
        return Some(error::Category::Failure);
    }
    if e.is::<crate::version::Error>()
        || e.is::<crate::remote::SpecError>()
        || e.is::<crate::config::Error>()
    {
        return Some(error::Category::Usage);
    }
    None
}
