"""The seed's two scripts as console scripts: ``upload_models_to_cloud`` and
``download_models_from_cloud`` (flags ``--provider``, ``--models-dir``, ``--model-name``,
``--version``, ``--list``). Exit codes are the CLI's: 0 ok, 1 failure, 2 usage, 3 not found,
4 conflict, 5 integrity."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from ._mvault import Error, Vault, models_in_dir


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--provider",
        help="provider of the config file (aws_s3, google_cloud, azure_blob, aliyun_oss, ...), "
        "a URL or a path; default: the config's default provider, else the local vault",
    )
    p.add_argument("--config", type=Path, help="config file (default: mvault's search order)")
    p.add_argument("--cache-dir", type=Path, help="local cache (default: $XDG_CACHE_HOME/mvault)")
    p.add_argument("--list", action="store_true", help="list the models and their versions")
    p.add_argument("--model-name", help="only this model")
    p.add_argument("--version", help="version (default: see --help)")
    p.add_argument("-j", "--jobs", type=int, help="requests in flight")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _vault(a: argparse.Namespace) -> Vault:
    return Vault(a.provider, config=a.config, cache_dir=a.cache_dir)


def _progress(a: argparse.Namespace) -> bool:
    return not a.quiet and sys.stderr.isatty()


def _list(v: Vault) -> None:
    for name in v.list():
        try:
            versions = v.versions(name)
        except Error:
            versions = []
        print(f"{name}\t{' '.join(versions)}")


def _fail(e: Error) -> int:
    print(f"error: {e}", file=sys.stderr)
    return getattr(e, "exit_code", 1)


def upload_main(argv: Optional[List[str]] = None) -> int:
    """``upload_models_to_cloud``: pushes every model of ``--models-dir`` (each sub-directory
    or file is one model named after it); without ``--version`` each model gets the next
    patch version after its latest (``1.0.0`` for a new model). Prints ``name@version`` for
    every model pushed."""
    p = argparse.ArgumentParser(
        prog="upload_models_to_cloud",
        description="Upload every model of a directory to a model vault (mvault).",
    )
    _common(p)
    p.add_argument("--models-dir", type=Path, default=Path("models"), help="default: ./models")
    p.add_argument("--description", default="", help="description of every version pushed")
    a = p.parse_args(argv)
    try:
        v = _vault(a)
        if a.list:
            _list(v)
            return 0
        models = models_in_dir(a.models_dir)
        if a.model_name:
            models = [(n, path) for n, path in models if n == a.model_name]
            if not models:
                print(
                    f"error: no model {a.model_name!r} in {a.models_dir}", file=sys.stderr
                )
                return 3
    except Error as e:
        return _fail(e)
    code = 0
    for name, path in models:
        try:
            version = a.version or v.next_version(name)
            r = v.push(
                [path],
                name,
                version,
                description=a.description,
                jobs=a.jobs,
                progress=_progress(a),
            )
        except Error as e:
            print(f"error: {name}: {e}", file=sys.stderr)
            code = code or getattr(e, "exit_code", 1)
            continue
        print(
            f"{r.model_name}@{r.version}\t{r.files} files, {r.file_size} bytes, "
            f"{r.bytes_sent} sent",
            flush=True,
        )
    return code


def download_main(argv: Optional[List[str]] = None) -> int:
    """``download_models_from_cloud``: pulls ``--model-name`` (every model without it) at
    ``--version`` (default: latest) into ``--models-dir/<name>/`` and prints each path;
    ``--list`` lists the models and their versions."""
    p = argparse.ArgumentParser(
        prog="download_models_from_cloud",
        description="Download models from a model vault (mvault), verified.",
    )
    _common(p)
    p.add_argument(
        "--models-dir",
        type=Path,
        default=Path("downloaded_models"),
        help="each model goes into DIR/<name>/ (default: ./downloaded_models)",
    )
    p.add_argument("--verify", action="store_true", help="re-hash files already in place")
    a = p.parse_args(argv)
    try:
        v = _vault(a)
        if a.list:
            _list(v)
            return 0
        names = [a.model_name] if a.model_name else v.list()
    except Error as e:
        return _fail(e)
    code = 0
    for name in names:
        ref = f"{name}@{a.version}" if a.version else name
        try:
            out = v.pull(
                ref,
                to=a.models_dir / name,
                verify=a.verify,
                jobs=a.jobs,
                progress=_progress(a),
            )
        except Error as e:
            print(f"error: {ref}: {e}", file=sys.stderr)
            code = code or getattr(e, "exit_code", 1)
            continue
        print(out, flush=True)
    return code


def _entry(main) -> None:
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def upload_entry() -> None:
    """Console-script entry point of ``upload_models_to_cloud``."""
    _entry(upload_main)


def download_entry() -> None:
    """Console-script entry point of ``download_models_from_cloud``."""
    _entry(download_main)
