"""mvault: versioned, chunk-deduplicated ML model storage, on the Rust library.

    import mvault
    v = mvault.Vault("s3://bucket/models")          # or a path, a provider name, or None
    v.push(["./bert"], "bert", "1.0.0", metrics={"accuracy": 0.95})
    path = v.pull("bert@1.0.0", to="./models/bert")  # -> pathlib.Path
    info = v.info("bert@latest")                     # typed: .version, .created_at, .files

Errors are subclasses of mvault.Error: NotFound, Conflict, IntegrityError, ConfigError
(bad arguments, names, versions, URLs or config files) and RemoteError (everything else).
"""

from ._mvault import (
    Conflict,
    ConfigError,
    Error,
    FileInfo,
    Info,
    IntegrityError,
    NotFound,
    PushResult,
    RemoteError,
    Vault,
)

__all__ = [
    "Vault",
    "PushResult",
    "Info",
    "FileInfo",
    "Error",
    "NotFound",
    "Conflict",
    "IntegrityError",
    "ConfigError",
    "RemoteError",
]
