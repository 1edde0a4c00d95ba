"""mvault: versioned, chunk-deduplicated ML model storage, on the Rust library.

    import mvault
    v = mvault.Vault("s3://bucket/models")          # or a path, a provider name, or None
    v.push(["./bert"], "bert", "1.0.0", metrics={"accuracy": 0.95}, progress=True)
    path = v.pull("bert@1.0.0", to="./models/bert")  # -> pathlib.Path
    info = v.info("bert@latest")                     # typed: .version, .created_at, .files
    mvault.ensure(["bert@1.0.0"], "/opt/models")     # what `mvault run` does at start-up

The seed scripts' API: ``from mvault import CloudStorageManager``.

Errors are subclasses of mvault.Error: NotFound, Conflict, IntegrityError, ConfigError
(bad arguments, names, versions, URLs or config files) and RemoteError (everything else);
each has the CLI's exit code as ``exit_code``.
"""

from ._mvault import (
    AliasChange,
    AliasInfo,
    Conflict,
    ConfigError,
    Error,
    FileInfo,
    GcReport,
    Info,
    IntegrityError,
    NotFound,
    PruneResult,
    PushResult,
    RemoteError,
    UsageReport,
    Vault,
    VerifyReport,
    __version__,
    ensure,
    models_in_dir,
)

__all__ = [
    "Vault",
    "ensure",
    "models_in_dir",
    "CloudStorageManager",
    "PushResult",
    "Info",
    "FileInfo",
    "AliasChange",
    "AliasInfo",
    "VerifyReport",
    "UsageReport",
    "GcReport",
    "PruneResult",
    "Error",
    "NotFound",
    "Conflict",
    "IntegrityError",
    "ConfigError",
    "RemoteError",
    "__version__",
]


def __getattr__(name: str):
    # The seed-compatible layer imports logging and shutil: loaded on first use, so that
    # `import mvault` stays fast.
    if name == "CloudStorageManager":
        from ._seed import CloudStorageManager

        return CloudStorageManager
    raise AttributeError(f"module 'mvault' has no attribute {name!r}")
