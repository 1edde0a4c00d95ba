"""The package itself: exports, stubs, docstrings, import time."""

import ast
import pathlib
import subprocess
import sys

import mvault

PKG = pathlib.Path(mvault.__file__).parent


def test_version():
    assert mvault.__version__.count(".") == 2


def test_typed_package_with_stubs_for_every_export():
    assert (PKG / "py.typed").exists()
    stub = ast.parse((PKG / "__init__.pyi").read_text())
    names = {n.name for n in stub.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    names |= {a.asname or a.name for n in stub.body if isinstance(n, ast.ImportFrom) for a in n.names}
    names |= {t.target.id for n in stub.body if isinstance(n, ast.AnnAssign) for t in [n]}
    assert set(mvault.__all__) <= names, set(mvault.__all__) - names
    vault_stub = next(n for n in stub.body if isinstance(n, ast.ClassDef) and n.name == "Vault")
    stubbed = {n.name for n in vault_stub.body if isinstance(n, ast.FunctionDef)}
    public = {m for m in dir(mvault.Vault) if not m.startswith("_")}
    assert public <= stubbed, public - stubbed


def test_docstrings_everywhere():
    for name in mvault.__all__:
        obj = getattr(mvault, name)
        if callable(obj):
            assert obj.__doc__, name
    for cls in (mvault.Vault, mvault.CloudStorageManager):
        for m in dir(cls):
            if not m.startswith("_"):
                assert getattr(cls, m).__doc__, f"{cls.__name__}.{m}"


def test_import_is_fast_and_lazy():
    # The seed layer (logging, shutil, tempfile) loads only when CloudStorageManager is used.
    code = "import sys, mvault; print('mvault._seed' in sys.modules, 'logging' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    code = (
        "import time; t = time.perf_counter(); import mvault; "
        "print(time.perf_counter() - t)"
    )
    best = min(
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
        for _ in range(3)
    )
    assert best < 0.25, f"import mvault took {best * 1000:.0f} ms"
