"""The seed scripts' API, on mvault: ``CloudStorageManager`` as in
``scripts/cloud_storage_manager.py`` of the seed design, so that its code runs after changing
only the import line to ``from mvault import CloudStorageManager``."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from ._mvault import Error, Vault

logger = logging.getLogger("mvault")

PathArg = Union[str, "os.PathLike[str]"]


def _files(d: Path) -> List[Path]:
    """The model files under a pulled directory (without mvault's `.mvault/` records)."""
    return [
        p
        for p in sorted(d.rglob("*"))
        if p.is_file() and p.relative_to(d).parts[0] != ".mvault"
    ]


def _umask() -> int:
    """The process umask (read by setting it, then restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class CloudStorageManager:
    """Uploads, downloads and lists models on the providers of ``cloud_storage_config.yaml``.

    ``config_path``: the config file (the seed's ``cloud_storage_config.yaml`` shape; default:
    mvault's search order, ``./mvault.yaml``, ``./cloud_storage_config.yaml``, then
    ``$XDG_CONFIG_HOME/mvault/config.yaml``). A ``provider`` argument is a provider name of
    that file (``aws_s3``, ``google_cloud``, ``azure_blob``, ``aliyun_oss``, ...), a URL or a
    path; None means ``$MVAULT_REMOTE``, else the file's default provider, else the local vault.
    """

    def __init__(
        self,
        config_path: Optional[PathArg] = None,
        *,
        cache_dir: Optional[PathArg] = None,
    ) -> None:
        self.config_path = None if config_path is None else Path(config_path)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._vaults: Dict[Optional[str], Vault] = {}

    def vault(self, provider: Optional[str] = None) -> Vault:
        """The mvault.Vault of ``provider`` (opened once, then reused)."""
        key = provider or None
        v = self._vaults.get(key)
        if v is None:
            v = Vault(key, config=self.config_path, cache_dir=self.cache_dir)
            self._vaults[key] = v
        return v

    def upload_model(
        self,
        local_path: PathArg,
        model_name: str,
        version: str,
        provider: Optional[str] = None,
        metadata: Optional[Dict[str, Any]] = None,
    ) -> bool:
        """Uploads a file or directory as ``model_name@version``. ``metadata`` has the seed's
        keys: description, performance_metrics, training_config, tags; any other key is kept.
        Returns True on success; on failure logs the error (logger ``mvault``) and returns
        False, as the seed did (use mvault.Vault.push for exceptions)."""
        try:
            r = self.vault(provider).push(
                [local_path], model_name, version, metadata=metadata
            )
        except Error as e:
            logger.error("upload of %s@%s failed: %s", model_name, version, e)
            return False
        logger.info(
            "uploaded %s@%s: %d files, %d bytes (%d sent)",
            r.model_name,
            r.version,
            r.files,
            r.file_size,
            r.bytes_sent,
        )
        return True

    def download_model(
        self,
        model_name: str,
        version: str = "latest",
        provider: Optional[str] = None,
        local_path: Optional[PathArg] = None,
    ) -> str:
        """Downloads ``model_name@version`` (verified) and returns where it is. When the
        version holds one file and ``local_path`` is not an existing directory (nor ends with
        a separator), ``local_path`` names the file to write (e.g.
        ``downloaded_models/eitp_model_v1.0.0.pt``) and that path is returned; otherwise
        ``local_path`` is the directory the version's files go into. Without ``local_path``,
        the cached snapshot directory is returned. Raises mvault.Error subclasses."""
        v = self.vault(provider)
        ref = f"{model_name}@{version}" if version else model_name
        snapshot = v.pull(ref)
        if local_path is None:
            return str(snapshot)
        text = os.fspath(local_path)
        dest = Path(text)
        files = _files(snapshot)
        as_file = (
            len(files) == 1
            and not dest.is_dir()
            and not text.endswith((os.sep, "/"))
        )
        if not as_file:
            return str(v.pull(ref, to=dest))
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".mvault-copy-", suffix=".part", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out, open(files[0], "rb") as src:
                shutil.copyfileobj(src, out, 16 << 20)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a plain write would not
            os.replace(tmp, dest)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return str(dest)

    def list_models(self, provider: Optional[str] = None) -> List[Dict[str, Any]]:
        """Every model of the provider: ``[{"model_name", "versions", "latest_version"}]``,
        sorted by name, versions ascending."""
        v = self.vault(provider)
        out = []
        for name in v.list():
            try:
                versions = v.versions(name)
            except Error:
                versions = []
            latest = v.info(name).version if versions else None
            out.append(
                {"model_name": name, "versions": versions, "latest_version": latest}
            )
        return out

    def get_model_info(
        self, model_name: str, version: str = "latest", provider: Optional[str] = None
    ) -> Dict[str, Any]:
        """The seed's metadata dict of a version (model_name, version, created_at,
        file_size, checksum, description, performance_metrics, training_config, ...)."""
        return self.vault(provider).info(f"{model_name}@{version}").to_dict()
