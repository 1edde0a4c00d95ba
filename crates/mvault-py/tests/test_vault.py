"""The mvault Python package against a local-directory vault in tmp_path."""

import datetime
import os
import pathlib

import pytest

import mvault
from conftest import files_of, model_files


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


def test_default_vault_and_cache_from_the_cli_variables(tmp_path, model_dir, monkeypatch):
    monkeypatch.setenv("MVAULT_REMOTE", str(tmp_path / "env-vault"))
    monkeypatch.setenv("MVAULT_CACHE_DIR", str(tmp_path / "env-cache"))
    v = mvault.Vault()
    v.push([model_dir], "m", "1.0.0")
    assert v.remote == f"file://{tmp_path / 'env-vault'}"
    assert v.pull("m").is_relative_to(tmp_path / "env-cache")
    assert mvault.Vault(str(tmp_path / "env-vault")).list() == ["m"]
    assert mvault.CloudStorageManager().list_models()[0]["model_name"] == "m"


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


def test_exit_codes_match_the_cli():
    assert mvault.Error.exit_code == 1
    assert mvault.RemoteError.exit_code == 1
    assert mvault.ConfigError.exit_code == 2
    assert mvault.NotFound.exit_code == 3
    assert mvault.Conflict.exit_code == 4
    assert mvault.IntegrityError.exit_code == 5


def test_remote_error_for_an_unreachable_store(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    v = mvault.Vault(
        "s3://bucket/p?endpoint=http://127.0.0.1:9&region=us-east-1&retries=0&timeout=5s",
        cache_dir=tmp_path / "c",
    )
    with pytest.raises(mvault.RemoteError) as e:
        v.list()
    assert e.value.exit_code == 1
    assert "\n" not in str(e.value)


def test_push_metadata_from_numpy_and_mappings(vault, model_dir):
    # What training loops hand over: numpy scalars and arrays, and mappings other than dict.
    import collections
    import types

    import numpy as np

    class Config(collections.abc.Mapping):
        def __init__(self, **kv):
            self._kv = kv

        def __getitem__(self, k):
            return self._kv[k]

        def __iter__(self):
            return iter(self._kv)

        def __len__(self):
            return len(self._kv)

    vault.push(
        model_dir,
        "bert",
        "1.0.0",
        metrics={
            "accuracy": np.float32(0.5),
            "loss": np.float64(0.25),
            "steps": np.int64(1200),
            "converged": np.bool_(True),
            "per_class": np.array([0.5, 0.75], dtype=np.float32),
            "confusion": np.array([[3, 1], [0, 4]]),
        },
        params=types.MappingProxyType({"epochs": np.int32(3), "opt": Config(name="adam")}),
        metadata=Config(dataset="wiki", tags={"team": "nlp"}),
    )
    info = vault.info("bert@1.0.0")
    assert info.performance_metrics == {
        "accuracy": 0.5,
        "loss": 0.25,
        "steps": 1200,
        "converged": True,
        "per_class": [0.5, 0.75],
        "confusion": [[3, 1], [0, 4]],
    }
    assert type(info.performance_metrics["steps"]) is int
    assert type(info.performance_metrics["converged"]) is bool
    assert info.training_config == {"epochs": 3, "opt": {"name": "adam"}}
    assert info.extra == {"dataset": "wiki"}
    assert info.tags == {"team": "nlp"}

    for bad, what in [
        ({"loss": np.float32("nan")}, "NaN"),
        ({"ids": {1, 2}}, "set"),
        ({1: 0.5}, "keys must be str"),
    ]:
        with pytest.raises(TypeError, match=what):
            vault.push(model_dir, "bert", "2.0.0", metrics=bad)
    with pytest.raises(TypeError, match="mapping"):
        vault.push(model_dir, "bert", "2.0.0", params=[("epochs", 3)])
    with pytest.raises(mvault.NotFound):
        vault.info("bert@2.0.0")


def test_push_metadata_dict_and_file(vault, model_dir, tmp_path):
    # As the seed's metadata: known keys merge, explicit arguments win, others are kept.
    r = vault.push(
        model_dir,  # one path, not a list
        "bert",
        "1.0.0",
        metrics={"accuracy": 0.99},
        metadata={
            "description": "EIT-P GPT-2模型",
            "performance_metrics": {"accuracy": 0.95, "loss": 0.05},
            "training_config": {"epochs": 100, "batch_size": 32},
            "tags": {"team": "nlp", "stage": 2},
            "dataset": "wiki",
            "checksum": "ignored: computed by mvault",
        },
        jobs=2,
    )
    info = vault.info("bert@1.0.0")
    assert info.description == "EIT-P GPT-2模型"
    assert info.performance_metrics == {"accuracy": 0.99, "loss": 0.05}
    assert info.training_config == {"epochs": 100, "batch_size": 32}
    assert info.tags == {"team": "nlp", "stage": "2"}
    assert info.extra == {"dataset": "wiki"}
    assert info.checksum == r.checksum
    d = info.to_dict()
    assert d["dataset"] == "wiki" and d["model_name"] == "bert"
    assert d["performance_metrics"]["loss"] == 0.05
    assert isinstance(d["created_at"], str) and d["created_at"].endswith("+00:00")
    assert "@" in info.pushed_by

    meta = tmp_path / "meta.json"
    meta.write_text('{"description": "from a file", "training_config": {"lr": 0.001}}')
    vault.push([model_dir], "bert", "1.1.0", metadata=meta)
    info = vault.info("bert@1.1.0")
    assert info.description == "from a file"
    assert info.training_config == {"lr": 0.001}
    vault.push([model_dir], "bert", "1.2.0", metadata=str(meta))

    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(mvault.ConfigError):
        vault.push([model_dir], "bert", "2.0.0", metadata=bad)
    with pytest.raises(TypeError):
        vault.push([model_dir], "bert", "2.0.0", metadata=42)
    with pytest.raises(mvault.ConfigError):
        vault.push([model_dir], "bert", "2.0.0", jobs=0)
    with pytest.raises(mvault.NotFound):
        vault.info("bert@2.0.0")


def test_alias_set_rollback_and_info_aliases(vault, model_dir):
    vault.push([model_dir], "bert", "1.0.0")
    vault.push([model_dir], "bert", "v1.1.0")
    c = vault.alias_set("bert@1.0.0", "production")
    assert isinstance(c, mvault.AliasChange)
    assert (c.model_name, c.alias, c.previous, c.version, c.changed) == (
        "bert",
        "production",
        None,
        "1.0.0",
        True,
    )
    assert vault.alias_set("bert@1.0.0", "production").changed is False
    c = vault.alias_set("bert@1.1.0", "production")
    assert (c.previous, c.version) == ("1.0.0", "v1.1.0")  # as pushed
    vault.alias_set("bert@1.1.0", "staging")
    assert vault.info("bert@production").version == "v1.1.0"
    assert vault.info("bert@1.1.0").aliases == ["production", "staging"]
    assert vault.info("bert@1.0.0").aliases == []

    al = vault.aliases("bert")
    assert [a.alias for a in al] == ["production", "staging"]
    prod = al[0]
    assert isinstance(prod, mvault.AliasInfo)
    assert [h["version"] for h in prod.history] == ["1.0.0", "v1.1.0"]
    assert isinstance(prod.history[0]["set_at"], datetime.datetime)

    c = vault.rollback("bert", "production")
    assert (c.previous, c.version) == ("v1.1.0", "1.0.0")
    assert vault.info("bert@production").version == "1.0.0"
    assert vault.pull("bert@production", "out") == pathlib.Path("out")

    with pytest.raises(mvault.NotFound):
        vault.rollback("bert", "staging")  # no earlier target
    with pytest.raises(mvault.NotFound):
        vault.rollback("bert", "nope")
    with pytest.raises(mvault.NotFound):
        vault.alias_set("bert@9.9.9", "production")
    with pytest.raises(mvault.ConfigError):
        vault.alias_set("bert", "production")  # needs an exact version
    with pytest.raises(mvault.ConfigError):
        vault.alias_set("bert@1.0.0", "bad alias!")
    # An aliased version is kept unless forced; the remedy names this API.
    with pytest.raises(mvault.Conflict) as e:
        vault.rm("bert@1.0.0")
    assert "`Vault.alias_set`" in str(e.value) and "pass force=True" in str(e.value), e.value
    assert vault.versions("bert")[0] == "1.0.0"
    with pytest.raises(mvault.NotFound):
        vault.aliases("nope")


def test_verify_and_usage(tmp_path, model_dir):
    root = tmp_path / "vault"
    v = mvault.Vault(str(root), cache_dir=tmp_path / "cache")
    v.push([model_dir], "bert", "1.0.0")
    v.push([model_dir], "bert", "1.1.0")  # same chunks
    r = v.verify()
    assert isinstance(r, mvault.VerifyReport)
    assert r.ok and r.versions_checked == 2 and r.chunks_checked >= 2
    assert r.missing == [] and r.damaged == [] and r.broken_versions == []
    assert v.verify("bert").versions_checked == 2
    assert v.verify("bert@latest").versions_checked == 1
    assert v.verify("bert@1.0.0", sample=1.0, seed=7).ok
    with pytest.raises(mvault.NotFound):
        v.verify("nope@1.0.0")
    with pytest.raises(mvault.ConfigError):
        v.verify(sample=0.0)

    u = v.usage()
    assert isinstance(u, mvault.UsageReport)
    assert u.versions == 2
    assert u.logical_bytes == 2 * (3 * 1024 * 1024 + len('{"layers": 12}'))
    assert 0 < u.stored_bytes < u.logical_bytes
    assert u.dedupe_ratio > 1.9
    assert [m["model"] for m in u.models] == ["bert"]
    assert u.monthly_cost and "usd_per_month" in u.monthly_cost[0]

    # Damage: verify raises IntegrityError with the report, or returns it with check=False.
    # The largest chunk: random bytes stored raw, so a flipped byte in the middle is payload.
    chunk = max((p for p in (root / "chunks").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(mvault.IntegrityError) as e:
        v.verify()
    assert not e.value.report.ok
    assert e.value.report.broken_versions == ["bert@1.0.0", "bert@1.1.0"]
    r = v.verify("bert@1.0.0", check=False)
    assert not r.ok and len(r.damaged) == 1
    assert r.damaged[0]["damage"] == "hash_mismatch"
    chunk.unlink()
    r = v.verify(check=False)
    assert len(r.missing) == 1


def test_next_version(vault, model_dir):
    assert vault.next_version("bert") == "1.0.0"
    vault.push([model_dir], "bert", "v1.0.0")
    assert vault.next_version("bert") == "1.0.1"
    vault.push([model_dir], "bert", "1.2.9")
    vault.push([model_dir], "bert", "2.0.0-rc.1")  # pre-releases are not the latest
    assert vault.next_version("bert") == "1.2.10"
    with pytest.raises(mvault.ConfigError):
        vault.next_version("bad name!")


def test_progress_callback(vault, model_dir, tmp_path):
    calls = []
    vault.push([model_dir], "bert", "1.0.0", progress=lambda done, total: calls.append((done, total)))
    total = 3 * 1024 * 1024 + len('{"layers": 12}')
    assert calls, "progress was never reported"
    assert calls[-1] == (total, total)
    assert all(0 <= d <= t == total for d, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)

    calls.clear()
    vault.pull("bert@1.0.0", tmp_path / "out", progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (total, total)

    # An exception in the callback cancels the call and propagates. The push is throttled to
    # ~1 s so that the callback runs while it is under way (an unthrottled 3 MiB push may end
    # before the first report, which then comes after the version exists).
    def boom(done, total):
        raise ValueError("stop")

    cfg = tmp_path / "rate.yaml"
    cfg.write_text("cloud_storage:\n  transfer: { rate_limit: 3M }\n")
    slow = mvault.Vault(str(tmp_path / "vault"), config=cfg, cache_dir=tmp_path / "cache")
    fresh = tmp_path / "fresh"  # new bytes: chunks the vault has are not uploaded (nor throttled)
    fresh.mkdir()
    (fresh / "weights.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    with pytest.raises(ValueError, match="stop"):
        slow.push([fresh], "bert", "1.1.0", progress=boom)
    with pytest.raises(mvault.NotFound):
        vault.info("bert@1.1.0")
    with pytest.raises(TypeError):
        vault.push([model_dir], "bert", "1.1.0", progress="yes")
    # False and None: no progress.
    vault.push([model_dir], "bert", "1.2.0", progress=False)


def test_progress_true_draws_a_tqdm_bar(vault, model_dir, capsys):
    tqdm = pytest.importorskip("tqdm")
    assert tqdm
    vault.push([model_dir], "bert", "1.0.0", progress=True)
    err = capsys.readouterr().err
    assert "push bert@1.0.0" in err
    assert "3.00M" in err or "3.0M" in err or "MB" in err or "M/" in err


def test_progress_true_without_tqdm_is_silent(vault, model_dir, monkeypatch, capsys):
    import builtins

    real = builtins.__import__

    def no_tqdm(name, *a, **kw):
        if name.startswith("tqdm"):
            raise ImportError(name)
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    vault.push([model_dir], "bert", "1.0.0", progress=True)
    assert capsys.readouterr().err == ""


def test_pull_force_and_link(vault, model_dir, tmp_path):
    vault.push([model_dir], "bert", "1.0.0")
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("mine")
    with pytest.raises(mvault.Conflict, match="pass force=True to replace it"):
        vault.pull("bert@1.0.0", out)
    assert (out / "config.json").read_text() == "mine"
    vault.pull("bert@1.0.0", out, force=True, link="copy")
    assert files_of(out) == files_of(model_dir)
    with pytest.raises(mvault.ConfigError):
        vault.pull("bert@1.0.0", out, link="symlink")


def test_models_in_dir(tmp_path):
    d = tmp_path / "models"
    (d / "bert").mkdir(parents=True)
    (d / "gpt.onnx").write_bytes(b"x")
    (d / ".hidden").write_bytes(b"x")
    assert mvault.models_in_dir(d) == [("bert", d / "bert"), ("gpt", d / "gpt.onnx")]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(mvault.ConfigError):
        mvault.models_in_dir(empty)
    with pytest.raises(mvault.ConfigError, match="missing does not exist"):
        mvault.models_in_dir(tmp_path / "missing")


def test_calls_release_the_gil(tmp_path, model_dir):
    import threading
    import time

    # A push throttled to ~1 s; another Python thread keeps running meanwhile.
    cfg = tmp_path / "rate.yaml"
    cfg.write_text("cloud_storage:\n  transfer: { rate_limit: 3M }\n")
    v = mvault.Vault(str(tmp_path / "vault"), config=cfg, cache_dir=tmp_path / "cache")
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.005)

    t = threading.Thread(target=ticker)
    t.start()
    started = time.monotonic()
    try:
        v.push([model_dir], "bert", "1.0.0")
    finally:
        ended = time.monotonic()
        stop.set()
        t.join()
    assert ended - started > 0.5
    during = [x for x in ticks if started < x < ended]
    assert len(during) > 20, (len(during), ended - started)


def test_keys_of_the_environment_and_config_apply_as_in_the_cli(
    tmp_path, model_dir, monkeypatch, mvault_cli
):
    import subprocess

    sk, ek = tmp_path / "release.key", tmp_path / "vault.key"
    subprocess.run([mvault_cli, "keygen", "--out", str(sk)], check=True, capture_output=True)
    subprocess.run(
        [mvault_cli, "keygen", "--encryption", "--out", str(ek)], check=True, capture_output=True
    )
    root = str(tmp_path / "vault")
    mvault.Vault(root).push([model_dir], "u", "1.0.0")  # unsigned

    # MVAULT_TRUSTED_KEYS: an unsigned version is refused before anything is placed, by
    # pull and ensure alike; trusted_keys=[] asks for no signature.
    monkeypatch.setenv("MVAULT_TRUSTED_KEYS", f"{sk}.pub")
    v = mvault.Vault(root)
    with pytest.raises(mvault.IntegrityError):
        v.pull("u@1.0.0", to=tmp_path / "t1")
    assert not (tmp_path / "t1" / "config.json").exists()
    with pytest.raises(mvault.IntegrityError):
        mvault.ensure(["u@1.0.0"], tmp_path / "models", remote=root)
    assert files_of(v.pull("u@1.0.0", to=tmp_path / "t2", trusted_keys=[])) == files_of(model_dir)

    # signing.key of the config: a push signs by default, so the trusted pull passes.
    cfg = tmp_path / "sign.yaml"
    cfg.write_text(f"cloud_storage:\n  signing:\n    key: {sk}\n")
    mvault.Vault(root, config=cfg).push([model_dir], "s", "1.0.0")
    assert files_of(v.pull("s@1.0.0", to=tmp_path / "t3")) == files_of(model_dir)
    assert mvault.ensure(["s@1.0.0"], tmp_path / "models", remote=root)["s"].is_dir()
    # verify checks signatures with the same keys: s is signed, u is not.
    assert v.verify("s@1.0.0").ok
    with pytest.raises(mvault.IntegrityError, match="u@1.0.0"):
        v.verify("u")
    with pytest.raises(mvault.IntegrityError):
        v.verify()  # every version of every model
    assert v.verify("u", trusted_keys=[]).ok
    monkeypatch.delenv("MVAULT_TRUSTED_KEYS")
    assert mvault.Vault(root).verify().ok
    with pytest.raises(mvault.IntegrityError):
        mvault.Vault(root).verify("u@1.0.0", trusted_keys=[f"{sk}.pub"])

    # MVAULT_ENCRYPTION_KEY_FILE: the new vault is sealed; without the key it is refused.
    monkeypatch.setenv("MVAULT_ENCRYPTION_KEY_FILE", str(ek))
    enc = tmp_path / "enc"
    mvault.Vault(str(enc)).push([model_dir], "e", "1.0.0")
    assert (enc / "encryption.json").is_file()
    stored = b"".join(p.read_bytes() for p in enc.rglob("*") if p.is_file())
    assert b'{"layers": 12}' not in stored and len(stored) > 3 * 1024 * 1024
    got = mvault.Vault(str(enc)).pull("e@1.0.0", to=tmp_path / "t4")
    assert files_of(got) == files_of(model_dir)
    monkeypatch.delenv("MVAULT_ENCRYPTION_KEY_FILE")
    with pytest.raises(mvault.ConfigError, match="encrypted") as e:
        mvault.Vault(str(enc), cache_dir=tmp_path / "c2").pull("e@1.0.0", to=tmp_path / "t5")
    assert "encryption_key_file=FILE" in str(e.value) and "--" not in str(e.value), e.value
    keyed = mvault.Vault(str(enc), cache_dir=tmp_path / "c3", encryption_key_file=ek)
    assert files_of(keyed.pull("e@1.0.0", to=tmp_path / "t6")) == files_of(model_dir)


def test_small_api_edges(tmp_path, model_dir):
    # A pathlib.Path is a remote too; IntegrityError.report is None unless verify set it.
    v = mvault.Vault(tmp_path / "vault")
    v.push([model_dir], "m", "1.0.0")
    assert mvault.Vault(str(tmp_path / "vault")).versions("m") == ["1.0.0"]
    assert mvault.IntegrityError("x").report is None
    # Reprs read as Python.
    assert repr(v.alias_set("m@1.0.0", "prod")) == "AliasChange(m@prod: None -> \"1.0.0\")"
    assert "Some(" not in repr(v.usage())


def test_prune_and_gc(vault, model_dir, tmp_path):
    def version(n):
        d = tmp_path / f"v{n}"
        d.mkdir()
        (d / "weights.bin").write_bytes(os.urandom(1024 * 1024))
        return d

    for v in ("1.0.0", "1.1.0", "1.2.0", "2.0.0-rc.1"):
        vault.push(version(v), "bert", v)
    vault.alias_set("bert@1.0.0", "production")
    before = vault.usage().stored_bytes

    # Without force a short grace is refused before anything is removed.
    with pytest.raises(mvault.ConfigError, match="grace") as e:
        vault.prune("bert", 1, grace="30m")
    # The remedy is in this API's terms, not the CLI's flags.
    assert 'grace="1h"' in str(e.value) and "force=True" in str(e.value), e.value
    assert "--" not in str(e.value), e.value
    assert vault.versions("bert") == ["1.0.0", "1.1.0", "1.2.0", "2.0.0-rc.1"]

    dry = vault.prune("bert", 1, dry_run=True, grace=datetime.timedelta(hours=2))
    assert isinstance(dry, mvault.PruneResult)
    assert dry.removed == ["1.1.0"]  # 1.0.0 is aliased, the rc is newer than 1.2.0
    assert dry.gc.dry_run and dry.gc.grace_seconds == 7200
    assert vault.versions("bert") == ["1.0.0", "1.1.0", "1.2.0", "2.0.0-rc.1"]

    # grace=0 with force: one run records and deletes (unsafe while pushes run).
    r = vault.prune("bert", 1, grace=0, force=True)
    assert r.removed == ["1.1.0"]
    assert vault.versions("bert") == ["1.0.0", "1.2.0", "2.0.0-rc.1"]
    assert r.gc.deleted >= 1 and r.gc.bytes_deleted >= 1024 * 1024
    assert vault.usage().stored_bytes <= before - 1024 * 1024
    assert vault.verify().ok
    assert files_of(vault.pull("bert@1.2.0", to=tmp_path / "out")) == files_of(tmp_path / "v1.2.0")

    # Nothing left to reclaim; the default grace records nothing this young.
    g = vault.gc()
    assert isinstance(g, mvault.GcReport)
    assert (g.deleted, g.chunks_recorded, g.dry_run, g.grace_seconds) == (0, 0, False, 86400)
    assert g.referenced >= 3
    for bad in ("soon", -1, True, float("nan")):
        with pytest.raises(mvault.ConfigError, match="grace"):
            vault.gc(grace=bad)
    with pytest.raises(mvault.ConfigError):
        vault.gc(grace="2h", jobs=0)


def pickle_copy(r):
    import pickle

    return pickle.loads(pickle.dumps(r))


def test_results_convert_to_dicts_and_compare(vault, model_dir):
    import json

    r = vault.push([model_dir], "bert", "1.0.0")
    d = r.to_dict()
    assert d["model_name"] == "bert" and d["files"] == 2 and d["checksum"] == r.checksum
    assert set(d) == {
        "model_name", "version", "checksum", "file_size", "files", "bytes_sent",
        "chunks_new", "chunks_reused", "seconds",
    }
    json.dumps(d)  # plain values only

    # Same content, same values: equal; one value differs: not.
    assert vault.info("bert@1.0.0") == vault.info("bert@1.0.0")
    vault.push([model_dir], "bert", "1.1.0")
    assert vault.info("bert@1.0.0") != vault.info("bert@1.1.0")
    assert vault.info("bert@1.0.0").files[0] == vault.info("bert@1.1.0").files[0]
    assert r != r.to_dict() and r != None  # noqa: E711 (another type is never equal)

    c = vault.alias_set("bert@1.0.0", "production")
    assert c.to_dict()["previous"] is None and c.to_dict()["version"] == "1.0.0"
    assert vault.aliases("bert")[0] == vault.aliases("bert")[0]
    assert vault.usage() == vault.usage()

    # Results of plain values hash (equal ones alike); those holding dicts do not.
    assert hash(r) == hash(pickle_copy(r)) and len({r, pickle_copy(r)}) == 1
    assert hash(c) == hash(pickle_copy(c))
    with pytest.raises(TypeError):
        hash(vault.info("bert@1.0.0"))
    # to_dict() is a copy: changing it leaves the result alone.
    i = vault.info("bert@1.0.0")
    i.to_dict()["performance_metrics"]["x"] = 1
    u = vault.usage()
    u.to_dict()["models"].append({})
    assert "x" not in i.performance_metrics and "x" not in i.to_dict()
    assert u == vault.usage()
    # Info compares every attribute, pushed_by too.
    assert i.pushed_by and i == vault.info("bert@1.0.0")

    # Nested results become dicts too.
    p = vault.prune("bert", 5, dry_run=True, grace="2h")
    pd = p.to_dict()
    assert pd["removed"] == [] and isinstance(pd["gc"], dict)
    assert pd["gc"]["grace_seconds"] == 7200 and pd["gc"]["dry_run"] is True
    json.dumps(pd)
    json.dumps(vault.verify().to_dict())


def test_results_pickle(vault, model_dir):
    # Ray, multiprocessing and Dask return results by pickling them.
    import pickle

    results = [vault.push([model_dir], "bert", "1.0.0")]
    info = vault.info("bert@1.0.0")
    results += [info, info.files[0], vault.alias_set("bert@1.0.0", "production")]
    results += [vault.aliases("bert")[0], vault.verify(), vault.usage()]
    results += [vault.prune("bert", 5, dry_run=True, grace="2h")]
    results += [results[-1].gc]
    assert len({type(r) for r in results}) == 9
    for r in results:
        back = pickle.loads(pickle.dumps(r))
        assert type(back) is type(r) and back == r, r
        assert back.to_dict() == r.to_dict()
    back = pickle.loads(pickle.dumps(info))
    assert back.created_at == info.created_at and back.files[0].digest == info.files[0].digest
    with pytest.raises(TypeError, match="not an mvault result type"):
        mvault._mvault._restore("Vault", {})
