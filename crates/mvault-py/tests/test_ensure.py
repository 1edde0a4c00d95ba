"""`mvault.ensure`: what `mvault run` does at a container's start-up (the second seed's
`download_models_from_s3()`), reading MVAULT_* and the seed deployment's MODELS_S3_BUCKET and
MODEL_PATH the same way."""

import os
import urllib.parse

import pytest

import mvault
from conftest import files_of, s3_env


def test_ensure_explicit_and_from_env(tmp_path, model_dir, monkeypatch):
    root = str(tmp_path / "vault")
    v = mvault.Vault(root)
    v.push([model_dir], "bert", "1.0.0")
    v.push([model_dir], "gpt", "2.0.0")

    got = mvault.ensure(["bert@1.0.0", "gpt@2.0.0"], tmp_path / "models", remote=root)
    assert got == {"bert": tmp_path / "models" / "bert", "gpt": tmp_path / "models" / "gpt"}
    assert files_of(got["bert"]) == files_of(model_dir)

    # Pinned and in place: offline works, nothing needed from the store.
    assert mvault.ensure("bert@1.0.0, gpt@2.0.0", tmp_path / "models", remote=root, offline=True)

    monkeypatch.setenv("MVAULT_REMOTE", root)
    monkeypatch.setenv("MVAULT_MODELS", "bert@1.0.0,gpt@2.0.0")
    monkeypatch.setenv("MODEL_PATH", str(tmp_path / "opt-models"))
    got = mvault.ensure()
    assert sorted(got) == ["bert", "gpt"]
    assert got["gpt"] == tmp_path / "opt-models" / "gpt"
    monkeypatch.setenv("MVAULT_MODELS_DIR", str(tmp_path / "mv-models"))
    assert mvault.ensure()["bert"] == tmp_path / "mv-models" / "bert"
    monkeypatch.delenv("MVAULT_MODELS_DIR")
    monkeypatch.delenv("MODEL_PATH")
    assert mvault.ensure(["bert"])["bert"].resolve() == tmp_path / "models" / "bert"  # ./models

    with pytest.raises(mvault.NotFound):
        mvault.ensure(["bert@9.0.0"])
    monkeypatch.delenv("MVAULT_MODELS")
    with pytest.raises(mvault.ConfigError):
        mvault.ensure()


def test_ensure_reads_models_s3_bucket(tmp_path, model_dir, monkeypatch):
    ep, bucket = s3_env(monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", ep)
    v = mvault.Vault(f"s3://{bucket}", cache_dir=tmp_path / "c")
    name = "seg" + os.urandom(4).hex()
    v.push([model_dir], name, "1.2.0")
    monkeypatch.setenv("MODELS_S3_BUCKET", bucket)
    monkeypatch.setenv("MODEL_PATH", str(tmp_path / "opt" / "maskterial" / "models"))
    got = mvault.ensure([f"{name}@1.2.0"])
    assert got[name] == tmp_path / "opt" / "maskterial" / "models" / name
    assert files_of(got[name]) == files_of(model_dir)
