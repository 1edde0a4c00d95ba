"""The core of the API against every backend: a local directory, S3 (moto), GCS
(gcp-storage-emulator) and Azure Blob (Azurite)."""

import datetime

import pytest

import mvault
from conftest import files_of


def test_core_flow(remote, model_dir, tmp_path):
    backend, url = remote
    v = mvault.Vault(url, cache_dir=tmp_path / "cache")
    assert v.list() == []
    r = v.push([model_dir], "bert", "v1.0.0", metrics={"accuracy": 0.95}, tags={"b": backend})
    assert r.chunks_new >= 2
    with pytest.raises(mvault.Conflict):
        v.push([model_dir], "bert", "1.0.0")
    assert v.push([model_dir], "bert", "1.1.0").bytes_sent == 0
    assert v.list() == ["bert"]
    assert v.versions("bert") == ["1.0.0", "1.1.0"]
    assert v.next_version("bert") == "1.1.1"

    info = v.info("bert@1.0.0")
    assert info.version == "v1.0.0" and info.tags == {"b": backend}
    assert isinstance(info.created_at, datetime.datetime)
    assert info.performance_metrics == {"accuracy": 0.95}

    out = v.pull("bert@1.0.0", tmp_path / "out", verify=True)
    assert files_of(out) == files_of(model_dir)
    # A second vault with an empty cache fetches from the store.
    fresh = mvault.Vault(url, cache_dir=tmp_path / "cache2")
    assert files_of(fresh.pull("bert")) == files_of(model_dir)

    v.alias_set("bert@1.1.0", "production")
    v.alias_set("bert@1.0.0", "production")
    assert v.info("bert@production").aliases == ["production"]
    assert v.rollback("bert", "production").version == "1.1.0"
    assert v.verify().ok
    assert v.usage().versions == 2

    v.rm("bert@1.0.0")
    assert v.versions("bert") == ["1.1.0"]
    with pytest.raises(mvault.NotFound):
        v.info("bert@1.0.0")
    with pytest.raises(mvault.NotFound):
        v.pull("nope")
