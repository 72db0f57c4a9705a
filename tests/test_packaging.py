"""The package as users get it: public API habits, versions, the kernels' type stub, extras."""

from __future__ import annotations

import ast
import inspect
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest

import milo_pack
from milo_pack import _arrays

ROOT = Path(__file__).resolve().parent.parent
STUB = Path(milo_pack.__file__).resolve().parent / "_arrays.pyi"


def test_imported_from_where_ci_expects():
    """CI's wheel step sets MILO_PACK_EXPECT_INSTALLED: the tests then run against the wheel
    installed in site-packages, never against a source tree."""
    location = Path(milo_pack.__file__).resolve()
    if os.environ.get("MILO_PACK_EXPECT_INSTALLED"):
        assert "site-packages" in location.parts, location
        assert not (location.parent / "_arrays.pyx").exists()  # the wheel has no Cython source
        assert not (location.parent / "_arrays.c").exists()
    assert Path(_arrays.__file__).parent == location.parent


def test_file_by_keyword(tmp_path):
    """``file=`` works by keyword, as in joblib and skops, for every function taking a file."""
    model = {"weights": np.arange(5.0), "name": "x"}
    path = tmp_path / "kw.milo"
    milo_pack.dump(model, file=path)
    milo_pack.dump(obj=model, file=tmp_path / "kw2.milo")
    assert milo_pack.load(file=path)["name"] == "x"
    assert milo_pack.inspect(file=path)["root"]["name"] == "x"
    assert milo_pack.untrusted_types(file=path) == []
    with milo_pack.open(file=path) as handle:
        assert handle.load()["weights"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    data = milo_pack.dumps(obj=model)
    assert milo_pack.loads(data=data)["name"] == "x"
    buffer = io.BytesIO()
    milo_pack.dump(model, file=buffer)
    assert buffer.getvalue() == data
    # Options stay keyword-only: a third positional argument is an error, not a level.
    with pytest.raises(TypeError):
        milo_pack.dump(model, path, 3)  # type: ignore[misc]


def test_version_attributes():
    assert re.fullmatch(r"\d+\.\d+\.\d+([a-z]+\d+)?", milo_pack.__version__)
    assert milo_pack.FORMAT_VERSION == 1
    assert "__version__" in milo_pack.__all__ and "FORMAT_VERSION" in milo_pack.__all__


# --------------------------------------------------------------------------------------------
# The kernels' type stub
# --------------------------------------------------------------------------------------------


def _stub_functions() -> dict[str, ast.FunctionDef]:
    tree = ast.parse(STUB.read_text(encoding="utf-8"))
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def _stub_names() -> set[str]:
    tree = ast.parse(STUB.read_text(encoding="utf-8"))
    names = set(_stub_functions())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
    return names


def test_stub_is_shipped():
    assert STUB.is_file()
    assert (STUB.parent / "py.typed").is_file()


def test_stub_names_every_public_kernel():
    """A kernel added to ``_arrays.pyx`` without its stub fails here (mypy would see Any)."""
    public = {name for name in dir(_arrays) if not name.startswith("_")
              and name not in ("np", "operator")}
    used = {"_TREE_REASONS", "_ALL_INTS", "_REL_INTS"}  # private names other modules read
    missing = (public | used) - _stub_names()
    assert not missing, f"add these to _arrays.pyi: {sorted(missing)}"
    stale = set(_stub_functions()) - set(dir(_arrays))
    assert not stale, f"_arrays.pyi names functions the module lacks: {sorted(stale)}"


def test_stub_signatures_match_the_kernels():
    """Parameter names, order and defaults agree with the compiled functions."""
    for name, node in _stub_functions().items():
        runtime = inspect.signature(getattr(_arrays, name))
        stub_params = [a.arg for a in node.args.args]
        assert stub_params == list(runtime.parameters), name
        defaults = [ast.literal_eval(d) for d in node.args.defaults]
        runtime_defaults = [p.default for p in runtime.parameters.values()
                            if p.default is not inspect.Parameter.empty]
        assert defaults == runtime_defaults, name


# --------------------------------------------------------------------------------------------
# Metadata (from pyproject.toml: the one place floors and extras are declared)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def project():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11 reads pyproject.toml
    path = ROOT / "pyproject.toml"
    if not path.is_file():
        pytest.skip("no pyproject.toml beside the tests (installed tests only)")
    return tomllib.loads(path.read_text(encoding="utf-8"))["project"]


def test_runtime_dependencies_stay_small(project):
    names = {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0] for r in project["dependencies"]}
    assert names == {"numpy", "scipy", "scikit-learn", "zstandard", "msgpack"}
    assert all(">=" in r for r in project["dependencies"]), "every dependency has a floor"


def test_extras(project):
    extras = project["optional-dependencies"]
    boost = " ".join(extras["boost"])
    # The CPU-only XGBoost where it is published (not the 10x larger CUDA build).
    assert "xgboost-cpu" in boost and "sys_platform != 'darwin'" in boost
    assert "xgboost>=" in boost and "sys_platform == 'darwin'" in boost
    bench = " ".join(extras["bench"])
    for name in ("joblib", "skops", "matplotlib", "milo_pack[boost]"):
        assert name in bench
    dev = " ".join(extras["dev"])
    assert "moto[s3]" in dev and "moto[server]" not in dev  # no docker, cfn-lint, sympy
    assert project["version"] == milo_pack.__version__
    assert project["license"] == "BSD-3-Clause" and (ROOT / "LICENSE").is_file()
