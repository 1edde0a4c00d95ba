"""Seed compatibility: the seed design's snippets run unchanged but for the import line, on
the seed's own `cloud_storage_config.yaml`; and its two scripts as console scripts.

The snippets below are copied verbatim from the seed document
(shared/seeds/000_*.txt, "手动上传单个模型" and "手动下载模型"); only
`from scripts.cloud_storage_manager import CloudStorageManager` became
`from mvault import CloudStorageManager`.
"""

import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

import mvault
from conftest import s3_env, script

SEED_UPLOAD = """
from mvault import CloudStorageManager

manager = CloudStorageManager()

# 上传模型
success = manager.upload_model(
    local_path="models/model_20251003_004528/model.pt",
    model_name="eitp_gpt2",
    version="v1.0.0",
    provider="aws_s3",
    metadata={
        "description": "EIT-P GPT-2模型",
        "performance_metrics": {"accuracy": 0.95, "loss": 0.05}
    }
)
"""

SEED_DOWNLOAD = """
from mvault import CloudStorageManager

manager = CloudStorageManager()

# 下载模型
local_path = manager.download_model(
    model_name="eitp_model",
    version="v1.0.0",
    provider="aws_s3",
    local_path="downloaded_models/eitp_model_v1.0.0.pt"
)
"""

# The seed's config file, verbatim ("编辑 `cloud_storage_config.yaml` 文件").
SEED_CONFIG = """\
cloud_storage:
  providers:
    - name: "aws_s3"
      enabled: true
      config:
        bucket: "eitp-models"
        region: "us-east-1"
        access_key: "${AWS_ACCESS_KEY_ID}"
        secret_key: "${AWS_SECRET_ACCESS_KEY}"
"""

# The same with a local directory instead of S3 (tests that need no server).
LOCAL_CONFIG = """\
cloud_storage:
  default_provider: local
  providers:
    - name: "local"
      type: fs
      enabled: true
      config:
        path: "{root}"
"""


def seed_models(tmp_path):
    """The seed's layout: models/<run>/model.pt, plus single-file models."""
    d = tmp_path / "models" / "model_20251003_004528"
    d.mkdir(parents=True)
    (d / "model.pt").write_bytes(os.urandom(700_000))
    (tmp_path / "models" / "eitp_model.pt").write_bytes(os.urandom(300_000))
    return tmp_path / "models"


@pytest.fixture
def seed_s3(tmp_path, monkeypatch):
    """The seed's config on moto: bucket eitp-models, reached through AWS_ENDPOINT_URL."""
    ep, _ = s3_env(monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", ep)
    # Create the seed's bucket (moto accepts unsigned requests); fine if it exists.
    req = urllib.request.Request(
        f"{ep}/eitp-models",
        data=b"",
        method="PUT",
        headers={"Content-Type": "application/octet-stream"},
    )
    try:
        urllib.request.urlopen(req, timeout=30)
    except urllib.error.HTTPError as e:
        if e.code not in (403, 409):  # exists already
            raise
    (tmp_path / "cloud_storage_config.yaml").write_text(SEED_CONFIG)
    v = mvault.Vault("aws_s3", cache_dir=tmp_path / "probe-cache")
    # Earlier runs against the same server: start from an empty bucket.
    for name in v.list():
        for ver in v.versions(name):
            v.rm(f"{name}@{ver}", force=True)
    return v


def test_seed_snippets_verbatim_on_s3(seed_s3, tmp_path):
    seed_models(tmp_path)
    scope = {}
    exec(SEED_UPLOAD, scope)
    assert scope["success"] is True
    info = seed_s3.info("eitp_gpt2@v1.0.0")
    assert info.description == "EIT-P GPT-2模型"
    assert info.performance_metrics == {"accuracy": 0.95, "loss": 0.05}
    assert [f.path for f in info.files] == ["model.pt"]

    # Upload again: the version exists; the seed's API answers False.
    scope = {}
    exec(SEED_UPLOAD, scope)
    assert scope["success"] is False

    manager = mvault.CloudStorageManager()
    assert manager.upload_model("models/eitp_model.pt", "eitp_model", "v1.0.0", "aws_s3")
    scope = {}
    exec(SEED_DOWNLOAD, scope)
    assert scope["local_path"] == "downloaded_models/eitp_model_v1.0.0.pt"
    assert (tmp_path / "downloaded_models" / "eitp_model_v1.0.0.pt").read_bytes() == (
        tmp_path / "models" / "eitp_model.pt"
    ).read_bytes()

    names = [m["model_name"] for m in manager.list_models("aws_s3")]
    assert names == ["eitp_gpt2", "eitp_model"]


def test_seed_scripts_verbatim_on_s3(seed_s3, tmp_path):
    seed_models(tmp_path)
    up = subprocess.run(
        [script("upload_models_to_cloud"), "--provider", "aws_s3", "--models-dir", "models/"],
        capture_output=True,
        text=True,
    )
    assert up.returncode == 0, up.stderr
    assert [l.split("\t")[0] for l in up.stdout.splitlines()] == [
        "eitp_model@1.0.0",
        "model_20251003_004528@1.0.0",
    ]
    down = subprocess.run(
        [
            script("download_models_from_cloud"),
            "--provider",
            "aws_s3",
            "--model-name",
            "eitp_model",
            "--version",
            "v1.0.0",
        ],
        capture_output=True,
        text=True,
    )
    assert down.returncode == 0, down.stderr
    out = tmp_path / "downloaded_models" / "eitp_model"
    assert down.stdout.strip() == "downloaded_models/eitp_model"
    assert (out / "eitp_model.pt").read_bytes() == (tmp_path / "models" / "eitp_model.pt").read_bytes()
    ls = subprocess.run(
        [script("download_models_from_cloud"), "--provider", "aws_s3", "--list"],
        capture_output=True,
        text=True,
    )
    assert ls.returncode == 0, ls.stderr
    assert ls.stdout.splitlines() == ["eitp_model\t1.0.0", "model_20251003_004528\t1.0.0"]


@pytest.fixture
def local_config(tmp_path):
    cfg = tmp_path / "cloud_storage_config.yaml"
    cfg.write_text(LOCAL_CONFIG.format(root=tmp_path / "vault"))
    return cfg


def test_cloud_storage_manager_on_a_local_vault(local_config, tmp_path):
    models = seed_models(tmp_path)
    m = mvault.CloudStorageManager(config_path=local_config)
    assert m.upload_model(
        models / "model_20251003_004528",
        "eitp_gpt2",
        "v1.0.0",
        "local",
        metadata={
            "description": "EIT-P GPT-2模型",
            "training_config": {"epochs": 100, "batch_size": 32, "learning_rate": 0.001},
            "owner": "lab",
        },
    )
    assert not m.upload_model(models / "nope", "eitp_gpt2", "v1.0.1", "local")
    assert not m.upload_model(models / "model_20251003_004528", "eitp_gpt2", "v1.0.0", "local")
    d = m.get_model_info("eitp_gpt2", "v1.0.0", "local")
    assert d["training_config"]["epochs"] == 100 and d["owner"] == "lab"
    assert d["file_size"] == 700_000 and len(d["checksum"]) == 64

    # One file: local_path names the file ...
    p = m.download_model("eitp_gpt2", "v1.0.0", "local", "dl/eitp_gpt2.pt")
    assert p == "dl/eitp_gpt2.pt"
    assert (tmp_path / p).read_bytes() == (models / "model_20251003_004528" / "model.pt").read_bytes()
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / p).stat().st_mode & 0o777 == 0o666 & ~umask  # as a plain write makes it
    assert os.access(tmp_path / p, os.W_OK)  # a copy of its own, not the read-only cache file
    # ... unless it is an existing directory or ends with a separator.
    (tmp_path / "dldir").mkdir()
    assert m.download_model("eitp_gpt2", "v1.0.0", "local", "dldir") == "dldir"
    assert (tmp_path / "dldir" / "model.pt").is_file()
    assert m.download_model("eitp_gpt2", "latest", "local", "dl2/") == "dl2"
    assert (tmp_path / "dl2" / "model.pt").is_file()
    # Default: the cached snapshot; default provider and latest version.
    assert os.path.isdir(m.download_model("eitp_gpt2"))

    # Several files: local_path is a directory.
    two = tmp_path / "two"
    two.mkdir()
    (two / "a.pt").write_bytes(b"a")
    (two / "b.json").write_bytes(b"{}")
    assert m.upload_model(two, "two", "1.0.0")
    assert m.download_model("two", "1.0.0", None, "out/two.pt") == "out/two.pt"
    assert sorted(x.name for x in (tmp_path / "out" / "two.pt").iterdir() if x.is_file()) == [
        "a.pt",
        "b.json",
    ]
    with pytest.raises(mvault.NotFound):
        m.download_model("eitp_gpt2", "v9.0.0", "local", "x.pt")
    with pytest.raises(mvault.ConfigError):
        m.download_model("eitp_gpt2", "v1.0.0", "aws_s3", "x.pt")  # not in this config

    assert m.list_models("local") == [
        {"model_name": "eitp_gpt2", "versions": ["1.0.0"], "latest_version": "v1.0.0"},
        {"model_name": "two", "versions": ["1.0.0"], "latest_version": "1.0.0"},
    ]


def test_cloud_storage_manager_finds_the_seed_config_in_the_working_directory(local_config, tmp_path):
    seed_models(tmp_path)
    m = mvault.CloudStorageManager()  # ./cloud_storage_config.yaml, as the CLI reads it
    assert m.upload_model("models/eitp_model.pt", "eitp_model", "v1.0.0", "local")
    assert mvault.Vault(str(tmp_path / "vault")).versions("eitp_model") == ["1.0.0"]


def run_script(name, *args):
    return subprocess.run([script(name), *args], capture_output=True, text=True)


def test_upload_script_versions_and_flags(local_config, tmp_path):
    seed_models(tmp_path)
    r = run_script("upload_models_to_cloud", "--provider", "local", "--models-dir", "models/")
    assert r.returncode == 0, r.stderr
    assert [l.split("\t")[0] for l in r.stdout.splitlines()] == [
        "eitp_model@1.0.0",
        "model_20251003_004528@1.0.0",
    ]
    # Again: each model gets the next patch version (the same bytes: nothing sent).
    r = run_script("upload_models_to_cloud", "--models-dir", "models")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [l.split("\t")[0] for l in lines] == [
        "eitp_model@1.0.1",
        "model_20251003_004528@1.0.1",
    ]
    assert all(l.endswith(" 0 sent") for l in lines)
    # --model-name picks one; --version pins it; an existing version exits 4.
    r = run_script("upload_models_to_cloud", "--model-name", "eitp_model", "--version", "v2.0.0")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\t")[0] == "eitp_model@v2.0.0"
    r = run_script("upload_models_to_cloud", "--model-name", "eitp_model", "--version", "2.0.0")
    assert r.returncode == 4 and "already exists" in r.stderr
    r = run_script("upload_models_to_cloud", "--model-name", "nope")
    assert r.returncode == 3
    r = run_script("upload_models_to_cloud", "--models-dir", "missing-dir")
    assert r.returncode == 2 and "missing-dir" in r.stderr
    r = run_script("upload_models_to_cloud", "--provider", "nope")
    assert r.returncode == 2
    r = run_script("upload_models_to_cloud", "--list")
    assert r.stdout.splitlines() == [
        "eitp_model\t1.0.0 1.0.1 2.0.0",
        "model_20251003_004528\t1.0.0 1.0.1",
    ]
    r = run_script("upload_models_to_cloud", "--help")
    assert r.returncode == 0 and "--models-dir" in r.stdout


def test_download_script_flags(local_config, tmp_path):
    seed_models(tmp_path)
    assert run_script("upload_models_to_cloud").returncode == 0
    r = run_script("download_models_from_cloud", "--provider", "local", "--list")
    assert r.returncode == 0
    assert r.stdout.splitlines() == ["eitp_model\t1.0.0", "model_20251003_004528\t1.0.0"]
    # Every model, latest, into ./downloaded_models/<name>/.
    r = run_script("download_models_from_cloud")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "downloaded_models/eitp_model",
        "downloaded_models/model_20251003_004528",
    ]
    assert (tmp_path / "downloaded_models" / "model_20251003_004528" / "model.pt").is_file()
    r = run_script(
        "download_models_from_cloud",
        "--model-name",
        "eitp_model",
        "--version",
        "1.0.0",
        "--models-dir",
        "elsewhere",
        "--verify",
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "elsewhere" / "eitp_model" / "eitp_model.pt").is_file()
    r = run_script("download_models_from_cloud", "--model-name", "eitp_model", "--version", "9.9.9")
    assert r.returncode == 3 and "9.9.9" in r.stderr
    r = run_script("download_models_from_cloud", "--model-name", "bad name!")
    assert r.returncode == 2
