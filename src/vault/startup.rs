//! The container start-up policy (`mvault run`, Python's `mvault.ensure`): which models, which
//! directory and which remote, when the caller does not say. Deployments written for the seed
//! scripts name only `MODELS_S3_BUCKET` and `MODEL_PATH`; mvault's own variables win over them.

use std::path::PathBuf;

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The models of `$MVAULT_MODELS` (comma-separated `NAME@VERSION`, blanks ignored); empty when
/// unset.
pub fn models_from_env() -> Vec<String> {
    env_nonempty("MVAULT_MODELS")
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// The directory holding one sub-directory per model: `explicit`, else `$MVAULT_MODELS_DIR`,
/// else `$MODEL_PATH`, else `./models`.
pub fn models_dir(explicit: Option<PathBuf>) -> PathBuf {
    explicit
        .or_else(|| env_nonempty("MVAULT_MODELS_DIR").map(PathBuf::from))
        .or_else(|| env_nonempty("MODEL_PATH").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("models"))
}

/// The remote to start from: `explicit`, else `$MVAULT_REMOTE`, else `s3://$MODELS_S3_BUCKET`;
/// `None` means the config's default provider (see [`super::resolve_spec`]).
pub fn startup_remote(explicit: Option<&str>) -> Option<String> {
    explicit
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .or_else(|| env_nonempty("MVAULT_REMOTE"))
        .or_else(|| env_nonempty("MODELS_S3_BUCKET").map(|b| format!("s3://{b}")))
}
