"""Fixtures of the mvault Python suite.

Every test runs in its own temporary directory with no config file, cache or data directory
of the user and no cloud metadata lookups. The `remote` fixture is one vault per backend: a
local directory always; S3 (moto), GCS (gcp-storage-emulator) and Azure Blob (Azurite) from
the MVAULT_TEST_* variables that `scripts/emulators.sh` exports (as tests/common/ of the Rust
suite reads them). A missing server skips its tests, or fails them when
MVAULT_REQUIRE_SERVERS=1 (what `scripts/test.sh` sets).
"""

import os
import pathlib
import secrets
import sys
import urllib.parse

import pytest

import mvault

BACKENDS = ["fs", "s3", "gcs", "azblob"]


def require_servers() -> bool:
    return os.environ.get("MVAULT_REQUIRE_SERVERS") == "1"


def server_vars(*names):
    """The values of `names`, or skip (fail under MVAULT_REQUIRE_SERVERS=1) if one is unset."""
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        msg = f"server not available: {', '.join(missing)} unset (run under scripts/emulators.sh run)"
        if require_servers():
            pytest.fail(msg)
        pytest.skip(msg)
    return [os.environ[n] for n in names]


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    # No config file, cache or data directory of the user, no cloud metadata lookups.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for var in (
        "MVAULT_CONFIG",
        "MVAULT_REMOTE",
        "MVAULT_CACHE_DIR",
        "MVAULT_TRUSTED_KEYS",
        "MVAULT_ENCRYPTION_KEY_FILE",
        "MVAULT_MODELS",
        "MVAULT_MODELS_DIR",
        "MODEL_PATH",
        "MODELS_S3_BUCKET",
        "AWS_ENDPOINT_URL",
        "STORAGE_EMULATOR_HOST",
        "AZURE_STORAGE_CONNECTION_STRING",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


def s3_env(monkeypatch):
    """Credentials of the moto server in the environment; returns (endpoint, bucket)."""
    ep, bucket, key, secret = server_vars(
        "MVAULT_TEST_S3_ENDPOINT",
        "MVAULT_TEST_S3_BUCKET",
        "MVAULT_TEST_S3_ACCESS_KEY",
        "MVAULT_TEST_S3_SECRET_KEY",
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return ep, bucket


def remote_url(backend, monkeypatch, tmp_path) -> str:
    """A fresh, empty vault on `backend` (a random prefix in the test bucket)."""
    prefix = "py" + secrets.token_hex(8)
    if backend == "fs":
        return str(tmp_path / "vault")
    if backend == "s3":
        ep, bucket = s3_env(monkeypatch)
        q = urllib.parse.urlencode({"endpoint": ep, "region": "us-east-1"})
        return f"s3://{bucket}/{prefix}?{q}"
    if backend == "gcs":
        ep, bucket = server_vars("MVAULT_TEST_GCS_ENDPOINT", "MVAULT_TEST_GCS_BUCKET")
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", ep)
        q = urllib.parse.urlencode({"endpoint": ep, "anonymous": "true"})
        return f"gs://{bucket}/{prefix}?{q}"
    if backend == "azblob":
        conn, container = server_vars(
            "MVAULT_TEST_AZBLOB_CONNECTION_STRING", "MVAULT_TEST_AZBLOB_CONTAINER"
        )
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", conn)
        return f"az://{container}/{prefix}"
    raise ValueError(backend)


@pytest.fixture(params=BACKENDS)
def remote(request, monkeypatch, tmp_path):
    """(backend, URL) of an empty vault, for every backend."""
    return request.param, remote_url(request.param, monkeypatch, tmp_path)


@pytest.fixture
def model_dir(tmp_path):
    d = tmp_path / "bert"
    (d / "sub").mkdir(parents=True)
    (d / "config.json").write_text('{"layers": 12}')
    # Big enough for several chunks (512 KiB average), not compressible.
    (d / "sub" / "weights.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    return d


@pytest.fixture
def vault(tmp_path):
    return mvault.Vault(str(tmp_path / "vault"), cache_dir=tmp_path / "cache")


def model_files(d: pathlib.Path):
    """The files under `d`, without the `.mvault/` state a pull leaves in its target."""
    return [
        p
        for p in sorted(d.rglob("*"))
        if p.is_file() and p.relative_to(d).parts[0] != ".mvault"
    ]


def files_of(d: pathlib.Path):
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in model_files(d)}


def script(name: str) -> str:
    """The path of a console script installed beside this interpreter."""
    p = pathlib.Path(sys.executable).parent / name
    assert p.exists(), f"{p}: console script not installed"
    return str(p)


@pytest.fixture
def mvault_cli():
    """The `mvault` binary of this checkout (`scripts/python-test.sh` builds it), for what the
    package does not do itself, such as `mvault keygen`."""
    target = os.environ.get("CARGO_TARGET_DIR") or str(pathlib.Path(__file__).parents[3] / "target")
    path = pathlib.Path(target) / "release" / "mvault"
    if not path.is_file():
        pytest.fail(f"{path} missing: build it with cargo build --release")
    return str(path)
