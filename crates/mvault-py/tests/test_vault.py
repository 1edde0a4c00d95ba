"""The mvault Python package against a local-directory vault in tmp_path."""

import datetime
import os
import pathlib

import pytest

import mvault


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    # No config file, cache or data directory of the user, no cloud metadata lookups.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("MVAULT_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


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


def test_exception_hierarchy():
    for cls in (
        mvault.NotFound,
        mvault.Conflict,
        mvault.IntegrityError,
        mvault.ConfigError,
        mvault.RemoteError,
    ):
        assert issubclass(cls, mvault.Error)
    assert issubclass(mvault.Error, Exception)


def test_push_list_versions_info_pull_rm(vault, model_dir, tmp_path):
    r = vault.push(
        [model_dir],
        "bert",
        "v1.0.0",
        description="fine-tuned on X",
        metrics={"accuracy": 0.95, "f1": 1, "ok": True, "per_class": [0.9, 0.8]},
        params={"epochs": 3, "opt": {"name": "adam"}},
        tags={"team": "nlp"},
    )
    assert isinstance(r, mvault.PushResult)
    assert (r.model_name, r.version) == ("bert", "v1.0.0")
    assert r.files == 2
    assert r.file_size == 3 * 1024 * 1024 + len('{"layers": 12}')
    assert len(r.checksum) == 64
    assert r.bytes_sent > 3 * 1024 * 1024  # random bytes do not compress
    assert r.chunks_new >= 2

    # The same bytes again: nothing new to send.
    r2 = vault.push([str(model_dir)], "bert", "1.1.0")
    assert r2.chunks_new == 0 and r2.bytes_sent == 0
    assert r2.checksum == r.checksum

    assert vault.list() == ["bert"]
    assert vault.versions("bert") == ["1.0.0", "1.1.0"]  # as stored: no `v`

    info = vault.info("bert@1.0.0")
    assert isinstance(info, mvault.Info)
    assert (info.model_name, info.version) == ("bert", "v1.0.0")
    assert isinstance(info.created_at, datetime.datetime)
    assert info.created_at.tzinfo is not None
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - info.created_at).total_seconds()) < 300
    assert info.file_size == r.file_size
    assert info.checksum == r.checksum
    assert info.description == "fine-tuned on X"
    assert info.performance_metrics == {
        "accuracy": 0.95,
        "f1": 1,
        "ok": True,
        "per_class": [0.9, 0.8],
    }
    assert info.training_config == {"epochs": 3, "opt": {"name": "adam"}}
    assert info.tags == {"team": "nlp"}
    assert sorted(f.path for f in info.files) == ["config.json", "sub/weights.bin"]
    w = next(f for f in info.files if f.path == "sub/weights.bin")
    assert w.size == 3 * 1024 * 1024 and len(w.digest) == 64
    assert vault.info("bert").version == "1.1.0"  # latest

    out = vault.pull("bert@1.0.0", tmp_path / "out")
    assert isinstance(out, pathlib.Path)
    assert out == tmp_path / "out"
    assert files_of(out) == files_of(model_dir)
    mtimes = {p: p.stat().st_mtime_ns for p in model_files(out)}
    # Again: a no-op that leaves the files alone.
    assert vault.pull("bert@1.0.0", to=str(out), verify=True) == out
    assert {p: p.stat().st_mtime_ns for p in model_files(out)} == mtimes

    # Default target: the cached snapshot; offline works once cached.
    snap = vault.pull("bert@1.0.0")
    assert snap.is_dir() and files_of(snap) == files_of(model_dir)
    assert vault.pull("bert@1.0.0", offline=True) == snap

    vault.rm("bert@1.0.0")
    assert vault.versions("bert") == ["1.1.0"]
    with pytest.raises(mvault.NotFound):
        vault.info("bert@1.0.0")


def test_default_vault_is_the_local_data_dir(tmp_path, model_dir):
    v = mvault.Vault()
    v.push([model_dir], "m", "1.0.0")
    assert (tmp_path / "xdg-data" / "mvault" / "vault").is_dir()
    assert mvault.Vault(str(tmp_path / "xdg-data" / "mvault" / "vault")).list() == ["m"]


def test_not_found(vault, model_dir):
    with pytest.raises(mvault.NotFound) as e:
        vault.versions("nope")
    assert "nope" in str(e.value)
    vault.push([model_dir], "bert", "1.0.0")
    with pytest.raises(mvault.NotFound) as e:
        vault.pull("bert@2.0.0")
    assert "bert@2.0.0" in str(e.value)
    with pytest.raises(mvault.NotFound):
        vault.rm("bert@2.0.0")


def test_conflict_for_an_existing_version(vault, model_dir):
    vault.push([model_dir], "bert", "1.0.0")
    with pytest.raises(mvault.Conflict) as e:
        vault.push([model_dir], "bert", "1.0.0")
    assert "1.0.0" in str(e.value)


def test_config_errors(vault, model_dir, tmp_path):
    with pytest.raises(mvault.ConfigError):
        mvault.Vault("ftp://example.com/x", cache_dir=tmp_path / "c")
    with pytest.raises(mvault.ConfigError):
        mvault.Vault("no-such-provider", cache_dir=tmp_path / "c")
    with pytest.raises(mvault.ConfigError) as e:
        vault.push([model_dir], "bert", "not-a-version")
    assert "not-a-version" in str(e.value)
    with pytest.raises(mvault.ConfigError):
        vault.push([model_dir], "bad name!", "1.0.0")
    with pytest.raises(mvault.ConfigError):
        vault.rm("bert")  # needs NAME@VERSION
    bad = tmp_path / "bad.yaml"
    bad.write_text("cloud_storage: [unclosed\n")
    with pytest.raises(mvault.ConfigError):
        mvault.Vault(config=bad, cache_dir=tmp_path / "c")


def test_integrity_error_for_a_corrupt_chunk(tmp_path, model_dir):
    root = tmp_path / "vault"
    v = mvault.Vault(str(root), cache_dir=tmp_path / "cache1")
    v.push([model_dir], "bert", "1.0.0")
    chunks = [p for p in (root / "chunks").rglob("*") if p.is_file()]
    assert chunks
    for c in chunks:
        data = bytearray(c.read_bytes())
        data[len(data) // 2] ^= 0xFF
        c.write_bytes(bytes(data))
    fresh = mvault.Vault(str(root), cache_dir=tmp_path / "cache2")
    with pytest.raises(mvault.IntegrityError):
        fresh.pull("bert@1.0.0", tmp_path / "out")



def test_config_file_provider_and_default(tmp_path, model_dir):
    # ./mvault.yaml in the working directory is found as the CLI finds it.
    root = tmp_path / "fsvault"
    (tmp_path / "mvault.yaml").write_text(
        "cloud_storage:\n"
        "  default_provider: local\n"
        "  providers:\n"
        "    - name: local\n"
        "      type: fs\n"
        f"      config: {{ path: {root} }}\n"
    )
    mvault.Vault("local").push([model_dir], "bert", "1.0.0")
    assert mvault.Vault().list() == ["bert"]
    assert mvault.Vault(str(root)).versions("bert") == ["1.0.0"]
