"""Type stubs of the mvault package (the native module mvault._mvault and its Python layer)."""

import datetime
import os
import pathlib
from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ._seed import CloudStorageManager as CloudStorageManager

__version__: str

PathArg = Union[str, "os.PathLike[str]"]
ProgressArg = Union[None, bool, Callable[[int, int], Any]]

class Error(Exception):
    """Base class of every mvault error; ``exit_code`` is the CLI's exit code."""

    exit_code: ClassVar[int]

class NotFound(Error):
    """A model, version, alias or object does not exist (exit code 3)."""

class Conflict(Error):
    """The version exists, an alias changed concurrently, a target file would be overwritten (4)."""

class IntegrityError(Error):
    """A damaged or hostile object, manifest or file (5). From ``verify``: ``report`` is its
    VerifyReport (else None)."""

    report: Optional["VerifyReport"]

class ConfigError(Error):
    """Bad arguments, names, versions, remote URLs, push inputs or config files (2)."""

class RemoteError(Error):
    """The store is unreachable or refuses credentials, local I/O failed (1)."""

class PushResult:
    """What a push wrote."""

    model_name: str
    version: str
    checksum: str
    file_size: int
    files: int
    bytes_sent: int
    chunks_new: int
    chunks_reused: int
    seconds: float
    def to_dict(self) -> Dict[str, Any]:
        """Every attribute as a new dict (nested results as dicts; datetimes stay datetimes:
        ``json.dumps(d, default=str)``)."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

class FileInfo:
    """One file of a version."""

    path: str
    size: int
    digest: str
    def to_dict(self) -> Dict[str, Any]:
        """Every attribute as a new dict (nested results as dicts; datetimes stay datetimes:
        ``json.dumps(d, default=str)``)."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

class Info:
    """A version's metadata."""

    model_name: str
    version: str
    created_at: datetime.datetime
    file_size: int
    checksum: str
    description: str
    performance_metrics: Dict[str, Any]
    training_config: Dict[str, Any]
    tags: Dict[str, str]
    files: List[FileInfo]
    aliases: List[str]
    extra: Dict[str, Any]
    pushed_by: str
    def to_dict(self) -> Dict[str, Any]:
        """Everything as the seed's metadata dict (created_at as ISO 8601 text)."""
    def __eq__(self, other: object) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

class AliasChange:
    """What alias_set or rollback did."""

    model_name: str
    alias: str
    previous: Optional[str]
    version: str
    revision: int
    changed: bool
    skipped: List[str]
    def to_dict(self) -> Dict[str, Any]:
        """Every attribute as a new dict (nested results as dicts; datetimes stay datetimes:
        ``json.dumps(d, default=str)``)."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

class AliasInfo:
    """One alias of a model, with its history (oldest first)."""

    alias: str
    version: str
    revision: int
    history: List[Dict[str, Any]]
    def to_dict(self) -> Dict[str, Any]:
        """Every attribute as a new dict (nested results as dicts; datetimes stay datetimes:
        ``json.dumps(d, default=str)``)."""
    def __eq__(self, other: object) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

class VerifyReport:
    """What verify checked and found."""

    ok: bool
    versions_checked: int
    chunks_referenced: int
    chunks_checked: int
    bytes_read: int
    missing: List[Dict[str, Any]]
    damaged: List[Dict[str, Any]]
    bad_manifests: List[Dict[str, Any]]
    broken_versions: List[str]
    def to_dict(self) -> Dict[str, Any]:
        """Every attribute as a new dict (nested results as dicts; datetimes stay datetimes:
        ``json.dumps(d, default=str)``)."""
    def __eq__(self, other: object) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

class UsageReport:
    """Logical vs stored bytes of a vault."""

    models: List[Dict[str, Any]]
    versions: int
    logical_bytes: int
    stored_bytes: int
    chunk_objects: int
    metadata_objects: int
    metadata_bytes: int
    objects: int
    billed_bytes: int
    dedupe_ratio: Optional[float]
    monthly_cost: List[Dict[str, Any]]
    def to_dict(self) -> Dict[str, Any]:
        """Every attribute as a new dict (nested results as dicts; datetimes stay datetimes:
        ``json.dumps(d, default=str)``)."""
    def __eq__(self, other: object) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

class GcReport:
    """What ``Vault.gc`` did; counts are of chunk objects unless they say records."""

    scanned_chunks: int
    scanned_packs: int
    referenced: int
    deleted: int
    bytes_deleted: int
    kept_young: int
    kept_pending: int
    kept_rewritten: int
    kept_slow: int
    late_deletes: int
    chunks_recorded: int
    records_written: int
    records_swept: int
    records_pending: int
    manifests: int
    dry_run: bool
    grace_seconds: int
    def to_dict(self) -> Dict[str, Any]:
        """Every attribute as a new dict (nested results as dicts; datetimes stay datetimes:
        ``json.dumps(d, default=str)``)."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

class PruneResult:
    """What ``Vault.prune`` did: versions removed (ascending) and the gc that followed."""

    removed: List[str]
    gc: GcReport
    def to_dict(self) -> Dict[str, Any]:
        """Every attribute as a new dict (nested results as dicts; datetimes stay datetimes:
        ``json.dumps(d, default=str)``)."""
    def __eq__(self, other: object) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

GraceArg = Union[None, str, int, float, datetime.timedelta]

class Vault:
    """A vault: one remote plus the local cache, opened as the CLI opens it."""

    def __init__(
        self,
        remote: Union[None, str, "os.PathLike[str]"] = None,
        *,
        config: Optional[PathArg] = None,
        cache_dir: Optional[PathArg] = None,
        encryption_key_file: Optional[PathArg] = None,
    ) -> None:
        """``remote``: URL, local path or config provider; None: ``$MVAULT_REMOTE``, else the
        config's default, else the local vault. ``config``: config file; ``cache_dir``: the
        local cache (default ``$MVAULT_CACHE_DIR``, else ``$XDG_CACHE_HOME/mvault``).
        ``encryption_key_file``: the vault's key (default ``$MVAULT_ENCRYPTION_KEY_FILE``, else
        the config's ``encryption.key_file``)."""
    @property
    def remote(self) -> str:
        """The remote's display name (no secrets)."""
    def push(
        self,
        paths: Union[PathArg, Sequence[PathArg]],
        name: str,
        version: str,
        *,
        description: str = "",
        metrics: Optional[Mapping[str, Any]] = None,
        params: Optional[Mapping[str, Any]] = None,
        tags: Optional[Mapping[str, str]] = None,
        metadata: Union[None, Mapping[str, Any], PathArg] = None,
        jobs: Optional[int] = None,
        progress: ProgressArg = None,
        sign_key: Optional[PathArg] = None,
    ) -> PushResult:
        """Pushes files and directories as ``name@version``; Conflict if it exists. Signed
        with ``sign_key`` (default: the config's ``signing.key``)."""
    def pull(
        self,
        ref: str,
        to: Optional[PathArg] = None,
        *,
        verify: bool = False,
        offline: bool = False,
        force: bool = False,
        link: str = "auto",
        jobs: Optional[int] = None,
        progress: ProgressArg = None,
        trusted_keys: Optional[Sequence[PathArg]] = None,
    ) -> pathlib.Path:
        """Pulls ``ref`` into ``to`` (default: the cached snapshot) and returns the directory.
        With ``trusted_keys`` (public key files; default ``$MVAULT_TRUSTED_KEYS``, else the
        config's ``signing.trusted_keys``; ``[]``: none) the version must be signed by one of
        them."""
    def list(self) -> List[str]:
        """Model names, sorted."""
    def versions(self, name: str) -> List[str]:
        """Versions of a model, ascending; NotFound if none."""
    def next_version(self, name: str) -> str:
        """The next patch version after the latest release, ``1.0.0`` for a new model."""
    def info(self, ref: str) -> Info:
        """The metadata of ``ref``, with the aliases pointing at it."""
    def rm(self, ref: str, *, force: bool = False) -> None:
        """Deletes ``NAME@VERSION``; chunks stay until gc. Raises Conflict if an alias
        points at it, unless ``force``."""
    def alias_set(self, ref: str, alias: str, *, force: bool = False) -> AliasChange:
        """Points ``alias`` at ``NAME@VERSION``; history is kept."""
    def aliases(self, name: str) -> List[AliasInfo]:
        """The aliases of a model with their history."""
    def rollback(self, name: str, alias: str, *, force: bool = False) -> AliasChange:
        """Moves ``alias`` back to its previous target."""
    def verify(
        self,
        ref: Optional[str] = None,
        *,
        sample: Optional[float] = None,
        seed: Optional[int] = None,
        jobs: Optional[int] = None,
        check: bool = True,
        trusted_keys: Optional[Sequence[PathArg]] = None,
    ) -> VerifyReport:
        """Re-reads and checks remote chunks; with ``check`` damage raises IntegrityError.
        With ``trusted_keys`` (default as in ``pull``) every selected version must be signed
        by one of them (IntegrityError otherwise)."""
    def usage(self) -> UsageReport:
        """Logical vs stored bytes, dedupe ratio, monthly cost estimates."""
    def gc(
        self,
        *,
        grace: GraceArg = None,
        dry_run: bool = False,
        force: bool = False,
        jobs: Optional[int] = None,
    ) -> GcReport:
        """Reclaims unreferenced chunks in two runs at least ``grace`` apart (default 24h;
        below 1h only with ``force``), as ``mvault gc``."""
    def prune(
        self,
        name: str,
        keep: int,
        *,
        dry_run: bool = False,
        grace: GraceArg = None,
        force: bool = False,
        jobs: Optional[int] = None,
    ) -> PruneResult:
        """Removes versions older than the newest ``keep`` releases (never an aliased one),
        then runs ``gc``, as ``mvault prune NAME --keep N``."""

def ensure(
    models: Union[None, str, Sequence[str]] = None,
    dir: Optional[PathArg] = None,
    *,
    remote: Optional[str] = None,
    config: Optional[PathArg] = None,
    cache_dir: Optional[PathArg] = None,
    offline: bool = False,
    force: bool = False,
    jobs: Optional[int] = None,
    trusted_keys: Optional[Sequence[PathArg]] = None,
    encryption_key_file: Optional[PathArg] = None,
) -> Dict[str, pathlib.Path]:
    """Makes every model present under ``dir/<name>/`` (what ``mvault run`` does);
    ``trusted_keys`` and ``encryption_key_file`` as for ``Vault.pull`` and ``Vault()``."""

def models_in_dir(dir: PathArg) -> List[Tuple[str, pathlib.Path]]:
    """The models a directory stands for (``push --models-dir``)."""
